"""Liveness cases (spec/paths.md §7, frames.md §4.19): KEEPALIVE_INTERVAL on the wire, the interval
both sides agree on, the controlling side alone keeping a quiet session alive, and the idle timeout
that follows the interval in force.

The conformance protocol has no command that changes the interval of a running connection, so
these cases set it with ``channel_config`` at the start (the IUT announces it after the
handshake) and play the peer's announcements from the runner.  Raising the interval while its
announcement is lost is tested in memory (tests/channels/test_liveness.py).
"""

from __future__ import annotations

import itertools

from p2pos.proto.channels import frames as ch
from p2pos.proto.errors import ErrorCode

from .cases_channels import Peer, expect_close, expect_open
from .cases_frames import _rejects, _round_trip
from .checks import expect, short
from .iut import Iut
from .registry import case

LIVENESS = "paths.md §7"


@case(
    "frame/ch/24",
    section="frames.md §4.19",
    title="KEEPALIVE_INTERVAL encodes and decodes byte for byte; over one day or cut short is malformed",
    requirements=(
        "FRA-4.19.1",
        "FRA-5.3",
        "CONF-3.6.2",
    ),
)
def _(iut: Iut) -> None:
    frames: list[ch.Frame] = [
        ch.KeepaliveInterval(sequence=1, interval_ms=120_000),
        ch.KeepaliveInterval(sequence=2, interval_ms=0),
        ch.KeepaliveInterval(sequence=1 << 20, interval_ms=ch.MAX_KEEPALIVE_MS),
        ch.Ping(),
    ]
    _round_trip(iut, frames, "KEEPALIVE_INTERVAL")
    _rejects(iut, bytes.fromhex("1301"), "MALFORMED_MESSAGE", "a KEEPALIVE_INTERVAL without its interval")
    _rejects(iut, bytes.fromhex("130185265c01"), "MALFORMED_MESSAGE", "a KEEPALIVE_INTERVAL of one day and 1 ms")
    iut.error("frames_encode", frames=[{"type": "keepalive_interval", "sequence": 1, "interval_ms": 86_400_001}])


def _announced(peer: Peer) -> list[ch.KeepaliveInterval]:
    return [f for p in peer.received for f in p.frames if isinstance(f, ch.KeepaliveInterval)]


@case(
    "ch/live/7",
    section=LIVENESS,
    title="the IUT announces its keepalive interval; controlled, it sends no keepalive of its own, only ACKs",
    requirements=(
        "PTH-7.1",
        "PTH-7.4",
        "FRA-4.19.2",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, keepalive_interval=2.0)  # the IUT responds: the runner is the controlling side
    announced = _announced(peer)
    expect(
        [f.interval_ms for f in announced] == [2000] and announced[0].sequence > 0,
        f"KEEPALIVE_INTERVAL of 2000 ms in the IUT's first packets, got {short(peer.first.packets, 200)}",
    )
    pings = 0
    for step in range(1, 11):  # the runner keeps alive every 2 s for 20 s
        reply = peer.send(ch.Ping(), at=2.0 * step)
        expect_open(reply, f"at {peer.now} s")
        reply = peer.timer(2.0 * step + 0.03)
        expect_open(reply, f"at {peer.now} s")
        pings += sum(1 for p in peer.received for f in p.frames if isinstance(f, ch.Ping))
        expect(bool(peer.received_acks()), "no ACK of the runner's keepalives")
    expect(pings == 0, f"the controlled IUT sent {pings} PING(s) of its own")
    return None


@case(
    "ch/live/8",
    section=LIVENESS,
    title="the smaller interval is in force: the peer announces 1 s, the IUT (controlling, 5 s) keeps alive every 1 s",
    requirements=(
        "PTH-7.1",
        "PTH-7.4",
        "FRA-4.19.2",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, role="initiator", keepalive_interval=5.0)
    reply = peer.send(ch.KeepaliveInterval(sequence=1, interval_ms=1000), at=0.1)
    expect_open(reply, "on the runner's KEEPALIVE_INTERVAL")
    peer.timer(0.2)  # the IUT's ACK of it leaves by max_ack_delay
    peer.ack()
    start = len(peer.received)
    reply = peer.timer(1.0)
    early = reply.frames(ch.Ping)
    expect(not early, f"a keepalive PING before 1 s after the IUT's last packet: {short(reply.packets)}")
    times: list[float] = []
    at = 1.0
    while at < 6.0 and len(times) < 4:
        at = round(at + 0.05, 3)
        reply = peer.timer(at)
        expect_open(reply, f"at {at} s")
        if reply.frames(ch.Ping):
            times.append(at)
            peer.ack()
    expect(len(times) >= 4, f"keepalive PINGs at {times} by 6 s: the peer asked for one every 1 s")
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(times)]
    expect(all(0.95 <= g <= 1.1 for g in gaps), f"gaps between keepalives {gaps} (1 s asked)")
    expect(len(peer.received) > start, "no packets")
    return f"keepalives at {times}"


@case(
    "ch/live/9",
    section=LIVENESS,
    title="the idle timeout follows the interval in force: 3 x 2 s + 1 s of silence closes with IDLE_TIMEOUT",
    requirements=(
        "PTH-7.2",
        "CH-9.2.1",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, keepalive_interval=2.0)  # no idle_timeout configured: it follows the interval
    reply = peer.send(ch.Ping(), at=1.0)  # the runner's last packet
    reply = peer.timer(1.0 + 6.9)
    expect_open(reply, "6.9 s after the runner's last packet (idle timeout 7 s)")
    reply = peer.timer(1.0 + 7.0)
    expect_close(reply, ErrorCode.IDLE_TIMEOUT, "7 s after the runner's last packet")
    return None


@case(
    "ch/live/10",
    section=LIVENESS,
    title="a keepalive that draws no answer is sent again within max(1 s, 2 smoothed RTT)",
    requirements=("PTH-7.5",),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, role="initiator", keepalive_interval=2.0)  # acknowledged at 0: smoothed RTT near 0
    reply = peer.timer(2.0)
    expect(bool(reply.frames(ch.Ping)), f"no keepalive PING at 2.0: {short(reply.packets, 200)}")
    start = len(peer.received)
    again: list[float] = []
    at = 2.0
    while at < 3.0 and not again:  # the runner stays silent
        at = round(at + 0.05, 3)
        reply = peer.timer(at)
        expect_open(reply, f"at {at} s")
        if any(isinstance(f, ch.Ping) for p in peer.received[start:] for f in p.frames):
            again.append(at)
    expect(bool(again), "the unanswered keepalive of 2.0 s was not sent again by 3.0 s")
    return f"sent again by {again[0]} s"


@case(
    "ch/live/11",
    section=LIVENESS,
    title="with idle_close_after, a session with no channel closes gracefully (NO_ERROR) when that time has passed",
    requirements=("PTH-7.6",),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, idle_close_after=5.0)  # no keepalives (QUIET): nothing else happens
    for at in (1.0, 2.0, 3.0, 4.0, 4.9):
        reply = peer.send(ch.Ping(), at=at)  # the peer is there: only the idle close can end it
        expect_open(reply, f"at {at} s")
        peer.timer(at + 0.03)
    reply = peer.timer(5.0)
    expect_close(reply, ErrorCode.NO_ERROR, "5 s after the start, with no channel and no application call")
    return None


@case(
    "ch/live/12",
    section=LIVENESS,
    title="a PATH_CHALLENGE alone draws its PATH_RESPONSE and no ACK-only packet (a standby keepalive: 2 packets)",
    requirements=(
        "FRA-3.2",
        "PTH-7.4",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    start = len(peer.received)
    reply = peer.send(ch.PathChallenge(data=bytes.fromhex("0102030405060708")), at=0.1)
    expect_open(reply, "a PATH_CHALLENGE")
    peer.timer(0.1 + 0.2)  # well past max_ack_delay
    packets = peer.received[start:]
    expect(
        len(packets) == 1 and any(isinstance(f, ch.PathResponse) for f in packets[0].frames),
        f"one packet, with the PATH_RESPONSE, in answer to a lone PATH_CHALLENGE; got {short(packets, 200)}",
    )
    return None
