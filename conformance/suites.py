"""What the small suites (``conformance.appapi``, ``.quic``, ``.relay``) share: one case's outcome,
the line printed as it ends, the report of failures, the counts, the JSON of a run.

Each suite has its own cases and its own target (a daemon's socket, an IUT process, a relay
URL); a case passes when its function returns, fails when it raises (``CaseFailed`` with what
broke; anything else with the exception and where it was raised), and may be skipped when the
suite's target cannot run it.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TextIO, TypeVar

from . import __version__
from .checks import CaseFailed

Result = Literal["pass", "fail", "skip"]


class Case(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def section(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def requirements(self) -> tuple[str, ...]: ...


C = TypeVar("C", bound=Case)


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome(Generic[C]):
    case: C
    result: Result
    detail: str
    duration: float


def attempt(case: C, func: Callable[[], str | None]) -> Outcome[C]:
    """Run one case's check; its outcome, timed."""
    started = time.monotonic()
    try:
        detail = func() or ""
        result: Result = "pass"
    except CaseFailed as exc:
        result, detail = "fail", str(exc)
    except Exception as exc:  # an implementation that answers garbage can break any check
        last = traceback.extract_tb(exc.__traceback__)[-1]
        result, detail = "fail", f"{type(exc).__name__}: {exc} (at {Path(last.filename).name}:{last.lineno})"
    return Outcome(case, result, detail, time.monotonic() - started)


def print_line(outcome: Outcome[C], out: TextIO, width: int = 16) -> None:
    """The line of one case as it ends: id, result, section, the detail cut to 100 characters."""
    c, detail = outcome.case, outcome.detail
    detail = detail if len(detail) <= 100 else detail[:97] + "..."
    print(f"{c.id:<{width}} {outcome.result:<4} {c.section:<6} {detail}", file=out, flush=True)


def summary(outcomes: Sequence[Outcome[C]]) -> dict[str, int]:
    count = {r: sum(o.result == r for o in outcomes) for r in ("pass", "fail", "skip")}
    return {"total": len(outcomes), "passed": count["pass"], "failed": count["fail"], "skipped": count["skip"]}


def report(outcomes: Sequence[Outcome[C]], out: TextIO) -> None:
    """The failures in full with the ids they cite, then ``N passed, N failed`` (and the skipped)."""
    for o in outcomes:
        if o.result == "fail":
            print(f"\nFAIL {o.case.id} ({o.case.section}): {o.case.title}", file=out)
            print(f"  requirements: {', '.join(o.case.requirements)}", file=out)
            print(f"  {o.detail}", file=out)
    counts = summary(outcomes)
    skipped = f" ({counts['skipped']} skipped)" if counts["skipped"] else ""
    print(f"\n{counts['passed']} passed, {counts['failed']} failed{skipped}", file=out)


def to_json(outcomes: Iterable[Outcome[C]], *, suite: str, document: str, implementation: str) -> dict[str, Any]:
    """The run as JSON: each case with its result, section (``document §x``), detail, duration, ids."""
    listed = list(outcomes)
    cases = []
    for o in listed:
        item: dict[str, Any] = {
            "id": o.case.id,
            "result": o.result,
            "section": f"{document} {o.case.section}",
            "detail": o.detail,
            "duration": round(o.duration, 3),
            "requirements": list(o.case.requirements),
        }
        if o.result == "fail":
            item["failed_requirements"] = list(o.case.requirements)
        cases.append(item)
    return {
        "runner_version": __version__,
        "suite": suite,
        "implementation": implementation,
        "cases": cases,
        "summary": summary(listed),
    }
