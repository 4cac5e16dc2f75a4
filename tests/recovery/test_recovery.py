"""LossRecovery (spec/recovery.md §3-§4, RFC 9002 §6, §7.6)."""

from __future__ import annotations

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.recovery.recovery import PTO_PROBES, LossRecovery, SentPacket
from p2pos.proto.recovery.rtt import RttEstimator

SIZE = 1200


def make(initial_rtt: float = 0.333, max_ack_delay: float = 0.025) -> LossRecovery[str]:
    return LossRecovery(rtt=RttEstimator(initial_rtt=initial_rtt, max_ack_delay=max_ack_delay))


def send(rec: LossRecovery[str], pn: int, now: float, *, eliciting: bool = True, size: int = SIZE) -> SentPacket[str]:
    return rec.on_packet_sent(pn, now, size, ack_eliciting=eliciting, in_flight=eliciting, payload=f"p{pn}")


def pns(packets: list[SentPacket[str]]) -> list[int]:
    return [p.pn for p in packets]


def test_send_and_ack_in_order() -> None:
    rec = make()
    for pn in range(3):
        send(rec, pn, 0.0)
    assert rec.bytes_in_flight == 3 * SIZE
    assert rec.ack_eliciting_in_flight == 3
    assert rec.outstanding_count == 3
    result = rec.on_ack_received([(0, 1)], 0.0, now=0.1)
    assert pns(result.newly_acked) == [0, 1]
    assert [p.payload for p in result.newly_acked] == ["p0", "p1"]
    assert all(p.acked and not p.lost for p in result.newly_acked)
    assert result.lost == []
    assert result.rtt_updated
    assert not result.acked_unsent
    assert rec.rtt.latest_rtt == pytest.approx(0.1)
    assert rec.bytes_in_flight == SIZE
    assert rec.largest_acked == 1
    assert pns(list(rec.outstanding())) == [2]


def test_duplicate_ack_changes_nothing() -> None:
    rec = make()
    send(rec, 0, 0.0)
    send(rec, 1, 0.0)
    rec.on_ack_received([(0, 0)], 0.0, now=0.1)
    again = rec.on_ack_received([(0, 0)], 0.0, now=0.2)
    assert again.newly_acked == [] and again.lost == [] and not again.rtt_updated
    assert rec.rtt.latest_rtt == pytest.approx(0.1)
    assert rec.bytes_in_flight == SIZE


def test_ranges_in_any_order_and_with_gaps_in_numbers() -> None:
    rec = make()
    # Record counters used by untracked records leave gaps (spec/frames.md §1).
    for pn in (0, 2, 3, 7, 8, 11):
        send(rec, pn, 0.0)
    result = rec.on_ack_received([(11, 11), (6, 8), (0, 3)], 0.0, now=0.1)
    assert pns(result.newly_acked) == [0, 2, 3, 7, 8, 11]
    assert rec.bytes_in_flight == 0
    assert rec.get_loss_detection_timer() is None


def test_rtt_sample_only_for_newly_acked_largest() -> None:
    rec = make()
    send(rec, 0, 0.0)
    send(rec, 1, 0.01)
    assert rec.on_ack_received([(1, 1)], 0.0, now=0.1).lost == []
    assert rec.rtt.latest_rtt == pytest.approx(0.09)
    # Largest acknowledged (1) is not newly acknowledged: no sample.
    result = rec.on_ack_received([(0, 1)], 0.0, now=0.1)
    assert pns(result.newly_acked) == [0]
    assert not result.rtt_updated
    assert rec.rtt.latest_rtt == pytest.approx(0.09)


def test_no_rtt_sample_from_non_eliciting_packets() -> None:
    rec = make()
    send(rec, 0, 0.0, eliciting=False)
    result = rec.on_ack_received([(0, 0)], 0.0, now=0.1)
    assert pns(result.newly_acked) == [0]
    assert not result.rtt_updated
    assert not rec.rtt.has_sample


def test_ack_delay_is_used_for_rtt() -> None:
    rec = make(max_ack_delay=0.025)
    send(rec, 0, 0.0)
    send(rec, 1, 1.0)
    rec.on_ack_received([(0, 0)], 0.0, now=0.1)
    rec.on_ack_received([(1, 1)], 0.02, now=1.12)
    assert rec.rtt.smoothed_rtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.1)


def test_loss_by_packet_threshold() -> None:
    rec = make()
    for pn in range(6):
        send(rec, pn, 0.0)
    # Acknowledging 5 at once: 0, 1, 2 are 3 or more below it (RFC 9002 §6.1.1).
    result = rec.on_ack_received([(5, 5)], 0.0, now=0.01)
    assert pns(result.newly_acked) == [5]
    assert pns(result.lost) == [0, 1, 2]
    assert all(p.lost for p in result.lost)
    assert rec.bytes_in_flight == 2 * SIZE
    # 3 and 4 wait for the time threshold: the timer is the loss time, not the PTO.
    loss_delay = rec.rtt.loss_delay()
    assert rec.get_loss_detection_timer() == pytest.approx(0.0 + loss_delay)


def test_packet_threshold_counts_packet_numbers_not_packets() -> None:
    rec = make()
    send(rec, 0, 0.0)
    send(rec, 2, 0.0)
    send(rec, 3, 0.0)
    # 3 - 0 == 3: lost by the threshold although only two packets followed it.
    assert pns(rec.on_ack_received([(3, 3)], 0.0, now=0.01).lost) == [0]


def test_loss_by_time_threshold() -> None:
    rec = make(initial_rtt=0.1)
    send(rec, 0, 0.0)
    send(rec, 1, 0.01)
    result = rec.on_ack_received([(1, 1)], 0.0, now=0.11)
    assert result.lost == []
    # latest_rtt = smoothed = 0.1: loss delay 9/8 * 0.1 after packet 0 was sent.
    timer = rec.get_loss_detection_timer()
    assert timer == pytest.approx(0.1125)
    assert timer is not None
    early = rec.on_loss_detection_timeout(timer - 0.001)
    assert early.lost == [] and early.probes_to_send == 0
    fired = rec.on_loss_detection_timeout(timer)
    assert pns(fired.lost) == [0]
    assert fired.probes_to_send == 0
    assert rec.bytes_in_flight == 0
    assert rec.get_loss_detection_timer() is None


def test_old_packet_lost_by_time_on_ack() -> None:
    rec = make(initial_rtt=0.1)
    send(rec, 0, 0.0)
    send(rec, 1, 0.5)
    # At 0.6 packet 0 is 0.6 s old, far past 9/8 of the RTT.
    result = rec.on_ack_received([(1, 1)], 0.0, now=0.6)
    assert pns(result.lost) == [0]


def test_spurious_loss_ack_is_ignored() -> None:
    rec = make()
    for pn in range(5):
        send(rec, pn, 0.0)
    lost = rec.on_ack_received([(4, 4)], 0.0, now=0.01).lost
    assert pns(lost) == [0, 1]
    in_flight = rec.bytes_in_flight
    late = rec.on_ack_received([(0, 4)], 0.0, now=0.02)
    assert pns(late.newly_acked) == [2, 3]
    assert rec.bytes_in_flight == in_flight - 2 * SIZE == 0
    assert all(p.lost for p in lost)


def test_ack_of_unsent_number_is_flagged_and_ignored() -> None:
    rec = make()
    send(rec, 0, 0.0)
    send(rec, 1, 0.0)
    result = rec.on_ack_received([(0, 2)], 0.0, now=0.1)
    assert result.acked_unsent
    assert result.newly_acked == []
    assert rec.largest_acked is None
    assert rec.bytes_in_flight == 2 * SIZE
    # A number used by an untracked record (KEEPALIVE) may be acknowledged.
    rec.on_packet_number_skipped(2)
    ok = rec.on_ack_received([(0, 2)], 0.0, now=0.1)
    assert not ok.acked_unsent
    assert pns(ok.newly_acked) == [0, 1]


def test_caller_misuse_raises() -> None:
    rec = make()
    send(rec, 5, 0.0)
    with pytest.raises(LocalProtocolError):
        send(rec, 5, 0.0)
    with pytest.raises(LocalProtocolError):
        send(rec, 4, 0.0)
    with pytest.raises(LocalProtocolError):
        rec.on_packet_number_skipped(5)
    with pytest.raises(LocalProtocolError):
        send(rec, 6, 0.0, size=-1)
    with pytest.raises(LocalProtocolError):
        rec.on_ack_received([], 0.0, now=0.0)
    with pytest.raises(LocalProtocolError):
        rec.on_ack_received([(3, 2)], 0.0, now=0.0)
    with pytest.raises(LocalProtocolError):
        rec.on_ack_received([(-1, 2)], 0.0, now=0.0)
    with pytest.raises(LocalProtocolError):
        LossRecovery(packet_threshold=0)


def test_pto_fires_backs_off_and_resets_on_ack() -> None:
    rec = make(initial_rtt=0.333, max_ack_delay=0.025)
    assert rec.get_loss_detection_timer() is None
    send(rec, 0, 0.0)
    pto = rec.rtt.pto_duration()
    assert pto == pytest.approx(1.024)
    assert rec.get_loss_detection_timer() == pytest.approx(pto)
    assert rec.on_loss_detection_timeout(pto - 0.01).probes_to_send == 0
    first = rec.on_loss_detection_timeout(pto)
    assert first.probes_to_send == PTO_PROBES == 2
    assert first.lost == []
    assert rec.pto_count == 1
    # A PTO declares nothing lost (RFC 9002 §6.2).
    assert rec.outstanding_count == 1
    assert rec.bytes_in_flight == SIZE
    # Backoff: 2 * PTO after the last ack-eliciting packet was sent.
    assert rec.get_loss_detection_timer() == pytest.approx(2 * pto)
    assert rec.on_loss_detection_timeout(2 * pto).probes_to_send == 2
    assert rec.get_loss_detection_timer() == pytest.approx(4 * pto)
    # The probes are sent; the timer restarts from the newest one.
    send(rec, 1, 3.1)
    send(rec, 2, 3.1)
    assert rec.get_loss_detection_timer() == pytest.approx(3.1 + 4 * pto)
    result = rec.on_ack_received([(1, 2)], 0.0, now=3.2)
    assert rec.pto_count == 0
    # Packet 0 (sent 3.1 s before) is now lost by time; nothing is left in flight.
    assert pns(result.lost) == [0]
    assert rec.get_loss_detection_timer() is None


def test_pto_not_reset_by_ack_with_nothing_new() -> None:
    rec = make()
    send(rec, 0, 0.0)
    send(rec, 1, 0.0)
    rec.on_ack_received([(0, 0)], 0.0, now=0.1)
    timer = rec.get_loss_detection_timer()
    assert timer is not None
    rec.on_loss_detection_timeout(timer)
    assert rec.pto_count == 1
    rec.on_ack_received([(0, 0)], 0.0, now=timer + 0.1)
    assert rec.pto_count == 1


def test_non_eliciting_packets_arm_no_timer() -> None:
    rec = make()
    send(rec, 0, 0.0, eliciting=False)
    assert rec.get_loss_detection_timer() is None
    assert rec.bytes_in_flight == 0
    assert rec.on_loss_detection_timeout(100.0).probes_to_send == 0


def _rtt_sample(rec: LossRecovery[str]) -> None:
    """pn 0 sent at 0, acknowledged at 0.1: smoothed 0.1, rttvar 0.05, PTO 0.325, PC duration 0.975."""
    send(rec, 0, 0.0)
    rec.on_ack_received([(0, 0)], 0.0, now=0.1)
    assert rec.persistent_congestion_duration() == pytest.approx(0.975)


def test_persistent_congestion() -> None:
    rec = make(max_ack_delay=0.025)
    _rtt_sample(rec)
    send(rec, 1, 1.0)
    send(rec, 2, 1.5)
    send(rec, 3, 2.1)
    send(rec, 10, 2.2)
    result = rec.on_ack_received([(10, 10)], 0.0, now=2.3)
    assert pns(result.lost) == [1, 2, 3]
    # 2.1 - 1.0 > 0.975 with nothing acknowledged in between.
    assert result.persistent_congestion


def test_no_persistent_congestion_when_period_is_short() -> None:
    rec = make(max_ack_delay=0.025)
    _rtt_sample(rec)
    send(rec, 1, 1.0)
    send(rec, 2, 1.5)
    send(rec, 3, 1.8)
    send(rec, 10, 2.2)
    result = rec.on_ack_received([(10, 10)], 0.0, now=2.3)
    assert pns(result.lost) == [1, 2, 3]
    # The duration uses the RTT including this ACK's sample: 0.1 + 4 * 0.0375 + 0.025, times 3.
    assert rec.persistent_congestion_duration() == pytest.approx(0.825)
    assert not result.persistent_congestion


def test_no_persistent_congestion_across_an_acknowledged_packet() -> None:
    rec = make(max_ack_delay=0.025)
    _rtt_sample(rec)
    send(rec, 1, 1.0)
    send(rec, 2, 1.01)
    # 2 arrives; 1 is neither acknowledged nor lost yet.
    assert rec.on_ack_received([(2, 2)], 0.0, now=1.05).lost == []
    send(rec, 3, 2.5)
    send(rec, 10, 2.6)
    result = rec.on_ack_received([(10, 10)], 0.0, now=2.7)
    assert pns(result.lost) == [1, 3]
    assert not result.persistent_congestion


def test_no_persistent_congestion_before_first_rtt_sample() -> None:
    rec = make()
    send(rec, 1, 1.0)
    send(rec, 2, 5.0)
    send(rec, 3, 9.0)
    send(rec, 10, 9.1)
    result = rec.on_ack_received([(10, 10)], 0.0, now=9.2)
    assert pns(result.lost) == [1, 2, 3]
    # The first sample is taken by this very ACK: the lost packets were sent before it.
    assert not result.persistent_congestion


def test_persistent_congestion_needs_ack_eliciting_endpoints() -> None:
    rec = make(max_ack_delay=0.025)
    _rtt_sample(rec)
    send(rec, 1, 1.0, eliciting=False)
    send(rec, 2, 1.5)
    send(rec, 3, 2.1, eliciting=False)
    send(rec, 10, 2.2)
    result = rec.on_ack_received([(10, 10)], 0.0, now=2.3)
    assert pns(result.lost) == [1, 2, 3]
    assert not result.persistent_congestion


def test_loss_timer_reports_losses_once() -> None:
    rec = make(max_ack_delay=0.025)
    _rtt_sample(rec)
    send(rec, 1, 2.0)
    send(rec, 2, 2.01)
    send(rec, 3, 2.05)
    assert rec.on_ack_received([(3, 3)], 0.0, now=2.1).lost == []
    timer = rec.get_loss_detection_timer()
    assert timer is not None
    assert timer == pytest.approx(2.0 + rec.rtt.loss_delay())
    fired = rec.on_loss_detection_timeout(timer)
    assert pns(fired.lost) == [1]
    assert not fired.persistent_congestion
    second = rec.get_loss_detection_timer()
    assert second is not None
    assert second == pytest.approx(2.01 + rec.rtt.loss_delay())
    assert pns(rec.on_loss_detection_timeout(second).lost) == [2]
    assert rec.on_loss_detection_timeout(second).lost == []
    assert rec.get_loss_detection_timer() is None


def test_discard_all_and_outstanding() -> None:
    rec = make()
    for pn in range(4):
        send(rec, pn, 0.0)
    rec.on_ack_received([(1, 1)], 0.0, now=0.01)
    assert pns(list(rec.outstanding())) == [0, 2, 3]
    remaining = rec.discard_all()
    assert pns(remaining) == [0, 2, 3]
    assert rec.bytes_in_flight == 0
    assert rec.outstanding_count == 0
    assert rec.get_loss_detection_timer() is None
    send(rec, 4, 1.0)
    assert rec.bytes_in_flight == SIZE


def test_many_packets_in_flight_cumulative_acks() -> None:
    """ACK frames repeat old ranges: each must cost only what it newly acknowledges."""
    rec = make()
    count = 20_000
    for pn in range(count):
        send(rec, pn, pn * 1e-5)
    for high in range(1, count, 2):
        result = rec.on_ack_received([(0, high)], 0.0, now=0.5)
        assert len(result.newly_acked) == 2
        assert result.lost == []
    assert rec.bytes_in_flight == 0
    # The resolved packets were dropped from the front, not kept for ever.
    assert len(rec._packets) < 200


# -- the invariant ---------------------------------------------------------------------------

op = st.one_of(
    st.tuples(st.just("send"), st.integers(1, 3), st.integers(0, 1500), st.booleans(), st.booleans()),
    # Ranges as (distance below the largest number sent, width); a negative distance acks an unsent number.
    st.tuples(st.just("ack"), st.lists(st.tuples(st.integers(-1, 30), st.integers(0, 8)), min_size=1, max_size=4)),
    st.tuples(st.just("timer")),
    st.tuples(st.just("wait"), st.floats(0.0, 0.5)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(op, min_size=10, max_size=80))
def test_bytes_in_flight_stays_consistent(ops: list[tuple[object, ...]]) -> None:
    rec: LossRecovery[int] = LossRecovery(rtt=RttEstimator(initial_rtt=0.1))
    now = 0.0
    pn = -1
    sent: dict[int, SentPacket[int]] = {}
    resolved: set[int] = set()
    lost_count = 0

    def settle(packets: list[SentPacket[int]]) -> None:
        for packet in packets:
            assert packet.pn in sent
            assert packet.pn not in resolved
            resolved.add(packet.pn)

    for item in ops:
        match item:
            case ("send", gap, size, eliciting, in_flight):
                assert isinstance(gap, int) and isinstance(size, int)
                assert isinstance(eliciting, bool) and isinstance(in_flight, bool)
                pn += gap
                sent[pn] = rec.on_packet_sent(
                    pn, now, size, ack_eliciting=eliciting, in_flight=in_flight or eliciting, payload=pn
                )
            case ("ack", spans):
                assert isinstance(spans, list)
                ranges = [(max(0, pn - back - width), max(0, pn - back)) for back, width in spans]
                result = rec.on_ack_received(ranges, 0.001, now)
                if result.acked_unsent:
                    assert max(high for _, high in ranges) > pn
                    assert not result.newly_acked and not result.lost
                settle(result.newly_acked)
                settle(result.lost)
                lost_count += len(result.lost)
                acked = set(pns_of(result.newly_acked))
                assert all(any(low <= a <= high for low, high in ranges) for a in acked)
            case ("timer",):
                timer = rec.get_loss_detection_timer()
                if timer is not None:
                    now = max(now, timer)
                    lost = rec.on_loss_detection_timeout(now).lost
                    settle(lost)
                    lost_count += len(lost)
            case ("wait", delta):
                assert isinstance(delta, float)
                now += delta
        outstanding = [p for n, p in sent.items() if n not in resolved]
        assert rec.bytes_in_flight == sum(p.size for p in outstanding if p.in_flight)
        assert rec.bytes_in_flight >= 0
        assert rec.outstanding_count == len(outstanding)
        assert rec.ack_eliciting_in_flight == sum(1 for p in outstanding if p.ack_eliciting and p.in_flight)
        assert [p.pn for p in rec.outstanding()] == sorted(p.pn for p in outstanding)
        assert all(not p.acked and not p.lost for p in outstanding)
    event("losses" if lost_count else "no losses")


def pns_of(packets: list[SentPacket[int]]) -> list[int]:
    return [p.pn for p in packets]


def test_loss_timer_at_its_deadline_always_declares_loss() -> None:
    """Regression: ``now - loss_delay`` can round below ``time_sent`` when now == time_sent + loss_delay."""
    hazards = 0
    for step in range(2000):
        rec = make(initial_rtt=0.1)
        start = step * 0.0491
        send(rec, 0, start)
        send(rec, 1, start + 0.001)
        assert rec.on_ack_received([(1, 1)], 0.0, now=start + 0.05).lost == []
        timer = rec.get_loss_detection_timer()
        assert timer is not None
        hazards += timer - rec.rtt.loss_delay() < start
        assert pns(rec.on_loss_detection_timeout(timer).lost) == [0], step
    # The rounding case did occur among these start times.
    assert hazards > 0
