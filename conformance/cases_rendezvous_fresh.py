# ruff: noqa: E501 (a case title is one row of the table of spec/conformance.md §4, kept whole)
"""Rendezvous node cases for fresh mappings (spec/rendezvous.md §4.6): the fresh Binding of a
side of an introduction is answered and passed to the other side as a FRESH; unknown, expired or
forged ones draw nothing; at most two FRESH per side and ticket.

The same ``rdv_node`` mode as ``cases_rendezvous`` (spec/conformance.md §3.9).  A fresh Binding
comes from an address no peer has (a new mapping of the side's NAT), so its answer is among the
node's ``stray`` datagrams; the FRESH arrives on the other side's session.
"""

from __future__ import annotations

from p2pos.proto.nat import punch
from p2pos.proto.nat import stun_message as sm
from p2pos.proto.rendezvous import messages as m

from .cases_rendezvous import ALICE, BOB, Net, Peer, _punches, one
from .checks import expect, expect_eq, short
from .iut import Iut
from .registry import case

FRESH = "rendezvous.md §4.6"
#: New mappings of alice's and bob's NATs (their sessions are at ALICE and BOB).
ALICE_FRESH = ("198.51.100.1", 40107)
BOB_FRESH = ("2001:db8::2", 40213)


def _text(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _introduce(net: Net, txid: int, now: float) -> tuple[Peer, Peer, bytes]:
    """Alice and bob registered, alice introduced to bob: the two peers and the ticket."""
    alice, bob = net.peer("alice", ALICE), net.peer("bob", BOB)
    alice.register(now)
    bob.register(now)
    found, intro = _punches(alice, bob, m.Lookup(txid=txid, peer_id=bob.peer_id, introduce=True), now)
    expect_eq(found.ticket, intro.ticket, "the ticket of the FOUND and of the INTRODUCTION")
    return alice, bob, found.ticket


def _binding(
    net: Net, ticket: bytes, source: tuple[str, int], now: float, *, leading: bool, label: int, key: bytes | None = None
) -> list[bytes]:
    """A fresh Binding from ``source`` (``key``: another integrity key); the node's answers to it."""
    txid = bytes([label]) * 12
    data = punch.fresh_request(ticket, txid, leading=leading) if key is None else _signed(ticket, txid, leading, key)
    before = len(net.stray)
    net.receive(data, _text(source), now)
    net.pump(now)
    return [d for d, to in net.stray[before:] if to == _text(source)]


def _signed(ticket: bytes, txid: bytes, leading: bool, key: bytes) -> bytes:
    username = punch.fresh_username(ticket, leading=leading)
    return sm.encode(sm.BINDING, sm.REQUEST, txid, [(sm.USERNAME, username)], key=key, fingerprint=True)


def _fresh_only(peer: Peer) -> list[m.Message]:
    """What ``peer`` got since: FRESH messages only (anything else fails the case)."""
    got = peer.take()
    expect(all(isinstance(g, m.Fresh) for g in got), f"{peer.name} got {short(got)}")
    return got


def _check_answer(answers: list[bytes], ticket: bytes, source: tuple[str, int], label: int) -> None:
    expect_eq(len(answers), 1, "answers to a fresh Binding")
    message = sm.decode_untrusted(answers[0])
    expect_eq((message.method, message.klass), (sm.BINDING, sm.SUCCESS), "the answer: a Binding success")
    expect_eq(message.transaction_id, bytes([label]) * 12, "the answer's transaction id")
    value = message.get(sm.XOR_MAPPED_ADDRESS)
    expect(value is not None, "the answer has no XOR-MAPPED-ADDRESS")
    assert value is not None
    expect_eq(sm.decode_xor_address_untrusted(value, message.transaction_id), source, "XOR-MAPPED-ADDRESS")
    expect(message.integrity_ok(ticket), "the answer's MESSAGE-INTEGRITY does not hold under the ticket")
    expect(message.has(sm.FINGERPRINT), "the answer has no FINGERPRINT")
    expect(len(answers[0]) <= 76, f"an answer of {len(answers[0])} bytes to a 76-byte request")


@case(
    "rdv/fresh/1",
    section=FRESH,
    title="a fresh Binding naming an introduction's ticket is answered with the ticket's integrity, and the other side gets a FRESH with the sender's peer id, address and the ticket id",
    requirements=("RDV-4.6.1", "RDV-4.6.2", "RDV-5.2"),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    alice, bob, ticket = _introduce(net, 0x61, 0.0)
    answers = _binding(net, ticket, ALICE_FRESH, 1.0, leading=True, label=1)
    _check_answer(answers, ticket, ALICE_FRESH, 1)
    fresh = one(_fresh_only(bob))
    want = m.Fresh(txid=0x61, peer_id=alice.peer_id, observed=ALICE_FRESH, ticket_id=ticket[:8])
    expect_eq(fresh, want, "bob's FRESH")
    expect_eq(_fresh_only(alice), [], "FRESH to alice for her own Binding")
    answers = _binding(net, ticket, BOB_FRESH, 14.0, leading=False, label=2)  # 14 s on: still kept
    _check_answer(answers, ticket, BOB_FRESH, 2)
    want = m.Fresh(txid=0x61, peer_id=bob.peer_id, observed=BOB_FRESH, ticket_id=ticket[:8])
    expect_eq(one(_fresh_only(alice)), want, "alice's FRESH")


@case(
    "rdv/fresh/2",
    section=FRESH,
    title="a fresh Binding with an unknown ticket, a failed or missing integrity, another comprehension-required attribute, or an expired ticket draws no answer and no FRESH",
    requirements=("RDV-4.6.1", "RDV-4.6.3"),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    alice, bob, ticket = _introduce(net, 0x62, 0.0)
    other = bytes(range(0x70, 0x80))
    expect_eq(_binding(net, other, ALICE_FRESH, 1.0, leading=True, label=3), [], "answer to an unknown ticket")
    expect_eq(
        _binding(net, ticket, ALICE_FRESH, 1.0, leading=True, label=4, key=other), [], "answer to a forged integrity"
    )
    bare = sm.encode(
        sm.BINDING, sm.REQUEST, bytes([5]) * 12, [(sm.USERNAME, punch.fresh_username(ticket, leading=True))]
    )
    net.receive(bare, _text(ALICE_FRESH), 1.0)
    priority = sm.encode(
        sm.BINDING,
        sm.REQUEST,
        bytes([6]) * 12,
        [(sm.USERNAME, punch.fresh_username(ticket, leading=True)), (0x0024, bytes(4))],
        key=ticket,
        fingerprint=True,
    )
    net.receive(priority, _text(ALICE_FRESH), 1.0)
    net.pump(1.0)
    expect_eq([d for d, to in net.stray if to == _text(ALICE_FRESH)], [], "answers to the forged Bindings")
    expect_eq((_fresh_only(bob), _fresh_only(alice)), ([], []), "FRESH for forged Bindings")
    expect_eq(_binding(net, ticket, ALICE_FRESH, 15.5, leading=True, label=7), [], "answer after 15 s")
    expect_eq(_fresh_only(bob), [], "FRESH after 15 s")


@case(
    "rdv/fresh/3",
    section=FRESH,
    title="at most two FRESH per side and ticket: a third fresh Binding is answered but passed on no more",
    requirements=("RDV-4.6.4", "RDV-2.5"),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    alice, bob, ticket = _introduce(net, 0x63, 0.0)
    for label in (8, 9, 10):
        _check_answer(
            _binding(net, ticket, ALICE_FRESH, 0.5 + label / 100, leading=True, label=label), ticket, ALICE_FRESH, label
        )
    expect_eq(len(_fresh_only(bob)), 2, "FRESH to bob for alice's three Bindings")
    _binding(net, ticket, BOB_FRESH, 1.0, leading=False, label=11)
    expect_eq(len(_fresh_only(alice)), 1, "FRESH to alice for bob's Binding (his own two are left)")
