"""The cases of conformance/cases_req_session.py (session.md, errors.md) can fail.

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
_SESSION = "from p2pos.proto.session.session import SecureSession, SessionState\n"

#: Broken cores: the Python statements run before the adapter serves.
BUGS = {
    # session.md §3: an IK responder waiting for CONFIRM closes without telling the peer.
    "close-needs-established": _SESSION + "_close = SecureSession.close\n"
    "def close(self, now, code=0, reason=''):\n"
    "    if self.state is SessionState.AWAIT_CONFIRM:\n"
    "        self._finish(code, reason, by_peer=False)\n"
    "        return\n"
    "    _close(self, now, code, reason)\n"
    "SecureSession.close = close\n",
    # session.md §2: a second close reports the end again.
    "close-twice": _SESSION + "from p2pos.proto.events import SessionClosed\n"
    "_close = SecureSession.close\n"
    "def close(self, now, code=0, reason=''):\n"
    "    if self.state is SessionState.CLOSED:\n"
    "        self._events.append(SessionClosed(session_id=self.local_index, code=code, reason=reason, by_peer=False))\n"
    "    _close(self, now, code, reason)\n"
    "SecureSession.close = close\n",
    # session.md §7: the handshake deadline sends a CLOSE where record keys exist (IK responder).
    "timeout-sends-close": _SESSION + "from p2pos.proto.errors import ErrorCode\n"
    "_handle_timer = SecureSession.handle_timer\n"
    "def handle_timer(self, now):\n"
    "    pending = self.state not in (SessionState.ESTABLISHED, SessionState.CLOSED)\n"
    "    if pending and self._deadline is not None and now >= self._deadline:\n"
    "        self._close_with_record(ErrorCode.HANDSHAKE_TIMEOUT, 'timeout', now)\n"
    "        return\n"
    "    _handle_timer(self, now)\n"
    "SecureSession.handle_timer = handle_timer\n",
    # session.md §2: an IK responder with keys sends DATA before the CONFIRM.
    "send-with-keys": _SESSION + "_send = SecureSession.send\n"
    "def send(self, data, now):\n"
    "    if self.state is SessionState.AWAIT_CONFIRM and self._sender is not None:\n"
    "        return self._seal(0x07, data, now)\n"
    "    return _send(self, data, now)\n"
    "SecureSession.send = send\n",
    # session.md §3: the lifetime runs from ESTABLISHED (for the IK responder: from the CONFIRM).
    "lifetime-from-established": _SESSION + "_receive = SecureSession.receive_data\n"
    "def receive_data(self, data, now):\n"
    "    before = self.state\n"
    "    _receive(self, data, now)\n"
    "    if before is not SessionState.ESTABLISHED and self.state is SessionState.ESTABLISHED:\n"
    "        self._expires_at = now + self.config.session_lifetime\n"
    "SecureSession.receive_data = receive_data\n",
    # session.md §3: the lifetime runs from the session's creation.
    "lifetime-from-creation": _SESSION + "created = {}\n"
    "_init = SecureSession.__init__\n"
    "def init(self, **kw):\n"
    "    _init(self, **kw)\n"
    "    created[id(self)] = kw['now']\n"
    "SecureSession.__init__ = init\n"
    "_derive = SecureSession._derive_keys\n"
    "def derive(self, hs, now):\n"
    "    _derive(self, hs, now)\n"
    "    self._expires_at = created[id(self)] + self.config.session_lifetime\n"
    "SecureSession._derive_keys = derive\n",
    # session.md §3: an initiator is announced only once established, so a failed one ends silently.
    "initiator-announced-late": _SESSION + "_init = SecureSession.__init__\n"
    "def init(self, **kw):\n"
    "    _init(self, **kw)\n"
    "    self._announced = False\n"
    "SecureSession.__init__ = init\n",
    # session.md §3: a responder is announced from the start, so its timeout is reported.
    "responder-announced-early": _SESSION + "_init = SecureSession.__init__\n"
    "def init(self, **kw):\n"
    "    _init(self, **kw)\n"
    "    self._announced = True\n"
    "SecureSession.__init__ = init\n",
    # session.md §3: the initiator keeps its retransmission timer once established.
    "retransmit-after-established": _SESSION + "_on_response = SecureSession._on_response\n"
    "def on_response(self, packet, data, now):\n"
    "    _on_response(self, packet, data, now)\n"
    "    if self.state is SessionState.ESTABLISHED:\n"
    "        self._retransmit_at = now + 1.0\n"
    "SecureSession._on_response = on_response\n",
    # session.md §6: configurations are not checked.
    "unchecked-config": (
        "from p2pos.proto.session.session import SessionConfig\nSessionConfig.__post_init__ = lambda self: None\n"
    ),
    # errors.md §1: only the codes up to APPLICATION_CLOSE are known; later ones read as PROTOCOL_VIOLATION.
    "old-codes-only": (
        "from p2pos.proto.errors import ErrorCode\n"
        "ErrorCode.from_wire = classmethod(lambda cls, v: cls(v) if v <= 0x0D else cls.PROTOCOL_VIOLATION)\n"
    ),
    # errors.md §3: 0x19 to 0xff all read as PROTOCOL_VIOLATION (INTERNAL_ERROR included).
    "ff-reserved": (
        "from p2pos.proto.channels import receiving\n"
        "from p2pos.proto.errors import ErrorCode\n"
        "_from_wire = receiving.channel_code_from_wire\n"
        "def from_wire(value):\n"
        "    return (ErrorCode.PROTOCOL_VIOLATION, None) if 0x19 <= value < 0x100 else _from_wire(value)\n"
        "receiving.channel_code_from_wire = from_wire\n"
    ),
    # errors.md §3: the API sends any code it is given.
    "any-code": (
        "from p2pos.proto.channels import connection\nconnection.channel_code_to_wire = lambda code: int(code)\n"
    ),
    # session.md §7: the channel layer keeps the session alive with KEEPALIVE records as well.
    "keepalive-records": (
        "from p2pos.proto.channels.connection import Connection\n"
        "_handle_timer = Connection.handle_timer\n"
        "def handle_timer(self, now):\n"
        "    _handle_timer(self, now)\n"
        "    if self.session.is_established:\n"
        "        self.session.send_keepalive(now)\n"
        "Connection.handle_timer = handle_timer\n"
    ),
    # session.md §4.2: the endpoint never follows a peer to a new address.
    "no-roaming": (
        "from p2pos.proto.endpoint.endpoint import Endpoint\n"
        "_receive = Endpoint.receive_data\n"
        "def receive_data(self, data, address, now, local=0):\n"
        "    saved = dict(self._routes)\n"
        "    _receive(self, data, address, now, local)\n"
        "    self._routes.update({k: v for k, v in saved.items() if k in self._routes})\n"
        "Endpoint.receive_data = receive_data\n"
    ),
    # session.md §4.2: the endpoint follows any datagram that names a session, authenticated or not.
    "route-follows-source": (
        "from p2pos.proto.endpoint import endpoint as e\n"
        "_receive = e.Endpoint.receive_data\n"
        "def receive_data(self, data, address, now, local=0):\n"
        "    _receive(self, data, address, now, local)\n"
        "    index = e.receiver_index_untrusted(data) if data else None\n"
        "    if index is not None and index in self._routes:\n"
        "        self._routes[index] = (address, local)\n"
        "e.Endpoint.receive_data = receive_data\n"
    ),
    # session.md §4.2: a duplicate INIT moves its session to the duplicate's address.
    "init-moves": (
        "import hashlib\n"
        "from p2pos.proto.endpoint.endpoint import Endpoint\n"
        "_receive_init = Endpoint._receive_init\n"
        "def receive_init(self, data, address, local, now):\n"
        "    seen = self._seen_inits.get(hashlib.blake2b(data, digest_size=16).digest())\n"
        "    _receive_init(self, data, address, local, now)\n"
        "    if seen is not None and seen[1] in self._routes:\n"
        "        self._routes[seen[1]] = (address, local)\n"
        "Endpoint._receive_init = receive_init\n"
    ),
    # errors.md §3: a lost RESET is not sent again.
    "lost-reset-forgotten": (
        "from p2pos.proto.channels import frames as fr\n"
        "from p2pos.proto.channels.sending import SendPath\n"
        "_current = SendPath._current_control\n"
        "def current(self, ftype, channel_id):\n"
        "    return None if ftype == fr.FrameType.RESET else _current(self, ftype, channel_id)\n"
        "SendPath._current_control = current\n"
    ),
    # session.md §4.1: an endpoint's events do not say which session they come from.
    "no-session-id": (
        "from p2pos.proto.endpoint.endpoint import Endpoint\n"
        "_next = Endpoint.next_event\n"
        "def next_event(self):\n"
        "    event = _next(self)\n"
        "    if event is not None and hasattr(event, 'session_id'):\n"
        "        import dataclasses\n"
        "        event = dataclasses.replace(event, session_id=0)\n"
        "    return event\n"
        "Endpoint.next_event = next_event\n"
    ),
    # session.md §4.1: INITs beyond max_sessions still create sessions.
    "no-session-limit": (
        "from p2pos.proto.endpoint.endpoint import Endpoint\n"
        "_init = Endpoint.__init__\n"
        "def init(self, keys, **kw):\n"
        "    _init(self, keys, **{**kw, 'max_sessions': 65536})\n"
        "Endpoint.__init__ = init\n"
    ),
    # session.md §4.1: closed sessions stay in the endpoint.
    "keep-closed": "from p2pos.proto.endpoint.endpoint import Endpoint\nEndpoint._reap = lambda self, index: None\n",
    # session.md §7: the endpoint's timer forgets the replay cache.
    "no-cache-timer": (
        "from p2pos.proto.endpoint.endpoint import Endpoint\nEndpoint.get_timer = lambda self: self._timers.next()\n"
    ),
    # session.md §4.3: a replay cache TTL below the handshake timeout.
    "short-cache": (
        "from p2pos.proto.endpoint.endpoint import Endpoint\n"
        "_init = Endpoint.__init__\n"
        "def init(self, keys, **kw):\n"
        "    _init(self, keys, **{**kw, 'replay_cache_ttl': 10.0})\n"
        "Endpoint.__init__ = init\n"
    ),
}


def broken_impl(tmp_path: Path, bug: str) -> str:
    """An IUT command: this implementation's adapter with ``BUGS[bug]`` applied first."""
    return suite_helpers.broken_impl(tmp_path, bug, BUGS[bug])


BROKEN = [
    ("ses/close/2", "close-needs-established", "expected one CLOSE datagram, got 0"),
    ("ses/api/2", "close-twice", "answer to a second close"),
    ("ses/timer/1", "timeout-sends-close", "only RESPONSEs may be resent"),
    ("ses/api/1", "send-with-keys", "send before the CONFIRM must be refused"),
    ("ses/timer/3", "lifetime-from-established", "keys derived at 0 s"),
    ("ses/timer/4", "lifetime-from-creation", "keys derived at 5 s"),
    ("ses/announce/1", "initiator-announced-late", "one closed event"),
    ("ses/close/1", "initiator-announced-late", "expected one closed event"),
    ("ses/announce/3", "responder-announced-early", "events of a responder whose handshake never completed"),
    ("ses/timer/2", "retransmit-after-established", "timer of an established session"),
    ("ses/api/3", "unchecked-config", "must be refused"),
    ("err/close/5", "old-codes-only", "FINAL_SIZE_ERROR"),
    ("err/code/1", "ff-reserved", "INTERNAL_ERROR"),
    ("err/code/3", "any-code", "must be refused"),
    ("ses/timer/5", "keepalive-records", "record types sent"),
    ("ep/route/4", "no-roaming", "destination of the session's CLOSE"),
    ("ep/route/7", "no-roaming", "destination of the retransmitted RESPONSE"),
    ("ep/route/5", "route-follows-source", "destination of the session's CLOSE"),
    ("ep/route/6", "init-moves", "destination of the RESPONSE to the duplicate INIT"),
    ("err/code/4", "lost-reset-forgotten", "sent the lost RESET again 0"),
    ("ep/route/9", "no-session-id", "session_id of the handshake_completed"),
    ("ep/route/8", "no-session-limit", "answer to a third INIT with max_sessions 2"),
    ("ep/route/1", "keep-closed", "sessions after the CLOSE"),
    ("ep/route/3", "no-cache-timer", "with only a replay-cache entry"),
    ("ep/route/2", "short-cache", "INIT replayed at 20.0 s"),
]


#: Cases that test only SHOULD rules: a failure is a warning unless the run is strict.
SHOULD_ONLY = {"ep/route/2"}


@pytest.mark.parametrize(("case_id", "bug", "expected"), BROKEN)
def test_a_broken_rule_fails_its_case(tmp_path: Path, case_id: str, bug: str, expected: str) -> None:
    result = run_case(tmp_path, case_id, "--impl", broken_impl(tmp_path, bug), "--no-precheck")
    assert result["result"] == ("warn" if case_id in SHOULD_ONLY else "fail"), result
    assert expected in result["detail"], result


@pytest.mark.parametrize("case_id", sorted({case_id for case_id, _, _ in BROKEN}))
def test_the_case_passes_against_this_implementation(tmp_path: Path, case_id: str) -> None:
    result = run_case(tmp_path, case_id)
    assert result["result"] == "pass", result
