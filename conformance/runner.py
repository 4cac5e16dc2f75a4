"""Run cases against an IUT command and report pass / fail / warn / unsupported per case.

A failed case whose requirements (spec/conformance.md §6) are all of level SHOULD or MAY is a
``warn`` in the default, non-strict mode and a ``fail`` in strict mode (h2spec's idea): the
implementation departs from a recommendation, not from the protocol.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TextIO

from . import __version__, impaired
from .checks import CaseFailed, Unsupported
from .iut import Iut
from .registry import Case
from .traceability import levels

PASS, FAIL, WARN, UNSUPPORTED = "pass", "fail", "warn", "unsupported"


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one case."""

    id: str
    result: str
    section: str
    detail: str
    duration: float
    stderr: str = ""
    #: The requirement ids the case cites.
    requirements: tuple[str, ...] = ()
    #: The seeds of the impaired-network links the case ran through (spec/conformance.md §3.8).
    seeds: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "result": self.result,
            "section": self.section,
            "detail": self.detail,
            "duration": round(self.duration, 4),
            "requirements": list(self.requirements),
        }
        if self.result in (FAIL, WARN):
            out["failed_requirements"] = list(self.requirements)
        if self.seeds:
            out["seed"] = self.seeds[0] if len(self.seeds) == 1 else list(self.seeds)
        return out


def verdict(case: Case, strict: bool, level_of: dict[str, str]) -> str:
    """What a failure of ``case`` is: ``warn`` when not ``strict`` and every requirement it cites is
    a SHOULD or a MAY, else ``fail`` (a case citing none counts as testing a MUST)."""
    if strict or not case.requirements:
        return FAIL
    return WARN if all(level_of.get(rid, "MUST") != "MUST" for rid in case.requirements) else FAIL


def run_case(
    case: Case,
    command: Sequence[str],
    timeout: float,
    env: dict[str, str] | None = None,
    *,
    strict: bool = False,
    level_of: dict[str, str] | None = None,
) -> Result:
    """Start the IUT for ``case``, run it, and classify the outcome (``level_of``: requirement
    levels, read from spec/ when not given)."""
    start = time.monotonic()
    seeds = impaired.record_seeds()
    iut = Iut(command, case.id, timeout, env)
    stderr = ""
    try:
        detail = case.func(iut) or ""
        result = PASS
    except Unsupported as exc:
        result, detail = UNSUPPORTED, str(exc)
    except CaseFailed as exc:
        result, detail = FAIL, str(exc)
    except Exception as exc:  # a bug in the case or a wildly wrong answer: still a failure, never a crash
        result, detail = FAIL, f"{type(exc).__name__} in the case: {exc}"
    finally:
        iut.finish()
    if result == FAIL:
        result = verdict(case, strict, levels() if level_of is None else level_of)
        stderr = iut.stderr()
        if iut.transcript:
            detail += "\n  last exchanges:\n    " + "\n    ".join(line[:200] for line in iut.transcript[-4:])
    return Result(
        case.id,
        result,
        case.section,
        detail,
        time.monotonic() - start,
        stderr,
        case.requirements,
        tuple(seeds),
    )


def precheck(command: Sequence[str], timeout: float, env: dict[str, str] | None = None) -> str | None:
    """The compliance pre-check (spec/conformance.md §1): an IUT must exit 127 for a case id it does
    not know, or "unsupported" would mean nothing.  Runs it under a random id; None when it passes,
    else why not."""
    case_id = f"precheck/{secrets.token_hex(6)}"
    iut = Iut(command, case_id, timeout, env)
    try:
        answer = iut.call("peer_id", seed=bytes(32))
    except Unsupported:
        return None
    except CaseFailed as exc:
        return f"under the unknown case id {case_id!r} the IUT did not exit with status 127: {exc}"
    finally:
        iut.finish()
    return f"the IUT answered under the unknown case id {case_id!r} ({answer}) instead of exiting with status 127"


def run_cases(
    cases: Iterable[Case],
    command: Sequence[str],
    *,
    timeout: float,
    jobs: int = 1,
    env: dict[str, str] | None = None,
    strict: bool = False,
) -> list[Result]:
    """Run every case (``jobs`` at a time), returning results in case order."""
    cases = list(cases)
    level_of = levels()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(lambda c: run_case(c, command, timeout, env, strict=strict, level_of=level_of), cases))


def summary(results: Sequence[Result]) -> dict[str, int]:
    return {
        "total": len(results),
        "passed": sum(r.result == PASS for r in results),
        "failed": sum(r.result == FAIL for r in results),
        "warned": sum(r.result == WARN for r in results),
        "unsupported": sum(r.result == UNSUPPORTED for r in results),
    }


def summary_line(results: Sequence[Result]) -> str:
    counts = summary(results)
    return (
        f"{counts['passed']} passed, {counts['failed']} failed, {counts['warned']} warned,"
        f" {counts['unsupported']} unsupported"
    )


def write_table(results: Sequence[Result], out: TextIO) -> None:
    """A fixed-width table: id, result, spec section, first line of the detail; then failures in full."""
    width_id = max([len(r.id) for r in results] + [2])
    width_sec = max([len(r.section) for r in results] + [7])
    out.write(f"{'id':<{width_id}}  {'result':<11}  {'section':<{width_sec}}  detail\n")
    for r in results:
        first = r.detail.splitlines()[0] if r.detail else ""
        out.write(f"{r.id:<{width_id}}  {r.result:<11}  {r.section:<{width_sec}}  {first}\n")
    for r in results:
        if r.result in (FAIL, WARN):
            cited = f" [{', '.join(r.requirements)}]" if r.requirements else ""
            out.write(f"\n{r.result.upper()} {r.id} ({r.section}){cited}: {r.detail}\n")
            if r.stderr:
                out.write("  IUT stderr:\n" + "".join(f"    {line}\n" for line in r.stderr.splitlines()))


def write_json(path: str, implementation: str, results: Sequence[Result], *, strict: bool = False) -> None:
    report = {
        "runner_version": __version__,
        "implementation": implementation,
        "strict": strict,
        "cases": [r.to_json() for r in results],
        "summary": summary(results),
    }
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
        fh.write("\n")
