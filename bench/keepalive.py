#!/usr/bin/env python3
"""What keeping a daemon reachable costs with a learned keepalive interval (issue 13, item 9).

Run ``python bench/keepalive.py`` (a few seconds: everything runs in virtual time), ``--seeds N``
for more or fewer seeds, ``--quick`` for a smoke run (2 seeds, a 2-hour window).  The last line
of stdout is one JSON object:
``{"bench": "keepalive", "figures": {...}, "ratios": {...}, "targets": {...}, "targets_met": {...}}``.

On the seeded network emulator (tests/simulation/keepalive_sim.py): a rendezvous node's STUN
server in the internet, a daemon behind a router that keeps idle UDP bindings for 300 s (refreshed
both ways), 20-30 ms each way on the router's wide-area link.  The daemon runs the real sans-IO
``BindingTimeoutProber`` (spec/nat.md §4), then keeps its main binding with ``BindingKeeper``
(§5) at the learned interval.  The baseline is the same keepalive, a STUN Binding request and its
reply, every 25 s (WireGuard's interval), with nothing learned.  Bytes are counted on the daemon's
wire in both directions, every datagram with its 28 bytes of IPv4 and UDP headers, over a
steady-state window that starts two router timeouts after learning ended (the spare bindings have
idled out by then).  Also printed: what learning cost (bytes, both directions, and seconds), and
the keepalive cost of one idle peer session (zero extra flows under endpoint-independent mapping
and filtering, one more flow at the same interval otherwise: spec/nat.md NAT-5.2).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from _common import emit_json, say

_TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path[:0] = [str(_TESTS / "simulation")]

from keepalive_sim import trial  # noqa: E402

from p2pos.proto.simulation.link import LinkConfig  # noqa: E402
from p2pos.proto.simulation.nat import NatConfig, Refresh  # noqa: E402

ROUTER_TIMEOUT = 300.0
BASELINE_INTERVAL = 25.0
#: Issue 13, item 9: at least 10x fewer bytes than a keepalive every 25 s.
TARGET = 10.0
#: The best possible: an interval of 95% of the timeout.
CEILING = ROUTER_TIMEOUT * 0.95 / BASELINE_INTERVAL


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--seeds", type=int, default=None, help="seeds (default 20; 2 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a smoke run; the figures mean less")
    args = parser.parse_args(argv)
    seeds = args.seeds if args.seeds is not None else (2 if args.quick else 20)
    window = 2 * 3600.0 if args.quick else 24 * 3600.0
    router = [NatConfig(timeout=ROUTER_TIMEOUT, refresh=Refresh.BOTH)]
    link = LinkConfig(delay=0.020, jitter=0.010)
    say(f"router timeout {ROUTER_TIMEOUT:.0f} s, {seeds} seeds, steady-state window {window / 3600:.0f} h")
    learned, fixed, intervals, learn_bytes, learn_time = [], [], [], [], []
    for seed in range(seeds):
        t = trial(seed, router, link=link, window=window)
        if t.learned is None or t.lost:
            raise SystemExit(f"seed {seed}: nothing learned or the binding was lost: {t}")
        base = trial(seed, router, link=link, window=window, learn=False, interval=BASELINE_INTERVAL)
        if base.lost:
            raise SystemExit(f"seed {seed}: the 25-s baseline lost its binding")
        learned.append(t.window_bytes * 3600 / t.window)
        fixed.append(base.window_bytes * 3600 / base.window)
        intervals.append(t.interval)
        learn_bytes.append(t.learning_bytes)
        learn_time.append(t.learned.elapsed)
    ratios_each = [f / ell for f, ell in zip(fixed, learned, strict=True)]
    figures = {
        "router_timeout_s": ROUTER_TIMEOUT,
        "learned_interval_s": statistics.median(intervals),
        "learned_bytes_per_hour": statistics.median(learned),
        "every_25s_bytes_per_hour": statistics.median(fixed),
        "learning_bytes": statistics.median(learn_bytes),
        "learning_s": statistics.median(learn_time),
        "idle_peer_session_bytes_per_hour_dependent_filtering": statistics.median(learned),
    }
    ratios = {"every_25s_vs_learned_bytes": statistics.median(ratios_each)}
    targets = {"every_25s_vs_learned_bytes": TARGET}
    met = {name: ratios[name] >= minimum for name, minimum in targets.items()}
    say("")
    interval = figures["learned_interval_s"]
    say(f"learned interval        {interval:9.1f} s  (K/T {interval / ROUTER_TIMEOUT:.3f})")
    say(f"learned keepalives      {figures['learned_bytes_per_hour']:9.0f} B/h on the wire")
    say(f"every 25 s              {figures['every_25s_bytes_per_hour']:9.0f} B/h on the wire")
    say(f"learning the timeout    {figures['learning_bytes']:9.0f} B once, over {figures['learning_s']:.0f} s")
    say("idle peer session       0 B/h more under endpoint-independent mapping and filtering;")
    per_peer = figures["idle_peer_session_bytes_per_hour_dependent_filtering"]
    say(f"                        {per_peer:9.0f} B/h more otherwise")
    verdict = "met" if met["every_25s_vs_learned_bytes"] else "MISSED"
    say(
        f"ratio every-25s / learned {ratios['every_25s_vs_learned_bytes']:.2f}x "
        f"(seeds {min(ratios_each):.2f}-{max(ratios_each):.2f}; "
        f"target >= {TARGET:.0f}x, ceiling {CEILING:.1f}x)  {verdict}"
    )
    emit_json(
        {
            "bench": "keepalive",
            "figures": figures,
            "ratios": ratios,
            "targets": targets,
            "targets_met": met,
            "details": {
                "every_25s_vs_learned_bytes": {"min": min(ratios_each), "max": max(ratios_each), "ceiling": CEILING},
                "idle_peer_session_bytes_per_hour_independent": 0,
            },
            "settings": {"seeds": seeds, "window_s": window, "quick": args.quick},
        }
    )


if __name__ == "__main__":
    main()
