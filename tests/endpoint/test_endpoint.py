"""Endpoint (spec/session.md §4): routing, INIT replay cache, roaming, cleanup."""

from __future__ import annotations

from collections.abc import Hashable

import pytest
from helpers import EndpointNet, SeededRandom, closed, completed, flat, make_keys, of_type, ptype

from p2pos.proto import (
    Endpoint,
    ErrorCode,
    HandshakeCompleted,
    LocalProtocolError,
    MessageReceived,
    SessionClosed,
    SessionConfig,
    SessionState,
)
from p2pos.proto.session.wire import PacketType

ALICE, BOB, CAROL = make_keys("alice"), make_keys("bob"), make_keys("carol")


def two_endpoints() -> tuple[EndpointNet, Endpoint, Endpoint]:
    net = EndpointNet()
    return net, net.add("A", ALICE), net.add("B", BOB)


def sent_by(net: EndpointNet, source: Hashable, kind: PacketType) -> list[bytes]:
    return [data for src, _, data in net.log if src == source and ptype(data) is kind]


@pytest.mark.parametrize("ik", [False, True], ids=["XX", "IK"])
def test_connect_and_exchange(ik: bool) -> None:
    net, a, b = two_endpoints()
    session = a.connect("B", net.now, remote_static=BOB.static_public if ik else None)
    assert a.sessions() == [session]
    assert a.session(session.local_index) is session
    assert a.address_of(session.local_index) == "B"
    net.flush()
    done_a, done_b = completed(net.events["A"]), completed(net.events["B"])
    assert done_a.session_id == session.local_index
    (responder,) = b.sessions()
    assert done_b.session_id == responder.local_index
    assert b.address_of(responder.local_index) == "A"
    assert done_a.peer_id == BOB.identity.peer_id and done_b.peer_id == ALICE.identity.peer_id
    assert done_a.sas == done_b.sas
    to_bob = session.send(b"hi bob", net.now)
    to_alice = responder.send(b"hi alice", net.now)
    net.flush()
    assert of_type(net.events["B"], MessageReceived) == [
        MessageReceived(session_id=responder.local_index, data=b"hi bob", packet_number=to_bob)
    ]
    assert of_type(net.events["A"], MessageReceived) == [
        MessageReceived(session_id=session.local_index, data=b"hi alice", packet_number=to_alice)
    ]


def test_routing_among_concurrent_sessions() -> None:
    net = EndpointNet()
    a, b, c = net.add("A", ALICE), net.add("B", BOB), net.add("C", CAROL)
    outgoing = [a.connect("B", net.now) for _ in range(3)] + [c.connect("B", net.now, remote_static=BOB.static_public)]
    outgoing.append(a.connect("C", net.now))
    net.flush()
    assert len(b.sessions()) == 4
    assert len(c.sessions()) == 2
    assert all(s.is_established for ep in (a, b, c) for s in ep.sessions())
    assert len({s.local_index for s in b.sessions()}) == 4
    for i, session in enumerate(outgoing):
        session.send(b"message %d" % i, net.now)
    net.flush()
    # Every message reached the session whose peer sent it, once.
    by_session = {e.session_id: e.data for e in of_type(net.events["B"], MessageReceived)}
    assert len(by_session) == 4
    peers = {s.local_index: s.peer_id for s in b.sessions()}
    assert sorted(by_session.values()) == [b"message %d" % i for i in range(4)]
    assert peers[next(k for k, v in by_session.items() if v == b"message 3")] == CAROL.identity.peer_id
    for index, data in by_session.items():
        if data != b"message 3":
            assert peers[index] == ALICE.identity.peer_id
    # Replies go back through the right session and address.
    for session in b.sessions():
        session.send(b"reply to %d" % session.local_index, net.now)
    net.flush()
    replies_a = of_type(net.events["A"], MessageReceived)
    replies_c = [e for e in of_type(net.events["C"], MessageReceived) if e.data.startswith(b"reply")]
    assert len(replies_a) == 3 and len(replies_c) == 1
    a_ids = {s.local_index for s in a.sessions()}
    assert {e.session_id for e in replies_a} == a_ids & {s.local_index for s in outgoing[:3]}
    assert replies_c[0].session_id == outgoing[3].local_index
    assert b.drops == {} and a.drops == {}


def test_replayed_init_creates_nothing() -> None:
    net, a, b = two_endpoints()
    a.connect("B", net.now)
    net.flush()
    (init,) = sent_by(net, "A", PacketType.INIT)
    (responder,) = b.sessions()
    net.now = 50.0
    for source in ("A", "mallory"):
        b.receive_data(init, source, net.now)
    assert b.sessions() == [responder]
    assert flat(b.data_to_send(net.now)) == []
    assert responder.stats() == {"unexpected_handshake": 2}
    assert b.address_of(responder.local_index) == "A"
    assert len(of_type(net.events["B"], HandshakeCompleted)) == 1


def test_replayed_init_after_close_creates_nothing() -> None:
    net, a, b = two_endpoints()
    session = a.connect("B", net.now)
    net.flush()
    (init,) = sent_by(net, "A", PacketType.INIT)
    session.close(net.now)
    net.flush()
    assert a.sessions() == [] and b.sessions() == []
    b.receive_data(init, "mallory", 60.0)
    assert b.sessions() == []
    assert b.drops == {"replayed_init": 1}
    assert flat(b.data_to_send(60.0)) == []


def test_replay_within_handshake_gets_cached_response() -> None:
    net, a, b = two_endpoints()
    a.connect("B", net.now)
    ((_, _, init),) = net.outgoing()
    b.receive_data(init, "A", net.now)
    ((response, dest),) = flat(b.data_to_send(net.now))
    assert dest == "A" and ptype(response) is PacketType.RESPONSE
    for source in ("A", "A", "mallory"):
        b.receive_data(init, source, net.now)
        # The cached RESPONSE goes to the address the INIT first came from, never to the replayer.
        assert flat(b.data_to_send(net.now)) == [(response, "A")]
    assert len(b.sessions()) == 1
    assert b.address_of(b.sessions()[0].local_index) == "A"
    a.receive_data(response, "B", net.now)
    net.flush()
    completed(net.events["A"])
    completed(net.events["B"])


def test_init_with_same_ephemeral_but_other_bytes_is_a_separate_handshake() -> None:
    # The replay cache is keyed on the whole INIT (spec/session.md §4): a variant with
    # the same ephemeral is not a replay.  It gets its own responder session, whose
    # RESPONSE goes to the sender of the variant, and which can never complete (the
    # sender lacks the ephemeral private key): the genuine handshake is unaffected.
    net, a, b = two_endpoints()
    session = a.connect("B", net.now)
    ((_, _, init),) = net.outgoing()
    b.receive_data(init, "A", net.now)
    ((response, _),) = flat(b.data_to_send(net.now))
    forged = init + b"\x00\x09\x00\x00"  # an extra (unknown, non-critical) payload field
    b.receive_data(forged, "mallory", net.now)
    ((shadow, dest),) = flat(b.data_to_send(net.now))
    assert dest == "mallory" and ptype(shadow) is PacketType.RESPONSE and shadow != response
    assert len(b.sessions()) == 2
    # The shadow RESPONSE, passed on to the initiator, fails Noise (its transcript differs).
    a.receive_data(shadow, "B", net.now)
    assert session.state is SessionState.AWAIT_RESPONSE
    assert session.stats() == {"handshake_auth": 1}
    a.receive_data(response, "B", net.now)
    net.flush()
    assert completed(net.events["A"]).peer_id == BOB.identity.peer_id
    assert completed(net.events["B"]).peer_id == ALICE.identity.peer_id
    # The shadow session times out without a word to the application.
    while net.next_timer() is not None and net.now < 20.0:
        net.jump()
        net.outgoing()
    assert len(b.sessions()) == 1 and b.sessions()[0].is_established
    assert of_type(net.events["B"], SessionClosed) == []


def test_replay_cache_expires() -> None:
    net = EndpointNet()
    a, b = net.add("A", ALICE), Endpoint(BOB, random=SeededRandom("B"), replay_cache_ttl=30.0)
    net.endpoints["B"], net.events["B"] = b, []
    a.connect("B", net.now)
    net.flush()
    assert b.get_timer() == 30.0  # the cache entry, before the session lifetime
    b.handle_timer(30.0)
    assert b.get_timer() == SessionConfig().session_lifetime
    assert len(b.sessions()) == 1


def test_roaming_follows_authenticated_packets_only() -> None:
    net, a, b = two_endpoints()
    session = a.connect("B", net.now)
    net.flush()
    (responder,) = b.sessions()
    # Bob's NAT rebinds: his packets now come from "B2".
    net.source_of["B"] = "B2"
    net.alias["B2"] = "B"
    garbage = bytes([PacketType.DATA]) + session.local_index.to_bytes(4, "big") + b"\x00" + (12345).to_bytes(8, "big")
    garbage += bytes(30)
    a.receive_data(garbage, "evil", net.now)
    assert a.address_of(session.local_index) == "B"
    responder.send(b"from my new address", net.now)
    net.flush()
    assert a.address_of(session.local_index) == "B2"
    assert of_type(net.events["A"], MessageReceived)[-1].data == b"from my new address"
    # Replies now go to the new address.
    session.send(b"reply", net.now)
    ((_, dest, _),) = net.outgoing()
    assert dest == "B2"
    # An attacker replaying Bob's authenticated record from elsewhere does not move the session.
    (record,) = [d for src, _, d in net.log if src == "B2" and ptype(d) is PacketType.DATA]
    a.receive_data(record, "evil", net.now)
    a.receive_data(garbage, "evil", net.now)
    assert a.address_of(session.local_index) == "B2"
    assert session.stats() == {"record_replay": 1, "record_auth": 2}


def test_handshake_packets_from_a_new_address_roam() -> None:
    net, a, b = two_endpoints()
    session = a.connect("B", net.now)
    ((_, _, init),) = net.outgoing()
    b.receive_data(init, "A", net.now)
    ((response, _),) = flat(b.data_to_send(net.now))
    a.receive_data(response, "B-other", net.now)
    assert session.is_established
    assert a.address_of(session.local_index) == "B-other"


def test_closed_sessions_are_removed() -> None:
    net, a, b = two_endpoints()
    session = a.connect("B", net.now)
    net.flush()
    (responder,) = b.sessions()
    responder.close(net.now, ErrorCode.APPLICATION_CLOSE, "done")
    assert b.sessions() == [responder]  # until its CLOSE record is sent
    net.flush()
    assert a.sessions() == [] and b.sessions() == []
    assert a.session(session.local_index) is None and a.address_of(session.local_index) is None
    event = closed(net.events["A"])
    assert (event.session_id, event.code, event.by_peer, event.reason) == (
        session.local_index,
        ErrorCode.APPLICATION_CLOSE,
        True,
        "done",
    )
    assert closed(net.events["B"]).session_id == responder.local_index
    assert session.state is SessionState.CLOSED


def test_timed_out_sessions_are_removed() -> None:
    net, a, b = two_endpoints()
    a.connect("B", net.now)
    ((_, _, init),) = net.outgoing()
    b.receive_data(init, "A", net.now)
    flat(b.data_to_send(net.now))  # the RESPONSE is lost, and so is everything after it
    while net.next_timer() is not None and net.now < 100.0:
        net.jump()
        net.outgoing()
    assert a.sessions() == [] and b.sessions() == []
    assert closed(net.events["A"]).code is ErrorCode.HANDSHAKE_TIMEOUT
    assert net.events["B"] == []


def test_session_lifetime_expiry_removes_sessions() -> None:
    net = EndpointNet()
    config = SessionConfig(session_lifetime=60.0)
    a, b = net.add("A", ALICE, config), net.add("B", BOB, config)
    a.connect("B", net.now)
    net.flush()
    assert net.jump() == 60.0
    net.flush()
    assert a.sessions() == [] and b.sessions() == []
    assert closed(net.events["A"]).code is closed(net.events["B"]).code is ErrorCode.SESSION_EXPIRED


def test_drops_counted() -> None:
    _, _, b = two_endpoints()
    b.receive_data(b"", "x", 0.0)
    b.receive_data(bytes([PacketType.DATA]) + b"\x00\x00\x00\x01" + bytes(40), "x", 0.0)
    b.receive_data(bytes([PacketType.RESPONSE, 0]), "x", 0.0)
    b.receive_data(bytes([PacketType.INIT, 0x01]) + b"\x00\x00\x00\x01" + bytes(10), "x", 0.0)
    b.receive_data(bytes([PacketType.INIT, 0x09]) + b"\x00\x00\x00\x01" + bytes(60), "x", 0.0)
    assert b.drops == {"empty": 1, "unknown_session": 2, "bad_init": 2}
    assert b.sessions() == [] and flat(b.data_to_send(0.0)) == []
    assert b.get_timer() is None


def test_session_limit() -> None:
    net = EndpointNet()
    a = net.add("A", ALICE)
    b = Endpoint(BOB, random=SeededRandom("B"), max_sessions=1)
    net.endpoints["B"], net.events["B"] = b, []
    a.connect("B", net.now)
    a.connect("B", net.now)
    net.flush()
    assert len(b.sessions()) == 1
    assert b.drops["too_many_sessions"] >= 1
    with pytest.raises(LocalProtocolError):
        b.connect("A", net.now)


World = tuple[
    list[object], dict[str, int], dict[str, int], list[tuple[tuple[bytes, ...], Hashable, Hashable]], float | None
]


def _run_world(batched: bool) -> World:
    """Bob's endpoint fed the same datagrams one by one or as runs per address (``receive_datagrams``)."""
    net = EndpointNet()
    a, b, c = net.add("A", ALICE), net.add("B", BOB), net.add("C", CAROL)
    s1, s2 = a.connect("B", net.now), a.connect("B", net.now)
    net.flush()
    for i in range(3):
        s1.send(b"one %d" % i, net.now)
    for i in range(2):
        s2.send(b"two %d" % i, net.now)
    c.connect("B", net.now)
    out = net.outgoing()
    from_a = [data for source, dest, data in out if source == "A" and dest == "B"]
    (init_c,) = [data for source, dest, data in out if source == "C"]
    one, two = from_a[:3], from_a[3:]
    assert len(one) == 3 and len(two) == 2
    stun = bytes([0x01, 0x01, 0x00, 0x00]) + bytes(16)  # a STUN success response: passed on
    unknown = bytes([one[0][0]]) + b"\xff\xff\xff\xff" + one[0][5:]  # a record for no session
    run = [*one[:2], stun, *two, one[2], unknown, one[2]]  # the last: a replay, dropped by the session
    net.now += 0.01
    if batched:
        b.receive_datagrams(run, "A", net.now)
        b.receive_datagrams([init_c], "C", net.now)
    else:
        for data in run:
            b.receive_data(data, "A", net.now)
        b.receive_data(init_c, "C", net.now)
    events: list[object] = []
    while (event := b.next_event()) is not None:
        events.append(event)
    sent = [(tuple(datagrams), address, local) for datagrams, address, local in b.data_to_send(net.now)]
    return events, dict(b.drops), dict(b.passed_on), sent, b.get_timer()


def test_a_run_of_datagrams_is_handled_as_the_same_datagrams_one_by_one() -> None:
    one_by_one, batched = _run_world(False), _run_world(True)
    events, drops, passed_on, sent, timer = batched
    assert batched == one_by_one
    assert len(of_type(events, MessageReceived)) == 5
    assert drops == {"unknown_session": 1} and sum(passed_on.values()) == 1
    assert sent and timer is not None  # Carol's RESPONSE, and the sessions' timers
