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
