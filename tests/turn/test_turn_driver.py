"""The trio driver (transports/turn.py) on trio's MockClock, over an in-memory TCP-like leg to the fake server.

Timers jump (autojump), so refreshes due after minutes happen at once, at their exact times.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing
from fake_turn_server import RELAYED, FakeTurnServer

from p2pos.proto.nat import stun_message as sm
from p2pos.proto.nat.turn_config import TurnCredentials, TurnServer, TurnTransport
from p2pos.proto.nat.turn_framing import StreamDeframer
from p2pos.transports.turn import TurnError, open_turn_socket

ALICE = TurnCredentials(username="alice", password="secret")
SERVER = TurnServer(host="198.18.0.1", port=3478, transport=TurnTransport.TCP)
PEER = ("198.18.0.20", 40000)


async def serve(stream: trio.abc.Stream, server: FakeTurnServer, lock: trio.Lock) -> None:
    deframer = StreamDeframer()
    while data := await stream.receive_some(65536):
        for message in deframer.feed(data):
            for answer in server.handle(message, trio.current_time()):
                async with lock:
                    await stream.send_all(answer)


async def test_driver_keeps_the_allocation_up_and_releases_it(autojump_clock: trio.testing.MockClock) -> None:
    """[TRN-5.3] [TRN-5.4] [TRN-5.5] [TRN-6.2] timers fire on trio's clock; leaving the block releases."""
    client_leg, server_leg = trio.testing.memory_stream_pair()
    server = FakeTurnServer(users={"alice": "secret"}, stream=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve, server_leg, server, lock := trio.Lock())
        async with open_turn_socket(SERVER, ALICE, stream=client_leg) as turn:
            start = trio.current_time()
            assert turn.relayed == RELAYED and turn.lifetime == 600
            await turn.add_peer(PEER)
            incoming = server.from_peer(PEER, b"from the peer", trio.current_time())
            assert incoming is not None
            async with lock:
                await server_leg.send_all(incoming)
            with trio.fail_after(1):
                assert await turn.receive() == (b"from the peer", PEER)
            for _ in range(11):  # the peer is used every 100 s for 1100 s
                await turn.send(b"to the peer", PEER)
                await trio.sleep(100)
            refreshes = [t - start for t, m, _ in server.received if m == sm.REFRESH]
            permissions = [t - start for t, m, _ in server.received if m == sm.CREATE_PERMISSION]
            binds = [t - start for t, m, _ in server.received if m == sm.CHANNEL_BIND]
            assert refreshes == pytest.approx([540, 1080])
            # The rebinding at 540 s refreshes the permission too (RFC 8656 §12.1): 780, not 720.
            assert permissions == pytest.approx([0, 240, 480, 780, 1020])
            assert binds == pytest.approx([0, 540, 1080])
            assert len(server.to_peers) == 11 and all(kind == "channel" for _, _, kind in server.to_peers[1:])
        assert not server.allocated  # released with LIFETIME 0 on the way out
        assert [m for _, m, _ in server.received][-1] == sm.REFRESH
        nursery.cancel_scope.cancel()


async def test_server_closing_the_leg_is_a_clear_error(autojump_clock: trio.testing.MockClock) -> None:
    """[TRN-3.3] [TRN-5.5] the stream closing ends the allocation: receive() raises TurnError saying so."""
    client_leg, server_leg = trio.testing.memory_stream_pair()
    server = FakeTurnServer(users={"alice": "secret"}, stream=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve, server_leg, server, trio.Lock())
        async with open_turn_socket(SERVER, ALICE, stream=client_leg) as turn:
            nursery.cancel_scope.cancel()
            await server_leg.aclose()
            with trio.fail_after(1), pytest.raises(TurnError, match="closed the connection"):
                await turn.receive()
            with pytest.raises(TurnError, match="closed the connection"):
                await turn.send(b"x", PEER)


async def test_refused_credentials_over_a_given_stream(autojump_clock: trio.testing.MockClock) -> None:
    """[TRN-5.2] the driver raises TurnError from open_turn_socket when the server refuses the credentials."""
    client_leg, server_leg = trio.testing.memory_stream_pair()
    server = FakeTurnServer(users={"alice": "other"}, stream=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve, server_leg, server, trio.Lock())
        with pytest.raises(TurnError, match=r"refused the credentials \(401"):
            async with open_turn_socket(SERVER, ALICE, stream=client_leg):
                pass
        nursery.cancel_scope.cancel()
