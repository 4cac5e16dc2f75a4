"""The handshake hardening rules (spec/handshake.md §5, §7, §8; spec/session.md §4).

One test group per rule:

* SAS: the code is BLAKE2b(h2 || nonce) recomputed here with ``hashlib``, from a
  handshake hash replayed with independent ``HandshakeState`` objects, and a
  nonce that opens the INIT's commitment.
* The SAS nonce: a FINISH or IK CONFIRM whose nonce does not open the commitment
  closes the responder with PROTOCOL_VIOLATION and is never announced.
* IK confirmation: records before the CONFIRM are dropped ("unconfirmed"); a lost
  CONFIRM is recovered by the responder's RESPONSE retransmission.
* INIT acceptance: at least MIN_INIT_SIZE bytes, a payload index equal to the
  header's, a SAS commitment.
* Authenticated indices: a RESPONSE whose header index was altered is dropped
  ("index_mismatch") and the clean copy completes with the right indices.
* Anti-amplification: an unvalidated responder sends at most 3x what it received.
* Endpoint replay cache keyed on the whole INIT; the binding cache.

Misbehaving initiators are built by hand (``HandInitiator``) from the Noise layer
and the payload codec, so each rule can be broken on purpose.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from helpers import (
    INDEX_A,
    INDEX_B,
    EndpointNet,
    SeededRandom,
    SessionPair,
    completed,
    drop_first,
    flat,
    make_keys,
    of_type,
    ptype,
)

from p2pos.proto import (
    Endpoint,
    ErrorCode,
    HandshakeCompleted,
    LocalKeys,
    MessageReceived,
    RemoteProtocolError,
    SecureSession,
    SessionConfig,
    SessionState,
)
from p2pos.proto.handshake.handshake import (
    AMPLIFICATION_FACTOR,
    MIN_INIT_SIZE,
    PROLOGUE,
    BindingCache,
    default_capabilities,
    sas_commitment,
    with_identity,
)
from p2pos.proto.handshake.noise import HandshakeState, Pattern
from p2pos.proto.handshake.payload import HandshakePayload
from p2pos.proto.identity import crypto
from p2pos.proto.identity.identity import verify as identity_verify
from p2pos.proto.identity.peer_id import PeerId
from p2pos.proto.session.record import MAX_PLAINTEXT, RecordSender
from p2pos.proto.session.wire import (
    INIT_HEADER,
    RECORD_HEADER,
    RESPONSE_HEADER,
    PacketType,
    encode_finish,
    encode_init,
    parse_handshake_untrusted,
)

ALICE, BOB = make_keys("alice"), make_keys("bob")
PATTERNS = pytest.mark.parametrize("pattern", [Pattern.XX, Pattern.IK], ids=["XX", "IK"])
BOTH = pytest.mark.parametrize("ik", [False, True], ids=["XX", "IK"])


def blake2b_sas(hash_after_2: bytes, nonce: bytes) -> str:
    """spec/handshake.md §7, written out with hashlib alone."""
    digest = hashlib.blake2b(hash_after_2 + nonce, digest_size=8, key=b"p2pos-sas-v1").digest()
    text = f"{int.from_bytes(digest, 'big') % 10**12:012d}"
    return f"{text[:4]} {text[4:8]} {text[8:]}"


def blake2b_commitment(nonce: bytes) -> bytes:
    return hashlib.blake2b(nonce, digest_size=32, key=b"p2pos-sas-commit").digest()


def flip(packet: bytes, position: int) -> bytes:
    out = bytearray(packet)
    out[position] ^= 0x01
    return bytes(out)


def drain(session: SecureSession) -> list[object]:
    events: list[object] = []
    while (event := session.next_event()) is not None:
        events.append(event)
    return events


class HandInitiator:
    """An initiator assembled from ``HandshakeState`` and ``HandshakePayload``.

    ``init()`` builds an INIT whose payload (``base`` by default), header index
    and total size the test chooses; ``read_response``, ``finish`` and ``confirm`` complete it.
    """

    def __init__(self, pattern: Pattern, *, index: int = INDEX_A, seed: object = "hand") -> None:
        self.pattern = pattern
        self.index = index
        self.remote_index = 0
        rand = SeededRandom(seed)
        self.nonce = rand(32)
        self.hs = HandshakeState(
            pattern=pattern,
            initiator=True,
            prologue=PROLOGUE,
            s=ALICE.static_private,
            rs=BOB.static_public if pattern is Pattern.IK else None,
            random=rand,
        )
        self.sender: RecordSender | None = None
        #: The INIT payload a faithful initiator sends (before identity and padding).
        self.base = HandshakePayload(versions=(1,), session_index=index, sas_commitment=sas_commitment(self.nonce))

    def identified(self, payload: HandshakePayload) -> HandshakePayload:
        caps = default_capabilities(MAX_PLAINTEXT)
        return with_identity(ALICE, dataclasses.replace(payload, capabilities=caps))

    def init(
        self,
        payload: HandshakePayload | None = None,
        *,
        header_index: int | None = None,
        size: int | None = MIN_INIT_SIZE,
    ) -> bytes:
        """An INIT of exactly ``size`` bytes (None: unpadded) carrying ``payload`` (default ``base``)."""
        payload = self.base if payload is None else payload
        overhead = INIT_HEADER.size + crypto.DHLEN
        if self.pattern is Pattern.IK:
            payload = self.identified(payload)
            overhead += crypto.DHLEN + 2 * crypto.TAGLEN
        if size is not None:
            payload = dataclasses.replace(payload, padding=size - overhead - len(payload.encode()) - 4)
        index = self.index if header_index is None else header_index
        packet = encode_init(self.pattern, index, self.hs.write_message(payload.encode()))
        assert size is None or len(packet) == size
        return packet

    def read_response(self, packet: bytes) -> HandshakePayload:
        parsed = parse_handshake_untrusted(packet)
        self.remote_index = parsed.sender_index
        payload = HandshakePayload.decode_untrusted(self.hs.read_message(parsed.message))
        if self.pattern is Pattern.IK:
            self.sender = RecordSender(
                self.hs.split()[0], self.remote_index, 0.0, rekey_after_messages=2**20, rekey_after_seconds=1e9
            )
        return payload

    def finish(self, nonce: bytes | None) -> bytes:
        payload = self.identified(HandshakePayload(versions=(1,), sas_nonce=nonce))
        return encode_finish(self.remote_index, self.hs.write_message(payload.encode()))

    def confirm(self, nonce: bytes, ptype: PacketType = PacketType.CONFIRM) -> bytes:
        assert self.sender is not None
        return self.sender.seal(ptype, nonce, 0.0)


def respond(init: bytes, *, config: SessionConfig | None = None) -> SecureSession:
    return SecureSession.respond_untrusted(
        BOB, init, local_index=INDEX_B, now=0.0, config=config, random=SeededRandom("bob")
    )


def rejected(init: bytes) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        respond(init)
    return info.value


# -- SAS = BLAKE2b(h2 || nonce), recomputed independently --------------------------------


@PATTERNS
def test_sas_is_the_formula_over_h2_and_the_committed_nonce(pattern: Pattern) -> None:
    e_a, e_b = SeededRandom("e_a")(32), SeededRandom("e_b")(32)
    a = SecureSession.initiate(
        ALICE,
        local_index=INDEX_A,
        now=0.0,
        remote_static=BOB.static_public if pattern is Pattern.IK else None,
        random=SeededRandom("a-random"),
        ephemeral=e_a,
    )
    (init,) = a.data_to_send(0.0)
    b = SecureSession.respond_untrusted(BOB, init, local_index=INDEX_B, now=0.0, ephemeral=e_b)
    (response,) = b.data_to_send(0.0)
    a.receive_data(response, 0.0)
    (third,) = a.data_to_send(0.0)
    b.receive_data(third, 0.0)
    done_a, done_b = completed(drain(a)), completed(drain(b))

    # Replay the transcript with two fresh Noise states holding the same keys: they
    # must write the very bytes the sessions sent, and give h2 after message 2.
    hi = HandshakeState(
        pattern=pattern,
        initiator=True,
        prologue=PROLOGUE,
        s=ALICE.static_private,
        e=e_a,
        rs=BOB.static_public if pattern is Pattern.IK else None,
    )
    hr = HandshakeState(pattern=pattern, initiator=False, prologue=PROLOGUE, s=BOB.static_private, e=e_b)
    message_1 = parse_handshake_untrusted(init).message
    payload_1 = hr.read_message(message_1)
    assert hi.write_message(payload_1) == message_1
    message_2 = parse_handshake_untrusted(response).message
    payload_2 = hi.read_message(message_2)
    assert hr.write_message(payload_2) == message_2
    hash_after_2 = hi.handshake_hash
    assert hr.handshake_hash == hash_after_2

    if pattern is Pattern.XX:
        assert ptype(third) is PacketType.FINISH
        nonce = HandshakePayload.decode_untrusted(hr.read_message(parse_handshake_untrusted(third).message)).sas_nonce
        assert done_a.handshake_hash != hash_after_2  # XX: message 3 is not in the SAS
    else:
        # The CONFIRM record, opened with the raw AEAD: key from the split, p2pos nonce, header as AD.
        assert ptype(third) is PacketType.CONFIRM
        _, receiver, epoch, counter = RECORD_HEADER.unpack_from(third)
        assert (receiver, epoch, counter) == (INDEX_B, 0, 0)
        key = hi.split()[0]
        header = third[: RECORD_HEADER.size]
        nonce = ChaCha20Poly1305(key).decrypt(bytes(4) + counter.to_bytes(8, "little"), third[len(header) :], header)
        assert done_a.handshake_hash == hash_after_2  # IK: h2 is the final hash
    assert nonce is not None and len(nonce) == 32
    assert nonce == SeededRandom("a-random")(32)  # drawn from the injected source
    assert HandshakePayload.decode_untrusted(payload_1).sas_commitment == blake2b_commitment(nonce)
    assert done_a.sas == done_b.sas == blake2b_sas(hash_after_2, nonce)
    assert a.sas == b.sas == done_a.sas


# -- the SAS nonce must open the commitment ----------------------------------------------


@pytest.mark.parametrize("nonce", [bytes(32), None], ids=["other-nonce", "no-nonce"])
def test_finish_whose_nonce_does_not_open_the_commitment_closes_the_responder(nonce: bytes | None) -> None:
    hand = HandInitiator(Pattern.XX)
    b = respond(hand.init())
    (response,) = b.data_to_send(0.0)
    hand.read_response(response)
    b.receive_data(hand.finish(nonce), 0.0)
    assert b.state is SessionState.CLOSED
    assert b.close_code is ErrorCode.PROTOCOL_VIOLATION
    assert drain(b) == [] and b.sas is None and b.peer_id is None  # never announced
    assert b.data_to_send(0.0) == [] and b.get_timer() is None


def test_finish_with_the_committed_nonce_completes() -> None:
    """The hand-built initiator is faithful: with its real nonce the same steps succeed."""
    hand = HandInitiator(Pattern.XX)
    b = respond(hand.init())
    (response,) = b.data_to_send(0.0)
    hand.read_response(response)
    b.receive_data(hand.finish(hand.nonce), 0.0)
    assert completed(drain(b)).peer_id == ALICE.identity.peer_id


@pytest.mark.parametrize("nonce", [bytes(32), b"", b"\x01" * 31], ids=["other-nonce", "empty", "short"])
def test_ik_confirm_with_a_wrong_nonce_closes_the_responder(nonce: bytes) -> None:
    hand = HandInitiator(Pattern.IK)
    b = respond(hand.init())
    (response,) = b.data_to_send(0.0)
    hand.read_response(response)
    b.receive_data(hand.confirm(nonce), 0.0)
    assert b.state is SessionState.CLOSED
    assert b.close_code is ErrorCode.PROTOCOL_VIOLATION
    assert drain(b) == [] and b.sas is None
    # The initiator is already established: the responder tells it with a CLOSE record.
    (closing,) = b.data_to_send(0.0)
    assert closing[0] == PacketType.CLOSE


def test_ik_confirm_with_the_committed_nonce_completes() -> None:
    hand = HandInitiator(Pattern.IK)
    b = respond(hand.init())
    (response,) = b.data_to_send(0.0)
    hand.read_response(response)
    b.receive_data(hand.confirm(hand.nonce), 0.0)
    assert completed(drain(b)).peer_id == ALICE.identity.peer_id


# -- IK: nothing counts before the CONFIRM ------------------------------------------------


def test_ik_responder_drops_records_before_confirm_then_completes_on_it() -> None:
    pair = SessionPair(ik=True)
    (init,) = pair.take_a()
    pair.deliver_to_b(init)
    (response,) = pair.take_b()
    pair.deliver_to_a(response)
    (confirm,) = pair.take_a()  # held back: it arrives after the records below
    assert ptype(confirm) is PacketType.CONFIRM
    pair.a.send(b"early 1", pair.now)
    pair.a.send_keepalive(pair.now)
    pair.a.send(b"early 2", pair.now)
    for record in pair.take_a():
        pair.deliver_to_b(record)
    assert pair.b.state is SessionState.AWAIT_CONFIRM
    assert pair.b.stats() == {"unconfirmed": 3}
    assert pair.events_b == []
    pair.deliver_to_b(confirm)  # late, but inside the replay window
    assert pair.b.is_established
    assert completed(pair.events_b).sas == completed(pair.events_a).sas
    assert pair.messages_b() == []  # the early messages were dropped, not queued
    pair.check_messages_flow()


def test_lost_confirm_is_recovered_with_a_fresh_confirm() -> None:
    pair = SessionPair(ik=True)
    pair.flush(drop=drop_first(PacketType.CONFIRM, "a"))
    assert pair.b.state is SessionState.AWAIT_CONFIRM
    assert pair.jump() == 1.0  # the responder's RESPONSE timer
    pair.flush()
    responses = [d for d in pair.sent_b if ptype(d) is PacketType.RESPONSE]
    assert len(responses) == 2 and responses[0] == responses[1]
    confirms = [d for d in pair.sent_a if ptype(d) is PacketType.CONFIRM]
    assert len(confirms) == 2
    assert [RECORD_HEADER.unpack_from(c)[3] for c in confirms] == [0, 1]  # a new record, not a replay
    assert pair.b.is_established
    assert completed(pair.events_a).sas == completed(pair.events_b).sas
    pair.check_messages_flow()


def test_replayed_confirm_does_not_count_twice() -> None:
    pair = SessionPair(ik=True)
    pair.handshake()
    (confirm,) = [d for d in pair.sent_a if ptype(d) is PacketType.CONFIRM]
    pair.deliver_to_b(confirm)
    assert pair.b.stats() == {"record_replay": 1}
    assert len(of_type(pair.events_b, HandshakeCompleted)) == 1


# -- INIT acceptance ---------------------------------------------------------------------


@PATTERNS
def test_init_must_be_at_least_min_init_size(pattern: Pattern) -> None:
    assert MIN_INIT_SIZE == 320
    for size in (None, MIN_INIT_SIZE - 1):
        error = rejected(HandInitiator(pattern).init(size=size))
        assert error.code is ErrorCode.MALFORMED_MESSAGE
        assert "320" in str(error)
    assert respond(HandInitiator(pattern).init(size=MIN_INIT_SIZE)).state is not SessionState.CLOSED
    assert respond(HandInitiator(pattern).init(size=MIN_INIT_SIZE + 100)).state is not SessionState.CLOSED


@BOTH
def test_sessions_send_inits_of_exactly_min_init_size(ik: bool) -> None:
    (init,) = SessionPair(ik=ik).take_a()
    assert len(init) == MIN_INIT_SIZE


@PATTERNS
def test_short_init_reaches_no_state_on_an_endpoint(pattern: Pattern) -> None:
    b = Endpoint(BOB, random=SeededRandom("B"))
    b.receive_data(HandInitiator(pattern).init(size=MIN_INIT_SIZE - 1), "A", 0.0)
    assert b.drops == {"bad_init": 1}
    assert b.sessions() == [] and flat(b.data_to_send(0.0)) == [] and b.get_timer() is None


@PATTERNS
@pytest.mark.parametrize(
    ("header_index", "payload_index"),
    [(INDEX_A + 1, INDEX_A), (0, INDEX_A), (INDEX_A, INDEX_A ^ 0x80000000), (INDEX_A, None)],
    ids=["header+1", "header-0", "payload-other", "payload-none"],
)
def test_init_whose_payload_index_differs_from_the_header_is_rejected(
    pattern: Pattern, header_index: int, payload_index: int | None
) -> None:
    hand = HandInitiator(pattern)
    init = hand.init(dataclasses.replace(hand.base, session_index=payload_index), header_index=header_index)
    assert rejected(init).code is ErrorCode.MALFORMED_MESSAGE


@BOTH
@pytest.mark.parametrize("position", [2, 3, 4, 5])
def test_init_with_an_altered_header_index_is_rejected(ik: bool, position: int) -> None:
    (init,) = SessionPair(ik=ik).take_a()
    assert rejected(flip(init, position)).code is ErrorCode.MALFORMED_MESSAGE
    respond(init)  # the unaltered INIT is fine


@PATTERNS
def test_init_without_sas_commitment_is_rejected(pattern: Pattern) -> None:
    hand = HandInitiator(pattern)
    error = rejected(hand.init(dataclasses.replace(hand.base, sas_commitment=None)))
    assert error.code is ErrorCode.MALFORMED_MESSAGE
    assert "commitment" in str(error)


# -- authenticated indices in the RESPONSE -------------------------------------------------


@BOTH
@pytest.mark.parametrize("position", [1, 4])
def test_response_with_altered_sender_index_is_dropped_and_clean_copy_completes(ik: bool, position: int) -> None:
    pair = SessionPair(ik=ik)
    (init,) = pair.take_a()
    pair.deliver_to_b(init)
    (response,) = pair.take_b()  # only the altered copy arrives
    pair.deliver_to_a(flip(response, position))
    assert pair.a.state is SessionState.AWAIT_RESPONSE
    assert pair.a.stats() == {"index_mismatch": 1}
    assert pair.a.remote_index == 0 and pair.events_a == []
    assert pair.take_a() == []
    pair.jump()  # the clean RESPONSE is retransmitted
    pair.flush()
    assert pair.a.is_established and pair.b.is_established
    assert pair.a.remote_index == pair.b.local_index == INDEX_B
    assert pair.b.remote_index == pair.a.local_index == INDEX_A
    assert completed(pair.events_a).sas == completed(pair.events_b).sas
    pair.check_messages_flow()  # records are addressed to the right index both ways
    assert "wrong_index" not in pair.a.stats() and "wrong_index" not in pair.b.stats()


@BOTH
def test_altered_response_index_through_endpoints(ik: bool) -> None:
    net = EndpointNet()
    a, b = net.add("A", ALICE), net.add("B", BOB)
    session = a.connect("B", net.now, remote_static=BOB.static_public if ik else None)
    altered = [0]

    def alter_first_response(source: object, dest: object, data: bytes) -> bool:
        if ptype(data) is PacketType.RESPONSE and not altered[0]:
            altered[0] = 1
            net.deliver(source, dest, flip(data, 3))
            return True
        return False

    net.flush(drop=alter_first_response)
    assert session.stats() == {"index_mismatch": 1}
    net.jump()
    net.flush()
    (responder,) = b.sessions()
    assert session.remote_index == responder.local_index and responder.remote_index == session.local_index
    session.send(b"over the right index", net.now)
    net.flush()
    assert of_type(net.events["B"], HandshakeCompleted)[0].session_id == responder.local_index
    assert [m.data for m in of_type(net.events["B"], MessageReceived)] == [b"over the right index"]
    assert b.drops == {}


# -- anti-amplification -------------------------------------------------------------------

FAST_RETRANSMIT = SessionConfig(retransmit_initial=0.25, retransmit_max=0.25, handshake_timeout=15.0)


def run_responder(init: bytes, *, duplicates_at: tuple[float, ...] = ()) -> tuple[SecureSession, list[bytes]]:
    """A responder that hears ``init`` (again at ``duplicates_at``) and nothing else until it times out."""
    b = respond(init, config=FAST_RETRANSMIT)
    sent = b.data_to_send(0.0)
    pending = sorted(duplicates_at)
    while (timer := b.get_timer()) is not None:
        if pending and pending[0] <= timer:
            now = pending.pop(0)
            b.receive_data(init, now)
        else:
            now = timer
            b.handle_timer(now)
        sent += b.data_to_send(now)
        assert sum(map(len, sent)) <= AMPLIFICATION_FACTOR * len(init) * (1 + len(duplicates_at) - len(pending))
    assert b.state is SessionState.CLOSED and b.close_code is ErrorCode.HANDSHAKE_TIMEOUT
    assert drain(b) == []
    return b, sent


@BOTH
def test_unvalidated_responder_sends_at_most_three_times_the_init(ik: bool) -> None:
    (init,) = SessionPair(ik=ik).take_a()
    b, sent = run_responder(init)
    assert AMPLIFICATION_FACTOR == 3
    assert len(set(sent)) == 1 and ptype(sent[0]) is PacketType.RESPONSE
    # As many RESPONSEs as fit the budget, and no more: the rest were skipped and counted.
    assert len(sent) == 3 * len(init) // len(sent[0])
    assert sum(map(len, sent)) <= 3 * len(init)
    assert b.stats()["amplification_limit"] >= 50  # ~60 retransmission timers at 0.25 s over 15 s


@BOTH
def test_duplicate_inits_raise_the_budget(ik: bool) -> None:
    (init,) = SessionPair(ik=ik).take_a()
    _, alone = run_responder(init)
    _, with_dups = run_responder(init, duplicates_at=(5.0, 10.0))
    assert len(with_dups) == 3 * (3 * len(init)) // len(alone[0])
    assert len(with_dups) > len(alone)
    assert sum(map(len, with_dups)) <= 3 * 3 * len(init)


def test_validation_lifts_the_limit() -> None:
    pair = SessionPair(b_config=FAST_RETRANSMIT)
    (init,) = pair.take_a()
    pair.deliver_to_b(init)
    while pair.b.stats().get("amplification_limit", 0) == 0:
        pair.jump()
        pair.take_b()
        pair.take_a()
    (response,) = pair.sent_b[:1]
    pair.deliver_to_a(response)
    (finish,) = pair.take_a()
    pair.deliver_to_b(finish)
    assert pair.b.is_established
    for _ in range(10):
        pair.b.send(bytes(1000), pair.now)
    assert len(pair.take_b()) == 10  # records are not limited


def test_initiator_is_not_limited() -> None:
    pair = SessionPair(a_config=FAST_RETRANSMIT)
    pair.take_a()
    while pair.a.state is not SessionState.CLOSED:
        pair.jump()
        pair.take_a()
    assert len(pair.sent_a) == 60 and "amplification_limit" not in pair.a.stats()


# -- endpoint replay cache: keyed on the whole INIT ---------------------------------------


def xx_variants(init: bytes) -> Iterator[bytes]:
    """Forged XX INITs that reuse the genuine ephemeral (XX message 1 is in clear)."""
    parsed = parse_handshake_untrusted(init)
    payload = HandshakePayload.decode_untrusted(parsed.message[32:])
    yield init + b"\x00\x09\x00\x00"  # an extra unknown field
    yield init[:-1] + b"\x01"  # padding content changed
    other = 0x66666666
    body = dataclasses.replace(payload, session_index=other).encode()
    yield encode_init(Pattern.XX, other, parsed.message[:32] + body)  # index rewritten consistently


@BOTH
def test_forged_init_variant_delivered_first_does_not_block_the_genuine(ik: bool) -> None:
    net = EndpointNet()
    a, b = net.add("A", ALICE), net.add("B", BOB)
    session = a.connect("B", net.now, remote_static=BOB.static_public if ik else None)
    ((_, _, init),) = net.outgoing()
    variants = list(xx_variants(init)) if not ik else [flip(init, len(init) - 1), init + b"\x00\x09\x00\x00"]
    for forged in variants:
        assert forged != init and forged[6:38] == init[6:38]  # same ephemeral
        b.receive_data(forged, "mallory", net.now)
    flat(b.data_to_send(net.now))  # the answers to the variants go to mallory
    b.receive_data(init, "A", net.now)
    net.flush()
    assert session.is_established
    assert completed(net.events["A"]).peer_id == BOB.identity.peer_id
    assert completed(net.events["B"]).peer_id == ALICE.identity.peer_id
    if ik:
        assert b.drops == {"bad_init": 2}  # IK message 1 is authenticated
    else:
        assert b.drops == {} and len(b.sessions()) == 1 + len(variants)


# -- the binding cache ---------------------------------------------------------------------


@pytest.fixture
def verify_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[PeerId, bytes, bool]]:
    """Every Ed25519 check the handshake makes: (peer, signed static key, result)."""
    calls: list[tuple[PeerId, bytes, bool]] = []

    def counting(peer: PeerId, domain: bytes, message: bytes, signature: bytes) -> bool:
        result = identity_verify(peer, domain, message, signature)
        calls.append((peer, message, result))
        return result

    monkeypatch.setattr("p2pos.proto.handshake.handshake.verify", counting)
    return calls


def test_returning_peer_costs_no_verification(verify_calls: list[tuple[PeerId, bytes, bool]]) -> None:
    net = EndpointNet()
    a, b = net.add("A", ALICE), net.add("B", BOB)
    a.connect("B", net.now)
    net.flush()
    assert sorted(c[1] for c in verify_calls) == sorted([ALICE.static_public, BOB.static_public])
    for remote_static in (None, BOB.static_public, None):
        a.connect("B", net.now, remote_static=remote_static)
        net.flush()
    assert len(of_type(net.events["B"], HandshakeCompleted)) == 4
    assert len(verify_calls) == 2  # both caches hit every time
    assert all(s.is_established for s in a.sessions() + b.sessions())


def test_new_static_key_or_signature_is_verified(verify_calls: list[tuple[PeerId, bytes, bool]]) -> None:
    net = EndpointNet()
    net.add("A", ALICE)
    b = net.add("B", BOB)
    net.endpoints["A"].connect("B", net.now)
    net.flush()
    before = len(verify_calls)
    # Alice again, with a new Noise static key: Bob must check the new binding.
    rotated = LocalKeys.create(ALICE.identity, hashlib.sha256(b"alice's new static").digest())
    net.add("A2", rotated).connect("B", net.now)
    net.flush()
    by_bob = [c for c in verify_calls[before:] if c[0] == ALICE.identity.peer_id]
    assert by_bob == [(ALICE.identity.peer_id, rotated.static_public, True)]
    assert len(of_type(net.events["B"], HandshakeCompleted)) == 2
    # Alice's identity key and static key with a signature that does not verify (signed
    # under another domain): checked, refused, and checked again the next time.
    forged = dataclasses.replace(ALICE, binding_signature=ALICE.identity.sign(b"p2pos/other", ALICE.static_public))
    for attempt in (1, 2):
        start = len(verify_calls)
        net.add(f"M{attempt}", forged).connect("B", net.now)
        net.flush()
        assert [c for c in verify_calls[start:] if c[0] == ALICE.identity.peer_id] == [
            (ALICE.identity.peer_id, ALICE.static_public, False)
        ]
    assert len(of_type(net.events["B"], HandshakeCompleted)) == 2
    assert b.sessions() == [s for s in b.sessions() if s.is_established]


def test_binding_cache_unit(verify_calls: list[tuple[PeerId, bytes, bool]]) -> None:
    cache = BindingCache(size=2)
    keys = [make_keys(name) for name in ("k1", "k2", "k3")]

    def check(k: LocalKeys, signature: bytes | None = None) -> bool:
        return cache.check(k.identity.peer_id, k.static_public, signature or k.binding_signature)

    bad = bytes(64)
    assert not check(keys[0], bad) and not check(keys[0], bad)
    assert len(verify_calls) == 2  # a failure is never cached
    assert check(keys[0]) and check(keys[0])
    assert len(verify_calls) == 3
    assert check(keys[1]) and check(keys[0])  # k0 becomes the most recently used
    assert check(keys[2])  # evicts k1, the least recently used
    assert len(verify_calls) == 5
    assert check(keys[0]) and check(keys[2])
    assert len(verify_calls) == 5
    assert check(keys[1])
    assert len(verify_calls) == 6
    # A hit needs all three parts: the same static key under another identity is checked.
    assert not cache.check(keys[1].identity.peer_id, keys[0].static_public, keys[0].binding_signature)
    assert len(verify_calls) == 7


def test_sessions_without_a_cache_verify_every_time(verify_calls: list[tuple[PeerId, bytes, bool]]) -> None:
    for seed in (1, 2):
        SessionPair(seed=seed).handshake()
    assert len(verify_calls) == 4


def test_refused_confirm_leaves_no_trace_on_an_endpoint() -> None:
    b = Endpoint(BOB, random=SeededRandom("B"))
    hand = HandInitiator(Pattern.IK)
    b.receive_data(hand.init(), "A", 0.0)
    ((response, _),) = flat(b.data_to_send(0.0))
    hand.read_response(response)
    b.receive_data(hand.confirm(bytes(32)), "A", 0.0)
    ((closing, addr),) = flat(b.data_to_send(0.0))
    assert closing[0] == PacketType.CLOSE and addr == "A"
    assert b.sessions() == [] and b.next_event() is None and flat(b.data_to_send(0.0)) == []


def test_response_without_session_index_is_a_fatal_malformed_message() -> None:
    """An authenticated RESPONSE that omits the index is a peer bug, not tampering: close at once."""
    a = SecureSession.initiate(ALICE, local_index=INDEX_A, now=0.0, expected_peer=BOB.identity.peer_id)
    (init,) = a.data_to_send(0.0)
    packet = parse_handshake_untrusted(init)
    hand = HandshakeState(
        pattern=Pattern.XX, initiator=False, prologue=PROLOGUE, s=BOB.static_private, e=bytes([7]) * 32
    )
    hand.read_message(packet.message)
    reply = with_identity(BOB, HandshakePayload(versions=(1,), capabilities=default_capabilities(MAX_PLAINTEXT)))
    message = hand.write_message(reply.encode())
    a.receive_data(RESPONSE_HEADER.pack(PacketType.RESPONSE, 99, INDEX_A) + message, 0.0)
    assert a.state is SessionState.CLOSED
    assert a.close_code is ErrorCode.MALFORMED_MESSAGE
    closed = drain(a)
    assert len(closed) == 1 and getattr(closed[0], "code", None) is ErrorCode.MALFORMED_MESSAGE
