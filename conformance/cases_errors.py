"""One case for every fatal error of spec/errors.md that can be seen on the wire (issue 10).

errors.md §1 lists, for each code, where it arises.  The cases here provoke the
ways a fatal code can arise that no case elsewhere provokes yet, and check the
code the IUT reports (its ``state`` or events) and, where the session was
established, the code of the CLOSE record it sends (errors.md §2).  Codes that
are never fatal or never visible (dropped packets, caller errors, local timers
that send nothing, ``INTERNAL_ERROR``) are listed with the reason in the
coverage table of issue 10, not here.
"""

from __future__ import annotations

from p2pos.proto.channels import frames as ch
from p2pos.proto.channels.flow import EARLY_WINDOW
from p2pos.proto.errors import ErrorCode
from p2pos.proto.handshake.noise import Pattern
from p2pos.proto.handshake.payload import F_SESSION_INDEX, F_VERSIONS
from p2pos.proto.session.wire import PacketType

from .cases_channels import Peer, Reply, expect_close, expect_open, payload
from .cases_handshake_errors import (
    _UNKNOWN_CRITICAL,
    _expect_closed,
    _expect_never_established,
    _iut_initiator,
    _respond,
    _responder_finish,
)
from .checks import expect, expect_eq, short
from .iut import Iut
from .reference import (
    IUT,
    IUT_INDEX,
    OTHER,
    REF,
    REF_INDEX,
    Hand,
    Link,
    finish_payload,
    handshake_message,
    identity_payload,
    init_payload,
    no_event,
    one_packet,
    out_of,
    response_payload,
    start_session,
)
from .registry import case

FINAL, FLOW_ERRORS, OPEN, PARSE = "flow.md §1", "flow.md §6", "channels.md §2.2", "frames.md §5"
KINDS, MISSING, FIELDS = "channels.md §2.5", "channels.md §2.6", "handshake.md §5.1"
VERSIONS, BINDING, SAS, CLOSE = "handshake.md §5.3", "handshake.md §6.2", "handshake.md §7", "record.md §8"
#: The connection credit every IUT starts with (flow.md §3).
CONNECTION_CREDIT = 1024 * 1024


def _expect_fatal(reply: Reply, code: ErrorCode, what: str) -> None:
    """The IUT sent a CLOSE with ``code`` and reported ``connection_closed`` with it."""
    expect_close(reply, code, what)
    closed = reply.events("connection_closed")
    expect(
        bool(closed) and closed[0].get("code") == code.name,
        f"{what}: a connection_closed event with {code.name}, got {short(reply.answer.get('events'))}",
    )


# -- FLOW_CONTROL_ERROR: a RESET final size beyond a limit (flow.md §6) ---------------------------


@case(
    "ch/fatal/1",
    section=FLOW_ERRORS,
    title="a RESET whose final size passes the channel window: FLOW_CONTROL_ERROR",
    requirements=(
        "CH-3.3.3",
        "CH-2.7.4",
        "FLOW-3.1.1",
        "FLOW-3.3.1",
        "FLOW-6.1",
        "ERR-1.1",
        "ERR-1.20",
        "ERR-2.14",
    ),
)
def _(iut: Iut) -> None:
    peer = Peer(iut, channel_window=1000)
    channel_id = peer.open("sink")
    accept = [f for f in peer.last.frames(ch.Accept) if f.channel_id == channel_id]
    expect(bool(accept) and accept[0].initial_max_data == 1000, f"ACCEPT with window 1000, got {short(accept)}")
    # A channel the peer opened takes EARLY_WINDOW bytes whatever its window (channels.md CH-2.7.4): past both.
    final = EARLY_WINDOW + 1
    reply = peer.send(ch.Reset(channel_id=channel_id, code=int(ErrorCode.APPLICATION_CLOSE), final_size=final), at=0.1)
    _expect_fatal(reply, ErrorCode.FLOW_CONTROL_ERROR, f"a RESET with final size {final} on a window of 1000")


@case(
    "ch/fatal/2",
    section=FLOW_ERRORS,
    title="a RESET final size beyond the connection credit: FLOW_CONTROL_ERROR",
    requirements=(
        "CH-3.3.3",
        "FLOW-3.1.1",
        "FLOW-3.3.1",
        "FLOW-6.1",
        "ERR-1.20",
    ),
)
def _(iut: Iut) -> None:
    peer = Peer(iut, channel_window=4 * CONNECTION_CREDIT)
    expect(not peer.first.frames(ch.MaxData), "the IUT raised the connection limit with the default config")
    channel_id = peer.open("sink")
    # The channel allows 4 MiB, the connection only the initial 1 MiB.
    code = int(ErrorCode.APPLICATION_CLOSE)
    reply = peer.send(ch.Reset(channel_id=channel_id, code=code, final_size=CONNECTION_CREDIT + 1), at=0.1)
    _expect_fatal(reply, ErrorCode.FLOW_CONTROL_ERROR, "a RESET one byte beyond the connection credit")


# -- FINAL_SIZE_ERROR: the ways flow.md §1 lists that no other case provokes ----------------------


@case(
    "ch/fatal/3",
    section=FINAL,
    title="a STREAM_FIN below data already received: FINAL_SIZE_ERROR",
    requirements=(
        "FLOW-1.5",
        "FLOW-6.1",
        "ERR-1.21",
    ),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    channel_id = peer.open("sink")
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=0, data=payload(10)), at=0.1)
    expect_open(reply, "ten bytes without a FIN")
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=5, data=b"", fin=True), at=0.2)
    _expect_fatal(reply, ErrorCode.FINAL_SIZE_ERROR, "a STREAM_FIN at 5 after data up to 10")


@case(
    "ch/fatal/4",
    section=FINAL,
    title="a RESET below data already received: FINAL_SIZE_ERROR",
    requirements=(
        "CH-3.3.3",
        "FLOW-1.5",
        "FLOW-6.1",
        "ERR-1.21",
    ),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    channel_id = peer.open("sink")
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=0, data=payload(10)), at=0.1)
    expect_open(reply, "ten bytes without a FIN")
    reply = peer.send(ch.Reset(channel_id=channel_id, code=int(ErrorCode.APPLICATION_CLOSE), final_size=5), at=0.2)
    _expect_fatal(reply, ErrorCode.FINAL_SIZE_ERROR, "a RESET with final size 5 after data up to 10")


@case(
    "ch/fatal/5",
    section=FINAL,
    title="a RESET whose final size differs from the STREAM_FIN's: FINAL_SIZE_ERROR",
    requirements=(
        "CH-3.3.3",
        "FLOW-1.3",
        "FLOW-6.1",
        "ERR-1.21",
    ),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    channel_id = peer.open("sink")
    # A FIN at 20 with only the first 10 bytes sent: the direction is not finished, so the RESET is read.
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=0, data=payload(10)), at=0.1)
    expect_open(reply, "ten bytes without a FIN")
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=20, data=b"", fin=True), at=0.2)
    expect_open(reply, "a STREAM_FIN at 20")
    reply = peer.send(ch.Reset(channel_id=channel_id, code=int(ErrorCode.APPLICATION_CLOSE), final_size=25), at=0.3)
    _expect_fatal(reply, ErrorCode.FINAL_SIZE_ERROR, "a RESET with final size 25 after a STREAM_FIN at 20")


# -- CHANNEL_STATE_ERROR: wrong kind, frames for channels never opened (channels.md §2.5, §2.6) ----


@case(
    "ch/fatal/6",
    section=KINDS,
    title="a MESSAGE frame on a stream channel closes with CHANNEL_STATE_ERROR",
    requirements=(
        "CH-2.5.1",
        "CH-11.1",
        "ERR-1.24",
    ),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    channel_id = peer.open_echo()
    reply = peer.send(ch.Message(channel_id=channel_id, message_id=0, data=b"not stream bytes"), at=0.1)
    expect(not reply.events("channel_message"), f"a message on a stream channel was delivered: {short(reply.answer)}")
    _expect_fatal(reply, ErrorCode.CHANNEL_STATE_ERROR, "MESSAGE on a stream channel")


@case(
    "ch/fatal/7",
    section=MISSING,
    title="a RESET for a channel the peer never opened: CHANNEL_STATE_ERROR",
    requirements=(
        "CH-2.6.2",
        "ERR-1.24",
    ),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    # The runner's parity, never opened (channels.md §2.6).
    reply = peer.send(ch.Reset(channel_id=6, code=int(ErrorCode.APPLICATION_CLOSE), final_size=0), at=0.1)
    _expect_fatal(reply, ErrorCode.CHANNEL_STATE_ERROR, "RESET on channel 6 without an OPEN")


@case(
    "ch/fatal/8",
    section=MISSING,
    title="a STOP_SENDING for an IUT channel id not yet used: CHANNEL_STATE_ERROR",
    requirements=(
        "CH-2.6.2",
        "ERR-1.24",
    ),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    # The IUT's parity, above every id it opened (it opened none).
    reply = peer.send(ch.StopSending(channel_id=peer.iut_parity + 8, code=int(ErrorCode.APPLICATION_CLOSE)), at=0.1)
    _expect_fatal(reply, ErrorCode.CHANNEL_STATE_ERROR, "STOP_SENDING on an IUT channel id never opened")


@case(
    "ch/fatal/9",
    section=MISSING,
    title="a CLOSE_CHANNEL for a channel never opened: CHANNEL_STATE_ERROR",
    requirements=(
        "CH-2.6.2",
        "ERR-1.24",
    ),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    reply = peer.send(ch.CloseChannel(channel_id=10), at=0.1)
    _expect_fatal(reply, ErrorCode.CHANNEL_STATE_ERROR, "CLOSE_CHANNEL on channel 10 without an OPEN")


@case(
    "ch/fatal/10",
    section=MISSING,
    title="a MESSAGE for a channel never opened: CHANNEL_STATE_ERROR",
    requirements=(
        "CH-2.6.2",
        "ERR-1.24",
    ),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    reply = peer.send(ch.Message(channel_id=12, message_id=0, data=b"nobody listens"), at=0.1)
    expect(not reply.events("channel_message"), f"a message for no channel was delivered: {short(reply.answer)}")
    _expect_fatal(reply, ErrorCode.CHANNEL_STATE_ERROR, "MESSAGE on channel 12 without an OPEN")


# -- handshake payload errors in a FINISH, seen by a responder (handshake.md §5.1) ---------------


@case(
    "hs/fatal/1",
    section=FIELDS,
    title="a FINISH with an unknown critical field: UNKNOWN_CRITICAL_FIELD",
    requirements=(
        "HS-5.1.4",
        "HS-8.4.2",
        "HS-8.4.5",
        "SES-3.11",
        "ERR-1.11",
    ),
)
def _(iut: Iut) -> None:
    answer, link = _responder_finish(iut, finish_payload(extra=_UNKNOWN_CRITICAL))
    _expect_never_established(iut, answer, link, "UNKNOWN_CRITICAL_FIELD")


@case(
    "hs/fatal/2",
    section=FIELDS,
    title="a FINISH with a duplicated field: MALFORMED_MESSAGE",
    requirements=(
        "HS-5.1.6",
        "HS-8.4.2",
        "HS-8.4.5",
        "SES-3.11",
        "ERR-1.10",
    ),
)
def _(iut: Iut) -> None:
    answer, link = _responder_finish(iut, finish_payload(extra=((F_VERSIONS, b"\x00\x01"),)))
    _expect_never_established(iut, answer, link, "MALFORMED_MESSAGE")


@case(
    "hs/fatal/3",
    section=FIELDS,
    title="a RESPONSE whose session index is 3 bytes long: MALFORMED_MESSAGE",
    requirements=(
        "HS-5.1.6",
        "HS-8.4.2",
        "HS-8.4.5",
        "ERR-1.10",
    ),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut)
    payload = identity_payload(REF, extra=((F_SESSION_INDEX, REF_INDEX.to_bytes(4, "big")[1:]),))
    _expect_closed(iut, _respond(iut, hand, payload), "MALFORMED_MESSAGE")


@case(
    "hs/fatal/4",
    section=FIELDS,
    title="a FINISH whose SAS nonce is 31 bytes long: MALFORMED_MESSAGE",
    requirements=(
        "HS-5.1.6",
        "HS-8.4.2",
        "HS-8.4.5",
        "SES-3.11",
        "ERR-1.10",
    ),
)
def _(iut: Iut) -> None:
    answer, link = _responder_finish(iut, finish_payload(sas_nonce=REF.sas_nonce[:31]))
    _expect_never_established(iut, answer, link, "MALFORMED_MESSAGE")


# -- the same rules in an IK RESPONSE, seen by an IK initiator (handshake.md §5, §6.2) -----------


@case(
    "hs/fatal/5",
    section=BINDING,
    title="IK: a RESPONSE signed over another static key: BAD_IDENTITY",
    requirements=(
        "HS-6.2.2",
        "HS-8.4.2",
        "HS-8.4.5",
        "ERR-1.6",
        "ERR-2.10",
    ),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut, pattern=Pattern.IK)
    _expect_closed(iut, _respond(iut, hand, response_payload(signed_static=OTHER.static_public)), "BAD_IDENTITY")


@case(
    "hs/fatal/6",
    section=FIELDS,
    title="IK: a RESPONSE with an unknown critical field: UNKNOWN_CRITICAL_FIELD",
    requirements=(
        "HS-5.1.4",
        "HS-8.4.2",
        "HS-8.4.5",
        "ERR-1.11",
    ),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut, pattern=Pattern.IK)
    _expect_closed(iut, _respond(iut, hand, response_payload(extra=_UNKNOWN_CRITICAL)), "UNKNOWN_CRITICAL_FIELD")


@case(
    "hs/fatal/7",
    section=VERSIONS,
    title="IK: a RESPONSE choosing an unsupported version: UNSUPPORTED_VERSION",
    requirements=(
        "HS-5.3.6",
        "HS-8.4.2",
        "HS-8.4.5",
        "ERR-1.8",
    ),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut, pattern=Pattern.IK)
    _expect_closed(iut, _respond(iut, hand, response_payload(versions=(2,))), "UNSUPPORTED_VERSION")


@case(
    "hs/fatal/8",
    section=SAS,
    title="IK: a CONFIRM without a SAS nonce: CLOSE with PROTOCOL_VIOLATION",
    requirements=(
        "HS-6.4.5",
        "HS-7.1.5",
        "HS-8.4.2",
        "HS-8.4.6",
        "SES-3.1",
        "SES-3.9",
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
    answer = iut.ok("receive", data=link.seal(PacketType.CONFIRM, b""), now=0.0)
    no_event(answer, "handshake_completed", "the empty CONFIRM must be refused")
    closing = link.open(one_packet(answer, PacketType.CLOSE))
    expect_eq(closing.plaintext[:2], bytes([0, ErrorCode.PROTOCOL_VIOLATION]), "CLOSE code")
    state = iut.ok("state")
    expect_eq((state.get("state"), state.get("close_code")), ("closed", "PROTOCOL_VIOLATION"), "state and code")
    no_event(iut.ok("receive", data=link.data(b"should not arrive"), now=0.0), "message", "a record after it")


# -- a fatal code received in CLOSE (errors.md §1: "fatal when received in CLOSE") ----------------


@case(
    "rec/fatal/1",
    section=CLOSE,
    title="a CLOSE with FLOW_CONTROL_ERROR ends the connection with it, unanswered",
    requirements=(
        "ERR-1.27",
        "ERR-2.12",
        "ERR-3.2",
    ),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    body = int(ErrorCode.FLOW_CONTROL_ERROR).to_bytes(2, "big") + b"too much"
    answer = iut.ok("conn_receive", data=peer.link.seal(PacketType.CLOSE, body), now=0.1)
    expect_eq(out_of(answer), [], "datagrams in answer to a CLOSE")
    closed = [e for e in answer.get("events", []) if e.get("type") == "connection_closed"]
    expect(len(closed) == 1, f"one connection_closed event, got {short(answer.get('events'))}")
    expect_eq((closed[0].get("code"), closed[0].get("by_peer")), ("FLOW_CONTROL_ERROR", True), "connection_closed")


# -- ACCEPT and REFUSE for ids the IUT did not open: PROTOCOL_VIOLATION (channels.md §2.2) -------


@case(
    "ch/fatal/11",
    section=OPEN,
    title="an ACCEPT of an id of the runner's own parity: PROTOCOL_VIOLATION",
    requirements=("CH-2.2.15",),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    channel_id = peer.open_echo()  # held, but opened by the runner: only the IUT may accept it
    reply = peer.send(ch.Accept(channel_id=channel_id, initial_max_data=1000), at=0.1)
    _expect_fatal(reply, ErrorCode.PROTOCOL_VIOLATION, f"an ACCEPT of the runner's channel {channel_id}")


@case(
    "ch/fatal/12",
    section=OPEN,
    title="an ACCEPT of an IUT id the IUT never opened: PROTOCOL_VIOLATION",
    requirements=("CH-2.2.15",),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    channel_id = peer.iut_parity + 4
    reply = peer.send(ch.Accept(channel_id=channel_id, initial_max_data=1000), at=0.1)
    _expect_fatal(reply, ErrorCode.PROTOCOL_VIOLATION, f"an ACCEPT of channel {channel_id}, never opened")


@case(
    "ch/fatal/13",
    section=OPEN,
    title="a REFUSE of an IUT id the IUT never opened: PROTOCOL_VIOLATION",
    requirements=("CH-2.2.15",),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    channel_id = peer.iut_parity + 2
    reply = peer.send(ch.Refuse(channel_id=channel_id, code=int(ErrorCode.CHANNEL_REFUSED)), at=0.1)
    _expect_fatal(reply, ErrorCode.PROTOCOL_VIOLATION, f"a REFUSE of channel {channel_id}, never opened")


# -- packets that do not parse, received on a live connection (frames.md §5) ----------------------


@case(
    "ch/fatal/14",
    section=PARSE,
    title="a live OPEN with an unknown channel kind closes with MALFORMED_MESSAGE",
    requirements=(
        "FRA-4.4.2",
        "FRA-5.2",
        "CH-11.1",
        "ERR-1.29",
    ),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    good = ch.encode_frame(ch.Open(channel_id=0, kind=ch.ChannelKind.STREAM, service="echo", initial_max_data=100))
    expect_eq(good[2], int(ch.ChannelKind.STREAM), "internal: the kind byte of the reference's OPEN")
    reply = peer.send_raw(good[:2] + b"\x02" + good[3:], at=0.1)
    expect(not reply.frames(ch.Accept), f"the OPEN of kind 2 was accepted: {short(reply.packets, 200)}")
    _expect_fatal(reply, ErrorCode.MALFORMED_MESSAGE, "an OPEN of kind 2")


@case(
    "ch/fatal/15",
    section=PARSE,
    title="live STREAM data ending beyond 2^62-1 closes with MALFORMED_MESSAGE",
    requirements=(
        "FRA-4.7.4",
        "FRA-5.2",
        "FLOW-6.3",
        "ERR-1.29",
    ),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    channel_id = peer.open("sink")
    expect(channel_id < 64, "internal: a one-byte channel id")
    # STREAM (0x06), the channel, offset 2^62 - 2 (an 8-byte varint), length 3: it would end at 2^62 + 1.
    frame = bytes([0x06, channel_id]) + bytes.fromhex("fffffffffffffffe") + b"\x03abc"
    reply = peer.send_raw(frame, at=0.1)
    # Read as a frame, it would be FLOW_CONTROL_ERROR; the parser must reject it first.
    _expect_fatal(reply, ErrorCode.MALFORMED_MESSAGE, "STREAM data ending at 2^62 + 1")
