"""SecureSession (spec/session.md): handshakes in memory, loss recovery, timers, closing."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from helpers import (
    INDEX_A,
    INDEX_B,
    SeededRandom,
    SessionPair,
    closed,
    completed,
    drop_first,
    make_keys,
    of_type,
    ptype,
)

from p2pos.proto import (
    ErrorCode,
    HandshakeCompleted,
    LocalProtocolError,
    MessageReceived,
    RemoteProtocolError,
    SecureSession,
    SessionClosed,
    SessionConfig,
    SessionState,
)
from p2pos.proto.handshake.handshake import MIN_INIT_SIZE, padded, sas_commitment, with_identity
from p2pos.proto.handshake.noise import HandshakeState, Pattern
from p2pos.proto.handshake.payload import HandshakePayload
from p2pos.proto.identity import crypto
from p2pos.proto.session.record import COUNTER_LIMIT
from p2pos.proto.session.session import TRANSITIONS, Input
from p2pos.proto.session.wire import PacketType, encode_init

BOTH = pytest.mark.parametrize("ik", [False, True], ids=["XX", "IK"])

#: X25519 points of small order (Curve25519 paper; Wycheproof x25519 "low order" cases),
#: including non-canonical encodings (p - 1, p, p + 1) and one with the ignored top bit set.
LOW_ORDER_POINTS = [
    bytes(32),
    bytes([1]) + bytes(31),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ec" + "ff" * 30 + "7f"),
    bytes.fromhex("ed" + "ff" * 30 + "7f"),
    bytes.fromhex("ee" + "ff" * 30 + "7f"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880"),
]


def packets(sent: list[bytes], kind: PacketType) -> list[bytes]:
    return [d for d in sent if ptype(d) is kind]


# -- complete handshakes ---------------------------------------------------------


@BOTH
def test_handshake_completes(ik: bool) -> None:
    pair = SessionPair(ik=ik)
    pair.handshake()
    done_a, done_b = completed(pair.events_a), completed(pair.events_b)
    assert done_a.peer_id == pair.b_keys.identity.peer_id
    assert done_b.peer_id == pair.a_keys.identity.peer_id
    assert done_a.sas == done_b.sas
    assert len(done_a.sas) == 14
    assert done_a.handshake_hash == done_b.handshake_hash
    assert len(done_a.handshake_hash) == 64
    assert done_a.pattern == done_b.pattern == ("IK" if ik else "XX")
    assert done_a.version == done_b.version == 1
    assert done_a.remote_static == pair.b_keys.static_public
    assert done_b.remote_static == pair.a_keys.static_public
    assert (done_a.session_id, done_b.session_id) == (INDEX_A, INDEX_B)
    assert (pair.a.remote_index, pair.b.remote_index) == (INDEX_B, INDEX_A)
    assert pair.a.sas == pair.b.sas == done_a.sas
    expected = [PacketType.INIT, PacketType.FINISH] if not ik else [PacketType.INIT, PacketType.CONFIRM]
    assert [ptype(d) for d in pair.sent_a] == expected
    assert [ptype(d) for d in pair.sent_b] == [PacketType.RESPONSE]
    assert pair.a.stats() == {} and pair.b.stats() == {}


@BOTH
def test_messages_both_ways(ik: bool) -> None:
    pair = SessionPair(ik=ik)
    pair.handshake()
    for i in range(5):
        pair.a.send(b"ping %d" % i, pair.now)
        pair.b.send(b"pong %d" % i, pair.now)
    pair.a.send(b"", pair.now)
    pair.flush()
    assert pair.messages_b() == [b"ping %d" % i for i in range(5)] + [b""]
    assert pair.messages_a() == [b"pong %d" % i for i in range(5)]
    assert all(e.session_id == INDEX_B for e in of_type(pair.events_b, MessageReceived))


def test_sessions_with_same_seed_differ_by_ephemeral() -> None:
    one, two = SessionPair(seed=1), SessionPair(seed=2)
    one.handshake()
    two.handshake()
    assert completed(one.events_a).sas != completed(two.events_a).sas


def test_ik_responder_completes_only_after_confirm_record() -> None:
    pair = SessionPair(ik=True)
    (init,) = pair.take_a()
    pair.deliver_to_b(init)
    assert pair.b.state is SessionState.AWAIT_CONFIRM
    assert pair.events_b == []
    (response,) = pair.take_b()
    pair.deliver_to_a(response)
    assert pair.a.is_established
    completed(pair.events_a)
    (confirm,) = pair.take_a()
    assert ptype(confirm) is PacketType.CONFIRM
    assert pair.events_b == []
    with pytest.raises(LocalProtocolError):
        pair.b.send(b"too early", pair.now)
    pair.deliver_to_b(confirm)
    assert pair.b.is_established
    assert completed(pair.events_b).peer_id == pair.a_keys.identity.peer_id
    assert not of_type(pair.events_b, MessageReceived)  # a CONFIRM is not a message


def test_ik_responder_is_not_confirmed_by_data() -> None:
    # Only a CONFIRM (carrying the SAS nonce) completes an IK responder; DATA sent
    # after a lost CONFIRM is dropped, and the handshake recovers by retransmission.
    pair = SessionPair(ik=True)
    pair.flush(drop=drop_first(PacketType.CONFIRM, "a"))
    assert pair.b.state is SessionState.AWAIT_CONFIRM
    pair.a.send(b"first", pair.now)
    pair.flush()
    assert pair.events_b == [] and pair.messages_b() == []
    assert pair.b.stats() == {"unconfirmed": 1}
    pair.jump()  # the responder repeats its RESPONSE; the initiator answers with a fresh CONFIRM
    pair.flush()
    assert isinstance(pair.events_b[0], HandshakeCompleted)
    pair.check_messages_flow()


@BOTH
def test_expected_peer_matches(ik: bool) -> None:
    pair = SessionPair(ik=ik, expected_peer=make_keys("bob").identity.peer_id)
    pair.handshake()


@BOTH
def test_expected_peer_mismatch(ik: bool) -> None:
    pair = SessionPair(ik=ik, expected_peer=make_keys("carol").identity.peer_id)
    pair.flush()
    event = closed(pair.events_a)
    assert event.code is ErrorCode.IDENTITY_MISMATCH
    assert not event.by_peer
    assert event.session_id == INDEX_A
    assert not of_type(pair.events_a, HandshakeCompleted)
    assert pair.a.state is SessionState.CLOSED
    assert pair.a.close_code is ErrorCode.IDENTITY_MISMATCH
    assert pair.events_b == []  # the responder learns nothing and times out silently
    while pair.next_timer() is not None:
        pair.jump()
    assert pair.events_b == [] and pair.b.state is SessionState.CLOSED


@BOTH
@pytest.mark.parametrize(("a_versions", "b_versions"), [((1,), (2,)), ((2,), (1,)), ((1,), (2, 3))])
def test_version_mismatch(ik: bool, a_versions: tuple[int, ...], b_versions: tuple[int, ...]) -> None:
    pair = SessionPair(ik=ik, a_config=SessionConfig(versions=a_versions), b_config=SessionConfig(versions=b_versions))
    pair.flush()
    event = closed(pair.events_a)
    assert event.code is ErrorCode.UNSUPPORTED_VERSION
    assert not of_type(pair.events_a, HandshakeCompleted)
    assert pair.events_b == []
    assert not pair.b.is_established


def test_version_negotiation_picks_highest_common() -> None:
    pair = SessionPair(a_config=SessionConfig(versions=(1, 2, 3)), b_config=SessionConfig(versions=(2, 3, 4)))
    pair.handshake()
    assert completed(pair.events_a).version == completed(pair.events_b).version == 3


# -- retransmission and timeouts -------------------------------------------------------


@BOTH
@pytest.mark.parametrize(
    ("initial", "maximum", "timeout", "expected"),
    [
        (1.0, 4.0, 15.0, [1.0, 3.0, 7.0, 11.0]),
        (0.5, 3.0, 14.0, [0.5, 1.5, 3.5, 6.5, 9.5, 12.5]),
    ],
)
def test_init_retransmitted_with_backoff_then_timeout(
    ik: bool, initial: float, maximum: float, timeout: float, expected: list[float]
) -> None:
    config = SessionConfig(retransmit_initial=initial, retransmit_max=maximum, handshake_timeout=timeout)
    pair = SessionPair(ik=ik, a_config=config)
    (init,) = pair.take_a()  # lost
    resent_at = []
    while pair.a.state is not SessionState.CLOSED:
        now = pair.jump()
        for datagram in pair.take_a():
            assert datagram == init
            resent_at.append(now)
    assert resent_at == expected
    assert pair.now == timeout
    event = closed(pair.events_a)
    assert event.code is ErrorCode.HANDSHAKE_TIMEOUT
    assert not event.by_peer
    assert pair.a.get_timer() is None
    assert pair.take_a() == []


@BOTH
def test_lost_init_recovers(ik: bool) -> None:
    pair = SessionPair(ik=ik)
    pair.flush(drop=drop_first(PacketType.INIT, "a"))
    assert not pair.has_b
    assert pair.jump() == 1.0
    pair.flush()
    assert pair.a.is_established and pair.b.is_established
    assert completed(pair.events_a).sas == completed(pair.events_b).sas
    assert pair.a.get_timer() == pair.now + pair.a.config.session_lifetime  # no handshake timer left


@BOTH
def test_responder_that_never_completes_emits_nothing(ik: bool) -> None:
    pair = SessionPair(ik=ik)
    (init,) = pair.take_a()
    pair.deliver_to_b(init)
    first_response = pair.take_b()
    while pair.next_timer() is not None:
        pair.jump()
        pair.take_a()  # everything the initiator sends is lost
        pair.take_b()
    responses = pair.sent_b
    assert len(responses) > 1
    assert all(r == first_response[0] for r in responses)
    assert pair.b.state is SessionState.CLOSED
    assert pair.events_b == []
    assert closed(pair.events_a).code is ErrorCode.HANDSHAKE_TIMEOUT


@BOTH
def test_lost_response_recovers(ik: bool) -> None:
    pair = SessionPair(ik=ik)
    pair.flush(drop=drop_first(PacketType.RESPONSE, "b"))
    assert pair.a.state is SessionState.AWAIT_RESPONSE
    pair.jump()
    pair.flush()
    assert pair.a.is_established and pair.b.is_established
    responses = packets(pair.sent_b, PacketType.RESPONSE)
    assert len(responses) >= 2 and len(set(responses)) == 1
    assert completed(pair.events_a).sas == completed(pair.events_b).sas
    pair.check_messages_flow()


def test_lost_finish_recovers() -> None:
    pair = SessionPair()
    pair.flush(drop=drop_first(PacketType.FINISH, "a"))
    assert pair.a.is_established
    assert pair.b.state is SessionState.AWAIT_FINISH
    assert pair.events_b == []
    assert pair.jump() == 1.0  # the responder's RESPONSE timer
    pair.flush()
    assert pair.b.is_established
    finishes = packets(pair.sent_a, PacketType.FINISH)
    assert len(finishes) == 2 and finishes[0] == finishes[1]
    assert completed(pair.events_a).sas == completed(pair.events_b).sas
    pair.check_messages_flow()


def test_lost_ik_confirmation_recovers() -> None:
    pair = SessionPair(ik=True)
    pair.flush(drop=drop_first(PacketType.CONFIRM, "a"))
    assert pair.a.is_established
    assert pair.b.state is SessionState.AWAIT_CONFIRM
    pair.jump()
    pair.flush()
    assert pair.b.is_established
    confirms = packets(pair.sent_a, PacketType.CONFIRM)
    assert len(confirms) == 2 and confirms[0] != confirms[1]  # a fresh record, not a replay
    assert completed(pair.events_a).sas == completed(pair.events_b).sas
    pair.check_messages_flow()


@BOTH
def test_no_retransmission_after_completion(ik: bool) -> None:
    pair = SessionPair(ik=ik)
    pair.handshake()
    sent = (len(pair.sent_a), len(pair.sent_b))
    assert pair.a.get_timer() == pair.b.get_timer() == pair.a.config.session_lifetime
    for _ in range(3):
        pair.a.handle_timer(pair.now + 100.0)
        pair.b.handle_timer(pair.now + 100.0)
        pair.take_a()
        pair.take_b()
    assert (len(pair.sent_a), len(pair.sent_b)) == sent


@BOTH
def test_duplicate_init_gets_identical_response(ik: bool) -> None:
    pair = SessionPair(ik=ik)
    (init,) = pair.take_a()
    pair.deliver_to_b(init)
    responder = pair.b
    (response,) = pair.take_b()
    state = responder.state
    for _ in range(3):
        pair.deliver_to_b(init)
        assert pair.b is responder
        assert pair.take_b() == [response]
        assert responder.state is state
    assert pair.events_b == []
    pair.deliver_to_a(response)
    pair.flush()
    assert pair.a.is_established and pair.b.is_established


@BOTH
def test_duplicate_init_after_completion_dropped(ik: bool) -> None:
    pair = SessionPair(ik=ik)
    pair.handshake()
    pair.deliver_to_b(pair.sent_a[0])
    assert pair.take_b() == []
    assert pair.b.stats() == {"unexpected_handshake": 1}
    assert len(pair.events_b) == 1


@BOTH
def test_duplicate_response_after_confirmation_dropped(ik: bool) -> None:
    pair = SessionPair(ik=ik)
    pair.handshake()
    pair.b.send(b"confirms", pair.now)
    pair.flush()
    pair.deliver_to_a(pair.sent_b[0])
    assert pair.take_a() == []
    assert pair.a.stats() == {"unexpected_handshake": 1}
    pair.check_messages_flow()


# -- garbage during the handshake -------------------------------------------------------


def mangled(packet: bytes, skip: range) -> list[bytes]:
    """Truncations and single-bit flips of ``packet`` (skipping the byte positions in ``skip``)."""
    out = [packet[:n] for n in (0, 1, 4, 5, 8, 9, 20, len(packet) - 1)]
    out += [packet + b"\x00", packet + bytes(50)]
    for position in range(len(packet)):
        if position not in skip:
            flipped = bytearray(packet)
            flipped[position] ^= 1 << (position % 8)
            out.append(bytes(flipped))
    return out


@BOTH
def test_mangled_response_dropped_then_handshake_completes(ik: bool) -> None:
    pair = SessionPair(ik=ik)
    (init,) = pair.take_a()
    pair.deliver_to_b(init)
    (response,) = pair.take_b()
    # Bytes 1..4 carry the responder's index: Noise does not cover the header, but the
    # payload repeats the index, so a flipped copy is dropped ("index_mismatch") too.
    bad = mangled(response, skip=range(0))
    for datagram in bad:
        pair.deliver_to_a(datagram)
    assert pair.a.state is SessionState.AWAIT_RESPONSE
    assert sum(pair.a.stats().values()) == len(bad)
    assert pair.take_a() == []
    pair.deliver_to_a(response)
    pair.flush()
    assert pair.a.is_established and pair.b.is_established
    assert completed(pair.events_a).sas == completed(pair.events_b).sas


def test_mangled_finish_dropped_then_handshake_completes() -> None:
    pair = SessionPair()
    pair.flush(drop=drop_first(PacketType.FINISH, "a"))
    (finish,) = packets(pair.sent_a, PacketType.FINISH)
    bad = mangled(finish, skip=range(0))
    for datagram in bad:
        pair.deliver_to_b(datagram)
    assert pair.b.state is SessionState.AWAIT_FINISH
    assert sum(pair.b.stats().values()) == len(bad)
    assert pair.events_b == []
    pair.deliver_to_b(finish)
    assert pair.b.is_established
    pair.check_messages_flow()


def test_mangled_ik_confirmation_dropped() -> None:
    pair = SessionPair(ik=True)
    pair.flush(drop=drop_first(PacketType.CONFIRM, "a"))
    (confirm,) = packets(pair.sent_a, PacketType.CONFIRM)
    bad = mangled(confirm, skip=range(0))
    for datagram in bad:
        pair.deliver_to_b(datagram)
    assert pair.b.state is SessionState.AWAIT_CONFIRM
    assert sum(pair.b.stats().values()) == len(bad)
    pair.deliver_to_b(confirm)
    assert pair.b.is_established


@BOTH
def test_mangled_init_rejected_by_responder(ik: bool) -> None:
    pair = SessionPair(ik=ik)
    (init,) = pair.take_a()
    keys = make_keys("bob")
    # Truncations always fail (an INIT is at least 320 bytes), and so does a changed
    # sender index (bytes 2..5, repeated in the payload).  In IK every byte after the
    # header is authenticated; in XX the first message is not (Noise XX message 1 is
    # "e" plus a clear payload).
    candidates = [init[:n] for n in (0, 1, 5, 6, 37, len(init) - 1)]
    candidates += mangled(init, skip=range(0) if ik else range(6, len(init)))[10:]
    for datagram in candidates:
        with pytest.raises(RemoteProtocolError):
            SecureSession.respond_untrusted(keys, datagram, local_index=1, now=0.0, random=SeededRandom(0))
    pair.deliver_to_b(init)
    pair.flush()
    assert pair.a.is_established and pair.b.is_established


@BOTH
def test_wrong_pattern_and_non_init_rejected(ik: bool) -> None:
    pair = SessionPair(ik=ik)
    (init,) = pair.take_a()
    keys = make_keys("bob")
    for datagram in (
        init[:1] + b"\x07" + init[2:],
        bytes([PacketType.RESPONSE]) + init[1:],
        bytes([PacketType.DATA]) + init[1:],
    ):
        with pytest.raises(RemoteProtocolError):
            SecureSession.respond_untrusted(keys, datagram, local_index=1, now=0.0)


def test_packets_for_another_index_dropped() -> None:
    pair = SessionPair()
    pair.handshake()
    pair.a.send(b"x", pair.now)
    (record,) = pair.take_a()
    wrong = record[:1] + (INDEX_B + 1).to_bytes(4, "big") + record[5:]
    pair.deliver_to_b(wrong)
    assert pair.b.stats() == {"wrong_index": 1}
    pair.deliver_to_b(record)
    pair.deliver_to_b(record)
    assert pair.messages_b() == [b"x"]
    assert pair.b.stats() == {"wrong_index": 1, "record_replay": 1}


def test_records_before_keys_dropped() -> None:
    pair = SessionPair()
    (init,) = pair.take_a()
    pair.a.receive_data(bytes([PacketType.DATA]) + INDEX_A.to_bytes(4, "big") + bytes(30), 0.0)
    pair.a.receive_data(b"", 0.0)
    pair.a.receive_data(b"\x00\x01", 0.0)
    assert pair.a.stats() == {"no_keys": 1, "empty": 1, "unknown_type": 1}
    pair.deliver_to_b(init)
    pair.flush()
    assert pair.a.is_established and pair.b.is_established


# -- closing and expiry ---------------------------------------------------------------


@BOTH
def test_close_tells_the_peer(ik: bool) -> None:
    pair = SessionPair(ik=ik)
    pair.handshake()
    pair.a.close(pair.now, ErrorCode.APPLICATION_CLOSE, "bye bye \N{WAVING HAND SIGN}")
    pair.a.close(pair.now)  # idempotent
    (record,) = pair.take_a()
    assert ptype(record) is PacketType.CLOSE
    pair.deliver_to_b(record)
    mine, theirs = closed(pair.events_a), closed(pair.events_b)
    assert (mine.code, mine.by_peer, mine.session_id) == (ErrorCode.APPLICATION_CLOSE, False, INDEX_A)
    assert (theirs.code, theirs.by_peer, theirs.session_id) == (ErrorCode.APPLICATION_CLOSE, True, INDEX_B)
    assert theirs.reason == "bye bye \N{WAVING HAND SIGN}"
    assert pair.b.state is SessionState.CLOSED
    assert pair.b.close_code is ErrorCode.APPLICATION_CLOSE
    assert pair.take_b() == []
    assert pair.a.get_timer() is None and pair.b.get_timer() is None
    for side in (pair.a, pair.b):
        with pytest.raises(LocalProtocolError):
            side.send(b"late", pair.now)
    pair.deliver_to_b(record)  # a closed session ignores everything
    assert pair.b.stats() == {"closed": 1}


def test_close_reason_is_capped_and_unknown_codes_read_as_protocol_violation() -> None:
    pair = SessionPair()
    pair.handshake()
    pair.a.close(pair.now, ErrorCode.NO_ERROR, "r" * 5000)
    pair.flush()
    assert closed(pair.events_b).reason == "r" * 1024
    other = SessionPair(seed=7)
    other.handshake()
    sender = other.a._sender
    assert sender is not None
    other.deliver_to_b(sender.seal(PacketType.CLOSE, b"\xab\xcd\xff\xfe", other.now))
    event = closed(other.events_b)
    assert event.code is ErrorCode.PROTOCOL_VIOLATION
    assert event.reason == "\N{REPLACEMENT CHARACTER}" * 2


@pytest.mark.parametrize(("char", "kept"), [("\N{EURO SIGN}", 341), ("\N{LATIN SMALL LETTER E WITH ACUTE}", 512)])
def test_close_reason_is_cut_on_a_character_boundary(char: str, kept: int) -> None:
    # 1024 bytes of UTF-8 at most, never half a character (3-byte: 341 fit; 2-byte: 512 fit).
    pair = SessionPair()
    pair.handshake()
    pair.a.close(pair.now, ErrorCode.NO_ERROR, char * 2000)
    (record,) = pair.take_a()
    pair.deliver_to_b(record)
    assert closed(pair.events_b).reason == char * kept


def test_unknown_record_types_dropped_before_decryption() -> None:
    pair = SessionPair()
    pair.handshake()
    sender = pair.a._sender
    assert sender is not None
    for kind in (0x0B, 0x0F, 0x01, 0x7F, 0xFF):  # unassigned in 4-15, then outside it
        pair.deliver_to_b(sender.seal(kind, b"from the future", pair.now))
    assert pair.b.stats() == {"unknown_type": 5}
    receiver = pair.b._receiver
    assert receiver is not None and receiver.window.top == -1  # never decrypted: the window did not move
    assert pair.messages_b() == []
    pair.check_messages_flow()


def test_close_during_handshake_sends_nothing() -> None:
    pair = SessionPair()
    pair.take_a()
    pair.a.close(pair.now)
    assert pair.take_a() == []
    event = closed(pair.events_a)
    assert (event.code, event.by_peer) == (ErrorCode.NO_ERROR, False)
    assert pair.a.get_timer() is None


@BOTH
def test_session_lifetime_expiry(ik: bool) -> None:
    config = SessionConfig(session_lifetime=100.0)
    pair = SessionPair(ik=ik, a_config=config, b_config=config)
    pair.handshake()
    pair.now = 50.0
    pair.check_messages_flow()
    assert pair.jump() == 100.0
    pair.flush()
    for events in (pair.events_a, pair.events_b):
        assert closed(events).code is ErrorCode.SESSION_EXPIRED
    assert pair.a.state is pair.b.state is SessionState.CLOSED
    assert pair.next_timer() is None


@BOTH
def test_session_lifetime_expiry_without_peer(ik: bool) -> None:
    config = SessionConfig(session_lifetime=100.0)
    pair = SessionPair(ik=ik, a_config=config, b_config=config)
    pair.handshake()
    assert pair.jump() == 100.0
    assert [ptype(d) for d in pair.take_a() + pair.take_b()] == [PacketType.CLOSE] * 2  # both lost
    assert closed(pair.events_a).code is closed(pair.events_b).code is ErrorCode.SESSION_EXPIRED
    assert not closed(pair.events_b).by_peer


def test_rekey_inside_a_session() -> None:
    config = SessionConfig(rekey_after_messages=3, rekey_after_seconds=5.0)
    pair = SessionPair(a_config=config, b_config=config)
    pair.handshake()
    for i in range(20):
        pair.now += 1.0
        pair.check_messages_flow(b"%d" % i)
    assert pair.a._sender is not None and pair.a._sender.epoch > 5
    assert completed(pair.events_a).sas == completed(pair.events_b).sas


# -- caller misuse -----------------------------------------------------------------------


@BOTH
def test_send_before_established_raises(ik: bool) -> None:
    pair = SessionPair(ik=ik)
    with pytest.raises(LocalProtocolError):
        pair.a.send(b"early", pair.now)
    with pytest.raises(LocalProtocolError):
        pair.a.send_keepalive(pair.now)
    (init,) = pair.take_a()
    pair.deliver_to_b(init)
    with pytest.raises(LocalProtocolError):
        pair.b.send(b"early", pair.now)


def test_oversize_message_raises() -> None:
    pair = SessionPair(b_config=SessionConfig(max_record_plaintext=100))
    pair.handshake()
    assert pair.a.peer_max_plaintext == 100
    with pytest.raises(LocalProtocolError) as info:
        pair.a.send(bytes(101), pair.now)
    assert info.value.code is ErrorCode.RECORD_TOO_LARGE
    pair.a.send(bytes(100), pair.now)
    big = pair.b.peer_max_plaintext
    with pytest.raises(LocalProtocolError):
        pair.b.send(bytes(big + 1), pair.now)
    pair.b.send(bytes(big), pair.now)
    pair.flush()
    assert pair.messages_b() == [bytes(100)]
    assert pair.messages_a() == [bytes(big)]
    assert pair.a.is_established and pair.b.is_established


def test_counter_exhaustion_closes_the_session() -> None:
    pair = SessionPair()
    pair.handshake()
    sender = pair.a._sender
    assert sender is not None
    sender._next = COUNTER_LIMIT
    with pytest.raises(LocalProtocolError) as info:
        pair.a.send(b"x", pair.now)
    assert info.value.code is ErrorCode.COUNTER_EXHAUSTED
    assert pair.take_a() == []
    assert closed(pair.events_a).code is ErrorCode.COUNTER_EXHAUSTED
    assert pair.a.state is SessionState.CLOSED


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda p: p[:4].hex())
def test_low_order_remote_static_for_ik(point: bytes) -> None:
    with pytest.raises(LocalProtocolError) as info:
        SecureSession.initiate(make_keys("alice"), local_index=1, now=0.0, remote_static=point)
    assert info.value.code is ErrorCode.WEAK_KEY


def test_bad_arguments() -> None:
    keys = make_keys("alice")
    with pytest.raises(LocalProtocolError):
        SecureSession.initiate(keys, local_index=1, now=0.0, remote_static=bytes(31))
    for index in (-1, 2**32):
        with pytest.raises(LocalProtocolError):
            SecureSession.initiate(keys, local_index=index, now=0.0)
    for kwargs in (
        {"retransmit_initial": 0.0},
        {"retransmit_initial": 5.0, "retransmit_max": 4.0},
        {"retransmit_max": 20.0},
        {"rekey_after_messages": 0},
        {"session_lifetime": 0.0},
        {"max_record_plaintext": 0},
        {"max_record_plaintext": 70000},
        {"versions": ()},
    ):
        with pytest.raises(LocalProtocolError):
            SessionConfig(**kwargs)


def test_transition_table_rejects_missing_entries() -> None:
    session = SessionPair().a
    session.state = SessionState.CLOSED
    with pytest.raises(LocalProtocolError):
        session._transition(Input.CLOSE)
    assert TRANSITIONS[SessionState.CLOSED] == {}
    for state, row in TRANSITIONS.items():
        if state is not SessionState.CLOSED:
            assert row[Input.CLOSE] is SessionState.CLOSED


# -- weak ephemerals in an INIT -----------------------------------------------------------


#: Sender index and payload of the hand-built INITs below: a valid one, padded (spec/handshake.md §5, §8).
HAND_INDEX = 0x11223344
HAND_PAYLOAD = HandshakePayload(versions=(1,), session_index=HAND_INDEX, sas_commitment=sas_commitment(bytes(32)))


def xx_init_with_ephemeral(ephemeral_public: bytes) -> bytes:
    payload = padded(HAND_PAYLOAD, 6 + 32)
    return encode_init(Pattern.XX, HAND_INDEX, ephemeral_public + payload)


def ik_init_with_ephemeral(ephemeral_public: bytes) -> bytes:
    """A real IK INIT whose ephemeral public key is replaced (its MAC then cannot matter)."""
    keys, bob = make_keys("alice"), make_keys("bob")
    hs = HandshakeState(
        pattern=Pattern.IK,
        initiator=True,
        prologue=SessionConfig().prologue,
        s=keys.static_private,
        rs=bob.static_public,
        random=SeededRandom("ik-init"),
    )
    message = hs.write_message(padded(with_identity(keys, HAND_PAYLOAD), 6 + 32 + 48 + 16))
    return encode_init(Pattern.IK, HAND_INDEX, ephemeral_public + message[32:])


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda p: p[:4].hex())
@pytest.mark.parametrize("build", [xx_init_with_ephemeral, ik_init_with_ephemeral], ids=["XX", "IK"])
def test_low_order_ephemeral_in_init_rejected(point: bytes, build: Callable[[bytes], bytes]) -> None:
    datagram = build(point)
    with pytest.raises(RemoteProtocolError) as info:
        SecureSession.respond_untrusted(make_keys("bob"), datagram, local_index=1, now=0.0, random=SeededRandom(1))
    assert info.value.code is ErrorCode.WEAK_KEY


def test_hand_built_xx_init_is_accepted() -> None:
    """The builder above is a valid INIT when the ephemeral is a real key: the rejection is about the key."""
    good = SeededRandom("e")(32)
    init = xx_init_with_ephemeral(crypto.x25519_public(good))
    assert len(init) == MIN_INIT_SIZE
    session = SecureSession.respond_untrusted(make_keys("bob"), init, local_index=1, now=0.0)
    assert session.state is SessionState.AWAIT_FINISH
    assert isinstance(session.data_to_send(0.0)[0], bytes)


def test_session_closed_event_type() -> None:
    pair = SessionPair()
    pair.handshake()
    pair.b.close(pair.now, ErrorCode.INTERNAL_ERROR, "x")
    pair.flush()
    assert isinstance(pair.events_a[-1], SessionClosed)
    assert pair.events_a[-1].code is ErrorCode.INTERNAL_ERROR


# -- the channel layer's hot path ---------------------------------------------------


@BOTH
def test_receive_data_record_returns_data_records_without_events(ik: bool) -> None:
    pair = SessionPair(ik=ik)
    pair.handshake()
    pair.flush()
    # Until a record from the peer authenticated, the slow path runs: an event, and None.
    first = pair.a.send(b"first", pair.now)
    (record,) = pair.take_a()
    assert pair.b.receive_data_record(record, pair.now) is None
    event = pair.b.next_event()
    assert isinstance(event, MessageReceived) and (event.packet_number, event.data) == (first, b"first")
    counter = pair.a.send(b"bulk", pair.now)
    (record,) = pair.take_a()
    assert pair.b.receive_data_record(record, pair.now) == (counter, b"bulk")
    assert pair.b.next_event() is None
    # A replay, forgeries and datagrams that are no DATA record: None, handled as receive_data does.
    pair.a.send(b"x", pair.now)
    (fresh,) = pair.take_a()
    before = pair.b.stats()
    assert pair.b.receive_data_record(record, pair.now) is None
    assert pair.b.receive_data_record(fresh[:-1] + bytes([fresh[-1] ^ 1]), pair.now) is None
    assert pair.b.receive_data_record(fresh[:1] + b"\x00\x00\x00\x00" + fresh[5:], pair.now) is None
    assert pair.b.receive_data_record(b"", pair.now) is None
    assert pair.b.next_event() is None
    after = pair.b.stats()
    assert after["record_replay"] == before.get("record_replay", 0) + 1
    assert after["record_auth"] == before.get("record_auth", 0) + 1
    assert after["wrong_index"] == before.get("wrong_index", 0) + 1
    assert after["empty"] == before.get("empty", 0) + 1
    assert pair.b.receive_data_record(fresh, pair.now) == (counter + 1, b"x")
    pair.a.close(pair.now)
    (close,) = pair.take_a()
    assert pair.b.receive_data_record(close, pair.now) is None
    assert isinstance(pair.b.next_event(), SessionClosed)


def test_receive_data_record_waits_for_the_ik_confirmation() -> None:
    """Before the IK responder is confirmed, DATA goes the slow way and is dropped (handshake.md)."""
    pair = SessionPair(ik=True)
    (init,) = pair.take_a()
    pair.deliver_to_b(init)
    for datagram in pair.take_b():
        pair.deliver_to_a(datagram)
    confirm = pair.take_a()
    pair.a.send(b"early", pair.now)
    (early,) = pair.take_a()
    assert pair.b.receive_data_record(early, pair.now) is None
    assert pair.b.stats()["unconfirmed"] == 1
    for datagram in confirm:
        pair.deliver_to_b(datagram)
    assert pair.b.state is SessionState.ESTABLISHED
    while pair.b.next_event() is not None:
        pass
    # The first record after the confirmation still takes the slow path; the next ones the fast one.
    counter = pair.a.send(b"late", pair.now)
    (data,) = pair.take_a()
    assert pair.b.receive_data_record(data, pair.now) is None
    event = pair.b.next_event()
    assert isinstance(event, MessageReceived) and (event.packet_number, event.data) == (counter, b"late")
    counter = pair.a.send(b"later", pair.now)
    (data,) = pair.take_a()
    assert pair.b.receive_data_record(data, pair.now) == (counter, b"later")
    assert pair.b.next_event() is None
