"""Two p2pos endpoints run a real session through coturn, their datagrams carried by the TURN driver.

This shows the carrier end to end before the path layer lands: Alice's leg to coturn is TCP,
Bob's is UDP; each endpoint sees the other at its relayed address (SES-4.1.6), and the Noise
handshake, the encrypted records and the messages go through coturn's relays unchanged.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator

import pytest
import trio
from coturn_fixture import PASSWORD, USER, Coturn, start_coturn
from helpers import SeededRandom, make_keys

from p2pos.proto import Endpoint
from p2pos.proto.channels.connection import ChannelConfig, Connection
from p2pos.proto.events import (
    ChannelDataAvailable,
    ChannelEnded,
    ChannelRequested,
    ChannelWritable,
    HandshakeCompleted,
    MessageReceived,
)
from p2pos.proto.nat.turn_config import TurnCredentials, TurnTransport
from p2pos.transports.turn import TurnSocket, open_turn_socket

CREDENTIALS = TurnCredentials(username=USER, password=PASSWORD)
LOCAL = "turn"  # the endpoint's name for the virtual socket


@pytest.fixture(scope="module")
def coturn() -> Iterator[Coturn]:
    with start_coturn("long-term") as server:
        yield server


class Node:
    """An endpoint driven over one TURN allocation: reader, timer, and a flush after each input."""

    def __init__(self, name: str, turn: TurnSocket, *, channels: bool = False) -> None:
        config = ChannelConfig() if channels else (lambda address, local: None)
        self.endpoint = Endpoint(make_keys(name), channels=config, random=SeededRandom(name))
        self.turn = turn
        self.on_event: Callable[[object], None] = lambda event: None
        self.events: list[object] = []
        self.changed = trio.Event()
        self.sent = 0
        self.received: list[bytes] = []

    async def flush(self) -> None:
        now = trio.current_time()
        for session in self.endpoint.sessions():
            self.endpoint.updated(session.local_index)
        for datagrams, destination, local in self.endpoint.data_to_send(now):
            assert local == LOCAL and isinstance(destination, tuple)
            host, port = destination
            for datagram in datagrams:
                self.sent += 1
                await self.turn.send(datagram, (str(host), int(port)))
        while (event := self.endpoint.next_event()) is not None:
            self.events.append(event)
            self.on_event(event)
        self.changed.set()
        self.changed = trio.Event()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._timers)
            async for datagram, peer in self.turn:
                self.received.append(datagram)
                self.endpoint.receive_data(datagram, peer, trio.current_time(), local=LOCAL)
                await self.flush()

    async def _timers(self) -> None:
        while True:
            deadline = self.endpoint.get_timer()
            with trio.move_on_at(math.inf if deadline is None else deadline):
                await self.changed.wait()
                continue
            self.endpoint.handle_timer(trio.current_time())
            await self.flush()

    async def wait_for(self, kind: type, count: int = 1) -> list[object]:
        with trio.fail_after(10):
            while len(found := [e for e in self.events if isinstance(e, kind)]) < count:
                await self.changed.wait()
        return found


async def test_two_endpoints_talk_through_coturn(coturn: Coturn) -> None:
    """[TRN-6.4] handshake and messages both ways between two Endpoints whose only path is TURN (TCP leg + UDP leg)."""
    with trio.fail_after(30):
        async with (
            open_turn_socket(coturn.server(TurnTransport.TCP), CREDENTIALS) as turn_a,
            open_turn_socket(coturn.server(TurnTransport.UDP), CREDENTIALS) as turn_b,
            trio.open_nursery() as nursery,
        ):
            assert turn_a.relayed is not None and turn_b.relayed is not None
            # Each side learns the other's relayed address (from the rendezvous node, later) and lets it in.
            await turn_a.add_peer(turn_b.relayed)
            await turn_b.add_peer(turn_a.relayed)
            alice, bob = Node("alice", turn_a), Node("bob", turn_b)
            nursery.start_soon(alice.run)
            nursery.start_soon(bob.run)
            session = alice.endpoint.connect(
                turn_b.relayed, trio.current_time(), local=LOCAL, expected_peer=make_keys("bob").identity.peer_id,
                channels=False,
            )  # fmt: skip
            await alice.flush()
            await alice.wait_for(HandshakeCompleted)
            await bob.wait_for(HandshakeCompleted)
            (responder,) = bob.endpoint.sessions()
            assert bob.endpoint.address_of(responder.local_index) == turn_a.relayed
            for i in range(20):
                session.send(b"hello bob %d" % i, trio.current_time())
                await alice.flush()
            got = await bob.wait_for(MessageReceived, 20)
            assert [e.data for e in got if isinstance(e, MessageReceived)] == [b"hello bob %d" % i for i in range(20)]
            responder.send(b"hello alice", trio.current_time())
            await bob.flush()
            (back,) = await alice.wait_for(MessageReceived)
            assert isinstance(back, MessageReceived) and back.data == b"hello alice"
            # What coturn carried was ciphertext: no plaintext message inside any datagram received.
            assert len(bob.received) >= 21 and not any(b"hello bob" in d for d in bob.received)
            assert not any(b"hello alice" in d for d in alice.received)
            nursery.cancel_scope.cancel()


async def test_a_stream_crosses_coturn_intact(coturn: Coturn) -> None:
    """[TRN-3.1] [TRN-6.4] 1 MiB on a channel-layer stream, Alice over TLS to coturn, Bob over UDP: hash intact."""
    payload = b"".join(hashlib.sha256(b"turn stream %d" % i).digest() for i in range(32768))
    with trio.fail_after(60):
        async with (
            open_turn_socket(coturn.server(TurnTransport.TLS), CREDENTIALS, ssl_context=coturn.ssl_context()) as turn_a,
            open_turn_socket(coturn.server(TurnTransport.UDP), CREDENTIALS) as turn_b,
            trio.open_nursery() as nursery,
        ):
            assert turn_a.relayed is not None and turn_b.relayed is not None
            await turn_a.add_peer(turn_b.relayed)
            await turn_b.add_peer(turn_a.relayed)
            alice, bob = Node("alice", turn_a, channels=True), Node("bob", turn_b, channels=True)
            received = bytearray()
            ended = trio.Event()

            def bob_handles(event: object) -> None:
                now = trio.current_time()
                match event:
                    case ChannelRequested(session_id=sid, channel_id=cid, service="bulk"):
                        bob_connection(sid).accept_channel(cid, now)
                    case ChannelDataAvailable(session_id=sid, channel_id=cid):
                        received.extend(bob_connection(sid).read(cid))
                    case ChannelEnded(session_id=sid, channel_id=cid):
                        received.extend(bob_connection(sid).read(cid))
                        ended.set()

            def bob_connection(session_id: int) -> Connection:
                connection = bob.endpoint.connection(session_id)
                assert connection is not None
                return connection

            bob.on_event = bob_handles
            nursery.start_soon(alice.run)
            nursery.start_soon(bob.run)
            session = alice.endpoint.connect(
                turn_b.relayed, trio.current_time(), local=LOCAL, expected_peer=make_keys("bob").identity.peer_id
            )
            connection = alice.endpoint.connection(session.local_index)
            assert connection is not None
            channel = connection.open_channel("bulk", trio.current_time())
            offset = 0
            while offset < len(payload):
                taken = connection.send(channel, payload[offset : offset + 65536], trio.current_time())
                offset += taken
                await alice.flush()
                if not taken:
                    await alice.wait_for(
                        ChannelWritable, len([e for e in alice.events if isinstance(e, ChannelWritable)]) + 1
                    )
            connection.finish(channel, trio.current_time())
            await alice.flush()
            await ended.wait()
            assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest() and len(received) == len(
                payload
            )
            nursery.cancel_scope.cancel()
