"""Cases for rules of channels.md, flow.md and recovery.md that need the impaired network (conformance.md §3.8, §6).

What a sender's congestion window and pacer allow shows on the wire only as how many bytes
it has in flight and when its packets leave.  The runner sees both: it records every packet
the IUT sends (``impaired.ImpairedPeer.sent``) and knows when each of its ACKs reaches the
IUT, so it can say how many bytes the IUT had in flight at any moment.  These cases run
over a link of fixed delay (``PathPeer``: no loss, no jitter, no reordering), so that every
RTT sample the IUT can take is at least the link's round trip, and every rate a controller
could derive from its samples is bounded.

recovery.md §5 allows several controllers (BBR by default, NewReno, CUBIC;
tests/conformance/test_req_pacing.py runs every case with each).  The cases check only what
all of them must do:

* **upper bounds** hold for every controller: a window grows by at most the bytes
  acknowledged (slow start's pace, the fastest recovery.md §5 allows, BBR's Startup
  included), no pacing rate exceeds ``STARTUP_PACING_GAIN * (window or delivery rate)``;
* **lower bounds** ("the IUT still sends what it sent before") are used only where no
  congestion signal reached the IUT and the controllers of recovery.md §5 all keep their
  window (slow start, Startup, or a window the sender does not fill): a drop there means
  the IUT took something for congestion that is not, or forgot its window.

Ids: ``ch/pace/`` pacing, ``ch/cwnd/`` the congestion window, ``ch/path/`` the peer's
address, ``ch/pmtu/`` (from 5) PMTU probes and the controller.
"""

from __future__ import annotations

import bisect
from typing import Any

from p2pos.proto.channels import frames as ch

from .cases_channels import Reply, ack_of
from .checks import expect
from .impaired import ImpairedPeer, LinkConfig, Sent
from .iut import Iut
from .registry import case

#: recovery.md §1, §5.1, §5.6.1, §6 at the base datagram size.
MDS = 1200
INITIAL_WINDOW = 12000
STARTUP_PACING_GAIN = 2.773
BURST_PACKETS, BURST_INTERVAL, MAX_BURST_PACKETS = 10, 0.002, 256
PACING_GRANULARITY = 0.001
#: More stream data than any case sends; the runner's connection credit is 1 MiB (flow.md §3).
BIG = 1 << 30


def payload(n: int, seed: int = 1) -> bytes:
    return bytes((seed * 31 + i * 7) % 251 for i in range(n))


class PathPeer(ImpairedPeer):
    """An ``ImpairedPeer`` over a link of fixed one-way ``delay`` each way, nothing lost on it.

    The IUT's first packets (the handshake's last flight, sent at 0) are acknowledged as if
    they had crossed the link, so that the IUT's first RTT sample is the link's round trip and
    no sample is ever shorter.  Each ACK the runner sends is noted with the moment it reaches
    the IUT (``acked_at``), so ``in_flight(t)`` is what the IUT had in flight at ``t``.  With
    ``addr`` set, every datagram to the IUT carries it (``conn_receive``'s optional ``addr``).
    """

    def __init__(self, iut: Iut, *, delay: float, **kwargs: Any) -> None:
        self._starting = True
        self.delay = delay
        self.early_bytes = 0
        #: When each of the IUT's packet numbers was first acknowledged at the IUT.
        self.acked_at: dict[int, float] = {}
        #: (time an ACK reached the IUT, bytes of the IUT's in-flight packets it newly acknowledged).
        self.ack_arrivals: list[tuple[float, int]] = []
        self.addr: str | None = None
        config = LinkConfig(delay=delay)
        super().__init__(iut, link=config, idle_timeout=120.0, **kwargs)
        self._starting = False
        self.now = delay
        self.ack()  # the first packets "arrive" after one delay; the ACK takes another

    def _absorb(self, answer: dict[str, Any], datagrams: list[bytes]) -> Reply:
        if not self.active:
            self.early_bytes += sum(len(d) for d in datagrams)
        return super()._absorb(answer, datagrams)

    def call(self, cmd: str, **fields: Any) -> Reply:
        if cmd == "conn_receive" and self.addr is not None and self.active:
            fields["addr"] = self.addr
        return super().call(cmd, **fields)

    def ack(self) -> Reply:
        if self._starting or not self.received:
            return Reply({"events": []}, [])
        pns = [p.pn for p in self.received]
        arrival = self.now + self.delay
        sizes = {s.packet.pn: s.size for s in self.sent if s.ack_eliciting}
        fresh = [pn for pn in pns if pn not in self.acked_at]
        for pn in fresh:
            self.acked_at[pn] = arrival
        acked = sum(sizes.get(pn, 0) for pn in fresh)
        if not sizes and not self.ack_arrivals:
            acked = self.early_bytes  # the handshake's last flight
        self.ack_arrivals.append((arrival, acked))
        return self.send(ack_of(pns))

    def in_flight(self, t: float) -> int:
        """Bytes of ack-eliciting packets the IUT had sent by ``t`` and not seen acknowledged by ``t``."""
        return sum(
            s.size for s in self.sent if s.ack_eliciting and s.time <= t and self.acked_at.get(s.packet.pn, 1e9) > t
        )

    def acked_by(self, t: float) -> int:
        """Bytes of the IUT's packets whose ACK had reached it by ``t`` (the handshake's flight included)."""
        return sum(n for at, n in self.ack_arrivals if at <= t)

    def open_files(self, *, window: int = BIG) -> int:
        """The IUT opens a stream channel; the runner accepts it with ``window`` bytes of credit."""
        reply = self.call("conn_open", service="files", kind="stream")
        channel_id = int(reply.answer["channel_id"])
        self.send(ch.Accept(channel_id=channel_id, initial_max_data=window))
        return channel_id

    def offer(self, channel_id: int, data: bytes) -> int:
        answer = self.call("conn_send", channel_id=channel_id, data=data, fin=False)
        return int(answer.answer.get("accepted", 0))


def eliciting(sent: list[Sent]) -> list[Sent]:
    return [s for s in sent if s.ack_eliciting]


def sent_per_round(peer: PathPeer, start: float, rtt: float, rounds: int) -> list[int]:
    """Bytes of ack-eliciting packets the IUT sent in each round trip from ``start``."""
    out = [0] * rounds
    for s in eliciting(peer.sent):
        k = int((s.time - start) / rtt + 1e-9)
        if 0 <= k < rounds:
            out[k] += s.size
    return out


# -- pacing (recovery.md §6, channels.md §5.3, §6.2) --------------------------------------------


@case(
    "ch/pace/1",
    section="recovery.md §6",
    title="a bulk transfer released by batched ACKs leaves no faster than the token bucket at the highest allowed rate",
    requirements=("REC-6.1", "CH-6.2.2", "CH-5.3.1"),
)
def _(iut: Iut) -> str | None:
    # A 200 ms round trip (100 ms each way); the runner acknowledges what arrived every 100 ms.
    # Each ACK releases a window's worth at once: a sender without a pacer (or whose pacer does
    # not take the rate the ACKs give) sends it in one burst.
    delay, period, until = 0.1, 0.1, 1.25
    rtt = 2 * delay
    peer = PathPeer(iut, delay=delay)
    channel_id = peer.open_files()
    offered = peer.offer(channel_id, payload(900_000, seed=41))
    expect(offered > 0, "the IUT took none of the stream data (conn_send accepted 0)")
    t = peer.now
    while t < until:
        t += period
        peer.run(t, auto_ack=False)
        peer.ack()
    peer.run(until, auto_ack=False)
    packets = eliciting(peer.sent)
    expect(len(packets) >= 40, f"internal: the IUT sent only {len(packets)} packets in {until} s ({peer.describe()})")

    # The highest pacing rate any controller could have at ``t``: its window is at most the
    # initial window plus every byte acknowledged (slow start), its delivery rate at most the
    # bytes acknowledged over min_rtt, which is at least the link's round trip; BBR's Startup
    # gain is the largest gain of recovery.md §5.6.
    def rate(at: float) -> float:
        return STARTUP_PACING_GAIN * (INITIAL_WINDOW + peer.acked_by(at)) / rtt

    def capacity(r: float) -> float:
        return max(float(BURST_PACKETS * MDS), min(r * BURST_INTERVAL, float(MAX_BURST_PACKETS * MDS)))

    times = [s.time for s in packets]
    sizes = [s.size for s in packets]
    prefix = [0]
    for size in sizes:
        prefix.append(prefix[-1] + size)
    worst = (0.0, 0, 0.0, 0.0)  # (excess ratio, bytes, bound, span)
    for j, tj in enumerate(times):
        r = rate(tj)
        c = capacity(r)
        # Every interval [t_i, t_j]: bytes <= bucket + rate * (span + granularity) + one datagram.
        lo = bisect.bisect_left(times, tj - 0.5)
        for i in range(lo, j + 1):
            span = tj - times[i]
            sent = prefix[j + 1] - prefix[i]
            bound = c + r * (span + PACING_GRANULARITY) + MDS
            if sent / bound > worst[0]:
                worst = (sent / bound, sent, bound, span)
            expect(
                sent <= bound,
                f"the IUT sent {sent} bytes in {span * 1000:.1f} ms (from {times[i]:.4f} s to {tj:.4f} s): more "
                f"than the token bucket of recovery.md §6 lets through at the highest rate any controller could "
                f"have then, {r / 1000:.0f} kB/s (bucket {c:.0f} bytes, + 1 ms early and one datagram: {bound:.0f}); "
                f"{peer.describe()}, ACKs every {period * 1000:.0f} ms",
            )
    burst = max(prefix[j + 1] - prefix[bisect.bisect_left(times, tj)] for j, tj in enumerate(times))
    return (
        f"{len(packets)} packets, {prefix[-1]} bytes in {until} s; largest burst at one instant {burst} bytes; "
        f"closest interval {worst[1]} of {worst[2]:.0f} bytes allowed over {worst[3] * 1000:.1f} ms"
    )


# -- the congestion window (recovery.md §1, §5) -----------------------------------------------------


def _window_check(peer: PathPeer, what: str) -> int:
    """No allowed controller lets more than its window be in flight, and the window grows by at most
    the bytes acknowledged: at each of the IUT's sends, bytes in flight <= initial window + bytes
    acknowledged.  Returns the most the IUT had in flight."""
    most = 0
    for s in eliciting(peer.sent):
        flight = peer.in_flight(s.time)
        bound = INITIAL_WINDOW + peer.acked_by(s.time)
        most = max(most, flight)
        expect(
            flight <= bound,
            f"{what}: {flight} bytes in flight (whole datagrams) after packet {s.packet.pn} ({s.size} bytes) at "
            f"{s.time:.4f} s, more than the initial window {INITIAL_WINDOW} plus the {bound - INITIAL_WINDOW} bytes "
            f"acknowledged by then ({peer.describe()})",
        )
    return most


@case(
    "ch/cwnd/1",
    section="recovery.md §1",
    title="bytes in flight count whole datagrams: many small unacknowledged packets stay within the initial window",
    requirements=("REC-1.2", "REC-1.3", "REC-5.1", "REC-5.1.1"),
)
def _(iut: Iut) -> str | None:
    # Ten bytes of stream data every millisecond: each goes in a small packet of about 45 bytes,
    # 30 of them the record's header and tag.  Nothing is acknowledged, so the window stays the
    # initial 12000 bytes: about 250 such packets fill it.  A sender that counts plaintext
    # (30 bytes fewer per packet) finds room for about 700.
    delay = 0.1
    peer = PathPeer(iut, delay=delay)
    channel_id = peer.open_files()
    t = peer.now + 2 * delay + 0.01  # the ACCEPT has arrived
    data = payload(4000, seed=43)
    for n in range(400):
        peer.run(t, auto_ack=False)
        peer.offer(channel_id, data[10 * n : 10 * n + 10])
        t += 0.001
    peer.run(t, auto_ack=False)
    small = [s for s in eliciting(peer.sent) if s.carries_stream()]
    expect(len(small) >= 100, f"internal: the IUT sent only {len(small)} STREAM packets ({peer.describe()})")
    most = _window_check(peer, "no ACK since the handshake's")
    sizes = sorted({s.size for s in small})
    return (
        f"{len(small)} STREAM packets of {sizes[0]}-{sizes[-1]} bytes; at most {most} bytes in flight "
        f"(initial window {INITIAL_WINDOW} + {peer.acked_by(t)} acknowledged)"
    )


@case(
    "ch/cwnd/2",
    section="channels.md §5.3",
    title="a sender held back by flow control is application-limited: its window does not grow from those ACKs",
    requirements=("CH-5.3.4", "REC-5.4.1", "REC-5.6.4.6"),
)
def _(iut: Iut) -> str | None:
    # A 20 ms round trip.  For half a second the runner gives 2400 bytes of channel credit per
    # round trip (MAX_CHANNEL_DATA), far below the initial window: the IUT has data waiting but
    # no credit, so it is application-limited (recovery.md §5.4) and its window must not grow
    # from the 60 kB acknowledged then.  Then the runner lifts the limit: what the IUT puts in
    # flight shows the window it kept.  NewReno and CUBIC keep the initial window; BBR may have
    # grown by what was delivered before its first initial window's worth (§5.6.3), and up to
    # 2 BDP + 3 datagrams, BDP being at most what was delivered in a round trip.
    delay, step, steps, grant = 0.01, 0.02, 25, 2400
    peer = PathPeer(iut, delay=delay)
    channel_id = peer.open_files(window=grant)
    offered = peer.offer(channel_id, payload(400_000, seed=47))
    expect(offered >= 200_000, f"internal: the IUT took only {offered} bytes")
    limit = grant
    t = peer.now
    for _ in range(steps):
        t += step
        peer.run(t, auto_ack=True)
        limit += grant
        peer.send(ch.MaxChannelData(channel_id=channel_id, maximum=limit))
    t += step
    peer.run(t, auto_ack=True)
    trickle = [s for s in eliciting(peer.sent) if s.carries_stream()]
    sent = sum(len(f.data) for s in trickle for f in s.packet.frames if isinstance(f, ch.Stream))
    expect(sent >= limit - 2 * grant, f"internal: the IUT sent {sent} stream bytes of the {limit} allowed")
    # The most bytes the runner acknowledged within any round trip, at the IUT.
    per_rtt = max(sum(n for at, n in peer.ack_arrivals if t0 <= at < t0 + 2 * delay) for t0, _ in peer.ack_arrivals[1:])
    released = t + delay  # when the MAX_CHANNEL_DATA that lifts the limit reaches the IUT
    acked_then = peer.acked_by(released)
    peer.send(ch.MaxChannelData(channel_id=channel_id, maximum=BIG))
    start = len(peer.sent)
    peer.run(released + 0.1, auto_ack=True)
    base = max(2 * INITIAL_WINDOW, 2 * 2 * per_rtt + 3 * MDS) + MDS
    most = 0
    for s in eliciting(peer.sent[start:]):
        flight = peer.in_flight(s.time)
        grown = peer.acked_by(s.time) - acked_then
        most = max(most, flight - grown)
        expect(
            flight <= base + grown,
            f"{flight} bytes in flight at {s.time:.4f} s, {(s.time - released) * 1000:.1f} ms after the flow-control "
            f"limit was lifted: more than {base} (what any controller's window may be after {acked_then} bytes were "
            f"acknowledged while the IUT was application-limited, {per_rtt} per round trip at most) plus the "
            f"{grown} bytes acknowledged since; the window grew while flow control held the IUT back",
        )
    return (
        f"{sent} bytes sent under a {grant}-byte credit per round trip, {acked_then} acknowledged; then at most "
        f"{most} bytes in flight beyond those acknowledged since (bound {base})"
    )


# -- the peer's address (channels.md §12, session.md §4.2) ------------------------------------------

#: Documentation addresses (RFC 5737) for the runner before and after it moves.
ADDRESS_BEFORE, ADDRESS_AFTER = "192.0.2.1:40000", "198.51.100.7:50000"


@case(
    "ch/path/1",
    section="channels.md §12",
    title="the runner's records coming from a new address mid-transfer do not reset the IUT's congestion window",
    requirements=(
        "CH-12.3",
        "CONF-3.7.13a",
    ),
)
def _(iut: Iut) -> str | None:
    # A 20 ms round trip, every packet acknowledged on arrival: the IUT's window grows (slow
    # start, or BBR's Startup) and it puts about twice as much in flight each round trip.  From
    # the 5th round trip on, the runner's datagrams carry a new source address (conn_receive's
    # ``addr``, spec/conformance.md §3.7), as after a NAT rebinding (session.md §4.2).  The IUT
    # must go on at the window it had: a reset to the initial window (12000 bytes) would cut what
    # it sends in that round trip to at most that.
    delay, rounds, moved = 0.01, 6, 4
    rtt = 2 * delay
    peer = PathPeer(iut, delay=delay)
    peer.addr = ADDRESS_BEFORE
    channel_id = peer.open_files()
    offered = peer.offer(channel_id, payload(1_000_000, seed=53))
    expect(offered >= 800_000, f"internal: the IUT took only {offered} bytes")
    peer.run(peer.now + 2 * delay, auto_ack=True)  # the ACCEPT arrives, the first packets leave
    start = min((s.time for s in peer.sent if s.carries_stream()), default=peer.now)
    peer.run(start + moved * rtt - delay, auto_ack=True)
    peer.addr = ADDRESS_AFTER  # ACKs sent from now on reach the IUT from the new address
    peer.run(start + rounds * rtt, auto_ack=True)
    sent = sent_per_round(peer, start, rtt, rounds)
    before, after = sent[moved - 1], sent[moved]
    expect(
        before > INITIAL_WINDOW + 2 * MDS,
        f"internal: the IUT sent only {before} bytes in round trip {moved} (per round trip: {sent})",
    )
    expect(
        after >= before - MDS,
        f"the IUT sent {after} bytes in the round trip after the runner's address changed to {ADDRESS_AFTER}, "
        f"less than the {before} of the round trip before (per round trip of {rtt * 1000:.0f} ms: {sent}): its "
        f"congestion state was reset",
    )
    return f"bytes sent per round trip {sent}; the address changed before round trip {moved + 1}"


# -- PMTU probes and the congestion controller (channels.md §5.5) -----------------------------------


def _is_probe(s: Sent) -> bool:
    """A PMTU probe: a PING and PADDING, nothing else (recovery.md §7.1; the base size's too)."""
    frames = s.packet.frames
    return (
        any(isinstance(f, ch.Ping) for f in frames)
        and any(isinstance(f, ch.Padding) for f in frames)
        and all(isinstance(f, ch.Ping | ch.Padding) for f in frames)
    )


@case(
    "ch/pmtu/5",
    section="channels.md §5.5",
    title="on a 1200-byte path lost PMTU probes move the search on and do not shrink the window: the IUT keeps pace",
    requirements=("CH-5.5.2", "REC-5.3"),
)
def _(iut: Iut) -> str | None:
    # PMTU probing on, a path that carries nothing above 1200 bytes, a 20 ms round trip, every
    # packet acknowledged on arrival.  The runner grants 4800 bytes of channel credit per round
    # trip: well within the initial window (12000 bytes) with a probe beside it, so the IUT is
    # application-limited and no controller of recovery.md §5 shrinks its window without a
    # congestion signal.  Every probe is lost, and nothing else is.  The IUT must report them to
    # DPLPMTUD (the search goes on to smaller sizes) and never take them for congestion: a
    # NewReno that did would halve its window at each and soon fall behind.  (That a lost probe
    # is not resent, CH-5.5.2's other half, is not checked here: an IUT may put a PING in any
    # packet for its own reasons, so a resent probe's PING cannot be told from one.)
    delay, step, steps, grant = 0.01, 0.02, 40, 4800
    peer = PathPeer(iut, delay=delay, path_mtu=MDS, pmtu_probing=True)
    channel_id = peer.open_files(window=grant)
    offered = peer.offer(channel_id, payload(400_000, seed=59))
    expect(offered >= steps * grant, f"internal: the IUT took only {offered} bytes")
    limit = grant
    t = peer.now
    behind: list[str] = []
    for k in range(steps):
        t += step
        peer.run(t, auto_ack=True)
        # By now every byte of the grant before the last has arrived (the last may still be on its way).
        if k >= 2:
            data, _ = peer.stream_bytes(channel_id)
            owed = limit - grant
            if len(data) < owed:
                behind.append(f"{t:.2f} s: {len(data)} of {owed}")
        limit += grant
        peer.send(ch.MaxChannelData(channel_id=channel_id, maximum=limit))
    probes = [s for s in peer.sent if _is_probe(s) and s.size > MDS]
    sizes = sorted({s.size for s in probes}, reverse=True)
    expect(
        len(sizes) >= 2,
        f"the IUT probed only the sizes {sizes} in {t:.2f} s although every probe was lost ({len(probes)} probes): "
        "the losses did not reach DPLPMTUD (recovery.md §7.3)",
    )
    expect(len(probes) >= 4, f"internal: only {len(probes)} probes were lost ({sizes}; {peer.describe()})")
    expect(
        not behind,
        f"the IUT fell behind a flow-control credit of {grant} bytes per round trip, with nothing but its "
        f"{len(probes)} probes lost (sizes {sizes}): stream bytes arrived by then vs owed: {behind[:4]}; its window "
        f"shrank: the probes' losses reached its congestion controller ({peer.describe()})",
    )
    return f"{len(probes)} probes lost (sizes {sizes}); {limit - grant} bytes of credit kept up with"


@case(
    "ch/pmtu/6",
    section="channels.md §5.5",
    title="after the path MTU rose to 1452, persistent congestion leaves a minimum window of two 1452-byte datagrams",
    requirements=("CH-5.5.3", "REC-5.5.1", "REC-7.3.6", "REC-5.1.1"),
)
def _(iut: Iut) -> str | None:
    # PMTU probing on, a path that carries 1452 bytes, a 20 ms round trip.  The runner grants
    # 500 bytes of credit every 10 ms, so the IUT sends a small packet each time; its first probe
    # raises the path MTU.  Then every packet of the IUT is lost for 180 ms (the IUT goes on
    # sending within its window, so no probe timeout fires, and small packets are no black hole
    # signal, recovery.md §7.4), and the ACK of its next packet makes them lost: persistent
    # congestion (recovery.md §4.4), the window at its minimum.
    # The minimum of every controller is at least two datagrams of the current size (§5.1, §5.5):
    # once the runner lifts the limit the IUT must have two 1452-byte datagrams in flight before
    # any ACK of them can come back.  A controller still at 1200 bytes (2400) fits only one.
    peer = PathPeer(iut, delay=0.01, pmtu_probing=True)
    mtu, lost, fresh, most = congestion_after_mtu_rise(peer, seed=61)
    expect(
        most > 2 * MDS,
        f"after persistent congestion ({len(lost)} packets of {min(s.size for s in lost)}-{max(s.size for s in lost)} "
        f"bytes lost over {lost[-1].time - lost[0].time:.3f} s) the IUT had at most {most} bytes in flight in the "
        f"round trip after the limit was lifted (packets {[s.size for s in fresh][:6]}): its window is below two "
        f"datagrams of the path MTU {mtu} it uses ({2 * mtu} bytes), the minimum window at 1200 bytes",
    )
    return (
        f"path MTU {mtu}; {len(lost)} packets lost over {lost[-1].time - lost[0].time:.3f} s; then {most} bytes in "
        f"flight at once (packets {[s.size for s in fresh][:6]})"
    )


def congestion_after_mtu_rise(peer: PathPeer, *, seed: int) -> tuple[int, list[Sent], list[Sent], int]:
    """The scenario of ``ch/pmtu/6`` (and ``ch/bbr/8``) on ``peer`` (PMTU probing on, a path
    that carries 1452 bytes, 10 ms each way): 500 bytes of credit every 10 ms, so the IUT sends
    a small packet each time and its first probe raises the path MTU; then every packet of the
    IUT is lost for 180 ms (it goes on sending within its window, so no probe timeout fires, and
    small packets are no black hole signal, recovery.md §7.4), and the ACK of its next packet
    makes them lost: persistent congestion (§4.4).  Right after that ACK the runner lifts the
    limit.  Returns the path MTU the IUT confirmed, the packets lost in the blackhole, the
    ack-eliciting packets sent in the round trip after the limit was lifted, and the most bytes
    of those in flight at once (those lost are declared lost by then, the rest acknowledged)."""
    delay, step, grant = 0.01, 0.01, 500
    channel_id = peer.open_files(window=grant)
    offered = peer.offer(channel_id, payload(400_000, seed=seed))
    expect(offered >= 100_000, f"internal: the IUT took only {offered} bytes")
    limit = grant
    t = peer.now

    def tick() -> None:
        nonlocal t, limit
        t += step
        peer.run(t, auto_ack=True)
        limit += grant
        peer.send(ch.MaxChannelData(channel_id=channel_id, maximum=limit))

    for _ in range(30):
        tick()
    mtu = max((s.size for s in peer.sent if s.delivered and _is_probe(s)), default=MDS)
    expect(mtu > MDS, f"internal: no probe above {MDS} bytes was acknowledged ({peer.describe()})")
    peer.blackhole = True
    cut = len(peer.sent)
    for _ in range(18):
        tick()
    peer.blackhole = False
    lost = [s for s in peer.sent[cut:] if s.ack_eliciting]
    expect(len(lost) >= 10, f"internal: the IUT sent only {len(lost)} packets in 180 ms of blackhole")
    before = len(peer.sent)
    for _ in range(40):
        t += step / 10
        peer.run(t, auto_ack=True)
        if any(s.delivered for s in peer.sent[before:]):
            break
    expect(any(s.delivered for s in peer.sent[before:]), f"internal: no packet after the blackhole by {peer.now:.3f} s")
    peer.send(ch.MaxChannelData(channel_id=channel_id, maximum=BIG))
    released = peer.now + delay
    start = len(peer.sent)
    peer.run(released + 2 * delay, auto_ack=True)
    fresh = [s for s in eliciting(peer.sent[start:]) if s.time < released + 2 * delay]
    most = max(
        (
            sum(f.size for f in fresh if f.time <= s.time and peer.acked_at.get(f.packet.pn, BIG) > s.time)
            for s in fresh
        ),
        default=0,
    )
    return mtu, lost, fresh, most
