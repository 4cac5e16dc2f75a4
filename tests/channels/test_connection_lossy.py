"""Issue 3 item 5: the channel layer over a hostile link (seeded emulator, simulated time).

Data always arrives complete and in order (SHA-256 checked) under loss (random
and in bursts), reordering, duplication, corruption, long delays and bandwidth
limits; 1000 channels with tiny windows finish; goodput at 1% loss (BBR, and the limits of NewReno and CUBIC).
"""

from __future__ import annotations

import dataclasses

import pytest
from chan_helpers import Pair, Side, TappedSession, closed, digest, finish_back, one_way, payload

from p2pos.proto.channels import frames as fr
from p2pos.proto.channels.connection import ChannelConfig
from p2pos.proto.channels.frames import ChannelKind
from p2pos.proto.events import (
    ChannelDataAvailable,
    ChannelEnded,
    ChannelEvent,
    ChannelOpened,
    ChannelRefused,
    ChannelRequested,
    ChannelReset,
    ConnectionClosed,
    HandshakeCompleted,
)
from p2pos.proto.simulation.link import LinkConfig
from p2pos.proto.simulation.prng import Prng

CASES = {
    "clean": LinkConfig(delay=0.025),
    "loss5": LinkConfig(delay=0.025, loss=0.05),
    "loss10": LinkConfig(delay=0.025, loss=0.10),
    "loss30": LinkConfig(delay=0.025, loss=0.30),
    "bursts": LinkConfig(delay=0.02, p_good_to_bad=0.02, p_bad_to_good=0.25),
    "reorder": LinkConfig(delay=0.02, reorder=0.2, reorder_delay=0.03, jitter=0.01),
    "duplicate": LinkConfig(delay=0.02, duplicate=0.2),
    "delay1ms": LinkConfig(delay=0.001),
    "delay750ms": LinkConfig(delay=0.75, loss=0.02),
    "bandwidth": LinkConfig(delay=0.03, bandwidth=200_000, queue_bytes=20_000),
    "everything": LinkConfig(
        delay=0.05,
        jitter=0.05,
        loss=0.05,
        p_good_to_bad=0.01,
        p_bad_to_good=0.3,
        reorder=0.05,
        reorder_delay=0.02,
        duplicate=0.05,
        corrupt=0.02,
        bandwidth=400_000,
        queue_bytes=30_000,
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_stream_arrives_complete_and_in_order(name: str) -> None:
    link = CASES[name]
    pair = Pair(link, seed=11)
    pair.connect(60.0)
    data = payload(400_000, 7)
    channel_id, end = one_way(pair, data, pair.now + 600.0)
    assert closed(pair.a, channel_id) and closed(pair.b, channel_id), f"{name}: not done at {end}"
    assert digest(pair.b.received[channel_id]) == digest(data)
    assert not pair.a.of(ConnectionClosed) and not pair.b.of(ConnectionClosed)
    stats = pair.link.stats("a")
    if link.mean_loss >= 0.05:
        assert stats.lost > 10 and pair.a.c.lost_packets > 10  # the loss was real and was repaired


def test_both_directions_at_once_over_loss() -> None:
    pair = Pair(LinkConfig(delay=0.03, loss=0.1, reorder=0.05, reorder_delay=0.02), seed=12)
    pair.connect(30.0)
    up, down = payload(300_000, 1), payload(300_000, 2)
    channel_id = pair.a.c.open_channel("files", pair.now)
    pair.a.write(channel_id, up)

    def answer(side: Side, event: ChannelEvent | HandshakeCompleted, now: float) -> None:
        if isinstance(event, ChannelRequested):
            side.write(channel_id, down)

    pair.b.hook = answer
    pair.run(pair.now + 300.0, lambda now: closed(pair.a, channel_id) and closed(pair.b, channel_id))
    assert digest(pair.b.received[channel_id]) == digest(up)
    assert digest(pair.a.received[channel_id]) == digest(down)


def test_corrupted_packets_are_dropped_by_the_aead() -> None:
    link = LinkConfig(delay=0.02, corrupt=0.05, corrupt_max_bits=3)
    pair = Pair(link, seed=13)
    pair.connect(30.0)
    data = payload(600_000, 3)
    channel_id, _ = one_way(pair, data, pair.now + 300.0)
    assert digest(pair.b.received[channel_id]) == digest(data)
    corrupted = pair.link.stats("a").corrupted + pair.link.stats("b").corrupted
    assert corrupted > 20
    # Every damaged datagram was rejected by the record layer (authentication, or a header that no
    # longer names the session), none reached the channel layer.
    drops = sum(pair.b.c.session.stats().values()) + sum(pair.a.c.session.stats().values())
    assert drops >= corrupted


@pytest.mark.parametrize(("channels", "window"), [(1000, 1024), (100, 16)])
def test_a_thousand_channels_with_tiny_windows_finish(channels: int, window: int) -> None:
    config = ChannelConfig(channel_window=window, channel_window_max=window, max_channels=channels)
    pair = Pair(LinkConfig(delay=0.02, loss=0.02), config_a=config, config_b=config, seed=14)
    pair.connect(30.0)
    pair.run(pair.now + 1.0)  # b's MAX_CHANNELS replaces the initial allowance of 100
    pair.b.hook = finish_back
    ids = [pair.a.c.open_channel("files", pair.now) for _ in range(channels)]
    data = {i: payload(3000 + i % 7 * 500, i) for i in ids}
    for i in ids:
        pair.a.write(i, data[i])

    def all_closed(now: float) -> bool:
        return not pair.a.c.channels and not pair.b.c.channels

    end = pair.run(pair.now + 600.0, all_closed)
    assert all_closed(end), f"{len(pair.a.c.channels)} channels left at {end}"
    assert all(pair.b.received[i] == data[i] for i in ids)
    assert not pair.a.of(ConnectionClosed)


def _goodput(mbit: float, congestion_control: str, loss: float, seed: int) -> float:
    """Delivered stream bytes per second over 10 s of steady state, as a fraction of the link's capacity.

    The forward direction is a bottleneck of ``mbit`` with a drop-tail queue of one
    bandwidth-delay product; both directions lose ``loss`` of their datagrams at
    random; the round trip is 50 ms.  The first 3 s (the handshake aside) are slow
    start and are not counted.
    """
    capacity = mbit * 1e6 / 8
    forward = LinkConfig(delay=0.025, loss=loss, bandwidth=capacity, queue_bytes=max(int(capacity * 0.05), 3000))
    config = ChannelConfig(congestion_control=congestion_control)
    pair = Pair(forward, LinkConfig(delay=0.025, loss=loss), config_a=config, config_b=config, seed=seed)
    pair.connect()
    channel_id = pair.a.c.open_channel("files", pair.now)
    pair.a.write(channel_id, payload(int(capacity * 20), seed))
    start = pair.now
    pair.run(start + 3.0)
    before = len(pair.b.received.get(channel_id, b""))
    pair.run(start + 13.0)
    return (len(pair.b.received[channel_id]) - before) / 10.0 / capacity


@pytest.mark.parametrize(
    ("mbit", "congestion_control", "seed"),
    [(10, "bbr", 1), (10, "bbr", 2), (10, "bbr", 3), (50, "bbr", 1), (1, "bbr", 1)],
)
def test_goodput_at_one_percent_loss_and_50ms_rtt(mbit: float, congestion_control: str, seed: int) -> None:
    """Issue 3 item 5: at least 70% of the capacity at 1% random loss, 50 ms RTT, with the default controller.

    BBR (spec/recovery.md §5.6) paces at its bandwidth estimate and ignores loss
    below 2% per round trip.  These few seeds are a regression check, not the figure:
    bench/goodput_loss.py reports the range over seeds 0-19 (worst 0.71, medians 0.82-0.90).
    """
    assert ChannelConfig().congestion_control == congestion_control
    assert _goodput(mbit, congestion_control, 0.01, seed) >= 0.7


@pytest.mark.parametrize(
    ("mbit", "congestion_control", "seed"),
    [(1, "newreno", 1), (1, "newreno", 4), (1, "cubic", 1), (1, "cubic", 2), (2, "cubic", 1), (2, "cubic", 2)],
)
def test_loss_based_controllers_reach_70_percent_only_on_slow_links(
    mbit: float, congestion_control: str, seed: int
) -> None:
    """NewReno and CUBIC reach 70% at 1% loss and 50 ms only up to 1-2 Mbit/s.

    Above that any loss-based controller is held by its loss response, not by the
    link: NewReno averages about 1.22 * MSS / (RTT * sqrt(p)) (Mathis et al. 1997),
    ~350 KB/s or 2.8 Mbit/s here, and CUBIC's Reno-friendly region gives about the
    same at a 50 ms RTT; at 10 Mbit/s both reach only 20-30% (checked below), which
    is why BBR is the default.
    """
    assert _goodput(mbit, congestion_control, 0.01, seed) >= 0.7


@pytest.mark.parametrize("congestion_control", ["newreno", "cubic"])
def test_loss_based_controllers_are_held_back_by_random_loss_at_10_mbit(congestion_control: str) -> None:
    assert _goodput(10, congestion_control, 0.01, 1) < 0.4


def test_bbr_backs_off_when_loss_is_above_its_threshold() -> None:
    """At 5% random loss (above LOSS_THRESH) BBR bounds its data in flight: it is no loss-blind flood."""
    assert _goodput(10, "bbr", 0.05, 1) < 0.5


@pytest.mark.parametrize("congestion_control", ["newreno", "cubic", "bbr"])
def test_a_clean_link_is_filled(congestion_control: str) -> None:
    assert _goodput(10, congestion_control, 0.0, 1) >= 0.9


@pytest.mark.parametrize("seed", range(6))
def test_mixed_workload_with_resets_keeps_data_and_credit_exact(seed: int) -> None:
    """Streams both ways, message channels, refusals and random resets over a hostile link.

    Every stream that was not reset arrives whole; a reset one delivers a prefix;
    every channel ends closed on both sides; and once the RESETs have been
    answered, each side's connection-level credit used equals what the other
    side counted (no credit leaks, spec/flow.md §3.3).
    """
    rng = Prng(seed)
    link = LinkConfig(delay=0.03, loss=0.08, reorder=0.05, reorder_delay=0.02, duplicate=0.03, corrupt=0.01)
    config = ChannelConfig(channel_window=rng.choice([4096, 65536]), send_buffer=rng.choice([4096, 1 << 20]))
    pair = Pair(link, config_a=config, config_b=config, seed=seed)
    pair.connect(60.0)
    pair.run(pair.now + 1.0)
    messages: set[int] = set()
    reset: set[int] = set()

    def hook(side: Side, event: ChannelEvent | HandshakeCompleted, now: float) -> None:
        if isinstance(event, ChannelEnded):
            channel = side.c.channels.get(event.channel_id)
            if channel is not None and not channel.local_finished and event.channel_id not in side.outgoing:
                side.c.finish(event.channel_id, now)
        elif isinstance(event, ChannelDataAvailable) and rng.random() < 0.02 and event.channel_id in side.c.channels:
            side.c.reset_channel(event.channel_id, now)
            reset.add(event.channel_id)
        elif isinstance(event, ChannelOpened) and event.channel_id in messages:
            for n in range(5):
                side.c.send_message(event.channel_id, payload(50 + n, n), now)
            side.c.close_channel(event.channel_id, now)

    pair.a.hook = pair.b.hook = hook
    streams: dict[int, tuple[Side, bytes]] = {}
    for k in range(10):
        side = pair.a if rng.random() < 0.6 else pair.b
        service = rng.choice(["files", "chat", "nope"])
        if rng.random() < 0.2:
            messages.add(side.c.open_channel(service, pair.now, kind=ChannelKind.MESSAGE))
        else:
            channel_id = side.c.open_channel(service, pair.now)
            streams[channel_id] = (side, payload(rng.randbelow(150_000), seed * 100 + k))
            side.write(channel_id, streams[channel_id][1])
    pair.run(pair.now + 300.0, lambda now: not pair.a.c.channels and not pair.b.c.channels)
    assert not pair.a.c.channels and not pair.b.c.channels
    pair.run(pair.now + 10.0)  # the last RESET answers and ACKs
    aborted = reset | {
        e.channel_id for _, e in pair.a.events + pair.b.events if isinstance(e, ChannelReset | ChannelRefused)
    }
    for channel_id, (sender, data) in streams.items():
        receiver = pair.b if sender is pair.a else pair.a
        got = bytes(receiver.received.get(channel_id, b""))
        assert data.startswith(got) if channel_id in aborted else got == data, channel_id
    assert len(aborted) < len(streams) + len(messages)  # some channels completed normally
    assert not pair.a.of(ConnectionClosed) and not pair.b.of(ConnectionClosed)
    assert pair.a.c.conn_credit.sent == pair.b.c.conn_window.highest_received
    assert pair.b.c.conn_credit.sent == pair.a.c.conn_window.highest_received


@pytest.mark.parametrize("congestion_control", ["newreno", "cubic"])
def test_a_sender_held_by_flow_control_does_not_inflate_its_window(congestion_control: str) -> None:
    """RFC 9002 §7.8: with at most 64 KiB in flight (the peer's window), the window stays near that."""
    window = 64 * 1024
    config = ChannelConfig(congestion_control=congestion_control, channel_window=window, channel_window_max=window)
    pair = Pair(LinkConfig(delay=0.02), config_a=config, config_b=config, seed=2)
    pair.connect()
    data = payload(3_000_000, 8)
    channel_id, _ = one_way(pair, data, pair.now + 60.0)
    assert digest(pair.b.received[channel_id]) == digest(data)
    assert pair.a.c.cc.congestion_window <= 2 * window + 4 * 1200


#: Measured: 0.26 s with the data in the probes, 0.36 s with PING probes (a 100 ms RTT more).
REPAIR_WITHIN = 0.31


def test_a_lost_tail_is_repaired_by_the_probe_itself() -> None:
    """RFC 9002 §6.2.4: with nothing new to send, PTO probes carry the oldest unacknowledged data."""
    pair = Pair(LinkConfig(delay=0.05), seed=4)
    pair.connect()
    channel_id = pair.a.c.open_channel("files", pair.now)
    pair.a.write(channel_id, b"warm-up", finish=False)
    pair.run(pair.now + 1.0)
    session = pair.a.c.session
    assert isinstance(session, TappedSession)
    pair.link.start_blackhole(pair.now, "a")
    lost_at = pair.now
    pair.a.write(channel_id, payload(2000, 9), finish=False)  # two packets, both lost: a tail loss
    pair.run(pair.now + 0.06)
    pair.link.stop_blackhole(pair.now, "a")
    after_outage = len(session.sent_plaintexts)
    total = len(b"warm-up") + 2000
    pair.run(pair.now + 5.0, lambda now: len(pair.b.received[channel_id]) == total)
    assert bytes(pair.b.received[channel_id]) == b"warm-up" + payload(2000, 9)
    probe = fr.parse_frames_untrusted(session.sent_plaintexts[after_outage])  # the first packet after: a probe
    assert any(isinstance(f, fr.Stream) and f.channel_id == channel_id and f.offset == 7 for f in probe), probe
    # One PTO and one trip repair it: no extra round trip for a PING's ACK to reveal the loss first.
    done = max(t for t, e in pair.b.events if isinstance(e, ChannelDataAvailable))
    assert done - lost_at < REPAIR_WITHIN, done - lost_at


def test_a_path_whose_mtu_falls_below_the_confirmed_size_is_not_a_dead_end() -> None:
    """recovery.md §7.4: after the path stops carrying the confirmed size, every data packet and
    every PTO probe is lost while the peer's keepalives and their ACKs still get through, so no
    packet is ever declared lost.  Probe timeouts count for black hole detection: the sender
    falls back to the base size, searches again, and the transfer completes."""
    config = ChannelConfig(max_datagram_size=8000)
    pair = Pair(LinkConfig(delay=0.005, mtu=8000), LinkConfig(delay=0.005), config_a=config, config_b=config)
    pair.connect()
    pair.run(pair.now + 3.0)
    assert pair.a.c.pmtu.current_mtu == 8000  # the search confirmed the whole path
    pair.link.reconfigure("a", dataclasses.replace(pair.link.config("a"), mtu=1400), pair.now)
    data = payload(200_000, 1)
    channel_id = pair.a.c.open_channel("files", pair.now)
    pair.a.write(channel_id, data)
    start = pair.now
    end = pair.run(start + 30.0, lambda now: len(pair.b.received.get(channel_id, b"")) >= len(data))
    assert digest(pair.b.received[channel_id]) == digest(data)
    assert end - start < 10.0, f"took {end - start:.1f} s"
    assert 1200 <= pair.a.c.pmtu.current_mtu <= 1400  # searched again, below the new MTU
