"""The daemon's port mapping (adapters/portmapping.py) behind a real miniupnpd, end to end.

Daemon ``a`` sits behind an ``upnp`` router (eim with the inbound filter, and miniupnpd), daemon
``b`` behind a ``random`` one (a new port per destination): without the mapping no punch would
connect them (spec/punch.md §3.8).  ``a`` maps its UDP socket on its gateway at start (PCP
first), shows the mapping in its status (the router's WAN address: the lab's internet is
198.18.0.0/15, which miniupnpd learns from coturn's RFC 5780 answers), advertises the mapped
address; ``b`` reaches ``a`` there: a direct UDP path to the mapped address carries the session.
"""

from __future__ import annotations

from collections.abc import Iterator

import labp2pos
import netlab
import pytest
from labsys import wait_until

pytestmark = netlab.MARKS


@pytest.fixture
def lab() -> Iterator[netlab.Lab]:
    with netlab.lab() as made:
        yield made


def test_a_daemon_behind_miniupnpd_is_reached_directly_through_its_mapping(lab: netlab.Lab) -> None:
    stun = lab.coturn(lab.server("stun"), alternate=lab.server("stun-alt"))
    node = labp2pos.rendezvous(lab, lab.server("rdv"))
    a_peer, b_peer = lab.peer("a", "upnp"), lab.peer("b", "random")
    assert a_peer.router is not None
    lab.miniupnpd(a_peer.router, stun)
    a, b = labp2pos.daemon(lab, a_peer, node), labp2pos.daemon(lab, b_peer, node)
    a.wait_registered()
    b.wait_registered()

    def mapping() -> dict[str, object] | None:
        found = (a.status() or {}).get("port_mappings") or []
        return found[0] if found else None

    assert wait_until(lambda: mapping() is not None, 20), lab.log(a.process, "err")[-3000:]
    mapped = mapping()
    assert mapped is not None
    assert mapped["protocol"] == "pcp" and str(mapped["external"]).startswith(f"{a_peer.router.public}:")
    status = a.wait_registered()
    a_id = str(status["peer_id"])
    a.serve("sink", labp2pos.HASH_STDIN)
    data = lab.tmp / "data"
    data.write_bytes(b"through the mapping\n" * 1000)
    code, _, err = b.command("pipe", a_id, "sink", stdin=data)
    assert code == 0, err

    def direct_path() -> str | None:
        for peer in (b.status() or {}).get("peers", []):
            for path in peer["paths"]:
                if path["via"] == "udp" and path["state"] == "validated":
                    return str(path["address"])
        return None

    assert wait_until(lambda: direct_path() is not None, 15), (b.status(), lab.log(b.process, "err")[-3000:])
    assert direct_path() == mapped["external"]
