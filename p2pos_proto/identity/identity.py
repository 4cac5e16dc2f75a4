"""Identities, domain-separated signatures and signed records (spec/identity.md).

An identity is an Ed25519 key pair; its public key is the peer id.  Every
signature p2pos makes is over

    "p2pos-sig-v1" || 0x00 || u8 len(domain) || domain || message

so a signature made for one purpose (a DHT record, the Noise static key
binding) can never be replayed as another.  ``SignedRecord`` is the generic
container that the DHT and rendezvous reuse.

The key file format (spec/identity.md §4) is parsed here; reading and writing
the file (mode 0600) is the adapters' job.
"""

from __future__ import annotations

import dataclasses
import re
import struct

from ..errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from . import crypto
from .peer_id import PeerId

SIG_PREFIX = b"p2pos-sig-v1\x00"
SIG_LEN = 64
#: Domain of the signature that binds a Noise static key to an identity.
DOMAIN_NOISE_STATIC = b"p2pos/noise-static-key"
RECORD_VERSION = 1
MAX_RECORD_PAYLOAD = 65536

KEY_FILE_MAGIC = b"p2pos-identity-v1\n"
#: Key-file line ends (spec/identity.md §4): LF, CRLF or CR.
_LINE_END = re.compile(rb"\r\n|\r|\n")
#: Key-file white space around lines and between a key and its value: space and tab.
_BLANKS = b" \t"
_KEY_VALUE = re.compile(r"[ \t]+")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


def signed_message(domain: bytes, message: bytes) -> bytes:
    """The exact bytes an identity signs for ``message`` under ``domain``."""
    if not 1 <= len(domain) <= 255:
        raise LocalProtocolError("a signature domain is 1 to 255 bytes")
    return SIG_PREFIX + bytes([len(domain)]) + domain + message


def verify(peer: PeerId, domain: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is ``peer``'s signature of ``message`` under ``domain``."""
    return crypto.ed25519_verify(peer.public_key, signed_message(domain, message), signature)


class Identity:
    """An Ed25519 key pair.  ``Identity.generate(random)`` or ``Identity.from_seed(seed)``."""

    __slots__ = ("seed", "peer_id", "_secret")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise LocalProtocolError("an Ed25519 seed is 32 bytes", ErrorCode.INVALID_KEY_FILE)
        public, secret = crypto.ed25519_seed_keypair(seed)
        self.seed = bytes(seed)
        self.peer_id = PeerId(public)
        self._secret = secret

    @classmethod
    def generate(cls, random: crypto.RandomSource = crypto.system_random) -> Identity:
        return cls(random(32))

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        return cls(seed)

    def sign(self, domain: bytes, message: bytes) -> bytes:
        """Sign ``message`` under ``domain`` (see module docstring)."""
        return crypto.ed25519_sign(self._secret, signed_message(domain, message))

    def __repr__(self) -> str:
        return f"Identity({self.peer_id})"

    # -- key file ------------------------------------------------------------

    def to_key_file(self) -> bytes:
        """The key file's bytes: a magic line, then the seed and public key in hex."""
        return KEY_FILE_MAGIC + f"seed {self.seed.hex()}\npublic {self.peer_id.public_key.hex()}\n".encode()

    @classmethod
    def from_key_file(cls, data: bytes) -> Identity:
        """Parse a key file; raises LocalProtocolError(INVALID_KEY_FILE) with a reason."""

        def bad(why: str) -> LocalProtocolError:
            return LocalProtocolError(f"not a p2pos identity file: {why}", ErrorCode.INVALID_KEY_FILE)

        # White space (spaces, tabs, blank lines) around lines and around the file is ignored;
        # the first line that is not blank is the magic (spec/identity.md §4).
        lines = [line.strip(_BLANKS) for line in _LINE_END.split(data)]
        lines = [line for line in lines if line]
        if not lines or lines[0] != KEY_FILE_MAGIC.rstrip(b"\n"):
            raise bad("it does not start with 'p2pos-identity-v1'")
        fields: dict[str, str] = {}
        for raw in lines[1:]:
            try:
                line = raw.decode("ascii")
            except UnicodeDecodeError:
                raise bad("it is not ASCII text") from None
            key, _, value = _KEY_VALUE.sub(" ", line, count=1).partition(" ")
            fields[key] = value
        try:
            seed_hex, public_hex = fields["seed"], fields["public"]
        except KeyError as exc:
            raise bad(f"the {exc.args[0]!r} line is missing") from None
        # Hex digits in either case, nothing else (white space inside a value is not skipped).
        if not (_HEX.fullmatch(seed_hex) and _HEX.fullmatch(public_hex)):
            raise bad("a key is not valid hex")
        seed, public = bytes.fromhex(seed_hex), bytes.fromhex(public_hex)
        if len(seed) != 32:
            raise bad("the seed is not 32 bytes")
        identity = cls(seed)
        if identity.peer_id.public_key != public:
            raise bad("the public key does not match the seed (file corrupt?)")
        return identity


_RECORD_HEAD = struct.Struct(">B32sB")
_U32 = struct.Struct(">I")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SignedRecord:
    """A payload signed by an identity under a domain (spec/identity.md §3).

    Wire form::

        u8 version (1) | public key[32] | u8 domain length | domain
        | u32 payload length | payload | signature[64]
    """

    signer: PeerId
    domain: bytes
    payload: bytes
    signature: bytes

    @classmethod
    def create(cls, identity: Identity, domain: bytes, payload: bytes) -> SignedRecord:
        if len(payload) > MAX_RECORD_PAYLOAD:
            raise LocalProtocolError("signed record payload too large")
        return cls(signer=identity.peer_id, domain=domain, payload=payload, signature=identity.sign(domain, payload))

    def is_valid(self) -> bool:
        return verify(self.signer, self.domain, self.payload, self.signature)

    def encode(self) -> bytes:
        return (
            _RECORD_HEAD.pack(RECORD_VERSION, self.signer.public_key, len(self.domain))
            + self.domain
            + _U32.pack(len(self.payload))
            + self.payload
            + self.signature
        )

    @classmethod
    def decode_untrusted(cls, data: bytes, *, domain: bytes | None = None) -> SignedRecord:
        """Parse and verify; raises RemoteProtocolError for any defect, including a bad signature."""

        def bad(why: str, code: ErrorCode = ErrorCode.MALFORMED_MESSAGE) -> RemoteProtocolError:
            return RemoteProtocolError(f"signed record: {why}", code)

        if len(data) < _RECORD_HEAD.size:
            raise bad("truncated")
        version, public, dlen = _RECORD_HEAD.unpack_from(data)
        if version != RECORD_VERSION:
            raise bad(f"unknown version {version}", ErrorCode.UNSUPPORTED_VERSION)
        pos = _RECORD_HEAD.size
        if dlen == 0 or len(data) < pos + dlen + 4:
            raise bad("truncated")
        rec_domain = data[pos : pos + dlen]
        pos += dlen
        (plen,) = _U32.unpack_from(data, pos)
        pos += 4
        if plen > MAX_RECORD_PAYLOAD:
            raise bad("payload too large")
        if len(data) != pos + plen + SIG_LEN:
            raise bad("length does not match")
        record = cls(
            signer=PeerId(public),
            domain=rec_domain,
            payload=data[pos : pos + plen],
            signature=data[pos + plen :],
        )
        if domain is not None and rec_domain != domain:
            raise bad("wrong domain", ErrorCode.BAD_IDENTITY)
        if not record.is_valid():
            raise bad("bad signature", ErrorCode.BAD_IDENTITY)
        return record
