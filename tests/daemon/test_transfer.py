"""Bulk data between daemons, as users move it: ``pipe``/``serve``, ``forward``/``expose``, and
every pair of three daemons at once (real processes on loopback; daemon_lab.py)."""

from __future__ import annotations

import re
from pathlib import Path

from daemon_lab import HASH_STDIN, Lab, exchange, hashing_tcp_server, random_file, wait_for

BIG = 50 * 1024 * 1024


def test_pipe_to_serve_moves_50_mb_intact(tmp_path: Path) -> None:
    data = tmp_path / "data"
    digest = random_file(data, BIG)
    with Lab(tmp_path) as lab:
        relay = lab.relay()
        a, b = lab.daemon("a", relay), lab.daemon("b", relay)
        lab.serve(b, "sink", HASH_STDIN, allow=[a.peer_id])
        code, pipe = lab.run(a, "pipe", b.peer_id, "sink", stdin=data, timeout=120)
        assert code == 0, pipe.stderr_text()
        assert pipe.stdout_text().split() == [digest]
        peers = {p["peer_id"]: p for p in a.status()["peers"]}
        assert peers[b.peer_id]["path"] == "direct"
        lab.check_no_tracebacks()


def test_forward_to_expose_moves_50_mb_each_way(tmp_path: Path) -> None:
    up, down = tmp_path / "up", tmp_path / "down"
    up_digest, down_digest = random_file(up, BIG), random_file(down, BIG)
    with Lab(tmp_path) as lab, hashing_tcp_server(send=down) as (server_port, received):
        relay = lab.relay()
        a, b = lab.daemon("a", relay), lab.daemon("b", relay)
        lab.serve(b, "web", [], allow=[a.peer_id], kind="expose", extra=["--to", f"127.0.0.1:{server_port}"])
        forward = lab.start("forward", "forward", b.peer_id, "web", "--home", str(a.home), "--listen", "127.0.0.1:0")

        def bound() -> int | None:
            assert forward.running(), forward.stderr_text()
            found = re.search(r"forwarding 127\.0\.0\.1:(\d+) ->", forward.stderr_text())
            return int(found.group(1)) if found else None

        port = wait_for("forward to listen", bound)
        # Both directions at once: the server sends `down` while it hashes what `up` brings.
        assert exchange(port, up, timeout=120) == down_digest
        wait_for("the server to hash what it received", lambda: received or None)
        assert received == [up_digest]
        # A second connection through the same forward opens a second channel on the same session.
        small = tmp_path / "small"
        small_digest = random_file(small, 100_000)
        assert exchange(port, small) == down_digest
        wait_for("the second connection's hash", lambda: len(received) == 2)
        assert received[1] == small_digest
        assert [p["peer_id"] for p in a.status()["peers"]] == [b.peer_id]
        lab.check_no_tracebacks()


def test_three_daemons_every_pair_at_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    random_file(data, 1024 * 1024)
    expected = data.read_bytes()
    with Lab(tmp_path) as lab:
        relay = lab.relay()
        daemons = [lab.daemon(name, relay) for name in ("a", "b", "c")]
        for daemon in daemons:
            lab.serve(daemon, "echo", ["cat"])
        pipes = [
            (
                src,
                dst,
                lab.start(
                    f"pipe-{src.name}{dst.name}", "pipe", dst.peer_id, "echo", "--home", str(src.home), stdin=data
                ),
            )
            for src in daemons
            for dst in daemons
            if src is not dst
        ]
        assert len(pipes) == 6
        for src, dst, pipe in pipes:
            assert pipe.wait(120) == 0, f"{src.name} -> {dst.name}: {pipe.stderr_text()}"
            assert pipe.out.read_bytes() == expected, f"{src.name} -> {dst.name}: the echo differs"
        for daemon in daemons:
            others = {d.peer_id for d in daemons if d is not daemon}
            assert {p["peer_id"] for p in daemon.status()["peers"]} == others
        lab.check_no_tracebacks()


def test_lookup_only_the_second_rendezvous_node_answers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    digest = random_file(data, 1024 * 1024)
    with Lab(tmp_path) as lab:
        r1, r2 = lab.relay("r1"), lab.relay("r2")
        a = lab.daemon("a", r1, r2)
        b = lab.daemon("b", r2)
        lab.serve(b, "sink", HASH_STDIN, allow=[a.peer_id])
        code, pipe = lab.run(a, "pipe", b.peer_id, "sink", stdin=data)
        assert code == 0, pipe.stderr_text()
        assert pipe.stdout_text().split() == [digest]
        # r1 was asked too and does not know b; that it said so must not have spoiled the answer.
        assert len(a.status()["registrations"]) == 2
        lab.check_no_tracebacks()
