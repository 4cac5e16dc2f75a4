"""p2pos processes in the namespace lab: the rendezvous node in the internet, daemons in peers.

    with netlab.lab() as lab:
        node = labp2pos.rendezvous(lab, lab.server("rendezvous"))      # p2pos relay, waited for
        a = labp2pos.daemon(lab, lab.peer("a", "eim"), node)            # p2pos up behind a router
        a.wait_registered()
        code, out, err = a.command("pipe", peer_id, "sink", stdin=path) # p2pos ... --home a's home

Processes are the lab's (killed with it) and run ``python -m p2pos.adapters.cli`` with this
interpreter and environment, so a compiled pass (``PYTHONPATH=build/compiled``) runs its core in
them too.  A daemon's API is asked over its Unix socket: a path, reachable from any namespace.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from labsys import wait_until

if TYPE_CHECKING:
    from netlab import Lab, Peer, Server

P2POS = [sys.executable, "-m", "p2pos.adapters.cli"]
#: A command for ``p2pos serve`` that prints the SHA-256 of its stdin.
HASH_STDIN = [sys.executable, "-c", "import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())"]


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=5)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(str(self.path))


@dataclasses.dataclass(frozen=True, slots=True)
class Rendezvous:
    server: Server
    bootstrap: str  # PEERID@HOST:PORT, for `p2pos up --bootstrap`
    process: subprocess.Popen[str]

    @property
    def address(self) -> tuple[str, int]:
        """Its UDP address: where it answers STUN too (with ``--alternate``, RFC 5780's tests, so
        miniupnpd's ``ext_perform_stun`` may ask it: ``lab.miniupnpd(router, node)``)."""
        host, _, port = self.bootstrap.rpartition("@")[2].rpartition(":")
        return host, int(port)


@dataclasses.dataclass(frozen=True, slots=True)
class Daemon:
    lab: Lab
    peer: Peer
    home: Path
    process: subprocess.Popen[str]

    def status(self) -> dict[str, Any] | None:
        """``GET /v1/status``, or None while the API is not up."""
        connection = _Unix(self.home / "run" / "api.sock")
        try:
            connection.request("GET", "/v1/status")
            body = json.loads(connection.getresponse().read())
        except OSError:
            return None
        finally:
            connection.close()
        assert isinstance(body, dict)
        return body

    def registration_states(self) -> list[str]:
        body = self.status()
        return [] if body is None else [str(r["state"]) for r in body["registrations"]]

    def registered(self) -> bool:
        states = self.registration_states()
        return bool(states) and all(state == "registered" for state in states)

    def wait_registered(self, timeout: float = 30) -> dict[str, Any]:
        """Until every rendezvous node has it registered; returns the status."""
        if not wait_until(self.registered, timeout):
            pytest.fail(f"{self.peer.name} not registered: {self.lab.log(self.process, 'err')[-3000:]}", pytrace=False)
        body = self.status()
        assert body is not None
        return body

    def command(self, *args: str, stdin: Path | None = None, timeout: float = 60) -> tuple[int, str, str]:
        """``p2pos ARGS --home HOME`` in the daemon's namespace, to the end: (exit status, stdout, stderr)."""
        argv = [*P2POS, *args, "--home", str(self.home)]
        if stdin is not None:  # `ip netns exec` has no stdin redirection of its own
            argv = ["sh", "-c", f'exec "$@" < "{stdin}"', "p2pos", *argv]
        done = self.lab.run(self.peer.ns, argv, timeout=timeout)
        return done.returncode, done.stdout, done.stderr

    def serve(self, service: str, command: list[str], timeout: float = 20) -> subprocess.Popen[str]:
        """``p2pos serve SERVICE --allow-any -- COMMAND``, returned once the daemon lists the service."""
        argv = [*P2POS, "serve", service, "--home", str(self.home), "--allow-any", "--", *command]
        proc = self.lab.spawn(self.peer.ns, argv, name=f"serve-{self.peer.name}-{service}")
        if not wait_until(lambda: bool((self.status() or {}).get("services")), timeout):
            pytest.fail(f"service {service} not served: {self.lab.log(proc, 'err')[-3000:]}", pytrace=False)
        return proc


def rendezvous(lab: Lab, server: Server, port: int = 7000, *, alternate: Server | None = None) -> Rendezvous:
    """``p2pos relay`` (the rendezvous node) on ``server``, once it printed its bootstrap line.

    With ``alternate`` (a second server address) it answers the RFC 5780 tests too, from
    ``alternate:port + 1`` (``--alternate``, spec/nat.md §3.1): daemons then measure their NAT."""
    home = lab.tmp / f"node-{server.name}"
    argv = [*P2POS, "relay", "--listen", f"{server.address}:{port}", "--home", str(home)]
    if alternate is not None:
        argv += ["--alternate", f"{alternate.address}:{port + 1}"]
    proc = lab.spawn(server.ns, argv, name=f"relay-{server.name}")

    def bootstrap() -> str | None:
        lines = [line for line in lab.log(proc).splitlines() if line.startswith("bootstrap: ")]
        return lines[0].split(" ", 1)[1].strip() if lines else None

    if not wait_until(lambda: bootstrap() is not None or proc.poll() is not None, 30) or proc.poll() is not None:
        pytest.fail(f"p2pos relay did not start: {lab.log(proc, 'err')[-3000:]}", pytrace=False)
    found = bootstrap()
    assert found is not None
    return Rendezvous(server, found, proc)


def relay(lab: Lab, *, port: int = 7000, ws_port: int = 8080, alternate: bool = False) -> tuple[Rendezvous, str]:
    """``p2pos relay --listen --ws`` on a new server (the rendezvous node, and a WebSocket relay with the
    node behind it, spec/relay.md §6), with ``alternate`` also ``--alternate`` on a second server address
    (spec/nat.md: daemons measure their NAT): the node (for ``--bootstrap``) and the relay's URL."""
    server = lab.server("relay")
    argv = [*P2POS, "relay", "--home", str(lab.tmp / "relay-home"), "--listen", f"{server.address}:{port}"]
    argv += ["--ws", f"{server.address}:{ws_port}"]
    if alternate:
        argv += ["--alternate", f"{lab.server('relay-alt').address}:{port + 1}"]
    proc = lab.spawn(server.ns, argv, name="relay")

    def bootstrap() -> str | None:
        lines = [line for line in lab.log(proc).splitlines() if line.startswith("bootstrap: ")]
        return lines[0].split(" ", 1)[1].strip() if lines else None

    if not wait_until(lambda: bootstrap() is not None or proc.poll() is not None, 30) or proc.poll() is not None:
        pytest.fail(f"p2pos relay did not start: {lab.log(proc, 'err')[-3000:]}", pytrace=False)
    found = bootstrap()
    assert found is not None
    return Rendezvous(server, found, proc), f"ws://{server.address}:{ws_port}/p2pos/relay/v1"


def daemon(lab: Lab, peer: Peer, *nodes: Rendezvous, extra: tuple[str, ...] = (), ipv6: bool | None = None) -> Daemon:
    """``p2pos up`` in ``peer``'s namespace on its own address, with these rendezvous nodes; not waited for.

    ``ipv6`` (default: for a ``v6fw`` peer only): listen on the IPv4 wildcard instead, so that the
    daemon binds the host's global IPv6 address too (adapters/dualstack.py), once the lab's links
    carry IPv6; otherwise the daemon has its IPv4 address alone."""
    home = lab.tmp / peer.name
    if ipv6 is None:
        ipv6 = peer.kind == "v6fw"
    if ipv6:
        lab.wait_links()
    listen = "0.0.0.0:0" if ipv6 else f"{peer.address}:0"
    argv = [*P2POS, "up", "--home", str(home), "--listen", listen, "--api-port", "-1", *extra]
    for node in nodes:
        argv += ["--bootstrap", node.bootstrap]
    return Daemon(lab, peer, home, lab.spawn(peer.ns, argv, name=f"up-{peer.name}"))
