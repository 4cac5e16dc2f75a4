"""The core is either wholly pure Python or wholly compiled (setup.py, tools/compile_core.py).

``make test`` runs the suite twice: against the editable install (pure Python)
and against the wheel built with ``P2POS_COMPILE=1`` (``make test-compiled``).
In the second run every per-packet module must come from an extension: a
module that silently fell back to its Python source would make the compiled
run test the wrong thing, and a compiled install slower than promised.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

from conftest import COMPILED_CORE, REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "tools"))
import compile_core


def test_the_per_packet_modules_are_all_pure_or_all_compiled() -> None:
    modules = {name: importlib.import_module(f"p2pos.proto.{name}") for name in compile_core.COMPILED}
    compiled = sorted(name for name, module in modules.items() if not str(module.__file__).endswith(".py"))
    assert compiled == (sorted(modules) if COMPILED_CORE else [])


def test_the_rest_of_the_core_stays_interpreted() -> None:
    # Interpreted code subclasses their classes (tools/compile_core.py says why).
    for name in ("errors", "events"):
        assert str(importlib.import_module(f"p2pos.proto.{name}").__file__).endswith(".py")


def test_the_compiled_modules_are_the_ones_with_python_sources() -> None:
    core = REPO_ROOT / "p2pos_proto"
    sources = {".".join(path.relative_to(core).with_suffix("").parts) for path in core.rglob("*.py")}
    assert set(compile_core.COMPILED) <= sources


def test_the_core_needs_no_build_tool_at_run_time() -> None:
    # A compiled install has the project's dependencies, not mypy's: mypy_extensions must not be
    # imported at run time (the decorator that lets tests subclass SecureSession is compile-time only).
    script = (
        "import sys; sys.modules['mypy_extensions'] = None\n"
        "import p2pos.proto\n"
        "from p2pos.proto.session.session import SecureSession\n"
        "type('Tapped', (SecureSession,), {})\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
