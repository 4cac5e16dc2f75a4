"""Congestion control: NewReno (RFC 9002 §7) and CUBIC (RFC 9438) (spec/recovery.md §5).

A controller decides the congestion window (and, if it has a model of the
path, the pacing rate); ``recovery.LossRecovery`` owns ``bytes_in_flight`` and
tells the caller which packets were acknowledged or lost.  After sending each
in-flight packet the connection calls ``on_packet_sent``.  After each ACK it
calls, in this order: ``on_packets_acked`` (newly acknowledged),
``on_packets_lost`` (newly lost, except PMTU probes),
``on_persistent_congestion`` (if reported); then it paces at ``pacing_rate``
if that is not None (else at a rate derived from the window, spec/recovery.md
§6), and sends while ``available(bytes_in_flight)`` is at least one packet.
``bbr.Bbr`` is the third controller behind this interface.

All sizes are bytes of datagram payload; ``max_datagram_size`` is the current
path MTU (``pmtu.PmtuDiscovery.current_mtu``): call ``set_max_datagram_size``
when it changes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

from ..errors import LocalProtocolError
from .recovery import SentPacket
from .rtt import RttEstimator

#: RFC 9002 §7.2: the initial window is 10 datagrams, capped at max(14720, 2 * max_datagram_size).
INITIAL_WINDOW_PACKETS: Final = 10
#: RFC 9002 §7.2 kMinimumWindow, in datagrams.
MINIMUM_WINDOW_PACKETS: Final = 2
#: RFC 9002 §7.3.2 kLossReductionFactor.
LOSS_REDUCTION_FACTOR: Final = 0.5
#: RFC 9438 §5.1 C, in segments per second cubed.
CUBIC_C: Final = 0.4
#: RFC 9438 §4.6 beta_cubic, the multiplicative decrease factor.
CUBIC_BETA: Final = 0.7
#: RFC 9438 §4.3 alpha_cubic: makes the Reno-friendly estimate as fair as Reno with beta_cubic.
CUBIC_ALPHA: Final = 3 * (1 - CUBIC_BETA) / (1 + CUBIC_BETA)
#: The default maximum datagram size: the path MTU every p2pos path supports (spec/frames.md §1).
DEFAULT_DATAGRAM_SIZE: Final = 1200


def initial_window(max_datagram_size: int) -> int:
    """RFC 9002 §7.2: ``min(10 * mds, max(14720, 2 * mds))``."""
    return min(INITIAL_WINDOW_PACKETS * max_datagram_size, max(14720, 2 * max_datagram_size))


class CongestionController:
    """What the connection needs from a congestion controller: the base of NewReno, CUBIC and BBR.

    A base class rather than a Protocol, so that the connection's calls are
    direct method calls once compiled (tools/compile_core.py).
    """

    __slots__ = ()

    @property
    def congestion_window(self) -> int:
        """The window in bytes."""
        raise NotImplementedError

    @property
    def max_datagram_size(self) -> int:
        raise NotImplementedError

    @property
    def pacing_rate(self) -> float | None:
        """Bytes per second the pacer should use, or None to derive it from the window and the RTT."""
        raise NotImplementedError

    @property
    def window_ceiling(self) -> int | None:
        """A bound the controller's own model puts on the window for now (BBR: its window in STARTUP
        and PROBE_RTT, the bound after a congested round), which a window floor stays under; None: none."""
        return None

    def available(self, bytes_in_flight: int) -> int:
        """How many more bytes may be in flight now (0 when the window is full)."""
        raise NotImplementedError

    def on_packet_sent(self, packet: SentPacket[Any], bytes_in_flight: int, now: float, *, app_limited: bool) -> None:
        """An in-flight (ack-eliciting) packet was just sent; ``bytes_in_flight`` includes it.

        ``app_limited`` is true when the sender has nothing more to send now
        (it is held back neither by the window nor by the pacer).
        """
        raise NotImplementedError

    def on_packets_acked(
        self, packets: Sequence[SentPacket[Any]], now: float, *, rtt: RttEstimator, app_limited: bool
    ) -> None:
        """Grow the window for newly acknowledged packets (``AckResult.newly_acked``).

        ``app_limited`` is true when the sender was limited by the application
        or flow control rather than by the window or the pacer when it last
        sent (RFC 9002 §7.8): the window then does not grow.
        """
        raise NotImplementedError

    def on_packets_lost(self, packets: Sequence[SentPacket[Any]], now: float) -> None:
        """React to newly lost packets: at most one reduction per recovery period."""
        raise NotImplementedError

    def on_persistent_congestion(self, now: float) -> None:
        """Collapse to the minimum window (RFC 9002 §7.6.2)."""
        raise NotImplementedError

    def set_max_datagram_size(self, max_datagram_size: int) -> None:
        """The path MTU changed (DPLPMTUD, RFC 9002 §7.2)."""
        raise NotImplementedError


class _WindowBase(CongestionController):
    """What NewReno and CUBIC share: window bookkeeping and the recovery period."""

    __slots__ = ("_cwnd", "_mds", "_peak_in_flight", "_recovery_start", "ssthresh")

    def __init__(self, *, max_datagram_size: int = DEFAULT_DATAGRAM_SIZE) -> None:
        _check_size(max_datagram_size)
        self._mds = max_datagram_size
        # Kept as a float so that fractional CUBIC increments accumulate; read ``congestion_window``.
        self._cwnd = float(initial_window(max_datagram_size))
        #: The slow start threshold in bytes; infinite until the first congestion event.
        self.ssthresh: float = math.inf
        # RFC 9002 A.4 congestion_recovery_start_time; None outside any recovery period.
        self._recovery_start: float | None = None
        # The most bytes in flight at any send since the last acknowledgement (see ``_window_used_since_ack``).
        self._peak_in_flight = 0

    @property
    def congestion_window(self) -> int:
        return int(self._cwnd)

    @property
    def max_datagram_size(self) -> int:
        return self._mds

    @property
    def minimum_window(self) -> int:
        """RFC 9002 §7.2 kMinimumWindow: two datagrams."""
        return MINIMUM_WINDOW_PACKETS * self._mds

    @property
    def in_slow_start(self) -> bool:
        return self._cwnd < self.ssthresh

    @property
    def pacing_rate(self) -> float | None:
        """Always None: the pacer derives the rate from the window (spec/recovery.md §6)."""
        return None

    def available(self, bytes_in_flight: int) -> int:
        return max(0, int(self._cwnd) - bytes_in_flight)

    def on_packet_sent(self, packet: SentPacket[Any], bytes_in_flight: int, now: float, *, app_limited: bool) -> None:
        """Note how much of the window is in use (``_window_used_since_ack``)."""
        self._peak_in_flight = max(self._peak_in_flight, bytes_in_flight)

    def _window_used_since_ack(self) -> bool:
        """Was the window the limit since the last acknowledgement?  Then, and only then, may it grow.

        RFC 9002 §7.8 forbids growing an under-used window; the connection's
        ``app_limited`` flag misses a sender held by flow control between bursts
        the pacer spaces out (recovery.md §5.4).  As Linux's
        ``tcp_is_cwnd_limited``: in slow start the data in flight must have
        reached half the window (slow start at most doubles it per round trip),
        in congestion avoidance all but two datagrams of it.  Resets the peak.
        """
        peak, self._peak_in_flight = self._peak_in_flight, 0
        if self._cwnd < self.ssthresh:
            return 2 * peak >= self._cwnd
        return peak + 2 * self._mds >= self._cwnd

    def in_recovery(self, sent_time: float) -> bool:
        """RFC 9002 A.6 ``InCongestionRecovery``: was a packet sent before the current recovery began?"""
        return self._recovery_start is not None and sent_time <= self._recovery_start

    def set_max_datagram_size(self, max_datagram_size: int) -> None:
        """Adopt a new path MTU; the window never drops below the new minimum window."""
        _check_size(max_datagram_size)
        self._mds = max_datagram_size
        self._cwnd = max(self._cwnd, float(self.minimum_window))

    def on_packets_lost(self, packets: Sequence[SentPacket[Any]], now: float) -> None:
        """RFC 9002 A.6 ``OnPacketsLost``: one congestion event keyed on the newest lost packet."""
        newest: float | None = None
        for packet in packets:
            if packet.in_flight and (newest is None or packet.time_sent > newest):
                newest = packet.time_sent
        # Losing packets that were not in flight (pure ACKs) is no sign of congestion.
        if newest is None or self.in_recovery(newest):
            return
        # RFC 9002 §7.3.2: a new recovery period starts now; packets sent before it
        # cannot cause another reduction, and acknowledging them does not grow the window.
        self._recovery_start = now
        self._reduce()

    def _reduce(self) -> None:
        raise NotImplementedError

    def _slow_start(self, size: int) -> int:
        """Grow by ``size`` up to ``ssthresh``; returns the bytes left for congestion avoidance."""
        room = self.ssthresh - self._cwnd
        if size <= room:
            self._cwnd += size
            return 0
        self._cwnd = max(self._cwnd, self.ssthresh)
        return size - max(0, int(room))


class NewReno(_WindowBase):
    """NewReno as specified by RFC 9002 §7.3 and pseudocode A.6."""

    __slots__ = ("_acked_bytes",)

    def __init__(self, *, max_datagram_size: int = DEFAULT_DATAGRAM_SIZE) -> None:
        super().__init__(max_datagram_size=max_datagram_size)
        # Bytes acknowledged in congestion avoidance, not yet worth one datagram of growth.
        self._acked_bytes = 0

    def on_packets_acked(
        self, packets: Sequence[SentPacket[Any]], now: float, *, rtt: RttEstimator, app_limited: bool
    ) -> None:
        """RFC 9002 A.6 ``OnPacketsAcked``: slow start, then +1 datagram per window acknowledged."""
        if not self._window_used_since_ack() or app_limited:
            # RFC 9002 §7.8: an under-used window is not evidence that a larger one works.
            return
        for packet in packets:
            if not packet.in_flight or self.in_recovery(packet.time_sent):
                continue
            size = packet.size
            if self._cwnd < self.ssthresh:
                size = self._slow_start(size)
                if not size:
                    continue
            # Congestion avoidance (RFC 9002 §7.3.3): cwnd += mds * acked / cwnd, counted in
            # whole datagrams so the window stays an integer.
            self._acked_bytes += size
            if self._acked_bytes >= self._cwnd:
                self._acked_bytes -= int(self._cwnd)
                self._cwnd += self._mds

    def _reduce(self) -> None:
        # RFC 9002 §7.3.2: halve, never below the minimum window.
        self.ssthresh = float(int(self._cwnd * LOSS_REDUCTION_FACTOR))
        self._cwnd = float(max(int(self.ssthresh), self.minimum_window))
        self._acked_bytes = 0

    def on_persistent_congestion(self, now: float) -> None:
        """RFC 9002 §7.6.2: minimum window, and the recovery period is over."""
        self._cwnd = float(self.minimum_window)
        self._recovery_start = None
        self._acked_bytes = 0


class Cubic(_WindowBase):
    """CUBIC (RFC 9438) behind the same interface: slow start as NewReno, cubic growth after.

    Windows in the RFC's formulas are in segments; here they are in bytes, so
    the constant C is scaled by ``max_datagram_size``.
    """

    __slots__ = ("_cwnd_prior", "_epoch_start", "_k", "_w_est", "_w_max")

    def __init__(self, *, max_datagram_size: int = DEFAULT_DATAGRAM_SIZE) -> None:
        super().__init__(max_datagram_size=max_datagram_size)
        # RFC 9438 §4.1 W_max: the window just before the last reduction (bytes).
        self._w_max = 0.0
        # The window before the last reduction, for the switch of alpha to 1 (RFC 9438 §4.3).
        self._cwnd_prior = 0.0
        # RFC 9438 §4.2 t_epoch and K; the epoch starts at the first ACK in congestion avoidance.
        self._epoch_start: float | None = None
        self._k = 0.0
        # RFC 9438 §4.3 W_est, the Reno-friendly estimate (bytes).
        self._w_est = 0.0

    def w_cubic(self, t: float) -> float:
        """RFC 9438 eq. 1, in bytes: ``C * (t - K)**3 + W_max``, ``t`` seconds into the epoch."""
        return CUBIC_C * self._mds * (t - self._k) ** 3 + self._w_max

    def on_packets_acked(
        self, packets: Sequence[SentPacket[Any]], now: float, *, rtt: RttEstimator, app_limited: bool
    ) -> None:
        """Slow start below ``ssthresh``; above it, RFC 9438 §4.2-§4.4 per acknowledged packet."""
        if not self._window_used_since_ack() or app_limited:
            # RFC 9438 §5.8: no growth while the window is not the limit.
            return
        for packet in packets:
            if not packet.in_flight or self.in_recovery(packet.time_sent):
                continue
            size = packet.size
            if self._cwnd < self.ssthresh:
                size = self._slow_start(size)
                if not size:
                    continue
            self._avoid_congestion(size, now, rtt.smoothed_rtt)

    def _avoid_congestion(self, size: int, now: float, smoothed_rtt: float) -> None:
        if self._epoch_start is None:
            # RFC 9438 §4.2: a new congestion avoidance stage.  Without an earlier
            # reduction (W_max below cwnd, e.g. after slow start), K is 0 and the
            # curve starts at the current window.
            self._epoch_start = now
            if self._w_max < self._cwnd:
                self._w_max = self._cwnd
                self._k = 0.0
            else:
                self._k = ((self._w_max - self._cwnd) / (CUBIC_C * self._mds)) ** (1 / 3)
            self._w_est = self._cwnd
        t = now - self._epoch_start
        cwnd = self._cwnd
        # RFC 9438 §4.3: the Reno-friendly estimate grows by alpha segments per window acknowledged.
        alpha = 1.0 if self._w_est >= self._cwnd_prior else CUBIC_ALPHA
        self._w_est += alpha * self._mds * size / cwnd
        if self.w_cubic(t) < self._w_est:
            # Reno-friendly region.
            self._cwnd = max(cwnd, self._w_est)
            return
        # RFC 9438 §4.4-§4.5: aim at W_cubic one RTT ahead, never more than 1.5 * cwnd.
        target = min(max(self.w_cubic(t + smoothed_rtt), cwnd), 1.5 * cwnd)
        self._cwnd = cwnd + (target - cwnd) * size / cwnd

    def _reduce(self) -> None:
        cwnd = self._cwnd
        # RFC 9438 §4.7 fast convergence: release bandwidth if the last maximum was not reached.
        self._w_max = cwnd * (1 + CUBIC_BETA) / 2 if cwnd < self._w_max else cwnd
        self._cwnd_prior = cwnd
        # RFC 9438 §4.6: ssthresh = cwnd * beta_cubic, never below the minimum window.
        self.ssthresh = float(max(int(cwnd * CUBIC_BETA), self.minimum_window))
        self._cwnd = float(self.ssthresh)
        self._epoch_start = None

    def on_persistent_congestion(self, now: float) -> None:
        """RFC 9002 §7.6.2 / RFC 9438 §4.8: minimum window, new epoch after slow start."""
        self._cwnd = float(self.minimum_window)
        self._recovery_start = None
        self._epoch_start = None


class WindowFloor(CongestionController):
    """``inner``'s decisions with a floor under its window (spec/paths.md §5, every path): what
    ``inner``'s pacing rate moves in ``allowance`` seconds, at most ``max_bytes`` and at most
    ``inner``'s ``window_ceiling`` (STARTUP grows from the initial window, PROBE_RTT drains, a
    congested round cuts); no floor while it has no rate (a loss-based controller grows by
    itself).  Everything else is ``inner``'s own."""

    __slots__ = ("allowance", "inner", "max_bytes")

    def __init__(self, inner: CongestionController, max_bytes: int, allowance: float) -> None:
        if max_bytes < 1 or allowance <= 0:
            raise LocalProtocolError("a window floor is at least one byte and a positive time")
        self.inner = inner
        self.max_bytes = max_bytes
        self.allowance = allowance

    @property
    def congestion_window(self) -> int:
        inner = self.inner
        window = inner.congestion_window
        rate = inner.pacing_rate
        if rate is None:
            return window
        floor = min(self.max_bytes, int(rate * self.allowance))
        if floor <= window:  # the common case on every packet: the ceiling need not be asked
            return window
        ceiling = inner.window_ceiling
        if ceiling is not None and ceiling < floor:
            floor = ceiling
        return max(window, floor)

    @property
    def max_datagram_size(self) -> int:
        return self.inner.max_datagram_size

    @property
    def pacing_rate(self) -> float | None:
        return self.inner.pacing_rate

    @property
    def window_ceiling(self) -> int | None:
        return self.inner.window_ceiling

    def available(self, bytes_in_flight: int) -> int:
        return max(0, self.congestion_window - bytes_in_flight)

    def on_packet_sent(self, packet: SentPacket[Any], bytes_in_flight: int, now: float, *, app_limited: bool) -> None:
        self.inner.on_packet_sent(packet, bytes_in_flight, now, app_limited=app_limited)

    def on_packets_acked(
        self, packets: Sequence[SentPacket[Any]], now: float, *, rtt: RttEstimator, app_limited: bool
    ) -> None:
        self.inner.on_packets_acked(packets, now, rtt=rtt, app_limited=app_limited)

    def on_packets_lost(self, packets: Sequence[SentPacket[Any]], now: float) -> None:
        self.inner.on_packets_lost(packets, now)

    def on_persistent_congestion(self, now: float) -> None:
        self.inner.on_persistent_congestion(now)

    def set_max_datagram_size(self, max_datagram_size: int) -> None:
        self.inner.set_max_datagram_size(max_datagram_size)


def _check_size(max_datagram_size: int) -> None:
    if max_datagram_size <= 0:
        raise LocalProtocolError("max_datagram_size must be positive")
