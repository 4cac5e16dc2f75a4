"""Reaching a TCP destination through an HTTP ``CONNECT`` proxy (RFC 9110 §9.3.6), with h11.

``proxy_for(host, env)`` picks the proxy from ``https_proxy``/``HTTPS_PROXY`` unless ``no_proxy``
/ ``NO_PROXY`` exempts the host; ``connect_tunnel(stream, host, port)`` sends the CONNECT request
on a stream already open to the proxy and returns a stream carrying the tunnel (TLS and the
WebSocket upgrade then run inside it, spec/relay.md §7.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

import h11
import trio

#: The most bytes a proxy's answer to CONNECT may take before its body starts.
MAX_RESPONSE = 16384


class ProxyError(OSError):
    """The proxy refused the tunnel or answered something that is not HTTP."""


def parse_proxy(url: str) -> tuple[str, int]:
    """``http://host:port`` (a bare ``host:port`` too) → ``(host, port)``; port 80 by default."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"not an http:// proxy URL: {url!r}")
    return parts.hostname, parts.port or 80


def _exempt(host: str, no_proxy: str) -> bool:
    host = host.lower().strip("[]")
    for item in no_proxy.split(","):
        raw = item.strip().lower()
        if raw == "*":
            return True
        name = (raw.rsplit(":", 1)[0] if raw.count(":") == 1 else raw).strip("[]").lstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def proxy_for(host: str, env: Mapping[str, str]) -> tuple[str, int] | None:
    """The proxy for ``host`` per ``https_proxy``/``HTTPS_PROXY`` and ``no_proxy``/``NO_PROXY``."""
    url = env.get("https_proxy") or env.get("HTTPS_PROXY")
    if not url:
        return None
    if _exempt(host, env.get("no_proxy") or env.get("NO_PROXY") or ""):
        return None
    return parse_proxy(url)


class _Prefixed(trio.abc.Stream):
    """A stream whose first bytes were already read (what followed the proxy's answer)."""

    def __init__(self, stream: trio.abc.Stream, prefix: bytes) -> None:
        self._stream, self._prefix = stream, prefix

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._prefix:
            n = len(self._prefix) if max_bytes is None else max_bytes
            out, self._prefix = self._prefix[:n], self._prefix[n:]
            return out
        return await self._stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self._stream.aclose()


async def connect_tunnel(stream: trio.abc.Stream, host: str, port: int) -> trio.abc.Stream:
    """Ask the proxy at the other end of ``stream`` for a tunnel to ``host:port``."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    conn = h11.Connection(our_role=h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE)
    request = h11.Request(method="CONNECT", target=authority, headers=[("Host", authority)])
    await stream.send_all(conn.send(request) or b"")
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise ProxyError(f"proxy: not HTTP ({exc})") from None
        if event is h11.NEED_DATA:
            data = await stream.receive_some(MAX_RESPONSE)
            if not data:
                raise ProxyError("proxy: closed before answering CONNECT")
            conn.receive_data(bytes(data))
            continue
        if isinstance(event, h11.InformationalResponse):
            continue
        if isinstance(event, h11.Response):
            if not 200 <= event.status_code < 300:
                raise ProxyError(f"proxy: CONNECT {authority} refused: {event.status_code} {event.reason.decode()}")
            trailing, _ = conn.trailing_data
            return _Prefixed(stream, bytes(trailing)) if trailing else stream
        raise ProxyError(f"proxy: unexpected {type(event).__name__}")
