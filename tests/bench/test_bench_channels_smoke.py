"""Smoke test of bench/channels.py: it runs, and its last line is the promised JSON.

No speed is asserted here: the targets live in the benchmark and are reported
by it (bench/README.md); a test on this shared machine would only be flaky.
The benchmark itself checks every byte of every transfer before and after the
timed rounds, and that no packet was declared lost on its lossless link: a
transfer that goes wrong makes it exit with an error, which fails this test.
"""

from __future__ import annotations

import math
import subprocess
import sys

from bench_helpers import BENCH_DIR, quick_summary
from conftest import COMPILED_CORE

BENCH = BENCH_DIR / "channels.py"

FIGURES = {
    "raw_aead_MBps_1170",
    "p2pos_1ch_goodput_MBps",
    "p2pos_1of10open_goodput_MBps",
    "p2pos_1of100open_goodput_MBps",
    "p2pos_1of1000open_goodput_MBps",
    "p2pos_split10_goodput_MBps",
    "p2pos_split100_goodput_MBps",
    "p2pos_split1000_goodput_MBps",
    "p2pos_1ch_1gbit_goodput_MBps",
    "p2pos_1ch_batched_goodput_MBps",
}
TARGET_RATIOS = {"p2pos_1ch_vs_raw_aead", "p2pos_1000open_vs_1ch"}
RATIOS = TARGET_RATIOS | {
    "p2pos_10open_vs_1ch",
    "p2pos_100open_vs_1ch",
    "p2pos_split10_vs_1ch",
    "p2pos_split100_vs_1ch",
    "p2pos_split1000_vs_1ch",
    "p2pos_1ch_1gbit_vs_raw_aead",
    "p2pos_1ch_batched_vs_raw_aead",
}


def test_quick_run_ends_with_the_json_summary() -> None:
    summary = quick_summary(BENCH)  # every figure a positive number

    assert summary["bench"] == "channels"
    figures = summary["figures"]
    assert set(figures) == FIGURES

    ratios = summary["ratios"]
    assert set(ratios) == RATIOS
    # Ratios are of the (unrounded) medians; the figures are printed rounded.
    assert math.isclose(
        ratios["p2pos_1ch_vs_raw_aead"],
        figures["p2pos_1ch_goodput_MBps"] / figures["raw_aead_MBps_1170"],
        rel_tol=1e-2,
    )
    assert math.isclose(
        ratios["p2pos_1000open_vs_1ch"],
        figures["p2pos_1of1000open_goodput_MBps"] / figures["p2pos_1ch_goodput_MBps"],
        rel_tol=1e-2,
    )
    assert math.isclose(
        ratios["p2pos_split1000_vs_1ch"],
        figures["p2pos_split1000_goodput_MBps"] / figures["p2pos_1ch_goodput_MBps"],
        rel_tol=1e-2,
    )
    assert summary["targets"] == {"p2pos_1ch_vs_raw_aead": 0.5, "p2pos_1000open_vs_1ch": 0.95}
    assert set(summary["targets_met"]) == TARGET_RATIOS
    for name, met in summary["targets_met"].items():
        assert met is (ratios[name] >= summary["targets"][name]), name

    # The lossless link lost nothing, and datagrams of at most 1200 bytes (1170 of plaintext) carried it.
    settings = summary["settings"]
    assert settings["datagram_bytes"] == 1200
    assert settings["core"] == ("compiled" if COMPILED_CORE else "python")  # the run measured this test's core
    assert settings["congestion_control"] == "bbr"
    for key, detail in summary["details"].items():
        assert detail["lost_packets"] == 0, key
        assert detail["a_to_b_per_run"] * 1170 >= settings["transfer_bytes_per_op"], key


def test_bad_arguments_are_refused() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--seconds", "0"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "--seconds" in done.stderr
