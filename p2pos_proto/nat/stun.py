"""STUN Binding (RFC 8489): what a rendezvous node answers on its p2pos port (spec/rendezvous.md §5).

A node tells a peer the address it sees (its NAT's mapping) with a Binding success response
carrying XOR-MAPPED-ADDRESS, the way every STUN server does, so that any STUN client (coturn's
``turnutils_stunclient``, a browser's ICE agent) can ask it too.  Only Binding requests are
answered, with nothing but XOR-MAPPED-ADDRESS: 32 bytes over IPv4, 44 over IPv6, at most three
times a bare 20-byte request (no amplification).  The rest of STUN comes with issue 13.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Final

MAGIC_COOKIE: Final = 0x2112A442
HEADER_LEN: Final = 20
BINDING_REQUEST: Final = 0x0001
BINDING_SUCCESS: Final = 0x0101
ATTR_XOR_MAPPED_ADDRESS: Final = 0x0020
#: Comprehension-required attributes (below 0x8000) a Binding request may carry that we accept
#: without acting on them: none.  A request with another one is not answered (RFC 8489 §6.3.1
#: would answer 420; spec/rendezvous.md §5 lets a node drop it instead).
_HEADER = struct.Struct(">HHI12s")
_ATTR = struct.Struct(">HH")


def binding_request_untrusted(data: bytes) -> bytes | None:
    """The transaction id of a well-formed Binding request, or None for anything else."""
    if len(data) < HEADER_LEN:
        return None
    mtype, length, cookie, txid = _HEADER.unpack_from(data)
    if mtype != BINDING_REQUEST or cookie != MAGIC_COOKIE or length % 4 or HEADER_LEN + length != len(data):
        return None
    pos = HEADER_LEN
    while pos < len(data):
        if pos + 4 > len(data):
            return None
        atype, alen = _ATTR.unpack_from(data, pos)
        if atype < 0x8000:
            return None
        pos += 4 + alen + (-alen % 4)
    return bytes(txid) if pos == len(data) else None


def binding_request(txid: bytes) -> bytes:
    """A bare Binding request (20 bytes) with the 12-byte transaction id ``txid``."""
    if len(txid) != 12:
        raise ValueError("a STUN transaction id is 12 bytes")
    return _HEADER.pack(BINDING_REQUEST, 0, MAGIC_COOKIE, txid)


def binding_success(txid: bytes, address: tuple[str, int]) -> bytes:
    """A Binding success response telling the requester ``address`` (XOR-MAPPED-ADDRESS)."""
    host, port = address
    ip = ipaddress.ip_address(host)
    family = 0x01 if ip.version == 4 else 0x02
    mask = struct.pack(">I", MAGIC_COOKIE) + (txid if ip.version == 6 else b"")
    xaddr = bytes(a ^ b for a, b in zip(ip.packed, mask, strict=True))
    value = struct.pack(">BBH", 0, family, port ^ (MAGIC_COOKIE >> 16)) + xaddr
    attrs = _ATTR.pack(ATTR_XOR_MAPPED_ADDRESS, len(value)) + value
    return _HEADER.pack(BINDING_SUCCESS, len(attrs), MAGIC_COOKIE, txid) + attrs


def mapped_address_untrusted(data: bytes, txid: bytes) -> tuple[str, int] | None:
    """The XOR-MAPPED-ADDRESS of a Binding success response to ``txid``, or None."""
    if len(data) < HEADER_LEN:
        return None
    mtype, length, cookie, got = _HEADER.unpack_from(data)
    if mtype != BINDING_SUCCESS or cookie != MAGIC_COOKIE or got != txid or HEADER_LEN + length != len(data):
        return None
    pos = HEADER_LEN
    while pos + 4 <= len(data):
        atype, alen = _ATTR.unpack_from(data, pos)
        value = data[pos + 4 : pos + 4 + alen]
        if len(value) != alen:
            return None
        if atype == ATTR_XOR_MAPPED_ADDRESS and alen in (8, 20):
            family, xport = value[1], struct.unpack(">H", value[2:4])[0]
            if (family, alen) not in ((0x01, 8), (0x02, 20)):
                return None
            mask = struct.pack(">I", MAGIC_COOKIE) + (txid if family == 0x02 else b"")
            raw = bytes(a ^ b for a, b in zip(value[4:], mask, strict=True))
            return str(ipaddress.ip_address(raw)), xport ^ (MAGIC_COOKIE >> 16)
        pos += 4 + alen + (-alen % 4)
    return None
