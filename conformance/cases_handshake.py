"""Handshake cases that must succeed: XX and IK in both roles, byte-exact packets, retransmission, SAS.

The reference runs a "shadow" of the IUT's side, a ``SecureSession`` with the
IUT's keys, ephemeral and SAS nonce, fed the same packets: a conforming IUT
sends the shadow's bytes exactly (spec/handshake.md §3, §4).  The SAS cases
recompute the SAS from h2 and the nonce with ``hashlib`` (spec/handshake.md §7).
"""

from __future__ import annotations

import re
from typing import Any

from p2pos.proto import HandshakeCompleted, SecureSession, SessionConfig
from p2pos.proto.handshake.noise import Pattern
from p2pos.proto.session.wire import PacketType

from .checks import CaseFailed, expect, expect_eq, unhex
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
    establish,
    events_of,
    get_timer,
    handshake_message,
    init_payload,
    nonce_source,
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

NOISE = "handshake.md §3"
PACKETS = "handshake.md §4"
VERSIONS = "handshake.md §5.3"
CONFIRMATION = "handshake.md §6.4"
SAS = "handshake.md §7"
TIMERS = "handshake.md §8.1"
DUPLICATES = "handshake.md §8.2"
DEADLINE = "session.md §7"


def _shadow_initiator(remote_static: bytes | None = None, config: SessionConfig | None = None) -> SecureSession:
    return SecureSession.initiate(
        IUT.keys,
        local_index=IUT_INDEX,
        now=0.0,
        ephemeral=IUT.ephemeral,
        remote_static=remote_static,
        config=config,
        random=nonce_source(IUT.sas_nonce),
    )


def _shadow_responder(init: bytes, config: SessionConfig | None = None) -> SecureSession:
    return SecureSession.respond_untrusted(
        IUT.keys, init, local_index=IUT_INDEX, now=0.0, ephemeral=IUT.ephemeral, config=config
    )


def _ref_initiator(remote_static: bytes | None = None) -> SecureSession:
    return SecureSession.initiate(
        REF.keys,
        local_index=REF_INDEX,
        now=0.0,
        ephemeral=REF.ephemeral,
        remote_static=remote_static,
        random=nonce_source(REF.sas_nonce),
    )


def _ref_responder(init: bytes) -> SecureSession:
    return SecureSession.respond_untrusted(REF.keys, init, local_index=REF_INDEX, now=0.0, ephemeral=REF.ephemeral)


def _completed(session: SecureSession) -> HandshakeCompleted:
    event = session.next_event()
    if not isinstance(event, HandshakeCompleted):
        raise CaseFailed(f"the reference peer did not complete the handshake with the IUT's packets: {event!r}")
    return event


def _check_completed(event: dict[str, Any], ref: HandshakeCompleted, pattern: str) -> None:
    """The IUT's handshake_completed event agrees with the reference peer's view."""
    expect_eq(event.get("peer_id"), str(REF.peer_id), "peer_id in handshake_completed")
    expect_eq(unhex(event.get("handshake_hash"), "handshake_hash"), ref.handshake_hash, "handshake hash")
    expect_eq(event.get("sas"), ref.sas, "SAS")
    expect_eq(event.get("pattern"), pattern, "pattern")
    expect_eq(event.get("version"), 1, "negotiated version")
    expect_eq(unhex(event.get("remote_static"), "remote_static"), REF.static_public, "remote static key")


@case(
    "hs/xx/1",
    section=PACKETS,
    title="XX INIT is byte-exact with a fixed ephemeral",
    requirements=(
        "GEN-2.2.1",
        "GEN-3.1",
        "HS-1.1",
        "HS-2.1.1",
        "HS-3.1",
        "HS-4.1.1",
        "HS-5.1.9",
        "SES-1.2",
        "SES-8.4",
        "CONF-2.9",
        "CONF-2.1.1",
        "CONF-2.2.5",
        "CONF-3.2.2",
    ),
)
def _(iut: Iut) -> None:
    init = one_packet_of(start_session(iut, "initiator"))
    expect_eq(init.hex(), _shadow_initiator().data_to_send(0.0)[0].hex(), "INIT bytes")


@case(
    "hs/xx/2",
    section=PACKETS,
    title="XX RESPONSE is byte-exact with a fixed ephemeral",
    requirements=(
        "GEN-3.1",
        "HS-2.1.1",
        "HS-3.1",
        "HS-3.2",
        "HS-4.2.1",
        "HS-5.1.9",
        "HS-5.3.1",
        "HS-5.3.2",
        "SES-1.2",
        "SES-8.4",
        "CONF-2.2.5",
        "CONF-3.2.3",
    ),
)
def _(iut: Iut) -> None:
    init = _ref_initiator().data_to_send(0.0)[0]
    start_session(iut, "responder")
    response = one_packet(iut.ok("receive", data=init, now=0.0), PacketType.RESPONSE)
    expect_eq(response.hex(), _shadow_responder(init).data_to_send(0.0)[0].hex(), "RESPONSE bytes")


@case(
    "hs/xx/3",
    section=NOISE,
    title="XX as initiator: FINISH byte-exact, both sides agree on the peer and hash",
    requirements=(
        "GEN-3.1",
        "GEN-4.3",
        "HS-1.1",
        "HS-2.1.1",
        "HS-3.1",
        "HS-3.2",
        "HS-3.3",
        "HS-3.6",
        "HS-4.1",
        "HS-4.3.1",
        "HS-5.1.9",
        "HS-5.3.1",
        "HS-5.3.2",
        "HS-6.1.1",
        "HS-6.1.2",
        "HS-6.2.4",
        "SES-1.3",
        "SES-1.4",
        "SES-2.7",
        "SES-3.2",
        "SES-3.4",
        "SES-5.2",
        "SES-8.4",
        "CONF-2.1.1",
        "CONF-2.1.3",
        "CONF-2.2.6",
    ),
)
def _(iut: Iut) -> None:
    init = one_packet_of(start_session(iut, "initiator"))
    ref = _ref_responder(init)
    response = ref.data_to_send(0.0)[0]
    answer = iut.ok("receive", data=response, now=0.0)
    finish = one_packet(answer, PacketType.FINISH)
    shadow = _shadow_initiator()
    shadow.data_to_send(0.0)  # its INIT
    shadow.receive_data(response, 0.0)
    expect_eq(finish.hex(), shadow.data_to_send(0.0)[0].hex(), "FINISH bytes")
    ref.receive_data(finish, 0.0)
    ref_event = _completed(ref)
    expect_eq(str(ref_event.peer_id), str(IUT.peer_id), "the reference's view of the IUT's peer id")
    _check_completed(one_event(answer, "handshake_completed"), ref_event, "XX")
    expect_eq(session_state(iut), "established", "state")


@case(
    "hs/xx/4",
    section=NOISE,
    title="XX as responder: established on FINISH with the initiator's identity",
    requirements=(
        "HS-3.1",
        "HS-3.2",
        "HS-3.6",
        "HS-6.1.1",
        "HS-6.1.2",
        "HS-6.2.4",
        "HS-8.3.4",
        "SES-3.2",
        "SES-3.11",
        "SES-5.2",
        "SES-8.2",
        "CONF-3.2.3",
    ),
)
def _(iut: Iut) -> None:
    ref = _ref_initiator()
    start_session(iut, "responder")
    answer = iut.ok("receive", data=ref.data_to_send(0.0)[0], now=0.0)
    expect(not answer.get("events"), f"no event before FINISH, got {answer.get('events')}")
    ref.receive_data(one_packet(answer, PacketType.RESPONSE), 0.0)
    ref_event = _completed(ref)
    expect_eq(str(ref_event.peer_id), str(IUT.peer_id), "the reference's view of the IUT's peer id")
    answer = iut.ok("receive", data=ref.data_to_send(0.0)[0], now=0.0)
    expect_eq(out_of(answer), [], "datagrams after FINISH")
    _check_completed(one_event(answer, "handshake_completed"), ref_event, "XX")


@case(
    "hs/xx/5",
    section=VERSIONS,
    title="the responder picks the highest common version",
    requirements=(
        "GEN-4.1",
        "HS-5.3.4",
    ),
)
def _(iut: Iut) -> None:
    hand = Hand(Pattern.XX, initiator=True)
    start_session(iut, "responder")
    init = hand.init(init_payload(versions=(1, 2, 7)))
    response = one_packet(iut.ok("receive", data=init, now=0.0), PacketType.RESPONSE)
    payload = hand.check_identity(hand.read(handshake_message(response, PacketType.RESPONSE), "RESPONSE"))
    expect_eq(payload.versions, (1,), "versions in the RESPONSE payload")


_FAST = {"retransmit_initial": 1.0, "retransmit_max": 4.0, "handshake_timeout": 15.0}


@case(
    "hs/xx/6",
    section=TIMERS,
    title="INIT is resent byte for byte at 1, 3, 7, 11 s; at 15 s the handshake ends",
    requirements=(
        "GEN-2.2.2",
        "HS-8.1.1",
        "HS-8.1.3",
        "HS-8.1.5",
        "SES-1.1",
        "SES-2.7",
        "SES-6.2",
        "SES-7.1",
        "SES-7.3",
        "SES-7.5",
        "ERR-1.4",
        "ERR-4.4",
        "CONF-2.7",
        "CONF-2.8",
        "CONF-3.2.9",
    ),
)
def _(iut: Iut) -> str:
    init = one_packet_of(start_session(iut, "initiator"))
    times: list[float] = []
    for expected in (1.0, 3.0, 7.0, 11.0):
        timer = get_timer(iut)
        if timer is None or abs(timer - expected) > 1e-6:
            raise CaseFailed(f"retransmission timer {timer}, expected {expected} (after {times})")
        expect_eq(out_of(iut.ok("timer", now=expected - 0.5)), [], f"datagrams before the timer at {expected}")
        resent = one_packet(iut.ok("timer", now=expected), PacketType.INIT)
        expect_eq(resent.hex(), init.hex(), f"INIT resent at {expected} s")
        times.append(expected)
    expect_eq(get_timer(iut), 15.0, "timer after the last retransmission (the handshake deadline)")
    answer = iut.ok("timer", now=15.0)
    expect_eq(out_of(answer), [], "datagrams at the handshake deadline")
    expect_eq(iut.ok("state").get("close_code"), "HANDSHAKE_TIMEOUT", "close code at 15 s")
    return f"resent at {times}"


@case(
    "hs/xx/7",
    section=DUPLICATES,
    title="a duplicate INIT is answered with the identical RESPONSE",
    requirements=("HS-8.2.1",),
)
def _(iut: Iut) -> None:
    init = _ref_initiator().data_to_send(0.0)[0]
    start_session(iut, "responder")
    response = one_packet(iut.ok("receive", data=init, now=0.0), PacketType.RESPONSE)
    again = one_packet(iut.ok("receive", data=init, now=0.5), PacketType.RESPONSE)
    expect_eq(again.hex(), response.hex(), "RESPONSE to the duplicate INIT")


@case(
    "hs/xx/8",
    section=TIMERS,
    title="the responder resends the identical RESPONSE when its timer fires",
    requirements=(
        "HS-8.1.2",
        "HS-8.1.3",
        "SES-7.5",
        "CONF-3.2.9",
    ),
)
def _(iut: Iut) -> None:
    init = _ref_initiator().data_to_send(0.0)[0]
    start_session(iut, "responder", config=_FAST)
    response = one_packet(iut.ok("receive", data=init, now=0.0), PacketType.RESPONSE)
    timer = get_timer(iut)
    if timer is None or not 0.0 < timer <= 1.0:
        raise CaseFailed(f"retransmission timer {timer}, expected in (0, 1]")
    again = one_packet(iut.ok("timer", now=timer), PacketType.RESPONSE)
    expect_eq(again.hex(), response.hex(), "retransmitted RESPONSE")


@case(
    "hs/xx/9",
    section=DUPLICATES,
    title="a repeated RESPONSE (FINISH lost) gets the identical FINISH again",
    requirements=("HS-8.2.3",),
)
def _(iut: Iut) -> None:
    init = one_packet_of(start_session(iut, "initiator"))
    response = _ref_responder(init).data_to_send(0.0)[0]
    finish = one_packet(iut.ok("receive", data=response, now=0.0), PacketType.FINISH)
    answer = iut.ok("receive", data=response, now=1.0)
    expect_eq(one_packet(answer, PacketType.FINISH).hex(), finish.hex(), "FINISH sent again")
    expect(not answer.get("events"), f"no new event for a repeated RESPONSE, got {answer.get('events')}")


@case(
    "hs/xx/10",
    section=DEADLINE,
    title="a handshake with no answer ends with HANDSHAKE_TIMEOUT",
    requirements=(
        "HS-8.1.5",
        "SES-1.1",
        "SES-3.2",
        "SES-3.7",
        "SES-3.9",
        "SES-7.1",
        "SES-7.2",
        "SES-7.3",
        "ERR-1.4",
        "ERR-2.8",
        "ERR-2.10",
        "CONF-3.2.10",
    ),
)
def _(iut: Iut) -> None:
    start_session(iut, "initiator", config={**_FAST, "handshake_timeout": 5.0})
    answer = iut.ok("timer", now=5.0)
    expect_eq(out_of(answer), [], "datagrams at the deadline (checked before retransmission)")
    for event in answer.get("events", []):
        expect_eq(event.get("code"), "HANDSHAKE_TIMEOUT", "code of the closed event")
    state = iut.ok("state")
    expect_eq((state.get("state"), state.get("close_code")), ("closed", "HANDSHAKE_TIMEOUT"), "state after timeout")
    expect_eq(get_timer(iut), None, "timer of a closed session")


@case(
    "hs/xx/27",
    section=DUPLICATES,
    title="once a record from the responder arrived, a repeated RESPONSE is dropped",
    requirements=("HS-8.2.4",),
)
def _(iut: Iut) -> None:
    init = one_packet_of(start_session(iut, "initiator"))
    ref = _ref_responder(init)
    response = ref.data_to_send(0.0)[0]
    ref.receive_data(one_packet(iut.ok("receive", data=response, now=0.0), PacketType.FINISH), 0.0)
    ref.send(b"confirmed", 0.0)
    answer = iut.ok("receive", data=ref.data_to_send(0.0)[0], now=0.0)
    expect_eq([e.get("data") for e in events_of(answer, "message")], [b"confirmed".hex()], "messages")
    answer = iut.ok("receive", data=response, now=1.0)
    expect_eq((out_of(answer), events_of(answer)), ([], []), "answer to the repeated RESPONSE")


@case(
    "hs/xx/28",
    section=DUPLICATES,
    title="a different INIT reaching an existing responder session is dropped",
    requirements=("HS-8.2.2",),
)
def _(iut: Iut) -> None:
    init = _ref_initiator().data_to_send(0.0)[0]
    start_session(iut, "responder")
    response = one_packet(iut.ok("receive", data=init, now=0.0), PacketType.RESPONSE)
    other = Hand(Pattern.XX, initiator=True, ephemeral=OTHER.ephemeral).init(init_payload())
    answer = iut.ok("receive", data=other, now=0.1)
    expect_eq((out_of(answer), events_of(answer)), ([], []), "answer to another INIT")
    again = one_packet(iut.ok("receive", data=init, now=0.2), PacketType.RESPONSE)
    expect_eq(again.hex(), response.hex(), "RESPONSE to the original INIT repeated")


@case(
    "hs/ik/1",
    section=PACKETS,
    title="IK INIT (remote static known) is byte-exact",
    requirements=(
        "HS-1.2",
        "HS-2.1.1",
        "HS-3.1",
        "HS-4.1.1",
        "HS-5.3.1",
        "HS-6.1.1",
        "SES-1.2",
        "SES-8.4",
        "CONF-2.9",
        "CONF-3.2.2",
    ),
)
def _(iut: Iut) -> None:
    init = one_packet_of(start_session(iut, "initiator", remote_static=REF.static_public))
    expect_eq(init[1], 0x02, "pattern code of an IK INIT")
    shadow = _shadow_initiator(REF.static_public).data_to_send(0.0)[0]
    expect_eq(init.hex(), shadow.hex(), "IK INIT bytes")


@case(
    "hs/ik/4",
    section=NOISE,
    title="an IK INIT made for another static key creates no session",
    requirements=("SES-2.2",),
)
def _(iut: Iut) -> None:
    other = Hand(Pattern.IK, initiator=True, rs=REF.static_public)  # IUT is not REF
    start_session(iut, "responder")
    init = other.init(init_payload(Pattern.IK))
    answer = iut.ok("receive", data=init, now=0.0)
    expect_eq(out_of(answer), [], "datagrams sent")
    expect_eq(session_state(iut), "none", "state")


@case(
    "hs/ik/8",
    section=NOISE,
    title="IK as initiator: established on RESPONSE, confirms with a byte-exact CONFIRM record",
    requirements=(
        "GEN-3.1",
        "HS-2.1.1",
        "HS-3.1",
        "HS-3.2",
        "HS-3.3",
        "HS-3.5",
        "HS-3.6",
        "HS-4.1",
        "HS-6.4.3",
        "HS-7.1.3",
        "RCD-2.4",
        "SES-1.3",
        "SES-3.2",
        "SES-3.5",
    ),
)
def _(iut: Iut) -> None:
    init = one_packet_of(start_session(iut, "initiator", remote_static=REF.static_public))
    ref = _ref_responder(init)
    response = ref.data_to_send(0.0)[0]
    answer = iut.ok("receive", data=response, now=0.0)
    confirm = one_packet(answer, PacketType.CONFIRM)
    shadow = _shadow_initiator(REF.static_public)
    shadow.data_to_send(0.0)  # its INIT
    shadow.receive_data(response, 0.0)
    expect_eq(confirm.hex(), shadow.data_to_send(0.0)[0].hex(), "CONFIRM record bytes")
    ref.receive_data(confirm, 0.0)
    _check_completed(one_event(answer, "handshake_completed"), _completed(ref), "IK")


@case(
    "hs/ik/9",
    section=NOISE,
    title="IK as responder: RESPONSE byte-exact, established on the CONFIRM record",
    requirements=(
        "HS-2.1.1",
        "HS-3.1",
        "HS-3.2",
        "HS-3.3",
        "HS-3.6",
        "HS-4.2.1",
        "HS-5.3.1",
        "HS-5.3.2",
        "HS-6.4.1",
        "HS-6.4.2",
        "HS-6.4.4",
        "HS-8.3.4",
        "RCD-9.2",
        "SES-3.2",
        "SES-5.7",
    ),
)
def _(iut: Iut) -> None:
    ref = _ref_initiator(IUT.static_public)
    init = ref.data_to_send(0.0)[0]
    start_session(iut, "responder")
    answer = iut.ok("receive", data=init, now=0.0)
    response = one_packet(answer, PacketType.RESPONSE)
    expect_eq(response.hex(), _shadow_responder(init).data_to_send(0.0)[0].hex(), "IK RESPONSE bytes")
    expect(not answer.get("events"), f"no event before the CONFIRM record, got {answer.get('events')}")
    ref.receive_data(response, 0.0)
    ref_event = _completed(ref)
    confirm = ref.data_to_send(0.0)[0]
    expect_eq(confirm[0], PacketType.CONFIRM, "internal: the reference's confirmation record type")
    answer = iut.ok("receive", data=confirm, now=0.0)
    expect_eq(out_of(answer), [], "datagrams after the CONFIRM record")
    _check_completed(one_event(answer, "handshake_completed"), ref_event, "IK")


@case(
    "hs/ik/10",
    section=DUPLICATES,
    title="IK: a repeated RESPONSE is answered with a new CONFIRM, same nonce",
    requirements=(
        "HS-8.2.3",
        "RCD-2.4",
    ),
)
def _(iut: Iut) -> None:
    init = one_packet_of(start_session(iut, "initiator", remote_static=REF.static_public))
    hand = Hand(Pattern.IK, initiator=False)
    commitment = hand.check_identity(hand.read(handshake_message(init, PacketType.INIT), "INIT")).sas_commitment
    response = hand.response(response_payload())
    k_i2r, k_r2i = hand.hs.split()
    link = Link(k_r2i, k_i2r, IUT_INDEX, hand.hash)
    first = link.open(one_packet(iut.ok("receive", data=response, now=0.0), PacketType.CONFIRM))
    second = link.open(one_packet(iut.ok("receive", data=response, now=1.0), PacketType.CONFIRM))
    expect(second.counter > first.counter, f"the second CONFIRM reuses counter {second.counter}")
    expect_eq(sas_commitment(first.plaintext), commitment, "commitment of the first CONFIRM's nonce")
    expect_eq(second.plaintext, first.plaintext, "nonce in the second CONFIRM")


@case(
    "hs/ik/11",
    section=CONFIRMATION,
    title="IK responder: records before CONFIRM are dropped; the late CONFIRM completes",
    requirements=(
        "HS-6.4.1",
        "HS-6.4.2",
        "HS-6.4.4",
        "HS-6.4.6",
        "HS-8.4.2",
        "RCD-9.2",
        "SES-5.6",
        "SES-5.7",
        "ERR-2.4",
    ),
)
def _(iut: Iut) -> None:
    hand = Hand(Pattern.IK, initiator=True, rs=IUT.static_public)
    start_session(iut, "responder")
    response = one_packet(iut.ok("receive", data=hand.init(init_payload(Pattern.IK)), now=0.0), PacketType.RESPONSE)
    hand.check_identity(hand.read(handshake_message(response, PacketType.RESPONSE), "RESPONSE"))
    k_i2r, k_r2i = hand.hs.split()
    link = Link(k_i2r, k_r2i, IUT_INDEX, hand.hash)
    for early in (link.data(b"early", counter=1), link.seal(PacketType.KEEPALIVE, b"", counter=2)):
        answer = iut.ok("receive", data=early, now=0.1)
        expect_eq((out_of(answer), events_of(answer)), ([], []), f"answer to a type {early[0]} record before CONFIRM")
    expect_eq(session_state(iut), "handshaking", "state before the CONFIRM record")
    answer = iut.ok("receive", data=link.seal(PacketType.CONFIRM, REF.sas_nonce, counter=0), now=0.2)
    one_event(answer, "handshake_completed")
    answer = iut.ok("receive", data=link.data(b"after", counter=3), now=0.3)
    expect_eq([e.get("data") for e in events_of(answer, "message")], [b"after".hex()], "messages after CONFIRM")


@case(
    "hs/ik/12",
    section=DUPLICATES,
    title="IK responder: a duplicate CONFIRM after establishment is ignored",
    requirements=("RCD-2.5",),
)
def _(iut: Iut) -> None:
    link = establish(iut, "responder", pattern=Pattern.IK)
    answer = iut.ok("receive", data=link.seal(PacketType.CONFIRM, REF.sas_nonce), now=0.5)
    expect_eq((out_of(answer), events_of(answer)), ([], []), "answer to a second, authenticated CONFIRM")
    expect_eq(session_state(iut), "established", "state")
    answer = iut.ok("receive", data=link.data(b"still fine"), now=0.6)
    expect_eq([e.get("data") for e in events_of(answer, "message")], [b"still fine".hex()], "messages")


@case(
    "hs/ik/13",
    section=DUPLICATES,
    title="IK: once a record from the responder arrived, a repeated RESPONSE is dropped",
    requirements=(
        "HS-8.2.4",
        "RCD-2.4",
    ),
)
def _(iut: Iut) -> None:
    init = one_packet_of(start_session(iut, "initiator", remote_static=REF.static_public))
    ref = _ref_responder(init)
    response = ref.data_to_send(0.0)[0]
    ref.receive_data(one_packet(iut.ok("receive", data=response, now=0.0), PacketType.CONFIRM), 0.0)
    _completed(ref)
    ref.send(b"confirmed", 0.0)
    answer = iut.ok("receive", data=ref.data_to_send(0.0)[0], now=0.1)
    expect_eq([e.get("data") for e in events_of(answer, "message")], [b"confirmed".hex()], "messages")
    answer = iut.ok("receive", data=response, now=1.0)
    expect_eq((out_of(answer), events_of(answer)), ([], []), "answer to the repeated RESPONSE")


_SAS_FORMAT = re.compile(r"\d{4} \d{4} \d{4}")


def _sas_for(iut: Iut, role: str, pattern: Pattern) -> str:
    """The IUT's SAS equals keyed BLAKE2b(h2 || nonce), recomputed here from the reference's h2 and nonce."""
    link = establish(iut, role, pattern=pattern)
    sas = link.completed.get("sas")
    expect(isinstance(sas, str) and _SAS_FORMAT.fullmatch(sas) is not None, f"SAS format: {sas!r}")
    expect_eq(sas, link.sas, f"SAS as {pattern.value} {role} vs BLAKE2b(h2 || nonce)")
    return str(sas)


@case(
    "hs/sas/1",
    section=SAS,
    title="the SAS is 12 digits from h2 and the nonce, as the spec computes it (XX initiator)",
    requirements=(
        "HS-7.1.7",
        "SES-3.4",
    ),
)
def _(iut: Iut) -> str:
    return _sas_for(iut, "initiator", Pattern.XX)


@case(
    "hs/sas/2",
    section=SAS,
    title="the SAS is 12 digits from h2 and the nonce, as the spec computes it (XX responder)",
    requirements=(
        "HS-7.1.7",
        "SES-3.4",
    ),
)
def _(iut: Iut) -> str:
    return _sas_for(iut, "responder", Pattern.XX)


@case(
    "hs/sas/3",
    section=SAS,
    title="the SAS is 12 digits from h2 and the nonce, as the spec computes it (IK initiator)",
    requirements=(
        "HS-7.1.7",
        "SES-3.4",
    ),
)
def _(iut: Iut) -> str:
    return _sas_for(iut, "initiator", Pattern.IK)


@case(
    "hs/sas/4",
    section=SAS,
    title="the SAS is 12 digits from h2 and the nonce, as the spec computes it (IK responder)",
    requirements=(
        "HS-7.1.7",
        "SES-3.4",
    ),
)
def _(iut: Iut) -> str:
    return _sas_for(iut, "responder", Pattern.IK)


@case(
    "hs/sas/5",
    section=SAS,
    title="XX: the IUT's INIT commits to the SAS nonce it was given; its FINISH reveals it",
    requirements=(
        "HS-3.4",
        "HS-5.1.1",
        "HS-5.3.1",
        "HS-6.1.1",
        "HS-6.1.2",
        "HS-7.1.1",
        "HS-7.1.3",
        "SES-1.2",
        "CONF-2.9",
    ),
)
def _(iut: Iut) -> None:
    init = one_packet_of(start_session(iut, "initiator"))
    hand = Hand(Pattern.XX, initiator=False)
    payload = decode_payload(hand.read(handshake_message(init, PacketType.INIT), "INIT"), "INIT")
    expect_eq(payload.sas_commitment, sas_commitment(IUT.sas_nonce), "SAS commitment in the XX INIT")
    answer = iut.ok("receive", data=hand.response(response_payload()), now=0.0)
    finish = hand.read(handshake_message(one_packet(answer, PacketType.FINISH), PacketType.FINISH), "FINISH")
    expect_eq(hand.check_identity(finish).sas_nonce, IUT.sas_nonce, "SAS nonce in the FINISH")


@case(
    "hs/sas/6",
    section=SAS,
    title="IK: the IUT's INIT commits to the SAS nonce it was given; its CONFIRM reveals it",
    requirements=(
        "HS-5.3.1",
        "HS-6.4.3",
        "HS-7.1.1",
        "HS-7.1.3",
        "SES-1.2",
        "SES-3.5",
    ),
)
def _(iut: Iut) -> None:
    init = one_packet_of(start_session(iut, "initiator", remote_static=REF.static_public))
    hand = Hand(Pattern.IK, initiator=False)
    payload = hand.check_identity(hand.read(handshake_message(init, PacketType.INIT), "INIT"))
    expect_eq(payload.sas_commitment, sas_commitment(IUT.sas_nonce), "SAS commitment in the IK INIT")
    answer = iut.ok("receive", data=hand.response(response_payload()), now=0.0)
    k_i2r, k_r2i = hand.hs.split()
    opened = Link(k_r2i, k_i2r, IUT_INDEX, hand.hash).open(one_packet(answer, PacketType.CONFIRM))
    expect_eq(opened.plaintext, IUT.sas_nonce, "plaintext of the CONFIRM record")
