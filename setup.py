"""Build hook for the compiled core: everything else is in pyproject.toml.

With ``P2POS_COMPILE=1`` a wheel (``pip wheel .``, ``pip install .``) also carries
the core's per-packet modules compiled by mypyc (tools/compile_core.py), next to
their Python sources: the import system prefers the extension, and the wheel is
tagged for this Python and platform.  A C compiler (and Python's headers) are then
needed at build time, and mypy with the core's typed dependencies: the build backend
(tools/build_backend.py) asks the isolated build environment for those.  Without the
variable, and for editable installs always, the package is pure Python, exactly as
before.

The compiled core runs the channel layer about 2.5 times as fast
(bench/channels.py); CI runs every test and conformance case against the wheel's
modules (``make test-compiled``).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tools"))
import compile_core  # noqa: E402

#: Compile the core into this wheel: by default wherever a C compiler and Python's headers exist;
#: ``P2POS_COMPILE=1`` insists (and fails without them), ``P2POS_COMPILE=0`` builds pure Python.
COMPILE = compile_core.wants_compiled()
#: Whether the builder asked for it explicitly: then a failed compile fails the build.
INSISTED = os.environ.get("P2POS_COMPILE") == "1"
#: Where tools/compile_core.py builds (and caches) the compiled core for wheels.
CORE_BUILD = ROOT / "build" / "mypyc-core"


class BuildPyWithCompiledCore(build_py):
    """``build_py``, then the compiled core's extension modules into the build tree."""

    def run(self) -> None:
        if not self.editable_mode:
            # pip builds in the source tree: what an earlier build left in build/lib* (a module
            # since removed, extensions compiled from older sources) must not reach this wheel.
            build_lib = Path(self.build_lib)
            shutil.rmtree(build_lib / "p2pos", ignore_errors=True)
            for stale in compile_core.extensions(build_lib):  # mypyc's shared library lies at the top
                stale.unlink()
        super().run()
        if not COMPILE or self.editable_mode:
            return
        try:
            compile_core.build(CORE_BUILD)
        except (SystemExit, OSError) as failure:
            if INSISTED:
                raise
            # Chosen by default, not asked for: the pure-Python core still works, so say why and go on.
            print(f"p2pos: building the pure-Python core; compiling it failed: {failure}", file=sys.stderr)
            return
        for extension in compile_core.extensions(CORE_BUILD):
            target = Path(self.build_lib) / extension.relative_to(CORE_BUILD)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(extension, target)


class CompiledCoreDistribution(Distribution):
    """Tells bdist_wheel that the wheel holds extensions (a platform tag, not py3-none-any)."""

    def has_ext_modules(self) -> bool:
        return COMPILE or super().has_ext_modules()


setup(
    cmdclass={"build_py": BuildPyWithCompiledCore},
    distclass=CompiledCoreDistribution,
)
