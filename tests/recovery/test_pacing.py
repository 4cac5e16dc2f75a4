"""Pacer (spec/recovery.md §6, RFC 9002 §7.7)."""

from __future__ import annotations

import pytest

from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.recovery.pacing import Pacer

MDS = 1200


def test_rate_is_n_times_window_per_rtt() -> None:
    pacer = Pacer(congestion_window=12000, smoothed_rtt=0.1)
    assert pacer.rate == pytest.approx(1.25 * 12000 / 0.1)
    pacer.update_rate(24000, 0.05)
    assert pacer.rate == pytest.approx(1.25 * 24000 / 0.05)


def test_burst_then_spaced() -> None:
    pacer = Pacer(congestion_window=120000, smoothed_rtt=0.1, burst_packets=10)
    rate = 1.25 * 120000 / 0.1
    now = 0.0
    for _ in range(10):
        assert pacer.next_send_time(now, MDS) == now
        pacer.on_packet_sent(now, MDS)
    wait = pacer.next_send_time(now, MDS)
    assert wait == pytest.approx(MDS / rate)
    # Not yet at half the wait; exactly on time at the wait.
    assert pacer.next_send_time(wait / 2, MDS) == pytest.approx(wait)
    assert pacer.next_send_time(wait, MDS) == pytest.approx(wait)


def test_burst_bounded_by_window() -> None:
    pacer = Pacer(congestion_window=2400, smoothed_rtt=0.1, burst_packets=10)
    assert pacer.capacity == 2400
    pacer.on_packet_sent(0.0, MDS)
    pacer.on_packet_sent(0.0, MDS)
    assert pacer.next_send_time(0.0, MDS) > 0.0


def test_long_run_average_rate() -> None:
    pacer = Pacer(congestion_window=60000, smoothed_rtt=0.05)
    rate = 1.25 * 60000 / 0.05
    now = 0.0
    sent = 0
    while now < 2.0:
        at = pacer.next_send_time(now, MDS)
        assert at >= now
        now = at
        pacer.on_packet_sent(now, MDS)
        sent += MDS
    # Over 2 s: the rate times 2 s plus the initial burst, within one packet.
    assert sent == pytest.approx(rate * 2.0 + pacer.capacity, abs=2 * MDS)


def test_idle_does_not_accumulate_beyond_burst() -> None:
    pacer = Pacer(congestion_window=120000, smoothed_rtt=0.1, burst_packets=4)
    for _ in range(4):
        pacer.on_packet_sent(0.0, MDS)
    # A long idle period refills only the bucket.
    now = 100.0
    burst = 0
    while pacer.next_send_time(now, MDS) == now:
        pacer.on_packet_sent(now, MDS)
        burst += 1
    assert burst == 4


def test_unpaced_packets_create_debt() -> None:
    pacer = Pacer(congestion_window=12000, smoothed_rtt=0.1, burst_packets=1)
    rate = 1.25 * 12000 / 0.1
    pacer.on_packet_sent(0.0, MDS)
    # Two PTO probes sent regardless of pacing.
    pacer.on_packet_sent(0.0, MDS)
    pacer.on_packet_sent(0.0, MDS)
    assert pacer.next_send_time(0.0, MDS) == pytest.approx(3 * MDS / rate)


def test_packet_larger_than_bucket_waits_for_full_bucket() -> None:
    pacer = Pacer(congestion_window=2400, smoothed_rtt=0.1, burst_packets=1)
    assert pacer.capacity == MDS
    assert pacer.next_send_time(0.0, 5000) == 0.0


def test_zero_rtt_disables_pacing() -> None:
    pacer = Pacer(congestion_window=12000, smoothed_rtt=0.0)
    for _ in range(100):
        assert pacer.next_send_time(1.0, MDS) == 1.0
        pacer.on_packet_sent(1.0, MDS)


def test_max_datagram_size_update_grows_burst() -> None:
    pacer = Pacer(congestion_window=120000, smoothed_rtt=0.1, burst_packets=10)
    assert pacer.capacity == 12000
    pacer.update_rate(120000, 0.1, max_datagram_size=1452)
    assert pacer.capacity == 14520
    with pytest.raises(LocalProtocolError):
        pacer.update_rate(120000, 0.1, max_datagram_size=0)


def test_invalid_parameters() -> None:
    with pytest.raises(LocalProtocolError):
        Pacer(congestion_window=12000, smoothed_rtt=0.1, burst_packets=0)
    with pytest.raises(LocalProtocolError):
        Pacer(congestion_window=12000, smoothed_rtt=0.1, gain=0.0)


def test_set_rate_is_explicit() -> None:
    pacer = Pacer(congestion_window=12000, smoothed_rtt=0.1, burst_packets=2)
    pacer.set_rate(250_000.0, 60000)
    # The controller's rate as given: no gain, no window / RTT.
    assert pacer.rate == 250_000.0
    assert pacer.capacity == 2 * MDS
    now = 0.0
    sent = 0
    while now < 1.0:
        now = pacer.next_send_time(now, MDS)
        pacer.on_packet_sent(now, MDS)
        sent += MDS
    assert sent == pytest.approx(250_000.0 + 2 * MDS, abs=2 * MDS)


def test_set_rate_burst_bounded_by_window_and_mtu() -> None:
    pacer = Pacer(congestion_window=120000, smoothed_rtt=0.1, burst_packets=10)
    pacer.set_rate(1e6, 2400)
    assert pacer.capacity == 2400
    pacer.set_rate(1e6, 120000, max_datagram_size=1500)
    assert pacer.capacity == 15000
    # update_rate afterwards derives the rate from the window again.
    pacer.update_rate(120000, 0.1)
    assert pacer.rate == pytest.approx(1.25 * 120000 / 0.1)


@pytest.mark.parametrize("rate", [0.0, -1.0, float("inf"), float("nan")])
def test_set_rate_rejects_nonsense(rate: float) -> None:
    pacer = Pacer(congestion_window=12000, smoothed_rtt=0.1)
    with pytest.raises(LocalProtocolError):
        pacer.set_rate(rate, 12000)
    with pytest.raises(LocalProtocolError):
        pacer.set_rate(1e6, 12000, max_datagram_size=0)


def test_at_high_rates_the_bucket_holds_two_milliseconds_of_sending() -> None:
    """A 1 ms timer must not cap the rate at 10 datagrams per wake-up (spec/recovery.md §6)."""
    pacer = Pacer(congestion_window=10_000_000, smoothed_rtt=0.1, burst_packets=10)
    pacer.set_rate(100e6, 10_000_000)  # 100 MB/s: 2 ms of it is 200 kB
    assert pacer.capacity == pytest.approx(200_000)
    pacer.set_rate(1e9, 10_000_000)  # capped at 256 datagrams
    assert pacer.capacity == 256 * MDS
    pacer.set_rate(1e9, 50_000)  # and by the window
    assert pacer.capacity == 50_000
    pacer.set_rate(1e6, 10_000_000)  # low rates keep the fixed burst
    assert pacer.capacity == 10 * MDS
    # Waking every millisecond, the sender now keeps up with 100 MB/s.
    pacer.set_rate(100e6, 10_000_000)
    now, sent = 0.0, 0
    while now < 0.1:
        while pacer.next_send_time(now, MDS) <= now:
            pacer.on_packet_sent(now, MDS)
            sent += MDS
        now += 0.001
    assert sent / 0.1 == pytest.approx(100e6, rel=0.05)
