"""Write the QUIC carrier's identity-binding vectors (spec/vectors/quic.json) from the implementation.

Run from the repository root::

    .venv/bin/python spec/vectors/generate_quic.py           # (re)write quic.json
    .venv/bin/python spec/vectors/generate_quic.py --check   # exit 1 if it differs

spec/quic.md §3: a listener's self-signed certificate with its binding extension, the
dialer's proof, and certificates and proofs that MUST be refused, each with its error.  The
identities and the TLS keys are fixed (``BLAKE2b-256("p2pos test vector: " || label)`` as in
``generate.py``), the certificate's clock is fixed, and Ed25519 signatures are deterministic,
so every byte is reproducible.  ``build_vectors()`` returns ``{file name: JSON text}`` as
``generate.py`` does, which checks this file too.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from p2pos.proto.errors import ProtocolError
from p2pos.proto.identity.identity import Identity, SignedRecord
from p2pos.transports import quic_tls

VECTORS_DIR = Path(__file__).resolve().parent
Json = dict[str, Any]
#: The clock the certificates are made at (2027-01-15 08:00:00 UTC).
NOW = 1_799_913_600.0


def fixed(label: str) -> bytes:
    """32 fixed bytes named by ``label``: BLAKE2b-256("p2pos test vector: " || label)."""
    return hashlib.blake2b(b"p2pos test vector: " + label.encode(), digest_size=32).digest()


def _keyed(label: str) -> Json:
    return {"label": label, "hex": fixed(label).hex()}


def _der(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.DER).hex()


def _certificate(key: ed25519.Ed25519PrivateKey, extension_value: bytes | None) -> x509.Certificate:
    """A certificate shaped like make_certificate's, with any extension value (None: no extension)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "p2pos")])
    start = datetime.datetime.fromtimestamp(int(NOW), datetime.UTC) - datetime.timedelta(hours=1)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=1))
    )
    if extension_value is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(quic_tls.BINDING_OID, extension_value), critical=True
        )
    return builder.sign(key, None)


def _record(identity: Identity, role: int, key_der: bytes, domain: bytes = quic_tls.DOMAIN_QUIC_TLS_KEY) -> bytes:
    return SignedRecord.create(identity, domain, bytes([role]) + key_der).encode()


def quic_vectors() -> Json:
    bob = Identity.from_seed(fixed("bob identity seed"))
    alice = Identity.from_seed(fixed("alice identity seed"))
    carol = Identity.from_seed(fixed("carol identity seed"))
    tls_key = ed25519.Ed25519PrivateKey.from_private_bytes(fixed("bob quic tls key"))
    other_key = ed25519.Ed25519PrivateKey.from_private_bytes(fixed("bob quic tls key 2"))
    certificate, _ = quic_tls.make_certificate(bob, NOW, tls_key)
    own = quic_tls.spki(certificate)
    other = quic_tls.spki(_certificate(other_key, None))
    extension = certificate.extensions.get_extension_for_oid(quic_tls.BINDING_OID).value
    assert isinstance(extension, x509.UnrecognizedExtension)
    binding = _record(bob, quic_tls.ROLE_LISTENER, own)
    if quic_tls.check_listener_certificate(certificate, 0, bob.peer_id) != bob.peer_id:
        raise RuntimeError("vector generation: the good certificate does not check")
    proof = quic_tls.dialer_proof(alice, own)
    if quic_tls.check_dialer_proof(proof, own) != alice.peer_id:
        raise RuntimeError("vector generation: the good proof does not check")

    octets = quic_tls._der_octet_string
    flipped = binding[:-1] + bytes([binding[-1] ^ 1])
    bad_certificates: list[tuple[str, x509.Certificate, int, Identity]] = [
        ("no binding extension", _certificate(tls_key, None), 0, bob),
        ("signature bit flipped", _certificate(tls_key, octets(flipped)), 0, bob),
        ("binding of another TLS key", _certificate(tls_key, octets(_record(bob, 1, other))), 0, bob),
        ("dialer role byte (0x02)", _certificate(tls_key, octets(_record(bob, 2, own))), 0, bob),
        (
            "another signature domain",
            _certificate(tls_key, octets(_record(bob, 1, own, b"p2pos/noise-static-key"))),
            0,
            bob,
        ),
        ("record not wrapped in an OCTET STRING", _certificate(tls_key, binding), 0, bob),
        ("OCTET STRING with a trailing byte", _certificate(tls_key, octets(binding) + b"\x00"), 0, bob),
        ("valid, but a chain of two certificates was sent", certificate, 1, bob),
        ("valid binding by bob, the dialer expects carol", certificate, 0, carol),
    ]
    invalid_certificates = []
    for note, cert, chain, expected in bad_certificates:
        try:
            quic_tls.check_listener_certificate(cert, chain, expected.peer_id)
        except ProtocolError as exc:
            invalid_certificates.append(
                {
                    "note": note,
                    "certificate": _der(cert),
                    "extra_certificates": chain,
                    "expected_peer_id": str(expected.peer_id),
                    "error": exc.code.name,
                }
            )
        else:
            raise RuntimeError(f"vector generation: bad certificate {note!r} accepted")

    bad_proofs = [
        ("bound to another listener key", quic_tls.dialer_proof(alice, other)),
        ("listener role byte (0x01)", _record(alice, 1, own)),
        ("signature bit flipped", proof[:-1] + bytes([proof[-1] ^ 1])),
        ("one byte missing", proof[:-1]),
    ]
    invalid_proofs = []
    for note, data in bad_proofs:
        try:
            quic_tls.check_dialer_proof(data, own)
        except ProtocolError as exc:
            invalid_proofs.append({"note": note, "proof": data.hex(), "error": exc.code.name})
        else:
            raise RuntimeError(f"vector generation: bad proof {note!r} accepted")

    return {
        "description": (
            "QUIC carrier identity binding (spec/quic.md §3). The listener's certificate is self-signed by an "
            "Ed25519 TLS key and has a critical extension (OID in 'binding_oid') whose extnValue is a DER OCTET "
            "STRING holding a SignedRecord (identity.md §3.3) by the listener's identity, domain "
            "'p2pos/quic-tls-key', payload 0x01 || SPKI (the certificate key's DER SubjectPublicKeyInfo). The "
            "dialer's proof, its first frame on the carrier stream, is a SignedRecord by the dialer, same domain, "
            "payload 0x02 || the listener's SPKI. 'invalid_certificates' MUST be refused by a dialer expecting "
            "'expected_peer_id' (extra_certificates: how many more certificates the listener sent); "
            "'invalid_proofs' MUST be refused by the listener whose SPKI is 'listener.spki'. 'error' is the "
            "ErrorCode name."
        ),
        "spec": "spec/quic.md §3",
        "alpn": quic_tls.ALPN,
        "domain": quic_tls.DOMAIN_QUIC_TLS_KEY.decode(),
        "binding_oid": quic_tls.BINDING_OID.dotted_string,
        "certificate_time": NOW,
        "listener": {
            "identity_seed": _keyed("bob identity seed"),
            "peer_id": str(bob.peer_id),
            "tls_private_key": _keyed("bob quic tls key"),
            "spki": own.hex(),
            "binding_record": binding.hex(),
            "extension_value": extension.value.hex(),
            "certificate": _der(certificate),
        },
        "dialer": {
            "identity_seed": _keyed("alice identity seed"),
            "peer_id": str(alice.peer_id),
            "proof": proof.hex(),
        },
        "invalid_certificates": invalid_certificates,
        "invalid_proofs": invalid_proofs,
    }


def build_vectors() -> dict[str, str]:
    return {"quic.json": json.dumps(quic_vectors(), indent=2, ensure_ascii=False) + "\n"}


def main(argv: list[str] | None = None) -> int:
    spec = importlib.util.spec_from_file_location("generate_frames", VECTORS_DIR / "generate_frames.py")
    if spec is None or spec.loader is None:
        raise RuntimeError("generate_frames.py not found beside generate_quic.py")
    frames = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(frames)
    status: int = frames.write_or_check(build_vectors(), argv, script="generate_quic.py", doc=__doc__)
    return status


if __name__ == "__main__":
    sys.exit(main())
