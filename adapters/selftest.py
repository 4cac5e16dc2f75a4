"""Node-level transfers inside the daemon, the baseline of bench/daemon.py (``p2pos up --bench``).

With ``--bench`` a daemon listens on the service ``_bench`` (any peer; it only reads) and serves
``POST /v1/bench/send {"peer": P, "bytes": N}``: it opens a channel to P's ``_bench`` and writes N
bytes from memory at once (the first go with the OPEN, spec/channels.md §2.7), half-closes, and
waits for P's answer once it read them all: the 8-byte count, then the ``time.monotonic_ns()`` of
its first read (8 bytes).  So the same two daemons move the same bytes without the app API in
between, which is what the app API's cost is measured against; and on one machine (one monotonic
clock for both daemons) the answer says when the first byte reached P's reader: bench/carriers.py's
time to first byte.  The JSON answer: ``bytes``, ``seconds`` (the call to the count back),
``started_ns`` (the call, before any lookup or handshake) and ``first_byte_ns``.  Off by default:
it would let any peer make the daemon read.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import trio

from .httpapi import ApiError
from .streams import ChannelStream, ServiceRefused

if TYPE_CHECKING:
    from .daemon import Daemon

SERVICE = "_bench"
CHUNK = 256 * 1024
MAX_BYTES = 1 << 34
#: The sink's answer: the byte count and the monotonic_ns of its first read, 8 bytes each.
ANSWER = 16


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
    first_ns = 0
    try:
        while data := await channel.receive_some(CHUNK):
            if not total:
                first_ns = time.monotonic_ns()
            total += len(data)
        await channel.send_all(total.to_bytes(8, "big") + first_ns.to_bytes(8, "big"))
        await channel.aclose()
    except trio.BrokenResourceError:
        pass


async def send(daemon: Daemon, peer: str, nbytes: int) -> dict[str, Any]:
    if not 0 < nbytes <= MAX_BYTES:
        raise ApiError(400, "bad_request", f"bytes must be in 1..{MAX_BYTES}")
    payload = memoryview(bytes(CHUNK))
    started_ns = time.monotonic_ns()
    started = time.perf_counter()
    channel = await daemon.connect(peer, SERVICE, early=True)
    if not isinstance(channel, ChannelStream):
        raise ApiError(500, "internal", "the bench channel is not a stream")
    left = nbytes
    try:
        while left:
            piece = payload[: min(left, CHUNK)]
            await channel.send_all(piece)
            left -= len(piece)
        await channel.send_eof()
        answer = b""
        while len(answer) < ANSWER and (data := await channel.receive_some(ANSWER - len(answer))):
            answer += data
    except ServiceRefused as exc:  # early data: the refusal comes on the channel
        from .daemon import refusal_error  # the daemon imports this module

        raise refusal_error(channel.peer_id, SERVICE, exc) from None
    except trio.BrokenResourceError as exc:
        raise ApiError(502, "peer_unreachable", f"the transfer broke: {exc}") from None
    seconds = time.perf_counter() - started
    await channel.aclose()
    if len(answer) != ANSWER or int.from_bytes(answer[:8], "big") != nbytes:
        raise ApiError(502, "bad_request", f"the peer counted {answer!r}, not {nbytes} bytes")
    return {
        "bytes": nbytes,
        "seconds": seconds,
        "started_ns": started_ns,
        "first_byte_ns": int.from_bytes(answer[8:], "big"),
    }
