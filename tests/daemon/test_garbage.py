"""Garbage on every listening port while data is in flight: random UDP datagrams at the rendezvous
node and both daemons, malformed, oversize, unauthorised and half-finished HTTP on both API sockets
of both daemons, and connections that never say anything.  Afterwards the transfer's hash is
right, every process still answers, and the node still registers a new daemon (daemon_lab.py)."""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from daemon_lab import HASH_STDIN, Daemon, Lab, paced_writer, random_file

#: (what, request bytes, the status expected, or None when any answer or none will do).
Probe = tuple[str, bytes, int | None]


def _http(head: str, body: bytes = b"", host: str = "localhost", token: str | None = None) -> bytes:
    first, *headers = head.split("\n")
    lines = [f"{first} HTTP/1.1", f"Host: {host}", *headers]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _probes(rng: random.Random, peer: str, token: str | None) -> list[Probe]:
    """What each API socket gets, one connection each; ``token`` is the TCP socket's (None: Unix)."""

    def req(head: str, body: bytes = b"", host: str = "localhost") -> bytes:
        return _http(head, body, host, token)

    probes: list[Probe] = [
        ("random bytes", rng.randbytes(2000), None),
        ("NULs", bytes(300), None),
        ("a request line of 20 kB", req("GET /" + "a" * 20_000), 431),
        ("a header of 20 kB", req("GET /v1/status\nX-Big: " + "b" * 20_000), 431),
        ("headers of 100 kB", req("GET /v1/status\n" + "\n".join(f"X-{i}: {'c' * 1000}" for i in range(100))), 431),
        ("100 headers", req("GET /v1/status\n" + "\n".join(f"X-{i}: {i}" for i in range(100))), 200),
        ("a body announced at 2 MB", req("PUT /v1/services/x\nContent-Length: 2000000"), 413),
        ("a body that is not JSON", req("PUT /v1/services/x", b"{not json"), 400),
        ("a JSON list body", req("PUT /v1/services/x", b"[1, 2]"), 400),
        ("a bad allow list", req("PUT /v1/services/x", b'{"allow": [7]}'), 400),
        ("a bad peer in allow", req("PUT /v1/services/x", b'{"allow": ["nope"]}'), 400),
        ("a bad service name", req("PUT /v1/services/UPPER%20case", b'{"allow_any": true}'), 400),
        ("an Origin", req("GET /v1/status\nOrigin: https://evil.example"), 403),
        ("a foreign Host", req("GET /v1/status", host="evil.example"), 403),
        ("a foreign Host with a port", req("GET /v1/status", host="localhost.evil.example:80"), 403),
        ("no Host", b"GET /v1/status HTTP/1.1\r\n\r\n", None),
        ("HTTP/1.0", req("GET /v1/status").replace(b"HTTP/1.1", b"HTTP/1.0"), 200),
        ("an unknown method", req("BREW /v1/status"), 405),
        ("a path outside the API", req("GET /../../etc/passwd"), 404),
        ("a NUL in the path", req("GET /v1/peers/%00/sas"), 400),
        ("a bad event number", req("GET /v1/events?after=-1"), 400),
        ("a WebSocket without a key", req("GET /v1/services/x/accept\nConnection: Upgrade\nUpgrade: websocket"), 400),
        ("an unknown upgrade", req("POST /v1/services/x/accept\nConnection: Upgrade\nUpgrade: h2c"), 426),
        (
            "accept on no service",
            req("POST /v1/services/none/accept\nConnection: Upgrade\nUpgrade: p2pos-stream/1"),
            404,
        ),
        (
            "a chunked body of 4 GB",
            req("PUT /v1/services/x\nTransfer-Encoding: chunked") + b"FFFFFFFF\r\n" + rng.randbytes(1000),
            None,
        ),
        ("a bad chunk size", req("PUT /v1/services/x\nTransfer-Encoding: chunked") + b"zz\r\n\r\n", 400),
        ("two Content-Lengths", req("PUT /v1/services/x\nContent-Length: 1\nContent-Length: 2") + b"{}", 400),
        ("100 pipelined requests", req("GET /v1/services") * 100, 200),
        ("a random method and path", req(f"{rng.randbytes(8).hex()} /{rng.randbytes(30).hex()}"), None),
        ("stop with a GET", req("GET /v1/stop"), 405),
        ("verify with garbage", req(f"POST /v1/peers/{peer}/verify", b'{"sas": 12}'), 409),
    ]
    if token is not None:
        unauthorised = [
            ("no token", _http("GET /v1/status"), 401),
            ("a wrong token", _http("GET /v1/status", token="x" * len(token)), 401),
            ("a token of another scheme", _http("GET /v1/status\nAuthorization: Basic " + token), 401),
            ("the token, shorter", _http("GET /v1/status", token=token[:-1]), 401),
            ("stop without a token", _http("POST /v1/stop"), 401),
        ]
        probes += unauthorised
    return probes


def _status_of(answer: bytes) -> int | None:
    if not answer.startswith(b"HTTP/1."):
        return None
    return int(answer.split(b" ", 2)[1])


class ApiTarget:
    """One of a daemon's two API sockets."""

    def __init__(self, daemon: Daemon, tcp: bool) -> None:
        self.daemon, self.tcp = daemon, tcp
        self.name = f"{daemon.name} {'TCP' if tcp else 'Unix'}"

    def connect(self, timeout: float = 10.0) -> socket.socket:
        if self.tcp:
            return socket.create_connection(("127.0.0.1", self.daemon.api_port), timeout=timeout)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(str(self.daemon.socket))
        return sock

    def ask(self, data: bytes, *, close_early: bool = False) -> bytes:
        """Send ``data``, half-close, read what comes back (or nothing) within a few seconds."""
        with self.connect() as sock:
            with contextlib.suppress(OSError):
                sock.sendall(data)
            if close_early:
                return b""
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
            answer = bytearray()
            sock.settimeout(5)
            with contextlib.suppress(OSError):
                while len(answer) < 1 << 20 and (chunk := sock.recv(65536)):
                    answer += chunk
            return bytes(answer)


def _udp_garbage(rng: random.Random, ports: list[int]) -> int:
    """Random datagrams (every first byte, sizes 0..1500, a few of 60 kB) at each port; how many."""
    sent = 0
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
    try:
        for port in ports:
            for i in range(768):
                size = rng.randrange(0, 1501)
                data = bytes([i % 256]) + rng.randbytes(size - 1) if size else b""
                with contextlib.suppress(OSError):  # ENOBUFS on a loaded machine: it is garbage anyway
                    socks[i % len(socks)].sendto(data, ("127.0.0.1", port))
                    sent += 1
                if i % 64 == 0:
                    time.sleep(0.005)
            for first in (0x00, 0x01, 0x0B, 0xFF):
                with contextlib.suppress(OSError):
                    socks[0].sendto(bytes([first]) + rng.randbytes(60_000), ("127.0.0.1", port))
                    sent += 1
    finally:
        for sock in socks:
            sock.close()
    return sent


@contextlib.contextmanager
def _silent(targets: list[ApiTarget], count: int) -> Iterator[list[tuple[str, socket.socket]]]:
    """``count`` connections to each target that say nothing, stop within the headers, or within
    the body: (which, the socket)."""
    socks: list[tuple[str, socket.socket]] = []
    try:
        for target in targets:
            token = target.daemon.api_token if target.tcp else None
            for i in range(count):
                sock = target.connect()
                kind = ("nothing", "half headers", "half body")[i % 3]
                if kind == "half headers":
                    sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: loc")
                elif kind == "half body":
                    sock.sendall(_http("PUT /v1/services/x\nContent-Length: 100", token=token) + b'{"allow')
                socks.append((kind, sock))
        yield socks
    finally:
        for _, sock in socks:
            sock.close()


def test_garbage_on_every_port_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(8)
    long = tmp_path / "long"
    digest = random_file(long, 20 * 1024 * 1024)
    with Lab(tmp_path) as lab:
        relay = lab.relay()
        a, b = lab.daemon("a", relay), lab.daemon("b", relay)
        lab.serve(b, "sink", HASH_STDIN, allow=[a.peer_id])
        pipe = lab.start("long-pipe", "pipe", b.peer_id, "sink", "--home", str(a.home), stdin=subprocess.PIPE)
        assert pipe.popen.stdin is not None
        writer = paced_writer(pipe.popen.stdin, long, seconds=10)
        targets = [ApiTarget(d, tcp) for d in (a, b) for tcp in (False, True)]

        wrong: list[tuple[str, str, int | None, bytes]] = []
        with _silent(targets, 24) as silent:
            assert _udp_garbage(rng, [relay.port, a.udp_port, b.udp_port]) > 2000
            for target in targets:
                token = target.daemon.api_token if target.tcp else None
                for what, data, expected in _probes(rng, a.peer_id, token):
                    answer = target.ask(data)
                    if expected is not None and _status_of(answer) != expected:
                        wrong.append((target.name, what, expected, answer[:200]))
                    if what == "100 pipelined requests" and answer.count(b"HTTP/1.1 200 ") != 100:
                        wrong.append((target.name, what, 200, answer[:200]))
                # Connections dropped halfway: an upgrade to a peer, the event stream, a body.
                target.ask(
                    _http(
                        f"POST /v1/peers/{b.peer_id}/services/sink/connect\nConnection: Upgrade\n"
                        "Upgrade: p2pos-stream/1",
                        token=token,
                    ),
                    close_early=True,
                )
                target.ask(_http("GET /v1/events?after=0", token=token), close_early=True)
                target.ask(_http("PUT /v1/services/x\nContent-Length: 50", token=token) + b"{", close_early=True)
            assert not wrong, "\n".join(map(repr, wrong))
            assert pipe.running(), "the transfer ended before the garbage did: it proves nothing"
            for daemon in (a, b):  # the API answers while the silent connections hold their slots
                assert daemon.status()["peer_id"] == daemon.peer_id

            writer.join(60)
            assert pipe.wait(60) == 0, pipe.stderr_text()
            assert pipe.stdout_text().split() == [digest]

            # Headers not complete within 10 s (and those connections are older): the daemon closed them.
            for kind, sock in silent:
                if kind != "half body":
                    sock.settimeout(15)
                    with contextlib.suppress(ConnectionResetError):
                        assert sock.recv(65536) == b"", kind

        for daemon in (a, b):
            assert daemon.status()["peer_id"] == daemon.peer_id
            daemon.wait_registered(timeout=10)
            assert not any(s["name"] == "x" for s in daemon.status()["services"])
        c = lab.daemon("c", relay)  # the node still registers a newcomer
        code, again = lab.run(c, "pipe", b.peer_id, "sink", stdin=long)
        assert code == 1 and "does not allow" in again.stderr_text()  # b's allow list is still a only
        assert relay.proc.running() and a.proc.running() and b.proc.running()
        lab.check_no_tracebacks()
