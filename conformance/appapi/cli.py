"""The command line of ``python -m conformance.appapi`` (see ``__init__``).

Exit status: 0 when every case that ran passed, 1 when one failed (or, with ``--trace``, when
the traceability check finds a problem), 2 when no case ran (``-k`` matched none, or the
socket does not answer).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .registry import Target, all_cases
from .runner import report, run, write_json
from .trace import problems, table


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m conformance.appapi", description="the p2pos app API conformance suite")
    p.add_argument("--socket", type=Path, help="the daemon's API Unix socket (run/api.sock)")
    p.add_argument("--tcp-port", type=int, help="its API TCP port (run/api.port): runs the token cases")
    p.add_argument("--token-file", type=Path, help="its API token file (run/api.token)")
    p.add_argument("--peer-socket", type=Path, help="a second daemon's socket, at the same rendezvous node")
    p.add_argument("--peer-id", help="the second daemon's peer id (default: asked from its status)")
    p.add_argument("--slow", action="store_true", help="also run the slow cases (a flood of 10,000 requests)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    p.add_argument("-k", metavar="SUBSTR", help="only the cases whose id contains SUBSTR")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--trace", action="store_true", help="print the requirement table and check it, then exit")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cases = [c for c in all_cases() if args.k is None or args.k in c.id]
    if args.trace:
        print(table(all_cases()), end="")
        found = problems(all_cases())
        for problem in found:
            print(f"problem: {problem}", file=sys.stderr)
        return 1 if found else 0
    if args.list:
        for c in cases:
            needs = c.needs + (",slow" if c.slow else "")
            print(f"{c.id:<18} {needs:<9} {c.section:<6} {', '.join(c.requirements):<40} {c.title}")
        return 0
    if not cases:
        print(f"no case id contains {args.k!r}", file=sys.stderr)
        return 2
    if args.socket is None:
        print("--socket is required to run cases", file=sys.stderr)
        return 2
    if not args.socket.exists():
        print(f"{args.socket}: no such socket (is the daemon running?)", file=sys.stderr)
        return 2
    target = Target(
        socket_path=args.socket,
        tcp_port=args.tcp_port,
        token_file=args.token_file,
        peer_socket=args.peer_socket,
        peer_id_given=args.peer_id,
        slow=args.slow,
    )
    outcomes = run(cases, target, sys.stdout)
    report(outcomes, sys.stdout)
    if args.json:
        write_json(args.json, outcomes, target)
    return 1 if any(o.result == "fail" for o in outcomes) else 0
