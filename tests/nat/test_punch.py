"""The puncher (p2pos_proto/nat/punch.py) between two small NAT models, in virtual time.

``MiniNat`` here is a deliberately small model (mapping, filtering, allocation) for the
puncher's own tests; the seeded emulator's NAT models (p2pos_proto/simulation) run the
strategies' statistics.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Hashable

import pytest
from test_punch_plan import EIM, RANDOM, SEQ  # the profiles the table's tests use

from p2pos.proto.nat import punch as pu
from p2pos.proto.nat import stun_message as sm
from p2pos.proto.nat.profile import Allocation, Filtering, Mapping, NatProfile
from p2pos.proto.nat.punch_plan import plan
from p2pos.proto.simulation.prng import Prng

Address = tuple[str, int]


class MiniNat:
    """One NAT: mapping by (inside) / (inside, dst ip) / (inside, dst); filtering on the mapping."""

    def __init__(self, public: str, profile: NatProfile, rng: Prng, *, first_port: int = 20000) -> None:
        self.public, self.profile, self.rng = public, profile, rng
        self.next_port = first_port
        self.by_key: dict[tuple[object, ...], int] = {}
        self.inside_of: dict[int, Address] = {}
        self.contacted: dict[int, set[Address]] = {}

    def _key(self, inside: Address, dst: Address) -> tuple[object, ...]:
        m = self.profile.mapping
        if m in (Mapping.NONE, Mapping.ENDPOINT_INDEPENDENT):
            return (inside,)
        if m is Mapping.ADDRESS_DEPENDENT:
            return (inside, dst[0])
        return (inside, dst)

    def outbound(self, inside: Address, dst: Address) -> Address:
        if self.profile.mapping is Mapping.NONE:
            port = inside[1]
            self.inside_of[port] = inside
        else:
            key = self._key(inside, dst)
            port = self.by_key.get(key, 0)
            if not port:
                port = self._allocate(inside)
                self.by_key[key] = port
                self.inside_of[port] = inside
        self.contacted.setdefault(port, set()).add(dst)
        return (self.public, port)

    def _allocate(self, inside: Address) -> int:
        alloc = self.profile.allocation
        if alloc is Allocation.PRESERVING and inside[1] not in self.inside_of:
            return inside[1]
        if alloc is Allocation.SEQUENTIAL:
            while True:
                self.next_port += self.profile.delta
                if self.next_port not in self.inside_of:
                    return self.next_port
        while True:
            port = self.rng.randint(1024, 65535)
            if port not in self.inside_of:
                return port

    def inbound(self, src: Address, port: int) -> Address | None:
        inside = self.inside_of.get(port)
        if inside is None:
            return None
        f = self.profile.filtering
        seen = self.contacted.get(port, set())
        if f in (Filtering.NONE, Filtering.ENDPOINT_INDEPENDENT):
            return inside
        if f is Filtering.ADDRESS_DEPENDENT:
            return inside if any(ip == src[0] for ip, _ in seen) else None
        return inside if src in seen else None


@dataclasses.dataclass
class Side:
    nat: MiniNat
    inside_ip: str
    puncher: pu.Puncher | None = None

    def socket_address(self, local: Hashable) -> Address:
        assert isinstance(local, int)
        return (self.inside_ip, 5000 + local)


def run_pair(
    a_profile: NatProfile,
    b_profile: NatProfile,
    seed: int,
    *,
    delay: float = 0.02,
    taken: tuple[int, int] = (0, 0),
) -> tuple[Side, Side]:
    """Two sides punching at the same moment (as a timed introduction starts them), ``delay`` each way."""
    rng = Prng(seed)
    sides = {
        "a": Side(MiniNat("198.18.1.2", a_profile, rng.derive(b"nat a")), "10.1.0.2"),
        "b": Side(MiniNat("198.18.2.2", b_profile, rng.derive(b"nat b")), "10.2.0.2"),
    }
    node = ("198.18.0.1", 3478)
    # Each side registered with the node: its observed address is the mapping towards the node.
    observed = {name: s.nat.outbound(s.socket_address(0), node) for name, s in sides.items()}
    for side, count in zip(sides.values(), taken, strict=True):  # other hosts' flows since the registration
        for i in range(count):
            side.nat.outbound(("10.0.0.9", 7000), ("198.18.9.9", 9 + i))
    ticket = rng.derive(b"ticket")(16)
    now = 0.0
    for name, side in sides.items():
        other = "b" if name == "a" else "a"
        mine, theirs = (a_profile, b_profile) if name == "a" else (b_profile, a_profile)
        p = plan(mine, theirs, leading=name == "a")
        side.puncher = pu.Puncher(
            p,
            main=0,
            extra=list(range(1, p.sockets + 1)),
            peer=observed[other],
            delta=theirs.delta,
            ticket=ticket,
            rtt=2 * delay,
            random=rng.derive(name.encode()),
            now=now,
        )
    wire: list[
        tuple[float, int, str, Address, Address, bytes]
    ] = []  # (at, order, to side, src public, dst public, data)
    order = 0
    while now < 20:
        for name, side in sides.items():
            assert side.puncher is not None
            for local, dst, data in side.puncher.datagrams_to_send(now):
                src = side.nat.outbound(side.socket_address(local), dst)
                to = "b" if dst[0] == sides["b"].nat.public else "a"
                heapq.heappush(wire, (now + delay, order, to, src, dst, data))
                order += 1
        timers = [t for s in sides.values() if s.puncher and (t := s.puncher.get_timer()) is not None]
        due = min([*timers, *([wire[0][0]] if wire else [])], default=None)
        if due is None:
            break
        now = max(now, due)
        while wire and wire[0][0] <= now:
            _, _, to, src, dst, data = heapq.heappop(wire)
            side = sides[to]
            inside = side.nat.inbound(src, dst[1])
            if inside is not None and side.puncher is not None:
                assert side.puncher.receive_datagram(inside[1] - 5000, src, data, now)
        for side in sides.values():
            assert side.puncher is not None
            side.puncher.handle_timer(now)
    return sides["a"], sides["b"]


def outcome(side: Side) -> pu.PunchEvent | None:
    assert side.puncher is not None
    return side.puncher.outcome


def test_simultaneous_open_between_two_endpoint_independent_nats() -> None:
    a, b = run_pair(EIM, EIM, seed=1)
    for side, other in ((a, b), (b, a)):
        result = outcome(side)
        assert isinstance(result, pu.PunchSucceeded)
        assert result.address[0] == other.nat.public
        assert side.puncher is not None and side.puncher.probes_sent <= 3


@pytest.mark.parametrize("seed", range(5))
def test_predicted_ports_reach_a_sequential_allocator(seed: int) -> None:
    a, b = run_pair(EIM, SEQ, seed=seed)
    assert isinstance(outcome(a), pu.PunchSucceeded)
    assert isinstance(outcome(b), pu.PunchSucceeded)
    total = sum(s.puncher.probes_sent for s in (a, b) if s.puncher is not None)
    assert total <= 100


def test_predicted_ports_skip_ports_taken_by_other_hosts() -> None:
    a, b = run_pair(SEQ, EIM, seed=3, taken=(5, 0))  # five other flows took a's next ports
    assert isinstance(outcome(a), pu.PunchSucceeded)
    assert isinstance(outcome(b), pu.PunchSucceeded)


@pytest.mark.parametrize("taken_a", range(10))
def test_both_sequential_find_their_matching_pair(taken_a: int) -> None:
    for taken_b in range(10):
        a, b = run_pair(SEQ, SEQ, seed=taken_a * 10 + taken_b, taken=(taken_a, taken_b))
        assert isinstance(outcome(a), pu.PunchSucceeded), (taken_a, taken_b)
        assert isinstance(outcome(b), pu.PunchSucceeded), (taken_a, taken_b)
        total = sum(s.puncher.probes_sent for s in (a, b) if s.puncher is not None)
        assert total <= 100


def test_both_sequential_with_a_larger_step() -> None:
    seq3 = NatProfile(
        mapping=Mapping.ADDRESS_AND_PORT_DEPENDENT,
        filtering=Filtering.ADDRESS_DEPENDENT,
        allocation=Allocation.SEQUENTIAL,
        delta=3,
    )
    a, b = run_pair(seq3, SEQ, seed=5, taken=(4, 7))
    assert isinstance(outcome(a), pu.PunchSucceeded)
    assert isinstance(outcome(b), pu.PunchSucceeded)


def test_birthday_between_a_random_and_an_endpoint_independent_nat() -> None:
    trials, wins, worst_random, worst_scan = 200, 0, 0, 0
    for seed in range(trials):
        a, b = run_pair(RANDOM, EIM, seed=seed)
        assert a.puncher is not None and b.puncher is not None
        worst_random = max(worst_random, a.puncher.probes_sent)
        worst_scan = max(worst_scan, b.puncher.probes_sent)
        if isinstance(outcome(a), pu.PunchSucceeded) and isinstance(outcome(b), pu.PunchSucceeded):
            wins += 1
        else:
            assert isinstance(outcome(a), pu.PunchFailed)
    # Theory: 1 - (1 - 256/64512) ** 1024 = 98.3%; budgets of spec/punch.md §4.3.
    assert wins >= 0.95 * trials
    assert worst_random <= 256
    assert worst_scan <= 1024


def test_random_against_random_goes_to_the_relay_at_once() -> None:
    a, b = run_pair(RANDOM, RANDOM, seed=1)
    for side in (a, b):
        result = outcome(side)
        assert isinstance(result, pu.PunchFailed) and "relay" in result.reason
        assert side.puncher is not None and side.puncher.probes_sent == 0


def test_a_relay_only_pair_still_dials_the_peers_other_candidates() -> None:
    """[PUN-3.8.1] nothing towards the peer's NAT, but a port mapping or shared LAN is dialled; no
    answer: the punch fails at its deadline, saying why the NAT pair itself went to the relay."""
    p = plan(RANDOM, RANDOM, leading=True)
    assert not p.direct
    peer, mapped = ("198.18.2.2", 4000), ("198.18.2.2", 41000)
    puncher = pu.Puncher(
        p, main=0, peer=peer, candidates=[peer, mapped], ticket=bytes(16), rtt=0.05, random=Prng(3), now=0.0
    )
    sent: list[tuple[Hashable, Address, bytes]] = []
    now = 0.0
    while puncher.outcome is None:
        sent += puncher.datagrams_to_send(now)
        timer = puncher.get_timer()
        assert timer is not None
        now = timer
        puncher.handle_timer(now)
    assert {address for _, address, _ in sent} == {mapped}
    assert 1 < len(sent) == puncher.probes_sent <= pu.DIAL_PROBES
    assert isinstance(puncher.outcome, pu.PunchFailed) and now == pytest.approx(pu.DEADLINE)
    assert "relay" in puncher.outcome.reason and "no probe answered" in puncher.outcome.reason


def test_a_punch_that_gets_no_answer_fails_at_its_deadline() -> None:
    udp_dropped = NatProfile(mapping=Mapping.ENDPOINT_INDEPENDENT, filtering=Filtering.ADDRESS_AND_PORT_DEPENDENT)
    p = plan(udp_dropped, udp_dropped, leading=True)
    ticket = bytes(range(16))
    puncher = pu.Puncher(p, main=0, peer=("198.18.2.2", 4000), ticket=ticket, rtt=0.05, random=Prng(1), now=0.0)
    sent = 0
    now = 0.0
    while puncher.outcome is None:
        sent += len(puncher.datagrams_to_send(now))
        timer = puncher.get_timer()
        assert timer is not None
        now = timer
        puncher.handle_timer(now)
    assert isinstance(puncher.outcome, pu.PunchFailed)
    assert now == pytest.approx(pu.DEADLINE)
    # At 0, 50, 150, 350, 750, 1550 and 3150 ms: doubling gaps from the RTT, within the deadline.
    assert sent == puncher.probes_sent == 7 <= pu.DIAL_PROBES
    assert puncher.get_timer() is None
    assert puncher.next_event() == puncher.outcome
    assert puncher.next_event() is None


def _outcome(puncher: pu.Puncher) -> pu.PunchEvent | None:
    return puncher.outcome  # read afresh (mypy keeps an earlier narrowing otherwise)


def _puncher() -> pu.Puncher:
    p = plan(EIM, EIM, leading=True)
    return pu.Puncher(p, main=0, peer=("198.18.2.2", 4000), ticket=bytes(16), rtt=0.05, random=Prng(2), now=0.0)


def test_probes_under_another_ticket_are_not_answered() -> None:
    puncher = _puncher()
    foreign = pu.probe(bytes([1]) * 16, bytes(12))
    assert not puncher.receive_datagram(0, ("198.18.2.2", 4000), foreign, 0.0)
    # The right USERNAME with integrity under another key is no better.
    forged = sm.encode(sm.BINDING, sm.REQUEST, bytes(12), [(sm.USERNAME, pu.ticket_id(bytes(16)))], key=b"x" * 16)
    assert not puncher.receive_datagram(0, ("198.18.2.2", 4000), forged, 0.0)
    assert puncher.answers_sent == 0


@pytest.mark.parametrize("junk", [b"", b"\x00", bytes(20), b"\x04" + bytes(40), bytes(range(256))])
def test_junk_is_not_the_punchs(junk: bytes) -> None:
    assert not _puncher().receive_datagram(0, ("198.18.2.2", 4000), junk, 0.0)


def test_an_answer_from_elsewhere_does_not_count() -> None:
    puncher = _puncher()
    ((local, dst, data),) = [d for d in puncher.datagrams_to_send(0.0) if d[1] == ("198.18.2.2", 4000)]
    txid = sm.decode_untrusted(data).transaction_id
    reply = pu.answer(bytes(16), txid, ("198.18.1.2", 5000))
    assert puncher.receive_datagram(local, ("198.18.3.3", 4000), reply, 0.01)  # ours, but from elsewhere
    assert puncher.outcome is None and puncher.dropped == 1
    assert puncher.receive_datagram(local, dst, reply, 0.02)
    result = _outcome(puncher)
    assert isinstance(result, pu.PunchSucceeded)
    assert result.rtt == pytest.approx(0.02)
    assert result.mapped == ("198.18.1.2", 5000)


def test_answers_go_on_after_success_then_stop() -> None:
    puncher = _puncher()
    probe = pu.probe(bytes(16), bytes(range(12)))
    puncher.datagrams_to_send(0.0)
    assert puncher.receive_datagram(0, ("198.18.2.2", 4000), probe, 0.01)
    assert isinstance(puncher.outcome, pu.PunchSucceeded)  # we had probed that pair: both ways open
    assert [d[1] for d in puncher.datagrams_to_send(0.01)] == [("198.18.2.2", 4000)]  # the answer
    assert puncher.receive_datagram(0, ("198.18.2.2", 4000), probe, 1.0)
    assert len(puncher.datagrams_to_send(1.0)) == 1
    assert puncher.receive_datagram(0, ("198.18.2.2", 4000), probe, 0.01 + pu.LINGER)
    assert puncher.datagrams_to_send(0.01 + pu.LINGER) == []  # lingered long enough
    assert puncher.finished(0.01 + pu.LINGER)


def test_sizes_do_not_amplify() -> None:
    ticket = bytes(16)
    request = pu.probe(ticket, bytes(12))
    for source in (("198.18.1.2", 5000), ("2001:2::1", 5000)):
        assert len(pu.answer(ticket, bytes(12), source)) <= 3 * len(request)
    assert len(request) == 72


def test_a_request_from_an_unprobed_address_triggers_repeated_probes_until_success() -> None:
    puncher = _puncher()  # dials ("198.18.2.2", 4000), RTT estimate 50 ms
    puncher.datagrams_to_send(0.0)
    elsewhere = ("198.18.2.2", 4100)  # the peer's new mapping towards us (it scatters)
    assert puncher.receive_datagram(0, elsewhere, pu.probe(bytes(16), bytes(12)), 0.01)
    assert puncher.outcome is None
    sent = [d for d in puncher.datagrams_to_send(0.01) if sm.decode_untrusted(d[2]).klass == sm.REQUEST]
    assert [d[1] for d in sent] == [elsewhere] and puncher.probes_triggered == 1
    # Lost: it goes again after the RTT estimate (the dial schedule, spec/punch.md §5.3).
    again = [d for d in puncher.datagrams_to_send(0.061) if d[1] == elsewhere]
    assert len(again) == 1 and puncher.probes_triggered == 2
    # A second request from the same address triggers nothing more.
    assert puncher.receive_datagram(0, elsewhere, pu.probe(bytes(16), bytes(range(12))), 0.07)
    assert [d for d in puncher.datagrams_to_send(0.07) if sm.decode_untrusted(d[2]).klass == sm.REQUEST] == []
    txid = sm.decode_untrusted(again[0][2]).transaction_id
    assert puncher.receive_datagram(0, elsewhere, pu.answer(bytes(16), txid, ("198.18.1.2", 5000)), 0.1)
    result = _outcome(puncher)
    assert isinstance(result, pu.PunchSucceeded) and result.address == elsewhere
    assert puncher.datagrams_to_send(10.0) == [] and puncher.get_timer() is None


def test_a_request_from_a_predicted_port_probed_too_early_triggers_a_new_probe() -> None:
    # A stable side predicting a sequential peer's ports: its first probes may reach the peer's NAT
    # before the peer's mapping exists; the peer's own probe from that port then arrives here.
    p = plan(EIM, SEQ, leading=True)
    puncher = pu.Puncher(
        p, main=0, peer=("198.18.2.2", 4000), delta=1, ticket=bytes(16), rtt=0.05, random=Prng(3), now=0.0
    )
    first = puncher.datagrams_to_send(0.0)
    predicted = ("198.18.2.2", 4001)
    assert predicted in [d[1] for d in first]  # probed already, and lost
    assert puncher.receive_datagram(0, predicted, pu.probe(bytes(16), bytes(12)), 0.001)
    again = [d for d in puncher.datagrams_to_send(0.001) if d[1] == predicted]
    assert len(again) == 2  # the answer, and a triggered probe (spec/punch.md §5.3)
    assert puncher.probes_triggered == 1
