"""Handshake cases that must succeed: XX and IK in both roles, byte-exact packets, retransmission, SAS.

The reference runs a "shadow" of the IUT's side, a ``SecureSession`` with the
IUT's keys and ephemeral, fed the same packets: a conforming IUT sends the
shadow's bytes exactly (spec/handshake.md §3, §4).
"""

from __future__ import annotations

import re
from typing import Any

from p2pos.proto import HandshakeCompleted, SecureSession, SessionConfig, short_authentication_string
from p2pos.proto.noise import Pattern
from p2pos.proto.wire import PacketType, encode_init, encode_response

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
    events_of,
    get_timer,
    handshake_message,
    identity_payload,
    one_event,
    one_packet,
    one_packet_of,
    out_of,
    session_state,
    start_session,
    versions_payload,
)
from .registry import case

NOISE = "handshake.md §3"
PACKETS = "handshake.md §4"
VERSIONS = "handshake.md §5.3"
SAS = "handshake.md §7"
TIMERS = "handshake.md §8.1"
DUPLICATES = "handshake.md §8.2"
DEADLINE = "session.md §7"


def _shadow_initiator(remote_static: bytes | None = None, config: SessionConfig | None = None) -> SecureSession:
    return SecureSession.initiate(
        IUT.keys, local_index=IUT_INDEX, now=0.0, ephemeral=IUT.ephemeral, remote_static=remote_static, config=config
    )


def _shadow_responder(init: bytes, config: SessionConfig | None = None) -> SecureSession:
    return SecureSession.respond_untrusted(
        IUT.keys, init, local_index=IUT_INDEX, now=0.0, ephemeral=IUT.ephemeral, config=config
    )


def _ref_initiator(remote_static: bytes | None = None) -> SecureSession:
    return SecureSession.initiate(
        REF.keys, local_index=REF_INDEX, now=0.0, ephemeral=REF.ephemeral, remote_static=remote_static
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


@case("hs/xx/1", section=PACKETS, title="XX INIT is byte-exact with a fixed ephemeral")
def _(iut: Iut) -> None:
    init = one_packet_of(start_session(iut, "initiator"))
    expect_eq(init.hex(), _shadow_initiator().data_to_send(0.0)[0].hex(), "INIT bytes")


@case("hs/xx/2", section=PACKETS, title="XX RESPONSE is byte-exact with a fixed ephemeral")
def _(iut: Iut) -> None:
    init = _ref_initiator().data_to_send(0.0)[0]
    start_session(iut, "responder")
    response = one_packet(iut.ok("receive", data=init, now=0.0), PacketType.RESPONSE)
    expect_eq(response.hex(), _shadow_responder(init).data_to_send(0.0)[0].hex(), "RESPONSE bytes")


@case("hs/xx/3", section=NOISE, title="XX as initiator: FINISH byte-exact, both sides agree on the peer and hash")
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


@case("hs/xx/4", section=NOISE, title="XX as responder: established on FINISH with the initiator's identity")
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


@case("hs/xx/5", section=VERSIONS, title="the responder picks the highest common version")
def _(iut: Iut) -> None:
    hand = Hand(Pattern.XX, initiator=True)
    start_session(iut, "responder")
    init = encode_init(Pattern.XX, REF_INDEX, hand.write(versions_payload((1, 2, 7))))
    response = one_packet(iut.ok("receive", data=init, now=0.0), PacketType.RESPONSE)
    payload = hand.check_identity(hand.read(handshake_message(response, PacketType.RESPONSE), "RESPONSE"))
    expect_eq(payload.versions, (1,), "versions in the RESPONSE payload")


_FAST = {"retransmit_initial": 1.0, "retransmit_max": 4.0, "handshake_timeout": 15.0}


@case("hs/xx/6", section=TIMERS, title="INIT is resent byte for byte at 1, 3, 7, 11 s; at 15 s the handshake ends")
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


@case("hs/xx/7", section=DUPLICATES, title="a duplicate INIT is answered with the identical RESPONSE")
def _(iut: Iut) -> None:
    init = _ref_initiator().data_to_send(0.0)[0]
    start_session(iut, "responder")
    response = one_packet(iut.ok("receive", data=init, now=0.0), PacketType.RESPONSE)
    again = one_packet(iut.ok("receive", data=init, now=0.5), PacketType.RESPONSE)
    expect_eq(again.hex(), response.hex(), "RESPONSE to the duplicate INIT")


@case("hs/xx/8", section=TIMERS, title="the responder resends the identical RESPONSE when its timer fires")
def _(iut: Iut) -> None:
    init = _ref_initiator().data_to_send(0.0)[0]
    start_session(iut, "responder", config=_FAST)
    response = one_packet(iut.ok("receive", data=init, now=0.0), PacketType.RESPONSE)
    timer = get_timer(iut)
    if timer is None or not 0.0 < timer <= 1.0:
        raise CaseFailed(f"retransmission timer {timer}, expected in (0, 1]")
    again = one_packet(iut.ok("timer", now=timer), PacketType.RESPONSE)
    expect_eq(again.hex(), response.hex(), "retransmitted RESPONSE")


@case("hs/xx/9", section=DUPLICATES, title="a repeated RESPONSE (FINISH lost) gets the identical FINISH again")
def _(iut: Iut) -> None:
    init = one_packet_of(start_session(iut, "initiator"))
    response = _ref_responder(init).data_to_send(0.0)[0]
    finish = one_packet(iut.ok("receive", data=response, now=0.0), PacketType.FINISH)
    answer = iut.ok("receive", data=response, now=1.0)
    expect_eq(one_packet(answer, PacketType.FINISH).hex(), finish.hex(), "FINISH sent again")
    expect(not answer.get("events"), f"no new event for a repeated RESPONSE, got {answer.get('events')}")


@case("hs/xx/10", section=DEADLINE, title="a handshake with no answer ends with HANDSHAKE_TIMEOUT")
def _(iut: Iut) -> None:
    start_session(iut, "initiator", config={**_FAST, "handshake_timeout": 5.0})
    answer = iut.ok("timer", now=5.0)
    expect_eq(out_of(answer), [], "datagrams at the deadline (checked before retransmission)")
    for event in answer.get("events", []):
        expect_eq(event.get("code"), "HANDSHAKE_TIMEOUT", "code of the closed event")
    state = iut.ok("state")
    expect_eq((state.get("state"), state.get("close_code")), ("closed", "HANDSHAKE_TIMEOUT"), "state after timeout")
    expect_eq(get_timer(iut), None, "timer of a closed session")


@case("hs/xx/27", section=DUPLICATES, title="once a record from the responder arrived, a repeated RESPONSE is dropped")
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


@case("hs/xx/28", section=DUPLICATES, title="a different INIT reaching an existing responder session is dropped")
def _(iut: Iut) -> None:
    init = _ref_initiator().data_to_send(0.0)[0]
    start_session(iut, "responder")
    response = one_packet(iut.ok("receive", data=init, now=0.0), PacketType.RESPONSE)
    other = Hand(Pattern.XX, initiator=True, ephemeral=OTHER.ephemeral).write(versions_payload())
    answer = iut.ok("receive", data=encode_init(Pattern.XX, REF_INDEX, other), now=0.1)
    expect_eq((out_of(answer), events_of(answer)), ([], []), "answer to another INIT")
    again = one_packet(iut.ok("receive", data=init, now=0.2), PacketType.RESPONSE)
    expect_eq(again.hex(), response.hex(), "RESPONSE to the original INIT repeated")


@case("hs/ik/1", section=PACKETS, title="IK INIT (remote static known) is byte-exact")
def _(iut: Iut) -> None:
    init = one_packet_of(start_session(iut, "initiator", remote_static=REF.static_public))
    expect_eq(init[1], 0x02, "pattern code of an IK INIT")
    shadow = _shadow_initiator(REF.static_public).data_to_send(0.0)[0]
    expect_eq(init.hex(), shadow.hex(), "IK INIT bytes")


@case("hs/ik/2", section=NOISE, title="IK as initiator: established on RESPONSE, confirms with a KEEPALIVE")
def _(iut: Iut) -> None:
    init = one_packet_of(start_session(iut, "initiator", remote_static=REF.static_public))
    ref = _ref_responder(init)
    response = ref.data_to_send(0.0)[0]
    answer = iut.ok("receive", data=response, now=0.0)
    confirm = one_packet(answer, PacketType.KEEPALIVE)
    shadow = _shadow_initiator(REF.static_public)
    shadow.data_to_send(0.0)  # its INIT
    shadow.receive_data(response, 0.0)
    expect_eq(confirm.hex(), shadow.data_to_send(0.0)[0].hex(), "key confirmation KEEPALIVE bytes")
    ref.receive_data(confirm, 0.0)
    _check_completed(one_event(answer, "handshake_completed"), _completed(ref), "IK")


@case("hs/ik/3", section=NOISE, title="IK as responder: RESPONSE byte-exact, established on the first record")
def _(iut: Iut) -> None:
    ref = _ref_initiator(IUT.static_public)
    init = ref.data_to_send(0.0)[0]
    start_session(iut, "responder")
    answer = iut.ok("receive", data=init, now=0.0)
    response = one_packet(answer, PacketType.RESPONSE)
    expect_eq(response.hex(), _shadow_responder(init).data_to_send(0.0)[0].hex(), "IK RESPONSE bytes")
    expect(not answer.get("events"), f"no event before key confirmation, got {answer.get('events')}")
    ref.receive_data(response, 0.0)
    ref_event = _completed(ref)
    answer = iut.ok("receive", data=ref.data_to_send(0.0)[0], now=0.0)
    _check_completed(one_event(answer, "handshake_completed"), ref_event, "IK")


@case("hs/ik/4", section=NOISE, title="an IK INIT made for another static key creates no session")
def _(iut: Iut) -> None:
    other = Hand(Pattern.IK, initiator=True, rs=REF.static_public)  # IUT is not REF
    start_session(iut, "responder")
    init = encode_init(Pattern.IK, REF_INDEX, other.write(identity_payload(REF)))
    answer = iut.ok("receive", data=init, now=0.0)
    expect_eq(out_of(answer), [], "datagrams sent")
    expect_eq(session_state(iut), "none", "state")


@case("hs/ik/7", section=DUPLICATES, title="IK: a repeated RESPONSE is answered with a new KEEPALIVE")
def _(iut: Iut) -> None:
    init = one_packet_of(start_session(iut, "initiator", remote_static=REF.static_public))
    hand = Hand(Pattern.IK, initiator=False)
    hand.check_identity(hand.read(handshake_message(init, PacketType.INIT), "INIT"))
    response = encode_response(REF_INDEX, IUT_INDEX, hand.write(identity_payload(REF)))
    k_i2r, k_r2i = hand.hs.split()
    link = Link(k_r2i, k_i2r, IUT_INDEX, hand.hs.handshake_hash)
    first = link.open(one_packet(iut.ok("receive", data=response, now=0.0), PacketType.KEEPALIVE))
    second = link.open(one_packet(iut.ok("receive", data=response, now=1.0), PacketType.KEEPALIVE))
    expect(second.counter > first.counter, f"the second KEEPALIVE reuses counter {second.counter}")
    expect_eq(second.plaintext, b"", "KEEPALIVE plaintext")


@case("hs/sas/1", section=SAS, title="the SAS is 12 digits from the handshake hash, equal on both sides (initiator)")
def _(iut: Iut) -> str:
    return _sas_for(iut, "initiator")


@case("hs/sas/2", section=SAS, title="the SAS is 12 digits from the handshake hash, equal on both sides (responder)")
def _(iut: Iut) -> str:
    return _sas_for(iut, "responder")


def _sas_for(iut: Iut, role: str) -> str:
    if role == "initiator":
        init = one_packet_of(start_session(iut, "initiator"))
        ref = _ref_responder(init)
        answer = iut.ok("receive", data=ref.data_to_send(0.0)[0], now=0.0)
        ref.receive_data(one_packet(answer, PacketType.FINISH), 0.0)
    else:
        ref = _ref_initiator()
        start_session(iut, "responder")
        ref.receive_data(one_packet(iut.ok("receive", data=ref.data_to_send(0.0)[0], now=0.0), PacketType.RESPONSE), 0)
        answer = iut.ok("receive", data=ref.data_to_send(0.0)[0], now=0.0)
    ref_event = _completed(ref)
    event = one_event(answer, "handshake_completed")
    sas = event.get("sas")
    expect(isinstance(sas, str) and re.fullmatch(r"\d{4} \d{4} \d{4}", sas) is not None, f"SAS format: {sas!r}")
    expect_eq(sas, short_authentication_string(unhex(event.get("handshake_hash"), "handshake_hash")), "SAS of the hash")
    expect_eq(sas, ref_event.sas, f"SAS as {role} vs the reference peer")
    return str(sas)
