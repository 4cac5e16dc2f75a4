"""Smoke test of bench/rendezvous.py: it runs, and its last line is the promised JSON.

No speed is asserted (the target lives in the benchmark, bench/README.md): the quick run's
500 peers and short phases mean little.  What must hold is the run itself: every peer
registered (the benchmark fails otherwise), the node answered lookups with one FOUND and
one INTRODUCTION each, and every figure is a positive number.
"""

from __future__ import annotations

from bench_helpers import BENCH_DIR, quick_summary

FIGURES = {
    "node_cpu_us_per_lookup",
    "echo_cpu_us_per_packet",
    "rss_per_registered_peer_bytes",
    "wire_bytes_per_peer_per_hour",
    "keepalive_window_bytes_per_peer_per_hour",
    "keepalive_datagram_bytes",
    "register_datagram_bytes",
    "registered_datagram_bytes",
}


def test_quick_run_ends_with_the_json_summary() -> None:
    summary = quick_summary(BENCH_DIR / "rendezvous.py")  # every figure a positive number

    assert summary["bench"] == "rendezvous"
    figures = summary["figures"]
    assert set(figures) >= FIGURES
    assert figures["node_data_datagrams_out_per_lookup"] == 2 * figures["node_data_datagrams_in_per_lookup"]
    assert set(summary["targets"]) == {"node_vs_echo_cpu_per_packet"}
    assert set(summary["targets_met"]) == {"node_vs_echo_cpu_per_packet"}
    assert isinstance(summary["targets_met"]["node_vs_echo_cpu_per_packet"], bool)
    spread = summary["details"]["node_vs_echo_cpu_per_packet"]
    assert spread["min"] <= summary["ratios"]["node_vs_echo_cpu_per_packet"] <= spread["max"]
    assert summary["settings"]["peers"] == 500 and summary["settings"]["quick"] is True
