"""Small sans-IO agents for the network emulator tests: a rendezvous node and a hole-punching peer.

They stand in for the daemon's real strategies (issue 13, items 3 and 4) only to exercise
the emulator; the protocol is a toy (ASCII messages).
"""

from __future__ import annotations

from p2pos.proto.simulation.agents import run_agents
from p2pos.proto.simulation.link import LinkConfig
from p2pos.proto.simulation.nat import NatConfig
from p2pos.proto.simulation.network import Host, Network

Address = tuple[str, int]


def encode(address: Address) -> bytes:
    return f"{address[0]} {address[1]}".encode()


def decode(data: bytes) -> Address:
    ip, port = data.decode().split()
    return (ip, int(port))


class Rendezvous:
    """Answers ``register`` with ``seen <addr>``, and introduces the first two registrants to each other."""

    def __init__(self, host: Host, port: int = 3478) -> None:
        self.local = host.open(port)
        self.registered: list[Address] = []
        self._out: list[tuple[bytes, Address, Address]] = []

    def receive_datagram(self, data: bytes, addr: Address, now: float, local: Address) -> None:
        if data != b"register" or addr in self.registered:
            return
        self.registered.append(addr)
        self._out.append((b"seen " + encode(addr), addr, local))
        if len(self.registered) == 2:
            a, b = self.registered
            self._out.append((b"peer " + encode(b), a, local))
            self._out.append((b"peer " + encode(a), b, local))

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address, Address]]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass


class Puncher:
    """Registers with the rendezvous node, then punches towards the peer it is introduced to.

    Sends ``punch`` every ``interval`` seconds (at most ``tries`` times) until a ``punch``
    or ``ack`` arrives from the peer; answers each ``punch`` with ``ack``.
    """

    def __init__(
        self, host: Host, server: Address, *, port: int | None = None, interval: float = 0.02, tries: int = 10
    ) -> None:
        self.local = host.open(port)
        self.server = server
        self.interval = interval
        self.tries = tries
        self.peer: Address | None = None
        self.seen: Address | None = None
        self.direct_at: float | None = None
        self.probes = 0
        self._timer: float | None = 0.0
        self._registered = False
        self._out: list[tuple[bytes, Address, Address]] = []

    def receive_datagram(self, data: bytes, addr: Address, now: float, local: Address) -> None:
        if addr == self.server and data.startswith(b"seen "):
            self.seen = decode(data[5:])
        elif addr == self.server and data.startswith(b"peer ") and self.peer is None:
            self.peer = decode(data[5:])
            self._timer = now
        elif data in (b"punch", b"ack") and addr == self.peer:
            if data == b"punch":
                self._out.append((b"ack", addr, self.local))
            if self.direct_at is None:
                self.direct_at = now
                self._timer = None

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address, Address]]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        return self._timer

    def handle_timer(self, now: float) -> None:
        if not self._registered:
            self._registered = True
            self._out.append((b"register", self.server, self.local))
            self._timer = None
            return
        if self.peer is None or self.direct_at is not None or self.probes >= self.tries:
            self._timer = None
            return
        self.probes += 1
        self._out.append((b"punch", self.peer, self.local))
        self._timer = now + self.interval


def punch_trial(
    seed: int,
    a_nats: list[NatConfig],
    b_nats: list[NatConfig],
    *,
    link: LinkConfig | None = None,
    until: float = 2.0,
    trace: bool = False,
) -> tuple[Network, Puncher, Puncher]:
    """Two peers, each behind its NATs in a row (outermost first), punching after an introduction."""
    net = Network(seed, trace=trace)
    hop = link if link is not None else LinkConfig(delay=0.005)
    server = net.add_host("server", net.internet, link=hop)

    def behind(side: str, configs: list[NatConfig]) -> Host:
        realm = net.internet
        for depth, config in enumerate(configs):
            inside = "100.64.0.0/10" if depth < len(configs) - 1 else "10.0.0.0/24"
            realm = net.add_nat(f"{side}{depth}", config, realm, inside=inside, link=hop)
        return net.add_host(side, realm, link=hop)

    a, b = behind("a", a_nats), behind("b", b_nats)
    rendezvous = Rendezvous(server)
    alice, bob = Puncher(a, rendezvous.local, port=5000), Puncher(b, rendezvous.local, port=5000)
    run_agents(
        net,
        {server: rendezvous, a: alice, b: bob},
        until,
        stop=lambda now: alice.direct_at is not None and bob.direct_at is not None,
    )
    return net, alice, bob
