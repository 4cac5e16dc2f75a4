"""Writing a list of buffers to a trio stream without joining them first (gathered writes).

The relay and its clients write each message as a few parts (a WebSocket header, the relay
message's head, the record), and a relayed record is 64 KiB: joining every batch into one
``bytes`` before ``send_all`` copies each record once more in every process.  ``send_parts``
hands the parts to the kernel as they are with ``sendmsg`` (one system call for up to
``MAX_PARTS`` buffers; a short write goes on from where the kernel stopped) on a plain TCP
``trio.SocketStream``; any other stream (TLS, a test's memory stream) gets them joined.

Only one task may write a stream at a time, as with ``send_all`` (the callers hold their write
lock or are the stream's only writer).
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

#: Buffers per ``sendmsg`` (Linux's ``IOV_MAX`` is 1024).
MAX_PARTS = 512

Part = bytes | bytearray | memoryview


async def send_parts(stream: trio.abc.SendStream, parts: Sequence[Part]) -> None:
    """Write ``parts`` in order, whole (see the module docstring)."""
    if not isinstance(stream, trio.SocketStream) or not hasattr(stream.socket, "sendmsg"):
        await stream.send_all(b"".join(parts))
        return
    sock = stream.socket
    views = [part for part in parts if len(part)]  # sendmsg takes any buffer as it is
    first = 0
    while first < len(views):
        try:
            sent = await sock.sendmsg(views[first : first + MAX_PARTS])
        except OSError as exc:  # as send_all says it: the peer is gone
            raise trio.BrokenResourceError(f"socket send failed: {exc}") from exc
        while sent and first < len(views):  # skip what went out; cut into a part sent in part
            part = views[first]
            size = part.nbytes if isinstance(part, memoryview) else len(part)
            if sent >= size:
                sent -= size
                first += 1
            else:
                views[first] = memoryview(part).cast("B")[sent:]
                sent = 0
