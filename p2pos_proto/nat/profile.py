"""What a side knows of its own NAT, as the punching plan needs it (spec/punch.md §2).

Behaviour discovery (spec/nat.md) measures it; the rendezvous introduction carries it to the
peer (spec/punch.md §2.2), so that both sides of a pair derive the same plan from the same two
profiles (``punch_plan.plan``).  A profile is about one address family: IPv6 has no translation
and needs none of it (spec/punch.md §3.7).

The names follow RFC 4787 and RFC 5780: *mapping* is how the NAT picks the public address and
port of an inside socket (one for every destination, one per destination address, one per
destination address and port); *filtering* is which outside sources may send to that mapping;
*allocation* is how a new mapping's public port is chosen (the inside port kept, the next port
by a fixed step, or random).
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from typing import Final

from ..errors import ErrorCode, LocalProtocolError, RemoteProtocolError


class Mapping(enum.IntEnum):
    """RFC 4787 §4.1; ``NONE``: no translation at all (the address is the host's own)."""

    UNKNOWN = 0
    NONE = 1
    ENDPOINT_INDEPENDENT = 2
    ADDRESS_DEPENDENT = 3
    ADDRESS_AND_PORT_DEPENDENT = 4


class Filtering(enum.IntEnum):
    """RFC 4787 §5; ``NONE``: nothing filtered (a public host without a firewall)."""

    UNKNOWN = 0
    NONE = 1
    ENDPOINT_INDEPENDENT = 2
    ADDRESS_DEPENDENT = 3
    ADDRESS_AND_PORT_DEPENDENT = 4


class Allocation(enum.IntEnum):
    """How a new mapping's public port is picked (RFC 4787 §4.2.1, RFC 5780 §4.3's follow-ups)."""

    UNKNOWN = 0
    PRESERVING = 1
    SEQUENTIAL = 2
    RANDOM = 3


class ProfileError(RemoteProtocolError):
    """A malformed profile on the wire (spec/punch.md §2.2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ErrorCode.MALFORMED_MESSAGE)


#: ``mapping << 4 | filtering``, allocation, delta (signed), flags: spec/punch.md §2.2.
_WIRE: Final = struct.Struct(">BBhB")
WIRE_LEN: Final = _WIRE.size
#: Flags (spec/punch.md §2.2).
FLAG_PORT_MAPPED: Final = 0x01
FLAG_UDP_BLOCKED: Final = 0x02
FLAG_HAIRPIN: Final = 0x04
_FLAGS: Final = FLAG_PORT_MAPPED | FLAG_UDP_BLOCKED | FLAG_HAIRPIN
#: The largest step a sequential allocator is believed to take (spec/punch.md §2.1).
MAX_DELTA: Final = 1024


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class NatProfile:
    """One side's NAT, as measured (UNKNOWN where it was not)."""

    mapping: Mapping = Mapping.UNKNOWN
    filtering: Filtering = Filtering.UNKNOWN
    allocation: Allocation = Allocation.UNKNOWN
    #: The port step of a SEQUENTIAL allocator (may be negative); 0 otherwise.
    delta: int = 0
    #: A port mapping (UPnP, NAT-PMP, PCP) forwards to this side: a candidate anyone may dial.
    port_mapped: bool = False
    #: No UDP passes at all (a firewall): only the relays remain.
    udp_blocked: bool = False
    hairpin: bool = False

    def __post_init__(self) -> None:
        if self.allocation is Allocation.SEQUENTIAL and not (0 < abs(self.delta) <= MAX_DELTA):
            raise LocalProtocolError(f"a sequential allocator's delta must be 1..{MAX_DELTA} in size, got {self.delta}")
        if self.allocation is not Allocation.SEQUENTIAL and self.delta:
            raise LocalProtocolError("only a sequential allocator has a delta")

    @property
    def open(self) -> bool:
        """Anyone may send to the observed address unasked: no filter, an endpoint-independent
        one in front of an endpoint-independent mapping (full cone), or a port mapping."""
        if self.port_mapped:
            return True
        stable = self.mapping in (Mapping.NONE, Mapping.ENDPOINT_INDEPENDENT)
        return stable and self.filtering in (Filtering.NONE, Filtering.ENDPOINT_INDEPENDENT)

    @property
    def stable(self) -> bool:
        """The observed address is this side's address towards every destination (so a peer can aim at it)."""
        return self.mapping in (Mapping.NONE, Mapping.ENDPOINT_INDEPENDENT)

    @property
    def sequential(self) -> bool:
        """A new mapping per destination, at the next port by ``delta``: predictable."""
        return not self.stable and self.allocation is Allocation.SEQUENTIAL

    @property
    def scattering(self) -> bool:
        """A new mapping per destination at an unpredictable port (random, or not known to be otherwise)."""
        return not self.stable and not self.sequential

    def encode(self) -> bytes:
        """The 5-byte wire form (spec/punch.md §2.2)."""
        flags = (
            (FLAG_PORT_MAPPED if self.port_mapped else 0)
            | (FLAG_UDP_BLOCKED if self.udp_blocked else 0)
            | (FLAG_HAIRPIN if self.hairpin else 0)
        )
        return _WIRE.pack(self.mapping << 4 | self.filtering, self.allocation, self.delta, flags)


UNKNOWN_PROFILE: Final = NatProfile()


def decode_profile_untrusted(data: bytes | memoryview) -> NatProfile:
    """A profile from its 5 bytes; ``ProfileError`` for values outside spec/punch.md §2.2."""
    if len(data) != WIRE_LEN:
        raise ProfileError(f"a NAT profile is {WIRE_LEN} bytes, got {len(data)}")
    kinds, allocation, delta, flags = _WIRE.unpack(bytes(data))
    try:
        mapping, filtering, alloc = Mapping(kinds >> 4), Filtering(kinds & 0x0F), Allocation(allocation)
    except ValueError:
        raise ProfileError(f"unknown mapping, filtering or allocation in a NAT profile: {bytes(data).hex()}") from None
    if flags & ~_FLAGS:
        raise ProfileError(f"unknown NAT profile flags 0x{flags:02x}")
    try:
        return NatProfile(
            mapping=mapping,
            filtering=filtering,
            allocation=alloc,
            delta=delta,
            port_mapped=bool(flags & FLAG_PORT_MAPPED),
            udp_blocked=bool(flags & FLAG_UDP_BLOCKED),
            hairpin=bool(flags & FLAG_HAIRPIN),
        )
    except LocalProtocolError as exc:
        raise ProfileError(str(exc)) from None
