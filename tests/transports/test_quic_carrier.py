"""The QUIC carrier on loopback (spec/quic.md): authentication both ways, records, a p2pos session.

Every test runs a real listener and dialer on 127.0.0.1 (one test on ::1) with aioquic
underneath; the carrier's checks are forced to fail by giving the listener a certificate
with a broken binding, or the dialer a broken proof, through the ``quic_tls`` functions
the driver calls.
"""

from __future__ import annotations

import hashlib
import random
import socket
from collections.abc import Callable

import pytest
import trio
from aioquic.quic.configuration import QuicConfiguration
from cryptography.hazmat.primitives.asymmetric import ed25519
from helpers import make_keys

from p2pos.proto import Endpoint, HandshakeCompleted, MessageReceived
from p2pos.proto.errors import ErrorCode, LocalProtocolError
from p2pos.proto.identity.identity import Identity, SignedRecord
from p2pos.transports import quic, quic_tls
from p2pos.transports.quic import BadCertificate, CarrierClosed, HandshakeTimeout, PeerMismatch, QuicCarrier

ALICE_KEYS, BOB_KEYS = make_keys("alice"), make_keys("bob")
ALICE, BOB, CAROL = ALICE_KEYS.identity, BOB_KEYS.identity, make_keys("carol").identity
LOOPBACK = "127.0.0.1"
REAL_PROOF = quic_tls.dialer_proof


async def accept_one(listener: quic.QuicListener, into: list[QuicCarrier]) -> None:
    into.append(await listener.accept())


async def test_handshake_authenticates_both_sides() -> None:
    """[QUIC-2.1] [QUIC-3.2.1] [QUIC-3.4.1] [QUIC-3.3.2]: each side learns the other's id.

    A record may follow the dialer's proof at once.
    """
    async with quic.listen(LOOPBACK, 0, BOB) as listener:
        accepted: list[QuicCarrier] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept_one, listener, accepted)
            async with quic.dial(LOOPBACK, listener.port, expected_peer_id=BOB.peer_id, identity=ALICE) as carrier:
                assert carrier.peer_id == BOB.peer_id
                await carrier.send_record(b"\x04hello")
                with trio.fail_after(5):
                    while not accepted:
                        await trio.sleep(0.01)
                (server,) = accepted
                assert server.peer_id == ALICE.peer_id
                assert await server.receive_record() == b"\x04hello"
                await server.send_record(b"\x05world")
                assert await carrier.receive_record() == b"\x05world"
        assert listener.drops == {}


async def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.fail("IPv6 is required on the test machines (::1)")
    async with quic.listen("::1", 0, BOB) as listener, trio.open_nursery() as nursery:
        accepted: list[QuicCarrier] = []
        nursery.start_soon(accept_one, listener, accepted)
        async with quic.dial("::1", listener.port, expected_peer_id=BOB.peer_id, identity=ALICE) as carrier:
            await carrier.send_record(b"v6")
            with trio.fail_after(5):
                while not accepted:
                    await trio.sleep(0.01)
            assert await accepted[0].receive_record() == b"v6"


async def test_wrong_expected_peer_is_refused() -> None:
    """[QUIC-3.2.4]: the listener is Bob, the dialer expects Carol: PeerMismatch, and Bob accepts nothing."""
    async with quic.listen(LOOPBACK, 0, BOB) as listener:
        with trio.fail_after(5), pytest.raises(PeerMismatch) as caught:
            async with quic.dial(LOOPBACK, listener.port, expected_peer_id=CAROL.peer_id, identity=ALICE):
                pytest.fail("dial returned a carrier for the wrong peer")
        assert caught.value.code is ErrorCode.IDENTITY_MISMATCH
        assert caught.value.got == BOB.peer_id
        await trio.sleep(0.1)
        with trio.move_on_after(0.2) as scope:
            await listener.accept()
        assert scope.cancelled_caught, "the listener accepted a dialer that never proved its identity"


def _no_binding(identity: Identity, now: float) -> tuple[object, ed25519.Ed25519PrivateKey]:
    from test_quic_tls import certificate_with

    key = ed25519.Ed25519PrivateKey.generate()
    return certificate_with(None, key), key


def _bad_signature(identity: Identity, now: float) -> tuple[object, ed25519.Ed25519PrivateKey]:
    from test_quic_tls import certificate_with, octets

    key = ed25519.Ed25519PrivateKey.generate()
    own = quic_tls.spki(certificate_with(None, key))
    record = SignedRecord.create(identity, quic_tls.DOMAIN_QUIC_TLS_KEY, bytes([quic_tls.ROLE_LISTENER]) + own).encode()
    return certificate_with(octets(record[:-1] + bytes([record[-1] ^ 1])), key), key


@pytest.mark.parametrize("maker", [_no_binding, _bad_signature], ids=["no-binding", "bad-signature"])
async def test_listener_certificate_without_valid_binding_is_refused(
    maker: Callable[[Identity, float], tuple[object, ed25519.Ed25519PrivateKey]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """[QUIC-3.2.2] [QUIC-3.2.3]: over a real handshake, a broken certificate fails the dial."""
    monkeypatch.setattr(quic_tls, "make_certificate", maker)
    async with quic.listen(LOOPBACK, 0, BOB) as listener:
        with trio.fail_after(5), pytest.raises(BadCertificate) as caught:
            async with quic.dial(LOOPBACK, listener.port, expected_peer_id=BOB.peer_id, identity=ALICE):
                pytest.fail("dial returned a carrier for a certificate without a valid binding")
        assert caught.value.code is ErrorCode.BAD_IDENTITY


def _proof_for_another_key(identity: Identity, listener_spki: bytes) -> bytes:
    other = quic_tls.spki(quic_tls.make_certificate(identity, 0.0)[0])
    return REAL_PROOF(identity, other)


def _proof_with_listener_role(identity: Identity, listener_spki: bytes) -> bytes:
    payload = bytes([quic_tls.ROLE_LISTENER]) + listener_spki
    return SignedRecord.create(identity, quic_tls.DOMAIN_QUIC_TLS_KEY, payload).encode()


def _garbage_proof(identity: Identity, listener_spki: bytes) -> bytes:
    return b"\x04" * 40


@pytest.mark.parametrize(
    "proof", [_proof_for_another_key, _proof_with_listener_role, _garbage_proof], ids=["other-key", "role", "garbage"]
)
async def test_dialer_with_a_bad_proof_is_refused(
    proof: Callable[[Identity, bytes], bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """[QUIC-3.3.1] [QUIC-3.4.1] [QUIC-3.4.2] [QUIC-4.2]: the listener closes with BAD_IDENTITY and accepts nothing."""
    monkeypatch.setattr(quic_tls, "dialer_proof", proof)
    async with quic.listen(LOOPBACK, 0, BOB) as listener:
        async with quic.dial(LOOPBACK, listener.port, expected_peer_id=BOB.peer_id, identity=ALICE) as carrier:
            with trio.fail_after(5), pytest.raises(CarrierClosed) as caught:
                await carrier.receive_record()
            assert caught.value.code is ErrorCode.BAD_IDENTITY
        assert listener.drops["bad_proof"] == 1
        with trio.move_on_after(0.2) as scope:
            await listener.accept()
        assert scope.cancelled_caught


async def test_dialer_that_sends_no_proof_is_closed_by_the_listener(monkeypatch: pytest.MonkeyPatch) -> None:
    """[QUIC-3.4.3]: no proof within the handshake timeout: the listener closes with HANDSHAKE_TIMEOUT."""
    monkeypatch.setattr(quic, "frame", lambda datagram: b"")  # the dialer's proof frame goes out empty
    async with quic.listen(LOOPBACK, 0, BOB, handshake_timeout=0.5) as listener:
        async with quic.dial(LOOPBACK, listener.port, expected_peer_id=BOB.peer_id, identity=ALICE) as carrier:
            with trio.fail_after(5), pytest.raises(CarrierClosed) as caught:
                await carrier.receive_record()
            assert caught.value.code is ErrorCode.HANDSHAKE_TIMEOUT
        assert listener._driver.pending == 0


async def test_handshake_timeout_when_nobody_answers() -> None:
    """A UDP port that swallows everything: HandshakeTimeout after handshake_timeout."""
    silent = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await silent.bind((LOOPBACK, 0))
    port = silent.getsockname()[1]
    try:
        start = trio.current_time()
        with trio.fail_after(5), pytest.raises(HandshakeTimeout) as caught:
            async with quic.dial(LOOPBACK, port, expected_peer_id=BOB.peer_id, identity=ALICE, handshake_timeout=0.5):
                pytest.fail("dial to a silent port returned")
        assert 0.5 <= trio.current_time() - start < 2.0
        assert caught.value.code is ErrorCode.HANDSHAKE_TIMEOUT
    finally:
        silent.close()


async def test_names_are_refused_without_a_lookup() -> None:
    with pytest.raises(LocalProtocolError):
        async with quic.dial("localhost", 443, expected_peer_id=BOB.peer_id, identity=ALICE):
            pass


async def test_records_round_trip_in_order_both_ways() -> None:
    """[QUIC-2.3] [QUIC-2.4]: records of 1..65535 bytes arrive whole and in order, both ways."""
    rng = random.Random(7)
    sizes = [1, 2, 1199, 1200, 1201, 16384, 65535, *(rng.randint(1, 65535) for _ in range(200))]
    records = [rng.randbytes(size) for size in sizes]
    async with quic.listen(LOOPBACK, 0, BOB) as listener:
        accepted: list[QuicCarrier] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept_one, listener, accepted)
            async with quic.dial(LOOPBACK, listener.port, expected_peer_id=BOB.peer_id, identity=ALICE) as dialer:
                for record in records:
                    await dialer.send_record(record)
                with trio.fail_after(5):
                    while not accepted:
                        await trio.sleep(0.01)
                server = accepted[0]
                with trio.fail_after(20):
                    got = [await server.receive_record() for _ in records]
                assert got == records
                for record in reversed(records):
                    await server.send_record(record)
                with trio.fail_after(20):
                    back = [await dialer.receive_record() for _ in records]
                assert back == records[::-1]
                for bad in (b"", bytes(65536)):
                    with pytest.raises(LocalProtocolError):
                        await dialer.send_record(bad)


async def test_fifty_megabytes_with_sha256() -> None:
    """[QUIC-2.3] [QUIC-4.1]: 50 MB in records of mixed sizes; the receiver's SHA-256 matches; clean end."""
    total = 50 * 1024 * 1024
    rng = random.Random(50)
    block = rng.randbytes(1 << 20)
    sent = hashlib.sha256()
    received = hashlib.sha256()
    got = 0
    async with quic.listen(LOOPBACK, 0, BOB) as listener:

        async def receive() -> None:
            nonlocal got
            server = await listener.accept()
            with pytest.raises(CarrierClosed) as end:
                while True:
                    record = await server.receive_record()
                    received.update(record)
                    got += len(record)
            assert end.value.code is ErrorCode.NO_ERROR

        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive)
                async with quic.dial(LOOPBACK, listener.port, expected_peer_id=BOB.peer_id, identity=ALICE) as dialer:
                    offset = 0
                    while offset < total:
                        size = min(rng.choice((1200, 16384, 65535)), total - offset)
                        start = offset % len(block)
                        chunk = (
                            (block + block)[start : start + size]
                            if start + size > len(block)
                            else block[start : start + size]
                        )
                        sent.update(chunk)
                        await dialer.send_record(chunk)
                        offset += size
    assert got == total
    assert received.hexdigest() == sent.hexdigest()


async def test_p2pos_session_over_the_carrier() -> None:
    """[QUIC-5.1]: an Endpoint pair runs a p2pos handshake and messages over the carrier's records."""
    a, b = Endpoint(ALICE_KEYS), Endpoint(BOB_KEYS)
    events: dict[str, list[object]] = {"a": [], "b": []}
    changed = trio.Event()

    async def flush(endpoint: Endpoint, carrier: QuicCarrier, name: str) -> None:
        nonlocal changed
        now = trio.current_time()
        for datagrams, _address, _local in endpoint.data_to_send(now):
            for datagram in datagrams:
                await carrier.send_record(datagram)
        while (event := endpoint.next_event()) is not None:
            events[name].append(event)
        changed.set()
        changed = trio.Event()

    async def pump(endpoint: Endpoint, carrier: QuicCarrier, name: str, address: str) -> None:
        while True:
            try:
                record = await carrier.receive_record()
            except CarrierClosed:
                return
            endpoint.receive_data(record, address, trio.current_time())
            await flush(endpoint, carrier, name)

    async def until(predicate: Callable[[], bool]) -> None:
        with trio.fail_after(10):
            while not predicate():
                await changed.wait()

    def of(name: str, kind: type) -> list:  # type: ignore[type-arg]
        return [e for e in events[name] if isinstance(e, kind)]

    async with quic.listen(LOOPBACK, 0, BOB) as listener, trio.open_nursery() as nursery:
        async with quic.dial(LOOPBACK, listener.port, expected_peer_id=BOB.peer_id, identity=ALICE) as dialer:
            nursery.start_soon(pump, a, dialer, "a", "quic:bob")
            session = a.connect("quic:bob", trio.current_time(), expected_peer=BOB.peer_id)
            await flush(a, dialer, "a")
            server = await listener.accept()
            nursery.start_soon(pump, b, server, "b", "quic:alice")
            await until(lambda: bool(of("a", HandshakeCompleted)) and bool(of("b", HandshakeCompleted)))
            assert of("a", HandshakeCompleted)[0].peer_id == BOB.peer_id
            assert of("b", HandshakeCompleted)[0].peer_id == ALICE.peer_id
            (responder,) = b.sessions()
            messages = [bytes([i]) * (100 + 10 * i) for i in range(100)]
            for message in messages:
                session.send(message, trio.current_time())
            a.updated(session.local_index)
            await flush(a, dialer, "a")
            responder.send(b"reply", trio.current_time())
            b.updated(responder.local_index)
            await flush(b, server, "b")
            await until(lambda: len(of("b", MessageReceived)) == len(messages) and bool(of("a", MessageReceived)))
            assert [e.data for e in of("b", MessageReceived)] == messages
            assert [e.data for e in of("a", MessageReceived)] == [b"reply"]
            assert a.drops == {} and b.drops == {}
        nursery.cancel_scope.cancel()


async def test_garbage_does_not_kill_the_listener() -> None:
    """[QUIC-4.3] [QUIC-2.1]: junk, a junk Initial and other versions are dropped (and counted) or answered."""
    rng = random.Random(3)
    async with quic.listen(LOOPBACK, 0, BOB) as listener:
        junk = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        await junk.bind((LOOPBACK, 0))
        try:
            target = (LOOPBACK, listener.port)
            initial_like = (
                bytes([0xC0]) + (1).to_bytes(4, "big") + b"\x08" + rng.randbytes(8) + b"\x08" + rng.randbytes(8)
            )
            packets = [
                b"",
                b"\x00",
                rng.randbytes(5),
                *(rng.randbytes(rng.randint(1, 1500)) for _ in range(200)),
                initial_like + b"\x00" + rng.randbytes(1300),  # an Initial whose protection fails
                bytes([0xC0]) + (0x1A2A3A4A).to_bytes(4, "big") + b"\x08" + bytes(8) + b"\x08" + bytes(8) + bytes(1200),
                # QUIC version 2 (RFC 9369): also answered with a Version Negotiation offering only v1 (QUIC-2.1)
                bytes([0xD0]) + (0x6B3343CF).to_bytes(4, "big") + b"\x08" + bytes(8) + b"\x08" + bytes(8) + bytes(1200),
            ]
            for packet in packets:
                await junk.sendto(packet, target)
            await trio.sleep(0.3)
            for _ in range(2):
                with trio.fail_after(5):
                    version_negotiation = await junk.recv(2048)
                assert version_negotiation[1:5] == bytes(4)  # a Version Negotiation packet answers each
                dcid_end = 6 + version_negotiation[5]
                versions = version_negotiation[dcid_end + 1 + version_negotiation[dcid_end] :]
                assert versions == (1).to_bytes(4, "big")  # QUIC version 1 only
        finally:
            junk.close()
        assert sum(listener.drops.values()) > 0
        accepted: list[QuicCarrier] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept_one, listener, accepted)
            async with quic.dial(LOOPBACK, listener.port, expected_peer_id=BOB.peer_id, identity=ALICE) as carrier:
                await carrier.send_record(b"still alive")
                with trio.fail_after(5):
                    while not accepted:
                        await trio.sleep(0.01)
                assert await accepted[0].receive_record() == b"still alive"
        # The junk Initial created a connection that never authenticated; it timed out or is pending.
        assert listener._driver.pending <= 1


async def test_a_dialer_without_the_p2pos_alpn_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """[QUIC-2.1]: a client offering another ALPN fails the TLS handshake; nothing is accepted."""
    original = quic._QuicSocket.configuration

    def other_alpn(self: quic._QuicSocket, *, is_client: bool, now: float) -> QuicConfiguration:
        config = original(self, is_client=is_client, now=now)
        if is_client:
            config.alpn_protocols = ["h3"]
        return config

    monkeypatch.setattr(quic._QuicSocket, "configuration", other_alpn)
    async with quic.listen(LOOPBACK, 0, BOB) as listener:
        with trio.fail_after(5), pytest.raises(CarrierClosed) as caught:
            async with quic.dial(LOOPBACK, listener.port, expected_peer_id=BOB.peer_id, identity=ALICE):
                pytest.fail("dial succeeded without the p2pos/1 ALPN")
        assert "0x178" in str(caught.value)  # CRYPTO_ERROR + no_application_protocol (120)
        with trio.move_on_after(0.2) as scope:
            await listener.accept()
        assert scope.cancelled_caught
        assert listener._driver.pending == 0


async def test_data_on_another_stream_closes_the_carrier() -> None:
    """[QUIC-2.2] [QUIC-2.2a] [QUIC-4.2]: data on a second stream: the listener closes with PROTOCOL_VIOLATION."""
    async with quic.listen(LOOPBACK, 0, BOB) as listener:
        async with quic.dial(LOOPBACK, listener.port, expected_peer_id=BOB.peer_id, identity=ALICE) as carrier:
            conn = carrier._conn
            assert conn.stream_id == 0
            with trio.fail_after(5):
                server = await listener.accept()
            conn.quic.send_stream_data(4, b"\x00\x01x")
            conn.driver.after(conn)
            with trio.fail_after(5), pytest.raises(CarrierClosed) as caught:
                await carrier.receive_record()
            assert caught.value.code is ErrorCode.PROTOCOL_VIOLATION
            assert server.closed
        assert listener.drops["other_stream"] == 1


async def test_unauthenticated_connections_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """[QUIC-3.4.4]: beyond MAX_PENDING unauthenticated connections, Initials are dropped and counted."""
    monkeypatch.setattr(quic, "MAX_PENDING", 0)
    async with quic.listen(LOOPBACK, 0, BOB) as listener:
        with trio.fail_after(5), pytest.raises(HandshakeTimeout):
            async with quic.dial(
                LOOPBACK, listener.port, expected_peer_id=BOB.peer_id, identity=ALICE, handshake_timeout=0.5
            ):
                pytest.fail("a listener at its bound accepted a connection")
        assert listener.drops["too_many_pending"] >= 1


async def test_both_directions_end_cleanly_on_aclose() -> None:
    """[QUIC-4.1]: the records sent before aclose() all arrive, then CarrierClosed(NO_ERROR) on both sides."""
    async with (
        quic.listen(LOOPBACK, 0, BOB) as listener,
        quic.dial(LOOPBACK, listener.port, expected_peer_id=BOB.peer_id, identity=ALICE) as carrier,
    ):
        for i in range(100):
            await carrier.send_record(b"%d" % i)
        with trio.fail_after(5):
            server = await listener.accept()
        await carrier.aclose()
        with trio.fail_after(5):
            got = [await server.receive_record() for _ in range(100)]
        assert got == [b"%d" % i for i in range(100)]
        with trio.fail_after(5), pytest.raises(CarrierClosed) as end:
            await server.receive_record()
        assert end.value.code is ErrorCode.NO_ERROR
        with pytest.raises(CarrierClosed) as mine:
            await carrier.send_record(b"late")
        assert mine.value.code is ErrorCode.NO_ERROR


async def test_an_idle_carrier_ends_by_the_quic_idle_timeout() -> None:
    """[QUIC-4.5]: nothing sent for longer than idle_timeout: both sides see the carrier closed."""
    async with (
        quic.listen(LOOPBACK, 0, BOB, idle_timeout=0.5) as listener,
        quic.dial(LOOPBACK, listener.port, expected_peer_id=BOB.peer_id, identity=ALICE, idle_timeout=0.5) as carrier,
    ):
        await carrier.send_record(b"one")
        with trio.fail_after(5):
            server = await listener.accept()
            assert await server.receive_record() == b"one"
        for i in range(6):  # traffic every 0.2 s (a session's keepalives) keeps it open past 0.5 s
            await trio.sleep(0.2)
            await carrier.send_record(b"%d" % i)
            with trio.fail_after(5):
                assert await server.receive_record() == b"%d" % i
        start = trio.current_time()
        for side in (carrier, server):
            with trio.fail_after(5), pytest.raises(CarrierClosed, match="QUIC idle timeout") as closed:
                await side.receive_record()
            assert closed.value.code is ErrorCode.IDLE_TIMEOUT
        assert trio.current_time() - start >= 0.4


async def test_no_datagram_frames_and_no_session_tickets() -> None:
    """[QUIC-2.5]: neither side advertises DATAGRAM support; the listener issues no session ticket (no 0-RTT)."""
    async with (
        quic.listen(LOOPBACK, 0, BOB) as listener,
        quic.dial(LOOPBACK, listener.port, expected_peer_id=BOB.peer_id, identity=ALICE) as carrier,
    ):
        await carrier.send_record(b"x")
        with trio.fail_after(5):
            server = await listener.accept()
            assert await server.receive_record() == b"x"
        for side in (carrier, server):
            connection = side._conn.quic
            assert connection._configuration.max_datagram_frame_size is None
            assert connection._remote_max_datagram_frame_size is None
        assert server._conn.quic.tls.new_session_ticket_cb is None  # aioquic issues tickets only with it


async def test_many_dialers_on_one_listener() -> None:
    """[QUIC-3.4.1]: ten dialers at once; each carrier is routed to its own connection and peer id."""
    dialers = [make_keys(f"dialer {i}").identity for i in range(10)]
    async with quic.listen(LOOPBACK, 0, BOB) as listener:
        accepted: dict[object, list[bytes]] = {}

        async def serve_one() -> None:
            carrier = await listener.accept()
            accepted[carrier.peer_id] = [await carrier.receive_record() for _ in range(20)]

        async def dial_one(identity: Identity) -> None:
            async with quic.dial(LOOPBACK, listener.port, expected_peer_id=BOB.peer_id, identity=identity) as carrier:
                await carrier.send_records([str(identity.peer_id).encode() + b":%d" % i for i in range(20)])
                with trio.move_on_after(5):
                    while identity.peer_id not in accepted:
                        await trio.sleep(0.01)

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for _ in dialers:
                    nursery.start_soon(serve_one)
                for identity in dialers:
                    nursery.start_soon(dial_one, identity)
        assert set(accepted) == {identity.peer_id for identity in dialers}
        for peer, records in accepted.items():
            assert records == [str(peer).encode() + b":%d" % i for i in range(20)]
        assert listener.drops == {}


async def test_garbage_to_the_dialer_is_dropped() -> None:
    """[QUIC-4.3] on the dialer's socket too: junk in the middle of a transfer changes nothing."""
    rng = random.Random(11)
    async with (
        quic.listen(LOOPBACK, 0, BOB) as listener,
        quic.dial(LOOPBACK, listener.port, expected_peer_id=BOB.peer_id, identity=ALICE) as carrier,
    ):
        sock = carrier._conn.driver.sock
        assert sock is not None  # dial() owns its socket (a shared driver has none)
        dialer_address = sock.getsockname()
        junk = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        try:
            await carrier.send_record(b"before")
            for _ in range(100):
                await junk.sendto(rng.randbytes(rng.randint(1, 1400)), dialer_address)
            await trio.sleep(0.1)
            await carrier.send_record(b"after")
        finally:
            junk.close()
        with trio.fail_after(5):
            server = await listener.accept()
            assert [await server.receive_record(), await server.receive_record()] == [b"before", b"after"]
            await server.send_record(b"reply")
            assert await carrier.receive_record() == b"reply"
        assert sum(carrier._conn.driver.drops.values()) > 0


async def test_each_connection_gets_a_fresh_listener_key() -> None:
    """[QUIC-3.1.3]: two dials to one listener see two different TLS keys, both bound to the listener."""
    keys = []
    async with quic.listen(LOOPBACK, 0, BOB) as listener:
        for _ in range(2):
            async with quic.dial(LOOPBACK, listener.port, expected_peer_id=BOB.peer_id, identity=ALICE) as carrier:
                certificate, chain = quic._peer_certificate(carrier._conn.quic)
                assert quic_tls.check_listener_certificate(certificate, chain, BOB.peer_id) == BOB.peer_id
                keys.append(quic_tls.spki(certificate))
    assert keys[0] != keys[1]


async def test_unread_records_beyond_the_receive_limit_close_the_carrier(monkeypatch: pytest.MonkeyPatch) -> None:
    """[QUIC-4.4]: a receiver that does not read gets its carrier closed with FLOW_CONTROL_ERROR past the bound."""
    monkeypatch.setattr(quic, "RECEIVE_LIMIT", 256 * 1024)
    async with (
        quic.listen(LOOPBACK, 0, BOB) as listener,
        quic.dial(LOOPBACK, listener.port, expected_peer_id=BOB.peer_id, identity=ALICE) as carrier,
    ):
        with trio.fail_after(10), pytest.raises(CarrierClosed) as caught:
            for _ in range(100):
                await carrier.send_record(bytes(16384))
            await carrier.receive_record()
        assert caught.value.code is ErrorCode.FLOW_CONTROL_ERROR
        server = await listener.accept()
        assert server.closed
