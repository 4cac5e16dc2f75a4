"""BBR (spec/recovery.md §5.6) driven by a small deterministic packet simulation.

The simulated path is one bottleneck of ``rate`` bytes per second with a
drop-tail FIFO of ``queue`` bytes, a fixed propagation round trip, and
optional random loss before the bottleneck (seeded).  The receiver
acknowledges every packet at once; the sender detects loss with RFC 9002's
packet and time thresholds, keeps an ``RttEstimator`` and a ``Pacer``, and
calls the controller exactly as the connection does.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable

import pytest

from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.recovery.bbr import (
    BW_WINDOW_ROUNDS,
    EXTRA_ACKED_ROUNDS,
    MIN_RTT_WINDOW,
    MINIMUM_WINDOW_PACKETS,
    PROBE_BW_GAINS,
    PROBE_RTT_DURATION,
    STARTUP_PACING_GAIN,
    TRANSITIONS,
    Bbr,
    BbrState,
)
from p2pos.proto.recovery.congestion import CongestionController, NewReno, initial_window
from p2pos.proto.recovery.delivery import DeliveryRateSampler
from p2pos.proto.recovery.pacing import Pacer
from p2pos.proto.recovery.recovery import SentPacket
from p2pos.proto.recovery.rtt import RttEstimator

MDS = 1200
#: 10 Mbit/s.
RATE = 1.25e6
BASE_RTT = 0.05
BDP = RATE * BASE_RTT


class Path:
    """A bottleneck link: FIFO service at ``rate``, ``queue`` bytes of buffer, ``base_rtt`` of propagation."""

    def __init__(self, *, rate: float, base_rtt: float, queue: int, loss: float = 0.0, seed: int = 0) -> None:
        self.rate = rate
        self.base_rtt = base_rtt
        self.queue = queue
        self.loss = loss
        self.rng = random.Random(seed)
        # When the link has sent everything queued so far.
        self.busy_until = 0.0
        self.max_queue = 0.0
        self.queue_drops = 0
        self.random_drops = 0

    def backlog(self, now: float) -> float:
        """Bytes waiting in the queue (including the one being sent)."""
        return max(0.0, self.busy_until - now) * self.rate

    def send(self, now: float, size: int) -> float | None:
        """When the ACK of a packet sent now arrives, or None if it is dropped."""
        if self.loss and self.rng.random() < self.loss:
            self.random_drops += 1
            return None
        backlog = self.backlog(now)
        if backlog + size > self.queue + MDS:
            self.queue_drops += 1
            return None
        self.busy_until = max(now, self.busy_until) + size / self.rate
        self.max_queue = max(self.max_queue, backlog)
        return self.busy_until + self.base_rtt


class Sender:
    """A bulk (or rate-limited) sender over ``Path`` with loss detection as RFC 9002 §6.1."""

    def __init__(
        self,
        cc: CongestionController,
        path: Path,
        *,
        app_rate: Callable[[float], float | None] | None = None,
        mds: int = MDS,
        mark_app_limited: bool = True,
    ) -> None:
        self.cc = cc
        self.path = path
        self.mds = mds
        # Bytes per second the application offers at a time; None (or no function) for unlimited.
        self.app_rate = app_rate
        # Whether on_packet_sent reports application-limited sends (off only to show what the marks do).
        self.mark_app_limited = mark_app_limited
        self.app_bytes = 0.0
        self.app_time = 0.0
        self.rtt = RttEstimator(initial_rtt=0.1)
        self.pacer = Pacer(congestion_window=cc.congestion_window, smoothed_rtt=0.0, max_datagram_size=mds)
        self.now = 0.0
        self.pn = 0
        self.bytes_in_flight = 0
        self.outstanding: dict[int, SentPacket[None]] = {}
        self.acks: list[tuple[float, int]] = []
        self.largest_acked = -1
        self.sent_packets = 0
        self.lost_packets = 0
        # (time, bytes) of every acknowledgement, for goodput over an interval.
        self.delivered: list[tuple[float, int]] = []
        self.max_in_flight = 0
        self.on_ack: Callable[[Sender], None] | None = None

    # -- the application ------------------------------------------------------------

    def _offer(self, now: float) -> None:
        rate = self.app_rate(now) if self.app_rate is not None else None
        if rate is None:
            self.app_bytes = math.inf
        else:
            if self.app_bytes == math.inf:
                self.app_bytes = 0.0
            self.app_bytes = min(self.app_bytes + (now - self.app_time) * rate, 64 * self.mds)
        self.app_time = now

    def _next_data_time(self) -> float | None:
        rate = self.app_rate(self.now) if self.app_rate is not None else None
        if rate is None or rate <= 0:
            return None
        # At least a microsecond on, so that rounding cannot stall the clock.
        return self.now + max((self.mds - self.app_bytes) / rate, 1e-6)

    # -- the loop ------------------------------------------------------------------------

    def run(self, until: float) -> None:
        while self.now < until:
            wake = self._send()
            candidates = [t for t in (wake, self.acks[0][0] if self.acks else None) if t is not None]
            if not candidates:
                return
            self.now = max(self.now, min(candidates))
            while self.acks and self.acks[0][0] <= self.now:
                _, pn = heapq.heappop(self.acks)
                self._ack(pn)

    def _send(self) -> float | None:
        """Send what the window, the pacer and the application allow; when to try again."""
        now = self.now
        self._offer(now)
        while self.app_bytes >= self.mds:
            if self.cc.available(self.bytes_in_flight) < self.mds:
                return None  # the window is full: wait for an acknowledgement
            at = self.pacer.next_send_time(now, self.mds)
            if at > now:
                return at
            packet: SentPacket[None] = SentPacket(
                self.pn, now, self.mds, ack_eliciting=True, in_flight=True, payload=None
            )
            self.pn += 1
            self.sent_packets += 1
            self.app_bytes -= self.mds
            self.outstanding[packet.pn] = packet
            self.bytes_in_flight += packet.size
            self.max_in_flight = max(self.max_in_flight, self.bytes_in_flight)
            self.pacer.on_packet_sent(now, packet.size)
            self.cc.on_packet_sent(
                packet, self.bytes_in_flight, now, app_limited=self.mark_app_limited and self.app_bytes < self.mds
            )
            arrival = self.path.send(now, packet.size)
            if arrival is not None:
                heapq.heappush(self.acks, (arrival, packet.pn))
        return self._next_data_time()

    def _ack(self, pn: int) -> None:
        now = self.now
        packet = self.outstanding.pop(pn, None)
        if packet is None:
            return  # declared lost already (spuriously)
        self.bytes_in_flight -= packet.size
        self.delivered.append((now, packet.size))
        if pn > self.largest_acked:
            self.largest_acked = pn
            self.rtt.update(now - packet.time_sent, 0.0, now)
        self.cc.on_packets_acked([packet], now, rtt=self.rtt, app_limited=False)
        # RFC 9002 §6.1: packet threshold 3, time threshold 9/8 RTT.
        lost: list[SentPacket[None]] = []
        threshold = now - self.rtt.loss_delay()
        for old_pn in list(self.outstanding):
            old = self.outstanding[old_pn]
            if old_pn > self.largest_acked or not (old_pn <= self.largest_acked - 3 or old.time_sent <= threshold):
                break
            del self.outstanding[old_pn]
            self.bytes_in_flight -= old.size
            lost.append(old)
        if lost:
            self.lost_packets += len(lost)
            self.cc.on_packets_lost(lost, now)
        rate = self.cc.pacing_rate
        if rate is not None:
            self.pacer.set_rate(rate, self.cc.congestion_window, self.cc.max_datagram_size)
        else:
            self.pacer.update_rate(self.cc.congestion_window, self.rtt.smoothed_rtt, self.cc.max_datagram_size)
        if self.on_ack is not None:
            self.on_ack(self)

    def goodput(self, start: float, end: float) -> float:
        """Bytes per second acknowledged in [start, end)."""
        return sum(size for t, size in self.delivered if start <= t < end) / (end - start)


class Trace:
    """Per-ACK snapshots of the controller and the path, and every state transition seen."""

    def __init__(self, sender: Sender) -> None:
        self.rows: list[tuple[float, BbrState, int, float, float, float, int]] = []
        self.transitions: list[tuple[float, BbrState, BbrState, float]] = []
        sender.on_ack = self.record

    def record(self, sender: Sender) -> None:
        cc = sender.cc
        assert isinstance(cc, Bbr)
        backlog = sender.path.backlog(sender.now)
        if self.rows and self.rows[-1][1] is not cc.state:
            self.transitions.append((sender.now, self.rows[-1][1], cc.state, backlog))
        rate = cc.pacing_rate or 0.0
        self.rows.append((sender.now, cc.state, cc.congestion_window, rate, backlog, cc.bandwidth, cc.probe_bw_phase))

    def after(self, start: float) -> list[tuple[float, BbrState, int, float, float, float, int]]:
        return [row for row in self.rows if row[0] >= start]

    def first(self, state: BbrState) -> tuple[float, BbrState, BbrState, float]:
        return next(t for t in self.transitions if t[2] is state)


def bulk(
    *, loss: float = 0.0, queue: float = BDP, seed: int = 1, rate: float = RATE, base_rtt: float = BASE_RTT
) -> tuple[Sender, Bbr, Trace]:
    cc = Bbr()
    sender = Sender(cc, Path(rate=rate, base_rtt=base_rtt, queue=int(queue), loss=loss, seed=seed))
    return sender, cc, Trace(sender)


def state(cc: Bbr) -> BbrState:
    """The state, read through a call so that mypy does not narrow it across inputs."""
    return cc.state


def hi(cc: Bbr) -> int | None:
    return cc.inflight_hi


def bbr(sender: Sender) -> Bbr:
    assert isinstance(sender.cc, Bbr)
    return sender.cc


# -- the interface ------------------------------------------------------------------------------


def test_interface_and_initial_state() -> None:
    cc = Bbr()
    controller: CongestionController = cc
    assert controller.congestion_window == initial_window(MDS) == 12000
    assert controller.pacing_rate is None  # until the first acknowledgement
    assert controller.available(10000) == 2000
    assert controller.available(20000) == 0
    assert cc.minimum_window == MINIMUM_WINDOW_PACKETS * MDS == 4800
    assert cc.state is BbrState.STARTUP
    assert cc.pacing_gain == pytest.approx(STARTUP_PACING_GAIN) == pytest.approx(2.7726, abs=1e-4)
    assert cc.bandwidth == 0.0
    assert cc.min_rtt == math.inf
    assert cc.bdp is None
    with pytest.raises(LocalProtocolError):
        Bbr(max_datagram_size=0)


def test_first_ack_sets_a_startup_pacing_rate() -> None:
    cc = Bbr()
    rtt = RttEstimator()
    packets = [SentPacket(pn, 0.0, MDS, ack_eliciting=True, in_flight=True, payload=None) for pn in range(10)]
    for n, packet in enumerate(packets, 1):
        cc.on_packet_sent(packet, n * MDS, 0.0, app_limited=False)
    rtt.update(0.1, 0.0, 0.1)
    cc.on_packets_acked(packets[:1], 0.1, rtt=rtt, app_limited=False)
    # One datagram in 0.1 s is the first sample; Startup paces at no less than 2.77 * IW / srtt.
    assert cc.bandwidth == pytest.approx(MDS / 0.1)
    assert cc.pacing_rate == pytest.approx(STARTUP_PACING_GAIN * 12000 / 0.1, rel=0.1)
    # Slow-start-like growth: the window grows by what was acknowledged.
    assert cc.congestion_window == 12000 + MDS
    assert cc.min_rtt == pytest.approx(0.1)


def test_transitions_follow_the_table() -> None:
    sender, _, trace = bulk(queue=8 * BDP)
    sender.run(3.0)
    seen = {(old, new) for _, old, new, _ in trace.transitions}
    assert seen == {(BbrState.STARTUP, BbrState.DRAIN), (BbrState.DRAIN, BbrState.PROBE_BW)}
    assert all(new in TRANSITIONS[old] for old, new in seen)
    # Persistent congestion restarts Startup from any state.
    assert all(BbrState.STARTUP in allowed for allowed in TRANSITIONS.values())


# -- Startup, Drain, ProbeBW ----------------------------------------------------------------------


def test_startup_finds_the_bandwidth_and_drain_empties_the_queue() -> None:
    # A deep buffer (8 BDP): Startup ends on the bandwidth plateau, not on loss.
    sender, cc, trace = bulk(queue=8 * BDP)
    sender.run(3.0)
    drain_at, _, _, queued_at_drain = trace.first(BbrState.DRAIN)
    probe_at, _, _, queued_at_probe = trace.first(BbrState.PROBE_BW)
    # Doubling from 10 to ~52 datagrams per round, then three rounds of plateau: about 8 round trips.
    assert drain_at < 12 * BASE_RTT
    bw_at_drain = next(row[5] for row in trace.rows if row[0] >= drain_at)
    assert bw_at_drain == pytest.approx(RATE, rel=0.05)
    # Startup overshot (a queue of about one BDP), Drain emptied it within a few round trips.
    assert queued_at_drain > 0.5 * BDP
    assert queued_at_probe <= 2 * MDS
    assert probe_at - drain_at < 4 * BASE_RTT
    assert path_drops(sender) == 0
    assert cc.min_rtt == pytest.approx(BASE_RTT, rel=0.05)


def path_drops(sender: Sender) -> int:
    return sender.path.queue_drops + sender.path.random_drops


def test_probe_bw_paces_at_the_bottleneck_rate() -> None:
    sender, cc, trace = bulk()
    sender.run(8.0)
    rows = trace.after(3.0)
    assert {row[1] for row in rows} == {BbrState.PROBE_BW}
    rates = [row[3] for row in rows]
    assert sum(rates) / len(rates) == pytest.approx(RATE, rel=0.05)
    # Gain cycling: probing up at 1.25, down at 0.75, cruising at 1 (less the 1% margin).
    assert max(rates) == pytest.approx(1.25 * 0.99 * RATE, rel=0.02)
    assert min(rates) == pytest.approx(0.75 * 0.99 * RATE, rel=0.02)
    assert {row[6] for row in rows} == set(range(len(PROBE_BW_GAINS)))
    assert sender.goodput(3.0, 8.0) >= 0.97 * RATE
    # The window is 2 BDP plus headroom; the queue stays short on average.
    assert cc.congestion_window == pytest.approx(2 * BDP + 3 * MDS, rel=0.02)
    assert sum(row[4] for row in rows) / len(rows) < 5 * MDS
    assert cc.bandwidth == pytest.approx(RATE, rel=0.01)


def test_follows_a_bottleneck_that_halves() -> None:
    sender, cc, trace = bulk()
    sender.run(4.0)
    sender.path.rate = RATE / 2
    sender.run(8.0)
    assert cc.bandwidth == pytest.approx(RATE / 2, rel=0.05)
    assert all(row[5] <= 0.55 * RATE for row in trace.after(6.0))
    # The queue built when the rate dropped is drained again.
    late = trace.after(6.0)
    assert sum(row[4] for row in late) / len(late) < 5 * MDS
    assert sender.goodput(6.0, 8.0) >= 0.45 * RATE


# -- loss --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_percent_random_loss_keeps_the_rate(seed: int) -> None:
    sender, cc, _ = bulk(loss=0.01, seed=seed)
    sender.run(12.0)
    assert sender.path.random_drops > 50
    # The brief asks for 85%; about 98.7% is measured, so 95% guards against regressions.
    assert sender.goodput(2.0, 12.0) >= 0.95 * RATE
    assert cc.bandwidth >= 0.95 * RATE


def test_newreno_halves_on_the_same_random_loss() -> None:
    # The same path with NewReno: the Mathis bound, far below BBR's rate.
    sender = Sender(NewReno(), Path(rate=RATE, base_rtt=BASE_RTT, queue=int(BDP), loss=0.01, seed=1))
    sender.run(12.0)
    assert sender.goodput(2.0, 12.0) < 0.4 * RATE


def test_heavy_loss_bounds_inflight_and_the_rate() -> None:
    # 10% loss is far above the 2% threshold: every round trip is congested.
    sender, cc, _ = bulk(loss=0.10, seed=1)
    sender.run(12.0)
    assert cc.inflight_hi is not None
    assert cc.inflight_hi <= BDP
    assert cc.congestion_window <= BDP
    rate = cc.pacing_rate
    assert rate is not None and rate <= 0.85 * RATE
    assert 0.3 * RATE <= sender.goodput(4.0, 12.0) <= 0.85 * RATE


def test_shallow_queue_bounds_inflight_and_loss() -> None:
    # A three-datagram buffer: Startup and each probe up overflow it.
    sender, cc, _ = bulk(queue=3 * MDS)
    sender.run(2.0)
    drops, sent = sender.path.queue_drops, sender.sent_packets
    sender.run(12.0)
    assert cc.inflight_hi is not None
    assert cc.inflight_hi <= BDP + 10 * MDS
    # After Startup, probing loses about 1.4% of the packets, below the threshold.
    assert (sender.path.queue_drops - drops) / (sender.sent_packets - sent) < 0.02
    assert sender.goodput(2.0, 12.0) >= 0.95 * RATE


def test_loss_in_startup_ends_startup() -> None:
    cc = Bbr()
    rtt = RttEstimator()
    packets = [SentPacket(pn, pn * 0.001, MDS, ack_eliciting=True, in_flight=True, payload=None) for pn in range(10)]
    for n, packet in enumerate(packets, 1):
        cc.on_packet_sent(packet, n * MDS, packet.time_sent, app_limited=False)
    rtt.update(0.1, 0.0, 0.1)
    cc.on_packets_acked(packets[:4], 0.1, rtt=rtt, app_limited=False)
    # Five losses of ten are far above 2%, but Startup needs six lost datagrams in the round.
    cc.on_packets_lost(packets[4:9], 0.1)
    assert state(cc) is BbrState.STARTUP
    assert hi(cc) is None
    cc.on_packets_lost(packets[9:], 0.1)
    assert state(cc) in (BbrState.DRAIN, BbrState.PROBE_BW)
    # inflight_hi: what was in flight when the lost packet was sent.
    assert hi(cc) == 10 * MDS
    assert cc.congestion_window <= 10 * MDS


def test_loss_below_the_threshold_changes_nothing() -> None:
    sender, cc, _ = bulk()
    sender.run(3.0)
    window, rate, hi = cc.congestion_window, cc.pacing_rate, cc.inflight_hi
    # One loss among a round of ~52 datagrams is below 2%.
    lost = SentPacket(sender.pn - 1, sender.now, MDS, ack_eliciting=True, in_flight=True, payload=None)
    cc.on_packets_lost([lost], sender.now)
    assert (cc.congestion_window, cc.pacing_rate, cc.inflight_hi) == (window, rate, hi)
    # Two more in the same round are above it: inflight is bounded.
    cc.on_packets_lost([lost, lost], sender.now)
    assert cc.inflight_hi is not None
    assert cc.inflight_hi < (hi or math.inf)
    assert cc.congestion_window <= cc.inflight_hi


def test_persistent_congestion_collapses_the_window_and_resets_the_model() -> None:
    sender, cc, _ = bulk()
    sender.run(3.0)
    assert state(cc) is BbrState.PROBE_BW
    cc.on_persistent_congestion(sender.now)
    assert cc.congestion_window == cc.minimum_window == 4 * MDS
    assert state(cc) is BbrState.STARTUP
    assert cc.bandwidth == 0.0
    assert cc.inflight_hi is None
    rate = cc.pacing_rate
    assert rate is not None and rate < 0.5 * RATE
    # The model is rebuilt from scratch: Startup again, then full speed.
    sender.run(6.0)
    assert state(cc) is BbrState.PROBE_BW
    assert sender.goodput(4.5, 6.0) >= 0.9 * RATE


# -- application-limited senders ---------------------------------------------------------------------


@pytest.mark.parametrize("marked", [True, False])
def test_app_limited_samples_do_not_lower_the_estimate(marked: bool) -> None:
    def app_rate(now: float) -> float | None:
        return None if now < 3.0 else 0.2 * RATE

    cc = Bbr()
    path = Path(rate=RATE, base_rtt=BASE_RTT, queue=int(BDP))
    sender = Sender(cc, path, app_rate=app_rate, mark_app_limited=marked)
    sender.run(6.0)
    assert sender.goodput(4.0, 6.0) == pytest.approx(0.2 * RATE, rel=0.05)
    if marked:
        # Sixty round trips of samples at a fifth of the rate did not lower the estimate.
        assert cc.bandwidth == pytest.approx(RATE, rel=0.02)
        rate = cc.pacing_rate
        assert rate is not None and rate >= 0.7 * RATE
    else:
        # Without the marks, the same samples replace the estimate within the filter window.
        assert cc.bandwidth < 0.3 * RATE


# -- ProbeRTT ----------------------------------------------------------------------------------------


def one_probe_rtt_after_the_rtt_grows(sender: Sender, trace: Trace) -> tuple[float, float, BbrState]:
    """The propagation RTT grows to 60 ms now, so the old minimum is never seen again; run to 14 s:
    (ProbeRTT's start, its end, the state after it), asserting there was exactly one."""
    sender.path.base_rtt = 0.06
    sender.run(14.0)
    entries = [t for t in trace.transitions if t[2] is BbrState.PROBE_RTT]
    exits = [t for t in trace.transitions if t[1] is BbrState.PROBE_RTT]
    assert len(entries) == len(exits) == 1
    return entries[0][0], exits[0][0], exits[0][2]


def test_probe_rtt_when_min_rtt_is_stale() -> None:
    # 2 Mbit/s; the propagation RTT grows from 40 to 60 ms at t = 2 s, so the 40 ms
    # minimum is never seen again and expires 10 s after it was last measured.
    rate = 2.5e5
    sender, cc, trace = bulk(rate=rate, base_rtt=0.04, queue=rate * 0.06)
    sender.run(2.0)
    # The minimum includes one datagram's transmission time at the bottleneck.
    assert cc.min_rtt == pytest.approx(0.04 + MDS / rate, rel=0.01)
    start, end, back_to = one_probe_rtt_after_the_rtt_grows(sender, trace)
    # No earlier than MIN_RTT_WINDOW after the start, no later than that after the change.
    assert MIN_RTT_WINDOW <= start <= 2.0 + MIN_RTT_WINDOW + 0.5
    assert back_to is BbrState.PROBE_BW
    # At least PROBE_RTT_DURATION at the minimum window, plus the time to drain to it.
    assert PROBE_RTT_DURATION <= end - start < PROBE_RTT_DURATION + 0.3
    during = [row for row in trace.rows if start <= row[0] < end]
    # Half this path's BDP (about 11 kB) is below the minimum window: ProbeRTT holds the minimum.
    assert during and all(row[2] == 4 * MDS for row in during)
    assert all(row[2] > 4 * MDS for row in trace.rows if end + 1.0 <= row[0])
    assert cc.min_rtt == pytest.approx(0.06 + MDS / rate, rel=0.01)
    assert sender.goodput(12.5, 14.0) >= 0.9 * rate


def test_probe_rtt_holds_half_the_bdp_on_a_fast_path() -> None:
    # 10 Mbit/s, RTT 50 ms growing to 60 ms at 2 s (a BDP of about 52 datagrams): ProbeRTT's window
    # is half the BDP of the min_rtt that expired (BBRv2/v3), not four datagrams, so the path keeps
    # about half its rate for those 0.2 s and the queue still drains (the flight is below one BDP).
    sender, cc, trace = bulk(rate=RATE, base_rtt=BASE_RTT, queue=RATE * 0.1)
    sender.run(2.0)
    bdp = cc.bandwidth * cc.min_rtt
    start, end, _ = one_probe_rtt_after_the_rtt_grows(sender, trace)
    assert cc.probe_rtt_window == pytest.approx(0.5 * bdp, rel=0.1)
    assert cc.probe_rtt_window > 20 * MDS
    during = [row for row in trace.rows if start <= row[0] < end]
    assert during and all(row[2] == cc.probe_rtt_window for row in during)
    assert PROBE_RTT_DURATION <= end - start < PROBE_RTT_DURATION + 0.3
    # What was queued drained: the new path's round trip (60 ms + a datagram's transmission) is min_rtt.
    assert cc.min_rtt == pytest.approx(0.06 + MDS / RATE, rel=0.01)
    # Four datagrams per 61 ms would be 6% of the rate; half the old BDP per round trip is about 40%.
    assert sender.goodput(start, end) >= 0.3 * RATE
    assert sender.goodput(12.5, 14.0) >= 0.9 * RATE


def test_a_sample_taken_without_a_queue_renews_min_rtt_instead_of_probe_rtt() -> None:
    # A transfer, 11 s of silence, another transfer: min_rtt (50 ms) has expired when the second
    # begins.  Its first packets leave with next to nothing in flight, so their RTT samples show
    # the path without this sender's queue, as ProbeRTT's would: the expired min_rtt takes one of
    # them and ProbeRTT is not entered (it would hold half the BDP for 0.2 s for nothing).
    cc = Bbr()
    path = Path(rate=RATE, base_rtt=BASE_RTT, queue=int(BDP))
    sender = Sender(cc, path, app_rate=lambda t: None if t < 1.0 or t >= 12.0 else 0.0)
    trace = Trace(sender)
    sender.run(12.0)
    assert sender.now < 2.0  # the first transfer's last acknowledgement; then nothing until 12 s
    stamp = cc._min_rtt_stamp
    sender.now = 12.0
    sender.run(14.0)
    assert [t for t in trace.transitions if t[2] is BbrState.PROBE_RTT] == []
    assert cc._min_rtt_stamp > 12.0 > stamp + MIN_RTT_WINDOW  # renewed by the second transfer's samples
    assert cc.min_rtt == pytest.approx(BASE_RTT + MDS / RATE, rel=0.05)
    assert sender.goodput(12.5, 14.0) >= 0.9 * RATE


def quiet_spell_then_transfer(resume: float) -> tuple[Bbr, Sender, Trace]:
    """A transfer to 1 s, the propagation RTT grown from 50 to 55 ms (no later sample renews the
    50 ms min_rtt, which expires about 11 s in), silence, another transfer from ``resume`` to 14 s."""
    cc = Bbr()
    path = Path(rate=RATE, base_rtt=BASE_RTT, queue=int(BDP))
    sender = Sender(cc, path, app_rate=lambda t: None if t < 1.0 or t >= resume else 0.0)
    trace = Trace(sender)
    sender.run(resume)
    assert sender.now < 2.0  # the first transfer's last acknowledgement; then nothing until resume
    path.base_rtt = 0.055
    sender.now = resume
    sender.run(14.0)
    return cc, sender, trace


def test_quiet_samples_a_few_seconds_old_renew_min_rtt_mid_transfer() -> None:
    # The second transfer's first packets leave with next to nothing in flight: their samples
    # (55 ms) are quiet but above min_rtt, so they do not renew it then.  When min_rtt expires in
    # the middle of the transfer, they are at most QUIET_WINDOW old: min_rtt becomes theirs, stamped
    # when they were taken, and ProbeRTT is not entered (it would hold half the BDP for 0.2 s).
    cc, sender, trace = quiet_spell_then_transfer(7.0)
    assert [t for t in trace.transitions if t[2] is BbrState.PROBE_RTT] == []
    assert cc._min_rtt_stamp > 7.0
    assert cc.min_rtt == pytest.approx(0.055 + MDS / RATE, rel=0.05)
    assert sender.goodput(10.0, 12.5) >= 0.9 * RATE


def test_quiet_samples_older_than_the_quiet_window_leave_probe_rtt_to_run() -> None:
    # The same, the second transfer from 4 s: at the expiry its quiet samples are about 7 s old,
    # the transfer has kept a queue since, and ProbeRTT runs once.
    cc, _, trace = quiet_spell_then_transfer(4.0)
    entries = [t[0] for t in trace.transitions if t[2] is BbrState.PROBE_RTT]
    assert len(entries) == 1 and MIN_RTT_WINDOW < entries[0] < 1.5 + MIN_RTT_WINDOW
    assert cc.min_rtt == pytest.approx(0.055 + MDS / RATE, rel=0.05)


# -- bookkeeping -------------------------------------------------------------------------------------


def test_state_lives_on_the_packets() -> None:
    # The sampler keeps no per-packet table: what it needs at an ACK is on the packet itself.
    sampler = DeliveryRateSampler()
    probe = _packet(0, 0.0)  # never told of (a PMTU probe): no state, no sample
    packets = [_packet(pn, 0.01 * pn) for pn in (1, 2)]
    for n, packet in enumerate(packets, 2):
        sampler.on_packet_sent(packet, n * MDS, app_limited=False)
    assert probe.delivered == -1
    assert [(p.delivered, p.tx_in_flight, p.first_sent_time) for p in packets] == [
        (0, 2 * MDS, 0.01),
        (0, 3 * MDS, 0.01),
    ]
    assert sampler.on_packets_acked([probe], 0.1, 0.05) is None
    sample = sampler.on_packets_acked(packets, 0.12, 0.05)
    assert sample is not None and sample.prior_delivered == 0 and sample.delivered == 3 * MDS
    assert sampler.delivered == 3 * MDS


def test_set_max_datagram_size() -> None:
    cc = Bbr()
    cc.set_max_datagram_size(1452)
    assert cc.max_datagram_size == 1452
    assert cc.minimum_window == 4 * 1452
    with pytest.raises(LocalProtocolError):
        cc.set_max_datagram_size(0)
    # A larger MTU raises a collapsed window to the new minimum.
    cc.on_persistent_congestion(0.0)
    assert cc.congestion_window == 4 * 1452
    cc.set_max_datagram_size(1500)
    assert cc.congestion_window == 4 * 1500


def test_path_mtu_change_midway() -> None:
    sender, cc, _ = bulk()
    sender.run(2.0)
    sender.mds = 1452
    cc.set_max_datagram_size(1452)
    sender.run(6.0)
    assert cc.max_datagram_size == 1452
    assert sender.goodput(3.0, 6.0) >= 0.95 * RATE
    assert cc.congestion_window == pytest.approx(2 * BDP + 3 * 1452, rel=0.03)


# -- the delivery-rate sampler ---------------------------------------------------------------------


def _packet(pn: int, time_sent: float) -> SentPacket[None]:
    return SentPacket(pn, time_sent, MDS, ack_eliciting=True, in_flight=True, payload=None)


def test_delivery_rate_sample() -> None:
    sampler = DeliveryRateSampler()
    packets = [_packet(pn, pn * 0.01) for pn in range(10)]
    for n, packet in enumerate(packets, 1):
        sampler.on_packet_sent(packet, n * MDS, app_limited=False)
    # Acknowledged one by one, 10 ms apart, from t = 0.1.
    sample = None
    for packet in packets:
        sample = sampler.on_packets_acked([packet], 0.1 + packet.time_sent, 0.05)
    assert sample is not None
    # The last packet: 10 datagrams delivered since the flight began (t = 0), acknowledged at 0.19.
    assert sample.delivered == 10 * MDS
    assert sample.interval == pytest.approx(0.19)
    assert sample.delivery_rate == pytest.approx(10 * MDS / 0.19)
    assert sample.tx_in_flight == 10 * MDS
    assert not sample.is_app_limited
    assert sampler.delivered == 10 * MDS


def test_delivery_rate_rejects_intervals_below_min_rtt() -> None:
    sampler = DeliveryRateSampler()
    packet = _packet(0, 0.0)
    sampler.on_packet_sent(packet, MDS, app_limited=False)
    sample = sampler.on_packets_acked([packet], 0.04, 0.05)
    assert sample is not None
    assert sample.delivery_rate is None
    assert sample.delivered == MDS


def test_app_limited_mark_lasts_until_the_flight_is_delivered() -> None:
    sampler = DeliveryRateSampler()
    p = [_packet(0, 0.0), _packet(1, 0.0), _packet(2, 0.01), _packet(3, 0.1), _packet(4, 0.2)]
    sampler.on_packet_sent(p[0], MDS, app_limited=False)
    sampler.on_packet_sent(p[1], 2 * MDS, app_limited=True)
    sampler.on_packet_sent(p[2], 3 * MDS, app_limited=False)
    first = sampler.on_packets_acked([p[0]], 0.1, 0.05)
    assert first is not None and not first.is_app_limited
    sampler.on_packet_sent(p[3], 3 * MDS, app_limited=False)
    second = sampler.on_packets_acked([p[1]], 0.11, 0.05)
    third = sampler.on_packets_acked([p[2]], 0.12, 0.05)
    assert second is not None and second.is_app_limited
    assert third is not None and third.is_app_limited
    # Packet 3 was sent before the bubble (2 datagrams) was delivered: still marked.
    fourth = sampler.on_packets_acked([p[3]], 0.2, 0.05)
    assert fourth is not None and fourth.is_app_limited
    # Everything in flight at the mark is delivered: new sends are not application-limited.
    sampler.on_packet_sent(p[4], MDS, app_limited=False)
    fifth = sampler.on_packets_acked([p[4]], 0.3, 0.05)
    assert fifth is not None and not fifth.is_app_limited


def test_lost_packets_count_and_give_their_flight() -> None:
    sampler = DeliveryRateSampler()
    p = [_packet(pn, pn * 0.01) for pn in range(3)]
    for pn in range(3):
        sampler.on_packet_sent(p[pn], (pn + 1) * MDS, app_limited=False)
    assert sampler.on_packets_lost([p[0], p[1]]) == 2 * MDS
    assert sampler.lost == 2 * MDS
    assert sampler.on_packets_lost([_packet(7, 0.0)]) is None  # never told of: no flight known
    assert sampler.lost == 3 * MDS


def test_bandwidth_window_is_in_rounds() -> None:
    # The filter forgets a maximum after BW_WINDOW_ROUNDS round trips of lower, unmarked samples.
    sender, cc, _ = bulk()
    sender.run(3.0)
    rounds = cc.round_count
    sender.path.rate = RATE / 4
    while cc.bandwidth > 0.5 * RATE:
        sender.run(sender.now + 0.05)
    assert BW_WINDOW_ROUNDS <= cc.round_count - rounds <= BW_WINDOW_ROUNDS + 3


def test_a_path_that_only_carried_acknowledgements_still_paces_a_datagram_per_rtt() -> None:
    """[REC-5.6.3.4] A controlled side's path: one application-limited ping a second, most of them
    lost (a TURN server dropping the returns), then a full-size datagram: its pacing rate is at
    least one datagram per smoothed RTT, not the few bytes a second the samples showed."""
    big = 16380
    cc = Bbr(max_datagram_size=big)
    rtt = RttEstimator()
    now, pn = 0.0, 0
    for _ in range(40):
        packets: list[SentPacket[None]] = []
        for _ in range(10):  # ten small ack-eliciting packets, nine of them lost
            packet = SentPacket(pn, now, 60, ack_eliciting=True, in_flight=True, payload=None)
            cc.on_packet_sent(packet, 60 * (len(packets) + 1), now, app_limited=True)
            packets.append(packet)
            pn += 1
        rtt.update(0.001, 0.0, now + 0.001)
        cc.on_packets_acked(packets[:1], now + 0.001, rtt=rtt, app_limited=True)
        cc.on_packets_lost(packets[1:], now + 0.01)
        now += 1.0
    assert cc.pacing_rate is not None
    assert cc.pacing_rate >= big / rtt.smoothed_rtt * 0.999
    pacer = Pacer(congestion_window=cc.congestion_window, smoothed_rtt=rtt.smoothed_rtt, max_datagram_size=big)
    pacer.set_rate(cc.pacing_rate, cc.congestion_window)
    pacer.on_packet_sent(now, big)
    pacer.on_packet_sent(now, big)
    assert pacer.next_send_time(now, big) <= now + 2 * rtt.smoothed_rtt


# -- ACK aggregation (REC-5.6.3.1, §5.6.5) -------------------------------------------------------------


class AggregatingPath(Path):
    """A ``Path`` whose acknowledgements are held and released together every ``period`` seconds (a
    receiver or a relay on the way that runs late), until ``until``."""

    def __init__(self, *, period: float, until: float = math.inf, **kw: float) -> None:
        super().__init__(rate=kw["rate"], base_rtt=kw["base_rtt"], queue=int(kw["queue"]))
        self.period = period
        self.until = until

    def send(self, now: float, size: int) -> float | None:
        arrival = super().send(now, size)
        if arrival is None or arrival >= self.until:
            return arrival
        return math.ceil(arrival / self.period) * self.period


def test_bunched_acknowledgements_widen_the_window_and_keep_the_rate() -> None:
    """[REC-5.6.3.1] [REC-5.6.5.1] ACKs released every 40 ms on a 10 ms path: with 2 BDP (of the 10 ms
    min RTT) alone the sender waits through most of each gap, its samples fall, and the window with them (measured: down
    to 34% of the rate by 5 s); the allowance (the largest excess of acknowledged over ``bw *
    interval``) covers a gap's worth of data and the rate is kept."""
    base, period = 0.01, 0.04
    cc = Bbr()
    sender = Sender(cc, AggregatingPath(period=period, rate=RATE, base_rtt=base, queue=RATE * 0.05))
    sender.run(6.0)
    assert state(cc) is BbrState.PROBE_BW
    assert cc.extra_acked >= 0.5 * RATE * period
    assert cc.congestion_window >= 2 * RATE * base + cc.extra_acked
    assert sender.goodput(3.0, 6.0) >= 0.9 * RATE


def test_the_allowance_is_zero_on_a_smooth_path_and_expires() -> None:
    """[REC-5.6.3.1] [REC-5.6.5.1] acknowledgements at the model's rate make no allowance (the window stays 2 BDP +
    headroom); one made by bunching is gone 2 * EXTRA_ACKED_ROUNDS round trips after the bunching
    stopped; persistent congestion clears it."""
    sender, cc, _ = bulk()
    sender.run(6.0)
    assert cc.extra_acked <= MDS
    base, period = 0.01, 0.04
    cc = Bbr()
    bunching = AggregatingPath(period=period, until=3.0, rate=RATE, base_rtt=base, queue=RATE * 0.05)
    sender = Sender(cc, bunching)
    sender.run(3.0)
    assert cc.extra_acked >= 0.5 * RATE * period
    sender.run(3.0 + (2 * EXTRA_ACKED_ROUNDS + 2) * 0.05)
    assert cc.extra_acked <= MDS
    assert cc.congestion_window <= 2 * cc.bdp + 3 * MDS + MDS  # type: ignore[operator]
    bunching.until = math.inf
    sender.run(5.0)
    assert cc.extra_acked > MDS
    cc.on_persistent_congestion(sender.now)
    assert cc.extra_acked == 0
