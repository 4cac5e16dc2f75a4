"""NAT-PMP (RFC 6886): the codec and a one-mapping client (spec/portmap.md §3).

``NatPmpClient`` is a :class:`~.portmap_common.DatagramMapper` (its docstring says how to drive
it): it asks the gateway for its external address (opcode 0), then for the mapping (opcode 1
for UDP, 2 for TCP), renews at half the granted lifetime and deletes with lifetime 0.  Requests
are retransmitted after 250 ms, doubling (RFC 6886 §3.1, MAP-3.1).
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Final

from .portmap_common import UDP, DatagramMapper, MapProtocol, MapState, PortMapError, external_address_untrusted

VERSION: Final = 0
OP_ADDRESS: Final = 0
OP_MAP_UDP: Final = 1
OP_MAP_TCP: Final = 2
RESPONSE_BIT: Final = 0x80
#: RFC 6886 §3.5 result codes.
RESULTS: Final = {
    0: "success",
    1: "unsupported version",
    2: "not authorized or refused",
    3: "network failure",
    4: "out of resources",
    5: "unsupported opcode",
}
#: RFC 6886 §3.1: 250 ms, doubled after each send; at most 9 sends once the gateway has answered.
INITIAL_INTERVAL: Final = 0.25
MAX_SENDS: Final = 9
#: Sends before a silent gateway is given up as not speaking NAT-PMP (MAP-2.2): 3.75 s.
PROBE_SENDS: Final = 4
#: RFC 6886 §3.3's recommended lifetime.
DEFAULT_LIFETIME: Final = 7200
_MAP = struct.Struct(">BBHHHI")
_ADDRESS_REPLY = struct.Struct(">BBHI4s")
_MAP_REPLY = struct.Struct(">BBHIHHI")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class NatPmpResponse:
    """A parsed NAT-PMP response; the fields that its opcode does not carry are None."""

    opcode: int  # the request's opcode (0, 1 or 2), response bit removed
    result: int
    epoch: int
    external_address: str | None = None
    internal_port: int | None = None
    external_port: int | None = None
    lifetime: int | None = None


def address_request() -> bytes:
    """The external-address request (RFC 6886 §3.2): version 0, opcode 0."""
    return bytes((VERSION, OP_ADDRESS))


def map_request(*, transport: int, internal_port: int, suggested_port: int, lifetime: int) -> bytes:
    """A mapping request (RFC 6886 §3.3); lifetime 0 deletes (then ``suggested_port`` must be 0)."""
    opcode = OP_MAP_UDP if transport == UDP else OP_MAP_TCP
    return _MAP.pack(VERSION, opcode, 0, internal_port, suggested_port, lifetime)


def response_untrusted(data: bytes) -> NatPmpResponse:
    """Parse a NAT-PMP response (RFC 6886 §3.2, §3.3, §3.5); raise PortMapError for anything else.

    An error response is 8 bytes or more (version, opcode, result, epoch); a success is exactly
    12 (address) or 16 (mapping) bytes, more is tolerated and ignored (RFC 6886 §3.5 lets
    later versions grow).  A success carrying an address of 0.0.0.0 is refused (MAP-4.2).
    """
    if len(data) < 8:
        raise PortMapError(f"a NAT-PMP response is at least 8 bytes, not {len(data)}")
    version, op, result, epoch = struct.unpack_from(">BBHI", data)
    if version != VERSION:
        raise PortMapError(f"NAT-PMP version {version}")
    if not op & RESPONSE_BIT or op & ~RESPONSE_BIT not in (OP_ADDRESS, OP_MAP_UDP, OP_MAP_TCP):
        raise PortMapError(f"opcode {op} is not a NAT-PMP response")
    opcode = op & ~RESPONSE_BIT
    if result != 0:
        return NatPmpResponse(opcode=opcode, result=result, epoch=epoch)
    if opcode == OP_ADDRESS:
        if len(data) < _ADDRESS_REPLY.size:
            raise PortMapError("a NAT-PMP address response is 12 bytes")
        raw = _ADDRESS_REPLY.unpack_from(data)[4]
        return NatPmpResponse(opcode=opcode, result=0, epoch=epoch, external_address=external_address_untrusted(raw))
    if len(data) < _MAP_REPLY.size:
        raise PortMapError("a NAT-PMP mapping response is 16 bytes")
    _, _, _, _, internal, external, lifetime = _MAP_REPLY.unpack_from(data)
    return NatPmpResponse(
        opcode=opcode, result=0, epoch=epoch, internal_port=internal, external_port=external, lifetime=lifetime
    )


class NatPmpClient(DatagramMapper):
    """One NAT-PMP mapping: external address, then map, renew, delete (MAP-3.x, MAP-5.x, MAP-6.1).

    ``suggested_port`` (default: the internal port) is asked for first; a renewal asks for the
    port granted.  ``probe_sends`` bounds the sends to a gateway that never answered (MAP-2.2).
    """

    protocol = MapProtocol.NATPMP

    def __init__(
        self,
        *,
        internal_port: int,
        lifetime: int = DEFAULT_LIFETIME,
        transport: int = UDP,
        suggested_port: int | None = None,
        probe_sends: int = PROBE_SENDS,
    ) -> None:
        super().__init__(internal_port=internal_port, lifetime=lifetime, transport=transport, probe_sends=probe_sends)
        self.suggested_port = internal_port if suggested_port is None else suggested_port
        self.external_address: str | None = None

    def _first_request(self) -> bytes:
        return address_request()

    def _request(self, lifetime: int) -> bytes:
        port = 0 if lifetime == 0 else self.suggested_port
        return map_request(
            transport=self.transport, internal_port=self.internal_port, suggested_port=port, lifetime=lifetime
        )

    def _first_interval(self) -> float:
        return INITIAL_INTERVAL

    def _next_interval(self, previous: float) -> float:
        return previous * 2

    def _reply(self, data: bytes, now: float) -> None:
        reply = response_untrusted(data)
        wanted = OP_MAP_UDP if self.transport == UDP else OP_MAP_TCP
        if reply.opcode not in (OP_ADDRESS, wanted):
            raise PortMapError(f"an answer to opcode {reply.opcode}, not ours")
        if reply.opcode == wanted and reply.result == 0 and reply.internal_port != self.internal_port:
            raise PortMapError(f"an answer for internal port {reply.internal_port}")
        self.heard = True
        restarted = self._check_epoch(reply.epoch, now)
        asking_address = self.external_address is None and self._request_bytes == address_request()
        if reply.opcode == OP_ADDRESS and not asking_address:
            if restarted and self.state is MapState.MAPPED:  # the gateway lost our mapping (RFC 6886 §3.6)
                self._renew(now)
            return
        if reply.opcode != OP_ADDRESS and asking_address:
            raise PortMapError("a mapping answer while we asked for the address")
        if reply.result != 0:
            name = RESULTS.get(reply.result, "unknown result")
            self._refused(f"NAT-PMP result {reply.result} ({name})", reply.result, reply.result in (1, 5))
            return
        if reply.opcode == OP_ADDRESS:
            self.external_address = reply.external_address
            self._send_new(self._request(self.lifetime), now, MAX_SENDS)  # the gateway speaks: full schedule
            return
        self._mapped(reply, now, restarted)

    def _mapped(self, reply: NatPmpResponse, now: float, restarted: bool) -> None:
        lifetime, port = reply.lifetime or 0, reply.external_port or 0
        if self.state is MapState.REMOVING:
            self._removed(confirmed=lifetime == 0)
        elif self.state is MapState.MAPPED:
            if restarted:  # a late duplicate told us the gateway restarted: map again at once
                self._renew(now)
        elif lifetime == 0 or port == 0 or self.external_address is None:
            self._refused("NAT-PMP granted no port or no lifetime", None, unsupported=False)
        else:
            self.suggested_port = port
            self._granted(self.external_address, port, lifetime, now)
