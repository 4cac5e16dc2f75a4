"""Cases with several paths (spec/paths.md §3-§5), over the path commands of spec/conformance.md §3.11.

The runner plays the peer on every path: it names the path each of its records arrives on
(``conn_receive`` with ``path_id``, or ``new_path`` for a rebinding) and reads the path each of
the IUT's datagrams goes on (``out_paths``).  An IUT without the path commands answers
``conn_add_path`` with an error, and these cases are unsupported for it.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from p2pos.proto.channels import frames as ch

from .cases_channels import Packet, Peer, Reply, ack_of
from .checks import CaseFailed, Unsupported, expect, expect_eq, short
from .iut import Iut
from .reference import out_of
from .registry import case

VALIDATION, REBINDING, ACTIVE, STREAM_PATHS = "paths.md §3.2", "paths.md §3.4", "paths.md §4", "paths.md §5"
PROBING = (ch.PathChallenge, ch.PathResponse, ch.Padding, ch.Ack)
RELAY, DIRECT = 3, 0  # ranks (paths.md §4)


@dataclasses.dataclass(slots=True)
class Sent:
    """One of the IUT's DATA records with the path it went on and its datagram's size."""

    path: int
    packet: Packet
    size: int
    at: float


class PathPeer(Peer):
    """``Peer`` with paths: records go to the IUT on a named path; its records are filed by path."""

    def __init__(self, iut: Iut, **kw: Any) -> None:
        self.sent: list[Sent] = []
        self.next_timer: float | None = None
        super().__init__(iut, **kw)

    def call(self, cmd: str, **fields: Any) -> Reply:
        return self._file(self.iut.ok(cmd, now=self.now, **fields), cmd)

    def _file(self, answer: dict[str, Any], cmd: str) -> Reply:
        """The answer's records opened and filed by the path each went on (``out_paths``)."""
        datagrams = out_of(answer)
        paths = answer.get("out_paths", None if datagrams else [])  # no datagrams: no path ids needed
        expect(
            isinstance(paths, list) and len(paths) == len(datagrams),
            f"the answer to {cmd} needs out_paths, one path id per datagram (conformance.md §3.11): {short(answer)}",
        )
        assert isinstance(paths, list)
        timer = answer.get("timer")
        self.next_timer = float(timer) if isinstance(timer, int | float) else None
        reply = Reply(answer, [])
        for datagram, path in zip(datagrams, paths, strict=True):
            part = self._absorb({"events": []}, [datagram])
            reply.packets += part.packets
            reply.close = part.close if part.close is not None else reply.close
            self.sent += [Sent(int(path), p, len(datagram), self.now) for p in part.packets]
        return reply

    def send_on(self, path: int, *frames: ch.Frame, at: float | None = None) -> Reply:
        """One DATA record holding ``frames``, arriving on the IUT's path ``path``."""
        if at is not None:
            self.now = at
        return self.call("conn_receive", data=self.link.data(ch.encode_frames(frames)), path_id=path)

    def add_path(
        self, rank: int, *, at: float | None = None, kind: str = "datagram", **fields: Any
    ) -> tuple[int, Reply]:
        """``conn_add_path`` (``fields``: e.g. a ``socket`` label); Unsupported if the IUT does not take it."""
        if at is not None:
            self.now = at
        answer = self.iut.call("conn_add_path", now=self.now, kind=kind, rank=rank, **fields)
        if answer.get("ok") is not True:
            raise Unsupported(f"the IUT does not take conn_add_path (conformance.md §3.11): {short(answer)}")
        path = answer.get("path_id")
        expect(isinstance(path, int), f"conn_add_path answers a path_id: {short(answer)}")
        assert isinstance(path, int)
        return path, self._file(answer, "conn_add_path")

    def challenges(self, path: int, since: float = 0.0) -> list[tuple[float, bytes, int]]:
        """``(time, data, datagram size)`` of every PATH_CHALLENGE the IUT sent on ``path`` from ``since``."""
        return [
            (s.at, f.data, s.size)
            for s in self.sent
            if s.path == path and s.at >= since
            for f in s.packet.frames
            if isinstance(f, ch.PathChallenge)
        ]

    def answer(self, path: int, data: bytes, *, on: int | None = None, at: float | None = None) -> Reply:
        """Echo a challenge the IUT sent on ``path`` (on ``on``, by default the same path)."""
        return self.send_on(path if on is None else on, ch.PathResponse(data=data), at=at)

    def validate(self, path: int, *, at: float) -> Reply:
        found = self.challenges(path)
        expect(bool(found), f"no PATH_CHALLENGE on path {path} to answer")
        return self.answer(path, found[-1][1], at=at)

    def on_path(self, path: int, since: float = 0.0) -> list[Sent]:
        return [s for s in self.sent if s.path == path and s.at >= since]

    def step(self, until: float) -> Reply:
        """Run the IUT's timers once: at its next timer if that comes by ``until``, else at ``until``."""
        timer = self.next_timer
        if timer is None or timer > until:
            return self.timer(until)
        return self.timer(max(timer, self.now + 0.001))  # a timer already due runs a millisecond on


def _non_probing(sent: list[Sent]) -> list[Sent]:
    return [s for s in sent if any(not isinstance(f, PROBING) for f in s.packet.frames)]


def _event(reply: Reply, kind: str, **want: Any) -> dict[str, Any] | None:
    for e in reply.events(kind):
        if all(e.get(k) == v for k, v in want.items()):
            return e
    return None


def _controlling(iut: Iut, handshake_rank: int = RELAY) -> PathPeer:
    """The IUT as the session's initiator (controlling, paths.md PTH-4.2), its handshake path of ``handshake_rank``."""
    peer = PathPeer(iut, role="initiator")
    peer.call("conn_describe_path", path_id=0, kind="datagram", rank=handshake_rank)
    return peer


def _stream_on(peer: PathPeer, path: int, channel_id: int, offset: int, data: bytes, *, at: float) -> Reply:
    return peer.send_on(path, ch.Stream(channel_id=channel_id, offset=offset, data=data), at=at)


def _echoed_on(peer: PathPeer, path: int, channel_id: int, since: float = 0.0) -> bytes:
    """The echo's stream bytes the IUT sent on ``path`` from ``since``, by offset (retransmissions included)."""
    out = bytearray()
    for s in peer.on_path(path, since):
        for f in s.packet.frames:
            if isinstance(f, ch.Stream) and f.channel_id == channel_id:
                end = f.offset + len(f.data)
                if len(out) < end:
                    out.extend(bytes(end - len(out)))
                out[f.offset : end] = f.data
    return bytes(out)


@case(
    "ch/multipath/1",
    section=VALIDATION,
    title="a path the driver adds is challenged at once in a datagram padded to 1200 bytes, "
    "and carries nothing but probing frames until it validates",
    requirements=("PTH-3.1", "PTH-3.2", "PTH-3.3", "CONF-3.11.1"),
)
def _(iut: Iut) -> str:
    peer = _controlling(iut)
    path, _ = peer.add_path(DIRECT, at=0.1)
    expect(path != 0, "the new path has an id other than the handshake's (0)")
    found = peer.challenges(path)
    expect(len(found) == 1, f"one PATH_CHALLENGE on the new path at once, got {len(found)}")
    expect(found[0][2] >= 1200, f"the challenge's datagram is {found[0][2]} bytes, not padded to 1200 (PTH-3.3)")
    channel_id = peer.open_echo()
    _stream_on(peer, 0, channel_id, 0, b"before validation " * 20, at=0.2)
    peer.ack()
    leaked = _non_probing(peer.on_path(path))
    expect(not leaked, f"data on a path that is not validated: {short([s.packet for s in leaked], 200)}")
    echoed = _echoed_on(peer, 0, channel_id)
    expect_eq(echoed, b"before validation " * 20, "the echo, on the validated handshake path")
    return f"challenge of {found[0][2]} bytes on path {path}; the echo stayed on path 0"


@case(
    "ch/multipath/2",
    section=VALIDATION,
    title="an unanswered challenge is sent again after 250 ms and then at doubling intervals, with new "
    "data each time; 3 s after the first the path is DEAD; then it is probed again after 1 s and at doubling intervals",
    requirements=("PTH-3.4", "PTH-4.5", "CONF-3.11.2"),
)
def _(iut: Iut) -> str:
    peer = _controlling(iut)
    path, _ = peer.add_path(DIRECT, at=0.1)
    dead_at: float | None = None
    while peer.now < 12.0:
        reply = peer.step(12.0)
        if dead_at is None and _event(reply, "path_dead", path_id=path) is not None:
            dead_at = peer.now
    times = [at for at, _, _ in peer.challenges(path)]
    datas = [data for _, data, _ in peer.challenges(path)]
    expect(len(set(datas)) == len(datas), f"a challenge's data was used twice: {[d.hex() for d in datas]}")
    expect(dead_at is not None, "no path_dead event within 12 s of an unanswered challenge")
    assert dead_at is not None
    expect(2.99 <= dead_at - 0.1 <= 3.2, f"path_dead {dead_at - 0.1:.2f} s after the first challenge, not ~3 s")
    before = [round(at - 0.1, 2) for at in times if at < dead_at]
    expect(len(before) >= 3, f"retries before giving up: {before}")
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(before)]
    expect(0.24 <= gaps[0] <= 0.27, f"the first retry came {gaps[0]} s after the challenge, not 250 ms")
    for a, b in itertools.pairwise(gaps):
        expect(1.9 * a <= b <= 2.1 * a + 0.01, f"retry intervals {gaps} do not double")
    after = [round(at - dead_at, 2) for at in times if at >= dead_at]
    expect(len(after) >= 2, f"a DEAD path is probed again after 1 s, then at doubling intervals; saw {after}")
    expect(0.95 <= after[0] <= 1.1, f"the first re-probe {after[0]} s after path_dead, not 1 s")
    return f"challenges at +{before} s, dead at +{dead_at - 0.1:.2f} s, re-probes at +{after} s after"


@case(
    "ch/multipath/3",
    section=ACTIVE,
    title="the controlling side moves its data at once to a path of a better rank when it validates, "
    "and sends data and ACKs there only, even for data the peer sends on the old path",
    requirements=("PTH-4.1", "PTH-4.2", "PTH-3.2", "PTH-2.1", "CONF-3.11.3"),
)
def _(iut: Iut) -> str:
    peer = _controlling(iut)
    path, _ = peer.add_path(DIRECT, at=0.1)
    channel_id = peer.open_echo()
    reply = peer.validate(path, at=0.15)
    expect(_event(reply, "path_validated", path_id=path) is not None, f"no path_validated: {short(reply.answer)}")
    moved = _event(reply, "path_active", path_id=path, old_path_id=0)
    expect(moved is not None, f"no path_active from 0 to {path} when it validated: {short(reply.answer)}")
    _stream_on(peer, 0, channel_id, 0, b"sent on the old path", at=0.2)
    peer.timer(0.3)
    after = _non_probing(peer.on_path(0, since=0.15))
    expect(not after, f"data or ACKs on the old path after the move: {short([s.packet for s in after], 200)}")
    expect_eq(_echoed_on(peer, path, channel_id), b"sent on the old path", "the echo, on the new active path")
    acks = [f for s in peer.on_path(path, since=0.2) for f in s.packet.frames if isinstance(f, ch.Ack)]
    expect(bool(acks), "no ACK on the new active path for the data received on the old one")
    pns = [s.packet.pn for s in peer.sent]
    expect(len(set(pns)) == len(pns), f"a packet number used twice across the paths (PTH-2.1): {pns}")
    expect(pns == sorted(pns), f"packet numbers not in sending order across the paths (one space, PTH-2.1): {pns}")
    return f"moved: {moved}"


@case(
    "ch/multipath/4",
    section=VALIDATION,
    title="a PATH_RESPONSE arriving on another path validates the path its challenge went on",
    requirements=("PTH-3.2",),
)
def _(iut: Iut) -> None:
    peer = _controlling(iut)
    path, _ = peer.add_path(DIRECT, at=0.1)
    (_, data, _), *_ = peer.challenges(path)
    reply = peer.answer(path, data, on=0, at=0.15)
    expect(_event(reply, "path_validated", path_id=path) is not None, f"no path_validated: {short(reply.answer)}")


@case(
    "ch/multipath/5",
    section=ACTIVE,
    title="a path of the same rank validates but does not take the data (no flapping between equal paths)",
    requirements=("PTH-4.2",),
)
def _(iut: Iut) -> None:
    peer = _controlling(iut, handshake_rank=DIRECT)
    path, _ = peer.add_path(DIRECT, at=0.1)
    channel_id = peer.open_echo()
    reply = peer.validate(path, at=0.15)
    expect(_event(reply, "path_validated", path_id=path) is not None, f"no path_validated: {short(reply.answer)}")
    expect(not reply.events("path_active"), f"moved to a path of the same rank: {reply.events('path_active')}")
    _stream_on(peer, 0, channel_id, 0, b"stays", at=0.2)
    peer.timer(0.3)
    expect(not _non_probing(peer.on_path(path)), "data on the equal-rank path")
    expect_eq(_echoed_on(peer, 0, channel_id), b"stays", "the echo, on path 0")


@case(
    "ch/multipath/6",
    section=ACTIVE,
    title="the controlled side moves its data to the validated path of the peer's newest non-probing "
    "packet, not for a probing one, and back",
    requirements=("PTH-4.3", "PTH-4.1", "CONF-3.11.3"),
)
def _(iut: Iut) -> str:
    peer = PathPeer(iut)  # the IUT responds: controlled
    path, _ = peer.add_path(DIRECT, at=0.1)
    channel_id = peer.open_echo()
    reply = peer.validate(path, at=0.15)
    expect(_event(reply, "path_validated", path_id=path) is not None, f"no path_validated: {short(reply.answer)}")
    expect(not reply.events("path_active"), f"the controlled side moved on its own: {reply.events('path_active')}")
    reply = _stream_on(peer, path, channel_id, 0, b"on the new path", at=0.2)
    expect(_event(reply, "path_active", path_id=path) is not None, f"did not follow the peer: {short(reply.answer)}")
    expect_eq(_echoed_on(peer, path, channel_id, since=0.2), b"on the new path", "the echo on the peer's path")
    reply = peer.send_on(0, ch.PathChallenge(data=bytes(range(8))), at=0.3)
    expect(not reply.events("path_active"), "moved for a probing packet")
    responses = [s for s in peer.on_path(0, since=0.3) if any(isinstance(f, ch.PathResponse) for f in s.packet.frames)]
    expect(len(responses) == 1, "the challenge on path 0 is answered on path 0")
    reply = _stream_on(peer, 0, channel_id, 15, b" and back", at=0.4)
    expect(_event(reply, "path_active", path_id=0) is not None, f"did not follow the peer back: {short(reply.answer)}")
    expect_eq(_echoed_on(peer, 0, channel_id, since=0.4)[15:], b" and back", "the echo back on path 0")
    return "followed the peer to the new path and back"


@case(
    "ch/multipath/7",
    section=REBINDING,
    title="a rebinding: a datagram from a new address that does not authenticate changes nothing; one that "
    "does makes a new path, challenged at once, that carries at most 3x the bytes received until it validates",
    requirements=("PTH-3.5", "PTH-3.6", "PTH-3.7", "CONF-3.11.1"),
)
def _(iut: Iut) -> str:
    peer = PathPeer(iut)
    channel_id = peer.open_echo()
    peer.ack()
    forged = bytearray(peer.link.data(ch.encode_frames([ch.Ping()])))
    forged[-1] ^= 1
    answer = peer.iut.ok("conn_receive", now=0.1, data=bytes(forged), new_path=True)
    expect(answer.get("path_id") is None, f"a forged datagram made a path: {short(answer)}")
    expect(not out_of(answer), f"the IUT answered a forged datagram: {short(answer)}")
    peer.now = 0.2
    record = peer.link.data(ch.encode_frames([ch.Stream(channel_id=channel_id, offset=0, data=b"x" * 300)]))
    rebound = peer.call("conn_receive", data=record, new_path=True)
    path = rebound.answer.get("path_id")
    expect(isinstance(path, int) and path != 0, f"an authenticated datagram from a new address makes a path: {path}")
    assert isinstance(path, int)
    budget = 3 * len(record)
    on_new = peer.on_path(path)
    sent = sum(s.size for s in on_new)
    expect(bool(peer.challenges(path)), "no PATH_CHALLENGE on the new path")
    expect(sent <= budget, f"{sent} bytes sent on the unvalidated path, more than 3x the {len(record)} received")
    expect(
        _event(rebound, "path_active", path_id=path) is not None,
        f"the data did not move to the peer's new address (PTH-3.7): {rebound.events('path_active')}",
    )
    reply = peer.validate(path, at=0.3)
    expect(_event(reply, "path_validated", path_id=path) is not None, f"no path_validated: {short(reply.answer)}")
    peer.ack()
    peer.timer(0.5)
    expect_eq(_echoed_on(peer, path, channel_id)[:300], b"x" * 300, "the whole echo on the new path")
    return f"{sent} bytes on the new path before it validated (budget {budget})"


@case(
    "ch/multipath/8",
    section=ACTIVE,
    title="with data outstanding, an active path silent for 2.5 s is dead: within 3 s of its last sign "
    "of life the data moves to the other path and what was outstanding is sent again there; "
    "when the dead path answers a re-probe, the data moves back",
    requirements=("PTH-4.4", "PTH-4.5", "PTH-5.2", "PTH-1.2", "CONF-3.11.3"),
)
def _(iut: Iut) -> str:
    peer = _controlling(iut)
    path, _ = peer.add_path(DIRECT, at=0.1)
    channel_id = peer.open_echo()
    reply = peer.validate(path, at=0.15)  # the last sign of life on the new path
    expect(_event(reply, "path_active", path_id=path) is not None, "no move to the validated better path")
    data = bytes(range(256)) * 2
    _stream_on(peer, 0, channel_id, 0, data, at=0.5)
    expect_eq(_echoed_on(peer, path, channel_id), data, "the echo on the active path")
    moved_at: float | None = None
    while moved_at is None and peer.now < 4.0:
        reply = peer.step(4.0)
        if _event(reply, "path_active", path_id=0) is not None:
            moved_at = peer.now
    expect(moved_at is not None, "the data never left the silent path")
    assert moved_at is not None
    silent = moved_at - 0.15
    expect(2.5 <= silent <= 3.0, f"fell back {silent:.2f} s after the path's last sign of life (2.5 .. 3 s)")
    again = _echoed_on(peer, 0, channel_id, since=moved_at)
    expect_eq(again, data, "the outstanding echo, sent again on the fallback path")
    # Re-probed after 1 s: answer the first re-probe and the data comes back (a better rank).
    t0 = moved_at
    peer.send_on(0, _ack_all(peer, 0))
    while not peer.challenges(path, since=t0 + 0.5) and peer.now < t0 + 2.0:
        peer.step(t0 + 2.0)
    probes = peer.challenges(path, since=t0 + 0.5)
    expect(bool(probes), "the dead path was not probed again within 2 s")
    reply = peer.answer(path, probes[0][1], at=peer.now + 0.02)
    expect(_event(reply, "path_active", path_id=path) is not None, f"no move back: {short(reply.answer)}")
    return f"fell back {silent:.2f} s after the last sign of life; re-probed {probes[0][0] - t0:.2f} s later"


def _ack_all(peer: PathPeer, path: int) -> ch.Ack:
    pns = [s.packet.pn for s in peer.sent if s.path == path]
    if not pns:
        raise CaseFailed("internal: nothing to acknowledge on that path")
    return ack_of(pns)


def _left_behind(iut: Iut) -> tuple[PathPeer, int, int, bytes, list[int]]:
    """The IUT controlling, its echo outstanding on path 0 (a relay) when a direct path validates and
    takes the data: the peer, the new path, the channel, the echo, and its packet numbers on path 0."""
    peer = _controlling(iut)
    channel_id = peer.open_echo()
    peer.ack()
    data = b"left behind on the old path " * 8
    _stream_on(peer, 0, channel_id, 0, data, at=0.2)
    expect_eq(_echoed_on(peer, 0, channel_id), data, "the echo on path 0")
    pns = [s.packet.pn for s in peer.on_path(0, since=0.2) if any(isinstance(f, ch.Stream) for f in s.packet.frames)]
    path, _ = peer.add_path(DIRECT, at=0.201)  # all within the old path's probe timeout (~25 ms here)
    reply = peer.validate(path, at=0.202)
    expect(_event(reply, "path_active", path_id=path) is not None, "no move to the validated better path")
    return peer, path, channel_id, data, pns


@case(
    "ch/multipath/9",
    section=ACTIVE,
    title="a path that is left keeps its outstanding packets: an ACK for them arriving on the new path "
    "acknowledges them, and their data is not sent again",
    requirements=("PTH-4.6",),
)
def _(iut: Iut) -> None:
    peer, path, channel_id, _, pns = _left_behind(iut)
    peer.send_on(path, ack_of(pns), at=0.203)
    while peer.now < 3.0:
        peer.step(3.0)
    again = _echoed_on(peer, path, channel_id)
    expect(not again, f"data the peer acknowledged was sent again on the new path: {again[:40]!r}")


@case(
    "ch/multipath/10",
    section=ACTIVE,
    title="a path that is left keeps its outstanding packets until its probe timeout, then their data "
    "goes again on the active path",
    requirements=("PTH-4.6", "PTH-1.2"),
)
def _(iut: Iut) -> str:
    peer, path, channel_id, data, _ = _left_behind(iut)
    while not _echoed_on(peer, path, channel_id) and peer.now < 5.0:
        peer.step(5.0)
    again = _echoed_on(peer, path, channel_id)
    expect_eq(again, data, "the data left outstanding on the old path, sent again on the active one")
    stray = [s for s in peer.on_path(0, since=0.202) if any(isinstance(f, ch.Stream) for f in s.packet.frames)]
    expect(not stray, "data sent again on the path that was left, not on the active one")
    return f"sent again {peer.now - 0.202:.3f} s after the move"


@case(
    "ch/multipath/11",
    section="paths.md §2",
    title="loss is judged per path: packets acknowledged on the new path do not declare the old "
    "path's outstanding packets lost by the packet threshold",
    requirements=("PTH-2.2", "PTH-1.2"),
)
def _(iut: Iut) -> None:
    peer, path, channel_id, data, _ = _left_behind(iut)
    other = peer.open_echo()
    for i in range(4):  # four more echoes on the new path, each acknowledged at once
        _stream_on(peer, path, other, i * 10, bytes([65 + i]) * 10, at=0.203 + i * 0.002)
        on_new = [s.packet.pn for s in peer.on_path(path) if any(isinstance(f, ch.Stream) for f in s.packet.frames)]
        reply = peer.send_on(path, ack_of(on_new), at=0.204 + i * 0.002)
        resent = [f for f in reply.frames(ch.Stream) if f.channel_id == channel_id]
        expect(not resent, f"the old path's packets were declared lost by packets of the new path: {short(resent)}")
    expect_eq(_echoed_on(peer, path, other), b"AAAAAAAAAABBBBBBBBBBCCCCCCCCCCDDDDDDDDDD", "the new echoes")
    expect(data not in _echoed_on(peer, path, channel_id), "internal: the old echo went again at once")


@case(
    "ch/multipath/12",
    section=ACTIVE,
    title="with keepalives on, the controlling side checks its validated standby path with a "
    "PATH_CHALLENGE once per keepalive interval",
    requirements=("PTH-4.7",),
)
def _(iut: Iut) -> str:
    interval = 2.0
    peer = PathPeer(iut, role="initiator", keepalive_interval=interval)
    peer.call("conn_describe_path", path_id=0, kind="datagram", rank=DIRECT)
    path, _ = peer.add_path(RELAY, at=0.1)
    reply = peer.validate(path, at=0.15)
    expect(_event(reply, "path_validated", path_id=path) is not None, "no path_validated")
    start, end = peer.now, peer.now + 4 * interval
    answered: set[bytes] = set()
    while peer.now < end:
        peer.step(end)
        for _, data, _ in peer.challenges(path, since=start):
            if data not in answered:  # keep the standby path answered
                answered.add(data)
                peer.answer(path, data)
        if any(s.path == 0 for s in peer.sent if s.at == peer.now):
            peer.send_on(0, _ack_all(peer, 0))  # and the active one acknowledged
    got = [round(at - start, 2) for at, _, _ in peer.challenges(path, since=start + 0.01)]
    expect(3 <= len(got) <= 5, f"{len(got)} checks of the standby path in {4 * interval:.0f} s: {got}")
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(got)]
    expect(all(interval * 0.9 <= g <= interval * 1.1 for g in gaps), f"checks {gaps} s apart, not every {interval} s")
    return f"standby checks at +{got} s"
