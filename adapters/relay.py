"""``p2pos relay``: the rendezvous node on one UDP port, a thin trio driver (spec/rendezvous.md).

All protocol work is the sans-IO ``RendezvousNode`` (p2pos_proto/rendezvous/node.py); this file
moves its datagrams and fires its timers.  One task: wait for datagrams until the node's next
timer, feed them, fire the timer if due, send what the node has to send.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import trio

from p2pos.proto.handshake.handshake import LocalKeys
from p2pos.proto.rendezvous.node import NodeConfig, RendezvousNode
from p2pos.transports.udp import UdpTransport


def bootstrap_string(keys: LocalKeys, address: tuple[str, int]) -> str:
    """What a daemon is given: ``PEERID@HOST:PORT`` (IPv6 hosts in brackets)."""
    host, port = address
    shown = f"[{host}]" if ":" in host else host
    return f"{keys.identity.peer_id}@{shown}:{port}"


class RelayServer:
    """A ``RendezvousNode`` on a bound ``UdpTransport``; ``await run()`` serves until cancelled."""

    def __init__(
        self,
        node: RendezvousNode,
        transport: UdpTransport,
        *,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.node, self.transport, self._clock = node, transport, clock

    @classmethod
    async def bind(cls, keys: LocalKeys, host: str, port: int, *, config: NodeConfig | None = None) -> RelayServer:
        transport = await UdpTransport.bind(host, port)
        return cls(RendezvousNode(keys, config=config), transport)

    @property
    def address(self) -> tuple[str, int]:
        return self.transport.local_address

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while True:
                deadline = self.node.get_timer()
                with trio.move_on_at(math.inf if deadline is None else deadline):
                    for datagrams, address in await self.transport.receive_runs():
                        now = self._clock()
                        for data in datagrams:
                            self.node.receive_datagram(data, address, now)
                now = self._clock()
                if deadline is not None and now >= deadline:
                    self.node.handle_timer(now)
                # Addresses come from this socket's receive calls: valid for it as they are.  What
                # the socket takes at once goes without a trip through trio's scheduler.
                for datagrams, to, _ in self.node.datagrams_to_send(now):
                    address = cast(tuple[str, int], to)
                    sent = self.transport.send_batch_now(datagrams, address)
                    if sent < len(datagrams):
                        await self.transport.send_batch(datagrams[sent:], address)
        finally:
            self.transport.close()
