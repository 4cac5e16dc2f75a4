"""Smoke test of bench/carriers.py: a relay, coturn, ONE pair of daemons pinned to each carrier, and the JSON.

No speed is asserted (the targets live in the benchmark, bench/README.md).  Every transfer must
have every byte counted by the receiving daemon and be carried by the path the pair is pinned to
(direct UDP, the WebSocket relay, A's coturn allocation, QUIC: checked on its bytes_sent), the plain
aioquic baseline must count every byte, the direct path must come up and fall back to the relay
with no transfer failing, or the benchmark fails, which fails this.
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
    goodputs = ["direct", "relay", "turn", "quic", "aioquic_stream", "direct_single_path"]
    timings = [
        "relay_new_session_ttfb_ms",
        "relay_new_session_round_trip_ms",
        "relay_rtt_ms",
        "relay_one_byte_exchange_ms",
        "direct_validated_to_active_ms",
        "cut_to_fallback_active_ms",
    ]
    per_round = ["relay_over_direct_per_round", "turn_over_direct_per_round"]
    for key in [f"{name}_MBps" for name in goodputs] + timings + per_round:
        assert figures[f"{key}_min"] <= figures[key] <= figures[f"{key}_max"], key
    assert len(figures) == 3 * (len(goodputs) + len(timings) + len(per_round))
    # Each round's ratio lies between the goodputs' extremes' ratios.
    low, high = (
        figures["relay_MBps_min"] / figures["direct_MBps_max"],
        figures["relay_MBps_max"] / figures["direct_MBps_min"],
    )
    assert low - 0.001 <= figures["relay_over_direct_per_round"] <= high + 0.001
    # The relay's 25 ms each way on both links: a round trip through it cannot be under 100 ms.
    assert figures["relay_rtt_ms_min"] >= 100
    assert summary["targets"] == {
        "relay_over_direct": 0.5,
        "turn_over_direct": 0.4,
        "quic_over_aioquic": 0.8,
        "ttfb_over_rtt": 2.0,
    }
    assert set(summary["ratios"]) == {*summary["targets"], "quic_over_direct", "ttfb_round_trip_over_rtt"}
    # The first byte reaches B's reader before the count is back at A (one machine, one clock).
    assert figures["relay_new_session_ttfb_ms"] < figures["relay_new_session_round_trip_ms"]
    assert set(summary["targets"]) == set(summary["targets_met"])
    ratio = summary["ratios"]["relay_over_direct"]
    assert abs(ratio - figures["relay_MBps"] / figures["direct_MBps"]) <= 0.01 * ratio + 0.002
    carried = summary["carried_by"]
    # One pair: every carrier reaches the same daemon B (its UDP address, or its relay link).
    peer_b = carried["direct"].split()[1]
    assert carried["direct"].startswith("udp 127.0.0.1:")
    assert carried["quic"] == f"quic {peer_b}"
    assert carried["turn"].startswith(f"turn {peer_b} (through A's allocation 127.0.0.1:")
    assert carried["relay"].startswith("relay relay:")
