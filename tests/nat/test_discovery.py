"""NAT behaviour discovery (p2pos_proto/nat/discovery.py, spec/nat.md §3) against tiny fake NATs."""

from __future__ import annotations

import pytest
from fake_nat import FakeNat, run

from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.nat import profile as pf
from p2pos.proto.nat.discovery import DISCOVERY_RETRANSMIT, Allocation, Behaviour, NatDiscovery

EIM, ADM, APDM = Behaviour.ENDPOINT_INDEPENDENT, Behaviour.ADDRESS_DEPENDENT, Behaviour.ADDRESS_AND_PORT_DEPENDENT
NAMES = {"eim": EIM, "adm": ADM, "apdm": APDM, "eif": EIM, "adf": ADM, "apdf": APDM}


@pytest.mark.parametrize("mapping", ["eim", "adm", "apdm"])
@pytest.mark.parametrize("filtering", ["eif", "adf", "apdf"])
def test_mapping_and_filtering_are_told_apart(mapping: str, filtering: str) -> None:
    """[NAT-3.2.1] [NAT-3.2.2] every mapping x filtering combination is found as it is."""
    report, _ = run(FakeNat(mapping=mapping, filtering=filtering))
    assert report.udp and report.nat and report.alternate
    assert report.mapping is NAMES[mapping]
    assert report.filtering is NAMES[filtering]
    assert report.public is False  # behind a NAT: never "public", whatever its filtering


def test_public_host_is_proven_by_the_dial_back() -> None:
    """[NAT-3.2.6] no NAT and the change-IP-and-port answer arrived: public."""
    report, _ = run(None)
    assert report.nat is False and report.public is True
    assert report.mapping is EIM and report.filtering is EIM
    assert report.port_preservation is True and report.allocation is Allocation.PRESERVED
    assert report.hairpinning is True  # a host's own address reaches itself


def test_mapped_equal_to_local_is_not_enough_to_be_public() -> None:
    """[NAT-3.2.6] without an alternate address nothing can dial back: unknown, not public."""
    report, _ = run(None, alternate=False)
    assert report.nat is False and report.public is None
    assert report.mapping is None and report.filtering is None


def test_without_an_alternate_address_mapping_and_filtering_are_unknown() -> None:
    """[NAT-3.3.1] a server without OTHER-ADDRESS: the rest is still measured."""
    report, discovery = run(FakeNat(allocation="sequential", delta=1), alternate=False)
    assert report.udp and not report.alternate
    assert report.mapping is None and report.filtering is None and report.public is None
    assert report.allocation is Allocation.SEQUENTIAL and report.allocation_delta == 1
    assert discovery.client.stats["requests"] == 4 + 1  # one per socket, and the hairpin probe


@pytest.mark.parametrize("delta", [1, 2, 7])
def test_sequential_allocation_and_its_delta(delta: int) -> None:
    """[NAT-3.2.4] address-and-port-dependent mapping, sequential ports: the delta is reported."""
    report, _ = run(FakeNat(mapping="apdm", allocation="sequential", delta=delta))
    assert report.allocation is Allocation.SEQUENTIAL and report.allocation_delta == delta
    assert len(report.samples) == 7  # four destinations from socket 0, three more sockets
    assert report.port_preservation is False


def test_random_allocation() -> None:
    """[NAT-3.2.4]"""
    report, _ = run(FakeNat(mapping="apdm", allocation="random"))
    assert report.allocation is Allocation.RANDOM and report.allocation_delta is None


def test_port_preservation() -> None:
    """[NAT-3.2.3]"""
    report, _ = run(FakeNat(allocation="preserve"))
    assert report.port_preservation is True and report.allocation is Allocation.PRESERVED
    assert report.mapped == ("198.18.7.7", 5000)


@pytest.mark.parametrize("hairpin", [True, False])
def test_hairpinning(hairpin: bool) -> None:
    """[NAT-3.2.5]"""
    report, _ = run(FakeNat(hairpin=hairpin))
    assert report.hairpinning is hairpin


def test_udp_blocked() -> None:
    """[NAT-3.3.1] no answer to test I: UDP blocked, everything else unknown, after the retransmissions."""
    report, _ = run(FakeNat(drop_all=True))
    assert not report.udp and report.mapped is None and report.mapping is None and report.public is None
    assert report.probes == DISCOVERY_RETRANSMIT.rc


def test_probe_budget() -> None:
    """[NAT-3.2.7] the worst case (dependent mapping, port-dependent filtering, no hairpin) stays within the budget."""
    report, _ = run(FakeNat(mapping="apdm", filtering="apdf", allocation="random"))
    # 4 mapping tests, 3 more sockets, then filtering II and III and the hairpin probe, 4 sends each.
    assert report.probes == 4 + 3 + 3 * DISCOVERY_RETRANSMIT.rc
    assert report.probes <= 20


def test_needs_two_sockets() -> None:
    with pytest.raises(LocalProtocolError):
        NatDiscovery(("198.18.0.1", 3478), [("10.0.0.2", 1)], 0.0, random=bytes)


def test_foreign_datagrams_are_ignored() -> None:
    """Anything else arriving on the sockets is counted, never raised."""
    discovery = NatDiscovery(("198.18.0.1", 3478), [("10.0.0.2", 1), ("10.0.0.2", 2)], 0.0, random=bytes)
    for junk in (b"", b"\x00" * 20, b"\x04hello", bytes(range(64))):
        discovery.receive_datagram(junk, ("198.18.0.1", 3478), 0.0, 0)
    assert discovery.stats["ignored"] == 4 and not discovery.done


def test_reports_become_punching_profiles() -> None:
    """spec/punch.md §2.1: what discovery measured, unknown (PUN-2.1.1) where it did not."""
    public, _ = run(None)
    assert public.to_profile() == pf.NatProfile(
        mapping=pf.Mapping.NONE,
        filtering=pf.Filtering.NONE,
        allocation=pf.Allocation.PRESERVING,
        hairpin=True,
    )
    symmetric, _ = run(FakeNat(mapping="apdm", filtering="adf", allocation="sequential", delta=3))
    profile = symmetric.to_profile()
    assert (profile.mapping, profile.filtering) == (
        pf.Mapping.ADDRESS_AND_PORT_DEPENDENT,
        pf.Filtering.ADDRESS_DEPENDENT,
    )
    assert (profile.allocation, profile.delta, profile.sequential) == (pf.Allocation.SEQUENTIAL, 3, True)
    lone, _ = run(FakeNat(allocation="random"), alternate=False)
    assert lone.to_profile() == pf.NatProfile(allocation=pf.Allocation.RANDOM)  # mapping, filtering unknown
    blocked, _ = run(FakeNat(drop_all=True))
    assert blocked.to_profile() == pf.NatProfile(udp_blocked=True)
    assert pf.decode_profile_untrusted(profile.encode()) == profile
