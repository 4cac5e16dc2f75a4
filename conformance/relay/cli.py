"""The command line of ``python -m conformance.relay`` (see ``__init__``), and the runner.

Exit status: 0 when every case that ran passed, 1 when one failed, 2 when none ran (``-k``
matched none, or the relay does not answer).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from ..suites import Outcome, attempt, print_line, report, to_json
from .registry import RelayCase, all_cases
from .trace import problems, table
from .wire import Target, close_all, pace


def run_case(c: RelayCase, target: Target) -> Outcome[RelayCase]:
    try:
        return attempt(c, lambda: c.func(target))
    finally:
        close_all()


def run(cases: Sequence[RelayCase], target: Target, out: TextIO) -> list[Outcome[RelayCase]]:
    """Every case in order, one line each on ``out`` as it ends, then the failures and the counts."""
    outcomes = []
    for c in cases:
        o = run_case(c, target)
        outcomes.append(o)
        print_line(o, out)
    report(outcomes, out)
    return outcomes


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
        data = to_json(outcomes, suite="relay", document="relay.md", implementation=target.url)
        args.json.write_text(json.dumps(data, indent=1) + "\n")
    return 0 if all(o.result == "pass" for o in outcomes) else 1
