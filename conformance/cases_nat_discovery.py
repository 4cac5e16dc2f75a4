# ruff: noqa: E501 (a case title is one row of the table of spec/conformance.md §4, kept whole)
"""Behaviour discovery cases (spec/nat.md §3.2-§3.5): the IUT's ``nat_discovery`` run behind a
simulated NAT box, against a reference node with an alternate address (conformance/nat_net.py).

Each case builds one kind of box (``p2pos.proto.simulation.nat``), lets the run go in virtual
time until its ``nat_report`` event, and checks the verdicts against what the box does: the
IUT sees only the answers that box lets through, as it would behind a real router.
"""

from __future__ import annotations

from typing import Any

from p2pos.proto.nat import stun_message as sm
from p2pos.proto.simulation.nat import Allocation, FilteringBehaviour, MappingBehaviour, NatConfig

from .checks import CaseFailed, expect, expect_eq, short
from .iut import Iut
from .nat_net import LAN_IP, NODE, PUBLIC_IP, NatNet, Role, binding_request, decoded, text
from .registry import case

TESTS, UNKNOWN, PROFILE = "nat.md §3.2", "nat.md §3.3", "nat.md §3.5"
SEED = "5eed" * 8
EIM, ADM, APDM = (
    MappingBehaviour.ENDPOINT_INDEPENDENT,
    MappingBehaviour.ADDRESS_DEPENDENT,
    MappingBehaviour.ADDRESS_AND_PORT_DEPENDENT,
)
EIF, ADF, APDF = (
    FilteringBehaviour.ENDPOINT_INDEPENDENT,
    FilteringBehaviour.ADDRESS_DEPENDENT,
    FilteringBehaviour.ADDRESS_AND_PORT_DEPENDENT,
)


def locals_(ip: str = LAN_IP) -> list[str]:
    return [text((ip, 50000 + 2 * i)) for i in range(4)]


def discover(
    iut: Iut, config: NatConfig | None, *, alternate: bool = True, ip: str = LAN_IP, answer: Any = None
) -> tuple[dict[str, Any], Role, NatNet, float]:
    """Run the IUT's discovery behind ``config`` until its report; the report, role, network and end time."""
    role = Role(iut)
    net = NatNet(role, config, alternate=alternate, answer=answer)
    first = role.start("nat_discovery", 0.0, server=text(NODE), locals=locals_(ip), seed=SEED)
    end = net.run(first, 0.0, lambda: role.event("nat_report") is not None, 120.0)
    report = role.event("nat_report")
    if report is None:
        raise CaseFailed(f"no nat_report event by {end:.1f} s (timer {role.timer})")
    return report, role, net, end


def check(report: dict[str, Any], want: dict[str, Any]) -> None:
    for name, value in want.items():
        expect_eq(report.get(name), value, f"report field {name!r}")


def profile_of(report: dict[str, Any]) -> bytes:
    value = report.get("profile")
    if not isinstance(value, str):
        raise CaseFailed(f"the report's profile: expected hex, got {short(value)}")
    return bytes.fromhex(value)


@case(
    "nat/disc/1",
    section=TESTS,
    title="no NAT, no filter: public, proven by the dial-back; profile mapping none, filtering none",
    requirements=("NAT-3.2.1", "NAT-3.2.2", "NAT-3.2.3", "NAT-3.2.6", "NAT-3.5"),
)
def _(iut: Iut) -> str | None:
    report, _, _, _ = discover(iut, None, ip="198.18.3.3")
    check(
        report,
        {
            "udp": True,
            "nat": False,
            "public": True,
            "mapping": "endpoint-independent",
            "filtering": "endpoint-independent",
            "port_preservation": True,
            "allocation": "preserved",
        },
    )
    expect_eq(profile_of(report).hex(), "1101000000", "the profile (mapping none, filtering none, preserving)")
    return None


@case(
    "nat/disc/2",
    section=TESTS,
    title="a stateful firewall: the mapped address is the local one, yet not public without the dial-back",
    requirements=("NAT-3.2.2", "NAT-3.2.6", "NAT-3.5"),
)
def _(iut: Iut) -> str | None:
    report, _, _, _ = discover(iut, NatConfig(translate=False, filtering=APDF), ip="198.18.3.3")
    check(report, {"udp": True, "nat": False, "filtering": "address-and-port-dependent"})
    expect(report.get("public") is not True, f"public claimed without a dial-back: {report.get('public')}")
    expect_eq(profile_of(report).hex()[:2], "14", "the profile's mapping (none) and filtering (port-dependent)")
    return None


@case(
    "nat/disc/3",
    section=TESTS,
    title="endpoint-independent mapping, port-restricted filtering, port preservation (Linux masquerade)",
    requirements=("NAT-3.2.1", "NAT-3.2.2", "NAT-3.2.3", "NAT-3.2.4", "NAT-3.2.6", "NAT-3.5"),
)
def _(iut: Iut) -> str | None:
    report, _, _, _ = discover(iut, NatConfig(filtering=APDF, allocation=Allocation.PRESERVING))
    check(
        report,
        {
            "udp": True,
            "nat": True,
            "mapping": "endpoint-independent",
            "filtering": "address-and-port-dependent",
            "port_preservation": True,
            "allocation": "preserved",
            "mapped": text((PUBLIC_IP, 50000)),
        },
    )
    expect(report.get("public") is not True, "public claimed behind a NAT")
    expect_eq(profile_of(report).hex(), "2401000000", "the profile")
    return None


@case(
    "nat/disc/4",
    section=TESTS,
    title="full cone with random ports: endpoint-independent filtering, but not public (the mapping is not the local address)",
    requirements=("NAT-3.2.2", "NAT-3.2.3", "NAT-3.2.6"),
)
def _(iut: Iut) -> str | None:
    report, _, _, _ = discover(iut, NatConfig(filtering=EIF, allocation=Allocation.RANDOM))
    check(report, {"mapping": "endpoint-independent", "filtering": "endpoint-independent", "port_preservation": False})
    expect(report.get("public") is not True, f"public claimed for a translated address: {report.get('public')}")
    return None


@case(
    "nat/disc/5",
    section=TESTS,
    title="address-dependent mapping and filtering, sequential allocation: the delta",
    requirements=("NAT-3.2.1", "NAT-3.2.2", "NAT-3.2.4", "NAT-3.5"),
)
def _(iut: Iut) -> str | None:
    config = NatConfig(mapping=ADM, filtering=ADF, allocation=Allocation.SEQUENTIAL, delta=2, first_port=20000)
    report, _, _, _ = discover(iut, config)
    check(
        report,
        {
            "mapping": "address-dependent",
            "filtering": "address-dependent",
            "port_preservation": False,
            "allocation": "sequential",
            "allocation_delta": 2,
        },
    )
    expect_eq(profile_of(report).hex(), "3302000200", "the profile (sequential, delta 2)")
    return None


@case(
    "nat/disc/6",
    section=TESTS,
    title="address-and-port-dependent mapping with random ports (Linux fully-random)",
    requirements=("NAT-3.2.1", "NAT-3.2.4", "NAT-3.5"),
)
def _(iut: Iut) -> str | None:
    report, _, _, _ = discover(iut, NatConfig(mapping=APDM, filtering=APDF, allocation=Allocation.RANDOM))
    check(
        report,
        {
            "mapping": "address-and-port-dependent",
            "filtering": "address-and-port-dependent",
            "allocation": "random",
            "port_preservation": False,
        },
    )
    expect_eq(profile_of(report).hex(), "4403000000", "the profile")
    return None


@case(
    "nat/disc/7",
    section=TESTS,
    title="hairpinning: seen when the box passes the probe back, not when it does not",
    requirements=("NAT-3.2.5", "NAT-3.5"),
)
def _(iut: Iut) -> str | None:
    report, _, _, _ = discover(iut, NatConfig(filtering=APDF, hairpinning=True))
    check(report, {"hairpinning": True})
    expect_eq(profile_of(report)[4], 0x04, "the profile's flags (hairpin)")
    return None


@case(
    "nat/disc/8",
    section=UNKNOWN,
    title="UDP blocked: after 4 sends in 5.5 s, udp false and everything else unknown; profile UDP blocked",
    requirements=("NAT-2.4", "NAT-3.3.1", "NAT-3.2.7", "NAT-3.5", "PUN-2.1.1"),
)
def _(iut: Iut) -> str | None:
    report, role, _, end = discover(iut, NatConfig(udp_blocked=True))
    check(
        report,
        {
            "udp": False,
            "mapped": None,
            "mapping": None,
            "filtering": None,
            "public": None,
            "allocation": None,
            "hairpinning": None,
        },
    )
    times = [round(s.at, 3) for s in role.sent]
    expect_eq(times, [0.0, 0.5, 1.5, 3.5], "the send times of the first test (RTO 500 ms, Rc 4)")
    expect(len({s.data[8:20] for s in role.sent}) == 1, "one transaction id for the retransmissions")
    expect(5.4 <= end <= 5.6, f"the report came at {end:.2f} s, not 5.5 s")
    expect_eq(profile_of(report).hex(), "0000000002", "the profile (UDP blocked only)")
    return None


@case(
    "nat/disc/9",
    section=UNKNOWN,
    title="a node without an alternate address: mapping, filtering and public unknown, never guessed",
    requirements=("NAT-3.3.1", "NAT-3.5", "PUN-2.1.1"),
)
def _(iut: Iut) -> str | None:
    report, _, _, _ = discover(iut, NatConfig(filtering=APDF), alternate=False)
    check(report, {"udp": True, "nat": True, "mapping": None, "filtering": None, "public": None})
    expect_eq(profile_of(report)[0], 0x00, "the profile's mapping and filtering (unknown)")
    return None


@case(
    "nat/disc/10",
    section=TESTS,
    title="a run sends at most 40 datagrams with 4 sockets, and the filtering tests come from socket 1",
    requirements=("NAT-3.2.7", "NAT-3.2.2"),
)
def _(iut: Iut) -> str | None:
    _, role, net, _ = discover(iut, NatConfig(mapping=APDM, filtering=APDF, allocation=Allocation.RANDOM))
    expect(len(role.sent) <= 40, f"{len(role.sent)} datagrams sent")
    changes = [s for s in role.sent if _change(s.data)]
    expect(len(changes) >= 2, "no CHANGE-REQUEST asking for a change was sent")
    expect({s.local for s in changes} == {locals_()[1]}, f"CHANGE-REQUESTs left {sorted({s.local for s in changes})}")
    expect(all(s.to == NODE for s in changes), "a CHANGE-REQUEST went elsewhere than (IP1, P1)")
    socket1 = {s.to for s in role.sent if s.local == locals_()[1]}
    expect_eq(socket1, {NODE}, "where socket 1 sends")
    return f"{len(role.sent)} datagrams, {len(net.reached)} reached the node"


def _change(data: bytes) -> int:
    value = decoded(data, "a discovery request").get(sm.CHANGE_REQUEST)
    return 0 if value is None else sm.decode_change_request_untrusted(value)


@case(
    "nat/disc/11",
    section=TESTS,
    title="garbage, unmatched answers and duplicates are dropped; a 420 leaves filtering unknown",
    requirements=("NAT-2.5", "NAT-3.2.2", "NAT-3.3.1", "NAT-2.4"),
)
def _(iut: Iut) -> str | None:
    seen: set[bytes] = set()

    def twisted(data: bytes, source: Any, local: Any, now: float) -> Any:
        message = decoded(data, "a discovery request")
        change = message.get(sm.CHANGE_REQUEST)
        flags = 0 if change is None else sm.decode_change_request_untrusted(change)
        if flags:  # the filtering tests get 420, as from a node without an alternate address
            error = sm.encode(
                sm.BINDING,
                sm.ERROR,
                message.transaction_id,
                [
                    (sm.ERROR_CODE, sm.error_code(420, "Unknown Attribute")),
                    (sm.UNKNOWN_ATTRIBUTES, sm.unknown_attributes([sm.CHANGE_REQUEST])),
                ],
            )
            return [(error, local, source)]
        if message.transaction_id in seen:
            return None
        seen.add(message.transaction_id)
        junk = [b"\x00\x01garbage", binding_request(bytes(12)), sm.encode(sm.BINDING, sm.SUCCESS, bytes(12), [])]
        return [(j, local, source) for j in junk] + [(None, local, source)]

    def answer(data: bytes, source: Any, local: Any, now: float) -> Any:
        extra = twisted(data, source, local, now)
        if extra is None or extra[-1][0] is not None:
            return extra
        reals = net_ref[0].node_answer(data, source, local)
        return extra[:-1] + reals + reals  # the real answer twice: a duplicate

    net_ref: list[NatNet] = []
    role = Role(iut)
    net = NatNet(role, NatConfig(filtering=APDF), answer=answer)
    net_ref.append(net)
    first = role.start("nat_discovery", 0.0, server=text(NODE), locals=locals_(), seed=SEED)
    net.run(first, 0.0, lambda: role.event("nat_report") is not None, 120.0)
    report = role.event("nat_report")
    if report is None:
        raise CaseFailed("no nat_report")
    check(
        report, {"udp": True, "mapping": "endpoint-independent", "filtering": None, "mapped": text((PUBLIC_IP, 50000))}
    )
    expect(report.get("public") is not True, "public claimed from error answers")
    return None
