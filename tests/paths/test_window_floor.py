"""The window floor of stream-carried and relayed paths (spec/paths.md §5, after PTH-5.3): what the
controller's rate moves in 5 ms, at most about 1 MB (16 relay records); none without a rate; a direct
datagram path has none, a TURN path (relayed) has it, and so does a first path described as relayed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from chan_helpers import Pair

from p2pos.proto.channels.channel import ChannelConfig
from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.paths.path import WINDOW_FLOOR_ALLOWANCE, WINDOW_FLOOR_MAX, Path, PathKind, floored
from p2pos.proto.recovery.congestion import CongestionController, NewReno, WindowFloor
from p2pos.proto.recovery.recovery import SentPacket
from p2pos.proto.recovery.rtt import RttEstimator


class Fixed(CongestionController):
    """A controller whose window and rate the test sets; it records what it was told."""

    __slots__ = ("calls", "cwnd", "mds", "rate")

    def __init__(self, cwnd: int, rate: float | None, mds: int = 65000) -> None:
        self.cwnd, self.rate, self.mds = cwnd, rate, mds
        self.calls: list[str] = []

    @property
    def congestion_window(self) -> int:
        return self.cwnd

    @property
    def max_datagram_size(self) -> int:
        return self.mds

    @property
    def pacing_rate(self) -> float | None:
        return self.rate

    def available(self, bytes_in_flight: int) -> int:
        return max(0, self.cwnd - bytes_in_flight)

    def on_packet_sent(self, packet: SentPacket[Any], bytes_in_flight: int, now: float, *, app_limited: bool) -> None:
        self.calls.append("sent")

    def on_packets_acked(
        self, packets: Sequence[SentPacket[Any]], now: float, *, rtt: RttEstimator, app_limited: bool
    ) -> None:
        self.calls.append("acked")

    def on_packets_lost(self, packets: Sequence[SentPacket[Any]], now: float) -> None:
        self.calls.append("lost")

    def on_persistent_congestion(self, now: float) -> None:
        self.calls.append("persistent")

    def set_max_datagram_size(self, max_datagram_size: int) -> None:
        self.mds = max_datagram_size


@pytest.mark.parametrize(
    ("cwnd", "rate", "window"),
    [
        (600_000, 200e6, 1_000_000),  # loopback relay: 5 ms at 200 MB/s lifts BBR's 600 KB
        (600_000, 1e9, 16 * 65000),  # capped at 16 relay records
        (300_000, 300e6, 1_040_000),  # a loopback TURN path: 64 of its 16380-byte datagrams
        (250_000, 1.25e6, 250_000),  # a slow WAN relay: 6 KB of floor, below the controller's window
        (600_000, None, 600_000),  # no rate estimate: no floor
        (2_000_000, 200e6, 2_000_000),  # never lowers a larger window
    ],
)
@pytest.mark.pure_core  # Fixed subclasses CongestionController, which a compiled core does not allow
def test_the_floor_is_the_rate_for_5_ms_capped_at_16_records(cwnd: int, rate: float | None, window: int) -> None:
    floor = floored(Fixed(cwnd, rate))
    assert WINDOW_FLOOR_ALLOWANCE == 0.005 and WINDOW_FLOOR_MAX == 16 * 65000
    assert floor.congestion_window == window
    assert floor.available(window - 1000) == 1000
    assert floor.available(window + 1) == 0


@pytest.mark.pure_core  # Fixed subclasses CongestionController, which a compiled core does not allow
def test_every_call_reaches_the_controller() -> None:
    inner = Fixed(600_000, 200e6)
    floor = WindowFloor(inner, 16 * 65000, 0.005)
    rtt = RttEstimator()
    floor.on_packets_acked([], 0.0, rtt=rtt, app_limited=True)
    floor.on_packets_lost([], 0.0)
    floor.on_persistent_congestion(0.0)
    assert inner.calls == ["acked", "lost", "persistent"]
    floor.set_max_datagram_size(16384)
    assert inner.max_datagram_size == floor.max_datagram_size == 16384
    assert floor.pacing_rate == 200e6
    inner.cwnd, inner.rate = 100_000, 1e9
    assert floor.congestion_window == 16 * 65000  # the cap is bytes, whatever the packet size
    inner.rate = 1e6
    assert floor.congestion_window == 100_000  # 5 KB of floor: the controller's own window
    assert floored(floor) is floor  # never wrapped twice
    for max_bytes, allowance in ((0, 0.005), (16, 0.0)):
        with pytest.raises(LocalProtocolError):
            WindowFloor(NewReno(), max_bytes, allowance)


@pytest.mark.parametrize("controller", ["bbr", "newreno", "cubic"])
def test_stream_and_relayed_paths_have_the_floor_and_direct_datagram_paths_do_not(controller: str) -> None:
    def path(path_id: int, kind: PathKind, relayed: bool) -> Path:
        return Path(
            path_id,
            kind=kind,
            rank=path_id,
            congestion_control=controller,
            max_datagram_size=1452,
            pmtu_probing=True,
            relayed=relayed,
        )

    stream, turn, datagram = (
        path(3, PathKind.STREAM, False),
        path(2, PathKind.DATAGRAM, True),
        path(0, PathKind.DATAGRAM, False),
    )
    assert isinstance(stream.cc, WindowFloor) and isinstance(turn.cc, WindowFloor)
    assert not isinstance(datagram.cc, WindowFloor)
    assert stream.cc.congestion_window == datagram.cc.congestion_window  # no rate yet: the controller's window


def test_a_connection_whose_first_path_is_stream_carried_has_the_floor() -> None:
    """ChannelConfig(path_kind="stream"): the handshake's path is a relay link or a QUIC stream."""
    pair = Pair(config_a=ChannelConfig(path_kind="stream"), config_b=ChannelConfig(path_kind="datagram"))
    pair.connect()
    a, b = pair.a.conn, pair.b.conn
    assert a is not None and b is not None
    assert isinstance(a.cc, WindowFloor) and a.cc is a.paths[0].cc
    assert not isinstance(b.cc, WindowFloor)


def test_a_first_path_described_as_relayed_gets_the_floor_and_keeps_it_when_its_rank_changes() -> None:
    """The handshake's path is made before the driver says what carries it (a TURN allocation:
    describe_path(..., relayed=True)); a later rank change (a pin) leaves the floor alone."""
    pair = Pair()
    pair.connect()
    a = pair.a.conn
    assert a is not None

    def floored_now() -> bool:
        assert a is not None and a.cc is a.paths[0].cc
        return isinstance(a.cc, WindowFloor)

    assert not floored_now()
    a.describe_path(0, PathKind.DATAGRAM, 2, relayed=True)
    assert floored_now() and a.paths[0].relayed
    a.describe_path(0, PathKind.DATAGRAM, -1)  # pinned: the rank only
    assert floored_now()
    a.describe_path(0, PathKind.DATAGRAM, 0, relayed=False)
    assert not floored_now()
