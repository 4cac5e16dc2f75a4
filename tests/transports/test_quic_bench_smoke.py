"""Smoke test of bench/quic_carrier.py: it runs, and its last line is the promised JSON.

No speed is asserted (bench/README.md): the target ratio is reported by the benchmark.
"""

from __future__ import annotations

import math

from bench_helpers import BENCH_DIR, quick_summary

FIGURES = {
    "carrier_MBps_16384",
    "aioquic_stream_MBps_16384",
    "carrier_MBps_1200",
    "aioquic_stream_MBps_1200",
    "aioquic_datagram_MBps_1100",
}


def test_quick_run_ends_with_the_json_summary() -> None:
    summary = quick_summary(BENCH_DIR / "quic_carrier.py")
    assert summary["bench"] == "quic_carrier"
    assert set(summary["figures"]) == FIGURES
    assert set(summary["targets"]) == {"carrier_vs_aioquic_stream_16384"}
    for name, value in summary["ratios"].items():
        assert math.isfinite(value) and value > 0, name
    assert 0 < summary["details"]["datagram_delivered_fraction"] <= 1
