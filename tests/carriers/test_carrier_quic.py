"""Two real nodes whose only socket is a ``QuicTransport`` (adapters/carriers/quic.py), on loopback."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from carrier_helpers import MB, payload, stream_pair, two_way_transfer
from helpers import make_keys

from p2pos.adapters.carriers import CarrierLost, QuicTransport, close_sessions_on_loss, open_quic_transport
from p2pos.adapters.node import ConnectFailed, Node, open_node
from p2pos.adapters.streams import ChannelBroken
from p2pos.proto import ErrorCode
from p2pos.transports import quic

ALICE, BOB, CAROL = make_keys("alice"), make_keys("bob"), make_keys("carol")
HOST = "127.0.0.1"


@asynccontextmanager
async def quic_nodes(
    idle_timeout: float = 60.0,
) -> AsyncIterator[tuple[Node, Node, QuicTransport, QuicTransport, list[CarrierLost]]]:
    """Alice and Bob, each on one QUIC transport; Alice expects Bob at his listener; losses recorded."""
    losses: list[CarrierLost] = []
    async with (
        open_quic_transport(ALICE.identity, HOST, on_lost=losses.append, idle_timeout=idle_timeout) as ta,
        open_quic_transport(BOB.identity, HOST, on_lost=losses.append, idle_timeout=idle_timeout) as tb,
        open_node(ALICE, transports=[ta]) as a,
        open_node(BOB, transports=[tb]) as b,
    ):
        close_sessions_on_loss(a, ta)
        close_sessions_on_loss(b, tb)
        ta.expect(tb.local_address, BOB.identity.peer_id)
        yield a, b, ta, tb, losses


async def test_ten_megabytes_each_way_over_quic() -> None:
    """One channel carries 10 MB each way at once through one authenticated QUIC carrier; digests match."""
    with trio.fail_after(40):
        async with quic_nodes() as (a, b, ta, tb, losses):
            s, r = await stream_pair(a, b, tb.local_address)
            started = time.monotonic()
            await two_way_transfer(s, r, 10 * MB)
            print(f"QUIC carrier: 2 x 10 MB in {time.monotonic() - started:.1f} s")
            assert ta.peers == {tb.local_address: BOB.identity.peer_id}
            assert list(tb.peers.values()) == [ALICE.identity.peer_id]  # the dialer, authenticated by QUIC
            assert losses == []
            assert ta.dropped == tb.dropped == 0


async def test_a_carrier_dying_mid_transfer_breaks_the_channels_with_the_reason() -> None:
    """The carrier is closed with an error mid-transfer: both nodes' channels raise ChannelBroken at
    once (not after the idle timeout), naming the lost carrier; nothing hangs, the nodes keep running."""
    with trio.fail_after(20):
        async with quic_nodes() as (a, b, ta, tb, losses):
            s, r = await stream_pair(a, b, tb.local_address)
            await s.send_all(payload(200_000, b"x"))
            while len(await r.receive_some()) == 0:
                pass
            carrier = ta.carrier(tb.local_address)
            assert carrier is not None
            [alice_at_bob] = tb.peers  # the address Alice's carrier comes from, as Bob sees it
            killed = trio.current_time()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(carrier.aclose, ErrorCode.INTERNAL_ERROR, "pulled the plug")
                for side in (s, r):
                    with pytest.raises(ChannelBroken) as info:
                        while True:
                            await side.send_all(b"y" * 10_000)
                    assert info.value.code is ErrorCode.INTERNAL_ERROR
                    assert "carrier lost" in str(info.value) and "pulled the plug" in str(info.value)
            assert trio.current_time() - killed < 5
            with trio.fail_after(5):  # Bob's side ends after QUIC's draining period (RFC 9000 §10.2.2)
                while len(losses) < 2:
                    await trio.sleep(0.02)
            assert sorted((loss.kind, loss.address) for loss in losses) == sorted(
                [("quic", tb.local_address), ("quic", alice_at_bob)]
            )
            assert a.peer(BOB.identity.peer_id) is None and b.peer(ALICE.identity.peer_id) is None
            # The nodes still work: a new connect dials a new carrier.
            s2, r2 = await stream_pair(a, b, tb.local_address, service="again")
            await two_way_transfer(s2, r2, 100_000)


class Cuttable:
    """A UDP forwarder from ``address`` to ``target`` (one flow) that can go silent both ways."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.outer = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.inner = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.client: tuple[str, int] | None = None
        self.cut = False

    async def run(self, *, task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED) -> None:
        await self.outer.bind((HOST, 0))
        await self.inner.bind((HOST, 0))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._forward_out)
            nursery.start_soon(self._forward_back)
            task_status.started(self.outer.getsockname())

    async def _forward_out(self) -> None:
        while True:
            data, self.client = await self.outer.recvfrom(65536)
            if not self.cut:
                await self.inner.sendto(data, self.target)

    async def _forward_back(self) -> None:
        while True:
            data, _ = await self.inner.recvfrom(65536)
            if not self.cut and self.client is not None:
                await self.outer.sendto(data, self.client)


async def test_a_silent_carrier_mid_transfer_ends_at_quic_idle_timeout_with_the_reason() -> None:
    """The path between the carriers goes silent mid-transfer (no CONNECTION_CLOSE ever arrives):
    each side's carrier ends at QUIC's idle timeout (1.5 s here), and the channels raise
    ChannelBroken naming it, well before the session's own idle timeout."""
    with trio.fail_after(20):
        async with quic_nodes(idle_timeout=1.5) as (a, b, ta, tb, losses), trio.open_nursery() as nursery:
            proxy = Cuttable(tb.local_address)
            via = await nursery.start(proxy.run)
            ta.expect(via, BOB.identity.peer_id)
            s, r = await stream_pair(a, b, via)
            await s.send_all(payload(200_000, b"x"))
            while len(await r.receive_some()) == 0:
                pass
            proxy.cut = True
            cut = trio.current_time()
            for side in (s, r):
                with pytest.raises(ChannelBroken) as info:
                    while True:
                        await side.send_all(b"y" * 10_000)
                assert "carrier lost" in str(info.value) and "QUIC idle timeout" in str(info.value), info.value
            assert 1.0 < trio.current_time() - cut < 8
            assert ta.carrier(via) is None and tb.peers == {}
            assert len(losses) == 2
            nursery.cancel_scope.cancel()


async def test_a_wrong_peer_at_the_address_fails_the_connect_at_once() -> None:
    """The listener is Bob but Carol is expected there: the dial fails (PeerMismatch), the connect
    raises ConnectFailed naming it, long before the handshake timeout."""
    with trio.fail_after(10):
        async with quic_nodes() as (a, _b, ta, tb, losses):
            ta.expect(tb.local_address, CAROL.identity.peer_id)
            started = trio.current_time()
            with pytest.raises(ConnectFailed) as info:
                await a.connect(CAROL.identity.peer_id, tb.local_address, "svc")
            assert trio.current_time() - started < 5
            assert "carrier lost" in str(info.value) and "dial" in str(info.value)
            assert [loss.address for loss in losses] == [tb.local_address]


async def test_an_address_without_an_expected_peer_is_a_clear_error() -> None:
    async with quic_nodes() as (a, _b, ta, _tb, losses):
        with pytest.raises(ValueError, match="expect"):
            await a.connect(BOB.identity.peer_id, (HOST, 9), "svc")
        with pytest.raises(ValueError, match="IPv6"):
            ta.expect(("::1", 9), BOB.identity.peer_id)
        with pytest.raises(ValueError, match="not an IP address"):
            ta.expect(("bob.example", 9), BOB.identity.peer_id)
        assert ta.send_batch_now([b"x"], (HOST, 9)) == 1  # no carrier and none expected: a counted loss
        assert ta.send_errors == 1 and losses == []


async def test_garbage_does_not_hurt_the_transport_or_the_node() -> None:
    """Garbage UDP at the listener, and garbage records through a real authenticated carrier, are
    dropped; the nodes then move data as before."""
    with trio.fail_after(20):
        async with quic_nodes() as (a, b, _ta, tb, losses):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
                for size in (0, 1, 40, 1200, 1500):
                    raw.sendto(bytes([0xC3]) * size, tb.local_address)
            async with quic.dial(
                HOST, tb.local_address[1], expected_peer_id=BOB.identity.peer_id, identity=CAROL.identity
            ) as carrier:
                await carrier.send_records([b"\x00", b"\xff" * 100, b"\x07\xff\xff\xff\xff" + payload(16_000, b"junk")])
                s, r = await stream_pair(a, b, tb.local_address)
                await two_way_transfer(s, r, 200_000)
            assert tb.listener.drops  # the raw garbage was counted, not raised
            assert b.endpoint.drops["unknown_session"] >= 1  # the junk records reached Bob's endpoint
            assert [loss for loss in losses if loss.address == tb.local_address] == []
