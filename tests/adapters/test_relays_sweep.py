"""adapters/relays.py: the daemon's sweep of idle relay WANTs (spec/relay.md REL-7.7) runs every
WANT_SWEEP seconds and keeps the WANTs of the peers the node has a session with."""

from __future__ import annotations

import dataclasses

import trio
import trio.testing
from helpers import make_keys

from p2pos.adapters import relays as relays_module
from p2pos.adapters.relays import WANT_SWEEP, Relays


@dataclasses.dataclass
class FakePeer:
    peer_id: object


class FakeNode:
    def __init__(self, peers: list[FakePeer]) -> None:
        self._peers = peers

    def peers(self) -> list[FakePeer]:
        return list(self._peers)


class FakeLink:
    """Records each withdraw_idle call: (keep, now)."""

    def __init__(self) -> None:
        self.calls: list[tuple[frozenset[bytes], float]] = []

    def withdraw_idle(self, keep: set[bytes], now: float) -> list[bytes]:
        self.calls.append((frozenset(keep), now))
        return [b"x" * 32]


async def test_the_sweep_runs_every_interval_and_keeps_session_peers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    alice = make_keys("sweep-alice").identity.peer_id
    node = FakeNode([FakePeer(alice)])
    links = [FakeLink(), FakeLink()]
    relays = Relays(links=links)  # type: ignore[arg-type]
    assert relays.withdraw_idle({b"k"}, 5.0) == 2  # one withdrawn on each link
    for link in links:
        link.calls.clear()
    start = trio.current_time()
    with trio.move_on_after(2.5 * WANT_SWEEP):
        await relays_module._sweep_wants(node, relays)  # type: ignore[arg-type]
    for link in links:
        assert [now - start for _, now in link.calls] == [WANT_SWEEP, 2 * WANT_SWEEP]
        assert all(keep == {alice.public_key} for keep, _ in link.calls)
