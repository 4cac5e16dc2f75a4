"""QUIC on the IUT's shared socket (spec/quic.md §5.1): p2pos sessions and QUIC on one UDP port.

The IUT names that port in its ``ready`` line (``shared_port``); for an IUT without one these
cases are skipped.  The runner reaches the port both ways at once: its p2pos endpoint (the
reference core, on a UDP socket of its own) runs a session handshake there, and its QUIC peer
dials a carrier there; a burst of datagrams in QUIC's range that no connection owns must be
counted drops (the ``drops`` command) that leave the socket working; the IUT dials from that
socket (``shared_dial``) with §3's authentication both ways, and punches from it when told of
an introduction (``introduced``).
"""

from __future__ import annotations

import os
import socket
import time

from cryptography.hazmat.primitives.asymmetric import ed25519

from p2pos.proto import Endpoint, HandshakeCompleted, LocalKeys
from p2pos.proto.errors import ErrorCode
from p2pos.proto.identity.peer_id import PeerId

from ..checks import CaseFailed, expect
from . import certs
from .cases_dial import good, refused
from .cases_listen import authenticated, connect, refused_proof
from .cases_session import STATIC, _exchange
from .control import Event, Iut
from .helpers import OTHER, RUNNER, WAIT, need, records
from .peer import LOOPBACK
from .registry import case

SHARING = "§5.1"
#: One datagram for each edge of QUIC's two ranges (QUIC-5.1.1): 64-79 is also TURN's
#: ``turn-channel``, which a shared socket gives to QUIC.  None names a QUIC connection.
QUIC_FIRST_BYTES = (0x40, 0x4F, 0x50, 0x7F, 0xC0, 0xFF)


def shared_port(iut: Iut) -> int:
    return need(iut.shared_port, "the IUT has no shared socket")


def udp_handshake(iut: Iut, port: int) -> str:
    """The runner's p2pos endpoint, on a UDP socket of its own, completes a session handshake with
    the IUT's ``port`` (INIT out, RESPONSE back) and sends a message (a DATA record): the IUT reports
    the session and the message from that port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, 0))
    try:
        endpoint = Endpoint(LocalKeys.create(RUNNER, STATIC))
        target = (LOOPBACK, port)
        session = endpoint.connect(target, time.monotonic(), expected_peer=PeerId.parse(iut.peer_id))
        deadline = time.monotonic() + WAIT
        done: HandshakeCompleted | None = None

        def flush() -> None:
            for datagrams, _, _ in endpoint.data_to_send(time.monotonic()):
                for datagram in datagrams:
                    sock.sendto(datagram, target)  # its one session's one address

        while done is None:
            flush()
            while (happened := endpoint.next_event()) is not None:
                if isinstance(happened, HandshakeCompleted):
                    done = happened
            if done is not None:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise CaseFailed(
                    f"no session handshake with the IUT's shared port {port} within {WAIT} s: the p2pos datagrams "
                    f"(first byte 4-15) did not reach its sessions, or their answer did not come back "
                    f"(runner's endpoint drops: {dict(endpoint.drops)})"
                )
            timer = endpoint.get_timer()
            sock.settimeout(max(0.001, min(left, 0.05, (timer - time.monotonic()) if timer is not None else 0.05)))
            try:
                data, addr = sock.recvfrom(65536)
            except TimeoutError:
                if timer is not None and time.monotonic() >= timer:
                    endpoint.handle_timer(time.monotonic())
                continue
            expect(addr[:2] == target, f"the IUT answered the INIT from {addr}, not from its shared port {port}")
            endpoint.receive_data(data, addr[:2], time.monotonic())
        expect(str(done.peer_id) == iut.peer_id, f"the session's peer is {done.peer_id}, the IUT is {iut.peer_id}")
        runner_port = int(sock.getsockname()[1])
        event = iut.expect(
            lambda e: e.get("event") == "session" and e.get("port") == runner_port, "the session from the runner's port"
        )
        expect(event.get("peer_id") == str(RUNNER.peer_id), f"the IUT's session peer is {event.get('peer_id')}")
        session.send(b"over the shared socket", time.monotonic())
        endpoint.updated(session.local_index)
        flush()
        got = iut.expect(
            lambda e: e.get("event") == "message" and e.get("port") == runner_port, "the message from the runner's port"
        )
        expect(got.get("data") == b"over the shared socket".hex(), f"the IUT received {got.get('data')!r}")
        return f"session handshake and a message on port {port}"
    finally:
        sock.close()


def carrier_on(iut: Iut, port: int) -> str:
    """The runner dials a carrier to ``port``: the IUT's certificate binds its identity, the runner's
    proof is accepted, and a record crosses."""
    peer = connect(iut, port)
    try:
        expect(peer.handshake is not None, f"no QUIC handshake with the IUT's shared port {port}: {peer.closed}")
        cert, _ = peer.peer_certificates()
        try:
            signer, _ = certs.check_binding(need(cert, "no certificate from the IUT"))
        except ValueError as exc:
            raise CaseFailed(f"the shared socket's certificate does not conform (QUIC-3.2.1): {exc}") from None
        expect(str(signer) == iut.peer_id, f"the shared socket's certificate binds {signer}, the IUT is {iut.peer_id}")
        conn = authenticated(iut, peer, b"\x04over the shared socket")
        expect(records(iut, conn, 1) == [b"\x04over the shared socket"], "the IUT did not hand the record over")
        return f"carrier {conn} on port {port}"
    finally:
        peer.close()
        peer.close_socket()


def quic_drops(iut: Iut) -> int:
    iut.command("drops")
    event: Event = iut.expect(lambda e: e.get("event") == "drops", "its drops (the drops command)")
    count = event.get("quic")
    expect(isinstance(count, int), f"the drops event has no count of QUIC drops: {event}")
    assert isinstance(count, int)
    return count


@case(
    "quic/shared/1",
    section=SHARING,
    title="on the shared socket p2pos datagrams (first byte 4-15) reach the sessions and QUIC's reach QUIC: "
    "a session handshake and an authenticated carrier on one port",
    requirements=("QUIC-5.1.1",),
    shared=True,
)
def _(iut: Iut) -> str | None:
    port = shared_port(iut)
    return f"{udp_handshake(iut, port)}; {carrier_on(iut, port)}"


@case(
    "quic/shared/2",
    section=SHARING,
    title="datagrams in QUIC's ranges (64-127 with turn-channel's 64-79, 192-255) of no connection are counted "
    "drops of QUIC, and the socket keeps serving sessions and carriers",
    requirements=("QUIC-5.1.1",),
    shared=True,
)
def _(iut: Iut) -> str | None:
    port = shared_port(iut)
    before = quic_drops(iut)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for first in QUIC_FIRST_BYTES:
            sock.sendto(bytes([first]) + os.urandom(40), (LOOPBACK, port))
    deadline = time.monotonic() + WAIT
    while (dropped := quic_drops(iut) - before) < len(QUIC_FIRST_BYTES) and time.monotonic() < deadline:
        time.sleep(0.05)
    expect(
        dropped == len(QUIC_FIRST_BYTES),
        f"QUIC counted {dropped} drops for the {len(QUIC_FIRST_BYTES)} datagrams of no connection with first bytes "
        f"{[hex(b) for b in QUIC_FIRST_BYTES]}: each must reach QUIC (64-127, 192-255) and be a counted drop",
    )
    expect(iut.alive, "the IUT exited on datagrams of no QUIC connection")
    return f"{dropped} drops; then {udp_handshake(iut, port)}; {carrier_on(iut, port)}"


@case(
    "quic/shared/3",
    section=SHARING,
    title="the IUT dials a carrier from its shared socket: the runner's listener sees it come from that port, "
    "both sides authenticate (§3), and a session the runner starts runs over it",
    requirements=("QUIC-5.1.2",),
    shared=True,
)
def _(iut: Iut) -> str | None:
    port = shared_port(iut)
    cert, key = certs.good_certificate(RUNNER)
    peer, conn = good(iut, cert, key, shared=True)
    try:
        expect(
            peer.remote == (LOOPBACK, port),
            f"the IUT's dial came from {peer.remote}, not from its shared socket ({LOOPBACK}, {port})",
        )
        peer.pump(lambda: bool(peer.frames(0)[0]), WAIT)
        frames, _ = peer.frames(0)
        expect(bool(frames), "the IUT sent no proof on stream 0")
        try:
            signer = certs.check_record(frames[0], certs.ROLE_DIALER, certs.cert_spki(cert))
        except ValueError as exc:
            raise CaseFailed(f"the IUT's first frame is not a valid proof: {exc}") from None
        expect(str(signer) == iut.peer_id, f"the proof is signed by {signer}, the IUT is {iut.peer_id}")
        _exchange(iut, peer, conn, skip=1)
        return f"carrier {conn} dialed from port {port}"
    finally:
        peer.close()
        peer.close_socket()


@case(
    "quic/shared/4",
    section=SHARING,
    title="a dial from the shared socket to a listener of another identity than the expected one is refused "
    "with IDENTITY_MISMATCH",
    requirements=("QUIC-5.1.2",),
    shared=True,
)
def _(iut: Iut) -> str | None:
    shared_port(iut)
    cert, key = certs.good_certificate(OTHER)
    return refused(iut, cert, key, ErrorCode.IDENTITY_MISMATCH, shared=True)


@case(
    "quic/shared/5",
    section=SHARING,
    title="the shared socket's listener refuses a dialer's proof over another TLS key with BAD_IDENTITY",
    requirements=("QUIC-5.1.2",),
    shared=True,
)
def _(iut: Iut) -> str | None:
    port = shared_port(iut)
    other = certs.spki_of(ed25519.Ed25519PrivateKey.generate().public_key())
    return refused_proof(iut, certs.binding(RUNNER, other, certs.ROLE_DIALER), port)


@case(
    "quic/shared/6",
    section=SHARING,
    title="told of an introduction, the IUT sends from its shared socket a punch to the peer: 21 bytes, 0x40 "
    "then 20 random bytes",
    requirements=("QUIC-5.1.4",),
    shared=True,
)
def _(iut: Iut) -> str | None:
    port = shared_port(iut)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        runner_port = int(sock.getsockname()[1])
        punches: list[bytes] = []
        for _ in range(2):
            iut.command(f"introduced {LOOPBACK} {runner_port}")
            sock.settimeout(WAIT)
            try:
                data, addr = sock.recvfrom(65536)
            except TimeoutError:
                raise CaseFailed(f"no punch reached the introduced address within {WAIT} s") from None
            expect(
                addr[:2] == (LOOPBACK, port), f"the punch came from {addr}, not from the shared socket's port {port}"
            )
            expect(len(data) == 21 and data[0] == 0x40, f"the punch is {data.hex()}: not 21 bytes starting 0x40")
            punches.append(data)
    expect(punches[0][1:] != punches[1][1:], f"two punches carry the same 20 bytes: {punches[0][1:].hex()}")
    return f"two punches from port {port}"
