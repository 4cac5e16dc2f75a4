"""One trial of binding-timeout learning and keepalives on the network emulator (spec/nat.md §4-§5).

A STUN server (the rendezvous node's ``BindingServer``) in the internet; a client behind one NAT
box, or two in a row, with a main socket and the spare sockets the prober needs.  The client runs
the real sans-IO ``BindingTimeoutProber`` and a ``BindingKeeper`` on its main socket, exactly as a
driver would: first learning (with the keeper at the prober's safe interval, NAT-4.5), then
keepalives at the learned interval for a number of the router's real timeouts.  Whether the main
binding was ever lost is read from the boxes themselves (a mapping made again has a later
``created``), not from the client.

Used by tests/simulation/test_keepalive_learning.py and bench/keepalive.py.
"""

from __future__ import annotations

import dataclasses
import math
from typing import cast

from p2pos.proto.nat.binding_timeout import BindingTimeoutProber, SearchConfig, TimeoutLearned, TimeoutSearchFailed
from p2pos.proto.nat.keepalive import BindingKeeper, BindingLost, MappingChanged
from p2pos.proto.nat.stun import BindingServer
from p2pos.proto.simulation.agents import Agent, run_agents
from p2pos.proto.simulation.link import LinkConfig
from p2pos.proto.simulation.nat import Nat, NatConfig
from p2pos.proto.simulation.network import Host, Network
from p2pos.proto.simulation.prng import Prng

Address = tuple[str, int]
#: IPv4 and UDP headers: what each datagram adds on the wire (issue 13, item 9).
HEADERS = 28
STUN_PORT = 3478


class StunServerAgent:
    """The node's Binding answers on one socket (RESPONSE-PORT included, NAT-3.1.5)."""

    def __init__(self, host: Host) -> None:
        self.local = host.open(STUN_PORT)
        self.server = BindingServer(primary=self.local, instance=bytes(range(8)))  # as a node answers (RDV-5.5)
        self._out: list[tuple[bytes, Address, Address]] = []

    def receive_datagram(self, data: bytes, addr: Address, now: float, local: Address) -> None:
        answer = self.server.answer_untrusted(data, addr, 0)
        if answer is not None:
            self._out.append((answer.data, answer.to, self.local))

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address, Address]]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass


class LearningClient:
    """The driver's part: one main socket (control and keepalives) and the spare sockets."""

    def __init__(
        self,
        host: Host,
        server: Address,
        rng: Prng,
        *,
        config: SearchConfig | None = None,
        learn: bool = True,
        interval: float | None = None,
        relearn: bool = False,
    ) -> None:
        self.main = host.open(40000)
        cfg = config or SearchConfig()
        self.spares = [host.open(41000 + i) for i in range(cfg.sockets_needed)]
        self.prober = BindingTimeoutProber(server, control=self.main, spares=self.spares, random=rng, config=cfg)
        self.keeper = BindingKeeper(server, interval or self.prober.interval, random=rng, local=self.main)
        self.learn = learn
        self.started = False
        self.learned: TimeoutLearned | None = None
        self.failed: TimeoutSearchFailed | None = None
        self.keeper_events: list[object] = []
        self.relearn = relearn
        self.relearned = 0

    def receive_datagram(self, data: bytes, addr: Address, now: float, local: Address) -> None:
        if self.prober.receive_datagram(data, addr, now, local):
            self._after(now)
        elif local == self.main:
            self.keeper.receive_datagram(data, addr, now)
        self._events(now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address, Address]]:
        out: list[tuple[bytes, Address, Address]] = []
        for data, to, local in self.prober.datagrams_to_send(now):
            out.append((data, to, cast("Address", local)))  # the keys are the sockets' addresses
            if local == self.main:
                self.keeper.note_sent(now)  # PTH-7.4: whatever leaves refreshes the binding
        out.extend((data, to, cast("Address", local)) for data, to, local in self.keeper.datagrams_to_send(now))
        return out

    def get_timer(self) -> float | None:
        if not self.started:
            return 0.0
        times = [t for t in (self.prober.get_timer(), self.keeper.get_timer()) if t is not None]
        return min(times, default=None)

    def handle_timer(self, now: float) -> None:
        if not self.started:
            self.started = True
            self.keeper.start(now)
            if self.learn:
                self.prober.start(now)
            else:
                self.keeper.probe(now)
        self.prober.handle_timer(now)
        self._after(now)
        self.keeper.handle_timer(now)
        self._events(now)

    def _after(self, now: float) -> None:
        """Keep the keeper at the prober's safe interval while it learns (NAT-4.5)."""
        while (event := self.prober.next_event()) is not None:
            if isinstance(event, TimeoutLearned):
                self.learned = event
                self.keeper.set_interval(event.interval, now, timeout=event.timeout)
            else:
                self.failed = event
        if self.prober.running and self.keeper.interval != self.prober.interval:
            self.keeper.set_interval(self.prober.interval, now)

    def _events(self, now: float) -> None:
        while (event := self.keeper.next_event()) is not None:
            if isinstance(event, BindingLost | MappingChanged):
                self.keeper_events.append(event)
                if self.relearn and not self.prober.running:  # NAT-4.6
                    self.learned = None
                    self.relearned += 1
                    self.prober.relearn(now)
                    self.keeper.set_interval(self.prober.interval, now)


@dataclasses.dataclass(frozen=True, slots=True)
class Trial:
    """What one trial measured."""

    timeout: float  # the real timeout of the main binding (the stream one under conntrack)
    learned: TimeoutLearned | None
    failed: TimeoutSearchFailed | None
    learn_time: float
    interval: float
    #: The main binding's mapping was made again at some point (in any box).
    lost: bool
    keeper_alarms: int
    #: Bytes on the client's wire (both directions, headers counted) in the steady-state window.
    window_bytes: int
    window: float
    learning_bytes: int

    @property
    def ratio(self) -> float:
        return self.interval / self.timeout


def real_timeout(configs: list[NatConfig]) -> float:
    """The idle timeout of a binding that has seen traffic both ways for long: the smallest in the row."""
    return min(c.stream_timeout if c.stream_timeout is not None else c.timeout for c in configs)


def _wire_bytes(net: Network, name: str) -> int:
    link = net.link(name)
    assert link is not None
    up, down = link.stats("node"), link.stats("realm")
    return up.sent_bytes + down.sent_bytes + HEADERS * (up.sent + down.sent)


def _main_mappings(boxes: list[Nat], main: Address, now: float) -> list[float]:
    """The creation time of the main socket's mapping in each box, innermost first (nan: none)."""
    created = []
    inside = main
    for nat in boxes:
        found = next((m for m in nat.mappings(now) if m.internal == inside), None)
        if found is None:
            created.append(math.nan)
            break
        created.append(found.created)
        inside = found.public
    return created


def trial(
    seed: int,
    nats: list[NatConfig],
    *,
    link: LinkConfig | None = None,
    periods: int = 10,
    learn: bool = True,
    interval: float | None = None,
    window: float | None = None,
    config: SearchConfig | None = None,
) -> Trial:
    """Learn (or not: ``interval`` fixed), then keep the main binding for ``periods`` real timeouts.

    ``nats`` are the boxes in a row, outermost first; ``link`` the hop of each box to its outer
    realm (the wide-area links: loss and delay go there).
    """
    net = Network(seed)
    realm = net.internet
    boxes: list[Nat] = []
    for i, cfg in enumerate(nats):
        realm = net.add_nat(f"nat{i}", cfg, realm, inside=f"10.{i}.0.0/24" if i else "100.64.0.0/24", link=link)
        assert realm.nat is not None
        boxes.append(realm.nat)
    server_host = net.add_host("server", net.internet)
    client_host = net.add_host("client", realm)
    server = StunServerAgent(server_host)
    client = LearningClient(
        client_host, server.local, Prng(seed).derive(b"client"), config=config, learn=learn, interval=interval
    )
    agents: dict[Host, Agent] = {server_host: server, client_host: client}
    timeout = real_timeout(nats)
    inner_first = list(reversed(boxes))
    step = timeout / 10

    def done(now: float) -> bool:
        return not learn or client.learned is not None or client.failed is not None

    now, created = 0.0, [math.nan]
    while any(math.isnan(c) for c in created) and now < 10.0:  # until the first datagram passed every box
        now = run_agents(net, agents, now + 0.25, now=now)
        created = _main_mappings(inner_first, client.main, now)
    lost = False
    deadline = (config or SearchConfig()).budget + 60.0
    while not done(now) and now < deadline:  # learning, in slices, checking the boxes after each
        now = run_agents(net, agents, now + step, now=now, stop=done)
        lost = lost or _main_mappings(inner_first, client.main, now) != created
    learn_time = now if learn else 0.0
    learning_bytes = _wire_bytes(net, "client")
    window = window if window is not None else periods * timeout
    start = now + 2 * timeout  # settle: the spare bindings idle out
    before = 0
    for until in (start, start + window):
        before = _wire_bytes(net, "client")
        while now < until:
            now = run_agents(net, agents, min(now + step, until), now=now)
            lost = lost or _main_mappings(inner_first, client.main, now) != created
    window_bytes = _wire_bytes(net, "client") - before
    used = client.learned.interval if client.learned is not None else client.keeper.interval
    return Trial(
        timeout=timeout,
        learned=client.learned,
        failed=client.failed,
        learn_time=learn_time,
        interval=used,
        lost=lost or any(math.isnan(c) for c in created),
        keeper_alarms=len(client.keeper_events),
        window_bytes=window_bytes,
        window=window,
        learning_bytes=learning_bytes,
    )
