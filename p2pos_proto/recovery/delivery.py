"""Delivery-rate samples for model-based congestion control (spec/recovery.md §5.6.2).

An implementation of draft-cheng-iccrg-delivery-rate-estimation with byte
counts: when a packet is sent, remember how much had been delivered by then
and when; when it is acknowledged, the bytes delivered since, divided by the
longer of the send and the acknowledgement intervals, is a sample of the
path's delivery rate.  ``bbr.Bbr`` owns one ``DeliveryRateSampler`` and feeds
it from its own ``on_packet_sent`` / ``on_packets_acked`` / ``on_packets_lost``.

The per-packet state lives on the ``recovery.SentPacket`` itself (the draft's
``P.*`` fields), so it is kept exactly as long as loss recovery keeps the
packet and costs no allocation or lookup of its own; a packet the sampler was
never told of (``delivered`` -1, e.g. a PMTU probe) gives no sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .recovery import SentPacket


class RateSample:
    """What one ACK teaches about the path (the draft's ``rs``), from its newest packet with send state.

    A plain class rather than a dataclass: one is made per ACK, and a dataclass's
    generated ``__init__`` runs as interpreted code even in the compiled core.
    Treat it as read-only.
    """

    __slots__ = ("delivered", "delivery_rate", "interval", "is_app_limited", "prior_delivered", "tx_in_flight")

    def __init__(
        self,
        *,
        delivery_rate: float | None,
        delivered: int,
        interval: float,
        prior_delivered: int,
        tx_in_flight: int,
        is_app_limited: bool,
    ) -> None:
        #: Bytes per second, or None when the interval was too short to be trusted (shorter than min RTT).
        self.delivery_rate = delivery_rate
        #: Bytes delivered over the interval.
        self.delivered = delivered
        #: ``max(send_elapsed, ack_elapsed)`` in seconds.
        self.interval = interval
        #: The sampler's total delivered bytes when the newest acknowledged packet was sent.
        self.prior_delivered = prior_delivered
        #: Bytes in flight when that packet was sent (including it).
        self.tx_in_flight = tx_in_flight
        #: Whether the sender was application-limited at any time this sample covers.
        self.is_app_limited = is_app_limited

    def __repr__(self) -> str:
        return (
            f"RateSample(delivery_rate={self.delivery_rate}, delivered={self.delivered}, interval={self.interval}, "
            f"prior_delivered={self.prior_delivered}, tx_in_flight={self.tx_in_flight}, "
            f"is_app_limited={self.is_app_limited})"
        )


class DeliveryRateSampler:
    """Connection-wide delivery counters (the draft's ``C.*``); per-packet state goes on the packets."""

    __slots__ = ("_app_limited_until", "_delivered_time", "_first_sent_time", "_started", "delivered", "lost")

    def __init__(self) -> None:
        #: Total bytes acknowledged (``C.delivered``).
        self.delivered = 0
        #: Total bytes declared lost.
        self.lost = 0
        # C.delivered_time: when ``delivered`` last grew; C.first_sent_time: the send time of the
        # newest packet acknowledged (the start of the current send interval).  Both are set by the
        # first packet sent (``_started``): the caller's clock may read anything, and intervals
        # measured from 0.0 would make the first samples a rate over the clock's whole reading.
        self._delivered_time = 0.0
        self._first_sent_time = 0.0
        self._started = False
        # C.app_limited: the delivered count that ends the current application-limited bubble; 0 if none.
        self._app_limited_until = 0

    def on_packet_sent(self, packet: SentPacket[Any], bytes_in_flight: int, *, app_limited: bool) -> None:
        """Record on ``packet`` the delivery state at its send; it is in flight and just sent.

        ``bytes_in_flight`` includes this packet.  ``app_limited``: the sender
        has nothing more to send now; samples taken until everything in flight
        is delivered are then marked application-limited (draft §3.4).
        """
        time_sent = packet.time_sent
        if bytes_in_flight <= packet.size or not self._started:
            # Nothing else in flight, or the first packet (``bytes_in_flight`` may count packets the
            # sampler is never told of, such as a PMTU probe sent first): both intervals start now.
            self._started = True
            self._first_sent_time = time_sent
            self._delivered_time = time_sent
        if app_limited:
            self._app_limited_until = max(self.delivered + bytes_in_flight, 1)
        packet.delivered = self.delivered
        packet.delivered_time = self._delivered_time
        packet.first_sent_time = self._first_sent_time
        packet.tx_in_flight = bytes_in_flight
        packet.app_limited = self._app_limited_until != 0

    def on_packets_acked(self, packets: Sequence[SentPacket[Any]], now: float, min_rtt: float) -> RateSample | None:
        """Count newly acknowledged packets (in packet-number order); one sample, or None without send state.

        ``min_rtt`` (0.0 while unknown) rejects samples over a shorter
        interval, which ACK compression would inflate (draft §3.3).
        """
        newest: SentPacket[Any] | None = None
        for packet in packets:
            self.delivered += packet.size
            if packet.delivered < 0:
                continue
            if newest is None or packet.delivered >= newest.delivered:
                newest = packet
        if packets:
            self._delivered_time = now
        if newest is not None:
            self._first_sent_time = newest.time_sent
        if self._app_limited_until and self.delivered > self._app_limited_until:
            self._app_limited_until = 0
        if newest is None:
            return None
        delivered = self.delivered - newest.delivered
        send_elapsed = newest.time_sent - newest.first_sent_time
        ack_elapsed = now - newest.delivered_time
        interval = max(send_elapsed, ack_elapsed)
        rate: float | None = None
        if interval > 0 and interval >= min_rtt:
            rate = delivered / interval
        return RateSample(
            delivery_rate=rate,
            delivered=delivered,
            interval=interval,
            prior_delivered=newest.delivered,
            tx_in_flight=newest.tx_in_flight,
            is_app_limited=newest.app_limited,
        )

    def on_packets_lost(self, packets: Sequence[SentPacket[Any]]) -> int | None:
        """Count newly lost packets; the bytes in flight when the newest of them was sent, if known."""
        tx_in_flight: int | None = None
        newest = -1.0
        for packet in packets:
            self.lost += packet.size
            if packet.delivered >= 0 and packet.time_sent >= newest:
                newest = packet.time_sent
                tx_in_flight = packet.tx_in_flight
        return tx_in_flight


class WindowedMax:
    """The largest sample over the last ``window`` round trips (BBR's bandwidth filter).

    A monotone queue with at most one entry per round, so it never holds more than ``window + 1``:
    a short list (an empty ``deque`` alone takes 760 bytes, a tenth of an idle connection).
    """

    __slots__ = ("_entries", "_window")

    def __init__(self, window: int) -> None:
        self._window = window
        self._entries: list[tuple[int, float]] = []

    @property
    def best(self) -> float:
        return self._entries[0][1] if self._entries else 0.0

    def update(self, round_count: int, value: float) -> None:
        entries = self._entries
        while entries and entries[-1][1] <= value:
            entries.pop()
        if not entries or entries[-1][0] != round_count:
            entries.append((round_count, value))
        expired = 0
        while entries[expired][0] <= round_count - self._window:
            expired += 1
        if expired:
            del entries[:expired]

    def reset(self) -> None:
        self._entries.clear()
