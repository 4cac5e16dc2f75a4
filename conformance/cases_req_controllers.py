"""Cases for the loss-based congestion controllers of spec/recovery.md §5.2-§5.5, selected through channel_config.

`conn_session` takes any tunable of channels.md §8 in `channel_config`, among them
`congestion_control` ("bbr", "newreno", "cubic"): these cases ask for NewReno (``ch/newreno/``)
or CUBIC (``ch/cubic/``) and check that controller's window on the wire.  An IUT without the
controller answers `conn_session` with an error: the case is then unsupported.

The runner is the receiver, so it decides what arrives and when: a packet it never
acknowledges is lost.  It drives the IUT in **rounds**: it acknowledges every packet of the
last flight at once, one round trip `rtt` after the last of them left, gives the IUT data and
credit, and runs the IUT's timers (its pacer) for 0.9 `rtt`; a pacer of recovery.md §6 lets
a whole window out well within that (it fills at 1.25 windows per `smoothed_rtt`).  The bytes
then in flight (sent, neither acknowledged nor declared lost) show the window: the IUT sends
full datagrams while the window has room for one, so they are at most the window and more
than the window less one datagram.

The runner computes the window recovery.md §5.2 / §5.3 give from the packets it acknowledged
(``Window``, the text written out, with the used-window rules of §5.4).  Where the text
leaves a choice it keeps every reading: NewReno's congestion avoidance counted in whole
datagrams (one per window of bytes) or in fractions ([RFC 9002] appendix B), and, within one
ACK frame, the acknowledged packets taken before or after the lost ones.  No packet the IUT
sends may put more in flight than the largest reading (recovery.md §5); after each round the
bytes in flight must fit one reading (at most its window, more than its window less one
datagram), and the readings they do not fit are dropped: an IUT follows one reading.  On
CUBIC's curve a reading is allowed half a datagram either way (rounding).

The losses are chosen so that each rule shows alone: a congestion event found by the loss
timer, with no acknowledgement in the same ACK frame (``timer_loss``); one found by the
packet threshold in the middle of a flight, then a loss and acknowledgements of packets sent
before its recovery period, after a probe timeout that used the window (``threshold_loss``);
persistent congestion after a blackout of several probe timeouts (``blackout``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import Any

from p2pos.proto.channels import frames as ch

from .cases_channels import Reply
from .cases_req_recovery import LatePeer, payload
from .checks import CaseFailed, Unsupported, expect
from .impaired import Sent
from .iut import Iut
from .registry import case

#: recovery.md §5.1 at the base datagram size: the initial window (12000 bytes) and the minimum (2 datagrams).
BASE_DATAGRAM = 1200
INITIAL_WINDOW = 12000
#: recovery.md §5.3: CUBIC's constants.
CUBIC_C = 0.4
BETA_CUBIC = 0.7
ALPHA_CUBIC = 3 * (1 - BETA_CUBIC) / (1 + BETA_CUBIC)
#: recovery.md §7: the path MTU the IUT finds when nothing limits it.
MAX_PLPMTU = 1452
#: Slack for an IUT whose CUBIC curve rounds otherwise than the runner's: half a datagram.
CUBIC_SLACK = 600
#: The round trips of the cases: short (NewReno, CUBIC's Reno-friendly region) and long (CUBIC's curve).
SHORT_RTT = 0.02
LONG_RTT = 0.25
#: What a round lets the IUT's pacer run for, in round trips.
FILL = 0.9

NEWRENO, CUBIC = "recovery.md §5.2", "recovery.md §5.3"
APP_LIMITED, PMTU_CHANGE = "recovery.md §5.4", "recovery.md §5.5"


@dataclasses.dataclass(slots=True)
class Window:
    """One reading of recovery.md §5.1-§5.5: the window the IUT must have, in bytes."""

    cubic: bool
    #: Within one ACK frame, the lost packets are taken before the acknowledged ones (RFC 9002 A.7).
    lost_first: bool = False
    #: NewReno's congestion avoidance adds ``mds * size / cwnd`` per packet (RFC 9002 A.6), not whole datagrams.
    fractional: bool = False
    mds: int = BASE_DATAGRAM
    cwnd: float = INITIAL_WINDOW
    ssthresh: float = math.inf
    recovery_start: float | None = None
    acked_bytes: int = 0
    w_max: float = 0.0
    cwnd_prior: float = 0.0
    epoch: float | None = None
    k: float = 0.0
    w_est: float = 0.0

    @property
    def slack(self) -> float:
        """How far an IUT's window may be from this one: half a datagram on CUBIC's curve, else none."""
        return CUBIC_SLACK if self.cubic and self.epoch is not None else 0.0

    def in_recovery(self, sent: float) -> bool:
        return self.recovery_start is not None and sent <= self.recovery_start

    def on_ack(
        self,
        acked: Sequence[Sent],
        lost: Sequence[Sent],
        now: float,
        srtt: float,
        *,
        peak: int,
        app_limited: bool,
        persistent: bool = False,
    ) -> None:
        """One ACK frame: ``acked`` newly acknowledged, ``lost`` newly declared lost (congestion packets only)."""
        if self.lost_first:
            self.on_lost(lost, now, persistent=persistent)
            self.on_acked(acked, now, srtt, peak=peak, app_limited=app_limited)
        else:
            self.on_acked(acked, now, srtt, peak=peak, app_limited=app_limited)
            self.on_lost(lost, now, persistent=persistent)

    def on_acked(self, acked: Sequence[Sent], now: float, srtt: float, *, peak: int, app_limited: bool) -> None:
        if not acked or app_limited:
            return  # §5.4.1
        # §5.4.2: the window was used since the previous ACK (half of it in slow start, all but two datagrams after).
        if not (2 * peak >= self.cwnd if self.cwnd < self.ssthresh else peak + 2 * self.mds >= self.cwnd):
            return
        for sent in acked:
            if self.in_recovery(sent.time):
                continue
            size = sent.size
            if self.cwnd < self.ssthresh:
                room = self.ssthresh - self.cwnd
                if size <= room:
                    self.cwnd += size
                    continue
                self.cwnd = max(self.cwnd, self.ssthresh)
                size -= max(0, int(room))
            if self.cubic:
                self._cubic(size, now, srtt)
            elif self.fractional:
                self.cwnd += self.mds * size / self.cwnd
            else:
                self.acked_bytes += size
                if self.acked_bytes >= self.cwnd:
                    self.acked_bytes -= int(self.cwnd)
                    self.cwnd += self.mds

    def w_cubic(self, t: float) -> float:
        return CUBIC_C * self.mds * (t - self.k) ** 3 + self.w_max

    def _cubic(self, size: int, now: float, srtt: float) -> None:
        if self.epoch is None:
            self.epoch = now
            if self.w_max < self.cwnd:
                self.w_max, self.k = self.cwnd, 0.0
            else:
                self.k = ((self.w_max - self.cwnd) / (CUBIC_C * self.mds)) ** (1 / 3)
            self.w_est = self.cwnd
        t = now - self.epoch
        cwnd = self.cwnd
        alpha = 1.0 if self.w_est >= self.cwnd_prior else ALPHA_CUBIC
        self.w_est += alpha * self.mds * size / cwnd
        if self.w_cubic(t) < self.w_est:
            self.cwnd = max(cwnd, self.w_est)
            return
        target = min(max(self.w_cubic(t + srtt), cwnd), 1.5 * cwnd)
        self.cwnd = cwnd + (target - cwnd) * size / cwnd

    def on_lost(self, lost: Sequence[Sent], now: float, *, persistent: bool = False) -> None:
        if lost and not self.in_recovery(max(s.time for s in lost)):
            self.recovery_start = now
            cwnd = self.cwnd
            if self.cubic:
                self.w_max = cwnd * (1 + BETA_CUBIC) / 2 if cwnd < self.w_max else cwnd
                self.cwnd_prior = cwnd
                self.ssthresh = float(max(int(cwnd * BETA_CUBIC), 2 * self.mds))
                self.cwnd = self.ssthresh
                self.epoch = None
            else:
                self.ssthresh = float(int(cwnd / 2))
                self.cwnd = float(max(int(self.ssthresh), 2 * self.mds))
                self.acked_bytes = 0
        if persistent:
            self.cwnd = float(2 * self.mds)
            self.recovery_start = None
            self.acked_bytes = 0
            self.epoch = None

    def set_mds(self, mds: int) -> None:
        """§5.5: a new path MTU; the window is raised to the new minimum if below it."""
        self.mds = mds
        self.cwnd = max(self.cwnd, float(2 * mds))


def _is_probe(sent: Sent) -> bool:
    """A PMTU probe: a PING and PADDING only (recovery.md §7.1), not passed to the controller (§5)."""
    frames = sent.packet.frames
    return any(isinstance(f, ch.Ping) for f in frames) and all(isinstance(f, ch.Ping | ch.Padding) for f in frames)


class Flow:
    """A bulk transfer from the IUT, run in rounds (see the module docstring), with the runner's ``Window``s."""

    def __init__(self, iut: Iut, controller: str, *, rtt: float, limit_credit: bool = False, **config: Any) -> None:
        self.controller = controller
        try:
            self.peer = LatePeer(iut, congestion_control=controller, **config)
        except CaseFailed as exc:
            if "'conn_session' failed" in str(exc):
                raise Unsupported(
                    f"the IUT has no {controller} controller (channel_config congestion_control, channels.md §8): {exc}"
                ) from None
            raise
        self.rtt = rtt
        cubic = controller == "cubic"
        self.section = CUBIC if cubic else NEWRENO
        self.windows = [
            Window(cubic, lost_first=lost_first, fractional=fractional)
            for lost_first in (False, True)
            for fractional in ((False,) if cubic else (False, True))
        ]
        self.acked: set[int] = set()
        self.lost: set[int] = set()
        self.peak = 0
        self.offered = 0
        self.granted = 0
        self.limit_credit = limit_credit
        self.lost_since_ack = False
        self.history: list[str] = []
        peer = self.peer
        peer.ack_everything(at=rtt)  # the first RTT sample: rtt
        reply = peer.call("conn_open", service="files", kind="stream")
        self.channel_id = int(reply.answer["channel_id"])
        peer.now += rtt
        opened = [s for s in self.unacked() if s.delivered]
        for size in [s.size for s in opened if _is_probe(s)]:  # a PMTU probe may leave with the OPEN
            for w in self.windows:
                w.set_mds(max(w.mds, size))
        self._ack_frame(opened, peer.now)
        self.granted = 0 if limit_credit else 1 << 40
        peer.send(ch.Accept(channel_id=self.channel_id, initial_max_data=self.granted), ch.MaxData(maximum=1 << 40))

    # -- what the runner sees ------------------------------------------------------------------

    def unacked(self) -> list[Sent]:
        """The IUT's packets in flight: ack-eliciting, neither acknowledged nor declared lost.

        A PMTU probe that a path MTU dropped counts as lost once recovery.md §4.1 or §4.2 makes it so.
        """
        largest = max(self.acked, default=-1)
        delay = self.peer.model.loss_delay()
        return [
            s
            for s in self.peer.sent
            if s.ack_eliciting
            and s.packet.pn not in self.acked
            and s.packet.pn not in self.lost
            and not (
                _is_probe(s)
                and not s.delivered
                and s.packet.pn < largest
                and (s.packet.pn + 3 <= largest or s.time + delay <= self.peer.now)
            )
        ]

    def in_flight(self) -> int:
        return sum(s.size for s in self.unacked())

    def top(self) -> int:
        """The end of the stream data the IUT sent so far."""
        return max(
            (
                f.offset + len(f.data)
                for s in self.peer.sent
                for f in s.packet.frames
                if isinstance(f, ch.Stream) and f.channel_id == self.channel_id
            ),
            default=0,
        )

    def low(self) -> float:
        return min(w.cwnd for w in self.windows)

    def high(self) -> float:
        return max(w.cwnd for w in self.windows)

    @property
    def mds(self) -> int:
        return self.windows[0].mds

    def describe(self) -> str:
        w = self.windows[0]
        ss = "infinite" if w.ssthresh == math.inf else f"{w.ssthresh:.0f}"
        return f"ssthresh {ss}; rounds (time, in flight, window): {'; '.join(self.history[-6:])}"

    # -- driving the IUT -----------------------------------------------------------------------

    def _call(self, what: str, cmd: str, **fields: Any) -> Reply:
        before = len(self.peer.sent)
        reply = self.peer.call(cmd, **fields)
        self._after(what, before, reply.close)
        return reply

    def _after(self, what: str, before: int, close: int | None) -> None:
        expect(close is None, f"{what}: the IUT closed the session at {self.peer.now:.3f} s: {close}")
        sent = [s for s in self.peer.sent[before:] if s.ack_eliciting]
        if not sent:
            return
        flight = self.in_flight()
        self.peak = max(self.peak, flight)
        high = max(w.cwnd + w.slack for w in self.windows)
        if flight > high and any(not _is_probe(s) for s in sent):
            raise CaseFailed(
                f"{what}: at {self.peer.now:.4f} s the IUT put {flight} bytes in flight, above the window of "
                f"{self.section} ({high:.0f} bytes; {self.describe()})"
            )

    def supply(self, amount: int | None = None, *, what: str = "conn_send") -> None:
        """Give the IUT data: ``amount`` bytes, or enough that it never runs out."""
        if amount is None:
            if self.offered - self.top() > 4 * self.high() + 200_000:
                return
            amount = 600_000
        data = payload(amount, seed=self.offered % 97 + 1)
        reply = self._call(what, "conn_send", channel_id=self.channel_id, data=data, fin=False)
        self.offered += int(reply.answer.get("accepted", len(data)))

    def grant(self, extra: int) -> None:
        """Channel credit up to ``extra`` bytes beyond what the IUT has sent (only in ``limit_credit`` mode)."""
        if not self.limit_credit:
            return
        maximum = self.top() + extra
        if maximum > self.granted:
            self.granted = maximum
            before = len(self.peer.sent)
            reply = self.peer.send(ch.MaxChannelData(channel_id=self.channel_id, maximum=maximum))
            self._after("MAX_CHANNEL_DATA", before, reply.close)

    def _ack_frame(self, acked: Iterable[Sent], at: float, *, what: str = "an ACK") -> None:
        pns = {s.packet.pn for s in acked}
        before = len(self.peer.sent)
        reply = self.peer.ack_pns(self.peer.acked_pns | pns, at=at)
        self.acked |= pns
        self._after(what, before, reply.close)

    def ack(
        self,
        what: str,
        *,
        but: Iterable[int] = (),
        only: Iterable[int] | None = None,
        at: float | None = None,
        persistent: bool = False,
    ) -> None:
        """Acknowledge the flight (all of it but ``but``, or ``only``), by default ``rtt`` after its last packet.

        The runner's windows take the acknowledged packets, and as lost those 3 packet
        numbers below the largest acknowledged (recovery.md §4.1) or, with ``persistent``
        (the ACK ends a blackhole, recovery.md §4.4), all older ones.
        """
        pending = self.unacked()
        skip, keep = set(but), None if only is None else set(only)
        chosen = [
            s for s in pending if s.delivered and (s.packet.pn in keep if keep is not None else s.packet.pn not in skip)
        ]
        expect(bool(chosen), f"internal: nothing to acknowledge at {what}")
        if at is None:
            at = max(self.peer.now, max(s.time for s in chosen) + self.rtt)
        # §5.4.1: the IUT sent all it had, and has nothing lost to send again.
        app_limited = self.top() >= self.offered and not self.lost_since_ack
        largest = max(s.packet.pn for s in chosen)
        lost = [
            s
            for s in pending
            if s not in chosen and (s.packet.pn + 3 <= largest or (persistent and s.packet.pn < largest))
        ]
        # The IUT's smoothed_rtt once it has this ACK's sample (the runner's model takes it when it sends the ACK).
        model = dataclasses.replace(self.peer.model, samples=[])
        largest_sent = max(chosen, key=lambda s: s.packet.pn)
        model.sample(at - largest_sent.time, 0.0)
        probes = [s.size for s in chosen if _is_probe(s)]
        for w in self.windows:
            if probes and max(probes) > w.mds:
                w.set_mds(max(probes))
            w.on_ack(
                [s for s in chosen if not _is_probe(s)],
                [s for s in lost if not _is_probe(s)],
                at,
                model.smoothed_rtt,
                peak=self.peak,
                app_limited=app_limited,
                persistent=persistent,
            )
        self.lost |= {s.packet.pn for s in lost}
        self.lost_since_ack = bool(lost)
        self.peak = 0
        self._ack_frame(chosen, at, what=what)

    def fill(self, what: str, *, expect_loss: Sent | None = None, check: bool = True) -> int:
        """Run the IUT's timers for ``FILL`` round trips; then check the bytes in flight against the windows.

        ``expect_loss``: a packet the IUT's loss timer declares lost in that time
        (recovery.md §4.2); the windows take the loss when it is due.
        """
        peer = self.peer
        end = peer.now + FILL * self.rtt
        loss_at = None if expect_loss is None else expect_loss.time + peer.model.loss_delay()
        for _ in range(2000):
            due = [t for t in (peer.iut_timer,) if t is not None and t <= end]
            if not due:
                break
            at = max(peer.now, min(due))
            fires = peer.iut_timer is not None and peer.iut_timer <= at
            # The IUT declares the loss when its timer fires at the moment §4.2 gives (ch/loss/ checks it).
            if loss_at is not None and expect_loss is not None and fires and at >= loss_at - 1e-6:
                self.lost.add(expect_loss.packet.pn)
                for w in self.windows:
                    w.on_lost([expect_loss], at)
                loss_at = None
                self.lost_since_ack = True
            peer.now = at
            if fires:
                self._call(what, "conn_timer")
        peer.now = max(peer.now, end)
        flight = self.in_flight()
        low, high = self.low(), self.high()
        self.history.append(f"{peer.now:.3f} s, {flight}, {low:.0f}" + ("" if high == low else f"-{high:.0f}"))
        if check:
            # An IUT follows one reading: those that do not explain this flight are dropped.
            kept = [w for w in self.windows if w.cwnd - self.mds - w.slack < flight <= w.cwnd + w.slack]
            expect(
                bool(kept),
                f"{what}: {flight} bytes in flight at {peer.now:.3f} s, {FILL} round trips after the ACK, with data "
                f"and credit to send: the window of {self.section} is {low:.0f} bytes"
                + ("" if high == low else f" (to {high:.0f} by the readings the IUT's earlier flights allow)")
                + f", and the IUT sends while it has room for a datagram ({self.describe()})",
            )
            self.windows = kept
        return flight

    def round(self, what: str, *, check: bool = True) -> int:
        """Acknowledge the flight, give data and credit, fill the window."""
        self.supply()
        self.ack(what)
        self.grant(int(self.high()) + 2 * self.mds)
        return self.fill(what, check=check)

    def timer_loss(self, what: str) -> None:
        """A congestion event the loss timer finds (recovery.md §4.2), with nothing else in the ACK.

        The runner acknowledges the flight but for its last packet but one: the IUT's loss
        timer declares that one lost a little after the ACK, so that no acknowledgement comes
        with the loss (within one ACK frame §5 does not say which comes first).
        """
        flight = [s for s in self.unacked() if not _is_probe(s)]
        expect(len(flight) >= 6, f"internal: a flight of {len(flight)} packets")
        victim = flight[-2]
        self.supply()
        self.ack(f"{what}: the ACK of all but packet {victim.packet.pn}", but={victim.packet.pn})
        self.grant(int(self.high()) + 2 * self.mds)
        self.fill(f"{what}: after packet {victim.packet.pn} is lost by the loss timer", expect_loss=victim, check=False)
        expect(
            victim.packet.pn in self.lost,
            f"{what}: the IUT's loss timer did not fire for packet {victim.packet.pn} by {self.peer.now:.4f} s "
            f"({FILL} round trips after the ACK of every later packet; recovery.md §4.2)",
        )
        self.round(f"{what}: the window after packet {victim.packet.pn} was lost")

    def threshold_loss(self, what: str) -> None:
        """A congestion event in the middle of a flight, then a second loss of a packet sent before it.

        Of the flight in flight, the runner acknowledges the 2nd and 3rd packets, then the 4th
        (the 1st is lost: recovery.md §4.1, a new recovery period), then, after the IUT's probe
        timeout, all the others but the 6th, which that ACK declares lost.  Neither that loss nor those
        acknowledgements of packets sent before the recovery period may change the window:
        the IUT's next flight shows the window of the congestion event.
        """
        flight = [s for s in self.unacked() if not _is_probe(s)]
        expect(len(flight) >= 8, f"internal: a flight of {len(flight)} packets")
        pns = [s.packet.pn for s in flight]
        self.supply()
        at = max(self.peer.now, flight[3].time + self.rtt)
        self.ack(f"{what}: the ACK of packets {pns[1:3]}", only=pns[1:3], at=at)
        self.ack(f"{what}: the ACK of packet {pns[3]}, {pns[0]} lost", only=pns[3:4], at=at)
        # The rest of the flight is acknowledged only after the IUT's probe timeout: its probes use
        # the window (§5.4.2), so that only the recovery period keeps those ACKs from growing it.
        peer = self.peer
        for _ in range(20):
            if peer.iut_timer is None or any(s.ack_eliciting and s.time > at for s in peer.sent):
                break
            reply = peer.timer(max(peer.now, peer.iut_timer))
            expect(reply.close is None, f"{what}: the IUT closed the session at {peer.now:.3f} s: {reply.close}")
        probed = [s for s in peer.sent if s.ack_eliciting and s.time > at]
        expect(bool(probed), f"{what}: no probe timeout after the ACK of packet {pns[3]} (recovery.md §4.3)")
        self.peak = max(self.peak, self.in_flight())
        later = {s.packet.pn for s in self.unacked() if s.packet.pn not in pns}
        self.ack(
            f"{what}: the ACK of the flight sent before the recovery period, packet {pns[5]} lost",
            but={pns[5], *later},
            at=peer.now + 0.001,
        )
        self.grant(int(self.high()) + 2 * self.mds)
        self.fill(
            f"{what}: the window after the loss of packet {pns[0]} (a congestion event) and of packet "
            f"{pns[5]} (sent before the recovery period began), and ACKs of packets sent before it"
        )

    def blackout(self, what: str, *, span: float = 3.0, timeouts: int | None = None) -> None:
        """Nothing reaches the runner for ``span`` seconds, or until ``timeouts`` probe timeouts
        have fired; then the runner acknowledges only the last probes: every earlier packet is
        lost at once, persistent congestion (recovery.md §4.4)."""
        peer = self.peer
        end = peer.now + span
        fired = 0
        for _ in range(200):
            if peer.iut_timer is None or peer.iut_timer > end or (timeouts is not None and fired >= timeouts):
                break
            before = len(peer.sent)
            peer.timer(max(peer.now, peer.iut_timer))
            fired += any(s.ack_eliciting for s in peer.sent[before:])
        # The probes of the last timeout, and nothing before them (all of it lost, by §4.1 or §4.2 at once).
        last = self.unacked()[-1].time
        probes = sorted(s.packet.pn for s in self.unacked() if s.time == last)
        self.ack(f"{what}: the ACK of the last probes {probes} only", only=probes, persistent=True)


# -- the scenarios, one per rule, for either controller ------------------------------------------------


def _loss_response(iut: Iut, controller: str, *, rtt: float, avoidance: int, second_loss: int = 2) -> str:
    flow = Flow(iut, controller, rtt=rtt)
    flow.supply()
    flow.fill("the initial window (recovery.md §5.1)")
    for n in range(2):
        flow.round(f"slow start, round {n + 1}")
    flow.timer_loss("the first congestion event (in slow start)")
    for n in range(avoidance):
        if n == second_loss:
            flow.threshold_loss(f"the second congestion event, {n} rounds after the first")
        flow.round(f"congestion avoidance, round {n + 1}")
    return f"{flow.controller}: {flow.describe()}"


def _persistent(iut: Iut, controller: str, *, rtt: float, after: int) -> str:
    flow = Flow(iut, controller, rtt=rtt)
    flow.supply()
    flow.fill("the initial window (recovery.md §5.1)")
    for n in range(2):
        flow.round(f"slow start, round {n + 1}")
    flow.blackout("persistent congestion")
    flow.grant(int(flow.high()) + 2 * flow.mds)
    flow.fill("the window after persistent congestion (recovery.md §4.4: the minimum window)")
    for n in range(after):
        flow.round(f"round {n + 1} after persistent congestion")
    return f"{flow.controller}: {flow.describe()}"


def _app_limited(iut: Iut, controller: str, *, rtt: float) -> str:
    flow = Flow(iut, controller, rtt=rtt, limit_credit=True)
    # §5.4.1: credit is no limit at first, the application is: six datagrams' worth per round,
    # half the initial window and more (so that the used-window check of §5.4.2 would let the
    # window grow), sent at once; then nothing until the next ACK.
    chunk = 6 * (BASE_DATAGRAM - 50)
    flow.grant(8 * chunk)
    flow.supply(chunk)
    for n in range(5):
        flow.ack(f"application-limited round {n + 1}")
        flow.grant(8 * chunk)
        flow.supply(chunk, what=f"application-limited round {n + 1}")
        flow.fill(f"application-limited round {n + 1}", check=False)
    flow.ack("the ACK of the last application-limited round")
    flow.history.append("then data")
    flow.grant(int(flow.high()) + 2 * flow.mds)
    what = "the first flight with data to send after 5 application-limited rounds (recovery.md §5.4)"
    flow.supply(what=what)
    flow.fill(what)
    for n in range(2):
        flow.round(f"slow start, round {n + 1}")
    # §5.4.2: data waits, but flow control lets out only 20000 bytes per round trip, less than
    # half the window: the IUT sends them as the credit comes, at the pacer's pace (its burst is
    # 10 datagrams), and the ACK of the previous 20000 bytes comes while the pacer still holds
    # some back (not application-limited by §5.4.1).
    for n in range(5):
        what = f"flow-control-limited round {n + 1}"
        old = [s.packet.pn for s in flow.unacked()]
        flow.peer.now = max(flow.peer.now, max(s.time for s in flow.unacked()) + flow.rtt - 0.0005)
        flow.grant(20_000)
        flow.ack(what, only=old, at=flow.peer.now + 0.0005)
        flow.fill(what, check=False)
    flow.history.append("then credit")
    flow.round("the first flight with credit after 5 flow-control-limited rounds (recovery.md §5.4)")
    return f"{flow.controller}: {flow.describe()}"


def _pmtu(iut: Iut, controller: str, *, rtt: float, after: int) -> str:
    flow = Flow(iut, controller, rtt=rtt, pmtu_probing=True, limit_credit=True)
    flow.grant(INITIAL_WINDOW + 2 * BASE_DATAGRAM)
    flow.supply()
    flow.fill("the initial window")
    for n in range(2):
        flow.round(f"slow start, round {n + 1}")
    sizes = sorted({s.size for s in flow.peer.sent if _is_probe(s) and s.packet.pn in flow.acked})
    expect(
        flow.mds == MAX_PLPMTU,
        f"after 3 round trips on a path that carries {MAX_PLPMTU} bytes the IUT's path MTU is {flow.mds}: its "
        f"acknowledged probes had {sizes} bytes (recovery.md §7.3: the first probe is MAX_PLPMTU)",
    )
    # The last flight ends with a short packet (flow control): the probe timeouts of the blackout
    # then lose a packet of at most 1200 bytes too, which is no sign of a black hole (§7.4).
    flow.supply()
    flow.ack("the last flight before the blackout")
    flow.grant(int(flow.high()) - 3 * flow.mds)
    flow.fill("the last flight before the blackout", check=False)
    flow.grant(333)
    expect(
        any(s.size <= BASE_DATAGRAM for s in flow.unacked()),
        f"internal: no short packet in flight: {sorted({s.size for s in flow.unacked()})}",
    )
    flow.blackout("persistent congestion")
    flow.grant(int(flow.high()) + 2 * flow.mds)
    flow.fill(
        f"the window after persistent congestion, with a path MTU of {MAX_PLPMTU} bytes: the minimum window is "
        f"2 * {MAX_PLPMTU} (recovery.md §5.5)"
    )
    for n in range(after):
        flow.round(f"round {n + 1} after persistent congestion, at {MAX_PLPMTU} bytes")
    return f"{flow.controller}: path MTU {flow.mds}; {flow.describe()}"


def _lost_probes(iut: Iut, controller: str, *, rtt: float, avoidance: int) -> str:
    # A path that carries 1300 bytes: of the IUT's PMTU probes (1452, 1326, ... recovery.md §7.3)
    # those above 1300 are lost, in slow start and in congestion avoidance; they are no
    # congestion signal (recovery.md §5): the window goes on as if they had not been sent.
    flow = Flow(iut, controller, rtt=rtt, pmtu_probing=True, path_mtu=1300)
    flow.supply()
    flow.fill("the initial window, PMTU probes lost")
    for n in range(2):
        flow.round(f"slow start, round {n + 1}, PMTU probes lost")
    flow.timer_loss("a congestion event")
    for n in range(avoidance):
        flow.round(f"congestion avoidance, round {n + 1}, PMTU probes lost")
    lost = sorted(s.size for s in flow.peer.sent if _is_probe(s) and not s.delivered)
    expect(len(lost) >= 3, f"internal: only {len(lost)} PMTU probes were lost: {lost}")
    return f"{flow.controller}: {len(lost)} probes lost {lost}, path MTU {flow.mds}; {flow.describe()}"


# -- NewReno (recovery.md §5.2, §5.4, §5.5) ------------------------------------------------------


@case(
    "ch/newreno/1",
    section=NEWRENO,
    title="NewReno: slow start doubles the window, a congestion event halves it once, then one datagram per window",
    requirements=(
        "REC-5.1",
        "REC-5.1.1",
        "REC-5.2.1",
        "CONF-3.8.6",
    ),
)
def _(iut: Iut) -> str | None:
    return _loss_response(iut, "newreno", rtt=SHORT_RTT, avoidance=6)


@case(
    "ch/newreno/2",
    section=NEWRENO,
    title="NewReno: persistent congestion sets the minimum window, then slow start up to ssthresh and avoidance",
    requirements=(
        "REC-4.4.1",
        "REC-5.1.1",
        "REC-5.2.1",
        "CONF-3.8.6",
    ),
)
def _(iut: Iut) -> str | None:
    return _persistent(iut, "newreno", rtt=SHORT_RTT, after=7)


@case(
    "ch/newreno/3",
    section=APP_LIMITED,
    title="NewReno: no growth while application-limited or while flow control keeps the window under-used",
    requirements=(
        "REC-5.4.1",
        "REC-5.4.2",
        "CONF-3.8.6",
    ),
)
def _(iut: Iut) -> str | None:
    return _app_limited(iut, "newreno", rtt=SHORT_RTT)


@case(
    "ch/newreno/4",
    section=PMTU_CHANGE,
    title="NewReno at a path MTU of 1452: persistent congestion leaves two such datagrams, growth is by 1452",
    requirements=(
        "REC-5.2.1",
        "REC-5.5.1",
        "REC-7.3.6",
        "CONF-3.8.6",
    ),
)
def _(iut: Iut) -> str | None:
    return _pmtu(iut, "newreno", rtt=SHORT_RTT, after=8)


@case(
    "ch/newreno/5",
    section="recovery.md §5",
    title="NewReno: PMTU probes the path drops are no congestion signal, the window grows on",
    requirements=(
        "REC-5.3",
        "REC-5.2.1",
        "REC-7.3.6",
        "CONF-3.8.6",
    ),
)
def _(iut: Iut) -> str | None:
    return _lost_probes(iut, "newreno", rtt=SHORT_RTT, avoidance=10)


# -- CUBIC (recovery.md §5.3, §5.4, §5.5) ---------------------------------------------------------


@case(
    "ch/cubic/1",
    section=CUBIC,
    title="CUBIC: slow start, a congestion event takes 0.7 of the window once, then the Reno-friendly region",
    requirements=(
        "REC-5.1",
        "REC-5.1.1",
        "REC-5.3.1",
        "CONF-3.8.6",
    ),
)
def _(iut: Iut) -> str | None:
    return _loss_response(iut, "cubic", rtt=SHORT_RTT, avoidance=10)


@case(
    "ch/cubic/2",
    section=CUBIC,
    title="CUBIC: at a long round trip the window follows W_cubic, with fast convergence after a second event",
    requirements=(
        "REC-5.3.1",
        "CONF-3.8.6",
    ),
)
def _(iut: Iut) -> str | None:
    return _loss_response(iut, "cubic", rtt=LONG_RTT, avoidance=14, second_loss=6)


@case(
    "ch/cubic/3",
    section=CUBIC,
    title="CUBIC: persistent congestion sets the minimum window, then slow start up to ssthresh",
    requirements=(
        "REC-4.4.1",
        "REC-5.1.1",
        "REC-5.3.1",
        "CONF-3.8.6",
    ),
)
def _(iut: Iut) -> str | None:
    return _persistent(iut, "cubic", rtt=SHORT_RTT, after=7)


@case(
    "ch/cubic/4",
    section=APP_LIMITED,
    title="CUBIC: no growth while application-limited or while flow control keeps the window under-used",
    requirements=(
        "REC-5.4.1",
        "REC-5.4.2",
        "CONF-3.8.6",
    ),
)
def _(iut: Iut) -> str | None:
    return _app_limited(iut, "cubic", rtt=SHORT_RTT)


@case(
    "ch/cubic/5",
    section=PMTU_CHANGE,
    title="CUBIC at a path MTU of 1452: persistent congestion leaves two such datagrams, the growth scales with it",
    requirements=(
        "REC-5.3.1",
        "REC-5.5.1",
        "REC-7.3.6",
        "CONF-3.8.6",
    ),
)
def _(iut: Iut) -> str | None:
    return _pmtu(iut, "cubic", rtt=SHORT_RTT, after=8)


@case(
    "ch/cubic/6",
    section="recovery.md §5",
    title="CUBIC: PMTU probes the path drops are no congestion signal, the window grows on",
    requirements=(
        "REC-5.3",
        "REC-5.3.1",
        "REC-7.3.6",
        "CONF-3.8.6",
    ),
)
def _(iut: Iut) -> str | None:
    return _lost_probes(iut, "cubic", rtt=SHORT_RTT, avoidance=10)
