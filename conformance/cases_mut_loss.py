"""Cases written for mutants of loss detection, RTT, probe timeouts, NewReno, CUBIC and PMTU search.

Those of spec/recovery.md (and the ACK ranges of spec/channels.md §4) that the suite let survive
(conformance/MUTATION.md).  Each case tests a requirement a surviving mutant of the core
(recovery/acks.py, recovery/congestion.py, recovery/pmtu.py, recovery/recovery.py,
recovery/rtt.py) broke; the mutant it kills is listed in tests/conformance/kills_loss.py, which
CI runs.  The survivors no case can or need kill are in conformance/triage/loss.md.
"""

from __future__ import annotations

from p2pos.proto.channels import frames as ch

from .cases_channels import MAX_ACK_DELAY, Peer, ack_of, acked
from .cases_req_controllers import APP_LIMITED, BASE_DATAGRAM, INITIAL_WINDOW, SHORT_RTT, Flow
from .cases_req_recovery import (
    BASE_PLPMTU,
    LOSS_TIME,
    MAX_PLPMTU,
    RTT,
    LatePeer,
    _bulk,
    _is_probe,
    _lossy_transfer,
    _resends,
    expect_fires,
    payload,
    ping,
)
from .checks import expect, expect_eq, short
from .impaired import ImpairedPeer, Sent
from .iut import Iut
from .registry import case

ACKS = "channels.md §4"


@case(
    "ch/rec/4",
    section=ACKS,
    title="packets arriving out of order, below and between earlier ranges, are acknowledged exactly",
    requirements=(
        "CH-4.1",
        "CH-4.7",
        "CH-4.9",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    base = peer.link.next_counter
    # Each arrival takes another path of the receiver's range list: a new largest, a number below
    # every range, one between two ranges, one just above a lower range, one just below the first
    # range, one that joins two ranges, and one that joins everything.
    order = (10, 4, 7, 5, 9, 6, 8)
    window = set(range(base, base + 11))
    got: set[int] = set()
    for i, offset in enumerate(order):
        before = len(peer.received_acks())
        peer.send_raw(ch.encode_frame(ch.Ping()), at=1.0 + i * 0.001, counter=base + offset)
        got.add(base + offset)
        for frame in peer.received_acks()[before:]:
            reported = acked(frame) & window
            expect(
                reported <= got,
                f"after packets {sorted(p - base for p in got)} (of base {base}) an ACK reports "
                f"{sorted(p - base for p in reported)}: numbers never received",
            )
    peer.timer(peer.now + MAX_ACK_DELAY)
    acks = peer.received_acks()
    expect(bool(acks), f"no ACK of the reordered PINGs: {short(peer.received[-3:], 200)}")
    latest = max(acks, key=lambda a: (a.largest, len(acked(a) & window)))
    expect_eq(
        sorted(p - base for p in acked(latest) & window),
        sorted(order),
        f"packet numbers (less {base}) in the latest ACK after arrivals in the order {order}",
    )
    return None


@case(
    "ch/rtt/1",
    section=RTT,
    title="an ACK delay that brings the sample down to exactly min_rtt is subtracted",
    requirements=(
        "REC-2.1",
        "REC-2.7",
        "REC-2.8",
        "REC-4.3.1",
    ),
)
def _(iut: Iut) -> str | None:
    peer = LatePeer(iut)
    # Times in binary fractions, so that the IUT's arithmetic is exact: a first sample of 125 ms
    # (min_rtt), then one of 140.625 ms reporting 15625 microseconds (1/64 s) of ACK delay,
    # which leaves exactly min_rtt: adjusted to 125 ms, not taken whole.
    first = ping(peer, 0.5)
    peer.ack_pns({p.pn for p in peer.received}, at=first.time + 0.125)
    second = ping(peer, 1.0)
    peer.ack_pns({p.pn for p in peer.received}, at=second.time + 0.140625, delay=0.015625)
    expect_eq(len(peer.model.samples), 2, "internal: RTT samples taken")
    third = ping(peer, 1.5)
    expect_fires(peer, third.time + peer.model.pto(), "the probe timeout after a sample of min_rtt plus ACK delay")
    return peer.model.describe()


@case(
    "ch/newreno/6",
    section=APP_LIMITED,
    title="NewReno: in congestion avoidance a window used only to 80% does not grow, though more than half is used",
    requirements=(
        "REC-5.2.1",
        "REC-5.4.2",
        "CONF-3.8.6",
    ),
)
def _(iut: Iut) -> str | None:
    flow = _newreno_after_a_loss(iut)
    # Congestion avoidance, held by flow control: 24000 bytes of credit per round trip, about half
    # the window, given just before the ACK of the previous 24000, so that the pacer still holds
    # some back then (not application-limited by §5.4.1).  The bytes in flight peak near 80% of
    # the window: more than the half slow start asks for, less than the window less two datagrams
    # congestion avoidance asks for (§5.4.2): the window keeps its size.
    for n in range(10):
        what = f"flow-control-limited round {n + 1} in congestion avoidance"
        old = [s.packet.pn for s in flow.unacked()]
        flow.peer.now = max(flow.peer.now, max(s.time for s in flow.unacked()) + flow.rtt - 0.0005)
        flow.grant(24_000)
        flow.ack(what, only=old, at=flow.peer.now + 0.0005)
        flow.fill(what, check=False)
    flow.history.append("then credit")
    flow.round("the first flight with credit after 10 flow-control-limited rounds in congestion avoidance")
    return f"{flow.controller}: {flow.describe()}"


def _black_hole(peer: ImpairedPeer, channel_id: int, what: str, amount: int = 2700) -> list[list[int]]:
    """The path starts dropping what is larger than BASE_PLPMTU; the IUT sends ``amount`` bytes.

    Nothing is acknowledged: each probe timeout is a batch of large packets lost (recovery.md
    §7.4.1).  After two the IUT keeps its path MTU (MAX_PROBES is 3, §7.2); at the third it
    falls back (§7.4.2).  Returns the sizes of the packets each of the three timeouts sent.
    """
    peer.path_mtu = BASE_PLPMTU
    peer.timer(peer.now + 0.1)  # a quiet moment: the pacer's bucket fills up
    start = len(peer.sent)
    peer.call("conn_send", channel_id=channel_id, data=payload(amount, seed=41), fin=False)
    # The pacer may hold packets back a moment.
    for _ in range(20):
        carried = sum(len(f.data) for s in peer.sent[start:] for f in s.packet.frames if isinstance(f, ch.Stream))
        if carried >= amount or peer.iut_timer is None or peer.iut_timer > peer.now + 0.05:
            break
        peer.timer(max(peer.now, peer.iut_timer))
    first = [s for s in peer.sent[start:] if s.ack_eliciting]
    expect(
        len(first) >= 2 and all(s.size > BASE_PLPMTU for s in first),
        f"internal: {what}: {amount} bytes left in packets of {[s.size for s in first]} bytes, not two or more "
        f"above {BASE_PLPMTU}",
    )
    timeouts: list[list[Sent]] = []
    for _ in range(20):
        if len(timeouts) == 3 or peer.iut_timer is None or peer.iut_timer > peer.now + 30:
            break
        before = len(peer.sent)
        peer.timer(max(peer.now, peer.iut_timer))
        sent = [s for s in peer.sent[before:] if s.ack_eliciting and not _is_probe(s.packet.frames)]
        if sent:
            timeouts.append(sent)
    sizes = [[s.size for s in batch] for batch in timeouts]
    expect(len(timeouts) == 3, f"{what}: only {len(timeouts)} probe timeouts with data sent: {sizes}")
    expect(
        max(sizes[1]) > BASE_PLPMTU,
        f"{what}: the probes of the second probe timeout are {sizes[1]} bytes: the IUT fell back to {BASE_PLPMTU} "
        f"after two suspicious batches, not MAX_PROBES (3); probes of each timeout {sizes}",
    )
    expect(
        max(sizes[2]) <= BASE_PLPMTU,
        f"{what}: the probes of the third probe timeout are {sizes[2]} bytes: no fallback to {BASE_PLPMTU} after "
        f"three suspicious batches; probes of each timeout {sizes}",
    )
    return sizes


def _large_path(iut: Iut) -> tuple[ImpairedPeer, int]:
    """A transfer on a path that carries everything: the IUT finds MAX_PLPMTU; its ``files`` channel."""
    peer = ImpairedPeer(iut, pmtu_probing=True, idle_timeout=120.0)
    state: dict[str, int] = {}
    _bulk(peer, 0.5, payload(30_000, seed=37), state, per_step=6000)
    found = max((s.size for s in peer.sent if s.delivered and not _is_probe(s.packet.frames)), default=0)
    expect(found > MAX_PLPMTU - 16, f"internal: on a path that carries everything the IUT's packets are {found} bytes")
    expect(not peer.lost, f"internal: packets lost before the path changed: {[s.packet.pn for s in peer.lost]}")
    return peer, state["channel"]


@case(
    "ch/blackhole/2",
    section="recovery.md §7.4",
    title="a black hole is declared at the third probe timeout that loses only large packets, not before",
    requirements=(
        "REC-7.2",
        "REC-7.4.1",
        "REC-7.4.2",
    ),
)
def _(iut: Iut) -> str | None:
    peer, channel_id = _large_path(iut)
    sizes = _black_hole(peer, channel_id, "a black hole")
    return f"probes of each timeout: {sizes} bytes"


@case(
    "ch/blackhole/4",
    section="recovery.md §7.4",
    title="after a fallback and a new search, a second black hole is again declared at the third probe timeout",
    requirements=(
        "REC-7.2",
        "REC-7.2.1",
        "REC-7.4.1",
        "REC-7.4.2",
    ),
)
def _(iut: Iut) -> str | None:
    peer, channel_id = _large_path(iut)
    first = _black_hole(peer, channel_id, "the first black hole")
    # The path carries everything again: the runner acknowledges what arrives, the IUT confirms
    # BASE_PLPMTU and finds MAX_PLPMTU again (§7.2); it has no data left to send in large packets,
    # so nothing large but its probe is acknowledged before the path drops large packets again.
    peer.path_mtu = None
    end = peer.now + 1.0
    for _ in range(200):
        peer.ack_all()
        if peer.iut_timer is None or peer.iut_timer > end:
            break
        peer.timer(max(peer.now, peer.iut_timer))
    peer.ack_all()
    probes = [s.size for s in peer.sent if _is_probe(s.packet.frames) and s.delivered and s.time > peer.now - 1.0]
    expect(MAX_PLPMTU in probes, f"internal: no {MAX_PLPMTU}-byte probe arrived after the fallback: {probes}")
    # More data than the window holds: the probes carry new data in full packets (no PING).
    second = _black_hole(peer, channel_id, "the second black hole", amount=60_000)
    return f"probes of each timeout: {first} bytes, then {second} bytes"


@case(
    "ch/pmtu/7",
    section="recovery.md §7.2",
    title="a search that ended below MAX_PLPMTU starts again with a MAX_PLPMTU probe 600 s later, not before",
    requirements=(
        "REC-7.2",
        "REC-7.2.1",
        "REC-7.3.1",
    ),
)
def _(iut: Iut) -> str | None:
    peer = ImpairedPeer(iut, path_mtu=1300, pmtu_probing=True, idle_timeout=2000.0)
    state: dict[str, int] = {}
    _bulk(peer, 2.0, payload(60_000, seed=43), state, per_step=3000)
    probes = [s for s in peer.sent if _is_probe(s.packet.frames)]
    expect(bool(probes), "internal: the IUT sent no PMTU probe in 2 s")
    last = probes[-1].time
    expect(last < peer.now - 1.0, f"internal: the search goes on at {peer.now:.3f} s (a probe at {last:.3f} s)")
    # SEARCH_COMPLETE below MAX_PLPMTU: PMTU_RAISE_TIMER (600 s) from the end of the search, at most
    # a round trip or a loss detection after the last probe left, then a new search (§7.2, §7.3.1).
    count = len(probes)
    for _ in range(50):
        if peer.iut_timer is None or peer.iut_timer > last + 600.0:
            break
        peer.timer(max(peer.now, peer.iut_timer))
    early = [s for s in peer.sent if _is_probe(s.packet.frames)][count:]
    expect(
        not early,
        f"a PMTU probe of {early[0].size if early else 0} bytes at {early[0].time if early else 0:.3f} s, less than "
        f"PMTU_RAISE_TIMER (600 s) after the search ended (its last probe left at {last:.3f} s)",
    )
    for _ in range(50):
        if peer.iut_timer is None or peer.iut_timer > last + 602.0:
            break
        peer.timer(max(peer.now, peer.iut_timer))
    again = [s for s in peer.sent if _is_probe(s.packet.frames)][count:]
    expect(
        bool(again),
        f"no PMTU probe by {last + 602.0:.3f} s: the search that ended at about {last:.3f} s, below "
        f"{MAX_PLPMTU} bytes, did not start again PMTU_RAISE_TIMER (600 s) later (next timer {peer.iut_timer})",
    )
    expect_eq(again[0].size, MAX_PLPMTU, "the size of the first probe of the new search")
    return f"the search ended at about {last:.3f} s; a probe of {again[0].size} bytes at {again[0].time:.3f} s"


@case(
    "ch/blackhole/3",
    section="recovery.md §7.4",
    title="a probe timeout while a short packet is in flight resets black hole detection: three more batches follow",
    requirements=(
        "REC-7.2",
        "REC-7.4.1",
        "REC-7.4.2",
    ),
)
def _(iut: Iut) -> str | None:
    peer = ImpairedPeer(iut, pmtu_probing=True, idle_timeout=120.0)
    state: dict[str, int] = {}
    _bulk(peer, 0.5, payload(30_000, seed=37), state, per_step=6000)
    found = max((s.size for s in peer.sent if s.delivered and not _is_probe(s.packet.frames)), default=0)
    expect(found > MAX_PLPMTU - 16, f"internal: on a path that carries everything the IUT's packets are {found} bytes")
    expect(not peer.lost, f"internal: packets lost before the path changed: {[s.packet.pn for s in peer.lost]}")
    peer.path_mtu = BASE_PLPMTU
    # Three packets: two large ones the path drops, and a short one it carries.
    peer.call("conn_send", channel_id=state["channel"], data=payload(3000, seed=41), fin=False)
    first = [s for s in peer.sent if s.time == peer.now and s.ack_eliciting]
    expect(
        len(first) == 3 and first[0].size > BASE_PLPMTU and first[1].size > BASE_PLPMTU and first[2].size <= 600,
        f"internal: 3000 bytes left in packets of {[s.size for s in first]} bytes, not two large and a short one",
    )
    rounds: list[tuple[float, list[int]]] = []

    def step() -> None:
        before = len(peer.sent)
        peer.timer(max(peer.now, peer.iut_timer or peer.now))
        sent = [s.size for s in peer.sent[before:] if s.ack_eliciting and not _is_probe(s.packet.frames)]
        if sent:
            rounds.append((peer.now, sent))

    # The first probe timeout: its batch holds the short packet (not lost, but in flight): no black hole
    # sign, the count starts again (§7.4.1).  Then the runner acknowledges the short packet.
    for _ in range(20):
        if rounds or peer.iut_timer is None or peer.iut_timer > peer.now + 30:
            break
        step()
    expect(bool(rounds), "internal: no probe timeout")
    peer.send(ack_of([first[2].packet.pn]), at=peer.now + 0.001)
    acked_at = peer.now
    # Three suspicious batches follow: the loss timer declares the two large packets lost, then two
    # probe timeouts find only large packets in flight.  The IUT falls back at the third, not before.
    for _ in range(40):
        if len(rounds) == 4 or peer.iut_timer is None or peer.iut_timer > peer.now + 30:
            break
        step()
    sizes = [sent for _, sent in rounds[1:]]
    described = ", ".join(f"{sent} at {at:.3f} s" for at, sent in rounds)
    expect(len(sizes) == 3, f"only {len(sizes)} sending timers after the ACK at {acked_at:.3f} s: {described}")
    expect(
        max(sizes[0]) > BASE_PLPMTU and max(sizes[1]) > BASE_PLPMTU,
        f"the IUT fell back to {BASE_PLPMTU} bytes before the third suspicious batch since a batch with a short "
        f"packet reset the count (the ACK of the short packet at {acked_at:.3f} s); packets sent by each timer: "
        f"{described}",
    )
    expect(
        max(sizes[2]) <= BASE_PLPMTU,
        f"no fallback to {BASE_PLPMTU} bytes at the third suspicious batch after the count was reset; packets sent "
        f"by each timer: {described}",
    )
    return f"packets sent by each timer: {described}"


@case(
    "ch/loss/6",
    section=LOSS_TIME,
    title="an ACK whose largest is below an earlier ACK's does not lower largest_acked: the loss timer still fires",
    requirements=(
        "CH-6.3",
        "REC-3.2.3",
        "REC-4.2.1",
        "REC-4.2.2",
    ),
)
def _(iut: Iut) -> str | None:
    peer, channel_id, lost, others = _lossy_transfer(iut)
    near = [s.packet.pn for s in others if s.packet.pn <= lost.packet.pn + 2]
    start = len(peer.sent)
    peer.ack_pns(peer.acked_pns | set(near), at=1.05)
    # A reordered ACK frame: it repeats an old range only, so its largest is below the largest
    # acknowledged (§3.2: largest_acked only rises), and acknowledges nothing new.
    old = min(peer.acked_pns & {p.pn for p in peer.received})
    reply = peer.send(ack_of([old]), at=1.06)
    expect(reply.close is None, f"the IUT closed the session on an ACK of packet {old} alone: {reply.close}")
    due = lost.time + peer.model.loss_delay()
    sent = expect_fires(
        peer,
        due,
        f"packet {lost.packet.pn}, below the largest acknowledged {max(near)}, lost by the time threshold after a "
        f"later ACK frame of packet {old} alone",
        since=start,
    )
    expect(
        _resends(sent, channel_id, lost),
        f"the loss timer fired at {peer.now:.4f} s but the packets sent do not resend packet {lost.packet.pn}'s "
        f"data: {short([s.packet.frames for s in sent], 200)}",
    )
    return f"packet {lost.packet.pn} resent at {peer.now:.4f} s, {(peer.now - lost.time) * 1000:.1f} ms after it left"


@case(
    "ch/newreno/7",
    section=APP_LIMITED,
    title="NewReno: in congestion avoidance a window used to within two datagrams (not one) grows",
    requirements=(
        "REC-5.2.1",
        "REC-5.4.2",
        "CONF-3.8.6",
    ),
)
def _(iut: Iut) -> str | None:
    flow = _newreno_after_a_loss(iut)
    # Congestion avoidance, held by flow control as in ch/newreno/6, but with credit that brings
    # the bytes in flight (the last flight and what the pacer lets out before the ACK) to the
    # window less 1.5 datagrams: within two datagrams of it, so the window grows (§5.4.2), by
    # one datagram per window acknowledged (§5.2).  ``burst`` is what leaves before the ACK
    # beyond the credit's last flight, as seen in the previous round.
    burst = 12 * BASE_DATAGRAM
    for n in range(10):
        what = f"flow-control-limited round {n + 1} in congestion avoidance, the window used to within 2 datagrams"
        old = [s.packet.pn for s in flow.unacked()]
        flow.peer.now = max(flow.peer.now, max(s.time for s in flow.unacked()) + flow.rtt - 0.0005)
        credit = int(flow.low()) - 3 * BASE_DATAGRAM // 2 - burst
        flow.grant(credit)
        burst = flow.peak - credit
        flow.ack(what, only=old, at=flow.peer.now + 0.0005)
        flow.fill(what, check=False)
    flow.history.append("then credit")
    flow.round("the first flight with credit after 10 rounds that used the window to within 2 datagrams")
    return f"{flow.controller}: {flow.describe()}"


@case(
    "ch/rtt/2",
    section=RTT,
    title="an ACK takes an RTT sample at packet numbers above 256 as below",
    requirements=(
        "REC-2.2",
        "REC-2.8",
        "REC-4.3.1",
    ),
)
def _(iut: Iut) -> str | None:
    peer = LatePeer(iut)
    first = ping(peer, 0.5)
    peer.ack_pns({p.pn for p in peer.received}, at=first.time + 0.125)
    # 300 PINGs at once take the IUT's packet numbers past 256 (small integers are special in some
    # languages); their ACK 250 ms later is a sample like any other.
    peer.now = 1.0
    for _ in range(300):
        peer.call("conn_ping")
    largest = max(p.pn for p in peer.received)
    expect(largest > 300, f"internal: 300 PINGs took the IUT's packet numbers only to {largest}")
    peer.ack_pns({p.pn for p in peer.received}, at=1.25)
    expect_eq(len(peer.model.samples), 2, "internal: RTT samples taken")
    last = ping(peer, 1.5)
    expect_fires(peer, last.time + peer.model.pto(), f"the probe timeout after a sample from packet {largest}")
    return peer.model.describe()


@case(
    "ch/pmtu/8",
    section="recovery.md §7.2",
    title="when BASE_PLPMTU probes are lost MAX_PROBES times, the IUT waits PROBE_TIMER (15 s), then probes again",
    requirements=(
        "REC-7.2",
        "REC-7.2.1",
        "REC-7.3.3",
    ),
)
def _(iut: Iut) -> str | None:
    # A path that carries less than BASE_PLPMTU: the IUT's 1200-byte probes are lost; its PINGs get through
    # and are acknowledged, so loss detection finds each probe lost (§7.1.4).
    peer = ImpairedPeer(iut, path_mtu=BASE_PLPMTU - 1, pmtu_probing=True, idle_timeout=120.0)

    def probes() -> list[Sent]:
        return [s for s in peer.sent if _is_probe(s.packet.frames) and s.size == BASE_PLPMTU]

    def step(at: float) -> None:
        peer.now = at
        peer.call("conn_ping")
        peer.ack_all()
        if peer.iut_timer is not None and peer.iut_timer <= at:
            peer.timer(at)
            peer.ack_all()

    at = 0.1
    while len(probes()) < 3 and at < 10.0:
        step(at)
        at += 0.05
    sent = probes()
    expect(len(sent) == 3, f"internal: {len(sent)} probes of {BASE_PLPMTU} bytes by {at:.2f} s, not 3")
    third = sent[-1].time
    # Keep the connection busy past PROBE_TIMER: no probe in ERROR, then BASE again (§7.2).
    while at < third + 15.0 + 1.0:
        step(at)
        at += 0.25
        later = probes()[3:]
        if later:
            break
    later = probes()[3:]
    expect(
        bool(later),
        f"no {BASE_PLPMTU}-byte probe by {at:.2f} s, more than PROBE_TIMER (15 s) after the third lost one at "
        f"{third:.3f} s",
    )
    expect(
        later[0].time >= third + 15.0,
        f"a {BASE_PLPMTU}-byte probe at {later[0].time:.3f} s, less than PROBE_TIMER (15 s) after the third lost "
        f"one at {third:.3f} s (MAX_PROBES losses: ERROR, §7.2)",
    )
    # Back in BASE, each probe is again sent until lost MAX_PROBES times (§7.3.3).
    at = later[0].time + 0.05
    while len(probes()) < 6 and at < later[0].time + 2.0:
        step(at)
        at += 0.05
    again = [round(s.time, 3) for s in probes()[3:]]
    expect(
        len(again) >= 3,
        f"after PROBE_TIMER the IUT sent {BASE_PLPMTU}-byte probes at {again} s only, not MAX_PROBES (3) before "
        f"giving up again (probes at {[round(s.time, 3) for s in probes()]} s)",
    )
    return f"probes at {[round(s.time, 3) for s in probes()]} s"


@case(
    "ch/rtt/3",
    section=RTT,
    title="an ACK that newly acknowledges an older packet but not its largest gives no RTT sample",
    requirements=(
        "REC-2.2",
        "REC-3.2.3",
        "REC-4.3.1",
    ),
)
def _(iut: Iut) -> str | None:
    peer = LatePeer(iut)
    older = ping(peer, 0.5)
    newer = ping(peer, 0.501)
    # The first sample, 100 ms, from an ACK of everything but the older PING (which is not yet lost:
    # 101 ms old, less than 9/8 of the sample, and only one packet number below, §4).
    peer.ack_pns({p.pn for p in peer.received} - {older.packet.pn}, at=newer.time + 0.1)
    # Half a second later (the runner runs no timer of the IUT's in between), the older PING is
    # acknowledged too: the ACK's largest, the newer PING, was acknowledged before, so no sample
    # (§2); the older PING would give one of 700 ms.
    peer.ack_pns(peer.acked_pns | {older.packet.pn}, at=1.2)
    expect_eq(len(peer.model.samples), 1, "internal: RTT samples taken")
    last = ping(peer, 1.3)
    expect_fires(
        peer,
        last.time + peer.model.pto(),
        f"the probe timeout after an ACK whose only new packet, {older.packet.pn}, is below its largest "
        f"{newer.packet.pn}",
    )
    return peer.model.describe()


def _newreno_after_a_loss(iut: Iut) -> Flow:
    """ch/newreno/6 and /7: NewReno held by flow control, two slow-start rounds, then a loss by
    the timer: the next rounds are congestion avoidance."""
    flow = Flow(iut, "newreno", rtt=SHORT_RTT, limit_credit=True)
    flow.grant(INITIAL_WINDOW + 2 * BASE_DATAGRAM)
    flow.supply()
    flow.fill("the initial window (recovery.md §5.1)")
    for n in range(2):
        flow.round(f"slow start, round {n + 1}")
    flow.timer_loss("a congestion event (in slow start)")
    return flow
