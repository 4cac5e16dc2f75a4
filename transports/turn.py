"""A TURN allocation as a virtual datagram socket (trio driver of p2pos_proto/nat/turn.py, spec/turn.md §7).

    server = parse_turn_url("turn:127.0.0.1:3478?transport=tcp")
    async with open_turn_socket(server, TurnCredentials(username="alice", password="pw")) as turn:
        print(turn.relayed)                       # where peers send to reach us
        await turn.send(datagram, peer_address)    # relayed to the peer over UDP
        await turn.send_many(datagrams, peer_address)  # a batch: one flush, GSO runs on a UDP leg
        datagram, peer = await turn.receive()      # or: async for datagram, peer in turn
        batch = await turn.receive_batch()         # everything received so far: [(datagram, peer)]

The client's leg is UDP, TCP or TLS (``turns:``, give an ``ssl_context``); whatever the leg,
what the peer sees is UDP from ``relayed``.  Timers run in a background task on trio's clock
(so ``MockClock`` drives them); refreshes, permissions and channels are kept up by the core.
Leaving the ``async with`` releases the allocation (Refresh LIFETIME 0, at most
``release_timeout`` seconds).  A UDP leg is read up to ``READ_BATCH`` datagrams per wake-up and
written straight to its socket (spec/turn.md TRN-8.1).  A refused login, an unreachable server
or a lost connection raise ``TurnError`` with the reason, from ``open_turn_socket`` or from the
next ``send`` / ``receive``.
"""

from __future__ import annotations

import dataclasses
import errno
import math
import secrets
import socket as _socket
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import assert_never

import trio

from p2pos.proto.nat.turn import TurnClient, TurnConfig, TurnState
from p2pos.proto.nat.turn_config import TurnCredentials, TurnServer, TurnTransport
from p2pos.proto.nat.turn_events import (
    Address,
    TurnAllocated,
    TurnDataReceived,
    TurnFailed,
    TurnPeerFailed,
    TurnRefreshed,
    TurnReleased,
)
from p2pos.proto.nat.turn_framing import CHANNEL_HEADER, channel_header
from p2pos.transports import socket_options, tcp_pacing
from p2pos.transports.gso import GSO_REFUSALS, enable_gso, plan_runs, segment_cmsg

_RECEIVE_SIZE = 65536
#: Datagrams read from a UDP leg in one go (then the core's output is flushed once).
READ_BATCH = 64
#: Datagrams ``receive_batch`` hands over at most at once.
DELIVER_BATCH = 256
#: Refused peer IPs remembered (``TurnSocket.refused``).
MAX_REFUSED = 256
#: Datagrams from peers held for a slow reader before the newest are dropped (UDP semantics).
RECEIVE_QUEUE = 1024


class TurnError(Exception):
    """The TURN allocation could not be made or was lost; the message says why."""


class TurnSocket:
    """An open allocation; made by ``open_turn_socket``, not directly."""

    def __init__(self, server: TurnServer, client: TurnClient) -> None:
        self.server = server
        self.client = client
        self.relayed: Address | None = None
        self.mapped: Address | None = None
        self.lifetime = 0
        #: Refreshes the server granted (the core refreshes before the lifetime runs out, TRN-5.3).
        self.refreshes = 0
        #: Peer IPs whose permission the server refused, with why (until ``add_peer`` asks again);
        #: at most ``MAX_REFUSED`` are kept, the oldest forgotten first.
        self.refused: dict[str, str] = {}
        #: Called with each ``TurnPeerFailed`` (a permission or a channel the server refused).
        self.on_peer_failed: Callable[[TurnPeerFailed], None] | None = None
        self.dropped = 0
        #: UDP leg: system calls that sent messages to the server, and the messages they carried
        #: (GSO: many per call); reads that found messages, and the messages read.
        self.send_calls = self.messages_sent = self.read_calls = self.messages_read = 0
        #: Messages the UDP leg's socket refused as too long (EMSGSIZE), dropped.
        self.too_long = 0
        self._error: str | None = None
        self._released = trio.Event()
        self._allocated = trio.Event()
        self._refreshed = trio.Event()
        self._timer_moved = trio.Event()
        self._progress = trio.Event()
        self._send_in, self._receive_out = trio.open_memory_channel[tuple[bytes, Address]](RECEIVE_QUEUE)
        self._udp: trio.socket.SocketType | None = None
        #: The UDP leg's own socket object (non-blocking): reads and writes go to it directly
        #: while it has data or room, and wait on ``_udp`` only when it has not.
        self._raw: _socket.socket | None = None
        self._gso = False
        #: The deadline the timer task sleeps until (it is woken only for an earlier one).
        self._armed: float | None = None
        self._stream: trio.abc.Stream | None = None
        self._send_lock = trio.Lock()
        #: Flushes holding the core's output (waiting for the lock or the socket): order is kept.
        self._flushing = 0

    # -- public -------------------------------------------------------------------

    async def send(self, datagram: bytes, peer: Address) -> None:
        """Relay ``datagram`` to ``peer`` (held until its permission is installed)."""
        self._raise_if_failed()
        self.client.send(datagram, peer, trio.current_time())
        await self._flush()

    async def send_many(self, datagrams: Sequence[bytes], peer: Address) -> None:
        """Relay each of ``datagrams`` to ``peer``, in order: one flush for all (on a UDP leg,
        equal-size ChannelData messages leave in GSO runs, one call each)."""
        self._raise_if_failed()
        now = trio.current_time()
        for datagram in datagrams:
            self.client.send(datagram, peer, now)
        await self._flush()

    def send_now(self, datagrams: Sequence[bytes], peer: Address) -> int:
        """Relay as many of ``datagrams`` to ``peer`` as go at once, without waiting; how many went.

        The fast path of a UDP leg (TRN-8.2): once ``peer``'s channel is bound, each datagram
        leaves as ChannelData written straight to the socket, its 4-byte header and the datagram
        side by side in one ``sendmsg`` (no copy), runs of equal size in one GSO call each.  It
        stops at the first datagram that cannot go at once (a full socket buffer, a refusal, no
        channel yet, the core or another task sending): the caller sends the rest with
        ``send_many``, in order.
        """
        raw = self._raw
        if raw is None or self._flushing or not datagrams or self._error is not None:
            return 0
        number = self.client.channel_for(peer, trio.current_time())
        if number is None:
            return 0
        sent = 0
        gso = self._gso
        for run in plan_runs([len(d) + CHANNEL_HEADER for d in datagrams]) if gso else ():
            parts: list[bytes] = []
            for datagram in datagrams[run.start : run.stop]:
                parts.append(channel_header(number, len(datagram)))
                parts.append(datagram)
            try:
                if run.count == 1:
                    raw.sendmsg(parts)
                else:
                    raw.sendmsg(parts, [segment_cmsg(run.segment)])
            except OSError:  # a full buffer, or a refusal that send_many deals with
                return sent
            self.send_calls += 1
            self.messages_sent += run.count
            sent += run.count
        if not gso:
            for datagram in datagrams:
                try:
                    raw.sendmsg([channel_header(number, len(datagram)), datagram])
                except OSError:
                    return sent
                self.send_calls += 1
                self.messages_sent += 1
                sent += 1
        return sent

    async def receive(self) -> tuple[bytes, Address]:
        """The next ``(datagram, peer address)`` relayed to us; ``TurnError`` once the allocation is gone."""
        try:
            return await self._receive_out.receive()
        except trio.EndOfChannel:
            raise TurnError(self._error or "the TURN allocation was released") from None

    async def receive_batch(self) -> list[tuple[bytes, Address]]:
        """Everything relayed to us and not yet taken (at most ``DELIVER_BATCH``), waiting for the first."""
        batch = [await self.receive()]
        while len(batch) < DELIVER_BATCH:
            try:
                batch.append(self._receive_out.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        return batch

    def __aiter__(self) -> AsyncIterator[tuple[bytes, Address]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[tuple[bytes, Address]]:
        while True:
            try:
                yield await self._receive_out.receive()
            except trio.EndOfChannel:
                return

    async def add_peer(self, peer: Address, *, wait: bool = True) -> None:
        """Let ``peer`` reach us: install its permission (and channel); with ``wait``, until the server confirmed."""
        self._raise_if_failed()
        self.refused.pop(peer[0], None)
        self.client.add_peer(peer, trio.current_time())
        await self._flush()
        while wait and not self.client.has_permission(peer[0]):
            self._raise_if_failed()
            if peer[0] in self.refused:
                raise TurnError(f"TURN {self.server.url}: permission for {peer[0]}: {self.refused[peer[0]]}")
            await self._progress.wait()

    async def refresh(self) -> int:
        """Refresh now; the lifetime the server granted."""
        self._raise_if_failed()
        self._refreshed = trio.Event()
        self.client.refresh(trio.current_time())
        await self._flush()
        await self._refreshed.wait()
        self._raise_if_failed()
        return self.lifetime

    async def release(self) -> None:
        """Give the allocation back and wait for the server's answer (or the client's timeout)."""
        if self.client.state in (TurnState.ALLOCATED, TurnState.ALLOCATING):
            self.client.release(trio.current_time())
            await self._flush()
            await self._released.wait()

    # -- driving the core ---------------------------------------------------------

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise TurnError(self._error)
        if self.client.state in (TurnState.RELEASED, TurnState.RELEASING):
            raise TurnError("the TURN allocation was released")

    async def _flush(self) -> None:
        """Send what the core has queued, dispatch its events, re-arm the timer."""
        out = self.client.datagrams_to_send(trio.current_time())
        if out:
            self._flushing += 1  # taken from the core, not sent yet: ``send_now`` must not pass it
            try:
                async with self._send_lock:
                    if self._raw is not None:
                        await self._send_udp(self._raw, out)
                    elif self._stream is not None:
                        await self._stream.send_all(b"".join(out))
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                if self._raw is None or getattr(exc, "errno", None) not in (errno.ECONNREFUSED, errno.EHOSTUNREACH):
                    self.client.fail(f"cannot send to {self.server.url}: {exc}")
            finally:
                self._flushing -= 1
        self._dispatch()
        deadline = self.client.get_timer()
        if deadline != self._armed and (self._armed is None or deadline is None or deadline < self._armed):
            self._timer_moved.set()  # an earlier (or no) deadline: a later one waits for the armed one
        self._progress.set()
        self._progress = trio.Event()

    async def _send_udp(self, raw: _socket.socket, out: list[bytes]) -> None:
        """The core's messages to the server, in order, over the UDP leg ``raw``: runs of equal size
        in one GSO call each (the leg goes to one address), straight to the socket while it has room.
        A message the socket refuses as too long is dropped and counted (``too_long``), like a
        datagram lost on the way: it never ends the allocation."""
        if not self._gso:
            for message in out:
                await self._send_one(raw, message)
            return
        for run in plan_runs([len(m) for m in out]):
            if run.count == 1:
                await self._send_one(raw, out[run.start])
                continue
            while True:
                try:
                    raw.sendmsg(out[run.start : run.stop], [segment_cmsg(run.segment)])
                    self.send_calls += 1
                    self.messages_sent += run.count
                    break
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(raw)
                except OSError as exc:
                    if exc.errno != errno.EMSGSIZE and exc.errno not in GSO_REFUSALS:
                        raise
                    if exc.errno in GSO_REFUSALS:
                        self._gso = False  # the kernel refuses segmentation here: one message per call
                    for message in out[run.start : run.stop]:
                        await self._send_one(raw, message)
                    break

    async def _send_one(self, raw: _socket.socket, message: bytes) -> None:
        while True:
            try:
                raw.send(message)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(raw)
                continue
            except OSError as exc:
                if exc.errno != errno.EMSGSIZE:
                    raise
                self.too_long += 1
                return
            self.send_calls += 1
            self.messages_sent += 1
            return

    def _dispatch(self) -> None:
        while (event := self.client.next_event()) is not None:
            match event:
                case TurnDataReceived(peer=peer, data=data):
                    try:
                        self._send_in.send_nowait((data, peer))
                    except trio.WouldBlock:
                        self.dropped += 1
                case TurnAllocated(relayed=relayed, mapped=mapped, lifetime=lifetime):
                    self.relayed, self.mapped, self.lifetime = relayed, mapped, lifetime
                    self._allocated.set()
                case TurnRefreshed(lifetime=lifetime):
                    self.lifetime = lifetime
                    self.refreshes += 1
                    self._refreshed.set()
                case TurnPeerFailed(peer=(ip, port), reason=reason):
                    if port == 0:  # a permission: the whole IP (a refused channel only costs Send indications)
                        self.refused.pop(ip, None)
                        self.refused[ip] = reason
                        while len(self.refused) > MAX_REFUSED:
                            del self.refused[next(iter(self.refused))]
                        self._progress.set()
                        self._progress = trio.Event()
                    if self.on_peer_failed is not None:
                        self.on_peer_failed(event)
                case TurnFailed(reason=reason, code=code):
                    self._error = f"TURN {self.server.url}: {reason}" + (f" (STUN error {code})" if code else "")
                    self._end()
                case TurnReleased():
                    self._end()
                case _:
                    assert_never(event)

    def _end(self) -> None:
        self._send_in.close()
        self._progress.set()
        for waiter in (self._allocated, self._refreshed, self._released):
            waiter.set()

    async def _timer_loop(self) -> None:
        while True:
            self._timer_moved = trio.Event()
            deadline = self._armed = self.client.get_timer()
            with trio.move_on_at(math.inf if deadline is None else deadline):
                await self._timer_moved.wait()
                continue
            self._armed = None
            self.client.handle_timer(trio.current_time())
            await self._flush()

    async def _reader(self) -> None:
        while True:
            try:
                if self._raw is not None:
                    await trio.lowlevel.wait_readable(self._raw)
                    if self._read_udp(self._raw):
                        await self._flush()
                    continue
                if self._stream is not None:
                    data = bytes(await self._stream.receive_some(_RECEIVE_SIZE))
                    if not data:
                        self.client.receive_eof(trio.current_time())
                        await self._flush()
                        return
                else:
                    return
            except OSError as exc:
                if self._udp is not None and exc.errno == errno.ECONNREFUSED:
                    self.client.fail(f"{self.server.url} is unreachable (ICMP port unreachable: nothing listens there)")
                else:
                    self.client.fail(f"connection to {self.server.url} lost: {exc}")
                await self._flush()
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.client.fail(f"connection to {self.server.url} lost: {exc!r}")
                await self._flush()
                return
            self.client.receive(data, trio.current_time())
            await self._flush()

    def _read_udp(self, raw: _socket.socket) -> int:
        """Feed the core what the UDP leg ``raw`` holds now (at most ``READ_BATCH`` datagrams); how many.

        Raises OSError (ICMP port unreachable): what was read before it is in the core already.
        """
        now = trio.current_time()
        count = 0
        while count < READ_BATCH:
            try:
                data = raw.recv(_RECEIVE_SIZE)
            except BlockingIOError:
                break
            self.client.receive(data, now)
            count += 1
        self.read_calls += 1
        self.messages_read += count
        return count

    async def _connect(self, ssl_context: ssl.SSLContext | None, server_hostname: str | None) -> None:
        server = self.server
        try:
            if server.transport is TurnTransport.UDP:
                family = _socket.AF_INET6 if ":" in server.host else _socket.AF_INET
                raw = _socket.socket(family, _socket.SOCK_DGRAM)
                udp = trio.socket.from_stdlib_socket(raw)  # the same socket, non-blocking
                try:
                    socket_options.size_buffers(raw)
                    self._gso = enable_gso(raw)
                    await udp.connect((server.host, server.port))  # (trio resolves a name)
                except OSError:
                    udp.close()
                    raise
                self._raw, self._udp = raw, udp
                return
            tcp = await tcp_pacing.open_tcp_stream(server.host, server.port)
            if server.transport is TurnTransport.TLS:
                context = ssl_context or ssl.create_default_context()
                tls = trio.SSLStream(tcp, context, server_hostname=server_hostname or server.host)
                await tls.do_handshake()
                self._stream = tls
            else:
                self._stream = tcp
        except (OSError, trio.BrokenResourceError, ssl.SSLError) as exc:
            detail = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ else exc
            raise TurnError(f"cannot connect to {server.url}: {detail}") from exc

    async def _close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._stream is not None:
            with trio.move_on_after(1) as scope:
                scope.shield = True
                try:
                    await self._stream.aclose()
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
        self._send_in.close()


@asynccontextmanager
async def open_turn_socket(
    server: TurnServer,
    credentials: TurnCredentials,
    *,
    config: TurnConfig | None = None,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    release_timeout: float = 5.0,
    stream: trio.abc.Stream | None = None,
) -> AsyncIterator[TurnSocket]:
    """Connect, allocate, yield the socket; release and close on the way out.

    ``config.stream`` is set from the server's transport.  Raises ``TurnError`` when the
    allocation fails (credentials refused, server unreachable: the core gives up after its
    retransmissions, 39.5 s by default; pass a shorter ``config.rc`` / ``rto`` to fail sooner).
    ``stream``: a leg already connected (through a proxy, or an in-memory stream in tests) to
    use instead of connecting to ``server``, whose transport must then be TCP or TLS.
    """
    base = config or TurnConfig()
    if base.stream != server.transport.stream:
        base = dataclasses.replace(base, stream=server.transport.stream)
    turn = TurnSocket(server, TurnClient(credentials, random=secrets.token_bytes, config=base))
    if stream is None:
        await turn._connect(ssl_context, server_hostname)
    elif server.transport.stream:
        turn._stream = stream
    else:
        raise TurnError(f"a connected stream was given for {server.url}, whose leg is UDP")
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(turn._reader)
            nursery.start_soon(turn._timer_loop)
            turn.client.allocate(trio.current_time())
            await turn._flush()
            await turn._allocated.wait()
            if turn._error is not None:
                nursery.cancel_scope.cancel()
            else:
                try:
                    yield turn
                finally:
                    with trio.move_on_after(release_timeout) as scope:
                        scope.shield = True
                        await turn.release()
                    nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The caller's own exception (or ours) comes out as itself, not wrapped by our tasks' nursery.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    finally:
        await turn._close()
    if turn.relayed is None and turn._error is not None:
        raise TurnError(turn._error)
