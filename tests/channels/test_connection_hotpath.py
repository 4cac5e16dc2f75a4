"""The connection's per-packet shortcuts behave as the general paths do (spec/channels.md §4, §5; recovery.md §6).

* A packet that starts with STREAM frames is handled without ``Stream`` objects
  (``Connection._on_stream_packet``), still parsing every frame before acting on any.
* ACKs ride along with data only when an ack-eliciting packet arrived since the last ACK, or
  ``ACK_ONLY_PER_ACK`` ACK-only packets did.
* The pacer's timer is not armed for a packet due within ``PACING_GRANULARITY``.
* Contiguous stream chunks acknowledged by one ACK are released as one range.
* A bulk transfer on one channel (``SendPath._stream_burst``) fills its packets and keeps to
  the congestion window.
"""

from __future__ import annotations

from chan_helpers import Pair, TappedSession, digest, one_way, payload

from p2pos.proto.channels import frames as fr
from p2pos.proto.channels.connection import ChannelConfig, Connection, ConnectionState
from p2pos.proto.channels.sending import PACING_GRANULARITY
from p2pos.proto.errors import ErrorCode
from p2pos.proto.events import ChannelDataAvailable, ConnectionClosed
from p2pos.proto.simulation.link import LinkConfig


def _open_pair() -> tuple[Pair, int]:
    pair = Pair(LinkConfig(delay=0.01))
    pair.connect()
    channel_id = pair.a.c.open_channel("files", pair.now)
    pair.a.write(channel_id, b"hello", finish=False)
    pair.run(pair.now + 0.5)
    assert bytes(pair.b.received[channel_id]) == b"hello"
    return pair, channel_id


def _close_code(conn: Connection) -> ErrorCode | None:
    """The code of the first ConnectionClosed the connection queued, if any."""
    closed = [e for e in conn._events if isinstance(e, ConnectionClosed)]
    return closed[0].code if closed else None


def test_stream_frames_followed_by_other_frames_are_all_handled() -> None:
    pair, channel_id = _open_pair()
    b = pair.b.c
    limit = b.conn_credit.limit
    plaintext = fr.encode_frames(
        [
            fr.Stream(channel_id=channel_id, offset=5, data=b" world", fin=False),
            fr.Stream(channel_id=channel_id, offset=11, data=b"!", fin=True),
            fr.MaxData(maximum=limit + 1000),
            fr.Ping(),
        ]
    )
    b._packet(10**6, plaintext, pair.now)
    assert b.conn_credit.limit == limit + 1000
    assert b.read(channel_id) == b" world!"
    recv = b.channels[channel_id].recv
    assert recv is not None and recv.is_finished
    assert b.acks.largest == 10**6


def test_a_bad_frame_after_stream_frames_closes_before_any_data_is_taken() -> None:
    """As for every packet (frames.md §5): nothing of a packet that does not parse is processed."""
    pair, channel_id = _open_pair()
    b = pair.b.c
    recv = b.channels[channel_id].recv
    assert recv is not None
    before = recv.window.highest_received
    plaintext = fr.encode_frame(fr.Stream(channel_id=channel_id, offset=5, data=b"lost", fin=False)) + b"\x3f"
    b._packet(10**6, plaintext, pair.now)
    assert b.state is not ConnectionState.READY
    assert recv.window.highest_received == before and recv.readable == 0
    assert _close_code(b) is ErrorCode.PROTOCOL_VIOLATION
    assert not any(isinstance(e, ChannelDataAvailable) for e in b._events)


def test_a_packet_that_starts_with_an_ack_has_every_frame_handled() -> None:
    pair, channel_id = _open_pair()
    a = pair.a.c
    a.send(channel_id, b" world", pair.now)
    sent = pair.a.data_to_send(pair.now)  # one data packet, not yet acknowledged
    assert len(sent) == 1 and a.recovery.outstanding_count >= 1
    largest = a.recovery.largest_sent
    limit = a.conn_credit.limit
    plaintext = fr.encode_ack([(0, largest)], 0) + fr.encode_frames([fr.MaxData(maximum=limit + 1000), fr.Ping()])
    acks_before = a.acks.largest
    a._packet(10**6, plaintext, pair.now + 0.02)
    assert a.state is ConnectionState.READY
    assert a.recovery.outstanding_count == 0  # the ACK was processed
    assert a.conn_credit.limit == limit + 1000  # and the frames after it
    assert a.acks.largest == 10**6 != acks_before and a.acks.ack_due(pair.now + 0.02)  # the PING elicits an ACK


def test_a_bad_frame_after_an_ack_closes_before_the_ack_is_taken() -> None:
    pair, channel_id = _open_pair()
    a = pair.a.c
    a.send(channel_id, b" world", pair.now)
    pair.a.data_to_send(pair.now)
    outstanding = a.recovery.outstanding_count
    plaintext = fr.encode_ack([(0, a.recovery.largest_sent)], 0) + b"\x3f"
    a._packet(10**6, plaintext, pair.now + 0.02)
    assert a.state is not ConnectionState.READY
    assert a.recovery.outstanding_count == outstanding
    assert _close_code(a) is ErrorCode.PROTOCOL_VIOLATION


def test_a_flow_control_violation_on_the_hot_path_closes_the_connection() -> None:
    pair, channel_id = _open_pair()
    b = pair.b.c
    recv = b.channels[channel_id].recv
    assert recv is not None
    beyond = recv.window.limit
    plaintext = fr.encode_frame(fr.Stream(channel_id=channel_id, offset=beyond, data=b"x", fin=False))
    b._packet(10**6, plaintext, pair.now)
    assert _close_code(b) is ErrorCode.FLOW_CONTROL_ERROR


def test_acks_ride_along_only_when_something_new_arrived() -> None:
    """In a one-way transfer the sender acknowledges the receiver's ACK-only packets now and then, not in each packet.

    The receiver still learns that its ACKs arrived: what it keeps of the packets
    that carried them stays small (channels.md §4).
    """
    capacity = 50e6 / 8  # a bottleneck: the sender is ACK-clocked, each ACK answered by data packets
    pair = Pair(LinkConfig(delay=0.01, bandwidth=capacity, queue_bytes=200_000), LinkConfig(delay=0.01))
    pair.connect()
    data = payload(1_500_000, 3)
    most_kept = 0
    channel_id = pair.a.c.open_channel("files", pair.now)
    pair.a.write(channel_id, data)

    def delivered(now: float) -> bool:
        nonlocal most_kept
        most_kept = max(most_kept, pair.b.c.recovery.outstanding_count)  # b's ACK-only packets not yet acked
        return len(pair.b.received.get(channel_id, b"")) == len(data)

    pair.run(pair.now + 30.0, delivered)
    assert digest(pair.b.received[channel_id]) == digest(data)
    a_session, b_session = pair.a.c.session, pair.b.c.session
    assert isinstance(a_session, TappedSession) and isinstance(b_session, TappedSession)
    a_acks = sum(
        1 for p in a_session.sent_plaintexts if any(isinstance(f, fr.Ack) for f in fr.parse_frames_untrusted(p))
    )
    b_packets = len(b_session.sent_plaintexts)
    assert len(a_session.sent_plaintexts) > 1000  # ~1070 data packets (PMTU probing takes them to 1452 bytes)
    assert b_packets > 300  # ACK-only packets, several per round trip
    assert a_acks <= b_packets // 4  # about one in ACK_ONLY_PER_ACK (every one of them before)
    # b's records of its ACK-only packets do not pile up over the transfer: a round trip's worth.
    assert most_kept < b_packets // 4


def test_a_fast_path_is_paced_in_bursts_not_one_packet_per_wake_up() -> None:
    """At 1 Gbit/s packets are due every ~10 us: a driver waking per packet would be busy for nothing.

    (Without the granularity a wake-up carries 1.04 packets on average here; with it, over 3.)
    """
    capacity = 1000e6 / 8
    link = LinkConfig(delay=0.01, bandwidth=capacity, queue_bytes=int(capacity * 0.02))
    pair = Pair(link, LinkConfig(delay=0.01))
    pair.connect()
    side = pair.a
    original = side.data_to_send
    wake_ups: list[tuple[float, int, float | None]] = []

    def counting(now: float) -> list[bytes]:
        out = original(now)
        if out:
            wake_ups.append((now, len(out), side.c._pacing_at))
        return out

    side.data_to_send = counting  # type: ignore[method-assign]
    data = payload(4_000_000, 4)
    channel_id, _ = one_way(pair, data, pair.now + 30.0)
    assert digest(pair.b.received[channel_id]) == digest(data)
    sent = sum(n for _, n, _ in wake_ups)
    assert sent / len(wake_ups) >= 2, f"{sent} packets in {len(wake_ups)} wake-ups"
    # Whenever the pacer held packets back, it asked to be woken more than the granularity later.
    for now, _, pacing_at in wake_ups:
        assert pacing_at is None or pacing_at > now + PACING_GRANULARITY


def test_many_channels_acknowledged_together_release_their_buffers() -> None:
    """ACK coalescing: interleaved chunks of many channels, FINs among them, all settle exactly."""
    config = ChannelConfig(channel_window=8 * 1024)
    pair = Pair(LinkConfig(delay=0.02, loss=0.02), LinkConfig(delay=0.02), config_a=config, config_b=config, seed=9)
    pair.connect()
    ids = [pair.a.c.open_channel("files", pair.now) for _ in range(20)]
    blobs = {cid: payload(20_000 + 997 * i, i) for i, cid in enumerate(ids)}
    for cid, blob in blobs.items():
        pair.a.write(cid, blob)
    pair.run(pair.now + 60.0, lambda now: all(len(pair.b.received.get(c, b"")) == len(blobs[c]) for c in ids))
    pair.run(pair.now + 5.0)
    for cid, blob in blobs.items():
        assert digest(pair.b.received[cid]) == digest(blob)
    for cid in ids:
        channel = pair.a.c.channels.get(cid)
        assert channel is None or channel.send is None or channel.send.buffered == 0
    assert pair.a.c.conn_credit.sent == sum(len(b) for b in blobs.values())


def test_a_bulk_transfer_fills_packets_and_keeps_to_the_window() -> None:
    """The one-channel fast path (``SendPath._stream_burst``): full packets, one STREAM frame each,
    never more in flight than the congestion window allows, and lost data resent (by the general loop)."""
    link = LinkConfig(delay=0.01, loss=0.02, bandwidth=20e6, queue_bytes=200_000)
    pair = Pair(link, LinkConfig(delay=0.01), seed=9)
    pair.connect()
    side = pair.a
    original = side.data_to_send
    overshoot: list[tuple[int, int]] = []

    def checked(now: float) -> list[bytes]:
        conn = side.c
        before = conn.recovery.bytes_in_flight
        out = original(now)
        after = conn.recovery.bytes_in_flight
        # New packets go out only while a whole one fits the window (a loss may leave more in
        # flight than a shrunken window: then nothing new is sent).
        if after > before and after > conn.cc.congestion_window:
            overshoot.append((after, conn.cc.congestion_window))
        return out

    side.data_to_send = checked  # type: ignore[method-assign]
    data = payload(3_000_000, 9)
    channel_id, _ = one_way(pair, data, pair.now + 60.0)
    assert digest(pair.b.received[channel_id]) == digest(data)
    assert not overshoot, overshoot[:3]
    session = side.c.session
    assert isinstance(session, TappedSession)
    stream_packets = 0
    short = 0
    for plaintext in session.sent_plaintexts:
        frames = fr.parse_frames_untrusted(plaintext)
        if not any(isinstance(f, fr.Stream) for f in frames):
            continue
        stream_packets += 1
        if len(plaintext) < side.c.pmtu.current_mtu - 30 - 16:  # room for the record header and tag, and a varint
            short += 1
    assert side.c.lost_packets > 10  # the loss was real, so retransmissions were exercised
    # Short packets: the end of the stream and retransmitted ranges cut by what was acknowledged.
    assert stream_packets >= len(data) // side.c.pmtu.current_mtu
    assert short <= side.c.lost_packets + 5, (short, side.c.lost_packets, stream_packets)
