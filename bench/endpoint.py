#!/usr/bin/env python3
"""Endpoint cost per datagram as the number of idle sessions grows (issue 9, item 2).

    python bench/endpoint.py [--quick] [--sessions 10,1000,10000]

For each count N, one endpoint ``b`` (the channel layer on, default
configuration: a keepalive interval of 10 s, 31 s idle timeout) holds N idle
established sessions plus one busy one, to which its peer ``a`` sends a bulk
stream live (1200-byte datagrams, a one-way delay of one 0.5 ms tick).  The
figure is the time ``b`` spends per received datagram, doing what a driver
does: ``receive_data``, then every 8 datagrams ``handle_timer``, the events,
the application's ``read``, ``data_to_send`` (the ACKs) and ``get_timer``.
The target: the cost with 10,000 idle sessions is at most 1.5 times the cost
with 10, in the same run.

The idle sessions' own keepalive traffic is printed beside it, not hidden in
it (a measurement spans under 5 virtual seconds, so no idle timer fires in
it): datagrams per second, both directions, and the CPU seconds per second
both endpoints spend on them, over 30 s of virtual time (the initiators on
``a`` keep the sessions alive, ``b`` answers: spec/paths.md §7).

All in one process, sans-IO, with virtual time; the handshakes that set the
sessions up are not timed.  Runs on whichever core is imported
(``PYTHONPATH=build/compiled`` for the compiled one).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit_json, print_ratios, say

from p2pos.proto import ChannelConfig, ChannelRequested, Endpoint, Identity, LocalKeys

DATAGRAMS = 4000
ROUNDS = 5
BATCH = 8
#: Virtual seconds per step of the transfer: a one-way delay of 0.5 ms.
TICK = 0.0005


def _keys() -> LocalKeys:
    return LocalKeys.generate(Identity.generate())


def _pump(a: Endpoint, b: Endpoint, now: float) -> None:
    """Deliver everything between a ("A") and b ("B") until both are quiet."""
    for _ in range(100):
        moved = False
        for src, dst, name in ((a, b, "A"), (b, a, "B")):
            for datagrams, _address, _local in src.data_to_send(now):
                moved = True
                for datagram in datagrams:
                    dst.receive_data(datagram, name, now)
        if not moved:
            return
    raise RuntimeError("the handshakes never went quiet")


class Busy:
    """``b`` holds ``idle`` idle sessions and one busy one whose peer (on ``a``) sends it a stream."""

    def __init__(self, idle: int) -> None:
        config = ChannelConfig()
        self.a = a = Endpoint(_keys(), channels=config, max_sessions=idle + 10)
        self.b = b = Endpoint(_keys(), channels=config, max_sessions=idle + 10)
        self.now = now = 1000.0
        for start in range(0, idle, 500):
            for _ in range(min(500, idle - start)):
                a.connect("B", now)
            _pump(a, b, now)
        busy = a.connect("B", now)
        _pump(a, b, now)
        conn = a.connection(busy.local_index)
        if conn is None or len(b) != idle + 1:
            raise RuntimeError(f"set-up failed: {len(b)} sessions")
        self.sender, self.index = conn, busy.local_index
        self.channel = conn.open_channel("bulk", now)
        a.updated(busy.local_index)
        _pump(a, b, now)
        self.receiver_channel = -1
        while (event := b.next_event()) is not None:
            if isinstance(event, ChannelRequested):
                target = b.connection(event.session_id)
                if target is not None:
                    target.accept_channel(event.channel_id, now)
                    b.updated(event.session_id)
                    self.receiver, self.receiver_channel = target, event.channel_id
        _pump(a, b, now)
        while a.next_event() is not None:
            pass
        self.payload = memoryview(bytes(256 * 1024))

    def run(self, datagrams: int) -> float:
        """Seconds per datagram ``b`` spends on ``datagrams`` of the live transfer (only b's calls timed).

        Ticks of ``TICK`` virtual seconds; each direction delivers one tick after sending (an RTT
        of two ticks), and when nothing is in flight time jumps to the next timer, as a driver sleeps.
        """
        a, b = self.a, self.b
        spent = 0.0
        received = 0
        started = self.now
        to_b: list[bytes] = []
        to_a: list[bytes] = []
        while received < datagrams:
            self.now += TICK
            now = self.now
            for datagram in to_a:
                a.receive_data(datagram, "B", now)
            while a.next_event() is not None:
                pass
            start = time.perf_counter()
            acks: list[bytes] = []
            for i, datagram in enumerate(to_b):
                b.receive_data(datagram, "A", now)
                if i % BATCH == BATCH - 1:
                    acks += self._drain_b(now)
            acks += self._drain_b(now)
            spent += time.perf_counter() - start
            received += len(to_b)
            self.sender.send(self.channel, self.payload, now)
            a.updated(self.index)
            a.handle_timer(now)
            to_b = [d for datagrams_, _, _ in a.data_to_send(now) for d in datagrams_]
            to_a = acks
            if not to_b and not to_a:  # paced, or waiting for a timer: sleep until the next one
                timers = [t for t in (a.get_timer(), b.get_timer()) if t is not None]
                if not timers:
                    raise RuntimeError("the transfer stalled")
                self.now = max(self.now, min(timers) - TICK)
        # The idle sessions' timers (keepalives every 10 s) must not fire inside a measurement:
        # their traffic is reported on its own (keepalive_load), not hidden in this figure.
        if self.now - started > 5.0:
            raise RuntimeError(f"a measurement spanned {self.now - started:.1f} s of virtual time")
        return spent / received

    def _drain_b(self, now: float) -> list[bytes]:
        b = self.b
        b.handle_timer(now)  # only sessions whose deadline passed are touched (the ACK delay)
        while b.next_event() is not None:
            pass
        self.receiver.read(self.receiver_channel)
        b.updated(self.receiver.session.local_index)
        out = [d for datagrams_, _, _ in b.data_to_send(now) for d in datagrams_]
        b.get_timer()
        return out


def keepalive_load(busy: Busy, seconds: float = 30.0) -> tuple[float, float]:
    """(datagrams per second, CPU seconds per second) of the idle sessions over ``seconds`` of virtual time.

    Both endpoints' timers run, in order, and every datagram either side sends is delivered: only the
    controlling side (the initiator, on ``a``) sends keepalives, the other answers (spec/paths.md
    §7), so the traffic is both directions' datagrams, and the CPU both endpoints' work for them.
    """
    a, b = busy.a, busy.b
    sent = 0
    cpu = 0.0
    t = busy.now
    end = t + seconds
    while True:
        timers = [x for x in (a.get_timer(), b.get_timer()) if x is not None]
        if not timers or min(timers) > end:
            break
        t = max(t, min(timers))
        start = time.perf_counter()
        a.handle_timer(t)
        b.handle_timer(t)
        outputs = [(b, "A", a.data_to_send(t)), (a, "B", b.data_to_send(t))]  # (receiver, source, batches)
        while outputs:
            receiver, source, batches = outputs.pop(0)
            for datagrams, _address, _local in batches:
                sent += len(datagrams)
                for datagram in datagrams:
                    receiver.receive_data(datagram, source, t)
            for endpoint in (a, b):
                while endpoint.next_event() is not None:
                    pass
            answer = receiver.data_to_send(t)
            if any(datagrams for datagrams, _, _ in answer):
                outputs.append((a if receiver is b else b, "B" if receiver is b else "A", answer))
        cpu += time.perf_counter() - start
    return sent / seconds, cpu / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 and 500 sessions, 1 round (smoke test)")
    parser.add_argument("--sessions", default="10,1000,10000")
    args = parser.parse_args(argv)
    counts = [10, 500] if args.quick else [int(n) for n in args.sessions.split(",")]
    rounds = 1 if args.quick else ROUNDS
    per_round = 500 if args.quick else DATAGRAMS
    from p2pos.proto.channels import connection

    core = "pure" if connection.__file__.endswith(".py") else "compiled"
    say(f"endpoint cost per datagram, {core} core; setting up {', '.join(map(str, counts))} idle sessions")
    setups: dict[int, Busy] = {}
    for n in counts:
        start = time.perf_counter()
        setups[n] = Busy(n)
        say(f"  {n} idle sessions set up in {time.perf_counter() - start:.1f} s")
    for n in counts:
        setups[n].run(200)  # warm-up: the transfer reaches its steady state
    samples: dict[int, list[float]] = {n: [] for n in counts}
    for _ in range(rounds):  # interleaved: every count once per round
        for n in counts:
            samples[n].append(setups[n].run(per_round))
    figures: dict[str, float] = {}
    say("")
    say(f"{'figure':<52} {'median':>10}  range")
    for n in counts:
        key = f"us_per_datagram_{n}_sessions"
        figures[key] = statistics.median(samples[n]) * 1e6
        say(f"{key:<52} {figures[key]:>10.2f}  {min(samples[n]) * 1e6:.2f}-{max(samples[n]) * 1e6:.2f} us")
    for n in counts:
        rate, cpu = keepalive_load(setups[n])
        figures[f"idle_keepalive_datagrams_per_s_{n}_sessions"] = rate
        figures[f"idle_keepalive_cpu_s_per_s_{n}_sessions"] = cpu
        say(f"{'idle sessions keepalive, ' + str(n) + ' sessions':<52} {rate:>10.1f}  datagrams/s, CPU {cpu:.4f} s/s")
    low, high = counts[0], counts[-1]
    key = f"cost_{low}_over_{high}_sessions"
    ratios = {key: figures[f"us_per_datagram_{low}_sessions"] / figures[f"us_per_datagram_{high}_sessions"]}
    # "at most 1.5x the cost with 10", written as the inverse so that bigger is better, as everywhere
    targets = {key: round(1 / 1.5, 3)} if high >= 10000 else {}
    met = print_ratios(ratios, targets, width=52, digits=3)
    emit_json(
        {
            "bench": "endpoint",
            "figures": figures,
            "ratios": ratios,
            "targets": targets,
            "targets_met": met,
            "settings": {"core": core, "sessions": counts, "rounds": rounds, "datagrams_per_round": per_round},
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
