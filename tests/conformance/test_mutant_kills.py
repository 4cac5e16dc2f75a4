"""The cases written for the mutation run's survivors kill them (conformance/MUTATION.md).

Each row of a tests/conformance/kills_*.py file names a case and a mutant of the core as a
text replacement in one module (the driver's mutant id alongside); the test runs the case
against this implementation's adapter on a copy of the pure-Python core carrying that mutant
and checks that the case fails (or warns, for a case whose requirements are all SHOULD), so
that a case cannot stop seeing what it was written for without CI noticing.
"""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest
import suite_helpers

from p2pos.conformance.registry import all_cases

#: Every test here runs the pure-Python core, whatever core this run uses (a broken core is a
#: patched or mutated pure one): the compiled pass of `make test` leaves them out.
pytestmark = pytest.mark.pure_core


KILL_FILES = sorted(Path(__file__).parent.glob("kills_*.py"))


def _rows() -> list[Any]:
    rows = []
    for path in KILL_FILES:
        for case_id, relpath, old, new, mutant_id in runpy.run_path(str(path))["KILLS"]:
            rows.append(pytest.param(case_id, relpath, old, new, mutant_id, id=f"{case_id}:{mutant_id}"))
    return rows


ROWS = _rows()


def test_every_row_names_a_case_and_its_module() -> None:
    known = {c.id for c in all_cases()}
    for row in ROWS:
        case_id, relpath, old, new, mutant_id = row.values
        assert case_id in known, case_id
        assert mutant_id.startswith(relpath + ":core/"), (mutant_id, relpath)
        assert old != new, mutant_id


@pytest.mark.parametrize(("case_id", "relpath", "old", "new", "mutant_id"), ROWS)
def test_the_case_kills_its_mutant(
    tmp_path: Path, case_id: str, relpath: str, old: str, new: str, mutant_id: str
) -> None:
    suite_helpers.assert_case_kills(tmp_path, case_id, relpath, old, new)
