"""Running ``python -m conformance`` from the repository root, as CI and other implementations do."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_conformance(
    report: Path, *args: str, env: dict[str, str] | None = None, pure: bool = False, timeout: float = 300
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


def broken_impl(tmp_path: Path, bug: str, patch: str) -> str:
    """An IUT command: this implementation's adapter with the Python statements ``patch`` run
    first, to break the core the way ``bug`` names (a monkeypatch of the pure-Python core: run
    the suite with ``pure=True``)."""
    script = tmp_path / f"impl_{re.sub(r'[^A-Za-z0-9]', '_', bug)}.py"
    script.write_text(
        f"import sys\nsys.path.insert(0, {str(REPO_ROOT)!r})\n{patch}"
        "from conformance.impl import main\nraise SystemExit(main())\n"
    )
    return shlex.join([sys.executable, str(script)])


def run_case(tmp_path: Path, case_id: str, *args: str, adapter_may_exit: bool = False) -> dict[str, Any]:
    """Run one case through the command line, on the pure-Python core; returns its entry of the
    --json report.  Unless ``adapter_may_exit``, a case must fail on the broken rule, not on an
    adapter that died."""
    proc, report = run_conformance(
        tmp_path / "report.json", "-k", case_id, "-j", "1", "--timeout", "60", *args, pure=True
    )
    cases = [c for c in report["cases"] if c["id"] == case_id]
    assert len(cases) == 1, proc.stdout
    if not adapter_may_exit:
        assert "exited with status" not in cases[0]["detail"], cases[0]
    return dict(cases[0])


def mutant_impl(tmp_path: Path, relpath: str, old: str, new: str) -> str:
    """An IUT command: this implementation's adapter on a copy of the pure-Python core in which
    the one occurrence of ``old`` in ``relpath`` (relative to p2pos_proto/) is replaced by
    ``new``: a mutant of the mutation run (conformance/MUTATION.md), so that CI checks that a
    case written to kill it still does.  Only the IUT imports the copy (``p2pos`` is a namespace
    package and the copy comes first on its ``PYTHONPATH``); the runner's reference peer does not."""
    copy = tmp_path / "mutant"
    core = copy / "p2pos" / "proto"
    shutil.copytree(REPO_ROOT / "p2pos_proto", core, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    target = core / relpath
    text = target.read_text()
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {relpath}, not once"
    target.write_text(text.replace(old, new))
    return shlex.join(["env", f"PYTHONPATH={copy}", sys.executable, "-m", "conformance.impl"])


def assert_case_kills(tmp_path: Path, case_id: str, relpath: str, old: str, new: str) -> dict[str, Any]:
    """The case ``case_id`` fails (or warns, for a SHOULD) against the mutant ``old`` -> ``new``
    of ``relpath``; returns its report entry."""
    # 15 s a case (a later --timeout wins): some mutants hang, and every case passes in 3 s unmutated.
    impl = mutant_impl(tmp_path, relpath, old, new)
    outcome = run_case(tmp_path, case_id, "--impl", impl, "--no-precheck", "--timeout", "15", adapter_may_exit=True)
    assert outcome["result"] in ("fail", "warn"), outcome
    return outcome
