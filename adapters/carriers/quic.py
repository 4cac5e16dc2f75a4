"""QUIC carriers (transports/quic.py) as one of the node's sockets: one carrier per remote peer.

    async with open_quic_transport(keys.identity, "127.0.0.1") as transport:
        transport.expect(peer_address, peer_id)          # who must answer at that address
        async with open_node(keys, transports=[transport]) as node:
            await node.connect(peer_id, peer_address, "svc")

The node sees a datagram socket: ``local_address`` is the QUIC listener's.  The first datagram
the node sends to an address dials a carrier there, authenticated as the peer id given to
``expect`` (spec/quic.md §3); the datagrams wait in the carrier's outbox meanwhile.  Carriers
that peers dial to us are accepted and keyed by the address they come from, so the node's
replies go back through them.  Each datagram is one framed record on the carrier's stream
(spec/quic.md §4): no PMTU limits it, so ``max_udp_payload`` is ``STREAM_PACKET_SIZE``.

Nothing here raises into the node: a dial that fails, or a carrier that ends, is reported once
to ``on_lost`` (``CarrierLost`` with the carrier's address and QUIC's reason) and logged; what
was queued for it is counted in ``dropped``.  A later send to that address dials again.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Collection, Sequence
from typing import TYPE_CHECKING

import trio

from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.events import ForeignDatagramReceived
from p2pos.proto.identity.identity import Identity
from p2pos.proto.identity.peer_id import PeerId
from p2pos.transports import quic, quic_shared
from p2pos.transports.quic import QuicCarrier, QuicError, QuicListener
from p2pos.transports.quic_shared import SharedQuic

from .queues import Address, CarrierLost, Inbox, LostCallback, Outbox, ip_address, log, report

if TYPE_CHECKING:
    from p2pos.adapters.node import Node

#: The packet size the core should use on a stream-carried path: records are framed on a QUIC
#: stream, which splits them into QUIC packets itself, so larger records only save per-record work.
STREAM_PACKET_SIZE = 16384
#: What a shared socket hands to QUIC (spec/quic.md QUIC-5.1.1): ``quic`` (first byte 80-127 and 192-255)
#: and ``turn-channel`` (64-79, which QUIC short headers use too, RFC 9443): the node's own UDP
#: sockets carry no TURN channel data (TURN allocations have their own sockets).
SHARED_PROTOCOLS = ("quic", "turn-channel")
#: Addresses ``expect`` remembers (oldest forgotten first).
EXPECTED_ADDRESSES = 4096
#: How often a QUIC transport on a node's socket looks for carriers that no session's path uses;
#: one found unused at two looks in a row is closed (spec/quic.md QUIC-4.5): 30-60 s after its
#: last session ended, rather than QUIC's idle timeout, which follows the longest keepalive interval
#: (up to 901 s).
SWEEP_INTERVAL = 30.0


@dataclasses.dataclass(eq=False)
class _Link:
    """One carrier (or a dial under way) to one address."""

    address: Address
    outbox: Outbox
    carrier: QuicCarrier | None = None
    #: Replaced by a newer carrier from the same address, or closed because no session used it:
    #: its end is no loss.
    replaced: bool = False
    cancel: trio.CancelScope = dataclasses.field(default_factory=trio.CancelScope)


class QuicTransport:
    """The node's ``Transport`` over QUIC carriers; made by ``open_quic_transport``."""

    kind = "quic"
    #: What the core will make of paths through this socket (spec/paths.md on the paths branch:
    #: ``PathKind.STREAM``, rank 1 = after direct UDP, before TURN and a relay).
    path_kind = "stream"
    path_rank = 1

    def __init__(
        self,
        identity: Identity,
        listener: QuicListener,
        nursery: trio.Nursery,
        *,
        handshake_timeout: float,
        idle_timeout: float,
        on_lost: LostCallback | None,
    ) -> None:
        self.identity = identity
        self.listener = listener
        self.local_address: Address = (listener.host, listener.port)
        self._family = 6 if ":" in listener.host else 4
        self._nursery = nursery
        self._handshake_timeout = handshake_timeout
        self._idle_timeout = idle_timeout
        #: Told once per carrier that fails to dial or ends (``CarrierLost``).
        self.on_lost = on_lost
        self._expected: dict[Address, PeerId] = {}
        self._unexpected: set[Address] = set()
        self._links: dict[Address, _Link] = {}
        self._inbox = Inbox()
        self._closed = False
        #: The node's UDP socket this one sends through (``open_shared_quic_transport``), None: its own.
        self.shares_socket: int | None = None
        #: Datagrams lost: sent to an address no peer id is expected at, or queued for a carrier that failed.
        self.send_errors = 0
        self._lost_datagrams = 0
        #: Every loss reported, in order (``CarrierLost``): what ``status`` would show.
        self.losses: list[CarrierLost] = []
        #: Carriers ``sweep`` found unused at its last look (closed if still unused at the next).
        self._unused: set[Address] = set()
        #: Carriers closed because no session used them.
        self.released = 0

    @property
    def dropped(self) -> int:
        return self.send_errors + self._lost_datagrams + sum(link.outbox.dropped for link in self._links.values())

    # -- addresses -----------------------------------------------------------------------

    def expect(self, addr: object, peer_id: PeerId) -> None:
        """The peer that must answer at ``addr``: a carrier dialed there is refused unless it is ``peer_id``."""
        address = self._well_formed(addr)
        self._expected.pop(address, None)
        if len(self._expected) >= EXPECTED_ADDRESSES:
            del self._expected[next(iter(self._expected))]
        self._expected[address] = peer_id

    def punch(self, addr: object) -> None:
        """On a shared socket: open our NAT and firewall to ``addr`` for its QUIC dial (QUIC-5.1.4)."""
        address = self._well_formed(addr)
        if isinstance(self.listener, SharedQuic):
            self.listener.punch(*address)

    def carrier(self, addr: Address) -> QuicCarrier | None:
        """The open carrier to ``addr``, if there is one."""
        link = self._links.get(addr)
        return link.carrier if link is not None else None

    @property
    def peers(self) -> dict[Address, PeerId]:
        """Open carriers: address -> the peer id QUIC authenticated there."""
        return {addr: link.carrier.peer_id for addr, link in self._links.items() if link.carrier is not None}

    # -- the Transport protocol -------------------------------------------------------------

    def check_address(self, addr: object) -> Address:
        """``addr`` as (ip, port), if this transport can reach it: a carrier is open there or a peer
        id is expected there (``expect``); ValueError with the reason if not."""
        address = self._well_formed(addr)
        if address not in self._links and address not in self._expected:
            raise ValueError(f"no QUIC carrier to {_show(address)} and no peer id expected there: call expect() first")
        return address

    def _well_formed(self, addr: object) -> Address:
        """``addr`` as (ip, port) of the listener's family; ValueError with the reason if not."""
        return ip_address(addr, self._family, "this QUIC listener")

    def max_udp_payload(self, addr: Address) -> int:
        """``STREAM_PACKET_SIZE``: records are framed on a stream, no path MTU applies."""
        self._well_formed(addr)
        return STREAM_PACKET_SIZE

    async def send_batch(self, datagrams: Sequence[bytes], addr: Address) -> None:
        """Queue ``datagrams`` for the carrier to ``addr``, waiting for room while it is open.

        While the carrier is being dialed, what does not fit is a counted loss instead: a dial
        may take the whole handshake timeout, and the node's other peers must not wait for it.
        """
        link = self._link_for(addr)
        if link is not None and link.carrier is not None:
            await link.outbox.put(datagrams, addr)
            return
        taken = link.outbox.put_now(datagrams, addr) if link is not None else 0
        self.send_errors += len(datagrams) - taken
        await trio.lowlevel.checkpoint()

    def send_batch_now(self, datagrams: Sequence[bytes], addr: Address) -> int:
        link = self._link_for(addr)
        if link is None:
            self.send_errors += len(datagrams)
            return len(datagrams)
        return link.outbox.put_now(datagrams, addr)

    async def receive_runs(self) -> list[tuple[list[bytes], Address]]:
        return await self._inbox.take_runs()

    def sweep(self, in_use: Collection[Address]) -> list[Address]:
        """Close the open carriers whose addresses were not ``in_use`` (by any session's path) at
        this call and the one before (QUIC-4.5): with QUIC's CONNECTION_CLOSE, reported as no loss
        (the node has no path on them).  A carrier dialed or accepted since the last call, or still
        handshaking, is never closed at once: a session coming up on it has a whole interval to
        make its path.  Returns the addresses closed."""
        unused = {addr for addr, link in self._links.items() if link.carrier is not None and addr not in in_use}
        closed = sorted(unused & self._unused)
        for addr in closed:
            link = self._links[addr]
            link.replaced = True
            link.outbox.lose("no session used the carrier")
            link.cancel.cancel()
            log.info("QUIC carrier %s closed: no session used it", _show(addr))
        self.released += len(closed)
        self._unused = unused - set(closed)
        return closed

    def close(self) -> None:
        """Close every carrier (abruptly: the node has already closed its sessions) and stop dialing."""
        self._closed = True
        for link in list(self._links.values()):
            link.outbox.lose("the QUIC transport was closed")
            link.cancel.cancel()

    # -- carriers ------------------------------------------------------------------------

    def _link_for(self, addr: Address) -> _Link | None:
        """The link to ``addr``, dialing one if a peer id is expected there; None (a loss) if not."""
        link = self._links.get(addr)
        if link is not None:
            return link
        peer_id = self._expected.get(addr)
        if peer_id is None or self._closed:
            if peer_id is None and addr not in self._unexpected:
                if len(self._unexpected) >= EXPECTED_ADDRESSES:
                    self._unexpected.clear()
                self._unexpected.add(addr)  # logged once per address, not per datagram
                log.info("QUIC transport: datagrams to %s dropped: no carrier and no peer id expected", _show(addr))
            return None
        link = self._links[addr] = _Link(addr, Outbox())
        self._nursery.start_soon(self._dial, link, peer_id)
        return link

    async def _dial(self, link: _Link, peer_id: PeerId) -> None:
        host, port = link.address
        reason = "the carrier ended"
        with link.cancel:
            try:
                async with self._open_carrier(host, port, peer_id) as carrier:
                    link.carrier = carrier
                    reason = await self._carry(link, carrier)
            except (QuicError, OSError) as exc:
                reason = f"QUIC dial to {_show(link.address)} failed: {exc}"
            except Exception as exc:  # a bug below us: this carrier ends, the node goes on
                log.exception("QUIC carrier to %s failed", _show(link.address))
                reason = f"QUIC carrier to {_show(link.address)} failed: {exc!r}"
        self._end(link, reason)

    def _open_carrier(
        self, host: str, port: int, peer_id: PeerId
    ) -> contextlib.AbstractAsyncContextManager[QuicCarrier]:
        if isinstance(self.listener, SharedQuic):  # from the shared socket (spec/quic.md §5.1)
            return self.listener.dial(host, port, expected_peer_id=peer_id)
        return quic.dial(
            host,
            port,
            expected_peer_id=peer_id,
            identity=self.identity,
            handshake_timeout=self._handshake_timeout,
            idle_timeout=self._idle_timeout,
            local_host=self.local_address[0],
        )

    async def _accept_loop(self) -> None:
        while True:
            carrier = await self.listener.accept()
            host, port = carrier.remote_address
            address = (str(host), int(port))
            old = self._links.get(address)
            if old is not None:  # the peer dialed again from the same address: the new carrier wins
                old.replaced = True
                old.outbox.lose("replaced by a new carrier from the same address")
                old.cancel.cancel()
            link = self._links[address] = _Link(address, Outbox(), carrier)
            self._nursery.start_soon(self._serve_accepted, link, carrier)

    async def _serve_accepted(self, link: _Link, carrier: QuicCarrier) -> None:
        reason = "the carrier was replaced"
        with link.cancel:
            try:
                reason = await self._carry(link, carrier)
            except Exception as exc:  # a bug below us: this carrier ends, the node goes on
                log.exception("QUIC carrier from %s failed", _show(link.address))
                reason = f"QUIC carrier from {_show(link.address)} failed: {exc!r}"
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(quic.CLOSE_LINGER):
                    await carrier.aclose()
        self._end(link, reason)

    async def _carry(self, link: _Link, carrier: QuicCarrier) -> str:
        """Move records both ways until the carrier ends; why it ended."""
        why: list[str] = []
        async with trio.open_nursery() as nursery:

            async def send() -> None:
                while True:
                    try:
                        batches = await link.outbox.take()
                    except trio.EndOfChannel as end:
                        why.append(str(end) or "closed")
                        nursery.cancel_scope.cancel()
                        return
                    try:
                        for datagrams, _ in batches:
                            try:
                                await carrier.send_records(datagrams)
                            except LocalProtocolError:  # an empty or oversized datagram: lost, counted
                                self.send_errors += len(datagrams)
                    except QuicError as exc:
                        why.append(f"QUIC carrier to {_show(link.address)}: {exc}")
                        nursery.cancel_scope.cancel()
                        return

            async def receive() -> None:
                while True:
                    try:
                        record = await carrier.receive_record()
                    except QuicError as exc:
                        why.append(f"QUIC carrier to {_show(link.address)}: {exc}")
                        nursery.cancel_scope.cancel()
                        return
                    await self._inbox.put(record, link.address)

            nursery.start_soon(send)
            nursery.start_soon(receive)
        return why[0] if why else "the carrier ended"

    def _end(self, link: _Link, reason: str) -> None:
        if self._links.get(link.address) is link:
            del self._links[link.address]
        if link.outbox.lost is None:
            link.outbox.lose(reason)
        self._lost_datagrams += link.outbox.dropped
        if not self._closed and not link.replaced:
            self._report(link.address, reason)

    def _report(self, addr: Address, reason: str) -> None:
        event = CarrierLost(kind=self.kind, address=addr, reason=reason)
        self.losses.append(event)
        report(self.on_lost, event)


async def _close_unused(node: Node, local: int, transport: QuicTransport) -> None:
    """Every ``SWEEP_INTERVAL``: close the carriers no session's path on socket ``local`` used twice running."""
    from ..nodepaths import addresses_in_use  # it imports node.py, which imports the carriers

    while True:
        await trio.sleep(SWEEP_INTERVAL)
        transport.sweep(addresses_in_use(node, local))


def _show(addr: Address) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@contextlib.asynccontextmanager
async def open_quic_transport(
    identity: Identity,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    handshake_timeout: float = 10.0,
    idle_timeout: float = 60.0,
    on_lost: LostCallback | None = None,
) -> AsyncIterator[QuicTransport]:
    """A QUIC listener on ``host:port`` (0: a free port) and the transport over it, until the block ends.

    On exit every carrier is closed.  ``idle_timeout`` is QUIC's; keep it above the session's
    keepalive interval (spec/quic.md QUIC-4.5).
    """
    async with (
        quic.listen(host, port, identity, handshake_timeout=handshake_timeout, idle_timeout=idle_timeout) as listener,
        trio.open_nursery() as nursery,
    ):
        transport = QuicTransport(
            identity,
            listener,
            nursery,
            handshake_timeout=handshake_timeout,
            idle_timeout=idle_timeout,
            on_lost=on_lost,
        )
        nursery.start_soon(transport._accept_loop)
        try:
            yield transport
        finally:
            transport.close()
            nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def open_shared_quic_transport(
    node: Node,
    local: int = 0,
    *,
    handshake_timeout: float = 10.0,
    idle_timeout: float = 60.0,
    on_lost: LostCallback | None = None,
) -> AsyncIterator[QuicTransport]:
    """QUIC on the running ``node``'s UDP socket ``local`` (spec/quic.md §5.1), added to the node
    as one more socket (a stream path, rank 1) until the block ends.

    The node hands the QUIC datagrams that socket receives (``ForeignDatagramReceived``, protocols
    ``SHARED_PROTOCOLS``) to the QUIC driver, which sends through the socket without waiting; carriers are
    dialed from and accepted on that socket, so each of its addresses is a QUIC address too.
    """
    udp = node.transports[local]

    def send(data: bytes, addr: tuple[str, int]) -> None:
        udp.send_batch_now((data,), addr)  # not sent at once: lost, QUIC's recovery resends

    def feed(event: ForeignDatagramReceived) -> None:
        address = event.address
        if event.local == local and isinstance(address, tuple) and len(address) >= 2:
            shared.feed(event.data, (str(address[0]), int(address[1])))

    async with (
        quic_shared.share(
            send, udp.local_address, node.keys.identity, handshake_timeout=handshake_timeout, idle_timeout=idle_timeout
        ) as shared,
        trio.open_nursery() as nursery,
    ):
        transport = QuicTransport(
            node.keys.identity,
            shared,
            nursery,
            handshake_timeout=handshake_timeout,
            idle_timeout=idle_timeout,
            on_lost=on_lost,
        )
        transport.shares_socket = local  # its paths share the fate of that socket's (spec/paths.md PTH-4.8)
        from .failover import abandon_paths_on_loss  # it imports node.py, which imports the carriers

        previous = {protocol: node.foreign_handlers.get(protocol) for protocol in SHARED_PROTOCOLS}
        for protocol in SHARED_PROTOCOLS:
            node.foreign_handlers[protocol] = feed
        nursery.start_soon(transport._accept_loop)
        index = node.add_transport(transport)
        abandon_paths_on_loss(node, transport)
        nursery.start_soon(_close_unused, node, index, transport)
        try:
            yield transport
        finally:
            for protocol, handler in previous.items():
                if handler is None:
                    node.foreign_handlers.pop(protocol, None)
                else:
                    node.foreign_handlers[protocol] = handler
            transport.close()
            nursery.cancel_scope.cancel()
