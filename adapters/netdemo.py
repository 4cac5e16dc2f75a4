"""``p2pos demo``: a real p2pos network on this machine, each part its own process.

A rendezvous node (``p2pos relay``) and two daemons, Alice's and Bob's (``p2pos up``), each in its
own home folder, bootstrapped with the node's ``PEERID@HOST:PORT``.  Bob serves a service with
``p2pos serve files --allow ALICE -- CMD`` (CMD hashes what it receives); Alice sends a file with
``p2pos pipe BOB files < FILE``: her daemon looks Bob up at the rendezvous node, handshakes with
his daemon, opens a channel; the SHA-256 Bob's side computed must be the file's.  Both sides'
short authentication strings are shown (they match).  Every process is stopped and the folder
removed at the end, whatever happens.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

Printer = Callable[[str], None]

#: The receiving command: prints the SHA-256 and the size of what it read on stdin.
HASHER = (
    "import hashlib,sys\n"
    "h=hashlib.sha256();n=0\n"
    "while b:=sys.stdin.buffer.read(1<<20):\n"
    "    h.update(b);n+=len(b)\n"
    "print(h.hexdigest(),n)\n"
)


class DemoFailed(Exception):
    pass


class Network:
    def __init__(self, root: Path, say: Printer) -> None:
        self.root, self.say = root, say
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "p2pos.adapters.cli", *args]

    def start(self, name: str, *args: str, **popen: Any) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        process = subprocess.Popen(self.command(*args), stderr=log, **popen)
        log.close()
        self.processes.append((name, process))
        return process

    def run(self, *args: str, timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run(self.command(*args), check=False, capture_output=True, timeout=timeout, **kwargs)
        if done.returncode != 0:
            raise DemoFailed(f"p2pos {args[0]} failed: {done.stderr.decode().strip()}")
        return done

    def status(self, home: Path) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.run("status", "--home", str(home), "--json").stdout)
        return result

    def wait_registered(self, home: Path, deadline: float) -> dict[str, Any]:
        while True:
            with contextlib.suppress(DemoFailed, ValueError):
                status = self.status(home)
                if status["registrations"] and all(r["state"] == "registered" for r in status["registrations"]):
                    return status
            if time.monotonic() > deadline:
                raise DemoFailed(f"the daemon in {home} did not register in time (see {home.parent}/*.log)")
            time.sleep(0.1)

    def stop_all(self) -> None:
        for _, process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for _, process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def _folder() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="p2pos-demo-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_network_demo(say: Printer = print, *, file_size: int = 16 * 1024 * 1024) -> dict[str, Any]:
    """Run the demo; returns a summary.  Raises DemoFailed with the reason if a step fails."""
    with _folder() as root:
        net = Network(root, say)
        try:
            return _demo(net, root, say, file_size)
        finally:
            net.stop_all()


def _demo(net: Network, root: Path, say: Printer, file_size: int) -> dict[str, Any]:
    relay = net.start(
        "relay", "relay", "--listen", "127.0.0.1:0", "--home", str(root / "relay"), stdout=subprocess.PIPE
    )
    assert relay.stdout is not None
    bootstrap = ""
    for _ in range(2):
        line = relay.stdout.readline().decode()
        if line.startswith("bootstrap: "):
            bootstrap = line.split()[1]
    if not bootstrap:
        raise DemoFailed("the rendezvous node did not start (see relay.log)")
    say(f"rendezvous node up: {bootstrap}")
    deadline = time.monotonic() + 30
    homes = {name: root / name for name in ("alice", "bob")}
    for name, home in homes.items():
        net.start(
            name,
            "up",
            "--home",
            str(home),
            "--listen",
            "127.0.0.1:0",
            "--api-port",
            "-1",
            "--bootstrap",
            bootstrap,
            stdout=subprocess.DEVNULL,
        )
    ids = {}
    for name, home in homes.items():
        status = net.wait_registered(home, deadline)
        ids[name] = status["peer_id"]
        observed = status["registrations"][0]["observed"]
        say(f"{name}'s daemon {ids[name]} registered; the node sees it at {observed}")
    net.start(
        "serve",
        "serve",
        "files",
        "--home",
        str(homes["bob"]),
        "--allow",
        ids["alice"],
        "--",
        sys.executable,
        "-c",
        HASHER,
        stdout=subprocess.PIPE,
    )
    say(f"bob serves 'files' to alice only: p2pos serve files --allow {ids['alice'][:12]}... -- (hash stdin)")
    data = os.urandom(file_size)
    expected = hashlib.sha256(data).hexdigest()
    source = root / "file.bin"
    source.write_bytes(data)
    time.sleep(0.3)  # serve registers its service
    started = time.monotonic()
    with source.open("rb") as stdin:
        done = net.run("pipe", ids["bob"], "files", "--home", str(homes["alice"]), stdin=stdin, timeout=120)
    seconds = time.monotonic() - started
    answer = done.stdout.decode().split()
    if len(answer) != 2 or answer[0] != expected or int(answer[1]) != file_size:
        raise DemoFailed(f"bob's side hashed {done.stdout.decode().strip()!r}, the file is {expected} {file_size}")
    say(
        f"alice -> bob: {file_size / 2**20:.0f} MiB through p2pos pipe/serve in {seconds:.2f} s, "
        f"SHA-256 {expected[:16]}... matches"
    )
    sas = {
        name: json.loads(net.run("verify", ids[other], "--home", str(homes[name]), "--json").stdout)["sas"]
        for name, other in (("alice", "bob"), ("bob", "alice"))
    }
    if sas["alice"] != sas["bob"]:
        raise DemoFailed(f"the short authentication strings differ: {sas}")
    say(f"short authentication string (SAS) on both sides: {sas['alice']} (they match: nobody is in the middle)")
    for home in homes.values():
        net.run("stop", "--home", str(home))
    say("stopped the daemons and the node")
    return {"bytes": file_size, "seconds": seconds, "sha256": expected, "sas": sas["alice"], "peers": ids}


def main(say: Printer = print) -> int:
    try:
        run_network_demo(say)
    except (DemoFailed, subprocess.TimeoutExpired, OSError) as exc:
        print(f"p2pos demo: {exc}", file=sys.stderr)
        return 1
    return 0
