"""Daemons learn their router's binding timeout and keep their bindings with it (spec/nat.md §5.5).

Two ``eim`` routers (masquerade, inbound filter) whose conntrack keeps an idle UDP flow 15 s and
60 s (both ``nf_conntrack_udp_timeout`` and ``..._stream``: per network namespace, so per router),
a daemon behind each, and the rendezvous node with a second address (so each daemon measures its
NAT first).  Issue 13's target: the learned keepalive interval within 85-95% of each router's real
timeout, and no binding lost over three of its periods idle, in real time:

* the node sees each daemon at one public address throughout (polled every second);
* the router never makes a new conntrack entry for the daemon's flow to the node (an nftables
  counter of ``ct state new`` on it, in the router: a lost binding made again on the same port
  under port preservation would fool the first check, not this one);
* at the end a daemon with a public address in the internet looks each one up and pipes to it:
  the node's introduction reaches it over the kept binding, so it dials out and the pipe works
  over a direct path (UDP, or QUIC on the same socket; no relay is configured).

The registration lease is an hour, so no renewal refreshes the binding meanwhile: only keepalives do.
Both routers run at once: about 6 minutes in all, once, against the compiled core (``make
test-compiled``), as the NAT matrix does: real time dominates, and two runs would prove nothing more.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import labp2pos
import netlab
import pytest
from conftest import COMPILED_CORE

pytestmark = [
    *netlab.MARKS,
    pytest.mark.skipif(
        not COMPILED_CORE, reason="runs against the compiled core only, once (make test-compiled runs it)"
    ),
]

TIMEOUTS = (15, 60)
NODE_PORT = 7000


@pytest.fixture
def lab() -> Iterator[netlab.Lab]:
    with netlab.lab() as made:
        yield made


def _keepalive(daemon: labp2pos.Daemon) -> dict[str, Any]:
    body = daemon.status()
    assert body is not None
    keepalive: dict[str, Any] = body["nat"]["keepalive"]
    return keepalive


def _new_flows(lab: netlab.Lab, router: netlab.Router) -> int:
    """New conntrack entries counted on the daemon's flow to the node since the watch was set."""
    listed = lab.run(router.ns, ["nft", "list", "table", "inet", "kawatch"])
    assert listed.returncode == 0, listed.stderr
    found = re.search(r"counter packets (\d+)", listed.stdout)
    assert found is not None, listed.stdout
    return int(found.group(1))


def test_learned_keepalives_keep_every_binding(lab: netlab.Lab) -> None:
    node = labp2pos.rendezvous(lab, lab.server("rendezvous"), alternate=lab.server("rendezvous-alt"))
    peers = {t: lab.peer(f"k{t}", "eim") for t in TIMEOUTS}
    for timeout, peer in peers.items():
        assert peer.router is not None
        peer.router.set_udp_timeouts(udp=timeout, stream=timeout)
    for timeout, peer in peers.items():  # per router: the other one keeps its own
        assert peer.router is not None
        for key in ("nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream"):
            assert netlab.sysctl_get(peer.router.ns, f"net.netfilter.{key}") == str(timeout)
    lease = ("--lease", "3600")
    daemons = {t: labp2pos.daemon(lab, peer, node, extra=lease) for t, peer in peers.items()}
    public = labp2pos.daemon(lab, lab.peer("pub", "none"), node, extra=lease)
    started = time.monotonic()

    observed: dict[int, str] = {}
    for timeout, daemon in daemons.items():
        status = daemon.wait_registered()
        router = peers[timeout].router
        assert router is not None
        port = status["addresses"][0].rsplit(":", 1)[1]
        observed[timeout] = status["registrations"][0]["observed"]
        assert observed[timeout] == f"{router.public}:{port}"
        # Count every new conntrack entry of the daemon's flow to the node from now on (its first exists).
        lab.nft(
            router.ns,
            "table inet kawatch {\n chain watch {\n  type filter hook forward priority -10; policy accept;\n"
            f"  ip saddr {peers[timeout].address} udp sport {port} ip daddr {node.server.address} "
            f"udp dport {NODE_PORT} ct state new counter\n }}\n}}\n",
        )
        daemon.serve("sink", labp2pos.HASH_STDIN)  # local only: nothing on the wire
    public.wait_registered()

    def learned() -> bool:
        return all(_keepalive(d)["state"] in ("learned", "failed") for d in daemons.values())

    assert netlab.wait_until(learned, 420, step=1.0), {t: _keepalive(d) for t, d in daemons.items()}
    results = {}
    for timeout, daemon in daemons.items():
        keep = _keepalive(daemon)
        assert keep["state"] == "learned", keep
        ratio = keep["interval"] / timeout
        results[timeout] = keep
        print(
            f"router {timeout:3d} s: learned {keep['bracket'][0]} s (dead at {keep['bracket'][1]} s) in "
            f"{keep['learning_seconds']} s, {keep['search_datagrams']} datagrams; keepalive every "
            f"{keep['interval']} s = {ratio:.3f} of the timeout; peer sessions {keep['peer_interval']} s"
        )
        assert 0.85 <= ratio <= 0.95, keep  # issue 13 item 9
        assert keep["flows"] == "per-peer" and keep["peer_interval"] == keep["interval"]
        body = daemon.status()
        assert body is not None and body["nat"]["binding_timeout"] == pytest.approx(keep["bracket"][0], abs=0.1)

    # Three periods of the longest timeout idle (12 of the shorter one): one public address throughout.
    idle_from = time.monotonic()
    sent_before = {t: _keepalive(d)["keepalives_sent"] for t, d in daemons.items()}
    while time.monotonic() - idle_from < 3 * max(TIMEOUTS):
        for timeout, daemon in daemons.items():
            body = daemon.status()
            assert body is not None
            assert [r["observed"] for r in body["registrations"]] == [observed[timeout]], body["registrations"]
        time.sleep(1.0)
    for timeout, daemon in daemons.items():
        keep = _keepalive(daemon)
        router = peers[timeout].router
        assert router is not None
        sent = keep["keepalives_sent"] - sent_before[timeout]
        print(
            f"router {timeout:3d} s: {sent} keepalives in {3 * max(TIMEOUTS)} s idle, "
            f"{keep['keepalives_answered']} of {keep['keepalives_sent']} answered in all; "
            f"{keep['relearned']} re-learnings"
        )
        assert sent >= 3 * max(TIMEOUTS) // timeout, keep
        assert keep["relearned"] == 0 and keep["state"] == "learned", keep
        assert _new_flows(lab, router) == 0, "the router made the daemon's binding to the node again"

    # The node introduces a public daemon to each over the kept binding: each dials out, the pipe works.
    data = os.urandom(50_000)
    (lab.tmp / "input").write_bytes(data)
    for timeout, daemon in daemons.items():
        body = daemon.status()
        assert body is not None
        code, out, err = public.command("pipe", body["peer_id"], "sink", stdin=lab.tmp / "input")
        assert code == 0, f"router {timeout} s: {err}"
        assert out.strip() == hashlib.sha256(data).hexdigest()
        mine = public.status()
        assert mine is not None
        paths = {p["peer_id"]: p["path"] for p in mine["peers"]}
        assert paths[body["peer_id"]] in ("direct", "quic"), mine["peers"]  # UDP or QUIC: through the router
    code, out, err = daemons[60].command("status")
    assert code == 0, err
    assert "keepalive binding timeout" in out and "learned in" in out, out
    print(out)
    print(f"whole run {time.monotonic() - started:.0f} s")
