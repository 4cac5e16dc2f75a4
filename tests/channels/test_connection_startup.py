"""BBR's Startup on a real connection (spec/recovery.md §5.6): the regression test of a stalled transfer.

The node benchmark hung now and then on a loaded machine: a bulk sender paced at a
thousandth of a byte per second, forever.  Two faults met.  The delivery-rate sampler
started its intervals at 0.0 when the first packet it was told of was not alone in
flight (the PMTU probe that a connection sends first is in flight, but hidden from the
controller), so the first samples were a few bytes over the clock's whole reading (trio's
clock reads days).  Then, while the round trip shrank from one round to the next (the
peer's machine getting busy with something else), every later sample was shorter than
the min RTT and rejected; Startup counted those rounds as rounds without growth, declared
the bandwidth found, and paced at the bogus estimate.

``_transfer`` replays that: a driver of its own (``chan_helpers.Pair`` starts its clock at
0.0 and keeps the delay fixed) that starts the clock at ``start``, keeps the peer busy for
a moment after the handshake, and then shortens the round trip every round.
"""

from __future__ import annotations

import heapq
import math

import pytest
from chan_helpers import INDEX_A, KEYS_A, Side, TappedSession, payload

from p2pos.proto.channels.connection import ChannelConfig, Connection, ConnectionState
from p2pos.proto.recovery.bbr import Bbr, BbrState
from p2pos.proto.recovery.congestion import WindowFloor
from p2pos.proto.simulation.prng import Prng

#: As on loopback: the PMTU search may go up to the largest UDP payload (its probes then exceed the window).
CONFIG = ChannelConfig(max_datagram_size=65507)
#: Days into the clock, as trio's reads (its clock starts at a random offset).
FAR = 100_000.0
#: The first round trip after the handshake, in seconds; each later one is this much shorter per round trip.
FIRST_RTT = 0.0113
SHRINK = 0.7
#: The shortest round trip, and how long the responder is busy (its output waits) after the handshake.
MIN_RTT = 0.0004
BUSY = 0.01
SIZE = 1_000_000


class _Run:
    """What ``_transfer`` saw: when the transfer completed, and the bandwidth estimate when Startup ended."""

    def __init__(self) -> None:
        self.done_after: float | None = None
        self.startup_exit_bandwidth: float | None = None


def _transfer(start: float, *, until: float = 10.0) -> _Run:
    """``a`` sends SIZE bytes to ``b``; the clock starts at ``start``; see the module docstring.

    The one-way delay from ``b`` to ``a`` is 0.1 ms.  From ``a`` to ``b`` it is 16 ms until
    the channel's first byte leaves, then ``FIRST_RTT`` shrinking by ``SHRINK`` per round trip
    down to ``MIN_RTT``; datagrams stay in order.  ``a`` opens the channel 6 ms after its
    handshake completes (so that its first frames go in two packets, as in the node), and
    nothing ``a`` sends reaches ``b`` until ``BUSY`` after that completion.
    """
    run = _Run()
    a = Side("a", CONFIG, initiator=True)
    b = Side("b", CONFIG, initiator=False)
    a.conn = Connection(TappedSession.initiate(KEYS_A, local_index=INDEX_A, now=start, random=Prng(5)), start, CONFIG)
    queue: list[tuple[float, int, str, bytes]] = []  # (arrival, sequence, to, datagram)
    sequence = 0
    latest = {"a": start, "b": start}  # the last arrival per direction: datagrams never overtake
    ready_at: float | None = None
    first_byte_at: float | None = None
    channel_id: int | None = None
    now = start
    while now < start + until:
        if ready_at is None and a.c.state is ConnectionState.READY:
            ready_at = now
        if channel_id is None and ready_at is not None and now >= ready_at + 0.006:
            channel_id = a.c.open_channel("files", now)
            a.write(channel_id, payload(SIZE))
        for name, side in (("a", a), ("b", b)):
            before = _sent(a, channel_id)
            datagrams = side.data_to_send(now)
            if name == "a" and first_byte_at is None and _sent(a, channel_id) > before:
                first_byte_at = now
            for datagram in datagrams:
                if name == "b":
                    arrival = now + 0.0001
                else:
                    rtt = 0.016
                    if first_byte_at is not None:
                        rtt = max(MIN_RTT, FIRST_RTT * SHRINK ** ((now - first_byte_at) / FIRST_RTT))
                    arrival = now + rtt - 0.0001
                    if ready_at is not None:
                        arrival = max(arrival, ready_at + BUSY)
                arrival = latest[name] = max(arrival, latest[name])
                sequence += 1
                heapq.heappush(queue, (arrival, sequence, "b" if name == "a" else "a", datagram))
        cc = _bbr(a)
        if run.startup_exit_bandwidth is None and cc.state is not BbrState.STARTUP:
            run.startup_exit_bandwidth = cc.bandwidth
        if channel_id is not None and len(b.received.get(channel_id, b"")) == SIZE:
            run.done_after = now - start
            return run
        wake = queue[0][0] if queue else math.inf
        if channel_id is None and ready_at is not None:
            wake = min(wake, ready_at + 0.006)
        for side in (a, b):
            timer = side.get_timer()
            if timer is not None:
                wake = min(wake, timer)
        now = max(now, wake)
        while queue and queue[0][0] <= now:
            _, _, to, datagram = heapq.heappop(queue)
            (a if to == "a" else b).receive_data(datagram, now)
        for side in (a, b):
            timer = side.get_timer()
            if timer is not None and timer <= now:
                side.handle_timer(now)
    return run


def _sent(side: Side, channel_id: int | None) -> int:
    channel = side.c.channels.get(channel_id) if channel_id is not None else None
    return channel.send.sent_offset if channel is not None and channel.send is not None else 0


@pytest.mark.parametrize("start", [0.0, FAR], ids=["clock-at-zero", "clock-far-from-zero"])
def test_a_transfer_whose_round_trip_shrinks_at_startup_completes(start: float) -> None:
    run = _transfer(start)
    # It stalled for good at a far clock: 6% of the bytes, then a pacing rate of 0.00075 B/s.
    assert run.done_after is not None, "the transfer stalled"
    # Startup ends on a measured bandwidth (this path carries megabytes per second), never on
    # rounds whose samples were all rejected (it ended at 0.00076 B/s, or 3.4 KB/s from the
    # control frames' sample alone).
    assert run.startup_exit_bandwidth is None or run.startup_exit_bandwidth > 1_000_000


def test_the_first_bandwidth_sample_is_timed_from_the_first_packet_not_from_clock_zero() -> None:
    # A clean 16 ms round trip, the clock far from zero: after the first control frames are
    # acknowledged, the estimate is bytes per round trip (a few KB/s for ~75 bytes), not
    # bytes per 100 000 s.  The PMTU probe left first, so the sampler's first packet was not
    # alone in flight.
    a = Side("a", CONFIG, initiator=True)
    b = Side("b", CONFIG, initiator=False)
    a.conn = Connection(TappedSession.initiate(KEYS_A, local_index=INDEX_A, now=FAR, random=Prng(5)), FAR, CONFIG)
    now = FAR
    to_b = a.data_to_send(now)
    for _ in range(20):
        now += 0.008
        for datagram in to_b:
            b.receive_data(datagram, now)
        to_a = b.data_to_send(now)
        now += 0.008
        for datagram in to_a:
            a.receive_data(datagram, now)
        for side in (a, b):
            timer = side.get_timer()
            if timer is not None and timer <= now:
                side.handle_timer(now)
        to_b = a.data_to_send(now)
        if _bbr(a).bandwidth > 0:
            break
    assert _bbr(a).bandwidth > 1000


def _bbr(side: Side) -> Bbr:
    """The path's BBR, under its window floor (spec/paths.md §5)."""
    cc = side.c.cc
    assert isinstance(cc, WindowFloor)
    cc = cc.inner
    assert isinstance(cc, Bbr)
    return cc
