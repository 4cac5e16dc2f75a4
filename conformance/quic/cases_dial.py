"""Cases where the IUT dials the runner's listener (spec/quic.md §2, §3.1.4, §3.2, §3.3, §4)."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519

from p2pos.proto.errors import ErrorCode
from p2pos.proto.identity.identity import Identity

from ..checks import CaseFailed, expect
from . import certs
from .control import Event, Iut
from .helpers import KEEPALIVE, OTHER, RUNNER, WAIT, closed_with, ended, need, records
from .peer import Peer, config, frame
from .registry import case


def listen(
    iut: Iut,
    cert: x509.Certificate,
    key: ed25519.Ed25519PrivateKey,
    *,
    chain: tuple[x509.Certificate, ...] = (),
    alpn: tuple[str, ...] = (certs.ALPN,),
    expected: Identity = RUNNER,
    shared: bool = False,
) -> tuple[Peer, str]:
    """A runner listener with ``cert``; the IUT is asked to dial it as ``expected`` (``shared``: from its shared
    socket)."""
    peer = Peer.listener(config(is_client=False, certificate=cert, key=key, chain=chain, alpn=alpn))
    iut.peer = peer
    tag = iut.dial(peer.port, str(expected.peer_id), shared=shared)
    peer.pump(lambda: peer.handshake is not None or peer.closed is not None, WAIT)
    return peer, tag


def outcome(iut: Iut, tag: str) -> Event:
    return iut.expect(lambda e: e.get("event") in ("dialed", "dial_failed") and e.get("dial") == tag, "the dial result")


def refused(iut: Iut, cert: x509.Certificate, key: ed25519.Ed25519PrivateKey, code: ErrorCode, **kw: object) -> str:
    """The IUT refuses the runner's listener: it reports ``code``, closes with it and sends no proof."""
    peer, tag = listen(iut, cert, key, **kw)  # type: ignore[arg-type]
    try:
        result = outcome(iut, tag)
        expect(result["event"] == "dial_failed", f"the IUT accepted the listener: {result}")
        expect(result.get("code") == code.name, f"the IUT reports {result.get('code')!r}, expected {code.name}")
        reason = closed_with(peer, code, handshake=True)
        expect(not any(peer.streams.values()), "the IUT sent stream data (its proof?) to a listener it refuses")
        return reason
    finally:
        peer.close_socket()


def good(
    iut: Iut, cert: x509.Certificate, key: ed25519.Ed25519PrivateKey, *, shared: bool = False
) -> tuple[Peer, object]:
    """The IUT dials and accepts the runner's listener: (the runner's peer, the IUT's carrier id)."""
    peer, tag = listen(iut, cert, key, shared=shared)
    result = outcome(iut, tag)
    if result["event"] != "dialed":
        peer.close_socket()
        raise CaseFailed(f"the IUT refused a valid listener: {result}")
    expect(result.get("peer_id") == str(RUNNER.peer_id), f"the IUT reports the listener as {result.get('peer_id')}")
    return peer, result["conn"]


def _binding_cert(
    identity: Identity, *, role: int = certs.ROLE_LISTENER, other_key: bool = False
) -> tuple[x509.Certificate, ed25519.Ed25519PrivateKey]:
    key = ed25519.Ed25519PrivateKey.generate()
    signed = ed25519.Ed25519PrivateKey.generate() if other_key else key
    record = certs.binding(identity, certs.spki_of(signed.public_key()), role)
    return certs.certificate(key, certs.octet_string(record)), key


@case(
    "quic/dial/1",
    section="§3.3",
    title="the IUT dials with version 1 and p2pos/1, no DATAGRAM, opens stream 0 with its proof, carries records",
    requirements=("QUIC-2.1", "QUIC-2.2", "QUIC-2.3", "QUIC-2.5", "QUIC-3.2.1", "QUIC-3.3.1", "QUIC-4.5"),
)
def _(iut: Iut) -> str | None:
    cert, key = certs.good_certificate(RUNNER)
    peer, conn = good(iut, cert, key)
    try:
        handshake = need(peer.handshake, "the QUIC handshake did not complete")
        quic = need(peer.quic, "no QUIC connection")
        expect(handshake.alpn_protocol == certs.ALPN, f"ALPN {handshake.alpn_protocol!r}")
        versions = {version for _, version in peer.long_headers}
        expect(versions == {1}, f"the IUT's long-header packets carry versions {sorted(versions)}, not only 1")
        zero_rtt = [hex(first) for first, _ in peer.long_headers if (first & 0x30) >> 4 == 1]
        expect(not zero_rtt, f"the IUT sent 0-RTT packets {zero_rtt}")
        expect(quic._remote_max_datagram_frame_size is None, "the IUT sent max_datagram_frame_size")
        idle = quic._remote_max_idle_timeout
        expect(not idle or idle > KEEPALIVE, f"the IUT's max_idle_timeout ({idle} s) is not above {KEEPALIVE} s")
        peer.pump(lambda: bool(peer.frames(0)[0]), WAIT)
        frames, _ = peer.frames(0)
        expect(bool(frames), "the IUT sent no frame on stream 0")
        expect(len(frames[0]) <= certs.MAX_PROOF, f"the proof has {len(frames[0])} bytes (at most 512)")
        try:
            signer = certs.check_record(frames[0], certs.ROLE_DIALER, certs.cert_spki(cert))
        except ValueError as exc:
            raise CaseFailed(f"the IUT's first frame is not a valid proof: {exc}") from None
        expect(str(signer) == iut.peer_id, f"the proof is signed by {signer}, the IUT is {iut.peer_id}")
        peer.send(0, frame(b"to the IUT") + frame(b"x" * 3000))
        expect(records(iut, conn, 2) == [b"to the IUT", b"x" * 3000], "the IUT did not hand the records over")
        iut.command(f"send {conn} {b'from the IUT'.hex()}")
        peer.pump(lambda: len(peer.frames(0)[0]) >= 2, WAIT)
        expect(peer.frames(0)[0][1:] == [b"from the IUT"], f"the IUT's record did not arrive: {peer.frames(0)[0][1:]}")
        others = sorted(sid for sid in peer.streams if sid != 0)
        expect(not others, f"the IUT opened other streams: {others}")
        return None
    finally:
        peer.close()
        peer.close_socket()


@case(
    "quic/dial/2",
    section="§3.2",
    title="a certificate without the binding extension is refused with BAD_IDENTITY, no proof sent",
    requirements=("QUIC-3.2.2", "QUIC-3.2.3", "QUIC-4.2"),
)
def _(iut: Iut) -> str | None:
    key = ed25519.Ed25519PrivateKey.generate()
    return refused(iut, certs.certificate(key, None), key, ErrorCode.BAD_IDENTITY)


@case(
    "quic/dial/3",
    section="§3.2",
    title="a valid binding by another identity than the expected one is refused with IDENTITY_MISMATCH",
    requirements=("QUIC-3.2.4", "QUIC-4.2"),
)
def _(iut: Iut) -> str | None:
    cert, key = certs.good_certificate(OTHER)
    return refused(iut, cert, key, ErrorCode.IDENTITY_MISMATCH)


@case(
    "quic/dial/4",
    section="§3.2",
    title="a binding by the expected identity over another TLS key is refused with BAD_IDENTITY",
    requirements=("QUIC-3.2.1", "QUIC-3.2.2"),
)
def _(iut: Iut) -> str | None:
    cert, key = _binding_cert(RUNNER, other_key=True)
    return refused(iut, cert, key, ErrorCode.BAD_IDENTITY)


@case(
    "quic/dial/5",
    section="§3.2",
    title="a binding with the dialer's role byte (0x02) is refused with BAD_IDENTITY",
    requirements=("QUIC-3.2.1", "QUIC-3.2.2"),
)
def _(iut: Iut) -> str | None:
    cert, key = _binding_cert(RUNNER, role=certs.ROLE_DIALER)
    return refused(iut, cert, key, ErrorCode.BAD_IDENTITY)


@case(
    "quic/dial/6",
    section="§3.2",
    title="a binding whose signature does not verify is refused with BAD_IDENTITY",
    requirements=("QUIC-3.2.1", "QUIC-3.2.2"),
)
def _(iut: Iut) -> str | None:
    key = ed25519.Ed25519PrivateKey.generate()
    record = certs.binding(RUNNER, certs.spki_of(key.public_key()))
    record = record[:-1] + bytes([record[-1] ^ 0x80])
    return refused(iut, certs.certificate(key, certs.octet_string(record)), key, ErrorCode.BAD_IDENTITY)


@case(
    "quic/dial/7",
    section="§3.2",
    title="an extension that is not exactly one DER OCTET STRING (bare record, trailing byte) is refused",
    requirements=("QUIC-3.2.2",),
)
def _(iut: Iut) -> str | None:
    for shape in ("bare", "trailing"):
        key = ed25519.Ed25519PrivateKey.generate()
        record = certs.binding(RUNNER, certs.spki_of(key.public_key()))
        value = record if shape == "bare" else certs.octet_string(record) + b"\x00"
        refused(iut, certs.certificate(key, value), key, ErrorCode.BAD_IDENTITY)
    return None


@case(
    "quic/dial/8",
    section="§3.2",
    title="a listener that sends more than one certificate is refused with BAD_IDENTITY",
    requirements=("QUIC-3.2.2",),
)
def _(iut: Iut) -> str | None:
    cert, key = certs.good_certificate(RUNNER)
    extra, _ = certs.good_certificate(RUNNER)
    return refused(iut, cert, key, ErrorCode.BAD_IDENTITY, chain=(extra,))


@case(
    "quic/dial/9",
    section="§3.1",
    title="a certificate's dates and names carry no meaning: expired, future and odd names are accepted",
    requirements=("QUIC-3.1.4",),
)
def _(iut: Iut) -> str | None:
    for start, name in (
        (datetime.datetime(2001, 1, 1, tzinfo=datetime.UTC), "example.com"),
        (datetime.datetime(2090, 1, 1, tzinfo=datetime.UTC), "not-p2pos"),
    ):
        key = ed25519.Ed25519PrivateKey.generate()
        record = certs.binding(RUNNER, certs.spki_of(key.public_key()))
        cert = certs.certificate(key, certs.octet_string(record), not_before=start, name=name)
        peer, _ = good(iut, cert, key)
        peer.close()
        peer.close_socket()
    return None


@case(
    "quic/dial/10",
    section="§3.2",
    title="a TLS key accepted before is not trusted again without its binding",
    requirements=("QUIC-3.2.3",),
)
def _(iut: Iut) -> str | None:
    key = ed25519.Ed25519PrivateKey.generate()
    cert = certs.certificate(key, certs.octet_string(certs.binding(RUNNER, certs.spki_of(key.public_key()))))
    peer, _ = good(iut, cert, key)
    peer.close()
    peer.close_socket()
    return refused(iut, certs.certificate(key, None), key, ErrorCode.BAD_IDENTITY)


@case(
    "quic/dial/11",
    section="§2",
    title="a listener without p2pos/1 fails the dial: no proof is sent",
    requirements=("QUIC-2.1",),
)
def _(iut: Iut) -> str | None:
    cert, key = certs.good_certificate(RUNNER)
    peer, tag = listen(iut, cert, key, alpn=("h3",))
    try:
        result = outcome(iut, tag)
        expect(result["event"] == "dial_failed", f"the IUT accepted a listener without p2pos/1: {result}")
        peer.pump(timeout=0.2)
        expect(not any(peer.streams.values()), "the IUT sent stream data to a listener without p2pos/1")
        return str(result.get("code"))
    finally:
        peer.close_socket()


@case(
    "quic/dial/12",
    section="§2",
    title="data from the listener on a stream of its own closes the carrier with PROTOCOL_VIOLATION",
    requirements=("QUIC-2.2a", "QUIC-4.2"),
)
def _(iut: Iut) -> str | None:
    cert, key = certs.good_certificate(RUNNER)
    peer, conn = good(iut, cert, key)
    try:
        peer.pump(lambda: bool(peer.frames(0)[0]), WAIT)
        peer.send(1, frame(b"on the listener's stream 1"))
        closed_with(peer, ErrorCode.PROTOCOL_VIOLATION)
        ended(iut, conn, ErrorCode.PROTOCOL_VIOLATION)
        return None
    finally:
        peer.close_socket()


@case(
    "quic/dial/13",
    section="§4",
    title="the IUT's clean end: its frames, then FIN, then CONNECTION_CLOSE 0x1d with NO_ERROR",
    requirements=("QUIC-4.1",),
)
def _(iut: Iut) -> str | None:
    cert, key = certs.good_certificate(RUNNER)
    peer, conn = good(iut, cert, key)
    try:
        sent = [b"last %d" % i for i in range(5)]
        for record in sent:
            iut.command(f"send {conn} {record.hex()}")
        iut.command(f"close {conn}")
        peer.pump(lambda: peer.closed is not None, WAIT)
        closed = need(peer.closed, "the IUT did not close the connection")
        expect(0 in peer.fin, "the IUT closed the connection without ending stream 0 (FIN)")
        frames, rest = peer.frames(0)
        expect(frames[1:] == sent and rest == b"", f"stream 0 before the FIN: {frames[1:]} + {rest!r}")
        expect(closed.app and closed.code == 0, f"the IUT closed with {closed}, not NO_ERROR")
        return None
    finally:
        peer.close_socket()
