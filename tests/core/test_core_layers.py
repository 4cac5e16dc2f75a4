"""Imports in the core only run downwards (STYLE.md, "Layout: one folder per layer").

Each subpackage's ``__init__.py`` says which layers it may import; this test holds
every module of the core to the same table, so a layer never reaches up (the
session does not know channels, recovery knows neither) and no protocol layer
depends on the simulation tools.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "p2pos_proto"
_BELOW_ENDPOINT = {"channels", "paths", "recovery", "session", "handshake", "identity", "common", "errors", "events"}
#: layer -> the layers it may import (besides itself).  A layer is a subpackage or a top-level module.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "common": {"errors"},
    "identity": {"common", "errors"},
    "events": {"identity", "errors"},
    "handshake": {"identity", "common", "errors", "events"},
    "session": {"handshake", "identity", "common", "errors", "events"},
    "recovery": {"common", "errors", "events"},
    "paths": {"recovery", "common", "errors", "events"},
    "channels": {"paths", "recovery", "session", "handshake", "identity", "common", "errors", "events"},
    "endpoint": _BELOW_ENDPOINT,
    "nat": {"common", "errors"},
    "relay": {"identity", "common", "errors"},
    "rendezvous": _BELOW_ENDPOINT | {"endpoint", "nat"},
    "simulation": {"errors"},
    "__init__": _BELOW_ENDPOINT | {"endpoint"},
}


def layer_of(path: Path) -> str:
    rel = path.relative_to(CORE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_layers(source: str, package: tuple[str, ...]) -> set[str]:
    """The core layers ``source`` imports, from relative imports (resolved against ``package``, the
    module's folder under the core) and absolute ``p2pos.proto.X`` ones."""
    layers: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level:
            target = [*package[: len(package) - (node.level - 1)], *(node.module or "").split(".")]
            target = [part for part in target if part]
            # ``from . import x`` at the core's top: x itself is the layer.
            layers.update(target[:1] or [alias.name for alias in node.names])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("p2pos.proto."):
            layers.add(str(node.module).split(".")[2])
        elif isinstance(node, ast.Import):
            layers.update(a.name.split(".")[2] for a in node.names if a.name.startswith("p2pos.proto."))
    return layers


def modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_every_layer_is_in_the_table() -> None:
    assert {layer_of(p) for p in modules()} == set(ALLOWED)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(CORE)))
def test_imports_run_downwards(path: Path) -> None:
    layer = layer_of(path)
    package = path.relative_to(CORE).parts[:-1]
    upward = imported_layers(path.read_text(encoding="utf-8"), package) - ALLOWED[layer] - {layer}
    assert upward == set(), f"{layer} may not import {sorted(upward)}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from ..channels.connection import Connection", {"channels"}),
        ("from ..simulation import link", {"simulation"}),
        ("import p2pos.proto.endpoint.endpoint", {"endpoint"}),
        ("from p2pos.proto.recovery.rtt import RttEstimator", {"recovery"}),
        ("from .record import OVERHEAD", {"session"}),
        ("from .. import events", {"events"}),
    ],
)
def test_the_scanner_sees_each_kind_of_import(source: str, expected: set[str]) -> None:
    """As if written in session/x.py: relative levels resolve against session/ (so a pass means something)."""
    assert imported_layers(source, ("session",)) == expected
