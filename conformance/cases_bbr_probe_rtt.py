"""BBR's ProbeRTT window on a path whose BDP is many datagrams (spec/recovery.md §5.6.3).

ProbeRTT holds half the BDP of the ``min_rtt`` that expired (never less than four datagrams),
not BBRv1's four datagrams: below what the path holds without a queue, so the queue drains,
while the path keeps about half its rate.  ch/bbr/3 checks ProbeRTT's timing on a slow path
(where half the BDP is five datagrams); this case checks its window where the two differ by
a factor of three: a flight held at four datagrams fails it, and so does one that never falls
below the BDP.
"""

from __future__ import annotations

from .cases_req_bbr import (
    MIN_RTT_WINDOW,
    MINIMUM_WINDOW,
    PROBE_RTT_DURATION,
    BbrPeer,
    Transfer,
    _profile,
    lengthen_delays,
    probe_rtt_window,
)
from .checks import expect
from .iut import Iut
from .registry import case


@case(
    "ch/bbr/27",
    section="recovery.md §5.6.3",
    title="BBR: ProbeRTT holds half the BDP in flight, never less than four datagrams, not four when the BDP is large",
    requirements=("REC-5.6.1.1", "REC-5.6.3.1", "REC-5.6.3.2", "CONF-3.8.6"),
)
def _(iut: Iut) -> str | None:
    # 600 kB/s, 25 ms each way: a BDP of about 31 kB, 26 datagrams.  At 1 s both delays grow to
    # 30 ms, so min_rtt (the first sample at 0.05 s) expires between 10.05 and 11.5 s; ProbeRTT's
    # window is then half the BDP of the expired min_rtt, about 13 datagrams (``probe_rtt_window``
    # allows the IUT's BDP a datagram above the path's).  While ProbeRTT holds it, the flight at
    # each send is at most that window and, the IUT backlogged, reaches at least 0.4 BDP (10
    # datagrams; four datagrams are 0.15 BDP), and the path carries at least 0.3 of its rate.
    delay, bandwidth, changed, longer = 0.025, 600_000.0, 1.0, 0.03
    transfer = Transfer(iut, delay=delay, bandwidth=bandwidth)
    peer = transfer.peer
    bdp = peer.bdp
    window = probe_rtt_window(bdp)
    transfer.feed_until(changed)
    rtt = lengthen_delays(peer, longer, bandwidth)
    earliest, latest = 2 * delay + MIN_RTT_WINDOW, changed + 0.5 + MIN_RTT_WINDOW
    until = latest + 1.5
    transfer.feed_until(until)
    low = [(t, f) for t, f in peer.flight_at_sends(earliest, until) if f <= window]
    expect(
        bool(low) and low[0][0] <= latest + 3 * rtt,
        f"the IUT's flight never fell to ProbeRTT's window (half the BDP, {window} bytes) between {earliest:.2f} s "
        f"and {latest + 3 * rtt:.2f} s, although min_rtt expired in that time (recovery.md §5.6.2, §5.6.3); most "
        f"in flight per round trip in BDPs: {_profile(peer, earliest - 0.5, until)}",
    )
    begin = low[0][0]
    # ProbeRTT holds its window PROBE_RTT_DURATION from the ACK that drained the flight (just
    # before ``begin``, the first send after it): [begin, begin + PROBE_RTT_DURATION - rtt) is
    # inside the hold whatever the IUT's round trips (ch/bbr/3 checks the hold's length).
    end = begin + PROBE_RTT_DURATION - rtt
    held = [f for _, f in peer.flight_at_sends(begin, end)]
    most = max(held, default=0)  # no send at all: 0, which the check below refuses
    expect(
        most <= window,
        f"in ProbeRTT ({begin:.3f} s to {end:.3f} s) the IUT had up to {most} bytes in flight at a send, more "
        f"than half the BDP ({window} bytes): ProbeRTT ended at once (recovery.md §5.6.3)",
    )
    expect(
        most >= 0.4 * bdp,
        f"in ProbeRTT ({begin:.3f} s to {end:.3f} s) the IUT had at most {most} bytes in flight at a send, "
        f"{most / bdp:.2f} of the BDP ({bdp:.0f} bytes; four datagrams are {MINIMUM_WINDOW}): ProbeRTT's window is "
        f"half the BDP of the expired min_rtt, never less than four datagrams, not four datagrams "
        f"(recovery.md §5.6.3)",
    )
    sent = sum(s.size for s in peer.sent if begin <= s.time < end and s.carries_stream())
    rate = sent / (end - begin)
    expect(
        rate >= 0.3 * bandwidth,
        f"in ProbeRTT ({begin:.3f} s to {end:.3f} s) the IUT sent {rate:.0f} bytes/s of stream data, "
        f"{rate / bandwidth:.2f} of the path's rate: half the BDP in flight keeps about half of it "
        f"(recovery.md §5.6.3)",
    )
    return (
        f"ProbeRTT from {begin:.3f} s (to {end:.3f} s at least): at most {most} bytes in flight ({most / bdp:.2f} BDP; "
        f"window {window}), {rate / bandwidth:.2f} of the path's rate"
    )


def _most_per_50ms(peer: BbrPeer, start: float, count: int, window: int) -> tuple[list[int], list[tuple[float, int]]]:
    """The most in flight at a send in each of ``count`` 50 ms from ``start``, and (start, most) of
    those where it was at most ``window`` (ProbeRTT's: entered, ProbeRTT holds it for 0.2 s)."""
    buckets = [start + 0.05 * i for i in range(count)]
    most = [max((f for _, f in peer.flight_at_sends(b, b + 0.05)), default=0) for b in buckets]
    return most, [(round(b, 2), m) for b, m in zip(buckets, most, strict=True) if m <= window]


@case(
    "ch/bbr/28",
    section="recovery.md §5.6.3",
    title="BBR: a transfer that resumes after min_rtt expired in silence renews min_rtt from its first samples, "
    "without ProbeRTT",
    requirements=("REC-5.6.2.7", "REC-5.6.3.1", "CONF-3.8.6"),
)
def _(iut: Iut) -> str | None:
    # ch/bbr/27's path (600 kB/s, 25 ms each way), the IUT backlogged for 1 s, then offered nothing
    # until 12 s (the runner still acknowledges whatever it sends: PINGs, say), then backlogged
    # again.  min_rtt (about 0.05 s, last renewed in the first second) has expired when the second
    # transfer's first packets are acknowledged, but those packets left with next to nothing in
    # flight: their samples show the path without a queue, the expired min_rtt takes one, and
    # ProbeRTT is not entered.  So every 50 ms from two round trips after the resumption on, the
    # flight exceeds ProbeRTT's window (entered, ProbeRTT would hold it for at least 0.2 s).
    delay, bandwidth, resume = 0.025, 600_000.0, 12.0
    transfer = Transfer(iut, delay=delay, bandwidth=bandwidth)
    peer = transfer.peer
    window = probe_rtt_window(peer.bdp)
    transfer.feed_until(1.0)
    peer.run(resume, auto_ack=True)
    transfer.feed_now()
    transfer.feed_until(resume + 1.0)
    rtt = peer.base_rtt
    start = resume + 2 * rtt + 0.05
    most, low = _most_per_50ms(peer, start, 5, window)
    expect(
        not low,
        f"after the transfer resumed at {resume:.1f} s the IUT's flight stayed at or below ProbeRTT's window "
        f"({window} bytes) in the 50 ms from {low[:3]} (start, most in flight): it entered ProbeRTT, although the "
        f"packets whose samples renewed the expired min_rtt left with next to nothing in flight (recovery.md "
        f"§5.6.3); most in flight per round trip in BDPs from {resume:.1f} s: {_profile(peer, resume, resume + 0.6)}",
    )
    return f"from {start:.3f} s the most in flight per 50 ms: {most} bytes (ProbeRTT's window {window})"


@case(
    "ch/bbr/29",
    section="recovery.md §5.6.3",
    title="BBR: quiet samples a few seconds old renew a min_rtt that expires mid-transfer, without ProbeRTT",
    requirements=("REC-5.6.2.7", "REC-5.6.3.1", "CONF-3.8.6"),
)
def _(iut: Iut) -> str | None:
    # ch/bbr/27's path (600 kB/s, 25 ms each way), the IUT backlogged for 1 s; then both delays
    # grow to 30 ms, so no later sample renews min_rtt (about 0.05 s, last renewed in the first
    # second: it expires between 10.05 and 11.5 s).  The IUT is offered nothing from 1 s to 7 s
    # (the runner acknowledges whatever it sends), then is backlogged again to 13 s.  The first
    # packets of the second transfer leave with next to nothing in flight: their samples (about
    # 0.06 s, above min_rtt) are quiet, and they are at most 4.5 s old when min_rtt expires in the
    # middle of the transfer, so they renew it and ProbeRTT is not entered.  Every 50 ms from
    # 9.5 s to 12.5 s the flight exceeds ProbeRTT's window (entered, ProbeRTT holds it for at
    # least 0.2 s).
    delay, bandwidth, changed, longer, resume, until = 0.025, 600_000.0, 1.0, 0.03, 7.0, 13.0
    transfer = Transfer(iut, delay=delay, bandwidth=bandwidth)
    peer = transfer.peer
    window = probe_rtt_window(peer.bdp)
    transfer.feed_until(changed)
    lengthen_delays(peer, longer, bandwidth)
    peer.run(resume, auto_ack=True)
    transfer.feed_now()
    transfer.feed_until(until)
    most, low = _most_per_50ms(peer, 9.5, 60, window)
    expect(
        not low,
        f"the IUT's flight stayed at or below ProbeRTT's window ({window} bytes) in the 50 ms from {low[:3]} "
        f"(start, most in flight): it entered ProbeRTT when min_rtt expired mid-transfer, although the "
        f"transfer's first samples, taken at {resume:.1f} s with next to nothing in flight, were quiet and "
        f"recent (recovery.md §5.6.2, §5.6.3); most in flight per round trip in BDPs from 9.5 s: "
        f"{_profile(peer, 9.5, 12.5)}",
    )
    return (
        f"from 9.5 s to 12.5 s the least of the most in flight per 50 ms: {min(most)} bytes "
        f"(ProbeRTT's window {window})"
    )
