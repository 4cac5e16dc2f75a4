#!/usr/bin/env python3
"""Compile the core's per-packet modules with mypyc: the same source, run as C extensions.

    python tools/compile_core.py [--out build/compiled]
    python tools/compile_core.py --check    # can this machine compile it? (else: why not, exit 1)

Copies ``p2pos_proto/`` to ``OUT/p2pos/proto/`` and compiles the modules in
``COMPILED`` there with mypyc (shipped with mypy, a test dependency; needs a C
compiler and the Python headers).  Put ``OUT`` first on ``PYTHONPATH`` and
``import p2pos.proto`` loads the compiled core; ``p2pos`` is a namespace
package, so ``p2pos.transports`` and the rest still come from the installed
project.  Nothing in the source tree changes, so the editable development
install never picks up a stale extension.

setup.py calls ``build`` when a wheel is built with ``P2POS_COMPILE=1`` and
ships the extensions beside the Python sources; ``make compiled`` builds that
wheel and unpacks it into build/compiled, which CI tests and ``make run`` runs
(falling back to the pure-Python core, with the reason ``--check`` prints, where
this machine cannot compile it).

Why: the channel layer spends almost all its time in per-packet Python
(bench/channels.py); compiled, the same code runs about 2.5 times as fast.  The
pure-Python core stays the reference: CI runs the test suite against both
(``make test-compiled``), and ``make bench`` measures both.

``SecureSession`` (session.py) and ``RelayCore`` (relay/server.py) are compiled
with ``allow_interpreted_subclasses`` (the staged copy is marked, see
``SUBCLASSED``): tests and the vector generator subclass them.  ``errors.py`` and
``events.py`` stay interpreted: interpreted code subclasses their classes too.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from importlib.machinery import EXTENSION_SUFFIXES
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The modules on the per-packet path (the endpoint, the session and the channel layer, and what they
#: call per packet; the relay's messages, state machines and WebSocket frames, per relayed record), as
#: dotted names under ``p2pos.proto``.
COMPILED = (
    "channels.channel",
    "channels.connection",
    "channels.flow",
    "channels.frames",
    "channels.liveness",
    "channels.pathing",
    "channels.receiving",
    "channels.recvbuf",
    "channels.sendbuf",
    "channels.sending",
    "common.ranges",
    "common.varint",
    "endpoint.demux",
    "endpoint.endpoint",
    "nat.stun_message",
    "nat.turn_framing",
    "endpoint.timers",
    "paths.path",
    "recovery.acks",
    "recovery.bbr",
    "recovery.congestion",
    "recovery.delivery",
    "recovery.pacing",
    "recovery.pmtu",
    "recovery.recovery",
    "recovery.rtt",
    "relay.client",
    "relay.messages",
    "relay.server",
    "relay.wsframes",
    "session.record",
    "session.replay",
    "session.session",
    "session.wire",
)
#: Compiled classes that tests (and the vector generator) subclass: mypyc must allow that.
SUBCLASSED = {"session.session": "SecureSession", "relay.server": "RelayCore"}
#: A file in ``OUT`` that says what was compiled from which sources (the build is skipped when current).
STAMP = "p2pos-compiled.txt"


def _mypy_version() -> str:
    try:
        return f"mypy {version('mypy')}"
    except PackageNotFoundError:
        return "no mypy"


def _fingerprint() -> str:
    sources = [*sorted((ROOT / "p2pos_proto").rglob("*.py")), Path(__file__).resolve()]  # and this tool's own edits
    parts = [f"{path.relative_to(ROOT)} {path.stat().st_size} {path.stat().st_mtime_ns}" for path in sources]
    return "\n".join([sys.version, _mypy_version(), *parts, *COMPILED]) + "\n"


def wants_compiled(environ: dict[str, str] | None = None) -> bool:
    """Whether a wheel build compiles the core: ``P2POS_COMPILE=1`` always (failing without a
    toolchain), ``P2POS_COMPILE=0`` never, and by default wherever a C compiler and Python's
    headers exist (mypyc itself the build environment gets from tools/build_backend.py)."""
    value = (os.environ if environ is None else environ).get("P2POS_COMPILE", "")
    if value in ("0", "1"):
        return value == "1"
    return missing_toolchain(need_mypyc=False) is None


def missing_toolchain(*, need_mypyc: bool = True) -> str | None:
    """Why this Python cannot compile the core here (``None`` when it can): compiler, headers, mypyc.

    The compiler is the one setuptools will call: ``$CC``, else the one Python was built with.
    """
    command = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    compiler = (shlex.split(command) or ["cc"])[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler!r} is not on PATH)"
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.is_file():
        return f"no Python headers ({headers} is missing: install the python3-dev package)"
    if need_mypyc and importlib.util.find_spec("mypyc") is None:
        return "mypyc is not installed (pip install mypy)"
    return None


def _path(module: str) -> str:
    """``channels.connection`` -> ``channels/connection``: a compiled module's path under the package."""
    return module.replace(".", "/")


def _allow_subclasses(path: Path, cls: str) -> None:
    """Mark ``cls`` in the staged copy so that interpreted code may subclass the compiled class."""
    text = path.read_text(encoding="utf-8")
    header = f"class {cls}:"
    if text.count(header) != 1:
        raise SystemExit(f"compile_core: expected one {header!r} in {path.name}")
    text = text.replace(header, f"@mypyc_attr(allow_interpreted_subclasses=True)\n{header}")
    future = "from __future__ import annotations\n"
    # Imported for mypyc only: the decorator is applied at compile time, and mypy_extensions need
    # not be installed where the compiled core runs.
    imports = "\nfrom typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from mypy_extensions import mypyc_attr\n"
    text = text.replace(future, future + imports, 1)
    path.write_text(text, encoding="utf-8")


def build(out: Path) -> None:
    stamp = out / STAMP
    fingerprint = _fingerprint()
    if stamp.exists() and stamp.read_text(encoding="utf-8") == fingerprint:
        print(f"compile_core: {out} is current")
        return
    reason = missing_toolchain()
    if reason is not None:
        raise SystemExit(f"compile_core: cannot compile the core: {reason}")
    if out.exists():
        shutil.rmtree(out)
    package = out / "p2pos" / "proto"
    shutil.copytree(ROOT / "p2pos_proto", package, ignore=shutil.ignore_patterns("__pycache__"))
    # mypyc names modules after their packages: p2pos/__init__.py makes them p2pos.proto.*; it is
    # removed afterwards so that p2pos stays a namespace package shared with the installed project.
    init = out / "p2pos" / "__init__.py"
    init.write_text("", encoding="utf-8")
    for module, cls in SUBCLASSED.items():
        _allow_subclasses(package / f"{_path(module)}.py", cls)
    sources = [f"p2pos/proto/{_path(name)}.py" for name in COMPILED]
    command = [sys.executable, "-m", "mypyc", *sources]
    result = subprocess.run(command, cwd=out, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"compile_core: mypyc failed ({result.returncode})")
    init.unlink()
    shutil.rmtree(out / "build", ignore_errors=True)
    built = sorted(str(path.relative_to(package)) for path in extensions(package))
    missing = [name for name in COMPILED if not any(so.startswith(_path(name) + ".") for so in built)]
    if missing:
        raise SystemExit(f"compile_core: no extension built for {missing}")
    stamp.write_text(fingerprint, encoding="utf-8")
    print(f"compile_core: {len(built)} modules compiled into {package}")


def extensions(folder: Path) -> list[Path]:
    """The extension modules under ``folder`` (``.so`` here, ``.pyd`` on Windows), the shared mypyc one included."""
    return sorted(path for path in folder.rglob("*") if path.name.endswith(tuple(EXTENSION_SUFFIXES)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "compiled", help="output folder")
    parser.add_argument("--check", action="store_true", help="only say why this machine cannot compile (exit 1)")
    args = parser.parse_args(argv)
    if args.check:
        reason = missing_toolchain()
        print(reason or "compile_core: this machine can compile the core")
        return 0 if reason is None else 1
    build(args.out.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
