"""STUN against Debian's coturn, both ways, on loopback (spec/nat.md §2.3), and ``p2pos nat-check`` end to end.

* p2pos's client (``StunClient``) and its discovery (``adapters.natcheck.check``) against
  ``turnserver`` run as a STUN server with two listening IPs, 127.0.0.1 and 127.0.0.2 (coturn
  then does RFC 5780 itself);
* coturn's ``turnutils_stunclient`` against the rendezvous node, without and with an alternate
  address (it runs its three RFC 5780 requests: CHANGE-REQUEST with RESPONSE-PORT, then PADDING);
* ``p2pos relay --alternate`` and ``p2pos nat-check`` as processes: loopback is "no NAT / public".

Without coturn: skipped, unless ``CI`` is set (then failed: CI installs it with ``make system-deps``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio
from helpers import make_keys

from p2pos.adapters.natcheck import check, describe
from p2pos.adapters.relay import RelayServer
from p2pos.proto.nat import stun
from p2pos.proto.nat.discovery import Behaviour
from p2pos.proto.nat.stun_client import BindingSucceeded, StunClient

HOST, ALT = "127.0.0.1", "127.0.0.2"


def _require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{binary} (Debian package coturn) is missing: `make system-deps` installs it")
        pytest.skip(f"{binary} (coturn) is not installed; CI installs it with `make system-deps`")
    return path


def _free_udp_pair() -> int:
    """A port P with P and P + 1 free for UDP on both loopback addresses (coturn's alternate port is P + 1)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if port >= 65534:
            continue
        held = []
        try:
            for host in (HOST, ALT):
                for p in (port, port + 1):
                    held.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                    held[-1].bind((host, p))
            return port
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no free UDP port pair")


@contextmanager
def coturn_stun() -> Iterator[int]:
    """``turnserver`` as a STUN server (``stun-only``) on 127.0.0.1 and 127.0.0.2; yields its port."""
    binary = _require("turnserver")
    folder = Path(tempfile.mkdtemp(prefix="p2pos-coturn-stun-"))
    process = None
    try:
        port = _free_udp_pair()
        lines = [
            f"listening-ip={HOST}",
            f"listening-ip={ALT}",
            f"listening-port={port}",
            f"alt-listening-port={port + 1}",
            "stun-only",
            "no-tls",
            "no-dtls",
            "no-tcp",
            "no-cli",
            f"log-file={folder / 'turn.log'}",
            "simple-log",
            "no-stdout-log",
            f"pidfile={folder / 'turn.pid'}",
            f"userdb={folder / 'turndb'}",
        ]
        (folder / "turnserver.conf").write_text("\n".join(lines) + "\n")
        process = subprocess.Popen(
            [binary, "-c", str(folder / "turnserver.conf")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=folder,
        )
        deadline = time.monotonic() + 10.0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(0.1)
            while True:  # ready when it answers a Binding (not a sleep)
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"turnserver did not start: {(folder / 'turn.log').read_text()[-2000:]}")
                udp.sendto(stun.binding_request(b"coturnready!"), (HOST, port))
                try:
                    if stun.mapped_address_untrusted(udp.recv(2048), b"coturnready!") is not None:
                        break
                except (TimeoutError, ConnectionRefusedError):
                    continue
        yield port
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        shutil.rmtree(folder, ignore_errors=True)


async def test_p2pos_client_against_coturn() -> None:
    """[NAT-2.3] a Binding transaction (FINGERPRINT, SOFTWARE) answered by coturn: the socket's own address."""
    with coturn_stun() as port, trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        await sock.bind((HOST, 0))
        client = StunClient(random=os.urandom)
        client.binding((HOST, port), trio.current_time())
        with trio.fail_after(10):
            while (event := client.next_event()) is None:
                for data, to, _ in client.datagrams_to_send(trio.current_time()):
                    await sock.sendto(data, to)
                timer = client.get_timer()
                with trio.move_on_at(timer if timer is not None else trio.current_time() + 10):
                    data, address = await sock.recvfrom(2048)
                    client.receive_datagram(data, address, trio.current_time())
                    continue
                client.handle_timer(trio.current_time())
        assert isinstance(event, BindingSucceeded)
        assert event.mapped == sock.getsockname()
        # coturn with two listening IPs speaks RFC 5780: it names its other address.
        assert event.other_address == (ALT, port + 1)


async def test_discovery_against_coturn() -> None:
    """[NAT-2.3] [NAT-3.2.1] [NAT-3.2.2] the whole RFC 5780 run against coturn on loopback: no NAT, public."""
    with coturn_stun() as port:
        report = await check((HOST, port))
    assert report.udp and report.alternate and report.nat is False and report.public is True
    assert report.mapping is Behaviour.ENDPOINT_INDEPENDENT and report.filtering is Behaviour.ENDPOINT_INDEPENDENT


async def _stunclient(port: int) -> str:
    """coturn's client against ``port``.  It sends each request once and waits without retransmitting,
    so a single datagram lost (or unanswered) hangs it: after 10 s it is run once more, and a node
    that never answers still fails the test.  (Seen once, in CI's compiled pass: no answer in 20 s;
    the cause was not found.)"""
    binary = _require("turnutils_stunclient")
    for attempt in (1, 2):
        with trio.move_on_after(10):
            result = await trio.run_process([binary, "-p", str(port), HOST], capture_stdout=True, capture_stderr=True)
            return result.stdout.decode(errors="replace")
    raise AssertionError("turnutils_stunclient got no answer from the node in two runs of 10 s")


async def test_turnutils_stunclient_against_the_node() -> None:
    """[RDV-5.1] [NAT-2.3] coturn's client reads the node's XOR-MAPPED-ADDRESS."""
    server = await RelayServer.bind(make_keys("node"), HOST, 0)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        out = await _stunclient(server.address[1])
        nursery.cancel_scope.cancel()
    assert re.search(r"UDP reflexive addr: 127\.0\.0\.1:\d+", out), out
    assert "RFC 5780 response" not in out  # no OTHER-ADDRESS without an alternate address


async def test_turnutils_stunclient_rfc5780_against_the_node() -> None:
    """[NAT-3.1.2] [NAT-3.1.3] [NAT-3.1.5] [NAT-3.1.6] coturn's three RFC 5780 requests, from the right sockets."""
    _require("turnutils_stunclient")
    server = await RelayServer.bind(make_keys("node"), HOST, 0, alternate=(ALT, 0))
    alternate = server.node.stun.alternate
    assert alternate is not None
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        out = await _stunclient(server.address[1])
        nursery.cancel_scope.cancel()
    responses = out.split("RFC 5780 response")[1:]
    assert len(responses) == 3, out
    other = f"Other addr: : {ALT}:{alternate[1]}"
    assert f"Response origin: : {HOST}:{server.address[1]}" in responses[0] and other in responses[0]
    # Change IP and port (to its RESPONSE-PORT), then with PADDING: both from the alternate socket.
    for response in responses[1:]:
        assert f"Response origin: : {ALT}:{alternate[1]}" in response, out
        assert "error" not in response
    assert server.node.stats["stun_binding"] == 3


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "p2pos.adapters.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


@contextmanager
def relay_process(home: Path) -> Iterator[tuple[int, str]]:
    """``p2pos relay --listen 127.0.0.1:0 --alternate 127.0.0.2:0``; yields its port and bootstrap string."""
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "p2pos.adapters.cli", "relay", "--listen", f"{HOST}:0", "--alternate", f"{ALT}:0"),
            *("--home", str(home), "--log-level", "warning"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        port, bootstrap = 0, ""
        for line in process.stdout:  # the node prints these once it listens
            if match := re.search(r"listening on UDP 127\.0\.0\.1:(\d+)", line):
                port = int(match.group(1))
            if line.startswith("bootstrap: "):
                bootstrap = line.split(": ", 1)[1].strip()
            if line.startswith("STUN behaviour discovery"):
                assert ALT in line
                break
        assert port and bootstrap, "the relay did not start"
        yield port, bootstrap
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_nat_check_end_to_end_on_loopback(tmp_path: Path) -> None:
    """[NAT-3.4] `p2pos nat-check` asks the configured node (two addresses): no NAT / public, in words and JSON."""
    with relay_process(tmp_path / "node") as (port, bootstrap):
        home = tmp_path / "daemon"
        home.mkdir()
        (home / "config.toml").write_text(f'bootstrap = ["{bootstrap}"]\n')
        text = _cli("nat-check", "--home", str(home))
        assert text.returncode == 0, text.stderr
        assert "No NAT / public" in text.stdout and "no address translation" in text.stdout
        raw = _cli("nat-check", "--server", f"{HOST}:{port}", "--json")
    assert raw.returncode == 0, raw.stderr
    (report,) = json.loads(raw.stdout)
    assert report["server"] == f"{HOST}:{port}" and report["udp"] and report["alternate"]
    assert (report["nat"], report["public"], report["mapping"], report["filtering"]) == (
        False,
        True,
        "endpoint-independent",
        "endpoint-independent",
    )
    assert report["mapped"] == report["local"] and report["hairpinning"] is True


def test_nat_check_without_a_server(tmp_path: Path) -> None:
    """No node configured: a usage error that says what to do."""
    result = _cli("nat-check", "--home", str(tmp_path))
    assert result.returncode == 2 and "--server" in result.stderr


async def test_nat_check_when_nothing_answers() -> None:
    """[NAT-3.3.1] a port nobody serves: UDP blocked, in words."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        silent = s.getsockname()  # bound but never read: the probes vanish
        report = await check((HOST, int(silent[1])), sockets=2, timeout=30)
    assert not report.udp
    assert "UDP to this server is blocked" in " ".join(describe(report))
