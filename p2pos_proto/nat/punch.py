"""Sending a punching plan and hearing its answer: the sans-IO puncher (spec/punch.md §4, §5).

A probe is a STUN Binding request (RFC 8489) that carries the introduction's ticket: USERNAME is
the ticket's first 8 bytes in hex (which punch it belongs to), MESSAGE-INTEGRITY is keyed with
the whole 16-byte ticket (only the two peers and their rendezvous node know it), FINGERPRINT
tells it from p2pos packets on the same socket.  The answer is a Binding success from the socket
the probe reached, to the probe's source, with XOR-MAPPED-ADDRESS (the prober's address as the
peer sees it) and the same integrity.  An answer to a probe proves the pair of addresses works
both ways; the session then validates it as a path (spec/paths.md §3) before it carries data.

Driving it (``local`` is whatever names a socket to the driver)::

    p = Puncher(plan, main=0, extra=[...], peer=observed, candidates=[...], delta=peer_delta,
                ticket=ticket, rtt=estimate, random=source, now=now,
                fresh_to=node_other_address, leading=asked)   # fresh_to: None without one
    for local, address, datagram in p.datagrams_to_send(now): ...   # send each
    p.receive_datagram(local, source, datagram, now)   # True: it was this punch's; nothing else to do
    p.receive_fresh(address, now)      # a FRESH for this punch (the rendezvous client's FreshReceived)
    p.get_timer() / p.handle_timer(now)                 # then drain datagrams_to_send again
    p.next_event()    # PunchSucceeded(local, address, rtt, mapped) or PunchFailed(reason), once

A sequential side given ``fresh_to`` (its node's other address, nat.md §3.1) first sends a *fresh
Binding* there from its main socket (``fresh_request``: USERNAME ``<ticket id>:a`` or ``:t``), a
new mapping whose port the node passes to the peer in a FRESH (spec/punch.md §3.4,
spec/rendezvous.md §4.6); the peer's puncher then predicts from that port (``receive_fresh``).

After the event the puncher sends no more probes but keeps answering the peer's until
``finished(now)`` (LINGER after the event), so that the peer's last probe is answered too.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Callable, Hashable, Sequence
from typing import Final

from ..errors import LocalProtocolError
from . import stun_message as sm
from .punch_plan import Plan

Address = tuple[str, int]

TICKET_LEN: Final = 16
#: The first probe's repeat interval is the RTT estimate, clamped to these (spec/punch.md §4.1).
MIN_INTERVAL: Final = 0.02
MAX_INTERVAL: Final = 0.5
#: Probes per address of the dial schedule (spec/punch.md §4.1); the gap between predicted ports (§4.2).
DIAL_PROBES: Final = 8
PREDICT_PACE: Final = 0.002
#: Birthday pacing (spec/punch.md §4.3): the scattering side's probes, one per socket, over
#: SOCKETS_SPREAD seconds; the stable side's scan starts SCAN_DELAY after its start, at SCAN_RATE.
SOCKETS_SPREAD: Final = 0.128
SCAN_DELAY: Final = 0.15
SCAN_RATE: Final = 1000.0
#: Ports a scan draws from (Linux's and most NATs' dynamic range; spec/punch.md §4.3).
SCAN_LOW: Final = 1024
SCAN_HIGH: Final = 65535
#: How long a punch tries (spec/punch.md §4.4), and how long it answers after it ended.
DEADLINE: Final = 5.0
LINGER: Final = 5.0
#: Fresh Bindings (spec/punch.md §3.4): FRESH_SENDS of them, one repeat interval apart, answered or
#: not (each draws a FRESH: two against the loss of one); a side that predicts and sent them waits
#: FRESH_HOLD seconds at most for the peer's FRESH before it predicts from the observed address
#: (§3.5); a punch re-bases its prediction on a FRESH at most MAX_REBASES times.
FRESH_SENDS: Final = 2
FRESH_HOLD: Final = 0.5
MAX_REBASES: Final = 1


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PunchSucceeded:
    """The pair ``local`` - ``address`` works both ways: a probe of ours was answered, or the peer's
    probe arrived on a socket that had probed that address and no other (then ``rtt`` is None: §5.3)."""

    local: Hashable
    address: Address
    rtt: float | None
    #: This side's address as the peer saw it (XOR-MAPPED-ADDRESS of the answer).
    mapped: Address | None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PunchFailed:
    """No probe was answered by the deadline (or there was nothing to try)."""

    reason: str


PunchEvent = PunchSucceeded | PunchFailed


def ticket_id(ticket: bytes) -> bytes:
    """The USERNAME that names a punch: the ticket's first 8 bytes in lower-case hex."""
    return ticket[:8].hex().encode()


def probe(ticket: bytes, transaction_id: bytes) -> bytes:
    """A probe: a Binding request with USERNAME, MESSAGE-INTEGRITY (the ticket) and FINGERPRINT (§5.1)."""
    return sm.encode(
        sm.BINDING, sm.REQUEST, transaction_id, [(sm.USERNAME, ticket_id(ticket))], key=ticket, fingerprint=True
    )


def fresh_username(ticket: bytes, *, leading: bool) -> bytes:
    """The USERNAME of a fresh Binding (§3.4): the ticket id, ``:a`` from the side that asked for the
    introduction, ``:t`` from its target (rendezvous.md §4.6)."""
    return ticket_id(ticket) + (b":a" if leading else b":t")


def fresh_username_untrusted(value: bytes) -> tuple[bytes, bool] | None:
    """``(ticket id, leading)`` of a fresh Binding's USERNAME (the id's 8 bytes), or None if it is not one."""
    if len(value) != 18 or value[16:17] != b":" or value[17:] not in (b"a", b"t"):
        return None
    digits = value[:16]
    if any(c not in b"0123456789abcdef" for c in digits):
        return None
    return bytes.fromhex(digits.decode()), value[17:] == b"a"


def fresh_request(ticket: bytes, transaction_id: bytes, *, leading: bool) -> bytes:
    """A fresh Binding (§3.4): a probe's form with ``fresh_username``; 76 bytes."""
    username = fresh_username(ticket, leading=leading)
    return sm.encode(sm.BINDING, sm.REQUEST, transaction_id, [(sm.USERNAME, username)], key=ticket, fingerprint=True)


def answer(ticket: bytes, transaction_id: bytes, source: Address) -> bytes:
    """The answer to a probe from ``source``: Binding success, XOR-MAPPED-ADDRESS, integrity, FINGERPRINT (§5.2)."""
    mapped = sm.xor_address(source, transaction_id)
    return sm.encode(
        sm.BINDING, sm.SUCCESS, transaction_id, [(sm.XOR_MAPPED_ADDRESS, mapped)], key=ticket, fingerprint=True
    )


def _interval(rtt: float) -> float:
    return min(MAX_INTERVAL, max(MIN_INTERVAL, rtt))


def _repeats(start: float, step: float, count: int, deadline: float) -> list[float]:
    """``count`` send times from ``start``: at once, then doubling gaps from ``step`` (§4.1)."""
    times, t, gap = [], start, step
    for _ in range(count):
        if t > deadline:
            break
        times.append(t)
        t, gap = t + gap, gap * 2
    return times


class Puncher:
    """One side's punch towards one peer (see the module docstring)."""

    def __init__(
        self,
        plan: Plan,
        *,
        main: Hashable,
        extra: Sequence[Hashable] = (),
        peer: Address,
        candidates: Sequence[Address] = (),
        delta: int = 0,
        ticket: bytes,
        rtt: float,
        random: Callable[[int], bytes],
        now: float,
        fresh_to: Address | None = None,
        leading: bool = False,
    ) -> None:
        if len(ticket) != TICKET_LEN:
            raise LocalProtocolError(f"a punch ticket is {TICKET_LEN} bytes")
        if len(extra) != plan.sockets:
            raise LocalProtocolError(f"the plan wants {plan.sockets} extra sockets, {len(extra)} given")
        if plan.predict and not delta:
            raise LocalProtocolError("predicting ports needs the peer's delta")
        self.plan, self.ticket, self._random = plan, ticket, random
        self._username = ticket_id(ticket)
        self.started = now
        self.deadline = now + DEADLINE
        self._queue: list[tuple[float, int, Hashable, Address]] = []  # (time, order, local, address)
        self._order = 0
        self._triggered: set[int] = set()  # queue orders of triggered probes (§5.3)
        self._triggered_pairs: set[tuple[Hashable, Address]] = set()  # (socket, source) pairs requests triggered
        self._pending: dict[bytes, tuple[Hashable, Address, float]] = {}  # txid -> (local, address, sent at)
        self._probed: dict[Hashable, set[Address]] = {}  # local socket -> the addresses it probed
        self._out: list[tuple[Hashable, Address, bytes]] = []
        self._events: list[PunchEvent] = []
        self.outcome: PunchEvent | None = None
        self.ended_at: float | None = None
        #: Counters (spec/punch.md §4.5): probes (requests) sent, of them triggered ones (§5.3),
        #: answers sent, probes heard, answers dropped.
        self.probes_sent = 0
        self.probes_triggered = 0
        self.answers_sent = 0
        self.probes_heard = 0
        self.dropped = 0
        #: Fresh Bindings sent (§3.4), this side's fresh address as the node saw it, FRESHes acted on.
        self.fresh_sent = 0
        self.fresh_mapped: Address | None = None
        self.rebased = 0
        self._fresh_to = fresh_to if plan.fresh and plan.direct else None
        self._leading = leading
        self._fresh_orders: set[int] = set()  # queue orders of fresh Bindings
        self._fresh_txids: set[bytes] = set()
        self._main, self._peer, self._delta = main, peer, delta
        #: While set, a predicting side that took a fresh mapping waits for the peer's FRESH (§3.5).
        self._hold_until: float | None = None
        self._step = step = _interval(rtt)
        #: Why a punch that dials only the peer's other candidates fails when none answers (§3.8).
        self._why = ""
        others = [a for a in dict.fromkeys(candidates) if a != peer]
        if not plan.direct:
            # PUN-3.8.1: nothing towards the peer's NAT; its other candidates (§3.7: a shared LAN, a
            # port mapping) are still dialled.
            if not others:
                self._finish(PunchFailed(reason=plan.why), now)
                return
            self._why = plan.why
            for address in others:
                for t in _repeats(now, step, DIAL_PROBES, self.deadline):
                    self._at(t, main, address)
            return
        if self._fresh_to is not None:
            # The fresh Binding first, so that its mapping is the newest before the dial's (§3.4).
            for i in range(FRESH_SENDS):
                self._fresh_orders.add(self._order)
                self._at(now + i * step, main, self._fresh_to)
        if plan.sockets:
            # The scattering side of a birthday: one probe from each of its sockets (main included) to
            # the peer's observed address, spread over SOCKETS_SPREAD (§4.3).
            sockets = [main, *extra]
            for i, local in enumerate(sockets):
                self._at(now + SOCKETS_SPREAD * i / len(sockets), local, peer)
        # The peer's other candidates (IPv6, a shared LAN, a port mapping) are dialled whatever the
        # plan; its observed address when the plan says so (§4.1).
        targets = [peer, *others] if plan.dial else others
        for address in targets:
            for t in _repeats(now, step, DIAL_PROBES, self.deadline):
                self._at(t, main, address)
        host, port = peer
        if plan.predict:
            if self._fresh_to is not None:
                # Both sequential: the sequence waits for the peer's fresh port (§3.5), not for long.
                self._hold_until = now + FRESH_HOLD
            else:
                self._predict(peer, now)
        if plan.scan:
            for i, scanned in enumerate(self._scan_ports(plan.scan, exclude=port)):
                self._at(now + SCAN_DELAY + i / SCAN_RATE, main, (host, scanned))

    # -- inputs ------------------------------------------------------------------------------

    def receive_datagram(self, local: Hashable, source: Address, data: bytes, now: float) -> bool:
        """A datagram that arrived on one of this punch's sockets; True if it belonged to this punch
        (a probe of the peer's, answered; or an answer to one of ours)."""
        if not sm.is_stun(data):
            return False
        try:
            message = sm.decode_untrusted(data)
        except sm.StunError:
            return False
        if message.method != sm.BINDING or not message.integrity_ok(self.ticket):
            return False
        if message.klass == sm.REQUEST:
            if message.get(sm.USERNAME) != self._username:
                return False
            self.probes_heard += 1
            if self.finished(now):
                return True
            self._out.append((local, source, answer(self.ticket, message.transaction_id, source)))
            self.answers_sent += 1
            if self.outcome is None:
                probed = self._probed.get(local, set())
                if probed == {source}:
                    # This socket sent to nothing but the source, so its one mapping carried the probe in
                    # and carries the answer out: both ways open (§5.3).
                    self._finish(PunchSucceeded(local=local, address=source, rtt=None, mapped=None), now)
                elif (local, source) not in self._triggered_pairs:
                    # Triggered probes (§5.3): our own proof for this pair, at once and then on the dial
                    # schedule, so that one lost probe or answer does not cost the pair; counted when sent.
                    # Also where this socket probed the source before: that probe may have reached the
                    # peer's NAT before the mapping this request came from existed.
                    self._triggered_pairs.add((local, source))
                    for t in _repeats(now, self._step, DIAL_PROBES, self.deadline):
                        self._triggered.add(self._order)
                        self._at(t, local, source)
            return True
        if message.klass == sm.SUCCESS and message.transaction_id in self._fresh_txids:
            if local == self._main and source == self._fresh_to and self.fresh_mapped is None:
                value = message.get(sm.XOR_MAPPED_ADDRESS)
                try:
                    self.fresh_mapped = sm.decode_xor_address_untrusted(value or b"", message.transaction_id)
                except sm.StunError:
                    self.fresh_mapped = None
            return True
        if message.klass == sm.SUCCESS:
            sent = self._pending.get(message.transaction_id)
            if sent is None or sent[0] != local or sent[1] != source:
                self.dropped += 1
                return sent is not None
            mapped: Address | None = None
            value = message.get(sm.XOR_MAPPED_ADDRESS)
            if value is not None:
                try:
                    mapped = sm.decode_xor_address_untrusted(value, message.transaction_id)
                except sm.StunError:
                    mapped = None
            if self.outcome is None:
                self._finish(PunchSucceeded(local=local, address=source, rtt=now - sent[2], mapped=mapped), now)
            return True
        return False

    def receive_fresh(self, address: Address, now: float) -> bool:
        """The peer's fresh address (a FRESH for this punch, spec/punch.md §3.4, §3.5): predict from it
        at once.  True if the punch acted on it (it predicts, runs, and has not re-based already)."""
        if self.outcome is not None or now >= self.deadline or not self.plan.predict or self.rebased >= MAX_REBASES:
            return False
        self.rebased += 1
        self._hold_until = None
        self._predict(address, now)
        return True

    def handle_timer(self, now: float) -> None:
        if self.outcome is None and self._hold_until is not None and now >= self._hold_until:
            self._hold_until = None  # no FRESH came: predict from the observed address (§3.5)
            self._predict(self._peer, now)
        if self.outcome is None and now >= self.deadline:
            why = f"no probe answered in {DEADLINE:.0f} s"
            self._finish(PunchFailed(reason=f"{self._why}; {why}" if self._why else why), now)

    # -- outputs -----------------------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[tuple[Hashable, Address, bytes]]:
        """Everything due: ``(local socket, address, datagram)``."""
        while self.outcome is None and self._queue and self._queue[0][0] <= now:
            _, order, local, address = heapq.heappop(self._queue)
            if order in self._fresh_orders:
                self._fresh_orders.discard(order)
                self._send_fresh(local, address)
                continue
            self._send(local, address, now, triggered=order in self._triggered)
            self._triggered.discard(order)
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        if self.outcome is None:
            due = self._queue[0][0] if self._queue else self.deadline
            if self._hold_until is not None:
                due = min(due, self._hold_until)
            return min(due, self.deadline)
        return None

    def next_event(self) -> PunchEvent | None:
        return self._events.pop(0) if self._events else None

    def finished(self, now: float) -> bool:
        """Whether the punch has ended and lingered long enough to be dropped."""
        return self.ended_at is not None and now >= self.ended_at + LINGER

    # -- internals ---------------------------------------------------------------------------

    def _at(self, t: float, local: Hashable, address: Address) -> None:
        heapq.heappush(self._queue, (t, self._order, local, address))
        self._order += 1

    def _predict(self, base: Address, now: float) -> None:
        """The predicted sequence from ``base`` (the observed or a fresh address), in order, PREDICT_PACE
        apart; the rounds again in the same order (each new destination takes the next mapping on a
        sequential NAT here too, §3.4, §3.5, §4.2)."""
        plan, delta, (host, port) = self.plan, self._delta, base
        sequence = [port + (k * plan.predict_step - plan.predict_step + 1) * delta for k in range(1, plan.predict + 1)]
        sequence = [p for p in sequence if 0 < p < 65536]
        gap = max(self._step, PREDICT_PACE * len(sequence) + self._step)
        for r in range(plan.rounds):
            for i, predicted in enumerate(sequence):
                self._at(now + r * gap + i * PREDICT_PACE, self._main, (host, predicted))

    def _send_fresh(self, local: Hashable, address: Address) -> None:
        """A fresh Binding from ``local`` to the node's other address (§3.4)."""
        txid = self._random(12)
        self._fresh_txids.add(txid)
        self._out.append((local, address, fresh_request(self.ticket, txid, leading=self._leading)))
        self.fresh_sent += 1

    def _send(self, local: Hashable, address: Address, now: float, *, triggered: bool) -> None:
        """A probe from ``local`` to ``address`` now, remembered for its answer (§5.1, §5.3)."""
        txid = self._random(12)
        self._pending[txid] = (local, address, now)
        self._probed.setdefault(local, set()).add(address)
        self._out.append((local, address, probe(self.ticket, txid)))
        self.probes_sent += 1
        self.probes_triggered += triggered

    def _finish(self, event: PunchEvent, now: float) -> None:
        self.outcome = event
        self.ended_at = now
        self._events.append(event)
        self._queue.clear()
        self._triggered.clear()

    def _scan_ports(self, count: int, exclude: int) -> list[int]:
        """``count`` distinct random ports of SCAN_LOW..SCAN_HIGH, not ``exclude`` (§4.3)."""
        span = SCAN_HIGH - SCAN_LOW + 1
        count = min(count, span - 1)
        chosen: dict[int, None] = {}
        while len(chosen) < count:
            raw = int.from_bytes(self._random(4), "big")
            port = SCAN_LOW + raw % span
            if port != exclude:
                chosen[port] = None
        return list(chosen)
