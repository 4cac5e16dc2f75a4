"""The daemon, ``p2pos up``: a node, its rendezvous registrations, services, plugins and the app API.

    async with open_daemon(home, settings) as daemon:   # bound, registered, serving the API
        await daemon.stopping.wait()                     # POST /v1/stop, SIGINT or SIGTERM

What apps can do (spec/appapi.md) is the public methods here; adapters/api.py maps HTTP requests
onto them.  Errors are ``ApiError`` with the stable codes of spec/appapi.md §2.1: the API turns
them into JSON, the command line into one line on stderr.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import trio

from p2pos.proto import ChannelKind, ErrorCode, Identity, LocalKeys, PeerId, __version__
from p2pos.proto.channels.channel import ChannelConfig
from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.rendezvous.client import ClientConfig, ClientState

from . import apisockets, dualstack, keystore, selftest
from .bindingtimeout import PEER_MAX_INTERVAL, BindingTimeouts
from .build_info import core_build
from .carriers.quic import QuicTransport, open_shared_quic_transport
from .eventlog import EventLog
from .home import Home, Settings, SettingsError, parse_host_port
from .httpapi import ApiError
from .jsonstore import JsonStore
from .natprobe import NatProbe
from .node import BUSY, NOT_ALLOWED, Address, ConnectFailed, Listener, Node, Peer, _show, open_node
from .nodepaths import PIN_VIAS
from .plugins import Plugins
from .portmapping import keep_mapped, mappable
from .punching import Punching
from .relays import Relays, open_relays
from .rendezvous import Bootstrap, LookupFailed, Rendezvous
from .streams import ChannelStream, MessageChannel, ServiceRefused

log = logging.getLogger("p2pos.daemon")

SERVICE_NAME = re.compile(r"[a-z0-9._-]{1,64}")
#: A channel on an existing session not answered this long: the session is taken for dead (the
#: peer restarted) and the peer is looked up and reached again.
STALE_SESSION_TIMEOUT = 3.0
#: A handshake with no answer this long after a lookup asks for a second introduction (the first
#: one, a single datagram, may have been lost).
REINTRODUCE_AFTER = 2.0
#: A rendezvous node still not registered with over UDP this long after start is reached through
#: the relays (spec/relay.md §6).
RELAY_REGISTER_AFTER = 3.0


class AlreadyRunning(Exception):
    """Another daemon serves this home."""


#: The default of the ``idle_close`` setting: a peer session with no channel and no application call
#: for this long is closed, and reopened with IK when an application next opens a channel to that
#: peer (spec/paths.md PTH-7.6).
IDLE_CLOSE_AFTER = Settings.idle_close
#: Seconds a reopen at the last address may take before the daemon looks the peer up instead.
REOPEN_WAIT = 1.0
#: Bytes a stream channel of a peer session holds written and not yet acknowledged (ChannelConfig's
#: default is 1 MiB): the sender refills at half, so 1 MiB kept a relay path's 1 MB window
#: (spec/paths.md §5) half used; memory only for what an application actually wrote.
SEND_BUFFER = 4 << 20


def session_channels(settings: Settings) -> ChannelConfig:
    """The channel layer of the daemon's peer sessions (spec/paths.md §7): the ``keepalive`` setting
    is the NAT binding interval of this node's routers, for its rendezvous registration and its peer
    sessions alike (one property of the same routers, issue 13 learns it per router); sessions no
    application uses are closed after ``idle_close`` seconds (0: never); ``SEND_BUFFER``."""
    idle_close = settings.idle_close or None  # 0: never
    return ChannelConfig(keepalive_interval=settings.keepalive, idle_close_after=idle_close, send_buffer=SEND_BUFFER)


def parse_peer(text: str) -> PeerId:
    try:
        return PeerId.parse(text)
    except Exception as exc:  # InvalidPeerId says what is wrong with it
        raise ApiError(400, "invalid_peer_id", f"{text!r} is not a peer id: {exc}") from None


def check_service(name: str) -> str:
    if not SERVICE_NAME.fullmatch(name):
        raise ApiError(400, "invalid_service", f"{name!r}: a service name is 1-64 of a-z 0-9 . _ -")
    return name


@dataclasses.dataclass(eq=False)
class Service:
    name: str
    kind: ChannelKind
    allow: set[PeerId]
    allow_any: bool
    listener: Listener

    def allows(self, peer: PeerId) -> bool:
        return self.allow_any or peer in self.allow

    @property
    def kind_name(self) -> str:
        """``stream`` or ``message``, as the API names kinds."""
        return "stream" if self.kind is ChannelKind.STREAM else "message"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind_name,
            "allow": sorted(str(p) for p in self.allow),
            "allow_any": self.allow_any,
            "waiting": self.listener._receive.statistics().current_buffer_used,
        }


class Daemon:
    def __init__(self, home: Home, settings: Settings, identity: Identity, node: Node, events: EventLog) -> None:
        self.home, self.settings, self.identity, self.node, self.events = home, settings, identity, node, events
        self.peer_id = identity.peer_id
        self.services: dict[str, Service] = {}
        self.peers = JsonStore(home.peers)
        self.rendezvous = Rendezvous(
            node,
            config=ClientConfig(
                lease=settings.lease, keepalive_interval=settings.keepalive, lookup_timeout=settings.lookup_timeout
            ),
            pins=JsonStore(home.nodes),
            notify=self.event,
        )
        self.relays = Relays()
        #: QUIC on each of the node's UDP sockets (setting ``quic``, spec/quic.md §5.1).
        self.quic: list[QuicTransport] = []
        self.rendezvous.on_introduced = self._introduced
        self.rendezvous.on_relays_offered = self._relays_offered
        #: Port mappings in force (adapters/portmapping.py), by socket index, as status shows them.
        self.port_mappings: dict[int, dict[str, object]] = {}
        #: Hole punching towards peers an introduction names (spec/punch.md).
        self.punching = Punching(node, notify=self.event)
        self.rendezvous.on_punch = self.punching.offer
        #: This daemon's NAT as behaviour discovery measured it (spec/nat.md §3.6): its reports,
        #: and the profile it gives the rendezvous clients.  ``nat.run`` is started with the daemon.
        self.nat = NatProbe(self.rendezvous)
        self.rendezvous.on_registration_changed = self.nat.registration_changed
        # Fresh mappings (spec/punch.md §3.4): fresh Bindings to the node's other address, FRESH to the punch.
        self.rendezvous.other_address = self.nat.other_for
        self.rendezvous.on_fresh = self.punching.fresh
        #: The router's binding timeout, learned, and the keepalives sized to it (spec/nat.md §5.5).
        self.keepalive = BindingTimeouts(
            node,
            self.rendezvous,
            self.nat,
            configured=settings.keepalive,
            enabled=settings.learn_binding_timeout,
            mappings=self.port_mappings,
        )
        self.plugins = Plugins(home, notify=self.event)
        self.stopping = trio.Event()
        node.observer = self.event

    def event(self, kind: str, **fields: Any) -> None:
        self.events.append(kind, **fields)

    def _relays_offered(self, node: str, urls: tuple[str, ...]) -> None:
        """A rendezvous node offers relays (spec/rendezvous.md §4.5): link to them, unless ``learn_relays`` is off."""
        if self.settings.learn_relays:
            self.relays.learn(node, urls)

    def _introduced(self, peer: PeerId, observed: Address, candidates: tuple[Address, ...]) -> None:
        """A peer looked us up: let it reach us through every relay and TURN allocation."""
        self.relays.introduced(peer, observed, candidates)
        pairs = self.rendezvous.pairing(observed, candidates).pairs
        if observed not in {p.remote.address for p in pairs}:
            return  # not an address we may send to (spec/candidates.md §4)
        for transport in self.quic:  # it may dial us over QUIC: let it through our NAT (QUIC-5.1.4)
            with contextlib.suppress(ValueError):
                transport.punch(observed)

    async def reach(self, peer: PeerId) -> Peer:
        """The session to ``peer``: a rendezvous lookup, then a handshake to its observed address and
        to each of its candidates (its LAN addresses, its TURN relayed address) that the pairing
        policy lets us dial (spec/candidates.md §4: its LAN addresses only behind our NAT), and
        through every relay, at once; the first to answer carries the session, the others become
        paths of it (and the peer's observed address through each of our TURN allocations too)."""
        existing = self.node.peer(peer)
        if existing is not None:
            return existing
        last = self.node.reopen.address(peer)
        if last is not None:  # closed for idleness (PTH-7.6): IK to where it was, before any lookup
            with trio.move_on_after(REOPEN_WAIT):
                try:
                    return await self.node.connect_any(peer, [last])
                except (ConnectFailed, ValueError) as exc:
                    log.info("reopening the session to %s at %s failed (%s): looking it up", peer.short(), last, exc)
        addresses: list[object] = []
        routes: list[tuple[int, object]] = []
        refused: list[str] = []
        observed: Address | None = None
        try:
            observed, candidates = await self.rendezvous.lookup(peer)
        except LookupFailed as exc:
            if not self.relays.links:
                raise ApiError(502, "peer_unreachable", f"cannot find peer {peer.short()}: {exc}") from None
            log.info("cannot find peer %s (%s): trying the relays", peer.short(), exc)
        else:
            # Its observed address, its LAN and TURN relayed addresses: those the pairing policy
            # lets us dial (spec/candidates.md §4), each from its socket, best first.
            pairing = self.rendezvous.pairing(observed, candidates)
            for skipped in pairing.skipped:
                refused.append(f"{_show(skipped.remote.address)}: {skipped.reason}")
                log.debug("peer %s: not dialling %s", peer.short(), refused[-1])
            routes.extend((cast(int, p.base), p.remote.address) for p in pairing.pairs)
            if observed in {p.remote.address for p in pairing.pairs}:  # QUIC goes where direct UDP goes
                routes += self._quic_routes(peer, observed)
        addresses.extend(self.relays.addresses_of(peer))
        if not addresses and not routes:
            why = "; ".join(refused) or "no address"
            raise ApiError(502, "peer_unreachable", f"cannot reach peer {peer.short()}: nothing to dial ({why})")
        try:
            async with trio.open_nursery() as nursery:
                if observed is not None:
                    nursery.start_soon(self._introduce_again, peer)
                session = await self.node.connect_any(peer, addresses, routes=routes)
                nursery.cancel_scope.cancel()
        except (ConnectFailed, ValueError) as exc:
            raise ApiError(502, "peer_unreachable", f"cannot reach peer {peer.short()}: {exc}") from None
        self._turn_paths(peer, observed)
        return session

    async def _introduce_again(self, peer: PeerId) -> None:
        """A handshake still waiting after ``REINTRODUCE_AFTER``: look the peer up again, so that the
        node introduces us once more.  An INTRODUCTION is sent once (rendezvous.md §4.2) and may be
        lost; without it the peer neither asks its relay for us (relay.md: both sides must want each
        other) nor punches towards us, and only the relay could have carried this session."""
        await trio.sleep(REINTRODUCE_AFTER)
        if self.node.peer(peer) is None:
            log.info("no session with %s yet: asking for another introduction", peer.short())
            with contextlib.suppress(LookupFailed):
                await self.rendezvous.lookup(peer)

    def _quic_routes(self, peer: PeerId, observed: Address | None) -> list[tuple[int, object]]:
        """QUIC to the peer's observed address from each of our UDP sockets of its family: the
        same address is the peer's QUIC address (spec/quic.md §5.1), a rank-1 path."""
        routes: list[tuple[int, object]] = []
        if observed is None:
            return routes
        for transport in self.quic:
            try:
                transport.expect(observed, peer)
            except ValueError:  # another address family
                continue
            routes.append((self.node.transports.index(transport), observed))
        return routes

    def _turn_paths(self, peer: PeerId, observed: Address | None) -> None:
        """The peer's observed address through each of our TURN allocations: one more path each
        (sending installs the permission, TRN-6.1), validated and ranked by the core."""
        if observed is None:
            return
        for turn in self.relays.turns:
            local = self.node.transports.index(turn)
            with contextlib.suppress(ValueError, LocalProtocolError):
                self.node.add_path(peer, observed, local=local)

    # -- services ---------------------------------------------------------------------------

    def put_service(self, name: str, *, allow: list[str] | None, allow_any: bool, kind: str = "stream") -> Service:
        check_service(name)
        if name.startswith("_"):
            raise ApiError(400, "invalid_service", f"{name!r}: names starting with _ are the daemon's own")
        if kind not in ("stream", "message"):
            raise ApiError(400, "bad_request", f"kind must be 'stream' or 'message', not {kind!r}")
        if not allow_any and not allow:
            raise ApiError(400, "bad_request", "say who may connect: a non-empty 'allow' list or 'allow_any': true")
        peers = {parse_peer(p) for p in allow or ()}
        channel_kind = ChannelKind.STREAM if kind == "stream" else ChannelKind.MESSAGE
        existing = self.services.get(name)
        if existing is not None:
            if existing.kind is not channel_kind:
                raise ApiError(409, "conflict", f"service {name!r} exists as a {existing.kind_name} service")
            existing.allow, existing.allow_any = peers, allow_any
            return existing
        service = Service(name, channel_kind, peers, allow_any, None)  # type: ignore[arg-type]
        service.listener = self.node.listen(name, kind=channel_kind, allow=service.allows)
        self.services[name] = service
        log.info("service %s: %s", name, "any peer" if allow_any else ", ".join(p.short() for p in peers))
        return service

    def delete_service(self, name: str) -> None:
        service = self.services.pop(check_service(name), None)
        if service is None:
            raise ApiError(404, "not_found", f"no service {name!r}")
        service.listener.close()
        while True:  # channels nobody took: reset them, the peers learn at once
            try:
                channel = service.listener._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            _reset_now(channel)

    async def accept(self, name: str) -> ChannelStream | MessageChannel:
        service = self.services.get(check_service(name))
        if service is None:
            raise ApiError(404, "not_found", f"no service {name!r} (PUT /v1/services/{name} first)")
        try:
            return await service.listener.accept()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise ApiError(404, "not_found", f"service {name!r} was removed") from None

    # -- channels to peers ------------------------------------------------------------------

    async def connect(
        self, peer_text: str, service: str, *, kind: str = "stream", early: bool = False
    ) -> ChannelStream | MessageChannel:
        """A channel to ``service`` on the peer, once the peer accepted it (ApiError if not).

        With ``early`` a stream channel is returned as soon as its OPEN is queued, so its first
        bytes go with the OPEN (spec/channels.md §2.7); a refusal then surfaces as
        ``ServiceRefused`` on the channel (the node-level transfers of selftest.py use this).
        """
        peer = parse_peer(peer_text)
        check_service(service)
        if peer == self.peer_id:
            raise ApiError(400, "bad_request", "that is this daemon's own peer id")
        channel_kind = ChannelKind.STREAM if kind == "stream" else ChannelKind.MESSAGE
        for _attempt in range(2):
            existing = self.node.peer(peer)
            session = existing or await self.reach(peer)
            address: object = self.node.endpoint.address_of(session.session_id)
            channel = await self._open_watching(peer, existing, address, service, channel_kind, early=early)
            if channel is not None:
                break
            # The session did not answer: the peer restarted or moved.  Drop it, find the peer again.
            log.info("session with %s does not answer; connecting again", peer.short())
            await self._drop_session(peer, existing)
        else:
            raise ApiError(502, "peer_unreachable", f"peer {peer.short()} does not answer")
        self.event("channel_opened", peer_id=str(peer), service=service, direction="out")
        return channel

    async def _open_watching(
        self,
        peer: PeerId,
        existing: Peer | None,
        address: object,
        service: str,
        kind: ChannelKind,
        *,
        early: bool,
    ) -> ChannelStream | MessageChannel | None:
        """``_open``; None if it rides an existing session from which nothing arrives for
        ``STALE_SESSION_TIMEOUT`` seconds while it waits (the peer restarted or went away)."""
        if existing is None:
            return await self._open(peer, address, service, kind, early=early)
        result: list[ChannelStream | MessageChannel] = []
        failure: list[ApiError] = []
        started = trio.current_time()
        async with trio.open_nursery() as nursery:

            async def opener() -> None:
                try:
                    result.append(await self._open(peer, address, service, kind, early=early))
                except ApiError as exc:
                    failure.append(exc)
                nursery.cancel_scope.cancel()

            async def watchdog() -> None:
                await trio.sleep(STALE_SESSION_TIMEOUT)
                connection = self.node.endpoint.connection(existing.session_id)
                if connection is None or connection.last_received < started:
                    nursery.cancel_scope.cancel()  # nothing came back since the OPEN: stale

            nursery.start_soon(opener)
            nursery.start_soon(watchdog)
        if failure:
            raise failure[0]
        return result[0] if result else None

    async def _open(
        self, peer: PeerId, address: object, service: str, kind: ChannelKind, *, early: bool = False
    ) -> ChannelStream | MessageChannel:
        try:
            # The app API answers 101 only once the peer accepted (or 502 service_refused): wait for it.
            return await self.node.connect(peer, address, service, kind=kind, wait_accepted=not early)
        except ConnectFailed as exc:
            where = _show(address)
            raise ApiError(502, "peer_unreachable", f"cannot reach peer {peer.short()} at {where}: {exc}") from None
        except ServiceRefused as exc:
            raise refusal_error(peer, service, exc) from None
        except ValueError as exc:
            raise ApiError(502, "peer_unreachable", f"cannot reach peer {peer.short()}: {exc}") from None

    async def _drop_session(self, peer: PeerId, stale: Peer | None) -> None:
        if stale is None:
            return
        connection = self.node.endpoint.connection(stale.session_id)
        if connection is not None:
            connection.close(trio.current_time(), ErrorCode.IDLE_TIMEOUT, "no answer")
            self.node._updated(stale.session_id)
        with trio.move_on_after(1):
            while self.node.peer(peer) is stale:
                await trio.sleep(0.01)

    # -- peers ------------------------------------------------------------------------------

    async def sas(self, peer_text: str) -> dict[str, Any]:
        peer = parse_peer(peer_text)
        session = self.node.peer(peer)
        if session is None:
            if peer == self.peer_id:
                raise ApiError(400, "bad_request", "that is this daemon's own peer id")
            try:
                session = await self.reach(peer)
            except ApiError as exc:
                raise ApiError(502, "peer_unreachable", f"no session with peer {peer.short()}: {exc}") from None
        return {"peer_id": str(peer), "sas": session.sas, "verified": self.is_verified(peer)}

    def verify(self, peer_text: str, sas: object) -> dict[str, Any]:
        peer = parse_peer(peer_text)
        session = self.node.peer(peer)
        if session is None:
            raise ApiError(409, "conflict", f"no session with peer {peer.short()}: ask for its sas first")
        if not isinstance(sas, str) or _digits(sas) != _digits(session.sas):
            raise ApiError(409, "conflict", "the string does not match this session's: do not trust this peer")
        self.peers.data.setdefault(str(peer), {})["verified"] = True
        self.peers.save()
        self.event("verified", peer_id=str(peer))
        return {"peer_id": str(peer), "sas": session.sas, "verified": True}

    def unverify(self, peer_text: str) -> None:
        peer = parse_peer(peer_text)
        if self.peers.data.pop(str(peer), None) is not None:
            self.peers.save()

    async def pin(self, peer_text: str, via: object) -> dict[str, Any]:
        """Keep the session with the peer on one carrier (``via``: udp, quic, turn or relay; null:
        unpin), making a session if there is none (spec/appapi.md §3.1)."""
        peer = parse_peer(peer_text)
        if via is not None and via not in PIN_VIAS:
            raise ApiError(400, "bad_request", f"via must be one of {', '.join(PIN_VIAS)} or null, not {via!r}")
        if via is not None and self.node.peer(peer) is None:
            if peer == self.peer_id:
                raise ApiError(400, "bad_request", "that is this daemon's own peer id")
            await self.reach(peer)
        self.node.pin(peer, None if via is None else str(via))
        session = self.node.peer(peer)
        paths = self.node.peer_paths(session.session_id) if session is not None else []
        connection = self.node.endpoint.connection(session.session_id) if session is not None else None
        return {
            "peer_id": str(peer),
            "pin": self.node.pins.get(peer),
            "controlling": connection is not None and connection.session.initiator,
            "paths": paths,
        }

    def is_verified(self, peer: PeerId) -> bool:
        return bool(self.peers.data.get(str(peer), {}).get("verified"))

    # -- status -----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        peers = []
        for peer in self.node.peers():
            connection = self.node.endpoint.connection(peer.session_id)
            stats = connection.stats() if connection is not None else {}
            paths = self.node.peer_paths(peer.session_id)
            current = next((p for p in paths if p["active"]), None)
            via = (
                str(current["via"])
                if current is not None
                else self.node.via(self.node.endpoint.socket_of(peer.session_id))
            )
            peers.append(
                {
                    "peer_id": str(peer.peer_id),
                    "address": _show(self.node.endpoint.address_of(peer.session_id)),
                    "path": "direct" if via == "udp" else via,
                    "rtt_ms": round(stats.get("smoothed_rtt", 0.0) * 1000, 3),
                    "channels": int(stats.get("channels", 0)),
                    "verified": self.is_verified(peer.peer_id),
                    "active_path": current["path_id"] if current is not None else None,
                    "active_why": current["why"] if current is not None else "",
                    "pin": self.node.pins.get(peer.peer_id),
                    "paths": paths,
                }
            )
        return {
            "version": __version__,
            "peer_id": str(self.peer_id),
            "core": core_build(),
            "addresses": [_show(a) for a in self.node.addresses],
            "registrations": self.rendezvous.status(),
            "peers": peers,
            "services": [s.describe() for s in self.services.values()],
            "plugins": self.plugins.status(),
            "relays": self.relays.status(),
            "port_mappings": [self.port_mappings[local] for local in sorted(self.port_mappings)],
            "nat": {**self.nat.status(), "keepalive": self.keepalive.status(), "punching": self.punching.status()},
        }

    async def register_through_relays(self) -> None:
        """Rendezvous nodes UDP does not reach (UDP blocked) are reached through the first relay
        instead, after ``RELAY_REGISTER_AFTER`` seconds (spec/relay.md §6: a relay may run the node)."""
        await trio.sleep(RELAY_REGISTER_AFTER)
        for registration in list(self.rendezvous.registrations):
            client = registration.client
            if client.state is ClientState.REGISTERED or client.node is None or not self.relays.links:
                continue
            [address] = self.relays.addresses_of(client.node)
            if any(r.address == address for r in self.rendezvous.registrations):
                continue
            log.info("rendezvous node %s does not answer over UDP: registering through the relay", client.node)
            self.rendezvous.add(dataclasses.replace(registration.bootstrap, peer_id=client.node), [address])

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("stop requested")
            self.stopping.set()


def _digits(sas: str) -> str:
    return "".join(ch for ch in sas if ch.isalnum()).lower()


def _reset_now(channel: ChannelStream | MessageChannel) -> None:
    connection = channel._node.endpoint.connection(channel.session_id)
    if connection is not None:
        with contextlib.suppress(Exception):
            connection.reset_channel(channel.channel_id, trio.current_time(), ErrorCode.CHANNEL_REFUSED)
            channel._node._updated(channel.session_id)


def load_identity(home: Home) -> Identity:
    identity, created = keystore.load_or_create(home.identity)
    if created:
        log.info("created a new identity in %s", home.identity)
    elif keystore.insecure_permissions(home.identity):
        log.warning("%s can be read by others: chmod 600 it", home.identity)
    return identity


@contextlib.asynccontextmanager
async def open_daemon(home: Home, settings: Settings) -> AsyncIterator[Daemon]:
    """A running daemon: bound, serving the API, registering with its rendezvous nodes."""
    from .api import make_api

    identity = load_identity(home)
    keys = LocalKeys.generate(identity)
    hosts = [parse_host_port(text, what="listen address") for text in settings.listen]
    ports = {port for _, port in hosts}
    if len(ports) > 1:
        raise SettingsError("listen: every address must use the same port (or 0)")
    # Settings are checked in full before anything starts: an error is one line, not a half-started daemon.
    families = {trio.socket.AF_INET6 if ":" in host else trio.socket.AF_INET for host, _ in hosts}
    bootstraps = [(b, await b.resolve(families)) for b in map(Bootstrap.parse, settings.bootstrap)]
    home.run.mkdir(parents=True, exist_ok=True, mode=0o700)
    events = EventLog()
    async with contextlib.AsyncExitStack() as stack:
        try:
            unix_listener = await apisockets.bind_unix(home.api_socket)
        except apisockets.AddressInUse as exc:
            raise AlreadyRunning(f"a daemon is already running for this home ({home.api_socket}): {exc}") from None
        stack.callback(_unlink, home.api_socket)
        channels = session_channels(settings)
        node = await stack.enter_async_context(
            open_node(keys, hosts=dualstack.listen_hosts([h for h, _ in hosts]), port=ports.pop(), channels=channels)
        )
        daemon = Daemon(home, settings, identity, node, events)
        api = make_api(daemon)
        nursery = await stack.enter_async_context(trio.open_nursery())
        nursery.start_soon(functools.partial(apisockets.serve_listener, api, unix_listener, needs_token=False))
        if settings.api_port >= 0:
            api.token = apisockets.make_token_file(home.api_token)
            stack.callback(_unlink, home.api_token)
            port = await nursery.start(apisockets.serve_tcp, api, settings.api_port)
            _write(home.api_port, f"{port}\n")
            stack.callback(_unlink, home.api_port)
        _write(home.pid_file, f"{os.getpid()}\n")
        stack.callback(_unlink, home.pid_file)
        if settings.quic:
            # QUIC-4.5: QUIC's idle timeout above the sessions' keepalive interval (their packets keep
            # the carrier alive): the sessions' own idle timeout, 3K + 1 s (spec/paths.md PTH-7.2).
            # A learned interval may reach PEER_MAX_INTERVAL (spec/nat.md NAT-5.5.3).
            longest = max(settings.keepalive, PEER_MAX_INTERVAL if settings.learn_binding_timeout else 0.0)
            quic_idle = max(60.0, 3 * longest + 1)
            for local in range(len(node.transports)):
                quic = await stack.enter_async_context(open_shared_quic_transport(node, local, idle_timeout=quic_idle))
                daemon.quic.append(quic)
        daemon.relays = await stack.enter_async_context(open_relays(node, settings, identity))
        await nursery.start(daemon.punching.run)
        await nursery.start(daemon.rendezvous.run)
        for bootstrap, addresses in bootstraps:
            daemon.rendezvous.add(bootstrap, addresses)
        if settings.port_mapping:
            for local, transport in enumerate(list(node.transports)):
                if node.via(local) == "udp" and mappable(transport.local_address[0]):
                    mapped = functools.partial(
                        keep_mapped, node, daemon.rendezvous, local, notify=daemon.event, status=daemon.port_mappings
                    )
                    nursery.start_soon(mapped)
        if daemon.relays.links:
            nursery.start_soon(daemon.register_through_relays)
        nursery.start_soon(daemon.nat.run)  # never blocks start-up, never raises (NAT-3.6.3)
        nursery.start_soon(daemon.keepalive.run)  # likewise (spec/nat.md NAT-5.5.1)
        if settings.bench:
            await nursery.start(selftest.serve, daemon)
        await nursery.start(daemon.plugins.run, daemon)
        daemon.event("started", peer_id=str(daemon.peer_id))
        log.info(
            "daemon %s up: UDP %s, API %s", daemon.peer_id, ", ".join(_show(a) for a in node.addresses), home.api_socket
        )
        try:
            yield daemon
        finally:
            daemon.event("stopping")
            with trio.CancelScope(shield=True), trio.move_on_after(8):
                await daemon.plugins.stop_all()
                daemon.rendezvous.close()
                await trio.sleep(0.05)  # let the closes leave
            nursery.cancel_scope.cancel()


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def refusal_error(peer: PeerId, service: str, exc: ServiceRefused) -> ApiError:
    """The app API's answer to a refused channel (spec/appapi.md): 403, 503 or 502 with the reason."""
    short = peer.short()
    if exc.application_code == NOT_ALLOWED:
        return ApiError(403, "not_allowed", f"peer {short} does not allow this daemon on {service!r}")
    if exc.application_code == BUSY:
        return ApiError(503, "too_many", f"peer {short}: service {service!r} is busy")
    why = exc.reason or exc.code.name
    refusals = (ErrorCode.SERVICE_UNKNOWN, ErrorCode.CHANNEL_REFUSED, ErrorCode.CHANNEL_LIMIT)
    if exc.application_code is None and exc.code not in refusals:  # the session ended meanwhile
        return ApiError(502, "peer_unreachable", f"peer {short}: the session ended ({why})")
    lost = f"; {exc.undelivered} bytes written were not delivered" if exc.undelivered else ""
    return ApiError(502, "service_refused", f"peer {short} has no service {service!r} ({why}){lost}")
