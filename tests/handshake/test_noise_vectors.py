"""The cacophony Noise vectors for XX and IK, byte for byte (spec/handshake.md §3).

Each vector pins the prologue, static and ephemeral keys; we replay every
handshake message on both sides, compare ciphertexts and the handshake hash,
then check the transport messages with ``split()`` keys through both AEADs the
core has: the Noise ``CipherState`` (libsodium) and the record layer's
``RecordAead`` (OpenSSL) with the Noise nonce format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import load_vector_json, vectors_dir
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pos.proto.errors import ErrorCode, RemoteProtocolError
from p2pos.proto.handshake.noise import CipherState, HandshakeState, Pattern, protocol_name
from p2pos.proto.identity import crypto

PATTERNS = {protocol_name(p).decode(): p for p in (Pattern.XX, Pattern.IK)}
HANDSHAKE_LEN = {Pattern.XX: 3, Pattern.IK: 2}


def _vectors() -> list[Any]:
    data = load_vector_json("noise/cacophony.json")
    return [v for v in data["vectors"] if v.get("protocol_name") in PATTERNS]


VECTORS = _vectors()


def _id(vector: Any) -> str:
    name: str = vector["protocol_name"]
    return f"{name}-{VECTORS.index(vector)}"


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def _states(vector: Any) -> tuple[Pattern, HandshakeState, HandshakeState]:
    pattern = PATTERNS[vector["protocol_name"]]
    init_rs = vector.get("init_remote_static")
    resp_rs = vector.get("resp_remote_static")
    initiator = HandshakeState(
        pattern=pattern,
        initiator=True,
        prologue=h(vector["init_prologue"]),
        s=h(vector["init_static"]),
        e=h(vector["init_ephemeral"]),
        rs=h(init_rs) if init_rs else None,
    )
    responder = HandshakeState(
        pattern=pattern,
        initiator=False,
        prologue=h(vector["resp_prologue"]),
        s=h(vector["resp_static"]),
        e=h(vector["resp_ephemeral"]),
        rs=h(resp_rs) if resp_rs else None,
    )
    return pattern, initiator, responder


def test_vectors_found() -> None:
    # At least one vector per pattern: a renamed file or filter must not pass vacuously.
    assert len(VECTORS) > 0
    assert {PATTERNS[v["protocol_name"]] for v in VECTORS} == {Pattern.XX, Pattern.IK}


def test_missing_vectors_folder_fails_clearly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import conftest

    monkeypatch.setattr(conftest, "VECTORS_DIR", tmp_path / "nowhere")
    with pytest.raises(pytest.fail.Exception, match=r"test vectors not found at .*nowhere"):
        vectors_dir()


@pytest.mark.parametrize("vector", VECTORS, ids=_id)
def test_handshake_and_transport_match_vector(vector: Any) -> None:
    pattern, initiator, responder = _states(vector)
    messages = vector["messages"]
    n_handshake = HANDSHAKE_LEN[pattern]
    assert len(messages) > n_handshake

    for i, msg in enumerate(messages[:n_handshake]):
        writer, reader = (initiator, responder) if i % 2 == 0 else (responder, initiator)
        ciphertext = writer.write_message(h(msg["payload"]))
        assert ciphertext == h(msg["ciphertext"]), f"handshake message {i}"
        assert reader.read_message(ciphertext) == h(msg["payload"])
    assert initiator.is_finished() and responder.is_finished()
    assert initiator.handshake_hash == h(vector["handshake_hash"])
    assert responder.handshake_hash == h(vector["handshake_hash"])

    k_i2r, k_r2i = initiator.split()
    assert responder.split() == (k_i2r, k_r2i)
    assert k_i2r != k_r2i

    # Transport messages continue the handshake's alternation: the responder sends
    # first after XX (which ends with an initiator message), the initiator after IK.
    first_sender_is_initiator = n_handshake % 2 == 0
    send = {True: CipherState(k_i2r), False: CipherState(k_r2i)}
    recv = {True: CipherState(k_i2r), False: CipherState(k_r2i)}
    record = {True: crypto.RecordAead(k_i2r), False: crypto.RecordAead(k_r2i)}
    counters = {True: 0, False: 0}
    for j, msg in enumerate(messages[n_handshake:]):
        from_initiator = (j % 2 == 0) == first_sender_is_initiator
        payload, expected = h(msg["payload"]), h(msg["ciphertext"])
        assert send[from_initiator].encrypt_with_ad(b"", payload) == expected, f"transport message {j}"
        assert recv[from_initiator].decrypt_with_ad(b"", expected) == payload
        # The record layer's AEAD computes the same bytes with the Noise nonce format.
        n = counters[from_initiator]
        counters[from_initiator] = n + 1
        nonce = crypto.nonce_bytes(n)
        assert record[from_initiator].encrypt(nonce, payload, b"") == expected
        assert record[from_initiator].decrypt(nonce, expected, b"") == payload
        assert crypto.sodium_encrypt(k_i2r if from_initiator else k_r2i, n, b"", payload) == expected
    assert counters[True] > 0 and counters[False] > 0


def _encrypted(pattern: Pattern, index: int) -> bool:
    """Whether handshake message ``index`` is authenticated on its own (XX's first is not)."""
    return not (pattern is Pattern.XX and index == 0)


@pytest.mark.parametrize("vector", VECTORS, ids=_id)
def test_tampered_handshake_message_is_rejected(vector: Any) -> None:
    # Flip one bit of the last byte (the tag, or the plaintext payload) of each message in turn.
    pattern = PATTERNS[vector["protocol_name"]]
    messages = vector["messages"]
    for bad_index in range(HANDSHAKE_LEN[pattern]):
        _, initiator, responder = _states(vector)
        for i, msg in enumerate(messages[: bad_index + 1]):
            writer, reader = (initiator, responder) if i % 2 == 0 else (responder, initiator)
            ciphertext = writer.write_message(h(msg["payload"]))
            if i < bad_index:
                reader.read_message(ciphertext)
                continue
            tampered = ciphertext[:-1] + bytes([ciphertext[-1] ^ 1])
            before = reader.handshake_hash
            copy = reader.copy()
            if _encrypted(pattern, i):
                with pytest.raises(RemoteProtocolError):
                    copy.read_message(tampered)
            else:
                # Unauthenticated, but hashed: the peer's next message no longer decrypts.
                copy.read_message(tampered)
                answer = copy.write_message(h(messages[i + 1]["payload"]))
                with pytest.raises(RemoteProtocolError):
                    writer.copy().read_message(answer)
            # Working on a copy leaves the real state usable: the genuine message still reads.
            assert reader.handshake_hash == before
            assert reader.read_message(ciphertext) == h(msg["payload"])


@pytest.mark.parametrize("vector", VECTORS, ids=_id)
def test_truncated_handshake_messages_raise_remote_errors(vector: Any) -> None:
    pattern = PATTERNS[vector["protocol_name"]]
    _, initiator, responder = _states(vector)
    payload = h(vector["messages"][0]["payload"])
    first = initiator.write_message(payload)
    for cut in range(len(first)):
        if cut >= crypto.DHLEN and not _encrypted(pattern, 0):
            # XX message 1 is e || plaintext payload: a cut payload reads as a shorter payload.
            assert responder.copy().read_message(first[:cut]) == payload[: cut - crypto.DHLEN]
            continue
        with pytest.raises(RemoteProtocolError):
            responder.copy().read_message(first[:cut])
    assert responder.read_message(first) == payload


def test_nonce_format_is_noise_chachapoly() -> None:
    # Noise §12.3: 32 bits of zeros followed by the little-endian 64-bit counter.
    assert crypto.nonce_bytes(0) == bytes(12)
    assert crypto.nonce_bytes(1) == bytes(4) + b"\x01" + bytes(7)
    assert crypto.nonce_bytes(0x0102030405060708) == bytes(4) + bytes.fromhex("0807060504030201")
    assert crypto.nonce_bytes(crypto.MAX_NONCE) == bytes(4) + b"\xff" * 8


# -- hostile handshake input ------------------------------------------------------------

#: Low-order X25519 points (Wycheproof x25519 "ZeroSharedSecret" public keys, canonical ones).
LOW_ORDER_POINTS = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
]


def _reader_at(pattern: Pattern, index: int) -> HandshakeState:
    """A state about to read handshake message ``index`` of ``pattern`` (deterministic keys)."""
    keys = [bytes([i + 1]) * 32 for i in range(4)]
    initiator = HandshakeState(
        pattern=pattern,
        initiator=True,
        prologue=b"fuzz",
        s=keys[0],
        e=keys[1],
        rs=crypto.x25519_public(keys[2]) if pattern is Pattern.IK else None,
    )
    responder = HandshakeState(pattern=pattern, initiator=False, prologue=b"fuzz", s=keys[2], e=keys[3])
    for i in range(index):
        writer, reader = (initiator, responder) if i % 2 == 0 else (responder, initiator)
        reader.read_message(writer.write_message(b""))
    return responder if index % 2 == 0 else initiator


READ_POINTS = [(Pattern.XX, 0), (Pattern.XX, 1), (Pattern.XX, 2), (Pattern.IK, 0), (Pattern.IK, 1)]


# XX message 3 carries no ephemeral: it is left to the fuzz test below.
EPHEMERAL_READ_POINTS = [p for p in READ_POINTS if p != (Pattern.XX, 2)]


@pytest.mark.parametrize(("pattern", "index"), EPHEMERAL_READ_POINTS, ids=lambda x: str(getattr(x, "value", x)))
def test_low_order_ephemeral_is_weak_key(pattern: Pattern, index: int) -> None:
    for point in LOW_ORDER_POINTS:
        reader = _reader_at(pattern, index)
        message = point + bytes(200)
        if pattern is Pattern.XX and index == 0:
            # XX message 1 has no DH yet: the point is only hashed, the next write refuses it.
            reader.read_message(message)
            with pytest.raises(RemoteProtocolError) as info:
                reader.write_message(b"")
        else:
            with pytest.raises(RemoteProtocolError) as info:
                reader.read_message(message)
        assert info.value.code is ErrorCode.WEAK_KEY


@settings(max_examples=60)
@given(data=st.binary(max_size=200), point=st.sampled_from(READ_POINTS))
def test_read_message_raises_only_remote_errors(data: bytes, point: tuple[Pattern, int]) -> None:
    reader = _reader_at(*point)
    try:
        reader.read_message(data)
    except RemoteProtocolError:
        return
    # Only XX message 1 (unauthenticated) can be accepted from random bytes.
    assert point == (Pattern.XX, 0)


@given(key=st.binary(min_size=32, max_size=32), ciphertext=st.binary(max_size=64))
def test_transport_decrypt_of_garbage(key: bytes, ciphertext: bytes) -> None:
    cipher = CipherState(key)
    with pytest.raises(RemoteProtocolError) as info:
        cipher.decrypt_with_ad(b"", ciphertext)
    assert info.value.code is ErrorCode.DECRYPT_FAILED
    assert cipher.n == 0  # a failed decryption does not consume the nonce
    assert crypto.RecordAead(key).decrypt(crypto.nonce_bytes(0), ciphertext, b"") is None
