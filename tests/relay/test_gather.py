"""transports/gather.py: ``send_parts`` writes a list of buffers in order and whole, over a real
TCP socket whose small buffers force short writes (a part cut in the middle), and joined over a
stream that is not a socket."""

from __future__ import annotations

import random
import socket

import trio
import trio.testing

from p2pos.transports.gather import MAX_PARTS, send_parts


async def _read_exactly(stream: trio.abc.ReceiveStream, nbytes: int) -> bytes:
    got = bytearray()
    while len(got) < nbytes:
        data = await stream.receive_some(65536)
        assert data, "the stream ended early"
        got += data
    return bytes(got)


async def test_parts_arrive_in_order_through_short_writes() -> None:
    rng = random.Random(5)
    parts: list[bytes | bytearray | memoryview] = []
    for n in range(2 * MAX_PARTS + 7):  # more parts than one sendmsg takes, empty ones among them
        size = rng.choice([0, 1, 5, 14, 4096, 65535])
        data = rng.randbytes(size)
        if n % 4 == 3:  # a view whose items are not bytes: its length is not its size
            parts.append(memoryview(data[: size - size % 4]).cast("I"))
        else:
            parts.append(data if n % 4 == 0 else bytearray(data) if n % 4 == 1 else memoryview(data))
    expected = b"".join(parts)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    with trio.fail_after(30):  # a part miscounted would leave the reader waiting for ever
        async with trio.open_nursery() as nursery:
            client = await trio.open_tcp_stream("127.0.0.1", port)
            server = await listeners[0].accept()
            client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # many short writes
            received: list[bytes] = []

            async def read() -> None:
                received.append(await _read_exactly(server, len(expected)))

            nursery.start_soon(read)
            await send_parts(client, parts)
            await send_parts(client, [])  # nothing to write: returns at once
    assert received == [expected]
    await client.aclose()
    await server.aclose()
    await listeners[0].aclose()


async def test_a_stream_that_is_not_a_socket_gets_the_parts_joined() -> None:
    send, receive = trio.testing.memory_stream_pair()
    await send_parts(send, [b"ab", memoryview(b"cd"), bytearray(b"ef")])
    assert await receive.receive_some(100) == b"abcdef"


async def test_a_peer_gone_is_a_broken_resource() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listeners[0].accept()
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    await server.aclose()  # linger 0: a reset
    try:
        for _ in range(100):
            await send_parts(client, [b"x" * 65536, b"y"])
    except trio.BrokenResourceError:
        pass
    else:
        raise AssertionError("writing to a reset connection did not fail")
    await client.aclose()
    await listeners[0].aclose()
