"""Two real punchers (p2pos_proto/nat/punch.py) through the seeded emulator's NAT models (issue 13, items 8, 9).

One trial builds a network: a rendezvous "node" host in the internet, and two sides, each a host
behind its chain of NAT boxes (none for a public host, two for a carrier-grade NAT in front of a
home NAT), joined to the internet by a wide-area hop with the trial's delay and loss.  Then, in
virtual time:

1. each side registers with the node from its main socket (resent every REGISTER_RETRY until
   answered): its *observed* address is the source the node sees, i.e. its mapping towards the
   node, as the real daemon's; it measures its RTT to the node on the way;
2. once both are registered the node introduces them to each other at the same moment (resent
   until each acknowledges it); a side starts its punch at ``receipt + max(0, (rtt_peer -
   rtt_own) / 2)`` (spec/punch.md §7), with the plan ``punch_plan.plan`` gives for the two
   profiles, the ticket, the RTT estimate of §4 and, on the scattering side of a birthday, the
   extra sockets opened on its host in the emulator;
3. the punchers run until both have an outcome (or the trial's time is up); every probe and
   answer crosses the emulated NATs and links.

With ``fresh=True`` the node has a second address and answers fresh Bindings there with the core's
``FreshTickets`` (spec/rendezvous.md §4.6): a sequential side's puncher sends them when it starts
(spec/punch.md §3.4), and the node passes each to the other side as a FRESH (a ``fresh HOST PORT``
control datagram on the side's registration mapping, lost or not like any other), which its
puncher turns into a re-based prediction.

``run_trial(a, b, seed, wan=...)`` returns a :class:`TrialResult`: success (both sides found a
pair), the pair that won and whether the emulator confirms it (packets from each side's winning
socket reached the other's under the addresses each side names), the times to the first and to
both successes from the punch's start, the probes (requests) and answers each side sent, and the
budgets of spec/punch.md §4 that a side broke (none, when all is well).

The NAT kinds (``KINDS``) pair an emulator configuration with the profile behaviour discovery
would report for it (spec/punch.md §2); the profile is stated, not measured, here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

from p2pos.proto.nat import punch as pu
from p2pos.proto.nat.profile import Allocation as PAllocation
from p2pos.proto.nat.profile import Filtering as PFiltering
from p2pos.proto.nat.profile import Mapping as PMapping
from p2pos.proto.nat.profile import NatProfile
from p2pos.proto.nat.punch_plan import Plan, plan
from p2pos.proto.rendezvous.fresh import FreshTickets
from p2pos.proto.simulation.agents import run_agents
from p2pos.proto.simulation.link import LinkConfig
from p2pos.proto.simulation.nat import Allocation, FilteringBehaviour, MappingBehaviour, NatConfig, Refresh
from p2pos.proto.simulation.network import Host, Network, Realm
from p2pos.proto.simulation.prng import Prng

Address = tuple[str, int]

#: The wide-area hop of each side, each way: RTT between the peers (and the sum of both sides'
#: RTTs to the node, which sits on the internet's router) 40 ms; with and without 2% loss.
CLEAN = LinkConfig(delay=0.010)
LOSSY = LinkConfig(delay=0.010, loss=0.02)
REGISTER_RETRY = 0.5
INTRO_RETRY = 0.25
#: A trial ends when both sides have an outcome, or this long after the first registration.
TRIAL_LIMIT = 30.0
#: Other hosts' new mappings per second on a "busy" sequential NAT (NatConfig.shared_rate).
BUSY_RATE = 10.0

_STUN_REQUEST = b"\x00\x01"
_STUN_SUCCESS = b"\x01\x01"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class NatKind:
    """A side's NAT(s): the boxes, outermost first (none: a public host), and its measured profile."""

    name: str
    chain: tuple[NatConfig, ...]
    profile: NatProfile


def _seq(delta: int, busy: bool) -> NatKind:
    return NatKind(
        name=f"seq{delta}{'-busy' if busy else ''}",
        chain=(
            NatConfig(
                mapping=MappingBehaviour.ADDRESS_AND_PORT_DEPENDENT,
                allocation=Allocation.SEQUENTIAL,
                delta=delta,
                shared_rate=BUSY_RATE if busy else 0.0,
                refresh=Refresh.BOTH,
            ),
        ),
        profile=NatProfile(
            mapping=PMapping.ADDRESS_AND_PORT_DEPENDENT,
            filtering=PFiltering.ADDRESS_AND_PORT_DEPENDENT,
            allocation=PAllocation.SEQUENTIAL,
            delta=delta,
        ),
    )


_HOME = NatConfig(refresh=Refresh.BOTH)  # Linux masquerade with an inbound filter: EIM, APDF, port-preserving
_EIM_APDF = NatProfile(
    mapping=PMapping.ENDPOINT_INDEPENDENT,
    filtering=PFiltering.ADDRESS_AND_PORT_DEPENDENT,
    allocation=PAllocation.PRESERVING,
)
_RANDOM_APDM = NatConfig(
    mapping=MappingBehaviour.ADDRESS_AND_PORT_DEPENDENT, allocation=Allocation.RANDOM, refresh=Refresh.BOTH
)
_SCATTERING = NatProfile(
    mapping=PMapping.ADDRESS_AND_PORT_DEPENDENT,
    filtering=PFiltering.ADDRESS_AND_PORT_DEPENDENT,
    allocation=PAllocation.RANDOM,
)

KINDS: dict[str, NatKind] = {
    k.name: k
    for k in [
        NatKind(
            name="public",
            chain=(),
            profile=NatProfile(mapping=PMapping.NONE, filtering=PFiltering.NONE, allocation=PAllocation.PRESERVING),
        ),
        NatKind(
            name="full-cone",
            chain=(NatConfig(filtering=FilteringBehaviour.ENDPOINT_INDEPENDENT, refresh=Refresh.BOTH),),
            profile=dataclasses.replace(_EIM_APDF, filtering=PFiltering.ENDPOINT_INDEPENDENT),
        ),
        NatKind(
            name="eim-adf",
            chain=(NatConfig(filtering=FilteringBehaviour.ADDRESS_DEPENDENT, refresh=Refresh.BOTH),),
            profile=dataclasses.replace(_EIM_APDF, filtering=PFiltering.ADDRESS_DEPENDENT),
        ),
        NatKind(name="eim-apdf", chain=(_HOME,), profile=_EIM_APDF),
        NatKind(
            name="adm",  # address-dependent mapping, random ports, address-dependent filtering
            chain=(
                NatConfig(
                    mapping=MappingBehaviour.ADDRESS_DEPENDENT,
                    filtering=FilteringBehaviour.ADDRESS_DEPENDENT,
                    allocation=Allocation.RANDOM,
                    refresh=Refresh.BOTH,
                ),
            ),
            profile=NatProfile(
                mapping=PMapping.ADDRESS_DEPENDENT,
                filtering=PFiltering.ADDRESS_DEPENDENT,
                allocation=PAllocation.RANDOM,
            ),
        ),
        _seq(1, False),
        _seq(2, False),
        _seq(1, True),
        _seq(2, True),
        NatKind(name="random", chain=(_RANDOM_APDM,), profile=_SCATTERING),
        NatKind(
            name="udp-blocked",
            chain=(NatConfig(udp_blocked=True),),
            profile=NatProfile(udp_blocked=True),
        ),
        NatKind(
            name="cgn-eim+home",
            chain=(NatConfig(allocation=Allocation.RANDOM, refresh=Refresh.BOTH), _HOME),
            profile=dataclasses.replace(_EIM_APDF, allocation=PAllocation.RANDOM),
        ),
        NatKind(name="cgn-random+home", chain=(_RANDOM_APDM, _HOME), profile=_SCATTERING),
    ]
}


def strategy(a: NatKind, b: NatKind) -> str:
    """The strategy of spec/punch.md §3.1 for the pair (``a`` leading): relay, dial, predict,
    both-sequential or birthday."""
    pa, pb = plan(a.profile, b.profile, leading=True), plan(b.profile, a.profile, leading=False)
    if not pa.direct:
        return "relay"
    if pa.sockets or pb.sockets:
        return "birthday"
    if pa.predict and pb.predict:
        return "both-sequential"
    if pa.predict or pb.predict:
        return "predict"
    return "dial"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SideResult:
    """What one side did in a trial."""

    plan: Plan
    #: The winning pair (this side's socket, the peer's address it reached), or None.
    won: tuple[Address, Address] | None
    #: Probes (requests) sent, of them triggered ones (spec/punch.md §5.3); answers sent; probes heard.
    probes: int
    triggered: int
    answers: int
    heard: int
    sockets: int
    #: Fresh Bindings sent and FRESHes acted on (spec/punch.md §3.4).
    fresh_sent: int = 0
    rebased: int = 0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TrialResult:
    seed: int
    a: SideResult
    b: SideResult
    #: Both sides found a pair.
    success: bool
    #: The emulator confirms each side's pair: a packet from its winning socket to the address it names
    #: reached the peer's socket ``s``, and one from ``s`` reached the winning socket from that address.
    pair_verified: bool
    #: Both sides chose the same pair (in a birthday with two hits they may choose two good ones).
    same_pair: bool
    #: Seconds from the punch's start (the earlier side's) to the first success, and to both.
    time_first: float | None
    time_both: float | None
    #: Budgets of spec/punch.md §4 broken, in words (empty when all held).
    violations: tuple[str, ...]

    @property
    def probes(self) -> int:
        return self.a.probes + self.b.probes


class _Trial:
    """Shared state of one trial: what the introduction carries, and every probe on the wire."""

    def __init__(self, seed: int) -> None:
        self.rng = Prng(seed)
        self.ticket = self.rng.derive(b"ticket")(16)
        self.observed: dict[str, Address] = {}
        self.rtt: dict[str, float] = {}
        #: (txid, kind) -> (side, local, destination, time) of each probe or answer sent.
        self.sent: dict[tuple[bytes, bytes], tuple[str, Address, Address, float]] = {}
        #: (sender side, sender socket, receiver side, receiver socket, source the receiver saw).
        self.arrived: set[tuple[str, Address, str, Address, Address]] = set()
        #: (sender side, sender socket, destination it sent to, receiver socket).
        self.reached: set[tuple[str, Address, Address, Address]] = set()


class _Node:
    """The rendezvous node: answers registrations with ``seen``, then introduces the two sides; with
    ``fresh``, it has a second address and answers fresh Bindings there, passing each to the other
    side as a ``fresh HOST PORT`` control datagram (a FRESH, spec/rendezvous.md §4.6)."""

    def __init__(self, host: Host, trial: _Trial, idle: float, *, fresh: bool = False) -> None:
        self.local = host.open(3478)
        #: The node's other address (nat.md §3.1), where sequential sides send their fresh Binding.
        self.other: Address | None = host.open(3479, ip=host.add_address()) if fresh else None
        self.tickets = FreshTickets()
        self.fresh_forwarded = 0
        self.idle = idle
        self.trial = trial
        self.acked: set[str] = set()
        self.timer: float | None = None
        #: Sides whose UDP is blocked: registered and introduced over another transport (TCP, a relay).
        self.tcp: dict[str, _Side] = {}
        self._out: list[tuple[bytes, Address, Address]] = []

    def receive_datagram(self, data: bytes, addr: Address, now: float, local: Address) -> None:
        if data[:1] in (b"\x00", b"\x01"):  # STUN: a fresh Binding, or nothing the node answers here
            verdict = self.tickets.receive_untrusted(data, addr, now)
            if verdict is not None and verdict.answer is not None:
                self._out.append((verdict.answer, addr, local))
            if verdict is not None and verdict.fresh is not None:
                other = "b" if verdict.fresh.peer_id == b"a" else "a"
                host, port = verdict.fresh.observed
                if other in self.tcp:
                    self.tcp[other].receive_fresh(verdict.fresh.observed, now)
                else:
                    self._out.append((f"fresh {host} {port}".encode(), self.trial.observed[other], self.local))
                self.fresh_forwarded += 1
            return
        word, _, rest = data.partition(b" ")
        name = rest.split(b" ")[0].decode()
        if word == b"register":
            first = name not in self.trial.observed
            self.trial.observed[name] = addr
            self._out.append((b"seen " + rest.split(b" ")[1], addr, local))
            if first and len(self.trial.observed) == 2:
                # FOUND and INTRODUCTION at the same moment (rendezvous.md §4.3), ``idle`` after both registered.
                self.timer = now + self.idle
        elif word == b"ack-intro":
            self.acked.add(name)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address, Address]]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        return self.timer

    def handle_timer(self, now: float) -> None:
        if not self.tickets:  # the introduction: its ticket lives on for fresh Bindings (rendezvous.md §4.6)
            self.tickets.add(self.trial.ticket, txid=1, asker=(b"a", 0), target=(b"b", 1), now=now)
        for name, address in self.trial.observed.items():
            if name in self.tcp and name not in self.acked:
                self.acked.add(name)
                self.tcp[name].receive_intro(now)
            elif name not in self.acked:
                self._out.append((b"intro", address, self.local))
        self.timer = now + INTRO_RETRY if len(self.acked) < 2 else None


class _Side:
    """One peer: registers, takes the introduction, runs the puncher on its host's sockets."""

    def __init__(self, name: str, peer: str, host: Host, kind: NatKind, peer_kind: NatKind, trial: _Trial) -> None:
        self.name, self.peer, self.host, self.kind, self.peer_kind, self.trial = (
            name,
            peer,
            host,
            kind,
            peer_kind,
            trial,
        )
        self.main = host.open()
        self.node: Address = ("", 0)
        #: The node's other address for a fresh Binding (None: the feature is off), and a FRESH that
        #: arrived before the punch started.
        self.fresh_to: Address | None = None
        self.fresh_early: Address | None = None
        self.plan = plan(kind.profile, peer_kind.profile, leading=name == "a")
        self.attempts: list[float] = []
        self.register_at: float | None = 0.0
        self.start_at: float | None = None
        self.started: float | None = None
        self.puncher: pu.Puncher | None = None
        self.extra: list[Address] = []
        self.success_at: float | None = None
        #: (time, local, destination) of each probe sent.
        self.requests: list[tuple[float, Address, Address]] = []
        self._out: list[tuple[bytes, Address, Address]] = []

    # -- Agent ----------------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Address, now: float, local: Address) -> None:
        if addr == self.node and local == self.main and data[:1] not in (b"\x00", b"\x01"):
            self._control(data, now)
            return
        if data[:2] in (_STUN_REQUEST, _STUN_SUCCESS):
            sender = self.trial.sent.get((data[8:20], data[:2]))
            if sender is not None:
                self.trial.arrived.add((sender[0], sender[1], self.name, local, addr))
                self.trial.reached.add((sender[0], sender[1], sender[2], local))
        if self.puncher is not None:
            self.puncher.receive_datagram(local, addr, data, now)
            self._poll(now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address, Address]]:
        if self.puncher is not None:
            for local, address, data in self.puncher.datagrams_to_send(now):
                self.trial.sent[(data[8:20], data[:2])] = (self.name, _addr(local), address, now)
                if data[:2] == _STUN_REQUEST and address != self.fresh_to:
                    self.requests.append((now, _addr(local), address))
                self._out.append((data, address, _addr(local)))
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        timers = [self.register_at, self.start_at, self.puncher.get_timer() if self.puncher else None]
        return min((t for t in timers if t is not None), default=None)

    def handle_timer(self, now: float) -> None:
        if self.register_at is not None and now >= self.register_at:
            self.attempts.append(now)
            self._out.append((f"register {self.name} {len(self.attempts) - 1}".encode(), self.node, self.main))
            self.register_at = now + REGISTER_RETRY
        if self.start_at is not None and now >= self.start_at:
            self.start_at = None
            self._start(now)
        if self.puncher is not None:
            self.puncher.handle_timer(now)
            self._poll(now)

    # -- internals ------------------------------------------------------------------------------

    def _control(self, data: bytes, now: float) -> None:
        if data.startswith(b"seen ") and self.name not in self.trial.rtt:
            self.trial.rtt[self.name] = now - self.attempts[int(data[5:])]
            self.register_at = None
        elif data == b"intro":
            self._out.append((f"ack-intro {self.name}".encode(), self.node, self.main))
            self.receive_intro(now)
        elif data.startswith(b"fresh "):
            _, host, port = data.split(b" ")
            self.receive_fresh((host.decode(), int(port)), now)

    def receive_fresh(self, address: Address, now: float) -> None:
        """A FRESH: the peer's fresh mapping, for the running punch (or the one about to start)."""
        if self.puncher is None:
            self.fresh_early = address
        else:
            self.puncher.receive_fresh(address, now)

    def receive_intro(self, now: float) -> None:
        """The introduction arrived (over UDP from the node, or over another transport)."""
        if self.started is None and self.start_at is None:
            own = self.trial.rtt.get(self.name, self.trial.rtt.get(self.peer, 0.0))
            theirs = self.trial.rtt.get(self.peer, own)
            self.start_at = now + max(0.0, (theirs - own) / 2)  # spec/punch.md §7

    def _start(self, now: float) -> None:
        self.started = now
        own = self.trial.rtt.get(self.name, 0.0)
        estimate = (own + self.trial.rtt.get(self.peer, own)) / 2  # both halves (spec/punch.md §4)
        self.extra = [self.host.open() for _ in range(self.plan.sockets)]
        self.puncher = pu.Puncher(
            self.plan,
            main=self.main,
            extra=self.extra,
            peer=self.trial.observed[self.peer],
            delta=self.peer_kind.profile.delta,
            ticket=self.trial.ticket,
            rtt=estimate,
            random=self.trial.rng.derive(b"puncher " + self.name.encode()),
            now=now,
            fresh_to=self.fresh_to,
            leading=self.name == "a",
        )
        if self.fresh_early is not None:
            self.puncher.receive_fresh(self.fresh_early, now)

    def _poll(self, now: float) -> None:
        if self.success_at is None and self.puncher is not None and isinstance(self.puncher.outcome, pu.PunchSucceeded):
            self.success_at = now

    def result(self) -> SideResult:
        p = self.puncher
        won = None
        if p is not None and isinstance(p.outcome, pu.PunchSucceeded):
            won = (_addr(p.outcome.local), p.outcome.address)
        return SideResult(
            plan=self.plan,
            won=won,
            probes=p.probes_sent if p else 0,
            triggered=p.probes_triggered if p else 0,
            answers=p.answers_sent if p else 0,
            heard=p.probes_heard if p else 0,
            sockets=len(self.extra),
            fresh_sent=p.fresh_sent if p else 0,
            rebased=p.rebased if p else 0,
        )


def _addr(local: object) -> Address:
    assert isinstance(local, tuple)
    return local  # the harness names sockets by their address


def _attach(net: Network, name: str, kind: NatKind, wan: LinkConfig) -> Host:
    """A host behind ``kind``'s boxes, the outermost joined to the internet by ``wan``."""
    realm: Realm = net.internet
    link: LinkConfig | None = wan
    for i, config in enumerate(kind.chain):
        inner = "10.0.0.0/24" if i == len(kind.chain) - 1 else "100.64.0.0/10"
        realm = net.add_nat(f"{name}-nat{i}", config, realm, inside=inner, link=link)
        link = None
    return net.add_host(name, realm, link=link)


def run_trial(
    a: NatKind, b: NatKind, seed: int, *, wan: LinkConfig = CLEAN, idle: float = 0.0, fresh: bool = False
) -> TrialResult:
    """One punch between a side behind ``a`` (leading) and one behind ``b``; see the module docstring.

    ``idle``: seconds between the second registration and the introduction (the observed
    addresses age meanwhile: a busy sequential NAT hands out ports to other hosts).  ``fresh``: the
    node has a second address and a sequential side takes a fresh mapping there when its punch
    starts, which the node passes to the peer (spec/punch.md §3.4, spec/rendezvous.md §4.6)."""
    trial = _Trial(seed)
    net = Network(seed)
    node_host = net.add_host("node", net.internet, link=None)
    node = _Node(node_host, trial, idle, fresh=fresh)
    sides = {"a": _Side("a", "b", _attach(net, "a", a, wan), a, b, trial)}
    sides["b"] = _Side("b", "a", _attach(net, "b", b, wan), b, a, trial)
    for side in sides.values():
        side.node = node.local
        side.fresh_to = node.other
        if side.kind.profile.udp_blocked:  # it reaches the node over TCP or a relay instead
            side.register_at = None
            trial.observed[side.name] = (side.host.ip, side.main[1])
            trial.rtt[side.name] = 2 * wan.delay
            node.tcp[side.name] = side
    if len(trial.observed) == 2:
        node.timer = idle

    def done(now: float) -> bool:
        return all(s.puncher is not None and s.puncher.outcome is not None for s in sides.values())

    run_agents(net, {node_host: node, **{s.host: s for s in sides.values()}}, TRIAL_LIMIT + idle, stop=done)
    sa, sb = sides["a"], sides["b"]
    ra, rb = sa.result(), sb.result()
    starts = [s.started for s in (sa, sb) if s.started is not None]
    t0 = min(starts) if starts else math.nan
    successes = [s.success_at for s in (sa, sb) if s.success_at is not None]
    success = ra.won is not None and rb.won is not None
    verified = success and _proven(trial, "a", ra) and _proven(trial, "b", rb)
    same = False
    if ra.won is not None and rb.won is not None:
        (la, aa), (lb, ab) = ra.won, rb.won
        same = ("b", lb, "a", la, aa) in trial.arrived and ("a", la, "b", lb, ab) in trial.arrived
    return TrialResult(
        seed=seed,
        a=ra,
        b=rb,
        success=success,
        pair_verified=verified,
        same_pair=same,
        time_first=min(successes) - t0 if successes else None,
        time_both=max(successes) - t0 if success else None,
        violations=tuple(_violations(sa) + _violations(sb) + _pair_violations(sa, sb)),
    )


def _proven(trial: _Trial, name: str, side: SideResult) -> bool:
    """Whether the emulator carried ``side``'s winning pair both ways (see ``TrialResult.pair_verified``)."""
    if side.won is None:
        return False
    local, address = side.won
    peer = "b" if name == "a" else "a"
    return any(
        (sender, sender_local, dst) == (name, local, address) and (peer, there, name, local, address) in trial.arrived
        for sender, sender_local, dst, there in trial.reached
    )


def _violations(side: _Side) -> list[str]:
    """The budgets of spec/punch.md §4 this side broke."""
    out: list[str] = []
    p, plan_, name = side.puncher, side.plan, side.name
    if p is None:
        return [f"{name}: never started"] if plan_.direct else []
    assert side.started is not None
    start, requests = side.started, side.requests
    if p.probes_sent != len(requests):
        out.append(f"{name}: counted {p.probes_sent} probes, sent {len(requests)}")
    if not plan_.direct and requests:
        out.append(f"{name}: {len(requests)} probes on a relay-only pair (PUN-3.8.1)")
    late = [t for t, _, _ in requests if t > start + pu.DEADLINE + 1e-9]
    if late:
        out.append(f"{name}: {len(late)} probes after the deadline (PUN-4.4.1)")
    scheduled = len(requests) - p.probes_triggered
    predicted = plan_.predict * plan_.rounds * (1 + p.rebased)  # a FRESH re-bases once at most (§4.2)
    budget = (pu.DIAL_PROBES if plan_.dial else 0) + predicted
    budget += (plan_.sockets + 1 if plan_.sockets else 0) + plan_.scan
    if scheduled > budget:
        out.append(f"{name}: {scheduled} scheduled probes over the plan's budget {budget} (§4)")
    per_pair: dict[tuple[Address, Address], int] = {}
    for _, local, dst in requests:
        per_pair[(local, dst)] = per_pair.get((local, dst), 0) + 1
    most = max(per_pair.values(), default=0)
    limit = max(pu.DIAL_PROBES, plan_.rounds * (1 + p.rebased)) + p.probes_triggered
    if most > limit:
        out.append(f"{name}: {most} probes to one address from one socket, over {limit} (PUN-4.1.1, PUN-4.2.1)")
    if plan_.sockets:
        if len(side.extra) > 255:
            out.append(f"{name}: {len(side.extra)} extra sockets (PUN-4.3.1)")
        spread = [t for t, local, _ in requests if local in side.extra and t > start + pu.SOCKETS_SPREAD]
        if len(spread) > p.probes_triggered:
            out.append(f"{name}: birthday sockets probing after {pu.SOCKETS_SPREAD * 1000:.0f} ms (PUN-4.3.1)")
        if sum(1 for _, local, _ in requests if local in side.extra) > len(side.extra) + p.probes_triggered:
            out.append(f"{name}: a birthday socket sent more than one probe (PUN-4.3.1)")
    if plan_.scan:
        scanned = [(t, dst[1]) for t, _, dst in requests if dst != side.trial.observed[side.peer]]
        ports = [port for _, port in scanned]
        if len(set(ports)) < len(ports) - p.probes_triggered or any(not 1024 <= q <= 65535 for q in ports):
            out.append(f"{name}: scan ports not distinct or out of 1024-65535 (PUN-4.3.2)")
        if any(t < start + pu.SCAN_DELAY - 1e-9 for t, _ in scanned[: len(scanned) - p.probes_triggered]):
            out.append(f"{name}: scan started before {pu.SCAN_DELAY * 1000:.0f} ms (PUN-4.3.2)")
        times = [t for t, _ in scanned]
        window = int(pu.SCAN_RATE) + p.probes_triggered
        if any(times[i + window] - times[i] < 1.0 - 1e-9 for i in range(len(times) - window)):
            out.append(f"{name}: over {pu.SCAN_RATE:.0f} scan probes in a second (PUN-4.3.2)")
        if len(ports) > plan_.scan + p.probes_triggered:
            out.append(f"{name}: {len(ports)} scan probes (PUN-4.3.2)")
    if p.fresh_sent > (pu.FRESH_SENDS if plan_.fresh and side.fresh_to is not None else 0):
        out.append(f"{name}: {p.fresh_sent} fresh Bindings (PUN-3.4.1)")
    if p.rebased > pu.MAX_REBASES:
        out.append(f"{name}: re-based {p.rebased} times (PUN-3.4.2)")
    if p.answers_sent > p.probes_heard:
        out.append(f"{name}: {p.answers_sent} answers to {p.probes_heard} probes (PUN-5.2.1)")
    return out


def _pair_violations(a: _Side, b: _Side) -> list[str]:
    if a.plan.predict and b.plan.predict:
        scheduled = len(a.requests) + len(b.requests)
        scheduled -= (a.puncher.probes_triggered if a.puncher else 0) + (b.puncher.probes_triggered if b.puncher else 0)
        rebased = max(a.puncher.rebased if a.puncher else 0, b.puncher.rebased if b.puncher else 0)
        limit = 94 * (1 + rebased)  # each side re-bases once at most on a FRESH (§4.2)
        if scheduled > limit:
            return [f"both sequential: {scheduled} scheduled probes, over {limit} (PUN-4.2.1)"]
    return []


def run_trials(
    a: NatKind, b: NatKind, seeds: Iterable[int], *, wan: LinkConfig = CLEAN, idle: float = 0.0, fresh: bool = False
) -> list[TrialResult]:
    return [run_trial(a, b, seed, wan=wan, idle=idle, fresh=fresh) for seed in seeds]


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by the nearest-rank method (nan when empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
