"""The cases of conformance/cases_req_channels.py (channels.md) can fail.

Each test runs one case against this implementation's adapter with one rule of the pure-Python
core broken by a monkeypatch (a mistake a second implementation could plausibly make), and
checks that the case fails for that reason; the unbroken adapter passes the same cases.
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
_RECEIVING = "from p2pos.proto.channels.receiving import ReceivePath\n"

#: Broken cores: the Python statements run before the adapter serves.
BUGS = {
    # channels.md §4: ranges are forgotten once an ACK carried them, not once that ACK was acknowledged.
    "ack-forgets-on-send": "from p2pos.proto.recovery.acks import AckTracker\n"
    "_sent = AckTracker.on_ack_sent\n"
    "def on_ack_sent(self):\n"
    "    _sent(self)\n"
    "    if self.ranges:\n"
    "        self.on_ack_acknowledged(self.ranges[0][1] - 1)\n"
    "AckTracker.on_ack_sent = on_ack_sent\n",
    # channels.md §3.3: a RESET of a stream channel is not answered (QUIC's RESET_STREAM is not).
    "no-reset-answer": _RECEIVING + "from p2pos.proto.channels.frames import FrameType\n"
    "_on_reset = ReceivePath._on_reset\n"
    "def on_reset(self, channel, frame):\n"
    "    _on_reset(self, channel, frame)\n"
    "    self._control.pop((FrameType.RESET, channel.id), None)\n"
    "ReceivePath._on_reset = on_reset\n",
    # channels.md §3.3: the RESET answering ours is dropped: no window settling, no final size check.
    "no-settle": _RECEIVING + "ReceivePath._settle_reset = lambda self, frame: None\n",
    # channels.md §3.4: STOP_SENDING is answered with APPLICATION_CLOSE, not the frame's code.
    "stop-sending-default-code": "from p2pos.proto.channels import receiving\n"
    "receiving.channel_code_to_wire = lambda code: 0x0c\n",
    # channels.md §2.2: an OPEN below index 100 but beyond MAX_CHANNELS closes the connection.
    "limit-closes": _RECEIVING + "from p2pos.proto.errors import ErrorCode, RemoteProtocolError\n"
    "_on_open = ReceivePath._on_open\n"
    "def on_open(self, frame, now):\n"
    "    seen = self._peer_seen\n"
    "    fresh = seen is None or frame.channel_id // 2 not in seen\n"
    "    if fresh and frame.channel_id // 2 >= self._our_max_channels:\n"
    "        raise RemoteProtocolError('beyond MAX_CHANNELS', ErrorCode.CHANNEL_LIMIT)\n"
    "    _on_open(self, frame, now)\n"
    "ReceivePath._on_open = on_open\n",
    # channels.md §2.4: every MAX_CHANNELS replaces the limit known, even a lower one.
    "max-channels-last-wins": _RECEIVING
    + "ReceivePath._peer_max_known = property(lambda self: False, lambda self, value: None)\n",
    # channels.md §2.3: data before the ACCEPT does not imply it.
    "no-implicit-accept": _RECEIVING + "ReceivePath._implicitly_accepted = lambda self, channel: None\n",
    # channels.md §9.2: only ack-eliciting packets from the peer restart the idle timer.
    "idle-eliciting-only": "from p2pos.proto.channels.connection import Connection\n"
    "from p2pos.proto.channels import frames as fr\n"
    "_packet = Connection._packet\n"
    "def packet(self, pn, plaintext, now):\n"
    "    before = self._last_received\n"
    "    _packet(self, pn, plaintext, now)\n"
    "    if not any(fr.is_ack_eliciting(f) for f in fr.parse_frames_untrusted(plaintext)):\n"
    "        self._last_received = before\n"
    "Connection._packet = packet\n",
    # channels.md §2.2: a repeated OPEN of a channel closed since is taken for a new channel.
    "reopen-closed": _RECEIVING + "_on_open = ReceivePath._on_open\n"
    "def on_open(self, frame, now):\n"
    "    if frame.channel_id not in self.channels and self._peer_seen is not None:\n"
    "        self._peer_seen.subtract(frame.channel_id // 2, frame.channel_id // 2 + 1)\n"
    "    _on_open(self, frame, now)\n"
    "ReceivePath._on_open = on_open\n",
    # channels.md §1: packets are built for the path MTU, whatever record size the peer accepts.
    "ignore-record-limit": "from p2pos.proto.channels.sending import SendPath\n"
    "from p2pos.proto.session.session import SecureSession\n"
    "SendPath._packet_size = lambda self: self.pmtu.current_mtu\n"
    "_derive = SecureSession._derive_keys\n"
    "def derive(self, hs, now):\n"
    "    _derive(self, hs, now)\n"
    "    self.peer_max_plaintext = 1 << 16\n"
    "SecureSession._derive_keys = derive\n",
    # channels.md §9.4: a graceful close waits for its data however long it takes.
    "no-close-timeout": "from p2pos.proto.channels.connection import Connection\n"
    "_close = Connection.close\n"
    "def close(self, now, *args, **kwargs):\n"
    "    _close(self, now, *args, **kwargs)\n"
    "    self._close_deadline = None\n"
    "Connection.close = close\n",
}


def broken_impl(tmp_path: Path, bug: str) -> str:
    """An IUT command: this implementation's adapter with ``BUGS[bug]`` applied first."""
    return suite_helpers.broken_impl(tmp_path, bug, BUGS[bug])


@pytest.mark.parametrize(
    ("case_id", "bug", "expected"),
    [
        ("ch/ack/6", "ack-forgets-on-send", "leaves out packets"),
        ("ch/reset/7", "no-reset-answer", "no RESET answering"),
        ("ch/reset/8", "no-settle", "no MAX_DATA of at least"),
        ("ch/reset/9", "no-settle", "FINAL_SIZE_ERROR"),
        ("ch/reset/12", "stop-sending-default-code", "the RESET's code"),
        ("ch/limit/3", "limit-closes", "closed the session"),
        ("ch/limit/4", "max-channels-last-wins", "CHANNEL_LIMIT"),
        ("ch/open/8", "no-implicit-accept", "channel_opened, then channel_data"),
        ("ch/close/2", "no-close-timeout", "close_timeout"),
        ("ch/live/4", "idle-eliciting-only", "4.9 s after an ACK-only packet"),
        ("ch/data/9", "ignore-record-limit", "the runner accepts at most 1000"),
        ("ch/open/5", "reopen-closed", "OPEN of a closed channel"),
    ],
)
def test_a_broken_rule_fails_its_case(tmp_path: Path, case_id: str, bug: str, expected: str) -> None:
    result = run_case(tmp_path, case_id, "--impl", broken_impl(tmp_path, bug), "--no-precheck")
    assert result["result"] == "fail", result
    assert expected in result["detail"], result


@pytest.mark.parametrize(
    "case_id", ["ch/ack/6", "ch/reset/7", "ch/reset/8", "ch/reset/9", "ch/reset/12", "ch/limit/3", "ch/open/8"]
)
def test_the_case_passes_against_this_implementation(tmp_path: Path, case_id: str) -> None:
    result = run_case(tmp_path, case_id)
    assert result["result"] == "pass", result
