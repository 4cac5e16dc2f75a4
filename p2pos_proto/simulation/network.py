"""A seeded, sans-IO emulator of an addressed datagram network with NAT boxes (issue 13, item 8).

Hosts with (ip, port) sockets sit in *realms*: the public internet (198.18.0.0/15 and
2001:2::/48, the lab's "internet") and any number of private networks, each behind one
NAT box (``nat.py``) whose public side sits in another realm, so boxes nest (a home NAT
behind a carrier-grade NAT in 100.64.0.0/10).  Every host and box is attached to its
realm by a hop, a :class:`~p2pos.proto.simulation.link.LinkEmulator` with the full
semantics of :class:`~p2pos.proto.simulation.link.LinkConfig` (delay, loss, bursts,
reordering, duplication, outages; "node" -> "realm" is the way up), or an instantaneous
lossless one (``link=None``).  No sockets, no clock: time is the ``now`` argument, every
random choice comes from the seed, and the same seed, topology and calls give the same
deliveries bit for bit.

Building a scenario::

    net = Network(7)
    server = net.add_host("server", net.internet)                        # a public host
    cgn = net.add_nat("cgn", NatConfig(allocation=Allocation.RANDOM), net.internet,
                      inside="100.64.0.0/10")
    home = net.add_nat("home", linux_masquerade(), cgn,                   # NATs in a row
                       link=LinkConfig(delay=0.020, loss=0.01))
    alice = net.add_host("alice", home)                                   # 10.0.0.2
    sock = alice.open(5000)                                               # ("10.0.0.2", 5000)
    stun = server.open(3478)                                              # ("198.18.0.2", 3478)
    alice.send(sock, b"hi", stun, now)
    t = net.next_delivery_time()                                          # None when idle
    for d in net.deliver(t):                                              # Delivery tuples, in time order
        ...  # d.host, d.local (its socket), d.addr (the source it sees), d.data
    home.nat.stats, cgn.nat.mappings(t), net.link("home").stats("node")  # what happened

or give each host an agent (any sans-IO peer) and let ``agents.run_agents`` move them
from event to event.

A box made with ``NatConfig(translate=False)`` is a stateful firewall (an IPv6 home
router): the realm behind it holds public prefixes of the outer realm, which routes them
to it.  A host may have addresses in several realms (``host.add_address(realm=...)``),
so a dual-stack peer is an IPv4 address behind a NAT and an IPv6 one behind a firewall::

    fw = net.add_nat("fw", NatConfig(translate=False), net.internet, inside="2001:2:0:1::/64")
    v6 = alice.add_address(realm=fw)                                      # "2001:2:0:1::2"
    alice.open(5000, ip=v6)

Routing: a datagram goes up the hop of its source address into that realm; a host or
box there that owns the destination address (or a firewall whose prefix holds it) takes
it, down its hop; otherwise the realm's NAT translates it and sends it up its own hop
into the outer realm (or hairpins it); the internet drops what nobody owns
(``Network.unroutable``).  A box translates at the instant the datagram reaches it;
bindings time out in that same virtual time.  A datagram to a closed port is dropped
(``host.stats.no_socket``; no ICMP is modelled).
Addresses are compared as strings, in the canonical form ``ipaddress`` prints.

Cost (measured on the 2-core development machine, CPython 3.11, pure Python): adding a
host or a box takes about 40 us; a datagram costs about 2 us per hop (NAT translation
included); one trial of tests/simulation/test_nat_network.py's hole-punching exchange
(a rendezvous node, two peers each behind two NATs in a row, registration, introduction
and punches: ten datagrams, five or six hops each) takes about 0.45 ms from building the
network to both peers connected, so 1,000 trials per strategy take about half a second.
"""

from __future__ import annotations

import heapq
import ipaddress
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple, cast

from ..errors import LocalProtocolError
from .link import LinkConfig, LinkEmulator
from .nat import Address, Drop, Nat, NatConfig
from .prng import Prng

#: The default hop between a node and its realm: 5 ms each way, lossless.
HOP = LinkConfig(delay=0.005)
#: The public realm's prefixes (RFC 2544 benchmarking and RFC 5180's IPv6 one, as in the lab).
INTERNET = ("198.18.0.0/15", "2001:2::/48")
#: The ports ``Host.open()`` picks from when given none (Linux's ``ip_local_port_range``).
EPHEMERAL = (32768, 60999)

_NODE = "node"
_REALM = "realm"
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LinkSpec = LinkConfig | tuple[LinkConfig, LinkConfig] | None


class Delivery(NamedTuple):
    """A datagram handed to a host: at ``time``, on its socket ``local``, from ``addr``."""

    time: float
    host: Host
    local: Address
    addr: Address
    data: bytes


class TraceEntry(NamedTuple):
    """One event of the network, recorded when ``Network(trace=True)``.

    ``kind`` is "send" (a host sent), "out" / "in" (a box translated; ``note`` is the
    box), "hairpin", "drop" (``note`` says why: unroutable, no-socket, or a
    :class:`~p2pos.proto.simulation.nat.Drop` value, after the box's name) or
    "deliver".  ``src`` and ``dst`` are the addresses after the event.  Losses on a hop
    are in that hop's own stats and trace.
    """

    time: float
    kind: str
    src: Address
    dst: Address
    size: int
    note: str = ""


@dataclass(slots=True)
class HostStats:
    sent: int = 0
    received: int = 0
    #: Datagrams that arrived for a port with no open socket.
    no_socket: int = 0


class _Attachment:
    """The hop joining a node (a host, or the public side of a box) to a realm."""

    __slots__ = ("link", "name", "node", "realm", "wake")

    def __init__(self, name: str, node: Host | _Box, realm: Realm, link: LinkEmulator[str] | None) -> None:
        self.name = name
        self.node = node
        self.realm = realm
        self.link = link
        #: The time of this hop's entry on the network's heap, or +inf when it has none.
        self.wake = math.inf


class _Box:
    """A NAT box: its engine, the realm behind it and the hop joining it to the realm in front."""

    __slots__ = ("attachment", "nat", "realm")

    def __init__(self, nat: Nat, realm: Realm, outside: Realm, link: LinkEmulator[str] | None) -> None:
        self.nat = nat
        self.realm = realm
        self.attachment = _Attachment(nat.name, self, outside, link)


class Realm:
    """A routing domain: the internet, or the private side of one NAT box (made by ``Network.add_nat``).

    ``nat`` is the box in front of it (its translation engine, with ``stats`` and
    ``mappings``), None for the internet; ``ip`` is that box's public address.
    """

    __slots__ = ("_next", "_nodes", "_routed", "_routes", "box", "name", "outside", "prefixes")

    def __init__(self, name: str, prefixes: tuple[_Network, ...], outside: Realm | None) -> None:
        self.name = name
        self.prefixes = prefixes
        self.outside = outside
        self.box: _Box | None = None
        #: address -> the hop of the host or box that owns it.
        self._nodes: dict[str, _Attachment] = {}
        #: The firewalls in this realm: (the prefixes behind one, its hop); and address -> the hop found.
        self._routes: list[tuple[tuple[_Network, ...], _Attachment]] = []
        self._routed: dict[str, _Attachment | None] = {}
        self._next = 2  # .1 is the gateway's

    @property
    def nat(self) -> Nat | None:
        return None if self.box is None else self.box.nat

    @property
    def ip(self) -> str:
        """The public address of the box in front ("" for a firewall: its hosts' addresses are public)."""
        if self.box is None:
            raise LocalProtocolError("the internet has no NAT in front of it")
        return self.box.nat.public_ip

    @property
    def hosts(self) -> list[Host]:
        found = {a.node for a in self._nodes.values() if isinstance(a.node, Host)}
        return sorted((h for h in found if isinstance(h, Host)), key=lambda h: h.name)

    def __repr__(self) -> str:
        return f"<Realm {self.name}>"


class Host:
    """A machine with addresses and UDP sockets (made by ``Network.add_host``).

    Its addresses are in ``realm``, or in other realms too (a dual-stack host: an IPv4
    address behind a NAT and an IPv6 one behind a firewall), each realm with its own hop.
    """

    __slots__ = ("_attachments", "_net", "_rng", "_sockets", "attachment", "ips", "name", "realm", "stats")

    def __init__(self, net: Network, name: str, realm: Realm, link: LinkEmulator[str] | None, rng: Prng) -> None:
        self._net = net
        self.name = name
        self.realm = realm
        self.ips: list[str] = []
        self._rng = rng
        self._sockets: set[Address] = set()
        #: The hop to ``realm``; ``_attachments`` maps each address to its realm's hop.
        self.attachment = _Attachment(name, self, realm, link)
        self._attachments: dict[str, _Attachment] = {}
        self.stats = HostStats()

    @property
    def ip(self) -> str:
        """The host's first address."""
        return self.ips[0]

    @property
    def sockets(self) -> list[Address]:
        return sorted(self._sockets)

    def add_address(self, ip: str | None = None, *, realm: Realm | None = None, link: LinkSpec = HOP) -> str:
        """Give the host another address (RFC 5780's server with two addresses), in its realm by default.

        In a realm the host is not in yet, the address comes with a new hop, ``link``.
        """
        realm = self.realm if realm is None else realm
        attachment = next((a for a in self._attachments.values() if a.realm is realm), None)
        if attachment is None:
            self._net._check_realm(realm)
            attachment = self.attachment
            if realm is not self.realm:
                name = f"{self.name}/{realm.name}"
                attachment = _Attachment(name, self, realm, self._net._link(name, link))
        address = self._net._claim(realm, ip, attachment)
        self.ips.append(address)
        self._attachments[address] = attachment
        return address

    def link(self, ip: str | None = None) -> LinkEmulator[str] | None:
        """The hop of the address ``ip`` (the first by default), as ``Network.link`` returns it."""
        attachment = self._attachments.get(self.ip if ip is None else ip)
        if attachment is None:
            raise LocalProtocolError(f"{self.name} has no address {ip!r}")
        return attachment.link

    def open(self, port: int | None = None, *, ip: str | None = None) -> Address:
        """Open a socket on ``ip`` (the first address by default) and ``port`` (an ephemeral one by default)."""
        ip = self.ip if ip is None else ip
        if ip not in self.ips:
            raise LocalProtocolError(f"{self.name} has no address {ip!r}")
        if port is None:
            low, high = EPHEMERAL
            free = (high - low + 1) - sum(1 for a in self._sockets if a[0] == ip and low <= a[1] <= high)
            if free <= 0:
                raise LocalProtocolError(f"{self.name}: no ephemeral port left on {ip}")
            port = low + self._rng.randbelow(high - low + 1)
            while (ip, port) in self._sockets:
                port = low + self._rng.randbelow(high - low + 1)
        elif isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise LocalProtocolError(f"not a port: {port!r}")
        address = (ip, port)
        if address in self._sockets:
            raise LocalProtocolError(f"{self.name}: {address} is already open")
        self._sockets.add(address)
        return address

    def close(self, address: Address) -> None:
        """Close a socket; datagrams still on their way to it are dropped when they arrive."""
        if address not in self._sockets:
            raise LocalProtocolError(f"{self.name}: {address} is not open")
        self._sockets.remove(address)

    def send(self, local: Address, data: bytes, dst: Address, now: float) -> None:
        """Send ``data`` from the open socket ``local`` to ``dst`` (``Network.send``)."""
        self._net.send(self, local, data, dst, now)

    def __repr__(self) -> str:
        return f"<Host {self.name} {self.ips}>"


class Network:
    """The realms, hosts, boxes and hops of one scenario (see the module docstring).

    Every hop and box draws from its own stream derived from ``seed`` and its name, so
    adding a host does not change what happens to the others.  Time passed to the
    methods must never go backwards.
    """

    def __init__(self, seed: int | bytes, *, internet: Iterable[str] = INTERNET, trace: bool = False) -> None:
        self._root = Prng(seed)
        self.internet = Realm("internet", _prefixes(internet), None)
        self._names: dict[str, Host | Realm] = {}
        self._heap: list[tuple[float, int, _Attachment]] = []
        self._sequence = 0
        self._now = -math.inf
        self._arrived: list[Delivery] = []
        #: Datagrams to an address nobody owns.
        self.unroutable = 0
        #: Every event, in order, when constructed with ``trace=True``; else None.
        self.trace: list[TraceEntry] | None = [] if trace else None

    # -- building ------------------------------------------------------------------------

    def add_host(self, name: str, realm: Realm, *, ip: str | None = None, link: LinkSpec = HOP) -> Host:
        """A host in ``realm`` at ``ip`` (the next free address of the realm's first prefix by default).

        ``link`` is its hop: one config for both ways, an (up, down) pair, or None for an
        instantaneous lossless one.
        """
        self._check_name(name, realm)
        host = Host(self, name, realm, self._link(name, link), self._root.derive(b"host/" + name.encode()))
        host.add_address(ip)
        self._names[name] = host
        return host

    def add_nat(
        self,
        name: str,
        config: NatConfig,
        outside: Realm,
        *,
        ip: str | None = None,
        inside: str | Iterable[str] = "10.0.0.0/24",
        link: LinkSpec = HOP,
    ) -> Realm:
        """A NAT box named ``name`` with public address ``ip`` in ``outside``; returns the realm behind it.

        ``inside`` are the private realm's prefixes (addresses may repeat across realms);
        ``link`` is the hop joining the box to ``outside``.  With ``config.translate``
        False the box is a stateful firewall: it has no address of its own, and ``inside``
        must be free prefixes of ``outside``, which routes them to the box (e.g. a /64 of
        the internet's 2001:2::/48).
        """
        self._check_name(name, outside)
        if not isinstance(config, NatConfig):
            raise LocalProtocolError(f"expected a NatConfig, got {type(config).__name__}")
        prefixes = _prefixes([inside] if isinstance(inside, str) else inside)
        if not config.translate:
            self._check_routable(outside, prefixes)
        public = self._pick(outside, ip) if config.translate else ""
        nat = Nat(config, public, self._root.derive(b"nat/" + name.encode()), name=name)
        realm = Realm(name, prefixes, outside)
        box = realm.box = _Box(nat, realm, outside, self._link(name, link))
        if config.translate:
            self._claim(outside, public, box.attachment)
        else:
            outside._routes.append((prefixes, box.attachment))
            outside._routed.clear()
        self._names[name] = realm
        return realm

    def host(self, name: str) -> Host:
        node = self._names.get(name)
        if not isinstance(node, Host):
            raise LocalProtocolError(f"no host {name!r}")
        return node

    def realm(self, name: str) -> Realm:
        node = self._names.get(name)
        if not isinstance(node, Realm):
            raise LocalProtocolError(f"no NAT {name!r}")
        return node

    def link(self, name: str) -> LinkEmulator[str] | None:
        """The hop of host or box ``name`` (ends "node" and "realm"; None if instantaneous).

        Its ``stats("node")`` count the way up; ``start_blackhole`` and ``reconfigure`` act on
        it.  A host's first hop; ``Host.link(ip)`` gives the hop of each of its addresses.
        """
        node = self._names.get(name)
        if isinstance(node, Host):
            return node.attachment.link
        if node is None or node.box is None:
            raise LocalProtocolError(f"no host or NAT {name!r}")
        return node.box.attachment.link

    # -- inputs and outputs ------------------------------------------------------------------

    def send(self, host: Host, local: Address, data: bytes, dst: Address, now: float) -> None:
        """``host`` sends ``data`` from its open socket ``local`` to ``dst``; then check ``next_delivery_time``."""
        self._advance(now)
        if host._net is not self:
            raise LocalProtocolError(f"{host!r} is not on this network")
        if local not in host._sockets:
            raise LocalProtocolError(f"{host.name}: send from {local!r}, which is not open")
        if (
            type(dst) is not tuple
            or len(dst) != 2
            or type(dst[0]) is not str
            or type(dst[1]) is not int
            or not 0 < dst[1] < 65536
        ):
            raise LocalProtocolError(f"not a destination (ip, port): {dst!r}")
        data = data if type(data) is bytes else bytes(data)
        host.stats.sent += 1
        if self.trace is not None:
            self.trace.append(TraceEntry(now, "send", local, dst, len(data), host.name))
        self._hop(host._attachments[local[0]], _NODE, data, (local, dst), now)

    def next_delivery_time(self) -> float | None:
        """When ``deliver`` next has something to do (a hop's arrival), or None if nothing is in flight."""
        if self._arrived:
            return self._arrived[0].time
        heap = self._heap
        while heap and heap[0][0] != heap[0][2].wake:
            heapq.heappop(heap)  # superseded by an earlier entry of the same hop
        return heap[0][0] if heap else None

    def deliver(self, now: float) -> list[Delivery]:
        """Every datagram that reaches a host's open socket at or before ``now``, in arrival order."""
        self._advance(now)
        out, self._arrived = self._arrived, []
        return out

    # -- internals -------------------------------------------------------------------------------

    def _check_name(self, name: str, realm: Realm) -> None:
        if not isinstance(name, str) or not name or "/" in name or name in self._names or name == "internet":
            raise LocalProtocolError(f"node names must be new non-empty strings without '/', got {name!r}")
        self._check_realm(realm)

    def _check_realm(self, realm: Realm) -> None:
        if realm is not self.internet and self._names.get(getattr(realm, "name", "")) is not realm:
            raise LocalProtocolError(f"{realm!r} is not a realm of this network")

    def _check_routable(self, outside: Realm, prefixes: tuple[_Network, ...]) -> None:
        """A firewall's prefixes: inside the outer realm's, clear of its addresses and other firewalls."""
        for prefix in prefixes:
            if not any(prefix.version == p.version and prefix.subnet_of(p) for p in outside.prefixes):  # type: ignore[arg-type]
                raise LocalProtocolError(f"{prefix} is not inside {outside!r}'s prefixes")
            if any(ipaddress.ip_address(a) in prefix for a in outside._nodes):
                raise LocalProtocolError(f"{prefix} holds addresses already in use in {outside!r}")
            if any(prefix.overlaps(q) for routed, _ in outside._routes for q in routed):
                raise LocalProtocolError(f"{prefix} overlaps another firewall's prefix in {outside!r}")

    def _firewall(self, realm: Realm, ip: str) -> _Attachment | None:
        """The hop of the firewall in ``realm`` whose prefixes hold ``ip``, if any (cached)."""
        routed = realm._routed
        if ip not in routed:
            try:
                address = ipaddress.ip_address(ip)
            except ValueError:
                address = None
            routed[ip] = next(
                (att for prefixes, att in realm._routes if address is not None and any(address in p for p in prefixes)),
                None,
            )
        return routed[ip]

    def _claim(self, realm: Realm, ip: str | None, attachment: _Attachment) -> str:
        """Give ``ip`` (or the next free address) in ``realm`` to the host or box at ``attachment``."""
        address = self._pick(realm, ip)
        realm._nodes[address] = attachment
        return address

    def _pick(self, realm: Realm, ip: str | None) -> str:
        if ip is None:
            prefix = realm.prefixes[0]
            while True:
                if realm._next >= prefix.num_addresses - 1:
                    raise LocalProtocolError(f"{realm!r} has no address left in {prefix}")
                address = str(prefix.network_address + realm._next)
                realm._next += 1
                if address not in realm._nodes and self._firewall(realm, address) is None:
                    break
        else:
            try:
                parsed = ipaddress.ip_address(ip)
            except ValueError:
                raise LocalProtocolError(f"not an IP address: {ip!r}") from None
            if not any(parsed in prefix for prefix in realm.prefixes):
                raise LocalProtocolError(f"{ip} is outside {realm!r}'s prefixes")
            address = str(parsed)
            if address in realm._nodes or self._firewall(realm, address) is not None:
                raise LocalProtocolError(f"{address} is taken in {realm!r}")
        return address

    def _link(self, name: str, link: LinkSpec) -> LinkEmulator[str] | None:
        if link is None:
            return None
        up, down = link if isinstance(link, tuple) else (link, link)
        seed = self._root.derive(b"link/" + name.encode())(32)
        return LinkEmulator(seed, up, down, ends=(_NODE, _REALM))

    def _advance(self, now: float) -> None:
        """Move every hop's arrivals up to ``now`` through the routers and boxes, in time order."""
        if not now >= self._now:  # also rejects NaN
            raise LocalProtocolError(f"time went backwards: {now!r} after {self._now!r}")
        self._now = now
        heap = self._heap
        while heap and heap[0][0] <= now:
            t, _, att = heapq.heappop(heap)
            if t != att.wake:
                continue  # superseded
            att.wake = math.inf
            link = att.link
            if link is None:
                continue  # never scheduled: instantaneous hops deliver at once
            for end, data, tag in link.deliver_tagged(t):
                self._arrive(att, end, data, cast("tuple[Address, Address]", tag), t)  # as _hop sent it
            self._schedule(att, link)

    def _schedule(self, att: _Attachment, link: LinkEmulator[str]) -> None:
        t = link.next_delivery_time()
        if t is not None and t < att.wake:
            att.wake = t
            heapq.heappush(self._heap, (t, self._sequence, att))
            self._sequence += 1

    def _hop(self, att: _Attachment, src_end: str, data: bytes, tag: tuple[Address, Address], now: float) -> None:
        """Send a datagram along ``att`` from ``src_end`` ("node": up to the realm; "realm": down to the node)."""
        link = att.link
        if link is not None:
            link.send(src_end, data, now, tag)
            self._schedule(att, link)
        else:
            self._arrive(att, _REALM if src_end == _NODE else _NODE, data, tag, now)

    def _arrive(self, att: _Attachment, end: str, data: bytes, tag: tuple[Address, Address], now: float) -> None:
        """A datagram reaches ``end`` of ``att``: the realm's router, a host, or a box's public side."""
        src, dst = tag
        node = att.node
        if end == _REALM:
            self._route(att.realm, data, src, dst, now, inbound=False)
        elif isinstance(node, Host):
            self._to_host(node, data, src, dst, now)
        else:
            self._nat_in(node, data, src, dst, now)

    def _route(self, realm: Realm, data: bytes, src: Address, dst: Address, now: float, *, inbound: bool) -> None:
        """A datagram at ``realm``'s router: to the owner of ``dst`` there, else out through the realm's box."""
        att = realm._nodes.get(dst[0])
        if att is None and realm._routes:
            att = self._firewall(realm, dst[0])
        if att is not None:
            self._hop(att, _REALM, data, (src, dst), now)
        elif realm.box is not None and not inbound:
            self._nat_out(realm.box, data, src, dst, now)
        else:
            self.unroutable += 1
            self._drop(now, src, dst, data, f"unroutable in {realm.name}")

    def _nat_out(self, box: _Box, data: bytes, src: Address, dst: Address, now: float) -> None:
        nat, realm = box.nat, box.realm
        public = nat.outbound(src, dst, now)
        if isinstance(public, Drop):
            self._drop(now, src, dst, data, f"{realm.name} {public.value}")
            return
        if self.trace is not None:
            self.trace.append(TraceEntry(now, "out", public, dst, len(data), realm.name))
        if dst[0] == nat.public_ip:
            internal = nat.hairpin(public, dst, now)
            if isinstance(internal, Drop):
                self._drop(now, public, dst, data, f"{realm.name} {internal.value}")
                return
            if self.trace is not None:
                self.trace.append(TraceEntry(now, "hairpin", public, internal, len(data), realm.name))
            self._route(realm, data, public, internal, now, inbound=True)
            return
        self._hop(box.attachment, _NODE, data, (public, dst), now)

    def _nat_in(self, box: _Box, data: bytes, src: Address, dst: Address, now: float) -> None:
        realm = box.realm
        internal = box.nat.inbound(src, dst, now)
        if isinstance(internal, Drop):
            self._drop(now, src, dst, data, f"{realm.name} {internal.value}")
            return
        if self.trace is not None:
            self.trace.append(TraceEntry(now, "in", src, internal, len(data), realm.name))
        self._route(realm, data, src, internal, now, inbound=True)

    def _to_host(self, host: Host, data: bytes, src: Address, dst: Address, now: float) -> None:
        if dst not in host._sockets:
            host.stats.no_socket += 1
            self._drop(now, src, dst, data, f"{host.name} no-socket")
            return
        host.stats.received += 1
        if self.trace is not None:
            self.trace.append(TraceEntry(now, "deliver", src, dst, len(data), host.name))
        self._arrived.append(Delivery(now, host, dst, src, data))

    def _drop(self, now: float, src: Address, dst: Address, data: bytes, why: str) -> None:
        if self.trace is not None:
            self.trace.append(TraceEntry(now, "drop", src, dst, len(data), why))


def _prefixes(texts: Iterable[str]) -> tuple[_Network, ...]:
    out = []
    for text in texts:
        try:
            out.append(ipaddress.ip_network(text))
        except (TypeError, ValueError):
            raise LocalProtocolError(f"not an IP prefix: {text!r}") from None
    if not out:
        raise LocalProtocolError("a realm needs at least one prefix")
    return tuple(out)
