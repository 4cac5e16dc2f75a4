"""The QUIC carrier's cases: stable ids (``quic/...``), the section of spec/quic.md, the ids they test.

Register a case with ``case``; the function gets the running IUT (``control.Iut``), returns an
optional detail on success and raises ``CaseFailed`` otherwise::

    @case("quic/listen/1", section="§3.4", title="...", requirements=("QUIC-3.4.1",))
    def _(iut: Iut) -> str | None: ...

As in the wire suite (spec/conformance.md §4.1), an id never changes meaning once published.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Callable

from .control import Iut

CaseFunc = Callable[[Iut], "str | None"]
_ID = re.compile(r"^quic(/[a-z0-9_-]+)*/[0-9]+$")
_CASES: dict[str, QuicCase] = {}
#: The modules holding cases, loaded by ``all_cases`` in this order.
CASE_MODULES = ("cases_listen", "cases_dial", "cases_session", "cases_shared")


@dataclasses.dataclass(frozen=True, slots=True)
class QuicCase:
    id: str
    section: str
    title: str
    func: CaseFunc
    #: The requirement ids of spec/quic.md the case tests (spec/conformance.md §6).
    requirements: tuple[str, ...]
    #: The case needs the IUT's shared socket (spec/quic.md §5.1): skipped for an IUT without one.
    shared: bool = False


def case(
    case_id: str, *, section: str, title: str, requirements: tuple[str, ...], shared: bool = False
) -> Callable[[CaseFunc], CaseFunc]:
    """Register the decorated function as the case ``case_id`` (``shared``: it needs a shared socket)."""
    if not _ID.match(case_id):
        raise ValueError(f"bad case id {case_id!r}: use quic/area/number")
    if case_id in _CASES:
        raise ValueError(f"duplicate case id {case_id!r}")

    def register(func: CaseFunc) -> CaseFunc:
        _CASES[case_id] = QuicCase(case_id, section, title, func, requirements, shared)
        return func

    return register


def all_cases() -> list[QuicCase]:
    """Every case, by module in ``CASE_MODULES`` order, then in the order of definition."""
    for name in CASE_MODULES:
        importlib.import_module(f"{__package__}.{name}")
    order = {name: i for i, name in enumerate(CASE_MODULES)}
    defined = {case_id: i for i, case_id in enumerate(_CASES)}
    return sorted(_CASES.values(), key=lambda c: (order.get(c.func.__module__.rpartition(".")[2], 99), defined[c.id]))
