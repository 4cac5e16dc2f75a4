"""The WebSocket relay as a node's socket (adapters/carriers/relay.py) and the node's paths over it.

Two nodes, each with a UDP socket on loopback and a ``RelayTransport`` on a relay served in
this process (tests/relay/relay_helpers.py).  Checks: sessions and data over the relay alone
(REL-7.5), a session that starts on the relay moves to direct UDP once that path validates
(PTH ranking: direct 0 < relay 3), a direct path added to a relay session and a relay path
added to a direct one, a lost carrier abandons only its paths (``Node.path_lost``), and the
node's observer and ``peer_paths`` report all of it.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio
from carrier_helpers import MB, stream_pair, two_way_transfer
from helpers import make_keys

from p2pos.adapters.carriers import RelayTransport, abandon_paths_on_loss
from p2pos.adapters.node import Node, open_node
from p2pos.adapters.streams import ChannelStream
from p2pos.transports.wsrelay_client import RelayLink

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "relay"))
from relay_helpers import paired_links, start_relay, url_of

ALICE, BOB = make_keys("relay-alice"), make_keys("relay-bob")
HOST = "127.0.0.1"

Events = list[tuple[str, dict[str, object]]]


def recorder(events: Events) -> object:
    def observe(kind: str, **fields: object) -> None:
        events.append((kind, fields))

    return observe


@asynccontextmanager
async def relay_nodes() -> AsyncIterator[tuple[Node, Node, RelayTransport, RelayTransport, Events]]:
    """Alice and Bob on UDP (socket 0) and one relay (socket 1); Alice's node events recorded."""
    events: Events = []
    async with trio.open_nursery() as nursery:
        server = await start_relay(nursery)
        links = [RelayLink(url_of(server), k.identity, ping_interval=5.0, env={}) for k in (ALICE, BOB)]
        for link in links:
            await nursery.start(link.run)
        async with open_node(ALICE, host=HOST) as a, open_node(BOB, host=HOST) as b:
            ta, tb = RelayTransport(links[0]), RelayTransport(links[1])
            assert a.add_transport(ta) == 1 and b.add_transport(tb) == 1
            abandon_paths_on_loss(a, ta)
            abandon_paths_on_loss(b, tb)
            a.observer = recorder(events)  # type: ignore[assignment]
            tb.want(ALICE.identity.peer_id)  # the answering side wants the caller (a rendezvous introduction)
            yield a, b, ta, tb, events
        nursery.cancel_scope.cancel()


def active(node: Node, peer: Node) -> dict[str, object]:
    session = node.peer(peer.peer_id)
    assert session is not None
    paths = node.peer_paths(session.session_id)
    [current] = [p for p in paths if p["active"]]
    return current


async def wait_active(node: Node, peer: Node, via: str, timeout: float = 10.0) -> dict[str, object]:
    with trio.fail_after(timeout):
        while (current := active(node, peer))["via"] != via or current["state"] != "validated":
            await trio.sleep(0.02)
    return current


async def test_a_session_and_two_megabytes_each_way_over_the_relay_alone() -> None:
    """REL-7.5: sealed datagrams ride the relay as records; the session runs end to end over it."""
    with trio.fail_after(40):
        async with relay_nodes() as (a, b, ta, _tb, events):
            s, r = await stream_pair(a, b, RelayTransport.address_of(b.peer_id))
            await two_way_transfer(s, r, 2 * MB)
            current = active(a, b)
            assert current["via"] == "relay" and current["kind"] == "stream" and current["rank"] == 3
            assert current["address"] == f"relay:{b.peer_id}"
            assert isinstance(current["bytes_sent"], int) and current["bytes_sent"] > 2 * MB
            assert ("peer_connected", {"peer_id": str(b.peer_id), "address": f"relay:{b.peer_id}"}) in events
            assert ta.link.client.stats["send_dropped"] == ta.dropped


async def test_a_relay_session_moves_to_direct_udp_and_back_when_the_direct_path_is_lost() -> None:
    """A session made over the relay gets a direct path: it validates and, ranking better, becomes
    active ("better"); the direct path lost (``path_lost``) is abandoned and the relay carries on."""
    with trio.fail_after(40):
        async with relay_nodes() as (a, b, _ta, _tb, events):
            s, r = await stream_pair(a, b, RelayTransport.address_of(b.peer_id))
            await wait_active(a, b, "relay")
            path_id = a.add_path(b.peer_id, b.address)
            assert path_id is not None
            current = await wait_active(a, b, "udp")
            assert current["path_id"] == path_id and current["why"] == "better"
            kinds = [kind for kind, _ in events]
            assert "path_validated" in kinds and "path_active" in kinds
            [moved] = [f for kind, f in events if kind == "path_active" and f["path_id"] == path_id]
            assert moved["reason"] == "better" and moved["via"] == "udp"
            await two_way_transfer(s, r, MB)
            assert a.path_lost(0, b.address, "test: direct path gone") == 1
            current = await wait_active(a, b, "relay")
            assert any(kind == "path_abandoned" and f["path_id"] == path_id for kind, f in events)
            await two_way_transfer(*await _second_channel(a, b), MB)  # the session survived


async def test_a_lost_relay_under_a_direct_session_abandons_only_the_relay_path() -> None:
    """A direct session gets a relay path (validated, not active: it ranks lower); the relay
    transport closing abandons that path only; the session and its channel carry on direct."""
    with trio.fail_after(40):
        async with relay_nodes() as (a, b, ta, _tb, events):
            s, r = await stream_pair(a, b, b.address)
            relay_path = a.add_path(b.peer_id, RelayTransport.address_of(b.peer_id))
            session = a.peer(b.peer_id)
            assert session is not None and relay_path is not None
            with trio.fail_after(10):
                while not any(kind == "path_validated" and f["path_id"] == relay_path for kind, f in events):
                    await trio.sleep(0.02)
            assert active(a, b)["via"] == "udp"
            ta.close()  # the relay given up: CarrierLost(address=None) -> path_lost
            with trio.fail_after(5):
                while not any(kind == "path_abandoned" and f["path_id"] == relay_path for kind, f in events):
                    await trio.sleep(0.02)
            states = {p["path_id"]: p["state"] for p in a.peer_paths(session.session_id)}
            assert states.get(relay_path, "abandoned") == "abandoned"  # gone, or shown as abandoned
            await two_way_transfer(s, r, MB)
            assert a.peer(b.peer_id) is session


async def test_a_lost_carrier_closes_a_session_that_has_no_other_path() -> None:
    """A session whose only path is the relay is closed at once with the carrier's reason."""
    with trio.fail_after(20):
        async with relay_nodes() as (a, b, ta, _tb, events):
            _s, _r = await stream_pair(a, b, RelayTransport.address_of(b.peer_id))
            ta.close()
            with trio.fail_after(5):
                while a.peer(b.peer_id) is not None:
                    await trio.sleep(0.02)
            [(_, gone)] = [(k, f) for k, f in events if k == "peer_disconnected"]
            assert "carrier lost: relay" in str(gone["why"])


async def test_relay_addresses_are_checked() -> None:
    """Only ``("relay:PEERID", 0)`` is a relay address; UDP sockets refuse it, the relay refuses IPs."""
    async with relay_nodes() as (a, _b, ta, _tb, _events):
        for bad in (("127.0.0.1", 4000), ("relay:nonsense", 0), ("relay:x", 5), "relay"):
            try:
                ta.check_address(bad)
            except ValueError:
                pass
            else:
                raise AssertionError(f"{bad!r} accepted")
        assert a._socket_for(RelayTransport.address_of(BOB.identity.peer_id)) == 1
        assert a._socket_for((HOST, 4000)) == 0


async def _second_channel(a: Node, b: Node) -> tuple[ChannelStream, ChannelStream]:
    return await stream_pair(a, b, b.address, service="again")


async def test_relay_records_are_large_and_a_full_link_queue_holds_the_node_back() -> None:
    """A session that starts on the relay makes 65000-byte records (``RECORD_CEILING``: less work per
    byte in the relay and both links), and the node waits for room in the link's queue rather than
    having records dropped (``send_batch``): 8 MB one way, not one record lost at the client."""
    with trio.fail_after(60):
        async with relay_nodes() as (a, b, ta, _tb, _events):
            s, r = await stream_pair(a, b, RelayTransport.address_of(b.peer_id))
            session = a.peer(b.peer_id)
            assert session is not None
            connection = a.endpoint.connection(session.session_id)
            assert connection is not None and connection.config.stream_frame_size == 65000
            ta.link.client.max_queued = 256 * 1024  # a small queue, so that it fills
            dropped = ta.dropped  # before: a record sent while the link was still authenticating
            await two_way_transfer(s, r, 8 * MB)
            assert ta.link.client.stats["send_queue_full"] == 0 and ta.dropped == dropped
            assert active(a, b)["via"] == "relay"


async def test_send_batch_now_takes_what_fits_and_send_batch_waits_for_room() -> None:
    """``send_batch_now`` stops at a full link queue (the node keeps the rest); ``send_batch``
    waits until the writer has taken the queue, then sends the rest: nothing dropped."""
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await start_relay(nursery)
            la, lb = await paired_links(nursery, url_of(server), ALICE.identity, BOB.identity)
            ta, tb = RelayTransport(la), RelayTransport(lb)
            la.client.max_queued = 3 * 10_000
            records = [bytes([7]) + bytes(9_999)] * 5
            address = ta.check_address(RelayTransport.address_of(BOB.identity.peer_id))
            taken = ta.send_batch_now(records, address)
            assert taken == 3 and ta.dropped == 0
            await ta.send_batch(records[taken:], address)
            got = 0
            while got < 5:
                for run, _ in await tb.receive_runs():
                    got += len(run)
            assert got == 5 and ta.dropped == 0 and la.client.stats["send_queue_full"] == 0
            nursery.cancel_scope.cancel()


async def test_a_new_session_over_the_relay_does_not_lose_its_first_packet_to_pairing() -> None:
    """REL-4.8: the caller's first packets go with its WANT as SENDTO and the relay holds them until
    the pair forms, so none is dropped while pairing (before SENDTO the INIT was dropped and the
    handshake waited for its 1 s retransmission)."""
    with trio.fail_after(20):
        async with relay_nodes() as (a, b, ta, tb, _events):
            with trio.fail_after(5):
                await ta.link.ready.wait()
                await tb.link.ready.wait()
            started = trio.current_time()
            s, r = await stream_pair(a, b, RelayTransport.address_of(b.peer_id))
            assert ta.dropped == 0 and ta.link.client.stats["send_dropped"] == 0
            assert ta.link.client.stats["sent_before_paired"] >= 1
            assert trio.current_time() - started < 0.9  # well under the INIT retransmission (1 s)
            await two_way_transfer(s, r, 100_000)


async def test_idle_wants_are_withdrawn_and_sending_wants_again() -> None:
    """REL-5.2 (a link's WANTs are bounded): a WANT for a peer with no session that the link has not
    used for WANT_IDLE seconds is withdrawn (the pair ends at the relay), one for a kept peer stays,
    and the next send to the peer wants it again (the pair forms again)."""
    from p2pos.adapters.carriers.relay import WANT_IDLE

    now = [0.0]
    alice_key, bob_key = ALICE.identity.peer_id.public_key, BOB.identity.peer_id.public_key
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await start_relay(nursery)
            link_a, link_b = await paired_links(nursery, url_of(server), ALICE.identity, BOB.identity)
            ta = RelayTransport(link_a, clock=lambda: now[0])
            tb = RelayTransport(link_b, clock=lambda: now[0])
            ta.want(BOB.identity.peer_id)
            tb.want(ALICE.identity.peer_id)
            now[0] = WANT_IDLE - 1
            assert tb.withdraw_idle(set(), now[0]) == []  # used too recently
            now[0] = WANT_IDLE + 1
            assert tb.withdraw_idle({alice_key}, now[0]) == []  # Alice has a session with Bob: kept
            assert tb.withdraw_idle(set(), now[0]) == [alice_key]
            while link_a.client.paired(bob_key):  # the relay ended the pair on both sides
                await trio.sleep(0.01)
            assert not link_b.client.paired(alice_key)
            record = b"\x04" + bytes(40)
            assert tb.send_batch_now([record], RelayTransport.address_of(ALICE.identity.peer_id)) == 1
            await link_b.wait_paired(alice_key)  # the send wanted Alice again; she still wants Bob
            await link_a.wait_paired(bob_key)
            now[0] += WANT_IDLE / 2
            assert tb.withdraw_idle(set(), now[0]) == []  # the send counts as a use
            nursery.cancel_scope.cancel()
