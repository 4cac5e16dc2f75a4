"""Flow control (spec/flow.md §3-§5): credit, window updates, auto-tuning."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pos.proto.channels.flow import (
    CONNECTION_WINDOW_RATIO,
    DEFAULT_CHANNEL_MAX_WINDOW,
    DEFAULT_CHANNEL_WINDOW,
    MAX_OFFSET,
    ReceiveWindow,
    SendCredit,
)
from p2pos.proto.errors import ErrorCode, LocalProtocolError, RemoteProtocolError

KIB = 1024


# -- SendCredit ---------------------------------------------------------------------


def test_credit_consume_and_update() -> None:
    credit = SendCredit(1000)
    assert credit.available() == 1000
    credit.consume(600)
    assert credit.available() == 400
    with pytest.raises(LocalProtocolError):
        credit.consume(401)
    with pytest.raises(LocalProtocolError):
        credit.consume(-1)
    assert credit.sent == 600
    assert credit.update_limit(1500)
    assert credit.available() == 900
    # A smaller or equal limit (reordered MAX_DATA) is ignored.
    assert not credit.update_limit(1200)
    assert not credit.update_limit(1500)
    assert credit.limit == 1500
    assert credit.update_limit(MAX_OFFSET + 10)
    assert credit.limit == MAX_OFFSET


def test_bad_initial_limit() -> None:
    with pytest.raises(LocalProtocolError):
        SendCredit(-1)
    with pytest.raises(LocalProtocolError):
        SendCredit(MAX_OFFSET + 1)


def test_blocked_signal_once_per_limit() -> None:
    credit = SendCredit(100)
    assert not credit.should_send_blocked()
    credit.consume(100)
    assert credit.should_send_blocked()
    assert credit.on_blocked_sent() == 100
    assert not credit.should_send_blocked()
    # The BLOCKED frame was lost: it may go again.
    credit.on_blocked_lost(100)
    assert credit.should_send_blocked()
    assert credit.on_blocked_sent() == 100
    credit.update_limit(200)
    credit.on_blocked_lost(100)  # an old loss report does not matter at a new limit
    assert not credit.should_send_blocked()
    credit.consume(100)
    assert credit.should_send_blocked()
    assert credit.on_blocked_sent() == 200
    credit.on_blocked_lost(100)
    assert not credit.should_send_blocked()


@settings(max_examples=200, deadline=None)
@given(
    initial=st.integers(min_value=0, max_value=5000),
    ops=st.lists(
        st.tuples(st.sampled_from(["send", "max"]), st.integers(min_value=0, max_value=4000)),
        max_size=80,
    ),
)
def test_credit_never_exceeded(initial: int, ops: list[tuple[str, int]]) -> None:
    """A sender that sends min(wanted, available()) never passes the highest limit seen."""
    credit = SendCredit(initial)
    highest_limit = initial
    for name, value in ops:
        if name == "send":
            n = min(value, credit.available())
            credit.consume(n)
        else:
            grew = credit.update_limit(value)
            assert grew == (value > highest_limit)
            highest_limit = max(highest_limit, value)
        assert credit.limit == highest_limit
        assert 0 <= credit.sent <= credit.limit
        assert credit.should_send_blocked() == (credit.sent == credit.limit and credit.blocked_at != credit.limit)


# -- ReceiveWindow ------------------------------------------------------------------


def test_bad_window_sizes() -> None:
    for initial, maximum in ((0, 10), (20, 10), (10, MAX_OFFSET + 1)):
        with pytest.raises(LocalProtocolError):
            ReceiveWindow(initial, maximum, now=0.0)


def test_flow_control_violation() -> None:
    window = ReceiveWindow(1000, 4000, now=0.0)
    assert window.receive_untrusted(1000) == 1000
    assert window.receive_untrusted(500) == 0  # old data: no increase
    with pytest.raises(RemoteProtocolError) as info:
        window.receive_untrusted(1001)
    assert info.value.code == ErrorCode.FLOW_CONTROL_ERROR
    assert window.highest_received == 1000


def test_connection_increments() -> None:
    window = ReceiveWindow(100, 400, now=0.0)
    window.receive_increment_untrusted(60)
    window.receive_increment_untrusted(40)
    assert window.highest_received == 100
    with pytest.raises(RemoteProtocolError) as info:
        window.receive_increment_untrusted(1)
    assert info.value.code == ErrorCode.FLOW_CONTROL_ERROR


def test_cannot_consume_more_than_received() -> None:
    window = ReceiveWindow(100, 400, now=0.0)
    window.receive_untrusted(50)
    window.on_consumed(50)
    with pytest.raises(LocalProtocolError):
        window.on_consumed(1)
    with pytest.raises(LocalProtocolError):
        window.on_consumed(-1)


def test_update_at_half_window() -> None:
    window = ReceiveWindow(1000, 1000, now=0.0)
    window.receive_untrusted(1000)
    window.on_consumed(500)
    assert not window.should_send_update()  # exactly half the credit left
    window.on_consumed(1)
    assert window.should_send_update()
    assert window.new_limit(now=1.0, rtt=0.1) == 1501
    assert not window.should_send_update()
    assert window.limit == 1501


def test_no_growth_when_reading_slowly_or_rtt_unknown() -> None:
    window = ReceiveWindow(1000, 100_000, now=0.0)
    window.receive_untrusted(600)
    window.on_consumed(600)
    # 600 bytes in 10 s at a 100 ms RTT: the window lasts far longer than 4 RTTs.
    window.new_limit(now=10.0, rtt=0.1)
    assert window.window == 1000
    window.receive_untrusted(1200)
    window.on_consumed(600)
    window.new_limit(now=10.001, rtt=0.0)  # fast, but the RTT is unknown
    assert window.window == 1000


def test_growth_needs_half_a_window_read() -> None:
    window = ReceiveWindow(1000, 100_000, now=0.0)
    window.receive_untrusted(400)
    window.on_consumed(400)
    window.new_limit(now=0.001, rtt=0.1)  # an early update: too little data to judge
    assert window.window == 1000


def test_autotune_doubles_under_fast_consumption_and_stops_at_max() -> None:
    window = ReceiveWindow(64 * KIB, 1000 * KIB, now=0.0)
    now = 0.0
    rtt = 0.05
    sizes = [window.window]
    limits = [window.limit]
    for _ in range(20):
        # The reader drains the whole advertised window within a small part of an RTT.
        window.receive_untrusted(window.limit)
        window.on_consumed(window.limit - window.consumed)
        assert window.should_send_update()
        now += rtt / 10
        limits.append(window.new_limit(now, rtt))
        sizes.append(window.window)
    assert sizes[:6] == [64 * KIB, 128 * KIB, 256 * KIB, 512 * KIB, 1000 * KIB, 1000 * KIB]
    assert max(sizes) == 1000 * KIB
    assert sizes == sorted(sizes)  # never shrinks
    assert limits == sorted(limits)  # the limit never decreases


def test_autotune_threshold_is_two_rtts_for_half_a_window() -> None:
    """Half a window read in just under 2 RTTs doubles; just over does not."""
    for elapsed, grows in ((0.199, True), (0.201, False)):
        window = ReceiveWindow(1000, 10_000, now=0.0)
        window.receive_untrusted(501)
        window.on_consumed(500)
        window.new_limit(now=elapsed, rtt=0.1)
        assert (window.window == 2000) == grows, elapsed


def test_ensure_window_is_capped_and_monotonic() -> None:
    window = ReceiveWindow(1000, 5000, now=0.0)
    assert window.ensure_window(int(3000 * CONNECTION_WINDOW_RATIO))
    assert window.window == 4500
    assert not window.ensure_window(2000)
    assert window.window == 4500
    assert window.ensure_window(10_000)
    assert window.window == 5000
    # The larger window makes an update due sooner (less than half of it is left).
    window.receive_untrusted(1000)
    window.on_consumed(1)
    assert window.should_send_update()
    assert window.new_limit(1.0, 0.1) == 5001


def test_defaults() -> None:
    assert DEFAULT_CHANNEL_WINDOW == 64 * KIB
    assert DEFAULT_CHANNEL_MAX_WINDOW == 16 * 1024 * KIB


def simulate(reader_rate: float, rtt: float, maximum: int, seconds: float) -> tuple[int, float]:
    """A sender limited only by flow control against a reader at ``reader_rate`` bytes/s.

    Returns the final window and the goodput.  Updates reach the sender after half
    an RTT, and the sender's data reaches the receiver after half an RTT.
    """
    step = rtt / 20
    window = ReceiveWindow(16 * KIB, maximum, now=0.0)
    credit = SendCredit(window.limit)
    in_flight: list[tuple[float, int]] = []  # (arrival time, highest offset)
    updates: list[tuple[float, int]] = []  # (arrival time at the sender, limit)
    now = 0.0
    while now < seconds:
        now += step
        while updates and updates[0][0] <= now:
            credit.update_limit(updates.pop(0)[1])
        burst = credit.available()
        if burst:
            credit.consume(burst)
            in_flight.append((now + rtt / 2, credit.sent))
        while in_flight and in_flight[0][0] <= now:
            window.receive_untrusted(in_flight.pop(0)[1])
        readable = window.highest_received - window.consumed
        window.on_consumed(min(readable, int(reader_rate * step)))
        if window.should_send_update():
            updates.append((now + rtt / 2, window.new_limit(now, rtt)))
        assert window.highest_received - window.consumed <= window.maximum  # bounded memory
    return window.window, window.consumed / seconds


def test_window_grows_to_the_bandwidth_delay_product() -> None:
    rate, rtt = 10_000_000.0, 0.1  # 10 MB/s reader, 100 ms: a BDP of 1 MB
    final_window, goodput = simulate(rate, rtt, maximum=16 * 1024 * KIB, seconds=4.0)
    assert final_window >= rate * rtt
    assert final_window <= 16 * 1024 * KIB
    assert goodput > 0.7 * rate


def test_window_stays_small_for_a_slow_reader() -> None:
    rate, rtt = 20_000.0, 0.1  # a slow reader: 2 KB per RTT
    final_window, _ = simulate(rate, rtt, maximum=16 * 1024 * KIB, seconds=10.0)
    assert final_window == 16 * KIB


def test_window_capped_by_maximum() -> None:
    final_window, goodput = simulate(10_000_000.0, 0.2, maximum=256 * KIB, seconds=2.0)
    assert final_window == 256 * KIB
    # With a window well below the BDP, throughput is window-limited.
    assert goodput < 2 * 256 * KIB / 0.2
