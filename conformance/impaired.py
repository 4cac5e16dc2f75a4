"""The impaired-network mode: a seeded emulated link between the runner and the IUT.

The QUIC interop runner puts a network simulator between client and server; here the
runner's channel-layer ``Peer`` (``cases_channels``) gets the same, in virtual time and
in-process.  ``ImpairedPeer`` is a ``Peer`` whose datagrams to and from the IUT cross

* **chosen drops**: "drop the IUT's 2nd and 4th data packets" (``drop_data``), or every
  packet it sends from now on (``blackhole``), so that a case knows exactly what was lost;
* a **path MTU** (``path_mtu``): the IUT's datagrams above it are dropped, from the
  handshake's last packets on;
* a **seeded link** (``p2pos.proto.simulation.link.LinkEmulator``) with random loss,
  reordering, duplication, delay and blackholes (``link=LinkConfig(...)``, and
  ``link_back`` for the runner's direction if it differs); the same seed gives the same
  deliveries, and ``describe()`` names the seed for the case's detail string.

Nothing reads a clock: the IUT is told every time (``now``), and ``run(until)`` moves the
virtual time from event to event (a delivery, or the IUT's own ``timer``).  The handshake
is never impaired (but for ``path_mtu``); the impairment starts when ``Peer.__init__`` has
returned.  Without a seeded link, what passes arrives at once and a case drives the time
itself (``timer``, ``send(..., at=)``), as the other ``ch/`` cases do.

Every packet the IUT sent is kept in ``sent`` (delivered or not), with its size and when it
left, so that cases can check what the IUT resent and how much it had in flight.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable
from typing import Any

from p2pos.proto.channels import frames as ch
from p2pos.proto.errors import ProtocolError
from p2pos.proto.session.wire import RECORD_HEADER, PacketType
from p2pos.proto.simulation.link import LinkConfig, LinkEmulator

from .cases_channels import Packet, Peer, Reply, ack_of
from .checks import CaseFailed
from .iut import Iut
from .reference import out_of

#: The two ends of the emulated link.
IUT, REF = "iut", "ref"


@dataclasses.dataclass(slots=True)
class Sent:
    """One DATA record the IUT sent, as the runner saw it leave (before any impairment)."""

    packet: Packet
    size: int
    time: float
    delivered: bool

    @property
    def ack_eliciting(self) -> bool:
        """Holds a frame other than ACK and PADDING (recovery.md §1)."""
        return any(not isinstance(f, ch.Ack | ch.Padding) for f in self.packet.frames)

    def carries_stream(self) -> bool:
        return any(isinstance(f, ch.Stream) for f in self.packet.frames)


_local = threading.local()


def record_seeds() -> list[int]:
    """Start recording, for the case about to run on this thread, the seed of every seeded link
    it makes; returns the list the seeds go into (the runner reports them)."""
    _local.seeds = []
    seeds: list[int] = _local.seeds
    return seeds


class ImpairedPeer(Peer):
    """A ``Peer`` with an impaired path to the IUT; see the module docstring."""

    def __init__(
        self,
        iut: Iut,
        *,
        drop_data: Iterable[int] = (),
        link: LinkConfig | None = None,
        link_back: LinkConfig | None = None,
        seed: int = 0,
        path_mtu: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.active = False
        #: Ordinals (1-based) of the IUT's packets carrying STREAM frames that are dropped.
        self.drop_data = frozenset(drop_data)
        self.data_count = 0
        self.blackhole = False
        self.seed = seed
        if link is not None and hasattr(_local, "seeds"):
            _local.seeds.append(seed)
        self.emulator: LinkEmulator[str] | None = (
            LinkEmulator(seed, link, link_back or link, ends=(IUT, REF)) if link is not None else None
        )
        #: The runner's packet numbers and when each first reached the IUT (seeded link only),
        #: and those that arrived above every number before them (in order).
        self.arrivals: dict[int, float] = {}
        self.in_order: set[int] = set()
        #: Datagrams of the IUT larger than this are dropped from the start, the handshake's
        #: last packets included (a path MTU below what the IUT may probe, recovery.md §7).
        self.path_mtu = path_mtu
        self.sent: list[Sent] = []
        self._by_pn: dict[int, Sent] = {}
        self.lost: list[Sent] = []
        self.iut_timer: float | None = None
        super().__init__(iut, **kwargs)
        self.active = True

    def describe(self) -> str:
        """The impairment in words, with the seed, for a case's detail string."""
        parts = []
        if self.drop_data:
            parts.append(f"dropped the IUT's data packets #{sorted(self.drop_data)}")
        if self.path_mtu is not None:
            parts.append(f"IUT->runner path MTU {self.path_mtu}")
        if self.emulator is not None:
            for src, name in ((IUT, "IUT->runner"), (REF, "runner->IUT")):
                cfg = self.emulator.config(src)
                parts.append(
                    f"{name}: loss {cfg.loss}, reorder {cfg.reorder}, duplicate {cfg.duplicate}, "
                    f"delay {cfg.delay}+{cfg.jitter}, blackholes {list(cfg.blackholes)}"
                )
            parts.insert(0, f"link seed {self.seed}")
        return "; ".join(parts) or "no impairment"

    # -- the runner's datagrams to the IUT -----------------------------------------------------

    def send_raw(self, plaintext: bytes, *, at: float | None = None, counter: int | None = None) -> Reply:
        if not self.active or self.emulator is None:
            return super().send_raw(plaintext, at=at, counter=counter)
        if at is not None:
            self.now = at
        record = self.link.data(plaintext) if counter is None else self.link.data(plaintext, counter=counter)
        self.emulator.send(REF, record, self.now)
        return Reply({"events": []}, [])  # delivered later, by ``run``

    # -- the IUT's datagrams to the runner -----------------------------------------------------

    def call(self, cmd: str, **fields: Any) -> Reply:
        answer = self.iut.ok(cmd, now=self.now, **fields)
        timer = answer.get("timer")
        self.iut_timer = float(timer) if isinstance(timer, int | float) else None
        datagrams = out_of(answer)
        if not self.active:
            return self._absorb(answer, datagrams)
        passed = [d for d in datagrams if self._keep(d)]
        if self.emulator is None:
            return self._absorb(answer, passed)
        for datagram in passed:
            self.emulator.send(IUT, datagram, self.now)
        return self._absorb(answer, [])

    def _absorb(self, answer: dict[str, Any], datagrams: list[bytes]) -> Reply:
        if self.path_mtu is not None and not self.active:  # later ones are in ``_keep``
            datagrams = [d for d in datagrams if self._keep(d)]
        return super()._absorb(answer, datagrams)

    def _keep(self, datagram: bytes) -> bool:
        """Record one of the IUT's datagrams; False if the chosen drops take it."""
        opened = self.link.open(datagram)
        if opened.ptype != PacketType.DATA:
            return not self.blackhole and (self.path_mtu is None or len(datagram) <= self.path_mtu)
        try:
            frames = ch.parse_frames_untrusted(opened.plaintext)
        except ProtocolError as exc:
            raise CaseFailed(f"the IUT's packet {opened.counter} does not parse: {exc}") from None
        # Through the seeded link a packet is delivered when it arrives (``run``).
        sent = Sent(Packet(opened.counter, frames), len(datagram), self.now, self.emulator is None)
        self.sent.append(sent)
        self._by_pn[opened.counter] = sent
        drop = self.blackhole or (self.path_mtu is not None and len(datagram) > self.path_mtu)
        if sent.carries_stream():
            self.data_count += 1
            drop = drop or self.data_count in self.drop_data
        if drop:
            sent.delivered = False
            self.lost.append(sent)
        return not drop

    # -- virtual time ------------------------------------------------------------------------

    def run(self, until: float, *, auto_ack: bool = True) -> None:
        """Move from event to event up to ``until``: deliveries either way and the IUT's timer.

        With ``auto_ack`` the runner acknowledges, at once, every ack-eliciting packet of the
        IUT that reaches it (through the link, like anything else it sends).
        """
        stuck = 0  # conn_timer calls in a row at one time that left the timer due
        while True:
            due = [t for t in (self.iut_timer, self._next_delivery()) if t is not None and t <= until]
            if not due:
                break
            if self.now >= min(due) and self.iut_timer is not None and self.iut_timer <= self.now:
                stuck += 1
                if stuck > 50:
                    raise CaseFailed(
                        f"the IUT's timer stays at {self.iut_timer} s: conn_timer at {self.now} s does not move it"
                    )
            else:
                stuck = 0
            self.now = max(self.now, min(due))
            if self.emulator is not None and self.emulator.next_delivery_time() is not None:
                for dst, data in self.emulator.deliver(self.now):
                    if dst == REF:
                        counter = RECORD_HEADER.unpack_from(data)[3]
                        if counter in self._by_pn:
                            self._by_pn[counter].delivered = True
                        before = len(self.received)
                        self._absorb({"events": []}, [data])
                        if auto_ack and any(_eliciting(p) for p in self.received[before:]):
                            self.ack()
                    else:
                        counter = RECORD_HEADER.unpack_from(data)[3]
                        if counter not in self.arrivals:
                            if all(counter > pn for pn in self.arrivals):
                                self.in_order.add(counter)
                            self.arrivals[counter] = self.now
                        self.call("conn_receive", data=data)
            if self.iut_timer is not None and self.iut_timer <= self.now:
                before = len(self.received)
                self.call("conn_timer")
                if auto_ack and self.emulator is None and any(_eliciting(p) for p in self.received[before:]):
                    self.ack()
        self.now = max(self.now, until)

    def _next_delivery(self) -> float | None:
        return None if self.emulator is None else self.emulator.next_delivery_time()

    def ack_all(self) -> Reply:
        """An ACK of every packet the runner received (an empty reply if none)."""
        if not self.received:
            return Reply({"events": []}, [])
        return self.send(ack_of(p.pn for p in self.received))


def _eliciting(packet: Packet) -> bool:
    return any(not isinstance(f, ch.Ack | ch.Padding) for f in packet.frames)


__all__ = ["IUT", "REF", "ImpairedPeer", "LinkConfig", "Sent"]
