"""QUIC (aioquic) as a carrier of p2pos session records (spec/quic.md).

Where QUIC (UDP 443) passes and other UDP does not, a p2pos session travels inside one QUIC
connection: one bidirectional stream carrying the session's datagrams as frames
(spec/framing.md).  The peer is authenticated by its p2pos identity, never by a certificate
authority (``quic_tls.py``, spec/quic.md §3).  ::

    async with quic.listen("127.0.0.1", 443, identity) as listener:
        carrier = await listener.accept()           # carrier.peer_id: the dialer, authenticated

    async with quic.dial("127.0.0.1", 443, expected_peer_id=peer, identity=identity) as carrier:
        await carrier.send_records(datagrams)      # a batch of Endpoint.data_to_send: fewer packets
        datagram = await carrier.receive_record()  # CarrierClosed at the end

Errors: ``PeerMismatch`` (the listener is another peer), ``BadCertificate`` (no valid
binding), ``HandshakeTimeout``, ``CarrierClosed`` (``code`` says why; NO_ERROR for a clean
end); all are ``QuicError``.  Garbage from the network is dropped and counted in
``drops``, never raised.

The driver is aioquic's sans-IO ``QuicConnection`` driven by one task per UDP socket
(``_QuicSocket``): it waits for the socket or the earliest timer (a heap, not a scan),
feeds what arrived (up to 64 datagrams a wake-up), drains events, transmits.  API calls
transmit at once.  aioquic has no public accessor for three things the driver needs, so it
reads private attributes: ``tls._peer_certificate`` (the listener's certificate; missing, the
dial fails with BadCertificate), a stream sender's ``_buffer`` (unacknowledged bytes, for
backpressure; missing, there is none) and ``_state`` (whether a connection has terminated).
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import ipaddress
import itertools
import math
import socket as _socket
import ssl
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import trio
from aioquic._buffer import Buffer
from aioquic.quic import events
from aioquic.quic.configuration import SMALLEST_MAX_DATAGRAM_SIZE, QuicConfiguration
from aioquic.quic.connection import QuicConnection, QuicConnectionState
from aioquic.quic.packet import (
    QuicFrameType,
    QuicHeader,
    QuicPacketType,
    QuicProtocolVersion,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from cryptography import x509

from p2pos.proto.errors import ErrorCode, LocalProtocolError
from p2pos.proto.identity.identity import Identity
from p2pos.proto.identity.peer_id import PeerId
from p2pos.proto.session.framing import StreamFramer, frame

from . import quic_pacer, quic_tls
from .quic_tls import ALPN, BadCertificate, PeerMismatch, QuicError

__all__ = [
    "ALPN",
    "BadCertificate",
    "CarrierClosed",
    "HandshakeTimeout",
    "PeerMismatch",
    "QuicCarrier",
    "QuicError",
    "QuicListener",
    "SendFunction",
    "dial",
    "listen",
]

#: QUIC version 1 only (spec/quic.md QUIC-2.1).
SUPPORTED_VERSIONS = (int(QuicProtocolVersion.VERSION_1),)
#: Flow-control windows: large enough for a loopback or LAN bandwidth-delay product.
MAX_STREAM_DATA = 4 * 1024 * 1024
MAX_DATA = 8 * 1024 * 1024
#: send_record waits while this many bytes are unacknowledged on the stream.
SEND_HIGH_WATER = 1024 * 1024
#: Records received and not yet read; beyond it the carrier is closed (spec/quic.md §4.4).
RECEIVE_LIMIT = 32 * 1024 * 1024
#: Unauthenticated connections a listener holds at once; further Initials are dropped.
MAX_PENDING = 256
#: Datagrams fed from a shared socket and not yet handled; beyond it they are dropped (counted).
MAX_FED = 4096
_RECEIVE_BATCH = 64
_SOCKET_BUFFER = 4 * 1024 * 1024
_TRANSIENT = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EMSGSIZE, errno.EAGAIN}
#: How long aclose() waits for the peer to acknowledge what was sent before closing anyway.
CLOSE_LINGER = 2.0


class HandshakeTimeout(QuicError):
    """The QUIC handshake (or the dialer's proof) did not complete in time."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ErrorCode.HANDSHAKE_TIMEOUT)


class CarrierClosed(QuicError):
    """The carrier ended: ``code`` is NO_ERROR for a clean end, else why it was closed."""


def _closed_error(event: events.ConnectionTerminated, by: str) -> CarrierClosed:
    # An APPLICATION_CLOSE (frame_type None) carries a p2pos code; a transport close a QUIC one.
    code, what = ErrorCode.PROTOCOL_VIOLATION, f"QUIC error 0x{event.error_code:x}"
    if event.frame_type is None:
        with contextlib.suppress(ValueError):
            code = ErrorCode(event.error_code)
            what = code.name
    reason = f": {event.reason_phrase}" if event.reason_phrase else ""
    return CarrierClosed(f"QUIC connection closed by {by} ({what}){reason}", code)


def _idle_error(event: events.ConnectionTerminated, idle_timeout: float) -> CarrierClosed | None:
    """The end by QUIC's own idle timer, which aioquic reports as a close (nothing closed it)."""
    # aioquic's handle_timer: ConnectionTerminated(INTERNAL_ERROR, PADDING, "Idle timeout"), never on the wire.
    if event.frame_type == QuicFrameType.PADDING and event.reason_phrase == "Idle timeout":
        return CarrierClosed(f"QUIC idle timeout: nothing from the peer for {idle_timeout:g} s", ErrorCode.IDLE_TIMEOUT)
    return None


def _peer_certificate(quic: QuicConnection) -> tuple[x509.Certificate, int]:
    """The certificate the peer presented, and how many more it sent (a chain)."""
    tls = getattr(quic, "tls", None)
    certificate = getattr(tls, "_peer_certificate", None)
    chain = getattr(tls, "_peer_certificate_chain", [])
    if not isinstance(certificate, x509.Certificate):
        raise BadCertificate("no peer certificate available from aioquic (incompatible aioquic version?)")
    return certificate, len(chain)


def _unacked_bytes(quic: QuicConnection, stream_id: int) -> int:
    """Bytes written to the stream and not yet acknowledged (aioquic keeps them in the sender)."""
    stream = quic._streams.get(stream_id)
    if stream is None:
        return 0
    buffer = getattr(stream.sender, "_buffer", None)
    return len(buffer) if buffer is not None else 0


class QuicCarrier:
    """One authenticated QUIC connection carrying one p2pos session's records.

    ``peer_id`` is the other side's authenticated identity.  ``send_record`` waits while
    ``SEND_HIGH_WATER`` bytes are unacknowledged (backpressure); ``receive_record`` returns
    records in order and raises ``CarrierClosed`` once the carrier has ended.
    """

    def __init__(self, conn: _Conn, peer_id: PeerId) -> None:
        self._conn = conn
        self.peer_id = peer_id
        self.remote_address = conn.addr

    async def send_record(self, record: bytes) -> None:
        """Send one record (1..65535 bytes); see ``send_records``."""
        await self.send_records((record,))

    async def send_records(self, records: Iterable[bytes]) -> None:
        """Send records (1..65535 bytes each) in order, in as few QUIC packets as they fit.

        Waits first while ``SEND_HIGH_WATER`` bytes are unacknowledged; then the records are
        queued in QUIC and what the congestion window allows is sent.  A driver of an
        ``Endpoint`` hands over each batch of ``data_to_send`` at once.  Raises the carrier's
        error once it has ended, LocalProtocolError(FRAMING_ERROR) for an empty or oversized record.
        """
        conn = self._conn
        data = b"".join([frame(record) for record in records])
        while conn.error is None and _unacked_bytes(conn.quic, conn.stream_id) >= SEND_HIGH_WATER:
            await conn.progress.wait()
        if conn.error is not None:
            raise conn.error
        if conn.send_ended:
            raise LocalProtocolError("send_record after aclose()")
        if data:
            conn.quic.send_stream_data(conn.stream_id, data)
            conn.driver.after(conn)
        # A cancellation point, not a scheduling point: yielding after every record would let the
        # driver handle each ACK alone (3x slower at 1200-byte records); it runs when we wait.
        await trio.lowlevel.checkpoint_if_cancelled()

    async def receive_record(self) -> bytes:
        """The next record; CarrierClosed at the end (code NO_ERROR when the peer closed cleanly)."""
        conn = self._conn
        while not conn.records:
            if conn.error is not None:
                raise conn.error
            await conn.progress.wait()
        await trio.lowlevel.checkpoint_if_cancelled()
        record = conn.records.popleft()
        conn.queued -= len(record)
        return record

    @property
    def closed(self) -> bool:
        return self._conn.error is not None

    async def aclose(self, code: ErrorCode = ErrorCode.NO_ERROR, reason: str = "") -> None:
        """End the stream, wait (at most ``CLOSE_LINGER`` s) until the peer has it all, then close."""
        conn = self._conn
        if conn.error is None and code == ErrorCode.NO_ERROR and not conn.send_ended:
            conn.send_ended = True
            conn.quic.send_stream_data(conn.stream_id, b"", end_stream=True)
            conn.driver.after(conn)
            with trio.move_on_after(CLOSE_LINGER):
                while conn.error is None and _unacked_bytes(conn.quic, conn.stream_id) > 0:
                    await conn.progress.wait()
        conn.driver.close(conn, code, reason or "carrier closed")


class _Conn:
    """Per-connection state of the driver."""

    def __init__(self, driver: _QuicSocket, quic: QuicConnection, addr: tuple[str, int], deadline: float) -> None:
        self.driver = driver
        self.quic = quic
        self.addr = addr
        self.auth_deadline: float | None = deadline
        self.stream_id = 0
        self.framer = StreamFramer()
        self.records: deque[bytes] = deque()
        self.queued = 0
        self.peer_id: PeerId | None = None
        self.carrier: QuicCarrier | None = None
        self.error: QuicError | None = None
        self.send_ended = False
        self.progress = trio.Event()
        self.cids: set[bytes] = set()
        self.own_spki = b""  # listener: its certificate's key, which the dialer's proof signs
        self.expected: PeerId | None = None  # dialer: the listener it wants
        self.is_client = driver.is_client
        self.identity: Identity | None = None
        self.timer_key: float | None = None

    def wake(self) -> None:
        self.progress.set()
        self.progress = trio.Event()

    def deadline(self) -> float | None:
        timer = self.quic.get_timer()
        if self.auth_deadline is not None:
            return self.auth_deadline if timer is None else min(timer, self.auth_deadline)
        return timer


#: Sends one datagram to an address; must not block (a full buffer is a loss QUIC recovers from).
SendFunction = Callable[[bytes, tuple[str, int]], None]


class _QuicSocket:
    """The QUIC connections on one UDP socket; ``run()`` is its task.

    The socket is either its own (``sock``: it reads and writes it) or another driver's
    (``sock`` None, quic_shared.py: datagrams come in through ``feed`` and leave through ``send``, spec/quic.md
    §5.1): then it both dials and accepts (``is_client`` False, dials mark their connections).
    """

    def __init__(
        self,
        sock: _socket.socket | None,
        *,
        identity: Identity,
        is_client: bool,
        handshake_timeout: float,
        idle_timeout: float = 60.0,
        send: SendFunction | None = None,
    ) -> None:
        self.sock = sock
        self._send = send
        self._fed: deque[tuple[bytes, tuple[str, int]]] = deque()
        self._fed_event = trio.Event()
        self.idle_timeout = idle_timeout
        self.identity = identity
        self.is_client = is_client
        self.handshake_timeout = handshake_timeout
        self.by_cid: dict[bytes, _Conn] = {}
        self.conns: set[_Conn] = set()
        self.pending = 0
        self.drops: Counter[str] = Counter()
        self._heap: list[tuple[float, int, _Conn]] = []
        self._seq = itertools.count()
        self._scope: trio.CancelScope | None = None
        self.accepted: deque[QuicCarrier] = deque()
        self.accept_event = trio.Event()
        self.accept_backlog = 64

    # -- configuration ---------------------------------------------------------

    def configuration(self, *, is_client: bool, now: float) -> QuicConfiguration:
        config = QuicConfiguration(
            is_client=is_client,
            alpn_protocols=[ALPN],
            supported_versions=list(SUPPORTED_VERSIONS),
            max_stream_data=MAX_STREAM_DATA,
            max_data=MAX_DATA,
            idle_timeout=self.idle_timeout,  # spec/quic.md QUIC-4.5: above the session's keepalive interval
            verify_mode=ssl.CERT_NONE,  # p2pos checks the identity binding itself (quic_tls.py)
        )
        if not is_client:
            # A fresh TLS key per connection: the dialer's proof is then bound to this connection.
            certificate, key = quic_tls.make_certificate(self.identity, now)
            config.certificate, config.private_key = certificate, key
        return config

    # -- the task --------------------------------------------------------------

    async def run(self) -> None:
        while True:
            deadline = self._heap[0][0] if self._heap else math.inf
            with trio.CancelScope(deadline=deadline) as scope:
                self._scope = scope
                if self.sock is not None:
                    await trio.lowlevel.wait_readable(self.sock)
                elif not self._fed:
                    await self._fed_event.wait()
            self._scope = None
            self._fed_event = trio.Event()
            touched: dict[_Conn, None] = {}
            now = trio.current_time()
            while self._fed:
                data, addr = self._fed.popleft()
                conn = self._route(data, addr, now)
                if conn is not None:
                    touched[conn] = None
            sock = self.sock
            for _ in range(_RECEIVE_BATCH if sock is not None else 0):
                assert sock is not None
                try:
                    data, addr = sock.recvfrom(65536)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno not in _TRANSIENT:
                        raise
                    self.drops["socket_error"] += 1
                    continue
                conn = self._route(data, addr[:2], now)
                if conn is not None:
                    touched[conn] = None
            now = trio.current_time()
            while self._heap and self._heap[0][0] <= now:
                _, _, conn = heapq.heappop(self._heap)
                if conn in self.conns and conn.timer_key is not None and conn.timer_key <= now:
                    conn.timer_key = None
                    self._handle_timer(conn, now)
                    touched[conn] = None
            for conn in touched:
                self.after(conn)

    def feed(self, data: bytes, addr: tuple[str, int]) -> None:
        """A datagram that arrived on the shared socket (``sock`` None); handled by ``run()``."""
        if len(self._fed) >= MAX_FED:
            self.drops["fed_backlog"] += 1
            return
        self._fed.append((data, addr))
        self._fed_event.set()

    def _handle_timer(self, conn: _Conn, now: float) -> None:
        if conn.auth_deadline is not None and now >= conn.auth_deadline:
            conn.auth_deadline = None
            self._fail(conn, HandshakeTimeout("the QUIC handshake did not complete in time"), close=True)
        timer = conn.quic.get_timer()
        if timer is not None and timer <= now:
            conn.quic.handle_timer(now)

    def _route(self, data: bytes, addr: tuple[str, int], now: float) -> _Conn | None:
        """Find (or, on a listener, create) the connection a datagram belongs to; never raises."""
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=8)
        except Exception:  # any parse failure of untrusted bytes
            self.drops["not_quic"] += 1
            return None
        conn = self.by_cid.get(header.destination_cid)
        if conn is None and not self.is_client:
            conn = self._accept_initial(data, header, addr, now)
        if conn is None:
            self.drops["unknown_connection"] += 1
            return None
        try:
            conn.quic.receive_datagram(data, addr, now)
        except Exception:  # aioquic drops bad packets itself; this guards the listener anyway
            self.drops["bad_packet"] += 1
        return conn

    def _accept_initial(self, data: bytes, header: QuicHeader, addr: tuple[str, int], now: float) -> _Conn | None:
        packet_type, version = header.packet_type, header.version
        dcid, scid = header.destination_cid, header.source_cid
        supported = list(SUPPORTED_VERSIONS)
        if packet_type != QuicPacketType.VERSION_NEGOTIATION and version is not None and version not in supported:
            self._sendto(
                encode_quic_version_negotiation(source_cid=dcid, destination_cid=scid, supported_versions=supported),
                addr,
            )
            return None
        if packet_type != QuicPacketType.INITIAL or len(data) < SMALLEST_MAX_DATAGRAM_SIZE:
            return None
        if self.pending >= MAX_PENDING:
            self.drops["too_many_pending"] += 1
            return None
        config = self.configuration(is_client=False, now=now)
        quic = QuicConnection(configuration=config, original_destination_connection_id=dcid)
        quic_pacer.install(quic)
        conn = _Conn(self, quic, addr, now + self.handshake_timeout)
        conn.own_spki = quic_tls.spki(config.certificate)
        self._register(conn, dcid)
        self._register(conn, quic.host_cid)
        self.pending += 1
        return conn

    def _register(self, conn: _Conn, cid: bytes) -> None:
        self.conns.add(conn)
        conn.cids.add(cid)
        self.by_cid[cid] = conn

    # -- after anything happened to a connection -------------------------------

    def after(self, conn: _Conn) -> None:
        """Drain the connection's events, transmit, re-arm its timer.  Called by the task and the API."""
        while (event := conn.quic.next_event()) is not None:
            self._event(conn, event)
        now = trio.current_time()
        for data, addr in conn.quic.datagrams_to_send(now):
            self._sendto(data, addr)
        if conn.quic._state == QuicConnectionState.TERMINATED:
            self._forget(conn)
        else:
            deadline = conn.deadline()
            if deadline != conn.timer_key:
                conn.timer_key = deadline
                if deadline is not None:
                    heapq.heappush(self._heap, (deadline, next(self._seq), conn))
                    if self._scope is not None and deadline < self._scope.deadline:
                        self._scope.deadline = deadline
                if len(self._heap) > 4 * len(self.conns) + 64:
                    self._compact_timers()
        conn.wake()

    def _compact_timers(self) -> None:
        """Drop stale heap entries (a timer moved: its old entry stays until popped, possibly 60 s out)."""
        self._heap = [(conn.timer_key, next(self._seq), conn) for conn in self.conns if conn.timer_key is not None]
        heapq.heapify(self._heap)

    def _event(self, conn: _Conn, event: events.QuicEvent) -> None:
        match event:
            case events.HandshakeCompleted():
                if conn.is_client:
                    self._dialer_check(conn)
            case events.StreamDataReceived(data=data, end_stream=end, stream_id=sid):
                self._stream_data(conn, sid, data, end)
            case events.ConnectionIdIssued(connection_id=cid):
                self._register(conn, cid)
            case events.ConnectionIdRetired(connection_id=cid):
                conn.cids.discard(cid)
                self.by_cid.pop(cid, None)
            case events.ConnectionTerminated():
                by = "us" if conn.error is not None else "the peer"
                self._fail(conn, _idle_error(event, self.idle_timeout) or _closed_error(event, by), close=False)
            case events.StreamReset(stream_id=sid) if sid == conn.stream_id:
                self._fail(conn, CarrierClosed("the peer reset the carrier stream", ErrorCode.PROTOCOL_VIOLATION))
            case _:
                pass

    def _dialer_check(self, conn: _Conn) -> None:
        try:
            if conn.expected is None:
                raise QuicError("a dialing connection needs the expected peer id", ErrorCode.INTERNAL_ERROR)
            certificate, chain = _peer_certificate(conn.quic)
            peer = quic_tls.check_listener_certificate(certificate, chain, conn.expected)
        except QuicError as exc:
            self._fail(conn, exc, close=True)
            return
        conn.peer_id = peer
        conn.auth_deadline = None
        conn.stream_id = conn.quic.get_next_available_stream_id()
        conn.quic.send_stream_data(
            conn.stream_id, frame(quic_tls.dialer_proof(self.identity, quic_tls.spki(certificate)))
        )
        conn.carrier = QuicCarrier(conn, peer)

    def _stream_data(self, conn: _Conn, sid: int, data: bytes, end: bool) -> None:
        if conn.error is not None:
            return
        if sid != conn.stream_id:
            self.drops["other_stream"] += 1
            self._fail(conn, CarrierClosed("data on a stream other than the carrier's"), close=True)
            return
        conn.framer.receive_data(data)
        if end:
            conn.framer.receive_eof()
        while (record := conn.framer.next_frame()) is not None:
            if conn.peer_id is None:  # listener: the first frame is the dialer's proof (spec/quic.md §3.3)
                try:
                    conn.peer_id = quic_tls.check_dialer_proof(record, conn.own_spki)
                except QuicError as exc:
                    self.drops["bad_proof"] += 1
                    self._fail(conn, exc, close=True)
                    return
                conn.auth_deadline = None
                conn.carrier = QuicCarrier(conn, conn.peer_id)
                self.pending -= 1
                self._deliver(conn, conn.carrier)
                continue
            conn.records.append(record)
            conn.queued += len(record)
            if conn.queued > RECEIVE_LIMIT:
                self._fail(conn, CarrierClosed("records are not read fast enough", ErrorCode.FLOW_CONTROL_ERROR), True)
                return
        if conn.framer.error is not None:
            self._fail(conn, CarrierClosed(str(conn.framer.error), ErrorCode.FRAMING_ERROR), close=True)
        elif conn.framer.eof and conn.framer.buffered == 0:
            # The peer's clean end (spec/quic.md QUIC-4.1): it closes the connection once we acknowledged.
            self._fail(conn, CarrierClosed("the peer ended the carrier", ErrorCode.NO_ERROR), close=False)

    def _deliver(self, conn: _Conn, carrier: QuicCarrier) -> None:
        if len(self.accepted) >= self.accept_backlog:
            self.drops["accept_backlog"] += 1
            self._fail(conn, CarrierClosed("listener backlog full", ErrorCode.CHANNEL_LIMIT), close=True)
            return
        self.accepted.append(carrier)
        self.accept_event.set()

    # -- closing ---------------------------------------------------------------

    def _fail(self, conn: _Conn, error: QuicError, close: bool = True) -> None:
        """Record why the connection ends (the first reason wins); optionally close it with that code."""
        if conn.error is None:
            conn.error = error
            if conn.peer_id is None and not conn.is_client:
                self.pending -= 1
        if close:
            conn.quic.close(error_code=int(error.code), reason_phrase=str(error)[:200])
        conn.wake()

    def close(self, conn: _Conn, code: ErrorCode, reason: str) -> None:
        self._fail(conn, CarrierClosed(reason, code), close=True)
        self.after(conn)

    def _forget(self, conn: _Conn) -> None:
        for cid in conn.cids:
            if self.by_cid.get(cid) is conn:
                del self.by_cid[cid]
        self.conns.discard(conn)
        conn.timer_key = None

    def close_all(self) -> None:
        for conn in list(self.conns):
            if conn.error is None:
                self._fail(conn, CarrierClosed("closed locally", ErrorCode.NO_ERROR))
            self.after(conn)

    def _sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._send is not None:
            try:
                self._send(data, addr)
            except Exception:  # the shared socket's driver refused: a loss QUIC recovers from
                self.drops["send_error"] += 1
            return
        if self.sock is None:
            return
        try:
            self.sock.sendto(data, addr)
        except BlockingIOError:
            self.drops["send_buffer_full"] += 1  # QUIC's loss recovery resends
        except OSError as exc:
            if exc.errno not in _TRANSIENT:
                raise
            self.drops["socket_error"] += 1


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        raise LocalProtocolError(f"the QUIC carrier takes an IP address, not {host!r} (no name lookups)") from None


def _udp_socket(host: str, port: int) -> _socket.socket:
    address = _ip(host)
    family = _socket.AF_INET6 if address.version == 6 else _socket.AF_INET
    sock = _socket.socket(family, _socket.SOCK_DGRAM)
    try:
        for option in (_socket.SO_SNDBUF, _socket.SO_RCVBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(_socket.SOL_SOCKET, option, _SOCKET_BUFFER)
        sock.setblocking(False)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


@contextlib.asynccontextmanager
async def _in_background(task: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
    """Run ``task`` for the duration of the block; the block's own exceptions pass through unwrapped.

    (A nursery would wrap them in an ExceptionGroup: callers of dial() and listen() should see
    ``PeerMismatch``, not a group holding it.)
    """
    raised: BaseException | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(task)
        try:
            yield
        except BaseException as exc:
            raised = exc
        finally:
            nursery.cancel_scope.cancel()
    if raised is not None:
        raise raised


@contextlib.asynccontextmanager
async def dial(
    host: str,
    port: int,
    *,
    expected_peer_id: PeerId,
    identity: Identity,
    handshake_timeout: float = 10.0,
    idle_timeout: float = 60.0,
    local_host: str | None = None,
) -> AsyncIterator[QuicCarrier]:
    """Connect to the listener at ``host:port`` and authenticate it as ``expected_peer_id``.

    Yields the carrier once the listener's certificate checked out and the dialer's proof is
    sent; raises PeerMismatch, BadCertificate, HandshakeTimeout or CarrierClosed.  The
    listener checks the proof when it arrives: if it refuses it, the carrier's next call
    raises CarrierClosed (BAD_IDENTITY).  Leaving the block closes the carrier (cleanly, see
    ``QuicCarrier.aclose``).
    """
    if local_host is None:
        local_host = "::" if _ip(host).version == 6 else "0.0.0.0"  # noqa: S104
    sock = _udp_socket(local_host, 0)
    driver = _QuicSocket(
        sock, identity=identity, is_client=True, handshake_timeout=handshake_timeout, idle_timeout=idle_timeout
    )
    try:
        async with _in_background(driver.run), _dial_on(driver, (host, port), expected_peer_id) as carrier:
            yield carrier
    finally:
        sock.close()


@contextlib.asynccontextmanager
async def _dial_on(driver: _QuicSocket, addr: tuple[str, int], expected_peer_id: PeerId) -> AsyncIterator[QuicCarrier]:
    """One dialing connection on ``driver`` (whose task runs): the carrier, closed on exit."""
    now = trio.current_time()
    connection = QuicConnection(configuration=driver.configuration(is_client=True, now=now))
    quic_pacer.install(connection)
    conn = _Conn(driver, connection, addr, now + driver.handshake_timeout)
    conn.is_client = True
    conn.expected = expected_peer_id
    driver._register(conn, connection.host_cid)
    connection.connect(addr, now)
    driver.after(conn)
    try:
        while conn.carrier is None and conn.error is None:
            await conn.progress.wait()
    except BaseException:
        driver.close(conn, ErrorCode.NO_ERROR, "dial cancelled")
        raise
    if conn.error is not None or conn.carrier is None:
        with trio.move_on_after(0.2):  # let the CONNECTION_CLOSE go out
            while conn in driver.conns:
                await conn.progress.wait()
        raise conn.error or CarrierClosed("the connection ended during the handshake")
    try:
        yield conn.carrier
    finally:
        with trio.CancelScope(shield=True):
            await conn.carrier.aclose()


class QuicListener:
    """A listening UDP socket; ``accept()`` returns each authenticated carrier."""

    def __init__(self, driver: _QuicSocket, address: tuple[str, int] | None = None) -> None:
        self._driver = driver
        if address is None:
            assert driver.sock is not None
            address = driver.sock.getsockname()[:2]
        host, port = address
        self.host: str = host
        self.port: int = port

    @property
    def drops(self) -> Counter[str]:
        """Datagrams and connections refused, by reason."""
        return self._driver.drops

    async def accept(self) -> QuicCarrier:
        driver = self._driver
        while not driver.accepted:
            await driver.accept_event.wait()
            driver.accept_event = trio.Event()
        return driver.accepted.popleft()


@contextlib.asynccontextmanager
async def listen(
    host: str, port: int, identity: Identity, *, handshake_timeout: float = 10.0, idle_timeout: float = 60.0
) -> AsyncIterator[QuicListener]:
    """Listen on ``host:port`` (0: any free port, see ``listener.port``)."""
    sock = _udp_socket(host, port)
    driver = _QuicSocket(
        sock, identity=identity, is_client=False, handshake_timeout=handshake_timeout, idle_timeout=idle_timeout
    )
    try:
        async with _in_background(driver.run):
            try:
                yield QuicListener(driver)
            finally:
                driver.close_all()
    finally:
        sock.close()
