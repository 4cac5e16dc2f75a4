"""spec/vectors/quic.json read independently of the generator (spec/quic.md §3).

The good certificate and proof must check, every invalid certificate and proof must be
refused with its error, and the listener's bytes must follow from the fixed seeds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519

from p2pos.proto.errors import ProtocolError
from p2pos.proto.identity.identity import Identity, SignedRecord
from p2pos.proto.identity.peer_id import PeerId
from p2pos.transports import quic_tls

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "spec" / "vectors" / "quic.json").read_text())


def test_constants() -> None:
    assert VECTORS["alpn"] == quic_tls.ALPN
    assert VECTORS["domain"].encode() == quic_tls.DOMAIN_QUIC_TLS_KEY
    assert VECTORS["binding_oid"] == quic_tls.BINDING_OID.dotted_string


def test_listener_certificate_checks_and_follows_from_the_seeds() -> None:
    """[QUIC-3.1.1] [QUIC-3.2.1]"""
    listener = VECTORS["listener"]
    identity = Identity.from_seed(bytes.fromhex(listener["identity_seed"]["hex"]))
    assert str(identity.peer_id) == listener["peer_id"]
    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(listener["tls_private_key"]["hex"]))
    certificate = x509.load_der_x509_certificate(bytes.fromhex(listener["certificate"]))
    assert quic_tls.spki(certificate).hex() == listener["spki"]
    assert quic_tls.check_listener_certificate(certificate, 0, PeerId.parse(listener["peer_id"])) == identity.peer_id
    # Remade from the seeds at the vector's clock, the certificate is the same bytes.
    remade, _ = quic_tls.make_certificate(identity, VECTORS["certificate_time"], key)
    assert remade == certificate
    record = SignedRecord.decode_untrusted(
        bytes.fromhex(listener["binding_record"]), domain=quic_tls.DOMAIN_QUIC_TLS_KEY
    )
    assert record.payload == b"\x01" + bytes.fromhex(listener["spki"])
    extension = certificate.extensions.get_extension_for_oid(quic_tls.BINDING_OID)
    assert extension.critical
    assert isinstance(extension.value, x509.UnrecognizedExtension)
    assert extension.value.value.hex() == listener["extension_value"]


def test_dialer_proof_checks() -> None:
    """[QUIC-3.3.1] [QUIC-3.4.1]"""
    dialer = VECTORS["dialer"]
    proof = bytes.fromhex(dialer["proof"])
    assert str(quic_tls.check_dialer_proof(proof, bytes.fromhex(VECTORS["listener"]["spki"]))) == dialer["peer_id"]
    identity = Identity.from_seed(bytes.fromhex(dialer["identity_seed"]["hex"]))
    assert quic_tls.dialer_proof(identity, bytes.fromhex(VECTORS["listener"]["spki"])) == proof


@pytest.mark.parametrize("case", VECTORS["invalid_certificates"], ids=lambda c: c["note"])
def test_invalid_certificates(case: dict[str, Any]) -> None:
    """[QUIC-3.2.2] [QUIC-3.2.4]"""
    certificate = x509.load_der_x509_certificate(bytes.fromhex(case["certificate"]))
    with pytest.raises(ProtocolError) as caught:
        quic_tls.check_listener_certificate(
            certificate, case["extra_certificates"], PeerId.parse(case["expected_peer_id"])
        )
    assert caught.value.code.name == case["error"]


@pytest.mark.parametrize("case", VECTORS["invalid_proofs"], ids=lambda c: c["note"])
def test_invalid_proofs(case: dict[str, Any]) -> None:
    """[QUIC-3.4.2]"""
    with pytest.raises(ProtocolError) as caught:
        quic_tls.check_dialer_proof(bytes.fromhex(case["proof"]), bytes.fromhex(VECTORS["listener"]["spki"]))
    assert caught.value.code.name == case["error"]
