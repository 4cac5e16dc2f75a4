"""Cases for the requirements of spec/frames.md and spec/flow.md that no earlier case tested (spec/conformance.md §6).

Ids: ``frame/ch/N`` for what ``frames_encode`` / ``frames_decode`` show (as cases_frames.py),
``ch/frame/N`` for frame rules seen on a live connection and ``ch/flow/N`` for flow.md, both
played by the runner as the IUT's peer (``Peer`` of cases_channels.py).  Each case names the
requirement ids it tests; a case whose ids are all SHOULD is only a warning when it fails.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from p2pos.proto.channels import frames as ch
from p2pos.proto.common.varint import MAX_VARINT
from p2pos.proto.errors import ErrorCode

from .cases_channels import QUIET, SERVICES, Packet, Peer, Reply, _acked_by, ack_of, expect_close, expect_open, payload
from .cases_frames import _rejects
from .checks import CaseFailed, Unsupported, expect, expect_eq, short
from .iut import Iut
from .reference import establish, out_of
from .registry import case

MIB = 1024 * 1024
#: Plaintext of the runner's large DATA records (a record holds up to 65505 bytes, record.md §4).
BIG = 60000


class _Peer(Peer):
    """A ``Peer`` whose ``conn_session`` carries extra fields (``refuse_reason``)."""

    def __init__(self, iut: Iut, *, extra: dict[str, Any], **channel_config: Any) -> None:
        self.iut = iut
        self.now = 0.0
        self.received: list[Packet] = []
        channels = {"services": list(SERVICES), "channel_config": {**QUIET, **channel_config}, **extra}
        self.link = establish(iut, "responder", channels=channels, now=self.now)
        self.next_id, self.iut_parity = 0, 1
        self.first = self._absorb({"events": []}, self.link.trailing)
        if self.received:
            self.ack()


def _frames_on(peer: Peer, cls: type[Any], channel_id: int | None = None) -> list[Any]:
    """Every frame of type ``cls`` (on ``channel_id``, if given) the IUT sent so far."""
    return [
        f
        for p in peer.received
        for f in p.frames
        if isinstance(f, cls) and (channel_id is None or getattr(f, "channel_id", None) == channel_id)
    ]


def _sizes(reply: Reply) -> list[int]:
    """The sizes of the IUT's datagrams in one answer."""
    return [len(d) // 2 for d in reply.answer.get("out", [])]


def _echo_until(peer: Peer, channel_id: int, size: int, rounds: int = 20) -> bytes:
    """Acknowledge and run timers until the IUT sent ``size`` bytes on ``channel_id``; returns them."""
    got = b""
    for _ in range(rounds):
        got = peer.stream_bytes(channel_id)[0]
        if len(got) >= size:
            break
        peer.ack()
        peer.timer(peer.now + 0.05)
    return got


# -- frames_encode / frames_decode (frames.md §2, §4.3, §4.4, §4.6) ----------------------------------


_OPEN: dict[str, Any] = {"type": "open", "channel_id": 2, "kind": "stream", "initial_max_data": 0}


@case(
    "frame/ch/18",
    section="frames.md §2",
    title="encoding refuses a varint above 2^62-1 and text that is not UTF-8",
    requirements=("FRA-2.4", "FRA-4.4.4", "FRA-4.6.3"),
)
def _(iut: Iut) -> None:
    # A lone surrogate is valid in a JSON string but has no UTF-8 encoding.
    for what, frame in (
        ("MAX_DATA of 2^62", {"type": "max_data", "maximum": MAX_VARINT + 1}),
        ("a RESET code of 2^62", {"type": "reset", "channel_id": 1, "code": MAX_VARINT + 1, "final_size": 0}),
        ("a channel id of 2^64", {"type": "close_channel", "channel_id": 1 << 64}),
        ("a REFUSE reason with a lone surrogate", {"type": "refuse", "channel_id": 1, "code": 23, "reason": "x\ud800"}),
        ("an OPEN service with a lone surrogate", {**_OPEN, "service": "s\udfff"}),
    ):
        answer = iut.call("frames_encode", frames=[frame])
        expect(answer.get("ok") is False, f"frames_encode of {what} should fail, got {short(answer)}")
    # The largest value still encodes.
    ok = iut.ok("frames_encode", frames=[{"type": "max_data", "maximum": MAX_VARINT}]).get("data")
    expect_eq(ok, ch.encode_frame(ch.MaxData(maximum=MAX_VARINT)).hex(), "MAX_DATA of 2^62-1")


@case(
    "frame/ch/19",
    section="frames.md §4.3",
    title="an ACK claiming 2^62-1 ranges in a few bytes is MALFORMED_MESSAGE at once",
    requirements=("FRA-4.3.4",),
)
def _(iut: Iut) -> None:
    huge = "ffffffffffffffff"  # range_count 2^62 - 1 (an 8-byte varint)
    _rejects(iut, bytes.fromhex("020a00" + huge + "00" + "0000"), "MALFORMED_MESSAGE", "range_count 2^62-1")
    _rejects(iut, bytes.fromhex("020a00" + "bfffffff" + "00"), "MALFORMED_MESSAGE", "range_count 2^30-1, no pair")


# -- frames on a live connection (frames.md §1, §3, §4) -------------------------------------------------


@case(
    "ch/frame/1",
    section="frames.md §4.6",
    title="an application's long refusal reason is cut to 1024 bytes at a character boundary",
    requirements=("FRA-4.6.2", "FRA-4.6.1"),
)
def _(iut: Iut) -> str | None:
    reason = "a" + "é" * 600  # 1201 bytes; the longest cut is "a" and 511 "é", 1023 bytes
    peer = _Peer(iut, extra={"refuse_reason": reason})
    channel_id = peer.open("no-such-service")
    refusals = [f for f in peer.last.frames(ch.Refuse) if f.channel_id == channel_id]
    expect(len(refusals) == 1, f"one REFUSE for channel {channel_id}, got {short(peer.last.packets, 200)}")
    got = refusals[0].reason
    if not got.startswith("a"):
        raise Unsupported(f"the IUT's application does not take conn_session's refuse_reason (it said {got!r})")
    encoded = got.encode("utf-8")
    expect(reason.startswith(got), f"the REFUSE reason is not a prefix of the application's: {short(got)}")
    expect(1021 <= len(encoded) <= 1024, f"the reason cut to {len(encoded)} bytes, not the longest prefix <= 1024")
    expect_eq(refusals[0].code, int(ErrorCode.SERVICE_UNKNOWN), "REFUSE code")
    expect_open(peer.last, "a refusal with a long reason")
    return None


@case(
    "ch/frame/2",
    section="frames.md §4.6",
    title="a REFUSE with a 1025-byte reason closes with MALFORMED_MESSAGE, unreported",
    requirements=("FRA-4.6.4", "FRA-5.2"),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    channel_id = int(peer.call("conn_open", service="chat", kind="stream").answer["channel_id"])
    reason = bytes([0x05, channel_id, 0x17]) + bytes.fromhex("4401") + b"r" * 1025
    reply = peer.send_raw(reason, at=0.1)
    expect(not reply.events("channel_refused"), f"a REFUSE that does not parse was reported: {short(reply.answer)}")
    expect_close(reply, ErrorCode.MALFORMED_MESSAGE, "a REFUSE reason of 1025 bytes")


@case(
    "ch/frame/3",
    section="frames.md §4.3",
    title="the IUT's ACK gives its delay in microseconds, without an exponent",
    requirements=(
        "FRA-4.3.2",
        "CH-4.11",
    ),
)
def _(iut: Iut) -> str:
    peer = Peer(iut)
    pn = peer.link.next_counter
    reply = peer.send(ch.Ping(), at=1.0)
    seen_at = 1.0 if any(a.largest == pn for a in reply.frames(ch.Ack)) else None
    for at in (1.005, 1.010, 1.015, 1.020, 1.025, 1.030, 1.060):
        if seen_at is not None:
            break
        reply = peer.timer(at)
        if any(a.largest == pn for a in reply.frames(ch.Ack)):
            seen_at = at
    expect(seen_at is not None, f"no ACK of the PING (packet {pn}) within 60 ms")
    delay = next(a for a in peer.received_acks() if a.largest == pn).ack_delay
    expected = round(((seen_at or 1.0) - 1.0) * 1_000_000)
    if expected == 0:
        expect(delay <= 1000, f"an ACK sent at once with ack_delay {delay} µs")
        return "acknowledged at once: only a zero delay was checked"
    expect(
        abs(delay - expected) <= max(1000, expected // 10),
        f"ack_delay {delay} for an ACK sent {expected} µs after the PING arrived (microseconds, no exponent)",
    )
    return f"ack_delay {delay} µs"


@case(
    "ch/frame/4",
    section="frames.md §4.4",
    title="service names are matched byte for byte: no case folding, no Unicode normalisation",
    requirements=("FRA-4.4.6",),
)
def _(iut: Iut) -> None:
    composed = unicodedata.normalize("NFC", "café")
    decomposed = unicodedata.normalize("NFD", "café")
    peer = Peer(iut, services=(composed, "echo"))
    for name, what in ((decomposed, "the NFD form of the listed NFC name"), ("Echo", "another case of 'echo'")):
        channel_id = peer.open(name)
        expect(
            not [f for f in peer.last.frames(ch.Accept) if f.channel_id == channel_id],
            f"the IUT accepted an OPEN to {what}",
        )
        refusals = [f for f in peer.last.frames(ch.Refuse) if f.channel_id == channel_id]
        expect(len(refusals) == 1, f"no REFUSE of {what}: {short(peer.last.packets, 200)}")
        expect_eq(refusals[0].code, int(ErrorCode.SERVICE_UNKNOWN), f"REFUSE code for {what}")
    channel_id = peer.open(composed)
    accepts = [f for f in peer.last.frames(ch.Accept) if f.channel_id == channel_id]
    expect(len(accepts) == 1, f"no ACCEPT of the listed name itself: {short(peer.last.packets, 200)}")


@case(
    "ch/frame/5",
    section="frames.md §1",
    title="empty records, PADDING anywhere, a zero-length STREAM and frames after STREAM are all read",
    requirements=("FRA-1.5", "FRA-4.1.2", "FRA-4.7.2", "FRA-4.7.6"),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    reply = peer.send_raw(b"", at=1.0)
    expect_open(reply, "an empty DATA record")
    expect(not reply.packets, f"the IUT answered an empty DATA record: {short(reply.packets, 200)}")
    reply = peer.timer(1.5)
    expect(not reply.packets, f"the IUT acknowledged an empty DATA record: {short(reply.packets, 200)}")
    opening = ch.Open(channel_id=0, kind=ch.ChannelKind.STREAM, service="sink", initial_max_data=4096)
    reply = peer.send(ch.Padding(length=3), opening, ch.Padding(length=2), at=1.6)
    accepts = [f.channel_id for f in reply.frames(ch.Accept)]
    expect(accepts == [0], f"no ACCEPT of an OPEN between PADDING: {short(reply.packets, 200)}")
    reply = peer.send(
        ch.Padding(length=1),
        ch.Stream(channel_id=0, offset=0, data=b""),
        ch.Padding(length=4),
        ch.Stream(channel_id=0, offset=0, data=b"abc"),
        ch.Stream(channel_id=0, offset=3, data=b"de", fin=True),
        ch.Padding(length=2),
        at=1.7,
    )
    expect_open(reply, "STREAM frames (one of length 0) between PADDING")
    got = b"".join(bytes.fromhex(e["data"]) for e in reply.events("channel_data"))
    expect_eq(got, b"abcde", "the bytes the IUT's application read")
    expect(bool(reply.events("channel_ended")), f"the STREAM_FIN after a STREAM was not read: {short(reply.answer)}")


@case(
    "ch/frame/6",
    section="frames.md §3",
    title="a packet holding only MAX_DATA, DATA_BLOCKED, CHANNEL_BLOCKED or MAX_CHANNELS is acknowledged",
    requirements=(
        "FRA-3.2",
        "CH-4.1",
    ),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    channel_id = peer.open("sink")
    peer.ack()
    frames: list[ch.Frame] = [
        ch.MaxData(maximum=2 * MIB),
        ch.DataBlocked(limit=MIB),
        ch.ChannelBlocked(channel_id=channel_id, limit=4096),
        ch.MaxChannels(maximum=200),
        ch.MaxChannelData(channel_id=channel_id, maximum=100000),
    ]
    for i, frame in enumerate(frames):
        at = 1.0 + i
        pn = peer.link.next_counter
        reply = peer.send(frame, at=at)
        expect_open(reply, f"a packet of {type(frame).__name__}")
        try:
            _acked_by(peer, pn, at)
        except CaseFailed as exc:
            raise CaseFailed(f"a packet holding only {type(frame).__name__}: {exc}") from None


@case(
    "ch/frame/7",
    section="frames.md §4.16",
    title="a CLOSE_CHANNEL on a stream channel is ignored: the stream goes on",
    requirements=(
        "FRA-4.16.3",
        "CH-3.2.6",
    ),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    channel_id = peer.open_echo()
    peer.send(ch.Stream(channel_id=channel_id, offset=0, data=b"abc"), at=0.1)
    reply = peer.send(ch.CloseChannel(channel_id=channel_id), at=0.2)
    expect_open(reply, "CLOSE_CHANNEL on a stream channel")
    expect(not reply.events("channel_ended"), f"CLOSE_CHANNEL ended a stream channel: {short(reply.answer)}")
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=3, data=b"def"), at=0.3)
    expect_open(reply, "stream data after a CLOSE_CHANNEL")
    expect_eq(_echo_until(peer, channel_id, 6), b"abcdef", "the echo of the stream after a CLOSE_CHANNEL")
    expect_eq(peer.stream_bytes(channel_id)[1], None, "the IUT's stream was not ended")


def _transfer(iut: Iut) -> tuple[Peer, list[int]]:
    """An echo transfer of 6000 bytes with a FIN and three echoed messages; the IUT's datagram sizes."""
    peer = Peer(iut)
    sizes: list[int] = []
    stream = peer.open_echo()
    sizes += _sizes(peer.last)
    data = payload(6000, seed=11)
    for start in range(0, len(data), 2000):
        part = data[start : start + 2000]
        reply = peer.send(ch.Stream(channel_id=stream, offset=start, data=part, fin=start + 2000 >= len(data)))
        sizes += _sizes(reply)
    for _ in range(20):
        got, end = peer.stream_bytes(stream)
        if end is not None and len(got) >= len(data):
            break
        sizes += _sizes(peer.ack())
        sizes += _sizes(peer.timer(peer.now + 0.05))
    got, end = peer.stream_bytes(stream)
    expect_eq((got, end), (data, len(data)), "the echoed stream and its final size")
    messages = peer.open_echo(kind=ch.ChannelKind.MESSAGE)
    sizes += _sizes(peer.last)
    reply = peer.send(*(ch.Message(channel_id=messages, message_id=i, data=payload(30, seed=i)) for i in range(3)))
    sizes += _sizes(reply)
    sizes += _sizes(peer.ack())
    return peer, sizes


@case(
    "ch/frame/8",
    section="frames.md §1",
    title="the IUT's datagrams fit the 1200-byte base MTU and its message ids count from 0",
    requirements=(
        "FRA-1.3",
        "FRA-1.7",
        "FRA-4.14.2",
        "CH-1.4",
        "CH-2.5.4",
    ),
)
def _(iut: Iut) -> str:
    peer, sizes = _transfer(iut)
    expect(bool(sizes) and max(sizes) <= 1200, f"the IUT sent datagrams of {max(sizes)} bytes (path MTU 1200)")
    echoed = _frames_on(peer, ch.Message)
    expect_eq([m.message_id for m in echoed], [0, 1, 2], "the message ids of the IUT's direction")
    return f"{len(sizes)} datagrams, the largest {max(sizes)} bytes"


@case(
    "ch/frame/9",
    section="frames.md §4.7",
    title="the IUT sends no empty DATA record and no zero-length STREAM frame without FIN",
    requirements=("FRA-1.6", "FRA-4.7.5"),
)
def _(iut: Iut) -> None:
    peer, _sizes_seen = _transfer(iut)
    empty = [p.pn for p in peer.received if not p.frames]
    expect(not empty, f"the IUT sent empty DATA records: packets {empty}")
    hollow = [f for f in _frames_on(peer, ch.Stream) if not f.data and not f.fin]
    expect(not hollow, f"the IUT sent STREAM frames of length 0 without FIN: {short(hollow, 200)}")


@case(
    "ch/frame/10",
    section="frames.md §4.16",
    title="after its CLOSE_CHANNEL the IUT sends no more messages on the channel",
    requirements=("FRA-4.16.2",),
)
def _(iut: Iut) -> str:
    peer = Peer(iut)
    channel_id = int(peer.call("conn_open", service="chat", kind="message").answer["channel_id"])
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=MIB), at=0.1)
    reply = peer.call("conn_send", channel_id=channel_id, data=b"last", fin=True)
    if not reply.frames(ch.CloseChannel):
        reply = peer.timer(peer.now + 0.05)
    closing = [p.pn for p in peer.received if any(isinstance(f, ch.CloseChannel) for f in p.frames)]
    expect(bool(closing), f"no CLOSE_CHANNEL after conn_send with fin: {short(peer.received[-3:], 200)}")
    answer = iut.call("conn_send", channel_id=channel_id, data=b"one more", fin=False, now=peer.now + 0.01)
    if answer.get("ok") is True:
        peer._absorb(answer, out_of(answer))
    peer.ack()
    peer.timer(peer.now + 0.5)
    late = [f for p in peer.received if p.pn > closing[0] for f in p.frames if isinstance(f, ch.Message)]
    expect(not late, f"MESSAGE frames after the CLOSE_CHANNEL (packet {closing[0]}): {short(late, 200)}")
    return "the later message was refused" if answer.get("ok") is not True else "the later message was dropped"


# -- flow control (flow.md) -----------------------------------------------------------------------------


@case(
    "ch/flow/6",
    section="flow.md §2.1",
    title="the first copy of a byte wins, and a different second copy is not an error",
    requirements=("FLOW-2.1.3", "FLOW-2.1.4", "FLOW-2.1.2"),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    channel_id = peer.open_echo()
    expect_open(peer.send(ch.Stream(channel_id=channel_id, offset=10, data=b"X" * 10), at=0.1), "bytes 10..20")
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=5, data=b"Y" * 15), at=0.2)
    expect_open(reply, "bytes 5..20 that differ from the first copy of 10..20")
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=0, data=b"Z" * 5), at=0.3)
    expect_open(reply, "bytes 0..5")
    expected = b"Z" * 5 + b"Y" * 5 + b"X" * 10
    read = b"".join(bytes.fromhex(e["data"]) for e in reply.events("channel_data"))
    expect_eq(read, expected, "the bytes the application read (the first copy of each byte)")
    expect_eq(_echo_until(peer, channel_id, 20), expected, "the echoed stream")


@case(
    "ch/flow/7",
    section="flow.md §3.1",
    title="MAX_CHANNEL_DATA comes once more than half the window was read, and not before",
    requirements=("FLOW-3.1.3", "FLOW-3.1.4"),
)
def _(iut: Iut) -> str:
    peer = Peer(iut, channel_window=4096)
    channel_id = peer.open("sink", window=65536)
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=0, data=payload(2048)), at=0.1)
    updates = [f for f in reply.frames(ch.MaxChannelData) if f.channel_id == channel_id]
    expect(not updates, f"MAX_CHANNEL_DATA after half of the 4096-byte window was read: {updates}")
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=2048, data=payload(1)), at=0.2)
    if not reply.frames(ch.MaxChannelData):
        reply = peer.timer(0.2 + 0.025)
    updates = [f for f in reply.frames(ch.MaxChannelData) if f.channel_id == channel_id]
    expect(len(updates) == 1, f"one MAX_CHANNEL_DATA once 2049 of 4096 bytes were read, got {short(updates)}")
    expect(updates[0].maximum >= 2049 + 4096, f"the new limit {updates[0].maximum} is below bytes read + window")
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=2049, data=payload(10)), at=0.3)
    again = [f for f in reply.frames(ch.MaxChannelData) if f.channel_id == channel_id]
    expect(not again, f"another MAX_CHANNEL_DATA 10 bytes later: {again}")
    return f"limit {updates[0].maximum}"


@case(
    "ch/flow/8",
    section="flow.md §3.1",
    title="unread data raises no limit; the limits the IUT advertises never go down",
    requirements=("FLOW-3.1.5", "FLOW-3.1.2", "FLOW-5.3"),
)
def _(iut: Iut) -> str:
    peer = Peer(iut, channel_window=4096)
    channel_id = peer.open("sink", window=65536)
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=1, data=payload(4095)), at=0.1)
    expect_open(reply, "4095 bytes after a gap of one")
    peer.ack()
    peer.timer(0.2)
    early = _frames_on(peer, ch.MaxChannelData, channel_id)
    expect(not early, f"MAX_CHANNEL_DATA while nothing could be read (data arrived, none read): {early}")
    expect(not _frames_on(peer, ch.MaxData), "MAX_DATA while nothing could be read")
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=0, data=payload(1)), at=0.3)
    offset, limit = 4096, 4096
    for step in range(8):
        raised = [f.maximum for f in _frames_on(peer, ch.MaxChannelData, channel_id)]
        limit = max([limit, *raised])
        if offset < limit:
            peer.send(
                ch.Stream(channel_id=channel_id, offset=offset, data=payload(limit - offset)), at=0.4 + step * 0.1
            )
            offset = limit
        peer.ack()
        peer.timer(peer.now + 0.03)
    maxima = [f.maximum for f in _frames_on(peer, ch.MaxChannelData, channel_id)]
    expect(bool(maxima), "no MAX_CHANNEL_DATA though the application read whole windows (and no blocked frame came)")
    expect(maxima == sorted(maxima), f"a MAX_CHANNEL_DATA lowered the limit: {maxima}")
    expect(all(m >= 4096 for m in maxima), f"a MAX_CHANNEL_DATA below the initial window: {maxima}")
    return f"limits {maxima}"


@case(
    "ch/flow/9",
    section="flow.md §3.2",
    title="a MAX_CHANNEL_DATA or MAX_DATA that does not raise the limit is ignored",
    requirements=("FLOW-3.2.2", "FLOW-3.2.1"),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    channel_id = peer.open_echo(window=100)
    data = payload(1000, seed=4)
    peer.send(ch.Stream(channel_id=channel_id, offset=0, data=data), at=0.1)
    expect_eq(_echo_until(peer, channel_id, 100, rounds=3), data[:100], "the echo with a window of 100")
    peer.send(ch.MaxData(maximum=50), ch.MaxChannelData(channel_id=channel_id, maximum=600), at=peer.now + 0.01)
    peer.send(ch.MaxChannelData(channel_id=channel_id, maximum=300), at=peer.now + 0.01)
    got = _echo_until(peer, channel_id, 600, rounds=10)
    for _ in range(3):
        peer.ack()
        peer.timer(peer.now + 0.2)
    got = peer.stream_bytes(channel_id)[0]
    expect_eq(got, data[:600], "the echo after MAX_DATA 50, MAX_CHANNEL_DATA 600 and then 300")
    highest = max(f.offset + len(f.data) for f in _frames_on(peer, ch.Stream, channel_id))
    expect(highest <= 600, f"the IUT sent up to offset {highest} with a channel limit of 600")


@case(
    "ch/flow/11",
    section="flow.md §3",
    title="the connection limit counts the highest offsets of all channels together",
    requirements=("FRA-4.10.1", "FLOW-3.1.1", "FLOW-3.2.4"),
)
def _(iut: Iut) -> None:
    peer = Peer(iut, channel_window=4 * MIB)
    expect(not peer.first.frames(ch.MaxData), "the IUT raised the connection limit with the default config")
    first, second = peer.open("sink"), peer.open("sink")
    reply = peer.send(ch.Stream(channel_id=first, offset=600000 - 1, data=b"a"), at=0.1)
    expect_open(reply, "one byte at 599999 on the first channel (600000 of the 1 MiB credit)")
    rest = MIB - 600000
    reply = peer.send(ch.Stream(channel_id=second, offset=rest - 1, data=b"b"), at=0.2)
    expect_open(reply, f"one byte at {rest - 1} on the second (the sum is exactly 1 MiB)")
    reply = peer.send(ch.Stream(channel_id=second, offset=rest, data=b"c"), at=0.3)
    expect_close(reply, ErrorCode.FLOW_CONTROL_ERROR, "one byte more on the second channel (the sum above 1 MiB)")


@case(
    "ch/flow/12",
    section="flow.md §4",
    title="with a 4 MiB connection window the IUT advertises it and accepts up to it at once",
    requirements=("FLOW-4.9", "FLOW-4.6", "FLOW-3.1.1"),
)
def _(iut: Iut) -> None:
    peer = Peer(iut, channel_window=8 * MIB, connection_window=4 * MIB)
    channel_id = peer.open("sink")
    # Nothing is ever read (the byte at 0 never comes): no update can raise the limit further.
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=4 * MIB - 1, data=b"z"), at=0.1)
    expect_open(reply, "a byte ending at 4 MiB, the IUT's connection window")
    peer.ack()
    peer.timer(0.2)
    limits = [f.maximum for f in _frames_on(peer, ch.MaxData)]
    expect(any(m >= 4 * MIB for m in limits), f"no MAX_DATA of 4 MiB, got {limits}")
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=4 * MIB, data=b"!"), at=0.3)
    expect_close(reply, ErrorCode.FLOW_CONTROL_ERROR, "one byte beyond the advertised 4 MiB")


@case(
    "ch/flow/13",
    section="flow.md §4",
    title="a connection window above 1 MiB leaves in MAX_DATA with the IUT's first packets",
    requirements=("FLOW-4.7",),
)
def _(iut: Iut) -> None:
    peer = Peer(iut, connection_window=3 * MIB)
    limits = [f.maximum for f in peer.first.frames(ch.MaxData)]
    expect_eq(limits, [3 * MIB], "MAX_DATA in the packets the IUT sent with the end of the handshake")


@case(
    "ch/flow/14",
    section="flow.md §4",
    title="with the default window the first MAX_DATA comes once more than 512 KiB were read",
    requirements=("FLOW-4.10", "FLOW-3.1.3"),
)
def _(iut: Iut) -> str:
    peer = Peer(iut, channel_window=4 * MIB)
    channel_id = peer.open("sink")
    half = MIB // 2
    offset, at = 0, 0.1
    while offset < half:
        size = min(BIG, half - offset)
        reply = peer.send(ch.Stream(channel_id=channel_id, offset=offset, data=payload(size, seed=offset)), at=at)
        expect_open(reply, f"{size} bytes at {offset}")
        offset += size
        at += 0.001
    peer.timer(at)
    early = _frames_on(peer, ch.MaxData)
    expect(not early, f"MAX_DATA before half the 1 MiB window was read: {early}")
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=half, data=b"+"), at=at + 0.001)
    if not reply.frames(ch.MaxData):
        reply = peer.timer(at + 0.03)
    limits = [f.maximum for f in _frames_on(peer, ch.MaxData)]
    expect(bool(limits), f"no MAX_DATA once {half + 1} bytes of the 1 MiB window were read")
    expect(limits[0] >= half + 1 + MIB, f"the first MAX_DATA {limits[0]} is below bytes read + 1 MiB")
    return f"MAX_DATA {limits[0]}"


@case(
    "ch/flow/15",
    section="flow.md §3.3",
    title="a RESET releases the unread bytes of the channel to the connection window",
    requirements=(
        "CH-3.3.4",
        "FLOW-3.3.1",
        "FLOW-3.3.2",
    ),
)
def _(iut: Iut) -> str:
    peer = Peer(iut, channel_window=4 * MIB)
    channel_id = peer.open("sink")
    total, offset, at = 600000, 1, 0.1
    while offset < total:  # the byte at 0 never comes: nothing can be read
        size = min(BIG, total - offset)
        expect_open(peer.send(ch.Stream(channel_id=channel_id, offset=offset, data=payload(size)), at=at), "data")
        offset += size
        at += 0.001
    peer.timer(at)
    expect(not _frames_on(peer, ch.MaxData), "MAX_DATA before anything was read")
    code = int(ErrorCode.APPLICATION_CLOSE)
    reply = peer.send(ch.Reset(channel_id=channel_id, code=code, final_size=total), at=at + 0.001)
    expect_open(reply, "a RESET at the highest offset received")
    if not reply.frames(ch.MaxData):
        peer.timer(at + 0.03)
    limits = [f.maximum for f in _frames_on(peer, ch.MaxData)]
    expect(bool(limits), f"no MAX_DATA after a RESET released {total} unread bytes (more than half of 1 MiB)")
    expect(limits[0] >= total + MIB, f"MAX_DATA {limits[0]} is below the released bytes + 1 MiB")
    return f"MAX_DATA {limits[0]}"


@case(
    "ch/flow/16",
    section="flow.md §6",
    title="data beyond both the final size and the window is FINAL_SIZE_ERROR: final size first",
    requirements=("FLOW-6.2", "FLOW-6.1"),
)
def _(iut: Iut) -> None:
    peer = Peer(iut, channel_window=4096)
    channel_id = peer.open("sink")
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=0, data=b"abc", fin=True), at=0.1)
    expect_open(reply, "a STREAM_FIN at 3")
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=4000, data=payload(200)), at=0.2)
    expect_close(reply, ErrorCode.FINAL_SIZE_ERROR, "data up to 4200: beyond the final size 3 and the window 4096")


@case(
    "ch/flow/17",
    section="flow.md §2.2",
    title="after its RESET the IUT sends no stream data on the channel, not even retransmissions",
    requirements=(
        "FRA-4.8.2",
        "CH-3.3.2",
        "FLOW-2.2.6",
    ),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    channel_id = int(peer.call("conn_open", service="files", kind="stream").answer["channel_id"])
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=MIB), at=0.1)
    peer.call("conn_send", channel_id=channel_id, data=payload(5000, seed=2), fin=False)
    expect(bool(_frames_on(peer, ch.Stream, channel_id)), "no stream data before the reset")
    reply = peer.call("conn_reset", channel_id=channel_id, code="APPLICATION_CLOSE")
    resets = [p.pn for p in reply.packets if any(isinstance(f, ch.Reset) for f in p.frames)]
    expect(bool(resets), f"no RESET after conn_reset: {short(reply.packets, 200)}")
    after = resets[0]
    for at in (0.5, 1.0, 2.0, 4.0):  # nothing acknowledged: probe timeouts fire
        peer.timer(at)
    late = [(p.pn, f) for p in peer.received if p.pn > after for f in p.frames if isinstance(f, ch.Stream)]
    late = [(pn, f) for pn, f in late if f.channel_id == channel_id]
    expect(not late, f"STREAM frames on the reset channel after the RESET (packet {after}): {short(late, 200)}")


@case(
    "ch/flow/18",
    section="flow.md §6",
    title="writing after the FIN and a message larger than a packet are refused, and nothing is sent",
    requirements=(
        "CH-2.5.3",
        "CH-3.2.8",
        "CH-11.3",
        "FLOW-2.3.4",
        "FLOW-6.4",
    ),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    stream = int(peer.call("conn_open", service="files", kind="stream").answer["channel_id"])
    peer.send(ch.Accept(channel_id=stream, initial_max_data=MIB), at=0.1)
    peer.call("conn_send", channel_id=stream, data=b"abc", fin=True)
    iut.error("conn_send", channel_id=stream, data=b"more", fin=False, now=peer.now)
    messages = int(peer.call("conn_open", service="chat", kind="message").answer["channel_id"])
    peer.send(ch.Accept(channel_id=messages, initial_max_data=MIB), at=0.2)
    error = iut.error("conn_send", channel_id=messages, data=payload(1300), fin=False, now=peer.now)
    expect_eq(error, "RECORD_TOO_LARGE", "the error for a 1300-byte message")
    peer.ack()
    peer.timer(0.5)
    got, end = peer.stream_bytes(stream)
    expect_eq((got, end), (b"abc", 3), "the stream: the bytes before the FIN, and nothing after")
    expect(not _frames_on(peer, ch.Message, messages), "a MESSAGE frame for the refused message")


def _to_connection_limit(iut: Iut) -> tuple[Peer, int]:
    """The IUT sends 1 MiB + 100000 bytes on a channel it opened with a 4 MiB window, the runner
    acknowledging everything and never sending MAX_DATA; returns the peer and the channel."""
    peer = Peer(iut)
    channel_id = int(peer.call("conn_open", service="files", kind="stream").answer["channel_id"])
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=4 * MIB), at=0.1)
    data = payload(MIB + 100000, seed=7)
    written, highest, still = 0, 0, 0
    for _ in range(300):
        if written < len(data):
            reply = peer.call("conn_send", channel_id=channel_id, data=data[written : written + 262144], fin=False)
            accepted = reply.answer.get("accepted")
            expect(isinstance(accepted, int), f"conn_send answered accepted {short(accepted)}")
            written += int(accepted or 0)
        peer.ack()
        peer.timer(peer.now + 0.01)
        top = max((f.offset + len(f.data) for f in _frames_on(peer, ch.Stream, channel_id)), default=0)
        still = still + 1 if top == highest else 0
        highest = top
        if still >= 5:
            break
    return peer, channel_id


@case(
    "ch/flow/19",
    section="flow.md §4",
    title="without a MAX_DATA from the runner the IUT sends no more than the 1 MiB connection credit",
    requirements=("FLOW-4.8", "FLOW-3.2.1"),
)
def _(iut: Iut) -> str:
    peer, channel_id = _to_connection_limit(iut)
    highest = max((f.offset + len(f.data) for f in _frames_on(peer, ch.Stream, channel_id)), default=0)
    expect(highest <= MIB, f"the IUT sent up to offset {highest}, beyond the 1 MiB connection credit")
    got = peer.stream_bytes(channel_id)[0]
    expect_eq(len(got), highest, "the stream up to its highest offset")
    peer.send(ch.MaxData(maximum=MIB + 50000), at=peer.now + 0.01)
    for _ in range(5):
        peer.ack()
        peer.timer(peer.now + 0.01)
    after = max(f.offset + len(f.data) for f in _frames_on(peer, ch.Stream, channel_id))
    expect(MIB < after <= MIB + 50000, f"after MAX_DATA of 1 MiB + 50000 the IUT sent up to offset {after}")
    return f"stopped at {highest}, then at {after}"


@case(
    "ch/flow/20",
    section="flow.md §5",
    title="a sender out of connection credit sends DATA_BLOCKED with the limit, once",
    requirements=(
        "CH-5.1.4",
        "FLOW-5.1",
    ),
)
def _(iut: Iut) -> None:
    peer, _channel_id = _to_connection_limit(iut)
    blocked = [f.limit for f in _frames_on(peer, ch.DataBlocked)]
    expect_eq(blocked, [MIB], "the limits of the IUT's DATA_BLOCKED frames at the 1 MiB connection credit")


def _first_update(peer: Peer, at: float) -> int:
    """Open a sink, read 2049 bytes of its 4096-byte window at once at ``at``: the first MAX_CHANNEL_DATA."""
    peer.now = at
    channel_id = peer.open("sink")
    peer.send(ch.Stream(channel_id=channel_id, offset=0, data=payload(2049)), at=at)
    peer.timer(at + 0.03)
    updates = [int(f.maximum) for f in _frames_on(peer, ch.MaxChannelData, channel_id)]
    expect(bool(updates), f"no MAX_CHANNEL_DATA after 2049 of 4096 bytes were read at {at}")
    return updates[0]


@case(
    "ch/flow/21",
    section="flow.md §4",
    title="a window read fast doubles once the RTT is known, and does not grow without an RTT",
    requirements=("FLOW-4.3", "FLOW-4.4"),
)
def _(iut: Iut) -> str:
    peer = Peer(iut, channel_window=4096)
    unknown = _first_update(peer, 0.0)
    expect_eq(unknown, 2049 + 4096, "the limit with no RTT measured yet (bytes read + the initial window)")
    for i in range(4):  # RTT samples of 100 ms
        peer.now = 1.0 + i
        peer.call("conn_ping")
        peer.send(ack_of(p.pn for p in peer.received), at=peer.now + 0.1)
    grown = _first_update(peer, 5.0)
    expect_eq(grown, 2049 + 8192, "the limit after half a window was read at once with a 100 ms RTT (window doubled)")
    return f"limits {unknown} and {grown}"


def _message_channel(peer: Peer) -> int:
    """A message channel the IUT opens to ``chat``, accepted by the runner."""
    channel_id = int(peer.call("conn_open", service="chat", kind="message").answer["channel_id"])
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=MIB), at=peer.now + 0.01)
    return channel_id


def _carrying(packets: list[Packet], cls: type[Any]) -> list[int]:
    """The packet numbers of ``packets`` that hold a frame of type ``cls``."""
    return [p.pn for p in packets if any(isinstance(f, cls) for f in p.frames)]


@case(
    "ch/flow/22",
    section="flow.md §2.3",
    title="a lost message is not sent again: the default retransmission budget is 0",
    requirements=("FLOW-2.3.2",),
)
def _(iut: Iut) -> str:
    peer = Peer(iut)
    channel_id = _message_channel(peer)
    first = _carrying(peer.call("conn_send", channel_id=channel_id, data=b"lost", fin=False).packets, ch.Message)
    expect(len(first) == 1, "message 0 did not leave in one packet")
    for i in range(1, 5):
        peer.now += 0.001
        peer.call("conn_send", channel_id=channel_id, data=f"message {i}".encode(), fin=False)
    for _ in range(6):  # everything but message 0's packet is acknowledged: it is declared lost
        peer.send(ack_of(p.pn for p in peer.received if p.pn != first[0]), at=peer.now + 0.02)
        peer.timer(peer.now + 0.2)
    zero = [p.pn for p in peer.received for f in p.frames if isinstance(f, ch.Message) and f.message_id == 0]
    expect_eq(zero, first, "the packets carrying message 0 (it is lost and must not be sent again)")
    ids = sorted({f.message_id for f in _frames_on(peer, ch.Message, channel_id)})
    expect_eq(ids, [0, 1, 2, 3, 4], "the message ids sent")
    return f"message 0 only in packet {first[0]}"


@case(
    "ch/flow/23",
    section="flow.md §4",
    title="a lost MAX_DATA is sent again with the current limit",
    requirements=("FLOW-4.11",),
)
def _(iut: Iut) -> str:
    peer = Peer(iut, channel_window=4 * MIB)
    channel_id = peer.open("sink")
    offset = 0
    while offset <= MIB // 2:  # one byte beyond half the connection window: an update is due
        size = min(BIG, MIB // 2 + 1 - offset)
        peer.send(ch.Stream(channel_id=channel_id, offset=offset, data=payload(size, seed=offset)), at=peer.now + 0.001)
        offset += size
    if not _frames_on(peer, ch.MaxData):
        peer.timer(peer.now + 0.03)
    carriers = _carrying(peer.received, ch.MaxData)
    if not carriers:  # a SHOULD of flow.md §3.1 (ch/flow/14 warns about it): nothing to lose here
        return "inconclusive: no MAX_DATA after more than half the connection window was read"
    lost = carriers[0]
    limit = _frames_on(peer, ch.MaxData)[0].maximum
    for _ in range(3):  # packets after it, acknowledged while it is not
        peer.now += 0.001
        peer.call("conn_ping")
    for _ in range(4):
        peer.send(ack_of(p.pn for p in peer.received if p.pn != lost), at=peer.now + 0.02)
        peer.timer(peer.now + 0.2)
        if any(p.pn > lost for p in peer.received if any(isinstance(f, ch.MaxData) for f in p.frames)):
            break
    again = [f for p in peer.received if p.pn > lost for f in p.frames if isinstance(f, ch.MaxData)]
    expect(bool(again), f"the MAX_DATA of packet {lost} was declared lost and never sent again")
    expect(again[0].maximum >= limit, f"the MAX_DATA sent again, {again[0].maximum}, is below the lost one, {limit}")
    return f"MAX_DATA {limit} of packet {lost} sent again as {again[0].maximum}"


@case(
    "ch/flow/24",
    section="flow.md §2.3",
    title="a full message queue drops the oldest queued messages and keeps the newest",
    requirements=("FLOW-2.3.1",),
)
def _(iut: Iut) -> str:
    peer = Peer(iut)
    channel_id = _message_channel(peer)
    count = 200
    for i in range(count):  # nothing acknowledged: the congestion window holds most of them back
        peer.call("conn_send", channel_id=channel_id, data=payload(1000, seed=i), fin=False)
    before = {f.message_id for f in _frames_on(peer, ch.Message, channel_id)}
    for _ in range(40):
        peer.ack()
        peer.timer(peer.now + 0.02)
    sent = {f.message_id for f in _frames_on(peer, ch.Message, channel_id)}
    expect(count - 1 in sent, f"the newest message ({count - 1}) was never sent: the queue dropped it")
    missing = sorted(set(range(count)) - sent)
    if not missing:
        return f"nothing dropped: the IUT queued all {count} messages"
    expect(
        missing == list(range(missing[0], missing[-1] + 1)) and missing[0] == max(before, default=-1) + 1,
        f"the dropped messages {missing} are not the oldest queued (sent before the first ACK: {sorted(before)})",
    )
    return f"dropped {missing[0]}..{missing[-1]}"


@case(
    "ch/flow/25",
    section="flow.md §2.2",
    title="lost stream data is sent again before new data",
    requirements=("FLOW-2.2.3",),
)
def _(iut: Iut) -> str:
    peer = Peer(iut)
    channel_id = int(peer.call("conn_open", service="files", kind="stream").answer["channel_id"])
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=MIB), at=0.1)
    reply = peer.call("conn_send", channel_id=channel_id, data=payload(60000, seed=5), fin=False)
    streams = [p for p in reply.packets if any(isinstance(f, ch.Stream) for f in p.frames)]
    expect(len(streams) >= 5, f"the IUT sent {len(streams)} STREAM packets at once (the initial window allows ten)")
    lost = streams[0]
    lost_offset = min(f.offset for f in lost.frames if isinstance(f, ch.Stream))
    sent_before = max(f.offset + len(f.data) for f in _frames_on(peer, ch.Stream, channel_id))
    reply = peer.send(ack_of(p.pn for p in peer.received if p.pn != lost.pn), at=peer.now + 0.02)
    if not reply.frames(ch.Stream):
        reply = peer.timer(peer.now + 0.05)
    after = [f for f in reply.frames(ch.Stream) if f.channel_id == channel_id]
    expect(bool(after), "no stream data after the ACK that declared the first packet lost")
    expect(
        after[0].offset == lost_offset,
        f"the first STREAM frame after the loss starts at {after[0].offset}, not at the lost offset {lost_offset} "
        f"(new data started at {sent_before})",
    )
    return f"resent from {lost_offset} first"
