"""Textual peer ids (spec/identity.md §2): round trips, typo detection, helpful errors."""

from __future__ import annotations

import base64
import hashlib

import pytest
from conftest import deterministic_random
from hypothesis import given
from hypothesis import strategies as st

from p2pos.proto.errors import ErrorCode, LocalProtocolError
from p2pos.proto.identity.identity import Identity
from p2pos.proto.identity.peer_id import (
    TEXT_LEN,
    InvalidPeerId,
    PeerId,
    b32decode_canonical,
    b32encode,
)

ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


def spec_text(version: int, key: bytes) -> str:
    """The textual form computed from the spec, independently of peer_id.py's helpers."""
    body = bytes([version]) + key
    check = hashlib.blake2b(body, digest_size=4, person=b"p2pos-peer-id").digest()
    return base64.b32encode(body + check).decode().lower().rstrip("=")


rand = deterministic_random("peer-id-keys")
KEYS = [rand(32) for _ in range(64)] + [bytes(32), b"\xff" * 32]
VALID = str(PeerId(KEYS[0]))


def parse_error(text: str) -> str:
    with pytest.raises(InvalidPeerId) as info:
        PeerId.parse(text)
    assert info.value.code is ErrorCode.INVALID_PEER_ID
    assert isinstance(info.value, LocalProtocolError)
    message = str(info.value)
    assert message
    return message


def test_round_trip_many_keys() -> None:
    for key in KEYS:
        peer = PeerId(key)
        text = str(peer)
        assert len(text) == TEXT_LEN == 60
        assert text == spec_text(1, key)
        assert set(text) <= set(ALPHABET)
        parsed = PeerId.parse(text)
        assert parsed == peer and hash(parsed) == hash(peer) and parsed.public_key == key
        assert repr(peer) == f"PeerId({text!r})"
        assert peer.short() == text[:12]
    assert len({str(PeerId(k)) for k in KEYS}) == len(KEYS)


def test_identity_peer_id_round_trips() -> None:
    rng = deterministic_random("identities")
    for _ in range(8):
        identity = Identity.generate(rng)
        assert PeerId.parse(str(identity.peer_id)) == identity.peer_id


def test_peer_id_equality_is_by_key() -> None:
    assert PeerId(KEYS[0]) == PeerId(bytes(KEYS[0]))
    assert PeerId(KEYS[0]) != PeerId(KEYS[1])
    assert PeerId(KEYS[0]) != str(PeerId(KEYS[0]))


def _substitutions(ch: str) -> list[str]:
    # Two different characters: the neighbour in the alphabet and the one half the alphabet away.
    i = ALPHABET.index(ch)
    return [ALPHABET[(i + 1) % 32], ALPHABET[(i + 16) % 32]]


@pytest.mark.parametrize("key_index", [0, 1, 64, 65])
def test_every_single_substitution_is_rejected(key_index: int) -> None:
    text = str(PeerId(KEYS[key_index]))
    for pos, ch in enumerate(text):
        for sub in _substitutions(ch):
            typo = text[:pos] + sub + text[pos + 1 :]
            message = parse_error(typo)
            if pos == 0:
                # The first character holds only version bits.
                assert "version" in message, (pos, message)
            elif pos == TEXT_LEN - 1 and ALPHABET.index(sub) & 0x0F:
                # The last character's low four bits are padding.
                assert "non-canonical" in message, (pos, message)
            else:
                assert "version" in message or "checksum" in message, (pos, message)
            if 2 <= pos < TEXT_LEN - 1:
                assert "checksum does not match: probably a typo" in message


def test_human_formatting_is_accepted() -> None:
    peer = PeerId(KEYS[3])
    text = str(peer)
    grouped = "-".join(text[i : i + 4] for i in range(0, len(text), 4))
    spaced = " ".join(text[i : i + 5] for i in range(0, len(text), 5))
    for variant in (
        text.upper(),
        grouped,
        grouped.upper(),
        spaced,
        f"  {text}\n",
        "\t".join(text[i : i + 10] for i in range(0, len(text), 10)),
        text[:30].upper() + " - " + text[30:],
    ):
        assert PeerId.parse(variant) == peer, variant


def test_wrong_length() -> None:
    assert "60 characters, this one has 59" in parse_error(VALID[:-1])
    assert "60 characters, this one has 61" in parse_error(VALID + "a")
    assert "this one has 0" in parse_error("")
    assert "this one has 0" in parse_error(" - ")


@pytest.mark.parametrize("bad", ["0", "1", "8", "9", "!", "=", "_", "é", "\u212a"])
def test_bad_alphabet(bad: str) -> None:
    text = VALID[:10] + bad + VALID[11:]
    message = parse_error(text)
    assert "not in the base32 alphabet" in message
    assert repr(bad) in message


def test_non_canonical_trailing_bits() -> None:
    last = ALPHABET.index(VALID[-1])
    assert last & 0x0F == 0  # canonical: 296 bits of data, 4 zero bits of padding
    for low in (1, 2, 4, 8, 15):
        text = VALID[:-1] + ALPHABET[last | low]
        assert "non-canonical trailing bits" in parse_error(text)


@pytest.mark.parametrize("version", [0, 2, 0x7F, 0xFF])
def test_unknown_version(version: int) -> None:
    # A well-formed id of another version, with a correct checksum: refused for its version.
    text = spec_text(version, KEYS[5])
    assert len(text) == TEXT_LEN
    assert f"unknown peer id version {version}" in parse_error(text)


def test_not_a_string() -> None:
    assert "a peer id is a string" in parse_error(VALID.encode())  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_wrong_key_size(size: int) -> None:
    with pytest.raises(InvalidPeerId, match=f"32 bytes, got {size}"):
        PeerId(bytes(size))


def test_b32_helpers() -> None:
    with pytest.raises(ValueError, match="expected 8 characters"):
        b32decode_canonical("aaaa", 5)
    assert b32decode_canonical(b32encode(b"hello"), 5) == b"hello"
    assert b32encode(b"") == ""


@given(st.binary(min_size=32, max_size=32))
def test_any_key_round_trips(key: bytes) -> None:
    text = str(PeerId(key))
    assert text == spec_text(1, key)
    assert PeerId.parse(text).public_key == key
    assert PeerId.parse(text.upper()).public_key == key


@given(st.binary(max_size=64))
def test_b32encode_is_rfc4648(data: bytes) -> None:
    text = b32encode(data)
    assert text == base64.b32encode(data).decode().lower().rstrip("=")
    assert b32decode_canonical(text, len(data)) == data


@given(st.text(max_size=80))
def test_any_text_is_a_peer_id_or_invalid(text: str) -> None:
    try:
        peer = PeerId.parse(text)
    except InvalidPeerId as exc:
        assert str(exc)
        return
    assert isinstance(peer, PeerId)


@given(st.text(alphabet=ALPHABET + ALPHABET.upper() + " -", min_size=55, max_size=70))
def test_near_miss_text_is_a_peer_id_or_invalid(text: str) -> None:
    # Mostly the right alphabet and length, so the parser gets past its first checks.
    try:
        peer = PeerId.parse(text)
    except InvalidPeerId as exc:
        assert str(exc)
        return
    assert str(peer) == "".join(c for c in text.lower() if c not in " -")
