"""Stream framing cases: ``u16 length | datagram`` frames on a byte stream (spec/framing.md)."""

from __future__ import annotations

from typing import Any

from .checks import expect_eq, unhex_list
from .iut import Iut
from .registry import case

FORMAT = "framing.md §2"
RECEIVING = "framing.md §3"
_A, _B = b"\x01first datagram", bytes(range(256)) * 3


def _frame(datagram: bytes) -> bytes:
    return len(datagram).to_bytes(2, "big") + datagram


def _feed(iut: Iut, data: bytes) -> tuple[list[bytes], Any]:
    answer = iut.ok("frame_feed", data=data)
    return unhex_list(answer.get("frames"), "frames"), answer.get("error")


def _eof(iut: Iut) -> tuple[list[bytes], Any]:
    answer = iut.ok("frame_eof")
    return unhex_list(answer.get("frames"), "frames"), answer.get("error")


@case(
    "frame/1",
    section=RECEIVING,
    title="whole frames fed at once come out as datagrams",
    requirements=(
        "FRM-1.1",
        "FRM-2.1",
        "FRM-3.2",
        "FRM-3.6",
        "CONF-3.4.2",
    ),
)
def _(iut: Iut) -> None:
    expect_eq(_feed(iut, _frame(_A) + _frame(_B)), ([_A, _B], None), "frames and error")
    expect_eq(_eof(iut), ([], None), "a clean end of stream at a frame boundary")


@case(
    "frame/2",
    section=RECEIVING,
    title="frames fed one byte at a time come out whole",
    requirements=(
        "FRM-3.2",
        "CONF-3.4.2",
    ),
)
def _(iut: Iut) -> None:
    stream = _frame(_A) + _frame(_B) + _frame(b"z")
    frames: list[bytes] = []
    for i in range(len(stream)):
        got, error = _feed(iut, stream[i : i + 1])
        expect_eq(error, None, f"error after byte {i}")
        frames += got
    expect_eq(frames, [_A, _B, b"z"], "frames")


@case(
    "frame/3",
    section=RECEIVING,
    title="a zero length is FRAMING_ERROR, and the error is final",
    requirements=(
        "FRM-3.3",
        "FRM-3.5",
        "ERR-1.16",
    ),
)
def _(iut: Iut) -> None:
    frames, error = _feed(iut, _frame(_A) + b"\x00\x00" + _frame(_B))
    expect_eq((frames, error), ([_A], "FRAMING_ERROR"), "frames and error")
    expect_eq(_feed(iut, _frame(_B)), ([], "FRAMING_ERROR"), "frames after the error")


@case(
    "frame/4",
    section=RECEIVING,
    title="a stream that ends inside a frame is FRAMING_ERROR",
    requirements=(
        "FRM-3.4",
        "FRM-3.5",
        "ERR-1.16",
        "CONF-3.4.2",
    ),
)
def _(iut: Iut) -> None:
    expect_eq(_feed(iut, _frame(_A) + _frame(_B)[:-1]), ([_A], None), "before the end")
    expect_eq(_eof(iut), ([], "FRAMING_ERROR"), "at the end of the stream")


@case(
    "frame/5",
    section=RECEIVING,
    title="a stream that ends inside a length prefix is FRAMING_ERROR",
    requirements=(
        "FRM-3.4",
        "ERR-1.16",
    ),
)
def _(iut: Iut) -> None:
    expect_eq(_feed(iut, _frame(_A) + b"\x00"), ([_A], None), "before the end")
    expect_eq(_eof(iut), ([], "FRAMING_ERROR"), "at the end of the stream")


@case(
    "frame/6",
    section=RECEIVING,
    title="the largest frame, 65535 bytes, is accepted",
    requirements=("FRM-2.1", "FRM-3.2"),
)
def _(iut: Iut) -> None:
    big = bytes(range(256)) * 255 + bytes(255)
    expect_eq(len(big), 65535, "test datagram size")
    frames, error = _feed(iut, _frame(big) + _frame(_A))
    expect_eq((len(frames), error), (2, None), "frame count and error")
    expect_eq((frames[0] == big, frames[1]), (True, _A), "frame contents")


@case(
    "frame/7",
    section=FORMAT,
    title="encoding: a length prefix for 1..65535 bytes, FRAMING_ERROR otherwise",
    requirements=(
        "GEN-2.2.1",
        "FRM-2.1",
        "FRM-2.2",
        "CONF-3.4.1",
    ),
)
def _(iut: Iut) -> None:
    answer = iut.ok("frame_encode", data=b"abc")
    expect_eq(answer.get("frame"), "0003616263", "frame of 'abc'")
    expect_eq(iut.error("frame_encode", data=b""), "FRAMING_ERROR", "frame of nothing")
    expect_eq(iut.error("frame_encode", data=bytes(65536)), "FRAMING_ERROR", "frame of 65536 bytes")
