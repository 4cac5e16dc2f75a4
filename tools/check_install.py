#!/usr/bin/env python3
"""Prove that ``P2POS_COMPILE=1 pip install .`` works in a clean virtualenv (``make test-install``).

    python tools/check_install.py [--python python3] [--keep]

In a new temporary folder: copies the files a fresh clone has (``git ls-files``: tracked and
untracked-but-not-ignored, so no .venv, build/ or caches, and no compiled core to reuse), makes
a virtualenv with ``--python``, and there

1. ``P2POS_COMPILE=1 pip install SRC`` with pip's normal build isolation: the build environment
   holds only what the build backend asks for (tools/build_backend.py), and mypyc compiles the
   core from scratch in it;
2. ``p2pos version`` must report the compiled core, loaded from that virtualenv;
3. ``p2pos demo`` must succeed;
4. ``pip wheel --no-deps SRC`` without the variable must give a pure-Python wheel
   (``py3-none-any``, no extension module).

Dependencies come from the package index as pip is configured (its cache makes reruns quicker).
Exits non-zero, with the failing step's output, on the first failure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class CheckFailed(Exception):
    """A step failed: the message says which and shows its output."""


def _run(
    command: Sequence[str | Path], *, env: dict[str, str] | None = None, timeout: float = 1800
) -> subprocess.CompletedProcess[str]:
    shown = " ".join(str(part) for part in command)
    print(f"check_install: $ {shown}", flush=True)
    started = time.monotonic()
    done = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        env={**_clean_environ(), **(env or {})},
        timeout=timeout,
        check=False,
    )
    print(f"check_install:   ({time.monotonic() - started:.0f} s)", flush=True)
    if done.returncode != 0:
        raise CheckFailed(f"{shown} exited {done.returncode}\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}")
    return done


def fresh_clone_files() -> list[Path]:
    """The files of the work tree a fresh clone has (plus untracked, not ignored ones), relative to ROOT."""
    listed = _run(["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"]).stdout
    names = sorted({name for name in listed.split("\0") if name})
    return [Path(name) for name in names if (ROOT / name).is_file()]  # a deleted tracked file is not there


def copy_tree(dest: Path) -> None:
    for relative in fresh_clone_files():
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, target)


def _clean_environ() -> dict[str, str]:
    """The caller's environment without what would leak the work tree or its virtualenv into the check."""
    leaks = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "P2POS_COMPILE"}
    return {name: value for name, value in os.environ.items() if name not in leaks}


def check(python: str, work: Path) -> None:
    src, venv = work / "src", work / "venv"
    copy_tree(src)
    _run([python, "-m", "venv", venv])
    bin_dir = venv / "bin"
    pip: list[str | Path] = [bin_dir / "python", "-m", "pip"]

    _run([*pip, "install", "-q", src])  # the default: compiled wherever a C compiler exists
    version = _run([bin_dir / "p2pos", "version"], timeout=120).stdout
    print(version, end="", flush=True)
    if "core compiled (mypyc)" not in version:
        raise CheckFailed(f"p2pos version does not report the compiled core:\n{version}")
    if str(venv.resolve()) not in version:
        raise CheckFailed(f"the core is not loaded from the new virtualenv {venv}:\n{version}")
    demo = _run([bin_dir / "p2pos", "demo"], timeout=120).stdout
    if "SAS" not in demo:
        raise CheckFailed(f"p2pos demo printed no SAS:\n{demo}")

    wheels = work / "pure"
    _run([*pip, "wheel", "-q", "--no-deps", "-w", wheels, src], env={"P2POS_COMPILE": "0"})
    (wheel,) = wheels.glob("p2pos-*.whl")
    if not wheel.name.endswith("-py3-none-any.whl"):
        raise CheckFailed(f"with P2POS_COMPILE=0 the wheel is not pure Python: {wheel.name}")
    with zipfile.ZipFile(wheel) as archive:
        compiled = [name for name in archive.namelist() if name.endswith(tuple(EXTENSION_SUFFIXES))]
    if compiled:
        raise CheckFailed(f"with P2POS_COMPILE=0 the wheel holds extensions: {compiled}")
    print(f"check_install: ok: compiled install, demo, and pure wheel {wheel.name}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--python", default="python3", help="the interpreter for the new virtualenv")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="p2pos-install-"))
    print(f"check_install: in {work}", flush=True)
    started = time.monotonic()
    try:
        check(args.python, work)
    except CheckFailed as exc:
        print(f"check_install: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"check_install: {time.monotonic() - started:.0f} s in all", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
