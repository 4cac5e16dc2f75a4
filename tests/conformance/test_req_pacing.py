"""The pacing, window and path cases (conformance/cases_req_pacing.py) can fail.

Each test runs one case through the suite's command line against this implementation's
adapter (``conformance.impl``) with one rule broken in the core by a monkeypatch, and checks
that the case fails for that reason; the same case passes against the unbroken adapter, and
with each controller recovery.md §5 allows.  The pattern is tests/conformance/test_recovery_cases.py's.
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

_NEWRENO = "from p2pos.proto.channels import sending\nsending.CONTROLLERS['bbr'] = sending.NewReno\n"

#: Broken cores: the Python statements run before the adapter serves.
BUGS = {
    # recovery.md §5: the reference's NewReno and CUBIC in place of BBR: allowed controllers, the cases must pass.
    "newreno": _NEWRENO,
    "cubic": "from p2pos.proto.channels import sending\nsending.CONTROLLERS['bbr'] = sending.Cubic\n",
    # recovery.md §6: no pacer (every packet the window allows leaves at once).
    "no-pacer": (
        "from p2pos.proto.recovery.pacing import Pacer\nPacer.next_send_time = lambda self, now, packet_size: now\n"
    ),
    # channels.md §6.2: the pacer never takes the rate after an ACK (it keeps its first, unpaced one).
    "pacer-not-updated": (
        "from p2pos.proto.channels.sending import SendPath\nSendPath._update_pacer = lambda self: None\n"
    ),
    # recovery.md §6: a pacer at ten times the rate (and bucket) recovery.md §6 gives.
    "pacer-10x": (
        "from p2pos.proto.recovery.pacing import Pacer\n"
        "_set = Pacer.set_rate\n"
        "_update = Pacer.update_rate\n"
        "def set_rate(self, rate, cwnd, mds=None):\n"
        "    _set(self, 10 * rate, 10 * cwnd, mds)\n"
        "def update_rate(self, cwnd, srtt, mds=None):\n"
        "    _update(self, 10 * cwnd, srtt, mds)\n"
        "Pacer.set_rate = set_rate\n"
        "Pacer.update_rate = update_rate\n"
    ),
    # recovery.md §1: bytes in flight counted as plaintext, 30 bytes fewer per datagram.
    "plaintext-sizes": (
        "from p2pos.proto.recovery import recovery as r\n"
        "_sent = r.LossRecovery.on_packet_sent\n"
        "def on_sent(self, pn, now, size, **kw):\n"
        "    return _sent(self, pn, now, size - 30, **kw)\n"
        "r.LossRecovery.on_packet_sent = on_sent\n"
    ),
    # recovery.md §5.4: NewReno counts a sender held back by flow control as not application-limited
    # (and does not check that its window was used), so its window grows from every ACK.
    "flow-limited-grows": _NEWRENO
    + (
        "from p2pos.proto.recovery import congestion\n"
        "congestion._WindowBase._window_used_since_ack = lambda self: True\n"
        "_acked = congestion.NewReno.on_packets_acked\n"
        "def on_acked(self, packets, now, *, rtt, app_limited):\n"
        "    _acked(self, packets, now, rtt=rtt, app_limited=False)\n"
        "congestion.NewReno.on_packets_acked = on_acked\n"
    ),
    # channels.md §5.5: lost PMTU probes reported to (NewReno) as congestion.
    "probe-loss-is-congestion": _NEWRENO
    + (
        "_on_lost = sending.SendPath._on_lost\n"
        "def on_lost(self, lost, now):\n"
        "    probes = [p for p in lost if self._is_probe(p)]\n"
        "    _on_lost(self, lost, now)\n"
        "    if probes:\n"
        "        self.cc.on_packets_lost(probes, now)\n"
        "sending.SendPath._on_lost = on_lost\n"
    ),
    # recovery.md §7: lost probes never reach DPLPMTUD (the search stays at its first size).
    "probe-loss-ignored": (
        "from p2pos.proto.recovery.pmtu import PmtuDiscovery\n"
        "PmtuDiscovery.on_probe_lost = lambda self, pn, now: None\n"
    ),
    # channels.md §12: the connection's congestion state is reset when the peer's address changes.
    "reset-on-new-address": (
        "from conformance import impl\n"
        "from p2pos.proto.channels import sending\n"
        "from p2pos.proto.recovery.pacing import Pacer\n"
        "_receive = impl.Adapter.conn_receive\n"
        "_last = {}\n"
        "def conn_receive(self, request):\n"
        "    addr, conn = request.get('addr'), self.conn\n"
        "    if addr is not None and conn is not None and _last.get('addr', addr) != addr:\n"
        "        mds = conn.pmtu.current_mtu\n"
        "        conn.cc = sending.CONTROLLERS[conn.config.congestion_control](max_datagram_size=mds)\n"
        "        window = conn.cc.congestion_window\n"
        "        conn.pacer = Pacer(congestion_window=window, smoothed_rtt=0.0, max_datagram_size=mds)\n"
        "    if addr is not None:\n"
        "        _last['addr'] = addr\n"
        "    return _receive(self, request)\n"
        "impl.Adapter.conn_receive = conn_receive\n"
    ),
    # recovery.md §5.5: NewReno keeps the datagram size it started with when the path MTU rises.
    "stale-datagram-size": _NEWRENO
    + (
        "from p2pos.proto.recovery import congestion\n"
        "congestion._WindowBase.set_max_datagram_size = lambda self, size: None\n"
    ),
}


def broken_impl(tmp_path: Path, bug: str) -> str:
    """An IUT command: this implementation's adapter with ``BUGS[bug]`` applied first."""
    return suite_helpers.broken_impl(tmp_path, bug, BUGS[bug])


@pytest.mark.parametrize(
    ("case_id", "bug", "expected"),
    [
        ("ch/pace/1", "no-pacer", "token bucket"),
        ("ch/pace/1", "pacer-not-updated", "token bucket"),
        ("ch/pace/1", "pacer-10x", "token bucket"),
        ("ch/cwnd/1", "plaintext-sizes", "more than the initial window"),
        ("ch/cwnd/2", "flow-limited-grows", "the window grew while flow control held the IUT back"),
        ("ch/path/1", "reset-on-new-address", "its congestion state was reset"),
        ("ch/pmtu/5", "probe-loss-is-congestion", "the probes' losses reached its congestion controller"),
        ("ch/pmtu/5", "probe-loss-ignored", "the losses did not reach DPLPMTUD"),
        ("ch/pmtu/6", "stale-datagram-size", "below two datagrams of the path MTU"),
    ],
)
def test_a_broken_rule_fails_its_case(tmp_path: Path, case_id: str, bug: str, expected: str) -> None:
    # --strict: a case of a SHOULD rule fails rather than warns.
    result = run_case(tmp_path, case_id, "--impl", broken_impl(tmp_path, bug), "--no-precheck", "--strict")
    assert result["result"] == "fail", result
    assert expected in result["detail"], result


#: Every case of conformance/cases_req_pacing.py.
CASES = ("ch/pace/1", "ch/cwnd/1", "ch/cwnd/2", "ch/path/1", "ch/pmtu/5", "ch/pmtu/6")


@pytest.mark.parametrize("case_id", CASES)
def test_the_case_passes_against_this_implementation(tmp_path: Path, case_id: str) -> None:
    result = run_case(tmp_path, case_id)
    assert result["result"] == "pass", result


@pytest.mark.parametrize("controller", ["newreno", "cubic"])
@pytest.mark.parametrize("case_id", CASES)
def test_the_case_passes_with_every_allowed_controller(tmp_path: Path, case_id: str, controller: str) -> None:
    # recovery.md §5 allows NewReno and CUBIC as well as BBR: the cases check only what all must do.
    result = run_case(tmp_path, case_id, "--impl", broken_impl(tmp_path, controller), "--no-precheck")
    assert result["result"] == "pass", result
