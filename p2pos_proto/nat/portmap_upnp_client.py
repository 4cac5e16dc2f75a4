"""A sans-IO UPnP IGD client for one port mapping (spec/portmap.md §7), messages from portmap_upnp.py.

Drive it with two kinds of I/O:

* datagrams: after ``start(now)`` drain ``datagrams_to_send(now)`` (SSDP M-SEARCHes: send each
  to 239.255.255.250:1900 and to the gateway's port 1900) and feed answers from the gateway to
  ``receive_datagram(data, source, now)``;
* HTTP: whenever ``http_to_send()`` returns an :class:`HttpExchange`, open a TCP connection to
  its ``url``, write its ``request``, feed the answer to it until it yields (status, body), and
  give that to ``receive_http(status, body, now)``; on a connection error, timeout or
  PortMapError call ``http_failed(reason, now)``.  One exchange at a time.

Also ``handle_timer(now)`` at ``get_timer()``, ``remove(now)`` on exit, and ``next_event()``
(the events of portmap_common).  The steps: search, read the description, GetExternalIPAddress,
AddPortMapping (on 718 a WANIPConnection:2 gets AddAnyPortMapping; on 725 the lease is asked
again as permanent), renew with AddPortMapping at half the lease, DeletePortMapping on removal.
"""

from __future__ import annotations

import ipaddress
import math
from collections import deque
from typing import Final

from ..errors import LocalProtocolError
from . import portmap_upnp as up
from .portmap_common import (
    TCP,
    TRANSITIONS,
    UDP,
    MapEvent,
    MapInput,
    MappingFailed,
    MappingGranted,
    MappingLost,
    MappingRemoved,
    MapProtocol,
    MapState,
    PortMapError,
    PortMapping,
    external_address_untrusted,
)

#: M-SEARCH sends (0, 1 and 2 s) and the wait after the last one (MAP-7.1): 3 s in all.
SEARCH_SENDS: Final = 3
SEARCH_INTERVAL: Final = 1.0
#: The lease asked for; a gateway may only grant permanent ones (725): then 0 (MAP-7.2).
DEFAULT_LIFETIME: Final = 3600
_INF: Final = math.inf


class UpnpClient:
    """One UPnP IGD mapping of ``internal_port`` on ``client_address`` through ``gateway``."""

    protocol = MapProtocol.UPNP

    def __init__(
        self,
        *,
        gateway: str,
        client_address: str,
        internal_port: int,
        lifetime: int = DEFAULT_LIFETIME,
        transport: int = UDP,
        suggested_port: int | None = None,
        description: str = "p2pos",
    ) -> None:
        if not 1 <= internal_port <= 0xFFFF or not 1 <= lifetime <= 604800 or transport not in (UDP, TCP):
            raise LocalProtocolError("an internal port 1-65535, a lease 1..604800 s and UDP or TCP")
        self.gateway = gateway
        self.client_address = client_address
        self.internal_port = internal_port
        self.lifetime = lifetime
        self.transport = transport
        self.external_port = internal_port if suggested_port is None else suggested_port
        self.description = description
        self.state = MapState.IDLE
        self.mapping: PortMapping | None = None
        self.control: up.ControlPoint | None = None
        self.external_address: str | None = None
        self.dropped = 0
        self._step = ""
        self._lease = lifetime
        self._events: deque[MapEvent] = deque()
        self._outbox: list[bytes] = []
        self._searches = 0
        self._timer = _INF
        self._exchange: up.HttpExchange | None = None
        self._in_flight = False

    # -- inputs -----------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Search for the gateway's IGD; drain ``datagrams_to_send``."""
        self._move(MapInput.START, "start()")
        self._step = "search"
        self._search(now)

    def remove(self, now: float) -> None:
        """DeletePortMapping if a mapping was granted (MAP-7.4); ``MappingRemoved`` when done."""
        asked = self.mapping is not None or self._step in ("map", "map-any", "renew")
        had = asked and self.control is not None
        self._move(MapInput.REMOVE, "remove()")
        self._timer = _INF
        if self.state is MapState.CLOSED or not had:
            if self.state is MapState.REMOVING:
                self._move(MapInput.DONE, "done")
            self._events.append(MappingRemoved(protocol=self.protocol, confirmed=False))
            return
        self._step = "delete"
        self._soap("DeletePortMapping", self._mapping_key())

    def receive_datagram(self, data: bytes, source: str, now: float) -> None:
        """An SSDP answer; only the gateway's is used, the rest dropped and counted (MAP-1.3)."""
        if self._step != "search" or source != self.gateway:
            self.dropped += 1
            return
        try:
            _, location = up.ssdp_response_untrusted(bytes(data))
            url = up.gateway_url_untrusted(location, self.gateway)
        except PortMapError:
            self.dropped += 1
            return
        self._step = "describe"
        self._timer = _INF
        self._exchange = up.HttpExchange("GET", url)
        self._in_flight = False

    def http_to_send(self) -> up.HttpExchange | None:
        """The next HTTP exchange to perform, once (None while one is in flight or none is due)."""
        if self._exchange is None or self._in_flight:
            return None
        self._in_flight = True
        return self._exchange

    def receive_http(self, exchange: up.HttpExchange, status: int, body: bytes, now: float) -> None:
        """The answer to ``exchange`` (from ``http_to_send``); a stale one is dropped, garbage fails the step."""
        if exchange is not self._exchange or not self._in_flight:
            self.dropped += 1
            return
        self._exchange, self._in_flight = None, False
        try:
            self._answer(exchange.url, status, body, now)
        except up.UpnpError as exc:
            self._refusal(exc.upnp_code, str(exc), now)
        except PortMapError as exc:
            self._fail(str(exc), now)

    def http_failed(self, exchange: up.HttpExchange, reason: str, now: float) -> None:
        """``exchange`` could not be completed (connection refused, timeout, malformed answer)."""
        if exchange is not self._exchange or not self._in_flight:
            self.dropped += 1
            return
        self._exchange, self._in_flight = None, False
        self._fail(reason, now)

    def handle_timer(self, now: float) -> None:
        if now < self._timer:
            return
        if self._step == "search":
            if self._searches < SEARCH_SENDS:
                self._search(now)
            else:
                self._timer = _INF
                self._failed("no SSDP answer from the gateway", None, unsupported=True)
        elif self.state is MapState.MAPPED:
            self._timer = _INF
            self._move(MapInput.RENEW, "renew")
            self._step = "renew"
            self._add(now)

    # -- outputs ----------------------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[bytes]:
        out, self._outbox = self._outbox, []
        return out

    def get_timer(self) -> float | None:
        return None if self._timer == _INF else self._timer

    def next_event(self) -> MapEvent | None:
        return self._events.popleft() if self._events else None

    # -- steps ------------------------------------------------------------------------------

    def _move(self, what: MapInput, call: str) -> None:
        new = TRANSITIONS[self.state].get(what)
        if new is None:
            raise LocalProtocolError(f"{call} in state {self.state.value}")
        self.state = new

    def _search(self, now: float) -> None:
        self._outbox.extend(up.m_search(target) for target in up.SEARCH_TARGETS)
        self._searches += 1
        self._timer = now + SEARCH_INTERVAL

    def _soap(self, action: str, arguments: list[tuple[str, str]]) -> None:
        if self.control is None:
            raise LocalProtocolError("no control URL yet")
        body = up.soap_body(self.control.service_type, action, arguments)
        headers = [
            ("Content-Type", 'text/xml; charset="utf-8"'),
            ("SOAPAction", f'"{self.control.service_type}#{action}"'),
        ]
        self._exchange = up.HttpExchange("POST", self.control.url, body, headers)
        self._in_flight = False

    def _protocol_name(self) -> str:
        return "UDP" if self.transport == UDP else "TCP"

    def _mapping_key(self) -> list[tuple[str, str]]:
        return [
            ("NewRemoteHost", ""),
            ("NewExternalPort", str(self.external_port)),
            ("NewProtocol", self._protocol_name()),
        ]

    def _add(self, now: float, action: str = "AddPortMapping") -> None:
        self._soap(
            action,
            [
                *self._mapping_key(),
                ("NewInternalPort", str(self.internal_port)),
                ("NewInternalClient", self.client_address),
                ("NewEnabled", "1"),
                ("NewPortMappingDescription", self.description),
                ("NewLeaseDuration", str(self._lease)),
            ],
        )

    def _answer(self, url: up.Url, status: int, body: bytes, now: float) -> None:
        if self._step == "describe":
            if status != 200:
                raise PortMapError(f"the description answered HTTP {status}")
            self.control = up.control_point_untrusted(body, url, self.gateway)
            self._step = "address"
            self._soap("GetExternalIPAddress", [])
        elif self._step == "address":
            out = up.soap_response_untrusted(status, body, "GetExternalIPAddress")
            try:
                self.external_address = external_address_untrusted(
                    ipaddress.ip_address(out.get("NewExternalIPAddress", "")).packed
                )
            except ValueError as exc:
                raise PortMapError("GetExternalIPAddress gave no address") from exc
            self._step = "map"
            self._add(now)
        elif self._step in ("map", "map-any", "renew"):
            action = "AddAnyPortMapping" if self._step == "map-any" else "AddPortMapping"
            out = up.soap_response_untrusted(status, body, action)
            if self._step == "map-any":
                port = out.get("NewReservedPort", "")
                if not port.isdigit() or not 1 <= int(port) <= 0xFFFF:
                    raise PortMapError("AddAnyPortMapping gave no port")
                self.external_port = int(port)
            self._mapped(now)
        elif self._step == "delete":
            up.soap_response_untrusted(status, body, "DeletePortMapping")
            self._closed(confirmed=True)

    def _mapped(self, now: float) -> None:
        renewed = self.state is MapState.RENEWING
        self._move(MapInput.GRANTED, "granted")
        self._step = "mapped"
        lifetime = float(self._lease) if self._lease else _INF
        self.mapping = PortMapping(
            protocol=self.protocol,
            transport=self.transport,
            internal_port=self.internal_port,
            external_address=self.external_address or "",
            external_port=self.external_port,
            lifetime=lifetime,
            granted_at=now,
        )
        self._timer = self.mapping.renew_at
        self._events.append(MappingGranted(mapping=self.mapping, renewed=renewed))

    def _refusal(self, code: int, reason: str, now: float) -> None:
        """A UPnP error: 725 asks again for a permanent lease, 718 on IGD2 AddAnyPortMapping (MAP-7.2)."""
        if self._step in ("map", "renew") and code == up.ONLY_PERMANENT and self._lease:
            self._lease = 0
            self._add(now)
        elif self._step == "map" and code == up.CONFLICT and self.control is not None and self.control.version >= 2:
            self._step = "map-any"
            self._add(now, "AddAnyPortMapping")
        else:
            self._fail(reason, now, result=code)

    def _fail(self, reason: str, now: float, result: int | None = None) -> None:
        if self._step == "delete":
            self._closed(confirmed=False)
        elif self._step == "renew":
            self._move(MapInput.EXPIRED, "expired")
            self.mapping = None
            self._step = ""
            self._events.append(MappingLost(protocol=self.protocol, reason=f"renewal failed: {reason}"))
        elif self.state is MapState.REQUESTING:
            self._failed(reason, result, unsupported=self._step in ("search", "describe"))

    def _failed(self, reason: str, result: int | None, *, unsupported: bool) -> None:
        self._move(MapInput.REFUSED, "refused")
        self._step = ""
        self._events.append(
            MappingFailed(protocol=self.protocol, reason=reason, result=result, unsupported=unsupported)
        )

    def _closed(self, *, confirmed: bool) -> None:
        self._move(MapInput.DONE, "done")
        self._step = ""
        self.mapping = None
        self._events.append(MappingRemoved(protocol=self.protocol, confirmed=confirmed))
