"""The QUIC carrier's identity binding (spec/quic.md §3), without a network.

Each check of a listener certificate and of a dialer proof is fed a good input and inputs
with one defect each; the defect must be refused with the error the spec names.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from p2pos.proto.errors import ErrorCode
from p2pos.proto.identity.identity import Identity, SignedRecord
from p2pos.transports import quic_tls
from p2pos.transports.quic_tls import (
    BINDING_OID,
    DOMAIN_QUIC_TLS_KEY,
    ROLE_DIALER,
    ROLE_LISTENER,
    BadCertificate,
    PeerMismatch,
    check_dialer_proof,
    check_listener_certificate,
    dialer_proof,
    make_certificate,
    spki,
)

ALICE = Identity.from_seed(bytes([1]) * 32)
BOB = Identity.from_seed(bytes([2]) * 32)
NOW = 1_800_000_000.0


def certificate_with(extension_value: bytes | None, key: ed25519.Ed25519PrivateKey | None = None) -> x509.Certificate:
    """A self-signed certificate like make_certificate's, with any extension value (None: none)."""
    key = key or ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "p2pos")])
    start = datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC)
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
        builder = builder.add_extension(x509.UnrecognizedExtension(BINDING_OID, extension_value), critical=True)
    return builder.sign(key, None)


def octets(data: bytes) -> bytes:
    return quic_tls._der_octet_string(data)


def test_listener_certificate_binds_its_identity() -> None:
    """[QUIC-3.1.1] [QUIC-3.1.2] [QUIC-3.2.1]: the binding signs 0x01 || SPKI under p2pos/quic-tls-key."""
    certificate, key = make_certificate(ALICE, NOW)
    assert check_listener_certificate(certificate, 0, ALICE.peer_id) == ALICE.peer_id
    extension = certificate.extensions.get_extension_for_oid(BINDING_OID)
    assert extension.critical
    assert isinstance(extension.value, x509.UnrecognizedExtension)
    record = SignedRecord.decode_untrusted(quic_tls._der_octet_string_untrusted(extension.value.value))
    assert record.domain == DOMAIN_QUIC_TLS_KEY
    assert record.signer == ALICE.peer_id
    assert record.payload == bytes([ROLE_LISTENER]) + spki(certificate)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    # A fresh TLS key each time (spec/quic.md §3.1: the dialer's proof is then bound to one connection).
    assert spki(make_certificate(ALICE, NOW)[0]) != spki(certificate)


def test_wrong_expected_peer_is_refused() -> None:
    """[QUIC-3.2.4]: a valid binding for another peer is PeerMismatch (IDENTITY_MISMATCH)."""
    certificate, _ = make_certificate(ALICE, NOW)
    with pytest.raises(PeerMismatch) as caught:
        check_listener_certificate(certificate, 0, BOB.peer_id)
    assert caught.value.code is ErrorCode.IDENTITY_MISMATCH
    assert caught.value.got == ALICE.peer_id


def _bad_certificates() -> list[tuple[str, x509.Certificate, int]]:
    key = ed25519.Ed25519PrivateKey.generate()
    other = ed25519.Ed25519PrivateKey.generate()
    own = spki(certificate_with(None, key))
    good_record = SignedRecord.create(ALICE, DOMAIN_QUIC_TLS_KEY, bytes([ROLE_LISTENER]) + own).encode()
    flipped = good_record[:-1] + bytes([good_record[-1] ^ 1])
    other_key = SignedRecord.create(
        ALICE, DOMAIN_QUIC_TLS_KEY, bytes([ROLE_LISTENER]) + spki(certificate_with(None, other))
    ).encode()
    dialer_role = SignedRecord.create(ALICE, DOMAIN_QUIC_TLS_KEY, bytes([ROLE_DIALER]) + own).encode()
    other_domain = SignedRecord.create(ALICE, b"p2pos/noise-static-key", bytes([ROLE_LISTENER]) + own).encode()
    return [
        ("no binding extension", certificate_with(None, key), 0),
        ("signature bit flipped", certificate_with(octets(flipped), key), 0),
        ("binding of another TLS key", certificate_with(octets(other_key), key), 0),
        ("the dialer's role byte", certificate_with(octets(dialer_role), key), 0),
        ("another signature domain", certificate_with(octets(other_domain), key), 0),
        ("record not wrapped in an OCTET STRING", certificate_with(good_record, key), 0),
        ("OCTET STRING with a trailing byte", certificate_with(octets(good_record) + b"\x00", key), 0),
        ("a certificate chain", certificate_with(octets(good_record), key), 1),
    ]


@pytest.mark.parametrize(("note", "certificate", "chain"), _bad_certificates(), ids=lambda v: str(v)[:40])
def test_bad_listener_certificates_are_refused(note: str, certificate: x509.Certificate, chain: int) -> None:
    """[QUIC-3.2.2] [QUIC-3.2.3]: every defect is BadCertificate (BAD_IDENTITY), whatever peer is expected."""
    with pytest.raises(BadCertificate) as caught:
        check_listener_certificate(certificate, chain, ALICE.peer_id)
    assert caught.value.code is ErrorCode.BAD_IDENTITY


def test_good_record_in_a_hand_built_certificate_passes() -> None:
    """The control case of the list above: the same builder with a correct binding is accepted."""
    key = ed25519.Ed25519PrivateKey.generate()
    own = spki(certificate_with(None, key))
    record = SignedRecord.create(ALICE, DOMAIN_QUIC_TLS_KEY, bytes([ROLE_LISTENER]) + own).encode()
    assert check_listener_certificate(certificate_with(octets(record), key), 0, ALICE.peer_id) == ALICE.peer_id


def test_other_tls_key_types_are_bound_the_same_way() -> None:
    """[QUIC-3.1.2]: the binding signs whatever SPKI the certificate has (here ECDSA P-256)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "p2pos")])
    bare = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(2027, 1, 2, tzinfo=datetime.UTC))
    )
    record = SignedRecord.create(
        BOB, DOMAIN_QUIC_TLS_KEY, bytes([ROLE_LISTENER]) + spki(bare.sign(key, hashes.SHA256()))
    )
    certificate = bare.add_extension(
        x509.UnrecognizedExtension(BINDING_OID, octets(record.encode())), critical=True
    ).sign(key, hashes.SHA256())
    assert check_listener_certificate(certificate, 0, BOB.peer_id) == BOB.peer_id


def test_dialer_proof_round_trip_and_defects() -> None:
    """[QUIC-3.3.1] [QUIC-3.3.3]: the proof signs 0x02 || the listener's SPKI; anything else is refused."""
    listener_spki = spki(make_certificate(BOB, NOW)[0])
    other_spki = spki(make_certificate(BOB, NOW)[0])
    proof = dialer_proof(ALICE, listener_spki)
    assert check_dialer_proof(proof, listener_spki) == ALICE.peer_id
    listener_role = SignedRecord.create(ALICE, DOMAIN_QUIC_TLS_KEY, bytes([ROLE_LISTENER]) + listener_spki).encode()
    defects = {
        "bound to another listener key": (proof, other_spki),
        "listener role byte": (listener_role, listener_spki),
        "signature bit flipped": (proof[:-1] + bytes([proof[-1] ^ 1]), listener_spki),
        "truncated": (proof[:-1], listener_spki),
        "not a record": (b"\x04" + bytes(100), listener_spki),
        "too long": (proof + bytes(600), listener_spki),
    }
    for note, (data, key) in defects.items():
        with pytest.raises(BadCertificate):
            check_dialer_proof(data, key)
        assert note  # each defect named for the failure message


@pytest.mark.parametrize("size", [0, 1, 127, 128, 255, 256, 1000])
def test_der_octet_string_round_trip(size: int) -> None:
    data = bytes(range(256)) * 4
    data = data[:size]
    assert quic_tls._der_octet_string_untrusted(octets(data)) == data


def test_non_minimal_der_length_is_refused() -> None:
    with pytest.raises(BadCertificate):
        quic_tls._der_octet_string_untrusted(b"\x04\x81\x05hello")


def test_certificate_dates_are_ignored() -> None:
    """[QUIC-3.1.4]: a binding in a certificate that expired long ago, or is not yet valid, still checks."""
    for now in (0.0, 4_000_000_000.0):
        certificate, _ = make_certificate(ALICE, now)
        assert check_listener_certificate(certificate, 0, ALICE.peer_id) == ALICE.peer_id


def test_mutated_proofs_and_bindings_raise_only_bad_certificate() -> None:
    """Fuzz (STYLE 9): any byte changed, cut or added in a proof or a binding gives BadCertificate, nothing else."""
    import random

    rng = random.Random(12)
    certificate, key = make_certificate(BOB, NOW)
    listener_spki = spki(certificate)
    proof = dialer_proof(ALICE, listener_spki)
    binding = SignedRecord.create(BOB, DOMAIN_QUIC_TLS_KEY, bytes([ROLE_LISTENER]) + listener_spki).encode()
    outcomes = {"refused": 0, "accepted": 0}

    def check_proof(data: bytes) -> object:
        return check_dialer_proof(data, listener_spki)

    def check_binding(data: bytes) -> object:
        return check_listener_certificate(certificate_with(octets(data), key), 0, BOB.peer_id)

    cases: list[tuple[bytes, Callable[[bytes], object]]] = [(proof, check_proof), (binding, check_binding)]
    for _ in range(400):
        for data, check in cases:
            mutated = bytearray(data)
            match rng.randrange(3):
                case 0:
                    mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
                case 1:
                    del mutated[rng.randrange(len(mutated)) :]
                case _:
                    mutated += rng.randbytes(rng.randint(1, 8))
            try:
                check(bytes(mutated))
            except BadCertificate:
                outcomes["refused"] += 1
            else:
                outcomes["accepted"] += 1
    assert outcomes["accepted"] == 0  # every mutation breaks the signature, a length or the payload
    assert outcomes["refused"] == 800
