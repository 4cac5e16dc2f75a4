"""The command line of ``python -m conformance.quic`` (see ``__init__``).

Exit status: 0 when every case passed, 1 when one failed (or, with ``--trace``, when the QUIC
ids are not all tested or explained), 2 when no case ran (``-k`` matched none, or the IUT did
not start).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from ..checks import CaseFailed
from .registry import all_cases
from .runner import report, run, write_json
from .trace import problems, table


def default_impl() -> list[str]:
    """The reference IUT: ``transports/quic.py`` behind the control of spec/quic.md §7."""
    return [sys.executable, "-m", "p2pos.conformance.quic.reference_iut"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m conformance.quic", description="the p2pos QUIC carrier conformance suite"
    )
    p.add_argument("--impl", help="the IUT's command (spec/quic.md §7); default: the reference carrier")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    p.add_argument("-k", metavar="SUBSTR", help="only the cases whose id contains SUBSTR")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--markdown", action="store_true", help="with --list: as rows of a markdown table")
    p.add_argument("--trace", action="store_true", help="print which case tests each QUIC id, check it, then exit")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.getLogger("quic").setLevel(logging.CRITICAL)  # the runner's peers misbehave on purpose
    if args.trace:
        print(table(all_cases()), end="")
        found = problems(all_cases())
        for problem in found:
            print(f"problem: {problem}", file=sys.stderr)
        return 1 if found else 0
    cases = [c for c in all_cases() if args.k is None or args.k in c.id]
    if args.list:
        for c in cases:
            if args.markdown:
                print(f"| `{c.id}` | quic.md {c.section} | {c.title} |")
            else:
                print(f"{c.id:<16} {c.section:<6} {', '.join(c.requirements):<40} {c.title}")
        return 0
    if not cases:
        print(f"no case id contains {args.k!r}", file=sys.stderr)
        return 2
    command = shlex.split(args.impl) if args.impl else default_impl()
    try:
        outcomes = run(cases, command, sys.stdout)
    except CaseFailed as exc:  # the IUT did not start
        print(f"the IUT did not start: {exc}", file=sys.stderr)
        return 2
    report(outcomes, sys.stdout)
    if args.json:
        write_json(args.json, outcomes, command)
    return 1 if any(o.result == "fail" for o in outcomes) else 0
