"""The connection as a whole (spec/channels.md, spec/flow.md, spec/recovery.md): flow control with a
slow reader and auto-tuning, liveness (PING, idle timeout, keepalives, graceful close), the
reliable carrier through the stream framer, PMTU probing, and garbage input.

All in simulated time over the seeded link emulator (``chan_helpers``).
"""

from __future__ import annotations

import pytest
from chan_helpers import (
    INDEX_A,
    INDEX_B,
    FramedPair,
    Pair,
    Side,
    TappedSession,
    closed,
    digest,
    finish_back,
    one_way,
    payload,
)

from p2pos.proto.channels import frames as fr
from p2pos.proto.channels.connection import ChannelConfig, Connection, ConnectionState
from p2pos.proto.errors import ErrorCode
from p2pos.proto.events import (
    ChannelClosed,
    ChannelEvent,
    ChannelRefused,
    ChannelRequested,
    ChannelReset,
    ChannelWritable,
    ConnectionClosed,
    HandshakeCompleted,
    PingAcknowledged,
)
from p2pos.proto.session.record import OVERHEAD
from p2pos.proto.simulation.link import LinkConfig
from p2pos.proto.simulation.prng import Prng

Event = ChannelEvent | HandshakeCompleted


def _closed_events(side: Side) -> list[ConnectionClosed]:
    return [e for e in side.of(ConnectionClosed) if isinstance(e, ConnectionClosed)]


# -- flow control (spec/flow.md) -----------------------------------------------------------


def _slow_reader_run(size: int) -> tuple[Pair, int]:
    config = ChannelConfig(channel_window=64 * 1024, send_buffer=128 * 1024)
    pair = Pair(LinkConfig(delay=0.02), config_a=config, config_b=config, seed=21)
    pair.connect()
    pair.b.read_limit = 1024  # 1 KB every 100 ms: 10 KB/s
    pair.b.read_interval = 0.1
    channel_id = pair.a.c.open_channel("files", pair.now)
    pair.a.write(channel_id, payload(size))
    pair.run(pair.now + 40.0)
    return pair, channel_id


def test_a_slow_reader_slows_the_sender_and_memory_stays_bounded() -> None:
    maxima = []
    for size in (1_000_000, 4_000_000):
        pair, channel_id = _slow_reader_run(size)
        read = len(pair.b.received[channel_id])
        assert 380_000 <= read <= 410_000  # 40 s at 10 KB/s
        channel = pair.a.c.channels[channel_id]
        # The sender never got further than the reader's window ahead of the reader.
        assert channel.credit.sent <= read + 64 * 1024 + 1024
        assert channel.window.window == 64 * 1024  # a slow reader never grows its window
        # Bounded memory: the sender holds at most its send buffer, the receiver at most one window.
        assert pair.a.max_send_buffered <= 128 * 1024
        assert pair.b.max_recv_buffered <= 64 * 1024
        assert pair.b.c.conn_window.highest_received - pair.b.c.conn_window.consumed <= 64 * 1024
        maxima.append((pair.a.max_send_buffered, pair.b.max_recv_buffered))
        assert pair.a.of(ChannelWritable)  # the full send buffer drained a little now and then
    assert maxima[0] == maxima[1]  # four times the data, the same memory


def test_windows_grow_on_a_long_fat_link() -> None:
    config = ChannelConfig(channel_window=64 * 1024)
    link = LinkConfig(delay=0.1, bandwidth=2_000_000, queue_bytes=400_000)
    pair = Pair(link, config_a=config, config_b=config, seed=22)
    pair.connect()
    windows: list[int] = []

    def record(side: Side, event: Event, now: float) -> None:
        if type(event).__name__ == "ChannelEnded" and hasattr(event, "channel_id"):
            windows.append(side.c.channels[event.channel_id].window.window)

    pair.b.hook = record
    start = pair.now
    data = payload(4_000_000)
    channel_id = pair.a.c.open_channel("files", pair.now)
    pair.a.write(channel_id, data)
    pair.run(start + 60.0, lambda now: bool(windows))
    assert pair.b.received[channel_id] == data
    assert windows and windows[0] >= 8 * 64 * 1024  # doubled at least three times
    mdata = [f for f in _sent_frames(pair.b) if isinstance(f, fr.MaxChannelData)]
    assert mdata and mdata[-1].maximum - mdata[0].maximum > 1_000_000
    # A window stuck at 64 KB would need 64 KB per 200 ms round trip: 12.5 s for 4 MB.
    assert pair.now - start < 6.0


def _sent_frames(side: Side) -> list[fr.Frame]:
    session = side.c.session
    assert isinstance(session, TappedSession)
    return session.sent_frames()


# -- liveness (spec/channels.md §9) --------------------------------------------------------


def test_ping_measures_the_round_trip() -> None:
    pair = Pair(LinkConfig(delay=0.04), seed=23)
    pair.connect()
    pair.run(pair.now + 1.0)
    ids = [pair.a.c.ping(pair.now), pair.b.c.ping(pair.now)]
    pair.run(pair.now + 1.0)
    for side, ping_id in zip((pair.a, pair.b), ids, strict=True):
        (ack,) = side.of(PingAcknowledged)
        assert isinstance(ack, PingAcknowledged) and ack.ping_id == ping_id
        assert 0.08 <= ack.rtt <= 0.08 + 0.026  # the link's RTT plus at most the peer's ACK delay


def test_ping_is_repeated_when_lost() -> None:
    pair = Pair(LinkConfig(delay=0.02), seed=24)
    pair.connect()
    pair.run(pair.now + 0.5)
    pair.link.start_blackhole(pair.now, "a")
    ping_id = pair.a.c.ping(pair.now)
    pair.run(pair.now + 0.3)
    pair.link.stop_blackhole(pair.now, "a")
    pair.run(pair.now + 3.0, lambda now: bool(pair.a.of(PingAcknowledged)))
    (ack,) = pair.a.of(PingAcknowledged)
    assert isinstance(ack, PingAcknowledged) and ack.ping_id == ping_id


def test_idle_timeout_when_the_peer_vanishes_resets_every_channel_first() -> None:
    config = ChannelConfig(idle_timeout=5.0)
    pair = Pair(LinkConfig(delay=0.02, bandwidth=1_000_000), config_a=config, config_b=config, seed=25)
    pair.connect()
    streams = [pair.a.c.open_channel("files", pair.now) for _ in range(3)]
    for channel_id in streams:
        pair.a.write(channel_id, payload(5_000_000, channel_id))
    pair.run(pair.now + 1.0)
    cut = pair.now
    pair.link.start_blackhole(cut)
    pair.run(cut + 20.0)
    for side in (pair.a, pair.b):
        (closed_event,) = _closed_events(side)
        assert closed_event.code is ErrorCode.IDLE_TIMEOUT and not closed_event.by_peer
        when = next(t for t, e in side.events if isinstance(e, ConnectionClosed))
        assert cut + 4.9 <= when <= cut + 5.1
        resets = [e for e in side.of(ChannelReset) if isinstance(e, ChannelReset)]
        assert sorted(e.channel_id for e in resets) == streams
        assert all(e.code is ErrorCode.IDLE_TIMEOUT and not e.by_peer for e in resets)
        assert isinstance(side.events[-1][1], ConnectionClosed)  # the resets come first
        assert all(side.received.get(i) for i in streams) or side is pair.a  # data was still flowing
        assert side.c.get_timer() is None
    assert pair.a.c.state is ConnectionState.CLOSED


@pytest.mark.parametrize("keepalive", [None, 2.0])
def test_keepalive_set_from_outside_keeps_a_quiet_connection_alive(keepalive: float | None) -> None:
    config = ChannelConfig(idle_timeout=5.0, keepalive_interval=None)
    pair = Pair(LinkConfig(delay=0.03), config_a=config, config_b=config, seed=26)
    pair.connect()
    pair.a.c.keepalive_interval = keepalive  # the NAT layer tunes this per router
    pair.run(pair.now + 60.0)
    closes = _closed_events(pair.a) + _closed_events(pair.b)
    if keepalive is None:
        assert {e.code for e in closes} == {ErrorCode.IDLE_TIMEOUT}
    else:
        assert not closes
        assert pair.a.c.state is ConnectionState.READY and pair.b.c.state is ConnectionState.READY
        pings = [f for f in _sent_frames(pair.a) if isinstance(f, fr.Ping)]
        assert 25 <= len(pings) <= 35  # one per 2 s of quiet


def test_graceful_close_delivers_everything() -> None:
    pair = Pair(LinkConfig(delay=0.03, loss=0.05), seed=27)
    pair.connect()
    ids = [pair.a.c.open_channel("files", pair.now) for _ in range(3)]
    pair.run(pair.now + 0.5)
    data = {i: payload(300_000, i) for i in ids}
    for i in ids:
        assert pair.a.c.send(i, data[i], pair.now) == len(data[i])
    pair.a.c.close(pair.now)
    with pytest.raises(Exception, match="closing"):
        pair.a.c.open_channel("files", pair.now)
    pair.run(pair.now + 120.0, lambda now: bool(_closed_events(pair.b)))
    assert all(digest(pair.b.received[i]) == digest(data[i]) for i in ids)
    (event,) = _closed_events(pair.b)
    assert (event.code, event.by_peer) == (ErrorCode.NO_ERROR, True)
    pair.run(pair.now + 1.0)
    (event,) = _closed_events(pair.a)
    assert (event.code, event.by_peer) == (ErrorCode.NO_ERROR, False)
    assert not pair.b.of(ChannelReset)


# -- a stream-carried path (spec/paths.md §5; framing.md) ----------------------------------


def test_a_stream_carried_path_has_the_same_semantics_and_is_acknowledged_end_to_end() -> None:
    """PTH-5.1: every ack-eliciting packet is acknowledged on a stream-carried path too (the
    reliable-carrier mode that acknowledged only PINGs is gone); packets are large, nothing is lost."""
    config = ChannelConfig(path_kind="stream")
    pair = FramedPair(config)
    pair.run(5.0, lambda now: pair.b.conn is not None and pair.b.c.state is ConnectionState.READY)
    pair.b.hook = None
    up, down = payload(2_000_000, 1), payload(500_000, 2)
    channel_id = pair.a.c.open_channel("files", pair.now)
    other = pair.b.c.open_channel("chat", pair.now)
    refused = pair.a.c.open_channel("unknown", pair.now)
    pair.a.write(channel_id, up)

    def answer(side: Side, event: Event, now: float) -> None:
        if isinstance(event, ChannelRequested) and event.channel_id == channel_id:
            side.write(channel_id, down)
        if type(event).__name__ == "ChannelEnded" and hasattr(event, "channel_id"):
            channel = side.c.channels.get(event.channel_id)
            if channel is not None and not channel.local_finished:
                side.c.finish(event.channel_id, now)

    pair.b.hook = answer
    pair.run(pair.now + 60.0, lambda now: closed(pair.a, channel_id) and closed(pair.b, channel_id))
    assert digest(pair.b.received[channel_id]) == digest(up)
    assert digest(pair.a.received[channel_id]) == digest(down)
    assert [e.channel_id for e in pair.a.of(ChannelRefused) if isinstance(e, ChannelRefused)] == [refused]
    pair.a.c.reset_channel(other, pair.now)
    pair.run(pair.now + 1.0)
    assert [e.channel_id for e in pair.b.of(ChannelReset) if isinstance(e, ChannelReset)] == [other]
    for side, peer in ((pair.a, pair.b), (pair.b, pair.a)):
        sent = _sent_frames(side)
        # Every ack-eliciting packet of the peer is acknowledged (an ACK at least every second one).
        acked = {pn for f in sent if isinstance(f, fr.Ack) for low, high in f.ranges() for pn in range(low, high + 1)}
        assert len(acked) >= len(peer.c.session.sent_plaintexts) - 2  # type: ignore[attr-defined]
        assert peer.c.recovery.ack_eliciting_in_flight == 0
        stream = [f for f in sent if isinstance(f, fr.Stream)]
        assert sum(len(f.data) for f in stream) == (len(up) if side is pair.a else len(down))  # nothing resent
        assert side.c.lost_packets == 0
    # Packets are as big as the configured frame size, not the path MTU.
    assert max(len(p) for p in pair.a.c.session.sent_plaintexts) > 1500  # type: ignore[attr-defined]
    pair.a.c.close(pair.now)
    pair.run(pair.now + 5.0, lambda now: bool(_closed_events(pair.b)))
    assert [(e.code, e.by_peer) for e in _closed_events(pair.b)] == [(ErrorCode.NO_ERROR, True)]


def _stream_pair(delay: float) -> Pair:
    """A lossless, ordered link with a fixed delay (a byte stream's framed datagrams), a stream-carried path."""
    config = ChannelConfig(path_kind="stream")
    link = LinkConfig(delay=delay, mtu=65535)
    pair = Pair(link, link, config_a=config, config_b=config, seed=3)
    pair.connect()
    return pair


def test_ping_on_a_stream_carried_path_measures_the_round_trip() -> None:
    pair = _stream_pair(0.04)
    pair.run(pair.now + 0.5)
    for side in (pair.a, pair.b):  # the first packets (MAX_CHANNELS) were acknowledged: RTT samples
        assert side.c.rtt.has_sample and abs(side.c.rtt.smoothed_rtt - 0.08) < 0.03
    ping_id = pair.a.c.ping(pair.now)
    pair.run(pair.now + 1.0)
    acks = [e for e in pair.a.of(PingAcknowledged) if isinstance(e, PingAcknowledged)]
    # The PING's round trip, plus at most the peer's ACK delay (a PING alone is acknowledged after max_ack_delay).
    assert [e.ping_id for e in acks] == [ping_id] and 0.08 <= acks[0].rtt <= 0.08 + 0.025 + 0.002


def test_windows_auto_tune_on_a_stream_carried_path() -> None:
    """flow.md §4 needs an RTT: acknowledgements give it on a stream-carried path too, so a fast
    reader's window grows."""
    pair = _stream_pair(0.05)
    windows: list[int] = []

    def watch(side: Side, event: Event, now: float) -> None:
        channel = side.c.channels.get(getattr(event, "channel_id", -1))
        if channel is not None and channel.recv is not None:
            windows.append(channel.window.window)
        finish_back(side, event, now)

    data = payload(8_000_000, 5)
    channel_id = pair.a.c.open_channel("files", pair.now)
    pair.b.hook = watch
    pair.a.write(channel_id, data)
    start = pair.now
    end = pair.run(start + 60.0, lambda now: closed(pair.a, channel_id) and closed(pair.b, channel_id))
    assert digest(pair.b.received[channel_id]) == digest(data)
    initial = ChannelConfig().channel_window
    assert windows[0] == initial and max(windows) >= 4 * initial
    # With the initial window alone: 256 KB per 100 ms round trip, over 3 s for 8 MB.
    assert end - start < 2.0


# -- PMTU (spec/recovery.md §7, RFC 8899) --------------------------------------------------


@pytest.mark.parametrize(("mtu", "expected"), [(1250, 1250), (1300, 1300), (1400, 1400), (1472, 1452), (1200, 1200)])
def test_pmtu_converges_and_bulk_data_uses_it(mtu: int, expected: int) -> None:
    pair = Pair(LinkConfig(delay=0.02, mtu=mtu), seed=28)
    pair.connect()
    pair.run(pair.now + 3.0)  # the search needs a few round trips per size, idle or not
    found = pair.a.c.pmtu.current_mtu
    assert expected - 16 <= found <= expected  # within the search granularity, never above the path
    session = pair.a.c.session
    assert isinstance(session, TappedSession)
    before = len(session.sent_plaintexts)
    data = payload(1_000_000, 4)
    channel_id, _ = one_way(pair, data, pair.now + 60.0)
    assert digest(pair.b.received[channel_id]) == digest(data)
    stream_packets = [
        len(p) + OVERHEAD
        for p in session.sent_plaintexts[before:]
        if any(isinstance(f, fr.Stream) and len(f.data) > 100 for f in fr.parse_frames_untrusted(p))
    ]
    full = [s for s in stream_packets if found - 24 <= s <= found]
    assert len(full) > 0.95 * len(stream_packets)
    assert max(stream_packets) <= found
    assert pair.link.stats("a").lost_mtu <= 15  # only probes were too big (3 per size tried)


def test_pmtu_search_completes_during_a_transfer() -> None:
    pair = Pair(LinkConfig(delay=0.02), seed=29)
    pair.connect()
    data = payload(1_000_000, 4)
    channel_id, _ = one_way(pair, data, pair.now + 60.0)
    assert digest(pair.b.received[channel_id]) == digest(data)
    assert pair.a.c.pmtu.current_mtu == 1452
    assert pair.link.stats("a").sent_bytes > 1.4 * pair.link.stats("a").sent * 1000  # mostly full-size packets


# -- robustness (STYLE.md §6) ----------------------------------------------------------------


def test_garbage_datagrams_never_raise() -> None:
    pair = Pair(seed=29)
    pair.connect()
    channel_id, _ = one_way(pair, payload(10_000), pair.now + 5.0)
    rng = Prng(30)
    conn = pair.b.c
    genuine = pair.a.c.data_to_send(pair.now)  # nothing pending: build one
    pair.a.c.ping(pair.now)
    genuine = pair.a.c.data_to_send(pair.now)
    assert genuine
    for i in range(2000):
        if i % 3 == 0:
            junk = rng(rng.randbelow(1500))
        else:
            base = bytearray(genuine[0])
            for _ in range(1 + rng.randbelow(4)):
                base[rng.randbelow(len(base))] ^= 1 << rng.randbelow(8)
            junk = bytes(base[: rng.randbelow(len(base) + 1)] if i % 3 == 1 else base)
        conn.receive_data(junk, pair.now)
    assert conn.state is ConnectionState.READY
    assert not pair.b.of(ConnectionClosed)
    conn.receive_data(genuine[0], pair.now)  # the genuine one still authenticates
    data = payload(20_000, 5)
    pair.b.hook = None
    other, _ = one_way(pair, data, pair.now + 5.0)
    assert pair.b.received[other] == data and other != channel_id


def _bad_packet(build: object) -> None:
    raise AssertionError(build)


BAD_FRAMES: dict[str, tuple[bytes, ErrorCode]] = {
    "unknown type": (b"\x3f", ErrorCode.PROTOCOL_VIOLATION),
    "truncated stream": (fr.stream_header(0, 0, 100, False) + b"x", ErrorCode.MALFORMED_MESSAGE),
    "stream before open": (
        fr.encode_frame(fr.Stream(channel_id=7, offset=0, data=b"x", fin=False)),
        ErrorCode.CHANNEL_STATE_ERROR,
    ),
    "open of our parity": (
        fr.encode_frame(fr.Open(channel_id=0, kind=fr.ChannelKind.STREAM, service="x", initial_max_data=10)),
        ErrorCode.PROTOCOL_VIOLATION,
    ),
    "beyond the window": (
        fr.encode_frame(fr.Stream(channel_id=1, offset=10_000_000, data=b"x", fin=False)),
        ErrorCode.FLOW_CONTROL_ERROR,
    ),
    "ack of unsent": (fr.encode_frame(fr.Ack.from_ranges([(10**6, 10**6)], 0)), ErrorCode.PROTOCOL_VIOLATION),
}


@pytest.mark.parametrize("name", sorted(BAD_FRAMES))
def test_authenticated_bad_frames_close_the_connection(name: str) -> None:
    plaintext, code = BAD_FRAMES[name]
    pair = Pair(seed=31)
    pair.connect()
    pair.b.c.open_channel("files", pair.now)  # channel 1 exists (opened by b) for the window case
    pair.run(pair.now + 0.5)
    # The peer's session seals hand-made frames, as a buggy or hostile peer would.
    pair.b.c.session.send(plaintext, pair.now)
    pair.run(pair.now + 1.0)
    (event,) = _closed_events(pair.a)
    assert (event.code, event.by_peer) == (code, False)
    (event,) = _closed_events(pair.b)
    assert (event.code, event.by_peer) == (code, True)


def test_a_connection_over_an_unfinished_handshake_closes_cleanly() -> None:
    session = TappedSession.initiate(Side.__init__.__globals__["KEYS_A"], local_index=INDEX_A, now=0.0, random=Prng(1))
    conn = Connection(session, 0.0)
    channel_id = conn.open_channel("files", 0.0)  # queued until the handshake completes
    conn.close(1.0, ErrorCode.APPLICATION_CLOSE, "bye")
    events = []
    while (event := conn.next_event()) is not None:
        events.append(event)
    assert events[-1] == ConnectionClosed(
        session_id=INDEX_A, code=ErrorCode.APPLICATION_CLOSE, reason="bye", by_peer=False
    )
    assert all(e.session_id == INDEX_A for e in events)  # every event names its connection
    assert any(isinstance(e, ChannelReset) and e.channel_id == channel_id for e in events)
    assert conn.get_timer() is None
    assert INDEX_B != INDEX_A
    assert not [e for e in events if isinstance(e, ChannelClosed)]


def test_a_probe_larger_than_the_window_still_goes() -> None:
    """recovery.md §7.1: a loopback-sized search ceiling (65507) on a slow 16 KiB path (TURN through
    coturn): the window (4 MB/s x 2 ms, at 1200-byte datagrams) stays far below the first probe
    (if it waited for room, the search never starts: 1200 bytes for good), yet the search
    runs and bulk data ends up in datagrams near the path's 16380 bytes, not BASE_PLPMTU."""
    slow = LinkConfig(delay=0.001, mtu=16380, bandwidth=4_000_000, queue_bytes=200_000)
    config = ChannelConfig(max_datagram_size=65507)
    pair = Pair(slow, slow, config_a=config, config_b=config, seed=31)
    pair.connect()
    data = payload(3_000_000, 6)
    channel_id, _ = one_way(pair, data, pair.now + 60.0)
    assert digest(pair.b.received[channel_id]) == digest(data)
    assert 16380 - 16 <= pair.a.c.pmtu.current_mtu <= 16380
