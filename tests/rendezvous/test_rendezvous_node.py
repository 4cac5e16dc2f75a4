"""The rendezvous node (p2pos_proto/rendezvous/node.py) with peers on an in-memory network."""

from __future__ import annotations

from typing import cast

from helpers import SeededRandom, make_keys

from p2pos.proto import Endpoint
from p2pos.proto.events import HandshakeCompleted, MessageReceived, SessionClosed
from p2pos.proto.nat import stun
from p2pos.proto.nat import stun_message as sm
from p2pos.proto.nat.profile import UNKNOWN_PROFILE, Allocation, Filtering, Mapping, NatProfile
from p2pos.proto.rendezvous import messages as m
from p2pos.proto.rendezvous.messages import Address
from p2pos.proto.rendezvous.node import STATELESS_RESET, NodeConfig, RendezvousNode, reset_token

NODE = ("198.18.0.1", 3478)
ALICE = ("198.18.5.5", 40001)
BOB = ("198.18.6.6", 40002)


class Net:
    """A node and peers (bare-session endpoints) on a perfect link; time moves only by hand."""

    def __init__(self, config: NodeConfig | None = None) -> None:
        self.now = 0.0
        self.node = RendezvousNode(make_keys("node"), config=config, random=SeededRandom("node"))
        self.peers: dict[Address, Endpoint] = {}
        self.inbox: dict[Address, list[object]] = {}
        self.raw: dict[Address, list[bytes]] = {}  # datagrams that are not p2pos sessions' business

    def add(self, addr: Address, name: str) -> Endpoint:
        self.peers[addr] = Endpoint(make_keys(name), random=SeededRandom(name))
        self.inbox[addr], self.raw[addr] = [], []
        return self.peers[addr]

    def flush(self) -> None:
        for _ in range(50):
            moved = False
            for datagrams, to, _ in self.node.datagrams_to_send(self.now):
                dest = cast(Address, to)
                for data in datagrams:
                    moved = True
                    if data[0] <= 3 or data[0] == STATELESS_RESET:
                        self.raw[dest].append(data)
                    else:
                        self.peers[dest].receive_data(data, NODE, self.now)
            for addr, ep in self.peers.items():
                for session in ep.sessions():
                    ep.updated(session.local_index)
                for datagrams, peer_dest, _ in ep.data_to_send(self.now):
                    assert peer_dest == NODE
                    for data in datagrams:
                        moved = True
                        self.node.receive_datagram(data, addr, self.now)
                while (event := ep.next_event()) is not None:
                    self.inbox[addr].append(event)
            if not moved:
                return
        raise AssertionError("the network never went quiet")

    def connect(self, addr: Address) -> int:
        session = self.peers[addr].connect(NODE, self.now, expected_peer=make_keys("node").identity.peer_id)
        self.flush()
        assert any(isinstance(e, HandshakeCompleted) for e in self.inbox[addr])
        return session.local_index

    def send(self, addr: Address, sid: int, message: m.Message) -> list[m.Message]:
        """Send ``message`` from the peer at ``addr``; returns every rendezvous message it got since."""
        session = self.peers[addr].session(sid)
        assert session is not None
        session.send(m.encode(message), self.now)
        self.flush()
        return self.received(addr)

    def received(self, addr: Address) -> list[m.Message]:
        got = [m.decode_untrusted(e.data) for e in self.inbox[addr] if isinstance(e, MessageReceived)]
        self.inbox[addr] = [e for e in self.inbox[addr] if not isinstance(e, MessageReceived)]
        return [g for g in got if g is not None]

    def register(self, addr: Address, name: str, **kwargs: object) -> tuple[int, m.Registered]:
        self.add(addr, name)
        sid = self.connect(addr)
        (answer,) = self.send(addr, sid, m.Register(txid=1, lease=0, **kwargs))  # type: ignore[arg-type]
        assert isinstance(answer, m.Registered)
        return sid, answer


def pid(name: str) -> bytes:
    return make_keys(name).identity.peer_id.public_key


def test_register_tells_the_observed_address_and_a_reset_token() -> None:
    net = Net()
    _, registered = net.register(ALICE, "alice", candidates=(("10.0.0.5", 40001),))
    assert registered.observed == ALICE and registered.lease == 600 and len(registered.reset_token) == 16
    reg = net.node.registration(pid("alice"))
    assert reg is not None and reg.candidates == (("10.0.0.5", 40001),)


def test_lookup_and_introduction_reach_both_sides() -> None:
    net = Net()
    a, _ = net.register(ALICE, "alice", candidates=(("10.0.0.5", 40001),))
    net.register(BOB, "bob", candidates=(("10.0.0.6", 40002),))
    (found,) = net.send(ALICE, a, m.Lookup(txid=7, peer_id=pid("bob"), introduce=True))
    assert isinstance(found, m.Found) and found.punch is not None
    assert found == m.Found(
        txid=7, peer_id=pid("bob"), observed=BOB, candidates=(("10.0.0.6", 40002),), punch=found.punch
    )
    (intro,) = net.received(BOB)
    assert isinstance(intro, m.Introduction) and intro.punch is not None
    assert intro == m.Introduction(
        txid=7, peer_id=pid("alice"), observed=ALICE, candidates=(("10.0.0.5", 40001),), punch=intro.punch
    )
    # Neither side said anything of its NAT: unknown profiles, unknown round trips, one shared ticket.
    unknown = m.Traits(profile=UNKNOWN_PROFILE)
    assert found.punch.traits == intro.punch.traits == unknown
    assert found.punch.ticket == intro.punch.ticket and len(found.punch.ticket) == 16
    (missing,) = net.send(ALICE, a, m.Lookup(txid=8, peer_id=pid("carol"), introduce=True))
    assert missing == m.NotFound(txid=8, peer_id=pid("carol"))


def test_an_introduction_carries_each_sides_traits_to_the_other() -> None:
    """spec/rendezvous.md §3.5: the target's traits (from its REGISTER) in FOUND, the asker's (from
    its LOOKUP, else its REGISTER) in INTRODUCTION, a fresh ticket per introduction."""
    seq = NatProfile(
        mapping=Mapping.ADDRESS_AND_PORT_DEPENDENT,
        filtering=Filtering.ADDRESS_AND_PORT_DEPENDENT,
        allocation=Allocation.SEQUENTIAL,
        delta=2,
    )
    eim = NatProfile(mapping=Mapping.ENDPOINT_INDEPENDENT, filtering=Filtering.ADDRESS_DEPENDENT)
    net = Net()
    a, _ = net.register(ALICE, "alice", traits=m.Traits(profile=eim, rtt_ms=30))
    net.register(BOB, "bob", traits=m.Traits(profile=seq, rtt_ms=80))
    tickets = []
    for txid, traits in ((7, m.Traits(profile=eim, rtt_ms=25)), (8, None)):
        (found,) = net.send(ALICE, a, m.Lookup(txid=txid, peer_id=pid("bob"), introduce=True, traits=traits))
        (intro,) = net.received(BOB)
        assert isinstance(found, m.Found) and found.punch is not None
        assert isinstance(intro, m.Introduction) and intro.punch is not None
        assert found.punch.traits == m.Traits(profile=seq, rtt_ms=80)
        assert intro.punch.traits == (traits or m.Traits(profile=eim, rtt_ms=30))
        assert found.punch.ticket == intro.punch.ticket
        tickets.append(found.punch.ticket)
    assert tickets[0] != tickets[1]
    # Without an introduction there is nothing to punch: FOUND carries no punch.
    (plain,) = net.send(ALICE, a, m.Lookup(txid=9, peer_id=pid("bob"), introduce=False))
    assert isinstance(plain, m.Found) and plain.punch is None
    assert net.received(BOB) == []


def test_lookup_needs_a_registration_and_is_rate_limited() -> None:
    net = Net(NodeConfig(lookup_rate=1.0, lookup_burst=3))
    net.add(ALICE, "alice")
    sid = net.connect(ALICE)
    (err,) = net.send(ALICE, sid, m.Lookup(txid=1, peer_id=pid("bob"), introduce=False))
    assert isinstance(err, m.Error) and err.code == m.RendezvousError.NOT_REGISTERED
    net.send(ALICE, sid, m.Register(txid=2, lease=60))
    answers = [net.send(ALICE, sid, m.Lookup(txid=10 + i, peer_id=pid("bob"), introduce=False))[0] for i in range(5)]
    assert [type(a).__name__ for a in answers] == ["NotFound"] * 3 + ["Error"] * 2
    net.now += 1.0
    (again,) = net.send(ALICE, sid, m.Lookup(txid=20, peer_id=pid("bob"), introduce=False))
    assert isinstance(again, m.NotFound)


def test_lease_expiry_forgets_the_peer_and_closes_its_session() -> None:
    net = Net()
    net.register(ALICE, "alice")
    net.register(BOB, "bob")
    net.now = 599.0
    net.node.handle_timer(net.now)
    assert net.node.registration(pid("alice")) is not None
    net.now = 600.0
    net.node.handle_timer(net.now)
    net.flush()
    assert net.node.registration(pid("alice")) is None
    assert any(isinstance(e, SessionClosed) for e in net.inbox[ALICE])


def test_a_restarted_node_answers_a_stateless_reset_with_the_token() -> None:
    net = Net()
    sid, registered = net.register(ALICE, "alice")
    net.node = RendezvousNode(make_keys("node"), random=SeededRandom("node2"))  # state lost
    session = net.peers[ALICE].session(sid)
    assert session is not None
    session.send_keepalive(net.now)
    net.flush()
    (reset,) = net.raw[ALICE]
    assert reset[0] == STATELESS_RESET and reset[-16:] == registered.reset_token
    assert reset_token(b"other key" * 4, 1) != registered.reset_token


def test_stun_binding_request_gets_the_observed_address() -> None:
    """[RDV-5.1] [RDV-5.5] The observed address, then the instance the node drew at start (44 bytes)."""
    net = Net()
    net.add(ALICE, "alice")
    txid = bytes(range(12))
    net.node.receive_datagram(stun.binding_request(txid), ALICE, 0.0)
    net.flush()
    (response,) = net.raw[ALICE]
    assert len(response) == 44 and stun.mapped_address_untrusted(response, txid) == ALICE
    instance = sm.decode_untrusted(response).get(sm.P2POS_INSTANCE)
    assert instance is not None and instance == net.node.stun.instance and len(instance) == 8
    restarted = RendezvousNode(make_keys("node"), random=SeededRandom("restarted"))
    assert restarted.stun.instance is not None and restarted.stun.instance != instance


def test_a_node_with_an_alternate_address_answers_from_the_socket_change_request_names() -> None:
    """[NAT-3.1.2] [NAT-3.1.3] the answer goes to the source, from the socket CHANGE-REQUEST asks for."""
    server = stun.BindingServer(primary=NODE, alternate=("198.18.0.2", 3479))
    node = RendezvousNode(make_keys("node"), random=SeededRandom("node"), stun_server=server)
    txid = bytes(range(12))
    node.receive_datagram(stun.binding_request(txid, sm.CHANGE_IP | sm.CHANGE_PORT), ALICE, 0.0)
    ((response,), to, local) = node.datagrams_to_send(0.0)[0]
    assert to == ALICE and local == stun.socket_key(1, 1)
    assert stun.mapped_address_untrusted(response, txid) == ALICE
    # The three extra sockets carry STUN only: a p2pos INIT there is dropped, not handshaked.
    node.receive_datagram(b"\x04" + bytes(400), ALICE, 0.0, stun.socket_key(1, 0))
    assert node.datagrams_to_send(0.0) == [] and len(node.endpoint) == 0
    assert node.stats["stun_ignored"] == 1


def test_inits_are_rate_limited_per_source_address() -> None:
    net = Net(NodeConfig(register_rate=1.0, register_burst=2))
    for i in range(4):
        ep = Endpoint(make_keys(f"p{i}"), random=SeededRandom(i))
        ep.connect(NODE, 0.0, expected_peer=make_keys("node").identity.peer_id)
        for datagrams, _, _ in ep.data_to_send(0.0):
            for data in datagrams:
                net.node.receive_datagram(data, ("198.18.9.9", 1000 + i), 0.0)
    assert len(net.node.endpoint) == 2 and net.node.stats["init_rate_limited"] == 2


def test_no_reset_for_a_datagram_too_short_to_be_a_record() -> None:
    net = Net()
    net.add(ALICE, "alice")
    for length in (5, 21, 29):
        net.node.receive_datagram(bytes((0x07,)) + (0xDEADBEEF).to_bytes(4, "big") + bytes(length - 5), ALICE, 0.0)
    net.flush()
    assert net.raw[ALICE] == [] and net.node.stats["reset_too_small"] == 3
    net.node.receive_datagram(bytes((0x08,)) + (0xDEADBEEF).to_bytes(4, "big") + bytes(25), ALICE, 0.0)
    net.flush()
    (reset,) = net.raw[ALICE]
    assert len(reset) == 29 and reset[0] == STATELESS_RESET


def test_a_session_that_does_not_register_in_time_is_closed() -> None:
    net = Net()
    net.add(ALICE, "alice")
    net.connect(ALICE)
    net.now = 29.9
    net.node.handle_timer(net.now)
    net.flush()
    assert not any(isinstance(e, SessionClosed) for e in net.inbox[ALICE])
    net.now = 30.0
    net.node.handle_timer(net.now)
    net.flush()
    assert any(isinstance(e, SessionClosed) for e in net.inbox[ALICE])


def test_unregister_gives_the_session_register_timeout_to_register_again() -> None:
    net = Net()
    sid, _ = net.register(ALICE, "alice")
    net.now = 100.0
    (answer,) = net.send(ALICE, sid, m.Unregister(txid=5))
    assert answer == m.Unregistered(txid=5) and net.node.registration(pid("alice")) is None
    net.now = 129.0
    net.node.handle_timer(net.now)
    net.flush()
    assert not any(isinstance(e, SessionClosed) for e in net.inbox[ALICE])
    net.now = 130.0
    net.node.handle_timer(net.now)
    net.flush()
    assert any(isinstance(e, SessionClosed) for e in net.inbox[ALICE])


def test_registering_on_a_new_session_closes_the_old_one() -> None:
    net = Net()
    old, _ = net.register(ALICE, "alice")
    new = net.connect(ALICE)
    (answer,) = net.send(ALICE, new, m.Register(txid=2, lease=0))
    assert isinstance(answer, m.Registered)
    closed = [e for e in net.inbox[ALICE] if isinstance(e, SessionClosed)]
    assert [e.session_id for e in closed] == [old]
    reg = net.node.registration(pid("alice"))
    assert reg is not None and net.node.endpoint.session(reg.session_id) is not None
    assert len(net.node.endpoint) == 1
