"""PCP (RFC 6887): the MAP opcode's codec and a one-mapping client (spec/portmap.md §4).

``PcpClient`` is a :class:`~.portmap_common.DatagramMapper` (its docstring says how to drive
it).  One MAP request carries a 96-bit nonce that stays the same for the mapping's renewals
and its deletion (RFC 6887 §11.1, MAP-4.3); an answer with another nonce is dropped.  Requests
are retransmitted on RFC 6887 §8.1.1's schedule (3 s, doubling, ±10 %, at most 1024 s);
every answer's epoch is checked (RFC 6887 §8.5): a gateway that restarted gets the mapping
asked again at once (MAP-5.4).  A NAT-PMP-only gateway answers with a version-0
"unsupported version" (RFC 6887 §9): the client reports ``unsupported`` and the driver
moves on to NAT-PMP.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import struct
from typing import Final

from .portmap_common import (
    UDP,
    DatagramMapper,
    MapProtocol,
    MapState,
    PortMapError,
    RandomSource,
    external_address_untrusted,
)

VERSION: Final = 2
OP_ANNOUNCE: Final = 0
OP_MAP: Final = 1
RESPONSE_BIT: Final = 0x80
HEADER_LEN: Final = 24
MAP_LEN: Final = 36
#: RFC 6887 §7: a PCP message is at most 1100 bytes.
MAX_MESSAGE: Final = 1100
#: RFC 6887 §7.4 result codes.
RESULTS: Final = {
    0: "SUCCESS",
    1: "UNSUPP_VERSION",
    2: "NOT_AUTHORIZED",
    3: "MALFORMED_REQUEST",
    4: "UNSUPP_OPCODE",
    5: "UNSUPP_OPTION",
    6: "MALFORMED_OPTION",
    7: "NETWORK_FAILURE",
    8: "NO_RESOURCES",
    9: "UNSUPP_PROTOCOL",
    10: "USER_EX_QUOTA",
    11: "CANNOT_PROVIDE_EXTERNAL",
    12: "ADDRESS_MISMATCH",
    13: "EXCESSIVE_REMOTE_PEERS",
}
#: Results that mean "this gateway does not do PCP MAP": try the next protocol (MAP-2.1).
UNSUPPORTED: Final = frozenset({1, 4})
#: RFC 6887 §8.1.1: IRT 3 s, MRT 1024 s, RAND in [-0.1, +0.1].
IRT: Final = 3.0
MRT: Final = 1024.0
#: Sends before a silent gateway is given up as not speaking PCP (MAP-2.2): one, about 3 s.
PROBE_SENDS: Final = 1
DEFAULT_LIFETIME: Final = 7200
#: "No preference" for the external address of an IPv4 mapping (RFC 6887 §11.1).
ANY_IPV4: Final = ipaddress.IPv6Address("::ffff:0.0.0.0")
_HEADER = struct.Struct(">BBHI16s")
_MAP = struct.Struct(">12sB3xHH16s")
_REPLY_HEADER = struct.Struct(">BBxBII12x")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PcpResponse:
    """A parsed PCP response (RFC 6887 §7.2) and, for MAP, its opcode fields (§11.1).

    ``version`` 0 is a NAT-PMP gateway's "unsupported version" answer (RFC 6887 §9).
    """

    version: int
    opcode: int
    result: int
    lifetime: int
    epoch: int
    nonce: bytes = b""
    transport: int = 0
    internal_port: int = 0
    external_port: int = 0
    external_address: str | None = None


def as_pcp_address(address: str) -> bytes:
    """An address in PCP's 16-byte form: IPv6 as is, IPv4 IPv4-mapped (RFC 6887 §5)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + ip.packed).packed
    return ip.packed


def map_request(
    *,
    lifetime: int,
    client_address: str,
    nonce: bytes,
    transport: int,
    internal_port: int,
    suggested_port: int,
    suggested_address: str | None = None,
) -> bytes:
    """A MAP request, 60 bytes (RFC 6887 §7.1, §11.1); lifetime 0 deletes the mapping.

    ``suggested_address`` None means no preference: ``::ffff:0.0.0.0`` for an IPv4 client,
    ``::`` for an IPv6 one.
    """
    if len(nonce) != 12:
        raise ValueError("a PCP nonce is 12 bytes")
    if suggested_address is None:
        wanted = ANY_IPV4.packed if ipaddress.ip_address(client_address).version == 4 else bytes(16)
    else:
        wanted = as_pcp_address(suggested_address)
    header = _HEADER.pack(VERSION, OP_MAP, 0, lifetime, as_pcp_address(client_address))
    return header + _MAP.pack(nonce, transport, internal_port, suggested_port, wanted)


def response_untrusted(data: bytes) -> PcpResponse:
    """Parse a PCP response; raise PortMapError for anything that is not one (MAP-4.4).

    Checked: at least 24 bytes (8 for NAT-PMP's version-0 answer), at most 1100, a multiple
    of 4, the response bit, a known opcode, a MAP body of 36 bytes; options after it are
    skipped by their lengths (none is acted on).
    """
    if len(data) >= 4 and data[0] == 0:  # a NAT-PMP server's answer to our version 2 (RFC 6887 §9)
        result = struct.unpack_from(">H", data, 2)[0]
        if len(data) < 8 or result != 1:
            raise PortMapError("a version-0 answer that is not 'unsupported version'")
        return PcpResponse(version=0, opcode=data[1] & 0x7F, result=1, lifetime=0, epoch=0)
    if len(data) < HEADER_LEN or len(data) > MAX_MESSAGE or len(data) % 4:
        raise PortMapError(f"a PCP response of {len(data)} bytes")
    version, op, result, lifetime, epoch = _REPLY_HEADER.unpack_from(data)
    if version != VERSION:
        raise PortMapError(f"PCP version {version}")
    if not op & RESPONSE_BIT:
        raise PortMapError("a PCP request, not a response")
    opcode = op & 0x7F
    if opcode == OP_ANNOUNCE:
        _skip_options(data, HEADER_LEN)
        return PcpResponse(version=version, opcode=opcode, result=result, lifetime=lifetime, epoch=epoch)
    if opcode != OP_MAP:
        raise PortMapError(f"PCP opcode {opcode}")
    if len(data) < HEADER_LEN + MAP_LEN:
        raise PortMapError("a MAP response is at least 60 bytes")
    nonce, transport, internal, external, raw = _MAP.unpack_from(data, HEADER_LEN)
    _skip_options(data, HEADER_LEN + MAP_LEN)
    address = external_address_untrusted(raw) if result == 0 else None
    return PcpResponse(
        version=version,
        opcode=opcode,
        result=result,
        lifetime=lifetime,
        epoch=epoch,
        nonce=nonce,
        transport=transport,
        internal_port=internal,
        external_port=external,
        external_address=address,
    )


def _skip_options(data: bytes, at: int) -> None:
    """Walk the options (RFC 6887 §7.3: code, reserved, length, data padded to 4) to the exact end."""
    while at < len(data):
        if at + 4 > len(data):
            raise PortMapError("a truncated PCP option")
        length = struct.unpack_from(">H", data, at + 2)[0]
        at += 4 + length + (-length % 4)
    if at != len(data):
        raise PortMapError("a PCP option runs past the message")


class PcpClient(DatagramMapper):
    """One PCP MAP mapping for ``client_address`` (the address the gateway sees us from, MAP-4.1).

    ``random`` gives the nonce and the retransmission jitter; ``suggested_port`` (default: the
    internal port) and ``suggested_address`` are asked for first, the granted ones on renewal.
    """

    protocol = MapProtocol.PCP

    def __init__(
        self,
        *,
        client_address: str,
        internal_port: int,
        random: RandomSource,
        lifetime: int = DEFAULT_LIFETIME,
        transport: int = UDP,
        suggested_port: int | None = None,
        suggested_address: str | None = None,
        probe_sends: int = PROBE_SENDS,
    ) -> None:
        super().__init__(internal_port=internal_port, lifetime=lifetime, transport=transport, probe_sends=probe_sends)
        self.client_address = client_address
        self.random = random
        self.nonce = bytes(random(12))
        self.suggested_port = internal_port if suggested_port is None else suggested_port
        self.suggested_address = suggested_address

    def _request(self, lifetime: int) -> bytes:
        return map_request(
            lifetime=lifetime,
            client_address=self.client_address,
            nonce=self.nonce,
            transport=self.transport,
            internal_port=self.internal_port,
            suggested_port=self.suggested_port,
            suggested_address=self.suggested_address,
        )

    def _jitter(self) -> float:
        """1 + RAND, RAND uniform in [-0.1, +0.1] from two random bytes."""
        return 0.9 + 0.2 * int.from_bytes(self.random(2), "big") / 0xFFFF

    def _first_interval(self) -> float:
        return self._jitter() * IRT

    def _next_interval(self, previous: float) -> float:
        return self._jitter() * min(2 * previous, MRT)

    def _reply(self, data: bytes, now: float) -> None:
        reply = response_untrusted(data)
        if reply.version == 0:
            self.heard = True
            self._refused("the gateway speaks NAT-PMP only (PCP UNSUPP_VERSION)", 1, unsupported=True)
            return
        if reply.opcode == OP_ANNOUNCE:
            if self._check_epoch(reply.epoch, now) and self.state is MapState.MAPPED:
                self._renew(now)  # the gateway restarted and lost our mapping (RFC 6887 §14.1)
            return
        if reply.result == 0 and (
            reply.nonce != self.nonce or reply.internal_port != self.internal_port or reply.transport != self.transport
        ):
            raise PortMapError("a MAP answer for another nonce, port or protocol")
        if reply.result != 0 and reply.nonce != self.nonce:
            raise PortMapError("an error answer for another nonce")
        self.heard = True
        restarted = self._check_epoch(reply.epoch, now)
        if reply.result != 0:
            name = RESULTS.get(reply.result, "unknown result")
            self._refused(f"PCP result {reply.result} ({name})", reply.result, reply.result in UNSUPPORTED)
        elif self.state is MapState.REMOVING:
            self._removed(confirmed=reply.lifetime == 0)
        elif self.state is MapState.MAPPED:
            if restarted:
                self._renew(now)
        elif reply.lifetime == 0 or reply.external_port == 0 or reply.external_address is None:
            self._refused("PCP granted no port or no lifetime", None, unsupported=False)
        else:
            self.suggested_port = reply.external_port
            self.suggested_address = reply.external_address
            self._granted(reply.external_address, reply.external_port, reply.lifetime, now)
