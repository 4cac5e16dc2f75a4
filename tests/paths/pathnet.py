"""Two endpoints joined by several seeded links at once: the emulator of the path tests.

Nothing here sleeps or reads the clock: ``PathNet.run`` moves simulated time
from event to event (the next delivery of any link, the next endpoint timer).

* A ``Link`` is one way between ``a`` and ``b``: a ``LinkEmulator`` plus, on each
  side, the local socket the endpoint uses for it and the address the *other*
  side sees.  A datagram that an endpoint sends to (address, local) goes on the
  link with that local socket and that peer address; one that matches no link
  is dropped (counted in ``unrouted``), as a datagram to a NAT binding that is
  gone.  ``rebind(name, side, address)`` changes the address the other side sees
  (a NAT rebinding); ``cut``/``restore`` black-hole a link both ways.
* A relay link is a link like any other (a longer delay) whose paths the test
  adds as ``PathKind.STREAM`` with rank 3; ``hold(name)`` keeps what it carries
  (a relay holding records) and ``drop_held(name)`` loses it.
* ``Transfer``: ``a`` opens a stream channel to ``b``'s "files" service and
  writes ``size`` deterministic bytes, then FIN; ``b`` reads them all; the test
  compares hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable

from helpers import SeededRandom, make_keys

from p2pos.proto.channels.connection import ChannelConfig, Connection
from p2pos.proto.endpoint.endpoint import Endpoint, EndpointEvent
from p2pos.proto.events import ChannelDataAvailable, ChannelEnded, ChannelRequested, ChannelWritable, ConnectionReady
from p2pos.proto.simulation.link import LinkConfig, LinkEmulator

KEYS_A = make_keys("paths-a")
KEYS_B = make_keys("paths-b")


class Link:
    def __init__(
        self,
        name: str,
        seed: int,
        config: LinkConfig,
        *,
        a_local: Hashable,
        a_addr: Hashable,
        b_local: Hashable,
        b_addr: Hashable,
    ) -> None:
        self.name = name
        self.emu: LinkEmulator[str] = LinkEmulator(seed, config, config, ends=("a", "b"))
        #: side -> the socket that side uses for this link.
        self.local = {"a": a_local, "b": b_local}
        #: side -> the address the OTHER side sees for it.
        self.addr = {"a": a_addr, "b": b_addr}
        self.up = True
        self.holding = False
        self.held: list[tuple[str, bytes]] = []


class PathNet:
    """Endpoints ``a`` (the initiator) and ``b`` and the links between them."""

    def __init__(self, seed: int, config: ChannelConfig | None = None) -> None:
        channels = config or ChannelConfig()
        self.seed = seed
        self.ep = {
            "a": Endpoint(KEYS_A, channels=channels, random=SeededRandom(("a", seed))),
            "b": Endpoint(KEYS_B, channels=channels, random=SeededRandom(("b", seed))),
        }
        self.links: dict[str, Link] = {}
        self.now = 0.0
        self.events: dict[str, list[tuple[float, EndpointEvent]]] = {"a": [], "b": []}
        self.unrouted = 0
        #: (time, side, link name) of every datagram sent, when ``log_sends`` is set.
        self.log_sends = False
        self.sends: list[tuple[float, str, str, int]] = []
        self.on_event: Callable[[str, EndpointEvent, float], None] | None = None

    def add_link(
        self, name: str, config: LinkConfig, *, a: tuple[Hashable, Hashable], b: tuple[Hashable, Hashable]
    ) -> Link:
        """``a``/``b``: (local socket, address the other side sees) of each side."""
        link = Link(
            name, self.seed * 1000 + len(self.links), config, a_local=a[0], a_addr=a[1], b_local=b[0], b_addr=b[1]
        )
        self.links[name] = link
        return link

    # -- events on the links ----------------------------------------------------------------

    def cut(self, name: str) -> None:
        link = self.links[name]
        link.up = False
        link.emu.start_blackhole(self.now)

    def restore(self, name: str) -> None:
        link = self.links[name]
        link.up = True
        link.emu.stop_blackhole(self.now)

    def rebind(self, name: str, side: str, address: Hashable) -> None:
        self.links[name].addr[side] = address

    def hold(self, name: str) -> None:
        self.links[name].holding = True

    def drop_held(self, name: str) -> int:
        link = self.links[name]
        count = len(link.held)
        link.held.clear()
        link.holding = False
        return count

    # -- running ------------------------------------------------------------------------------

    def _route(self, side: str, address: Hashable, local: Hashable) -> Link | None:
        other = "b" if side == "a" else "a"
        for link in self.links.values():
            if link.local[side] == local and link.addr[other] == address:
                return link
        return None

    def _flush(self) -> None:
        for side, endpoint in self.ep.items():
            for session in endpoint.sessions():
                endpoint.updated(session.local_index)
            for datagrams, address, local in endpoint.data_to_send(self.now):
                link = self._route(side, address, local)
                if link is None:
                    self.unrouted += len(datagrams)
                    continue
                for data in datagrams:
                    if self.log_sends:
                        self.sends.append((self.now, side, link.name, len(data)))
                    if link.holding:
                        link.held.append((side, data))
                    else:
                        link.emu.send(side, data, self.now)
            self._drain(side)

    def _drain(self, side: str) -> None:
        endpoint = self.ep[side]
        while (event := endpoint.next_event()) is not None:
            self.events[side].append((self.now, event))
            if self.on_event is not None:
                self.on_event(side, event, self.now)

    def run(self, until: float, stop: Callable[[], bool] | None = None) -> float:
        """Run to the simulated time ``until`` or until ``stop()``; returns the time reached."""
        self._flush()
        while stop is None or not stop():
            times = [t for e in self.ep.values() if (t := e.get_timer()) is not None]
            times += [t for link in self.links.values() if (t := link.emu.next_delivery_time()) is not None]
            if not times or min(times) > until:
                self.now = until
                return until
            self.now = max(self.now, min(times))
            for link in self.links.values():
                for dst, data in link.emu.deliver(self.now):
                    src = "a" if dst == "b" else "b"
                    self.ep[dst].receive_data(data, link.addr[src], self.now, local=link.local[dst])
                    self._drain(dst)
            for side, endpoint in self.ep.items():
                timer = endpoint.get_timer()
                if timer is not None and timer <= self.now:
                    endpoint.handle_timer(self.now)
                    self._drain(side)
            self._flush()
        return self.now

    # -- sessions -----------------------------------------------------------------------------

    def connect(self, link_name: str) -> int:
        """``a`` connects to ``b`` over ``link_name``; runs until both are ready; returns a's session id."""
        link = self.links[link_name]
        session = self.ep["a"].connect(link.addr["b"], self.now, local=link.local["a"])
        ready = {"a": False, "b": False}

        def seen() -> bool:
            for side in ("a", "b"):
                ready[side] = ready[side] or any(isinstance(e, ConnectionReady) for _, e in self.events[side])
            return ready["a"] and ready["b"]

        self.run(self.now + 10.0, seen)
        assert seen(), "the handshake did not complete"
        return session.local_index

    def b_session(self) -> int:
        (session,) = self.ep["b"].sessions()
        return session.local_index

    def conn(self, side: str, session_id: int) -> Connection:
        conn = self.ep[side].connection(session_id)
        assert conn is not None
        return conn


class Transfer:
    """``a`` sends bytes to ``b`` on one stream channel; ``b`` reads them (see the module docstring).

    ``feed(n)`` queues ``n`` more deterministic bytes (a bulk transfer feeds everything at
    once, a steady one a little at every step); ``finish()`` ends the stream after them.
    Both sides keep a SHA-256 of the bytes, so ``intact()`` needs no copy of them.
    """

    def __init__(self, net: PathNet, session_a: int) -> None:
        self.net = net
        self.session_a = session_a
        self._chunks = 0
        self._pending = b""
        self._finish = False
        self._finished = False
        self.sent_hash = hashlib.sha256()
        self.received_hash = hashlib.sha256()
        self.fed = 0
        self.received = 0
        self.ended = False
        conn = net.conn("a", session_a)
        self.channel = conn.open_channel("files", net.now)
        net.ep["a"].updated(session_a)
        net.on_event = self._on_event

    def feed(self, n: int) -> None:
        self._chunks += 1
        data = hashlib.shake_256(b"paths %d %d" % (self.net.seed, self._chunks)).digest(n)
        self.sent_hash.update(data)
        self.fed += n
        self._pending += data
        self._write(self.net.now)

    def finish(self) -> None:
        self._finish = True
        self._write(self.net.now)

    def _write(self, now: float) -> None:
        conn = self.net.conn("a", self.session_a)
        if self._finished:
            return
        while self._pending:
            accepted = conn.send(self.channel, self._pending, now)
            if accepted == 0:
                break
            self._pending = self._pending[accepted:]
        if self._finish and not self._pending:
            conn.finish(self.channel, now)
            self._finished = True
        self.net.ep["a"].updated(self.session_a)

    def _on_event(self, side: str, event: EndpointEvent, now: float) -> None:
        endpoint = self.net.ep[side]
        if side == "b" and isinstance(event, ChannelRequested):
            conn = endpoint.connection(event.session_id)
            assert conn is not None
            conn.accept_channel(event.channel_id, now)
            endpoint.updated(event.session_id)
        elif side == "b" and isinstance(event, ChannelDataAvailable | ChannelEnded):
            conn = endpoint.connection(event.session_id)
            assert conn is not None
            data = conn.read(event.channel_id)
            self.received += len(data)
            self.received_hash.update(data)
            if isinstance(event, ChannelEnded):
                self.ended = True
            endpoint.updated(event.session_id)
        elif side == "a" and isinstance(event, ChannelWritable):
            self._write(now)

    @property
    def done(self) -> bool:
        return self.ended and self.received == self.fed

    def intact(self) -> bool:
        return self.received_hash.digest() == self.sent_hash.digest()
