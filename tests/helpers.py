"""In-memory wiring for the core's tests (STYLE.md §7).

Nothing here touches a socket or the clock: time is a float the test moves,
randomness is a seeded source, and links are Python lists.

* ``SeededRandom`` and ``make_keys``: deterministic randomness and identities.
* ``SessionPair``: an initiator and a responder ``SecureSession`` wired by a
  perfect link that the test can tap (log, drop, reorder by hand).
* ``EndpointNet``: several ``Endpoint`` objects addressed by opaque names; the
  link can rewrite a sender's source address to simulate a NAT rebinding.
* ``LossyNet``: a seeded simulator over ``EndpointNet`` that drops, duplicates
  and delays (hence reorders) datagrams and fires timers in time order.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import random
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

from p2pos.proto import Endpoint, Identity, LocalKeys, RemoteProtocolError, SecureSession, SessionConfig
from p2pos.proto.endpoint.endpoint import EndpointEvent
from p2pos.proto.events import Event, HandshakeCompleted, MessageReceived, SessionClosed
from p2pos.proto.identity.peer_id import PeerId
from p2pos.proto.session.wire import PacketType

_E = TypeVar("_E", HandshakeCompleted, MessageReceived, SessionClosed)

#: Local indices of the two sides of a ``SessionPair``.
INDEX_A = 0x0A0A0A0A
INDEX_B = 0x0B0B0B0B

#: ``drop(sender, datagram)`` returns True to lose the datagram; sender is "a" or "b".
DropRule = Callable[[str, bytes], bool]


class SeededRandom:
    """A deterministic ``RandomSource``: SHA-256 in counter mode over a seed."""

    def __init__(self, seed: object) -> None:
        self._seed = repr(seed).encode()
        self._counter = 0

    def __call__(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            out += hashlib.sha256(self._seed + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
        return bytes(out[:n])


@functools.cache
def make_keys(name: str) -> LocalKeys:
    """A fixed identity and Noise static key derived from ``name``."""
    seed = hashlib.sha256(b"identity:" + name.encode()).digest()
    static = hashlib.sha256(b"static:" + name.encode()).digest()
    return LocalKeys.create(Identity.from_seed(seed), static)


def ptype(datagram: bytes) -> PacketType | None:
    """The packet type byte of a datagram, or None if unknown."""
    try:
        return PacketType(datagram[0])
    except (ValueError, IndexError):
        return None


def drop_first(kind: PacketType, sender: str, count: int = 1) -> DropRule:
    """A drop rule that loses the first ``count`` datagrams of ``kind`` sent by ``sender``."""
    left = [count]

    def rule(who: str, datagram: bytes) -> bool:
        if who == sender and ptype(datagram) is kind and left[0] > 0:
            left[0] -= 1
            return True
        return False

    return rule


def of_type(events: Sequence[object], cls: type[_E]) -> list[_E]:
    return [e for e in events if isinstance(e, cls)]


class SessionPair:
    """Initiator ``a`` and responder ``b`` on a perfect in-memory link.

    The responder is created by ``SecureSession.respond_untrusted`` when the
    first INIT reaches it.  Every datagram either side emits is logged in
    ``sent_a`` / ``sent_b`` (dropped ones too); events land in ``events_a`` /
    ``events_b``.  Move time with ``now`` or ``jump()``.
    """

    def __init__(
        self,
        *,
        a_keys: LocalKeys | None = None,
        b_keys: LocalKeys | None = None,
        ik: bool = False,
        a_config: SessionConfig | None = None,
        b_config: SessionConfig | None = None,
        expected_peer: PeerId | None = None,
        now: float = 0.0,
        seed: object = 0,
    ) -> None:
        self.a_keys = a_keys or make_keys("alice")
        self.b_keys = b_keys or make_keys("bob")
        self.b_config = b_config
        self.now = now
        self.seed = seed
        self.a = SecureSession.initiate(
            self.a_keys,
            local_index=INDEX_A,
            now=now,
            config=a_config,
            expected_peer=expected_peer,
            remote_static=self.b_keys.static_public if ik else None,
            random=SeededRandom(("a", seed)),
        )
        self._b: SecureSession | None = None
        self.events_a: list[Event] = []
        self.events_b: list[Event] = []
        self.sent_a: list[bytes] = []
        self.sent_b: list[bytes] = []
        self.respond_errors: list[RemoteProtocolError] = []

    @property
    def b(self) -> SecureSession:
        if self._b is None:
            raise AssertionError("the responder does not exist yet")
        return self._b

    @property
    def has_b(self) -> bool:
        return self._b is not None

    # -- delivery --------------------------------------------------------------

    def deliver_to_b(self, datagram: bytes) -> None:
        if self._b is None:
            try:
                self._b = SecureSession.respond_untrusted(
                    self.b_keys,
                    datagram,
                    local_index=INDEX_B,
                    now=self.now,
                    config=self.b_config,
                    random=SeededRandom(("b", self.seed)),
                )
            except RemoteProtocolError as exc:
                self.respond_errors.append(exc)
        else:
            self._b.receive_data(datagram, self.now)
        self.drain_events()

    def deliver_to_a(self, datagram: bytes) -> None:
        self.a.receive_data(datagram, self.now)
        self.drain_events()

    def take_a(self) -> list[bytes]:
        """What ``a`` wants to send now (logged, not delivered); also collects events."""
        out = self.a.data_to_send(self.now)
        self.sent_a += out
        self.drain_events()
        return out

    def take_b(self) -> list[bytes]:
        if self._b is None:
            return []
        out = self._b.data_to_send(self.now)
        self.sent_b += out
        self.drain_events()
        return out

    def flush(self, drop: DropRule | None = None) -> None:
        """Deliver everything both sides send until the link is quiet."""
        for _ in range(1000):
            moved = False
            for datagram in self.take_a():
                moved = True
                if drop is None or not drop("a", datagram):
                    self.deliver_to_b(datagram)
            for datagram in self.take_b():
                moved = True
                if drop is None or not drop("b", datagram):
                    self.deliver_to_a(datagram)
            if not moved:
                self.drain_events()
                return
        raise AssertionError("the link never went quiet")

    def drain_events(self) -> None:
        while (event := self.a.next_event()) is not None:
            self.events_a.append(event)
        if self._b is not None:
            while (event := self._b.next_event()) is not None:
                self.events_b.append(event)

    # -- time ----------------------------------------------------------------

    def next_timer(self) -> float | None:
        times = [t for t in (self.a.get_timer(), self._b.get_timer() if self._b else None) if t is not None]
        return min(times) if times else None

    def jump(self) -> float:
        """Move ``now`` to the earliest timer and fire it (does not deliver)."""
        timer = self.next_timer()
        if timer is None:
            raise AssertionError("no timer is armed")
        self.now = max(self.now, timer)
        self.a.handle_timer(self.now)
        if self._b is not None:
            self._b.handle_timer(self.now)
        self.drain_events()
        return self.now

    # -- shortcuts -------------------------------------------------------------

    def handshake(self) -> None:
        """Run the handshake on the perfect link and check both sides completed."""
        self.flush()
        if not (self.a.is_established and self.b.is_established):
            raise AssertionError(f"handshake did not complete: {self.a.state} / {self.b.state}")

    def messages_a(self) -> list[bytes]:
        return [e.data for e in of_type(self.events_a, MessageReceived)]

    def messages_b(self) -> list[bytes]:
        return [e.data for e in of_type(self.events_b, MessageReceived)]

    def check_messages_flow(self, tag: bytes = b"") -> None:
        """Both directions still carry messages."""
        before_a, before_b = len(self.messages_a()), len(self.messages_b())
        self.a.send(b"a->b " + tag, self.now)
        self.b.send(b"b->a " + tag, self.now)
        self.flush()
        if self.messages_b()[before_b:] != [b"a->b " + tag] or self.messages_a()[before_a:] != [b"b->a " + tag]:
            raise AssertionError("messages did not flow")


def completed(events: Sequence[object]) -> HandshakeCompleted:
    """The single HandshakeCompleted in ``events``."""
    found = of_type(events, HandshakeCompleted)
    if len(found) != 1:
        raise AssertionError(f"expected one HandshakeCompleted, got {events}")
    return found[0]


def closed(events: Sequence[object]) -> SessionClosed:
    found = of_type(events, SessionClosed)
    if len(found) != 1:
        raise AssertionError(f"expected one SessionClosed, got {events}")
    return found[0]


# -- endpoints -----------------------------------------------------------------


def flat(batches: list[tuple[list[bytes], Hashable, Hashable]]) -> list[tuple[bytes, Hashable]]:
    """An endpoint's ``data_to_send`` batches as (datagram, destination) pairs, in order."""
    return [(data, dest) for datagrams, dest, _ in batches for data in datagrams]


class EndpointNet:
    """Endpoints keyed by address on a perfect link.

    ``source_of[addr]`` rewrites the source address the receivers see for
    packets sent by the endpoint at ``addr`` (a NAT rebinding); ``alias[x]``
    routes packets sent to ``x`` to the endpoint at ``alias[x]``.
    """

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.endpoints: dict[Hashable, Endpoint] = {}
        self.events: dict[Hashable, list[EndpointEvent]] = {}
        self.source_of: dict[Hashable, Hashable] = {}
        self.alias: dict[Hashable, Hashable] = {}
        #: Every datagram sent: (source, destination, bytes).
        self.log: list[tuple[Hashable, Hashable, bytes]] = []

    def add(self, addr: Hashable, keys: LocalKeys, config: SessionConfig | None = None) -> Endpoint:
        endpoint = Endpoint(keys, config=config, random=SeededRandom(("endpoint", addr)))
        self.endpoints[addr] = endpoint
        self.events[addr] = []
        return endpoint

    def route(self, dest: Hashable) -> Endpoint | None:
        return self.endpoints.get(self.alias.get(dest, dest))

    def outgoing(self) -> list[tuple[Hashable, Hashable, bytes]]:
        """Collect every endpoint's datagrams as (source seen by the receiver, destination, bytes)."""
        out: list[tuple[Hashable, Hashable, bytes]] = []
        for addr, endpoint in self.endpoints.items():
            # The tests call sessions directly (send, close): tell the endpoint, as a driver must.
            for session in endpoint.sessions():
                endpoint.updated(session.local_index)
            for datagrams, dest, _ in endpoint.data_to_send(self.now):
                out.extend((self.source_of.get(addr, addr), dest, data) for data in datagrams)
        self.log += out
        self.drain_events()
        return out

    def deliver(self, source: Hashable, dest: Hashable, data: bytes) -> None:
        endpoint = self.route(dest)
        if endpoint is not None:
            endpoint.receive_data(data, source, self.now)
        self.drain_events()

    def flush(self, drop: Callable[[Hashable, Hashable, bytes], bool] | None = None) -> None:
        for _ in range(1000):
            batch = self.outgoing()
            if not batch:
                return
            for source, dest, data in batch:
                if drop is None or not drop(source, dest, data):
                    self.deliver(source, dest, data)
        raise AssertionError("the network never went quiet")

    def drain_events(self) -> None:
        for addr, endpoint in self.endpoints.items():
            while (event := endpoint.next_event()) is not None:
                self.events[addr].append(event)

    def next_timer(self) -> float | None:
        times = [t for e in self.endpoints.values() if (t := e.get_timer()) is not None]
        return min(times) if times else None

    def jump(self) -> float:
        timer = self.next_timer()
        if timer is None:
            raise AssertionError("no timer is armed")
        self.now = max(self.now, timer)
        for endpoint in self.endpoints.values():
            endpoint.handle_timer(self.now)
        self.drain_events()
        return self.now


class LossyNet:
    """A seeded simulator over an ``EndpointNet``: loss, duplication, random delay.

    Every datagram is dropped with probability ``loss``, otherwise delivered
    once (or twice with probability ``duplicate``) after a delay drawn from
    ``[0, max_delay]``, so datagrams also arrive out of order.  ``run`` moves
    time from event to event: the next delivery or the next endpoint timer.
    """

    def __init__(
        self, net: EndpointNet, *, seed: int, loss: float = 0.1, duplicate: float = 0.1, max_delay: float = 0.3
    ) -> None:
        self.net = net
        self.rng = random.Random(seed)
        self.loss = loss
        self.duplicate = duplicate
        self.max_delay = max_delay
        self._in_flight: list[tuple[float, int, Hashable, Hashable, bytes]] = []
        self._seq = 0
        self.delivered = 0
        self.dropped = 0

    def _schedule(self) -> None:
        for source, dest, data in self.net.outgoing():
            if self.rng.random() < self.loss:
                self.dropped += 1
                continue
            copies = 2 if self.rng.random() < self.duplicate else 1
            for _ in range(copies):
                self._seq += 1
                at = self.net.now + self.rng.uniform(0.0, self.max_delay)
                heapq.heappush(self._in_flight, (at, self._seq, source, dest, data))

    def run(self, until: Callable[[], bool], *, deadline: float) -> bool:
        """Simulate until ``until()`` holds (True) or nothing is left before ``deadline`` (False)."""
        net = self.net
        self._schedule()
        while not until():
            times = [t for t in (net.next_timer(), self._in_flight[0][0] if self._in_flight else None) if t is not None]
            if not times or min(times) > deadline:
                return False
            net.now = max(net.now, min(times))
            while self._in_flight and self._in_flight[0][0] <= net.now:
                _, _, source, dest, data = heapq.heappop(self._in_flight)
                self.delivered += 1
                net.deliver(source, dest, data)
            for endpoint in net.endpoints.values():
                timer = endpoint.get_timer()
                if timer is not None and timer <= net.now:
                    endpoint.handle_timer(net.now)
            net.drain_events()
            self._schedule()
        return True
