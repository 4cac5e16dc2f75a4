"""The cases of conformance/cases_req_handshake.py can fail.

Each test runs one case through the suite's command line against this implementation's adapter
(``conformance.impl``) with one rule of spec/handshake.md broken in the pure-Python core by a
monkeypatch, a bug a second implementation could plausibly have, and checks that the case fails
for that reason; the same case passes against the unbroken adapter.
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
_SESSION = "from p2pos.proto.session import session as s\nS = s.SecureSession\n"

#: Broken cores: the Python statements run before the adapter serves.
BUGS = {
    # §8.1 [HS-8.1.4]: a late timer schedules the next send from when it was due, not from when it fired.
    "timer-from-due": _SESSION
    + (
        "_handle = S.handle_timer\n"
        "def handle_timer(self, now):\n"
        "    due = self._retransmit_at\n"
        "    _handle(self, now)\n"
        "    if due is not None and now >= due and self._retransmit_at is not None:\n"
        "        self._retransmit_at = due + self._retransmit_interval\n"
        "S.handle_timer = handle_timer\n"
    ),
    # §8.1 [HS-8.1.6]: the XX initiator keeps its FINISH on the retransmission timer.
    "finish-on-timer": _SESSION
    + (
        "_on_response = S._on_response\n"
        "def on_response(self, packet, data, now):\n"
        "    _on_response(self, packet, data, now)\n"
        "    if self.state is s.SessionState.ESTABLISHED and self._resend_packet is not None:\n"
        "        self._retransmit_at = now + self.config.retransmit_initial\n"
        "S._on_response = on_response\n"
    ),
    # §6.4 [HS-6.4.7], §8.3 [HS-8.3.4]: a responder reports its handshake timeout to the application.
    "announce-timeout": _SESSION
    + (
        "_finish = S._finish\n"
        "def finish(self, code, reason, *, by_peer):\n"
        "    self._announced = True\n"
        "    _finish(self, code, reason, by_peer=by_peer)\n"
        "S._finish = finish\n"
    ),
    # §6.4 [HS-6.4.6]: records before CONFIRM are dropped without opening, so their counters stay fresh.
    "unconfirmed-unopened": _SESSION
    + (
        "_receive_record = S._receive_record\n"
        "def receive_record(self, data, now):\n"
        "    if self.state is s.SessionState.AWAIT_CONFIRM and data[0] != s.PacketType.CONFIRM:\n"
        "        self._drop('unconfirmed')\n"
        "        return\n"
        "    _receive_record(self, data, now)\n"
        "S._receive_record = receive_record\n"
    ),
    # §5.1 [HS-5.1.6]: a versions field of odd length is read up to its last whole version.
    "lenient-versions": (
        "from p2pos.proto.handshake import payload as p\n"
        "_split = p.decode_fields_untrusted\n"
        "def split(data):\n"
        "    fields = _split(data)\n"
        "    return [(t, v[: len(v) - len(v) % 2] or v) if t == p.F_VERSIONS else (t, v) for t, v in fields]\n"
        "p.decode_fields_untrusted = split\n"
    ),
    # §5.2 [HS-5.2.4]: a max-plaintext capability of any length is read as a number.
    "any-length-limit": _SESSION
    + (
        "def max_plaintext_of(caps, default):\n"
        "    return min(int.from_bytes(caps.get(1, b'') or b'\\xff\\xff', 'big'), default)\n"
        "s.max_plaintext_of = max_plaintext_of\n"
    ),
    # §6.5 [HS-6.5.2]: the binding cache is keyed on the identity key alone.
    "cache-by-identity": (
        "from p2pos.proto.handshake import handshake as h\n"
        "def check(self, peer, remote_static, signature):\n"
        "    if peer.public_key in self._entries:\n"
        "        return True\n"
        "    if not h.verify(peer, h.DOMAIN_NOISE_STATIC, remote_static, signature):\n"
        "        return False\n"
        "    self._entries[peer.public_key] = None\n"
        "    return True\n"
        "h.BindingCache.check = check\n"
    ),
    # §5.3 [HS-5.3.6]: an initiator takes the highest version of a RESPONSE that lists several.
    "pick-from-list": _SESSION
    + (
        "import dataclasses\n"
        "_verify = s.verify_peer_payload_untrusted\n"
        "def verify(payload, remote_static, expected, cache=None):\n"
        "    out = _verify(payload, remote_static, expected, cache)\n"
        "    if len(out.payload.versions) > 1:\n"
        "        highest = (max(out.payload.versions),)\n"
        "        out = s.VerifiedPeer(out.peer_id, dataclasses.replace(out.payload, versions=highest))\n"
        "    return out\n"
        "s.verify_peer_payload_untrusted = verify\n"
    ),
    # §8.4 [HS-8.4.3]: the common version is checked before the SAS nonce (FINISH and CONFIRM).
    "version-before-sas": _SESSION
    + (
        "_check = S._check_sas_nonce\n"
        "def check(self, nonce, now):\n"
        "    if self.version is None:\n"
        "        self._finish(s.ErrorCode.UNSUPPORTED_VERSION, 'no common protocol version', by_peer=False)\n"
        "        return False\n"
        "    return _check(self, nonce, now)\n"
        "S._check_sas_nonce = check\n"
    ),
    # §2.2 [HS-2.2.3]: an all-zero DH in a FINISH closes the session instead of dropping the FINISH.
    "weak-key-fatal": _SESSION
    + (
        "def try_read(self, message):\n"
        "    hs = self._hs.copy()\n"
        "    try:\n"
        "        return hs, hs.read_message(message)\n"
        "    except s.ProtocolError as exc:\n"
        "        if exc.code is s.ErrorCode.WEAK_KEY:\n"
        "            self._finish(exc.code, str(exc), by_peer=False)\n"
        "        return None\n"
        "S._try_read = try_read\n"
    ),
    # §2.2 [HS-2.2.5]: public keys with bit 255 set are refused.
    "canonical-only": (
        "from p2pos.proto.identity import crypto\n"
        "_x25519 = crypto.x25519\n"
        "def x25519(private, public):\n"
        "    if public[31] & 0x80:\n"
        "        raise crypto.RemoteProtocolError('non-canonical key', crypto.ErrorCode.WEAK_KEY)\n"
        "    return _x25519(private, public)\n"
        "crypto.x25519 = x25519\n"
    ),
    # §8.1 [HS-8.1.2]: the responder keeps its RESPONSE on the retransmission timer after the FINISH.
    "response-after-finish": _SESSION
    + (
        "_announce = S._announce\n"
        "def announce(self):\n"
        "    packet, at = self._resend_packet, self._retransmit_at\n"
        "    _announce(self)\n"
        "    if not self.initiator:\n"
        "        self._resend_packet, self._retransmit_at = packet, at\n"
        "S._announce = announce\n"
    ),
    # §8.2 [HS-8.2.1]: only an XX responder answers a duplicate INIT.
    "no-ik-duplicate": _SESSION
    + (
        "_receive = S._receive_handshake\n"
        "def receive(self, packet, data, now):\n"
        "    if packet.type is s.PacketType.INIT and self.state is s.SessionState.AWAIT_CONFIRM:\n"
        "        self._drop('unexpected_handshake')\n"
        "        return\n"
        "    _receive(self, packet, data, now)\n"
        "S._receive_handshake = receive\n"
    ),
    # §8.2 [HS-8.2.5]: an established initiator answers any RESPONSE, identical or not.
    "any-response-repeats": _SESSION
    + (
        "_receive = S._receive_handshake\n"
        "def receive(self, packet, data, now):\n"
        "    if packet.type is s.PacketType.RESPONSE and self.state is s.SessionState.ESTABLISHED:\n"
        "        self._repeat_last_message(now)\n"
        "        return\n"
        "    _receive(self, packet, data, now)\n"
        "S._receive_handshake = receive\n"
    ),
    # §8.5 [HS-8.5.2]: the responder counts its records against the budget too.
    "budget-on-records": _SESSION
    + (
        "_seal = S._seal\n"
        "def seal(self, ptype, plaintext, now):\n"
        "    counter = _seal(self, ptype, plaintext, now)\n"
        "    if not self.initiator:\n"
        "        self._unvalidated_out += len(self._outbox[-1])\n"
        "        if self._unvalidated_out > 3 * self._unvalidated_in:\n"
        "            self._outbox.pop()\n"
        "    return counter\n"
        "S._seal = seal\n"
    ),
    # §5.3 [HS-5.3.9]: a payload without a versions field is malformed.
    "versions-required": (
        "from p2pos.proto.handshake import payload as p\n"
        "_decode = p.HandshakePayload.decode_untrusted.__func__\n"
        "def decode(cls, data):\n"
        "    out = _decode(cls, data)\n"
        "    if not out.versions:\n"
        "        raise p.RemoteProtocolError('no versions field', p.ErrorCode.MALFORMED_MESSAGE)\n"
        "    return out\n"
        "p.HandshakePayload.decode_untrusted = classmethod(decode)\n"
    ),
    # §8.4 [HS-8.4.4]: the responder compares the FINISH's versions with the chosen version.
    "finish-version-compared": _SESSION
    + (
        "_verify = S._verify\n"
        "def verify(self, hs, payload, expected):\n"
        "    out = _verify(self, hs, payload, expected)\n"
        "    finishing = not self.initiator and self.state is s.SessionState.AWAIT_FINISH\n"
        "    if out is not None and finishing and out.payload.versions != (self.version,):\n"
        "        self._finish(s.ErrorCode.UNSUPPORTED_VERSION, 'FINISH version', by_peer=False)\n"
        "        return None\n"
        "    return out\n"
        "S._verify = verify\n"
    ),
    # §5.1 [HS-5.1.8]: fields must come in ascending type order.
    "ascending-only": (
        "from p2pos.proto.handshake import payload as p\n"
        "_split = p.decode_fields_untrusted\n"
        "def split(data):\n"
        "    fields = _split(data)\n"
        "    if [t for t, _ in fields] != sorted(t for t, _ in fields):\n"
        "        raise p.RemoteProtocolError('fields out of order', p.ErrorCode.MALFORMED_MESSAGE)\n"
        "    return fields\n"
        "p.decode_fields_untrusted = split\n"
    ),
    # §5.1 [HS-5.1.3]: padding that is not zero bytes is refused.
    "zero-padding-only": (
        "from p2pos.proto.handshake import payload as p\n"
        "_split = p.decode_fields_untrusted\n"
        "def split(data):\n"
        "    fields = _split(data)\n"
        "    if any(t == p.F_PADDING and v.strip(b'\\x00') for t, v in fields):\n"
        "        raise p.RemoteProtocolError('padding is not zero', p.ErrorCode.MALFORMED_MESSAGE)\n"
        "    return fields\n"
        "p.decode_fields_untrusted = split\n"
    ),
    # §5.2 [HS-5.2.2]: a field list ending in a truncated field is read up to it.
    "lenient-split": (
        "from p2pos.proto.handshake import payload as p\n"
        "def split(data):\n"
        "    fields, pos = [], 0\n"
        "    while pos + 4 <= len(data):\n"
        "        ftype, flen = p._FIELD.unpack_from(data, pos)\n"
        "        if pos + 4 + flen > len(data):\n"
        "            break\n"
        "        fields.append((ftype, data[pos + 4 : pos + 4 + flen]))\n"
        "        pos += 4 + flen\n"
        "    return fields\n"
        "p.decode_fields_untrusted = split\n"
    ),
    # §4.4 [HS-4.4.1]: handshake packets of any length are parsed.
    "no-size-limit": "from p2pos.proto.session import wire\nwire.MAX_HANDSHAKE_MESSAGE = 1 << 20\n",
}


def broken_impl(tmp_path: Path, bug: str) -> str:
    """An IUT command: this implementation's adapter with ``BUGS[bug]`` applied first."""
    return suite_helpers.broken_impl(tmp_path, bug, BUGS[bug])


CASES = [
    ("hs/req/1", "timer-from-due", "counts from the late send"),
    ("hs/req/2", "finish-on-timer", "sent on a timer"),
    ("hs/req/5", "announce-timeout", "events of the responder's timer"),
    ("hs/req/6", "announce-timeout", "events of the responder's timer"),
    ("hs/req/7", "unconfirmed-unopened", "its counter is used"),
    ("hs/req/15", "lenient-versions", "a versions field of 3 bytes"),
    ("hs/req/18", "any-length-limit", "limit capability is 2 bytes long"),
    ("hs/req/22", "cache-by-identity", "REF's binding presented with OTHER's static key"),
    ("hs/ver/4", "pick-from-list", "datagrams sent after the rejected message"),
    ("hs/order/4", "version-before-sas", "state and close code"),
    ("hs/order/5", "version-before-sas", "expected one CLOSE datagram"),
    ("hs/req/12", "weak-key-fatal", "state after the low-order FINISHes"),
    ("hs/req/13", "canonical-only", "expected one RESPONSE datagram"),
    ("hs/req/14", "no-size-limit", "in answer to a rejected INIT"),
    ("hs/req/4", "response-after-finish", "sent on a timer"),
    ("hs/req/10", "no-ik-duplicate", "expected one RESPONSE datagram, got 0"),
    ("hs/req/9", "any-response-repeats", "answer to a RESPONSE differing in its last byte"),
    ("hs/req/11", "budget-on-records", "expected one DATA datagram, got 0"),
    ("hs/ver/5", "versions-required", "expected 'UNSUPPORTED_VERSION', got 'MALFORMED_MESSAGE'"),
    ("hs/ver/6", "versions-required", "expected one RESPONSE datagram, got 0"),
    ("hs/ver/8", "finish-version-compared", "expected one 'handshake_completed' event"),
    ("hs/req/16", "ascending-only", "expected one 'handshake_completed' event"),
    ("hs/req/17", "zero-padding-only", "expected one RESPONSE datagram, got 0"),
    ("hs/req/20", "lenient-split", "datagrams sent after the rejected message"),
]


@pytest.mark.parametrize(("case_id", "bug", "expected"), CASES)
def test_a_broken_rule_fails_its_case(tmp_path: Path, case_id: str, bug: str, expected: str) -> None:
    result = run_case(tmp_path, case_id, "--impl", broken_impl(tmp_path, bug), "--no-precheck")
    assert result["result"] == "fail", result
    assert expected in result["detail"], result


@pytest.mark.parametrize("case_id", sorted({case_id for case_id, _, _ in CASES}))
def test_the_case_passes_against_this_implementation(tmp_path: Path, case_id: str) -> None:
    result = run_case(tmp_path, case_id)
    assert result["result"] == "pass", result
