"""IPv6 hole punching through two stateful firewalls on the seeded emulator (spec/punch.md §3.9).

Two dual-stack peers: IPv4 behind a NAT that picks a random port per destination (so the IPv4
pair is relay only, §3.8), IPv6 behind a stateful firewall each (``NatConfig(translate=False)``,
an IPv6 home router: new inbound flows dropped).  Each side runs the real puncher with
``IPV6_PLAN`` from its IPv6 socket to the peer's IPv6 address, starting together or one a
one-way delay or more after the other, in virtual time, with and without 2% loss on each side's
wide-area hop: both sides' probes open their own firewall, so the pair connects (simultaneous
open) where a dial from one side alone never gets in.
"""

from __future__ import annotations

from collections.abc import Hashable

import pytest

from p2pos.proto.nat import punch as pu
from p2pos.proto.nat.profile import Allocation, Filtering, Mapping, NatProfile
from p2pos.proto.nat.punch_plan import IPV6_PLAN, plan
from p2pos.proto.simulation.link import LinkConfig
from p2pos.proto.simulation.nat import Allocation as NatAllocation
from p2pos.proto.simulation.nat import MappingBehaviour, NatConfig
from p2pos.proto.simulation.network import Host, Network
from p2pos.proto.simulation.prng import Prng

WAN = LinkConfig(delay=0.010)
LOSSY = LinkConfig(delay=0.010, loss=0.02)
TICKET = bytes(range(16))
SCATTERING = NatProfile(
    mapping=Mapping.ADDRESS_AND_PORT_DEPENDENT,
    filtering=Filtering.ADDRESS_AND_PORT_DEPENDENT,
    allocation=Allocation.RANDOM,
)


def _side(net: Network, name: str, index: int, wan: LinkConfig) -> tuple[Host, tuple[str, int]]:
    """A host behind a random IPv4 NAT and an IPv6 firewall; its IPv6 socket."""
    nat = net.add_nat(
        f"{name}-nat",
        NatConfig(mapping=MappingBehaviour.ADDRESS_AND_PORT_DEPENDENT, allocation=NatAllocation.RANDOM),
        net.internet,
        link=wan,
    )
    fw = net.add_nat(f"{name}-fw", NatConfig(translate=False), net.internet, inside=f"2001:2:0:{index}::/64", link=wan)
    host = net.add_host(name, nat)
    v6 = host.add_address(realm=fw)
    return host, host.open(5000, ip=v6)


def run(seed: int, *, wan: LinkConfig = WAN, skew: float = 0.0, silent_b: bool = False) -> tuple[bool, bool]:
    """One trial: whether each side's IPv6 punch succeeded on the pair of the two IPv6 sockets."""
    net = Network(seed)
    prng = Prng(seed + 1)
    a_host, a_sock = _side(net, "a", 1, wan)
    b_host, b_sock = _side(net, "b", 2, wan)
    hosts: dict[str, tuple[Host, tuple[str, int], tuple[str, int]]] = {
        "a": (a_host, a_sock, b_sock),
        "b": (b_host, b_sock, a_sock),
    }
    starts = {"a": 0.0, "b": skew}
    punchers: dict[str, pu.Puncher] = {}

    def flush(name: str, now: float) -> None:
        host, _, _ = hosts[name]
        for local, address, datagram in punchers[name].datagrams_to_send(now):
            assert isinstance(local, tuple)
            host.send(local, datagram, address, now)

    def start(name: str, now: float) -> None:
        _, sock, peer = hosts[name]
        main: Hashable = sock
        punchers[name] = pu.Puncher(
            IPV6_PLAN, main=main, peer=peer, ticket=TICKET, rtt=0.04, random=prng.derive(name.encode()), now=now
        )
        flush(name, now)

    now = 0.0
    pending = {n: t for n, t in starts.items() if not (silent_b and n == "b")}
    while now < 20.0:
        for name, t in list(pending.items()):
            if t <= now:
                start(name, now)
                del pending[name]
        for delivery in net.deliver(now):
            name = delivery.host.name
            if name in punchers:
                punchers[name].receive_datagram(delivery.local, delivery.addr, delivery.data, now)
                flush(name, now)
        for name, puncher in punchers.items():
            puncher.handle_timer(now)
            flush(name, now)
        if punchers and all(p.finished(now) for p in punchers.values()) and not pending:
            break
        delivery_at = net.next_delivery_time()
        times = [*pending.values(), *([] if delivery_at is None else [delivery_at])]
        for puncher in punchers.values():
            timer = puncher.get_timer()
            times += [] if timer is None else [timer]
            times += [] if puncher.ended_at is None else [puncher.ended_at + pu.LINGER]
        later = [t for t in times if t > now]
        if not times:
            break
        now = min(later) if later else now + 0.001

    def won(name: str) -> bool:
        outcome = punchers[name].outcome if name in punchers else None
        return isinstance(outcome, pu.PunchSucceeded) and outcome.address == hosts[name][2]

    return won("a"), won("b")


def test_the_ipv4_pair_alone_would_be_relay_only() -> None:
    assert not plan(SCATTERING, SCATTERING, leading=True).direct
    assert IPV6_PLAN.direct and IPV6_PLAN.dial and not (IPV6_PLAN.sockets or IPV6_PLAN.scan or IPV6_PLAN.predict)


@pytest.mark.parametrize("skew", [0.0, 0.015, 0.1, 1.0])
def test_both_firewalls_open_when_both_sides_dial(skew: float) -> None:
    for seed in range(50):
        assert run(seed, skew=skew) == (True, True), (seed, skew)


def test_one_side_dialling_alone_never_enters_the_peer_firewall() -> None:
    for seed in range(20):
        assert run(seed, silent_b=True) == (False, False), seed


def test_with_two_percent_loss_each_way_every_trial_connects() -> None:
    results = [run(seed, wan=LOSSY, skew=0.015) for seed in range(200)]
    assert all(r == (True, True) for r in results), results.count((True, True))
