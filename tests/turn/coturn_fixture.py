"""A real coturn (``turnserver``) on loopback for the TURN tests, one per test module.

``start_coturn(auth)`` writes a config into a fresh temporary folder (free ports, a self-signed
certificate for TLS, ``allow-loopback-peers`` since coturn refuses loopback peers otherwise),
starts ``turnserver -c``, waits until it answers a STUN Binding on its UDP port and accepts
TCP on its TLS port (not a sleep), and on the way out stops it and removes the folder, whatever
happened.  Without ``turnserver``: skip, unless the ``CI`` variable is set (then fail: CI
installs it with ``make system-deps``).
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from tls_helpers import self_signed

from p2pos.proto.nat import stun
from p2pos.proto.nat.turn_config import TurnServer, TurnTransport

HOST = "127.0.0.1"
REALM = "p2pos.test"
USER, PASSWORD = "alice", "correct horse"
SECRET = "p2pos-coturn-shared-secret"
#: Relay ports each coturn may hand out.
RELAY_PORTS = 40


@dataclass
class Coturn:
    port: int
    tls_port: int
    min_port: int
    max_port: int
    cert: Path
    folder: Path
    process: subprocess.Popen[bytes]

    def server(self, transport: TurnTransport) -> TurnServer:
        port = self.tls_port if transport is TurnTransport.TLS else self.port
        return TurnServer(host=HOST, port=port, transport=transport)

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def log(self) -> str:
        path = self.folder / "turn.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else "(no log)"


def require_turnserver() -> str:
    path = shutil.which("turnserver")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("turnserver (Debian package coturn) is missing: `make system-deps` installs it")
        pytest.skip("turnserver (coturn) is not installed; CI installs it with `make system-deps`")
    return path


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _free_both() -> int:
    """A port free for UDP and TCP alike."""
    for _ in range(50):
        port = _free_port(socket.SOCK_DGRAM)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((HOST, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port for coturn")


def _free_range(size: int) -> int:
    """The first of ``size`` consecutive UDP ports free now."""
    for _ in range(100):
        base = _free_port(socket.SOCK_DGRAM)
        if base + size >= 65535:
            continue
        held: list[socket.socket] = []
        try:
            for port in range(base, base + size):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(s)
                s.bind((HOST, port))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no free UDP port range for coturn's relays")


def _self_signed(folder: Path) -> tuple[Path, Path]:
    return self_signed(folder, "p2pos coturn test", ips=[HOST])


def _wait_ready(port: int, tls_port: int, process: subprocess.Popen[bytes], folder: Path) -> None:
    """Until coturn answers a STUN Binding on UDP and accepts TCP on the TLS port (10 s at most)."""
    deadline = time.monotonic() + 10.0
    txid = os.urandom(12)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(0.1)
        while True:
            if process.poll() is not None:
                log = (folder / "turn.log").read_text(errors="replace") if (folder / "turn.log").exists() else ""
                raise RuntimeError(f"turnserver exited with {process.returncode}: {log[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("turnserver did not answer a STUN Binding within 10 s")
            udp.sendto(stun.binding_request(txid), (HOST, port))
            try:
                data = udp.recv(2048)
            except (TimeoutError, ConnectionRefusedError):
                continue
            if stun.mapped_address_untrusted(data, txid) is not None:
                break
    while time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, tls_port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("turnserver's TLS port does not accept connections")


@contextmanager
def start_coturn(auth: str) -> Iterator[Coturn]:
    """coturn with long-term users (``auth="long-term"``) or a REST shared secret (``auth="rest"``)."""
    binary = require_turnserver()
    folder = Path(tempfile.mkdtemp(prefix="p2pos-coturn-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        cert, key = _self_signed(folder)
        port, tls_port, base = _free_both(), _free_both(), _free_range(RELAY_PORTS)
        lines = [
            f"listening-ip={HOST}",
            f"relay-ip={HOST}",
            f"listening-port={port}",
            f"tls-listening-port={tls_port}",
            f"min-port={base}",
            f"max-port={base + RELAY_PORTS - 1}",
            "allow-loopback-peers",
            "no-multicast-peers",
            f"realm={REALM}",
            "fingerprint",
            f"cert={cert}",
            f"pkey={key}",
            "no-dtls",
            "no-cli",
            "no-rfc5780",
            f"log-file={folder / 'turn.log'}",
            "simple-log",
            "no-stdout-log",
            f"pidfile={folder / 'turn.pid'}",
            f"userdb={folder / 'turndb'}",
        ]
        if auth == "rest":
            lines += ["use-auth-secret", f"static-auth-secret={SECRET}"]
        else:
            lines += ["lt-cred-mech", f"user={USER}:{PASSWORD}"]
        (folder / "turnserver.conf").write_text("\n".join(lines) + "\n")
        process = subprocess.Popen(
            [binary, "-c", str(folder / "turnserver.conf")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=folder,
        )
        _wait_ready(port, tls_port, process, folder)
        yield Coturn(port, tls_port, base, base + RELAY_PORTS - 1, cert, folder, process)
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        shutil.rmtree(folder, ignore_errors=True)
