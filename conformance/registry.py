"""The case registry: every case has a stable id, a spec section and a title.

Ids never change meaning once published; a case that becomes wrong is
retired: its id goes into ``RETIRED`` and can never be registered again.  Register a case with the ``case`` decorator::

    @case("id/peerid/1", section="identity.md §2", title="peer id of a seed")
    def _(iut: Iut) -> str | None: ...

The function returns an optional detail string on success and raises
``CaseFailed`` otherwise.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .iut import Iut

CaseFunc = Callable[["Iut"], "str | None"]
_ID = re.compile(r"^[a-z]+(/[a-z0-9_-]+)*/[0-9]+$")
_CASES: dict[str, Case] = {}
#: Ids that were published and then retired (spec/conformance.md §4.1): never to be registered again.
RETIRED = frozenset(
    {
        "hs/ik/2",
        "hs/ik/3",
        "hs/ik/7",
        # The reliable-carrier mode of channels.md §10 (only PINGs acknowledged) is gone: every path
        # is acknowledged end to end (paths.md §5); its cases are replaced by the ch/stream/ cases.
        "ch/rel/1",
        "ch/rel/2",
        "ch/rel/3",
        "ch/send/7",
        "ch/send/10",
        "ch/send/11",
        "ch/send/21",
        "ch/send/29",
        # Type 0x0a is RELAYS now (rendezvous.md §4.5): rdv/msg/4 sends the unknown types without it.
        "rdv/msg/2",
        # An opener may send early stream data before the ACCEPT now (channels.md §2.7): ch/early/5-6.
        "ch/flow/10",
    }
)
#: The modules holding cases, loaded by ``all_cases`` in this order.
CASE_MODULES = (
    "cases_identity",
    "cases_handshake",
    "cases_handshake_errors",
    "cases_amplification",
    "cases_endpoint",
    "cases_record",
    "cases_framing",
    "cases_frames",
    "cases_channels",
    "cases_early",
    "cases_recovery",
    "cases_paths",
    "cases_multipath",
    "cases_multipath_state",
    "cases_liveness",
    "cases_bugs",
    "cases_errors",
    "cases_req_identity",
    "cases_req_handshake",
    "cases_req_session",
    "cases_req_frames",
    "cases_req_channels",
    "cases_req_recovery",
    "cases_req_retransmit",
    "cases_req_pacing",
    "cases_req_controllers",
    "cases_req_bbr",
    "cases_bbr_floor",
    "cases_bbr_aggregation",
    "cases_bbr_probe_rtt",
    "cases_req_conformance",
    "cases_mut_hsrec",
    "cases_mut_session",
    "cases_mut_frames",
    "cases_mut_chconn",
    "cases_mut_chsend",
    "cases_mut_bbr",
    "cases_mut_loss",
    "cases_rendezvous",
    "cases_rendezvous_limits",
    "cases_rendezvous_fresh",
    "cases_rendezvous_client",
    "cases_nat_stun",
    "cases_nat_discovery",
    "cases_nat_keepalive",
    "cases_candidates",
    "cases_punch",
    "cases_portmap",
    "cases_portmap_upnp",
)


@dataclasses.dataclass(frozen=True, slots=True)
class Case:
    """One conformance case."""

    id: str
    section: str
    title: str
    func: CaseFunc
    #: The requirement ids of spec/ (spec/conformance.md §6) that the case tests.
    requirements: tuple[str, ...] = ()


def case(
    case_id: str, *, section: str, title: str, requirements: tuple[str, ...] = ()
) -> Callable[[CaseFunc], CaseFunc]:
    """Register the decorated function as the case ``case_id``, testing ``requirements``."""
    if not _ID.match(case_id):
        raise ValueError(f"bad case id {case_id!r}: use lowercase area/sub/number")
    if case_id in _CASES:
        raise ValueError(f"duplicate case id {case_id!r}")
    if case_id in RETIRED:
        raise ValueError(f"case id {case_id!r} is retired and must not be reused")

    def register(func: CaseFunc) -> CaseFunc:
        _CASES[case_id] = Case(case_id, section, title, func, requirements)
        return func

    return register


def all_cases() -> list[Case]:
    """Every registered case, by module in ``CASE_MODULES`` order, then in the order of definition."""
    for name in CASE_MODULES:
        importlib.import_module(f"{__package__}.{name}")
    order = {name: i for i, name in enumerate(CASE_MODULES)}
    defined = {case_id: i for i, case_id in enumerate(_CASES)}
    return sorted(_CASES.values(), key=lambda c: (order.get(c.func.__module__.rpartition(".")[2], 99), defined[c.id]))
