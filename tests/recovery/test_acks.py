"""AckTracker (spec/channels.md §4, RFC 9000 §13.2): the ranges against a set model, and when ACKs are due."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from p2pos.proto.channels.frames import Ack, encode_frame, parse_frames_untrusted
from p2pos.proto.recovery.acks import ACK_ONLY_PER_ACK, AckTracker


def _runs(received: set[int]) -> list[tuple[int, int]]:
    """The maximal runs of consecutive numbers, highest first: what an exact ACK reports."""
    runs: list[tuple[int, int]] = []
    for pn in sorted(received, reverse=True):
        if runs and runs[-1][0] == pn + 1:
            runs[-1] = (pn, runs[-1][1])
        else:
            runs.append((pn, pn))
    return runs


def _check_shape(ranges: list[tuple[int, int]]) -> None:
    for low, high in ranges:
        assert low <= high
    for (low, _), (_, high) in itertools.pairwise(ranges):
        assert high < low - 1  # highest first, disjoint and never adjacent


packet_numbers = st.lists(st.integers(min_value=0, max_value=300), min_size=1, max_size=200)


@given(packet_numbers)
def test_ranges_equal_the_set_of_received_packets(pns: list[int]) -> None:
    tracker = AckTracker(max_ranges=1000)
    received: set[int] = set()
    for pn in pns:
        tracker.on_packet(pn, True, 0.0)
        received.add(pn)
        assert tracker.snapshot() == _runs(received)
    assert tracker.largest == max(received)


@given(packet_numbers, st.integers(min_value=1, max_value=6))
def test_few_ranges_never_claim_a_packet_that_did_not_arrive(pns: list[int], max_ranges: int) -> None:
    tracker = AckTracker(max_ranges=max_ranges)
    received: set[int] = set()
    for pn in pns:
        tracker.on_packet(pn, False, 0.0)
        received.add(pn)
        ranges = tracker.snapshot()
        _check_shape(ranges)
        assert len(ranges) <= max_ranges
        claimed = {n for low, high in ranges for n in range(low, high + 1)}
        assert claimed <= received
        assert max(received) in claimed  # the newest is always reported
    # The ACK frame built from the snapshot says the same thing after a round trip through the wire.
    frame = Ack.from_ranges(tracker.snapshot(), 0)
    (parsed,) = parse_frames_untrusted(encode_frame(frame))
    assert isinstance(parsed, Ack) and parsed.ranges() == tracker.snapshot()


def test_in_order_packets_are_acked_every_second_one_or_after_the_delay() -> None:
    tracker = AckTracker(max_ack_delay=0.025)
    assert tracker.get_timer() is None and not tracker.has_ranges()
    tracker.on_packet(0, True, 1.0)
    assert tracker.get_timer() == 1.025
    assert not tracker.ack_due(1.02) and tracker.ack_due(1.025)
    tracker.on_packet(1, True, 1.01)
    assert tracker.ack_due(1.01)  # the second ack-eliciting packet: at once
    tracker.on_ack_sent()
    assert tracker.get_timer() is None
    tracker.on_packet(2, True, 1.1)
    assert tracker.get_timer() == 1.1 + 0.025
    assert abs(tracker.ack_delay(1.12) - 0.02) < 1e-12


def test_reordering_and_gaps_are_acked_at_once() -> None:
    tracker = AckTracker(max_ack_delay=0.025)
    tracker.on_packet(0, True, 0.0)
    tracker.on_ack_sent()
    tracker.on_packet(2, True, 0.1)  # 1 is missing: a gap
    assert tracker.ack_due(0.1)
    tracker.on_ack_sent()
    tracker.on_packet(1, True, 0.2)  # the late one: below the largest
    assert tracker.ack_due(0.2)
    assert tracker.snapshot() == [(0, 2)]
    # The ACK delay is counted from the arrival of the largest, not of the late packet.
    assert abs(tracker.ack_delay(0.2) - 0.1) < 1e-12


def test_packets_that_elicit_nothing_arm_no_timer() -> None:
    tracker = AckTracker()
    for pn in range(5):
        tracker.on_packet(pn, False, 0.0)
    assert tracker.get_timer() is None and tracker.has_ranges()
    tracker.on_packet(9, False, 0.0)  # even a gap: ACK-only packets are not acknowledged (RFC 9000 §13.2.1)
    assert tracker.get_timer() is None
    assert tracker.snapshot() == [(9, 9), (0, 4)]


def test_ack_only_packets_make_news_only_now_and_then() -> None:
    tracker = AckTracker()
    assert not tracker.has_news()
    for pn in range(ACK_ONLY_PER_ACK - 1):
        tracker.on_packet(pn, False, 0.0)
        assert not tracker.has_news()  # nothing the peer needs to hear yet
    tracker.on_packet(ACK_ONLY_PER_ACK - 1, False, 0.0)
    assert tracker.has_news()  # now and then: the peer may forget what its ACKs delivered
    tracker.on_ack_sent()
    assert not tracker.has_news()
    tracker.on_packet(100, True, 0.0)
    assert tracker.has_news()  # any ack-eliciting packet is news at once
    tracker.on_ack_sent()
    assert not tracker.has_news()


def test_ack_every_is_configurable() -> None:
    tracker = AckTracker(ack_every=4, max_ack_delay=1.0)
    for pn in range(3):
        tracker.on_packet(pn, True, 0.0)
        assert not tracker.ack_due(0.0)
    tracker.on_packet(3, True, 0.0)
    assert tracker.ack_due(0.0)


def test_ranges_shrink_once_an_ack_is_acknowledged() -> None:
    """RFC 9000 §13.2.4: numbers up to an acknowledged ACK's largest are not reported again."""
    tracker = AckTracker()
    for pn in (1, 2, 3, 5, 6, 9, 10, 11):
        tracker.on_packet(pn, True, 0.0)
    assert tracker.snapshot() == [(9, 11), (5, 6), (1, 3)]
    tracker.on_ack_acknowledged(5)
    assert tracker.snapshot() == [(9, 11), (6, 6)]
    tracker.on_ack_acknowledged(11)
    assert tracker.snapshot() == []
    assert not tracker.has_ranges()
    tracker.on_packet(12, True, 0.0)
    assert tracker.snapshot() == [(12, 12)]
