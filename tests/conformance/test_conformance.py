"""The conformance suite (spec/conformance.md) passes against this implementation, and can fail.

Everything runs through the command line, ``python -m conformance`` from the
repository root, exactly as CI and other implementations use it.  Broken IUTs
come from the adapter's test hooks (``P2POS_IMPL_BUG``, ``P2POS_IMPL_UNSUPPORTED``)
and from one-line stand-ins.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from suite_helpers import run_conformance

REPO_ROOT = Path(__file__).resolve().parents[2]
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed, (\d+) warned, (\d+) unsupported$", re.MULTILINE)


def run_suite(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, dict[str, Any]]:
    """Run the suite; returns (exit status, stdout, the --json report)."""
    proc, report = run_conformance(tmp_path / "report.json", *args, env=env)
    return proc.returncode, proc.stdout, report


def results(report: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["result"] for c in report["cases"]}


def listed_ids() -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "conformance", "--list"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]


def test_every_case_passes_against_this_implementation(tmp_path: Path) -> None:
    status, out, report = run_suite(tmp_path)
    failures = [c for c in report["cases"] if c["result"] != "pass"]
    assert not failures, json.dumps(failures, indent=2) + out
    assert status == 0
    total = len(report["cases"])
    assert total >= 100
    assert report["summary"] == {"total": total, "passed": total, "failed": 0, "warned": 0, "unsupported": 0}
    assert report["strict"] is False
    match = SUMMARY.search(out)
    assert match is not None and match.groups() == (str(total), "0", "0", "0")
    ids = [c["id"] for c in report["cases"]]
    assert ids == listed_ids()
    assert len(set(ids)) == len(ids)
    for case in report["cases"]:
        assert re.fullmatch(r"[a-z]+\.md( §[0-9.]+)?", case["section"]), case
        assert case["duration"] >= 0
        assert "failed_requirements" not in case
    cited = {c["id"]: c["requirements"] for c in report["cases"]}
    assert {"FRM-1.1", "FRM-2.1", "FRM-3.2", "FRM-3.6"} <= set(cited["frame/1"])
    # Every run through the seeded link names its seed, and only those.
    seeded = {c["id"]: c["seed"] for c in report["cases"] if "seed" in c}
    assert seeded.get("ch/loss/2") == 20261204
    assert all(cid.startswith("ch/") for cid in seeded)
    assert "conformance.impl" in report["implementation"]


def test_a_wrong_sas_fails_the_sas_cases(tmp_path: Path) -> None:
    status, out, report = run_suite(tmp_path, "-k", "hs/", env={"P2POS_IMPL_BUG": "flip-sas"})
    assert status == 1
    outcome = results(report)
    sas_cases = ("hs/sas/1", "hs/sas/2", "hs/sas/3", "hs/sas/4", "hs/xx/3", "hs/xx/4", "hs/ik/8", "hs/ik/9")
    for case_id in sas_cases:
        assert outcome[case_id] == "fail", case_id
    for case_id in ("hs/xx/1", "hs/sas/5", "hs/sas/8", "hs/amp/4"):  # no SAS is shown in these
        assert outcome[case_id] == "pass", case_id
    assert report["summary"]["failed"] == len(sas_cases)
    assert "FAIL hs/sas/1" in out and "SAS" in out
    for entry in report["cases"]:  # a failure names the requirements it breaks
        assert entry.get("failed_requirements", []) == (entry["requirements"] if entry["result"] == "fail" else [])


def test_an_iut_that_supports_nothing_is_all_unsupported(tmp_path: Path) -> None:
    impl = shlex.join([sys.executable, "-c", "raise SystemExit(127)"])
    status, out, report = run_suite(tmp_path, "--impl", impl)
    total = len(report["cases"])
    assert total >= 100
    assert set(results(report).values()) == {"unsupported"}
    assert status == 0
    assert f"0 passed, 0 failed, 0 warned, {total} unsupported" in out
    assert report["implementation"] == impl


def test_an_iut_that_claims_every_case_fails_the_compliance_pre_check(tmp_path: Path) -> None:
    """spec/conformance.md §1: under a random case id an IUT must exit 127, or its
    "unsupported" answers would mean nothing; the runner checks that before any case."""
    claims_all = "import sys\nfor line in sys.stdin: print('{\"ok\": true}', flush=True)"
    impl = shlex.join([sys.executable, "-c", claims_all])
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "conformance", "--json", str(report), "-k", "id/sig/1", "--impl", impl],
        check=False,
        cwd=REPO_ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("P2POS_")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "compliance pre-check failed" in proc.stderr and "precheck/" in proc.stderr
    assert not report.exists()


def test_the_report_names_the_runner_version(tmp_path: Path) -> None:
    from p2pos.conformance import __version__

    _, _, report = run_suite(tmp_path, "-k", "id/peerid/1")
    assert report["runner_version"] == __version__


def test_unsupported_areas_are_reported_as_such(tmp_path: Path) -> None:
    status, _, report = run_suite(tmp_path, "-k", "frame/", env={"P2POS_IMPL_UNSUPPORTED": "frame/5,frame/6"})
    assert status == 0
    outcome = results(report)
    assert outcome.pop("frame/5") == outcome.pop("frame/6") == "unsupported"
    assert outcome and set(outcome.values()) == {"pass"}


def test_a_hanging_iut_fails_on_the_timeout(tmp_path: Path) -> None:
    status, _, report = run_suite(tmp_path, "-k", "id/peerid/1", "--timeout", "0.5", env={"P2POS_IMPL_BUG": "hang"})
    assert status == 1
    assert results(report) == {"id/peerid/1": "fail"}
    assert "timeout" in report["cases"][0]["detail"]


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("import sys; sys.stdin.readline(); print('not json', flush=True); sys.stdin.read()", "not JSON"),
        ("import sys; sys.stderr.write('boom\\n'); sys.stdin.readline(); raise SystemExit(3)", "status 3"),
        ("import sys; sys.stdin.readline(); print('{\"ok\": false}', flush=True); sys.stdin.read()", "failed"),
    ],
)
def test_a_misbehaving_iut_fails(tmp_path: Path, script: str, expected: str) -> None:
    impl = shlex.join([sys.executable, "-c", script])
    # (--no-precheck: these stand-ins would fail the compliance pre-check before any case ran)
    status, out, report = run_suite(tmp_path, "-k", "id/sig/4", "--impl", impl, "--no-precheck")
    assert status == 1
    assert results(report) == {"id/sig/4": "fail"}
    assert expected in report["cases"][0]["detail"]
    if "boom" in script:
        assert "boom" in out  # the IUT's stderr is shown for failures


def test_an_iut_that_drops_other_protocols_fails_the_demux_cases(tmp_path: Path) -> None:
    # spec/session.md §4.1: STUN, TURN, DTLS, QUIC... must be passed on, not dropped as bad p2pos.
    status, out, report = run_suite(tmp_path, "-k", "ep/demux/", env={"P2POS_IMPL_BUG": "drop-foreign"})
    assert status == 1
    outcome = results(report)
    assert outcome.pop("ep/demux/5") == "pass"  # an unassigned type in 4-15 is dropped either way
    for case_id in ("ep/demux/7", "ep/demux/8", "ep/demux/9"):  # p2pos datagrams too short or for no session
        assert outcome.pop(case_id) == "pass"
    assert len(outcome) >= 5 and set(outcome.values()) == {"fail"}
    assert "FAIL ep/demux/1" in out and "foreign_datagram" in out


def test_an_iut_without_an_endpoint_reports_those_cases_unsupported(tmp_path: Path) -> None:
    status, _, report = run_suite(tmp_path, "-k", "hs/", env={"P2POS_IMPL_UNSUPPORTED": "hs/replay/"})
    assert status == 0
    outcome = results(report)
    assert outcome.pop("hs/replay/1") == outcome.pop("hs/replay/2") == "unsupported"
    assert len(outcome) >= 60 and set(outcome.values()) == {"pass"}
    status, _, report = run_suite(tmp_path, "-k", "ep/", env={"P2POS_IMPL_UNSUPPORTED": "ep/"})
    assert status == 0
    assert len(results(report)) >= 6 and set(results(report).values()) == {"unsupported"}


def _spec_sections() -> tuple[str, str]:
    """The case table of spec/conformance.md §4 and its retired-ids table (§4.1)."""
    spec = (REPO_ROOT / "spec" / "conformance.md").read_text(encoding="utf-8")
    cases, retired = spec.split("\n## §4 Cases", 1)[1].split("\n### §4.1 Retired ids", 1)
    return cases, retired.split("\n## ", 1)[0].split("\n### ", 1)[0]


def test_the_spec_lists_every_case() -> None:
    cases, _ = _spec_sections()
    rows = [line for line in cases.splitlines() if line.startswith("| `")]
    proc = subprocess.run(
        [sys.executable, "-m", "conformance", "--list", "--markdown"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert rows == proc.stdout.splitlines(), "regenerate the table with: python tools/spec_tables.py"
    assert [row.split("`")[1] for row in rows] == listed_ids()


def test_the_spec_tables_tool_makes_both_tables_anew() -> None:
    """tools/spec_tables.py rebuilds §4's case rows and §6's traceability from the registry: given
    the document with a case row gone and a traceability row changed, it gives back the document."""
    loader = importlib.util.spec_from_file_location("spec_tables", REPO_ROOT / "tools" / "spec_tables.py")
    assert loader is not None and loader.loader is not None
    tool = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(tool)
    spec = (REPO_ROOT / "spec" / "conformance.md").read_text(encoding="utf-8")
    row = next(line for line in spec.splitlines() if line.startswith("| `ch/bbr/29` |"))
    trace = next(line for line in spec.splitlines() if line.startswith("| REC-5.6.2.7 |"))
    stale = spec.replace(row + "\n", "", 1).replace(trace, "| REC-5.6.2.7 | MUST | recovery.md | pending |", 1)
    assert stale != spec
    assert tool.regenerated(stale) == spec


def test_an_unknown_filter_is_an_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "conformance", "-k", "no-such-case"],
        check=False,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "no-such-case" in proc.stderr


def test_retired_ids_are_listed_and_never_reused() -> None:
    _, retired = _spec_sections()
    listed = {line.split("`")[1] for line in retired.splitlines() if line.startswith("| `")}
    assert len(listed) >= 3
    assert not listed & set(listed_ids())
    # The registry knows the same ids and refuses to register any of them again.
    script = (
        "import sys\n"
        "from conformance.registry import RETIRED, case\n"
        "for case_id in sorted(RETIRED):\n"
        "    try:\n"
        "        case(case_id, section='handshake.md §3', title='reuse')\n"
        "    except ValueError as exc:\n"
        "        print(case_id, 'retired' in str(exc))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert proc.stdout.splitlines() == [f"{case_id} True" for case_id in sorted(listed)]


def test_an_iut_command_that_cannot_start_is_one_clear_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "conformance", "--impl", str(tmp_path / "no-such-adapter"), "-k", "id/peerid/1"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("cannot start the IUT") and "Traceback" not in proc.stderr, proc.stderr
