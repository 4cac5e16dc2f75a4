"""The TURN client and its trio driver against a real coturn on loopback, long-term credentials (spec/turn.md).

One coturn for the module (coturn_fixture.py); UDP, TCP and TLS legs.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable, Iterator

import pytest
import trio
from coturn_fixture import HOST, PASSWORD, USER, Coturn, start_coturn

from p2pos.adapters.carriers.turn import TURN_DATAGRAM_CEILING
from p2pos.adapters.carriers.turn import TurnTransport as Carrier
from p2pos.proto.nat.turn import TurnClient, TurnConfig, TurnState
from p2pos.proto.nat.turn_config import TurnCredentials, TurnServer, TurnTransport, parse_turn_url
from p2pos.proto.nat.turn_events import TurnDataReceived, TurnReleased
from p2pos.transports import socket_options
from p2pos.transports.turn import TurnError, TurnSocket, open_turn_socket

GOOD = TurnCredentials(username=USER, password=PASSWORD)
TRANSPORTS = [TurnTransport.UDP, TurnTransport.TCP, TurnTransport.TLS]


@pytest.fixture(scope="module")
def coturn() -> Iterator[Coturn]:
    with start_coturn("long-term") as server:
        yield server


def _open(coturn: Coturn, transport: TurnTransport, credentials: TurnCredentials = GOOD, **kw: object):  # type: ignore[no-untyped-def]
    context = coturn.ssl_context() if transport is TurnTransport.TLS else None
    return open_turn_socket(coturn.server(transport), credentials, ssl_context=context, **kw)  # type: ignore[arg-type]


async def _expect(turn: TurnSocket, want: bytes, peer: tuple[str, int] | None) -> None:
    with trio.fail_after(5):
        data, source = await turn.receive()
    assert data == want
    if peer is not None:
        assert source == peer


@pytest.mark.parametrize("transport", TRANSPORTS, ids=lambda t: t.value)
async def test_allocation_over_each_transport(coturn: Coturn, transport: TurnTransport) -> None:
    """[TRN-5.1] [TRN-3.1] an allocation over UDP, TCP and TLS: a relayed UDP address in coturn's range."""
    with trio.fail_after(10):
        async with _open(coturn, transport) as turn:
            assert turn.relayed is not None and turn.relayed[0] == HOST
            assert coturn.min_port <= turn.relayed[1] <= coturn.max_port
            assert turn.mapped is not None and turn.mapped[0] == HOST
            assert turn.lifetime > 0


@pytest.mark.parametrize("transport", TRANSPORTS, ids=lambda t: t.value)
@pytest.mark.parametrize("channels", [True, False], ids=["channels", "indications"])
async def test_two_allocations_exchange_datagrams(coturn: Coturn, transport: TurnTransport, channels: bool) -> None:
    """[TRN-6.1] [TRN-6.2] A (over each transport) and B (UDP) send to each other's relayed address, both ways."""
    config = TurnConfig(use_channels=channels)
    with trio.fail_after(20):
        async with _open(coturn, transport, config=config) as a, _open(coturn, TurnTransport.UDP, config=config) as b:
            assert a.relayed is not None and b.relayed is not None
            await a.add_peer(b.relayed)
            await b.add_peer(a.relayed)
            for i in range(5):
                await a.send(b"a->b %d" % i, b.relayed)
                await _expect(b, b"a->b %d" % i, a.relayed)
                await b.send(b"b->a %d" % i, a.relayed)
                await _expect(a, b"b->a %d" % i, b.relayed)
            big = secrets.token_bytes(1200)
            await a.send(big, b.relayed)
            await _expect(b, big, a.relayed)
            if channels:
                assert a.client.channel_of(b.relayed) is not None and b.client.channel_of(a.relayed) is not None
            else:
                assert a.client.channel_of(b.relayed) is None


async def test_forced_refresh_returns_the_lifetime(coturn: Coturn) -> None:
    """[TRN-5.4] a Refresh asked for now returns the lifetime coturn granted (the one requested, 1200 s)."""
    with trio.fail_after(10):
        async with _open(coturn, TurnTransport.UDP, config=TurnConfig(requested_lifetime=1200)) as turn:
            assert turn.lifetime == 1200
            assert await turn.refresh() == 1200
        async with _open(coturn, TurnTransport.TCP) as turn:
            assert await turn.refresh() == turn.lifetime > 0


async def test_release_stops_delivery(coturn: Coturn) -> None:
    """[TRN-5.5] after Refresh LIFETIME=0 coturn relays nothing more to the client's 5-tuple."""
    with trio.fail_after(20):
        async with _open(coturn, TurnTransport.UDP) as a:
            assert a.relayed is not None
            sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            await sock.connect((HOST, coturn.port))
            raw = TurnClient(GOOD, random=secrets.token_bytes)
            received: list[object] = []

            async def drive(done: Callable[[], bool]) -> None:
                while True:
                    for datagram in raw.datagrams_to_send(trio.current_time()):
                        await sock.send(datagram)
                    while (event := raw.next_event()) is not None:
                        received.append(event)
                    if done():
                        return
                    raw.receive(await sock.recv(65536), trio.current_time())

            raw.allocate(trio.current_time())
            await drive(lambda: raw.state is TurnState.ALLOCATED)
            assert raw.relayed is not None
            await a.add_peer(raw.relayed)
            raw.add_peer(a.relayed, trio.current_time())
            await drive(lambda: raw.has_permission(HOST))
            await a.send(b"before release", raw.relayed)
            await drive(lambda: any(isinstance(e, TurnDataReceived) for e in received))
            assert TurnDataReceived(peer=a.relayed, data=b"before release") in received
            raw.release(trio.current_time())
            await drive(lambda: raw.state is TurnState.RELEASED)
            assert received[-1] == TurnReleased(reason="released")
            # coturn frees the relay in its own event loop a moment after answering: wait until a
            # probe no longer comes through (5 s at most), then nothing more may arrive.
            with trio.fail_after(5):
                while True:
                    await a.send(b"probe", raw.relayed)
                    with trio.move_on_after(0.2) as quiet:
                        await sock.recv(65536)
                    if quiet.cancelled_caught:
                        break
            for i in range(5):
                await a.send(b"after release %d" % i, raw.relayed)
            with trio.move_on_after(1):
                leaked = await sock.recv(65536)
                pytest.fail(f"coturn still relayed to a released allocation: {leaked!r}")
            sock.close()


@pytest.mark.parametrize("transport", [TurnTransport.UDP, TurnTransport.TCP], ids=lambda t: t.value)
async def test_wrong_credentials_are_refused_clearly(coturn: Coturn, transport: TurnTransport) -> None:
    """[TRN-5.2] a wrong password, or an unknown user, gives TurnError naming the refusal (401)."""
    for bad in (
        TurnCredentials(username=USER, password="wrong"),
        TurnCredentials(username="mallory", password=PASSWORD),
    ):
        with trio.fail_after(10), pytest.raises(TurnError, match=r"refused the credentials.*401"):
            async with _open(coturn, transport, bad):
                pass


async def test_unreachable_server_gives_a_clear_error(coturn: Coturn) -> None:
    """[TRN-5.6] nothing listening: TCP fails at connect, UDP on the ICMP error (or after the retransmissions)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        closed = s.getsockname()[1]
    with trio.fail_after(10):
        with pytest.raises(TurnError, match="cannot connect"):
            async with open_turn_socket(TurnServer(host=HOST, port=closed, transport=TurnTransport.TCP), GOOD):
                pass
        with pytest.raises(TurnError, match=r"unreachable|no answer"):
            async with open_turn_socket(TurnServer(host=HOST, port=closed, transport=TurnTransport.UDP), GOOD):
                pass
    quick = TurnConfig(rto=0.05, rc=3, rm=2)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never answers: no ICMP
        silent.bind((HOST, 0))
        server = TurnServer(host=HOST, port=silent.getsockname()[1], transport=TurnTransport.UDP)
        with (
            trio.fail_after(5),
            pytest.raises(TurnError, match="no answer from the TURN server to ALLOCATE \\(3 sent\\)"),
        ):
            async with open_turn_socket(server, GOOD, config=quick):
                pass


async def test_tls_checks_the_certificate(coturn: Coturn) -> None:
    """[TRN-4.2] turns: verifies the server certificate: an untrusted one is a clear connect error."""
    server = parse_turn_url(f"turns:{HOST}:{coturn.tls_port}")
    with trio.fail_after(10), pytest.raises(TurnError, match=r"cannot connect.*CERTIFICATE_VERIFY_FAILED"):
        async with open_turn_socket(server, GOOD):
            pass
    async with open_turn_socket(server, GOOD, ssl_context=coturn.ssl_context()) as turn:
        assert turn.relayed is not None


async def test_the_largest_datagram_offered_crosses_coturn_both_ways(coturn: Coturn) -> None:
    """[TRN-6.5] [TRN-6.4] what a TURN carrier offers the session on loopback is the ceiling (not the
    64 KiB loopback MTU), and coturn relays a datagram of that size both ways, between an
    allocation (channels bound) and a plain UDP peer; one byte more does not reach the peer."""
    with trio.fail_after(20):
        async with _open(coturn, TurnTransport.UDP) as turn:
            assert turn.relayed is not None
            peer = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with peer:
                await peer.bind((HOST, 0))
                peer_address = peer.getsockname()
                assert Carrier(turn).max_udp_payload(peer_address) == TURN_DATAGRAM_CEILING
                await turn.add_peer(peer_address)
                while turn.client.channel_of(peer_address) is None:
                    await trio.sleep(0.01)
                big = secrets.token_bytes(TURN_DATAGRAM_CEILING)
                await turn.send(big, peer_address)
                data, source = await peer.recvfrom(65536)
                assert data == big and source == turn.relayed
                await peer.sendto(big, turn.relayed)
                await _expect(turn, big, peer_address)
                await turn.send(big + b"x", peer_address)  # coturn's buffer is full: dropped
                await turn.send(b"after", peer_address)
                data, _ = await peer.recvfrom(65536)
                assert data == b"after"


async def test_bursts_cross_coturn_in_batches_and_in_order(coturn: Coturn) -> None:
    """[TRN-6.1] [TRN-6.2] [TRN-8.1] ``send_many`` of 48 equal ChannelData messages leaves in a few GSO
    calls (not 48) and all reach a plain UDP peer in order; 48 datagrams the peer sends before we
    read (1000 bytes each) come back in order from ``receive_batch``, read several per wake-up."""
    with trio.fail_after(20):
        async with _open(coturn, TurnTransport.UDP) as turn:
            assert turn.relayed is not None
            peer = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with peer:
                await peer.bind((HOST, 0))
                socket_options.size_buffers(peer)  # type: ignore[arg-type]  # (a trio socket has setsockopt)
                peer_address = peer.getsockname()
                await turn.add_peer(peer_address)
                while turn.client.channel_of(peer_address) is None:
                    await trio.sleep(0.01)
                burst = [i.to_bytes(2, "big") + secrets.token_bytes(3998) for i in range(48)]
                calls, sent = turn.send_calls, turn.messages_sent
                await turn.send_many(burst, peer_address)
                assert turn.messages_sent - sent == 48
                assert turn.send_calls - calls <= (48 if not turn._gso else 4)  # 16 x 4004 bytes per GSO call
                assert [await peer.recv(65536) for _ in burst] == burst
                calls, read = turn.read_calls, turn.messages_read
                # 48 KB back: coturn's relay socket holds 64 KiB (UR_CLIENT_SOCK_BUF_SIZE), a larger burst
                # can overflow it while coturn waits for a CPU.
                back = [data[:1000] for data in burst]
                for data in back:
                    await peer.sendto(data, turn.relayed)
                await trio.sleep(0.2)  # all of them wait in the leg's socket before the reader wakes
                got: list[bytes] = []
                while len(got) < len(back):
                    got += [data for data, source in await turn.receive_batch() if source == peer_address]
                assert got == back
                assert turn.messages_read - read == 48 and turn.read_calls - calls < 48


async def test_send_now_writes_channel_data_straight_to_the_leg(coturn: Coturn) -> None:
    """[TRN-6.6] [TRN-8.2] ``send_now``: nothing before the channel is bound (0 taken); then 48 datagrams go
    at once as ChannelData, in a few GSO calls, and reach a plain UDP peer intact and in order;
    mixed with ``send_many`` the order is kept."""
    with trio.fail_after(20):
        async with _open(coturn, TurnTransport.UDP) as turn:
            peer = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with peer:
                await peer.bind((HOST, 0))
                socket_options.size_buffers(peer)  # type: ignore[arg-type]  # (a trio socket has setsockopt)
                peer_address = peer.getsockname()
                assert turn.send_now([b"too early"], peer_address) == 0  # no permission, no channel
                await turn.add_peer(peer_address)
                while turn.client.channel_for(peer_address, trio.current_time()) is None or turn._flushing:
                    await trio.sleep(0.01)
                burst = [i.to_bytes(2, "big") + secrets.token_bytes(16378 if i % 5 else 999) for i in range(48)]
                calls, sent = turn.send_calls, turn.messages_sent
                assert turn.send_now(burst, peer_address) == 48
                assert turn.messages_sent - sent == 48
                assert turn.send_calls - calls <= (48 if not turn._gso else 30)
                assert [await peer.recv(65536) for _ in burst] == burst
                await turn.send_many(burst[:3], peer_address)
                assert turn.send_now(burst[3:6], peer_address) == 3
                await turn.send_many(burst[6:9], peer_address)
                assert [await peer.recv(65536) for _ in range(9)] == burst[:9]
