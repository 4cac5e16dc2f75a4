"""The daemon's hole punching (adapters/punching.py, spec/punch.md) between real daemons on loopback.

Loopback has no NAT: once a daemon measured it (spec/nat.md §3.6; the node has no second address,
so only "no translation" is known) the plan is a simultaneous open (spec/punch.md §3.1 row 4),
before that a plain dial (row 3); either way both sides probe each other's observed address with
the introduction's ticket, and both see their probes answered.  The NAT kinds themselves are the namespace lab's matter
(tests/lab) and the emulator's (tests/simulation, tests/nat)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daemon_lab import Lab


def _ended(events: list[dict[str, Any]]) -> bool:
    return any(e.get("type") in ("punch_succeeded", "punch_failed") for e in events)


def test_an_introduction_starts_a_punch_on_both_sides_and_both_succeed(tmp_path: Path) -> None:
    with Lab(tmp_path) as lab:
        relay = lab.relay()
        a, b = lab.daemon("a", relay), lab.daemon("b", relay)
        lab.serve(b, "echo", ["cat"], allow=[a.peer_id])
        code, pipe = lab.run(a, "pipe", b.peer_id, "echo", stdin=None, timeout=60)
        assert code == 0, pipe.stderr_text()
        for daemon, leading, peer in ((a, True, b.peer_id), (b, False, a.peer_id)):
            events = daemon.events(_ended)
            started = [e for e in events if e.get("type") == "punch_started"]
            assert started and started[0]["peer_id"] == peer and started[0]["leading"] is leading, events
            strategy = started[0]["strategy"]
            assert "not measured" in strategy or "both map endpoint-independently" in strategy, started
            (ended,) = [e for e in events if e.get("type") in ("punch_succeeded", "punch_failed")]
            assert ended["type"] == "punch_succeeded", ended
            assert ended["peer_id"] == peer
            assert 1 <= ended["probes"] <= 8
            counts = daemon.status()["nat"]["punching"]  # API-3.9: the same punch, counted
            assert (counts["started"], counts["succeeded"], counts["failed"]) == (1, 1, 0), counts
            assert counts["probes_sent"] == ended["probes"] and counts["answers_sent"] == ended["answers"]
        code, text = lab.run(a, "status", timeout=30)
        assert code == 0 and "punching 1 started, 1 direct, 0 failed" in text.stdout_text(), text.stderr_text()
        lab.check_no_tracebacks()


def test_the_ipv6_sockets_punch_their_own_pair_beside_the_ipv4_punch(tmp_path: Path) -> None:
    """Both daemons listen on IPv4 and IPv6 loopback: the introduction's socket (IPv4) punches the
    observed address, and each side's IPv6 socket punches the peer's IPv6 address with the IPv6
    plan (spec/punch.md §3.9: a dial whatever the IPv4 row), both ways, and both succeed there."""
    with Lab(tmp_path) as lab:
        relay = lab.relay()
        v6 = ("--listen", "[::1]:0")
        a, b = lab.daemon("a", relay, extra=v6), lab.daemon("b", relay, extra=v6)
        lab.serve(b, "echo", ["cat"], allow=[a.peer_id])
        code, pipe = lab.run(a, "pipe", b.peer_id, "echo", stdin=None, timeout=60)
        assert code == 0, pipe.stderr_text()

        def both_ended(events: list[dict[str, Any]]) -> bool:
            return sum(e.get("type") in ("punch_succeeded", "punch_failed") for e in events) >= 2

        for daemon, peer in ((a, b), (b, a)):
            events = daemon.events(both_ended)
            started = {e["address"]: e for e in events if e.get("type") == "punch_started"}
            ipv6 = [address for address in started if address.startswith("[::1]:")]
            assert len(started) == 2 and len(ipv6) == 1, events
            assert "IPv6" in started[ipv6[0]]["strategy"], started
            (peer_ipv6,) = [address for address in peer.status()["addresses"] if address.startswith("[::1]:")]
            assert ipv6 == [peer_ipv6], (started, peer_ipv6)
            succeeded = [e for e in events if e.get("type") == "punch_succeeded" and e["address"] == peer_ipv6]
            assert succeeded and 1 <= succeeded[0]["probes"] <= 8, events
        lab.check_no_tracebacks()
