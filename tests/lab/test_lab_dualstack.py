"""The daemon's IPv6 address finder (adapters/dualstack.py) in real namespaces.

Behind a ``v6fw`` router the peer's namespace has a global IPv6 address (2001:2::/48, public to
p2pos: spec/candidates.md CAND-2.2) and a default IPv6 route: the finder returns that address
(connecting a UDP socket sends nothing).  Without an IPv6 default route it finds none.
"""

from __future__ import annotations

from collections.abc import Iterator

import netlab
import pytest
from labsys import inside, tool

from p2pos.adapters.dualstack import global_ipv6_address, listen_hosts

pytestmark = [*netlab.MARKS, pytest.mark.pure_core]  # no core code: once is enough


@pytest.fixture
def lab() -> Iterator[netlab.Lab]:
    with netlab.lab() as made:
        yield made


def test_a_peer_behind_a_v6fw_router_finds_its_global_address_and_one_without_a_route_none(
    lab: netlab.Lab,
) -> None:
    peer, cut_off = lab.peer("a", "v6fw"), lab.peer("b", "v6fw")
    lab.wait_links()
    lab.command(tool("ip"), "-n", cut_off.ns, "-6", "route", "del", "default")
    with inside(peer.ns):
        assert global_ipv6_address() == peer.address6
        assert listen_hosts(["0.0.0.0"]) == ["0.0.0.0", peer.address6]
        assert listen_hosts([peer.address]) == [peer.address]
    with inside(cut_off.ns):
        assert global_ipv6_address() is None
