"""Running ``python -m conformance`` from the repository root, as CI and other implementations do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_conformance(
    report: Path, *args: str, env: dict[str, str] | None = None, pure: bool = False, timeout: float = 120
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run the suite with ``--json report`` and ``args``; returns the process and the report.

    The environment is this one without ``P2POS_*`` variables, plus ``env``.  ``pure``: on the
    editable install's pure-Python core, whatever core this test run uses (``PYTHONPATH``
    dropped): broken IUTs made by patching the core need it, a compiled core cannot be patched.
    """
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("P2POS_")}
    if pure:
        full_env.pop("PYTHONPATH", None)
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "conformance", "--json", str(report), *args],
        check=False,
        cwd=REPO_ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert report.exists(), proc.stdout + proc.stderr
    return proc, json.loads(report.read_text())
