"""The trio node: channels as trio streams, over real UDP sockets and over the seeded link emulator.

Tests on sockets use loopback (127.0.0.1 and ::1) and the real clock; tests under
``trio.testing.MockClock`` run two nodes over ``transports.emulated.EmulatedLink``,
so timeouts and losses happen in virtual time, deterministically per seed.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio
import trio.testing
from helpers import make_keys

from p2pos.adapters.demo import run_demo
from p2pos.adapters.node import ConnectFailed, Node, open_node
from p2pos.adapters.streams import ChannelBroken, ChannelStream, MessageChannel, ServiceRefused
from p2pos.proto import ChannelConfig, ChannelKind, ErrorCode
from p2pos.proto.simulation.link import LinkConfig
from p2pos.transports.emulated import EmulatedLink

ALICE, BOB, CAROL = make_keys("alice"), make_keys("bob"), make_keys("carol")

StreamPair = tuple[ChannelStream, ChannelStream]


@asynccontextmanager
async def socket_nodes(
    host: str = "127.0.0.1", channels: ChannelConfig | None = None
) -> AsyncIterator[tuple[Node, Node]]:
    async with (
        open_node(ALICE, host=host, channels=channels) as a,
        open_node(BOB, host=host, channels=channels) as b,
    ):
        yield a, b


@asynccontextmanager
async def emulated_nodes(
    seed: int = 1, config: LinkConfig | None = None, channels: ChannelConfig | None = None
) -> AsyncIterator[tuple[Node, Node, EmulatedLink]]:
    link = EmulatedLink(seed, config or LinkConfig(delay=0.01))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.run)
        async with (
            open_node(ALICE, transports=[link.a], channels=channels) as a,
            open_node(BOB, transports=[link.b], channels=channels) as b,
        ):
            yield a, b, link
        nursery.cancel_scope.cancel()


async def stream_pair(a: Node, b: Node, service: str = "svc") -> StreamPair:
    """A channel from a to b's ``service`` (listening on it first if needed)."""
    listener = b._listeners.get(service) or b.listen(service)
    opened = await a.connect(b.peer_id, b.address, service)
    accepted = await listener.accept()
    assert isinstance(opened, ChannelStream) and isinstance(accepted, ChannelStream)
    return opened, accepted


async def clogged_pair(a: Node, b: Node, service: str) -> StreamPair:
    """A pair stuck both ways: each side's send buffer is full, and the other side's window too."""
    s, r = await stream_pair(a, b, service)
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(s.send_all, bytes(1_000_000))
            nursery.start_soon(r.send_all, bytes(1_000_000))
            await trio.sleep(0.5)  # long enough for the windows to fill (real or virtual time)
            scope.cancel()
    return s, r


# -- over real sockets -------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_two_nodes_talk_over_a_channel(host: str) -> None:
    async with socket_nodes(host) as (a, b):
        s, r = await stream_pair(a, b)
        assert r.peer_id == ALICE.identity.peer_id and s.peer_id == BOB.identity.peer_id
        peer_a, peer_b = a.peer(BOB.identity.peer_id), b.peer(ALICE.identity.peer_id)
        assert peer_a is not None and peer_b is not None and peer_a.sas == peer_b.sas
        await s.send_all(b"hello over " + host.encode())
        assert await r.receive_some() == b"hello over " + host.encode()
        await r.send_all(b"reply")
        await r.send_eof()
        assert await s.receive_some() == b"reply"
        assert await s.receive_some() == b""


async def test_a_node_listens_on_ipv4_and_ipv6_at_once() -> None:
    async with (
        open_node(ALICE, hosts=("127.0.0.1", "::1")) as a,
        open_node(BOB, hosts=("127.0.0.1", "::1")) as b,
    ):
        b.listen("svc")
        v6 = next(addr for addr in b.addresses if ":" in addr[0])
        stream = await a.connect(b.peer_id, v6, "svc")
        assert isinstance(stream, ChannelStream)
        assert a.endpoint.socket_of(stream.session_id) == 1  # the IPv6 socket


async def test_check_half_closeable_stream_on_sockets() -> None:
    async with AsyncExitStack() as stack:
        a, b = await stack.enter_async_context(socket_nodes())
        small = ChannelConfig(send_buffer=4096, channel_window=4096)
        ca, cb = await stack.enter_async_context(socket_nodes(channels=small))
        count = 0

        async def maker() -> StreamPair:
            nonlocal count
            count += 1
            return await stream_pair(a, b, f"s{count}")

        async def clogged() -> StreamPair:
            nonlocal count
            count += 1
            return await clogged_pair(ca, cb, f"c{count}")

        with trio.fail_after(60):
            await trio.testing.check_half_closeable_stream(maker, clogged)


async def test_many_channels_at_once_carry_a_file_each() -> None:
    files = [random.Random(i).randbytes(200_000 + 1000 * i) for i in range(8)]
    async with socket_nodes() as (a, b):
        listener = b.listen("files")
        digests: dict[int, str] = {}

        async def serve() -> None:
            async with trio.open_nursery() as nursery:
                for _ in files:
                    stream = await listener.accept()
                    assert isinstance(stream, ChannelStream)
                    nursery.start_soon(receive_one, stream)

        async def receive_one(stream: ChannelStream) -> None:
            parts = []
            while chunk := await stream.receive_some():
                parts.append(chunk)
            data = b"".join(parts)
            digests[len(data)] = hashlib.sha256(data).hexdigest()
            await stream.aclose()

        async def send_one(data: bytes) -> None:
            stream = await a.connect(b.peer_id, b.address, "files")
            assert isinstance(stream, ChannelStream)
            await stream.send_all(data)
            await stream.aclose()

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve)
                for data in files:
                    nursery.start_soon(send_one, data)
        assert digests == {len(d): hashlib.sha256(d).hexdigest() for d in files}
        assert len(a.endpoint) == 1  # one session carried every channel


async def test_a_slow_reader_slows_its_sender_and_nothing_is_lost() -> None:
    config = ChannelConfig(send_buffer=64 * 1024)
    data = random.Random(5).randbytes(3_000_000)
    async with socket_nodes(channels=config) as (a, b):
        s, r = await stream_pair(a, b)
        sent = trio.Event()

        async def sender() -> None:
            await s.send_all(data)
            await s.send_eof()
            sent.set()

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sender)
                received = bytearray()
                await trio.sleep(0.3)
                # The reader has read nothing: the sender is held by flow control, not buffering it all.
                assert not sent.is_set()
                connection = a.endpoint.connection(s.session_id)
                assert connection is not None
                send_buffer = connection.channels[s.channel_id].send
                assert send_buffer is not None and send_buffer.buffered <= config.send_buffer
                while chunk := await r.receive_some(10_000):
                    received += chunk
                    await trio.sleep(0)
        assert bytes(received) == data


async def test_connecting_to_the_wrong_key_is_a_clear_error() -> None:
    async with socket_nodes() as (a, b):
        with trio.fail_after(20), pytest.raises(ConnectFailed) as info:
            await a.connect(CAROL.identity.peer_id, b.address, "svc")
        assert info.value.code is ErrorCode.IDENTITY_MISMATCH
        assert a.peer(CAROL.identity.peer_id) is None and a.peer(BOB.identity.peer_id) is None


async def test_a_refused_service_is_a_clear_error() -> None:
    async with socket_nodes() as (a, b):
        b.listen("chat")
        with trio.fail_after(20), pytest.raises(ServiceRefused) as info:
            await a.connect(b.peer_id, b.address, "no-such-service", wait_accepted=True)
        assert info.value.code is ErrorCode.SERVICE_UNKNOWN and info.value.service == "no-such-service"
        # The session survives a refusal: another service on it still works.
        s, r = await stream_pair(a, b, "chat")
        await s.send_all(b"still here")
        assert await r.receive_some() == b"still here"


async def test_a_refusal_of_early_data_surfaces_on_the_stream() -> None:
    """spec/channels.md §2.7: ``connect`` returns before the answer; what was written goes with the
    OPEN; the refusal comes from the next read (and write), saying the bytes were not delivered."""
    async with socket_nodes() as (a, b):
        b.listen("chat")
        with trio.fail_after(20):
            stream = await a.connect(b.peer_id, b.address, "no-such-service")
            assert isinstance(stream, ChannelStream)
            await stream.send_all(b"hello?")  # before any answer: accepted into the send buffer
            with pytest.raises(ServiceRefused) as info:
                await stream.receive_some()
            assert info.value.code is ErrorCode.SERVICE_UNKNOWN and info.value.undelivered == 6
            assert "6 bytes written were not delivered" in str(info.value)
            with pytest.raises(ServiceRefused):
                await stream.send_all(b"more")
            with pytest.raises(ServiceRefused):
                await stream.wait_accepted()
            await stream.aclose()
            # An accepted one: written at once, delivered, and wait_accepted returns.
            accepted = await a.connect(b.peer_id, b.address, "chat")
            assert isinstance(accepted, ChannelStream)
            await accepted.send_all(b"early")
            await accepted.wait_accepted()


@pytest.mark.parametrize(
    ("address", "why"),
    [(("not-an-ip", 1), "not an IP"), (("127.0.0.1", 0), "port"), ("127.0.0.1:4000", "(ip, port)")],
)
async def test_a_bad_address_is_a_clear_error_and_creates_nothing(address: object, why: str) -> None:
    async with socket_nodes() as (a, _):
        with pytest.raises(ValueError, match=why):
            await a.connect(BOB.identity.peer_id, address, "svc")
        assert len(a.endpoint) == 0


async def test_garbage_and_stun_datagrams_do_not_hurt_the_node() -> None:
    async with socket_nodes() as (a, b):
        s, r = await stream_pair(a, b)
        junk = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        with junk:
            stun = bytes.fromhex("0001 0000 2112a442") + bytes(12)
            for datagram in [b"", b"\x07garbage", bytes(range(256)), stun, b"\x40\x01\x00\x02hi"]:
                await junk.sendto(datagram, b.address)
            await trio.sleep(0.1)
        await s.send_all(b"unharmed")
        assert await r.receive_some() == b"unharmed"
        # bytes(range(256)) starts with 0x00: STUN by its first byte, as the real Binding request.
        assert b.foreign.get("stun") == 2 and b.foreign.get("turn-channel") == 1


async def test_message_channels_deliver_whole_messages() -> None:
    async with socket_nodes() as (a, b):
        listener = b.listen("presence", kind=ChannelKind.MESSAGE)
        channel = await a.connect(b.peer_id, b.address, "presence", kind=ChannelKind.MESSAGE)
        accepted = await listener.accept()
        assert isinstance(channel, MessageChannel) and isinstance(accepted, MessageChannel)
        for i in range(5):
            await channel.send(b"message %d" % i)
        with trio.fail_after(10):
            got = [await accepted.receive() for _ in range(5)]
        assert sorted(got) == [b"message %d" % i for i in range(5)]
        with pytest.raises(ValueError):
            await channel.send(bytes(100_000))  # never fits one packet: refused, not split


# -- under MockClock, over the seeded link emulator ------------------------------------


async def test_a_vanished_peer_reaches_the_application_as_a_clear_exception(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with emulated_nodes() as (a, b, link):
        s, r = await stream_pair(a, b)
        await s.send_all(b"before")
        assert await r.receive_some() == b"before"
        link.b.close()  # bob's host vanishes: nothing more arrives from it, nothing reaches it
        start = trio.current_time()
        with pytest.raises(ChannelBroken) as info:
            await s.receive_some()
        assert info.value.code is ErrorCode.IDLE_TIMEOUT
        assert "IDLE_TIMEOUT" in str(info.value)
        assert 25 <= trio.current_time() - start <= 40  # the idle timeout, in virtual time
        assert a.peer(BOB.identity.peer_id) is None


async def test_a_silent_address_fails_the_connect_after_the_handshake_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with emulated_nodes() as (a, b, link):
        link.b.close()
        start = trio.current_time()
        with pytest.raises(ConnectFailed) as info:
            await a.connect(b.peer_id, b.address, "svc")
        assert info.value.code is ErrorCode.HANDSHAKE_TIMEOUT
        assert trio.current_time() - start == pytest.approx(15, abs=1)


@pytest.mark.parametrize("seed", range(3))
async def test_a_transfer_survives_a_lossy_link(autojump_clock: trio.testing.MockClock, seed: int) -> None:
    config = LinkConfig(delay=0.02, loss=0.05, reorder=0.02, duplicate=0.01, bandwidth=2_000_000)
    data = random.Random(seed).randbytes(500_000)
    async with emulated_nodes(seed, config) as (a, b, link):
        s, r = await stream_pair(a, b)

        async def send() -> None:
            await s.send_all(data)
            await s.send_eof()

        received = bytearray()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            while chunk := await r.receive_some():
                received += chunk
        assert bytes(received) == data
        assert link.link.stats("a").lost > 0  # the link did lose packets: retransmission was exercised


async def test_check_half_closeable_stream_under_mock_clock(autojump_clock: trio.testing.MockClock) -> None:
    async with AsyncExitStack() as stack:
        a, b, _ = await stack.enter_async_context(emulated_nodes())
        small = ChannelConfig(send_buffer=4096, channel_window=4096)
        ca, cb, _ = await stack.enter_async_context(emulated_nodes(2, channels=small))
        count = 0

        def maker_for(x: Node, y: Node, clog: bool) -> Callable[[], Awaitable[StreamPair]]:
            async def maker() -> StreamPair:
                nonlocal count
                count += 1
                return await (clogged_pair if clog else stream_pair)(x, y, f"s{count}")

            return maker

        await trio.testing.check_half_closeable_stream(maker_for(a, b, False), maker_for(ca, cb, True))


# -- the demo (make run) ------------------------------------------------------------------


async def test_the_demo_uses_several_channels_and_checks_the_file() -> None:
    lines: list[str] = []
    with trio.fail_after(60):
        summary = await run_demo(lines.append, file_size=300_000)
    assert summary["alice_sas"] == summary["bob_sas"] != ""
    assert summary["alice_sees"] != summary["bob_sees"]  # each sees the other's id
    assert summary["file_received_sha256"] == summary["file_sent_sha256"] == summary["bob_reported_sha256"]
    assert int(summary["presence_messages"]) >= 1
    assert summary["ik_sas"] and summary["ik_sas"] != summary["alice_sas"]
    assert any("matches" in line for line in lines)
