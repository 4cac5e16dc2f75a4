"""UdpTransport on loopback: GSO / GRO batches and the plain path deliver the same datagrams.

Every delivery test runs on 127.0.0.1 and ::1, with offload on ("gso": GSO send, GRO
receive, skipped only if the kernel lacks them) and off ("plain": one syscall per datagram).
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pos.transports import socket_options
from p2pos.transports.gso import MAX_BATCH_BYTES, MAX_SEGMENTS, plan_runs
from p2pos.transports.udp import OFFLOAD_ENV, Address, UdpTransport

HOSTS = ["127.0.0.1", "::1"]


@pytest.fixture(params=HOSTS, ids=["v4", "v6"])
def host(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=[True, False], ids=["gso", "plain"])
def offload(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


async def bound(host: str, offload: bool, **kwargs: Any) -> UdpTransport:
    transport = await UdpTransport.bind(host, 0, offload=offload, **kwargs)
    if offload and not (transport.gso and transport.gro):
        transport.close()
        pytest.skip("this kernel has no UDP GSO/GRO (Linux 4.18 / 5.0)")
    return transport


@asynccontextmanager
async def pair(
    host: str, send_offload: bool, receive_offload: bool
) -> AsyncIterator[tuple[UdpTransport, UdpTransport]]:
    tx = await bound(host, send_offload)
    try:
        rx = await bound(host, receive_offload)
        try:
            yield tx, rx
        finally:
            rx.close()
    finally:
        tx.close()


async def collect(rx: UdpTransport, count: int) -> list[tuple[bytes, Address]]:
    got: list[tuple[bytes, Address]] = []
    with trio.fail_after(5):
        while len(got) < count:
            got.extend(await rx.receive_batch())
    return got


def numbered(sizes: Sequence[int]) -> list[bytes]:
    """Datagrams whose bytes say their position, so reordering or re-cutting shows."""
    return [bytes([i % 256]) * size for i, size in enumerate(sizes)]


MIXED = [1000] * 10 + [400] + [1200] * 4 + [10] + [0] + [1] + [65000] + [300, 300]


async def test_send_batch_delivers_exactly_what_was_sent(host: str, offload: bool) -> None:
    sent = numbered(MIXED)
    async with pair(host, offload, offload) as (tx, rx):
        await tx.send_batch(sent, rx.local_address)
        got = await collect(rx, len(sent))
    assert [data for data, _ in got] == sent
    assert {addr for _, addr in got} == {tx.local_address}
    assert tx.datagrams_sent == len(sent) and tx.send_errors == 0
    assert tx.send_calls == (len(plan_runs(MIXED)) if offload else len(sent))
    assert rx.datagrams_received == len(sent)


async def test_long_batches_are_cut_at_the_segment_and_byte_caps(host: str, offload: bool) -> None:
    sizes = [1200] * 200 + [100] * (MAX_SEGMENTS + 3)
    sent = numbered(sizes)
    async with pair(host, offload, offload) as (tx, rx):
        await tx.send_batch(sent, rx.local_address)
        got = await collect(rx, len(sent))
    assert [data for data, _ in got] == sent
    # 1200-byte runs of 65000 // 1200 = 54: 54, 54, 54, then 38 closed by the first 100-byte
    # datagram; the other 66 100-byte ones: 64 (the segment cap) and 2
    assert MAX_BATCH_BYTES // 1200 == 54
    expected_calls = 4 + 2
    assert tx.send_calls == (expected_calls if offload else len(sent))


async def test_gro_receive_cuts_one_gso_buffer_at_the_segment_size(host: str) -> None:
    sent = numbered([1000] * 5 + [300])
    async with pair(host, True, True) as (tx, rx):
        await tx.send_batch(sent, rx.local_address)
        got = await collect(rx, len(sent))
        assert tx.send_calls == 1
        # one recvmsg gave all six, glued together; the UDP_GRO cmsg gave the cut
        assert rx.receive_calls == 1
    assert [data for data, _ in got] == sent


async def test_receive_hands_out_a_gro_buffer_one_datagram_at_a_time(host: str, offload: bool) -> None:
    sent = numbered([700] * 4 + [1])
    async with pair(host, True, offload) as (tx, rx):
        await tx.send_batch(sent, rx.local_address)
        with trio.fail_after(5):
            got = [await rx.receive() for _ in sent]
        assert [data for data, _ in got] == sent
        assert [addr for _, addr in got] == [tx.local_address] * len(sent)
        # a plain receiver gets the kernel to cut the GSO buffer: one call per datagram
        assert rx.receive_calls == (1 if offload else len(sent))
        # receive() and receive_batch() share the leftovers
        await tx.send_batch(numbered([50, 50, 20]), rx.local_address)
        first = await rx.receive()
        rest = await collect(rx, 2)
        assert [first[0]] + [data for data, _ in rest] == numbered([50, 50, 20])


async def test_plain_sender_to_gro_receiver(host: str) -> None:
    sent = numbered([900] * 3)
    async with pair(host, False, True) as (tx, rx):
        await tx.send_batch(sent, rx.local_address)
        assert tx.send_calls == 3
        got = await collect(rx, len(sent))
    assert [data for data, _ in got] == sent


async def test_receive_batch_takes_what_is_queued_without_waiting(host: str) -> None:
    sent = numbered([100] * 5)
    async with pair(host, False, False) as (tx, rx):
        for data in sent:
            await tx.send(data, rx.local_address)  # loopback queues each at once
        with trio.fail_after(5):
            assert [data for data, _ in await rx.receive_batch(max_calls=2)] == sent[:2]
            assert [data for data, _ in await rx.receive_batch()] == sent[2:]
        assert rx.receive_calls == 5


async def test_a_failed_datagram_loses_only_itself(host: str, offload: bool) -> None:
    sent = numbered([100, 100, 70000, 100, 100])  # 70000 bytes is no UDP datagram: EMSGSIZE
    async with pair(host, offload, offload) as (tx, rx):
        await tx.send_batch(sent, rx.local_address)
        got = await collect(rx, 4)
        await tx.send(b"x" * 70000, rx.local_address)
    assert [data for data, _ in got] == sent[:2] + sent[3:]
    assert tx.send_errors == 2 and tx.datagrams_sent == 4
    assert tx.last_send_error is not None and tx.last_send_error.errno == errno.EMSGSIZE


class Refusals:
    """The next ``times`` GSO calls (sendmsg with a cmsg) fail with ``code``, whichever way they go."""

    def __init__(self, code: int, times: int) -> None:
        self.code, self.times = code, times

    def refuse(self, ancdata: Any) -> bool:
        if ancdata and self.times:
            self.times -= 1
            return True
        return False


class RefusingSocket:
    """The transport's trio socket, through ``Refusals``."""

    def __init__(self, inner: Any, refusals: Refusals) -> None:
        self.inner, self.refusals = inner, refusals

    async def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0, address: Any = None) -> int:
        if self.refusals.refuse(ancdata):
            await trio.lowlevel.checkpoint()
            raise OSError(self.refusals.code, os.strerror(self.refusals.code))
        result: int = await self.inner.sendmsg(buffers, ancdata, flags, address)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class RefusingRawSocket:
    """The transport's plain socket (the calls that need not wait), through ``Refusals``."""

    def __init__(self, inner: Any, refusals: Refusals) -> None:
        self.inner, self.refusals = inner, refusals

    def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0, address: Any = None) -> int:
        if self.refusals.refuse(ancdata):
            raise OSError(self.refusals.code, os.strerror(self.refusals.code))
        result: int = self.inner.sendmsg(buffers, ancdata, flags, address)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def refuse_gso(monkeypatch: pytest.MonkeyPatch, transport: UdpTransport, code: int, times: int) -> None:
    refusals = Refusals(code, times)
    monkeypatch.setattr(transport, "_sock", RefusingSocket(transport._sock, refusals))
    monkeypatch.setattr(transport, "_raw", RefusingRawSocket(transport._raw, refusals))


async def test_gso_refused_by_the_kernel_falls_back_for_good(host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sent = numbered([800] * 6)
    async with pair(host, True, True) as (tx, rx):
        refuse_gso(monkeypatch, tx, errno.EIO, times=1)
        await tx.send_batch(sent, rx.local_address)
        got = await collect(rx, len(sent))
        assert [data for data, _ in got] == sent
        assert not tx.gso and tx.gso_refused is not None and tx.gso_refused.errno == errno.EIO
        assert (tx.gso_fallbacks, tx.send_errors, tx.send_calls) == (1, 0, 1 + 6)
        await tx.send_batch(sent, rx.local_address)  # plain from now on
        assert tx.send_calls == 1 + 6 + 6
        assert [data for data, _ in await collect(rx, len(sent))] == sent


async def test_gso_refusal_caused_by_the_datagrams_keeps_gso(host: str) -> None:
    async with pair(host, True, True) as (tx, rx):
        # port 0: the kernel refuses the GSO call (EINVAL), and each plain send as well
        await tx.send_batch(numbered([500] * 4), (rx.local_address[0], 0))
        assert tx.gso and tx.gso_refused is None
        assert (tx.gso_fallbacks, tx.send_errors, tx.datagrams_sent) == (1, 4, 0)
        sent = numbered([500] * 4)
        calls = tx.send_calls
        await tx.send_batch(sent, rx.local_address)
        assert tx.send_calls == calls + 1
        assert [data for data, _ in await collect(rx, 4)] == sent


async def test_a_failed_gso_call_loses_only_its_run(host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sent = numbered([600] * 3 + [900] * 3)  # two runs
    async with pair(host, True, True) as (tx, rx):
        refuse_gso(monkeypatch, tx, errno.ENOBUFS, times=1)
        await tx.send_batch(sent, rx.local_address)
        got = await collect(rx, 3)
        assert [data for data, _ in got] == sent[3:]
        assert (tx.send_errors, tx.datagrams_sent, tx.send_calls) == (3, 3, 2)
        assert tx.gso and tx.gso_fallbacks == 0


async def test_offload_can_be_forced_off_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(OFFLOAD_ENV, "0")
    transport = await UdpTransport.bind("127.0.0.1")
    try:
        assert not transport.gso and not transport.gro
    finally:
        transport.close()


async def test_sockets_never_fragment(host: str) -> None:
    transport = await UdpTransport.bind(host)
    try:
        assert transport.no_fragment
        sock = socket.socket(fileno=transport._raw.fileno())
        try:
            if host == "::1":
                assert sock.getsockopt(socket.IPPROTO_IPV6, 62) == 1  # IPV6_DONTFRAG
                assert sock.getsockopt(socket.IPPROTO_IPV6, 23) == 3  # IPV6_MTU_DISCOVER = PROBE
            else:
                assert sock.getsockopt(socket.IPPROTO_IP, 10) == 3  # IP_MTU_DISCOVER = PROBE
        finally:
            sock.detach()
    finally:
        transport.close()


async def test_max_udp_payload_on_loopback(host: str) -> None:
    mtu = int(Path("/sys/class/net/lo/mtu").read_text())
    transport = await UdpTransport.bind(host)
    try:
        peer = (host, 9)  # the route is looked up; nothing is sent
        if host == "::1":
            assert transport.max_udp_payload(peer) == min(mtu - 48, 65527)
        else:
            assert transport.max_udp_payload(peer) == min(mtu, 65535) - 28
            if mtu >= 65535:
                assert transport.max_udp_payload(peer) == 65507
        with pytest.raises(ValueError, match="IPv"):
            transport.max_udp_payload(("::1" if host != "::1" else "127.0.0.1", 9))
    finally:
        transport.close()


def test_max_udp_payload_arithmetic() -> None:
    assert socket_options.max_udp_payload(1280, socket.AF_INET) == 1252
    assert socket_options.max_udp_payload(1280, socket.AF_INET6) == 1232
    assert socket_options.max_udp_payload(1500, socket.AF_INET) == 1472
    assert socket_options.max_udp_payload(65536, socket.AF_INET) == 65507
    assert socket_options.max_udp_payload(65536, socket.AF_INET6) == 65488


def _sysctl(name: str) -> int:
    return int(Path("/proc/sys/net/core", name).read_text())


@pytest.mark.parametrize("size", [256 * 1024, 3 * 1024 * 1024, socket_options.DEFAULT_BUFFER_SIZE])
async def test_buffers_report_what_the_kernel_granted(host: str, size: int) -> None:
    transport = await UdpTransport.bind(host, buffer_size=size)
    try:
        # Linux doubles the request; without CAP_NET_ADMIN (no *BUFFORCE) it first caps it at the sysctl
        root = os.geteuid() == 0
        send = size if root else min(size, _sysctl("wmem_max"))
        receive = size if root else min(size, _sysctl("rmem_max"))
        assert (transport.send_buffer_size, transport.receive_buffer_size) == (2 * send, 2 * receive)
    finally:
        transport.close()


async def test_bind_accepts_a_name_and_v6_loopback() -> None:
    for name, family in (("localhost", socket.AF_INET), ("::1", socket.AF_INET6)):
        transport = await UdpTransport.bind(name)
        try:
            assert transport.family == family
            assert transport.local_address[1] > 0
        finally:
            transport.close()


async def test_ipv4_and_ipv6_wildcards_share_a_port() -> None:
    """A node keeps one socket per family: ``::`` must not also claim the IPv4 port (IPV6_V6ONLY).

    Only binds; nothing is sent.
    """
    v4 = await UdpTransport.bind("0.0.0.0", 0)
    try:
        v6 = await UdpTransport.bind("::", v4.local_address[1])
        v6.close()
    finally:
        v4.close()


async def test_receive_runs_keep_each_receive_call_from_one_address(host: str, offload: bool) -> None:
    """``receive_runs``: the same datagrams as ``receive_batch``, as runs of one source each;
    with GRO a run holds many datagrams (the node routes each run once)."""
    first, second = numbered([1200] * 30), numbered([700] * 5)
    async with pair(host, offload, offload) as (tx, rx):
        other = await bound(host, offload)
        try:
            await tx.send_batch(first, rx.local_address)
            await other.send_batch(second, rx.local_address)
            runs: list[tuple[list[bytes], Address]] = []
            with trio.fail_after(5):
                while sum(len(datagrams) for datagrams, _ in runs) < len(first) + len(second):
                    runs.extend(await rx.receive_runs())
        finally:
            other.close()
        by_source: dict[Address, list[bytes]] = {}
        for datagrams, address in runs:
            assert datagrams
            by_source.setdefault(address, []).extend(datagrams)
        assert by_source == {tx.local_address: first, other.local_address: second}
        if offload:
            assert max(len(datagrams) for datagrams, _ in runs) > 1
        else:
            assert all(len(datagrams) == 1 for datagrams, _ in runs)


async def test_send_batch_now_sends_what_the_socket_takes_without_waiting(host: str, offload: bool) -> None:
    """``send_batch_now`` (the node's receive loop sends its ACKs with it): delivers as ``send_batch``
    does while the socket has room, and says how many went when it has not."""
    sent = numbered(MIXED[:-3])  # without the 65000-byte datagram
    async with pair(host, offload, offload) as (tx, rx):
        assert tx.send_batch_now(sent, rx.local_address) == len(sent)
        got = await collect(rx, len(sent))
        assert [data for data, _ in got] == sent
        assert tx.datagrams_sent == len(sent) and tx.send_errors == 0
        assert tx.send_calls == (len(plan_runs(MIXED[:-3])) if offload else len(sent))


async def test_send_batch_now_leaves_what_would_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """A socket whose buffer is full (EAGAIN) after two calls: the count says where to go on."""
    async with pair("127.0.0.1", False, False) as (tx, rx):
        calls = 0
        raw = tx._raw

        class Filling:
            def sendto(self, data: bytes, addr: Any) -> int:
                nonlocal calls
                calls += 1
                if calls > 2:
                    raise BlockingIOError(errno.EAGAIN, "full")
                result: int = raw.sendto(data, addr)
                return result

        monkeypatch.setattr(tx, "_raw", Filling())
        sent = numbered([100] * 5)
        assert tx.send_batch_now(sent, rx.local_address) == 2
        monkeypatch.setattr(tx, "_raw", raw)
        await tx.send_batch(sent[2:], rx.local_address)
        got = await collect(rx, len(sent))
    assert [data for data, _ in got] == sent
