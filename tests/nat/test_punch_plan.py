"""The punching plan (p2pos_proto/nat/punch_plan.py) and the NAT profile's wire form (profile.py)."""

from __future__ import annotations

import itertools

import pytest

from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.nat.profile import (
    Allocation,
    Filtering,
    Mapping,
    NatProfile,
    ProfileError,
    decode_profile_untrusted,
)
from p2pos.proto.nat.punch_plan import (
    BIRTHDAY_SCAN,
    BIRTHDAY_SOCKETS,
    FOLLOW_PORTS,
    LEAD_PORTS,
    PREDICT_PORTS,
    PREDICT_ROUNDS,
    plan,
)

PUBLIC = NatProfile(mapping=Mapping.NONE, filtering=Filtering.NONE)
FIREWALL = NatProfile(mapping=Mapping.NONE, filtering=Filtering.ADDRESS_AND_PORT_DEPENDENT)
FULL_CONE = NatProfile(mapping=Mapping.ENDPOINT_INDEPENDENT, filtering=Filtering.ENDPOINT_INDEPENDENT)
EIM = NatProfile(
    mapping=Mapping.ENDPOINT_INDEPENDENT,
    filtering=Filtering.ADDRESS_AND_PORT_DEPENDENT,
    allocation=Allocation.PRESERVING,
)
EIM_ADF = NatProfile(mapping=Mapping.ENDPOINT_INDEPENDENT, filtering=Filtering.ADDRESS_DEPENDENT)
RANDOM = NatProfile(
    mapping=Mapping.ADDRESS_AND_PORT_DEPENDENT,
    filtering=Filtering.ADDRESS_AND_PORT_DEPENDENT,
    allocation=Allocation.RANDOM,
)
SEQ = NatProfile(
    mapping=Mapping.ADDRESS_AND_PORT_DEPENDENT,
    filtering=Filtering.ADDRESS_AND_PORT_DEPENDENT,
    allocation=Allocation.SEQUENTIAL,
    delta=1,
)
MAPPED = NatProfile(
    mapping=Mapping.ADDRESS_AND_PORT_DEPENDENT,
    filtering=Filtering.ADDRESS_AND_PORT_DEPENDENT,
    allocation=Allocation.RANDOM,
    port_mapped=True,
)
BLOCKED = NatProfile(udp_blocked=True)
UNMEASURED = NatProfile()
ALL = [PUBLIC, FIREWALL, FULL_CONE, EIM, EIM_ADF, RANDOM, SEQ, MAPPED, BLOCKED, UNMEASURED]


@pytest.mark.parametrize(("mine", "theirs"), list(itertools.product(ALL, ALL)))
def test_both_sides_agree_on_whether_to_go_direct(mine: NatProfile, theirs: NatProfile) -> None:
    a, b = plan(mine, theirs, leading=True), plan(theirs, mine, leading=False)
    assert a.direct == b.direct
    # A birthday has exactly one side with sockets and the other scanning; nobody does both.
    assert not (a.sockets and a.scan)
    assert bool(a.sockets) == bool(b.scan)
    assert bool(a.scan) == bool(b.sockets)
    if not a.direct:
        assert not (a.dial or a.sockets or a.scan or a.predict)


@pytest.mark.parametrize(
    ("mine", "theirs", "direct", "sockets", "scan", "predict"),
    [
        (PUBLIC, RANDOM, True, 0, 0, 0),  # an open side: a plain dial connects anything with UDP
        (FULL_CONE, RANDOM, True, 0, 0, 0),
        (MAPPED, RANDOM, True, 0, 0, 0),  # a port mapping is open too
        (EIM, EIM, True, 0, 0, 0),  # simultaneous open
        (FIREWALL, EIM, True, 0, 0, 0),  # a stateful firewall is a stable mapping with a filter
        (RANDOM, EIM, True, BIRTHDAY_SOCKETS - 1, 0, 0),  # and the main socket
        (EIM, RANDOM, True, 0, BIRTHDAY_SCAN, 0),
        (RANDOM, EIM_ADF, True, 0, 0, 0),  # an address filter opens for every port of the peer's address
        (EIM, SEQ, True, 0, 0, PREDICT_PORTS),
        (SEQ, EIM, True, 0, 0, 0),  # the peer predicts this side's ports
        (RANDOM, RANDOM, False, 0, 0, 0),
        (RANDOM, SEQ, False, 0, 0, 0),
        (SEQ, SEQ, True, 0, 0, LEAD_PORTS),  # both predict (spec/punch.md §3.5): this side leads
        (BLOCKED, PUBLIC, False, 0, 0, 0),
        (UNMEASURED, RANDOM, True, 0, 0, 0),  # nothing costly without a measurement
    ],
)
def test_the_table(mine: NatProfile, theirs: NatProfile, direct: bool, sockets: int, scan: int, predict: int) -> None:
    p = plan(mine, theirs, leading=True)
    assert (p.direct, p.sockets, p.scan, p.predict) == (direct, sockets, scan, predict), p.why
    assert p.why
    if direct:
        assert p.dial or p.sockets or p.scan or p.predict
    # The birthday sides leave the observed address alone: it filters for the rendezvous node.
    assert not (p.dial and (p.sockets or p.scan))


def test_both_sequential_lead_and_follow() -> None:
    lead, follow = plan(SEQ, SEQ, leading=True), plan(SEQ, SEQ, leading=False)
    assert (lead.predict, lead.predict_step, lead.rounds) == (LEAD_PORTS, 1, PREDICT_ROUNDS)
    assert (follow.predict, follow.predict_step, follow.rounds) == (FOLLOW_PORTS, 2, PREDICT_ROUNDS)
    assert not lead.dial and not follow.dial  # a dial to the observed address would take a port
    # spec/punch.md §4.2: both sides' probes together stay within 100.
    assert PREDICT_ROUNDS * (LEAD_PORTS + FOLLOW_PORTS) <= 100


def test_budgets_are_the_issues() -> None:
    # spec/punch.md §4: 256 sockets and 256 probes on the random side, 1,024 probes from the other.
    assert BIRTHDAY_SOCKETS == 256
    assert BIRTHDAY_SCAN == 1024


@pytest.mark.parametrize("profile", ALL)
def test_profile_round_trip(profile: NatProfile) -> None:
    wire = profile.encode()
    assert len(wire) == 5
    assert decode_profile_untrusted(wire) == profile


def test_profile_wire_layout() -> None:
    assert SEQ.encode() == bytes([0x44, 0x02, 0x00, 0x01, 0x00])
    negative = NatProfile(mapping=Mapping.ADDRESS_DEPENDENT, allocation=Allocation.SEQUENTIAL, delta=-2, hairpin=True)
    assert negative.encode() == bytes([0x30, 0x02, 0xFF, 0xFE, 0x04])


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        bytes(4),
        bytes(6),
        bytes([0x50, 0, 0, 0, 0]),  # mapping 5
        bytes([0x05, 0, 0, 0, 0]),  # filtering 5
        bytes([0x00, 4, 0, 0, 0]),  # allocation 4
        bytes([0x00, 0, 0, 0, 0x08]),  # an unknown flag
        bytes([0x44, 2, 0, 0, 0]),  # sequential without a delta
        bytes([0x44, 1, 0, 1, 0]),  # a delta without a sequential allocator
        bytes([0x44, 2, 0x10, 0x00, 0]),  # delta 4096: beyond MAX_DELTA
    ],
)
def test_bad_profiles(wire: bytes) -> None:
    with pytest.raises(ProfileError):
        decode_profile_untrusted(wire)


def test_local_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        NatProfile(allocation=Allocation.SEQUENTIAL)
    with pytest.raises(LocalProtocolError):
        NatProfile(allocation=Allocation.RANDOM, delta=3)
