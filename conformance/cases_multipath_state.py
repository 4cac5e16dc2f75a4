"""Cases on each path's own recovery state and on paths that share a socket (spec/paths.md §1, §2, §4).

The runner reads each path's RTT estimate, congestion window and pacing rate with ``conn_paths``
(spec/conformance.md §3.11) and tells the IUT which of its paths leave through the same socket to
the same address (``socket`` on ``conn_add_path`` and ``conn_describe_path``).  An IUT without
these answers them with an error, and the cases that need them are unsupported for it.
"""

from __future__ import annotations

from typing import Any

from p2pos.proto.channels import frames as ch

from .cases_channels import Peer, ack_of, payload
from .cases_multipath import DIRECT, RELAY, PathPeer, _controlling, _echoed_on, _event, _stream_on
from .checks import CaseFailed, Unsupported, expect, short
from .iut import Iut
from .registry import case

PER_PATH, ONE_SPACE, ACTIVE, TOO_OLD = "paths.md §1", "paths.md §2", "paths.md §4", "recovery.md §4.5"
QUIC, TURN = 1, 2  # ranks (paths.md §4)
#: The replay window (record.md §5): a packet this far below the next counter is lost (REC-4.5.1).
WINDOW = 8128
INITIAL_WINDOW = 12000


def paths_view(peer: Peer) -> dict[int, dict[str, Any]]:
    """``conn_paths``: each path's state by path id (Unsupported if the IUT does not take it)."""
    answer = peer.iut.call("conn_paths", now=peer.now)
    if answer.get("ok") is not True:
        raise Unsupported(f"the IUT does not take conn_paths (conformance.md §3.11): {short(answer)}")
    paths = answer.get("paths")
    expect(isinstance(paths, list), f"conn_paths answers a list of paths: {short(answer)}")
    assert isinstance(paths, list)
    out: dict[int, dict[str, Any]] = {}
    for entry in paths:
        expect(isinstance(entry, dict) and isinstance(entry.get("path_id"), int), f"a path of conn_paths: {entry}")
        out[int(entry["path_id"])] = entry
    return out


def _number(entry: dict[str, Any], field: str) -> float | None:
    value = entry.get(field)
    expect(value is None or isinstance(value, int | float), f"{field} is a number or null: {entry}")
    return None if value is None else float(value)


def _near(value: float | None, want: float, slack: float) -> bool:
    return value is not None and abs(value - want) <= slack


def _ack_path(peer: PathPeer, path: int, *, at: float) -> None:
    """An ACK, arriving on ``path``, of every packet the IUT sent on ``path`` so far."""
    pns = [s.packet.pn for s in peer.sent if s.path == path]
    expect(bool(pns), f"internal: nothing sent on path {path} to acknowledge")
    peer.send_on(path, ack_of(pns), at=at)


# -- PTH-1.1: recovery state per path -------------------------------------------------------------


@case(
    "ch/multipath/13",
    section=PER_PATH,
    title="each path has its own RTT estimate, congestion window and pacer: a new path starts from its own "
    "round trip and the initial window, whatever the path it takes over from had",
    requirements=("PTH-1.1", "CONF-3.11.1"),
)
def _(iut: Iut) -> str:
    peer = PathPeer(iut, role="initiator", channel_window=65536)
    peer.call("conn_describe_path", path_id=0, kind="datagram", rank=RELAY)
    paths_view(peer)
    channel_id = peer.open_echo()
    data = payload(30_000)
    # Path 0: a slow relay (100 ms round trips) on which a transfer grows the window beyond the initial one.
    t = 0.2
    for offset in range(0, len(data), 1000):
        _stream_on(peer, 0, channel_id, offset, data[offset : offset + 1000], at=t)
    for _ in range(10):
        done = len(_echoed_on(peer, 0, channel_id)) >= len(data)
        t += 0.1
        _ack_path(peer, 0, at=t)
        if done:
            break
    view = paths_view(peer)
    old = view.get(0, {})
    old_srtt, old_cwnd = _number(old, "srtt"), _number(old, "cwnd")
    expect(old_srtt is not None and old_srtt >= 0.02, f"path 0's smoothed RTT after 100 ms round trips: {old}")
    expect(old_cwnd is not None and old_cwnd > INITIAL_WINDOW, f"path 0's window did not grow: {old}")
    # Path 1: direct, 10 ms round trips; it validates and takes the data.
    path, _ = peer.add_path(DIRECT, at=t + 0.1)
    reply = peer.validate(path, at=t + 0.11)
    expect(_event(reply, "path_active", path_id=path) is not None, "no move to the validated better path")
    view = paths_view(peer)
    new = view.get(path, {})
    expect(_near(_number(new, "srtt"), 0.01, 0.002), f"the new path's smoothed RTT is not its own 10 ms: {new}")
    new_cwnd = _number(new, "cwnd")
    expect(new_cwnd is not None and new_cwnd <= INITIAL_WINDOW, f"the new path's window is not fresh: {new}")
    expect(_near(_number(view.get(0, {}), "srtt"), old_srtt or 0.0, 0.001), f"path 0's RTT changed: {view.get(0)}")
    # What the new path sends at once is bounded by its own (initial) window, not path 0's.
    start = peer.now + 0.01
    more = payload(30_000, seed=5)
    for offset in range(0, len(more), 1000):
        _stream_on(peer, path, channel_id, len(data) + offset, more[offset : offset + 1000], at=start)
    flight = sum(s.size for s in peer.on_path(path, since=start) if _eliciting(s.packet.frames))
    expect(
        flight <= INITIAL_WINDOW + 1200,
        f"{flight} bytes sent at once on the new path: more than the initial window (path 0's was {old_cwnd:.0f})",
    )
    # Once that flight is acknowledged, each path paces at a rate of its own.
    _ack_path(peer, path, at=start + 0.01)
    view = paths_view(peer)
    rates = (_number(view.get(0, {}), "pacing_rate"), _number(view.get(path, {}), "pacing_rate"))
    expect(
        None in rates or rates[0] != rates[1],
        f"both paths pace at {rates[0]} bytes/s: one pacer for both (PTH-1.1)",
    )
    return (
        f"path 0: srtt {old_srtt:.3f} s, cwnd {old_cwnd:.0f}; path {path}: srtt {_number(new, 'srtt'):.4f} s, "
        f"cwnd {new_cwnd:.0f}; first flight on it {flight} bytes; pacing rates {rates}"
    )


def _eliciting(frames: list[ch.Frame]) -> bool:
    return any(not isinstance(f, ch.Ack | ch.Padding) for f in frames)


# -- PTH-2.3: RTT samples per path ------------------------------------------------------------------


@case(
    "ch/multipath/14",
    section=ONE_SPACE,
    title="a path takes an RTT sample only from an ACK or PATH_RESPONSE that came back on it, for its own packet",
    requirements=("PTH-2.3", "PTH-3.4"),
)
def _(iut: Iut) -> str:
    peer = _controlling(iut, handshake_rank=RELAY)
    channel_id = peer.open_echo()
    before = paths_view(peer).get(0, {})
    path, _ = peer.add_path(DIRECT, at=0.1)
    (_, challenge, _), *_ = peer.challenges(path)
    reply = peer.answer(path, challenge, on=0, at=0.3)  # the response comes back on path 0
    expect(_event(reply, "path_validated", path_id=path) is not None, f"no path_validated: {short(reply.answer)}")
    expect(_event(reply, "path_active", path_id=path) is not None, "no move to the validated better path")
    view = paths_view(peer)
    expect(
        _number(view.get(path, {}), "latest_rtt") is None,
        f"an RTT sample for path {path} from a PATH_RESPONSE that came back on path 0: {view.get(path)}",
    )
    expect(
        _number(view.get(0, {}), "latest_rtt") == _number(before, "latest_rtt"),
        f"path 0 took an RTT sample from a response to a challenge of path {path}: {before} -> {view.get(0)}",
    )
    # Data echoed on the new path, acknowledged on path 0 300 ms later: no sample for either path.
    _stream_on(peer, path, channel_id, 0, b"first echo", at=0.4)
    expect(bool(_echoed_on(peer, path, channel_id)), "no echo on the active path")
    _ack_path(peer, path, at=0.4)  # (so that the next ACK is of the new packets only)
    _stream_on(peer, path, channel_id, 10, b"second echo", at=0.45)
    pns = [s.packet.pn for s in peer.on_path(path, since=0.45)]
    peer.send_on(0, ack_of(pns), at=0.75)
    view = paths_view(peer)
    latest = _number(view.get(path, {}), "latest_rtt")
    expect(
        not _near(latest, 0.3, 0.01),
        f"path {path} took an RTT sample of {latest} s from an ACK that came back on path 0 (PTH-2.3)",
    )
    expect(
        _number(view.get(0, {}), "latest_rtt") == _number(before, "latest_rtt"),
        f"path 0 took an RTT sample from an ACK of path {path}'s packets: {before} -> {view.get(0)}",
    )
    # The same on the path itself: a sample of its 30 ms round trip.
    _stream_on(peer, path, channel_id, 21, b"third echo", at=0.8)
    pns = [s.packet.pn for s in peer.on_path(path, since=0.8)]
    expect(bool(pns), "no echo of the third chunk on the active path")
    peer.send_on(path, ack_of(pns), at=0.83)
    latest = _number(paths_view(peer).get(path, {}), "latest_rtt")
    expect(_near(latest, 0.03, 0.002), f"no RTT sample of 30 ms from an ACK on path {path} itself: {latest}")
    return f"path {path}: no sample from the response or the ACK on path 0; then {latest:.3f} s from its own ACK"


# -- PTH-4.8: paths sharing a socket ---------------------------------------------------------------


@case(
    "ch/multipath/15",
    section=ACTIVE,
    title="when the active path dies, a path through the same socket to the same address ranks after every "
    "other usable path, and is used only when nothing else is",
    requirements=("PTH-4.8", "PTH-4.4"),
)
def _(iut: Iut) -> str:
    peer = _controlling(iut, handshake_rank=DIRECT)
    label = peer.iut.call("conn_describe_path", now=peer.now, path_id=0, kind="datagram", rank=DIRECT, socket="udp")
    if label.get("ok") is not True:
        raise Unsupported(f"the IUT does not take a socket label (conformance.md §3.11): {short(label)}")
    peer._file(label, "conn_describe_path")  # (whatever it sent, filed by path)
    quic, _ = peer.add_path(QUIC, at=0.1, kind="stream", socket="udp")  # QUIC on the same UDP socket
    turn, _ = peer.add_path(TURN, at=0.1, socket="turn")
    for each in (quic, turn):
        reply = peer.validate(each, at=0.15)
        expect(_event(reply, "path_validated", path_id=each) is not None, f"path {each} did not validate")
    expect(not reply.events("path_active"), f"moved off the direct path: {reply.events('path_active')}")
    channel_id = peer.open_echo()
    moves: list[tuple[float, int]] = []
    for active, offset in ((0, 0), (turn, 100)):
        start = peer.now + 0.35
        _stream_on(peer, active, channel_id, offset, payload(100, seed=offset + 1), at=start)
        expect(len(_echoed_on(peer, active, channel_id)) >= offset + 100, f"no echo on path {active}")
        found: int | None = None
        while found is None and peer.now < start + 4.0:  # the echo stays unacknowledged: the path dies
            reply = peer.step(start + 4.0)
            for e in reply.events("path_active"):
                if e.get("old_path_id") == active:
                    found = e.get("path_id")
        expect(found is not None, f"the data did not leave path {active}, silent since {start:.2f} s")
        assert found is not None
        moves.append((round(peer.now - start, 2), found))
        if active == 0:
            expect(
                found == turn,
                f"the direct path died and the data went to path {found}, not to the TURN path {turn}: "
                f"the path through the same socket and address (QUIC, {quic}) must come last (PTH-4.8)",
            )
        else:
            expect(found == quic, f"with only the QUIC path usable, the data went to {found}, not {quic}")
    return f"moves (seconds after the data, to path): {moves}"


# -- PTH-2.4, REC-4.5.1, REC-4.5.2: packets too old for the replay window ----------------------------


def _sender(iut: Iut) -> PathPeer:
    """The IUT controlling, with NewReno (or CUBIC): a loss it reports to the controller shows in the window."""
    for controller in ("newreno", "cubic"):
        try:
            return PathPeer(iut, role="initiator", congestion_control=controller)
        except CaseFailed as exc:
            if "'conn_session' failed" not in str(exc):
                raise
    raise Unsupported("the IUT has neither the newreno nor the cubic controller (channels.md §8)")


@case(
    "ch/multipath/16",
    section=TOO_OLD,
    title="a packet left unacknowledged on a slow path is declared lost, without a congestion response, once "
    "8128 records followed it, and its data goes again on the active path",
    requirements=("PTH-2.4", "REC-4.5.1", "REC-4.5.2"),
)
def _(iut: Iut) -> str:
    peer = _sender(iut)
    peer.call("conn_describe_path", path_id=0, kind="datagram", rank=RELAY)
    held_channel, bulk = _iut_channel(peer), _iut_channel(peer)  # (a stream's held bytes would fill its buffer)
    peer.send_on(0, ch.MaxData(maximum=1 << 40), at=0.05)
    peer.now = 0.1
    _supply(peer, held_channel, 0, 100)
    _ack_path(peer, 0, at=3.1)  # a 3 s round trip: path 0's probe timeout is seconds long
    held_offset = 100
    _supply(peer, held_channel, held_offset, 500)  # this packet is never acknowledged
    held = [s.packet.pn for s in peer.on_path(0, since=3.1) if _carries(s.packet.frames, held_channel, held_offset)]
    expect(len(held) == 1, f"the 500 bytes left in one packet on path 0: {held}")
    cwnd_before = _number(paths_view(peer).get(0, {}), "cwnd")
    path, _ = peer.add_path(DIRECT, at=3.1)
    reply = peer.validate(path, at=3.105)
    expect(_event(reply, "path_active", path_id=path) is not None, "no move to the validated better path")
    # Bulk on the direct path (5 ms round trips), each step's packets acknowledged there, until the
    # IUT's counter has passed the held packet by 8128 and a little more.
    offset, step, acked_to = 0, 48_000, 0
    resent: int | None = None
    while peer.now < 5.5:
        offset += _supply(peer, bulk, offset, step)
        sent = [s for s in peer.on_path(path) if s.packet.pn > acked_to]
        for s in sent:
            if resent is None and s.packet.pn > held[0] and _carries(s.packet.frames, held_channel, held_offset):
                resent = s.packet.pn
        if resent is not None or (sent and sent[-1].packet.pn > held[0] + WINDOW + 200):
            break
        if sent:
            acked_to = sent[-1].packet.pn
            _ack_path(peer, path, at=peer.now + 0.005)
        else:
            peer.step(peer.now + 0.005)
    top = max(s.packet.pn for s in peer.sent)
    expect(top >= held[0] + WINDOW, f"internal: the IUT sent only up to {top} by {peer.now:.2f} s")
    expect(
        resent is not None and resent <= held[0] + WINDOW + step // 1000,
        f"packet {held[0]}, unacknowledged on path 0, was not declared lost by packet {held[0] + WINDOW} "
        f"(its data went again in {resent}; the IUT sent up to {top})",
    )
    cwnd_after = _number(paths_view(peer).get(0, {}), "cwnd")
    expect(
        cwnd_before is not None and cwnd_after is not None and cwnd_after >= cwnd_before,
        f"path 0's window went from {cwnd_before} to {cwnd_after}: a congestion response to a packet "
        "lost only for being too old (REC-4.5.2)",
    )
    return f"packet {held[0]} sent again in {resent} at {peer.now:.3f} s; path 0's window {cwnd_before} -> {cwnd_after}"


def _iut_channel(peer: PathPeer) -> int:
    """A stream channel the IUT opens, accepted by the runner with all the credit it could want."""
    opened = peer.call("conn_open", service="files", kind="stream")
    channel_id = opened.answer.get("channel_id")
    expect(isinstance(channel_id, int), f"conn_open answers a channel_id: {short(opened.answer)}")
    assert isinstance(channel_id, int)
    peer.send_on(0, ch.Accept(channel_id=channel_id, initial_max_data=1 << 40))
    return channel_id


def _supply(peer: PathPeer, channel_id: int, offset: int, size: int) -> int:
    """``size`` bytes of stream data for the IUT to send, from ``offset``: the bytes it took."""
    reply = peer.call("conn_send", channel_id=channel_id, data=bytes([offset % 251]) * size, fin=False)
    accepted = reply.answer.get("accepted", size)
    expect(isinstance(accepted, int), f"conn_send answers accepted: {short(reply.answer)}")
    return int(accepted)


def _carries(frames: list[ch.Frame], channel_id: int, offset: int) -> bool:
    return any(
        isinstance(f, ch.Stream) and f.channel_id == channel_id and f.offset <= offset < f.offset + len(f.data)
        for f in frames
    )
