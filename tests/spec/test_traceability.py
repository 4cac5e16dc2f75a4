"""Requirement ids and the traceability table (spec/conformance.md §6)."""

from __future__ import annotations

from pathlib import Path

from p2pos.conformance.registry import Case
from p2pos.conformance.trace_reasons import UNTESTABLE
from p2pos.conformance.traceability import BEGIN, END, problems, requirements, table, traced_cases

SPEC = Path(__file__).resolve().parents[2] / "spec"


def test_every_requirement_is_tested_or_says_why_not() -> None:
    assert problems(traced_cases()) == []
    assert len(requirements()) >= 9  # framing.md's, at least


def test_the_table_in_the_spec_is_the_generated_one() -> None:
    text = (SPEC / "conformance.md").read_text(encoding="utf-8")
    kept = text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n")
    assert kept == table(traced_cases()).strip("\n"), "regenerate the table with: python tools/spec_tables.py"


def _noop(iut: object) -> None:
    return None


def test_the_check_finds_unmapped_unknown_duplicated_and_misplaced_ids(tmp_path: Path) -> None:
    (tmp_path / "framing.md").write_text("**[FRM-1.1]** one. **[FRM-1.2]** two. **[FRM-1.1]** again.\n")
    (tmp_path / "record.md").write_text("**[FRM-9.1]** in the wrong document.\n")
    cases = [Case("x/1", "framing.md §1", "t", _noop, ("FRM-1.1", "FRM-7.7"))]
    found = problems(cases, tmp_path)
    assert "FRM-1.1 is defined twice (framing.md and framing.md)" in found
    assert "FRM-9.1 in record.md: ids there start with RCD-" in found
    assert "case x/1 cites FRM-7.7, which no spec document defines" in found
    assert any(p.startswith("FRM-1.2 (framing.md) is tested by no case") for p in found)
    for rid in UNTESTABLE:  # none of them is defined in this small spec
        assert f"UNTESTABLE lists {rid}, which no spec document defines" in found
