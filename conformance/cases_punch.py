# ruff: noqa: E501 (a case title is one row of the table of spec/conformance.md §4, kept whole)
"""Hole-punching cases (spec/punch.md): profiles, the strategy table, and one side's probes.

``profile_decode`` and ``punch_plan`` are checked against the wire form of §2.2 and the table of
§3.1 (the plans the reference derives, row by row).  The ``punch`` role (spec/conformance.md
§3.12) runs one side of a punch from socket ``main``; the runner plays the peer by hand: it
reads the probes (their bytes, destinations and times), answers them or not, and sends probes
of its own, right and wrong, in virtual time.
"""

from __future__ import annotations

import itertools

from p2pos.proto.nat import punch, punch_plan
from p2pos.proto.nat import stun_message as sm
from p2pos.proto.nat.profile import decode_profile_untrusted

from .checks import expect, expect_eq
from .iut import Iut
from .nat_net import Role, Sent, address_attr, decoded, fire, text
from .registry import case

PROFILE, PLAN, BUDGETS, PROBES = "punch.md §2.2", "punch.md §3.1", "punch.md §4", "punch.md §5"
#: Profiles in their wire form (punch.md §2.2).
OPEN, STABLE, ADDRESS, SEQUENTIAL, RANDOM = "1101000000", "2401000000", "2301000000", "4402000100", "4403000000"
UNKNOWN, BLOCKED, MAPPED, SEQ_DOWN = "0000000000", "0000000002", "4403000001", "3302fffe00"
PROFILES = (OPEN, STABLE, ADDRESS, SEQUENTIAL, RANDOM, UNKNOWN, BLOCKED, MAPPED, SEQ_DOWN)
TICKET = bytes(range(0x40, 0x50))
OTHER_TICKET = bytes(range(0x60, 0x70))
MAIN, PEER = "10.0.0.2:40000", ("198.18.5.5", 50000)
RTT = 0.1
SEED = "7075" * 8


def start(
    iut: Iut,
    mine: str,
    theirs: str,
    *,
    leading: bool = True,
    candidates: tuple[str, ...] = (),
    fresh_to: tuple[str, int] | None = None,
) -> Role:
    role = Role(iut)
    fields = {"fresh_to": text(fresh_to)} if fresh_to is not None else {}
    role.start(
        "punch",
        0.0,
        mine=mine,
        theirs=theirs,
        leading=leading,
        main=MAIN,
        peer=text(PEER),
        candidates=list(candidates),
        ticket=TICKET.hex(),
        rtt=RTT,
        seed=SEED,
        **fields,
    )
    return role


def fire_all(role: Role, until: float) -> list[Sent]:
    """Run the role's timers up to ``until``; everything it sent since it started."""
    fire(role, until)
    return list(role.sent)


def peer_probe(txid: bytes, ticket: bytes = TICKET, key: bytes | None = None) -> bytes:
    return sm.encode(
        sm.BINDING, sm.REQUEST, txid, [(sm.USERNAME, punch.ticket_id(ticket))], key=key or ticket, fingerprint=True
    )


def check_probe(s: Sent, what: str) -> bytes:
    """Check one probe's form (punch.md §5.1); its transaction id."""
    message = decoded(s.data, what)
    expect_eq((message.method, message.klass), (sm.BINDING, sm.REQUEST), f"{what}: a Binding request")
    expect_eq(message.get(sm.USERNAME), TICKET[:8].hex().encode(), f"{what}: USERNAME")
    expect(message.integrity_ok(TICKET), f"{what}: MESSAGE-INTEGRITY does not hold under the ticket")
    expect(message.has(sm.FINGERPRINT), f"{what}: no FINGERPRINT")
    expect_eq(len(s.data), 72, f"{what}: size")
    return message.transaction_id


@case(
    "punch/profile/1",
    section=PROFILE,
    title="a NAT profile's five bytes decode; other lengths, values, flags and deltas are malformed",
    requirements=("PUN-2.2.1",),
)
def _(iut: Iut) -> str | None:
    got = iut.ok("profile_decode", data="4402000100")
    expect_eq(
        {
            k: got.get(k)
            for k in ("mapping", "filtering", "allocation", "delta", "port_mapped", "udp_blocked", "hairpin")
        },
        {
            "mapping": "address-and-port-dependent",
            "filtering": "address-and-port-dependent",
            "allocation": "sequential",
            "delta": 1,
            "port_mapped": False,
            "udp_blocked": False,
            "hairpin": False,
        },
        "44 02 0001 00",
    )
    expect_eq(iut.ok("profile_decode", data="3302fffe07").get("delta"), -2, "a negative delta")
    for bad in (
        "44020001",
        "440200010000",
        "5402000100",
        "4502000100",
        "4404000000",
        "4402000108",
        "4402000000",
        "4402040100",
        "4402fbff00",
        "4401000100",
        "4403000500",
    ):
        expect_eq(iut.error("profile_decode", data=bad), "MALFORMED_MESSAGE", f"profile {bad}")
    return None


@case(
    "punch/plan/1",
    section=PLAN,
    title="both sides derive the reference's halves of one strategy for every pair of profiles",
    requirements=("PUN-3.1.1", "PUN-3.8.1"),
)
def _(iut: Iut) -> str | None:
    fields = ("direct", "dial", "predict", "predict_step", "rounds", "sockets", "scan")
    for a, b in itertools.product(PROFILES, repeat=2):
        halves = []
        for mine, theirs, leading in ((a, b, True), (b, a, False)):
            got = iut.ok("punch_plan", mine=mine, theirs=theirs, leading=leading)
            ref = punch_plan.plan(
                decode_profile_untrusted(bytes.fromhex(mine)),
                decode_profile_untrusted(bytes.fromhex(theirs)),
                leading=leading,
            )
            expect_eq(
                {k: got.get(k) for k in fields},
                {k: getattr(ref, k) for k in fields},
                f"plan(mine {mine}, theirs {theirs}, leading {leading})",
            )
            halves.append(got)
        expect_eq(halves[0]["direct"], halves[1]["direct"], f"{a} x {b}: both direct or both relay only")
    return f"{len(PROFILES) ** 2} pairs"


@case(
    "punch/probe/1",
    section=BUDGETS,
    title="a dial: probes carry the ticket, at 0, r, 3r, 7r ... at most 8, none after 5 s; then punch_failed",
    requirements=("PUN-4.1.1", "PUN-4.4.1"),
)
def _(iut: Iut) -> str | None:
    role = start(iut, STABLE, OPEN)
    sent = fire_all(role, 12.0)
    to_peer = [s for s in sent if s.to == PEER]
    expect(0 < len(to_peer) <= 8, f"{len(to_peer)} probes to the peer's address")
    for i, s in enumerate(to_peer):
        check_probe(s, f"probe {i}")
        expect_eq(s.local, MAIN, f"probe {i}'s socket")
    times = [round(s.at, 3) for s in to_peer]
    expect_eq(times, [0.0, 0.1, 0.3, 0.7, 1.5, 3.1], "the probe times (r = 100 ms, doubling gaps, within 5 s)")
    expect(len({check_probe(s, "p") for s in to_peer}) == len(to_peer), "a transaction id was used twice")
    failed = role.event("punch_failed")
    expect(failed is not None and role.event("punch_succeeded") is None, "no punch_failed after an unanswered dial")
    expect(all(s.at <= 5.0 for s in sent), "a probe after the 5-s deadline")
    return None


@case(
    "punch/probe/2",
    section=PROBES,
    title="a peer's probe is answered from its socket to its source with the ticket's integrity; a socket that probed only that source succeeds",
    requirements=("PUN-5.2.1", "PUN-5.3.1"),
)
def _(iut: Iut) -> str | None:
    role = start(iut, STABLE, OPEN)
    txid = bytes(range(12))
    out = [s for s in role.receive(peer_probe(txid), PEER, MAIN, 0.05) if decoded(s.data, "reply").klass == sm.SUCCESS]
    expect_eq(len(out), 1, "answers to the peer's probe")
    answer = out[0]
    expect_eq((answer.to, answer.local), (PEER, MAIN), "the answer's destination and socket")
    message = decoded(answer.data, "the answer")
    expect_eq(message.transaction_id, txid, "the answer's transaction id")
    expect_eq(address_attr(message, sm.XOR_MAPPED_ADDRESS, "answer"), PEER, "XOR-MAPPED-ADDRESS")
    expect(message.integrity_ok(TICKET), "the answer's MESSAGE-INTEGRITY does not hold under the ticket")
    expect(message.has(sm.FINGERPRINT), "the answer has no FINGERPRINT")
    expect_eq(len(answer.data), 64, "the answer's size over IPv4")
    won = role.event("punch_succeeded")
    expect(won is not None, "no punch_succeeded: the main socket probed only this source")
    assert won is not None
    expect_eq((won.get("local"), won.get("address")), (MAIN, text(PEER)), "the successful pair")
    return None


@case(
    "punch/probe/3",
    section=PROBES,
    title="a probe with another punch's USERNAME, a failed integrity check or no integrity draws no answer and has no effect",
    requirements=("PUN-5.2.2",),
)
def _(iut: Iut) -> str | None:
    role = start(iut, STABLE, OPEN)
    stranger = ("198.18.6.6", 40404)
    for what, data in (
        ("another ticket", peer_probe(bytes(12), OTHER_TICKET)),
        ("integrity under another key", peer_probe(bytes(12), TICKET, key=OTHER_TICKET)),
        (
            "no MESSAGE-INTEGRITY",
            sm.encode(sm.BINDING, sm.REQUEST, bytes(12), [(sm.USERNAME, punch.ticket_id(TICKET))], fingerprint=True),
        ),
    ):
        for source in (PEER, stranger):
            out = role.receive(data, source, MAIN, 0.01)
            expect_eq(out, [], f"datagrams sent for a probe with {what} from {text(source)}")
    expect_eq(role.events, [], "events after the wrong probes")
    later = fire(role, 1.0)
    expect(
        all(s.to == PEER for s in later),
        f"probes to others than the peer: {[text(s.to) for s in later if s.to != PEER]}",
    )
    return None


@case(
    "punch/probe/4",
    section=PROBES,
    title="success on the answer to a probe, from its destination to its socket; answers from elsewhere or to unknown ids are ignored; probing stops",
    requirements=("PUN-5.3.1", "PUN-4.4.1"),
)
def _(iut: Iut) -> str | None:
    role = start(iut, STABLE, OPEN)
    first = next(s for s in role.sent if s.to == PEER)
    txid = check_probe(first, "the first probe")
    elsewhere = (PEER[0], PEER[1] + 1)
    role.receive(punch.answer(TICKET, txid, ("198.18.1.1", 40000)), elsewhere, MAIN, 0.05)
    role.receive(punch.answer(TICKET, bytes(12), ("198.18.1.1", 40000)), PEER, MAIN, 0.05)
    role.receive(punch.answer(OTHER_TICKET, txid, ("198.18.1.1", 40000)), PEER, MAIN, 0.05)
    expect(
        role.event("punch_succeeded") is None, "success on an answer from elsewhere, unknown, or under another ticket"
    )
    role.receive(punch.answer(TICKET, txid, ("198.18.1.1", 40000)), PEER, MAIN, 0.06)
    won = role.event("punch_succeeded")
    expect(won is not None, "no punch_succeeded for the answer to the first probe")
    assert won is not None
    expect_eq((won.get("local"), won.get("address")), (MAIN, text(PEER)), "the successful pair")
    after = fire(role, 12.0)
    expect_eq([s for s in after if decoded(s.data, "after").klass == sm.REQUEST], [], "probes after the success")
    return None


@case(
    "punch/probe/5",
    section=BUDGETS,
    title="after the punch ends a peer's probes are answered for 5 s more, then no longer",
    requirements=("PUN-4.4.1", "PUN-5.2.1"),
)
def _(iut: Iut) -> str | None:
    role = start(iut, STABLE, OPEN)
    txid = check_probe(next(s for s in role.sent if s.to == PEER), "the first probe")
    role.receive(punch.answer(TICKET, txid, ("198.18.1.1", 40000)), PEER, MAIN, 0.1)
    expect(role.event("punch_succeeded") is not None, "no success")
    answered = role.receive(peer_probe(bytes(range(12))), PEER, MAIN, 5.0)
    expect_eq(len(answered), 1, "answers to a probe 4.9 s after the success")
    late = role.receive(peer_probe(bytes(range(1, 13))), PEER, MAIN, 5.2)
    expect_eq(late, [], "answers to a probe 5.1 s after the success")
    return None


@case(
    "punch/probe/6",
    section=PROBES,
    title="a probe from an address the socket did not probe alone triggers probes from that socket to it",
    requirements=("PUN-5.3.1",),
)
def _(iut: Iut) -> str | None:
    role = start(iut, STABLE, STABLE)
    newcomer = (PEER[0], 50123)  # the peer's NAT mapped its probe elsewhere
    out = role.receive(peer_probe(bytes(range(12))), newcomer, MAIN, 0.02)
    kinds = sorted((decoded(s.data, "out").klass, s.to) for s in out)
    expect((sm.SUCCESS, newcomer) in kinds, "the probe was not answered")
    expect(role.event("punch_succeeded") is None, "success on a request to a socket that probed another address")
    triggered = [s for s in out + fire(role, 0.5) if s.to == newcomer and decoded(s.data, "p").klass == sm.REQUEST]
    expect(len(triggered) >= 1, "no triggered probe to the new address")
    expect(triggered[0].at <= 0.02 + 1e-9, f"the first triggered probe left at {triggered[0].at} s, not at once")
    check_probe(triggered[0], "the triggered probe")
    return None


def predicted(role: Role, until: float = 5.0) -> list[Sent]:
    return [s for s in fire_all(role, until) if s.to[0] == PEER[0] and s.to != PEER]


@case(
    "punch/probe/7",
    section=BUDGETS,
    title="predicted ports: in order, 2 ms apart, the sequence at most twice; at most 16 ports, 28 and 19 when both predict",
    requirements=("PUN-4.2.1",),
)
def _(iut: Iut) -> str | None:
    role = start(iut, STABLE, SEQUENTIAL)
    sent = predicted(role)
    ports = [s.to[1] for s in sent]
    want = [PEER[1] + k for k in range(1, 17)]
    expect_eq(ports, want + want, "the predicted ports probed by a stable side (observed + k, twice)")
    gaps = [round(b.at - a.at, 4) for a, b in itertools.pairwise(sent[:16])]
    expect(all(abs(g - 0.002) < 1e-6 for g in gaps), f"gaps between predicted probes: {gaps}")
    iut_sent = len(sent)
    lead = predicted(start(iut, SEQUENTIAL, SEQUENTIAL, leading=True))
    follow = predicted(start(iut, SEQUENTIAL, SEQUENTIAL, leading=False))
    expect(len({s.to for s in lead}) <= 28 and len(lead) <= 56, f"the leader probed {len(lead)} predicted ports")
    expect(
        len({s.to for s in follow}) <= 19 and len(follow) <= 38, f"the follower probed {len(follow)} predicted ports"
    )
    expect_eq([s.to[1] for s in follow[:3]], [PEER[1] + 1, PEER[1] + 3, PEER[1] + 5], "the follower's first ports")
    expect(len(lead) + len(follow) <= 94, f"{len(lead) + len(follow)} probes in all")
    return f"{iut_sent}, {len(lead)}, {len(follow)} predicted probes"


@case(
    "punch/probe/8",
    section=BUDGETS,
    title="birthday, scattering side: 256 sockets, one probe each to the peer, within 128 ms",
    requirements=("PUN-4.3.1",),
)
def _(iut: Iut) -> str | None:
    role = start(iut, RANDOM, STABLE)
    sent = fire_all(role, 5.0)
    probes = [s for s in sent if decoded(s.data, "probe").klass == sm.REQUEST]
    expect(all(s.to == PEER for s in probes), "a probe to another address than the peer's observed one")
    sockets = [s.local for s in probes]
    expect(len(sockets) <= 256, f"{len(sockets)} probes from the scattering side")
    expect_eq(len(set(sockets)), len(sockets), "probes per socket (exactly one each)")
    expect(len(sockets) == 256, f"{len(sockets)} sockets probed, not 256")
    expect(max(s.at for s in probes) < 0.128 + 1e-9, f"the last socket's probe left at {max(s.at for s in probes)} s")
    return None


@case(
    "punch/probe/9",
    section=BUDGETS,
    title="birthday, stable side: at most 1,024 probes to distinct random ports, from 150 ms, at most 1,000 a second",
    requirements=("PUN-4.3.2",),
)
def _(iut: Iut) -> str | None:
    role = start(iut, STABLE, RANDOM)
    sent = [s for s in fire_all(role, 5.0) if decoded(s.data, "probe").klass == sm.REQUEST]
    expect(
        all(s.to[0] == PEER[0] and s.local == MAIN for s in sent),
        "a probe elsewhere than the peer's IP or from another socket",
    )
    ports = [s.to[1] for s in sent]
    expect(0 < len(ports) <= 1024, f"{len(ports)} probes")
    expect_eq(len(set(ports)), len(ports), "distinct ports")
    expect(all(1024 <= p <= 65535 for p in ports), "a port outside 1024-65535")
    expect(PEER[1] not in ports, "the scattering side's observed address was dialled")
    expect(min(s.at for s in sent) >= 0.15 - 1e-9, f"the scan started at {min(s.at for s in sent)} s")
    times = sorted(s.at for s in sent)
    worst = max(sum(1 for t in times[i:] if t < start_t + 1.0 - 1e-6) for i, start_t in enumerate(times))
    expect(worst <= 1000, f"{worst} probes within one second")
    return f"{len(ports)} probes"


@case(
    "punch/probe/10",
    section=PLAN,
    title="relay-only pairs send no probe towards the peer's NAT",
    requirements=("PUN-3.8.1",),
)
def _(iut: Iut) -> str | None:
    for mine, theirs in (
        (RANDOM, RANDOM),
        (RANDOM, SEQUENTIAL),
        (SEQUENTIAL, RANDOM),
        (BLOCKED, STABLE),
        (STABLE, BLOCKED),
    ):
        role = start(iut, mine, theirs)
        sent = fire_all(role, 12.0)
        towards = [s for s in sent if s.to[0] == PEER[0]]
        expect_eq(towards, [], f"probes towards the peer's NAT ({mine} x {theirs})")
    return None


# -- fresh mappings (punch.md §3.4, §3.5; rendezvous.md §4.6) ---------------------------------

FRESH = "punch.md §3.4"
#: The node's other address (nat.md §3.1), where a sequential side sends its fresh Bindings.
NODE_OTHER = ("198.18.0.3", 3479)


def fresh_bindings(sent: list[Sent], leading: bool) -> list[Sent]:
    """The fresh Bindings among ``sent`` (to NODE_OTHER), each checked for its form (rendezvous.md §4.6)."""
    out = [s for s in sent if s.to == NODE_OTHER]
    for s in out:
        message = decoded(s.data, "fresh Binding")
        expect_eq((message.method, message.klass), (sm.BINDING, sm.REQUEST), "a fresh Binding: a Binding request")
        name = TICKET[:8].hex() + (":a" if leading else ":t")
        expect_eq(message.get(sm.USERNAME), name.encode(), "a fresh Binding's USERNAME")
        expect(message.integrity_ok(TICKET), "a fresh Binding's MESSAGE-INTEGRITY does not hold under the ticket")
        expect(message.has(sm.FINGERPRINT), "a fresh Binding without FINGERPRINT")
        expect_eq(s.local, MAIN, "the socket of a fresh Binding")
    return out


def send_fresh(role: Role, address: tuple[str, int], now: float) -> list[Sent]:
    """Hand the role a FRESH for its punch (spec/conformance.md §3.12 ``punch_fresh``); what it sent at once."""
    return role.start("punch_fresh", now, address=text(address))


@case(
    "punch/fresh/1",
    section=FRESH,
    title="a sequential side the peer predicts sends 2 fresh Bindings (ticket id :a or :t) to the node's other address, r apart, the first before any probe",
    requirements=("PUN-3.4.1",),
)
def _(iut: Iut) -> str | None:
    for leading in (True, False):
        role = start(iut, SEQUENTIAL, STABLE, leading=leading, fresh_to=NODE_OTHER)
        first = list(role.sent)
        expect(bool(first) and first[0].to == NODE_OTHER, f"the first datagram is not a fresh Binding: {first[:1]}")
        txid = decoded(first[0].data, "fresh Binding").transaction_id
        node_answer = punch.answer(TICKET, txid, (PEER[0], 40999))
        role.receive(node_answer, NODE_OTHER, MAIN, 0.01)  # answered: the second goes all the same
        sent = fire_all(role, 6.0)
        fresh = fresh_bindings(sent, leading)
        expect_eq(len(fresh), 2, f"fresh Bindings (leading {leading})")
        expect(abs(fresh[1].at - fresh[0].at - RTT) < 1e-6, f"fresh Bindings at {[f.at for f in fresh]}, not r apart")
        expect(any(s.to == PEER for s in sent), "the sequential side did not dial the peer")
    for mine, theirs in ((STABLE, SEQUENTIAL), (RANDOM, STABLE), (SEQUENTIAL, RANDOM)):
        role = start(iut, mine, theirs, fresh_to=NODE_OTHER)
        expect_eq(fresh_bindings(fire_all(role, 6.0), True), [], f"fresh Bindings of {mine} facing {theirs}")
    return None


@case(
    "punch/fresh/2",
    section=FRESH,
    title="a FRESH re-bases a stable side's predicted probes at once (fresh + k, in order, twice), once per punch; a FRESH after the end or to a side that does not predict does nothing",
    requirements=("PUN-3.4.2", "PUN-4.2.1"),
)
def _(iut: Iut) -> str | None:
    role = start(iut, STABLE, SEQUENTIAL)
    fire_all(role, 0.3)
    fresh_port = PEER[1] + 500
    at_once = send_fresh(role, (PEER[0], fresh_port), 0.3)
    sent = [s for s in at_once + fire(role, 5.0) if s.to[0] == PEER[0] and s.to[1] > fresh_port]
    want = [fresh_port + k for k in range(1, 17)]
    expect_eq([s.to[1] for s in sent], want + want, "the probes after the FRESH (fresh + k, twice)")
    expect(sent[0].at == 0.3, f"the first re-based probe left at {sent[0].at}, not at once")
    role = start(iut, STABLE, SEQUENTIAL)
    fire_all(role, 0.3)
    send_fresh(role, (PEER[0], fresh_port), 0.3)
    fire_all(role, 1.0)
    again = send_fresh(role, (PEER[0], fresh_port + 1000), 1.0) + fire(role, 5.0)
    expect_eq([s for s in again if s.to[1] > fresh_port + 1000], [], "probes after a second FRESH")
    role = start(iut, STABLE, SEQUENTIAL)
    fire_all(role, 5.5)
    expect(role.event("punch_failed") is not None, "the punch did not fail at its deadline")
    late = send_fresh(role, (PEER[0], fresh_port), 5.5) + fire(role, 10.0)
    expect_eq([s for s in late if decoded(s.data, "datagram").klass == sm.REQUEST], [], "probes after a late FRESH")
    role = start(iut, SEQUENTIAL, STABLE)
    fire_all(role, 0.3)
    moved = send_fresh(role, (PEER[0], fresh_port), 0.3) + fire(role, 5.0)
    expect_eq([s for s in moved if s.to != PEER], [], "a side that does not predict probed elsewhere after a FRESH")
    return None


@case(
    "punch/fresh/3",
    section="punch.md §3.5",
    title="both sequential with fresh Bindings: the predicted sequence waits for the peer's FRESH and starts from it, or from the observed address 0.5 s after the start",
    requirements=("PUN-3.5.1", "PUN-3.4.2"),
)
def _(iut: Iut) -> str | None:
    role = start(iut, SEQUENTIAL, SEQUENTIAL, leading=True, fresh_to=NODE_OTHER)
    early = [s for s in fire_all(role, 0.2) if s.to[0] == PEER[0]]
    expect_eq(early, [], "probes to the peer before its FRESH")
    fresh_port = PEER[1] + 700
    sent = send_fresh(role, (PEER[0], fresh_port), 0.2) + fire(role, 5.0)
    ports = [s.to[1] for s in sent if s.to[0] == PEER[0]]
    expect_eq(ports[:28], [fresh_port + a for a in range(1, 29)], "the leader's sequence from the fresh port")
    expect(len(ports) <= 56, f"the leader sent {len(ports)} predicted probes")
    role = start(iut, SEQUENTIAL, SEQUENTIAL, leading=False, fresh_to=NODE_OTHER)
    sent = [s for s in fire_all(role, 5.0) if s.to[0] == PEER[0]]
    expect(
        bool(sent) and abs(sent[0].at - 0.5) < 1e-6, f"without a FRESH the follower's first probe left at {sent[:1]}"
    )
    expect_eq([s.to[1] for s in sent[:3]], [PEER[1] + 1, PEER[1] + 3, PEER[1] + 5], "the follower's first ports")
    return None
