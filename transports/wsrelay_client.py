"""A peer's link to a WebSocket relay (spec/relay.md §7): trio driver of ``RelayClient``.

``RelayLink(url, identity)``; ``await nursery.start(link.run)`` keeps one WebSocket open to the
relay: TCP (through an HTTP CONNECT proxy when one is configured), TLS for ``wss://``, the
upgrade (wsproto; the frames after it are ``wsframes``'s, masked with keys from ``random``),
authentication; it reconnects with back-off when the link drops, pings every
``ping_interval`` seconds and gives the link up when nothing came for ``silence_timeout``.
``want(peer)`` / ``unwant(peer)``, ``send(peer, record)`` (never blocks: the record is dropped
when the peer is not paired) and ``await receive()`` for ``(peer_id, record)`` (``receive_batch(n)``
for the run received so far).
"""

from __future__ import annotations

import collections
import math
import os
import ssl
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request

from p2pos.proto.identity.identity import Identity
from p2pos.proto.relay import client as c
from p2pos.proto.relay import messages as m
from p2pos.proto.relay import wsframes as wf

from . import tcp_pacing
from .gather import Part, send_parts
from .http_connect import connect_tunnel, parse_proxy, proxy_for
from .wsrelay_server import RELAY_PATH, SUBPROTOCOL, read_frames

READ_SIZE = 262144  # several 65000-byte records per read
#: Records waiting for ``receive()``; more are dropped (the sessions' recovery resends).
RECEIVE_QUEUE = 4096
HANDSHAKE_TIMEOUT = 15.0
#: The longest HTTP answer to the upgrade read.
MAX_HEAD = 16 * 1024


class RelayLinkError(OSError):
    """The relay could not be reached, refused the upgrade or broke the protocol."""


def describe(exc: BaseException) -> str:
    """One line for a failed attempt: the first exception inside exception groups, with its cause."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = f"{type(exc).__name__}: {exc}"
    if exc.__cause__ is not None:
        text += f" ({type(exc.__cause__).__name__}: {exc.__cause__})"
    return text


def parse_relay_url(url: str) -> tuple[bool, str, int, str]:
    """``ws://host[:port][/path]`` or ``wss://…`` → ``(tls, host, port, path)``."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
    tls = parts.scheme == "wss"
    return tls, parts.hostname, parts.port or (443 if tls else 80), parts.path or RELAY_PATH


class RelayLink:
    """One long-lived link to the relay at ``url`` (see module docstring)."""

    def __init__(
        self,
        url: str,
        identity: Identity,
        *,
        proxy: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        ping_interval: float = 25.0,
        silence_timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        random: Callable[[int], bytes] = os.urandom,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.tls, self.host, self.port, self.path = parse_relay_url(url)
        self.identity = identity
        env = os.environ if env is None else env
        self.proxy = parse_proxy(proxy) if proxy else proxy_for(self.host, env)
        self.ssl_context = ssl_context
        self.ping_interval = ping_interval
        #: Nothing heard from the relay for this long (default two ping intervals): the link is dead (REL-7.6).
        self.silence_timeout = 2 * ping_interval if silence_timeout is None else silence_timeout
        self._last_heard = 0.0
        self._clock = clock
        self._random = random  # back-off jitter and the WebSocket masking keys
        self.client = c.RelayClient(identity, self.host)
        self.backoff = c.Backoff(random)
        self._wake = trio.Event()
        #: ``(peer_id, record)`` received and not yet taken (at most RECEIVE_QUEUE), and the event
        #: ``receive`` waits on while it is empty (a deque, not a memory channel: records come in
        #: runs from one read, and a run is handed over in one step).
        self._received: collections.deque[tuple[bytes, bytes]] = collections.deque()
        self._arrived = trio.Event()
        self._paired: dict[bytes, trio.Event] = {}
        self.ready = trio.Event()
        self._raw: list[Part] = []
        self._pong = b""  # the answer to the relay's latest Ping only (RFC 6455 §5.5.3)
        self._room: trio.Event | None = None  # set when the writer empties the send queue
        self._open = False  # the WebSocket is up and no Close was sent
        self._sending = trio.Lock()
        self.connections = 0
        self.dropped = 0
        self.last_error = ""
        #: Told each peer id whose pair ended (its link closed, or it unwanted us).
        self.on_unpaired: Callable[[bytes], None] | None = None

    # -- API -------------------------------------------------------------------------------

    def want(self, peer: bytes) -> None:
        self.client.want(peer)
        self._wake.set()

    def unwant(self, peer: bytes) -> None:
        self.client.unwant(peer)
        self._wake.set()

    def send(self, peer: bytes, record: bytes) -> bool:
        sent = self.client.send(peer, record)
        if sent:
            self._wake.set()
        return sent

    def has_room(self, nbytes: int) -> bool:
        """Whether a record of ``nbytes`` fits the link's send queue now (see ``wait_room``)."""
        return self.client.has_room(nbytes)

    async def wait_room(self) -> None:
        """Until the writer has taken the queue (or the link is lost): then ``send`` has room again."""
        if self._room is None:
            self._room = trio.Event()
        await self._room.wait()

    async def receive(self) -> tuple[bytes, bytes]:
        """The next ``(peer_id, record)``, waiting for one."""
        await self._wait_received()
        return self._received.popleft()

    async def receive_batch(self, limit: int) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` ``(peer_id, record)`` in the order received (at least one, waiting for it)."""
        await self._wait_received()
        received = self._received
        if len(received) <= limit:
            batch = list(received)
            received.clear()
            return batch
        return [received.popleft() for _ in range(limit)]

    async def _wait_received(self) -> None:
        """Until something is received; a checkpoint either way (trio's rule for async calls)."""
        if self._received:
            await trio.lowlevel.checkpoint()
        while not self._received:
            if self._arrived.is_set():
                self._arrived = trio.Event()
            await self._arrived.wait()

    async def wait_paired(self, peer: bytes) -> None:
        while not self.client.paired(peer):
            event = self._paired.setdefault(peer, trio.Event())
            await event.wait()

    # -- running ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, serve, reconnect after a back-off; until cancelled."""
        task_status.started()
        while True:
            try:
                await self._connect_and_serve()
            except Exception as exc:
                self.last_error = describe(exc)
            self.client.link_lost(self._clock())
            self._room_made()
            self._events()
            self.ready = trio.Event()
            await trio.sleep(self.backoff.next_delay())

    async def open_stream(self) -> trio.abc.Stream:
        """TCP to the relay or the proxy, CONNECT through the proxy, then TLS for wss://."""
        target = self.proxy or (self.host, self.port)
        stream: trio.abc.Stream = await tcp_pacing.open_tcp_stream(*target)
        try:
            if self.proxy is not None:
                stream = await connect_tunnel(stream, self.host, self.port)
            if self.tls:
                context = self.ssl_context or ssl.create_default_context()
                stream = trio.SSLStream(stream, context, server_hostname=self.host)
                await stream.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return stream

    async def _connect_and_serve(self) -> None:
        with trio.fail_after(HANDSHAKE_TIMEOUT):
            stream = await self.open_stream()
        try:
            ws = WSConnection(ConnectionType.CLIENT)
            shown = f"[{self.host}]" if ":" in self.host else self.host
            authority = shown if self.port == (443 if self.tls else 80) else f"{shown}:{self.port}"
            with trio.fail_after(HANDSHAKE_TIMEOUT):
                await stream.send_all(ws.send(Request(host=authority, target=self.path, subprotocols=[SUBPROTOCOL])))
                frames = await self._upgrade(stream, ws)
            self.connections += 1
            self._last_heard = self._clock()
            self._open = True
            self._sending = trio.Lock()  # the writer's and the reader's Close answer take turns
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, stream)
                nursery.start_soon(self._pinger)
                await self._reader(stream, frames)
                nursery.cancel_scope.cancel()
        finally:
            self._open = False
            await trio.aclose_forcefully(stream)

    async def _upgrade(self, stream: trio.abc.Stream, ws: WSConnection) -> wf.FrameReader:
        """wsproto reads the answer's head; the frames after it (the first may come in the same
        read) go to the returned reader."""
        head = bytearray()
        while (end := head.find(b"\r\n\r\n")) < 0:
            if len(head) > MAX_HEAD:
                raise RelayLinkError("the relay's answer to the upgrade is too long")
            data = await stream.receive_some(READ_SIZE)
            if not data:
                raise RelayLinkError("relay closed during the upgrade")
            head += data
        ws.receive_data(bytes(head[: end + 4]))
        for event in ws.events():
            if isinstance(event, AcceptConnection):
                frames = wf.FrameReader(server=False, max_message=m.MAX_MESSAGE, views=True)
                frames.feed(head[end + 4 :])
                return frames
            if isinstance(event, RejectConnection | RejectData):
                raise RelayLinkError(f"relay refused the WebSocket upgrade: {getattr(event, 'status_code', '')}")
        raise RelayLinkError("the relay did not accept the upgrade")

    async def _reader(self, stream: trio.abc.Stream, frames: wf.FrameReader) -> None:
        while True:
            try:
                while (message := frames.next_message()) is not None:
                    await self._message(stream, *message)
            except wf.FrameError as exc:
                raise RelayLinkError(f"relay broke WebSocket framing: {exc}") from None
            self._events()
            self._wake.set()
            if not await read_frames(stream, frames, READ_SIZE):
                raise RelayLinkError("relay closed the connection")
            self._last_heard = self._clock()

    async def _message(self, stream: trio.abc.Stream, opcode: int, payload: bytes | memoryview) -> None:
        if opcode == wf.BINARY:
            self.client.receive_message(payload, self._clock())  # copies what it keeps out of a view
            return
        if opcode == wf.TEXT:
            raise RelayLinkError("text message from the relay")
        body = bytes(payload)  # a control frame's, already bytes
        if opcode == wf.PING:
            self._pong = b"".join(wf.encode(wf.PONG, body, self._random(4)))
        elif opcode == wf.CLOSE:
            code, reason = wf.parse_close(body)
            if self._open:  # answer with the same code (RFC 6455 §5.5.1)
                self._open = False
                async with self._sending:
                    await stream.send_all(b"".join(wf.encode(wf.CLOSE, body[:2], self._random(4))))
            raise RelayLinkError(f"relay closed the link: {code} {reason}")

    def _events(self) -> None:
        while (event := self.client.next_event()) is not None:
            match event:
                case c.RecordReceived(peer_id=peer, record=record):
                    if len(self._received) < RECEIVE_QUEUE:
                        self._received.append((peer, record))
                        self._arrived.set()
                    else:
                        self.dropped += 1
                case c.LinkReady():
                    self.backoff.reset()
                    self.ready.set()
                case c.PeerPaired(peer_id=peer):
                    waiter = self._paired.pop(peer, None)
                    if waiter is not None:
                        waiter.set()
                case c.PeerUnpaired(peer_id=peer):
                    if self.on_unpaired is not None:
                        self.on_unpaired(peer)
                case c.LinkFailed(reason=reason):
                    raise RelayLinkError(f"relay broke the protocol: {reason}")

    async def _writer(self, stream: trio.abc.Stream) -> None:
        self._raw = []
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            out, self._raw = self._raw, []
            if self._pong:
                out.append(self._pong)
                self._pong = b""
            for head, tail in self.client.parts_to_send():
                out.extend(wf.encode_parts(wf.BINARY, head, tail, self._random(4)))
            self._room_made()
            if out and self._open:
                async with self._sending:
                    await send_parts(stream, out)

    def _room_made(self) -> None:
        if self._room is not None:
            self._room.set()
            self._room = None

    async def _pinger(self) -> None:
        if not math.isfinite(self.ping_interval):
            return
        step = min(self.ping_interval, self.silence_timeout / 2)
        last_ping = self._clock()
        while True:
            await trio.sleep(step)
            now = self._clock()
            if now - self._last_heard >= self.silence_timeout:
                raise RelayLinkError(f"nothing from the relay for {now - self._last_heard:.1f} s")
            if now - last_ping >= self.ping_interval:
                last_ping = now
                self._raw.extend(wf.encode(wf.PING, b"p2pos", self._random(4)))
                self._wake.set()
