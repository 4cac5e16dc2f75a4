"""The system side of the namespace lab: namespaces, entering them, sysctls, processes, sweeping.

netlab.py builds topologies with these; a test rarely needs them directly (netlab re-exports
``listed_namespaces``, ``sysctl_get``, ``wait_until`` and ``PREFIX``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

#: Every lab namespace is ``p2lab-<pid>-<hex6>-<role>``, its temp folder ``p2lab-<pid>-<hex6>-<random>``.
PREFIX = "p2lab"
_NAME = re.compile(rf"^{PREFIX}-(\d+)-[0-9a-f]{{6}}-[a-z0-9-]+$")
_TMP_NAME = re.compile(rf"^{PREFIX}-(\d+)-[0-9a-f]{{6}}-\w+$")
_CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def tool(name: str) -> str:
    """The path of a system program (``ip``, ``nft``, ``tc``, ``turnserver``), or fail saying how to get it."""
    found = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if Path(p).exists()), None)
    if found is None:
        pytest.fail(f"`{name}` is needed by the namespace lab (`make system-deps` installs it)", pytrace=False)
    return found


def listed_namespaces() -> set[str]:
    out = subprocess.run([tool("ip"), "netns", "list"], capture_output=True, text=True, check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def launcher() -> list[str]:
    """``setpriv --pdeathsig KILL`` (util-linux): a lab process dies with the test process that started it."""
    found = shutil.which("setpriv")
    return [found, "--pdeathsig", "KILL"] if found else []


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie, killed but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def kill_namespace_pids(ns: str) -> None:
    """SIGKILL whatever still runs in namespace ``ns`` (the pids ``ip netns pids`` lists)."""
    out = subprocess.run([tool("ip"), "netns", "pids", ns], capture_output=True, text=True, check=False).stdout
    for word in out.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(word), signal.SIGKILL)


def sweep() -> list[str]:
    """Delete lab namespaces and temp folders left by runs whose process is gone; return their names."""
    swept = []
    for ns in sorted(listed_namespaces()):
        match = _NAME.match(ns)
        if match is None or pid_alive(int(match.group(1))):
            continue
        kill_namespace_pids(ns)
        subprocess.run([tool("ip"), "netns", "del", ns], capture_output=True, check=False)
        swept.append(ns)
    for folder in Path(tempfile.gettempdir()).glob(f"{PREFIX}-*-*"):
        match = _TMP_NAME.match(folder.name)
        if match is not None and folder.is_dir() and not pid_alive(int(match.group(1))):
            shutil.rmtree(folder, ignore_errors=True)
            swept.append(str(folder))
    return swept


@contextlib.contextmanager
def inside(ns: str) -> Iterator[None]:
    """Run the block with this thread in namespace ``ns``: sockets made here stay in it for good."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if _libc.setns(target, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns into {ns}: {os.strerror(err)}")
        finally:
            os.close(target)
        try:
            yield
        finally:
            if _libc.setns(home, _CLONE_NEWNET) != 0:  # never leave the test in a lab namespace
                os._exit(70)
    finally:
        os.close(home)


def sysctl_get(ns: str, key: str) -> str:
    """Read a sysctl as namespace ``ns`` sees it (``/proc/sys/net`` is per network namespace)."""
    with inside(ns):
        return Path("/proc/sys", *key.split(".")).read_text().strip()


def sysctl_set(ns: str, key: str, value: str | int) -> None:
    with inside(ns):
        Path("/proc/sys", *key.split(".")).write_text(f"{value}\n")


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the process group, SIGKILL it after 3 s, and reap the process."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):  # the rest of its group, even if the leader is gone
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def is_lab_address(address: str) -> bool:
    """Whether an address is one the lab may use (198.18.0.0/15, 10/8 or 2001:2::/48)."""
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(net) for net in ("198.18.0.0/15", "10.0.0.0/8", "2001:2::/48"))


def wait_until(predicate: Callable[[], object], timeout: float, step: float = 0.02) -> bool:
    """Poll ``predicate()`` until true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())
