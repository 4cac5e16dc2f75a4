"""Pacing: spread a congestion window's worth of packets over a round trip (spec/recovery.md §6, RFC 9002 §7.7).

A token bucket in bytes, refilled at ``N * congestion_window / smoothed_rtt``
(N = 1.25, so that the window can be used in full despite timer jitter) and
holding at most ``burst_packets`` datagrams, or at high rates ``BURST_INTERVAL``
of sending (at most ``MAX_BURST_PACKETS`` datagrams), and never more than the window.  It never sleeps and never reads
a clock: the connection asks ``next_send_time(now, size)``; if that is later
than ``now`` it arms its timer there instead of sending, and after sending it
calls ``on_packet_sent(now, size)``.  Call ``update_rate`` whenever the
congestion window or the smoothed RTT changes (after each ACK that produced an
RTT sample or moved the window); with a controller that sets its own rate
(``congestion.CongestionController.pacing_rate`` not None, e.g. ``bbr.Bbr``),
call ``set_rate`` instead.
"""

from __future__ import annotations

import math
from typing import Final

from ..errors import LocalProtocolError

#: RFC 9002 §7.7: pace at N times the window per RTT.
PACING_GAIN: Final = 1.25
#: The burst always allowed back to back, in datagrams.
BURST_PACKETS: Final = 10
#: At high rates the bucket also holds this much sending time (seconds): timers fire about every
#: millisecond (``PACING_GRANULARITY``), and a bucket of 10 datagrams would then cap the rate at 10
#: datagrams per wake-up (12 MB/s at 1200 bytes) whatever the path carries (quinn uses 2 ms too).
BURST_INTERVAL: Final = 0.002
#: ... but never more than this many datagrams at once.
MAX_BURST_PACKETS: Final = 256


class Pacer:
    """A token bucket over bytes (RFC 9002 §7.7)."""

    __slots__ = ("_burst_packets", "_capacity", "_gain", "_last", "_mds", "_rate", "_tokens")

    def __init__(
        self,
        *,
        congestion_window: int,
        smoothed_rtt: float,
        max_datagram_size: int = 1200,
        burst_packets: int = BURST_PACKETS,
        gain: float = PACING_GAIN,
    ) -> None:
        if max_datagram_size <= 0 or burst_packets < 1 or not gain > 0:
            raise LocalProtocolError("invalid pacer parameters")
        self._mds = max_datagram_size
        self._burst_packets = burst_packets
        self._gain = gain
        self._rate = 0.0
        self._capacity = float(burst_packets * max_datagram_size)
        # Start with a full bucket: the first burst goes out at once.
        self._tokens = self._capacity
        self._last: float | None = None
        self.update_rate(congestion_window, smoothed_rtt)

    @property
    def rate(self) -> float:
        """Bytes per second; ``math.inf`` when the RTT is still zero (no pacing)."""
        return self._rate

    @property
    def capacity(self) -> float:
        """The bucket size in bytes (the largest burst)."""
        return self._capacity

    def update_rate(self, congestion_window: int, smoothed_rtt: float, max_datagram_size: int | None = None) -> None:
        """Re-derive the rate from the window and the RTT (and the path MTU, if it changed)."""
        if smoothed_rtt <= 0:
            self._rate = math.inf
        else:
            self._rate = self._gain * congestion_window / smoothed_rtt
        self._set_capacity(congestion_window, max_datagram_size)

    def set_rate(self, rate: float, congestion_window: int, max_datagram_size: int | None = None) -> None:
        """Pace at ``rate`` bytes per second, as the congestion controller says (spec/recovery.md §6).

        The gain does not apply; the burst stays bounded by the window, as in ``update_rate``.
        """
        if not 0 < rate < math.inf:
            raise LocalProtocolError("the pacing rate must be positive and finite")
        self._rate = float(rate)
        self._set_capacity(congestion_window, max_datagram_size)

    def _set_capacity(self, congestion_window: int, max_datagram_size: int | None) -> None:
        if max_datagram_size is not None:
            if max_datagram_size <= 0:
                raise LocalProtocolError("max_datagram_size must be positive")
            self._mds = max_datagram_size
        # At least the fixed burst, or BURST_INTERVAL of sending at the rate when that is more
        # (up to MAX_BURST_PACKETS); and bounded by the window: never more than cwnd at once.
        burst = float(self._burst_packets * self._mds)
        if self._rate != math.inf and self._rate * BURST_INTERVAL > burst:
            burst = min(self._rate * BURST_INTERVAL, float(MAX_BURST_PACKETS * self._mds))
        self._capacity = max(float(self._mds), min(burst, float(congestion_window)))
        self._tokens = min(self._tokens, self._capacity)

    def _refill(self, now: float) -> None:
        last = self._last
        if last is not None and now > last:
            self._tokens = min(self._capacity, self._tokens + (now - last) * self._rate)
        if last is None or now > last:
            self._last = now

    def next_send_time(self, now: float, packet_size: int) -> float:
        """The earliest time a packet of ``packet_size`` bytes may leave: ``now`` or later."""
        if self._rate == math.inf:
            return now
        self._refill(now)
        # A packet larger than the bucket waits for a full bucket, not forever.
        needed = min(float(packet_size), self._capacity)
        if self._tokens >= needed:
            return now
        return now + (needed - self._tokens) / self._rate

    def on_packet_sent(self, now: float, size: int) -> None:
        """Spend ``size`` bytes of tokens.  PTO probes, which are not paced, may drive the bucket negative."""
        if self._rate == math.inf:
            return
        self._refill(now)
        self._tokens -= size
