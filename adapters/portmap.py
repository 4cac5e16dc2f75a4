"""The default gateway of this host, for the port mapper (transports/portmap.py, spec/portmap.md §2).

    gateway = default_gateway()                  # "10.1.0.1", or None without an IPv4 default route
    async with open_default_port_mapping(internal_port=4000) as mapper: ...

Linux only: the IPv4 routing table in /proc/net/route (its gateway column is the address in
host byte order, hex, of the route whose destination and mask are 0 and whose flags have
RTF_GATEWAY).  Elsewhere ``default_gateway`` returns None.  Not yet wired into the daemon.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from p2pos.proto.nat.portmap_common import UDP
from p2pos.transports.portmap import PortMapConfig, PortMapper, open_port_mapping

ROUTE_TABLE = Path("/proc/net/route")
_RTF_UP, _RTF_GATEWAY = 0x1, 0x2


def gateway_from_route_table(text: str) -> str | None:
    """The gateway of the first usable IPv4 default route in /proc/net/route's text, or None."""
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            destination, gateway, flags, mask = (int(fields[i], 16) for i in (1, 2, 3, 7))
        except ValueError:
            continue
        if destination == 0 and mask == 0 and flags & _RTF_UP and flags & _RTF_GATEWAY and gateway:
            return str(ipaddress.IPv4Address(struct.pack("<I", gateway)))
    return None


def default_gateway(table: Path = ROUTE_TABLE) -> str | None:
    """This host's IPv4 default gateway (None if there is none or the table cannot be read)."""
    try:
        return gateway_from_route_table(table.read_text(encoding="ascii", errors="replace"))
    except OSError:
        return None


@asynccontextmanager
async def open_default_port_mapping(
    *, internal_port: int, transport: int = UDP, config: PortMapConfig | None = None
) -> AsyncIterator[PortMapper | None]:
    """``open_port_mapping`` on the default gateway; yields None when this host has no gateway."""
    gateway = default_gateway()
    if gateway is None:
        yield None
        return
    async with open_port_mapping(gateway=gateway, internal_port=internal_port, transport=transport, config=config) as m:
        yield m
