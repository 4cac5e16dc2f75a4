"""Wycheproof vectors for the primitives the core uses (p2pos.proto.identity.crypto).

What p2pos does with Wycheproof's "acceptable" cases (asserted below):

* X25519: every acceptable case whose shared secret is all zero (low-order
  public keys) raises ``RemoteProtocolError(WEAK_KEY)``, as the valid-looking
  zero result would let a peer force a known key.  Every other acceptable case
  (public keys on the twist, non-canonical encodings with the top bit set or
  u >= p) is accepted and gives exactly Wycheproof's shared secret: libsodium
  masks the top bit and reduces mod p, as RFC 7748 says.
* Ed25519: this file has no acceptable cases; the test asserts that, so a
  future file that adds some must be looked at.  Valid verifies, invalid does
  not (malleable S >= L, bad encodings, truncated or padded signatures).
* ChaCha20-Poly1305: no acceptable cases either; only 96-bit nonces and 256-bit
  keys are p2pos's, other nonce sizes are rejected by the AEAD itself.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import nacl.bindings
import pytest
from conftest import load_vector_json
from hypothesis import given
from hypothesis import strategies as st

from p2pos.proto.errors import ErrorCode, RemoteProtocolError
from p2pos.proto.identity import crypto


def _cases(name: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    data = load_vector_json(f"wycheproof/{name}")
    return [(group, test) for group in data["testGroups"] for test in group["tests"]]


X25519 = _cases("x25519_test.json")
ED25519 = _cases("ed25519_test.json")
CHACHA = _cases("chacha20_poly1305_test.json")


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def _ids(cases: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[str]:
    return [f"tc{test['tcId']}-{test['result']}" for _, test in cases]


def test_vector_files_are_complete() -> None:
    assert len(X25519) == 518
    assert len(ED25519) == 151
    assert len(CHACHA) == 325
    results = Counter(test["result"] for _, test in X25519)
    assert results["valid"] > 0 and results["acceptable"] > 0


# -- X25519 ----------------------------------------------------------------------


@pytest.mark.parametrize(("group", "test"), X25519, ids=_ids(X25519))
def test_x25519(group: dict[str, Any], test: dict[str, Any]) -> None:
    assert group["curve"] == "curve25519"
    private, public, shared = h(test["private"]), h(test["public"]), h(test["shared"])
    assert test["result"] in ("valid", "acceptable")  # this file has no invalid X25519 case
    if shared == bytes(32):
        # Low-order points: refused, whatever Wycheproof calls them.
        assert "ZeroSharedSecret" in test["flags"]
        with pytest.raises(RemoteProtocolError) as info:
            crypto.x25519(private, public)
        assert info.value.code is ErrorCode.WEAK_KEY
    else:
        assert crypto.x25519(private, public) == shared


def test_x25519_acceptable_cases_split_as_documented() -> None:
    outcomes: Counter[str] = Counter()
    for _, test in X25519:
        if test["result"] != "acceptable":
            continue
        try:
            crypto.x25519(h(test["private"]), h(test["public"]))
            outcomes["accepted"] += 1
        except RemoteProtocolError as exc:
            assert exc.code is ErrorCode.WEAK_KEY
            assert h(test["shared"]) == bytes(32)
            outcomes["weak_key"] += 1
    assert outcomes == {"accepted": 223, "weak_key": 31}


def test_x25519_public_matches_wycheproof() -> None:
    # x25519_public(k) is the DH with the base point u = 9.
    base = (9).to_bytes(32, "little")
    for _, test in X25519[:40]:
        private = h(test["private"])
        assert crypto.x25519_public(private) == crypto.x25519(private, base)


# -- Ed25519 ---------------------------------------------------------------------


@pytest.mark.parametrize(("group", "test"), ED25519, ids=_ids(ED25519))
def test_ed25519_verify(group: dict[str, Any], test: dict[str, Any]) -> None:
    public = h(group["publicKey"]["pk"])
    message, signature = h(test["msg"]), h(test["sig"])
    assert test["result"] in ("valid", "invalid"), "acceptable Ed25519 cases need a decision (see module doc)"
    assert crypto.ed25519_verify(public, message, signature) is (test["result"] == "valid")


def test_ed25519_sign_matches_rfc8032() -> None:
    # The Wycheproof file carries no private keys; RFC 8032 §7.1 TEST 1 checks signing.
    seed = h("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    public, secret = crypto.ed25519_seed_keypair(seed)
    assert public == h("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    signature = crypto.ed25519_sign(secret, b"")
    assert signature == h(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    assert crypto.ed25519_verify(public, b"", signature)


def test_ed25519_verify_is_false_for_malformed_lengths() -> None:
    group, test = next((g, t) for g, t in ED25519 if t["result"] == "valid")
    public, message, signature = h(group["publicKey"]["pk"]), h(test["msg"]), h(test["sig"])
    assert crypto.ed25519_verify(public, message, signature)
    assert not crypto.ed25519_verify(public[:31], message, signature)
    assert not crypto.ed25519_verify(public + b"\x00", message, signature)
    assert not crypto.ed25519_verify(public, message, signature[:63])
    assert not crypto.ed25519_verify(public, message, signature + b"\x00")
    assert not crypto.ed25519_verify(b"", message, b"")


# -- ChaCha20-Poly1305 -------------------------------------------------------------

CHACHA_96 = [(g, t) for g, t in CHACHA if g["ivSize"] == 96 and g["keySize"] == 256]
CHACHA_OTHER_NONCE = [(g, t) for g, t in CHACHA if g["ivSize"] != 96]


def test_chacha_case_split() -> None:
    assert len(CHACHA_96) == 316
    assert len(CHACHA_OTHER_NONCE) == 9
    assert {t["result"] for _, t in CHACHA} == {"valid", "invalid"}
    # Some 96-bit cases have a nonce of the Noise form (4 zero bytes then a counter).
    assert sum(1 for _, t in CHACHA_96 if t["iv"].startswith("00000000")) >= 5


def _counter(nonce: bytes) -> int | None:
    """The Noise counter n with nonce_bytes(n) == nonce, or None if the nonce is not of that form."""
    if nonce[:4] != bytes(4):
        return None
    return int.from_bytes(nonce[4:], "little")


@pytest.mark.parametrize(("group", "test"), CHACHA_96, ids=_ids(CHACHA_96))
def test_chacha20_poly1305(group: dict[str, Any], test: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    key, nonce, aad, msg = h(test["key"]), h(test["iv"]), h(test["aad"]), h(test["msg"])
    sealed = h(test["ct"]) + h(test["tag"])
    valid = test["result"] == "valid"

    # The record layer's AEAD takes arbitrary nonces directly.
    aead = crypto.RecordAead(key)
    assert aead.decrypt(nonce, sealed, aad) == (msg if valid else None)
    if valid:
        assert aead.encrypt(nonce, msg, aad) == sealed

    # libsodium, called exactly as crypto.sodium_encrypt/decrypt call it.
    if valid:
        assert nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(msg, aad, nonce, key) == sealed

    # The Noise-form helpers: directly when the nonce has the Noise form...
    n = _counter(nonce)
    if n is not None:
        assert crypto.nonce_bytes(n) == nonce
        if valid:
            assert crypto.sodium_encrypt(key, n, aad, msg) == sealed
            assert crypto.sodium_decrypt(key, n, aad, sealed) == msg
        else:
            with pytest.raises(RemoteProtocolError) as info:
                crypto.sodium_decrypt(key, n, aad, sealed)
            assert info.value.code is ErrorCode.DECRYPT_FAILED

    # ...and for every other nonce, through the same helper code with the nonce mapping swapped.
    monkeypatch.setattr(crypto, "nonce_bytes", lambda _n: nonce)
    if valid:
        assert crypto.sodium_encrypt(key, 0, aad, msg) == sealed
        assert crypto.sodium_decrypt(key, 0, aad, sealed) == msg
    else:
        with pytest.raises(RemoteProtocolError) as info:
            crypto.sodium_decrypt(key, 0, aad, sealed)
        assert info.value.code is ErrorCode.DECRYPT_FAILED


@pytest.mark.parametrize(("group", "test"), CHACHA_OTHER_NONCE, ids=_ids(CHACHA_OTHER_NONCE))
def test_chacha20_poly1305_other_nonce_sizes_are_refused(group: dict[str, Any], test: dict[str, Any]) -> None:
    # p2pos never builds such nonces; the AEAD refuses them rather than misusing them.
    assert test["result"] == "invalid"
    aead = crypto.RecordAead(h(test["key"]))
    with pytest.raises(ValueError):
        aead.decrypt(h(test["iv"]), h(test["ct"]) + h(test["tag"]), h(test["aad"]))


@given(
    key=st.binary(min_size=32, max_size=32),
    n=st.integers(min_value=0, max_value=crypto.MAX_NONCE),
    ad=st.binary(max_size=64),
    plaintext=st.binary(max_size=300),
)
def test_sodium_and_record_aead_compute_the_same_function(key: bytes, n: int, ad: bytes, plaintext: bytes) -> None:
    sealed = crypto.sodium_encrypt(key, n, ad, plaintext)
    aead = crypto.RecordAead(key)
    assert aead.encrypt(crypto.nonce_bytes(n), plaintext, ad) == sealed
    assert aead.decrypt(crypto.nonce_bytes(n), sealed, ad) == plaintext
    assert crypto.sodium_decrypt(key, n, ad, sealed) == plaintext
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 0x80])
    assert aead.decrypt(crypto.nonce_bytes(n), tampered, ad) is None
    with pytest.raises(RemoteProtocolError):
        crypto.sodium_decrypt(key, n, ad, tampered)


def test_rekey_is_noise_rekey() -> None:
    # REKEY(k) = first 32 bytes of ENCRYPT(k, 2^64-1, "", zeros(32)) (Noise §4.2), via either AEAD.
    key = bytes(range(32))
    expected = crypto.RecordAead(key).encrypt(b"\x00" * 4 + b"\xff" * 8, bytes(32), b"")[:32]
    assert crypto.rekey(key) == expected
    assert crypto.rekey(expected) != expected


@pytest.mark.parametrize("size", [0, 1, 15])
def test_ciphertext_shorter_than_tag(size: int) -> None:
    # Both AEAD helpers refuse it as an authentication failure, never with another exception.
    key = bytes(range(32))
    with pytest.raises(RemoteProtocolError) as info:
        crypto.sodium_decrypt(key, 0, b"", bytes(size))
    assert info.value.code is ErrorCode.DECRYPT_FAILED
    assert crypto.RecordAead(key).decrypt(crypto.nonce_bytes(0), bytes(size), b"") is None
