"""The app API's sockets (adapters/apisockets.py): a 0600 Unix socket and token-guarded TCP."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest
import trio

from p2pos.adapters.apisockets import AddressInUse, make_token_file, read_token_file, serve_tcp, serve_unix
from p2pos.adapters.httpapi import HttpApi, Json, Request, Response


async def status(request: Request) -> Response:
    return Json(200, {"ok": True})


async def ask(stream: trio.abc.Stream, extra: bytes = b"") -> tuple[int, object]:
    await stream.send_all(b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" + extra + b"\r\n")
    data = b""
    while chunk := await stream.receive_some(4096):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def test_unix_socket_is_private_and_serves(tmp_path: Path) -> None:
    path = tmp_path / "run" / "api.sock"
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_unix, HttpApi(status), path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert await ask(await trio.open_unix_socket(str(path))) == (200, {"ok": True})
        with pytest.raises(AddressInUse):  # a second daemon must not steal a live socket
            await serve_unix(HttpApi(status), path)
        nursery.cancel_scope.cancel()
    assert not path.exists()


async def test_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_unix, HttpApi(status), path)
        assert await ask(await trio.open_unix_socket(str(path))) == (200, {"ok": True})
        nursery.cancel_scope.cancel()


async def test_tcp_needs_the_token_from_the_file(tmp_path: Path) -> None:
    token = make_token_file(tmp_path / "api.token")
    assert read_token_file(tmp_path / "api.token") == token
    assert stat.S_IMODE(os.stat(tmp_path / "api.token").st_mode) == 0o600
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_tcp, HttpApi(status, token=token), 0)
        code, _ = await ask(await trio.open_tcp_stream("127.0.0.1", port))
        assert code == 401
        auth = b"Authorization: Bearer " + token.encode() + b"\r\n"
        assert await ask(await trio.open_tcp_stream("127.0.0.1", port), auth) == (200, {"ok": True})
        nursery.cancel_scope.cancel()
