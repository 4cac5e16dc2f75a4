"""Real ``p2pos`` processes on loopback for the daemon's process-level tests (issue 11 item 8).

    with Lab(tmp_path) as lab:
        relay = lab.relay()                                   # p2pos relay, its bootstrap string
        a, b = lab.daemon("a", relay), lab.daemon("b", relay) # p2pos up, registered
        lab.serve(b, "sink", HASH_STDIN, allow=[a.peer_id])   # p2pos serve ... -- CMD
        done = lab.run(a, "pipe", b.peer_id, "sink", stdin=path)
        lab.check_no_tracebacks()

Every process runs in its own session (process group) with its home under the lab's folder and
its stdout and stderr in files beside it (``<name>.out``, ``<name>.err``), so nothing blocks on a
full pipe and a failing test shows what each process said.  When the ``with`` ends, however it
ends, every process the lab started gets SIGTERM, then SIGKILL after a few seconds, its whole
group with it (``serve`` runs a command per channel).

The commands are run as ``python -m p2pos.adapters.cli`` with this interpreter, so the compiled
pass (``PYTHONPATH=build/compiled``) runs its core in the processes too.  The daemon is asked
over its Unix socket with ``http.client`` (``api``), not by starting ``p2pos status`` each time:
polling stays cheap on a loaded machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

import pytest

#: How every command is started: the p2pos command line, with this interpreter.
P2POS = [sys.executable, "-m", "p2pos.adapters.cli"]
#: A command for ``serve`` that prints the SHA-256 of its stdin (as ``sha256sum`` does, without the name).
HASH_STDIN = [
    sys.executable,
    "-c",
    "import hashlib, sys\n"
    "h = hashlib.sha256()\n"
    "while chunk := sys.stdin.buffer.read(1 << 20):\n"
    "    h.update(chunk)\n"
    "print(h.hexdigest(), flush=True)\n",
]
#: Generous: the machine running the suite may be loaded (two cores, other suites beside).
START_TIMEOUT = 30.0
T = TypeVar("T")


def sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def random_file(path: Path, size: int) -> str:
    """``size`` random bytes written to ``path``; returns their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        left = size
        while left:
            chunk = os.urandom(min(left, 1 << 20))
            digest.update(chunk)
            handle.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = START_TIMEOUT, every: float = 0.1) -> T:
    """Call ``probe`` until it returns something other than None (or False); fail saying ``what``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = probe()
        except (OSError, http.client.HTTPException, ValueError) as exc:  # not up yet, or going down
            value, last_error = None, exc
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            why = f" (last error: {last_error!r})" if last_error is not None else ""
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}{why}", pytrace=False)
        time.sleep(every)


# -- the app API over the Unix socket, synchronously -----------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def api(socket_path: Path, method: str, target: str, body: Any = None, *, timeout: float = 20.0) -> tuple[int, Any]:
    """One request to the daemon's API on its Unix socket: (status, parsed JSON body)."""
    connection = _UnixConnection(socket_path, timeout)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        connection.request(method, target, body=payload, headers=headers)
        response = connection.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None
    finally:
        connection.close()


def read_events(
    socket_path: Path, until: Callable[[list[dict[str, Any]]], bool], *, after: int = 0, timeout: float = 20.0
) -> list[dict[str, Any]]:
    """``GET /v1/events?after=N``: the events read until ``until(events so far)`` holds.

    Fails the test with what was read if that takes longer than ``timeout`` seconds.
    """
    connection = _UnixConnection(socket_path, timeout)
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        connection.request("GET", f"/v1/events?after={after}")
        response = connection.getresponse()
        assert response.status == 200, response.read()
        assert response.getheader("content-type") == "application/x-ndjson"
        while not until(events):
            if connection.sock is not None:
                connection.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                line = response.readline()
            except TimeoutError:
                line = b""
            if not line:
                pytest.fail(f"the event stream did not show what was awaited; it said: {events}", pytrace=False)
            if line.strip():
                events.append(json.loads(line))
        return events
    finally:
        connection.close()


# -- processes ---------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class Proc:
    """A process the lab started; its output is in ``out`` and ``err``."""

    name: str
    args: list[str]  # what followed ``p2pos``
    popen: subprocess.Popen[bytes]
    out: Path
    err: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stdout_text(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""

    def stderr_text(self) -> str:
        return self.err.read_text(errors="replace") if self.err.exists() else ""

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"{self.name} did not finish within {timeout:.0f} s; stderr: {self.stderr_text()[-2000:]}",
                pytrace=False,
            )

    def running(self) -> bool:
        return self.popen.poll() is None


@dataclasses.dataclass(eq=False)
class Relay:
    proc: Proc
    home: Path
    bootstrap: str  # PEERID@127.0.0.1:PORT
    ws_url: str = ""  # ws://127.0.0.1:PORT/p2pos/relay/v1 with ws=True

    @property
    def port(self) -> int:
        return int(self.bootstrap.rsplit(":", 1)[1])

    @property
    def peer_id(self) -> str:
        return self.bootstrap.split("@", 1)[0]


@dataclasses.dataclass(eq=False)
class Daemon:
    proc: Proc
    home: Path
    name: str
    peer_id: str = ""

    @property
    def socket(self) -> Path:
        return self.home / "run" / "api.sock"

    def api(self, method: str, target: str, body: Any = None, *, timeout: float = 20.0) -> tuple[int, Any]:
        return api(self.socket, method, target, body, timeout=timeout)

    def status(self) -> dict[str, Any]:
        code, body = self.api("GET", "/v1/status")
        assert code == 200, body
        assert isinstance(body, dict)
        return body

    @property
    def udp_port(self) -> int:
        return int(self.status()["addresses"][0].rsplit(":", 1)[1])

    @property
    def api_port(self) -> int:
        return int((self.home / "run" / "api.port").read_text())

    @property
    def api_token(self) -> str:
        return (self.home / "run" / "api.token").read_text().strip()

    def registrations(self) -> list[str]:
        return [r["state"] for r in self.status()["registrations"]]

    def wait_registered(self, timeout: float = START_TIMEOUT) -> None:
        """Until every configured rendezvous node has this daemon registered."""

        def registered() -> bool:
            states = self.registrations()
            return bool(states) and all(s == "registered" for s in states)

        wait_for(f"{self.name} to be registered with every rendezvous node", registered, timeout)

    def events(
        self, until: Callable[[list[dict[str, Any]]], bool], *, after: int = 0, timeout: float = 20.0
    ) -> list[dict[str, Any]]:
        return read_events(self.socket, until, after=after, timeout=timeout)


class Lab:
    """Processes in ``root``: each with a home folder and output files there; all ended on exit."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[Proc] = []
        self._counts: dict[str, int] = {}

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            self.close()
        finally:
            if kind is not None:
                self.dump()

    # -- starting and ending ---------------------------------------------------------------

    def _name(self, base: str) -> str:
        count = self._counts.get(base, 0)
        self._counts[base] = count + 1
        return base if count == 0 else f"{base}.{count}"

    def start(
        self, name: str, *args: str, stdin: IO[bytes] | Path | int | None = None, stdout: Path | None = None
    ) -> Proc:
        """``p2pos ARGS`` in the background (stdin from a file or a pipe; stdin closed if None)."""
        name = self._name(name)
        out, err = stdout or self.root / f"{name}.out", self.root / f"{name}.err"
        with contextlib.ExitStack() as stack:
            if isinstance(stdin, Path):
                stdin = stack.enter_context(stdin.open("rb"))
            out_file = stack.enter_context(out.open("wb"))
            err_file = stack.enter_context(err.open("wb"))
            popen = subprocess.Popen(
                [*P2POS, *args],
                stdin=subprocess.DEVNULL if stdin is None else stdin,
                stdout=out_file,
                stderr=err_file,
                start_new_session=True,
                cwd=self.root,
            )
        proc = Proc(name, list(args), popen, out, err)
        self.procs.append(proc)
        return proc

    def run(
        self,
        daemon: Daemon | Path,
        *args: str,
        stdin: Path | None = None,
        stdout: Path | None = None,
        timeout: float = 90.0,
    ) -> tuple[int, Proc]:
        """``p2pos ARGS --home HOME`` to the end: (exit status, the process with its output)."""
        home = daemon.home if isinstance(daemon, Daemon) else daemon
        proc = self.start(args[0], *args, "--home", str(home), stdin=stdin, stdout=stdout)
        return proc.wait(timeout), proc

    def relay(self, name: str = "relay", *, port: int = 0, ws: bool = False) -> Relay:
        """``p2pos relay --listen`` (a rendezvous node), with ``ws`` also ``--ws`` (a WebSocket relay
        with the node behind it, spec/relay.md §6): its URL is then ``Relay.ws_url``."""
        home = self.root / name
        extra = ["--ws", "127.0.0.1:0"] if ws else []
        proc = self.start(name, "relay", "--listen", f"127.0.0.1:{port}", *extra, "--home", str(home))

        def bootstrap() -> str | None:
            if not proc.running():
                pytest.fail(f"{proc.name} exited: {proc.stderr_text()}", pytrace=False)
            for line in proc.stdout_text().splitlines():
                if line.startswith("bootstrap: "):
                    return line.split(" ", 1)[1].strip()
            return None

        relay = Relay(proc, home, wait_for(f"{proc.name} to print its bootstrap line", bootstrap))
        if ws:
            found = re.search(r"relay listening on (ws://\S+)", proc.stdout_text())
            assert found is not None, proc.stdout_text()
            relay.ws_url = found.group(1)
        return relay

    def daemon(
        self,
        name: str,
        *relays: Relay,
        keepalive: float | None = None,
        listen: str = "127.0.0.1:0",
        registered: bool = True,
        extra: Sequence[str] = (),
    ) -> Daemon:
        """``p2pos up`` in ``root/name``; returns once its API answers (and it is registered)."""
        home = self.root / name
        args = ["up", "--home", str(home), "--listen", listen, "--log-level", "debug", *extra]
        for relay in relays:
            args += ["--bootstrap", relay.bootstrap]
        if keepalive is not None:
            args += ["--keepalive", str(keepalive)]
        daemon = Daemon(self.start(name, *args), home, name)

        def up() -> str | None:
            if not daemon.proc.running():
                pytest.fail(f"{daemon.proc.name} exited: {daemon.proc.stderr_text()}", pytrace=False)
            peer_id = daemon.status()["peer_id"]
            return str(peer_id) if peer_id else None

        daemon.peer_id = wait_for(f"{name}'s API to answer", up)
        if relays and registered:
            daemon.wait_registered()
        return daemon

    def serve(
        self,
        daemon: Daemon,
        service: str,
        command: Sequence[str],
        *,
        allow: Sequence[str] = (),
        kind: str = "serve",
        extra: Sequence[str] = (),
    ) -> Proc:
        """``p2pos serve|expose SERVICE`` on ``daemon``; returns once the service is registered."""
        who = [a for peer in allow for a in ("--allow", peer)] or ["--allow-any"]
        tail = ["--", *command] if command else []
        proc = self.start(kind, kind, service, "--home", str(daemon.home), *who, *extra, *tail)

        def serving() -> bool:
            if not proc.running():
                pytest.fail(f"{proc.name} exited: {proc.stderr_text()}", pytrace=False)
            return f"serving {service}" in proc.stderr_text()

        wait_for(f"{proc.name} to serve {service}", serving)
        return proc

    def stop(self, proc: Proc, sig: signal.Signals = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Signal ``proc``'s group and wait for it; SIGKILL if it does not end in ``timeout``."""
        if proc.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        try:
            return proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.popen.wait(10)
            pytest.fail(f"{proc.name} did not end on {sig.name} within {timeout:.0f} s", pytrace=False)

    def close(self) -> None:
        """SIGTERM every process group the lab started, then SIGKILL what is left."""
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the group: a serve's commands too
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(5)

    # -- what they said ----------------------------------------------------------------------

    def dump(self) -> None:
        """Print every process's output tail (pytest shows it with a failure)."""
        for proc in self.procs:
            print(f"---- {proc.name} (pid {proc.pid}, exit {proc.popen.returncode}) {proc.args}")
            print("stderr:", proc.stderr_text()[-3000:])

    def check_no_tracebacks(self) -> None:
        for proc in self.procs:
            text = proc.stderr_text()
            assert "Traceback" not in text, f"{proc.name} printed a traceback:\n{text[-4000:]}"


# -- data sources and sinks --------------------------------------------------------------


def paced_writer(sink: IO[bytes], path: Path, seconds: float, chunk: int = 64 * 1024) -> threading.Thread:
    """A thread writing ``path`` to ``sink`` spread over about ``seconds``, then closing ``sink``."""
    size = path.stat().st_size
    pause = seconds / max(1, size // chunk)

    def write() -> None:
        try:
            with path.open("rb") as source:
                while data := source.read(chunk):
                    sink.write(data)
                    sink.flush()
                    time.sleep(pause)
        except BrokenPipeError:
            pass
        finally:
            with contextlib.suppress(BrokenPipeError):
                sink.close()

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


@contextlib.contextmanager
def hashing_tcp_server(send: Path | None) -> Iterator[tuple[int, list[str]]]:
    """A TCP server on 127.0.0.1 (a thread): each connection gets ``send`` (then a half-close) while
    what it sends is hashed; yields (port, the SHA-256 of each connection's bytes, in order)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    received: list[str] = []
    stop = threading.Event()

    def one(conn: socket.socket) -> None:
        def sender() -> None:
            with contextlib.suppress(OSError):
                if send is not None:
                    with send.open("rb") as source:
                        conn.sendfile(source)
                conn.shutdown(socket.SHUT_WR)

        thread = threading.Thread(target=sender, daemon=True)
        thread.start()
        digest = hashlib.sha256()
        with contextlib.suppress(OSError):
            while data := conn.recv(1 << 20):
                digest.update(data)
        thread.join(60)
        received.append(digest.hexdigest())
        conn.close()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(60)
            threading.Thread(target=one, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], received
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def exchange(port: int, send: Path, timeout: float = 60.0) -> str:
    """Connect to 127.0.0.1:``port``, send ``send`` (then half-close) while reading to the end:
    the SHA-256 of what came back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:

        def sender() -> None:
            with contextlib.suppress(OSError), send.open("rb") as source:
                conn.sendfile(source)
                conn.shutdown(socket.SHUT_WR)

        thread = threading.Thread(target=sender, daemon=True)
        thread.start()
        digest = hashlib.sha256()
        while data := conn.recv(1 << 20):
            digest.update(data)
        thread.join(timeout)
        return digest.hexdigest()
