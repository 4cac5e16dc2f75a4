"""What a node's socket means for the paths over it: their kind and rank, and their channel config.

The endpoint asks for a channel config per new path (``Endpoint(channels=...)``): a path's
records and datagrams are as large as its carrier takes (spec/paths.md §5, recovery.md §7), not
the first path's.
"""

from __future__ import annotations

import dataclasses

from p2pos.proto import ChannelConfig
from p2pos.proto.nat.addresses import is_global_ipv6
from p2pos.proto.paths.path import PathKind

from .nodetypes import Address, Transport

#: The largest UDP payload (IPv4), and so the highest PMTU ceiling ChannelConfig accepts; a record
#: (at most 65535 bytes, spec/record.md) always fits it.
_LARGEST_DATAGRAM = 65507
#: The largest packet on a stream-carried path (ChannelConfig.stream_frame_size's limit).
_LARGEST_STREAM_FRAME = 65000
#: The PMTU search's ceiling of a session whose first path is stream-carried.
_STREAM_FIRST_DATAGRAM_CEILING = 16384
#: The channel layer's default PMTU ceiling: the node replaces it with what the interface carries.
_DEFAULT_CEILING = ChannelConfig().max_datagram_size


#: The rank of direct UDP from a socket bound to a global IPv6 address: before direct IPv4's 0, as
#: RFC 8421 and RFC 8305 prefer IPv6 (spec/paths.md §4, spec/punch.md §3.9): a session on a direct
#: IPv4 path moves to a direct IPv6 one when it validates.
DIRECT_IPV6_RANK = -1


def kind_and_rank(transport: object) -> tuple[PathKind, int]:
    """A socket's path kind and rank (spec/paths.md §4): a transport says them with ``path_kind``
    ("datagram" or "stream") and ``path_rank``; a plain UDP socket has neither: direct datagrams,
    rank 0 (``DIRECT_IPV6_RANK`` bound to a global IPv6 address)."""
    kind = PathKind(str(getattr(transport, "path_kind", "datagram")))
    rank = getattr(transport, "path_rank", None)
    if rank is None:
        local = getattr(transport, "local_address", None)
        host = local[0] if isinstance(local, tuple) and local else None
        rank = DIRECT_IPV6_RANK if is_global_ipv6(host) else 0
    return kind, int(rank)


def channel_config_for(base: ChannelConfig, transport: Transport, address: Address) -> ChannelConfig:
    """``base`` for a path to ``address`` through ``transport``: the PMTU search's ceiling follows the
    outgoing interface's MTU, within the largest record; a stream carrier's records are as large as it takes."""
    try:
        payload = transport.max_udp_payload(address)
    except OSError:
        return base
    if getattr(transport, "path_kind", "datagram") == "stream":
        # A stream carrier's records are as large as it takes (a relay: 65000): fewer records, less
        # work per byte in every process on the way.  Datagram paths added later keep the ceiling
        # they had before (16384).
        frame = max(1200, min(payload, _LARGEST_STREAM_FRAME))
        if frame != base.stream_frame_size:
            base = dataclasses.replace(base, stream_frame_size=frame)
        payload = min(payload, _STREAM_FIRST_DATAGRAM_CEILING)
    ceiling = min(payload, _LARGEST_DATAGRAM)
    if base.max_datagram_size != _DEFAULT_CEILING:  # the application chose a ceiling: keep within it
        ceiling = min(ceiling, base.max_datagram_size)
    if ceiling == base.max_datagram_size or ceiling < 1200 or not base.pmtu_probing:
        return base
    return dataclasses.replace(base, max_datagram_size=ceiling)
