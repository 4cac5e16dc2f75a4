"""Runs the QUIC cases against one IUT process: one result a case, the report, the JSON.

A case passes when its function returns and fails when it raises (``CaseFailed`` with what
broke; anything else with the exception).  The runner starts the IUT once for the run and
starts it again after a case if it has exited (a crash fails that case, not the run).
"""

from __future__ import annotations

import dataclasses
import json
import time
import traceback
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, TextIO

from .. import __version__
from ..checks import CaseFailed
from .control import Iut
from .registry import QuicCase

Result = Literal["pass", "fail"]


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    case: QuicCase
    result: Result
    detail: str
    duration: float


def run_case(c: QuicCase, iut: Iut) -> Outcome:
    started = time.monotonic()
    try:
        detail = c.func(iut) or ""
        result: Result = "pass"
    except CaseFailed as exc:
        result, detail = "fail", str(exc)
    except Exception as exc:  # an IUT that answers garbage can break any check
        last = traceback.extract_tb(exc.__traceback__)[-1]
        result, detail = "fail", f"{type(exc).__name__}: {exc} (at {Path(last.filename).name}:{last.lineno})"
    iut.peer = None
    if result == "pass" and not iut.alive:
        result, detail = "fail", f"the IUT exited (status {iut.process.poll()}) during the case"
    return Outcome(c, result, detail, time.monotonic() - started)


def run(cases: Iterable[QuicCase], command: Sequence[str], out: TextIO) -> list[Outcome]:
    """Every case in order against one IUT process (restarted if it exits), one line each on ``out``."""
    outcomes: list[Outcome] = []
    iut: Iut | None = None
    try:
        for c in cases:
            if iut is None or not iut.alive:
                if iut is not None:
                    iut.stop()
                iut = Iut.start(command)
            outcome = run_case(c, iut)
            outcomes.append(outcome)
            detail = outcome.detail if len(outcome.detail) <= 100 else outcome.detail[:97] + "..."
            print(f"{c.id:<16} {outcome.result:<4} {c.section:<6} {detail}", file=out, flush=True)
    finally:
        if iut is not None:
            iut.stop()
    return outcomes


def summary(outcomes: list[Outcome]) -> dict[str, int]:
    passed = sum(o.result == "pass" for o in outcomes)
    return {"total": len(outcomes), "passed": passed, "failed": len(outcomes) - passed}


def report(outcomes: list[Outcome], out: TextIO) -> None:
    """The failures in full with the ids they cite, then ``N passed, N failed``."""
    for o in outcomes:
        if o.result == "fail":
            print(f"\nFAIL {o.case.id} ({o.case.section}): {o.case.title}", file=out)
            print(f"  requirements: {', '.join(o.case.requirements)}", file=out)
            print(f"  {o.detail}", file=out)
    counts = summary(outcomes)
    print(f"\n{counts['passed']} passed, {counts['failed']} failed", file=out)


def to_json(outcomes: list[Outcome], command: Sequence[str]) -> dict[str, Any]:
    cases = []
    for o in outcomes:
        item: dict[str, Any] = {
            "id": o.case.id,
            "result": o.result,
            "section": f"quic.md {o.case.section}",
            "detail": o.detail,
            "duration": round(o.duration, 3),
            "requirements": list(o.case.requirements),
        }
        if o.result == "fail":
            item["failed_requirements"] = list(o.case.requirements)
        cases.append(item)
    return {
        "runner_version": __version__,
        "suite": "quic",
        "implementation": " ".join(command),
        "cases": cases,
        "summary": summary(outcomes),
    }


def write_json(path: Path, outcomes: list[Outcome], command: Sequence[str]) -> None:
    path.write_text(json.dumps(to_json(outcomes, command), indent=1) + "\n")
