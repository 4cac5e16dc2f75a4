"""TCP within one host runs unpaced; TCP from another host keeps the default (transports/tcp_pacing.py).

The tests make the choice independent of the machine's sysctl: they declare Reno the "pacing"
default and CUBIC the unpaced choice (both are always built into Linux), so every branch runs
whatever ``net.ipv4.tcp_congestion_control`` says.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import trio
from relay_helpers import identity, paired_links, start_relay, url_of

from p2pos.transports import tcp_pacing

pytestmark = pytest.mark.skipif(not hasattr(socket, "TCP_CONGESTION"), reason="TCP_CONGESTION is Linux's")


@pytest.fixture
def reno_paces(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Pretend the system default is Reno and that Reno paces, so the unpaced choice is CUBIC."""
    tcp_pacing.default_congestion_control.cache_clear()
    tcp_pacing.unpaced_choice.cache_clear()
    monkeypatch.setattr(tcp_pacing, "PACING_PREFIX", "reno")
    monkeypatch.setattr(tcp_pacing, "UNPACED", ("cubic",))
    monkeypatch.setattr(tcp_pacing, "default_congestion_control", lambda: "reno")
    yield
    tcp_pacing.unpaced_choice.cache_clear()


def test_this_hosts_addresses() -> None:
    assert tcp_pacing.on_this_host("127.0.0.1")
    assert tcp_pacing.on_this_host("127.8.9.10")  # all of 127/8 is loopback
    assert tcp_pacing.on_this_host("::1")
    assert tcp_pacing.on_this_host("::ffff:127.0.0.1")
    assert not tcp_pacing.on_this_host("198.18.0.1")  # the lab's "internet": never this host's own
    assert not tcp_pacing.on_this_host("0.0.0.0")
    assert not tcp_pacing.on_this_host("224.0.0.1")
    assert not tcp_pacing.on_this_host("relay.example")


def test_nothing_changes_when_the_default_does_not_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    tcp_pacing.unpaced_choice.cache_clear()
    monkeypatch.setattr(tcp_pacing, "default_congestion_control", lambda: "cubic")
    try:
        assert tcp_pacing.unpaced_choice() is None
        with socket.socket() as sock:
            before = tcp_pacing.congestion_control(sock)
            assert tcp_pacing.unpace(sock) is None
            assert tcp_pacing.congestion_control(sock) == before
    finally:
        tcp_pacing.unpaced_choice.cache_clear()


@pytest.mark.usefixtures("reno_paces")
async def test_a_client_unpaces_before_it_connects_to_this_host() -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        stream = await tcp_pacing.open_tcp_stream("127.0.0.1", port)
        async with stream:
            assert tcp_pacing.congestion_control(stream.socket) == "cubic"
    finally:
        listener.close()


@pytest.mark.usefixtures("reno_paces")
async def test_a_client_refused_on_this_host_gets_an_oserror() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(OSError):
        await tcp_pacing.open_tcp_stream("127.0.0.1", port)


@pytest.mark.usefixtures("reno_paces")
async def test_relay_links_on_this_host_run_unpaced_at_both_ends() -> None:
    async with trio.open_nursery() as nursery:
        server = await start_relay(nursery)
        await paired_links(nursery, url_of(server), identity("a"), identity("b"))
        accepted = [conn.stream for conn in server._conns.values()]
        assert len(accepted) == 2
        for stream in accepted:
            assert isinstance(stream, trio.SocketStream)
            assert tcp_pacing.congestion_control(stream.socket) == "cubic"
        nursery.cancel_scope.cancel()


@pytest.mark.usefixtures("reno_paces")
async def test_a_relay_link_from_another_host_gets_the_default_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tcp_pacing, "on_this_host", lambda ip: False)
    async with trio.open_nursery() as nursery:
        server = await start_relay(nursery)
        await paired_links(nursery, url_of(server), identity("a"), identity("b"))
        for conn in server._conns.values():
            assert isinstance(conn.stream, trio.SocketStream)
            assert tcp_pacing.congestion_control(conn.stream.socket) == "reno"
        nursery.cancel_scope.cancel()
