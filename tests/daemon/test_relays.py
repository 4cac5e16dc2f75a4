"""Daemons with a relay, as users run them: ``p2pos relay --listen --ws`` and two ``p2pos up --relay
URL`` processes on loopback (daemon_lab.py).  With direct UDP working, the session ends up direct
and the relay stays a validated spare path; ``p2pos status`` (text and ``--json``) shows both."""

from __future__ import annotations

import json
from pathlib import Path

from daemon_lab import HASH_STDIN, Lab, random_file, wait_for


def test_two_daemons_with_a_relay_end_up_direct(tmp_path: Path) -> None:
    data = tmp_path / "data"
    digest = random_file(data, 5 * 1024 * 1024)
    with Lab(tmp_path) as lab:
        relay = lab.relay(ws=True)
        a = lab.daemon("a", relay, extra=["--relay", relay.ws_url])
        b = lab.daemon("b", relay, extra=["--relay", relay.ws_url])
        lab.serve(b, "sink", HASH_STDIN, allow=[a.peer_id])
        code, pipe = lab.run(a, "pipe", b.peer_id, "sink", stdin=data, timeout=120)
        assert code == 0, pipe.stderr_text()
        assert pipe.stdout_text().split() == [digest]

        def both_paths() -> dict[str, object] | None:
            [peer] = [p for p in a.status()["peers"] if p["peer_id"] == b.peer_id]
            validated = {p["via"] for p in peer["paths"] if p["state"] == "validated"}
            return peer if {"udp", "relay"} <= validated else None

        peer = wait_for("a's relay path to b to validate", both_paths, timeout=15)
        assert peer["path"] == "direct"
        code, status = lab.run(a, "status", "--json")
        assert code == 0, status.stderr_text()
        [shown] = [p for p in json.loads(status.stdout_text())["peers"] if p["peer_id"] == b.peer_id]
        [active] = [p for p in shown["paths"] if p["active"]]
        assert active["via"] == "udp" and shown["active_path"] == active["path_id"]
        code, text = lab.run(a, "status")
        assert code == 0 and f"relay (stream) relay:{b.peer_id} validated" in text.stdout_text()
        assert f"relay     {relay.ws_url}" in text.stdout_text()
        lab.check_no_tracebacks()


def test_a_daemon_links_to_the_relay_its_rendezvous_node_offers(tmp_path: Path) -> None:
    """[RDV-4.5.1] [RDV-7.7] ``p2pos relay --listen --ws`` offers its own relay to the peers that
    register; a daemon with no ``relay`` setting links to it (status shows who offered it, the API
    had a ``relays_offered`` event), and one started with ``--no-learn-relays`` does not."""
    with Lab(tmp_path) as lab:
        relay = lab.relay(ws=True)
        assert f"offering relays to registered peers: {relay.ws_url}" in relay.proc.stdout_text()
        a = lab.daemon("a", relay)
        b = lab.daemon("b", relay, extra=["--no-learn-relays"])

        def linked() -> dict[str, object] | None:
            found = [r for r in a.status()["relays"] if r["url"] == relay.ws_url]
            return found[0] if found and found[0]["state"] == "ready" else None

        shown = wait_for("a to link to the offered relay", linked, timeout=15)
        assert shown["kind"] == "websocket" and shown["offered_by"]

        def has_offer(events: list[dict[str, object]]) -> bool:
            return any(e.get("type") == "relays_offered" for e in events)

        offered = [e for e in a.events(has_offer) if e.get("type") == "relays_offered"]
        assert offered[0]["urls"] == [relay.ws_url]
        assert has_offer(b.events(has_offer))
        assert b.status()["relays"] == []
        lab.check_no_tracebacks()
