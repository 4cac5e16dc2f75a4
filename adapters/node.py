"""The trio node: an ``Endpoint`` with the channel layer, driven over UDP sockets.

    async with open_node(keys, hosts=("127.0.0.1", "::1")) as node:
        listener = node.listen("chat")                    # incoming channels to "chat"
        stream = await node.connect(peer_id, ("127.0.0.1", 4000), "chat")
        await stream.send_all(b"hello")                   # a trio.abc.HalfCloseableStream
        reply = await stream.receive_some()

Every session runs the channel layer.  ``connect`` reuses the authenticated
session to that peer if there is one, or handshakes with the peer at
``address``, expecting exactly ``peer_id``: a different key answering there is
``ConnectFailed`` (IDENTITY_MISMATCH), never a session.  A stream channel is
returned as soon as its OPEN is queued (its first bytes go with the OPEN,
spec/channels.md §2.7); a refused service is ``ServiceRefused``, from its next
read or write (or from ``connect`` with ``wait_accepted=True``); a vanished peer surfaces as ``ChannelBroken`` (a
``trio.BrokenResourceError``) on its channels, with the reason.

The driver is thin, as aioquic's asyncio glue is: one receive task per socket
feeds runs of datagrams (a UDP GRO buffer's segments, routed once per run) into
the endpoint, and every ``RECEIVE_CHUNK`` datagrams sends the output (the ACKs that
clock the sender) straight to the socket if it takes it without waiting; one
timer task sleeps until the endpoint's single deadline, re-armed only when it
changes; one transmit task sends what the endpoint has queued, a batch per
session (UDP GSO), coalescing everything that happened since it last ran, and
whatever the receive task could not send at once (first, so order is kept).  All time comes
from ``trio.current_time()``, so the node runs under ``trio.testing.MockClock``
and over any object with the transport's methods (the link emulator in tests).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from typing import cast

import trio

from p2pos.proto import (
    ChannelClosed,
    ChannelConfig,
    ChannelDataAvailable,
    ChannelEnded,
    ChannelKind,
    ChannelMessage,
    ChannelOpened,
    ChannelRefused,
    ChannelRequested,
    ChannelReset,
    ChannelWritable,
    ConnectionClosed,
    ConnectionReady,
    Endpoint,
    ErrorCode,
    HandshakeCompleted,
    LocalKeys,
    MessageReceived,
    PeerId,
    PingAcknowledged,
    SessionClosed,
    SessionConfig,
)
from p2pos.proto.channels.channel import ChannelState
from p2pos.proto.events import ForeignDatagramReceived
from p2pos.proto.paths.events import PathAbandoned, PathActive, PathDead, PathValidated

from . import nodepaths, routeconfig
from .nodetypes import BACKLOG, Address, ConnectFailed, Listener, Peer, Transport, _show
from .reopen import Reopen
from .streams import ChannelBroken, ChannelStream, MessageChannel, ServiceRefused, _why

__all__ = [
    "BACKLOG",
    "BUSY",
    "NOT_ALLOWED",
    "Address",
    "ConnectFailed",
    "Listener",
    "Node",
    "Peer",
    "ServiceRefused",
    "Transport",
    "_show",
    "open_node",
]
#: Datagrams received between two chances to transmit (ACKs, window updates).
RECEIVE_CHUNK = 32
#: The receive loop lets other tasks run (the application reading) after this many chunks.
YIELD_EVERY_CHUNKS = 4
#: The application codes (errors.md §3) a node refuses channels with: the peer is not on the
#: service's allow list, the service's backlog is full.
NOT_ALLOWED = 0x100
BUSY = 0x101
#: The first byte of a stateless reset (rendezvous.md §6): the endpoint drops it, the node hands it
#: to ``on_reset`` when it comes from an address in ``reset_sources``.
STATELESS_RESET = 0x0B

log = logging.getLogger("p2pos.node")


class Node:
    """Runs one Endpoint on one or more UDP sockets.  Create with ``open_node``."""

    def __init__(
        self,
        keys: LocalKeys,
        transports: Sequence[Transport],
        *,
        config: SessionConfig | None = None,
        channels: ChannelConfig | None = None,
    ) -> None:
        self.keys = keys
        self.peer_id = keys.identity.peer_id
        self.transports = list(transports)
        self._base_channels = channels or ChannelConfig()
        self.endpoint = Endpoint(keys, config=config, channels=self._channel_config_for)
        self._peers: dict[PeerId, Peer] = {}
        self._by_session: dict[int, Peer] = {}
        self._connecting: dict[int, trio.MemorySendChannel[Peer | ConnectFailed]] = {}
        self._dialing: dict[PeerId, trio.Event] = {}
        #: Channels this side opened that the peer has not answered yet.
        self._opening: dict[tuple[int, int], ChannelStream | MessageChannel] = {}
        self._channels: dict[tuple[int, int], ChannelStream | MessageChannel] = {}
        self._listeners: dict[str, Listener] = {}
        self._deadline = math.inf
        self._timer_scope = trio.CancelScope()
        self._transmit = trio.Event()
        #: Output the receive loop could not send without waiting: the transmit task sends it first.
        self._backlog: list[tuple[Sequence[bytes], Address, Hashable]] = []
        #: The transmit task is sending (it may be waiting for socket buffer space).
        self._sending = False
        #: Datagrams of other protocols (STUN, TURN, ...) seen on the node's sockets, by protocol.
        self.foreign: dict[str, int] = {}
        #: Who takes the datagrams of a protocol (``quic``: a QUIC driver sharing the sockets, spec/quic.md §5.1).
        self.foreign_handlers: dict[str, Callable[[ForeignDatagramReceived], None]] = {}
        #: Called with each event of a bare session (one made with ``channels=False``, whose records
        #: carry another protocol: the rendezvous clients' sessions).
        self.on_bare_event: Callable[[HandshakeCompleted | MessageReceived | SessionClosed], None] | None = None
        #: Stateless resets (type 0x0b) from these addresses go to ``on_reset(data, address)``.
        self.reset_sources: set[Address] = set()
        self.on_reset: Callable[[bytes, Address], None] | None = None
        #: Told what happens (``kind``, fields): peers connecting and leaving, channels opened and
        #: refused.  The daemon numbers them for its app API (spec/appapi.md §5).
        self.observer: Callable[..., None] | None = None
        self._nursery: trio.Nursery | None = None
        #: Peers whose session is kept on one carrier (``pin``): peer id -> ``via`` (``udp``, ``quic``...).
        self.pins: dict[PeerId, str] = {}
        #: Unused sessions closed (spec/paths.md PTH-7.6): the keys and addresses to reopen them with.
        self.reopen = Reopen()
        for local, transport in enumerate(self.transports):
            self._declare(local, transport)

    @property
    def address(self) -> Address:
        """The first socket's address."""
        return self.transports[0].local_address

    @property
    def addresses(self) -> list[Address]:
        """Each socket's address, once (QUIC sharing a UDP socket has that socket's, spec/quic.md §5.1)."""
        return list(dict.fromkeys(t.local_address for t in self.transports))

    # -- the application API ---------------------------------------------------------

    def listen(
        self, service: str, *, kind: ChannelKind = ChannelKind.STREAM, allow: Callable[[PeerId], bool] | None = None
    ) -> Listener:
        """Accept channels to ``service`` (other services are refused with SERVICE_UNKNOWN).

        ``allow(peer_id)`` says who may open them (default: any peer); others are refused with
        the application code ``NOT_ALLOWED``.
        """
        if service in self._listeners:
            raise ValueError(f"already listening on {service!r}")
        listener = Listener(self, service, kind, allow)
        self._listeners[service] = listener
        return listener

    async def connect_peer(self, peer_id: PeerId, address: object, *, remote_static: bytes | None = None) -> Peer:
        """The authenticated session to ``peer_id``, made at ``address`` if there is none yet."""
        local = self._socket_for(address)
        remote = self.transports[local].check_address(address)
        remote_static = self.reopen.key(peer_id, remote_static)
        while (existing := self._peers.get(peer_id)) is None and (dialing := self._dialing.get(peer_id)) is not None:
            await dialing.wait()  # one handshake per peer: concurrent connects share it
        if existing is not None:
            await trio.lowlevel.checkpoint()
            return existing
        done = self._dialing[peer_id] = trio.Event()
        try:
            session = self.endpoint.connect(
                remote, trio.current_time(), local=local, expected_peer=peer_id, remote_static=remote_static
            )
            send, receive = trio.open_memory_channel[Peer | ConnectFailed](1)
            self._connecting[session.local_index] = send
            self._updated(session.local_index)
            result = await receive.receive()
        finally:
            del self._dialing[peer_id]
            done.set()
        if isinstance(result, ConnectFailed):
            raise result
        return result

    async def connect_any(
        self,
        peer_id: PeerId,
        addresses: Sequence[object],
        *,
        remote_static: bytes | None = None,
        routes: Sequence[tuple[int, object]] = (),
    ) -> Peer:
        """The session to ``peer_id``, handshaking at every one of ``addresses`` at once (direct UDP,
        a relay...): the first to answer wins, the others become its paths (nodepaths.py).
        ``routes`` are more, each through a given socket: (local, address), e.g. QUIC to an
        address direct UDP also tries.

        ConnectFailed (the last reason) if none answers; ValueError if no socket takes any address.
        """
        remote_static = self.reopen.key(peer_id, remote_static)
        return await nodepaths.connect_any(self, peer_id, addresses, remote_static=remote_static, routes=routes)

    async def connect(
        self,
        peer_id: PeerId,
        address: object,
        service: str,
        *,
        kind: ChannelKind = ChannelKind.STREAM,
        remote_static: bytes | None = None,
        wait_accepted: bool = False,
    ) -> ChannelStream | MessageChannel:
        """A channel to ``service`` on ``peer_id`` (reached at ``address`` if no session exists yet).

        A stream channel is returned as soon as its OPEN is queued: what is written at once travels
        with the OPEN (early data, spec/channels.md §2.7), and a refusal surfaces as ``ServiceRefused``
        from the channel's next ``send_all`` or ``receive_some`` (``wait_accepted()`` waits for the
        answer).  A message channel, or any with ``wait_accepted``, is returned once the peer accepted.

        Raises ConnectFailed (no session: handshake failed, timed out, or another key answered),
        ServiceRefused (the peer said no, when waiting for it), or ValueError for a malformed address.
        """
        peer = await self.connect_peer(peer_id, address, remote_static=remote_static)
        connection = self.endpoint.connection(peer.session_id)
        if connection is None:
            raise ConnectFailed(ErrorCode.INTERNAL_ERROR, "the session ended")
        channel_id = connection.open_channel(service, trio.current_time(), kind=kind)
        channel = self._make_channel(peer, channel_id, service, kind, answered=False)
        self._opening[(peer.session_id, channel_id)] = channel
        self._updated(peer.session_id)
        if kind is ChannelKind.STREAM and not wait_accepted:
            return channel
        await channel.wait_accepted()
        return channel

    def peer(self, peer_id: PeerId) -> Peer | None:
        return self._peers.get(peer_id)

    async def close_peer(self, peer_id: PeerId, code: ErrorCode = ErrorCode.NO_ERROR, reason: str = "") -> None:
        """Close the session to ``peer_id`` (gracefully with NO_ERROR: sent data is delivered first)."""
        peer = self._peers.get(peer_id)
        connection = self.endpoint.connection(peer.session_id) if peer is not None else None
        if peer is not None and connection is not None:
            connection.close(trio.current_time(), code, reason)
            self._updated(peer.session_id)
        await trio.lowlevel.checkpoint()

    def peers(self) -> list[Peer]:
        return list(self._peers.values())

    def poke(self) -> None:
        """Something called the endpoint directly (a rendezvous client): collect and transmit."""
        self._after_input()

    # -- the driver ------------------------------------------------------------------------

    def add_transport(self, transport: Transport) -> int:
        """One more socket (a relay link, a TURN allocation...) for a running node: its index."""
        if self._nursery is None:
            raise RuntimeError("the node is not running")
        local = len(self.transports)
        self.transports.append(transport)
        self._declare(local, transport)
        self._nursery.start_soon(self._receive_loop, local, transport)
        return local

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for local, transport in enumerate(self.transports):
                nursery.start_soon(self._receive_loop, local, transport)
            nursery.start_soon(self._timer_loop)
            nursery.start_soon(self._transmit_loop)
            task_status.started()

    async def _receive_loop(self, local: int, transport: Transport) -> None:
        endpoint = self.endpoint
        while True:
            runs = await transport.receive_runs()
            now = trio.current_time()
            taken = 0  # datagrams fed since the output was last sent
            chunks = 0
            for datagrams, address in runs:
                if address in self.reset_sources:
                    self._take_resets(datagrams, address)
                for start in range(0, len(datagrams), RECEIVE_CHUNK):
                    if taken >= RECEIVE_CHUNK:
                        # Send the ACKs for what came so far, from here if the socket takes them at
                        # once: a sender is clocked by them, and a batch can be a thousand datagrams.
                        self._dispatch()
                        self._send_now()
                        self._rearm()
                        chunks += 1
                        if chunks % YIELD_EVERY_CHUNKS == 0:
                            await trio.lowlevel.checkpoint()  # the application reads meanwhile
                        now = trio.current_time()
                        taken = 0
                    chunk = datagrams if len(datagrams) <= RECEIVE_CHUNK else datagrams[start : start + RECEIVE_CHUNK]
                    endpoint.receive_datagrams(chunk, address, now, local)
                    taken += len(chunk)
            self._dispatch()
            self._send_now()
            self._rearm()

    async def _timer_loop(self) -> None:
        while True:
            with trio.CancelScope(deadline=self._deadline) as self._timer_scope:
                await trio.sleep_forever()
            self.endpoint.handle_timer(trio.current_time())
            self._deadline = math.inf  # re-read below
            self._after_input()
            await trio.lowlevel.checkpoint()

    async def _transmit_loop(self) -> None:
        while True:
            await self._transmit.wait()
            self._transmit = trio.Event()
            await self._send_queued()
            self._dispatch()
            self._rearm()

    async def _send_queued(self) -> None:
        """Send the backlog, then what the endpoint has queued, a batch (one GSO run or more) per session."""
        self._sending = True
        try:
            while self._backlog:
                backlog, self._backlog = self._backlog, []
                for datagrams, to, local in backlog:
                    await self._transport(local).send_batch(datagrams, to)
            for datagrams, address, local in self.endpoint.data_to_send(trio.current_time()):
                await self._transport(local).send_batch(datagrams, cast(Address, address))
        finally:
            self._sending = False

    def _send_now(self) -> None:
        """Send what the endpoint has queued without waiting; what cannot go at once (the socket
        is full, or the transmit task is sending: order is kept) is left to the transmit task."""
        batches = self.endpoint.data_to_send(trio.current_time())
        if not batches:
            return
        for datagrams, destination, local in batches:
            to = cast(Address, destination)
            if self._sending or self._backlog:
                self._backlog.append((datagrams, to, local))
                continue
            sent = self._transport(local).send_batch_now(datagrams, to)
            if sent < len(datagrams):
                self._backlog.append((datagrams[sent:], to, local))
        if self._backlog:
            self._transmit.set()
        self._dispatch()  # building output may have ended a connection

    def _take_resets(self, datagrams: list[bytes], address: Address) -> None:
        if self.on_reset is not None:
            for data in datagrams:
                if data and data[0] == STATELESS_RESET:
                    self.on_reset(data, address)

    def _notify(self, kind: str, **fields: object) -> None:
        if self.observer is not None:
            self.observer(kind, **fields)

    def _updated(self, session_id: int) -> None:
        """The application called session ``session_id``'s connection: collect and transmit."""
        self.endpoint.updated(session_id)
        self._after_input()

    def _after_input(self) -> None:
        self._dispatch()
        self._transmit.set()
        self._rearm()

    def _rearm(self) -> None:
        timer = self.endpoint.get_timer()
        deadline = math.inf if timer is None else timer
        if deadline != self._deadline:
            self._deadline = deadline
            self._timer_scope.deadline = deadline

    # -- events -----------------------------------------------------------------------

    def _dispatch(self) -> None:
        while (event := self.endpoint.next_event()) is not None:
            match event:
                case ConnectionReady():
                    self._on_ready(event.session_id, event.handshake)
                case ConnectionClosed():
                    self._on_closed(event.session_id, event.code, event.reason, event.by_peer)
                case ChannelRequested():
                    self._on_requested(event)
                case ChannelOpened():
                    opening = self._opening.pop((event.session_id, event.channel_id), None)
                    if opening is not None:
                        opening._on_answer(None)
                case ChannelRefused():
                    key = (event.session_id, event.channel_id)
                    opening = self._opening.pop(key, None)
                    self._channels.pop(key, None)
                    if opening is not None:
                        opening._on_answer(
                            ServiceRefused(opening.service, event.code, event.reason, event.application_code)
                        )
                case ChannelDataAvailable():
                    channel = self._channels.get((event.session_id, event.channel_id))
                    if isinstance(channel, ChannelStream):
                        channel._on_data()
                case ChannelEnded():
                    channel = self._channels.get((event.session_id, event.channel_id))
                    if channel is not None:
                        channel._on_end()
                case ChannelWritable():
                    channel = self._channels.get((event.session_id, event.channel_id))
                    if channel is not None:
                        channel._on_writable()
                case ChannelMessage():
                    channel = self._channels.get((event.session_id, event.channel_id))
                    if isinstance(channel, MessageChannel):
                        channel._on_message(event.data)
                case ChannelReset():
                    key = (event.session_id, event.channel_id)
                    broken = ChannelBroken(
                        f"channel reset{' by the peer' if event.by_peer else ''}: {_why(event.code, event.reason)}",
                        event.code,
                        by_peer=event.by_peer,
                        application_code=event.application_code,
                    )
                    self._fail_opening(key, event.code, event.reason)
                    channel = self._channels.get(key)
                    if channel is not None:
                        channel._on_broken(broken)
                case ChannelClosed():
                    self._channels.pop((event.session_id, event.channel_id), None)
                case ForeignDatagramReceived():
                    self.foreign[event.protocol] = self.foreign.get(event.protocol, 0) + 1
                    handler = self.foreign_handlers.get(event.protocol)
                    if handler is not None:
                        handler(event)
                case HandshakeCompleted() | MessageReceived() | SessionClosed():
                    if self.on_bare_event is not None:  # a bare session's (channels=False)
                        self.on_bare_event(event)
                case PathValidated() | PathActive() | PathDead() | PathAbandoned():
                    nodepaths.path_event(self, event)
                    if isinstance(event, PathActive) and event.address is not None:
                        self.reopen.moved(event.session_id, cast(Address, event.address))
                case PingAcknowledged():
                    pass  # nothing to route

    def _on_ready(self, session_id: int, handshake: HandshakeCompleted) -> None:
        peer = Peer(session_id, handshake.peer_id, handshake.sas, handshake.remote_static)
        self._by_session[session_id] = peer
        # The newest session to a peer carries its new channels: the peer may have restarted (its
        # old session is then dead and ends at its idle timeout) or roamed.
        self._peers[peer.peer_id] = peer
        address = self.endpoint.address_of(session_id)
        if address is not None:
            self.reopen.moved(session_id, cast(Address, address))
        self._notify("peer_connected", peer_id=str(peer.peer_id), address=_show(address))
        connecting = self._connecting.pop(session_id, None)
        if connecting is not None:
            connecting.send_nowait(peer)

    def _on_closed(self, session_id: int, code: ErrorCode, reason: str, by_peer: bool) -> None:
        connecting = self._connecting.pop(session_id, None)
        if connecting is not None:
            connecting.send_nowait(ConnectFailed(code, reason))
        peer = self._by_session.pop(session_id, None)
        self.reopen.closed(session_id, peer, code, reason)
        if peer is not None and self._peers.get(peer.peer_id) is peer:
            del self._peers[peer.peer_id]
            replacement = next((p for p in self._by_session.values() if p.peer_id == peer.peer_id), None)
            if replacement is not None:  # another session to the same peer takes over
                self._peers[peer.peer_id] = replacement
            else:
                self._notify("peer_disconnected", peer_id=str(peer.peer_id), why=_why(code, reason))
        who = "the peer" if by_peer else "this side"
        broken = ChannelBroken(f"connection closed by {who}: {_why(code, reason)}", code, by_peer=by_peer)
        for key in [key for key in self._opening if key[0] == session_id]:
            self._fail_opening(key, code, reason)
        for key in [key for key in self._channels if key[0] == session_id]:
            self._channels.pop(key)._on_broken(broken)

    def _fail_opening(self, key: tuple[int, int], code: ErrorCode, reason: str) -> None:
        """A channel this side is opening ended before the peer answered: its ``connect`` raises."""
        opening = self._opening.pop(key, None)
        if opening is not None:
            opening._on_answer(ServiceRefused(opening.service, code, reason, None))

    def _on_requested(self, event: ChannelRequested) -> None:
        connection = self.endpoint.connection(event.session_id)
        peer = self._by_session.get(event.session_id)
        if connection is None or peer is None:
            return
        held = connection.channels.get(event.channel_id)
        if held is None or held.state is not ChannelState.REQUESTED:
            return  # stale: a RESET or an error later in the same packet already closed it
        now = trio.current_time()
        listener = self._listeners.get(event.service)
        kind = ChannelKind.STREAM if event.kind == "stream" else ChannelKind.MESSAGE
        if listener is None or listener.kind is not kind:
            connection.refuse_channel(event.channel_id, now, ErrorCode.SERVICE_UNKNOWN, f"no {event.kind} service")
            self._notify("channel_refused", peer_id=str(peer.peer_id), service=event.service, why="no_service")
        elif listener.allow is not None and not listener.allow(peer.peer_id):
            connection.refuse_channel(event.channel_id, now, NOT_ALLOWED, "not allowed")
            self._notify("channel_refused", peer_id=str(peer.peer_id), service=event.service, why="not_allowed")
        else:
            channel = self._make_channel(peer, event.channel_id, event.service, kind)
            try:
                listener._send.send_nowait(channel)
            except (trio.WouldBlock, trio.ClosedResourceError):
                self._channels.pop((event.session_id, event.channel_id), None)
                connection.refuse_channel(event.channel_id, now, BUSY, "busy")
                self._notify("channel_refused", peer_id=str(peer.peer_id), service=event.service, why="busy")
            else:
                connection.accept_channel(event.channel_id, now)
                self._notify("channel_opened", peer_id=str(peer.peer_id), service=event.service, direction="in")
        self.endpoint.updated(event.session_id)
        self._transmit.set()

    def _make_channel(
        self, peer: Peer, channel_id: int, service: str, kind: ChannelKind, *, answered: bool = True
    ) -> ChannelStream | MessageChannel:
        channel: ChannelStream | MessageChannel
        if kind is ChannelKind.STREAM:
            channel = ChannelStream(self, peer.session_id, channel_id, service, peer.peer_id)
        else:
            queue = self._base_channels.message_queue
            channel = MessageChannel(self, peer.session_id, channel_id, service, peer.peer_id, queue=queue)
        if answered:  # a channel the peer opened: this side's accept is the answer
            channel._answered.set()
        self._channels[(peer.session_id, channel_id)] = channel
        return channel

    # -- paths -------------------------------------------------------------------------

    def _declare(self, local: int, transport: Transport) -> None:
        """Tell the endpoint what socket ``local`` is: its path kind and rank (spec/paths.md §4).

        A transport says it with ``path_kind`` ("datagram" or "stream") and ``path_rank``; a plain
        UDP socket has neither: a direct datagram path, rank 0.  One whose datagrams leave through
        another socket (QUIC sharing a UDP socket) names that socket's index in ``shares_socket``.
        """
        kind, rank = routeconfig.kind_and_rank(transport)
        shares = getattr(transport, "shares_socket", None)  # QUIC on a UDP socket: one fate (PTH-4.8)
        self.endpoint.declare_local(local, kind=kind, rank=rank, shares_socket=shares)

    def add_path(self, peer_id: PeerId, address: object, *, local: int | None = None) -> int | None:
        """Another path to ``peer_id``'s session: ``address`` through socket ``local`` (default: the
        first that takes it), with that socket's kind and rank; the core validates it, then ranks it
        (spec/paths.md §3-§4).  The path id, or None without a session.  ValueError if no socket
        takes ``address``."""
        peer = self._peers.get(peer_id)
        if peer is None:
            return None
        if local is None:
            local = self._socket_for(address)
        remote = self.transports[local].check_address(address)
        kind, rank = routeconfig.kind_and_rank(self.transports[local])
        now = trio.current_time()
        path_id = self.endpoint.add_path(peer.session_id, remote, local, now, kind=kind, rank=rank)
        self._updated(peer.session_id)
        return path_id

    def pin(self, peer_id: PeerId, via: str | None) -> None:
        """Keep ``peer_id``'s session on paths carried by ``via`` (``udp``, ``quic``, ``turn`` or
        ``relay``) while one is usable, or (None) let the core rank its paths again.  Pinned paths
        rank before all others; the side that opened the session moves its data to one as soon as
        it answers a check; if the pinned carrier dies the data falls back as usual and comes back
        when it validates again (nodepaths.apply_pin).  ValueError for another ``via``."""
        if via is None:
            self.pins.pop(peer_id, None)
        elif via not in nodepaths.PIN_VIAS:
            raise ValueError(f"cannot pin to {via!r}: one of {', '.join(nodepaths.PIN_VIAS)}")
        else:
            self.pins[peer_id] = via
        nodepaths.apply_pin(self, peer_id)
        self._after_input()

    def via(self, local: Hashable) -> str:
        """What carries socket ``local``'s paths: ``udp``, ``quic``, ``turn`` or ``relay``."""
        if not isinstance(local, int) or not 0 <= local < len(self.transports):
            return "?"
        return str(getattr(self.transports[local], "kind", "udp"))

    @property
    def keepalive_interval(self) -> float | None:
        """The peer sessions' keepalive interval (new sessions get it; spec/paths.md §7)."""
        return self._base_channels.keepalive_interval

    def set_keepalive_interval(self, interval: float | None) -> None:
        """Set the peer sessions' keepalive interval from outside (spec/paths.md §7: the NAT layer
        learns it, nat.md §5.5): every open session announces it now (PTH-7.1), new ones start with it."""
        self._base_channels = dataclasses.replace(self._base_channels, keepalive_interval=interval)
        for peer in list(self._peers.values()):
            connection = self.endpoint.connection(peer.session_id)
            if connection is not None and connection.keepalive_interval != interval:
                connection.set_keepalive_interval(interval)
                self.endpoint.updated(peer.session_id)
        self._after_input()

    def path_lost(self, local: int, address: Address | None, reason: str) -> int:
        """The carrier behind socket ``local`` lost ``address`` (None: every address; port 0: every
        port of that IP): its paths are abandoned, a session left with none is closed with
        ``reason`` (nodepaths.py).  How many sessions it touched."""
        return nodepaths.path_lost(self, local, address, reason)

    def peer_paths(self, session_id: int) -> list[dict[str, object]]:
        """Session ``session_id``'s paths as status shows them (spec/appapi.md §3)."""
        return nodepaths.peer_paths(self, session_id)

    def _socket_for(self, address: object) -> int:
        """The first socket whose address family fits ``address``; ValueError with the reason if none."""
        errors = []
        for local, transport in enumerate(self.transports):
            try:
                transport.check_address(address)
            except ValueError as exc:
                errors.append(str(exc))
            else:
                return local
        raise ValueError("; ".join(errors) or "the node has no socket")

    def _transport(self, local: Hashable) -> Transport:
        """The socket the endpoint calls ``local``: the node names its sockets by their index."""
        return self.transports[cast(int, local)]

    def _channel_config_for(self, address: Hashable, local: Hashable) -> ChannelConfig:
        """The channel config of a path to ``address`` through socket ``local`` (routeconfig.py)."""
        return routeconfig.channel_config_for(self._base_channels, self._transport(local), cast(Address, address))


@contextlib.asynccontextmanager
async def open_node(
    keys: LocalKeys,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    hosts: Sequence[str] | None = None,
    config: SessionConfig | None = None,
    channels: ChannelConfig | None = None,
    transports: Sequence[Transport] | None = None,
) -> AsyncIterator[Node]:
    """A running node with a UDP socket on each of ``hosts`` (default: ``host``; port 0 picks one).

    ``transports`` replaces the sockets (tests pass emulated links).  On exit, every session is
    closed (the peers are told) and the sockets are released.
    """
    from p2pos.transports.udp import UdpTransport

    owned: list[Transport] = []
    try:
        if transports is None:
            for h in hosts or (host,):
                owned.append(await UdpTransport.bind(h, port))
            transports = owned
        node = Node(keys, transports, config=config, channels=channels)
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            try:
                yield node
            finally:
                now = trio.current_time()
                for peer in list(node._by_session.values()):
                    connection = node.endpoint.connection(peer.session_id)
                    if connection is not None:
                        connection.close(now, ErrorCode.APPLICATION_CLOSE, "node shutting down")
                        node.endpoint.updated(peer.session_id)
                with contextlib.suppress(OSError), trio.move_on_after(1):
                    await node._send_queued()
                nursery.cancel_scope.cancel()
    finally:
        for transport in owned:
            transport.close()
