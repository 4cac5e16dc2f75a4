"""The trio node and the loopback demo over real UDP sockets on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys

import pytest
import trio

from p2pos.adapters.demo import run_demo
from p2pos.adapters.node import ConnectionClosed, open_node
from p2pos.proto import ErrorCode, Identity, LocalKeys, PeerId, SessionConfig


def keys(n: int) -> LocalKeys:
    return LocalKeys.create(Identity.from_seed(bytes([n]) * 32), bytes([n + 100]) * 32)


async def test_two_nodes_handshake_and_talk() -> None:
    async with open_node(keys(1)) as a, open_node(keys(2)) as b:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                accepted = []

                async def accept() -> None:
                    conn = await b.accept()
                    accepted.append(conn)
                    assert await conn.receive() == b"ping"
                    await conn.send(b"pong")

                nursery.start_soon(accept)
                conn = await a.connect(b.address, expected_peer=b.peer_id)
                await conn.send(b"ping")
                assert await conn.receive() == b"pong"
            assert conn.peer_id == b.peer_id
            assert accepted[0].peer_id == a.peer_id
            assert conn.sas == accepted[0].sas
            await conn.aclose(ErrorCode.APPLICATION_CLOSE, "bye")
            with pytest.raises(ConnectionClosed) as info:
                await accepted[0].receive()
            assert info.value.code is ErrorCode.APPLICATION_CLOSE
            assert info.value.by_peer
            assert info.value.reason == "bye"


async def test_connect_to_wrong_peer_fails_clearly() -> None:
    async with open_node(keys(1)) as a, open_node(keys(2)) as b:
        impostor: PeerId = Identity.from_seed(bytes([9]) * 32).peer_id
        with trio.fail_after(10), pytest.raises(ConnectionClosed) as info:
            await a.connect(b.address, expected_peer=impostor)
        assert info.value.code is ErrorCode.IDENTITY_MISMATCH


async def test_connect_to_silent_port_times_out() -> None:
    config = SessionConfig(handshake_timeout=0.6, retransmit_initial=0.1, retransmit_max=0.2)
    async with open_node(keys(1), config=config) as a:
        silent = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
        await silent.bind(("127.0.0.1", 0))
        with silent:
            with trio.fail_after(10), pytest.raises(ConnectionClosed) as info:
                await a.connect(silent.getsockname())
            assert info.value.code is ErrorCode.HANDSHAKE_TIMEOUT
            # The silent socket saw the INIT and its retransmissions.
            received = 0
            with trio.move_on_after(0.2):
                while True:
                    await silent.recvfrom(65535)
                    received += 1
            assert received >= 3


async def test_garbage_datagrams_do_not_hurt_the_node() -> None:
    async with open_node(keys(1)) as a, open_node(keys(2)) as b:
        sock = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
        with sock:
            for junk in (b"", b"\x01", b"\x04" + bytes(40), bytes(range(256)), b"\x02" * 9):
                await sock.sendto(junk, b.address)
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(b.accept)
                conn = await a.connect(b.address, expected_peer=b.peer_id)
        assert conn.peer_id == b.peer_id
        assert sum(b.endpoint.drops.values()) >= 1


async def test_demo_runs_and_sas_match() -> None:
    lines: list[str] = []
    summary = await run_demo(lines.append)
    assert summary["alice_sas"] == summary["bob_sas"]
    assert summary["ik_sas"] != summary["alice_sas"]
    assert summary["alice_sees"] != summary["bob_sees"]
    assert any("match" in line for line in lines)
    assert lines[-1].startswith("demo finished")


def test_demo_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "p2pos.adapters.cli", "demo"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "SAS" in result.stdout
    assert "demo finished" in result.stdout


@pytest.mark.parametrize(
    ("addr", "why"),
    [
        (("example.invalid", 4000), "not an IP address"),
        (("127.0.0.1", 0), "not in 1..65535"),
        (("127.0.0.1", 70000), "not in 1..65535"),
        (("::1", 4000), "IPv6"),
        ("127.0.0.1:4000", "(ip, port)"),
    ],
)
async def test_bad_address_is_a_clear_error_and_creates_nothing(addr: object, why: str) -> None:
    async with open_node(keys(1)) as a:
        with pytest.raises(ValueError, match=why.replace("(", r"\(").replace(")", r"\)")):
            await a.connect(addr)  # type: ignore[arg-type]
        assert a.endpoint.sessions() == []


async def test_a_failing_send_loses_one_datagram_not_the_node() -> None:
    async with open_node(keys(1)) as a, open_node(keys(2)) as b:
        await a.transport.send(b"x", ("127.0.0.1", 0))  # the kernel refuses: EINVAL
        assert a.transport.send_errors == 1
        assert a.transport.last_send_error is not None
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(b.accept)
                conn = await a.connect(b.address, expected_peer=b.peer_id)
        assert conn.sas
