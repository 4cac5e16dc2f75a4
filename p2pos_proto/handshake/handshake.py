"""Handshake contents: local keys, payloads, identity binding, SAS (spec/handshake.md).

The Noise static key (X25519) is separate from the identity key (Ed25519).
The identity signs the static public key once, under the domain
``p2pos/noise-static-key``; each handshake carries the identity public key and
that signature in its encrypted payload.  Noise proves possession of the static
private key, the signature proves the identity vouches for it, so the peer is
authenticated as its peer id before the session is usable (spec/handshake.md §6).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib

from ..errors import ErrorCode, RemoteProtocolError
from ..identity import crypto
from ..identity.identity import DOMAIN_NOISE_STATIC, Identity, verify
from ..identity.peer_id import PeerId
from .payload import CAP_MAX_RECORD_PLAINTEXT, SAS_NONCE_LEN, HandshakePayload

#: Noise prologue for every p2pos handshake (spec/handshake.md §3).
PROLOGUE = b"p2pos-handshake-v1"
#: Protocol versions this implementation speaks.
SUPPORTED_VERSIONS = (1,)
SAS_DIGITS = 12
#: An INIT packet is padded to at least this many bytes (spec/handshake.md §8).
MIN_INIT_SIZE = 320
#: Before the initiator's address is validated, a responder sends at most this
#: many times the bytes it received (spec/handshake.md §8).
AMPLIFICATION_FACTOR = 3


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


def with_identity(keys: LocalKeys, payload: HandshakePayload) -> HandshakePayload:
    """``payload`` plus this side's identity binding."""
    return dataclasses.replace(
        payload, identity_key=keys.identity.peer_id.public_key, identity_sig=keys.binding_signature
    )


def padded(payload: HandshakePayload, overhead: int) -> bytes:
    """Encode ``payload`` padded so that ``overhead`` + its length reaches MIN_INIT_SIZE."""
    encoded = payload.encode()
    short = MIN_INIT_SIZE - overhead - len(encoded)
    if short <= 0:
        return encoded
    return dataclasses.replace(payload, padding=max(short - 4, 1)).encode()


def default_capabilities(max_plaintext: int) -> dict[int, bytes]:
    return {CAP_MAX_RECORD_PLAINTEXT: max_plaintext.to_bytes(4, "big")}


class BindingCache:
    """Remembers identity bindings that verified, so a returning peer costs no Ed25519 check.

    Only successes are stored, keyed by (identity key, static key, signature): a
    hit proves exactly what a new verification would.  Bounded, least recently used.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._entries: collections.OrderedDict[bytes, None] = collections.OrderedDict()

    def check(self, peer: PeerId, remote_static: bytes, signature: bytes) -> bool:
        key = peer.public_key + remote_static + signature
        if key in self._entries:
            self._entries.move_to_end(key)
            return True
        if not verify(peer, DOMAIN_NOISE_STATIC, remote_static, signature):
            return False
        self._entries[key] = None
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return True


@dataclasses.dataclass(frozen=True, slots=True)
class VerifiedPeer:
    """A peer payload whose identity binding checked out."""

    peer_id: PeerId
    payload: HandshakePayload


def verify_peer_payload_untrusted(
    payload: bytes, remote_static: bytes, expected: PeerId | None, cache: BindingCache | None = None
) -> VerifiedPeer:
    """Decode a peer's payload and check its identity binding (see ``check_identity``)."""
    return check_identity(HandshakePayload.decode_untrusted(payload), remote_static, expected, cache)


def check_identity(
    decoded: HandshakePayload, remote_static: bytes, expected: PeerId | None, cache: BindingCache | None = None
) -> VerifiedPeer:
    """Check a decoded payload's identity binding against the Noise static key the peer proved.

    Raises RemoteProtocolError with BAD_IDENTITY or IDENTITY_MISMATCH.
    """
    if decoded.identity_key is None or decoded.identity_sig is None:
        raise RemoteProtocolError("handshake payload lacks the identity fields", ErrorCode.BAD_IDENTITY)
    peer = PeerId(decoded.identity_key)
    valid = (
        cache.check(peer, remote_static, decoded.identity_sig)
        if cache is not None
        else verify(peer, DOMAIN_NOISE_STATIC, remote_static, decoded.identity_sig)
    )
    if not valid:
        raise RemoteProtocolError("identity signature over the Noise static key is invalid", ErrorCode.BAD_IDENTITY)
    if expected is not None and peer != expected:
        raise RemoteProtocolError(
            f"peer is {peer.short()}..., expected {expected.short()}...", ErrorCode.IDENTITY_MISMATCH
        )
    return VerifiedPeer(peer, decoded)


def choose_version(offered: tuple[int, ...], supported: tuple[int, ...]) -> int | None:
    common = set(offered) & set(supported)
    return max(common) if common else None


def sas_commitment(nonce: bytes) -> bytes:
    """The INIT's commitment to the initiator's SAS nonce (spec/handshake.md §7)."""
    return hashlib.blake2b(nonce, digest_size=SAS_NONCE_LEN, key=b"p2pos-sas-commit").digest()


def short_authentication_string(hash_after_message_2: bytes, sas_nonce: bytes) -> str:
    """12 decimal digits in groups of four (spec/handshake.md §7).

    Computed over the handshake hash after message 2 and the initiator's nonce,
    which was committed in message 1 and revealed only after message 2: neither
    a responder nor an initiator in the middle can grind its messages to make
    its two handshakes show the same code.
    """
    digest = hashlib.blake2b(hash_after_message_2 + sas_nonce, digest_size=8, key=b"p2pos-sas-v1").digest()
    number = int.from_bytes(digest, "big") % 10**SAS_DIGITS
    text = f"{number:0{SAS_DIGITS}d}"
    return " ".join(text[i : i + 4] for i in range(0, SAS_DIGITS, 4))


def max_plaintext_of(capabilities: dict[int, bytes], default: int) -> int:
    """The peer's advertised record plaintext limit, or ``default`` if absent or malformed."""
    raw = capabilities.get(CAP_MAX_RECORD_PLAINTEXT)
    if raw is None or len(raw) != 4:
        return default
    return min(int.from_bytes(raw, "big"), default)
