"""RttEstimator (spec/recovery.md §2, RFC 9002 §5): hand-computed samples."""

from __future__ import annotations

import pytest

from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.recovery.rtt import GRANULARITY, INITIAL_RTT, RttEstimator


def test_before_any_sample() -> None:
    rtt = RttEstimator()
    assert not rtt.has_sample
    assert rtt.first_sample_time is None
    assert rtt.smoothed_rtt == INITIAL_RTT == 0.333
    assert rtt.rttvar == pytest.approx(0.1665)
    # RFC 9002 §6.2.1: 333 ms + 4 * 166.5 ms + 25 ms.
    assert rtt.pto_duration() == pytest.approx(1.024)
    assert rtt.pto_duration(0.0) == pytest.approx(0.999)
    # 9/8 * max(smoothed_rtt, latest_rtt = 0).
    assert rtt.loss_delay() == pytest.approx(1.125 * 0.333)


def test_configurable_initial_rtt() -> None:
    rtt = RttEstimator(initial_rtt=0.1, max_ack_delay=0.0)
    assert rtt.smoothed_rtt == 0.1
    assert rtt.rttvar == 0.05
    assert rtt.pto_duration() == pytest.approx(0.3)


def test_first_sample_ignores_ack_delay() -> None:
    rtt = RttEstimator()
    rtt.update(0.1, 0.02, now=5.0)
    assert rtt.has_sample
    assert rtt.first_sample_time == 5.0
    assert rtt.latest_rtt == 0.1
    assert rtt.min_rtt == 0.1
    assert rtt.smoothed_rtt == 0.1
    assert rtt.rttvar == 0.05


def test_samples_by_hand() -> None:
    rtt = RttEstimator(max_ack_delay=0.025)
    rtt.update(0.1, 0.01, now=1.0)
    # 0.12 >= min_rtt + ack_delay: adjusted = 0.11.
    rtt.update(0.12, 0.01, now=2.0)
    assert rtt.min_rtt == 0.1
    assert rtt.latest_rtt == 0.12
    assert rtt.rttvar == pytest.approx(0.75 * 0.05 + 0.25 * 0.01)  # 0.04, with the old smoothed_rtt
    assert rtt.smoothed_rtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.11)  # 0.10125
    # 0.105 < min_rtt + 0.02: the ACK delay is not subtracted.
    rtt.update(0.105, 0.02, now=3.0)
    assert rtt.rttvar == pytest.approx(0.75 * 0.04 + 0.25 * (0.105 - 0.10125))
    assert rtt.smoothed_rtt == pytest.approx(0.875 * 0.10125 + 0.125 * 0.105)
    assert rtt.first_sample_time == 1.0
    assert rtt.pto_duration() == pytest.approx(rtt.smoothed_rtt + 4 * rtt.rttvar + 0.025)


def test_ack_delay_capped_at_max_ack_delay() -> None:
    rtt = RttEstimator(max_ack_delay=0.025)
    rtt.update(0.1, 0.0, now=1.0)
    rtt.update(0.2, 0.1, now=2.0)
    # The peer claims 100 ms of delay but may only delay 25 ms: adjusted = 0.175.
    assert rtt.smoothed_rtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.175)
    assert rtt.rttvar == pytest.approx(0.75 * 0.05 + 0.25 * 0.075)


def test_min_rtt_is_not_adjusted_and_only_falls() -> None:
    rtt = RttEstimator()
    rtt.update(0.1, 0.0, now=1.0)
    rtt.update(0.08, 0.05, now=2.0)
    assert rtt.min_rtt == 0.08
    rtt.update(0.3, 0.0, now=3.0)
    assert rtt.min_rtt == 0.08
    assert rtt.latest_rtt == 0.3


def test_pto_uses_granularity_floor() -> None:
    rtt = RttEstimator(max_ack_delay=0.0)
    for step in range(200):
        rtt.update(0.01, 0.0, now=float(step))
    # rttvar decays to nothing: the variance term is kGranularity.
    assert rtt.rttvar < GRANULARITY / 4
    assert rtt.pto_duration() == pytest.approx(0.01 + GRANULARITY)
    assert rtt.loss_delay() == pytest.approx(1.125 * 0.01)


def test_loss_delay_uses_larger_of_latest_and_smoothed() -> None:
    rtt = RttEstimator()
    rtt.update(0.1, 0.0, now=1.0)
    rtt.update(0.5, 0.0, now=2.0)
    assert rtt.latest_rtt > rtt.smoothed_rtt
    assert rtt.loss_delay() == pytest.approx(1.125 * 0.5)
    tiny = RttEstimator()
    tiny.update(0.0, 0.0, now=0.0)
    assert tiny.loss_delay() == GRANULARITY


def test_invalid_parameters() -> None:
    with pytest.raises(LocalProtocolError):
        RttEstimator(initial_rtt=0.0)
    with pytest.raises(LocalProtocolError):
        RttEstimator(max_ack_delay=-1.0)
