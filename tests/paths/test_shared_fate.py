"""Fail-over skips paths that share the dead path's fate (spec/paths.md PTH-4.8; issue 12 items 5-6).

A QUIC carrier on the daemon's UDP socket (spec/quic.md §5.1) goes out through the same socket to
the same address as direct UDP: when the direct path dies, the QUIC path dies with it.  On the
emulator a "quic" link joins the same two addresses as the "direct" one, from a socket declared
as sharing the UDP socket; a relay link is the third path.  Cutting the socket's link cuts both.
"""

from __future__ import annotations

import pytest
from pathnet import PathNet, Transfer

from p2pos.proto.paths.events import PathActive
from p2pos.proto.paths.path import PATH_DEAD_TIMEOUT, PathKind
from p2pos.proto.simulation.link import LinkConfig

DIRECT = LinkConfig(delay=0.01, bandwidth=200_000)
QUIC = LinkConfig(delay=0.01, bandwidth=200_000)
RELAY = LinkConfig(delay=0.04, bandwidth=100_000)
A, B = ("a", 1), ("b", 2)


def _net(seed: int, *, shared: bool, relay: bool = True) -> tuple[PathNet, int]:
    """Direct UDP (the session's first path), QUIC on the same socket and address, and a relay."""
    net = PathNet(seed)
    net.add_link("direct", DIRECT, a=("udp", A), b=("udp", B))
    net.add_link("quic", QUIC, a=("quic", A), b=("quic", B))
    if relay:
        net.add_link("relay", RELAY, a=("relay", "relay-a"), b=("relay", "relay-b"))
    for side in ("a", "b"):
        net.ep[side].declare_local("quic", kind=PathKind.STREAM, rank=1, shares_socket="udp" if shared else None)
    session_a = net.connect("direct")
    session_b = net.b_session()
    for side, session, peer in (("a", session_a, B), ("b", session_b, A)):
        net.ep[side].add_path(session, peer, "quic", net.now, kind=PathKind.STREAM, rank=1)
        if relay:
            other = "relay-b" if side == "a" else "relay-a"
            net.ep[side].add_path(session, other, "relay", net.now, kind=PathKind.STREAM, rank=3)
    net.run(net.now + 1.0)
    return net, session_a


def _fail_over(net: PathNet, session_a: int, cut: tuple[str, ...]) -> tuple[float, object]:
    """A steady transfer, the links ``cut`` at once: (seconds from the cut to the data moving, and the
    (local, address) it moved to, where it stayed); then the links come back and the transfer ends intact."""
    transfer = Transfer(net, session_a)
    for _ in range(20):
        transfer.feed(600)
        net.run(net.now + 0.05)
    start = net.now
    for name in cut:
        net.cut(name)
    while net.now < start + 8.0:
        transfer.feed(600)
        net.run(net.now + 0.05)
    moves = [(t, e) for t, e in net.events["a"] if t >= start and isinstance(e, PathActive)]
    assert moves, "no fall-back"
    first, event = moves[0]
    final = [(p["local"], p["address"]) for p in net.ep["a"].paths(session_a) if p["active"]]
    assert final == [(event.local, event.address)], f"the data left the fall-back path: {moves}"
    for name in cut:
        net.restore(name)
    transfer.finish()
    net.run(net.now + 120.0, lambda: transfer.done)
    assert transfer.done and transfer.intact()
    return first - start, (event.local, event.address)


@pytest.mark.parametrize("seed", range(4))
def test_when_the_udp_socket_path_dies_the_quic_path_on_it_is_skipped_for_the_relay(seed: int) -> None:
    net, session_a = _net(seed, shared=True)
    paths = {(p["local"], p["address"]): p for p in net.ep["a"].paths(session_a)}
    assert len(paths) == 3 and paths[("udp", B)]["active"], paths
    assert all(p["state"] == "validated" for p in paths.values()), paths
    seconds, where = _fail_over(net, session_a, cut=("direct", "quic"))
    assert where == ("relay", "relay-b"), f"fell back to {where}, which shares the dead path's socket and address"
    assert seconds <= PATH_DEAD_TIMEOUT + 0.1


@pytest.mark.parametrize("seed", range(2))
def test_without_the_shared_socket_declared_the_fall_back_picks_quic_by_rank(seed: int) -> None:
    """The control: nothing says QUIC shares the socket, so rank 1 beats the relay's 3 (and dies too)."""
    net, session_a = _net(seed, shared=False)
    transfer = Transfer(net, session_a)
    for _ in range(20):
        transfer.feed(600)
        net.run(net.now + 0.05)
    start = net.now
    net.cut("direct")
    net.cut("quic")
    while net.now < start + PATH_DEAD_TIMEOUT + 0.4:
        transfer.feed(600)
        net.run(net.now + 0.05)
    moves = [(e.local, e.address) for t, e in net.events["a"] if t >= start and isinstance(e, PathActive)]
    assert moves[:1] == [("quic", B)], moves  # rank 1 first: the QUIC path over the same socket and address


@pytest.mark.parametrize("seed", range(2))
def test_a_path_sharing_the_fate_is_still_the_last_resort(seed: int) -> None:
    """Only raw p2pos UDP dies (a firewall that lets QUIC through) and there is no relay: QUIC carries on."""
    net, session_a = _net(seed, shared=True, relay=False)
    seconds, where = _fail_over(net, session_a, cut=("direct",))
    assert where == ("quic", B)
    assert seconds <= PATH_DEAD_TIMEOUT + 0.1
