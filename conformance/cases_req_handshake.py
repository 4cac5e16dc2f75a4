"""Cases for the requirements of spec/handshake.md that no earlier case tested (spec/conformance.md §6).

Each case cites the ids it guards.  The timer cases drive the IUT's clock by hand:
they fire a retransmission late, or run the timers of an established session, and
check when the next packet goes out.  The payload cases build RESPONSEs, FINISHes
and INITs whose fields break one rule (or two at once, for the order of checks of
§8.4) with the ``Hand`` of conformance/reference.py.
"""

from __future__ import annotations

from typing import Any

from p2pos.proto.errors import ErrorCode
from p2pos.proto.handshake.noise import HandshakeState, Pattern
from p2pos.proto.handshake.payload import (
    CAP_MAX_RECORD_PLAINTEXT,
    F_CAPABILITIES,
    F_IDENTITY_KEY,
    F_IDENTITY_SIG,
    F_PADDING,
    F_SAS_COMMITMENT,
    F_SESSION_INDEX,
    F_VERSIONS,
    encode_fields,
)
from p2pos.proto.identity.identity import DOMAIN_NOISE_STATIC
from p2pos.proto.session.wire import PacketType, encode_finish

from .cases_handshake_errors import (
    LOW_ORDER,
    _expect_closed,
    _expect_never_established,
    _expect_no_session,
    _iut_initiator,
    _respond,
    _responder_finish,
)
from .checks import CaseFailed, expect, expect_eq, short
from .iut import Iut
from .reference import (
    INIT_OVERHEAD,
    IUT,
    IUT_INDEX,
    MIN_INIT_SIZE,
    OTHER,
    REF,
    REF_INDEX,
    Hand,
    Link,
    decode_payload,
    establish,
    events_of,
    finish_payload,
    get_timer,
    handshake_message,
    identity_payload,
    init_payload,
    no_event,
    one_event,
    one_packet,
    one_packet_of,
    out_of,
    response_payload,
    sas_commitment,
    session_state,
    start_session,
)
from .registry import case

WEAK = "handshake.md §2.2"
PARSING = "handshake.md §4.4"
FIELDS = "handshake.md §5.1"
CAPABILITIES = "handshake.md §5.2"
VERSIONS = "handshake.md §5.3"
CONFIRMATION = "handshake.md §6.4"
CACHE = "handshake.md §6.5"
SAS = "handshake.md §7.1"
TIMERS = "handshake.md §8.1"
DUPLICATES = "handshake.md §8.2"
REPLAY_CACHE = "handshake.md §8.3"
FAILURES = "handshake.md §8.4"
AMPLIFICATION = "handshake.md §8.5"

#: Handshake packet types: none of them may leave an established session on a timer.
_HANDSHAKE_TYPES = (PacketType.INIT, PacketType.RESPONSE, PacketType.FINISH)


def _quiet(answer: dict[str, Any], what: str) -> None:
    """Nothing sent, nothing reported."""
    expect_eq((out_of(answer), events_of(answer)), ([], []), what)


def _ref_index_bytes() -> bytes:
    return REF_INDEX.to_bytes(4, "big")


# -- §8.1 timers -----------------------------------------------------------------------------


@case(
    "hs/req/1",
    section=TIMERS,
    title="a late retransmission timer sends once and counts the next interval from when it fired",
    requirements=("HS-8.1.4", "HS-8.1.3"),
)
def _(iut: Iut) -> str:
    init = one_packet_of(start_session(iut, "initiator"))
    expect_eq(get_timer(iut), 1.0, "first retransmission timer")
    # Each timer is run late; the next one must count from the moment it ran (the send).
    schedule = ((2.5, 2.0), (4.5, 4.0), (8.5, 4.0), (12.5, 2.5))
    for fired, interval in schedule:
        answer = iut.ok("timer", now=fired)
        sent = out_of(answer)
        expect(len(sent) == 1, f"a late timer run at {fired} s sent {len(sent)} datagrams, expected one INIT")
        expect_eq(sent[0].hex(), init.hex(), f"INIT resent at {fired} s")
        timer = get_timer(iut)
        if timer is None or abs(timer - (fired + interval)) > 1e-6:
            raise CaseFailed(
                f"after the timer ran at {fired} s the next timer is {timer}, expected {fired + interval}"
                " (the interval counts from the late send, not from when the timer was due)"
            )
        if fired + interval < 15.0:
            early = fired + interval - 0.25
            expect_eq(out_of(iut.ok("timer", now=early)), [], f"datagrams at {early} s, before the next timer")
    return "INIT resent at 2.5, 4.5, 8.5, 12.5 s; the handshake deadline at 15 s"


def _no_handshake_on_timers(iut: Iut, what: str) -> None:
    """Run the timers of an established session past the handshake's whole schedule: no handshake packet."""
    for now in (0.5, 1.0, 2.0, 3.0, 5.0, 7.0, 9.0, 11.0, 13.0, 15.0, 20.0):
        answer = iut.ok("timer", now=now)
        for datagram in out_of(answer):
            expect(
                datagram[0] not in _HANDSHAKE_TYPES and datagram[0] != PacketType.CONFIRM,
                f"{what}: a packet of type {datagram[0]:#04x} sent on a timer at {now} s after establishment",
            )
        no_event(answer, "closed", f"{what}: the established session closed at {now} s")
    expect_eq(session_state(iut), "established", f"{what}: state at 20 s")


@case(
    "hs/req/2",
    section=TIMERS,
    title="XX initiator: once the RESPONSE is read, neither INIT nor FINISH is sent on a timer",
    requirements=("HS-8.1.1", "HS-8.1.6"),
)
def _(iut: Iut) -> None:
    establish(iut, "initiator")
    _no_handshake_on_timers(iut, "XX initiator")


@case(
    "hs/req/3",
    section=TIMERS,
    title="IK initiator: once the RESPONSE is read, neither INIT nor CONFIRM is sent on a timer",
    requirements=("HS-8.1.1", "HS-8.1.6"),
)
def _(iut: Iut) -> None:
    establish(iut, "initiator", pattern=Pattern.IK)
    _no_handshake_on_timers(iut, "IK initiator")


@case(
    "hs/req/4",
    section=TIMERS,
    title="XX responder: once the FINISH is read, the RESPONSE is not sent again on a timer",
    requirements=("HS-8.1.2",),
)
def _(iut: Iut) -> None:
    establish(iut, "responder")
    _no_handshake_on_timers(iut, "XX responder")


def _silent_timeout(iut: Iut, pattern: Pattern) -> str:
    """A responder that gets no FINISH or CONFIRM reports nothing, ever, and ends with HANDSHAKE_TIMEOUT."""
    hand = Hand(pattern, initiator=True, rs=IUT.static_public if pattern is Pattern.IK else None)
    start_session(iut, "responder")
    answer = iut.ok("receive", data=hand.init(init_payload(pattern)), now=0.0)
    one_packet(answer, PacketType.RESPONSE)
    expect_eq(events_of(answer), [], "events after the INIT")
    fired: list[float] = []
    for _ in range(50):
        timer = get_timer(iut)
        if timer is None:
            break
        expect(timer <= 15.0 + 1e-6, f"a timer at {timer} s, after the 15 s handshake deadline")
        answer = iut.ok("timer", now=timer)
        expect_eq(events_of(answer), [], f"events of the responder's timer at {timer} s")
        fired.append(timer)
    state = iut.ok("state")
    expect_eq((state.get("state"), state.get("close_code")), ("closed", "HANDSHAKE_TIMEOUT"), "state at the end")
    return f"timers at {fired}, no event"


@case(
    "hs/req/5",
    section=CONFIRMATION,
    title="IK responder without a CONFIRM: HANDSHAKE_TIMEOUT at 15 s, and no event at any time",
    requirements=("HS-6.4.7", "HS-8.3.4", "HS-8.1.5"),
)
def _(iut: Iut) -> str:
    return _silent_timeout(iut, Pattern.IK)


@case(
    "hs/req/6",
    section=REPLAY_CACHE,
    title="XX responder without a FINISH: HANDSHAKE_TIMEOUT at 15 s, and no event at any time",
    requirements=("HS-8.3.4", "HS-8.1.5"),
)
def _(iut: Iut) -> str:
    return _silent_timeout(iut, Pattern.XX)


# -- §6.4, §8.2 duplicates and late packets ------------------------------------------------


def _ik_responder(
    iut: Iut, versions: tuple[int, ...] = (1,), config: dict[str, Any] | None = None
) -> tuple[Link, bytes]:
    """The IUT as IK responder, RESPONSE read; the reference's keys (CONFIRM not sent) and the INIT."""
    hand = Hand(Pattern.IK, initiator=True, rs=IUT.static_public)
    start_session(iut, "responder", config=config)
    init = hand.init(init_payload(Pattern.IK, versions=versions))
    response = one_packet(iut.ok("receive", data=init, now=0.0), PacketType.RESPONSE)
    hand.check_identity(hand.read(handshake_message(response, PacketType.RESPONSE), "RESPONSE"))
    k_i2r, k_r2i = hand.hs.split()
    return Link(k_i2r, k_r2i, IUT_INDEX, hand.hash), init


@case(
    "hs/req/7",
    section=CONFIRMATION,
    title="IK responder: a DATA record dropped before CONFIRM is a replay when it comes again after it",
    requirements=("HS-6.4.6",),
)
def _(iut: Iut) -> None:
    link, _ = _ik_responder(iut)
    early = link.data(b"early", counter=1)
    _quiet(iut.ok("receive", data=early, now=0.1), "answer to a DATA record before CONFIRM")
    answer = iut.ok("receive", data=link.seal(PacketType.CONFIRM, REF.sas_nonce, counter=0), now=0.2)
    one_event(answer, "handshake_completed")
    no_event(answer, "message", "a DATA record dropped before CONFIRM must not be buffered")
    answer = iut.ok("receive", data=early, now=0.3)
    no_event(answer, "message", "the DATA record dropped before CONFIRM, sent again (its counter is used)")
    answer = iut.ok("receive", data=link.data(b"fresh", counter=2), now=0.4)
    expect_eq([e.get("data") for e in events_of(answer, "message")], [b"fresh".hex()], "messages after CONFIRM")


@case(
    "hs/req/8",
    section=DUPLICATES,
    title="XX responder: a FINISH repeated after establishment is dropped",
    requirements=("HS-8.2.6",),
)
def _(iut: Iut) -> None:
    hand = Hand(Pattern.XX, initiator=True)
    start_session(iut, "responder")
    response = one_packet(iut.ok("receive", data=hand.init(init_payload()), now=0.0), PacketType.RESPONSE)
    hand.read(handshake_message(response, PacketType.RESPONSE), "RESPONSE")
    finish = encode_finish(IUT_INDEX, hand.write(finish_payload()))
    k_i2r, k_r2i = hand.hs.split()
    link = Link(k_i2r, k_r2i, IUT_INDEX, hand.hash)
    one_event(iut.ok("receive", data=finish, now=0.1), "handshake_completed")
    _quiet(iut.ok("receive", data=finish, now=0.2), "answer to the FINISH repeated after establishment")
    expect_eq(session_state(iut), "established", "state")
    answer = iut.ok("receive", data=link.data(b"still fine"), now=0.3)
    expect_eq([e.get("data") for e in events_of(answer, "message")], [b"still fine".hex()], "messages")


@case(
    "hs/req/9",
    section=DUPLICATES,
    title="XX initiator: a RESPONSE that is not byte-identical to the one read is dropped after establishment",
    requirements=("HS-8.2.5",),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut)
    response = hand.response(response_payload())
    one_packet(iut.ok("receive", data=response, now=0.0), PacketType.FINISH)
    altered = response[:-1] + bytes([response[-1] ^ 0x01])
    _quiet(iut.ok("receive", data=altered, now=1.0), "answer to a RESPONSE differing in its last byte")
    # The genuine duplicate is still answered: the altered one changed nothing.
    one_packet(iut.ok("receive", data=response, now=1.1), PacketType.FINISH)


@case(
    "hs/req/10",
    section=DUPLICATES,
    title="IK responder awaiting CONFIRM: a duplicate INIT gets the identical RESPONSE",
    requirements=("HS-8.2.1",),
)
def _(iut: Iut) -> None:
    hand = Hand(Pattern.IK, initiator=True, rs=IUT.static_public)
    start_session(iut, "responder")
    init = hand.init(init_payload(Pattern.IK))
    response = one_packet(iut.ok("receive", data=init, now=0.0), PacketType.RESPONSE)
    answer = iut.ok("receive", data=init, now=0.5)
    expect_eq(one_packet(answer, PacketType.RESPONSE).hex(), response.hex(), "RESPONSE to the duplicate IK INIT")
    expect_eq(events_of(answer), [], "events")
    expect_eq(session_state(iut), "handshaking", "state")


# -- §8.5 the budget ends with validation ----------------------------------------------------


@case(
    "hs/req/11",
    section=AMPLIFICATION,
    title="once the FINISH validated the initiator, the responder's records are not held to 3x the INIT",
    requirements=("HS-8.5.2",),
)
def _(iut: Iut) -> str:
    link = establish(iut, "responder")
    total = 0
    for i in range(4):
        record = one_packet(iut.ok("send", data=bytes([i]) * 1000, now=0.1 + i / 10), PacketType.DATA)
        expect_eq(link.open(record).plaintext, bytes([i]) * 1000, f"DATA record {i}")
        total += len(record)
    return f"{total} bytes of records after a {MIN_INIT_SIZE}-byte INIT"


# -- §2.2 keys -----------------------------------------------------------------------------


@case(
    "hs/req/12",
    section=WEAK,
    title="a FINISH carrying a low-order static key is dropped; the genuine FINISH completes",
    requirements=("HS-2.2.1", "HS-2.2.3"),
)
def _(iut: Iut) -> str:
    hand = Hand(Pattern.XX, initiator=True)
    start_session(iut, "responder")
    response = one_packet(iut.ok("receive", data=hand.init(init_payload()), now=0.0), PacketType.RESPONSE)
    hand.read(handshake_message(response, PacketType.RESPONSE), "RESPONSE")
    for point in LOW_ORDER:
        forged: HandshakeState = hand.hs.copy()
        forged.s_pub = point  # the `s` token carries it; the responder's `se` DH is then all zero
        bad = encode_finish(IUT_INDEX, forged.write_message(finish_payload()))
        _quiet(iut.ok("receive", data=bad, now=0.1), f"answer to a FINISH with static key {point.hex()[:16]}...")
    expect_eq(session_state(iut), "handshaking", "state after the low-order FINISHes")
    good = encode_finish(IUT_INDEX, hand.write(finish_payload()))
    one_event(iut.ok("receive", data=good, now=0.2), "handshake_completed")
    return f"{len(LOW_ORDER)} low-order FINISHes dropped"


@case(
    "hs/req/13",
    section=WEAK,
    title="an INIT whose ephemeral key has bit 255 set (non-canonical) is answered",
    requirements=("HS-2.2.5",),
)
def _(iut: Iut) -> None:
    start_session(iut, "responder")
    init = bytearray(Hand(Pattern.XX, initiator=True).init(init_payload()))
    init[6 + 31] |= 0x80  # XX message 1 starts with `e`: bit 255 is the top bit of its last byte
    response = one_packet(iut.ok("receive", data=bytes(init), now=0.0), PacketType.RESPONSE)
    expect_eq(int.from_bytes(response[5:9], "big"), REF_INDEX, "receiver index of the RESPONSE")


# -- §4.4 sizes ----------------------------------------------------------------------------


@case(
    "hs/req/14",
    section=PARSING,
    title="an INIT of 65536 bytes creates no session; one of 65535 bytes is answered",
    requirements=("HS-4.4.1",),
)
def _(iut: Iut) -> None:
    start_session(iut, "responder")
    long = Hand(Pattern.XX, initiator=True).init(init_payload(size=65536))
    expect_eq(len(long), 65536, "internal: size of the long INIT")
    _expect_no_session(iut, iut.ok("receive", data=long, now=0.0))
    largest = Hand(Pattern.XX, initiator=True, ephemeral=OTHER.ephemeral).init(init_payload(size=65535))
    expect_eq(len(largest), 65535, "internal: size of the largest INIT")
    one_packet(iut.ok("receive", data=largest, now=0.0), PacketType.RESPONSE)


# -- §5.1, §5.2 payload rules --------------------------------------------------------------


def _padded_init(pattern: Pattern, fields: list[tuple[int, bytes]], tail: bytes = b"") -> bytes:
    """An INIT from the reference whose payload is ``fields``, padded to 320 bytes, then ``tail``."""
    short_by = MIN_INIT_SIZE - INIT_OVERHEAD[pattern] - len(encode_fields(fields)) - len(tail)
    if short_by > 0:
        fields = [*fields, (F_PADDING, bytes(max(short_by - 4, 0)))]
    hand = Hand(pattern, initiator=True, rs=IUT.static_public if pattern is Pattern.IK else None)
    return hand.init(encode_fields(fields) + tail)


def _ik_identity(capabilities: bytes | None = None, key: bytes | None = None) -> list[tuple[int, bytes]]:
    caps = encode_fields([(CAP_MAX_RECORD_PLAINTEXT, (65505).to_bytes(4, "big"))])
    return [
        (F_VERSIONS, b"\x00\x01"),
        (F_IDENTITY_KEY, key if key is not None else REF.peer_id.public_key),
        (F_IDENTITY_SIG, REF.identity.sign(DOMAIN_NOISE_STATIC, REF.static_public)),
        (F_CAPABILITIES, capabilities if capabilities is not None else caps),
    ]


@case(
    "hs/req/15",
    section=FIELDS,
    title="INITs with a malformed payload create no session: truncated field, bad versions, wrong sizes",
    requirements=("HS-5.1.6", "HS-5.2.2"),
)
def _(iut: Iut) -> str:
    start_session(iut, "responder")
    index = (F_SESSION_INDEX, _ref_index_bytes())
    commit = (F_SAS_COMMITMENT, sas_commitment(REF.sas_nonce))
    one = (F_VERSIONS, b"\x00\x01")
    cap = (CAP_MAX_RECORD_PLAINTEXT, (65505).to_bytes(4, "big"))
    variants = {
        "a truncated last field": _padded_init(Pattern.XX, [one, index, commit], tail=b"\x07\x77\x00\x10ab"),
        "an empty versions field": _padded_init(Pattern.XX, [(F_VERSIONS, b""), index, commit]),
        "a versions field of 3 bytes": _padded_init(Pattern.XX, [(F_VERSIONS, b"\x00\x01\x00"), index, commit]),
        "a 31-byte SAS commitment": _padded_init(Pattern.XX, [one, index, (F_SAS_COMMITMENT, commit[1][:31])]),
        "a duplicated padding field": _padded_init(Pattern.XX, [one, index, commit, (F_PADDING, b"")]),
        "an IK identity key of 31 bytes": _padded_init(
            Pattern.IK, [*_ik_identity(key=REF.peer_id.public_key[:31]), index, commit]
        ),
        "an IK identity signature of 63 bytes": _padded_init(
            Pattern.IK,
            [*[(t, v[:63] if t == F_IDENTITY_SIG else v) for t, v in _ik_identity()], index, commit],
        ),
        "an IK capability given twice": _padded_init(
            Pattern.IK, [*_ik_identity(capabilities=encode_fields([cap, cap])), index, commit]
        ),
    }
    for what, init in variants.items():
        answer = iut.ok("receive", data=init, now=0.0)
        expect_eq(out_of(answer), [], f"datagrams sent in answer to an INIT with {what}")
        expect_eq(session_state(iut), "none", f"state after an INIT with {what}")
    good = Hand(Pattern.XX, initiator=True, ephemeral=OTHER.ephemeral).init(init_payload())
    one_packet(iut.ok("receive", data=good, now=0.0), PacketType.RESPONSE)
    return f"{len(variants)} INITs refused, then a good one answered"


@case(
    "hs/req/16",
    section=FIELDS,
    title="a RESPONSE with its fields in descending order and an empty padding field completes",
    requirements=("HS-5.1.8", "HS-5.1.7"),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut)
    caps = encode_fields([(CAP_MAX_RECORD_PLAINTEXT, (65505).to_bytes(4, "big"))])
    fields = [
        (F_PADDING, b""),
        (F_SESSION_INDEX, _ref_index_bytes()),
        (F_CAPABILITIES, caps),
        (F_IDENTITY_SIG, REF.identity.sign(DOMAIN_NOISE_STATIC, REF.static_public)),
        (F_IDENTITY_KEY, REF.peer_id.public_key),
        (F_VERSIONS, b"\x00\x01"),
    ]
    answer = _respond(iut, hand, encode_fields(fields))
    one_event(answer, "handshake_completed")
    one_packet(answer, PacketType.FINISH)


@case(
    "hs/req/17",
    section=FIELDS,
    title="an INIT padded with non-zero bytes is answered and the handshake completes",
    requirements=("HS-5.1.3",),
)
def _(iut: Iut) -> None:
    hand = Hand(Pattern.XX, initiator=True)
    base = init_payload(size=0)
    filler = MIN_INIT_SIZE - INIT_OVERHEAD[Pattern.XX] - len(base) - 4
    init = hand.init(base + encode_fields([(F_PADDING, b"\xa5" * filler)]))
    expect_eq(len(init), MIN_INIT_SIZE, "internal: size of the INIT")
    start_session(iut, "responder")
    response = one_packet(iut.ok("receive", data=init, now=0.0), PacketType.RESPONSE)
    hand.check_identity(hand.read(handshake_message(response, PacketType.RESPONSE), "RESPONSE"))
    answer = iut.ok("receive", data=encode_finish(IUT_INDEX, hand.write(finish_payload())), now=0.0)
    one_event(answer, "handshake_completed")


def _response_with_caps(caps: bytes) -> bytes:
    fields = _ik_identity(capabilities=caps)
    return encode_fields([*fields, (F_SESSION_INDEX, _ref_index_bytes())])


@case(
    "hs/req/18",
    section=CAPABILITIES,
    title="a max record plaintext capability that is not 4 bytes reads as 65505: a 65505-byte message is sent",
    requirements=("HS-5.2.4",),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut)
    caps = encode_fields([(CAP_MAX_RECORD_PLAINTEXT, b"\x00\x10")])  # 2 bytes: not a valid limit
    answer = _respond(iut, hand, _response_with_caps(caps))
    one_event(answer, "handshake_completed")
    hand.read(handshake_message(one_packet(answer, PacketType.FINISH), PacketType.FINISH), "FINISH")
    k_i2r, k_r2i = hand.hs.split()
    link = Link(k_r2i, k_i2r, IUT_INDEX, hand.hash)
    answer = iut.call("send", data=bytes(65505), now=0.1)
    if not answer.get("ok"):
        raise CaseFailed(f"sending 65505 bytes to a peer whose limit capability is 2 bytes long: {short(answer)}")
    record = one_packet(answer, PacketType.DATA)
    expect_eq(len(link.open(record).plaintext), 65505, "plaintext of the DATA record")


@case(
    "hs/req/19",
    section=CAPABILITIES,
    title="a RESPONSE with a capability given twice: MALFORMED_MESSAGE",
    requirements=("HS-5.2.2", "HS-5.1.6"),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut)
    cap = (CAP_MAX_RECORD_PLAINTEXT, (65505).to_bytes(4, "big"))
    _expect_closed(iut, _respond(iut, hand, _response_with_caps(encode_fields([cap, cap]))), "MALFORMED_MESSAGE")


@case(
    "hs/req/20",
    section=CAPABILITIES,
    title="a RESPONSE whose capability list ends in a truncated capability: MALFORMED_MESSAGE",
    requirements=("HS-5.2.2",),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut)
    cap = encode_fields([(CAP_MAX_RECORD_PLAINTEXT, (65505).to_bytes(4, "big"))])
    truncated = cap + b"\x09\x99\x00\x08abc"  # an unknown capability of 8 bytes, 3 present
    _expect_closed(iut, _respond(iut, hand, _response_with_caps(truncated)), "MALFORMED_MESSAGE")


# -- §7.1 the SAS nonce stays hidden until message 2 ----------------------------------------------


@case(
    "hs/req/21",
    section=SAS,
    title="the IUT's XX INIT carries the commitment but not the SAS nonce",
    requirements=("HS-7.1.4", "HS-7.1.1"),
)
def _(iut: Iut) -> None:
    init = one_packet_of(start_session(iut, "initiator"))
    payload = decode_payload(
        Hand(Pattern.XX, initiator=False).read(handshake_message(init, PacketType.INIT), "INIT"), "INIT"
    )
    expect_eq(payload.sas_nonce, None, "SAS nonce field in the INIT (it travels in clear)")
    expect_eq(payload.sas_commitment, sas_commitment(IUT.sas_nonce), "SAS commitment in the INIT")
    expect(IUT.sas_nonce not in init, "the INIT's bytes contain the SAS nonce")


# -- §6.5 the binding cache changes no outcome ----------------------------------------------


@case(
    "hs/req/22",
    section=CACHE,
    title="endpoint: a binding that verified for one static key does not vouch for another",
    requirements=("HS-6.5.2",),
)
def _(iut: Iut) -> None:
    iut.ok("endpoint", seed=IUT.seed, static=IUT.static, config={})
    # First REF's genuine handshake: a caching endpoint now knows (REF, REF's static, signature).
    for party, expect_done in ((REF, True), (OTHER, False)):
        # The second initiator holds OTHER's static key but presents REF's binding.
        hand = Hand(Pattern.XX, initiator=True, party=party, ephemeral=party.ephemeral)
        answer = iut.ok("receive", data=hand.init(init_payload()), now=0.0, addr=party.name)
        response = one_packet(answer, PacketType.RESPONSE)
        hand.read(handshake_message(response, PacketType.RESPONSE), "RESPONSE")
        index = int.from_bytes(response[1:5], "big")
        answer = iut.ok("receive", data=encode_finish(index, hand.write(finish_payload())), now=0.1, addr=party.name)
        if expect_done:
            one_event(answer, "handshake_completed")
        else:
            no_event(answer, "handshake_completed", "REF's binding presented with OTHER's static key")
            expect_eq(out_of(answer), [], "datagrams after the FINISH with a binding for another static key")


# -- §5.3 version negotiation ----------------------------------------------------------------


@case(
    "hs/ver/4",
    section=VERSIONS,
    title="an initiator supporting 1 and 2 refuses a RESPONSE that lists both: UNSUPPORTED_VERSION",
    requirements=("HS-5.3.6",),
)
def _(iut: Iut) -> None:
    init = one_packet_of(start_session(iut, "initiator", config={"versions": [1, 2]}))
    hand = Hand(Pattern.XX, initiator=False)
    hand.read(handshake_message(init, PacketType.INIT), "INIT")
    _expect_closed(iut, _respond(iut, hand, response_payload(versions=(1, 2))), "UNSUPPORTED_VERSION")


@case(
    "hs/ver/5",
    section=VERSIONS,
    title="a RESPONSE without a versions field reads as no version: UNSUPPORTED_VERSION",
    requirements=("HS-5.3.9", "HS-5.3.6"),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut)
    fields = [(t, v) for t, v in _ik_identity() if t != F_VERSIONS]
    payload = encode_fields([*fields, (F_SESSION_INDEX, _ref_index_bytes())])
    _expect_closed(iut, _respond(iut, hand, payload), "UNSUPPORTED_VERSION")


@case(
    "hs/ver/6",
    section=VERSIONS,
    title="an INIT without a versions field gets the responder's whole list (1, 2, 7)",
    requirements=("HS-5.3.9", "HS-5.3.5"),
)
def _(iut: Iut) -> None:
    hand = Hand(Pattern.XX, initiator=True)
    start_session(iut, "responder", config={"versions": [1, 2, 7]})
    fields = [(F_SESSION_INDEX, _ref_index_bytes()), (F_SAS_COMMITMENT, sas_commitment(REF.sas_nonce))]
    short_by = MIN_INIT_SIZE - INIT_OVERHEAD[Pattern.XX] - len(encode_fields(fields)) - 4
    init = hand.init(encode_fields([*fields, (F_PADDING, bytes(short_by))]))
    response = one_packet(iut.ok("receive", data=init, now=0.0), PacketType.RESPONSE)
    listed = hand.check_identity(hand.read(handshake_message(response, PacketType.RESPONSE), "RESPONSE"))
    expect_eq(sorted(listed.versions), [1, 2, 7], "versions in the RESPONSE to an INIT without versions")


@case(
    "hs/ver/7",
    section=VERSIONS,
    title="IK responder with no common version: the CONFIRM ends it with UNSUPPORTED_VERSION, silently",
    requirements=("HS-5.3.8",),
)
def _(iut: Iut) -> None:
    link, _ = _ik_responder(iut, versions=(2, 3))
    answer = iut.ok("receive", data=link.seal(PacketType.CONFIRM, REF.sas_nonce), now=0.1)
    no_event(answer, "handshake_completed", "a responder without a common version")
    no_event(answer, "closed", "a responder never announced the session, so it reports no close")
    expect_eq(out_of(answer), [], "datagrams sent after the CONFIRM (no CLOSE for want of a version)")
    state = iut.ok("state")
    expect_eq((state.get("state"), state.get("close_code")), ("closed", "UNSUPPORTED_VERSION"), "state and code")


@case(
    "hs/ver/8",
    section=FAILURES,
    title="a FINISH whose versions field differs from the chosen version still completes",
    requirements=("HS-8.4.4",),
)
def _(iut: Iut) -> None:
    answer, _ = _responder_finish(iut, finish_payload(versions=(2, 9)))
    expect_eq(one_event(answer, "handshake_completed").get("version"), 1, "version of handshake_completed")


# -- §8.4 order of checks --------------------------------------------------------------------


@case(
    "hs/order/4",
    section=FAILURES,
    title="a FINISH with a wrong SAS nonce, no common version: PROTOCOL_VIOLATION",
    requirements=("HS-8.4.3",),
)
def _(iut: Iut) -> None:
    hand = Hand(Pattern.XX, initiator=True)
    start_session(iut, "responder")
    response = one_packet(iut.ok("receive", data=hand.init(init_payload(versions=(2,))), now=0.0), PacketType.RESPONSE)
    hand.read(handshake_message(response, PacketType.RESPONSE), "RESPONSE")
    finish = encode_finish(IUT_INDEX, hand.write(finish_payload(sas_nonce=OTHER.sas_nonce)))
    k_i2r, k_r2i = hand.hs.split()
    answer = iut.ok("receive", data=finish, now=0.1)
    _expect_never_established(iut, answer, Link(k_i2r, k_r2i, IUT_INDEX, b""), "PROTOCOL_VIOLATION")


@case(
    "hs/order/5",
    section=FAILURES,
    title="IK: a CONFIRM with a wrong SAS nonce, no common version: CLOSE with PROTOCOL_VIOLATION",
    requirements=("HS-8.4.3", "HS-8.4.6"),
)
def _(iut: Iut) -> None:
    link, _ = _ik_responder(iut, versions=(2,))
    answer = iut.ok("receive", data=link.seal(PacketType.CONFIRM, OTHER.sas_nonce), now=0.1)
    no_event(answer, "handshake_completed", "the CONFIRM must be refused")
    closing = link.open(one_packet(answer, PacketType.CLOSE))
    expect_eq(closing.plaintext[:2], bytes([0, ErrorCode.PROTOCOL_VIOLATION]), "CLOSE code (the SAS is checked first)")
    state = iut.ok("state")
    expect_eq((state.get("state"), state.get("close_code")), ("closed", "PROTOCOL_VIOLATION"), "state and code")


@case(
    "hs/order/6",
    section=FAILURES,
    title="a RESPONSE from an unexpected peer without the session index field: IDENTITY_MISMATCH",
    requirements=("HS-8.4.3",),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut, expected=str(OTHER.peer_id))
    _expect_closed(iut, _respond(iut, hand, identity_payload(REF)), "IDENTITY_MISMATCH")


@case(
    "hs/order/7",
    section=FAILURES,
    title="a RESPONSE whose identity key is 31 bytes long: MALFORMED_MESSAGE, not BAD_IDENTITY",
    requirements=("HS-8.4.3", "HS-5.1.6"),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut)
    fields = _ik_identity(key=REF.peer_id.public_key[:31])
    payload = encode_fields([*fields, (F_SESSION_INDEX, _ref_index_bytes())])
    _expect_closed(iut, _respond(iut, hand, payload), "MALFORMED_MESSAGE")
