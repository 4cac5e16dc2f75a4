"""Fresh mappings (spec/rendezvous.md §4.6, spec/punch.md §3.4): the node's ``FreshTickets``, the
node passing a fresh Binding on as a FRESH to the client of the other side, and the puncher's
fresh Bindings, in memory.  The wire rules are the conformance cases rdv/fresh/* and punch/fresh/*;
these check what the cases cannot see: bounded memory, garbage, the client's event, the
puncher's bookkeeping."""

from __future__ import annotations

import random

from test_rendezvous_client import ALICE, BOB, NODE, World, pid

from p2pos.proto.nat import punch as pu
from p2pos.proto.nat import stun
from p2pos.proto.nat import stun_message as sm
from p2pos.proto.nat.profile import Allocation, Filtering, Mapping, NatProfile
from p2pos.proto.nat.punch_plan import plan
from p2pos.proto.rendezvous import messages as m
from p2pos.proto.rendezvous.client import FreshReceived, LookupAnswered
from p2pos.proto.rendezvous.fresh import MAX_FRESH, FreshTickets

TICKET = bytes(range(16))
SOURCE = ("198.51.100.7", 40100)
OTHER = ("198.18.0.2", 3479)
SEQ = NatProfile(
    mapping=Mapping.ADDRESS_AND_PORT_DEPENDENT,
    filtering=Filtering.ADDRESS_AND_PORT_DEPENDENT,
    allocation=Allocation.SEQUENTIAL,
    delta=1,
)
EIM = NatProfile(mapping=Mapping.ENDPOINT_INDEPENDENT, filtering=Filtering.ADDRESS_AND_PORT_DEPENDENT)


def _request(ticket: bytes = TICKET, *, leading: bool = True, txid: bytes = bytes(12)) -> bytes:
    return pu.fresh_request(ticket, txid, leading=leading)


def test_the_client_reports_a_fresh_and_does_not_take_it_for_an_answer() -> None:
    w = World()
    alice, _bob = w.add(ALICE, "alice"), w.add(BOB, "bob")
    w.run_until(1.0)
    alice.lookup(pid("bob"), w.now)
    w.run_until(1.2)
    answer = next(e for e in w.events[ALICE] if isinstance(e, LookupAnswered))
    assert answer.punch is not None
    ticket = answer.punch.ticket
    pending = alice.lookup(pid("bob"), w.now, introduce=False)  # a request the FRESH must not answer
    w.node.receive_datagram(_request(ticket, leading=False), SOURCE, w.now)  # bob's fresh Binding
    answers = []
    for datagrams, dest, _ in w.node.datagrams_to_send(w.now):
        for data in datagrams:
            if dest == SOURCE:
                answers.append(sm.decode_untrusted(data))
            else:  # the FRESH's record, to alice
                w.endpoints[dest].receive_data(data, NODE, w.now)  # type: ignore[index]
    assert len(answers) == 1 and answers[0].klass == sm.SUCCESS and answers[0].integrity_ok(ticket)
    w.run_until(1.3)
    fresh = [e for e in w.events[ALICE] if isinstance(e, FreshReceived)]
    assert fresh == [FreshReceived(node=fresh[0].node, peer_id=pid("bob"), observed=SOURCE, ticket_id=ticket[:8])]
    assert any(isinstance(e, LookupAnswered) and e.txid == pending for e in w.events[ALICE])
    assert not [e for e in w.events[BOB] if isinstance(e, FreshReceived)]


def test_a_fresh_for_a_side_whose_session_is_gone_is_not_sent() -> None:
    tickets = FreshTickets()
    tickets.add(TICKET, txid=1, asker=(b"a" * 32, 7), target=(b"t" * 32, 8), now=0.0)
    verdict = tickets.receive_untrusted(_request(leading=True), SOURCE, 1.0)
    assert verdict is not None and verdict.session == 8 and verdict.fresh is not None
    assert verdict.fresh.peer_id == b"a" * 32 and verdict.fresh.observed == SOURCE


def test_tickets_are_bounded_and_the_oldest_goes_first() -> None:
    tickets = FreshTickets(limit=3)
    made = [bytes([i]) * 16 for i in range(5)]
    for i, ticket in enumerate(made):
        tickets.add(ticket, txid=i, asker=(b"a" * 32, 1), target=(b"t" * 32, 2), now=i * 0.1)
    assert len(tickets) == 3 and tickets.stats["fresh_ticket_evicted"] == 2
    gone = tickets.receive_untrusted(_request(made[0]), SOURCE, 1.0)
    kept = tickets.receive_untrusted(_request(made[4]), SOURCE, 1.0)
    assert gone is not None and gone.answer is None and gone.fresh is None
    assert kept is not None and kept.answer is not None and kept.fresh is not None


def test_tickets_expire_without_a_timer() -> None:
    tickets = FreshTickets(lifetime=15.0)
    tickets.add(TICKET, txid=1, asker=(b"a" * 32, 1), target=(b"t" * 32, 2), now=0.0)
    verdict = tickets.receive_untrusted(_request(), SOURCE, 15.0)
    assert verdict is not None and verdict.answer is None and len(tickets) == 0


def test_the_fresh_limit_is_per_side() -> None:
    tickets = FreshTickets()
    tickets.add(TICKET, txid=1, asker=(b"a" * 32, 1), target=(b"t" * 32, 2), now=0.0)
    sent = [tickets.receive_untrusted(_request(leading=True, txid=bytes([i]) * 12), SOURCE, 1.0) for i in range(4)]
    assert [v is not None and v.fresh is not None for v in sent] == [True] * MAX_FRESH + [False] * (4 - MAX_FRESH)
    assert all(v is not None and v.answer is not None for v in sent)
    other = tickets.receive_untrusted(_request(leading=False), SOURCE, 1.0)
    assert other is not None and other.fresh is not None and other.session == 1


def test_other_stun_is_left_to_the_stun_server() -> None:
    tickets = FreshTickets()
    tickets.add(TICKET, txid=1, asker=(b"a" * 32, 1), target=(b"t" * 32, 2), now=0.0)
    probe = pu.probe(TICKET, bytes(12))  # a punch's probe names no side: not a fresh Binding
    bare = sm.encode(sm.BINDING, sm.REQUEST, bytes(12), [])
    for data in (probe, bare, b"", b"\x00\x01", pu.answer(TICKET, bytes(12), SOURCE)):
        assert tickets.receive_untrusted(data, SOURCE, 1.0) is None


def test_garbage_never_raises() -> None:
    """Fuzz invariant (STYLE.md 9): any bytes, and mutations of a valid fresh Binding."""
    tickets = FreshTickets()
    tickets.add(TICKET, txid=1, asker=(b"a" * 32, 1), target=(b"t" * 32, 2), now=0.0)
    rng = random.Random(13)
    valid = _request()
    for _ in range(3000):
        if rng.random() < 0.5:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(90)))
        else:
            flipped = bytearray(valid)
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
            data = bytes(flipped)
        verdict = tickets.receive_untrusted(data, SOURCE, 1.0)
        assert verdict is None or verdict.answer is None or verdict.fresh is None or data == valid


def test_fresh_username_parsing() -> None:
    assert pu.fresh_username_untrusted(pu.fresh_username(TICKET, leading=True)) == (TICKET[:8], True)
    assert pu.fresh_username_untrusted(pu.fresh_username(TICKET, leading=False)) == (TICKET[:8], False)
    lettered = bytes(range(0xA0, 0xB0))
    for bad in (b"", pu.ticket_id(TICKET), pu.ticket_id(TICKET) + b":x", pu.ticket_id(lettered).upper() + b":a"):
        assert pu.fresh_username_untrusted(bad) is None
    assert len(_request()) == 76


def _puncher(
    mine: NatProfile, theirs: NatProfile, *, leading: bool = True, fresh_to: m.Address | None = OTHER
) -> pu.Puncher:
    counter = iter(range(1, 10**6))
    return pu.Puncher(
        plan(mine, theirs, leading=leading),
        main=0,
        peer=("198.18.9.9", 50000),
        delta=theirs.delta,
        ticket=TICKET,
        rtt=0.05,
        random=lambda n: next(counter).to_bytes(n, "big"),
        now=0.0,
        fresh_to=fresh_to,
        leading=leading,
    )


def test_fresh_bindings_are_not_probes_and_their_answer_is_no_success() -> None:
    p = _puncher(SEQ, EIM)
    first = p.datagrams_to_send(0.0)
    assert first[0][1] == OTHER and all(a != OTHER for _, a, _ in first[1:])
    txid = sm.decode_untrusted(first[0][2]).transaction_id
    assert p.fresh_sent == 1 and p.probes_sent == len(first) - 1
    assert p.receive_datagram(0, OTHER, pu.answer(TICKET, txid, SOURCE), 0.03)
    assert p.fresh_mapped == SOURCE and p.outcome is None and p.next_event() is None
    assert not p.receive_datagram(0, OTHER, pu.answer(bytes(16), txid, SOURCE), 0.03)  # another key: not ours
    later = p.datagrams_to_send(0.05)
    assert [a for _, a, _ in later].count(OTHER) == 1 and p.fresh_sent == 2  # the second, answered or not
    assert p.receive_fresh(("198.18.9.9", 50500), 0.06) is False  # a side that does not predict


def test_a_peers_puncher_does_not_answer_a_fresh_binding() -> None:
    """PUN-5.2.2: a fresh Binding's USERNAME names no punch, so a puncher that gets one stays silent."""
    p = _puncher(EIM, SEQ, fresh_to=None)
    p.datagrams_to_send(0.0)
    assert not p.receive_datagram(0, SOURCE, _request(), 0.01)
    assert p.answers_sent == 0 and p.probes_heard == 0


def test_without_the_nodes_other_address_nothing_changes() -> None:
    with_fresh = _puncher(SEQ, SEQ, fresh_to=None)
    assert with_fresh.fresh_sent == 0 and with_fresh.get_timer() == 0.0
    sent = with_fresh.datagrams_to_send(0.0)
    assert sent and all(a[0] == "198.18.9.9" for _, a, _ in sent)  # the sequence at once, as before


def test_the_node_answers_a_fresh_binding_on_its_other_address_from_that_socket() -> None:
    """RDV-4.6.2: on any of its sockets, the answer from the socket the request reached; the FRESH on
    the other side's session; a request that names no ticket there is the STUN server's (420)."""
    w = World()
    w.node.stun = stun.BindingServer(primary=NODE, alternate=OTHER)
    alice, _bob = w.add(ALICE, "alice"), w.add(BOB, "bob")
    w.run_until(1.0)
    alice.lookup(pid("bob"), w.now)
    w.run_until(1.2)
    answer = next(e for e in w.events[ALICE] if isinstance(e, LookupAnswered))
    assert answer.punch is not None
    other_key = stun.socket_key(1, 1)
    w.node.receive_datagram(_request(answer.punch.ticket, leading=True), SOURCE, w.now, other_key)
    out = w.node.datagrams_to_send(w.now)
    stun_out = [(to, local) for _, to, local in out if to == SOURCE]
    assert stun_out == [(SOURCE, other_key)]
    assert [to for _, to, _ in out if to != SOURCE] == [BOB]  # the FRESH's record
    w.node.receive_datagram(_request(bytes(16)), SOURCE, w.now, other_key)  # no such ticket: dropped
    assert w.node.datagrams_to_send(w.now) == []
    w.node.receive_datagram(pu.probe(answer.punch.ticket, bytes(12)), SOURCE, w.now, other_key)
    ((refused,), _, _) = w.node.datagrams_to_send(w.now)[0]
    assert sm.decode_untrusted(refused).error() is not None  # a USERNAME it does not know: 420 (RDV-5.2)
