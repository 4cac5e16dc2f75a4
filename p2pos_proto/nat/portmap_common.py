"""What the port-mapping clients share (spec/portmap.md): the result, the events, the state table, timers.

``portmap_natpmp.NatPmpClient`` and ``portmap_pcp.PcpClient`` are both a :class:`DatagramMapper`:
one mapping of one internal UDP (or TCP) port on the default gateway, driven like every sans-IO
object of the core:

* inputs: ``start(now)``, ``remove(now)``, ``receive_datagram(data, now)`` (a datagram from the
  gateway's port 5351; the driver drops datagrams from any other source, MAP-1.3),
  ``handle_timer(now)``;
* outputs: ``datagrams_to_send(now)`` (send each to the gateway's port 5351), ``get_timer()``,
  ``next_event()`` (the events below), and ``mapping`` (the mapping in force, or None).

After every input drain ``datagrams_to_send`` and ``next_event`` and re-arm ``get_timer``.
The UPnP client (portmap_upnp.py) talks HTTP, not datagrams, but reports the same events.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import math
from collections import deque
from collections.abc import Callable
from typing import Final

from ..errors import ErrorCode, LocalProtocolError, RemoteProtocolError

#: ``random(n)`` returns n random bytes (PCP nonces, retransmission jitter): injected, the core has no RNG.
RandomSource = Callable[[int], bytes]
#: The port PCP and NAT-PMP servers listen on (RFC 6887 §19.1, RFC 6886 §3.1).
SERVER_PORT: Final = 5351
UDP: Final = 17
TCP: Final = 6
_INF: Final = math.inf


class PortMapError(RemoteProtocolError):
    """The gateway sent something a port-mapping parser cannot accept (MAP-1.2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ErrorCode.MALFORMED_MESSAGE)


class MapProtocol(enum.Enum):
    """The three ways to ask a gateway for a mapping, in the order the driver tries them (MAP-2.1)."""

    PCP = "pcp"
    NATPMP = "nat-pmp"
    UPNP = "upnp"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PortMapping:
    """A mapping in force: the internet reaches ``internal_port`` at ``external_address:external_port``.

    ``lifetime`` is what the gateway granted, in seconds, counted from ``granted_at`` (the
    caller's clock); ``math.inf`` for a UPnP lease the gateway only grants as permanent.
    Keepalives for the mapped port are not needed before ``expires_at`` (MAP-5.3).
    """

    protocol: MapProtocol
    transport: int  # UDP (17) or TCP (6)
    internal_port: int
    external_address: str
    external_port: int
    lifetime: float
    granted_at: float

    @property
    def expires_at(self) -> float:
        return self.granted_at + self.lifetime

    @property
    def renew_at(self) -> float:
        """Half the lifetime (MAP-5.1)."""
        return self.granted_at + self.lifetime / 2


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MappingGranted:
    """The gateway granted (``renewed`` False) or renewed the mapping; ``mapping`` is what is in force now."""

    mapping: PortMapping
    renewed: bool


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MappingFailed:
    """No mapping: the gateway refused (``result`` is its code), never answered, or sent only garbage.

    ``unsupported`` is True when the gateway does not speak this protocol at all (no answer,
    or an unsupported-version/opcode result): the driver moves to the next protocol (MAP-2.1).
    """

    protocol: MapProtocol
    reason: str
    result: int | None
    unsupported: bool


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MappingLost:
    """A mapping that was granted expired without a renewal answered (MAP-5.2): start again."""

    protocol: MapProtocol
    reason: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MappingRemoved:
    """``remove()`` finished: ``confirmed`` when the gateway acknowledged the deletion (MAP-6.1)."""

    protocol: MapProtocol
    confirmed: bool


MapEvent = MappingGranted | MappingFailed | MappingLost | MappingRemoved


class MapState(enum.Enum):
    IDLE = "idle"
    REQUESTING = "requesting"
    MAPPED = "mapped"
    RENEWING = "renewing"
    REMOVING = "removing"
    FAILED = "failed"
    CLOSED = "closed"


class MapInput(enum.Enum):
    START = "start"
    GRANTED = "granted"
    REFUSED = "refused"
    RENEW = "renew"
    EXPIRED = "expired"
    REMOVE = "remove"
    DONE = "done"


#: spec/portmap.md §5's diagram, edge for edge: a missing entry is the caller's mistake.
TRANSITIONS: Final[dict[MapState, dict[MapInput, MapState]]] = {
    MapState.IDLE: {MapInput.START: MapState.REQUESTING, MapInput.REMOVE: MapState.CLOSED},
    MapState.REQUESTING: {
        MapInput.GRANTED: MapState.MAPPED,
        MapInput.REFUSED: MapState.FAILED,
        MapInput.REMOVE: MapState.REMOVING,
    },
    MapState.MAPPED: {MapInput.RENEW: MapState.RENEWING, MapInput.REMOVE: MapState.REMOVING},
    MapState.RENEWING: {
        MapInput.GRANTED: MapState.MAPPED,
        MapInput.EXPIRED: MapState.FAILED,
        MapInput.REMOVE: MapState.REMOVING,
    },
    MapState.REMOVING: {MapInput.DONE: MapState.CLOSED},
    MapState.FAILED: {MapInput.REMOVE: MapState.CLOSED},
    MapState.CLOSED: {},
}


def external_address_untrusted(raw: bytes) -> str:
    """A 4-byte IPv4 or 16-byte IPv6 address (IPv4-mapped IPv6 read as IPv4) as text.

    Any unicast address is accepted, reserved ranges included (198.18.0.0/15 is the lab's
    internet, MAP-4.2); the unspecified address and multicast are not an external address.
    """
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    ip = ipaddress.IPv4Address(raw) if len(raw) == 4 else ipaddress.IPv6Address(raw)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified or ip.is_multicast:
        raise PortMapError(f"{ip} is not an external address")
    return str(ip)


def epoch_lost(previous: tuple[float, int] | None, now: float, epoch: int) -> bool:
    """Whether the gateway lost its state, by the epoch rule of RFC 6887 §8.5 (MAP-5.4).

    ``previous`` is (client time, server epoch) of the last valid response.  The server's
    clock may run 1/16 faster or slower than ours, plus 2 s of slack; going backwards by more
    than 1 s means a restart.  NAT-PMP's rule (RFC 6886 §3.6) is the same in spirit.
    """
    if previous is None:
        return False
    then, old = previous
    if epoch + 1 < old:
        return True
    client_delta, server_delta = now - then, epoch - old
    return client_delta + 2 < server_delta - server_delta / 16 or server_delta + 2 < client_delta - client_delta / 16


class DatagramMapper:
    """The state machine NAT-PMP and PCP share; subclasses say what to send and how to read a reply.

    A subclass implements ``_request(lifetime)`` (the bytes of the map request; ``_first_request``
    when the first one differs), ``_first_interval()`` and ``_next_interval(previous)`` (its
    retransmission schedule), and ``_reply(data, now)`` (parse and act; raise PortMapError for
    garbage).
    """

    protocol: MapProtocol = MapProtocol.PCP

    def __init__(self, *, internal_port: int, lifetime: int, transport: int, probe_sends: int) -> None:
        if not 1 <= internal_port <= 0xFFFF or not 1 <= lifetime <= 0xFFFFFFFF or transport not in (UDP, TCP):
            raise LocalProtocolError("an internal port 1-65535, a lifetime 1..2^32-1 s and UDP or TCP")
        if probe_sends < 1:
            raise LocalProtocolError("probe_sends is at least 1")
        self.internal_port = internal_port
        self.lifetime = lifetime
        self.transport = transport
        self.probe_sends = probe_sends
        self.state = MapState.IDLE
        self.mapping: PortMapping | None = None
        self.dropped = 0  # datagrams that were garbage or not for us, dropped (MAP-1.2)
        self.heard = False  # the gateway answered at least once: it speaks this protocol
        self._events: deque[MapEvent] = deque()
        self._outbox: list[bytes] = []
        self._request_bytes = b""
        self._sends = 0
        self._max_sends: float = probe_sends
        self._interval = 0.0
        self._retransmit_at = _INF
        self._give_up_at = _INF
        self._epoch: tuple[float, int] | None = None

    # -- the caller's inputs ----------------------------------------------------------------

    def start(self, now: float) -> None:
        """Ask for the mapping; then drain ``datagrams_to_send`` and wait for ``MappingGranted``."""
        self._move(MapInput.START, "start()")
        self._send_new(self._first_request(), now, self.probe_sends)

    def remove(self, now: float) -> None:
        """Delete the mapping (lifetime 0, MAP-6.1); ends with ``MappingRemoved``, at once if none was asked."""
        asked = self.state in (MapState.REQUESTING, MapState.MAPPED, MapState.RENEWING)
        self._move(MapInput.REMOVE, "remove()")
        if self.state is MapState.CLOSED or not asked:
            self._events.append(MappingRemoved(protocol=self.protocol, confirmed=False))
            return
        self._send_new(self._request(0), now, self.probe_sends)

    def receive_datagram(self, data: bytes, now: float) -> None:
        """A datagram from the gateway's port 5351; garbage and stale answers are dropped and counted."""
        if self.state not in (MapState.REQUESTING, MapState.RENEWING, MapState.REMOVING, MapState.MAPPED):
            self.dropped += 1
            return
        try:
            self._reply(bytes(data), now)
        except PortMapError:
            self.dropped += 1

    def handle_timer(self, now: float) -> None:
        """Retransmit, renew at half the lifetime, or give up (MAP-3.1, MAP-5.1, MAP-5.2)."""
        if self.state is MapState.MAPPED and self.mapping is not None and now >= self.mapping.renew_at:
            self._renew(now)
            return
        if self.state not in (MapState.REQUESTING, MapState.RENEWING, MapState.REMOVING):
            return
        if now >= self._give_up_at:
            self._give_up(now)
        elif now >= self._retransmit_at:
            if self._sends >= self._max_sends:
                self._give_up(now)
                return
            self._interval = self._next_interval(self._interval)
            self._transmit(now)

    # -- the caller's outputs ---------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[bytes]:
        out, self._outbox = self._outbox, []
        return out

    def get_timer(self) -> float | None:
        if self.state is MapState.MAPPED and self.mapping is not None:
            return self.mapping.renew_at if self.mapping.lifetime != _INF else None
        if self.state in (MapState.REQUESTING, MapState.RENEWING, MapState.REMOVING):
            return min(self._retransmit_at, self._give_up_at)
        return None

    def next_event(self) -> MapEvent | None:
        return self._events.popleft() if self._events else None

    # -- for the subclasses -----------------------------------------------------------------

    def _request(self, lifetime: int) -> bytes:
        raise NotImplementedError

    def _first_request(self) -> bytes:
        return self._request(self.lifetime)

    def _first_interval(self) -> float:
        raise NotImplementedError

    def _next_interval(self, previous: float) -> float:
        raise NotImplementedError

    def _reply(self, data: bytes, now: float) -> None:
        raise NotImplementedError

    def _move(self, what: MapInput, call: str) -> None:
        new = TRANSITIONS[self.state].get(what)
        if new is None:
            raise LocalProtocolError(f"{call} in state {self.state.value}")
        self.state = new

    def _send_new(self, request: bytes, now: float, max_sends: float, give_up_at: float = _INF) -> None:
        """Start a new transaction: send ``request`` now, then on the schedule until answered."""
        self._request_bytes = request
        self._sends = 0
        self._max_sends = max_sends
        self._give_up_at = give_up_at
        self._interval = self._first_interval()
        self._transmit(now)

    def _transmit(self, now: float) -> None:
        self._outbox.append(self._request_bytes)
        self._sends += 1
        self._retransmit_at = now + self._interval

    def _check_epoch(self, epoch: int, now: float) -> bool:
        """Record a valid response's epoch; True if the gateway restarted since the last one (MAP-5.4)."""
        lost = epoch_lost(self._epoch, now, epoch)
        self._epoch = (now, epoch)
        return lost

    def _granted(self, address: str, port: int, lifetime: int, now: float) -> None:
        """A success answer to the map request: record the mapping and say so."""
        renewed = self.state is MapState.RENEWING
        self._move(MapInput.GRANTED, "granted")
        self.mapping = PortMapping(
            protocol=self.protocol,
            transport=self.transport,
            internal_port=self.internal_port,
            external_address=address,
            external_port=port,
            lifetime=float(lifetime),
            granted_at=now,
        )
        self._retransmit_at = self._give_up_at = _INF
        self._events.append(MappingGranted(mapping=self.mapping, renewed=renewed))

    def _refused(self, reason: str, result: int | None, unsupported: bool) -> None:
        if self.state is MapState.REMOVING:  # answered, but not deleted: the gateway's lifetime ends it
            self._removed(confirmed=False)
            return
        if self.state is MapState.RENEWING:  # a refused renewal: the mapping ends now
            self._lost(f"renewal refused: {reason}")
            return
        self._move(MapInput.REFUSED, "refused")
        self._events.append(
            MappingFailed(protocol=self.protocol, reason=reason, result=result, unsupported=unsupported)
        )

    def _renew(self, now: float) -> None:
        """Ask again, same request (PCP: same nonce), until the mapping expires (MAP-5.1, MAP-5.2)."""
        expires = self.mapping.expires_at if self.mapping is not None else now
        self._move(MapInput.RENEW, "renew")
        self._send_new(self._request(self.lifetime), now, _INF, give_up_at=expires)

    def _removed(self, *, confirmed: bool) -> None:
        self._move(MapInput.DONE, "done")
        self.mapping = None
        self._retransmit_at = self._give_up_at = _INF
        self._events.append(MappingRemoved(protocol=self.protocol, confirmed=confirmed))

    def _lost(self, reason: str) -> None:
        self._move(MapInput.EXPIRED, "expired")
        self.mapping = None
        self._retransmit_at = self._give_up_at = _INF
        self._events.append(MappingLost(protocol=self.protocol, reason=reason))

    def _give_up(self, now: float) -> None:
        if self.state is MapState.REMOVING:
            self._removed(confirmed=False)
        elif self.state is MapState.RENEWING:
            self._lost("no answer to the renewal before the mapping expired")
        else:
            self._retransmit_at = _INF
            reason = "the gateway did not answer" if not self.heard else "no answer to the request"
            self._move(MapInput.REFUSED, "refused")
            self._events.append(
                MappingFailed(protocol=self.protocol, reason=reason, result=None, unsupported=not self.heard)
            )
