"""The Python client of the app API (spec/appapi.md), for trio programs.

    client = Client.for_home(Home.chosen(None))        # or Client(socket_path=...) / Client(url=, token=)
    status = await client.status()
    await client.put_service("echo", allow_any=True)
    peer, stream = await client.accept("echo")         # a trio.abc.HalfCloseableStream
    stream = await client.connect(peer_id, "echo")
    async for event in client.events(after=0): ...

Every call opens its own connection (the daemon is local: that costs microseconds), so a
client object may be shared by tasks.  A refusal is ``ClientError`` with the API's ``code``
and its one-line message; a daemon that is not running is ``DaemonNotRunning``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import h11
import trio

from .bridge import Prefixed
from .home import Home

STREAM_PROTOCOL = "p2pos-stream/1"


class ClientError(Exception):
    """The daemon refused: ``code`` is the stable error code of spec/appapi.md §2.1."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class DaemonNotRunning(ClientError):
    def __init__(self, message: str) -> None:
        super().__init__(0, "daemon_not_running", message)


class Client:
    def __init__(self, *, socket_path: Path | None = None, url: str | None = None, token: str | None = None) -> None:
        if socket_path is None and url is None:
            raise ValueError("give socket_path or url")
        self.socket_path, self.url, self.token = socket_path, url, token

    @classmethod
    def for_home(cls, home: Home) -> Client:
        return cls(socket_path=home.api_socket)

    # -- the calls ------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        return await self._json("GET", "/v1/status")

    async def put_service(
        self, name: str, *, allow: list[str] | None = None, allow_any: bool = False, kind: str = "stream"
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": kind}
        if allow:
            body["allow"] = allow
        if allow_any:
            body["allow_any"] = True
        return await self._json("PUT", f"/v1/services/{quote(name, safe='')}", body)

    async def delete_service(self, name: str) -> dict[str, Any]:
        return await self._json("DELETE", f"/v1/services/{quote(name, safe='')}")

    async def accept(self, service: str) -> tuple[str, trio.abc.HalfCloseableStream]:
        """The next channel a peer opens to ``service``: (its peer id, the stream)."""
        return await self._upgrade(f"/v1/services/{quote(service, safe='')}/accept")

    async def connect(self, peer: str, service: str) -> trio.abc.HalfCloseableStream:
        path = f"/v1/peers/{quote(peer, safe='')}/services/{quote(service, safe='')}/connect"
        _, stream = await self._upgrade(path)
        return stream

    async def sas(self, peer: str) -> dict[str, Any]:
        return await self._json("GET", f"/v1/peers/{quote(peer, safe='')}/sas")

    async def verify(self, peer: str, sas: str) -> dict[str, Any]:
        return await self._json("POST", f"/v1/peers/{quote(peer, safe='')}/verify", {"sas": sas})

    async def pin(self, peer: str, via: str | None) -> dict[str, Any]:
        """Keep the session with ``peer`` on one carrier (``udp``, ``quic``, ``turn``, ``relay``), None: unpin."""
        if via is None:
            return await self._json("DELETE", f"/v1/peers/{quote(peer, safe='')}/pin")
        return await self._json("PUT", f"/v1/peers/{quote(peer, safe='')}/pin", {"via": via})

    async def plugins(self) -> dict[str, Any]:
        return await self._json("GET", "/v1/plugins")

    async def plugin(self, name: str, action: str) -> dict[str, Any]:
        return await self._json("POST", f"/v1/plugins/{quote(name, safe='')}/{action}")

    async def stop(self) -> dict[str, Any]:
        return await self._json("POST", "/v1/stop")

    async def events(self, after: int | None = None) -> AsyncIterator[dict[str, Any]]:
        """The daemon's numbered events (spec/appapi.md §5), forever."""
        target = "/v1/events" + (f"?after={after}" if after is not None else "")
        stream, conn = await self._send_request("GET", target, None)
        async with stream:
            response = await _next_event(stream, conn)
            if not isinstance(response, h11.Response) or response.status_code != 200:
                raise ClientError(getattr(response, "status_code", 0), "bad_response", "no event stream")
            buffer = b""
            while True:
                event = await _next_event(stream, conn)
                if isinstance(event, h11.Data):
                    buffer += event.data
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield json.loads(line)
                else:
                    return

    # -- HTTP -----------------------------------------------------------------------------

    async def _json(self, method: str, target: str, body: Any = None) -> dict[str, Any]:
        answer = await self.request(method, target, body)
        if not isinstance(answer, dict):
            raise ClientError(0, "bad_response", f"{method} {target}: the daemon answered no JSON object")
        return answer

    async def request(self, method: str, target: str, body: Any = None) -> Any:
        stream, conn = await self._send_request(method, target, body)
        async with stream:
            response = await _next_event(stream, conn)
            data = bytearray()
            while True:
                event = await _next_event(stream, conn)
                if isinstance(event, h11.Data):
                    data += event.data
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    break
        assert isinstance(response, h11.Response)
        return _result(response.status_code, bytes(data))

    async def _upgrade(self, target: str) -> tuple[str, trio.abc.HalfCloseableStream]:
        extra = [("Connection", "Upgrade"), ("Upgrade", STREAM_PROTOCOL)]
        stream, conn = await self._send_request("POST", target, None, extra)
        try:
            response = await _next_event(stream, conn)
            if isinstance(response, h11.InformationalResponse) and response.status_code == 101:
                headers = {k.decode().lower(): v.decode() for k, v in response.headers}
                leftover, _ = conn.trailing_data
                return headers.get("p2pos-peer", ""), Prefixed(stream, bytes(leftover))
            data = bytearray()
            while isinstance(event := await _next_event(stream, conn), h11.Data):
                data += event.data
            assert isinstance(response, h11.Response)
            _result(response.status_code, bytes(data))
            raise ClientError(response.status_code, "bad_response", f"expected 101, got {response.status_code}")
        except BaseException:
            await stream.aclose()
            raise

    async def _send_request(
        self, method: str, target: str, body: Any, extra: list[tuple[str, str]] | None = None
    ) -> tuple[trio.abc.Stream, h11.Connection]:
        stream = await self._open()
        payload = json.dumps(body).encode() if body is not None else b""
        headers = [("Host", "localhost"), *(extra or [])]
        if self.token:
            headers.append(("Authorization", f"Bearer {self.token}"))
        if payload:
            headers += [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
        elif method in ("POST", "PUT") and not extra:
            headers.append(("Content-Length", "0"))
        conn = h11.Connection(h11.CLIENT)
        try:
            data = conn.send(h11.Request(method=method, target=target, headers=headers))
            if payload:
                data += conn.send(h11.Data(data=payload))
            data += conn.send(h11.EndOfMessage())
            await stream.send_all(data)
        except BaseException:
            await stream.aclose()
            raise
        return stream, conn

    async def _open(self) -> trio.abc.Stream:
        try:
            if self.socket_path is not None:
                return await trio.open_unix_socket(str(self.socket_path))
            parts = urlsplit(self.url or "")
            return await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 80)
        except OSError as exc:
            where = self.socket_path or self.url
            raise DaemonNotRunning(f"the daemon is not running ({where}: {exc.strerror or exc})") from None


async def _next_event(stream: trio.abc.Stream, conn: h11.Connection) -> Any:
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:  # closed before it finished answering (it is stopping), or not HTTP
            raise ClientError(0, "bad_response", "the daemon closed the connection (is it stopping?)") from None
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            conn.receive_data(bytes(data))
            continue
        if event is h11.PAUSED:
            return h11.ConnectionClosed()
        return event


def _result(status: int, data: bytes) -> Any:
    try:
        body = json.loads(data) if data else None
    except ValueError:
        body = None
    if status >= 400:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        raise ClientError(status, error.get("code", "http_error"), error.get("message", f"HTTP {status}"))
    return body
