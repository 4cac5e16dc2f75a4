"""The runner's own side of spec/quic.md §3: certificates, bindings and proofs, good and broken.

Written from the spec, not taken from the reference implementation (``transports/quic_tls.py``):
the suite must not check an implementation with that implementation's code.  It uses
``p2pos.proto`` only for identities and ``SignedRecord`` (identity.md §3.3).
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from p2pos.proto.errors import ProtocolError
from p2pos.proto.identity.identity import Identity, SignedRecord
from p2pos.proto.identity.peer_id import PeerId

ALPN = "p2pos/1"
DOMAIN = b"p2pos/quic-tls-key"
ROLE_LISTENER, ROLE_DIALER = 0x01, 0x02
BINDING_OID = x509.ObjectIdentifier("2.25.74144193650496820108836865888502616762")
MAX_PROOF = 512


def spki_of(key: ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def cert_spki(certificate: x509.Certificate) -> bytes:
    return certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def octet_string(data: bytes) -> bytes:
    """``data`` as a DER OCTET STRING."""
    n = len(data)
    head = (
        bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8)
    )
    return b"\x04" + head + data


def binding(identity: Identity, key_spki: bytes, role: int = ROLE_LISTENER) -> bytes:
    """The ``SignedRecord`` of §3 by ``identity`` over ``role || key_spki``."""
    return SignedRecord.create(identity, DOMAIN, bytes([role]) + key_spki).encode()


def certificate(
    key: ed25519.Ed25519PrivateKey,
    extension: bytes | None,
    *,
    critical: bool = True,
    not_before: datetime.datetime | None = None,
    name: str = "p2pos",
    issuer_key: ed25519.Ed25519PrivateKey | None = None,
) -> x509.Certificate:
    """A certificate for ``key`` whose binding extension holds ``extension`` (raw extnValue), or none."""
    start = not_before or datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=1))
    )
    if extension is not None:
        builder = builder.add_extension(x509.UnrecognizedExtension(BINDING_OID, extension), critical=critical)
    return builder.sign(issuer_key or key, None)


def good_certificate(identity: Identity) -> tuple[x509.Certificate, ed25519.Ed25519PrivateKey]:
    """A listener certificate as §3.1 wants it, for a fresh TLS key."""
    key = ed25519.Ed25519PrivateKey.generate()
    return certificate(key, octet_string(binding(identity, spki_of(key.public_key())))), key


def check_binding(certificate_: x509.Certificate) -> tuple[PeerId, bool]:
    """Check a listener's certificate as QUIC-3.2.1 says: (signer, whether the extension is critical).

    Raises ValueError with why when it does not conform.
    """
    try:
        ext = certificate_.extensions.get_extension_for_oid(BINDING_OID)
    except x509.ExtensionNotFound:
        raise ValueError("the certificate has no binding extension") from None
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise ValueError("the binding extension does not parse as an unrecognised extension")
    raw = value.value
    if len(raw) < 2 or raw[0] != 0x04:
        raise ValueError("the extension value is not a DER OCTET STRING")
    record_bytes = raw[2:] if raw[1] < 0x80 else raw[2 + (raw[1] & 0x7F) :]
    if octet_string(record_bytes) != raw:
        raise ValueError("the extension value is not exactly one DER OCTET STRING")
    return check_record(record_bytes, ROLE_LISTENER, cert_spki(certificate_)), ext.critical


def check_record(data: bytes, role: int, key_spki: bytes) -> PeerId:
    """The signer of a §3 ``SignedRecord`` over ``role || key_spki``; ValueError otherwise."""
    try:
        record = SignedRecord.decode_untrusted(data, domain=DOMAIN)
    except ProtocolError as exc:
        raise ValueError(f"not a valid SignedRecord of domain p2pos/quic-tls-key: {exc}") from None
    if record.payload != bytes([role]) + key_spki:
        raise ValueError(f"the record does not sign role 0x{role:02x} and the expected key")
    return record.signer
