"""Endpoint cases: the INIT replay cache (spec/handshake.md §8.3) and demultiplexing (spec/session.md §4.1).

These use the control protocol's optional ``endpoint`` mode (spec/conformance.md
§3.3): the IUT runs its endpoint, which creates a responder session for each
new INIT and picks the session indices itself.  An IUT without an endpoint
exits 127 for these cases.

The ``ep/demux/`` cases put other protocols' datagrams on the IUT's socket,
built here as their RFCs lay them out (STUN, TURN ChannelData, DTLS, QUIC, ...):
each must come back whole in a ``foreign_datagram`` event, under the protocol
its first byte names in the table of RFC 7983 and RFC 9443 (written out below,
not taken from the core), and leave every session as it was.  A first byte in
p2pos's own range 4-15 that is no packet type is dropped, not passed on.
"""

from __future__ import annotations

import struct
from typing import Any

from p2pos.proto.handshake.noise import Pattern
from p2pos.proto.session.wire import PacketType, encode_finish

from .checks import expect, expect_eq, short, unhex
from .iut import Iut
from .reference import (
    IUT,
    REF_INDEX,
    Hand,
    Link,
    events_of,
    finish_payload,
    handshake_message,
    init_payload,
    one_event,
    one_packet,
    out_of,
)
from .registry import case

REPLAY_CACHE = "handshake.md §8.3"
DEMUX = "session.md §4.1"


def _start_endpoint(iut: Iut) -> None:
    iut.ok("endpoint", seed=IUT.seed, static=IUT.static, config={})


def _complete(iut: Iut, hand: Hand, response: bytes, now: float) -> dict[str, Any]:
    """Read the endpoint's RESPONSE with ``hand`` and answer it with a FINISH; returns the IUT's answer."""
    expect_eq(int.from_bytes(response[5:9], "big"), REF_INDEX, "receiver index of the RESPONSE")
    payload = hand.check_identity(hand.read(handshake_message(response, PacketType.RESPONSE), "RESPONSE"))
    index = int.from_bytes(response[1:5], "big")
    expect_eq(payload.session_index, index, "session index in the RESPONSE payload")
    return iut.ok("receive", data=encode_finish(index, hand.write(finish_payload())), now=now, addr="peer")


def _sessions(iut: Iut) -> object:
    return iut.ok("state").get("sessions")


@case(
    "hs/replay/1",
    section=REPLAY_CACHE,
    title="a forged variant of an INIT, sent first, does not block the real one",
    requirements=(
        "HS-8.3.3",
        "SES-4.1.8",
        "ERR-2.1",
        "CONF-3.3.1",
    ),
)
def _(iut: Iut) -> None:
    _start_endpoint(iut)
    hand = Hand(Pattern.XX, initiator=True)
    genuine = hand.init(init_payload())
    # The same ephemeral key under another index (header and payload): a valid INIT of its own.
    other = REF_INDEX ^ 0x5A5A
    forged = Hand(Pattern.XX, initiator=True).init(init_payload(index=other), index=other)
    expect(forged[6:38] == genuine[6:38] and forged != genuine, "internal: the variant shares the ephemeral only")
    answer = iut.ok("receive", data=forged, now=0.0, addr="attacker")
    expect_eq(int.from_bytes(one_packet(answer, PacketType.RESPONSE)[5:9], "big"), other, "the variant's RESPONSE")
    response = one_packet(iut.ok("receive", data=genuine, now=0.1, addr="peer"), PacketType.RESPONSE)
    one_event(_complete(iut, hand, response, 0.2), "handshake_completed")


@case(
    "hs/replay/2",
    section=REPLAY_CACHE,
    title="an INIT replayed after its handshake completed creates nothing",
    requirements=(
        "HS-8.3.1",
        "HS-8.3.2",
        "SES-4.1.8",
        "ERR-1.14",
        "CONF-3.3.3",
    ),
)
def _(iut: Iut) -> str:
    _start_endpoint(iut)
    hand = Hand(Pattern.XX, initiator=True)
    init = hand.init(init_payload())
    response = one_packet(iut.ok("receive", data=init, now=0.0, addr="peer"), PacketType.RESPONSE)
    one_event(_complete(iut, hand, response, 0.1), "handshake_completed")
    before = _sessions(iut)
    for now, addr in ((1.0, "peer"), (2.0, "elsewhere")):
        answer = iut.ok("receive", data=init, now=now, addr=addr)
        expect_eq((out_of(answer), events_of(answer)), ([], []), f"answer to the INIT replayed at t={now} from {addr}")
    expect_eq(_sessions(iut), before, "sessions after the replays")
    return f"{before} session(s) before and after"


# -- demultiplexing (spec/session.md §4.1) ------------------------------------------------

#: RFC 7983 as updated by RFC 9443: (first byte, last byte, protocol name of spec/session.md §4.1).
_RANGES = (
    (0, 3, "stun"),
    (4, 15, "p2pos"),
    (16, 19, "zrtp"),
    (20, 63, "dtls"),
    (64, 79, "turn-channel"),
    (80, 127, "quic"),
    (128, 191, "rtp"),
    (192, 255, "quic"),
)
_MAGIC_COOKIE = 0x2112A442
_PEER = "peer"


def _protocol(first_byte: int) -> str:
    return next(name for low, high, name in _RANGES if low <= first_byte <= high)


def _stun(message_type: int, attributes: bytes = b"") -> bytes:
    """A STUN message (RFC 8489 §5): 20-byte header with the magic cookie, then the attributes."""
    header = struct.pack(">HHI", message_type, len(attributes), _MAGIC_COOKIE)
    return header + bytes.fromhex("b7e7a701bc34d686fa87dfae") + attributes


def _xor_mapped_address(host: tuple[int, int, int, int], port: int) -> bytes:
    """An IPv4 XOR-MAPPED-ADDRESS attribute (RFC 8489 §14.2)."""
    cookie = _MAGIC_COOKIE.to_bytes(4, "big")
    address = bytes(a ^ b for a, b in zip(host, cookie, strict=True))
    value = bytes([0, 0x01]) + (port ^ (_MAGIC_COOKIE >> 16)).to_bytes(2, "big") + address
    return struct.pack(">HH", 0x0020, len(value)) + value


#: A Binding request (first byte 0x00) and its success response (0x01, the first draft's INIT type).
BINDING_REQUEST = _stun(0x0001, struct.pack(">HH", 0x8022, 4) + b"ice!")  # with a SOFTWARE attribute
BINDING_SUCCESS = _stun(0x0101, _xor_mapped_address((198, 51, 100, 7), 50000))


def _channel_data(payload: bytes, channel: int = 0x4001) -> bytes:
    """A TURN ChannelData message (RFC 8656 §12.4): channel number, length, payload padded to 4 bytes."""
    return struct.pack(">HH", channel, len(payload)) + payload + bytes(-len(payload) % 4)


def _start_session(iut: Iut) -> Link:
    """An endpoint with one established session (the IUT as XX responder); the reference's keys."""
    _start_endpoint(iut)
    hand = Hand(Pattern.XX, initiator=True)
    response = one_packet(iut.ok("receive", data=hand.init(init_payload()), now=0.0, addr=_PEER), PacketType.RESPONSE)
    one_event(_complete(iut, hand, response, 0.0), "handshake_completed")
    k_i2r, k_r2i = hand.hs.split()
    return Link(k_i2r, k_r2i, int.from_bytes(response[1:5], "big"), hand.hash)


def _passed_on(iut: Iut, datagram: bytes, what: str, *, addr: str = _PEER, now: float = 0.1) -> None:
    """Feed ``datagram``; the IUT must pass it on whole under its protocol, and do nothing else."""
    answer = iut.ok("receive", data=datagram, now=now, addr=addr)
    expect_eq(out_of(answer), [], f"datagrams sent in answer to {what}")
    events = events_of(answer)
    expect(
        len(events) == 1 and events[0].get("type") == "foreign_datagram",
        f"{what} must be passed on as one foreign_datagram event, got {short(events)}",
    )
    event = events[0]
    expect_eq(event.get("protocol"), _protocol(datagram[0]), f"protocol of {what} (first byte {datagram[0]})")
    expect_eq(unhex(event.get("data"), "foreign_datagram data"), datagram, f"bytes of {what} passed on")
    expect_eq(event.get("addr"), addr, f"source address of {what}")


def _still_works(iut: Iut, link: Link, now: float = 0.2) -> None:
    """The session delivers a fresh DATA record, once."""
    answer = iut.ok("receive", data=link.data(b"still here"), now=now, addr=_PEER)
    messages = events_of(answer, "message")
    expect(
        len(messages) == 1 and unhex(messages[0].get("data"), "message data") == b"still here",
        f"the session after the other protocols' datagrams: expected the message, got {short(events_of(answer))}",
    )
    expect_eq(_sessions(iut), 1, "sessions")


@case(
    "ep/demux/1",
    section=DEMUX,
    title="STUN Binding request and response are passed on; no session, no answer",
    requirements=(
        "GEN-3.3",
        "SES-4.1.2",
        "SES-4.1.3",
        "SES-5.5",
        "ERR-2.6",
        "CONF-2.2.6",
        "CONF-3.3.1",
        "CONF-3.3.3",
        "CONF-3.3.5",
    ),
)
def _(iut: Iut) -> None:
    _start_endpoint(iut)
    _passed_on(iut, BINDING_REQUEST, "a STUN Binding request")
    _passed_on(iut, BINDING_SUCCESS, "a STUN Binding success response")
    _passed_on(iut, BINDING_SUCCESS.ljust(400, b"\x00"), "a STUN response padded to an INIT's size", addr="other")
    expect_eq(_sessions(iut), 0, "sessions after STUN only")
    # A handshake interleaved with STUN (an ICE agent's checks share the socket) still completes.
    hand = Hand(Pattern.XX, initiator=True)
    response = one_packet(iut.ok("receive", data=hand.init(init_payload()), now=0.2, addr=_PEER), PacketType.RESPONSE)
    _passed_on(iut, BINDING_REQUEST, "a STUN Binding request during the handshake", now=0.3)
    one_event(_complete(iut, hand, response, 0.4), "handshake_completed")


@case(
    "ep/demux/2",
    section=DEMUX,
    title="STUN datagrams from the peer's address leave its session as it was",
    requirements=(
        "SES-4.1.2",
        "SES-4.1.3",
        "ERR-2.6",
    ),
)
def _(iut: Iut) -> None:
    link = _start_session(iut)
    _passed_on(iut, BINDING_REQUEST, "a STUN Binding request")
    _passed_on(iut, BINDING_SUCCESS, "a STUN Binding success response")
    error = _stun(0x0111, struct.pack(">HH", 0x0009, 8) + bytes([0, 0, 4, 0]) + b"Bad!")
    _passed_on(iut, error, "a STUN Binding error response")
    _still_works(iut, link)


@case(
    "ep/demux/3",
    section=DEMUX,
    title="TURN ChannelData is passed on whole, even when it carries a p2pos record",
    requirements=(
        "SES-4.1.1",
        "SES-4.1.2",
        "SES-4.1.6",
        "SES-8.3",
        "ERR-2.6",
        "CONF-3.3.5",
    ),
)
def _(iut: Iut) -> None:
    link = _start_session(iut)
    _passed_on(iut, _channel_data(b"relayed bytes"), "TURN ChannelData on channel 0x4001")
    _passed_on(iut, _channel_data(b"x", channel=0x4FFF), "TURN ChannelData on channel 0x4fff")
    record = link.data(b"relayed")
    _passed_on(iut, _channel_data(record), "TURN ChannelData carrying a DATA record")
    # Unwrapped by the TURN client and given back, the record is new to the session.
    messages = events_of(iut.ok("receive", data=record, now=0.2, addr="relay"), "message")
    expect_eq([unhex(m.get("data"), "message data") for m in messages], [b"relayed"], "the unwrapped record")


@case(
    "ep/demux/4",
    section=DEMUX,
    title="DTLS, QUIC, ZRTP and RTP datagrams are passed on, each under its protocol",
    requirements=(
        "SES-4.1.2",
        "ERR-2.6",
        "CONF-3.3.5",
    ),
)
def _(iut: Iut) -> None:
    link = _start_session(iut)
    client_hello = bytes([22, 0xFE, 0xFD, 0, 0]) + bytes(6) + struct.pack(">H", 12) + bytes([1]) + bytes(11)
    samples = {
        "a DTLS 1.2 ClientHello record": client_hello,
        "a DTLS 1.3 unified header": bytes([0x2F, 0x12, 0x34]) + bytes(20),
        "a QUIC Initial (long header)": bytes([0xC3]) + (1).to_bytes(4, "big") + bytes([8]) + bytes(8) + bytes(40),
        "a QUIC short header packet": bytes([0x5B]) + bytes(8) + bytes(24),
        "an RTP packet": bytes([0x80, 0x60]) + bytes(10) + b"payload",
        "a ZRTP packet": bytes([0x10, 0x00, 0x00, 0x01]) + b"ZRTP" + bytes(8),
    }
    for what, datagram in samples.items():
        _passed_on(iut, datagram, what)
    _still_works(iut, link)


@case(
    "ep/demux/5",
    section=DEMUX,
    title="a first byte in 4-15 that is no packet type is dropped, not passed on",
    requirements=(
        "GEN-3.2",
        "RCD-2.6",
        "SES-4.1.5",
        "ERR-2.7",
        "CONF-3.3.6",
    ),
)
def _(iut: Iut) -> str:
    link = _start_session(iut)
    assigned = {int(t) for t in PacketType}
    unassigned = [b for b in range(4, 16) if b not in assigned]
    for first in unassigned:
        # Shaped as a record to the session, sealed with its key: it would authenticate were the type known.
        datagram = link.seal(first, b"from a later version")
        answer = iut.ok("receive", data=datagram, now=0.1, addr=_PEER)
        expect_eq((out_of(answer), events_of(answer)), ([], []), f"answer to a datagram of type 0x{first:02x}")
    _still_works(iut, link)
    return "types " + ", ".join(f"0x{b:02x}" for b in unassigned) + " dropped"


@case(
    "ep/demux/6",
    section=DEMUX,
    title="every first byte outside 4-15 is passed on under its RFC 7983/9443 protocol",
    requirements=(
        "GEN-3.3",
        "SES-4.1.1",
        "SES-4.1.2",
        "SES-4.1.3",
        "SES-5.5",
        "SES-8.3",
        "ERR-2.6",
        "CONF-3.3.5",
    ),
)
def _(iut: Iut) -> str:
    link = _start_session(iut)
    foreign = [b for b in range(256) if _protocol(b) != "p2pos"]
    for first in foreign:
        # The rest looks like a record to the session: only the first byte says it is not one.
        datagram = bytes([first]) + link.iut_index.to_bytes(4, "big") + bytes(40)
        _passed_on(iut, datagram, f"a datagram starting with 0x{first:02x}")
    _still_works(iut, link)
    return f"{len(foreign)} first bytes"
