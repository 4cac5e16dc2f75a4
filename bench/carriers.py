#!/usr/bin/env python3
"""Goodput between two daemons over each carrier: direct UDP, the WebSocket relay, TURN (issue 12, item 9).

Run ``python bench/carriers.py`` (a few minutes), ``--quick`` for a smoke run.  On loopback it starts
one ``p2pos relay --listen --ws`` process (rendezvous node and WebSocket relay), one coturn (as
tests/turn/coturn_fixture.py does), and for each carrier a pair of daemons (``p2pos up --bench``,
separate homes, each its own process) configured so that only that carrier joins them:

* **direct**: both daemons on 127.0.0.1, no relay: the session runs on direct UDP.
* **relay**: daemon A on 127.0.0.1, daemon B on [::1] only, both with the WebSocket relay.  A's
  UDP socket cannot send to B's IPv6 address nor B's to the IPv4 rendezvous node (B registers
  through the relay, spec/relay.md §6): the session can only ride the relay.
* **turn**: the same split, both with coturn (``turn_secret``) too.  B's TURN relayed address
  (127.0.0.1, on coturn) is the one address A can reach: the session rides coturn.  The
  WebSocket relay is configured too (B needs it to register), so the path the session ends on
  is read from ``/v1/status`` and printed: the figure is labelled with it.

In each pair, after a warm-up transfer, ``POST /v1/bench/send`` (adapters/selftest.py: a channel
from A to B's ``_bench`` service, N bytes written from memory, B answers the count) runs several
times: goodput = N / seconds, figure = median, with the range.  Ratios relay/direct (target
>= 0.5) and TURN/direct (target >= 0.4).

QUIC: the daemon does not carry sessions over QUIC yet; the figure is bench/quic_carrier.py's
(the QUIC carrier against a plain aioquic stream of the same bytes, target >= 0.8), labelled
"transport level, not between daemons".

Not measured yet (see the report of issue 12): time to first byte of a new session over the
relay with 25 ms of added delay, and path validation / failover times.

The last line of stdout is one JSON object: ``{"bench": "carriers", ...}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import emit_json, print_ratios, say
from daemon import _api, node_transfer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "turn"))

TARGETS = {"relay_over_direct": 0.5, "turn_over_direct": 0.4, "quic_carrier_over_aioquic": 0.8}
#: The REST secret the bench's coturn and daemons share.
TURN_SECRET = "p2pos-bench-carriers"


class UdpNat:
    """A UDP forwarder in front of the rendezvous node for daemon B, filtering like a strict NAT.

    B sends to ``[::1]:port`` (``self.port``); each B socket gets its own IPv4 socket towards the
    node, whose address the node observes as B's.  That socket passes back only what comes from
    the node: A, sending to B's observed address, is dropped (counted), so no direct path exists.
    """

    def __init__(self, node: tuple[str, int]) -> None:
        self.node = node
        self.inside = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.inside.bind(("::1", 0))
        self.port = int(self.inside.getsockname()[1])
        self.outside: dict[tuple[Any, ...], socket.socket] = {}
        self.clients: dict[socket.socket, tuple[Any, ...]] = {}
        self.dropped = 0
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.inside, selectors.EVENT_READ)
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            for key, _ in self.selector.select(0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                data, source = sock.recvfrom(65536)
                if sock is self.inside:
                    out = self.outside.get(source)
                    if out is None:
                        out = self.outside[source] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        out.bind(("127.0.0.1", 0))
                        self.clients[out] = source
                        self.selector.register(out, selectors.EVENT_READ)
                    out.sendto(data, self.node)
                elif source[:2] == self.node:
                    self.inside.sendto(data, self.clients[sock])
                else:
                    self.dropped += 1

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=2)
        for sock in (self.inside, *self.outside.values()):
            sock.close()
        self.selector.close()


class Lab:
    """The processes of one run; ``stop`` ends every one of them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.processes: list[subprocess.Popen[bytes]] = []

    def p2pos(self, *args: str, stdout: Any = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{args[0]}-{len(self.processes)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen([sys.executable, "-m", "p2pos.adapters.cli", *args], stdout=stdout, stderr=log)
        log.close()
        self.processes.append(process)
        return process

    def relay(self) -> tuple[str, str]:
        """The rendezvous node and WebSocket relay: (bootstrap string, ws:// URL)."""
        process = self.p2pos(
            "relay", "--listen", "127.0.0.1:0", "--ws", "127.0.0.1:0", "--home", str(self.root / "relay"),
            stdout=subprocess.PIPE,
        )  # fmt: skip
        assert process.stdout is not None
        bootstrap = url = ""
        while not (bootstrap and url):
            line = process.stdout.readline().decode()
            if not line:
                raise RuntimeError(f"the relay did not start (logs in {self.root})")
            if line.startswith("bootstrap: "):
                bootstrap = line.split()[1]
            elif line.startswith("relay listening on "):
                url = line.split()[3]
        return bootstrap, url

    def daemon(self, name: str, listen: str, bootstrap: str, relays: list[str]) -> str:
        """Start daemon ``name``; the path of its API socket."""
        home = self.root / name
        home.mkdir()
        config = [f"listen = [{json.dumps(listen)}]", f"relay = {json.dumps(relays)}"]
        if any(r.startswith("turn") for r in relays):
            config.append(f"turn_secret = {json.dumps(TURN_SECRET)}")
        (home / "config.toml").write_text("\n".join(config) + "\n")
        self.p2pos("up", "--home", str(home), "--api-port", "-1", "--bench", "--bootstrap", bootstrap)
        return str(home / "run" / "api.sock")

    def stop(self, processes: list[subprocess.Popen[bytes]] | None = None) -> None:
        chosen = self.processes if processes is None else processes
        for process in chosen:
            if process.poll() is None:
                process.terminate()
        for process in chosen:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def wait_registered(socket_path: str, timeout: float) -> str:
    """The daemon's peer id once one rendezvous registration is up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            status = _api(socket_path, "GET", "/v1/status")
            if any(r["state"] == "registered" for r in status["registrations"]):
                return str(status["peer_id"])
        except (OSError, RuntimeError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"daemon {socket_path} did not register within {timeout:.0f} s")
        time.sleep(0.1)


def active_via(socket_path: str, peer: str) -> str:
    """What carries the session from this daemon to ``peer`` now (``udp``, ``relay``, ``turn``...)."""
    status = _api(socket_path, "GET", "/v1/status")
    for p in status["peers"]:
        if p["peer_id"] == peer:
            for path in p["paths"]:
                if path["active"]:
                    return f"{path['via']} {path['address']}"
            return str(p["path"])
    return "no session"


@contextlib.contextmanager
def coturn() -> Iterator[Any]:
    """coturn on loopback with the bench's REST secret (tests/turn/coturn_fixture.py's ``Coturn``)."""
    import coturn_fixture  # tests/turn/coturn_fixture.py

    coturn_fixture.SECRET = TURN_SECRET  # its REST secret, read when it writes coturn's config
    with coturn_fixture.start_coturn("rest") as server:
        yield server


def measure_pair(
    lab: Lab, name: str, bootstrap: str, listen_b: str, relays: list[str], nbytes: int, rounds: int
) -> tuple[list[float], str]:
    """One pair of daemons for carrier ``name``: goodput samples (MB/s) and the path that carried them."""
    before = len(lab.processes)
    a = lab.daemon(f"{name}-a", "127.0.0.1:0", bootstrap, relays)
    nat = None
    bootstrap_b = bootstrap
    if listen_b.startswith("["):  # B on IPv6 only: it reaches the IPv4 node through the NAT
        node_id, node_address = bootstrap.split("@")
        host, port = node_address.rsplit(":", 1)
        nat = UdpNat((host, int(port)))
        bootstrap_b = f"{node_id}@[::1]:{nat.port}"
    b = lab.daemon(f"{name}-b", listen_b, bootstrap_b, relays)
    try:
        wait_registered(a, 30)
        peer_b = wait_registered(b, 30)
        sockets, ids = {"a": a, "b": b}, {"b": peer_b}
        node_transfer(sockets, ids, min(nbytes, 2_000_000))  # warm-up: the session, its paths, the windows
        time.sleep(1.0)  # spare paths validate and the best one becomes active
        node_transfer(sockets, ids, min(nbytes, 2_000_000))
        via = active_via(a, peer_b)
        samples = []
        for r in range(rounds):
            seconds = node_transfer(sockets, ids, nbytes)
            samples.append(nbytes / seconds / 1e6)
            say(f"  {name} round {r + 1}/{rounds}: {samples[-1]:.1f} MB/s")
        return samples, via
    finally:
        lab.stop(lab.processes[before:])
        if nat is not None:
            nat.close()


def quic_transport_level(nbytes: int, rounds: int) -> tuple[list[float], list[float]]:
    """bench/quic_carrier.py's method: (carrier MB/s, plain aioquic stream MB/s) per round, 16 KiB writes."""
    from quic_carrier import aioquic_transfer, carrier_transfer

    size = 16384
    carrier, plain = [], []
    for r in range(rounds):
        order = [0, 1] if r % 2 == 0 else [1, 0]
        for which in order:
            if which == 0:
                carrier.append((nbytes // size) * size / carrier_transfer(nbytes, size) / 1e6)
            else:
                seconds, got = aioquic_transfer(nbytes, size, datagrams=False)
                plain.append(got / seconds / 1e6)
    return carrier, plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (< 60 s); the figures are not meaningful")
    parser.add_argument("--rounds", type=int, default=None, help="transfers per carrier (default 5; 2 with --quick)")
    parser.add_argument("--mbytes", type=int, default=None, help="MB per transfer (default 50; 2 with --quick)")
    args = parser.parse_args()
    rounds = args.rounds or (2 if args.quick else 5)
    nbytes = (args.mbytes or (2 if args.quick else 50)) * 1_000_000
    from p2pos.adapters.build_info import core_build

    root = Path(tempfile.mkdtemp(prefix="p2pos-bench-carriers-"))
    lab = Lab(root)
    samples: dict[str, list[float]] = {}
    vias: dict[str, str] = {}
    say(f"bench carriers: {rounds} transfers of {nbytes / 1e6:.0f} MB per carrier, core {core_build()}")
    try:
        bootstrap, ws_url = lab.relay()
        with coturn() as server:
            turn_url = f"turn:127.0.0.1:{server.port}"
            pairs = {
                "direct": ("127.0.0.1:0", []),
                "relay": ("[::1]:0", [ws_url]),
                "turn": ("[::1]:0", [turn_url, ws_url]),
            }
            for name, (listen_b, relays) in pairs.items():
                samples[name], vias[name] = measure_pair(lab, name, bootstrap, listen_b, relays, nbytes, rounds)
                port = vias[name].rsplit(":", 1)[-1]
                if port.isdigit() and server.min_port <= int(port) <= server.max_port:
                    vias[name] += " (a coturn relayed address)"
                say(f"  {name}: carried by {vias[name]}")
    finally:
        lab.stop()
        shutil.rmtree(root, ignore_errors=True)
    say("  quic (transport level, not between daemons): carrier vs plain aioquic")
    quic_carrier, quic_plain = quic_transport_level(nbytes, rounds)
    samples["quic_carrier_transport_level"], samples["aioquic_stream_transport_level"] = quic_carrier, quic_plain

    medians = {k: statistics.median(v) for k, v in samples.items()}
    say("")
    say(f"{'goodput (median of transfers)':<46} {'MB/s':>8}  range        carried by")
    labels = {
        "direct": "direct UDP, daemon -> daemon",
        "relay": "WebSocket relay, daemon -> daemon",
        "turn": "TURN (coturn), daemon -> daemon",
        "quic_carrier_transport_level": "QUIC carrier (transport level, not daemons)",
        "aioquic_stream_transport_level": "plain aioquic (transport level, not daemons)",
    }
    for key, value in medians.items():
        low, high = min(samples[key]), max(samples[key])
        say(f"{labels[key]:<46} {value:>8.1f}  {low:5.1f}-{high:<5.1f}  {vias.get(key, '-')}")
    ratios = {
        "relay_over_direct": medians["relay"] / medians["direct"],
        "turn_over_direct": medians["turn"] / medians["direct"],
        "quic_carrier_over_aioquic": medians["quic_carrier_transport_level"]
        / medians["aioquic_stream_transport_level"],
    }
    met = print_ratios(ratios, TARGETS, width=30, digits=2)
    figures: dict[str, float] = {}
    for key, values in samples.items():
        figures[f"{key}_MBps"] = round(medians[key], 2)
        figures[f"{key}_MBps_min"] = round(min(values), 2)
        figures[f"{key}_MBps_max"] = round(max(values), 2)
    emit_json(
        {
            "bench": "carriers",
            "core": core_build(),
            "bytes": nbytes,
            "rounds": rounds,
            "figures": figures,
            "ratios": {k: round(v, 3) for k, v in ratios.items()},
            "targets": TARGETS,
            "targets_met": met,
            "carried_by": vias,
            "labels": {"quic_carrier_transport_level": "transport level, not between daemons"},
        }
    )


if __name__ == "__main__":
    main()
