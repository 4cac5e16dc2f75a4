"""A relay client for the cases, written from spec/relay.md alone: blocking sockets and wsproto.

``Peer`` is one made-up identity; ``Link`` one WebSocket to the relay, with ``send``, ``recv``
(the next binary message, ``Closed`` or ``Pong``, or ``None`` on timeout) and the relay
messages of relay.md §3.2 built by the ``msg_*`` functions.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import ssl
import struct
import time
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.events import Pong as WsPong
from wsproto.utilities import ProtocolError as WsProtocolError

from ..checks import CaseFailed

PATH = "/p2pos/relay/v1"
SUBPROTOCOL = "p2pos-relay.1"
DOMAIN = b"p2pos/relay-auth"
CHALLENGE, AUTH, WELCOME, WANT, UNWANT, PAIRED, UNPAIRED, SEND, RECV, SENDTO = range(1, 11)


class Peer:
    """A fresh Ed25519 identity."""

    def __init__(self) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(os.urandom(32))
        self.id = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def sign_auth(self, nonce: bytes, name: str, *, domain: bytes = DOMAIN) -> bytes:
        """identity.md §3.1 over relay.md §2's message."""
        message = nonce + bytes([len(name.encode())]) + name.encode()
        return self._key.sign(b"p2pos-sig-v1\x00" + bytes([len(domain)]) + domain + message)


def msg_auth(peer: Peer, nonce: bytes, name: str, *, signature: bytes | None = None) -> bytes:
    raw = name.encode()
    sig = peer.sign_auth(nonce, name) if signature is None else signature
    return bytes([AUTH]) + peer.id + sig + bytes([len(raw)]) + raw


def msg_peer(kind: int, peer_id: bytes) -> bytes:
    return bytes([kind]) + peer_id


def msg_send(pair: int, record: bytes) -> bytes:
    return bytes([SEND]) + struct.pack(">I", pair) + record


def msg_sendto(peer_id: bytes, record: bytes) -> bytes:
    return bytes([SENDTO]) + peer_id + record


@dataclasses.dataclass(frozen=True)
class Closed:
    code: int | None
    reason: str


@dataclasses.dataclass(frozen=True)
class Pong:
    payload: bytes


@dataclasses.dataclass(frozen=True)
class Refused:
    status: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class Target:
    """The relay under test."""

    url: str
    ca_file: str | None = None
    insecure: bool = False
    #: The name peers sign (REL-2.3): the URL's host unless given.
    name: str | None = None

    @property
    def parts(self) -> tuple[bool, str, int, str]:
        u = urlsplit(self.url)
        if u.scheme not in ("ws", "wss") or not u.hostname:
            raise ValueError(f"not a ws:// or wss:// URL: {self.url}")
        tls = u.scheme == "wss"
        return tls, u.hostname, u.port or (443 if tls else 80), u.path or PATH

    @property
    def relay_name(self) -> str:
        return (self.name or self.parts[1]).lower()


#: The suite paces new connections below the default quota of REL-5.1 (a burst of 16, then 4 a second).
OPEN_BURST, OPEN_RATE = 14.0, 3.5
_bucket = [OPEN_BURST, 0.0]
#: Links opened by the running case; ``close_all`` ends them when the case ends.
_OPEN: list[Link] = []


def pace() -> None:
    """Wait until one more connection stays within the pace."""
    now = time.monotonic()
    tokens = min(OPEN_BURST, _bucket[0] + (now - _bucket[1]) * OPEN_RATE) if _bucket[1] else _bucket[0]
    if tokens < 1.0:
        time.sleep((1.0 - tokens) / OPEN_RATE)
        tokens = 1.0
    _bucket[0], _bucket[1] = tokens - 1.0, time.monotonic()


def close_all() -> None:
    while _OPEN:
        _OPEN.pop().close()


class Link:
    """One WebSocket to the relay."""

    def __init__(self, target: Target, *, path: str | None = None, subprotocols: list[str] | None = None) -> None:
        tls, host, port, default_path = target.parts
        pace()
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection((host, port), timeout=5)
        _OPEN.append(self)
        if tls:
            context = ssl.create_default_context(cafile=target.ca_file)
            if target.insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            try:
                self.sock = context.wrap_socket(self.sock, server_hostname=host)
            except ssl.SSLCertVerificationError:
                raise
            except (OSError, ssl.SSLError) as exc:
                raise CaseFailed(f"the relay closed the connection before the upgrade (TLS: {exc})") from None
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: list[Event] = []
        self.refused: Refused | None = None
        self.subprotocol: str | None = None
        request = Request(
            host=f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
            target=path or default_path,
            subprotocols=[SUBPROTOCOL] if subprotocols is None else subprotocols,
        )
        try:
            self.sock.sendall(self.ws.send(request))
        except OSError as exc:
            raise CaseFailed(f"the relay closed the connection before the upgrade: {exc}") from None
        deadline = time.monotonic() + 10.0
        while True:
            if time.monotonic() > deadline:
                raise CaseFailed("no answer to the WebSocket upgrade within 10 s")
            events = self._events(5.0)
            for i, event in enumerate(events):
                if isinstance(event, AcceptConnection):
                    self.subprotocol = event.subprotocol
                    self.pending = events[i + 1 :]  # the CHALLENGE may come in the same read
                    return
                if isinstance(event, RejectConnection | RejectData):
                    if isinstance(event, RejectConnection):
                        self.refused = Refused(event.status_code)
                    return

    def _events(self, timeout: float) -> list[Event]:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return []
        except (ConnectionError, ssl.SSLError):
            data = b""
        try:
            self.ws.receive_data(data or None)
            events = list(self.ws.events())
        except WsProtocolError as exc:
            raise CaseFailed(f"the relay broke the WebSocket protocol or closed during the upgrade: {exc}") from None
        if not data and not events:
            raise CaseFailed("the relay closed the connection without a WebSocket Close")
        return events

    def send(self, data: bytes) -> None:
        self.sock.sendall(self.ws.send(Message(data=data)))

    def send_text(self, text: str) -> None:
        self.sock.sendall(self.ws.send(Message(data=text)))

    def ping(self, payload: bytes = b"conf") -> None:
        self.sock.sendall(self.ws.send(Ping(payload=payload)))

    def recv(self, timeout: float = 3.0) -> bytes | Closed | Pong | None:
        """The next binary message, a Close (answered), a Pong, or None after ``timeout``."""
        buffer = b""
        while True:
            while self.pending:
                event = self.pending.pop(0)
                if isinstance(event, BytesMessage):
                    buffer += event.data
                    if event.message_finished:
                        return buffer
                elif isinstance(event, TextMessage):
                    raise CaseFailed("the relay sent a text message (REL-3.1.3)")
                elif isinstance(event, CloseConnection):
                    if self.ws.state is ConnectionState.REMOTE_CLOSING:
                        try:
                            self.sock.sendall(self.ws.send(event.response()))
                        except OSError:
                            pass
                    return Closed(event.code, event.reason or "")
                elif isinstance(event, WsPong):
                    return Pong(event.payload)
                elif isinstance(event, Ping):
                    self.sock.sendall(self.ws.send(event.response()))
            events = self._events(timeout)
            if not events:
                return None
            self.pending.extend(events)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
