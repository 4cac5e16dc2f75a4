"""Handshake payloads: version, identity binding and capabilities (spec/handshake.md §5).

A payload is a sequence of fields ``u16 type | u16 length | value``.  A field
whose type has bit 0x8000 set is critical: a receiver that does not know it
rejects the handshake.  Other unknown fields are ignored, so later versions can
add fields freely.  Capabilities are a nested field list of the same form whose
unknown entries are always ignored.
"""

from __future__ import annotations

import dataclasses
import struct

from ..errors import ErrorCode, LocalProtocolError, RemoteProtocolError

F_VERSIONS = 0x0001
F_IDENTITY_KEY = 0x0002
F_IDENTITY_SIG = 0x0003
F_CAPABILITIES = 0x0004
F_SESSION_INDEX = 0x0005
F_SAS_COMMITMENT = 0x0006
F_SAS_NONCE = 0x0007
F_PADDING = 0x0008
CRITICAL = 0x8000
SAS_NONCE_LEN = 32

#: Capability: the largest record plaintext this side accepts (u32).
CAP_MAX_RECORD_PLAINTEXT = 0x0001

_FIELD = struct.Struct(">HH")
_KNOWN = {
    F_VERSIONS,
    F_IDENTITY_KEY,
    F_IDENTITY_SIG,
    F_CAPABILITIES,
    F_SESSION_INDEX,
    F_SAS_COMMITMENT,
    F_SAS_NONCE,
    F_PADDING,
}
#: Fixed sizes of the fields that have one.
_SIZES = {
    F_IDENTITY_KEY: 32,
    F_IDENTITY_SIG: 64,
    F_SESSION_INDEX: 4,
    F_SAS_COMMITMENT: SAS_NONCE_LEN,
    F_SAS_NONCE: SAS_NONCE_LEN,
}


def encode_fields(fields: list[tuple[int, bytes]]) -> bytes:
    """Join fields; a type or value that does not fit a u16 is the caller's error."""
    out = bytearray()
    for ftype, value in fields:
        if not 0 <= ftype <= 0xFFFF or len(value) > 0xFFFF:
            raise LocalProtocolError(f"field 0x{ftype:x} of {len(value)} bytes does not fit a u16 type and length")
        out += _FIELD.pack(ftype, len(value))
        out += value
    return bytes(out)


def decode_fields_untrusted(data: bytes) -> list[tuple[int, bytes]]:
    """Split a field list; raises RemoteProtocolError(MALFORMED_MESSAGE) if it does not parse."""
    fields: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < _FIELD.size:
            raise RemoteProtocolError("truncated field header", ErrorCode.MALFORMED_MESSAGE)
        ftype, flen = _FIELD.unpack_from(data, pos)
        pos += _FIELD.size
        if len(data) - pos < flen:
            raise RemoteProtocolError("truncated field value", ErrorCode.MALFORMED_MESSAGE)
        fields.append((ftype, data[pos : pos + flen]))
        pos += flen
    return fields


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HandshakePayload:
    """The decoded contents of one handshake message's payload."""

    versions: tuple[int, ...] = ()
    identity_key: bytes | None = None
    identity_sig: bytes | None = None
    capabilities: dict[int, bytes] = dataclasses.field(default_factory=dict)
    #: The sender's own session index (INIT and RESPONSE): authenticates the header's copy.
    session_index: int | None = None
    #: INIT only: BLAKE2b commitment to the initiator's SAS nonce (spec/handshake.md §7).
    sas_commitment: bytes | None = None
    #: XX FINISH only: the SAS nonce itself.
    sas_nonce: bytes | None = None
    #: Zero bytes of padding (an INIT is padded against amplification, spec/handshake.md §8).
    padding: int = 0

    def encode(self) -> bytes:
        fields: list[tuple[int, bytes]] = []
        if not all(0 <= v <= 0xFFFF for v in self.versions):
            raise LocalProtocolError("a protocol version is a u16")
        if self.versions:
            fields.append((F_VERSIONS, b"".join(v.to_bytes(2, "big") for v in self.versions)))
        if self.identity_key is not None:
            fields.append((F_IDENTITY_KEY, self.identity_key))
        if self.identity_sig is not None:
            fields.append((F_IDENTITY_SIG, self.identity_sig))
        if self.capabilities:
            fields.append((F_CAPABILITIES, encode_fields(sorted(self.capabilities.items()))))
        if self.session_index is not None:
            if not 0 <= self.session_index < 2**32:
                raise LocalProtocolError("a session index is a u32")
            fields.append((F_SESSION_INDEX, self.session_index.to_bytes(4, "big")))
        if self.sas_commitment is not None:
            fields.append((F_SAS_COMMITMENT, self.sas_commitment))
        if self.sas_nonce is not None:
            fields.append((F_SAS_NONCE, self.sas_nonce))
        if self.padding:
            fields.append((F_PADDING, bytes(self.padding)))
        return encode_fields(fields)

    @classmethod
    def decode_untrusted(cls, data: bytes) -> HandshakePayload:
        """Parse a payload; raises RemoteProtocolError on malformed or unknown critical fields."""
        seen: dict[int, bytes] = {}
        for ftype, value in decode_fields_untrusted(data):
            if ftype in seen:
                raise RemoteProtocolError(f"duplicate field 0x{ftype:04x}", ErrorCode.MALFORMED_MESSAGE)
            if ftype not in _KNOWN and ftype & CRITICAL:
                raise RemoteProtocolError(f"unknown critical field 0x{ftype:04x}", ErrorCode.UNKNOWN_CRITICAL_FIELD)
            seen[ftype] = value
        versions: tuple[int, ...] = ()
        if F_VERSIONS in seen:
            raw = seen[F_VERSIONS]
            if not raw or len(raw) % 2:
                raise RemoteProtocolError("bad versions field", ErrorCode.MALFORMED_MESSAGE)
            versions = tuple(int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2))
        for ftype, size in _SIZES.items():
            if ftype in seen and len(seen[ftype]) != size:
                raise RemoteProtocolError(f"field 0x{ftype:04x} is not {size} bytes", ErrorCode.MALFORMED_MESSAGE)
        index = seen.get(F_SESSION_INDEX)
        caps: dict[int, bytes] = {}
        if F_CAPABILITIES in seen:
            for cap, value in decode_fields_untrusted(seen[F_CAPABILITIES]):
                if cap in caps:
                    raise RemoteProtocolError(f"duplicate capability 0x{cap:04x}", ErrorCode.MALFORMED_MESSAGE)
                caps[cap] = value
        return cls(
            versions=versions,
            identity_key=seen.get(F_IDENTITY_KEY),
            identity_sig=seen.get(F_IDENTITY_SIG),
            capabilities=caps,
            session_index=int.from_bytes(index, "big") if index is not None else None,
            sas_commitment=seen.get(F_SAS_COMMITMENT),
            sas_nonce=seen.get(F_SAS_NONCE),
            padding=len(seen.get(F_PADDING, b"")),
        )
