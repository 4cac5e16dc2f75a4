"""The identity binding of the QUIC carrier (spec/quic.md §3): certificates and the dialer's proof.

QUIC needs TLS 1.3, and TLS wants a certificate.  p2pos peers have no certificate
authority: a peer is its Ed25519 identity (spec/identity.md).  So each side makes a
throw-away TLS key, and the identity vouches for it with a domain-separated signature
(identity.md §3.1, domain ``p2pos/quic-tls-key``); the identity key itself never signs
a TLS handshake.

* The listener's self-signed certificate carries, in an X.509 extension, a
  ``SignedRecord`` (identity.md §3.3) over ``0x01 || SPKI`` (the certificate's own
  SubjectPublicKeyInfo, DER): "my identity owns this TLS key".  TLS itself
  (CertificateVerify) proves that the listener holds the TLS key in this handshake.
  ``check_listener_certificate`` is the dialer's check against the peer id it expects.
* aioquic's server cannot ask for a client certificate (``tls.Context`` keeps
  ``_request_client_certificate`` "for test purposes only"), so the dialer proves its
  identity inside the connection: its first frame on the carrier stream is a
  ``SignedRecord`` over ``0x02 || SPKI of the listener's certificate``: "I dial the
  holder of this TLS key".  The listener uses a fresh TLS key per connection, so the
  proof is bound to this connection and a man in the middle cannot forward it
  (``dialer_proof`` / ``check_dialer_proof``).

Pure functions of their inputs (the certificate's validity dates come in as ``now``).
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from p2pos.proto.errors import ErrorCode, ProtocolError
from p2pos.proto.identity.identity import Identity, SignedRecord
from p2pos.proto.identity.peer_id import PeerId

#: ALPN of the carrier (spec/quic.md §2): one bidirectional stream of framed session records.
ALPN = "p2pos/1"
#: The signature domain (identity.md §3.1 table).
DOMAIN_QUIC_TLS_KEY = b"p2pos/quic-tls-key"
#: First byte of the signed message: who signs what.
ROLE_LISTENER = 0x01
ROLE_DIALER = 0x02
#: The extension's OID: a UUID arc (ITU-T X.667, ``2.25.<uuid as integer>``), needs no registry.
BINDING_OID = x509.ObjectIdentifier("2.25.74144193650496820108836865888502616762")
#: How long a certificate claims to be valid; receivers ignore the dates (spec/quic.md §3.2).
_VALIDITY = datetime.timedelta(days=1)
_MAX_PROOF = 512


class QuicError(ProtocolError):
    """Root of the QUIC carrier's errors; ``code`` is the p2pos error code (errors.md)."""


class BadCertificate(QuicError):
    """The peer's certificate (or the dialer's proof) does not bind a valid p2pos identity."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ErrorCode.BAD_IDENTITY)


class PeerMismatch(QuicError):
    """The peer proved an identity, but not the one expected."""

    def __init__(self, expected: PeerId, got: PeerId) -> None:
        super().__init__(f"expected peer {expected.short()}, the peer is {got.short()}", ErrorCode.IDENTITY_MISMATCH)
        self.expected = expected
        self.got = got


def spki(certificate: x509.Certificate) -> bytes:
    """The certificate's SubjectPublicKeyInfo, DER: what the binding signs."""
    return certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _der_octet_string(data: bytes) -> bytes:
    n = len(data)
    if n < 0x80:
        head = bytes([n])
    else:
        size = n.to_bytes((n.bit_length() + 7) // 8, "big")
        head = bytes([0x80 | len(size)]) + size
    return b"\x04" + head + data


def _der_octet_string_untrusted(data: bytes) -> bytes:
    """The content of a DER OCTET STRING that is exactly ``data``; raises BadCertificate."""
    if len(data) < 2 or data[0] != 0x04:
        raise BadCertificate("binding extension is not an OCTET STRING")
    first, pos = data[1], 2
    if first < 0x80:
        size = first
    else:
        count = first & 0x7F
        if count == 0 or count > 2 or len(data) < 2 + count:
            raise BadCertificate("binding extension has a bad length")
        size, pos = int.from_bytes(data[2 : 2 + count], "big"), 2 + count
        if size < 0x80 or (count == 2 and size < 0x100):
            raise BadCertificate("binding extension length is not minimal DER")
    if len(data) != pos + size:
        raise BadCertificate("binding extension length does not match")
    return data[pos:]


def make_certificate(
    identity: Identity, now: float, tls_key: ed25519.Ed25519PrivateKey | None = None
) -> tuple[x509.Certificate, ed25519.Ed25519PrivateKey]:
    """A self-signed certificate for a fresh Ed25519 TLS key, bound to ``identity`` (§3.1)."""
    key = tls_key if tls_key is not None else ed25519.Ed25519PrivateKey.generate()
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = SignedRecord.create(identity, DOMAIN_QUIC_TLS_KEY, bytes([ROLE_LISTENER]) + public_der)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "p2pos")])
    start = datetime.datetime.fromtimestamp(int(now), datetime.UTC) - datetime.timedelta(hours=1)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + _VALIDITY)
        .add_extension(x509.UnrecognizedExtension(BINDING_OID, _der_octet_string(record.encode())), critical=True)
        .sign(key, None)
    )
    return certificate, key


def check_listener_certificate(certificate: x509.Certificate, chain_length: int, expected: PeerId) -> PeerId:
    """The dialer's check (§3.2): returns the listener's peer id, or raises BadCertificate / PeerMismatch.

    TLS has already checked that the listener holds the certificate's key (CertificateVerify).
    """
    if chain_length != 0:
        raise BadCertificate("the listener sent a certificate chain; p2pos certificates stand alone")
    try:
        extension = certificate.extensions.get_extension_for_oid(BINDING_OID)
    except x509.ExtensionNotFound:
        raise BadCertificate("the certificate has no p2pos identity binding") from None
    except ValueError as exc:  # duplicate or malformed extensions
        raise BadCertificate(f"the certificate's extensions do not parse: {exc}") from None
    value = extension.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise BadCertificate("the binding extension has an unexpected type")
    try:
        key_der = spki(certificate)
    except ValueError as exc:
        raise BadCertificate(f"the certificate's key does not parse: {exc}") from None
    peer = _check_record(_der_octet_string_untrusted(value.value), ROLE_LISTENER, key_der)
    if peer != expected:
        raise PeerMismatch(expected, peer)
    return peer


def dialer_proof(identity: Identity, listener_spki: bytes) -> bytes:
    """The dialer's first frame (§3.3): its identity's signature over the listener's TLS key."""
    return SignedRecord.create(identity, DOMAIN_QUIC_TLS_KEY, bytes([ROLE_DIALER]) + listener_spki).encode()


def check_dialer_proof(proof: bytes, own_spki: bytes) -> PeerId:
    """The listener's check of the dialer's first frame: the dialer's peer id, or BadCertificate."""
    if len(proof) > _MAX_PROOF:
        raise BadCertificate("the dialer's proof is too long")
    return _check_record(proof, ROLE_DIALER, own_spki)


def _check_record(data: bytes, role: int, key_der: bytes) -> PeerId:
    try:
        record = SignedRecord.decode_untrusted(data, domain=DOMAIN_QUIC_TLS_KEY)
    except ProtocolError as exc:
        raise BadCertificate(f"identity binding: {exc}") from None
    if record.payload != bytes([role]) + key_der:
        raise BadCertificate("the identity binding signs another TLS key or role")
    return record.signer
