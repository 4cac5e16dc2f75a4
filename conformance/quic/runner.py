"""Runs the QUIC cases against one IUT process: one result a case, the report, the JSON.

A case passes when its function returns and fails when it raises (``conformance.suites``); a
case of the shared socket (spec/quic.md §5.1) is skipped when the IUT has none.
The runner starts the IUT once for the run and starts it again after a case if it has exited
(a crash fails that case, not the run).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from ..suites import Outcome, attempt, print_line, report, summary
from ..suites import to_json as suite_json
from .control import Iut
from .registry import QuicCase

__all__ = ["Outcome", "report", "run", "run_case", "summary", "to_json", "write_json"]


def run_case(c: QuicCase, iut: Iut) -> Outcome[QuicCase]:
    if c.shared and iut.shared_port is None:
        return Outcome(
            c, "skip", "the IUT has no shared socket (no shared_port in its ready line, spec/quic.md §7)", 0.0
        )
    outcome = attempt(c, lambda: c.func(iut))
    iut.peer = None
    if outcome.result == "pass" and not iut.alive:
        detail = f"the IUT exited (status {iut.process.poll()}) during the case"
        return Outcome(c, "fail", detail, outcome.duration)
    return outcome


def run(cases: Iterable[QuicCase], command: Sequence[str], out: TextIO) -> list[Outcome[QuicCase]]:
    """Every case in order against one IUT process (restarted if it exits), one line each on ``out``."""
    outcomes: list[Outcome[QuicCase]] = []
    iut: Iut | None = None
    try:
        for c in cases:
            if iut is None or not iut.alive:
                if iut is not None:
                    iut.stop()
                iut = Iut.start(command)
            outcome = run_case(c, iut)
            outcomes.append(outcome)
            print_line(outcome, out)
    finally:
        if iut is not None:
            iut.stop()
    return outcomes


def to_json(outcomes: list[Outcome[QuicCase]], command: Sequence[str]) -> dict[str, Any]:
    return suite_json(outcomes, suite="quic", document="quic.md", implementation=" ".join(command))


def write_json(path: Path, outcomes: list[Outcome[QuicCase]], command: Sequence[str]) -> None:
    path.write_text(json.dumps(to_json(outcomes, command), indent=1) + "\n")
