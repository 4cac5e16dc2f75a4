"""Liveness as one design (spec/paths.md §7): the keepalive interval both sides agree on with
KEEPALIVE_INTERVAL, the idle timeout that follows it, one keepalive per interval from the
controlling side only, the retry of an unanswered keepalive, and the close of an unused session.

Deterministic: the seeded link emulator in emulated time, every datagram of each side logged
with the frames it carried (``Watched``), so packet counts per interval are exact.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from chan_helpers import Pair, Side, TappedSession

from p2pos.proto.channels import frames as fr
from p2pos.proto.channels.channel import ChannelConfig
from p2pos.proto.channels.liveness import IDLE_WITHOUT_KEEPALIVE, KeepaliveAgreement
from p2pos.proto.errors import ErrorCode, LocalProtocolError
from p2pos.proto.events import ConnectionClosed
from p2pos.proto.simulation.link import LinkConfig, run_until

DELAY = 0.05  # one way: a 100 ms round trip
Drop = Callable[[float, list[fr.Frame]], bool]


class Watched:
    """A ``Side`` whose datagrams are logged with their frames after the handshake; ``drop`` may lose some."""

    def __init__(self, side: Side) -> None:
        self.side = side
        self.log: list[tuple[float, list[fr.Frame]]] = []
        self.dropped: list[tuple[float, list[fr.Frame]]] = []
        self.drop: Drop | None = None

    def data_to_send(self, now: float) -> list[bytes]:
        conn = self.side.conn
        session = conn.session if conn is not None else None
        before = len(getattr(session, "sent_plaintexts", []))
        out = self.side.data_to_send(now)
        if session is None or conn is None or conn.state.value != "ready":
            return out
        assert isinstance(session, TappedSession)
        new = session.sent_plaintexts[before:]
        assert len(new) == len(out), "one DATA record per datagram once ready"
        kept: list[bytes] = []
        for datagram, plaintext in zip(out, new, strict=True):
            frames = fr.parse_frames_untrusted(plaintext)
            if self.drop is not None and self.drop(now, frames):
                self.dropped.append((now, frames))
                continue
            self.log.append((now, frames))
            kept.append(datagram)
        return kept

    def receive_data(self, data: bytes, now: float) -> None:
        self.side.receive_data(data, now)

    def get_timer(self) -> float | None:
        return self.side.get_timer()

    def handle_timer(self, now: float) -> None:
        self.side.handle_timer(now)

    def between(self, start: float, end: float) -> list[list[fr.Frame]]:
        return [frames for t, frames in self.log if start <= t < end]


class Live:
    """Two connections (``a`` initiates: it is the controlling side) over a 100 ms round trip."""

    def __init__(self, a: ChannelConfig, b: ChannelConfig, *, seed: int = 41) -> None:
        self.pair = Pair(LinkConfig(delay=DELAY), config_a=a, config_b=b, seed=seed)
        self.now = self.pair.connect()
        self.a, self.b = Watched(self.pair.a), Watched(self.pair.b)
        self.checks: list[str] = []

    def run(self, until: float, *, check: bool = True) -> None:
        """Run to ``until``; with ``check``, after every step the keepalives in force must never let
        either side time out while the peer is there (PTH-7.3)."""

        def step(now: float) -> bool:
            if check:
                self._check_safe(now)
            return False

        self.now = run_until(self.pair.link, {"a": self.a, "b": self.b}, until, now=self.now, stop=step)

    def _check_safe(self, now: float) -> None:
        a, b = self.pair.a.conn, self.pair.b.conn
        if a is None or b is None or a.state.value != "ready" or b.state.value != "ready":
            return
        sending = a._live.send_interval
        if sending is not None and 3 * sending + 1 > b.idle_timeout + 1e-9:
            self.checks.append(f"{now}: a keeps alive every {sending} s, b times out after {b.idle_timeout} s")

    def closes(self) -> list[tuple[str, float, ConnectionClosed]]:
        out = []
        for name, side in (("a", self.pair.a), ("b", self.pair.b)):
            out += [(name, t, e) for t, e in side.events if isinstance(e, ConnectionClosed)]
        return out


def _eliciting(frames: list[fr.Frame]) -> bool:
    return any(fr.is_ack_eliciting(f) for f in frames)


def _config(keepalive: float | None, **more: float | None) -> ChannelConfig:
    return ChannelConfig(keepalive_interval=keepalive, pmtu_probing=False, **more)  # type: ignore[arg-type]


# -- the agreement, alone ---------------------------------------------------------------------


def test_agreement_sends_at_the_smallest_and_times_out_at_the_largest_until_acknowledged() -> None:
    """PTH-7.1-7.3: the smaller of both intervals is in force; a raise counts for sending only once the
    peer acknowledged it, and for the idle timeout at once."""
    live = KeepaliveAgreement(10.0, None)
    assert (live.send_interval, live.idle_timeout) == (10.0, 31.0)  # the longest any state the peer may hold needs
    live.on_acked(1)
    assert live.on_peer(fr.KeepaliveInterval(sequence=1, interval_ms=120_000))
    assert (live.send_interval, live.idle_timeout) == (10.0, 31.0)
    frame = live.set_local(120.0)
    assert frame == fr.KeepaliveInterval(sequence=2, interval_ms=120_000)
    assert (live.send_interval, live.idle_timeout) == (10.0, 361.0)  # raised: not sent at 120 s yet
    assert live.frame_for(1) is None and live.frame_for(2) == frame  # only the newest is sent again
    live.on_acked(2)
    assert (live.send_interval, live.idle_timeout) == (120.0, 361.0)
    live.set_local(30.0)  # lowered: sent at once, the idle timeout stays long until the peer has it
    assert (live.send_interval, live.idle_timeout) == (30.0, 361.0)
    live.on_acked(3)
    assert (live.send_interval, live.idle_timeout) == (30.0, 91.0)
    assert not live.on_peer(fr.KeepaliveInterval(sequence=1, interval_ms=5_000))  # older: ignored
    assert live.on_peer(fr.KeepaliveInterval(sequence=2, interval_ms=0))  # the peer asks for none
    assert (live.send_interval, live.idle_timeout) == (30.0, 91.0)
    live.set_local(None)
    live.on_acked(4)
    assert (live.send_interval, live.idle_timeout) == (None, IDLE_WITHOUT_KEEPALIVE)
    assert KeepaliveAgreement(120.0, 5.0).idle_timeout == 5.0  # configured: fixed


def test_keepalive_interval_is_checked() -> None:
    with pytest.raises(LocalProtocolError):
        ChannelConfig(keepalive_interval=0.0)
    with pytest.raises(LocalProtocolError):
        ChannelConfig(keepalive_interval=86_401.0)
    with pytest.raises(LocalProtocolError):
        ChannelConfig(idle_close_after=-1.0)


# -- a quiet session ---------------------------------------------------------------------------


def test_quiet_session_with_120_s_keepalives_two_packets_per_interval_for_ten_minutes() -> None:
    """PTH-7.4: K = 120 s on both sides: the controlling side sends one PING per interval, the
    controlled side only its ACK: 2 packets per interval, none of the controlled side's own."""
    live = Live(_config(120.0), _config(120.0))
    live.run(live.now + 5.0)  # the announcements and their ACKs
    start = live.now
    assert live.pair.a.c.idle_timeout == live.pair.b.c.idle_timeout == 361.0
    live.run(start + 600.0)
    assert not live.closes() and not live.checks
    for k in range(5):
        lo, hi = start + 120.0 * k, start + 120.0 * (k + 1)
        sent_a, sent_b = live.a.between(lo, hi), live.b.between(lo, hi)
        assert [[type(f) for f in frames] for frames in sent_a] == [[fr.Ping]], (k, sent_a)
        assert len(sent_b) == 1 and not _eliciting(sent_b[0]), (k, sent_b)  # the ACK only
    pings = [t for t, frames in live.a.log if t >= start and any(isinstance(f, fr.Ping) for f in frames)]
    assert all(abs((b - a) - 120.0) < 0.01 for a, b in itertools.pairwise(pings))


@pytest.mark.parametrize(("k_a", "k_b"), [(120.0, 30.0), (30.0, 120.0)])
def test_asymmetric_intervals_the_smaller_is_in_force_on_both_sides(k_a: float, k_b: float) -> None:
    """PTH-7.1/7.2: each side announces its own interval; the smaller one is in force, whichever side
    asked for it, and both idle timeouts follow it."""
    live = Live(_config(k_a), _config(k_b))
    live.run(live.now + 5.0)
    start = live.now
    live.run(start + 300.0)
    assert not live.closes() and not live.checks
    assert live.pair.a.c.idle_timeout == live.pair.b.c.idle_timeout == 91.0
    pings = [t for t, frames in live.a.log if t >= start and any(isinstance(f, fr.Ping) for f in frames)]
    assert len(pings) == 10  # every 30 s
    assert not any(_eliciting(frames) for t, frames in live.b.log if t >= start)


def test_raising_the_interval_while_its_announcement_is_lost_never_times_out() -> None:
    """PTH-7.3: both sides raise K from 10 s to 120 s; the first packet carrying each announcement is
    lost.  The keepalives in force never outlast the peer's idle timeout (checked after every step),
    the raise takes effect once acknowledged, and nobody times out."""
    live = Live(_config(10.0), _config(10.0))
    live.run(live.now + 5.0)
    lost: dict[str, int] = {"a": 0, "b": 0}

    def drop_first_announcement(name: str) -> Drop:
        def drop(now: float, frames: list[fr.Frame]) -> bool:
            if lost[name] == 0 and any(isinstance(f, fr.KeepaliveInterval) for f in frames):
                lost[name] += 1
                return True
            return False

        return drop

    live.a.drop, live.b.drop = drop_first_announcement("a"), drop_first_announcement("b")
    raised = live.now
    live.pair.b.c.keepalive_interval = 120.0
    live.pair.a.c.keepalive_interval = 120.0
    assert live.pair.a.c._live.send_interval == 10.0  # not before the peer has it
    live.run(raised + 600.0)
    assert lost == {"a": 1, "b": 1}
    assert not live.closes() and not live.checks, live.checks[:3]
    assert live.pair.a.c._live.send_interval == 120.0 and live.pair.b.c.idle_timeout == 361.0
    pings = [t for t, frames in live.a.log if t >= raised + 20.0 and any(isinstance(f, fr.Ping) for f in frames)]
    assert 4 <= len(pings) <= 5  # 580 s at 120 s


def test_peer_vanishes_idle_timeout_at_three_intervals_plus_one_second() -> None:
    """PTH-7.2: K = 120 s: a peer that vanishes is noticed 3 K + 1 s = 361 s after its last packet."""
    live = Live(_config(120.0), _config(120.0))
    live.run(live.now + 200.0)
    cut = live.now
    heard = {"a": live.pair.a.c.last_received, "b": live.pair.b.c.last_received}
    live.pair.link.start_blackhole(cut)
    live.run(cut + 800.0, check=False)
    closes = live.closes()
    assert {name for name, _, _ in closes} == {"a", "b"}
    for name, when, event in closes:
        assert event.code is ErrorCode.IDLE_TIMEOUT and not event.by_peer
        assert 361.0 <= when - heard[name] <= 361.0 + 0.01, (name, when - heard[name])


def test_an_unanswered_keepalive_is_sent_again_after_one_second() -> None:
    """PTH-7.5: a keepalive that draws no reply within max(1 s, 2 srtt) (here 1 s) is sent again at once."""
    live = Live(_config(120.0), _config(120.0))
    live.run(live.now + 5.0)
    dropped: list[float] = []

    def drop_one_ping(now: float, frames: list[fr.Frame]) -> bool:
        if not dropped and any(isinstance(f, fr.Ping) for f in frames):
            dropped.append(now)
            return True
        return False

    live.a.drop = drop_one_ping
    start = live.now
    live.run(start + 300.0)
    assert dropped and not live.closes()
    pings = [t for t, frames in live.a.log if t >= start and any(isinstance(f, fr.Ping) for f in frames)]
    # Here the probe timeout (recovery.md §4.3, about 0.33 s) resends it first; never later than 1 s.
    assert 0 < pings[0] - dropped[0] <= 1.0, (dropped, pings)
    later = sorted(set(pings))
    assert abs(later[1] - (later[0] + 120.0)) < 0.01  # then the interval again, from the resend


def test_controlled_side_sends_no_keepalive_even_when_only_it_asks_for_one() -> None:
    """PTH-7.4: the controlled side asks (K = 20 s) and the controlling side, which asks for none,
    keeps the path alive for it."""
    live = Live(_config(None), _config(20.0))
    live.run(live.now + 5.0)
    start = live.now
    live.run(start + 200.0)
    assert not live.closes() and not live.checks
    pings = [t for t, frames in live.a.log if t >= start and any(isinstance(f, fr.Ping) for f in frames)]
    assert len(pings) == 10
    assert not any(_eliciting(frames) for t, frames in live.b.log if t >= start)


def test_no_keepalive_on_either_side_times_out_after_30_s() -> None:
    live = Live(_config(None), _config(None))
    start = live.now
    live.run(start + 100.0)
    assert {e.code for _, _, e in live.closes()} == {ErrorCode.IDLE_TIMEOUT}
    assert not any(any(isinstance(f, fr.Ping) for f in frames) for _, frames in live.a.log + live.b.log)


# -- an unused session closes ------------------------------------------------------------------


def test_unused_session_closes_gracefully_after_idle_close_after() -> None:
    """PTH-7.6: no channel and no application call for ``idle_close_after``: CLOSE with NO_ERROR."""
    live = Live(_config(20.0, idle_close_after=300.0), _config(20.0))
    channel_id = live.pair.a.c.open_channel("files", live.now)
    live.pair.a.write(channel_id, b"hello")
    live.pair.b.hook = lambda side, event, now: None
    live.run(live.now + 100.0)
    assert not live.closes()
    assert live.pair.a.c.channels  # a channel stays open (b did not finish): never closed for idleness
    live.pair.a.c.reset_channel(channel_id, live.now)
    last_call = live.now
    live.run(last_call + 400.0)
    closes = live.closes()
    assert [(name, e.code, e.by_peer) for name, _, e in closes] == [
        ("a", ErrorCode.NO_ERROR, False),
        ("b", ErrorCode.NO_ERROR, True),
    ]
    assert 300.0 <= closes[0][1] - last_call <= 300.01
