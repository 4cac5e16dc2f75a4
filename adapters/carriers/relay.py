"""A WebSocket relay link as one of the node's sockets (spec/relay.md §7.2: a relay path).

    async with trio.open_nursery() as nursery:
        link = RelayLink(url, keys.identity)
        await nursery.start(link.run)
        transport = RelayTransport(link)
        local = node.add_transport(transport)        # a stream path, rank 3
        await node.connect(peer_id, transport.address_of(peer_id), "svc")

The node sees a socket whose peers have pseudo-addresses ``("relay:<peer id>", 0)``, one per
peer: sending to one WANTs that peer (REL-4.3; the peer must want us back before anything
passes) and hands each datagram to the link as one record (REL-7.5); what the link receives
comes back as runs from the sender's pseudo-address.  ``want(peer)`` pairs ahead of a session
(the side that answers: it learns the peer from a rendezvous introduction).

Nothing here raises into the node or waits: a record the link does not take (not paired yet,
its queue full) is a lost datagram, counted in ``dropped``; the session's end-to-end recovery
sends it again (spec/relay.md §1).  A pair that ends (the link dropped, the peer unwanted us)
is counted in ``unpaired`` and NOT reported as a lost carrier: the link reconnects and pairs
again by itself (REL-7.3, REL-7.4), and the core finds a silent path dead and probes it again
(spec/paths.md §4), whereas an abandoned path cannot come back.  ``close()`` (the relay given
up) reports ``CarrierLost`` with address None to ``on_lost``.

WANTs do not pile up: the relay allows a link ``max_wants`` of them (REL-5.2) and closes a link
that asks for more, and a daemon is introduced to every peer that looks it up.
``withdraw_idle(keep, now)`` UNWANTs each peer that is not in ``keep`` (the daemon passes its
peers with a session) and that the link has not wanted, sent to or heard from for ``WANT_IDLE``
seconds; sending to it again wants it again.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import trio

from p2pos.proto import PeerId
from p2pos.transports.wsrelay_client import RelayLink

from .queues import Address, CarrierLost, LostCallback, log, report

PREFIX = "relay:"
#: The largest record the node makes for a relay path (ChannelConfig.stream_frame_size's limit): against
#: 16384-byte records, 65000-byte ones take about half the CPU per byte in the relay and both links
#: (WebSocket framing and relay work are per message).
RECORD_CEILING = 65000
#: Records handed to the node in one ``receive_runs``.
RUN_LIMIT = 256
#: Seconds a WANT for a peer without a session stays after the link last used it (``withdraw_idle``).
WANT_IDLE = 300.0


class RelayTransport:
    """The node's ``Transport`` over a running ``RelayLink`` (see module docstring)."""

    kind = "relay"
    #: spec/paths.md: a stream-carried path, the last resort (direct 0 < QUIC 1 < TURN 2 < relay 3).
    path_kind = "stream"
    path_rank = 3

    def __init__(
        self, link: RelayLink, *, on_lost: LostCallback | None = None, clock: Callable[[], float] = trio.current_time
    ) -> None:
        self.link = link
        self._clock = clock
        #: Peer public key -> when the link last wanted, sent to or heard from it (``withdraw_idle``).
        self._used: dict[bytes, float] = {}
        self.url = f"{'wss' if link.tls else 'ws'}://{link.host}:{link.port}{link.path}"
        self.local_address: Address = (f"{PREFIX}{link.host}", link.port)
        self.on_lost = on_lost
        self._peers: dict[str, bytes] = {}  # pseudo-address host -> peer public key
        self._addresses: dict[bytes, Address] = {}  # peer public key -> pseudo-address
        #: Records the link did not take (not paired, queue full, closed), and pairs that ended.
        self.dropped = 0
        self.unpaired = 0
        self.closed = False
        link.on_unpaired = self._unpaired

    @staticmethod
    def address_of(peer: PeerId) -> Address:
        """The pseudo-address the node uses for ``peer`` through a relay."""
        return (f"{PREFIX}{peer}", 0)

    def want(self, peer: PeerId) -> None:
        """Ask the relay to pair us with ``peer`` (both sides must want each other)."""
        self._peers[f"{PREFIX}{peer}"] = peer.public_key
        self._used[peer.public_key] = self._clock()
        self.link.want(peer.public_key)

    def withdraw_idle(self, keep: Collection[bytes], now: float, idle: float = WANT_IDLE) -> list[bytes]:
        """UNWANT every peer not in ``keep`` the link has not used for ``idle`` seconds (see the
        module docstring); the peers withdrawn."""
        gone = [peer for peer, used in self._used.items() if peer not in keep and now - used >= idle]
        for peer in gone:
            del self._used[peer]
            self.link.unwant(peer)
        return gone

    def paired(self, peer: PeerId) -> bool:
        return self.link.client.paired(peer.public_key)

    # -- the Transport protocol ---------------------------------------------------------

    def check_address(self, addr: object) -> Address:
        if not (isinstance(addr, tuple) and len(addr) == 2 and isinstance(addr[0], str) and addr[1] == 0):
            raise ValueError(f"a relay address is ('relay:PEERID', 0), not {addr!r}")
        host = addr[0]
        if host not in self._peers:
            if not host.startswith(PREFIX):
                raise ValueError(f"{host!r} is not a relay address")
            try:
                peer = PeerId.parse(host[len(PREFIX) :])
            except Exception as exc:  # InvalidPeerId says what is wrong
                raise ValueError(f"{host!r}: bad peer id: {exc}") from None
            self._peers[host] = peer.public_key
        return (host, 0)

    def max_udp_payload(self, addr: Address) -> int:
        return min(self.link.client.max_record, RECORD_CEILING)

    async def send_batch(self, datagrams: Sequence[bytes], addr: Address) -> None:
        """Send all of ``datagrams``, waiting while the link's queue is full (the node's backpressure)."""
        sent = self.send_batch_now(datagrams, addr)
        while sent < len(datagrams):
            await self.link.wait_room()
            sent += self.send_batch_now(datagrams[sent:], addr)
        await trio.lowlevel.checkpoint()

    def send_batch_now(self, datagrams: Sequence[bytes], addr: Address) -> int:
        """How many of ``datagrams`` were taken (sent, or dropped and counted); fewer when the
        link's queue is full: the node keeps the rest and calls ``send_batch``."""
        peer = self._peers.get(addr[0])
        if peer is None or self.closed:
            self.dropped += len(datagrams)
            return len(datagrams)
        self._used[peer] = self._clock()
        if not self.link.client.paired(peer):
            self.link.want(peer)  # the first send to a peer asks for it
        for taken, record in enumerate(datagrams):
            if not self.link.has_room(len(record)):
                return taken
            if not self.link.send(peer, record):
                self.dropped += 1
        return len(datagrams)

    async def receive_runs(self) -> list[tuple[list[bytes], Address]]:
        runs: list[tuple[list[bytes], Address]] = []
        last = None
        for peer, record in await self.link.receive_batch(RUN_LIMIT):
            if peer == last:
                runs[-1][0].append(record)
            else:
                self._used[peer] = self._clock()
                runs.append(([record], self._address(peer)))
                last = peer
        return runs

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            report(self.on_lost, CarrierLost(kind="relay", address=None, reason=f"relay {self.url} closed"))

    # -- internals ----------------------------------------------------------------------

    def _address(self, peer: bytes) -> Address:
        address = self._addresses.get(peer)  # per received run: spell each peer id once, not per record
        if address is None:
            address = self._addresses[peer] = (f"{PREFIX}{PeerId(peer)}", 0)
            self._peers.setdefault(address[0], peer)
        return address

    def _unpaired(self, peer: bytes) -> None:
        self.unpaired += 1
        log.info("relay %s: pair with %s ended (the link pairs again by itself)", self.url, PeerId(peer).short())
