"""Packet layouts on a datagram path (spec/record.md §2, spec/handshake.md §4).

All integers are big-endian except the AEAD nonce, which follows Noise.

    INIT      u8 0x04 | u8 pattern | u32 sender_index | noise message 1
    RESPONSE  u8 0x05 | u32 sender_index | u32 receiver_index | noise message 2
    FINISH    u8 0x06 | u32 receiver_index | noise message 3 (XX only)
    DATA      u8 0x07 | u32 receiver_index | u8 epoch | u64 counter | ciphertext
    KEEPALIVE u8 0x08 | (same header as DATA) | ciphertext of an empty plaintext
    CLOSE     u8 0x09 | (same header as DATA) | ciphertext of u16 code | reason
    CONFIRM   u8 0x0a | (same header as DATA) | ciphertext of the IK initiator's SAS nonce

Every type lies in 4-15, the first-byte range RFC 7983 (as updated by RFC 9443)
leaves free, so p2pos shares a UDP socket with STUN, TURN, DTLS and QUIC
(spec/session.md §4.1, ``endpoint/demux.py``); 0x0b-0x0f are unassigned.
"""

from __future__ import annotations

import dataclasses
import enum
import struct

from ..errors import ErrorCode, RemoteProtocolError
from ..handshake.noise import Pattern


class PacketType(enum.IntEnum):
    """The first byte of every p2pos packet (spec/README.md §3), inside 4-15 (spec/session.md §4.1)."""

    INIT = 0x04
    RESPONSE = 0x05
    FINISH = 0x06
    DATA = 0x07
    KEEPALIVE = 0x08
    CLOSE = 0x09
    CONFIRM = 0x0A


RECORD_TYPES = frozenset({PacketType.DATA, PacketType.KEEPALIVE, PacketType.CLOSE, PacketType.CONFIRM})
PATTERN_CODES = {Pattern.XX: 0x01, Pattern.IK: 0x02}
_PATTERN_BY_CODE = {v: k for k, v in PATTERN_CODES.items()}

INIT_HEADER = struct.Struct(">BBI")
RESPONSE_HEADER = struct.Struct(">BII")
FINISH_HEADER = struct.Struct(">BI")
RECORD_HEADER = struct.Struct(">BIBQ")
#: Longest noise message p2pos sends or accepts (Noise caps messages at 65535).
MAX_HANDSHAKE_MESSAGE = 65535 - RESPONSE_HEADER.size


@dataclasses.dataclass(frozen=True, slots=True)
class HandshakePacket:
    """A parsed INIT, RESPONSE or FINISH packet.  Indices not carried are 0."""

    type: PacketType
    pattern: Pattern | None
    sender_index: int
    receiver_index: int
    message: bytes


def encode_init(pattern: Pattern, sender_index: int, message: bytes) -> bytes:
    return INIT_HEADER.pack(PacketType.INIT, PATTERN_CODES[pattern], sender_index) + message


def encode_response(sender_index: int, receiver_index: int, message: bytes) -> bytes:
    return RESPONSE_HEADER.pack(PacketType.RESPONSE, sender_index, receiver_index) + message


def encode_finish(receiver_index: int, message: bytes) -> bytes:
    return FINISH_HEADER.pack(PacketType.FINISH, receiver_index) + message


def packet_type_untrusted(data: bytes) -> PacketType:
    if not data:
        raise RemoteProtocolError("empty datagram", ErrorCode.MALFORMED_MESSAGE)
    try:
        return PacketType(data[0])
    except ValueError:
        raise RemoteProtocolError(f"unknown packet type 0x{data[0]:02x}", ErrorCode.MALFORMED_MESSAGE) from None


def parse_handshake_untrusted(data: bytes) -> HandshakePacket:
    """Parse an INIT, RESPONSE or FINISH packet; raises RemoteProtocolError."""
    ptype = packet_type_untrusted(data)
    if len(data) > MAX_HANDSHAKE_MESSAGE + RESPONSE_HEADER.size:
        raise RemoteProtocolError("handshake packet too long", ErrorCode.MALFORMED_MESSAGE)
    if ptype is PacketType.INIT:
        if len(data) < INIT_HEADER.size:
            raise RemoteProtocolError("truncated INIT", ErrorCode.MALFORMED_MESSAGE)
        _, code, sender = INIT_HEADER.unpack_from(data)
        pattern = _PATTERN_BY_CODE.get(code)
        if pattern is None:
            raise RemoteProtocolError(f"unknown pattern code {code}", ErrorCode.UNSUPPORTED_VERSION)
        return HandshakePacket(ptype, pattern, sender, 0, data[INIT_HEADER.size :])
    if ptype is PacketType.RESPONSE:
        if len(data) < RESPONSE_HEADER.size:
            raise RemoteProtocolError("truncated RESPONSE", ErrorCode.MALFORMED_MESSAGE)
        _, sender, receiver = RESPONSE_HEADER.unpack_from(data)
        return HandshakePacket(ptype, None, sender, receiver, data[RESPONSE_HEADER.size :])
    if ptype is PacketType.FINISH:
        if len(data) < FINISH_HEADER.size:
            raise RemoteProtocolError("truncated FINISH", ErrorCode.MALFORMED_MESSAGE)
        _, receiver = FINISH_HEADER.unpack_from(data)
        return HandshakePacket(ptype, None, 0, receiver, data[FINISH_HEADER.size :])
    raise RemoteProtocolError("not a handshake packet", ErrorCode.MALFORMED_MESSAGE)


def receiver_index_untrusted(data: bytes) -> int | None:
    """The receiver index a packet is addressed to, or None for INIT (and for garbage)."""
    if len(data) < 5:
        return None
    ptype = data[0]
    # Byte by byte: in the compiled core, no slice and no int.from_bytes call per datagram.
    if ptype == PacketType.RESPONSE:
        return (data[5] << 24 | data[6] << 16 | data[7] << 8 | data[8]) if len(data) >= 9 else None
    if ptype == PacketType.FINISH or ptype in RECORD_TYPES:
        return data[1] << 24 | data[2] << 16 | data[3] << 8 | data[4]
    return None
