"""The daemon's rendezvous clients: registered with every configured node, looking peers up on
all of them at once (spec/rendezvous.md).

Each ``RendezvousClient`` (sans-IO, p2pos_proto/rendezvous/client.py) keeps a bare session on the
node's own ``Endpoint``, so the NAT binding the rendezvous node sees is the one peers reach.  This
module wires them to a running ``Node``: their session events and the nodes' stateless resets
come through the node's hooks, one task fires their timers, and ``lookup`` asks every
registered node and takes the first answer.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import socket
from collections.abc import Callable
from typing import cast

import trio

from p2pos.proto import HandshakeCompleted, MessageReceived, PeerId, SessionClosed
from p2pos.proto.nat.addresses import is_ip
from p2pos.proto.nat.candidates import Base, Candidate, Pairing, advertise, local_candidates, pair, remote_candidates
from p2pos.proto.nat.profile import NatProfile
from p2pos.proto.rendezvous import messages as m
from p2pos.proto.rendezvous.client import (
    ClientConfig,
    ClientState,
    FreshReceived,
    IntroductionReceived,
    LookupAnswered,
    RegistrationChanged,
    RelaysOffered,
    RendezvousClient,
)

from .home import SettingsError, parse_host_port
from .jsonstore import JsonStore
from .node import Address, Node, _show
from .punching import PunchOffer

log = logging.getLogger("p2pos.rendezvous")


class LookupFailed(Exception):
    """No rendezvous node knows the peer (or none answered); the message says what each said."""


@dataclasses.dataclass(frozen=True)
class Bootstrap:
    """A parsed ``PEERID@HOST:PORT`` (``peer_id`` None for a bare ``HOST:PORT``)."""

    text: str
    peer_id: PeerId | None
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Bootstrap:
        who, sep, where = text.strip().rpartition("@")
        peer_id = None
        if sep:
            try:
                peer_id = PeerId.parse(who)
            except Exception as exc:  # InvalidPeerId: its message says what is wrong
                raise SettingsError(f"bootstrap {text!r}: bad peer id: {exc}") from None
        host, port = parse_host_port(where, what=f"bootstrap {text!r}:")
        if port == 0:
            raise SettingsError(f"bootstrap {text!r}: port 0")
        return cls(text.strip(), peer_id, host, port)

    async def resolve(self, families: set[socket.AddressFamily]) -> list[Address]:
        """The node's addresses (its host name resolved now) of the address ``families`` the
        daemon listens on; SettingsError with the reason when there is none."""
        try:
            infos = await trio.socket.getaddrinfo(self.host, self.port, type=trio.socket.SOCK_DGRAM)
        except OSError as exc:
            raise SettingsError(f"bootstrap {self.text!r}: cannot resolve {self.host}: {exc}") from None
        addresses = [(str(info[4][0]), int(info[4][1])) for info in infos if info[0] in families]
        if not addresses:
            kinds = " and ".join(sorted("IPv6" if f == trio.socket.AF_INET6 else "IPv4" for f in families))
            raise SettingsError(f"bootstrap {self.text!r}: no address this daemon can reach (it listens on {kinds})")
        return addresses


@dataclasses.dataclass(eq=False)
class Registration:
    bootstrap: Bootstrap
    address: Address
    client: RendezvousClient


class Rendezvous:
    """The rendezvous clients of one daemon.  ``await nursery.start(rdv.run)`` then ``add``."""

    def __init__(
        self,
        node: Node,
        *,
        config: ClientConfig | None = None,
        pins: JsonStore | None = None,
        notify: Callable[..., None] | None = None,
    ) -> None:
        self.node = node
        self.config = config or ClientConfig()
        self.pins = pins
        self._notify = notify or (lambda kind, **fields: None)
        self.registrations: list[Registration] = []
        self._answers: dict[tuple[int, int], trio.MemorySendChannel[LookupAnswered]] = {}
        self._wake = trio.Event()
        #: Told each peer a node introduced to us, with its observed address and candidates (it
        #: looked us up: it may call through a relay, or send to our TURN relayed address).
        self.on_introduced: Callable[[PeerId, Address, tuple[Address, ...]], None] | None = None
        #: Port mappings in force (adapters/portmapping.py): socket index -> the mapped address.
        self.mapped: dict[int, Address] = {}
        #: Told each introduction's punch (spec/rendezvous.md §3.5): a FOUND with one (we asked, we
        #: lead) and an INTRODUCTION with one (adapters/punching.py).
        self.on_punch: Callable[[PunchOffer], None] | None = None
        #: Told each FRESH (spec/rendezvous.md §4.6): the peer, the ticket id and its fresh address.
        self.on_fresh: Callable[[PeerId, bytes, Address], object] | None = None
        #: Asked the other address of the node a registration is with (None: not known), for a
        #: sequential side's fresh Bindings (spec/punch.md PUN-3.4.1); the daemon's NAT probe knows it.
        self.other_address: Callable[[Address], Address | None] | None = None
        #: Told the relays a node offers (RELAYS, spec/rendezvous.md §4.5): the node's name and the URLs.
        self.on_relays_offered: Callable[[str, tuple[str, ...]], None] | None = None
        #: Told each registration's new observed address (None: the registration was lost): the
        #: daemon's NAT probe re-measures when it moves (spec/nat.md NAT-3.6.2).
        self.on_registration_changed: Callable[[Registration, Address | None], None] | None = None
        #: Told that a port mapping came or went (``mapped`` changed): the keepalives may follow it.
        self.on_mapped: Callable[[], None] | None = None
        node.on_bare_event = self._on_session_event
        node.on_reset = self._on_reset

    def add(self, bootstrap: Bootstrap, addresses: list[Address]) -> Registration:
        """Start registering with the node ``bootstrap`` names, at the first of its ``addresses``
        (``Bootstrap.resolve``) that a socket of the node can reach."""
        last_error = "no address"
        for candidate in addresses:
            try:
                local = self.node._socket_for(candidate)
            except ValueError as exc:
                last_error = str(exc)
                continue
            address = self.node.transports[local].check_address(candidate)
            break
        else:
            raise SettingsError(f"bootstrap {bootstrap.text!r}: no socket can reach it ({last_error})")
        node_id = bootstrap.peer_id
        if node_id is None:
            pinned = self.pins.data.get(_show(address)) if self.pins is not None else None
            if pinned:
                node_id = PeerId.parse(pinned)
                log.info("bootstrap %s: using the key pinned at first contact, %s", bootstrap.text, node_id)
            else:
                log.warning(
                    "bootstrap %s has no peer id: the key met first will be pinned (give PEERID@%s to be sure)",
                    bootstrap.text,
                    _show(address),
                )
        client = RendezvousClient(
            self.node.endpoint, node_id, address, local=local, config=self.config, candidates=self._candidates()
        )
        registration = Registration(bootstrap, address, client)
        self.registrations.append(registration)
        self.node.reset_sources.add(address)
        self._wake.set()
        return registration

    async def lookup(self, peer_id: PeerId, *, timeout: float | None = None) -> tuple[Address, tuple[Address, ...]]:
        """Where ``peer_id`` is, asking every registered node at once: the first that knows wins.

        Raises LookupFailed with what each node said if none knows it.
        """
        active = [r for r in self.registrations if r.client.state is ClientState.REGISTERED]
        if not active:
            raise LookupFailed(
                "not registered with any rendezvous node" if self.registrations else "no rendezvous node is configured"
            )
        send, receive = trio.open_memory_channel[LookupAnswered](len(active))
        now = trio.current_time()
        keys = []
        for registration in active:
            txid = registration.client.lookup(peer_id.public_key, now)
            key = (id(registration.client), txid)
            keys.append(key)
            self._answers[key] = send.clone()
        send.close()
        self._after_calls()
        reasons = []
        try:
            with trio.move_on_after(timeout if timeout is not None else self.config.lookup_timeout + 1):
                async for answer in receive:
                    if answer.observed is not None:
                        return (answer.observed, answer.candidates)
                    reasons.append(f"{answer.node.short() if answer.node else '?'}: {answer.why}")
        finally:
            for key in keys:
                channel = self._answers.pop(key, None)
                if channel is not None:
                    channel.close()
        raise LookupFailed("; ".join(reasons) or "no rendezvous node answered")

    def set_profile(self, registration: Registration, profile: NatProfile | None) -> None:
        """The NAT profile the registration's client sends as traits (spec/rendezvous.md §3.5); a
        registered client renews at once when it changed (spec/nat.md NAT-3.6.4).  Safe to call
        from the node's hooks: the run task transmits, not this call."""
        registration.client.set_profile(profile, trio.current_time())
        self._wake.set()

    def reregister(self, registration: Registration) -> None:
        """Register again now on the same session, if registered: the binding under it was made
        again, so the node learns the new address before it introduces anyone (spec/nat.md NAT-5.5.4)."""
        registration.client.reregister(trio.current_time())
        self._after_calls()

    def status(self) -> list[dict[str, object]]:
        return [
            {
                "node": str(r.client.node) if r.client.node is not None else None,
                "address": _show(r.address),
                "state": r.client.state.value,
                "observed": _show(r.client.observed) if r.client.observed is not None else None,
            }
            for r in self.registrations
        ]

    def close(self) -> None:
        now = trio.current_time()
        for registration in self.registrations:
            registration.client.close(now)
        self.node.poke()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Fire the clients' timers until cancelled."""
        task_status.started()
        while True:
            timers = [t for r in self.registrations if (t := r.client.get_timer()) is not None]
            deadline = min(timers) if timers else math.inf
            with trio.move_on_at(deadline):
                await self._wake.wait()
            self._wake = trio.Event()
            now = trio.current_time()
            for registration in self.registrations:
                timer = registration.client.get_timer()
                if timer is not None and timer <= now:
                    registration.client.handle_timer(now)
            self._after_calls(wake=False)

    # -- hooks and events -------------------------------------------------------------------

    def _candidates(self) -> tuple[Address, ...]:
        """What REGISTER and LOOKUP carry (spec/candidates.md CAND-4.1): this daemon's own socket
        addresses, for peers on the same network (not wildcards), and a TURN allocation's relayed
        address; not a relay link's (it has no IP address)."""
        return advertise(self.local_candidates())

    def local_candidates(self) -> tuple[Candidate, ...]:
        """This daemon's candidates (spec/candidates.md §3): its UDP sockets' addresses (QUIC shares
        them), what the rendezvous nodes see, its TURN allocations' relayed addresses."""
        hosts: list[Address] = []
        relayed: list[Address] = []
        for local, transport in enumerate(self.node.transports):
            address = transport.local_address
            if not is_ip(address[0]):
                continue
            (relayed if self.node.via(local) == "turn" else hosts).append(address)
        reflexive = [r.client.observed for r in self.registrations if r.client.observed is not None]
        mapped = list(self.mapped.values())
        return local_candidates(hosts=hosts, reflexive=reflexive, mapped=mapped, relayed=relayed)

    def set_mapped(self, local: int, address: Address | None) -> None:
        """A port mapping of socket ``local`` came (``address``: where the internet reaches it) or
        went (None): the candidates and traits change, so every registration is renewed now."""
        if address is None:
            self.mapped.pop(local, None)
        else:
            self.mapped[local] = address
        now = trio.current_time()
        for registration in self.registrations:
            client = registration.client
            client.candidates = self._candidates()
            client.port_mapped = client.local in self.mapped
            client.reregister(now)
        self._after_calls()
        if self.on_mapped is not None:
            self.on_mapped()

    def pairing(self, observed: Address | None, candidates: tuple[Address, ...]) -> Pairing:
        """Which of a peer's addresses (its ``observed`` one, its ``candidates``: a FOUND's) to dial
        from which of the node's direct UDP sockets, in order (spec/candidates.md §4): private
        addresses only behind the same NAT, loopback only on the same host, IPv6 only with IPv6."""
        bases = [
            Base(key=local, address=transport.local_address)
            for local, transport in enumerate(self.node.transports)
            if self.node.via(local) == "udp" and is_ip(transport.local_address[0])
        ]
        return pair(bases, self.local_candidates(), remote_candidates(observed, candidates))

    def _client_of(self, session_id: int) -> RendezvousClient | None:
        for registration in self.registrations:
            if registration.client.owns(session_id):
                return registration.client
        return None

    def _on_session_event(self, event: HandshakeCompleted | MessageReceived | SessionClosed) -> None:
        client = self._client_of(event.session_id)
        if client is None:
            return
        pinned_before = client.node
        client.handle_event(event, trio.current_time())
        if pinned_before is None and client.node is not None and self.pins is not None:
            self.pins.data[_show(client.address)] = str(client.node)
            self.pins.save()
            log.warning("pinned rendezvous node %s at %s", client.node, _show(client.address))
        self._after_calls(poke=False)

    def _on_reset(self, data: bytes, address: Address) -> None:
        for registration in self.registrations:
            if registration.address == address and registration.client.receive_reset_untrusted(
                data, address, trio.current_time()
            ):
                log.info("rendezvous node %s restarted (stateless reset): registering again", _show(address))
                self._after_calls(poke=False)
                return

    def _after_calls(self, *, poke: bool = True, wake: bool = True) -> None:
        """The clients may have called the endpoint and queued events: route them, transmit.

        From the node's hooks (``poke=False``) the node transmits and re-arms its timer itself
        once its dispatch returns.
        """
        for registration in self.registrations:
            client = registration.client
            while (event := client.next_event()) is not None:
                self._client_event(registration, event)
        if wake:  # the clients' timers may have moved: the run task re-reads them
            self._wake.set()
        if poke:
            self.node.poke()

    def _punch(
        self,
        registration: Registration,
        peer: PeerId,
        observed: Address,
        candidates: tuple[Address, ...],
        punch: m.Punch,
        *,
        leading: bool,
    ) -> None:
        if self.on_punch is None:
            return
        client = registration.client
        local = int(cast(int, client.local))
        # The peer's other addresses that the pairing policy lets this socket dial (a port mapping,
        # a LAN shared with it): the puncher dials them too (spec/punch.md §3.7).
        pairs = self.pairing(observed, candidates).pairs
        allowed = tuple(p.remote.address for p in pairs if p.base == local and p.remote.address != observed)
        # The peer's IPv6 addresses our IPv6 sockets may dial, when the introduction came over IPv4:
        # each such socket punches them on its own (spec/punch.md §3.9).
        others: dict[int, list[Address]] = {}
        if ":" not in self.node.transports[local].local_address[0]:
            for p in pairs:
                base = cast(int, p.base)
                if ":" in self.node.transports[base].local_address[0]:
                    others.setdefault(base, []).append(p.remote.address)
        self.on_punch(
            PunchOffer(
                peer=peer,
                observed=observed,
                candidates=allowed,
                punch=punch,
                local=local,
                profile=client.profile,
                rtt=client.rtt,
                leading=leading,
                others=tuple((base, tuple(addresses)) for base, addresses in others.items()),
                fresh_to=self.other_address(registration.address) if self.other_address is not None else None,
            )
        )

    def _client_event(
        self,
        registration: Registration,
        event: RegistrationChanged | LookupAnswered | IntroductionReceived | RelaysOffered | FreshReceived,
    ) -> None:
        node = str(event.node) if event.node is not None else _show(registration.address)
        match event:
            case RegistrationChanged(observed=None):
                log.warning("registration with %s lost: %s", node, event.why)
                self._notify("registration_lost", node=node, why=event.why)
                if self.on_registration_changed is not None:
                    self.on_registration_changed(registration, None)
            case RegistrationChanged():
                log.info("registered with %s; it sees us at %s", node, _show(event.observed))
                self._notify("registered", node=node, observed=_show(event.observed))
                if self.on_registration_changed is not None:
                    self.on_registration_changed(registration, event.observed)
            case LookupAnswered():
                if event.punch is not None and event.observed is not None:
                    self._punch(
                        registration, PeerId(event.peer_id), event.observed, event.candidates, event.punch, leading=True
                    )
                channel = self._answers.pop((id(registration.client), event.txid), None)
                if channel is not None:
                    channel.send_nowait(event)
                    channel.close()
            case IntroductionReceived():
                peer = PeerId(event.peer_id)
                log.info("introduced to %s at %s by %s", peer, _show(event.observed), node)
                self._notify("introduced", peer_id=str(peer), observed=_show(event.observed))
                if self.on_introduced is not None:
                    self.on_introduced(peer, event.observed, event.candidates)
                if event.punch is not None:
                    self._punch(registration, peer, event.observed, event.candidates, event.punch, leading=False)
            case FreshReceived():
                if self.on_fresh is not None:
                    self.on_fresh(PeerId(event.peer_id), event.ticket_id, event.observed)
            case RelaysOffered():
                log.info("%s offers relays: %s", node, ", ".join(event.urls) or "none")
                self._notify("relays_offered", node=node, urls=list(event.urls))
                if self.on_relays_offered is not None:
                    self.on_relays_offered(node, event.urls)
