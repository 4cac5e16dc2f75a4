"""The lab leaves nothing behind: namespaces, processes (and their children), wires, temp files.

Also: a new lab sweeps what a crashed run left (namespaces of its prefix whose pid is gone, and
what still runs in them) without touching a live run's; and building a two-peer topology is fast.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import netlab
import pytest

pytestmark = [*netlab.MARKS, pytest.mark.pure_core]  # no core code: once is enough


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_nothing_survives_an_exception_inside_the_lab(error: type[BaseException]) -> None:
    seen: dict[str, object] = {}
    with pytest.raises(error), netlab.lab() as lab:
        a = lab.peer("a", "eim", wan=netlab.Impairment(delay_ms=5))  # a wire process where netem is missing
        b = lab.peer("b", "none")
        server = lab.server("s")
        lab.reflector(server)
        # a process with a child in its group, and one started in a namespace behind the lab's back
        group = lab.spawn(a.ns, ["sh", "-c", "sleep 60 & echo $!; wait"])
        stray = subprocess.Popen(["ip", "netns", "exec", b.ns, "sleep", "60"], start_new_session=True)
        assert netlab.wait_until(lambda: lab.log(group).strip().isdigit(), timeout=5)
        seen.update(
            namespaces=lab.namespaces(),
            pids=[group.pid, int(lab.log(group)), stray.pid, *(p.pid for p in lab.processes)],
            tmp=lab.tmp,
            stray=stray,
        )
        assert {a.ns, b.ns, lab.internet} <= netlab.listed_namespaces()
        raise error("a test failing inside the lab")
    stray_proc = seen["stray"]
    assert isinstance(stray_proc, subprocess.Popen)
    stray_proc.wait(timeout=5)  # reap it: it was killed, this only collects its status
    names = seen["namespaces"]
    assert isinstance(names, list) and len(names) == 4  # inet, a, a's router, b
    assert not set(names) & netlab.listed_namespaces()
    pids = seen["pids"]
    assert isinstance(pids, list)
    assert netlab.wait_until(lambda: not any(alive(pid) for pid in pids), timeout=5), [p for p in pids if alive(p)]
    tmp = seen["tmp"]
    assert isinstance(tmp, os.PathLike) and not os.path.exists(tmp)


def test_a_new_lab_sweeps_what_a_crashed_run_left() -> None:
    dead = subprocess.Popen(["true"])  # a pid that no longer runs: the "crashed" run's
    dead.wait()
    assert not alive(dead.pid)
    crashed = f"{netlab.PREFIX}-{dead.pid}-abcdef-inet"
    live = f"{netlab.PREFIX}-{os.getpid()}-fedcba-inet"  # a run still going (this one): kept
    subprocess.run(["ip", "netns", "add", crashed], check=True)
    subprocess.run(["ip", "netns", "add", live], check=True)
    left_running = subprocess.Popen(["ip", "netns", "exec", crashed, "sleep", "60"], start_new_session=True)
    crashed_tmp = Path(tempfile.mkdtemp(prefix=f"{netlab.PREFIX}-{dead.pid}-abcdef-"))
    (crashed_tmp / "turnserver.out").write_text("left by a crashed run")
    try:
        # (a lab of another test run going on at the same time may sweep it first: same outcome)
        in_place = netlab.wait_until(
            lambda: str(left_running.pid) in netns_pids(crashed) or crashed not in netlab.listed_namespaces(), timeout=5
        )
        assert in_place
        with netlab.lab() as lab:
            assert crashed not in netlab.listed_namespaces()
            assert not crashed_tmp.exists()
            assert live in netlab.listed_namespaces()
            assert lab.internet in netlab.listed_namespaces()
        left_running.wait(timeout=5)
        assert left_running.returncode != 0  # killed (-9), or its namespace went before it could enter
    finally:
        shutil.rmtree(crashed_tmp, ignore_errors=True)
        for ns in (crashed, live):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        if left_running.poll() is None:
            left_running.kill()
            left_running.wait()


def netns_pids(ns: str) -> list[str]:
    return subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False).stdout.split()


def test_a_two_peer_topology_builds_fast() -> None:
    started = time.monotonic()
    with netlab.lab() as lab:
        lab.server("relay")
        lab.peer("a", "eim")
        lab.peer("b", "random")
        built = time.monotonic() - started
    total = time.monotonic() - started
    print(f"\ntwo-peer lab: built in {built * 1000:.0f} ms, up and down in {total * 1000:.0f} ms", end="")
    assert built < 2.0
