"""Carrying datagrams over an ordered byte stream (spec/framing.md).

The WebSocket relay and QUIC streams deliver bytes, not datagrams.  Each
datagram becomes one frame ``u16 length | datagram`` (length 1..65535).  A
stream cannot resynchronise after a bad length, so an error is final: the
framer stops yielding frames and ``error`` says why; the driver closes the
stream.  ``receive_eof()`` marks the end; a partial frame at EOF is an error.
"""

from __future__ import annotations

from ..errors import ErrorCode, LocalProtocolError, RemoteProtocolError

MAX_FRAME = 65535
_LEN = 2


def frame(datagram: bytes) -> bytes:
    """The bytes to write to the stream for one datagram."""
    if not 1 <= len(datagram) <= MAX_FRAME:
        raise LocalProtocolError(f"a frame carries 1..{MAX_FRAME} bytes, not {len(datagram)}", ErrorCode.FRAMING_ERROR)
    return len(datagram).to_bytes(_LEN, "big") + datagram


class StreamFramer:
    """Splits a received byte stream back into datagrams."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        if not 1 <= max_frame <= MAX_FRAME:
            raise LocalProtocolError(f"max_frame must be 1..{MAX_FRAME}")
        self.max_frame = max_frame
        self.error: RemoteProtocolError | None = None
        self.eof = False
        self._buffer = bytearray()
        self._pos = 0

    def receive_data(self, data: bytes) -> None:
        """Append stream bytes.  Never raises; see ``error``."""
        if self.error is not None or self.eof:
            return
        self._buffer += data

    def receive_eof(self) -> None:
        """The stream ended.  Frames already complete can still be read."""
        self.eof = True

    def next_frame(self) -> bytes | None:
        """The next whole datagram, or None when more bytes are needed (or on error)."""
        if self.error is not None:
            return None
        buf, pos = self._buffer, self._pos
        available = len(buf) - pos
        if available >= _LEN:
            size = (buf[pos] << 8) | buf[pos + 1]
            if size == 0 or size > self.max_frame:
                self._fail(f"frame length {size} outside 1..{self.max_frame}")
                return None
            if available >= _LEN + size:
                out = bytes(buf[pos + _LEN : pos + _LEN + size])
                self._pos = pos + _LEN + size
                if self._pos > 65536 and self._pos * 2 > len(buf):
                    del buf[: self._pos]
                    self._pos = 0
                return out
        if self.eof and available:
            self._fail(f"stream ended inside a frame ({available} bytes left)")
        return None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return len(self._buffer) - self._pos

    def _fail(self, why: str) -> None:
        self.error = RemoteProtocolError(why, ErrorCode.FRAMING_ERROR)
        self._buffer = bytearray()
        self._pos = 0
