"""Cases for the requirements of spec/session.md and spec/errors.md that no earlier case tested
(spec/conformance.md §6).

``ses/`` checks the session API as the control protocol exposes it (spec/conformance.md §3.2):
calls refused outside ``ESTABLISHED``, closing, who is told of a session's end, and the timers
of session.md §3 and §7.  ``ep/demux/`` and ``ep/route/`` use the optional endpoint mode
(§3.3): datagrams that name no session, sessions removed once closed, and the INIT replay
cache's lifetime.  ``err/close/`` sends a CLOSE record with each code a peer can close with
(errors.md §2) and checks that the IUT ends with that code, unanswered; ``err/code/`` checks the
codes of REFUSE, RESET and STOP_SENDING frames (errors.md §3).
"""

from __future__ import annotations

from typing import Any

from p2pos.proto.channels import frames as ch
from p2pos.proto.errors import ErrorCode
from p2pos.proto.handshake.noise import Pattern
from p2pos.proto.session.wire import PacketType, encode_finish, encode_response

from .cases_channels import Peer, ack_of, expect_open
from .cases_endpoint import _start_endpoint, _start_session
from .cases_handshake_errors import _iut_initiator
from .checks import CaseFailed, Unsupported, expect, expect_eq, short
from .iut import Iut
from .reference import (
    IUT,
    IUT_INDEX,
    OTHER,
    REF,
    REF_INDEX,
    Hand,
    Link,
    establish,
    events_of,
    get_timer,
    handshake_message,
    identity_payload,
    init_payload,
    one_event,
    one_packet,
    one_packet_of,
    out_of,
    response_payload,
    session_state,
    start_session,
)
from .registry import case

API, STATES, DEMUX, ROUTE = "session.md §2", "session.md §3", "session.md §4.1", "session.md §4.3"
CONFIG, TIMERS = "session.md §6", "session.md §7"
CODES, FATAL, ON_THE_WIRE = "errors.md §1", "errors.md §2", "errors.md §3"
#: Handshake timers short enough to run out in a case (spec/session.md §6 constraints hold).
FAST = {"retransmit_initial": 1.0, "retransmit_max": 2.0, "handshake_timeout": 5.0}


def _nothing(answer: dict[str, Any], what: str) -> None:
    """The IUT sent no datagram and reported no event."""
    expect_eq((out_of(answer), events_of(answer)), ([], []), what)


def _closed_events(answer: dict[str, Any], code: str, by_peer: bool, what: str) -> None:
    """Exactly one ``closed`` event, with ``code`` and ``by_peer``."""
    closed = events_of(answer, "closed")
    expect(len(closed) == 1, f"{what}: expected one closed event, got {short(events_of(answer), 200)}")
    expect_eq((closed[0].get("code"), closed[0].get("by_peer")), (code, by_peer), f"{what}: closed event")


def _ik_responder(iut: Iut, config: dict[str, Any] | None = None, now: float = 0.0) -> Link:
    """The IUT as IK responder that has sent its RESPONSE (keys derived) and awaits CONFIRM."""
    hand = Hand(Pattern.IK, initiator=True, rs=IUT.static_public)
    start_session(iut, "responder", config=config)
    answer = iut.ok("receive", data=hand.init(init_payload(Pattern.IK)), now=now)
    response = one_packet(answer, PacketType.RESPONSE)
    expect_eq(events_of(answer), [], "events after the IK INIT (the responder is not announced yet)")
    hand.check_identity(hand.read(handshake_message(response, PacketType.RESPONSE), "RESPONSE"))
    k_i2r, k_r2i = hand.hs.split()
    return Link(k_i2r, k_r2i, IUT_INDEX, hand.hash)


def _confirm(iut: Iut, link: Link, now: float) -> None:
    """Send the CONFIRM record (the reference's SAS nonce); the IK responder completes."""
    one_event(iut.ok("receive", data=link.seal(PacketType.CONFIRM, REF.sas_nonce), now=now), "handshake_completed")


def _drive(iut: Iut, until: float) -> list[dict[str, Any]]:
    """Run the IUT's timers each time ``get_timer`` says, up to ``until``; the answers."""
    answers: list[dict[str, Any]] = []
    for _ in range(100):
        timer = get_timer(iut)
        if timer is None or timer > until:
            return answers
        answers.append(iut.ok("timer", now=timer))
    raise CaseFailed(f"the IUT's timer keeps firing before {until} s")


# -- the session API (session.md §2) --------------------------------------------------------------


@case(
    "ses/api/1",
    section=API,
    title="send and keepalive before ESTABLISHED are refused (IK responder holding keys); no counter is spent",
    requirements=("SES-2.4", "SES-2.5", "SES-2.8", "SES-2.9", "ERR-4.2"),
)
def _(iut: Iut) -> None:
    link = _ik_responder(iut)
    for command, fields in (("send", {"data": b"too early"}), ("keepalive", {})):
        answer = iut.call(command, now=0.1, **fields)
        expect(answer.get("ok") is False, f"{command} before the CONFIRM must be refused, got {short(answer, 200)}")
    expect_eq(session_state(iut), "handshaking", "state after the refused calls")
    _confirm(iut, link, 0.2)
    opened = link.open(one_packet(iut.ok("send", data=b"now", now=0.3), PacketType.DATA))
    expect_eq((opened.plaintext, opened.counter), (b"now", 0), "the first DATA record (plaintext, counter)")


@case(
    "ses/api/2",
    section=API,
    title="close is idempotent: closing again sends nothing and reports nothing",
    requirements=("SES-2.6", "SES-3.1"),
)
def _(iut: Iut) -> None:
    link = establish(iut, "responder")
    answer = iut.ok("close", code="APPLICATION_CLOSE", reason="bye", now=1.0)
    expect_eq(link.open(one_packet(answer, PacketType.CLOSE)).plaintext, b"\x00\x0dbye", "the CLOSE record")
    _nothing(iut.ok("close", code="NO_ERROR", reason="again", now=2.0), "answer to a second close")
    expect_eq(iut.ok("state").get("close_code"), "APPLICATION_CLOSE", "close code after the second close")


#: Configurations that break a constraint of spec/session.md §6, each refused when created.
BAD_CONFIGS: tuple[dict[str, Any], ...] = (
    {"retransmit_initial": 0.0},
    {"retransmit_initial": 3.0, "retransmit_max": 2.0},
    {"retransmit_max": 15.0},  # equal to the default handshake_timeout
    {"rekey_after_messages": 0},
    {"rekey_after_seconds": 0.0},
    {"session_lifetime": 0.0},
    {"max_record_plaintext": 0},
    {"max_record_plaintext": 65506},
    {"versions": []},
)


@case(
    "ses/api/3",
    section=CONFIG,
    title="invalid configurations and a session index outside 32 bits are refused, creating nothing",
    requirements=("SES-6.1", "SES-2.8", "ERR-4.2"),
)
def _(iut: Iut) -> str:
    base: dict[str, Any] = {"role": "initiator", "seed": IUT.seed, "static": IUT.static, "ephemeral": IUT.ephemeral}
    base |= {"sas_nonce": IUT.sas_nonce, "remote_static": None, "expected_peer": None, "now": 0.0}
    attempts = [(config, IUT_INDEX) for config in BAD_CONFIGS] + [({}, 2**32), ({}, -1)]
    for config, index in attempts:
        answer = iut.call("session", **base, local_index=index, config=config)
        what = f"a session with config {config} and index {index}"
        expect(answer.get("ok") is False, f"{what} must be refused, got {short(answer, 200)}")
        expect_eq(session_state(iut), "none", f"state after {what}")
    expect_eq(len(out_of(iut.ok("session", **base, local_index=IUT_INDEX, config={}))), 1, "INITs of a valid session")
    return f"{len(attempts)} refused"


# -- closing and who hears of it (session.md §3) -------------------------------------------------


@case(
    "ses/close/1",
    section=STATES,
    title="an initiator closed before the RESPONSE sends nothing and reports one closed event",
    requirements=("SES-2.6", "SES-3.7", "SES-3.10", "ERR-2.9"),
)
def _(iut: Iut) -> None:
    start_session(iut, "initiator", config=FAST)
    answer = iut.ok("close", code="APPLICATION_CLOSE", reason="changed my mind", now=0.5)
    expect_eq(out_of(answer), [], "datagrams after closing without record keys")
    _closed_events(answer, "APPLICATION_CLOSE", False, "closing the initiator")
    expect_eq(get_timer(iut), None, "timer of the closed session")
    _nothing(iut.ok("timer", now=1.0), "answer at the retransmission time after the close")


@case(
    "ses/close/2",
    section=STATES,
    title="an IK responder closed before CONFIRM sends a CLOSE record (it has keys) and reports nothing",
    requirements=("SES-2.6", "SES-3.8", "SES-3.11", "ERR-2.9"),
)
def _(iut: Iut) -> None:
    link = _ik_responder(iut)
    answer = iut.ok("close", code="APPLICATION_CLOSE", reason="busy", now=0.5)
    expect_eq(events_of(answer), [], "events of a responder never announced")
    opened = link.open(one_packet(answer, PacketType.CLOSE))
    expect_eq(opened.plaintext, b"\x00\x0dbusy", "the CLOSE record (APPLICATION_CLOSE, reason)")


@case(
    "ses/announce/1",
    section=STATES,
    title="an initiator whose handshake times out reports exactly one closed event, HANDSHAKE_TIMEOUT",
    requirements=("SES-3.10", "SES-5.8", "ERR-1.4"),
)
def _(iut: Iut) -> None:
    start_session(iut, "initiator", config=FAST)
    answers = _drive(iut, 5.0)
    events = [e for a in answers for e in events_of(a)]
    closed = [e for e in events if e.get("type") == "closed"]
    expect(len(closed) == 1 and len(events) == 1, f"one closed event, got {short(events, 200)}")
    expect_eq((closed[0].get("code"), closed[0].get("by_peer")), ("HANDSHAKE_TIMEOUT", False), "closed event")
    _nothing(iut.ok("timer", now=30.0), "answer to a timer after the end")


@case(
    "ses/announce/2",
    section=STATES,
    title="an initiator refused by IDENTITY_MISMATCH reports one closed event, then nothing",
    requirements=("SES-3.10", "SES-3.1", "SES-5.8"),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut, expected=str(OTHER.peer_id))
    response = hand.response(response_payload())
    answer = iut.ok("receive", data=response, now=0.1)
    expect_eq(out_of(answer), [], "datagrams after the refused RESPONSE")
    _closed_events(answer, "IDENTITY_MISMATCH", False, "the refused RESPONSE")
    _nothing(iut.ok("receive", data=response, now=0.2), "answer to the RESPONSE again")
    _nothing(iut.ok("timer", now=30.0), "answer to a timer after the end")


@case(
    "ses/announce/3",
    section=STATES,
    title="a responder whose handshake times out ends silently: no event at all",
    requirements=("SES-3.11", "SES-8.2", "ERR-1.4"),
)
def _(iut: Iut) -> None:
    start_session(iut, "responder", config=FAST)
    answer = iut.ok("receive", data=Hand(Pattern.XX, initiator=True).init(init_payload()), now=0.0)
    one_packet(answer, PacketType.RESPONSE)
    events = events_of(answer) + [e for a in _drive(iut, 5.0) for e in events_of(a)]
    expect_eq(events, [], "events of a responder whose handshake never completed")
    state = iut.ok("state")
    expect_eq((state.get("state"), state.get("close_code")), ("closed", "HANDSHAKE_TIMEOUT"), "state")


# -- timers (session.md §3, §7) -------------------------------------------------------------------


@case(
    "ses/timer/1",
    section=TIMERS,
    title="an IK responder that never gets CONFIRM times out sending nothing, though it holds keys",
    requirements=("SES-3.9", "SES-7.3", "SES-3.11", "ERR-2.10"),
)
def _(iut: Iut) -> None:
    _ik_responder(iut, config=FAST)
    answers = _drive(iut, 5.0)
    sent = [d for a in answers for d in out_of(a)]
    expect(all(d[:1] == bytes([PacketType.RESPONSE]) for d in sent), f"only RESPONSEs may be resent: {short(sent)}")
    expect_eq(out_of(answers[-1]) if answers else None, [], "datagrams at the handshake deadline")
    expect_eq([e for a in answers for e in events_of(a)], [], "events")
    state = iut.ok("state")
    expect_eq((state.get("state"), state.get("close_code")), ("closed", "HANDSHAKE_TIMEOUT"), "state")


@case(
    "ses/timer/2",
    section=TIMERS,
    title="once established, only the lifetime timer runs: no deadline, retransmission or KEEPALIVE",
    requirements=("SES-3.3", "SES-7.1", "SES-7.6"),
)
def _(iut: Iut) -> None:
    establish(iut, "initiator", config={**FAST, "session_lifetime": 1000.0})
    expect_eq(get_timer(iut), 1000.0, "timer of an established session (its lifetime)")
    for now in (1.0, 3.0, 5.0, 15.0, 100.0, 999.0):
        _nothing(iut.ok("timer", now=now), f"answer to the timer at {now} s")
    expect_eq(session_state(iut), "established", "state at 999 s")


@case(
    "ses/timer/3",
    section=STATES,
    title="an IK responder's lifetime runs from its RESPONSE (keys derived), not from CONFIRM",
    requirements=("SES-3.6", "SES-7.4"),
)
def _(iut: Iut) -> None:
    link = _ik_responder(iut, config={"session_lifetime": 60.0})
    _confirm(iut, link, 10.0)
    expect_eq(get_timer(iut), 60.0, "timer: keys derived at 0 s plus a lifetime of 60 s")
    expect_eq(out_of(iut.ok("timer", now=59.5)), [], "datagrams at 59.5 s")
    closing = link.open(one_packet(iut.ok("timer", now=60.0), PacketType.CLOSE))
    expect_eq(closing.plaintext[:2], bytes([0, ErrorCode.SESSION_EXPIRED]), "CLOSE code at 60 s")


@case(
    "ses/timer/4",
    section=STATES,
    title="an initiator's lifetime runs from the RESPONSE that derived its keys, not from its INIT",
    requirements=("SES-3.6", "SES-7.4"),
)
def _(iut: Iut) -> None:
    init = one_packet_of(start_session(iut, "initiator", config={"session_lifetime": 60.0}, now=0.0))
    hand = Hand(Pattern.XX, initiator=False)
    hand.read(handshake_message(init, PacketType.INIT), "INIT")
    answer = iut.ok("receive", data=hand.response(response_payload()), now=5.0)
    one_event(answer, "handshake_completed")
    finish = one_packet(answer, PacketType.FINISH)
    hand.check_identity(hand.read(handshake_message(finish, PacketType.FINISH), "FINISH"))
    k_i2r, k_r2i = hand.hs.split()
    link = Link(k_r2i, k_i2r, IUT_INDEX, hand.hash)
    expect_eq(get_timer(iut), 65.0, "timer: keys derived at 5 s plus a lifetime of 60 s")
    expect_eq(out_of(iut.ok("timer", now=64.5)), [], "datagrams at 64.5 s")
    closing = link.open(one_packet(iut.ok("timer", now=65.0), PacketType.CLOSE))
    expect_eq(closing.plaintext[:2], bytes([0, ErrorCode.SESSION_EXPIRED]), "CLOSE code at 65 s")


@case(
    "ses/timer/5",
    section=TIMERS,
    title="the channel layer keeps alive with PING in DATA records, never with KEEPALIVE records",
    requirements=("SES-7.8",),
)
def _(iut: Iut) -> str:
    peer = Peer(iut, role="initiator", keepalive_interval=1.0)  # the controlling side keeps alive
    types: list[int] = []
    pings = 0
    for step in range(1, 7):
        reply = peer.timer(0.75 * step)
        expect_open(reply, f"at {peer.now} s")
        types += [peer.link.open(d).ptype for d in out_of(reply.answer)]
        pings += len(reply.frames(ch.Ping))
        if reply.packets:
            peer.ack()
    expect(pings > 0, "no PING in 4.5 s with keepalive_interval 1 s")
    expect(all(t == PacketType.DATA for t in types), f"record types sent: {sorted(set(types))}")
    return f"{pings} PING(s)"


@case(
    "ses/config/1",
    section=CONFIG,
    title="the defaults: lifetime 86400 s, rekey after 120 s, previous key kept 10 s",
    requirements=("SES-6.2",),
)
def _(iut: Iut) -> None:
    link = establish(iut, "initiator")
    expect_eq(get_timer(iut), 86400.0, "timer of an established session with the default lifetime")
    first = link.open(one_packet(iut.ok("send", data=b"a", now=119.0), PacketType.DATA))
    later = link.open(one_packet(iut.ok("send", data=b"b", now=120.0), PacketType.DATA))
    expect_eq((first.epoch, later.epoch), (0, 1), "epochs of records sent at 119 s and 120 s")
    messages = [e.get("data") for e in events_of(iut.ok("receive", data=link.data(b"x", epoch=1), now=130.0))]
    expect_eq(messages, [b"x".hex()], "an epoch-1 record at 130 s")
    late = [e.get("data") for e in events_of(iut.ok("receive", data=link.data(b"y", epoch=0), now=139.5))]
    expect_eq(late, [b"y".hex()], "an epoch-0 record 9.5 s later (within the grace)")
    stale = events_of(iut.ok("receive", data=link.data(b"z", epoch=0), now=140.5))
    expect_eq(stale, [], "events for an epoch-0 record 10.5 s later (after the grace)")


# -- the endpoint (session.md §4.1, §4.3, §7) ------------------------------------------------------


@case(
    "ep/demux/7",
    section=DEMUX,
    title="an empty datagram, and p2pos datagrams too short for an index, are dropped unanswered",
    requirements=("SES-4.1.7", "SES-4.1.11", "ERR-2.2"),
)
def _(iut: Iut) -> None:
    link = _start_session(iut)
    index = link.iut_index.to_bytes(4, "big")
    for datagram in (b"", bytes([PacketType.DATA]), bytes([PacketType.CLOSE]) + index[:3], b"\x05" + index):
        answer = iut.ok("receive", data=datagram, now=0.1, addr="peer")
        _nothing(answer, f"answer to the {len(datagram)}-byte datagram {datagram.hex() or '(empty)'}")
    _still_works(iut, link)


@case(
    "ep/demux/8",
    section=DEMUX,
    title="records and handshake packets for an index no session has, and a refused INIT, create nothing",
    requirements=("SES-4.1.9", "SES-4.1.11", "SES-8.1", "ERR-3.11"),
)
def _(iut: Iut) -> None:
    link = _start_session(iut)
    stranger = link.iut_index ^ 0x00FF00FF
    record = Link(link.send_key, link.recv_key, stranger, b"")
    datagrams = {
        "a DATA record for another index": record.data(b"to nobody"),
        "a CLOSE record for another index": record.seal(PacketType.CLOSE, b"\x00\x00"),
        "a FINISH for another index": encode_finish(stranger, bytes(96)),
        "a RESPONSE for another index": encode_response(REF_INDEX, stranger, bytes(200)),
        "an INIT of 319 bytes": Hand(Pattern.XX, initiator=True, party=OTHER).init(
            init_payload(party=OTHER, size=319), index=REF_INDEX + 1
        ),
    }
    for what, datagram in datagrams.items():
        _nothing(iut.ok("receive", data=datagram, now=0.1, addr="other"), f"answer to {what}")
    _still_works(iut, link)


@case(
    "ep/route/1",
    section=DEMUX,
    title="a session closed by the peer's CLOSE is removed from the endpoint; its records then go nowhere",
    requirements=("SES-4.1.14",),
)
def _(iut: Iut) -> None:
    link = _start_session(iut)
    answer = iut.ok("receive", data=link.seal(PacketType.CLOSE, b"\x00\x00done"), now=0.1, addr="peer")
    expect_eq(out_of(answer), [], "datagrams in answer to a CLOSE")
    _closed_events(answer, "NO_ERROR", True, "the CLOSE")
    expect_eq(iut.ok("state").get("sessions"), 0, "sessions after the CLOSE")
    _nothing(iut.ok("receive", data=link.data(b"late"), now=0.2, addr="peer"), "answer to a record after it")


def _closed_endpoint_session(iut: Iut) -> bytes:
    """An endpoint whose one session (from the INIT returned) completed and was closed by the peer at 1 s."""
    _start_endpoint(iut)
    hand = Hand(Pattern.XX, initiator=True)
    init = hand.init(init_payload())
    response = one_packet(iut.ok("receive", data=init, now=0.0, addr="peer"), PacketType.RESPONSE)
    index = int.from_bytes(response[1:5], "big")
    hand.check_identity(hand.read(handshake_message(response, PacketType.RESPONSE), "RESPONSE"))
    finish = encode_finish(index, hand.write(identity_payload(REF, sas_nonce=REF.sas_nonce)))
    k_i2r, k_r2i = hand.hs.split()
    one_event(iut.ok("receive", data=finish, now=0.5, addr="peer"), "handshake_completed")
    link = Link(k_i2r, k_r2i, index, hand.hash)
    iut.ok("receive", data=link.seal(PacketType.CLOSE, b"\x00\x00"), now=1.0, addr="peer")
    expect_eq(iut.ok("state").get("sessions"), 0, "sessions after the CLOSE")
    return init


@case(
    "ep/route/2",
    section=ROUTE,
    title="an INIT replayed 20 s and 60 s later, past the handshake timeout, still creates nothing",
    requirements=("SES-4.3.1",),
)
def _(iut: Iut) -> None:
    init = _closed_endpoint_session(iut)
    for now in (20.0, 60.0):
        timer = get_timer(iut)
        if timer is not None and timer <= now:
            iut.ok("timer", now=now)
        _nothing(iut.ok("receive", data=init, now=now, addr="elsewhere"), f"answer to the INIT replayed at {now} s")
        expect_eq(iut.ok("state").get("sessions"), 0, f"sessions after the replay at {now} s")


@case(
    "ep/route/3",
    section=TIMERS,
    title="the endpoint's timer covers its replay cache: once it fires, the old INIT is new again",
    requirements=("SES-7.9",),
)
def _(iut: Iut) -> str:
    init = _closed_endpoint_session(iut)
    timer = get_timer(iut)
    expect(timer is not None and timer > 1.0, f"the endpoint's timer with only a replay-cache entry: {timer}")
    assert timer is not None
    _nothing(iut.ok("receive", data=init, now=1.5, addr="peer"), "answer to the INIT replayed at once")
    _nothing(iut.ok("timer", now=timer), f"answer to the timer at {timer} s")
    answer = iut.ok("receive", data=init, now=timer + 1.0, addr="peer")
    one_packet(answer, PacketType.RESPONSE)
    return f"entry expired at {timer} s"


def _still_works(iut: Iut, link: Link) -> None:
    """The endpoint's one session delivers a fresh DATA record."""
    messages = events_of(iut.ok("receive", data=link.data(b"still here"), now=0.3, addr="peer"), "message")
    expect_eq([m.get("data") for m in messages], [b"still here".hex()], "messages of the session afterwards")
    expect_eq(iut.ok("state").get("sessions"), 1, "sessions")


# -- a CLOSE received with each code a peer closes with (errors.md §1, §2) ------------------------

#: Codes a session closes with (errors.md §2): the application's close, the lifetime, a bad SAS nonce.
SESSION_CLOSE_CODES = (ErrorCode.NO_ERROR, ErrorCode.PROTOCOL_VIOLATION, ErrorCode.SESSION_EXPIRED)
#: Codes the channel layer closes a connection with (errors.md §1, channels.md §11).
CONNECTION_CLOSE_CODES = (
    ErrorCode.MALFORMED_MESSAGE,
    ErrorCode.FINAL_SIZE_ERROR,
    ErrorCode.IDLE_TIMEOUT,
    ErrorCode.CHANNEL_LIMIT,
    ErrorCode.CHANNEL_STATE_ERROR,
)
_CLOSE_REQUIREMENTS = ("ERR-1.27", "ERR-2.8", "ERR-2.12", "ERR-3.2", "RCD-8.3")


def _session_close_case(code: ErrorCode) -> None:
    def run(iut: Iut) -> None:
        link = establish(iut, "initiator")
        body = int(code).to_bytes(2, "big") + f"closing with {code.name}".encode()
        answer = iut.ok("receive", data=link.seal(PacketType.CLOSE, body), now=0.1)
        expect_eq(out_of(answer), [], "datagrams in answer to a CLOSE")
        _closed_events(answer, code.name, True, f"a CLOSE with {code.name}")
        state = iut.ok("state")
        expect_eq((state.get("state"), state.get("close_code")), ("closed", code.name), "state and close code")
        _nothing(iut.ok("receive", data=link.data(b"late"), now=0.2), "answer to a record after the CLOSE")

    case(
        f"err/close/{SESSION_CLOSE_CODES.index(code) + 1}",
        section=FATAL,
        title=f"a CLOSE with {code.name} ends the session with it, unanswered",
        requirements=_CLOSE_REQUIREMENTS,
    )(run)


def _connection_close_case(number: int, code: ErrorCode) -> None:
    def run(iut: Iut) -> None:
        peer = Peer(iut)
        body = int(code).to_bytes(2, "big") + b"peer gives up"
        answer = iut.ok("conn_receive", data=peer.link.seal(PacketType.CLOSE, body), now=0.1)
        expect_eq(out_of(answer), [], "datagrams in answer to a CLOSE")
        closed = events_of(answer, "connection_closed")
        expect(len(closed) == 1, f"one connection_closed event, got {short(events_of(answer), 200)}")
        expect_eq((closed[0].get("code"), closed[0].get("by_peer")), (code.name, True), "connection_closed")

    case(
        f"err/close/{number}",
        section=FATAL,
        title=f"a CLOSE with {code.name} ends the connection with it, unanswered",
        requirements=_CLOSE_REQUIREMENTS,
    )(run)


for _code in SESSION_CLOSE_CODES:
    _session_close_case(_code)
for _number, _code in enumerate(CONNECTION_CLOSE_CODES, start=len(SESSION_CLOSE_CODES) + 1):
    _connection_close_case(_number, _code)


# -- codes in REFUSE, RESET and STOP_SENDING (errors.md §1, §3) ------------------------------------


@case(
    "err/code/1",
    section=ON_THE_WIRE,
    title="RESET codes 0x19 and 0xfe read as PROTOCOL_VIOLATION, 0xff as INTERNAL_ERROR; the channel only",
    requirements=(
        "CH-3.4.1",
        "CH-3.4.3",
        "ERR-1.28",
        "ERR-3.4",
        "ERR-3.8",
    ),
)
def _(iut: Iut) -> str:
    peer = Peer(iut)
    seen = []
    for value, name in ((0x19, "PROTOCOL_VIOLATION"), (0xFE, "PROTOCOL_VIOLATION"), (0xFF, "INTERNAL_ERROR")):
        channel_id = peer.open("sink")
        peer.send(ch.Stream(channel_id=channel_id, offset=0, data=b"abc"), at=peer.now + 0.1)
        reply = peer.send(ch.Reset(channel_id=channel_id, code=value, final_size=3), at=peer.now + 0.1)
        expect_open(reply, f"a RESET with code {value:#x}")
        resets = reply.events("channel_reset")
        expect(len(resets) == 1, f"one channel_reset event for code {value:#x}, got {short(reply.answer, 200)}")
        got = (resets[0].get("code"), resets[0].get("application_code"))
        expect_eq(got, (name, None), f"channel_reset (code, application_code) for a RESET with {value:#x}")
        seen.append(f"{value:#x}={name}")
    channel_id = peer.open_echo()
    reply = peer.send(ch.StopSending(channel_id=channel_id, code=0x19), at=peer.now + 0.1)
    answers = [f for f in reply.frames(ch.Reset) if f.channel_id == channel_id]
    expect(len(answers) == 1, f"a RESET answering STOP_SENDING 0x19, got {short(reply.packets, 200)}")
    expect_eq(answers[0].code, int(ErrorCode.PROTOCOL_VIOLATION), "code of the RESET answering STOP_SENDING 0x19")
    return ", ".join(seen)


@case(
    "err/code/2",
    section=CODES,
    title="a REFUSE with CHANNEL_REFUSED refuses that channel only",
    requirements=(
        "CH-2.2.5",
        "CH-3.4.3",
        "ERR-1.26",
        "ERR-3.4",
    ),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    channel_id = int(peer.call("conn_open", service="chat", kind="stream").answer["channel_id"])
    reply = peer.send(ch.Refuse(channel_id=channel_id, code=int(ErrorCode.CHANNEL_REFUSED), reason="no"), at=0.1)
    refused = reply.events("channel_refused")
    expect(len(refused) == 1, f"one channel_refused event, got {short(reply.answer.get('events'), 200)}")
    expect_eq((refused[0].get("channel_id"), refused[0].get("code")), (channel_id, "CHANNEL_REFUSED"), "refusal")
    expect_open(reply, "a REFUSE")
    peer.open_echo()  # the connection still works


@case(
    "err/code/3",
    section=ON_THE_WIRE,
    title="the IUT refuses to reset with a reserved code (0x19, 0xfe) or one above 2^62-1; nothing is sent",
    requirements=("ERR-3.9", "ERR-4.2"),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    channel_id = peer.open_echo()
    for value in (0x19, 0xFE, 2**62):
        answer = iut.call("conn_reset", channel_id=channel_id, code=value, now=peer.now)
        expect(answer.get("ok") is False, f"conn_reset with code {value:#x} must be refused, got {short(answer, 200)}")
    reply = peer.call("conn_reset", channel_id=channel_id, code=0x100)
    resets = [f for f in reply.frames(ch.Reset) if f.channel_id == channel_id]
    expect(len(resets) == 1 and resets[0].code == 0x100, f"a RESET with 0x100 afterwards, got {short(reply.packets)}")


# -- roaming (session.md §4.2): where the endpoint sends each session's datagrams -------------------


def _to(answer: dict[str, Any]) -> list[str]:
    """The destination of each datagram of an endpoint answer (``to``, spec/conformance.md §3.3)."""
    to = answer.get("to")
    if to is None:
        raise Unsupported("the IUT's endpoint answers do not say where each datagram goes (`to`)")
    expect(isinstance(to, list) and len(to) == len(out_of(answer)), f"`to` must match `out`: {short(answer, 200)}")
    return [str(addr) for addr in to]


def _roaming_session(iut: Iut, config: dict[str, Any]) -> Link:
    """An endpoint with ``config`` and one session from "peer", established at 0 s (IUT as XX responder)."""
    iut.ok("endpoint", seed=IUT.seed, static=IUT.static, config=config)
    hand = Hand(Pattern.XX, initiator=True)
    answer = iut.ok("receive", data=hand.init(init_payload()), now=0.0, addr="peer")
    response = one_packet(answer, PacketType.RESPONSE)
    expect_eq(_to(answer), ["peer"], "destination of the RESPONSE")
    index = int.from_bytes(response[1:5], "big")
    hand.check_identity(hand.read(handshake_message(response, PacketType.RESPONSE), "RESPONSE"))
    finish = encode_finish(index, hand.write(identity_payload(REF, sas_nonce=REF.sas_nonce)))
    k_i2r, k_r2i = hand.hs.split()
    one_event(iut.ok("receive", data=finish, now=0.0, addr="peer"), "handshake_completed")
    return Link(k_i2r, k_r2i, index, hand.hash)


def _close_goes_to(iut: Iut, link: Link, now: float) -> list[str]:
    """Let the session's lifetime end at ``now``; the destinations of the CLOSE it sends."""
    answer = iut.ok("timer", now=now)
    closing = link.open(one_packet(answer, PacketType.CLOSE))
    expect_eq(closing.plaintext[:2], bytes([0, ErrorCode.SESSION_EXPIRED]), "CLOSE code at the end of the lifetime")
    return _to(answer)


@case(
    "ep/route/4",
    section="session.md §4.2",
    title="an authenticated record from a new address moves the session: its next datagram goes there",
    requirements=(
        "SES-4.2.1",
        "CONF-3.3.8",
    ),
)
def _(iut: Iut) -> None:
    link = _roaming_session(iut, {"session_lifetime": 10.0})
    messages = events_of(iut.ok("receive", data=link.data(b"moved"), now=1.0, addr="roamed"), "message")
    expect_eq([m.get("data") for m in messages], [b"moved".hex()], "the record from the new address")
    expect_eq(_close_goes_to(iut, link, 10.0), ["roamed"], "destination of the session's CLOSE")


@case(
    "ep/route/5",
    section="session.md §4.2",
    title="a forged or replayed record from another address does not move the session",
    requirements=(
        "SES-4.2.3",
        "SES-8.1",
        "CONF-3.3.8",
    ),
)
def _(iut: Iut) -> None:
    link = _roaming_session(iut, {"session_lifetime": 10.0})
    genuine = link.data(b"genuine")
    one_event(iut.ok("receive", data=genuine, now=0.5, addr="peer"), "message")
    forged = link.data(b"forged")
    for what, datagram in (("a forged record", forged[:-1] + bytes([forged[-1] ^ 1])), ("a replay", genuine)):
        _nothing(iut.ok("receive", data=datagram, now=1.0, addr="attacker"), f"answer to {what} from another address")
    expect_eq(_close_goes_to(iut, link, 10.0), ["peer"], "destination of the session's CLOSE")


@case(
    "ep/route/6",
    section="session.md §4.2",
    title="a duplicate INIT from another address is answered at the original INIT's address",
    requirements=(
        "SES-4.2.2",
        "CONF-3.3.8",
    ),
)
def _(iut: Iut) -> None:
    _start_endpoint(iut)
    init = Hand(Pattern.XX, initiator=True).init(init_payload())
    first = iut.ok("receive", data=init, now=0.0, addr="peer")
    response = one_packet(first, PacketType.RESPONSE)
    expect_eq(_to(first), ["peer"], "destination of the RESPONSE")
    again = iut.ok("receive", data=init, now=0.5, addr="elsewhere")
    expect_eq(one_packet(again, PacketType.RESPONSE), response, "the RESPONSE to the duplicate INIT")
    expect_eq(_to(again), ["peer"], "destination of the RESPONSE to the duplicate INIT")
    resent = iut.ok("timer", now=get_timer(iut) or 1.0)
    expect_eq(_to(resent), ["peer"] * len(out_of(resent)), "destination of the retransmitted RESPONSE")


@case(
    "ep/route/7",
    section="session.md §4.2",
    title="IK: a record the responder drops before CONFIRM still moves the session (it authenticated)",
    requirements=(
        "SES-4.2.1",
        "ERR-2.4",
        "CONF-3.3.8",
    ),
)
def _(iut: Iut) -> None:
    iut.ok("endpoint", seed=IUT.seed, static=IUT.static, config=FAST)
    hand = Hand(Pattern.IK, initiator=True, rs=IUT.static_public)
    answer = iut.ok("receive", data=hand.init(init_payload(Pattern.IK)), now=0.0, addr="peer")
    response = one_packet(answer, PacketType.RESPONSE)
    hand.check_identity(hand.read(handshake_message(response, PacketType.RESPONSE), "RESPONSE"))
    k_i2r, k_r2i = hand.hs.split()
    link = Link(k_i2r, k_r2i, int.from_bytes(response[1:5], "big"), hand.hash)
    _nothing(iut.ok("receive", data=link.data(b"early"), now=0.5, addr="roamed"), "answer to a record before CONFIRM")
    resent = iut.ok("timer", now=1.0)
    expect_eq(out_of(resent), [response], "the RESPONSE retransmitted at 1 s")
    expect_eq(_to(resent), ["roamed"], "destination of the retransmitted RESPONSE")


# -- many sessions in one endpoint (session.md §4.1, §4.3, §5) ---------------------------------------


def _init_from(index: int) -> tuple[Hand, bytes]:
    """A reference initiator's ``Hand`` and its XX INIT under ``index`` (one INIT per index)."""
    hand = Hand(Pattern.XX, initiator=True)
    return hand, hand.init(init_payload(index=index), index=index)


@case(
    "ep/route/8",
    section=DEMUX,
    title="beyond max_sessions an INIT is dropped, and not remembered: it is answered once there is room",
    requirements=(
        "SES-4.1.10",
        "CONF-3.3.10",
    ),
)
def _(iut: Iut) -> None:
    answer = iut.ok("endpoint", seed=IUT.seed, static=IUT.static, config=FAST, max_sessions=2)
    if answer.get("max_sessions") != 2:
        raise Unsupported("the IUT's endpoint does not take max_sessions (spec/conformance.md §3.3)")
    inits = [_init_from(REF_INDEX + i)[1] for i in range(3)]
    for i, init in enumerate(inits[:2]):
        one_packet(iut.ok("receive", data=init, now=0.0, addr=f"peer{i}"), PacketType.RESPONSE)
    _nothing(iut.ok("receive", data=inits[2], now=0.0, addr="peer2"), "answer to a third INIT with max_sessions 2")
    expect_eq(iut.ok("state").get("sessions"), 2, "sessions")
    _drive(iut, FAST["handshake_timeout"])  # both handshakes time out
    expect_eq(iut.ok("state").get("sessions"), 0, "sessions after the handshake timeout")
    one_packet(iut.ok("receive", data=inits[2], now=6.0, addr="peer2"), PacketType.RESPONSE)


@case(
    "ep/route/9",
    section=DEMUX,
    title="two sessions in one endpoint: each event carries its own session's index",
    requirements=(
        "SES-4.1.13",
        "SES-5.1",
        "CONF-3.3.9",
    ),
)
def _(iut: Iut) -> None:
    _start_endpoint(iut)
    links = []
    for i, addr in enumerate(("a", "b")):
        hand, init = _init_from(REF_INDEX + i)
        response = one_packet(iut.ok("receive", data=init, now=0.0, addr=addr), PacketType.RESPONSE)
        index = int.from_bytes(response[1:5], "big")
        hand.check_identity(hand.read(handshake_message(response, PacketType.RESPONSE), "RESPONSE"))
        finish = encode_finish(index, hand.write(identity_payload(REF, sas_nonce=REF.sas_nonce)))
        k_i2r, k_r2i = hand.hs.split()
        links.append(Link(k_i2r, k_r2i, index, hand.hash))
        event = one_event(iut.ok("receive", data=finish, now=0.1, addr=addr), "handshake_completed")
        if "session_id" not in event:
            raise Unsupported("the IUT's endpoint events carry no session_id (spec/conformance.md §3.3)")
        expect_eq(event.get("session_id"), index, f"session_id of the handshake_completed of session {addr}")
    expect(links[0].iut_index != links[1].iut_index, "the two sessions have the same index")
    for link, addr in ((links[1], "b"), (links[0], "a"), (links[1], "b")):
        message = one_event(iut.ok("receive", data=link.data(addr.encode()), now=0.2, addr=addr), "message")
        expect_eq((message.get("session_id"), message.get("data")), (link.iut_index, addr.encode().hex()), "message")
    closed = one_event(
        iut.ok("receive", data=links[0].seal(PacketType.CLOSE, b"\x00\x00"), now=0.3, addr="a"), "closed"
    )
    expect_eq(closed.get("session_id"), links[0].iut_index, "session_id of the closed event")


@case(
    "err/code/4",
    section=ON_THE_WIRE,
    title="the IUT's RESET and REFUSE, lost, are sent again until acknowledged, and close nothing",
    requirements=("ERR-3.3", "ERR-3.4"),
)
def _(iut: Iut) -> str:
    peer = Peer(iut)
    echo = peer.open_echo()
    refused = peer.open("no-such-service")
    lost = {
        p.pn for p in peer.last.packets if any(f.channel_id == refused for f in p.frames if isinstance(f, ch.Refuse))
    }
    expect(bool(lost), f"a REFUSE for channel {refused}: {short(peer.last.packets, 200)}")
    reply = peer.call("conn_reset", channel_id=echo, code="APPLICATION_CLOSE")
    lost |= {p.pn for p in reply.packets if any(f.channel_id == echo for f in p.frames if isinstance(f, ch.Reset))}
    expect(len(lost) == 2, f"a RESET for channel {echo}: {short(reply.packets, 200)}")
    resets = refusals = 0
    for _ in range(40):  # 10 s in which every packet but the two first carrying them is acknowledged
        replies = [peer.timer(peer.now + 0.25)]
        arrived = {p.pn for p in peer.received} - lost
        if arrived:
            replies.append(peer.send(ack_of(arrived)))
        for reply in replies:
            expect_open(reply, f"at {peer.now} s")
            resets += sum(1 for f in reply.frames(ch.Reset) if f.channel_id == echo)
            refusals += sum(1 for f in reply.frames(ch.Refuse) if f.channel_id == refused)
        if resets and refusals:
            return f"sent again by {peer.now} s"
    raise CaseFailed(f"in 10 s the IUT sent the lost RESET again {resets} and the lost REFUSE {refusals} time(s)")
