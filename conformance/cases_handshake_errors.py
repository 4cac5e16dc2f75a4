"""Handshake cases that must fail safely: identity binding, payload rules, versions, weak keys,
SAS commitments, session indices, garbage.

A rejected handshake message either ends the session with the spec error code
(once the message authenticated) or is dropped without changing any state
(when it did not, or when only its unauthenticated header is wrong); a rejected
INIT creates no session (spec/handshake.md §2.2, §4-§7).
"""

from __future__ import annotations

from typing import Any

from p2pos.proto.errors import ErrorCode
from p2pos.proto.handshake.noise import Pattern
from p2pos.proto.handshake.payload import F_SESSION_INDEX, F_VERSIONS
from p2pos.proto.session.wire import PacketType, encode_finish, encode_init, encode_response

from .checks import expect, expect_eq
from .iut import Iut
from .reference import (
    IUT,
    IUT_INDEX,
    OTHER,
    REF,
    REF_INDEX,
    Hand,
    Link,
    decode_payload,
    events_of,
    finish_payload,
    handshake_message,
    init_payload,
    no_event,
    one_event,
    one_packet,
    one_packet_of,
    out_of,
    response_payload,
    session_state,
    start_session,
    versions_payload,
)
from .registry import case

WEAK = "handshake.md §2.2"
INIT = "handshake.md §4.1"
PARSING = "handshake.md §4.4"
FIELDS = "handshake.md §5.1"
VERSIONS = "handshake.md §5.3"
BINDING = "handshake.md §6.2"
SAS = "handshake.md §7"
DUPLICATES = "handshake.md §8.2"
FAILURES = "handshake.md §8.4"

#: X25519 public keys of small order (and non-canonical encodings of them): DH with any gives all zeros.
LOW_ORDER = tuple(
    bytes.fromhex(h)
    for h in (
        "00" * 32,
        "01" + "00" * 31,
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ec" + "ff" * 30 + "7f",
        "ed" + "ff" * 30 + "7f",
        "ee" + "ff" * 30 + "7f",
    )
)
_UNKNOWN_CRITICAL = ((0x8777, b"must understand"),)
_UNKNOWN_OPTIONAL = ((0x0777, b"future field"),)


def _iut_initiator(iut: Iut, *, expected: Any = None, pattern: Pattern = Pattern.XX) -> Hand:
    """Start the IUT as initiator; the returned ``Hand`` has read its INIT and writes the RESPONSE."""
    rs = REF.static_public if pattern is Pattern.IK else None
    init = one_packet_of(start_session(iut, "initiator", expected_peer=expected, remote_static=rs))
    hand = Hand(pattern, initiator=False)
    hand.read(handshake_message(init, PacketType.INIT), "INIT")
    return hand


def _respond(iut: Iut, hand: Hand, payload: bytes, now: float = 0.0) -> dict[str, Any]:
    return iut.ok("receive", data=hand.response(payload), now=now)


def _expect_closed(iut: Iut, answer: dict[str, Any], code: str) -> None:
    """The authenticated but unacceptable message ended the session with ``code``, sending nothing."""
    expect_eq(out_of(answer), [], "datagrams sent after the rejected message")
    no_event(answer, "handshake_completed", "the handshake must fail")
    for event in events_of(answer, "closed"):
        expect_eq(event.get("code"), code, "code of the closed event")
    state = iut.ok("state")
    expect_eq((state.get("state"), state.get("close_code")), ("closed", code), "state and close code")


def _expect_no_session(iut: Iut, answer: dict[str, Any]) -> None:
    expect_eq(out_of(answer), [], "datagrams sent in answer to a rejected INIT")
    expect_eq(session_state(iut), "none", "state after a rejected INIT")


def _responder_finish(iut: Iut, payload: bytes) -> tuple[dict[str, Any], Link]:
    """IUT as XX responder; the reference's FINISH carries ``payload``.  Returns the answer and the keys."""
    hand = Hand(Pattern.XX, initiator=True)
    start_session(iut, "responder")
    answer = iut.ok("receive", data=hand.init(init_payload()), now=0.0)
    hand.read(handshake_message(one_packet(answer, PacketType.RESPONSE), PacketType.RESPONSE), "RESPONSE")
    answer = iut.ok("receive", data=encode_finish(IUT_INDEX, hand.write(payload)), now=0.0)
    k_i2r, k_r2i = hand.hs.split()
    return answer, Link(k_i2r, k_r2i, IUT_INDEX, hand.hs.handshake_hash)


def _expect_never_established(iut: Iut, answer: dict[str, Any], link: Link, code: str) -> None:
    """A responder that refused the FINISH is not established and delivers nothing sealed with its keys."""
    no_event(answer, "handshake_completed", "the FINISH must be refused")
    no_event(answer, "closed", "a responder never announced the session, so it reports no close")
    expect_eq(out_of(answer), [], "datagrams sent after the refused FINISH")
    state = iut.ok("state")
    expect_eq((state.get("state"), state.get("close_code")), ("closed", code), "state and close code")
    answer = iut.ok("receive", data=link.data(b"should not arrive"), now=0.0)
    no_event(answer, "message", "a record after the refused FINISH")


@case(
    "hs/xx/11",
    section=BINDING,
    title="a peer other than the expected one: IDENTITY_MISMATCH",
    requirements=(
        "HS-6.2.3",
        "HS-8.4.2",
        "HS-8.4.5",
        "SES-3.9",
        "ERR-1.7",
        "ERR-2.8",
        "ERR-2.10",
        "CONF-2.1.4",
        "CONF-3.2.2",
    ),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut, expected=str(OTHER.peer_id))
    _expect_closed(iut, _respond(iut, hand, response_payload()), "IDENTITY_MISMATCH")


@case(
    "hs/xx/12",
    section=BINDING,
    title="an identity signature over another static key: BAD_IDENTITY",
    requirements=(
        "HS-6.2.2",
        "HS-8.4.2",
        "HS-8.4.5",
        "SES-3.9",
        "ERR-1.6",
        "ERR-2.10",
    ),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut)
    payload = response_payload(signed_static=OTHER.static_public)
    _expect_closed(iut, _respond(iut, hand, payload), "BAD_IDENTITY")


@case(
    "hs/xx/13",
    section=BINDING,
    title="an identity key that did not make the signature: BAD_IDENTITY",
    requirements=(
        "HS-6.2.2",
        "HS-8.4.2",
        "HS-8.4.5",
        "ERR-1.6",
    ),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut)
    payload = response_payload().replace(REF.peer_id.public_key, OTHER.peer_id.public_key)
    _expect_closed(iut, _respond(iut, hand, payload), "BAD_IDENTITY")


@case(
    "hs/xx/14",
    section=BINDING,
    title="a RESPONSE without identity fields: BAD_IDENTITY",
    requirements=(
        "HS-6.2.1",
        "HS-8.4.2",
        "HS-8.4.5",
        "ERR-1.6",
    ),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut)
    payload = versions_payload(extra=((F_SESSION_INDEX, REF_INDEX.to_bytes(4, "big")),))
    _expect_closed(iut, _respond(iut, hand, payload), "BAD_IDENTITY")


@case(
    "hs/xx/15",
    section=FAILURES,
    title="a responder refuses a FINISH with a bad identity signature",
    requirements=(
        "HS-6.2.2",
        "HS-8.4.2",
        "HS-8.4.5",
        "ERR-1.6",
    ),
)
def _(iut: Iut) -> None:
    answer, link = _responder_finish(iut, finish_payload(signed_static=OTHER.static_public))
    _expect_never_established(iut, answer, link, "BAD_IDENTITY")


@case(
    "hs/xx/16",
    section=FIELDS,
    title="an unknown critical payload field: UNKNOWN_CRITICAL_FIELD",
    requirements=(
        "HS-5.1.4",
        "HS-8.4.2",
        "HS-8.4.5",
        "ERR-1.11",
    ),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut)
    _expect_closed(iut, _respond(iut, hand, response_payload(extra=_UNKNOWN_CRITICAL)), "UNKNOWN_CRITICAL_FIELD")


@case(
    "hs/xx/17",
    section=FIELDS,
    title="unknown non-critical fields and capabilities are ignored",
    requirements=(
        "GEN-4.4",
        "HS-5.1.5",
        "HS-5.2.1",
    ),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut)
    payload = response_payload(extra=_UNKNOWN_OPTIONAL, capabilities=((0x0999, b"x"), (0x8999, b"y")))
    answer = _respond(iut, hand, payload)
    one_event(answer, "handshake_completed")
    hand.check_identity(
        hand.read(handshake_message(one_packet(answer, PacketType.FINISH), PacketType.FINISH), "FINISH")
    )


@case(
    "hs/xx/18",
    section=FIELDS,
    title="an INIT with an unknown critical field creates no session",
    requirements=(
        "HS-5.1.4",
        "SES-2.2",
        "ERR-1.11",
    ),
)
def _(iut: Iut) -> None:
    hand = Hand(Pattern.XX, initiator=True)
    start_session(iut, "responder")
    init = hand.init(init_payload(extra=_UNKNOWN_CRITICAL))
    _expect_no_session(iut, iut.ok("receive", data=init, now=0.0))


@case(
    "hs/xx/19",
    section=FIELDS,
    title="an INIT with an unknown non-critical field is answered",
    requirements=(
        "GEN-4.4",
        "HS-5.1.5",
    ),
)
def _(iut: Iut) -> None:
    hand = Hand(Pattern.XX, initiator=True)
    start_session(iut, "responder")
    init = hand.init(init_payload(extra=_UNKNOWN_OPTIONAL))
    response = one_packet(iut.ok("receive", data=init, now=0.0), PacketType.RESPONSE)
    hand.check_identity(hand.read(handshake_message(response, PacketType.RESPONSE), "RESPONSE"))


@case(
    "hs/xx/20",
    section=VERSIONS,
    title="a RESPONSE choosing an unsupported version: UNSUPPORTED_VERSION",
    requirements=(
        "HS-5.3.6",
        "HS-8.4.2",
        "HS-8.4.5",
        "ERR-1.8",
        "ERR-2.10",
    ),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut)
    _expect_closed(iut, _respond(iut, hand, response_payload(versions=(2,))), "UNSUPPORTED_VERSION")


@case(
    "hs/xx/21",
    section=VERSIONS,
    title="an INIT offering only unknown versions never establishes",
    requirements=(
        "HS-5.3.5",
        "HS-5.3.8",
        "HS-8.4.2",
        "ERR-1.8",
    ),
)
def _(iut: Iut) -> None:
    hand = Hand(Pattern.XX, initiator=True)
    start_session(iut, "responder")
    answer = iut.ok("receive", data=hand.init(init_payload(versions=(2, 3))), now=0.0)
    response = one_packet(answer, PacketType.RESPONSE)
    payload = hand.check_identity(hand.read(handshake_message(response, PacketType.RESPONSE), "RESPONSE"))
    expect(not set(payload.versions) & {2, 3}, f"the responder claims versions {payload.versions}")
    answer = iut.ok("receive", data=encode_finish(IUT_INDEX, hand.write(finish_payload(versions=(2,)))), now=0)
    k_i2r, k_r2i = hand.hs.split()
    _expect_never_established(iut, answer, Link(k_i2r, k_r2i, IUT_INDEX, b""), "UNSUPPORTED_VERSION")


@case(
    "hs/xx/22",
    section=FIELDS,
    title="a payload with a duplicated field: MALFORMED_MESSAGE",
    requirements=(
        "HS-5.1.6",
        "HS-8.4.2",
        "HS-8.4.5",
        "ERR-1.10",
    ),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut)
    payload = response_payload(extra=((F_VERSIONS, b"\x00\x01"),))
    _expect_closed(iut, _respond(iut, hand, payload), "MALFORMED_MESSAGE")


@case(
    "hs/xx/23",
    section=WEAK,
    title="an INIT with a low-order ephemeral key creates no session",
    requirements=(
        "HS-2.2.1",
        "HS-2.2.3",
        "SES-2.2",
        "ERR-1.9",
    ),
)
def _(iut: Iut) -> str:
    start_session(iut, "responder")
    for point in LOW_ORDER:
        init = encode_init(Pattern.XX, REF_INDEX, point + init_payload())  # XX message 1: e, plaintext payload
        _expect_no_session(iut, iut.ok("receive", data=init, now=0.0))
    good = Hand(Pattern.XX, initiator=True).init(init_payload())
    one_packet(iut.ok("receive", data=good, now=0.0), PacketType.RESPONSE)
    return f"{len(LOW_ORDER)} points refused, then a good INIT answered"


@case(
    "hs/xx/24",
    section=WEAK,
    title="a RESPONSE with a low-order ephemeral is dropped; the real one completes",
    requirements=(
        "HS-2.2.3",
        "HS-8.4.1",
        "ERR-1.9",
    ),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut)
    for point in LOW_ORDER:
        bad = encode_response(REF_INDEX, IUT_INDEX, point + bytes(48 + 16 + 60))
        answer = iut.ok("receive", data=bad, now=0.0)
        expect_eq((out_of(answer), events_of(answer)), ([], []), "answer to a low-order RESPONSE")
    expect_eq(session_state(iut), "handshaking", "state after the bad RESPONSEs")
    one_event(_respond(iut, hand, response_payload()), "handshake_completed")


@case(
    "hs/xx/25",
    section=FAILURES,
    title="a corrupted RESPONSE is dropped without harm; the real one completes",
    requirements=(
        "GEN-2.3.1",
        "HS-4.4.2",
        "HS-4.4.3",
        "HS-7.1.4",
        "HS-8.4.1",
        "HS-8.4.2",
        "SES-2.3",
        "SES-8.1",
        "ERR-1.5",
        "ERR-2.1",
        "ERR-2.2",
        "ERR-3.11",
        "CONF-3.2.5",
    ),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut)
    good = hand.response(response_payload())
    for pos in (9, 9 + 40, len(good) - 1):
        bad = good[:pos] + bytes([good[pos] ^ 0x40]) + good[pos + 1 :]
        answer = iut.ok("receive", data=bad, now=0.0)
        expect_eq((out_of(answer), events_of(answer)), ([], []), f"answer to a RESPONSE damaged at byte {pos}")
    for bad in (good[:40], good + b"\x00"):
        answer = iut.ok("receive", data=bad, now=0.0)
        expect_eq((out_of(answer), events_of(answer)), ([], []), f"answer to a RESPONSE of {len(bad)} bytes")
    answer = iut.ok("receive", data=good, now=0.0)
    one_event(answer, "handshake_completed")


@case(
    "hs/xx/26",
    section=DUPLICATES,
    title="a RESPONSE addressed to another receiver index is dropped",
    requirements=(
        "HS-8.2.7",
        "SES-8.1",
        "ERR-2.2",
    ),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut)
    message = hand.write(response_payload())
    answer = iut.ok("receive", data=encode_response(REF_INDEX, IUT_INDEX ^ 1, message), now=0.0)
    expect_eq((out_of(answer), events_of(answer)), ([], []), "answer to a misaddressed RESPONSE")
    one_event(iut.ok("receive", data=encode_response(REF_INDEX, IUT_INDEX, message), now=0.0), "handshake_completed")


@case(
    "hs/ik/5",
    section=BINDING,
    title="IK: a peer other than the expected one: IDENTITY_MISMATCH",
    requirements=(
        "HS-6.2.3",
        "ERR-1.7",
    ),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut, expected=str(OTHER.peer_id), pattern=Pattern.IK)
    _expect_closed(iut, _respond(iut, hand, response_payload()), "IDENTITY_MISMATCH")


@case(
    "hs/ik/6",
    section=BINDING,
    title="an IK INIT with a bad identity signature creates no session",
    requirements=(
        "HS-6.2.2",
        "HS-8.4.2",
        "SES-2.2",
        "ERR-1.6",
    ),
)
def _(iut: Iut) -> None:
    hand = Hand(Pattern.IK, initiator=True, rs=IUT.static_public)
    start_session(iut, "responder")
    init = hand.init(init_payload(Pattern.IK, signed_static=OTHER.static_public))
    _expect_no_session(iut, iut.ok("receive", data=init, now=0.0))


@case(
    "hs/wire/1",
    section=INIT,
    title="an INIT with an unknown pattern code creates no session",
    requirements=(
        "HS-4.1.2",
        "SES-2.2",
        "ERR-1.8",
    ),
)
def _(iut: Iut) -> None:
    start_session(iut, "responder")
    message = Hand(Pattern.XX, initiator=True).write(init_payload())
    for code in (0x00, 0x03, 0xFF):
        init = bytes([PacketType.INIT, code]) + REF_INDEX.to_bytes(4, "big") + message
        _expect_no_session(iut, iut.ok("receive", data=init, now=0.0))


@case(
    "hs/wire/2",
    section=PARSING,
    title="truncated INITs and non-INIT packets create no session",
    requirements=(
        "HS-4.4.2",
        "HS-4.4.3",
        "SES-2.2",
        "ERR-1.10",
        "ERR-2.2",
        "ERR-3.11",
        "ERR-4.4",
    ),
)
def _(iut: Iut) -> None:
    start_session(iut, "responder")
    init = Hand(Pattern.XX, initiator=True).init(init_payload())
    confirm, data = bytes([PacketType.CONFIRM]), bytes([PacketType.DATA])
    first_draft = b"\x01"  # INIT's type before it moved into 4-15 (spec/README.md §7): now a STUN first byte
    for bad in (init[:1], init[:6], init[:20], init[:37], confirm + init[1:], data + bytes(40), first_draft + init[1:]):
        _expect_no_session(iut, iut.ok("receive", data=bad, now=0.0))


@case(
    "hs/sas/7",
    section=SAS,
    title="an INIT without the SAS commitment creates no session (XX and IK)",
    requirements=(
        "HS-7.1.2",
        "HS-8.4.2",
        "SES-2.2",
        "ERR-1.10",
    ),
)
def _(iut: Iut) -> None:
    start_session(iut, "responder")
    for pattern in (Pattern.XX, Pattern.IK):
        hand = Hand(pattern, initiator=True, rs=IUT.static_public if pattern is Pattern.IK else None)
        _expect_no_session(iut, iut.ok("receive", data=hand.init(init_payload(pattern, nonce=None)), now=0.0))
    _expect_answered(iut)


@case(
    "hs/sas/8",
    section=SAS,
    title="a FINISH whose nonce does not open the INIT's commitment: PROTOCOL_VIOLATION",
    requirements=(
        "HS-7.1.5",
        "HS-8.4.2",
        "HS-8.4.5",
        "SES-3.1",
        "SES-3.9",
        "SES-3.11",
        "ERR-1.3",
        "ERR-2.10",
    ),
)
def _(iut: Iut) -> None:
    answer, link = _responder_finish(iut, finish_payload(sas_nonce=OTHER.sas_nonce))
    _expect_never_established(iut, answer, link, "PROTOCOL_VIOLATION")


@case(
    "hs/sas/9",
    section=SAS,
    title="a FINISH without the SAS nonce: PROTOCOL_VIOLATION",
    requirements=(
        "HS-7.1.5",
        "HS-8.4.2",
        "HS-8.4.5",
        "SES-3.11",
        "ERR-1.3",
    ),
)
def _(iut: Iut) -> None:
    answer, link = _responder_finish(iut, finish_payload(sas_nonce=None))
    _expect_never_established(iut, answer, link, "PROTOCOL_VIOLATION")


@case(
    "hs/sas/10",
    section=SAS,
    title="IK: a CONFIRM whose nonce does not open the commitment: CLOSE with PROTOCOL_VIOLATION",
    requirements=(
        "HS-6.4.4",
        "HS-6.4.5",
        "HS-7.1.5",
        "HS-8.4.2",
        "HS-8.4.6",
        "RCD-9.2",
        "SES-3.1",
        "SES-3.9",
        "SES-3.11",
        "SES-5.8",
        "ERR-1.1",
        "ERR-1.3",
        "ERR-2.11",
    ),
)
def _(iut: Iut) -> None:
    hand = Hand(Pattern.IK, initiator=True, rs=IUT.static_public)
    start_session(iut, "responder")
    response = one_packet(iut.ok("receive", data=hand.init(init_payload(Pattern.IK)), now=0.0), PacketType.RESPONSE)
    hand.check_identity(hand.read(handshake_message(response, PacketType.RESPONSE), "RESPONSE"))
    k_i2r, k_r2i = hand.hs.split()
    link = Link(k_i2r, k_r2i, IUT_INDEX, hand.hash)
    answer = iut.ok("receive", data=link.seal(PacketType.CONFIRM, OTHER.sas_nonce), now=0.0)
    no_event(answer, "handshake_completed", "the CONFIRM must be refused")
    no_event(answer, "closed", "a responder never announced the session, so it reports no close")
    closing = link.open(one_packet(answer, PacketType.CLOSE))
    expect_eq(
        closing.plaintext[:2], bytes([0, ErrorCode.PROTOCOL_VIOLATION]), "CLOSE code (the initiator is established)"
    )
    state = iut.ok("state")
    expect_eq((state.get("state"), state.get("close_code")), ("closed", "PROTOCOL_VIOLATION"), "state and code")
    no_event(iut.ok("receive", data=link.data(b"should not arrive"), now=0.0), "message", "a record after it")


@case(
    "hs/index/1",
    section=FIELDS,
    title="the IUT's INIT payload carries its own session index, as in the header",
    requirements=(
        "HS-3.4",
        "HS-4.3",
        "HS-5.1.1",
        "HS-5.3.1",
    ),
)
def _(iut: Iut) -> None:
    init = one_packet_of(start_session(iut, "initiator"))
    payload = decode_payload(Hand(Pattern.XX, initiator=False).read(init[6:], "INIT"), "INIT")
    expect_eq(payload.session_index, IUT_INDEX, "session index in the INIT payload")
    expect_eq(int.from_bytes(init[2:6], "big"), IUT_INDEX, "session index in the INIT header")


@case(
    "hs/index/2",
    section=FIELDS,
    title="the IUT's RESPONSE payload carries its own session index, as in the header",
    requirements=(
        "HS-4.3",
        "HS-5.1.1",
        "HS-5.3.1",
        "HS-6.1.1",
        "HS-6.1.2",
    ),
)
def _(iut: Iut) -> None:
    hand = Hand(Pattern.XX, initiator=True)
    start_session(iut, "responder")
    response = one_packet(iut.ok("receive", data=hand.init(init_payload()), now=0.0), PacketType.RESPONSE)
    payload = hand.check_identity(hand.read(handshake_message(response, PacketType.RESPONSE), "RESPONSE"))
    expect_eq(payload.session_index, IUT_INDEX, "session index in the RESPONSE payload")
    expect_eq(int.from_bytes(response[1:5], "big"), IUT_INDEX, "session index in the RESPONSE header")


@case(
    "hs/index/3",
    section=FIELDS,
    title="an INIT whose payload index differs from its header creates no session",
    requirements=(
        "HS-4.4",
        "HS-8.4.2",
        "SES-2.2",
        "ERR-1.10",
    ),
)
def _(iut: Iut) -> None:
    start_session(iut, "responder")
    for pattern in (Pattern.XX, Pattern.IK):
        hand = Hand(pattern, initiator=True, rs=IUT.static_public if pattern is Pattern.IK else None)
        init = hand.init(init_payload(pattern, index=REF_INDEX ^ 0x100))
        _expect_no_session(iut, iut.ok("receive", data=init, now=0.0))
    _expect_answered(iut)


@case(
    "hs/index/4",
    section=FIELDS,
    title="an INIT without the session index field creates no session",
    requirements=(
        "HS-4.4",
        "HS-8.4.2",
        "SES-2.2",
        "ERR-1.10",
    ),
)
def _(iut: Iut) -> None:
    start_session(iut, "responder")
    hand = Hand(Pattern.XX, initiator=True)
    _expect_no_session(iut, iut.ok("receive", data=hand.init(init_payload(index=None)), now=0.0))
    _expect_answered(iut)


@case(
    "hs/index/5",
    section=FIELDS,
    title="a RESPONSE whose header index was altered is dropped; a clean copy completes",
    requirements=(
        "HS-4.1",
        "HS-4.5",
        "HS-8.4.2",
        "ERR-2.4",
    ),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut)
    good = hand.response(response_payload())
    altered = good[:1] + (REF_INDEX ^ 0x100).to_bytes(4, "big") + good[5:]
    answer = iut.ok("receive", data=altered, now=0.0)
    expect_eq((out_of(answer), events_of(answer)), ([], []), "answer to a RESPONSE with an altered sender index")
    expect_eq(session_state(iut), "handshaking", "state after the altered RESPONSE")
    answer = iut.ok("receive", data=good, now=0.1)
    one_event(answer, "handshake_completed")
    finish = one_packet(answer, PacketType.FINISH)
    expect_eq(int.from_bytes(finish[1:5], "big"), REF_INDEX, "receiver index of the FINISH")


@case(
    "hs/order/1",
    section=FAILURES,
    title="a RESPONSE with a bad signature and no shared version: BAD_IDENTITY",
    requirements=(
        "HS-8.4.3",
        "ERR-1.6",
    ),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut)
    payload = response_payload(signed_static=OTHER.static_public, versions=(2,))
    _expect_closed(iut, _respond(iut, hand, payload), "BAD_IDENTITY")


@case(
    "hs/order/2",
    section=FAILURES,
    title="a RESPONSE with an altered header index and no shared version is dropped; its clean copy closes",
    requirements=(
        "HS-4.5",
        "HS-8.4.3",
        "ERR-1.8",
    ),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut)
    good = hand.response(response_payload(versions=(2,)))
    altered = good[:1] + (REF_INDEX ^ 0x100).to_bytes(4, "big") + good[5:]
    answer = iut.ok("receive", data=altered, now=0.0)
    expect_eq((out_of(answer), events_of(answer)), ([], []), "answer to a RESPONSE with an altered sender index")
    expect_eq(session_state(iut), "handshaking", "state after the altered RESPONSE (the index is checked first)")
    _expect_closed(iut, iut.ok("receive", data=good, now=0.1), "UNSUPPORTED_VERSION")


@case(
    "hs/order/3",
    section=FAILURES,
    title="a FINISH with a bad signature and a wrong SAS nonce: BAD_IDENTITY",
    requirements=(
        "HS-8.4.3",
        "ERR-1.6",
    ),
)
def _(iut: Iut) -> None:
    answer, link = _responder_finish(iut, finish_payload(signed_static=OTHER.static_public, sas_nonce=OTHER.sas_nonce))
    _expect_never_established(iut, answer, link, "BAD_IDENTITY")


def _expect_answered(iut: Iut) -> None:
    """After refused INITs, a good XX INIT is still answered (the refusals left nothing behind)."""
    good = Hand(Pattern.XX, initiator=True, ephemeral=OTHER.ephemeral).init(init_payload())
    one_packet(iut.ok("receive", data=good, now=0.0), PacketType.RESPONSE)
