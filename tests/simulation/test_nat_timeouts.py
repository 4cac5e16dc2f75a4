"""Binding timeouts of the NAT models (p2pos_proto/simulation/nat.py), in virtual time.

A flow refreshed at ``t`` admits what arrives before ``t + timeout`` and is gone at that
instant; the tests probe both sides of every edge.  The conntrack cases follow Linux's
``nf_conntrack_udp_packet``: 30 s until traffic has gone both ways, then 120 s for a
datagram more than 2 s after the flow began.
"""

from __future__ import annotations

import pytest

from p2pos.proto.simulation.nat import (
    Allocation,
    Drop,
    FilteringBehaviour,
    MappingBehaviour,
    Nat,
    NatConfig,
    Refresh,
    linux_masquerade,
)
from p2pos.proto.simulation.prng import Prng

PUBLIC = "198.18.0.10"
INSIDE = ("10.0.0.2", 5000)
SERVER = ("198.18.0.1", 3478)
PEER = ("198.18.0.2", 4000)
EPSILON = 1e-9


def box(config: NatConfig, seed: int = 1) -> Nat:
    return Nat(config, PUBLIC, Prng(seed))


def live_remotes(nat: Nat, now: float) -> set[tuple[str, int]]:
    """The remotes with a live flow at ``now``, looked at without refreshing anything."""
    return {remote for info in nat.mappings(now) for remote in info.remotes}


def alive_until(nat: Nat, remote: tuple[str, int], port: int, expected: float) -> None:
    """The flow with ``remote`` lives just before ``expected`` and is gone at it: a datagram then is refused."""
    assert remote in live_remotes(nat, expected - EPSILON)
    assert remote not in live_remotes(nat, expected)
    assert isinstance(nat.inbound(remote, (PUBLIC, port), expected), Drop)


@pytest.mark.parametrize("timeout", [10.0, 30.0, 600.0])
def test_binding_expires_exactly_at_its_timeout(timeout: float) -> None:
    nat = box(NatConfig(timeout=timeout, refresh=Refresh.OUTBOUND))
    _, port = nat.outbound(INSIDE, SERVER, 100.0)  # type: ignore[misc]
    assert nat.inbound(SERVER, (PUBLIC, port), 100.0 + timeout - EPSILON) == INSIDE  # inbound does not refresh here
    assert nat.inbound(SERVER, (PUBLIC, port), 100.0 + timeout) is Drop.NO_MAPPING
    assert nat.stats.mappings_expired == 1
    assert nat.stats.inbound_no_mapping == 1


def test_outbound_refresh_extends_the_binding() -> None:
    nat = box(NatConfig(timeout=30.0))
    public = nat.outbound(INSIDE, SERVER, 0.0)
    assert nat.outbound(INSIDE, SERVER, 20.0) == public
    assert nat.inbound(SERVER, (PUBLIC, 5000), 49.0) == INSIDE
    assert nat.inbound(SERVER, (PUBLIC, 5000), 50.0) is Drop.NO_MAPPING


def test_inbound_refreshes_only_when_configured() -> None:
    for refresh, expected in ((Refresh.OUTBOUND, 30.0), (Refresh.BOTH, 50.0)):
        nat = box(NatConfig(timeout=30.0, refresh=refresh))
        nat.outbound(INSIDE, SERVER, 0.0)
        assert nat.inbound(SERVER, (PUBLIC, 5000), 20.0) == INSIDE
        alive_until(nat, SERVER, 5000, expected)


def test_a_new_binding_after_expiry_gets_a_new_port() -> None:
    nat = box(NatConfig(timeout=30.0, allocation=Allocation.RANDOM))
    first = nat.outbound(INSIDE, SERVER, 0.0)
    assert nat.outbound(INSIDE, SERVER, 29.0) == first
    second = nat.outbound(INSIDE, SERVER, 59.0)  # 29 + 30: gone just now
    assert second != first
    assert nat.stats.mappings_created == 2
    assert nat.stats.mappings_expired == 1


def test_expired_mappings_are_counted_without_traffic() -> None:
    nat = box(NatConfig(timeout=30.0, mapping=MappingBehaviour.ADDRESS_AND_PORT_DEPENDENT))
    for port in range(5):
        nat.outbound(INSIDE, ("198.18.1.1", 1000 + port), float(port))
    nat.expire(32.0)
    assert nat.stats.mappings_expired == 3
    assert len(nat.mappings(32.0)) == 2


def test_under_dependent_filtering_each_peer_needs_its_own_flow_refreshed() -> None:
    """Issue 13 item 3: one flow keeps an EIM mapping open, but a peer's permission needs its own traffic."""
    nat = box(NatConfig(timeout=30.0, filtering=FilteringBehaviour.ADDRESS_AND_PORT_DEPENDENT))
    nat.outbound(INSIDE, SERVER, 0.0)
    nat.outbound(INSIDE, PEER, 0.0)
    for t in (25.0, 50.0):  # keepalives to the server only
        nat.outbound(INSIDE, SERVER, t)
    assert nat.inbound(SERVER, (PUBLIC, 5000), 60.0) == INSIDE  # the mapping lives ...
    assert nat.inbound(PEER, (PUBLIC, 5000), 60.0) is Drop.FILTERED  # ... the peer's permission died at 30
    assert nat.mappings(60.0)[0].remotes == (SERVER,)


def test_under_endpoint_independent_filtering_one_flow_keeps_every_peer_reachable() -> None:
    nat = box(NatConfig(timeout=30.0, filtering=FilteringBehaviour.ENDPOINT_INDEPENDENT))
    nat.outbound(INSIDE, SERVER, 0.0)
    for t in (25.0, 50.0):
        nat.outbound(INSIDE, SERVER, t)
    assert nat.inbound(PEER, (PUBLIC, 5000), 60.0) == INSIDE


def test_address_dependent_filtering_permission_follows_the_latest_flow_of_an_address() -> None:
    nat = box(NatConfig(timeout=30.0, filtering=FilteringBehaviour.ADDRESS_DEPENDENT))
    nat.outbound(INSIDE, SERVER, 0.0)
    nat.outbound(INSIDE, ("198.18.0.1", 9), 20.0)  # same address, another port
    nat.outbound(INSIDE, PEER, 45.0)  # keeps the mapping, not the server's permission
    assert nat.inbound(("198.18.0.1", 1234), (PUBLIC, 5000), 49.0) == INSIDE
    assert nat.inbound(("198.18.0.1", 1234), (PUBLIC, 5000), 50.0) is Drop.FILTERED


def test_third_party_inbound_keeps_the_mapping_only_with_inbound_refresh() -> None:
    for refresh, survives in ((Refresh.OUTBOUND, False), (Refresh.BOTH, True)):
        nat = box(NatConfig(timeout=30.0, refresh=refresh, filtering=FilteringBehaviour.ENDPOINT_INDEPENDENT))
        nat.outbound(INSIDE, SERVER, 0.0)
        assert nat.inbound(PEER, (PUBLIC, 5000), 25.0) == INSIDE
        assert (nat.inbound(PEER, (PUBLIC, 5000), 40.0) == INSIDE) is survives


# -- Linux conntrack's two stages ------------------------------------------------------------------


def conntrack() -> Nat:
    return box(linux_masquerade(timeout=30.0, stream_timeout=120.0))


def test_conntrack_unreplied_flow_keeps_the_short_timeout() -> None:
    nat = conntrack()
    for t in (0.0, 2.5, 5.0):
        nat.outbound(INSIDE, SERVER, t)
    alive_until(nat, SERVER, 5000, 35.0)


def test_conntrack_first_reply_still_gets_the_short_timeout() -> None:
    """A probe on a fresh binding (request, reply, silence) sees 30 s even if the reply comes late."""
    nat = conntrack()
    nat.outbound(INSIDE, SERVER, 0.0)
    assert nat.inbound(SERVER, (PUBLIC, 5000), 3.0) == INSIDE
    alive_until(nat, SERVER, 5000, 33.0)


def test_conntrack_both_ways_within_two_seconds_stays_short() -> None:
    nat = conntrack()
    nat.outbound(INSIDE, SERVER, 0.0)
    nat.inbound(SERVER, (PUBLIC, 5000), 0.1)
    nat.outbound(INSIDE, SERVER, 1.0)
    nat.inbound(SERVER, (PUBLIC, 5000), 2.0)  # not after the 2 s mark
    alive_until(nat, SERVER, 5000, 32.0)


def test_conntrack_stream_after_two_seconds_gets_the_long_timeout() -> None:
    nat = conntrack()
    nat.outbound(INSIDE, SERVER, 0.0)
    nat.inbound(SERVER, (PUBLIC, 5000), 0.1)
    nat.outbound(INSIDE, SERVER, 2.5)
    alive_until(nat, SERVER, 5000, 122.5)


def test_conntrack_stream_refreshed_by_inbound_too() -> None:
    nat = conntrack()
    nat.outbound(INSIDE, SERVER, 0.0)
    nat.inbound(SERVER, (PUBLIC, 5000), 0.5)
    nat.inbound(SERVER, (PUBLIC, 5000), 2.01)  # reply already seen, after 2 s: long
    alive_until(nat, SERVER, 5000, 122.01)


def test_conntrack_flow_that_timed_out_starts_over_short() -> None:
    nat = conntrack()
    nat.outbound(INSIDE, SERVER, 0.0)
    nat.inbound(SERVER, (PUBLIC, 5000), 0.5)
    nat.outbound(INSIDE, SERVER, 3.0)  # stream: 123
    nat.outbound(INSIDE, SERVER, 200.0)  # long dead: a new flow (and mapping), short again
    nat.inbound(SERVER, (PUBLIC, 5000), 200.5)
    alive_until(nat, SERVER, 5000, 230.5)
    assert nat.stats.mappings_created == 2


def test_conntrack_is_a_config_option() -> None:
    single = box(NatConfig(timeout=30.0, refresh=Refresh.BOTH))
    single.outbound(INSIDE, SERVER, 0.0)
    single.inbound(SERVER, (PUBLIC, 5000), 0.5)
    single.outbound(INSIDE, SERVER, 3.0)
    alive_until(single, SERVER, 5000, 33.0)
    custom = box(NatConfig(timeout=15.0, stream_timeout=60.0, stream_after=5.0, refresh=Refresh.BOTH))
    custom.outbound(INSIDE, SERVER, 0.0)
    custom.inbound(SERVER, (PUBLIC, 5000), 0.5)
    custom.outbound(INSIDE, SERVER, 4.0)  # not yet after 5 s
    custom.outbound(INSIDE, SERVER, 5.5)
    alive_until(custom, SERVER, 5000, 65.5)
