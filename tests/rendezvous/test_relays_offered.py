"""RELAYS (spec/rendezvous.md §4.5, RDV-7.7): the node's offer and which URLs count."""

from __future__ import annotations

import pytest

from p2pos.proto.errors import LocalProtocolError, ProtocolError
from p2pos.proto.rendezvous import messages as m
from p2pos.proto.rendezvous.node import NodeConfig


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("ws://198.18.0.1:80", True),
        ("wss://relay.example/p2pos", True),
        ("wss://", False),
        ("ws:///path", False),
        ("ws://:80", False),
        ("turn:198.18.0.1:3478", False),
        ("http://198.18.0.1", False),
        ("ws://198.18.0.1 :80", False),
        ("WS://198.18.0.1", False),
    ],
)
def test_which_urls_a_relays_may_offer(url: str, ok: bool) -> None:
    assert m.relay_url_ok(url) is ok


def test_the_node_refuses_to_offer_what_a_peer_would_ignore() -> None:
    NodeConfig(relays=("ws://198.18.0.1:80",) * 8)
    with pytest.raises(LocalProtocolError):
        NodeConfig(relays=("ws://198.18.0.1:80",) * 9)
    with pytest.raises(LocalProtocolError):
        NodeConfig(relays=("turn:198.18.0.1:3478",))
    with pytest.raises(LocalProtocolError):
        NodeConfig(relays=("ws://" + "a" * 252,))


def test_relays_round_trip_and_bounds() -> None:
    message = m.Relays(txid=7, urls=("wss://198.18.0.1:443", "ws://[2001:2::1]:80"))
    assert m.decode_untrusted(m.encode(message)) == message
    with pytest.raises(LocalProtocolError):
        m.encode(m.Relays(txid=1, urls=("",)))
    with pytest.raises(ProtocolError):
        m.decode_untrusted(m.encode(message) + b"\x00")
