"""spec/portmap.md and the code agree: §5's diagram is ``TRANSITIONS``; §8's numbers are the defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.nat import portmap_natpmp as nm
from p2pos.proto.nat import portmap_pcp as pcp
from p2pos.proto.nat import portmap_upnp_client as upc
from p2pos.proto.nat.portmap_common import SERVER_PORT, TRANSITIONS, MapInput, MapState
from p2pos.transports.portmap import PortMapConfig

SPEC = (Path(__file__).resolve().parents[2] / "spec" / "portmap.md").read_text(encoding="utf-8")
_EDGE = re.compile(r"^\s*(\w+) --> (\w+) : (\w+)\s*$", re.MULTILINE)


def section(number: int) -> str:
    start = SPEC.index(f"## §{number} ")
    end = SPEC.find("\n## §", start + 1)
    return SPEC[start : end if end != -1 else len(SPEC)]


def test_the_state_diagram_is_the_transition_table() -> None:
    """[MAP-5.1] [MAP-5.2] every edge of §5's diagram is in TRANSITIONS and nothing else is."""
    (block,) = re.findall(r"```mermaid\n(.*?)```", section(5), flags=re.DOTALL)
    drawn = set(_EDGE.findall(block))
    table = {(old.name, new.name, what.name) for old, edges in TRANSITIONS.items() for what, new in edges.items()}
    assert drawn == table
    assert set(TRANSITIONS) == set(MapState)
    assert {what for edges in TRANSITIONS.values() for what in edges} == set(MapInput)


def test_inputs_without_an_edge_are_caller_errors() -> None:
    client = nm.NatPmpClient(internal_port=4000)
    client.remove(0.0)
    with pytest.raises(LocalProtocolError, match="start"):
        client.start(0.0)


def test_section_8_numbers_are_the_defaults() -> None:
    """[MAP-2.2] [MAP-3.1] [MAP-3.2] [MAP-5.1] [MAP-6.1] the table states what the code does."""
    table = section(8)
    config = PortMapConfig()
    assert f"| PCP / NAT-PMP port on the gateway | {SERVER_PORT} |" in table
    assert (
        f"{int(nm.INITIAL_INTERVAL * 1000)} ms doubling; {nm.PROBE_SENDS} sends probing, {nm.MAX_SENDS} once heard"
        in table
    )
    assert f"IRT {pcp.IRT:g} s, MRT {pcp.MRT:g} s, ±10 %; {pcp.PROBE_SENDS} send probing" in table
    assert f"{upc.SEARCH_SENDS} rounds, {upc.SEARCH_INTERVAL:g} s apart" in table
    assert f"| HTTP exchange | {config.http_timeout:g} s |" in table
    assert f"{config.lifetime} s (PCP, NAT-PMP), {config.upnp_lifetime} s (UPnP)" in table
    assert (
        config.lifetime == nm.DEFAULT_LIFETIME == pcp.DEFAULT_LIFETIME and config.upnp_lifetime == upc.DEFAULT_LIFETIME
    )
    assert f"| Removal | at most {config.removal_timeout:g} s |" in table
    assert f"| Retry when nothing works | {config.retry_after:g} s |" in table
