"""Loss recovery cases (spec/recovery.md, channels.md §4-§6, §9), run through the impaired link.

The runner plays the peer of a channel-layer connection (``cases_channels.Peer``) through
``impaired.ImpairedPeer``, which drops chosen packets of the IUT (or all of them, or those
above a path MTU, or at random on a seeded link) and keeps a record of everything the IUT
sent, so that the cases can check what it resent, when its probe timer fired and how much
it had in flight.  In most cases the IUT opens a channel to the runner's ``files`` service
and sends on it; the runner accepts with a large window, so flow control never limits the
IUT and what holds it back is its loss recovery and congestion control.

Ids: ``ch/loss/`` retransmission, ``ch/pto/`` probe timeout, ``ch/cc/`` congestion window,
``ch/ackfreq/`` when ACKs leave, ``ch/blackhole/`` liveness on a dead path, ``ch/pmtu/`` path
MTU discovery.  A case asserts only what the cited section requires; the detail string of a
passing case names the impairment (and the seed of a seeded link).
"""

from __future__ import annotations

import itertools
import math

from p2pos.proto.channels import frames as ch

from .cases_channels import MAX_ACK_DELAY, Peer, Reply, ack_of, acked
from .checks import CaseFailed, expect, short
from .impaired import ImpairedPeer, LinkConfig
from .iut import Iut
from .registry import case

LOSS, PTO, CC = "channels.md §6", "recovery.md §4.3", "recovery.md §5"
#: recovery.md §5.1 at the base datagram size of 1200 bytes (PMTU probing is off).
INITIAL_WINDOW = 12000
BASE_DATAGRAM = 1200
#: The smallest probe timeout recovery.md §4.3 allows: kGranularity + max_ack_delay (25 ms).
MIN_PTO = 0.001 + 0.025
#: A bound on the first probe timeout: kInitialRtt (0.333 s) * 3 + max_ack_delay covers the PTO
#: of any smoothed RTT the IUT can have, since the runner acknowledges within 20 ms.
MAX_FIRST_PTO = 0.333 * 3 + 0.025 + 0.001


def payload(n: int, seed: int = 1) -> bytes:
    return bytes((seed * 31 + i * 7) % 251 for i in range(n))


def _iut_channel(peer: ImpairedPeer) -> int:
    """The IUT opens a stream channel to ``files``; the runner accepts with a 1 MiB window."""
    reply = peer.call("conn_open", service="files", kind="stream")
    channel_id = int(reply.answer["channel_id"])
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=1 << 20), at=peer.now + 0.01)
    peer.ack_all()
    return channel_id


def _delivered(peer: ImpairedPeer, channel_id: int) -> tuple[bytes, int | None]:
    """The IUT's stream bytes that reached the runner, up to the first hole, and the FIN's size."""
    have: dict[int, int] = {}
    end: int | None = None
    for packet in peer.received:
        for f in packet.frames:
            if isinstance(f, ch.Stream) and f.channel_id == channel_id:
                have.update((f.offset + i, b) for i, b in enumerate(f.data))
                if f.fin:
                    end = f.offset + len(f.data)
    n = 0
    while n in have:
        n += 1
    return bytes(have[i] for i in range(n)), end


def _ranges(frames: list[ch.Stream]) -> list[tuple[int, int]]:
    return sorted((f.offset, f.offset + len(f.data)) for f in frames if f.data)


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


# -- retransmission (channels.md §6) -------------------------------------------------------------


@case(
    "ch/loss/1",
    section=LOSS,
    title="lost stream data is sent again, and only the lost ranges",
    requirements=(
        "CH-6.1",
        "CH-6.2",
        "CH-6.3",
        "FLOW-2.2.1",
        "FLOW-2.2.2",
        "REC-3.1.1",
        "CONF-3.7.9",
    ),
)
def _(iut: Iut) -> str | None:
    peer = ImpairedPeer(iut, drop_data=(2, 4))
    channel_id = _iut_channel(peer)
    data = payload(8000, seed=5)
    start = len(peer.sent)
    peer.now += 0.01
    peer.call("conn_send", channel_id=channel_id, data=data, fin=True)
    acked_bytes: set[int] = set()  # stream bytes in packets the runner acknowledged
    acked_pns: set[int] = set()
    resent: list[tuple[int, int]] = []
    seen: set[int] = set()  # stream bytes the IUT had sent before
    checked = start
    for _ in range(40):
        for sent in peer.sent[checked:]:
            for f in sent.packet.frames:
                if isinstance(f, ch.Stream) and f.channel_id == channel_id and f.data:
                    span = set(range(f.offset, f.offset + len(f.data)))
                    again = span & acked_bytes
                    if again:
                        raise CaseFailed(
                            f"packet {sent.packet.pn} resends bytes {min(again)}..{max(again)} of channel "
                            f"{channel_id}, already acknowledged ({peer.describe()})"
                        )
                    if span & seen:
                        resent.append((f.offset, f.offset + len(f.data)))
                    seen |= span
        checked = len(peer.sent)
        got, end = _delivered(peer, channel_id)
        if got == data and end == len(data):
            break
        # The runner acknowledges what arrived, 20 ms later, then lets the IUT's timers run.
        peer.now += 0.02
        newly = [s for s in peer.sent[start:] if s.delivered and s.packet.pn not in acked_pns]
        if newly:
            reply = peer.ack_all()
            expect(reply.close is None, f"the IUT closed the session: {reply.close}")
            for s in newly:
                acked_pns.add(s.packet.pn)
                for f in s.packet.frames:
                    if isinstance(f, ch.Stream) and f.channel_id == channel_id:
                        acked_bytes |= set(range(f.offset, f.offset + len(f.data)))
        elif peer.iut_timer is not None:
            peer.timer(max(peer.now, peer.iut_timer))
        else:
            break
    lost = _merge([r for s in peer.lost for r in _ranges([f for f in s.packet.frames if isinstance(f, ch.Stream)])])
    expect(bool(lost), f"internal: nothing was dropped ({peer.describe()})")
    got, end = _delivered(peer, channel_id)
    expect(
        got == data and end == len(data),
        f"the IUT never sent the lost ranges {lost} again: the runner has {len(got)} of {len(data)} bytes, "
        f"FIN {end} ({peer.describe()})",
    )
    # Every resent byte was checked above not to be acknowledged when it left; a probe may
    # also resend data still in flight (channels.md §5.4), so the lost ranges need only be covered.
    resent_ranges = _merge(resent)
    missing = [r for r in lost if not any(lo <= r[0] and r[1] <= hi for lo, hi in resent_ranges)]
    expect(not missing, f"the lost ranges {missing} were never sent again (resent: {resent_ranges}; {peer.describe()})")
    return f"{peer.describe()}: lost {lost}, resent {resent_ranges}"


# -- probe timeout (recovery.md §4.3) --------------------------------------------------------------


@case(
    "ch/pto/1",
    section=PTO,
    title="with every packet lost, the probe timer fires, probes, and backs off",
    requirements=(
        "CH-5.4.1",
        "REC-2.4",
        "REC-4.3.1",
        "REC-4.3.2",
        "CONF-3.7.6",
    ),
)
def _(iut: Iut) -> str | None:
    peer = ImpairedPeer(iut, idle_timeout=120.0)
    channel_id = _iut_channel(peer)
    peer.blackhole = True  # from here on nothing the IUT sends arrives, so nothing is acknowledged
    peer.now += 0.01
    peer.call("conn_send", channel_id=channel_id, data=payload(3000, seed=7), fin=False)
    eliciting = [s for s in peer.sent if s.ack_eliciting and not s.delivered]
    expect(bool(eliciting), "internal: the IUT sent nothing on conn_send")
    last_sent = eliciting[-1].time
    firings: list[float] = []
    for _ in range(30):
        expect(
            peer.iut_timer is not None,
            f"no timer armed with ack-eliciting packets in flight (after {len(firings)} probes)",
        )
        assert peer.iut_timer is not None
        if not firings:
            expect(
                peer.iut_timer - last_sent <= MAX_FIRST_PTO,
                f"the first probe timeout is {peer.iut_timer - last_sent:.3f} s after the last packet, "
                f"more than {MAX_FIRST_PTO:.3f} s",
            )
        before = len(peer.sent)
        reply = peer.timer(max(peer.now, peer.iut_timer))
        expect(reply.close is None, f"the IUT closed the session at {peer.now:.3f}: {reply.close}")
        probes = [s for s in peer.sent[before:] if s.ack_eliciting]
        if probes:  # one or two probes, and maybe what the window allows: not checked
            firings.append(peer.now)
        if len(firings) == 5:
            break
    expect(len(firings) == 5, f"only {len(firings)} probe timeouts fired: {short(firings)}")
    intervals = [b - a for a, b in zip([last_sent, *firings], firings, strict=False)]
    for earlier, later in itertools.pairwise(intervals):
        expect(
            later >= 1.5 * earlier,
            f"no backoff: intervals between probes {[round(i, 4) for i in intervals]} s "
            "(each should double, recovery.md §4.3)",
        )
    return f"probes at {[round(t, 4) for t in firings]}"


# -- congestion control (recovery.md §5) ------------------------------------------------------------


@case(
    "ch/cc/1",
    section=CC,
    title="without ACKs the IUT puts no more than its initial window in flight, probes aside",
    requirements=(
        "CH-5.3.1",
        "REC-1.3",
        "REC-5.1",
        "REC-5.1.1",
    ),
)
def _(iut: Iut) -> str | None:
    peer = ImpairedPeer(iut, idle_timeout=120.0)
    channel_id = _iut_channel(peer)
    start = len(peer.sent)
    t0 = peer.now = peer.now + 0.01
    data = payload(200_000, seed=3)
    offered = 0
    worst = 0
    # The runner acknowledges nothing from here on; it lets the IUT's timers run for a second
    # and tops up the send buffer each time, so that the IUT always has data to send.
    for _ in range(400):
        if offered < len(data):
            reply = peer.call("conn_send", channel_id=channel_id, data=data[offered : offered + 65536], fin=False)
            offered += int(reply.answer.get("accepted", 0))
        in_flight = sum(s.size for s in peer.sent[start:] if s.ack_eliciting)
        # PTO probes may exceed the window (recovery.md §4.3, §5): at most two per probe timeout,
        # and with the timeout at least MIN_PTO, doubling each time, at most this many fired so far.
        elapsed = peer.now - t0
        ptos = 0 if elapsed < MIN_PTO else int(math.log2(elapsed / MIN_PTO)) + 1
        bound = INITIAL_WINDOW + 2 * BASE_DATAGRAM * ptos
        worst = max(worst, in_flight)
        expect(
            in_flight <= bound,
            f"{in_flight} bytes in flight at {elapsed:.3f} s without any ACK: more than the initial window "
            f"{INITIAL_WINDOW} plus {ptos} probe timeouts' two probes ({bound})",
        )
        if peer.iut_timer is None or peer.iut_timer - t0 > 1.0:
            break
        reply = peer.timer(max(peer.now, peer.iut_timer))
        expect(reply.close is None, f"the IUT closed the session: {reply.close}")
    return f"at most {worst} bytes in flight without ACKs"


# -- through the seeded link (spec/conformance.md, the impaired-network mode) ----------------------


#: The seeded path of ch/loss/2: the IUT's packets are lost, reordered, duplicated, jittered and
#: cut off for 0.3 s; the runner's only reordered, duplicated and jittered (the runner does not
#: retransmit: it sends nothing but ACKs and PINGs then).
LOSSY = LinkConfig(delay=0.02, jitter=0.005, loss=0.1, reorder=0.1, duplicate=0.05, blackholes=((0.15, 0.45),))
LOSSLESS = LinkConfig(delay=0.02, jitter=0.005, reorder=0.1, duplicate=0.05)
SEED = 20261204


@case(
    "ch/loss/2",
    section="channels.md §6",
    title="through a seeded lossy link a transfer arrives whole, and ACKs leave within max_ack_delay",
    requirements=(
        "CH-6.2",
        "CH-6.3",
        "FLOW-2.2.1",
    ),
)
def _(iut: Iut) -> str | None:
    peer = ImpairedPeer(iut, link=LOSSY, link_back=LOSSLESS, seed=SEED, idle_timeout=120.0)
    reply = peer.call("conn_open", service="files", kind="stream")
    channel_id = int(reply.answer["channel_id"])
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=1 << 20), at=peer.now + 0.01)
    data = payload(40_000, seed=11)
    peer.call("conn_send", channel_id=channel_id, data=data, fin=True)
    pings: list[int] = []
    # The runner acknowledges whatever arrives at once and sends a PING every 50 ms, so that the
    # IUT has ack-eliciting packets to acknowledge (channels.md §4).
    while peer.now < 20.0:
        got, end = _delivered(peer, channel_id)
        if got == data and end == len(data):
            break
        pings.append(peer.link.next_counter)
        peer.send(ch.Ping())
        peer.run(peer.now + 0.05)
    got, end = _delivered(peer, channel_id)
    expect(
        got == data and end == len(data),
        f"the IUT's stream did not arrive whole by {peer.now:.2f} s: {len(got)} of {len(data)} bytes, FIN {end} "
        f"({peer.describe()})",
    )
    lost = sum(1 for s in peer.sent if not s.delivered)
    expect(lost > 0, f"internal: the link lost nothing ({peer.describe()})")
    # channels.md §4: a receiver SHOULD NOT delay the ACK of an ack-eliciting packet more than
    # max_ack_delay.  Only packets that arrived in order are checked (an ACK for one that arrived
    # late may leave out what the peer is known to have: §4, "What an ACK says").
    checked = [pn for pn in pings if pn in peer.arrivals and pn in peer.in_order]
    expect(len(checked) >= 3, f"internal: only {len(checked)} PINGs arrived in order ({peer.describe()})")
    for pn in checked:
        arrived = peer.arrivals[pn]
        acks = [s.time for s in peer.sent if any(isinstance(f, ch.Ack) and pn in acked(f) for f in s.packet.frames)]
        expect(bool(acks), f"the IUT never acknowledged the runner's PING packet {pn} ({peer.describe()})")
        delay = min(acks) - arrived
        expect(
            delay <= MAX_ACK_DELAY + 1e-9,
            f"the runner's PING packet {pn} arrived at {arrived:.4f} s and was acknowledged {delay * 1000:.1f} ms "
            f"later, more than max_ack_delay ({peer.describe()})",
        )
    return (
        f"{peer.describe()}: {lost} of {len(peer.sent)} IUT packets lost, done at {peer.now:.2f} s; "
        f"{len(checked)} PINGs acknowledged in time"
    )


# -- ACK frequency (channels.md §4, [RFC 9000] §13.2.1 and §13.2.2) -------------------------------


def _acks_of(reply: Reply, pns: set[int]) -> bool:
    """Whether the IUT's packets in ``reply`` hold an ACK covering every one of ``pns``."""
    return any(pns <= acked(f) for f in reply.frames(ch.Ack))


@case(
    "ch/ackfreq/1",
    section="channels.md §4",
    title="every second ack-eliciting packet is acknowledged at once, without waiting for max_ack_delay",
    requirements=("CH-4.4",),
)
def _(iut: Iut) -> str | None:
    # channels.md §4 "When": an ACK is due at once when 2 ack-eliciting packets arrived since the
    # last ACK was sent ([RFC 9000] §13.2.2: a receiver SHOULD send an ACK after two).
    peer = Peer(iut)
    for i in range(3):
        t = 1.0 + i
        first = peer.link.next_counter
        peer.send(ch.Ping(), at=t)
        if peer.received_acks() and first in acked(peer.received_acks()[-1]):
            continue  # acknowledged the first at once: also conforming, try the next pair
        reply = peer.send(ch.Ping(), at=t + 0.001)
        expect(
            _acks_of(reply, {first, first + 1}),
            f"pair {i + 1}: no ACK of packets {first} and {first + 1} right after the second arrived, "
            f"got {short(reply.packets, 200)}",
        )
    return None


@case(
    "ch/ackfreq/2",
    section="channels.md §4",
    title="an ack-eliciting packet that arrives out of order is acknowledged at once",
    requirements=("CH-4.3",),
)
def _(iut: Iut) -> str | None:
    # channels.md §4 "When": out of order (above a gap, or below the largest) makes an ACK due at
    # once ([RFC 9000] §13.2.1: SHOULD, so that the sender detects the loss without delay).
    peer = Peer(iut)
    peer.send(ch.Ping(), at=1.0)
    peer.timer(1.0 + MAX_ACK_DELAY)  # the IUT acknowledged it; nothing is pending now
    skipped = peer.link.next_counter
    above = skipped + 1
    reply = peer.send_raw(ch.encode_frame(ch.Ping()), at=2.0, counter=above)
    expect(
        _acks_of(reply, {above}),
        f"no ACK at once of packet {above}, which arrived after a gap (packet {skipped} missing): "
        f"{short(reply.packets, 200)}",
    )
    reply = peer.send_raw(ch.encode_frame(ch.Ping()), at=2.05, counter=skipped)
    expect(
        _acks_of(reply, {skipped, above}),
        f"no ACK at once of packet {skipped}, which arrived after packet {above}: {short(reply.packets, 200)}",
    )
    return None


# -- liveness under a blackhole (channels.md §9.2, §9.3) -------------------------------------------


@case(
    "ch/blackhole/1",
    section="channels.md §9.2",
    title="under a blackhole the IUT keeps probing, and its own packets do not stop the idle timeout",
    requirements=(
        "CH-9.2.1",
        "CH-9.2.2",
        "CH-9.3.1",
        "ERR-1.22",
    ),
)
def _(iut: Iut) -> str | None:
    # ch/live/1 and ch/live/2 check a keepalive and the idle timeout on a quiet path; here the
    # path goes dead: the IUT's keepalives and probes (ack-eliciting, so they leave at least every
    # keepalive_interval, §9.3) are all lost, and only packets *from the peer* hold off the idle
    # timeout (§9.2), so the IUT closes idle_timeout after the last one arrived.
    interval, idle = 1.0, 5.0
    # The IUT initiates: the controlling side sends the keepalives (paths.md PTH-7.4).
    peer = ImpairedPeer(iut, role="initiator", keepalive_interval=interval, idle_timeout=idle)
    last_received = 1.0
    peer.send(ch.Ping(), at=last_received)
    peer.blackhole = True  # from here on nothing arrives either way: the runner stays silent
    start = len(peer.sent)
    closed_at: float | None = None
    for _ in range(200):
        if peer.iut_timer is None or peer.iut_timer > last_received + idle + 1.0:
            break
        reply = peer.timer(max(peer.now, peer.iut_timer))
        if reply.events("connection_closed"):
            closed = reply.events("connection_closed")[0]
            expect(closed.get("code") == "IDLE_TIMEOUT", f"connection_closed with {short(closed)}, not IDLE_TIMEOUT")
            closed_at = peer.now
            break
    expect(
        closed_at is not None,
        f"still open at {peer.now:.3f} s, {peer.now - last_received:.3f} s after the last packet from the peer "
        f"(idle_timeout {idle} s; next timer {peer.iut_timer})",
    )
    assert closed_at is not None
    expect(
        closed_at >= last_received + idle - 1e-9,
        f"closed at {closed_at:.3f} s, before idle_timeout after the last packet ({last_received + idle} s)",
    )
    times = [last_received] + [s.time for s in peer.sent[start:] if s.ack_eliciting and s.time < closed_at]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    expect(
        bool(gaps) and max(gaps) <= interval + 1e-9 and closed_at - times[-1] <= interval + 1e-9,
        f"a silence of more than keepalive_interval ({interval} s) in the IUT's ack-eliciting packets under the "
        f"blackhole: sent at {[round(t, 3) for t in times]}, closed at {closed_at:.3f}",
    )
    return f"{len(times) - 1} keepalives and probes lost, closed at {closed_at:.3f} s"


# -- path MTU discovery (recovery.md §7, channels.md §5.5) ------------------------------------------

#: recovery.md §7: MAX_PROBES losses of one size before it counts as too big.
MAX_PROBES = 3


def _is_probe(frames: list[ch.Frame]) -> bool:
    """A PMTU probe: a PING and PADDING, nothing else (recovery.md §7.1)."""
    return any(isinstance(f, ch.Ping) for f in frames) and all(isinstance(f, ch.Ping | ch.Padding) for f in frames)


@case(
    "ch/pmtu/1",
    section="recovery.md §7",
    title="on a 1300-byte path the IUT probes with PING+PADDING, never sends data above a confirmed size, and finds it",
    requirements=(
        "FRA-1.7",
        "CH-1.4",
        "CH-5.5.1",
        "REC-7.1",
        "REC-7.2",
        "REC-7.1.1",
        "REC-7.1.4",
        "REC-7.3.3",
        "REC-7.3.5",
    ),
)
def _(iut: Iut) -> str | None:
    mtu = 1300
    peer = ImpairedPeer(iut, path_mtu=mtu, pmtu_probing=True, idle_timeout=120.0)
    reply = peer.call("conn_open", service="files", kind="stream")
    channel_id = int(reply.answer["channel_id"])
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=1 << 22), at=peer.now + 0.01)
    data = payload(400_000, seed=13)
    offered = seen = 0
    while peer.now < 6.0:
        if offered < len(data):
            answer = peer.call("conn_send", channel_id=channel_id, data=data[offered : offered + 65536], fin=False)
            offered += int(answer.answer.get("accepted", 0))
        peer.run(peer.now + 0.02)
        peer.now += 0.02  # the runner's ACKs leave 20 ms after the packets: a round trip for the RTT estimate
        # What arrived in answer to a call rather than a timer (an IUT that does not pace sends
        # it all then) is acknowledged too: recovery.md §5 allows controllers that do not pace.
        if any(any(not isinstance(f, ch.Ack | ch.Padding) for f in p.frames) for p in peer.received[seen:]):
            peer.ack()
        seen = len(peer.received)
    confirmed = BASE_DATAGRAM  # recovery.md §7: every path carries 1200 bytes
    probes: dict[int, int] = {}
    for s in peer.sent:
        if s.size > confirmed:
            expect(
                _is_probe(s.packet.frames),
                f"packet {s.packet.pn} of {s.size} bytes holds {short(s.packet.frames, 120)}, above the largest "
                f"size confirmed so far ({confirmed}): only a PMTU probe (PING and PADDING) may be",
            )
            probes[s.size] = probes.get(s.size, 0) + 1
            expect(
                s.size <= mtu or probes[s.size] <= MAX_PROBES,
                f"{probes[s.size]} probes of {s.size} bytes, lost every time: at most MAX_PROBES ({MAX_PROBES})",
            )
        if s.delivered and _is_probe(s.packet.frames):
            confirmed = max(confirmed, s.size)  # the runner acknowledges every packet that arrives
    sizes = sorted({s.size for s in peer.sent if s.delivered and not _is_probe(s.packet.frames)})
    expect(
        sizes[-1] > BASE_DATAGRAM,
        f"after 6 s the IUT's packets are still at most {sizes[-1]} bytes: no probe raised the path MTU "
        f"(probes {probes})",
    )
    return f"{peer.describe()}: probes {probes}, largest data packet {sizes[-1]} bytes"


#: recovery.md §5.1 and §5.6.1: the largest minimum window of the three controllers (BBR's,
#: 4 datagrams; NewReno's and CUBIC's is 2) at the base datagram size.
MIN_WINDOW_BOUND = 4 * BASE_DATAGRAM


@case(
    "ch/cc/2",
    section="recovery.md §4.4",
    title="after persistent congestion the IUT sends no more than the minimum window at once",
    requirements=(
        "CH-6.2.1",
        "REC-4.4.1",
        "REC-5.1",
    ),
)
def _(iut: Iut) -> str | None:
    peer = ImpairedPeer(iut, idle_timeout=120.0)
    channel_id = _iut_channel(peer)
    peer.now += 0.01
    peer.call("conn_send", channel_id=channel_id, data=payload(200_000, seed=17), fin=False)
    # Two round trips acknowledged 20 ms after each burst: the IUT has RTT samples (§4.4 counts
    # only packets sent after the first one).
    for _ in range(2):
        peer.now += 0.02
        peer.ack_all()
    # Then a blackhole of 2 s, far longer than the persistent congestion duration (three probe
    # timeouts, well under 1 s with a 20 ms RTT); the IUT's probes are all lost.
    peer.blackhole = True
    end = peer.now + 2.0
    while peer.iut_timer is not None and peer.iut_timer < end:
        peer.timer(max(peer.now, peer.iut_timer))
    lost_before = len(peer.sent)
    peer.blackhole = False
    for _ in range(20):  # the next probe arrives
        expect(peer.iut_timer is not None, "no timer armed with packets in flight after the blackhole")
        assert peer.iut_timer is not None
        peer.timer(max(peer.now, peer.iut_timer))
        if any(s.ack_eliciting for s in peer.sent[lost_before:]):
            break
    probe = next(s for s in peer.sent[lost_before:] if s.ack_eliciting)
    # The runner acknowledges only that probe: every packet before it (3 and more numbers below)
    # is lost, the first sent right after the first RTT sample, the last 2 s later.
    peer.now += 0.02
    before = len(peer.sent)
    reply = peer.send(ack_of([probe.packet.pn]))
    expect(reply.close is None, f"the IUT closed the session: {reply.close}")
    burst = sum(s.size for s in peer.sent[before:] if s.ack_eliciting)
    expect(
        burst <= MIN_WINDOW_BOUND,
        f"{burst} bytes of ack-eliciting packets at once after persistent congestion: more than the minimum "
        f"window ({MIN_WINDOW_BOUND}, recovery.md §4.4, §5.1, §5.6.1)",
    )
    return f"{burst} bytes sent right after persistent congestion"
