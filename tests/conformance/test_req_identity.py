"""The cases of conformance/cases_req_identity.py can fail.

Each test runs the suite's command line against this implementation's adapter
(``conformance.impl``) with one rule of spec/identity.md or spec/record.md §7 broken by a
monkeypatch of the pure-Python core, the way a plausible second implementation would get it
wrong, and checks that the case meant to catch it fails for that reason (and that the same
case passes against the unbroken adapter).  The broken verifiers are plain-Python Ed25519
verifiers built on the arithmetic of spec/vectors/generate_signatures.py, each leaving out or
changing one step of the rule of identity.md §3.2, or OpenSSL's verifier (``cryptography``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import suite_helpers
from suite_helpers import run_case

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Every test here runs the pure-Python core, whatever core this run uses (a broken core is a
#: patched or mutated pure one): the compiled pass of `make test` leaves them out.
pytestmark = pytest.mark.pure_core

#: A plain-Python Ed25519 verifier with switches, installed as ``crypto.ed25519_verify``.
_VERIFIER = f"""
import hashlib, importlib.util
_spec = importlib.util.spec_from_file_location("gs", {str(REPO_ROOT / "spec/vectors/generate_signatures.py")!r})
gs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gs)
from p2pos.proto.identity import crypto

CANONICAL_8 = {{gs.encode(t) for t in gs.TORSION}}
def make_verify(*, canonical_key, blocked_y, cofactored):
    def verify(public_key, message, signature):
        if len(public_key) != 32 or len(signature) != 64:
            return False
        s = int.from_bytes(signature[32:], "little")
        if s >= gs.L:
            return False
        y = int.from_bytes(public_key, "little") & (2**255 - 1)
        if canonical_key and (y >= gs.P or gs.x_for(y, public_key[31] >> 7) is None):
            return False
        r_y = int.from_bytes(signature[:32], "little") & (2**255 - 1)
        if blocked_y and (y in gs.BLOCKED or r_y in gs.BLOCKED):
            return False
        if not blocked_y and (public_key in CANONICAL_8 or signature[:32] in CANONICAL_8):
            return False
        a, r = gs.decode_lenient(public_key), gs.decode_lenient(signature[:32])
        if a is None or r is None:
            return False
        k = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little") % gs.L
        left, right = gs.mul(s, gs.BASE), gs.add(r, gs.mul(k, a))
        if cofactored:
            return gs.mul(8, left) == gs.mul(8, right)
        return gs.encode(gs.add(left, gs.neg(gs.mul(k, a)))) == signature[:32]
    return verify
"""

#: Broken cores: the Python statements run before the adapter serves.
BUGS = {
    # identity.md §3.2 step 2: keys are decoded leniently (y mod p), the small-order list has only
    # the 8 canonical encodings.
    "sig-lenient-key": _VERIFIER
    + "crypto.ed25519_verify = make_verify(canonical_key=False, blocked_y=False, cofactored=False)\n",
    # identity.md §3.2 step 6: the cofactored equation (ZIP 215 style), every other check kept.
    "sig-cofactored": _VERIFIER
    + "crypto.ed25519_verify = make_verify(canonical_key=True, blocked_y=True, cofactored=True)\n",
    # identity.md §3.2: OpenSSL's Ed25519, which accepts small-order keys and R.
    "sig-openssl": (
        "from cryptography.exceptions import InvalidSignature\n"
        "from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey\n"
        "from p2pos.proto.identity import crypto\n"
        "def verify(public_key, message, signature):\n"
        "    if len(public_key) != 32 or len(signature) != 64:\n"
        "        return False\n"
        "    try:\n"
        "        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)\n"
        "    except (InvalidSignature, ValueError):\n"
        "        return False\n"
        "    return True\n"
        "crypto.ed25519_verify = verify\n"
    ),
    # identity.md §3.2 (ID-3.2.10): libsodium plus a prime-order subgroup check on A and R.
    "sig-subgroup": _VERIFIER
    + (
        "_sodium = crypto.ed25519_verify\n"
        "def verify(public_key, message, signature):\n"
        "    for enc in (public_key, signature[:32]):\n"
        "        point = gs.decode_lenient(enc) if len(enc) == 32 else None\n"
        "        if point is not None and gs.mul(gs.L, point) != gs.IDENTITY:\n"
        "            return False\n"
        "    return _sodium(public_key, message, signature)\n"
        "crypto.ed25519_verify = verify\n"
    ),
    # identity.md §3.2 step 5: a signature of the wrong length raises instead of being invalid.
    "sig-length-raises": (
        "from p2pos.proto.identity import crypto\n"
        "_sodium = crypto.ed25519_verify\n"
        "def verify(public_key, message, signature):\n"
        "    if len(signature) != 64:\n"
        "        raise ValueError('a signature is 64 bytes')\n"
        "    return _sodium(public_key, message, signature)\n"
        "crypto.ed25519_verify = verify\n"
    ),
    # identity.md §3.1: no domain length check when signing (an empty domain is signed).
    "sign-any-domain": (
        "from p2pos.proto.identity import identity\n"
        "identity.signed_message = lambda domain, message: (\n"
        "    identity.SIG_PREFIX + bytes([len(domain) & 0xFF]) + domain + message)\n"
    ),
    # identity.md §3.3: no payload length limit when decoding.
    "record-no-limit": "from p2pos.proto.identity import identity\nidentity.MAX_RECORD_PAYLOAD = 1 << 24\n",
    # identity.md §3.3: the expected domain is checked before the version.
    "record-domain-first": (
        "from p2pos.proto.errors import ErrorCode, RemoteProtocolError\n"
        "from p2pos.proto.identity.identity import SignedRecord\n"
        "_decode = SignedRecord.decode_untrusted\n"
        "def decode(data, *, domain=None):\n"
        "    if domain is not None and len(data) > 34 and data[34 : 34 + data[33]] != domain:\n"
        "        raise RemoteProtocolError('signed record: wrong domain', ErrorCode.BAD_IDENTITY)\n"
        "    return _decode(data, domain=domain)\n"
        "SignedRecord.decode_untrusted = staticmethod(decode)\n"
    ),
    # identity.md §4: bytes outside ASCII are dropped instead of refused.
    "keyfile-drops-non-ascii": (
        "from p2pos.proto.identity.identity import Identity\n"
        "_load = Identity.from_key_file\n"
        "Identity.from_key_file = staticmethod(lambda data: _load(bytes(b for b in data if b < 128)))\n"
    ),
    # identity.md §4: a repeated key keeps its first value.
    "keyfile-first-wins": (
        "from p2pos.proto.identity.identity import Identity\n"
        "_load = Identity.from_key_file\n"
        "def load(data):\n"
        "    seen, kept = set(), []\n"
        "    for line in data.split(b'\\n'):\n"
        "        key = line.strip().split(b' ')[0]\n"
        "        if key in (b'seed', b'public') and key in seen:\n"
        "            continue\n"
        "        seen.add(key)\n"
        "        kept.append(line)\n"
        "    return _load(b'\\n'.join(kept))\n"
        "Identity.from_key_file = staticmethod(load)\n"
    ),
    # identity.md §1: the Noise static key is the identity key turned into X25519.
    "static-from-identity": (
        "import nacl.bindings\n"
        "from p2pos.proto.handshake.handshake import LocalKeys\n"
        "_create = LocalKeys.create.__func__\n"
        "def create(cls, identity, static_private):\n"
        "    return _create(cls, identity, nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(identity._secret))\n"
        "LocalKeys.create = classmethod(create)\n"
    ),
    # record.md §7: no counter limit: records are sealed with counters 2^64 - 2^13 - 1 and above.
    "no-counter-limit": "from p2pos.proto.session import record\nrecord.COUNTER_LIMIT = 2**64 - 1\n",
    # record.md §7: the send is refused at the limit, but the session stays open.
    "exhausted-stays-open": (
        "from p2pos.proto.session.session import SecureSession\n"
        "def _seal(self, ptype, plaintext, now):\n"
        "    counter = self._sender.next_counter\n"
        "    self._outbox.append(self._sender.seal(ptype, plaintext, now))\n"
        "    return counter\n"
        "SecureSession._seal = _seal\n"
    ),
}


def broken_impl(tmp_path: Path, bug: str) -> str:
    """An IUT command: this implementation's adapter with ``BUGS[bug]`` applied first."""
    return suite_helpers.broken_impl(tmp_path, bug, BUGS[bug])


@pytest.mark.parametrize(
    ("case_id", "bug", "expected"),
    [
        ("id/sig/9", "sig-lenient-key", "verdict for edge key-small-order-y=p"),
        ("id/sig/10", "sig-openssl", "verdict for edge key-small-order-identity"),
        ("id/sig/11", "sig-openssl", "verdict for edge r-small-order-identity"),
        ("id/sig/12", "sig-length-raises", "verify must answer, not fail"),
        ("id/sig/13", "sig-cofactored", "verdict for edge r-mixed-order"),
        ("id/sig/14", "sig-subgroup", "verdict for edge key-mixed-order-valid"),
        ("id/sig/15", "sig-openssl", "verdict for edge key-small-order-identity"),
        ("id/sig/8", "sign-any-domain", "sign with a 0-byte domain"),
        ("id/record/7", "record-no-limit", "payload length 65537"),
        ("id/record/8", "record-domain-first", "version 2 and a wrong domain"),
        ("id/keyfile/4", "keyfile-drops-non-ascii", "a UTF-8 letter in an unknown key's line"),
        ("id/keyfile/5", "keyfile-first-wins", "seed repeated"),
        ("id/static/1", "static-from-identity", "Ed25519 identity key as X25519"),
        ("rec/counter/1", "no-counter-limit", "a record past the limit"),
        ("rec/counter/1", "exhausted-stays-open", "state after a send with the counters exhausted"),
    ],
)
def test_a_broken_rule_fails_its_case(tmp_path: Path, case_id: str, bug: str, expected: str) -> None:
    result = run_case(tmp_path, case_id, "--impl", broken_impl(tmp_path, bug), "--no-precheck")
    assert result["result"] == "fail", result
    assert expected in result["detail"], result


@pytest.mark.parametrize(
    "case_id",
    [
        "id/sig/8",
        "id/sig/9",
        "id/sig/10",
        "id/sig/11",
        "id/sig/12",
        "id/sig/13",
        "id/sig/14",
        "id/sig/15",
        "id/record/7",
        "id/record/8",
        "id/keyfile/4",
        "id/keyfile/5",
        "id/static/1",
        "rec/counter/1",
    ],
)
def test_the_case_passes_against_this_implementation(tmp_path: Path, case_id: str) -> None:
    result = run_case(tmp_path, case_id)
    assert result["result"] == "pass", result
