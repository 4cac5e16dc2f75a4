"""The NAT box models (p2pos_proto/simulation/nat.py): mapping, filtering, allocation, port mapping.

Each behaviour is driven on the engine alone, in virtual time; the network tests
(test_nat_network.py) show the same boxes composed on a routed network.  Statistical
checks use fixed seeds and tolerances of about 5 standard deviations, as test_link.py does.
"""

from __future__ import annotations

import itertools
import math

import pytest

from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.simulation.nat import (
    Allocation,
    Drop,
    FilteringBehaviour,
    MappingBehaviour,
    Nat,
    NatConfig,
    linux_fully_random,
    linux_masquerade,
)
from p2pos.proto.simulation.prng import Prng

PUBLIC = "198.18.0.10"
INSIDE = ("10.0.0.2", 5000)
OTHER_INSIDE = ("10.0.0.3", 5000)
SERVER = ("198.18.0.1", 3478)
SERVER_OTHER_PORT = ("198.18.0.1", 3479)
SECOND_SERVER = ("198.18.0.2", 3478)
THIRD_PARTY = ("198.18.0.3", 4000)

EIM = MappingBehaviour.ENDPOINT_INDEPENDENT
ADM = MappingBehaviour.ADDRESS_DEPENDENT
APDM = MappingBehaviour.ADDRESS_AND_PORT_DEPENDENT
EIF = FilteringBehaviour.ENDPOINT_INDEPENDENT
ADF = FilteringBehaviour.ADDRESS_DEPENDENT
APDF = FilteringBehaviour.ADDRESS_AND_PORT_DEPENDENT


def box(seed: int = 1, **kwargs: object) -> Nat:
    return Nat(NatConfig(**kwargs), PUBLIC, Prng(seed))  # type: ignore[arg-type]


def out(nat: Nat, dst: tuple[str, int], now: float = 0.0, src: tuple[str, int] = INSIDE) -> tuple[str, int]:
    public = nat.outbound(src, dst, now)
    assert not isinstance(public, Drop), public
    return public


# -- mapping (RFC 4787 §4.1) ----------------------------------------------------------------------


def test_endpoint_independent_mapping_gives_one_public_port_for_every_destination() -> None:
    nat = box(mapping=EIM, allocation=Allocation.RANDOM)
    ports = {out(nat, dst) for dst in (SERVER, SERVER_OTHER_PORT, SECOND_SERVER)}
    assert len(ports) == 1
    assert nat.stats.mappings_created == 1
    assert nat.stats.outbound == 3


def test_address_dependent_mapping_shares_a_port_per_remote_address() -> None:
    nat = box(mapping=ADM, allocation=Allocation.RANDOM)
    first, same_address, other_address = out(nat, SERVER), out(nat, SERVER_OTHER_PORT), out(nat, SECOND_SERVER)
    assert first == same_address != other_address
    assert nat.stats.mappings_created == 2


def test_address_and_port_dependent_mapping_gives_a_port_per_remote_endpoint() -> None:
    nat = box(mapping=APDM, allocation=Allocation.RANDOM)
    ports = [out(nat, dst) for dst in (SERVER, SERVER_OTHER_PORT, SECOND_SERVER)]
    assert len(set(ports)) == 3
    assert out(nat, SERVER) == ports[0]  # the same flow keeps its mapping
    assert nat.stats.mappings_created == 3


def test_each_internal_endpoint_has_its_own_mapping() -> None:
    nat = box(mapping=EIM, allocation=Allocation.RANDOM)
    assert out(nat, SERVER) != out(nat, SERVER, src=OTHER_INSIDE)
    assert out(nat, SERVER, src=("10.0.0.2", 5001)) not in {out(nat, SERVER), out(nat, SERVER, src=OTHER_INSIDE)}


def test_lookup_reports_the_mapping_without_creating_one() -> None:
    nat = box(mapping=APDM)
    assert nat.lookup(INSIDE, SERVER, 0.0) is None
    public = out(nat, SERVER)
    assert nat.lookup(INSIDE, SERVER, 0.0) == public
    assert nat.lookup(INSIDE, SECOND_SERVER, 0.0) is None
    assert nat.stats.mappings_created == 1


# -- filtering (RFC 4787 §5) ---------------------------------------------------------------------------


@pytest.mark.parametrize("filtering", [EIF, FilteringBehaviour.NONE])
def test_endpoint_independent_filtering_admits_anyone_to_a_live_mapping(filtering: FilteringBehaviour) -> None:
    nat = box(filtering=filtering)
    _, port = out(nat, SERVER)
    assert nat.inbound(THIRD_PARTY, (PUBLIC, port), 0.1) == INSIDE
    assert nat.inbound(THIRD_PARTY, (PUBLIC, port + 1), 0.1) is Drop.NO_MAPPING  # but only to a mapping
    assert nat.stats.inbound == 1
    assert nat.stats.inbound_no_mapping == 1


def test_address_dependent_filtering_admits_any_port_of_a_contacted_address() -> None:
    nat = box(filtering=ADF)
    _, port = out(nat, SERVER)
    assert nat.inbound(SERVER, (PUBLIC, port), 0.1) == INSIDE
    assert nat.inbound(SERVER_OTHER_PORT, (PUBLIC, port), 0.1) == INSIDE
    assert nat.inbound(THIRD_PARTY, (PUBLIC, port), 0.1) is Drop.FILTERED
    assert nat.stats.inbound_filtered == 1


def test_address_and_port_dependent_filtering_drops_a_third_party_until_the_inside_sent_to_it() -> None:
    nat = box(filtering=APDF)
    _, port = out(nat, SERVER)
    assert nat.inbound(SERVER, (PUBLIC, port), 0.1) == INSIDE
    assert nat.inbound(SERVER_OTHER_PORT, (PUBLIC, port), 0.1) is Drop.FILTERED
    assert nat.inbound(THIRD_PARTY, (PUBLIC, port), 0.2) is Drop.FILTERED
    assert out(nat, THIRD_PARTY, 0.3) == (PUBLIC, port)  # EIM: the same mapping, now with a flow to it
    assert nat.inbound(THIRD_PARTY, (PUBLIC, port), 0.4) == INSIDE
    assert nat.stats.inbound_filtered == 2
    assert nat.stats.inbound == 2


def test_filtering_combines_with_dependent_mapping() -> None:
    """APDM + EIF: each per-destination mapping still admits anyone (a "symmetric" NAT that is open)."""
    nat = box(mapping=APDM, filtering=EIF)
    _, first = out(nat, SERVER)
    _, second = out(nat, SECOND_SERVER)
    assert first != second
    assert nat.inbound(THIRD_PARTY, (PUBLIC, first), 0.1) == INSIDE
    assert nat.inbound(THIRD_PARTY, (PUBLIC, second), 0.1) == INSIDE


# -- allocation (RFC 4787 §4.2) --------------------------------------------------------------------------


def test_port_preserving_allocation_keeps_the_internal_port_when_free() -> None:
    nat = box(allocation=Allocation.PRESERVING)
    assert out(nat, SERVER) == (PUBLIC, INSIDE[1])
    clash = out(nat, SERVER, src=OTHER_INSIDE)  # same internal port, other host: it is taken
    assert clash != (PUBLIC, INSIDE[1])
    assert 1024 <= clash[1] <= 65535


def test_port_preserving_with_dependent_mapping_preserves_only_the_first() -> None:
    nat = box(allocation=Allocation.PRESERVING, mapping=APDM)
    assert out(nat, SERVER)[1] == INSIDE[1]
    assert out(nat, SECOND_SERVER)[1] != INSIDE[1]


@pytest.mark.parametrize("delta", [1, 2, 7])
def test_sequential_allocator_hands_out_base_plus_k_delta(delta: int) -> None:
    nat = box(mapping=APDM, allocation=Allocation.SEQUENTIAL, delta=delta, first_port=40000)
    ports = [out(nat, ("198.18.1.1", 1000 + k), now=k * 0.01)[1] for k in range(50)]
    assert ports == [40000 + k * delta for k in range(50)]


def test_sequential_allocator_wraps_in_its_range_and_steps_over_ports_in_use() -> None:
    nat = box(mapping=APDM, allocation=Allocation.SEQUENTIAL, delta=3, first_port=1030, port_range=(1024, 1035))
    ports = [out(nat, ("198.18.1.1", 1000 + k))[1] for k in range(4)]
    # 1030, 1033, then 1036 wraps to 1024 (offset 12 mod 12 = 0), 1027
    assert ports == [1030, 1033, 1024, 1027]
    # 1030 is next on the orbit but in use: the allocator steps over it (1033, 1024, 1027 too) and,
    # the orbit full, takes the next free port after it.
    assert out(nat, ("198.18.1.1", 2000))[1] == 1031


def test_sequential_allocator_first_port_is_drawn_when_not_given() -> None:
    starts = {out(box(seed, mapping=APDM, allocation=Allocation.SEQUENTIAL), SERVER)[1] for seed in range(20)}
    assert len(starts) > 15


def test_sequential_allocator_with_other_hosts_taking_ports() -> None:
    """``shared_rate``: unseen hosts take Poisson(rate * gap) steps between two of ours."""
    rate, gap, delta, n = 4.0, 0.5, 2, 4000
    nat = box(
        mapping=APDM, allocation=Allocation.SEQUENTIAL, delta=delta, first_port=1024, shared_rate=rate, timeout=1.0
    )
    ports = [out(nat, ("198.18.1.1", 1 + k % 60000), now=k * gap)[1] for k in range(n)]
    size = 65535 - 1024 + 1
    steps = [((b - a) % size) // delta for a, b in itertools.pairwise(ports)]
    assert all((b - a) % size % delta == 0 for a, b in itertools.pairwise(ports))
    assert min(steps) >= 1
    mean = rate * gap  # extra steps per gap: Poisson(2), variance 2
    assert abs(sum(s - 1 for s in steps) / len(steps) - mean) < 5 * math.sqrt(mean / len(steps))
    assert max(steps) > 4  # the tail is there


def test_random_allocation_is_uniform_over_the_range() -> None:
    nat = box(7, mapping=APDM, allocation=Allocation.RANDOM)
    n, buckets = 16000, 16
    ports = [out(nat, (f"198.18.{k // 60000}.{1 + k % 200}", 1 + k % 60000))[1] for k in range(n)]
    assert len(set(ports)) == n  # distinct while all mappings live
    assert min(ports) >= 1024
    counts = [0] * buckets
    for port in ports:
        counts[(port - 1024) * buckets // 64512] += 1
    expected = n / buckets
    chi2 = sum((c - expected) ** 2 / expected for c in counts)
    assert chi2 < 37.7  # 15 degrees of freedom, p = 0.001


def test_random_allocation_is_seeded() -> None:
    def ports(seed: int) -> list[int]:
        nat = box(seed, mapping=APDM, allocation=Allocation.RANDOM)
        return [out(nat, ("198.18.1.1", 1 + k))[1] for k in range(20)]

    assert ports(3) == ports(3) != ports(4)


@pytest.mark.parametrize("allocation", list(Allocation))
def test_port_range_exhaustion_drops_new_flows_only(allocation: Allocation) -> None:
    nat = box(mapping=APDM, allocation=allocation, port_range=(5000, 5003))
    ports = {out(nat, ("198.18.1.1", 1 + k))[1] for k in range(4)}
    assert ports == {5000, 5001, 5002, 5003}
    assert nat.outbound(INSIDE, ("198.18.1.1", 99), 0.0) is Drop.EXHAUSTED
    assert nat.stats.exhausted == 1
    assert out(nat, ("198.18.1.1", 1)) in {(PUBLIC, p) for p in ports}  # existing flows go on
    # When the mappings time out (120 s by default), ports come free again.
    assert not isinstance(nat.outbound(INSIDE, ("198.18.1.1", 99), 121.0), Drop)


# -- port mapping (PCP, NAT-PMP, UPnP), blocking, presets ---------------------------------------------------


def test_map_port_admits_anyone_for_its_lifetime_and_serves_outbound_too() -> None:
    nat = box(mapping=APDM, filtering=APDF, allocation=Allocation.RANDOM)
    public = nat.map_port(INSIDE, 0.0, lifetime=60.0, public_port=7000)
    assert public == (PUBLIC, 7000)
    assert nat.inbound(THIRD_PARTY, (PUBLIC, 7000), 1.0) == INSIDE
    assert out(nat, SERVER, 2.0) == public  # outbound from the mapped endpoint uses it (RFC 6887 §11)
    assert out(nat, SECOND_SERVER, 2.0) == public
    assert nat.inbound(THIRD_PARTY, (PUBLIC, 7000), 59.9) == INSIDE  # traffic does not refresh it ...
    assert nat.inbound(THIRD_PARTY, (PUBLIC, 7000), 60.0) is Drop.NO_MAPPING  # ... its lifetime ends it
    assert nat.stats.mappings_expired == 1


def test_map_port_renewal_and_taken_ports() -> None:
    nat = box(allocation=Allocation.SEQUENTIAL, first_port=9000)
    assert nat.map_port(INSIDE, 0.0, lifetime=10.0) == (PUBLIC, 5000)  # the internal port by default
    assert nat.map_port(INSIDE, 5.0, lifetime=10.0) == (PUBLIC, 5000)  # renewed
    assert nat.inbound(THIRD_PARTY, (PUBLIC, 5000), 14.0) == INSIDE
    taken = nat.map_port(OTHER_INSIDE, 14.0, public_port=5000)  # for ever, but 5000 is taken
    assert taken == (PUBLIC, 9000)
    assert nat.inbound(THIRD_PARTY, (PUBLIC, 5000), 15.0) is Drop.NO_MAPPING
    assert nat.inbound(THIRD_PARTY, (PUBLIC, 9000), 1e9) == OTHER_INSIDE


def test_udp_blocked_box_drops_both_ways() -> None:
    nat = box(udp_blocked=True)
    assert nat.outbound(INSIDE, SERVER, 0.0) is Drop.BLOCKED
    assert nat.inbound(SERVER, (PUBLIC, 5000), 0.0) is Drop.BLOCKED
    assert nat.stats.blocked == 2
    assert nat.stats.dropped == 2
    assert nat.mappings(0.0) == []


def test_hairpin_on_translates_back_in_from_the_public_source() -> None:
    nat = box(hairpinning=True, filtering=APDF)
    a_public = out(nat, SERVER)
    b_public = out(nat, SERVER, src=OTHER_INSIDE)
    # b has not sent to a's public address: the filter refuses it, hairpinned or not.
    assert nat.hairpin(a_public, b_public, 0.1) is Drop.FILTERED
    out(nat, a_public, 0.2, src=OTHER_INSIDE)
    assert nat.hairpin(b_public, a_public, 0.2) is Drop.FILTERED  # a has not sent to b yet
    out(nat, b_public, 0.3)
    assert nat.hairpin(b_public, a_public, 0.4) == INSIDE
    assert nat.stats.hairpinned == 1


def test_hairpin_off_drops_and_counts() -> None:
    nat = box(hairpinning=False, filtering=EIF)
    a_public = out(nat, SERVER)
    assert nat.hairpin(a_public, a_public, 0.1) is Drop.HAIRPIN_OFF
    assert nat.stats.hairpin_dropped == 1


def test_firewall_passes_addresses_unchanged_and_filters_like_a_nat() -> None:
    """``translate=False``: an IPv6 router's stateful firewall; mapping and allocation do not apply."""
    v6_inside, v6_server, v6_third = ("2001:2:0:a::2", 5000), ("2001:2::1", 3478), ("2001:2::3", 4000)
    nat = Nat(NatConfig(translate=False, mapping=APDM, allocation=Allocation.RANDOM), "", Prng(1))
    assert nat.outbound(v6_inside, v6_server, 0.0) == v6_inside
    assert nat.outbound(v6_inside, v6_third, 0.0) == v6_inside  # one pinhole per internal endpoint
    assert nat.inbound(v6_server, v6_inside, 0.1) == v6_inside
    assert nat.inbound(("2001:2::9", 1), v6_inside, 0.1) is Drop.FILTERED
    assert nat.inbound(v6_server, ("2001:2:0:a::2", 5001), 0.1) is Drop.NO_MAPPING
    assert nat.stats.mappings_created == 1
    assert nat.map_port(v6_inside, 1.0, lifetime=10.0) == v6_inside  # a pinhole (PCP) replaces the flow state
    assert nat.inbound(("2001:2::9", 1), v6_inside, 2.0) == v6_inside
    assert nat.inbound(("2001:2::9", 1), v6_inside, 11.0) is Drop.NO_MAPPING


def test_presets() -> None:
    masquerade = linux_masquerade()
    assert (masquerade.mapping, masquerade.filtering, masquerade.allocation) == (EIM, APDF, Allocation.PRESERVING)
    assert (masquerade.timeout, masquerade.stream_timeout, masquerade.stream_after) == (30.0, 120.0, 2.0)
    random = linux_fully_random(timeout=15.0)
    assert (random.mapping, random.allocation, random.timeout) == (APDM, Allocation.RANDOM, 15.0)


def test_mappings_lists_live_mappings_with_their_flows() -> None:
    nat = box(allocation=Allocation.PRESERVING, timeout=10.0)
    out(nat, SERVER, 0.0)
    out(nat, SECOND_SERVER, 5.0)
    (info,) = nat.mappings(6.0)
    assert (info.internal, info.public, info.expires, info.static) == (INSIDE, (PUBLIC, 5000), 15.0, False)
    assert info.remotes == (SERVER, SECOND_SERVER)
    assert nat.mappings(12.0)[0].remotes == (SECOND_SERVER,)  # the first flow is gone
    assert nat.mappings(15.0) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mapping": "endpoint-independent"},
        {"delta": 0},
        {"delta": True},
        {"port_range": (2000, 1000)},
        {"port_range": (0, 1000)},
        {"port_range": (1, 65536)},
        {"first_port": 80},
        {"timeout": 0},
        {"timeout": math.inf},
        {"stream_timeout": -1.0},
        {"stream_after": -1.0},
        {"shared_rate": -0.5},
        {"hairpinning": 1},
    ],
)
def test_bad_config_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        NatConfig(**kwargs)  # type: ignore[arg-type]


def test_misuse_rejected() -> None:
    nat = box()
    out(nat, SERVER, 5.0)
    with pytest.raises(LocalProtocolError, match="backwards"):
        nat.outbound(INSIDE, SERVER, 4.0)
    with pytest.raises(LocalProtocolError):
        nat.map_port(INSIDE, 6.0, lifetime=0.0)
    with pytest.raises(LocalProtocolError):
        Nat("not a config", PUBLIC, Prng(1))  # type: ignore[arg-type]
