"""``python -m conformance``: the command line of the conformance runner."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from .registry import Case, all_cases
from .runner import FAIL, precheck, run_cases, summary_line, write_json, write_table
from .traceability import problems, table, traced_cases


def default_impl() -> list[str]:
    """This repository's own adapter, run with the current interpreter."""
    return [sys.executable, "-m", f"{__package__}.impl"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m conformance", description="Run the p2pos v1 conformance suite against an implementation."
    )
    parser.add_argument(
        "--impl", metavar="CMD", help="the IUT command (split like a shell); default: this implementation"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument("-k", metavar="SUBSTRING", help="only the cases whose id contains SUBSTRING")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--markdown", action="store_true", help="with --list: as the table rows of spec/conformance.md")
    parser.add_argument(
        "--trace", action="store_true", help="print the traceability table of spec/conformance.md §6 and exit"
    )
    parser.add_argument("--timeout", type=float, default=30.0, metavar="S", help="seconds per case (default 30)")
    parser.add_argument("-j", "--jobs", type=int, default=4, metavar="N", help="cases run in parallel (default 4)")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="a failed case that tests only SHOULD or MAY rules fails the run (default: it is a warning)",
    )
    parser.add_argument(
        "--no-precheck", action="store_true", help="skip the check that the IUT exits 127 for an unknown case id"
    )
    return parser


def markdown_row(c: Case) -> str:
    """A case as a row of spec/conformance.md §4's table."""
    return f"| `{c.id}` | {c.section} | {c.title} |"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.trace:
        everything = traced_cases()
        print(table(everything), end="")
        for broken in problems(everything):
            print(f"traceability: {broken}", file=sys.stderr)
        return 0
    cases = [c for c in all_cases() if args.k is None or args.k in c.id]
    if args.list:
        for c in cases:
            print(markdown_row(c) if args.markdown else f"{c.id:<16}  {c.section:<18}  {c.title}")
        return 0
    if not cases:
        print(f"no case id contains {args.k!r}", file=sys.stderr)
        return 2
    command = shlex.split(args.impl) if args.impl else default_impl()
    try:
        if not args.no_precheck:
            problem = precheck(command, args.timeout)
            if problem is not None:
                print(f"compliance pre-check failed: {problem}", file=sys.stderr)
                return 2
        results = run_cases(cases, command, timeout=args.timeout, jobs=args.jobs, strict=args.strict)
    except OSError as exc:  # the command itself cannot be started
        print(f"cannot start the IUT {shlex.join(command)!r}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    write_table(results, sys.stdout)
    print(summary_line(results))
    if args.json:
        write_json(args.json, args.impl or shlex.join(command), results, strict=args.strict)
    return 1 if any(r.result == FAIL for r in results) else 0
