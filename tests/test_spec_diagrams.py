"""spec/session.md §3 shows the session state machine; it must be exactly ``TRANSITIONS``."""

from __future__ import annotations

import re
from pathlib import Path

from p2pos.proto.session import TRANSITIONS, SessionState

SESSION_MD = Path(__file__).resolve().parents[1] / "spec" / "session.md"
_EDGE = re.compile(r"^\s*(\w+) --> (\w+) : (\w+)\s*$")
_START = re.compile(r"^\s*\[\*\] --> (\w+)")
_ROW = re.compile(r"^\| `(\w+)` \| `(\w+)` \| `(\w+)` \|$")

Edge = tuple[str, str, str]


def _section_3() -> str:
    text = SESSION_MD.read_text(encoding="utf-8")
    start = text.index("## §3 ")
    return text[start : text.index("\n## §4 ", start)]


def _mermaid_block() -> list[str]:
    section = _section_3()
    blocks: list[str] = re.findall(r"```mermaid\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, "session.md §3 has exactly one Mermaid diagram"
    lines = blocks[0].splitlines()
    assert lines[0].strip() == "stateDiagram-v2"
    return lines[1:]


def _expected() -> set[Edge]:
    return {
        (state.name, event.name, target.name) for state, row in TRANSITIONS.items() for event, target in row.items()
    }


def test_the_mermaid_diagram_is_the_transition_table() -> None:
    edges: set[Edge] = set()
    for line in _mermaid_block():
        match = _EDGE.match(line)
        if match:
            source, target, label = match.groups()
            edges.add((source, label, target))
    assert edges == _expected()


def test_the_diagram_starts_in_every_state_nothing_leads_to() -> None:
    starts = {m.group(1) for line in _mermaid_block() if (m := _START.match(line))}
    reachable = {target for row in TRANSITIONS.values() for target in row.values()}
    assert starts == {s.name for s in SessionState if s not in reachable}
    assert any(line.strip() == "CLOSED --> [*]" for line in _mermaid_block())
    assert TRANSITIONS[SessionState.CLOSED] == {}


def test_the_markdown_table_is_the_transition_table() -> None:
    rows = {m.groups() for line in _section_3().splitlines() if (m := _ROW.match(line))}
    assert {(source, event, target) for source, event, target in rows} == _expected()


def test_every_state_is_documented() -> None:
    section = _section_3()
    for state in SessionState:
        assert f"| `{state.name}` |" in section
