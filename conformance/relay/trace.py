"""Requirement ids of spec/relay.md (``**[REL-x.y]**``) and the cases that test them.

The rules of the other suites (spec/conformance.md §6, ``conformance/appapi/trace.py``): every
id is cited by a case, or listed in ``UNTESTABLE`` with why a black-box case against a running
relay cannot see it (and which test of this implementation checks it instead); a case cites only
ids the document defines; every tag has a BCP 14 keyword.  ``problems()`` lists what breaks that
(tests/relay/test_relay_conformance.py keeps it empty); ``table()`` renders the mapping
(``python -m conformance.relay --trace``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from ..traceability import KEYWORD, LEVELS, TAG, spec_dir
from .registry import RelayCase

DOCUMENT = "relay.md"
PREFIX = "REL-"
_T = "tests/relay/"

UNTESTABLE: Mapping[str, str] = {
    "REL-3.1.1": f"a rule for clients ({_T}test_relay_loopback.py, every RelayLink test)",
    "REL-5.3": "the default byte quota needs more than 64 MiB sent before it shows "
    f"({_T}test_relay_transport.py::test_a_flooding_peer_is_held_to_its_quota_while_another_pair_proceeds)",
    "REL-5.4": "which records a full queue drops depends on the kernel's socket buffers, which the suite "
    f"cannot see ({_T}test_relay_core.py::test_a_full_destination_queue_drops_records_not_links)",
    "REL-5.6": f"no time or byte cap cannot be shown in bounded time ({_T}test_relay_core.py::"
    "test_no_time_or_byte_cap_within_quota, 5 hours on a fake clock)",
    "REL-6.1": "needs a relay that runs a rendezvous node, and its peer id "
    f"({_T}test_relay_sessions.py::test_a_session_with_the_node_goes_over_the_websocket)",
    "REL-6.2": "needs a p2pos handshake with the relay's node "
    f"({_T}test_relay_sessions.py::test_a_session_with_the_node_goes_over_the_websocket)",
    "REL-6.3": f"a rule for peers ({_T}test_relay_sessions.py checks the address the node reports)",
    "REL-7.1": f"a rule for clients ({_T}test_relay_transport.py::test_wss_with_a_self_signed_certificate)",
    "REL-7.2": f"a rule for clients ({_T}test_relay_transport.py::test_through_an_http_connect_proxy)",
    "REL-7.3": f"a rule for clients ({_T}test_relay_core.py::test_backoff_doubles_with_jitter_and_resets)",
    "REL-7.4": f"a rule for clients ({_T}test_relay_transport.py::test_reconnects_after_the_relay_closes_the_link)",
    "REL-7.6": f"a rule for clients ({_T}test_relay_transport.py::test_a_silent_relay_is_given_up)",
    "REL-7.5": f"a rule for clients ({_T}test_relay_sessions.py::test_the_relay_only_handles_sealed_records)",
}


def tags(spec: Path | None = None) -> list[tuple[str, str | None]]:
    """``(id, level)`` for every tag, in text order: the first BCP 14 keyword after the tag, before
    the next tag or the paragraph's end, else the last one before it in its paragraph."""
    text = ((spec or spec_dir()) / DOCUMENT).read_text(encoding="utf-8")
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


def problems(cases: Iterable[RelayCase], spec: Path | None = None) -> list[str]:
    """An id without a keyword, defined twice or under another prefix, a case citing an undefined
    id, an id neither tested nor explained, or both."""
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
        for rid in c.requirements:
            if rid not in seen:
                out.append(f"case {c.id} cites {rid}, which {DOCUMENT} does not define")
            tested.add(rid)
    for rid in UNTESTABLE:
        if rid not in seen:
            out.append(f"UNTESTABLE lists {rid}, which {DOCUMENT} does not define")
        elif rid in tested:
            out.append(f"{rid} is tested by a case and also listed as untestable")
    out += [
        f"{rid} is tested by no case and has no reason in UNTESTABLE" for rid in sorted(seen - tested - set(UNTESTABLE))
    ]
    return out


def table(cases: Iterable[RelayCase], spec: Path | None = None) -> str:
    """One markdown row per id: its level, and its cases or why there are none."""
    cited: dict[str, list[str]] = {}
    for c in cases:
        for rid in c.requirements:
            cited.setdefault(rid, []).append(c.id)
    rows = ["| requirement | level | cases, or why none |", "|---|---|---|"]
    for rid, level in tags(spec):
        how = (
            ", ".join(f"`{cid}`" for cid in cited[rid])
            if rid in cited
            else f"none: {UNTESTABLE.get(rid, '**unmapped**')}"
        )
        rows.append(f"| {rid} | {level or 'MUST'} | {how} |")
    return "\n".join(rows) + "\n"
