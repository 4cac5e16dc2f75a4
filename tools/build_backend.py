"""The build backend (pyproject.toml): setuptools', plus what mypyc needs to compile the core.

Wherever a C compiler and Python's headers exist (or with ``P2POS_COMPILE=1``; never with
``P2POS_COMPILE=0``) setup.py compiles the core's per-packet modules with mypyc
(tools/compile_core.py), and mypyc type-checks the core first: the build environment then
needs mypy and every third-party package the core imports, with their type information
(``cryptography`` and ``PyNaCl``).  Under PEP 517 build isolation (a plain
``pip install .``) that environment holds only what the backend asks for, so this backend
adds them to ``get_requires_for_build_wheel``.  Their versions are the project's own pins:
mypy's from the ``test`` extra, the core's dependencies from ``[project].dependencies``.
When it does not compile, and for sdists and editable installs, it asks for nothing more
than setuptools does.

pyproject.toml loads this module from the source tree (``backend-path = ["tools"]``).
tests/core/test_packaging.py holds ``CORE_IMPORTS`` to what the core really imports.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import (
    build_editable,
    build_sdist,
    build_wheel,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

__all__ = [
    "build_editable",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "prepare_metadata_for_build_wheel",
]

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
#: The third-party top-level modules the core (``p2pos_proto``) imports -> their distributions.
CORE_IMPORTS = {"cryptography": "cryptography", "nacl": "pynacl", "h11": "h11"}
#: The distribution that ships mypyc.
COMPILER = "mypy"


def compiling() -> bool:
    """Whether this build compiles the core: ``compile_core.wants_compiled`` (setup.py asks the same)."""
    import compile_core  # beside this module (backend-path)

    return compile_core.wants_compiled()


def _name(requirement: str) -> str:
    """The normalised distribution name of a PEP 508 requirement (``PyNaCl>=1.5`` -> ``pynacl``)."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement.strip())
    if match is None:
        raise ValueError(f"build_backend: not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group()).lower()


def compile_requirements() -> list[str]:
    """What the build environment needs to compile the core: mypy and the core's typed dependencies."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    candidates = [*project["optional-dependencies"]["test"], *project["dependencies"]]
    wanted = {COMPILER, *CORE_IMPORTS.values()}
    chosen = [requirement for requirement in candidates if _name(requirement) in wanted]
    missing = wanted - {_name(requirement) for requirement in chosen}
    if missing:
        raise ValueError(f"build_backend: pyproject.toml pins no version of {sorted(missing)}")
    return chosen


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    requires: list[str] = _setuptools.get_requires_for_build_wheel(config_settings)
    return requires + compile_requirements() if compiling() else requires
