"""Node-level transfers inside the daemon, the baseline of bench/daemon.py (``p2pos up --bench``).

With ``--bench`` a daemon listens on the service ``_bench`` (any peer; it only reads) and serves
``POST /v1/bench/send {"peer": P, "bytes": N}``: it opens a channel to P's ``_bench``, writes N
bytes from memory, half-closes, and waits for the 8-byte count P's daemon sends back once it read
them all.  So the same two daemons move the same bytes without the app API in between, which is
what the app API's cost is measured against.  Off by default: it would let any peer make the
daemon read.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import trio

from .httpapi import ApiError
from .streams import ChannelStream

if TYPE_CHECKING:
    from .daemon import Daemon

SERVICE = "_bench"
CHUNK = 256 * 1024
MAX_BYTES = 1 << 34


async def serve(daemon: Daemon, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Read every channel to ``_bench`` to its end and answer the byte count."""
    listener = daemon.node.listen(SERVICE)
    task_status.started()
    async with trio.open_nursery() as nursery:
        async for channel in listener:
            if isinstance(channel, ChannelStream):
                nursery.start_soon(_sink, channel)


async def _sink(channel: ChannelStream) -> None:
    total = 0
    try:
        while data := await channel.receive_some(CHUNK):
            total += len(data)
        await channel.send_all(total.to_bytes(8, "big"))
        await channel.aclose()
    except trio.BrokenResourceError:
        pass


async def send(daemon: Daemon, peer: str, nbytes: int) -> dict[str, Any]:
    if not 0 < nbytes <= MAX_BYTES:
        raise ApiError(400, "bad_request", f"bytes must be in 1..{MAX_BYTES}")
    payload = memoryview(bytes(CHUNK))
    started = time.perf_counter()
    channel = await daemon.connect(peer, SERVICE)
    assert isinstance(channel, ChannelStream)
    left = nbytes
    try:
        while left:
            piece = payload[: min(left, CHUNK)]
            await channel.send_all(piece)
            left -= len(piece)
        await channel.send_eof()
        answer = b""
        while len(answer) < 8 and (data := await channel.receive_some(8 - len(answer))):
            answer += data
    except trio.BrokenResourceError as exc:
        raise ApiError(502, "peer_unreachable", f"the transfer broke: {exc}") from None
    seconds = time.perf_counter() - started
    await channel.aclose()
    if len(answer) != 8 or int.from_bytes(answer, "big") != nbytes:
        raise ApiError(502, "bad_request", f"the peer counted {answer!r}, not {nbytes} bytes")
    return {"bytes": nbytes, "seconds": seconds}
