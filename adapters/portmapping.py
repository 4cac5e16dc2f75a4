"""The daemon's port mappings (spec/portmap.md): one per UDP socket a gateway can forward to.

A socket bound to a private IPv4 address (RFC 1918, or RFC 6598's shared range) or to the IPv4
wildcard is mapped on the default gateway (``adapters/portmap.py``: PCP, then NAT-PMP, then UPnP
IGD), for as long as the daemon runs; the mapping is removed when it stops.  While a mapping is
in force its external address is a port-mapped candidate of this daemon (spec/candidates.md) and
the traits the rendezvous nodes pass on say ``port mapped`` (spec/punch.md §2), so peers dial it
and every punch towards this daemon is a plain dial.  A socket on a public address, loopback or
IPv6 is never mapped: no gateway translates for it.  Events for the app API (spec/appapi.md §5):
``port_mapped`` and ``port_mapping_lost``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from p2pos.proto.nat.addresses import AddressClass, classify, is_ip

from .node import Node, _show
from .portmap import open_default_port_mapping
from .rendezvous import Rendezvous

log = logging.getLogger("p2pos.portmapping")

_MAPPABLE = (AddressClass.PRIVATE, AddressClass.SHARED)


def mappable(host: str) -> bool:
    """Whether a socket bound to ``host`` sits behind a gateway that may map it (see the docstring)."""
    if not is_ip(host) or ":" in host:
        return False
    return classify(host) in (*_MAPPABLE, AddressClass.UNSPECIFIED)  # 0.0.0.0: every interface


async def keep_mapped(
    node: Node,
    rendezvous: Rendezvous,
    local: int,
    *,
    notify: Callable[..., None] | None = None,
    status: dict[int, dict[str, object]] | None = None,
) -> None:
    """Map socket ``local`` while this task runs (cancel it to remove the mapping); never raises."""
    tell = notify or (lambda kind, **fields: None)
    port = node.transports[local].local_address[1]
    try:
        async with open_default_port_mapping(internal_port=port) as mapper:
            if mapper is None:
                log.info("no IPv4 default gateway: no port mapping for UDP port %d", port)
                return
            seen, mapped = 0, None
            while True:
                seen = await mapper.wait_change(seen)
                mapping = mapper.mapping
                address = (mapping.external_address, mapping.external_port) if mapping is not None else None
                if address == mapped:
                    continue
                mapped = address
                rendezvous.set_mapped(local, address)
                if mapping is None:
                    if status is not None:
                        status.pop(local, None)
                    why = "; ".join(f"{f.protocol.name}: {f.reason}" for f in mapper.failures) or "lost"
                    log.info("no port mapping for UDP port %d (%s)", port, why)
                    tell("port_mapping_lost", port=port, why=why)
                    continue
                lifetime = None if math.isinf(mapping.lifetime) else mapping.lifetime
                shown = _show((mapping.external_address, mapping.external_port))
                if status is not None:
                    status[local] = {
                        "port": port,
                        "protocol": mapping.protocol.name.lower(),
                        "external": shown,
                        "lifetime": lifetime,
                    }
                log.info("UDP port %d mapped at %s by %s for %s s", port, shown, mapping.protocol.name, lifetime)
                tell(
                    "port_mapped", port=port, external=shown, protocol=mapping.protocol.name.lower(), lifetime=lifetime
                )
    except Exception as exc:  # a gateway that answers garbage must not take the daemon down
        log.warning("port mapping for UDP port %d stopped: %s", port, exc)
    finally:
        rendezvous.mapped.pop(local, None)
        if status is not None:
            status.pop(local, None)
