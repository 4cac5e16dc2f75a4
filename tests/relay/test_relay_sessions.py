"""Real p2pos sessions over the relay: only sealed bytes cross it (spec/relay.md §1, REL-7.5), and a
rendezvous node is reached through it (§6)."""

from __future__ import annotations

import os

import trio
from helpers import make_keys
from relay_helpers import Proxy, drive_endpoint, next_endpoint_event, paired_links, url_of

from p2pos.adapters.relay import RelayServer, ws_relay
from p2pos.proto import Endpoint
from p2pos.proto.events import HandshakeCompleted, MessageReceived
from p2pos.proto.relay.server import RelayConfig, RelayCore
from p2pos.proto.rendezvous import messages as rm
from p2pos.transports.wsrelay_client import RelayLink
from p2pos.transports.wsrelay_server import WsRelayServer

MARKER = b"PLAINTEXT-MARKER-4f1d2c"


class CapturingCore(RelayCore):
    """A relay core that keeps every message it is given and every one it hands to a socket."""

    def __init__(self) -> None:
        super().__init__(RelayConfig(), os.urandom)
        self.seen: list[bytes] = []

    def receive_message(self, link_id: int, data: bytes, now: float) -> None:
        self.seen.append(data)
        super().receive_message(link_id, data, now)

    def take_parts(self, link_id: int, max_bytes: int) -> list[tuple[bytes, bytes | memoryview]]:
        out = super().take_parts(link_id, max_bytes)
        self.seen.extend(head + tail for head, tail in out)
        return out


async def test_the_relay_only_handles_sealed_records() -> None:
    """§1, REL-4.4, REL-7.5: a session's plaintext marker never appears in what the relay handles
    (every message, unmasked) nor on its sockets (both peers reach it through a capturing proxy)."""
    core = CapturingCore()
    server = WsRelayServer(core)
    keys_a, keys_b = make_keys("relay-a"), make_keys("relay-b")
    a, b = keys_a.identity, keys_b.identity
    proxy = Proxy()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, "127.0.0.1", 0)
        await nursery.start(proxy.serve)
        link_a, link_b = await paired_links(nursery, url_of(server), a, b, proxy=f"127.0.0.1:{proxy.port}")
        end_a = Endpoint(keys_a, channels=None)
        end_b = Endpoint(keys_b, channels=None)
        nursery.start_soon(drive_endpoint, end_a, link_a)
        nursery.start_soon(drive_endpoint, end_b, link_b)
        session = end_a.connect(("relay", b.peer_id.public_key), trio.current_time(), expected_peer=b.peer_id)
        await next_endpoint_event(end_a, HandshakeCompleted)
        await next_endpoint_event(end_b, HandshakeCompleted)
        for n in range(20):
            session.send(MARKER + n.to_bytes(2, "big") * 100, trio.current_time())
        end_a.updated(session.local_index)
        got = [await next_endpoint_event(end_b, MessageReceived) for _ in range(20)]
        assert sorted(e.data for e in got) == sorted(MARKER + n.to_bytes(2, "big") * 100 for n in range(20))
        nursery.cancel_scope.cancel()
    relayed = [data for data in core.seen if data[0] in (0x08, 0x09)]  # SEND and RECV
    assert len(relayed) >= 2 * (20 + 3)  # the handshake and the 20 messages, each in and out
    assert all(MARKER[:8] not in data for data in core.seen)
    assert len(proxy.captured) > 20 * 200 and MARKER[:8] not in proxy.captured
    # The marker is there to be found: B got it in the clear, only what crossed the relay was sealed.
    assert all(e.data.startswith(MARKER) for e in got)


async def test_a_session_with_the_node_goes_over_the_websocket() -> None:
    """REL-6.1, REL-6.2, REL-6.3: a peer without UDP registers with the node through the relay."""
    node_keys = make_keys("relay-node")
    node = await RelayServer.bind(node_keys, "127.0.0.1", 0)
    relay = ws_relay(RelayConfig(), node=node)
    peer_keys = make_keys("relay-peer")
    node_id = node_keys.identity.peer_id
    async with trio.open_nursery() as nursery:
        await nursery.start(relay.serve, "127.0.0.1", 0)
        await nursery.start(node.run)
        link = RelayLink(url_of(relay), peer_keys.identity, env={})
        link.want(node_id.public_key)  # the node wants everyone: paired at once
        await nursery.start(link.run)
        with trio.fail_after(10):
            await link.wait_paired(node_id.public_key)
        endpoint = Endpoint(peer_keys, channels=None)
        nursery.start_soon(drive_endpoint, endpoint, link)
        session = endpoint.connect(("relay", node_id.public_key), trio.current_time(), expected_peer=node_id)
        done = await next_endpoint_event(endpoint, HandshakeCompleted)
        assert done.peer_id == node_id
        session.send(rm.encode(rm.Register(txid=7, lease=60)), trio.current_time())
        endpoint.updated(session.local_index)
        answer = rm.decode_untrusted((await next_endpoint_event(endpoint, MessageReceived)).data)
        assert isinstance(answer, rm.Registered) and answer.txid == 7 and answer.lease == 60
        assert answer.observed[0] == "127.0.0.1"  # the link's TCP source address (REL-6.3)
        assert relay.core.stats["records_to_node"] >= 3
        nursery.cancel_scope.cancel()
