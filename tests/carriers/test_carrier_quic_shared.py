"""QUIC on the node's own UDP socket (spec/quic.md §5.1): ``open_shared_quic_transport``.

Two real nodes on loopback, each with one UDP socket and QUIC sharing it.  A firewall stand-in
drops what a node sends whose first byte is below 64 (raw p2pos, session.md §4.1) and passes
QUIC, as the lab's QUIC-only routers do.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import cast

import trio
from carrier_helpers import MB, payload, read_digest, send_and_finish, stream_pair, two_way_transfer
from helpers import make_keys

from p2pos.adapters.carriers import QuicTransport
from p2pos.adapters.carriers.quic import open_shared_quic_transport
from p2pos.adapters.daemon import Daemon, open_daemon
from p2pos.adapters.home import Home, Settings
from p2pos.adapters.node import Node, Peer, open_node
from p2pos.adapters.relay import RelayServer
from p2pos.adapters.streams import ChannelStream
from p2pos.proto import Identity, LocalKeys
from p2pos.transports.udp import UdpTransport

ALICE, BOB = make_keys("alice"), make_keys("bob")
HOST = "127.0.0.1"


def drop_raw_p2pos(udp: UdpTransport, to: set[tuple[str, int]] | None = None) -> list[int]:
    """Make ``udp`` drop every datagram it sends (to ``to``; None: anywhere) whose first byte is < 64;
    the list counts them."""
    dropped = [0]
    send_batch_now, send_batch = udp.send_batch_now, udp.send_batch

    def keep(datagrams: Sequence[bytes], addr: tuple[str, int]) -> list[bytes]:
        if to is not None and addr not in to:
            return list(datagrams)
        kept = [d for d in datagrams if d and d[0] >= 64]
        dropped[0] += len(datagrams) - len(kept)
        return kept

    def filtered_now(datagrams: Sequence[bytes], addr: tuple[str, int]) -> int:
        kept = keep(datagrams, addr)
        if kept:
            send_batch_now(kept, addr)  # QUIC: what does not go at once is a loss it recovers
        return len(datagrams)

    async def filtered(datagrams: Sequence[bytes], addr: tuple[str, int]) -> None:
        kept = keep(datagrams, addr)
        if kept:
            await send_batch(kept, addr)
        else:
            await trio.lowlevel.checkpoint()

    udp.send_batch_now = filtered_now  # type: ignore[method-assign]
    udp.send_batch = filtered  # type: ignore[method-assign]
    return dropped


@asynccontextmanager
async def shared_nodes(*, firewall: bool) -> AsyncIterator[tuple[Node, Node, QuicTransport, QuicTransport, list[int]]]:
    async with open_node(ALICE, host=HOST) as a, open_node(BOB, host=HOST) as b:
        dropped = [0]
        if firewall:
            for node in (a, b):
                udp = node.transports[0]
                assert isinstance(udp, UdpTransport)
                counter = drop_raw_p2pos(udp)
                dropped = counter if node is a else dropped
        async with open_shared_quic_transport(a, handshake_timeout=5) as qa, open_shared_quic_transport(b) as qb:
            assert qa.local_address == a.address and qb.local_address == b.address
            qa.expect(b.address, BOB.identity.peer_id)
            yield a, b, qa, qb, dropped


async def reach(a: Node, b: Node, qa: QuicTransport) -> Peer:
    """What the daemon does: direct UDP and QUIC to the same address at once (QUIC-5.1.3)."""
    return await a.connect_any(b.peer_id, [b.address], routes=[(a.transports.index(qa), b.address)])


async def test_a_session_comes_up_over_quic_when_raw_p2pos_udp_is_dropped() -> None:
    """[QUIC-5.1.1] [QUIC-5.1.2] [QUIC-5.1.3]: raw p2pos dropped both ways, the session comes up on
    the QUIC route to the same address, and 2 x 2 MB go through it, hashes intact."""
    with trio.fail_after(40):
        async with shared_nodes(firewall=True) as (a, b, qa, qb, dropped):
            peer = await reach(a, b, qa)
            [active] = [p for p in a.peer_paths(peer.session_id) if p["active"]]
            assert active["via"] == "quic" and active["address"] == f"{HOST}:{b.address[1]}"
            s, r = await stream_pair(a, b, b.address)
            await two_way_transfer(s, r, 2 * MB)
            assert dropped[0] > 0  # the UDP handshake was tried and dropped
            assert qa.peers == {b.address: BOB.identity.peer_id}
            assert list(qb.peers.items()) == [(a.address, ALICE.identity.peer_id)]  # from Alice's UDP socket
            assert a.foreign.get("quic", 0) > 0 and b.foreign.get("quic", 0) > 0


async def test_a_carrier_no_session_uses_is_closed_at_the_second_sweep_and_dialed_again_when_needed() -> None:
    """[QUIC-4.5]: while the session runs on it the carrier stays, sweep after sweep; once the session
    is closed, the first sweep that finds the carrier unused keeps it and the second closes it, on
    both sides, reported as no loss; a new session dials a new carrier."""
    from p2pos.adapters.nodepaths import addresses_in_use

    def sweep(node: Node, transport: QuicTransport) -> list[tuple[str, int]]:
        return transport.sweep(addresses_in_use(node, node.transports.index(transport)))

    with trio.fail_after(40):
        async with shared_nodes(firewall=True) as (a, b, qa, qb, _):
            peer = await reach(a, b, qa)
            assert addresses_in_use(a, a.transports.index(qa)) == {b.address}
            for _ in range(3):
                assert sweep(a, qa) == [] and sweep(b, qb) == []
            await a.close_peer(BOB.identity.peer_id)
            with trio.fail_after(10):
                while a.peer(BOB.identity.peer_id) is not None or b.peer(ALICE.identity.peer_id) is not None:
                    await trio.sleep(0.05)
            assert qa.peers and qb.peers  # QUIC's idle timeout is far off
            assert sweep(a, qa) == [] and sweep(b, qb) == []  # the first look: kept
            assert sweep(a, qa) == [b.address] and sweep(b, qb) == [a.address]
            with trio.fail_after(10):
                while qa.peers or qb.peers:
                    await trio.sleep(0.05)
            assert qa.losses == [] and qb.losses == [] and qa.released == qb.released == 1
            again = await reach(a, b, qa)
            assert again.session_id != peer.session_id and qa.peers == {b.address: BOB.identity.peer_id}


async def test_where_both_work_direct_udp_carries_and_quic_stands_by() -> None:
    """[QUIC-5.1.3]: nothing dropped: direct UDP (rank 0) is active, the QUIC path is validated and
    kept as a rank-1 standby; data flows."""
    with trio.fail_after(40):
        async with shared_nodes(firewall=False) as (a, b, qa, _qb, _):
            peer = await reach(a, b, qa)
            s, r = await stream_pair(a, b, b.address)
            await two_way_transfer(s, r, 1 * MB)
            with trio.fail_after(10):
                while True:
                    paths = {p["via"]: p for p in a.peer_paths(peer.session_id)}
                    if "quic" in paths and paths["quic"]["state"] == "validated":
                        break
                    await trio.sleep(0.05)
            assert paths["udp"]["active"] and not paths["quic"]["active"], paths
            assert paths["quic"]["kind"] == "stream" and paths["quic"]["rank"] == 1


async def test_daemons_reach_each_other_over_quic_where_raw_p2pos_is_dropped_between_them(tmp_path: Path) -> None:
    """[QUIC-5.1.3]: two daemons registered with a rendezvous node; raw p2pos between the two
    daemons is dropped (the rendezvous node still gets it).  ``reach`` dials QUIC to the peer's
    observed address besides direct UDP; the session comes up on QUIC, status shows the QUIC path
    active, and 1 MB goes through with its hash intact."""
    keys = LocalKeys.generate(Identity.generate())
    server = await RelayServer.bind(keys, HOST, 0)
    bootstrap = f"{keys.identity.peer_id}@{HOST}:{server.address[1]}"
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery, contextlib.AsyncExitStack() as stack:
            nursery.start_soon(server.run)
            daemons: list[Daemon] = []
            for i in range(2):
                settings = Settings(
                    listen=(f"{HOST}:0",), bootstrap=(bootstrap,), api_port=-1, lookup_timeout=2, quic=True
                )
                daemons.append(await stack.enter_async_context(open_daemon(Home.at(tmp_path / f"d{i}"), settings)))
            a, b = daemons
            for daemon in daemons:
                while not any(r["state"] == "registered" for r in daemon.rendezvous.status()):
                    await trio.sleep(0.02)
            dropped = [
                drop_raw_p2pos(cast(UdpTransport, d.node.transports[0]), {o.node.address}) for d, o in ((a, b), (b, a))
            ]
            peer = await a.reach(b.peer_id)
            [active] = [p for p in a.node.peer_paths(peer.session_id) if p["active"]]
            assert active["via"] == "quic" and active["kind"] == "stream", a.node.peer_paths(peer.session_id)
            assert dropped[0][0] > 0
            listener = b.node.listen("sink")
            channel = await a.node.connect(b.peer_id, b.node.address, "sink")
            accepted = await listener.accept()
            assert isinstance(channel, ChannelStream) and isinstance(accepted, ChannelStream)
            data = payload(MB, b"quic")
            got: dict[str, object] = {}
            async with trio.open_nursery() as inner:
                inner.start_soon(send_and_finish, channel, data)
                inner.start_soon(read_digest, accepted, got, "b")
            assert got["b"] == (MB, hashlib.sha256(data).hexdigest())
            status = a.status()
            entry = next(p for p in status["peers"] if p["peer_id"] == str(b.peer_id))
            assert [p["via"] for p in entry["paths"] if p["active"]] == ["quic"]
            nursery.cancel_scope.cancel()
