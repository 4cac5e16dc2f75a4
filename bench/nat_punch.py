"""Hole-punching statistics on the seeded emulator (issue 13, item 9): run ``python bench/nat_punch.py``.

Every strategy of spec/punch.md §3.1 (dial, predict, both sequential, birthday, relay) runs
``--trials`` trials (1,000 by default) through the emulator's NAT models with the real sans-IO
punchers (tests/simulation/punch_harness.py): trial ``i`` takes seed ``i`` and the strategy's
``i mod n``-th pair of NAT kinds, so every pair of the strategy gets its share; the birthday's
headline pair (random x endpoint-independent) gets ``--trials`` of its own.  Each runs twice:
wide-area links of 10 ms each way (RTT 40 ms) without loss, and with 2% loss each way on each
side's link.  Nothing is chosen by seed: the figures are over seeds ``0..N-1``.

Per strategy and condition it prints the success rate (both sides found a pair; the lowest and
highest pair), the time to direct from the punch's start (median, p95, max: both sides have the
pair; the first side's median beside it), probes (requests) per side and per trial (median,
max), triggered probes (spec/punch.md §5.3), and any budget of §4 a side broke.  The last line
is one JSON object: ``{"bench": "nat_punch", "figures", "ratios", "targets", "targets_met"}``;
a target is ``[">=" or "<=", value]``.

Freshness (spec/punch.md §3.4): the ``*-idle5-*`` rows run the predict and both-sequential pairs
that have a busy sequential NAT (other hosts take 10 mappings a second) with the introduction
5 s after the registrations, with fresh mappings (``-fresh``: the node's second address, the
sequential side's fresh Binding, the FRESH) and without (``-stale``, the old failure); the ratios
``*_idle5_fresh_over_idle0`` compare them with the same pairs introduced at once, in the same run.

The emulator is virtual time: the run's wall time (about two minutes for 1,000 trials on the
development machine, mostly the birthday's 1,280 probes a trial) says nothing about the figures.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

from _common import emit_json, say

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "simulation"))

from punch_harness import CLEAN, KINDS, LOSSY, TrialResult, percentile, run_trial, strategy

from p2pos.proto.simulation.link import LinkConfig

RTT_MS = 40.0
CONDITIONS: dict[str, LinkConfig] = {"clean": CLEAN, "loss2": LOSSY}
STRATEGIES = ["dial", "predict", "both-sequential", "birthday", "relay"]
EASY = ["dial", "predict", "both-sequential"]
#: The birthday's chance in theory (spec/punch.md §3.6): 1 - C(64256, 1024) / C(64512, 1024).
BIRTHDAY_THEORY = 0.983
HEADLINE = ("random", "eim-apdf")


def pairs_of(kind: str) -> list[tuple[str, str]]:
    return [(a, b) for a in KINDS for b in KINDS if strategy(KINDS[a], KINDS[b]) == kind]


def run(
    pairs: list[tuple[str, str]], trials: int, wan: LinkConfig, *, idle: float = 0.0, fresh: bool = False
) -> list[tuple[tuple[str, str], TrialResult]]:
    out = []
    for i in range(trials):
        a, b = pairs[i % len(pairs)]
        out.append(((a, b), run_trial(KINDS[a], KINDS[b], i, wan=wan, idle=idle, fresh=fresh)))
    return out


def busy_pairs_of(kind: str) -> list[tuple[str, str]]:
    """The pairs of ``kind`` with a busy sequential NAT (whose observed address ages, §3.4)."""
    return [(a, b) for a, b in pairs_of(kind) if "busy" in a or "busy" in b]


#: Freshness jobs (spec/punch.md §3.4): name -> (strategy, idle seconds, fresh mappings).
IDLE = 5.0
FRESHNESS = {
    f"{kind}-{label}": (kind, idle, fresh)
    for kind in ("predict", "both-sequential")
    for label, idle, fresh in (("idle0", 0.0, False), ("idle5-stale", IDLE, False), ("idle5-fresh", IDLE, True))
}


def summarise(results: list[tuple[tuple[str, str], TrialResult]]) -> dict[str, float]:
    rs = [r for _, r in results]
    by_pair: dict[tuple[str, str], list[bool]] = {}
    for pair, r in results:
        by_pair.setdefault(pair, []).append(r.success)
    both = [r.time_both * 1000 for r in rs if r.time_both is not None]
    first = [r.time_first * 1000 for r in rs if r.time_first is not None]
    per_side = [p for r in rs for p in (r.a.probes, r.b.probes)]
    nan = float("nan")
    return {
        "trials": len(rs),
        "success_rate": sum(r.success for r in rs) / len(rs),
        "success_rate_lowest_pair": min(sum(v) / len(v) for v in by_pair.values()),
        "success_rate_highest_pair": max(sum(v) / len(v) for v in by_pair.values()),
        "success_within_100_probes": sum(r.success and r.probes <= 100 for r in rs) / len(rs),
        "pairs_verified_rate": sum(r.pair_verified for r in rs) / max(1, sum(r.success for r in rs)),
        "time_to_direct_median_ms": statistics.median(both) if both else nan,
        "time_to_direct_p95_ms": percentile(both, 0.95),
        "time_to_direct_max_ms": max(both) if both else nan,
        "time_to_first_side_median_ms": statistics.median(first) if first else nan,
        "probes_per_side_median": statistics.median(per_side),
        "probes_per_side_max": max(per_side),
        "probes_per_trial_median": statistics.median(r.probes for r in rs),
        "probes_per_trial_max": max(r.probes for r in rs),
        "triggered_per_trial_max": max(r.a.triggered + r.b.triggered for r in rs),
        "budget_violations": sum(len(r.violations) for r in rs),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="hole-punching statistics on the seeded emulator")
    parser.add_argument("--trials", type=int, default=1000, help="trials per strategy and condition (default 1000)")
    parser.add_argument("--quick", action="store_true", help="100 trials: a smoke run, the rates are coarse")
    args = parser.parse_args(argv)
    trials = 100 if args.quick else args.trials
    if trials < 1:
        parser.error("--trials must be at least 1")
    started = time.perf_counter()
    say(f"nat_punch: {trials} trials per strategy and condition, RTT {RTT_MS:.0f} ms, seeds 0..{trials - 1}")
    stats: dict[str, dict[str, dict[str, float]]] = {}
    jobs = [(s, pairs_of(s), 0.0, False) for s in STRATEGIES] + [("birthday-random-x-eim", [HEADLINE], 0.0, False)]
    jobs += [(name, busy_pairs_of(kind), idle, fresh) for name, (kind, idle, fresh) in FRESHNESS.items()]
    for name, chosen, idle, fresh in jobs:
        for condition, wan in CONDITIONS.items():
            t = time.perf_counter()
            s = summarise(run(chosen, trials, wan, idle=idle, fresh=fresh))
            stats.setdefault(name, {})[condition] = s
            say(
                f"{name:<22} {condition:<5} {len(chosen):>3} pairs  success {s['success_rate']:6.1%} "
                f"(pairs {s['success_rate_lowest_pair']:.0%}-{s['success_rate_highest_pair']:.0%})  "
                f"direct median {s['time_to_direct_median_ms']:6.0f} ms p95 {s['time_to_direct_p95_ms']:6.0f} ms  "
                f"probes/side median {s['probes_per_side_median']:5.0f} max {s['probes_per_side_max']:5.0f}  "
                f"per trial max {s['probes_per_trial_max']:5.0f}  violations {s['budget_violations']:.0f}  "
                f"({time.perf_counter() - t:.0f} s)"
            )
    # A time that does not exist (a relay-only strategy never goes direct) is left out: JSON has no NaN.
    figures = {
        f"{name}.{cond}.{key}": round(v, 4)
        for name, c in stats.items()
        for cond, s in c.items()
        for key, v in s.items()
        if math.isfinite(v)
    }
    ratios = {
        f"birthday_success_over_theory.{cond}": round(
            stats["birthday-random-x-eim"][cond]["success_rate"] / BIRTHDAY_THEORY, 4
        )
        for cond in CONDITIONS
    }
    for kind in ("predict", "both-sequential"):
        for cond in CONDITIONS:
            base = stats[f"{kind}-idle0"][cond]["success_rate"]
            ratios[f"{kind}_idle5_fresh_over_idle0.{cond}"] = round(
                stats[f"{kind}-idle5-fresh"][cond]["success_rate"] / base if base else 0.0, 4
            )
    targets: dict[str, list[object]] = {}
    values: dict[str, float] = {}
    for cond in CONDITIONS:
        for name in ("birthday", "birthday-random-x-eim"):
            targets[f"{name}.{cond}.success_rate"] = [">=", 0.95]
            targets[f"{name}.{cond}.time_to_direct_p95_ms"] = ["<=", 5000.0]
        targets[f"both-sequential.{cond}.success_within_100_probes"] = [">=", 0.95]
        for name in EASY:
            targets[f"{name}.{cond}.time_to_direct_median_ms"] = ["<=", RTT_MS + 100.0]
            targets[f"{name}.{cond}.time_to_direct_p95_ms"] = ["<=", 1500.0]
        for name in STRATEGIES:
            targets[f"{name}.{cond}.budget_violations"] = ["<=", 0.0]
        targets[f"relay.{cond}.probes_per_trial_max"] = ["<=", 0.0]
        for kind in ("predict", "both-sequential"):
            targets[f"{kind}-idle5-fresh.{cond}.success_rate"] = [">=", 0.95]
            targets[f"{kind}-idle5-fresh.{cond}.budget_violations"] = ["<=", 0.0]
    for key in targets:
        values[key] = figures[key]
    met = {key: (values[key] >= bound if op == ">=" else values[key] <= bound) for key, (op, bound) in targets.items()}  # type: ignore[operator]
    say("")
    for key, (op, bound) in targets.items():
        say(f"{key:<52} {values[key]:>10.4g}  {op} {bound}  {'met' if met[key] else 'MISSED'}")
    say(f"targets met: {sum(met.values())}/{len(met)}; total {time.perf_counter() - started:.0f} s")
    emit_json({"bench": "nat_punch", "figures": figures, "ratios": ratios, "targets": targets, "targets_met": met})


if __name__ == "__main__":
    main()
