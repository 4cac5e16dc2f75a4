"""The endpoint's path interface (spec/paths.md §6): add_path, abandon_path, paths, declare_local, events."""

from __future__ import annotations

import pytest
from pathnet import PathNet

from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.paths.events import PathAbandoned, PathValidated
from p2pos.proto.paths.path import PathKind
from p2pos.proto.simulation.link import LinkConfig


def _net() -> tuple[PathNet, int, int]:
    net = PathNet(7)
    net.add_link("direct", LinkConfig(delay=0.01), a=("udp", ("a", 1)), b=("udp", ("b", 2)))
    net.add_link("turn", LinkConfig(delay=0.03), a=("turn0", ("a", 9)), b=("udp", ("b-turn", 3)))
    session_a = net.connect("direct")
    return net, session_a, net.b_session()


def test_add_path_validates_reports_and_inspects() -> None:
    net, session_a, _ = _net()
    path_id = net.ep["a"].add_path(session_a, ("b-turn", 3), "turn0", net.now, kind=PathKind.DATAGRAM, rank=2)
    assert path_id != 0
    assert net.ep["a"].add_path(session_a, ("b-turn", 3), "turn0", net.now, kind=PathKind.DATAGRAM, rank=2) == path_id
    net.run(net.now + 1.0)
    validated = [e for _, e in net.events["a"] if isinstance(e, PathValidated)]
    assert [(e.path_id, e.address, e.local) for e in validated] == [(path_id, ("b-turn", 3), "turn0")]
    info = {p["path_id"]: p for p in net.ep["a"].paths(session_a)}
    assert info[0]["active"] and info[0]["why"] == "handshake" and info[0]["rank"] == 0
    assert info[path_id]["state"] == "validated" and not info[path_id]["active"] and info[path_id]["rank"] == 2
    assert info[path_id]["kind"] == "datagram" and info[path_id]["srtt"] is not None
    assert int(str(info[path_id]["bytes_sent"])) >= 1200  # a padded challenge at least (PTH-3.3)
    # The worse-ranked TURN path does not take the data from the direct path (PTH-4.2).
    assert net.ep["a"].address_of(session_a) == ("b", 2)
    # b saw a's TURN relayed address as a new address: a path made by the peer, validated too.
    assert any(p["address"] == ("a", 9) for p in net.ep["b"].paths(net.b_session()))


def test_abandon_path_forgets_a_standby_path() -> None:
    net, session_a, _ = _net()
    net.ep["a"].add_path(session_a, ("b-turn", 3), "turn0", net.now, kind=PathKind.DATAGRAM, rank=2)
    net.run(net.now + 1.0)
    net.ep["a"].abandon_path(session_a, ("b-turn", 3), "turn0", net.now)
    net.ep["a"].abandon_path(session_a, ("nowhere", 0), "turn0", net.now)  # unknown: ignored
    net.run(net.now + 0.1)
    assert [p["address"] for p in net.ep["a"].paths(session_a)] == [("b", 2)]
    assert [e.address for _, e in net.events["a"] if isinstance(e, PathAbandoned)] == [("b-turn", 3)]


def test_add_path_needs_a_session_with_channels() -> None:
    net, _, _ = _net()
    with pytest.raises(LocalProtocolError):
        net.ep["a"].add_path(12345, ("x", 1), "udp", net.now, kind=PathKind.DATAGRAM)
    assert net.ep["a"].paths(12345) == []


def test_declare_local_sets_the_first_path_kind_and_rank() -> None:
    net = PathNet(8)
    net.add_link("relay", LinkConfig(delay=0.02, mtu=65535), a=("relay", "ra"), b=("relay", "rb"))
    for side in ("a", "b"):
        net.ep[side].declare_local("relay", kind=PathKind.STREAM, rank=3)
    session_a = net.connect("relay")
    (info,) = net.ep["a"].paths(session_a)
    assert (info["kind"], info["rank"]) == ("stream", 3)
    (info,) = net.ep["b"].paths(net.b_session())
    assert (info["kind"], info["rank"]) == ("stream", 3)


def test_a_run_of_datagrams_from_a_new_address_makes_one_path() -> None:
    """``receive_datagrams`` (a GRO buffer): the first authenticated datagram of the run makes the
    path (PTH-3.7), the rest of the run is fed to it."""
    net, session_a, session_b = _net()
    conn_a = net.conn("a", session_a)
    datagrams: list[bytes] = []
    for _ in range(3):
        conn_a.ping(net.now)
        datagrams += conn_a.data_to_send(net.now)
    assert len(datagrams) == 3
    net.ep["b"].receive_datagrams(datagrams, ("a", 4242), net.now, local="udp")
    paths = net.ep["b"].paths(session_b)
    new = [p for p in paths if p["address"] == ("a", 4242)]
    assert len(paths) == 2 and len(new) == 1
    assert int(str(new[0]["bytes_received"])) == sum(len(d) for d in datagrams)
