"""The recovery.md requirement cases (conformance/cases_req_recovery.py) can fail.

Each test runs one case through the suite's command line against this implementation's
adapter (``conformance.impl``) with one rule of spec/recovery.md broken in the core by a
monkeypatch, and checks that the case fails for that reason; the same case passes against
the unbroken adapter.  The pattern is tests/conformance/test_recovery_cases.py's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import suite_helpers
from suite_helpers import run_case

#: Every test here runs the pure-Python core, whatever core this run uses (a broken core is a
#: patched or mutated pure one): the compiled pass of `make test` leaves them out.
pytestmark = pytest.mark.pure_core


REPO_ROOT = Path(__file__).resolve().parents[2]

#: An RttEstimator.update with recovery.md §2 broken as the placeholders say.
_UPDATE = (
    "from p2pos.proto.recovery.rtt import RttEstimator\n"
    "def update(self, latest_rtt, ack_delay, now):\n"
    "    ack_delay = ack_delay * {scale}\n"
    "    self.latest_rtt = latest_rtt\n"
    "    if self.first_sample_time is None:\n"
    "        self.first_sample_time = now\n"
    "        latest_rtt = latest_rtt - {first_delay}\n"
    "        self.min_rtt = self.smoothed_rtt = latest_rtt\n"
    "        self.rttvar = latest_rtt / 2\n"
    "        return\n"
    "    self.min_rtt = min(self.min_rtt, {min_sample})\n"
    "    ack_delay = min(ack_delay, {cap})\n"
    "    adjusted = latest_rtt - ack_delay if latest_rtt - ack_delay >= {floor} else latest_rtt\n"
    "    {first} = {first_value}\n"
    "    {second} = {second_value}\n"
    "RttEstimator.update = update\n"
)
_RIGHT = {
    "scale": "1",
    "first_delay": "0",
    "min_sample": "latest_rtt",
    "cap": "self.max_ack_delay",
    "floor": "self.min_rtt",
    "first": "self.rttvar",
    "first_value": "0.75 * self.rttvar + 0.25 * abs(self.smoothed_rtt - adjusted)",
    "second": "self.smoothed_rtt",
    "second_value": "0.875 * self.smoothed_rtt + 0.125 * adjusted",
}


def _rtt_bug(**changes: str) -> str:
    return _UPDATE.format(**{**_RIGHT, **changes})


#: Broken cores: the Python statements run before the adapter serves.
BUGS = {
    # recovery.md §2: the plain rewrite above, unbroken (a check of the rewrite itself).
    "rtt-rewritten": _rtt_bug(),
    # §2: the first sample is reduced by the ACK delay.
    "first-sample-ack-delay": _rtt_bug(first_delay="ack_delay"),
    # §2: the ACK delay is not capped at max_ack_delay.
    "no-ack-delay-cap": _rtt_bug(cap="10.0"),
    # §2: the ACK delay is subtracted even when that goes below min_rtt.
    "ack-delay-below-min-rtt": _rtt_bug(floor="0.0"),
    # §2: min_rtt takes the sample less the ACK delay.
    "min-rtt-adjusted": _rtt_bug(min_sample="latest_rtt - min(ack_delay, self.max_ack_delay)"),
    # §2: smoothed_rtt is updated before rttvar, which then uses the new value.
    "srtt-before-rttvar": _rtt_bug(
        first="self.smoothed_rtt",
        first_value=_RIGHT["second_value"],
        second="self.rttvar",
        second_value=_RIGHT["first_value"],
    ),
    # §2: the ACK delay read as milliseconds.
    "ack-delay-in-ms": _rtt_bug(scale="1000"),
    # §2: kInitialRtt of 0.5 s.
    "initial-rtt": (
        "from p2pos.proto.recovery.rtt import RttEstimator\n"
        "_init = RttEstimator.__init__\n"
        "def init(self, *, initial_rtt=0.333, **kw):\n"
        "    _init(self, initial_rtt=0.5, **kw)\n"
        "RttEstimator.__init__ = init\n"
    ),
    # §2: a sample from an ACK that newly acknowledges only ACK-only packets.
    "sample-without-eliciting": (
        "from p2pos.proto.recovery import recovery as r\n"
        "_on_ack = r.LossRecovery.on_ack_received\n"
        "def on_ack(self, ranges, ack_delay, now):\n"
        "    result = _on_ack(self, ranges, ack_delay, now)\n"
        "    if result.newly_acked and not result.rtt_updated:\n"
        "        self.rtt.update(now - result.newly_acked[-1].time_sent, ack_delay, now)\n"
        "    return result\n"
        "r.LossRecovery.on_ack_received = on_ack\n"
    ),
    # §3.2: an ACK range below the first tracked packet (the CONFIRM's counter) taken for one never sent.
    "gap-is-error": (
        "from p2pos.proto.recovery import recovery as r\n"
        "_first = {}\n"
        "_sent = r.LossRecovery.on_packet_sent\n"
        "def on_sent(self, pn, *args, **kw):\n"
        "    _first.setdefault(id(self), pn)\n"
        "    return _sent(self, pn, *args, **kw)\n"
        "_on_ack = r.LossRecovery.on_ack_received\n"
        "def on_ack(self, ranges, ack_delay, now):\n"
        "    if any(low < _first.get(id(self), 0) for low, _ in ranges):\n"
        "        return r.AckResult(acked_unsent=True)\n"
        "    return _on_ack(self, ranges, ack_delay, now)\n"
        "r.LossRecovery.on_packet_sent = on_sent\n"
        "r.LossRecovery.on_ack_received = on_ack\n"
    ),
    # §3.1: a late ACK of a packet declared lost still gives an RTT sample.
    "sample-from-lost": (
        "from p2pos.proto.recovery import recovery as r\n"
        "_lost = {}\n"
        "_on_ack = r.LossRecovery.on_ack_received\n"
        "def on_ack(self, ranges, ack_delay, now):\n"
        "    result = _on_ack(self, ranges, ack_delay, now)\n"
        "    largest = max(high for _, high in ranges)\n"
        "    if not result.newly_acked and largest in _lost:\n"
        "        self.rtt.update(now - _lost.pop(largest), ack_delay, now)\n"
        "    for packet in result.lost:\n"
        "        _lost[packet.pn] = packet.time_sent\n"
        "    return result\n"
        "r.LossRecovery.on_ack_received = on_ack\n"
    ),
    # §4.3: an ACK does not reset the PTO backoff.
    "no-backoff-reset": (
        "from p2pos.proto.recovery import recovery as r\n"
        "_on_ack = r.LossRecovery.on_ack_received\n"
        "def on_ack(self, ranges, ack_delay, now):\n"
        "    count = self.pto_count\n"
        "    result = _on_ack(self, ranges, ack_delay, now)\n"
        "    self.pto_count = count\n"
        "    return result\n"
        "r.LossRecovery.on_ack_received = on_ack\n"
    ),
    # §4.3: any ACK resets the PTO backoff, even one of nothing new.
    "reset-on-any-ack": (
        "from p2pos.proto.recovery import recovery as r\n"
        "_on_ack = r.LossRecovery.on_ack_received\n"
        "def on_ack(self, ranges, ack_delay, now):\n"
        "    result = _on_ack(self, ranges, ack_delay, now)\n"
        "    self.pto_count = 0\n"
        "    return result\n"
        "r.LossRecovery.on_ack_received = on_ack\n"
    ),
    # §4.3: a probe timeout declares every packet in flight lost.
    "pto-declares-lost": (
        "from p2pos.proto.recovery import recovery as r\n"
        "_timeout = r.LossRecovery.on_loss_detection_timeout\n"
        "def on_timeout(self, now):\n"
        "    result = _timeout(self, now)\n"
        "    if not result.probes_to_send:\n"
        "        return result\n"
        "    lost = list(self.outstanding())\n"
        "    for packet in lost:\n"
        "        packet.state = r._LOST\n"
        "        self._remove(packet)\n"
        "    return r.TimeoutResult(lost=lost, probes_to_send=result.probes_to_send)\n"
        "r.LossRecovery.on_loss_detection_timeout = on_timeout\n"
    ),
    # §4.3: probes carry a PING only, never the oldest data.
    "probe-ping-only": (
        "from p2pos.proto.channels.connection import Connection\n"
        "Connection._probe_with_oldest_data = lambda self, probes: None\n"
    ),
    # §4.1: no packet threshold (only the time threshold finds losses).
    "no-packet-threshold": (
        "from p2pos.proto.recovery import recovery as r\n"
        "_init = r.LossRecovery.__init__\n"
        "def init(self, *, packet_threshold=3, **kw):\n"
        "    _init(self, packet_threshold=1000, **kw)\n"
        "r.LossRecovery.__init__ = init\n"
    ),
    # §4.1: a packet is lost as soon as a later one is acknowledged.
    "packet-threshold-1": (
        "from p2pos.proto.recovery import recovery as r\n"
        "_init = r.LossRecovery.__init__\n"
        "def init(self, *, packet_threshold=3, **kw):\n"
        "    _init(self, packet_threshold=1, **kw)\n"
        "r.LossRecovery.__init__ = init\n"
    ),
    # §4.2: a loss delay of two RTTs instead of 9/8.
    "loss-delay-2rtt": (
        "from p2pos.proto.recovery.rtt import RttEstimator\n"
        "RttEstimator.loss_delay = lambda self: 2 * max(self.smoothed_rtt, self.latest_rtt)\n"
    ),
    # §5: the reference's NewReno and CUBIC in place of BBR: allowed controllers, the cases must pass.
    "newreno": "from p2pos.proto.channels import sending\nsending.CONTROLLERS['bbr'] = sending.NewReno\n",
    "cubic": "from p2pos.proto.channels import sending\nsending.CONTROLLERS['bbr'] = sending.Cubic\n",
    # §5: NewReno that does not react to losses (slow start goes on).
    "loss-blind-newreno": (
        "from p2pos.proto.channels import sending\n"
        "sending.NewReno.on_packets_lost = lambda self, packets, now: None\n"
        "sending.CONTROLLERS['bbr'] = sending.NewReno\n"
    ),
    # §7.3: the search probes the midpoint rounded down, MAX_PLPMTU never first.
    "search-round-down": (
        "from p2pos.proto.recovery import pmtu as m\n"
        "def _next_probe(self, now):\n"
        "    if self._upper - self._lower < self._granularity:\n"
        "        self._set_state(m.PmtuState.SEARCH_COMPLETE)\n"
        "        self._timer = None if self._lower >= self._max or now is None else now + self._raise_interval\n"
        "        return\n"
        "    self._probe_size = (self._lower + self._upper) // 2\n"
        "    self._probe_count = 0\n"
        "m.PmtuDiscovery._next_probe = _next_probe\n"
    ),
    # §7.3: a lost size is probed twice, not MAX_PROBES (3) times.
    "probe-twice": (
        "from p2pos.proto.recovery.pmtu import PmtuDiscovery\n"
        "_init = PmtuDiscovery.__init__\n"
        "def init(self, **kw):\n"
        "    _init(self, **{**kw, 'max_probes': 2})\n"
        "PmtuDiscovery.__init__ = init\n"
    ),
    # §7.1: a probe is sent whenever one is due, however many are outstanding.
    "many-probes": (
        "from p2pos.proto.recovery import pmtu as m\n"
        "def probe_size_to_send(self, now):\n"
        "    if self.state not in (m.PmtuState.BASE, m.PmtuState.SEARCHING):\n"
        "        return None\n"
        "    return self._probe_size\n"
        "m.PmtuDiscovery.probe_size_to_send = probe_size_to_send\n"
    ),
    # §7.1: a receiver takes a packet with PADDING for one that needs no ACK.
    "padded-not-acked": (
        "from p2pos.proto.channels import frames as fr, receiving as rv\n"
        "_record = rv.ReceivePath._record_packet\n"
        "def record(self, pn, eliciting, frames, now):\n"
        "    _record(self, pn, eliciting and not any(isinstance(f, fr.Padding) for f in frames), frames, now)\n"
        "rv.ReceivePath._record_packet = record\n"
    ),
    # channels.md §9.2: an ACK-only packet from the peer does not restart the idle timer.
    "idle-ignores-ack-only": (
        "from p2pos.proto.channels.connection import Connection\n"
        "_packet = Connection._packet\n"
        "def packet(self, pn, plaintext, now):\n"
        "    before = self._last_received\n"
        "    _packet(self, pn, plaintext, now)\n"
        "    if plaintext[:1] == bytes([2]):\n"
        "        self._last_received = before\n"
        "Connection._packet = packet\n"
    ),
    # channels.md §9.3: a lost keepalive PING is sent again.
    "keepalive-retransmitted": (
        "from p2pos.proto.channels import frames as fr, sending\n"
        "_current = sending.SendPath._current_control\n"
        "def current(self, ftype, channel_id):\n"
        "    return fr.Ping() if ftype == fr.FrameType.PING else _current(self, ftype, channel_id)\n"
        "sending.SendPath._current_control = current\n"
    ),
    # §7.4: no black hole detection.
    "no-blackhole-detection": (
        "from p2pos.proto.recovery.pmtu import PmtuDiscovery\n"
        "PmtuDiscovery.on_packets_lost = lambda self, sizes, now: False\n"
    ),
}


def broken_impl(tmp_path: Path, bug: str) -> str:
    """An IUT command: this implementation's adapter with ``BUGS[bug]`` applied first."""
    return suite_helpers.broken_impl(tmp_path, bug, BUGS[bug])


@pytest.mark.parametrize(
    ("case_id", "bug", "expected"),
    [
        ("ch/rec/1", "first-sample-ack-delay", "after sample 1"),
        ("ch/rec/1", "no-ack-delay-cap", "after sample 2"),
        ("ch/rec/1", "ack-delay-below-min-rtt", "after sample 3"),
        ("ch/rec/1", "ack-delay-in-ms", "after sample 4"),
        ("ch/rec/1", "min-rtt-adjusted", "the probe timeout after sample"),
        ("ch/rec/1", "srtt-before-rttvar", "after sample 2"),
        ("ch/rec/1", "initial-rtt", "before any RTT sample"),
        ("ch/rec/2", "sample-without-eliciting", "ACK-only packet"),
        ("ch/rec/3", "gap-is-error", "the IUT closed the session on an ACK of counters 0.."),
        ("ch/pto/2", "no-backoff-reset", "nothing ack-eliciting left"),
        ("ch/pto/2", "reset-on-any-ack", "after an ACK of nothing new"),
        ("ch/pto/4", "pto-declares-lost", "not one or two"),
        ("ch/pto/3", "probe-ping-only", "does not carry the oldest unacknowledged byte"),
        ("ch/loss/3", "no-packet-threshold", "only the time threshold"),
        ("ch/loss/4", "packet-threshold-1", "before"),
        ("ch/loss/5", "sample-from-lost", "no sample from it"),
        ("ch/loss/4", "loss-delay-2rtt", "nothing ack-eliciting left"),
        ("ch/cc/3", "loss-blind-newreno", "more than the"),
        ("ch/pmtu/2", "search-round-down", "not the search of recovery.md"),
        ("ch/pmtu/2", "probe-twice", "probes of"),
        ("ch/pmtu/2", "many-probes", "was still outstanding"),
        ("ch/pmtu/3", "padded-not-acked", "not acknowledged within max_ack_delay"),
        ("ch/pmtu/4", "no-blackhole-detection", "no fallback"),
        ("ch/idle/1", "idle-ignores-ack-only", "the IUT closed the connection"),
        ("ch/idle/2", "keepalive-retransmitted", "before"),
    ],
)
def test_a_broken_rule_fails_its_case(tmp_path: Path, case_id: str, bug: str, expected: str) -> None:
    # --strict: a case of a SHOULD rule fails rather than warns.
    result = run_case(tmp_path, case_id, "--impl", broken_impl(tmp_path, bug), "--no-precheck", "--strict")
    assert result["result"] == "fail", result
    assert expected in result["detail"], result


#: Every case of conformance/cases_req_recovery.py.
CASES = (
    "ch/rec/1",
    "ch/rec/2",
    "ch/rec/3",
    "ch/pto/2",
    "ch/pto/3",
    "ch/pto/4",
    "ch/loss/3",
    "ch/loss/4",
    "ch/loss/5",
    "ch/cc/3",
    "ch/pmtu/2",
    "ch/pmtu/3",
    "ch/pmtu/4",
    "ch/idle/1",
    "ch/idle/2",
)


@pytest.mark.parametrize("case_id", CASES)
def test_the_case_passes_against_this_implementation(tmp_path: Path, case_id: str) -> None:
    result = run_case(tmp_path, case_id)
    assert result["result"] == "pass", result


@pytest.mark.parametrize("controller", ["newreno", "cubic"])
@pytest.mark.parametrize(
    "case_id", ["ch/cc/3", "ch/loss/3", "ch/loss/4", "ch/loss/5", "ch/pmtu/2", "ch/pmtu/4", "ch/pto/2"]
)
def test_the_case_passes_with_every_allowed_controller(tmp_path: Path, case_id: str, controller: str) -> None:
    # recovery.md §5 allows NewReno and CUBIC as well as BBR: the cases check only what all must do.
    result = run_case(tmp_path, case_id, "--impl", broken_impl(tmp_path, controller), "--no-precheck")
    assert result["result"] == "pass", result


def test_the_rtt_rewrite_of_the_broken_cores_is_right(tmp_path: Path) -> None:
    # The broken RTT estimators are one rewrite with one thing changed: unchanged, it passes.
    result = run_case(tmp_path, "ch/rec/1", "--impl", broken_impl(tmp_path, "rtt-rewritten"), "--no-precheck")
    assert result["result"] == "pass", result
