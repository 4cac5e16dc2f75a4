"""ReceiveBuffer (spec/flow.md §1-§3): reassembly, final size and flow control errors."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pos.proto.channels.flow import MAX_OFFSET, ReceiveWindow
from p2pos.proto.channels.recvbuf import ReceiveBuffer
from p2pos.proto.errors import ErrorCode, LocalProtocolError, RemoteProtocolError


def buffer(window: int = 1 << 20) -> ReceiveBuffer:
    return ReceiveBuffer(ReceiveWindow(window, window, now=0.0))


def finished(buf: ReceiveBuffer) -> bool:
    """Read the property through a call, so mypy does not narrow it across reads."""
    return buf.is_finished


def test_in_order() -> None:
    buf = buffer()
    assert buf.receive_untrusted(0, b"hello ", False) == 6
    assert buf.readable == 6
    assert buf.receive_untrusted(6, b"world", True) == 5
    assert buf.final_size == 11
    assert not finished(buf)
    assert buf.read(3) == b"hel"
    assert buf.read() == b"lo world"
    assert buf.read() == b""
    assert buf.is_finished
    assert buf.buffered == 0
    assert buf.window.consumed == 11


def test_read_pieces_gives_the_frames_bytes_in_order_unjoined() -> None:
    buf = buffer()
    buf.receive_untrusted(0, b"abc", False)
    buf.receive_untrusted(3, b"defg", False)
    buf.receive_untrusted(7, b"hi", True)
    assert buf.read_pieces(5) == [b"abc", b"de"]  # a piece cut at the limit; the rest stays
    assert buf.readable == 4 and buf.window.consumed == 5
    assert buf.read_pieces() == [b"fg", b"hi"]
    assert buf.read_pieces() == []
    assert buf.is_finished and buf.buffered == 0


def test_out_of_order_and_gaps() -> None:
    buf = buffer()
    assert buf.receive_untrusted(5, b"fghij", False) == 10
    assert buf.readable == 0
    assert buf.read() == b""
    assert buf.buffered == 5
    assert buf.fragments == 1
    assert buf.receive_untrusted(0, b"ab", False) == 0  # below the highest offset: no new credit
    assert buf.fragments == 2
    assert buf.read() == b"ab"
    buf.receive_untrusted(2, b"cde", False)
    assert buf.readable == 8
    assert buf.read(100) == b"cdefghij"


def test_first_copy_wins_and_conflicts_are_not_checked() -> None:
    """spec/flow.md §2.1: overlapping data is not compared; the first bytes stay."""
    buf = buffer()
    buf.receive_untrusted(2, b"CD", False)
    buf.receive_untrusted(0, b"abcdef", False)
    assert buf.read() == b"abCDef"
    buf.receive_untrusted(0, b"xxxxxxxx", False)  # partly read, partly new
    assert buf.read() == b"xx"


def test_duplicates_of_read_data_are_ignored() -> None:
    buf = buffer()
    buf.receive_untrusted(0, b"abc", False)
    assert buf.read() == b"abc"
    buf.receive_untrusted(0, b"abc", False)
    buf.receive_untrusted(1, b"b", False)
    assert buf.readable == 0
    assert buf.buffered == 0


def test_empty_stream() -> None:
    buf = buffer()
    buf.receive_untrusted(0, b"", True)
    assert buf.final_size == 0
    assert buf.is_finished
    assert buf.read() == b""


def test_lone_fin_after_data() -> None:
    buf = buffer()
    buf.receive_untrusted(0, b"abc", False)
    buf.receive_untrusted(3, b"", True)
    assert buf.read() == b"abc"
    assert buf.is_finished


def test_flow_control_limit() -> None:
    buf = buffer(window=100)
    buf.receive_untrusted(90, b"x" * 10, False)  # exactly at the limit
    with pytest.raises(RemoteProtocolError) as info:
        buf.receive_untrusted(95, b"x" * 6, False)
    assert info.value.code == ErrorCode.FLOW_CONTROL_ERROR
    with pytest.raises(RemoteProtocolError) as info:
        buf.receive_untrusted(MAX_OFFSET, b"x", False)
    assert info.value.code == ErrorCode.FLOW_CONTROL_ERROR


def test_window_update_lets_more_in() -> None:
    buf = buffer(window=100)
    buf.receive_untrusted(0, b"x" * 100, False)
    assert buf.read(60) == b"x" * 60
    assert buf.window.should_send_update()
    assert buf.window.new_limit(now=1.0, rtt=0.0) == 160
    buf.receive_untrusted(100, b"y" * 60, False)
    with pytest.raises(RemoteProtocolError):
        buf.receive_untrusted(160, b"z", False)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ((0, b"abcd", True), (4, b"e", False)),  # data beyond the final size
        ((0, b"abcd", True), (0, b"abc", True)),  # a different final size, smaller
        ((0, b"abcd", True), (0, b"abcde", True)),  # a different final size, larger
        ((0, b"abc", True), (4, b"", True)),  # larger via an empty FIN
        ((5, b"abcd", False), (0, b"ab", True)),  # final size below data received
    ],
)
def test_final_size_errors(first: tuple[int, bytes, bool], second: tuple[int, bytes, bool]) -> None:
    buf = buffer()
    buf.receive_untrusted(*first)
    with pytest.raises(RemoteProtocolError) as info:
        buf.receive_untrusted(*second)
    assert info.value.code == ErrorCode.FINAL_SIZE_ERROR


def test_same_final_size_again_is_fine() -> None:
    buf = buffer()
    buf.receive_untrusted(2, b"cd", True)
    buf.receive_untrusted(2, b"cd", True)
    buf.receive_untrusted(0, b"ab", False)
    buf.receive_untrusted(4, b"", True)
    assert buf.read() == b"abcd"
    assert buf.is_finished


def test_reset() -> None:
    buf = buffer()
    buf.receive_untrusted(0, b"abc", False)
    buf.receive_untrusted(10, b"xyz", False)
    assert buf.read(1) == b"a"
    assert buf.receive_reset_untrusted(20) == 7
    assert buf.is_reset
    assert buf.buffered == 0
    assert buf.readable == 0
    assert buf.read() == b""
    assert not buf.is_finished
    assert buf.bytes_read == 1
    # Late data is checked against the final size, then ignored.
    buf.receive_untrusted(13, b"late", False)
    assert buf.buffered == 0
    with pytest.raises(RemoteProtocolError) as info:
        buf.receive_untrusted(18, b"past", False)
    assert info.value.code == ErrorCode.FINAL_SIZE_ERROR
    assert buf.receive_reset_untrusted(20) == 0  # a duplicate RESET
    with pytest.raises(RemoteProtocolError) as info:
        buf.receive_reset_untrusted(21)
    assert info.value.code == ErrorCode.FINAL_SIZE_ERROR


@pytest.mark.parametrize(
    ("setup", "final_size", "code"),
    [
        ((0, b"abcdef", False), 3, ErrorCode.FINAL_SIZE_ERROR),  # below data received
        ((0, b"abc", True), 4, ErrorCode.FINAL_SIZE_ERROR),  # differs from the FIN
        ((0, b"abc", False), 1 << 21, ErrorCode.FLOW_CONTROL_ERROR),  # beyond the window
        ((0, b"abc", False), MAX_OFFSET + 1, ErrorCode.FLOW_CONTROL_ERROR),
    ],
)
def test_reset_errors(setup: tuple[int, bytes, bool], final_size: int, code: ErrorCode) -> None:
    buf = buffer()
    buf.receive_untrusted(*setup)
    with pytest.raises(RemoteProtocolError) as info:
        buf.receive_reset_untrusted(final_size)
    assert info.value.code == code


def test_negative_read_is_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        buffer().read(-1)


def test_default_window() -> None:
    buf = ReceiveBuffer()
    buf.receive_untrusted(0, b"x" * 65536, False)
    with pytest.raises(RemoteProtocolError):
        buf.receive_untrusted(65536, b"x", False)


def chunkings(data: bytes, rng: random.Random, max_chunk: int) -> list[tuple[int, bytes, bool]]:
    """Random overlapping chunks covering ``data``; the last byte's chunk has the FIN."""
    frames: list[tuple[int, bytes, bool]] = []
    offset = 0
    while offset < len(data):
        size = rng.randint(1, max_chunk)
        start = max(0, offset - rng.randint(0, 3)) if rng.random() < 0.3 else offset  # overlaps
        end = min(len(data), offset + size)
        frames.append((start, data[start:end], end == len(data)))
        offset = end
    if not frames:
        frames.append((0, b"", True))
    return frames


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=3000),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    max_chunk=st.integers(min_value=1, max_value=400),
    read_size=st.integers(min_value=1, max_value=500),
)
def test_random_reassembly(data: bytes, seed: int, max_chunk: int, read_size: int) -> None:
    """Any chunking, order and duplication reassembles exactly (hash checked)."""
    rng = random.Random(seed)
    frames = chunkings(data, rng, max_chunk)
    frames += rng.sample(frames, k=len(frames) // 3)  # duplicates
    rng.shuffle(frames)
    buf = buffer(window=max(len(data), 1))
    out = bytearray()
    credit = 0
    for frame in frames:
        credit += buf.receive_untrusted(*frame)
        if rng.random() < 0.5:
            out += buf.read(read_size)
        assert buf.buffered <= len(data) - len(out)
    while buf.readable:
        out += buf.read(read_size)
    assert hashlib.sha256(out).digest() == hashlib.sha256(data).digest()
    assert buf.is_finished
    assert buf.buffered == 0
    assert credit == len(data)  # each offset charged once to the connection
    assert buf.window.consumed == len(data)


def test_large_transfer_in_small_frames_is_linear() -> None:
    """A 4 MB stream in 1 KB frames, every other frame late: reads stay cheap."""
    size, chunk = 4 << 20, 1024
    data = random.Random(1).randbytes(size)
    buf = buffer(window=size)
    out = bytearray()
    late: list[int] = []
    for offset in range(0, size, chunk):
        if (offset // chunk) % 2:
            late.append(offset)
        else:
            buf.receive_untrusted(offset, data[offset : offset + chunk], offset + chunk == size)
        if len(late) > 8:
            late_offset = late.pop(0)
            buf.receive_untrusted(late_offset, data[late_offset : late_offset + chunk], late_offset + chunk == size)
            out += buf.read()
    for late_offset in late:
        buf.receive_untrusted(late_offset, data[late_offset : late_offset + chunk], late_offset + chunk == size)
    out += buf.read()
    assert bytes(out) == data
    assert buf.is_finished
