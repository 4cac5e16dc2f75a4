"""The Noise Protocol Framework state objects (Noise spec rev. 34, §5), 25519/ChaChaPoly/BLAKE2b.

Only what p2pos needs: the XX and IK patterns, with every key injectable so the
cacophony vectors reproduce byte for byte (spec/handshake.md §3).  These objects
raise ``RemoteProtocolError`` on bad input; callers that must not be corrupted by
garbage work on a ``copy()`` and keep it only on success.
"""

from __future__ import annotations

import enum

from ..errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from ..identity import crypto


class Pattern(enum.Enum):
    """The two handshake patterns p2pos uses, with their message token lists."""

    XX = "XX"
    IK = "IK"


_PRE_MESSAGES: dict[Pattern, tuple[tuple[str, ...], tuple[str, ...]]] = {
    Pattern.XX: ((), ()),
    Pattern.IK: ((), ("s",)),
}

_MESSAGES: dict[Pattern, tuple[tuple[str, ...], ...]] = {
    Pattern.XX: (("e",), ("e", "ee", "s", "es"), ("s", "se")),
    Pattern.IK: (("e", "es", "s", "ss"), ("e", "ee", "se")),
}


def protocol_name(pattern: Pattern) -> bytes:
    return f"Noise_{pattern.value}_25519_ChaChaPoly_BLAKE2b".encode()


class CipherState:
    """Noise CipherState: a key and an implicit 64-bit nonce (libsodium AEAD)."""

    __slots__ = ("k", "n")

    def __init__(self, k: bytes | None = None) -> None:
        self.k = k
        self.n = 0

    def has_key(self) -> bool:
        return self.k is not None

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        if self.k is None:
            return plaintext
        if self.n >= crypto.MAX_NONCE:
            raise LocalProtocolError("nonce exhausted", ErrorCode.COUNTER_EXHAUSTED)
        out = crypto.sodium_encrypt(self.k, self.n, ad, plaintext)
        self.n += 1
        return out

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        if self.k is None:
            return ciphertext
        if self.n >= crypto.MAX_NONCE:
            raise RemoteProtocolError("nonce exhausted", ErrorCode.COUNTER_EXHAUSTED)
        out = crypto.sodium_decrypt(self.k, self.n, ad, ciphertext)
        self.n += 1
        return out


class SymmetricState:
    """Noise SymmetricState: chaining key, handshake hash and a CipherState."""

    __slots__ = ("ck", "h", "cipher")

    def __init__(self, name: bytes) -> None:
        self.h = name + bytes(crypto.HASHLEN - len(name)) if len(name) <= crypto.HASHLEN else crypto.blake2b(name)
        self.ck = self.h
        self.cipher = CipherState()

    def mix_key(self, ikm: bytes) -> None:
        self.ck, temp_k = crypto.hkdf(self.ck, ikm, 2)
        self.cipher = CipherState(temp_k[: crypto.KEYLEN])

    def mix_hash(self, data: bytes) -> None:
        self.h = crypto.blake2b(self.h + data)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[bytes, bytes]:
        """The two transport keys: (initiator-to-responder, responder-to-initiator)."""
        temp_k1, temp_k2 = crypto.hkdf(self.ck, b"", 2)
        return temp_k1[: crypto.KEYLEN], temp_k2[: crypto.KEYLEN]


class HandshakeState:
    """Noise HandshakeState for XX or IK.

    ``s`` is the local static private key, ``e`` an injected ephemeral private
    key (vectors only; otherwise drawn from ``random``), ``s_pub`` its public key
    when the caller already has it, ``rs`` the remote static
    public key (required for an IK initiator).  Call ``write_message`` and
    ``read_message`` in turn; ``is_finished()`` then ``split()``.
    """

    def __init__(
        self,
        *,
        pattern: Pattern,
        initiator: bool,
        prologue: bytes,
        s: bytes,
        s_pub: bytes | None = None,
        e: bytes | None = None,
        rs: bytes | None = None,
        random: crypto.RandomSource = crypto.system_random,
    ) -> None:
        self.pattern = pattern
        self.initiator = initiator
        self.symmetric = SymmetricState(protocol_name(pattern))
        self.symmetric.mix_hash(prologue)
        self.s = s
        self.s_pub = s_pub if s_pub is not None else crypto.x25519_public(s)
        self.e = e
        self.e_pub: bytes | None = crypto.x25519_public(e) if e is not None else None
        self.rs = rs
        self.re: bytes | None = None
        self._random = random
        self._index = 0
        init_pre, resp_pre = _PRE_MESSAGES[pattern]
        for token in init_pre:
            self._mix_pre(token, local=initiator)
        for token in resp_pre:
            self._mix_pre(token, local=not initiator)

    def _mix_pre(self, token: str, *, local: bool) -> None:
        if token != "s":
            raise LocalProtocolError(f"unsupported pre-message token {token!r}")
        if local:
            self.symmetric.mix_hash(self.s_pub)
        else:
            if self.rs is None:
                raise LocalProtocolError("this pattern needs the remote static key", ErrorCode.INTERNAL_ERROR)
            self.symmetric.mix_hash(self.rs)

    def copy(self) -> HandshakeState:
        """An independent copy, for trying an untrusted message without risking this state.

        Every field is immutable bytes except the two small state objects, which are
        copied by hand (``copy.deepcopy`` cost more than a DH here).
        """
        clone = object.__new__(HandshakeState)
        clone.__dict__.update(self.__dict__)
        symmetric = object.__new__(SymmetricState)
        symmetric.ck, symmetric.h = self.symmetric.ck, self.symmetric.h
        cipher = CipherState(self.symmetric.cipher.k)
        cipher.n = self.symmetric.cipher.n
        symmetric.cipher = cipher
        clone.symmetric = symmetric
        return clone

    @property
    def handshake_hash(self) -> bytes:
        return self.symmetric.h

    @property
    def message_index(self) -> int:
        return self._index

    def is_finished(self) -> bool:
        return self._index >= len(_MESSAGES[self.pattern])

    def is_my_turn(self) -> bool:
        return (self._index % 2 == 0) == self.initiator

    def _dh(self, token: str) -> bytes:
        # "es": initiator's e with responder's s; the reading side mirrors it.
        local_first = self.initiator
        first, second = token[0], token[1]
        if not local_first:
            first, second = second, first
        local_key = self.e if first == "e" else self.s
        remote_key = self.re if second == "e" else self.rs
        if local_key is None or remote_key is None:
            raise LocalProtocolError("DH before the keys it needs", ErrorCode.INTERNAL_ERROR)
        return crypto.x25519(local_key, remote_key)

    def write_message(self, payload: bytes) -> bytes:
        if self.is_finished() or not self.is_my_turn():
            raise LocalProtocolError("not this side's turn to write a handshake message")
        out = bytearray()
        sym = self.symmetric
        for token in _MESSAGES[self.pattern][self._index]:
            if token == "e":
                if self.e is None:
                    self.e = self._random(crypto.DHLEN)
                self.e_pub = crypto.x25519_public(self.e)
                out += self.e_pub
                sym.mix_hash(self.e_pub)
            elif token == "s":
                out += sym.encrypt_and_hash(self.s_pub)
            else:
                sym.mix_key(self._dh(token))
        out += sym.encrypt_and_hash(payload)
        self._index += 1
        return bytes(out)

    def read_message(self, message: bytes) -> bytes:
        """Process a peer message and return its payload; raises RemoteProtocolError."""
        if self.is_finished() or self.is_my_turn():
            raise LocalProtocolError("not this side's turn to read a handshake message")
        sym = self.symmetric
        pos = 0
        for token in _MESSAGES[self.pattern][self._index]:
            if token == "e":
                if len(message) - pos < crypto.DHLEN:
                    raise RemoteProtocolError("handshake message too short", ErrorCode.MALFORMED_MESSAGE)
                self.re = message[pos : pos + crypto.DHLEN]
                pos += crypto.DHLEN
                sym.mix_hash(self.re)
            elif token == "s":
                size = crypto.DHLEN + (crypto.TAGLEN if sym.cipher.has_key() else 0)
                if len(message) - pos < size:
                    raise RemoteProtocolError("handshake message too short", ErrorCode.MALFORMED_MESSAGE)
                self.rs = sym.decrypt_and_hash(message[pos : pos + size])
                pos += size
            else:
                sym.mix_key(self._dh(token))
        if sym.cipher.has_key() and len(message) - pos < crypto.TAGLEN:
            raise RemoteProtocolError("handshake message too short", ErrorCode.MALFORMED_MESSAGE)
        payload = sym.decrypt_and_hash(message[pos:])
        self._index += 1
        return payload

    def split(self) -> tuple[bytes, bytes]:
        if not self.is_finished():
            raise LocalProtocolError("split before the handshake finished")
        return self.symmetric.split()
