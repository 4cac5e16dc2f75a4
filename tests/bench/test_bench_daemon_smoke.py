"""Smoke test of bench/daemon.py: it runs a node and two daemons and ends with the promised JSON.

No speed is asserted (the 70% target lives in the benchmark, bench/README.md): both transfers
must complete with every byte counted by the receiver, or the benchmark fails, which fails this.
"""

from __future__ import annotations

from bench_helpers import BENCH_DIR, quick_summary


def test_daemon_bench_measures_the_app_api_against_the_node_level_transfer() -> None:
    summary = quick_summary(BENCH_DIR / "daemon.py")
    assert summary["bench"] == "daemon"
    figures = summary["figures"]
    assert figures["node_MBps"] > 0 and figures["app_MBps"] > 0
    assert set(summary["ratios"]) == {"app_over_node", "app_over_node_min", "app_over_node_max"}
    assert summary["targets"] == {"app_over_node": 0.7}
