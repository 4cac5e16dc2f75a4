"""p2pos's port mapper (transports/portmap.py) against a real miniupnpd on an ``upnp`` lab router.

For each of PCP, NAT-PMP and UPnP IGD, alone (``PortMapConfig.order``): the mapper maps a
peer's UDP port; a host in the lab's internet delivers a datagram to the peer through the
external address and port it reports (the router's WAN address, 198.18.i.2: a reserved range,
accepted, MAP-4.2); the mapping is renewed at half its 4-second lifetime and still delivers
after that lifetime has passed (so the renewal reached miniupnpd); leaving the mapper deletes
it, confirmed, and a datagram sent to it then is not delivered.  A last test runs the default
order (PCP first) and checks it picks PCP; another turns miniupnpd's NAT-PMP/PCP off and
checks the mapper falls back to UPnP after the two probes.  miniupnpd learns its public address from coturn
with RFC 5780 (labservices.start_miniupnpd says why).
"""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator

import netlab
import pytest
import trio
from labsys import inside

from p2pos.proto.nat.portmap_common import MapProtocol, PortMapping
from p2pos.transports.portmap import PortMapConfig, PortMapper, open_port_mapping

pytestmark = netlab.MARKS

LIFETIME = 4  # seconds: renewed at 2 s; the test checks delivery at 5 s


@pytest.fixture
def lab() -> Iterator[netlab.Lab]:
    with netlab.lab() as made:
        yield made


def delivered(lab: netlab.Lab, outside: str, receiver: socket.socket, target: tuple[str, int], payload: bytes) -> bool:
    """Whether ``payload`` sent from the internet to ``target`` reaches ``receiver`` within 1 s.

    From a new source port each time: a conntrack entry of an earlier datagram would otherwise
    carry it to the peer whatever became of the mapping.
    """
    sender = lab.socket(lab.internet)
    sender.bind((outside, 0))
    sender.sendto(payload, target)
    deadline = 1.0
    while select.select([receiver], [], [], deadline)[0]:
        data, _ = receiver.recvfrom(2048)
        if data == payload:
            return True
    return False


def run_mapper(
    lab: netlab.Lab, order: tuple[MapProtocol, ...], *, natpmp: bool = True
) -> tuple[PortMapping | None, PortMapper, list[bool], int]:
    """Map a peer port with ``order``; returns the first mapping, the mapper and the deliveries seen."""
    stun = lab.coturn(lab.server("stun"), alternate=lab.server("stun-alt"))
    peer = lab.peer("a", "upnp")
    assert peer.router is not None
    upnpd = lab.miniupnpd(peer.router, stun, natpmp=natpmp)
    outside = lab.server("outside").address
    inner = lab.socket(peer.ns)
    inner.bind((peer.address, 0))
    port = inner.getsockname()[1]
    deliveries: list[bool] = []
    config = PortMapConfig(order=order, lifetime=LIFETIME, upnp_lifetime=LIFETIME, retry_after=3600)

    async def scenario() -> tuple[PortMapping | None, PortMapper, int]:
        async with open_port_mapping(gateway=upnpd.gateway, internal_port=port, config=config) as mapper:
            with trio.fail_after(20):
                first = await mapper.wait_ready()
            if first is None:
                return None, mapper, 0
            target = (first.external_address, first.external_port)
            deliveries.append(await trio.to_thread.run_sync(delivered, lab, outside, inner, target, b"mapped"))
            await trio.sleep(LIFETIME + 1 - (trio.current_time() - first.granted_at))
            renewals = mapper.changes
            deliveries.append(await trio.to_thread.run_sync(delivered, lab, outside, inner, target, b"renewed"))
        deliveries.append(await trio.to_thread.run_sync(delivered, lab, outside, inner, target, b"deleted"))
        return first, mapper, renewals

    with inside(peer.ns):
        first, mapper, renewals = trio.run(scenario)
    return first, mapper, deliveries, renewals


@pytest.mark.parametrize("protocol", [MapProtocol.PCP, MapProtocol.NATPMP, MapProtocol.UPNP], ids=lambda p: p.value)
def test_map_deliver_renew_delete(lab: netlab.Lab, protocol: MapProtocol) -> None:
    """[MAP-2.1] [MAP-4.2] [MAP-5.1] [MAP-6.1] map, deliver through it, renew, delete (then nothing is delivered)."""
    first, mapper, deliveries, changes = run_mapper(lab, (protocol,))
    assert first is not None, f"no mapping: {mapper.failures}"
    assert first.protocol is protocol
    assert first.external_address.startswith("198.18.")  # the router's WAN address: reserved, accepted
    assert first.lifetime == LIFETIME
    assert deliveries[0], "a datagram from the internet did not arrive through the mapping"
    assert changes >= 2, "no renewal before the lifetime ran out"  # granted, then renewed at least once
    assert deliveries[1], "the mapping stopped delivering after its first lifetime: the renewal did not take"
    assert mapper.removed is not None and mapper.removed.confirmed
    assert not deliveries[2], "the deleted mapping still delivers"


def test_default_order_picks_pcp(lab: netlab.Lab) -> None:
    """[MAP-2.1] miniupnpd speaks all three: the default order takes PCP."""
    first, mapper, deliveries, _ = run_mapper(lab, PortMapConfig().order)
    assert first is not None and first.protocol is MapProtocol.PCP, mapper.failures
    assert deliveries[0] and not deliveries[-1]


def test_fallback_to_upnp_when_pcp_and_nat_pmp_are_off(lab: netlab.Lab) -> None:
    """[MAP-2.1] [MAP-2.2] PCP and NAT-PMP go unanswered: both probes time out, UPnP maps."""
    first, mapper, deliveries, _ = run_mapper(lab, PortMapConfig().order, natpmp=False)
    assert first is not None and first.protocol is MapProtocol.UPNP, mapper.failures
    assert [(f.protocol, f.unsupported) for f in mapper.failures] == [
        (MapProtocol.PCP, True),
        (MapProtocol.NATPMP, True),
    ]
    assert deliveries[0] and not deliveries[-1]
