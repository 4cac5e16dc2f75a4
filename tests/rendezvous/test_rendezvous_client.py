"""The rendezvous client (p2pos_proto/rendezvous/client.py) against the node, in memory."""

from __future__ import annotations

from typing import cast

from helpers import SeededRandom, make_keys

from p2pos.proto import Endpoint
from p2pos.proto.nat.keepalive import BindingKeeper, NodeRestarted
from p2pos.proto.rendezvous.client import (
    ClientState,
    IntroductionReceived,
    LookupAnswered,
    RegistrationChanged,
    RendezvousClient,
)
from p2pos.proto.rendezvous.messages import Address
from p2pos.proto.rendezvous.node import STATELESS_RESET, RendezvousNode

NODE = ("198.18.0.1", 3478)
ALICE = ("198.18.5.5", 40001)
BOB = ("198.18.6.6", 40002)
NODE_ID = make_keys("node").identity.peer_id


def pid(name: str) -> bytes:
    return make_keys(name).identity.peer_id.public_key


class World:
    """A node and peers with clients; ``run_until`` moves time from timer to timer."""

    def __init__(self) -> None:
        self.now = 0.0
        self.node = RendezvousNode(make_keys("node"), random=SeededRandom("node"))
        self.node_up = True
        self.endpoints: dict[Address, Endpoint] = {}
        self.clients: dict[Address, RendezvousClient] = {}
        self.events: dict[Address, list[object]] = {}
        #: ALICE's STUN keepalives to the node (nat.md NAT-5.5.2), if any; on NodeRestarted she
        #: registers again at once, as the daemon does (RDV-7.8).
        self.keeper: BindingKeeper | None = None
        self.restarts: list[float] = []

    def add(self, addr: Address, name: str) -> RendezvousClient:
        ep = Endpoint(make_keys(name), random=SeededRandom(name))
        self.endpoints[addr] = ep
        self.clients[addr] = RendezvousClient(ep, NODE_ID, NODE, candidates=((f"10.0.0.{len(self.clients) + 1}", 1),))
        self.events[addr] = []
        return self.clients[addr]

    def step(self) -> bool:
        moved = False
        for datagrams, to, _ in self.node.datagrams_to_send(self.now):
            dest = cast(Address, to)
            for data in datagrams:
                moved = True
                if self.keeper is not None and dest == ALICE and data[0] <= 3:
                    assert self.keeper.receive_datagram(data, NODE, self.now)
                    while (kevent := self.keeper.next_event()) is not None:
                        if isinstance(kevent, NodeRestarted):
                            self.restarts.append(self.now)
                            self.clients[ALICE].reregister(self.now)
                elif data[0] == STATELESS_RESET:
                    self.clients[dest].receive_reset_untrusted(data, NODE, self.now)
                else:
                    self.endpoints[dest].receive_data(data, NODE, self.now)
        if self.keeper is not None:
            for data, _, _ in self.keeper.datagrams_to_send(self.now):
                moved = True
                if self.node_up:
                    self.node.receive_datagram(data, ALICE, self.now)
        for addr, ep in self.endpoints.items():
            client = self.clients[addr]
            while (event := ep.next_event()) is not None:
                if client.owns(getattr(event, "session_id", -1)):
                    client.handle_event(event, self.now)
            while (cevent := client.next_event()) is not None:
                self.events[addr].append(cevent)
            for datagrams, _, _ in ep.data_to_send(self.now):
                for data in datagrams:
                    moved = True
                    if self.node_up:
                        self.node.receive_datagram(data, addr, self.now)
        return moved

    def run_until(self, end: float) -> None:
        while True:
            while self.step():
                pass
            timers = [t for c in self.clients.values() if (t := c.get_timer()) is not None]
            timers += [t for ep in self.endpoints.values() if (t := ep.get_timer()) is not None]
            if (t := self.node.get_timer()) is not None:
                timers.append(t)
            if self.keeper is not None and (t := self.keeper.get_timer()) is not None:
                timers.append(t)
            nxt = min(timers, default=end)
            if nxt > end:
                self.now = end
                return
            self.now = max(self.now, nxt)
            for c in self.clients.values():
                c.handle_timer(self.now)
            for ep in self.endpoints.values():
                ep.handle_timer(self.now)
            self.node.handle_timer(self.now)
            if self.keeper is not None:
                self.keeper.handle_timer(self.now)


def test_register_lookup_and_introduction() -> None:
    w = World()
    alice, bob = w.add(ALICE, "alice"), w.add(BOB, "bob")
    w.run_until(1.0)
    assert alice.state is ClientState.REGISTERED and bob.state is ClientState.REGISTERED
    assert RegistrationChanged(node=NODE_ID, observed=ALICE) in w.events[ALICE]
    txid = alice.lookup(pid("bob"), w.now)
    w.run_until(2.0)
    answer = next(e for e in w.events[ALICE] if isinstance(e, LookupAnswered))
    assert answer.txid == txid and answer.observed == BOB and answer.candidates == (("10.0.0.2", 1),)
    intro = next(e for e in w.events[BOB] if isinstance(e, IntroductionReceived))
    assert intro.peer_id == pid("alice") and intro.observed == ALICE


def test_renews_at_half_the_lease_and_keeps_the_binding_alive() -> None:
    w = World()
    alice = w.add(ALICE, "alice")
    w.run_until(1.0)
    first = w.node.registration(pid("alice"))
    assert first is not None and 600.0 <= first.expires <= 601.0
    expires = first.expires
    w.run_until(3000.0)
    reg = w.node.registration(pid("alice"))
    assert alice.state is ClientState.REGISTERED and reg is not None and reg.expires > expires + 2000


def test_a_restarted_node_is_registered_with_again_at_the_next_packet() -> None:
    w = World()
    alice = w.add(ALICE, "alice")
    w.run_until(1.0)
    w.node = RendezvousNode(make_keys("node"), random=SeededRandom("restarted"))
    assert w.node.registration(pid("alice")) is None
    w.run_until(27.0)  # the keepalive at 25 s draws a stateless reset; the client registers again
    assert alice.state is ClientState.REGISTERED and w.node.registration(pid("alice")) is not None
    lost = [e for e in w.events[ALICE] if isinstance(e, RegistrationChanged) and e.observed is None]
    assert len(lost) == 1 and "stateless reset" in lost[0].why


def test_a_restarted_node_is_noticed_at_the_next_stun_keepalive() -> None:
    """[RDV-5.5] [RDV-7.8] With STUN keepalives instead of KEEPALIVE records (RDV-7.3), the node's
    new instance in the next answer makes the client register again at once: within one keepalive
    interval of the restart, not at the renewal (lease / 2 = 300 s)."""
    w = World()
    alice = w.add(ALICE, "alice")
    w.run_until(1.0)
    alice.set_keepalive_interval(None, w.now)
    w.keeper = BindingKeeper(NODE, 60.0, random=SeededRandom("keeper"), local=0)
    w.keeper.start(w.now)
    w.run_until(100.0)  # one keepalive answered at 61 s: the instance is known, nothing restarted
    assert w.keeper.instance == w.node.stun.instance and w.restarts == []
    w.node = RendezvousNode(make_keys("node"), random=SeededRandom("restarted"))
    w.run_until(125.0)  # the keepalive at 121 s names the new instance
    assert w.restarts == [121.0]
    assert alice.state is ClientState.REGISTERED and w.node.registration(pid("alice")) is not None
    lost = [e for e in w.events[ALICE] if isinstance(e, RegistrationChanged) and e.observed is None]
    assert len(lost) == 1 and "stateless reset" in lost[0].why
    w.run_until(250.0)  # the same node answers on: nothing more
    assert w.restarts == [121.0]


def test_a_lookup_without_answer_fails_after_its_timeout() -> None:
    w = World()
    alice = w.add(ALICE, "alice")
    w.run_until(1.0)
    w.node_up = False
    txid = alice.lookup(pid("bob"), w.now)
    w.run_until(10.0)
    (answer,) = [e for e in w.events[ALICE] if isinstance(e, LookupAnswered)]
    assert answer.txid == txid and answer.observed is None and answer.why == "no answer"


def test_a_node_gone_for_long_is_reconnected_to_with_back_off_when_it_returns() -> None:
    w = World()
    alice = w.add(ALICE, "alice")
    w.run_until(1.0)
    w.node_up = False  # the network (or the node) goes away: nothing arrives, nothing answers
    w.run_until(400.0)
    assert not _registered(alice)
    lost = [e for e in w.events[ALICE] if isinstance(e, RegistrationChanged) and e.observed is None]
    assert len(lost) == 1  # said once, not at every failed attempt
    attempts = alice._reconnect_delay
    assert attempts > alice.config.reconnect_initial  # backing off, not hammering
    assert attempts <= alice.config.reconnect_max
    w.node = RendezvousNode(make_keys("node"), random=SeededRandom("back"))
    w.node_up = True
    w.run_until(400.0 + alice.config.reconnect_max + 30.0)  # the next attempt at the latest
    assert _registered(alice) and w.node.registration(pid("alice")) is not None
    last = w.events[ALICE][-1]
    assert isinstance(last, RegistrationChanged) and last.observed == ALICE


def _registered(client: RendezvousClient) -> bool:
    return client.state is ClientState.REGISTERED


def test_a_new_profile_is_sent_at_once_with_a_renewal() -> None:
    """spec/nat.md NAT-3.6.4: the node's copy of the traits follows the measured profile."""
    from p2pos.proto.nat.profile import Allocation, Filtering, Mapping, NatProfile

    w = World()
    alice = w.add(ALICE, "alice")
    w.run_until(1.0)
    reg = w.node.registration(pid("alice"))
    assert reg is not None and reg.traits is None  # nothing known yet
    measured = NatProfile(
        mapping=Mapping.ADDRESS_AND_PORT_DEPENDENT,
        filtering=Filtering.ADDRESS_AND_PORT_DEPENDENT,
        allocation=Allocation.RANDOM,
    )
    alice.set_profile(measured, w.now)
    w.run_until(2.0)  # long before the renewal at half the lease
    reg = w.node.registration(pid("alice"))
    assert reg is not None and reg.traits is not None and reg.traits.profile == measured
    assert alice.state is ClientState.REGISTERED
    alice.set_profile(measured, w.now)  # unchanged: no REGISTER
    assert not w.endpoints[ALICE].data_to_send(w.now)
    alice.set_profile(None, w.now)  # unknown again: the round trip stays, the profile is unknown
    w.run_until(3.0)
    reg = w.node.registration(pid("alice"))
    assert reg is not None and reg.traits is not None and reg.traits.profile == NatProfile()


def test_keepalive_records_stop_and_resume_when_set_from_outside() -> None:
    """spec/nat.md NAT-5.5.2: while the daemon keeps the binding with STUN keepalives the client
    sends no KEEPALIVE record (so a restarted node is noticed only at the renewal); they resume
    when the interval is given back."""
    w = World()
    alice = w.add(ALICE, "alice")
    w.run_until(1.0)
    alice.set_keepalive_interval(None, w.now)
    w.node = RendezvousNode(make_keys("node"), random=SeededRandom("restarted"))
    w.run_until(200.0)  # no record leaves: nothing draws the restarted node's reset
    assert alice.state is ClientState.REGISTERED and w.node.registration(pid("alice")) is None
    alice.set_keepalive_interval(25.0, w.now)
    w.run_until(226.0)  # the first record, at most 25 s later, draws the reset; registered again
    assert alice.state is ClientState.REGISTERED and w.node.registration(pid("alice")) is not None
    lost = [e for e in w.events[ALICE] if isinstance(e, RegistrationChanged) and e.observed is None]
    assert len(lost) == 1 and "stateless reset" in lost[0].why
