"""The suite's side of the app API's HTTP (spec/appapi.md §2): blocking sockets and h11.

The suite is a client of a daemon it did not start, so it uses nothing of the daemon's code:
``Api`` opens a connection (Unix socket or 127.0.0.1 TCP, with or without a token), sends one
request through h11 (or raw bytes, for what h11 refuses to send) and reads one ``Reply``.
``Api.upgrade`` asks for a channel and hands back the raw socket after a ``101``;
``EventStream`` reads the NDJSON event stream line by line; ``WebSocket`` frames messages
with wsproto on a socket that has done its handshake.  Every read has a timeout, so a daemon
that never answers fails a case instead of hanging the run.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h11
import wsproto.events
from wsproto import ConnectionType
from wsproto.connection import Connection as WsConnection

from ..checks import CaseFailed

STREAM_PROTOCOL = "p2pos-stream/1"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: Seconds to wait for any one answer from the daemon.
TIMEOUT = 10.0

Headers = Sequence[tuple[str, str]]


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP answer: status, headers (lower-case names), body bytes."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON; fails the case if it is not."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise CaseFailed(f"HTTP {self.status}: the body is not JSON: {self.body[:120]!r}") from None

    def error_code(self) -> str | None:
        """``error.code`` of an error body, or None when the body has no such field."""
        try:
            body = json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None
        error = body.get("error") if isinstance(body, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        return code if isinstance(code, str) else None

    def show(self) -> str:
        return f"HTTP {self.status} {self.body[:200].decode('utf-8', 'replace').strip()}"


@dataclasses.dataclass(frozen=True, slots=True)
class Api:
    """Where a daemon's API answers: a Unix socket, or a TCP port on 127.0.0.1 (with a token)."""

    unix: Path | None = None
    port: int | None = None
    token: str | None = None

    def connect(self, timeout: float = TIMEOUT) -> socket.socket:
        if self.unix is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: Any = str(self.unix)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = ("127.0.0.1", self.port)
        sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                sock.connect(address)
                return sock
            except BlockingIOError:  # a Unix socket's accept queue is full: wait, as a blocking connect does
                if time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
                sock.close()
                raise
            except OSError:
                sock.close()
                raise

    def with_token(self, token: str | None) -> Api:
        return dataclasses.replace(self, token=token)

    def headers(self, extra: Headers = (), *, host: str | None = "localhost") -> list[tuple[str, str]]:
        out = [("Host", host)] if host is not None else []
        if self.token is not None:
            out.append(("Authorization", f"Bearer {self.token}"))
        return out + list(extra)

    # -- one request, one answer -------------------------------------------------------------

    def request(
        self,
        method: str,
        target: str,
        body: Any = None,
        *,
        headers: Headers = (),
        host: str | None = "localhost",
        raw_body: bytes | None = None,
    ) -> Reply:
        """``method target`` with ``body`` as JSON (or ``raw_body`` as is) on a new connection."""
        with self.connect() as sock:
            conn = h11.Connection(h11.CLIENT)
            send(sock, conn, self.make_request(method, target, body, headers=headers, host=host, raw_body=raw_body))
            return read_reply(sock, conn)

    def make_request(
        self,
        method: str,
        target: str,
        body: Any = None,
        *,
        headers: Headers = (),
        host: str | None = "localhost",
        raw_body: bytes | None = None,
    ) -> list[Any]:
        """The h11 events of one request (for several on one connection)."""
        payload = raw_body if raw_body is not None else (json.dumps(body).encode() if body is not None else b"")
        extra = list(headers)
        if payload or method in ("POST", "PUT"):
            extra += [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
        events: list[Any] = [h11.Request(method=method, target=target, headers=self.headers(extra, host=host))]
        if payload:
            events.append(h11.Data(data=payload))
        events.append(h11.EndOfMessage())
        return events

    def raw(self, data: bytes, *, timeout: float = TIMEOUT) -> Reply:
        """Send ``data`` as is (ignoring a daemon that stops reading), then read one answer."""
        with self.connect(timeout) as sock:
            try:
                sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # it answered early and closed: the answer is still there to read
            return read_reply(sock, h11.Connection(h11.CLIENT))

    def raw_head(self, method: str, target: str, extra: Headers = (), *, host: str = "localhost") -> bytes:
        """A request head as bytes, with this endpoint's token (for requests h11 would not send)."""
        lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in self.headers(extra, host=host))]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    # -- channels ----------------------------------------------------------------------------

    def upgrade(
        self, method: str, target: str, headers: Headers, *, timeout: float = TIMEOUT
    ) -> tuple[Reply, socket.socket | None, bytes]:
        """Ask for a channel: (the answer, the raw socket after a ``101`` else None, bytes read past it)."""
        sock = self.connect(timeout)
        try:
            conn = h11.Connection(h11.CLIENT)
            send(sock, conn, [h11.Request(method=method, target=target, headers=self.headers(headers))])
            head = next_event(sock, conn)
            if isinstance(head, h11.InformationalResponse) and head.status_code == 101:
                leftover, _ = conn.trailing_data
                return Reply(101, _headers(head.headers), b""), sock, bytes(leftover)
            reply = _finish(sock, conn, head)
        except BaseException:
            sock.close()
            raise
        sock.close()
        return reply, None, b""

    def stream_channel(self, method: str, target: str, *, timeout: float = TIMEOUT) -> tuple[Reply, Channel | None]:
        """``Upgrade: p2pos-stream/1`` on ``target``: the answer and, after a ``101``, the channel."""
        reply, sock, leftover = self.upgrade(
            method, target, [("Connection", "Upgrade"), ("Upgrade", STREAM_PROTOCOL)], timeout=timeout
        )
        return reply, Channel(sock, leftover) if sock is not None else None

    def websocket(self, target: str, *, timeout: float = TIMEOUT) -> tuple[Reply, WebSocket | None]:
        """A WebSocket handshake (RFC 6455) on ``GET target``: the answer and, after a ``101``, the socket.

        Fails the case when a ``101`` carries the wrong ``Sec-WebSocket-Accept``."""
        key = base64.b64encode(os.urandom(16)).decode()
        headers = [
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Key", key),
            ("Sec-WebSocket-Version", "13"),
        ]
        reply, sock, leftover = self.upgrade("GET", target, headers, timeout=timeout)
        if sock is None:
            return reply, None
        expected = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()  # noqa: S324
        if reply.headers.get("sec-websocket-accept") != expected:
            sock.close()
            raise CaseFailed(f"101 with Sec-WebSocket-Accept {reply.headers.get('sec-websocket-accept')!r}")
        return reply, WebSocket(sock, leftover)


def send(sock: socket.socket, conn: h11.Connection, events: Sequence[Any]) -> None:
    sock.sendall(b"".join(conn.send(event) or b"" for event in events))


def next_event(sock: socket.socket, conn: h11.Connection) -> Any:
    """The next h11 event from the daemon; ``CaseFailed`` if it sends nothing in time or garbage."""
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise CaseFailed(f"the daemon's answer is not HTTP/1.1: {exc}") from None
        if event is h11.NEED_DATA:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                raise CaseFailed(f"no answer within {sock.gettimeout()} s") from None
            except ConnectionResetError:
                data = b""
            conn.receive_data(data)
            continue
        if event is h11.PAUSED:
            return h11.ConnectionClosed()
        return event


def read_reply(sock: socket.socket, conn: h11.Connection) -> Reply:
    return _finish(sock, conn, next_event(sock, conn))


def _finish(sock: socket.socket, conn: h11.Connection, head: Any) -> Reply:
    if isinstance(head, h11.ConnectionClosed):
        raise CaseFailed("the daemon closed the connection without an answer")
    if not isinstance(head, h11.Response):
        raise CaseFailed(f"expected an HTTP response, got {head!r}")
    body = bytearray()
    while isinstance(event := next_event(sock, conn), h11.Data):
        body += event.data
    return Reply(head.status_code, _headers(head.headers), bytes(body))


def _headers(raw: Any) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in raw}


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the daemon closes ``sock`` within ``seconds`` (whatever it sends before)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False


class Channel:
    """A channel's raw socket after a ``101`` (the bytes read past the answer come first)."""

    def __init__(self, sock: socket.socket, leftover: bytes) -> None:
        self.sock, self.pending = sock, leftover

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def half_close(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def read_exactly(self, size: int, timeout: float = TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.pending) < size:
            chunk = self._recv(deadline)
            if not chunk:
                raise CaseFailed(f"the channel ended after {len(self.pending)} of {size} bytes")
            self.pending += chunk
        data, self.pending = self.pending[:size], self.pending[size:]
        return data

    def read_to_end(self, timeout: float = TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        while chunk := self._recv(deadline):
            self.pending += chunk
        data, self.pending = self.pending, b""
        return data

    def ended_within(self, seconds: float) -> bool:
        """Whether the channel ends (EOF or reset) within ``seconds``; bytes before are dropped."""
        self.pending = b""
        return closed_within(self.sock, seconds)

    def _recv(self, deadline: float) -> bytes:
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            return self.sock.recv(65536)
        except TimeoutError:
            raise CaseFailed(f"the channel carried nothing more within the time ({len(self.pending)} bytes)") from None

    def close(self) -> None:
        self.sock.close()


class WebSocket:
    """A client WebSocket on a socket whose handshake is done: binary messages in and out."""

    def __init__(self, sock: socket.socket, leftover: bytes) -> None:
        self.sock = sock
        self.ws = WsConnection(ConnectionType.CLIENT)
        if leftover:
            self.ws.receive_data(leftover)
        self.messages: list[bytes] = []
        self.partial = bytearray()

    def send(self, message: bytes) -> None:
        self.sock.sendall(self.ws.send(wsproto.events.BytesMessage(data=message)))

    def receive(self, timeout: float = TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        while not self.messages:
            self._pump()
            if self.messages:
                break
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise CaseFailed("no WebSocket message within the time") from None
            if not data:
                raise CaseFailed("the WebSocket connection ended without a message")
            self.ws.receive_data(data)
        return self.messages.pop(0)

    def _pump(self) -> None:
        for event in self.ws.events():
            if isinstance(event, wsproto.events.BytesMessage):
                self.partial += event.data
                if event.message_finished:
                    self.messages.append(bytes(self.partial))
                    self.partial.clear()
            elif isinstance(event, wsproto.events.TextMessage):
                raise CaseFailed(f"a text WebSocket message ({event.data[:40]!r}): channel messages are binary")
            elif isinstance(event, wsproto.events.Ping):
                self.sock.sendall(self.ws.send(event.response()))
            elif isinstance(event, wsproto.events.CloseConnection):
                raise CaseFailed(f"the daemon closed the WebSocket ({event.code} {event.reason})")

    def close(self) -> None:
        self.sock.close()


class EventStream:
    """``GET /v1/events[?after=N]``: the answer's head, then one event a ``next`` call."""

    def __init__(self, api: Api, after: int | None) -> None:
        target = "/v1/events" + (f"?after={after}" if after is not None else "")
        self.sock = api.connect()
        self.conn = h11.Connection(h11.CLIENT)
        send(self.sock, self.conn, api.make_request("GET", target))
        head = next_event(self.sock, self.conn)
        if not isinstance(head, h11.Response):
            self.close()
            raise CaseFailed(f"GET {target}: expected a response, got {head!r}")
        self.status, self.headers = head.status_code, _headers(head.headers)
        self.buffer = b""
        self.ended = False
        if self.status != 200:
            self.close()
            raise CaseFailed(f"GET {target}: HTTP {self.status}, expected 200")

    def next(self, timeout: float = TIMEOUT) -> dict[str, Any] | None:
        """The next event, or None if none comes within ``timeout`` (``ended`` says if the body ended)."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            if self.ended:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                event = next_event(self.sock, self.conn)
            except CaseFailed:
                return None
            if isinstance(event, h11.Data):
                self.buffer += event.data
            else:
                self.ended = True
        line, self.buffer = self.buffer.split(b"\n", 1)
        if not line.strip():
            return self.next(max(0.0, deadline - time.monotonic()))
        try:
            item = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            raise CaseFailed(f"an event line that is not JSON: {line[:120]!r}") from None
        if not isinstance(item, dict):
            raise CaseFailed(f"an event line that is not a JSON object: {line[:120]!r}")
        return item

    def drain(self, quiet: float = 0.5, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        """Every event until none comes for ``quiet`` seconds."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (item := self.next(quiet)) is not None:
            out.append(item)
        return out

    def until(self, wanted: Any, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        """Events until one for which ``wanted(event)`` holds (included); fails the case after ``timeout``."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            item = self.next(left)
            if item is None:
                break
            out.append(item)
            if wanted(item):
                return out
        raise CaseFailed(f"the awaited event did not come within {timeout} s; came: {_types(out)}")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _types(events: list[dict[str, Any]]) -> str:
    shown = [f"{e.get('seq')}:{e.get('type')}" for e in events[-12:]]
    return ", ".join(shown) or "nothing"
