"""Runs app API cases against a ``Target``: one result a case, the report, the JSON.

A case passes when its function returns, fails when it raises (``CaseFailed`` with what broke,
anything else with the exception: a suite bug or a daemon that answered garbage), and is
skipped when the command line did not give what it needs, or ``--slow`` (``Target.can_run``).
"""

from __future__ import annotations

import dataclasses
import json
import time
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, TextIO

from .. import __version__
from ..checks import CaseFailed
from .registry import ApiCase, Target

Result = Literal["pass", "fail", "skip"]


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    case: ApiCase
    result: Result
    detail: str
    duration: float


def run_case(c: ApiCase, target: Target) -> Outcome:
    why = target.can_run(c.needs, c.slow)
    if why is not None:
        return Outcome(c, "skip", why, 0.0)
    started = time.monotonic()
    try:
        detail = c.func(target) or ""
        result: Result = "pass"
    except CaseFailed as exc:
        result, detail = "fail", str(exc)
    except Exception as exc:  # a daemon that answers garbage can break any check
        last = traceback.extract_tb(exc.__traceback__)[-1]
        result, detail = "fail", f"{type(exc).__name__}: {exc} (at {Path(last.filename).name}:{last.lineno})"
    return Outcome(c, result, detail, time.monotonic() - started)


def run(cases: Iterable[ApiCase], target: Target, out: TextIO) -> list[Outcome]:
    """Every case in order, one line each on ``out`` as it ends."""
    outcomes = []
    for c in cases:
        outcome = run_case(c, target)
        outcomes.append(outcome)
        detail = outcome.detail if len(outcome.detail) <= 100 else outcome.detail[:97] + "..."
        print(f"{c.id:<18} {outcome.result:<4} {c.section:<6} {detail}", file=out, flush=True)
    return outcomes


def summary(outcomes: list[Outcome]) -> dict[str, int]:
    count = {r: sum(o.result == r for o in outcomes) for r in ("pass", "fail", "skip")}
    return {"total": len(outcomes), "passed": count["pass"], "failed": count["fail"], "skipped": count["skip"]}


def report(outcomes: list[Outcome], out: TextIO) -> None:
    """The failures in full with the ids they cite, then ``N passed, N failed`` (and the skipped)."""
    failed = [o for o in outcomes if o.result == "fail"]
    for o in failed:
        print(f"\nFAIL {o.case.id} ({o.case.section}): {o.case.title}", file=out)
        print(f"  requirements: {', '.join(o.case.requirements)}", file=out)
        print(f"  {o.detail}", file=out)
    counts = summary(outcomes)
    skipped = f" ({counts['skipped']} skipped)" if counts["skipped"] else ""
    print(f"\n{counts['passed']} passed, {counts['failed']} failed{skipped}", file=out)


def to_json(outcomes: list[Outcome], target: Target) -> dict[str, Any]:
    cases = []
    for o in outcomes:
        item: dict[str, Any] = {
            "id": o.case.id,
            "result": o.result,
            "section": f"appapi.md {o.case.section}",
            "detail": o.detail,
            "duration": round(o.duration, 3),
            "requirements": list(o.case.requirements),
        }
        if o.result == "fail":
            item["failed_requirements"] = list(o.case.requirements)
        cases.append(item)
    return {
        "runner_version": __version__,
        "suite": "appapi",
        "implementation": str(target.socket_path),
        "peer": str(target.peer_socket) if target.peer_socket else None,
        "cases": cases,
        "summary": summary(outcomes),
    }


def write_json(path: Path, outcomes: list[Outcome], target: Target) -> None:
    path.write_text(json.dumps(to_json(outcomes, target), indent=1) + "\n")
