"""QUIC variable-length integers (RFC 9000 §16; spec/frames.md §2).

The two most significant bits of the first byte give the length: ``00`` one
byte (6-bit value), ``01`` two bytes (14 bits), ``10`` four bytes (30 bits),
``11`` eight bytes (62 bits), the value being the remaining bits, big-endian.
``encode`` always writes the shortest form; ``decode_untrusted`` accepts any
form, minimal or not, as RFC 9000 §16 allows.  Both are on the per-packet
path, so they avoid loops and allocations beyond the one result.
"""

from __future__ import annotations

from typing import Final

from ..errors import ErrorCode, LocalProtocolError, RemoteProtocolError

#: The largest value a varint can carry: 2^62 - 1.
MAX_VARINT: Final = (1 << 62) - 1

_MAX_1: Final = 0x3F
_MAX_2: Final = 0x3FFF
_MAX_4: Final = 0x3FFF_FFFF
_PREFIX_2: Final = 0x4000
_PREFIX_4: Final = 0x8000_0000
_PREFIX_8: Final = 0xC000_0000_0000_0000
_ONE_BYTE: Final = tuple(bytes((v,)) for v in range(_MAX_1 + 1))


def encode(value: int) -> bytes:
    """The shortest encoding of ``value``; ``LocalProtocolError`` outside 0..2^62-1."""
    if 0 <= value <= _MAX_1:
        return _ONE_BYTE[value]
    if _MAX_1 < value <= _MAX_2:
        return (value | _PREFIX_2).to_bytes(2, "big")
    if _MAX_2 < value <= _MAX_4:
        return (value | _PREFIX_4).to_bytes(4, "big")
    if _MAX_4 < value <= MAX_VARINT:
        return (value | _PREFIX_8).to_bytes(8, "big")
    raise LocalProtocolError(f"varint out of range: {value}", ErrorCode.MALFORMED_MESSAGE)


def size(value: int) -> int:
    """How many bytes ``encode(value)`` writes (1, 2, 4 or 8); ``LocalProtocolError`` out of range."""
    if 0 <= value <= _MAX_1:
        return 1
    if _MAX_1 < value <= _MAX_2:
        return 2
    if _MAX_2 < value <= _MAX_4:
        return 4
    if _MAX_4 < value <= MAX_VARINT:
        return 8
    raise LocalProtocolError(f"varint out of range: {value}", ErrorCode.MALFORMED_MESSAGE)


def decode_untrusted(buf: bytes, pos: int) -> tuple[int, int]:
    """Read one varint at ``buf[pos]``: ``(value, position after it)``.

    Raises ``RemoteProtocolError(MALFORMED_MESSAGE)`` when ``buf`` ends inside it.
    """
    if pos >= len(buf):
        raise RemoteProtocolError("truncated varint", ErrorCode.MALFORMED_MESSAGE)
    first = buf[pos]
    prefix = first >> 6
    if prefix == 0:
        return first, pos + 1
    if prefix == 1:
        end = pos + 2
        if end > len(buf):
            raise RemoteProtocolError("truncated varint", ErrorCode.MALFORMED_MESSAGE)
        return ((first & 0x3F) << 8) | buf[pos + 1], end
    end = pos + (4 if prefix == 2 else 8)
    if end > len(buf):
        raise RemoteProtocolError("truncated varint", ErrorCode.MALFORMED_MESSAGE)
    # Byte by byte rather than int.from_bytes of a slice: no slice, no method call (a hot path).
    value = first & 0x3F
    for i in range(pos + 1, end):
        value = (value << 8) | buf[i]
    return value, end
