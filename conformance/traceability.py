"""Requirement ids and the traceability table (spec/conformance.md §6).

A rule of spec/ carries a stable id, shown in the text as ``**[FRM-3.5]**`` at its start:
the document's prefix (``PREFIXES``), its section, and the rule's number in that section
(a letter is appended for a rule inserted later, ``CH-4.2a``; an id is never reused).  Every
id maps to the cases that test it (``Case.requirements``) or to a one-line reason why it
cannot be seen on the wire (``UNTESTABLE``); a rule that can be tested but has no case yet is
listed in ``PENDING`` with what its case needs.  ``table()`` renders the mapping as the
markdown kept in spec/conformance.md §6; ``problems()`` lists what breaks the rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from .registry import Case

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
    "errors.md": "ERR",
    "conformance.md": "CONF",
}
#: A requirement id where it is defined in the text.
TAG = re.compile(r"\*\*\[([A-Z]+-\d+(?:\.\d+)+[a-z]?)\]\*\*")
#: The whole of an id (as cases and ``UNTESTABLE`` cite it).
ID = re.compile(r"^([A-Z]+)-\d+(?:\.\d+)+[a-z]?$")
#: Requirements no case can test, each with why: it cannot be seen on the wire or through the
#: control protocol (an implementation's private choice, memory, a rule for the reader of the spec).
UNTESTABLE: Mapping[str, str] = {
    "FRM-3.1": "a receiver's own limit: the control protocol has no command to set it, cases use the default",
    "RCD-4.3": "advice to applications about the size of their messages, not a rule for an implementation",
    "ID-1.2": "the quality of a random source cannot be seen: the control protocol hands the seed in",
    "ID-1.4": "how an implementation compares peers is internal: no command compares two peer ids",
    "ID-2.1.2": "what an implementation shows in logs and prompts is outside the wire and the control protocol",
    "ID-2.1.3": "a user interface's use of the short form cannot be seen; handshakes authenticate the full key",
    "ID-3.1.4": "a rule for the authors of other layers' specifications, not for an implementation",
    "ID-4.10": "the control protocol has no command that writes a key file, only one that loads it",
    "ID-5.1": "advice to people comparing peer ids, not a rule for an implementation",
    "ID-5.2": "a rule for the design of layers that sign data; identity.md defines none that needs freshness",
}
#: Requirements that can be tested but have no case yet, each with what the case needs.  The
#: table marks them; issue 10 is done when this is empty.
PENDING: Mapping[str, str] = {
    "RCD-7.1": "a control command that starts a session's counters near the limit",
    "ID-1.5": "a handshake checking that the IUT's Noise static key is not the X25519 form of its identity key",
    "ID-3.1.3": "`sign` (and `record_create`) with an empty and a 256-byte domain, expecting a refusal",
    "ID-3.2.3": "`verify` with a key that is not a canonical point encoding (y >= p, or no point), expecting false",
    "ID-3.2.7": "`verify` with a 31- and a 33-byte public key, expecting false rather than an error",
    "ID-3.2.8": "`verify` of a signature whose R has a small-order component added, valid only cofactored",
    "ID-3.2.9": "the Wycheproof ed25519_test.json cases through `verify`, each expecting the file's verdict",
    "ID-3.3.4": "`record_decode` of records with domain length 0 and payload length 65537, expecting MALFORMED_MESSAGE",
    "ID-3.3.7": "records breaking two checks at once (version 2 and truncated; trailing bytes and a wrong domain)",
    "ID-4.3": "`key_file` with a non-ASCII byte in a line after the magic, expecting INVALID_KEY_FILE",
    "ID-4.5": "`key_file` with an unknown key and with a repeated key, checking the last value wins",
}
BEGIN, END = "<!-- traceability: begin (python -m conformance --trace) -->", "<!-- traceability: end -->"


def spec_dir() -> Path:
    """spec/ of the source tree this module comes from, else of the current directory."""
    beside = Path(__file__).resolve().parents[1] / "spec"
    return beside if beside.is_dir() else Path.cwd() / "spec"


def _tags(spec: Path) -> Iterator[tuple[str, str]]:
    """``(id, document)`` for every requirement id where spec/ defines it, in document and text order."""
    for name in PREFIXES:
        path = spec / name
        if path.exists():
            for match in TAG.finditer(path.read_text(encoding="utf-8")):
                yield match.group(1), name


def requirements(spec: Path | None = None) -> dict[str, str]:
    """Every requirement id in spec/, mapped to its document (in document and text order)."""
    found: dict[str, str] = {}
    for rid, name in _tags(spec or spec_dir()):
        found.setdefault(rid, name)
    return found


def problems(cases: Iterable[Case], spec: Path | None = None) -> list[str]:
    """What breaks the rules of conformance.md §6: duplicated, misplaced, unknown or unmapped ids."""
    out: list[str] = []
    seen: dict[str, str] = {}
    for rid, name in _tags(spec or spec_dir()):
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


def table(cases: Iterable[Case], spec: Path | None = None) -> str:
    """The traceability table: one row per requirement id, with its cases or why there are none."""
    by_requirement: dict[str, list[str]] = {}
    for c in cases:
        for rid in c.requirements:
            by_requirement.setdefault(rid, []).append(c.id)
    rows = ["| requirement | document | cases, or why none |", "|---|---|---|"]
    for rid, name in requirements(spec).items():
        cited = by_requirement.get(rid)
        if cited:
            how = ", ".join(f"`{cid}`" for cid in cited)
        elif rid in PENDING:
            how = f"**pending**: needs {PENDING[rid]}"
        else:
            how = f"none: {UNTESTABLE.get(rid, '**unmapped**')}"
        rows.append(f"| {rid} | {name} | {how} |")
    return "\n".join(rows) + "\n"
