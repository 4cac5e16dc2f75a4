"""Processes that go away and come back: a rendezvous node killed mid-session and restarted, and a
daemon restarted with its home (real processes on loopback; daemon_lab.py)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from daemon_lab import HASH_STDIN, Daemon, Lab, Relay, paced_writer, random_file, wait_for


def _reset_then_registered(events: list[dict[str, Any]], after: int) -> bool:
    """Whether ``events`` hold, after number ``after``, a loss by stateless reset then a registration."""
    lost = [e for e in events if e.get("seq", 0) > after and e["type"] == "registration_lost"]
    return bool(lost) and any(e["type"] == "registered" and e["seq"] > lost[0]["seq"] for e in events)


def test_rendezvous_node_killed_and_restarted(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small_digest = random_file(small, 200_000)
    long = tmp_path / "long"
    long_digest = random_file(long, 20 * 1024 * 1024)
    with Lab(tmp_path) as lab:
        relay = lab.relay()
        a = lab.daemon("a", relay, keepalive=1)
        b = lab.daemon("b", relay, keepalive=1)
        lab.serve(b, "sink", HASH_STDIN, allow=[a.peer_id])
        code, first = lab.run(a, "pipe", b.peer_id, "sink", stdin=small)
        assert code == 0, first.stderr_text()
        assert first.stdout_text().split() == [small_digest]
        seen = {d.name: d.events(lambda e: any(x["type"] == "registered" for x in e))[-1]["seq"] for d in (a, b)}

        # A pipe that runs for several seconds, fed slowly: the node dies while it runs.
        long_pipe = lab.start("long-pipe", "pipe", b.peer_id, "sink", "--home", str(a.home), stdin=subprocess.PIPE)
        assert long_pipe.popen.stdin is not None
        writer = paced_writer(long_pipe.popen.stdin, long, seconds=6)
        time.sleep(1.5)
        lab.stop(relay.proc, signal.SIGKILL)
        killed_at = time.monotonic()
        assert long_pipe.running(), "the long pipe ended before the node was killed: it proves nothing"

        # The session a-b does not need the node: a new pipe on it works while the node is gone.
        code, during = lab.run(a, "pipe", b.peer_id, "sink", stdin=small)
        assert code == 0, during.stderr_text()
        assert during.stdout_text().split() == [small_digest]

        # The node comes back on the same port with the same identity (its home): each daemon's next
        # keepalive draws a stateless reset, and the daemon registers again at once.
        time.sleep(max(0.0, 1.5 - (time.monotonic() - killed_at)))
        again = lab.relay("relay", port=relay.port)
        assert again.bootstrap == relay.bootstrap
        restarted_at = time.monotonic()
        for daemon in (a, b):
            after = seen[daemon.name]
            events = daemon.events(lambda e: _reset_then_registered(e, after), timeout=15)
            lost = [e for e in events if e["seq"] > seen[daemon.name] and e["type"] == "registration_lost"]
            assert "stateless reset" in lost[0]["why"], lost
            assert all("stateless reset" in e["why"] for e in lost), f"{daemon.name} lost it otherwise: {lost}"
            daemon.wait_registered(timeout=10)
        assert time.monotonic() - restarted_at < 10
        assert "restarted (stateless reset)" in a.proc.stderr_text()

        writer.join(60)
        assert long_pipe.wait(60) == 0, long_pipe.stderr_text()
        assert long_pipe.stdout_text().split() == [long_digest]

        # Lookups work again through the restarted node: a third daemon reaches b through it.
        c = lab.daemon("c", again)
        lab.serve(b, "open", HASH_STDIN)
        code, third = lab.run(c, "pipe", b.peer_id, "open", stdin=small)
        assert code == 0, third.stderr_text()
        assert third.stdout_text().split() == [small_digest]
        lab.check_no_tracebacks()


def _a_reaches_b(lab: Lab, small: Path) -> tuple[Relay, Daemon, Daemon]:
    """A relay and daemons a and b; b serves "sink" to a, and a pipes ``small`` to it once."""
    relay = lab.relay()
    a, b = lab.daemon("a", relay), lab.daemon("b", relay)
    lab.serve(b, "sink", HASH_STDIN, allow=[a.peer_id])
    code, pipe = lab.run(a, "pipe", b.peer_id, "sink", stdin=small)
    assert code == 0, pipe.stderr_text()
    return relay, a, b


def test_restarted_daemon_keeps_its_identity_and_is_reachable(tmp_path: Path) -> None:
    small = tmp_path / "small"
    digest = random_file(small, 200_000)
    with Lab(tmp_path) as lab:
        relay, a, b = _a_reaches_b(lab, small)

        code, stop = lab.run(b, "stop")
        assert code == 0, stop.stderr_text()
        assert b.proc.wait(20) == 0, b.proc.stderr_text()
        for leftover in ("api.sock", "api.port", "api.token", "daemon.pid"):
            assert not (b.home / "run" / leftover).exists(), leftover
        # a was told: the session is gone from its status.
        wait_for("a to drop its session with the stopped b", lambda: not a.status()["peers"], timeout=15)

        b2 = lab.daemon("b", relay)
        assert b2.peer_id == b.peer_id
        lab.serve(b2, "sink", HASH_STDIN, allow=[a.peer_id])
        code, pipe = lab.run(a, "pipe", b.peer_id, "sink", stdin=small)
        assert code == 0, pipe.stderr_text()
        assert pipe.stdout_text().split() == [digest]
        lab.check_no_tracebacks()


def test_daemon_killed_without_goodbye_is_reachable_after_restart(tmp_path: Path) -> None:
    """A crash (SIGKILL) tells nobody: a still holds a session to the dead b.  Once b is back (on a
    new port, with the same identity), a pipe from a to it must work without waiting for that stale
    session's idle timeout (30 s)."""
    small = tmp_path / "small"
    digest = random_file(small, 200_000)
    with Lab(tmp_path) as lab:
        relay, a, b = _a_reaches_b(lab, small)

        lab.stop(b.proc, signal.SIGKILL)
        b2 = lab.daemon("b", relay)
        assert b2.peer_id == b.peer_id
        lab.serve(b2, "sink", HASH_STDIN, allow=[a.peer_id])
        started = time.monotonic()
        code, pipe = lab.run(a, "pipe", b.peer_id, "sink", stdin=small, timeout=60)
        took = time.monotonic() - started
        assert code == 0, pipe.stderr_text()
        assert pipe.stdout_text().split() == [digest]
        assert took < 15, f"the pipe took {took:.1f} s: it waited for the stale session"
        lab.check_no_tracebacks()
