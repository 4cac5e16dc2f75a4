"""Channel semantics of the connection (spec/channels.md §2-§5): open, refuse, half-close, reset,
STOP_SENDING, fair scheduling, message channels and the MAX_CHANNELS limit.

Every test runs two ``Connection`` objects over the seeded link emulator in
simulated time (``chan_helpers.Pair``).
"""

from __future__ import annotations

import pytest
from chan_helpers import INDEX_A, INDEX_B, Pair, Side, closed, digest, one_way, payload

from p2pos.proto.channels.connection import ChannelConfig, ConnectionState
from p2pos.proto.channels.frames import ChannelBlocked, ChannelKind, DataBlocked, FrameType, Stream
from p2pos.proto.errors import ErrorCode, LocalProtocolError
from p2pos.proto.events import (
    ChannelClosed,
    ChannelDataAvailable,
    ChannelEnded,
    ChannelEvent,
    ChannelMessage,
    ChannelOpened,
    ChannelRefused,
    ChannelRequested,
    ChannelReset,
    ConnectionClosed,
    HandshakeCompleted,
)
from p2pos.proto.simulation.link import LinkConfig

Event = ChannelEvent | HandshakeCompleted


def _ids(side: Side, kind: type[Event]) -> list[int]:
    return [e.channel_id for e in side.of(kind) if hasattr(e, "channel_id")]


def test_open_accept_and_channel_ids() -> None:
    pair = Pair()
    pair.connect()
    first = pair.a.c.open_channel("files", pair.now)
    second = pair.a.c.open_channel("chat", pair.now, kind=ChannelKind.MESSAGE)
    theirs = pair.b.c.open_channel("files", pair.now)
    assert (first, second, theirs) == (0, 2, 1)  # even ids for the initiator, odd for the responder
    pair.run(pair.now + 1.0, lambda now: len(pair.a.of(ChannelOpened)) == 2 and len(pair.b.of(ChannelOpened)) == 1)
    requested = pair.b.of(ChannelRequested)
    assert [(e.channel_id, e.service, e.kind) for e in requested if isinstance(e, ChannelRequested)] == [
        (0, "files", "stream"),
        (2, "chat", "message"),
    ]
    assert _ids(pair.a, ChannelOpened) == [0, 2]
    assert _ids(pair.b, ChannelOpened) == [1]
    assert _ids(pair.a, ChannelRequested) == [1]
    assert all(pair.a.c.channels[i].is_open for i in (0, 1, 2))


def test_refuse_with_a_reason_frees_the_id() -> None:
    pair = Pair()
    pair.connect()
    pair.b.auto_accept = False

    def refuse(side: Side, event: Event, now: float) -> None:
        if isinstance(event, ChannelRequested):
            side.c.refuse_channel(event.channel_id, now, ErrorCode.CHANNEL_REFUSED, "busy, try later ✓")

    pair.b.hook = refuse
    channel_id = pair.a.c.open_channel("files", pair.now)
    pair.run(pair.now + 2.0, lambda now: bool(pair.a.of(ChannelRefused)))
    (refused,) = pair.a.of(ChannelRefused)
    assert refused == ChannelRefused(
        session_id=INDEX_A, channel_id=channel_id, code=ErrorCode.CHANNEL_REFUSED, reason="busy, try later ✓"
    )
    assert channel_id not in pair.a.c.channels and channel_id not in pair.b.c.channels
    assert not pair.a.of(ChannelOpened)
    with pytest.raises(LocalProtocolError):
        pair.a.c.send(channel_id, b"x", pair.now)
    # The connection is fine: the next channel works.
    pair.b.hook = None
    pair.b.auto_accept = True
    data = payload(5000)
    other, _ = one_way(pair, data, pair.now + 5.0)
    assert other == channel_id + 2
    assert pair.b.received[other] == data


def test_unknown_service_is_refused_with_service_unknown() -> None:
    pair = Pair()
    pair.connect()
    channel_id = pair.a.c.open_channel("no-such-plugin", pair.now)
    pair.run(pair.now + 2.0, lambda now: bool(pair.a.of(ChannelRefused)))
    (refused,) = pair.a.of(ChannelRefused)
    assert isinstance(refused, ChannelRefused)
    assert (refused.channel_id, refused.code) == (channel_id, ErrorCode.SERVICE_UNKNOWN)
    assert "no-such-plugin" in refused.reason
    assert not pair.a.c.channels and not pair.b.c.channels


def test_half_close_then_the_other_direction_then_closed() -> None:
    pair = Pair(LinkConfig(delay=0.02, loss=0.02), seed=4)
    pair.connect()
    up, down = payload(60_000, 1), payload(90_000, 2)
    channel_id = pair.a.c.open_channel("files", pair.now)
    pair.a.write(channel_id, up)
    pair.run(pair.now + 30.0, lambda now: bool(pair.b.of(ChannelEnded)))
    assert bytes(pair.b.received[channel_id]) == up
    # a finished its side; a's channel stays open: the other direction is still going.
    assert channel_id in pair.a.c.channels and channel_id in pair.b.c.channels
    with pytest.raises(LocalProtocolError):
        pair.a.c.send(channel_id, b"more", pair.now)
    assert not pair.a.of(ChannelClosed) and not pair.b.of(ChannelClosed)
    pair.b.write(channel_id, down)  # b keeps sending after a's FIN, then FINs too
    pair.run(pair.now + 30.0, lambda now: closed(pair.a, channel_id) and closed(pair.b, channel_id))
    assert bytes(pair.a.received[channel_id]) == down
    assert _ids(pair.a, ChannelEnded) == [channel_id]
    assert not pair.a.c.channels and not pair.b.c.channels
    assert not pair.a.of(ChannelReset) and not pair.b.of(ChannelReset)
    with pytest.raises(LocalProtocolError):
        pair.a.c.read(channel_id)


def test_send_takes_a_view_and_copies_only_what_fits() -> None:
    pair = Pair(config_a=ChannelConfig(send_buffer=4096))
    pair.connect()
    channel_id = pair.a.c.open_channel("files", pair.now)
    source = bytearray(payload(6000, 3))
    assert pair.a.c.send(channel_id, memoryview(source)[100:], pair.now) == 4096  # what fits the send buffer
    expected = bytes(source[100:4196])
    source[:] = bytes(len(source))  # the application reuses its buffer: what was queued is a copy
    pair.run(pair.now + 10.0, lambda now: len(pair.b.received.get(channel_id, b"")) == 4096)
    assert bytes(pair.b.received[channel_id]) == expected


def test_reset_by_the_receiver_aborts_both_sides_and_late_frames_are_ignored() -> None:
    pair = Pair(LinkConfig(delay=0.03), seed=2)
    pair.connect()
    reset_at: list[float] = []

    def reset_on_data(side: Side, event: Event, now: float) -> None:
        if isinstance(event, ChannelDataAvailable) and not reset_at:
            reset_at.append(now)
            side.c.reset_channel(event.channel_id, now, ErrorCode.APPLICATION_CLOSE)

    pair.b.hook = reset_on_data
    channel_id = pair.a.c.open_channel("files", pair.now)
    pair.a.write(channel_id, payload(3_000_000))
    pair.run(pair.now + 5.0)
    (reset,) = pair.a.of(ChannelReset)
    assert reset == ChannelReset(
        session_id=INDEX_A, channel_id=channel_id, code=ErrorCode.APPLICATION_CLOSE, reason="", by_peer=True
    )
    assert not pair.b.of(ChannelReset)  # the side that resets gets no event: it asked for it
    assert channel_id not in pair.a.c.channels and channel_id not in pair.b.c.channels
    # a had more in flight than b read before resetting: those STREAM frames reached b later (no
    # loss on this link) and were ignored without harming the connection.
    session = pair.a.c.session
    assert hasattr(session, "sent_frames")
    sent = sum(len(f.data) for f in session.sent_frames() if isinstance(f, Stream) and f.channel_id == channel_id)
    assert sent > len(pair.b.received.get(channel_id, b"")) + 10_000
    assert pair.a.c.state is ConnectionState.READY and pair.b.c.state is ConnectionState.READY
    data = payload(200_000, 9)
    other, _ = one_way(pair, data, pair.now + 10.0)
    assert digest(pair.b.received[other]) == digest(data)


def test_reset_by_the_sender_and_of_an_opening_channel() -> None:
    pair = Pair(LinkConfig(delay=0.03), seed=3)
    pair.connect()
    channel_id = pair.a.c.open_channel("files", pair.now)
    pair.a.write(channel_id, payload(1_000_000), finish=False)
    pair.run(pair.now + 0.3)
    assert channel_id in pair.b.c.channels
    pair.a.c.reset_channel(channel_id, pair.now, ErrorCode.CHANNEL_REFUSED)
    pair.a.outgoing.clear()
    assert channel_id not in pair.a.c.channels
    pair.run(pair.now + 1.0)
    resets = pair.b.of(ChannelReset)
    assert resets == [
        ChannelReset(session_id=INDEX_B, channel_id=channel_id, code=ErrorCode.CHANNEL_REFUSED, reason="", by_peer=True)
    ]
    assert channel_id not in pair.b.c.channels
    # Reset while still OPENING: the peer reports the request, then the reset.
    early = pair.a.c.open_channel("files", pair.now)
    pair.a.c.reset_channel(early, pair.now)
    pair.run(pair.now + 1.0)
    assert early not in pair.a.c.channels and early not in pair.b.c.channels
    assert pair.a.c.state is ConnectionState.READY


def test_stop_sending_makes_the_peer_reset() -> None:
    pair = Pair(LinkConfig(delay=0.02), seed=5)
    pair.connect()
    channel_id = pair.a.c.open_channel("files", pair.now)
    pair.a.write(channel_id, payload(2_000_000))
    pair.run(pair.now + 0.2)
    assert pair.b.received.get(channel_id)
    pair.b.c.stop_sending(channel_id, pair.now)
    pair.run(pair.now + 1.0)
    code = ErrorCode.APPLICATION_CLOSE
    assert pair.a.of(ChannelReset) == [
        ChannelReset(session_id=INDEX_A, channel_id=channel_id, code=code, reason="", by_peer=True)
    ]
    assert pair.b.of(ChannelReset) == [
        ChannelReset(session_id=INDEX_B, channel_id=channel_id, code=code, reason="", by_peer=True)
    ]
    assert channel_id not in pair.a.c.channels and channel_id not in pair.b.c.channels


def test_application_codes_travel_verbatim() -> None:
    """errors.md §3: codes from 0x100 up are the application's, in REFUSE, RESET and STOP_SENDING."""
    pair = Pair(LinkConfig(delay=0.02), seed=6)
    pair.connect()
    pair.b.auto_accept = False

    def refuse(side: Side, event: Event, now: float) -> None:
        if isinstance(event, ChannelRequested) and event.service == "chat":
            side.c.refuse_channel(event.channel_id, now, 0x4001, "quota")
        elif isinstance(event, ChannelRequested):
            side.c.accept_channel(event.channel_id, now)

    pair.b.hook = refuse
    refused_id = pair.a.c.open_channel("chat", pair.now)
    reset_id = pair.a.c.open_channel("files", pair.now)
    stopped_id = pair.a.c.open_channel("files", pair.now)
    for channel_id in (reset_id, stopped_id):
        pair.a.write(channel_id, payload(500_000, channel_id), finish=False)
    pair.run(pair.now + 0.5)
    assert pair.a.of(ChannelRefused) == [
        ChannelRefused(
            session_id=INDEX_A,
            channel_id=refused_id,
            code=ErrorCode.APPLICATION_CLOSE,
            reason="quota",
            application_code=0x4001,
        )
    ]
    big = (1 << 62) - 1
    pair.a.c.reset_channel(reset_id, pair.now, big)
    pair.b.c.stop_sending(stopped_id, pair.now, 0x100)
    pair.run(pair.now + 1.0)
    app = ErrorCode.APPLICATION_CLOSE
    assert pair.b.of(ChannelReset) == [
        ChannelReset(session_id=INDEX_B, channel_id=reset_id, code=app, reason="", by_peer=True, application_code=big),
        ChannelReset(
            session_id=INDEX_B, channel_id=stopped_id, code=app, reason="", by_peer=True, application_code=0x100
        ),
    ]
    # a heard the STOP_SENDING code and answered with a RESET carrying the same value.
    assert pair.a.of(ChannelReset) == [
        ChannelReset(
            session_id=INDEX_A, channel_id=stopped_id, code=app, reason="", by_peer=True, application_code=0x100
        )
    ]
    assert pair.a.c.state is ConnectionState.READY and pair.b.c.state is ConnectionState.READY


@pytest.mark.parametrize("code", [0x19, 0xFE, -1, 1 << 62, True, 2.0])
def test_codes_outside_both_ranges_are_refused_by_the_api(code: object) -> None:
    pair = Pair()
    pair.connect()
    channel_id = pair.a.c.open_channel("files", pair.now)
    pair.run(pair.now + 0.5)
    for call in (pair.a.c.reset_channel, pair.a.c.stop_sending):
        with pytest.raises(LocalProtocolError):
            call(channel_id, pair.now, code)  # type: ignore[arg-type]
    assert channel_id in pair.a.c.channels  # nothing changed


def test_resets_do_not_leak_connection_credit() -> None:
    """A reset channel's bytes in flight must not eat the connection window for good (spec/flow.md §3.3)."""
    config = ChannelConfig(connection_window=1 << 20, connection_window_max=1 << 20, channel_window=512 * 1024)
    pair = Pair(LinkConfig(delay=0.03), config_a=config, config_b=config, seed=6)
    pair.connect()

    def reset_on_data(side: Side, event: Event, now: float) -> None:
        if isinstance(event, ChannelDataAvailable):
            side.c.reset_channel(event.channel_id, now)

    pair.b.hook = reset_on_data
    for i in range(8):
        channel_id = pair.a.c.open_channel("files", pair.now)
        pair.a.write(channel_id, payload(600_000, i))
        pair.run(pair.now + 3.0, lambda now, c=channel_id: c not in pair.a.c.channels)  # type: ignore[misc]
        pair.a.outgoing.clear()
        pair.run(pair.now + 1.0)
    # Every byte the sender counted against the connection window was counted by the receiver too.
    assert pair.a.c.conn_credit.sent == pair.b.c.conn_window.highest_received
    pair.b.hook = None
    data = payload(3_000_000, 99)
    other, _ = one_way(pair, data, pair.now + 30.0)
    assert closed(pair.b, other), f"stalled: credit {pair.a.c.conn_credit.available()}"
    assert digest(pair.b.received[other]) == digest(data)


def test_ten_channels_share_the_link_fairly() -> None:
    bandwidth = 500_000.0
    link = LinkConfig(delay=0.02, bandwidth=bandwidth, queue_bytes=40_000)
    pair = Pair(link, seed=7)
    pair.connect()
    ids = [pair.a.c.open_channel("files", pair.now) for _ in range(10)]
    data = {i: payload(150_000, i) for i in ids}
    for i in ids:
        pair.a.write(i, data[i])
    start = pair.now
    pair.run(start + 2.0)  # about two thirds of the way: compare progress
    progress = [len(pair.b.received.get(i, b"")) for i in ids]
    assert min(progress) > 0.8 * max(progress), progress
    pair.run(start + 30.0, lambda now: len(pair.b.of(ChannelEnded)) == len(ids))
    finished = {e.channel_id: t for t, e in pair.b.events if isinstance(e, ChannelEnded)}
    spread = max(finished.values()) - min(finished.values())
    total = max(finished.values()) - start
    assert spread < 0.1 * total, (spread, total)
    assert all(pair.b.received[i] == data[i] for i in ids)


def _message(n: int) -> bytes:
    return n.to_bytes(4, "big") + payload(100 + n % 300, n)


def _send_messages(pair: Pair, count: int, retransmissions: int) -> tuple[int, list[bytes]]:
    channel_id = pair.a.c.open_channel("media", pair.now, kind=ChannelKind.MESSAGE, retransmissions=retransmissions)
    pair.run(pair.now + 2.0, lambda now: bool(pair.a.of(ChannelOpened)))
    for n in range(count):
        pair.a.c.send_message(channel_id, _message(n), pair.now)
        pair.run(pair.now + 0.01)
    pair.run(pair.now + 3.0)
    got = [e.data for e in pair.b.of(ChannelMessage) if isinstance(e, ChannelMessage) and e.channel_id == channel_id]
    return channel_id, got


def test_messages_arrive_whole_on_a_clean_link() -> None:
    pair = Pair(LinkConfig(delay=0.01))
    pair.connect()
    _, got = _send_messages(pair, 200, 0)
    assert got == [_message(n) for n in range(200)]


@pytest.mark.parametrize("seed", [1, 2])
def test_messages_over_loss_are_never_duplicated_or_damaged(seed: int) -> None:
    link = LinkConfig(delay=0.02, loss=0.2, duplicate=0.1, reorder=0.1, reorder_delay=0.015)
    results = {}
    for budget in (0, 3):
        pair = Pair(link, seed=seed)
        pair.connect()
        _, got = _send_messages(pair, 300, budget)
        numbers = [int.from_bytes(m[:4], "big") for m in got]
        assert len(set(numbers)) == len(numbers), "a message was delivered twice"
        assert all(m == _message(n) for m, n in zip(got, numbers, strict=True)), "a damaged message"
        results[budget] = len(numbers)
    assert 0.65 * 300 < results[0] < 0.95 * 300, results  # unreliable: about 80% arrive
    assert results[3] > 0.97 * 300, results  # three retransmissions recover nearly everything


def test_message_channel_close_both_ways() -> None:
    pair = Pair()
    pair.connect()
    channel_id, got = _send_messages(pair, 5, 0)
    assert len(got) == 5
    pair.a.c.close_channel(channel_id, pair.now)
    with pytest.raises(LocalProtocolError):
        pair.a.c.send_message(channel_id, b"late", pair.now)
    pair.run(pair.now + 1.0)
    assert _ids(pair.b, ChannelEnded) == [channel_id]
    assert not closed(pair.a, channel_id)
    pair.b.c.close_channel(channel_id, pair.now)
    pair.run(pair.now + 1.0, lambda now: closed(pair.a, channel_id) and closed(pair.b, channel_id))
    assert closed(pair.a, channel_id) and closed(pair.b, channel_id)
    assert not pair.a.c.channels and not pair.b.c.channels


def test_max_channels_is_respected_and_grows_as_channels_close() -> None:
    pair = Pair(config_b=ChannelConfig(max_channels=4))
    pair.connect()
    pair.run(pair.now + 0.5)  # b's MAX_CHANNELS arrives
    ids = [pair.a.c.open_channel("files", pair.now) for _ in range(4)]
    with pytest.raises(LocalProtocolError) as info:
        pair.a.c.open_channel("files", pair.now)
    assert info.value.code is ErrorCode.CHANNEL_LIMIT
    pair.run(pair.now + 1.0)
    assert len(pair.b.of(ChannelRequested)) == 4
    # Close two of them completely; the limit rises and two more can be opened.
    from chan_helpers import finish_back

    pair.b.hook = finish_back
    for channel_id in ids[:2]:
        pair.a.c.finish(channel_id, pair.now)
    pair.run(pair.now + 2.0, lambda now: all(closed(pair.b, i) and closed(pair.a, i) for i in ids[:2]))
    pair.run(pair.now + 0.5)
    more = [pair.a.c.open_channel("files", pair.now) for _ in range(2)]
    with pytest.raises(LocalProtocolError):
        pair.a.c.open_channel("files", pair.now)
    pair.run(pair.now + 1.0)
    assert _ids(pair.a, ChannelOpened) == ids + more
    assert not pair.a.of(ConnectionClosed) and not pair.b.of(ConnectionClosed)


def test_opens_before_max_channels_arrives_do_not_kill_the_connection() -> None:
    """The peer may open 100 channels before our first MAX_CHANNELS (spec/channels.md §2).

    A receiver configured for fewer must refuse the extra ones, not close the connection.
    """
    pair = Pair(config_b=ChannelConfig(max_channels=3))
    opened: list[int] = []

    def open_many(side: Side, event: Event, now: float) -> None:
        if type(event).__name__ == "ConnectionReady":
            opened.extend(side.c.open_channel("files", now) for _ in range(6))

    pair.a.hook = open_many
    pair.run(3.0)
    assert len(opened) == 6
    assert not pair.a.of(ConnectionClosed) and not pair.b.of(ConnectionClosed)
    assert len(pair.a.of(ChannelOpened)) == 3
    refused = pair.a.of(ChannelRefused)
    assert len(refused) == 3 and all(
        isinstance(e, ChannelRefused) and e.code is ErrorCode.CHANNEL_LIMIT for e in refused
    )


def test_a_full_size_message_is_not_starved_by_a_large_ack() -> None:
    """An ACK with many ranges must not keep a full-size message out of every packet."""
    pair = Pair(LinkConfig(delay=0.01), config_a=ChannelConfig(pmtu_probing=False))
    now = pair.connect()
    a = pair.a.conn
    assert a is not None
    channel_id = a.open_channel("media", now, kind=ChannelKind.MESSAGE)
    pair.run(now + 1.0, lambda t: channel_id in _ids(pair.a, ChannelOpened))
    now = pair.now + 1.0
    base = (a.acks.largest or 0) + 10
    for i in range(40):  # as if packets from b arrived with many gaps
        a.acks.on_packet(base + 3 * i, False, now)
    a.acks.on_packet(base + 200, True, now)  # and something ack-eliciting: an ACK is due
    channel = a.channels[channel_id]
    assert channel.messages is not None
    a.send_message(channel_id, bytes(channel.messages.max_message_size), now)
    sizes = [len(d) for d in a.data_to_send(now)]
    assert len(channel.messages) == 0, f"the message is still queued after datagrams of {sizes} bytes"
    assert max(sizes) > channel.messages.max_message_size


def test_lost_blocked_frames_are_sent_again_while_still_blocked() -> None:
    """A lost DATA_BLOCKED / CHANNEL_BLOCKED is rebuilt from the credit if the sender is still blocked."""
    pair = Pair(LinkConfig(delay=0.01))
    pair.connect()
    a = pair.a.c
    channel_id = a.open_channel("files", pair.now)
    pair.run(pair.now + 0.5, lambda now: channel_id in _ids(pair.a, ChannelOpened))
    channel = a.channels[channel_id]
    channel.credit.sent = channel.credit.limit  # exhaust the channel's credit
    assert isinstance(a._current_control(FrameType.CHANNEL_BLOCKED, channel_id), ChannelBlocked)
    channel.credit.update_limit(channel.credit.limit + 10)
    assert a._current_control(FrameType.CHANNEL_BLOCKED, channel_id) is None
    a.conn_credit.sent = a.conn_credit.limit
    assert a._current_control(FrameType.DATA_BLOCKED, 0) == DataBlocked(limit=a.conn_credit.limit)


def test_packets_respect_the_peers_record_limit() -> None:
    """A peer that accepts only small records never gets a larger one, whatever the path MTU."""
    pair = Pair(LinkConfig(delay=0.01))
    pair.connect()
    a = pair.a.c
    a.session.peer_max_plaintext = 600
    channel_id = a.open_channel("files", pair.now)
    pair.a.write(channel_id, payload(50_000))
    sizes: list[int] = []
    original = pair.link.send

    def spy(src: str, datagram: bytes, now: float) -> None:
        if src == "a":
            sizes.append(len(datagram))
        original(src, datagram, now)

    pair.link.send = spy  # type: ignore[method-assign,assignment]
    pair.run(pair.now + 5.0, lambda now: len(pair.b.received.get(channel_id, b"")) == 50_000)
    assert len(pair.b.received[channel_id]) == 50_000
    assert max(sizes) <= 600 + 30


@pytest.mark.parametrize(
    "fields",
    [
        {"channel_window": 2 << 20, "channel_window_max": 1 << 20},
        {"connection_window": 4 << 20, "connection_window_max": 2 << 20},
        {"connection_window_max": 1 << 62},
        {"channel_window_max": 1 << 62},
    ],
)
def test_a_window_above_its_maximum_is_refused_when_configured(fields: dict[str, int]) -> None:
    # CH-8.1: refused at once, not later by an INTERNAL_ERROR close when a peer opens a channel.
    with pytest.raises(LocalProtocolError, match="window"):
        ChannelConfig(**fields)  # type: ignore[arg-type]


def test_windows_at_their_maxima_are_fine() -> None:
    ChannelConfig(channel_window=1 << 20, channel_window_max=1 << 20, connection_window_max=(1 << 62) - 1)
