"""Seeded, sans-IO models of NAT boxes (issue 13, item 8): what a router does to a UDP datagram.

A :class:`Nat` is the translation engine of one box: it keeps the mappings (binding
table), allocates public ports, applies the filter and times bindings out, all in
virtual time (the ``now`` argument) and with every random choice drawn from the
:class:`~p2pos.proto.simulation.prng.Prng` it is given.  The network emulator
(``network.py``) puts one in front of each private realm; tests may also drive one
directly::

    nat = Nat(NatConfig(mapping=MappingBehaviour.ADDRESS_AND_PORT_DEPENDENT,
                        allocation=Allocation.SEQUENTIAL, delta=2, first_port=40000),
              "198.18.0.10", Prng(7))
    public = nat.outbound(("10.0.0.2", 5000), ("198.18.0.1", 3478), now)  # ("198.18.0.10", 40000)
    inside = nat.inbound(("198.18.0.1", 3478), public, now)               # ("10.0.0.2", 5000)
    nat.stats                                                              # NatStats counters

``outbound`` and ``inbound`` return the translated address, or a :class:`Drop` saying
why the datagram died (and count it in :attr:`Nat.stats`).

The behaviours, in the terms of RFC 4787 (NAT behavioural requirements for UDP):

* **Mapping** (§4.1): which outbound flows share a public port.  Endpoint-independent:
  one per internal endpoint; address-dependent: one per (internal endpoint, remote
  address); address-and-port-dependent: one per (internal endpoint, remote address and
  port), the "symmetric" NAT.
* **Filtering** (§5): which inbound datagrams a live mapping admits.  Endpoint-independent
  (and ``NONE``, "full cone", which behaves the same): any sender;
  address-dependent: a sender whose address the mapping has a live flow to;
  address-and-port-dependent: a sender whose address and port it has a live flow to.
* **Allocation** (§4.2.2): port-preserving (the internal port if free, else a random
  one); sequential (``first_port``, then each new mapping ``delta`` further on,
  wrapping in ``port_range``, stepping over ports in use; ``shared_rate`` lets unseen
  hosts behind the same box take ``delta``-steps too, a Poisson number per second of
  virtual time, so consecutive mappings of one host are ``k * delta`` apart); random,
  uniform over the free ports of ``port_range``.  A box whose range is full drops the
  new flow (``Drop.EXHAUSTED``).
* **Binding timeout** (§4.3): each flow (one per remote address and port, as Linux's
  conntrack keeps them) lives ``timeout`` seconds after its last refresh; a mapping lives
  while any of its flows does, and frees its port when the last one dies.  Outbound
  datagrams always refresh their flow; with ``refresh=Refresh.BOTH`` admitted inbound
  ones do too.  ``stream_timeout`` models conntrack's two stages: a flow that had carried
  traffic both ways before a datagram refreshing it more than ``stream_after`` seconds
  after the flow began gets ``stream_timeout``, every other refresh ``timeout`` (Linux:
  ``nf_conntrack_udp_timeout`` 30 s, ``nf_conntrack_udp_timeout_stream`` 120 s, 2 s; so
  the first reply itself, like a probe on a fresh binding, still sees 30 s).  A flow refreshed at ``t``
  admits datagrams arriving before ``t + timeout`` and is gone at that instant.
* **Hairpinning** (§6): a datagram from inside to the box's own public address is
  translated out and back in (seen from the sender's public address, REQ-9), or dropped.
* ``translate=False``: a stateful firewall (an IPv6 home router): addresses pass
  unchanged, with one pinhole per internal endpoint, filtered and timed out as above.
* ``udp_blocked``: the box drops all UDP both ways; :meth:`Nat.map_port` adds a mapping
  the way PCP, NAT-PMP or UPnP would (endpoint-independent filtering, its own lifetime,
  not refreshed by traffic).

Time passed to one box must never go backwards.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from enum import Enum

from ..errors import LocalProtocolError
from .prng import Prng

Address = tuple[str, int]


class MappingBehaviour(Enum):
    """RFC 4787 §4.1: what a public port is shared by."""

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


class FilteringBehaviour(Enum):
    """RFC 4787 §5: which senders a live mapping admits.

    ``NONE`` ("full cone") behaves as ``ENDPOINT_INDEPENDENT``: a mapping exists only once
    the inside has sent, so admitting anyone to a live mapping is all "no filter" can mean.
    """

    NONE = "none"
    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


class Allocation(Enum):
    """RFC 4787 §4.2.2: how a new mapping's public port is chosen."""

    PRESERVING = "port-preserving"
    SEQUENTIAL = "sequential"
    RANDOM = "random"


class Refresh(Enum):
    """RFC 4787 §4.3: which datagrams restart a flow's timer (outbound ones always do)."""

    OUTBOUND = "outbound"
    BOTH = "both"


class Drop(Enum):
    """Why a box dropped a datagram (each has its counter in :class:`NatStats`)."""

    BLOCKED = "blocked"
    EXHAUSTED = "exhausted"
    NO_MAPPING = "no-mapping"
    FILTERED = "filtered"
    HAIRPIN_OFF = "hairpin-off"


def _number(name: str, value: float, low: float, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LocalProtocolError(f"NatConfig.{name} must be a finite number, got {value!r}")
    if value < low or (positive and value <= 0):
        raise LocalProtocolError(f"NatConfig.{name} must be {'>' if positive else '>='} {low}, got {value!r}")
    return float(value)


def _port(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise LocalProtocolError(f"NatConfig.{name} must be a port in [1, 65535], got {value!r}")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class NatConfig:
    """The behaviour of one NAT box; validated on construction.  Times are seconds of virtual time.

    The defaults are a common home router: endpoint-independent mapping,
    address-and-port-dependent filtering, port-preserving, 120 s bindings refreshed by
    outbound traffic, no hairpinning.
    """

    mapping: MappingBehaviour = MappingBehaviour.ENDPOINT_INDEPENDENT
    filtering: FilteringBehaviour = FilteringBehaviour.ADDRESS_AND_PORT_DEPENDENT
    allocation: Allocation = Allocation.PRESERVING
    #: Sequential allocation: the step between consecutive mappings (>= 1).
    delta: int = 1
    #: Sequential allocation: the first port handed out; None draws it from the range.
    first_port: int | None = None
    #: Sequential allocation: other hosts' new mappings per second, each taking one step.
    shared_rate: float = 0.0
    #: The public ports the box allocates from, both ends included.
    port_range: tuple[int, int] = (1024, 65535)
    #: Seconds a flow lives after its last refresh (conntrack's ``nf_conntrack_udp_timeout``).
    timeout: float = 120.0
    refresh: Refresh = Refresh.OUTBOUND
    #: Two-stage timeout: a flow seen both ways and refreshed after ``stream_after`` gets this one.
    stream_timeout: float | None = None
    stream_after: float = 2.0
    hairpinning: bool = False
    udp_blocked: bool = False
    #: False: a stateful firewall (an IPv6 router's): addresses pass unchanged, one pinhole per
    #: internal endpoint (``mapping`` and ``allocation`` are ignored), filtered and timed out as above.
    translate: bool = True

    def __post_init__(self) -> None:
        for name, kind in (
            ("mapping", MappingBehaviour),
            ("filtering", FilteringBehaviour),
            ("allocation", Allocation),
            ("refresh", Refresh),
        ):
            if not isinstance(getattr(self, name), kind):
                raise LocalProtocolError(f"NatConfig.{name} must be a {kind.__name__}, got {getattr(self, name)!r}")
        if isinstance(self.delta, bool) or not isinstance(self.delta, int) or self.delta < 1:
            raise LocalProtocolError(f"NatConfig.delta must be an int >= 1, got {self.delta!r}")
        if not isinstance(self.port_range, tuple) or len(self.port_range) != 2:
            raise LocalProtocolError(f"NatConfig.port_range must be a (low, high) pair, got {self.port_range!r}")
        low, high = _port("port_range", self.port_range[0]), _port("port_range", self.port_range[1])
        if low > high:
            raise LocalProtocolError(f"NatConfig.port_range must have low <= high, got {self.port_range!r}")
        if self.first_port is not None and not low <= _port("first_port", self.first_port) <= high:
            raise LocalProtocolError(f"NatConfig.first_port {self.first_port} is outside port_range")
        _number("shared_rate", self.shared_rate, 0.0, positive=False)
        _number("timeout", self.timeout, 0.0)
        if self.stream_timeout is not None:
            _number("stream_timeout", self.stream_timeout, 0.0)
        _number("stream_after", self.stream_after, 0.0, positive=False)
        for name in ("hairpinning", "udp_blocked", "translate"):
            if not isinstance(getattr(self, name), bool):
                raise LocalProtocolError(f"NatConfig.{name} must be a bool")

    @property
    def range_size(self) -> int:
        return self.port_range[1] - self.port_range[0] + 1


def linux_masquerade(*, timeout: float = 30.0, stream_timeout: float = 120.0, hairpinning: bool = False) -> NatConfig:
    """Linux ``masquerade`` with an inbound filter: port-preserving, endpoint-independent in
    practice, port-restricted, conntrack's two-stage timeout refreshed both ways."""
    return NatConfig(timeout=timeout, stream_timeout=stream_timeout, refresh=Refresh.BOTH, hairpinning=hairpinning)


def linux_fully_random(*, timeout: float = 30.0, stream_timeout: float = 120.0) -> NatConfig:
    """Linux ``masquerade fully-random``: a random port per remote endpoint."""
    return NatConfig(
        mapping=MappingBehaviour.ADDRESS_AND_PORT_DEPENDENT,
        allocation=Allocation.RANDOM,
        timeout=timeout,
        stream_timeout=stream_timeout,
        refresh=Refresh.BOTH,
    )


@dataclass(slots=True)
class NatStats:
    """What one box did; ``Nat.stats`` is the live object."""

    #: Datagrams translated outbound, and inbound (hairpinned ones count in both).
    outbound: int = 0
    inbound: int = 0
    mappings_created: int = 0
    #: Mappings whose last flow timed out (static ones whose lifetime ended count too).
    mappings_expired: int = 0
    #: Inbound datagrams to a public port with no live mapping.
    inbound_no_mapping: int = 0
    #: Inbound datagrams a live mapping's filter refused.
    inbound_filtered: int = 0
    hairpinned: int = 0
    hairpin_dropped: int = 0
    #: New outbound flows dropped because no public port was free.
    exhausted: int = 0
    #: Datagrams dropped by a ``udp_blocked`` box, both ways.
    blocked: int = 0

    @property
    def dropped(self) -> int:
        return self.inbound_no_mapping + self.inbound_filtered + self.hairpin_dropped + self.exhausted + self.blocked


class _Flow:
    """Conntrack-like state of one (mapping, remote address and port) pair."""

    __slots__ = ("created", "expires", "inbound", "outbound")

    def __init__(self, now: float) -> None:
        self.created = now
        self.expires = now
        self.outbound = False
        self.inbound = False


class _Mapping:
    __slots__ = ("by_ip", "created", "expires", "flows", "internal", "key", "public", "static")

    def __init__(
        self, key: tuple[object, ...], internal: Address, public: Address, expires: float, static: bool
    ) -> None:
        self.created = expires  # _add is called with the creation time as the first expiry
        self.key = key
        self.internal = internal
        self.public = public
        self.expires = expires
        self.static = static
        self.flows: dict[Address, _Flow] = {}
        #: Remote address -> the latest expiry of its flows (address-dependent filtering).
        self.by_ip: dict[str, float] = {}


@dataclass(frozen=True, slots=True)
class MappingInfo:
    """A live mapping, as :meth:`Nat.mappings` reports it."""

    internal: Address
    public: Address
    expires: float
    static: bool
    #: Remote endpoints with a live flow through the mapping, sorted.
    remotes: tuple[Address, ...]
    #: When the box made it (a mapping lost and made again has a later one).
    created: float = 0.0


class Nat:
    """The translation engine of one box with public address ``public_ip`` (see the module docstring).

    Call :meth:`outbound` for each datagram leaving the private side and
    :meth:`inbound` for each one arriving at the public address; :meth:`hairpin` for one
    sent from inside to the public address (after :meth:`outbound`).
    """

    def __init__(self, config: NatConfig, public_ip: str, rng: Prng, *, name: str = "nat") -> None:
        if not isinstance(config, NatConfig):
            raise LocalProtocolError(f"expected a NatConfig, got {type(config).__name__}")
        self.config = config
        self.public_ip = public_ip
        self.name = name
        self.stats = NatStats()
        self._rng = rng
        self._table: dict[tuple[object, ...], _Mapping] = {}
        self._static: dict[Address, _Mapping] = {}
        #: Public address -> mapping (a firewall's "public" addresses are its hosts' own).
        self._by_public: dict[Address, _Mapping] = {}
        #: (expiry when pushed, sequence, mapping): checked lazily, re-pushed when refreshed since.
        self._expiries: list[tuple[float, int, _Mapping]] = []
        self._sequence = 0
        self._now = -math.inf
        low, _ = config.port_range
        self._next_port = config.first_port if config.first_port is not None else low + rng.randbelow(config.range_size)
        self._last_allocation: float | None = None

    # -- inputs ---------------------------------------------------------------------------

    def outbound(self, src: Address, dst: Address, now: float) -> Address | Drop:
        """The public source address for a datagram ``src -> dst`` leaving the private side."""
        self.expire(now)
        cfg = self.config
        if cfg.udp_blocked:
            self.stats.blocked += 1
            return Drop.BLOCKED
        m = self._static.get(src)
        if m is None:
            key = self._key(src, dst)
            m = self._table.get(key)
            if m is None:
                if cfg.translate:
                    port = self._allocate(src[1], now)
                    if port is None:
                        self.stats.exhausted += 1
                        return Drop.EXHAUSTED
                    public = (self.public_ip, port)
                else:
                    public = src
                m = self._add(key, src, public, now, static=False)
                self._touch(m, dst, now, outbound=True)
                self._push(m)
            else:
                self._touch(m, dst, now, outbound=True)
        self.stats.outbound += 1
        return m.public

    def inbound(self, src: Address, dst: Address, now: float) -> Address | Drop:
        """The private destination of a datagram from ``src`` to the public address ``dst``."""
        self.expire(now)
        if self.config.udp_blocked:
            self.stats.blocked += 1
            return Drop.BLOCKED
        m = self._by_public.get(dst)
        if m is None:
            self.stats.inbound_no_mapping += 1
            return Drop.NO_MAPPING
        if not m.static:
            if not self._admits(m, src, now):
                self.stats.inbound_filtered += 1
                return Drop.FILTERED
            self._touch(m, src, now, outbound=False)
        self.stats.inbound += 1
        return m.internal

    def hairpin(self, public_src: Address, dst: Address, now: float) -> Address | Drop:
        """A datagram from inside, already translated to ``public_src``, sent to this box's public address ``dst``."""
        if not self.config.hairpinning:
            self.stats.hairpin_dropped += 1
            return Drop.HAIRPIN_OFF
        result = self.inbound(public_src, dst, now)
        if not isinstance(result, Drop):
            self.stats.hairpinned += 1
        return result

    def map_port(
        self, internal: Address, now: float, *, lifetime: float | None = None, public_port: int | None = None
    ) -> Address | Drop:
        """Add a static mapping for ``internal`` (as PCP or UPnP would) for ``lifetime`` seconds (None: for ever).

        ``public_port`` is a request; taken or None, the box allocates as for a new flow.
        A second request for the same internal endpoint renews it.
        """
        self.expire(now)
        if lifetime is not None:
            _number("lifetime", lifetime, 0.0)
        expires = math.inf if lifetime is None else now + lifetime
        m = self._static.get(internal)
        if m is not None:
            m.expires = expires
            self._push(m)
            return m.public
        if self.config.translate:
            wanted = public_port if public_port is not None else internal[1]
            port = wanted if self._free(wanted) else self._allocate(wanted, now)
            if port is None:
                self.stats.exhausted += 1
                return Drop.EXHAUSTED
            public = (self.public_ip, port)
        else:  # a pinhole in a firewall
            dynamic = self._by_public.get(internal)
            if dynamic is not None:
                self._remove(dynamic)
            public = internal
        m = self._add(("static", internal), internal, public, expires, static=True)
        m.created = now
        self._push(m)
        return m.public

    def expire(self, now: float) -> None:
        """Remove the mappings whose time is up at ``now`` (every input calls it first)."""
        if not now >= self._now:  # also rejects NaN
            raise LocalProtocolError(f"time went backwards: {now!r} after {self._now!r}")
        self._now = now
        heap = self._expiries
        while heap and heap[0][0] <= now:
            _, _, m = heapq.heappop(heap)
            if self._by_public.get(m.public) is not m:
                continue  # removed already
            if m.expires <= now:
                self._remove(m)
                self.stats.mappings_expired += 1
            else:
                self._push(m)

    # -- inspection -------------------------------------------------------------------------

    def mappings(self, now: float) -> list[MappingInfo]:
        """The live mappings at ``now``, ordered by public address."""
        self.expire(now)
        return [
            MappingInfo(
                internal=m.internal,
                public=m.public,
                expires=m.expires,
                static=m.static,
                remotes=tuple(sorted(r for r, f in m.flows.items() if f.expires > now)),
                created=m.created,
            )
            for _, m in sorted(self._by_public.items())
        ]

    def lookup(self, internal: Address, dst: Address, now: float) -> Address | None:
        """The public address ``internal -> dst`` would leave with, if its mapping exists (creates nothing)."""
        self.expire(now)
        m = self._static.get(internal) or self._table.get(self._key(internal, dst))
        return None if m is None else m.public

    # -- internals ------------------------------------------------------------------------------

    def _key(self, src: Address, dst: Address) -> tuple[object, ...]:
        mapping = self.config.mapping
        if mapping is MappingBehaviour.ENDPOINT_INDEPENDENT or not self.config.translate:
            return (src,)
        if mapping is MappingBehaviour.ADDRESS_DEPENDENT:
            return (src, dst[0])
        return (src, dst)

    def _admits(self, m: _Mapping, src: Address, now: float) -> bool:
        filtering = self.config.filtering
        if filtering is FilteringBehaviour.ENDPOINT_INDEPENDENT or filtering is FilteringBehaviour.NONE:
            return True
        if filtering is FilteringBehaviour.ADDRESS_DEPENDENT:
            return m.by_ip.get(src[0], -math.inf) > now
        flow = m.flows.get(src)
        return flow is not None and flow.expires > now

    def _touch(self, m: _Mapping, remote: Address, now: float, *, outbound: bool) -> None:
        """Record a datagram to (``outbound``) or from ``remote`` on ``m`` and refresh as configured."""
        cfg = self.config
        refreshes = outbound or cfg.refresh is Refresh.BOTH
        flow = m.flows.get(remote)
        if flow is None or flow.expires <= now:
            if not refreshes:
                return  # an inbound datagram with no flow of its own, and inbound does not refresh
            flow = m.flows[remote] = _Flow(now)
        if refreshes:
            # Both ways seen *before* this datagram: the one that first goes the other way still
            # gets the short timeout, as in Linux (conntrack sets SEEN_REPLY after the refresh).
            timeout = cfg.timeout
            if (
                cfg.stream_timeout is not None
                and flow.outbound
                and flow.inbound
                and now - flow.created > cfg.stream_after
            ):
                timeout = cfg.stream_timeout
            expires = now + timeout
            if expires > flow.expires:
                flow.expires = expires
                if expires > m.by_ip.get(remote[0], -math.inf):
                    m.by_ip[remote[0]] = expires
                m.expires = max(m.expires, expires)
        if outbound:
            flow.outbound = True
        else:
            flow.inbound = True

    def _add(
        self, key: tuple[object, ...], internal: Address, public: Address, expires: float, *, static: bool
    ) -> _Mapping:
        """Register a new mapping; the caller pushes it on the expiry heap once its expiry is set."""
        m = _Mapping(key, internal, public, expires, static)
        if static:
            self._static[internal] = m
        else:
            self._table[key] = m
        self._by_public[public] = m
        self.stats.mappings_created += 1
        return m

    def _push(self, m: _Mapping) -> None:
        heapq.heappush(self._expiries, (m.expires, self._sequence, m))
        self._sequence += 1

    def _remove(self, m: _Mapping) -> None:
        del self._by_public[m.public]
        if m.static:
            del self._static[m.internal]
        else:
            del self._table[m.key]

    def _free(self, port: int) -> bool:
        low, high = self.config.port_range
        return low <= port <= high and (self.public_ip, port) not in self._by_public

    def _allocate(self, internal_port: int, now: float) -> int | None:
        cfg = self.config
        if len(self._by_public) >= cfg.range_size:
            return None
        if cfg.allocation is Allocation.SEQUENTIAL:
            return self._sequential(now)
        if cfg.allocation is Allocation.PRESERVING and self._free(internal_port):
            return internal_port
        return self._random()

    def _sequential(self, now: float) -> int:
        cfg = self.config
        low = cfg.port_range[0]
        size = cfg.range_size
        taken = self._by_public
        ip = self.public_ip
        steps = 0
        if self._last_allocation is not None:
            steps = 1
            if cfg.shared_rate:
                steps += _poisson(self._rng, cfg.shared_rate * (now - self._last_allocation))
        self._last_allocation = now
        offset = (self._next_port - low + steps * cfg.delta) % size
        for _ in range(size):
            if (ip, low + offset) not in taken:
                break
            offset = (offset + cfg.delta) % size
        else:  # the delta's orbit is full (delta shares a factor with the range size): take the next free port
            offset = next(o % size for o in range(offset, offset + size) if (ip, low + o % size) not in taken)
        self._next_port = low + offset
        return self._next_port

    def _random(self) -> int:
        low, _ = self.config.port_range
        size = self.config.range_size
        taken = self._by_public
        ip = self.public_ip
        for _ in range(32):  # rejection sampling: uniform over the free ports
            port = low + self._rng.randbelow(size)
            if (ip, port) not in taken:
                return port
        start = self._rng.randbelow(size)  # a nearly full range: scan from a random place
        return next(low + o % size for o in range(start, start + size) if (ip, low + o % size) not in taken)


def _poisson(rng: Prng, mean: float) -> int:
    """A Poisson draw (Knuth's product method in chunks of mean 30, so it never underflows)."""
    total = 0
    while mean > 0:
        chunk = min(mean, 30.0)
        mean -= chunk
        limit = math.exp(-chunk)
        product = rng.random()
        while product > limit:
            total += 1
            product *= rng.random()
    return total
