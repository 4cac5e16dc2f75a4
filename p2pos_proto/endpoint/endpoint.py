"""Many sessions on many sockets (spec/session.md §4).

The endpoint routes each datagram by the receiver index in its header, answers
INIT packets by creating responder sessions, and remembers a digest of each
recent INIT so that a replayed first message creates no new state.  A session
is bound to a route, the (local socket, remote address) pair its packets use;
it follows a peer that moves once a packet from the new route authenticates.
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
import hashlib
from collections.abc import Callable, Hashable

from ..channels.connection import ChannelConfig, Connection, ConnectionState
from ..errors import LocalProtocolError, ProtocolError
from ..events import ChannelEvent, Event, ForeignDatagramReceived
from ..handshake.handshake import BindingCache, LocalKeys
from ..identity import crypto
from ..identity.peer_id import PeerId
from ..session.session import SecureSession, SessionConfig, SessionState
from ..session.wire import PacketType, receiver_index_untrusted
from .demux import BY_FIRST_BYTE, Protocol
from .timers import TimerHeap

Address = Hashable
#: What the endpoint reports: session events, channel events, and datagrams of other protocols.
EndpointEvent = Event | ChannelEvent | ForeignDatagramReceived
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
        self._routes: dict[int, tuple[Address, Hashable]] = {}  # index -> (remote address, local socket)
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
        if self._routes[index] == route:  # the usual case: nothing to learn about the path
            driven.receive_data(data, now)
        else:
            session = self._sessions[index]
            before = session.stats_authenticated()
            driven.receive_data(data, now)
            if session.stats_authenticated() != before:
                self._routes[index] = route  # roaming: follow authenticated packets only
        self._touch(index, driven)

    def receive_datagrams(self, datagrams: list[bytes], address: Address, now: float, local: Hashable = 0) -> None:
        """``receive_data`` for each of ``datagrams``, all from ``address`` on socket ``local``,
        in order (a GRO buffer's segments are such a run).  Never raises.

        A run of datagrams for one session on its known route is fed to it one after
        the other, and its events, output and timer are collected once, after the run:
        per datagram, only the session's own work remains.
        """
        run: SecureSession | Connection | None = None  # the session whose run is open
        run_index = 0
        route = (address, local)
        for data in datagrams:
            index = receiver_index_untrusted(data)  # None for INIT, garbage and other protocols
            if run is not None and index == run_index:
                run.receive_data(data, now)
                continue
            if run is not None:
                self._touch(run_index, run)
                run = None
            if index is not None and self._routes.get(index) == route:
                driven = self._driven.get(index)
                if driven is not None:
                    run, run_index = driven, index
                    driven.receive_data(data, now)
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
        self._touch(index, driven)

    def _touch(self, index: int, driven: SecureSession | Connection) -> None:
        """Something happened to a session: collect its events, mark it for output, re-read its timer."""
        self._pending[index] = None
        self._collect(index, driven)

    def _collect(self, index: int, driven: SecureSession | Connection) -> None:
        events = self._events
        while (event := driven.next_event()) is not None:
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

    def _reap(self, index: int) -> None:
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
