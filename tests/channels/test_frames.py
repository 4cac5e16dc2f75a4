"""Channel-layer frames (spec/frames.md): encoding, parsing, ACK ranges, sizes and the vectors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import ILL_TYPED
from hypothesis import given
from hypothesis import strategies as st

from p2pos.proto import ErrorCode, LocalProtocolError, RemoteProtocolError
from p2pos.proto.channels.frames import (
    MAX_REASON,
    MAX_SERVICE,
    Accept,
    Ack,
    ChannelBlocked,
    ChannelKind,
    CloseChannel,
    DataBlocked,
    Frame,
    KeepaliveInterval,
    MaxChannelData,
    MaxChannels,
    MaxData,
    Message,
    Open,
    Padding,
    PathChallenge,
    PathResponse,
    Ping,
    Refuse,
    Reset,
    StopSending,
    Stream,
    encode_ack,
    encode_frame,
    encode_frames,
    is_ack_eliciting,
    max_message_payload,
    max_stream_payload,
    message_frame_overhead,
    opened_by_initiator,
    parse_ack_untrusted,
    parse_frames_untrusted,
    parse_stream_untrusted,
    stream_frame_overhead,
    stream_header,
)
from p2pos.proto.common.varint import MAX_VARINT
from p2pos.proto.common.varint import encode as encode_varint

VECTORS = Path(__file__).resolve().parents[2] / "spec" / "vectors"

# -- strategies -------------------------------------------------------------------------

varints = st.one_of(
    st.integers(min_value=0, max_value=63),
    st.integers(min_value=0, max_value=2**14),
    st.integers(min_value=0, max_value=MAX_VARINT),
    st.sampled_from([63, 64, 16383, 16384, 2**30 - 1, 2**30, MAX_VARINT]),
)
payloads = st.binary(max_size=300)


def _fits(text: str, most: int) -> bool:
    return len(text.encode("utf-8")) <= most


services = st.text(min_size=1, max_size=80).filter(lambda s: _fits(s, MAX_SERVICE))
reasons = st.text(max_size=300).filter(lambda s: _fits(s, MAX_REASON))


@st.composite
def ack_ranges(draw: st.DrawFn) -> list[tuple[int, int]]:
    """Inclusive ranges, highest first, separated by at least one missing packet number."""
    high = draw(varints)
    low = high - draw(st.integers(min_value=0, max_value=min(high, 2**20)))
    ranges = [(low, high)]
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        if low < 2:
            break
        next_high = low - 2 - draw(st.integers(min_value=0, max_value=min(low - 2, 1000)))
        low = next_high - draw(st.integers(min_value=0, max_value=min(next_high, 1000)))
        ranges.append((low, next_high))
    return ranges


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    data = draw(payloads)
    offset = draw(varints.filter(lambda o: o + len(data) <= MAX_VARINT))
    return Stream(channel_id=draw(varints), offset=offset, data=data, fin=draw(st.booleans()))


frames: st.SearchStrategy[Frame] = st.one_of(
    st.builds(Padding, length=st.integers(min_value=1, max_value=40)),
    st.just(Ping()),
    st.builds(lambda r, d: Ack.from_ranges(r, ack_delay=d), ack_ranges(), varints),
    st.builds(Open, channel_id=varints, kind=st.sampled_from(ChannelKind), service=services, initial_max_data=varints),
    st.builds(Accept, channel_id=varints, initial_max_data=varints),
    st.builds(Refuse, channel_id=varints, code=varints, reason=reasons),
    streams(),
    st.builds(Reset, channel_id=varints, code=varints, final_size=varints),
    st.builds(StopSending, channel_id=varints, code=varints),
    st.builds(MaxData, maximum=varints),
    st.builds(MaxChannelData, channel_id=varints, maximum=varints),
    st.builds(DataBlocked, limit=varints),
    st.builds(ChannelBlocked, channel_id=varints, limit=varints),
    st.builds(Message, channel_id=varints, message_id=varints, data=payloads),
    st.builds(MaxChannels, maximum=varints),
    st.builds(CloseChannel, channel_id=varints),
    st.builds(PathChallenge, data=st.binary(min_size=8, max_size=8)),
    st.builds(PathResponse, data=st.binary(min_size=8, max_size=8)),
)


def merged(items: list[Frame]) -> list[Frame]:
    """What the parser returns for ``items``: consecutive PADDING frames as one run."""
    out: list[Frame] = []
    for frame in items:
        if isinstance(frame, Padding) and out and isinstance(last := out[-1], Padding):
            out[-1] = Padding(length=last.length + frame.length)
        else:
            out.append(frame)
    return out


def parse_error(packet: bytes) -> ErrorCode:
    with pytest.raises(RemoteProtocolError) as info:
        parse_frames_untrusted(packet)
    return info.value.code


# -- round trips ------------------------------------------------------------------------


@given(frames)
def test_every_frame_round_trips(frame: Frame) -> None:
    encoded = encode_frame(frame)
    assert parse_frames_untrusted(encoded) == [frame]
    assert encode_frames([frame]) == encoded


@given(st.lists(frames, max_size=8))
def test_packets_round_trip(items: list[Frame]) -> None:
    packet = encode_frames(items)
    parsed = parse_frames_untrusted(packet)
    assert parsed == merged(items)
    assert encode_frames(parsed) == packet


@given(frames)
def test_every_truncation_of_a_frame_is_malformed(frame: Frame) -> None:
    encoded = encode_frame(frame)
    assert parse_frames_untrusted(encoded[:0]) == []
    for cut in range(1, len(encoded)):
        if isinstance(frame, Padding):
            assert parse_frames_untrusted(encoded[:cut]) == [Padding(length=cut)]
        else:
            assert parse_error(encoded[:cut]) is ErrorCode.MALFORMED_MESSAGE, cut


@given(st.lists(frames, min_size=1, max_size=5))
def test_truncated_packets_parse_to_a_prefix_or_fail(items: list[Frame]) -> None:
    encoded = [encode_frame(f) for f in items]
    boundaries = {sum(len(e) for e in encoded[:i]): i for i in range(len(items) + 1)}
    packet = b"".join(encoded)
    for cut in range(len(packet) + 1):
        try:
            parsed = parse_frames_untrusted(packet[:cut])
        except RemoteProtocolError as exc:
            assert exc.code is ErrorCode.MALFORMED_MESSAGE
            assert cut not in boundaries
            continue
        if cut in boundaries:
            assert parsed == merged(items[: boundaries[cut]])
        else:  # only a run of PADDING can be cut anywhere
            assert parsed and isinstance(parsed[-1], Padding)


@given(frames, st.sampled_from([b"\x1f", b"\x3f", b"\x40\x1f", b"\x80\x00\x01\x00"]))
def test_an_unknown_type_after_valid_frames_is_a_protocol_violation(frame: Frame, garbage: bytes) -> None:
    assert parse_error(encode_frame(frame) + garbage) is ErrorCode.PROTOCOL_VIOLATION


@given(frames, st.sampled_from([b"\xff", b"\x40", b"\x06\x00", b"\x0e\x00\x00\x05ab", b"\x03\x00"]))
def test_trailing_partial_frames_are_malformed(frame: Frame, garbage: bytes) -> None:
    assert parse_error(encode_frame(frame) + garbage) is ErrorCode.MALFORMED_MESSAGE


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_a_remote_error(data: bytes) -> None:
    try:
        parsed = parse_frames_untrusted(data)
    except RemoteProtocolError as exc:
        assert exc.code in (ErrorCode.MALFORMED_MESSAGE, ErrorCode.PROTOCOL_VIOLATION)
    else:
        assert encode_frames(parsed) == data or len(encode_frames(parsed)) <= len(data)


@given(st.lists(frames, min_size=1, max_size=4), st.data())
def test_mutated_packets_parse_or_raise_a_remote_error(items: list[Frame], data: st.DataObject) -> None:
    packet = bytearray(encode_frames(items))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        packet[data.draw(st.integers(min_value=0, max_value=len(packet) - 1))] = data.draw(st.integers(0, 255))
    try:
        parse_frames_untrusted(bytes(packet))
    except RemoteProtocolError as exc:
        assert exc.code in (ErrorCode.MALFORMED_MESSAGE, ErrorCode.PROTOCOL_VIOLATION)


def test_padding_runs_are_collapsed() -> None:
    assert parse_frames_untrusted(bytes(1200)) == [Padding(length=1200)]
    assert parse_frames_untrusted(b"\x00\x00\x01\x00") == [Padding(length=2), Ping(), Padding(length=1)]
    assert parse_frames_untrusted(b"\x40\x00\x00") == [Padding(length=2)]  # a non-minimal PADDING type


def test_stream_data_is_bytes_sliced_from_the_packet() -> None:
    packet = encode_frames([Stream(channel_id=4, offset=9, data=b"x" * 1100), Ping()])
    (stream, ping) = parse_frames_untrusted(packet)
    assert isinstance(stream, Stream) and type(stream.data) is bytes and stream.data == b"x" * 1100
    assert ping == Ping()


def test_layouts() -> None:
    assert encode_frame(Stream(channel_id=1, offset=5, data=b"bye", fin=True)).hex() == "070105" + "03" + b"bye".hex()
    assert encode_frame(Open(channel_id=0, kind=ChannelKind.MESSAGE, service="a", initial_max_data=64)).hex() == (
        "030001" + "0161" + "4040"
    )
    assert encode_frame(Refuse(channel_id=1, code=0x17, reason="")).hex() == "05011700"
    assert encode_frame(Ack.from_ranges([(10, 12), (5, 7), (0, 2)], ack_delay=25)).hex() == "020c19020201020102"
    assert stream_header(2, 0, 5, False) + b"hello" == encode_frame(Stream(channel_id=2, offset=0, data=b"hello"))


def test_non_minimal_encodings_are_accepted() -> None:
    packet = bytes.fromhex("4006" + "c000000000000002" + "80000000" + "4005") + b"hello"
    assert parse_frames_untrusted(packet) == [Stream(channel_id=2, offset=0, data=b"hello")]


def test_ack_eliciting() -> None:
    assert not is_ack_eliciting(Padding())
    assert not is_ack_eliciting(Ack(largest=0, ack_delay=0, first_range=0))
    assert is_ack_eliciting(Ping())
    assert is_ack_eliciting(Stream(channel_id=0, offset=0, data=b""))
    assert is_ack_eliciting(CloseChannel(channel_id=0))


def test_channel_id_parity() -> None:
    assert [opened_by_initiator(i) for i in range(4)] == [True, False, True, False]


# -- ACK ranges -------------------------------------------------------------------------


@given(ack_ranges(), varints)
def test_ack_ranges_round_trip(ranges: list[tuple[int, int]], delay: int) -> None:
    ack = Ack.from_ranges(ranges, ack_delay=delay)
    assert ack.ranges() == ranges
    assert ack.largest == ranges[0][1]
    (parsed,) = parse_frames_untrusted(encode_frame(ack))
    assert isinstance(parsed, Ack) and parsed.ranges() == ranges


@given(ack_ranges(), varints, st.binary(max_size=8))
def test_ack_shortcuts_match_the_frame_objects(ranges: list[tuple[int, int]], delay: int, after: bytes) -> None:
    # encode_ack / parse_ack_untrusted: the receive and send hot paths, without Ack objects.
    wire = encode_ack(ranges, delay)
    assert wire == encode_frame(Ack.from_ranges(ranges, ack_delay=delay))
    assert parse_ack_untrusted(wire + after, 0) == (ranges, delay, len(wire))
    assert parse_ack_untrusted(b"\x01" + wire, 1) == (ranges, delay, len(wire) + 1)


def test_ack_shortcuts_refuse_what_the_objects_refuse() -> None:
    with pytest.raises(LocalProtocolError):
        encode_ack([(5, 9), (6, 7)], 0)
    for wire in (
        bytes([2, 5, 0, 0, 6]),
        bytes([2, 10, 0, 1, 2, 7, 0]),
        bytes([2, 10, 0, 1]),
        bytes([2, 10, 0, 200, 1]),
    ):
        with pytest.raises(RemoteProtocolError) as raised:
            parse_ack_untrusted(wire, 0)
        assert raised.value.code is ErrorCode.MALFORMED_MESSAGE


def test_ack_fields_follow_rfc9000() -> None:
    # gap = one less than the missing packets, range length = one less than the acknowledged ones.
    ack = Ack.from_ranges([(20, 20), (17, 18), (10, 14)], ack_delay=0)
    assert (ack.largest, ack.first_range, ack.ack_ranges) == (20, 0, ((0, 1), (1, 4)))
    ack = Ack(largest=100, ack_delay=0, first_range=0, ack_ranges=((0, 0), (96, 0)))
    assert ack.ranges() == [(100, 100), (98, 98), (0, 0)]


@pytest.mark.parametrize(
    "ranges",
    [[], [(5, 4)], [(-1, 3)], [(0, MAX_VARINT + 1)], [(5, 9), (4, 4)], [(5, 9), (3, 3), (3, 3)], [(5, 9), (6, 7)]],
)
def test_from_ranges_refuses_bad_lists(ranges: list[tuple[int, int]]) -> None:
    with pytest.raises(LocalProtocolError):
        Ack.from_ranges(ranges, ack_delay=0)


@pytest.mark.parametrize(
    ("largest", "first_range", "pairs"),
    [(5, 6, ()), (10, 2, ((7, 0),)), (10, 2, ((0, 7),)), (10, 0, ((0, 0), (0, 0), (0, 0), (0, 3)))],
)
def test_underflowing_acks_are_refused(largest: int, first_range: int, pairs: tuple[tuple[int, int], ...]) -> None:
    ack = Ack(largest=largest, ack_delay=0, first_range=first_range, ack_ranges=pairs)
    with pytest.raises(LocalProtocolError):
        ack.ranges()
    with pytest.raises(LocalProtocolError):
        encode_frame(ack)
    wire = bytes([2, largest, 0, len(pairs), first_range]) + b"".join(bytes(p) for p in pairs)
    assert parse_error(wire) is ErrorCode.MALFORMED_MESSAGE


def test_acks_reaching_zero_exactly_are_valid() -> None:
    assert parse_frames_untrusted(bytes([2, 5, 0, 0, 5])) == [Ack(largest=5, ack_delay=0, first_range=5)]
    (ack,) = parse_frames_untrusted(bytes([2, 10, 0, 1, 2, 0, 6]))
    assert isinstance(ack, Ack) and ack.ranges() == [(8, 10), (0, 6)]


def test_a_huge_range_count_fails_before_looping() -> None:
    assert parse_error(bytes.fromhex("0200" + "00" + "bfffffff" + "00" + "0000")) is ErrorCode.MALFORMED_MESSAGE


# -- limits ---------------------------------------------------------------------------


def _open(service: bytes) -> bytes:
    return bytes([3, 0, 0]) + encode_frame(MaxData(maximum=len(service)))[1:] + service + b"\x00"


def test_service_name_limits() -> None:
    (frame,) = parse_frames_untrusted(_open(b"s" * MAX_SERVICE))
    assert isinstance(frame, Open) and frame.service == "s" * MAX_SERVICE
    for bad in (b"", b"s" * (MAX_SERVICE + 1), b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf"):
        assert parse_error(_open(bad)) is ErrorCode.MALFORMED_MESSAGE, bad
    assert parse_error(bytes.fromhex("030002016100")) is ErrorCode.MALFORMED_MESSAGE  # kind 2
    for service in ("", "s" * (MAX_SERVICE + 1), "é" * 128, "\ud800"):
        with pytest.raises(LocalProtocolError):
            encode_frame(Open(channel_id=0, kind=ChannelKind.STREAM, service=service, initial_max_data=0))


def test_reason_limits() -> None:
    longest = Refuse(channel_id=1, code=5, reason="é" * (MAX_REASON // 2))
    assert parse_frames_untrusted(encode_frame(longest)) == [longest]
    too_long = bytes([5, 1, 5]) + encode_frame(MaxData(maximum=MAX_REASON + 1))[1:] + b"a" * (MAX_REASON + 1)
    assert parse_error(too_long) is ErrorCode.MALFORMED_MESSAGE
    assert parse_error(bytes.fromhex("05010501ff")) is ErrorCode.MALFORMED_MESSAGE
    with pytest.raises(LocalProtocolError):
        encode_frame(Refuse(channel_id=1, code=5, reason="a" * (MAX_REASON + 1)))


def test_stream_end_limit() -> None:
    last = Stream(channel_id=0, offset=MAX_VARINT - 3, data=b"abc", fin=True)
    assert parse_frames_untrusted(encode_frame(last)) == [last]
    over = bytes.fromhex("0600" + "fffffffffffffffe" + "03") + b"abc"
    assert parse_error(over) is ErrorCode.MALFORMED_MESSAGE
    with pytest.raises(LocalProtocolError):
        encode_frame(Stream(channel_id=0, offset=MAX_VARINT - 1, data=b"ab"))


@pytest.mark.parametrize(
    "frame",
    [
        Padding(length=0),
        MaxData(maximum=-1),
        MaxData(maximum=MAX_VARINT + 1),
        Reset(channel_id=0, code=0, final_size=2**62),
        Message(channel_id=-2, message_id=0, data=b""),
    ],
)
def test_bad_values_are_local_errors(frame: Frame) -> None:
    with pytest.raises(LocalProtocolError):
        encode_frame(frame)


def test_ill_typed_frames_are_refused() -> None:
    """A kind that is no ChannelKind, or no frame at all: refused (a compiled core already refuses the type)."""
    with pytest.raises(ILL_TYPED):
        encode_frame(Open(channel_id=0, kind=7, service="x", initial_max_data=0))  # type: ignore[arg-type]
    with pytest.raises(ILL_TYPED):
        encode_frame("PING")  # type: ignore[arg-type]


# -- sizes ----------------------------------------------------------------------------


@given(varints, st.integers(min_value=0, max_value=2**40), st.integers(min_value=-5, max_value=70000))
def test_max_stream_payload_is_the_most_that_fits(channel_id: int, offset: int, budget: int) -> None:
    n = max_stream_payload(channel_id, offset, budget)
    assert n >= 0
    if n > 0:
        assert stream_frame_overhead(channel_id, offset, n) + n <= budget
        assert len(encode_frame(Stream(channel_id=channel_id, offset=offset, data=bytes(n)))) <= budget
    assert stream_frame_overhead(channel_id, offset, n + 1) + n + 1 > budget


@given(varints, varints, st.integers(min_value=-5, max_value=70000))
def test_max_message_payload_is_the_most_that_fits(channel_id: int, message_id: int, budget: int) -> None:
    n = max_message_payload(channel_id, message_id, budget)
    assert n >= 0
    if n > 0:
        frame = Message(channel_id=channel_id, message_id=message_id, data=bytes(n))
        assert len(encode_frame(frame)) == message_frame_overhead(channel_id, message_id, n) + n <= budget
    assert message_frame_overhead(channel_id, message_id, n + 1) + n + 1 > budget


def test_payload_sizes_at_the_initial_mtu() -> None:
    assert max_stream_payload(0, 0, 1170) == 1165
    assert max_stream_payload(0, 0, 67) == 63
    assert max_stream_payload(0, 0, 69) == 64
    assert max_stream_payload(0, MAX_VARINT - 10, 1170) == 10
    assert stream_frame_overhead(0, 0, 0) == 4


# -- vectors --------------------------------------------------------------------------


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("p2pos_frame_vector_generator", VECTORS / "generate_frames.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_CLASSES: dict[str, Any] = {
    "padding": Padding,
    "ping": Ping,
    "ack": Ack,
    "open": Open,
    "accept": Accept,
    "refuse": Refuse,
    "stream": Stream,
    "reset": Reset,
    "stop_sending": StopSending,
    "max_data": MaxData,
    "max_channel_data": MaxChannelData,
    "data_blocked": DataBlocked,
    "channel_blocked": ChannelBlocked,
    "message": Message,
    "max_channels": MaxChannels,
    "close_channel": CloseChannel,
    "path_challenge": PathChallenge,
    "path_response": PathResponse,
    "keepalive_interval": KeepaliveInterval,
}


def from_json(obj: dict[str, Any]) -> Frame:
    """The frame of a JSON object (spec/conformance.md §3.6), read independently of the generator."""
    fields = {k: v for k, v in obj.items() if k != "type"}
    if "data" in fields:
        fields["data"] = bytes.fromhex(fields["data"])
    if "kind" in fields:
        fields["kind"] = {"stream": ChannelKind.STREAM, "message": ChannelKind.MESSAGE}[fields["kind"]]
    if "ack_ranges" in fields:
        fields["ack_ranges"] = tuple((gap, length) for gap, length in fields["ack_ranges"])
    frame: Frame = _CLASSES[obj["type"]](**fields)
    return frame


def test_vectors_are_current(tmp_path: Path) -> None:
    generator = _generator()
    generated: dict[str, str] = generator.build_vectors()
    assert list(generated) == ["frames.json"]
    assert (VECTORS / "frames.json").read_text(encoding="utf-8") == generated["frames.json"]
    assert generator.main(["--dir", str(tmp_path)]) == 0
    assert generator.main(["--check", "--dir", str(tmp_path)]) == 0
    (tmp_path / "frames.json").write_text("{}\n", encoding="utf-8")
    assert generator.main(["--check", "--dir", str(tmp_path)]) == 1


def test_vectors_hold_both_ways() -> None:
    data = json.loads((VECTORS / "frames.json").read_text(encoding="utf-8"))
    assert data["description"] and all("frames.md §" in cited for cited in data["spec"])
    generator = _generator()
    for case in data["varints"]:
        assert encode_frame(MaxData(maximum=case["value"]))[1:].hex() == case["encoding"]
    for case in data["varints_decoding"]:
        assert parse_frames_untrusted(bytes.fromhex("0a" + case["encoding"])) == [MaxData(maximum=case["value"])]
    kinds = set()
    for case in data["frames"]:
        frame = from_json(case["frame"])
        kinds.add(encode_frame(frame)[0])
        assert encode_frame(frame).hex() == case["encoding"], case["note"]
        assert parse_frames_untrusted(bytes.fromhex(case["encoding"])) == [frame], case["note"]
        assert generator.frame_to_json(frame) == case["frame"]
    assert kinds == set(range(0x14)), "every frame type has a vector"
    for case in data["acks"]:
        ack = from_json(case["frame"])
        assert isinstance(ack, Ack)
        assert ack.ranges() == [tuple(r) for r in case["ranges"]]
        assert Ack.from_ranges(ack.ranges(), ack_delay=ack.ack_delay) == ack
        assert encode_frame(ack).hex() == case["encoding"]
    assert len(data["acks"]) >= 4 and max(len(c["ranges"]) for c in data["acks"]) >= 3
    for case in data["packets"]:
        expected = [from_json(f) for f in case["frames"]]
        assert parse_frames_untrusted(bytes.fromhex(case["packet"])) == expected, case["note"]
    codes = set()
    for case in data["invalid"]:
        assert parse_error(bytes.fromhex(case["packet"])) is ErrorCode[case["error"]], case["note"]
        codes.add(case["error"])
    assert codes == {"MALFORMED_MESSAGE", "PROTOCOL_VIOLATION"}


@given(st.lists(frames, min_size=1, max_size=4), st.data())
def test_parse_stream_agrees_with_the_general_parser(items: list[Frame], data: st.DataObject) -> None:
    """The connection's hot path (parse_stream_untrusted) reads a STREAM frame exactly as parse_frames does."""
    packet = encode_frames(items)
    if data.draw(st.booleans()):  # sometimes damaged: both must fail alike
        index = data.draw(st.integers(min_value=0, max_value=len(packet) - 1))
        packet = packet[:index] + bytes([data.draw(st.integers(0, 255))]) + packet[index + 1 :]
    if packet[0] not in (0x06, 0x07):
        return
    try:
        general = parse_frames_untrusted(packet)[0]
    except RemoteProtocolError:
        general = None
    try:
        channel_id, offset, payload, fin, end = parse_stream_untrusted(packet, 0)
    except RemoteProtocolError:
        assert general is None  # a first frame that does not parse fails the packet
        return
    # The general parser may still fail on a later frame; if not, its first frame is the same.
    assert general is None or general == Stream(channel_id=channel_id, offset=offset, data=payload, fin=fin)
    assert end <= len(packet)
    if end == len(packet):
        assert general is not None


@given(
    st.one_of(st.integers(0, 70), varints),
    st.one_of(st.integers(0, 2**14 + 70), st.integers(2**14 - 5, 2**30 + 5), st.integers(0, 2**40)),
    st.one_of(st.integers(0, 70), st.integers(0, 2**14 + 5)),
    st.booleans(),
)
def test_stream_header_is_the_shortest_varints(channel_id: int, offset: int, length: int, fin: bool) -> None:
    """The packed fast path of stream_header writes exactly what the varint encoder would."""
    if offset + length > MAX_VARINT:
        return
    expected = bytes([7 if fin else 6]) + encode_varint(channel_id) + encode_varint(offset) + encode_varint(length)
    assert stream_header(channel_id, offset, length, fin) == expected
