"""The adapter's NAT traversal commands (spec/conformance.md §3.12) over ``p2pos.proto.nat``.

Two kinds of command.  Pure functions, answered at once: ``stun_decode`` and ``stun_encode``
(the STUN codec, nat.md §2), ``addr_class`` and ``cand_pair`` (candidates.md §2, §4),
``profile_decode`` and ``punch_plan`` (punch.md §2, §3), ``keepalive_interval`` and
``keepalive_flows`` (nat.md §5).  And roles, one per process like the others of the adapter,
each a sans-IO object whose sockets have text names: ``stun_server`` (a node's Binding answers,
nat.md §3.1), ``nat_discovery`` (nat.md §3.2), ``punch`` (punch.md §4, §5), ``keeper`` (nat.md
§5.3), ``timeout_search`` (nat.md §4) and ``portmap`` (a PCP, NAT-PMP or UPnP IGD client,
portmap.md; ``portmap_remove`` removes its mapping; ``upnp_http`` answers a UPnP client's HTTP
exchange).  Then ``nat_receive`` hands the role one datagram
(``data`` from ``addr`` on socket ``local``) and ``nat_timer`` runs its timers due by ``now``;
every answer lists what the role sends (``out``, ``to``, ``from``: the datagram, its
destination, the socket it leaves) and its ``events``, and ``timer``, when it next needs
``nat_timer``.  Randomness (transaction ids, scanned ports) is a stream seeded by ``seed``.
``conformance/impl.py`` merges ``handlers()`` into its own.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Hashable
from typing import Any

from p2pos.proto.nat import (
    addresses,
    candidates,
    keepalive,
    portmap_common,
    portmap_natpmp,
    portmap_pcp,
    portmap_upnp,
    portmap_upnp_client,
    profile,
    punch,
    punch_plan,
)
from p2pos.proto.nat import stun_message as sm
from p2pos.proto.nat.binding_timeout import BindingTimeoutProber, TimeoutLearned, TimeoutSearchFailed
from p2pos.proto.nat.discovery import NatDiscovery
from p2pos.proto.nat.keepalive import BindingKeeper, BindingLost, KeepaliveAnswered, MappingChanged, NodeRestarted
from p2pos.proto.nat.stun import BindingServer, socket_key

from .impl_rdv import RdvError, format_address, parse_address
from .seeded import seeded_stream

Json = dict[str, Any]
Address = tuple[str, int]
#: The names of nat.md's and punch.md's enumerations on the control protocol.
MAPPINGS = {m.name.lower().replace("_", "-"): m for m in profile.Mapping}
FILTERINGS = {f.name.lower().replace("_", "-"): f for f in profile.Filtering}
ALLOCATIONS = {a.name.lower(): a for a in profile.Allocation}


class NatCommandError(Exception):
    """A command the core refuses: ``code`` is the spec code name (``MALFORMED_MESSAGE``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _hex(request: Json, name: str) -> bytes:
    value = request.get(name)
    if not isinstance(value, str):
        raise RdvError(f"{name!r} must be a hex string")
    return bytes.fromhex(value)


def _now(request: Json) -> float:
    return float(request.get("now", 0.0))


def _addresses(value: Any) -> list[Address]:
    return [parse_address(item) for item in (value or [])]


# -- pure functions ------------------------------------------------------------------------


def stun_decode(request: Json) -> Json:
    """Parse one STUN message (nat.md NAT-2.1); with ``key`` / ``key_sha256``, check its integrity."""
    try:
        message = sm.decode_untrusted(_hex(request, "data"))
    except sm.StunError as exc:
        raise NatCommandError("MALFORMED_MESSAGE", str(exc)) from None
    classes = {sm.REQUEST: "request", sm.INDICATION: "indication", sm.SUCCESS: "success", sm.ERROR: "error"}
    shown = [(t, v) for t, v in message.attributes if t not in (sm.MESSAGE_INTEGRITY, sm.MESSAGE_INTEGRITY_SHA256)]
    out: Json = {
        "method": message.method,
        "class": classes[message.klass],
        "transaction_id": message.transaction_id.hex(),
        "attributes": [{"type": t, "value": v.hex()} for t, v in shown if t != sm.FINGERPRINT],
        "fingerprint": message.has(sm.FINGERPRINT),
        "integrity": None,
        "integrity_sha256": None,
    }
    if request.get("key") is not None:
        out["integrity"] = message.integrity_ok(_hex(request, "key"))
    if request.get("key_sha256") is not None:
        out["integrity_sha256"] = message.integrity_sha256_ok(_hex(request, "key_sha256"))
    return out


def stun_encode(request: Json) -> Json:
    """Build a STUN message from its parts (NAT-2.1: the samples re-encode byte for byte)."""
    classes = {"request": sm.REQUEST, "indication": sm.INDICATION, "success": sm.SUCCESS, "error": sm.ERROR}
    attributes = [(int(a["type"]), bytes.fromhex(a["value"])) for a in request.get("attributes") or []]
    data = sm.encode(
        int(request["method"]),
        classes[str(request["class"])],
        _hex(request, "transaction_id"),
        attributes,
        key=None if request.get("key") is None else _hex(request, "key"),
        key_sha256=None if request.get("key_sha256") is None else _hex(request, "key_sha256"),
        fingerprint=bool(request.get("fingerprint")),
        pad=int(request.get("pad", 0)),
    )
    return {"data": data.hex()}


def addr_class(request: Json) -> Json:
    """The class and scope of an IP address (candidates.md CAND-2.1)."""
    host = str(request.get("host"))
    try:
        cls = addresses.classify(host)
    except ValueError:
        raise RdvError(f"not an IP address: {host!r}") from None
    return {"class": cls.value, "scope": addresses.SCOPES[cls].value}


def cand_pair(request: Json) -> Json:
    """Which of a peer's candidates to dial from which socket, in order (candidates.md §3, §4)."""
    bases = [candidates.Base(key=str(b["key"]), address=parse_address(b["address"])) for b in request["bases"]]
    ours = candidates.local_candidates(
        hosts=_addresses(request.get("hosts")),
        reflexive=_addresses(request.get("reflexive")),
        mapped=_addresses(request.get("mapped")),
        relayed=_addresses(request.get("relayed")),
    )
    observed = request.get("observed")
    peer = candidates.PeerCandidates(
        None if observed is None else parse_address(observed), _addresses(request.get("candidates"))
    )
    for address in _addresses(request.get("peer_reflexive")):
        peer.learn_peer_reflexive(address)
    networks = [ipaddress.ip_network(str(n), strict=False) for n in request.get("networks") or []]
    pairing = candidates.pair(bases, ours, peer.candidates, networks=networks)
    return {
        "pairs": [{"base": p.base, "address": format_address(p.remote.address)} for p in pairing.pairs],
        "advertise": [format_address(a) for a in candidates.advertise(ours)],
    }


def _profile_json(p: profile.NatProfile) -> Json:
    names = {v: k for k, v in MAPPINGS.items()}, {v: k for k, v in FILTERINGS.items()}
    return {
        "mapping": names[0][p.mapping],
        "filtering": names[1][p.filtering],
        "allocation": {v: k for k, v in ALLOCATIONS.items()}[p.allocation],
        "delta": p.delta,
        "port_mapped": p.port_mapped,
        "udp_blocked": p.udp_blocked,
        "hairpin": p.hairpin,
    }


def _profile(request: Json, name: str) -> profile.NatProfile:
    try:
        return profile.decode_profile_untrusted(_hex(request, name))
    except profile.ProfileError as exc:
        raise NatCommandError("MALFORMED_MESSAGE", str(exc)) from None


def profile_decode(request: Json) -> Json:
    """A NAT profile's wire form read (punch.md PUN-2.2.1)."""
    return _profile_json(_profile(request, "data"))


def _plan_json(plan: punch_plan.Plan) -> Json:
    return {
        "direct": plan.direct,
        "dial": plan.dial,
        "predict": plan.predict,
        "predict_step": plan.predict_step,
        "rounds": plan.rounds,
        "sockets": plan.sockets,
        "scan": plan.scan,
    }


def punch_plan_cmd(request: Json) -> Json:
    """This side's part of the strategy for two profiles (punch.md §3.1)."""
    plan = punch_plan.plan(_profile(request, "mine"), _profile(request, "theirs"), leading=bool(request.get("leading")))
    return _plan_json(plan)


def keepalive_interval(request: Json) -> Json:
    """NAT-5.1 for a learned timeout and a smoothed round trip."""
    return {"interval": keepalive.keepalive_interval(float(request["timeout"]), float(request.get("srtt", 0.0)))}


def keepalive_flows(request: Json) -> Json:
    """NAT-5.2: the flows that need keepalives, the node's first."""
    flows = keepalive.keepalive_flows(
        MAPPINGS[str(request["mapping"])],
        FILTERINGS[str(request["filtering"])],
        parse_address(request["server"]),
        _addresses(request.get("peers")),
    )
    return {"flows": [format_address(a) for a in flows]}


# -- roles ---------------------------------------------------------------------------------


class NatRole:
    """One sans-IO NAT object behind ``nat_receive`` and ``nat_timer``; subclasses adapt its API."""

    def receive(self, local: str, source: Address, data: bytes, now: float) -> None:
        raise NotImplementedError

    def handle_timer(self, now: float) -> None:
        raise NotImplementedError

    def get_timer(self) -> float | None:
        raise NotImplementedError

    def send(self, now: float) -> list[tuple[bytes, Address, str]]:
        raise NotImplementedError

    def events(self) -> list[Json]:
        return []

    def drain(self, now: float) -> Json:
        sent = self.send(now)
        return {
            "out": [d.hex() for d, _, _ in sent],
            "to": [format_address(a) for _, a, _ in sent],
            "from": [local for _, _, local in sent],
            "events": self.events(),
            "timer": self.get_timer(),
        }


class StunServerRole(NatRole):
    """A node's Binding answers (nat.md §3.1): socket names are its addresses' text."""

    def __init__(self, request: Json) -> None:
        primary = parse_address(request["primary"])
        alternate = None if request.get("alternate") is None else parse_address(request["alternate"])
        # RDV-5.5: the instance the runner names, else one drawn from ``seed`` (or a fixed seed).
        if request.get("instance") is not None:
            instance = _hex(request, "instance")
        else:
            instance = seeded_stream(_hex(request, "seed") if request.get("seed") is not None else b"")(sm.INSTANCE_LEN)
        if len(instance) != sm.INSTANCE_LEN:
            raise RdvError("'instance' must be 8 bytes")
        self.server = BindingServer(primary, alternate, instance)
        self.names: dict[Hashable, str] = {}
        self.keys: dict[str, Hashable] = {format_address(primary): 0}
        if alternate is not None:
            self.keys = {format_address(self.server.address(i, p)): socket_key(i, p) for i in (0, 1) for p in (0, 1)}
        self.names = {key: name for name, key in self.keys.items()}
        self.out: list[tuple[bytes, Address, str]] = []

    def receive(self, local: str, source: Address, data: bytes, now: float) -> None:
        if local not in self.keys:
            raise RdvError(f"the node has no socket {local}")
        answer = self.server.answer_untrusted(data, source, self.keys[local])
        if answer is not None:
            self.out.append((answer.data, answer.to, self.names[answer.local]))

    def handle_timer(self, now: float) -> None:
        pass

    def get_timer(self) -> float | None:
        return None

    def send(self, now: float) -> list[tuple[bytes, Address, str]]:
        out, self.out = self.out, []
        return out


class DiscoveryRole(NatRole):
    """A discovery run (nat.md §3.2) from the sockets ``locals`` (their addresses' text)."""

    def __init__(self, request: Json) -> None:
        self.locals = [str(a) for a in request["locals"]]
        self.run = NatDiscovery(
            parse_address(request["server"]),
            [parse_address(a) for a in self.locals],
            _now(request),
            random=seeded_stream(_hex(request, "seed")),
        )
        self.reported = False

    def receive(self, local: str, source: Address, data: bytes, now: float) -> None:
        self.run.receive_datagram(data, source, now, self.locals.index(local))

    def handle_timer(self, now: float) -> None:
        self.run.handle_timer(now)

    def get_timer(self) -> float | None:
        return self.run.get_timer()

    def send(self, now: float) -> list[tuple[bytes, Address, str]]:
        return [(d, a, self.locals[int(str(local))]) for d, a, local in self.run.datagrams_to_send(now)]

    def events(self) -> list[Json]:
        if not self.run.done or self.reported:
            return []
        self.reported = True
        report = self.run.report
        return [{"type": "nat_report", **report.to_json(), "profile": report.to_profile().encode().hex()}]


class PunchRole(NatRole):
    """One side's punch (punch.md §4, §5) from socket ``main`` and, for a birthday, ``main/1``, ``main/2``, ..."""

    def __init__(self, request: Json) -> None:
        mine, theirs = _profile(request, "mine"), _profile(request, "theirs")
        plan = punch_plan.plan(mine, theirs, leading=bool(request.get("leading")))
        main = str(request["main"])
        self.punch = punch.Puncher(
            plan,
            main=main,
            extra=[f"{main}/{i}" for i in range(1, plan.sockets + 1)],
            peer=parse_address(request["peer"]),
            candidates=_addresses(request.get("candidates")),
            delta=theirs.delta,
            ticket=_hex(request, "ticket"),
            rtt=float(request["rtt"]),
            random=seeded_stream(_hex(request, "seed")),
            now=_now(request),
            fresh_to=None if request.get("fresh_to") is None else parse_address(request["fresh_to"]),
            leading=bool(request.get("leading")),
        )

    def fresh(self, address: Address, now: float) -> None:
        """A FRESH for this punch (rendezvous.md §4.6): the peer's fresh address (punch.md PUN-3.4.2)."""
        self.punch.receive_fresh(address, now)

    def receive(self, local: str, source: Address, data: bytes, now: float) -> None:
        self.punch.receive_datagram(local, source, data, now)

    def handle_timer(self, now: float) -> None:
        self.punch.handle_timer(now)

    def get_timer(self) -> float | None:
        return self.punch.get_timer()

    def send(self, now: float) -> list[tuple[bytes, Address, str]]:
        return [(d, a, str(local)) for local, a, d in self.punch.datagrams_to_send(now)]

    def events(self) -> list[Json]:
        out: list[Json] = []
        while (event := self.punch.next_event()) is not None:
            if isinstance(event, punch.PunchSucceeded):
                out.append(
                    {"type": "punch_succeeded", "local": str(event.local), "address": format_address(event.address)}
                )
            else:
                out.append({"type": "punch_failed", "reason": event.reason})
        return out


class KeeperRole(NatRole):
    """Keepalives on one flow (nat.md §5.3): socket ``local`` to ``server``."""

    def __init__(self, request: Json) -> None:
        timeout = request.get("timeout")
        self.keeper = BindingKeeper(
            parse_address(request["server"]),
            float(request["interval"]),
            random=seeded_stream(_hex(request, "seed")),
            local=str(request["local"]),
            srtt=float(request.get("srtt", 0.0)),
            timeout=None if timeout is None else float(timeout),
        )
        self.keeper.start(_now(request))

    def receive(self, local: str, source: Address, data: bytes, now: float) -> None:
        self.keeper.receive_datagram(data, source, now)

    def handle_timer(self, now: float) -> None:
        self.keeper.handle_timer(now)

    def get_timer(self) -> float | None:
        return self.keeper.get_timer()

    def send(self, now: float) -> list[tuple[bytes, Address, str]]:
        return [(d, a, str(local)) for d, a, local in self.keeper.datagrams_to_send(now)]

    def events(self) -> list[Json]:
        out: list[Json] = []
        while (event := self.keeper.next_event()) is not None:
            if isinstance(event, KeepaliveAnswered):
                out.append({"type": "keepalive_answered", "mapped": format_address(event.mapped)})
            elif isinstance(event, MappingChanged):
                out.append(
                    {"type": "mapping_changed", "old": format_address(event.old), "new": format_address(event.new)}
                )
            elif isinstance(event, BindingLost):
                out.append({"type": "binding_lost"})
            elif isinstance(event, NodeRestarted):
                out.append({"type": "node_restarted", "old": event.old.hex(), "new": event.new.hex()})
        return out


class SearchRole(NatRole):
    """The binding-timeout search (nat.md §4) from socket ``control`` and the sockets ``spares``."""

    def __init__(self, request: Json) -> None:
        spares = [str(s) for s in request["spares"]]
        self.search = BindingTimeoutProber(
            parse_address(request["server"]),
            control=str(request["control"]),
            spares=spares,
            random=seeded_stream(_hex(request, "seed")),
        )
        self.search.start(_now(request))

    def receive(self, local: str, source: Address, data: bytes, now: float) -> None:
        self.search.receive_datagram(data, source, now, local)

    def handle_timer(self, now: float) -> None:
        self.search.handle_timer(now)

    def get_timer(self) -> float | None:
        return self.search.get_timer()

    def send(self, now: float) -> list[tuple[bytes, Address, str]]:
        return [(d, a, str(local)) for d, a, local in self.search.datagrams_to_send(now)]

    def events(self) -> list[Json]:
        out: list[Json] = []
        while (event := self.search.next_event()) is not None:
            if isinstance(event, TimeoutLearned):
                out.append(
                    {
                        "type": "timeout_learned",
                        "timeout": event.timeout,
                        "interval": event.interval,
                        "high": event.high,
                        "at_least": event.at_least,
                    }
                )
            elif isinstance(event, TimeoutSearchFailed):
                out.append({"type": "timeout_search_failed", "reason": event.reason})
        return out

    def drain(self, now: float) -> Json:
        return {**super().drain(now), "interval": self.search.interval}


def _mapping_events(mapper: portmap_common.DatagramMapper | portmap_upnp_client.UpnpClient) -> list[Json]:
    """The events of portmap_common as the control protocol names them; a permanent lease's
    lifetime (infinite, MAP-5.3) is null."""
    out: list[Json] = []
    while (event := mapper.next_event()) is not None:
        if isinstance(event, portmap_common.MappingGranted):
            m = event.mapping
            external = format_address((m.external_address, m.external_port))
            lifetime = None if m.lifetime == float("inf") else m.lifetime
            renewed = event.renewed
            out.append({"type": "mapping_granted", "external": external, "lifetime": lifetime, "renewed": renewed})
        elif isinstance(event, portmap_common.MappingFailed):
            out.append({"type": "mapping_failed", "result": event.result, "unsupported": event.unsupported})
        elif isinstance(event, portmap_common.MappingLost):
            out.append({"type": "mapping_lost"})
        else:
            out.append({"type": "mapping_removed", "confirmed": event.confirmed})
    return out


class PortmapRole(NatRole):
    """One PCP or NAT-PMP mapping (portmap.md §3-§6) on the socket ``local``, to ``gateway`` (port 5351)."""

    def __init__(self, request: Json) -> None:
        self.local, self.gateway = str(request["local"]), parse_address(request["gateway"])
        port, lifetime = int(request["internal_port"]), int(request.get("lifetime", portmap_natpmp.DEFAULT_LIFETIME))
        mapper: portmap_common.DatagramMapper
        if request.get("protocol") == "natpmp":
            mapper = portmap_natpmp.NatPmpClient(internal_port=port, lifetime=lifetime)
        elif request.get("protocol") == "pcp":
            mapper = portmap_pcp.PcpClient(
                client_address=parse_address(self.local)[0],
                internal_port=port,
                lifetime=lifetime,
                random=seeded_stream(_hex(request, "seed")),
            )
        else:
            raise RdvError("protocol is 'natpmp', 'pcp' or 'upnp'")
        self.mapper = mapper
        self.mapper.start(_now(request))

    def remove(self, now: float) -> None:
        self.mapper.remove(now)

    def receive(self, local: str, source: Address, data: bytes, now: float) -> None:
        if source == self.gateway:  # only the gateway is listened to (MAP-1.3)
            self.mapper.receive_datagram(data, now)

    def handle_timer(self, now: float) -> None:
        self.mapper.handle_timer(now)

    def get_timer(self) -> float | None:
        return self.mapper.get_timer()

    def send(self, now: float) -> list[tuple[bytes, Address, str]]:
        return [(d, self.gateway, self.local) for d in self.mapper.datagrams_to_send(now)]

    def events(self) -> list[Json]:
        return _mapping_events(self.mapper)


class UpnpRole(NatRole):
    """One UPnP IGD mapping (portmap.md §7) from the socket ``local`` through ``gateway`` (its SSDP
    port, 1900).  Every M-SEARCH leaves twice, to the SSDP group and to the gateway; every answer
    also carries ``http``, the HTTP exchange the client starts now (given once), which the runner
    answers with ``upnp_http`` (spec/conformance.md §3.12)."""

    def __init__(self, request: Json) -> None:
        self.local, self.gateway = str(request["local"]), parse_address(request["gateway"])
        self.client = portmap_upnp_client.UpnpClient(
            gateway=self.gateway[0],
            client_address=parse_address(self.local)[0],
            internal_port=int(request["internal_port"]),
            lifetime=int(request.get("lifetime", portmap_upnp_client.DEFAULT_LIFETIME)),
        )
        self.exchange: portmap_upnp.HttpExchange | None = None  # the last one given, until answered
        self.client.start(_now(request))

    def remove(self, now: float) -> None:
        self.client.remove(now)

    def receive(self, local: str, source: Address, data: bytes, now: float) -> None:
        self.client.receive_datagram(data, source[0], now)  # the client keeps the gateway's only (MAP-1.3)

    def answer(self, request: Json, now: float) -> None:
        """``upnp_http``: the gateway's answer to the pending exchange (``status`` and ``body``, the
        whole ``response`` read to the connection's end, or ``failed``)."""
        exchange, self.exchange = self.exchange, None
        if exchange is None:
            raise RdvError("no HTTP exchange pending")
        if request.get("failed") is not None:
            self.client.http_failed(exchange, str(request["failed"]), now)
        elif request.get("response") is not None:
            try:
                done = exchange.receive_untrusted(_hex(request, "response"))
                status, body = exchange.receive_eof_untrusted() if done is None else done
            except portmap_common.PortMapError as exc:  # a head over 8 KiB, a body over 64 KiB (MAP-7.3)
                self.client.http_failed(exchange, str(exc), now)
            else:
                self.client.receive_http(exchange, status, body, now)
        else:
            self.client.receive_http(exchange, int(request["status"]), _hex(request, "body"), now)

    def handle_timer(self, now: float) -> None:
        self.client.handle_timer(now)

    def get_timer(self) -> float | None:
        return self.client.get_timer()

    def send(self, now: float) -> list[tuple[bytes, Address, str]]:
        targets = (portmap_upnp.SSDP_GROUP, self.gateway)  # MAP-7.1
        return [(d, to, self.local) for d in self.client.datagrams_to_send(now) for to in targets]

    def events(self) -> list[Json]:
        return _mapping_events(self.client)

    def drain(self, now: float) -> Json:
        out = super().drain(now)
        exchange = self.client.http_to_send()
        if exchange is not None:
            self.exchange = exchange
        http = None if exchange is None else {"url": str(exchange.url), "request": exchange.request.hex()}
        return {**out, "http": http}


def _portmap(request: Json) -> NatRole:
    """The ``portmap`` role: UPnP IGD for ``protocol: "upnp"``, else PCP or NAT-PMP."""
    return UpnpRole(request) if request.get("protocol") == "upnp" else PortmapRole(request)


ROLES: dict[str, Callable[[Json], NatRole]] = {
    "stun_server": StunServerRole,
    "nat_discovery": DiscoveryRole,
    "punch": PunchRole,
    "keeper": KeeperRole,
    "timeout_search": SearchRole,
    "portmap": _portmap,
}
FUNCTIONS: dict[str, Callable[[Json], Json]] = {
    "stun_decode": stun_decode,
    "stun_encode": stun_encode,
    "addr_class": addr_class,
    "cand_pair": cand_pair,
    "profile_decode": profile_decode,
    "punch_plan": punch_plan_cmd,
    "keepalive_interval": keepalive_interval,
    "keepalive_flows": keepalive_flows,
}


class NatCommands:
    """The commands of this module for one adapter process (one role at a time)."""

    def __init__(self) -> None:
        self.role: NatRole | None = None

    def handlers(self) -> dict[str, Callable[[Json], Json]]:
        out: dict[str, Callable[[Json], Json]] = dict(FUNCTIONS)
        for name, make in ROLES.items():
            out[name] = self._starter(make)
        out["nat_receive"] = self.receive
        out["nat_timer"] = self.timer
        out["portmap_remove"] = self.portmap_remove
        out["punch_fresh"] = self.punch_fresh
        out["upnp_http"] = self.upnp_http
        return out

    def _starter(self, make: Callable[[Json], NatRole]) -> Callable[[Json], Json]:
        def start(request: Json) -> Json:
            self.role = make(request)  # a new role replaces the last one (spec/conformance.md §3.12)
            return self.role.drain(_now(request))

        return start

    def _need(self) -> NatRole:
        if self.role is None:
            raise RdvError("no NAT role")
        return self.role

    def receive(self, request: Json) -> Json:
        role, now = self._need(), _now(request)
        role.receive(str(request.get("local")), parse_address(request.get("addr")), _hex(request, "data"), now)
        return role.drain(now)

    def punch_fresh(self, request: Json) -> Json:
        role, now = self._need(), _now(request)
        if not isinstance(role, PunchRole):
            raise RdvError("no punch role")
        role.fresh(parse_address(request.get("address")), now)
        return role.drain(now)

    def portmap_remove(self, request: Json) -> Json:
        role, now = self._need(), _now(request)
        if not isinstance(role, PortmapRole | UpnpRole):
            raise RdvError("no portmap role")
        role.remove(now)
        return role.drain(now)

    def upnp_http(self, request: Json) -> Json:
        role, now = self._need(), _now(request)
        if not isinstance(role, UpnpRole):
            raise RdvError("no UPnP portmap role")
        role.answer(request, now)
        return role.drain(now)

    def timer(self, request: Json) -> Json:
        role, now = self._need(), _now(request)
        due = role.get_timer()
        if due is not None and due <= now:
            role.handle_timer(now)
        return role.drain(now)
