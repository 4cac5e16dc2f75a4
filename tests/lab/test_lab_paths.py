"""Daemons over every path in the lab: the WebSocket relay where UDP fails, direct when it works.

A server in the lab's internet runs ``p2pos relay --listen ADDR:7000 --ws ADDR:8080`` (the
rendezvous node, and a WebSocket relay with the node behind it, spec/relay.md §6); daemons run
``p2pos up --relay ws://ADDR:8080/p2pos/relay/v1`` behind the lab's routers:

* behind two ``random`` routers (a new port per destination: no direct UDP between them), a
  5 MB pipe goes through the relay, hash intact; ``p2pos status`` shows the relay path active;
  a capture of the internet namespace (both peers' legs to the relay) never shows the known
  plaintext the pipe carried, while it saw more bytes than the pipe moved;
* behind two ``udp-blocked`` routers (UDP reaches neither the rendezvous node nor the other
  peer) the daemons register, look up and are introduced through the relay's WebSocket, and
  move data;
* two daemons behind one router go direct over their LANs (the pairing policy lets them dial
  each other's private addresses: same public address, spec/candidates.md §4), while a daemon
  behind another router never gets a path to their private addresses;
* between two public peers, a transfer whose direct UDP is cut and restored 10 times completes
  with its hash intact; each time the session falls back to the relay within 3 s of the cut
  (spec/paths.md PTH-4.4: 3 s after the path's last sign of life) and returns to direct UDP
  after the restore (PTH-4.5).

labp2pos.py starts the daemons and asks their API.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import secrets
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import labp2pos
import netlab
import pytest
from labsys import tool

pytestmark = netlab.MARKS

RELAY_PORT, WS_PORT = 7000, 8080
MB = 1024 * 1024
#: Known plaintext every byte of the piped data is made of (with a counter): it must never cross
#: the wire in the clear.
MARKER = b"P2POS-PLAINTEXT-MARKER-6c1f"


@pytest.fixture
def lab() -> Iterator[netlab.Lab]:
    with netlab.lab() as made:
        yield made


def start_relay(lab: netlab.Lab) -> tuple[labp2pos.Rendezvous, str]:
    """``p2pos relay --listen --ws`` on a new server: the node (for ``--bootstrap``) and the relay's URL."""
    return labp2pos.relay(lab, port=RELAY_PORT, ws_port=WS_PORT)


def marked_data(size: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += MARKER + counter.to_bytes(8, "big")
        counter += 1
    return bytes(out[:size])


def peer_entry(daemon: labp2pos.Daemon, peer_id: str) -> dict[str, Any] | None:
    status = daemon.status() or {"peers": []}
    found = [p for p in status["peers"] if p["peer_id"] == peer_id]
    return found[0] if found else None


def active_via(daemon: labp2pos.Daemon, peer_id: str) -> str | None:
    entry = peer_entry(daemon, peer_id)
    if entry is None:
        return None
    active = [p for p in entry["paths"] if p["active"]]
    return str(active[0]["via"]) if active else None


def registered_somewhere(daemon: labp2pos.Daemon) -> bool:
    return "registered" in daemon.registration_states()


def test_behind_random_routers_five_megabytes_go_through_the_relay_as_ciphertext(lab: netlab.Lab) -> None:
    node, url = start_relay(lab)
    pa, pb = lab.peer("a", "random"), lab.peer("b", "random")
    capture = lab.capture(lab.internet)
    a = labp2pos.daemon(lab, pa, node, extra=("--relay", url))
    b = labp2pos.daemon(lab, pb, node, extra=("--relay", url))
    a.wait_registered()
    b_status = b.wait_registered()
    b.serve("sink", labp2pos.HASH_STDIN)
    data = marked_data(5 * MB)
    (lab.tmp / "input").write_bytes(data)
    code, out, err = a.command("pipe", b_status["peer_id"], "sink", stdin=lab.tmp / "input", timeout=180)
    assert code == 0, err
    assert out.strip() == hashlib.sha256(data).hexdigest()
    entry = peer_entry(a, b_status["peer_id"])
    assert entry is not None and entry["path"] == "relay", entry
    [active] = [p for p in entry["paths"] if p["active"]]
    assert active["via"] == "relay" and active["state"] == "validated" and active["bytes_sent"] > 5 * MB
    code, text, err = a.command("status")
    assert code == 0 and f"relay (stream) relay:{b_status['peer_id']} validated active" in text, text + err
    seen = capture.settled(5 * MB)
    assert seen > 5 * MB, f"the capture saw only {seen} bytes"  # at least one whole leg of the relay
    assert not capture.contains(MARKER)


def test_behind_udp_blocked_routers_daemons_meet_and_move_data_through_the_relay(lab: netlab.Lab) -> None:
    node, url = start_relay(lab)
    a = labp2pos.daemon(lab, lab.peer("a", "udp-blocked"), node, extra=("--relay", url))
    b = labp2pos.daemon(lab, lab.peer("b", "udp-blocked"), node, extra=("--relay", url))
    for daemon in (a, b):
        if not netlab.wait_until(lambda d=daemon: registered_somewhere(d), 30):  # type: ignore[misc]
            pytest.fail(f"{daemon.peer.name} not registered through the relay", pytrace=False)
        status = daemon.status()
        assert status is not None
        through_relay = [r["state"] for r in status["registrations"] if r["address"].startswith("relay:")]
        over_udp = [r["state"] for r in status["registrations"] if not r["address"].startswith("relay:")]
        assert through_relay == ["registered"] and len(over_udp) == 1 and over_udp != ["registered"], status
    b_status = b.status()
    assert b_status is not None
    b.serve("sink", labp2pos.HASH_STDIN)
    data = marked_data(MB)
    (lab.tmp / "input").write_bytes(data)
    code, out, err = a.command("pipe", b_status["peer_id"], "sink", stdin=lab.tmp / "input", timeout=120)
    assert code == 0, err
    assert out.strip() == hashlib.sha256(data).hexdigest()
    assert active_via(a, b_status["peer_id"]) == "relay"


def test_behind_one_router_daemons_go_direct_over_their_lans_and_nobody_else_dials_those(lab: netlab.Lab) -> None:
    node, url = start_relay(lab)
    pa = lab.peer("a", "eim")
    assert pa.router is not None
    pb, pc = lab.peer("b", behind=pa.router), lab.peer("c", "random")
    a, b, c = (labp2pos.daemon(lab, p, node, extra=("--relay", url)) for p in (pa, pb, pc))
    a.wait_registered()
    b_status, c_status = b.wait_registered(), c.wait_registered()
    b_address = b_status["addresses"][0]
    assert b_address.startswith(f"{pb.address}:")
    for daemon in (b, c):
        daemon.serve("sink", labp2pos.HASH_STDIN)
    data = marked_data(MB)
    (lab.tmp / "input").write_bytes(data)
    for peer_id in (b_status["peer_id"], c_status["peer_id"]):
        code, out, err = a.command("pipe", peer_id, "sink", stdin=lab.tmp / "input", timeout=120)
        assert code == 0, err
        assert out.strip() == hashlib.sha256(data).hexdigest()
    # b: its LAN address (the router does not hairpin to its public mapping)
    entry = peer_entry(a, b_status["peer_id"])
    assert entry is not None
    [active] = [p for p in entry["paths"] if p["active"]]
    assert active["via"] == "udp" and active["address"] == b_address, entry
    # c, behind another router: its private address was never dialled (no dead path left to re-probe)
    entry = peer_entry(a, c_status["peer_id"])
    assert entry is not None
    dialled = [p["address"].rsplit(":", 1)[0] for p in entry["paths"] if p["via"] == "udp"]
    assert dialled == [pc.public], entry


#: A command that writes a block of 1700 marked records (59.5 kB) every 50 ms for ``SECONDS`` to
#: stdout, then the number of blocks to stderr: the transfer lasts as long as the cuts, at a rate
#: (about 1.2 MB/s) the relay carries easily.
PACED = (
    "import sys, time\n"
    "marker = bytes.fromhex(sys.argv[1]); seconds = float(sys.argv[2]); n = 0\n"
    "end = time.monotonic() + seconds\n"
    "while time.monotonic() < end:\n"
    "    block = b''.join(marker + (n * 4096 + i).to_bytes(8, 'big') for i in range(1700))\n"
    "    sys.stdout.buffer.write(block); n += 1; time.sleep(0.05)\n"
    "sys.stdout.buffer.flush(); print(n, file=sys.stderr)\n"
)


def fallback_times(log: Path) -> list[tuple[float, str]]:
    """When the daemon logged each move of its active path to the relay, and why: after a cut,
    ``dead`` (its own direct path died, PTH-4.4) or ``peer`` (the peer failed over first and its
    data came by the relay while the direct path had been quiet for half the dead-path timeout,
    PTH-4.3), whichever side's dead-path timer fires first (both run out about 2.5 s after the cut)."""
    out = []
    for line in log.read_text().splitlines():
        found = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3})Z INFO p2pos.node .*\(relay .*active: (\w+)$", line)
        if found:
            stamp = datetime.datetime.strptime(found.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.UTC)
            out.append((stamp.timestamp() + int(found.group(2)) / 1000, found.group(3)))
    return out


def moves_after(log: Path, at: float, seconds: float) -> str:
    """The daemon's path lines (active, dead, validated) logged within ``seconds`` after ``at``."""
    out = []
    for line in log.read_text().splitlines():
        found = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3})Z", line)
        if found and " path " in line:
            stamp = datetime.datetime.strptime(found.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.UTC)
            when = stamp.timestamp() + int(found.group(2)) / 1000
            if at <= when <= at + seconds:
                out.append(f"  +{when - at:.3f} s {line[line.find(' path ') :]}")
    return f"cut at {at:.3f}:\n" + "\n".join(out)


def paced_digest(blocks: int) -> str:
    digest = hashlib.sha256()
    for n in range(blocks):
        digest.update(b"".join(MARKER + (n * 4096 + i).to_bytes(8, "big") for i in range(1700)))
    return digest.hexdigest()


def test_a_transfer_survives_ten_cuts_of_its_direct_path_falling_back_within_three_seconds(lab: netlab.Lab) -> None:
    node, url = start_relay(lab)
    pa, pb = lab.peer("a", "none"), lab.peer("b", "none")
    a = labp2pos.daemon(lab, pa, node, extra=("--relay", url))
    b = labp2pos.daemon(lab, pb, node, extra=("--relay", url))
    a.wait_registered()
    b_id = b.wait_registered()["peer_id"]
    b.serve("sink", labp2pos.HASH_STDIN)
    seconds = 90.0
    script = lab.tmp / "paced.py"
    script.write_text(PACED)
    shell = (
        f'"{sys.executable}" "{script}" {MARKER.hex()} {seconds} 2> "{lab.tmp}/blocks" | '
        f'"$@" pipe {b_id} sink --home "{a.home}" > "{lab.tmp}/pipe.out" 2> "{lab.tmp}/pipe.err"; '
        f'echo $? > "{lab.tmp}/pipe.rc"'
    )
    pipe = lab.spawn(pa.ns, ["sh", "-c", shell, "sh", *labp2pos.P2POS], name="pipe")
    if not netlab.wait_until(lambda: active_via(a, b_id) == "udp", 20):
        pytest.fail(f"no direct session: {peer_entry(a, b_id)} {lab.log(pipe, 'err')[-2000:]}", pytrace=False)

    def quic_standby() -> bool:  # QUIC is on by default: a standby path on the UDP socket (PTH-4.8)
        entry = peer_entry(a, b_id) or {"paths": []}
        return any(p["via"] == "quic" and p["state"] == "validated" for p in entry["paths"])

    if not netlab.wait_until(quic_standby, 10):
        pytest.fail(f"no validated QUIC path beside direct UDP: {peer_entry(a, b_id)}", pytrace=False)
    cuts, returns = [], []
    for _ in range(10):
        cut = lab.cut(pa, pb, "udp")
        cuts.append(time.time())
        if not netlab.wait_until(lambda: active_via(a, b_id) == "relay", 10, step=0.02):
            pytest.fail(f"no fall-back to the relay: {peer_entry(a, b_id)}", pytrace=False)
        cut.restore()
        started = time.monotonic()
        if not netlab.wait_until(lambda: active_via(a, b_id) == "udp", 40, step=0.05):
            pytest.fail(f"direct UDP not used again: {peer_entry(a, b_id)}", pytrace=False)
        returns.append(time.monotonic() - started)
    # The PathActive event to the relay ("dead" or "peer"), as a's log stamps it (ms), after each cut.
    log = a.home / "logs" / "daemon.log"
    moves = fallback_times(log)
    fallbacks = []
    for at in cuts:
        after = [(t, why) for t, why in moves if t >= at]
        if not after or after[0][1] not in ("dead", "peer"):
            pytest.fail(
                f"no move to the relay for a dead path after the cut at {at:.3f} (the path moves "
                f"from 5 s before it):\n{moves_after(log, at - 5.0, 15.0)}",
                pytrace=False,
            )
        fallbacks.append(after[0][0] - at)
    print("fall-backs (s):", " ".join(f"{t:.3f}" for t in fallbacks))
    print("back to direct (s):", " ".join(f"{t:.2f}" for t in returns))
    rc = lab.tmp / "pipe.rc"
    assert netlab.wait_until(lambda: rc.exists() and rc.read_text().strip() != "", seconds + 60)
    assert (lab.tmp / "pipe.rc").read_text().strip() == "0", (lab.tmp / "pipe.err").read_text()[-3000:]
    blocks = int((lab.tmp / "blocks").read_text())
    assert blocks > 10 * 20  # it ran through the cuts
    assert (lab.tmp / "pipe.out").read_text().strip() == paced_digest(blocks)
    slow = [at for at, took in zip(cuts, fallbacks, strict=True) if took > 3.0]
    assert not slow, f"fall-backs {fallbacks}; a's path moves after each slow cut:\n" + "\n".join(
        moves_after(a.home / "logs" / "daemon.log", at, 10.0) for at in slow
    )


TURN_LIFETIME = 70


def start_short_coturn(lab: netlab.Lab, port: int = 3478) -> netlab.Server:
    """coturn as labservices.start_coturn runs it (alice:secret), but granting allocations only
    ``TURN_LIFETIME`` seconds, so the daemon's refresh (60 s before expiry) comes within the test."""
    server = lab.server("turn")
    argv = [tool("turnserver"), "-n", "--no-cli", f"--listening-ip={server.address}",
            f"--relay-ip={server.address}", f"--listening-port={port}", "--min-port=49152",
            "--max-port=49407", "--realm=p2pos.test", "--fingerprint", "--lt-cred-mech", "--user=alice:secret",
            "--no-dtls", "--no-tls", "--no-multicast-peers", "--log-file=stdout", "--simple-log", "--verbose",
            f"--max-allocate-lifetime={TURN_LIFETIME}", f"--pidfile={lab.tmp}/turn.pid",
            f"--userdb={lab.tmp}/turn.sqlite"]  # fmt: skip
    proc = lab.spawn(server.ns, argv, name="turnserver")

    def answers() -> bool:
        probe = lab.socket(server.ns)
        probe.settimeout(0.1)
        txid = secrets.token_bytes(12)
        probe.sendto(struct.pack("!HHI12s", 0x0001, 0, 0x2112A442, txid), (server.address, port))
        try:
            return probe.recv(2048)[8:20] == txid
        except TimeoutError:
            return False
        finally:
            probe.close()

    if not netlab.wait_until(answers, 10) or proc.poll() is not None:
        pytest.fail(f"coturn did not start: {lab.log(proc)}{lab.log(proc, 'err')}", pytrace=False)
    return server


def test_two_daemons_behind_random_routers_move_data_through_coturn(lab: netlab.Lab) -> None:
    """No direct UDP (random routers) and no WebSocket relay: a's TURN allocation (made at start,
    its relayed address registered as a candidate) carries the session b opens, as ciphertext on
    both legs; the allocation is refreshed while the daemon runs and released when it stops."""
    node = labp2pos.rendezvous(lab, lab.server("rendezvous"))
    turn = start_short_coturn(lab)
    pa, pb = lab.peer("a", "random"), lab.peer("b", "random")
    (lab.tmp / "a").mkdir()
    (lab.tmp / "a" / "config.toml").write_text(
        f'relay = ["turn:{turn.address}:3478"]\nturn_username = "alice"\nturn_password = "secret"\n'
    )
    capture = lab.capture(lab.internet)
    a = labp2pos.daemon(lab, pa, node)
    b = labp2pos.daemon(lab, pb, node)
    a_status, b_id = a.wait_registered(), b.wait_registered()["peer_id"]
    [allocation] = a_status["relays"]
    assert allocation["kind"] == "turn" and allocation["state"] == "allocated", allocation
    assert allocation["relayed"].startswith(f"{turn.address}:") and allocation["lifetime"] == TURN_LIFETIME
    a.serve("sink", labp2pos.HASH_STDIN)
    data = marked_data(2 * MB)
    (lab.tmp / "input").write_bytes(data)
    code, out, err = b.command("pipe", a_status["peer_id"], "sink", stdin=lab.tmp / "input", timeout=120)
    assert code == 0, err
    assert out.strip() == hashlib.sha256(data).hexdigest()
    assert active_via(a, b_id) == "turn", peer_entry(a, b_id)
    entry = peer_entry(b, a_status["peer_id"])
    assert entry is not None
    [active] = [p for p in entry["paths"] if p["active"]]
    assert active["via"] == "udp" and active["address"] == allocation["relayed"], entry
    seen = capture.settled(2 * MB)
    assert seen > 2 * MB and not capture.contains(MARKER), seen  # both TURN legs: ciphertext only

    def refreshed() -> bool:
        status = a.status() or {"relays": [{}]}
        return int(status["relays"][0].get("refreshes", 0)) >= 1

    assert netlab.wait_until(refreshed, TURN_LIFETIME), a.status()
    code, _out, err = a.command("stop")
    assert code == 0, err
    assert netlab.wait_until(lambda: a.process.poll() is not None, 20)
    coturn = next(p for p in lab.processes if lab.labels.get(p.pid) == "turnserver")
    assert netlab.wait_until(lambda: re.search(r"session \S+: delete: ", lab.log(coturn)) is not None, 10)
    refreshes = re.findall(r"session \S+: refreshed, .*lifetime=(\d+)", lab.log(coturn))
    # refreshed while running (a lifetime > 0), then released (a Refresh of lifetime 0, RFC 8656 §7)
    assert refreshes[-1] == "0" and any(seconds != "0" for seconds in refreshes[:-1]), lab.log(coturn)[-3000:]
