"""A path's datagram ceiling is its carrier's, not the session's (spec/paths.md PTH-1.1, recovery.md §7).

A session made over loopback UDP may probe up to 65507-byte datagrams; a path it gains through a
TURN allocation carries at most what the TURN server relays (16380 bytes with coturn).  The
endpoint asks the driver's per-route configuration (``channels`` callable) for each new path,
so the path's PMTU search, congestion controller and pacer start from its own ceiling.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable

from pathnet import PathNet

from p2pos.proto.channels.channel import ChannelConfig
from p2pos.proto.channels.connection import Connection
from p2pos.proto.endpoint.endpoint import Address
from p2pos.proto.paths.path import PathKind
from p2pos.proto.simulation.link import LinkConfig

WIDE = dataclasses.replace(ChannelConfig(), max_datagram_size=65507)
NARROW = 16380
LINK = LinkConfig(delay=0.01, bandwidth=1_000_000)


def _per_route(address: Address, local: Hashable) -> ChannelConfig:
    return dataclasses.replace(WIDE, max_datagram_size=NARROW) if local == "turn" else WIDE


def _with_turn_path(net: PathNet) -> Connection:
    """Direct UDP between a and b (the session's path), then a path from a's TURN socket to b."""
    net.add_link("direct", LINK, a=("udp", ("a", 1)), b=("udp", ("b", 2)))
    net.add_link("turn", LINK, a=("turn", ("t", 3)), b=("udp", ("b", 2)))
    session = net.connect("direct")
    net.ep["a"].add_path(session, ("b", 2), "turn", net.now, kind=PathKind.DATAGRAM, rank=2)
    connection = net.ep["a"].connection(session)
    assert connection is not None
    return connection


def test_a_path_through_a_narrower_socket_gets_that_socket_s_ceiling() -> None:
    net = PathNet(1)
    for endpoint in net.ep.values():
        endpoint.channel_config = _per_route
    connection = _with_turn_path(net)
    ceilings = {path_id: path.pmtu.max_plpmtu for path_id, path in connection.paths.items()}
    assert ceilings == {0: 65507, 1: NARROW}


def test_without_a_per_route_configuration_every_path_has_the_session_s() -> None:
    connection = _with_turn_path(PathNet(2, WIDE))
    assert {path.pmtu.max_plpmtu for path in connection.paths.values()} == {65507}


def _relay_wide(address: Address, local: Hashable) -> ChannelConfig:
    return dataclasses.replace(WIDE, stream_frame_size=65000) if local == "relay" else WIDE


def test_a_stream_path_takes_its_carrier_s_record_size() -> None:
    """A session made on UDP (stream_frame_size 16384 by default) gains a relay path whose link takes
    65000-byte records: that path's records are 65000 bytes, the others keep theirs (PTH-5.3)."""
    net = PathNet(3)
    for endpoint in net.ep.values():
        endpoint.channel_config = _relay_wide
    net.add_link("direct", LINK, a=("udp", ("a", 1)), b=("udp", ("b", 2)))
    net.add_link("relay", LINK, a=("relay", "relay-b"), b=("relay", "relay-a"))
    session = net.connect("direct")
    endpoint = net.ep["a"]
    endpoint.declare_local("relay", kind=PathKind.STREAM, rank=3)
    endpoint.add_path(session, "relay-b", "relay", net.now, kind=PathKind.STREAM, rank=3)
    connection = endpoint.connection(session)
    assert connection is not None
    sizes = {path_id: (path.kind, path.cc.max_datagram_size) for path_id, path in connection.paths.items()}
    assert sizes[1] == (PathKind.STREAM, 65000)
    assert connection.config.stream_frame_size == ChannelConfig().stream_frame_size == 16384
