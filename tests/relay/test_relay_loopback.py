"""The relay's trio driver on loopback (spec/relay.md §3.1, §4, §7): real WebSockets, in-process."""

from __future__ import annotations

import trio
from relay_helpers import identity, paired_links, record, start_relay, url_of


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
