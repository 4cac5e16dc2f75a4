"""Which case tests each requirement id of spec/quic.md, and why some have none.

The wire suite's traceability (``conformance.traceability``) owns the ids of quic.md: its
``UNTESTABLE`` and ``PENDING`` (in ``trace_reasons``) hold the QUIC ids no case here tests.
``table`` and ``problems`` apply the same rules to this suite's cases alone, for ``--trace``.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..trace_reasons import PENDING, UNTESTABLE
from ..traceability import requirements
from .registry import QuicCase

DOCUMENT = "quic.md"


def quic_ids() -> list[str]:
    return [rid for rid, name in requirements().items() if name == DOCUMENT]


def table(cases: Iterable[QuicCase]) -> str:
    by_id: dict[str, list[str]] = {}
    for c in cases:
        for rid in c.requirements:
            by_id.setdefault(rid, []).append(c.id)
    rows = ["| requirement | cases, or why none |", "|---|---|"]
    for rid in quic_ids():
        cited = by_id.get(rid)
        if cited:
            how = ", ".join(f"`{cid}`" for cid in cited)
        elif rid in PENDING:
            how = f"**pending**: needs {PENDING[rid]}"
        else:
            how = f"none: {UNTESTABLE.get(rid, '**unmapped**')}"
        rows.append(f"| {rid} | {how} |")
    return "\n".join(rows) + "\n"


def problems(cases: Iterable[QuicCase]) -> list[str]:
    """Cited ids that quic.md does not define; ids tested and also listed as untestable or pending; unmapped ids."""
    known = set(quic_ids())
    tested: set[str] = set()
    out: list[str] = []
    for c in cases:
        for rid in c.requirements:
            if rid not in known:
                out.append(f"case {c.id} cites {rid}, which quic.md does not define")
            tested.add(rid)
    for rid in sorted(known):
        if rid in tested and (rid in UNTESTABLE or rid in PENDING):
            out.append(f"{rid} is tested by a case and also listed in UNTESTABLE or PENDING")
        if rid not in tested and rid not in UNTESTABLE and rid not in PENDING:
            out.append(f"{rid} is tested by no case and has no reason in UNTESTABLE or PENDING")
    return out
