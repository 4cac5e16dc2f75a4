"""The loss-recovery cases (conformance/cases_recovery.py) can fail.

Each test runs the suite's command line against this implementation's adapter
(``conformance.impl``) with one piece of the core's loss recovery or congestion control
broken by a monkeypatch, the bugs issue 10 lists as uncaught, and checks that the case
meant to catch it fails (and the same case passes against the unbroken adapter).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import suite_helpers
from suite_helpers import run_case, run_conformance

#: Every test here runs the pure-Python core, whatever core this run uses (a broken core is a
#: patched or mutated pure one): the compiled pass of `make test` leaves them out.
pytestmark = pytest.mark.pure_core


REPO_ROOT = Path(__file__).resolve().parents[2]

#: Broken cores: the Python statements run before the adapter serves.
BUGS = {
    # channels.md §6: lost stream data is never queued again.
    "no-retransmit": (
        "from p2pos.proto.channels.sendbuf import SendBuffer\n"
        "SendBuffer.on_lost = lambda self, offset, length, fin: None\n"
    ),
    # channels.md §6: on a loss, everything from the lost offset on is sent again, acknowledged or not.
    "go-back-n": (
        "from p2pos.proto.channels.sendbuf import SendBuffer\n"
        "def on_lost(self, offset, length, fin):\n"
        "    start = max(offset, self._base)\n"
        "    if self.sent_offset > start:\n"
        "        self._lost.add(start, self.sent_offset)\n"
        "SendBuffer.on_lost = on_lost\n"
    ),
    # recovery.md §4.3: the probe timer never fires (only the loss timer does).
    "no-pto": (
        "from p2pos.proto.recovery import recovery as r\n"
        "_timeout = r.LossRecovery.on_loss_detection_timeout\n"
        "def on_timeout(self, now):\n"
        "    return _timeout(self, now) if self._loss_time is not None else r.TimeoutResult()\n"
        "r.LossRecovery.on_loss_detection_timeout = on_timeout\n"
    ),
    # recovery.md §4.3: probes at a fixed interval, no exponential backoff.
    "no-backoff": (
        "from p2pos.proto.recovery import recovery as r\n"
        "r.LossRecovery.pto_period = lambda self: self.rtt.pto_duration()\n"
    ),
    # channels.md §4: ACKs delayed up to 200 ms instead of max_ack_delay (25 ms).
    "slow-ack": (
        "from p2pos.proto.recovery.acks import AckTracker\n"
        "_init = AckTracker.__init__\n"
        "def init(self, *, max_ack_delay=0.025, **kw):\n"
        "    _init(self, max_ack_delay=0.2, **kw)\n"
        "AckTracker.__init__ = init\n"
    ),
    # channels.md §4: an ACK only every 100 ack-eliciting packets (else after max_ack_delay).
    "ack-every-100": (
        "from p2pos.proto.recovery.acks import AckTracker\n"
        "_init = AckTracker.__init__\n"
        "def init(self, *, ack_every=2, **kw):\n"
        "    _init(self, ack_every=100, **kw)\n"
        "AckTracker.__init__ = init\n"
    ),
    # channels.md §4: packets out of order wait for max_ack_delay like any other.
    "ack-ignores-order": (
        "from p2pos.proto.recovery.acks import AckTracker\n"
        "_on_packet = AckTracker.on_packet\n"
        "def on_packet(self, pn, ack_eliciting, now):\n"
        "    _on_packet(self, pn, ack_eliciting, now)\n"
        "    if self._ack_at == now and self._unacked_eliciting < self._ack_every:\n"
        "        self._ack_at = now + self._max_ack_delay\n"
        "AckTracker.on_packet = on_packet\n"
    ),
    # channels.md §9.2: the idle timer restarts on every packet sent, not only on those received.
    "idle-on-send": (
        "from p2pos.proto.channels.connection import Connection\n"
        "_data_to_send = Connection.data_to_send\n"
        "_data_to_send_paths = Connection.data_to_send_paths\n"
        "def data_to_send(self, now):\n"
        "    out = _data_to_send(self, now)\n"
        "    if out:\n"
        "        self._last_received = now\n"
        "    return out\n"
        "def data_to_send_paths(self, now):\n"
        "    out = _data_to_send_paths(self, now)\n"
        "    if out:\n"
        "        self._last_received = now\n"
        "    return out\n"
        "Connection.data_to_send = data_to_send\n"
        "Connection.data_to_send_paths = data_to_send_paths\n"
    ),
    # channels.md §9.3: no keepalive PING while packets are in flight.
    "no-keepalive-in-flight": (
        "from p2pos.proto.channels.connection import Connection\n"
        "_handle = Connection._handle_timer\n"
        "def handle(self, now):\n"
        "    if self.recovery.outstanding_count:\n"
        "        self._last_sent = max(self._last_sent, now)\n"
        "    _handle(self, now)\n"
        "Connection._handle_timer = handle\n"
    ),
    # recovery.md §7: the path MTU is raised when a probe is sent, not when it is acknowledged.
    "mtu-on-send": (
        "from p2pos.proto.recovery.pmtu import PmtuDiscovery\n"
        "_sent = PmtuDiscovery.on_probe_sent\n"
        "def on_probe_sent(self, pn, size, now):\n"
        "    _sent(self, pn, size, now)\n"
        "    self.current_mtu = max(self.current_mtu, size)\n"
        "PmtuDiscovery.on_probe_sent = on_probe_sent\n"
    ),
    # recovery.md §7: a lost probe size is tried 10 times, not MAX_PROBES (3).
    "probe-ten-times": (
        "from p2pos.proto.recovery.pmtu import PmtuDiscovery\n"
        "_init = PmtuDiscovery.__init__\n"
        "def init(self, **kw):\n"
        "    _init(self, **{**kw, 'max_probes': 10})\n"
        "PmtuDiscovery.__init__ = init\n"
    ),
    # recovery.md §7: probes of the base size only, the search never goes up.
    "no-search": (
        "from p2pos.proto.recovery.pmtu import PmtuDiscovery\n"
        "PmtuDiscovery.probe_size_to_send = lambda self, now: None\n"
    ),
    # recovery.md §5: no congestion window at all.
    "no-cwnd": (
        "from p2pos.proto.recovery import bbr, congestion\n"
        "for cls in (congestion.CongestionController, congestion._WindowBase, bbr.Bbr, congestion.WindowFloor):\n"
        "    cls.available = lambda self, bytes_in_flight: 1 << 40\n"
    ),
}


def broken_impl(tmp_path: Path, bug: str) -> str:
    """An IUT command: this implementation's adapter with ``BUGS[bug]`` applied first."""
    return suite_helpers.broken_impl(tmp_path, bug, BUGS[bug])


@pytest.mark.parametrize(
    ("case_id", "bug", "expected"),
    [
        ("ch/loss/1", "no-retransmit", "never sent the lost ranges"),
        ("ch/loss/1", "go-back-n", "already acknowledged"),
        ("ch/pto/1", "no-pto", "probe timeouts fired"),
        ("ch/pto/1", "no-backoff", "no backoff"),
        ("ch/cc/1", "no-cwnd", "bytes in flight"),
        ("ch/cc/2", "no-cwnd", "more than the minimum window"),
        ("ch/loss/2", "no-retransmit", "did not arrive whole"),
        ("ch/loss/2", "no-pto", "timer stays"),
        ("ch/loss/2", "slow-ack", "more than max_ack_delay"),
        ("ch/ackfreq/1", "ack-every-100", "right after the second arrived"),
        ("ch/blackhole/1", "idle-on-send", "still open"),
        ("ch/pmtu/1", "mtu-on-send", "only a PMTU probe"),
        ("ch/pmtu/1", "probe-ten-times", "at most MAX_PROBES"),
        ("ch/pmtu/1", "no-search", "no probe raised the path MTU"),
        ("ch/blackhole/1", "no-keepalive-in-flight", "a silence of more than keepalive_interval"),
        ("ch/ackfreq/2", "ack-ignores-order", "after a gap"),
    ],
)
def test_a_broken_recovery_fails_its_case(tmp_path: Path, case_id: str, bug: str, expected: str) -> None:
    # --strict: the ACK frequency rules are SHOULDs, a warning otherwise (test_should_rules_only_warn).
    result = run_case(tmp_path, case_id, "--impl", broken_impl(tmp_path, bug), "--no-precheck", "--strict")
    assert result["result"] == "fail", result
    assert expected in result["detail"], result


def test_should_rules_only_warn_unless_strict(tmp_path: Path) -> None:
    """spec/conformance.md §1: ch/ackfreq/1 tests only SHOULD rules (channels.md §4), so an IUT
    that acknowledges too rarely gets a warning, and the run passes; --strict makes it a failure."""
    impl = broken_impl(tmp_path, "ack-every-100")
    proc, report = run_conformance(
        tmp_path / "report.json", "-k", "ch/ackfreq/1", "--impl", impl, "--no-precheck", pure=True
    )
    (case,) = report["cases"]
    assert case["result"] == "warn" and proc.returncode == 0, case
    assert case["failed_requirements"] == case["requirements"] != []
    assert report["summary"]["warned"] == 1 and report["strict"] is False
    assert "WARN ch/ackfreq/1" in proc.stdout and "0 passed, 0 failed, 1 warned, 0 unsupported" in proc.stdout
    proc, report = run_conformance(
        tmp_path / "strict.json", "-k", "ch/ackfreq/1", "--impl", impl, "--no-precheck", "--strict", pure=True
    )
    assert report["cases"][0]["result"] == "fail" and proc.returncode == 1 and report["strict"] is True


@pytest.mark.parametrize(
    "case_id",
    [
        "ch/loss/1",
        "ch/loss/2",
        "ch/pto/1",
        "ch/cc/1",
        "ch/ackfreq/1",
        "ch/ackfreq/2",
        "ch/blackhole/1",
        "ch/pmtu/1",
        "ch/cc/2",
    ],
)
def test_the_case_passes_against_this_implementation(tmp_path: Path, case_id: str) -> None:
    result = run_case(tmp_path, case_id)
    assert result["result"] == "pass", result


def test_the_detail_names_the_impairment(tmp_path: Path) -> None:
    # The report carries what was dropped, and the seed of a seeded link.
    assert "dropped the IUT's data packets #[2, 4]" in run_case(tmp_path, "ch/loss/1")["detail"]
    assert "link seed 20261204" in run_case(tmp_path, "ch/loss/2")["detail"]
