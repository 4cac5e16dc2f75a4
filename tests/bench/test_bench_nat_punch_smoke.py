"""Smoke test of bench/nat_punch.py: it runs, its last line is the promised JSON, and its targets hold.

The quick run (100 trials per strategy and condition, seeds 0-99) is on the seeded emulator in
virtual time, so it is deterministic: its figures are coarse (the full run has 1,000 trials), but
the same every time, and the targets of issue 13 item 9 are asserted on them.  Budgets are counts,
and a relay-only pair must send no probe at all, so those figures are legitimately zero.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

from bench_helpers import BENCH_DIR


def test_quick_run_ends_with_the_json_summary_and_meets_its_targets() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH_DIR / "nat_punch.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) > 1, "human-readable lines come before the JSON"
    summary = json.loads(lines[-1])
    assert summary["bench"] == "nat_punch"
    figures = summary["figures"]
    for key, value in figures.items():
        assert isinstance(value, float | int) and math.isfinite(value) and value >= 0, key
    for condition in ("clean", "loss2"):
        assert figures[f"dial.{condition}.trials"] == 100
        assert figures[f"relay.{condition}.success_rate"] == 0  # random x random: the relay, no probe
        assert figures[f"birthday.{condition}.success_rate"] >= 0.95
    assert set(summary["targets"]) == set(summary["targets_met"])
    assert len(summary["targets"]) >= 30
    missed = [name for name, met in summary["targets_met"].items() if not met]
    assert missed == []
    # Theory says ~98.3% for a birthday with these budgets; a rate far above it would be suspect.
    assert 0.9 <= summary["ratios"]["birthday_success_over_theory.clean"] <= 1.05
