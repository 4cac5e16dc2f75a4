"""The cases of conformance/cases_req_conformance.py can fail.

Each test runs the suite's command line against this implementation's adapter
(``conformance.impl``) with the adapter or its core broken by a monkeypatch, the way a second
implementation could get the control protocol wrong (spec/conformance.md §3.5, §3.7), and
checks that the case meant to catch it fails for that reason (and passes unbroken).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import suite_helpers

#: Every test here runs the pure-Python core, whatever core this run uses (a broken core is a
#: patched or mutated pure one): the compiled pass of `make test` leaves them out.
pytestmark = pytest.mark.pure_core


REPO_ROOT = Path(__file__).resolve().parents[2]

#: Broken adapters: the Python statements run before the adapter serves.
BUGS = {
    # §3.5: the IUT answers quit but exits with status 3.
    "quit-status": ("import conformance.impl as _impl\n_main = _impl.main\n_impl.main = lambda: _main() or 3\n"),
    # §3.5: the IUT exits on quit without answering it.
    "quit-silent": (
        "import builtins\n"
        "import conformance.impl as _impl\n"
        "def _print(*args, **kw):\n"
        "    if args != ('{\"ok\": true}',):\n"
        "        builtins.print(*args, **kw)\n"
        "_impl.print = _print\n"
    ),
    # §3.5: the IUT answers quit, then lingers for 3 s before it exits.
    "quit-linger": (
        "import time\n"
        "import conformance.impl as _impl\n"
        "_main = _impl.main\n"
        "def _linger():\n"
        "    status = _main()\n"
        "    time.sleep(3)\n"
        "    return status\n"
        "_impl.main = _linger\n"
    ),
    # §3.7: a write with fin that the send buffer took only in part loses its FIN.
    "fin-dropped": (
        "from p2pos.proto.channels.connection import Connection\n"
        "_close = Connection.close_channel\n"
        "def close_channel(self, channel_id, now):\n"
        "    if not self.channels[channel_id].want_writable:\n"
        "        _close(self, channel_id, now)\n"
        "Connection.close_channel = close_channel\n"
    ),
    # §3.7: a write with fin that the send buffer took only in part is refused.
    "fin-refused": (
        "from p2pos.proto.channels.connection import Connection\n"
        "from p2pos.proto.errors import LocalProtocolError\n"
        "_close = Connection.close_channel\n"
        "def close_channel(self, channel_id, now):\n"
        "    if self.channels[channel_id].want_writable:\n"
        "        raise LocalProtocolError('the rest of the data first')\n"
        "    _close(self, channel_id, now)\n"
        "Connection.close_channel = close_channel\n"
    ),
    # §3.7: a message too large for a packet is cut to fit instead of refused.
    "message-cut": (
        "from p2pos.proto.channels.sendbuf import MessageQueue\n"
        "_push = MessageQueue.push\n"
        "MessageQueue.push = lambda self, message, r=None: _push(self, message[: self.max_message_size], r)\n"
    ),
    # §3.7: a message too large for a packet is answered as taken, with accepted 0.
    "message-accepted-0": (
        "from conformance.impl import Adapter\n"
        "from p2pos.proto.errors import LocalProtocolError\n"
        "_send = Adapter.conn_send\n"
        "def conn_send(self, request):\n"
        "    try:\n"
        "        return _send(self, request)\n"
        "    except LocalProtocolError:\n"
        "        return {'accepted': 0, **self._pump(request['now'])}\n"
        "Adapter.conn_send = conn_send\n"
    ),
}


def broken_impl(tmp_path: Path, bug: str) -> str:
    """An IUT command: this implementation's adapter with ``BUGS[bug]`` applied first."""
    return suite_helpers.broken_impl(tmp_path, bug, BUGS[bug])


def run_case(tmp_path: Path, case_id: str, *args: str) -> dict[str, Any]:
    """One case run through the command line (the adapter may exit: some bugs are crashes)."""
    return suite_helpers.run_case(tmp_path, case_id, *args, adapter_may_exit=True)


@pytest.mark.parametrize(
    ("case_id", "bug", "expected"),
    [
        ("conf/quit/1", "quit-status", "exit status after quit: expected 0, got 3"),
        ("conf/quit/1", "quit-silent", "no answer to quit"),
        ("conf/quit/1", "quit-linger", "had not exited 1.0 s after answering quit"),
        ("conf/send/1", "fin-dropped", "no FIN after conn_send with fin took 1000 of 40000 bytes"),
        ("conf/send/1", "fin-refused", "'conn_send' failed"),
        ("conf/send/2", "message-cut", "must be an error answer"),
        ("conf/send/2", "message-accepted-0", "must be an error answer"),
    ],
)
def test_a_broken_control_protocol_fails_its_case(tmp_path: Path, case_id: str, bug: str, expected: str) -> None:
    result = run_case(tmp_path, case_id, "--impl", broken_impl(tmp_path, bug), "--no-precheck")
    assert result["result"] == "fail", result
    assert expected in result["detail"], result


@pytest.mark.parametrize("case_id", ["conf/quit/1", "conf/send/1", "conf/send/2"])
def test_the_case_passes_against_this_implementation(tmp_path: Path, case_id: str) -> None:
    result = run_case(tmp_path, case_id)
    assert result["result"] == "pass", result
