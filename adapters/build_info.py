"""Which build of the core this process runs: compiled by mypyc, or pure Python.

A wheel built with ``P2POS_COMPILE=1`` (setup.py, tools/compile_core.py) ships the
core's per-packet modules as C extensions beside their sources, and the import
system prefers the extensions; an editable install, or a wheel built without the
variable, is pure Python.  The core is wholly one or the other
(tests/core/test_compiled_core.py), so one per-packet module tells:
``p2pos.proto.channels.connection``.

``p2pos version`` prints ``describe()``; the node and the demo may log ``core_build()``.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Literal

import p2pos.proto
from p2pos.proto.channels import connection

CoreBuild = Literal["compiled", "pure"]


def core_build() -> CoreBuild:
    """``"compiled"`` when the core's per-packet modules are mypyc extensions, else ``"pure"``."""
    origin = str(connection.__file__)
    return "compiled" if origin.endswith(tuple(EXTENSION_SUFFIXES)) else "pure"


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildInfo:
    """What ``p2pos version`` reports."""

    version: str
    python: str
    core: CoreBuild
    core_path: Path


def build_info() -> BuildInfo:
    """This process's p2pos version, Python, and the core it loaded (and from where)."""
    python = (
        f"{platform.python_implementation()} {platform.python_version()} ({platform.system()} {platform.machine()})"
    )
    return BuildInfo(
        version=p2pos.proto.__version__,
        python=python,
        core=core_build(),
        core_path=Path(str(p2pos.proto.__file__)).parent,
    )


def describe(info: BuildInfo) -> list[str]:
    """The lines ``p2pos version`` prints."""
    core = "compiled (mypyc)" if info.core == "compiled" else "pure Python"
    return [f"p2pos {info.version}", f"python {info.python}", f"core {core}, loaded from {info.core_path}"]
