"""The app API's HTTP layer (adapters/httpapi.py) on in-memory streams."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import trio
import trio.testing

from p2pos.adapters.httpapi import ApiError, HttpApi, Json, Lines, Request, Response, Upgrade


async def handler(request: Request) -> Response:
    if request.path == "/v1/echo":
        return Json(200, {"method": request.method, "body": request.body, "query": request.query})
    if request.path == "/v1/fail":
        raise ApiError(404, "peer_unknown", "no such peer")
    if request.path == "/v1/crash":
        raise RuntimeError("bug")
    if request.path == "/v1/events":

        async def lines() -> AsyncIterator[Any]:
            for seq in range(3):
                yield {"seq": seq}

        return Lines(lines())
    if request.path == "/v1/connect" and request.upgrade() == "p2pos-stream":

        async def take_over(stream: trio.abc.Stream, leftover: bytes) -> None:
            data = leftover or await stream.receive_some(100)
            await stream.send_all(b"echo:" + data)

        return Upgrade("p2pos-stream", [("p2pos-peer", "abc")], take_over)
    raise ApiError(404, "not_found", request.path)


async def exchange(raw: bytes, *, needs_token: bool = False, token: str | None = None) -> bytes:
    client, server = trio.testing.memory_stream_pair()
    api = HttpApi(handler, token=token)
    out = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: api.serve_connection(server, needs_token=needs_token))
        await client.send_all(raw)
        with trio.fail_after(5):
            while chunk := await client.receive_some(65536):
                out += chunk
    return bytes(out)


def status_and_json(response: bytes) -> tuple[int, Any]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


GET = b"GET /v1/echo?x=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


async def test_json_request() -> None:
    status, body = status_and_json(await exchange(GET))
    assert status == 200 and body == {"method": "GET", "body": None, "query": {"x": "1"}}


async def test_post_body_and_keep_alive() -> None:
    payload = b'{"a": 1}'
    one = b"POST /v1/echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload)
    out = await exchange(one + GET)
    assert out.count(b"HTTP/1.1 200") == 2 and b'"body": {"a": 1}' in out


async def test_browser_origin_and_foreign_host_are_refused() -> None:
    origin = GET.replace(b"Host: localhost", b"Host: localhost\r\nOrigin: https://evil.example")
    assert status_and_json(await exchange(origin)) == (
        403,
        {"error": {"code": "origin_refused", "message": "requests from web pages are refused"}},
    )
    rebinding = GET.replace(b"Host: localhost", b"Host: attacker.example:8080")
    assert status_and_json(await exchange(rebinding))[1]["error"]["code"] == "host_refused"


async def test_tcp_needs_the_token() -> None:
    assert status_and_json(await exchange(GET, needs_token=True, token="s3cret"))[0] == 401
    wrong = GET.replace(b"Host: localhost", b"Host: 127.0.0.1:9\r\nAuthorization: Bearer nope")
    assert status_and_json(await exchange(wrong, needs_token=True, token="s3cret"))[0] == 401
    right = GET.replace(b"Host: localhost", b"Host: 127.0.0.1:9\r\nAuthorization: Bearer s3cret")
    assert status_and_json(await exchange(right, needs_token=True, token="s3cret"))[0] == 200


async def test_errors_are_json_and_a_crash_is_a_500() -> None:
    fail = GET.replace(b"/v1/echo?x=1", b"/v1/fail")
    assert status_and_json(await exchange(fail)) == (
        404,
        {"error": {"code": "peer_unknown", "message": "no such peer"}},
    )
    crash = GET.replace(b"/v1/echo?x=1", b"/v1/crash")
    assert status_and_json(await exchange(crash))[1]["error"]["code"] == "internal"


async def test_garbage_oversize_and_bad_json_get_an_error_not_a_crash() -> None:
    assert b"HTTP/1.1 400" in await exchange(b"\x00\x01garbage\r\n\r\n")
    big = b"POST /v1/echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 99999999\r\n\r\n"
    assert status_and_json(await exchange(big))[0] == 413
    bad = b"POST /v1/echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\n{x}"
    assert status_and_json(await exchange(bad))[1]["error"]["code"] == "bad_json"
    # Headers that go on past 16 KiB without ending are refused, not buffered without bound.
    assert b"HTTP/1.1 431" in await exchange(b"GET / HTTP/1.1\r\nHost: localhost\r\nX: " + b"a" * 20000)


async def test_a_half_finished_request_is_dropped_after_the_header_timeout() -> None:
    client, server = trio.testing.memory_stream_pair()
    api = HttpApi(handler, header_timeout=0.5)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: api.serve_connection(server, needs_token=False))
            await client.send_all(b"GET /v1/echo HTTP/1.1\r\nHost: loc")
            assert await client.receive_some(100) == b""  # closed, nothing answered


async def test_lines_stream() -> None:
    out = await exchange(GET.replace(b"/v1/echo?x=1", b"/v1/events"))
    assert b"application/x-ndjson" in out and b"chunked" in out.lower()
    assert [json.loads(line) for line in out.split(b"\r\n") if line.startswith(b"{")] == [{"seq": i} for i in range(3)]


async def test_upgrade_hands_over_the_stream_with_leftover_bytes() -> None:
    raw = b"POST /v1/connect HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: p2pos-stream\r\n\r\nhello"
    out = await exchange(raw)
    head, _, rest = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101") and b"p2pos-peer: abc" in head.lower()
    assert rest == b"echo:hello"
