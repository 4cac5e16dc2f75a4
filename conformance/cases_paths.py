"""Path cases (spec/paths.md, frames.md §4.17-§4.18): PATH_CHALLENGE and PATH_RESPONSE on the wire.

The conformance protocol gives the IUT one path (the runner's link), so these cases check what
a single path shows: the frames' encoding, the answer to a challenge (the same data, in a packet
of its own padded to 1200 bytes, on the path it came by), and that a response nobody asked for
is ignored.  Several paths at once are tested in memory (tests/paths/).
"""

from __future__ import annotations

from p2pos.proto.channels import frames as ch
from p2pos.proto.session.record import OVERHEAD

from .cases_channels import Peer, acked, expect_open
from .cases_frames import _rejects, _round_trip
from .checks import expect, expect_eq, short
from .iut import Iut
from .registry import case

PATHS = "paths.md §3"


@case(
    "frame/ch/23",
    section="frames.md §4.17",
    title="PATH_CHALLENGE and PATH_RESPONSE encode and decode byte for byte; short data is malformed",
    requirements=(
        "FRA-4.17.1",
        "FRA-4.18.1",
        "FRA-5.3",
        "CONF-3.6.2",
    ),
)
def _(iut: Iut) -> None:
    data = bytes.fromhex("0123456789abcdef")
    _round_trip(iut, [ch.PathChallenge(data=data), ch.PathResponse(data=data), ch.Ping()], "path frames")
    _rejects(iut, bytes.fromhex("1101020304050607"), "MALFORMED_MESSAGE", "a PATH_CHALLENGE with 7 bytes")
    _rejects(iut, bytes.fromhex("12"), "MALFORMED_MESSAGE", "a PATH_RESPONSE with no data")
    iut.error("frames_encode", frames=[{"type": "path_challenge", "data": "0102"}])


@case(
    "ch/pathval/1",
    section=PATHS,
    title="a PATH_CHALLENGE is answered at once with its data, in a packet padded to 1200 bytes",
    requirements=(
        "FRA-4.18.2",
        "PTH-3.2",
        "PTH-3.3",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    data = bytes.fromhex("a1b2c3d4e5f60718")
    reply = peer.send(ch.PathChallenge(data=data), at=0.1)
    responses = [p for p in reply.packets if any(isinstance(f, ch.PathResponse) for f in p.frames)]
    expect(len(responses) == 1, f"one packet with a PATH_RESPONSE, got {short(reply.packets, 200)}")
    echoed = [f.data for f in responses[0].frames if isinstance(f, ch.PathResponse)]
    expect_eq(echoed, [data], "the PATH_RESPONSE data")
    size = OVERHEAD + len(ch.encode_frames(responses[0].frames))
    expect(size >= 1200, f"the datagram with the PATH_RESPONSE is {size} bytes, not padded to 1200")
    expect_open(reply, "a PATH_CHALLENGE")
    return f"answered in a {size}-byte datagram"


@case(
    "ch/pathval/2",
    section=PATHS,
    title="a PATH_RESPONSE that echoes no challenge is ignored; the connection goes on",
    requirements=(
        "FRA-4.18.2",
        "PTH-3.2",
    ),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    reply = peer.send(ch.PathResponse(data=bytes(8)), at=0.1)
    expect_open(reply, "an unsolicited PATH_RESPONSE")
    channel_id = peer.open_echo()
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=0, data=b"still here"), at=0.2)
    expect_open(reply, "data after an unsolicited PATH_RESPONSE")
    echoed, _ = peer.stream_bytes(channel_id)
    expect_eq(echoed, b"still here", "the echo after an unsolicited PATH_RESPONSE")


@case(
    "ch/pathval/3",
    section=PATHS,
    title="each of several PATH_CHALLENGEs in one packet is answered",
    requirements=(
        "FRA-4.18.2",
        "PTH-3.2",
    ),
)
def _(iut: Iut) -> None:
    peer = Peer(iut)
    first, second = bytes.fromhex("1111111111111111"), bytes.fromhex("2222222222222222")
    reply = peer.send(ch.PathChallenge(data=first), ch.PathChallenge(data=second), at=0.1)
    echoed = [f.data for f in reply.frames(ch.PathResponse)]
    expect_eq(sorted(echoed), sorted([first, second]), "the PATH_RESPONSE data")


STREAM_PATHS = "paths.md §5"


@case(
    "ch/stream/1",
    section=STREAM_PATHS,
    title="on a stream-carried path every ack-eliciting packet is acknowledged, as on a datagram path",
    requirements=("PTH-5.1",),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, path_kind="stream")
    channel_id = peer.open("sink")
    sent = []
    for i in range(4):
        sent.append(peer.link.next_counter)
        peer.send(ch.Stream(channel_id=channel_id, offset=3 * i, data=b"abc"), at=0.1 + 0.01 * i)
    peer.timer(0.5)  # any delayed ACK is due by now
    covered = set().union(*(acked(f) for f in peer.received_acks())) if peer.received_acks() else set()
    missing = [pn for pn in sent if pn not in covered]
    expect(not missing, f"packets {missing} of STREAM data were never acknowledged on a stream-carried path")
    return f"{len(sent)} packets acknowledged"


@case(
    "ch/stream/2",
    section=STREAM_PATHS,
    title="bytes handed to a stream-carried path are sent again until acknowledged (a carrier left while it held them)",
    requirements=("PTH-5.2", "PTH-5.1"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, path_kind="stream")
    channel_id = peer.open_echo()
    peer.ack()
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=0, data=b"held by the relay"), at=0.1)
    first = [f for f in reply.frames(ch.Stream) if f.channel_id == channel_id]
    expect(bool(first), f"internal: no echo of the data: {short(reply.packets, 200)}")
    # The runner never acknowledges the echo, as if the relay that carried it had died holding it.
    resent = 0
    for step in range(1, 20):
        reply = peer.timer(0.1 + 0.5 * step)
        resent += sum(1 for f in reply.frames(ch.Stream) if f.channel_id == channel_id and f.offset == 0)
        if resent:
            break
    expect(resent > 0, "the echoed bytes were never sent again: the IUT took the carrier's hand-off for delivery")
    return f"sent again by {peer.now:.1f} s"


@case(
    "ch/stream/3",
    section=STREAM_PATHS,
    title="a stream-carried path sends packets larger than the base PMTU and no PMTU probes",
    requirements=("PTH-5.3",),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, path_kind="stream", pmtu_probing=True, channel_window=65536)
    channel_id = peer.open_echo()
    peer.ack()
    data = bytes(range(256)) * 16
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=0, data=data), at=0.1)
    sizes = [OVERHEAD + len(ch.encode_frames(p.frames)) for p in reply.packets]
    expect(max(sizes, default=0) > 1200, f"the echo of {len(data)} bytes came in packets of {sizes} bytes")
    peer.timer(2.0)
    probes = [p for p in peer.received if any(isinstance(f, ch.Padding) for f in p.frames)]
    expect(not probes, f"PMTU probes (padded packets) on a stream-carried path: {short(probes, 200)}")
    return f"packets of {sizes} bytes"
