"""Liveness with several paths (spec/paths.md §7): the controlling side keeps each path alive with
one keepalive per interval (a PING on the active path, a PATH_CHALLENGE on the standby one) and the
controlled side only answers: two packets per path per interval; an idle active path whose
keepalive goes unanswered is found dead by that keepalive, with no probe timer of its own.
"""

from __future__ import annotations

from collections import Counter

from pathnet import PathNet

from p2pos.proto.channels.channel import ChannelConfig
from p2pos.proto.paths.events import PathActive, PathDead
from p2pos.proto.paths.path import PathKind
from p2pos.proto.simulation.link import LinkConfig

K = 120.0
DIRECT = LinkConfig(delay=0.01)
RELAY = LinkConfig(delay=0.04)


def _net(seed: int) -> tuple[PathNet, int]:
    net = PathNet(seed, ChannelConfig(keepalive_interval=K, pmtu_probing=False))
    net.add_link("direct", DIRECT, a=("udp", ("a", 1)), b=("udp", ("b", 2)))
    net.add_link("relay", RELAY, a=("relay", "relay-a"), b=("relay", "relay-b"))
    session_a = net.connect("direct")
    session_b = net.b_session()
    net.ep["a"].add_path(session_a, "relay-b", "relay", net.now, kind=PathKind.DATAGRAM, rank=3)
    net.ep["b"].add_path(session_b, "relay-a", "relay", net.now, kind=PathKind.DATAGRAM, rank=3)
    return net, session_a


def test_two_packets_per_path_per_interval_the_controlled_side_only_answers() -> None:
    """PTH-7.4, PTH-4.7: ten quiet minutes at K = 120 s: per interval, on each path, one packet from
    the controlling side (PING / PATH_CHALLENGE) and one answer from the controlled side."""
    net, _ = _net(3)
    net.run(net.now + 30.0)  # validations, announcements, their ACKs
    start = net.now
    net.log_sends = True
    net.run(start + 5 * K)
    for k in range(5):
        lo, hi = start + k * K, start + (k + 1) * K
        counts = Counter((side, link) for t, side, link, _ in net.sends if lo <= t < hi)
        assert counts == {("a", "direct"): 1, ("b", "direct"): 1, ("a", "relay"): 1, ("b", "relay"): 1}, (k, counts)
    assert not [e for side in "ab" for _, e in net.events[side] if isinstance(e, PathDead)]


def test_an_idle_active_path_is_found_dead_by_its_unanswered_keepalive() -> None:
    """§7 (dead paths while idle): the direct path dies while the session is quiet; the next keepalive
    draws no answer, so the path is dead 2.5 s after it (PTH-4.4) and the relay takes over, with no
    probe timer other than the keepalive."""
    net, _ = _net(4)
    net.run(net.now + 30.0)
    net.log_sends = True
    cut = net.now
    net.cut("direct")
    net.run(cut + K + 10.0)
    keepalives = [t for t, side, link, _ in net.sends if side == "a" and link == "direct"]
    assert keepalives, "no keepalive on the direct path within one interval"
    dead = [t for t, e in net.events["a"] if isinstance(e, PathDead)]
    moved = [t for t, e in net.events["a"] if isinstance(e, PathActive) and e.reason == "dead"]
    assert dead and moved and moved[0] == dead[0]
    assert 0 < dead[0] - keepalives[0] <= 3.0, (keepalives[:3], dead)
