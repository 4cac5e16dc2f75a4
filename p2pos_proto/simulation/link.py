"""A seeded, deterministic, sans-IO emulator of a two-way datagram link (issue 3, item 5).

Tests and, later, the network simulator put it between two sans-IO peers to get the
loss, bursts, reordering, duplication, corruption, delay, bandwidth limits and
outages of a real path, with no sockets and no clock: time is the ``now`` argument
and every random decision comes from a :class:`~p2pos.proto.prng.Prng` seeded by the
caller.  The same seed, configuration and calls give the same deliveries, bit for bit.

Driving it by hand::

    link = LinkEmulator(7, LinkConfig(delay=0.025, loss=0.01, bandwidth=1_000_000))
    link.send("a", datagram, now)           # a -> b; b -> a is link.send("b", ...)
    t = link.next_delivery_time()           # None when nothing is in flight
    for dst, data in link.deliver(t):       # everything due at or before t, in order
        peers[dst].receive_data(data, t)
    link.stats("a")                         # LinkStats of the a -> b direction

or let :func:`run_until` move whole peers (anything with ``receive_data``,
``data_to_send``, ``get_timer`` and ``handle_timer``, such as ``SecureSession``) from
event to event.

What happens to a datagram sent from one end, in this order (each step draws from the
direction's own random stream only when its feature is enabled):

1. **MTU**: larger than ``mtu`` bytes -> dropped (``lost_mtu``).
2. **Blackhole**: sent while an outage is active -> dropped (``lost_blackhole``).
3. **Bottleneck** (when ``bandwidth`` is set): a FIFO drop-tail queue of ``queue_bytes``
   in front of a link serialising ``bandwidth`` bytes per second.  A datagram occupies
   the queue (with ``overhead`` extra bytes) until its last byte is serialised; one that
   does not fit is dropped (``lost_queue``).  Queueing and serialisation delay add to
   the propagation delay.
4. **Loss on the wire** (the datagram did use the bottleneck's capacity): the
   Gilbert-Elliott chain (Gilbert 1960, Elliott 1963; the model of RFC 3611 §4.7.2 and
   of netem's ``loss gemodel``) moves between GOOD and BAD once per datagram and a
   datagram is lost with probability ``bad_loss`` in BAD (``lost_burst``); then
   independent loss with probability ``loss`` (``lost_random``).
5. **Delay**: ``delay`` plus a uniform draw from [0, ``jitter``].  Jitter alone never
   reorders: a datagram is never delivered before one sent earlier, as on a FIFO path,
   so under dense traffic the delays bunch up towards ``delay + jitter`` (they never
   exceed it).  With probability ``reorder`` a datagram is held back ``reorder_delay``
   more seconds so that later ones overtake it (``reordered``).
6. **Blackhole in flight**: lost if a configured outage starts before it arrives
   (``start_blackhole`` does the same to what is in flight when it is called).
7. **Corruption**: with probability ``corrupt``, 1 to ``corrupt_max_bits`` distinct random
   bits are flipped and the damaged copy is delivered (``corrupted``).
8. **Duplication**: with probability ``duplicate`` a second copy (with its own corruption
   draw) arrives right after the first (``duplicated``).

The per-direction counters are in :class:`LinkStats`; ``LinkEmulator(trace=True)``
also records every decision in ``trace`` (for tests and for debugging a simulation).
The random generator is not cryptographic, and none of this is meant to be.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, Protocol, TypeVar, overload

from ..errors import LocalProtocolError
from .prng import Prng

E = TypeVar("E", bound=Hashable)

#: One-way propagation delay bounds of the emulated paths, in seconds (issue 3: 1 to 750 ms).
MIN_DELAY = 0.001
MAX_DELAY = 0.750


def _check_probability(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise LocalProtocolError(f"LinkConfig.{name} must be a probability in [0, 1], got {value!r}")


def _check_seconds(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise LocalProtocolError(f"LinkConfig.{name} must be in [{low}, {high}] seconds, got {value!r}")


def _check_int(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise LocalProtocolError(f"LinkConfig.{name} must be an int >= {low}, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkConfig:
    """The behaviour of one direction of a link; validated on construction.

    Times are seconds, sizes bytes, rates bytes per second.  The defaults are a clean
    25 ms path with no bandwidth limit and a 1472-byte MTU (a 1500-byte Ethernet MTU
    less 28 bytes of IPv4 and UDP headers: the emulator carries UDP payloads).
    """

    #: One-way propagation delay, in [1 ms, 750 ms].
    delay: float = 0.025
    #: Extra delay drawn uniformly from [0, jitter]; delay + jitter stays <= 750 ms.
    jitter: float = 0.0
    #: Independent loss probability per datagram.
    loss: float = 0.0
    #: Gilbert-Elliott: probability per datagram of moving from GOOD to BAD (0 disables bursts).
    p_good_to_bad: float = 0.0
    #: Gilbert-Elliott: probability per datagram of moving from BAD back to GOOD (mean burst 1/p).
    p_bad_to_good: float = 0.5
    #: Gilbert-Elliott: loss probability of a datagram sent in the BAD state.
    bad_loss: float = 1.0
    #: Probability that a datagram is held back so that later ones overtake it.
    reorder: float = 0.0
    #: How long a held-back datagram is delayed beyond its normal arrival.
    reorder_delay: float = 0.010
    #: Probability that a datagram is delivered twice.
    duplicate: float = 0.0
    #: Probability that a delivered copy has bits flipped.
    corrupt: float = 0.0
    #: A corrupted copy has between 1 and this many distinct bits flipped.
    corrupt_max_bits: int = 1
    #: Bottleneck rate in bytes per second, or None for no limit (and no queue).
    bandwidth: float | None = None
    #: Capacity of the bottleneck's drop-tail queue (at least one MTU-sized datagram).
    queue_bytes: int = 65536
    #: Bytes counted per datagram by the bottleneck on top of its payload (e.g. 28 for IPv4+UDP).
    overhead: int = 0
    #: Largest datagram carried; larger ones are dropped.
    mtu: int = 1472
    #: Outages: datagrams sent in [start, end), or still in flight at start, are lost.
    blackholes: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        _check_seconds("delay", self.delay, MIN_DELAY, MAX_DELAY)
        _check_seconds("jitter", self.jitter, 0.0, MAX_DELAY - self.delay)
        _check_seconds("reorder_delay", self.reorder_delay, 0.0, MAX_DELAY)
        for name in ("loss", "p_good_to_bad", "p_bad_to_good", "bad_loss", "reorder", "duplicate", "corrupt"):
            _check_probability(name, getattr(self, name))
        if self.p_good_to_bad > 0 and self.p_bad_to_good == 0:
            raise LocalProtocolError("LinkConfig: a BAD state that is never left is an outage: use blackholes")
        if self.reorder > 0 and self.reorder_delay == 0:
            raise LocalProtocolError("LinkConfig.reorder needs a positive reorder_delay")
        _check_int("corrupt_max_bits", self.corrupt_max_bits, 1)
        _check_int("mtu", self.mtu, 1)
        if self.mtu > 65535:
            raise LocalProtocolError(f"LinkConfig.mtu must be at most 65535, got {self.mtu}")
        _check_int("overhead", self.overhead, 0)
        _check_int("queue_bytes", self.queue_bytes, 1)
        if self.queue_bytes < self.mtu + self.overhead:
            raise LocalProtocolError("LinkConfig.queue_bytes must hold at least one datagram of mtu + overhead bytes")
        if self.bandwidth is not None and (
            isinstance(self.bandwidth, bool)
            or not isinstance(self.bandwidth, int | float)
            or not 0 < self.bandwidth < math.inf
        ):
            raise LocalProtocolError(f"LinkConfig.bandwidth must be a positive rate or None, got {self.bandwidth!r}")
        windows = []
        for window in self.blackholes:
            if not isinstance(window, tuple | list) or len(window) != 2:
                raise LocalProtocolError(f"LinkConfig.blackholes entries must be (start, end) pairs, got {window!r}")
            start, end = window
            if any(isinstance(v, bool) or not isinstance(v, int | float) for v in window):
                raise LocalProtocolError(f"LinkConfig.blackholes times must be numbers, got {window!r}")
            if not (math.isfinite(start) and start < end):  # end may be +inf: an outage that never ends
                raise LocalProtocolError(f"LinkConfig.blackholes needs a finite start before its end, got {window!r}")
            windows.append((float(start), float(end)))
        object.__setattr__(self, "blackholes", tuple(sorted(windows)))

    @property
    def mean_loss(self) -> float:
        """Long-run fraction of datagrams lost on the wire (steps 4 of the module docstring)."""
        bad = self.p_good_to_bad / (self.p_good_to_bad + self.p_bad_to_good) if self.p_good_to_bad else 0.0
        burst = bad * self.bad_loss
        return burst + (1.0 - burst) * self.loss


@dataclass(slots=True)
class LinkStats:
    """Counters of one direction; ``LinkEmulator.stats`` returns the live object."""

    sent: int = 0
    sent_bytes: int = 0
    delivered: int = 0
    delivered_bytes: int = 0
    duplicated: int = 0
    corrupted: int = 0
    reordered: int = 0
    lost_mtu: int = 0
    lost_queue: int = 0
    lost_burst: int = 0
    lost_random: int = 0
    lost_blackhole: int = 0

    @property
    def lost(self) -> int:
        """Datagrams lost to any cause."""
        return self.lost_mtu + self.lost_queue + self.lost_burst + self.lost_random + self.lost_blackhole


class TraceEntry(NamedTuple, Generic[E]):
    """One decision of the emulator, recorded when ``trace=True``.

    ``kind`` is one of "send", "lost" (``note`` names the cause: mtu, queue, burst,
    random, blackhole), "reorder", "corrupt" (``bits`` lists the flipped bit positions,
    bit ``p`` being ``1 << (p % 8)`` of byte ``p // 8``), "duplicate" and "deliver".
    ``packet`` numbers the datagrams in the order they were sent (copies share it).
    """

    time: float
    src: E
    kind: str
    packet: int
    size: int
    note: str = ""
    bits: tuple[int, ...] = ()


@dataclass(slots=True, eq=False)
class _Direction(Generic[E]):
    """The state of one direction: its config, random stream, queue and Gilbert-Elliott state."""

    src: E
    dst: E
    config: LinkConfig
    rng: Prng
    stats: LinkStats = field(default_factory=LinkStats)
    #: Departure times and sizes of the datagrams in the bottleneck queue, oldest first.
    queue: deque[tuple[float, int]] = field(default_factory=deque)
    queued_bytes: int = 0
    #: When the bottleneck finishes serialising what it holds.
    busy_until: float = -math.inf
    #: The latest arrival time of a datagram that was not held back (keeps jitter in order).
    floor: float = -math.inf
    bad: bool = False
    #: Start time of the blackhole opened by ``start_blackhole``, or None.
    outage_since: float | None = None


#: A scheduled delivery: (arrival time, tie-breaking sequence, direction, data, packet number, tag).
_Entry = tuple[float, int, _Direction[E], bytes, int, object]


class LinkEmulator(Generic[E]):
    """Two ends joined by two independently configured directions.

    ``forward`` configures ``ends[0] -> ends[1]`` and ``backward`` the reverse (the same
    as ``forward`` when omitted).  Each direction draws from its own stream derived from
    ``seed``, so traffic in one direction never changes what happens in the other.
    Time passed to the methods must never go backwards.
    """

    @overload
    def __init__(
        self: LinkEmulator[str],
        seed: int | bytes,
        forward: LinkConfig | None = None,
        backward: LinkConfig | None = None,
        *,
        trace: bool = False,
    ) -> None: ...

    @overload
    def __init__(
        self,
        seed: int | bytes,
        forward: LinkConfig | None = None,
        backward: LinkConfig | None = None,
        *,
        ends: tuple[E, E],
        trace: bool = False,
    ) -> None: ...

    def __init__(
        self,
        seed: int | bytes,
        forward: LinkConfig | None = None,
        backward: LinkConfig | None = None,
        *,
        ends: tuple[E, E] | None = None,
        trace: bool = False,
    ) -> None:
        pair: tuple[E, E] = ends if ends is not None else ("a", "b")  # type: ignore[assignment]
        if len(pair) != 2 or pair[0] == pair[1]:
            raise LocalProtocolError("a link needs exactly two distinct ends")
        forward = forward if forward is not None else LinkConfig()
        backward = backward if backward is not None else forward
        for config in (forward, backward):
            if not isinstance(config, LinkConfig):
                raise LocalProtocolError(f"expected a LinkConfig, got {type(config).__name__}")
        root = Prng(seed)
        self._directions: dict[E, _Direction[E]] = {
            pair[0]: _Direction(pair[0], pair[1], forward, root.derive(b"direction 0")),
            pair[1]: _Direction(pair[1], pair[0], backward, root.derive(b"direction 1")),
        }
        self._ends = pair
        self._heap: list[_Entry[E]] = []
        self._sequence = 0
        self._packets = 0
        self._now = -math.inf
        #: Every decision, in order, when constructed with ``trace=True``; else None.
        self.trace: list[TraceEntry[E]] | None = [] if trace else None

    # -- inspection --------------------------------------------------------------

    @property
    def ends(self) -> tuple[E, E]:
        return self._ends

    def stats(self, src: E) -> LinkStats:
        """The live counters of the direction leaving ``src``."""
        return self._direction(src).stats

    def config(self, src: E) -> LinkConfig:
        return self._direction(src).config

    def in_flight(self) -> int:
        """Datagram copies scheduled but not yet delivered (both directions)."""
        return len(self._heap)

    def next_delivery_time(self) -> float | None:
        """When ``deliver`` next has something to hand out, or None if nothing is in flight."""
        return self._heap[0][0] if self._heap else None

    # -- inputs --------------------------------------------------------------------

    def reconfigure(self, src: E, config: LinkConfig, now: float) -> None:
        """Change the direction leaving ``src`` from ``now`` on (datagrams in flight keep their fate)."""
        self._advance(now)
        if not isinstance(config, LinkConfig):
            raise LocalProtocolError(f"expected a LinkConfig, got {type(config).__name__}")
        self._direction(src).config = config

    def send(self, src: E, datagram: bytes | bytearray | memoryview, now: float, tag: object = None) -> None:
        """Hand one datagram to the link at ``src``; afterwards check ``next_delivery_time``.

        ``tag`` rides along with every copy and comes back from ``deliver_tagged`` (the
        network emulator, ``network.py``, carries a packet's addresses in it); it never
        changes what happens to the datagram.
        """
        self._advance(now)
        d = self._direction(src)
        data = datagram if type(datagram) is bytes else bytes(datagram)
        size = len(data)
        cfg = d.config
        stats = d.stats
        stats.sent += 1
        stats.sent_bytes += size
        packet = self._packets
        self._packets += 1
        trace = self.trace
        if trace is not None:
            trace.append(TraceEntry(now, src, "send", packet, size))
        # 1. MTU.
        if size > cfg.mtu:
            self._lose(d, "mtu", packet, size, now)
            return
        # 2. Outage now.
        if d.outage_since is not None or (cfg.blackholes and _in_window(cfg.blackholes, now)):
            self._lose(d, "blackhole", packet, size, now)
            return
        # 3. Bottleneck: drop-tail queue, then serialisation at the configured rate.
        departure = now
        rate = cfg.bandwidth
        if rate is not None:
            queue = d.queue
            while queue and queue[0][0] <= now:
                d.queued_bytes -= queue.popleft()[1]
            wire_size = size + cfg.overhead
            if d.queued_bytes + wire_size > cfg.queue_bytes:
                self._lose(d, "queue", packet, size, now)
                return
            departure = max(now, d.busy_until) + wire_size / rate
            d.busy_until = departure
            queue.append((departure, wire_size))
            d.queued_bytes += wire_size
        rng = d.rng
        # 4. Loss on the wire: the Gilbert-Elliott chain steps once per datagram, then random loss.
        if cfg.p_good_to_bad:
            if d.bad:
                d.bad = rng.random() >= cfg.p_bad_to_good
            else:
                d.bad = rng.random() < cfg.p_good_to_bad
            if d.bad and rng.random() < cfg.bad_loss:
                self._lose(d, "burst", packet, size, now)
                return
        if cfg.loss and rng.random() < cfg.loss:
            self._lose(d, "random", packet, size, now)
            return
        # 5. Delay, jitter kept in order, and reordering by holding a datagram back.
        arrival = departure + cfg.delay
        if cfg.jitter:
            arrival += cfg.jitter * rng.random()
        if cfg.reorder and rng.random() < cfg.reorder:
            arrival += cfg.reorder_delay
            stats.reordered += 1
            if trace is not None:
                trace.append(TraceEntry(now, src, "reorder", packet, size))
        else:
            arrival = max(arrival, d.floor)
            d.floor = arrival
        # 6. A configured outage that starts while the datagram is in flight.
        if cfg.blackholes and _overlaps(cfg.blackholes, now, arrival):
            self._lose(d, "blackhole", packet, size, now)
            return
        # 7 and 8. Corruption of each delivered copy, duplication.
        self._schedule(d, arrival, data, packet, now, tag=tag)
        if cfg.duplicate and rng.random() < cfg.duplicate:
            stats.duplicated += 1
            if trace is not None:
                trace.append(TraceEntry(now, src, "duplicate", packet, size))
            self._schedule(d, arrival, data, packet, now, tag=tag)

    def deliver(self, now: float) -> list[tuple[E, bytes]]:
        """Every datagram due at or before ``now``, as (destination end, bytes), in arrival order."""
        return [(dst, data) for dst, data, _ in self.deliver_tagged(now)]

    def deliver_tagged(self, now: float) -> list[tuple[E, bytes, object]]:
        """As ``deliver``, with the ``tag`` each datagram was sent with: (destination end, bytes, tag)."""
        self._advance(now)
        heap = self._heap
        out: list[tuple[E, bytes, object]] = []
        trace = self.trace
        while heap and heap[0][0] <= now:
            arrival, _, d, data, packet, tag = heapq.heappop(heap)
            stats = d.stats
            stats.delivered += 1
            stats.delivered_bytes += len(data)
            out.append((d.dst, data, tag))
            if trace is not None:
                trace.append(TraceEntry(arrival, d.src, "deliver", packet, len(data)))
        return out

    def start_blackhole(self, now: float, src: E | None = None) -> None:
        """Cut the direction leaving ``src`` (both when None) from ``now`` until ``stop_blackhole``.

        What is queued or in flight and not yet arrived by ``now`` is lost, like
        everything sent during the outage.  Starting an active outage changes nothing.
        """
        self._advance(now)
        cut = [d for d in self._selected(src) if d.outage_since is None]
        if not cut:
            return
        kept: list[_Entry[E]] = []
        for entry in self._heap:
            d = entry[2]
            if entry[0] > now and d in cut:
                self._lose(d, "blackhole", entry[4], len(entry[3]), now)
            else:
                kept.append(entry)
        heapq.heapify(kept)
        self._heap = kept
        for d in cut:
            d.outage_since = now
            d.queue.clear()
            d.queued_bytes = 0
            d.busy_until = now
            d.floor = now

    def stop_blackhole(self, now: float, src: E | None = None) -> None:
        """End the outage of the direction leaving ``src`` (both when None); a no-op if none."""
        self._advance(now)
        for d in self._selected(src):
            d.outage_since = None

    # -- internals -------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        if not now >= self._now:  # also rejects NaN
            raise LocalProtocolError(f"time went backwards: {now!r} after {self._now!r}")
        self._now = now

    def _direction(self, src: E) -> _Direction[E]:
        try:
            return self._directions[src]
        except KeyError:
            raise LocalProtocolError(f"{src!r} is not an end of this link {self._ends!r}") from None

    def _selected(self, src: E | None) -> list[_Direction[E]]:
        return list(self._directions.values()) if src is None else [self._direction(src)]

    def _lose(self, d: _Direction[E], cause: str, packet: int, size: int, now: float) -> None:
        stats = d.stats
        if cause == "random":
            stats.lost_random += 1
        elif cause == "burst":
            stats.lost_burst += 1
        elif cause == "queue":
            stats.lost_queue += 1
        elif cause == "mtu":
            stats.lost_mtu += 1
        else:
            stats.lost_blackhole += 1
        if self.trace is not None:
            self.trace.append(TraceEntry(now, d.src, "lost", packet, size, cause))

    def _schedule(self, d: _Direction[E], arrival: float, data: bytes, packet: int, now: float, *, tag: object) -> None:
        cfg = d.config
        if cfg.corrupt and data and d.rng.random() < cfg.corrupt:
            rng = d.rng
            bits = min(len(data) * 8, 1 + rng.randbelow(cfg.corrupt_max_bits))
            positions = tuple(rng.sample_indices(len(data) * 8, bits))
            damaged = bytearray(data)
            for p in positions:
                damaged[p >> 3] ^= 1 << (p & 7)
            data = bytes(damaged)
            d.stats.corrupted += 1
            if self.trace is not None:
                self.trace.append(TraceEntry(now, d.src, "corrupt", packet, len(data), "", positions))
        heapq.heappush(self._heap, (arrival, self._sequence, d, data, packet, tag))
        self._sequence += 1


def _in_window(windows: tuple[tuple[float, float], ...], now: float) -> bool:
    return any(start <= now < end for start, end in windows)


def _overlaps(windows: tuple[tuple[float, float], ...], sent: float, arrival: float) -> bool:
    """Does an outage start after ``sent`` and before ``arrival`` (as ``start_blackhole`` decides)?"""
    return any(sent < start < arrival for start, _ in windows)


# -- driving sans-IO peers through a link ---------------------------------------------------


class Peer(Protocol):
    """What ``run_until`` drives: the datagram shape of ``SecureSession`` (STYLE.md §3)."""

    def receive_data(self, data: bytes, now: float) -> None: ...

    def data_to_send(self, now: float) -> list[bytes]: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


def run_until(
    link: LinkEmulator[E],
    peers: Mapping[E, Peer],
    until: float,
    *,
    now: float = 0.0,
    stop: Callable[[float], bool] | None = None,
    max_steps_per_instant: int = 100_000,
) -> float:
    """Move ``peers`` (one per end of ``link``) from event to event until ``until`` or ``stop``.

    Each step: every peer's ``data_to_send`` goes into the link; then, if ``stop(now)``
    holds, return ``now``; else what the peers have to send after ``stop`` (where an
    application writes) goes into the link too, and time jumps to the next delivery or peer timer (never
    sleeping), arrivals are fed with ``receive_data`` and due timers fired with
    ``handle_timer``.  Returns the time reached: ``until`` when nothing is left to do
    before it.  Peers are visited in the order of ``peers``, so runs are reproducible.
    A peer whose timer stays due without time moving raises ``LocalProtocolError``
    after ``max_steps_per_instant`` steps (it would otherwise spin forever).
    """
    if set(peers) != set(link.ends):
        raise LocalProtocolError(f"run_until needs one peer per end {link.ends!r}, got {list(peers)!r}")
    order: Iterable[tuple[E, Peer]] = list(peers.items())
    same_instant = 0
    while True:
        for end, peer in order:
            for datagram in peer.data_to_send(now):
                link.send(end, datagram, now)
        if stop is not None:
            if stop(now):
                return now
            # ``stop`` is where a test's application acts: send what it wrote at this instant.
            for end, peer in order:
                for datagram in peer.data_to_send(now):
                    link.send(end, datagram, now)
        nxt = link.next_delivery_time()
        for _, peer in order:
            timer = peer.get_timer()
            if timer is not None and (nxt is None or timer < nxt):
                nxt = timer
        if nxt is None or nxt > until:
            return max(now, until)
        if nxt <= now:
            same_instant += 1
            if same_instant > max_steps_per_instant:
                raise LocalProtocolError(f"run_until: no progress at t={now!r} (a timer that stays due?)")
        else:
            same_instant = 0
            now = nxt
        for dst, data in link.deliver(now):
            peers[dst].receive_data(data, now)
        for _, peer in order:
            timer = peer.get_timer()
            if timer is not None and timer <= now:
                peer.handle_timer(now)
