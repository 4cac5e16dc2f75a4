"""Path MTU behaviour across a real 1280-byte link: two network namespaces joined by a veth pair.

Needs root (CAP_NET_ADMIN) for ``ip netns``.  Skipped only when not root and ``CI`` is
unset; in CI (which runs as root) it always runs, so a broken setup fails loudly.  Only
198.18.0.0/15 (RFC 2544 benchmarking) and 2001:2::/48 (RFC 5180) addresses are used,
and every namespace created is deleted afterwards, whatever happened.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import netns_lab
import pytest

PEER_SCRIPT = Path(__file__).with_name("netns_peer.py")
LINK_MTU = 1280
OVERSIZED = 1400
#: (address of a, address of b, prefix length, max UDP payload on a 1280-byte link)
FAMILIES = {
    "v4": ("198.18.5.1", "198.18.5.2", 24, LINK_MTU - 20 - 8),
    "v6": ("2001:2:0:5::1", "2001:2:0:5::2", 64, LINK_MTU - 40 - 8),
}

pytestmark = netns_lab.MARKS


@dataclass(frozen=True, slots=True)
class Link:
    ip: str
    a: str  # namespace names
    b: str
    addr_a: str
    addr_b: str
    max_payload: int

    def run(self, namespace: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [self.ip, "netns", "exec", namespace, sys.executable, str(PEER_SCRIPT), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture(params=sorted(FAMILIES))
def link(request: pytest.FixtureRequest) -> Iterator[Link]:
    """Namespaces p2pt-a-XXXX and p2pt-b-XXXX joined by a veth pair with a 1280-byte MTU."""
    addr_a, addr_b, prefix, max_payload = FAMILIES[request.param]
    with netns_lab.lab("p2pt") as lab:
        a, b = lab.namespaces("a", "b")
        veth_a, veth_b = f"p2a{lab.suffix}", f"p2b{lab.suffix}"
        lab.ip("link", "add", veth_a, "netns", a, "type", "veth", "peer", "name", veth_b, "netns", b)
        for namespace, veth, addr in ((a, veth_a, addr_a), (b, veth_b, addr_b)):
            lab.ip("-n", namespace, "link", "set", veth, "mtu", str(LINK_MTU))
            extra = ["nodad"] if ":" in addr else []
            lab.ip("-n", namespace, "addr", "add", f"{addr}/{prefix}", "dev", veth, *extra)
            lab.ip("-n", namespace, "link", "set", veth, "up")
            lab.ip("-n", namespace, "link", "set", "lo", "up")
        yield Link(lab.ip_path, a, b, addr_a, addr_b, max_payload)


def test_oversized_datagrams_fail_instead_of_fragmenting(link: Link) -> None:
    receiver = link.run(link.b, "receive", link.addr_b)
    try:
        assert receiver.stdout is not None
        ready = receiver.stdout.readline().split()
        assert ready[:1] == ["ready"], receiver.communicate(timeout=15)[1]
        sender = link.run(link.a, "send", link.addr_a, link.addr_b, ready[1])
        out, err = sender.communicate(timeout=30)
        assert sender.returncode == 0, err
        report = json.loads(out)
        rest, err = receiver.communicate(timeout=30)
        assert receiver.returncode == 0, err
        got = [tuple(item) for item in json.loads(rest)]
    finally:
        receiver.kill()
        receiver.wait()

    payload = link.max_payload
    # the outgoing interface's MTU less the headers: 1252 (IPv4) or 1232 (IPv6)
    assert report["max_payload"] == payload
    assert report["no_fragment"] is True
    # a datagram of exactly that size crosses the link
    assert (payload, "a") in got
    # the transport's oversized datagram: EMSGSIZE at home, counted, never seen on the far side
    assert (report["df_errors"], report["df_errno"]) == (1, errno.EMSGSIZE)
    assert not [item for item in got if item[1] == "b"]
    # control: the same size from a default socket arrives, fragmented and reassembled
    assert (OVERSIZED, "c") in got
    # a GSO batch cut to the link's size arrives with its boundaries (one call with GSO)
    assert [item for item in got if item[1] in "de"] == [(payload, "d")] * 5 + [(100, "e")]
    # one with segments over the MTU is refused (EMSGSIZE; EINVAL on older kernels, and then
    # re-sent one per call, which fails too), lost, counted, and does not turn GSO off
    assert not [item for item in got if item[1] == "f"]
    assert report["send_errors"] == 1 + 3
    assert report["datagrams_sent"] == 1 + 6
    assert report["gso"] == report["gso_at_bind"]
    if report["gso"]:
        assert report["send_calls"] in (1 + 1 + 1 + 1, 1 + 1 + 1 + 1 + 3)
