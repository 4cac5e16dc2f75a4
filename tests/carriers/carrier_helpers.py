"""Shared by the carrier tests: a two-way transfer with a SHA-256 check, and tests/turn's coturn fixture.

``tests/turn`` goes on ``sys.path`` so that ``coturn_fixture`` (the real coturn the TURN tests
start) is imported from there, not copied.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import trio

from p2pos.adapters.node import Node
from p2pos.adapters.streams import ChannelStream

_TURN_TESTS = str(Path(__file__).resolve().parents[1] / "turn")
if _TURN_TESTS not in sys.path:
    sys.path.insert(0, _TURN_TESTS)

MB = 1_000_000
BLOCK = 64 * 1024


def payload(size: int, seed: bytes) -> bytes:
    """``size`` bytes that differ per ``seed`` (a SHA-256 counter stream: fast, not compressible)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest() * 64
        counter += 1
    return bytes(out[:size])


async def stream_pair(a: Node, b: Node, address: object, service: str = "svc") -> tuple[ChannelStream, ChannelStream]:
    """A stream channel from ``a`` to ``b``'s ``service``, reaching ``b`` at ``address``."""
    listener = b.listen(service)
    opened = await a.connect(b.peer_id, address, service)
    accepted = await listener.accept()
    assert isinstance(opened, ChannelStream) and isinstance(accepted, ChannelStream)
    return opened, accepted


async def send_and_finish(stream: ChannelStream, data: bytes) -> None:
    view = memoryview(data)
    for start in range(0, len(data), BLOCK):
        await stream.send_all(view[start : start + BLOCK])
    await stream.send_eof()


async def read_digest(stream: ChannelStream, into: dict[str, object], key: str) -> None:
    """Read to the end; store the SHA-256 digest and the byte count under ``key``."""
    digest = hashlib.sha256()
    count = 0
    while chunk := await stream.receive_some():
        digest.update(chunk)
        count += len(chunk)
    into[key] = (count, digest.hexdigest())


async def two_way_transfer(s: ChannelStream, r: ChannelStream, size: int) -> None:
    """``size`` bytes each way at once over one channel; both ends get exactly what the other sent."""
    ab, ba = payload(size, b"a->b"), payload(size, b"b->a")
    got: dict[str, object] = {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_and_finish, s, ab)
        nursery.start_soon(send_and_finish, r, ba)
        nursery.start_soon(read_digest, r, got, "at_b")
        nursery.start_soon(read_digest, s, got, "at_a")
    assert got["at_b"] == (size, hashlib.sha256(ab).hexdigest())
    assert got["at_a"] == (size, hashlib.sha256(ba).hexdigest())
