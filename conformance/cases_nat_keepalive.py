# ruff: noqa: E501 (a case title is one row of the table of spec/conformance.md §4, kept whole)
"""Keepalive and binding-timeout cases (spec/nat.md §4, §5).

``keepalive_interval`` and ``keepalive_flows`` are checked against the formulas of NAT-5.1 and
NAT-5.2; the ``keeper`` role's keepalives are answered or left unanswered by the runner in
virtual time (NAT-5.3); the ``timeout_search`` role runs behind a simulated NAT whose bindings
die after a known idle time, against a reference node (conformance/nat_net.py), so that its
verdicts can be checked against the truth (NAT-4.1-NAT-4.5).
"""

from __future__ import annotations

import itertools
from typing import Any

from p2pos.proto.nat import stun_message as sm
from p2pos.proto.simulation.nat import NatConfig

from .checks import CaseFailed, expect, expect_eq
from .iut import Iut
from .nat_net import LAN_IP, NODE, NatNet, Role, Sent, decoded, fire, only, text
from .registry import case

INTERVAL, FLOWS, KEEPER, SEARCH = "nat.md §5", "nat.md §5", "nat.md §5", "nat.md §4.3"
SEED = "6b65" * 8
LOCAL = (LAN_IP, 40000)
MAPPED, MOVED = ("198.18.7.7", 40000), ("198.18.7.7", 41000)


def expected_interval(timeout: float, srtt: float) -> float:
    """NAT-5.1 written out: K = max(T / 2, min(0.93 T, T - 2 w)), w = max(250 ms, 2 srtt + 50 ms)."""
    wait = max(0.25, 2 * srtt + 0.05)
    return max(timeout / 2, min(0.93 * timeout, timeout - 2 * wait))


@case(
    "nat/ka/1",
    section=INTERVAL,
    title="the keepalive interval of a learned timeout: 93% of it, less two reply waits when short, never below half",
    requirements=("NAT-5.1",),
)
def _(iut: Iut) -> str | None:
    for timeout, srtt in ((300.0, 0.05), (30.0, 0.0), (10.0, 0.2), (4.0, 0.5), (120.0, 1.0), (600.0, 0.03)):
        got = iut.ok("keepalive_interval", timeout=timeout, srtt=srtt).get("interval")
        want = expected_interval(timeout, srtt)
        expect(
            isinstance(got, int | float) and abs(float(got) - want) < 1e-6,
            f"timeout {timeout} s, srtt {srtt} s: interval {want:.4f} s expected, got {got}",
        )
    return None


@case(
    "nat/ka/2",
    section=FLOWS,
    title="keepalive flows: the node's only under endpoint-independent mapping and filtering; each peer's otherwise, or when unknown",
    requirements=("NAT-5.2",),
)
def _(iut: Iut) -> str | None:
    server, peers = text(NODE), ["198.18.9.1:5000", "198.18.9.2:6000"]
    for mapping, filtering, all_of_them in (
        ("endpoint-independent", "endpoint-independent", False),
        ("none", "none", False),
        ("none", "endpoint-independent", False),
        ("endpoint-independent", "address-and-port-dependent", True),
        ("endpoint-independent", "address-dependent", True),
        ("address-and-port-dependent", "endpoint-independent", True),
        ("unknown", "endpoint-independent", True),
        ("endpoint-independent", "unknown", True),
    ):
        got = iut.ok("keepalive_flows", mapping=mapping, filtering=filtering, server=server, peers=peers).get("flows")
        want = [server, *peers] if all_of_them else [server]
        expect_eq(got, want, f"flows under {mapping} mapping and {filtering} filtering")
    return None


def keeper(iut: Iut, interval: float = 20.0, srtt: float = 0.05) -> Role:
    role = Role(iut)
    role.start("keeper", 0.0, server=text(NODE), local=text(LOCAL), interval=interval, srtt=srtt, seed=SEED)
    return role


def reply(request: Sent, mapped: tuple[str, int], instance: bytes | None = None) -> bytes:
    txid = decoded(request.data, "a keepalive").transaction_id
    attributes = [(sm.XOR_MAPPED_ADDRESS, sm.xor_address(mapped, txid))]
    if instance is not None:
        attributes.append((sm.P2POS_INSTANCE, instance))  # rendezvous.md RDV-5.5
    return sm.encode(sm.BINDING, sm.SUCCESS, txid, attributes, fingerprint=True)


@case(
    "nat/ka/3",
    section=KEEPER,
    title="a keepalive is a Binding request at the interval; unanswered, it is sent again at once, then backing off; then BindingLost",
    requirements=("NAT-5.3",),
)
def _(iut: Iut) -> str | None:
    role = keeper(iut)
    expect_eq(role.sent, [], "datagrams at the start")
    first = only(fire(role, 20.0), "by 20 s")
    expect(abs(first.at - 20.0) < 1e-6, f"the first keepalive left at {first.at} s, not at the interval (20 s)")
    expect_eq((first.to, first.local), (NODE, text(LOCAL)), "the keepalive's destination and socket")
    message = decoded(first.data, "the keepalive")
    expect_eq((message.method, message.klass), (sm.BINDING, sm.REQUEST), "a Binding request")
    role.receive(reply(first, MAPPED), NODE, text(LOCAL), 20.05)
    expect(role.event("keepalive_answered") is not None, "no keepalive_answered event for the reply")
    second = only(fire(role, 40.0), "by 40 s")
    expect(abs(second.at - 40.0) < 1e-6, f"the next keepalive left at {second.at} s, not 40 s")
    sends = fire(role, 44.0)
    txid = decoded(second.data, "keepalive").transaction_id
    expect(len(sends) >= 3, f"{len(sends)} resends in 4 s of silence")
    expect(all(decoded(s.data, "resend").transaction_id == txid for s in sends), "a resend is not the same request")
    wait = 0.25  # max(250 ms, 2 x 0.05 + 50 ms)
    times = [round(s.at - 40.0, 3) for s in sends[:3]]
    expect_eq(times, [wait, 2 * wait, 4 * wait], "resend times after the unanswered keepalive (w, 2w, 4w)")
    lost = role.event("binding_lost")
    expect(lost is not None, "no binding_lost after 4 unanswered sends")
    return None


@case(
    "nat/ka/4",
    section=KEEPER,
    title="a reply naming another public address reports mapping_changed",
    requirements=("NAT-5.3",),
)
def _(iut: Iut) -> str | None:
    role = keeper(iut)
    first = only(fire(role, 20.0), "by 20 s")
    role.receive(reply(first, MAPPED), NODE, text(LOCAL), 20.05)
    expect(role.event("mapping_changed") is None, "mapping_changed on the first reply")
    second = only(fire(role, 40.0), "by 40 s")
    role.receive(reply(second, MOVED), NODE, text(LOCAL), 40.05)
    changed = role.event("mapping_changed")
    expect(changed is not None, "no mapping_changed for a reply naming another address")
    assert changed is not None
    expect_eq((changed.get("old"), changed.get("new")), (text(MAPPED), text(MOVED)), "mapping_changed's addresses")
    return None


@case(
    "nat/ka/5",
    section=KEEPER,
    title="a reply naming another node instance than the last reports node_restarted; a reply without one reports nothing",
    requirements=("NAT-5.3", "RDV-7.8"),
)
def _(iut: Iut) -> str | None:
    role = keeper(iut)
    first, second = bytes.fromhex("1111111111111111"), bytes.fromhex("2222222222222222")
    for at, instance in ((20.0, first), (40.0, None), (60.0, first)):
        sent = only(fire(role, at), f"by {at:g} s")
        role.receive(reply(sent, MAPPED, instance), NODE, text(LOCAL), at + 0.05)
        what = "the first instance" if instance is not None else "no instance"
        expect(role.event("node_restarted") is None, f"node_restarted on a reply with {what} at {at:g} s")
    sent = only(fire(role, 80.0), "by 80 s")
    role.receive(reply(sent, MAPPED, second), NODE, text(LOCAL), 80.05)
    restarted = role.event("node_restarted")
    expect(restarted is not None, "no node_restarted for a reply naming another instance")
    assert restarted is not None
    expect_eq((restarted.get("old"), restarted.get("new")), (first.hex(), second.hex()), "node_restarted's instances")
    expect(role.event("mapping_changed") is None, "mapping_changed, though the address stayed")
    return None


def spares() -> list[str]:
    return [text((LAN_IP, 41000 + i)) for i in range(18)]


def search(iut: Iut, timeout: float, answer: Any = None) -> tuple[Role, NatNet, list[float]]:
    """Run the IUT's search behind a NAT whose bindings die ``timeout`` s after their last outbound packet."""
    role = Role(iut)
    net = NatNet(role, NatConfig(timeout=timeout), alternate=False, answer=answer)
    first = role.start("timeout_search", 0.0, server=text(NODE), control=text(LOCAL), spares=spares(), seed=SEED)
    intervals: list[float] = []

    def done() -> bool:
        value = role.last.get("interval")
        if isinstance(value, int | float):
            intervals.append(float(value))
        return any(e.get("type") in ("timeout_learned", "timeout_search_failed") for e in role.events)

    net.run(first, 0.0, done, 700.0)
    return role, net, intervals


def learned(role: Role) -> dict[str, Any]:
    result = role.event("timeout_learned")
    if result is None:
        raise CaseFailed(f"no timeout_learned event; events {role.events}")
    return result


@case(
    "nat/bt/1",
    section=SEARCH,
    title="the search brackets the router's timeout within 8% in 600 s, and the interval follows NAT-5.1",
    requirements=("NAT-4.3", "NAT-4.4", "NAT-4.1"),
)
def _(iut: Iut) -> str | None:
    details = []
    for timeout in (45.0, 130.0, 400.0):
        role, _, _ = search(iut, timeout)
        result = learned(role)
        lo, high = float(result["timeout"]), float(result["high"])
        expect(lo < timeout <= high + 0.5, f"router {timeout} s: learned {lo} s, high {high} s")
        expect(high <= 1.08 * lo + 0.5, f"router {timeout} s: bracket ({lo}, {high}] wider than 8%")
        last = max(s.at for s in role.sent)
        expect(last <= 600.0, f"router {timeout} s: the search still sent at {last:.1f} s")
        interval = float(result["interval"])
        expect(abs(interval - expected_interval(lo, 0.0)) < 0.01 * lo, f"interval {interval} s for a learned {lo} s")
        details.append(f"{timeout:g}->{lo:g}")
    return ", ".join(details)


def tests_of(role: Role) -> list[tuple[Sent, int]]:
    out = []
    for s in role.sent:
        value = decoded(s.data, "a search request").get(sm.RESPONSE_PORT)
        if value is not None:
            out.append((s, int.from_bytes(value[:2], "big")))
    return out


@case(
    "nat/bt/2",
    section="nat.md §4.1",
    title="tests leave the control socket with RESPONSE-PORT; each spare is warmed twice, 3 s apart, and idle until its test",
    requirements=("NAT-4.1", "NAT-4.2"),
)
def _(iut: Iut) -> str | None:
    role, _, _ = search(iut, 100.0)
    learned(role)
    tests = tests_of(role)
    expect(len(tests) > 0, "no test request carried RESPONSE-PORT")
    for test, port in tests:
        expect_eq((test.local, test.to), (text(LOCAL), NODE), "a test's socket and destination")
        spare = text((LAN_IP, port))  # the NAT preserves ports: the public port is the spare's own
        before = [s for s in role.sent if s.local == spare and s.at <= test.at]
        expect(len(before) >= 2, f"spare {spare} tested at {test.at:.1f} s after {len(before)} warm-up sends")
        txids = list(dict.fromkeys(decoded(s.data, "warm-up").transaction_id for s in before))
        expect(len(txids) >= 2, f"spare {spare}: one warm-up exchange before its test")
        starts = [min(s.at for s in before if decoded(s.data, "w").transaction_id == t) for t in txids[-2:]]
        expect(starts[1] - starts[0] >= 3.0 - 1e-6, f"spare {spare}: warm-ups {starts[1] - starts[0]:.2f} s apart")
    return f"{len(tests)} test requests"


@case(
    "nat/bt/3",
    section="nat.md §4.1",
    title="a node that answers tests on the control socket (ignoring RESPONSE-PORT) ends the search without a guess",
    requirements=("NAT-4.1",),
)
def _(iut: Iut) -> str | None:
    def ignore_response_port(data: bytes, source: Any, local: Any, now: float) -> Any:
        message = decoded(data, "request")
        if message.get(sm.RESPONSE_PORT) is None:
            return None
        answer = sm.encode(
            sm.BINDING,
            sm.SUCCESS,
            message.transaction_id,
            [(sm.XOR_MAPPED_ADDRESS, sm.xor_address(source, message.transaction_id))],
            fingerprint=True,
        )
        return [(answer, local, source)]

    role, _, _ = search(iut, 100.0, ignore_response_port)
    expect(role.event("timeout_learned") is None, "a timeout learned from answers on the control socket")
    expect(role.event("timeout_search_failed") is not None, "the search did not end with a failure")
    return None


@case(
    "nat/bt/4",
    section="nat.md §4.1",
    title="a calibration unanswered twice ends the search without a guess",
    requirements=("NAT-4.1",),
)
def _(iut: Iut) -> str | None:
    def drop_tests(data: bytes, source: Any, local: Any, now: float) -> Any:
        return [] if decoded(data, "request").get(sm.RESPONSE_PORT) is not None else None

    role, _, _ = search(iut, 100.0, drop_tests)
    expect(role.event("timeout_learned") is None, "a timeout learned with no test answered")
    failed = role.event("timeout_search_failed")
    expect(failed is not None, "the search did not end with a failure")
    last = max(s.at for s in role.sent)
    expect(last < 60.0, f"the search went on to {last:.1f} s after its calibrations went unanswered")
    return None


@case(
    "nat/bt/5",
    section="nat.md §4.5",
    title="while learning, the interval only grows, from that of 10 s, and stays below the real timeout",
    requirements=("NAT-4.5",),
)
def _(iut: Iut) -> str | None:
    role, _, intervals = search(iut, 130.0)
    learned(role)
    expect(len(intervals) > 2, "the answers carry no 'interval'")
    floor = expected_interval(10.0, 0.0)
    expect(intervals[0] >= floor - 1e-6, f"the first interval {intervals[0]} s is below that of 10 s ({floor} s)")
    expect(all(b >= a - 1e-9 for a, b in itertools.pairwise(intervals)), "the interval shrank while learning")
    expect(max(intervals) < 130.0, f"an interval of {max(intervals)} s for a 130-s router")
    return f"{intervals[0]:.2f} s to {intervals[-1]:.2f} s"
