"""The retransmission cases (conformance/cases_req_retransmit.py) can fail.

Each test runs one case through the suite's command line against this implementation's
adapter (``conformance.impl``) with one rule of spec/channels.md §5-§6 or flow.md §2 broken
in the core by a monkeypatch, and checks that the case fails for that reason; every case
passes against the unbroken adapter, and with each congestion controller recovery.md §5
allows.  The pattern is tests/conformance/test_recovery_cases.py's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import suite_helpers
from suite_helpers import run_conformance

#: Every test here runs the pure-Python core, whatever core this run uses (a broken core is a
#: patched or mutated pure one): the compiled pass of `make test` leaves them out.
pytestmark = pytest.mark.pure_core


REPO_ROOT = Path(__file__).resolve().parents[2]

#: Broken cores: the Python statements run before the adapter serves.
BUGS = {
    # recovery.md §5: the reference's NewReno and CUBIC in place of BBR: allowed, the cases must pass.
    "newreno": "from p2pos.proto.channels import sending\nsending.CONTROLLERS['bbr'] = sending.NewReno\n",
    "cubic": "from p2pos.proto.channels import sending\nsending.CONTROLLERS['bbr'] = sending.Cubic\n",
    # channels.md §6.1: a message of budget n is sent up to 2 + n times (an off-by-one).
    "budget-plus-one": (
        "from p2pos.proto.channels.sendbuf import MessageQueue\n"
        "_push = MessageQueue.push\n"
        "def push(self, message, retransmissions=None):\n"
        "    budget = self.retransmissions if retransmissions is None else retransmissions\n"
        "    return _push(self, message, budget + 1)\n"
        "MessageQueue.push = push\n"
    ),
    # flow.md §2.3: new messages leave before the lost ones to retransmit.
    "new-messages-first": (
        "from p2pos.proto.channels.sendbuf import MessageQueue\n"
        "_pop = MessageQueue.pop\n"
        "def pop(self, max_len):\n"
        "    if self._queue and self._retry:\n"
        "        self._queue, self._retry = self._retry, self._queue\n"
        "        try:\n"
        "            return _pop(self, max_len)\n"
        "        finally:\n"
        "            self._queue, self._retry = self._retry, self._queue\n"
        "    return _pop(self, max_len)\n"
        "MessageQueue.pop = pop\n"
    ),
    # channels.md §6.1: a full message queue drops the new message, not the oldest waiting.
    "queue-drops-newest": (
        "from p2pos.proto.channels.sendbuf import MessageQueue\n"
        "_push = MessageQueue.push\n"
        "def push(self, message, retransmissions=None):\n"
        "    if len(self) >= self.max_messages:\n"
        "        self.dropped += 1\n"
        "        self._next_id += 1\n"
        "        return self._next_id - 1\n"
        "    return _push(self, message, retransmissions)\n"
        "MessageQueue.push = push\n"
    ),
    # flow.md §2.2: new stream data leaves before the lost ranges.
    "new-data-first": (
        "from p2pos.proto.channels.sendbuf import SendBuffer, RangeSet\n"
        "_next = SendBuffer.next_chunk\n"
        "def next_chunk(self, max_len, max_new=None):\n"
        "    lost = self._lost\n"
        "    if lost and self.unsent > 0 and (max_new is None or max_new > 0):\n"
        "        self._lost = RangeSet()\n"
        "        try:\n"
        "            chunk = _next(self, max_len, max_new)\n"
        "        finally:\n"
        "            self._lost = lost\n"
        "        if chunk is not None:\n"
        "            return chunk\n"
        "    return _next(self, max_len, max_new)\n"
        "SendBuffer.next_chunk = next_chunk\n"
    ),
    # channels.md §5.1: a lost CHANNEL_BLOCKED is rebuilt whether or not the channel is still blocked.
    "blocked-always-resent": (
        "from p2pos.proto.channels import frames as fr, sending\n"
        "_current = sending.SendPath._current_control\n"
        "def current(self, ftype, channel_id):\n"
        "    channel = self.channels.get(channel_id)\n"
        "    if ftype == fr.FrameType.CHANNEL_BLOCKED and channel is not None:\n"
        "        return fr.ChannelBlocked(channel_id=channel_id, limit=channel.credit.limit)\n"
        "    return _current(self, ftype, channel_id)\n"
        "sending.SendPath._current_control = current\n"
    ),
    # channels.md §5.4: a probe with nothing to carry holds PADDING, not a PING (and no old data).
    "probe-without-ping": (
        "import inspect, textwrap\n"
        "from p2pos.proto.channels import sending\n"
        "from p2pos.proto.channels.connection import Connection\n"
        "source = textwrap.dedent(inspect.getsource(sending.SendPath._build))\n"
        "assert source.count('parts.append(fr.encode_frame(fr.Ping()))') == 1\n"
        "source = source.replace('parts.append(fr.encode_frame(fr.Ping()))', 'parts.append(bytes(1))')\n"
        "exec(compile(source, sending.__file__, 'exec'), vars(sending))\n"
        "sending.SendPath._build = vars(sending).pop('_build')\n"
        "Connection._probe_with_oldest_data = lambda self, probes: None\n"
        "_requeue = sending.SendPath._requeue\n"
        "def requeue(self, tokens):\n"
        "    _requeue(self, tuple(t for t in tokens if t[0] != sending._PING))\n"
        "sending.SendPath._requeue = requeue\n"
    ),
    # channels.md §6: a lost RESET is not sent again (rebuilt from a channel that is gone).
    "reset-not-resent": (
        "from p2pos.proto.channels import frames as fr, sending\n"
        "sending._REMEMBERED = sending._REMEMBERED - {fr.FrameType.RESET}\n"
    ),
    # channels.md §6: the PING of a lost ping() is not sent again.
    "ping-not-resent": (
        "from p2pos.proto.channels import sending\n"
        "_requeue = sending.SendPath._requeue\n"
        "def requeue(self, tokens):\n"
        "    _requeue(self, tuple(t for t in tokens if t[0] != sending._PING))\n"
        "sending.SendPath._requeue = requeue\n"
    ),
    # channels.md §6: a lost ACCEPT or MAX_CHANNEL_DATA is sent again as it was, not with the current limit.
    "stale-limits": (
        "from p2pos.proto.channels import frames as fr, sending\n"
        "STALE = (fr.FrameType.ACCEPT, fr.FrameType.MAX_CHANNEL_DATA)\n"
        "_pending, _by_pn = {}, {}\n"
        "_add = sending.SendPath._add_control\n"
        "def add_control(self, parts, tokens, room):\n"
        "    before = dict(self._control)\n"
        "    result = _add(self, parts, tokens, room)\n"
        "    _pending[id(self)] = {k: f for k, f in before.items() if k not in self._control and k[0] in STALE}\n"
        "    return result\n"
        "_send = sending.SendPath._send_packet\n"
        "def send_packet(self, plaintext, tokens, now, eliciting, with_ack):\n"
        "    pn = _send(self, plaintext, tokens, now, eliciting, with_ack)\n"
        "    _by_pn[(id(self), pn)] = _pending.pop(id(self), {})\n"
        "    return pn\n"
        "_lost = sending.SendPath._on_lost\n"
        "def on_lost(self, lost, now):\n"
        "    _lost(self, lost, now)\n"
        "    for packet in lost:\n"
        "        for key, frame in _by_pn.get((id(self), packet.pn), {}).items():\n"
        "            self._control[key] = frame\n"
        "sending.SendPath._add_control = add_control\n"
        "sending.SendPath._send_packet = send_packet\n"
        "sending.SendPath._on_lost = on_lost\n"
    ),
    # channels.md §6: a late ACK of a packet declared lost declares it lost again.
    "late-ack-requeues": (
        "from p2pos.proto.recovery import recovery as r\n"
        "_declared = {}\n"
        "_on_ack = r.LossRecovery.on_ack_received\n"
        "def on_ack(self, ranges, ack_delay, now):\n"
        "    result = _on_ack(self, ranges, ack_delay, now)\n"
        "    for packet in result.lost:\n"
        "        _declared[(id(self), packet.pn)] = packet\n"
        "    for low, high in ranges:\n"
        "        for pn in range(low, high + 1):\n"
        "            packet = _declared.pop((id(self), pn), None)\n"
        "            if packet is not None and packet not in result.lost:\n"
        "                result.lost.append(packet)\n"
        "    return result\n"
        "r.LossRecovery.on_ack_received = on_ack\n"
    ),
}


def broken_impl(tmp_path: Path, bug: str) -> str:
    """An IUT command: this implementation's adapter with ``BUGS[bug]`` applied first."""
    return suite_helpers.broken_impl(tmp_path, bug, BUGS[bug])


def run_cases(tmp_path: Path, *args: str) -> dict[str, dict[str, Any]]:
    """Run the ``ch/retx/`` cases through the command line; returns their entries of the --json report by id."""
    proc, report = run_conformance(
        tmp_path / "report.json", "-k", "ch/retx/", "-j", "2", "--timeout", "60", *args, pure=True
    )
    cases = {c["id"]: dict(c) for c in report["cases"] if c["id"].startswith("ch/retx/")}
    assert len(cases) == len(CASES), proc.stdout
    for entry in cases.values():
        # A case must fail on the broken rule, not on an adapter that died.
        assert "exited with status" not in entry["detail"], entry
    return cases


#: Every case of conformance/cases_req_retransmit.py.
CASES = tuple(f"ch/retx/{n}" for n in range(1, 11))


@pytest.mark.parametrize(
    ("bug", "failing"),
    [
        ("budget-plus-one", {"ch/retx/1": "sent again in packets", "ch/retx/2": "more than 1 + 1"}),
        ("new-messages-first", {"ch/retx/3": "new messages before the lost one"}),
        ("queue-drops-newest", {"ch/retx/4": "the older message"}),
        ("new-data-first", {"ch/retx/5": "left while lost ranges"}),
        ("blocked-always-resent", {"ch/retx/6": "after the runner raised the limit"}),
        ("probe-without-ping", {"ch/retx/7": "probe packets without a PING"}),
        ("reset-not-resent", {"ch/retx/8": "the first two were lost"}),
        ("ping-not-resent", {"ch/retx/8": "was never reported acknowledged"}),
        ("stale-limits", {"ch/retx/9": "below the limit"}),
        ("late-ack-requeues", {"ch/retx/10": "the late ACK of lost packet"}),
    ],
)
def test_a_broken_rule_fails_its_case(tmp_path: Path, bug: str, failing: dict[str, str]) -> None:
    # --strict: a case of a SHOULD rule fails rather than warns.
    results = run_cases(tmp_path, "--impl", broken_impl(tmp_path, bug), "--no-precheck", "--strict")
    for case_id, expected in failing.items():
        assert results[case_id]["result"] == "fail", results[case_id]
        assert expected in results[case_id]["detail"], results[case_id]


def test_the_cases_pass_against_this_implementation(tmp_path: Path) -> None:
    results = run_cases(tmp_path)
    assert all(r["result"] == "pass" for r in results.values()), results


@pytest.mark.parametrize("controller", ["newreno", "cubic"])
def test_the_cases_pass_with_every_allowed_controller(tmp_path: Path, controller: str) -> None:
    # recovery.md §5 allows NewReno and CUBIC as well as BBR: the cases check only what all must do.
    results = run_cases(tmp_path, "--impl", broken_impl(tmp_path, controller), "--no-precheck")
    assert all(r["result"] == "pass" for r in results.values()), results
