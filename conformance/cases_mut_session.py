"""Cases written for mutants of the session layer and the endpoint (spec/session.md,
spec/errors.md) that the suite let survive (conformance/MUTATION.md).

Each case tests a requirement a surviving mutant of the core (session/session.py,
session/wire.py) broke; the mutant it kills is listed in tests/conformance/kills_session.py,
which CI runs.
"""

from __future__ import annotations

from typing import Any

from p2pos.proto.errors import ErrorCode
from p2pos.proto.handshake.noise import Pattern
from p2pos.proto.session.wire import PacketType, encode_finish, encode_response

from .cases_endpoint import _start_session, _still_works
from .cases_handshake_errors import _iut_initiator
from .cases_req_session import _ik_responder
from .checks import Unsupported, expect, expect_eq, short
from .iut import Iut
from .reference import (
    IUT_INDEX,
    REF,
    REF_INDEX,
    Hand,
    establish,
    events_of,
    finish_payload,
    get_timer,
    handshake_message,
    identity_payload,
    init_payload,
    one_event,
    one_packet,
    out_of,
    session_fields,
    session_state,
    start_session,
)
from .registry import case

API, STATES, CONFIG, TIMERS = "session.md §2", "session.md §3", "session.md §6", "session.md §7"
CLOSE, DUPLICATES, DEMUX = "record.md §8", "handshake.md §8.2", "session.md §4.1"


def _nothing(answer: dict[str, Any], what: str) -> None:
    """The IUT sent no datagram and reported no event."""
    expect_eq((out_of(answer), events_of(answer)), ([], []), what)


@case(
    "ses/close/3",
    section=CLOSE,
    title="a CLOSE of just its 2-byte code (no reason) ends the session with that code and an empty reason",
    requirements=("RCD-8.2", "RCD-8.3", "SES-5.4"),
)
def _(iut: Iut) -> None:
    link = establish(iut, "initiator")
    body = int(ErrorCode.APPLICATION_CLOSE).to_bytes(2, "big")
    answer = iut.ok("receive", data=link.seal(PacketType.CLOSE, body), now=0.1)
    event = one_event(answer, "closed")
    expect_eq(
        (event.get("code"), event.get("reason"), event.get("by_peer")),
        ("APPLICATION_CLOSE", "", True),
        "closed event of a 2-byte CLOSE",
    )
    expect_eq(out_of(answer), [], "datagrams in answer to a CLOSE")


@case(
    "ses/timer/6",
    section=TIMERS,
    title="get_timer answers the handshake deadline when it comes before the next retransmission",
    requirements=("SES-7.1", "SES-7.3"),
)
def _(iut: Iut) -> None:
    # Retransmissions at 1 s and then 3 s; the deadline, 2.5 s, falls between them.
    start_session(iut, "initiator", config={"retransmit_initial": 1.0, "retransmit_max": 2.0, "handshake_timeout": 2.5})
    expect_eq(get_timer(iut), 1.0, "timer after the INIT (first retransmission)")
    iut.ok("timer", now=1.0)
    expect_eq(get_timer(iut), 2.5, "timer after the first retransmission (the deadline, before the 3 s resend)")
    answer = iut.ok("timer", now=2.5)
    expect_eq(out_of(answer), [], "datagrams at the handshake deadline")
    expect_eq([e.get("code") for e in events_of(answer, "closed")], ["HANDSHAKE_TIMEOUT"], "closed events")


@case(
    "ses/api/4",
    section=API,
    title="handshake packets cut short of their header are dropped unanswered; the handshake then completes",
    requirements=("SES-2.3", "SES-8.1", "CONF-3.2.5"),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut)
    response = hand.response(identity_payload(REF, index=REF_INDEX))
    finish = encode_finish(IUT_INDEX, b"")
    for cut in [response[:n] for n in range(1, 10)] + [finish[:n] for n in range(1, 5)] + [b"\x04\x01"]:
        _nothing(iut.ok("receive", data=cut, now=0.1), f"answer to {cut.hex()}")
    expect_eq(session_state(iut), "handshaking", "state after the cut packets")
    one_event(iut.ok("receive", data=response, now=0.2), "handshake_completed")


@case(
    "ses/close/4",
    section=CLOSE,
    title="a CLOSE whose reason exceeds 1024 bytes is read with only its first 1024 bytes of reason",
    requirements=("RCD-8.2", "RCD-8.3", "SES-5.4"),
)
def _(iut: Iut) -> None:
    link = establish(iut, "responder")
    reason = bytes(ord("a") + i % 26 for i in range(2100))
    body = int(ErrorCode.NO_ERROR).to_bytes(2, "big") + reason
    answer = iut.ok("receive", data=link.seal(PacketType.CLOSE, body), now=0.1)
    event = one_event(answer, "closed")
    expect_eq((event.get("code"), event.get("by_peer")), ("NO_ERROR", True), "closed event")
    expect_eq(event.get("reason"), reason[:1024].decode(), "reason: the first 1024 bytes of the CLOSE's")


@case(
    "ses/api/5",
    section=API,
    title="an initiator given a remote_static that is not 32 bytes is refused, sending nothing",
    requirements=("SES-2.8",),
)
def _(iut: Iut) -> None:
    for size in (31, 16, 1):
        key = bytes(range(9, 9 + size))
        answer = iut.call("session", **session_fields("initiator", remote_static=key))
        expect(answer.get("ok") is False, f"IK to a {size}-byte static key: expected an error, got {short(answer)}")
        expect_eq(session_state(iut), "none", f"state after the refused {size}-byte static key")


@case(
    "ses/dup/1",
    section=DUPLICATES,
    title="a responder drops INITs unlike its own (a byte short, a byte lowered), answers the identical one",
    requirements=("HS-8.2.1", "HS-8.2.2"),
)
def _(iut: Iut) -> None:
    start_session(iut, "responder")
    init = Hand(Pattern.XX, initiator=True).init(init_payload(Pattern.XX))
    response = one_packet(iut.ok("receive", data=init, now=0.0), PacketType.RESPONSE)
    at = max(i for i, byte in enumerate(init) if byte)  # lower its last nonzero byte: a smaller INIT
    lowered = init[:at] + bytes([init[at] - 1]) + init[at + 1 :]
    for other, what in ((init[:-1], "the INIT less its last byte"), (lowered, "the INIT with a byte lowered")):
        _nothing(iut.ok("receive", data=other, now=0.1), f"answer to {what}")
    expect_eq(out_of(iut.ok("receive", data=init, now=0.2)), [response], "answer to the identical INIT")


@case(
    "ses/config/2",
    section=CONFIG,
    title="the default rekey_after_messages is 2^20: the record at counter 2^20 opens epoch 1",
    requirements=("SES-6.2", "CONF-3.2.2a"),
)
def _(iut: Iut) -> None:
    first = 2**20 - 1
    link = establish(iut, "initiator", config={"first_send_counter": first})
    before = link.open(one_packet(iut.ok("send", data=b"a", now=1.0), PacketType.DATA))
    if before.counter != first:
        raise Unsupported(f"the IUT does not take first_send_counter (its record has counter {before.counter})")
    after = link.open(one_packet(iut.ok("send", data=b"b", now=1.0), PacketType.DATA))
    expect_eq(
        [(before.counter, before.epoch), (after.counter, after.epoch)],
        [(first, 0), (first + 1, 1)],
        "(counter, epoch) of the records at 2^20 - 1 and 2^20",
    )


@case(
    "ses/api/6",
    section=API,
    title="the largest session index, 2^32 - 1, is accepted and carried in the INIT",
    requirements=("SES-2.8", "HS-4.1.1"),
)
def _(iut: Iut) -> None:
    top = 2**32 - 1
    answer = iut.call("session", **session_fields("initiator", local_index=top))
    expect(answer.get("ok") is True, f"a session with index 2^32 - 1 must start, got {short(answer)}")
    expect_eq(int.from_bytes(one_packet(answer, PacketType.INIT)[2:6], "big"), top, "sender index of the INIT")


@case(
    "ses/dup/2",
    section=DUPLICATES,
    title="an XX responder drops a RESPONSE-type packet addressed to it, even one carrying a valid message 3",
    requirements=("HS-8.2.5", "HS-8.2.6"),
)
def _(iut: Iut) -> None:
    start_session(iut, "responder")
    hand = Hand(Pattern.XX, initiator=True)
    response = one_packet(iut.ok("receive", data=hand.init(init_payload(Pattern.XX)), now=0.0), PacketType.RESPONSE)
    hand.read(handshake_message(response, PacketType.RESPONSE), "RESPONSE")
    message = hand.write(finish_payload())
    disguised = encode_response(REF_INDEX, IUT_INDEX, message)
    _nothing(iut.ok("receive", data=disguised, now=0.1), "answer to message 3 in a RESPONSE packet")
    expect_eq(session_state(iut), "handshaking", "state after message 3 in a RESPONSE packet")
    one_event(iut.ok("receive", data=encode_finish(IUT_INDEX, message), now=0.2), "handshake_completed")


@case(
    "ep/demux/9",
    section=DEMUX,
    title="RESPONSEs of 5 to 9 bytes, or naming index 0 or 2^32 - 1, reaching an endpoint are dropped unanswered",
    requirements=("SES-4.1.11", "SES-8.1"),
)
def _(iut: Iut) -> None:
    link = _start_session(iut)
    own = link.iut_index.to_bytes(4, "big")
    datagrams = [bytes([PacketType.RESPONSE]) + own + own[:n] for n in range(5)]
    datagrams += [encode_response(REF_INDEX, index, bytes(96)) for index in (0, 2**32 - 1)]
    for datagram in datagrams:
        _nothing(iut.ok("receive", data=datagram, now=0.1, addr="peer"), f"answer to {datagram.hex()}")
    _still_works(iut, link)


@case(
    "ses/api/7",
    section=API,
    title="the smallest session index, 0, is accepted for a responder and carried in its RESPONSE",
    requirements=("SES-2.8", "HS-4.2.1"),
)
def _(iut: Iut) -> None:
    answer = iut.call("session", **session_fields("responder", local_index=0))
    expect(answer.get("ok") is True, f"a responder with index 0 must be accepted, got {short(answer)}")
    init = Hand(Pattern.XX, initiator=True).init(init_payload(Pattern.XX))
    response = one_packet(iut.ok("receive", data=init, now=0.0), PacketType.RESPONSE)
    expect_eq(int.from_bytes(response[1:5], "big"), 0, "sender index of the RESPONSE")


@case(
    "ses/timer/7",
    section=TIMERS,
    title="an IK responder whose lifetime ends before its next retransmission: get_timer is the expiry, then CLOSE",
    requirements=("SES-7.1", "SES-7.4", "SES-3.6"),
)
def _(iut: Iut) -> None:
    link = _ik_responder(iut, config={"session_lifetime": 0.5})
    expect_eq(get_timer(iut), 0.5, "timer of an IK responder awaiting CONFIRM (the expiry, before the 1 s resend)")
    answer = iut.ok("timer", now=0.5)
    closing = link.open(one_packet(answer, PacketType.CLOSE))
    expect_eq(closing.plaintext[:2], int(ErrorCode.SESSION_EXPIRED).to_bytes(2, "big"), "CLOSE code at the expiry")
    expect_eq(events_of(answer), [], "events (a responder is not announced before CONFIRM)")
