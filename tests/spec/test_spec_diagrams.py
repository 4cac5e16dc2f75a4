"""The spec's diagrams and tables must be exactly what the code uses.

spec/session.md §3 shows the session state machine (``TRANSITIONS``); the packet
type tables (README.md §3, record.md §2, handshake.md §4), the first-byte
table (session.md §4.1), the payload field table (handshake.md §5.1) and the
anti-amplification constants (handshake.md §8.5) name the wire values of
``wire.py``, ``demux.py``, ``payload.py`` and ``handshake.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

from p2pos.proto.channels.channel import TRANSITIONS as CHANNEL_TRANSITIONS
from p2pos.proto.channels.channel import ChannelState
from p2pos.proto.endpoint.demux import BY_FIRST_BYTE
from p2pos.proto.handshake import handshake, payload
from p2pos.proto.session.session import TRANSITIONS, SessionState
from p2pos.proto.session.wire import RECORD_TYPES, PacketType

SPEC = Path(__file__).resolve().parents[2] / "spec"
SESSION_MD = SPEC / "session.md"
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


def _section(document: str, heading: str) -> str:
    text = (SPEC / document).read_text(encoding="utf-8")
    start = text.index(f"\n{heading} ")
    end = text.find("\n#", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_the_packet_type_table_is_the_wire_enum() -> None:
    rows = re.findall(r"^\| `0x([0-9a-f]{2})` \| (\w+) \|", _section("README.md", "## §3"), flags=re.MULTILINE)
    assert {int(code, 16): name for code, name in rows} == {t.value: t.name for t in PacketType}


def test_the_record_type_column_is_the_record_types() -> None:
    (row,) = [line for line in _section("record.md", "## §2").splitlines() if line.startswith("| 0 | type |")]
    listed = {int(code, 16): name for code, name in re.findall(r"`0x([0-9a-f]{2})` (\w+)", row)}
    assert listed == {t.value: t.name for t in RECORD_TYPES}


def test_the_handshake_layouts_name_the_handshake_types() -> None:
    for heading, ptype in (
        ("### §4.1", PacketType.INIT),
        ("### §4.2", PacketType.RESPONSE),
        ("### §4.3", PacketType.FINISH),
    ):
        section = _section("handshake.md", heading)
        assert f"| 0 | type | u8 | `0x{ptype.value:02x}` |" in section, heading
    assert f"|  type = 0x{PacketType.INIT.value:02x}  |" in _section("handshake.md", "### §4.1")


def test_the_first_byte_table_is_the_demultiplexer() -> None:
    rows = re.findall(r"^\| (\d+)-(\d+) \| [^|]+ \| `([a-z0-9-]+)` \|", _section("session.md", "### §4.1"), flags=re.M)
    documented = {byte: name for low, high, name in rows for byte in range(int(low), int(high) + 1)}
    assert sorted(documented) == list(range(256))
    assert sum(int(high) - int(low) + 1 for low, high, _ in rows) == 256  # no range overlaps another
    assert documented == {byte: protocol.value for byte, protocol in enumerate(BY_FIRST_BYTE)}


def test_the_payload_field_table_is_the_payload_module() -> None:
    rows = re.findall(r"^\| `0x([0-9a-f]{4})` \| ([^|]+) \|", _section("handshake.md", "### §5.1"), flags=re.MULTILINE)
    documented = {int(code, 16): name.strip() for code, name in rows}
    assert documented == {
        payload.F_VERSIONS: "versions",
        payload.F_IDENTITY_KEY: "identity key",
        payload.F_IDENTITY_SIG: "identity signature",
        payload.F_CAPABILITIES: "capabilities",
        payload.F_SESSION_INDEX: "session index",
        payload.F_SAS_COMMITMENT: "SAS commitment",
        payload.F_SAS_NONCE: "SAS nonce",
        payload.F_PADDING: "padding",
    }
    assert payload.SAS_NONCE_LEN == 32


def test_the_anti_amplification_constants_are_the_code_constants() -> None:
    section = _section("handshake.md", "### §8.5")
    assert f"`MIN_INIT_SIZE = {handshake.MIN_INIT_SIZE}`" in section
    assert f"`AMPLIFICATION_FACTOR = {handshake.AMPLIFICATION_FACTOR}`" in section


def _channels_section_3_1() -> str:
    text = (SPEC / "channels.md").read_text(encoding="utf-8")
    start = text.index("### §3.1 ")
    return text[start : text.index("\n### §3.2 ", start)]


def test_the_channel_state_machine_in_channels_md_is_the_code() -> None:
    """channels.md §3.1: both the Mermaid diagram and the table equal channel.TRANSITIONS."""
    expected = {
        (state.name, event.name, target.name)
        for state, row in CHANNEL_TRANSITIONS.items()
        for event, target in row.items()
    }
    section = _channels_section_3_1()
    (block,) = re.findall(r"```mermaid\n(.*?)```", section, flags=re.DOTALL)
    edges = {(m.group(1), m.group(3), m.group(2)) for line in block.splitlines() if (m := _EDGE.match(line))}
    assert edges == expected
    rows = {m.groups() for line in section.splitlines() if (m := _ROW.match(line))}
    assert rows == expected
    for state in ChannelState:
        assert f"| `{state.name}` |" in section
