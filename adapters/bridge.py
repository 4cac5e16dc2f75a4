"""Copying between two byte streams, and between a WebSocket and a message channel.

``splice(a, b)`` copies both ways until both directions ended: the end of one side's data
(``receive_some`` -> ``b""``) becomes a half-close (``send_eof``) of the other, so a program
that shuts down its writing side still gets the answer.  When one side breaks, the other is
closed, and ``splice`` returns (it never raises for a broken or closed stream): it is what the
app API, ``p2pos pipe``, ``serve``, ``expose`` and ``forward`` all use.

``websocket_bridge(stream, leftover, channel)`` serves RFC 6455 frames (wsproto) on ``stream``
(after the ``101``): each binary or text message is one channel message and each channel
message one binary WebSocket message.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import Awaitable, Callable

import trio
import wsproto.connection as wsc
import wsproto.events as wse
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from .streams import ChannelStream, MessageChannel

CHUNK = 256 * 1024
#: At most this many buffers per ``sendmsg`` (Linux's IOV_MAX).
IOV_MAX = 1024
#: A WebSocket message larger than this is refused (1009) before it is whole: far above what one
#: channel message carries, so the channel's own limit speaks first for any real message.
MAX_WS_MESSAGE = 1 << 20
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Prefixed(trio.abc.HalfCloseableStream):
    """``stream``, with ``leftover`` (bytes read past an HTTP head) returned first."""

    def __init__(self, stream: trio.abc.Stream, leftover: bytes) -> None:
        self.stream, self._leftover = stream, leftover

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._leftover:
            size = len(self._leftover) if max_bytes is None else max_bytes
            data, self._leftover = self._leftover[:size], self._leftover[size:]
            await trio.lowlevel.checkpoint()
            return bytes(data)
        return bytes(await self.stream.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        if isinstance(self.stream, trio.abc.HalfCloseableStream):
            await self.stream.send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()


_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


async def _copy(source: trio.abc.ReceiveStream, sink: trio.abc.SendStream) -> None:
    sock = _socket_of(sink)
    if isinstance(source, ChannelStream) and sock is not None:
        # A channel's bytes come in the pieces they arrived in (a packet's worth each): gathered by
        # sendmsg, they are copied once (into the kernel), not joined first.
        while pieces := await source.receive_pieces(CHUNK):
            await _send_pieces(sock, pieces)
    else:
        while data := await source.receive_some(CHUNK):
            await sink.send_all(data)
    if isinstance(sink, trio.abc.HalfCloseableStream):
        await sink.send_eof()


def _socket_of(stream: trio.abc.SendStream) -> trio.socket.SocketType | None:
    """The connected socket under ``stream`` (a ``SocketStream``, bare or ``Prefixed``), or None."""
    if isinstance(stream, Prefixed):
        stream = stream.stream
    return stream.socket if isinstance(stream, trio.SocketStream) else None


async def _send_pieces(sock: trio.socket.SocketType, pieces: list[bytes]) -> None:
    """Send every byte of ``pieces`` (a gathering ``sendmsg``, ``IOV_MAX`` pieces at a time)."""
    first = 0
    while first < len(pieces):
        batch = pieces[first : first + IOV_MAX]
        sent = await sock.sendmsg(batch)
        for piece in batch:
            if sent < len(piece):
                break
            sent -= len(piece)
            first += 1
        if sent:  # a piece went in part: the rest of it first
            pieces[first] = pieces[first][sent:]


async def splice(a: trio.abc.Stream, b: trio.abc.Stream) -> bool:
    """Copy a -> b and b -> a until both ended; True if both ended cleanly, False if one broke."""
    clean = True

    async def one_way(source: trio.abc.Stream, sink: trio.abc.Stream, cancel: trio.CancelScope) -> None:
        nonlocal clean
        try:
            await _copy(source, sink)
        except _BROKEN:
            clean = False
            cancel.cancel()

    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(one_way, a, b, scope)
            nursery.start_soon(one_way, b, a, scope)
    for stream in (a, b):
        with contextlib.suppress(*_BROKEN), trio.move_on_after(5) as cleanup:
            cleanup.shield = True
            await stream.aclose()
    return clean


def websocket_accept(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value for a client's ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2)."""
    digest = hashlib.sha1(key.encode() + _WS_GUID, usedforsecurity=False).digest()  # RFC 6455 names SHA-1
    return base64.b64encode(digest).decode()


async def websocket_bridge(stream: trio.abc.Stream, leftover: bytes, channel: MessageChannel) -> None:
    """Serve a message channel as WebSocket messages on ``stream`` (the handshake is done)."""
    ws = wsc.Connection(wsc.ConnectionType.SERVER)
    if leftover:
        ws.receive_data(leftover)

    async def flush(data: bytes) -> None:
        if data:
            await stream.send_all(data)

    async def from_app() -> None:
        parts: list[bytes] = []
        size = 0
        while True:
            for event in ws.events():
                if isinstance(event, wse.Message):
                    data = event.data.encode() if isinstance(event.data, str) else bytes(event.data)
                    parts.append(data)
                    size += len(data)
                    if size > MAX_WS_MESSAGE:  # fragments are joined in memory: bound them (1009)
                        await flush(ws.send(wse.CloseConnection(code=1009, reason="message too big")))
                        return
                    if event.message_finished:
                        try:
                            await channel.send(b"".join(parts))
                        except ValueError as exc:  # larger than a channel message can be: 1009 (RFC 6455 §7.4.1)
                            await flush(ws.send(wse.CloseConnection(code=1009, reason=str(exc)[:120])))
                            return
                        parts, size = [], 0
                elif isinstance(event, wse.Ping):
                    await flush(ws.send(event.response()))
                elif isinstance(event, wse.CloseConnection):
                    if ws.state is wsc.ConnectionState.REMOTE_CLOSING:
                        await flush(ws.send(event.response()))
                    return
            received = await stream.receive_some(CHUNK)
            if not received:
                return
            ws.receive_data(bytes(received))

    async def to_app() -> None:
        while True:
            try:
                message = await channel.receive()
            except trio.EndOfChannel:  # the peer closed the channel: the WebSocket is closed (1000)
                return
            await flush(ws.send(wse.Message(data=message)))

    async def until_either_ends(direction: Callable[[], Awaitable[None]], scope: trio.CancelScope) -> None:
        try:
            await direction()
        except (*_BROKEN, LocalProtocolError, RemoteProtocolError):
            pass
        scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(until_either_ends, from_app, nursery.cancel_scope)
        nursery.start_soon(until_either_ends, to_app, nursery.cancel_scope)
    with contextlib.suppress(*_BROKEN, LocalProtocolError), trio.move_on_after(2) as cleanup:
        cleanup.shield = True
        if ws.state is wsc.ConnectionState.OPEN:
            await flush(ws.send(wse.CloseConnection(code=1000)))
        await stream.aclose()
    await channel.aclose()
