"""End-to-end acknowledgement on stream-carried paths (spec/paths.md §5, PTH-5.1, PTH-5.2; issue 12 item 1).

A relay link is a byte stream: it loses nothing while it lives, but what it still holds when
it dies, or when the session moves away from it, never arrives.  Bytes count as delivered
only when the peer acknowledges them, on every kind of path, so a path that is abandoned
while the relay holds N records loses nothing: its outstanding packets are sent again on
the path that takes over.
"""

from __future__ import annotations

import pytest
from pathnet import PathNet, Transfer

from p2pos.proto.paths.events import PathAbandoned, PathActive
from p2pos.proto.paths.path import PathKind
from p2pos.proto.simulation.link import LinkConfig

DIRECT = LinkConfig(delay=0.01, bandwidth=500_000)
RELAY = LinkConfig(delay=0.03, bandwidth=1_000_000, mtu=65535)


def _net(seed: int) -> tuple[PathNet, int, int]:
    """The session starts on the relay (a stream path, rank 3); the direct path is added and validates."""
    net = PathNet(seed)
    net.add_link("direct", DIRECT, a=("udp", ("a", 1)), b=("udp", ("b", 2)))
    net.add_link("relay", RELAY, a=("relay", "relay-a"), b=("relay", "relay-b"))
    for side in ("a", "b"):
        net.ep[side].declare_local("relay", kind=PathKind.STREAM, rank=3)
    session_a = net.connect("relay")
    session_b = net.b_session()
    return net, session_a, session_b


def _add_direct(net: PathNet, session_a: int, session_b: int) -> None:
    net.ep["a"].add_path(session_a, ("b", 2), "udp", net.now, kind=PathKind.DATAGRAM, rank=0)
    net.ep["b"].add_path(session_b, ("a", 1), "udp", net.now, kind=PathKind.DATAGRAM, rank=0)


def test_a_relay_path_sends_large_packets_and_is_acknowledged() -> None:
    net, session_a, _ = _net(0)
    net.log_sends = True
    transfer = Transfer(net, session_a)
    transfer.feed(1_000_000)
    transfer.finish()
    net.run(net.now + 30.0, lambda: transfer.done)
    assert transfer.done and transfer.intact()
    sizes = [size for _, side, link, size in net.sends if side == "a" and link == "relay"]
    assert max(sizes) > 8000, "stream-carried packets are not limited to the path MTU"
    net.run(net.now + 1.0)
    conn = net.conn("a", session_a)
    assert conn.recovery.ack_eliciting_in_flight == 0 and conn.recovery.largest_acked is not None


@pytest.mark.parametrize("seed", range(5))
def test_a_relay_abandoned_while_it_holds_records_loses_nothing(seed: int) -> None:
    net, session_a, session_b = _net(seed)
    _add_direct(net, session_a, session_b)
    net.cut("direct")  # direct validation fails for now: the data stays on the relay
    transfer = Transfer(net, session_a)
    transfer.feed(2_000_000)
    transfer.finish()
    net.run(net.now + 0.5 + 0.1 * seed)
    assert 0 < transfer.received < transfer.fed
    net.hold("relay")  # the relay stops forwarding: it holds what it gets
    net.run(net.now + 0.2)
    held = len(net.links["relay"].held)
    assert held > 0
    net.restore("direct")
    # The controlling side may move to direct as soon as direct validates; either way the relay is
    # then gone (its carrier closed): both sides abandon it, and what it held never arrives.
    paths_a = net.conn("a", session_a).paths
    net.run(net.now + 40.0, lambda: any(p.state.value == "validated" and p.rank == 0 for p in paths_a.values()))
    dropped = net.drop_held("relay")
    net.cut("relay")
    net.ep["a"].abandon_path(session_a, "relay-b", "relay", net.now)
    net.ep["b"].abandon_path(session_b, "relay-a", "relay", net.now)
    net.run(net.now + 60.0, lambda: transfer.done)
    assert dropped >= held
    assert transfer.done and transfer.intact(), f"{transfer.received} of {transfer.fed} bytes after {dropped} dropped"
    assert any(isinstance(e, PathAbandoned) and e.address == "relay-b" for _, e in net.events["a"])
    assert [p["address"] for p in net.ep["a"].paths(session_a)] == [("b", 2)]
    assert any(isinstance(e, PathActive) and e.address == ("b", 2) for _, e in net.events["a"])


@pytest.mark.parametrize("seed", range(5))
def test_the_active_relay_abandoned_while_holding_records_moves_everything_to_direct(seed: int) -> None:
    """The active path itself is abandoned (PathActive reason "abandoned"): its packets go again on direct."""
    net, session_a, session_b = _net(seed)
    transfer = Transfer(net, session_a)
    transfer.feed(1_500_000)
    transfer.finish()
    net.run(net.now + 0.3 + 0.1 * seed)
    net.hold("relay")
    net.run(net.now + 0.05)
    assert net.links["relay"].held
    # Direct comes up while the relay holds; a's data is still outstanding on the relay.
    _add_direct(net, session_a, session_b)
    conn_a = net.conn("a", session_a)
    net.ep["a"].abandon_path(session_a, "relay-b", "relay", net.now)  # not yet: no validated path to go to
    assert conn_a.path.path_id == 0, "the only validated path is kept until another one validates"
    net.run(net.now + 5.0, lambda: any(p.state.value == "validated" and p.rank == 0 for p in conn_a.paths.values()))
    net.drop_held("relay")
    net.cut("relay")
    net.ep["a"].abandon_path(session_a, "relay-b", "relay", net.now)
    net.ep["b"].abandon_path(session_b, "relay-a", "relay", net.now)
    net.run(net.now + 60.0, lambda: transfer.done)
    assert transfer.done and transfer.intact()
    # The abandoned relay is gone once the data left it, on both sides.
    assert [p["address"] for p in net.ep["a"].paths(session_a)] == [("b", 2)]
    assert [p["address"] for p in net.ep["b"].paths(session_b)] == [("a", 1)]
