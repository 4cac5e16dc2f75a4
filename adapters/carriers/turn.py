"""A TURN allocation as one of the node's sockets (spec/turn.md §1: "one more local socket").

    async with (
        open_turn_transport(server, credentials) as transport,   # allocates; transport.local_address
        open_node(keys, transports=[transport]) as node,         # is the relayed address
    ):
        await transport.add_peer(peer_relayed)                    # TRN-6.3: both sides, before data
        await node.connect(peer_id, peer_relayed, "svc")

(or ``TurnTransport(turn)`` over a ``TurnSocket`` already open, run by ``transport.running()``).

The node sees a datagram socket whose address is the relayed address: it sends to a peer's
address as seen from the relay (the peer's relayed address, or its public one) and receives
from it.  Sending installs the peer's permission and channel (the TURN client holds the data
until the permission is installed, TRN-6.1); ``add_peer`` installs it before anything is sent,
which the side that only answers needs (TRN-6.3).

Nothing here raises into the node: a send that fails is a lost datagram, counted in
``dropped`` and logged; an allocation that fails or is released is reported once to
``on_lost`` (``CarrierLost``, address None: the whole socket is gone), after which sends are
counted losses and ``receive_runs`` waits for ever (nothing more can arrive).  A peer whose
permission the server refuses (403, a quota) is reported as ``CarrierLost`` with the address
``(ip, 0)``: every port of that IP is unreachable through this allocation.
"""

from __future__ import annotations

import contextlib
import socket as _socket
import ssl
from collections.abc import AsyncIterator, Sequence

import trio

from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.nat.turn import TurnConfig
from p2pos.proto.nat.turn_config import TurnCredentials, TurnServer
from p2pos.proto.nat.turn_config import TurnTransport as TurnLeg
from p2pos.proto.nat.turn_events import TurnPeerFailed
from p2pos.transports import socket_options
from p2pos.transports.turn import TurnError, TurnSocket, open_turn_socket

from .queues import Address, CarrierLost, Inbox, LostCallback, Outbox, ip_address, log, report

#: TURN's overhead per datagram (spec/turn.md §7): a Send indication is the larger (36 bytes for an
#: IPv4 peer, 48 for IPv6), plus up to 3 bytes of padding; ChannelData is 4 (+ padding on streams).
SEND_INDICATION_OVERHEAD = {4: 36 + 3, 6: 48 + 3}
CHANNEL_DATA_OVERHEAD = 4
#: Padding to 4 bytes that a stream leg (TCP, TLS) adds to ChannelData.
STREAM_PADDING = 3
#: A STUN message, and so a TURN-wrapped datagram, is at most this long (spec/turn.md §7).
LARGEST_MESSAGE = 65535
#: The largest TURN message offered to a TURN path (TRN-6.5): coturn reads a client's UDP message
#: into a 16 KiB buffer, so ChannelData of 16384 bytes (16380 of payload) is the most it relays
#: (larger ones are dropped towards the peer and cut short towards the client).  The session's PMTU
#: search starts from here instead of from a 64 KiB loopback MTU: fewer lost probes.
TURN_MESSAGE_CEILING = 16384
#: The largest p2pos datagram offered when channels are used: ChannelData's 4-byte header less.
TURN_DATAGRAM_CEILING = TURN_MESSAGE_CEILING - 4


class TurnTransport:
    """The node's ``Transport`` over an open ``TurnSocket``; ``running()`` runs its tasks."""

    kind = "turn"
    #: What the core will make of paths through this socket (spec/paths.md on the paths branch:
    #: ``PathKind.DATAGRAM``, rank 2 = after direct UDP and QUIC, before a relay).
    path_kind = "datagram"
    path_rank = 2

    def __init__(self, turn: TurnSocket, *, on_lost: LostCallback | None = None) -> None:
        if turn.relayed is None:
            raise TurnError("the TURN socket has no allocation")
        self.turn = turn
        self.local_address: Address = turn.relayed
        self._family = 6 if ":" in turn.relayed[0] else 4
        #: Told once when the allocation is lost (``CarrierLost``, address None).
        self.on_lost = on_lost
        self._outbox = Outbox()
        self._inbox = Inbox()
        self._running = False
        #: Batches the sender task took from the outbox and has not handed to the TURN socket yet.
        self._in_hand = 0
        #: Datagrams may wait in the outbox (put there since the sender task last took it), and
        #: ``send_batch`` calls still putting: while either holds, nothing goes straight to the leg.
        self._queued = False
        self._putting = 0
        turn.on_peer_failed = self._peer_failed
        #: Datagrams lost: refused by the TURN client, or sent after the allocation was lost.
        self.send_errors = 0

    @property
    def lost(self) -> str | None:
        """Why the allocation is gone, or None while it works."""
        return self._outbox.lost

    @property
    def dropped(self) -> int:
        return self.send_errors + self._outbox.dropped

    # -- the Transport protocol -----------------------------------------------------

    def check_address(self, addr: object) -> Address:
        """``addr`` as (ip, port) of the relayed address's family; ValueError with the reason if not."""
        return ip_address(addr, self._family, "the TURN allocation's relayed address")

    def max_udp_payload(self, addr: Address) -> int:
        """The largest p2pos datagram that fits one TURN message on the leg (TRN-6.4, TRN-6.5).

        The leg's payload (a UDP datagram towards the server, or a STUN message on TCP/TLS), at
        most ``TURN_MESSAGE_CEILING``, less the wrapping's overhead: ChannelData's 4 bytes when
        channels are used (data goes in it once the channel is bound, TRN-6.1; padding only on a
        stream leg, whose limit is not a path MTU), else the Send indication's.  The relay-to-peer
        hop, or a server with a smaller buffer, may be narrower: the session's PMTU discovery finds
        that.  OSError if no route.
        """
        addr = self.check_address(addr)
        server = self.turn.server
        leg = LARGEST_MESSAGE
        if server.transport is TurnLeg.UDP:
            family = _socket.AF_INET6 if ":" in server.host else _socket.AF_INET
            mtu = socket_options.path_mtu(family, (server.host, server.port))
            leg = socket_options.max_udp_payload(mtu, family)
        if self.turn.client.config.use_channels:
            overhead = CHANNEL_DATA_OVERHEAD + (0 if server.transport is TurnLeg.UDP else STREAM_PADDING)
        else:
            overhead = SEND_INDICATION_OVERHEAD[self._family]
        return min(leg, LARGEST_MESSAGE, TURN_MESSAGE_CEILING) - overhead

    async def send_batch(self, datagrams: Sequence[bytes], addr: Address) -> None:
        sent = self._send_direct(datagrams, addr)
        if sent < len(datagrams):
            self._queued = True
            self._putting += 1
            try:
                await self._outbox.put(datagrams[sent:], addr)
            finally:
                self._putting -= 1

    def send_batch_now(self, datagrams: Sequence[bytes], addr: Address) -> int:
        sent = self._send_direct(datagrams, addr)
        if sent < len(datagrams):
            self._queued = True
            sent += self._outbox.put_now(datagrams[sent:], addr)
        return sent

    def _send_direct(self, datagrams: Sequence[bytes], addr: Address) -> int:
        """What goes straight to the UDP leg at once (TRN-8.2), only while nothing waits before it
        (the outbox empty, the sender task idle: order is kept); the rest goes through the outbox."""
        if self._queued or self._putting or self._in_hand or self._outbox.lost is not None:
            return 0
        return self.turn.send_now(datagrams, addr)

    async def receive_runs(self) -> list[tuple[list[bytes], Address]]:
        return await self._inbox.take_runs()

    def close(self) -> None:
        """Stop taking datagrams (the allocation itself is released by ``open_turn_socket``'s exit)."""
        self._outbox.lose("the TURN transport was closed")

    # -- TURN ------------------------------------------------------------------------

    async def add_peer(self, addr: object, *, wait: bool = True) -> None:
        """Let ``addr`` reach us through the relay (TRN-6.3); with ``wait``, until the server confirmed.

        Raises ValueError for a malformed address, TurnError if the server refuses the permission
        (the reason names its STUN error) or once the allocation is gone.
        """
        peer = self.check_address(addr)
        if self.lost is not None:
            raise TurnError(self.lost)
        try:
            await self.turn.add_peer(peer, wait=wait)
        except LocalProtocolError as exc:  # too many permissions, or the allocation just ended
            raise TurnError(str(exc)) from exc

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TurnTransport]:
        """Run the sender and receiver tasks for the duration of the block."""
        if self._running:
            raise RuntimeError("this TURN transport is already running")
        self._running = True
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sender)
            nursery.start_soon(self._receiver)
            try:
                yield self
            finally:
                nursery.cancel_scope.cancel()

    async def _sender(self) -> None:
        while True:
            try:
                batches = await self._outbox.take()
            except trio.EndOfChannel:
                return
            self._queued, self._in_hand = False, len(batches)
            for datagrams, addr in batches:
                self._in_hand -= 1
                try:
                    await self.turn.send_many(datagrams, addr)  # one flush (GSO runs on a UDP leg)
                except TurnError as exc:
                    self.send_errors += len(datagrams)
                    self._lose(str(exc))
                    return
                except LocalProtocolError as exc:  # the allocation ended between two checks
                    self.send_errors += len(datagrams)
                    self._lose(f"TURN {self.turn.server.url}: {exc}")
                    return

    async def _receiver(self) -> None:
        while True:
            try:
                batch = await self.turn.receive_batch()
            except TurnError as exc:
                self._lose(str(exc))
                return
            for data, peer in batch:
                await self._inbox.put(data, peer)

    def _peer_failed(self, failure: TurnPeerFailed) -> None:
        """Report a peer whose permission the server refused (a refused channel is no loss: data
        then goes in Send indications, TRN-6.1)."""
        ip, port = failure.peer
        if port == 0:  # a permission: the whole IP
            report(self.on_lost, CarrierLost(kind=self.kind, address=(ip, 0), reason=failure.reason))

    def _lose(self, reason: str) -> None:
        if self._outbox.lost is None:
            self._outbox.lose(reason)
            report(self.on_lost, CarrierLost(kind=self.kind, address=None, reason=reason))
        else:
            log.debug("TURN transport: %s (already lost)", reason)


@contextlib.asynccontextmanager
async def open_turn_transport(
    server: TurnServer,
    credentials: TurnCredentials,
    *,
    config: TurnConfig | None = None,
    ssl_context: ssl.SSLContext | None = None,
    release_timeout: float = 5.0,
    on_lost: LostCallback | None = None,
) -> AsyncIterator[TurnTransport]:
    """Allocate on ``server`` and run a ``TurnTransport`` over it until the block ends (then release).

    Raises TurnError if the allocation cannot be made (``open_turn_socket``).
    """
    async with (
        open_turn_socket(
            server, credentials, config=config, ssl_context=ssl_context, release_timeout=release_timeout
        ) as turn,
        TurnTransport(turn, on_lost=on_lost).running() as transport,
    ):
        yield transport
