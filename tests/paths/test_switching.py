"""Several paths, switching and the 3 s dead-path rule on the emulator (spec/paths.md §4; issue 12 item 8).

Seeded and deterministic: a direct UDP link and a relay-like link (longer delay, less
bandwidth, rank 3) between the same two endpoints.

* A steady transfer whose direct path is cut and restored 100 times completes with its
  hash intact, and each fall-back to the relay happens within 3 s of the cut (PTH-4.4);
  the range of fall-back times is printed.
* A session that starts on the relay moves its data to the direct path the moment that
  path validates (within 1 s: PTH-4.2).
* A transfer moved relay -> direct -> relay mid-stream loses nothing.
"""

from __future__ import annotations

import random

import pytest
from pathnet import PathNet, Transfer

from p2pos.proto.channels.channel import ChannelConfig
from p2pos.proto.paths.events import PathActive, PathDead, PathValidated
from p2pos.proto.paths.path import PATH_DEAD_TIMEOUT, PathKind
from p2pos.proto.simulation.link import LinkConfig

DIRECT = LinkConfig(delay=0.01, bandwidth=200_000)
RELAY = LinkConfig(delay=0.04, bandwidth=100_000)
RELAY_RANK = 3


def _net(
    seed: int, *, start_on_relay: bool = False, direct: LinkConfig = DIRECT, relay: LinkConfig = RELAY
) -> tuple[PathNet, int, int]:
    """Two endpoints, both links, the session up on one and the other path added on both sides."""
    net = PathNet(seed)
    net.add_link("direct", direct, a=("udp", ("a", 1)), b=("udp", ("b", 2)))
    net.add_link("relay", relay, a=("relay", "relay-a"), b=("relay", "relay-b"))
    for side in ("a", "b"):
        net.ep[side].declare_local("relay", kind=PathKind.DATAGRAM, rank=RELAY_RANK)
    if start_on_relay:
        net.cut("direct")  # not punched yet
        session_a = net.connect("relay")
        session_b = net.b_session()
        net.ep["a"].add_path(session_a, ("b", 2), "udp", net.now, kind=PathKind.DATAGRAM, rank=0)
        net.ep["b"].add_path(session_b, ("a", 1), "udp", net.now, kind=PathKind.DATAGRAM, rank=0)
    else:
        session_a = net.connect("direct")
        session_b = net.b_session()
        net.ep["a"].add_path(session_a, "relay-b", "relay", net.now, kind=PathKind.DATAGRAM, rank=RELAY_RANK)
        net.ep["b"].add_path(session_b, "relay-a", "relay", net.now, kind=PathKind.DATAGRAM, rank=RELAY_RANK)
    return net, session_a, session_b


def _steady(net: PathNet, transfer: Transfer, until: float, rate: int = 600, step: float = 0.05) -> None:
    """Feed ``rate`` bytes every ``step`` seconds until ``until`` (data is always outstanding)."""
    while net.now < until:
        transfer.feed(rate)
        net.run(min(until, net.now + step))


def _active(net: PathNet, side: str, session_id: int) -> object:
    (active,) = [p["address"] for p in net.ep[side].paths(session_id) if p["active"]]
    return active


@pytest.mark.parametrize(("seed", "lossy"), [(0, False), (1, False), (2, False), (3, True), (4, True)], ids=str)
def test_a_direct_path_cut_and_restored_100_times_falls_back_within_3_s_and_loses_nothing(
    seed: int, lossy: bool
) -> None:
    """With ``lossy``, 2 % loss and 5 ms of jitter on both links as well."""
    direct, relay = DIRECT, RELAY
    if lossy:
        direct = LinkConfig(delay=0.01, bandwidth=200_000, loss=0.02, jitter=0.005)
        relay = LinkConfig(delay=0.04, bandwidth=100_000, loss=0.02, jitter=0.005)
    net, session_a, _ = _net(seed, direct=direct, relay=relay)
    net.run(net.now + 1.0)
    transfer = Transfer(net, session_a)
    rng = random.Random(seed)
    fallbacks: list[float] = []
    for _ in range(100):
        _steady(net, transfer, net.now + rng.uniform(0.5, 3.0))
        assert _active(net, "a", session_a) == ("b", 2), "the data is on the direct path before the cut"
        cut = net.now
        net.cut("direct")
        _steady(net, transfer, cut + rng.uniform(PATH_DEAD_TIMEOUT + 0.5, 10.0))
        moved = [t for t, e in net.events["a"] if t >= cut and isinstance(e, PathActive) and e.reason == "dead"]
        assert moved, f"no fall-back after the cut at {cut:.3f}"
        fallbacks.append(moved[0] - cut)
        assert _active(net, "a", session_a) == "relay-b"
        net.restore("direct")
        restored = net.now

        def back(restored: float = restored) -> bool:
            return any(
                t >= restored and isinstance(e, PathActive) and e.address == ("b", 2) for t, e in net.events["a"]
            )

        while not back():
            assert net.now < restored + 40.0, "the restored direct path was not used again"
            _steady(net, transfer, net.now + 0.05)
    transfer.finish()
    net.run(net.now + 120.0, lambda: transfer.done)
    kind = " (lossy)" if lossy else ""
    print(f"seed {seed}{kind}: 100 fall-backs in {min(fallbacks):.3f} .. {max(fallbacks):.3f} s after the cut")
    assert transfer.done and transfer.intact()
    assert transfer.fed > 100 * 600
    assert max(fallbacks) <= PATH_DEAD_TIMEOUT
    assert len(fallbacks) == 100


@pytest.mark.parametrize("seed", range(6))
def test_a_session_that_starts_on_the_relay_moves_to_direct_within_1_s_of_it_validating(seed: int) -> None:
    net, session_a, session_b = _net(seed, start_on_relay=True)
    transfer = Transfer(net, session_a)
    rng = random.Random(seed)
    _steady(net, transfer, net.now + rng.uniform(1.0, 6.0))
    assert _active(net, "a", session_a) == "relay-b"
    net.restore("direct")  # hole punching succeeded
    restored = net.now

    def validated() -> float | None:
        times = [t for t, e in net.events["a"] if t >= restored and isinstance(e, PathValidated)]
        return times[0] if times else None

    while validated() is None:
        assert net.now < restored + 40.0, "the direct path never validated"
        _steady(net, transfer, net.now + 0.01, rate=120, step=0.01)
    at = validated()
    assert at is not None
    direct_b = next(p for p in net.ep["b"].paths(session_b) if p["address"] == ("a", 1))
    before = int(str(direct_b["bytes_received"]))
    _steady(net, transfer, at + 1.0, rate=120, step=0.01)
    moved = [t for t, e in net.events["a"] if t >= at and isinstance(e, PathActive) and e.address == ("b", 2)]
    assert moved and moved[0] - at <= 1.0, "the data moved to the direct path within 1 s"
    direct_b = next(p for p in net.ep["b"].paths(session_b) if p["address"] == ("a", 1))
    assert int(str(direct_b["bytes_received"])) - before > 5_000, "data arrived on the direct path within 1 s"
    transfer.finish()
    net.run(net.now + 60.0, lambda: transfer.done)
    assert transfer.done and transfer.intact()


@pytest.mark.parametrize("seed", range(6))
def test_a_transfer_moved_relay_to_direct_and_back_mid_stream_loses_nothing(seed: int) -> None:
    net, session_a, _ = _net(seed, start_on_relay=True)
    transfer = Transfer(net, session_a)
    transfer.feed(1_500_000)
    transfer.finish()
    rng = random.Random(seed)
    net.run(net.now + rng.uniform(0.5, 2.0))
    assert 0 < transfer.received < transfer.fed
    net.restore("direct")
    net.run(net.now + 40.0, lambda: _active(net, "a", session_a) == ("b", 2))
    assert _active(net, "a", session_a) == ("b", 2)
    net.run(net.now + rng.uniform(0.1, 1.0))
    assert transfer.received < transfer.fed, "still mid-stream when the direct path goes"
    net.cut("direct")
    net.run(net.now + 120.0, lambda: transfer.done)
    assert transfer.done and transfer.intact()
    assert [e.reason for _, e in net.events["a"] if isinstance(e, PathActive)] == ["better", "dead"]
    assert any(isinstance(e, PathDead) for _, e in net.events["a"])


@pytest.mark.parametrize("seed", range(3))
def test_a_standby_path_that_stops_answering_is_found_dead_and_comes_back(seed: int) -> None:
    """PTH-4.7, PTH-7.4: the controlling side checks each standby path once per keepalive interval
    (10 s by default), so a relay that died while unused is DEAD within that interval plus the
    validation time, and is used again once it answers."""
    net, session_a, _ = _net(seed)
    net.run(net.now + 1.0)
    interval = ChannelConfig().keepalive_interval
    assert interval == 10.0
    relay_id = next(p["path_id"] for p in net.ep["a"].paths(session_a) if p["address"] == "relay-b")
    cut = net.now
    net.cut("relay")
    net.run(cut + interval + 3.5 + 0.1)
    dead = [t for t, e in net.events["a"] if isinstance(e, PathDead) and e.path_id == relay_id]
    assert dead and dead[0] - cut <= interval + 3.5
    net.restore("relay")
    net.run(net.now + 40.0)
    (relay,) = [p for p in net.ep["a"].paths(session_a) if p["path_id"] == relay_id]
    assert relay["state"] == "validated" and not relay["active"]
