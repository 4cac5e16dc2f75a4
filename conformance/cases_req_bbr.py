"""Cases for BBR, the congestion controller of recovery.md §5.6, selected through channel_config.

``conn_session`` takes ``channel_config`` with ``congestion_control: "bbr"`` (channels.md §8);
an IUT without BBR refuses it, and these cases then report unsupported.  BBR's model shows on
the wire as when the IUT's packets leave (its pacing rate) and how many bytes it has in
flight, over a path the runner controls exactly: ``BbrPeer`` is a ``PathPeer``
(cases_req_pacing) whose IUT->runner direction has a bottleneck (1.2 MB/s in most cases)
behind a drop-tail queue large enough that nothing is dropped unless a case says so, and the
runner acknowledges every packet the moment it arrives, in virtual time.  The path's round
trip without a queue, ``2 * delay`` plus one datagram's serialization, is the least RTT any
sample can show (the first is ``2 * delay``), and no delivery rate the IUT measures can much
exceed the bottleneck: so the runner knows the IUT's ``BDP`` within a datagram or two, and
the bounds below allow that, the pacer's bucket (recovery.md §6) and the runner's round
trips not being the IUT's.  ``Transfer`` keeps the IUT backlogged, or application-limited.
"""

from __future__ import annotations

import bisect
import itertools
from typing import Any

from p2pos.proto.channels import frames as ch

from .cases_channels import Reply, ack_of
from .cases_req_pacing import BIG, MDS, PathPeer, congestion_after_mtu_rise, eliciting, payload
from .checks import CaseFailed, Unsupported, expect
from .impaired import IUT, REF, LinkConfig, Sent
from .iut import Iut
from .registry import case

#: recovery.md §5.6.1.
STARTUP_PACING_GAIN = 2.773
CWND_GAIN = 2.0
PROBE_BW_GAINS = (1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
MIN_RTT_WINDOW = 10.0
PROBE_RTT_DURATION = 0.2
PROBE_RTT_CWND_GAIN = 0.5
MINIMUM_WINDOW = 4 * MDS
HEADROOM = 3 * MDS


class BbrPeer(PathPeer):
    """A ``PathPeer`` with BBR selected and a bottleneck of ``bandwidth`` bytes/s on the IUT's side (None: none)."""

    def __init__(self, iut: Iut, *, delay: float, bandwidth: float | None, queue: int = 4 << 20, **kwargs: Any) -> None:
        # ``ack``'s running state: the sizes of the IUT's ack-eliciting packets so far, and how
        # many of ``sent`` and ``received`` it has seen.
        self._sizes: dict[int, int] = {}
        self._sized = self._acked_upto = 0
        try:
            super().__init__(iut, delay=delay, congestion_control="bbr", **kwargs)
        except CaseFailed as exc:
            if "conn_session" in str(exc):
                raise Unsupported(f"the IUT does not offer congestion_control 'bbr' (channels.md §8): {exc}") from None
            raise
        self.bandwidth = bandwidth or 0.0
        #: The least round trip a sample can show: both delays and one datagram through the bottleneck.
        self.base_rtt = 2 * delay
        self.bdp = 0.0
        if bandwidth is not None:
            assert self.emulator is not None
            self.emulator.reconfigure(IUT, LinkConfig(delay=delay, bandwidth=bandwidth, queue_bytes=queue), self.now)
            self.base_rtt += MDS / bandwidth
            self.bdp = bandwidth * self.base_rtt
        self._series: list[tuple[float, int]] | None = None
        self._series_key = (0, 0)

    def ack(self) -> Reply:
        """``PathPeer.ack`` (an ACK of every packet received so far), in time linear in the new packets."""
        if self._starting or not self.received:
            return Reply({"events": []}, [])
        for s in self.sent[self._sized :]:
            if s.ack_eliciting:
                self._sizes[s.packet.pn] = s.size
        self._sized = len(self.sent)
        arrival = self.now + self.delay
        fresh = [p.pn for p in self.received[self._acked_upto :] if p.pn not in self.acked_at]
        self._acked_upto = len(self.received)
        for pn in fresh:
            self.acked_at[pn] = arrival
        acked = sum(self._sizes.get(pn, 0) for pn in fresh)
        if not self._sizes and not self.ack_arrivals:
            acked = self.early_bytes  # the handshake's last flight
        self.ack_arrivals.append((arrival, acked))
        return self.send(ack_of(p.pn for p in self.received))

    def describe(self) -> str:
        return (
            f"bottleneck {self.bandwidth / 1000:.0f} kB/s, round trip {self.base_rtt * 1000:.1f} ms, "
            + super().describe()
        )

    def flight_at_sends(self, start: float, end: float) -> list[tuple[float, int]]:
        """(time, bytes in flight then, ``PathPeer.in_flight``) at each ack-eliciting send in [start, end)."""
        if self._series is None or self._series_key != (len(self.sent), len(self.acked_at)):
            self._series, self._series_key = self._flight_series(), (len(self.sent), len(self.acked_at))
        times = [t for t, _ in self._series]
        return self._series[bisect.bisect_left(times, start) : bisect.bisect_left(times, end)]

    def _flight_series(self) -> list[tuple[float, int]]:
        # One sweep over sends (+size) and the ACKs' arrivals (-size), rather than ``in_flight`` per send.
        events: list[tuple[float, int, int]] = []
        for s in eliciting(self.sent):
            events.append((s.time, 1, s.size))
            acked = self.acked_at.get(s.packet.pn)
            if acked is not None:
                events.append((acked, 0, -s.size))
        events.sort(key=lambda e: (e[0], e[1]))
        series: list[tuple[float, int]] = []
        flight, i = 0, 0
        while i < len(events):
            t, j = events[i][0], i
            while j < len(events) and events[j][0] == t:
                flight += events[j][2]
                j += 1
            series.extend((t, flight) for e in events[i:j] if e[1] == 1)
            i = j
        return series

    def rate(self, start: float, end: float) -> float:
        """Bytes per second the IUT sent (ack-eliciting packets) in [start, end)."""
        sent = sum(s.size for s in eliciting(self.sent) if start <= s.time < end)
        return sent / (end - start)


class Transfer:
    """A bulk transfer from the IUT through ``BbrPeer``'s bottleneck, the runner feeding it every 50 ms.

    ``feed_until(t)`` keeps the IUT backlogged (more data offered than the path carries, the
    connection credit raised with MAX_DATA), so that it is never application-limited;
    ``feed_until(t, per_step=n, step=s)`` offers only ``n`` bytes every ``s`` seconds: the IUT
    sends them and then has nothing to send (application-limited, recovery.md §5.4).
    """

    STEP = 0.05

    def __init__(self, iut: Iut, *, delay: float, bandwidth: float, **kwargs: Any) -> None:
        self.peer = BbrPeer(iut, delay=delay, bandwidth=bandwidth, **kwargs)
        self.bandwidth = bandwidth
        self.offered = self.sent_bytes = self._counted = 0
        self.channel_id = self.peer.open_files(window=BIG)
        self.peer.run(self.peer.now + 2 * delay, auto_ack=True)  # the ACCEPT arrives
        self.chunk = payload(1 << 16, seed=71)
        self._feed(None)
        #: When the IUT's first STREAM packet left.
        self.start = min((s.time for s in self.peer.sent if s.carries_stream()), default=self.peer.now)

    def _feed(self, per_step: int | None) -> None:
        peer = self.peer
        peer.send(ch.MaxData(maximum=BIG))
        if per_step is not None:
            expect(
                peer.offer(self.channel_id, self.chunk[:per_step]) == per_step,
                f"internal: the IUT did not take {per_step} bytes of stream data",
            )
            self.offered += per_step
            return
        for s in peer.sent[self._counted :]:
            self.sent_bytes += sum(len(f.data) for f in s.packet.frames if isinstance(f, ch.Stream))
        self._counted = len(peer.sent)
        # Two steps' worth of the path ahead of what has left: backlogged, yet the backlog is
        # gone a tenth of a second after the feeding stops.
        ahead = max(1 << 16, int(2 * self.bandwidth * self.STEP))
        while self.offered - self.sent_bytes < ahead:
            accepted = peer.offer(self.channel_id, self.chunk)
            self.offered += accepted
            if accepted < len(self.chunk):
                return

    def feed_now(self) -> None:
        """Make the IUT backlogged at once (``feed_until`` feeds at the end of each step)."""
        self._feed(None)

    def feed_until(self, until: float, *, per_step: int | None = None, step: float = STEP) -> None:
        t = self.peer.now
        while t < until - 1e-9:
            t = min(t + step, until)
            self.peer.run(t, auto_ack=True)
            self._feed(per_step)


def _window_bound(
    peer: BbrPeer, start: float, end: float, what: str, flights: list[tuple[float, int]] | None = None
) -> int:
    """In-flight never exceeds BBR's largest window, ``CWND_GAIN * BDP`` + headroom (recovery.md §5.6.3),
    ``BDP`` being at most the bottleneck's rate (+ one datagram per round trip) times the path's round
    trip; one datagram more for whole datagrams.  Returns the most in flight."""
    bdp = peer.bdp + MDS
    bound = CWND_GAIN * bdp + HEADROOM + MDS
    most = 0
    for t, flight in peer.flight_at_sends(start, end) if flights is None else flights:
        most = max(most, flight)
        expect(
            flight <= bound,
            f"{what}: {flight} bytes in flight at {t:.3f} s ({flight / peer.bdp:.2f} BDP), more than BBR's "
            f"largest window CWND_GAIN * BDP + 3 datagrams, {bound:.0f} bytes with a BDP of at most {bdp:.0f} "
            f"(recovery.md §5.6.3; {peer.describe()})",
        )
    return most


def lengthen_delays(peer: BbrPeer, longer: float, bandwidth: float) -> float:
    """Both one-way delays become ``longer`` (the IUT's bottleneck kept): no later RTT sample can
    equal ``min_rtt``, which expires MIN_RTT_WINDOW after it was last renewed.  The new least RTT."""
    assert peer.emulator is not None
    peer.emulator.reconfigure(IUT, LinkConfig(delay=longer, bandwidth=bandwidth, queue_bytes=4 << 20), peer.now)
    peer.emulator.reconfigure(REF, LinkConfig(delay=longer), peer.now)
    peer.delay = longer
    return 2 * longer + MDS / bandwidth


def probe_rtt_window(bdp: float) -> int:
    """The most ProbeRTT may hold in flight on a path of this BDP (recovery.md §5.6.3): half the
    BDP, the IUT's estimate allowed a datagram above the path's; never below the minimum window."""
    return max(MINIMUM_WINDOW, int(PROBE_RTT_CWND_GAIN * (bdp + MDS)))


def _per_round(peer: BbrPeer, start: float, rounds: int) -> list[int]:
    """Bytes of ack-eliciting packets sent in each of ``rounds`` round trips of the path from ``start``."""
    out = [0] * rounds
    for s in eliciting(peer.sent):
        k = int((s.time - start) / peer.base_rtt)
        if 0 <= k < rounds:
            out[k] += s.size
    return out


def _profile(peer: BbrPeer, start: float, end: float) -> str:
    """The most bytes in flight in each round trip of the path, in BDPs, for the detail strings."""
    rows = []
    t = start
    while t < end:
        flights = [f for _, f in peer.flight_at_sends(t, t + peer.base_rtt)]
        rows.append(f"{max(flights, default=0) / peer.bdp:.2f}")
        t += peer.base_rtt
    return " ".join(rows)


#: The Startup and ProbeBW path: 1.2 MB/s (1000 datagrams a second), 25 ms each way: a BDP of
#: about 51 datagrams, five times the initial window.
DELAY, BANDWIDTH = 0.025, 1_200_000.0


def _drained(peer: BbrPeer, start: float, until: float) -> tuple[float, float]:
    """When the path was first full (1.5 BDP in flight) and when the flight then first fell to the BDP."""
    full = next((t for t, f in peer.flight_at_sends(start, until) if f >= 1.5 * peer.bdp), None)
    profile = _profile(peer, start, until)
    expect(full is not None, f"internal: the IUT never filled the path (flight per round trip in BDPs: {profile})")
    assert full is not None
    # Once half a BDP is queued the bandwidth grows no more: Startup ends within two round trips
    # (the last samples) plus FULL_BW_ROUNDS, each round trip of the IUT up to twice the path's
    # (a BDP queued), and Drain empties that queue at 1 - 1/2.77 of the bottleneck's rate, in under
    # two round trips: 14 round trips of the path in all.
    deadline = full + 14 * peer.base_rtt
    drained = next((t for t, f in peer.flight_at_sends(full, until) if f <= peer.bdp + 3 * MDS), None)
    expect(
        drained is not None and drained <= deadline,
        f"the path was full at {full:.3f} s (1.5 BDP in flight) but the IUT's flight did not fall to the BDP "
        f"({peer.bdp:.0f} bytes, + 3 datagrams) by {deadline:.3f} s"
        + (f" (it did at {drained:.3f} s)" if drained is not None else "")
        + f": Startup did not end on the bandwidth plateau, or Drain did not drain (recovery.md §5.6.3); most in "
        f"flight per round trip of {peer.base_rtt * 1000:.0f} ms in BDPs: {profile}",
    )
    assert drained is not None
    return full, drained


@case(
    "ch/bbr/1",
    section="recovery.md §5.6.3",
    title="BBR: Startup doubles the flight per round trip up to CWND_GAIN * BDP, then Drain brings it down to the BDP",
    requirements=(
        "REC-5.6.1.1",
        "REC-5.6.1.2",
        "REC-5.6.2.3",
        "REC-5.6.2.5",
        "REC-5.6.2.6",
        "REC-5.6.3.1",
        "REC-5.6.3.2",
        "REC-5.6.3.3",
        "REC-5.6.4.8",
        "CONF-3.8.6",
    ),
)
def _(iut: Iut) -> str | None:
    # Through the bottleneck, the IUT always backlogged: the initial window leaves first;
    # Startup (pacing gain 4 ln 2, the window growing by the bytes acknowledged) then doubles
    # what is sent each round trip until the path is full; the bandwidth stops growing, and
    # three round trips later Startup ends, its window CWND_GAIN * BDP + 3 datagrams (a BDP
    # queued at the bottleneck); Drain paces below the bandwidth until the flight is the BDP.
    until = 1.1
    transfer = Transfer(iut, delay=DELAY, bandwidth=BANDWIDTH)
    transfer.feed_until(until)
    peer, start = transfer.peer, transfer.start
    profile = _profile(peer, start, until)
    first = peer.in_flight(start + peer.base_rtt - 1e-6)
    expect(
        first <= 12000,
        f"the IUT put {first} bytes in flight in its first round trip: more than BBR's initial window, 12000 "
        f"bytes (recovery.md §5.1, §5.6.1); most in flight per round trip in BDPs: {profile}",
    )
    rounds = _per_round(peer, start, 6)
    # While a round trip's sending is well below the BDP (nothing queued), the next sends at
    # least 1.5 times as much: Startup doubles it (the runner's round trips are not the IUT's).
    growing = [k for k in range(5) if rounds[k] < 0.5 * peer.bdp]
    expect(len(growing) >= 2, f"internal: only {len(growing)} round trips below half the BDP ({rounds})")
    for k in growing:
        expect(
            rounds[k + 1] >= 1.5 * rounds[k],
            f"in Startup the IUT sent {rounds[k]} then {rounds[k + 1]} bytes in round trips {k + 1} and {k + 2}: "
            f"not the doubling per round trip of STARTUP_PACING_GAIN (recovery.md §5.6.1, §5.6.3); bytes per round "
            f"trip {rounds}",
        )
    most = _window_bound(peer, start, until, "in Startup and Drain")
    expect(
        most >= 1.7 * peer.bdp,
        f"the IUT never had more than {most} bytes ({most / peer.bdp:.2f} BDP) in flight: Startup grows the window "
        f"to CWND_GAIN * BDP + 3 datagrams before it ends (recovery.md §5.6.3); most in flight per round trip in "
        f"BDPs: {profile}",
    )
    full, drained = _drained(peer, start, until)
    return (
        f"bytes per round trip {rounds}; at most {most / peer.bdp:.2f} BDP in flight; path full at {full:.3f} s, "
        f"drained to the BDP at {drained:.3f} s; most in flight per round trip in BDPs: {profile}"
    )


@case(
    "ch/bbr/2",
    section="recovery.md §5.6.3",
    title="BBR: ProbeBW cruises at the BDP and probes to 1.25 BDP once every 8 min_rtt, draining the probe at once",
    requirements=(
        "REC-5.6.1.1",
        "REC-5.6.3.1",
        "REC-5.6.3.2",
        "REC-5.6.3.3",
        "REC-5.6.4.8",
        "CONF-3.8.6",
    ),
)
def _(iut: Iut) -> str | None:
    # After Drain, ProbeBW paces at 0.99 * bw in its six cruise phases (the flight stays at the
    # BDP, nothing queued), at 1.25 * bw in phase 0 until the flight reaches 1.25 BDP (a quarter
    # BDP queued), and at 0.75 * bw in phase 1 until it is back at the BDP.  Each cruise phase
    # lasts min_rtt, phase 0 at least that: probes start at least 7 min_rtt apart, and at most
    # 12 round trips (phase 0 and 1 take about two together).
    transfer = Transfer(iut, delay=DELAY, bandwidth=BANDWIDTH)
    transfer.feed_until(1.2)
    peer, start = transfer.peer, transfer.start
    _full, drained = _drained(peer, start, 1.2)
    # Two cycles and a half after Drain: the first probe comes within 6 min_rtt and a bit, the
    # second within 12 round trips of it.
    until = drained + 1.25
    transfer.feed_until(until)
    rtt = peer.base_rtt
    min_rtt = 2 * DELAY
    profile = _profile(peer, drained, until)
    bdp = peer.bdp + MDS  # the largest BDP the IUT can measure
    high, low = 1.12 * peer.bdp, peer.bdp + 3 * MDS
    ceiling = PROBE_BW_GAINS[0] * bdp + 3 * MDS
    probes: list[float] = []
    peak_ends: list[tuple[float, float | None]] = []
    above = False
    flights = peer.flight_at_sends(drained, until)
    for t, flight in flights:
        expect(
            flight <= ceiling,
            f"in ProbeBW (the flight fell to the BDP at {drained:.3f} s) the IUT had {flight} bytes in flight at "
            f"{t:.3f} s, {flight / peer.bdp:.2f} BDP: more than ProbeBW's highest gain, 1.25 BDP (+ 3 datagrams), "
            f"allows (recovery.md §5.6.1, §5.6.3); most in flight per round trip in BDPs: {profile}",
        )
        if not above and flight >= high:
            above = True
            probes.append(t)
        elif above and flight <= low:
            above = False
            peak_ends.append((probes[-1], t))
    expect(
        len(probes) >= 2,
        f"from {drained:.3f} s to {until} s the IUT's flight rose above 1.12 BDP only {len(probes)} times "
        f"({[round(p, 3) for p in probes]}): ProbeBW's phase 0 (pacing gain 1.25) takes it to 1.25 BDP once every "
        f"8 phases of min_rtt ({8 * min_rtt:.2f} s; recovery.md §5.6.1, §5.6.3); most in flight per round trip of "
        f"{rtt * 1000:.0f} ms in BDPs: {profile}",
    )
    for a, b in itertools.pairwise(probes):
        expect(
            7 * min_rtt - rtt <= b - a <= 12 * rtt,
            f"ProbeBW's probes up (flight above 1.12 BDP) began at {a:.3f} s and {b:.3f} s, {(b - a) * 1000:.0f} ms "
            f"apart: its cycle is phase 0 (at least min_rtt), phase 1 (until the flight is the BDP), then six "
            f"phases of min_rtt ({min_rtt * 1000:.0f} ms), between {(7 * min_rtt - rtt) * 1000:.0f} and "
            f"{12 * rtt * 1000:.0f} ms (recovery.md §5.6.3); most in flight per round trip in BDPs: {profile}",
        )
    for a in probes:
        back = next((b for p, b in peak_ends if p == a), None)
        if back is None and until - a < 5 * rtt:
            continue  # the last probe, too close to the end to tell
        expect(
            back is not None and back - a <= 5 * rtt,
            f"after ProbeBW's probe up at {a:.3f} s the IUT's flight did not fall back to the BDP (+ 3 datagrams) "
            f"within 5 round trips"
            + (f" (it did at {back:.3f} s)" if back is not None else "")
            + f": phase 1 paces at 0.75 * bw until it does (recovery.md §5.6.3); most in flight per round trip in "
            f"BDPs: {profile}",
        )
    return (
        f"drained at {drained:.3f} s; probes up at {[round(p, 3) for p in probes]} s; at most "
        f"{max(f for _, f in flights) / peer.bdp:.2f} BDP in flight; most in flight per round trip in BDPs: {profile}"
    )


@case(
    "ch/bbr/3",
    section="recovery.md §5.6.3",
    title="BBR: min_rtt expires after MIN_RTT_WINDOW, and ProbeRTT then holds the flight at half the BDP for 0.2 s",
    requirements=(
        "REC-5.6.1.1",
        "REC-5.6.2.7",
        "REC-5.6.3.1",
        "REC-5.6.3.2",
        "CONF-3.8.6",
    ),
)
def _(iut: Iut) -> str | None:
    # A slow path (120 kB/s, 50 ms each way: a BDP of 11 datagrams), the IUT backlogged.  At 1 s
    # both delays grow to 60 ms: from then on no RTT sample is as short as min_rtt, so the filter
    # is last stamped before 1.5 s (the samples of packets already on their way) and, the first
    # sample being at 0.1 s, expires between 10.1 s and 11.5 s.  Until then the flight stays near
    # the BDP; at the first ACK after the expiry the IUT enters ProbeRTT: once its flight has
    # fallen to ProbeRTT's window (half the BDP of the expired min_rtt, 5.5 datagrams here; at
    # least 4) it holds it PROBE_RTT_DURATION (0.2 s) and at least one round trip, then goes back
    # to ProbeBW and its model window.  ``low`` allows the IUT's BDP a datagram above the path's.
    delay, bandwidth, changed, longer = 0.05, 120_000.0, 1.0, 0.06
    transfer = Transfer(iut, delay=delay, bandwidth=bandwidth)
    peer = transfer.peer
    window = probe_rtt_window(peer.bdp)
    transfer.feed_until(changed)
    rtt = lengthen_delays(peer, longer, bandwidth)
    first_sample = 2 * delay
    earliest, latest = first_sample + MIN_RTT_WINDOW, changed + 0.5 + MIN_RTT_WINDOW
    until = latest + 1.5
    transfer.feed_until(until)
    low = [(t, f) for t, f in peer.flight_at_sends(2.0, until) if f <= window]
    early = [(round(t, 3), f) for t, f in low if t < earliest]
    expect(
        not early,
        f"the IUT's flight fell to ProbeRTT's window (half the BDP, {window} bytes) at {early[:4]} (time, bytes), "
        f"before its "
        f"min_rtt (first sampled at {first_sample:.2f} s) could expire, MIN_RTT_WINDOW ({MIN_RTT_WINDOW:.0f} s) "
        f"later: ProbeRTT came too early, or ProbeBW drained below the BDP (recovery.md §5.6.1, §5.6.3)",
    )
    expect(
        bool(low) and low[0][0] <= latest + 3 * rtt,
        f"the IUT's flight never fell to ProbeRTT's window (half the BDP, {window} bytes) between "
        f"{earliest:.1f} s and {latest + 3 * rtt:.2f} s, although no RTT sample since {changed + 0.5:.1f} s was as "
        f"short as min_rtt: the min_rtt filter did not expire after MIN_RTT_WINDOW, or ProbeRTT did not hold "
        f"its window (recovery.md §5.6.2, §5.6.3); most in flight per round trip in BDPs from "
        f"{earliest - 1:.1f} s: {_profile(peer, earliest - 1, until)}",
    )
    begin = low[0][0]
    # The ProbeRTT period: the sends with ProbeRTT's window in flight, from the first on, until
    # one with more (then the flight must have grown again: the model window is used after).
    after = [(t, f) for t, f in peer.flight_at_sends(begin, until) if f > window]
    end = after[0][0] if after else until
    held = end - begin
    expect(
        held >= PROBE_RTT_DURATION,
        f"ProbeRTT held the flight at half the BDP from {begin:.3f} s to {end:.3f} s, {held * 1000:.0f} ms: less "
        f"than PROBE_RTT_DURATION ({PROBE_RTT_DURATION * 1000:.0f} ms; recovery.md §5.6.1, §5.6.3)",
    )
    # It ends PROBE_RTT_DURATION after the flight drained, or one round trip of the IUT after
    # (a round trip is at most the path's, nothing queued with half the BDP, and one datagram's
    # wait at the bottleneck for each in flight); plus a round trip for ACK timing.
    longest = PROBE_RTT_DURATION + 2 * (rtt + window / bandwidth)
    expect(
        held <= longest,
        f"ProbeRTT held the flight at half the BDP from {begin:.3f} s to {end:.3f} s, {held * 1000:.0f} ms: it "
        f"lasts PROBE_RTT_DURATION and one round trip (at most {longest * 1000:.0f} ms here), then the IUT goes "
        f"back to ProbeBW's window (recovery.md §5.6.3); most in flight per round trip in BDPs: "
        f"{_profile(peer, begin - 0.5, until)}",
    )
    back = max((f for t, f in after if t <= end + 3 * rtt), default=0)
    expect(
        back >= max(2 * MINIMUM_WINDOW, window + 2 * MDS),
        f"after ProbeRTT (ended {end:.3f} s) the IUT had at most {back} bytes in flight in three round trips: "
        f"ProbeRTT keeps the model window and uses it again after (recovery.md §5.6.3)",
    )
    return (
        f"min_rtt could expire from {earliest:.1f} s to {latest:.1f} s; the flight fell to half the BDP at "
        f"{begin:.3f} s and stayed there {held * 1000:.0f} ms; then {back} bytes in flight"
    )


def _flight_without(peer: BbrPeer, lost: set[int], start: float, end: float) -> list[tuple[float, int]]:
    """Like ``flight_at_sends`` without the packets ``lost`` (pns): the IUT's count once it declared them lost."""
    sizes = [(s.time, s.size) for s in peer.sent if s.packet.pn in lost]
    return [(t, f - sum(n for at, n in sizes if at <= t)) for t, f in peer.flight_at_sends(start, end)]


@case(
    "ch/bbr/4",
    section="recovery.md §5.6.4",
    title="BBR: persistent congestion leaves a window of exactly 4 datagrams, then Startup grows it again",
    requirements=(
        "REC-5.6.1.1",
        "REC-5.6.3.2",
        "REC-5.6.4.5",
        "CONF-3.8.6",
    ),
)
def _(iut: Iut) -> str | None:
    # The IUT reaches ProbeBW on a 240 kB/s path (25 ms each way), backlogged; then every packet
    # it sends is lost for 1.5 s (its probes too), far longer than the persistent congestion
    # duration (recovery.md §4.4).  The runner acknowledges the first packet after that at once:
    # the ACK declares the others lost, persistent congestion.  BBR's window is then its minimum,
    # 4 datagrams, no less (NewReno's two would be below it) and no more; the IUT has data
    # waiting, so in the round trip after that ACK it has exactly 4 datagrams in flight, and
    # Startup, restarted, doubles that in the next round trips.
    delay, bandwidth = 0.025, 240_000.0
    transfer = Transfer(iut, delay=delay, bandwidth=bandwidth)
    peer = transfer.peer
    transfer.feed_until(1.0)
    cut = len(peer.sent)
    peer.blackhole = True
    transfer.feed_until(2.5)
    peer.blackhole = False
    lost = {s.packet.pn for s in peer.sent[cut:] if s.ack_eliciting}
    expect(len(lost) >= 5, f"internal: only {len(lost)} packets were lost in 1.5 s ({peer.describe()})")
    for _ in range(40):
        transfer.feed_until(peer.now + 0.1)
        if any(s.delivered and s.ack_eliciting for s in peer.sent[cut:]):
            break
    first = next((s for s in peer.sent[cut:] if s.delivered and s.ack_eliciting), None)
    expect(first is not None, f"internal: the IUT sent nothing after the blackhole by {peer.now:.1f} s")
    assert first is not None
    acked = peer.acked_at.get(first.packet.pn)
    expect(acked is not None, f"internal: packet {first.packet.pn} was not acknowledged")
    assert acked is not None
    rtt = peer.base_rtt
    transfer.feed_until(acked + 5 * rtt)
    # Bytes in flight at the IUT: the blackhole's packets were declared lost by that ACK.
    flights = _flight_without(peer, lost | {first.packet.pn}, acked, acked + 5 * rtt)
    window = max((f for t, f in flights if t < acked + rtt), default=0)
    expect(
        window <= MINIMUM_WINDOW,
        f"after persistent congestion (packets lost from {min(s.time for s in peer.sent[cut:]):.3f} s to "
        f"{max(s.time for s in peer.sent[cut:] if s.packet.pn in lost):.3f} s, declared by the ACK that reached the "
        f"IUT at {acked:.3f} s) the IUT had {window} bytes in flight within a round trip: more than BBR's "
        f"minimum window, 4 datagrams ({MINIMUM_WINDOW} bytes; recovery.md §5.6.1, §5.6.4)",
    )
    expect(
        window > MINIMUM_WINDOW - MDS,
        f"after persistent congestion (the ACK at {acked:.3f} s) the IUT, with data waiting, had at most {window} "
        f"bytes in flight within a round trip: less than BBR's minimum window of 4 datagrams ({MINIMUM_WINDOW} "
        f"bytes), which no BBR window goes below (recovery.md §5.6.1, §5.6.3, §5.6.4)",
    )
    later = [max((f for t, f in flights if acked + k * rtt <= t < acked + (k + 1) * rtt), default=0) for k in range(4)]
    expect(
        later[2] >= 1.5 * window,
        f"after persistent congestion the IUT's flight per round trip was {later} bytes: Startup, restarted, grows "
        f"the window by the bytes acknowledged (recovery.md §5.6.3, §5.6.4)",
    )
    return f"{len(lost)} packets lost over 1.5 s; then at most {later} bytes in flight in the round trips after"


@case(
    "ch/bbr/5",
    section="recovery.md §5.6.4",
    title="BBR: five packets lost in one Startup round trip (fewer than 6) change nothing: Startup goes on to 2 BDP",
    requirements=(
        "REC-5.6.1.1",
        "REC-5.6.4.1",
        "REC-5.6.4.2",
        "CONF-3.8.6",
    ),
)
def _(iut: Iut) -> str | None:
    # The path of ch/bbr/1.  The runner drops five of the IUT's data packets, every other one
    # from the 25th: far more than 2% of a round trip, but in Startup a round trip is congested
    # only if it also loses STARTUP_FULL_LOSS_COUNT (6) packets, and five never make one.  Such
    # losses change nothing: the flight doubles on each round trip (less the lost packets, which
    # are not acknowledged: at least 1.3 times, say) and Startup still grows the
    # window to CWND_GAIN * BDP before it ends (a controller that cut its window, or bounded
    # its flight at the loss, stays near the 20-30 datagrams it had then).
    until = 0.75
    transfer = Transfer(iut, delay=DELAY, bandwidth=BANDWIDTH, drop_data=(25, 27, 29, 31, 33))
    transfer.feed_until(until)
    peer, start = transfer.peer, transfer.start
    profile = _profile(peer, start, until)
    expect(len(peer.lost) == 5, f"internal: {len(peer.lost)} packets lost ({peer.describe()})")
    rounds = _per_round(peer, start, 5)
    expect(
        rounds[3] >= 1.3 * rounds[2] and rounds[4] >= 1.3 * rounds[3],
        f"the IUT sent {rounds} bytes per round trip of the path ({peer.base_rtt * 1000:.0f} ms) with 5 packets "
        f"lost from {peer.lost[0].time:.3f} s to {peer.lost[-1].time:.3f} s: Startup stopped doubling, though in "
        f"Startup fewer than 6 losses in a round trip change nothing (recovery.md §5.6.4)",
    )
    # In flight without the lost packets: at most what the IUT counts (it counts them until it declares them lost).
    flights = _flight_without(peer, {s.packet.pn for s in peer.lost}, start, until)
    most = _window_bound(peer, start, until, "in Startup with five losses", flights)
    expect(
        most >= 1.7 * peer.bdp,
        f"with 5 packets lost from {peer.lost[0].time:.3f} s to {peer.lost[-1].time:.3f} s, the IUT never had more "
        f"than {most} bytes ({most / peer.bdp:.2f} BDP) in flight: Startup goes on to a window of CWND_GAIN * BDP "
        f"+ 3 datagrams, since fewer than 6 losses in a Startup round trip change nothing (recovery.md §5.6.1, "
        f"§5.6.4); most in flight per round trip in BDPs: {profile}",
    )
    return f"5 packets lost; bytes per round trip {rounds}; most in flight per round trip in BDPs: {profile}"


@case(
    "ch/bbr/6",
    section="recovery.md §5.6.4",
    title="BBR: a congested Startup round trip bounds the flight at inflight_hi, which only ProbeBW's probing raises",
    requirements=(
        "REC-5.6.1.1",
        "REC-5.6.3.2",
        "REC-5.6.4.1",
        "REC-5.6.4.3",
        "REC-5.6.4.4",
        "CONF-3.8.6",
    ),
)
def _(iut: Iut) -> str | None:
    # The path of ch/bbr/1.  The runner drops 8 consecutive data packets of the IUT from the
    # 30th (a quarter of a Startup round trip, 6 packets and more): a congested round trip.
    # inflight_hi becomes max(P.tx_in_flight, BETA * BDP, 4 datagrams), P one of the lost
    # packets (whose flight when sent the runner knows), Startup ends, and the window is capped
    # at inflight_hi: well below the BDP here.  Only ProbeBW's phase 0 raises it, and ProbeBW
    # starts with six cruise phases of min_rtt: until then the flight stays at most inflight_hi.
    # Then each phase 0 raises it by 1, 2, 4, ... datagrams per round trip: the flight grows past it.
    drops = range(30, 38)
    transfer = Transfer(iut, delay=DELAY, bandwidth=BANDWIDTH, drop_data=drops)
    peer = transfer.peer
    transfer.feed_until(0.5)
    expect(len(peer.lost) == len(drops), f"internal: {len(peer.lost)} packets lost by 0.5 s ({peer.describe()})")
    lost = {s.packet.pn for s in peer.lost}
    last = peer.lost[-1]
    # Every one of them is declared lost once three later packets are acknowledged (recovery.md §4.1).
    later = sorted(at for pn, at in peer.acked_at.items() if pn > last.packet.pn)
    expect(len(later) >= 3, f"internal: fewer than 3 packets after the losses were acknowledged ({peer.describe()})")
    declared = later[2]
    min_rtt = 2 * DELAY
    quiet_until = last.time + peer.base_rtt + 6 * min_rtt  # ProbeBW's phase 0 comes no earlier
    transfer.feed_until(quiet_until + 1.0)
    tx = [peer.in_flight(s.time) for s in peer.lost]
    bdp = peer.bdp + MDS
    hi = max(*tx, 0.7 * bdp, MINIMUM_WINDOW)
    flights = _flight_without(peer, lost, declared, quiet_until + 1.0)
    profile = " ".join(f"{f / peer.bdp:.2f}" for f in _per_round_max(flights, declared, peer.base_rtt))
    capped = [(t, f) for t, f in flights if t < quiet_until]
    worst = max(capped, key=lambda x: x[1], default=(declared, 0))
    expect(
        worst[1] <= hi + MDS,
        f"after 8 packets were lost in a Startup round trip (sent with {min(tx)}-{max(tx)} bytes in flight, "
        f"declared lost by {declared:.3f} s) the IUT had {worst[1]} bytes in flight at {worst[0]:.3f} s: more than "
        f"inflight_hi, at most max(P.tx_in_flight, BETA * BDP, 4 datagrams) = {hi:.0f} bytes (BDP at most "
        f"{bdp:.0f}), which caps the window until ProbeBW's phase 0, at least 6 min_rtt after Drain "
        f"({quiet_until:.3f} s; recovery.md §5.6.4); most in flight per round trip in BDPs: {profile}",
    )
    grown = max((f for t, f in flights if t >= quiet_until), default=0)
    # That second holds two phases 0 at least (the first within 0.2 s of ``quiet_until``, then one
    # every 8 phases), each of at least min_rtt: each raises inflight_hi by a datagram at least.
    expect(
        grown > worst[1] + MDS,
        f"after 8 packets were lost in a Startup round trip, the IUT's flight held at {worst[1]} bytes (its "
        f"inflight_hi) never grew past {grown} bytes in the second after ProbeBW's first phase 0 could begin "
        f"({quiet_until:.3f} s): phase 0 raises inflight_hi by 1, 2, 4, ... datagrams per round trip "
        f"(recovery.md §5.6.4); most in flight per round trip in BDPs: {profile}",
    )
    return (
        f"8 packets lost (sent with {min(tx)}-{max(tx)} bytes in flight); inflight_hi at most {hi:.0f}; at most "
        f"{worst[1]} bytes in flight until {quiet_until:.3f} s, then up to {grown}; most in flight per round trip "
        f"in BDPs: {profile}"
    )


def _per_round_max(flights: list[tuple[float, int]], start: float, rtt: float) -> list[int]:
    out: list[int] = []
    for t, f in flights:
        k = int((t - start) / rtt)
        while len(out) <= k:
            out.append(0)
        out[k] = max(out[k], f)
    return out


@case(
    "ch/bbr/7",
    section="recovery.md §5.6.2",
    title="BBR: application-limited samples never lower bw: after 0.9 s of trickle the IUT resumes at the path's rate",
    requirements=(
        "REC-5.6.2.1",
        "REC-5.6.2.2",
        "REC-5.6.2.3",
        "REC-5.6.2.6",
        "REC-5.6.4.6",
        "CONF-3.8.6",
    ),
)
def _(iut: Iut) -> str | None:
    # The path of ch/bbr/1, the IUT backlogged until ProbeBW (1 s).  Then for 0.9 s (more than
    # BW_WINDOW_ROUNDS round trips once the backlog is sent) the application gives it 2400 bytes every 20 ms, a tenth of
    # the path: it sends them and has nothing more, so every sample is application-limited
    # (each bubble lasts until what was in flight is delivered, a round trip, and the next
    # data comes before).  Such samples never lower bw.  Then the runner offers plenty again:
    # the IUT paces at least at 0.75 * 0.99 * bw (ProbeBW's lowest gain) with its window kept,
    # so it sends at least 0.6 BDP in the first round trip.  A controller whose bw followed the
    # trickle sends a tenth of that.
    trickle_from, released = 1.0, 1.9
    transfer = Transfer(iut, delay=DELAY, bandwidth=BANDWIDTH)
    peer = transfer.peer
    transfer.feed_until(trickle_from)
    transfer.feed_until(released, per_step=2400, step=0.02)
    before = peer.in_flight(released)
    transfer.feed_now()
    transfer.feed_until(released + 0.3)
    rtt = peer.base_rtt
    sent = sum(s.size for s in eliciting(peer.sent) if released <= s.time < released + rtt)
    _window_bound(peer, released, released + 0.3, "after the application-limited period")
    trickle = peer.rate(trickle_from + 0.3, released) / BANDWIDTH
    expect(
        sent >= 0.6 * peer.bdp,
        f"after {released - trickle_from:.1f} s of application-limited sending ({trickle:.2f} of the path's "
        f"{BANDWIDTH / 1000:.0f} kB/s, {before} bytes in flight at the end), the IUT sent only {sent} bytes "
        f"({sent / peer.bdp:.2f} BDP) in the first round trip with data waiting: its bandwidth estimate fell, but "
        f"application-limited samples never lower it, and ProbeBW paces at 0.75 * bw at least (recovery.md "
        f"§5.6.2, §5.6.3); most in flight per round trip in BDPs from {trickle_from - 0.2:.1f} s: "
        f"{_profile(peer, trickle_from - 0.2, released + 0.3)}",
    )
    return (
        f"trickle at {trickle:.2f} of the path for {released - trickle_from:.1f} s; then {sent} bytes "
        f"({sent / peer.bdp:.2f} BDP) in the first round trip"
    )


@case(
    "ch/bbr/8",
    section="recovery.md §5.6.4",
    title="BBR: after the path MTU rose to 1452, persistent congestion leaves a window of four 1452-byte datagrams",
    requirements=(
        "REC-5.6.1.1",
        "REC-5.6.4.7",
        "CONF-3.8.6",
    ),
)
def _(iut: Iut) -> str | None:
    # ch/pmtu/6 with BBR: PMTU probing on, a path that carries 1452 bytes, a 20 ms round trip, no
    # bottleneck.  The runner grants 500 bytes of credit every 10 ms, so the IUT sends a small
    # packet each time; its first probe raises the path MTU.  Then every packet of the IUT is
    # lost for 180 ms, and the ACK of its next packet makes them lost: persistent congestion,
    # BBR's window its minimum, 4 datagrams of the new size (5808 bytes).  Once the runner lifts
    # the limit the IUT puts four 1452-byte datagrams in flight before any ACK of them can come
    # back; a minimum window still reckoned in 1200-byte datagrams (4800 bytes) fits only three.
    peer = BbrPeer(iut, delay=0.01, bandwidth=None, pmtu_probing=True)
    mtu, lost, fresh, most = congestion_after_mtu_rise(peer, seed=73)
    sizes = [s.size for s in fresh][:6]
    expect(
        most > MINIMUM_WINDOW,
        f"after persistent congestion ({len(lost)} packets lost over {lost[-1].time - lost[0].time:.3f} s) the "
        f"IUT had at most {most} bytes in flight in the round trip after the limit was lifted (packets {sizes}): "
        f"BBR's minimum window is 4 datagrams of the path MTU {mtu} it uses ({4 * mtu} bytes), not of 1200 bytes "
        f"({MINIMUM_WINDOW}; recovery.md §5.6.1, §5.6.4)",
    )
    expect(
        most <= 4 * mtu,
        f"after persistent congestion ({len(lost)} packets lost over {lost[-1].time - lost[0].time:.3f} s) the "
        f"IUT had {most} bytes in flight in the round trip after the limit was lifted (packets {sizes}): more "
        f"than BBR's minimum window, 4 datagrams of {mtu} bytes (recovery.md §5.6.1, §5.6.4)",
    )
    return f"path MTU {mtu}; {len(lost)} packets lost; then {most} bytes in flight at once (packets {sizes})"


def _probe(s: Sent) -> bool:
    """A PMTU probe: a PING and PADDING, nothing else (recovery.md §7.1)."""
    frames = s.packet.frames
    return (
        any(isinstance(f, ch.Ping) for f in frames)
        and any(isinstance(f, ch.Padding) for f in frames)
        and all(isinstance(f, ch.Ping | ch.Padding) for f in frames)
    )


@case(
    "ch/bbr/9",
    section="recovery.md §5.6.4",
    title="BBR: in ProbeBW one loss per round trip (about 1%) changes nothing: the rate holds and the probes go on",
    requirements=(
        "REC-5.6.1.1",
        "REC-5.6.4.1",
        "REC-5.6.4.2",
        "CONF-3.8.6",
    ),
)
def _(iut: Iut) -> str | None:
    # 1.2 MB/s, 33 ms each way: a BDP of 67 datagrams.  From the IUT's 800th data packet (in
    # ProbeBW by then) the runner drops every 150th: at most one per round trip of the IUT (its
    # flight is 67 to 84 datagrams), 1.5% of it, below LOSS_THRESH (2%).  Such losses change
    # nothing: the IUT goes on delivering the path's rate, its flight stays at the BDP and
    # ProbeBW's phase 0 (at most 10 round trips away) still takes it to 1.25 BDP.  A controller
    # that took them for congestion (NewReno, or a BBR bounding its flight at inflight_hi) does
    # neither.
    delay, first, every = 0.033, 800, 150
    transfer = Transfer(iut, delay=delay, bandwidth=BANDWIDTH, drop_data=range(first, 1 << 20, every))
    peer, start = transfer.peer, transfer.start
    transfer.feed_until(1.3)
    _full, drained = _drained(peer, start, 1.3)
    expect(
        bool(peer.lost) and peer.lost[0].time >= drained,
        f"internal: the IUT's {first}th data packet left before Drain ended at {drained:.3f} s, or not by 1.3 s",
    )
    begin = peer.lost[0].time
    until = begin + 12 * peer.base_rtt
    transfer.feed_until(until)
    expect(len(peer.lost) >= 4, f"internal: only {len(peer.lost)} packets were dropped ({peer.describe()})")
    rtt = peer.base_rtt
    lost = {s.packet.pn for s in peer.lost}
    flights = _flight_without(peer, lost, begin, until)
    profile = " ".join(f"{f / peer.bdp:.2f}" for f in _per_round_max(flights, begin, rtt))
    # Delivered: what reached the runner, sent from one round trip after the first loss on.
    sent = [s for s in eliciting(peer.sent) if begin + rtt <= s.time < until - rtt]
    rate = sum(s.size for s in sent if s.delivered) / (sent[-1].time - sent[0].time)
    expect(
        rate >= 0.9 * BANDWIDTH,
        f"with {len(peer.lost)} packets lost from {begin:.3f} s, one in {every} (one per round trip at most, "
        f"below LOSS_THRESH), the IUT delivered {rate / 1000:.0f} kB/s over a {BANDWIDTH / 1000:.0f} kB/s path: "
        f"losses that do not make a round trip congested change nothing (recovery.md §5.6.4); most in flight per "
        f"round trip in BDPs: {profile}",
    )
    most = max(f for _, f in flights)
    expect(
        most >= 1.15 * peer.bdp,
        f"with {len(peer.lost)} packets lost from {begin:.3f} s, one in {every} (below LOSS_THRESH), the IUT's "
        f"flight never rose above {most / peer.bdp:.2f} BDP in {until - begin:.1f} s: ProbeBW's phase 0 takes it "
        f"to 1.25 BDP every 8 round trips, and losses that do not make a round trip congested change nothing "
        f"(recovery.md §5.6.4); most in flight per round trip in BDPs: {profile}",
    )
    return (
        f"{len(peer.lost)} packets lost from {begin:.3f} s; {rate / 1000:.0f} kB/s delivered; at most "
        f"{most / peer.bdp:.2f} BDP in flight; most in flight per round trip in BDPs: {profile}"
    )
