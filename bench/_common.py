"""The measuring harness shared by the benchmarks in bench/ (see bench/README.md).

A benchmark is a list of ``Contender``s, each one operation (one handshake, one
record sealed and opened) timed with ``time.perf_counter``.  ``run_rounds``
warms every contender up, then runs them interleaved for several rounds, the
order rotated each round, so a noisy neighbour on the machine slows all of them
alike; the figure of a contender is the median of its per-round rates.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence

#: One batch of operations runs at least this long between two clock reads.
_BATCH_SECONDS = 0.005


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Contender:
    """One measured operation and how to turn its rate into a figure."""

    #: Key in the JSON ``figures``, with the unit in the name (``..._per_s``, ``..._MBps_1200``).
    key: str
    #: Short human label for the text output.
    label: str
    op: Callable[[], None]
    #: figure = operations per second * scale (1 for "per second", bytes / 1e6 for MB/s).
    scale: float = 1.0
    unit: str = "op/s"


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    contender: Contender
    #: Figure of each round, in round order.
    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """(max - min) / median over the rounds: how noisy this figure was."""
        low, high = min(self.samples), max(self.samples)
        return (high - low) / self.median if self.median else 0.0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    rounds: int
    seconds: float
    warmup: float


def parse_settings(description: str, argv: Sequence[str] | None = None) -> Settings:
    """The common command line: ``--quick``, ``--seconds S``, ``--rounds N``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--seconds", type=float, default=None, help="time per contender per round (default 0.75; 0.04 with --quick)"
    )
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5; 3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run; the figures are not meaningful")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else (0.04 if args.quick else 0.75)
    rounds = args.rounds if args.rounds is not None else (3 if args.quick else 5)
    if seconds <= 0 or rounds < 1:
        parser.error("--seconds must be positive and --rounds at least 1")
    return Settings(rounds=rounds, seconds=seconds, warmup=min(seconds, 0.3))


def _run_for(op: Callable[[], None], seconds: float, batch: int) -> tuple[int, float]:
    """Run ``op`` in batches until ``seconds`` passed; (operations done, elapsed seconds)."""
    clock = time.perf_counter
    done = 0
    start = clock()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            op()
        done += batch
        now = clock()
        if now >= deadline:
            return done, now - start


def _calibrate(op: Callable[[], None], warmup: float) -> int:
    """Warm ``op`` up for about ``warmup`` seconds; the batch size that takes ~_BATCH_SECONDS."""
    done, elapsed = _run_for(op, warmup, 1)
    per_op = elapsed / done
    return max(1, int(_BATCH_SECONDS / per_op))


def run_rounds(contenders: Sequence[Contender], settings: Settings, *, log: Callable[[str], None]) -> list[Result]:
    """Warm up, then measure every contender once per round, rotating the order each round."""
    batches = {}
    for c in contenders:
        batches[c.key] = _calibrate(c.op, settings.warmup)
    samples: dict[str, list[float]] = {c.key: [] for c in contenders}
    count = len(contenders)
    for r in range(settings.rounds):
        started = time.perf_counter()
        for i in range(count):
            c = contenders[(i + r) % count]
            gc.collect()
            done, elapsed = _run_for(c.op, settings.seconds, batches[c.key])
            samples[c.key].append(done / elapsed * c.scale)
        log(f"  round {r + 1}/{settings.rounds} done in {time.perf_counter() - started:.1f} s")
    return [Result(c, tuple(samples[c.key])) for c in contenders]


def print_figures(results: Sequence[Result], *, width: int, value_width: int, digits: int) -> None:
    """The figures table: each contender's median and how much its rounds spread."""
    say("")
    say(f"{'figure (median of rounds)':<{width}} {'value':>{value_width}}  unit          spread")
    for r in results:
        say(
            f"{r.contender.label:<{width}} {r.median:>{value_width}.{digits}f}  {r.contender.unit:<12}  {r.spread:6.1%}"
        )


def print_ratios(ratios: dict[str, float], targets: dict[str, float], *, width: int, digits: int) -> dict[str, bool]:
    """The ratios table, targets first marked met or MISSED; returns whether each target was met."""
    met = {name: ratios[name] >= minimum for name, minimum in targets.items()}
    say("")
    say(f"{'ratio':<{width}} {'value':>8}  target")
    for name, value in ratios.items():
        if name in targets:
            verdict = "met" if met[name] else "MISSED"
            say(f"{name:<{width}} {value:>8.{digits}f}  >= {targets[name]:.{digits - 1}f}  {verdict}")
        else:
            say(f"{name:<{width}} {value:>8.{digits}f}  (informational)")
    say(f"targets met: {sum(met.values())}/{len(met)}")
    return met


def say(line: str) -> None:
    """Human-readable output: stdout, flushed so progress shows while it runs."""
    print(line, flush=True)


def emit_json(report: dict[str, object]) -> None:
    """The machine-readable summary: one JSON object, the last line of stdout."""
    sys.stdout.write(json.dumps(report, sort_keys=False) + "\n")
    sys.stdout.flush()
