"""Cases for bugs a second implementation had and the suite missed (issue 10).

Each case pins one rule that an implementation written from the spec got wrong
while every earlier case still passed: the wrong variant behaves exactly like the
right one unless the runner provokes the difference on purpose (several versions
on both sides, a window smaller than what the application wrote, a signature with
only one small-order component...).  The adapter's ``P2POS_IMPL_BUG`` hooks
(``conformance/impl.py``) reproduce each bug, and tests/conformance prove that the
case then fails.
"""

from __future__ import annotations

import hashlib

import nacl.bindings

from p2pos.proto.channels import frames as ch
from p2pos.proto.errors import ErrorCode
from p2pos.proto.handshake.noise import Pattern
from p2pos.proto.identity.identity import signed_message
from p2pos.proto.session.wire import PacketType, encode_finish

from .cases_channels import Peer, ack_of, expect_close, expect_open, payload
from .cases_handshake_errors import LOW_ORDER, _expect_closed, _iut_initiator, _respond
from .cases_record import _deliver
from .checks import expect, expect_eq, short
from .iut import Iut
from .reference import (
    IUT,
    IUT_INDEX,
    REF,
    Hand,
    decode_payload,
    establish,
    finish_payload,
    handshake_message,
    identity_payload,
    init_payload,
    one_event,
    one_packet,
    one_packet_of,
    response_payload,
    session_state,
    start_session,
)
from .registry import case

VERIFY, REPLAY, VERSIONS, FAILURES, WEAK = (
    "identity.md §3.2",
    "record.md §5",
    "handshake.md §5.3",
    "handshake.md §8.4",
    "handshake.md §2.2",
)
KINDS, FINAL, RESET, ACK = "channels.md §2.5", "flow.md §1", "flow.md §3.3", "recovery.md §3.2"

# -- signatures (identity.md §3.2) -----------------------------------------------------------

#: The order of the Ed25519 base point, and the neutral element's encoding (a point of small order).
_L = 2**252 + 27742317777372353535851937790883648493
_NEUTRAL = b"\x01" + bytes(31)
_DOMAIN, _MESSAGE = b"p2pos/test", b"small order"


def _challenge(r: bytes, public_key: bytes, message: bytes) -> int:
    """Ed25519's k = SHA-512(R || A || M) mod L, over the domain-separated message (identity.md §3.1)."""
    return int.from_bytes(hashlib.sha512(r + public_key + signed_message(_DOMAIN, message)).digest(), "little") % _L


def _secret_scalar(seed: bytes) -> int:
    """The clamped Ed25519 secret scalar of ``seed`` (RFC 8032 §5.1.5)."""
    h = bytearray(hashlib.sha512(seed).digest()[:32])
    h[0] &= 248
    h[31] &= 127
    h[31] |= 64
    return int.from_bytes(h, "little")


def small_order_r_signature() -> bytes:
    """A signature by REF's real key whose R is the neutral element: S = k·a makes [S]B = R + [k]A hold."""
    k = _challenge(_NEUTRAL, REF.peer_id.public_key, _MESSAGE)
    s = k * _secret_scalar(REF.seed) % _L
    return _NEUTRAL + s.to_bytes(32, "little")


def small_order_key_signature() -> bytes:
    """A signature under the neutral key whose R is an ordinary point: [k]A vanishes, so S = r, R = [r]B."""
    r = int.from_bytes(hashlib.sha512(b"p2pos-conform small-order key").digest(), "little") % _L
    big_r = nacl.bindings.crypto_scalarmult_ed25519_base_noclamp(r.to_bytes(32, "little"))
    return big_r + r.to_bytes(32, "little")


@case(
    "id/sig/6",
    section=VERIFY,
    title="a signature whose R alone has small order is refused (the key is sound)",
    requirements=("ID-3.2.5",),
)
def _(iut: Iut) -> None:
    answer = iut.ok(
        "verify",
        public_key=REF.peer_id.public_key,
        domain=_DOMAIN,
        message=_MESSAGE,
        signature=small_order_r_signature(),
    )
    expect_eq(answer.get("valid"), False, "a signature with R = 01 00..00 that satisfies [S]B = R + [k]A")
    sig = REF.identity.sign(_DOMAIN, _MESSAGE)
    answer = iut.ok("verify", public_key=REF.peer_id.public_key, domain=_DOMAIN, message=_MESSAGE, signature=sig)
    expect_eq(answer.get("valid"), True, "REF's own signature of the same message")


@case(
    "id/sig/7",
    section=VERIFY,
    title="a small-order key is refused though R is an ordinary point",
    requirements=("ID-3.2.4",),
)
def _(iut: Iut) -> None:
    answer = iut.ok(
        "verify", public_key=_NEUTRAL, domain=_DOMAIN, message=_MESSAGE, signature=small_order_key_signature()
    )
    expect_eq(answer.get("valid"), False, "a forgery under the key 01 00..00 with R = [r]B, S = r")


# -- replay window (record.md §5) ------------------------------------------------------------


@case(
    "rec/replay/5",
    section=REPLAY,
    title="a record exactly 8128 below the highest is too old; 8127 below is fresh",
    requirements=("RCD-5.1",),
)
def _(iut: Iut) -> None:
    link = establish(iut, "initiator")
    expect_eq(_deliver(iut, link.data(b"top", counter=10_000)), [b"top"], "counter 10000")
    expect_eq(_deliver(iut, link.data(b"edge", counter=1_872)), [], "counter 1872 (10000 - 8128: too old)")
    expect_eq(_deliver(iut, link.data(b"inside", counter=1_873)), [b"inside"], "counter 1873 (10000 - 8127)")


# -- handshake -----------------------------------------------------------------------------


@case(
    "hs/ver/1",
    section=VERSIONS,
    title="a responder supporting 1, 2, 7 offered 1, 2, 9 chooses 2 and uses it",
    requirements=(
        "GEN-4.1",
        "HS-5.3.4",
        "HS-5.3.7",
    ),
)
def _(iut: Iut) -> None:
    hand = Hand(Pattern.XX, initiator=True)
    start_session(iut, "responder", config={"versions": [1, 2, 7]})
    answer = iut.ok("receive", data=hand.init(init_payload(versions=(1, 2, 9))), now=0.0)
    response = one_packet(answer, PacketType.RESPONSE)
    chosen = hand.check_identity(hand.read(handshake_message(response, PacketType.RESPONSE), "RESPONSE"))
    expect_eq(chosen.versions, (2,), "versions in the RESPONSE (the highest common one, alone)")
    answer = iut.ok("receive", data=encode_finish(IUT_INDEX, hand.write(finish_payload(versions=(2,)))), now=0.0)
    expect_eq(one_event(answer, "handshake_completed").get("version"), 2, "version of handshake_completed")


@case(
    "hs/ver/2",
    section=VERSIONS,
    title="an initiator supporting 1, 2, 7 offers them all and follows the choice 2",
    requirements=(
        "GEN-4.1",
        "HS-5.3.1",
        "HS-5.3.3",
        "HS-5.3.6",
        "HS-5.3.7",
        "CONF-3.2.2",
    ),
)
def _(iut: Iut) -> None:
    init = one_packet_of(start_session(iut, "initiator", config={"versions": [1, 2, 7]}))
    hand = Hand(Pattern.XX, initiator=False)
    offered = hand.read(handshake_message(init, PacketType.INIT), "INIT")
    expect_eq(sorted(decode_payload(offered, "INIT").versions), [1, 2, 7], "versions offered in the INIT")
    answer = iut.ok("receive", data=hand.response(response_payload(versions=(2,))), now=0.0)
    expect_eq(one_event(answer, "handshake_completed").get("version"), 2, "version of handshake_completed")
    finish = hand.check_identity(
        hand.read(handshake_message(one_packet(answer, PacketType.FINISH), PacketType.FINISH), "FINISH")
    )
    expect_eq(finish.versions, (2,), "versions in the FINISH (the one chosen)")


@case(
    "hs/ver/3",
    section=VERSIONS,
    title="a responder supporting 1, 2, 7 offered only 3, 9 answers with its whole list",
    requirements=("HS-5.3.5",),
)
def _(iut: Iut) -> None:
    hand = Hand(Pattern.XX, initiator=True)
    start_session(iut, "responder", config={"versions": [1, 2, 7]})
    answer = iut.ok("receive", data=hand.init(init_payload(versions=(3, 9))), now=0.0)
    response = one_packet(answer, PacketType.RESPONSE)
    listed = hand.check_identity(hand.read(handshake_message(response, PacketType.RESPONSE), "RESPONSE"))
    expect_eq(sorted(listed.versions), [1, 2, 7], "versions in the RESPONSE (no common one: all the responder speaks)")


@case(
    "hs/index/6",
    section=FAILURES,
    title="a RESPONSE without the session index field: MALFORMED_MESSAGE",
    requirements=(
        "HS-8.4.2",
        "ERR-1.10",
    ),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut)
    _expect_closed(iut, _respond(iut, hand, identity_payload(REF)), "MALFORMED_MESSAGE")


@case(
    "hs/ik/14",
    section=WEAK,
    title="an IK initiator given a low-order responder static key fails with WEAK_KEY",
    requirements=(
        "HS-2.2.1",
        "HS-2.2.4",
        "ERR-1.9",
    ),
)
def _(iut: Iut) -> None:
    for key in LOW_ORDER:
        answer = iut.call(
            "session",
            role="initiator",
            seed=IUT.seed,
            static=IUT.static,
            ephemeral=IUT.ephemeral,
            sas_nonce=IUT.sas_nonce,
            remote_static=key,
            expected_peer=None,
            local_index=IUT_INDEX,
            now=0.0,
            config={},
        )
        expect(
            answer.get("ok") is False, f"IK to the low-order key {key.hex()}: expected an error, got {short(answer)}"
        )
        expect_eq(answer.get("error"), "WEAK_KEY", f"error for the low-order key {key.hex()}")
    expect_eq(session_state(iut), "none", "state after the refused IK starts (nothing was sent)")


# -- channel layer -----------------------------------------------------------------------------


@case(
    "ch/err/6",
    section=KINDS,
    title="a STREAM frame on a message channel closes with CHANNEL_STATE_ERROR",
    requirements=(
        "CH-2.5.1",
        "CH-11.1",
        "ERR-1.24",
    ),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    channel_id = peer.open_echo(kind=ch.ChannelKind.MESSAGE)
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=0, data=b"not a message"), at=0.1)
    expect(not reply.events("channel_data"), f"stream bytes of a message channel were delivered: {short(reply.answer)}")
    expect_close(reply, ErrorCode.CHANNEL_STATE_ERROR, "STREAM on a message channel")


@case(
    "ch/data/5",
    section=KINDS,
    title="a MESSAGE received again with the same message id is delivered once",
    requirements=(
        "FRA-4.14.3",
        "CH-2.5.5",
    ),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    channel_id = peer.open_echo(kind=ch.ChannelKind.MESSAGE)
    first, second = payload(20, seed=6), payload(30, seed=7)
    delivered: list[bytes] = []
    echoed: list[bytes] = []
    # The runner "retransmits" message 0 in a new packet (as after a lost ACK), then sends message 1.
    for i, (message_id, data) in enumerate(((0, first), (0, first), (1, second))):
        reply = peer.send(ch.Message(channel_id=channel_id, message_id=message_id, data=data), at=0.1 + i * 0.01)
        expect_open(reply, f"MESSAGE {message_id}")
        delivered += [bytes.fromhex(e["data"]) for e in reply.events("channel_message")]
        echoed += [f.data for f in reply.frames(ch.Message) if f.channel_id == channel_id]
    expect_eq(delivered, [first, second], "channel_message events (message 0 once, then message 1)")
    expect_eq(echoed, [first, second], "messages echoed back (each once)")


@case(
    "ch/err/7",
    section=ACK,
    title="an ACK of a packet number the IUT never sent closes with PROTOCOL_VIOLATION",
    requirements=(
        "CH-6.2.3",
        "CH-11.1",
        "REC-3.2.1",
        "ERR-1.29",
    ),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    peer.send(ch.Ping(), at=0.1)
    peer.timer(0.2)  # the ACK of the PING: the IUT has sent packets
    highest = max(p.pn for p in peer.received)
    reply = peer.send(ack_of([highest, highest + 50]), at=0.3)
    expect_close(reply, ErrorCode.PROTOCOL_VIOLATION, f"an ACK of packet {highest + 50} (the IUT sent up to {highest})")


@case(
    "ch/flow/4",
    section=FINAL,
    title="data ending beyond a known final size closes with FINAL_SIZE_ERROR",
    requirements=(
        "FLOW-1.3",
        "FLOW-2.1.5",
        "ERR-1.21",
    ),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    channel_id = peer.open("sink")
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=0, data=payload(10), fin=True), at=0.1)
    expect_open(reply, "a STREAM_FIN at 10")
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=0, data=payload(10)), at=0.2)
    expect_open(reply, "a repeat of the same bytes, within the final size")
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=8, data=payload(5)), at=0.3)
    expect_close(reply, ErrorCode.FINAL_SIZE_ERROR, "data up to 13 after a final size of 10")


@case(
    "ch/flow/5",
    section=FINAL,
    title="a STREAM_FIN that changes the final size closes with FINAL_SIZE_ERROR",
    requirements=(
        "FLOW-1.3",
        "FLOW-1.4",
        "ERR-1.21",
    ),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    channel_id = peer.open("sink")
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=20, data=b"", fin=True), at=0.1)
    expect_open(reply, "a STREAM_FIN at 20 before any data")
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=0, data=payload(20), fin=True), at=0.2)
    expect_open(reply, "a repeated STREAM_FIN with the same final size 20")
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=20, data=b"", fin=True), at=0.25)
    expect_open(reply, "the same STREAM_FIN again")
    channel_id = peer.open("sink")
    peer.send(ch.Stream(channel_id=channel_id, offset=0, data=payload(10), fin=True), at=0.3)
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=0, data=payload(8), fin=True), at=0.4)
    expect_close(reply, ErrorCode.FINAL_SIZE_ERROR, "a STREAM_FIN at 8 after one at 10")


@case(
    "ch/reset/6",
    section=RESET,
    title="the IUT's RESET carries the highest offset it sent, not the bytes written",
    requirements=(
        "FRA-4.5.2",
        "FRA-4.8.3",
        "CH-3.3.1",
        "FLOW-2.2.4",
        "FLOW-3.2.1",
        "FLOW-3.3.3",
        "CONF-3.7.10",
        "CONF-3.7.14",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = int(peer.call("conn_open", service="files", kind="stream").answer["channel_id"])
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=100), at=0.1)
    reply = peer.call("conn_send", channel_id=channel_id, data=payload(1000, seed=8), fin=False)
    written = reply.answer.get("accepted")
    expect(isinstance(written, int) and 0 <= written <= 1000, f"conn_send accepted {short(written)}")
    peer.ack()
    peer.timer(peer.now + 0.05)
    frames = [f for p in peer.received for f in p.frames if isinstance(f, ch.Stream) and f.channel_id == channel_id]
    sent = max((f.offset + len(f.data) for f in frames), default=0)
    expect(sent <= 100, f"the IUT sent up to offset {sent} with a window of 100")
    reply = peer.call("conn_reset", channel_id=channel_id, code="APPLICATION_CLOSE")
    resets = [f for f in reply.frames(ch.Reset) if f.channel_id == channel_id]
    expect(len(resets) == 1, f"expected one RESET for channel {channel_id}, got {short(reply.packets, 200)}")
    expect_eq(resets[0].final_size, sent, f"RESET final_size (the highest offset sent, not the {written} written)")
    # An IUT whose send buffer took no more than the window cannot show the difference.
    return None if isinstance(written, int) and written > sent else f"only {written} bytes written: inconclusive"


@case(
    "ch/live/3",
    section="channels.md §9.1",
    title="the IUT's ping is acknowledged: ping_acknowledged with its RTT",
    requirements=(
        "CH-9.1.1",
        "CONF-3.7.11",
        "CONF-3.7.19",
    ),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    peer.now = 1.0
    reply = peer.call("conn_ping")
    ping_id = reply.answer.get("ping_id")
    expect(isinstance(ping_id, int), f"conn_ping must answer a ping_id, got {short(reply.answer)}")
    carrying = [p.pn for p in reply.packets if any(isinstance(f, ch.Ping) for f in p.frames)]
    expect(len(carrying) == 1, f"expected one packet with a PING, got {short(reply.packets, 200)}")
    expect(not reply.events("ping_acknowledged"), "ping_acknowledged before any ACK")
    reply = peer.send(ack_of([carrying[0]]), at=1.25)
    acks = reply.events("ping_acknowledged")
    expect(len(acks) == 1, f"one ping_acknowledged on the ACK of packet {carrying[0]}, got {short(reply.answer)}")
    expect_eq(acks[0].get("ping_id"), ping_id, "ping_id of ping_acknowledged")
    rtt = acks[0].get("rtt")
    expect(
        isinstance(rtt, int | float) and abs(float(rtt) - 0.25) < 1e-3,
        f"rtt 0.25 s (sent at 1.0, ACK at 1.25), got {rtt!r}",
    )
