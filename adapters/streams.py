"""Channels as trio objects: a reliable channel is a ``trio.abc.HalfCloseableStream``.

``ChannelStream`` passes ``trio.testing.check_half_closeable_stream``:

* ``send_all`` queues bytes into the channel's send buffer and waits for room
  (``ChannelWritable``) when it is full: a slow reader slows its sender through
  flow control, memory stays bounded, nothing is dropped.
* ``receive_some`` returns what has arrived, ``b""`` after the peer's FIN.
* ``send_eof`` sends the FIN after the queued bytes.
* ``aclose`` finishes this side gracefully (queued bytes still arrive, then the
  FIN) and stops reading.  Like a TCP socket closed with data still unread, a
  channel closed with unread data, or that receives data after it was closed,
  is reset, so that the peer's ``send_all`` fails with ``BrokenResourceError``
  instead of writing into the void.

``MessageChannel`` carries whole messages (unreliable, unordered, spec/channels.md
§6); its receive queue is bounded and counts what it drops.

A reset channel or a lost connection raises ``ChannelBroken`` (a
``trio.BrokenResourceError``) with the reason; a refused one ``ServiceRefused``, a
``ChannelBroken`` too: a stream this side opens may be written before the peer answers
(spec/channels.md §2.7), and a refusal then surfaces on its next read or write.  The node (node.py) routes the
core's events to these objects through the ``_on_*`` methods.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

import trio

from p2pos.proto import ErrorCode, LocalProtocolError, PeerId
from p2pos.proto.channels.recvbuf import joined

if TYPE_CHECKING:
    from p2pos.proto.channels.connection import Connection

    from .node import Node


class ChannelBroken(trio.BrokenResourceError):
    """The channel was reset by the peer, or its connection ended; the message says why."""

    def __init__(self, message: str, code: ErrorCode, *, by_peer: bool, application_code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.by_peer = by_peer
        self.application_code = application_code


def _why(code: ErrorCode, reason: str) -> str:
    """``CODE (reason)``: how every error of the node and its channels names what the core said."""
    return f"{code.name} ({reason})" if reason else code.name


class ServiceRefused(ChannelBroken):
    """The peer refused a channel to ``service`` (or the session ended before it answered).

    ``Node.connect`` raises it when it waits for the answer; a stream channel returned before the
    answer (early data, spec/channels.md §2.7) raises it from its next ``send_all`` or
    ``receive_some`` instead, and ``undelivered`` counts the bytes written on it, none of which
    reached the peer's application.
    """

    def __init__(
        self, service: str, code: ErrorCode, reason: str, application_code: int | None, *, undelivered: int = 0
    ) -> None:
        lost = f"; the {undelivered} bytes written were not delivered" if undelivered else ""
        super().__init__(
            f"peer refused service {service!r}: {_why(code, reason)}{lost}",
            code,
            by_peer=True,
            application_code=application_code,
        )
        self.service = service
        self.reason = reason
        self.undelivered = undelivered


class _Busy:
    """One task at a time per direction (trio's streams raise BusyResourceError otherwise)."""

    __slots__ = ("_held", "_what")

    def __init__(self, what: str) -> None:
        self._what = what
        self._held = False

    def __enter__(self) -> None:
        if self._held:
            raise trio.BusyResourceError(f"another task is already {self._what} on this channel")
        self._held = True

    def __exit__(self, *exc: object) -> None:
        self._held = False


class _Wakeup:
    """A level-free wake-up: ``wait()`` until the next ``set()``."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = trio.Event()

    async def wait(self) -> None:
        await self._event.wait()

    def set(self) -> None:
        self._event.set()
        self._event = trio.Event()


class _Channel:
    """What stream and message channels share: identity, the node, and how they end."""

    def __init__(self, node: Node, session_id: int, channel_id: int, service: str, peer_id: PeerId) -> None:
        self._node = node
        self.session_id = session_id
        self.channel_id = channel_id
        self.service = service
        self.peer_id = peer_id
        self._closed = False  # closed by this side (aclose)
        self._broken: ChannelBroken | None = None
        self._readable = _Wakeup()
        self._writable = _Wakeup()
        #: Set once the peer answered the OPEN (at once for a channel this side accepted).
        self._answered = trio.Event()
        self._refusal: ServiceRefused | None = None
        #: Bytes the application wrote (what a refusal reports as not delivered).
        self._written = 0

    async def wait_accepted(self) -> None:
        """Wait until the peer accepted the channel; ``ServiceRefused`` if it refused it.

        ``Node.connect`` returns a stream channel as soon as its OPEN is queued, so its first
        bytes travel with the OPEN; call this to learn the peer's answer before writing.
        """
        await self._answered.wait()
        if self._refusal is not None:
            raise self._refusal

    def _connection(self) -> Connection:
        """The connection this channel runs on; after calling it, call ``_updated()``."""
        connection = self._node.endpoint.connection(self.session_id)
        if connection is None:
            raise self._broken or ChannelBroken("the connection is gone", ErrorCode.INTERNAL_ERROR, by_peer=False)
        return connection

    def _updated(self) -> None:
        """Let the node collect the connection's output, events and timer."""
        self._node._updated(self.session_id)

    # -- from the node ---------------------------------------------------------------

    def _on_answer(self, refusal: ServiceRefused | None) -> None:
        """The peer accepted (None) or refused the channel this side opened."""
        if refusal is not None:
            if self._written:
                refusal = ServiceRefused(
                    refusal.service, refusal.code, refusal.reason, refusal.application_code, undelivered=self._written
                )
            self._refusal = refusal
            self._on_broken(refusal)
        self._answered.set()

    def _on_broken(self, broken: ChannelBroken) -> None:
        if self._broken is None:
            self._broken = broken
        self._readable.set()
        self._writable.set()

    def _on_writable(self) -> None:
        self._writable.set()


class ChannelStream(_Channel, trio.abc.HalfCloseableStream):
    """A reliable, ordered byte stream to one service on one peer."""

    def __init__(self, node: Node, session_id: int, channel_id: int, service: str, peer_id: PeerId) -> None:
        super().__init__(node, session_id, channel_id, service, peer_id)
        self._eof_received = False
        self._eof_sent = False
        self._full = False  # the last send_all filled the send buffer
        self._send_busy = _Busy("sending")
        self._receive_busy = _Busy("receiving")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with self._send_busy:
            self._check_sendable()
            view = memoryview(data).cast("B")
            # ``bytes`` never change: the send buffer keeps them as they are when they fit whole, with
            # no copy (what a socket read returns, relayed by ``bridge.splice``); the rest is copied.
            offer: bytes | memoryview = data if isinstance(data, bytes) else view
            sent, size = 0, len(view)
            while sent < size:
                try:
                    accepted = self._connection().send(self.channel_id, offer, trio.current_time())
                except LocalProtocolError:  # the channel is gone: refused or reset meanwhile
                    gone = ChannelBroken("the channel is gone", ErrorCode.INTERNAL_ERROR, by_peer=False)
                    raise self._broken or gone from None
                self._written += accepted
                self._updated()
                sent += accepted
                if sent < size:
                    offer = view[sent:]
                    self._full = True
                    await self._writable.wait()
                    self._check_sendable()
            await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        with self._send_busy:
            self._check_sendable()
            if self._full:
                await self._writable.wait()
                if self._closed:
                    raise trio.ClosedResourceError("the channel was closed")
            else:
                await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        with self._send_busy:
            if self._closed:
                raise trio.ClosedResourceError("the channel was closed")
            if self._broken is None:
                self._finish()
            await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return joined(await self.receive_pieces(max_bytes))

    async def receive_pieces(self, max_bytes: int | None = None) -> list[bytes]:
        """``receive_some``, as the pieces the bytes arrived in (``[]`` at the end of the stream):
        ``bridge.splice`` hands them to ``socket.sendmsg`` without joining them first."""
        if max_bytes is not None:
            if not isinstance(max_bytes, int):
                raise TypeError("max_bytes must be an int or None")
            if max_bytes < 1:
                raise ValueError("max_bytes must be at least 1")
        with self._receive_busy:
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("the channel was closed")
                pieces = self._read(max_bytes)
                if pieces:
                    await trio.lowlevel.checkpoint()
                    return pieces
                if self._eof_received:
                    await trio.lowlevel.checkpoint()
                    return []
                if self._broken is not None:
                    raise self._broken
                await self._readable.wait()

    async def aclose(self) -> None:
        """Finish this side (queued bytes still arrive, then the FIN) and stop reading.  Idempotent."""
        if not self._closed:
            self._closed = True
            if self._broken is None:
                unread = self._unread()
                if unread:
                    self._reset(ErrorCode.APPLICATION_CLOSE)
                else:
                    self._finish()
            self._readable.set()
            self._writable.set()
        await trio.lowlevel.checkpoint()

    # -- internals -----------------------------------------------------------------

    def _finish(self) -> None:
        """Send the FIN after the queued bytes, once."""
        if not self._eof_sent:
            self._eof_sent = True
            self._connection().finish(self.channel_id, trio.current_time())
            self._updated()

    def _check_sendable(self) -> None:
        if self._closed or self._eof_sent:
            raise trio.ClosedResourceError("the channel was closed for sending")
        if self._broken is not None:
            raise self._broken

    def _read(self, max_bytes: int | None) -> list[bytes]:
        if self._broken is not None and not self._eof_received:
            return []
        connection = self._node.endpoint.connection(self.session_id)
        if connection is None:
            return []
        try:
            pieces = connection.read_pieces(self.channel_id, max_bytes)
        except LocalProtocolError:  # the channel is gone (reset and forgotten)
            return []
        if pieces:
            self._updated()  # reading may open the peer's window: MAX_CHANNEL_DATA goes out
        return pieces

    def _unread(self) -> int:
        connection = self._node.endpoint.connection(self.session_id)
        channel = connection.channels.get(self.channel_id) if connection is not None else None
        return channel.recv.readable if channel is not None and channel.recv is not None else 0

    def _reset(self, code: ErrorCode) -> None:
        try:
            self._connection().reset_channel(self.channel_id, trio.current_time(), code)
            self._updated()
        except (LocalProtocolError, ChannelBroken):
            pass  # already gone
        self._on_broken(ChannelBroken("the channel was reset by this side", code, by_peer=False))

    # -- from the node ---------------------------------------------------------------

    def _on_data(self) -> None:
        if self._closed and self._broken is None:
            self._reset(ErrorCode.APPLICATION_CLOSE)  # data after close: tell the sender (TCP's RST)
        self._readable.set()

    def _on_end(self) -> None:
        self._eof_received = True
        self._readable.set()

    def _on_writable(self) -> None:
        self._full = False
        super()._on_writable()


class MessageChannel(_Channel):
    """Whole messages to one service on one peer: unreliable, each one delivered whole or not at all."""

    def __init__(
        self, node: Node, session_id: int, channel_id: int, service: str, peer_id: PeerId, *, queue: int = 64
    ) -> None:
        super().__init__(node, session_id, channel_id, service, peer_id)
        self._queue: collections.deque[bytes] = collections.deque()
        self._limit = queue
        #: Messages that arrived while the queue was full (the oldest are kept).
        self.dropped = 0
        self._peer_closed = False

    async def send(self, message: bytes) -> None:
        """Queue one message; it travels whole or is lost whole.  Raises ValueError if it can never fit."""
        if self._closed:
            raise trio.ClosedResourceError("the channel was closed")
        if self._broken is not None:
            raise self._broken
        try:
            self._connection().send_message(self.channel_id, bytes(message), trio.current_time())
        except LocalProtocolError as exc:
            raise ValueError(str(exc)) from None
        self._updated()
        await trio.lowlevel.checkpoint()

    async def receive(self) -> bytes:
        """The next message; ``trio.EndOfChannel`` once the peer closed its side and the queue is empty."""
        while True:
            if self._closed:
                raise trio.ClosedResourceError("the channel was closed")
            if self._queue:
                await trio.lowlevel.checkpoint()
                return self._queue.popleft()
            if self._peer_closed:
                raise trio.EndOfChannel
            if self._broken is not None:
                raise self._broken
            await self._readable.wait()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            if self._broken is None:
                try:
                    self._connection().close_channel(self.channel_id, trio.current_time())
                    self._updated()
                except (LocalProtocolError, ChannelBroken):
                    pass
            self._readable.set()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> MessageChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _on_message(self, data: bytes) -> None:
        if len(self._queue) >= self._limit:
            self.dropped += 1
            return
        self._queue.append(data)
        self._readable.set()

    def _on_end(self) -> None:
        self._peer_closed = True
        self._readable.set()
