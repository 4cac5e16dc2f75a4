"""An endpoint with the channel layer can still carry bare sessions (session.md §4): a daemon's
socket holds channel sessions to peers and a bare session to each rendezvous node."""

from __future__ import annotations

from collections.abc import Hashable

from helpers import SeededRandom, make_keys

from p2pos.proto import Endpoint
from p2pos.proto.channels.connection import ChannelConfig, Connection
from p2pos.proto.events import HandshakeCompleted, MessageReceived

A, B = ("10.0.0.1", 1), ("10.0.0.2", 2)


def pump(endpoints: dict[Hashable, Endpoint], now: float = 0.0) -> None:
    for _ in range(20):
        moved = False
        for addr, ep in endpoints.items():
            for datagrams, dest, _ in ep.data_to_send(now):
                for data in datagrams:
                    moved = True
                    endpoints[dest].receive_data(data, addr, now)
        if not moved:
            return


def test_connect_without_channels_gives_a_bare_session() -> None:
    a = Endpoint(make_keys("a"), channels=ChannelConfig(), random=SeededRandom("a"))
    b = Endpoint(make_keys("b"), channels=lambda address, local: None, random=SeededRandom("b"))
    session = a.connect(B, 0.0, expected_peer=make_keys("b").identity.peer_id, channels=False)
    pump({A: a, B: b})
    assert a.connection(session.local_index) is None and a.session(session.local_index) is session
    (responder,) = b.sessions()
    assert b.connection(responder.local_index) is None
    session.send(b"raw message", 0.0)
    a.updated(session.local_index)
    pump({A: a, B: b})
    events = []
    while (event := b.next_event()) is not None:
        events.append(event)
    assert any(isinstance(e, HandshakeCompleted) for e in events)
    assert [e.data for e in events if isinstance(e, MessageReceived)] == [b"raw message"]


def test_the_callable_chooses_per_address() -> None:
    a = Endpoint(make_keys("a"), channels=lambda address, local: None if address == B else ChannelConfig())
    bare = a.connect(B, 0.0)
    full = a.connect(("10.0.0.3", 3), 0.0)
    assert a.connection(bare.local_index) is None
    assert isinstance(a.connection(full.local_index), Connection)
