"""NewReno (RFC 9002 §7) and CUBIC (RFC 9438) (spec/recovery.md §5)."""

from __future__ import annotations

import itertools

import pytest

from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.recovery.bbr import Bbr
from p2pos.proto.recovery.congestion import (
    CUBIC_BETA,
    CUBIC_C,
    CongestionController,
    Cubic,
    NewReno,
    initial_window,
)
from p2pos.proto.recovery.recovery import SentPacket
from p2pos.proto.recovery.rtt import RttEstimator

MDS = 1200
RTT = RttEstimator(initial_rtt=0.1)


def pkt(time_sent: float, size: int = MDS, pn: int = 0, in_flight: bool = True) -> SentPacket[None]:
    return SentPacket(pn, time_sent, size, ack_eliciting=in_flight, in_flight=in_flight, payload=None)


def ack(cc: CongestionController, count: int, sent: float, now: float, size: int = MDS) -> None:
    """Acknowledge ``count`` packets of a sender that was using its whole window (so it may grow)."""
    cc.on_packet_sent(pkt(sent, size), cc.congestion_window, sent, app_limited=False)
    cc.on_packets_acked([pkt(sent, size) for _ in range(count)], now, rtt=RTT, app_limited=False)


def test_initial_window() -> None:
    assert initial_window(1200) == 12000
    assert initial_window(1452) == 14520
    assert initial_window(1500) == 14720
    assert initial_window(9000) == 18000
    cc = NewReno(max_datagram_size=1452)
    assert cc.congestion_window == 14520
    assert cc.minimum_window == 2904
    assert cc.in_slow_start
    assert cc.available(14000) == 520
    assert cc.available(20000) == 0


def test_protocol_is_satisfied() -> None:
    controllers: list[CongestionController] = [NewReno(), Cubic(), Bbr()]
    assert all(c.congestion_window == 12000 for c in controllers)


@pytest.mark.parametrize("controller", [NewReno, Cubic])
def test_an_under_used_window_does_not_grow(controller: type[NewReno] | type[Cubic]) -> None:
    """RFC 9002 §7.8: a sender held below its window (here by flow control) earns no growth."""
    cc = controller()
    for n in range(50):
        cc.on_packet_sent(pkt(n * 0.01, pn=n), 3 * MDS, n * 0.01, app_limited=False)  # 3 of 10 packets in flight
        cc.on_packets_acked([pkt(n * 0.01, pn=n)], n * 0.01 + 0.1, rtt=RTT, app_limited=False)
    assert cc.congestion_window == 12000
    # Once the window is the limit again, slow start resumes.
    cc.on_packet_sent(pkt(1.0, pn=99), 12000, 1.0, app_limited=False)
    cc.on_packets_acked([pkt(1.0, pn=99)], 1.1, rtt=RTT, app_limited=False)
    assert cc.congestion_window == 12000 + MDS
    # In congestion avoidance the window must be used to within two datagrams.
    cc.on_packets_lost([pkt(1.05, pn=100)], 1.2)
    window = cc.congestion_window
    for n in range(200):
        t = 2.0 + n * 0.01
        cc.on_packet_sent(pkt(t, pn=200 + n), window - 3 * MDS, t, app_limited=False)
        cc.on_packets_acked([pkt(t, pn=200 + n)], t + 0.1, rtt=RTT, app_limited=False)
    assert cc.congestion_window == window
    for n in range(200):
        t = 5.0 + n * 0.01
        cc.on_packet_sent(pkt(t, pn=400 + n), cc.congestion_window, t, app_limited=False)
        cc.on_packets_acked([pkt(t, pn=400 + n)], t + 0.1, rtt=RTT, app_limited=False)
    assert cc.congestion_window > window


@pytest.mark.parametrize("controller", [NewReno, Cubic])
def test_window_controllers_leave_pacing_to_the_window(
    controller: type[NewReno] | type[Cubic],
) -> None:
    cc = controller()
    assert cc.pacing_rate is None
    for n in range(20):
        cc.on_packet_sent(pkt(0.0, pn=n), (n + 1) * MDS, 0.0, app_limited=n % 2 == 0)
    assert cc.congestion_window == 12000
    assert cc.in_slow_start
    ack(cc, 10, sent=0.0, now=0.1)
    assert cc.congestion_window == 24000
    assert cc.pacing_rate is None


def test_newreno_slow_start() -> None:
    cc = NewReno()
    ack(cc, 10, sent=0.0, now=0.1)
    # Slow start: +1 byte per byte acknowledged.
    assert cc.congestion_window == 24000
    ack(cc, 20, sent=0.1, now=0.2)
    assert cc.congestion_window == 48000


def test_newreno_loss_recovery_and_avoidance() -> None:
    cc = NewReno()
    ack(cc, 10, sent=0.0, now=0.1)
    assert cc.congestion_window == 24000
    # A loss at t=1.0 halves the window and starts a recovery period.
    cc.on_packets_lost([pkt(0.9)], now=1.0)
    assert cc.congestion_window == 12000
    assert cc.ssthresh == 12000
    assert not cc.in_slow_start
    # More losses of packets sent before the recovery began: no second reduction.
    cc.on_packets_lost([pkt(0.95), pkt(1.0)], now=1.05)
    assert cc.congestion_window == 12000
    # Acknowledging packets sent before the recovery began does not grow the window.
    ack(cc, 10, sent=0.99, now=1.1)
    assert cc.congestion_window == 12000
    # Congestion avoidance: +1 datagram per window's worth of bytes acknowledged.
    ack(cc, 9, sent=1.01, now=1.2)
    assert cc.congestion_window == 12000
    ack(cc, 1, sent=1.01, now=1.2)
    assert cc.congestion_window == 13200
    ack(cc, 10, sent=1.1, now=1.3)
    assert cc.congestion_window == 13200
    ack(cc, 1, sent=1.1, now=1.3)
    assert cc.congestion_window == 14400
    # A loss of a packet sent after the recovery began is a new congestion event.
    cc.on_packets_lost([pkt(1.2)], now=1.4)
    assert cc.congestion_window == 7200
    assert cc.ssthresh == 7200


def test_newreno_never_below_minimum_window() -> None:
    cc = NewReno()
    for step in range(10):
        cc.on_packets_lost([pkt(float(step) + 0.5)], now=float(step + 1))
    assert cc.congestion_window == cc.minimum_window == 2400
    assert cc.ssthresh == 1200


def test_newreno_persistent_congestion() -> None:
    cc = NewReno()
    ack(cc, 10, sent=0.0, now=0.1)
    cc.on_packets_lost([pkt(0.5)], now=1.0)
    assert cc.congestion_window == 12000
    cc.on_persistent_congestion(now=1.0)
    assert cc.congestion_window == 2400
    # The recovery period is over: even packets sent before it grow the window again,
    # in slow start up to ssthresh (12000), then in congestion avoidance.
    ack(cc, 1, sent=0.5, now=1.1)
    assert cc.congestion_window == 3600
    ack(cc, 7, sent=1.0, now=1.2)
    assert cc.congestion_window == 12000
    ack(cc, 2, sent=1.0, now=1.2)
    assert cc.congestion_window == 12000


def test_newreno_slow_start_carries_over_into_avoidance() -> None:
    cc = NewReno()
    ack(cc, 10, sent=0.0, now=0.1)
    cc.on_packets_lost([pkt(0.5)], now=1.0)
    cc.on_persistent_congestion(now=1.0)
    ack(cc, 7, sent=1.0, now=1.1)
    assert cc.congestion_window == 10800
    # 1200 bytes reach ssthresh (12000); the other 800 count toward avoidance.
    ack(cc, 1, sent=1.0, now=1.1, size=2000)
    assert cc.congestion_window == 12000
    ack(cc, 1, sent=1.0, now=1.1, size=11199)
    assert cc.congestion_window == 12000
    ack(cc, 1, sent=1.0, now=1.1, size=1)
    assert cc.congestion_window == 13200


def test_app_limited_does_not_grow() -> None:
    for cc in (NewReno(), Cubic()):
        cc.on_packets_acked([pkt(0.0) for _ in range(10)], 0.1, rtt=RTT, app_limited=True)
        assert cc.congestion_window == 12000


def test_packets_not_in_flight_are_ignored() -> None:
    cc = NewReno()
    cc.on_packets_acked([pkt(0.0, in_flight=False)], 0.1, rtt=RTT, app_limited=False)
    assert cc.congestion_window == 12000
    cc.on_packets_lost([pkt(0.0, in_flight=False)], now=0.2)
    assert cc.congestion_window == 12000
    cc.on_packets_lost([], now=0.2)
    assert cc.congestion_window == 12000


def test_max_datagram_size_update() -> None:
    cc = NewReno()
    for step in range(5):
        cc.on_packets_lost([pkt(float(step) + 0.5)], now=float(step + 1))
    assert cc.congestion_window == 2400
    cc.set_max_datagram_size(1452)
    assert cc.max_datagram_size == 1452
    assert cc.minimum_window == 2904
    assert cc.congestion_window == 2904
    # Avoidance now grows by the new size.
    ack(cc, 3, sent=10.0, now=10.1, size=1452)
    assert cc.congestion_window == 2904 + 1452
    with pytest.raises(LocalProtocolError):
        cc.set_max_datagram_size(0)
    with pytest.raises(LocalProtocolError):
        NewReno(max_datagram_size=-5)


# -- CUBIC ---------------------------------------------------------------------------------------


def grow_to(cc: Cubic, packets: int) -> None:
    ack(cc, packets - 10, sent=0.0, now=0.1)
    assert cc.congestion_window == packets * MDS


def test_cubic_reduction_uses_beta() -> None:
    cc = Cubic()
    grow_to(cc, 100)
    cc.on_packets_lost([pkt(0.5)], now=1.0)
    assert cc.congestion_window == int(120000 * CUBIC_BETA) == 84000
    assert cc.ssthresh == 84000
    # No second reduction inside the recovery period.
    cc.on_packets_lost([pkt(0.9)], now=1.1)
    assert cc.congestion_window == 84000


def _run_rounds(cc: Cubic, start: float, seconds: float, rtt: float = 0.1) -> list[tuple[float, int]]:
    """Acknowledge a full window every RTT; returns (time, window) after each round."""
    trace = []
    now = start
    while now < start + seconds - 1e-9:
        sent = now
        now += rtt
        count = cc.congestion_window // MDS
        cc.on_packet_sent(pkt(sent), cc.congestion_window, sent, app_limited=False)  # the window is used
        cc.on_packets_acked([pkt(sent) for _ in range(count)], now, rtt=RTT, app_limited=False)
        trace.append((now - start, cc.congestion_window))
    return trace


def test_cubic_growth_is_concave_then_convex_around_w_max() -> None:
    cc = Cubic()
    grow_to(cc, 100)
    cc.on_packets_lost([pkt(0.5)], now=1.0)
    k = ((120000 - 84000) / (CUBIC_C * MDS)) ** (1 / 3)
    assert k == pytest.approx(75 ** (1 / 3))
    trace = _run_rounds(cc, 1.0, 8.0)
    windows = [w for _, w in trace]
    assert all(b >= a for a, b in itertools.pairwise(windows))
    # Near K the window plateaus near W_max, within a few datagrams.
    near_k = [w for t, w in trace if abs(t - k) < 0.15]
    assert near_k and all(abs(w - 120000) < 5 * MDS for w in near_k)
    # Concave before K (growth slows), convex after (growth speeds up).
    per_round = [b - a for a, b in itertools.pairwise(windows)]
    early = sum(per_round[2:8])
    plateau = sum(per_round[int(k * 10) - 3 : int(k * 10) + 3])
    late = sum(per_round[-6:])
    assert early > plateau < late
    assert windows[-1] > 130000


def test_cubic_follows_w_cubic_curve() -> None:
    cc = Cubic()
    grow_to(cc, 100)
    cc.on_packets_lost([pkt(0.5)], now=1.0)
    trace = _run_rounds(cc, 1.0, 3.0)
    # Starting the epoch at the first ACK (t = 0.1), the window tracks W_cubic(t) within 3 datagrams.
    for t, window in trace[5:]:
        assert window == pytest.approx(cc.w_cubic(t - 0.1), abs=3 * MDS)


def test_cubic_fast_convergence() -> None:
    cc = Cubic()
    grow_to(cc, 100)
    cc.on_packets_lost([pkt(0.5)], now=1.0)
    _run_rounds(cc, 1.0, 1.0)
    window = cc.congestion_window
    assert window < 120000
    cc.on_packets_lost([pkt(1.9)], now=2.0)
    # W_max was not reached again: the new W_max is (1 + beta) / 2 of the window.
    assert cc.w_cubic(cc._k) == pytest.approx(window * (1 + CUBIC_BETA) / 2, abs=1)
    assert cc.congestion_window == pytest.approx(window * CUBIC_BETA, abs=1)


def test_cubic_reno_friendly_region_at_small_windows() -> None:
    # With a tiny W_max the cubic curve is flat for a long RTT: the Reno estimate leads.
    cc = Cubic()
    cc.on_packets_lost([pkt(0.5)], now=1.0)
    assert cc.congestion_window == 8400
    slow = RttEstimator(initial_rtt=2.0)
    now = 1.0
    for _ in range(5):
        sent = now
        now += 2.0
        count = cc.congestion_window // MDS
        cc.on_packet_sent(pkt(sent), cc.congestion_window, sent, app_limited=False)
        cc.on_packets_acked([pkt(sent) for _ in range(count)], now, rtt=slow, app_limited=False)
    # W_est grows at least alpha_cubic datagrams per RTT: 5 rounds gain well over 2 datagrams.
    assert cc.congestion_window >= 8400 + 2 * MDS


def test_cubic_persistent_congestion_and_slow_start() -> None:
    cc = Cubic()
    grow_to(cc, 100)
    cc.on_packets_lost([pkt(0.5)], now=1.0)
    cc.on_persistent_congestion(now=1.0)
    assert cc.congestion_window == 2400
    assert cc.in_slow_start
    ack(cc, 10, sent=1.5, now=1.6)
    assert cc.congestion_window == 14400


# -- the pieces together ---------------------------------------------------------------------


@pytest.mark.parametrize("controller", [NewReno, Cubic, Bbr])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_transfer_over_lossy_link(controller: type[NewReno] | type[Cubic] | type[Bbr], seed: int) -> None:
    """LossRecovery + a controller + Pacer deliver every unit over a seeded 10%-loss link."""
    import heapq
    import random

    from p2pos.proto.recovery.pacing import Pacer
    from p2pos.proto.recovery.recovery import LossRecovery

    rng = random.Random(seed)
    one_way = 0.025
    rec: LossRecovery[int] = LossRecovery(rtt=RttEstimator(initial_rtt=0.1))
    cc = controller()
    pacer = Pacer(congestion_window=cc.congestion_window, smoothed_rtt=rec.rtt.smoothed_rtt)
    units = 400
    to_send = list(range(units))  # unit ids, retransmissions go to the front
    delivered: set[int] = set()
    received_pns: list[int] = []
    arrivals: list[tuple[float, int, int]] = []  # (time, pn, unit) at the receiver
    acks: list[tuple[float, int]] = []  # (time, largest pn received) at the sender
    now = 0.0
    pn = 0
    probes = 0

    def on_lost(lost: list[SentPacket[int]]) -> None:
        if lost:
            cc.on_packets_lost(lost, now)
            to_send[:0] = [p.payload for p in lost if p.payload not in delivered]

    while len(delivered) < units:
        assert now < 120.0, "transfer stalled"
        # Send while the window, the pacer and the queue allow (probes bypass the first two).
        while to_send and (probes or cc.available(rec.bytes_in_flight) >= MDS):
            if not probes and pacer.next_send_time(now, MDS) > now:
                break
            unit = to_send.pop(0)
            if unit in delivered:
                continue
            sent = rec.on_packet_sent(pn, now, MDS, ack_eliciting=True, in_flight=True, payload=unit)
            pacer.on_packet_sent(now, MDS)
            cc.on_packet_sent(sent, rec.bytes_in_flight, now, app_limited=len(to_send) == 0)
            if rng.random() >= 0.1:
                heapq.heappush(arrivals, (now + one_way, pn, unit))
            pn += 1
            probes = max(0, probes - 1)
        if probes and not to_send:
            # A probe with nothing new to carry re-sends the oldest outstanding unit.
            oldest = next(rec.outstanding(), None)
            to_send.append(oldest.payload if oldest is not None else 0)
            continue
        # Next event: an arrival, an ACK, the loss timer or the pacer.
        candidates = [t for t in (rec.get_loss_detection_timer(),) if t is not None]
        if arrivals:
            candidates.append(arrivals[0][0])
        if acks:
            candidates.append(acks[0][0])
        if to_send and cc.available(rec.bytes_in_flight) >= MDS:
            candidates.append(pacer.next_send_time(now, MDS))
        now = max(now, min(candidates))
        while arrivals and arrivals[0][0] <= now:
            _, got, unit = heapq.heappop(arrivals)
            delivered.add(unit)
            received_pns.append(got)
            if rng.random() >= 0.1:
                heapq.heappush(acks, (now + one_way, got))
        while acks and acks[0][0] <= now:
            heapq.heappop(acks)
            # The receiver acknowledges everything it has received (one range per packet number).
            ranges = [(p, p) for p in sorted(set(received_pns))[-64:]]
            result = rec.on_ack_received(ranges, 0.0, now)
            assert not result.acked_unsent
            cc.on_packets_acked(result.newly_acked, now, rtt=rec.rtt, app_limited=False)
            on_lost(result.lost)
            if result.persistent_congestion:
                cc.on_persistent_congestion(now)
            rate = cc.pacing_rate
            if rate is not None:
                pacer.set_rate(rate, cc.congestion_window)
            else:
                pacer.update_rate(cc.congestion_window, rec.rtt.smoothed_rtt)
        timer = rec.get_loss_detection_timer()
        if timer is not None and now >= timer:
            timeout = rec.on_loss_detection_timeout(now)
            on_lost(timeout.lost)
            if timeout.persistent_congestion:
                cc.on_persistent_congestion(now)
            probes = timeout.probes_to_send
        assert rec.bytes_in_flight >= 0
        assert cc.congestion_window >= cc.minimum_window
    assert delivered == set(range(units))
    assert rec.rtt.smoothed_rtt == pytest.approx(0.05, abs=0.03)
