"""The app API conformance suite (conformance/appapi/, spec/appapi.md) against our daemon.

A rendezvous node and two daemons run as real processes (``p2pos relay``, ``p2pos up``) on
loopback; the suite runs as ``python -m conformance.appapi`` against them, with every option
(``--slow`` too), so that every case runs.  Two more tests keep the suite honest: its requirement ids match
spec/appapi.md (``--trace``), and it fails against a broken daemon (a stand-in that answers
``200 {}`` to everything): a suite that cannot fail is worthless.
"""

from __future__ import annotations

import contextlib
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
P2POS = [sys.executable, "-m", "p2pos.adapters.cli"]
SUITE = [sys.executable, "-m", "conformance.appapi"]
START_TIMEOUT = 30.0

#: Cases our daemon fails because of a bug in adapters/ (reported, with a reproduction); each
#: is listed so that the run stays green until it is fixed and fails once it is (then drop it).
KNOWN_DAEMON_BUGS: dict[str, str] = {}


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=5)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(self._path)
        self.sock = sock


def _status(path: Path) -> dict[str, Any] | None:
    connection = _Unix(path)
    try:
        connection.request("GET", "/v1/status")
        response = connection.getresponse()
        body = json.loads(response.read())
        return body if response.status == 200 and isinstance(body, dict) else None
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def _wait(what: str, probe: Any, proc: subprocess.Popen[bytes]) -> Any:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what}: the process exited with {proc.returncode}", pytrace=False)
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}", pytrace=False)


@contextlib.contextmanager
def _network(root: Path) -> Iterator[tuple[Path, Path]]:
    """A rendezvous node and two registered daemons: yields their homes."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        with (root / f"{name}.out").open("wb") as out, (root / f"{name}.err").open("wb") as err:
            proc = subprocess.Popen([*P2POS, *args], stdout=out, stderr=err, start_new_session=True, cwd=root)
        procs.append(proc)
        return proc

    try:
        relay = start("relay", "relay", "--listen", "127.0.0.1:0", "--home", str(root / "relay"))

        def bootstrap() -> str | None:
            for line in (root / "relay.out").read_text().splitlines():
                if line.startswith("bootstrap: "):
                    return line.split(" ", 1)[1].strip()
            return None

        node = _wait("the rendezvous node's bootstrap line", bootstrap, relay)
        homes = []
        for name in ("a", "b"):
            home = root / name
            proc = start(name, "up", "--home", str(home), "--listen", "127.0.0.1:0", "--bootstrap", node)

            def registered(home: Path = home) -> bool:
                status = _status(home / "run" / "api.sock")
                states = [r.get("state") for r in status["registrations"]] if status else []
                return bool(states) and all(s == "registered" for s in states)

            _wait(f"daemon {name} to be registered", registered, proc)
            homes.append(home)
        yield homes[0], homes[1]
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def _suite(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SUITE, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)


def _results(report: Path) -> dict[str, str]:
    data = json.loads(report.read_text())
    return {c["id"]: c["result"] for c in data["cases"]}


def test_our_daemon_passes_every_case(tmp_path: Path) -> None:
    with _network(tmp_path) as (a, b):
        report = tmp_path / "report.json"
        run = a / "run"
        done = _suite(
            "--socket", str(run / "api.sock"),
            "--tcp-port", (run / "api.port").read_text().strip(),
            "--token-file", str(run / "api.token"),
            "--peer-socket", str(b / "run" / "api.sock"),
            "--slow",
            "--json", str(report),
        )  # fmt: skip
    results = _results(report)
    assert "skip" not in results.values(), done.stdout
    failed = {case_id for case_id, result in results.items() if result == "fail"}
    assert failed - KNOWN_DAEMON_BUGS.keys() == set(), done.stdout
    assert KNOWN_DAEMON_BUGS.keys() - failed == set(), "a known bug is fixed: drop it from KNOWN_DAEMON_BUGS"
    assert done.returncode == (1 if failed else 0), done.stdout + done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    assert summary == f"{len(results) - len(failed)} passed, {len(failed)} failed", summary
    assert len(results) >= 45


def test_every_requirement_is_cited_or_has_a_reason() -> None:
    done = _suite("--trace")
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| API-")]
    spec = (REPO / "spec" / "appapi.md").read_text()
    assert len(rows) == len(re.findall(r"\*\*\[API-\d", spec)) >= 80
    assert "**unmapped**" not in done.stdout
    listed = _suite("--list").stdout
    assert all(line.startswith("api/") for line in listed.splitlines())


class _Yes:
    """A broken daemon: a Unix socket answering ``200 {}`` to every request, then closing."""

    def __init__(self, path: Path) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        os.chmod(path, 0o600)
        self.listener.listen(512)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.answer, args=(conn,), daemon=True).start()

    @staticmethod
    def answer(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(2)
            data = b""
            while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
                data += chunk
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")

    def close(self) -> None:
        self.listener.close()


def test_the_suite_fails_a_daemon_that_says_yes_to_everything(tmp_path: Path) -> None:
    fake = _Yes(tmp_path / "api.sock")
    try:
        report = tmp_path / "report.json"
        done = _suite("--socket", str(tmp_path / "api.sock"), "--json", str(report), "-k", "api/", timeout=120)
    finally:
        fake.close()
    assert done.returncode == 1, done.stdout
    results = _results(report)
    failed = {case_id for case_id, result in results.items() if result == "fail"}
    for case_id in ("api/status/1", "api/http/2", "api/refuse/1", "api/refuse/3", "api/services/1", "api/events/1"):
        assert case_id in failed, done.stdout
    assert len(failed) >= 20, done.stdout
    assert {r for r in results.values()} <= {"pass", "fail", "skip"}
    assert done.stdout.strip().splitlines()[-1].endswith("skipped)")
