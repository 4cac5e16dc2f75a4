"""The relay's trio driver on loopback (spec/relay.md §3.1, §4, §7): real WebSockets, in-process."""

from __future__ import annotations

import os

import pytest
import trio
from relay_helpers import identity, paired_links, record, start_relay, url_of

from p2pos.adapters.relay import stats_line
from p2pos.proto.relay.server import RelayConfig, RelayCore
from p2pos.transports.wsrelay_client import parse_relay_url
from p2pos.transports.wsrelay_server import WsRelayServer, host_of


async def test_two_peers_exchange_records_in_process() -> None:
    """REL-4.3, REL-4.4: records sent on a pair arrive, in order, at the other side only."""
    async with trio.open_nursery() as nursery:
        server = await start_relay(nursery)
        a, b = identity("a"), identity("b")
        link_a, link_b = await paired_links(nursery, url_of(server), a, b)
        for n in range(50):
            assert link_a.send(b.peer_id.public_key, record(n))
            assert link_b.send(a.peer_id.public_key, record(1000 + n))
        with trio.fail_after(10):
            got_b = [await link_b.receive() for _ in range(50)]
            got_a = [await link_a.receive() for _ in range(50)]
        assert got_b == [(a.peer_id.public_key, record(n)) for n in range(50)]
        assert got_a == [(b.peer_id.public_key, record(1000 + n)) for n in range(50)]
        assert server.core.stats["records_relayed"] == 100
        nursery.cancel_scope.cancel()


async def test_over_ipv6_loopback() -> None:
    """REL-2.3, REL-7.1: an IPv6 literal host, in brackets in the URL and the Host header, is the name signed."""
    async with trio.open_nursery() as nursery:
        server = WsRelayServer(RelayCore(RelayConfig(), os.urandom))
        await nursery.start(server.serve, "::1", 0)
        url = f"ws://[::1]:{server.addresses[0][1]}/p2pos/relay/v1"
        a, b = identity("a6"), identity("b6")
        link_a, link_b = await paired_links(nursery, url, a, b)
        assert link_a.send(b.peer_id.public_key, record(1))
        with trio.fail_after(5):
            assert await link_b.receive() == (a.peer_id.public_key, record(1))
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("relay.example:443", "relay.example"),
        ("Relay.Example", "relay.example"),
        ("[2001:db8::1]:8443", "2001:db8::1"),
        ("[::1]", "::1"),
        ("192.0.2.1:80", "192.0.2.1"),
    ],
)
def test_the_host_header_gives_the_name(header: str, host: str) -> None:
    """REL-2.4: without --name, the host of the Host header (no port, no brackets, lower case)."""
    assert host_of(header) == host


def test_relay_urls() -> None:
    """REL-7.1: default ports and path."""
    assert parse_relay_url("ws://relay.example") == (False, "relay.example", 80, "/p2pos/relay/v1")
    assert parse_relay_url("wss://relay.example") == (True, "relay.example", 443, "/p2pos/relay/v1")
    assert parse_relay_url("wss://[2001:db8::1]:8443/x") == (True, "2001:db8::1", 8443, "/x")
    with pytest.raises(ValueError):
        parse_relay_url("https://relay.example")


async def test_the_relay_logs_its_counters() -> None:
    """relay.md §5: the counters, in one log line (``p2pos relay --stats-interval``)."""
    async with trio.open_nursery() as nursery:
        server = await start_relay(nursery)
        a, b = identity("log-a"), identity("log-b")
        link_a, link_b = await paired_links(nursery, url_of(server), a, b)
        link_a.send(b.peer_id.public_key, record(1, 500))
        with trio.fail_after(5):
            await link_b.receive()
        line = stats_line(server.core)
        assert line.startswith("2 links open, 2 authenticated and 1 pairs so far; 1 records / 500 bytes relayed"), line
        nursery.cancel_scope.cancel()
