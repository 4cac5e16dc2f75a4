"""Two ``Connection`` objects over the link emulator, with a small scripted application on each side.

Nothing here sleeps or reads the clock: ``Pair.run`` moves simulated time with
``link.run_until`` and every random choice comes from a seed.

* ``Side``: one end.  It follows the ``link.Peer`` protocol, so ``run_until`` can
  drive it, and it plays a simple application after every input: it records
  every event with its time, accepts requested channels (refusing services it
  does not know with SERVICE_UNKNOWN), reads stream data as it arrives (or at a
  ``read_limit`` per ``read_interval`` for a slow reader), and writes queued
  payloads (``write``) as fast as the send buffer takes them (after a short
  ``send`` it waits for ``ChannelWritable``), then finishes.
  The responder side creates its connection on the first INIT it receives.
* ``Pair``: two sides and a link; ``run(until, stop)`` continues from the time
  the previous run reached.
* ``payload(n, seed)``: fast deterministic bytes (SHAKE-256), ``digest``: SHA-256.
* ``framed_pair``: the same two sides over an in-memory ordered byte pipe
  through ``framing.frame`` / ``StreamFramer`` (a reliable carrier).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from helpers import make_keys

from p2pos.proto import RemoteProtocolError, SecureSession
from p2pos.proto.channels.channel import ChannelState
from p2pos.proto.channels.connection import ChannelConfig, Connection
from p2pos.proto.channels.frames import Frame, parse_frames_untrusted
from p2pos.proto.errors import ErrorCode
from p2pos.proto.events import (
    ChannelClosed,
    ChannelDataAvailable,
    ChannelEnded,
    ChannelEvent,
    ChannelRequested,
    ChannelWritable,
    HandshakeCompleted,
)
from p2pos.proto.paths.events import PathAbandoned, PathActive, PathDead, PathValidated
from p2pos.proto.session.framing import StreamFramer, frame
from p2pos.proto.simulation.link import LinkConfig, LinkEmulator, run_until
from p2pos.proto.simulation.prng import Prng

KEYS_A = make_keys("channels-a")
KEYS_B = make_keys("channels-b")
INDEX_A = 1
INDEX_B = 2

AnyEvent = ChannelEvent | HandshakeCompleted


def payload(n: int, seed: int = 0) -> bytes:
    """``n`` deterministic pseudo-random bytes (SHAKE-256 of the seed: fast for megabytes)."""
    return hashlib.shake_256(b"payload %d" % seed).digest(n)


def digest(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


class TappedSession(SecureSession):
    """A ``SecureSession`` that keeps the plaintext of every DATA record it seals (to inspect frames)."""

    sent_plaintexts: list[bytes]

    def send(self, data: bytes, now: float) -> int:
        if not hasattr(self, "sent_plaintexts"):
            self.sent_plaintexts = []
        self.sent_plaintexts.append(bytes(data))
        return super().send(data, now)

    def sent_frames(self) -> list[Frame]:
        return [f for p in getattr(self, "sent_plaintexts", []) for f in parse_frames_untrusted(p)]


class Side:
    """One end of a pair: a connection plus a scripted application (see the module docstring)."""

    def __init__(
        self,
        name: str,
        config: ChannelConfig | None,
        *,
        initiator: bool,
        services: frozenset[str] = frozenset({"files", "chat", "media"}),
    ) -> None:
        self.name = name
        self.config = config
        self.services = services
        self.conn: Connection | None = None
        self._init: bytes | None = None  # the INIT the responder's session answers
        if initiator:
            session = TappedSession.initiate(KEYS_A, local_index=INDEX_A, now=0.0, random=Prng(5))
            self.conn = Connection(session, 0.0, config)
        #: Every event with the time it was drained.
        self.events: list[tuple[float, AnyEvent]] = []
        #: Stream bytes read per channel.
        self.received: dict[int, bytearray] = {}
        #: Payloads still to write per channel, and whether to finish after them.
        self.outgoing: dict[int, tuple[bytes, int, bool]] = {}
        self.auto_accept = True
        self.auto_read = True
        #: A slow reader: at most ``read_limit`` bytes per ``read_interval`` seconds (None: no limit).
        self.read_limit: int | None = None
        self.read_interval = 0.1
        self._next_read = 0.0
        #: Called for every event after the defaults ran: ``hook(side, event, now)``.
        self.hook: Callable[[Side, AnyEvent, float], None] | None = None
        #: Largest send buffer / unread receive bytes seen (flow-control tests).
        self.max_send_buffered = 0
        self.max_recv_buffered = 0
        #: Channels with data to read (insertion-ordered set).
        self._to_read: dict[int, None] = {}
        #: Channels whose send buffer is full: written again after ``ChannelWritable``.
        self._blocked: set[int] = set()

    @property
    def c(self) -> Connection:
        assert self.conn is not None, f"{self.name} has no connection yet"
        return self.conn

    # -- link.Peer ---------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        conn = self.conn
        if conn is None or (
            self._init is not None and data[:1] == self._init[:1] and data != self._init and not _ready(self)
        ):
            # A responder answers every distinct INIT, as ``Endpoint`` does: an INIT damaged on the
            # way (XX's first message is not authenticated) must not wedge the handshake.
            try:
                session = TappedSession.respond_untrusted(KEYS_B, data, local_index=INDEX_B, now=now, random=Prng(7))
            except RemoteProtocolError:
                return  # not an acceptable INIT: wait for the retransmission
            self._init = data
            self.conn = Connection(session, now, self.config)
        else:
            conn.receive_data(data, now)
        self.pump(now)

    def data_to_send(self, now: float) -> list[bytes]:
        if self.conn is None:
            return []
        self.pump(now)
        return self.conn.data_to_send(now)

    def get_timer(self) -> float | None:
        timer = self.conn.get_timer() if self.conn is not None else None
        if self.read_limit is not None and self._unread():
            timer = self._next_read if timer is None else min(timer, self._next_read)
        return timer

    def handle_timer(self, now: float) -> None:
        if self.conn is not None:
            self.conn.handle_timer(now)
            self.pump(now)

    # -- the application ---------------------------------------------------------------

    def write(self, channel_id: int, data: bytes, *, finish: bool = True) -> None:
        """Queue ``data`` for ``channel_id``; sent as the send buffer allows, then FIN if ``finish``."""
        self.outgoing[channel_id] = (data, 0, finish)

    def of(self, kind: type[AnyEvent]) -> list[AnyEvent]:
        """The events of one type, in order."""
        return [e for _, e in self.events if isinstance(e, kind)]

    def pump(self, now: float) -> None:
        conn = self.conn
        if conn is None:
            return
        while (event := conn.next_event()) is not None:
            if isinstance(event, PathValidated | PathActive | PathDead | PathAbandoned):
                continue  # one path between the two sides: none happen
            self.events.append((now, event))
            # A request may be stale: a RESET in the same packet already closed the channel.
            if isinstance(event, ChannelRequested) and self.auto_accept and self._requested(event.channel_id):
                if event.service in self.services:
                    conn.accept_channel(event.channel_id, now)
                else:
                    conn.refuse_channel(event.channel_id, now, ErrorCode.SERVICE_UNKNOWN, f"no {event.service!r}")
            if isinstance(event, ChannelDataAvailable | ChannelEnded):
                self._to_read[event.channel_id] = None
            if isinstance(event, ChannelWritable):
                self._blocked.discard(event.channel_id)
            if self.hook is not None:
                self.hook(self, event, now)
        self._read(now)
        self._write(now)

    def _requested(self, channel_id: int) -> bool:
        channel = self.c.channels.get(channel_id)
        return channel is not None and channel.state is ChannelState.REQUESTED

    def _unread(self) -> bool:
        return bool(self._to_read)

    def _read(self, now: float) -> None:
        conn = self.c
        if not self.auto_read or not self._to_read:
            return
        if self.read_limit is not None:
            if now < self._next_read:
                return
            self._next_read = now + self.read_interval
        budget = self.read_limit
        for channel_id in list(self._to_read):
            channel = conn.channels.get(channel_id)
            if channel is None or channel.recv is None or not channel.recv.readable:
                del self._to_read[channel_id]
                continue
            self.max_recv_buffered = max(self.max_recv_buffered, channel.recv.buffered)
            data = conn.read(channel_id, budget)
            self.received.setdefault(channel_id, bytearray()).extend(data)
            if channel.recv.readable == 0:
                self._to_read.pop(channel_id, None)
            if budget is not None:
                budget -= len(data)
                if budget <= 0:
                    break

    def _write(self, now: float) -> None:
        conn = self.c
        for channel_id, (data, written, finish) in list(self.outgoing.items()):
            channel = conn.channels.get(channel_id)
            if channel is None or not channel.is_open or channel.send is None:
                continue
            offset = written
            if offset < len(data) and channel_id not in self._blocked:
                offered = data[offset : offset + conn.config.send_buffer]
                accepted = conn.send(channel_id, offered, now)
                if accepted < len(offered):
                    self._blocked.add(channel_id)  # until ChannelWritable, as an application would
                offset += accepted
                self.max_send_buffered = max(self.max_send_buffered, channel.send.buffered)
            if offset >= len(data):
                del self.outgoing[channel_id]
                if finish:
                    conn.finish(channel_id, now)
            else:
                self.outgoing[channel_id] = (data, offset, finish)


class Pair:
    """Initiator ``a`` and responder ``b`` joined by a seeded ``LinkEmulator``."""

    def __init__(
        self,
        forward: LinkConfig | None = None,
        backward: LinkConfig | None = None,
        *,
        config_a: ChannelConfig | None = None,
        config_b: ChannelConfig | None = None,
        seed: int = 1,
    ) -> None:
        self.a = Side("a", config_a, initiator=True)
        self.b = Side("b", config_b, initiator=False)
        self.link: LinkEmulator[str] = LinkEmulator(seed, forward, backward, ends=("a", "b"))
        self.now = 0.0

    def run(self, until: float, stop: Callable[[float], bool] | None = None) -> float:
        """Run until the simulated time ``until`` (absolute) or ``stop(now)``; returns the time reached."""
        self.now = run_until(self.link, {"a": self.a, "b": self.b}, until, now=self.now, stop=stop)
        return self.now

    def connect(self, until: float = 10.0) -> float:
        """Run until both sides are ready."""

        def ready(now: float) -> bool:
            return self.b.conn is not None and _ready(self.a) and _ready(self.b)

        end = self.run(until, ready)
        assert ready(end), "the handshake did not complete"
        return end


def _ready(side: Side) -> bool:
    return side.conn is not None and side.conn.state.value == "ready"


class FramedPair:
    """``a`` and ``b`` over an ordered, lossless byte pipe: datagrams go through ``frame`` / ``StreamFramer``.

    Each step moves time by ``step`` seconds, splits what each side wrote into
    chunks of random sizes (seeded) and feeds them to the other side's framer.
    """

    def __init__(self, config: ChannelConfig, *, seed: int = 3, step: float = 0.005) -> None:
        self.a = Side("a", config, initiator=True)
        self.b = Side("b", config, initiator=False)
        self.framers = {"a": StreamFramer(), "b": StreamFramer()}
        self.rng = Prng(seed)
        self.step = step
        self.now = 0.0
        self.bytes_carried = 0

    def run(self, until: float, stop: Callable[[float], bool] | None = None) -> float:
        sides = {"a": self.a, "b": self.b}
        while self.now < until:
            for name, side in sides.items():
                other = "b" if name == "a" else "a"
                stream = b"".join(frame(d) for d in side.data_to_send(self.now))
                self.bytes_carried += len(stream)
                pos = 0
                while pos < len(stream):
                    cut = pos + 1 + self.rng.randbelow(3000)
                    self.framers[other].receive_data(stream[pos:cut])
                    pos = cut
                    while (datagram := self.framers[other].next_frame()) is not None:
                        sides[other].receive_data(datagram, self.now)
            if stop is not None and stop(self.now):
                return self.now
            self.now += self.step
            for side in sides.values():
                timer = side.get_timer()
                if timer is not None and timer <= self.now:
                    side.handle_timer(self.now)
        return self.now


def finish_back(side: Side, event: AnyEvent, now: float) -> None:
    """A hook: when the peer's stream ends, finish ours too (a one-way transfer then closes)."""
    if isinstance(event, ChannelEnded):
        channel = side.c.channels.get(event.channel_id)
        if channel is not None and not channel.local_finished:
            side.c.finish(event.channel_id, now)


def one_way(pair: Pair, data: bytes, until: float, *, service: str = "files") -> tuple[int, float]:
    """Open a stream from ``a``, send ``data`` and FIN, let ``b`` FIN back; run until both closed it.

    Returns the channel id and the time reached.
    """
    pair.b.hook = finish_back
    channel_id = pair.a.c.open_channel(service, pair.now)
    pair.a.write(channel_id, data)
    end = pair.run(until, lambda now: closed(pair.a, channel_id) and closed(pair.b, channel_id))
    return channel_id, end


def closed(side: Side, channel_id: int) -> bool:
    """``side`` reported ``ChannelClosed`` for the channel."""
    return any(isinstance(e, ChannelClosed) and e.channel_id == channel_id for _, e in side.events)
