"""Shared set-up of the relay tests: identities, a relay served in-process, record makers."""

from __future__ import annotations

import hashlib
import os
import re
from typing import TypeVar

import trio

from p2pos.proto import Endpoint
from p2pos.proto.identity.identity import Identity
from p2pos.proto.relay.server import RelayConfig, RelayCore
from p2pos.transports.wsrelay_client import RelayLink
from p2pos.transports.wsrelay_server import WsRelayServer

T = TypeVar("T")


def identity(name: str) -> Identity:
    return Identity.from_seed(hashlib.sha256(b"relay-test:" + name.encode()).digest())


def record(n: int, size: int = 100) -> bytes:
    """A fake sealed record: DATA-like first byte 4, then ``n`` and filler."""
    body = n.to_bytes(4, "big")
    return bytes([4]) + body + bytes(size - len(body) - 1)


async def start_relay(
    nursery: trio.Nursery, config: RelayConfig | None = None, *, node_peer: bytes | None = None, **kwargs: object
) -> WsRelayServer:
    core = RelayCore(config or RelayConfig(), os.urandom, node_peer=node_peer)
    server = WsRelayServer(core, **kwargs)  # type: ignore[arg-type]
    await nursery.start(server.serve, "127.0.0.1", 0)
    return server


def url_of(server: WsRelayServer, scheme: str = "ws", host: str = "127.0.0.1") -> str:
    return f"{scheme}://{host}:{server.addresses[0][1]}/p2pos/relay/v1"


async def paired_links(
    nursery: trio.Nursery, url: str, a: Identity, b: Identity, **kwargs: object
) -> tuple[RelayLink, RelayLink]:
    """Two links on ``url`` that want each other, returned once both are paired."""
    link_a = RelayLink(url, a, ping_interval=5.0, env={}, **kwargs)  # type: ignore[arg-type]
    link_b = RelayLink(url, b, ping_interval=5.0, env={}, **kwargs)  # type: ignore[arg-type]
    link_a.want(b.peer_id.public_key)
    link_b.want(a.peer_id.public_key)
    await nursery.start(link_a.run)
    await nursery.start(link_b.run)
    with trio.fail_after(10):
        await link_a.wait_paired(b.peer_id.public_key)
        await link_b.wait_paired(a.peer_id.public_key)
    return link_a, link_b


async def drive_endpoint(endpoint: Endpoint, link: RelayLink) -> None:
    """Run ``endpoint`` with every datagram going over ``link`` (REL-7.5): address ``("relay", peer id)``."""
    while True:
        now = trio.current_time()
        for datagrams, address, _ in endpoint.data_to_send(now):
            for data in datagrams:
                link.send(address[1], data)  # type: ignore[index]
        timer = endpoint.get_timer()
        deadline = now + 0.02 if timer is None else min(timer, now + 0.02)  # also picks up the test's sends
        with trio.move_on_at(deadline):
            peer, data = await link.receive()
            endpoint.receive_data(data, ("relay", peer), trio.current_time())
            continue
        now = trio.current_time()
        if timer is not None and now >= timer:
            endpoint.handle_timer(now)


async def next_endpoint_event(endpoint: Endpoint, kind: type[T], timeout: float = 10.0) -> T:
    with trio.fail_after(timeout):
        while True:
            event = endpoint.next_event()
            if isinstance(event, kind):
                return event
            if event is None:
                await trio.sleep(0.01)


class Proxy:
    """A tiny HTTP CONNECT proxy: loopback targets only; counts tunnels; may refuse."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.refuse = refuse
        self.tunnels: list[str] = []
        self.port = 0
        #: Per tunnel: whether it still forwards (``black_hole`` stops the open ones, silently).
        self._open: list[list[bool]] = []
        #: Every byte that crossed the proxy, both directions (what a capture of the relay's sockets sees).
        self.captured = bytearray()

    def black_hole(self) -> None:
        for flag in self._open:
            flag[0] = False

    async def serve(
        self, *, task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        await trio.serve_listeners(self._handle, listeners, task_status=task_status)

    async def _handle(self, client: trio.SocketStream) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = await client.receive_some(4096)
            if not data:
                return
            head += data
        match = re.match(rb"CONNECT (127\.0\.0\.1):(\d+) HTTP/1\.1\r\n", head)
        if self.refuse or match is None:
            await client.send_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
            await client.aclose()
            return
        self.tunnels.append(f"{match[1].decode()}:{int(match[2])}")
        upstream = await trio.open_tcp_stream(match[1].decode(), int(match[2]))
        await client.send_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        forwarding = [True]
        self._open.append(forwarding)

        async def pipe(src: trio.abc.Stream, dst: trio.abc.Stream) -> None:
            try:
                while data := await src.receive_some(65536):
                    if forwarding[0]:
                        self.captured += data
                        await dst.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            await trio.aclose_forcefully(dst)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pipe, client, upstream)
            nursery.start_soon(pipe, upstream, client)
