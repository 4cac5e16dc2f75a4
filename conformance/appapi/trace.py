"""Requirement ids of spec/appapi.md (``**[API-x.y]**``) and the cases that test them.

As for the wire protocol (spec/conformance.md §6, ``conformance/traceability.py``, whose tag
and keyword rules this module reuses): every id is cited by a case, or listed in
``UNTESTABLE`` with why no case against a running daemon can see it; a case cites only ids
the document defines; every tag has a BCP 14 keyword.  ``problems()`` lists what breaks that
(a test keeps it empty); ``table()`` renders the mapping (``python -m conformance.appapi --trace``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from ..traceability import KEYWORD, LEVELS, TAG, spec_dir
from .registry import ApiCase

DOCUMENT = "appapi.md"
PREFIX = "API-"
_ADAPTER_TESTS = "tests/adapters/test_daemon.py"

#: Why no case can test these ids against a daemon the suite did not start (and, for this
#: implementation, which tests check it instead).
UNTESTABLE: Mapping[str, str] = {
    "API-1.5": "a new token per start needs the daemon restarted, which the suite does not control "
    "(tests/adapters/test_apisockets.py::test_tcp_needs_the_token_from_the_file)",
    "API-1.1.1": "where the command line keeps its files is outside the API; the suite only knows the "
    f"socket ({_ADAPTER_TESTS}::test_home_folders)",
    "API-1.1.2": "the XDG defaults are chosen by the command line from its environment, outside the API "
    f"({_ADAPTER_TESTS}::test_home_folders)",
    "API-2.1.3": "no request of the API is meant to provoke a bug in the daemon; an internal error cannot "
    "be caused from outside (tests/adapters/test_httpapi.py::test_errors_are_json_and_a_crash_is_a_500)",
    "API-2.1.4": "a rule for clients, not for the daemon the suite tests",
    "API-3.1.4": "which carriers two daemons share depends on their configuration and network, which the "
    "suite neither sets nor knows (tests/carriers/test_carrier_pin.py moves a session to QUIC and back)",
    "API-3.7": "remembering verified peers across restarts needs the daemon restarted "
    "(tests/adapters/test_daemon.py::test_verified_peers_are_remembered reads peers.json)",
    "API-4.22": "how the daemon looks a peer up, and that it refuses an impostor, cannot be seen through "
    "the API without a rendezvous node that lies (handshake.md's identity binding, HS cases, covers the check)",
    "API-5.6": "the missed notice needs more than 200,000 events within an hour (the hour's are kept up to "
    "that), or 10,000 and an hour's wait; the API makes events one a request, at best ~1.5 ms each (refused "
    "channels, 32 at once: api/peer/11), so 5 minutes and more "
    "(tests/adapters/test_eventlog.py checks the notice with a fake clock)",
    "API-5.8": "a rule for clients, not for the daemon the suite tests",
    "API-6.1": "POST /v1/stop ends the daemon under test, which the suite does not own "
    f"({_ADAPTER_TESTS}::test_stop_ends_the_daemon_and_removes_its_socket)",
    "API-6.2": "signals go to a process the suite did not start and does not know (tests/daemon/ signals ours)",
    "API-6.1.1": "--bench is a start-up option: the suite can neither set it nor ask whether it is on "
    "(tests/bench/test_bench_daemon_smoke.py)",
    "API-6.1.2": "--bench is a start-up option: the suite can neither set it nor ask whether it is on "
    "(tests/bench/test_bench_daemon_smoke.py)",
    "API-6.1.3": "whether a daemon runs without --bench cannot be asked through the API, and with it the "
    "call is served",
    "API-7.1": "needs a plugin installed in the daemon's home folder, which the suite does not know",
    "API-7.2": "needs a plugin installed in the daemon's home folder, and its logs folder",
    "API-7.3": "needs a plugin installed in the daemon's home folder, and a minute of restarts",
    "API-7.4": "needs a plugin installed in the daemon's home folder, and its process id",
}


def _text(spec: Path | None) -> str:
    return ((spec or spec_dir()) / DOCUMENT).read_text(encoding="utf-8")


def tags(spec: Path | None = None) -> list[tuple[str, str | None]]:
    """``(id, level)`` for every tag of spec/appapi.md, in text order.

    The level is that of the first BCP 14 keyword after the tag, before the next tag or the
    paragraph's end; failing that (a row of a table), of the last one before the tag in its
    paragraph; None when there is none."""
    text = _text(spec)
    matches = list(TAG.finditer(text))
    out: list[tuple[str, str | None]] = []
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        paragraph = text.find("\n\n", match.end())
        if paragraph != -1:
            end = min(end, paragraph)
        keyword = KEYWORD.search(text, match.end(), end)
        if keyword is None:
            before = list(KEYWORD.finditer(text, text.rfind("\n\n", 0, match.start()) + 2, match.start()))
            keyword = before[-1] if before else None
        out.append((match.group(1), LEVELS[keyword.group(1)] if keyword else None))
    return out


def requirements(spec: Path | None = None) -> dict[str, str]:
    """Every id of spec/appapi.md, mapped to its level (``MUST`` when it has no keyword)."""
    found: dict[str, str] = {}
    for rid, level in tags(spec):
        found.setdefault(rid, level or "MUST")
    return found


def problems(cases: Iterable[ApiCase], spec: Path | None = None) -> list[str]:
    """What breaks the rules: an id without a keyword, defined twice, under another prefix, cited
    but undefined, untested without a reason, or both tested and listed as untestable."""
    out: list[str] = []
    seen: set[str] = set()
    for rid, level in tags(spec):
        if level is None:
            out.append(f"{rid} has no BCP 14 keyword between its tag and the next tag or paragraph end")
        if rid in seen:
            out.append(f"{rid} is defined twice")
        if not rid.startswith(PREFIX):
            out.append(f"{rid} in {DOCUMENT}: ids there start with {PREFIX}")
        seen.add(rid)
    tested: set[str] = set()
    for c in cases:
        if not c.requirements:
            out.append(f"case {c.id} cites no requirement")
        for rid in c.requirements:
            if rid not in seen:
                out.append(f"case {c.id} cites {rid}, which {DOCUMENT} does not define")
            tested.add(rid)
    for rid, why in UNTESTABLE.items():
        if rid not in seen:
            out.append(f"UNTESTABLE lists {rid}, which {DOCUMENT} does not define")
        elif rid in tested:
            out.append(f"{rid} is tested by a case and also listed as untestable ({why})")
    out += [
        f"{rid} is tested by no case and has no reason in UNTESTABLE" for rid in sorted(seen - tested - set(UNTESTABLE))
    ]
    return out


def table(cases: Iterable[ApiCase], spec: Path | None = None) -> str:
    """One markdown row per id: its level, and its cases or why there are none."""
    cited: dict[str, list[str]] = {}
    for c in cases:
        for rid in c.requirements:
            cited.setdefault(rid, []).append(c.id)
    rows = ["| requirement | level | cases, or why none |", "|---|---|---|"]
    for rid, level in requirements(spec).items():
        how = (
            ", ".join(f"`{cid}`" for cid in cited[rid])
            if rid in cited
            else f"none: {UNTESTABLE.get(rid, '**unmapped**')}"
        )
        rows.append(f"| {rid} | {level} | {how} |")
    return "\n".join(rows) + "\n"
