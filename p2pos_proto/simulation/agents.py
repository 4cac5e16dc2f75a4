"""Driving sans-IO peers over the network emulator (``network.py``) from event to event.

An :class:`Agent` is whatever runs on one host: a sans-IO peer with any number of
sockets (``receive_datagram(data, addr, now, local)``, ``datagrams_to_send(now)``
yielding ``(data, destination, local socket)``, ``get_timer``, ``handle_timer``);
:class:`SocketAgent` adapts a one-socket peer in aioquic's shape.  Agents may open and
close sockets on their host (``host.open()``, ``host.close(address)``) at any time::

    net = Network(7)
    ...                                           # hosts and NATs, see network.py
    agents = {alice: SocketAgent(client, alice.open(5000)), bob: PunchingPeer(bob)}
    end = run_agents(net, agents, 60.0, stop=lambda now: client.connected)
    # end: the virtual time at which ``stop`` held (or 60.0)

No clock is read: time jumps to the next hop arrival or agent timer.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from ..errors import LocalProtocolError
from .nat import Address
from .network import Host, Network


class Agent(Protocol):
    """What ``run_agents`` drives on one host: a sans-IO peer with any number of sockets."""

    def receive_datagram(self, data: bytes, addr: Address, now: float, local: Address) -> None: ...

    def datagrams_to_send(self, now: float) -> Iterable[tuple[bytes, Address, Address]]:
        """(data, destination, local socket) for each datagram to send now."""
        ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


class SocketPeer(Protocol):
    """A peer with one socket, in aioquic's shape (STYLE.md)."""

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None: ...

    def datagrams_to_send(self, now: float) -> Iterable[tuple[bytes, Address]]: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


class SocketAgent:
    """An :class:`Agent` for a one-socket peer bound to ``local`` (its host opens it first)."""

    __slots__ = ("local", "peer")

    def __init__(self, peer: SocketPeer, local: Address) -> None:
        self.peer = peer
        self.local = local

    def receive_datagram(self, data: bytes, addr: Address, now: float, local: Address) -> None:
        self.peer.receive_datagram(data, addr, now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address, Address]]:
        return [(data, addr, self.local) for data, addr in self.peer.datagrams_to_send(now)]

    def get_timer(self) -> float | None:
        return self.peer.get_timer()

    def handle_timer(self, now: float) -> None:
        self.peer.handle_timer(now)


def run_agents(
    net: Network,
    agents: Mapping[Host, Agent],
    until: float,
    *,
    now: float = 0.0,
    stop: Callable[[float], bool] | None = None,
    max_steps_per_instant: int = 100_000,
) -> float:
    """Move ``agents`` (one per host) from event to event until ``until`` or ``stop``, as ``link.run_until`` does.

    Each step: the output of every agent that had an input goes into the network; then,
    if ``stop(now)`` holds, return ``now``; else every agent's output is taken again
    (``stop`` is where a test's application acts) and time jumps to the next hop arrival
    or agent timer (never sleeping); datagrams reaching hosts are fed with
    ``receive_datagram`` and due timers fired with ``handle_timer``.  Only the agents
    touched by an event are polled (timers sit on a heap), so many idle agents cost
    nothing.  Returns the time reached: ``until`` when nothing is left to do before it.
    Ties are broken by the order of ``agents``, so runs are reproducible.  Datagrams for
    a host with no agent are dropped (counted in its ``stats.received``).
    """
    order = list(agents.items())
    index: dict[Host, int] = {}
    for i, (host, _) in enumerate(order):
        if host._net is not net:
            raise LocalProtocolError(f"{host!r} is not on this network")
        index[host] = i
    timers: list[tuple[float, int]] = []
    scheduled: list[float | None] = [None] * len(order)
    dirty = set(range(len(order)))
    same_instant = 0

    def flush(i: int, now: float) -> None:
        host, agent = order[i]
        for data, addr, local in agent.datagrams_to_send(now):
            net.send(host, local, data, addr, now)
        timer = agent.get_timer()
        if timer != scheduled[i]:
            scheduled[i] = timer
            if timer is not None:
                heapq.heappush(timers, (timer, i))

    while True:
        for i in sorted(dirty):
            flush(i, now)
        dirty.clear()
        if stop is not None:
            if stop(now):
                return now
            for i in range(len(order)):
                flush(i, now)
        while timers and timers[0][0] != scheduled[timers[0][1]]:
            heapq.heappop(timers)  # superseded
        nxt = net.next_delivery_time()
        if timers and (nxt is None or timers[0][0] < nxt):
            nxt = timers[0][0]
        if nxt is None or nxt > until:
            return max(now, until)
        if nxt <= now:
            same_instant += 1
            if same_instant > max_steps_per_instant:
                raise LocalProtocolError(f"run_agents: no progress at t={now!r} (a timer that stays due?)")
        else:
            same_instant = 0
            now = nxt
        for delivery in net.deliver(now):
            i = index.get(delivery.host, -1)
            if i >= 0:
                order[i][1].receive_datagram(delivery.data, delivery.addr, now, delivery.local)
                dirty.add(i)
        while timers and timers[0][0] <= now:
            when, i = heapq.heappop(timers)
            if when != scheduled[i]:
                continue
            scheduled[i] = None
            agent = order[i][1]
            timer = agent.get_timer()
            if timer is not None and timer <= now:
                agent.handle_timer(now)
            dirty.add(i)
