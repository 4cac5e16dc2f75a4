"""Channel-layer frames: the contents of one DATA record (spec/frames.md).

A channel-layer *packet* is the plaintext of one DATA record and its packet
number is the record counter (spec/frames.md §1).  A packet is a sequence of
frames, each a type varint followed by its fields (spec/frames.md §3, §4); all
integers are QUIC varints (``varint.py``, RFC 9000 §16).

Sending: build frame objects and call ``encode_frames`` (or ``encode_frame``);
the packetizer sizes STREAM and MESSAGE frames with ``max_stream_payload`` /
``max_message_payload`` and may write a STREAM header alone with
``stream_header`` to avoid copying the data twice.  Receiving: call
``parse_frames_untrusted`` on the plaintext of an authenticated DATA record; it
returns every frame or raises ``RemoteProtocolError`` (spec/frames.md §5), after
which the whole packet is discarded and the connection is closed with that code.
Then ``is_ack_eliciting`` tells the ACK tracker what the packet needs.

Encoding checks the caller's values and raises ``LocalProtocolError``: a frame
object built with out-of-range values is a bug of the caller, never sent.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Final

from ..common.varint import MAX_VARINT
from ..common.varint import decode_untrusted as _read
from ..common.varint import encode as _v
from ..common.varint import size as varint_size
from ..errors import ErrorCode, LocalProtocolError, RemoteProtocolError

#: Longest service name in OPEN, in UTF-8 bytes (spec/frames.md §4.4).
MAX_SERVICE: Final = 255
#: Longest reason text in REFUSE, in UTF-8 bytes (spec/frames.md §4.6).
MAX_REASON: Final = 1024
#: The largest offset + length of a stream, and the largest value of any field (RFC 9000 §19.8).
MAX_STREAM_END: Final = MAX_VARINT

_MALFORMED: Final = ErrorCode.MALFORMED_MESSAGE


class FrameType(enum.IntEnum):
    """Frame type codes (spec/frames.md §3)."""

    PADDING = 0x00
    PING = 0x01
    ACK = 0x02
    OPEN = 0x03
    ACCEPT = 0x04
    REFUSE = 0x05
    STREAM = 0x06
    STREAM_FIN = 0x07
    RESET = 0x08
    STOP_SENDING = 0x09
    MAX_DATA = 0x0A
    MAX_CHANNEL_DATA = 0x0B
    DATA_BLOCKED = 0x0C
    CHANNEL_BLOCKED = 0x0D
    MESSAGE = 0x0E
    MAX_CHANNELS = 0x0F
    CLOSE_CHANNEL = 0x10
    PATH_CHALLENGE = 0x11
    PATH_RESPONSE = 0x12
    KEEPALIVE_INTERVAL = 0x13


class ChannelKind(enum.IntEnum):
    """What an OPEN asks for (spec/frames.md §4.4): a reliable stream or unreliable messages."""

    STREAM = 0
    MESSAGE = 1


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Padding:
    """``length`` consecutive PADDING frames (one zero byte each; spec/frames.md §4.1)."""

    length: int = 1


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    """PING: asks for an acknowledgement, nothing else (spec/frames.md §4.2)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    """ACK (spec/frames.md §4.3, RFC 9000 §19.3.1), fields as on the wire.

    ``ack_delay`` is in microseconds.  ``ack_ranges`` holds the ``(gap,
    ack_range_length)`` pairs that follow the first range.  Build one from
    packet number ranges with ``Ack.from_ranges``; read them back with ``ranges()``.
    """

    largest: int
    ack_delay: int
    first_range: int
    ack_ranges: tuple[tuple[int, int], ...] = ()

    @classmethod
    def from_ranges(cls, ranges: Iterable[tuple[int, int]], ack_delay: int) -> Ack:
        """The ACK of inclusive ``(low, high)`` ranges, highest first, neither overlapping nor adjacent.

        Raises ``LocalProtocolError`` for an empty, unordered or out-of-range list.
        """
        largest, first_range, pairs = _ack_fields(ranges)
        return cls(largest=largest, ack_delay=ack_delay, first_range=first_range, ack_ranges=tuple(pairs))

    def ranges(self) -> list[tuple[int, int]]:
        """The acknowledged packet numbers as inclusive ``(low, high)`` ranges, highest first.

        Raises ``LocalProtocolError`` for an ACK built with fields that underflow
        (a parsed ACK has been checked already).
        """
        try:
            return _ack_ranges(self.largest, self.first_range, self.ack_ranges)
        except RemoteProtocolError as exc:
            raise LocalProtocolError(str(exc), exc.code) from None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Open:
    """OPEN a channel towards ``service`` on the peer (spec/frames.md §4.4)."""

    channel_id: int
    kind: ChannelKind
    service: str
    initial_max_data: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Accept:
    """ACCEPT the peer's OPEN, giving the acceptor's receive window (spec/frames.md §4.5)."""

    channel_id: int
    initial_max_data: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Refuse:
    """REFUSE the peer's OPEN with a code and a reason (spec/frames.md §4.6)."""

    channel_id: int
    code: int
    reason: str = ""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Stream:
    """STREAM (``fin`` false, type 0x06) or STREAM_FIN (type 0x07): bytes at ``offset`` (spec/frames.md §4.7)."""

    channel_id: int
    offset: int
    data: bytes
    fin: bool = False


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Reset:
    """RESET: the sender abandons its direction of the channel at ``final_size`` (spec/frames.md §4.8)."""

    channel_id: int
    code: int
    final_size: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class StopSending:
    """STOP_SENDING: the receiver asks the sender to reset (spec/frames.md §4.9)."""

    channel_id: int
    code: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MaxData:
    """MAX_DATA: the connection-level receive limit (spec/frames.md §4.10)."""

    maximum: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MaxChannelData:
    """MAX_CHANNEL_DATA: a channel's receive limit (spec/frames.md §4.11)."""

    channel_id: int
    maximum: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DataBlocked:
    """DATA_BLOCKED: the sender is blocked by the connection limit (spec/frames.md §4.12)."""

    limit: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ChannelBlocked:
    """CHANNEL_BLOCKED: the sender is blocked by a channel's limit (spec/frames.md §4.13)."""

    channel_id: int
    limit: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """MESSAGE: one whole unreliable message (spec/frames.md §4.14)."""

    channel_id: int
    message_id: int
    data: bytes


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MaxChannels:
    """MAX_CHANNELS: how many channels the peer may open in all (spec/frames.md §4.15)."""

    maximum: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CloseChannel:
    """CLOSE_CHANNEL: both directions finished; the channel's state can be freed (spec/frames.md §4.16)."""

    channel_id: int


#: The size of PATH_CHALLENGE and PATH_RESPONSE data (spec/frames.md §4.17).
PATH_DATA_SIZE: Final = 8


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PathChallenge:
    """PATH_CHALLENGE: 8 unpredictable bytes the peer echoes on the same path (spec/frames.md §4.17)."""

    data: bytes


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PathResponse:
    """PATH_RESPONSE: the data of a PATH_CHALLENGE, echoed (spec/frames.md §4.18)."""

    data: bytes


#: The largest interval KEEPALIVE_INTERVAL may announce, in milliseconds (one day; spec/frames.md §4.19).
MAX_KEEPALIVE_MS: Final = 86_400_000


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class KeepaliveInterval:
    """KEEPALIVE_INTERVAL: the keepalive interval the sender asks for, 0 for none (spec/frames.md §4.19).

    ``sequence`` grows with each new announcement: the receiver keeps the highest it saw.
    """

    sequence: int
    interval_ms: int


Frame = (
    Padding
    | Ping
    | Ack
    | Open
    | Accept
    | Refuse
    | Stream
    | Reset
    | StopSending
    | MaxData
    | MaxChannelData
    | DataBlocked
    | ChannelBlocked
    | Message
    | MaxChannels
    | CloseChannel
    | PathChallenge
    | PathResponse
    | KeepaliveInterval
)


def is_ack_eliciting(frame: Frame) -> bool:
    """Whether a packet holding ``frame`` must be acknowledged: every frame but PADDING and ACK (§3)."""
    return not isinstance(frame, Padding | Ack)


def opened_by_initiator(channel_id: int) -> bool:
    """Whether the session initiator opens ``channel_id``: even ids (spec/frames.md §6)."""
    return channel_id & 1 == 0


# -- sizes ------------------------------------------------------------------------------


def stream_frame_overhead(channel_id: int, offset: int, length: int) -> int:
    """Bytes of a STREAM frame besides its ``length`` data bytes."""
    return 1 + varint_size(channel_id) + varint_size(offset) + varint_size(length)


def _max_payload(avail: int) -> int:
    """Largest n with ``varint_size(n) + n <= avail`` (0 when not even an empty payload fits)."""
    best = 0
    for width, most in ((1, 0x3F), (2, 0x3FFF), (4, 0x3FFF_FFFF), (8, MAX_VARINT)):
        n = min(avail - width, most)
        best = max(best, n)
        if n < most:
            break
    return best


def max_stream_payload(channel_id: int, offset: int, budget: int) -> int:
    """How many data bytes a STREAM frame at ``offset`` can carry in ``budget`` bytes (0 if none).

    Whether even an empty (FIN-only) frame fits: ``stream_frame_overhead(channel_id, offset, 0) <= budget``.
    """
    n = _max_payload(budget - 1 - varint_size(channel_id) - varint_size(offset))
    return min(n, MAX_STREAM_END - offset)


def message_frame_overhead(channel_id: int, message_id: int, length: int) -> int:
    """Bytes of a MESSAGE frame besides its ``length`` data bytes."""
    return 1 + varint_size(channel_id) + varint_size(message_id) + varint_size(length)


def max_message_payload(channel_id: int, message_id: int, budget: int) -> int:
    """How many data bytes a MESSAGE frame can carry in ``budget`` bytes (0 if none)."""
    return _max_payload(budget - 1 - varint_size(channel_id) - varint_size(message_id))


# -- encoding ---------------------------------------------------------------------------


#: Type, a 1-byte channel id, a 4-byte offset and a 2-byte length varint (the prefix bits set by the caller).
_pack_stream_1_4_2: Final = struct.Struct(">BBIH").pack


def stream_header(channel_id: int, offset: int, length: int, fin: bool) -> bytes:
    """The bytes of a STREAM/STREAM_FIN frame before its data; the data follows directly."""
    if offset + length > MAX_STREAM_END:
        raise LocalProtocolError("stream offset + length exceeds 2^62-1", _MALFORMED)
    if 0 <= channel_id < 0x40 and 0x4000 <= offset <= 0x3FFF_FFFF and 0x40 <= length <= 0x3FFF:
        # The bulk of a transfer: the shortest varints are 1, 4 and 2 bytes long, packed at once.
        return _pack_stream_1_4_2(7 if fin else 6, channel_id, offset | 0x8000_0000, length | 0x4000)
    kind = b"\x07" if fin else b"\x06"
    return kind + _v(channel_id) + _v(offset) + _v(length)


def _text(text: str, lowest: int, highest: int, what: str) -> bytes:
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raise LocalProtocolError(f"{what} is not encodable as UTF-8", _MALFORMED) from None
    if not lowest <= len(raw) <= highest:
        raise LocalProtocolError(f"{what} must be {lowest}..{highest} UTF-8 bytes, not {len(raw)}", _MALFORMED)
    return _v(len(raw)) + raw


def encode_frame(frame: Frame) -> bytes:
    """The wire bytes of one frame (spec/frames.md §4); ``LocalProtocolError`` for bad field values."""
    match frame:
        case Stream():
            return stream_header(frame.channel_id, frame.offset, len(frame.data), frame.fin) + frame.data
        case Ack():
            frame.ranges()  # validates: LocalProtocolError on underflow
            return _encode_ack(frame.largest, frame.ack_delay, frame.first_range, frame.ack_ranges)
        case Padding():
            if frame.length < 1:
                raise LocalProtocolError("padding length must be at least 1", _MALFORMED)
            return bytes(frame.length)
        case Ping():
            return b"\x01"
        case Open():
            if frame.kind not in (ChannelKind.STREAM, ChannelKind.MESSAGE):
                raise LocalProtocolError(f"unknown channel kind {frame.kind!r}", _MALFORMED)
            service = _text(frame.service, 1, MAX_SERVICE, "service")
            return b"\x03" + _v(frame.channel_id) + bytes((frame.kind,)) + service + _v(frame.initial_max_data)
        case Accept():
            return b"\x04" + _v(frame.channel_id) + _v(frame.initial_max_data)
        case Refuse():
            return b"\x05" + _v(frame.channel_id) + _v(frame.code) + _text(frame.reason, 0, MAX_REASON, "reason")
        case Reset():
            return b"\x08" + _v(frame.channel_id) + _v(frame.code) + _v(frame.final_size)
        case StopSending():
            return b"\x09" + _v(frame.channel_id) + _v(frame.code)
        case MaxData():
            return b"\x0a" + _v(frame.maximum)
        case MaxChannelData():
            return b"\x0b" + _v(frame.channel_id) + _v(frame.maximum)
        case DataBlocked():
            return b"\x0c" + _v(frame.limit)
        case ChannelBlocked():
            return b"\x0d" + _v(frame.channel_id) + _v(frame.limit)
        case Message():
            data = frame.data
            return b"\x0e" + _v(frame.channel_id) + _v(frame.message_id) + _v(len(data)) + data
        case MaxChannels():
            return b"\x0f" + _v(frame.maximum)
        case CloseChannel():
            return b"\x10" + _v(frame.channel_id)
        case PathChallenge() | PathResponse():
            if len(frame.data) != PATH_DATA_SIZE:
                raise LocalProtocolError(f"path data is {PATH_DATA_SIZE} bytes, not {len(frame.data)}", _MALFORMED)
            return (b"\x11" if isinstance(frame, PathChallenge) else b"\x12") + bytes(frame.data)
        case KeepaliveInterval():
            if not (0 <= frame.sequence <= MAX_VARINT and 0 <= frame.interval_ms <= MAX_KEEPALIVE_MS):
                raise LocalProtocolError(f"keepalive interval out of range: {frame!r}", _MALFORMED)
            return b"\x13" + _v(frame.sequence) + _v(frame.interval_ms)
    raise LocalProtocolError(f"not a frame: {frame!r}")


def encode_frames(frames: Iterable[Frame]) -> bytes:
    """The packet holding ``frames`` in order."""
    return b"".join([encode_frame(f) for f in frames])


# -- parsing ----------------------------------------------------------------------------

_Parser = Callable[[bytes, int], tuple[Frame, int]]
_ZEROS: Final = re.compile(b"\x00+")


def _ack_ranges(largest: int, first_range: int, pairs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """RFC 9000 §19.3.1: the inclusive ranges, or MALFORMED_MESSAGE if a packet number would be negative."""
    low = largest - first_range
    if low < 0:
        raise RemoteProtocolError("ACK first range below packet number 0", _MALFORMED)
    out = [(low, largest)]
    for gap, length in pairs:
        high = low - gap - 2
        low = high - length
        if low < 0:
            raise RemoteProtocolError("ACK range below packet number 0", _MALFORMED)
        out.append((low, high))
    return out


def _ack_fields(ranges: Iterable[tuple[int, int]]) -> tuple[int, int, list[tuple[int, int]]]:
    """``(largest, first_range, (gap, length) pairs)`` of inclusive ranges, highest first (RFC 9000 §19.3.1).

    Raises ``LocalProtocolError`` for an empty, unordered or out-of-range list.
    """
    it = iter(ranges)
    first = next(it, None)
    if first is None:
        raise LocalProtocolError("an ACK needs at least one range")
    low, high = first
    if not 0 <= low <= high <= MAX_VARINT:
        raise LocalProtocolError(f"bad ACK range {first}")
    pairs = []
    for next_low, next_high in it:
        # gap = previous smallest - largest - 2, length = largest - smallest.
        if not 0 <= next_low <= next_high <= low - 2:
            raise LocalProtocolError(f"ACK range {(next_low, next_high)} does not follow {(low, high)} with a gap")
        pairs.append((low - next_high - 2, next_high - next_low))
        low = next_low
    return high, high - first[0], pairs


def _encode_ack(largest: int, ack_delay: int, first_range: int, pairs: Sequence[tuple[int, int]]) -> bytes:
    parts = [b"\x02", _v(largest), _v(ack_delay), _v(len(pairs)), _v(first_range)]
    for gap, length in pairs:
        parts += (_v(gap), _v(length))
    return b"".join(parts)


def encode_ack(ranges: Iterable[tuple[int, int]], ack_delay: int) -> bytes:
    """The bytes of ``Ack.from_ranges(ranges, ack_delay)`` without the ``Ack`` object (the receive hot path)."""
    largest, first_range, pairs = _ack_fields(ranges)
    return _encode_ack(largest, ack_delay, first_range, pairs)


def parse_ack_untrusted(buf: bytes, pos: int) -> tuple[list[tuple[int, int]], int, int]:
    """The ACK frame whose type byte is ``buf[pos]``, without an ``Ack`` object.

    Returns ``(ranges, ack_delay, position after it)``: the inclusive ranges,
    highest first, as ``Ack.ranges()`` gives them.  Raises ``RemoteProtocolError``
    as ``parse_frames_untrusted`` does.
    """
    largest, ack_delay, first_range, pairs, end = _read_ack(buf, pos + 1)
    return _ack_ranges(largest, first_range, pairs), ack_delay, end


def _take(buf: bytes, pos: int, length: int) -> tuple[bytes, int]:
    end = pos + length
    if end > len(buf):
        raise RemoteProtocolError("frame data runs past the end of the packet", _MALFORMED)
    return buf[pos:end], end


def _read_text(buf: bytes, pos: int, lowest: int, highest: int, what: str) -> tuple[str, int]:
    length, pos = _read(buf, pos)
    if not lowest <= length <= highest:
        raise RemoteProtocolError(f"{what} length {length} outside {lowest}..{highest}", _MALFORMED)
    raw, pos = _take(buf, pos, length)
    try:
        return raw.decode("utf-8"), pos
    except UnicodeDecodeError:
        raise RemoteProtocolError(f"{what} is not UTF-8", _MALFORMED) from None


_STREAM_FIN: Final = int(FrameType.STREAM_FIN)


def parse_stream_untrusted(buf: bytes, pos: int) -> tuple[int, int, bytes, bool, int]:
    """The STREAM / STREAM_FIN frame whose type byte is ``buf[pos]``, without a ``Stream`` object.

    Returns ``(channel_id, offset, data, fin, position after it)``; raises
    ``RemoteProtocolError`` as ``parse_frames_untrusted`` does.  The receive hot
    path of a packet that starts with a STREAM frame (connection.py).
    """
    fin = buf[pos] == _STREAM_FIN
    channel_id, pos = _read(buf, pos + 1)
    offset, pos = _read(buf, pos)
    length, pos = _read(buf, pos)
    if offset + length > MAX_STREAM_END:
        raise RemoteProtocolError("stream offset + length exceeds 2^62-1", _MALFORMED)
    end = pos + length
    if end > len(buf):
        raise RemoteProtocolError("STREAM data runs past the end of the packet", _MALFORMED)
    return channel_id, offset, buf[pos:end], fin, end


def _parse_stream(buf: bytes, pos: int) -> tuple[Frame, int]:
    channel_id, offset, data, fin, end = parse_stream_untrusted(buf, pos - 1)
    return Stream(channel_id=channel_id, offset=offset, data=data, fin=fin), end


def _read_ack(buf: bytes, pos: int) -> tuple[int, int, int, list[tuple[int, int]], int]:
    """An ACK frame's fields after its type byte: ``(largest, ack_delay, first_range, pairs, end)``."""
    largest, pos = _read(buf, pos)
    ack_delay, pos = _read(buf, pos)
    count, pos = _read(buf, pos)
    first_range, pos = _read(buf, pos)
    if count > len(buf) - pos:  # each range takes two bytes at least: bounds the loop before it runs
        raise RemoteProtocolError("ACK range count runs past the end of the packet", _MALFORMED)
    pairs = []
    for _ in range(count):
        gap, pos = _read(buf, pos)
        length, pos = _read(buf, pos)
        pairs.append((gap, length))
    return largest, ack_delay, first_range, pairs, pos


def _parse_ack(buf: bytes, pos: int) -> tuple[Frame, int]:
    largest, ack_delay, first_range, pairs, pos = _read_ack(buf, pos)
    _ack_ranges(largest, first_range, pairs)
    return Ack(largest=largest, ack_delay=ack_delay, first_range=first_range, ack_ranges=tuple(pairs)), pos


def _parse_open(buf: bytes, pos: int) -> tuple[Frame, int]:
    channel_id, pos = _read(buf, pos)
    if pos >= len(buf):
        raise RemoteProtocolError("OPEN ends before its kind", _MALFORMED)
    raw_kind = buf[pos]
    if raw_kind > ChannelKind.MESSAGE:
        raise RemoteProtocolError(f"OPEN with unknown channel kind {raw_kind}", _MALFORMED)
    service, pos = _read_text(buf, pos + 1, 1, MAX_SERVICE, "service")
    initial, pos = _read(buf, pos)
    return Open(channel_id=channel_id, kind=ChannelKind(raw_kind), service=service, initial_max_data=initial), pos


def _parse_refuse(buf: bytes, pos: int) -> tuple[Frame, int]:
    channel_id, pos = _read(buf, pos)
    code, pos = _read(buf, pos)
    reason, pos = _read_text(buf, pos, 0, MAX_REASON, "reason")
    return Refuse(channel_id=channel_id, code=code, reason=reason), pos


def _parse_message(buf: bytes, pos: int) -> tuple[Frame, int]:
    channel_id, pos = _read(buf, pos)
    message_id, pos = _read(buf, pos)
    length, pos = _read(buf, pos)
    data, pos = _take(buf, pos, length)
    return Message(channel_id=channel_id, message_id=message_id, data=data), pos


def _one(cls: Callable[..., Frame], name: str) -> _Parser:
    def parse(buf: bytes, pos: int) -> tuple[Frame, int]:
        value, pos = _read(buf, pos)
        return cls(**{name: value}), pos

    return parse


def _two(cls: Callable[..., Frame], first: str, second: str) -> _Parser:
    def parse(buf: bytes, pos: int) -> tuple[Frame, int]:
        a, pos = _read(buf, pos)
        b, pos = _read(buf, pos)
        return cls(**{first: a, second: b}), pos

    return parse


def _parse_reset(buf: bytes, pos: int) -> tuple[Frame, int]:
    channel_id, pos = _read(buf, pos)
    code, pos = _read(buf, pos)
    final_size, pos = _read(buf, pos)
    return Reset(channel_id=channel_id, code=code, final_size=final_size), pos


def _parse_path_challenge(buf: bytes, pos: int) -> tuple[Frame, int]:
    data, pos = _take(buf, pos, PATH_DATA_SIZE)
    return PathChallenge(data=data), pos


def _parse_path_response(buf: bytes, pos: int) -> tuple[Frame, int]:
    data, pos = _take(buf, pos, PATH_DATA_SIZE)
    return PathResponse(data=data), pos


def _parse_keepalive_interval(buf: bytes, pos: int) -> tuple[Frame, int]:
    sequence, pos = _read(buf, pos)
    interval_ms, pos = _read(buf, pos)
    if interval_ms > MAX_KEEPALIVE_MS:
        raise RemoteProtocolError(f"KEEPALIVE_INTERVAL of {interval_ms} ms exceeds one day", _MALFORMED)
    return KeepaliveInterval(sequence=sequence, interval_ms=interval_ms), pos


_PING: Final = Ping()
_PADDING: Final = int(FrameType.PADDING)
_PARSERS: dict[int, _Parser] = {
    FrameType.PING: lambda buf, pos: (_PING, pos),
    FrameType.ACK: _parse_ack,
    FrameType.OPEN: _parse_open,
    FrameType.ACCEPT: _two(Accept, "channel_id", "initial_max_data"),
    FrameType.REFUSE: _parse_refuse,
    FrameType.STREAM: _parse_stream,
    FrameType.STREAM_FIN: _parse_stream,
    FrameType.RESET: _parse_reset,
    FrameType.STOP_SENDING: _two(StopSending, "channel_id", "code"),
    FrameType.MAX_DATA: _one(MaxData, "maximum"),
    FrameType.MAX_CHANNEL_DATA: _two(MaxChannelData, "channel_id", "maximum"),
    FrameType.DATA_BLOCKED: _one(DataBlocked, "limit"),
    FrameType.CHANNEL_BLOCKED: _two(ChannelBlocked, "channel_id", "limit"),
    FrameType.MESSAGE: _parse_message,
    FrameType.MAX_CHANNELS: _one(MaxChannels, "maximum"),
    FrameType.CLOSE_CHANNEL: _one(CloseChannel, "channel_id"),
    FrameType.PATH_CHALLENGE: _parse_path_challenge,
    FrameType.PATH_RESPONSE: _parse_path_response,
    FrameType.KEEPALIVE_INTERVAL: _parse_keepalive_interval,
}


def parse_frames_untrusted(packet: bytes) -> list[Frame]:
    """Every frame of one packet, in order (spec/frames.md §3 to §5).

    Consecutive PADDING frames come back as one ``Padding(length=n)``.  Raises
    only ``RemoteProtocolError``: ``PROTOCOL_VIOLATION`` for an unknown frame
    type, ``MALFORMED_MESSAGE`` for anything that does not parse.  An empty
    packet holds no frames.
    """
    frames: list[Frame] = []
    pos, end = 0, len(packet)
    parsers = _PARSERS
    while pos < end:
        kind = packet[pos]
        if kind < 0x40:  # one-byte type: the common case (every type of §3)
            pos += 1
        else:
            kind, pos = _read(packet, pos)
        if kind == _PADDING:
            zeros = _ZEROS.match(packet, pos)
            after = zeros.end() if zeros is not None else pos
            if frames and isinstance(last := frames[-1], Padding):
                frames[-1] = Padding(length=last.length + 1 + after - pos)
            else:
                frames.append(Padding(length=1 + after - pos))
            pos = after
            continue
        parser = parsers.get(kind)
        if parser is None:
            raise RemoteProtocolError(f"unknown frame type 0x{kind:02x}", ErrorCode.PROTOCOL_VIOLATION)
        frame, pos = parser(packet, pos)
        frames.append(frame)
    return frames
