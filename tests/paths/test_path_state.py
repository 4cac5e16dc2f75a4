"""One path's state and the per-path recovery rules, in isolation (spec/paths.md §2-§4)."""

from __future__ import annotations

import pytest

from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.paths.path import (
    AMPLIFICATION_FACTOR,
    CHALLENGE_RETRY,
    PATH_DEAD_TIMEOUT,
    REPROBE_MAX,
    TRANSITIONS,
    Path,
    PathInput,
    PathKind,
    PathState,
)
from p2pos.proto.recovery.recovery import LossRecovery


def _path(kind: PathKind = PathKind.DATAGRAM) -> Path:
    return Path(1, kind=kind, rank=0, congestion_control="newreno", max_datagram_size=1452, pmtu_probing=True)


def test_the_transition_table_is_closed_and_abandoned_is_final() -> None:
    path = _path()
    for state in PathState:
        for event in PathInput:
            path.state = state
            if event in TRANSITIONS[state]:
                path.transition(event)
                assert path.state is TRANSITIONS[state][event]
            else:
                with pytest.raises(LocalProtocolError):
                    path.transition(event)
    assert TRANSITIONS[PathState.ABANDONED] == {}


def test_challenges_retry_from_250_ms_doubling_and_give_up_after_3_s() -> None:
    """PTH-3.4: retries at 0.25, 0.5, 1, ... after each challenge; DEAD at max(3 s, 3 PTO)."""
    path = _path()
    path.start_validation(10.0)
    assert path.validation_deadline == 10.0 + max(3.0, 3 * path.rtt.pto_duration())
    sent = []
    now = 10.0
    while path.challenge_at is not None:
        now = path.challenge_at
        assert path.challenge_due(now)
        sent.append(round(now - 10.0, 6))
        path.on_challenge_sent(bytes([len(sent)]) * 8, now)
    assert sent[:4] == [0.0, CHALLENGE_RETRY, 3 * CHALLENGE_RETRY, 7 * CHALLENGE_RETRY]
    assert all(t < 3.0 for t in sent)
    assert path.get_timer() == path.validation_deadline
    path.validation_failed(path.validation_deadline or 0.0)
    assert path.state is PathState.DEAD


def test_a_response_to_any_outstanding_challenge_validates_and_gives_an_rtt_sample_only_on_its_path() -> None:
    path = _path()
    path.start_validation(0.0)
    path.on_challenge_sent(b"A" * 8, 0.0)
    path.on_challenge_sent(b"B" * 8, 0.25)
    assert not path.on_response(b"C" * 8, 0.3, arrived_here=True)  # not ours: ignored
    assert path.state.value == "validating"
    assert path.on_response(b"A" * 8, 0.4, arrived_here=True)
    assert path.state.value == "validated" and path.rtt.has_sample and abs(path.rtt.smoothed_rtt - 0.4) < 1e-9
    other = _path()
    other.start_validation(0.0)
    other.on_challenge_sent(b"D" * 8, 0.0)
    assert other.on_response(b"D" * 8, 0.1, arrived_here=False)  # validated, but no sample (PTH-2.3)
    assert other.state is PathState.VALIDATED and not other.rtt.has_sample


def test_a_dead_path_is_reprobed_at_1_2_4_up_to_30_s() -> None:
    """PTH-4.5."""
    path = _path()
    path.state = PathState.DEAD
    gaps = []
    now = 0.0
    for _ in range(8):
        path.schedule_reprobe(now)
        assert path.challenge_at is not None
        gaps.append(path.challenge_at - now)
        now = path.challenge_at
    assert gaps == [1.0, 2.0, 4.0, 8.0, 16.0, REPROBE_MAX, REPROBE_MAX, REPROBE_MAX]


def test_the_amplification_budget_applies_to_peer_made_paths_until_validated() -> None:
    """PTH-3.5."""
    path = _path()
    assert path.send_budget() is None  # a path the driver added: ours to probe
    path.by_peer = True
    assert path.send_budget() == 0
    path.bytes_received = 100
    path.bytes_sent = 250
    assert path.send_budget() == AMPLIFICATION_FACTOR * 100 - 250
    path.bytes_sent = 400
    assert path.send_budget() == 0
    path.state = PathState.VALIDATED
    assert path.send_budget() is None


def test_a_stream_path_never_probes_the_pmtu() -> None:
    assert _path(PathKind.STREAM).pmtu.probe_size_to_send(0.0) is None
    assert _path(PathKind.DATAGRAM).pmtu.probe_size_to_send(0.0) is not None


def test_the_dead_deadline_needs_data_outstanding_and_counts_from_the_last_sign_of_life() -> None:
    """PTH-4.4: 2.5 s after the last sign of life, not before the oldest packet had min(2.5 s, 3 PTO)."""
    path = _path()
    assert path.dead_deadline() is None
    path.rtt.update(0.02, 0.0, 0.0)  # a 20 ms path: 3 PTO is well under 3 s
    assert 3 * path.rtt.pto_duration() < 1.0
    assert PATH_DEAD_TIMEOUT == 2.5
    path.last_heard = 5.0
    path.recovery.on_packet_sent(0, 6.0, 1200, ack_eliciting=True, in_flight=True, payload=())
    assert path.dead_deadline() == 7.5
    path.last_heard = 1.0  # quiet for long: the packet still gets min(2.5 s, 3 PTO)
    assert path.dead_deadline() == 6.0 + min(2.5, 3 * path.rtt.pto_duration())


# -- LossRecovery with a shared number space (PTH-2.2, PTH-2.3) ---------------------------------


def _shared() -> tuple[LossRecovery[str], LossRecovery[str]]:
    fast: LossRecovery[str] = LossRecovery()
    slow: LossRecovery[str] = LossRecovery()
    fast.share_space()
    slow.share_space()
    return fast, slow


def test_the_packet_threshold_counts_packets_of_the_path_not_numbers() -> None:
    """PTH-2.2: a slow path's packet is not lost because packets of a fast path overtook it."""
    fast, slow = _shared()
    slow.on_packet_sent(0, 0.0, 1200, ack_eliciting=True, in_flight=True, payload="slow0")
    for pn in range(1, 11):
        fast.on_packet_sent(pn, 0.0, 1200, ack_eliciting=True, in_flight=True, payload=f"fast{pn}")
    ranges = [(1, 10)]
    fast.on_ack_received(ranges, 0.0, 0.05)
    result = slow.on_ack_received(ranges, 0.0, 0.05)
    assert result.newly_acked == [] and result.lost == [] and slow.outstanding_count == 1
    # Three later packets of the slow path acknowledged: now it is lost by the threshold.
    for pn in (11, 12, 13):
        slow.on_packet_sent(pn, 0.01, 1200, ack_eliciting=True, in_flight=True, payload=f"slow{pn}")
    result = slow.on_ack_received([(11, 13)], 0.0, 0.06)
    assert [p.payload for p in result.lost] == ["slow0"]


def test_numbers_of_other_paths_are_ignored_and_not_taken_for_unsent_ones() -> None:
    _, slow = _shared()
    slow.on_packet_sent(0, 0.0, 1200, ack_eliciting=True, in_flight=True, payload="s")
    result = slow.on_ack_received([(5, 9)], 0.0, 0.1)  # numbers sent on another path
    assert not result.acked_unsent and result.newly_acked == []


def test_an_ack_arriving_on_another_path_gives_no_rtt_sample() -> None:
    """PTH-2.3."""
    fast, _ = _shared()
    fast.on_packet_sent(0, 0.0, 1200, ack_eliciting=True, in_flight=True, payload="f")
    result = fast.on_ack_received([(0, 0)], 0.0, 0.2, rtt_sample=False)
    assert len(result.newly_acked) == 1 and not result.rtt_updated and not fast.rtt.has_sample
