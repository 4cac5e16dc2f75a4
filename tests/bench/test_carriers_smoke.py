"""Smoke test of bench/carriers.py: a relay, coturn and three pairs of daemons on loopback, and the JSON.

No speed is asserted (the targets live in the benchmark, bench/README.md).  Every transfer must
have every byte counted by the receiving daemon, each pair must ride the carrier it is set up for
(direct UDP, the WebSocket relay, a coturn relayed address), or this fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench_helpers import BENCH_DIR, quick_summary

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "turn"))
from coturn_fixture import require_turnserver  # skips without coturn unless CI is set)


def test_carriers_bench_measures_each_carrier_between_daemons() -> None:
    require_turnserver()
    summary = quick_summary(BENCH_DIR / "carriers.py")
    assert summary["bench"] == "carriers"
    figures = summary["figures"]
    for name in ("direct", "relay", "turn", "quic_carrier_transport_level", "aioquic_stream_transport_level"):
        assert figures[f"{name}_MBps_min"] <= figures[f"{name}_MBps"] <= figures[f"{name}_MBps_max"], name
    assert summary["targets"] == {"relay_over_direct": 0.5, "turn_over_direct": 0.4, "quic_carrier_over_aioquic": 0.8}
    assert set(summary["ratios"]) == set(summary["targets"]) == set(summary["targets_met"])
    carried = summary["carried_by"]
    assert carried["direct"].startswith("udp 127.0.0.1:")
    assert carried["relay"].startswith("relay relay:")
    assert carried["turn"].endswith("(a coturn relayed address)")
