"""Interoperability with an independent Noise implementation: the ``noiseprotocol`` package.

Two levels, for XX and IK, with p2pos in both roles:

(a) raw Noise: p2pos ``HandshakeState`` against ``NoiseConnection``, handshake
    messages with payloads, then transport messages both ways;
(b) full p2pos: a real ``SecureSession`` against a peer whose Noise is done by
    noiseprotocol but which speaks p2pos packets (``wire.encode_*``, payloads
    built from ``HandshakePayload``: a padded INIT with the session index and
    the SAS commitment, a RESPONSE with the index, a FINISH or IK CONFIRM record
    revealing the SAS nonce; prologue ``handshake.PROLOGUE``).  The session must
    complete with the right peer id and a SAS equal to the formula computed from
    noiseprotocol's handshake hash, and records must cross in both directions
    using noiseprotocol's transport ciphers with the p2pos nonce format
    (explicit counter, set with ``CipherState.set_nonce``), including across
    record-layer rekeys (Noise REKEY).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import pytest
from conftest import deterministic_random
from noise.connection import Keypair, NoiseConnection

from p2pos.proto.events import HandshakeCompleted, MessageReceived
from p2pos.proto.handshake import handshake
from p2pos.proto.handshake.handshake import (
    MIN_INIT_SIZE,
    PROLOGUE,
    LocalKeys,
    default_capabilities,
    padded,
    sas_commitment,
    short_authentication_string,
    with_identity,
)
from p2pos.proto.handshake.noise import CipherState, HandshakeState, Pattern, protocol_name
from p2pos.proto.handshake.payload import HandshakePayload
from p2pos.proto.identity import crypto
from p2pos.proto.identity.identity import Identity
from p2pos.proto.session import wire
from p2pos.proto.session.record import MAX_PLAINTEXT
from p2pos.proto.session.session import SecureSession, SessionConfig, SessionState
from p2pos.proto.session.wire import INIT_HEADER, RECORD_HEADER, PacketType

PATTERNS = [Pattern.XX, Pattern.IK]
MESSAGES = {Pattern.XX: 3, Pattern.IK: 2}


def make_connection(
    pattern: Pattern, *, initiator: bool, static: bytes, ephemeral: bytes, prologue: bytes, rs: bytes | None = None
) -> NoiseConnection:
    """A noiseprotocol connection with every key pinned (so the test is deterministic)."""
    conn = NoiseConnection.from_name(protocol_name(pattern))
    if initiator:
        conn.set_as_initiator()
    else:
        conn.set_as_responder()
    conn.set_prologue(prologue)
    conn.set_keypair_from_private_bytes(Keypair.STATIC, static)
    conn.set_keypair_from_private_bytes(Keypair.EPHEMERAL, ephemeral)
    if rs is not None:
        conn.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, rs)
    with warnings.catch_warnings():
        # noiseprotocol warns that a pinned ephemeral is for tests only: it is.
        warnings.simplefilter("ignore")
        conn.start_handshake()
    return conn


# -- (a) raw Noise ---------------------------------------------------------------


@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: p.value)
@pytest.mark.parametrize("p2pos_initiates", [True, False], ids=["p2pos-initiator", "p2pos-responder"])
def test_raw_noise_interop(pattern: Pattern, p2pos_initiates: bool) -> None:
    rand = deterministic_random(f"raw-{pattern.value}-{p2pos_initiates}")
    ours_s, theirs_s, ours_e, theirs_e = rand(32), rand(32), rand(32), rand(32)
    prologue = b"interop prologue"
    ours = HandshakeState(
        pattern=pattern,
        initiator=p2pos_initiates,
        prologue=prologue,
        s=ours_s,
        e=ours_e,
        # The IK initiator knows the responder's static key in advance.
        rs=crypto.x25519_public(theirs_s) if pattern is Pattern.IK and p2pos_initiates else None,
    )
    theirs = make_connection(
        pattern,
        initiator=not p2pos_initiates,
        static=theirs_s,
        ephemeral=theirs_e,
        prologue=prologue,
        rs=crypto.x25519_public(ours_s) if pattern is Pattern.IK and not p2pos_initiates else None,
    )

    for i in range(MESSAGES[pattern]):
        payload = f"handshake payload {i}".encode() * (i + 1)
        if (i % 2 == 0) == p2pos_initiates:
            assert theirs.read_message(ours.write_message(payload)) == payload
        else:
            assert ours.read_message(bytes(theirs.write_message(payload))) == payload
    assert ours.is_finished() and theirs.handshake_finished
    assert ours.handshake_hash == theirs.get_handshake_hash()
    # Each side learned the other's static key.
    assert ours.rs == crypto.x25519_public(theirs_s)

    k_i2r, k_r2i = ours.split()
    send = CipherState(k_i2r if p2pos_initiates else k_r2i)
    recv = CipherState(k_r2i if p2pos_initiates else k_i2r)
    for n in range(5):
        out = f"p2pos -> noiseprotocol {n}".encode()
        assert theirs.decrypt(send.encrypt_with_ad(b"", out)) == out
        back = f"noiseprotocol -> p2pos {n}".encode() * n
        assert recv.decrypt_with_ad(b"", theirs.encrypt(back)) == back
    # Rekey (Noise §11.3) agrees as well.
    send.k = crypto.rekey(send.k or b"")
    theirs.rekey_inbound_cipher()
    assert theirs.decrypt(send.encrypt_with_ad(b"", b"after rekey")) == b"after rekey"


# -- (b) full p2pos ------------------------------------------------------------------


class NoiseprotocolPeer:
    """A p2pos peer whose Noise is noiseprotocol's: builds and parses p2pos packets by hand."""

    def __init__(self, pattern: Pattern, *, initiator: bool, seed: str, remote_static: bytes | None = None) -> None:
        rand = deterministic_random(seed)
        self.identity = Identity.from_seed(rand(32))
        self.keys = LocalKeys.create(self.identity, rand(32))
        self.pattern = pattern
        self.index = 0x51525354
        self.remote_index = 0
        self.conn = make_connection(
            pattern,
            initiator=initiator,
            static=self.keys.static_private,
            ephemeral=rand(32),
            prologue=PROLOGUE,
            rs=remote_static,
        )
        # Kept so the remote static key stays reachable after noiseprotocol drops its handshake state.
        self._hs: Any = self.conn.noise_protocol.handshake_state
        self.send_counter = 0
        self.send_epoch = 0
        self.recv_epoch = 0
        #: The SAS nonce this peer commits to when it initiates (spec/handshake.md §7).
        self.sas_nonce = rand(32)

    def running_hash(self) -> bytes:
        """noiseprotocol's handshake hash so far (its public getter answers only once the handshake is done)."""
        return bytes(self._hs.symmetric_state.get_handshake_hash())

    @property
    def remote_static(self) -> bytes:
        public: bytes = self._hs.rs.public_bytes
        return public

    def _identified(self, payload: HandshakePayload) -> HandshakePayload:
        return with_identity(self.keys, dataclasses.replace(payload, capabilities=default_capabilities(MAX_PLAINTEXT)))

    def init_payload(self) -> bytes:
        """INIT: versions, our index, the SAS commitment (and identity in IK), padded to MIN_INIT_SIZE."""
        payload = HandshakePayload(
            versions=(1,), session_index=self.index, sas_commitment=sas_commitment(self.sas_nonce)
        )
        overhead = INIT_HEADER.size + crypto.DHLEN
        if self.pattern is Pattern.IK:
            payload = self._identified(payload)
            overhead += crypto.DHLEN + 2 * crypto.TAGLEN
        return padded(payload, overhead)

    def response_payload(self) -> bytes:
        return self._identified(HandshakePayload(versions=(1,), session_index=self.index)).encode()

    def finish_payload(self) -> bytes:
        return self._identified(HandshakePayload(versions=(1,), sas_nonce=self.sas_nonce)).encode()

    # Records, with the p2pos layout and nonce (explicit counter; Noise nonce format).

    def seal(self, ptype: PacketType, plaintext: bytes) -> bytes:
        header = RECORD_HEADER.pack(ptype, self.remote_index, self.send_epoch, self.send_counter)
        cipher = self.conn.noise_protocol.cipher_state_encrypt
        cipher.set_nonce(self.send_counter)
        self.send_counter += 1
        return header + bytes(cipher.encrypt_with_ad(header, plaintext))

    def open(self, record: bytes) -> tuple[int, bytes]:
        ptype, receiver, epoch, counter = RECORD_HEADER.unpack_from(record)
        assert receiver == self.index
        while self.recv_epoch != epoch:
            self.conn.rekey_inbound_cipher()  # the record layer's epochs are successive Noise REKEYs
            self.recv_epoch += 1
        cipher = self.conn.noise_protocol.cipher_state_decrypt
        header, body = record[: RECORD_HEADER.size], record[RECORD_HEADER.size :]
        # The lowest level: the AEAD with the p2pos nonce (the counter carried in the header).
        direct = bytes(cipher.cipher.decrypt(cipher.k, counter, header, body))
        cipher.set_nonce(counter)
        plaintext = bytes(cipher.decrypt_with_ad(header, body))
        assert plaintext == direct
        return ptype, plaintext

    def rekey_outbound(self) -> None:
        self.conn.rekey_outbound_cipher()
        self.send_epoch += 1


def p2pos_keys(seed: str) -> LocalKeys:
    rand = deterministic_random(seed)
    return LocalKeys.create(Identity.from_seed(rand(32)), rand(32))


def drain_events(session: SecureSession) -> list[Any]:
    events = []
    while (event := session.next_event()) is not None:
        events.append(event)
    return events


def check_completed(session: SecureSession, peer: NoiseprotocolPeer) -> HandshakeCompleted:
    events = drain_events(session)
    assert len(events) == 1, events
    done = events[0]
    assert isinstance(done, HandshakeCompleted)
    assert done.peer_id == peer.identity.peer_id
    assert done.remote_static == peer.keys.static_public
    assert done.pattern == peer.pattern.value
    assert done.version == 1
    assert session.state is SessionState.ESTABLISHED
    assert session.peer_id == peer.identity.peer_id
    return done


def exchange_records(session: SecureSession, peer: NoiseprotocolPeer, now: float) -> None:
    """DATA records both ways, across rekeys on both sides."""
    for n in range(6):
        message = f"from p2pos #{n}".encode()
        session.send(message, now)
        (record,) = session.data_to_send(now)
        assert record[0] == PacketType.DATA
        assert peer.open(record) == (PacketType.DATA, message)
    assert peer.recv_epoch >= 2  # rekey_after_messages=2 in the config below

    for n in range(6):
        if n and n % 2 == 0:
            peer.rekey_outbound()
        message = f"from noiseprotocol #{n}".encode()
        record = peer.seal(PacketType.DATA, message)
        session.receive_data(record, now)
        counter = int.from_bytes(record[6:14], "big")
        assert drain_events(session) == [
            MessageReceived(session_id=session.local_index, data=message, packet_number=counter)
        ]
    assert session.stats() == {}


CONFIG = SessionConfig(rekey_after_messages=2)


@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: p.value)
def test_p2pos_initiator_with_noiseprotocol_responder(pattern: Pattern) -> None:
    now = 100.0
    keys = p2pos_keys(f"p2pos-init-{pattern.value}")
    peer = NoiseprotocolPeer(pattern, initiator=False, seed=f"np-resp-{pattern.value}")
    session = SecureSession.initiate(
        keys,
        local_index=7,
        now=now,
        config=CONFIG,
        expected_peer=peer.identity.peer_id,
        remote_static=peer.keys.static_public if pattern is Pattern.IK else None,
        random=deterministic_random(f"p2pos-eph-{pattern.value}"),
    )

    (init,) = session.data_to_send(now)
    packet = wire.parse_handshake_untrusted(init)
    assert packet.type is PacketType.INIT and packet.pattern is pattern and packet.sender_index == 7
    got = peer.conn.read_message(packet.message)
    peer.remote_index = packet.sender_index
    if pattern is Pattern.IK:
        first = handshake.verify_peer_payload_untrusted(bytes(got), peer.remote_static, keys.identity.peer_id).payload
    else:
        first = HandshakePayload.decode_untrusted(bytes(got))
        assert first.identity_key is None  # XX hides it until message 3
    assert len(init) == MIN_INIT_SIZE and first.padding > 0
    assert first.versions == (1,) and first.session_index == 7 and first.sas_commitment is not None
    response = bytes(peer.conn.write_message(peer.response_payload()))
    hash_after_2 = peer.running_hash()
    session.receive_data(wire.encode_response(peer.index, packet.sender_index, response), now)
    done = check_completed(session, peer)

    (confirm,) = session.data_to_send(now)
    if pattern is Pattern.XX:
        finish = wire.parse_handshake_untrusted(confirm)
        assert finish.type is PacketType.FINISH and finish.receiver_index == peer.index
        got = peer.conn.read_message(finish.message)
        verified = handshake.verify_peer_payload_untrusted(bytes(got), peer.remote_static, keys.identity.peer_id)
        assert verified.payload.capabilities == CONFIG.all_capabilities()
        nonce = verified.payload.sas_nonce
    else:
        # IK: the initiator confirms its keys with a CONFIRM record carrying the SAS nonce.
        ptype, nonce = peer.open(confirm)
        assert ptype == PacketType.CONFIRM
    assert nonce is not None and sas_commitment(nonce) == first.sas_commitment
    assert done.sas == short_authentication_string(hash_after_2, nonce)
    assert peer.conn.handshake_finished
    assert done.handshake_hash == peer.conn.get_handshake_hash()
    assert peer.remote_static == keys.static_public
    exchange_records(session, peer, now)


@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: p.value)
def test_noiseprotocol_initiator_with_p2pos_responder(pattern: Pattern) -> None:
    now = 5.0
    keys = p2pos_keys(f"p2pos-resp-{pattern.value}")
    peer = NoiseprotocolPeer(
        pattern,
        initiator=True,
        seed=f"np-init-{pattern.value}",
        remote_static=keys.static_public if pattern is Pattern.IK else None,
    )
    first = bytes(peer.conn.write_message(peer.init_payload()))
    init = wire.encode_init(pattern, peer.index, first)
    assert len(init) == MIN_INIT_SIZE
    session = SecureSession.respond_untrusted(
        keys,
        init,
        local_index=9,
        now=now,
        config=CONFIG,
        random=deterministic_random(f"p2pos-resp-eph-{pattern.value}"),
    )
    (resp,) = session.data_to_send(now)
    packet = wire.parse_handshake_untrusted(resp)
    assert packet.type is PacketType.RESPONSE
    assert (packet.sender_index, packet.receiver_index) == (9, peer.index)
    peer.remote_index = packet.sender_index
    got = peer.conn.read_message(packet.message)
    verified = handshake.verify_peer_payload_untrusted(bytes(got), peer.remote_static, keys.identity.peer_id)
    assert verified.payload.versions == (1,) and verified.payload.session_index == 9
    hash_after_2 = peer.running_hash()

    if pattern is Pattern.XX:
        assert session.state is SessionState.AWAIT_FINISH
        finish = bytes(peer.conn.write_message(peer.finish_payload()))
        session.receive_data(wire.encode_finish(session.local_index, finish), now)
        done = check_completed(session, peer)
    else:
        # IK: the responder waits for the CONFIRM record (the SAS nonce) before announcing the peer.
        assert session.state is SessionState.AWAIT_CONFIRM
        assert drain_events(session) == []
        session.receive_data(peer.seal(PacketType.CONFIRM, peer.sas_nonce), now)
        done = check_completed(session, peer)
    assert done.sas == short_authentication_string(hash_after_2, peer.sas_nonce)
    assert peer.conn.handshake_finished
    assert done.handshake_hash == peer.conn.get_handshake_hash()
    assert session.data_to_send(now) == []
    exchange_records(session, peer, now)


@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: p.value)
def test_p2pos_rejects_noiseprotocol_peer_with_wrong_identity(pattern: Pattern) -> None:
    # The peer binds its Noise static key to an identity other than the expected one.
    now = 0.0
    keys = p2pos_keys(f"p2pos-mismatch-{pattern.value}")
    peer = NoiseprotocolPeer(pattern, initiator=False, seed=f"np-mismatch-{pattern.value}")
    expected = p2pos_keys("somebody else").identity.peer_id
    session = SecureSession.initiate(
        keys,
        local_index=1,
        now=now,
        expected_peer=expected,
        remote_static=peer.keys.static_public if pattern is Pattern.IK else None,
        random=deterministic_random("mismatch"),
    )
    (init,) = session.data_to_send(now)
    packet = wire.parse_handshake_untrusted(init)
    peer.conn.read_message(packet.message)
    response = bytes(peer.conn.write_message(peer.response_payload()))
    session.receive_data(wire.encode_response(peer.index, 1, response), now)
    assert session.state is SessionState.CLOSED
    assert session.close_code is not None and session.close_code.name == "IDENTITY_MISMATCH"
    assert session.data_to_send(now) == []
    assert session.peer_id is None
