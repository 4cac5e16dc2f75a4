"""``p2pos nat-check``'s sentences (adapters/natcheck.py, spec/nat.md §3.4) for the findings of each kind of router."""

from __future__ import annotations

from fake_nat import FakeNat, run

from p2pos.adapters.natcheck import describe
from p2pos.proto.nat.discovery import Behaviour, NatReport


def words(nat: FakeNat | None, **kwargs: bool) -> str:
    report, _ = run(nat, **kwargs)
    return "\n".join(describe(report))


def test_endpoint_independent_mapping_in_words() -> None:
    text = words(FakeNat(mapping="eim", filtering="apdf"))
    assert (
        "Your router keeps the same public port for every destination (endpoint-independent mapping): "
        "direct connections will work with most peers."
    ) in text
    assert "address-and-port-dependent filtering" in text and "No NAT" not in text
    assert "cannot be predicted" not in text  # random ports do not matter when the mapping is reused


def test_symmetric_sequential_router_in_words() -> None:
    text = words(FakeNat(mapping="apdm", allocation="sequential", delta=2, hairpin=True))
    assert "'symmetric NAT'" in text and "each +2 from the last" in text and "(hairpinning)" in text


def test_public_and_unknown_in_words() -> None:
    assert "No NAT / public" in words(None)
    unknown = words(None, alternate=False)
    assert "No NAT / public" not in unknown and "unknown" in unknown and "--alternate" in unknown


def test_no_nat_behind_a_firewall_is_not_public() -> None:
    """[NAT-3.2.6] mapped = local, but the dial-back did not arrive: a firewall, not "public"."""
    report = NatReport(
        server=("198.18.0.1", 3478),
        local=("198.18.5.5", 5000),
        udp=True,
        mapped=("198.18.5.5", 5000),
        nat=False,
        alternate=True,
        mapping=Behaviour.ENDPOINT_INDEPENDENT,
        filtering=Behaviour.ADDRESS_AND_PORT_DEPENDENT,
        public=False,
    )
    text = "\n".join(describe(report))
    assert "firewall" in text and "No NAT / public" not in text
