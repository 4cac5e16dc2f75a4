"""The controller cases (conformance/cases_req_controllers.py) can fail.

Each test runs one case through the suite's command line against this implementation's
adapter (``conformance.impl``) with one rule of spec/recovery.md §5.2-§5.5 broken in the
core's NewReno or CUBIC by a monkeypatch, and checks that the case fails for that reason;
the same case passes against the unbroken adapter, and reports unsupported against an IUT
that has no such controller.  The pattern is tests/conformance/test_recovery_cases.py's.
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

_CC = "from p2pos.proto.recovery import congestion as cc\n"

#: Broken cores: the Python statements run before the adapter serves.
BUGS = {
    # §5.2 slow start: each acknowledged packet adds half its size.
    "slow-start-half": (
        _CC + "_ss = cc._WindowBase._slow_start\n"
        "def slow_start(self, size):\n"
        "    return _ss(self, size // 2)\n"
        "cc._WindowBase._slow_start = slow_start\n"
    ),
    # §5.2: persistent congestion forgets ssthresh, so that slow start goes on past it.
    "slow-start-past-ssthresh": (
        _CC + "for _cls in (cc.NewReno, cc.Cubic):\n"
        "    def _wrap(collapse):\n"
        "        def on_persistent_congestion(self, now):\n"
        "            collapse(self, now)\n"
        "            self.ssthresh = float('inf')\n"
        "        return on_persistent_congestion\n"
        "    _cls.on_persistent_congestion = _wrap(_cls.on_persistent_congestion)\n"
    ),
    # §5.2 congestion event: NewReno keeps 0.7 of the window (CUBIC's factor), not half.
    "newreno-beta-0.7": (
        _CC + "def reduce(self):\n"
        "    self.ssthresh = float(int(self._cwnd * 0.7))\n"
        "    self._cwnd = float(max(int(self.ssthresh), self.minimum_window))\n"
        "    self._acked_bytes = 0\n"
        "cc.NewReno._reduce = reduce\n"
    ),
    # §5.2: no recovery period: every loss reduces, every acknowledgement grows.
    "no-recovery-period": _CC + "cc._WindowBase.in_recovery = lambda self, sent_time: False\n",
    # §5.2: acknowledgements of packets sent before the recovery period grow the window.
    "growth-in-recovery": (
        _CC + "_acked = cc.NewReno.on_packets_acked\n"
        "def on_acked(self, packets, now, *, rtt, app_limited):\n"
        "    start, self._recovery_start = self._recovery_start, None\n"
        "    _acked(self, packets, now, rtt=rtt, app_limited=app_limited)\n"
        "    self._recovery_start = start\n"
        "cc.NewReno.on_packets_acked = on_acked\n"
    ),
    # §5.2 congestion avoidance: two datagrams per window of acknowledged bytes.
    "avoidance-double": (
        _CC + "_acked = cc.NewReno.on_packets_acked\n"
        "def on_acked(self, packets, now, *, rtt, app_limited):\n"
        "    before, ss = self._cwnd, self._cwnd < self.ssthresh\n"
        "    _acked(self, packets, now, rtt=rtt, app_limited=app_limited)\n"
        "    if not ss and self._cwnd > before:\n"
        "        self._cwnd += self._cwnd - before\n"
        "cc.NewReno.on_packets_acked = on_acked\n"
    ),
    # §4.4 / §5.2: persistent congestion is ignored (the congestion event's reduction only).
    "no-persistent-congestion": (
        _CC + "cc.NewReno.on_persistent_congestion = lambda self, now: None\n"
        "cc.Cubic.on_persistent_congestion = lambda self, now: None\n"
    ),
    # §5.3: CUBIC halves its window (beta 0.5).
    "cubic-beta-0.5": _CC + "cc.CUBIC_BETA = 0.5\n",
    # §5.3: no Reno-friendly region (W_est ignored).
    "cubic-no-reno-friendly": (
        _CC + "_avoid = cc.Cubic._avoid_congestion\n"
        "def avoid(self, size, now, smoothed_rtt):\n"
        "    _avoid(self, size, now, smoothed_rtt)\n"
        "    self._w_est = 0.0\n"
        "cc.Cubic._avoid_congestion = avoid\n"
    ),
    # §5.3: no fast convergence (W_max is always the window before the reduction).
    "cubic-no-fast-convergence": (
        _CC + "_reduce = cc.Cubic._reduce\n"
        "def reduce(self):\n"
        "    self._w_max = 0.0\n"
        "    _reduce(self)\n"
        "cc.Cubic._reduce = reduce\n"
    ),
    # §5.3: C taken in bytes, not segments (not multiplied by max_datagram_size).
    "cubic-c-in-bytes": (
        _CC + "def w_cubic(self, t):\n"
        "    return cc.CUBIC_C * (t - self._k) ** 3 + self._w_max\n"
        "cc.Cubic.w_cubic = w_cubic\n"
        "_avoid = cc.Cubic._avoid_congestion\n"
        "def avoid(self, size, now, smoothed_rtt):\n"
        "    fresh = self._epoch_start is None\n"
        "    _avoid(self, size, now, smoothed_rtt)\n"
        "    if fresh and self._k:\n"
        "        self._k *= self._mds ** (1 / 3)\n"
        "cc.Cubic._avoid_congestion = avoid\n"
    ),
    # §5.4.1: the application-limited flag is ignored (the used-window check stays).
    "ignore-app-limited": (
        _CC + "for _cls in (cc.NewReno, cc.Cubic):\n"
        "    def _wrap(acked):\n"
        "        def on_acked(self, packets, now, *, rtt, app_limited):\n"
        "            acked(self, packets, now, rtt=rtt, app_limited=False)\n"
        "        return on_acked\n"
        "    _cls.on_packets_acked = _wrap(_cls.on_packets_acked)\n"
    ),
    # §5.4.2: no used-window check (the application-limited flag stays).
    "no-window-used-check": _CC + "cc._WindowBase._window_used_since_ack = lambda self: True\n",
    # §5.5: the controller keeps the base datagram size when the path MTU grows.
    "stale-datagram-size": _CC + "cc._WindowBase.set_max_datagram_size = lambda self, size: None\n",
    # §5: a lost PMTU probe is taken for a congestion signal.
    "probe-loss-is-congestion": (
        "from p2pos.proto.channels import sending\n"
        "_on_lost = sending.SendPath._on_lost\n"
        "def on_lost(self, lost, now):\n"
        "    _on_lost(self, lost, now)\n"
        "    probes = [p for p in lost if self._is_probe(p)]\n"
        "    if probes:\n"
        "        self.cc.on_packets_lost(probes, now)\n"
        "sending.SendPath._on_lost = on_lost\n"
    ),
    # §5: an IUT without NewReno and CUBIC: conn_session refuses them.
    "bbr-only": "from p2pos.proto.channels import channel\nchannel.CONGESTION_CONTROLLERS = ('bbr',)\n",
}


def broken_impl(tmp_path: Path, bug: str) -> str:
    """An IUT command: this implementation's adapter with ``BUGS[bug]`` applied first."""
    return suite_helpers.broken_impl(tmp_path, bug, BUGS[bug])


@pytest.mark.parametrize(
    ("case_id", "bug", "expected"),
    [
        ("ch/newreno/1", "slow-start-half", "slow start, round 1"),
        ("ch/newreno/1", "newreno-beta-0.7", "the first congestion event"),
        ("ch/newreno/1", "no-recovery-period", "the second congestion event"),
        ("ch/newreno/1", "growth-in-recovery", "sent before the recovery period began"),
        ("ch/newreno/1", "avoidance-double", "congestion avoidance, round"),
        ("ch/newreno/2", "slow-start-past-ssthresh", "after persistent congestion"),
        ("ch/newreno/2", "no-persistent-congestion", "persistent congestion: the ACK of the last probes"),
        ("ch/newreno/3", "ignore-app-limited", "application-limited round"),
        ("ch/newreno/3", "no-window-used-check", "flow-control-limited round"),
        ("ch/newreno/4", "stale-datagram-size", "the minimum window is 2 * 1452"),
        ("ch/cubic/1", "cubic-beta-0.5", "the first congestion event"),
        ("ch/cubic/1", "no-recovery-period", "the second congestion event"),
        ("ch/cubic/1", "cubic-no-reno-friendly", "congestion avoidance, round"),
        ("ch/cubic/2", "cubic-no-fast-convergence", "congestion avoidance, round"),
        ("ch/cubic/2", "cubic-c-in-bytes", "congestion avoidance, round"),
        ("ch/cubic/3", "no-persistent-congestion", "persistent congestion: the ACK of the last probes"),
        ("ch/cubic/3", "slow-start-past-ssthresh", "after persistent congestion"),
        ("ch/cubic/4", "ignore-app-limited", "application-limited round"),
        ("ch/cubic/4", "no-window-used-check", "flow-control-limited round"),
        ("ch/cubic/5", "stale-datagram-size", "the minimum window is 2 * 1452"),
        ("ch/newreno/5", "probe-loss-is-congestion", "PMTU probes lost"),
        ("ch/cubic/6", "probe-loss-is-congestion", "PMTU probes lost"),
    ],
)
def test_a_broken_rule_fails_its_case(tmp_path: Path, case_id: str, bug: str, expected: str) -> None:
    result = run_case(tmp_path, case_id, "--impl", broken_impl(tmp_path, bug), "--no-precheck", "--strict")
    assert result["result"] == "fail", result
    assert expected in result["detail"], result


#: Every case of conformance/cases_req_controllers.py.
CASES = (
    "ch/newreno/1",
    "ch/newreno/2",
    "ch/newreno/3",
    "ch/newreno/4",
    "ch/newreno/5",
    "ch/cubic/1",
    "ch/cubic/2",
    "ch/cubic/3",
    "ch/cubic/4",
    "ch/cubic/5",
    "ch/cubic/6",
)


@pytest.mark.parametrize("case_id", CASES)
def test_the_case_passes_against_this_implementation(tmp_path: Path, case_id: str) -> None:
    result = run_case(tmp_path, case_id)
    assert result["result"] == "pass", result


@pytest.mark.parametrize("case_id", ["ch/newreno/1", "ch/cubic/1"])
def test_an_iut_without_the_controller_is_unsupported(tmp_path: Path, case_id: str) -> None:
    result = run_case(tmp_path, case_id, "--impl", broken_impl(tmp_path, "bbr-only"), "--no-precheck")
    assert result["result"] == "unsupported", result
    assert "congestion_control" in result["detail"], result
