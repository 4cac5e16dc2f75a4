"""Textual peer ids: an Ed25519 public key with a version byte and a checksum (spec/identity.md §2).

    text = base32(0x01 || public_key[32] || checksum[4]), lower case, no padding
    checksum = BLAKE2b-32(person="p2pos-peer-id", 0x01 || public_key)

60 characters.  Parsing is case-insensitive, ignores spaces and dashes that a
person may add, insists on canonical trailing bits, and reports a checksum
mismatch as a probable typo.
"""

from __future__ import annotations

import hashlib

from ..errors import ErrorCode, LocalProtocolError

_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_DECODE = {c: i for i, c in enumerate(_ALPHABET)}
# ASCII only: str.lower() would turn the Kelvin sign into "k" and accept look-alikes.
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
VERSION_ED25519 = 0x01
KEY_LEN = 32
CHECKSUM_LEN = 4
_RAW_LEN = 1 + KEY_LEN + CHECKSUM_LEN
TEXT_LEN = (_RAW_LEN * 8 + 4) // 5


class InvalidPeerId(LocalProtocolError):
    """A peer id string that cannot be parsed; the message says what is wrong."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ErrorCode.INVALID_PEER_ID)


def b32encode(data: bytes) -> str:
    """RFC 4648 base32, lower case, without padding."""
    bits = int.from_bytes(data, "big")
    nbits = len(data) * 8
    pad = (-nbits) % 5
    bits <<= pad
    count = (nbits + pad) // 5
    return "".join(_ALPHABET[(bits >> (5 * (count - 1 - i))) & 31] for i in range(count))


def b32decode_canonical(text: str, nbytes: int) -> bytes:
    """Inverse of b32encode for exactly ``nbytes`` bytes; raises ValueError if not canonical."""
    if len(text) != (nbytes * 8 + 4) // 5:
        raise ValueError(f"expected {(nbytes * 8 + 4) // 5} characters, got {len(text)}")
    value = 0
    for ch in text:
        digit = _DECODE.get(ch)
        if digit is None:
            raise ValueError(f"character {ch!r} is not in the base32 alphabet (a-z, 2-7)")
        value = (value << 5) | digit
    pad = len(text) * 5 - nbytes * 8
    if value & ((1 << pad) - 1):
        raise ValueError("non-canonical trailing bits")
    return (value >> pad).to_bytes(nbytes, "big")


def _checksum(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=CHECKSUM_LEN, person=b"p2pos-peer-id").digest()


class PeerId:
    """A peer's identity: its Ed25519 public key.  Hashable, comparable, printable."""

    __slots__ = ("public_key",)

    def __init__(self, public_key: bytes) -> None:
        if len(public_key) != KEY_LEN:
            raise InvalidPeerId(f"an Ed25519 public key is {KEY_LEN} bytes, got {len(public_key)}")
        self.public_key = bytes(public_key)

    @classmethod
    def parse(cls, text: str) -> PeerId:
        """Parse the textual form; raises InvalidPeerId with a human explanation."""
        if not isinstance(text, str):
            raise InvalidPeerId("a peer id is a string")
        cleaned = "".join(ch for ch in text.strip().translate(_ASCII_LOWER) if ch not in " -\t")
        if len(cleaned) != TEXT_LEN:
            raise InvalidPeerId(f"a peer id has {TEXT_LEN} characters, this one has {len(cleaned)}")
        try:
            raw = b32decode_canonical(cleaned, _RAW_LEN)
        except ValueError as exc:
            raise InvalidPeerId(f"not a peer id: {exc}") from None
        if raw[0] != VERSION_ED25519:
            raise InvalidPeerId(f"unknown peer id version {raw[0]}")
        body, check = raw[: 1 + KEY_LEN], raw[1 + KEY_LEN :]
        if _checksum(body) != check:
            raise InvalidPeerId("peer id checksum does not match: probably a typo")
        return cls(body[1:])

    def __str__(self) -> str:
        body = bytes([VERSION_ED25519]) + self.public_key
        return b32encode(body + _checksum(body))

    def __repr__(self) -> str:
        return f"PeerId({str(self)!r})"

    def short(self) -> str:
        """The first 12 characters, for logs and prompts (not for authentication)."""
        return str(self)[:12]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PeerId) and other.public_key == self.public_key

    def __hash__(self) -> int:
        return hash(self.public_key)
