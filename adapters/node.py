"""The trio node: a p2pos ``Endpoint`` driven over a UDP transport.

    async with open_node(keys, host="127.0.0.1") as node:
        conn = await node.connect(("127.0.0.1", 4000), expected_peer=peer)
        await conn.send(b"hello")
        reply = await conn.receive()

Incoming sessions arrive through ``await node.accept()``.  All time comes from
``trio.current_time()``, so tests can run under ``trio.testing.MockClock``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from typing import assert_never

import trio

from p2pos.proto import (
    Endpoint,
    ErrorCode,
    HandshakeCompleted,
    LocalKeys,
    MessageReceived,
    PeerId,
    ProtocolError,
    SessionClosed,
    SessionConfig,
)
from p2pos.transports.udp import Address, UdpTransport

_QUEUE = 1024


class ConnectionClosed(Exception):
    """The session ended; ``code`` and ``reason`` say why."""

    def __init__(self, code: ErrorCode, reason: str, by_peer: bool) -> None:
        who = "peer" if by_peer else "local side"
        super().__init__(f"session closed by {who}: {code.name}{f' ({reason})' if reason else ''}")
        self.code = code
        self.reason = reason
        self.by_peer = by_peer


class Connection:
    """An established, authenticated session to one peer."""

    def __init__(self, node: Node, session_id: int, event: HandshakeCompleted) -> None:
        self._node = node
        self.session_id = session_id
        self.peer_id: PeerId = event.peer_id
        self.sas = event.sas
        self.remote_static = event.remote_static
        self._send_messages, self._messages = trio.open_memory_channel[bytes](_QUEUE)
        self.closed: ConnectionClosed | None = None

    async def send(self, data: bytes) -> None:
        """Send one message (at most the record limit, ~64 KiB)."""
        if self.closed is not None:
            raise self.closed
        session = self._node.endpoint.session(self.session_id)
        if session is None:
            raise ConnectionClosed(ErrorCode.INTERNAL_ERROR, "session gone", False)
        session.send(data, trio.current_time())
        await self._node.flush()

    async def receive(self) -> bytes:
        """The next message; raises ConnectionClosed once the session has ended."""
        try:
            return await self._messages.receive()
        except trio.EndOfChannel:
            raise self.closed or ConnectionClosed(ErrorCode.INTERNAL_ERROR, "closed", False) from None

    async def aclose(self, code: ErrorCode = ErrorCode.NO_ERROR, reason: str = "") -> None:
        session = self._node.endpoint.session(self.session_id)
        if session is not None:
            session.close(trio.current_time(), code, reason)
            await self._node.flush()

    def _deliver(self, data: bytes) -> None:
        try:
            self._send_messages.send_nowait(data)
        except trio.WouldBlock:
            # The application is not reading.  Reliability and flow control arrive with channels;
            # until then a datagram-like session drops, as UDP would.
            self._node.dropped_messages += 1

    def _closed(self, exc: ConnectionClosed) -> None:
        self.closed = exc
        self._send_messages.close()


class Node:
    """Runs one Endpoint on one UDP socket.  Create with ``open_node``."""

    def __init__(self, keys: LocalKeys, transport: UdpTransport, config: SessionConfig | None) -> None:
        self.keys = keys
        self.peer_id = keys.identity.peer_id
        self.transport = transport
        self.endpoint = Endpoint(keys, config=config)
        self.dropped_messages = 0
        self._connections: dict[int, Connection] = {}
        self._pending: dict[int, trio.MemorySendChannel[Connection | ConnectionClosed]] = {}
        self._send_incoming, self._incoming = trio.open_memory_channel[Connection](_QUEUE)
        self._wake = trio.CancelScope()
        self._send_lock = trio.Lock()

    @property
    def address(self) -> Address:
        return self.transport.local_address

    async def connect(
        self, addr: Address, *, expected_peer: PeerId | None = None, remote_static: bytes | None = None
    ) -> Connection:
        """Handshake with the peer at ``addr``; raises ConnectionClosed if it fails.

        A malformed address raises ValueError before anything is sent.
        """
        addr = self.transport.check_address(addr)
        session = self.endpoint.connect(
            addr, trio.current_time(), expected_peer=expected_peer, remote_static=remote_static
        )
        send, receive = trio.open_memory_channel[Connection | ConnectionClosed](1)
        self._pending[session.local_index] = send
        await self.flush()
        result = await receive.receive()
        if isinstance(result, ConnectionClosed):
            raise result
        return result

    async def accept(self) -> Connection:
        """The next incoming, authenticated connection."""
        return await self._incoming.receive()

    async def flush(self) -> None:
        """Send everything the endpoint has queued and re-arm the timer."""
        async with self._send_lock:
            for data, addr in self.endpoint.datagrams_to_send(trio.current_time()):
                await self.transport.send(data, addr)  # type: ignore[arg-type]
        self._dispatch_events()
        self._wake.cancel()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            timer = self.endpoint.get_timer()
            self._wake = trio.CancelScope(deadline=timer if timer is not None else math.inf)
            with self._wake:
                data, addr = await self.transport.receive()
                self.endpoint.receive_datagram(data, addr, trio.current_time())
            now = trio.current_time()
            timer = self.endpoint.get_timer()
            if timer is not None and now >= timer:
                self.endpoint.handle_timer(now)
            await self.flush()

    def _dispatch_events(self) -> None:
        while (event := self.endpoint.next_event()) is not None:
            match event:
                case HandshakeCompleted():
                    conn = Connection(self, event.session_id, event)
                    self._connections[event.session_id] = conn
                    pending = self._pending.pop(event.session_id, None)
                    if pending is not None:
                        pending.send_nowait(conn)
                    else:
                        try:
                            self._send_incoming.send_nowait(conn)
                        except trio.WouldBlock:
                            session = self.endpoint.session(event.session_id)
                            if session is not None:
                                session.close(trio.current_time(), ErrorCode.APPLICATION_CLOSE, "busy")
                case MessageReceived():
                    target = self._connections.get(event.session_id)
                    if target is not None:
                        target._deliver(event.data)
                case SessionClosed():
                    closed = ConnectionClosed(event.code, event.reason, event.by_peer)
                    pending = self._pending.pop(event.session_id, None)
                    if pending is not None:
                        pending.send_nowait(closed)
                    conn_closed = self._connections.pop(event.session_id, None)
                    if conn_closed is not None:
                        conn_closed._closed(closed)
                case _:
                    assert_never(event)


@contextlib.asynccontextmanager
async def open_node(
    keys: LocalKeys, *, host: str = "127.0.0.1", port: int = 0, config: SessionConfig | None = None
) -> AsyncIterator[Node]:
    """A running node bound to ``host:port`` (0 picks a free port)."""
    transport = await UdpTransport.bind(host, port)
    node = Node(keys, transport, config)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            try:
                yield node
            finally:
                for session in node.endpoint.sessions():
                    if session.is_established:
                        session.close(trio.current_time())
                with contextlib.suppress(OSError, ProtocolError):
                    await node.flush()
                nursery.cancel_scope.cancel()
    finally:
        transport.close()
