#!/usr/bin/env python3
"""Channel-layer bulk transfer against the raw AEAD ceiling, with 1 to 1000 open channels.

Run ``python bench/channels.py`` (about a minute), ``--quick`` for a smoke run,
``--seconds S`` / ``--rounds N`` to scale.  bench/README.md says what every
figure means and which targets apply.  The last line of stdout is one JSON
object: ``{"bench": "channels", "figures": {...}, "ratios": {...}, ...}``.

Two ``Connection``s (p2pos.proto.channels.connection) live in this process and hand
their 1200-byte datagrams to each other through a lossless in-memory link with
a fixed delay, on a simulated clock: no sockets, no sleeping.  The figures are
wall-clock time (``time.perf_counter``) of both ends together, so they measure
CPU cost; how long the transfer takes in simulated time does not count.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
import platform
import random
import sys
from collections.abc import Callable
from importlib import metadata

from _common import (
    Contender,
    Result,
    Settings,
    emit_json,
    parse_settings,
    print_figures,
    print_ratios,
    run_rounds,
    say,
)
from handshake_record import raw_aead

from p2pos.proto import ErrorCode, Identity, LocalKeys, LocalProtocolError, SecureSession
from p2pos.proto.channels.connection import ChannelConfig, Connection, ConnectionState
from p2pos.proto.events import (
    ChannelDataAvailable,
    ChannelOpened,
    ChannelRequested,
    ChannelWritable,
    ConnectionReady,
)
from p2pos.proto.session.record import OVERHEAD as RECORD_OVERHEAD
from p2pos.proto.simulation.prng import Prng

#: UDP payload of every datagram (PMTU probing off, so the path MTU stays there).
DATAGRAM = 1200
#: The record plaintext of one such datagram (1200 - 14 header - 16 tag): the raw AEAD ceiling's size.
PLAINTEXT = DATAGRAM - RECORD_OVERHEAD
#: Numbers of open channels: the bulk transfer runs on one of them (the target), or is split over all.
CHANNEL_COUNTS = (1, 10, 100, 1000)
#: Bytes each idle open channel carried once before the timed runs.
IDLE_WARMUP = 1024
#: Application bytes moved by one measured operation, whatever the number of channels.
TRANSFER_BYTES = 1 << 22
#: The same with ``--seconds`` under 0.25 (``--quick``): a smoke run, the figures mean little.
QUICK_TRANSFER_BYTES = 1 << 18
#: One-way delay of the in-memory link, in simulated seconds: a 2 ms round trip, so
#: packets are paced and acknowledged one by one as on a real path.
LINK_DELAY = 0.001
#: The bottleneck of the informational ACK-clocked case, bytes per simulated second (1 Gbit/s).
BOTTLENECK_RATE = 125e6
#: The application writes at most this much per ``send`` call.
WRITE_CHUNK = 256 * 1024
#: A transfer that needs more simulated time than this is stuck: the figures would be meaningless.
STUCK_AFTER = 60.0

#: ratio key -> minimum it should reach (bench/README.md explains each).  "Does not fall" is
#: read as "not lower beyond the noise of this shared machine": medians of interleaved rounds
#: of the same work differ by a few percent from run to run.
TARGETS: dict[str, float] = {
    "p2pos_1ch_vs_raw_aead": 0.5,
    "p2pos_1000open_vs_1ch": 0.95,
}


class BenchError(RuntimeError):
    """The transfer went wrong (stuck, closed, lost or corrupted data): the figures would be meaningless."""


@dataclasses.dataclass(slots=True)
class Counters:
    """What crossed the link, both directions: how many datagrams the transfers cost."""

    a_to_b: int = 0
    b_to_a: int = 0
    runs: int = 0


class _Responder:
    """The responding end: its connection is created by the first INIT."""

    def __init__(self, keys: LocalKeys, config: ChannelConfig) -> None:
        self.keys = keys
        self.config = config
        self.conn: Connection | None = None

    def receive_data(self, data: bytes, now: float) -> None:
        if self.conn is None:
            session = SecureSession.respond_untrusted(self.keys, data, local_index=2, now=now, random=Prng(7))
            self.conn = Connection(session, now, self.config)
        else:
            self.conn.receive_data(data, now)


class Transfer:
    """Two connected ``Connection``s, ``channels`` streams open from a to b.

    ``run`` moves ``size`` bytes from a to b, an equal share on each of the
    first ``active`` channels (all of them when 0), written by the application
    in round robin over them, and returns when b has read all of it.  The other
    channels stay open and idle; each of them carried ``IDLE_WARMUP`` bytes once
    before (their buffers and windows exist, as on a channel that was used).
    Connections and channels stay open between runs, as in one long transfer:
    congestion and flow-control windows stay warm.
    """

    def __init__(
        self,
        channels: int,
        size: int,
        keys_a: LocalKeys,
        keys_b: LocalKeys,
        *,
        delay: float,
        active: int = 0,
        rate: float | None = None,
    ) -> None:
        config = ChannelConfig(max_datagram_size=DATAGRAM, pmtu_probing=False, keepalive_interval=None)
        self.delay = delay
        # A bottleneck each way (bytes per simulated second), or None for an infinitely fast link.
        # Each step's datagrams leave back to back and arrive together when the last has crossed.
        self.rate = rate
        self._free_at = [0.0, 0.0]  # when the link a->b, b->a is free again
        self.size = size
        self.now = 0.0
        self.counters = Counters()
        self.a = Connection(SecureSession.initiate(keys_a, local_index=1, now=0.0, random=Prng(5)), 0.0, config)
        self._responder = _Responder(keys_b, config)
        # In flight each way: (arrival time, the datagrams one step sent), in arrival order.
        self._to_a: collections.deque[tuple[float, list[bytes]]] = collections.deque()
        self._to_b: collections.deque[tuple[float, list[bytes]]] = collections.deque()
        # What each run writes: an equal share per channel, different bytes on each channel.
        # ``active`` of the channels carry the data (all of them when 0); the others stay open and idle.
        carrying = active or channels
        share, extra = divmod(size, carrying)
        payload = random.Random(3).randbytes(size)
        self.shares: list[bytes] = []
        start = 0
        for i in range(carrying):
            end = start + share + (1 if i < extra else 0)
            self.shares.append(payload[start:end])
            start = end
        opened = self._open(channels)
        if self._responder.conn is None:
            raise BenchError("the responder never saw the INIT")
        self.b: Connection = self._responder.conn
        self.ids = opened[:carrying]
        idle = opened[carrying:]
        if idle:
            warmup = random.Random(4).randbytes(IDLE_WARMUP)
            self._move(idle, [warmup] * len(idle), verify=True)
            self.counters = Counters()  # the figures count the measured transfers only

    def _open(self, count: int) -> list[int]:
        """Handshake, then open ``count`` channels and wait until b accepted them all (not timed)."""
        ids: list[int] = []
        opened: set[int] = set()
        ready = False

        def setup() -> bool:
            nonlocal ready
            a = self.a
            while (event := a.next_event()) is not None:
                if isinstance(event, ConnectionReady):
                    ready = True
                elif isinstance(event, ChannelOpened):
                    opened.add(event.channel_id)
            # Before b's first MAX_CHANNELS only 100 may be opened: open the rest as b allows.
            while ready and len(ids) < count:
                try:
                    ids.append(a.open_channel("bench", self.now))
                except LocalProtocolError as exc:
                    if exc.code is not ErrorCode.CHANNEL_LIMIT:
                        raise
                    break
            b = self._responder.conn
            if b is not None:
                while (event := b.next_event()) is not None:
                    if isinstance(event, ChannelRequested):
                        b.accept_channel(event.channel_id, self.now)
            return len(opened) == count

        self._drive(setup)
        return ids

    def _put(self, queue: collections.deque[tuple[float, list[bytes]]], way: int, out: list[bytes], now: float) -> None:
        """One step's datagrams onto the link (``way`` 0: a->b, 1: b->a): they arrive together after the delay.

        With a bottleneck they leave back to back once the link is free, and arrive when the last has crossed.
        """
        departed = now
        if self.rate is not None:
            departed = self._free_at[way] = max(now, self._free_at[way]) + sum(map(len, out)) / self.rate
        queue.append((departed + self.delay, out))

    def _drive(self, app: Callable[[], bool]) -> None:
        """Move both ends from event to event (as link.run_until does) until ``app()`` returns True.

        Each step: the application handles its events (``app``), both ends'
        ``data_to_send`` go onto the link, then the clock jumps to the next
        arrival or timer, arrivals are fed with ``receive_data`` and due timers fired.
        """
        a, resp, to_a, to_b, counters = self.a, self._responder, self._to_a, self._to_b, self.counters
        now = start = self.now
        while True:
            self.now = now
            finished = app()
            out = a.data_to_send(now)
            if out:
                counters.a_to_b += len(out)
                self._put(to_b, 0, out, now)
            b = resp.conn
            if b is not None:
                out = b.data_to_send(now)
                if out:
                    counters.b_to_a += len(out)
                    self._put(to_a, 1, out, now)
            if finished:
                return
            nxt = to_b[0][0] if to_b else None
            if to_a and (nxt is None or to_a[0][0] < nxt):
                nxt = to_a[0][0]
            for timer in (a.get_timer(), b.get_timer() if b is not None else None):
                if timer is not None and (nxt is None or timer < nxt):
                    nxt = timer
            if nxt is None or nxt - start > STUCK_AFTER:
                raise BenchError(f"transfer stuck at simulated t={now:.3f} s")
            now = max(now, nxt)
            while to_b and to_b[0][0] <= now:
                # Until the INIT created b's connection the responder wrapper takes the datagrams.
                receiver = resp if resp.conn is None else resp.conn
                for datagram in to_b.popleft()[1]:
                    receiver.receive_data(datagram, now)
            while to_a and to_a[0][0] <= now:
                for datagram in to_a.popleft()[1]:
                    a.receive_data(datagram, now)
            b = resp.conn
            for peer in (a, b):
                if peer is not None:
                    timer = peer.get_timer()
                    if timer is not None and timer <= now:
                        peer.handle_timer(now)
            if a.state is ConnectionState.CLOSED or (b is not None and b.state is ConnectionState.CLOSED):
                raise BenchError("a connection closed during the transfer")

    def run(self, *, verify: bool = False) -> None:
        """Move ``size`` bytes from a to b.  ``verify`` hashes every channel's bytes (not for timing)."""
        self._move(self.ids, self.shares, verify=verify)
        self.counters.runs += 1

    def _move(self, ids: list[int], shares: list[bytes], *, verify: bool) -> None:
        """Send ``shares[i]`` on channel ``ids[i]``, all at once, until b has read every byte."""
        a, b = self.a, self.b
        # Per channel: its share and how much of it the connection has taken (offsets, not slices:
        # re-slicing the rest after every partial write would copy megabytes in the application).
        pending = {cid: memoryview(share) for cid, share in zip(ids, shares, strict=True)}
        taken = dict.fromkeys(ids, 0)
        received = dict.fromkeys(ids, 0)
        pieces: dict[int, list[bytes]] | None = {cid: [] for cid in ids} if verify else None
        left = sum(map(len, shares))

        def write() -> None:
            # The application: round robin over the channels, as much as each send buffer takes.
            for cid in list(pending):
                share, offset = pending[cid], taken[cid]
                while offset < len(share):  # until the send buffer is full (ChannelWritable says when not)
                    offered = share[offset : offset + WRITE_CHUNK]  # a view: send copies only what it takes
                    n = a.send(cid, offered, self.now)
                    offset += n
                    if n < len(offered):
                        break
                taken[cid] = offset
                if offset == len(share):
                    del pending[cid]

        def app() -> bool:
            nonlocal left
            while (event := a.next_event()) is not None:
                if not isinstance(event, ChannelWritable):
                    raise BenchError(f"unexpected event at a: {event!r}")
                if pending:
                    write()
            while (event := b.next_event()) is not None:
                if not isinstance(event, ChannelDataAvailable):
                    raise BenchError(f"unexpected event at b: {event!r}")
                data = b.read(event.channel_id)
                received[event.channel_id] += len(data)
                left -= len(data)
                if pieces is not None:
                    pieces[event.channel_id].append(data)
            return left <= 0

        write()
        self._drive(app)
        if left != 0 or any(received[cid] != len(share) for cid, share in zip(ids, shares, strict=True)):
            raise BenchError("b did not receive exactly what a sent")
        if pieces is not None:
            for cid, share in zip(ids, shares, strict=True):
                if hashlib.sha256(b"".join(pieces[cid])).digest() != hashlib.sha256(share).digest():
                    raise BenchError(f"channel {cid} delivered different bytes")
            for name, conn in (("a", a), ("b", b)):
                if conn.lost_packets:  # a spurious loss on a lossless link would distort the figures
                    raise BenchError(f"{name} declared {conn.lost_packets} packets lost on a lossless link")


@dataclasses.dataclass(frozen=True, slots=True)
class Case:
    """One p2pos contender: its figure's key, its label and its transfer."""

    key: str
    label: str
    transfer: Transfer


def cases(size: int) -> list[Case]:
    """The transfers measured; each is checked byte for byte once before timing (which also warms it up)."""
    keys_a = LocalKeys.create(Identity.from_seed(bytes([1]) * 32), bytes([2]) * 32)
    keys_b = LocalKeys.create(Identity.from_seed(bytes([3]) * 32), bytes([4]) * 32)
    out = [Case("p2pos_1ch_goodput_MBps", "p2pos bulk, 1 channel", Transfer(1, size, keys_a, keys_b, delay=LINK_DELAY))]
    out += [
        Case(
            f"p2pos_1of{n}open_goodput_MBps",
            f"p2pos bulk on 1 of {n} open channels",
            Transfer(n, size, keys_a, keys_b, delay=LINK_DELAY, active=1),
        )
        for n in CHANNEL_COUNTS[1:]
    ]
    out += [
        Case(
            f"p2pos_split{n}_goodput_MBps",
            f"p2pos bulk split over {n} channels",
            Transfer(n, size, keys_a, keys_b, delay=LINK_DELAY),
        )
        for n in CHANNEL_COUNTS[1:]
    ]
    out.append(
        Case(
            "p2pos_1ch_1gbit_goodput_MBps",
            "p2pos bulk, 1 channel, 1 Gbit/s bottleneck",
            Transfer(1, size, keys_a, keys_b, delay=LINK_DELAY, rate=BOTTLENECK_RATE),
        )
    )
    out.append(
        Case(
            "p2pos_1ch_batched_goodput_MBps",
            "p2pos bulk, 1 channel, zero delay",
            Transfer(1, size, keys_a, keys_b, delay=0.0),
        )
    )
    for case in out:
        case.transfer.run(verify=True)
    return out


def contenders(measured: list[Case]) -> list[Contender]:
    raw = Contender(
        key=f"raw_aead_MBps_{PLAINTEXT}",
        label=f"raw ChaCha20Poly1305 {PLAINTEXT} B",
        op=raw_aead(PLAINTEXT),
        scale=PLAINTEXT / 1e6,
        unit="MB/s",
    )
    return [raw] + [
        Contender(key=c.key, label=c.label, op=c.transfer.run, scale=c.transfer.size / 1e6, unit="MB/s")
        for c in measured
    ]


def ratios(figures: dict[str, float]) -> dict[str, float]:
    """The target ratios first, then informational ones."""

    def ratio(num: str, den: str) -> float:
        return figures[num] / figures[den] if figures[den] else float("inf")

    one, raw = "p2pos_1ch_goodput_MBps", f"raw_aead_MBps_{PLAINTEXT}"
    out = {
        "p2pos_1ch_vs_raw_aead": ratio(one, raw),
        "p2pos_1000open_vs_1ch": ratio("p2pos_1of1000open_goodput_MBps", one),
    }
    for n in CHANNEL_COUNTS[1:-1]:
        out[f"p2pos_{n}open_vs_1ch"] = ratio(f"p2pos_1of{n}open_goodput_MBps", one)
    for n in CHANNEL_COUNTS[1:]:
        out[f"p2pos_split{n}_vs_1ch"] = ratio(f"p2pos_split{n}_goodput_MBps", one)
    out["p2pos_1ch_1gbit_vs_raw_aead"] = ratio("p2pos_1ch_1gbit_goodput_MBps", raw)
    out["p2pos_1ch_batched_vs_raw_aead"] = ratio("p2pos_1ch_batched_goodput_MBps", raw)
    return out


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def report(results: list[Result], settings: Settings, measured: list[Case]) -> dict[str, object]:
    figures = {r.contender.key: r.median for r in results}
    print_figures(results, width=44, value_width=10, digits=2)
    computed = ratios(figures)
    met = print_ratios(computed, TARGETS, width=44, digits=3)
    say("")
    say("datagrams per transfer (a->b data, b->a mostly ACKs) and the state reached:")
    details: dict[str, dict[str, float]] = {}
    for case in measured:
        t, c = case.transfer, case.transfer.counters
        stats = t.a.stats()
        details[case.key] = {
            "a_to_b_per_run": round(c.a_to_b / c.runs, 1),
            "b_to_a_per_run": round(c.b_to_a / c.runs, 1),
            "cwnd": stats["cwnd"],
            "smoothed_rtt": stats["smoothed_rtt"],
            "lost_packets": stats["lost_packets"] + t.b.stats()["lost_packets"],
        }
        say(
            f"  {case.key:<32} a->b {c.a_to_b / c.runs:7.0f}  b->a {c.b_to_a / c.runs:7.0f}  "
            f"cwnd {stats['cwnd']:>8.0f} B  srtt {stats['smoothed_rtt'] * 1e3:5.2f} ms  "
            f"lost {details[case.key]['lost_packets']:.0f}"
        )
    return {
        "bench": "channels",
        "figures": {k: round(v, 3) for k, v in figures.items()},
        "ratios": {k: round(v, 4) for k, v in computed.items()},
        "targets": TARGETS,
        "targets_met": met,
        "details": details,
        "settings": {
            "rounds": settings.rounds,
            "seconds_per_contender_per_round": settings.seconds,
            "datagram_bytes": DATAGRAM,
            "transfer_bytes_per_op": measured[0].transfer.size,
            "link_delay_s": LINK_DELAY,
            "core": core_build(),
            "congestion_control": measured[0].transfer.a.config.congestion_control,
        },
    }


def core_build() -> str:
    """Which core this run measured: ``"compiled"`` (tools/compile_core.py, mypyc) or ``"python"``."""
    from p2pos.proto.channels import connection

    return "python" if connection.__file__.endswith(".py") else "compiled"


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(__doc__.splitlines()[0] if __doc__ else "", argv)
    size = QUICK_TRANSFER_BYTES if settings.seconds < 0.25 else TRANSFER_BYTES
    say(
        f"channels: python {platform.python_version()}, cryptography {_version('cryptography')}, "
        f"{os.cpu_count()} CPUs; {DATAGRAM}-byte datagrams, {size} bytes per transfer, "
        f"link delay {LINK_DELAY * 1e3:g} ms; core: {core_build()}"
    )
    measured = cases(size)
    todo = contenders(measured)
    say(f"{len(todo)} contenders x {settings.rounds} rounds x {settings.seconds:g} s (or one transfer), interleaved")
    results = run_rounds(todo, settings, log=say)
    for case in measured:  # once more, outside the timed region: every byte still arrives intact
        case.transfer.run(verify=True)
    emit_json(report(results, settings, measured))
    return 0


if __name__ == "__main__":
    sys.exit(main())
