"""Cases for the requirements of spec/recovery.md that no earlier case tested (spec/conformance.md §6).

Most of recovery.md is the sender's own arithmetic, but three quantities of it show on the
wire to the digit: *when* the probe timer fires (§4.3: `smoothed_rtt + max(4 * rttvar,
kGranularity) + max_ack_delay`, doubled per probe), *when* the loss timer fires (§4.2:
`9/8 * max(smoothed_rtt, latest_rtt)` after the packet left) and *which* packet the ACK of
a higher one makes lost (§4.1).  The runner controls every RTT sample the IUT can take (it
chooses when it acknowledges, and the `ack_delay` it reports), so it keeps its own RTT
estimate (``RttModel``, recovery.md §2 written out) and checks that the IUT's timers fire
when that estimate says: not 1 ms earlier, and by 1 ms later.  A timer that fires at the
wrong moment means a wrong RTT estimate, a wrong formula or a wrong backoff; the detail
says which step of the estimate went wrong.

In the timing cases the runner acknowledges nothing of the handshake at once (``LatePeer``):
the IUT's first RTT sample is then one the case chose.  Nothing in these cases depends on the IUT's
congestion controller (recovery.md §5 allows several; tests/conformance/test_req_recovery.py
runs them against the reference's NewReno and CUBIC too): the few packets in flight fit any
window, and ``ch/cc/3`` checks only the bound every allowed controller keeps after a loss.
Most run through ``impaired.ImpairedPeer`` with chosen drops, a blackhole or a path MTU; none
uses randomness, so none needs a seed.

Ids: ``ch/rec/`` RTT estimation and ACK processing, ``ch/pto/`` probe timeout, ``ch/loss/``
loss detection, ``ch/cc/`` congestion response, ``ch/pmtu/`` path MTU discovery, ``ch/idle/``
keepalives and the idle timer (channels.md §9, whose rules these timers share).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable
from typing import Any

from p2pos.proto.channels import frames as ch
from p2pos.proto.handshake.noise import Pattern

from .cases_channels import MAX_ACK_DELAY, QUIET, SERVICES, Peer, Reply, ack_of, acked
from .checks import CaseFailed, expect, short
from .impaired import ImpairedPeer, Sent
from .iut import Iut
from .reference import establish
from .registry import case

#: recovery.md §2.
INITIAL_RTT = 0.333
GRANULARITY = 0.001
#: How far a timer may be from the moment recovery.md gives it: the timer granularity.
TOLERANCE = 0.001
RTT, LOSS_TIME, PTO = "recovery.md §2", "recovery.md §4.2", "recovery.md §4.3"


def payload(n: int, seed: int = 1) -> bytes:
    return bytes((seed * 31 + i * 7) % 251 for i in range(n))


@dataclasses.dataclass(slots=True)
class RttModel:
    """recovery.md §2 as the runner computes it from the ACKs it sends."""

    smoothed_rtt: float = INITIAL_RTT
    rttvar: float = INITIAL_RTT / 2
    min_rtt: float | None = None
    latest_rtt: float = 0.0
    samples: list[str] = dataclasses.field(default_factory=list)

    def sample(self, latest_rtt: float, ack_delay: float) -> None:
        self.samples.append(f"{latest_rtt * 1000:.1f} ms (ACK delay {ack_delay * 1000:.1f} ms)")
        self.latest_rtt = latest_rtt
        if self.min_rtt is None:  # the first sample: the ACK delay is ignored
            self.min_rtt = self.smoothed_rtt = latest_rtt
            self.rttvar = latest_rtt / 2
        else:
            self.min_rtt = min(self.min_rtt, latest_rtt)
            ack_delay = min(ack_delay, MAX_ACK_DELAY)
            adjusted = latest_rtt - ack_delay if latest_rtt - ack_delay >= self.min_rtt else latest_rtt
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.smoothed_rtt - adjusted)
            self.smoothed_rtt = 0.875 * self.smoothed_rtt + 0.125 * adjusted

    def pto(self, pto_count: int = 0) -> float:
        """The probe timeout of recovery.md §4.3, backed off ``pto_count`` times."""
        return (self.smoothed_rtt + max(4 * self.rttvar, GRANULARITY) + MAX_ACK_DELAY) * (1 << pto_count)

    def loss_delay(self) -> float:
        return max(9 / 8 * max(self.smoothed_rtt, self.latest_rtt), GRANULARITY)

    def describe(self) -> str:
        return (
            f"samples {self.samples or 'none'} give smoothed_rtt {self.smoothed_rtt * 1000:.2f} ms, "
            f"rttvar {self.rttvar * 1000:.2f} ms, PTO {self.pto() * 1000:.2f} ms"
        )


class LatePeer(ImpairedPeer):
    """An ``ImpairedPeer`` that does not acknowledge the IUT's first packets at once.

    So the IUT has no RTT sample until the case gives it one (with ``ack``), and the runner
    follows the IUT's estimate in ``model``.
    """

    def __init__(self, iut: Iut, **kwargs: Any) -> None:
        self._starting = True
        super().__init__(iut, idle_timeout=120.0, **kwargs)
        self._starting = False
        self.model = RttModel()
        self.acked_pns: set[int] = set()
        #: The IUT's packets of the handshake's last flight (sent at 0.0): not in ``sent``.
        self.early = {p.pn for p in self.received}

    def ack(self) -> Reply:
        if self._starting:
            return Reply({"events": []}, [])
        return super().ack()

    def sent_at(self, pn: int) -> float:
        return next((s.time for s in self.sent if s.packet.pn == pn), 0.0)

    def eliciting(self, pn: int) -> bool:
        if pn in self.early:
            return any(_eliciting(p.frames) for p in self.received if p.pn == pn)
        return any(s.ack_eliciting for s in self.sent if s.packet.pn == pn)

    def ack_pns(self, pns: Iterable[int], *, at: float, delay: float = 0.0) -> Reply:
        """An ACK of ``pns`` at ``at`` reporting ``delay`` seconds; the model takes the sample the IUT must."""
        wanted = set(pns)
        newly = wanted - self.acked_pns
        largest = max(wanted)
        if largest in newly and any(self.eliciting(pn) for pn in newly):
            self.model.sample(at - self.sent_at(largest), delay)
        self.acked_pns |= wanted
        reply = self.send(ack_of(wanted, delay=round(delay * 1_000_000)), at=at)
        expect(reply.close is None, f"the IUT closed the session on an ACK of {sorted(wanted)}: {reply.close}")
        return reply

    def ack_everything(self, *, at: float, delay: float = 0.0, but: Iterable[int] = ()) -> Reply:
        return self.ack_pns({p.pn for p in self.received} - set(but), at=at, delay=delay)

    def eliciting_since(self, index: int) -> list[Sent]:
        return [s for s in self.sent[index:] if s.ack_eliciting]


def _eliciting(frames: list[ch.Frame]) -> bool:
    return any(not isinstance(f, ch.Ack | ch.Padding) for f in frames)


def expect_fires(peer: LatePeer, at: float, what: str, *, since: int | None = None) -> list[Sent]:
    """The IUT sends nothing ack-eliciting before ``at`` (less the tolerance), and does by ``at`` plus it.

    The runner runs the IUT's timers as they come, then at ``at - TOLERANCE`` and at ``at +
    TOLERANCE``; returns the ack-eliciting packets sent at the last.  ``since``: the index in
    ``peer.sent`` from which packets count as early (default: from now on).
    """
    start = len(peer.sent) if since is None else since
    early = at - TOLERANCE
    for _ in range(50):
        if peer.iut_timer is None or peer.iut_timer >= early:
            break
        peer.timer(max(peer.now, peer.iut_timer))
    peer.timer(max(peer.now, early))
    sent = peer.eliciting_since(start)
    expect(
        not sent,
        f"{what}: the IUT sent packet {sent[0].packet.pn if sent else None} at {peer.now:.4f} s, before "
        f"{at:.4f} s ({peer.model.describe()})",
    )
    before = len(peer.sent)
    reply = peer.timer(at + TOLERANCE)
    expect(reply.close is None, f"{what}: the IUT closed the session: {reply.close}")
    sent = peer.eliciting_since(before)
    expect(
        bool(sent),
        f"{what}: nothing ack-eliciting left by {at + TOLERANCE:.4f} s, {TOLERANCE * 1000:.0f} ms after it was due "
        f"(next timer {peer.iut_timer}; {peer.model.describe()})",
    )
    return sent


def ping(peer: LatePeer, at: float) -> Sent:
    """The IUT sends a PING at ``at`` (``conn_ping``); returns its packet."""
    peer.now = at
    before = len(peer.sent)
    peer.call("conn_ping")
    sent = peer.eliciting_since(before)
    expect(len(sent) == 1, f"conn_ping at {at} s sent {len(sent)} ack-eliciting packets, not one")
    return sent[0]


def probe_then_ack(peer: LatePeer, at: float, rtt: float, delay: float, what: str) -> None:
    """A PING at ``at``; its probe timeout must fire when the model says; then an ACK of both.

    The ACK leaves ``rtt`` after the probes, reporting ``delay``: it is the IUT's next sample.
    """
    sent = ping(peer, at)
    probes = expect_fires(peer, sent.time + peer.model.pto(), what)
    peer.ack_everything(at=probes[-1].time + rtt, delay=delay)


# -- RTT estimation (recovery.md §2) and the probe timeout (§4.3) ----------------------------------

#: ch/rec/1: (round trip, reported ACK delay) of each sample, each testing one step of §2:
STEPS = (
    (0.100, 0.050),  # the first sample: min_rtt, smoothed_rtt, rttvar from it; the ACK delay ignored
    (0.300, 0.100),  # an ACK delay above max_ack_delay is capped at 25 ms (0.275 s, not 0.2 s)
    (0.120, 0.025),  # 0.12 - 0.025 is below min_rtt: the sample is taken whole
    (0.200, 0.015),  # 15000 microseconds are 15 ms: 0.185 s
    (0.090, 0.020),  # a new min_rtt, not adjusted for the ACK delay: 0.09 s, and the sample too
)


@case(
    "ch/rec/1",
    section=RTT,
    title="the probe timer fires when smoothed_rtt and rttvar of the runner's samples say, ACK delay as §2",
    requirements=(
        "CH-4.12",
        "CH-9.1.2",
        "REC-2.1",
        "REC-2.3",
        "REC-2.4",
        "REC-2.5",
        "REC-2.6",
        "REC-2.7",
        "REC-2.8",
        "REC-4.3.1",
        "REC-4.3.2",
    ),
)
def _(iut: Iut) -> str | None:
    peer = LatePeer(iut)
    # Before any sample: kInitialRtt 0.333 s, rttvar half that, so the first PTO is 1.024 s.
    probe_then_ack(peer, 0.0, *STEPS[0], what="the first probe timeout, before any RTT sample")
    at = peer.now + 0.05
    for n, (rtt, delay) in enumerate(STEPS[1:], start=1):
        probe_then_ack(peer, at, rtt, delay, what=f"the probe timeout after sample {n}")
        at = peer.now + 0.05
    ping_sent = ping(peer, at)
    expect_fires(peer, ping_sent.time + peer.model.pto(), f"the probe timeout after sample {len(STEPS)}")
    return peer.model.describe()


@case(
    "ch/rec/2",
    section=RTT,
    title="an ACK of nothing new, or of only an ACK-only packet, gives no RTT sample",
    requirements=(
        "CH-5.3.2",
        "REC-2.2",
        "REC-3.1.1",
        "REC-3.2.3",
    ),
)
def _(iut: Iut) -> str | None:
    peer = LatePeer(iut)
    first = ping(peer, 0.0)
    peer.ack_everything(at=0.1)  # the first sample: 100 ms
    # The runner's PING makes the IUT send an ACK-only packet (channels.md §4).
    peer.send(ch.Ping(), at=0.2)
    for _ in range(10):
        if any(not s.ack_eliciting for s in peer.sent) or peer.iut_timer is None or peer.iut_timer > 0.5:
            break
        peer.timer(max(peer.now, peer.iut_timer))
    ack_only = [s for s in peer.sent if not s.ack_eliciting]
    expect(bool(ack_only), f"the IUT did not acknowledge the runner's PING: {short(peer.sent, 200)}")
    # Two seconds later: an ACK whose only new packet is that ACK-only one, then the same ACK again.
    # Neither may give a sample (2 s, far from the 100 ms of the model).
    peer.ack_everything(at=2.2)
    peer.ack_everything(at=2.3)
    expect(len(peer.model.samples) == 1, f"internal: {peer.model.samples}")
    sent = ping(peer, 2.4)
    expect_fires(
        peer,
        sent.time + peer.model.pto(),
        f"the probe timeout after ACKs of only ACK-only packet {ack_only[0].packet.pn} and of nothing new "
        f"(first PING {first.packet.pn})",
    )
    return peer.model.describe()


@case(
    "ch/pto/2",
    section=PTO,
    title="the probe timeout doubles with each probe, and only an ACK of something new resets it",
    requirements=(
        "CH-5.4.1",
        "REC-3.2.3",
        "REC-4.3.1",
        "REC-4.3.2",
        "REC-4.3.5",
    ),
)
def _(iut: Iut) -> str | None:
    peer = LatePeer(iut)
    probe_then_ack(peer, 0.0, 0.1, 0.0, what="the first probe timeout")
    first = ping(peer, peer.now + 0.05)
    probes = expect_fires(peer, first.time + peer.model.pto(0), "the first probe timeout")
    probes = expect_fires(peer, probes[-1].time + peer.model.pto(1), "the second probe timeout (doubled)")
    # An ACK that acknowledges nothing new changes nothing: the third timeout is four times the first.
    last = probes[-1].time
    peer.ack_pns(peer.acked_pns, at=last + 0.05)
    probes = expect_fires(
        peer, last + peer.model.pto(2), "the third probe timeout, after an ACK of nothing new (quadrupled)"
    )
    # An ACK of the PING (not of the probes) is new: the backoff starts again from 1.
    last = probes[-1].time
    peer.ack_pns(peer.acked_pns | {first.packet.pn}, at=last + 0.05)
    expect_fires(peer, last + peer.model.pto(0), "the probe timeout after an ACK of the PING (backoff reset)")
    return peer.model.describe()


def _blackholed_transfer(iut: Iut, size: int) -> tuple[ImpairedPeer, int, list[Sent]]:
    """The IUT sends ``size`` bytes (within its initial window) on a channel it opened; all of them are lost."""
    peer = ImpairedPeer(iut, idle_timeout=120.0)
    reply = peer.call("conn_open", service="files", kind="stream")
    channel_id = int(reply.answer["channel_id"])
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=1 << 20), at=peer.now + 0.01)
    peer.ack_all()
    peer.now += 0.01
    start = len(peer.sent)
    peer.blackhole = True
    peer.call("conn_send", channel_id=channel_id, data=payload(size, seed=19), fin=False)
    carrying = [s for s in peer.sent[start:] if s.carries_stream()]
    expect(len(carrying) >= 2, f"internal: the {size} bytes left in {len(carrying)} packets")
    return peer, channel_id, carrying


def _next_probes(peer: ImpairedPeer) -> list[Sent]:
    """Run the IUT's timers until one sends something ack-eliciting (a probe timeout); returns those packets."""
    for _ in range(20):
        if peer.iut_timer is None:
            break
        before = len(peer.sent)
        reply = peer.timer(max(peer.now, peer.iut_timer))
        expect(reply.close is None, f"the IUT closed the session at {peer.now:.3f} s: {reply.close}")
        probes = [s for s in peer.sent[before:] if s.ack_eliciting]
        if probes:
            return probes
    raise CaseFailed(f"no probe timeout fired with packets lost (timer {peer.iut_timer})")


@case(
    "ch/pto/3",
    section=PTO,
    title="with nothing new to send, a probe carries the oldest unacknowledged stream data",
    requirements=(
        "CH-5.4.2",
        "REC-4.3.4",
    ),
)
def _(iut: Iut) -> str | None:
    peer, channel_id, carrying = _blackholed_transfer(iut, 3000)
    oldest = min(f.offset for s in carrying for f in s.packet.frames if isinstance(f, ch.Stream))
    probe = _next_probes(peer)[0]
    frames = [f for f in probe.packet.frames if isinstance(f, ch.Stream) and f.channel_id == channel_id]
    expect(
        any(f.offset <= oldest < f.offset + len(f.data) for f in frames),
        f"the first probe (packet {probe.packet.pn} at {peer.now:.3f} s) does not carry the oldest "
        f"unacknowledged byte, offset {oldest} of channel {channel_id}: {short(probe.packet.frames, 200)}",
    )
    return f"probe {probe.packet.pn} at {peer.now:.3f} s resends offset {oldest}"


@case(
    "ch/pto/4",
    section=PTO,
    title="a probe timeout sends one or two packets and declares nothing lost, however many are in flight",
    requirements=(
        "CH-5.4.1",
        "CH-5.4.4",
        "REC-4.3.2",
        "REC-4.3.3",
    ),
)
def _(iut: Iut) -> str | None:
    # Six packets in flight, all lost; the IUT has nothing new to send.  Were they declared lost
    # at the timeout, their data would be queued again and leave with the probes (channels.md §6).
    peer, _channel_id, carrying = _blackholed_transfer(iut, 7000)
    counts = []
    for n in range(3):
        probes = _next_probes(peer)
        counts.append(len(probes))
        expect(
            1 <= len(probes) <= 2,
            f"probe timeout {n + 1} at {peer.now:.3f} s sent {len(probes)} ack-eliciting packets, not one or two "
            f"({len(carrying)} STREAM packets in flight, none acknowledged): {short([p.packet.pn for p in probes])}",
        )
    return f"{len(carrying)} packets lost; probes per timeout {counts}"


# -- loss detection (recovery.md §4.1, §4.2) ----------------------------------------------------------


def _lossy_transfer(iut: Iut) -> tuple[LatePeer, int, Sent, list[Sent]]:
    """Two samples of 300 ms, then the IUT sends 4000 bytes at 1.0 s; its first STREAM packet is lost.

    Returns the peer, the channel, the lost packet and the other STREAM packets.
    """
    peer = LatePeer(iut, drop_data=(1,))
    ping(peer, 0.0)
    peer.ack_everything(at=0.3)
    ping(peer, 0.35)
    peer.ack_everything(at=0.65)
    peer.now = 0.7
    reply = peer.call("conn_open", service="files", kind="stream")
    channel_id = int(reply.answer["channel_id"])
    peer.ack_everything(at=1.0)
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=1 << 20), at=1.0)
    start = len(peer.sent)
    peer.call("conn_send", channel_id=channel_id, data=payload(4000, seed=23), fin=False)
    carrying = [s for s in peer.sent[start:] if s.carries_stream()]
    expect(len(carrying) >= 4, f"internal: the IUT sent 4000 bytes in {len(carrying)} packets, not 4 or more")
    expect(carrying[0].packet.pn + 3 <= carrying[-1].packet.pn, f"internal: packet numbers {short(carrying)}")
    return peer, channel_id, carrying[0], carrying[1:]


def _resends(sent: Iterable[Sent], channel_id: int, lost: Sent) -> bool:
    """Whether any of ``sent`` carries the first byte the lost packet carried on ``channel_id``."""
    first = min(f.offset for f in lost.packet.frames if isinstance(f, ch.Stream) and f.channel_id == channel_id)
    return any(
        isinstance(f, ch.Stream) and f.channel_id == channel_id and f.offset <= first < f.offset + max(len(f.data), 1)
        for s in sent
        for f in s.packet.frames
    )


@case(
    "ch/loss/3",
    section="recovery.md §4.1",
    title="the ACK of a packet 3 numbers above a lost one makes it lost at once: its data leaves before any timer",
    requirements=(
        "CH-6.3",
        "REC-3.1.1",
        "REC-4.1.1",
    ),
)
def _(iut: Iut) -> str | None:
    peer, channel_id, lost, others = _lossy_transfer(iut)
    above = [s.packet.pn for s in others if s.packet.pn >= lost.packet.pn + 3]
    at = 1.05
    start = len(peer.sent)
    peer.ack_everything(at=at, but=[lost.packet.pn])
    # The time threshold (§4.2) would make the packet lost only at this moment, and the probe
    # timeout later still: a resend before it is the packet threshold's.
    deadline = lost.time + peer.model.loss_delay() - TOLERANCE
    for _ in range(50):
        if _resends(peer.sent[start:], channel_id, lost) or peer.iut_timer is None or peer.iut_timer >= deadline:
            break
        peer.timer(max(peer.now, peer.iut_timer))
    expect(
        _resends(peer.sent[start:], channel_id, lost),
        f"packet {lost.packet.pn} (lost) was not sent again after the ACK of packets {above} at {at} s, before "
        f"{deadline:.4f} s when only the time threshold would find it ({peer.model.describe()})",
    )
    return f"packet {lost.packet.pn} resent at {peer.now:.4f} s after the ACK of {above}"


@case(
    "ch/loss/4",
    section=LOSS_TIME,
    title="a lost packet less than 3 numbers below the largest acknowledged is resent when 9/8 RTT has passed",
    requirements=(
        "CH-6.3",
        "REC-4.1.1",
        "REC-4.2.1",
        "REC-4.2.2",
    ),
)
def _(iut: Iut) -> str | None:
    peer, channel_id, lost, others = _lossy_transfer(iut)
    near = [s.packet.pn for s in others if s.packet.pn <= lost.packet.pn + 2]
    start = len(peer.sent)
    peer.ack_pns(peer.acked_pns | set(near), at=1.05)
    due = lost.time + peer.model.loss_delay()
    sent = expect_fires(
        peer,
        due,
        f"packet {lost.packet.pn}, below the largest acknowledged {max(near)}, lost by the time threshold",
        since=start,
    )
    expect(
        _resends(sent, channel_id, lost),
        f"the loss timer fired at {peer.now:.4f} s but the packets sent do not resend packet {lost.packet.pn}'s "
        f"data: {short([s.packet.frames for s in sent], 200)}",
    )
    return f"packet {lost.packet.pn} resent at {peer.now:.4f} s, {(peer.now - lost.time) * 1000:.1f} ms after it left"


@case(
    "ch/loss/5",
    section="recovery.md §3.1",
    title="a late ACK of a packet already declared lost changes nothing: no RTT sample, the probe timer stays",
    requirements=(
        "CH-6.7",
        "REC-3.1.2",
    ),
)
def _(iut: Iut) -> str | None:
    peer, _channel_id, lost, _others = _lossy_transfer(iut)
    start = len(peer.sent)
    peer.ack_everything(at=1.05, but=[lost.packet.pn])  # the packet threshold makes it lost
    resent = peer.eliciting_since(start)
    expect(bool(resent), f"internal: packet {lost.packet.pn} was not resent at once ({peer.model.describe()})")
    # It arrives after all: the runner acknowledges it alone, 150 ms later.  The IUT forgot it
    # when it declared it lost (§3.1): the ACK acknowledges nothing new, so no sample (§3.2).
    peer.acked_pns.add(lost.packet.pn)
    reply = peer.send(ack_of([lost.packet.pn]), at=1.2)
    expect(reply.close is None, f"the IUT closed the session on a late ACK of lost packet {lost.packet.pn}")
    sent = expect_fires(
        peer,
        resent[-1].time + peer.model.pto(),
        f"the probe timeout of the resent data after a late ACK of lost packet {lost.packet.pn} (no sample from it)",
    )
    return f"late ACK of packet {lost.packet.pn} ignored; probe {sent[0].packet.pn} at {peer.now:.4f} s"


# -- path MTU discovery (recovery.md §7) ---------------------------------------------------------------

#: recovery.md §7: the constants at their defaults.
BASE_PLPMTU, MAX_PLPMTU, MAX_PROBES, SEARCH_GRANULARITY = 1200, 1452, 3, 16


def _is_probe(frames: list[ch.Frame]) -> bool:
    """A PMTU probe: a PING and PADDING, nothing else (recovery.md §7.1)."""
    return any(isinstance(f, ch.Ping) for f in frames) and all(isinstance(f, ch.Ping | ch.Padding) for f in frames)


def _bulk(
    peer: ImpairedPeer,
    until: float,
    data: bytes,
    state: dict[str, int],
    *,
    per_step: int,
    acks: list[tuple[float, int]] | None = None,
) -> None:
    """The IUT sends ``data`` on its ``files`` channel, ``per_step`` bytes every 20 ms, until ``until``.

    The runner acknowledges 20 ms later.  So the IUT always has packets to send, whatever its
    controller, and the transfer stays within the runner's connection credit (1 MiB, flow.md §3),
    which it never raises.  ``acks`` collects the time and the largest packet number of each ACK.
    """
    if "channel" not in state:
        reply = peer.call("conn_open", service="files", kind="stream")
        state["channel"] = int(reply.answer["channel_id"])
        state["offered"] = 0
        peer.send(ch.Accept(channel_id=state["channel"], initial_max_data=1 << 24), at=peer.now + 0.01)
    while peer.now < until:
        if state["offered"] < len(data):
            chunk = data[state["offered"] : state["offered"] + per_step]
            answer = peer.call("conn_send", channel_id=state["channel"], data=chunk, fin=False)
            state["offered"] += int(answer.answer.get("accepted", 0))
        peer.run(peer.now + 0.02, auto_ack=False)
        # An ACK of what arrived since the last one (earlier ranges need not be repeated).
        fresh = [p.pn for p in peer.received[state.get("acked", 0) :]]
        state["acked"] = len(peer.received)
        if fresh:
            if acks is not None:
                acks.append((peer.now, max(fresh)))
            reply = peer.send(ack_of(fresh))
            expect(reply.close is None, f"the IUT closed the session at {peer.now:.3f} s: {reply.close}")


def _probe_sizes(sent: Iterable[Sent]) -> list[int]:
    """The sizes of the IUT's probes above BASE_PLPMTU, in the order it first sent each."""
    sizes: list[int] = []
    for s in sent:
        if s.size > BASE_PLPMTU and _is_probe(s.packet.frames) and s.size not in sizes:
            sizes.append(s.size)
    return sizes


@case(
    "ch/pmtu/2",
    section="recovery.md §7.3",
    title="on a 1300-byte path the search probes MAX_PLPMTU first, then halves, and settles on the largest size found",
    requirements=(
        "CH-5.5.1",
        "REC-7.1",
        "REC-7.2",
        "REC-7.1.3",
        "REC-7.1.4",
        "REC-7.2.1",
        "REC-7.3.1",
        "REC-7.3.2",
        "REC-7.3.3",
        "REC-7.3.4",
    ),
)
def _(iut: Iut) -> str | None:
    mtu = 1300
    peer = ImpairedPeer(iut, path_mtu=mtu, pmtu_probing=True, idle_timeout=120.0)
    # The runner acknowledged the IUT's first packets at once (``Peer``), at 0.
    acks = [(0.0, max(p.pn for p in peer.received))] if peer.received else []
    _bulk(peer, 6.0, payload(900_000, seed=29), {}, per_step=3000, acks=acks)
    # At most one probe outstanding (§7.1): when a probe leaves, every earlier one has been
    # acknowledged, or a later packet has (so that loss detection may have declared it lost).
    probes = [s for s in peer.sent if _is_probe(s.packet.frames)]
    for earlier, later in itertools.pairwise(probes):
        expect(
            any(earlier.packet.pn <= largest and t <= later.time for t, largest in acks),
            f"probe {later.packet.pn} ({later.size} bytes) left at {later.time:.3f} s while probe "
            f"{earlier.packet.pn} ({earlier.size} bytes) was still outstanding: nothing from it on was acknowledged",
        )
    got = _probe_sizes(peer.sent)
    # recovery.md §7.3, followed with the runner's knowledge of the path: each size is
    # confirmed if it fits, else failed (after MAX_PROBES losses).
    expected: list[int] = []
    lower, upper = BASE_PLPMTU, MAX_PLPMTU
    while upper - lower >= SEARCH_GRANULARITY:
        size = MAX_PLPMTU if upper == MAX_PLPMTU else (lower + upper + 1) // 2
        expected.append(size)
        if size <= mtu:
            lower = size
        else:
            upper = size - 1
    expect(
        got == expected,
        f"probe sizes {got}, not the search of recovery.md §7.3 on a {mtu}-byte path: {expected} ({peer.describe()})",
    )
    for size in expected:
        count = sum(1 for s in peer.sent if s.size == size and _is_probe(s.packet.frames))
        want = 1 if size <= mtu else MAX_PROBES
        expect(count == want, f"{count} probes of {size} bytes, not {want} (MAX_PROBES {MAX_PROBES} if lost)")
    # After the last probe the IUT sends packets of the size found, larger than any confirmed before.
    last_probe = max(s.time for s in peer.sent if _is_probe(s.packet.frames))
    before = max([BASE_PLPMTU, *(size for size in expected[:-1] if lower > size)])
    largest = max((s.size for s in peer.sent if s.time > last_probe and not _is_probe(s.packet.frames)), default=0)
    expect(
        before < largest <= lower,
        f"after the last probe the IUT's largest packet is {largest} bytes: not above {before} (the size confirmed "
        f"before the last) and at most the search's result {lower}",
    )
    return f"probes {got}, then packets of {largest} bytes"


@case(
    "ch/pmtu/3",
    section="recovery.md §7.1",
    title="a PMTU probe from the peer (PING and PADDING, 1452 bytes) is acknowledged like any PING",
    requirements=("REC-7.1.2",),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    details = []
    for n, size in enumerate((1300, 1452)):
        # A datagram of ``size`` bytes: 30 bytes of record header and tag, a PING and PADDING.
        plaintext = ch.encode_frame(ch.Ping()) + bytes(size - 30 - 1)
        pn = peer.link.next_counter
        at = 1.0 + n
        reply = peer.send_raw(plaintext, at=at)
        for _ in range(10):
            if any(pn in acked(f) for f in reply.frames(ch.Ack)):
                break
            if reply.close is not None or peer.now > at + MAX_ACK_DELAY:
                break
            timer = reply.answer.get("timer")
            if not isinstance(timer, int | float) or timer > at + MAX_ACK_DELAY:
                break
            reply = peer.timer(max(peer.now, float(timer)))
        expect(reply.close is None, f"the IUT closed the session on a {size}-byte probe: {reply.close}")
        expect(
            any(pn in acked(f) for f in reply.frames(ch.Ack)),
            f"the runner's {size}-byte probe (packet {pn}) was not acknowledged within max_ack_delay: "
            f"{short(reply.packets, 200)}",
        )
        details.append(f"{size} bytes acknowledged at {peer.now:.3f} s")
    return "; ".join(details)


@case(
    "ch/pmtu/4",
    section="recovery.md §7.4",
    title="when the path stops carrying the size found, the IUT falls back to 1200 bytes and its data gets through",
    requirements=(
        "CH-5.5.4",
        "REC-7.3.5",
        "REC-7.4.1",
        "REC-7.4.2",
    ),
)
def _(iut: Iut) -> str | None:
    peer = ImpairedPeer(iut, path_mtu=1300, pmtu_probing=True, idle_timeout=120.0)
    state: dict[str, int] = {}
    _bulk(peer, 4.0, payload(300_000, seed=31), state, per_step=1500)
    found = max((s.size for s in peer.sent if s.delivered and not _is_probe(s.packet.frames)), default=0)
    expect(found > BASE_PLPMTU, f"internal: after 6 s the IUT's packets are still at most {found} bytes")
    # The path now carries 1200 bytes only: a black hole for the size the IUT found.
    peer.path_mtu = BASE_PLPMTU
    cut = len(peer.sent)
    cut_time = peer.now
    _bulk(peer, cut_time + 6.0, payload(900_000, seed=31), state, per_step=2000)
    after = peer.sent[cut:]
    # The IUT must have fallen back within 3 s: in the last 3 s, nothing but probes above
    # BASE_PLPMTU (nothing larger can be confirmed on this path), and stream data arrives.
    tail = [s for s in after if s.time >= cut_time + 3.0]
    large = [s for s in tail if s.size > BASE_PLPMTU and not _is_probe(s.packet.frames)]
    expect(
        not large,
        f"{len(large)} packets above {BASE_PLPMTU} bytes (the first: {large[0].size if large else 0} bytes at "
        f"{large[0].time if large else 0:.3f} s) 3 s and more after the path MTU fell to {BASE_PLPMTU}: no fallback "
        f"({peer.describe()})",
    )
    arrived = [s for s in tail if s.carries_stream() and s.delivered]
    expect(
        bool(arrived),
        f"no STREAM packet arrived 3 s and more after the path MTU fell to {BASE_PLPMTU}; the IUT sent sizes "
        f"{sorted({s.size for s in after})[-5:]} ({peer.describe()})",
    )
    first_small = min(
        (s.time for s in after if s.carries_stream() and s.delivered and s.size > 1000), default=cut_time + 6.0
    )
    return (
        f"found {found} bytes; path cut to {BASE_PLPMTU} at {cut_time:.2f} s; large STREAM packets arrive again "
        f"from {first_small:.2f} s"
    )


# -- the congestion response (recovery.md §5) ---------------------------------------------------------


@case(
    "ch/cc/3",
    section="recovery.md §5",
    title="after losing half of a flight the IUT puts no more in flight than it had when the losses left",
    requirements=(
        "CH-6.2.1",
        "REC-5.1",
        "REC-5.2",
    ),
)
def _(iut: Iut) -> str | None:
    # NewReno halves its window, CUBIC takes 0.7 of it, and BBR caps what it has in flight at
    # what it had when the losses crossed its 2% threshold (§5.6.4): whichever the controller,
    # once the losses are known the IUT does not put more in flight than before them.
    peer = LatePeer(iut)
    peer.ack_everything(at=0.02)  # a first RTT sample of 20 ms
    peer.now = 0.03
    reply = peer.call("conn_open", service="files", kind="stream")
    channel_id = int(reply.answer["channel_id"])
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=1 << 22), at=0.04)
    data = payload(900_000, seed=37)
    offered = 0
    acked_pns: set[int] = set()
    dropped: set[int] = set()

    def in_flight() -> int:
        return sum(s.size for s in peer.sent if s.ack_eliciting and s.packet.pn not in acked_pns)

    before_loss = 0  # the most the IUT can have had in flight up to the end of the lossy flight
    worst = 0
    # Each step: the IUT sends for 20 ms, then the runner acknowledges everything that arrived.
    # The lossy flight is the one the first ACK releases (slow start or Startup, where every
    # controller would grow its window): every second STREAM packet of it is lost.
    for step in range(6):
        if offered < len(data):
            answer = peer.call("conn_send", channel_id=channel_id, data=data[offered : offered + 65536], fin=False)
            offered += int(answer.answer.get("accepted", 0))
        peer.run(peer.now + 0.02, auto_ack=False)
        if step == 1:
            peer.drop_data = frozenset()
            dropped = {s.packet.pn for s in peer.lost}
        if step <= 1:
            before_loss = max(before_loss, in_flight())
        if step == 0:
            peer.drop_data = frozenset(range(peer.data_count + 1, peer.data_count + 400, 2))
        acked_pns |= {s.packet.pn for s in peer.sent if s.delivered}
        reply = peer.ack_all()
        expect(reply.close is None, f"the IUT closed the session: {reply.close}")
        if step >= 1:
            # At most what the IUT has in flight: the runner takes every dropped packet as declared lost.
            least = sum(s.size for s in peer.sent if s.ack_eliciting and s.packet.pn not in acked_pns | dropped)
            worst = max(worst, least)
            expect(
                least <= before_loss,
                f"{least} bytes in flight at {peer.now:.3f} s, {step} round trips after the flight that lost "
                f"{len(dropped)} packets: more than the {before_loss} bytes the IUT had in flight before",
            )
    expect(len(dropped) >= 6, f"internal: only {len(dropped)} packets were dropped ({peer.describe()})")
    return (
        f"{len(dropped)} packets lost in the second flight, {before_loss} bytes in flight then, at most {worst} after"
    )


# -- ACK frames (recovery.md §3.2) ------------------------------------------------------------------


class IkInitiatorPeer(Peer):
    """A ``Peer`` whose IUT is the IK initiator: its CONFIRM record takes counter 0 (record.md §2)."""

    def __init__(self, iut: Iut) -> None:
        self.iut = iut
        self.now = 0.0
        self.received = []
        config = {**QUIET, "idle_timeout": 120.0}
        self.link = establish(
            iut,
            "initiator",
            pattern=Pattern.IK,
            channels={"services": list(SERVICES), "channel_config": config},
            now=self.now,
        )
        self.next_id, self.iut_parity = 1, 0
        self.first = self._absorb({"events": []}, self.link.trailing)


@case(
    "ch/rec/3",
    section="recovery.md §3.2",
    title="an ACK range that covers the IUT's CONFIRM record (counter 0, not a channel packet) is no error",
    requirements=("REC-3.2.2",),
)
def _(iut: Iut) -> str | None:
    peer = IkInitiatorPeer(iut)
    peer.now = 0.1
    reply = peer.call("conn_ping")
    pns = sorted(p.pn for p in peer.received)
    expect(bool(pns) and 0 not in pns, f"internal: the IUT's channel packets have counters {pns}, 0 among them")
    # The runner acknowledges 0..largest: counter 0 was the CONFIRM record, a gap in the packet numbers.
    reply = peer.send(ack_of(range(0, pns[-1] + 1)), at=0.15)
    expect(
        reply.close is None,
        f"the IUT closed the session on an ACK of counters 0..{pns[-1]} (0: its CONFIRM record): {reply.close}",
    )
    ping_pn = peer.link.next_counter
    reply = peer.send(ch.Ping(), at=0.2)
    for _ in range(5):
        if any(ping_pn in acked(f) for f in peer.received_acks()) or reply.close is not None:
            break
        timer = reply.answer.get("timer")
        if not isinstance(timer, int | float) or timer > 0.2 + MAX_ACK_DELAY:
            break
        reply = peer.timer(max(peer.now, float(timer)))
    expect(reply.close is None, f"the IUT closed the session after the ACK of its CONFIRM's counter: {reply.close}")
    expect(
        any(ping_pn in acked(f) for f in peer.received_acks()),
        f"the connection stopped working after the ACK of counters 0..{pns[-1]}: the runner's PING {ping_pn} "
        "was not acknowledged",
    )
    return f"ACK of 0..{pns[-1]} taken; channel packets {pns}"


# -- idle timeout and keepalives (channels.md §9.2, §9.3) --------------------------------------------


@case(
    "ch/idle/1",
    section="channels.md §9.3",
    title="keepalives answered by ACKs keep a connection with no data open well past its idle timeout",
    requirements=("CH-9.3.1", "CH-9.2.2"),
)
def _(iut: Iut) -> str | None:
    # keepalive_interval 1 s, idle_timeout 3 s: the runner sends nothing but an ACK of each of
    # the IUT's packets, 20 ms after it.  Those ACKs are packets from the peer: the IUT must
    # neither close nor go more than the interval without a PING, for 20 s.
    interval, idle, span = 1.0, 3.0, 20.0
    peer = ImpairedPeer(iut, role="initiator", keepalive_interval=interval, idle_timeout=idle)  # controlling
    last = 0.0  # the IUT's first packets left at 0
    pings: list[float] = []
    for _ in range(400):
        if peer.iut_timer is None or peer.iut_timer > span:
            break
        before = len(peer.sent)
        reply = peer.timer(max(peer.now, peer.iut_timer))
        expect(
            reply.close is None and not reply.events("connection_closed"),
            f"the IUT closed the connection at {peer.now:.3f} s ({reply.close}), its keepalives all acknowledged "
            f"(idle_timeout {idle} s, keepalive_interval {interval} s; PINGs at {[round(t, 3) for t in pings]})",
        )
        sent = [s for s in peer.sent[before:] if s.ack_eliciting]
        if sent:
            expect(
                peer.now - last <= interval + TOLERANCE,
                f"no ack-eliciting packet from {last:.3f} s to {peer.now:.3f} s: more than keepalive_interval "
                f"({interval} s)",
            )
            last = peer.now
            pings.append(peer.now)
            reply = peer.send(ack_of(s.packet.pn for s in sent), at=peer.now + 0.02)
            expect(reply.close is None, f"the IUT closed the connection on an ACK at {peer.now:.3f} s: {reply.close}")
    expect(peer.now >= span - interval, f"the IUT's timers stopped at {peer.now:.3f} s (timer {peer.iut_timer})")
    expect(
        len(pings) >= int(span / interval) - 1,
        f"only {len(pings)} keepalives in {span} s with keepalive_interval {interval} s",
    )
    return f"{len(pings)} keepalives in {peer.now:.1f} s, each acknowledged; still open"


@case(
    "ch/idle/2",
    section="channels.md §9.3",
    title="a lost keepalive PING is not sent again: the next one leaves a keepalive_interval after it",
    requirements=("CH-9.3.2",),
)
def _(iut: Iut) -> str | None:
    interval = 1.0
    peer = LatePeer(iut, role="initiator", keepalive_interval=interval)  # controlling (paths.md §7)
    peer.ack_everything(at=0.3)  # smoothed_rtt 0.3 s: no probe timeout comes before 1.9 s
    # The first keepalive leaves at 1.0 s (1 s after the IUT's first packets) and is lost.
    peer.blackhole = True
    for _ in range(10):
        if peer.iut_timer is None or peer.iut_timer > interval + TOLERANCE or peer.eliciting_since(0):
            break
        peer.timer(max(peer.now, peer.iut_timer))
    peer.blackhole = False
    kept = peer.eliciting_since(0)
    expect(bool(kept), f"no keepalive PING by {peer.now:.3f} s (keepalive_interval {interval} s)")
    keepalive = kept[0]
    # The runner's PINGs, two at a time, make the IUT send three ACK-only packets; the runner
    # acknowledges them, and so the keepalive's packet is lost by the packet threshold (recovery.md §4.1).
    at = keepalive.time + 0.01
    ack_only: list[int] = []
    for _ in range(6):
        peer.send(ch.Ping(), at=at)
        peer.send(ch.Ping(), at=at + 0.0005)
        ack_only = [s.packet.pn for s in peer.sent if not s.ack_eliciting and s.packet.pn > keepalive.packet.pn]
        at += 0.001
        if len(ack_only) >= 3:
            break
    expect(len(ack_only) >= 3, f"the IUT sent {len(ack_only)} ACK-only packets for six PINGs (channels.md §4)")
    start = len(peer.sent)
    last_sent = max(s.time for s in peer.sent)  # any packet refreshes the path (paths.md PTH-7.4)
    peer.ack_pns(peer.acked_pns | set(ack_only), at=at)
    next_due = last_sent + interval
    sent = expect_fires(peer, next_due, f"the keepalive after the lost one (packet {keepalive.packet.pn})", since=start)
    return (
        f"keepalive {keepalive.packet.pn} at {keepalive.time:.3f} s lost; the next, {sent[0].packet.pn}, "
        f"at {peer.now:.3f} s"
    )
