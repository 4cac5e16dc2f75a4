"""``p2pos relay`` (adapters/relay.py): the rendezvous node on a real loopback UDP socket."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import trio
from helpers import make_keys

from p2pos.adapters.relay import RelayServer, bootstrap_string
from p2pos.proto.nat import stun


async def test_stun_binding_over_loopback() -> None:
    server = await RelayServer.bind(make_keys("relay"), "127.0.0.1", 0)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        await sock.bind(("127.0.0.1", 0))
        txid = bytes(range(12))
        await sock.sendto(stun.binding_request(txid), server.address)
        with trio.fail_after(5):
            data, _ = await sock.recvfrom(2048)
        assert stun.mapped_address_untrusted(data, txid) == sock.getsockname()
        sock.close()
        nursery.cancel_scope.cancel()


def test_bootstrap_string() -> None:
    keys = make_keys("relay")
    assert bootstrap_string(keys, ("127.0.0.1", 3478)) == f"{keys.identity.peer_id}@127.0.0.1:3478"
    assert bootstrap_string(keys, ("::1", 3478)).endswith("@[::1]:3478")


def test_the_command_prints_its_bootstrap_string(tmp_path: Path) -> None:
    env = {**os.environ, "P2POS_HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "p2pos.adapters.cli", "relay", "--listen", "127.0.0.1:0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first, second = proc.stdout.readline(), proc.stdout.readline()
        assert first.startswith("rendezvous node ") and "listening on UDP 127.0.0.1:" in first
        assert second.startswith("bootstrap: ") and "@127.0.0.1:" in second
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_bad_listen_address_is_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "p2pos.adapters.cli", "relay", "--listen", "nowhere"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "expected HOST:PORT" in proc.stderr and "Traceback" not in proc.stderr
