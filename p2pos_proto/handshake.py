"""Handshake contents: local keys, payloads, identity binding, SAS (spec/handshake.md).

The Noise static key (X25519) is separate from the identity key (Ed25519).
The identity signs the static public key once, under the domain
``p2pos/noise-static-key``; each handshake carries the identity public key and
that signature in its encrypted payload.  Noise proves possession of the static
private key, the signature proves the identity vouches for it, so the peer is
authenticated as its peer id before the session is usable (spec/handshake.md §6).
"""

from __future__ import annotations

import dataclasses
import hashlib

from . import crypto
from .errors import ErrorCode, RemoteProtocolError
from .identity import DOMAIN_NOISE_STATIC, Identity, verify
from .payload import CAP_MAX_RECORD_PLAINTEXT, HandshakePayload
from .peer_id import PeerId

#: Noise prologue for every p2pos handshake (spec/handshake.md §3).
PROLOGUE = b"p2pos-handshake-v1"
#: Protocol versions this implementation speaks.
SUPPORTED_VERSIONS = (1,)
SAS_DIGITS = 12


@dataclasses.dataclass(frozen=True, slots=True)
class LocalKeys:
    """An identity with its Noise static key and the signature binding the two."""

    identity: Identity
    static_private: bytes
    static_public: bytes
    binding_signature: bytes

    @classmethod
    def create(cls, identity: Identity, static_private: bytes) -> LocalKeys:
        public = crypto.x25519_public(static_private)
        return cls(identity, static_private, public, identity.sign(DOMAIN_NOISE_STATIC, public))

    @classmethod
    def generate(cls, identity: Identity, random: crypto.RandomSource = crypto.system_random) -> LocalKeys:
        return cls.create(identity, random(crypto.DHLEN))


def local_payload(
    keys: LocalKeys, versions: tuple[int, ...], capabilities: dict[int, bytes], *, with_identity: bool = True
) -> bytes:
    """The payload this side sends in a message that carries its identity."""
    if not with_identity:
        return HandshakePayload(versions=versions).encode()
    return HandshakePayload(
        versions=versions,
        identity_key=keys.identity.peer_id.public_key,
        identity_sig=keys.binding_signature,
        capabilities=capabilities,
    ).encode()


def default_capabilities(max_plaintext: int) -> dict[int, bytes]:
    return {CAP_MAX_RECORD_PLAINTEXT: max_plaintext.to_bytes(4, "big")}


@dataclasses.dataclass(frozen=True, slots=True)
class VerifiedPeer:
    """What a verified identity payload tells about the peer."""

    peer_id: PeerId
    versions: tuple[int, ...]
    capabilities: dict[int, bytes]


def verify_peer_payload_untrusted(payload: bytes, remote_static: bytes, expected: PeerId | None) -> VerifiedPeer:
    """Check a peer's identity payload against the Noise static key it proved.

    Raises RemoteProtocolError with MALFORMED_MESSAGE, UNKNOWN_CRITICAL_FIELD,
    BAD_IDENTITY or IDENTITY_MISMATCH.
    """
    decoded = HandshakePayload.decode_untrusted(payload)
    if decoded.identity_key is None or decoded.identity_sig is None:
        raise RemoteProtocolError("handshake payload lacks the identity fields", ErrorCode.BAD_IDENTITY)
    peer = PeerId(decoded.identity_key)
    if not verify(peer, DOMAIN_NOISE_STATIC, remote_static, decoded.identity_sig):
        raise RemoteProtocolError("identity signature over the Noise static key is invalid", ErrorCode.BAD_IDENTITY)
    if expected is not None and peer != expected:
        raise RemoteProtocolError(
            f"peer is {peer.short()}..., expected {expected.short()}...", ErrorCode.IDENTITY_MISMATCH
        )
    return VerifiedPeer(peer, decoded.versions, decoded.capabilities)


def choose_version(offered: tuple[int, ...], supported: tuple[int, ...]) -> int | None:
    common = set(offered) & set(supported)
    return max(common) if common else None


def short_authentication_string(handshake_hash: bytes) -> str:
    """12 decimal digits in groups of four, from the handshake hash (spec/handshake.md §7)."""
    digest = hashlib.blake2b(handshake_hash, digest_size=8, key=b"p2pos-sas-v1").digest()
    number = int.from_bytes(digest, "big") % 10**SAS_DIGITS
    text = f"{number:0{SAS_DIGITS}d}"
    return " ".join(text[i : i + 4] for i in range(0, SAS_DIGITS, 4))


def max_plaintext_of(capabilities: dict[int, bytes], default: int) -> int:
    """The peer's advertised record plaintext limit, or ``default`` if absent or malformed."""
    raw = capabilities.get(CAP_MAX_RECORD_PLAINTEXT)
    if raw is None or len(raw) != 4:
        return default
    return min(int.from_bytes(raw, "big"), default)
