"""The command line of ``python -m conformance.relay`` (see ``__init__``), and the runner.

Exit status: 0 when every case that ran passed, 1 when one failed, 2 when none ran (``-k``
matched none, or the relay does not answer).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import socket
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ..checks import CaseFailed
from .registry import RelayCase, all_cases
from .trace import problems, table
from .wire import Target, close_all, pace


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    case: RelayCase
    passed: bool
    detail: str
    duration: float


def run_case(c: RelayCase, target: Target) -> Outcome:
    started = time.monotonic()
    try:
        detail, passed = c.func(target) or "", True
    except CaseFailed as exc:
        detail, passed = str(exc), False
    except Exception as exc:  # a relay that answers garbage can break any check
        last = traceback.extract_tb(exc.__traceback__)[-1]
        detail, passed = f"{type(exc).__name__}: {exc} (at {Path(last.filename).name}:{last.lineno})", False
    finally:
        close_all()
    return Outcome(c, passed, detail, time.monotonic() - started)


def run(cases: Sequence[RelayCase], target: Target, out: TextIO) -> list[Outcome]:
    """Every case in order, one line each on ``out`` as it ends, then the failures and the counts."""
    outcomes = []
    for c in cases:
        o = run_case(c, target)
        outcomes.append(o)
        detail = o.detail if len(o.detail) <= 100 else o.detail[:97] + "..."
        print(f"{c.id:<16} {'pass' if o.passed else 'fail':<4} {c.section:<6} {detail}", file=out, flush=True)
    failed = [o for o in outcomes if not o.passed]
    for o in failed:
        print(f"\nFAIL {o.case.id} ({o.case.section}): {o.case.title}", file=out)
        print(f"  requirements: {', '.join(o.case.requirements)}\n  {o.detail}", file=out)
    print(f"\n{len(outcomes) - len(failed)} passed, {len(failed)} failed", file=out)
    return outcomes


def to_json(outcomes: list[Outcome], target: Target) -> dict[str, Any]:
    return {
        "suite": "relay",
        "implementation": target.url,
        "cases": [
            {
                "id": o.case.id,
                "result": "pass" if o.passed else "fail",
                "section": f"relay.md {o.case.section}",
                "detail": o.detail,
                "duration": round(o.duration, 3),
                "requirements": list(o.case.requirements),
            }
            for o in outcomes
        ],
        "summary": {"total": len(outcomes), "passed": sum(o.passed for o in outcomes)},
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m conformance.relay", description="the p2pos relay conformance suite")
    p.add_argument("url", nargs="?", help="the relay: ws://HOST:PORT[/PATH] or wss://...")
    p.add_argument("--ca-file", help="PEM file of the CA (or self-signed certificate) to trust for wss://")
    p.add_argument("--insecure", action="store_true", help="wss:// without checking the certificate")
    p.add_argument("--name", help="the relay name peers sign (REL-2.3; default: the URL's host)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    p.add_argument("-k", metavar="SUBSTR", help="only the cases whose id contains SUBSTR")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--trace", action="store_true", help="print the requirement table and check it, then exit")
    return p


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    args = build_parser().parse_args(argv)
    cases = [c for c in all_cases() if args.k is None or args.k in c.id]
    if args.trace:
        print(table(all_cases()), end="", file=out)
        found = problems(all_cases())
        for problem in found:
            print(f"problem: {problem}", file=sys.stderr)
        return 1 if found else 0
    if args.list:
        for c in cases:
            print(f"{c.id:<16} {c.section:<6} {', '.join(c.requirements):<22} {c.title}", file=out)
        return 0
    if not cases:
        print(f"no case id contains {args.k!r}", file=sys.stderr)
        return 2
    if args.url is None:
        print("a relay URL is required to run cases", file=sys.stderr)
        return 2
    try:
        target = Target(url=args.url, ca_file=args.ca_file, insecure=args.insecure, name=args.name)
        _, host, port, _ = target.parts
        pace()
        socket.create_connection((host, port), timeout=5).close()
    except (ValueError, OSError) as exc:
        print(f"{args.url}: {exc}", file=sys.stderr)
        return 2
    outcomes = run(cases, target, out)
    if args.json:
        args.json.write_text(json.dumps(to_json(outcomes, target), indent=1) + "\n")
    return 0 if all(o.passed for o in outcomes) else 1
