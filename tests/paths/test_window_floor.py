"""The window floor of every path (spec/paths.md §5, after PTH-5.3): what the controller's rate
moves in 5 ms, at most about 1 MB (16 relay records) and under the controller's own ceiling
(its window in STARTUP and PROBE_RTT, the bound after a congested round); none without a rate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from chan_helpers import Pair

from p2pos.proto.channels.channel import ChannelConfig
from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.paths.path import WINDOW_FLOOR_ALLOWANCE, WINDOW_FLOOR_MAX, Path, PathKind, floored
from p2pos.proto.recovery.bbr import Bbr, BbrState
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
def test_every_kind_of_path_has_the_floor(controller: str) -> None:
    def path(path_id: int, kind: PathKind) -> Path:
        return Path(
            path_id,
            kind=kind,
            rank=path_id,
            congestion_control=controller,
            max_datagram_size=1452,
            pmtu_probing=True,
        )

    stream, turn, datagram = (
        path(3, PathKind.STREAM),
        path(2, PathKind.DATAGRAM),
        path(0, PathKind.DATAGRAM),
    )
    for each in (stream, turn, datagram):
        assert isinstance(each.cc, WindowFloor)
        assert each.cc.congestion_window == each.cc.inner.congestion_window  # no rate yet: the controller's window


@pytest.mark.parametrize("path_kind", ["stream", "datagram"])
def test_the_handshake_path_has_the_floor_and_keeps_it_when_described(path_kind: str) -> None:
    """The handshake's path is made before the driver says what carries it; describing it (a TURN
    allocation, a pin) leaves the floor in place."""
    pair = Pair(config_a=ChannelConfig(path_kind=path_kind))
    pair.connect()
    a = pair.a.conn
    assert a is not None and isinstance(a.cc, WindowFloor) and a.cc is a.paths[0].cc
    a.describe_path(0, PathKind.DATAGRAM, 2)  # a TURN allocation
    a.describe_path(0, PathKind.DATAGRAM, -1)  # pinned: the rank only
    a.describe_path(0, PathKind.DATAGRAM, 0)
    assert isinstance(a.cc, WindowFloor) and a.cc is a.paths[0].cc


class Ceiling(Fixed):
    __slots__ = ("ceiling",)

    def __init__(self, cwnd: int, rate: float | None, ceiling: int | None) -> None:
        super().__init__(cwnd, rate)
        self.ceiling = ceiling

    @property
    def window_ceiling(self) -> int | None:
        return self.ceiling


@pytest.mark.parametrize(
    ("cwnd", "ceiling", "window"),
    [
        (5808, 5808, 5808),  # STARTUP at the initial window: the floor gives way
        (200_000, 400_000, 400_000),  # after a congested round: the floor up to the bound, no further
        (600_000, 300_000, 600_000),  # a bound below the controller's own window lowers nothing
        (200_000, None, 1_000_000),  # no bound: the whole floor
    ],
)
@pytest.mark.pure_core  # Fixed subclasses CongestionController, which a compiled core does not allow
def test_the_floor_stays_under_the_controllers_ceiling(cwnd: int, ceiling: int | None, window: int) -> None:
    floor = floored(Ceiling(cwnd, 200e6, ceiling))
    assert floor.window_ceiling == ceiling
    assert floor.congestion_window == window


def test_bbr_names_its_ceiling_in_startup_probe_rtt_and_after_a_congested_round() -> None:
    def ceiling(bbr: Bbr) -> int | None:
        return bbr.window_ceiling

    bbr = Bbr(max_datagram_size=1452)
    assert bbr.state is BbrState.STARTUP
    assert ceiling(bbr) == bbr.congestion_window  # the initial window holds, then grows by BBR's own rule (REC-5.1)
    bbr._state = BbrState.PROBE_BW
    assert ceiling(bbr) is None
    bbr._inflight_hi = 300_000
    assert ceiling(bbr) == 300_000
    bbr._state = BbrState.PROBE_RTT  # it waits for what is in flight to drain to its window
    assert ceiling(bbr) == bbr.congestion_window == bbr.minimum_window  # no BDP yet: four packets
    bbr._cwnd, bbr._probe_rtt_cwnd = 400_000, 100_000  # the model window is kept; half the BDP holds
    assert ceiling(bbr) == bbr.congestion_window == bbr.probe_rtt_window == 100_000
    bbr.on_persistent_congestion(1.0)  # back to STARTUP at the minimum window
    assert bbr.state is BbrState.STARTUP
    assert ceiling(bbr) == bbr.congestion_window == bbr.minimum_window
