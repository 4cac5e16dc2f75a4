"""Runs app API cases against a ``Target``: one result a case, the report, the JSON.

A case passes when its function returns, fails when it raises (``conformance.suites``), and is
skipped when the command line did not give what it needs, or ``--slow`` (``Target.can_run``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from ..suites import Outcome, attempt, print_line, report, summary
from ..suites import to_json as suite_json
from .registry import ApiCase, Target

__all__ = ["Outcome", "report", "run", "run_case", "summary", "to_json", "write_json"]


def run_case(c: ApiCase, target: Target) -> Outcome[ApiCase]:
    why = target.can_run(c.needs, c.slow)
    if why is not None:
        return Outcome(c, "skip", why, 0.0)
    return attempt(c, lambda: c.func(target))


def run(cases: Iterable[ApiCase], target: Target, out: TextIO) -> list[Outcome[ApiCase]]:
    """Every case in order, one line each on ``out`` as it ends."""
    outcomes = []
    for c in cases:
        outcome = run_case(c, target)
        outcomes.append(outcome)
        print_line(outcome, out, width=18)
    return outcomes


def to_json(outcomes: list[Outcome[ApiCase]], target: Target) -> dict[str, Any]:
    data = suite_json(outcomes, suite="appapi", document="appapi.md", implementation=str(target.socket_path))
    data["peer"] = str(target.peer_socket) if target.peer_socket else None
    return data


def write_json(path: Path, outcomes: list[Outcome[ApiCase]], target: Target) -> None:
    path.write_text(json.dumps(to_json(outcomes, target), indent=1) + "\n")
