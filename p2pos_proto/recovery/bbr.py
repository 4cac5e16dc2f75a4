"""BBR: a model-based, loss-tolerant congestion controller (spec/recovery.md §5.6).

Follows the ideas of BBR v1/v2 (draft-cardwell-iccrg-bbr-congestion-control):
the controller models the path by its bottleneck bandwidth (the largest
delivery rate, ``delivery.DeliveryRateSampler``, seen over the last
``BW_WINDOW_ROUNDS`` round trips) and its round-trip propagation time (the
smallest RTT seen over ``MIN_RTT_WINDOW`` seconds), then paces at
``pacing_gain * bandwidth`` and bounds the window at ``cwnd_gain * BDP``.

Random loss does not move the model.  Only a round trip that loses more than
``LOSS_THRESH`` of its packets does: it bounds the data in flight at
``inflight_hi`` (BBRv2), which only probing without such loss raises again.

Besides the ``congestion.CongestionController`` calls, the connection must call
``on_packet_sent`` right after every in-flight packet it sends and, whenever
``pacing_rate`` is not None, pace at that rate (``pacing.Pacer.set_rate``)
instead of deriving one from the window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import Enum
from typing import Any, Final

from ..errors import LocalProtocolError
from .congestion import DEFAULT_DATAGRAM_SIZE, CongestionController, initial_window
from .delivery import DeliveryRateSampler, RateSample, WindowedMax
from .recovery import SentPacket
from .rtt import RttEstimator

#: 4 * ln 2: the Startup pacing gain that doubles the sending rate every round trip (BBRv3).
STARTUP_PACING_GAIN: Final = 4 * math.log(2)
#: The window gain in every state but ProbeRTT: twice the estimated BDP.
CWND_GAIN: Final = 2.0
#: Drain paces at the inverse of the Startup gain, to empty the queue Startup built.
DRAIN_PACING_GAIN: Final = 1 / STARTUP_PACING_GAIN
#: ProbeBW's eight phases of (at least) one min RTT each: probe up, drain down, cruise six times.
PROBE_BW_GAINS: Final[tuple[float, ...]] = (1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
#: The ProbeBW phase entered after Drain and after ProbeRTT (the first cruise phase).
PROBE_BW_FIRST_PHASE: Final = 2
#: Pace slightly below the estimate, so that a queue can drain (BBRv3 pacing margin).
PACING_MARGIN: Final = 0.01
#: Startup is over when the bandwidth grew less than this factor ...
FULL_BW_GROWTH: Final = 1.25
#: ... for this many round trips in a row.
FULL_BW_ROUNDS: Final = 3
#: A round trip losing more than this fraction of its packets (bytes delivered + lost) is congested (BBRv2).
LOSS_THRESH: Final = 0.02
#: In Startup, a congested round trip must also lose at least this many packets to end Startup.
STARTUP_FULL_LOSS_COUNT: Final = 6
#: On congestion, ``inflight_hi`` is never set below this fraction of the BDP (BBRv2 beta).
BETA: Final = 0.7
#: The bandwidth filter's window, in round trips.
BW_WINDOW_ROUNDS: Final = 10
#: The min RTT filter's window, in seconds; ProbeRTT runs when it expires.
MIN_RTT_WINDOW: Final = 10.0
#: A quiet sample (taken with at most ProbeRTT's window in flight) stands in for ProbeRTT for this long, in seconds.
QUIET_WINDOW: Final = MIN_RTT_WINDOW / 2
#: ProbeRTT holds its window for at least this long (and one round trip), in seconds.
PROBE_RTT_DURATION: Final = 0.2
#: ProbeRTT's window is this fraction of the BDP (never below the minimum window; BBRv2/v3).
PROBE_RTT_CWND_GAIN: Final = 0.5
#: The minimum window, in datagrams (BBR's minimum pipe).
MINIMUM_WINDOW_PACKETS: Final = 4
#: Datagrams of headroom on top of ``CWND_GAIN * BDP`` for ACK and pacing quantisation.
CWND_HEADROOM_PACKETS: Final = 3
#: The ACK-aggregation allowance keeps the largest excess of two periods of this many round trips.
EXTRA_ACKED_ROUNDS: Final = 5


class BbrState(Enum):
    """The four states of spec/recovery.md §5.6.3."""

    STARTUP = "startup"
    DRAIN = "drain"
    PROBE_BW = "probe_bw"
    PROBE_RTT = "probe_rtt"


#: The transitions the state machine may take (spec/recovery.md §5.6.3); persistent
#: congestion restarts Startup from any state.
TRANSITIONS: dict[BbrState, frozenset[BbrState]] = {
    BbrState.STARTUP: frozenset({BbrState.DRAIN, BbrState.PROBE_RTT, BbrState.STARTUP}),
    BbrState.DRAIN: frozenset({BbrState.PROBE_BW, BbrState.PROBE_RTT, BbrState.STARTUP}),
    BbrState.PROBE_BW: frozenset({BbrState.PROBE_RTT, BbrState.STARTUP}),
    BbrState.PROBE_RTT: frozenset({BbrState.PROBE_BW, BbrState.STARTUP}),
}


class Bbr(CongestionController):
    """A BBR congestion controller behind the ``congestion.CongestionController`` interface."""

    __slots__ = (
        "_ack_epoch_acked",
        "_ack_epoch_start",
        "_bw",
        "_cwnd",
        "_extra_acked",
        "_extra_acked_old",
        "_extra_acked_round",
        "_cycle_start",
        "_full_bw",
        "_full_bw_count",
        "_full_bw_reached",
        "_inflight",
        "_inflight_hi",
        "_loss_handled",
        "_mds",
        "_min_rtt",
        "_min_rtt_stamp",
        "_next_round_delivered",
        "_pacing_rate",
        "_phase",
        "_probe_rtt_cwnd",
        "_probe_rtt_done",
        "_probe_rtt_round_done",
        "_quiet_rtt",
        "_quiet_stamp",
        "_round_count",
        "_round_delivered",
        "_round_flight",
        "_round_lost",
        "_round_lost_packets",
        "_sampler",
        "_srtt",
        "_state",
        "_up_acked",
        "_up_rounds",
    )

    def __init__(self, *, max_datagram_size: int = DEFAULT_DATAGRAM_SIZE) -> None:
        if max_datagram_size <= 0:
            raise LocalProtocolError("max_datagram_size must be positive")
        self._mds = max_datagram_size
        self._cwnd = initial_window(max_datagram_size)
        self._sampler = DeliveryRateSampler()
        # The model: windowed max bandwidth (bytes/s) and windowed min RTT (inf until the first sample).
        self._bw = WindowedMax(BW_WINDOW_ROUNDS)
        self._min_rtt = math.inf
        self._min_rtt_stamp = 0.0
        # The least quiet RTT sample of the last QUIET_WINDOW (inf until one), and when it was taken.
        self._quiet_rtt = math.inf
        self._quiet_stamp = 0.0
        self._srtt = 0.0
        # Bytes in flight as this controller counts them (sent, minus acknowledged and lost).
        self._inflight = 0
        # Round trips: a round ends when a packet sent after the previous round ended is acknowledged.
        self._round_count = 0
        self._next_round_delivered = 0
        self._round_delivered = 0
        self._round_lost = 0
        self._round_lost_packets = 0
        self._round_flight = 0
        self._loss_handled = False
        # Startup's plateau detection.
        self._full_bw = 0.0
        self._full_bw_count = 0
        self._full_bw_reached = False
        # The BBRv2 upper bound on bytes in flight; None until a congested round trip.
        self._inflight_hi: int | None = None
        self._state = BbrState.STARTUP
        self._phase = PROBE_BW_FIRST_PHASE
        self._cycle_start = 0.0
        # Probing up against inflight_hi: rounds into the phase and bytes acknowledged towards the next step.
        self._up_rounds = 0
        self._up_acked = 0
        # ProbeRTT: half the BDP as it was when ProbeRTT began (its window, never below the minimum),
        # and when it may end (None until the flight has drained to that window).
        self._probe_rtt_cwnd = 0
        self._probe_rtt_done: float | None = None
        self._probe_rtt_round_done = False
        self._pacing_rate = 0.0
        # ACK aggregation (REC-5.6.3.1, §5.6.5): the current epoch's start and bytes acknowledged since, and the
        # largest excess of acknowledged over expected bytes in this and the previous period of rounds.
        self._ack_epoch_start = 0.0
        self._ack_epoch_acked = 0
        self._extra_acked = 0
        self._extra_acked_old = 0
        self._extra_acked_round = 0

    # -- what the connection reads ------------------------------------------------------------

    @property
    def congestion_window(self) -> int:
        if self._state is BbrState.PROBE_RTT:
            return min(self._cwnd, self.probe_rtt_window)
        return self._cwnd

    @property
    def max_datagram_size(self) -> int:
        return self._mds

    @property
    def minimum_window(self) -> int:
        """Four datagrams (spec/recovery.md §5.6.1)."""
        return MINIMUM_WINDOW_PACKETS * self._mds

    @property
    def probe_rtt_window(self) -> int:
        """ProbeRTT's window: ``PROBE_RTT_CWND_GAIN`` times the BDP from the ``min_rtt`` that expired,
        never below the minimum window (spec/recovery.md §5.6.3)."""
        return max(self._probe_rtt_cwnd, self.minimum_window)

    @property
    def pacing_rate(self) -> float | None:
        """Bytes per second; None until the first acknowledgement (the pacer then uses cwnd / srtt)."""
        return self._pacing_rate or None

    def available(self, bytes_in_flight: int) -> int:
        return max(0, self.congestion_window - bytes_in_flight)

    # -- the model, for statistics and tests --------------------------------------------------

    @property
    def state(self) -> BbrState:
        return self._state

    @property
    def bandwidth(self) -> float:
        """The bottleneck bandwidth estimate in bytes per second (0.0 before the first sample)."""
        return self._bw.best

    @property
    def min_rtt(self) -> float:
        """The propagation RTT estimate in seconds (``math.inf`` before the first sample)."""
        return self._min_rtt

    @property
    def bdp(self) -> float | None:
        """``bandwidth * min_rtt`` in bytes, or None while either is unknown."""
        bw = self._bw.best
        return bw * self._min_rtt if bw > 0 and self._min_rtt < math.inf else None

    @property
    def extra_acked(self) -> int:
        """The window's allowance for acknowledgements that arrive in bunches, in bytes (REC-5.6.3.1, §5.6.5)."""
        return max(self._extra_acked, self._extra_acked_old)

    @property
    def inflight_hi(self) -> int | None:
        return self._inflight_hi

    @property
    def window_ceiling(self) -> int | None:
        """The window itself in STARTUP (the initial window, and the window growing from it, hold
        until the pipe is found) and in PROBE_RTT (half the BDP: the drain it waits for must
        happen, or it never ends); else the bound the last congested round set (``inflight_hi``).
        A window floor (spec/paths.md §5) stays under it."""
        if self._state is BbrState.STARTUP or self._state is BbrState.PROBE_RTT:
            return self.congestion_window
        return self._inflight_hi

    @property
    def pacing_gain(self) -> float:
        if self._state is BbrState.STARTUP:
            return STARTUP_PACING_GAIN
        if self._state is BbrState.DRAIN:
            return DRAIN_PACING_GAIN
        if self._state is BbrState.PROBE_BW:
            return PROBE_BW_GAINS[self._phase]
        return 1.0

    @property
    def probe_bw_phase(self) -> int:
        """The index into ``PROBE_BW_GAINS`` (meaningful in ProbeBW)."""
        return self._phase

    @property
    def round_count(self) -> int:
        return self._round_count

    # -- inputs -------------------------------------------------------------------------------

    def on_packet_sent(self, packet: SentPacket[Any], bytes_in_flight: int, now: float, *, app_limited: bool) -> None:
        """Record an in-flight packet just sent; ``bytes_in_flight`` includes it (spec/recovery.md §5.6.2)."""
        self._inflight = bytes_in_flight
        self._sampler.on_packet_sent(packet, bytes_in_flight, app_limited=app_limited)

    def on_packets_acked(
        self, packets: Sequence[SentPacket[Any]], now: float, *, rtt: RttEstimator, app_limited: bool
    ) -> None:
        """Update the model from newly acknowledged packets (in packet-number order), then the state and window.

        ``app_limited`` is not used: the samples carry the marks ``on_packet_sent`` made.
        """
        acked = sum(p.size for p in packets if p.in_flight)
        if not packets:
            return
        self._inflight = max(0, self._inflight - acked)
        if rtt.has_sample:
            self._srtt = rtt.smoothed_rtt
        sample = self._sampler.on_packets_acked(packets, now, self._min_rtt if self._min_rtt < math.inf else 0.0)
        self._round_delivered += acked
        round_start = False
        if sample is not None and sample.prior_delivered >= self._next_round_delivered:
            round_start = True
            self._start_round()
        if sample is not None:
            self._update_bandwidth(sample)
        newest = packets[-1]
        rtt_sample = now - newest.time_sent
        prior_min_rtt = self._min_rtt  # ProbeRTT's window comes from the min_rtt that may expire now
        half_bdp = self._half_bdp(prior_min_rtt)
        if self._without_queue(newest, max(half_bdp, self.minimum_window)):
            self._update_quiet_rtt(rtt_sample, now)
        min_rtt_expired = self._update_min_rtt(rtt_sample, now)
        if min_rtt_expired and self._quiet_rtt < math.inf and now - self._quiet_stamp <= QUIET_WINDOW:
            # A sample ProbeRTT would take was taken lately: it stands in for ProbeRTT (§5.6.3).
            if self._quiet_rtt < self._min_rtt:
                self._min_rtt, self._min_rtt_stamp = self._quiet_rtt, self._quiet_stamp
            min_rtt_expired = False
        if self._state is BbrState.PROBE_BW and self._phase == 0:
            self._probe_inflight_hi_up(acked, round_start)
        if self._state is BbrState.STARTUP and round_start and sample is not None:
            self._check_full_bandwidth(sample)
        self._check_drain(now)
        if self._state is BbrState.PROBE_BW:
            self._advance_cycle(now)
        self._check_probe_rtt(now, round_start, min_rtt_expired, half_bdp)
        self._update_ack_aggregation(acked, now)
        self._set_pacing_rate()
        self._set_cwnd(acked)

    def on_packets_lost(self, packets: Sequence[SentPacket[Any]], now: float) -> None:
        """Count newly lost packets against the round; only a congested round trip reacts (§5.6.4)."""
        lost = sum(p.size for p in packets if p.in_flight)
        if not lost:
            return
        self._inflight = max(0, self._inflight - lost)
        tx_in_flight = self._sampler.on_packets_lost(packets)
        self._round_lost += lost
        self._round_lost_packets += sum(1 for p in packets if p.in_flight)
        if self._loss_handled or not self._loss_too_high():
            return
        if self._state is BbrState.STARTUP and self._round_lost_packets < STARTUP_FULL_LOSS_COUNT:
            return
        self._loss_handled = True
        bdp = self.bdp or float(self._cwnd)
        at_loss = tx_in_flight if tx_in_flight is not None else self._inflight + lost
        self._inflight_hi = max(at_loss, int(BETA * bdp), self.minimum_window)
        if self._state is BbrState.STARTUP:
            self._full_bw_reached = True
            self._enter(BbrState.DRAIN, now)
            self._check_drain(now)
        elif self._state is BbrState.PROBE_BW and self._phase == 0:
            self._start_phase(1, now)
        self._set_pacing_rate()
        self._set_cwnd(0)

    def on_persistent_congestion(self, now: float) -> None:
        """Minimum window, and the model restarts from scratch in Startup (min RTT is kept)."""
        self._cwnd = self.minimum_window
        self._bw.reset()
        self._inflight_hi = None
        self._full_bw = 0.0
        self._full_bw_count = 0
        self._full_bw_reached = False
        self._extra_acked = self._extra_acked_old = self._ack_epoch_acked = 0
        self._probe_rtt_done = None
        self._enter(BbrState.STARTUP, now)
        self._pacing_rate = STARTUP_PACING_GAIN * self._cwnd / self._srtt if self._srtt > 0 else 0.0

    def set_max_datagram_size(self, max_datagram_size: int) -> None:
        """Adopt a new path MTU: the minimum window and the headroom follow it (§5.5)."""
        if max_datagram_size <= 0:
            raise LocalProtocolError("max_datagram_size must be positive")
        self._mds = max_datagram_size
        self._cwnd = max(self._cwnd, self.minimum_window)
        if self._inflight_hi is not None:
            self._inflight_hi = max(self._inflight_hi, self.minimum_window)

    # -- the model ----------------------------------------------------------------------------

    def _start_round(self) -> None:
        self._round_count += 1
        self._next_round_delivered = self._sampler.delivered
        self._round_delivered = 0
        self._round_lost = 0
        self._round_lost_packets = 0
        self._round_flight = self._inflight
        self._loss_handled = False

    def _loss_too_high(self) -> bool:
        # The round's packets are those in flight when it started; until they are all
        # accounted for, that flight is the denominator, so one early loss is not 100%.
        total = max(self._round_delivered + self._round_lost, self._round_flight)
        return self._round_lost > LOSS_THRESH * total

    def _update_bandwidth(self, sample: RateSample) -> None:
        rate = sample.delivery_rate
        # An application-limited sample only shows what the path can at least do.
        if rate is not None and (not sample.is_app_limited or rate >= self._bw.best):
            self._bw.update(self._round_count, rate)

    def _update_quiet_rtt(self, rtt_sample: float, now: float) -> None:
        if rtt_sample <= self._quiet_rtt or now - self._quiet_stamp > QUIET_WINDOW:
            self._quiet_rtt = max(rtt_sample, 0.0)
            self._quiet_stamp = now

    def _update_min_rtt(self, rtt_sample: float, now: float) -> bool:
        expired = self._min_rtt < math.inf and now > self._min_rtt_stamp + MIN_RTT_WINDOW
        if rtt_sample <= self._min_rtt or expired:
            self._min_rtt = max(rtt_sample, 0.0)
            self._min_rtt_stamp = now
        return expired

    def _probe_inflight_hi_up(self, acked: int, round_start: bool) -> None:
        """BBRv2's probe up: while ``inflight_hi`` holds the window, raise it by 1, 2, 4, ... datagrams per round."""
        if self._inflight_hi is None:
            return
        if round_start:
            self._up_rounds = min(self._up_rounds + 1, 30)
        if self._inflight + acked + self._mds < self._inflight_hi:
            return  # the window is not what limits the sender
        # One datagram of growth per ``step`` bytes acknowledged: 2**up_rounds datagrams per window.
        step = max(self._cwnd >> self._up_rounds, self._mds)
        self._up_acked += acked
        if self._up_acked >= step:
            grow = self._up_acked // step
            self._up_acked -= grow * step
            self._inflight_hi += grow * self._mds

    def _check_full_bandwidth(self, sample: RateSample) -> None:
        # Only a round with a valid, not application-limited sample shows whether the bandwidth
        # still grows: a round whose sample was rejected (shorter than the min RTT) shows nothing.
        if self._full_bw_reached or sample.is_app_limited or sample.delivery_rate is None:
            return
        bw = self._bw.best
        if bw >= self._full_bw * FULL_BW_GROWTH:
            self._full_bw = bw
            self._full_bw_count = 0
            return
        self._full_bw_count += 1
        if self._full_bw_count >= FULL_BW_ROUNDS:
            self._full_bw_reached = True

    def _check_drain(self, now: float) -> None:
        if self._state is BbrState.STARTUP and self._full_bw_reached:
            self._enter(BbrState.DRAIN, now)
        bdp = self.bdp
        if self._state is BbrState.DRAIN and (bdp is None or self._inflight <= bdp):
            self._enter(BbrState.PROBE_BW, now)
            self._start_phase(PROBE_BW_FIRST_PHASE, now)

    def _advance_cycle(self, now: float) -> None:
        bdp = self.bdp or float(self._cwnd)
        gain = PROBE_BW_GAINS[self._phase]
        full_length = now - self._cycle_start > self._min_rtt
        if gain > 1:
            advance = full_length and self._inflight >= gain * bdp
        elif gain < 1:
            # Down lasts until the queue is gone, however long that takes (BBRv3).
            advance = self._inflight <= bdp
        else:
            advance = full_length
        if advance:
            self._start_phase((self._phase + 1) % len(PROBE_BW_GAINS), now)

    def _start_phase(self, phase: int, now: float) -> None:
        self._phase = phase
        self._cycle_start = now
        self._up_rounds = 0
        self._up_acked = 0

    def _half_bdp(self, min_rtt: float) -> int:
        """``PROBE_RTT_CWND_GAIN`` times the BDP with ``min_rtt`` (0 while either is unknown)."""
        bw = self._bw.best
        return int(PROBE_RTT_CWND_GAIN * bw * min_rtt) if bw > 0 and min_rtt < math.inf else 0

    def _without_queue(self, packet: SentPacket[Any], window: int) -> bool:
        """Whether ``packet`` left with no more than ProbeRTT's ``window`` in flight: its RTT sample
        shows the path without this sender's queue, as ProbeRTT's would (spec/recovery.md §5.6.3)."""
        if packet.delivered < 0:  # not told of it (a PMTU probe): nothing known of its flight
            return False
        return packet.tx_in_flight <= window

    def _check_probe_rtt(self, now: float, round_start: bool, min_rtt_expired: bool, half_bdp: int) -> None:
        if min_rtt_expired and self._state is not BbrState.PROBE_RTT:
            self._enter(BbrState.PROBE_RTT, now)
            self._probe_rtt_cwnd = half_bdp
            self._probe_rtt_done = None
            return
        if self._state is not BbrState.PROBE_RTT:
            return
        if self._probe_rtt_done is None:
            if self._inflight <= self.probe_rtt_window:
                # Drained to ProbeRTT's window: hold it for PROBE_RTT_DURATION and one full round trip.
                self._probe_rtt_done = now + PROBE_RTT_DURATION
                self._probe_rtt_round_done = False
                self._next_round_delivered = self._sampler.delivered
            return
        if round_start:
            self._probe_rtt_round_done = True
        if self._probe_rtt_round_done and now >= self._probe_rtt_done:
            self._min_rtt_stamp = now
            self._probe_rtt_done = None
            if self._full_bw_reached:
                self._enter(BbrState.PROBE_BW, now)
                self._start_phase(PROBE_BW_FIRST_PHASE, now)
            else:
                self._enter(BbrState.STARTUP, now)

    def _enter(self, state: BbrState, now: float) -> None:
        if state not in TRANSITIONS[self._state]:
            raise LocalProtocolError(f"BBR cannot go from {self._state.value} to {state.value}")
        self._state = state

    # -- the outputs --------------------------------------------------------------------------

    def _set_pacing_rate(self) -> None:
        if not self._pacing_rate and self._srtt > 0:
            # The first RTT sample: Startup's gain applied to the window per RTT, until the
            # bandwidth samples (the first ones cover a single datagram) catch up.
            self._pacing_rate = STARTUP_PACING_GAIN * self._cwnd / self._srtt
        bw = self._bw.best
        if bw <= 0:
            return
        rate = self.pacing_gain * bw * (1 - PACING_MARGIN)
        # Startup never slows down on a lower (e.g. early, partial) sample.
        if self._full_bw_reached or rate > self._pacing_rate:
            self._pacing_rate = rate
        # Never below one datagram per smoothed RTT (REC-5.6.3.4): a path that has carried nothing
        # but acknowledgements has only application-limited samples of a few hundred bytes a second,
        # and at that rate one full-size datagram would wait for seconds.
        if self._srtt > 0 and self._pacing_rate < self._mds / self._srtt:
            self._pacing_rate = self._mds / self._srtt

    def _update_ack_aggregation(self, acked: int, now: float) -> None:
        """REC-5.6.3.1, §5.6.5: how far acknowledgements ran ahead of ``bw`` since the current epoch began.

        An epoch ends (and a new one begins, empty, at this acknowledgement) as soon as the bytes
        acknowledged in it are no more than ``bw`` times its length, and at the start of every period
        of ``EXTRA_ACKED_ROUNDS`` round trips: on a path whose acknowledgements
        come at the rate of the model the excess stays about zero.  Acknowledgements held back and
        then delivered in a bunch (a receiver, or a relay on the way, that runs late) make an excess:
        the window needs that much more to keep sending through the gap.
        """
        bw = self._bw.best
        if acked <= 0 or bw <= 0:
            return
        if self._round_count >= self._extra_acked_round + EXTRA_ACKED_ROUNDS:
            # A new period: the older one is forgotten, and so is the epoch (acknowledgements that keep
            # pace with ``bw`` would otherwise carry an old excess on for ever).
            self._extra_acked_old, self._extra_acked = self._extra_acked, 0
            self._extra_acked_round = self._round_count
            self._ack_epoch_start, self._ack_epoch_acked = now, 0
            return
        self._ack_epoch_acked += acked
        expected = bw * (now - self._ack_epoch_start)
        if self._ack_epoch_acked <= expected:
            self._ack_epoch_start, self._ack_epoch_acked = now, 0
            return
        extra = min(int(self._ack_epoch_acked - expected), self._cwnd)
        self._extra_acked = max(self._extra_acked, extra)

    def _set_cwnd(self, acked: int) -> None:
        bdp = self.bdp
        cwnd = self._cwnd
        if bdp is not None:
            target = int(CWND_GAIN * bdp) + CWND_HEADROOM_PACKETS * self._mds
            if self._state is BbrState.PROBE_BW:
                target += self.extra_acked
                cwnd = min(cwnd + acked, target)
            elif cwnd < target or self._sampler.delivered < initial_window(self._mds):
                cwnd += acked
        else:
            cwnd += acked
        if self._inflight_hi is not None:
            cwnd = min(cwnd, self._inflight_hi)
        self._cwnd = max(cwnd, self.minimum_window)
