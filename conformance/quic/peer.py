"""The runner's QUIC peer: one aioquic connection on a blocking UDP socket, on loopback.

aioquic is sans-IO: the runner feeds it datagrams and timers and sends what it produces,
so a case can make it misbehave (another ALPN, a broken certificate, a second stream) and
see every event.  ``Peer.dialer`` connects to the IUT; ``Peer.listener`` waits for the
IUT's Initial.  ``pump(until, timeout)`` runs the connection until ``until()`` holds.
aioquic has no public accessor for what some cases check, so they read private attributes:
the certificate the IUT presented (``tls._peer_certificate``, ``_peer_certificate_chain``) and
its transport parameters (``_remote_max_datagram_frame_size``, ``_remote_max_idle_timeout``).
"""

from __future__ import annotations

import dataclasses
import socket
import ssl
import time
from collections.abc import Callable

from aioquic._buffer import Buffer
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import pull_quic_header
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519

from . import certs

LOOPBACK = "127.0.0.1"


@dataclasses.dataclass(slots=True)
class Closed:
    """How the other side closed: ``app`` is True for an application close (type 0x1d)."""

    code: int
    app: bool
    reason: str


def config(
    *,
    is_client: bool,
    alpn: tuple[str, ...] = (certs.ALPN,),
    certificate: x509.Certificate | None = None,
    key: ed25519.Ed25519PrivateKey | None = None,
    chain: tuple[x509.Certificate, ...] = (),
    versions: tuple[int, ...] = (1,),
    datagram_frames: bool = False,
    idle_timeout: float = 60.0,
) -> QuicConfiguration:
    c = QuicConfiguration(
        is_client=is_client,
        alpn_protocols=list(alpn),
        supported_versions=list(versions),
        verify_mode=ssl.CERT_NONE,
        idle_timeout=idle_timeout,
        max_datagram_frame_size=65536 if datagram_frames else None,
    )
    if certificate is not None:
        c.certificate, c.private_key, c.certificate_chain = certificate, key, list(chain)
    return c


class Peer:
    """One QUIC connection of the runner with the IUT."""

    def __init__(self, sock: socket.socket, configuration: QuicConfiguration) -> None:
        self.sock = sock
        self.configuration = configuration
        self.quic: QuicConnection | None = None
        self.remote: tuple[str, int] | None = None
        self.handshake: events.HandshakeCompleted | None = None
        self.streams: dict[int, bytearray] = {}
        self.fin: set[int] = set()
        self.closed: Closed | None = None
        #: The first byte and version of each long-header packet received (QUIC-2.1, QUIC-2.5).
        self.long_headers: list[tuple[int, int]] = []
        self.tickets = 0

    @classmethod
    def dialer(cls, port: int, configuration: QuicConfiguration) -> Peer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((LOOPBACK, 0))
        peer = cls(sock, configuration)
        peer.remote = (LOOPBACK, port)
        peer.quic = QuicConnection(configuration=configuration, session_ticket_handler=peer._ticket)
        peer.quic.connect(peer.remote, time.monotonic())
        return peer

    @classmethod
    def listener(cls, configuration: QuicConfiguration) -> Peer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((LOOPBACK, 0))
        return cls(sock, configuration)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _ticket(self, ticket: object) -> None:
        self.tickets += 1

    def close_socket(self) -> None:
        self.sock.close()

    # -- driving ----------------------------------------------------------------

    def pump(self, until: Callable[[], bool] = lambda: False, timeout: float = 5.0) -> bool:
        """Run the connection until ``until()`` holds (True) or ``timeout`` seconds pass (False)."""
        if self.sock.fileno() == -1:  # the case is done with it: nothing can change
            done = until()
            if not done:
                time.sleep(min(timeout, 0.02))
            return done
        deadline = time.monotonic() + timeout
        while True:
            self._flush()
            if until():
                return True
            now = time.monotonic()
            if now >= deadline:
                return False
            wait = deadline - now
            timer = self.quic.get_timer() if self.quic is not None else None
            if timer is not None:
                wait = min(wait, max(timer - now, 0.0))
            self.sock.settimeout(max(wait, 0.001))
            try:
                data, addr = self.sock.recvfrom(65536)
            except TimeoutError:
                if self.quic is not None and timer is not None and time.monotonic() >= timer:
                    self.quic.handle_timer(time.monotonic())
                continue
            except OSError:  # an ICMP error reported on the socket: QUIC's own timers deal with loss
                continue
            self._datagram(data, addr)

    def _datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        if data and data[0] & 0x80 and len(data) >= 5:
            self.long_headers.append((data[0], int.from_bytes(data[1:5], "big")))
        if self.quic is None:  # a listener's first Initial
            try:
                header = pull_quic_header(Buffer(data=data), host_cid_length=8)
            except ValueError:
                return
            self.remote = addr
            self.quic = QuicConnection(
                configuration=self.configuration, original_destination_connection_id=header.destination_cid
            )
        if addr == self.remote:
            self.quic.receive_datagram(data, addr, time.monotonic())

    def _flush(self) -> None:
        if self.quic is None:
            return
        while (event := self.quic.next_event()) is not None:
            match event:
                case events.HandshakeCompleted():
                    self.handshake = event
                case events.StreamDataReceived(stream_id=sid, data=data, end_stream=end):
                    self.streams.setdefault(sid, bytearray()).extend(data)
                    if end:
                        self.fin.add(sid)
                case events.ConnectionTerminated(error_code=code, frame_type=kind, reason_phrase=reason):
                    if self.closed is None:
                        self.closed = Closed(code, kind is None, reason)
                case _:
                    pass
        for data, addr in self.quic.datagrams_to_send(time.monotonic()):
            try:
                self.sock.sendto(data, addr)
            except OSError:
                pass  # loopback: a closed IUT port; QUIC resends or the case times out

    # -- what the runner does and sees -----------------------------------------

    def send(self, stream_id: int, data: bytes, end: bool = False) -> None:
        if self.quic is None:
            raise RuntimeError("no connection yet")
        self.quic.send_stream_data(stream_id, data, end_stream=end)
        self._flush()

    def close(self, code: int = 0, reason: str = "") -> None:
        if self.quic is not None and self.closed is None:
            self.quic.close(error_code=code, reason_phrase=reason)
            self._flush()

    def peer_certificates(self) -> tuple[x509.Certificate | None, int]:
        """The certificate the other side presented and how many more (a chain) it sent."""
        tls = getattr(self.quic, "tls", None)
        cert = getattr(tls, "_peer_certificate", None)
        chain = getattr(tls, "_peer_certificate_chain", []) or []
        return (cert if isinstance(cert, x509.Certificate) else None), len(chain)

    def frames(self, stream_id: int = 0) -> tuple[list[bytes], bytes]:
        """The whole frames (framing.md §2) received on a stream, and the bytes after them."""
        data, out, pos = bytes(self.streams.get(stream_id, b"")), [], 0
        while pos + 2 <= len(data):
            size = int.from_bytes(data[pos : pos + 2], "big")
            if size == 0 or pos + 2 + size > len(data):
                break
            out.append(data[pos + 2 : pos + 2 + size])
            pos += 2 + size
        return out, data[pos:]


def frame(datagram: bytes) -> bytes:
    """``u16 length || datagram`` (framing.md §2)."""
    return len(datagram).to_bytes(2, "big") + datagram
