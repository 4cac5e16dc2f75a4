"""WebSocket frames (RFC 6455 §5) for a relay link once the upgrade is done (spec/relay.md §3.1).

wsproto runs the HTTP upgrade; after it, both relay drivers frame and parse the link's bytes
here, because the relay's traffic is a stream of 64 KiB binary messages and wsproto spends
about 0.35 ms of CPU on each one end to end (several copies of every payload and a per-frame
masker); here a socket is read straight into a reader's buffer, a payload is copied at most once
on the way in (the unmasking; not at all as a view), and a frame is a header plus the payload.  Sans-IO
and compiled with the rest of the relay's per-message path (tools/compile_core.py); the masking
keys come from the caller.

Masking (RFC 6455 §5.3: every client frame, XOR a 4-byte key) is the largest cost left, twice
per record (the client masks, the relay unmasks): pure Python does it with four strided
``translate`` calls, about 90 us per 64 KiB.  When the ``websockets`` package is installed its
C masker is used instead (about 1 us); ``MASKER`` says which one runs.

``encode(opcode, payload, key)`` → the frame's bytes as ``[header, payload]`` parts to join
with the other output (``key``: 4 random bytes from a client, ``None`` from a server);
``encode_parts(opcode, head, tail, key)`` the same for a payload in two parts (a relay message's
head and its record), which it never joins.
``FrameReader(server=...)``: ``feed(data)`` what the socket gave (or read straight into
``space(n)`` and say ``filled(k)``: no copy), then ``next_message()`` until it returns None; each
is ``(opcode, payload)`` for a whole data message (fragments joined) or a control frame; with
``views=True`` a client's unfragmented payloads are views into the buffer, not copies.
Anything the peer got wrong raises ``FrameError`` with the close code to send
(1002 protocol error, 1009 too big); the reader is then poisoned.  ``close_payload`` and
``parse_close`` handle the Close frame's body (§5.5.1).
"""

from __future__ import annotations

import importlib
import struct
from collections.abc import Callable
from typing import Final, cast

CONTINUATION: Final = 0x0
TEXT: Final = 0x1
BINARY: Final = 0x2
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA
_DATA: Final = (TEXT, BINARY)
_CONTROL: Final = (CLOSE, PING, PONG)

#: Close codes (RFC 6455 §7.4.1) this module asks for.
NORMAL: Final = 1000
PROTOCOL_ERROR: Final = 1002
TOO_BIG: Final = 1009

_U16: Final = struct.Struct("!H")
_U64: Final = struct.Struct("!Q")
#: A reader's buffer to start with: a socket read of 256 KiB plus a partial frame fits.
BUFFER_SIZE: Final = 512 * 1024
#: ``_xor(k)`` maps each byte to itself XOR k: masking is four strided ``translate`` calls.  Made
#: when first used (all 256 take a few ms, for every process that imports this).
_XOR: dict[int, bytes] = {}


def _xor(k: int) -> bytes:
    table = _XOR.get(k)
    if table is None:
        table = _XOR[k] = bytes(b ^ k for b in range(256))
    return table


class FrameError(Exception):
    """The peer broke RFC 6455 framing; close the link with ``code`` (``str(exc)`` says why)."""

    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code = code


def mask_pure(data: bytes | bytearray | memoryview, key: bytes) -> bytes | bytearray:
    """``data`` XOR the repeated 4-byte ``key`` (RFC 6455 §5.3): masks and unmasks."""
    out = bytearray(data)
    for i in range(4):
        out[i::4] = out[i::4].translate(_xor(key[i]))
    return out


def _c_masker() -> Callable[[bytes | bytearray | memoryview, bytes], bytes | bytearray] | None:
    """The ``websockets`` package's C masker, if it is installed (it takes any buffer, returns bytes)."""
    try:
        module = importlib.import_module("websockets.speedups")
    except ImportError:
        return None
    return cast("Callable[[bytes | bytearray | memoryview, bytes], bytes | bytearray]", module.apply_mask)


#: What masks and unmasks: the C masker if there is one, else ``mask_pure``; and which it is.
mask = _c_masker() or mask_pure
MASKER: Final = "websockets.speedups" if mask is not mask_pure else "pure"


def header(opcode: int, length: int, key: bytes | None = None, *, fin: bool = True) -> bytes:
    """A frame header for ``length`` payload bytes (the key follows when masked)."""
    first = (0x80 if fin else 0) | opcode
    bit = 0x80 if key is not None else 0
    if length < 126:
        head = bytes((first, bit | length))
    elif length < 0x10000:
        head = bytes((first, bit | 126)) + _U16.pack(length)
    else:
        head = bytes((first, bit | 127)) + _U64.pack(length)
    return head if key is None else head + key


def encode(opcode: int, payload: bytes | bytearray, key: bytes | None = None) -> list[bytes | bytearray | memoryview]:
    """One whole frame as parts to join: ``[header, payload]``, the payload masked when ``key`` is given."""
    if opcode in _CONTROL and len(payload) > 125:
        raise ValueError("a control frame carries at most 125 bytes")
    return encode_parts(opcode, payload, b"", key)[:2]


def encode_parts(
    opcode: int, head: bytes | bytearray, tail: bytes | memoryview, key: bytes | None = None
) -> list[bytes | bytearray | memoryview]:
    """One frame whose payload is ``head + tail``, as parts to write without joining them:
    ``[header, head, tail]``, each part masked with the key where it falls in the payload."""
    if key is None:
        return [header(opcode, len(head) + len(tail)), head, tail]
    if len(key) != 4:
        raise ValueError("a masking key is 4 bytes")
    turn = len(head) % 4
    parts: list[bytes | bytearray | memoryview] = [header(opcode, len(head) + len(tail), key)]
    parts.append(mask(head, key) if head else head)
    parts.append(mask(tail, key[turn:] + key[:turn]) if tail else tail)
    return parts


def close_payload(code: int, reason: str = "") -> bytes:
    """The body of a Close frame: the code and a UTF-8 reason cut to fit 125 bytes."""
    raw = reason.encode()[:123]
    return _U16.pack(code) + raw.decode(errors="ignore").encode()


def parse_close(payload: bytes) -> tuple[int | None, str]:
    """A Close frame's ``(code, reason)`` (code None: none given); FrameError if malformed."""
    if not payload:
        return None, ""
    if len(payload) == 1:
        raise FrameError(PROTOCOL_ERROR, "a Close frame with a 1-byte body")
    code = _U16.unpack_from(payload)[0]
    if code < 1000 or code in (1004, 1005, 1006, 1015) or 1016 <= code < 3000 or code >= 5000:
        raise FrameError(PROTOCOL_ERROR, f"close code {code} is not one a peer may send")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(PROTOCOL_ERROR, "a close reason that is not UTF-8") from None
    return code, reason


class FrameReader:
    """Frames from one peer: from a client (``server=True``: every frame masked) or from a server
    (never masked).  ``max_message``: the longest data message accepted (REL-3.1.4); a longer one
    raises FrameError(1009) as soon as its length is known, before its bytes are buffered."""

    def __init__(self, *, server: bool, max_message: int, views: bool = False) -> None:
        self.server = server
        self.max_message = max_message
        #: Unmasked data payloads come back as views into the buffer instead of copies (see
        #: ``next_message``); a server's (masked) payloads are always fresh bytes.
        self.views = views and not server
        #: Bytes fed and not yet parsed are ``_buf[_pos:_end]``; the buffer's size only grows
        #: (by replacing it), so a view of it handed out stays readable.
        self._buf = bytearray(BUFFER_SIZE)
        self._pos = 0
        self._end = 0
        self._opcode: int | None = None  # the data message being reassembled from fragments
        self._parts: list[bytes] = []
        self._size = 0
        self._error: FrameError | None = None

    def space(self, size: int) -> memoryview:
        """Room for at least ``size`` more bytes at the end of what is buffered: read the socket
        into it (``recv_into``), then say how much with ``filled``.  Payload views returned before
        may be overwritten from here on."""
        if self._pos == self._end:
            self._pos = self._end = 0
        elif len(self._buf) - self._end < size:
            kept = self._end - self._pos
            if kept + size <= len(self._buf):
                self._buf[:kept] = self._buf[self._pos : self._end]  # the same size: views stay valid
            else:
                grown = bytearray(max(kept + size, 2 * len(self._buf)))
                grown[:kept] = self._buf[self._pos : self._end]
                self._buf = grown
            self._pos, self._end = 0, kept
        if len(self._buf) - self._end < size:  # only when the buffer was empty and is too small
            self._buf = bytearray(size)
        return memoryview(self._buf)[self._end :]

    def filled(self, count: int) -> None:
        """``count`` bytes were written at the start of the last ``space``."""
        if count < 0 or self._end + count > len(self._buf):
            raise ValueError("filled more than the space given")
        self._end += count

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes read from the socket (any amount)."""
        size = len(data)
        if size:
            with self.space(size) as room:
                room[:size] = data
            self._end += size

    def buffered(self) -> int:
        """Bytes fed and not yet returned."""
        return self._end - self._pos

    def next_message(self) -> tuple[int, bytes | memoryview] | None:
        """The next whole message or control frame as ``(opcode, payload)``; None: more bytes needed.
        With ``views``, an unfragmented data message's payload is a view into the buffer, valid
        until the next ``space`` or ``feed``: take what is needed from it before reading again."""
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except FrameError as exc:
            self._error = exc
            raise

    def _next(self) -> tuple[int, bytes | memoryview] | None:
        while True:
            frame = self._frame()
            if frame is None:
                return None
            fin, opcode, payload = frame
            if opcode in _CONTROL:
                return opcode, bytes(payload)
            if opcode == CONTINUATION:
                if self._opcode is None:
                    raise FrameError(PROTOCOL_ERROR, "a continuation frame outside a message")
            elif self._opcode is not None:
                raise FrameError(PROTOCOL_ERROR, "a new message before the last one ended")
            elif fin:
                return opcode, payload  # the common case: a whole message in one frame
            else:
                self._opcode = opcode
            self._parts.append(bytes(payload) if isinstance(payload, memoryview) else payload)  # outlives reads
            self._size += len(payload)
            if fin:
                whole, kind = b"".join(self._parts), self._opcode
                self._parts, self._size, self._opcode = [], 0, None
                return kind, whole

    def _frame(self) -> tuple[bool, int, bytes | memoryview] | None:
        buf, pos = self._buf, self._pos
        have = self._end - pos
        if have < 2:
            return None
        first, second = buf[pos], buf[pos + 1]
        if first & 0x70:
            raise FrameError(PROTOCOL_ERROR, "reserved bits set (no extension was agreed)")
        opcode, fin = first & 0x0F, bool(first & 0x80)
        if opcode not in _DATA and opcode not in _CONTROL and opcode != CONTINUATION:
            raise FrameError(PROTOCOL_ERROR, f"unknown opcode {opcode}")
        masked = bool(second & 0x80)
        if masked != self.server:
            raise FrameError(PROTOCOL_ERROR, "a client frame must be masked, a server frame must not")
        length = second & 0x7F
        at = pos + 2
        if opcode in _CONTROL:
            if not fin or length > 125:
                raise FrameError(PROTOCOL_ERROR, "a fragmented or long control frame")
        elif length == 126:
            if have < 4:
                return None
            length = _U16.unpack_from(buf, at)[0]
            at += 2
        elif length == 127:
            if have < 10:
                return None
            length = _U64.unpack_from(buf, at)[0]
            at += 8
        if opcode not in _CONTROL and (self._size if opcode == CONTINUATION else 0) + length > self.max_message:
            raise FrameError(TOO_BIG, f"a message longer than {self.max_message} bytes")
        key_at = at
        if masked:
            at += 4
        end = at + length
        if self._end < end:
            return None
        payload: bytes | memoryview
        if masked:
            with memoryview(buf) as view:
                unmasked = mask(view[at:end], bytes(buf[key_at:at]))
            payload = unmasked if isinstance(unmasked, bytes) else bytes(unmasked)
        elif self.views:
            payload = memoryview(buf)[at:end]
        else:
            with memoryview(buf) as view:
                payload = bytes(view[at:end])
        self._pos = end
        return fin, opcode, payload
