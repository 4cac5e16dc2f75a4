"""What a user sees when a channel cannot be had: one line on stderr, the documented exit status
(1 refused or failed, 3 no daemon), never a traceback (real processes; daemon_lab.py)."""

from __future__ import annotations

import re
from pathlib import Path

from daemon_lab import HASH_STDIN, Lab, random_file, wait_for

from p2pos.proto import Identity

LOG_RECORD = re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+Z (DEBUG|INFO|WARNING|ERROR) p2pos\.")


def _one_line(text: str) -> str:
    """The one ``p2pos: ...`` line of ``text`` (the daemon's log records aside)."""
    lines = [line for line in text.splitlines() if line.strip() and not LOG_RECORD.match(line)]
    assert len(lines) == 1, f"expected one line, got: {text!r}"
    assert lines[0].startswith("p2pos: "), lines[0]
    assert "Traceback" not in text
    return lines[0]


def test_refusals_are_one_line_and_exit_1(tmp_path: Path) -> None:
    data = tmp_path / "data"
    random_file(data, 10_000)
    stranger = str(Identity.generate().peer_id)  # a valid id that no rendezvous node knows
    with Lab(tmp_path) as lab:
        relay = lab.relay()
        a, b, c = lab.daemon("a", relay), lab.daemon("b", relay), lab.daemon("c", relay)
        lab.serve(b, "sink", HASH_STDIN, allow=[c.peer_id])  # c may, a may not

        code, pipe = lab.run(a, "pipe", b.peer_id, "sink", stdin=data)
        assert code == 1
        line = _one_line(pipe.stderr_text())
        assert "does not allow" in line and b.peer_id[:12] in line, line
        assert pipe.stdout_text() == ""

        code, pipe = lab.run(a, "pipe", b.peer_id, "nothing-here", stdin=data)
        assert code == 1
        assert "has no service 'nothing-here'" in _one_line(pipe.stderr_text())

        code, pipe = lab.run(a, "pipe", "not-a-peer", "sink", stdin=data)
        assert code == 1
        assert "'not-a-peer' is not a peer id" in _one_line(pipe.stderr_text())
        typo = b.peer_id[:10] + ("b" if b.peer_id[10] != "b" else "c") + b.peer_id[11:]
        code, pipe = lab.run(a, "pipe", typo, "sink", stdin=data)
        assert code == 1
        assert "is not a peer id" in _one_line(pipe.stderr_text())

        code, pipe = lab.run(a, "pipe", stranger, "sink", stdin=data, timeout=60)
        assert code == 1
        line = _one_line(pipe.stderr_text())
        assert "cannot find peer" in line and "not found" in line, line

        code, pipe = lab.run(a, "pipe", a.peer_id, "sink", stdin=data)
        assert code == 1
        assert "own peer id" in _one_line(pipe.stderr_text())

        code, pipe = lab.run(a, "pipe", b.peer_id, "Bad Name!", stdin=data)
        assert code == 1
        assert "service name" in _one_line(pipe.stderr_text())

        # The refusals are in the refusing daemon's event stream, with the reason.
        events = b.events(lambda e: sum(x["type"] == "channel_refused" for x in e) >= 2)
        refused = [(e["peer_id"], e["service"], e["why"]) for e in events if e["type"] == "channel_refused"]
        assert refused[:2] == [(a.peer_id, "sink", "not_allowed"), (a.peer_id, "nothing-here", "no_service")]

        # The allowed peer still gets through after all that.
        code, pipe = lab.run(c, "pipe", b.peer_id, "sink", stdin=data)
        assert code == 0, pipe.stderr_text()
        lab.check_no_tracebacks()


def test_without_a_daemon_every_client_command_exits_3(tmp_path: Path) -> None:
    nobody = tmp_path / "nobody"
    peer = str(Identity.generate().peer_id)
    with Lab(tmp_path) as lab:
        for args in (
            ("pipe", peer, "sink"),
            ("status",),
            ("serve", "x", "--allow-any", "--", "cat"),
            ("expose", "x", "--to", "127.0.0.1:9", "--allow-any"),
            ("forward", peer, "x", "--listen", "127.0.0.1:0"),
            ("verify", peer, "--yes"),
            ("events",),
            ("stop",),
        ):
            code, proc = lab.run(nobody, *args, timeout=30)
            assert code == 3, (args, proc.stderr_text())
            assert "the daemon is not running" in _one_line(proc.stderr_text()), args
        lab.check_no_tracebacks()


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Lab(tmp_path) as lab:
        for args in (
            ("serve", "x", "--", "cat"),  # who may connect is never implicit
            ("serve", "x", "--allow-any"),  # no command
            ("expose", "x", "--to", "nowhere", "--allow-any"),
            ("forward", str(Identity.generate().peer_id), "x", "--listen", "no-port"),
            ("up", "--listen", "127.0.0.1:0", "--keepalive", "0"),
            ("up", "--listen", "127.0.0.1:0", "--bootstrap", "abc@127.0.0.1:1"),
        ):
            code, proc = lab.run(home, *args, timeout=30)
            assert code == 2, (args, proc.stderr_text())
            _one_line(proc.stderr_text())
        lab.check_no_tracebacks()


def test_clients_of_a_daemon_that_stops_exit_1_with_one_line(tmp_path: Path) -> None:
    with Lab(tmp_path) as lab:
        relay = lab.relay()
        a, b = lab.daemon("a", relay), lab.daemon("b", relay)
        serve = lab.serve(b, "sink", HASH_STDIN)
        expose = lab.serve(b, "web", [], kind="expose", extra=["--to", "127.0.0.1:9"])
        events = lab.start("events", "events", "--after", "0", "--home", str(b.home))
        forward = lab.start("forward", "forward", b.peer_id, "web", "--home", str(a.home), "--listen", "127.0.0.1:0")
        wait_for("forward to listen", lambda: "forwarding" in forward.stderr_text())
        wait_for("the event stream", lambda: '"type": "started"' in events.stdout_text())
        code, stop = lab.run(b, "stop")
        assert code == 0, stop.stderr_text()
        assert b.proc.wait(20) == 0
        for proc in (serve, expose, events):
            assert proc.wait(20) == 1, proc.stderr_text()
            line = _one_line(proc.stderr_text().replace(f"serving {proc.args[1]}\n", ""))
            assert "the daemon closed the connection" in line or "the connection to the daemon broke" in line, line
        assert '"type": "stopping"' in events.stdout_text()
        assert forward.running()  # forward stays: a connection to it is refused with the reason
        lab.check_no_tracebacks()
