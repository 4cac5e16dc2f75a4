"""The adapter's rendezvous roles (spec/conformance.md §3.9, §3.10): a node and a peer's client.

``conformance/impl.py`` hands ``receive``, ``timer``, ``get_timer`` and ``state`` here once
``rdv_node`` has started a ``RendezvousNode`` (``RdvMode``; ``rdv_restart`` restarts it)
or ``rdv_client`` a ``RendezvousClient`` on its own endpoint (``RdvClientMode``;
``rdv_lookup``).  Addresses travel as ``"HOST:PORT"`` text
(``"[v6]:PORT"`` for IPv6) and reach the node as ``(host, port)`` tuples, since it reports them
in REGISTERED, FOUND, INTRODUCTION and STUN answers.  Its randomness (session indices, ephemeral
keys, reset padding) is a deterministic stream derived from the static key and the number of
restarts, so runs repeat exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
from typing import Any

from p2pos.proto import Endpoint, Identity, LocalKeys, PeerId
from p2pos.proto.rendezvous.client import (
    ClientConfig,
    ClientEvent,
    FreshReceived,
    IntroductionReceived,
    LookupAnswered,
    RegistrationChanged,
    RelaysOffered,
    RendezvousClient,
)
from p2pos.proto.rendezvous.node import STATELESS_RESET, NodeConfig, RendezvousNode

from .seeded import seeded_stream

Json = dict[str, Any]
_NODE_FIELDS = {f.name for f in dataclasses.fields(NodeConfig)}
_CLIENT_FIELDS = {f.name for f in dataclasses.fields(ClientConfig)}


class RdvError(Exception):
    """A malformed command (answered ``BAD_COMMAND``)."""


def parse_address(text: Any) -> tuple[str, int]:
    """``"192.0.2.1:4000"`` or ``"[2001:db8::1]:4000"`` as ``(host, port)``; ``RdvError`` otherwise."""
    if not isinstance(text, str) or ":" not in text:
        raise RdvError(f"addr must be 'HOST:PORT', got {text!r}")
    host, _, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return str(ipaddress.ip_address(host)), int(port)
    except ValueError:
        raise RdvError(f"addr must be 'HOST:PORT' with an IP address, got {text!r}") from None


def format_address(addr: object) -> str:
    """The text form of a ``(host, port)`` address (``str(addr)`` for anything else)."""
    if isinstance(addr, tuple) and len(addr) == 2:
        host, port = addr
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(addr)


class RdvMode:
    """One rendezvous node driven by the control protocol."""

    def __init__(self, request: Json) -> None:
        seed, static = _hex(request, "seed"), _hex(request, "static")
        raw = request.get("config") or {}
        if not isinstance(raw, dict) or not set(raw) <= _NODE_FIELDS:
            raise RdvError(f"config keys must be among {sorted(_NODE_FIELDS)}")
        self.keys = LocalKeys.create(Identity.from_seed(seed), static)
        if "relays" in raw:  # a JSON list of URLs (rendezvous.md §4.5)
            raw = {**raw, "relays": tuple(str(url) for url in raw["relays"])}
        self.config = NodeConfig(**raw)
        self.restarts = 0
        self.node = self._start()

    def _start(self) -> RendezvousNode:
        seed = hashlib.blake2b(self.restarts.to_bytes(4, "big"), key=self.keys.static_private, digest_size=32)
        return RendezvousNode(self.keys, config=self.config, random=seeded_stream(seed.digest()))

    def restart(self, request: Json) -> Json:
        """Forget every state, as a process restart does; the same keys and configuration."""
        self.restarts += 1
        self.node = self._start()
        return self.drain(float(request.get("now", 0.0)))

    def receive(self, request: Json) -> Json:
        now = float(request.get("now", 0.0))
        self.node.receive_datagram(_hex(request, "data"), parse_address(request.get("addr")), now)
        return self.drain(now)

    def timer(self, request: Json) -> Json:
        now = float(request.get("now", 0.0))
        timer = self.node.get_timer()
        if timer is not None and timer <= now:
            self.node.handle_timer(now)
        return self.drain(now)

    def get_timer(self) -> Json:
        return {"timer": self.node.get_timer()}

    def state(self) -> Json:
        return {
            "state": "rdv_node",
            "close_code": None,
            "sessions": len(self.node.endpoint),
            "registrations": len(self.node),
        }

    def drain(self, now: float) -> Json:
        batches = self.node.datagrams_to_send(now)
        out = [datagram.hex() for datagrams, _, _ in batches for datagram in datagrams]
        to = [format_address(addr) for datagrams, addr, _ in batches for _ in datagrams]
        return {"out": out, "to": to, "events": []}


class RdvClientMode:
    """One peer's rendezvous client on its own endpoint, driven by the control protocol."""

    def __init__(self, request: Json) -> None:
        seed, static = _hex(request, "seed"), _hex(request, "static")
        raw = request.get("config") or {}
        if not isinstance(raw, dict) or not set(raw) <= _CLIENT_FIELDS:
            raise RdvError(f"config keys must be among {sorted(_CLIENT_FIELDS)}")
        candidates = request.get("candidates") or []
        if not isinstance(candidates, list):
            raise RdvError("candidates must be a list of 'HOST:PORT'")
        try:
            node = PeerId.parse(str(request.get("node")))
        except ValueError as exc:
            raise RdvError(f"node: {exc}") from None
        self.node_address = parse_address(request.get("node_addr"))
        keys = LocalKeys.create(Identity.from_seed(seed), static)
        random = seeded_stream(hashlib.blake2b(b"rdv client", key=static, digest_size=32).digest())
        self.endpoint = Endpoint(keys, channels=None, random=random)
        self.client = RendezvousClient(
            self.endpoint,
            node,
            self.node_address,
            config=ClientConfig(**raw),
            candidates=tuple(parse_address(c) for c in candidates),
        )
        self.client.handle_timer(float(request.get("now", 0.0)))  # connect at once

    def receive(self, request: Json) -> Json:
        now, data = float(request.get("now", 0.0)), _hex(request, "data")
        addr = parse_address(request.get("addr"))
        # The driver's part (spec/rendezvous.md §6.2): a reset from the node goes to its client.
        if data[:1] == bytes((STATELESS_RESET,)) and addr == self.node_address:
            self.client.receive_reset_untrusted(data, addr, now)
        else:
            self.endpoint.receive_data(data, addr, now)
        return self.drain(now)

    def lookup(self, request: Json) -> Json:
        now = float(request.get("now", 0.0))
        try:
            target = PeerId.parse(str(request.get("peer_id")))
        except ValueError as exc:
            raise RdvError(f"peer_id: {exc}") from None
        txid = self.client.lookup(target.public_key, now, introduce=bool(request.get("introduce", True)))
        return {"txid": txid, **self.drain(now)}

    def timer(self, request: Json) -> Json:
        now = float(request.get("now", 0.0))
        endpoint_timer = self.endpoint.get_timer()
        if endpoint_timer is not None and endpoint_timer <= now:
            self.endpoint.handle_timer(now)
        client_timer = self.client.get_timer()
        if client_timer is not None and client_timer <= now:
            self.client.handle_timer(now)
        return self.drain(now)

    def get_timer(self) -> Json:
        timers = [t for t in (self.endpoint.get_timer(), self.client.get_timer()) if t is not None]
        return {"timer": min(timers) if timers else None}

    def state(self) -> Json:
        return {"state": f"rdv_client:{self.client.state.value}", "close_code": None}

    def drain(self, now: float) -> Json:
        out: list[str] = []
        to: list[str] = []
        events: list[Json] = []
        while True:
            moved = False
            while (event := self.endpoint.next_event()) is not None:
                moved = True
                if self.client.owns(getattr(event, "session_id", -1)):
                    self.client.handle_event(event, now)
            while (client_event := self.client.next_event()) is not None:
                events.append(_client_event(client_event))
            for datagrams, addr, _ in self.endpoint.data_to_send(now):
                moved = True
                out += [d.hex() for d in datagrams]
                to += [format_address(addr)] * len(datagrams)
            if not moved:
                return {"out": out, "to": to, "events": events}


def _client_event(event: ClientEvent) -> Json:
    """A client event as JSON (spec/conformance.md §3.10)."""
    match event:
        case RegistrationChanged(observed=None):
            return {"type": "rdv_lost", "why": event.why}
        case RegistrationChanged():
            return {"type": "rdv_registered", "observed": format_address(event.observed)}
        case LookupAnswered():
            return {
                "type": "rdv_lookup_answered",
                "txid": event.txid,
                "peer_id": str(PeerId(event.peer_id)),
                "observed": None if event.observed is None else format_address(event.observed),
                "candidates": [format_address(c) for c in event.candidates],
            }
        case IntroductionReceived():
            return {
                "type": "rdv_introduction",
                "peer_id": str(PeerId(event.peer_id)),
                "observed": format_address(event.observed),
                "candidates": [format_address(c) for c in event.candidates],
            }
        case RelaysOffered():
            return {"type": "rdv_relays", "urls": list(event.urls)}
        case FreshReceived():
            return {
                "type": "rdv_fresh",
                "peer_id": str(PeerId(event.peer_id)),
                "observed": format_address(event.observed),
                "ticket_id": event.ticket_id.hex(),
            }


def _hex(request: Json, name: str) -> bytes:
    value = request.get(name)
    if not isinstance(value, str):
        raise RdvError(f"{name!r} must be a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise RdvError(f"{name!r} is not hex") from None
