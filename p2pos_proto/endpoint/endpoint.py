"""Many sessions on many sockets (spec/session.md §4).

The endpoint routes each datagram by the receiver index in its header, answers
INIT packets by creating responder sessions, and remembers a digest of each
recent INIT so that a replayed first message creates no new state.  A session
with channels has paths (spec/paths.md): each is a route, a (remote address,
local socket) pair, mapped to the connection's path id; ``add_path`` adds one, an
authenticated datagram from a new route (a NAT rebinding) makes one, and
``data_to_send`` returns one batch per path.  A bare session is bound to one
route and follows a peer that moves once a packet from the new route
authenticates (session.md §4.2).
Sockets and addresses are opaque hashable values chosen by the driver.  A
datagram whose first byte belongs to another protocol (STUN, TURN, ...;
``demux.py``) is passed on as ``ForeignDatagramReceived``.

With ``channels=ChannelConfig(...)`` (or a function of the route that returns
one) every session runs the channel layer: the endpoint drives a ``Connection``
per session and reports its events; without
it (the default) sessions are bare, as an embedder of the session layer alone
wants.

Cost per datagram or timer does not grow with the number of sessions: each
session's deadline sits in a heap (``timers.py``), and only sessions that
something happened to are asked for output.  Drive it like a session:

* ``receive_data(data, address, now, local=...)``: one datagram; never raises.
  ``receive_datagrams(datagrams, address, now, local=...)``: a run of them from one
  address (a GRO buffer's segments), each session's events and timer collected once.
* ``data_to_send(now)``: ``(datagrams, address, local)`` batches, one per session
  with output (a batch goes to one address: a driver may send it with UDP GSO).
* ``next_event()`` until None; ``get_timer()`` / ``handle_timer(now)``.
* After calling a session or connection directly (``send``, ``open_channel``, ...),
  call ``updated(session_id)`` so that its output, events and timer are collected.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
from collections.abc import Callable, Hashable

from ..channels.connection import ChannelConfig, Connection, ConnectionState
from ..errors import LocalProtocolError, ProtocolError
from ..events import ChannelEvent, Event, ForeignDatagramReceived
from ..handshake.handshake import BindingCache, LocalKeys
from ..identity import crypto
from ..identity.peer_id import PeerId
from ..paths.events import PathAbandoned, PathActive, PathDead, PathEvent, PathValidated
from ..paths.path import PathKind
from ..session.session import SecureSession, SessionConfig, SessionState
from ..session.wire import PacketType, receiver_index_untrusted
from .demux import BY_FIRST_BYTE, Protocol
from .timers import TimerHeap

Address = Hashable
#: What the endpoint reports: session events, channel events, and datagrams of other protocols.
EndpointEvent = Event | ChannelEvent | ForeignDatagramReceived | PathEvent
Route = tuple[Address, Hashable]
#: Sessions at most, by default: the limit is one of memory (bench/memory.py measures it per session).
DEFAULT_MAX_SESSIONS = 65536


class Endpoint:
    """Routes datagrams between one local identity and many sessions."""

    def __init__(
        self,
        keys: LocalKeys,
        *,
        config: SessionConfig | None = None,
        channels: ChannelConfig | Callable[[Address, Hashable], ChannelConfig | None] | None = None,
        random: crypto.RandomSource = crypto.system_random,
        replay_cache_ttl: float = 300.0,
        replay_cache_size: int = 65536,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
    ) -> None:
        self.keys = keys
        self.config = config or SessionConfig()
        #: The channel layer's configuration, or a function of a session's (address, local socket)
        #: that returns it (a driver that knows each path's MTU sets the PMTU ceiling per path),
        #: or None there for a bare session (records carry another protocol, e.g. rendezvous).
        self.channel_config = channels
        self._random = random
        self._sessions: dict[int, SecureSession] = {}
        #: What the endpoint drives for each session: the Connection over it, or the bare session.
        self._driven: dict[int, SecureSession | Connection] = {}
        # index -> the active route (remote address, local socket)
        self._routes: dict[int, tuple[Address, Hashable]] = {}
        # Sessions with channels: index -> route -> path id, and index -> path id -> route (spec/paths.md).
        self._path_ids: dict[int, dict[Route, int]] = {}
        self._path_routes: dict[int, dict[int, Route]] = {}
        # The kind and rank of the paths a local socket carries (``add_path``), for rebindings on it.
        self._local_kinds: dict[Hashable, tuple[PathKind, int]] = {}
        # Local sockets that send through another one (QUIC sharing a UDP socket): local -> that socket.
        self._shared_sockets: dict[Hashable, Hashable] = {}
        self._timers = TimerHeap()
        self._pending: dict[int, None] = {}  # sessions that may have output, in order
        self._events: collections.deque[EndpointEvent] = collections.deque()
        # Digest of an INIT packet -> (expiry, session index); oldest first.
        self._seen_inits: collections.OrderedDict[bytes, tuple[float, int]] = collections.OrderedDict()
        self._replay_ttl = replay_cache_ttl
        self._replay_size = replay_cache_size
        self._max_sessions = max_sessions
        self.drops: collections.Counter[str] = collections.Counter()
        #: Datagrams of other protocols passed on, by protocol.
        self.passed_on: collections.Counter[str] = collections.Counter()
        self.binding_cache = BindingCache()

    # -- application API -----------------------------------------------------

    def connect(
        self,
        address: Address,
        now: float,
        *,
        local: Hashable = 0,
        expected_peer: PeerId | None = None,
        remote_static: bytes | None = None,
        channels: bool = True,
    ) -> SecureSession:
        """Start a handshake towards ``address`` from socket ``local``; IK if ``remote_static`` is known.

        Returns the session; with channels, ``connection(session.local_index)`` is its Connection.
        ``channels=False``: a bare session whatever the endpoint's channel configuration (its
        records carry another protocol).  After this, drain ``data_to_send``.
        """
        if len(self._sessions) >= self._max_sessions:
            raise LocalProtocolError(f"too many sessions (max_sessions={self._max_sessions})")
        session = SecureSession.initiate(
            self.keys,
            local_index=self._new_index(),
            now=now,
            config=self.config,
            expected_peer=expected_peer,
            remote_static=remote_static,
            random=self._random,
            binding_cache=self.binding_cache,
        )
        self._add(session, address, local, now, channels=channels)
        return session

    def session(self, session_id: int) -> SecureSession | None:
        return self._sessions.get(session_id)

    def connection(self, session_id: int) -> Connection | None:
        """The channel layer over session ``session_id`` (None without channels, or once reaped)."""
        driven = self._driven.get(session_id)
        return driven if isinstance(driven, Connection) else None

    def address_of(self, session_id: int) -> Address | None:
        """The remote address session ``session_id`` sends to."""
        route = self._routes.get(session_id)
        return route[0] if route is not None else None

    def socket_of(self, session_id: int) -> Hashable | None:
        """The local socket session ``session_id`` sends from."""
        route = self._routes.get(session_id)
        return route[1] if route is not None else None

    def add_path(
        self,
        session_id: int,
        address: Address,
        local: Hashable,
        now: float,
        *,
        kind: PathKind,
        rank: int = 0,
    ) -> int:
        """Another way to reach session ``session_id``'s peer: ``address`` through socket ``local``
        (a real socket or a virtual one: a relay link, a TURN allocation, a QUIC stream).

        ``kind``: ``PathKind.DATAGRAM`` (UDP, TURN) or ``PathKind.STREAM`` (a relay link, a QUIC
        stream); ``rank``: the preference, lower is better (direct 0 < QUIC 1 < TURN 2 < relay 3).
        The path is validated first; ``PathValidated`` and, when it ranks better, ``PathActive``
        follow (spec/paths.md §3-§4).  Returns the path id (the one already there for a known
        route).  Needs a session with channels.  After this, drain ``data_to_send``.
        """
        driven = self._driven.get(session_id)
        if not isinstance(driven, Connection):
            raise LocalProtocolError(f"no session with channels {session_id}")
        self._local_kinds[local] = (kind, rank)
        route = (address, local)
        known = self._path_ids[session_id].get(route)
        if known is not None:
            return known
        ceiling = self._ceiling(address, local, kind)
        path_id = driven.add_path(kind, now, rank=rank, max_datagram_size=ceiling)
        self._path_ids[session_id][route] = path_id
        self._path_routes[session_id][path_id] = route
        self._share_fate(driven, path_id, route)
        self._touch(session_id, driven)
        return path_id

    def _ceiling(self, address: Address, local: Hashable, kind: PathKind) -> int | None:
        """The largest datagram (a datagram path) or record (a stream-carried one) a path to ``address``
        through ``local`` carries, when the driver says it per route (``channels`` a callable): a session
        made on one socket may gain paths through narrower ones (a TURN allocation carries less than
        loopback UDP) or wider ones (a relay link takes 65000-byte records)."""
        config = self.channel_config
        if config is None or isinstance(config, ChannelConfig):
            return None
        found = config(address, local)
        if found is None:
            return None
        return found.stream_frame_size if kind is PathKind.STREAM else found.max_datagram_size

    def declare_local(
        self,
        local: Hashable,
        *,
        kind: PathKind,
        rank: int,
        shares_socket: Hashable | None = None,
    ) -> None:
        """Say what socket ``local`` is (a relay link: ``PathKind.STREAM``, rank 3...): the first path
        of a session made on it, and a path a rebinding makes on it, get that kind and rank.

        ``shares_socket``: the socket whose datagrams ``local``'s go out with (QUIC sharing a UDP
        socket, spec/quic.md §5.1): a path through ``local`` shares the fate of that socket's path to
        the same address, and is its last fall-back (spec/paths.md PTH-4.8)."""
        self._local_kinds[local] = (kind, rank)
        if shares_socket is not None and shares_socket != local:
            self._shared_sockets[local] = shares_socket

    def _share_fate(self, driven: Connection, path_id: int, route: Route) -> None:
        """Mark path ``path_id`` with what it shares its fate with: its socket and remote address (PTH-4.8)."""
        path = driven.paths.get(path_id)
        if path is not None:
            address, local = route
            path.fate = (self._shared_sockets.get(local, local), address)

    def abandon_path(self, session_id: int, address: Address, local: Hashable, now: float) -> None:
        """Give up the path (address, local) of session ``session_id`` (its carrier is gone): what
        was in flight on it is sent again on another path (spec/paths.md §5).  Unknown: ignored."""
        driven = self._driven.get(session_id)
        if not isinstance(driven, Connection):
            return
        path_id = self._path_ids[session_id].get((address, local))
        if path_id is not None:
            driven.abandon_path(path_id, now)
            self._touch(session_id, driven)

    def paths(self, session_id: int) -> list[dict[str, object]]:
        """Session ``session_id``'s paths (``Connection.paths_info`` plus ``address`` and ``local``)."""
        driven = self._driven.get(session_id)
        if not isinstance(driven, Connection):
            return []
        routes = self._path_routes[session_id]
        out = []
        for path_id, info in zip(driven.paths, driven.paths_info(), strict=True):
            route = routes.get(path_id)
            if route is not None:
                out.append({**info, "address": route[0], "local": route[1]})
        return out

    def sessions(self) -> list[SecureSession]:
        return list(self._sessions.values())

    def __len__(self) -> int:
        return len(self._sessions)

    def updated(self, session_id: int) -> None:
        """Say that the application called session ``session_id`` (or its Connection) directly.

        Its events are collected now, its output at the next ``data_to_send`` and its timer
        re-read.  Unknown ids are ignored (the session may have been reaped).
        """
        driven = self._driven.get(session_id)
        if driven is not None:
            self._touch(session_id, driven)

    # -- driver API ------------------------------------------------------------

    def receive_data(self, data: bytes, address: Address, now: float, local: Hashable = 0) -> None:
        """Feed one datagram that arrived on socket ``local`` from ``address``.  Never raises."""
        if not data:
            self.drops["empty"] += 1
            return
        if data[0] == PacketType.INIT:
            self._receive_init(data, address, local, now)
            return
        protocol = BY_FIRST_BYTE[data[0]]
        if protocol is not Protocol.P2POS:
            self.passed_on[protocol.value] += 1
            self._events.append(
                ForeignDatagramReceived(protocol=protocol.value, data=data, address=address, local=local)
            )
            return
        index = receiver_index_untrusted(data)
        if index is None or (driven := self._driven.get(index)) is None:
            self.drops["unknown_session"] += 1
            return
        route = (address, local)
        if isinstance(driven, Connection):
            path_id = self._path_ids[index].get(route)
            if path_id is not None:  # the usual case: a path we know
                driven.receive_data(data, now, path_id)
            else:  # a NAT rebinding, if it authenticates: a new path (spec/paths.md PTH-3.7)
                kind, rank = self._local_kinds.get(local, (PathKind.DATAGRAM, 0))
                ceiling = self._ceiling(address, local, kind)
                path_id = driven.receive_on_new_path(data, now, kind, rank=rank, max_datagram_size=ceiling)
                if path_id is not None:
                    self._path_ids[index][route] = path_id
                    self._path_routes[index][path_id] = route
                    self._share_fate(driven, path_id, route)
        elif self._routes[index] == route:  # a bare session on its route
            driven.receive_data(data, now)
        else:
            session = self._sessions[index]
            before = session.stats_authenticated()
            driven.receive_data(data, now)
            if session.stats_authenticated() != before:
                self._routes[index] = route  # a bare session roams: it follows authenticated packets
        self._touch(index, driven)

    def receive_datagrams(self, datagrams: list[bytes], address: Address, now: float, local: Hashable = 0) -> None:
        """``receive_data`` for each of ``datagrams``, all from ``address`` on socket ``local``,
        in order (a GRO buffer's segments are such a run).  Never raises.

        A run of datagrams for one session on its known route is fed to it one after
        the other, and its events, output and timer are collected once, after the run:
        per datagram, only the session's own work remains.
        """
        run: Connection | None = None  # the connection whose run is open
        run_index = run_path = 0
        route = (address, local)
        for data in datagrams:
            index = receiver_index_untrusted(data)  # None for INIT, garbage and other protocols
            if run is not None and index == run_index:
                run.receive_data(data, now, run_path)
                continue
            if run is not None:
                self._touch(run_index, run)
                run = None
            if index is not None:
                driven = self._driven.get(index)
                path_id = self._path_ids[index].get(route) if isinstance(driven, Connection) else None
                if isinstance(driven, Connection) and path_id is not None:
                    run, run_index, run_path = driven, index, path_id
                    driven.receive_data(data, now, path_id)
                    continue
            self.receive_data(data, address, now, local)  # anything else: one at a time
        if run is not None:
            self._touch(run_index, run)

    def data_to_send(self, now: float) -> list[tuple[list[bytes], Address, Hashable]]:
        """``(datagrams, address, local)`` for every session with output: send each batch in order."""
        out: list[tuple[list[bytes], Address, Hashable]] = []
        while self._pending:
            # A fresh dict each time: popping from the front of a long-lived one leaves deleted
            # slots that every later ``next(iter(...))`` would walk past (O(sessions) per call).
            pending, self._pending = self._pending, {}
            for index in pending:
                driven = self._driven.get(index)
                if driven is None:
                    continue
                if isinstance(driven, Connection):
                    routes = self._path_routes[index]
                    for path_id, datagrams in driven.data_to_send_paths(now):
                        route = routes.get(path_id)
                        if route is not None:
                            out.append((datagrams, route[0], route[1]))
                else:
                    datagrams = driven.data_to_send(now)
                    if datagrams:
                        address, local = self._routes[index]
                        out.append((datagrams, address, local))
                self._collect(index, driven)
        return out

    def next_event(self) -> EndpointEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The earliest deadline of any session, or of the INIT replay cache."""
        best = self._timers.next()
        if self._seen_inits:
            expiry = next(iter(self._seen_inits.values()))[0]
            best = expiry if best is None or expiry < best else best
        return best

    def handle_timer(self, now: float) -> None:
        """Run the timers that are due: only those sessions are touched.  After this, drain ``data_to_send``."""
        for index in self._timers.due(now):
            driven = self._driven.get(index)
            if driven is None:
                continue
            timer = driven.get_timer()
            if timer is not None and timer <= now:
                driven.handle_timer(now)
            self._touch(index, driven)
        while self._seen_inits:
            key, (expiry, _) = next(iter(self._seen_inits.items()))
            if expiry > now:
                break
            del self._seen_inits[key]

    # -- internals ---------------------------------------------------------------

    def _receive_init(self, data: bytes, address: Address, local: Hashable, now: float) -> None:
        # Keyed on the whole packet: a forged variant of an INIT cannot shadow the genuine one.
        digest = hashlib.blake2b(data, digest_size=16).digest()
        seen = self._seen_inits.get(digest)
        if seen is not None:
            driven = self._driven.get(seen[1])
            if driven is not None and self._sessions[seen[1]].state is not SessionState.CLOSED:
                driven.receive_data(data, now)  # resends its RESPONSE if the bytes are identical
                self._touch(seen[1], driven)
            else:
                self.drops["replayed_init"] += 1
            return
        if len(self._sessions) >= self._max_sessions:
            self.drops["too_many_sessions"] += 1
            return
        try:
            session = SecureSession.respond_untrusted(
                self.keys,
                data,
                local_index=self._new_index(),
                now=now,
                config=self.config,
                random=self._random,
                binding_cache=self.binding_cache,
            )
        except ProtocolError:
            self.drops["bad_init"] += 1
            return
        self._seen_inits[digest] = (now + self._replay_ttl, session.local_index)
        while len(self._seen_inits) > self._replay_size:
            self._seen_inits.popitem(last=False)
        self._add(session, address, local, now)

    def _add(
        self, session: SecureSession, address: Address, local: Hashable, now: float, *, channels: bool = True
    ) -> None:
        index = session.local_index
        self._sessions[index] = session
        driven: SecureSession | Connection = session
        config = self.channel_config if channels else None
        if config is not None and not isinstance(config, ChannelConfig):
            config = config(address, local)
        if config is not None:
            driven = Connection(session, now, config)
        self._driven[index] = driven
        self._routes[index] = (address, local)
        if isinstance(driven, Connection):
            declared = self._local_kinds.get(local)
            if declared is not None:
                driven.describe_path(0, declared[0], declared[1])
            self._path_ids[index] = {(address, local): 0}
            self._path_routes[index] = {0: (address, local)}
            self._share_fate(driven, 0, (address, local))
        self._touch(index, driven)

    def _touch(self, index: int, driven: SecureSession | Connection) -> None:
        """Something happened to a session: collect its events, mark it for output, re-read its timer."""
        self._pending[index] = None
        self._collect(index, driven)

    def _collect(self, index: int, driven: SecureSession | Connection) -> None:
        events = self._events
        while (event := driven.next_event()) is not None:
            if isinstance(event, PathValidated | PathActive | PathDead | PathAbandoned):
                event = self._path_event(index, event)
            events.append(event)
        if self._finished(index, driven):
            self._reap(index)
        else:
            self._timers.set(index, driven.get_timer())

    def _finished(self, index: int, driven: SecureSession | Connection) -> bool:
        session = self._sessions[index]
        if session.state is not SessionState.CLOSED or session.has_output():
            return False
        return not isinstance(driven, Connection) or driven.state is ConnectionState.CLOSED

    def _path_event(self, index: int, event: PathEvent) -> PathEvent:
        """Fill in the path's address and local socket; follow the active path; forget abandoned ones."""
        routes = self._path_routes.get(index, {})
        route = routes.get(event.path_id)
        if route is None:
            return event
        if isinstance(event, PathActive):
            self._routes[index] = route
            driven = self._driven.get(index)
            if isinstance(driven, Connection) and event.old_path_id not in driven.paths:
                old = routes.pop(event.old_path_id, None)  # an abandoned path, gone once left
                if old is not None:
                    self._path_ids[index].pop(old, None)
        elif isinstance(event, PathAbandoned) and self._routes.get(index) != route:
            del routes[event.path_id]
            self._path_ids[index].pop(route, None)
        return dataclasses.replace(event, address=route[0], local=route[1])

    def _reap(self, index: int) -> None:
        self._path_ids.pop(index, None)
        self._path_routes.pop(index, None)
        self._sessions.pop(index, None)
        self._driven.pop(index, None)
        self._routes.pop(index, None)
        self._pending.pop(index, None)
        self._timers.set(index, None)

    def _new_index(self) -> int:
        while True:
            index = int.from_bytes(self._random(4), "big")
            if index not in self._sessions:
                return index
