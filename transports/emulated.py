"""Two transports joined by the seeded link emulator: a node's sockets without sockets.

    link = EmulatedLink(seed=7, config=LinkConfig(delay=0.02, loss=0.01))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.run)
        async with open_node(alice, transports=[link.a]) as a, open_node(bob, transports=[link.b]) as b:
            ...

Each end has the node's transport methods (``send_batch``, ``receive_batch``, ``receive_runs``,
``check_address``, ``max_udp_payload``); ``run`` hands every datagram over at
the time the emulator (p2pos_proto/simulation/link.py) says it arrives, taken
from ``trio.current_time()``, so the whole network runs under
``trio.testing.MockClock`` and the same seed gives the same losses.  The two
ends' addresses are labels from the lab's documentation range; nothing is sent
anywhere.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence

import trio

from p2pos.proto.simulation.link import LinkConfig, LinkEmulator

Address = tuple[str, int]


class EmulatedTransport:
    """One end of an ``EmulatedLink``."""

    def __init__(self, link: EmulatedLink, end: str, address: Address) -> None:
        self._link = link
        self.end = end
        self.local_address = address
        self._queue: collections.deque[tuple[bytes, Address]] = collections.deque()
        self._arrived = trio.Event()
        self.closed = False
        self.datagrams_sent = 0

    def check_address(self, addr: object) -> Address:
        peer = self._link.peer_of(self.end).local_address
        if addr != peer:
            raise ValueError(f"only {peer} is reachable over this emulated link, not {addr!r}")
        return peer

    def max_udp_payload(self, addr: Address) -> int:
        return self._link.link.config(self.end).mtu

    async def send_batch(self, datagrams: Sequence[bytes], addr: Address) -> None:
        self.send_batch_now(datagrams, addr)
        await trio.lowlevel.checkpoint()

    def send_batch_now(self, datagrams: Sequence[bytes], addr: Address) -> int:
        """``send_batch`` without waiting: an emulated link always takes everything."""
        if not self.closed:
            now = trio.current_time()
            for datagram in datagrams:
                self._link.link.send(self.end, datagram, now)
            self.datagrams_sent += len(datagrams)
            self._link._rearm()
        return len(datagrams)

    async def receive_batch(self) -> list[tuple[bytes, Address]]:
        while not self._queue:
            await self._arrived.wait()
            self._arrived = trio.Event()
        batch = list(self._queue)
        self._queue.clear()
        return batch

    async def receive_runs(self) -> list[tuple[list[bytes], Address]]:
        """``receive_batch`` as runs of datagrams from one address (here: from the one peer)."""
        runs: list[tuple[list[bytes], Address]] = []
        for data, source in await self.receive_batch():
            if runs and runs[-1][1] == source:
                runs[-1][0].append(data)
            else:
                runs.append(([data], source))
        return runs

    def close(self) -> None:
        """Stop sending and receiving (the peer sees a vanished host)."""
        self.closed = True

    def _deliver(self, data: bytes, source: Address) -> None:
        if not self.closed:
            self._queue.append((data, source))
            self._arrived.set()


class EmulatedLink:
    """A two-way emulated path between ends ``a`` and ``b``; run ``run()`` in a nursery."""

    def __init__(self, seed: int = 0, config: LinkConfig | None = None, backward: LinkConfig | None = None) -> None:
        self.link: LinkEmulator[str] = LinkEmulator(seed, config or LinkConfig(), backward, ends=("a", "b"))
        self.a = EmulatedTransport(self, "a", ("198.18.0.1", 4001))
        self.b = EmulatedTransport(self, "b", ("198.18.0.2", 4002))
        self._scope = trio.CancelScope()

    def peer_of(self, end: str) -> EmulatedTransport:
        return self.b if end == "a" else self.a

    async def run(self) -> None:
        """Deliver datagrams at their arrival times, for ever."""
        while True:
            upcoming = self.link.next_delivery_time()
            with trio.CancelScope(deadline=math.inf if upcoming is None else upcoming) as self._scope:
                await trio.sleep_forever()
            for destination, data in self.link.deliver(trio.current_time()):
                receiver = self.a if destination == "a" else self.b
                receiver._deliver(data, self.peer_of(destination).local_address)

    def _rearm(self) -> None:
        upcoming = self.link.next_delivery_time()
        if upcoming is not None and upcoming < self._scope.deadline:
            self._scope.deadline = upcoming
