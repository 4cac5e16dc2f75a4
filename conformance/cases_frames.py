"""Channel-layer frame cases (spec/frames.md): encodings byte for byte, and what a parser must refuse.

The IUT encodes frames given in the JSON form of spec/conformance.md §3.6
(``frames_encode``) and decodes packets (``frames_decode``).  Expected bytes
come from the reference core (``p2pos.proto.channels.frames``); the IUT's decoded
frames are read back here (``frame_json.frame_from_json``) and compared as frames, with
consecutive PADDING frames merged, since an IUT may report them one by one.
Ids are ``frame/ch/N``: ``frame/N`` belongs to the stream framer (framing.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from p2pos.proto.channels import frames as ch
from p2pos.proto.common.varint import MAX_VARINT

from .checks import CaseFailed, expect_eq, short, unhex
from .frame_json import frame_from_json, frame_to_json
from .iut import Iut
from .registry import case


def _from_json(obj: Any, what: str) -> ch.Frame:
    """A frame from the IUT's JSON; fail the case if the object is not one."""
    try:
        return frame_from_json(obj)
    except ValueError as exc:
        raise CaseFailed(f"{what}: {short(str(exc), 160)}") from None


def _merged(frames: Sequence[ch.Frame]) -> list[ch.Frame]:
    out: list[ch.Frame] = []
    for frame in frames:
        if isinstance(frame, ch.Padding) and out and isinstance(last := out[-1], ch.Padding):
            out[-1] = ch.Padding(length=last.length + frame.length)
        else:
            out.append(frame)
    return out


def _decode(iut: Iut, packet: bytes) -> list[ch.Frame]:
    raw = iut.ok("frames_decode", data=packet).get("frames")
    if not isinstance(raw, list):
        raise CaseFailed(f"frames_decode: 'frames' must be a list, got {short(raw)}")
    return _merged([_from_json(obj, f"frames[{i}]") for i, obj in enumerate(raw)])


def _round_trip(iut: Iut, frames: Sequence[ch.Frame], what: str) -> None:
    """The IUT encodes each frame (and all together) as the reference does, and decodes them back."""
    for frame in frames:
        expected = ch.encode_frame(frame)
        got = unhex(iut.ok("frames_encode", frames=[frame_to_json(frame)]).get("data"), "data")
        expect_eq(got.hex(), expected.hex(), f"{what}: encoding of {frame_to_json(frame)}")
        expect_eq(_decode(iut, expected), [frame], f"{what}: decoding of {expected.hex()}")
    packet = ch.encode_frames(frames)
    got = unhex(iut.ok("frames_encode", frames=[frame_to_json(f) for f in frames]).get("data"), "data")
    expect_eq(got.hex(), packet.hex(), f"{what}: the packet of all frames")
    expect_eq(_decode(iut, packet), _merged(frames), f"{what}: decoding the packet of all frames")


def _rejects(iut: Iut, packet: bytes, code: str, what: str) -> None:
    expect_eq(iut.error("frames_decode", data=packet), code, f"{what} ({short(packet.hex(), 60)})")


FORMAT, TYPES, ERRORS = "frames.md §4", "frames.md §3", "frames.md §5"
_SERVICE_MAX = "s" * ch.MAX_SERVICE


@case(
    "frame/ch/1",
    section="frames.md §4.1",
    title="PADDING and PING encode and decode byte for byte",
    requirements=(
        "FRA-4.1.2",
        "FRA-4.2.1",
        "CONF-3.6.1",
    ),
)
def _(iut: Iut) -> None:
    _round_trip(iut, [ch.Ping(), ch.Padding(length=1), ch.Padding(length=7), ch.Ping()], "PADDING/PING")
    expect_eq(_decode(iut, bytes(300)), [ch.Padding(length=300)], "300 zero bytes")


@case(
    "frame/ch/2",
    section="frames.md §4.3",
    title="ACK with several ranges encodes and decodes byte for byte",
    requirements=(
        "FRA-2.1",
        "FRA-4.3.1",
        "CONF-3.6.5",
    ),
)
def _(iut: Iut) -> None:
    acks = [
        ch.Ack(largest=0, ack_delay=0, first_range=0),
        ch.Ack.from_ranges([(10, 12), (5, 7), (0, 2)], ack_delay=25),
        ch.Ack.from_ranges([(2**40, 2**40 + 5), (1000, 2000), (500, 500), (0, 498)], ack_delay=2**20),
    ]
    _round_trip(iut, acks, "ACK")
    expect_eq(ch.encode_frame(acks[1]).hex(), "020c19020201020102", "reference encoding (frames.md §4.3)")


@case(
    "frame/ch/3",
    section="frames.md §4.4",
    title="OPEN of stream and message channels, UTF-8 service names",
    requirements=("FRA-4.4.1",),
)
def _(iut: Iut) -> None:
    opens = [
        ch.Open(channel_id=0, kind=ch.ChannelKind.STREAM, service="chat", initial_max_data=65536),
        ch.Open(channel_id=3, kind=ch.ChannelKind.MESSAGE, service="vidéo/1 ✓", initial_max_data=1 << 20),
        ch.Open(channel_id=2**30, kind=ch.ChannelKind.STREAM, service=_SERVICE_MAX, initial_max_data=0),
    ]
    _round_trip(iut, opens, "OPEN")


@case(
    "frame/ch/4",
    section="frames.md §4.5",
    title="ACCEPT and REFUSE encode and decode byte for byte",
    requirements=(
        "FRA-4.5.1",
        "FRA-4.6.1",
    ),
)
def _(iut: Iut) -> None:
    frames: list[ch.Frame] = [
        ch.Accept(channel_id=3, initial_max_data=262144),
        ch.Refuse(channel_id=4, code=0x17, reason="no such service"),
        ch.Refuse(channel_id=5, code=1000, reason=""),
        ch.Refuse(channel_id=7, code=0x18, reason="é" * (ch.MAX_REASON // 2)),
    ]
    _round_trip(iut, frames, "ACCEPT/REFUSE")


@case(
    "frame/ch/5",
    section="frames.md §4.7",
    title="STREAM and STREAM_FIN (0x06/0x07), with and without data",
    requirements=(
        "FRA-2.1",
        "FRA-4.7.1",
        "CONF-3.6.1",
    ),
)
def _(iut: Iut) -> None:
    frames: list[ch.Frame] = [
        ch.Stream(channel_id=2, offset=0, data=b"hello"),
        ch.Stream(channel_id=2, offset=70000, data=bytes(range(256)) * 4),
        ch.Stream(channel_id=1, offset=5, data=b"bye", fin=True),
        ch.Stream(channel_id=1, offset=8, data=b"", fin=True),
        ch.Stream(channel_id=0, offset=MAX_VARINT - 2, data=b"ab", fin=True),
    ]
    _round_trip(iut, frames, "STREAM")


@case(
    "frame/ch/6",
    section="frames.md §4.8",
    title="RESET and STOP_SENDING encode and decode byte for byte",
    requirements=(
        "FRA-4.8.1",
        "FRA-4.9.1",
    ),
)
def _(iut: Iut) -> None:
    frames: list[ch.Frame] = [
        ch.Reset(channel_id=6, code=3, final_size=1234),
        ch.Reset(channel_id=MAX_VARINT, code=MAX_VARINT, final_size=MAX_VARINT),
        ch.StopSending(channel_id=7, code=0),
    ]
    _round_trip(iut, frames, "RESET/STOP_SENDING")


@case(
    "frame/ch/7",
    section="frames.md §4.10",
    title="flow-control frames: MAX_DATA to MAX_CHANNELS",
    requirements=(
        "FRA-2.1",
        "FRA-4.10.1",
        "FRA-4.11.1",
        "FRA-4.12.1",
        "FRA-4.13.1",
        "FRA-4.15.1",
    ),
)
def _(iut: Iut) -> None:
    frames: list[ch.Frame] = [
        ch.MaxData(maximum=1 << 24),
        ch.MaxChannelData(channel_id=2, maximum=131072),
        ch.DataBlocked(limit=1 << 24),
        ch.ChannelBlocked(channel_id=2, limit=131072),
        ch.MaxChannels(maximum=100),
    ]
    _round_trip(iut, frames, "flow control")


@case(
    "frame/ch/8",
    section="frames.md §4.14",
    title="MESSAGE (also empty) and CLOSE_CHANNEL",
    requirements=(
        "FRA-4.14.1",
        "FRA-4.14.4",
        "FRA-4.16.1",
    ),
)
def _(iut: Iut) -> None:
    frames: list[ch.Frame] = [
        ch.Message(channel_id=9, message_id=0, data=b"\x00\x01\x02"),
        ch.Message(channel_id=9, message_id=16384, data=b""),
        ch.CloseChannel(channel_id=2),
    ]
    _round_trip(iut, frames, "MESSAGE/CLOSE_CHANNEL")


@case(
    "frame/ch/9",
    section="frames.md §2",
    title="varints use the shortest encoding at every boundary",
    requirements=(
        "FRA-2.1",
        "FRA-2.2",
        "CONF-2.1.2",
        "CONF-3.6.1",
    ),
)
def _(iut: Iut) -> None:
    for value in (0, 63, 64, 16383, 16384, 2**30 - 1, 2**30, 2**62 - 1):
        got = unhex(iut.ok("frames_encode", frames=[{"type": "max_data", "maximum": value}]).get("data"), "data")
        expect_eq(got.hex(), ch.encode_frame(ch.MaxData(maximum=value)).hex(), f"MAX_DATA of {value}")
        expect_eq(_decode(iut, got), [ch.MaxData(maximum=value)], f"decoding MAX_DATA of {value}")


@case(
    "frame/ch/10",
    section="frames.md §2",
    title="non-minimal varints are accepted, in the frame type too",
    requirements=("FRA-2.3",),
)
def _(iut: Iut) -> None:
    packet = bytes.fromhex("4006" + "c000000000000002" + "80000000" + "4005") + b"hello"
    expect_eq(_decode(iut, packet), [ch.Stream(channel_id=2, offset=0, data=b"hello")], "non-minimal STREAM")
    for encoding in ("4025", "80000025", "c000000000000025"):
        expect_eq(_decode(iut, bytes.fromhex("0a" + encoding)), [ch.MaxData(maximum=37)], f"varint {encoding}")


@case(
    "frame/ch/11",
    section=TYPES,
    title="a packet of every frame type decodes to those frames, in order",
    requirements=(
        "FRA-1.3",
        "FRA-3.1",
        "FRA-4.1.2",
        "FRA-4.7.2",
        "CONF-3.6.3",
        "CONF-3.6.5",
    ),
)
def _(iut: Iut) -> None:
    frames: list[ch.Frame] = [
        ch.Padding(length=2),
        ch.Ping(),
        ch.Ack.from_ranges([(40, 41), (30, 35)], ack_delay=7),
        ch.Open(channel_id=4, kind=ch.ChannelKind.STREAM, service="files", initial_max_data=1 << 16),
        ch.Accept(channel_id=5, initial_max_data=1 << 16),
        ch.Refuse(channel_id=7, code=0x17, reason="unknown"),
        ch.Stream(channel_id=4, offset=0, data=b"data"),
        ch.Stream(channel_id=4, offset=4, data=b"end", fin=True),
        ch.Reset(channel_id=6, code=1, final_size=10),
        ch.StopSending(channel_id=5, code=2),
        ch.MaxData(maximum=1 << 20),
        ch.MaxChannelData(channel_id=4, maximum=1 << 17),
        ch.DataBlocked(limit=1 << 20),
        ch.ChannelBlocked(channel_id=4, limit=1 << 16),
        ch.Message(channel_id=9, message_id=3, data=b"m"),
        ch.MaxChannels(maximum=64),
        ch.CloseChannel(channel_id=8),
        ch.Padding(length=3),
    ]
    packet = ch.encode_frames(frames)
    expect_eq(_decode(iut, packet), frames, "frames of the packet")
    got = unhex(iut.ok("frames_encode", frames=[frame_to_json(f) for f in frames]).get("data"), "data")
    expect_eq(got.hex(), packet.hex(), "the IUT's encoding of the same frames")
    expect_eq(_decode(iut, b""), [], "an empty packet")


@case(
    "frame/ch/12",
    section=ERRORS,
    title="every truncation inside a frame is MALFORMED_MESSAGE",
    requirements=(
        "FRA-2.5",
        "FRA-5.1",
        "FRA-5.3",
        "FRA-5.4",
        "ERR-4.3",
        "CONF-3.6.3",
    ),
)
def _(iut: Iut) -> None:
    frames: list[ch.Frame] = [
        ch.Ack.from_ranges([(300, 310), (100, 200)], ack_delay=1000),
        ch.Open(channel_id=2, kind=ch.ChannelKind.MESSAGE, service="svc", initial_max_data=20000),
        ch.Refuse(channel_id=1, code=0x18, reason="busy"),
        ch.Stream(channel_id=2, offset=16384, data=b"0123456789", fin=True),
        ch.Reset(channel_id=4, code=1, final_size=70000),
        ch.Message(channel_id=9, message_id=64, data=b"xyz"),
    ]
    encoded = [ch.encode_frame(f) for f in frames]
    boundaries = {sum(len(e) for e in encoded[:i]): i for i in range(len(frames) + 1)}
    packet = b"".join(encoded)
    for cut in range(1, len(packet)):
        if cut in boundaries:
            expect_eq(_decode(iut, packet[:cut]), frames[: boundaries[cut]], f"the first {cut} bytes")
        else:
            _rejects(iut, packet[:cut], "MALFORMED_MESSAGE", f"the first {cut} bytes")


@case(
    "frame/ch/13",
    section=TYPES,
    title="an unknown frame type is PROTOCOL_VIOLATION, even after valid frames",
    requirements=(
        "FRA-3.4",
        "FRA-5.3",
        "FRA-5.4",
        "CONF-3.6.3",
    ),
)
def _(iut: Iut) -> None:
    for packet in ("1f", "013f", "401f", "0a05" + "20", "060000026869" + "c000000000000100"):
        _rejects(iut, bytes.fromhex(packet), "PROTOCOL_VIOLATION", "unknown frame type")


@case(
    "frame/ch/14",
    section="frames.md §4.3",
    title="ACK ranges that go below packet number 0 are MALFORMED_MESSAGE",
    requirements=(
        "FRA-4.3.3",
        "FRA-5.3",
    ),
)
def _(iut: Iut) -> None:
    _rejects(iut, bytes.fromhex("0205000006"), "MALFORMED_MESSAGE", "first range larger than largest")
    _rejects(iut, bytes.fromhex("020a0001020700"), "MALFORMED_MESSAGE", "a gap that underflows")
    _rejects(iut, bytes.fromhex("020a0001020007"), "MALFORMED_MESSAGE", "a range length that underflows")
    _rejects(iut, bytes.fromhex("020a0005020100"), "MALFORMED_MESSAGE", "fewer pairs than range_count")
    exact = ch.Ack(largest=10, ack_delay=0, first_range=2, ack_ranges=((0, 6),))
    expect_eq(_decode(iut, bytes.fromhex("020a0001020006")), [exact], "ranges reaching packet number 0 exactly")


@case(
    "frame/ch/15",
    section="frames.md §4.4",
    title="service names are 1..255 bytes of UTF-8, else MALFORMED_MESSAGE",
    requirements=(
        "FRA-4.4.2",
        "FRA-4.4.3",
        "FRA-4.4.4",
        "FRA-5.3",
        "CONF-3.6.2",
    ),
)
def _(iut: Iut) -> None:
    def open_packet(service: bytes, kind: int = 0) -> bytes:
        return bytes([0x03, 0x02, kind]) + ch.encode_frame(ch.MaxData(maximum=len(service)))[1:] + service + b"\x00"

    longest = ch.Open(channel_id=2, kind=ch.ChannelKind.STREAM, service=_SERVICE_MAX, initial_max_data=0)
    expect_eq(_decode(iut, open_packet(_SERVICE_MAX.encode())), [longest], "a 255-byte service")
    for service, what in ((b"", "an empty service"), (b"s" * 256, "a 256-byte service")):
        _rejects(iut, open_packet(service), "MALFORMED_MESSAGE", what)
    for service, what in ((b"\xc3\x28", "invalid UTF-8"), (b"\xed\xa0\x80", "a surrogate"), (b"\xc0\xaf", "overlong")):
        _rejects(iut, open_packet(service), "MALFORMED_MESSAGE", what)
    _rejects(iut, open_packet(b"chat", kind=2), "MALFORMED_MESSAGE", "an unknown channel kind")
    too_long = {"type": "open", "channel_id": 2, "kind": "stream", "service": "s" * 256, "initial_max_data": 0}
    iut.error("frames_encode", frames=[too_long])


@case(
    "frame/ch/16",
    section="frames.md §4.6",
    title="REFUSE reasons: at most 1024 bytes of UTF-8",
    requirements=(
        "FRA-4.6.3",
        "FRA-4.6.4",
        "FRA-5.3",
        "CONF-3.6.2",
    ),
)
def _(iut: Iut) -> None:
    reason = bytes([0x05, 0x01, 0x18]) + ch.encode_frame(ch.MaxData(maximum=1025))[1:] + b"r" * 1025
    _rejects(iut, reason, "MALFORMED_MESSAGE", "a 1025-byte reason")
    _rejects(iut, bytes.fromhex("05011801ff"), "MALFORMED_MESSAGE", "a reason that is not UTF-8")
    _rejects(iut, bytes.fromhex("0501180568"), "MALFORMED_MESSAGE", "a reason that runs past the packet")
    too_long = {"type": "refuse", "channel_id": 1, "code": 0, "reason": "r" * 1025}
    iut.error("frames_encode", frames=[too_long])


@case(
    "frame/ch/17",
    section="frames.md §4.7",
    title="data past the packet or a stream end over 2^62-1 is malformed",
    requirements=(
        "FRA-4.7.3",
        "FRA-4.7.4",
        "FRA-4.14.4",
        "FRA-5.3",
        "CONF-3.6.2",
    ),
)
def _(iut: Iut) -> None:
    _rejects(iut, bytes.fromhex("060000056869"), "MALFORMED_MESSAGE", "STREAM data past the packet")
    _rejects(iut, bytes.fromhex("0e0000020a"), "MALFORMED_MESSAGE", "MESSAGE data past the packet")
    over = bytes.fromhex("0700" + "fffffffffffffffe" + "03") + b"abc"
    _rejects(iut, over, "MALFORMED_MESSAGE", "a STREAM_FIN ending at 2^62 + 1")
    beyond = {"type": "stream", "channel_id": 0, "offset": MAX_VARINT - 1, "data": "6162", "fin": False}
    iut.error("frames_encode", frames=[beyond])
