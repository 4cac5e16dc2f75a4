#!/usr/bin/env python3
"""The app API's cost: a bulk transfer app -> app through both daemons, against the node-level
channel transfer of the same bytes between the same two daemons (issue 11, item 9a).

Run ``python bench/daemon.py`` (about a minute), ``--quick`` for a smoke run.  It starts a
rendezvous node and two daemons (``p2pos up --bench``), each its own process, on loopback, with
the core this interpreter loads (``PYTHONPATH=build/compiled`` for the compiled one).  Then, in
rounds, the two transfers alternate (their order rotated each round):

* **node**: ``POST /v1/bench/send`` asks daemon A to open a channel to daemon B's ``_bench``
  service and write N bytes from memory; B's daemon reads them all and answers the count
  (adapters/selftest.py).  No app API in the path: the channel layer between the two daemons.
* **app**: two minimal apps, each its own process, that only read and write: the receiver asks
  daemon B for the next channel to ``sink`` (``POST .../accept``, Upgrade), reads to the end and
  writes back the count; the sender asks daemon A for a channel to B's ``sink`` (``POST
  .../connect``, Upgrade), writes N bytes, half-closes and reads the count.  Plain blocking
  sockets on the Unix socket: the HTTP head by hand, then ``sendall``/``recv``.

Both are timed the same way, by whoever starts the transfer: from asking for the channel until
the receiver's count is back (the session between the daemons exists already: one warm-up
transfer of each kind runs first).  Goodput = N / that time.  Figure: the median over rounds,
and the range.  Target: app >= 70% of node.

The last line of stdout is one JSON object: ``{"bench": "daemon", ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import emit_json, say

CHUNK = 256 * 1024
TARGET = 0.70


def _http_head(sock: socket.socket, method: str, target: str, upgrade: bool, body: bytes = b"") -> tuple[int, bytes]:
    """Send a request, read the response head; (status, bytes read past the head)."""
    lines = [f"{method} {target} HTTP/1.1", "Host: localhost"]
    if upgrade:
        lines += ["Connection: Upgrade", "Upgrade: p2pos-stream/1"]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise RuntimeError(f"{method} {target}: the daemon closed the connection")
        buffer += data
    head, rest = buffer.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), rest


def _api(socket_path: str, method: str, target: str, body: Any = None) -> Any:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(socket_path)
        payload = json.dumps(body).encode() if body is not None else b""
        status, rest = _http_head(sock, method, target, False, payload)
        while True:  # the daemon answers with Content-Length; read to the end of the JSON line
            if rest.endswith(b"\n"):
                break
            data = sock.recv(65536)
            if not data:
                break
            rest += data
    answer = json.loads(rest)
    if status >= 400:
        raise RuntimeError(f"{method} {target}: {answer}")
    return answer


# -- the two apps (run as `bench/daemon.py --app receiver|sender ...`) ----------------------


def app_receiver(socket_path: str, service: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(socket_path)
        print("ready", flush=True)
        status, rest = _http_head(sock, "POST", f"/v1/services/{service}/accept", True)
        if status != 101:
            raise SystemExit(f"accept: HTTP {status}")
        total = len(rest)
        buffer = bytearray(CHUNK)
        while n := sock.recv_into(buffer):
            total += n
        sock.sendall(total.to_bytes(8, "big"))
        sock.shutdown(socket.SHUT_WR)
    print(json.dumps({"bytes": total}), flush=True)


def app_sender(socket_path: str, peer: str, service: str, nbytes: int) -> None:
    payload = memoryview(os.urandom(CHUNK))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(socket_path)
        started = time.perf_counter()
        status, _ = _http_head(sock, "POST", f"/v1/peers/{peer}/services/{service}/connect", True)
        if status != 101:
            raise SystemExit(f"connect: HTTP {status}")
        left = nbytes
        while left:
            piece = payload[: min(left, CHUNK)]
            sock.sendall(piece)
            left -= len(piece)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while len(answer) < 8 and (data := sock.recv(8 - len(answer))):
            answer += data
        seconds = time.perf_counter() - started
    if int.from_bytes(answer, "big") != nbytes:
        raise SystemExit(f"the receiver counted {answer!r}, not {nbytes}")
    print(json.dumps({"bytes": nbytes, "seconds": seconds}), flush=True)


# -- the orchestra ---------------------------------------------------------------------------


class Lab:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.processes: list[subprocess.Popen[bytes]] = []

    def p2pos(self, *args: str, **popen: Any) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{args[0]}-{len(self.processes)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen([sys.executable, "-m", "p2pos.adapters.cli", *args], stderr=log, **popen)
        log.close()
        self.processes.append(process)
        return process

    def start(self) -> tuple[dict[str, str], dict[str, str]]:
        relay = self.p2pos(
            "relay", "--listen", "127.0.0.1:0", "--home", str(self.root / "relay"), stdout=subprocess.PIPE
        )
        assert relay.stdout is not None
        bootstrap = ""
        while not bootstrap:
            line = relay.stdout.readline().decode()
            if not line:
                raise RuntimeError("the rendezvous node did not start")
            if line.startswith("bootstrap: "):
                bootstrap = line.split()[1]
        sockets, ids = {}, {}
        for name in ("a", "b"):
            home = self.root / name
            self.p2pos(
                "up", "--home", str(home), "--listen", "127.0.0.1:0", "--api-port", "-1", "--bench",
                "--bootstrap", bootstrap, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            sockets[name] = str(home / "run" / "api.sock")
        deadline = time.monotonic() + 60
        for name, path in sockets.items():
            while True:
                try:
                    status = _api(path, "GET", "/v1/status")
                    if status["registrations"] and status["registrations"][0]["state"] == "registered":
                        ids[name] = status["peer_id"]
                        break
                except (OSError, RuntimeError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"daemon {name} did not register (logs in {self.root})")
                time.sleep(0.1)
        return sockets, ids

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def app_transfer(sockets: dict[str, str], ids: dict[str, str], nbytes: int) -> float:
    me = [sys.executable, str(Path(__file__).resolve())]
    receiver = subprocess.Popen([*me, "--app", "receiver", sockets["b"]], stdout=subprocess.PIPE)
    assert receiver.stdout is not None
    if receiver.stdout.readline().strip() != b"ready":
        raise RuntimeError("the receiving app did not start")
    time.sleep(0.05)  # its accept is in
    sender = subprocess.run(
        [*me, "--app", "sender", sockets["a"], ids["b"], str(nbytes)], capture_output=True, check=True, timeout=300
    )
    receiver.wait(timeout=30)
    result = json.loads(sender.stdout.splitlines()[-1])
    return float(result["seconds"])


def node_transfer(sockets: dict[str, str], ids: dict[str, str], nbytes: int) -> float:
    result = _api(sockets["a"], "POST", "/v1/bench/send", {"peer": ids["b"], "bytes": nbytes})
    return float(result["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run; the figures are not meaningful")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 7; 2 with --quick)")
    parser.add_argument("--mbytes", type=int, default=None, help="MB per transfer (default 100; 4 with --quick)")
    parser.add_argument("--app", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.app:
        if args.app[0] == "receiver":
            _api(args.app[1], "PUT", "/v1/services/sink", {"allow_any": True})
            app_receiver(args.app[1], "sink")
        else:
            app_sender(args.app[1], args.app[2], "sink", int(args.app[3]))
        return
    rounds = args.rounds or (2 if args.quick else 7)
    nbytes = (args.mbytes or (4 if args.quick else 100)) * 1_000_000
    from p2pos.adapters.build_info import core_build

    root = Path(tempfile.mkdtemp(prefix="p2pos-bench-daemon-"))
    lab = Lab(root)
    samples: dict[str, list[float]] = {"node": [], "app": []}
    try:
        say(f"bench daemon: {rounds} rounds of {nbytes / 1e6:.0f} MB, core {core_build()}")
        sockets, ids = lab.start()
        kinds = {"node": node_transfer, "app": app_transfer}
        for kind in kinds.values():  # warm-up: the session, the windows
            kind(sockets, ids, min(nbytes, 4_000_000))
        for r in range(rounds):
            order = ["node", "app"] if r % 2 == 0 else ["app", "node"]
            for name in order:
                seconds = kinds[name](sockets, ids, nbytes)
                samples[name].append(nbytes / seconds / 1e6)
            say(f"  round {r + 1}/{rounds}: node {samples['node'][-1]:.1f} MB/s, app {samples['app'][-1]:.1f} MB/s")
    finally:
        lab.stop()
        shutil.rmtree(root, ignore_errors=True)
    node, app = statistics.median(samples["node"]), statistics.median(samples["app"])
    per_round = [a / n for a, n in zip(samples["app"], samples["node"], strict=True)]
    ratio = app / node
    say(f"node-level channel transfer: {node:.1f} MB/s (range {min(samples['node']):.1f}-{max(samples['node']):.1f})")
    say(f"app -> app through the API:  {app:.1f} MB/s (range {min(samples['app']):.1f}-{max(samples['app']):.1f})")
    say(f"app / node: {ratio:.2f} (per round {min(per_round):.2f}-{max(per_round):.2f}; target >= {TARGET})")
    emit_json(
        {
            "bench": "daemon",
            "core": core_build(),
            "bytes": nbytes,
            "rounds": rounds,
            "figures": {
                "node_MBps": round(node, 2),
                "node_MBps_min": round(min(samples["node"]), 2),
                "node_MBps_max": round(max(samples["node"]), 2),
                "app_MBps": round(app, 2),
                "app_MBps_min": round(min(samples["app"]), 2),
                "app_MBps_max": round(max(samples["app"]), 2),
            },
            "ratios": {
                "app_over_node": round(ratio, 3),
                "app_over_node_min": round(min(per_round), 3),
                "app_over_node_max": round(max(per_round), 3),
            },
            "targets": {"app_over_node": TARGET},
            "targets_met": {"app_over_node": ratio >= TARGET},
        }
    )


if __name__ == "__main__":
    main()
