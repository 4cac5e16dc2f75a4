"""Cases written for mutants of frame encodings and flow control (spec/frames.md, spec/flow.md)
that the suite let survive (conformance/MUTATION.md).

Each case tests a requirement a surviving mutant of the core (channels/frames.py,
channels/flow.py) broke; the mutant it kills is listed in tests/conformance/kills_frames.py,
which CI runs.
"""

from __future__ import annotations

from p2pos.proto.channels import frames as ch
from p2pos.proto.common.varint import MAX_VARINT
from p2pos.proto.errors import ErrorCode

from .cases_channels import Peer, ack_of, expect_close, expect_open, payload
from .cases_frames import _decode, _rejects, _round_trip
from .cases_req_frames import MIB, _echo_until, _frames_on, _to_connection_limit
from .checks import expect, expect_eq
from .iut import Iut
from .registry import case


@case(
    "frame/ch/20",
    section="frames.md §4.7",
    title="STREAM frames at the varint-width boundaries of channel id, offset and length encode byte for byte",
    requirements=(
        "FRA-2.1",
        "FRA-4.7.1",
        "CONF-3.6.1",
    ),
)
def _(iut: Iut) -> None:
    # Each field on both sides of a varint width change: 1|2 bytes for the channel id and the length,
    # 2|4|8 bytes for the offset, with and without FIN.
    frames: list[ch.Frame] = []
    for channel_id in (0x3F, 0x40, 0x100):
        for offset, length in ((0x3FFF, 0x40), (0x4000, 0x40), (0x3FFF_FFFF, 0x3FFF), (0x4000_0000, 0x40)):
            data = bytes((channel_id + i) % 251 for i in range(length))
            frames.append(ch.Stream(channel_id=channel_id, offset=offset, data=data, fin=channel_id % 2 == 1))
    for channel_id, offset, length in ((0x40, 0x4000, 0x3F), (0x41, 0x4000, 0x4000), (0x3F, 0x4000, 0x3F)):
        frames.append(ch.Stream(channel_id=channel_id, offset=offset, data=bytes(length), fin=True))
    _round_trip(iut, frames, "STREAM")


@case(
    "frame/ch/21",
    section="frames.md §4.4",
    title="an OPEN with a one-byte service encodes and decodes; one truncated after a long packet is malformed",
    requirements=(
        "FRA-4.4.1",
        "FRA-4.4.3",
        "FRA-5.3",
        "CONF-3.6.1",
        "CONF-3.6.3",
    ),
)
def _(iut: Iut) -> None:
    shortest = ch.Open(channel_id=6, kind=ch.ChannelKind.MESSAGE, service="x", initial_max_data=100)
    _round_trip(iut, [shortest], "OPEN of a one-byte service")
    # The OPEN ends right after its channel id, past byte 256 of the packet (positions above 256 are
    # not small integers in CPython: a parser comparing them by identity misses the end).
    _rejects(iut, bytes(300) + b"\x03\x05", "MALFORMED_MESSAGE", "an OPEN without its kind after 300 PADDING")
    _rejects(iut, bytes(300) + b"\x03\x05\x00", "MALFORMED_MESSAGE", "an OPEN without its service after 300 PADDING")


@case(
    "frame/ch/22",
    section="frames.md §4.1",
    title="PADDING frames with a non-minimal type after PADDING add up to the right count",
    requirements=(
        "FRA-2.3",
        "FRA-4.1.2",
        "CONF-3.6.3",
    ),
)
def _(iut: Iut) -> None:
    # 00 00 | 4000 (PADDING, two-byte type) | 00 00 | PING: five PADDING frames, then PING.
    expect_eq(_decode(iut, bytes.fromhex("00004000000001")), [ch.Padding(length=5), ch.Ping()], "00004000000001")
    packet = bytes.fromhex("00" + "c000000000000000" + "00" + "8000000001")
    expect_eq(_decode(iut, packet), [ch.Padding(length=4), ch.Ping()], packet.hex())
    expect_eq(
        _decode(iut, bytes.fromhex("0140000a05")),
        [ch.Ping(), ch.Padding(length=1), ch.MaxData(maximum=5)],
        "0140000a05",
    )


@case(
    "ch/flow/26",
    section="flow.md §6",
    title="data ending at exactly 2^62-1 beyond a known final size is FINAL_SIZE_ERROR, not a flow control error",
    requirements=(
        "FLOW-6.1",
        "FLOW-6.2",
        "FLOW-6.3",
    ),
)
def _(iut: Iut) -> None:
    # 2^62-1 is a valid stream end (frames.md §4.7): the final size check comes first (FLOW-6.2).
    peer = Peer(iut, channel_window=4096)
    channel_id = peer.open("sink")
    expect_open(
        peer.send(ch.Stream(channel_id=channel_id, offset=0, data=b"abc", fin=True), at=0.1), "a STREAM_FIN at 3"
    )
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=MAX_VARINT - 1, data=b"z"), at=0.2)
    expect_close(reply, ErrorCode.FINAL_SIZE_ERROR, "one byte ending at 2^62-1 after the final size 3")


def _limits(peer: Peer, channel_id: int) -> list[int]:
    """The MAX_CHANNEL_DATA values the IUT sent for ``channel_id`` so far."""
    return [int(f.maximum) for f in _frames_on(peer, ch.MaxChannelData, channel_id)]


def _read_at(peer: Peer, channel_id: int, offset: int, size: int, at: float) -> int:
    """Send ``size`` bytes at ``offset`` to a sink at ``at`` (it reads them at once): the new MAX_CHANNEL_DATA."""
    before = len(_limits(peer, channel_id))
    expect_open(peer.send(ch.Stream(channel_id=channel_id, offset=offset, data=payload(size)), at=at), f"data at {at}")
    peer.timer(at + 0.03)
    limits = _limits(peer, channel_id)
    expect(len(limits) > before, f"no MAX_CHANNEL_DATA after bytes {offset}..{offset + size} were read at {at}")
    return limits[before]


@case(
    "ch/flow/27",
    section="flow.md §4",
    title="the window doubles only if the epoch's reading rate would use it within four RTTs",
    requirements=("FLOW-4.3",),
)
def _(iut: Iut) -> str:
    peer = Peer(iut, channel_window=4096)
    for i in range(30):  # RTT samples of 100 ms: the smoothed RTT converges to 98..100 ms
        peer.now = 1.0 + i * 0.2
        peer.call("conn_ping")
        peer.send(ack_of(p.pn for p in peer.received), at=peer.now + 0.1)
    # Half the 4096-byte window (2049 bytes) read in 150 ms: 0.15 * 4096 < 4 * 0.1 * 2049, so it doubles.
    peer.now = 10.0
    fast = peer.open("sink")
    expect_eq(_read_at(peer, fast, 0, 2049, 10.15), 2049 + 8192, "the limit after 2049 bytes read in 150 ms")
    # The next epoch: 4097 of 8192 bytes read in 1 s: 1 * 8192 > 4 * 0.1 * 4097, so it stays.
    expect_eq(_read_at(peer, fast, 2049, 4097, 11.15), 6146 + 8192, "the limit after 4097 more bytes read in 1 s")
    # A new channel read slowly from the start: 2049 bytes in 300 ms: 0.3 * 4096 > 4 * 0.1 * 2049.
    peer.now = 12.0
    slow = peer.open("sink")
    expect_eq(_read_at(peer, slow, 0, 2049, 12.3), 2049 + 4096, "the limit after 2049 bytes read in 300 ms")
    return "doubled at 150 ms, kept at 1 s and 300 ms"


#: The initial channel window of the fast-sink cases (the default of ChannelConfig is 256 KiB too).
_SINK_WINDOW = 262144


def _fast_sink(iut: Iut, *, until: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """With a 100 ms RTT known, 60000 bytes a millisecond to a sink that reads them at once, until the
    IUT sent ``until`` MAX_DATA (at most 20 records): the (bytes read, window = limit - bytes read) of
    each MAX_DATA and of each MAX_CHANNEL_DATA, in order."""
    peer = Peer(iut, channel_window=_SINK_WINDOW)
    for i in range(30):  # RTT samples of 100 ms, so that windows may grow (FLOW-4.4)
        peer.now = 1.0 + i * 0.2
        peer.call("conn_ping")
        peer.send(ack_of(p.pn for p in peer.received), at=peer.now + 0.1)
    peer.now = 8.0
    sink = peer.open("sink")
    connection: list[tuple[int, int]] = []
    channel: list[tuple[int, int]] = []
    read = 0
    for step in range(20):
        reply = peer.send(ch.Stream(channel_id=sink, offset=read, data=payload(60000)), at=8.0 + step * 0.001)
        expect_open(reply, f"bytes {read}..{read + 60000}")
        read += 60000
        channel += [(read, int(f.maximum) - read) for f in reply.frames(ch.MaxChannelData)]
        connection += [(read, int(f.maximum) - read) for f in reply.frames(ch.MaxData)]
        peer.ack()
        if len(connection) >= until:
            break
    expect(len(connection) >= until, f"fewer than {until} MAX_DATA while 1.2 MB were read at once: {connection}")
    return connection, channel


@case(
    "ch/flow/28",
    section="flow.md §4",
    title="a connection window raised for a fast channel is not doubled too when less than half of it was read",
    requirements=("FLOW-4.3",),
)
def _(iut: Iut) -> str:
    connection, channel = _fast_sink(iut, until=2)
    (first, _), (second, window) = connection[:2]
    widest = max(w for at, w in channel if at <= second)
    epoch = second - first
    # Doubling needs half the window read in the epoch (window <= 4 * epoch); a window only kept in
    # line with the channel's (FLOW-3.1.6: 1.5 times it in the reference) stays within twice it.
    expect(
        window <= max(4 * epoch, 2 * widest),
        f"MAX_DATA at {second} bytes read advertises a window of {window}: more than twice the channel window "
        f"{widest}, and doubled although only {epoch} bytes were read since the previous MAX_DATA",
    )
    return f"connection windows {[w for _, w in connection]}, channel windows {[w for _, w in channel]}"


@case(
    "ch/flow/29",
    section="flow.md §2.1",
    title="the bytes before a gap are read and echoed at once while those after it wait, then all of them",
    requirements=(
        "FLOW-2.1.1",
        "FLOW-2.1.2",
    ),
)
def _(iut: Iut) -> None:
    peer = Peer(iut, channel_window=4096)
    channel_id = peer.open_echo()
    data = payload(300, seed=5)
    expect_open(peer.send(ch.Stream(channel_id=channel_id, offset=200, data=data[200:]), at=0.1), "bytes 200..300")
    # Only bytes 0..100 can be read: fewer than the highest offset received (300).
    expect_open(peer.send(ch.Stream(channel_id=channel_id, offset=0, data=data[:100]), at=0.2), "bytes 0..100")
    expect_eq(_echo_until(peer, channel_id, 100, rounds=3), data[:100], "the echo of the bytes before the gap")
    expect_open(
        peer.send(ch.Stream(channel_id=channel_id, offset=100, data=data[100:200]), at=peer.now + 0.01), "100..200"
    )
    expect_eq(_echo_until(peer, channel_id, 300, rounds=5), data, "the echo once the gap is filled")


@case(
    "ch/flow/30",
    section="flow.md §5",
    title="a second channel blocked at the same connection limit brings no second DATA_BLOCKED",
    requirements=("FLOW-5.1",),
)
def _(iut: Iut) -> None:
    peer, first = _to_connection_limit(iut)
    second = int(peer.call("conn_open", service="files", kind="stream").answer["channel_id"])
    peer.send(ch.Accept(channel_id=second, initial_max_data=MIB), at=peer.now + 0.01)
    peer.call("conn_send", channel_id=second, data=payload(1000, seed=8), fin=False)
    peer.call("conn_send", channel_id=first, data=payload(1000, seed=9), fin=False)
    for _ in range(3):
        peer.ack()
        peer.timer(peer.now + 0.05)
    blocked = [f.limit for f in _frames_on(peer, ch.DataBlocked)]
    expect_eq(blocked, [MIB], "the limits of the IUT's DATA_BLOCKED frames, two channels blocked at 1 MiB")


@case(
    "ch/flow/31",
    section="flow.md §4",
    title="windows growing fast never shrink: each MAX_DATA and MAX_CHANNEL_DATA leaves at least the last window",
    requirements=("FLOW-4.3", "FLOW-4.5"),
)
def _(iut: Iut) -> str:
    connection, channel = _fast_sink(iut, until=2)
    for name, updates, initial in (("MAX_DATA", connection, MIB), ("MAX_CHANNEL_DATA", channel, _SINK_WINDOW)):
        last = initial  # the connection's initial limit is 1 MiB (FLOW-4.2); the channel's is its OPEN's
        for read, window in updates:
            expect(window >= last, f"{name} at {read} bytes read leaves a window of {window}, below {last}")
            last = window
    return f"connection windows {[w for _, w in connection]}, channel windows {[w for _, w in channel]}"
