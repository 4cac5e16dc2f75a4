"""Traceability for a suite that tests one document alone (spec/appapi.md, spec/relay.md).

The rules of spec/conformance.md §6, applied to one document: every id is cited by a case or
listed in the suite's ``untestable`` with why a black-box case cannot see it (and which test
of this implementation checks it instead); a case cites only ids the document defines, and at
least one; every tag has a BCP 14 keyword (``traceability.document_tags`` finds its level).
``problems()`` lists what breaks that (each suite's tests keep it empty); ``table()`` renders
the mapping (``--trace`` of the suite's command line).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path

from .traceability import Traced, document_tags, spec_dir


@dataclasses.dataclass(frozen=True, slots=True)
class DocumentTrace:
    document: str
    prefix: str
    untestable: Mapping[str, str]

    def tags(self, spec: Path | None = None) -> list[tuple[str, str | None]]:
        """``(id, level)`` for every tag of the document, in text order."""
        return document_tags(((spec or spec_dir()) / self.document).read_text(encoding="utf-8"))

    def requirements(self, spec: Path | None = None) -> dict[str, str]:
        """Every id of the document, mapped to its level (``MUST`` when it has no keyword)."""
        found: dict[str, str] = {}
        for rid, level in self.tags(spec):
            found.setdefault(rid, level or "MUST")
        return found

    def problems(self, cases: Iterable[Traced], spec: Path | None = None) -> list[str]:
        """An id without a keyword, defined twice or under another prefix; a case citing no id or
        an undefined one; an id neither tested nor explained, or both."""
        out: list[str] = []
        seen: set[str] = set()
        for rid, level in self.tags(spec):
            if level is None:
                out.append(f"{rid} has no BCP 14 keyword between its tag and the next tag or paragraph end")
            if rid in seen:
                out.append(f"{rid} is defined twice")
            if not rid.startswith(self.prefix):
                out.append(f"{rid} in {self.document}: ids there start with {self.prefix}")
            seen.add(rid)
        tested: set[str] = set()
        for c in cases:
            if not c.requirements:
                out.append(f"case {c.id} cites no requirement")
            for rid in c.requirements:
                if rid not in seen:
                    out.append(f"case {c.id} cites {rid}, which {self.document} does not define")
                tested.add(rid)
        for rid, why in self.untestable.items():
            if rid not in seen:
                out.append(f"UNTESTABLE lists {rid}, which {self.document} does not define")
            elif rid in tested:
                out.append(f"{rid} is tested by a case and also listed as untestable ({why})")
        unexplained = sorted(seen - tested - set(self.untestable))
        out += [f"{rid} is tested by no case and has no reason in UNTESTABLE" for rid in unexplained]
        return out

    def table(self, cases: Iterable[Traced], spec: Path | None = None) -> str:
        """One markdown row per id: its level, and its cases or why there are none."""
        cited: dict[str, list[str]] = {}
        for c in cases:
            for rid in c.requirements:
                cited.setdefault(rid, []).append(c.id)
        rows = ["| requirement | level | cases, or why none |", "|---|---|---|"]
        for rid, level in self.requirements(spec).items():
            how = (
                ", ".join(f"`{cid}`" for cid in cited[rid])
                if rid in cited
                else f"none: {self.untestable.get(rid, '**unmapped**')}"
            )
            rows.append(f"| {rid} | {level} | {how} |")
        return "\n".join(rows) + "\n"
