"""Path cases (spec/paths.md, frames.md §4.17-§4.18): PATH_CHALLENGE and PATH_RESPONSE on the wire.

The conformance protocol gives the IUT one path (the runner's link), so these cases check what
a single path shows: the frames' encoding, the answer to a challenge (the same data, in a packet
of its own padded to 1200 bytes, on the path it came by), and that a response nobody asked for
is ignored.  Several paths at once are tested in memory (tests/paths/).
"""

from __future__ import annotations

from p2pos.proto.channels import frames as ch
from p2pos.proto.session.record import OVERHEAD

from .cases_channels import Peer, expect_open
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
