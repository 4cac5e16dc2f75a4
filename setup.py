"""Build hook for the compiled core: everything else is in pyproject.toml.

With ``P2POS_COMPILE=1`` a wheel (``pip wheel .``, ``pip install .``) also carries
the core's per-packet modules compiled by mypyc (tools/compile_core.py), next to
their Python sources: the import system prefers the extension, and the wheel is
tagged for this Python and platform.  mypy (which ships mypyc) and a C compiler
are then needed at build time.  Without the variable, and for editable installs
always, the package is pure Python, exactly as before.

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
COMPILE = os.environ.get("P2POS_COMPILE") == "1"
#: Where tools/compile_core.py builds (and caches) the compiled core for wheels.
CORE_BUILD = ROOT / "build" / "mypyc-core"


class BuildPyWithCompiledCore(build_py):
    """``build_py``, then the compiled core's extension modules into the build tree."""

    def run(self) -> None:
        super().run()
        if not COMPILE or self.editable_mode:
            return
        sys.path.insert(0, str(ROOT / "tools"))
        import compile_core

        compile_core.build(CORE_BUILD)
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
    setup_requires=["mypy>=1.10"] if COMPILE else [],
)
