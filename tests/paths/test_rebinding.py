"""A NAT rebinding is a new path, not a new session (spec/paths.md §3, PTH-3.7; issue 12 item 8).

The peer's source port changes in the middle of a transfer: the endpoint sees an
authenticated packet from an unknown address, makes it a path, validates it with
PATH_CHALLENGE / PATH_RESPONSE, moves the data to it, and the transfer completes
with its hash intact on the same session.
"""

from __future__ import annotations

import pytest
from pathnet import PathNet, Transfer

from p2pos.proto.channels import frames as fr
from p2pos.proto.paths.events import PathActive, PathValidated
from p2pos.proto.simulation.link import LinkConfig

SEEDS = range(8)


def _net(seed: int) -> PathNet:
    net = PathNet(seed)
    net.add_link(
        "direct", LinkConfig(delay=0.02, loss=0.01, bandwidth=2_000_000), a=("udp", ("a", 1000)), b=("udp", ("b", 2000))
    )
    return net


@pytest.mark.parametrize("side", ["a", "b"])
@pytest.mark.parametrize("seed", SEEDS)
def test_a_source_port_change_mid_transfer_keeps_the_session_and_the_bytes(seed: int, side: str) -> None:
    net = _net(seed)
    session_a = net.connect("direct")
    session_b = net.b_session()
    transfer = Transfer(net, session_a)
    transfer.feed(3_000_000)
    transfer.finish()
    net.run(net.now + 0.5 + 0.1 * seed)
    assert 0 < transfer.received < transfer.fed, "the rebinding happens mid-transfer"
    port = 1000 if side == "a" else 2000
    net.rebind("direct", side, (side, port + 1))  # the NAT picked a new port
    net.run(net.now + 60.0, lambda: transfer.done)
    assert transfer.done and transfer.intact()
    # The same session on both sides, and the other side now sends to the new port.
    assert net.ep["a"].sessions()[0].local_index == session_a and len(net.ep["a"]) == 1
    assert net.ep["b"].sessions()[0].local_index == session_b and len(net.ep["b"]) == 1
    other = "b" if side == "a" else "a"
    other_session = session_b if other == "b" else session_a
    assert net.ep[other].address_of(other_session) == (side, port + 1)
    moved = [e for _, e in net.events[other] if isinstance(e, PathActive)]
    assert moved and moved[-1].reason == "rebinding" and moved[-1].address == (side, port + 1)
    assert any(isinstance(e, PathValidated) and e.address == (side, port + 1) for _, e in net.events[other])
    paths = {p["address"]: p for p in net.ep[other].paths(other_session)}
    assert paths[(side, port + 1)]["state"] == "validated" and paths[(side, port + 1)]["active"]


def test_a_rebinding_path_is_held_to_three_times_what_it_received() -> None:
    """PTH-3.6: until the new address is validated, at most 3x the bytes received from it go there."""
    net = _net(1)
    session_a = net.connect("direct")
    session_b = net.b_session()
    transfer = Transfer(net, session_a)
    transfer.feed(400_000)
    transfer.finish()
    net.run(net.now + 0.3)
    net.rebind("direct", "a", ("a", 1001))
    # Nothing from b reaches a any more until validation succeeds; check b's budget at every step.
    conn_b = net.conn("b", session_b)
    checked = 0
    for _ in range(200):
        net.run(net.now + 0.005)
        for path in conn_b.paths.values():
            if path.by_peer and path.state.value != "validated":
                checked += 1
                assert path.bytes_sent <= 3 * path.bytes_received
    assert checked > 0, "b saw the new address before it was validated"
    net.run(net.now + 60.0, lambda: transfer.done)
    assert transfer.done and transfer.intact()


def test_a_forged_or_garbled_datagram_from_a_new_address_makes_no_path() -> None:
    """Only an authenticated packet makes a path (PTH-3.7)."""
    net = _net(2)
    session_a = net.connect("direct")
    session_b = net.b_session()
    conn_b = net.conn("b", session_b)
    before = len(conn_b.paths)
    # A copy of a genuine record with one bit flipped, from an address b does not know.
    conn_a = net.conn("a", session_a)
    conn_a.ping(net.now)
    (record,) = conn_a.data_to_send(net.now)
    bad = bytearray(record)
    bad[-1] ^= 1
    net.ep["b"].receive_data(bytes(bad), ("mallory", 9), net.now, local="udp")
    assert len(conn_b.paths) == before
    assert net.ep["b"].paths(session_b)[0]["address"] == ("a", 1000)
    # The genuine record from the new address does make one (and a PATH_CHALLENGE goes there).
    net.ep["b"].receive_data(record, ("a", 1001), net.now, local="udp")
    assert len(conn_b.paths) == before + 1
    sent = net.ep["b"].data_to_send(net.now)
    assert any(address == ("a", 1001) and len(d) >= 1 for d, address, _ in sent)
    assert fr.PATH_DATA_SIZE == 8
