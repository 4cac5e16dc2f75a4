"""adapters/bridge.py: splicing two streams with half-close, and a WebSocket over a message channel."""

from __future__ import annotations

from typing import Any, cast

import trio
import trio.testing
import wsproto.connection as wsc
import wsproto.events as wse

from p2pos.adapters.bridge import (
    MAX_WS_MESSAGE,
    Prefixed,
    _send_pieces,
    _socket_of,
    splice,
    websocket_accept,
    websocket_bridge,
)
from p2pos.adapters.streams import MessageChannel


async def test_splice_carries_both_ways_and_turns_an_end_into_a_half_close() -> None:
    left_app, left = trio.testing.memory_stream_pair()
    right, right_app = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        outcome: list[bool] = []

        async def run() -> None:
            outcome.append(await splice(Prefixed(left, b"early "), right))

        nursery.start_soon(run)
        await left_app.send_all(b"hello")
        await left_app.send_eof()
        received = b""
        while data := await right_app.receive_some():
            received += data
        assert received == b"early hello"  # the leftover first, then the stream, then its end
        await right_app.send_all(b"answer")  # the other direction still works after the half-close
        await right_app.send_eof()
        answer = b""
        while data := await left_app.receive_some():
            answer += data
        assert answer == b"answer"
    assert outcome == [True]


async def test_pieces_are_gathered_into_a_socket_whole_and_in_order_through_partial_sends() -> None:
    # A send buffer far smaller than the pieces: sendmsg takes part of a batch, often part of a
    # piece, many times over; the reader, slower, must still see every byte once, in order.
    import random
    import socket

    a, b = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    rng = random.Random(5)
    pieces = [rng.randbytes(rng.randint(1, 3000)) for _ in range(3000)]  # more than IOV_MAX of them
    expected = b"".join(pieces)
    received = bytearray()

    async def read() -> None:
        while data := await b.recv(rng.randint(100, 5000)):
            received.extend(data)
            await trio.sleep(0)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await _send_pieces(a, list(pieces))
            a.shutdown(socket.SHUT_WR)
    assert len(received) == len(expected)
    assert bytes(received) == expected
    a.close()
    b.close()


async def test_the_socket_under_a_stream_is_found_only_for_socket_streams() -> None:
    import socket

    a, b = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    stream = trio.SocketStream(a)
    assert _socket_of(stream) is a
    assert _socket_of(Prefixed(stream, b"x")) is a
    assert _socket_of(trio.testing.memory_stream_pair()[0]) is None
    await stream.aclose()
    b.close()


def test_websocket_accept_is_rfc_6455s_example() -> None:
    assert websocket_accept("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


class FakeChannel:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.inbox_send, self.inbox = trio.open_memory_channel[bytes](10)
        self.closed = False

    async def send(self, message: bytes) -> None:
        self.sent.append(message)
        await trio.lowlevel.checkpoint()

    async def receive(self) -> bytes:
        return await self.inbox.receive()

    async def aclose(self) -> None:
        self.closed = True
        await trio.lowlevel.checkpoint()


async def _client_events(stream: trio.abc.Stream, ws: wsc.Connection, want: type) -> Any:
    while True:
        for event in ws.events():
            if isinstance(event, want):
                return event
        ws.receive_data(bytes(await stream.receive_some()))


async def test_websocket_messages_are_channel_messages_and_oversize_ones_are_refused() -> None:
    server_side, client_side = trio.testing.memory_stream_pair()
    channel = FakeChannel()
    ws = wsc.Connection(wsc.ConnectionType.CLIENT)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(websocket_bridge, server_side, b"", cast(MessageChannel, channel))
        await client_side.send_all(ws.send(wse.Message(data=b"one")))
        await channel.inbox_send.send(b"from the peer")
        message = await _client_events(client_side, ws, wse.Message)
        assert bytes(message.data) == b"from the peer"
        chunk = b"x" * (MAX_WS_MESSAGE // 4)
        for _ in range(5):  # fragments of one message, more than the bound in all
            await client_side.send_all(ws.send(wse.Message(data=chunk, message_finished=False)))
        close = await _client_events(client_side, ws, wse.CloseConnection)
        assert close.code == 1009
    assert channel.sent == [b"one"] and channel.closed
