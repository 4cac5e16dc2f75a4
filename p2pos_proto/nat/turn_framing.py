"""ChannelData messages and the framing of STUN/ChannelData on a TCP or TLS leg (RFC 8656 §12.4, §12.5).

A ChannelData message is ``channel number(16) || length(16) || data``; the channel number
is 0x4000..0x4FFF, so its first byte (64..79) tells it from STUN (0..3).  Over UDP the
message is sent as is; over TCP and TLS it is padded to a multiple of 4 bytes, and a
receiver on a stream cuts messages by their own lengths: STUN is 20 + length bytes,
ChannelData 4 + length rounded up to 4 (spec/turn.md §3.3).
"""

from __future__ import annotations

import struct
from typing import Final

from .stun_message import HEADER_LEN, MAGIC_COOKIE, MAX_MESSAGE, StunError

CHANNEL_MIN: Final = 0x4000
CHANNEL_MAX: Final = 0x4FFF
CHANNEL_HEADER: Final = 4
_CHANNEL = struct.Struct(">HH")


def channel_data(channel: int, data: bytes, *, stream: bool) -> bytes:
    """A ChannelData message carrying ``data`` on ``channel``, padded to 4 bytes when ``stream``."""
    if not CHANNEL_MIN <= channel <= CHANNEL_MAX:
        raise ValueError(f"a channel number is 0x4000..0x4FFF, not 0x{channel:x}")
    if len(data) > 0xFFFF:
        raise ValueError("ChannelData carries at most 65535 bytes")
    header = _CHANNEL.pack(channel, len(data))
    if stream and len(data) % 4:
        return b"".join((header, data, bytes(-len(data) % 4)))
    return header + data  # one copy of the payload


def channel_header(channel: int, length: int) -> bytes:
    """The 4-byte header of a ChannelData message of ``length`` bytes on ``channel`` (a UDP leg:
    no padding): a driver writes it and the data in one ``sendmsg``, without copying the data."""
    if not CHANNEL_MIN <= channel <= CHANNEL_MAX:
        raise ValueError(f"a channel number is 0x4000..0x4FFF, not 0x{channel:x}")
    if not 0 <= length <= 0xFFFF:
        raise ValueError("ChannelData carries at most 65535 bytes")
    return _CHANNEL.pack(channel, length)


def decode_channel_data_untrusted(message: bytes) -> tuple[int, bytes]:
    """``(channel, data)`` of a ChannelData message (padding after the data is ignored, RFC 8656 §12.5)."""
    if len(message) < CHANNEL_HEADER:
        raise StunError(f"a ChannelData message is at least 4 bytes, got {len(message)}")
    channel, length = _CHANNEL.unpack_from(message)
    if not CHANNEL_MIN <= channel <= CHANNEL_MAX:
        raise StunError(f"channel number 0x{channel:04x} is outside 0x4000..0x4FFF")
    if CHANNEL_HEADER + length > len(message) or len(message) - CHANNEL_HEADER - length > 3:
        raise StunError(f"ChannelData length {length} does not match the {len(message) - 4} bytes that follow")
    return channel, message[CHANNEL_HEADER : CHANNEL_HEADER + length]


class StreamDeframer:
    """Cuts a TCP/TLS byte stream from a TURN server into whole STUN and ChannelData messages.

    Call ``feed(data)``: it returns the messages completed so far and keeps the rest.  A first
    byte that is neither STUN (0..3) nor a channel (0x40..0x4F), or a STUN header without the
    magic cookie, raises ``StunError``: the stream cannot be resynchronised, close it.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message held."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add ``data`` and return every message it completes, in order."""
        self._buffer += data
        out: list[bytes] = []
        while True:
            size = self._next_size()
            if size is None or len(self._buffer) < size:
                return out
            out.append(bytes(self._buffer[:size]))
            del self._buffer[:size]

    def _next_size(self) -> int | None:
        buf = self._buffer
        if len(buf) < 4:
            return None
        first = buf[0]
        length = (buf[2] << 8) | buf[3]
        if first < 0x40:
            if length % 4 or HEADER_LEN + length > MAX_MESSAGE:
                raise StunError(f"STUN length {length} on the stream is not a multiple of 4 or too large")
            if len(buf) >= 8 and struct.unpack_from(">I", buf, 4)[0] != MAGIC_COOKIE:
                raise StunError("a STUN message on the stream lacks the magic cookie")
            return HEADER_LEN + length
        if 0x40 <= first <= 0x4F:
            return CHANNEL_HEADER + length + (-length % 4)
        raise StunError(f"byte 0x{first:02x} starts neither STUN nor ChannelData: the stream is out of step")
