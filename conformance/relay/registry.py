"""The relay cases: a stable id (``rel/area/number``), the section of spec/relay.md it checks and
the requirement ids (``REL-…``) it tests.  Register one with ``case``::

    @case("rel/auth/1", section="§2", title="...", requirements=("REL-2.2",))
    def _(t: Target) -> str | None: ...

The function returns an optional detail on success and raises ``CaseFailed`` otherwise.  An id
never changes meaning once published.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Callable

from .wire import Target

CaseFunc = Callable[[Target], "str | None"]
_ID = re.compile(r"^rel(/[a-z0-9_-]+)*/[0-9]+$")
_CASES: dict[str, RelayCase] = {}


@dataclasses.dataclass(frozen=True, slots=True)
class RelayCase:
    id: str
    section: str
    title: str
    func: CaseFunc
    requirements: tuple[str, ...]


def case(case_id: str, *, section: str, title: str, requirements: tuple[str, ...]) -> Callable[[CaseFunc], CaseFunc]:
    """Register the decorated function as the case ``case_id``."""
    if not _ID.match(case_id) or case_id in _CASES:
        raise ValueError(f"bad or duplicate case id {case_id!r}")

    def register(func: CaseFunc) -> CaseFunc:
        _CASES[case_id] = RelayCase(case_id, section, title, func, requirements)
        return func

    return register


def all_cases() -> list[RelayCase]:
    """Every case, in the order of definition."""
    importlib.import_module(f"{__package__}.cases")
    return list(_CASES.values())
