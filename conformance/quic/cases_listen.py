"""Cases where the runner dials the IUT's listener (spec/quic.md §2, §3.1, §3.4, §4)."""

from __future__ import annotations

import random
import socket

from cryptography.hazmat.primitives.asymmetric import ed25519

from p2pos.proto.errors import ErrorCode
from p2pos.proto.identity.identity import SignedRecord

from ..checks import CaseFailed, expect
from . import certs
from .control import Iut
from .helpers import KEEPALIVE, RUNNER, WAIT, accepted, closed_with, ended, need, nothing_from, records
from .peer import LOOPBACK, Peer, config, frame
from .registry import case


def connect(iut: Iut, port: int | None = None, **options: object) -> Peer:
    """A runner dialer to the IUT's listener (or its ``port``) with the handshake done (or the connection closed)."""
    peer = Peer.dialer(iut.port if port is None else port, config(is_client=True, **options))  # type: ignore[arg-type]
    iut.peer = peer
    peer.pump(lambda: peer.handshake is not None or peer.closed is not None, WAIT)
    return peer


def listener_spki(peer: Peer) -> bytes:
    cert, _ = peer.peer_certificates()
    if cert is None:
        raise CaseFailed("no certificate from the IUT's listener")
    return certs.cert_spki(cert)


def authenticated(iut: Iut, peer: Peer, *records_: bytes) -> object:
    """Send the proof (and ``records_`` in the same flight); return the IUT's carrier id."""
    expect(peer.handshake is not None, f"the QUIC handshake with the IUT did not complete: {peer.closed}")
    proof = certs.binding(RUNNER, listener_spki(peer), certs.ROLE_DIALER)
    peer.send(0, frame(proof) + b"".join(frame(r) for r in records_))
    return accepted(iut, peer.port)["conn"]


def refused_proof(iut: Iut, proof: bytes, port: int | None = None) -> str:
    """The IUT's listener (or the one on its ``port``) refuses the dialer's ``proof`` with BAD_IDENTITY."""
    peer = connect(iut, port)
    try:
        expect(peer.handshake is not None, f"the QUIC handshake with the IUT did not complete: {peer.closed}")
        peer.send(0, frame(proof) + frame(b"a record after a bad proof"))
        reason = closed_with(peer, ErrorCode.BAD_IDENTITY)
        nothing_from(iut, peer.port)
        return reason
    finally:
        peer.close_socket()


@case(
    "quic/listen/1",
    section="§3.1",
    title="the listener's one certificate binds the IUT's identity to a TLS key that is not the identity key",
    requirements=("QUIC-2.1", "QUIC-3.1.1", "QUIC-3.1.2"),
)
def _(iut: Iut) -> str | None:
    peer = connect(iut)
    try:
        handshake = need(peer.handshake, f"the QUIC handshake with the IUT did not complete: {peer.closed}")
        expect(handshake.alpn_protocol == certs.ALPN, f"ALPN {handshake.alpn_protocol!r}, not p2pos/1")
        versions = {version for _, version in peer.long_headers}
        expect(versions == {1}, f"the IUT's long-header packets carry versions {sorted(versions)}, not only 1")
        maybe_cert, chain = peer.peer_certificates()
        cert = need(maybe_cert, "the IUT presented no certificate")
        expect(chain == 0, f"the IUT presented {chain + 1} certificates, not exactly one")
        try:
            signer, critical = certs.check_binding(cert)
        except ValueError as exc:
            raise CaseFailed(f"the IUT's certificate: {exc}") from None
        expect(critical, "the binding extension is not marked critical")
        expect(str(signer) == iut.peer_id, f"the binding is signed by {signer}, the IUT is {iut.peer_id}")
        key = cert.public_key()
        if isinstance(key, ed25519.Ed25519PublicKey):
            expect(key.public_bytes_raw() != signer.public_key, "the TLS key is the identity key")
        return f"TLS key {type(key).__name__}"
    finally:
        peer.close()
        peer.close_socket()


@case(
    "quic/listen/2",
    section="§3.4",
    title="a valid proof and records in one flight: the dialer is authenticated, the records handed over in order",
    requirements=("QUIC-3.4.1", "QUIC-3.3.2", "QUIC-2.3", "QUIC-2.4"),
)
def _(iut: Iut) -> str | None:
    sent = [b"\x01", b"second record", bytes(range(256)) * 4, b"\xff" * 65535]
    peer = connect(iut)
    try:
        conn = authenticated(iut, peer, *sent)
        got = records(iut, conn, len(sent))
        expect(got == sent, f"the records handed over differ from those sent ({[len(r) for r in got]})")
        return None
    finally:
        peer.close()
        peer.close_socket()


@case(
    "quic/listen/3",
    section="§3.1",
    title="each connection gets a fresh TLS key",
    requirements=("QUIC-3.1.3",),
)
def _(iut: Iut) -> str | None:
    keys = []
    for _ in range(2):
        peer = connect(iut)
        try:
            keys.append(listener_spki(peer))
        finally:
            peer.close()
            peer.close_socket()
    expect(keys[0] != keys[1], "two connections got the same TLS key")
    return None


@case(
    "quic/listen/4",
    section="§2",
    title="a dialer offering another ALPN than p2pos/1 is refused with no_application_protocol",
    requirements=("QUIC-2.1",),
)
def _(iut: Iut) -> str | None:
    peer = connect(iut, alpn=("h3",))
    try:
        peer.pump(lambda: peer.closed is not None, WAIT)
        closed = need(peer.closed, "the IUT completed a handshake without p2pos/1")
        expect(not closed.app and closed.code == 0x178, f"closed with {closed}, not CRYPTO_ERROR 0x178")
        nothing_from(iut, peer.port)
        return None
    finally:
        peer.close_socket()


@case(
    "quic/listen/5",
    section="§3.4",
    title="a dialer that sends no proof is closed with HANDSHAKE_TIMEOUT",
    requirements=("QUIC-3.4.3", "QUIC-4.2"),
)
def _(iut: Iut) -> str | None:
    peer = connect(iut)
    try:
        expect(peer.handshake is not None, f"the QUIC handshake with the IUT did not complete: {peer.closed}")
        closed_with(peer, ErrorCode.HANDSHAKE_TIMEOUT, timeout=13.0)  # the default 10 s if the IUT ignores ours
        nothing_from(iut, peer.port, 0.1)
        return None
    finally:
        peer.close_socket()


def _other_key() -> bytes:
    return certs.spki_of(ed25519.Ed25519PrivateKey.generate().public_key())


@case(
    "quic/listen/6",
    section="§3.4",
    title="a first frame that is not a SignedRecord is refused with BAD_IDENTITY, nothing handed over",
    requirements=("QUIC-3.4.1", "QUIC-3.4.2", "QUIC-4.2"),
)
def _(iut: Iut) -> str | None:
    return refused_proof(iut, random.Random(6).randbytes(150))


@case(
    "quic/listen/7",
    section="§3.4",
    title="a proof over another TLS key (a proof for another listener) is refused with BAD_IDENTITY",
    requirements=("QUIC-3.4.1", "QUIC-3.4.2", "QUIC-4.2"),
)
def _(iut: Iut) -> str | None:
    return refused_proof(iut, certs.binding(RUNNER, _other_key(), certs.ROLE_DIALER))


@case(
    "quic/listen/8",
    section="§3.4",
    title="a proof with the listener's role byte (0x01) is refused with BAD_IDENTITY",
    requirements=("QUIC-3.4.1", "QUIC-3.4.2", "QUIC-4.2"),
)
def _(iut: Iut) -> str | None:
    peer = connect(iut)
    try:
        expect(peer.handshake is not None, f"the QUIC handshake with the IUT did not complete: {peer.closed}")
        proof = certs.binding(RUNNER, listener_spki(peer), certs.ROLE_LISTENER)
        peer.send(0, frame(proof) + frame(b"a record after a bad proof"))
        closed_with(peer, ErrorCode.BAD_IDENTITY)
        nothing_from(iut, peer.port)
        return None
    finally:
        peer.close_socket()


@case(
    "quic/listen/9",
    section="§3.4",
    title="a proof whose signature does not verify, or of another domain, is refused with BAD_IDENTITY",
    requirements=("QUIC-3.4.1", "QUIC-3.4.2", "QUIC-4.2"),
)
def _(iut: Iut) -> str | None:
    for mutate in ("signature", "domain"):
        peer = connect(iut)
        try:
            expect(peer.handshake is not None, f"the QUIC handshake with the IUT did not complete: {peer.closed}")
            payload = bytes([certs.ROLE_DIALER]) + listener_spki(peer)
            if mutate == "signature":
                good = certs.binding(RUNNER, listener_spki(peer), certs.ROLE_DIALER)
                proof = good[:-1] + bytes([good[-1] ^ 1])
            else:
                proof = SignedRecord.create(RUNNER, b"p2pos/other-domain", payload).encode()
            peer.send(0, frame(proof) + frame(b"a record after a bad proof"))
            closed_with(peer, ErrorCode.BAD_IDENTITY)
            nothing_from(iut, peer.port)
        finally:
            peer.close_socket()
    return None


def _after_auth(iut: Iut, stream_id: int, data: bytes, code: ErrorCode) -> None:
    peer = connect(iut)
    try:
        conn = authenticated(iut, peer, b"before")
        expect(records(iut, conn, 1) == [b"before"], "the record before the violation was not handed over")
        peer.send(stream_id, data)
        closed_with(peer, code)
        ended(iut, conn, code)
    finally:
        peer.close_socket()


@case(
    "quic/listen/10",
    section="§2",
    title="data on a second bidirectional stream closes the carrier with PROTOCOL_VIOLATION",
    requirements=("QUIC-2.2a", "QUIC-4.2"),
)
def _(iut: Iut) -> str | None:
    _after_auth(iut, 4, frame(b"on stream 4"), ErrorCode.PROTOCOL_VIOLATION)
    return None


@case(
    "quic/listen/11",
    section="§2",
    title="data on a unidirectional stream closes the carrier with PROTOCOL_VIOLATION",
    requirements=("QUIC-2.2a", "QUIC-4.2"),
)
def _(iut: Iut) -> str | None:
    _after_auth(iut, 2, frame(b"on stream 2"), ErrorCode.PROTOCOL_VIOLATION)
    return None


@case(
    "quic/listen/12",
    section="§2",
    title="a zero-length frame is a framing error: the carrier is closed with FRAMING_ERROR",
    requirements=("QUIC-2.4", "QUIC-4.2"),
)
def _(iut: Iut) -> str | None:
    _after_auth(iut, 0, b"\x00\x00" + frame(b"after"), ErrorCode.FRAMING_ERROR)
    return None


@case(
    "quic/listen/13",
    section="§4",
    title="a clean end (FIN after the last frame): every frame is handed over, then the end with NO_ERROR",
    requirements=("QUIC-4.1",),
)
def _(iut: Iut) -> str | None:
    peer = connect(iut)
    try:
        conn = authenticated(iut, peer)
        sent = [b"%d" % i for i in range(50)]
        peer.send(0, b"".join(frame(r) for r in sent), end=True)
        expect(records(iut, conn, len(sent)) == sent, "the records before the FIN were not all handed over in order")
        ended(iut, conn, ErrorCode.NO_ERROR)
        peer.pump(timeout=0.1)
        peer.close(0, "done")
        return None
    finally:
        peer.close_socket()


@case(
    "quic/listen/14",
    section="§2",
    title="the listener accepts no DATAGRAM frames, issues no session ticket, keeps an idle timeout above keepalives",
    requirements=("QUIC-2.5", "QUIC-4.5"),
)
def _(iut: Iut) -> str | None:
    peer = connect(iut, datagram_frames=True)
    try:
        conn = authenticated(iut, peer)
        peer.pump(timeout=0.3)
        quic = need(peer.quic, "no QUIC connection")
        size = quic._remote_max_datagram_frame_size
        expect(size is None, f"the IUT sent max_datagram_frame_size {size}")
        expect(peer.tickets == 0, f"the IUT issued {peer.tickets} session tickets (0-RTT)")
        idle = quic._remote_max_idle_timeout
        expect(not idle or idle > KEEPALIVE, f"the IUT's max_idle_timeout ({idle} s) is not above {KEEPALIVE} s")
        peer.send(0, frame(b"still open"))
        expect(records(iut, conn, 1) == [b"still open"], "the record was not handed over")
        return f"max_idle_timeout {idle} s"
    finally:
        peer.close()
        peer.close_socket()


@case(
    "quic/listen/15",
    section="§4",
    title="junk, a bad Initial and other QUIC versions do not hurt the listener; versions get Version Negotiation (1)",
    requirements=("QUIC-4.3", "QUIC-2.1"),
)
def _(iut: Iut) -> str | None:
    rng = random.Random(15)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((LOOPBACK, 0))
        cids = b"\x08" + rng.randbytes(8) + b"\x08" + rng.randbytes(8)
        for data in (
            b"\x00",
            *(rng.randbytes(rng.randint(1, 1400)) for _ in range(100)),
            bytes([0xC0]) + (1).to_bytes(4, "big") + cids + b"\x00" + rng.randbytes(1300),  # unprotectable Initial
        ):
            sock.sendto(data, (LOOPBACK, iut.port))
        for version in (0x6B3343CF, 0x1A2A3A4A):  # QUIC version 2 (RFC 9369), a reserved version
            sock.sendto(bytes([0xC0]) + version.to_bytes(4, "big") + cids + bytes(1200), (LOOPBACK, iut.port))
            sock.settimeout(WAIT)
            try:
                answer = sock.recv(2048)
                while answer[1:5] != bytes(4):  # skip anything that is not Version Negotiation
                    answer = sock.recv(2048)
            except TimeoutError:
                raise CaseFailed(f"no Version Negotiation for version 0x{version:08x}") from None
            dcid_end = 6 + answer[5]
            offered = answer[dcid_end + 1 + answer[dcid_end] :]
            expect(offered == (1).to_bytes(4, "big"), f"Version Negotiation offers {offered.hex()}, not only 1")
    finally:
        sock.close()
    peer = connect(iut)
    try:
        conn = authenticated(iut, peer, b"alive")
        expect(records(iut, conn, 1) == [b"alive"], "the listener no longer hands records over after the junk")
        expect(iut.alive, "the IUT exited")
        return None
    finally:
        peer.close()
        peer.close_socket()
