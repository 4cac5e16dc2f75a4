"""What the benchmark smoke tests share: run a bench/ script with ``--quick`` and read its JSON summary."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent.parent / "bench"


def quick_summary(script: Path) -> dict[str, Any]:
    """Run ``script --quick``; its last stdout line parsed, after checking that every figure is a positive number."""
    done = subprocess.run(
        [sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) > 1, "human-readable lines come before the JSON"
    summary: dict[str, Any] = json.loads(lines[-1])
    for key, value in summary["figures"].items():
        assert isinstance(value, float | int) and math.isfinite(value) and value > 0, key
    return summary
