"""Rendezvous peer cases (spec/rendezvous.md §2, §3.4, §6.3, §7): the IUT runs a peer's client.

These use the control protocol's optional ``rdv_client`` role (spec/conformance.md §3.10):
the IUT keeps one peer registered with a node that the runner plays with the reference
``RendezvousNode``, at ``NODE_ADDR``.  ``ClientNet`` carries datagrams between the two and
moves time from timer to timer; a case may drop the node's records to the IUT (to time the
client's repeats) or slip in messages of its own on the node's session.  What the IUT sends
is kept with the time it was sent.  An IUT without a rendezvous client exits 127 for every
``rdv/client/`` case.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from p2pos.proto.rendezvous import messages as m
from p2pos.proto.rendezvous.node import NodeConfig, RendezvousNode, reset_key, reset_token
from p2pos.proto.session.wire import PacketType

from .cases_rendezvous import host_port
from .checks import CaseFailed, expect, expect_eq, short, unhex_list
from .iut import Iut
from .reference import IUT, OTHER, Party, derive, events_of
from .registry import case

NODE = Party.named("rdv/node")
NODE_ADDR = "192.0.2.1:3478"
#: Where the IUT is, as the node sees it.
CLIENT = "198.51.100.50:40000"
CANDIDATES = ["10.0.0.50:40000"]
SECTION = "rendezvous.md §7"


def _random(label: str) -> Any:
    counter = [0]

    def source(n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += derive(f"{label}/{counter[0]}")
            counter[0] += 1
        return out[:n]

    return source


class LoggingNode(RendezvousNode):
    """The reference node, keeping every message it received (decoded) with its time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received: list[tuple[float, m.Message | None]] = []

    def _message(self, session_id: int, data: bytes, now: float) -> None:
        try:
            self.received.append((now, m.decode_untrusted(data)))
        except Exception:
            self.received.append((now, None))
        super()._message(session_id, data, now)


@dataclasses.dataclass
class Sent:
    time: float
    data: bytes

    @property
    def kind(self) -> int:
        return self.data[0] if self.data else -1


class ClientNet:
    """The IUT's client and the runner's node, wired by addresses; time moves by ``run_until``."""

    def __init__(
        self,
        iut: Iut,
        *,
        node_party: Party = NODE,
        node_config: NodeConfig | None = None,
        config: dict[str, Any] | None = None,
        drop_records_to_iut: bool = False,
        drop_to_node: bool = False,
    ) -> None:
        self.iut = iut
        self.now = 0.0
        self.node = LoggingNode(node_party.keys, config=node_config, random=_random("rdv/node-random"))
        self.sent: list[Sent] = []  # what the IUT sent
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.drop_records_to_iut = drop_records_to_iut  # drop the node's DATA records (its answers)
        self.drop_to_node = drop_to_node
        answer = iut.ok(
            "rdv_client",
            seed=IUT.seed,
            static=IUT.static,
            node=str(NODE.peer_id),
            node_addr=NODE_ADDR,
            candidates=CANDIDATES,
            config=config or {},
            now=0.0,
        )
        self.absorb(answer)

    def absorb(self, answer: dict[str, Any]) -> None:
        out = unhex_list(answer.get("out", []), "out")
        to = answer.get("to")
        if not isinstance(to, list) or len(to) != len(out):
            raise CaseFailed(f"rdv_client answers need 'to', one address per datagram, got {short(to)}")
        self.events += [(self.now, e) for e in events_of(answer)]
        for datagram, addr in zip(out, to, strict=True):
            expect_eq(addr, NODE_ADDR, "where the client sends")
            self.sent.append(Sent(self.now, datagram))
            if not self.drop_to_node:
                self.node.receive_datagram(datagram, host_port(CLIENT), self.now)
        self.flush()

    def flush(self) -> None:
        for datagrams, _, _ in self.node.datagrams_to_send(self.now):
            for datagram in datagrams:
                if self.drop_records_to_iut and datagram[:1] == bytes((PacketType.DATA,)):
                    continue
                self.to_iut(datagram)

    def to_iut(self, datagram: bytes, addr: str = NODE_ADDR) -> None:
        self.absorb(self.iut.ok("receive", data=datagram, addr=addr, now=self.now))

    def run_until(self, end: float) -> None:
        """Run both sides' timers, in order, up to ``end``; then ``now`` is ``end``."""
        for _ in range(5000):
            timer = self.iut.ok("get_timer").get("timer")
            times = [t for t in (timer, self.node.get_timer()) if t is not None]
            if not times or min(times) > end:
                self.now = end
                return
            self.now = max(self.now, float(min(times)))
            node_timer = self.node.get_timer()
            if node_timer is not None and node_timer <= self.now:
                self.node.handle_timer(self.now)
                self.flush()
            self.absorb(self.iut.ok("timer", now=self.now))
        raise CaseFailed(f"the timers never got past {self.now} s")

    def session_id(self) -> int:
        registration = self.node.registration(IUT.peer_id.public_key)
        expect(registration is not None, "the IUT is not registered with the node")
        assert registration is not None
        return registration.session_id

    def send_from_node(self, message: m.Message) -> None:
        """Slip ``message`` into the node's session with the IUT."""
        session_id = self.session_id()
        session = self.node.endpoint.session(session_id)
        assert session is not None
        session.send(m.encode(message), self.now)
        self.node.endpoint.updated(session_id)
        self.flush()

    def times(self, kind: int, since: float = -1.0) -> list[float]:
        return [round(s.time, 6) for s in self.sent if s.kind == kind and s.time >= since]

    def of_type(self, kind: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, e) for t, e in self.events if e.get("type") == kind]

    def requests(self, kind: type) -> list[float]:
        """When the node received messages of ``kind`` from the IUT."""
        return [round(t, 6) for t, message in self.node.received if isinstance(message, kind)]


def _registered(net: ClientNet, by: float = 2.0) -> None:
    net.run_until(by)
    expect(net.node.registration(IUT.peer_id.public_key) is not None, f"the IUT did not register by {by} s")


@case(
    "rdv/client/1",
    section="rendezvous.md §2",
    title="the client connects to the node's address, registers, and reports its observed address",
    requirements=("RDV-2.2", "CONF-3.10.1", "CONF-3.10.2"),
)
def _(iut: Iut) -> None:
    net = ClientNet(iut)
    expect(bool(net.sent) and net.sent[0].kind == PacketType.INIT, "the client did not send an INIT at once")
    _registered(net)
    registration = net.node.registration(IUT.peer_id.public_key)
    assert registration is not None
    expect_eq(registration.candidates, tuple(host_port(c) for c in CANDIDATES), "candidates registered")
    expect_eq([e.get("observed") for _, e in net.of_type("rdv_registered")], [CLIENT], "rdv_registered events")


@case(
    "rdv/client/2",
    section="rendezvous.md §2",
    title="a node that proves another identity gets no REGISTER",
    requirements=("RDV-2.2",),
)
def _(iut: Iut) -> None:
    net = ClientNet(iut, node_party=OTHER)
    net.run_until(10.0)
    expect_eq(net.times(PacketType.DATA), [], "DATA records to the impostor")
    expect_eq(net.node.received, [], "messages the impostor received")


@case(
    "rdv/client/3",
    section=SECTION,
    title="an unanswered REGISTER is repeated after 0.5 s, the interval doubling up to 4 s",
    requirements=("RDV-7.1",),
)
def _(iut: Iut) -> str:
    net = ClientNet(iut, drop_records_to_iut=True)
    net.run_until(12.0)
    times = net.requests(m.Register)
    expect(bool(times), "no REGISTER")
    start = times[0]
    expect(start <= 0.5, f"the first REGISTER at {start} s")
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(times)]
    expect_eq(gaps, [0.5, 1.0, 2.0, 4.0, 4.0], f"gaps between the REGISTERs at {times}")
    return f"REGISTERs at {times}"


@case(
    "rdv/client/4",
    section=SECTION,
    title="the client renews its registration at half the lease",
    requirements=("RDV-7.2",),
)
def _(iut: Iut) -> None:
    net = ClientNet(iut, config={"lease": 60})
    net.run_until(40.0)
    times = net.requests(m.Register)
    expect(len(times) == 2, f"REGISTERs at {times}")
    expect_eq(round(times[1] - times[0], 3), 30.0, "the renewal, after the first REGISTER")


@case(
    "rdv/client/5",
    section=SECTION,
    title="an idle client sends a KEEPALIVE every 25 s",
    requirements=("RDV-7.3",),
)
def _(iut: Iut) -> None:
    net = ClientNet(iut, config={"lease": 3600})
    _registered(net)
    start = net.requests(m.Register)[0]
    net.run_until(80.0)
    expect_eq(net.times(PacketType.KEEPALIVE), [round(start + 25.0 * i, 6) for i in (1, 2, 3)], "KEEPALIVE times")


def _reset(net: ClientNet, token: bytes) -> bytes:
    return bytes((0x0B,)) + derive("rdv/reset-padding")[:12] + token


@case(
    "rdv/client/6",
    section="rendezvous.md §6.3",
    title="a reset from the node with the client's token ends the session: a new INIT at once",
    requirements=("RDV-6.3.1", "CONF-3.10.3"),
)
def _(iut: Iut) -> None:
    net = ClientNet(iut)
    _registered(net)
    old = net.session_id()
    net.run_until(10.0)
    net.to_iut(_reset(net, reset_token(reset_key(NODE.keys), old)))
    net.run_until(10.0)  # the timers due at once
    expect_eq(net.times(PacketType.INIT, since=10.0), [10.0], "INITs after the reset")
    _registered(net, 12.0)
    expect(net.session_id() != old, "the client registered again on the old session")


@case(
    "rdv/client/7",
    section="rendezvous.md §6.3",
    title="resets with a wrong token, or from another address, are dropped",
    requirements=("RDV-6.3.3",),
)
def _(iut: Iut) -> None:
    net = ClientNet(iut)
    _registered(net)
    sid = net.session_id()
    net.run_until(10.0)
    token = reset_token(reset_key(NODE.keys), sid)
    net.to_iut(_reset(net, bytes(16)))
    net.to_iut(_reset(net, token[:-1] + bytes((token[-1] ^ 1,))))
    net.to_iut(_reset(net, token), addr="192.0.2.99:3478")
    net.run_until(30.0)
    expect_eq(net.times(PacketType.INIT, since=10.0), [], "INITs after the forged resets")
    expect_eq(net.session_id(), sid, "the registration's session")


@case(
    "rdv/client/8",
    section=SECTION,
    title="after the node closes its session the client reconnects 1 s later",
    requirements=("RDV-7.4",),
)
def _(iut: Iut) -> None:
    net = ClientNet(iut)
    _registered(net)
    net.run_until(10.0)
    sid = net.session_id()
    session = net.node.endpoint.session(sid)
    assert session is not None
    session.close(net.now)
    net.node.endpoint.updated(sid)
    net.flush()
    net.run_until(12.0)
    expect_eq(net.times(PacketType.INIT, since=10.0)[:1], [11.0], "the first INIT after the CLOSE")


@case(
    "rdv/client/9",
    section=SECTION,
    title="a lookup asked before the client registered is not sent",
    requirements=("RDV-7.5", "CONF-3.10.4"),
)
def _(iut: Iut) -> None:
    net = ClientNet(iut, drop_to_node=True)  # the INIT is lost: not registered yet
    answer = iut.ok("rdv_lookup", peer_id=str(OTHER.peer_id), introduce=True, now=0.1)
    net.absorb(answer)
    net.drop_to_node = False
    _registered(net, 20.0)
    expect_eq(net.requests(m.Lookup), [], "LOOKUPs the node received")
    answered = net.of_type("rdv_lookup_answered")
    expect([e.get("observed") for _, e in answered] == [None], f"the lookup should fail at once: {short(answered)}")


def _lookup(net: ClientNet, now: float) -> int:
    net.run_until(now)
    answer = net.iut.ok("rdv_lookup", peer_id=str(OTHER.peer_id), introduce=True, now=now)
    txid = answer.get("txid")
    expect(isinstance(txid, int), f"rdv_lookup must answer a txid, got {short(txid)}")
    net.absorb(answer)
    assert isinstance(txid, int)
    return txid


@case(
    "rdv/client/10",
    section="rendezvous.md §3.4",
    title="a lookup answered by an ERROR of an unknown code fails at once and is not repeated",
    requirements=("RDV-3.4.1",),
)
def _(iut: Iut) -> None:
    net = ClientNet(iut, config={"lease": 3600})
    _registered(net)
    net.drop_records_to_iut = True
    txid = _lookup(net, 5.0)
    net.drop_records_to_iut = False
    net.send_from_node(m.Error(txid=txid, code=77, reason="not a code of the spec"))
    answered = net.of_type("rdv_lookup_answered")
    expect_eq([(e.get("txid"), e.get("observed")) for _, e in answered], [(txid, None)], "lookup answers")
    net.run_until(15.0)
    expect_eq(net.requests(m.Lookup), [5.0], "LOOKUPs the node received")


@case(
    "rdv/client/11",
    section=SECTION,
    title="an unanswered lookup is repeated with back-off, never 5 s after the first, then fails",
    requirements=("RDV-7.1", "CONF-3.10.4"),
)
def _(iut: Iut) -> None:
    net = ClientNet(iut, config={"lease": 3600})
    _registered(net)
    net.drop_records_to_iut = True
    txid = _lookup(net, 5.0)
    net.run_until(12.5)
    expect_eq(net.requests(m.Lookup), [5.0, 5.5, 6.5, 8.5], "LOOKUPs the node received (none 5 s after the first)")
    answered = net.of_type("rdv_lookup_answered")
    expect_eq([(e.get("txid"), e.get("observed")) for _, e in answered], [(txid, None)], "lookup answers by 12.5 s")


@case(
    "rdv/client/12",
    section="rendezvous.md §4.2",
    title="FOUND and INTRODUCTION are reported with their addresses and candidates",
    requirements=("CONF-3.10.4",),
)
def _(iut: Iut) -> None:
    net = ClientNet(iut, config={"lease": 3600})
    _registered(net)
    net.drop_records_to_iut = True
    txid = _lookup(net, 5.0)
    net.drop_records_to_iut = False
    observed, candidates = ("203.0.113.7", 7000), (("10.1.1.1", 7001), ("fd00::7", 7002))
    peer = OTHER.peer_id.public_key
    net.send_from_node(m.Found(txid=txid, peer_id=peer, observed=observed, candidates=candidates))
    net.send_from_node(m.Introduction(txid=9, peer_id=peer, observed=observed, candidates=candidates))
    texts = ["10.1.1.1:7001", "[fd00::7]:7002"]
    (found,) = [e for _, e in net.of_type("rdv_lookup_answered")]
    expect_eq(
        (found.get("txid"), found.get("peer_id"), found.get("observed"), found.get("candidates")),
        (txid, str(OTHER.peer_id), "203.0.113.7:7000", texts),
        "rdv_lookup_answered",
    )
    (intro,) = [e for _, e in net.of_type("rdv_introduction")]
    expect_eq(
        (intro.get("peer_id"), intro.get("observed"), intro.get("candidates")),
        (str(OTHER.peer_id), "203.0.113.7:7000", texts),
        "rdv_introduction",
    )


@case(
    "rdv/client/13",
    section="rendezvous.md §3.4",
    title="a REGISTER that draws an ERROR is repeated with back-off",
    requirements=("RDV-3.4.2",),
)
def _(iut: Iut) -> None:
    net = ClientNet(iut, node_config=NodeConfig(max_registrations=0))
    net.run_until(5.0)
    times = net.requests(m.Register)
    expect(len(times) >= 4, f"REGISTERs at {times}")
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(times)]
    expect_eq(gaps[:3], [0.5, 1.0, 2.0], "gaps between REGISTERs")


@case(
    "rdv/client/14",
    section=SECTION,
    title="a renewal unanswered for 15 s: the registration is lost and the client connects again",
    requirements=("RDV-7.6", "RDV-7.4"),
)
def _(iut: Iut) -> None:
    net = ClientNet(iut, config={"lease": 60})
    _registered(net)
    net.drop_records_to_iut = True  # from now on the node's answers never arrive
    net.run_until(44.9)
    expect_eq(net.times(PacketType.INIT, since=1.0), [], "INITs while the renewal is still young")
    expect_eq(net.of_type("rdv_lost"), [], "losses reported before 15 s")
    net.run_until(50.0)
    renewal = net.requests(m.Register)[1]
    lost = net.of_type("rdv_lost")
    expect(len(lost) == 1, f"one loss reported by 50 s, got {lost}")
    expect(abs(lost[0][0] - (renewal + 15.0)) < 0.01, f"lost at {lost[0][0]} s, the renewal was at {renewal} s")
    inits = net.times(PacketType.INIT, since=1.0)
    expect(bool(inits) and renewal + 15.0 <= inits[0] <= renewal + 17.0, f"INITs after the loss: {inits}")


@case(
    "rdv/client/15",
    section="rendezvous.md §7",
    title="the relays a node offers are reported, other schemes left out; a RELAYS ends no request",
    requirements=("RDV-7.7", "RDV-4.5.1", "CONF-3.10.2"),
)
def _(iut: Iut) -> None:
    urls = ("wss://198.18.0.9:443", "ws://198.18.0.9:8080")
    net = ClientNet(iut, node_config=NodeConfig(relays=urls), config={"lease": 3600})
    _registered(net)
    offered = [e for _, e in net.of_type("rdv_relays")]
    expect_eq([e.get("urls") for e in offered], [list(urls)], "rdv_relays after registering")
    net.drop_records_to_iut = True
    txid = _lookup(net, 5.0)
    net.drop_records_to_iut = False
    net.send_from_node(m.Relays(txid=txid, urls=("turn:198.18.0.9:3478", "http://198.18.0.9", "ws://198.18.0.10:80")))
    offered = [e for _, e in net.of_type("rdv_relays")]
    expect_eq(offered[-1].get("urls"), ["ws://198.18.0.10:80"], "the ws:// URL of the second RELAYS, alone")
    expect(not net.of_type("rdv_lookup_answered"), "a RELAYS with the lookup's txid ended the lookup")
    peer = OTHER.peer_id.public_key
    net.send_from_node(m.Found(txid=txid, peer_id=peer, observed=("198.18.0.7", 7000)))
    expect(len(net.of_type("rdv_lookup_answered")) == 1, "the FOUND after the RELAYS still answers the lookup")


@case(
    "rdv/client/16",
    section="rendezvous.md §3.5",
    title="once its round trip to the node is known, the client ends its REGISTERs with its traits",
    requirements=("RDV-3.5.1",),
)
def _(iut: Iut) -> str:
    net = ClientNet(iut, config={"lease": 60})
    net.run_until(40.0)
    registers = [message for _, message in net.node.received if isinstance(message, m.Register)]
    expect(len(registers) == 2, f"REGISTERs by 40 s: {len(registers)}")
    traits = registers[1].traits
    expect(traits is not None, "the renewal (the first REGISTER was answered at once) carries no traits")
    assert traits is not None
    expect(1 <= traits.rtt_ms <= 2000, f"round trip {traits.rtt_ms} ms: the node answered within the run's step")
    return f"renewal traits: {traits}"
