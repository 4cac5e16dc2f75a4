"""QUIC on a socket another driver owns (spec/quic.md §5.1): ``quic_shared.share``.

Each side here is one trio UDP socket on 127.0.0.1 with a small demultiplexer in front of it,
as a p2pos endpoint has (session.md §4.1): first byte 64-127 or 192-255 goes to QUIC, the rest
to a list standing for the sessions.  The same socket carries both.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator

import trio
from helpers import make_keys

from p2pos.proto.identity.identity import Identity
from p2pos.transports import quic, quic_shared
from p2pos.transports.quic import PeerMismatch, QuicCarrier

ALICE, BOB, CAROL = make_keys("alice").identity, make_keys("bob").identity, make_keys("carol").identity
LOOPBACK = "127.0.0.1"


def is_quic(data: bytes) -> bool:
    return bool(data) and (64 <= data[0] <= 127 or data[0] >= 192)


class Side:
    """One UDP socket shared by QUIC and "p2pos" datagrams."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.address: tuple[str, int] = sock.getsockname()[:2]
        self.p2pos: list[tuple[bytes, tuple[str, int]]] = []
        self.quic_in = 0
        self.quic_seen: list[bytes] = []
        self.shared: quic_shared.SharedQuic | None = None

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        with contextlib.suppress(BlockingIOError):
            self.sock._sock.sendto(data, addr)  # type: ignore[attr-defined]  # non-blocking, as a driver's send_now

    async def receive_loop(self) -> None:
        while True:
            data, addr = await self.sock.recvfrom(65536)
            if is_quic(data):
                self.quic_in += 1
                self.quic_seen.append(data)
                assert self.shared is not None
                self.shared.feed(data, addr[:2])
            else:
                self.p2pos.append((data, addr[:2]))


@contextlib.asynccontextmanager
async def side(identity: Identity) -> AsyncIterator[tuple[Side, quic_shared.SharedQuic]]:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind((LOOPBACK, 0))
    one = Side(sock)
    try:
        async with (
            quic_shared.share(one.send, one.address, identity, handshake_timeout=3) as shared,
            trio.open_nursery() as n,
        ):
            one.shared = shared
            n.start_soon(one.receive_loop)
            yield one, shared
            n.cancel_scope.cancel()
    finally:
        sock.close()


async def accept_into(shared: quic_shared.SharedQuic, into: list[QuicCarrier]) -> None:
    while True:
        into.append(await shared.accept())


async def wait_for(items: list[QuicCarrier], count: int = 1) -> None:
    with trio.fail_after(5):
        while len(items) < count:
            await trio.sleep(0.01)


async def test_quic_and_p2pos_datagrams_share_one_socket() -> None:
    """[QUIC-5.1.1] [QUIC-5.1.2]: a carrier dialed from a shared socket to a shared socket, with
    p2pos datagrams on the same two sockets going around QUIC."""
    async with side(ALICE) as (alice, a_quic), side(BOB) as (bob, b_quic), trio.open_nursery() as nursery:
        accepted: list[QuicCarrier] = []
        nursery.start_soon(accept_into, b_quic, accepted)
        assert (a_quic.host, a_quic.port) == alice.address
        async with a_quic.dial(*bob.address, expected_peer_id=BOB.peer_id) as carrier:
            assert carrier.peer_id == BOB.peer_id
            alice.send(b"\x04raw p2pos", bob.address)
            await carrier.send_record(b"\x04over quic")
            await wait_for(accepted)
            (server,) = accepted
            assert server.peer_id == ALICE.peer_id
            assert server.remote_address == alice.address  # the dial left from Alice's shared socket
            assert await server.receive_record() == b"\x04over quic"
            await server.send_record(b"\x05back")
            assert await carrier.receive_record() == b"\x05back"
            with trio.fail_after(2):
                while not bob.p2pos:
                    await trio.sleep(0.01)
            assert bob.p2pos == [(b"\x04raw p2pos", alice.address)]
            assert alice.quic_in > 0 and bob.quic_in > 0
        nursery.cancel_scope.cancel()
    assert a_quic.drops == {} and b_quic.drops == {}


async def test_both_sides_dial_each_other_on_the_same_sockets() -> None:
    """[QUIC-5.1.2]: one shared socket dials and accepts at once, 2 MB each way, hash intact."""
    payload = bytes(range(256)) * 8192  # 2 MiB
    async with side(ALICE) as (alice, a_quic), side(BOB) as (bob, b_quic), trio.open_nursery() as nursery:
        at_alice: list[QuicCarrier] = []
        at_bob: list[QuicCarrier] = []
        nursery.start_soon(accept_into, a_quic, at_alice)
        nursery.start_soon(accept_into, b_quic, at_bob)
        async with (
            a_quic.dial(*bob.address, expected_peer_id=BOB.peer_id) as a_to_b,
            b_quic.dial(*alice.address, expected_peer_id=ALICE.peer_id) as b_to_a,
        ):
            await wait_for(at_alice)
            await wait_for(at_bob)
            got: dict[str, bytes] = {}

            async def pump(sender: QuicCarrier, receiver: QuicCarrier, name: str) -> None:
                async def send() -> None:
                    for i in range(0, len(payload), 16384):
                        await sender.send_record(payload[i : i + 16384])

                parts: list[bytes] = []
                async with trio.open_nursery() as inner:
                    inner.start_soon(send)
                    while sum(map(len, parts)) < len(payload):
                        parts.append(await receiver.receive_record())
                got[name] = b"".join(parts)

            with trio.fail_after(20):
                async with trio.open_nursery() as pumps:
                    pumps.start_soon(pump, a_to_b, at_bob[0], "a->b")
                    pumps.start_soon(pump, b_to_a, at_alice[0], "b->a")
            digest = hashlib.sha256(payload).digest()
            assert {name: hashlib.sha256(data).digest() for name, data in got.items()} == {
                "a->b": digest,
                "b->a": digest,
            }
        nursery.cancel_scope.cancel()


async def test_shared_socket_dial_checks_the_peer_id() -> None:
    """[QUIC-5.1.2]: the dial from a shared socket authenticates the listener as §3 says."""
    async with side(ALICE) as (_, a_quic), side(BOB) as (bob, b_quic), trio.open_nursery() as nursery:
        nursery.start_soon(accept_into, b_quic, [])
        with trio.fail_after(5):
            try:
                async with a_quic.dial(*bob.address, expected_peer_id=CAROL.peer_id):
                    raise AssertionError("the dial to the wrong peer succeeded")
            except PeerMismatch:
                pass
        nursery.cancel_scope.cancel()


async def test_standalone_dialer_reaches_a_shared_listener_and_garbage_is_counted() -> None:
    """[QUIC-5.1.1]: the module's own dial() interoperates; a non-QUIC datagram fed is a counted drop."""
    async with side(BOB) as (bob, b_quic), trio.open_nursery() as nursery:
        accepted: list[QuicCarrier] = []
        nursery.start_soon(accept_into, b_quic, accepted)
        b_quic.feed(b"\x40" + b"\x00" * 3, (LOOPBACK, 9))  # a short-header first byte, no such connection
        async with quic.dial(*bob.address, expected_peer_id=BOB.peer_id, identity=ALICE) as carrier:
            await carrier.send_record(b"\x04hi")
            await wait_for(accepted)
            assert await accepted[0].receive_record() == b"\x04hi"
        assert sum(b_quic.drops.values()) == 1
        nursery.cancel_scope.cancel()


async def test_a_punch_is_a_short_header_the_peer_drops() -> None:
    """[QUIC-5.1.4]: 21 bytes, 0x40 first, random after; the receiving QUIC counts it as a drop."""
    async with side(ALICE) as (_, a_quic), side(BOB) as (bob, b_quic):
        a_quic.punch(*bob.address)
        a_quic.punch(*bob.address)
        with trio.fail_after(2):
            while sum(b_quic.drops.values()) < 2:
                await trio.sleep(0.01)
        assert b_quic.drops == {"unknown_connection": 2} and bob.quic_in == 2 and bob.p2pos == []
        first, second = bob.quic_seen
        assert len(first) == len(second) == 21 and first[0] == second[0] == 0x40 and first != second
