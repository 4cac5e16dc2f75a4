"""bench/node.py's p2pos peer: the trio node (adapters/node.py) over real UDP on loopback.

    p2pos_peer.py [--mtu fixed|discover] server | client ...

``--mtu fixed`` keeps every datagram at 1200 bytes (no path-MTU probing);
``--mtu discover`` lets the node search up to what the outgoing interface
carries (on loopback, up to the largest UDP payload).  Which core runs (the
mypyc-compiled or the pure one) is whatever the interpreter imports: the
server's ready line and the client's result say which.

Set-up: from starting to connect (a new node on a new socket, the XX
handshake, a channel to "echo") to the echo of 1 byte.  Bulk: one channel to
"bulk", the payload in 64 KiB ``send_all`` calls, then EOF; the server answers
the count of bytes it received.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Awaitable, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import trio
from _peer import CHUNK, COUNT, ECHO, LOOPBACK, ClientArgs, emit, emit_client_result, parse_args

from p2pos.adapters.build_info import build_info
from p2pos.adapters.node import Listener, Node, open_node
from p2pos.adapters.streams import ChannelStream
from p2pos.proto import ChannelConfig, Identity, LocalKeys, PeerId


def channel_config(mode: str) -> ChannelConfig:
    if mode == "fixed":
        return ChannelConfig(max_datagram_size=1200, pmtu_probing=False)
    return ChannelConfig()


async def serve_echo(stream: ChannelStream) -> None:
    data = await stream.receive_some(1)
    await stream.send_all(data)
    await stream.aclose()


async def serve_bulk(stream: ChannelStream) -> None:
    received = 0
    first = last = 0.0
    while chunk := await stream.receive_some():
        last = time.perf_counter()
        if not received:
            first = last
        received += len(chunk)
    await stream.send_all(COUNT.pack(received))
    await stream.aclose()
    emit(bytes=received, seconds=last - first)


async def server(mode: str) -> None:
    keys = LocalKeys.generate(Identity.generate())
    async with open_node(keys, host=LOOPBACK, channels=channel_config(mode)) as node:
        echo, bulk = node.listen("echo"), node.listen("bulk")
        emit(port=node.address[1], peer_id=str(node.peer_id), core=build_info().core)
        async with trio.open_nursery() as nursery:

            async def accept_loop(listener: Listener, handler: Callable[[ChannelStream], Awaitable[None]]) -> None:
                async for stream in listener:
                    if isinstance(stream, ChannelStream):
                        nursery.start_soon(handler, stream)

            nursery.start_soon(accept_loop, echo, serve_echo)
            nursery.start_soon(accept_loop, bulk, serve_bulk)


async def open_stream(node: Node, peer: PeerId, port: int, service: str) -> ChannelStream:
    stream = await node.connect(peer, (LOOPBACK, port), service)
    if not isinstance(stream, ChannelStream):
        raise TypeError("expected a stream channel")
    return stream


async def echo_once(keys: LocalKeys, peer: PeerId, port: int, mode: str) -> tuple[float, float]:
    """Seconds from starting to connect to the echoed byte, and to the authenticated session."""
    async with open_node(keys, host=LOOPBACK, channels=channel_config(mode)) as node:
        start = time.perf_counter()
        await node.connect_peer(peer, (LOOPBACK, port))
        connected = time.perf_counter() - start
        stream = await open_stream(node, peer, port, "echo")
        await stream.send_all(ECHO)
        reply = await stream.receive_some(1)
        elapsed = time.perf_counter() - start
        await stream.aclose()
    if reply != ECHO:
        raise RuntimeError(f"echo answered {reply!r}")
    return elapsed, connected


async def bulk(keys: LocalKeys, peer: PeerId, port: int, total: int, mode: str) -> tuple[float, int, dict[str, float]]:
    payload = memoryview(bytes(CHUNK))
    async with open_node(keys, host=LOOPBACK, channels=channel_config(mode)) as node:
        stream = await open_stream(node, peer, port, "bulk")
        start = time.perf_counter()
        remaining = total
        while remaining:
            size = min(remaining, CHUNK)
            await stream.send_all(payload[:size])
            remaining -= size
        await stream.send_eof()
        answer = b""
        while len(answer) < COUNT.size:
            chunk = await stream.receive_some(COUNT.size - len(answer))
            if not chunk:
                break
            answer += chunk
        elapsed = time.perf_counter() - start
        connection = node.endpoint.connection(stream.session_id)
        stats = connection.stats() if connection is not None else {}
        transport = node.transports[0]
        stats["datagrams_per_send_call"] = getattr(transport, "datagrams_sent", 0) / max(
            1, getattr(transport, "send_calls", 1)
        )
        await stream.aclose()
    (received,) = COUNT.unpack(answer)
    return elapsed, received, stats


async def client(args: ClientArgs, mode: str) -> None:
    peer = PeerId.parse(str(args.server["peer_id"]))
    keys = LocalKeys.generate(Identity.generate())
    setups = [await echo_once(keys, peer, args.port, mode) for _ in range(args.warmup + args.setups)][args.warmup :]
    seconds, received, stats = await bulk(keys, peer, args.port, args.bulk_bytes, mode)
    emit_client_result(
        bulk_bytes=args.bulk_bytes,
        seconds=seconds,
        setup_seconds=[s for s, _ in setups],
        connect_seconds=[c for _, c in setups],
        received=received,
        core=build_info().core,
        mtu=stats.get("mtu", 0),
        datagrams_per_send_call=stats.get("datagrams_per_send_call", 0),
    )


def main() -> None:
    argv = sys.argv[1:]
    mode = "discover"
    if argv[:1] == ["--mtu"]:
        mode, argv = argv[1], argv[2:]
    args = parse_args(argv)
    trio.run(server, mode) if args is None else trio.run(client, args, mode)


if __name__ == "__main__":
    main()
