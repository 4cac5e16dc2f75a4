"""Smoke tests of bench/endpoint.py and bench/node.py: they run and end with the promised JSON.

No speed is asserted (the targets live in the benchmarks, bench/README.md).  The
node benchmark runs only the stacks this environment has (plain trio UDP and
p2pos; aioquic and py-libp2p are measured by ``make bench``): every byte of each
bulk transfer must arrive or the session fails, which fails this test.
"""

from __future__ import annotations

import json
import subprocess
import sys

from bench_helpers import BENCH_DIR, quick_summary


def test_endpoint_bench_reports_the_cost_per_datagram_and_keepalives() -> None:
    summary = quick_summary(BENCH_DIR / "endpoint.py")
    assert summary["bench"] == "endpoint"
    figures = summary["figures"]
    assert {"us_per_datagram_10_sessions", "us_per_datagram_500_sessions"} <= set(figures)
    keepalives = "idle_keepalive_datagrams_per_s_{}_sessions"
    assert figures[keepalives.format(500)] > figures[keepalives.format(10)]
    assert set(summary["ratios"]) == {"cost_10_over_500_sessions"}


def test_node_bench_runs_p2pos_against_plain_udp() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH_DIR / "node.py"), "--quick", "--stacks", "trio_udp,p2pos_1200,p2pos_pmtu"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["bench"] == "node" and summary["missing"] == {}
    figures = summary["figures"]
    for key in ("p2pos_1200_goodput_MBps", "p2pos_pmtu_goodput_MBps", "p2pos_1200_setup_ms", "trio_udp_goodput_MBps"):
        assert figures[key] > 0, key
    assert "p2pos_1200_vs_trio_udp_goodput" in summary["ratios"]
    assert "endpoint.us_per_datagram_10_sessions" in figures and "memory.rss_per_idle_connection_kib" in figures
    sessions = summary["sessions"]
    assert all(s["client"]["mtu"] == 1200 for s in sessions["p2pos_1200"])  # 1200-byte datagrams, no probing
