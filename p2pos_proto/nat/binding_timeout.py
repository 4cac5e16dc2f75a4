"""Learning how long the router keeps an idle UDP binding, on spare bindings (spec/nat.md §4).

``BindingTimeoutProber`` never lets the main binding idle.  It warms spare bindings (spare
sockets the driver gives it, each a Binding exchange with the server, then a second one
``warm_gap`` later so that Linux's conntrack has put the flow in its long "stream" stage, like
the main binding's, NAT-4.2), leaves each idle for a different time, then asks the server, from
the *control* socket (the main one), to answer to the spare binding's public port (RESPONSE-PORT,
RFC 5780 §4.6 and §7.5).  The answer leaves the server address the spare binding last talked to,
so any filter admits it while the binding lives; nothing is sent from the spare socket, so the
test itself refreshes nothing (a request from the spare socket would, and under port
preservation would even remake a dead binding on the same public port).  Answered: the timeout
is longer than that idle time; unanswered: not longer.

The idle times (NAT-4.3): a ladder probed in one round from the start, coarse up to ``split``
and fine above it, then, if the bracket it finds is coarse, refining rounds of ``refine``
points spread evenly (in ratio) across it, as long as they end within ``budget`` of the start.
The result (NAT-4.4) is the longest idle time found alive, T, and the keepalive interval
``keepalive_interval(T)``.

Call order: ``start(now)``; drain ``datagrams_to_send(now)`` (``(data, to, local)``) after every
call; feed every datagram of the control and spare sockets to ``receive_datagram`` (it says
whether it was ours); fire ``handle_timer(now)`` at ``get_timer()``; read ``next_event()``:
``TimeoutLearned`` or ``TimeoutSearchFailed``.  While it runs, ``interval`` is a keepalive
interval safe by what is known so far (NAT-4.5).  ``relearn(now)`` starts again (NAT-4.6).
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import math
from collections.abc import Callable, Hashable, Sequence
from typing import Final

from ..errors import LocalProtocolError
from . import stun_message as sm
from .keepalive import keepalive_interval
from .stun_client import BindingFailed, BindingSucceeded, RetransmitConfig, StunClient

Address = tuple[str, int]


#: Warm-up transactions (NAT-4.2): RTO 500 ms, 4 sends, no answer 5.5 s after the first.
_WARM: Final = RetransmitConfig(rto=0.5, rc=4, rm=4)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SearchConfig:
    """The search of NAT-4.3; the defaults cover timeouts of 10 s to 600 s within 600 s."""

    #: NAT-4.5: the timeout assumed while nothing longer is known alive (the shortest supported).
    assumed: float = 10.0
    #: The first test, on a freshly warmed binding: proves the method works (NAT-4.1).
    calibration: float = 1.0
    #: The ladder: coarse (each step at most ``coarse_ratio``) from ``shortest`` to ``split``,
    #: fine (at most ``fine_ratio``) from ``split`` to ``longest``.
    shortest: float = 9.0
    split: float = 290.0
    longest: float = 585.0
    coarse_ratio: float = 1.8
    fine_ratio: float = 1.075
    #: Points of a refining round.
    refine: int = 8
    #: Done when (shortest dead + slack) / longest alive is at most this.
    target_ratio: float = 1.08
    #: A dead result is confirmed by another within this ratio above it (a loss looks like a death).
    confirm_ratio: float = 1.1
    #: NAT-4.2: the second warm-up exchange this long after the first (conntrack: > 2 s).
    warm_gap: float = 3.0
    #: Test requests sent at once, and how long to wait for one answer.
    test_copies: int = 3
    test_wait: float = 2.0
    #: No round may end later than this after ``start``.
    budget: float = 600.0
    #: Warm-up transactions: RTO 500 ms, 4 sends, no answer 5.5 s after the first.
    warm_retransmit: RetransmitConfig = _WARM

    def __post_init__(self) -> None:
        if not 0 < self.calibration < self.shortest < self.split < self.longest:
            raise LocalProtocolError("0 < calibration < shortest < split < longest")
        if min(self.coarse_ratio, self.fine_ratio, self.target_ratio, self.confirm_ratio) <= 1:
            raise LocalProtocolError("ratios > 1")
        if self.refine < 1 or self.test_copies < 1 or self.test_wait <= 0 or self.warm_gap < 0:
            raise LocalProtocolError("refine >= 1, test_copies >= 1, test_wait > 0, warm_gap >= 0")

    def ladder(self) -> list[float]:
        """The idle times of the first round (NAT-4.3), calibration first, ascending."""
        coarse = math.ceil(math.log(self.split / self.shortest) / math.log(self.coarse_ratio))
        fine = math.ceil(math.log(self.longest / self.split) / math.log(self.fine_ratio))
        steps = [self.shortest * (self.split / self.shortest) ** (k / coarse) for k in range(coarse + 1)]
        steps += [self.split * (self.longest / self.split) ** (k / fine) for k in range(1, fine + 1)]
        return [self.calibration, *(round(s, 3) for s in steps)]

    @property
    def sockets_needed(self) -> int:
        """Spare sockets the search needs: one per ladder step (NAT-4.3)."""
        return len(self.ladder())


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutLearned:
    """NAT-4.4: the binding outlives ``timeout`` seconds idle; keep it with keepalives every ``interval``."""

    timeout: float
    interval: float
    #: The shortest idle time found dead (inf: none); the real timeout lies in (timeout, high + srtt].
    high: float
    #: The bracket is as narrow as ``target_ratio`` asks (False: the budget ran out first, or
    #: ``at_least``).
    precise: bool
    #: Alive at the longest idle probed: the real timeout may be much longer.
    at_least: bool
    srtt: float
    #: Seconds from ``start`` to this result.
    elapsed: float
    #: Datagrams and bytes (STUN only) the search sent and received.
    sent: int
    received: int
    bytes_sent: int
    bytes_received: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutSearchFailed:
    """The method cannot work here (NAT-4.1): keep the configured keepalive interval."""

    reason: str
    elapsed: float


SearchEvent = TimeoutLearned | TimeoutSearchFailed


class _Phase(enum.Enum):
    FREE = "free"
    WARM1 = "warm1"  # first warm-up exchange pending
    GAP = "gap"  # waiting to send the second one
    WARM2 = "warm2"
    IDLE = "idle"  # warm; the test is due at warm_at + idle
    TEST = "test"


@dataclasses.dataclass(slots=True)
class _Probe:
    key: Hashable
    phase: _Phase = _Phase.FREE
    idle: float = 0.0
    txid: bytes | None = None
    first_sent: float = 0.0
    warm_sent: float = 0.0
    warm_at: float = 0.0
    mapped: Address | None = None
    tests: set[bytes] = dataclasses.field(default_factory=set)
    tested_idle: float = 0.0
    due: float | None = None


class BindingTimeoutProber:
    """The search of spec/nat.md §4; see the module docstring for the call order.

    ``server`` is one STUN server address (the rendezvous node's), ``control`` the socket
    key of the main socket (its requests ask for the answers), ``spares`` the keys of at
    least ``config.sockets_needed`` spare sockets bound to the same local address.
    """

    def __init__(
        self,
        server: Address,
        *,
        control: Hashable,
        spares: Sequence[Hashable],
        random: Callable[[int], bytes],
        config: SearchConfig | None = None,
    ) -> None:
        self.config = config or SearchConfig()
        if len(set(spares)) < self.config.sockets_needed or control in spares:
            raise LocalProtocolError(f"{self.config.sockets_needed} distinct spare sockets, not the control one")
        self.server = server
        self.control = control
        self._random = random
        self._spare_keys = list(spares)
        self._events: collections.deque[SearchEvent] = collections.deque()
        self.stats: collections.Counter[str] = collections.Counter()
        self._reset(0.0)
        self._running = False

    def _reset(self, now: float) -> None:
        cfg = self.config
        self._warm = StunClient(random=self._random, config=cfg.warm_retransmit)
        self._test = StunClient(random=self._random, config=RetransmitConfig(rto=cfg.test_wait, rc=1, rm=1))
        self._probes = [_Probe(key) for key in self._spare_keys]
        self._by_txid: dict[bytes, _Probe] = {}
        self._started = now
        self._lo = 0.0
        self._deads: list[float] = []
        self._srtt = 0.0
        self._calibrated = False
        self._calibration_tries = 0
        self._control_mapped: Address | None = None
        self._control_txid: bytes | None = None
        self._out: list[tuple[bytes, Address, Hashable]] = []
        #: (idle tested, answered), in the order the results came.
        self.results: list[tuple[float, bool]] = []
        self.result: TimeoutLearned | None = None

    # -- API calls --------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Begin the search: the control socket's own mapping, and the first round (NAT-4.3)."""
        if self._running:
            raise LocalProtocolError("already running; relearn() starts again")
        self._reset(now)
        self._running = True
        self._control_txid = self._warm.binding(self.server, now, local=self.control)
        ladder = self.config.ladder()
        for probe, idle in zip(self._probes, ladder, strict=False):
            self._warm_up(probe, idle, now)
        self._flush(now)

    def relearn(self, now: float, *, spares: Sequence[Hashable] | None = None) -> None:
        """NAT-4.6: forget what was learned and search again (a binding was lost, the network changed),
        on new spare sockets if the driver opened new ones (same rules as the constructor's)."""
        if spares is not None:
            if len(set(spares)) < self.config.sockets_needed or self.control in spares:
                raise LocalProtocolError(f"{self.config.sockets_needed} distinct spare sockets, not the control one")
            self._spare_keys = list(spares)
        self._running = False
        self.start(now)

    @property
    def running(self) -> bool:
        return self._running

    @property
    def interval(self) -> float:
        """NAT-4.5: the keepalive interval safe by what is known now (the learned one once done)."""
        if self.result is not None:
            return self.result.interval
        return keepalive_interval(max(self._lo, self.config.assumed), self._srtt)

    @property
    def bracket(self) -> tuple[float, float]:
        """(longest idle alive, shortest idle dead above it) so far."""
        return self._lo, self._hi()

    # -- inputs -----------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, source: Address, now: float, local: Hashable) -> bool:
        """Whether ``data``, received on socket ``local``, answered one of the search's requests."""
        if not self._running:
            return False
        if self._warm.receive_datagram(data, source, now, local):
            self._count_in(data)
            self._drain(now, local)
            return True
        if self._test.receive_datagram(data, source, now, local):
            self._count_in(data)
            self._drain(now, local)
            return True
        return False

    def handle_timer(self, now: float) -> None:
        if not self._running:
            return
        self._warm.handle_timer(now)
        self._test.handle_timer(now)
        self._drain(now, None)
        for probe in self._probes:
            if self._running and probe.due is not None and probe.due <= now:
                probe.due = None
                if probe.phase is _Phase.GAP:
                    probe.phase = _Phase.WARM2
                    probe.warm_sent = now
                    self._transact(probe, self._warm.binding(self.server, now, local=probe.key))
                elif probe.phase is _Phase.IDLE:
                    self._run_test(probe, now)
        self._plan(now)
        self._flush(now)

    # -- outputs ----------------------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address, Hashable]]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        if not self._running:
            return None
        times = [t for t in (self._warm.get_timer(), self._test.get_timer()) if t is not None]
        times += [p.due for p in self._probes if p.due is not None]
        return min(times, default=None)

    def next_event(self) -> SearchEvent | None:
        return self._events.popleft() if self._events else None

    # -- internals --------------------------------------------------------------------------

    def _hi(self) -> float:
        """The shortest idle found dead above the longest found alive (a dead one below it was a loss)."""
        return min((d for d in self._deads if d > self._lo), default=math.inf)

    def _warm_up(self, probe: _Probe, idle: float, now: float) -> None:
        probe.phase = _Phase.WARM1
        probe.idle = idle
        probe.first_sent = now
        probe.due = None
        self._transact(probe, self._warm.binding(self.server, now, local=probe.key))
        self.stats["warmups"] += 1

    def _transact(self, probe: _Probe, txid: bytes) -> None:
        if probe.txid is not None:
            self._warm.cancel(probe.txid)
            self._by_txid.pop(probe.txid, None)
        probe.txid = txid
        self._by_txid[txid] = probe

    def _release(self, probe: _Probe) -> None:
        if probe.txid is not None:
            self._warm.cancel(probe.txid)
            self._by_txid.pop(probe.txid, None)
        for txid in probe.tests:
            self._test.cancel(txid)
            self._by_txid.pop(txid, None)
        probe.tests.clear()
        probe.txid = None
        probe.due = None
        probe.phase = _Phase.FREE

    def _useful(self, probe: _Probe) -> bool:
        """Whether testing ``probe.idle`` can still tell anything (NAT-4.3)."""
        if probe.idle == self.config.calibration and not self._calibrated:
            return True
        hi = self._hi()
        if self._lo < probe.idle < hi:
            return True
        # A loss looks like a death: the next test above a dead one, near or not, checks it.
        if probe.idle <= hi or self._confirmed(hi):
            return False
        above = [p.idle for p in self._probes if p.phase is not _Phase.FREE and p.idle > hi]
        return probe.idle == min(above, default=math.inf)

    def _confirmed(self, hi: float) -> bool:
        """A dead result counts once another one agrees within ``confirm_ratio`` above it (NAT-4.3)."""
        return any(hi < d <= hi * self.config.confirm_ratio for d in self._deads)

    def _run_test(self, probe: _Probe, now: float) -> None:
        if not self._useful(probe) or probe.mapped is None:
            self._release(probe)
            return
        if self._control_mapped is not None and self._control_mapped[0] != probe.mapped[0]:
            self._fail(now, "the control socket's public address differs from the spare's (RFC 4787 arbitrary pooling)")
            return
        probe.phase = _Phase.TEST
        probe.tested_idle = now - probe.warm_at
        attribute = ((sm.RESPONSE_PORT, probe.mapped[1].to_bytes(2, "big") + b"\x00\x00"),)
        for _ in range(self.config.test_copies):
            txid = self._test.binding(self.server, now, local=self.control, attributes=attribute)
            probe.tests.add(txid)
            self._by_txid[txid] = probe
        self.stats["tests"] += 1

    def _drain(self, now: float, local: Hashable | None) -> None:
        while (event := self._warm.next_event()) is not None:
            self._on_warm(event, now)
        while (event := self._test.next_event()) is not None:
            self._on_test(event, now, local)
        if self._running:
            self._plan(now)
        self._flush(now)

    def _on_warm(self, event: BindingSucceeded | BindingFailed, now: float) -> None:
        if event.transaction_id == self._control_txid:
            self._control_txid = None
            if isinstance(event, BindingFailed):
                self._fail(now, f"the server did not answer the control socket: {event.reason}")
            else:
                self._control_mapped = event.mapped
            return
        probe = self._by_txid.pop(event.transaction_id, None)
        if probe is None or probe.txid != event.transaction_id:
            return
        probe.txid = None
        if isinstance(event, BindingFailed):
            self.stats["warm_failures"] += 1
            probe.phase = _Phase.FREE
            if self.stats["warm_failures"] > len(self._probes):
                self._fail(now, f"warm-up exchanges unanswered: {event.reason}")
            return
        probe.mapped = event.mapped
        if probe.phase is _Phase.WARM1:
            probe.phase = _Phase.GAP
            probe.due = max(now, probe.first_sent + self.config.warm_gap)
        elif probe.phase is _Phase.WARM2:
            rtt = now - probe.warm_sent
            self._srtt = rtt if self._srtt == 0 else 0.875 * self._srtt + 0.125 * rtt
            probe.phase = _Phase.IDLE
            probe.warm_at = now  # the idle time counts from here (NAT-4.4: an underestimate)
            probe.due = now + probe.idle

    def _on_test(self, event: BindingSucceeded | BindingFailed, now: float, local: Hashable | None) -> None:
        probe = self._by_txid.pop(event.transaction_id, None)
        if probe is None or event.transaction_id not in probe.tests:
            return
        probe.tests.discard(event.transaction_id)
        if isinstance(event, BindingSucceeded):
            if local != probe.key:
                self._fail(now, "the server answered the control socket, not the spare one: it ignores RESPONSE-PORT")
                return
            self._result(probe, alive=True, now=now)
        elif isinstance(event, BindingFailed) and event.error:
            self._fail(now, f"the server refused RESPONSE-PORT: {event.error} {event.reason}")
        elif not probe.tests:  # every copy unanswered
            self._result(probe, alive=False, now=now)

    def _result(self, probe: _Probe, *, alive: bool, now: float) -> None:
        idle = probe.tested_idle
        calibration = probe.idle == self.config.calibration and not self._calibrated
        self._release(probe)
        self.results.append((idle, alive))
        if calibration:
            if alive:
                self._calibrated = True
            else:
                self._calibration_tries += 1
                if self._calibration_tries >= 2:
                    self._fail(now, f"no answer on a binding idle {idle:.1f} s: RESPONSE-PORT does not reach it")
                else:
                    self._warm_up(probe, self.config.calibration, now)
                return
        if alive:
            self._lo = max(self._lo, idle)
        else:
            self._deads.append(idle)

    def _plan(self, now: float) -> None:
        """Finish, or start a round when no pending test can narrow the bracket (NAT-4.3)."""
        if not self._running or not self._calibrated:
            return
        cfg = self.config
        lo, hi = self._lo, self._hi()
        if lo >= cfg.longest:
            self._finish(now, precise=False, at_least=True)
            return
        precise = hi < math.inf and (hi + self._srtt) <= cfg.target_ratio * lo
        if precise and self._confirmed(hi):
            self._finish(now, precise=True, at_least=False)
            return
        for probe in self._probes:
            if probe.phase is not _Phase.FREE and not self._useful(probe):
                self._release(probe)
        pending = [p for p in self._probes if p.phase is not _Phase.FREE]
        if any(lo < p.idle < hi for p in pending):
            return  # a pending test can still narrow the bracket
        free = [p for p in self._probes if p.phase is _Phase.FREE]
        room = self._started + cfg.budget - now - cfg.warm_gap - 4 * self._srtt - cfg.test_wait
        if precise:  # narrow enough, but its dead end is unconfirmed
            if any(hi < p.idle <= hi * cfg.confirm_ratio for p in pending):
                return
            idle = round(hi * math.sqrt(cfg.confirm_ratio), 3)
            if free and idle <= room:
                self.stats["confirmations"] += 1
                self._warm_up(free[0], idle, now)
            elif not pending:
                self._finish(now, precise=True, at_least=False)
            return
        top = hi if hi < math.inf else cfg.longest * cfg.fine_ratio
        low = max(lo, cfg.calibration)
        free = free[: cfg.refine]
        points = [low * (top / low) ** (i / (len(free) + 1)) for i in range(1, len(free) + 1)]
        points = [p for p in points if p <= room]
        if points:
            self.stats["rounds"] += 1
            for probe, idle in zip(free, points, strict=False):
                self._warm_up(probe, round(idle, 3), now)
        elif not pending:
            self._finish(now, precise=False, at_least=False)

    def _finish(self, now: float, *, precise: bool, at_least: bool) -> None:
        for probe in self._probes:
            self._release(probe)
        if self._lo <= 0:
            self._fail(now, "no idle time found alive")
            return
        self._running = False
        self.result = TimeoutLearned(
            timeout=self._lo,
            interval=keepalive_interval(self._lo, self._srtt),
            high=self._hi(),
            precise=precise,
            at_least=at_least,
            srtt=self._srtt,
            elapsed=now - self._started,
            sent=self.stats["sent"],
            received=self.stats["received"],
            bytes_sent=self.stats["bytes_sent"],
            bytes_received=self.stats["bytes_received"],
        )
        self._events.append(self.result)

    def _fail(self, now: float, reason: str) -> None:
        if not self._running:
            return
        for probe in self._probes:
            self._release(probe)
        self._running = False
        self._events.append(TimeoutSearchFailed(reason=reason, elapsed=now - self._started))

    def _count_in(self, data: bytes) -> None:
        self.stats["received"] += 1
        self.stats["bytes_received"] += len(data)

    def _flush(self, now: float) -> None:
        for client in (self._warm, self._test):
            for data, to, local in client.datagrams_to_send(now):
                if self._running:
                    self._out.append((data, to, local))
                    self.stats["sent"] += 1
                    self.stats["bytes_sent"] += len(data)
