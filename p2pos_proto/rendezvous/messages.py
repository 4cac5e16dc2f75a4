"""Rendezvous messages (spec/rendezvous.md §3): the plaintext of the records between a peer and
a rendezvous node.

Every message is ``u8 type | u32 txid | body``.  A request's ``txid`` is chosen by the peer and
echoed in the answer, so a peer that retries a request (records are not retransmitted) matches
answers to requests and the node answers a repeated request again.  Addresses are
``u8 family (4 or 6) | address (4 or 16 bytes) | u16 port``; peer ids are the 32-byte Ed25519
keys of identity.md §1; RELAYS carries URLs (``u8 count | count x (u8 length | UTF-8)``).
REGISTER and LOOKUP may end with the sender's traits (its NAT profile and round trip to the node),
FOUND and INTRODUCTION with the peer's traits and the punch ticket (spec/rendezvous.md §3.5,
spec/punch.md §7); FRESH tells one side of an introduction the other's fresh mapping (§4.6).
``decode_untrusted`` refuses trailing bytes, short bodies, unknown families,
too many candidates or URLs, empty or non-UTF-8 URLs, a malformed profile with
``RemoteProtocolError(MALFORMED_MESSAGE)``; an unknown message type is ``None`` (ignored, so
later versions can add messages).
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import struct
from typing import Final

from ..errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from ..nat.profile import WIRE_LEN as PROFILE_LEN
from ..nat.profile import NatProfile, ProfileError, decode_profile_untrusted

PEER_ID_LEN: Final = 32
RESET_TOKEN_LEN: Final = 16
#: The most candidate addresses one message carries (a peer's interfaces, mapped addresses).
MAX_CANDIDATES: Final = 16
#: The longest ERROR reason, in UTF-8 bytes.
MAX_REASON: Final = 255
#: The most relay URLs one RELAYS message offers, and the longest URL in UTF-8 bytes.
MAX_RELAYS: Final = 8
MAX_URL: Final = 255

#: The punch ticket a node hands both sides of an introduction (spec/punch.md §5), and the
#: ticket id that names it in a FRESH (its first 8 bytes, spec/rendezvous.md §4.6).
TICKET_LEN: Final = 16
TICKET_ID_LEN: Final = 8

Address = tuple[str, int]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Traits:
    """What a peer says of itself for hole punching (spec/rendezvous.md §3.5): its NAT's profile and its
    round trip to the node in milliseconds (0: not known; at most 65535)."""

    profile: NatProfile
    rtt_ms: int = 0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Punch:
    """What an introduction gives each side for hole punching (spec/rendezvous.md §3.5): the other
    side's traits and a ticket both sides share (spec/punch.md §5)."""

    traits: Traits
    ticket: bytes


class MessageType(enum.IntEnum):
    REGISTER = 0x01
    REGISTERED = 0x02
    LOOKUP = 0x03
    FOUND = 0x04
    NOT_FOUND = 0x05
    INTRODUCTION = 0x06
    UNREGISTER = 0x07
    UNREGISTERED = 0x08
    ERROR = 0x09
    RELAYS = 0x0A
    FRESH = 0x0B


class RendezvousError(enum.IntEnum):
    """The codes of an ERROR message."""

    RATE_LIMITED = 0x01
    NOT_REGISTERED = 0x02
    MALFORMED = 0x03


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Register:
    txid: int
    lease: int  # seconds asked for
    candidates: tuple[Address, ...] = ()
    traits: Traits | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Registered:
    txid: int
    lease: int  # seconds granted
    observed: Address
    reset_token: bytes


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Lookup:
    txid: int
    peer_id: bytes
    introduce: bool
    candidates: tuple[Address, ...] = ()
    traits: Traits | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Found:
    txid: int
    peer_id: bytes
    observed: Address
    candidates: tuple[Address, ...] = ()
    punch: Punch | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class NotFound:
    txid: int
    peer_id: bytes


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Introduction:
    txid: int
    peer_id: bytes  # the peer that asked
    observed: Address
    candidates: tuple[Address, ...] = ()
    punch: Punch | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Unregister:
    txid: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Unregistered:
    txid: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Error:
    txid: int
    code: int
    reason: str = ""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Relays:
    """The relays the node offers its peers (spec/rendezvous.md §4.5): ``ws://`` or ``wss://`` URLs."""

    txid: int
    urls: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Fresh:
    """A side of an introduction took a fresh mapping (spec/rendezvous.md §4.6, spec/punch.md §3.4): the
    node saw its fresh Binding from ``observed``.  ``txid`` is the introduction's (the LOOKUP's);
    ``ticket_id`` the ticket's first 8 bytes, which name the punch."""

    txid: int
    peer_id: bytes  # the side that took the mapping
    observed: Address
    ticket_id: bytes


Message = (
    Register
    | Registered
    | Lookup
    | Found
    | NotFound
    | Introduction
    | Unregister
    | Unregistered
    | Error
    | Relays
    | Fresh
)

_HEAD = struct.Struct(">BI")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")


def relay_url_ok(url: str) -> bool:
    """Whether ``url`` is one a RELAYS may offer: ``ws://`` or ``wss://`` with a host (rendezvous.md §4.5)."""
    for scheme in ("ws://", "wss://"):
        if url.startswith(scheme):
            rest = url[len(scheme) :]
            return bool(rest) and not rest.startswith(("/", ":")) and not any(c.isspace() for c in url)
    return False


# -- encoding --------------------------------------------------------------------------------


def _address(addr: Address) -> bytes:
    host, port = addr
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise LocalProtocolError(f"not an IP address: {host!r}") from None
    if not 0 <= port <= 0xFFFF:
        raise LocalProtocolError(f"port {port} out of range")
    return bytes((ip.version,)) + ip.packed + _U16.pack(port)


def _candidates(candidates: tuple[Address, ...]) -> bytes:
    if len(candidates) > MAX_CANDIDATES:
        raise LocalProtocolError(f"{len(candidates)} candidates, at most {MAX_CANDIDATES}")
    return bytes((len(candidates),)) + b"".join(_address(c) for c in candidates)


def _traits(traits: Traits | None) -> bytes:
    if traits is None:
        return b""
    if not 0 <= traits.rtt_ms <= 0xFFFF:
        raise LocalProtocolError(f"a round trip of {traits.rtt_ms} ms does not fit a u16")
    return traits.profile.encode() + _U16.pack(traits.rtt_ms)


def _punch(punch: Punch | None) -> bytes:
    if punch is None:
        return b""
    if len(punch.ticket) != TICKET_LEN:
        raise LocalProtocolError(f"a punch ticket is {TICKET_LEN} bytes")
    return _traits(punch.traits) + punch.ticket


def _peer_id(peer_id: bytes) -> bytes:
    if len(peer_id) != PEER_ID_LEN:
        raise LocalProtocolError(f"a peer id is {PEER_ID_LEN} bytes, not {len(peer_id)}")
    return bytes(peer_id)


def encode(message: Message) -> bytes:
    """The bytes of ``message``; ``LocalProtocolError`` for a value that does not fit."""
    if not 0 <= message.txid <= 0xFFFF_FFFF:
        raise LocalProtocolError(f"txid {message.txid} does not fit a u32")
    match message:
        case Register(lease=lease, candidates=candidates, traits=traits):
            body = _u32(lease) + _candidates(candidates) + _traits(traits)
            kind = MessageType.REGISTER
        case Registered(lease=lease, observed=observed, reset_token=token):
            if len(token) != RESET_TOKEN_LEN:
                raise LocalProtocolError(f"a reset token is {RESET_TOKEN_LEN} bytes")
            body = _u32(lease) + _address(observed) + token
            kind = MessageType.REGISTERED
        case Lookup(peer_id=peer_id, introduce=introduce, candidates=candidates, traits=traits):
            body = _peer_id(peer_id) + bytes((int(introduce),)) + _candidates(candidates) + _traits(traits)
            kind = MessageType.LOOKUP
        case Found(peer_id=peer_id, observed=observed, candidates=candidates, punch=punch):
            body = _peer_id(peer_id) + _address(observed) + _candidates(candidates) + _punch(punch)
            kind = MessageType.FOUND
        case NotFound(peer_id=peer_id):
            body, kind = _peer_id(peer_id), MessageType.NOT_FOUND
        case Introduction(peer_id=peer_id, observed=observed, candidates=candidates, punch=punch):
            body = _peer_id(peer_id) + _address(observed) + _candidates(candidates) + _punch(punch)
            kind = MessageType.INTRODUCTION
        case Unregister():
            body, kind = b"", MessageType.UNREGISTER
        case Unregistered():
            body, kind = b"", MessageType.UNREGISTERED
        case Error(code=code, reason=reason):
            text = reason.encode()
            if len(text) > MAX_REASON or not 0 <= code <= 0xFFFF:
                raise LocalProtocolError("an ERROR's code must fit a u16 and its reason 255 bytes")
            body = _U16.pack(code) + bytes((len(text),)) + text
            kind = MessageType.ERROR
        case Relays(urls=urls):
            body, kind = _urls(urls), MessageType.RELAYS
        case Fresh(peer_id=peer_id, observed=observed, ticket_id=ticket_id):
            if len(ticket_id) != TICKET_ID_LEN:
                raise LocalProtocolError(f"a ticket id is {TICKET_ID_LEN} bytes")
            body, kind = _peer_id(peer_id) + _address(observed) + bytes(ticket_id), MessageType.FRESH
    return _HEAD.pack(kind, message.txid) + body


def _urls(urls: tuple[str, ...]) -> bytes:
    if len(urls) > MAX_RELAYS:
        raise LocalProtocolError(f"at most {MAX_RELAYS} relay URLs in a RELAYS")
    out = bytearray((len(urls),))
    for url in urls:
        text = url.encode()
        if not 1 <= len(text) <= MAX_URL:
            raise LocalProtocolError(f"a relay URL is 1..{MAX_URL} bytes of UTF-8")
        out += bytes((len(text),)) + text
    return bytes(out)


def _u32(value: int) -> bytes:
    if not 0 <= value <= 0xFFFF_FFFF:
        raise LocalProtocolError(f"{value} does not fit a u32")
    return _U32.pack(value)


# -- decoding --------------------------------------------------------------------------------


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise _malformed("message too short")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def byte(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(_U16.unpack(self.take(2))[0])

    def u32(self) -> int:
        return int(_U32.unpack(self.take(4))[0])

    def address(self) -> Address:
        family = self.byte()
        if family == 4:
            host = str(ipaddress.IPv4Address(self.take(4)))
        elif family == 6:
            host = str(ipaddress.IPv6Address(self.take(16)))
        else:
            raise _malformed(f"unknown address family {family}")
        return host, self.u16()

    def candidates(self) -> tuple[Address, ...]:
        count = self.byte()
        if count > MAX_CANDIDATES:
            raise _malformed(f"{count} candidates, at most {MAX_CANDIDATES}")
        return tuple(self.address() for _ in range(count))

    def traits(self) -> Traits | None:
        """Optional traits at the end of a body: absent, or exactly their 7 bytes (§3.5)."""
        left = len(self.data) - self.pos
        if left == 0:
            return None
        if left != PROFILE_LEN + 2:
            raise _malformed(f"{left} bytes after the candidates: traits are {PROFILE_LEN + 2}")
        return self._traits()

    def punch(self) -> Punch | None:
        """An optional punch at the end of a body: absent, or exactly its 23 bytes (§3.5)."""
        left = len(self.data) - self.pos
        if left == 0:
            return None
        if left != PROFILE_LEN + 2 + TICKET_LEN:
            raise _malformed(f"{left} bytes after the candidates: a punch is {PROFILE_LEN + 2 + TICKET_LEN}")
        traits = self._traits()
        return Punch(traits=traits, ticket=self.take(TICKET_LEN))

    def _traits(self) -> Traits:
        try:
            profile = decode_profile_untrusted(self.take(PROFILE_LEN))
        except ProfileError as exc:
            raise _malformed(str(exc)) from None
        return Traits(profile=profile, rtt_ms=self.u16())

    def end(self) -> None:
        if self.pos != len(self.data):
            raise _malformed(f"{len(self.data) - self.pos} bytes after the message")


def _malformed(why: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"malformed rendezvous message: {why}", ErrorCode.MALFORMED_MESSAGE)


def decode_untrusted(data: bytes) -> Message | None:
    """The message in ``data``; None for an unknown type; ``RemoteProtocolError`` if malformed."""
    r = _Reader(bytes(data))
    kind, txid = r.byte(), r.u32()
    message: Message
    if kind == MessageType.REGISTER:
        message = Register(txid=txid, lease=r.u32(), candidates=r.candidates(), traits=r.traits())
    elif kind == MessageType.REGISTERED:
        message = Registered(txid=txid, lease=r.u32(), observed=r.address(), reset_token=r.take(RESET_TOKEN_LEN))
    elif kind == MessageType.LOOKUP:
        peer_id, flags = r.take(PEER_ID_LEN), r.byte()
        if flags > 1:
            raise _malformed(f"unknown LOOKUP flags 0x{flags:02x}")
        message = Lookup(
            txid=txid, peer_id=peer_id, introduce=bool(flags), candidates=r.candidates(), traits=r.traits()
        )
    elif kind == MessageType.FOUND:
        peer_id, observed, candidates = r.take(PEER_ID_LEN), r.address(), r.candidates()
        message = Found(txid=txid, peer_id=peer_id, observed=observed, candidates=candidates, punch=r.punch())
    elif kind == MessageType.NOT_FOUND:
        message = NotFound(txid=txid, peer_id=r.take(PEER_ID_LEN))
    elif kind == MessageType.INTRODUCTION:
        peer_id, observed, candidates = r.take(PEER_ID_LEN), r.address(), r.candidates()
        message = Introduction(txid=txid, peer_id=peer_id, observed=observed, candidates=candidates, punch=r.punch())
    elif kind == MessageType.UNREGISTER:
        message = Unregister(txid=txid)
    elif kind == MessageType.UNREGISTERED:
        message = Unregistered(txid=txid)
    elif kind == MessageType.ERROR:
        code, length = r.u16(), r.byte()
        try:
            reason = r.take(length).decode()
        except UnicodeDecodeError:
            raise _malformed("ERROR reason is not UTF-8") from None
        message = Error(txid=txid, code=code, reason=reason)
    elif kind == MessageType.RELAYS:
        count = r.byte()
        if count > MAX_RELAYS:
            raise _malformed(f"{count} relay URLs, at most {MAX_RELAYS}")
        urls = []
        for _ in range(count):
            length = r.byte()
            if length == 0:
                raise _malformed("an empty relay URL")
            try:
                urls.append(r.take(length).decode())
            except UnicodeDecodeError:
                raise _malformed("a relay URL is not UTF-8") from None
        message = Relays(txid=txid, urls=tuple(urls))
    elif kind == MessageType.FRESH:
        peer_id, observed = r.take(PEER_ID_LEN), r.address()
        message = Fresh(txid=txid, peer_id=peer_id, observed=observed, ticket_id=r.take(TICKET_ID_LEN))
    else:
        return None
    r.end()
    return message
