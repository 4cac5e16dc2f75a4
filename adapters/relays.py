"""The daemon's relays (setting ``relay``): WebSocket relay links and TURN allocations as node sockets.

    async with open_relays(node, settings, identity) as relays:
        relays.links        # RelayTransport per ws:// or wss:// URL (a stream path, rank 3)
        relays.turns        # TurnTransport per turn: or turns: URL (a datagram path, rank 2)

Each WebSocket relay gets one ``RelayLink`` (through ``proxy`` or the environment's
``https_proxy``, spec/relay.md §7.1) that reconnects by itself; each TURN server one allocation,
made at start and refreshed while the daemon runs, released at the end (spec/turn.md).  A TURN
server that refuses or does not answer is logged and left out: the daemon runs without it.
Every transport is a socket of the node; its loss abandons only the paths through it
(``Node.path_lost``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator

import trio

from p2pos.proto import Identity, PeerId
from p2pos.proto.nat.turn_config import TurnCredentials, parse_turn_url, rest_credentials
from p2pos.transports.turn import TurnError
from p2pos.transports.wsrelay_client import RelayLink

from .carriers import RelayTransport, TurnTransport, abandon_paths_on_loss, open_turn_transport
from .home import Settings, SettingsError, check_relay_url
from .node import Address, Node

log = logging.getLogger("p2pos.relays")

#: REST credentials (``turn_secret``) are asked valid for this long (the allocation's life).
REST_LIFETIME = 24 * 3600
#: Seconds an allocation may take before the daemon starts without it.
ALLOCATE_TIMEOUT = 10.0
#: The most relays the daemon links to because rendezvous nodes offered them.
MAX_LEARNED = 8
#: Seconds between two sweeps of the relays' idle WANTs (``Relays.withdraw_idle``).
WANT_SWEEP = 60.0


@dataclasses.dataclass
class Relays:
    links: list[RelayTransport] = dataclasses.field(default_factory=list)
    turns: list[TurnTransport] = dataclasses.field(default_factory=list)
    nursery: trio.Nursery | None = None
    #: What ``learn`` needs to link to a relay a rendezvous node offers.
    node: Node | None = None
    identity: Identity | None = None
    proxy: str = ""
    #: URL (lower case) -> the rendezvous node that offered it, for the relays not configured.
    learned: dict[str, str] = dataclasses.field(default_factory=dict)

    async def link(self, url: str, *, offered_by: str = "") -> RelayTransport:
        """Link to the WebSocket relay ``url`` (it reconnects by itself) and make it a socket of the node."""
        assert self.nursery is not None and self.node is not None and self.identity is not None
        link = RelayLink(url, self.identity, proxy=self.proxy or None)
        await self.nursery.start(link.run)
        transport = RelayTransport(link)
        self.node.add_transport(transport)
        abandon_paths_on_loss(self.node, transport)
        self.links.append(transport)
        via = f" through the proxy {link.proxy[0]}:{link.proxy[1]}" if link.proxy else ""
        offered = f" (offered by {offered_by})" if offered_by else ""
        log.info("relay %s: linking%s%s", transport.url, via, offered)
        return transport

    def learn(self, node_name: str, urls: tuple[str, ...]) -> None:
        """A rendezvous node offers ``urls`` (spec/rendezvous.md §4.5, RDV-7.7): link to those not linked
        yet, at most ``MAX_LEARNED`` in all.  A relay once linked stays for the daemon's life."""
        if self.nursery is None:
            return
        known = {link.url.lower() for link in self.links}
        for url in urls:
            key = url.lower()
            if key in known or key in self.learned:
                continue
            if len(self.learned) >= MAX_LEARNED:
                log.info("relay %s offered by %s: not linked, %d learned already", url, node_name, MAX_LEARNED)
                continue
            try:
                check_relay_url(url)
            except SettingsError as exc:
                log.info("relay offered by %s ignored: %s", node_name, exc)
                continue
            self.learned[key] = node_name
            self.nursery.start_soon(self._link_learned, url, node_name)

    async def _link_learned(self, url: str, node_name: str) -> None:
        try:
            await self.link(url, offered_by=node_name)
        except (ValueError, OSError) as exc:
            log.warning("relay %s offered by %s: cannot link: %s", url, node_name, exc)

    def addresses_of(self, peer: PeerId) -> list[tuple[str, int]]:
        """``peer`` through every relay link (the pseudo-addresses of spec/relay.md's paths)."""
        return [RelayTransport.address_of(peer)] if self.links else []

    def want(self, peer: PeerId) -> None:
        """Pair with ``peer`` on every relay (it looked us up: it may call through one)."""
        for link in self.links:
            link.want(peer)

    def withdraw_idle(self, keep: set[bytes], now: float) -> int:
        """UNWANT on every relay the peers without a session (not in ``keep``) it has not used for a
        while (``RelayTransport.withdraw_idle``); how many WANTs were withdrawn."""
        return sum(len(link.withdraw_idle(keep, now)) for link in self.links)

    def introduced(self, peer: PeerId, observed: Address, candidates: tuple[Address, ...]) -> None:
        """``peer`` looked us up: pair with it on every relay, and let its observed address and
        candidates send to our TURN relayed addresses (TRN-6.3: a permission before data)."""
        self.want(peer)
        if self.nursery is None:
            return
        for turn in self.turns:
            for address in dict.fromkeys((observed, *candidates)):
                self.nursery.start_soon(_permit, turn, address)

    def status(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for link in self.links:
            client = link.link.client
            out.append(
                {
                    "url": link.url,
                    "offered_by": self.learned.get(link.url.lower(), ""),
                    "kind": "websocket",
                    "state": client.state.value,
                    "connections": link.link.connections,
                    "dropped": link.dropped,
                    "last_error": link.link.last_error,
                }
            )
        for turn in self.turns:
            out.append(
                {
                    "url": turn.turn.server.url,
                    "kind": "turn",
                    "state": "lost" if turn.lost else "allocated",
                    "relayed": f"{turn.local_address[0]}:{turn.local_address[1]}",
                    "lifetime": turn.turn.lifetime,
                    "refreshes": turn.turn.refreshes,
                    "dropped": turn.send_errors,
                    "last_error": turn.lost or "",
                }
            )
        return out


def turn_credentials(settings: Settings, identity: Identity) -> TurnCredentials:
    if settings.turn_secret:
        expiry = int(time.time()) + REST_LIFETIME
        return rest_credentials(settings.turn_secret, identity.peer_id.short().replace(":", ""), expiry)
    return TurnCredentials(username=settings.turn_username, password=settings.turn_password)


async def _permit(turn: TurnTransport, address: Address) -> None:
    try:
        await turn.add_peer(address, wait=False)
    except (ValueError, TurnError) as exc:
        log.info("TURN %s: no permission for %s:%d: %s", turn.turn.server.url, address[0], address[1], exc)


async def _run_turn(
    node: Node,
    settings: Settings,
    identity: Identity,
    url: str,
    relays: Relays,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Allocate on the TURN server ``url`` and keep it (refreshed) until cancelled, then release it."""
    server = parse_turn_url(url)
    try:
        async with open_turn_transport(server, turn_credentials(settings, identity)) as turn:
            node.add_transport(turn)
            abandon_paths_on_loss(node, turn)
            relays.turns.append(turn)
            log.info("TURN %s: relayed address %s:%d", server.url, *turn.local_address)
            task_status.started()
            await trio.sleep_forever()
    except (TurnError, OSError) as exc:
        log.warning("TURN %s: no allocation, running without it: %s", server.url, exc)
        task_status.started()


@contextlib.asynccontextmanager
async def open_relays(node: Node, settings: Settings, identity: Identity) -> AsyncIterator[Relays]:
    relays = Relays(node=node, identity=identity, proxy=settings.proxy)
    async with contextlib.AsyncExitStack() as stack:
        nursery = relays.nursery = await stack.enter_async_context(trio.open_nursery())
        for url in settings.relay:
            if url.lower().startswith(("ws://", "wss://")):
                await relays.link(url)
                continue
            with trio.move_on_after(ALLOCATE_TIMEOUT) as scope:
                await nursery.start(_run_turn, node, settings, identity, url, relays)
            if scope.cancelled_caught:
                log.warning("TURN %s: no allocation within %.0f s, running without it", url, ALLOCATE_TIMEOUT)
        nursery.start_soon(_sweep_wants, node, relays)
        try:
            yield relays
        finally:
            nursery.cancel_scope.cancel()


async def _sweep_wants(node: Node, relays: Relays) -> None:
    """Withdraw the relays' idle WANTs every ``WANT_SWEEP`` seconds, keeping those of the node's peers."""
    while True:
        await trio.sleep(WANT_SWEEP)
        keep = {peer.peer_id.public_key for peer in node.peers()}
        withdrawn = relays.withdraw_idle(keep, trio.current_time())
        if withdrawn:
            log.info("relays: %d idle WANTs withdrawn", withdrawn)
