"""Rendezvous node cases (spec/rendezvous.md): registrations, lookups, introductions, messages.

These use the control protocol's optional ``rdv_node`` mode (spec/conformance.md §3.9): the
IUT runs a rendezvous node, and the runner plays its peers, each a reference ``SecureSession``
initiator at its own ``HOST:PORT`` address.  ``Net`` routes the node's datagrams by their
``to`` to those peers and their answers back, until nothing moves.  Messages are built and read
with the reference codec; layouts that a case checks byte by byte are written out here from
spec/rendezvous.md §3.  The limits, STUN, reset, lease and amplification cases are in
``cases_rendezvous_limits``.  An IUT without a node exits 127 for every ``rdv/`` case.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import struct
from typing import Any

from p2pos.proto.errors import ProtocolError
from p2pos.proto.events import HandshakeCompleted, MessageReceived, SessionClosed
from p2pos.proto.nat.profile import UNKNOWN_PROFILE, Allocation, Filtering, Mapping, NatProfile
from p2pos.proto.rendezvous import messages as m
from p2pos.proto.session.session import SecureSession
from p2pos.proto.session.wire import PacketType

from .checks import CaseFailed, expect, expect_eq, short, unhex_list
from .iut import Iut
from .reference import IUT, Party, derive, nonce_source
from .registry import case

REG = "rendezvous.md §4.1"
LOOKUP = "rendezvous.md §4.2"
MSGS = "rendezvous.md §3"
ALICE, BOB, CAROL = "198.51.100.1:40001", "[2001:db8::2]:40002", "203.0.113.3:40003"
LAN = ("10.0.0.5", 40001)
LAN6 = ("fd00::5", 40001)
#: Message types of spec/rendezvous.md §3.2, written out here.
REGISTERED, ERROR = 0x02, 0x09


def host_port(text: str) -> tuple[str, int]:
    """``(host, port)`` of a ``HOST:PORT`` / ``[v6]:PORT`` text."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


@dataclasses.dataclass
class Peer:
    """One reference peer of the node: its address, session and what it received."""

    net: Net
    name: str
    addr: str
    party: Party
    index: int
    session: SecureSession | None = None
    node_index: int | None = None  # the node's index of the session (from its RESPONSE)
    established: bool = False
    messages: list[m.Message] = dataclasses.field(default_factory=list)
    raw: list[bytes] = dataclasses.field(default_factory=list)  # STUN answers, resets
    received: list[bytes] = dataclasses.field(default_factory=list)  # every datagram the node sent it
    closed: list[SessionClosed] = dataclasses.field(default_factory=list)
    connections: int = 0

    @property
    def peer_id(self) -> bytes:
        return self.party.peer_id.public_key

    def connect(self, now: float, *, complete: bool = True) -> None:
        """Start a session with the node (XX, the node's peer id expected); ``complete``: check it did."""
        self.connections += 1
        label = f"{self.party.name}/{self.addr}/{self.connections}"
        self.session = SecureSession.initiate(
            self.party.keys,
            local_index=self.index + self.connections,
            now=now,
            expected_peer=IUT.peer_id,
            ephemeral=derive(f"{label}/ephemeral"),
            random=nonce_source(derive(f"{label}/sas-nonce")),
        )
        self.established, self.node_index = False, None
        self.net.pump(now)
        if complete:
            expect(self.established, f"{self.name}'s handshake with the node did not complete")

    def send(self, plaintext: bytes, now: float) -> list[m.Message]:
        """Send one DATA record; returns the messages this peer got since its last call."""
        if self.session is None:
            raise CaseFailed(f"internal: {self.name} has no session")
        self.session.send(plaintext, now)
        self.net.pump(now)
        return self.take()

    def request(self, message: m.Message, now: float) -> list[m.Message]:
        return self.send(m.encode(message), now)

    def take(self) -> list[m.Message]:
        got, self.messages = self.messages, []
        return got

    def register(
        self, now: float, lease: int = 0, candidates: tuple[m.Address, ...] = (), traits: m.Traits | None = None
    ) -> m.Registered:
        """Connect (if needed) and register; returns the REGISTERED."""
        if not self.established:
            self.connect(now)
        message = m.Register(txid=0x100 + self.connections, lease=lease, candidates=candidates, traits=traits)
        answer = one(self.request(message, now))
        expect(isinstance(answer, m.Registered), f"{self.name}: REGISTER answered {short(answer)}")
        assert isinstance(answer, m.Registered)
        return answer

    def capture(self, now: float) -> bytes:
        """A KEEPALIVE record of this peer's session, sealed but not delivered (for later)."""
        if self.session is None:
            raise CaseFailed(f"internal: {self.name} has no session")
        self.session.send_keepalive(now)
        (datagram,) = self.session.data_to_send(now)
        return datagram


class Net:
    """The IUT's node and the runner's peers, wired by addresses (spec/conformance.md §3.9)."""

    def __init__(self, iut: Iut, config: dict[str, Any] | None = None, now: float = 0.0) -> None:
        self.iut = iut
        self.peers: dict[str, Peer] = {}
        self.stray: list[tuple[bytes, str]] = []  # datagrams to an address that no peer has
        answer = iut.ok("rdv_node", seed=IUT.seed, static=IUT.static, config=config or {}, now=now)
        self.deliver(answer, now)

    def peer(self, name: str, addr: str, index: int = 0x5E000000) -> Peer:
        peer = Peer(self, name, addr, Party.named(f"rdv/{name}"), index + 0x100 * len(self.peers))
        self.peers[addr] = peer
        return peer

    def receive(self, data: bytes, addr: str, now: float) -> list[tuple[bytes, str]]:
        """Give the node one datagram from ``addr``; returns what it sent at once, to whom (then delivered)."""
        answer = self.iut.ok("receive", data=data, addr=addr, now=now)
        return self.deliver(answer, now)

    def timer(self, now: float) -> list[tuple[bytes, str]]:
        sent = self.deliver(self.iut.ok("timer", now=now), now)
        self.pump(now)
        return sent

    def restart(self, now: float) -> None:
        self.deliver(self.iut.ok("rdv_restart", now=now), now)

    def deliver(self, answer: dict[str, Any], now: float) -> list[tuple[bytes, str]]:
        out = unhex_list(answer.get("out", []), "out")
        to = answer.get("to")
        if not isinstance(to, list) or len(to) != len(out) or not all(isinstance(a, str) for a in to):
            raise CaseFailed(f"rdv_node answers need 'to', one address per datagram, got {short(to)}")
        sent = list(zip(out, to, strict=True))
        for datagram, addr in sent:
            peer = self.peers.get(addr)
            if peer is None:
                self.stray.append((datagram, addr))
                continue
            peer.received.append(datagram)
            if not datagram or datagram[0] < 4 or datagram[0] > 10:  # STUN, stateless reset
                peer.raw.append(datagram)
            elif peer.session is not None:
                if datagram[0] == PacketType.RESPONSE and len(datagram) >= 5:
                    peer.node_index = int.from_bytes(datagram[1:5], "big")
                peer.session.receive_data(datagram, now)
        return sent

    def pump(self, now: float) -> None:
        """Move datagrams both ways until nothing moves."""
        for _ in range(100):
            moved = False
            for addr, peer in list(self.peers.items()):
                if peer.session is None:
                    continue
                self._events(peer)
                for datagram in peer.session.data_to_send(now):
                    moved = True
                    self.receive(datagram, addr, now)
                self._events(peer)
            if not moved:
                return
        raise CaseFailed("the node and its peers never went quiet")

    @staticmethod
    def _events(peer: Peer) -> None:
        session = peer.session
        while session is not None and (event := session.next_event()) is not None:
            if isinstance(event, HandshakeCompleted):
                peer.established = True
            elif isinstance(event, SessionClosed):
                peer.closed.append(event)
                peer.established = False
            elif isinstance(event, MessageReceived):
                try:
                    message = m.decode_untrusted(event.data)
                except ProtocolError as exc:
                    raise CaseFailed(f"{peer.name} got a malformed message {event.data.hex()}: {exc}") from None
                expect(message is not None, f"{peer.name} got a message of unknown type {event.data[:1].hex()}")
                assert message is not None
                peer.messages.append(message)


def one(messages: list[m.Message]) -> m.Message:
    expect(len(messages) == 1, f"expected one answer, got {short(messages)}")
    return messages[0]


def error_code(message: m.Message, code: int, txid: int) -> None:
    expect(isinstance(message, m.Error), f"expected ERROR {code}, got {short(message)}")
    assert isinstance(message, m.Error)
    expect_eq((message.code, message.txid), (code, txid), "ERROR code and txid")


def _address_bytes(addr: tuple[str, int]) -> bytes:
    """An address of spec/rendezvous.md §3.1, written out here."""
    ip = ipaddress.ip_address(addr[0])
    return bytes((ip.version,)) + ip.packed + struct.pack(">H", addr[1])


# -- registration (§4.1) ------------------------------------------------------------------


@case(
    "rdv/reg/1",
    section=REG,
    title="REGISTER is answered REGISTERED: txid, lease, observed IPv4 address, token (32 bytes)",
    requirements=("RDV-2.1", "RDV-2.3", "RDV-3.1.1", "RDV-3.1.2", "RDV-4.1.1", "RDV-4.1.2", "CONF-3.9.1", "CONF-3.9.2"),
)
def _(iut: Iut) -> str:
    net = Net(iut)
    alice = net.peer("alice", ALICE)
    alice.connect(0.0)
    txid, lease = 0xA1B2C3D4, 120
    registered = one(alice.send(m.encode(m.Register(txid=txid, lease=lease)), 0.5))
    expect(isinstance(registered, m.Registered), f"expected REGISTERED, got {short(registered)}")
    assert isinstance(registered, m.Registered)
    raw = m.encode(registered)
    expected = bytes((REGISTERED,)) + struct.pack(">II", txid, lease) + _address_bytes(host_port(ALICE))
    expect_eq(raw[: len(expected)], expected, "REGISTERED: type, txid, lease, observed address")
    expect_eq(len(raw), 32, "REGISTERED length over IPv4")
    return f"token {registered.reset_token.hex()}"


@case(
    "rdv/reg/2",
    section=REG,
    title="the observed address of a peer on IPv6 (REGISTERED of 44 bytes)",
    requirements=("RDV-3.1.2", "RDV-4.1.1"),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    bob = net.peer("bob", BOB)
    registered = bob.register(0.0, lease=300)
    expect_eq(registered.observed, host_port(BOB), "observed address")
    expect_eq(len(m.encode(registered)), 44, "REGISTERED length over IPv6")


@case(
    "rdv/reg/3",
    section=REG,
    title="leases are clamped to the defaults: 0 -> 600, 5 -> 30, 100000 -> 3600",
    requirements=("RDV-4.1.3",),
)
def _(iut: Iut) -> str:
    net = Net(iut)
    alice = net.peer("alice", ALICE)
    alice.connect(0.0)
    granted = []
    for i, asked in enumerate((0, 5, 100000)):
        answer = one(alice.request(m.Register(txid=i, lease=asked), 1.0 + i))
        expect(isinstance(answer, m.Registered), f"REGISTER answered {short(answer)}")
        assert isinstance(answer, m.Registered)
        granted.append(answer.lease)
    expect_eq(granted, [600, 30, 3600], "leases granted for 0, 5 and 100000 s")
    return "600, 30, 3600"


@case(
    "rdv/reg/4",
    section=REG,
    title="every copy of a request is answered, and a REGISTER renews the lease",
    requirements=("RDV-2.5", "RDV-4.1.4", "RDV-4.1.6"),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    alice, bob = net.peer("alice", ALICE), net.peer("bob", BOB)
    alice.connect(0.0)
    for now in (0.0, 0.5):  # the same request twice: two answers
        answer = one(alice.request(m.Register(txid=7, lease=60, candidates=(LAN,)), now))
        expect(isinstance(answer, m.Registered) and answer.txid == 7, f"copy at {now}: {short(answer)}")
    bob.register(1.0)
    alice.request(m.Register(txid=8, lease=60, candidates=(LAN6,)), 40.0)  # renewed: ends at 100
    net.timer(70.0)
    for now in (70.0, 70.5):
        found = one(bob.request(m.Lookup(txid=9, peer_id=alice.peer_id, introduce=False), now))
        expect_eq(found, m.Found(txid=9, peer_id=alice.peer_id, observed=host_port(ALICE), candidates=(LAN6,)), "FOUND")


@case(
    "rdv/reg/5",
    section=REG,
    title="a REGISTER on a new session replaces the registration and closes the older session",
    requirements=("RDV-4.1.5", "RDV-2.4"),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    alice, bob = net.peer("alice", ALICE), net.peer("bob", BOB)
    alice.register(0.0)
    bob.register(0.1)
    del net.peers[ALICE]
    moved = net.peer("alice", CAROL)  # the same identity from another address
    moved.connect(1.0)
    answer = one(moved.request(m.Register(txid=3, lease=0), 1.5))
    expect(isinstance(answer, m.Registered), f"REGISTER answered {short(answer)}")
    closes = [d for d, addr in net.stray if addr == ALICE and d[:1] == bytes((PacketType.CLOSE,))]
    expect(len(closes) == 1, f"expected a CLOSE record on the older session, to {ALICE}: got {short(net.stray)}")
    found = one(bob.request(m.Lookup(txid=4, peer_id=alice.peer_id, introduce=False), 2.0))
    expect(isinstance(found, m.Found) and found.observed == host_port(CAROL), f"lookup: {short(found)}")


@case(
    "rdv/reg/6",
    section="rendezvous.md §8",
    title="a full node answers a new REGISTER with ERROR 1 (max_registrations 1)",
    requirements=("RDV-8.6", "CONF-3.9.5"),
)
def _(iut: Iut) -> None:
    net = Net(iut, {"max_registrations": 1})
    alice, bob = net.peer("alice", ALICE), net.peer("bob", BOB)
    alice.register(0.0)
    bob.connect(0.5)
    error_code(one(bob.request(m.Register(txid=5, lease=0), 1.0)), 1, 5)
    error_code(one(bob.request(m.Lookup(txid=6, peer_id=alice.peer_id, introduce=False), 1.5)), 2, 6)
    again = one(alice.request(m.Register(txid=7, lease=0), 2.0))  # a renewal is not a new registration
    expect(isinstance(again, m.Registered), f"alice's renewal: {short(again)}")


@case(
    "rdv/reg/7",
    section="rendezvous.md §4.4",
    title="UNREGISTER is answered UNREGISTERED and the peer is no longer found",
    requirements=("RDV-4.4.1",),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    alice, bob = net.peer("alice", ALICE), net.peer("bob", BOB)
    alice.register(0.0)
    bob.register(0.1)
    expect_eq(one(alice.request(m.Unregister(txid=11), 1.0)), m.Unregistered(txid=11), "answer to UNREGISTER")
    answer = one(bob.request(m.Lookup(txid=12, peer_id=alice.peer_id, introduce=True), 1.5))
    expect_eq(answer, m.NotFound(txid=12, peer_id=alice.peer_id), "lookup after UNREGISTER")
    expect_eq(alice.take(), [], "messages to alice")


@case(
    "rdv/reg/8",
    section=REG,
    title="a peer that closes its session is forgotten at once",
    requirements=("RDV-4.1.7",),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    alice, bob = net.peer("alice", ALICE), net.peer("bob", BOB)
    alice.register(0.0)
    bob.register(0.1)
    assert alice.session is not None
    alice.session.close(1.0)
    net.pump(1.0)
    answer = one(bob.request(m.Lookup(txid=3, peer_id=alice.peer_id, introduce=False), 1.5))
    expect_eq(answer, m.NotFound(txid=3, peer_id=alice.peer_id), "lookup after alice's CLOSE")


# -- lookups and introductions (§4.2) -------------------------------------------------------


@case(
    "rdv/lookup/1",
    section=LOOKUP,
    title="LOOKUP of a registered peer: FOUND with its observed address and candidates",
    requirements=("RDV-4.2.3", "RDV-2.4", "RDV-3.1.1"),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    alice, bob = net.peer("alice", ALICE), net.peer("bob", BOB)
    alice.register(0.0, candidates=(LAN,))
    bob.register(0.1, candidates=(LAN6, LAN))
    found = one(alice.request(m.Lookup(txid=0xFFFFFFFF, peer_id=bob.peer_id, introduce=False), 1.0))
    expected = m.Found(txid=0xFFFFFFFF, peer_id=bob.peer_id, observed=host_port(BOB), candidates=(LAN6, LAN))
    expect_eq(found, expected, "FOUND")


@case(
    "rdv/lookup/2",
    section=LOOKUP,
    title="LOOKUP of an unknown peer: NOT_FOUND, and no introduction",
    requirements=("RDV-4.2.3",),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    alice = net.peer("alice", ALICE)
    alice.register(0.0)
    nobody = Party.named("rdv/nobody").peer_id.public_key
    answer = one(alice.request(m.Lookup(txid=2, peer_id=nobody, introduce=True), 1.0))
    expect_eq(answer, m.NotFound(txid=2, peer_id=nobody), "answer")
    expect_eq(net.stray, [], "datagrams to other addresses")


@case(
    "rdv/lookup/3",
    section=LOOKUP,
    title="LOOKUP on a session with no registration: ERROR 2, nothing else",
    requirements=("RDV-4.2.1", "RDV-3.1.1"),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    alice, bob = net.peer("alice", ALICE), net.peer("bob", BOB)
    alice.connect(0.0)
    bob.register(0.1)
    error_code(one(alice.request(m.Lookup(txid=31, peer_id=bob.peer_id, introduce=True), 1.0)), 2, 31)
    expect_eq(bob.take(), [], "messages to bob (no INTRODUCTION)")


@case(
    "rdv/lookup/4",
    section=LOOKUP,
    title="LOOKUP with introduce: INTRODUCTION to the target with the asker's observed address and candidates",
    requirements=("RDV-4.2.4",),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    alice, bob = net.peer("alice", ALICE), net.peer("bob", BOB)
    alice.register(0.0, candidates=(LAN,))
    bob.register(0.1)
    asked = (LAN6, ("192.0.2.77", 5000))
    found = one(alice.request(m.Lookup(txid=41, peer_id=bob.peer_id, introduce=True, candidates=asked), 1.0))
    expect(isinstance(found, m.Found), f"answer to alice: {short(found)}")
    intro = one(bob.take())
    punch = intro.punch if isinstance(intro, m.Introduction) else None
    expected = m.Introduction(txid=41, peer_id=alice.peer_id, observed=host_port(ALICE), candidates=asked, punch=punch)
    expect_eq(intro, expected, "INTRODUCTION to bob")


@case(
    "rdv/lookup/5",
    section=LOOKUP,
    title="an INTRODUCTION carries the asker's registered candidates when its LOOKUP has none",
    requirements=("RDV-4.2.4",),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    alice, bob = net.peer("alice", ALICE), net.peer("bob", BOB)
    alice.register(0.0, candidates=(LAN, LAN6))
    bob.register(0.1)
    one(alice.request(m.Lookup(txid=51, peer_id=bob.peer_id, introduce=True), 1.0))
    intro = one(bob.take())
    punch = intro.punch if isinstance(intro, m.Introduction) else None
    expected = m.Introduction(
        txid=51, peer_id=alice.peer_id, observed=host_port(ALICE), candidates=(LAN, LAN6), punch=punch
    )
    expect_eq(intro, expected, "INTRODUCTION to bob")


@case(
    "rdv/lookup/6",
    section=LOOKUP,
    title="without the introduce flag the target hears nothing",
    requirements=("RDV-4.2.5",),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    alice, bob = net.peer("alice", ALICE), net.peer("bob", BOB)
    alice.register(0.0)
    bob.register(0.1)
    before = len(bob.received)
    found = one(alice.request(m.Lookup(txid=61, peer_id=bob.peer_id, introduce=False), 1.0))
    expect(isinstance(found, m.Found), f"answer: {short(found)}")
    expect_eq(bob.received[before:], [], "datagrams to bob")


# -- messages (§3.3) -------------------------------------------------------------------------

_V4 = _address_bytes(LAN)


def _malformed() -> list[tuple[str, bytes, int]]:
    """(why, plaintext, txid to echo): messages spec/rendezvous.md §3.3 calls malformed."""
    register = bytes.fromhex("0100000021") + struct.pack(">I", 0)
    lookup = bytes.fromhex("0300000022") + bytes(32)
    return [
        ("an empty message", b"", 0),
        ("a message shorter than its header", bytes.fromhex("01000000"), 0),
        ("a REGISTER without its lease", bytes.fromhex("0100000023"), 0x23),
        ("a byte after a REGISTER", register + b"\x00\x00", 0x21),
        ("17 candidates", register + b"\x11" + _V4 * 17, 0x21),
        ("address family 5", register + b"\x01\x05" + _V4[1:], 0x21),
        ("2 candidates counted, 1 given", register + b"\x02" + _V4, 0x21),
        ("LOOKUP flags 0x02", lookup + b"\x02\x00", 0x22),
        ("LOOKUP with a 31-byte peer id", lookup[:36], 0x22),
        ("RELAYS counting 9 URLs", bytes.fromhex("0a0000002309") + b"\x04ws:/" * 9, 0x23),
        ("RELAYS with an empty URL", bytes.fromhex("0a000000230100"), 0x23),
        ("RELAYS URL not UTF-8", bytes.fromhex("0a000000230102fffe"), 0x23),
    ]


@case(
    "rdv/msg/1",
    section="rendezvous.md §3.3",
    title="a malformed message is answered ERROR 3 with its txid, and the session is kept",
    requirements=("RDV-3.3.1", "RDV-3.3.2"),
)
def _(iut: Iut) -> str:
    net = Net(iut)
    alice = net.peer("alice", ALICE)
    alice.connect(0.0)
    cases = _malformed()
    for i, (why, plaintext, txid) in enumerate(cases):
        answers = alice.send(plaintext, 1.0 + i)
        expect(len(answers) == 1, f"{why}: expected one ERROR, got {short(answers)}")
        error_code(answers[0], 3, txid)
        expect(alice.established, f"{why}: the node closed the session")
    answer = one(alice.request(m.Register(txid=99, lease=0), 20.0))
    expect(isinstance(answer, m.Registered), f"REGISTER after the malformed messages: {short(answer)}")
    return f"{len(cases)} malformed messages"


@case(
    "rdv/msg/3",
    section="rendezvous.md §3.3",
    title="messages only a node sends are ignored when a peer sends them",
    requirements=("RDV-3.3.4",),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    alice, bob = net.peer("alice", ALICE), net.peer("bob", BOB)
    alice.register(0.0)
    bob.register(0.1)
    node_messages: list[m.Message] = [
        m.Registered(txid=1, lease=60, observed=LAN, reset_token=bytes(16)),
        m.Found(txid=2, peer_id=bob.peer_id, observed=LAN),
        m.NotFound(txid=3, peer_id=bob.peer_id),
        m.Introduction(txid=4, peer_id=bob.peer_id, observed=LAN),
        m.Unregistered(txid=5),
        m.Error(txid=6, code=2, reason="no"),
        m.Relays(txid=8, urls=("ws://198.18.0.9:80",)),
    ]
    for message in node_messages:
        expect_eq(alice.request(message, 1.0), [], f"answer to {type(message).__name__}")
    expect_eq(bob.take(), [], "messages to bob")
    found = one(bob.request(m.Lookup(txid=7, peer_id=alice.peer_id, introduce=False), 2.0))
    expect(isinstance(found, m.Found), f"alice is still registered: {short(found)}")


@case(
    "rdv/msg/4",
    section="rendezvous.md §3.3",
    title="a message of an unknown type is ignored and the session is kept",
    requirements=("RDV-3.3.3",),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    alice = net.peer("alice", ALICE)
    alice.register(0.0)
    for kind in (0x00, 0x0C, 0x7F, 0xFF):
        expect_eq(alice.send(bytes((kind,)) + bytes.fromhex("00000001deadbeef"), 1.0), [], f"answer to type {kind}")
    answer = one(alice.request(m.Register(txid=5, lease=0), 2.0))
    expect(isinstance(answer, m.Registered), f"REGISTER after the unknown types: {short(answer)}")


RELAY_URLS = ("wss://198.18.0.9:443", "ws://198.18.0.9:8080/p2pos")


@case(
    "rdv/relay/1",
    section="rendezvous.md §4.5",
    title="a node that offers relays sends them in a RELAYS right after the REGISTERED of a new "
    "registration, with its txid, and not on a renewal",
    requirements=("RDV-4.5.1", "CONF-3.9.1"),
)
def _(iut: Iut) -> None:
    net = Net(iut, config={"relays": list(RELAY_URLS)})
    alice = net.peer("alice", ALICE)
    alice.connect(0.0)
    answers = alice.request(m.Register(txid=41, lease=0), 0.1)
    expect_eq([type(a).__name__ for a in answers], ["Registered", "Relays"], "the answers to a new registration")
    relays = answers[1]
    assert isinstance(relays, m.Relays)
    expect_eq((relays.txid, relays.urls), (41, RELAY_URLS), "the RELAYS")
    renewal = alice.request(m.Register(txid=42, lease=0), 5.0)
    expect_eq([type(a).__name__ for a in renewal], ["Registered"], "the answers to a renewal")
    bob = net.peer("bob", BOB)
    bob.connect(6.0)
    answers = bob.request(m.Register(txid=43, lease=0), 6.1)
    expect_eq([type(a).__name__ for a in answers], ["Registered", "Relays"], "bob's new registration")


@case(
    "rdv/relay/2",
    section="rendezvous.md §4.5",
    title="a node that offers no relay sends no RELAYS",
    requirements=("RDV-4.5.1",),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    alice = net.peer("alice", ALICE)
    alice.connect(0.0)
    answers = alice.request(m.Register(txid=41, lease=0), 0.1)
    expect_eq([type(a).__name__ for a in answers], ["Registered"], "the answers to a registration")


PUNCH = "rendezvous.md §3.5"
SEQ_TRAITS = m.Traits(
    profile=NatProfile(
        mapping=Mapping.ADDRESS_AND_PORT_DEPENDENT,
        filtering=Filtering.ADDRESS_AND_PORT_DEPENDENT,
        allocation=Allocation.SEQUENTIAL,
        delta=2,
    ),
    rtt_ms=80,
)
EIM_TRAITS = m.Traits(
    profile=NatProfile(mapping=Mapping.ENDPOINT_INDEPENDENT, filtering=Filtering.ADDRESS_DEPENDENT), rtt_ms=30
)


def _punches(alice: Peer, bob: Peer, lookup: m.Lookup, now: float) -> tuple[m.Punch, m.Punch]:
    """Alice's FOUND's punch and Bob's INTRODUCTION's, from the same call into the IUT (RDV-4.2.7)."""
    found = one(alice.request(lookup, now))
    intro = one(bob.take())
    expect(isinstance(found, m.Found), f"answer to alice: {short(found)}")
    expect(isinstance(intro, m.Introduction), f"to bob: {short(intro)}")
    assert isinstance(found, m.Found) and isinstance(intro, m.Introduction)
    expect(found.punch is not None, "the FOUND of an introduction carries no punch block")
    expect(intro.punch is not None, "the INTRODUCTION carries no punch block")
    assert found.punch is not None and intro.punch is not None
    return found.punch, intro.punch


@case(
    "rdv/punch/1",
    section=PUNCH,
    title="an introduction gives both sides one fresh ticket and each the other's traits, in one step",
    requirements=("RDV-4.2.6", "RDV-4.2.7", "RDV-3.5.2"),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    alice, bob = net.peer("alice", ALICE), net.peer("bob", BOB)
    alice.register(0.0, traits=EIM_TRAITS)
    bob.register(0.1, traits=SEQ_TRAITS)
    found, intro = _punches(alice, bob, m.Lookup(txid=61, peer_id=bob.peer_id, introduce=True), 1.0)
    expect_eq(found.traits, SEQ_TRAITS, "bob's traits in alice's FOUND")
    expect_eq(intro.traits, EIM_TRAITS, "alice's registered traits in bob's INTRODUCTION (her LOOKUP had none)")
    expect_eq(found.ticket, intro.ticket, "the ticket of the FOUND and of the INTRODUCTION")
    asked = m.Traits(profile=UNKNOWN_PROFILE, rtt_ms=7)
    again, intro2 = _punches(alice, bob, m.Lookup(txid=62, peer_id=bob.peer_id, introduce=True, traits=asked), 2.0)
    expect_eq(intro2.traits, asked, "the LOOKUP's traits in the INTRODUCTION")
    expect(again.ticket != found.ticket, "two introductions got the same ticket")
    bob.register(3.0)  # renewed without traits: they are cleared
    cleared, _ = _punches(alice, bob, m.Lookup(txid=63, peer_id=bob.peer_id, introduce=True), 4.0)
    expect_eq(cleared.traits, m.Traits(profile=UNKNOWN_PROFILE), "bob's traits after a REGISTER without them")
    plain = one(alice.request(m.Lookup(txid=64, peer_id=bob.peer_id, introduce=False), 5.0))
    expect(isinstance(plain, m.Found) and plain.punch is None, f"FOUND without an introduction: {short(plain)}")


@case(
    "rdv/punch/2",
    section=PUNCH,
    title="a REGISTER or LOOKUP whose traits are malformed draws ERROR 3 and the session stays",
    requirements=("RDV-3.3.1", "RDV-3.3.2"),
)
def _(iut: Iut) -> None:
    net = Net(iut)
    alice, bob = net.peer("alice", ALICE), net.peer("bob", BOB)
    alice.register(0.0)
    bob.register(0.1)
    register = m.encode(m.Register(txid=71, lease=0))
    bad_traits = [
        bytes([0x50, 0, 0, 0, 0, 0, 1]),  # mapping 5
        bytes([0x44, 2, 0, 0, 0, 0, 1]),  # sequential, delta 0
        bytes([0x22, 0, 0, 0, 0x40, 0, 1]),  # an unknown flag
        bytes(6),  # neither 0 nor 7 bytes
    ]
    for i, tail in enumerate(bad_traits):
        error_code(one(alice.send(register + tail, 1.0 + i)), 3, 71)
    lookup = m.encode(m.Lookup(txid=72, peer_id=bob.peer_id, introduce=True))
    error_code(one(alice.send(lookup + bytes(8), 6.0)), 3, 72)
    expect_eq(bob.take(), [], "messages to bob after a malformed LOOKUP")
    found = one(alice.request(m.Lookup(txid=73, peer_id=bob.peer_id, introduce=False), 7.0))
    expect(isinstance(found, m.Found), f"a good LOOKUP on the same session: {short(found)}")
