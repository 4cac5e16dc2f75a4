"""A stream-carried path's window floor (spec/paths.md §5, after PTH-5.3): never below 16 of its
records, whatever the controller decides; datagram paths keep their controller's own window."""

from __future__ import annotations

import pytest
from chan_helpers import Pair

from p2pos.proto.channels.channel import ChannelConfig
from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.paths.path import STREAM_WINDOW_PACKETS, Path, PathKind, stream_window
from p2pos.proto.recovery.bbr import Bbr
from p2pos.proto.recovery.congestion import NewReno, WindowFloor
from p2pos.proto.recovery.rtt import RttEstimator


def _path(kind: PathKind, controller: str = "bbr") -> Path:
    return Path(1, kind=kind, rank=3, congestion_control=controller, max_datagram_size=1452, pmtu_probing=True)


@pytest.mark.parametrize("controller", ["bbr", "newreno", "cubic"])
def test_a_stream_path_window_is_at_least_16_records(controller: str) -> None:
    path = _path(PathKind.STREAM, controller)
    path.cc.set_max_datagram_size(65000)
    assert path.cc.congestion_window >= STREAM_WINDOW_PACKETS * 65000 == 1_040_000
    assert path.cc.available(1_000_000) == path.cc.congestion_window - 1_000_000
    path.cc.on_persistent_congestion(0.0)  # the controller collapses; the floor holds
    assert path.cc.congestion_window == 1_040_000
    assert path.cc.available(1_040_000) == 0


def test_a_datagram_path_has_no_floor() -> None:
    path = _path(PathKind.DATAGRAM)
    assert not isinstance(path.cc, WindowFloor)
    path.cc.on_persistent_congestion(0.0)
    assert path.cc.congestion_window < 16 * 1200


def test_the_floor_leaves_a_larger_window_and_every_call_to_the_controller() -> None:
    inner = NewReno(max_datagram_size=1200)
    floor = WindowFloor(inner, 2)
    assert floor.congestion_window == inner.congestion_window == 12000  # initial window 10 x 1200 > 2 x 1200
    floor.set_max_datagram_size(65000)
    assert inner.max_datagram_size == floor.max_datagram_size == 65000
    assert floor.congestion_window == max(inner.congestion_window, 130_000)
    assert floor.pacing_rate == inner.pacing_rate
    assert stream_window(floor) is floor  # never wrapped twice
    rtt = RttEstimator()
    floor.on_packets_acked([], 0.0, rtt=rtt, app_limited=True)
    floor.on_packets_lost([], 0.0)
    with pytest.raises(LocalProtocolError):
        WindowFloor(Bbr(), 0)


def test_a_connection_whose_first_path_is_stream_carried_has_the_floor() -> None:
    """ChannelConfig(path_kind="stream"): the handshake's path is a relay link or a QUIC stream."""
    pair = Pair(config_a=ChannelConfig(path_kind="stream"), config_b=ChannelConfig(path_kind="datagram"))
    pair.connect()
    a, b = pair.a.conn, pair.b.conn
    assert a is not None and b is not None
    assert isinstance(a.cc, WindowFloor) and a.cc is a.paths[0].cc
    assert a.cc.congestion_window >= STREAM_WINDOW_PACKETS * a.cc.max_datagram_size
    assert not isinstance(b.cc, WindowFloor)
