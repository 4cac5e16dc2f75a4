"""Relay messages (spec/relay.md §3): the payload of one binary WebSocket message.

Every message is ``u8 type || body``; peer ids are the 32-byte Ed25519 keys of identity.md §1,
pair ids are ``u32`` big-endian numbers the relay chooses per link.  ``decode_untrusted`` raises
only ``RemoteProtocolError(MALFORMED_MESSAGE)``: an unknown type, a short or long body, a record
whose first byte is not a p2pos packet type (4-15) or that is longer than the limit.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from typing import Final

from ..errors import ErrorCode, LocalProtocolError, RemoteProtocolError

PEER_ID_LEN: Final = 32
NONCE_LEN: Final = 32
SIG_LEN: Final = 64
#: The longest relay name a client signs (REL-2.4), in UTF-8 bytes.
MAX_NAME: Final = 255
#: The longest record any relay accepts (REL-3.3); a relay announces its own limit in CHALLENGE.
MAX_RECORD: Final = 65535
#: The longest message: SENDTO with the longest record (SEND/RECV are 28 bytes shorter).
MAX_MESSAGE: Final = 1 + PEER_ID_LEN + MAX_RECORD
#: First bytes of a p2pos datagram carried by the relay (session.md §4.1: packet types 4-15).
RECORD_FIRST_MIN: Final = 4
RECORD_FIRST_MAX: Final = 15


class MessageType(enum.IntEnum):
    CHALLENGE = 0x01
    AUTH = 0x02
    WELCOME = 0x03
    WANT = 0x04
    UNWANT = 0x05
    PAIRED = 0x06
    UNPAIRED = 0x07
    SEND = 0x08
    RECV = 0x09
    SENDTO = 0x0A


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    """Relay → client, first message on a link: sign ``nonce`` (REL-2.2); the relay's limits."""

    nonce: bytes
    max_record: int
    max_wants: int
    rate: int  # bytes a second this link may send (REL-5)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Auth:
    """Client → relay: ``signature`` over ``nonce || u8 len(name) || name`` (REL-2.3)."""

    peer_id: bytes
    signature: bytes
    name: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Welcome:
    """Relay → client: the link is authenticated as ``peer_id``."""

    peer_id: bytes


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Want:
    peer_id: bytes


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Unwant:
    peer_id: bytes


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Paired:
    pair: int
    peer_id: bytes


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Unpaired:
    pair: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Send:
    pair: int
    record: bytes


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Recv:
    pair: int
    record: bytes


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SendTo:
    """Client → relay: a record for a WANTed peer, paired or not yet (REL-4.8: held until PAIRED)."""

    peer_id: bytes
    record: bytes


Message = Challenge | Auth | Welcome | Want | Unwant | Paired | Unpaired | Send | Recv | SendTo

_U32 = struct.Struct(">I")
_CHALLENGE = struct.Struct(">32sIHI")


def _peer(peer_id: bytes) -> bytes:
    if len(peer_id) != PEER_ID_LEN:
        raise LocalProtocolError("a peer id is 32 bytes")
    return peer_id


def _pair(pair: int) -> bytes:
    if not 0 <= pair <= 0xFFFFFFFF:
        raise LocalProtocolError("a pair id is a u32")
    return _U32.pack(pair)


def valid_record(record: bytes | memoryview, max_record: int = MAX_RECORD) -> bool:
    """A record the relay carries: 1..max_record bytes, first byte a p2pos packet type (REL-3.3)."""
    return 0 < len(record) <= max_record and RECORD_FIRST_MIN <= record[0] <= RECORD_FIRST_MAX


def record_head(kind: MessageType, pair: int) -> bytes:
    """The 5 bytes before the record in a SEND or RECV message: its type and pair id."""
    return bytes([kind]) + _pair(pair)


def sendto_head(peer_id: bytes) -> bytes:
    """The 33 bytes before the record in a SENDTO message: its type and the peer id."""
    return bytes([MessageType.SENDTO]) + _peer(peer_id)


def record_view_untrusted(data: bytes | memoryview, max_record: int = MAX_RECORD) -> tuple[int, memoryview]:
    """A SEND or RECV message's pair id and its record as a view into ``data`` (nothing copied:
    the relay forwards it behind a new head).  Raises ``RemoteProtocolError`` as ``decode_untrusted``."""
    if len(data) < 6:
        raise _bad("no record")
    record = memoryview(data)[5:]
    if not valid_record(record, max_record):
        raise _bad("record too long or not a p2pos packet")
    return _U32.unpack_from(data, 1)[0], record


def encode(message: Message) -> bytes:
    """The bytes of one WebSocket binary message.  Raises ``LocalProtocolError`` for bad fields."""
    match message:
        case Challenge(nonce=nonce, max_record=max_record, max_wants=max_wants, rate=rate):
            if len(nonce) != NONCE_LEN or not 0 < max_record <= MAX_RECORD or not 0 <= max_wants <= 0xFFFF:
                raise LocalProtocolError("bad CHALLENGE fields")
            if not 0 <= rate <= 0xFFFFFFFF:
                raise LocalProtocolError("bad CHALLENGE rate")
            return bytes([MessageType.CHALLENGE]) + _CHALLENGE.pack(nonce, max_record, max_wants, rate)
        case Auth(peer_id=peer_id, signature=signature, name=name):
            raw = name.encode()
            if len(signature) != SIG_LEN or not 0 < len(raw) <= MAX_NAME:
                raise LocalProtocolError("bad AUTH fields")
            return bytes([MessageType.AUTH]) + _peer(peer_id) + signature + bytes([len(raw)]) + raw
        case Welcome(peer_id=peer_id):
            return bytes([MessageType.WELCOME]) + _peer(peer_id)
        case Want(peer_id=peer_id):
            return bytes([MessageType.WANT]) + _peer(peer_id)
        case Unwant(peer_id=peer_id):
            return bytes([MessageType.UNWANT]) + _peer(peer_id)
        case Paired(pair=pair, peer_id=peer_id):
            return bytes([MessageType.PAIRED]) + _pair(pair) + _peer(peer_id)
        case Unpaired(pair=pair):
            return bytes([MessageType.UNPAIRED]) + _pair(pair)
        case Send(pair=pair, record=record):
            if not valid_record(record):
                raise LocalProtocolError("a relayed record is 1-65535 bytes starting with 4-15")
            return record_head(MessageType.SEND, pair) + record
        case Recv(pair=pair, record=record):
            if not valid_record(record):
                raise LocalProtocolError("a relayed record is 1-65535 bytes starting with 4-15")
            return record_head(MessageType.RECV, pair) + record
        case SendTo(peer_id=peer_id, record=record):
            if not valid_record(record):
                raise LocalProtocolError("a relayed record is 1-65535 bytes starting with 4-15")
            return sendto_head(peer_id) + record
    raise LocalProtocolError(f"not a relay message: {message!r}")  # pragma: no cover


def _bad(why: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"relay message: {why}", ErrorCode.MALFORMED_MESSAGE)


def decode_untrusted(data: bytes | memoryview, max_record: int = MAX_RECORD) -> Message:
    """Parse one message; raises only ``RemoteProtocolError(MALFORMED_MESSAGE)`` (REL-3.2).
    ``data`` may be a view of a read buffer: what the message keeps (a record, a peer id) is copied."""
    if not data:
        raise _bad("empty")
    kind = data[0]
    if kind in (MessageType.SEND, MessageType.RECV):  # the bulk: one copy of the record, not two
        pair, view = record_view_untrusted(data, max_record)
        record = bytes(view)
        return Send(pair=pair, record=record) if kind == MessageType.SEND else Recv(pair=pair, record=record)
    body = bytes(data[1:])
    if kind == MessageType.CHALLENGE:
        if len(body) != _CHALLENGE.size:
            raise _bad("CHALLENGE is 42 bytes")
        nonce, max_rec, max_wants, rate = _CHALLENGE.unpack(body)
        if max_rec == 0 or max_rec > MAX_RECORD:
            raise _bad("CHALLENGE max_record out of range")
        return Challenge(nonce=nonce, max_record=max_rec, max_wants=max_wants, rate=rate)
    if kind == MessageType.AUTH:
        if len(body) < PEER_ID_LEN + SIG_LEN + 2 or len(body) != PEER_ID_LEN + SIG_LEN + 1 + body[96]:
            raise _bad("AUTH length")
        try:
            name = body[97:].decode()
        except UnicodeDecodeError:
            raise _bad("AUTH name is not UTF-8") from None
        return Auth(peer_id=body[:32], signature=body[32:96], name=name)
    if kind in (MessageType.WELCOME, MessageType.WANT, MessageType.UNWANT):
        if len(body) != PEER_ID_LEN:
            raise _bad("a peer id is 32 bytes")
        if kind == MessageType.WELCOME:
            return Welcome(peer_id=body)
        return Want(peer_id=body) if kind == MessageType.WANT else Unwant(peer_id=body)
    if kind == MessageType.PAIRED:
        if len(body) != 4 + PEER_ID_LEN:
            raise _bad("PAIRED is 36 bytes")
        return Paired(pair=_U32.unpack_from(body)[0], peer_id=body[4:])
    if kind == MessageType.UNPAIRED:
        if len(body) != 4:
            raise _bad("UNPAIRED is 4 bytes")
        return Unpaired(pair=_U32.unpack(body)[0])
    if kind == MessageType.SENDTO:
        if len(body) <= PEER_ID_LEN:
            raise _bad("SENDTO without a record")
        record = body[PEER_ID_LEN:]
        if not valid_record(record, max_record):
            raise _bad("record too long or not a p2pos packet")
        return SendTo(peer_id=body[:PEER_ID_LEN], record=record)
    raise _bad(f"unknown type {kind}")


def auth_message(nonce: bytes, name: str) -> bytes:
    """What a client signs under domain ``p2pos/relay-auth`` (REL-2.3): ``nonce || u8 len || name``."""
    raw = name.encode()
    if len(nonce) != NONCE_LEN or not 0 < len(raw) <= MAX_NAME:
        raise LocalProtocolError("bad relay auth fields")
    return nonce + bytes([len(raw)]) + raw


#: Signature domain of relay authentication (identity.md §3.1).
DOMAIN_RELAY_AUTH: Final = b"p2pos/relay-auth"
