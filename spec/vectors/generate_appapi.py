"""Write the app API vectors (spec/vectors/appapi.json) from the implementation.

Run from the repository root::

    .venv/bin/python spec/vectors/generate_appapi.py           # (re)write appapi.json
    .venv/bin/python spec/vectors/generate_appapi.py --check   # exit 1 if it differs

Exact HTTP exchanges of spec/appapi.md: the requests every daemon must refuse before any handler
runs (§2) and the bytes the reference daemon answers them with, an error body (§2.1), a channel
asked for by Upgrade and its ``101`` (§4), the ``Sec-WebSocket-Accept`` of a WebSocket handshake
(RFC 6455 §4.2.2, §4), and an event stream that starts with a ``missed`` line (§5).  Each
exchange is run through ``adapters/httpapi.py`` in memory.  ``build_vectors()`` returns ``{file
name: JSON text}`` as ``generate.py`` does, which checks this file too.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio
import trio.testing

from p2pos.adapters.bridge import websocket_accept
from p2pos.adapters.eventlog import EventLog
from p2pos.adapters.httpapi import ApiError, HttpApi, Json, Lines, Request, Response, Upgrade

VECTORS_DIR = Path(__file__).resolve().parent
PEER = "aevth7hyymxxb4m27mw5jmskjvjliitpdyphr46647itn5qkdlvqwoe5af7a"
TOKEN = "token-of-the-vectors"

#: (name, request bytes, over TCP (needs the token)): each is refused before the handler runs.
REFUSALS = [
    ("an Origin header", b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\nOrigin: https://example.com\r\n\r\n", False),
    ("a foreign Host", b"GET /v1/status HTTP/1.1\r\nHost: example.com\r\n\r\n", False),
    ("TCP without the token", b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1:4000\r\n\r\n", True),
    (
        "TCP with a wrong token",
        b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1:4000\r\nAuthorization: Bearer nope\r\n\r\n",
        True,
    ),
    (
        "a body over 1 MiB announced",
        b"PUT /v1/services/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1048577\r\n\r\n",
        False,
    ),
    (
        "a body that is not JSON",
        b"PUT /v1/services/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\n{x}",
        False,
    ),
]


async def _handler(request: Request) -> Response:
    """A stand-in daemon: /v1/status answers, connect upgrades, events stream, the rest is 404."""
    if request.path == "/v1/status":
        return Json(200, {"peer_id": PEER})
    if request.path.endswith("/connect") and request.upgrade() == "p2pos-stream/1":

        async def take_over(stream: trio.abc.Stream, leftover: bytes) -> None:
            await stream.send_all(b"channel bytes")

        return Upgrade("p2pos-stream/1", [("p2pos-peer", PEER)], take_over)
    if request.path == "/v1/events":
        return Lines(_events())
    raise ApiError(404, "not_found", f"no such path: {request.path} (the API is under /v1/)")


async def _events() -> AsyncIterator[dict[str, Any]]:
    now = [0.0]
    log = EventLog(keep_count=2, keep_seconds=0.0, clock=lambda: now[0])
    log.append("started", peer_id=PEER)
    now[0] = 1.0
    log.append("registered", node=PEER, observed="203.0.113.7:41000")
    log.append("peer_connected", peer_id=PEER, address="198.51.100.9:4000")
    for item in log.since(0):
        yield item


async def _exchange(request: bytes, *, tcp: bool = False) -> bytes:
    """The bytes the reference answers ``request`` with, until it closes (or 100 ms of quiet)."""
    api = HttpApi(_handler, token=TOKEN if tcp else None)
    server, client = trio.testing.memory_stream_pair()
    answer = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: api.serve_connection(server, needs_token=tcp))
        await client.send_all(request)
        while True:
            with trio.move_on_after(0.1) as quiet:
                data = await client.receive_some()
            if quiet.cancelled_caught or not data:
                break
            answer += data
        nursery.cancel_scope.cancel()
    return bytes(answer)


def _status_and_code(response: bytes) -> tuple[int, str | None]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        code = json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = None
    return status, code


async def _build() -> dict[str, Any]:
    refusals = []
    for name, request, tcp in REFUSALS:
        response = await _exchange(request, tcp=tcp)
        status, code = _status_and_code(response)
        refusals.append(
            {
                "name": name,
                "socket": "tcp" if tcp else "unix",
                "request": request.decode("latin-1"),
                "status": status,
                "code": code,
                "response": response.decode("latin-1"),
            }
        )
    not_found = b"GET /v2/nothing HTTP/1.1\r\nHost: localhost\r\n\r\n"
    upgrade = (
        f"POST /v1/peers/{PEER}/services/chat/connect HTTP/1.1\r\nHost: localhost\r\n"
        "Connection: Upgrade\r\nUpgrade: p2pos-stream/1\r\n\r\n"
    ).encode()
    events = b"GET /v1/events?after=0 HTTP/1.1\r\nHost: localhost\r\n\r\n"
    exchanges = []
    for name, request in (("an error body", not_found), ("a channel by Upgrade", upgrade), ("events", events)):
        response = await _exchange(request)
        exchanges.append({"name": name, "request": request.decode(), "response": response.decode("latin-1")})
    keys = ["dGhlIHNhbXBsZSBub25jZQ==", "AQIDBAUGBwgJCgsMDQ4PEA=="]
    return {
        "description": (
            "Exact HTTP/1.1 exchanges of the app API as the reference daemon's HTTP layer (adapters/httpapi.py) "
            "answers them: requests refused before any handler runs, with the status, error code and whole "
            "response; an error body, a channel by Upgrade (the bytes after the 101 are the channel's), an "
            "event stream starting with a missed notice (its chunked framing included); and WebSocket "
            "accept values. Over TCP the token is " + repr(TOKEN) + "."
        ),
        "spec": ["spec/appapi.md §2", "spec/appapi.md §2.1", "spec/appapi.md §4", "spec/appapi.md §5"],
        "refusals": refusals,
        "exchanges": exchanges,
        "websocket_accept": [{"key": key, "accept": websocket_accept(key)} for key in keys],
    }


def build_vectors() -> dict[str, str]:
    return {"appapi.json": json.dumps(trio.run(_build), indent=2, ensure_ascii=False) + "\n"}


def main(argv: list[str] | None = None) -> int:
    spec = importlib.util.spec_from_file_location("generate_frames", VECTORS_DIR / "generate_frames.py")
    if spec is None or spec.loader is None:
        raise RuntimeError("generate_frames.py not found beside generate_appapi.py")
    frames = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(frames)
    status: int = frames.write_or_check(build_vectors(), argv, script="generate_appapi.py", doc=__doc__)
    return status


if __name__ == "__main__":
    sys.exit(main())
