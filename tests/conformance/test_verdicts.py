"""Strict and non-strict verdicts (spec/conformance.md §1, §6): a failed case that tests only
SHOULD or MAY rules is a warning unless the run is strict; the level of a rule is read from
the keyword that follows its tag in spec/."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pos.conformance import runner, traceability
from p2pos.conformance.checks import CaseFailed
from p2pos.conformance.registry import Case


def _failing(iut: object) -> str | None:
    raise CaseFailed("broken on purpose")


LEVELS = {"X-1.1": "MUST", "X-1.2": "SHOULD", "X-1.3": "MAY"}


@pytest.mark.parametrize(
    ("requirements", "strict", "expected"),
    [
        (("X-1.2",), False, runner.WARN),
        (("X-1.2", "X-1.3"), False, runner.WARN),
        (("X-1.2",), True, runner.FAIL),
        (("X-1.1", "X-1.2"), False, runner.FAIL),
        ((), False, runner.FAIL),  # a case citing nothing counts as testing a MUST
        (("X-9.9",), False, runner.FAIL),  # an unknown id too
    ],
)
def test_verdict(requirements: tuple[str, ...], strict: bool, expected: str) -> None:
    case = Case("x/1", "x.md §1", "t", _failing, requirements)
    assert runner.verdict(case, strict, LEVELS) == expected


def test_a_warned_case_reports_its_requirements_and_does_not_fail_the_run(tmp_path: Path) -> None:
    import sys

    case = Case("x/1", "x.md §1", "t", _failing, ("X-1.2",))
    command = [sys.executable, "-m", "p2pos.conformance.impl"]
    warned = runner.run_case(case, command, 10.0, strict=False, level_of=LEVELS)
    failed = runner.run_case(case, command, 10.0, strict=True, level_of=LEVELS)
    assert (warned.result, failed.result) == (runner.WARN, runner.FAIL)
    assert warned.to_json()["failed_requirements"] == ["X-1.2"]
    assert runner.summary([warned, failed]) == {"total": 2, "passed": 0, "failed": 1, "warned": 1, "unsupported": 0}
    assert runner.summary_line([warned]) == "0 passed, 0 failed, 1 warned, 0 unsupported"


def _spec(tmp_path: Path, text: str) -> Path:
    (tmp_path / "record.md").write_text(text, encoding="utf-8")
    return tmp_path


def test_the_level_is_the_first_keyword_after_the_tag(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        "**[RCD-1.1]** A sender SHOULD pad, and MUST NOT lie. **[RCD-1.2]** It MAY wait.\n\n"
        "**[RCD-1.3]** A receiver ignores it.\n\nNo keyword MUST count here.\n",
    )
    assert traceability.levels(spec) == {"RCD-1.1": "SHOULD", "RCD-1.2": "MAY", "RCD-1.3": "MUST"}
    assert any("RCD-1.3" in p and "no BCP 14 keyword" in p for p in traceability.problems([], spec))


def test_a_list_item_takes_the_level_of_its_lead_in(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        "A receiver SHOULD drop a record:\n\n* **[RCD-2.1]** when it is late;\n* **[RCD-2.2]** when it MUST go.\n\n"
        "**[RCD-2.3]** A sender MUST NOT wait (listed:\n\n* **[RCD-2.4]** at all).\n",
    )
    assert traceability.levels(spec) == {
        "RCD-2.1": "SHOULD",
        "RCD-2.2": "MUST",
        "RCD-2.3": "MUST",
        "RCD-2.4": "MUST",
    }
