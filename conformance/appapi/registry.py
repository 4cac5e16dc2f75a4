"""The app API cases and what they run against.

A case has a stable id (``api/...``), the section of spec/appapi.md it checks, the requirement
ids (``API-x.y``) it tests, and what it needs: ``one`` (the daemon's Unix socket), ``tcp``
(its TCP port and token file too) or ``two`` (a second daemon, registered at the same
rendezvous node); a ``slow`` case runs only with ``--slow``.  Register one with ``case``::

    @case("api/status/1", section="§3", title="...", requirements=("API-3.1",))
    def _(t: Target) -> str | None: ...

The function returns an optional detail on success and raises ``CaseFailed`` otherwise.  As in
the wire suite (spec/conformance.md §6), an id never changes meaning once published.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from .wire import Api

Needs = Literal["one", "tcp", "two"]
CaseFunc = Callable[["Target"], "str | None"]
_ID = re.compile(r"^api(/[a-z0-9_-]+)*/[0-9]+$")
_CASES: dict[str, ApiCase] = {}
#: The modules holding cases, loaded by ``all_cases`` in this order.
CASE_MODULES = ("cases_local", "cases_services", "cases_events", "cases_tcp", "cases_peers")


@dataclasses.dataclass(frozen=True, slots=True)
class ApiCase:
    id: str
    section: str
    title: str
    func: CaseFunc
    requirements: tuple[str, ...]
    needs: Needs
    #: Takes long (a flood of requests): run only with ``--slow``.
    slow: bool = False


def case(
    case_id: str,
    *,
    section: str,
    title: str,
    requirements: tuple[str, ...],
    needs: Needs = "one",
    slow: bool = False,
) -> Callable[[CaseFunc], CaseFunc]:
    """Register the decorated function as the case ``case_id``."""
    if not _ID.match(case_id):
        raise ValueError(f"bad case id {case_id!r}: use api/area/number")
    if case_id in _CASES:
        raise ValueError(f"duplicate case id {case_id!r}")

    def register(func: CaseFunc) -> CaseFunc:
        _CASES[case_id] = ApiCase(case_id, section, title, func, requirements, needs, slow)
        return func

    return register


def all_cases() -> list[ApiCase]:
    """Every case, by module in ``CASE_MODULES`` order, then in the order of definition."""
    for name in CASE_MODULES:
        importlib.import_module(f"{__package__}.{name}")
    order = {name: i for i, name in enumerate(CASE_MODULES)}
    defined = {case_id: i for i, case_id in enumerate(_CASES)}
    return sorted(_CASES.values(), key=lambda c: (order.get(c.func.__module__.rpartition(".")[2], 99), defined[c.id]))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """The daemon under test (``api``, on its Unix socket) and what else the command line gave."""

    socket_path: Path
    tcp_port: int | None = None
    token_file: Path | None = None
    peer_socket: Path | None = None
    peer_id_given: str | None = None
    #: Whether to run the slow cases (``--slow``).
    slow: bool = False
    #: A prefix for the service names the cases register, so that runs never meet.
    tag: str = dataclasses.field(default_factory=lambda: os.urandom(3).hex())

    @property
    def api(self) -> Api:
        return Api(unix=self.socket_path)

    @property
    def peer(self) -> Api:
        """The second daemon's API (``two`` cases only)."""
        if self.peer_socket is None:
            raise RuntimeError("no --peer-socket")
        return Api(unix=self.peer_socket)

    def tcp(self, token: str | None) -> Api:
        if self.tcp_port is None:
            raise RuntimeError("no --tcp-port")
        return Api(port=self.tcp_port, token=token)

    def token(self) -> str:
        if self.token_file is None:
            raise RuntimeError("no --token-file")
        return self.token_file.read_text().strip()

    def service(self, what: str) -> str:
        """A service name for this run: ``conf-TAG-what``."""
        return f"conf-{self.tag}-{what}"

    def can_run(self, needs: Needs, slow: bool = False) -> str | None:
        """Why a case that needs ``needs`` (and is ``slow``) cannot run against this target, or None."""
        if slow and not self.slow:
            return "slow: run with --slow"
        if needs == "tcp" and (self.tcp_port is None or self.token_file is None):
            return "needs --tcp-port and --token-file"
        if needs == "two" and self.peer_socket is None:
            return "needs --peer-socket (a second daemon at the same rendezvous node)"
        return None
