"""Smoke test of bench/goodput_loss.py: it runs, and its last line is the promised JSON.

No goodput is asserted here: the target lives in the benchmark and is reported by it
(bench/README.md); the quick run's two seeds and short windows mean little.  The
benchmark itself checks every byte it delivers, that the connection never closed and
that the sender never ran dry: a run that goes wrong makes it exit with an error,
which fails this test.
"""

from __future__ import annotations

import math
import subprocess
import sys

from bench_helpers import BENCH_DIR, quick_summary

BENCH = BENCH_DIR / "goodput_loss.py"

POINTS = {"bbr": (1, 10, 50), "newreno": (1, 10, 50), "cubic": (1, 10, 50)}
STATS = ("min", "p10", "median", "max")


def test_quick_run_ends_with_the_json_summary() -> None:
    summary = quick_summary(BENCH)  # every figure a positive number

    assert summary["bench"] == "goodput_loss"
    settings = summary["settings"]
    assert settings["seeds"] == [0, 1]  # a fixed range from 0, never chosen seeds
    assert settings["loss"] == 0.01
    assert settings["rtt_s"] == 0.05

    figures, ratios, details = summary["figures"], summary["ratios"], summary["details"]
    points = [f"{cc}_{mbit}mbit" for cc, capacities in POINTS.items() for mbit in capacities]
    assert set(figures) == {f"{p}_{s}_goodput_Mbps" for p in points for s in ("median", "min")}
    assert set(ratios) == {f"{p}_{s}_vs_capacity" for p in points for s in STATS}
    assert set(details) == set(points)
    for cc, capacities in POINTS.items():
        for mbit in capacities:
            point = f"{cc}_{mbit}mbit"
            per_seed = details[point]["fraction_of_capacity"]
            assert details[point]["seeds"] == settings["seeds"]
            assert len(per_seed) == len(settings["seeds"])
            assert all(0 < value < 1 for value in per_seed), point  # a goodput below the link's capacity
            low, p10, median, high = (ratios[f"{point}_{s}_vs_capacity"] for s in STATS)
            assert low <= p10 <= median <= high, point
            assert low == min(per_seed) and high == max(per_seed), point
            assert math.isclose(figures[f"{point}_median_goodput_Mbps"], median * mbit, rel_tol=1e-3), point
            assert details[point]["min_at_least_target"] is (low >= 0.7), point

    assert summary["targets"] == {f"bbr_{mbit}mbit_median_vs_capacity": 0.7 for mbit in POINTS["bbr"]}
    for name, met in summary["targets_met"].items():
        assert met is (ratios[name] >= summary["targets"][name]), name


def test_bad_arguments_are_refused() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--seeds", "0"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "--seeds" in done.stderr
