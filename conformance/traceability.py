"""Requirement ids and the traceability table (spec/conformance.md §6).

A rule of spec/ carries a stable id, shown in the text as ``**[FRM-3.5]**`` at its start:
the document's prefix (``PREFIXES``), its section, and the rule's number in that section
(a letter is appended for a rule inserted later, ``CH-4.2a``; an id is never reused).  Every
id maps to the cases that test it (``Case.requirements``) or to a one-line reason why it
cannot be seen on the wire (``UNTESTABLE`` in ``trace_reasons``); a rule that can be tested but
has no case yet is listed in ``PENDING`` there with what its case needs.  ``table()`` renders the mapping as the
markdown kept in spec/conformance.md §6; ``problems()`` lists what breaks the rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Protocol

from .quic.registry import all_cases as quic_cases
from .registry import all_cases
from .trace_reasons import PENDING, UNTESTABLE

#: The prefix of each document's requirement ids.
PREFIXES: Mapping[str, str] = {
    "README.md": "GEN",
    "identity.md": "ID",
    "handshake.md": "HS",
    "record.md": "RCD",
    "session.md": "SES",
    "framing.md": "FRM",
    "frames.md": "FRA",
    "channels.md": "CH",
    "flow.md": "FLOW",
    "recovery.md": "REC",
    "paths.md": "PTH",
    "rendezvous.md": "RDV",
    "nat.md": "NAT",
    "candidates.md": "CAND",
    "punch.md": "PUN",
    "portmap.md": "MAP",
    "quic.md": "QUIC",
    "errors.md": "ERR",
    "conformance.md": "CONF",
}
#: A requirement id where it is defined in the text.
TAG = re.compile(r"\*\*\[([A-Z]+-\d+(?:\.\d+)+[a-z]?)\]\*\*")
#: The whole of an id (as cases and ``UNTESTABLE`` cite it).
ID = re.compile(r"^([A-Z]+)-\d+(?:\.\d+)+[a-z]?$")
#: BCP 14 keywords (README.md §2), longest first, and the level each gives a rule.
KEYWORD = re.compile(
    r"\b(MUST NOT|MUST|SHALL NOT|SHALL|REQUIRED|SHOULD NOT|SHOULD|NOT RECOMMENDED|RECOMMENDED|MAY|OPTIONAL)\b"
)
LEVELS: Mapping[str, str] = {
    "MUST NOT": "MUST",
    "MUST": "MUST",
    "SHALL NOT": "MUST",
    "SHALL": "MUST",
    "REQUIRED": "MUST",
    "SHOULD NOT": "SHOULD",
    "SHOULD": "SHOULD",
    "NOT RECOMMENDED": "SHOULD",
    "RECOMMENDED": "SHOULD",
    "MAY": "MAY",
    "OPTIONAL": "MAY",
}


class Traced(Protocol):
    """A case as the table sees it: its id and the requirement ids it tests."""

    @property
    def id(self) -> str: ...

    @property
    def requirements(self) -> tuple[str, ...]: ...


def traced_cases() -> list[Traced]:
    """The cases of every suite that tests ids of these documents: the wire suite's, then the QUIC carrier's."""
    return [*all_cases(), *quic_cases()]


BEGIN, END = "<!-- traceability: begin (python -m conformance --trace) -->", "<!-- traceability: end -->"


def spec_dir() -> Path:
    """spec/ of the source tree this module comes from, else of the current directory."""
    beside = Path(__file__).resolve().parents[1] / "spec"
    return beside if beside.is_dir() else Path.cwd() / "spec"


LIST_ITEM = re.compile(r"(\*|-|\d+\.) ")


def _lead_in(text: str, at: int) -> int:
    """Where the text that introduces the rule at ``at`` starts: its paragraph, or for an item of
    a list (paragraphs of items) the paragraph ending in ':' before the list."""
    start = text.rfind("\n\n", 0, at) + 2
    while LIST_ITEM.match(text, start) and start > 2:
        before = text.rfind("\n\n", 0, start - 2) + 2
        if text[:start].rstrip().endswith(":"):
            return before
        start = before
    return start


def document_tags(text: str) -> list[tuple[str, str | None]]:
    """``(id, level)`` for every requirement id one document's ``text`` defines, in text order.

    The level is that of the first BCP 14 keyword after the tag, before the next tag or the end
    of the paragraph; failing that, of the last one before the tag in its paragraph or, for an
    item of a list, in the list's lead-in; None when there is none."""
    matches = list(TAG.finditer(text))
    out: list[tuple[str, str | None]] = []
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        paragraph = text.find("\n\n", match.end())
        if paragraph != -1:
            end = min(end, paragraph)
        keyword = KEYWORD.search(text, match.end(), end)
        if keyword is None:  # an item of a list whose lead-in holds the keyword
            before = list(KEYWORD.finditer(text, _lead_in(text, match.start()), match.start()))
            keyword = before[-1] if before else None
        out.append((match.group(1), LEVELS[keyword.group(1)] if keyword else None))
    return out


def _tags(spec: Path) -> Iterator[tuple[str, str, str | None]]:
    """``(id, document, level)`` for every requirement id where spec/ defines it, in document and
    text order (``document_tags`` for each document of ``PREFIXES``)."""
    for name in PREFIXES:
        path = spec / name
        if path.exists():
            for rid, level in document_tags(path.read_text(encoding="utf-8")):
                yield rid, name, level


def requirements(spec: Path | None = None) -> dict[str, str]:
    """Every requirement id in spec/, mapped to its document (in document and text order)."""
    found: dict[str, str] = {}
    for rid, name, _ in _tags(spec or spec_dir()):
        found.setdefault(rid, name)
    return found


def levels(spec: Path | None = None) -> dict[str, str]:
    """Every requirement id in spec/, mapped to its level: ``MUST``, ``SHOULD`` or ``MAY``.

    A rule without a keyword (``problems`` reports it) counts as ``MUST``."""
    found: dict[str, str] = {}
    for rid, _, level in _tags(spec or spec_dir()):
        found.setdefault(rid, level or "MUST")
    return found


def problems(cases: Iterable[Traced], spec: Path | None = None) -> list[str]:
    """What breaks the rules of conformance.md §6: duplicated, misplaced, unknown or unmapped ids."""
    out: list[str] = []
    seen: dict[str, str] = {}
    for rid, name, level in _tags(spec or spec_dir()):
        if level is None:
            out.append(f"{rid} ({name}) has no BCP 14 keyword between its tag and the next tag or paragraph end")
        if rid in seen:
            out.append(f"{rid} is defined twice ({seen[rid]} and {name})")
        seen[rid] = name
        if not rid.startswith(PREFIXES[name] + "-"):
            out.append(f"{rid} in {name}: ids there start with {PREFIXES[name]}-")
    tested: set[str] = set()
    for c in cases:
        for rid in c.requirements:
            if rid not in seen:
                out.append(f"case {c.id} cites {rid}, which no spec document defines")
            tested.add(rid)
    for rid, why in UNTESTABLE.items():
        if rid not in seen:
            out.append(f"UNTESTABLE lists {rid}, which no spec document defines")
        elif rid in tested:
            out.append(f"{rid} is tested by a case and also listed as untestable ({why})")
    for rid, why in PENDING.items():
        if rid not in seen:
            out.append(f"PENDING lists {rid}, which no spec document defines")
        elif rid in tested:
            out.append(f"{rid} is tested by a case now: take it out of PENDING ({why})")
    for rid, name in seen.items():
        if rid not in tested and rid not in UNTESTABLE and rid not in PENDING:
            out.append(f"{rid} ({name}) is tested by no case and has no reason in UNTESTABLE")
    return out


def table(cases: Iterable[Traced], spec: Path | None = None) -> str:
    """The traceability table: one row per requirement id, with its cases or why there are none."""
    by_requirement: dict[str, list[str]] = {}
    for c in cases:
        for rid in c.requirements:
            by_requirement.setdefault(rid, []).append(c.id)
    rows = ["| requirement | level | document | cases, or why none |", "|---|---|---|---|"]
    level_of = levels(spec)
    for rid, name in requirements(spec).items():
        cited = by_requirement.get(rid)
        if cited:
            how = ", ".join(f"`{cid}`" for cid in cited)
        elif rid in PENDING:
            how = f"**pending**: needs {PENDING[rid]}"
        else:
            how = f"none: {UNTESTABLE.get(rid, '**unmapped**')}"
        rows.append(f"| {rid} | {level_of[rid]} | {name} | {how} |")
    return "\n".join(rows) + "\n"
