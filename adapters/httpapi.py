"""HTTP/1.1 + JSON for the daemon's app API, on any trio stream (spec/appapi.md).

The API is served on a Unix socket (mode 0600) and on localhost TCP guarded by a bearer token
(spec/appapi.md §1).  This module is the HTTP part, with h11: it reads requests, refuses what
must not reach the API, hands each request to a handler, and writes what the handler answers:

* ``Json(status, body)``: a JSON response;
* ``Lines(source)``: a push stream, one JSON object a line, chunked, until ``source`` ends or
  the client goes away;
* ``Upgrade(protocol, headers, take_over)``: ``101 Switching Protocols``, then
  ``take_over(stream, leftover)`` owns the raw byte stream (a channel) until it returns.

Refused before any handler runs (with a JSON error, code in ``error.code``): a request carrying
an ``Origin`` header (a web page: 403 ``origin_refused``), a ``Host`` other than the local
names (DNS rebinding: 403 ``host_refused``), on TCP a missing or wrong ``Authorization: Bearer``
token (401 ``unauthorized``), a body over 1 MiB (413), headers not complete within
``header_timeout`` seconds (the connection is closed).  A handler that raises ``ApiError``
answers its status and code; any other exception is a 500 ``internal`` and is logged, never
taken out of the server.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import h11
import trio

log = logging.getLogger("p2pos.api")

MAX_BODY = 1 << 20
MAX_HEADERS = 16 << 10
#: Host header values accepted (with or without a port).
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "p2pos", "local"})


class ApiError(Exception):
    """A handler's refusal: HTTP ``status``, a stable ``code`` and one readable line."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    method: str
    path: str  # decoded, without the query
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names; the last value of a repeated header
    body: Any  # parsed JSON, or None without a body

    def upgrade(self) -> str | None:
        """The protocol asked for with ``Connection: upgrade`` + ``Upgrade``, lower case."""
        if "upgrade" in self.headers.get("connection", "").lower():
            return self.headers.get("upgrade", "").lower() or None
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class Json:
    status: int
    body: Any


@dataclasses.dataclass(frozen=True, slots=True)
class Lines:
    source: AsyncIterator[Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Upgrade:
    protocol: str
    headers: list[tuple[str, str]]
    take_over: Callable[[trio.abc.Stream, bytes], Awaitable[None]]


Response = Json | Lines | Upgrade
Handler = Callable[[Request], Awaitable[Response]]


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class HttpApi:
    """Serves ``handler`` on connections given to ``serve_connection``."""

    def __init__(
        self, handler: Handler, *, token: str | None = None, header_timeout: float = 10.0, body_timeout: float = 30.0
    ) -> None:
        self.handler, self.token = handler, token
        self.header_timeout, self.body_timeout = header_timeout, body_timeout

    async def serve_connection(self, stream: trio.abc.Stream, *, needs_token: bool) -> None:
        """One client connection (keep-alive: many requests); never raises for its content."""
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADERS)
        try:
            while True:
                request = await self._read_request(conn, stream, needs_token)
                if request is None:
                    return
                early = bytearray()
                answer: Response | None
                if request.upgrade() is None:
                    answer = await self._call(request)
                else:
                    answer = await self._call_watching(request, stream, early)
                if answer is None:  # the client went away while the handler waited
                    return
                response = answer
                if isinstance(response, Upgrade):
                    headers = [("connection", "upgrade"), ("upgrade", response.protocol), *response.headers]
                    await _send(stream, conn, h11.InformationalResponse(status_code=101, headers=headers))
                    leftover, _closed = conn.trailing_data
                    await response.take_over(stream, bytes(leftover) + bytes(early))
                    return
                if isinstance(response, Lines):
                    await self._stream_lines(conn, stream, response.source)
                    return
                await _send_json(stream, conn, response.status, response.body)
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return
        except Exception:  # a bug here costs this connection, never the server
            log.exception("app API connection failed")
            return
        finally:
            with trio.move_on_after(1) as scope:
                scope.shield = True
                await stream.aclose()

    async def _read_request(self, conn: h11.Connection, stream: trio.abc.Stream, needs_token: bool) -> Request | None:
        """The next request, or None when the connection is over (after a refusal, if any).

        Everything about the head (its size, ``_guard``, the announced body size) is answered as
        soon as the head is in, before any body is read; the head has ``header_timeout`` seconds
        to arrive, the body ``body_timeout`` more.
        """
        head: h11.Request | None = None
        headers: dict[str, str] = {}
        body = bytearray()
        with trio.move_on_after(self.header_timeout) as timeout:
            while True:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError as exc:
                    await self._refuse(
                        conn, stream, exc.error_status_hint, "bad_request", str(exc) or "malformed request"
                    )
                    return None
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    conn.receive_data(bytes(data))
                    if not data and conn.their_state is h11.IDLE:
                        return None
                    continue
                if isinstance(event, h11.Request):
                    head = event
                    size = len(event.target) + sum(len(n) + len(v) + 4 for n, v in event.headers)
                    if size > MAX_HEADERS:
                        await self._refuse(conn, stream, 431, "bad_request", f"headers are at most {MAX_HEADERS} bytes")
                        return None
                    headers = {n.decode("latin-1").lower(): v.decode("latin-1") for n, v in event.headers}
                    refusal = self._guard(headers, needs_token)
                    if refusal is not None:
                        await self._refuse(conn, stream, *refusal)
                        return None
                    length = headers.get("content-length")
                    if length is not None and length.isdigit() and int(length) > MAX_BODY:
                        await self._refuse(conn, stream, 413, "too_large", f"bodies are at most {MAX_BODY} bytes")
                        return None
                    timeout.deadline = trio.current_time() + self.body_timeout
                elif isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > MAX_BODY:
                        await self._refuse(conn, stream, 413, "too_large", f"bodies are at most {MAX_BODY} bytes")
                        return None
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:  # ConnectionClosed and the rest
                    return None
        if timeout.cancelled_caught or head is None:
            if head is not None:
                await self._refuse(conn, stream, 408, "bad_request", "the body did not arrive in time")
            return None
        parts = urlsplit(head.target.decode("latin-1"))
        try:
            parsed = json.loads(body) if body else None
        except (ValueError, UnicodeDecodeError):
            await self._refuse(conn, stream, 400, "bad_json", "the body is not JSON")
            return None
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return Request(method=head.method.decode(), path=unquote(parts.path), query=query, headers=headers, body=parsed)

    def _guard(self, headers: dict[str, str], needs_token: bool) -> tuple[int, str, str] | None:
        if "origin" in headers:
            return 403, "origin_refused", "requests from web pages are refused"
        host = headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name.lower() not in LOCAL_HOSTS:
            return 403, "host_refused", f"Host {host!r} is not a local name"
        if needs_token:
            given = headers.get("authorization", "")
            expected = f"Bearer {self.token}" if self.token else None
            if expected is None or not hmac.compare_digest(given.encode(), expected.encode()):
                return 401, "unauthorized", "a bearer token (the API token file) is needed"
        return None

    async def _call(self, request: Request) -> Response:
        try:
            return await self.handler(request)
        except ApiError as exc:
            return Json(exc.status, error_body(exc.code, exc.message))
        except Exception:
            log.exception("API handler failed on %s %s", request.method, request.path)
            return Json(500, error_body("internal", "the daemon failed on this request (see its log)"))

    async def _call_watching(self, request: Request, stream: trio.abc.Stream, early: bytearray) -> Response | None:
        """``_call`` for an Upgrade request, whose handler may wait long (``accept``): if the
        client closes its connection meanwhile the handler is cancelled (None), so that no channel
        is taken for a client that is gone.  Bytes the client sends early are kept in ``early``."""
        result: list[Response] = []
        async with trio.open_nursery() as nursery:

            async def call() -> None:
                result.append(await self._call(request))
                nursery.cancel_scope.cancel()

            async def watch() -> None:
                try:
                    while data := await stream.receive_some(65536):
                        early.extend(data)
                        if len(early) > MAX_BODY:
                            break
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                nursery.cancel_scope.cancel()

            nursery.start_soon(call)
            nursery.start_soon(watch)
        return result[0] if result else None

    async def _refuse(
        self, conn: h11.Connection, stream: trio.abc.Stream, status: int, code: str, message: str
    ) -> None:
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            await _send_json(stream, conn, status, error_body(code, message), close=True)

    async def _stream_lines(self, conn: h11.Connection, stream: trio.abc.Stream, source: AsyncIterator[Any]) -> None:
        """Push ``source``'s items, one JSON line each, until it ends or the client closes its side
        (watched all along, so a client that leaves a quiet stream frees its connection at once)."""
        headers = [
            ("content-type", "application/x-ndjson"),
            ("transfer-encoding", "chunked"),
            ("cache-control", "no-store"),
        ]
        await _send(stream, conn, h11.Response(status_code=200, headers=headers))
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                try:
                    while await stream.receive_some(65536):
                        pass  # nothing is expected from the client here
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            try:
                async for item in source:
                    await _send(stream, conn, h11.Data(data=json.dumps(item).encode() + b"\n"))
                await _send(stream, conn, h11.EndOfMessage())
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            nursery.cancel_scope.cancel()


async def _send(stream: trio.abc.Stream, conn: h11.Connection, event: Any) -> None:
    data = conn.send(event)
    if data:
        await stream.send_all(data)


async def _send_json(
    stream: trio.abc.Stream, conn: h11.Connection, status: int, body: Any, *, close: bool = False
) -> None:
    payload = json.dumps(body).encode() + b"\n"
    headers = [("content-type", "application/json"), ("content-length", str(len(payload)))]
    if close:
        headers.append(("connection", "close"))
    await _send(stream, conn, h11.Response(status_code=status, headers=headers))
    await _send(stream, conn, h11.Data(data=payload))
    await _send(stream, conn, h11.EndOfMessage())
