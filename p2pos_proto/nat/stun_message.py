"""STUN messages (RFC 8489) with the attributes TURN (RFC 8656) needs: encode, and parse strictly.

A message is ``type(16) || length(16) || magic cookie || transaction id(96)`` followed by
attributes ``type(16) || length(16) || value`` padded to 4 bytes (RFC 8489 §5, §14).
``encode`` adds MESSAGE-INTEGRITY (HMAC-SHA1, §14.5) when given a key,
MESSAGE-INTEGRITY-SHA256 (§14.6) when given a SHA-256 key, and FINGERPRINT
(CRC-32 xor 0x5354554e, §14.7) when asked.  ``decode_untrusted`` checks the header, the
lengths, where MESSAGE-INTEGRITY and FINGERPRINT may stand and the FINGERPRINT value, and
raises ``StunError`` (a ``RemoteProtocolError``) saying what is wrong; the integrity is
checked later with ``Message.integrity_ok(key)`` (or ``integrity_sha256_ok``) once the
caller knows which key applies.  spec/turn.md §2 and spec/nat.md §2 list what p2pos uses;
nat/stun.py answers Binding requests (spec/rendezvous.md §5), nat/stun_client.py asks them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import struct
import zlib
from typing import Final

from ..errors import ErrorCode, RemoteProtocolError

MAGIC_COOKIE: Final = 0x2112A442
HEADER_LEN: Final = 20
#: The largest STUN message p2pos builds or accepts (a UDP payload; also bounds stream buffers).
MAX_MESSAGE: Final = 65535

# Methods (RFC 8489 §18, RFC 8656 §17).
BINDING: Final = 0x001
ALLOCATE: Final = 0x003
REFRESH: Final = 0x004
SEND: Final = 0x006
DATA: Final = 0x007
CREATE_PERMISSION: Final = 0x008
CHANNEL_BIND: Final = 0x009

# Classes.
REQUEST: Final = 0
INDICATION: Final = 1
SUCCESS: Final = 2
ERROR: Final = 3

# Attributes (RFC 8489 §14 and §18, RFC 8656 §18).
MAPPED_ADDRESS: Final = 0x0001
CHANGE_REQUEST: Final = 0x0003  # RFC 5780 §7.2
USERNAME: Final = 0x0006
MESSAGE_INTEGRITY: Final = 0x0008
ERROR_CODE: Final = 0x0009
UNKNOWN_ATTRIBUTES: Final = 0x000A
CHANNEL_NUMBER: Final = 0x000C
LIFETIME: Final = 0x000D
XOR_PEER_ADDRESS: Final = 0x0012
DATA_ATTR: Final = 0x0013
REALM: Final = 0x0014
NONCE: Final = 0x0015
XOR_RELAYED_ADDRESS: Final = 0x0016
REQUESTED_ADDRESS_FAMILY: Final = 0x0017
EVEN_PORT: Final = 0x0018
REQUESTED_TRANSPORT: Final = 0x0019
DONT_FRAGMENT: Final = 0x001A
MESSAGE_INTEGRITY_SHA256: Final = 0x001C
PASSWORD_ALGORITHM: Final = 0x001D
USERHASH: Final = 0x001E
XOR_MAPPED_ADDRESS: Final = 0x0020
RESERVATION_TOKEN: Final = 0x0022
PADDING: Final = 0x0026  # RFC 5780 §7.6
RESPONSE_PORT: Final = 0x0027  # RFC 5780 §7.5
PASSWORD_ALGORITHMS: Final = 0x8002
ALTERNATE_DOMAIN: Final = 0x8003
SOFTWARE: Final = 0x8022
ALTERNATE_SERVER: Final = 0x8023
FINGERPRINT: Final = 0x8028
RESPONSE_ORIGIN: Final = 0x802B  # RFC 5780 §7.3
OTHER_ADDRESS: Final = 0x802C  # RFC 5780 §7.4
#: A rendezvous node's instance (spec/rendezvous.md RDV-5.5): unregistered, in RFC 8489 §18.3's
#: comprehension-optional range assigned by Expert Review, so other STUN clients ignore it.
P2POS_INSTANCE: Final = 0xCF50
#: The size of a P2POS-INSTANCE value: the random 8 bytes a node draws at start (RDV-5.5).
INSTANCE_LEN: Final = 8

#: CHANGE-REQUEST flags (RFC 5780 §7.2): answer from the other IP address, from the other port.
CHANGE_IP: Final = 0x04
CHANGE_PORT: Final = 0x02
#: PASSWORD-ALGORITHM numbers (RFC 8489 §18.5).
PASSWORD_MD5: Final = 0x0001
PASSWORD_SHA256: Final = 0x0002

#: The protocol number REQUESTED-TRANSPORT carries for UDP relaying (RFC 8656 §18.8).
TRANSPORT_UDP: Final = 17
FINGERPRINT_XOR: Final = 0x5354554E
#: Longest USERNAME / REALM / NONCE / SOFTWARE values (RFC 8489 §14.3, §14.9, §14.10, §14.14).
MAX_USERNAME: Final = 513
MAX_TEXT: Final = 763

_HEADER = struct.Struct(">HHI12s")
_ATTR = struct.Struct(">HH")
_U32 = struct.Struct(">I")


class StunError(RemoteProtocolError):
    """A STUN or ChannelData message from the network is malformed (spec/turn.md §2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ErrorCode.MALFORMED_MESSAGE)


def message_type(method: int, klass: int) -> int:
    """The 14-bit message type of ``method`` and ``klass`` (RFC 8489 §5: class bits C1 C0 at bits 8 and 4)."""
    return (
        (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((klass & 1) << 4)
        | ((klass & 2) << 7)
    )


def split_type(mtype: int) -> tuple[int, int]:
    """``(method, class)`` of a message type."""
    method = (mtype & 0x000F) | ((mtype & 0x00E0) >> 1) | ((mtype & 0x3E00) >> 2)
    klass = ((mtype >> 4) & 1) | ((mtype >> 7) & 2)
    return method, klass


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A parsed or to-be-encoded STUN message.

    ``attributes`` keeps the wire order, MESSAGE-INTEGRITY and FINGERPRINT included when
    parsed.  ``raw`` is the whole message as received (empty for one built locally) and
    ``integrity_at`` the offset of MESSAGE-INTEGRITY in it (-1 when absent).
    """

    method: int
    klass: int
    transaction_id: bytes
    attributes: tuple[tuple[int, bytes], ...] = ()
    raw: bytes = b""
    integrity_at: int = -1
    integrity_sha256_at: int = -1

    def get(self, attribute: int) -> bytes | None:
        """The value of the first ``attribute`` before MESSAGE-INTEGRITY(-SHA256) (RFC 8489 §14.5:
        later ones are ignored)."""
        for atype, value in self.attributes:
            if atype == attribute:
                return value
            if atype in (MESSAGE_INTEGRITY, MESSAGE_INTEGRITY_SHA256):
                return None
        return None

    def has(self, attribute: int) -> bool:
        """Whether the message carries ``attribute`` anywhere (FINGERPRINT, the integrity attributes included)."""
        return any(atype == attribute for atype, _ in self.attributes)

    def integrity_ok(self, key: bytes) -> bool:
        """Whether the received MESSAGE-INTEGRITY is the HMAC-SHA1 of the message under ``key``."""
        if self.integrity_at < 0:
            return False
        covered = bytearray(self.raw[: self.integrity_at])
        struct.pack_into(">H", covered, 2, self.integrity_at + 24 - HEADER_LEN)
        want = hmac.new(key, bytes(covered), hashlib.sha1).digest()
        return hmac.compare_digest(want, self.raw[self.integrity_at + 4 : self.integrity_at + 24])

    def integrity_sha256_ok(self, key: bytes) -> bool:
        """Whether the received MESSAGE-INTEGRITY-SHA256 (maybe truncated, RFC 8489 §14.6) holds under ``key``."""
        at = self.integrity_sha256_at
        if at < 0:
            return False
        size = struct.unpack_from(">H", self.raw, at + 2)[0]
        covered = bytearray(self.raw[:at])
        struct.pack_into(">H", covered, 2, at + 4 + size - HEADER_LEN)
        want = hmac.new(key, bytes(covered), hashlib.sha256).digest()[:size]
        return hmac.compare_digest(want, self.raw[at + 4 : at + 4 + size])

    def error(self) -> tuple[int, str] | None:
        """``(code, reason)`` of an ERROR-CODE attribute, or None (raises ``StunError`` if malformed)."""
        value = self.get(ERROR_CODE)
        return None if value is None else decode_error_code_untrusted(value)


def encode(
    method: int,
    klass: int,
    transaction_id: bytes,
    attributes: list[tuple[int, bytes]],
    *,
    key: bytes | None = None,
    key_sha256: bytes | None = None,
    fingerprint: bool = False,
    pad: int = 0,
) -> bytes:
    """The wire form of a message; MESSAGE-INTEGRITY under ``key``, MESSAGE-INTEGRITY-SHA256
    under ``key_sha256`` (32 bytes, untruncated), then FINGERPRINT, are appended last, in that
    order (RFC 8489 §14.5-§14.7).  Padding bytes are ``pad`` (0; RFC 5769's samples use 0x20)."""
    if len(transaction_id) != 12:
        raise ValueError("a STUN transaction id is 12 bytes")
    body = bytearray()
    for atype, value in attributes:
        if len(value) > 0xFFFF:
            raise ValueError(f"attribute 0x{atype:04x} is longer than 65535 bytes")
        body += _ATTR.pack(atype, len(value)) + value + bytes([pad]) * (-len(value) % 4)
    mtype = message_type(method, klass)
    if key is not None:
        head = _HEADER.pack(mtype, len(body) + 24, MAGIC_COOKIE, transaction_id)
        body += _ATTR.pack(MESSAGE_INTEGRITY, 20) + hmac.new(key, head + body, hashlib.sha1).digest()
    if key_sha256 is not None:
        head = _HEADER.pack(mtype, len(body) + 36, MAGIC_COOKIE, transaction_id)
        body += _ATTR.pack(MESSAGE_INTEGRITY_SHA256, 32) + hmac.new(key_sha256, head + body, hashlib.sha256).digest()
    if fingerprint:
        head = _HEADER.pack(mtype, len(body) + 8, MAGIC_COOKIE, transaction_id)
        crc = (zlib.crc32(head + body) ^ FINGERPRINT_XOR) & 0xFFFFFFFF
        body += _ATTR.pack(FINGERPRINT, 4) + _U32.pack(crc)
    if HEADER_LEN + len(body) > MAX_MESSAGE:
        raise ValueError("a STUN message is at most 65535 bytes")
    return _HEADER.pack(mtype, len(body), MAGIC_COOKIE, transaction_id) + bytes(body)


def is_stun(data: bytes) -> bool:
    """Whether ``data`` looks like STUN: two zero top bits and the magic cookie (RFC 8489 §5)."""
    return len(data) >= HEADER_LEN and data[0] < 0x40 and _U32.unpack_from(data, 4)[0] == MAGIC_COOKIE


def binding_request_untrusted(data: bytes) -> Message | None:
    """The Binding request in ``data``, or None for anything else: not STUN, malformed
    (``decode_untrusted`` refuses it), another method or class.  Never raises."""
    try:
        message = decode_untrusted(data)
    except StunError:
        return None
    return message if message.method == BINDING and message.klass == REQUEST else None


def decode_untrusted(data: bytes) -> Message:
    """Parse one whole STUN message; ``StunError`` says what is wrong with a bad one.

    Checked: header (top bits, cookie, length a multiple of 4 equal to what follows),
    attribute lengths, nothing but MESSAGE-INTEGRITY-SHA256 and FINGERPRINT after
    MESSAGE-INTEGRITY, nothing but FINGERPRINT after MESSAGE-INTEGRITY-SHA256, nothing after
    FINGERPRINT, and the FINGERPRINT value.  Padding bytes are not checked (RFC 8489 §14:
    they may be anything, RFC 5769 §2.1 pads with spaces).
    """
    if len(data) < HEADER_LEN:
        raise StunError(f"a STUN message is at least 20 bytes, got {len(data)}")
    mtype, length, cookie, txid = _HEADER.unpack_from(data)
    if mtype & 0xC000:
        raise StunError("the first two bits of a STUN message must be zero")
    if cookie != MAGIC_COOKIE:
        raise StunError(f"bad magic cookie 0x{cookie:08x}")
    if length % 4:
        raise StunError(f"STUN message length {length} is not a multiple of 4")
    if HEADER_LEN + length != len(data):
        raise StunError(f"STUN length says {length} bytes of attributes, {len(data) - HEADER_LEN} follow")
    attributes: list[tuple[int, bytes]] = []
    integrity_at = integrity_sha256_at = -1
    pos = HEADER_LEN
    seen_fingerprint = False
    while pos < len(data):
        if seen_fingerprint:
            raise StunError("an attribute follows FINGERPRINT")
        if pos + 4 > len(data):
            raise StunError(f"truncated attribute header at offset {pos}")
        atype, alen = _ATTR.unpack_from(data, pos)
        end = pos + 4 + alen
        if end > len(data):
            raise StunError(f"attribute 0x{atype:04x} at offset {pos} claims {alen} bytes, {len(data) - pos - 4} left")
        value = bytes(data[pos + 4 : end])
        if integrity_sha256_at >= 0 and atype != FINGERPRINT:
            raise StunError(f"attribute 0x{atype:04x} follows MESSAGE-INTEGRITY-SHA256")
        if integrity_at >= 0 and atype not in (FINGERPRINT, MESSAGE_INTEGRITY_SHA256):
            raise StunError(f"attribute 0x{atype:04x} follows MESSAGE-INTEGRITY")
        if atype == MESSAGE_INTEGRITY:
            if alen != 20:
                raise StunError(f"MESSAGE-INTEGRITY is 20 bytes, got {alen}")
            integrity_at = pos
        elif atype == MESSAGE_INTEGRITY_SHA256:
            if alen % 4 or not 16 <= alen <= 32:
                raise StunError(f"MESSAGE-INTEGRITY-SHA256 is 16 to 32 bytes in steps of 4, got {alen}")
            integrity_sha256_at = pos
        elif atype == FINGERPRINT:
            if alen != 4:
                raise StunError(f"FINGERPRINT is 4 bytes, got {alen}")
            covered = bytearray(data[:pos])
            crc = (zlib.crc32(bytes(covered)) ^ FINGERPRINT_XOR) & 0xFFFFFFFF
            if crc != _U32.unpack(value)[0]:
                raise StunError("FINGERPRINT does not match the message")
            seen_fingerprint = True
        attributes.append((atype, value))
        pos = end + (-alen % 4)
    if pos != len(data):
        raise StunError("the last attribute's padding runs past the message")
    method, klass = split_type(mtype)
    return Message(
        method=method,
        klass=klass,
        transaction_id=bytes(txid),
        attributes=tuple(attributes),
        raw=bytes(data),
        integrity_at=integrity_at,
        integrity_sha256_at=integrity_sha256_at,
    )


def unknown_comprehension_required(message: Message, known: frozenset[int]) -> list[int]:
    """Attribute types below 0x8000 (comprehension-required, RFC 8489 §14) that are not in ``known``."""
    return [atype for atype, _ in message.attributes if atype < 0x8000 and atype not in known]


# -- attribute values ----------------------------------------------------------------


def xor_address(address: tuple[str, int], transaction_id: bytes) -> bytes:
    """An XOR-MAPPED / XOR-PEER / XOR-RELAYED-ADDRESS value (RFC 8489 §14.2)."""
    host, port = address
    ip = ipaddress.ip_address(host)
    family = 0x01 if ip.version == 4 else 0x02
    mask = _U32.pack(MAGIC_COOKIE) + (transaction_id if ip.version == 6 else b"")
    xaddr = bytes(a ^ b for a, b in zip(ip.packed, mask, strict=True))
    return struct.pack(">BBH", 0, family, port ^ (MAGIC_COOKIE >> 16)) + xaddr


def plain_address(address: tuple[str, int]) -> bytes:
    """A MAPPED-ADDRESS-format value (RFC 8489 §14.1): RESPONSE-ORIGIN, OTHER-ADDRESS (RFC 5780 §7.3, §7.4)."""
    host, port = address
    ip = ipaddress.ip_address(host)
    return struct.pack(">BBH", 0, 0x01 if ip.version == 4 else 0x02, port) + ip.packed


def decode_plain_address_untrusted(value: bytes) -> tuple[str, int]:
    """The ``(host, port)`` of a MAPPED-ADDRESS-format value."""
    if len(value) < 4 or (value[1], len(value)) not in ((0x01, 8), (0x02, 20)):
        raise StunError(f"a MAPPED-ADDRESS-format value of {len(value)} bytes")
    return str(ipaddress.ip_address(value[4:])), int(struct.unpack(">H", value[2:4])[0])


def change_request(flags: int) -> bytes:
    """A CHANGE-REQUEST value (RFC 5780 §7.2): ``CHANGE_IP`` and/or ``CHANGE_PORT``, or 0."""
    return _U32.pack(flags & (CHANGE_IP | CHANGE_PORT))


def decode_change_request_untrusted(value: bytes) -> int:
    """The CHANGE_IP / CHANGE_PORT flags of a CHANGE-REQUEST value (other bits ignored)."""
    return decode_u32_untrusted(value, "CHANGE-REQUEST") & (CHANGE_IP | CHANGE_PORT)


def decode_xor_address_untrusted(value: bytes, transaction_id: bytes) -> tuple[str, int]:
    """The ``(host, port)`` of an XOR-*-ADDRESS value."""
    if len(value) < 4:
        raise StunError(f"an address attribute is at least 8 bytes, got {len(value)}")
    family = value[1]
    if (family, len(value)) not in ((0x01, 8), (0x02, 20)):
        raise StunError(f"address family 0x{family:02x} with {len(value)} bytes")
    mask = _U32.pack(MAGIC_COOKIE) + (transaction_id if family == 0x02 else b"")
    raw = bytes(a ^ b for a, b in zip(value[4:], mask, strict=True))
    port = struct.unpack(">H", value[2:4])[0] ^ (MAGIC_COOKIE >> 16)
    return str(ipaddress.ip_address(raw)), port


def u32(value: int) -> bytes:
    """A 4-byte unsigned value (LIFETIME)."""
    return _U32.pack(value)


def decode_u32_untrusted(value: bytes, name: str) -> int:
    """A 4-byte unsigned attribute value."""
    if len(value) != 4:
        raise StunError(f"{name} is 4 bytes, got {len(value)}")
    return int(_U32.unpack(value)[0])


def requested_transport(protocol: int = TRANSPORT_UDP) -> bytes:
    """A REQUESTED-TRANSPORT value (RFC 8656 §18.8): protocol number then 3 reserved bytes."""
    return bytes([protocol, 0, 0, 0])


def channel_number(channel: int) -> bytes:
    """A CHANNEL-NUMBER value (RFC 8656 §18.1): the number then 2 reserved bytes."""
    return struct.pack(">HH", channel, 0)


def error_code(code: int, reason: str) -> bytes:
    """An ERROR-CODE value (RFC 8489 §14.8)."""
    if not 300 <= code <= 699:
        raise ValueError(f"a STUN error code is 300..699, not {code}")
    return struct.pack(">HBB", 0, code // 100, code % 100) + reason.encode()


def decode_error_code_untrusted(value: bytes) -> tuple[int, str]:
    """``(code, reason)`` of an ERROR-CODE value."""
    if len(value) < 4:
        raise StunError(f"ERROR-CODE is at least 4 bytes, got {len(value)}")
    klass, number = value[2] & 0x07, value[3]
    if not 3 <= klass <= 6 or number > 99:
        raise StunError(f"ERROR-CODE class {klass} number {number} is out of range")
    return klass * 100 + number, value[4:].decode("utf-8", "replace")


def unknown_attributes(types: list[int]) -> bytes:
    """An UNKNOWN-ATTRIBUTES value (RFC 8489 §14.13)."""
    return b"".join(struct.pack(">H", t) for t in types)


def decode_unknown_attributes_untrusted(value: bytes) -> list[int]:
    """The attribute types an UNKNOWN-ATTRIBUTES value lists."""
    if len(value) % 2:
        raise StunError("UNKNOWN-ATTRIBUTES has an odd length")
    return [int(struct.unpack_from(">H", value, i)[0]) for i in range(0, len(value), 2)]


def text_untrusted(value: bytes, name: str, limit: int = MAX_TEXT) -> str:
    """A UTF-8 text attribute (USERNAME, REALM, NONCE, SOFTWARE) of at most ``limit`` bytes."""
    if len(value) > limit:
        raise StunError(f"{name} is at most {limit} bytes, got {len(value)}")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StunError(f"{name} is not UTF-8") from exc


def long_term_key(username: str, realm: str, password: str, algorithm: int = PASSWORD_MD5) -> bytes:
    """The long-term credential key (RFC 8489 §9.2.2): MD5 or, with ``PASSWORD_SHA256``,
    SHA-256 of ``username ":" realm ":" password``.

    The strings are used as given (UTF-8): p2pos does not apply OpaqueString preparation,
    so credentials outside ASCII must be given already prepared (spec/turn.md §4).
    """
    text = f"{username}:{realm}:{password}".encode()
    if algorithm == PASSWORD_SHA256:
        return hashlib.sha256(text).digest()
    if algorithm != PASSWORD_MD5:
        raise ValueError(f"unknown password algorithm {algorithm}")
    return hashlib.md5(text, usedforsecurity=False).digest()


def userhash(username: str, realm: str) -> bytes:
    """A USERHASH value (RFC 8489 §14.4): SHA-256(username ":" realm)."""
    return hashlib.sha256(f"{username}:{realm}".encode()).digest()


def password_algorithm(algorithm: int) -> bytes:
    """A PASSWORD-ALGORITHM value (RFC 8489 §14.12) without parameters."""
    return struct.pack(">HH", algorithm, 0)


def short_term_key(password: str) -> bytes:
    """The short-term credential key (RFC 8489 §9.1.1): the password itself (prepared, UTF-8)."""
    return password.encode()
