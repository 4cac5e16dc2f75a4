"""Cases written for mutants of BBR, pacing and delivery-rate sampling (spec/recovery.md) that the suite let
survive (conformance/MUTATION.md).

Each case tests a requirement a surviving mutant of the core (recovery/bbr.py, recovery/pacing.py,
recovery/delivery.py) broke; the mutant it kills is listed in tests/conformance/kills_bbr.py, which CI runs.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable

from p2pos.proto.channels import frames as ch

from .cases_channels import Peer, ack_of
from .cases_req_bbr import (
    BANDWIDTH,
    DELAY,
    BbrPeer,
    Transfer,
    _flight_without,
    _profile,
    lengthen_delays,
    probe_rtt_window,
)
from .cases_req_pacing import MDS, payload
from .checks import CaseFailed, Unsupported, expect
from .impaired import IUT, REF, LinkConfig, Sent
from .iut import Iut
from .registry import case


def _idle(transfer: Transfer, until: float) -> BbrPeer:
    """Feed ``transfer`` until ``until`` (ProbeBW by then), then let its backlog go and every packet be acknowledged."""
    transfer.feed_until(until)
    peer = transfer.peer
    peer.run(until + 0.4, auto_ack=True)
    expect(peer.in_flight(peer.now) == 0, f"internal: the IUT still has {peer.in_flight(peer.now)} bytes in flight")
    return peer


def _send_one(transfer: Transfer, n: int, *, drop: bool = False) -> Sent:
    """The IUT sends ``n`` bytes of stream data now, in one packet (it has nothing else to send); ``drop``: lost."""
    peer = transfer.peer
    if drop:
        peer.drop_data = frozenset({peer.data_count + 1})
    before = len(peer.sent)
    expect(peer.offer(transfer.channel_id, transfer.chunk[:n]) == n, f"internal: the IUT did not take {n} bytes")
    new = [s for s in peer.sent[before:] if s.carries_stream()]
    expect(len(new) == 1, f"internal: {n} bytes offered to an idle IUT left in {len(new)} packets, not one")
    peer.drop_data = frozenset()
    transfer.offered += n
    return new[0]


@case(
    "ch/bbr/10",
    section="recovery.md §5.6.4",
    title="BBR: a ProbeBW round trip losing exactly 2% of its flight is not congested: the flight returns to the BDP",
    requirements=("REC-5.6.1.1", "REC-5.6.4.1", "REC-5.6.4.2", "CONF-3.8.6"),
)
def _(iut: Iut) -> str | None:
    # The path of ch/bbr/1, the IUT backlogged until ProbeBW, then idle, everything acknowledged.
    # Then it sends small packets at once: X, A, B, C, D and fillers, so that its flight without X
    # is F, between 50 and 50.04 times A's size.  The runner drops A and acknowledges the others
    # as they arrive: X's ACK begins a round trip (X left after every packet acknowledged before)
    # with F bytes in flight, D's declares A lost (3 numbers above it).  A is then no more than
    # LOSS_THRESH (2%) of max(delivered + lost, flight) = F: the round trip is not congested
    # (recovery.md §5.6.4: only lost > LOSS_THRESH * ... is), and the loss changes nothing.  Once
    # the runner offers plenty again, the IUT's flight returns to the BDP within a round trip or
    # two.  A controller that took the round for congested caps its window at inflight_hi =
    # max(P.tx_in_flight, BETA * BDP, 4 datagrams), 0.7 BDP here (A left with little in flight).
    transfer = Transfer(iut, delay=DELAY, bandwidth=BANDWIDTH)
    peer = _idle(transfer, 1.2)
    start = peer.now
    x = _send_one(transfer, 1)
    a = _send_one(transfer, 1, drop=True)
    flight = [a] + [_send_one(transfer, 1) for _ in range(3)]
    # Fillers up to 50 * A's size + 25 bytes; a packet of n bytes of data is n + overhead bytes.
    target, n = 50 * a.size + 25, 1
    while True:
        n = target - sum(s.size for s in flight) - (flight[-1].size - n)
        if n <= 700:
            flight.append(_send_one(transfer, n))
            break
        n = 500
        flight.append(_send_one(transfer, n))
    f = sum(s.size for s in flight)
    expect(
        50 * a.size <= f < 50 * a.size + 50 and len({s.time for s in [x, *flight]}) == 1,
        f"internal: the IUT's packets after X ({[s.size for s in flight]}) hold {f} bytes, not 50 times "
        f"{a.size} bytes plus at most 49, or did not leave at once",
    )
    peer.run(start + 0.3, auto_ack=True)
    release = peer.now
    transfer.feed_now()
    rtt = peer.base_rtt
    transfer.feed_until(release + 3 * rtt)
    most = max((fl for _, fl in peer.flight_at_sends(release, release + 3 * rtt)), default=0)
    expect(
        most >= 0.9 * peer.bdp,
        f"in ProbeBW, a round trip with {f} bytes in flight at its start lost one packet of {a.size} bytes "
        f"(sent at {a.time:.3f} s, no more than LOSS_THRESH = 2% of {f}: not congested); yet with data waiting "
        f"again from {release:.3f} s the IUT's flight rose to only {most} bytes ({most / peer.bdp:.2f} BDP) in "
        f"three round trips: the loss capped its window (recovery.md §5.6.4: only lost > LOSS_THRESH * "
        f"max(delivered + lost, flight) makes a round congested, other losses change nothing)",
    )
    return f"lost {a.size} of {f} bytes in flight; then up to {most / peer.bdp:.2f} BDP in flight"


def _stream_end(peer: BbrPeer) -> int:
    """The end of the stream data the IUT has sent so far (its one stream channel): its newest new
    data is among its last 64 packets, whatever it resent since."""
    return max(
        (f.offset + len(f.data) for s in peer.sent[-64:] for f in s.packet.frames if isinstance(f, ch.Stream)),
        default=0,
    )


@case(
    "ch/bbr/11",
    section="recovery.md §5.6.4",
    title="BBR: a congested round trip caps the flight at the newest lost data packet's flight at its send, "
    "not lower, even when an ACK-only packet is lost after it",
    requirements=("REC-5.6.1.1", "REC-5.6.2.1", "REC-5.6.4.3", "CONF-3.8.6"),
)
def _(iut: Iut) -> str | None:
    # The path of ch/bbr/1, the IUT backlogged until ProbeBW (min_rtt 50 ms); then both delays
    # grow to 30 ms: the IUT, pacing at bw, keeps bw * 61 ms in flight, 1.2 times its BDP (bw *
    # min_rtt).  Then the runner stops offering data, and drops the last 2-3 data packets (D) and
    # the ACK-only packet A the IUT sends right after them (two PINGs make an ACK due at once),
    # then acknowledges three small packets sent after A in one ACK frame: D and A are declared
    # lost together (recovery.md §4.1), more than 2% of the round: a congested round trip.
    # inflight_hi is then max(P.tx_in_flight, BETA * BDP, 4 datagrams), P the newest lost packet
    # with delivery state (recovery.md §5.6.2; an ACK-only packet is not in flight and has none):
    # the last D, sent with about 1.2 BDP in flight.  Once the runner offers data again the flight
    # goes back there within a round trip or two.  An IUT that took A's (absent) state, or the
    # flight at the loss (D only), caps the window at BETA * BDP = 0.7 BDP.
    longer = 0.03
    transfer = Transfer(iut, delay=DELAY, bandwidth=BANDWIDTH)
    peer = transfer.peer
    transfer.feed_until(1.2)
    assert peer.emulator is not None
    peer.emulator.reconfigure(IUT, LinkConfig(delay=longer, bandwidth=BANDWIDTH, queue_bytes=4 << 20), peer.now)
    peer.emulator.reconfigure(REF, LinkConfig(delay=longer), peer.now)
    peer.delay = longer
    rtt = 2 * longer + MDS / BANDWIDTH
    transfer.feed_until(1.8)
    room = max(len(f.data) for s in peer.sent[-20:] for f in s.packet.frames if isinstance(f, ch.Stream))
    while transfer.offered - _stream_end(peer) > 3 * room:
        peer.run(peer.now + 0.0002, auto_ack=True)
    expect(
        transfer.offered - _stream_end(peer) > 2 * room,
        f"internal: the IUT sent {room}-byte chunks faster than the runner's steps",
    )
    cut = len(peer.sent)
    peer.blackhole = True
    while _stream_end(peer) < transfer.offered:
        peer.run(peer.now + 0.0002, auto_ack=True)
    dropped = peer.sent[cut:]
    expect(
        all(s.carries_stream() for s in dropped) and len(dropped) >= 2,
        f"internal: the IUT's last packets were not 2-3 data packets ({len(dropped)})",
    )
    last = dropped[-1]
    peer.send(ch.Ping())
    peer.send(ch.Ping())
    mark = len(peer.sent)
    while len(peer.sent) == mark and peer.now < last.time + 2 * rtt:
        peer.run(peer.now + 0.001, auto_ack=True)
    peer.blackhole = False
    expect(
        len(peer.sent) == mark + 1 and not peer.sent[mark].ack_eliciting,
        f"internal: after two PINGs the IUT, with nothing to send, did not send one ACK-only packet "
        f"({[(s.packet.pn, s.ack_eliciting) for s in peer.sent[mark:]]})",
    )
    ack_only = peer.sent[mark]
    later = [_send_one(transfer, 1) for _ in range(3)]
    while not any(p.pn == later[-1].packet.pn for p in peer.received):
        peer.run(peer.now + 0.001, auto_ack=False)
    peer.ack()
    tx = peer.in_flight(last.time)
    # The runner offers data again the moment that ACK reaches the IUT.
    peer.run(peer.now + longer, auto_ack=True)
    release = peer.now
    transfer.feed_now()
    transfer.feed_until(release + 3 * rtt)
    path = BANDWIDTH * rtt
    sent = sum(s.size for s in peer.sent if s.ack_eliciting and release <= s.time < release + rtt)
    expect(
        sent >= 0.5 * min(tx, path),
        f"the IUT's last {len(dropped)} data packets (the newest sent at {last.time:.3f} s with {tx} bytes in "
        f"flight) and the ACK-only packet after them were lost, a congested round trip declared at {release:.3f} s; "
        f"with data waiting from then on the IUT sent only {sent} bytes in the next round trip ({rtt * 1000:.0f} ms, "
        f"the path holds {path:.0f}): a congested round trip caps the window at inflight_hi (at least "
        f"P.tx_in_flight), it does not drop it to the minimum window (recovery.md §5.6.3, §5.6.4)",
    )
    gone = {s.packet.pn for s in dropped}
    most = max((f for _, f in _flight_without(peer, gone, release, release + 3 * rtt)), default=0)
    expect(
        most >= 0.8 * min(tx, path),
        f"the IUT's last {len(dropped)} data packets (the newest sent at {last.time:.3f} s with {tx} bytes in "
        f"flight) and the ACK-only packet after them were lost, a congested round trip; with data waiting again "
        f"from {release:.3f} s the IUT's flight rose to only {most} bytes in three round trips of {rtt * 1000:.0f} ms "
        f"(the path holds {path:.0f}): it capped its window below inflight_hi = max(P.tx_in_flight, BETA * BDP, "
        f"4 datagrams), P the newest lost packet with delivery state, the last data packet (recovery.md §5.6.2, "
        f"§5.6.4)",
    )
    return (
        f"lost {len(dropped)} data packets (newest sent with {tx} bytes in flight) and ACK-only packet "
        f"{ack_only.packet.pn}; then {sent} bytes sent in a round trip, up to {most} bytes in flight "
        f"({most / path:.2f} of the path)"
    )


def _per_round_most(peer: BbrPeer, start: float, until: float) -> list[int]:
    """The most bytes the IUT had in flight in each round trip of the path from ``start``."""
    out = []
    t = start
    while t < until - 1e-9:
        out.append(max((f for _, f in peer.flight_at_sends(t, t + peer.base_rtt)), default=0))
        t += peer.base_rtt
    return out


@case(
    "ch/bbr/12",
    section="recovery.md §5.6.4",
    title="BBR: after a congested round trip, ProbeBW's phase 0 raises inflight_hi by 1, 2, 4, ... datagrams per "
    "round trip, no faster, no slower",
    requirements=("REC-5.6.1.1", "REC-5.6.4.3", "REC-5.6.4.4", "CONF-3.8.6"),
)
def _(iut: Iut) -> str | None:
    # The path of ch/bbr/1, the IUT backlogged until ProbeBW, then idle, everything acknowledged.
    # Then it sends 8 one-byte packets at once; the runner drops the 2nd and 3rd: a quarter of the
    # round trip lost, a congested round trip.  inflight_hi = max(P.tx_in_flight, BETA * BDP, 4
    # datagrams) = 0.7 BDP (P left with a few bytes in flight), and with data waiting again the
    # IUT's flight holds at that cap (bw is still the path's) until ProbeBW's phase 0.  There,
    # the window limiting the sender, inflight_hi grows by 1, 2, 4, 8 datagrams in the phase's
    # round trips 0, 1, 2, 3: the flight rises above the cap in some round trip r0 of the path,
    # by at most 1 + 2 + 4 datagrams more in the next (the IUT's round trips are the path's,
    # nothing queued, give or take one), and by 1 + 2 + 4 at least (10 datagrams, say) four
    # round trips after r0.
    transfer = Transfer(iut, delay=DELAY, bandwidth=BANDWIDTH)
    peer = _idle(transfer, 1.2)
    crafted = [_send_one(transfer, 1, drop=k in (1, 2)) for k in range(8)]
    peer.run(peer.now + 0.2, auto_ack=True)
    release = peer.now
    transfer.feed_now()
    until = release + 1.0
    transfer.feed_until(until)
    most = _per_round_most(peer, release, until)
    shown = " ".join(f"{m / MDS:.1f}" for m in most)
    bdp = peer.bdp + MDS
    cap = max(most[:2])
    expect(
        cap <= 0.7 * bdp + MDS,
        f"after 2 of 8 packets ({crafted[1].size} and {crafted[2].size} bytes, sent with a few bytes in flight) "
        f"were lost in a ProbeBW round trip, a congested one, the IUT had up to {cap} bytes in flight in the next "
        f"two round trips: more than inflight_hi = max(P.tx_in_flight, BETA * BDP, 4 datagrams), at most "
        f"{0.7 * bdp:.0f} bytes (+1 datagram) here (recovery.md §5.6.4); most in flight per round trip in "
        f"datagrams: {shown}",
    )
    r0 = next((k for k, m in enumerate(most) if m > cap + MDS // 2), None)
    expect(
        r0 is not None and r0 + 4 < len(most),
        f"after a congested round trip capped its flight at {cap} bytes the IUT's flight did not grow in "
        f"{until - release:.1f} s: ProbeBW's phase 0 raises inflight_hi (recovery.md §5.6.4); most in flight per "
        f"round trip in datagrams: {shown}",
    )
    assert r0 is not None
    fast = most[r0 + 1] - cap
    expect(
        fast <= 8 * MDS,
        f"after a congested round trip capped its flight at {cap} bytes, in ProbeBW's phase 0 the IUT's flight "
        f"grew by {fast} bytes ({fast / MDS:.1f} datagrams) by the round trip after the one it first rose in: "
        f"inflight_hi grows by 1, 2, 4, ... datagrams per round trip of the phase, 1 + 2 + 4 at most by then "
        f"(recovery.md §5.6.4); most in flight per round trip in datagrams: {shown}",
    )
    slow = max(most[r0 : r0 + 5]) - cap
    expect(
        slow >= 10 * MDS,
        f"after a congested round trip capped its flight at {cap} bytes, in ProbeBW's phase 0 the IUT's flight "
        f"grew by only {slow} bytes ({slow / MDS:.1f} datagrams) in the 5 round trips from the one it first rose "
        f"in: inflight_hi grows by 1, 2, 4, 8 datagrams in the phase's round trips, 10 datagrams at least by then "
        f"(recovery.md §5.6.4); most in flight per round trip in datagrams: {shown}",
    )
    return f"capped at {cap} bytes; phase 0 from round trip {r0}; most in flight per round trip in datagrams: {shown}"


def _tx_in_flight(peer: BbrPeer, packet: Sent) -> int:
    """The bytes the IUT had in flight right after sending ``packet`` (those sent at the same moment before it)."""
    later = sum(
        s.size for s in peer.sent if s.ack_eliciting and s.time == packet.time and s.packet.pn > packet.packet.pn
    )
    return peer.in_flight(packet.time) - later


@case(
    "ch/bbr/13",
    section="recovery.md §5.6.4",
    title="BBR: a congested round trip's inflight_hi is the flight at the send of its newest lost packet, "
    "not of an older one sent at the same moment",
    requirements=("REC-5.6.1.1", "REC-5.6.2.1", "REC-5.6.4.3", "CONF-3.8.6"),
)
def _(iut: Iut) -> str | None:
    # A 240 kB/s path, 25 ms each way: the IUT, backlogged, reaches ProbeBW with min_rtt 50 ms
    # and a BDP (bw * min_rtt) of 10 datagrams.  Then both delays grow to 40 ms (bw falls to
    # what ProbeBW's phase 1 delivers, 0.74 of the path: its flight stays above that BDP).  The
    # runner stops offering data for 60 ms (the pacer's bucket fills, the flight falls), then
    # offers plenty: the IUT sends a burst of 9 or 10 datagrams at one moment, which the runner
    # drops (whatever follows is acknowledged).  The ACKs of later packets declare them lost
    # (recovery.md §4.1), the first 7 at least at once: a congested round trip, P the newest
    # of those, sent with 9 datagrams or more in flight; inflight_hi = max(P.tx_in_flight, BETA
    # * BDP, 4 datagrams) is at least that, and once what was in flight is gone the IUT's flight
    # is back near it (the lost packets not counted).  An IUT that took the first packet of the
    # burst for P (the same send time) caps it at BETA * BDP, 5 datagrams.
    delay, bandwidth, longer = 0.025, 240_000.0, 0.04
    transfer = Transfer(iut, delay=delay, bandwidth=bandwidth)
    peer = transfer.peer
    transfer.feed_until(1.5)
    assert peer.emulator is not None
    peer.emulator.reconfigure(IUT, LinkConfig(delay=longer, bandwidth=bandwidth, queue_bytes=4 << 20), peer.now)
    peer.emulator.reconfigure(REF, LinkConfig(delay=longer), peer.now)
    peer.delay = longer
    rtt = 2 * longer + MDS / bandwidth
    transfer.feed_until(2.5)
    while _stream_end(peer) < transfer.offered:
        peer.run(peer.now + 0.001, auto_ack=True)
    peer.run(peer.now + 0.06, auto_ack=True)
    burst_at = peer.now
    peer.drop_data = frozenset(range(peer.data_count + 1, peer.data_count + 11))
    transfer.feed_now()
    burst = [s for s in peer.sent if s.time == burst_at and s.carries_stream()]
    until = burst_at + 6 * rtt
    transfer.feed_until(until)
    lost = [s for s in peer.lost if s.time >= burst_at]
    expect(
        len(burst) >= 9 and all(s in lost for s in burst),
        f"internal: the IUT sent {len(burst)} data packets at once after 60 ms without data, not 9 or more",
    )
    # The first ACK (at the IUT) of a later packet, at least 3 numbers above the burst's 7th, declares it lost.
    seventh = burst[6].packet.pn
    declared = min(at for pn, at in peer.acked_at.items() if pn >= seventh + 3)
    tx = _tx_in_flight(peer, burst[6])
    path = bandwidth * rtt
    gone = {s.packet.pn for s in lost}
    most = max((f for _, f in _flight_without(peer, gone, declared + rtt, declared + 3 * rtt)), default=0)
    expect(
        most >= 0.8 * min(tx, path),
        f"the IUT sent {len(burst)} data packets at once at {burst_at:.3f} s, all lost, the 7th with {tx} bytes in "
        f"flight; declared lost by {declared:.3f} s, a congested round trip; from one round trip after that the "
        f"IUT had at most {most} bytes in flight in two round trips of {rtt * 1000:.0f} ms (the path holds "
        f"{path:.0f}): its window was capped below inflight_hi = max(P.tx_in_flight, BETA * BDP, 4 datagrams), P "
        f"the newest packet of those losses (recovery.md §5.6.4), sent no earlier than the 7th",
    )
    return (
        f"burst of {len(burst)} lost, the 7th sent with {tx} bytes in flight, declared lost by {declared:.3f} s; "
        f"then up to {most} bytes in flight"
    )


@case(
    "ch/bbr/14",
    section="recovery.md §5.6.3",
    title="BBR: in ProbeBW's cruise phases the IUT paces at bw * (1 - PACING_MARGIN), 0.99 of the bottleneck",
    requirements=("REC-5.6.1.1", "REC-5.6.3.3", "CONF-3.8.6"),
)
def _(iut: Iut) -> str | None:
    # The path of ch/bbr/1, the IUT backlogged for 2.7 s.  Every rate sample the IUT takes is at
    # most the bottleneck's rate (its packets cross it 1 ms apart and the runner acknowledges each
    # as it arrives, so no ACK arrives sooner after the one before than its packet crossed), and
    # its samples in Startup and in ProbeBW's phase 0 are that rate: bw is the bottleneck's rate.
    # ProbeBW's cruise phases pace at 1 * bw * (1 - PACING_MARGIN), 0.99 of it (recovery.md
    # §5.6.1, §5.6.3), nothing queued, the flight at the BDP.  The runner takes the stretches
    # where the IUT's flight stays within 1.06 BDP for more than 4 round trips, less a round trip
    # at each end (the probes' phases 0 and 1 are outside them), and measures the IUT's sending
    # rate over them, from first to last packet: 0.99 of the bottleneck, from 0.98 to 0.996 of it.
    transfer = Transfer(iut, delay=DELAY, bandwidth=BANDWIDTH)
    transfer.feed_until(2.7)
    peer = transfer.peer
    rtt = peer.base_rtt
    stretches: list[tuple[float, float]] = []
    run: list[float] = []
    for t, f in peer.flight_at_sends(1.0, 2.7):
        if f <= 1.06 * peer.bdp:
            run.append(t)
            continue
        if run and run[-1] - run[0] > 4 * rtt:
            stretches.append((run[0] + rtt, run[-1] - rtt))
        run = []
    sent, span = 0, 0.0
    for a, b in stretches:
        data = [s for s in peer.sent if s.carries_stream() and a <= s.time < b]
        sent += sum(s.size for s in data[1:])
        span += data[-1].time - data[0].time
    expect(
        len(stretches) >= 3,
        f"internal: only {len(stretches)} stretches of cruise (flight within 1.06 BDP for 4 round trips) from 1 s to "
        f"2.7 s ({_profile(peer, 1.0, 2.7)})",
    )
    rate = sent / span / BANDWIDTH
    shown = ", ".join(f"{a:.3f}-{b:.3f} s" for a, b in stretches)
    expect(
        rate <= 0.996,
        f"in ProbeBW's cruise ({shown}: the flight within 1.06 BDP) the IUT sent at {rate:.4f} of the bottleneck's "
        f"rate, its bandwidth estimate at most: the cruise phases pace at bw * (1 - PACING_MARGIN), 0.99 of it "
        f"(recovery.md §5.6.1, §5.6.3)",
    )
    expect(
        rate >= 0.98,
        f"in ProbeBW's cruise ({shown}: the flight within 1.06 BDP) the IUT sent at only {rate:.4f} of the "
        f"bottleneck's rate, which its bandwidth estimate reached in Startup and in each phase 0: the cruise phases "
        f"pace at bw * (1 - PACING_MARGIN), 0.99 of it (recovery.md §5.6.1, §5.6.3)",
    )
    return f"sent at {rate:.4f} of the bottleneck in cruise ({shown})"


@case(
    "ch/bbr/15",
    section="recovery.md §5.6.4",
    title="BBR: persistent congestion on a path whose RTT samples are all 0 leaves the IUT sending, unpaced",
    requirements=("REC-5.6.4.5", "REC-5.6.4.8", "REC-6.3", "CONF-3.7.6"),
)
def _(iut: Iut) -> str | None:
    # No emulated link: the runner answers at once, so every RTT sample is 0 and smoothed_rtt
    # stays 0 (recovery.md §2).  The IUT sends one data packet at 0.01 s and one at 0.2 s, which
    # the runner never acknowledges, then three at 0.21 s, which it acknowledges at once: the
    # first two are lost (recovery.md §4.1), 0.19 s apart, more than the persistent congestion
    # duration ((0 + 1 ms + max_ack_delay) * 3), no packet between them acknowledged: persistent
    # congestion (§4.4).  BBR restarts in Startup, pacing at STARTUP_PACING_GAIN * window /
    # smoothed_rtt, which has no value with smoothed_rtt 0: the controller has no rate, the
    # sender does not pace (§6), and it goes on sending within the minimum window.
    try:
        peer = Peer(iut, congestion_control="bbr")
    except CaseFailed as exc:
        raise Unsupported(f"the IUT does not offer congestion_control 'bbr' (channels.md §8): {exc}") from None
    reply = peer.call("conn_open", service="files", kind="stream")
    channel_id = int(reply.answer["channel_id"])
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=1 << 20))
    peer.ack()

    def data(at: float, n: int) -> list[int]:
        peer.now = at
        before = len(peer.received)
        answer = peer.call("conn_send", channel_id=channel_id, data=b"x" * n, fin=False)
        expect(int(answer.answer.get("accepted", 0)) == n, f"internal: the IUT did not take {n} bytes at {at} s")
        return [p.pn for p in peer.received[before:]]

    lost = data(0.01, 100) + data(0.2, 100)
    fresh = [pn for _ in range(3) for pn in data(0.21, 100)]
    expect(len(lost) >= 2 and len(fresh) >= 3, f"internal: the IUT sent packets {lost} then {fresh}")
    what = (
        f"the ACK of packets {fresh} (sent at 0.21 s), which made packets {lost} (sent at 0.01 s and 0.2 s) lost, "
        f"persistent congestion with smoothed_rtt 0"
    )
    why = (
        "BBR then has no pacing rate (STARTUP_PACING_GAIN * window / smoothed_rtt) and the sender does not pace "
        "(recovery.md §5.6.4, §6)"
    )
    try:
        reply = peer.send(ack_of(fresh))
    except CaseFailed as exc:
        raise CaseFailed(f"{what}, failed at the IUT: {exc}; {why}") from None
    expect(reply.close is None, f"{what}, made the IUT close the session (code {reply.close}); {why}")
    closed = reply.events("connection_closed")
    expect(not closed, f"{what}, made the IUT close the connection ({closed}); {why}")
    after = data(0.22, 100)
    expect(
        bool(after),
        f"after persistent congestion (packets {lost} lost) the IUT sent nothing for 100 bytes of stream data, "
        f"with nothing in flight: its window is 4 datagrams and with smoothed_rtt 0 it does not pace "
        f"(recovery.md §5.6.4, §6)",
    )
    return f"packets {lost} lost, {fresh} acknowledged at once; then packet {after} at once"


@case(
    "ch/bbr/16",
    section="recovery.md §5.6.4",
    title="BBR: a congested round trip in ProbeBW's phase 0 ends the probe at once: inflight_hi stops growing",
    requirements=("REC-5.6.1.1", "REC-5.6.3.1", "REC-5.6.4.3", "REC-5.6.4.4", "CONF-3.8.6"),
)
def _(iut: Iut) -> str | None:
    # ch/bbr/12's start: a congested round trip caps the IUT's flight at inflight_hi, 0.7 BDP, and
    # ProbeBW's phase 0 later raises it by 1, 2, 4, ... datagrams per round trip, taking several
    # round trips to reach 1.25 BDP.  As soon as the flight rises above the cap (phase 0 has
    # begun) the runner drops the IUT's next 3 data packets: 5% of the round trip, congested
    # again.  In phase 0 that moves the IUT to phase 1 at once (recovery.md §5.6.4), then to the
    # cruise phases: inflight_hi, now about the flight when the last of them was sent, grows no
    # more (only phase 0 raises it), and the flight stays within a few datagrams of it for the
    # next round trips.  An IUT that stayed in phase 0 goes on raising it, by 7 datagrams or more
    # in three round trips.
    transfer = Transfer(iut, delay=DELAY, bandwidth=BANDWIDTH)
    peer = _idle(transfer, 1.2)
    for k in range(8):
        _send_one(transfer, 1, drop=k in (1, 2))
    peer.run(peer.now + 0.2, auto_ack=True)
    release = peer.now
    rtt = peer.base_rtt
    transfer.feed_now()
    transfer.feed_until(release + 2 * rtt)
    cap = max((f for _, f in peer.flight_at_sends(release, release + 2 * rtt)), default=0)
    steps = 0
    while peer.in_flight(peer.now) <= cap + MDS // 2 and peer.now < release + 1.0:
        peer.run(peer.now + 0.002, auto_ack=True)
        steps += 1
        if steps % 20 == 0:
            transfer.feed_now()
    expect(
        peer.now < release + 1.0,
        f"after a congested round trip capped the IUT's flight at {cap} bytes it never rose above it in "
        f"{peer.now - release:.1f} s: ProbeBW's phase 0 raises inflight_hi (recovery.md §5.6.4)",
    )
    probe = peer.now
    first = peer.data_count + 1
    peer.drop_data = frozenset(range(first, first + 3))
    until = probe + 0.5
    while peer.now < until:
        peer.run(min(peer.now + 0.04, until), auto_ack=True)
        transfer.feed_now()
    dropped = [s for s in peer.lost if s.time >= probe]
    expect(len(dropped) == 3, f"internal: {len(dropped)} packets dropped after {probe:.3f} s, not 3")
    last = dropped[-1]
    declared = min(at for pn, at in peer.acked_at.items() if pn >= last.packet.pn + 3)
    tx = _tx_in_flight(peer, last)
    gone = {s.packet.pn for s in peer.lost}
    flights = _flight_without(peer, gone, declared + rtt, declared + 4 * rtt)
    most = max((f for _, f in flights), default=0)
    shown = " ".join(f"{m / MDS:.1f}" for m in _per_round_most(peer, release, until))
    expect(
        most <= tx + 4 * MDS,
        f"after a congested round trip capped its flight at {cap} bytes, the IUT's flight rose above it at "
        f"{probe:.3f} s (ProbeBW's phase 0); the runner dropped its next 3 data packets, the last sent with {tx} "
        f"bytes in flight, declared lost by {declared:.3f} s: congested again, in phase 0, which moves the IUT to "
        f"phase 1 at once and ends the probe (recovery.md §5.6.4); yet in the three round trips after the next "
        f"it had up to {most} bytes in flight, {(most - tx) / MDS:.1f} datagrams more than then: inflight_hi "
        f"went on growing; most in flight per round trip from {release:.3f} s, in datagrams: {shown}",
    )
    return (
        f"capped at {cap} bytes; probe from {probe:.3f} s; 3 packets lost (the last with {tx} bytes in flight), "
        f"declared by {declared:.3f} s; then at most {most} bytes in flight; most in flight per round trip in "
        f"datagrams: {shown}"
    )


@case(
    "ch/bbr/17",
    section="recovery.md §5.6.2",
    title="BBR: when the bottleneck halves, bw follows within BW_WINDOW_ROUNDS round trips and the queue drains",
    requirements=("REC-5.6.1.1", "REC-5.6.2.5", "REC-5.6.2.6", "REC-5.6.3.1", "CONF-3.8.6"),
)
def _(iut: Iut) -> str | None:
    # The path of ch/bbr/1, the IUT backlogged; at 1.5 s (ProbeBW) the bottleneck falls to
    # 600 kB/s.  The IUT's bw, the largest rate of the last BW_WINDOW_ROUNDS (10) round trips,
    # stays at 1.2 MB/s for 10 round trips: it paces faster than the path, its window
    # (CWND_GAIN * BDP + 3 datagrams, 2 BDP of the old rate) fills and queues at the bottleneck,
    # so each round trip is at most that window over 600 kB/s plus the path's round trip, 0.27 s.
    # Then bw is what the path delivers, the window and the pacing rate follow, the queue
    # drains: by 1.5 + 10 * 0.27 s + 4 round trips (4.35 s) the flight is the new BDP, 1.25
    # times that in ProbeBW's phase 0 at most (recovery.md §5.6.2, §5.6.3).  A bw filter that
    # never forgets keeps 2 old BDPs in flight for good.
    changed, until, slow = 1.5, 5.0, BANDWIDTH / 2
    transfer = Transfer(iut, delay=DELAY, bandwidth=BANDWIDTH)
    peer = transfer.peer
    transfer.feed_until(changed)
    assert peer.emulator is not None
    peer.emulator.reconfigure(IUT, LinkConfig(delay=DELAY, bandwidth=slow, queue_bytes=4 << 20), peer.now)
    transfer.bandwidth = slow
    transfer.feed_until(until)
    bdp = slow * (2 * DELAY + MDS / slow)
    round_trip = (2 * (peer.bdp + MDS) + 3 * MDS) / slow + peer.base_rtt
    settled = changed + 10 * round_trip + 4 * (2 * DELAY)
    most = max((f for _, f in peer.flight_at_sends(settled, until)), default=0)
    bound = 1.25 * (bdp + MDS) + 3 * MDS
    shown = _profile(peer, changed - 0.1, until)
    expect(
        most <= bound,
        f"the bottleneck fell from {BANDWIDTH / 1000:.0f} to {slow / 1000:.0f} kB/s at {changed} s; from "
        f"{settled:.2f} s (10 round trips of at most {round_trip:.3f} s, and 4 more) the IUT still had up to {most} "
        f"bytes in flight, "
        f"{most / bdp:.2f} times the new BDP ({bdp:.0f} bytes): its bw should hold the largest rate of the last "
        f"BW_WINDOW_ROUNDS (10) round trips only, then the window and the pacing rate follow the new rate "
        f"(recovery.md §5.6.1, §5.6.2, §5.6.3); most in flight per round trip in BDPs of the old rate: {shown}",
    )
    return (
        f"bottleneck halved at {changed} s; from {settled:.2f} s at most {most} bytes ({most / bdp:.2f} new BDP) "
        f"in flight"
    )


@case(
    "ch/bbr/18",
    section="recovery.md §5.6.2",
    title="BBR: a round trip ends at the ACK of a packet sent right after the previous one ended: "
    "3 losses per flight never add up to 6 in a Startup round trip",
    requirements=("REC-5.6.1.1", "REC-5.6.2.5", "REC-5.6.4.1", "REC-5.6.4.2", "CONF-3.8.6"),
)
def _(iut: Iut) -> str | None:
    # No bottleneck, 25 ms each way.  The runner offers 9600 bytes, the IUT sends them (and what
    # it has to resend) at once, in Startup; the runner drops the first 3 data packets of each
    # such flight and acknowledges the rest in one ACK when they have all arrived, and offers the
    # next 9600 bytes the moment that ACK reaches the IUT.  Each flight leaves right after the
    # ACK of the one before, so its packets' P.delivered is exactly the `delivered` recorded when
    # that ACK ended a round trip: their ACK ends the next one (recovery.md §5.6.2: P.delivered
    # *at least* that).  Every round trip then loses 3 packets, fewer than
    # STARTUP_FULL_LOSS_COUNT (6): never congested, and such losses change nothing (§5.6.4):
    # once the runner offers plenty the IUT is still in Startup, its flight more than doubling
    # each round trip.  An IUT whose round trips spanned two flights counts 6 losses in one,
    # ends Startup and caps its flight at inflight_hi, about one flight.
    return _startup_flights(iut, _ack_flight, "each flight its own round trip: recovery.md §5.6.2")


@case(
    "ch/bbr/19",
    section="recovery.md §5.6.3",
    title="BBR: after ProbeRTT, min_rtt is the path's round trip again: within a ProbeBW cycle the queue drains",
    requirements=("REC-5.6.1.1", "REC-5.6.2.7", "REC-5.6.3.1", "CONF-3.8.6"),
)
def _(iut: Iut) -> str | None:
    # ch/bbr/3's path: 120 kB/s, 50 ms each way, the IUT backlogged; at 1 s both delays grow to
    # 60 ms, so min_rtt (0.1 s) expires between 10.1 and 11.5 s: the RTT sample of that ACK,
    # about 0.13 s (now - time_sent of its newest packet, recovery.md §5.6.2), becomes min_rtt,
    # and ProbeRTT holds half the BDP for 0.2 s.  Then the model window comes back, with a queue
    # at the bottleneck; ProbeBW's cycle (8 phases of about min_rtt each, phase 1 pacing at
    # 0.75 bw until the flight is at most BDP = bw * min_rtt) takes the flight down to the
    # path's BDP within about a second (recovery.md §5.6.3): by 2.5 s after ProbeRTT at the
    # latest.  An IUT whose min_rtt came out wrong (seconds long) cruises on with the queue.
    delay, bandwidth, changed, longer = 0.05, 120_000.0, 1.0, 0.06
    transfer = Transfer(iut, delay=delay, bandwidth=bandwidth)
    peer = transfer.peer
    transfer.feed_until(changed)
    rtt = lengthen_delays(peer, longer, bandwidth)
    until = changed + 0.5 + 10.0 + 2.5
    transfer.feed_until(until)
    window = probe_rtt_window(peer.bdp)
    low = [t for t, f in peer.flight_at_sends(10.0, until) if f <= window]
    expect(bool(low), f"internal: the IUT's flight never fell to half the BDP from 10 s to {until} s (ProbeRTT)")
    ended = next((t for t, f in peer.flight_at_sends(low[0], until) if f > window), until)
    bdp = bandwidth * rtt
    by = ended + 2.5
    expect(by <= until, f"internal: ProbeRTT ended at {ended:.3f} s, too late to look until {by:.3f} s")
    least = min((f for _, f in peer.flight_at_sends(ended + 0.5, by)), default=0)
    expect(
        least <= bdp + 3 * MDS,
        f"ProbeRTT ended at {ended:.3f} s; from {ended + 0.5:.3f} to {by:.3f} s the IUT's flight never fell below "
        f"{least} bytes, {least / bdp:.2f} times the path's BDP ({bdp:.0f} bytes, + 3 datagrams): ProbeBW's phase "
        f"1 takes it down to BDP = bw * min_rtt, min_rtt being the RTT sample of the ACK at which it expired (now "
        f"- time_sent, recovery.md §5.6.2, §5.6.3); most in flight per round trip in BDPs of the first path from "
        f"{ended - 0.3:.1f} s: {_profile(peer, ended - 0.3, until)}",
    )
    return f"ProbeRTT from {low[0]:.3f} s to {ended:.3f} s; then down to {least / bdp:.2f} BDP in flight by {by:.3f} s"


@case(
    "ch/bbr/20",
    section="recovery.md §5.6.3",
    title="BBR: in Startup, once delivered reaches the initial window, the window above CWND_GAIN * BDP grows no more",
    requirements=("REC-5.6.1.1", "REC-5.6.1.2", "REC-5.6.2.1", "REC-5.6.3.1", "CONF-3.8.6"),
)
def _(iut: Iut) -> str | None:
    # No bottleneck, 25 ms each way.  In Startup the window grows by the bytes acknowledged while
    # below CWND_GAIN * BDP + 3 datagrams, or while `delivered` (bytes acknowledged so far) is
    # below the initial window, 12000 bytes (recovery.md §5.6.3).  The runner acknowledges the
    # IUT's first packets (the handshake's last, then the OPEN: E bytes), then makes it send
    # small packets in two flights a round trip apart, of 6000 - E and 6000 bytes, and
    # acknowledges each in one ACK (never its ACK-only packets): `delivered` is 6000, then
    # exactly 12000.  The window, 12000 at the start, grows by all that (delivered below 12000)
    # to 18000; the second ACK finds delivered at 12000, no longer below, and the window above
    # 2 BDP + 3 datagrams (the flights give a bw of about 6000 bytes per 50 ms round trip: 15600
    # bytes), so it stays at 18000.
    # Then the runner offers plenty and acknowledges nothing for a round trip: the IUT puts its
    # window in flight, 18000 bytes at most.  An IUT that grew it at that ACK too has 24000.
    delay = 0.025
    peer = BbrPeer(iut, delay=delay, bandwidth=None)
    channel_id = peer.open_files()
    peer.run(peer.now + 2 * delay, auto_ack=True)
    # What the first ACK below acknowledges besides the first flight: the in-flight packets so
    # far (the handshake's last, the OPEN).  The runner never acknowledges the IUT's ACK-only
    # packets here, so that `delivered` is the same whether or not an IUT counts them in it.
    early = peer.early_bytes + sum(s.size for s in peer.sent if s.ack_eliciting)

    def ack() -> None:
        pns = [p.pn for p in peer.received if p.pn in eliciting_pns or p.pn < first_pn]
        peer.send(ack_of(pns))
        for pn in pns:
            peer.acked_at.setdefault(pn, peer.now + delay)

    first_pn = min((s.packet.pn for s in peer.sent), default=0)
    eliciting_pns = {s.packet.pn for s in peer.sent if s.ack_eliciting}
    data = payload(1 << 12, seed=97)

    def one(n: int) -> Sent:
        before = len(peer.sent)
        expect(peer.offer(channel_id, data[:n]) == n, f"internal: the IUT did not take {n} bytes")
        new = [s for s in peer.sent[before:] if s.carries_stream()]
        expect(len(new) == 1, f"internal: {n} bytes left in {len(new)} packets, not one")
        return new[0]

    def flight(total: int) -> list[Sent]:
        sent: list[Sent] = []
        mark = len(peer.sent)
        n = 1000
        while True:
            rest = total - sum(s.size for s in sent)
            if sent:
                n = rest - (sent[-1].size - n)
                if n <= 1000:
                    sent.append(one(n))
                    break
                n = 1000
            sent.append(one(n))
        expect(sum(s.size for s in sent) == total, f"internal: a flight of {[s.size for s in sent]}, not {total} bytes")
        peer.run(peer.now + delay + 0.002, auto_ack=False)
        eliciting_pns.update(s.packet.pn for s in peer.sent[mark:] if s.ack_eliciting)
        ack()
        peer.run(peer.now + delay, auto_ack=False)
        others = [s for s in peer.sent[mark:] if s not in sent]
        expect(not others, f"internal: the IUT sent other packets with a flight: {others}")
        return sent

    first = flight(6000 - early)
    second = flight(6000)
    start = peer.now
    big = payload(1 << 16, seed=101)
    for _ in range(2):
        peer.offer(channel_id, big)
    peer.run(start + 2 * delay - 0.002, auto_ack=False)
    window = sum(s.size for s in peer.sent if s.ack_eliciting and s.time >= start)
    expect(
        window <= 18000,
        f"the runner acknowledged the IUT's {early} bytes of first packets, then a flight of {len(first)} packets "
        f"({sum(s.size for s in first)} bytes), then one of {len(second)} ({sum(s.size for s in second)} bytes), "
        f"each in one ACK: `delivered` 6000, then exactly 12000 bytes, the initial window, when the window (12000 + "
        f"6000 bytes) was above CWND_GAIN * BDP + 3 datagrams; with plenty of data and no ACK for a round trip the "
        f"IUT then put {window} bytes in flight: more than its window of 18000 bytes at most, which grows in Startup "
        f"only "
        f"while below CWND_GAIN * BDP + 3 datagrams or while `delivered` is below the initial window "
        f"(recovery.md §5.6.3)",
    )
    return f"delivered {early} + {6000 - early} + 6000 bytes; then {window} bytes in flight (window 18000)"


@case(
    "ch/bbr/21",
    section="recovery.md §5.6.2",
    title="BBR: an ACK's sample comes from its newest packet, not an older one it also acknowledges: "
    "3 losses per flight never add up to 6 in a Startup round trip",
    requirements=("REC-5.6.1.1", "REC-5.6.2.3", "REC-5.6.2.5", "REC-5.6.4.1", "REC-5.6.4.2", "CONF-3.8.6"),
)
def _(iut: Iut) -> str | None:
    # ch/bbr/18's flights (no bottleneck, 25 ms each way, 9600 bytes offered at each ACK's
    # arrival, the first 3 data packets of each flight dropped), but each ACK leaves out the
    # flight's last packet, which the next ACK acknowledges with the next flight.  That packet
    # left before the previous ACK arrived; the newest packet of the ACK, from the new flight,
    # left after it: the sample is the newest one's (recovery.md §5.6.2), which ends the round
    # trip.  So each round trip loses 3 packets, fewer than STARTUP_FULL_LOSS_COUNT, and the IUT is
    # still in Startup when the runner offers plenty: its flight more than doubles each round
    # trip.  An IUT that took the older packet's state for the sample counts two flights' losses
    # in one round trip (6), ends Startup and caps its flight.
    return _startup_flights(
        iut,
        _ack_all_but_newest_flight_packet,
        "each ACK also acknowledging the previous flight's last packet (the sample is the newest packet's: "
        "each flight its own round trip, recovery.md §5.6.2)",
        ack_the_rest=True,
    )


def _replay_bw(peer: BbrPeer, min_rtt: float) -> list[tuple[float, float, bool, Sent]]:
    """(arrival at the IUT, bw after it, whether a round trip ended, its newest packet P) for each ACK,
    replaying recovery.md §5.6.2 from what the runner saw.

    For every ACK: delivered += the sizes it newly acknowledges; P, its newest packet, gives
    the sample over max(P.time_sent - P.first_sent_time, now - P.delivered_time), P's fields
    being the state after the last ACK that reached the IUT before P left; a round trip ends
    when P.delivered is at least `delivered` at the previous end; bw is the largest rate of
    the last BW_WINDOW_ROUNDS (10) round trips.  Every packet counts (ACK-only ones too); the
    IUT's first packet, which the runner did not record, only shifts `delivered` throughout.
    """
    sent = {s.packet.pn: s for s in peer.sent}
    by_ack: dict[float, list[int]] = {}
    for pn, at in peer.acked_at.items():
        by_ack.setdefault(at, []).append(pn)
    times: list[float] = []  # ACK arrivals so far, and after each: delivered, newest time_sent
    after: list[tuple[int, float]] = []
    delivered = next_round = rounds = 0
    entries: list[tuple[int, float]] = []
    out: list[tuple[float, float, bool, Sent]] = []
    for at in sorted(by_ack):
        acked = [sent[pn] for pn in by_ack[at] if pn in sent]
        if not acked:
            continue
        p = max(acked, key=lambda s: s.packet.pn)
        k = bisect.bisect_right(times, p.time)
        p_delivered, p_delivered_time, p_first_sent = (
            (after[k - 1][0], times[k - 1], after[k - 1][1]) if k else (0, p.time, p.time)
        )
        delivered += sum(s.size for s in acked)
        times.append(at)
        after.append((delivered, p.time))
        interval = max(p.time - p_first_sent, at - p_delivered_time)
        ended = p_delivered >= next_round
        if ended:
            rounds += 1
            next_round = delivered
        if interval >= min_rtt and interval > 0:
            rate = (delivered - p_delivered) / interval
            while entries and entries[-1][1] <= rate:
                entries.pop()
            if not entries or entries[-1][0] != rounds:
                entries.append((rounds, rate))
            while entries[0][0] <= rounds - 10:
                entries.pop(0)
        out.append((at, entries[0][1] if entries else 0.0, ended, p))
    return out


@case(
    "ch/bbr/22",
    section="recovery.md §5.6.2",
    title="BBR: bw is the largest delivery rate of exactly the last BW_WINDOW_ROUNDS (10) round trips",
    requirements=("REC-5.6.1.1", "REC-5.6.2.3", "REC-5.6.2.5", "REC-5.6.2.6", "REC-5.6.3.1", "CONF-3.8.6"),
)
def _(iut: Iut) -> str | None:
    # The path of ch/bbr/1, the IUT backlogged until ProbeBW (1.2 s).  Then the runner
    # acknowledges everything it received once every 100 ms for 12 ACKs, then once every 150 ms
    # for 18: each ACK ends one of the IUT's round trips (its newest packet left after the ACK
    # before), and its delivery-rate sample is what it acknowledges over the time since the one
    # before, at most: bw (up to 1.2 MB/s) falls to about 0.8 MB/s once the last fast sample is
    # BW_WINDOW_ROUNDS round trips old.  The runner replays the samples, round trips and filter
    # of recovery.md §5.6.2 from what it saw, finds the ACK at which bw falls, and checks that the
    # IUT's window (2 BDP + 3 datagrams, which limits these flights) follows at that ACK: it
    # sends much less after it than after the ACK before.  A filter one round trip shorter or
    # longer falls an ACK early or late.
    transfer = Transfer(iut, delay=DELAY, bandwidth=BANDWIDTH)
    peer = transfer.peer
    transfer.feed_until(1.2)
    peer.run(peer.now + 0.06, auto_ack=False)
    acks: list[float] = []
    for k in range(30):
        peer.run(peer.now + (0.1 if k < 12 else 0.15), auto_ack=False)
        transfer.feed_now()
        peer.ack()
        acks.append(peer.now + DELAY)
    peer.run(peer.now + 0.2, auto_ack=False)
    replay = {at: bw for at, bw, _, _ in _replay_bw(peer, 2 * DELAY)}
    bws = [replay.get(at, 0.0) for at in acks]
    drop = next((k for k in range(13, len(acks) - 1) if bws[k] < 0.9 * bws[k - 1]), None)
    expect(
        drop is not None and drop + 1 < len(acks),
        f"internal: the replayed bw never fell ({[round(b / 1000) for b in bws]} kB/s)",
    )
    assert drop is not None
    flights = [
        sum(s.size for s in peer.sent if s.ack_eliciting and a <= s.time < b) for a, b in itertools.pairwise(acks)
    ]
    shown = " ".join(str(f // 1000) for f in flights)
    rates = " ".join(str(round(b / 1000)) for b in bws)
    expect(
        flights[drop] < 0.85 * flights[drop - 1] and flights[drop - 1] >= 0.9 * max(flights[drop - 5 : drop - 1]),
        f"the runner acknowledged the IUT's packets every 100 ms, then every 150 ms; replaying recovery.md §5.6.2, "
        f"its bw (largest rate of the last 10 round trips, one per ACK) falls at ACK {drop} ({rates} kB/s per "
        f"ACK), and its window with it; but the IUT sent {shown} kB after each ACK: it did not cut its flight "
        f"right after ACK {drop} (or cut it earlier): its bw filter does not span BW_WINDOW_ROUNDS round trips "
        f"(recovery.md §5.6.1, §5.6.2)",
    )
    return f"bw fell at ACK {drop} ({rates} kB/s); kB sent after each ACK: {shown}"


@case(
    "ch/bbr/23",
    section="recovery.md §5.6.3",
    title="BBR: Startup ends after FULL_BW_ROUNDS (3) round trips in a row in which bw grew less than 25%, not fewer",
    requirements=("REC-5.6.1.1", "REC-5.6.2.5", "REC-5.6.2.6", "REC-5.6.3.1", "CONF-3.8.6"),
)
def _(iut: Iut) -> str | None:
    # ch/bbr/1's transfer.  The runner replays the IUT's samples, round trips and bw filter from
    # what it saw (recovery.md §5.6.2) and Startup's plateau test at each round trip's end
    # (§5.6.3: bw below 1.25 times the largest recorded at such ends, FULL_BW_ROUNDS = 3 times in
    # a row; the first samples, of packets sent while the IUT had nothing more to send, are
    # application-limited and not tested): that gives the ACK at which Startup ends.  Until then
    # the IUT, its window full (2 BDP), sends at the bottleneck's rate, a datagram per ACK; from
    # there Drain paces at 1 / 2.77 of bw for more than a round trip.  So it sends at least 0.9 of
    # the bottleneck's rate in the 50 ms before that ACK and at most 0.6 of it from 20 to 60 ms
    # after.  An IUT that left Startup a round trip early is already draining before.
    transfer = Transfer(iut, delay=DELAY, bandwidth=BANDWIDTH)
    peer = transfer.peer
    transfer.feed_until(1.0)
    full_bw, count, drain = 0.0, 0, None
    for at, bw, ended, p in _replay_bw(peer, 2 * DELAY):
        if not ended or p.time < transfer.start + 2 * DELAY:
            continue
        if bw >= full_bw * 1.25:
            full_bw, count = bw, 0
            continue
        count += 1
        if count >= 3:
            drain = at
            break
    expect(drain is not None, "internal: the replayed bw never stopped growing")
    assert drain is not None

    def rate(a: float, b: float) -> float:
        return sum(s.size for s in peer.sent if s.ack_eliciting and a <= s.time < b) / (b - a) / BANDWIDTH

    before, after = rate(drain - 0.05, drain), rate(drain + 0.02, drain + 0.06)
    shown = " ".join(f"{rate(drain + k * 0.01, drain + (k + 1) * 0.01):.1f}" for k in range(-15, 15))
    expect(
        before >= 0.9 and after <= 0.6,
        f"replaying recovery.md §5.6.2 and §5.6.3 from what the runner saw, Startup's bw stopped growing by 25% "
        f"for the third round trip in a row at the ACK that reached the IUT at {drain:.4f} s: Startup ends there "
        f"(FULL_BW_ROUNDS = 3) and Drain begins.  The IUT sent at {before:.2f} of the bottleneck's rate in the 50 ms "
        f"before (at least 0.9 in Startup, its window full) and {after:.2f} from 20 to 60 ms after (Drain: at most "
        f"0.6); its sending rate per 10 ms from 150 ms before, in bottleneck rates: {shown} (recovery.md §5.6.1, "
        f"§5.6.3)",
    )
    return f"Startup ends at {drain:.4f} s (replayed); sending rate {before:.2f} before, {after:.2f} after"


@case(
    "ch/bbr/24",
    section="recovery.md §5.6.3",
    title="BBR: Startup ended by a congested round trip with nothing else in flight goes straight on to ProbeBW, "
    "not a round trip of Drain",
    requirements=("REC-5.6.1.1", "REC-5.6.3.1", "REC-5.6.3.3", "REC-5.6.4.3", "CONF-3.8.6"),
)
def _(iut: Iut) -> str | None:
    # No bottleneck, 25 ms each way.  The runner offers a flight of 8 datagrams' worth and
    # acknowledges it, then one of 16, of which it drops the 7th to 12th data packets and
    # acknowledges the rest in one ACK: the 6 are declared lost (recovery.md §4.1), more than 2%
    # of the round trip that ACK begins and STARTUP_FULL_LOSS_COUNT of them: congested, Startup
    # ends (§5.6.4).  Nothing else is then in flight (everything else acknowledged), so Drain,
    # which ends as soon as the controller's count of bytes in flight is at most BDP, ends at
    # once: ProbeBW paces at 1 * bw (about one flight per round trip) up to inflight_hi (the
    # flight at the 12th's send).  With plenty offered at that ACK, the IUT sends 0.7 of
    # inflight_hi within 30 ms at least (its pacer bucket, then bw).  A controller whose count
    # of bytes in flight was wrong after the loss stays in Drain, pacing at bw / 2.77, until the
    # next ACK, a round trip later (6 kB sent in those 30 ms).
    delay = 0.025
    peer = BbrPeer(iut, delay=delay, bandwidth=None)
    channel_id = peer.open_files()
    peer.run(peer.now + 2 * delay, auto_ack=True)
    data = payload(1 << 16, seed=107)
    before = len(peer.sent)
    expect(peer.offer(channel_id, data[:8000]) == 8000, "internal: the IUT did not take 8000 bytes")
    first = [s for s in peer.sent[before:] if s.carries_stream()]
    room = max(len(f.data) for s in first for f in s.packet.frames if isinstance(f, ch.Stream))
    peer.run(peer.now + delay + 0.005, auto_ack=False)
    peer.ack()
    peer.run(peer.now + delay, auto_ack=False)
    base = peer.data_count
    peer.drop_data = frozenset(range(base + 7, base + 13))
    before = len(peer.sent)
    n = 16 * room
    expect(peer.offer(channel_id, data[:n]) == n, f"internal: the IUT did not take {n} bytes")
    peer.run(peer.now + delay + 0.03, auto_ack=False)
    peer.drop_data = frozenset()
    flight = [s for s in peer.sent[before:] if s.carries_stream()]
    expect(
        len(flight) == 16 and len(peer.lost) == 6,
        f"internal: the IUT sent {len(flight)} data packets for 16 datagrams' worth, {len(peer.lost)} dropped",
    )
    last_lost = flight[11]
    cap = peer.in_flight(last_lost.time)
    peer.ack()
    arrival = peer.now + delay
    peer.run(arrival, auto_ack=False)
    for _ in range(4):
        peer.offer(channel_id, data)
    peer.run(arrival + 0.03, auto_ack=False)
    sent = sum(s.size for s in peer.sent if s.ack_eliciting and arrival <= s.time <= arrival + 0.03)
    expect(
        sent >= 0.7 * cap,
        f"the runner dropped 6 of the IUT's 16 Startup packets and acknowledged the rest in one ACK (at the IUT at "
        f"{arrival:.3f} s): a congested round trip, Startup ends, and with nothing else in flight Drain ends at once "
        f"(bytes in flight at most BDP); ProbeBW then paces at bw (about a flight per round trip) up to "
        f"inflight_hi (about {cap} bytes, the flight at the last lost packet's send); yet with plenty of data the "
        f"IUT sent only {sent} bytes in the next 30 ms: it was still draining (recovery.md §5.6.3)",
    )
    return f"6 of 16 lost, declared at {arrival:.3f} s; then {sent} bytes sent in 30 ms (inflight_hi about {cap})"


def _ack_flight(peer: BbrPeer) -> float:
    """Acknowledge everything received; returns when the ACK reaches the IUT."""
    peer.ack()
    return peer.now + peer.delay


def _ack_all_but_newest_flight_packet(peer: BbrPeer) -> float:
    """Acknowledge everything but the newest packet received (the next ACK takes it)."""
    newest = max(p.pn for p in peer.received)
    pns = [p.pn for p in peer.received if p.pn != newest]
    peer.send(ack_of(pns))
    arrival = peer.now + peer.delay
    for pn in pns:
        peer.acked_at.setdefault(pn, arrival)
    return arrival


def _startup_flights(iut: Iut, ack: Callable[[BbrPeer], float], how: str, *, ack_the_rest: bool = False) -> str:
    """ch/bbr/18 and /21: six Startup flights one round trip apart, the first 3 data packets of
    each dropped, each acknowledged by ``ack`` (which returns when that ACK reaches the IUT; with
    ``ack_the_rest``, what it left out is acknowledged after the last flight); then plenty of
    data: an IUT still in Startup more than doubles its flight each round trip."""
    delay = 0.025
    peer = BbrPeer(iut, delay=delay, bandwidth=None)
    channel_id = peer.open_files()
    peer.run(peer.now + 2 * delay, auto_ack=True)
    chunk = payload(9600, seed=83)
    arrival = peer.now
    flights = []
    for _ in range(6):
        peer.drop_data = frozenset(range(peer.data_count + 1, peer.data_count + 4))
        before = len(peer.sent)
        peer.run(arrival, auto_ack=False)
        expect(peer.offer(channel_id, chunk) == len(chunk), "internal: the IUT did not take 9600 bytes")
        peer.run(peer.now + delay + 0.005, auto_ack=False)
        flights.append([s for s in peer.sent[before:] if s.ack_eliciting])
        arrival = ack(peer)
    peer.drop_data = frozenset()
    peer.run(arrival, auto_ack=True)
    if ack_the_rest:
        peer.ack()
    release = peer.now
    rtt = 2 * delay
    most_before = max(sum(s.size for s in f) for f in flights)
    big = payload(1 << 16, seed=89)
    t = release
    while t < release + 4 * rtt:
        while peer.offer(channel_id, big) == len(big) and peer.in_flight(peer.now) < 1 << 20:
            pass
        t += 0.01
        peer.run(t, auto_ack=True)
    most = max((f for _, f in peer.flight_at_sends(release, release + 4 * rtt)), default=0)
    sizes = [len(f) for f in flights]
    expect(
        most >= 2.5 * most_before,
        f"the IUT sent {sizes} packets in 6 flights one round trip apart, 3 of each lost (fewer than "
        f"STARTUP_FULL_LOSS_COUNT in each round trip), {how}; with plenty of data from {release:.3f} s its "
        f"flight rose only to {most} bytes in 4 round trips, from {most_before} bytes: it left Startup, as if a "
        "round trip had lost 6 packets (recovery.md §5.6.4)",
    )
    return f"flights of {sizes} packets, 3 lost each; then up to {most} bytes in flight (from {most_before})"
