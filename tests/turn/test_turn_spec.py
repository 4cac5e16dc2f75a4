"""spec/turn.md and the code agree: the state diagram of §5 is ``TRANSITIONS``; §7's numbers are the defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.nat.turn import TRANSITIONS, TurnClient, TurnConfig, TurnInput, TurnState
from p2pos.proto.nat.turn_config import TurnCredentials
from p2pos.proto.nat.turn_framing import CHANNEL_MAX, CHANNEL_MIN

TURN_MD = (Path(__file__).resolve().parents[2] / "spec" / "turn.md").read_text(encoding="utf-8")
_EDGE = re.compile(r"^\s*(\w+) --> (\w+) : (\w+)\s*$", re.MULTILINE)


def test_the_state_diagram_is_the_transition_table() -> None:
    """[TRN-5.1] [TRN-5.5] [TRN-5.7] every edge of the §5 diagram is in TRANSITIONS and nothing else is."""
    section = TURN_MD[TURN_MD.index("## §5 ") : TURN_MD.index("\n## §6 ")]
    (block,) = re.findall(r"```mermaid\n(.*?)```", section, flags=re.DOTALL)
    drawn = set(_EDGE.findall(block))
    table = {(old.name, new.name, what.name) for old, edges in TRANSITIONS.items() for what, new in edges.items()}
    assert drawn == table
    assert set(TRANSITIONS) == set(TurnState)


def test_inputs_without_an_edge_are_caller_errors() -> None:
    """[TRN-5.1] allocate() twice, refresh() before allocating, send() after release: LocalProtocolError."""
    client = TurnClient(TurnCredentials(username="u", password="p"), random=bytes)
    with pytest.raises(LocalProtocolError, match="refresh"):
        client.refresh(0.0)
    client.allocate(0.0)
    with pytest.raises(LocalProtocolError, match=r"allocate\(\) in state allocating"):
        client.allocate(0.0)
    missing = [(s, i) for s in TurnState for i in TurnInput if i not in TRANSITIONS[s]]
    assert (TurnState.RELEASED, TurnInput.ALLOCATE) in missing and (TurnState.FAILED, TurnInput.RELEASE) in missing


def test_section_7_numbers_are_the_defaults() -> None:
    """[TRN-5.3] [TRN-5.4] [TRN-5.6] [TRN-6.1] the limits and timers table states what TurnConfig does."""
    section = TURN_MD[TURN_MD.index("## §7 ") : TURN_MD.index("\n## §8 ")]
    config = TurnConfig()
    assert f"RTO {int(config.rto * 1000)} ms doubling, {config.rc} sends, fail at 39.5 s" in section
    assert config.rto * (2 ** (config.rc - 1) - 1) + config.rm * config.rto == config.stream_timeout == 39.5
    assert f"{CHANNEL_MAX - CHANNEL_MIN + 1} (`0x4000..0x4FFF`)" in section
    assert f"{config.max_permissions} by default" in section
    assert f"{config.max_queued} per peer" in section
    assert f"lifetime - {int(config.refresh_margin)} s" in section
    lifetime, margin = int(config.permission_lifetime), int(config.refresh_margin)
    assert f"{lifetime - margin} s after install/refresh (lifetime {lifetime} s)" in section
    lifetime = int(config.channel_lifetime)
    assert f"{lifetime - margin} s after binding (lifetime {lifetime} s)" in section
    assert f"{config.stale_nonce_retries} in a row" in section
