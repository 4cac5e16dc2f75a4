"""Smoke test of bench/keepalive.py: it runs, and its last line is the promised JSON.

The quick run (2 seeds, a 2-hour window) is in virtual time, so its figures are the real ones
up to the window's rounding: the 10x target is asserted here too, and the ratio must stay under
the 11.4x ceiling (an interval of 95% of the router's 300 s), which no honest count can pass.
"""

from __future__ import annotations

from bench_helpers import BENCH_DIR, quick_summary


def test_quick_run_ends_with_the_json_summary() -> None:
    summary = quick_summary(BENCH_DIR / "keepalive.py")  # every figure a positive number

    assert summary["bench"] == "keepalive"
    figures = summary["figures"]
    assert figures["router_timeout_s"] == 300.0
    assert 0.85 <= figures["learned_interval_s"] / 300.0 <= 0.95
    assert set(summary["targets"]) == set(summary["targets_met"]) == {"every_25s_vs_learned_bytes"}
    ratio = summary["ratios"]["every_25s_vs_learned_bytes"]
    assert summary["targets_met"]["every_25s_vs_learned_bytes"] is True
    assert 10.0 <= ratio <= summary["details"]["every_25s_vs_learned_bytes"]["ceiling"] + 0.2
    assert figures["learning_bytes"] < figures["every_25s_bytes_per_hour"]
