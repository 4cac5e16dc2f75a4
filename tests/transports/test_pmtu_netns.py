"""The path MTU search of two real nodes, across a router whose far link is narrower than either end's.

    A --veth, MTU 1500-- R --veth, MTU 1400-- B        (R forwards IPv4)

A's interface says 1500, so A's node starts its search (RFC 8899 DPLPMTUD,
p2pos_proto/recovery/pmtu.py) under a ceiling of 1472 bytes of UDP payload, but the
path carries only 1400 - 20 - 8 = 1372.  The node's socket never fragments
(transports/udp.py), so a datagram over 1372 bytes dies at R.  The search must end
within its granularity below 1372 and never above it, and the transfer must arrive
intact.  It runs twice: with R's ICMP "fragmentation needed" reaching A, and with R
sending no ICMP at all (the search works from lost probes alone; A's ICMP counters
prove which variant ran).  A control shows the setup can fail the test: from the
same namespace, a datagram one byte over the path limit is lost when sent the node's
way, and one of 1472 bytes arrives when sent from a socket allowed to fragment.
A second test checks that the probes R drops take no data with them (with UDP GSO
they do, today: an expected failure that names the bug).

Needs root (CAP_NET_ADMIN) for ``ip netns``.  Skipped only when not root and ``CI`` is
unset; in CI (which runs as root) it always runs, so a broken setup fails loudly.  Only
198.18.0.0/15 (RFC 2544 benchmarking) addresses are used, and every namespace created
is deleted afterwards, whatever happened.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import netns_lab
import pytest

from p2pos.proto.recovery.pmtu import BASE_PLPMTU, SEARCH_GRANULARITY

PEER_SCRIPT = Path(__file__).with_name("pmtu_node_peer.py")
WIDE_MTU, NARROW_MTU = 1500, 1400
#: The UDP payload an IPv4 packet carries on each link: 1472 at A's end, 1372 across R.
FIRST_HOP_PAYLOAD, PATH_PAYLOAD = WIDE_MTU - 28, NARROW_MTU - 28
TRANSFER = 2_000_000
A_ADDR, RA_ADDR, RB_ADDR, B_ADDR = "198.18.6.1", "198.18.6.2", "198.18.7.2", "198.18.7.1"

pytestmark = netns_lab.MARKS


@dataclass(frozen=True, slots=True)
class Path3:
    ip: str
    a: str  # namespace names
    r: str
    b: str
    icmp_dropped: bool

    def run(self, namespace: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [self.ip, "netns", "exec", namespace, sys.executable, str(PEER_SCRIPT), *args],
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def icmp_counters(self, namespace: str) -> dict[str, int]:
        """The namespace's ``Icmp:`` counters from /proc/net/snmp (per network namespace)."""
        snmp = subprocess.run(
            [self.ip, "netns", "exec", namespace, "cat", "/proc/net/snmp"], capture_output=True, text=True, check=True
        ).stdout
        header, values = [line.split()[1:] for line in snmp.splitlines() if line.startswith("Icmp:")]
        return dict(zip(header, map(int, values), strict=True))


@pytest.fixture(params=["icmp", "icmp-dropped"])
def path3(request: pytest.FixtureRequest) -> Iterator[Path3]:
    """Namespaces p2pm-a-XXXX, p2pm-r-XXXX and p2pm-b-XXXX: A (1500) -- R -- (1400) B."""
    with netns_lab.lab("p2pm") as lab:
        a, r, b = lab.namespaces("a", "r", "b")
        suffix = lab.suffix
        veth_a, veth_ra, veth_rb, veth_b = f"pma{suffix}", f"pmra{suffix}", f"pmrb{suffix}", f"pmb{suffix}"
        lab.ip("link", "add", veth_a, "netns", a, "type", "veth", "peer", "name", veth_ra, "netns", r)
        lab.ip("link", "add", veth_b, "netns", b, "type", "veth", "peer", "name", veth_rb, "netns", r)
        links = (
            (a, veth_a, WIDE_MTU, A_ADDR),
            (r, veth_ra, WIDE_MTU, RA_ADDR),
            (r, veth_rb, NARROW_MTU, RB_ADDR),
            (b, veth_b, NARROW_MTU, B_ADDR),
        )
        for namespace, veth, mtu, addr in links:
            lab.ip("-n", namespace, "link", "set", veth, "mtu", str(mtu))
            lab.ip("-n", namespace, "addr", "add", f"{addr}/24", "dev", veth)
            lab.ip("-n", namespace, "link", "set", veth, "up")
        for namespace in (a, r, b):
            lab.ip("-n", namespace, "link", "set", "lo", "up")
        lab.ip("-n", a, "route", "add", "default", "via", RA_ADDR)
        lab.ip("-n", b, "route", "add", "default", "via", RB_ADDR)
        lab.ip("netns", "exec", r, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        icmp_dropped = request.param == "icmp-dropped"
        if icmp_dropped:
            # R's "fragmentation needed" is R's own packet (the output path, not forwarding): a policy
            # rule sends every ICMP route lookup in R to a blackhole, so R can send none (iproute2 only).
            lab.ip("-n", r, "rule", "add", "ipproto", "icmp", "blackhole")
        yield Path3(lab.ip_path, a, r, b, icmp_dropped)


def run_pair(path: Path3, env: dict[str, str] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """B's node and observer, then A's node (with ``env`` added) and control: their JSON reports."""
    server = path.run(path.b, "serve", B_ADDR)
    try:
        assert server.stdout is not None
        ready = server.stdout.readline().split()
        assert ready[:1] == ["ready"], server.communicate(timeout=15)[1]
        node_port, observer_port = ready[1:]
        args = (A_ADDR, B_ADDR, node_port, observer_port, str(TRANSFER), str(PATH_PAYLOAD))
        client = path.run(path.a, "send", *args, env=env)
        try:
            out, err = client.communicate(timeout=60)
        finally:
            client.kill()
            client.wait()
        assert client.returncode == 0, err
        rest, err = server.communicate(timeout=15)
        assert server.returncode == 0, err
    finally:
        server.kill()
        server.wait()
    return json.loads(out), json.loads(rest)


def test_search_finds_the_narrow_hop_and_never_overshoots(path3: Path3) -> None:
    icmp_before = path3.icmp_counters(path3.a)["InDestUnreachs"]
    a, b = run_pair(path3)
    icmp_received = path3.icmp_counters(path3.a)["InDestUnreachs"] - icmp_before
    print(json.dumps({"variant": "icmp-dropped" if path3.icmp_dropped else "icmp", "a": a, "b": b}))

    # The node's ceiling is A's interface, 100 bytes above what the path carries: the search has work to do.
    assert a["first_hop_payload"] == a["ceiling"] == FIRST_HOP_PAYLOAD
    # Everything arrived, intact.
    assert b["bytes"] == TRANSFER
    assert a["answer"]["sha256"] == b["sha256"] == a["sha256"]
    # The search ended, within its granularity at or below the path's limit.
    assert a["state"] == "SEARCH_COMPLETE"
    assert PATH_PAYLOAD - SEARCH_GRANULARITY < a["mtu"] <= PATH_PAYLOAD
    assert a["stats"]["mtu"] == a["mtu"]
    # Never above the path's limit at any moment; it started from BASE_PLPMTU and only went up.
    sizes = [mtu for _, _, mtu in a["history"]]
    assert sizes[0] == BASE_PLPMTU
    assert max(sizes) <= PATH_PAYLOAD
    assert sizes == sorted(sizes)
    # No datagram was ever too big for A's own interface (which would be EMSGSIZE at home).
    assert a["send_errors"] == 0
    # B's ceiling is its own 1400-byte link: its search can never exceed the path either.
    assert BASE_PLPMTU <= b["mtu"] <= PATH_PAYLOAD

    # Which variant ran: R's ICMP reached A (and taught A's kernel the path MTU) or none did.
    if path3.icmp_dropped:
        assert icmp_received == 0
        assert a["first_hop_payload_after"] == FIRST_HOP_PAYLOAD
    else:
        assert icmp_received > 0
        assert a["first_hop_payload_after"] == PATH_PAYLOAD

    # The control: the test can tell a datagram that crosses from one that cannot.
    assert a["control_no_fragment"] is True
    observed = {(length, tag) for length, tag in b["observed"]}
    assert (PATH_PAYLOAD, "a") in observed  # the path's largest, the node's way: arrives
    # One byte more (b), and the first hop's largest (c), the node's way: accepted at home, lost at R.
    # One over the first hop's limit (d): refused at home with EMSGSIZE, the only local error.
    assert not {tag for _, tag in observed} & set("bcd")
    assert (a["control_send_errors"], a["control_errno"]) == (1, errno.EMSGSIZE)
    # The first hop's largest from a socket that may fragment: R fragments it, B reassembles it.
    assert (FIRST_HOP_PAYLOAD, "e") in observed


@pytest.mark.parametrize("path3", ["icmp"], indirect=True)
@pytest.mark.parametrize(
    "offload",
    [
        "1",
        "0",
    ],
    ids=["gso", "no-gso"],
)
def test_lost_probes_take_no_data_with_them(path3: Path3, offload: str) -> None:
    """RFC 8899 §4.1: a probe is sent on its own, and its loss is no congestion signal; here none is lost else."""
    a, b = run_pair(path3, {"P2POS_UDP_OFFLOAD": offload})
    print(json.dumps({"offload": offload, "a": a}))
    assert b["bytes"] == TRANSFER
    assert a["mtu"] <= PATH_PAYLOAD
    if offload == "1" and not a["gso"]:
        pytest.skip("no UDP GSO on this kernel: nothing to batch a probe with")
    assert a["gso"] is (offload == "1")
    # Only the probes over 1372 bytes died at R; the veth links and the buffers lose nothing else.
    assert a["stats"]["lost_packets"] == 0
