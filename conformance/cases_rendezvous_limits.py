"""Rendezvous node cases: STUN Binding, stateless resets, leases, rate limits, amplification.

The same ``rdv_node`` mode as ``cases_rendezvous`` (spec/conformance.md §3.9).  STUN messages
are built and read here as RFC 8489 lays them out, and reset tokens are recomputed with
``hashlib`` from spec/rendezvous.md §6.1, not taken from the core.  Cases that need a limit
other than the default pass it in ``config``; an IUT that cannot set it exits 127 for them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct

from p2pos.proto.rendezvous import messages as m
from p2pos.proto.session.session import SecureSession
from p2pos.proto.session.wire import PacketType

from .cases_rendezvous import ALICE, BOB, CAROL, Net, error_code, host_port, one
from .checks import expect, expect_eq, short
from .iut import Iut
from .reference import IUT, Party, events_of, nonce_source, out_of
from .registry import case

STUN = "rendezvous.md §5"
RESET = "rendezvous.md §6"
LIMITS = "rendezvous.md §8"
LEASE = "rendezvous.md §4.1"
COOKIE = 0x2112A442
RESET_TYPE = 0x0B
UNKNOWN_INDEX = 0x0DEAD001


# -- STUN Binding (§5) ----------------------------------------------------------------------


def stun_message(mtype: int, txid: bytes, attributes: bytes = b"", cookie: int = COOKIE) -> bytes:
    """A STUN message (RFC 8489 §5): type, length, magic cookie, transaction id, attributes."""
    return struct.pack(">HHI", mtype, len(attributes), cookie) + txid + attributes


def attribute(atype: int, value: bytes) -> bytes:
    return struct.pack(">HH", atype, len(value)) + value + bytes(-len(value) % 4)


def xor_mapped_address(response: bytes, txid: bytes) -> tuple[str, int]:
    """The address of a Binding success response whose attributes are XOR-MAPPED-ADDRESS and then
    P2POS-INSTANCE (type 0xCF50, 8 bytes: rendezvous.md RDV-5.5)."""
    expect(len(response) >= 24, f"STUN response of {len(response)} bytes")
    mtype, length, cookie = struct.unpack(">HHI", response[:8])
    expect_eq((mtype, cookie, response[8:20].hex()), (0x0101, COOKIE, txid.hex()), "type, cookie, transaction id")
    expect_eq(length, len(response) - 20, "STUN message length")
    atype, alen = struct.unpack(">HH", response[20:24])
    expect_eq(atype, 0x0020, "the first attribute (XOR-MAPPED-ADDRESS)")
    expect_eq(24 + alen + 12, len(response), "XOR-MAPPED-ADDRESS and P2POS-INSTANCE as the only attributes")
    expect_eq(response[24 + alen : 28 + alen].hex(), "cf500008", "P2POS-INSTANCE (0xCF50, 8 bytes) after it")
    family, port = response[25], struct.unpack(">H", response[26:28])[0] ^ (COOKIE >> 16)
    expect(family in (1, 2) and alen == (8 if family == 1 else 20), f"family {family} with {alen} bytes")
    mask = struct.pack(">I", COOKIE) + (txid if family == 2 else b"")
    raw = bytes(a ^ b for a, b in zip(response[28 : 24 + alen], mask, strict=True))
    return str(ipaddress.ip_address(raw)), port


@case(
    "rdv/stun/1",
    section=STUN,
    title="a STUN Binding request from IPv4 gets 44 bytes: XOR-MAPPED-ADDRESS, the node's one instance",
    requirements=("RDV-2.1", "RDV-5.1", "RDV-5.4", "RDV-5.5"),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    txid = bytes.fromhex("b7e7a701bc34d686fa87dfae")
    request = stun_message(0x0001, txid)
    ((response, to),) = net.receive(request, ALICE, 0.0)
    expect_eq(to, ALICE, "the response's destination")
    expect_eq(len(response), 44, "response length")
    expect_eq(xor_mapped_address(response, txid), host_port(ALICE), "XOR-MAPPED-ADDRESS")
    ((again, _),) = net.receive(stun_message(0x0001, bytes(12)), BOB, 1.0)
    expect_eq(again[-8:].hex(), response[-8:].hex(), "the instance of a later answer")


@case(
    "rdv/stun/2",
    section=STUN,
    title="a STUN Binding request from IPv6 gets 56 bytes: its XOR-MAPPED-ADDRESS and the node's instance",
    requirements=("RDV-5.1", "RDV-5.4", "RDV-5.5"),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    txid = bytes(range(12))
    ((response, to),) = net.receive(stun_message(0x0001, txid), BOB, 0.0)
    expect_eq(to, BOB, "the response's destination")
    expect_eq(len(response), 56, "response length")
    expect_eq(xor_mapped_address(response, txid), host_port(BOB), "XOR-MAPPED-ADDRESS")


@case(
    "rdv/stun/3",
    section=STUN,
    title="comprehension-optional attributes are ignored; a comprehension-required one gets no success",
    requirements=("RDV-5.1", "RDV-5.2"),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    txid = bytes(range(1, 13))
    optional = attribute(0x8022, b"conformance")  # SOFTWARE
    ((response, _),) = net.receive(stun_message(0x0001, txid, optional), ALICE, 0.0)
    expect_eq(xor_mapped_address(response, txid), host_port(ALICE), "answer to a request with SOFTWARE")
    required = attribute(0x0006, b"user:name")  # USERNAME
    for answer, _ in net.receive(stun_message(0x0001, txid, required), ALICE, 0.1):
        expect(answer[:2] != b"\x01\x01", "a Binding success response to a request with USERNAME")


@case(
    "rdv/stun/4",
    section=STUN,
    title="STUN datagrams other than Binding requests are dropped",
    requirements=("RDV-5.3",),
)
def _(iut: Iut) -> str:
    net = Net(iut)
    txid = bytes(12)
    xor = attribute(0x0020, bytes.fromhex("0001a1472112a443"))
    others = [
        ("Binding success response", stun_message(0x0101, txid, xor)),
        ("Binding indication", stun_message(0x0011, txid)),
        ("Allocate request", stun_message(0x0003, txid)),
        ("wrong magic cookie", stun_message(0x0001, txid, cookie=0x12345678)),
        ("length beyond the datagram", stun_message(0x0001, txid)[:2] + b"\x00\x08" + stun_message(0x0001, txid)[4:]),
        ("19 bytes", stun_message(0x0001, txid)[:19]),
    ]
    for why, datagram in others:
        expect_eq(net.receive(datagram, ALICE, 0.0), [], f"answer to a {why}")
    return f"{len(others)} dropped"


# -- stateless reset (§6) --------------------------------------------------------------------


def reference_token(index: int) -> bytes:
    """The token of spec/rendezvous.md §6.1 for the IUT's seed, recomputed with hashlib."""
    key = hashlib.blake2b(IUT.seed, digest_size=32, person=b"p2pos-reset-key").digest()
    return hashlib.blake2b(struct.pack(">I", index), digest_size=16, key=key).digest()


def record_like(ptype: int, index: int, length: int) -> bytes:
    """A datagram shaped like a record (type, receiver index, epoch, counter, filler) of ``length`` bytes."""
    return (bytes((ptype,)) + struct.pack(">IBQ", index, 0, 7) + bytes(range(256)) * 300)[:length]


def check_reset(reset: bytes, trigger: int, token: bytes | None) -> None:
    expect_eq(reset[:1].hex(), "0b", "the reset's type")
    expect_eq(len(reset), min(trigger - 1, 64), f"the length of a reset drawn by {trigger} bytes")
    expect(21 <= len(reset) < trigger, f"a reset of {len(reset)} bytes for a trigger of {trigger}")
    if token is not None:
        expect_eq(reset[-16:].hex(), token.hex(), "the reset token (the last 16 bytes)")


@case(
    "rdv/reset/1",
    section=RESET,
    title="a record for a session the node closed draws a reset with the REGISTERED token",
    requirements=("RDV-6.2.1", "RDV-6.2.2", "RDV-4.1.6"),
)
def _(iut: Iut) -> str:
    net = Net(iut)
    alice = net.peer("alice", ALICE)
    registered = alice.register(0.0, lease=30)
    expect_eq(registered.lease, 30, "lease granted")
    keepalive = alice.capture(10.0)  # sealed now, delivered after the session is gone
    net.timer(31.0)
    expect(bool(alice.closed), "the node did not close the session at the end of its lease")
    ((reset, to),) = net.receive(keepalive, ALICE, 32.0)
    expect_eq(to, ALICE, "the reset's destination")
    check_reset(reset, len(keepalive), registered.reset_token)
    return f"{len(reset)}-byte reset for a {len(keepalive)}-byte KEEPALIVE"


@case(
    "rdv/reset/2",
    section=RESET,
    title="no reset for a datagram shorter than a record, other types, or a record of a live session",
    requirements=("RDV-6.2.1", "RDV-6.2.3"),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    alice = net.peer("alice", ALICE)
    alice.register(0.0)
    assert alice.node_index is not None
    quiet = [
        ("a 29-byte DATA", record_like(PacketType.DATA, UNKNOWN_INDEX, 29)),
        ("a 21-byte KEEPALIVE", record_like(PacketType.KEEPALIVE, UNKNOWN_INDEX, 21)),
        ("a CLOSE", record_like(PacketType.CLOSE, UNKNOWN_INDEX, 60)),
        ("a CONFIRM", record_like(PacketType.CONFIRM, UNKNOWN_INDEX, 62)),
        ("a FINISH", record_like(PacketType.FINISH, UNKNOWN_INDEX, 200)),
        ("a RESPONSE", record_like(PacketType.RESPONSE, UNKNOWN_INDEX, 235)),
        ("a reset", record_like(RESET_TYPE, UNKNOWN_INDEX, 64)),
        ("type 0x0f", record_like(0x0F, UNKNOWN_INDEX, 64)),
        ("a forged DATA for alice's session", record_like(PacketType.DATA, alice.node_index, 80)),
    ]
    for why, datagram in quiet:
        expect_eq(net.receive(datagram, CAROL, 1.0), [], f"answer to {why}")
    answer = one(alice.request(m.Register(txid=3, lease=0), 2.0))
    expect(isinstance(answer, m.Registered), f"alice's session after the forgery: {short(answer)}")


@case(
    "rdv/reset/3",
    section=RESET,
    title="after a restart the reset carries the same token, and the peer registers again",
    requirements=("RDV-6.1.1", "RDV-6.2.1", "CONF-3.9.4"),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    alice, bob = net.peer("alice", ALICE), net.peer("bob", BOB)
    registered = alice.register(0.0)
    net.restart(5.0)
    trigger = alice.capture(6.0)
    ((reset, _),) = net.receive(trigger, ALICE, 6.0)
    check_reset(reset, len(trigger), registered.reset_token)
    alice.connect(7.0)  # the reset ended the session: connect and register again at once
    again = alice.register(7.0)
    expect_eq(again.observed, host_port(ALICE), "observed address after the restart")
    bob.register(8.0)
    found = one(bob.request(m.Lookup(txid=5, peer_id=alice.peer_id, introduce=False), 9.0))
    expect(isinstance(found, m.Found) and found.observed == host_port(ALICE), f"lookup: {short(found)}")


@case(
    "rdv/reset/4",
    section="rendezvous.md §6.1",
    title="the reset token is BLAKE2b-128 of the session index under the key derived from the seed",
    requirements=("RDV-6.1.2",),
)
def _(iut: Iut) -> str:
    net = Net(iut)
    alice = net.peer("alice", ALICE)
    registered = alice.register(0.0)
    assert alice.node_index is not None
    expect_eq(registered.reset_token.hex(), reference_token(alice.node_index).hex(), "token of §6.1")
    return f"index {alice.node_index:#010x}"


@case(
    "rdv/reset/5",
    section=RESET,
    title="a reset is min(trigger - 1, 64) bytes, for DATA and KEEPALIVE of any size",
    requirements=("RDV-6.2.1", "RDV-6.2.2"),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    for i, (ptype, length) in enumerate(((PacketType.DATA, 30), (PacketType.DATA, 65), (PacketType.KEEPALIVE, 1200))):
        ((reset, _),) = net.receive(record_like(ptype, UNKNOWN_INDEX + i, length), CAROL, 0.0)
        check_reset(reset, length, None)  # the token of an index the node never gave is its own business


@case(
    "rdv/reset/6",
    section="rendezvous.md §6.2",
    title="an endpoint drops a stateless reset like an unassigned type: no event, no answer",
    requirements=("RDV-6.2.4", "SES-4.1.5"),
)
def _(iut: Iut) -> None:
    iut.ok("endpoint", seed=IUT.seed, static=IUT.static, config={})
    for length in (29, 64):
        answer = iut.ok("receive", data=record_like(RESET_TYPE, UNKNOWN_INDEX, length), now=0.0, addr="node")
        expect_eq((out_of(answer), events_of(answer)), ([], []), f"answer to a {length}-byte reset")


# -- leases and registration deadlines (§4.1, §4.3) ----------------------------------------------


@case(
    "rdv/lease/1",
    section=LEASE,
    title="at the end of its lease a peer is forgotten and its session closed",
    requirements=("RDV-4.1.6", "CONF-3.9.3"),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    alice, bob = net.peer("alice", ALICE), net.peer("bob", BOB)
    alice.register(0.0, lease=30)
    bob.register(0.5, lease=3600)
    net.timer(29.9)
    found = one(bob.request(m.Lookup(txid=1, peer_id=alice.peer_id, introduce=False), 29.9))
    expect(isinstance(found, m.Found), f"lookup before the end of the lease: {short(found)}")
    expect_eq(alice.closed, [], "alice's session before the end of the lease")
    net.timer(30.0)
    expect(bool(alice.closed), "alice's session was not closed at the end of its lease")
    answer = one(bob.request(m.Lookup(txid=2, peer_id=alice.peer_id, introduce=False), 30.0))
    expect_eq(answer, m.NotFound(txid=2, peer_id=alice.peer_id), "lookup after the lease")


@case(
    "rdv/lease/2",
    section="rendezvous.md §4.3",
    title="a session that does not register within register_timeout (5 s) is closed",
    requirements=("RDV-4.3.1",),
)
def _(iut: Iut) -> None:
    net = Net(iut, {"register_timeout": 5.0})
    alice = net.peer("alice", ALICE)
    alice.connect(0.0)
    net.timer(4.9)
    expect_eq(alice.closed, [], "the session before the deadline")
    net.timer(5.0)
    expect(bool(alice.closed), "the session was not closed 5 s after its handshake")


@case(
    "rdv/lease/3",
    section="rendezvous.md §4.3",
    title="by default a session has 30 s to register",
    requirements=("RDV-4.3.2",),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    alice = net.peer("alice", ALICE)
    alice.connect(0.0)
    net.timer(29.9)
    expect_eq(alice.closed, [], "the session at 29.9 s")
    net.timer(30.0)
    expect(bool(alice.closed), "the session was not closed 30 s after its handshake")


@case(
    "rdv/lease/4",
    section="rendezvous.md §4.3",
    title="after UNREGISTER a session has register_timeout again to register",
    requirements=("RDV-4.3.1", "RDV-4.4.1"),
)
def _(iut: Iut) -> None:
    net = Net(iut, {"register_timeout": 5.0})
    alice = net.peer("alice", ALICE)
    alice.register(0.0)
    net.timer(10.0)
    expect_eq(alice.closed, [], "a registered session")
    expect_eq(one(alice.request(m.Unregister(txid=4), 20.0)), m.Unregistered(txid=4), "answer to UNREGISTER")
    net.timer(24.9)
    expect_eq(alice.closed, [], "the session 4.9 s after UNREGISTER")
    net.timer(25.0)
    expect(bool(alice.closed), "the session was not closed 5 s after UNREGISTER")


# -- rate limits (§8) -------------------------------------------------------------------------


@case(
    "rdv/limit/1",
    section=LIMITS,
    title="lookups beyond the peer's limit (burst 3, 1/s) get ERROR 1 and introduce nobody",
    requirements=("RDV-8.1", "RDV-4.2.2"),
)
def _(iut: Iut) -> None:
    net = Net(iut, {"lookup_rate": 1.0, "lookup_burst": 3.0})
    alice, bob = net.peer("alice", ALICE), net.peer("bob", BOB)
    alice.register(0.0)
    bob.register(0.0)
    for txid in range(3):
        found = one(alice.request(m.Lookup(txid=txid, peer_id=bob.peer_id, introduce=True), 0.0))
        expect(isinstance(found, m.Found), f"lookup {txid + 1} of 3: {short(found)}")
    expect_eq(len(bob.take()), 3, "INTRODUCTIONs to bob")
    error_code(one(alice.request(m.Lookup(txid=9, peer_id=bob.peer_id, introduce=True), 0.0)), 1, 9)
    expect_eq(bob.take(), [], "INTRODUCTIONs to bob beyond the limit")
    found = one(alice.request(m.Lookup(txid=10, peer_id=bob.peer_id, introduce=False), 1.0))
    expect(isinstance(found, m.Found), f"a lookup a second later: {short(found)}")


@case(
    "rdv/limit/2",
    section=LIMITS,
    title="by default a peer has a burst of 100 lookups, then 20 a second",
    requirements=("RDV-8.2",),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    alice = net.peer("alice", ALICE)
    alice.register(0.0)
    nobody = IUT.peer_id.public_key
    for txid in range(100):
        answer = one(alice.request(m.Lookup(txid=txid, peer_id=nobody, introduce=False), 1.0))
        expect(isinstance(answer, m.NotFound), f"lookup {txid + 1} of the burst: {short(answer)}")
    error_code(one(alice.request(m.Lookup(txid=100, peer_id=nobody, introduce=False), 1.0)), 1, 100)
    answer = one(alice.request(m.Lookup(txid=101, peer_id=nobody, introduce=False), 1.05))
    expect(isinstance(answer, m.NotFound), f"a lookup 50 ms later (one token): {short(answer)}")
    error_code(one(alice.request(m.Lookup(txid=102, peer_id=nobody, introduce=False), 1.05)), 1, 102)


@case(
    "rdv/limit/3",
    section=LIMITS,
    title="the lookup limit follows the peer id to a new session",
    requirements=("RDV-8.2",),
)
def _(iut: Iut) -> None:
    net = Net(iut, {"lookup_rate": 0.001, "lookup_burst": 2.0})
    alice = net.peer("alice", ALICE)
    alice.register(0.0)
    nobody = IUT.peer_id.public_key
    for txid in range(2):
        one(alice.request(m.Lookup(txid=txid, peer_id=nobody, introduce=False), 1.0))
    del net.peers[ALICE]
    again = net.peer("alice", CAROL)
    again.register(2.0)
    error_code(one(again.request(m.Lookup(txid=5, peer_id=nobody, introduce=False), 3.0)), 1, 5)


def _init_from(net: Net, name: str, addr: str, now: float) -> bool:
    """Whether the node answers a new peer's INIT from ``addr`` (with anything)."""
    peer = net.peer(name, addr)
    peer.connect(now, complete=False)
    return bool(peer.received)


@case(
    "rdv/limit/4",
    section=LIMITS,
    title="INITs beyond the per-address limit (burst 2, 1/s) are dropped, other addresses unaffected",
    requirements=("RDV-8.3",),
)
def _(iut: Iut) -> None:
    net = Net(iut, {"register_rate": 1.0, "register_burst": 2.0})
    answered = [_init_from(net, f"p{i}", f"203.0.113.9:{5000 + i}", 0.0) for i in range(3)]
    expect_eq(answered, [True, True, False], "INITs from one IP address answered at t=0")
    expect(_init_from(net, "other", "203.0.113.10:5000", 0.0), "an INIT from another address was dropped")
    expect(_init_from(net, "later", "203.0.113.9:5009", 1.0), "an INIT from the first address a second later")


@case(
    "rdv/limit/5",
    section=LIMITS,
    title="by default 10 INITs from one IP address are answered at once, the 11th is dropped",
    requirements=("RDV-8.4",),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    answered = [_init_from(net, f"p{i}", f"203.0.113.9:{5000 + i}", 0.0) for i in range(11)]
    expect_eq(answered, [True] * 10 + [False], "INITs from one IP address answered at t=0")


@case(
    "rdv/limit/6",
    section=LIMITS,
    title="resets beyond the per-address limit (burst 2, 1/s) are not sent",
    requirements=("RDV-8.5",),
)
def _(iut: Iut) -> None:
    net = Net(iut, {"reset_rate": 1.0, "reset_burst": 2.0})
    sent = [len(net.receive(record_like(PacketType.KEEPALIVE, UNKNOWN_INDEX, 30), ALICE, 0.0)) for _ in range(3)]
    expect_eq(sent, [1, 1, 0], "resets sent to one address at t=0")
    expect_eq(len(net.receive(record_like(PacketType.KEEPALIVE, UNKNOWN_INDEX, 30), BOB, 0.0)), 1, "another address")
    expect_eq(len(net.receive(record_like(PacketType.KEEPALIVE, UNKNOWN_INDEX, 30), ALICE, 1.0)), 1, "a second later")


# -- amplification (§9) -----------------------------------------------------------------------


@case(
    "rdv/amp/1",
    section="rendezvous.md §9",
    title="before an address is proven nothing sent to it is larger than what it answers (STUN: 3x)",
    requirements=("RDV-9.1", "RDV-5.4", "RDV-6.2.2"),
)
def _(iut: Iut) -> str:
    net = Net(iut)
    party = Party.named("rdv/spoofed")
    session = SecureSession.initiate(
        party.keys,
        local_index=0x5E0F0F0F,
        now=0.0,
        expected_peer=IUT.peer_id,
        ephemeral=party.ephemeral,
        random=nonce_source(party.sas_nonce),
    )
    (init,) = session.data_to_send(0.0)
    net.receive(init, ALICE, 0.0)  # no peer at ALICE: its address is never proven
    for now in (1.0, 3.0, 7.0, 11.0, 14.9):
        net.timer(now)
    sizes = [len(d) for d, addr in net.stray if addr == ALICE]
    expect(bool(sizes), "the node did not answer the INIT")
    expect(max(sizes) <= len(init), f"datagrams of {sizes} bytes for an INIT of {len(init)}")
    expect(sum(sizes) <= 3 * len(init), f"{sum(sizes)} bytes in all for one INIT of {len(init)}")
    ((reset, _),) = net.receive(record_like(PacketType.DATA, UNKNOWN_INDEX, 30), BOB, 15.0)
    expect(len(reset) < 30, f"a reset of {len(reset)} bytes for 30")
    ((stun, _),) = net.receive(stun_message(0x0001, bytes(12)), CAROL, 15.0)
    expect(len(stun) <= 60, f"a STUN response of {len(stun)} bytes for 20")
    return f"INIT {len(init)}, RESPONSEs {sizes}, reset {len(reset)}, STUN {len(stun)}"
