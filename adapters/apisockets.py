"""Where the app API listens (spec/appapi.md §1): a Unix socket only its user can open, and
localhost TCP guarded by a token file only its user can read.

``serve_unix(api, path)``: the socket file is created with mode 0600 (the umask is set around
``bind``, so there is no moment when others could connect); a stale file left by a daemon that
died is replaced, a live daemon's is not (``AddressInUse``).  ``serve_tcp(api, port, token)``:
on 127.0.0.1 only; every request must carry ``Authorization: Bearer TOKEN``, the token being
``make_token_file``'s, written 0600 next to the socket.  A client that misbehaves costs one task
of the nursery and never the server: ``HttpApi.serve_connection`` does not raise.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import socket as _socket
import stat
from pathlib import Path

import trio

from .httpapi import HttpApi

log = logging.getLogger("p2pos.api")


class AddressInUse(Exception):
    """Another daemon serves this socket (or a file that is not a socket is in the way)."""


def make_token_file(path: Path) -> str:
    """A new random token, written to ``path`` readable by this user only; returns it."""
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.replace(tmp, path)
    return token


def read_token_file(path: Path) -> str:
    return path.read_text().strip()


def _stale(path: Path) -> bool:
    """Whether ``path`` is a Unix socket nobody listens on (left by a daemon that died)."""
    if not stat.S_ISSOCK(path.lstat().st_mode):
        return False
    probe = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as exc:
        return exc.errno in (errno.ECONNREFUSED, errno.ENOENT)
    finally:
        probe.close()
    return False


async def bind_unix(path: Path) -> trio.SocketListener:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists() or path.is_symlink():
        if not _stale(path):
            raise AddressInUse(f"{path}: another daemon is serving this API socket")
        path.unlink()
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        await sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(128)
    return trio.SocketListener(sock)


#: API connections served at once, per listener: more wait in the kernel's accept queue.
MAX_CONNECTIONS = 256


async def serve_listener(api: HttpApi, listener: trio.SocketListener, *, needs_token: bool) -> None:
    slots = trio.Semaphore(MAX_CONNECTIONS)

    async def serve(stream: trio.SocketStream) -> None:
        try:
            await api.serve_connection(stream, needs_token=needs_token)
        finally:
            slots.release()

    async with trio.open_nursery() as nursery:
        while True:
            await slots.acquire()
            try:
                stream = await listener.accept()
            except OSError as exc:  # out of file descriptors, say: wait, never die
                slots.release()
                log.warning("app API: accept failed: %s", exc)
                await trio.sleep(0.1)
                continue
            nursery.start_soon(serve, stream)


async def serve_unix(
    api: HttpApi, path: Path, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    listener = await bind_unix(path)
    task_status.started()
    try:
        await serve_listener(api, listener, needs_token=False)
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


async def serve_tcp(api: HttpApi, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve on 127.0.0.1:``port`` (0: any free port, reported through ``task_status``)."""
    (listener,) = await trio.open_tcp_listeners(port, host="127.0.0.1")
    task_status.started(listener.socket.getsockname()[1])
    await serve_listener(api, listener, needs_token=True)
