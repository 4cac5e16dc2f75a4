"""An unused peer session is closed and reopened on demand (spec/paths.md PTH-7.6), and a quiet
session lives on the agreed keepalives (PTH-7.4): two nodes over the seeded link emulator under
``trio.testing.MockClock``, in virtual time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from helpers import make_keys

from p2pos.adapters.daemon import IDLE_CLOSE_AFTER, session_channels
from p2pos.adapters.home import Settings, SettingsError
from p2pos.adapters.node import Node, open_node
from p2pos.adapters.streams import ChannelStream
from p2pos.proto import ChannelConfig
from p2pos.proto.handshake.noise import Pattern
from p2pos.proto.simulation.link import LinkConfig
from p2pos.transports.emulated import EmulatedLink

ALICE, BOB = make_keys("alice"), make_keys("bob")
DELAY = 0.05  # one way: a 100 ms round trip
CLOSE_AFTER = 60.0


@asynccontextmanager
async def nodes(channels: ChannelConfig) -> AsyncIterator[tuple[Node, Node, list[tuple[str, dict[str, object]]]]]:
    link = EmulatedLink(7, LinkConfig(delay=DELAY))
    seen: list[tuple[str, dict[str, object]]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.run)
        async with (
            open_node(ALICE, transports=[link.a], channels=channels) as a,
            open_node(BOB, transports=[link.b], channels=channels) as b,
        ):
            a.observer = lambda kind, **fields: seen.append((kind, fields))
            yield a, b, seen
        nursery.cancel_scope.cancel()


async def echo_once(a: Node, b: Node, data: bytes) -> float:
    """A channel from a to b's ``svc``, ``data`` there and back, both ends closed; returns the time the
    connect took."""
    listener = b._listeners.get("svc") or b.listen("svc")
    start = trio.current_time()
    opened = await a.connect(b.peer_id, b.address, "svc")
    took = trio.current_time() - start
    accepted = await listener.accept()
    assert isinstance(opened, ChannelStream) and isinstance(accepted, ChannelStream)
    await opened.send_all(data)
    assert await accepted.receive_some() == data
    await accepted.send_all(data[::-1])
    assert await opened.receive_some() == data[::-1]
    await opened.aclose()
    await accepted.aclose()
    return took


async def test_an_unused_session_closes_and_the_next_channel_reopens_it_with_ik(
    autojump_clock: trio.testing.MockClock,
) -> None:
    channels = ChannelConfig(keepalive_interval=10.0, idle_close_after=CLOSE_AFTER)
    async with nodes(channels) as (a, b, seen):
        first = await echo_once(a, b, b"first")
        peer = a.peer(b.peer_id)
        assert peer is not None
        old_session = peer.session_id
        closed_at = trio.current_time()
        await trio.sleep(CLOSE_AFTER - 5.0)
        assert a.peer(b.peer_id) is not None  # not before idle_close_after
        await trio.sleep(10.0)
        assert a.peer(b.peer_id) is None and b.peer(a.peer_id) is None  # closed, NO_ERROR, on both sides
        assert any(kind == "peer_disconnected" and "idle" in str(fields.get("why")) for kind, fields in seen), seen
        assert trio.current_time() - closed_at >= CLOSE_AFTER
        assert a.reopen.address(b.peer_id) == b.address  # where the daemon reopens it first, with IK
        again = await echo_once(a, b, b"second")  # the application's next channel just works
        peer = a.peer(b.peer_id)
        assert peer is not None and peer.session_id != old_session
        connection = a.endpoint.connection(peer.session_id)
        assert connection is not None and connection.session.pattern is Pattern.IK  # the key was kept
        # One round trip for the IK handshake, one for OPEN/ACCEPT: no lookup, no more than the first time.
        assert again <= 4 * DELAY + 0.01 and again <= first + 0.01, (first, again)


async def test_a_quiet_session_stays_open_on_keepalives_without_idle_close(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Without ``idle_close_after`` a session with no channel lives on its keepalives: K = 120 s
    agreed, an idle timeout of 361 s, 20 minutes of virtual time."""
    async with nodes(ChannelConfig(keepalive_interval=120.0)) as (a, b, _):
        await echo_once(a, b, b"hello")
        await trio.sleep(1200.0)
        peer = a.peer(b.peer_id)
        assert peer is not None and b.peer(a.peer_id) is not None
        connection = a.endpoint.connection(peer.session_id)
        assert connection is not None and connection.idle_timeout == 361.0


def test_the_daemon_shares_its_keepalive_setting_and_closes_unused_sessions() -> None:
    config = session_channels(Settings(keepalive=40.0))
    assert config.keepalive_interval == 40.0 and config.idle_close_after == IDLE_CLOSE_AFTER == 300.0


def test_idle_close_is_a_setting_and_zero_means_never() -> None:
    assert session_channels(Settings(idle_close=45.0)).idle_close_after == 45.0
    assert session_channels(Settings(idle_close=0)).idle_close_after is None
    for bad in (5.0, -1.0, 100000.0):
        with pytest.raises(SettingsError):
            Settings(idle_close=bad)


async def test_the_keepalive_interval_set_from_outside_reaches_every_session(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """spec/nat.md NAT-5.5.3: the daemon sets the peer sessions' interval it learned; open sessions
    announce it (PTH-7.1) and the idle timeout follows (PTH-7.2); new sessions start with it."""
    async with nodes(ChannelConfig(keepalive_interval=25.0, idle_close_after=None)) as (a, b, _):
        await echo_once(a, b, b"x")
        peer = a.peer(b.peer_id)
        assert peer is not None
        a.set_keepalive_interval(54.0)
        b.set_keepalive_interval(54.0)
        assert a.keepalive_interval == 54.0
        await trio.sleep(1.0)  # the announcements cross and are acknowledged
        for node, other in ((a, b), (b, a)):
            found = node.peer(other.peer_id)
            assert found is not None
            connection = node.endpoint.connection(found.session_id)
            assert connection is not None and connection.keepalive_interval == 54.0
            assert connection.idle_timeout == 3 * 54.0 + 1
        await trio.sleep(400)  # quiet for 7 intervals: kept alive by keepalives at the new interval
        assert a.peer(b.peer_id) is peer
