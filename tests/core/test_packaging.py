"""Packaging: what the build asks for, and what an sdist or a wheel holds.

The build backend (tools/build_backend.py) asks an isolated build environment for mypy and
the core's typed dependencies when it compiles (by default where a C compiler exists):
mypyc type-checks the core before it compiles it, so every third-party package the core
imports must be there.  The sdist must
carry the in-tree backend and tools/compile_core.py, and neither an sdist nor a wheel may
pick up what lies around a work tree (.venv, build/, caches, what an earlier build left in
build/lib).  ``make test-install`` proves the whole of it in a fresh virtualenv
(tools/check_install.py); these checks are the quick ones.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest
from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "tools"))
import build_backend
import compile_core

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
#: Installed package -> folder in the repository.
PACKAGE_DIRS: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]


def _third_party_imports(folder: Path) -> set[str]:
    found: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.partition(".")[0])
    return {name for name in found if name not in sys.stdlib_module_names and name != "p2pos"}


def test_the_compile_requirements_cover_what_the_core_imports() -> None:
    # mypyc fails to type-check the core if one is missing from the build environment.
    assert _third_party_imports(REPO_ROOT / "p2pos_proto") == set(build_backend.CORE_IMPORTS)


def test_the_compile_requirements_are_the_projects_pins() -> None:
    requirements = build_backend.compile_requirements()
    pinned = [*PYPROJECT["project"]["dependencies"], *PYPROJECT["project"]["optional-dependencies"]["test"]]
    assert set(requirements) <= set(pinned)
    names = {build_backend._name(requirement) for requirement in requirements}
    assert names == {"mypy", "cryptography", "pynacl", "h11"}


@pytest.mark.parametrize("value", [None, "0", "1"])
def test_only_a_compiling_wheel_build_asks_for_more(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    monkeypatch.setattr("build_backend._setuptools.get_requires_for_build_wheel", lambda settings=None: ["base"])
    if value is None:
        monkeypatch.delenv("P2POS_COMPILE", raising=False)
    else:
        monkeypatch.setenv("P2POS_COMPILE", value)
    # Unset: compiled by default wherever a C compiler and Python's headers exist (as here).
    compiles = value == "1" or (value is None and compile_core.missing_toolchain(need_mypyc=False) is None)
    extra = build_backend.compile_requirements() if compiles else []
    assert build_backend.get_requires_for_build_wheel() == ["base", *extra]


@pytest.mark.parametrize(
    ("environ", "toolchain", "expected"),
    [
        ({"P2POS_COMPILE": "1"}, False, True),
        ({"P2POS_COMPILE": "0"}, True, False),
        ({}, True, True),
        ({}, False, False),
    ],
)
def test_the_core_is_compiled_by_default_where_a_toolchain_exists(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], toolchain: bool, expected: bool
) -> None:
    monkeypatch.setattr(compile_core, "missing_toolchain", lambda *, need_mypyc=True: None if toolchain else "no cc")
    assert compile_core.wants_compiled(environ) is expected


def test_the_package_list_names_every_package() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {
        ".".join([package, *init.parent.relative_to(REPO_ROOT / folder).parts])
        for package, folder in PACKAGE_DIRS.items()
        for init in (REPO_ROOT / folder).rglob("__init__.py")
    }
    assert listed == found


# The build tests below build from a copy of the project in which junk lies where a work tree
# has it: they must find none of it in what they build.
JUNK = [
    ".venv/lib/site-packages/junk.py",
    "build/junk.py",
    "build/mypyc-core/p2pos/proto/junk.py",
    "p2pos_proto/__pycache__/errors.cpython-311.pyc",
    # What an earlier compiled build may leave: a removed module, an extension, mypyc's library.
    "build/lib/p2pos/proto/removed_module.py",
    f"build/lib/p2pos/proto/channels/connection{EXTENSION_SUFFIXES[0]}",
    f"build/lib/0000stale__mypyc{EXTENSION_SUFFIXES[0]}",
]


@pytest.fixture(scope="module")
def project_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("project")
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy2(REPO_ROOT / name, copy / name)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO_ROOT / "tools", copy / "tools", ignore=ignore)
    for folder in PACKAGE_DIRS.values():
        shutil.copytree(REPO_ROOT / folder, copy / folder, ignore=ignore)
    for name in JUNK:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_bytes(b"junk")
    return copy


def _build(copy: Path, hook: str) -> Path:
    """Run one build hook of the in-tree backend, as pip would (cwd the project); the built file."""
    out = copy / "dist" / hook
    env = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "P2POS_COMPILE")}
    env["PYTHONPATH"] = str(copy / "tools")
    env["P2POS_COMPILE"] = "0"  # the pure build: a compiled one is proven by make test-install
    script = f"import build_backend, sys; print(build_backend.{hook}(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-c", script, str(out)],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out / done.stdout.strip().splitlines()[-1]


def test_the_sdist_carries_the_build_tools_and_no_junk(project_copy: Path) -> None:
    with tarfile.open(_build(project_copy, "build_sdist")) as archive:
        names = {name.partition("/")[2] for name in archive.getnames()}
    assert {"pyproject.toml", "setup.py", "tools/build_backend.py", "tools/compile_core.py"} <= names
    assert "p2pos_proto/channels/connection.py" in names
    assert not [name for name in names if name.startswith((".venv", "build/")) or "__pycache__" in name]


def test_a_wheel_built_with_compile_0_is_pure_and_clean(project_copy: Path) -> None:
    wheel = _build(project_copy, "build_wheel")
    assert wheel.name.endswith("-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert "p2pos/proto/channels/connection.py" in names
    assert "p2pos/adapters/build_info.py" in names
    assert not [name for name in names if name.endswith(tuple(EXTENSION_SUFFIXES))]
    assert not [name for name in names if "junk" in name or "removed_module" in name or name.endswith(".pyc")]
