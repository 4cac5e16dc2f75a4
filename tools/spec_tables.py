#!/usr/bin/env python3
"""Regenerate the two generated tables of spec/conformance.md after cases or rule ids change.

    python tools/spec_tables.py [--check]

* §4's case table (the ``| `id` | ...`` rows between "## §4 Cases" and "### §4.1 Retired ids"):
  ``python -m conformance --list --markdown``;
* §6's traceability table (between its ``<!-- traceability: begin`` and ``end`` comments):
  ``python -m conformance --trace``.

Everything else in the document (each case's description, the retired ids) is written by hand.
With ``--check`` nothing is written; the exit status is 1 if either table is out of date.
tests/conformance keeps both in step; this is the way to bring them back.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from p2pos.conformance.cli import markdown_row
from p2pos.conformance.registry import all_cases
from p2pos.conformance.traceability import BEGIN, END, table, traced_cases

SPEC = Path(__file__).resolve().parent.parent / "spec" / "conformance.md"
CASES, RETIRED = "\n## §4 Cases", "\n### §4.1 Retired ids"


def regenerated(text: str) -> str:
    """``text`` (spec/conformance.md) with both generated tables made anew."""
    head, rest = text.split(CASES, 1)
    cases, tail = rest.split(RETIRED, 1)
    lines = cases.split("\n")
    rows = [i for i, line in enumerate(lines) if line.startswith("| `")]
    if not rows or rows[-1] - rows[0] + 1 != len(rows):
        raise SystemExit("spec/conformance.md §4: the case rows are not one block")
    lines[rows[0] : rows[-1] + 1] = [markdown_row(c) for c in all_cases()]
    text = head + CASES + "\n".join(lines) + RETIRED + tail
    start = text.index(BEGIN) + len(BEGIN)
    end = text.index(END, start)
    return text[:start] + "\n" + table(traced_cases()).strip("\n") + "\n" + text[end:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only say whether the tables are up to date")
    args = parser.parse_args()
    text = SPEC.read_text(encoding="utf-8")
    new = regenerated(text)
    if args.check:
        if new != text:
            print("spec/conformance.md: the generated tables are out of date (python tools/spec_tables.py)")
            return 1
        return 0
    if new != text:
        SPEC.write_text(new, encoding="utf-8")
        print("spec/conformance.md: tables regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
