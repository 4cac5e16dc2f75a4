"""Which packets arrived, and when to say so: the receive side of ACKs (spec/channels.md §4).

Packet numbers are record counters (spec/frames.md §1).  The tracker keeps the
received numbers as a short list of inclusive ranges, newest first, and decides
when an ACK is due, following RFC 9000 §13.2: at once when a packet arrives out
of order or every ``ack_every`` ack-eliciting packets, otherwise within
``max_ack_delay``.  Only the newest ``max_ranges`` ranges are kept: older
holes stay unreported, which at worst makes the peer retransmit data we have.
"""

from __future__ import annotations

from typing import Final

#: ACK-only packets received since the last ACK that make an ACK worth a ride along with data
#: (spec/channels.md §4): the peer learns now and then that its ACKs arrived.
ACK_ONLY_PER_ACK: Final = 8


class AckTracker:
    """Received packet numbers and the ACK timer."""

    __slots__ = (
        "_ack_every",
        "_ack_at",
        "_largest_time",
        "_max_ack_delay",
        "_max_ranges",
        "_ack_only",
        "_news",
        "_unacked_eliciting",
        "ranges",
    )

    def __init__(self, *, max_ack_delay: float = 0.025, ack_every: int = 2, max_ranges: int = 32) -> None:
        #: Inclusive (low, high) ranges, highest first, disjoint and not adjacent.
        self.ranges: list[list[int]] = []
        self._max_ack_delay = max_ack_delay
        self._ack_every = ack_every
        self._max_ranges = max_ranges
        self._unacked_eliciting = 0
        self._ack_at: float | None = None
        self._largest_time = 0.0
        # An ack-eliciting packet arrived since the last ACK was sent, and how many ACK-only packets
        # did: only then may an ACK ride along with data (has_news).
        self._news = False
        self._ack_only = 0

    @property
    def largest(self) -> int | None:
        return self.ranges[0][1] if self.ranges else None

    def on_packet(self, pn: int, ack_eliciting: bool, now: float) -> None:
        """Record one received packet (the record layer has already rejected duplicates)."""
        ranges = self.ranges
        in_order = not ranges or pn == ranges[0][1] + 1
        if not ranges or pn > ranges[0][1]:
            self._largest_time = now
            if ranges and pn == ranges[0][1] + 1:
                ranges[0][1] = pn
            else:
                ranges.insert(0, [pn, pn])
        else:
            self._insert_old(pn)
        if len(ranges) > self._max_ranges:
            del ranges[self._max_ranges :]
        if not ack_eliciting:
            self._ack_only += 1
            return
        self._news = True
        self._unacked_eliciting += 1
        if not in_order or self._unacked_eliciting >= self._ack_every:
            self._ack_at = now
        elif self._ack_at is None:
            self._ack_at = now + self._max_ack_delay

    def _insert_old(self, pn: int) -> None:
        ranges = self.ranges
        for i, (low, high) in enumerate(ranges):
            if low <= pn <= high:
                return
            if pn == low - 1:
                ranges[i][0] = pn
                if i + 1 < len(ranges) and ranges[i + 1][1] == pn - 1:
                    ranges[i][0] = ranges[i + 1][0]
                    del ranges[i + 1]
                return
            if pn == high + 1:  # only possible for i > 0, the head handled pn > largest
                ranges[i][1] = pn
                return
            if pn > high:
                ranges.insert(i, [pn, pn])
                return
        ranges.append([pn, pn])

    def ack_due(self, now: float) -> bool:
        return self._ack_at is not None and now >= self._ack_at

    def get_timer(self) -> float | None:
        return self._ack_at

    def has_ranges(self) -> bool:
        return bool(self.ranges)

    def has_news(self) -> bool:
        """Whether an ACK is worth sending along with other frames (spec/channels.md §4).

        True when an ack-eliciting packet arrived since the last ACK was sent,
        or ``ACK_ONLY_PER_ACK`` ACK-only packets did: acknowledging every ACK of a
        one-way transfer would make each of the sender's data packets carry an
        ACK for the receiver to process, for nothing; acknowledging them now and
        then lets the receiver forget its old ranges and sent ACKs (RFC 9000 §13.2.4).
        """
        return (self._news or self._ack_only >= ACK_ONLY_PER_ACK) and bool(self.ranges)

    def ack_delay(self, now: float) -> float:
        """Time since the largest packet arrived (reported in the ACK, RFC 9000 §13.2.5)."""
        return max(0.0, now - self._largest_time)

    def snapshot(self) -> list[tuple[int, int]]:
        """The ranges to put in an ACK frame, highest first."""
        return [(low, high) for low, high in self.ranges]

    def on_ack_acknowledged(self, largest: int) -> None:
        """The peer received an ACK whose largest acknowledged number was ``largest``.

        RFC 9000 §13.2.4: numbers up to it need not be acknowledged again, so the
        ranges shrink to what the peer has not yet seen acknowledged.
        """
        kept: list[list[int]] = []
        for low, high in self.ranges:
            if high <= largest:
                break
            kept.append([max(low, largest + 1), high])
        self.ranges = kept

    def on_ack_sent(self) -> None:
        """An ACK carrying every range went out: nothing is due until more arrives."""
        self._unacked_eliciting = 0
        self._ack_at = None
        self._news = False
        self._ack_only = 0
