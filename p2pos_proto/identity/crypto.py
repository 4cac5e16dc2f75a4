"""Cryptographic primitives used by the core (spec/handshake.md §2, spec/record.md §3).

X25519 and Ed25519 come from PyNaCl (libsodium); BLAKE2b and HMAC from the
standard library.  Two ChaCha20-Poly1305 AEADs are offered: the handshake uses
libsodium's, the record layer uses OpenSSL's through ``cryptography``, which is
about 2.3 times faster than PyNaCl's binding on 1200-byte records (bench/handshake_record.py).  Both
compute the same function; tests check them against each other and Wycheproof.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import nacl.bindings as _sodium
import nacl.exceptions
import nacl.utils
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ..errors import ErrorCode, RemoteProtocolError

DHLEN = 32
HASHLEN = 64
BLOCKLEN = 128
TAGLEN = 16
KEYLEN = 32
MAX_NONCE = 2**64 - 1

#: A source of random bytes.  Injected everywhere so tests are deterministic.
RandomSource = Callable[[int], bytes]

_ZERO_DH = bytes(DHLEN)


def system_random(n: int) -> bytes:
    """libsodium's CSPRNG; the default RandomSource."""
    return nacl.utils.random(n)


def x25519_public(private: bytes) -> bytes:
    """Public key for an X25519 private key (clamped by libsodium)."""
    return _sodium.crypto_scalarmult_base(private)


def x25519(private: bytes, public: bytes) -> bytes:
    """X25519 DH; an all-zero result (low-order point) raises WEAK_KEY.

    libsodium already refuses an all-zero output; the explicit check keeps the
    rule visible and independent of the library (spec/handshake.md §2.2).
    """
    try:
        shared = _sodium.crypto_scalarmult(private, public)
    except (nacl.exceptions.RuntimeError, nacl.exceptions.ValueError, nacl.exceptions.TypeError) as exc:
        raise RemoteProtocolError("X25519 with a low-order or invalid point", ErrorCode.WEAK_KEY) from exc
    if hmac.compare_digest(shared, _ZERO_DH):
        raise RemoteProtocolError("X25519 result is all zero", ErrorCode.WEAK_KEY)
    return shared


def nonce_bytes(n: int) -> bytes:
    """Noise ChaChaPoly nonce: 32 zero bits then the 64-bit counter, little-endian."""
    return b"\x00\x00\x00\x00" + n.to_bytes(8, "little")


def sodium_encrypt(key: bytes, n: int, ad: bytes, plaintext: bytes) -> bytes:
    """ChaCha20-Poly1305 (IETF) encryption via libsodium."""
    return _sodium.crypto_aead_chacha20poly1305_ietf_encrypt(plaintext, ad, nonce_bytes(n), key)


def sodium_decrypt(key: bytes, n: int, ad: bytes, ciphertext: bytes) -> bytes:
    """ChaCha20-Poly1305 (IETF) decryption via libsodium; raises DECRYPT_FAILED."""
    if len(ciphertext) < TAGLEN:  # PyNaCl would raise a bare ValueError ("negative array length")
        raise RemoteProtocolError("AEAD ciphertext shorter than its tag", ErrorCode.DECRYPT_FAILED)
    try:
        return _sodium.crypto_aead_chacha20poly1305_ietf_decrypt(ciphertext, ad, nonce_bytes(n), key)
    except nacl.exceptions.CryptoError as exc:
        raise RemoteProtocolError("AEAD authentication failed", ErrorCode.DECRYPT_FAILED) from exc


class RecordAead:
    """ChaCha20-Poly1305 bound to one key, via OpenSSL (the record layer's hot path)."""

    __slots__ = ("key", "raw")

    def __init__(self, key: bytes) -> None:
        self.key = key
        #: The library object; the record layer calls it directly on its hot path.
        self.raw = ChaCha20Poly1305(key)

    def encrypt(self, nonce: bytes, plaintext: bytes, ad: bytes) -> bytes:
        return self.raw.encrypt(nonce, plaintext, ad)

    def decrypt(self, nonce: bytes, ciphertext: bytes, ad: bytes) -> bytes | None:
        """Plaintext, or None when the tag does not verify (never raises on bad input)."""
        try:
            return self.raw.decrypt(nonce, ciphertext, ad)
        except InvalidTag:
            return None


def rekey(key: bytes) -> bytes:
    """Noise REKEY(k): the first 32 bytes of ENCRYPT(k, 2^64-1, "", zeros(32))."""
    return sodium_encrypt(key, MAX_NONCE, b"", bytes(KEYLEN))[:KEYLEN]


def blake2b(data: bytes) -> bytes:
    return hashlib.blake2b(data).digest()


_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


def hmac_blake2b(key: bytes, data: bytes) -> bytes:
    """HMAC (RFC 2104) over BLAKE2b-512, as Noise defines it; written out because the
    standard library's generic HMAC costs twice as much for these short inputs."""
    if len(key) > BLOCKLEN:
        key = blake2b(key)
    key = key.ljust(BLOCKLEN, b"\x00")
    inner = hashlib.blake2b(key.translate(_IPAD) + data).digest()
    return hashlib.blake2b(key.translate(_OPAD) + inner).digest()


def hkdf(chaining_key: bytes, ikm: bytes, outputs: int) -> tuple[bytes, ...]:
    """Noise HKDF with HMAC-BLAKE2b, returning 2 or 3 outputs of HASHLEN bytes."""
    temp = hmac_blake2b(chaining_key, ikm)
    out1 = hmac_blake2b(temp, b"\x01")
    out2 = hmac_blake2b(temp, out1 + b"\x02")
    if outputs == 2:
        return out1, out2
    return out1, out2, hmac_blake2b(temp, out2 + b"\x03")


def ed25519_seed_keypair(seed: bytes) -> tuple[bytes, bytes]:
    """(public key, libsodium secret key) for a 32-byte Ed25519 seed."""
    return _sodium.crypto_sign_seed_keypair(seed)


def ed25519_sign(secret_key: bytes, message: bytes) -> bytes:
    return _sodium.crypto_sign(message, secret_key)[:64]


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when the signature is valid; any malformed input is simply False."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    try:
        _sodium.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        return False
    return True
