"""The cases of conformance/cases_req_frames.py (spec/frames.md, spec/flow.md) can fail.

Each test runs one case through the suite's command line against this implementation's
adapter with one rule of the core broken by a monkeypatch (the pure-Python core: a compiled
one cannot be patched), and checks that the case then fails, or warns for a case whose
requirements are all SHOULD, for the right reason; the unbroken adapter passes every case.
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
    # frames.md §2: values above 2^62-1 are wrapped into 62 bits instead of refused.
    "varint-wraps": (
        "from p2pos.proto.channels import frames\n"
        "from p2pos.proto.common import varint\n"
        "frames._v = lambda value: varint.encode(value & varint.MAX_VARINT)\n"
    ),
    # frames.md §4.3: the ranges of an ACK are allocated from range_count before they are read.
    "ack-preallocates": (
        "from p2pos.proto.channels import frames\n"
        "_read_ack = frames._read_ack\n"
        "def read_ack(buf, pos):\n"
        "    start = pos\n"
        "    for _ in range(3):\n"
        "        count, pos = frames._read(buf, pos)\n"
        "    pairs = [(0, 0)] * count  # MemoryError at once for 2^62 - 1 pairs\n"
        "    del pairs\n"
        "    return _read_ack(buf, start)\n"
        "frames._read_ack = read_ack\n"
    ),
    # frames.md §4.6: the application's reason is cut to 1024 characters, not 1024 bytes.
    "cut-characters": (
        "from p2pos.proto.channels import connection\nconnection.truncate_utf8 = lambda text, limit: text[:limit]\n"
    ),
    # frames.md §4.6: a received reason of any length is accepted.
    "long-reason-accepted": ("from p2pos.proto.channels import frames\nframes.MAX_REASON = 1 << 20\n"),
    # frames.md §4.3: ack_delay scaled by QUIC's default exponent 3.
    "ack-delay-exponent": (
        "from p2pos.proto.recovery.acks import AckTracker\n"
        "_delay = AckTracker.ack_delay\n"
        "AckTracker.ack_delay = lambda self, now: _delay(self, now) / 8\n"
    ),
    # frames.md §4.4: service names are NFC-normalised when read.
    "normalise-service": (
        "import unicodedata\n"
        "from p2pos.proto.channels import frames\n"
        "_read_text = frames._read_text\n"
        "def read_text(buf, pos, lowest, highest, what):\n"
        "    text, pos = _read_text(buf, pos, lowest, highest, what)\n"
        "    return unicodedata.normalize('NFC', text), pos\n"
        "frames._read_text = read_text\n"
    ),
    # frames.md §1, §3: every packet is acknowledged, even one with no ack-eliciting frame.
    "ack-everything": (
        "from p2pos.proto.channels.receiving import ReceivePath\n"
        "_record = ReceivePath._record_packet\n"
        "ReceivePath._record_packet = lambda self, pn, eliciting, frames, now: _record(self, pn, True, frames, now)\n"
    ),
    # frames.md §3: only PING, STREAM and MESSAGE frames make a packet ack-eliciting.
    "few-eliciting": (
        "from p2pos.proto.channels import frames\n"
        "frames.is_ack_eliciting = lambda f: isinstance(f, frames.Ping | frames.Stream | frames.Message)\n"
    ),
    # flow.md §2.1: a second copy that differs from the first is a PROTOCOL_VIOLATION.
    "compare-copies": (
        "from p2pos.proto.channels.recvbuf import ReceiveBuffer\n"
        "from p2pos.proto.errors import ErrorCode, RemoteProtocolError\n"
        "_receive = ReceiveBuffer.receive_untrusted\n"
        "def receive(self, offset, data, fin):\n"
        "    for start, piece in list(self._chunks.items()):\n"
        "        low, high = max(start, offset), min(start + len(piece), offset + len(data))\n"
        "        first, second = piece[low - start : high - start], data[low - offset : high - offset]\n"
        "        if low < high and bytes(first) != bytes(second):\n"
        "            raise RemoteProtocolError('a different copy', ErrorCode.PROTOCOL_VIOLATION)\n"
        "    return _receive(self, offset, data, fin)\n"
        "ReceiveBuffer.receive_untrusted = receive\n"
    ),
    # flow.md §3.1: an update after every read, not once half the window was read.
    "update-every-read": (
        "from p2pos.proto.channels.flow import ReceiveWindow\n"
        "ReceiveWindow.should_send_update = lambda self: self.consumed + self.window > self.limit\n"
    ),
    # flow.md §3.1: limits follow the data that arrived, not what the application read.
    "update-on-arrival": (
        "from p2pos.proto.channels.flow import ReceiveWindow\n"
        "from p2pos.proto.channels.receiving import ReceivePath\n"
        "ReceiveWindow.should_send_update = lambda self: (self.limit - self.highest_received) * 2 < self.window\n"
        "def new_limit(self, now, rtt):\n"
        "    self.limit = max(self.limit, self.highest_received + self.window)\n"
        "    return self.limit\n"
        "ReceiveWindow.new_limit = new_limit\n"
        "_on_stream = ReceivePath._on_stream\n"
        "def on_stream(self, channel, offset, data, fin):\n"
        "    _on_stream(self, channel, offset, data, fin)\n"
        "    self._read_channels[channel.id] = None\n"
        "ReceivePath._on_stream = on_stream\n"
    ),
    # flow.md §3.2: a MAX_DATA / MAX_CHANNEL_DATA replaces the limit, even downwards.
    "limit-lowered": (
        "from p2pos.proto.channels.flow import SendCredit\n"
        "def update_limit(self, new_limit):\n"
        "    changed, self.limit = new_limit != self.limit, new_limit\n"
        "    return changed\n"
        "SendCredit.update_limit = update_limit\n"
    ),
    # flow.md §3: the connection limit is never checked (only each channel's).
    "no-connection-limit": (
        "from p2pos.proto.channels.flow import ReceiveWindow\n"
        "def increment(self, n):\n"
        "    self.highest_received += n\n"
        "ReceiveWindow.receive_increment_untrusted = increment\n"
    ),
    # flow.md §3.3: a reset channel's unread bytes stay charged to the connection.
    "reset-leaks-credit": (
        "from p2pos.proto.channels.sending import SendPath\nSendPath._release_receive = lambda self, channel: None\n"
    ),
    # flow.md §6: the limits are checked before the final size.
    "limits-first": (
        "from p2pos.proto.channels.recvbuf import ReceiveBuffer\n"
        "from p2pos.proto.errors import ErrorCode, RemoteProtocolError\n"
        "_receive = ReceiveBuffer.receive_untrusted\n"
        "def receive(self, offset, data, fin):\n"
        "    if offset + len(data) > self.window.limit:\n"
        "        raise RemoteProtocolError('beyond the limit', ErrorCode.FLOW_CONTROL_ERROR)\n"
        "    return _receive(self, offset, data, fin)\n"
        "ReceiveBuffer.receive_untrusted = receive\n"
    ),
    # flow.md §2.3: every message may be sent again three times (the default budget is 0).
    "messages-retransmitted": (
        "from p2pos.proto.channels.sendbuf import MessageQueue\n"
        "_init = MessageQueue.__init__\n"
        "def init(self, **kw):\n"
        "    _init(self, **{**kw, 'retransmissions': 3})\n"
        "MessageQueue.__init__ = init\n"
    ),
    # flow.md §4: a lost MAX_DATA is forgotten.
    "max-data-not-resent": (
        "from p2pos.proto.channels import frames\n"
        "from p2pos.proto.channels.sending import SendPath\n"
        "_current = SendPath._current_control\n"
        "def current(self, ftype, channel_id):\n"
        "    return None if ftype == frames.FrameType.MAX_DATA else _current(self, ftype, channel_id)\n"
        "SendPath._current_control = current\n"
    ),
    # flow.md §2.3: a full queue drops the new message instead of the oldest.
    "drop-newest": (
        "from p2pos.proto.channels.sendbuf import MessageQueue\n"
        "_push = MessageQueue.push\n"
        "def push(self, message, retransmissions=None):\n"
        "    if len(self._queue) + len(self._retry) >= self.max_messages:\n"
        "        self.dropped += 1\n"
        "        self._next_id += 1\n"
        "        return self._next_id - 1\n"
        "    return _push(self, message, retransmissions)\n"
        "MessageQueue.push = push\n"
    ),
    # flow.md §4: the sender assumes a 2 MiB connection credit before any MAX_DATA.
    "credit-2mib": ("from p2pos.proto.channels import sending\nsending.INITIAL_MAX_DATA = 2 * 1024 * 1024\n"),
    # flow.md §4: no auto-tuning.
    "no-autotune": (
        "from p2pos.proto.channels.flow import ReceiveWindow\nReceiveWindow._autotune = lambda self, now, rtt: None\n"
    ),
    # flow.md §5: no blocked frame at all.
    "never-blocked": (
        "from p2pos.proto.channels.flow import SendCredit\nSendCredit.should_send_blocked = lambda self: False\n"
    ),
}


def broken_impl(tmp_path: Path, bug: str) -> str:
    """An IUT command: this implementation's adapter with ``BUGS[bug]`` applied first."""
    return suite_helpers.broken_impl(tmp_path, bug, BUGS[bug])


def run_case(tmp_path: Path, case_id: str, *args: str) -> dict[str, Any]:
    """One case run through the command line (the adapter may exit: some bugs are crashes)."""
    return suite_helpers.run_case(tmp_path, case_id, *args, adapter_may_exit=True)


@pytest.mark.parametrize(
    ("case_id", "bug", "result", "expected"),
    [
        ("frame/ch/18", "varint-wraps", "fail", "MAX_DATA of 2^62 should fail"),
        ("frame/ch/19", "ack-preallocates", "fail", "exited with status"),
        ("ch/frame/1", "cut-characters", "fail", "one REFUSE for channel 0"),
        ("ch/frame/2", "long-reason-accepted", "fail", "a REFUSE that does not parse was reported"),
        ("ch/frame/3", "ack-delay-exponent", "fail", "microseconds, no exponent"),
        ("ch/frame/4", "normalise-service", "fail", "accepted an OPEN to the NFD form"),
        ("ch/frame/5", "ack-everything", "fail", "empty DATA record"),
        ("ch/frame/6", "few-eliciting", "fail", "a packet holding only MaxData"),
        ("ch/flow/6", "compare-copies", "fail", "closed the session with code 0x"),
        ("ch/flow/7", "update-every-read", "warn", "after half of the 4096-byte window was read"),
        ("ch/flow/8", "update-on-arrival", "fail", "while nothing could be read"),
        ("ch/flow/9", "limit-lowered", "fail", "the echo after MAX_DATA 50"),
        ("ch/flow/11", "no-connection-limit", "fail", "expected a CLOSE record with FLOW_CONTROL_ERROR"),
        ("ch/flow/15", "reset-leaks-credit", "fail", "no MAX_DATA after a RESET"),
        ("ch/flow/16", "limits-first", "fail", "got 'FLOW_CONTROL_ERROR'"),
        ("ch/flow/19", "credit-2mib", "fail", "beyond the 1 MiB connection credit"),
        ("ch/flow/21", "no-autotune", "warn", "window doubled"),
        ("ch/flow/20", "never-blocked", "warn", "DATA_BLOCKED frames"),
        ("ch/flow/22", "messages-retransmitted", "fail", "the packets carrying message 0"),
        ("ch/flow/23", "max-data-not-resent", "fail", "never sent again"),
        ("ch/flow/24", "drop-newest", "fail", "the newest message"),
    ],
)
def test_a_broken_core_fails_its_case(tmp_path: Path, case_id: str, bug: str, result: str, expected: str) -> None:
    outcome = run_case(tmp_path, case_id, "--impl", broken_impl(tmp_path, bug), "--no-precheck")
    assert outcome["result"] == result, outcome
    assert expected in outcome["detail"], outcome


def test_every_case_passes_against_this_implementation(tmp_path: Path) -> None:
    proc, report = run_conformance(tmp_path / "report.json", "-k", "ch/frame/", "-j", "2", pure=True)
    results = {c["id"]: c["result"] for c in report["cases"]}
    assert results and set(results.values()) == {"pass"}, proc.stdout
    for area in ("ch/flow/", "frame/ch/"):
        proc, report = run_conformance(tmp_path / "report.json", "-k", area, "-j", "2", pure=True)
        results = {c["id"]: c["result"] for c in report["cases"]}
        assert results and set(results.values()) == {"pass"}, proc.stdout
