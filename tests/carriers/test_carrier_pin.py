"""Carrier pinning (``Node.pin``, ``PUT /v1/peers/{peer}/pin``, ``p2pos path PEER --pin VIA``).

Two real nodes on loopback, each with one UDP socket and QUIC sharing it (spec/quic.md §5.1): one
session with a direct UDP path (rank 0, active) and a QUIC path (rank 1, standby).  Pinning the
session to ``quic`` on the side that opened it moves the data to the QUIC path, and both sides
carry it there; pinning ``udp`` brings it back; unpinning restores the carriers' own ranks.  Then
two daemons (QUIC on by default) do the same through the app API.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from carrier_helpers import MB, stream_pair, two_way_transfer
from helpers import make_keys

from p2pos.adapters.carriers.quic import open_shared_quic_transport
from p2pos.adapters.client import Client, ClientError
from p2pos.adapters.daemon import Daemon, open_daemon
from p2pos.adapters.home import Home, Settings
from p2pos.adapters.node import Node, Peer, open_node
from p2pos.adapters.nodepaths import PIN_RANK
from p2pos.adapters.relay import RelayServer
from p2pos.proto import Identity, LocalKeys

ALICE, BOB = make_keys("pin-alice"), make_keys("pin-bob")
HOST = "127.0.0.1"


@asynccontextmanager
async def session_with_two_paths() -> AsyncIterator[tuple[Node, Node, Peer]]:
    """Alice opened a session to Bob over direct UDP and QUIC on the same socket; both paths validated."""
    async with contextlib.AsyncExitStack() as stack:
        a = await stack.enter_async_context(open_node(ALICE, host=HOST))
        b = await stack.enter_async_context(open_node(BOB, host=HOST))
        qa = await stack.enter_async_context(open_shared_quic_transport(a, handshake_timeout=5))
        await stack.enter_async_context(open_shared_quic_transport(b))
        qa.expect(b.address, BOB.identity.peer_id)
        peer = await a.connect_any(b.peer_id, [b.address], routes=[(a.transports.index(qa), b.address)])
        await wait_paths(a, peer, lambda paths: paths.get("quic", {}).get("state") == "validated")
        yield a, b, peer


def by_via(node: Node, session_id: int) -> dict[str, dict[str, object]]:
    return {str(p["via"]): p for p in node.peer_paths(session_id)}


async def wait_paths(node: Node, peer: Peer, check: object, timeout: float = 10.0) -> dict[str, dict[str, object]]:
    with trio.fail_after(timeout):
        while True:
            paths = by_via(node, peer.session_id)
            if check(paths):  # type: ignore[operator]
                return paths
            await trio.sleep(0.02)


def active(paths: dict[str, dict[str, object]]) -> str:
    return next(via for via, p in paths.items() if p["active"])


async def test_pinning_moves_the_session_to_the_pinned_carrier_and_back() -> None:
    """[API-3.1.4]: pinned to QUIC, the side that opened the session moves its data there (the bytes
    go on the QUIC path) and the peer follows; pinned to UDP it comes back; unpinned, own ranks."""
    with trio.fail_after(60):
        async with session_with_two_paths() as (a, b, peer):
            assert active(by_via(a, peer.session_id)) == "udp"
            a.pin(b.peer_id, "quic")
            paths = await wait_paths(a, peer, lambda p: active(p) == "quic", timeout=2)
            assert paths["quic"]["rank"] == PIN_RANK and paths["udp"]["rank"] == 0
            s, r = await stream_pair(a, b, b.address)
            sent_before = int(paths["quic"]["bytes_sent"])  # type: ignore[call-overload]
            await two_way_transfer(s, r, MB)
            paths = by_via(a, peer.session_id)
            assert active(paths) == "quic" and int(paths["quic"]["bytes_sent"]) > sent_before + MB  # type: ignore[call-overload]
            [b_peer] = b.peers()
            assert active(by_via(b, b_peer.session_id)) == "quic"  # the controlled side follows
            a.pin(b.peer_id, "udp")
            paths = await wait_paths(a, peer, lambda p: active(p) == "udp", timeout=2)
            assert paths["udp"]["rank"] == PIN_RANK and paths["quic"]["rank"] == 1
            a.pin(b.peer_id, None)
            paths = by_via(a, peer.session_id)
            assert (paths["udp"]["rank"], paths["quic"]["rank"]) == (0, 1) and active(paths) == "udp"
            assert a.pins == {}


async def test_a_pinned_carrier_is_used_again_after_unpinned_ranks_would_leave_it() -> None:
    """Pinned to QUIC, the session stays there although direct UDP ranks better on its own: a
    standby check of UDP that validates does not move it (PTH-4.2 moves only to a better rank)."""
    with trio.fail_after(60):
        async with session_with_two_paths() as (a, b, peer):
            a.pin(b.peer_id, "quic")
            await wait_paths(a, peer, lambda p: active(p) == "quic", timeout=2)
            connection = a.endpoint.connection(peer.session_id)
            assert connection is not None
            udp_id = int(by_via(a, peer.session_id)["udp"]["path_id"])  # type: ignore[call-overload]
            connection.paths[udp_id].start_validation(trio.current_time())  # the standby check, now
            a._updated(peer.session_id)
            await trio.sleep(0.5)
            assert active(by_via(a, peer.session_id)) == "quic"


async def test_pin_refuses_an_unknown_carrier() -> None:
    async with open_node(ALICE, host=HOST) as a:
        with pytest.raises(ValueError, match="cannot pin to 'carrier-pigeon'"):
            a.pin(BOB.identity.peer_id, "carrier-pigeon")
        assert a.pins == {}


async def test_the_app_api_pins_a_peer_and_status_shows_it(tmp_path: Path) -> None:
    """[API-3.1.1] [API-3.1.2] [API-3.1.3]: two daemons with default settings (QUIC on) and a
    rendezvous node; ``PUT /v1/peers/B/pin`` makes the session (none yet), pins it to QUIC, status
    shows the pin and the QUIC path active; a bad ``via`` is 400; ``DELETE`` unpins and direct UDP
    is active again."""
    keys = LocalKeys.generate(Identity.generate())
    server = await RelayServer.bind(keys, HOST, 0)
    bootstrap = f"{keys.identity.peer_id}@{HOST}:{server.address[1]}"
    assert Settings().quic is True
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery, contextlib.AsyncExitStack() as stack:
            nursery.start_soon(server.run)
            daemons: list[Daemon] = []
            for i in range(2):
                settings = Settings(listen=(f"{HOST}:0",), bootstrap=(bootstrap,), api_port=-1, lookup_timeout=2)
                home = Home.at(tmp_path / f"d{i}")
                daemons.append(await stack.enter_async_context(open_daemon(home, settings)))
            a, b = daemons
            for daemon in daemons:
                while not any(r["state"] == "registered" for r in daemon.rendezvous.status()):
                    await trio.sleep(0.02)
            client = Client(socket_path=Home.at(tmp_path / "d0").api_socket)
            with pytest.raises(ClientError) as refused:
                await client.pin(str(b.peer_id), "pigeon")
            assert refused.value.status == 400
            answer = await client.pin(str(b.peer_id), "quic")
            assert answer["pin"] == "quic" and answer["controlling"] is True
            peer = a.node.peer(b.peer_id)
            assert peer is not None
            await wait_paths(a.node, peer, lambda p: "quic" in p and active(p) == "quic", timeout=10)
            [entry] = (await client.status())["peers"]
            assert entry["pin"] == "quic" and entry["path"] == "quic"
            answer = await client.pin(str(b.peer_id), None)
            assert answer["pin"] is None
            await wait_paths(a.node, peer, lambda p: active(p) == "udp", timeout=5)
            nursery.cancel_scope.cancel()
