"""The mutation driver's pieces (conformance/mutation.py, conformance/MUTATION.md).

The driver itself runs on demand (``make mutation``); these tests check what it relies on:
the adapter's ``reset`` command, a long-lived IUT giving the results of one process per case,
the lines a mutant changed, and the cases chosen for them from a coverage map.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from p2pos.conformance import mutation as m
from p2pos.conformance.checks import Unsupported
from p2pos.conformance.iut import Iut, LongLived
from p2pos.conformance.registry import all_cases
from p2pos.conformance.runner import run_case

COMMAND = [sys.executable, "-m", "p2pos.conformance.impl"]


def test_reset_forgets_the_state() -> None:
    iut = Iut(COMMAND, "frame/x/1", 10.0)
    try:
        assert iut.ok("frame_feed", data="0003")["frames"] == []
        assert iut.ok("frame_eof")["error"] == "FRAMING_ERROR"  # a truncated frame is an error
        assert iut.ok("frame_feed", data="0003")["frames"] == []
        assert iut.reset("frame/x/2", 10.0)
        assert iut.case_id == "frame/x/2"
        assert iut.transcript == []
        assert iut.ok("frame_eof")["error"] is None  # the partial frame went with the reset
    finally:
        iut.finish()


def test_reset_to_an_unsupported_case_exits_127() -> None:
    pool = LongLived(COMMAND)
    iut = pool.acquire("frame/x/1", 10.0)
    assert iut.ok("frame_encode", data="61")["frame"] == "000161"
    pool.release(iut, keep=True)
    other = pool.acquire("zz/unknown/1", 10.0)  # reset fails: the process exits 127, a new one starts
    assert other is not iut
    assert not iut.alive()
    with pytest.raises(Unsupported):
        other.call("frame_encode", data="61")
    pool.release(other, keep=False)
    pool.close()
    assert pool.started == 2 and pool.reused == 0


def test_an_iut_without_reset_gets_a_process_per_case() -> None:
    # The IUT answers UNKNOWN_COMMAND (a stand-in: the adapter with `reset` taken for a command).
    stub = [sys.executable, "-c", STUB]
    pool = LongLived(stub)
    first = pool.acquire("a/b/1", 5.0)
    assert first.ok("ping")["n"] == 1
    pool.release(first, keep=True)
    second = pool.acquire("a/b/2", 5.0)
    assert second is not first
    assert second.ok("ping")["n"] == 1
    pool.release(second, keep=True)
    pool.close()
    assert pool.started == 2 and pool.reused == 0


STUB = """
import json, sys
n = 0
for line in sys.stdin:
    cmd = json.loads(line)["cmd"]
    if cmd == "quit":
        print(json.dumps({"ok": True}), flush=True)
        break
    if cmd != "ping":
        print(json.dumps({"ok": False, "error": "UNKNOWN_COMMAND"}), flush=True)
        continue
    n += 1
    print(json.dumps({"ok": True, "n": n}), flush=True)
"""

#: A handful of cases across the areas, some of which leave state behind (sessions, connections).
SAMPLE = ("id/peerid/1", "hs/xx/1", "hs/ik/11", "rec/replay/4", "frame/ch/1", "ch/open/2", "ch/stream/1", "ep/demux/1")


def test_long_lived_gives_the_results_of_one_process_per_case() -> None:
    cases = [c for c in all_cases() if c.id in SAMPLE]
    assert len(cases) == len(SAMPLE)
    alone = [run_case(c, COMMAND, 10.0).result for c in cases]
    together = m.run_long_lived(cases, COMMAND)
    assert [o.result for o in together] == alone == ["pass"] * len(cases)


def test_long_lived_reuses_one_process_and_stops_at_a_failure() -> None:
    cases = [c for c in all_cases() if c.id in SAMPLE]
    pool = LongLived(COMMAND)
    outcomes = [m.run_one(c, pool, 10.0) for c in cases]
    pool.close()
    assert [o.result for o in outcomes] == ["pass"] * len(cases)
    assert pool.started == 1 and pool.reused == len(cases) - 1
    # A failure ends the run when asked (the mutant is killed: the rest need not run).
    broken = {"P2POS_IMPL_BUG": "flip-sas"}
    hs = [c for c in all_cases() if c.id in ("hs/xx/1", "hs/sas/1", "hs/sas/2")]
    outcomes = m.run_long_lived(hs, COMMAND, env=broken, stop_at_failure=True)
    assert [o.result for o in outcomes] == ["pass", "fail"]


def test_changed_lines() -> None:
    original = "a = 1\nb = 2\nc = 3\n"
    assert m.changed_lines(original, original) == set()
    assert m.changed_lines(original, "a = 1\nb = 3\nc = 3\n") == {2}
    assert m.changed_lines(original, "a = 1\nc = 3\n") == {2}
    assert m.changed_lines(original, "a = 1\nb = 2\nx = 0\nc = 3\n") == {2, 3}  # an insertion: both sides
    assert m.changed_lines(original, "a = 1\nb = 2\nc = 3") == set()  # the final newline is not a line


def test_statement_lines_cover_the_whole_statement() -> None:
    source = (
        "def f(x):\n"  # 1
        "    y = (x +\n"  # 2
        "         1)\n"  # 3
        "    if (y >\n"  # 4
        "            2):\n"  # 5
        "        return y\n"  # 6
        "    return 0\n"  # 7
    )
    assert m.statement_lines(source, [3]) == {2, 3}  # the statement, not the function around it
    assert m.statement_lines(source, [5]) == {4, 5}  # a compound statement: its header only
    assert m.statement_lines(source, [6]) == {6}
    assert m.statement_lines(source, [1]) == {1}


def test_annotation_only_mutants_are_equivalent() -> None:
    head = "from __future__ import annotations\n"
    original = head + "def f(x: int | None) -> int | None:\n    return x | 1\n"
    assert m.annotation_only(original, original.replace("x: int | None", "x: int & None"))
    assert m.annotation_only(original, original.replace("-> int | None", "-> int ^ None"))
    assert not m.annotation_only(original, original.replace("x | 1", "x & 1"))
    evaluated = original.removeprefix(head)  # annotations evaluated at definition: a real change
    assert not m.annotation_only(evaluated, evaluated.replace("x: int | None", "x: int & None"))


def _info(cid: str, duration: float, lines: dict[str, set[int]], result: str = "pass") -> m.CaseInfo:
    return m.CaseInfo(cid, result, duration, {f: frozenset(ls) for f, ls in lines.items()})


def test_select_cases_from_a_coverage_map() -> None:
    infos = [
        _info("a/x/1", 0.5, {"session/record.py": {10, 11}}),
        _info("a/x/2", 0.1, {"session/record.py": {11, 12}, "session/replay.py": {5}}),
        _info("a/x/3", 0.2, {"session/replay.py": {10}}),
        _info("a/x/4", 0.01, {"session/record.py": {11}}, result="fail"),  # fails unmutated: never chosen
    ]
    chosen = m.select_cases(infos, "session/record.py", {11})
    assert [i.id for i in chosen] == ["a/x/2", "a/x/1"]  # the quickest first
    assert [i.id for i in m.select_cases(infos, "session/record.py", {10})] == ["a/x/1"]
    assert m.select_cases(infos, "session/record.py", {99}) == []
    assert [i.id for i in m.select_cases(infos, "session/replay.py", {5, 10})] == ["a/x/2", "a/x/3"]


def test_groups_name_existing_modules() -> None:
    for paths in m.GROUPS.values():
        for path in paths:
            assert (m.CORE / path).is_file(), path
    assert set(m.DEFAULT_GROUPS) <= set(m.GROUPS)
    assert m.group_of("session/replay.py") == "replay"
    assert m.group_of("identity/crypto.py") == "other"


def test_mutation_is_not_imported_by_the_suite() -> None:
    import subprocess

    code = (
        "import sys; from p2pos.conformance import registry as r; r.all_cases(); "
        "print(any(name.endswith('conformance.mutation') for name in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_triage_tables_parse() -> None:
    rows = m.read_all_triage()
    assert rows, "conformance/MUTATION.md has no triage rows"
    for doc in m.triage_docs():
        assert m.read_triage(doc.read_text()) or doc == m.TRIAGE_DOC, f"{doc} has no triage rows"
    for mutant_id, (verdict, why) in rows.items():
        module, _, rest = mutant_id.partition(":core/")
        assert (m.CORE / module).is_file() and rest, mutant_id
        assert verdict in (*m.EXCUSED, "new case"), (mutant_id, verdict)
        assert why, mutant_id
    assert m.read_triage("| `a.py:core/X:1` | equivalent | - | same |\n| mutant | verdict |") == {
        "a.py:core/X:1": ("equivalent", "same")
    }


def test_retry_keeps_only_verdicts_new_cases_cannot_change(tmp_path: Path) -> None:
    work = m.Work(tmp_path)
    verdicts = [m.KILLED, m.SURVIVED, m.NOT_RUN, m.EQUIVALENT, m.INCOMPETENT, m.NO_MUTATION]
    work.results.write_text("".join(f'{{"id": "x:{v}", "verdict": "{v}"}}\n' for v in verdicts))
    assert m.retry(work, triaged_too=True) == 2
    kept = [line for line in work.results.read_text().splitlines() if line]
    assert [line.split('"verdict": ')[1] for line in kept] == [
        f'"{v}"}}' for v in (m.KILLED, m.EQUIVALENT, m.INCOMPETENT, m.NO_MUTATION)
    ]


def test_retry_keeps_the_survivors_the_triage_excuses(tmp_path: Path) -> None:
    work = m.Work(tmp_path)
    excused = "session/record.py:core/ReplaceBinaryOperator_Mul_Div:0"  # equivalent in MUTATION.md
    assert m.read_all_triage()[excused][0] == "equivalent"
    work.results.write_text(f'{{"id": "{excused}", "verdict": "survived"}}\n{{"id": "x:1", "verdict": "survived"}}\n')
    assert m.retry(work) == 1
    assert excused in work.results.read_text() and "x:1" not in work.results.read_text()
