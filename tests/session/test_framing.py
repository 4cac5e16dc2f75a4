"""StreamFramer and frame() (spec/framing.md): datagrams over an ordered byte stream."""

from __future__ import annotations

import random

import pytest
from helpers import SessionPair, completed

from p2pos.proto import ErrorCode, LocalProtocolError, StreamFramer, frame
from p2pos.proto.session.framing import MAX_FRAME

DATAGRAMS = [b"a", b"hello world", bytes(range(256)) * 3, b"\x00" * 1200, bytes(MAX_FRAME)]
STREAM = b"".join(frame(d) for d in DATAGRAMS)


def drain(framer: StreamFramer) -> list[bytes]:
    out = []
    while (datagram := framer.next_frame()) is not None:
        out.append(datagram)
    return out


def test_frame_layout() -> None:
    assert frame(b"abc") == b"\x00\x03abc"
    assert frame(bytes(MAX_FRAME))[:2] == b"\xff\xff"


@pytest.mark.parametrize("size", [0, MAX_FRAME + 1])
def test_frame_rejects_bad_sizes(size: int) -> None:
    with pytest.raises(LocalProtocolError) as info:
        frame(bytes(size))
    assert info.value.code is ErrorCode.FRAMING_ERROR


def test_fed_whole() -> None:
    framer = StreamFramer()
    framer.receive_data(STREAM)
    assert drain(framer) == DATAGRAMS
    assert framer.buffered == 0
    framer.receive_eof()
    assert framer.next_frame() is None
    assert framer.error is None


def test_fed_byte_by_byte() -> None:
    framer = StreamFramer()
    out = []
    small = b"".join(frame(d) for d in DATAGRAMS[:4])
    for i in range(len(small)):
        framer.receive_data(small[i : i + 1])
        out += drain(framer)
    assert out == DATAGRAMS[:4]
    assert framer.error is None and framer.buffered == 0


@pytest.mark.parametrize("seed", range(20))
def test_random_chunkings(seed: int) -> None:
    rng = random.Random(seed)
    framer = StreamFramer()
    out = []
    pos = 0
    while pos < len(STREAM):
        step = rng.choice([1, 2, 3, rng.randint(1, 100), rng.randint(1, 70000)])
        framer.receive_data(STREAM[pos : pos + step])
        pos += step
        if rng.random() < 0.7:
            out += drain(framer)
    out += drain(framer)
    assert out == DATAGRAMS


def test_empty_chunks_are_harmless() -> None:
    framer = StreamFramer()
    framer.receive_data(b"")
    assert framer.next_frame() is None
    framer.receive_data(frame(b"x"))
    framer.receive_data(b"")
    assert drain(framer) == [b"x"]


def test_trailing_partial_frame_waits() -> None:
    framer = StreamFramer()
    framer.receive_data(frame(b"one") + frame(b"two")[:3])
    assert drain(framer) == [b"one"]
    assert framer.buffered == 3
    assert framer.error is None
    framer.receive_data(b"wo")
    assert drain(framer) == [b"two"]


@pytest.mark.parametrize("prefix", [b"", frame(b"before")])
def test_zero_length_is_final_error(prefix: bytes) -> None:
    framer = StreamFramer()
    framer.receive_data(prefix + b"\x00\x00" + frame(b"after"))
    out = drain(framer)
    assert out == ([b"before"] if prefix else [])
    assert framer.error is not None
    assert framer.error.code is ErrorCode.FRAMING_ERROR
    framer.receive_data(frame(b"more"))
    assert framer.next_frame() is None
    assert framer.buffered == 0


def test_over_max_length_is_final_error() -> None:
    framer = StreamFramer(max_frame=100)
    framer.receive_data(frame(bytes(100)) + frame(bytes(101)))
    assert framer.next_frame() == bytes(100)
    assert framer.next_frame() is None
    assert framer.error is not None and framer.error.code is ErrorCode.FRAMING_ERROR
    assert "101" in str(framer.error)
    framer.receive_data(frame(b"ok"))
    assert framer.next_frame() is None


def test_over_max_detected_from_header_alone() -> None:
    framer = StreamFramer(max_frame=10)
    framer.receive_data(b"\x00")
    assert framer.next_frame() is None and framer.error is None
    framer.receive_data(b"\x0b")
    assert framer.next_frame() is None
    assert framer.error is not None


@pytest.mark.parametrize("max_frame", [0, MAX_FRAME + 1])
def test_bad_max_frame(max_frame: int) -> None:
    with pytest.raises(LocalProtocolError):
        StreamFramer(max_frame=max_frame)


@pytest.mark.parametrize("cut", [1, 2, 5])
def test_eof_inside_a_frame_is_an_error(cut: int) -> None:
    framer = StreamFramer()
    framer.receive_data(frame(b"complete") + frame(b"cut short")[:cut])
    framer.receive_eof()
    assert framer.next_frame() == b"complete"  # frames complete before EOF are still delivered
    assert framer.next_frame() is None
    assert framer.error is not None and framer.error.code is ErrorCode.FRAMING_ERROR
    assert framer.eof


def test_clean_eof() -> None:
    framer = StreamFramer()
    framer.receive_data(frame(b"x") + frame(b"y"))
    framer.receive_eof()
    framer.receive_data(frame(b"ignored after eof"))
    assert drain(framer) == [b"x", b"y"]
    assert framer.error is None and framer.eof


def test_large_streams_compact_the_buffer() -> None:
    framer = StreamFramer()
    datagram = bytes(60000)
    for _ in range(10):
        framer.receive_data(frame(datagram))
        assert framer.next_frame() == datagram
    assert framer.buffered == 0
    assert len(framer._buffer) < 3 * 65537


def test_session_over_a_byte_stream() -> None:
    """XX handshake and messages with every datagram framed onto a stream, delivered in odd chunks."""
    pair = SessionPair()
    rng = random.Random(7)
    to_b, to_a = StreamFramer(), StreamFramer()
    wire_ab, wire_ba = bytearray(), bytearray()

    def pump() -> bool:
        moved = False
        for datagram in pair.take_a():
            wire_ab.extend(frame(datagram))
        for datagram in pair.take_b():
            wire_ba.extend(frame(datagram))
        for wire, framer, deliver in ((wire_ab, to_b, pair.deliver_to_b), (wire_ba, to_a, pair.deliver_to_a)):
            if wire:
                moved = True
                step = rng.randint(1, 40)
                framer.receive_data(bytes(wire[:step]))
                del wire[:step]
                while (received := framer.next_frame()) is not None:
                    deliver(received)
        return moved or pair.a.has_output() or (pair.has_b and pair.b.has_output())

    while pump():
        pass
    assert pair.a.is_established and pair.b.is_established
    assert completed(pair.events_a).sas == completed(pair.events_b).sas
    for i in range(10):
        pair.a.send(b"a%d" % i * i, pair.now)
        pair.b.send(b"b%d" % i, pair.now)
    while pump():
        pass
    assert pair.messages_b() == [b"a%d" % i * i for i in range(10)]
    assert pair.messages_a() == [b"b%d" % i for i in range(10)]
    for framer in (to_a, to_b):
        framer.receive_eof()
        assert framer.next_frame() is None and framer.error is None
