"""The QUIC carrier's conformance suite (conformance/quic, spec/quic.md §7) against the reference and broken IUTs.

The reference adapter (transports/quic.py) must pass every case; each deliberately broken
adapter (``reference_iut --bug``) must fail exactly the cases that check the rule it breaks,
among cases chosen around it (the others must still pass: the suite tells bugs apart).
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from p2pos.conformance.quic import cli
from p2pos.conformance.quic.registry import all_cases
from p2pos.conformance.quic.runner import run
from p2pos.conformance.quic.trace import problems, quic_ids


def test_the_reference_carrier_passes_every_case(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every case passes against transports/quic.py, and the JSON report says so."""
    report = tmp_path / "quic.json"
    assert cli.main(["--json", str(report)]) == 0, capsys.readouterr().out
    data = json.loads(report.read_text())
    assert data["suite"] == "quic"
    assert data["summary"] == {"total": len(all_cases()), "passed": len(all_cases()), "failed": 0, "skipped": 0}
    assert {c["id"] for c in data["cases"]} == {c.id for c in all_cases()}


BROKEN = {
    # bug: (cases run, cases that must fail)
    "peer-id": (
        ("quic/dial/1", "quic/dial/2", "quic/dial/3", "quic/dial/4", "quic/shared/3", "quic/shared/4"),
        {"quic/dial/3", "quic/shared/4"},
    ),
    "proof-key": (
        ("quic/listen/2", "quic/listen/6", "quic/listen/7", "quic/listen/8", "quic/listen/9", "quic/shared/5"),
        {"quic/listen/7", "quic/listen/8", "quic/shared/5"},
    ),
    "streams": (
        ("quic/listen/10", "quic/listen/11", "quic/listen/12", "quic/dial/12", "quic/dial/13"),
        {"quic/listen/10", "quic/listen/11", "quic/dial/12"},
    ),
    "no-endpoint": (("quic/listen/2", "quic/session/1"), {"quic/session/1"}),
    "shared-turn-range": (("quic/shared/1", "quic/shared/2"), {"quic/shared/2"}),
    "shared-dial-own-socket": (("quic/shared/3", "quic/shared/4", "quic/shared/6"), {"quic/shared/3"}),
    "punch-elsewhere": (("quic/shared/1", "quic/shared/6"), {"quic/shared/6"}),
}


@pytest.mark.parametrize("bug", sorted(BROKEN))
def test_a_broken_carrier_fails_the_cases_of_its_bug(bug: str) -> None:
    chosen, must_fail = BROKEN[bug]
    cases = [c for c in all_cases() if c.id in chosen]
    assert len(cases) == len(chosen)
    command = [sys.executable, "-m", "p2pos.conformance.quic.reference_iut", "--bug", bug]
    outcomes = run(cases, command, io.StringIO())
    failed = {o.case.id for o in outcomes if o.result == "fail"}
    assert failed == must_fail, [(o.case.id, o.result, o.detail) for o in outcomes]


def test_the_shared_socket_cases_are_skipped_for_an_iut_without_one() -> None:
    """[QUIC-5.1.1] an IUT whose ready line names no shared_port (spec/quic.md §7) has the quic/shared/ cases
    skipped, not failed; the other cases run."""
    script = (
        "import json, sys; print(json.dumps({'event': 'ready', 'port': 9, 'peer_id': 'x'}), flush=True); "
        "sys.stdin.readline()"
    )
    shared = [c for c in all_cases() if c.id.startswith("quic/shared/")]
    assert len(shared) == 6 and all(c.shared for c in shared)
    assert not any(c.shared for c in all_cases() if not c.id.startswith("quic/shared/"))
    outcomes = run(shared, [sys.executable, "-c", script], io.StringIO())
    assert [o.result for o in outcomes] == ["skip"] * len(shared)
    assert all("no shared socket" in o.detail for o in outcomes)


def test_an_iut_that_does_not_start_ends_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--impl", f"{sys.executable} -c pass", "-k", "quic/listen/1"]) == 2
    assert "did not print its ready line" in capsys.readouterr().err


def test_every_quic_id_is_tested_or_says_why_not(capsys: pytest.CaptureFixture[str]) -> None:
    """[CONF-6.4] for quic.md: each id has a case here, or a reason in trace_reasons."""
    assert problems(all_cases()) == []
    assert len(quic_ids()) >= 26
    assert cli.main(["--trace"]) == 0
    assert "| QUIC-3.2.4 | `quic/dial/3` |" in capsys.readouterr().out


def test_list_and_selection(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--list", "--markdown", "-k", "quic/dial/"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 13 and all(row.startswith("| `quic/dial/") for row in rows)
    assert cli.main(["-k", "no-such-case"]) == 2
