"""Services the namespace lab starts for a test: coturn in the internet, packet captures.

``lab.coturn(server)`` and ``lab.capture(ns)`` (netlab.Lab) call these.
"""

from __future__ import annotations

import dataclasses
import secrets
import socket
import struct
import subprocess
import threading
import time
from typing import TYPE_CHECKING

import pytest
from labsys import inside, tool

if TYPE_CHECKING:
    from netlab import Lab, Server


@dataclasses.dataclass(slots=True)
class Capture:
    """Frames seen by :meth:`Lab.capture` (raw, link layer included), appended as they come."""

    frames: list[bytes] = dataclasses.field(default_factory=list)
    loopback: bool = False  # record loopback traffic too (off: the internet's own servers talk over it)

    def contains(self, needle: bytes) -> bool:
        return any(needle in frame for frame in list(self.frames))


_ETH_P_ALL = 0x0003


@dataclasses.dataclass(frozen=True, slots=True)
class Coturn:
    """A running coturn: where it listens, its realm and users, its process."""

    server: Server
    port: int
    realm: str
    users: dict[str, str]
    process: subprocess.Popen[str]

    @property
    def address(self) -> tuple[str, int]:
        return (self.server.address, self.port)


def start_coturn(
    lab: Lab, server: Server, *, port: int = 3478, users: dict[str, str] | None = None, realm: str = "p2pos.test"
) -> Coturn:
    """coturn (``turnserver``) on ``server``'s address, UDP and TCP, relaying from that address too.

    Long-term credentials (``users``, default alice:secret); no TLS/DTLS; started and waited
    for with a STUN Binding from the internet namespace (not a sleep); killed with the lab.
    """
    users = users or {"alice": "secret"}
    name = f"turnserver-{server.name}"
    argv = [tool("turnserver"), "-n", "--no-cli", f"--listening-ip={server.address}",
            f"--relay-ip={server.address}", f"--listening-port={port}", "--min-port=49152",
            "--max-port=49407", f"--realm={realm}", "--fingerprint", "--lt-cred-mech",
            *(f"--user={user}:{password}" for user, password in users.items()), "--no-dtls", "--no-tls",
            "--no-multicast-peers", "--log-file=stdout", "--simple-log",
            f"--pidfile={lab.tmp / name}.pid", f"--userdb={lab.tmp / name}.sqlite"]  # fmt: skip
    proc = lab.spawn(server.ns, argv, name=name)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        probe = lab.socket(server.ns)  # a new source port each time: coturn spreads clients over threads
        probe.settimeout(0.1)
        txid = secrets.token_bytes(12)
        probe.sendto(struct.pack("!HHI12s", 0x0001, 0, 0x2112A442, txid), (server.address, port))
        try:
            answer = probe.recv(2048)
        except TimeoutError:
            continue
        finally:
            probe.close()
        if answer[:2] == b"\x01\x01" and answer[8:20] == txid:
            return Coturn(server, port, realm, dict(users), proc)
    sockets = subprocess.run(
        [tool("ip"), "netns", "exec", server.ns, "ss", "-uanp"], check=False, capture_output=True, text=True
    )
    pytest.fail(
        f"coturn did not answer a STUN Binding: {lab.log(proc)}{lab.log(proc, 'err')}{sockets.stdout}",
        pytrace=False,
    )


def start_capture(lab: Lab, ns: str) -> Capture:
    """Record every frame on every interface of namespace ``ns`` (both directions) until the lab ends.

    For checks such as "the relay path carries only ciphertext": ``capture.contains(b"secret")``.
    An AF_PACKET socket read on a thread, no tcpdump needed.
    """
    made = Capture()
    with inside(ns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
    lab.sockets.append(sock)
    sock.settimeout(0.05)

    def record(stopping: threading.Event) -> None:
        while not stopping.is_set():
            try:
                frame, where = sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if where[0] != "lo" or made.loopback:
                made.frames.append(frame)

    lab.background(record, f"capture-{ns}")
    return made
