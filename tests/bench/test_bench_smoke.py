"""Smoke test of bench/handshake_record.py: it runs, and its last line is the promised JSON.

No speed is asserted here: the targets live in the benchmark and are reported
by it (bench/README.md); a test on this shared machine would only be flaky.
"""

from __future__ import annotations

import math
import subprocess
import sys

from bench_helpers import BENCH_DIR, quick_summary

BENCH = BENCH_DIR / "handshake_record.py"

FIGURES = {
    "p2pos_xx_handshakes_per_s",
    "p2pos_xx_returning_handshakes_per_s",
    "p2pos_ik_handshakes_per_s",
    "noise_xx_handshakes_per_s",
    "noise_ik_handshakes_per_s",
    *(
        f"{who}_MBps_{size}"
        for who in ("p2pos_record", "p2pos_session", "noise_record", "raw_aead", "pynacl_aead")
        for size in (1200, 16384)
    ),
}
TARGET_RATIOS = {
    "p2pos_xx_vs_noise_xx_handshakes",
    "p2pos_record_vs_raw_aead_1200",
    "p2pos_record_vs_raw_aead_16384",
    "p2pos_record_vs_noise_record_1200",
}


def test_quick_run_ends_with_the_json_summary() -> None:
    summary = quick_summary(BENCH)  # every figure a positive number

    assert summary["bench"] == "handshake_record"
    figures = summary["figures"]
    assert set(figures) == FIGURES

    ratios = summary["ratios"]
    assert set(ratios) >= TARGET_RATIOS
    # Ratios are of the (unrounded) medians; the figures are printed rounded.
    assert math.isclose(
        ratios["p2pos_xx_vs_noise_xx_handshakes"],
        figures["p2pos_xx_handshakes_per_s"] / figures["noise_xx_handshakes_per_s"],
        rel_tol=1e-3,
    )
    assert set(summary["targets"]) == TARGET_RATIOS
    assert set(summary["targets_met"]) == TARGET_RATIOS
    assert all(isinstance(met, bool) for met in summary["targets_met"].values())


def test_bad_arguments_are_refused() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--rounds", "0"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "--rounds" in done.stderr
