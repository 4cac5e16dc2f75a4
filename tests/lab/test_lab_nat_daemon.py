"""Daemons learn their NAT behind real Linux routers (spec/nat.md §3.6, appapi.md API-3.9).

The rendezvous node holds two internet addresses (``p2pos relay --alternate``), so a daemon's
behaviour discovery runs every test of spec/nat.md §3.2 through its router:

* behind ``eim`` (``masquerade``, inbound filter): endpoint-independent mapping, the source port
  kept, address-and-port-dependent filtering, not reachable unasked;
* behind ``random`` (``masquerade fully-random``): address-and-port-dependent mapping with random
  allocation, the same filtering;
* behind ``udp-blocked``: nothing answers, the daemon runs on, its NAT unknown, a retry set.

Each reads ``GET /v1/status`` of the real daemon process, and ``p2pos status`` prints it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import labp2pos
import netlab
import pytest

pytestmark = netlab.MARKS


@pytest.fixture
def lab() -> Iterator[netlab.Lab]:
    with netlab.lab() as made:
        yield made


def _nat(daemon: labp2pos.Daemon, state: str, timeout: float = 40) -> dict[str, Any]:
    """The daemon's ``nat`` status once its state is ``state``."""

    def reached() -> bool:
        body = daemon.status()
        return body is not None and body["nat"]["state"] == state

    if not netlab.wait_until(reached, timeout):
        body = daemon.status()
        pytest.fail(f"{daemon.peer.name}: nat {body and body['nat']}: {daemon.lab.log(daemon.process, 'err')[-3000:]}")
    body = daemon.status()
    assert body is not None
    nat: dict[str, Any] = body["nat"]
    return nat


def test_daemons_report_their_routers_mapping(lab: netlab.Lab) -> None:
    node = labp2pos.rendezvous(lab, lab.server("rendezvous"), alternate=lab.server("rendezvous-alt"))
    peers = {kind: lab.peer(kind, kind) for kind in ("eim", "random", "udp-blocked")}
    daemons = {kind: labp2pos.daemon(lab, peer, node) for kind, peer in peers.items()}

    eim = _nat(daemons["eim"], "measured")
    router = peers["eim"].router
    assert router is not None
    assert eim["nat"] is True and eim["mapped"].startswith(f"{router.public}:")
    assert eim["mapping"] == "endpoint-independent"
    assert eim["filtering"] == "address-and-port-dependent"
    assert eim["allocation"] == "preserved" and eim["port_preservation"] is True
    assert eim["public"] is False and eim["hairpinning"] is False  # Linux masquerade does not reflect
    assert eim["binding_timeout"] is None and eim["measured_at"].endswith("Z")
    assert eim["server"] == f"{node.server.address}:7000"

    random = _nat(daemons["random"], "measured")
    router = peers["random"].router
    assert router is not None
    assert random["nat"] is True and random["mapped"].startswith(f"{router.public}:")
    assert random["mapping"] == "address-and-port-dependent"
    assert random["allocation"] == "random" and random["allocation_delta"] is None
    assert random["filtering"] == "address-and-port-dependent" and random["public"] is False

    # the registrations carry on as before, and `p2pos status` names the NAT
    daemons["random"].wait_registered()
    code, out, err = daemons["random"].command("status")
    assert code == 0, err
    assert "mapping address-and-port-dependent" in out and "allocation random" in out

    # UDP blocked: no answer; the daemon lives on, its NAT unknown (not "UDP blocked": NAT-3.6.3)
    blocked = _nat(daemons["udp-blocked"], "failed")
    assert blocked["mapped"] is None and blocked["mapping"] is None and "no answer" in blocked["error"]
    assert daemons["udp-blocked"].process.poll() is None
