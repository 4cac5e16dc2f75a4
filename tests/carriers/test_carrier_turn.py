"""Two real nodes whose only socket is a ``TurnTransport`` (adapters/carriers/turn.py) on a real coturn.

coturn comes from tests/turn/coturn_fixture.py (imported, see carrier_helpers).  Alice's leg to
coturn is UDP, Bob's TCP; each node's address is its relayed address, and each side installs
the other's permission first (TRN-6.3).
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio
from carrier_helpers import MB, payload, stream_pair, two_way_transfer
from coturn_fixture import PASSWORD, USER, Coturn, start_coturn
from helpers import make_keys

from p2pos.adapters.carriers import CarrierLost, TurnTransport, close_sessions_on_loss, open_turn_transport
from p2pos.adapters.carriers.turn import TURN_DATAGRAM_CEILING, TURN_MESSAGE_CEILING
from p2pos.adapters.node import ConnectFailed, Node, open_node
from p2pos.adapters.streams import ChannelBroken
from p2pos.proto import ErrorCode
from p2pos.proto.nat.turn import TurnConfig
from p2pos.proto.nat.turn_config import TurnCredentials
from p2pos.proto.nat.turn_config import TurnTransport as Leg
from p2pos.transports import socket_options
from p2pos.transports.turn import TurnError

ALICE, BOB = make_keys("alice"), make_keys("bob")
GOOD = TurnCredentials(username=USER, password=PASSWORD)
#: Fail fast when coturn is gone (the UDP leg retransmits otherwise for 39.5 s).
FAST = TurnConfig(rto=0.2, rc=3, rm=2, stream_timeout=3.0)


@pytest.fixture(scope="module")
def coturn() -> Iterator[Coturn]:
    with start_coturn("long-term") as server:
        yield server


@asynccontextmanager
async def turn_nodes(
    coturn: Coturn, legs: tuple[Leg, Leg] = (Leg.UDP, Leg.TCP)
) -> AsyncIterator[tuple[Node, Node, TurnTransport, TurnTransport, list[CarrierLost]]]:
    """Alice and Bob (by default: UDP and TCP legs) on their allocations, permissions installed both ways."""
    losses: list[CarrierLost] = []
    async with AsyncExitStack() as stack:
        ta, tb = [
            await stack.enter_async_context(
                open_turn_transport(
                    coturn.server(leg),
                    GOOD,
                    config=FAST,
                    release_timeout=1,
                    ssl_context=coturn.ssl_context() if leg is Leg.TLS else None,
                    on_lost=losses.append,
                )
            )
            for leg in legs
        ]
        a = await stack.enter_async_context(open_node(ALICE, transports=[ta]))
        b = await stack.enter_async_context(open_node(BOB, transports=[tb]))
        close_sessions_on_loss(a, ta)
        close_sessions_on_loss(b, tb)
        await ta.add_peer(tb.local_address)
        await tb.add_peer(ta.local_address)
        yield a, b, ta, tb, losses


async def test_ten_megabytes_each_way_through_coturn(coturn: Coturn) -> None:
    """[TRN-6.1] [TRN-6.2] [TRN-6.3] one channel carries 10 MB each way at once between the two
    relayed addresses; digests match; nothing was lost to the transports."""
    with trio.fail_after(45):
        async with turn_nodes(coturn) as (a, b, ta, tb, losses):
            assert ta.local_address != tb.local_address
            assert coturn.min_port <= ta.local_address[1] <= coturn.max_port
            s, r = await stream_pair(a, b, tb.local_address)
            started = time.monotonic()
            await two_way_transfer(s, r, 10 * MB)
            print(f"TURN carrier: 2 x 10 MB in {time.monotonic() - started:.1f} s")
            assert losses == [] and ta.dropped == tb.dropped == 0
            peer = a.peer(BOB.identity.peer_id)
            assert peer is not None and a.endpoint.address_of(peer.session_id) == tb.local_address


async def test_a_megabyte_each_way_over_a_tls_leg(coturn: Coturn) -> None:
    """[TRN-3.1] Alice's leg is TLS (turns:), Bob's UDP: still a datagram path between relayed addresses."""
    with trio.fail_after(30):
        async with turn_nodes(coturn, (Leg.TLS, Leg.UDP)) as (a, b, ta, tb, losses):
            s, r = await stream_pair(a, b, tb.local_address)
            await two_way_transfer(s, r, 1 * MB)
            assert losses == [] and ta.dropped == tb.dropped == 0


async def test_the_payload_ceiling_leaves_room_for_the_turn_wrapping(coturn: Coturn) -> None:
    """[TRN-6.4] [TRN-6.5] the leg's payload, at most TURN_MESSAGE_CEILING (coturn's 16 KiB buffer,
    which is what a 64 KiB loopback leaves), less ChannelData's 4 bytes (UDP leg) or 4 + 3 of padding
    (TCP leg); without channels, less the Send indication's 39 (IPv4, padding)."""
    async with turn_nodes(coturn) as (_a, _b, ta, tb, _losses):
        server = (ta.turn.server.host, ta.turn.server.port)
        udp_leg = socket_options.max_udp_payload(socket_options.path_mtu(socket.AF_INET, server), socket.AF_INET)
        assert udp_leg > TURN_MESSAGE_CEILING  # 65507 on a 65536-byte loopback
        assert ta.max_udp_payload(tb.local_address) == TURN_MESSAGE_CEILING - 4 == TURN_DATAGRAM_CEILING
        assert tb.max_udp_payload(ta.local_address) == TURN_MESSAGE_CEILING - 7  # TCP leg
    async with open_turn_transport(coturn.server(Leg.UDP), GOOD, config=TurnConfig(use_channels=False)) as plain:
        assert plain.max_udp_payload(tb.local_address) == TURN_MESSAGE_CEILING - 39


async def test_garbage_from_the_peers_address_does_not_hurt_the_session(coturn: Coturn) -> None:
    """Garbage relayed from Bob's own relayed address mid-transfer (junk, DATA packets for no session,
    forged DATA packets for the live session) is dropped by Alice's endpoint; the transfer completes."""
    with trio.fail_after(30):
        async with turn_nodes(coturn) as (a, b, ta, tb, losses):
            s, r = await stream_pair(a, b, tb.local_address)
            peer = a.peer(BOB.identity.peer_id)
            assert peer is not None
            live = peer.session_id.to_bytes(4, "big")
            junk = [b"\x00", payload(100, b"junk"), b"\x07\xff\xff\xff\xff" + bytes(60)]
            junk += [b"\x07" + live + payload(size, b"forged") for size in (20, 1200, 5000)]
            async with trio.open_nursery() as nursery:
                nursery.start_soon(two_way_transfer, s, r, 1 * MB)
                for data in junk:
                    await tb.turn.send(data, ta.local_address)
                    await trio.sleep(0.01)
            assert a.endpoint.drops["unknown_session"] >= 1 and a.endpoint.drops["empty"] == 0
            assert losses == []


async def test_bad_addresses_are_clear_errors(coturn: Coturn) -> None:
    async with turn_nodes(coturn) as (a, _b, ta, _tb, _losses):
        with pytest.raises(ValueError, match="IPv6"):
            await ta.add_peer(("::1", 5000))
        with pytest.raises(ValueError, match="not an IP address"):
            await ta.add_peer(("bob.example", 5000))
        with pytest.raises(ValueError, match="port"):
            await a.connect(BOB.identity.peer_id, ("127.0.0.1", 0), "svc")


async def test_a_refused_permission_is_a_clear_error_and_fails_the_connect_at_once(coturn: Coturn) -> None:
    """[TRN-6.3] coturn refuses multicast peers (403): ``add_peer`` raises TurnError naming it, and a
    node connecting there gets ConnectFailed at once (CarrierLost for that IP), not after 15 s."""
    with trio.fail_after(10):
        async with turn_nodes(coturn) as (a, _b, ta, _tb, losses):
            with pytest.raises(TurnError, match="403"):
                await ta.add_peer(("224.0.0.1", 5000))
            started = trio.current_time()
            with pytest.raises(ConnectFailed) as info:
                await a.connect(BOB.identity.peer_id, ("224.0.0.2", 5000), "svc")
            assert trio.current_time() - started < 5
            assert "carrier lost" in str(info.value) and "403" in str(info.value)
            assert [loss.address for loss in losses] == [("224.0.0.1", 0), ("224.0.0.2", 0)]
            assert ta.lost is None  # the allocation itself still works


async def test_coturn_dying_mid_transfer_breaks_the_channels_with_the_reason() -> None:
    """coturn is killed mid-transfer: both nodes learn it from their leg (UDP: port unreachable,
    TCP: the connection ends), report CarrierLost, and their channels raise ChannelBroken naming
    the TURN server at once; nothing hangs, the allocations' exits do not wait."""
    with start_coturn("long-term") as doomed, trio.fail_after(30):
        async with turn_nodes(doomed) as (a, b, ta, tb, losses):
            s, r = await stream_pair(a, b, tb.local_address)
            await s.send_all(payload(200_000, b"x"))
            while len(await r.receive_some()) == 0:
                pass
            doomed.process.kill()
            killed = trio.current_time()
            for side in (s, r):
                with pytest.raises(ChannelBroken) as info:
                    while True:
                        await side.send_all(b"y" * 10_000)
                assert info.value.code is ErrorCode.INTERNAL_ERROR
                assert "carrier lost" in str(info.value) and "TURN" in str(info.value)
            assert trio.current_time() - killed < 10
            assert sorted(loss.kind for loss in losses) == ["turn", "turn"]
            assert all(loss.address is None for loss in losses)
            assert ta.lost is not None and tb.lost is not None
            assert ta.send_batch_now([b"late"], tb.local_address) == 1  # a counted loss, no exception
            with pytest.raises(TurnError):
                await ta.add_peer(tb.local_address)


async def test_refused_credentials_fail_the_transport_before_any_node_uses_it(coturn: Coturn) -> None:
    """[TRN-5.2] a wrong password: open_turn_transport raises TurnError naming the refusal."""
    with trio.fail_after(10), pytest.raises(TurnError, match="refused the credentials"):
        async with open_turn_transport(
            coturn.server(Leg.TCP), TurnCredentials(username=USER, password="wrong"), config=FAST
        ):
            pytest.fail("no allocation should be made with a wrong password")


async def test_datagrams_go_straight_to_the_udp_leg_in_order(coturn: Coturn) -> None:
    """[TRN-8.2] once the peer's channel is bound, ``send_batch_now`` writes to the UDP leg at once (no
    sender-task hop: the messages are counted sent before any checkpoint); while the outbox holds
    earlier datagrams, later ones queue behind them: a plain UDP peer gets every datagram in order."""
    with trio.fail_after(20):
        async with open_turn_transport(coturn.server(Leg.UDP), GOOD, config=FAST, release_timeout=1) as transport:
            peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with peer:
                peer.bind(("127.0.0.1", 0))
                socket_options.size_buffers(peer)
                peer.settimeout(5)
                address = peer.getsockname()
                early = [b"early-%d" % i for i in range(3)]
                before = transport.turn.messages_sent
                assert transport.send_batch_now(early, address) == 3  # no channel yet: into the outbox
                assert transport.turn.messages_sent == before
                await transport.add_peer(address)
                # The channel bound and the permission installed, the early datagrams sent: nothing waits.
                while (
                    transport.turn.client.channel_for(address, trio.current_time()) is None or transport.turn._flushing
                ):
                    await trio.sleep(0.01)
                await trio.sleep(0.05)
                sent = transport.turn.messages_sent
                burst = [b"now-%d" % i + bytes(4000) for i in range(20)]
                assert transport.send_batch_now(burst, address) == 20
                assert transport.turn.messages_sent - sent == 20  # straight to the socket
                await transport.send_batch(burst[:2], address)  # (also straight: nothing waits)
                got = [await trio.to_thread.run_sync(peer.recv, 65536) for _ in range(25)]
                assert got == early + burst + burst[:2]
