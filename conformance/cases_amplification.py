"""Anti-amplification cases: INIT padding and the responder's send budget (spec/handshake.md §8).

An INIT is at least 320 bytes (padded with a field of zero bytes).  Until the
initiator is validated by its FINISH (XX) or CONFIRM record (IK), a responder
sends at most 3 times the bytes of the INIT packets it received, duplicates
included, retransmissions counted; whatever would exceed that is not sent.
"""

from __future__ import annotations

from p2pos.proto.handshake.noise import Pattern
from p2pos.proto.handshake.payload import F_PADDING, decode_fields_untrusted
from p2pos.proto.session.wire import PacketType, encode_finish

from .checks import CaseFailed, expect, expect_eq
from .iut import Iut
from .reference import (
    AMPLIFICATION_FACTOR,
    IUT,
    IUT_INDEX,
    MIN_INIT_SIZE,
    REF,
    Hand,
    finish_payload,
    get_timer,
    handshake_message,
    init_payload,
    one_event,
    one_packet,
    one_packet_of,
    out_of,
    session_state,
    start_session,
)
from .registry import case

AMPLIFICATION = "handshake.md §8.5"
#: Retransmit every half second: far more RESPONSEs than the budget allows, if nothing stopped them.
_FAST = {"retransmit_initial": 0.5, "retransmit_max": 0.5, "handshake_timeout": 15.0}


def _drive(iut: Iut, until: float, rounds: int = 200) -> list[bytes]:
    """Fire the IUT's timers up to ``until`` (or until its session closes); every datagram it sent."""
    sent: list[bytes] = []
    for _ in range(rounds):
        timer = get_timer(iut)
        if timer is None or timer > until:
            return sent
        sent.extend(out_of(iut.ok("timer", now=timer)))
        if session_state(iut) == "closed":
            return sent
    raise CaseFailed(f"the IUT's timers still fire after {rounds} rounds before t={until}")


def _check_padding(payload: bytes, what: str) -> None:
    padding = [value for ftype, value in decode_fields_untrusted(payload) if ftype == F_PADDING]
    expect(all(value == bytes(len(value)) for value in padding), f"the padding of the {what} is not zero bytes")


def _within_budget(iut: Iut, pattern: Pattern) -> str:
    """One INIT, no FINISH or CONFIRM: over the whole handshake the IUT sends at most 3x the INIT's bytes."""
    hand = Hand(pattern, initiator=True, rs=IUT.static_public if pattern is Pattern.IK else None)
    init = hand.init(init_payload(pattern))
    start_session(iut, "responder", config=_FAST)
    first = out_of(iut.ok("receive", data=init, now=0.0))
    sent = first + _drive(iut, 20.0)
    expect(bool(first) and first[0][0] == PacketType.RESPONSE, "the INIT was not answered with a RESPONSE")
    total = sum(map(len, sent))
    budget = AMPLIFICATION_FACTOR * len(init)
    expect(total <= budget, f"{len(sent)} datagrams of {total} bytes for one {len(init)}-byte INIT (budget {budget})")
    expect_eq(iut.ok("state").get("close_code"), "HANDSHAKE_TIMEOUT", "close code at the end")
    return f"{len(sent)} datagrams, {total} of {budget} bytes"


@case(
    "hs/amp/1",
    section=AMPLIFICATION,
    title="the IUT's XX INIT is at least 320 bytes, padded with zero bytes",
    requirements=(
        "HS-3.4",
        "HS-4.1.3",
        "HS-5.1.1",
        "HS-5.1.2",
    ),
)
def _(iut: Iut) -> str:
    init = one_packet_of(start_session(iut, "initiator"))
    expect(len(init) >= MIN_INIT_SIZE, f"the INIT has {len(init)} bytes, fewer than {MIN_INIT_SIZE}")
    _check_padding(Hand(Pattern.XX, initiator=False).read(handshake_message(init, PacketType.INIT), "INIT"), "INIT")
    return f"{len(init)} bytes"


@case(
    "hs/amp/2",
    section=AMPLIFICATION,
    title="the IUT's IK INIT is at least 320 bytes, padded with zero bytes",
    requirements=(
        "HS-4.1.3",
        "HS-5.1.2",
    ),
)
def _(iut: Iut) -> str:
    init = one_packet_of(start_session(iut, "initiator", remote_static=REF.static_public))
    expect(len(init) >= MIN_INIT_SIZE, f"the INIT has {len(init)} bytes, fewer than {MIN_INIT_SIZE}")
    _check_padding(Hand(Pattern.IK, initiator=False).read(handshake_message(init, PacketType.INIT), "INIT"), "INIT")
    return f"{len(init)} bytes"


@case(
    "hs/amp/3",
    section=AMPLIFICATION,
    title="an INIT of 319 bytes creates no session (XX, IK); 320 is answered",
    requirements=(
        "HS-4.1.4",
        "HS-8.4.2",
        "SES-2.2",
        "ERR-1.10",
        "CONF-3.2.4",
        "CONF-3.2.10",
    ),
)
def _(iut: Iut) -> None:
    start_session(iut, "responder")
    for pattern in (Pattern.XX, Pattern.IK):
        hand = Hand(pattern, initiator=True, rs=IUT.static_public if pattern is Pattern.IK else None)
        init = hand.init(init_payload(pattern, size=MIN_INIT_SIZE - 1))
        expect_eq(len(init), MIN_INIT_SIZE - 1, "internal: size of the short INIT")
        answer = iut.ok("receive", data=init, now=0.0)
        expect_eq(out_of(answer), [], f"datagrams sent in answer to a {len(init)}-byte {pattern.value} INIT")
        expect_eq(session_state(iut), "none", f"state after a {len(init)}-byte {pattern.value} INIT")
    init = Hand(Pattern.XX, initiator=True).init(init_payload(size=MIN_INIT_SIZE))
    expect_eq(len(init), MIN_INIT_SIZE, "internal: size of the INIT")
    one_packet(iut.ok("receive", data=init, now=0.0), PacketType.RESPONSE)


@case(
    "hs/amp/4",
    section=AMPLIFICATION,
    title="XX responder: one INIT, no FINISH: at most 3x its bytes sent in all",
    requirements=(
        "HS-8.5.1",
        "HS-8.5.3",
    ),
)
def _(iut: Iut) -> str:
    return _within_budget(iut, Pattern.XX)


@case(
    "hs/amp/5",
    section=AMPLIFICATION,
    title="IK responder: one INIT, no CONFIRM: at most 3x its bytes sent in all",
    requirements=(
        "HS-6.4.7",
        "HS-8.5.1",
    ),
)
def _(iut: Iut) -> str:
    return _within_budget(iut, Pattern.IK)


@case(
    "hs/amp/6",
    section=AMPLIFICATION,
    title="a duplicate INIT adds to the budget: the spent responder answers it",
    requirements=(
        "HS-8.2.1",
        "HS-8.5.1",
        "HS-8.5.3",
    ),
)
def _(iut: Iut) -> str:
    init = Hand(Pattern.XX, initiator=True).init(init_payload())
    start_session(iut, "responder", config=_FAST)
    response = one_packet(iut.ok("receive", data=init, now=0.0), PacketType.RESPONSE)
    sent = [response, *_drive(iut, 5.0)]
    spent = sum(map(len, sent))
    expect(spent <= AMPLIFICATION_FACTOR * len(init), f"{spent} bytes sent for one {len(init)}-byte INIT")
    again = one_packet(iut.ok("receive", data=init, now=5.0), PacketType.RESPONSE)
    expect_eq(again.hex(), response.hex(), "RESPONSE to the duplicate INIT")
    sent += [again, *_drive(iut, 20.0)]
    total = sum(map(len, sent))
    budget = AMPLIFICATION_FACTOR * 2 * len(init)
    expect(total <= budget, f"{total} bytes sent for two {len(init)}-byte INITs (budget {budget})")
    return f"{spent} bytes before the duplicate, {total} of {budget} in all"


@case(
    "hs/amp/7",
    section=AMPLIFICATION,
    title="an INIT padded to 1200 bytes is answered and the handshake completes",
    requirements=("HS-5.1.7",),
)
def _(iut: Iut) -> None:
    hand = Hand(Pattern.XX, initiator=True)
    init = hand.init(init_payload(size=1200))
    expect_eq(len(init), 1200, "internal: size of the INIT")
    start_session(iut, "responder")
    response = one_packet(iut.ok("receive", data=init, now=0.0), PacketType.RESPONSE)
    hand.check_identity(hand.read(handshake_message(response, PacketType.RESPONSE), "RESPONSE"))
    one_event(
        iut.ok("receive", data=encode_finish(IUT_INDEX, hand.write(finish_payload())), now=0.0), "handshake_completed"
    )
