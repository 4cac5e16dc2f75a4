"""The WebSocket relay's trio driver (spec/relay.md §3.1, §4): TCP (optionally TLS), the HTTP/1.1
upgrade (wsproto, which runs h11) and WebSocket frames (``wsframes``: far less CPU per 64 KiB
message than wsproto's), around the sans-IO ``RelayCore``.

One task per connection reads; a second writes, because only one task may send on a trio
stream: everything that goes out (the upgrade answer, pongs, relay messages, the Close frame)
passes through the writer.  The reader waits ``core.read_delay`` before each read, so a link
over its byte quota is held back by TCP itself (REL-5.3).  A timer task fires the core's timers
(authentication and idle timeouts).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import socket
import ssl
from collections.abc import Callable
from typing import cast

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, Request
from wsproto.utilities import ProtocolError as WsProtocolError

from p2pos.proto.relay import messages as m
from p2pos.proto.relay import wsframes as wf
from p2pos.proto.relay.server import RelayCore

from . import tcp_pacing
from .gather import Part, send_parts
from .gso import LINUX

#: The HTTP path and WebSocket subprotocol of relay protocol version 1 (REL-3.1).
RELAY_PATH = "/p2pos/relay/v1"
SUBPROTOCOL = "p2pos-relay.1"
#: Bytes read at a time: several 64 KiB messages per read while the link's quota allows, else one.
READ_SIZE = 65536
READ_SIZE_BULK = 262144
#: How much a writer takes from the core per write (``gather.send_parts``: the parts unjoined).
WRITE_BATCH = 256 * 1024
#: The longest HTTP upgrade request read (h11's own limit for an incomplete request head).
MAX_HEAD = 16 * 1024
#: Time a closing link gets to flush its Close frame.
CLOSE_GRACE = 2.0
#: ``TCP_NOTSENT_LOWAT`` (``linux/tcp.h``) and the unsent bytes the relay lets the kernel hold per link.
TCP_NOTSENT_LOWAT = 25
NOTSENT_LOWAT = 128 * 1024

NodeSink = Callable[[list[tuple[bytes, tuple[str, int], bytes]]], None]


def host_of(header: str) -> str:
    """The host of an HTTP ``Host`` header value, lower case, without port or brackets."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header[1:]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _leaf(exc: BaseException) -> str:
    """The name of the first exception inside (possibly nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return type(exc).__name__


@dataclasses.dataclass(eq=False)
class _Conn:
    link: int
    stream: trio.abc.Stream
    ws: WSConnection
    wake: trio.Event = dataclasses.field(default_factory=trio.Event)
    raw: list[Part] = dataclasses.field(default_factory=list)
    #: The Pong owed for the latest Ping only (RFC 6455 §5.5.3), so pings cannot pile up answers.
    pong: bytes = b""
    close: tuple[int, str] | None = None
    scope: trio.CancelScope | None = None
    #: The upgrade request read so far; the frames once upgraded (None before), and whether the
    #: link is open for messages (upgraded, no Close sent or received).
    head: bytearray = dataclasses.field(default_factory=bytearray)
    frames: wf.FrameReader | None = None
    open: bool = False


async def read_frames(stream: trio.abc.ReceiveStream, frames: wf.FrameReader, size: int) -> int:
    """Read up to ``size`` bytes of an upgraded link into ``frames``: how many (0: the peer closed).
    A plain TCP link is read straight into the reader's buffer (no copy); a socket error is a
    broken link, as trio's ``receive_some`` reports it."""
    if isinstance(stream, trio.SocketStream):
        try:
            count = await stream.socket.recv_into(frames.space(size), size)
        except OSError as exc:
            raise trio.BrokenResourceError(f"socket receive failed: {exc}") from exc
        frames.filled(count)
        return count
    data = await stream.receive_some(size)
    frames.feed(data)
    return len(data)


class WsRelayServer:
    """Serves ``core`` on TCP listeners.  ``node_sink`` receives records for the co-located node."""

    def __init__(
        self,
        core: RelayCore,
        *,
        ssl_context: ssl.SSLContext | None = None,
        node_sink: NodeSink | None = None,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.core, self.ssl_context, self.node_sink, self._clock = core, ssl_context, node_sink, clock
        self._conns: dict[int, _Conn] = {}
        self._timer_wake = trio.Event()
        self._armed = math.inf
        self.addresses: list[tuple[str, int]] = []
        #: The listeners run the unpaced TCP controller (transports/tcp_pacing.py).
        self._unpaced = False

    async def serve(
        self, host: str, port: int, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on ``host:port`` and serve until cancelled; ``self.addresses`` is set when started."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        for listener in listeners:  # links from this host run unpaced; _handle restores the others
            self._unpaced = tcp_pacing.unpace(listener.socket) is not None or self._unpaced
        self.addresses = [tuple(listener.socket.getsockname()[:2]) for listener in listeners]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._timers)
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started()

    # -- core plumbing ----------------------------------------------------------------------

    def pump(self) -> None:
        """Hand the core's output to the writers, the node and the timer task."""
        for link in self.core.links_with_output():
            conn = self._conns.get(link)
            if conn is not None:
                conn.wake.set()
        for link, code, why in self.core.closes():
            conn = self._conns.get(link)
            if conn is not None and conn.close is None:
                conn.close = (int(code), why)
                conn.wake.set()
                if conn.scope is not None:
                    conn.scope.deadline = min(conn.scope.deadline, self._clock() + CLOSE_GRACE)
        if self.node_sink is not None:
            records = self.core.node_records()
            if records:
                self.node_sink(records)
        deadline = self.core.get_timer()
        if deadline is not None and deadline < self._armed:
            self._timer_wake.set()

    async def _timers(self) -> None:
        while True:
            deadline = self.core.get_timer()
            self._armed = math.inf if deadline is None else deadline
            with trio.move_on_at(self._armed):
                await self._timer_wake.wait()
            self._timer_wake = trio.Event()
            now = self._clock()
            if deadline is not None and now >= deadline:
                self.core.handle_timer(now)
                self.pump()

    # -- one connection ---------------------------------------------------------------------

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            address = stream.socket.getpeername()
        except OSError:
            await trio.aclose_forcefully(stream)
            return
        link = self.core.open_link((address[0], address[1]), self._clock())
        if link is None:
            await trio.aclose_forcefully(stream)
            return
        if self._unpaced and not tcp_pacing.on_this_host(str(address[0])):
            tcp_pacing.restore_default(stream.socket)  # before anything is sent (TLS included)
        if LINUX:
            # Keep the kernel's unsent bytes low, so that what waits for a slow receiver waits in the
            # relay's per-link queue, where REL-5.4 bounds it and drops, not in a socket buffer.
            with contextlib.suppress(OSError):
                stream.setsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT, NOTSENT_LOWAT)
        wrapped: trio.abc.Stream = stream
        if self.ssl_context is not None:
            wrapped = trio.SSLStream(stream, self.ssl_context, server_side=True)
        conn = _Conn(link, wrapped, WSConnection(ConnectionType.SERVER))
        self._conns[link] = conn
        self.pump()
        try:
            with trio.CancelScope() as scope:
                conn.scope = scope
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer, conn)
                    await self._reader(conn)
                    nursery.cancel_scope.cancel()
        except Exception as exc:
            self.core.stats[f"connection_error_{_leaf(exc)}"] += 1
        finally:
            del self._conns[link]
            self.core.link_lost(link, self._clock())
            self.pump()
            await trio.aclose_forcefully(wrapped)

    async def _reader(self, conn: _Conn) -> None:
        while True:
            if conn.close is not None:
                # Closing: read and drop until the peer's EOF (at most CLOSE_GRACE), so that closing a
                # socket with unread bytes (a TCP reset) never destroys the Close frame in flight.
                if not await conn.stream.receive_some(READ_SIZE):
                    return
                continue
            delay = self.core.read_delay(conn.link, self._clock())
            if delay > 0:
                await trio.sleep(delay)
            bulk = self.core.read_allowance(conn.link, self._clock()) >= READ_SIZE_BULK
            size = READ_SIZE_BULK if bulk else READ_SIZE
            frames = conn.frames
            if frames is None:
                data = await conn.stream.receive_some(size)
                count = len(data)
                self.core.charge(conn.link, count, self._clock())
                self._upgrade(conn, data)
            else:
                count = await read_frames(conn.stream, frames, size)
                self.core.charge(conn.link, count, self._clock())
                if count:
                    self._messages(conn, frames)
            self.pump()
            conn.wake.set()
            if not count:
                return

    def _upgrade(self, conn: _Conn, data: bytes | bytearray) -> None:
        """The HTTP upgrade (wsproto): the request head, then the frames after it (if any)."""
        conn.head += data
        end = conn.head.find(b"\r\n\r\n")
        if end < 0 and data and len(conn.head) <= MAX_HEAD:
            return
        head, rest = (conn.head, b"") if end < 0 else (conn.head[: end + 4], conn.head[end + 4 :])
        conn.head = bytearray()
        try:
            conn.ws.receive_data(bytes(head) if head else None)
            if end < 0 and data:
                raise WsProtocolError("request head too long")
            for event in conn.ws.events():
                if isinstance(event, Request):
                    self._request(conn, event)
        except WsProtocolError as exc:
            self.core.receive_bad(conn.link, f"WebSocket: {exc}", self._clock())
            conn.raw.append(conn.ws.send(RejectConnection(status_code=400)))
            conn.close = (0, "bad HTTP")
            return
        if conn.frames is not None and rest:
            conn.frames.feed(rest)
            self._messages(conn, conn.frames)

    def _request(self, conn: _Conn, request: Request) -> None:
        now = self._clock()
        if request.target != RELAY_PATH or SUBPROTOCOL not in request.subprotocols:
            conn.raw.append(conn.ws.send(RejectConnection(status_code=404)))
            self.core.receive_bad(conn.link, "wrong path or subprotocol", now)
            conn.close = (0, "rejected")
            return
        conn.raw.append(conn.ws.send(AcceptConnection(subprotocol=SUBPROTOCOL)))
        conn.frames = wf.FrameReader(server=True, max_message=m.MAX_MESSAGE)
        conn.open = True
        self.core.link_upgraded(conn.link, host_of(request.host), now)

    def _messages(self, conn: _Conn, frames: wf.FrameReader) -> None:
        """Hand every whole message read to the core; answer pings and a Close."""
        while conn.close is None:
            now = self._clock()
            try:
                message = frames.next_message()
                if message is None:
                    return
                opcode, payload = message[0], cast(bytes, message[1])  # a server's reader returns bytes (no views)
                if opcode == wf.CLOSE:
                    wf.parse_close(payload)
            except wf.FrameError as exc:
                self.core.receive_bad(conn.link, f"WebSocket: {exc}", now)
                return
            self._message(conn, opcode, payload, now)

    def _message(self, conn: _Conn, opcode: int, payload: bytes, now: float) -> None:
        """One whole message or control frame from the link."""
        if opcode == wf.BINARY:
            self.core.receive_message(conn.link, payload, now)
        elif opcode == wf.TEXT:
            self.core.receive_bad(conn.link, "text message", now)
        elif opcode == wf.PING:
            self.core.touch(conn.link, now)
            conn.pong = b"".join(wf.encode(wf.PONG, payload))
        elif opcode == wf.PONG:
            self.core.touch(conn.link, now)
        else:  # CLOSE: answer with the same code (RFC 6455 §5.5.1), then close
            if conn.open:
                conn.raw.extend(wf.encode(wf.CLOSE, payload[:2]))
                conn.open = False
            conn.close = (0, "closed by the peer")

    async def _writer(self, conn: _Conn) -> None:
        while True:
            await conn.wake.wait()
            conn.wake = trio.Event()
            closing = conn.close  # what this round sends: a close decided during send_all waits for the next
            out, conn.raw = conn.raw, []
            if conn.pong:
                out.append(conn.pong)
                conn.pong = b""
            if closing is None and conn.open:
                for head, tail in self.core.take_parts(conn.link, WRITE_BATCH):
                    out.extend(wf.encode_parts(wf.BINARY, head, tail))
            if closing is not None and closing[0] and conn.open:
                out.extend(wf.encode(wf.CLOSE, wf.close_payload(closing[0], closing[1][:120])))
                conn.open = False
            if out:
                await send_parts(conn.stream, out)
            if closing is None:
                if self.core.pending(conn.link):
                    conn.wake.set()
            else:
                if isinstance(conn.stream, trio.SocketStream):
                    await conn.stream.send_eof()
                return  # the reader drains until the peer's EOF; the scope's deadline bounds it
