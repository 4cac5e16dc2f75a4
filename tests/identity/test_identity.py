"""Identities, domain-separated signatures, signed records and key files (spec/identity.md)."""

from __future__ import annotations

import struct

import pytest
from conftest import deterministic_random
from hypothesis import given
from hypothesis import strategies as st

from p2pos.proto.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from p2pos.proto.identity import crypto
from p2pos.proto.identity.identity import (
    DOMAIN_NOISE_STATIC,
    KEY_FILE_MAGIC,
    MAX_RECORD_PAYLOAD,
    SIG_PREFIX,
    Identity,
    SignedRecord,
    signed_message,
    verify,
)
from p2pos.proto.identity.peer_id import PeerId

RAND = deterministic_random("identity-tests")
ALICE = Identity.from_seed(RAND(32))
BOB = Identity.from_seed(RAND(32))
DOMAIN = b"p2pos/test-record"
RECORD = SignedRecord.create(ALICE, DOMAIN, b"an address record: 192.0.2.1:4000")
ENCODED = RECORD.encode()


# -- identities and signatures ------------------------------------------------------


def test_identity_from_seed_is_deterministic() -> None:
    seed = bytes(range(32))
    a, b = Identity.from_seed(seed), Identity(seed)
    assert a.peer_id == b.peer_id
    assert a.seed == seed
    assert Identity.generate(deterministic_random("x")).peer_id == Identity.generate(deterministic_random("x")).peer_id
    assert Identity.generate(deterministic_random("x")).peer_id != Identity.generate(deterministic_random("y")).peer_id
    assert repr(a) == f"Identity({a.peer_id})"
    # The peer id is the Ed25519 public key of the seed.
    assert a.peer_id.public_key == crypto.ed25519_seed_keypair(seed)[0]


@pytest.mark.parametrize("size", [0, 31, 33])
def test_identity_rejects_bad_seed_length(size: int) -> None:
    with pytest.raises(LocalProtocolError) as info:
        Identity.from_seed(bytes(size))
    assert info.value.code is ErrorCode.INVALID_KEY_FILE


def test_signed_message_layout() -> None:
    assert SIG_PREFIX == b"p2pos-sig-v1\x00"
    assert signed_message(b"dom", b"msg") == b"p2pos-sig-v1\x00\x03dommsg"
    with pytest.raises(LocalProtocolError):
        signed_message(b"", b"msg")
    with pytest.raises(LocalProtocolError):
        signed_message(b"d" * 256, b"msg")
    assert signed_message(b"d" * 255, b"").endswith(b"d" * 255)


def test_domain_separation() -> None:
    message = b"the same bytes"
    signature = ALICE.sign(DOMAIN, message)
    assert len(signature) == 64
    assert verify(ALICE.peer_id, DOMAIN, message, signature)
    # Another domain, another message, another signer: all fail.
    assert not verify(ALICE.peer_id, DOMAIN_NOISE_STATIC, message, signature)
    assert not verify(ALICE.peer_id, DOMAIN + b"x", message, signature)
    assert not verify(ALICE.peer_id, DOMAIN, message + b"!", signature)
    assert not verify(BOB.peer_id, DOMAIN, message, signature)
    # It is not a plain Ed25519 signature of the message either.
    assert not crypto.ed25519_verify(ALICE.peer_id.public_key, message, signature)
    assert crypto.ed25519_verify(ALICE.peer_id.public_key, signed_message(DOMAIN, message), signature)


def test_domain_length_prefix_prevents_shifting() -> None:
    # "ab" + "cmsg" and "abc" + "msg" concatenate alike; the length byte keeps them apart.
    signature = ALICE.sign(b"ab", b"cmsg")
    assert not verify(ALICE.peer_id, b"abc", b"msg", signature)


# -- signed records ----------------------------------------------------------------------


def test_signed_record_round_trip() -> None:
    assert RECORD.is_valid()
    decoded = SignedRecord.decode_untrusted(ENCODED)
    assert decoded == RECORD
    assert SignedRecord.decode_untrusted(ENCODED, domain=DOMAIN) == RECORD
    assert decoded.signer == ALICE.peer_id
    assert decoded.encode() == ENCODED
    # The documented wire layout.
    assert ENCODED[0] == 1
    assert ENCODED[1:33] == ALICE.peer_id.public_key
    assert ENCODED[33] == len(DOMAIN)
    assert ENCODED[34 : 34 + len(DOMAIN)] == DOMAIN
    assert struct.unpack_from(">I", ENCODED, 34 + len(DOMAIN))[0] == len(RECORD.payload)
    assert ENCODED[-64:] == RECORD.signature


def test_signed_record_edge_payloads() -> None:
    for payload in (b"", b"\x00", bytes(MAX_RECORD_PAYLOAD)):
        record = SignedRecord.create(BOB, b"d", payload)
        assert SignedRecord.decode_untrusted(record.encode(), domain=b"d") == record
    with pytest.raises(LocalProtocolError):
        SignedRecord.create(BOB, b"d", bytes(MAX_RECORD_PAYLOAD + 1))


def test_signed_record_every_truncation_is_rejected() -> None:
    for cut in range(len(ENCODED)):
        with pytest.raises(RemoteProtocolError):
            SignedRecord.decode_untrusted(ENCODED[:cut])
    for extra in (b"\x00", b"garbage"):
        with pytest.raises(RemoteProtocolError) as info:
            SignedRecord.decode_untrusted(ENCODED + extra)
        assert info.value.code is ErrorCode.MALFORMED_MESSAGE


def test_signed_record_every_bit_flip_is_rejected() -> None:
    for pos in range(len(ENCODED)):
        for bit in range(8):
            flipped = bytearray(ENCODED)
            flipped[pos] ^= 1 << bit
            with pytest.raises(RemoteProtocolError) as info:
                SignedRecord.decode_untrusted(bytes(flipped))
            assert info.value.code in (
                ErrorCode.MALFORMED_MESSAGE,
                ErrorCode.UNSUPPORTED_VERSION,
                ErrorCode.BAD_IDENTITY,
            )
            assert str(info.value).startswith("signed record: ")


def test_signed_record_wrong_domain() -> None:
    with pytest.raises(RemoteProtocolError, match="wrong domain") as info:
        SignedRecord.decode_untrusted(ENCODED, domain=DOMAIN_NOISE_STATIC)
    assert info.value.code is ErrorCode.BAD_IDENTITY


def test_signed_record_signature_from_other_domain_or_signer() -> None:
    # Well-formed, but the signature is for another domain or by another key.
    moved = SignedRecord(
        signer=ALICE.peer_id, domain=b"other", payload=RECORD.payload, signature=RECORD.signature
    ).encode()
    forged = SignedRecord(signer=BOB.peer_id, domain=DOMAIN, payload=RECORD.payload, signature=RECORD.signature)
    for data in (moved, forged.encode()):
        with pytest.raises(RemoteProtocolError, match="bad signature") as info:
            SignedRecord.decode_untrusted(data)
        assert info.value.code is ErrorCode.BAD_IDENTITY
    assert not forged.is_valid()


def test_signed_record_structural_errors() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        SignedRecord.decode_untrusted(b"\x02" + ENCODED[1:])
    assert info.value.code is ErrorCode.UNSUPPORTED_VERSION
    empty_domain = ENCODED[:33] + b"\x00" + ENCODED[34 + len(DOMAIN) :]
    with pytest.raises(RemoteProtocolError, match="truncated"):
        SignedRecord.decode_untrusted(empty_domain)
    head = ENCODED[: 34 + len(DOMAIN)]
    with pytest.raises(RemoteProtocolError, match="too large"):
        SignedRecord.decode_untrusted(head + struct.pack(">I", MAX_RECORD_PAYLOAD + 1) + bytes(100))
    with pytest.raises(RemoteProtocolError, match="too large"):
        SignedRecord.decode_untrusted(head + b"\xff\xff\xff\xff")


@given(st.binary(max_size=300))
def test_decode_untrusted_raises_only_remote_errors(data: bytes) -> None:
    try:
        record = SignedRecord.decode_untrusted(data)
    except RemoteProtocolError as exc:
        assert isinstance(exc.code, ErrorCode)
        return
    assert record.is_valid()


@given(st.binary(max_size=120), st.integers(min_value=0, max_value=len(ENCODED)))
def test_decode_untrusted_spliced_records(garbage: bytes, at: int) -> None:
    # Valid prefixes with arbitrary tails reach the deeper parsing paths.
    data = ENCODED[:at] + garbage
    try:
        record = SignedRecord.decode_untrusted(data)
    except RemoteProtocolError:
        return
    assert record == RECORD


# -- key files ---------------------------------------------------------------------------


def test_key_file_round_trip() -> None:
    data = ALICE.to_key_file()
    assert data.startswith(KEY_FILE_MAGIC)
    assert data == KEY_FILE_MAGIC + f"seed {ALICE.seed.hex()}\npublic {ALICE.peer_id.public_key.hex()}\n".encode()
    loaded = Identity.from_key_file(data)
    assert loaded.peer_id == ALICE.peer_id and loaded.seed == ALICE.seed
    # The loaded identity signs exactly as the original (Ed25519 is deterministic).
    assert loaded.sign(DOMAIN, b"m") == ALICE.sign(DOMAIN, b"m")
    # Tolerated: CRLF line ends, blank lines, upper-case hex, lines in another order.
    crlf = KEY_FILE_MAGIC + (
        f"\r\npublic {ALICE.peer_id.public_key.hex().upper()}\r\n\r\nseed {ALICE.seed.hex()}\r\n".encode()
    )
    assert Identity.from_key_file(crlf).peer_id == ALICE.peer_id


@pytest.mark.parametrize(
    "data",
    [
        KEY_FILE_MAGIC + f"seed {ALICE.seed.hex().upper()}\npublic {ALICE.peer_id.public_key.hex().upper()}\n".encode(),
        KEY_FILE_MAGIC
        + f"seed {ALICE.seed.hex()[:32].upper()}{ALICE.seed.hex()[32:]}\n".encode()
        + f"public {ALICE.peer_id.public_key.hex()}\n".encode(),
        b"\n \t\r\n  p2pos-identity-v1 \t\r\n"
        + f"\t seed \t {ALICE.seed.hex()}  \n  public\t{ALICE.peer_id.public_key.hex()}\t\n \n\t".encode(),
        b"p2pos-identity-v1\r" + f"seed {ALICE.seed.hex()}\rpublic {ALICE.peer_id.public_key.hex()}".encode(),
    ],
    ids=["upper-case-hex", "mixed-case-hex", "white-space-around-lines-and-file", "cr-ends-no-final-newline"],
)
def test_key_file_reads_either_hex_case_and_ignores_surrounding_white_space(data: bytes) -> None:
    """spec/identity.md §4: written in lower case with one trailing newline, read more leniently."""
    assert Identity.from_key_file(data).seed == ALICE.seed
    assert ALICE.to_key_file().decode("ascii") == ALICE.to_key_file().decode("ascii").lower()
    assert ALICE.to_key_file().endswith(b"\n") and not ALICE.to_key_file().endswith(b"\n\n")


def _key_file_error(data: bytes) -> str:
    with pytest.raises(LocalProtocolError) as info:
        Identity.from_key_file(data)
    assert info.value.code is ErrorCode.INVALID_KEY_FILE
    assert not isinstance(info.value, RemoteProtocolError)
    message = str(info.value)
    assert message.startswith("not a p2pos identity file: ")
    return message


SEED_HEX = ALICE.seed.hex()
PUB_HEX = ALICE.peer_id.public_key.hex()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "does not start with 'p2pos-identity-v1'"),
        (bytes(range(256)), "does not start with 'p2pos-identity-v1'"),
        (b"\x89PNG\r\n\x1a\n" + bytes(64), "does not start with"),
        (b"p2pos-identity-v2\nseed 00\n", "does not start with"),
        (b"P2POS-IDENTITY-V1\n" + f"seed {SEED_HEX}\npublic {PUB_HEX}\n".encode(), "does not start with"),
        (KEY_FILE_MAGIC + "seed é\n".encode(), "not ASCII text"),
        (KEY_FILE_MAGIC + f"seed {SEED_HEX[:-1]}z\npublic {PUB_HEX}\n".encode(), "not valid hex"),
        (KEY_FILE_MAGIC + f"seed {SEED_HEX}\npublic {PUB_HEX[:-1]}\n".encode(), "not valid hex"),
        (KEY_FILE_MAGIC + f"seed {SEED_HEX}\npublic {BOB.peer_id.public_key.hex()}\n".encode(), "does not match"),
        (KEY_FILE_MAGIC + f"seed {SEED_HEX}\npublic {PUB_HEX[:-2]}\n".encode(), "does not match"),
        (KEY_FILE_MAGIC + f"seed {SEED_HEX[:-2]}\npublic {PUB_HEX}\n".encode(), "seed is not 32 bytes"),
        (KEY_FILE_MAGIC + f"seed {SEED_HEX}00\npublic {PUB_HEX}\n".encode(), "seed is not 32 bytes"),
        (KEY_FILE_MAGIC + f"public {PUB_HEX}\n".encode(), "'seed' line is missing"),
        (KEY_FILE_MAGIC + f"seed {SEED_HEX}\n".encode(), "'public' line is missing"),
        (KEY_FILE_MAGIC, "'seed' line is missing"),
        (KEY_FILE_MAGIC + f"seed={SEED_HEX}\npublic={PUB_HEX}\n".encode(), "line is missing"),
        (KEY_FILE_MAGIC + f"seed {SEED_HEX[:32]} {SEED_HEX[32:]}\npublic {PUB_HEX}\n".encode(), "not valid hex"),
        (KEY_FILE_MAGIC + f"seed {SEED_HEX}\npublic 0x{PUB_HEX}\n".encode(), "not valid hex"),
        (KEY_FILE_MAGIC + f"seed {SEED_HEX}\vpublic {PUB_HEX}\n".encode(), "'public' line is missing"),
        (b"\n\nseed 00\np2pos-identity-v1\n", "does not start with"),
    ],
    ids=[
        "empty",
        "garbage",
        "png",
        "wrong-magic",
        "magic-case",
        "non-ascii",
        "bad-hex-seed",
        "odd-hex-public",
        "foreign-public",
        "short-public",
        "short-seed",
        "long-seed",
        "no-seed",
        "no-public",
        "magic-only",
        "wrong-syntax",
        "space-inside-hex",
        "hex-prefix",
        "vertical-tab-is-no-line-end",
        "magic-not-first",
    ],
)
def test_corrupt_key_files(data: bytes, expected: str) -> None:
    assert expected in _key_file_error(data)


@given(st.binary(max_size=200))
def test_key_file_arbitrary_bytes(data: bytes) -> None:
    try:
        Identity.from_key_file(data)
    except LocalProtocolError as exc:
        assert exc.code is ErrorCode.INVALID_KEY_FILE


@given(st.text(max_size=200))
def test_key_file_arbitrary_text_after_magic(text: str) -> None:
    try:
        identity = Identity.from_key_file(KEY_FILE_MAGIC + text.encode())
    except LocalProtocolError as exc:
        assert exc.code is ErrorCode.INVALID_KEY_FILE
        return
    assert isinstance(identity.peer_id, PeerId)
