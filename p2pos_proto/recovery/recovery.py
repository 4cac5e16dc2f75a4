"""Sent-packet tracking, loss detection and the probe timeout (spec/recovery.md §3-§4, RFC 9002 §6).

One ``LossRecovery`` per connection (the channel layer has a single packet
number space: the record counter, spec/frames.md §1).  It is driven by three
inputs and never reads a clock:

* ``on_packet_sent`` for every channel-layer packet, in packet-number order
  (``on_packet_number_skipped`` for record counters the channel layer does not
  track, such as KEEPALIVE or CLOSE records);
* ``on_ack_received`` for every ACK frame: returns the newly acknowledged and
  the newly lost packets (``AckResult``), which the caller hands to the
  congestion controller and, for the lost ones, to its retransmission queue;
* ``on_loss_detection_timeout`` when ``now`` reaches
  ``get_loss_detection_timer()``: either declares packets lost (time threshold)
  or asks for probe packets (PTO, RFC 9002 §6.2).

``bytes_in_flight`` is kept here; the congestion controller only decides the
window.  Packets live in a list sorted by packet number: acknowledged and lost
packets stay behind as tombstones until every older packet is resolved, then
the list is trimmed from the front, so ACK processing costs
``O(log n + newly acknowledged + lost)`` however many packets are in flight.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Final, Generic, TypeVar

from ..errors import LocalProtocolError
from .rtt import RttEstimator

#: RFC 9002 §6.1.1 kPacketThreshold: a packet is lost once a packet sent this many later is acknowledged.
PACKET_THRESHOLD: Final = 3
#: RFC 9002 §7.6.1 kPersistentCongestionThreshold, in probe timeouts.
PERSISTENT_CONGESTION_THRESHOLD: Final = 3
#: Ack-eliciting packets the caller may send when the probe timer fires (RFC 9002 §6.2.4 allows one or two).
PTO_PROBES: Final = 2
# The PTO backs off as 2**pto_count (RFC 9002 §6.2.1); the exponent is capped only so that
# the float cannot overflow: 2**30 PTOs is decades, the idle timeout ends the connection first.
_MAX_BACKOFF_EXPONENT: Final = 30
#: A packet this far or further below the next packet number MUST be declared lost, without a
#: congestion response (spec/recovery.md §4.5): the receiver's replay window (record.md §5,
#: WINDOW = 8128) may already have moved past it, so waiting for its ACK could be forever.
TOO_OLD: Final = 8128
# Trim the tombstones at the front of the packet list once there are this many (and half the list).
_COMPACT_AFTER: Final = 64

_OUTSTANDING: Final = 0
_ACKED: Final = 1
_LOST: Final = 2

P = TypeVar("P")


class SentPacket(Generic[P]):
    """One packet handed to ``LossRecovery.on_packet_sent`` (RFC 9002 A.1.1).

    ``payload`` is the caller's opaque token saying what the packet carried
    (which stream ranges, which control frames), so that it can retransmit the
    data of a lost packet or drop it once acknowledged.
    """

    __slots__ = (
        "ack_eliciting",
        "app_limited",
        "delivered",
        "delivered_time",
        "first_sent_time",
        "in_flight",
        "ordinal",
        "payload",
        "pn",
        "size",
        "state",
        "time_sent",
        "tx_in_flight",
    )

    def __init__(
        self, pn: int, time_sent: float, size: int, *, ack_eliciting: bool, in_flight: bool, payload: P
    ) -> None:
        #: The packet number (the record counter).
        self.pn = pn
        #: What the packet threshold counts (spec/paths.md PTH-2.2): the number itself, or with
        #: ``LossRecovery.own_numbers`` the packet's place among the packets of its path.
        self.ordinal = pn
        #: When it was sent.
        self.time_sent = time_sent
        #: Bytes counted against the congestion window (the datagram's UDP payload).
        self.size = size
        #: Whether it contains frames other than ACK and PADDING (RFC 9002 §2).
        self.ack_eliciting = ack_eliciting
        #: Whether it counts towards ``bytes_in_flight`` (RFC 9002 §2).
        self.in_flight = in_flight
        #: The caller's token.
        self.payload = payload
        # _OUTSTANDING, _ACKED or _LOST; read ``acked`` / ``lost``.
        self.state = _OUTSTANDING
        #: The delivery-rate state at its send (spec/recovery.md §5.6.2), written by
        #: ``delivery.DeliveryRateSampler``; ``delivered`` is -1 for a packet it was not told of.
        self.delivered = -1
        self.delivered_time = 0.0
        self.first_sent_time = 0.0
        self.tx_in_flight = 0
        self.app_limited = False

    @property
    def acked(self) -> bool:
        return self.state == _ACKED

    @property
    def lost(self) -> bool:
        return self.state == _LOST

    def __repr__(self) -> str:
        state = ("outstanding", "acked", "lost")[self.state]
        return f"SentPacket(pn={self.pn}, size={self.size}, time_sent={self.time_sent}, {state})"


def _first_above(packets: list[SentPacket[P]], pn: int, lo: int) -> int:
    """The index of the first packet from ``lo`` on whose number is above ``pn`` (the list is in number order).

    ``bisect_right`` with a key, written out: a key function is called through
    the generic interface even in the compiled core.
    """
    hi = len(packets)
    while lo < hi:
        mid = (lo + hi) // 2
        if packets[mid].pn <= pn:
            lo = mid + 1
        else:
            hi = mid
    return lo


class AckResult(Generic[P]):
    """What one ACK frame changed (returned by ``LossRecovery.on_ack_received``).

    Next, the caller: closes the connection with PROTOCOL_VIOLATION if
    ``acked_unsent`` (RFC 9000 §13.1; nothing else was changed); passes
    ``newly_acked`` to the congestion controller and frees their data; passes
    ``lost`` (except PMTU probes, RFC 9000 §14.4) to the congestion controller
    and queues their data for retransmission; calls
    ``on_persistent_congestion`` on the controller if ``persistent_congestion``;
    updates the pacer if ``rtt_updated``.

    A plain class rather than a dataclass: it is created for every ACK, and a
    generic dataclass cannot be compiled by mypyc (tools/compile_core.py).
    """

    __slots__ = ("acked_unsent", "lost", "newly_acked", "persistent_congestion", "rtt_updated")

    def __init__(
        self,
        *,
        newly_acked: list[SentPacket[P]] | None = None,
        lost: list[SentPacket[P]] | None = None,
        rtt_updated: bool = False,
        persistent_congestion: bool = False,
        acked_unsent: bool = False,
    ) -> None:
        #: Packets acknowledged for the first time, in packet-number order.
        self.newly_acked: list[SentPacket[P]] = newly_acked if newly_acked is not None else []
        #: Packets declared lost by this ACK, in packet-number order.
        self.lost: list[SentPacket[P]] = lost if lost is not None else []
        #: Whether the ACK produced an RTT sample (RFC 9002 §5.1).
        self.rtt_updated = rtt_updated
        #: Whether ``lost`` establishes persistent congestion (RFC 9002 §7.6).
        self.persistent_congestion = persistent_congestion
        #: The ACK covered a packet number above every number sent: the peer is lying.
        self.acked_unsent = acked_unsent


class TimeoutResult(Generic[P]):
    """What the loss detection timer did (returned by ``LossRecovery.on_loss_detection_timeout``).

    Next, the caller treats ``lost`` and ``persistent_congestion`` as for an
    ``AckResult``, then sends ``probes_to_send`` ack-eliciting packets
    regardless of the congestion window (RFC 9002 §7.5), preferably carrying
    the oldest unacknowledged data (``LossRecovery.outstanding()``), else a PING.
    """

    __slots__ = ("lost", "persistent_congestion", "probes_to_send")

    def __init__(
        self, *, lost: list[SentPacket[P]] | None = None, probes_to_send: int = 0, persistent_congestion: bool = False
    ) -> None:
        self.lost: list[SentPacket[P]] = lost if lost is not None else []
        self.probes_to_send = probes_to_send
        self.persistent_congestion = persistent_congestion


class LossRecovery(Generic[P]):
    """Sent packets, loss detection and the PTO for one packet number space (RFC 9002 §6).

    Packet numbers passed to ``on_packet_sent`` must increase (gaps allowed);
    ``now`` must never go backwards.  Call ``get_loss_detection_timer()`` after
    every call that changes state and arm the driver's timer with it.
    """

    __slots__ = (
        "_head",
        "_loss_time",
        "_outstanding",
        "_packets",
        "_sent_count",
        "_time_of_last_ack_eliciting",
        "ack_eliciting_in_flight",
        "bytes_in_flight",
        "largest_acked",
        "largest_acked_ordinal",
        "largest_sent",
        "own_numbers",
        "packet_threshold",
        "pto_count",
        "rtt",
    )

    def __init__(self, *, rtt: RttEstimator | None = None, packet_threshold: int = PACKET_THRESHOLD) -> None:
        if packet_threshold < 1:
            raise LocalProtocolError("packet_threshold must be at least 1")
        #: The RTT estimator this instance feeds (shared with the pacer and congestion controller).
        self.rtt = rtt if rtt is not None else RttEstimator()
        #: kPacketThreshold (RFC 9002 §6.1.1); 3 unless the peer is known to reorder.
        self.packet_threshold = packet_threshold
        #: Sum of ``size`` over outstanding in-flight packets (RFC 9002 §2).
        self.bytes_in_flight = 0
        #: Outstanding packets that are both ack-eliciting and in flight.
        self.ack_eliciting_in_flight = 0
        #: The highest packet number sent (or skipped), -1 before the first.
        self.largest_sent = -1
        #: The highest packet number the peer acknowledged, ``None`` before the first ACK.
        self.largest_acked: int | None = None
        #: The ordinal of ``largest_acked`` (the number itself unless ``own_numbers``).
        self.largest_acked_ordinal = -1
        #: False: every number of the space is this instance's (one path).  True (spec/paths.md §2,
        #: several paths share the space): ACK ranges also cover other paths' numbers, which this
        #: instance ignores; the caller checks for acknowledgements of unsent numbers; the packet
        #: threshold counts this instance's packets, not numbers.  Set with ``share_space``.
        self.own_numbers = False
        self._sent_count = 0
        #: Consecutive probe timeouts without an acknowledgement (RFC 9002 §6.2.1).
        self.pto_count = 0
        self._packets: list[SentPacket[P]] = []
        self._head = 0  # index of the first outstanding packet in _packets
        self._outstanding = 0
        self._loss_time: float | None = None
        self._time_of_last_ack_eliciting: float | None = None

    # -- inputs --------------------------------------------------------------------------------

    def on_packet_sent(
        self, pn: int, now: float, size: int, *, ack_eliciting: bool, in_flight: bool, payload: P
    ) -> SentPacket[P]:
        """Track a packet just sent (RFC 9002 A.5).  Then re-arm the timer.

        Raises ``LocalProtocolError`` if ``pn`` is not above every number sent.
        """
        if pn <= self.largest_sent:
            raise LocalProtocolError(f"packet number {pn} not above the largest sent {self.largest_sent}")
        if size < 0:
            raise LocalProtocolError("packet size must not be negative")
        packet = SentPacket(pn, now, size, ack_eliciting=ack_eliciting, in_flight=in_flight, payload=payload)
        if self.own_numbers:
            packet.ordinal = self._sent_count
            self._sent_count += 1
        self._packets.append(packet)
        self._outstanding += 1
        self.largest_sent = pn
        if in_flight:
            self.bytes_in_flight += size
            if ack_eliciting:
                self.ack_eliciting_in_flight += 1
                self._time_of_last_ack_eliciting = now
        return packet

    def share_space(self) -> None:
        """From now on other paths send numbers of this space too (``own_numbers``; spec/paths.md §2).

        Ordinals continue above the numbers used so far, so packets already sent keep their order.
        """
        if not self.own_numbers:
            self.own_numbers = True
            self._sent_count = self.largest_sent + 1

    def on_packet_number_skipped(self, pn: int) -> None:
        """Note a record counter used by a record this layer does not track (KEEPALIVE, CLOSE...).

        Only raises ``largest_sent``, so that an ACK covering that number is
        not taken for an acknowledgement of a number never sent.
        """
        if pn <= self.largest_sent:
            raise LocalProtocolError(f"packet number {pn} not above the largest sent {self.largest_sent}")
        self.largest_sent = pn

    def on_ack_received(
        self, ranges: Sequence[tuple[int, int]], ack_delay: float, now: float, *, rtt_sample: bool = True
    ) -> AckResult[P]:
        """Process one ACK frame (RFC 9002 A.7, §6.1).

        ``ranges`` are the acknowledged packet numbers as inclusive
        ``(low, high)`` pairs in any order (the ACK frame parser produces them);
        ``ack_delay`` is the peer's reported delay in seconds.  Packets already
        acknowledged or already declared lost are ignored (a late ACK of a lost
        packet is a spurious loss: its data has been queued again and that is
        harmless).  See ``AckResult`` for what to do next.  ``rtt_sample=False``: the ACK came
        on another path, so it gives this one no RTT sample (spec/paths.md PTH-2.3).
        """
        if not ranges:
            raise LocalProtocolError("an ACK frame has at least one range")
        largest = -1
        for low, high in ranges:
            if not 0 <= low <= high:
                raise LocalProtocolError(f"invalid ACK range ({low}, {high})")
            largest = max(largest, high)
        own = self.own_numbers
        if not own:
            if largest > self.largest_sent:
                # RFC 9000 §13.1: acknowledging a packet never sent is a PROTOCOL_VIOLATION.
                return AckResult(acked_unsent=True)
            if self.largest_acked is None or largest > self.largest_acked:
                self.largest_acked = self.largest_acked_ordinal = largest

        packets = self._packets
        head = self._head
        newly_acked: list[SentPacket[P]] = []
        found: SentPacket[P] | None = None  # the highest of our packets the ranges cover
        # Ranges in order of their lowest number: the packets found are then in number order too
        # (a packet in a range that overlaps an earlier one was found with the earlier one).
        for low, high in sorted(ranges):
            start = _first_above(packets, low - 1, head)
            stop = _first_above(packets, high, start)
            for index in range(start, stop):
                packet = packets[index]
                if packet.state == _OUTSTANDING:
                    packet.state = _ACKED
                    newly_acked.append(packet)
            if own and stop > start and (found is None or packets[stop - 1].pn > found.pn):
                found = packets[stop - 1]
        if found is not None and (self.largest_acked is None or found.pn > self.largest_acked):
            self.largest_acked = found.pn
            self.largest_acked_ordinal = found.ordinal
        if not newly_acked:
            return AckResult()

        ack_eliciting = False
        for packet in newly_acked:
            self._remove(packet)
            ack_eliciting = ack_eliciting or packet.ack_eliciting

        # RFC 9002 §5.1: a sample only when the largest acknowledged is newly acknowledged
        # and at least one newly acknowledged packet is ack-eliciting.
        rtt_updated = False
        last = newly_acked[-1]
        if last.pn == largest and ack_eliciting and rtt_sample:
            self.rtt.update(now - last.time_sent, ack_delay, now)
            rtt_updated = True

        lost, persistent = self._detect_lost(now)
        # RFC 9002 §6.2.1: an acknowledgement resets the PTO backoff.
        self.pto_count = 0
        self._advance_head()
        return AckResult(newly_acked=newly_acked, lost=lost, rtt_updated=rtt_updated, persistent_congestion=persistent)

    def on_loss_detection_timeout(self, now: float) -> TimeoutResult[P]:
        """Handle the loss detection timer (RFC 9002 A.9).  Then re-arm the timer.

        Does nothing if ``now`` is before ``get_loss_detection_timer()`` or no
        timer is armed, so a driver may call it on any wake-up.
        """
        timer = self.get_loss_detection_timer()
        if timer is None or now < timer:
            return TimeoutResult()
        if self._loss_time is not None:
            # Time threshold loss detection (RFC 9002 §6.1.2).
            lost, persistent = self._detect_lost(now)
            self._advance_head()
            return TimeoutResult(lost=lost, persistent_congestion=persistent)
        # Probe timeout (RFC 9002 §6.2): no packet is declared lost; back off and probe.
        self.pto_count += 1
        return TimeoutResult(probes_to_send=PTO_PROBES)

    def declare_too_old(self, next_pn: int) -> list[SentPacket[P]]:
        """Declare lost every outstanding packet ``TOO_OLD`` or more below ``next_pn`` (recovery.md §4.5).

        ``next_pn`` is the number the next packet of the space will get (the session's
        next record counter: packets of other paths count too).  The caller queues the
        data of the packets returned again but gives them to no congestion controller:
        such a packet was declared lost because of how many packets followed it, which
        says nothing about congestion.  Costs one comparison when nothing is that old.
        """
        limit = next_pn - TOO_OLD  # numbers <= limit are too old
        packets = self._packets
        head = self._head
        if head >= len(packets) or packets[head].pn > limit:
            return []
        lost: list[SentPacket[P]] = []
        for index in range(head, len(packets)):
            packet = packets[index]
            if packet.pn > limit:
                break
            if packet.state == _OUTSTANDING:
                packet.state = _LOST
                self._remove(packet)
                lost.append(packet)
        if self._outstanding == 0 or self.ack_eliciting_in_flight == 0:
            self._loss_time = None
        self._advance_head()
        return lost

    # -- outputs -------------------------------------------------------------------------------

    def get_loss_detection_timer(self) -> float | None:
        """When to call ``on_loss_detection_timeout``, ``None`` for never (RFC 9002 A.8)."""
        if self._loss_time is not None:
            return self._loss_time
        if self.ack_eliciting_in_flight == 0 or self._time_of_last_ack_eliciting is None:
            return None
        return self._time_of_last_ack_eliciting + self.pto_period()

    def pto_period(self) -> float:
        """The current probe timeout including backoff: ``pto_duration * 2**pto_count``."""
        return self.rtt.pto_duration() * (1 << min(self.pto_count, _MAX_BACKOFF_EXPONENT))

    def persistent_congestion_duration(self) -> float:
        """RFC 9002 §7.6.1: ``pto_duration * kPersistentCongestionThreshold`` (no backoff)."""
        return self.rtt.pto_duration() * PERSISTENT_CONGESTION_THRESHOLD

    @property
    def outstanding_count(self) -> int:
        """Packets neither acknowledged nor declared lost."""
        return self._outstanding

    def outstanding(self) -> Iterator[SentPacket[P]]:
        """Packets neither acknowledged nor declared lost, oldest first (for PTO probes).

        Do not call the inputs while iterating.
        """
        packets = self._packets
        for index in range(self._head, len(packets)):
            packet = packets[index]
            if packet.state == _OUTSTANDING:
                yield packet

    def oldest_ack_eliciting_time(self) -> float | None:
        """When the oldest outstanding ack-eliciting packet in flight was sent (None: there is none)."""
        if self.ack_eliciting_in_flight == 0:
            return None
        packets = self._packets
        for index in range(self._head, len(packets)):
            packet = packets[index]
            if packet.state == _OUTSTANDING and packet.ack_eliciting and packet.in_flight:
                return packet.time_sent
        return None

    def discard_all(self) -> list[SentPacket[P]]:
        """Forget every outstanding packet (the connection is closing); returns them.

        Afterwards ``bytes_in_flight`` is 0 and no timer is armed.
        """
        remaining = list(self.outstanding())
        self._packets = []
        self._head = 0
        self._outstanding = 0
        self.bytes_in_flight = 0
        self.ack_eliciting_in_flight = 0
        self._loss_time = None
        return remaining

    # -- internals -----------------------------------------------------------------------------

    def _remove(self, packet: SentPacket[P]) -> None:
        """Undo ``packet``'s accounting (its state is already ACKED or LOST)."""
        self._outstanding -= 1
        if packet.in_flight:
            self.bytes_in_flight -= packet.size
            if packet.ack_eliciting:
                self.ack_eliciting_in_flight -= 1

    def _detect_lost(self, now: float) -> tuple[list[SentPacket[P]], bool]:
        """RFC 9002 A.10 ``DetectAndRemoveLostPackets`` plus the §7.6.2 persistent congestion test.

        Walks the outstanding packets oldest first up to the largest
        acknowledged.  Packet numbers and send times both increase along the
        list, so the first packet that is not lost ends the walk: every later
        one is younger and closer to the largest acknowledged; its send time
        plus the loss delay is the next ``loss_time``.
        """
        self._loss_time = None
        largest_acked = self.largest_acked
        lost: list[SentPacket[P]] = []
        if largest_acked is None:
            return lost, False
        rtt = self.rtt
        loss_delay = rtt.loss_delay()
        lost_below = self.largest_acked_ordinal - self.packet_threshold  # ordinals <= this are lost
        first_sample = rtt.first_sample_time
        congestion_duration = self.persistent_congestion_duration()
        period_start: float | None = None
        persistent = False
        packets = self._packets
        for index in range(self._head, len(packets)):
            packet = packets[index]
            if packet.pn > largest_acked:
                break
            state = packet.state
            if state == _ACKED:
                # RFC 9002 §7.6.2: an acknowledged packet between two lost ones ends the period.
                period_start = None
                continue
            if state == _LOST:
                continue
            # ``time_sent + loss_delay <= now`` rather than ``time_sent <= now - loss_delay``:
            # the same float expression as the timer, so a timer fired at its deadline
            # always finds the packet lost (the other form can miss by one rounding).
            if packet.time_sent + loss_delay <= now or packet.ordinal <= lost_below:
                packet.state = _LOST
                self._remove(packet)
                lost.append(packet)
                # RFC 9002 §7.6.2: two ack-eliciting packets, both sent after the first RTT
                # sample, more than the persistent congestion duration apart.
                if packet.ack_eliciting and first_sample is not None and packet.time_sent > first_sample:
                    if period_start is None:
                        period_start = packet.time_sent
                    elif packet.time_sent - period_start > congestion_duration:
                        persistent = True
            else:
                self._loss_time = packet.time_sent + loss_delay
                break
        return lost, persistent

    def _advance_head(self) -> None:
        """Skip resolved packets at the front; drop them once there are enough."""
        packets = self._packets
        head = self._head
        end = len(packets)
        while head < end and packets[head].state != _OUTSTANDING:
            head += 1
        if head == end:
            # Nothing outstanding: a fresh list, so that an idle connection keeps no tombstones
            # and no over-allocated list (the benchmark of bench/memory.py).
            if end:
                self._packets = []
            head = 0
        elif 2 * head >= end and (head >= _COMPACT_AFTER or end <= _COMPACT_AFTER):
            # Mostly tombstones: drop them (always when the list is short, so that a quiet
            # connection does not keep them; when it is long, only once there are enough).
            del packets[:head]
            head = 0
        self._head = head
