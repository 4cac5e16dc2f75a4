"""The BBR cases (conformance/cases_req_bbr.py) can fail.

Each test runs one case through the suite's command line against this implementation's
adapter (``conformance.impl``) with one rule of recovery.md §5.6 broken in the core by a
monkeypatch, and checks that the case fails for that reason; every case passes against the
unbroken adapter, and reports unsupported for an IUT that refuses ``congestion_control:
"bbr"``.  The pattern is tests/conformance/test_recovery_cases.py's.
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

_BBR = "from p2pos.proto.recovery import bbr\n"

#: Broken cores: the Python statements run before the adapter serves.
BUGS = {
    # recovery.md §5: NewReno answers for BBR (its window grows without bound on a loss-free path).
    "newreno": "from p2pos.proto.channels import sending\nsending.CONTROLLERS['bbr'] = sending.NewReno\n",
    # channels.md §8: an IUT without BBR refuses the controller in conn_session.
    "no-bbr": (
        "from conformance import impl\n"
        "_config = impl._channel_config\n"
        "def _channel_config(raw):\n"
        "    if isinstance(raw, dict) and raw.get('congestion_control') == 'bbr':\n"
        "        raise impl.CommandError('BAD_COMMAND', 'congestion_control bbr is not offered')\n"
        "    return _config(raw)\n"
        "impl._channel_config = _channel_config\n"
    ),
    # §5.6.1: Startup paces at the bandwidth (gain 1), so it never doubles.
    "startup-gain-1": _BBR + "bbr.STARTUP_PACING_GAIN = 1.0\n",
    # §5.6.1: a window of three BDPs.
    "cwnd-gain-3": _BBR + "bbr.CWND_GAIN = 3.0\n",
    # §5.6.1, §5.6.3: Drain paces at the bandwidth: the queue Startup built stays.
    "no-drain": _BBR + "bbr.DRAIN_PACING_GAIN = 1.0\n",
    # §5.6.1: ProbeBW never probes up nor down.
    "no-probe-bw": _BBR + "bbr.PROBE_BW_GAINS = (1.0,) * 8\n",
    # §5.6.1: ProbeBW's phase 1 paces at the bandwidth: the probe's queue stays.
    "no-probe-down": _BBR + "bbr.PROBE_BW_GAINS = (1.25,) + (1.0,) * 7\n",
    # §5.6.2: the min_rtt filter never expires: no ProbeRTT.
    "no-min-rtt-expiry": _BBR + "bbr.MIN_RTT_WINDOW = 1e9\n",
    # §5.6.1, §5.6.3: ProbeRTT lasts one round trip only.
    "short-probe-rtt": _BBR + "bbr.PROBE_RTT_DURATION = 0.0\n",
    # §5.6.4: persistent congestion leaves BBR's window alone.
    "no-persistent-congestion": _BBR + "bbr.Bbr.on_persistent_congestion = lambda self, now: None\n",
    # §5.6.1: a minimum window of two datagrams (NewReno's) instead of four.
    "minimum-window-2": _BBR + "bbr.MINIMUM_WINDOW_PACKETS = 2\n",
    # §5.6.4: Startup takes any round trip losing more than 2% for congestion (no 6-packet floor).
    "startup-loss-count-ignored": _BBR + "bbr.STARTUP_FULL_LOSS_COUNT = 0\n",
    # §5.6.1, §5.6.4: every loss makes a round trip congested (no 2% threshold).
    "no-loss-threshold": _BBR + "bbr.LOSS_THRESH = 0.0\n",
    # §5.6.4: no loss ever bounds the flight (inflight_hi is never set, Startup never ends on loss).
    "no-inflight-hi": _BBR + "bbr.Bbr.on_packets_lost = lambda self, packets, now: None\n",
    # §5.6.4: inflight_hi is never raised again.
    "no-probe-up": _BBR + "bbr.Bbr._probe_inflight_hi_up = lambda self, acked, round_start: None\n",
    # §5.6.2: a round trip ends at every ACK with a sample.
    "round-per-ack": _BBR
    + (
        "from p2pos.proto.recovery import delivery\n"
        "_acked = delivery.DeliveryRateSampler.on_packets_acked\n"
        "def on_acked(self, packets, now, min_rtt):\n"
        "    sample = _acked(self, packets, now, min_rtt)\n"
        "    if sample is not None:\n"
        "        sample.prior_delivered = 1 << 60\n"
        "    return sample\n"
        "delivery.DeliveryRateSampler.on_packets_acked = on_acked\n"
    ),
    # §5.6.2: delivery-rate samples twice what was delivered over their interval.
    "rate-doubled": _BBR
    + (
        "from p2pos.proto.recovery import delivery\n"
        "_acked = delivery.DeliveryRateSampler.on_packets_acked\n"
        "def on_acked(self, packets, now, min_rtt):\n"
        "    sample = _acked(self, packets, now, min_rtt)\n"
        "    if sample is not None and sample.delivery_rate is not None:\n"
        "        sample.delivery_rate *= 2\n"
        "    return sample\n"
        "delivery.DeliveryRateSampler.on_packets_acked = on_acked\n"
    ),
    # §5.6.2: the connection never tells the controller that it is application-limited.
    "app-limited-not-told": _BBR
    + (
        "_sent = bbr.Bbr.on_packet_sent\n"
        "def on_sent(self, packet, bytes_in_flight, now, *, app_limited):\n"
        "    _sent(self, packet, bytes_in_flight, now, app_limited=False)\n"
        "bbr.Bbr.on_packet_sent = on_sent\n"
    ),
    # §5.6.4: the connection paces at the window's rate (recovery.md §6), not BBR's.
    "bbr-rate-ignored": (
        "from p2pos.proto.channels.sending import SendPath\n"
        "def _update_pacer(self):\n"
        "    cc = self.cc\n"
        "    self.pacer.update_rate(cc.congestion_window, self.rtt.smoothed_rtt, cc.max_datagram_size)\n"
        "SendPath._update_pacer = _update_pacer\n"
    ),
    # §5.6.4: BBR keeps the datagram size it started with when the path MTU rises.
    "stale-datagram-size": _BBR + "bbr.Bbr.set_max_datagram_size = lambda self, size: None\n",
    # §5.6.2: application-limited samples enter the bw filter like any other.
    "app-limited-samples-counted": _BBR
    + (
        "def _update_bandwidth(self, sample):\n"
        "    if sample.delivery_rate is not None:\n"
        "        self._bw.update(self._round_count, sample.delivery_rate)\n"
        "bbr.Bbr._update_bandwidth = _update_bandwidth\n"
    ),
}


def broken_impl(tmp_path: Path, bug: str) -> str:
    """An IUT command: this implementation's adapter with ``BUGS[bug]`` applied first."""
    return suite_helpers.broken_impl(tmp_path, bug, BUGS[bug])


@pytest.mark.parametrize(
    ("case_id", "bug", "expected"),
    [
        ("ch/bbr/1", "newreno", "more than BBR's largest window"),
        ("ch/bbr/1", "cwnd-gain-3", "more than BBR's largest window"),
        ("ch/bbr/1", "startup-gain-1", "not the doubling per round trip"),
        ("ch/bbr/1", "no-drain", "or Drain did not drain"),
        ("ch/bbr/1", "round-per-ack", "not the doubling per round trip"),
        ("ch/bbr/1", "rate-doubled", "more than BBR's largest window"),
        ("ch/bbr/1", "bbr-rate-ignored", "or Drain did not drain"),
        ("ch/bbr/2", "no-probe-bw", "rose above 1.12 BDP only"),
        ("ch/bbr/2", "no-probe-down", "more than ProbeBW's highest gain"),
        ("ch/bbr/3", "no-min-rtt-expiry", "never fell to ProbeRTT's window"),
        ("ch/bbr/3", "short-probe-rtt", "less than PROBE_RTT_DURATION"),
        ("ch/bbr/4", "no-persistent-congestion", "more than BBR's minimum window"),
        ("ch/bbr/4", "minimum-window-2", "less than BBR's minimum window"),
        ("ch/bbr/5", "startup-loss-count-ignored", "fewer than 6 losses"),
        ("ch/bbr/5", "newreno", "fewer than 6 losses"),
        ("ch/bbr/6", "no-inflight-hi", "more than inflight_hi"),
        ("ch/bbr/6", "no-probe-up", "phase 0 raises inflight_hi"),
        ("ch/bbr/7", "app-limited-samples-counted", "its bandwidth estimate fell"),
        ("ch/bbr/7", "app-limited-not-told", "its bandwidth estimate fell"),
        ("ch/bbr/8", "stale-datagram-size", "not of 1200 bytes"),
        ("ch/bbr/9", "no-loss-threshold", "losses that do not make a round trip congested change nothing"),
    ],
)
def test_a_broken_rule_fails_its_case(tmp_path: Path, case_id: str, bug: str, expected: str) -> None:
    # --strict: a case of a SHOULD rule fails rather than warns.
    result = run_case(tmp_path, case_id, "--impl", broken_impl(tmp_path, bug), "--no-precheck", "--strict")
    assert result["result"] == "fail", result
    assert expected in result["detail"], result


#: Every case of conformance/cases_req_bbr.py.
CASES = tuple(f"ch/bbr/{n}" for n in range(1, 10))


@pytest.mark.parametrize("case_id", CASES)
def test_the_case_passes_against_this_implementation(tmp_path: Path, case_id: str) -> None:
    result = run_case(tmp_path, case_id)
    assert result["result"] == "pass", result


def test_an_iut_without_bbr_is_unsupported(tmp_path: Path) -> None:
    # channels.md §8: BBR is one controller among those allowed; refusing it is no failure.
    result = run_case(tmp_path, "ch/bbr/1", "--impl", broken_impl(tmp_path, "no-bbr"), "--no-precheck")
    assert result["result"] == "unsupported", result
    assert "does not offer congestion_control 'bbr'" in result["detail"], result
