"""``p2pos relay``: the rendezvous node on one UDP port, a thin trio driver (spec/rendezvous.md),
and optionally the WebSocket relay (spec/relay.md) beside it.

All protocol work is the sans-IO ``RendezvousNode`` (p2pos_proto/rendezvous/node.py); this file
moves its datagrams and fires its timers.  One task: wait for datagrams until the node's next
timer, feed them, fire the timer if due, send what the node has to send.  With a WebSocket relay
attached (``attach_ws``), the node is also a peer of the relay that every link may pair with
(relay.md §6): records from those links reach the node as datagrams on a virtual socket
``("ws", peer_id)``, and what the node sends to that socket goes back over the relay.

Given an alternate address (``p2pos relay --alternate HOST:PORT``), the node also listens on
(IP1, P2), (IP2, P1) and (IP2, P2) for RFC 5780 behaviour discovery (spec/rendezvous.md §5,
spec/nat.md §3): one small task per extra socket feeds its STUN requests to the node, and what
the node sends from a socket key leaves by that socket.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import ssl
from collections.abc import Callable, Hashable
from typing import cast

import trio

from p2pos.proto.handshake.handshake import LocalKeys
from p2pos.proto.nat import stun
from p2pos.proto.relay.server import RelayConfig, RelayCore
from p2pos.proto.rendezvous.node import NodeConfig, RendezvousNode
from p2pos.transports.udp import UdpTransport
from p2pos.transports.wsrelay_server import WsRelayServer

log = logging.getLogger("p2pos.relay")

#: The first element of the virtual socket of a peer reached over the WebSocket relay.
WS_SOCKET = "ws"
#: Records from relay links waiting for the node; more are dropped (the peers resend).
WS_QUEUE = 4096


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
        #: The RFC 5780 sockets by their node socket key (empty without an alternate address).
        self.stun_transports: dict[Hashable, UdpTransport] = {}
        self.ws: WsRelayServer | None = None
        self._ws_in, self._ws_out = trio.open_memory_channel[tuple[bytes, tuple[str, int], bytes]](WS_QUEUE)
        self._scope: trio.CancelScope | None = None
        self.ws_dropped = 0

    @classmethod
    async def bind(
        cls,
        keys: LocalKeys,
        host: str,
        port: int,
        *,
        config: NodeConfig | None = None,
        alternate: tuple[str, int] | None = None,
    ) -> RelayServer:
        """Bind the node's socket; with ``alternate`` (IP2, P2) also the three RFC 5780 sockets
        (OSError if one cannot be bound; P2 0 picks a free port)."""
        transport = await UdpTransport.bind(host, port)
        extra: dict[Hashable, UdpTransport] = {}
        stun_server = None
        try:
            if alternate is not None:
                primary = transport.local_address
                both = await UdpTransport.bind(alternate[0], alternate[1])
                extra[stun.socket_key(1, 1)] = both
                other = both.local_address
                extra[stun.socket_key(0, 1)] = await UdpTransport.bind(primary[0], other[1])
                extra[stun.socket_key(1, 0)] = await UdpTransport.bind(other[0], primary[1])
                stun_server = stun.BindingServer(primary=primary, alternate=other)
        except (OSError, ValueError):
            for t in (transport, *extra.values()):
                t.close()
            raise
        server = cls(RendezvousNode(keys, config=config, stun_server=stun_server), transport)
        server.stun_transports = extra
        return server

    @property
    def address(self) -> tuple[str, int]:
        return self.transport.local_address

    def attach_ws(self, ws: WsRelayServer) -> None:
        """Serve the node over ``ws`` too (relay.md §6); ``ws.core`` must name the node's peer id."""
        self.ws = ws
        ws.node_sink = self._from_ws

    def _from_ws(self, records: list[tuple[bytes, tuple[str, int], bytes]]) -> None:
        for item in records:
            try:
                self._ws_in.send_nowait(item)
            except trio.WouldBlock:
                self.ws_dropped += 1

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                if self.ws is not None:
                    nursery.start_soon(self._feed_from_ws)
                for key, transport in self.stun_transports.items():
                    nursery.start_soon(self._serve_stun, key, transport)
                await nursery.start(self._serve_udp)
                task_status.started()
        finally:
            self.transport.close()
            for transport in self.stun_transports.values():
                transport.close()

    async def _serve_stun(self, key: Hashable, transport: UdpTransport) -> None:
        """An RFC 5780 socket: STUN only, answered at once (the node keeps no timer for it)."""
        while True:
            for datagrams, address in await transport.receive_runs():
                now = self._clock()
                for data in datagrams:
                    self.node.receive_datagram(data, address, now, key)
            await self._flush(self._clock())

    async def _serve_udp(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            deadline = self.node.get_timer()
            with trio.CancelScope(deadline=math.inf if deadline is None else deadline) as self._scope:
                for datagrams, address in await self.transport.receive_runs():
                    now = self._clock()
                    for data in datagrams:
                        self.node.receive_datagram(data, address, now)
            now = self._clock()
            deadline = self.node.get_timer()
            if deadline is not None and now >= deadline:
                self.node.handle_timer(now)
            await self._flush(now)

    async def _feed_from_ws(self) -> None:
        async for peer, address, record in self._ws_out:
            now = self._clock()
            local: Hashable = (WS_SOCKET, peer)
            self.node.receive_datagram(record, address, now, local)
            await self._flush(now)
            deadline = self.node.get_timer()
            if self._scope is not None and deadline is not None and deadline < self._scope.deadline:
                self._scope.deadline = deadline  # wake the UDP task for the node's new timer

    async def _flush(self, now: float) -> None:
        # Addresses come from this socket's receive calls: valid for it as they are.  What
        # the socket takes at once goes without a trip through trio's scheduler.
        for datagrams, to, local in self.node.datagrams_to_send(now):
            if isinstance(local, tuple) and len(local) == 2 and local[0] == WS_SOCKET:
                if self.ws is not None:
                    for data in datagrams:
                        self.ws.core.send_from_node(local[1], data)
                    self.ws.pump()
                continue
            address = cast(tuple[str, int], to)
            transport = self.stun_transports.get(local, self.transport)
            sent = transport.send_batch_now(datagrams, address)
            if sent < len(datagrams):
                await transport.send_batch(datagrams[sent:], address)


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server TLS context for ``wss://`` (relay.md §7.1) from PEM files."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def ws_relay(
    config: RelayConfig,
    *,
    node: RelayServer | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> WsRelayServer:
    """A WebSocket relay; with ``node``, the node is reachable through it (relay.md §6)."""
    node_peer = node.node.endpoint.keys.identity.peer_id.public_key if node is not None else None
    server = WsRelayServer(RelayCore(config, os.urandom, node_peer=node_peer), ssl_context=ssl_context)
    if node is not None:
        node.attach_ws(server)
    return server


def stats_line(core: RelayCore) -> str:
    """One line of the relay's state and counters (relay.md §5), for the log."""
    stats = core.stats
    drops = sum(v for k, v in stats.items() if k.startswith(("dropped_", "refused_", "send_unknown")))
    closes = sum(v for k, v in stats.items() if k.startswith("closed_"))
    return (
        f"{len(core)} links open, {stats['authenticated']} authenticated and {stats['paired']} pairs so far; "
        f"{stats['records_relayed']} records / {stats['bytes_relayed']} bytes relayed, "
        f"{stats['records_to_node']} to the node; {drops} dropped or refused, {closes} links closed by the relay"
    )


async def log_stats(core: RelayCore, interval: float) -> None:
    """Log ``stats_line`` every ``interval`` seconds while anything changed."""
    last: dict[str, int] = {}
    while True:
        await trio.sleep(interval)
        if dict(core.stats) != last:
            last = dict(core.stats)
            log.info("%s", stats_line(core))


def own_relay_url(scheme: str, names: list[str], host: str, port: int) -> str | None:
    """The URL peers should use for this relay, to offer with the node (spec/rendezvous.md §4.5): by its
    first ``--name``, else by the address it listens on, unless that is a wildcard (0.0.0.0, ::) that
    names no host a peer can dial (then None: nothing is offered but ``--offer-relay``)."""
    if names:
        where = names[0].lower()
    elif not host or ipaddress.ip_address(host).is_unspecified:
        return None
    else:
        where = f"[{host}]" if ":" in host else host
    default = 443 if scheme == "wss" else 80
    shown = where if port == default else f"{where}:{port}"
    return f"{scheme}://{shown}/p2pos/relay/v1"
