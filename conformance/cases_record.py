"""Record layer cases: DATA, KEEPALIVE and CLOSE, unknown types, size limits, rekeying, replay (spec/record.md).

Each case first completes a normal handshake with ``establish``; the reference
then seals records with any counter and epoch it likes and opens the IUT's.
"""

from __future__ import annotations

from typing import Any

from p2pos.proto.handshake.noise import Pattern
from p2pos.proto.session.wire import PacketType, encode_finish

from .checks import expect, expect_eq, unhex
from .iut import Iut
from .reference import (
    IUT_INDEX,
    REF_INDEX,
    Hand,
    Link,
    epoch_key,
    establish,
    events_of,
    finish_payload,
    get_timer,
    handshake_message,
    init_payload,
    no_event,
    one_event,
    one_packet,
    out_of,
    seal_record,
    session_state,
    start_session,
)
from .registry import case

LAYOUT = "record.md §2"
CRYPTO = "record.md §3"
SIZE = "record.md §4"
REPLAY = "record.md §5"
REKEY_SEND = "record.md §6.1"
REKEY_RECV = "record.md §6.2"
LIFETIME = "record.md §7"
CLOSE = "record.md §8"
RECEIVING = "record.md §9"


def _messages(answer: dict[str, Any]) -> list[bytes]:
    return [unhex(e.get("data"), "message data") for e in events_of(answer, "message")]


def _deliver(iut: Iut, record: bytes, now: float = 0.0) -> list[bytes]:
    """Feed one record to the IUT; the application messages it reported."""
    return _messages(iut.ok("receive", data=record, now=now))


def _in_order_then_replayed(iut: Iut, link: Link, counters: tuple[int, ...]) -> None:
    """Records with ``counters``, in order, are all delivered; each one again afterwards is not."""
    records = [(c, link.data(f"c{c}".encode(), counter=c)) for c in counters]
    for c, record in records:
        expect_eq(_deliver(iut, record), [f"c{c}".encode()], f"counter {c}, in order")
    for c, record in records:
        expect_eq(_deliver(iut, record), [], f"counter {c} again, after counter {counters[-1]}")


def _send(iut: Iut, link: Link, data: bytes, now: float = 0.0) -> bytes:
    """Have the IUT send ``data``; return the single DATA record's plaintext after checking it."""
    opened = link.open(one_packet(iut.ok("send", data=data, now=now), PacketType.DATA))
    expect_eq(opened.ptype, PacketType.DATA, "record type")
    return opened.plaintext


@case(
    "rec/1",
    section=LAYOUT,
    title="DATA round trip with the IUT as XX initiator",
    requirements=(
        "HS-3.5",
        "RCD-2.1",
        "RCD-2.2",
        "RCD-3.3",
        "RCD-9.3",
        "SES-1.4",
        "SES-5.3",
        "CONF-2.3",
        "CONF-2.7",
        "CONF-2.2.5",
        "CONF-2.2.6",
        "CONF-3.2.6",
    ),
)
def _(iut: Iut) -> None:
    link = establish(iut, "initiator")
    expect_eq(_send(iut, link, b"hello from the IUT"), b"hello from the IUT", "plaintext received by the reference")
    expect_eq(_deliver(iut, link.data(b"hello from the reference")), [b"hello from the reference"], "messages")
    expect_eq(_deliver(iut, link.data(b"")), [b""], "an empty message")


@case(
    "rec/2",
    section=LAYOUT,
    title="DATA round trip with the IUT as XX responder",
    requirements=(
        "HS-3.5",
        "RCD-2.1",
        "RCD-3.3",
    ),
)
def _(iut: Iut) -> None:
    link = establish(iut, "responder")
    expect_eq(_deliver(iut, link.data(b"first")), [b"first"], "messages")
    expect_eq(_send(iut, link, b"second"), b"second", "plaintext received by the reference")


@case(
    "rec/3",
    section=LAYOUT,
    title="DATA round trip after IK, in both roles of one pattern",
    requirements=(
        "HS-3.5",
        "RCD-2.1",
    ),
)
def _(iut: Iut) -> None:
    link = establish(iut, "initiator", pattern=Pattern.IK)
    expect_eq(_send(iut, link, b"ik data"), b"ik data", "plaintext received by the reference")
    expect_eq(_deliver(iut, link.data(b"ik reply")), [b"ik reply"], "messages")


@case(
    "rec/4",
    section=CRYPTO,
    title="the first DATA record is byte-exact: header, counter 0, AEAD over the header",
    requirements=(
        "GEN-2.2.1",
        "GEN-3.1",
        "HS-3.5",
        "RCD-2.1",
        "RCD-3.1",
        "SES-1.3",
        "SES-8.4",
        "CONF-2.9",
    ),
)
def _(iut: Iut) -> None:
    link = establish(iut, "initiator")
    record = one_packet(iut.ok("send", data=b"exact", now=0.0), PacketType.DATA)
    expected = seal_record(link.recv_key, PacketType.DATA, b"exact", receiver=REF_INDEX, epoch=0, counter=0)
    expect_eq(record.hex(), expected.hex(), "DATA record bytes")


@case(
    "rec/5",
    section=RECEIVING,
    title="a KEEPALIVE delivers no message; the IUT's KEEPALIVE is empty",
    requirements=(
        "GEN-3.1",
        "RCD-2.3",
        "RCD-9.3",
        "SES-7.7",
        "CONF-3.2.7",
    ),
)
def _(iut: Iut) -> None:
    link = establish(iut, "initiator")
    answer = iut.ok("receive", data=link.seal(PacketType.KEEPALIVE, b""), now=0.0)
    expect_eq((out_of(answer), events_of(answer)), ([], []), "answer to a KEEPALIVE")
    opened = link.open(one_packet(iut.ok("keepalive", now=0.0), PacketType.KEEPALIVE))
    expect_eq(opened.plaintext, b"", "KEEPALIVE plaintext")
    expect_eq(session_state(iut), "established", "state")


@case(
    "rec/6",
    section=CLOSE,
    title="a CLOSE record from the peer ends the session with its code",
    requirements=(
        "RCD-8.3",
        "SES-1.4",
        "SES-3.1",
        "SES-3.2",
        "SES-3.7",
        "SES-3.10",
        "SES-5.4",
        "SES-5.8",
        "ERR-1.27",
        "ERR-2.8",
        "CONF-2.1.4",
        "CONF-2.2.6",
        "CONF-3.2.10",
    ),
)
def _(iut: Iut) -> None:
    link = establish(iut, "initiator")
    body = (0x0D).to_bytes(2, "big") + b"going away"
    answer = iut.ok("receive", data=link.seal(PacketType.CLOSE, body), now=0.0)
    event = one_event(answer, "closed")
    expect_eq((event.get("code"), event.get("by_peer")), ("APPLICATION_CLOSE", True), "closed event")
    expect_eq(event.get("reason"), "going away", "close reason")
    expect_eq(session_state(iut), "closed", "state")
    no_event(iut.ok("receive", data=link.data(b"late"), now=0.0), "message", "a record after CLOSE")


@case(
    "rec/7",
    section=CLOSE,
    title="closing sends a CLOSE record carrying the code; then sending fails",
    requirements=(
        "GEN-3.1",
        "RCD-8.1",
        "SES-2.4",
        "SES-2.6",
        "SES-2.8",
        "SES-3.8",
        "SES-5.4",
        "ERR-1.1",
        "ERR-1.15",
        "ERR-2.9",
        "ERR-3.1",
        "ERR-4.2",
        "CONF-3.2.6",
        "CONF-3.2.8",
    ),
)
def _(iut: Iut) -> None:
    link = establish(iut, "responder")
    answer = iut.ok("close", code="APPLICATION_CLOSE", reason="bye", now=0.0)
    opened = link.open(one_packet(answer, PacketType.CLOSE))
    expect_eq(opened.plaintext[:2], (0x0D).to_bytes(2, "big"), "code in the CLOSE record")
    expect_eq(opened.plaintext[2:], b"bye", "reason in the CLOSE record")
    for event in events_of(answer, "closed"):
        expect_eq((event.get("code"), event.get("by_peer")), ("APPLICATION_CLOSE", False), "closed event")
    expect_eq(session_state(iut), "closed", "state")
    expect(iut.call("send", data=b"x", now=0.0).get("ok") is False, "send after close must fail")


@case(
    "rec/8",
    section=RECEIVING,
    title="a corrupted record is dropped and the session still works",
    requirements=(
        "GEN-2.3.1",
        "RCD-2.1",
        "RCD-9.1",
        "SES-2.3",
        "SES-8.1",
        "ERR-1.5",
        "ERR-2.2",
        "ERR-3.11",
        "ERR-4.4",
        "CONF-3.2.5",
    ),
)
def _(iut: Iut) -> None:
    link = establish(iut, "initiator")
    good = link.data(b"payload")
    for pos in (0, 2, 5, 13, 14, len(good) - 1):
        bad = good[:pos] + bytes([good[pos] ^ 0x01]) + good[pos + 1 :]
        answer = iut.ok("receive", data=bad, now=0.0)
        expect_eq((out_of(answer), events_of(answer)), ([], []), f"answer to a record damaged at byte {pos}")
    for bad in (good[:14], good[:29], bytes([PacketType.DATA])):
        expect_eq(_deliver(iut, bad), [], f"a {len(bad)}-byte record")
    expect_eq(_deliver(iut, good), [b"payload"], "the genuine record afterwards")
    expect_eq(_send(iut, link, b"still here"), b"still here", "the IUT can still send")


@case(
    "rec/9",
    section=SIZE,
    title="a record over the receiver's plaintext limit is dropped",
    requirements=(
        "RCD-4.2",
        "RCD-9.1",
        "SES-6.3",
        "ERR-1.12",
        "ERR-2.2",
    ),
)
def _(iut: Iut) -> None:
    link = establish(iut, "initiator", config={"max_record_plaintext": 100})
    expect_eq(_deliver(iut, link.data(bytes(101))), [], "a 101-byte message over a limit of 100")
    expect_eq(_deliver(iut, link.data(bytes(100))), [bytes(100)], "a 100-byte message")


@case(
    "rec/10",
    section=SIZE,
    title="the IUT refuses to send more than the peer's advertised limit: RECORD_TOO_LARGE",
    requirements=(
        "HS-5.2.5",
        "RCD-4.1",
        "SES-2.8",
        "SES-2.9",
        "ERR-1.12",
        "ERR-4.1",
        "ERR-4.2",
        "CONF-2.2.2",
        "CONF-3.2.6",
    ),
)
def _(iut: Iut) -> None:
    link = establish(iut, "initiator", ref_max_plaintext=100)
    expect_eq(iut.error("send", data=bytes(101), now=0.0), "RECORD_TOO_LARGE", "sending 101 bytes")
    expect_eq(_send(iut, link, bytes(100)), bytes(100), "sending 100 bytes")


@case(
    "rec/11",
    section=RECEIVING,
    title="a record for another receiver index is dropped",
    requirements=(
        "HS-8.2.7",
        "RCD-9.1",
        "ERR-2.2",
        "ERR-3.11",
    ),
)
def _(iut: Iut) -> None:
    link = establish(iut, "initiator")
    stray = seal_record(link.send_key, PacketType.DATA, b"stray", receiver=IUT_INDEX ^ 0xFF, epoch=0, counter=0)
    expect_eq(_deliver(iut, stray), [], "a record to another index")
    expect_eq(_deliver(iut, link.data(b"ok", counter=1)), [b"ok"], "a record to the right index")


@case(
    "rec/12",
    section=RECEIVING,
    title="a record that arrives before FINISH is dropped; FINISH still completes",
    requirements=(
        "RCD-9.1",
        "SES-5.6",
    ),
)
def _(iut: Iut) -> None:
    hand = Hand(Pattern.XX, initiator=True)
    start_session(iut, "responder")
    answer = iut.ok("receive", data=hand.init(init_payload()), now=0.0)
    response = one_packet(answer, PacketType.RESPONSE)
    hand.read(handshake_message(response, PacketType.RESPONSE), "RESPONSE")
    finish = encode_finish(IUT_INDEX, hand.write(finish_payload()))
    k_i2r, k_r2i = hand.hs.split()
    early = Link(k_i2r, k_r2i, IUT_INDEX, b"").data(b"early", counter=7)
    expect_eq(_deliver(iut, early), [], "a record before FINISH")
    one_event(iut.ok("receive", data=finish, now=0.0), "handshake_completed")


@case(
    "rec/13",
    section=CLOSE,
    title="a CLOSE shorter than 2 bytes reads as PROTOCOL_VIOLATION and is not answered",
    requirements=(
        "RCD-8.2",
        "RCD-8.3",
        "SES-3.10",
        "ERR-1.3",
        "ERR-2.8",
        "ERR-2.12",
        "ERR-3.2",
    ),
)
def _(iut: Iut) -> None:
    link = establish(iut, "initiator")
    answer = iut.ok("receive", data=link.seal(PacketType.CLOSE, b"\x00"), now=0.0)
    event = one_event(answer, "closed")
    expect_eq((event.get("code"), event.get("by_peer")), ("PROTOCOL_VIOLATION", True), "closed event")
    expect_eq(out_of(answer), [], "datagrams in answer to a CLOSE")


@case(
    "rec/14",
    section=CLOSE,
    title="a CLOSE with an unknown code reads as PROTOCOL_VIOLATION",
    requirements=(
        "RCD-8.2",
        "SES-5.4",
        "ERR-1.3",
        "ERR-1.27",
    ),
)
def _(iut: Iut) -> None:
    link = establish(iut, "responder")
    answer = iut.ok("receive", data=link.seal(PacketType.CLOSE, b"\x77\x77why"), now=0.0)
    event = one_event(answer, "closed")
    expect_eq((event.get("code"), event.get("reason")), ("PROTOCOL_VIOLATION", "why"), "closed event")


@case(
    "rec/15",
    section=CLOSE,
    title="a CLOSE that does not authenticate changes nothing",
    requirements=(
        "GEN-2.3.1",
        "RCD-8.4",
        "SES-8.1",
        "ERR-1.5",
        "ERR-2.1",
        "ERR-3.11",
    ),
)
def _(iut: Iut) -> None:
    link = establish(iut, "initiator")
    close = link.seal(PacketType.CLOSE, b"\x00\x00")
    answer = iut.ok("receive", data=close[:-1] + bytes([close[-1] ^ 0x80]), now=0.0)
    expect_eq((out_of(answer), events_of(answer)), ([], []), "answer to a forged CLOSE")
    expect_eq(session_state(iut), "established", "state")
    expect_eq(_deliver(iut, link.data(b"alive")), [b"alive"], "a record after the forged CLOSE")


@case(
    "rec/rekey/1",
    section=REKEY_RECV,
    title="the receiver follows the sender into new epochs",
    requirements=("RCD-5.2", "RCD-6.3"),
)
def _(iut: Iut) -> str:
    link = establish(iut, "initiator")
    epochs = (0, 0, 1, 1, 2, 3, 3)
    for i, epoch in enumerate(epochs):
        expect_eq(
            _deliver(iut, link.data(f"m{i}".encode(), epoch=epoch)), [f"m{i}".encode()], f"message in epoch {epoch}"
        )
    return f"epochs {epochs}"


@case(
    "rec/rekey/2",
    section=REKEY_SEND,
    title="the sender rekeys after the configured number of records",
    requirements=(
        "RCD-3.2",
        "RCD-6.1",
        "RCD-6.2",
        "SES-6.3",
        "CONF-3.2.2",
    ),
)
def _(iut: Iut) -> str:
    link = establish(iut, "initiator", config={"rekey_after_messages": 2})
    seen = []
    counters: list[int] = []
    for i in range(6):
        answer = iut.ok("send", data=f"m{i}".encode(), now=0.0)
        opened = link.open(one_packet(answer, PacketType.DATA))
        expect_eq(opened.plaintext, f"m{i}".encode(), f"message {i}")
        seen.append(opened.epoch)
        counters.append(opened.counter)
    expect_eq(seen, [0, 0, 1, 1, 2, 2], "epochs of six records with rekey_after_messages=2")
    expect(counters == sorted(set(counters)), f"counters must never repeat, across epochs too: {counters}")
    return f"epochs {seen}"


@case(
    "rec/rekey/3",
    section=REKEY_SEND,
    title="the sender rekeys after the configured time",
    requirements=(
        "GEN-2.2.2",
        "RCD-6.2",
        "SES-1.1",
        "CONF-2.8",
    ),
)
def _(iut: Iut) -> None:
    link = establish(iut, "initiator", config={"rekey_after_seconds": 10.0})
    first = link.open(one_packet(iut.ok("send", data=b"a", now=1.0), PacketType.DATA))
    later = link.open(one_packet(iut.ok("send", data=b"b", now=11.0), PacketType.DATA))
    expect_eq((first.epoch, later.epoch), (0, 1), "epochs of records sent at t=1 and t=11")


@case(
    "rec/rekey/4",
    section=REKEY_RECV,
    title="the previous epoch is accepted for a grace period, then refused",
    requirements=(
        "RCD-6.3",
        "SES-1.1",
    ),
)
def _(iut: Iut) -> None:
    link = establish(iut, "initiator", config={"previous_key_grace": 5.0})
    expect_eq(_deliver(iut, link.data(b"new", epoch=1, counter=10), now=1.0), [b"new"], "epoch 1 record")
    expect_eq(_deliver(iut, link.data(b"late", epoch=0, counter=3), now=2.0), [b"late"], "epoch 0 within grace")
    expect_eq(_deliver(iut, link.data(b"stale", epoch=0, counter=4), now=20.0), [], "epoch 0 after the grace")
    expect_eq(_deliver(iut, link.data(b"current", epoch=1, counter=11), now=20.0), [b"current"], "epoch 1 again")


@case(
    "rec/rekey/5",
    section=REKEY_RECV,
    title="a record claiming a new epoch but sealed with the old key changes nothing",
    requirements=(
        "RCD-6.4",
        "SES-8.1",
        "ERR-2.1",
    ),
)
def _(iut: Iut) -> None:
    link = establish(iut, "initiator")
    forged = seal_record(
        epoch_key(link.send_key, 0), PacketType.DATA, b"forged", receiver=IUT_INDEX, epoch=1, counter=0
    )
    expect_eq(_deliver(iut, forged), [], "a record with a mismatched epoch")
    expect_eq(_deliver(iut, link.data(b"epoch 0", epoch=0, counter=1)), [b"epoch 0"], "epoch 0 still current")


@case(
    "rec/rekey/6",
    section=REKEY_RECV,
    title="a record 4 epochs ahead is dropped; 3 ahead is followed",
    requirements=("RCD-6.3",),
)
def _(iut: Iut) -> None:
    link = establish(iut, "initiator")
    expect_eq(_deliver(iut, link.data(b"far", epoch=4, counter=0)), [], "a record in epoch 4")
    expect_eq(_deliver(iut, link.data(b"near", epoch=3, counter=1)), [b"near"], "a record in epoch 3")
    expect_eq(_deliver(iut, link.data(b"next", epoch=4, counter=2)), [b"next"], "epoch 4 once in epoch 3")


@case(
    "rec/replay/1",
    section=REPLAY,
    title="a duplicated record is delivered once",
    requirements=(
        "RCD-5.1",
        "RCD-5.4",
        "SES-5.10",
        "ERR-2.2",
    ),
)
def _(iut: Iut) -> None:
    link = establish(iut, "initiator")
    record = link.data(b"once")
    expect_eq(_deliver(iut, record), [b"once"], "first copy")
    expect_eq(_deliver(iut, record), [], "second copy")
    expect_eq(_deliver(iut, record, now=5.0), [], "third copy, later")


@case(
    "rec/replay/2",
    section=REPLAY,
    title="reordered records within the window are each accepted once",
    requirements=(
        "RCD-5.1",
        "SES-5.9",
    ),
)
def _(iut: Iut) -> None:
    link = establish(iut, "initiator")
    for counter in (4, 2, 0, 3, 1, 1000, 100, 999):
        data = f"c{counter}".encode()
        expect_eq(_deliver(iut, link.data(data, counter=counter)), [data], f"counter {counter}")
    expect_eq(_deliver(iut, link.data(b"dup", counter=2)), [], "counter 2 again")


@case(
    "rec/replay/3",
    section=REPLAY,
    title="a record far below the highest counter is refused as too old",
    requirements=("RCD-5.1",),
)
def _(iut: Iut) -> None:
    link = establish(iut, "initiator")
    expect_eq(_deliver(iut, link.data(b"top", counter=100_000)), [b"top"], "counter 100000")
    expect_eq(_deliver(iut, link.data(b"old", counter=5)), [], "counter 5 after 100000")
    expect_eq(_deliver(iut, link.data(b"recent", counter=99_000)), [b"recent"], "counter 99000 (in the window)")


@case(
    "rec/replay/4",
    section=REPLAY,
    title="a forged record does not advance the replay window",
    requirements=(
        "GEN-2.3.1",
        "RCD-5.3",
        "SES-8.1",
        "ERR-2.1",
    ),
)
def _(iut: Iut) -> None:
    link = establish(iut, "initiator")
    genuine = link.data(b"x", counter=1_000_000)
    forged = genuine[:-1] + bytes([genuine[-1] ^ 1])
    expect_eq(_deliver(iut, forged), [], "the forged record")
    expect_eq(_deliver(iut, link.data(b"low", counter=5)), [b"low"], "counter 5 after a forged counter 1000000")


@case(
    "rec/lifetime/1",
    section=LIFETIME,
    title="a session past its lifetime closes with SESSION_EXPIRED",
    requirements=(
        "RCD-7.2",
        "SES-1.1",
        "SES-3.6",
        "SES-3.8",
        "SES-7.1",
        "SES-7.4",
        "ERR-1.1",
        "ERR-1.13",
        "ERR-2.8",
        "ERR-2.9",
        "CONF-2.8",
    ),
)
def _(iut: Iut) -> None:
    link = establish(iut, "initiator", config={"session_lifetime": 60.0})
    timer = get_timer(iut)
    expect(timer is not None and timer <= 60.0, f"timer {timer} is after the lifetime")
    answer = iut.ok("timer", now=60.0)
    opened = link.open(one_packet(answer, PacketType.CLOSE))
    expect_eq(opened.plaintext[:2], (0x0B).to_bytes(2, "big"), "code in the CLOSE record (SESSION_EXPIRED)")
    expect_eq(session_state(iut), "closed", "state")


#: Unassigned types inside p2pos's range 4-15, and first bytes outside it (spec/session.md §4.1).
_UNKNOWN_TYPES = (0x0B, 0x0F, 0x00, 0x01, 0x42, 0xFF)


@case(
    "rec/16",
    section=LAYOUT,
    title="a record of an unknown type (0x0b-0x0f, or not p2pos) is dropped though it authenticates",
    requirements=(
        "GEN-3.2",
        "RCD-2.6",
        "RCD-9.1",
        "SES-2.3",
        "SES-4.1.5",
        "SES-4.1.15",
        "ERR-2.7",
        "CONF-3.2.5",
        "CONF-3.3.7",
    ),
)
def _(iut: Iut) -> str:
    link = establish(iut, "initiator")
    for ptype in _UNKNOWN_TYPES:
        answer = iut.ok("receive", data=link.seal(ptype, b"from the future"), now=0.0)
        expect_eq((out_of(answer), events_of(answer)), ([], []), f"answer to a sealed record of type 0x{ptype:02x}")
    expect_eq(session_state(iut), "established", "state")
    expect_eq(_deliver(iut, link.data(b"known")), [b"known"], "a DATA record afterwards")
    return "types " + ", ".join(f"0x{t:02x}" for t in _UNKNOWN_TYPES) + " dropped"


@case(
    "rec/17",
    section=CLOSE,
    title="a long CLOSE reason is cut to 1024 bytes without splitting a UTF-8 character",
    requirements=(
        "RCD-8.1",
        "SES-2.6",
        "SES-3.8",
        "ERR-1.15",
        "ERR-2.9",
        "ERR-3.1",
        "CONF-3.2.8",
    ),
)
def _(iut: Iut) -> None:
    link = establish(iut, "responder")
    reason = "ab" + "\u20ac" * 400  # 2 + 3 * 400 bytes: a character spans bytes 1022-1024
    opened = link.open(one_packet(iut.ok("close", code="APPLICATION_CLOSE", reason=reason, now=0.0), PacketType.CLOSE))
    expect_eq(opened.plaintext[:2], (0x0D).to_bytes(2, "big"), "code in the CLOSE record")
    sent = opened.plaintext[2:]
    expect(len(sent) <= 1024, f"the reason has {len(sent)} bytes, more than 1024")
    expect_eq(sent, reason.encode()[:1022], "reason: the longest whole-character prefix of at most 1024 bytes")


@case(
    "rec/18",
    section=CLOSE,
    title="a CLOSE is sent once: no timer sends it again",
    requirements=(
        "RCD-8.5",
        "ERR-3.2",
    ),
)
def _(iut: Iut) -> None:
    establish(iut, "responder")
    one_packet(iut.ok("close", code="APPLICATION_CLOSE", reason="bye", now=0.0), PacketType.CLOSE)
    for now in (0.5, 3.0, 30.0, 300.0):
        expect_eq(out_of(iut.ok("timer", now=now)), [], f"datagrams at t={now} s after the CLOSE")


@case(
    "rec/replay/6",
    section=REPLAY,
    title="records accepted in counter order are refused when replayed after later ones",
    requirements=("RCD-5.1", "RCD-5.4"),
)
def _(iut: Iut) -> None:
    link = establish(iut, "initiator")
    # In order, within one 64-counter block and across the next ones.
    counters = (0, 1, 2, 3, 62, 63, 64, 65, 127, 128, 130)
    _in_order_then_replayed(iut, link, counters)


@case(
    "rec/replay/7",
    section=REPLAY,
    title="after a jump of more than the ring, counters in the new window are fresh though their blocks held old ones",
    requirements=("RCD-5.1",),
)
def _(iut: Iut) -> None:
    # spec/record.md §5: accepting c > top clears the blocks after top's block up to c's (at most
    # all 128). Counter c sits in ring block (c div 64) mod 128, so after a jump of 8192 or more
    # the blocks of counters 0-130 are reused by counters in the new window, which are fresh.
    link = establish(iut, "initiator")
    for c in (5, 64, 130):
        expect_eq(_deliver(iut, link.data(f"c{c}".encode(), counter=c)), [f"c{c}".encode()], f"counter {c}")
    expect_eq(_deliver(iut, link.data(b"jump", counter=8600)), [b"jump"], "counter 8600 after 130")
    for c in (8197, 8256, 8322):  # the slots of counters 5, 64 and 130 (blocks 128-130: ring blocks 0-2)
        expect_eq(_deliver(iut, link.data(f"c{c}".encode(), counter=c)), [f"c{c}".encode()], f"counter {c}")
    # A second jump of more than the ring, from a top in another block (8604, block 134).
    expect_eq(_deliver(iut, link.data(b"top", counter=8604)), [b"top"], "counter 8604")
    expect_eq(_deliver(iut, link.data(b"far", counter=91780)), [b"far"], "counter 91780 after 8604")
    for c in (90117, 90176, 90242):  # ring blocks 0-2 again (blocks 1408-1410): in the window
        expect_eq(_deliver(iut, link.data(f"c{c}".encode(), counter=c)), [f"c{c}".encode()], f"counter {c}")
    # A third, from block 1434 to block 2868: ring block 0 (block 2816) held 90117's bit.
    expect_eq(_deliver(iut, link.data(b"again", counter=183560)), [b"again"], "counter 183560 after 91780")
    expect_eq(_deliver(iut, link.data(b"c180229", counter=180229)), [b"c180229"], "counter 180229")


@case(
    "rec/replay/8",
    section=REPLAY,
    title="after counters 0-3, a jump far past the ring leaves counters 40960-40963 fresh",
    requirements=("RCD-5.1",),
)
def _(iut: Iut) -> None:
    # As rec/replay/7, from the first block: counters 40960-40963 reuse the bits of 0-3.
    link = establish(iut, "initiator")
    for c in range(4):
        expect_eq(_deliver(iut, link.data(f"c{c}".encode(), counter=c)), [f"c{c}".encode()], f"counter {c}")
    expect_eq(_deliver(iut, link.data(b"jump", counter=46660)), [b"jump"], "counter 46660 after 3")
    for c in range(40960, 40964):
        expect_eq(_deliver(iut, link.data(f"c{c}".encode(), counter=c)), [f"c{c}".encode()], f"counter {c}")
