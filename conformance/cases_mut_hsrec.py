"""Cases written for mutants of the handshake (spec/handshake.md), records and the replay window
(spec/record.md) that the suite let survive (conformance/MUTATION.md).

Each case tests a requirement a surviving mutant of the core (handshake/handshake.py,
handshake/noise.py, handshake/payload.py, session/record.py, session/replay.py) broke; the
mutant it kills is listed in tests/conformance/kills_hsrec.py, which CI runs.
"""

from __future__ import annotations

from p2pos.proto.handshake.noise import Pattern
from p2pos.proto.handshake.payload import CAP_MAX_RECORD_PLAINTEXT, F_PADDING, encode_fields
from p2pos.proto.session.wire import PacketType

from .cases_amplification import AMPLIFICATION
from .cases_handshake_errors import _expect_closed, _iut_initiator, _respond
from .cases_record import REKEY_RECV, REKEY_SEND, REPLAY, _deliver, _in_order_then_replayed
from .cases_req_handshake import CAPABILITIES, FIELDS, VERSIONS, _response_with_caps
from .checks import CaseFailed, expect, expect_eq, short
from .iut import Iut
from .reference import (
    IUT_INDEX,
    MIN_INIT_SIZE,
    Hand,
    Link,
    decode_payload,
    establish,
    handshake_message,
    one_event,
    one_packet,
    one_packet_of,
    response_payload,
    start_session,
)
from .registry import case


@case(
    "rec/rekey/7",
    section=REKEY_RECV,
    title="a record of the previous epoch is still opened at exactly the end of the grace period",
    requirements=("RCD-6.3",),
)
def _(iut: Iut) -> None:
    # spec/record.md §6.2: the previous key opens records while `now ≤` its expiry, the time
    # of the epoch switch plus `previous_key_grace`: here 1.0 + 4.0 = 5.0 (exact in binary).
    link = establish(iut, "initiator", config={"previous_key_grace": 4.0})
    expect_eq(_deliver(iut, link.data(b"new", epoch=1, counter=10), now=1.0), [b"new"], "epoch 1 record at 1.0")
    expect_eq(_deliver(iut, link.data(b"late", epoch=0, counter=3), now=5.0), [b"late"], "epoch 0 record at 5.0")
    expect_eq(_deliver(iut, link.data(b"stale", epoch=0, counter=4), now=5.25), [], "epoch 0 record at 5.25")


@case(
    "rec/replay/9",
    section=REPLAY,
    title="records of window blocks 127-129 are refused when replayed after later ones",
    requirements=("RCD-5.1", "RCD-5.4"),
)
def _(iut: Iut) -> None:
    # Counter c is bit c mod 64 of ring block (c div 64) mod 128 (spec/record.md §5). Blocks
    # 127, 128 and 129 are where `mod 128` differs from other reductions (127 mod 127 = 0).
    link = establish(iut, "initiator")
    counters = (8133, 8134, 8200, 8260)  # blocks 127, 127, 128, 129
    _in_order_then_replayed(iut, link, counters)


@case(
    "hs/req/23",
    section=FIELDS,
    title="a RESPONSE whose payload ends in an empty padding field completes",
    requirements=("HS-5.1.7",),
)
def _(iut: Iut) -> None:
    # The last field is a bare 4-byte header: the field list must not end one header early.
    hand = _iut_initiator(iut)
    answer = _respond(iut, hand, response_payload(extra=((F_PADDING, b""),)))
    one_event(answer, "handshake_completed")
    one_packet(answer, PacketType.FINISH)


@case(
    "hs/req/24",
    section=FIELDS,
    title="a RESPONSE whose payload ends in 2 bytes, a truncated field header: MALFORMED_MESSAGE",
    requirements=("HS-5.1.6", "HS-8.4.2"),
)
def _(iut: Iut) -> None:
    hand = _iut_initiator(iut)
    _expect_closed(iut, _respond(iut, hand, response_payload() + b"\x00\x08"), "MALFORMED_MESSAGE")


@case(
    "hs/ver/9",
    section=VERSIONS,
    title="an initiator configured for versions 0, 1 and 65535 offers all three in its INIT",
    requirements=("HS-5.3.3",),
)
def _(iut: Iut) -> None:
    # Versions are u16s (§5.1): both ends of the range are versions an IUT may be given.
    init = one_packet_of(start_session(iut, "initiator", config={"versions": [0, 1, 65535]}))
    hand = Hand(Pattern.XX, initiator=False)
    offered = decode_payload(hand.read(handshake_message(init, PacketType.INIT), "INIT"), "INIT").versions
    expect_eq(sorted(offered), [0, 1, 65535], "versions offered in the INIT")


@case(
    "rec/replay/10",
    section=REPLAY,
    title="a jump of 192 blocks clears the whole window; one of 120 clears 120 blocks, not the old top's",
    requirements=("RCD-5.1", "RCD-5.4"),
)
def _(iut: Iut) -> None:
    # spec/record.md §5: accepting c > top clears the ring blocks after top's block up to c's
    # (at most all 128), no fewer and no more. Counter c is in block c div 64.
    link = establish(iut, "initiator")

    def deliver(counter: int, fresh: bool) -> None:
        data = f"c{counter}".encode()
        want = [data] if fresh else []
        expect_eq(_deliver(iut, link.data(data, counter=counter)), want, f"counter {counter}")

    for c in range(4):
        deliver(c, True)
    deliver(12300, True)  # block 192 from block 0: every block cleared
    for c in range(8192, 8196):  # block 128, in the window, in the ring block of counters 0-3
        deliver(c, True)
    deliver(20000, True)  # block 312 from block 192: blocks 193-312 cleared, 192 kept
    deliver(12300, False)  # 7700 below the top: in the window, and seen
    deliver(12301, True)


@case(
    "rec/rekey/8",
    section=REKEY_SEND,
    title="the sender moves to the next epoch exactly rekey_after_seconds after the current one started",
    requirements=("RCD-6.2",),
)
def _(iut: Iut) -> None:
    # spec/record.md §6.1: the sender rekeys when the time is >= the epoch's start plus
    # rekey_after_seconds; the keys were derived at 0.0, epoch 1 starts at 4.0.
    link = establish(iut, "initiator", config={"rekey_after_seconds": 4.0})
    times = (3.75, 4.0, 7.75, 8.0)
    epochs = [link.open(one_packet(iut.ok("send", data=b"x", now=now), PacketType.DATA)).epoch for now in times]
    expect_eq(epochs, [0, 1, 1, 2], "epochs of records sent at t=3.75, 4, 7.75 and 8")


@case(
    "hs/amp/8",
    section=AMPLIFICATION,
    title="an XX INIT offering 115 versions, a few bytes short of 320 unpadded, is still padded to 320 or more",
    requirements=("HS-4.1.3", "HS-5.3.3"),
)
def _(iut: Iut) -> None:
    # Unpadded, the INIT's payload is versions (4 + 230 bytes), session index (8) and SAS
    # commitment (36): with the 38 bytes of header and `e`, 316 bytes. A padding field
    # (4 bytes of header, any length of zeros) must still be added.
    versions = list(range(1, 116))
    init = one_packet_of(start_session(iut, "initiator", config={"versions": versions}))
    expect(len(init) >= MIN_INIT_SIZE, f"the INIT is {len(init)} bytes, less than {MIN_INIT_SIZE}")
    hand = Hand(Pattern.XX, initiator=False)
    offered = decode_payload(hand.read(handshake_message(init, PacketType.INIT), "INIT"), "INIT").versions
    expect_eq(sorted(offered), versions, "versions offered in the INIT")


@case(
    "hs/req/25",
    section=CAPABILITIES,
    title="a max record plaintext capability of 5 bytes reads as 65505: a 65505-byte message is sent",
    requirements=("HS-5.2.4",),
)
def _(iut: Iut) -> None:
    # As hs/req/18 with a value longer than 4 bytes, whose number (16) would be a tiny limit.
    hand = _iut_initiator(iut)
    caps = encode_fields([(CAP_MAX_RECORD_PLAINTEXT, b"\x00\x00\x00\x00\x10")])
    answer = _respond(iut, hand, _response_with_caps(caps))
    one_event(answer, "handshake_completed")
    hand.read(handshake_message(one_packet(answer, PacketType.FINISH), PacketType.FINISH), "FINISH")
    k_i2r, k_r2i = hand.hs.split()
    link = Link(k_r2i, k_i2r, IUT_INDEX, hand.hash)
    answer = iut.call("send", data=bytes(65505), now=0.1)
    if not answer.get("ok"):
        raise CaseFailed(f"sending 65505 bytes to a peer whose limit capability is 5 bytes long: {short(answer)}")
    expect_eq(len(link.open(one_packet(answer, PacketType.DATA)).plaintext), 65505, "plaintext of the DATA record")


@case(
    "rec/replay/11",
    section=REPLAY,
    title="a one-block step into a reused ring block clears it: a counter just below the top there is fresh",
    requirements=("RCD-5.1",),
)
def _(iut: Iut) -> None:
    # Block 128 reuses the ring block of block 0 (spec/record.md §5): stepping from block 127
    # to block 128 must clear it, so counter 8197 is fresh although counter 5 had its bit.
    link = establish(iut, "initiator")
    for c in (5, 8130, 8202, 8197):  # blocks 0, 127, 128, 128
        expect_eq(_deliver(iut, link.data(f"c{c}".encode(), counter=c)), [f"c{c}".encode()], f"counter {c}")
