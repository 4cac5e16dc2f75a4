"""The core does no I/O (STYLE.md §1): no forbidden imports, statically and at run time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "p2pos_proto"
#: Top-level modules the sans-IO core must never import (time and randomness come in as arguments).
FORBIDDEN = frozenset(
    {"socket", "trio", "asyncio", "time", "os", "random", "threading", "selectors", "select", "subprocess"}
)
#: Modules that must not even be loaded, indirectly, by ``import p2pos.proto``.
NOT_LOADED = ("trio", "asyncio", "socket", "selectors", "threading", "subprocess")


def imported_modules(source: str) -> set[str]:
    """Every module name an import statement in ``source`` names, at any depth (relative ones excluded)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr) in ("__import__", "import_module")
        ):
            names.update(arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str))
    return names


def forbidden_in(source: str) -> set[str]:
    return {name for name in imported_modules(source) if name.split(".")[0] in FORBIDDEN}


def core_modules() -> list[Path]:
    """Every module of the core, in every subpackage (a subpackage must not escape the checks)."""
    return sorted(CORE.rglob("*.py"))


def _rel(path: Path) -> str:
    return str(path.relative_to(CORE))


def test_core_has_modules() -> None:
    names = {_rel(p) for p in core_modules()}
    assert {
        "session/session.py",
        "endpoint/endpoint.py",
        "session/record.py",
        "session/framing.py",
        "channels/connection.py",
        "__init__.py",
    } <= names


def test_the_walk_reaches_every_subpackage() -> None:
    folders = {p.parent for p in core_modules()}
    on_disk = {d for d in CORE.rglob("*") if d.is_dir() and d.name != "__pycache__"}
    assert on_disk <= folders
    assert len(on_disk) >= 8


@pytest.mark.parametrize("path", core_modules(), ids=_rel)
def test_core_module_imports_nothing_forbidden(path: Path) -> None:
    assert forbidden_in(path.read_text(encoding="utf-8")) == set()


@pytest.mark.parametrize(
    "source",
    [
        "import socket",
        "import os.path",
        "import time as clock",
        "from asyncio import sleep",
        "from trio.lowlevel import current_clock",
        "from select import epoll",
        "import json, random",
        "def f():\n    import threading",
        "try:\n    import selectors\nexcept ImportError:\n    pass",
        "import importlib\nimportlib.import_module('subprocess')",
        "__import__('socket')",
    ],
)
def test_scanner_catches_forbidden_imports(source: str) -> None:
    assert forbidden_in(source), source


@pytest.mark.parametrize("source", ["import hashlib", "from . import time", "from .os import x", "import timeit"])
def test_scanner_allows_harmless_imports(source: str) -> None:
    assert forbidden_in(source) == set()


def test_importing_the_core_loads_no_io_modules() -> None:
    probe = (
        "import sys\n"
        "import p2pos.proto, p2pos.proto.endpoint.endpoint, p2pos.proto.session.framing, p2pos.proto.session.session\n"
        f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {NOT_LOADED!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_probe_detects_io_modules() -> None:
    """The same probe does see a module it should (so an empty answer above means something)."""
    probe = "import sys, socket\nprint('socket' in sys.modules)\n"
    result = subprocess.run(
        [sys.executable, "-I", "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.strip() == "True"
