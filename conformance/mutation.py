"""Mutation testing of the conformance suite itself (conformance/MUTATION.md); run on demand.

``make mutation`` runs it; nothing of the suite imports this module.  It needs the mutation
virtualenv of the Makefile (``build/mutation/venv``: cosmic-ray, coverage and p2pos installed
from a wheel, not linked to the work tree) and runs in four steps, each resumable::

    python -m conformance.mutation prepare   # copy the core, map each case's coverage, baseline
    python -m conformance.mutation plan --modules record --sample 25 --seed 20261205
    python -m conformance.mutation run --budget 7200
    python -m conformance.mutation report    # per module: killed, survived, why

Only the implementation under test is mutated.  The runner, whose reference peer plays the
other side of every case, imports ``p2pos.proto`` from the virtualenv's wheel; the IUT
(``conformance.impl``) imports it from a copy of the core in ``WORK/iut`` put first on its
``PYTHONPATH``, and that copy is the one mutated, one file at a time.  The work tree is never
written to, so a mutant cannot reach the reference peer (nor another user of the tree).

cosmic-ray enumerates the mutants (``cosmic-ray init``) and writes each one (its operators,
``mutate_code``); this driver then finds the lines it changed by comparing the module with the
clean copy, picks the cases whose coverage touches them (a map made once, each case run under
``coverage``), and runs only those, in one long-lived IUT process reset between cases
(``conformance.iut.LongLived``), stopping at the first failure.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import importlib
import json
import os
import random
import runpy
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .checks import CaseFailed, Unsupported
from .iut import Iut, LongLived
from .registry import Case, all_cases


def _source_root() -> Path:
    """The source tree: this module's, or the current directory when it is imported from an
    installed copy (the compiled core's wheel, as `make test-compiled` does)."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "p2pos_proto").is_dir() else Path.cwd()


ROOT = _source_root()
CORE = ROOT / "p2pos_proto"
#: The wire-relevant modules (issue 10), by name; paths are relative to the core package.
GROUPS: dict[str, tuple[str, ...]] = {
    "handshake": ("handshake/handshake.py", "handshake/noise.py", "handshake/payload.py"),
    "session": ("session/session.py", "session/wire.py"),
    "record": ("session/record.py",),
    "replay": ("session/replay.py",),
    "frames": ("channels/frames.py",),
    "channels": (
        "channels/channel.py",
        "channels/connection.py",
        "channels/receiving.py",
        "channels/recvbuf.py",
        "channels/sendbuf.py",
        "channels/sending.py",
    ),
    "recovery": (
        "recovery/acks.py",
        "recovery/bbr.py",
        "recovery/congestion.py",
        "recovery/delivery.py",
        "recovery/pacing.py",
        "recovery/pmtu.py",
        "recovery/recovery.py",
        "recovery/rtt.py",
    ),
    "flow": ("channels/flow.py",),
    # Not in the list, available on request: stream framing (spec/framing.md).
    "framing": ("session/framing.py",),
}
#: The requirement prefixes (spec/conformance.md §6) of the documents each group implements: a
#: survivor's report lists the ids of these that the cases which ran it still found met.
PREFIXES: dict[str, tuple[str, ...]] = {
    "handshake": ("HS-",),
    "session": ("SES-", "ERR-"),
    "record": ("RCD-",),
    "replay": ("RCD-5.",),
    "frames": ("FRA-",),
    "channels": ("CH-", "FLOW-", "FRA-"),
    "recovery": ("REC-",),
    "flow": ("FLOW-",),
    "framing": ("FRM-",),
}
DEFAULT_GROUPS = ("handshake", "session", "record", "replay", "frames", "channels", "recovery", "flow")
DEFAULT_SEED = 20261205
CASE_TIMEOUT = 10.0
#: A case gets this many times its unmutated duration (at least MIN_TIMEOUT) before a hang kills.
TIMEOUT_FACTOR, MIN_TIMEOUT = 10.0, 3.0

KILLED, SURVIVED, NOT_RUN, EQUIVALENT, INCOMPETENT, NO_MUTATION = (
    "killed",
    "survived",
    "not-executed",
    "equivalent",
    "incompetent",
    "no-mutation",
)


def group_of(relpath: str) -> str:
    for name, paths in GROUPS.items():
        if relpath in paths:
            return name
    return "other"


# -- the pieces: changed lines, statements, case selection ---------------------------------


def changed_lines(original: str, mutated: str) -> set[int]:
    """The 1-based lines of ``original`` that ``mutated`` replaced or deleted (an insertion
    counts for the lines on both sides of it)."""
    a, b = original.splitlines(), mutated.splitlines()
    out: set[int] = set()
    for tag, i1, i2, _j1, _j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if i2 > i1:
            out.update(range(i1 + 1, i2 + 1))
        else:
            out.update(line for line in (i1, i1 + 1) if 1 <= line <= len(a))
    return out


def _spans(tree: ast.Module) -> list[tuple[int, int]]:
    """The line span of every statement; of a compound statement only its header (up to its body)."""
    spans = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.stmt):
            continue
        end = node.end_lineno or node.lineno
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
            end = body[0].lineno - 1
        spans.append((node.lineno, max(node.lineno, end)))
    return spans


def statement_lines(source: str, lines: Iterable[int]) -> set[int]:
    """Every line of the innermost statement (header) holding each of ``lines``, and the lines.

    Coverage records the lines Python reports while running a statement, which for a statement
    spread over several lines may be any of them: a case ran a changed line if it ran any line
    of its statement.
    """
    spans = _spans(ast.parse(source))
    out: set[int] = set()
    for line in lines:
        out.add(line)
        holding = [s for s in spans if s[0] <= line <= s[1]]
        if holding:
            first, last = min(holding, key=lambda s: s[1] - s[0])
            out.update(range(first, last + 1))
    return out


def _without_annotations(source: str) -> str:
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            node.returns = None
        elif isinstance(node, ast.arg):
            node.annotation = None
        elif isinstance(node, ast.AnnAssign):
            node.annotation = ast.Constant(None)
    return ast.dump(tree)


def annotation_only(original: str, mutated: str) -> bool:
    """Whether the mutant changes nothing but type annotations of a module that never evaluates
    them (``from __future__ import annotations``): an equivalent mutant, not worth a run."""
    if "from __future__ import annotations" not in original:
        return False
    return _without_annotations(original) == _without_annotations(mutated)


@dataclasses.dataclass(frozen=True, slots=True)
class CaseInfo:
    """A case as the coverage map saw it on the unmutated core."""

    id: str
    result: str  # pass / fail / unsupported, one process per case under coverage
    duration: float
    lines: dict[str, frozenset[int]]  # core-relative path -> executed lines
    fresh: bool = False  # fails when run after another case in one process: give it its own


def select_cases(infos: Iterable[CaseInfo], relpath: str, lines: Iterable[int]) -> list[CaseInfo]:
    """The passing cases that ran any of ``lines`` of ``relpath``, the quickest first."""
    wanted = set(lines)
    chosen = [i for i in infos if i.result == "pass" and not wanted.isdisjoint(i.lines.get(relpath, ()))]
    return sorted(chosen, key=lambda i: (i.duration, i.id))


# -- running cases in one long-lived IUT ---------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    id: str
    result: str  # pass / fail / unsupported
    detail: str
    duration: float


def run_one(case: Case, pool: LongLived, timeout: float, *, fresh: bool = False) -> Outcome:
    """Run ``case`` in the pool's process (reset first), classified as ``runner.run_case`` does."""
    start = time.monotonic()
    iut = Iut(pool.command, case.id, timeout, pool.env) if fresh else pool.acquire(case.id, timeout)
    result = "fail"
    try:
        detail = case.func(iut) or ""
        result = "pass"
    except Unsupported as exc:
        result, detail = "unsupported", str(exc)
    except CaseFailed as exc:
        detail = str(exc)
    except Exception as exc:  # a wildly wrong answer: a failure, as in the runner
        detail = f"{type(exc).__name__} in the case: {exc}"
    finally:
        if fresh:
            iut.finish()
        else:
            pool.release(iut, keep=result != "fail")
    return Outcome(case.id, result, detail, time.monotonic() - start)


def run_long_lived(
    cases: Sequence[Case],
    command: Sequence[str],
    *,
    timeout: Callable[[Case], float] | float = CASE_TIMEOUT,
    env: dict[str, str] | None = None,
    fresh: frozenset[str] = frozenset(),
    stop_at_failure: bool = False,
) -> list[Outcome]:
    """Run ``cases`` in order in one IUT process (a new one after a failure)."""
    pool = LongLived(command, env)
    outcomes = []
    try:
        for case in cases:
            limit = timeout(case) if callable(timeout) else timeout
            outcome = run_one(case, pool, limit, fresh=case.id in fresh)
            outcomes.append(outcome)
            if stop_at_failure and outcome.result == "fail":
                break
    finally:
        pool.close()
    return outcomes


# -- the work directory --------------------------------------------------------------------


class Work:
    """The files of a mutation run under one directory (default build/mutation)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.iut = root / "iut"  # PYTHONPATH of the IUT: iut/p2pos/proto is the mutable copy
        self.pristine = root / "pristine" / "p2pos" / "proto"
        self.coverage = root / "coverage.json"
        self.plan = root / "plan.json"
        self.results = root / "results.jsonl"
        self.report = root / "report.md"

    def iut_core(self, worker: int = 0) -> Path:
        return self.iut_root(worker) / "p2pos" / "proto"

    def iut_root(self, worker: int = 0) -> Path:
        """Worker 0 uses ``iut`` (also the coverage map's copy); others have their own copy."""
        return self.iut if worker == 0 else self.root / f"iut{worker}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "conformance.impl"]

    def env(self, worker: int = 0) -> dict[str, str]:
        return {"PYTHONPATH": str(self.iut_root(worker))}


def _check_venv() -> None:
    """The runner must not import the work tree's core (a strict editable install links it)."""
    import p2pos.proto

    here = Path(p2pos.proto.__file__).resolve()
    if here.is_relative_to(CORE.resolve()):
        raise SystemExit(
            f"p2pos.proto is imported from the work tree ({here}): run this with the mutation "
            "virtualenv's python (make mutation), whose p2pos is an installed wheel"
        )


def _load_map(work: Work) -> dict[str, CaseInfo]:
    raw = json.loads(work.coverage.read_text())
    return {
        cid: CaseInfo(
            cid,
            v["result"],
            v["duration"],
            {f: frozenset(ls) for f, ls in v["lines"].items()},
            v.get("fresh", False),
        )
        for cid, v in raw["cases"].items()
    }


def _copy_core(source: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"))


def prepare(work: Work, jobs: int, k: str | None, *, keep_pristine: bool = False) -> None:
    """Copy the core twice (pristine, and the IUT's), map each case's coverage, and run the
    baseline: every case in one long-lived IUT against the unmutated copy.

    ``keep_pristine``: keep the pristine copy of an earlier ``prepare`` (the code the plan's
    mutants were drawn from), so that new cases are mapped, and survivors run again, against
    that code even if the work tree's core has changed since."""
    _check_venv()
    work.root.mkdir(parents=True, exist_ok=True)
    if not (keep_pristine and work.pristine.is_dir()):
        _copy_core(CORE, work.pristine)
    _copy_core(work.pristine, work.iut_core())
    cov_mod = importlib.import_module("coverage")
    patterns = [part for part in (k or "").split(",") if part]
    cases = [c for c in all_cases() if not patterns or any(part in c.id for part in patterns)]
    covdir = Path(tempfile.mkdtemp(prefix="cov-", dir=work.root))
    include = f"{work.iut_core()}/*"

    def measure(index_case: tuple[int, Case]) -> tuple[str, dict[str, Any]]:
        index, case = index_case
        data_file = covdir / f"{index}.cov"
        command = [
            sys.executable, "-m", "coverage", "run", f"--data-file={data_file}", f"--include={include}",
            "-m", "conformance.impl",
        ]  # fmt: skip
        outcome = run_one(case, LongLived(command, work.env()), CASE_TIMEOUT, fresh=True)
        lines: dict[str, list[int]] = {}
        if data_file.exists():
            data = cov_mod.CoverageData(basename=str(data_file))
            data.read()
            for measured in data.measured_files():
                rel = Path(measured).resolve().relative_to(work.iut_core().resolve()).as_posix()
                lines[rel] = sorted(data.lines(measured) or ())
        print(f"coverage {case.id}: {outcome.result} {outcome.duration:.2f}s", flush=True)
        return case.id, {"result": outcome.result, "duration": outcome.duration, "lines": lines}

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        mapped = dict(pool.map(measure, enumerate(cases)))
    shutil.rmtree(covdir, ignore_errors=True)
    # The baseline: long-lived, in case order.  A case that passes in its own process but not
    # after others is run in its own process for every mutant (``fresh``).
    baseline = run_long_lived(cases, work.command(), env=work.env())
    for outcome in baseline:
        entry = mapped[outcome.id]
        entry["duration"] = outcome.duration if outcome.result == "pass" else entry["duration"]
        entry["fresh"] = entry["result"] == "pass" and outcome.result != "pass"
    work.coverage.write_text(json.dumps({"cases": mapped}, indent=1) + "\n")
    failing = sorted(cid for cid, v in mapped.items() if v["result"] != "pass")
    fresh = sorted(cid for cid, v in mapped.items() if v["fresh"])
    print(f"coverage map: {len(mapped)} cases, not passing unmutated (never selected): {failing or 'none'}")
    print(f"cases that need their own process: {fresh or 'none'}")


# -- plan: enumerate with cosmic-ray, then sample ------------------------------------------


def _enumerate(work: Work, relpaths: Sequence[str]) -> list[dict[str, Any]]:
    """Every mutant of the modules, as cosmic-ray's ``init`` lists them, in a stable order."""
    config = work.root / "cosmic-ray.toml"
    db = work.root / "session.sqlite"
    modules = ", ".join(json.dumps(str(work.pristine / p)) for p in relpaths)
    config.write_text(
        "[cosmic-ray]\n"
        f"module-path = [{modules}]\n"
        "timeout = 60.0\nexcluded-modules = []\n"
        'test-command = "false"  # unused: conformance.mutation runs the cases\n'
        '[cosmic-ray.distributor]\nname = "local"\n'
    )
    cosmic_ray = Path(sys.executable).parent / "cosmic-ray"
    subprocess.run([str(cosmic_ray), "init", str(config), str(db), "--force"], check=True)
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT module_path, operator_name, operator_args, occurrence, start_pos_row FROM mutation_specs"
        ).fetchall()
    mutants = [
        {
            "id": f"{Path(path).relative_to(work.pristine).as_posix()}:{op}:{occ}",
            "module": Path(path).relative_to(work.pristine).as_posix(),
            "operator": op,
            "args": _operator_args(args),
            "occurrence": occ,
            "line": row,
        }
        for path, op, args, occ, row in rows
    ]
    return sorted(mutants, key=lambda m: (m["module"], m["operator"], m["occurrence"]))


def _operator_args(stored: str | None) -> dict[str, Any]:
    """cosmic-ray stores an operator's arguments as JSON text in a JSON column: decode both."""
    value: Any = stored or "{}"
    while isinstance(value, str):
        value = json.loads(value)
    return dict(value)


def plan(work: Work, groups: Sequence[str], sample: int, seed: int, only: Sequence[str] = ()) -> None:
    """Enumerate the mutants of ``groups`` and put them in a random order drawn from ``seed``;
    keep the first ``sample`` (0: all).  Any first part of that order is a random sample, so a
    run that its budget stops early still reports on one (of the size it reached)."""
    relpaths = [p for g in groups for p in GROUPS[g]]
    everything = _enumerate(work, relpaths)
    chosen = list(everything)
    random.Random(seed).shuffle(chosen)
    if sample > 0:
        chosen = chosen[:sample]
    if only:  # named mutants (checking that a new case kills a survivor)
        chosen = [m for m in everything if m["id"] in only]
    population = {g: sum(group_of(m["module"]) == g for m in everything) for g in groups}
    work.plan.write_text(
        json.dumps(
            {"groups": list(groups), "seed": seed, "sample": len(chosen), "population": population, "mutants": chosen},
            indent=1,
        )
        + "\n"
    )
    work.results.unlink(missing_ok=True)
    (work.root / "runs.jsonl").unlink(missing_ok=True)
    print(f"plan: {len(chosen)} of {len(everything)} mutants (seed {seed}) in {', '.join(groups)}")


# -- run -----------------------------------------------------------------------------------


def _mutate(source: str, operator: str, args: dict[str, Any], occurrence: int) -> str | None:
    mutating = importlib.import_module("cosmic_ray.mutating")
    plugins = importlib.import_module("cosmic_ray.plugins")
    mutated = mutating.mutate_code(source, plugins.get_operator(operator)(**args), occurrence)
    return None if mutated is None else str(mutated)


class _Clock:
    """Gives every write of a module a new whole-second mtime, so that no stale .pyc of an
    earlier mutant of the same size can be taken for it."""

    def __init__(self) -> None:
        self.next = int(time.time()) + 10

    def write(self, path: Path, text: str) -> None:
        path.write_text(text)
        self.next += 2
        os.utime(path, (self.next, self.next))


def run_mutant(
    mutant: dict[str, Any],
    work: Work,
    infos: dict[str, CaseInfo],
    cases: dict[str, Case],
    *,
    clock: _Clock,
    worker: int = 0,
) -> dict[str, Any]:
    start = time.monotonic()
    relpath = mutant["module"]
    original = (work.pristine / relpath).read_text()
    record: dict[str, Any] = {"id": mutant["id"], "module": relpath, "group": group_of(relpath)}
    mutated = _mutate(original, mutant["operator"], mutant["args"], mutant["occurrence"])
    if mutated is None:
        return {**record, "verdict": NO_MUTATION, "seconds": time.monotonic() - start}
    changed = changed_lines(original, mutated)
    record["lines"] = sorted(changed)
    record["diff"] = [
        line
        for line in difflib.unified_diff(original.splitlines(), mutated.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    try:
        compile(mutated, relpath, "exec")
    except SyntaxError as exc:
        return {**record, "verdict": INCOMPETENT, "why": f"SyntaxError: {exc}", "seconds": time.monotonic() - start}
    if annotation_only(original, mutated):
        return {**record, "verdict": EQUIVALENT, "why": "changes type annotations only", "seconds": 0.0}
    selected = [i for i in select_cases(infos.values(), relpath, statement_lines(original, changed)) if i.id in cases]
    record["selected"] = len(selected)
    if not selected:
        return {**record, "verdict": NOT_RUN, "why": "no case executes these lines", "seconds": 0.0}
    target = work.iut_core(worker) / relpath
    clock.write(target, mutated)
    fresh = frozenset(i.id for i in selected if i.fresh)
    remaining = [cases[i.id] for i in selected]
    outcomes: list[Outcome] = []
    try:
        while remaining:
            batch = run_long_lived(
                remaining,
                work.command(),
                timeout=lambda c: min(CASE_TIMEOUT, max(MIN_TIMEOUT, TIMEOUT_FACTOR * infos[c.id].duration)),
                env=work.env(worker),
                fresh=fresh,
                stop_at_failure=True,
            )
            outcomes += batch
            last = batch[-1]
            if last.result != "fail" or not last.detail.startswith("timeout:"):
                break
            # A hang, or only a loaded machine: once more in a process of its own, with the full deadline.
            outcomes[-1] = run_long_lived([cases[last.id]], work.command(), env=work.env(worker), fresh=fresh)[0]
            if outcomes[-1].result == "fail":
                break
            remaining = remaining[len(batch) :]
    finally:
        clock.write(target, original)
    record["ran"] = len(outcomes)
    record["seconds"] = time.monotonic() - start
    failed = [o for o in outcomes if o.result == "fail"]
    if failed:
        return {**record, "verdict": KILLED, "by": failed[0].id, "why": failed[0].detail.splitlines()[0][:200]}
    passed = [o.id for o in outcomes if o.result == "pass"]
    requirements = sorted({r for cid in passed for r in cases[cid].requirements})
    return {**record, "verdict": SURVIVED, "cases": passed, "requirements": requirements}


def _cpu() -> float:
    """CPU seconds of this process (the runner's side) and its ended children (the IUTs)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run(work: Work, budget: float, jobs: int = 1) -> None:
    """Run the plan's mutants not yet in the results, in the plan's order, ``jobs`` at a time
    (each worker mutates its own copy of the core); stop starting new ones after ``budget`` s."""
    _check_venv()
    infos = _load_map(work)
    cases = {c.id: c for c in all_cases()}
    mutants = json.loads(work.plan.read_text())["mutants"]
    done = set()
    if work.results.exists():
        done = {json.loads(line)["id"] for line in work.results.read_text().splitlines() if line.strip()}
    for worker in range(max(1, jobs)):  # fresh copies: an interrupted run may have left a mutant behind
        if worker or not work.iut_core().exists():
            _copy_core(work.pristine, work.iut_core(worker))
        for relpath in {m["module"] for m in mutants}:
            if (work.iut_core(worker) / relpath).read_text() != (work.pristine / relpath).read_text():
                shutil.copyfile(work.pristine / relpath, work.iut_core(worker) / relpath)
    todo = iter([m for m in mutants if m["id"] not in done])
    total = len(mutants) - len(done)
    lock = threading.Lock()
    start, cpu_start = time.monotonic(), _cpu()
    counter = [0]

    def worker_loop(worker: int) -> None:
        clock = _Clock()
        while time.monotonic() - start <= budget:
            with lock:
                mutant = next(todo, None)
            if mutant is None:
                return
            record = run_mutant(mutant, work, infos, cases, clock=clock, worker=worker)
            with lock:
                out.write(json.dumps(record) + "\n")
                out.flush()
                counter[0] += 1
                print(f"[{counter[0]}/{total}] {record['id']}: {record['verdict']} {record.get('by', '')}", flush=True)

    with work.results.open("a") as out, ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(worker_loop, range(max(1, jobs))))
    with (work.root / "runs.jsonl").open("a") as runs:  # wall time, for the report's estimate
        wall, cpu = time.monotonic() - start, _cpu() - cpu_start
        runs.write(json.dumps({"mutants": counter[0], "seconds": wall, "cpu": cpu, "jobs": jobs}) + "\n")
    if counter[0] < total:
        print(f"budget of {budget:.0f} s spent: {total - counter[0]} mutants left (run again to go on)")


# -- kill rows -----------------------------------------------------------------------------

#: The kill rows CI checks (tests/conformance/test_mutant_kills.py): (case, module, old, new, mutant id).
KILL_FILES = "tests/conformance/kills_*.py"


def check_kills(work: Work) -> list[str]:
    """Whether each kill row's text replacement is exactly its mutant (cosmic-ray's, on the
    pristine core): a row that tests another mutant than the one it names proves nothing about
    it.  Returns the rows that do not match."""
    rows = [row for path in sorted(ROOT.glob(KILL_FILES)) for row in runpy.run_path(str(path))["KILLS"]]
    relpaths = sorted({row[1] for row in rows})
    mutants = {m["id"]: m for m in _enumerate(work, relpaths)}
    problems = []
    for case_id, relpath, old, new, mutant_id in rows:
        original = (work.pristine / relpath).read_text()
        mutant = mutants.get(mutant_id)
        if mutant is None:
            problems.append(f"{case_id} {mutant_id}: no such mutant")
            continue
        expected = _mutate(original, mutant["operator"], mutant["args"], mutant["occurrence"])
        replaced = original.replace(old, new, 1) if original.count(old) == 1 else None
        # Compared as syntax trees: cosmic-ray may leave a space where it deleted a token.
        if replaced is None or expected is None or ast.dump(ast.parse(replaced)) != ast.dump(ast.parse(expected)):
            wanted = list(difflib.unified_diff(original.splitlines(), (expected or "").splitlines(), lineterm="", n=0))
            problems.append(f"{case_id} {mutant_id}: the row's replacement is not this mutant: {wanted[2:4]}")
    print(f"check-kills: {len(rows)} rows, {len(problems)} do not match their mutant")
    for problem in problems:
        print("  " + problem)
    return problems


# -- report --------------------------------------------------------------------------------


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Counts of verdicts per group, and the kill rate's parts."""
    table: dict[str, dict[str, int]] = {}
    for r in records:
        row = table.setdefault(r["group"], {})
        row[r["verdict"]] = row.get(r["verdict"], 0) + 1
    return table


#: The survivors' triage: the tables of conformance/MUTATION.md and of the files of
#: conformance/triage/ (one a module group) whose rows start with a mutant id.
TRIAGE_DOC = ROOT / "conformance" / "MUTATION.md"
TRIAGE_DIR = ROOT / "conformance" / "triage"
#: Triage verdicts that take a survivor out of the requirement kill rate: it breaks no requirement
#: (an equivalent mutant, or one the spec allows), or no case can see it on the wire or through
#: the control protocol (MUTATION.md says why, row by row).
EXCUSED = ("equivalent", "no requirement", "unobservable")


def read_triage(text: str) -> dict[str, tuple[str, str]]:
    """The triage rows ``| `mutant id` | verdict | requirements | why |``: id -> (verdict, why)."""
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and len(cells[0]) > 2 and cells[0][0] == cells[0][-1] == "`" and ":" in cells[0]:
            out[cells[0].strip("`")] = (cells[1], cells[-1])
    return out


def triage_docs() -> list[Path]:
    return [p for p in [TRIAGE_DOC, *sorted(TRIAGE_DIR.glob("*.md"))] if p.exists()]


def read_all_triage() -> dict[str, tuple[str, str]]:
    """The triage rows of every triage document (a later document's row for an id wins)."""
    out: dict[str, tuple[str, str]] = {}
    for doc in triage_docs():
        out.update(read_triage(doc.read_text()))
    return out


def _excused(triage: dict[str, tuple[str, str]], record: dict[str, Any]) -> bool:
    """A survivor or unexecuted mutant whose triage row takes it out of the kill rate."""
    return record["verdict"] in (SURVIVED, NOT_RUN) and triage.get(record["id"], ("",))[0] in EXCUSED


def retry(work: Work, *, triaged_too: bool = False) -> int:
    """Forget the results of the survivors and unexecuted mutants not excused by the triage, so
    that ``run`` tests them again (after ``prepare`` has mapped new cases); killed, equivalent
    and incompetent mutants keep their verdicts, since adding cases cannot revive them, and so
    do excused survivors (their triage row stands) unless ``triaged_too``."""
    triage = {} if triaged_too else read_all_triage()
    lines = [line for line in work.results.read_text().splitlines() if line.strip()]
    keep = [
        line
        for line in lines
        if json.loads(line)["verdict"] not in (SURVIVED, NOT_RUN) or _excused(triage, json.loads(line))
    ]
    work.results.write_text("".join(line + "\n" for line in keep))
    print(f"retry: {len(lines) - len(keep)} survivors and unexecuted mutants to run again")
    return len(lines) - len(keep)


def report(work: Work) -> str:
    planned = json.loads(work.plan.read_text())
    records = [json.loads(line) for line in work.results.read_text().splitlines() if line.strip()]
    triage = read_all_triage()
    for r in records:
        if _excused(triage, r):
            r["verdict_before_triage"], r["verdict"] = r["verdict"], "excused"
    table = summarize(records)
    lines = [
        "# Mutation testing of the conformance suite: report",
        "",
        f"Modules: {', '.join(planned['groups'])}; sample {planned['sample']} of "
        f"{sum(planned['population'].values())} mutants, seed {planned['seed']}; {len(records)} run.",
        "",
        "| module | mutants | killed | survived | not executed | equivalent | incompetent | excused | kill rate |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = (KILLED, SURVIVED, NOT_RUN, EQUIVALENT, INCOMPETENT, "excused")
    for group in [*planned["groups"], "all"]:
        row = (
            {v: sum(t.get(v, 0) for t in table.values()) for v in verdicts}
            if group == "all"
            else {v: table.get(group, {}).get(v, 0) for v in verdicts}
        )
        live = row[KILLED] + row[SURVIVED] + row[NOT_RUN]
        rate = f"{100 * row[KILLED] / live:.0f}%" if live else "-"
        lines.append(
            f"| {group} | {sum(row.values())} | {row[KILLED]} | {row[SURVIVED]} | {row[NOT_RUN]} | "
            f"{row[EQUIVALENT]} | {row[INCOMPETENT]} | {row['excused']} | {rate} |"
        )
    runs_file = work.root / "runs.jsonl"
    runs = (
        [json.loads(line) for line in runs_file.read_text().splitlines() if line.strip()] if runs_file.exists() else []
    )
    ran, wall = sum(r["mutants"] for r in runs), sum(r["seconds"] for r in runs)
    cpu = sum(r.get("cpu", 0.0) for r in runs)
    if ran:
        population = sum(planned["population"].values())
        jobs = ", ".join(sorted({str(r["jobs"]) for r in runs}))
        lines += [
            "",
            f"Time: {wall:.0f} s of wall clock for {ran} mutants ({jobs} at a time), {wall / ran:.2f} s each, "
            f"and {cpu / ran:.2f} s of CPU each. All {population} mutants of these modules: about "
            f"{wall / ran * population / 3600:.1f} h at this run's pace, {cpu / ran * population / 7200:.1f} h "
            "on two idle cores.",
        ]
    lines += [
        "",
        "Kill rate: killed / (killed + survived + not executed), the mutants that break a requirement as",
        "far as the triage knows; equivalent (annotations only), incompetent (no valid Python) and",
        "excused (triaged in conformance/MUTATION.md and conformance/triage/: equivalent, no requirement,",
        "unobservable) left out.",
    ]
    lines += ["", "## Survivors and mutants no case executes", ""]
    for r in records:
        if r["verdict"] in (SURVIVED, NOT_RUN, "excused"):
            diff = " / ".join(d.strip() for d in r.get("diff", []))[:220]
            own = [q for q in r.get("requirements", []) if q.startswith(PREFIXES.get(r["group"], ("",)))]
            seen = f"ran {r.get('ran', 0)} cases, {r['group']} requirements still met: {', '.join(own) or '-'}"
            verdict, why = triage.get(r["id"], ("not triaged", ""))
            lines.append(
                f"- `{r['id']}` line {r.get('lines', ['?'])[0]} ({r.get('verdict_before_triage', r['verdict'])}; "
                f"{seen}): `{diff}`; triage: {verdict}{': ' + why if why else ''}"
            )
    lines += ["", "## Killed", ""]
    lines += [f"- `{r['id']}` by `{r['by']}`: {r['why']}" for r in records if r["verdict"] == KILLED]
    text = "\n".join(lines) + "\n"
    work.report.write_text(text)
    (work.root / "report.json").write_text(json.dumps({"summary": table, "mutants": records}, indent=1) + "\n")
    return text


# -- command line --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.mutation", description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("prepare", "plan", "retry", "run", "report", "check-kills", "all"))
    parser.add_argument("--work", default=str(ROOT / "build" / "mutation"), help="the work directory")
    parser.add_argument("--modules", default=",".join(DEFAULT_GROUPS), help=f"among {', '.join(GROUPS)}")
    parser.add_argument("--sample", type=int, default=0, help="mutants drawn at random (0: all)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--budget", type=float, default=6600.0, help="seconds for the run step (default 110 min)")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="cases mapped (prepare) or mutants run in parallel")
    parser.add_argument("--only", default="", help="plan: only these mutant ids (comma-separated, or @FILE)")
    parser.add_argument("--keep-pristine", action="store_true", help="prepare: keep the earlier pristine core")
    parser.add_argument("--triaged-too", action="store_true", help="retry: also the survivors the triage excuses")
    parser.add_argument("-k", help="prepare: only the cases whose id contains one of these (comma-separated)")
    args = parser.parse_args(argv)
    work = Work(Path(args.work).resolve())
    groups = [g for g in args.modules.split(",") if g]
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        parser.error(f"unknown modules {unknown}: choose among {', '.join(GROUPS)}")
    if args.step in ("prepare", "all"):
        prepare(work, args.jobs, args.k, keep_pristine=args.keep_pristine)
    if args.step in ("plan", "all"):
        only = Path(args.only[1:]).read_text().split() if args.only.startswith("@") else args.only.split(",")
        plan(work, groups, args.sample, args.seed, [i for i in only if i])
    if args.step == "check-kills":
        return 1 if check_kills(work) else 0
    if args.step == "retry":
        retry(work, triaged_too=args.triaged_too)
    if args.step in ("run", "all"):
        run(work, args.budget, args.jobs)
    if args.step in ("report", "all"):
        print(report(work), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
