"""Datagram Packetization Layer PMTU Discovery, DPLPMTUD (spec/recovery.md §7, RFC 8899).

The path MTU (here: bytes of UDP payload per datagram) starts at
``BASE_PLPMTU`` = 1200, which every p2pos path must carry, and is raised by
sending *probe* packets (a PING padded to the probe size, RFC 9000 §14.4)
that count as confirmed when acknowledged.  No ICMP is used (a sans-IO core
sees none): a probe is taken as too big after ``max_probes`` losses.

How the connection drives it:

* when it may send, ``probe_size_to_send(now)``: if not ``None``, build one
  ack-eliciting packet padded to that size, send it, and call
  ``on_probe_sent(pn, size, now)``;
* when loss recovery reports the probe acknowledged or lost,
  ``on_probe_acked(pn)`` / ``on_probe_lost(pn)`` (probe loss is no
  congestion signal: keep it away from the congestion controller);
* for every other acknowledged packet ``on_packet_acked(size)``, for every
  batch of other lost packets ``on_packets_lost(sizes)`` (black hole
  detection, RFC 8899 §4.3);
* ``get_timer()`` / ``handle_timer(now)`` for the raise timer.

The methods that can move ``current_mtu`` return True when it changed: then
tell the congestion controller and the pacer (``set_max_datagram_size``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Final

from ..errors import LocalProtocolError

#: RFC 8899 §5.1.2 BASE_PLPMTU: what every p2pos path carries (RFC 9000 §14's 1200 bytes).
BASE_PLPMTU: Final = 1200
#: RFC 8899 §5.1.2 MIN_PLPMTU: used in the ERROR state.
MIN_PLPMTU: Final = 1200
#: A default MAX_PLPMTU: a 1500-byte Ethernet MTU minus IPv6 (40) and UDP (8) headers.
MAX_PLPMTU: Final = 1452
#: RFC 8899 §5.1.2 MAX_PROBES: losses of one probe size before it is taken as too big.
MAX_PROBES: Final = 3
#: RFC 8899 §5.1.1 PMTU_RAISE_TIMER: how long SEARCH_COMPLETE waits before probing upwards again (seconds).
PMTU_RAISE_TIMER: Final = 600.0
#: RFC 8899 §5.1.1 PROBE_TIMER (>= 15 s): how long ERROR waits before trying BASE_PLPMTU again (seconds).
PROBE_TIMER: Final = 15.0
#: The search ends when the largest confirmed and the smallest failed size are closer than this (bytes).
SEARCH_GRANULARITY: Final = 16


class PmtuState(enum.Enum):
    """RFC 8899 §5.2 states."""

    DISABLED = "disabled"
    BASE = "base"
    SEARCHING = "searching"
    SEARCH_COMPLETE = "search_complete"
    ERROR = "error"


#: The transitions of RFC 8899 §5.2 (figure 5) that this implementation takes.
TRANSITIONS: dict[PmtuState, frozenset[PmtuState]] = {
    PmtuState.DISABLED: frozenset(),
    # BASE_PLPMTU confirmed -> SEARCHING; not confirmed after MAX_PROBES -> ERROR.
    PmtuState.BASE: frozenset({PmtuState.SEARCHING, PmtuState.SEARCH_COMPLETE, PmtuState.ERROR}),
    # Search ended -> SEARCH_COMPLETE; black hole detected -> BASE.
    PmtuState.SEARCHING: frozenset({PmtuState.SEARCH_COMPLETE, PmtuState.BASE}),
    # PMTU_RAISE_TIMER expired -> SEARCHING; black hole detected -> BASE.
    PmtuState.SEARCH_COMPLETE: frozenset({PmtuState.SEARCHING, PmtuState.BASE}),
    # PROBE_TIMER expired -> BASE (confirm BASE_PLPMTU again).
    PmtuState.ERROR: frozenset({PmtuState.BASE}),
}


class PmtuDiscovery:
    """The DPLPMTUD state machine for one path (RFC 8899 §5)."""

    __slots__ = (
        "_base",
        "_granularity",
        "_lower",
        "_max",
        "_max_probes",
        "_min",
        "_probe_count",
        "_probe_interval",
        "_probe_pn",
        "_probe_size",
        "_raise_interval",
        "_suspicious",
        "_timer",
        "_upper",
        "current_mtu",
        "state",
    )

    def __init__(
        self,
        *,
        max_plpmtu: int = MAX_PLPMTU,
        base_plpmtu: int = BASE_PLPMTU,
        min_plpmtu: int = MIN_PLPMTU,
        max_probes: int = MAX_PROBES,
        raise_interval: float = PMTU_RAISE_TIMER,
        probe_interval: float = PROBE_TIMER,
        granularity: int = SEARCH_GRANULARITY,
        base_confirmed: bool = False,
        enabled: bool = True,
    ) -> None:
        """``base_confirmed``: the path already carried a BASE_PLPMTU datagram (e.g. a padded INIT).

        With ``enabled=False`` the state is DISABLED and ``current_mtu`` stays at
        ``base_plpmtu`` (for carriers that are not datagram paths, such as the
        stream framer).
        """
        if not 0 < min_plpmtu <= base_plpmtu <= max_plpmtu or max_probes < 1 or granularity < 1:
            raise LocalProtocolError("invalid DPLPMTUD parameters")
        self._base = base_plpmtu
        self._min = min_plpmtu
        self._max = max_plpmtu
        self._max_probes = max_probes
        self._raise_interval = raise_interval
        self._probe_interval = probe_interval
        self._granularity = granularity
        #: The packetization layer PMTU: the largest datagram to send, in bytes.
        self.current_mtu = base_plpmtu
        #: The RFC 8899 state.
        self.state = PmtuState.DISABLED
        self._lower = base_plpmtu  # largest size confirmed
        self._upper = max_plpmtu  # largest size not yet shown too big
        self._probe_size = base_plpmtu  # the size being probed
        self._probe_count = 0  # RFC 8899 PROBE_COUNT: losses of _probe_size
        self._probe_pn: int | None = None  # the outstanding probe's packet number
        self._timer: float | None = None
        self._suspicious = 0  # loss events with only large packets since the last large ACK
        if enabled:
            self._set_state(PmtuState.BASE)
            if base_confirmed:
                self._base_confirmed(None)

    # -- outputs -------------------------------------------------------------------------------

    @property
    def max_plpmtu(self) -> int:
        """The largest datagram the search may probe (the path's ceiling)."""
        return self._max

    def probe_size_to_send(self, now: float) -> int | None:
        """The size of the probe to send now, or ``None`` (no search, or a probe is outstanding)."""
        if self._probe_pn is not None or self.state not in (PmtuState.BASE, PmtuState.SEARCHING):
            return None
        return self._probe_size

    def get_timer(self) -> float | None:
        """When to call ``handle_timer`` (PMTU_RAISE_TIMER or PROBE_TIMER), ``None`` for never."""
        return self._timer

    def is_probe(self, pn: int) -> bool:
        """Is ``pn`` the outstanding probe?"""
        return pn == self._probe_pn

    # -- inputs --------------------------------------------------------------------------------

    def on_probe_sent(self, pn: int, size: int, now: float) -> None:
        """Record the probe just sent with the size ``probe_size_to_send`` returned."""
        if self.probe_size_to_send(now) != size:
            raise LocalProtocolError(f"no probe of {size} bytes was due")
        self._probe_pn = pn

    def on_probe_acked(self, pn: int, now: float) -> bool:
        """The probe arrived: its size works.  Returns whether ``current_mtu`` changed."""
        if pn != self._probe_pn:
            return False
        self._probe_pn = None
        size = self._probe_size
        self._probe_count = 0
        if self.state is PmtuState.BASE:
            self._base_confirmed(now)
            return False
        old = self.current_mtu
        self._lower = max(self._lower, size)
        self.current_mtu = self._lower
        self._next_probe(now)
        return self.current_mtu != old

    def on_probe_lost(self, pn: int, now: float) -> bool:
        """The probe was declared lost.  Returns whether ``current_mtu`` changed."""
        if pn != self._probe_pn:
            return False
        self._probe_pn = None
        self._probe_count += 1
        if self._probe_count < self._max_probes:
            return False  # RFC 8899 §5.2: probe the same size again
        self._probe_count = 0
        if self.state is PmtuState.BASE:
            # RFC 8899 §5.2: BASE_PLPMTU not confirmed -> ERROR, MIN_PLPMTU, retry after PROBE_TIMER.
            old = self.current_mtu
            self._set_state(PmtuState.ERROR)
            self.current_mtu = self._min
            self._timer = now + self._probe_interval
            return self.current_mtu != old
        # SEARCHING: this size is too big for the path.
        self._upper = self._probe_size - 1
        self._next_probe(now)
        return False

    def on_packet_acked(self, size: int) -> None:
        """A packet other than a probe arrived: a large one proves the path is not a black hole."""
        if size > self._base:
            self._suspicious = 0

    def on_packets_lost(self, sizes: Iterable[int], now: float) -> bool:
        """One batch of lost packets (other than probes) from one ACK or timeout.

        RFC 8899 §4.3 black hole detection: ``max_probes`` batches in a row in
        which every lost packet was larger than BASE_PLPMTU, with no large
        packet acknowledged in between, mean the path no longer carries
        ``current_mtu``: fall back to BASE_PLPMTU and search again.  Returns
        whether ``current_mtu`` changed.
        """
        if self.state not in (PmtuState.SEARCHING, PmtuState.SEARCH_COMPLETE) or self.current_mtu <= self._base:
            return False
        sizes = list(sizes)
        if not sizes:
            return False
        if min(sizes) <= self._base:
            # Small packets were lost too: congestion or an outage, not a size problem.
            self._suspicious = 0
            return False
        self._suspicious += 1
        if self._suspicious < self._max_probes:
            return False
        self._suspicious = 0
        self._set_state(PmtuState.BASE)
        self.current_mtu = self._base
        self._lower = self._base
        self._upper = self._max
        self._probe_size = self._base
        self._probe_count = 0
        self._probe_pn = None
        self._timer = None
        return True

    def handle_timer(self, now: float) -> None:
        """Fire PMTU_RAISE_TIMER (SEARCH_COMPLETE -> SEARCHING) or PROBE_TIMER (ERROR -> BASE)."""
        if self._timer is None or now < self._timer:
            return
        self._timer = None
        if self.state is PmtuState.SEARCH_COMPLETE:
            # RFC 8899 §5.2: look for a larger PMTU again, from the current one up to MAX_PLPMTU.
            self._upper = self._max
            self._set_state(PmtuState.SEARCHING)
            self._next_probe(now)
        elif self.state is PmtuState.ERROR:
            self._set_state(PmtuState.BASE)
            self._probe_size = self._base
            self._probe_count = 0

    # -- internals -----------------------------------------------------------------------------

    def _set_state(self, new: PmtuState) -> None:
        if new not in TRANSITIONS[self.state] and not (self.state is PmtuState.DISABLED and new is PmtuState.BASE):
            raise LocalProtocolError(f"DPLPMTUD: no transition from {self.state.name} to {new.name}")
        self.state = new

    def _base_confirmed(self, now: float | None) -> None:
        """BASE_PLPMTU works (RFC 8899 §5.2): search upwards, if there is room."""
        self.current_mtu = self._base
        self._lower = self._base
        self._upper = self._max
        self._set_state(PmtuState.SEARCHING)
        self._next_probe(now)

    def _next_probe(self, now: float | None) -> None:
        """Pick the next size (RFC 8899 §5.3), or end the search.

        The first probe of a search tries MAX_PLPMTU at once (most paths carry
        it: one round trip); after that, binary search between the largest
        confirmed and the smallest failed size.
        """
        lower, upper = self._lower, self._upper
        if upper - lower < self._granularity:
            self._set_state(PmtuState.SEARCH_COMPLETE)
            # RFC 8899 §5.2: PMTU_RAISE_TIMER, unless MAX_PLPMTU is confirmed (nothing to raise)
            # or the search ended in the constructor (no clock yet: the first search is the last).
            self._timer = None if self._lower >= self._max or now is None else now + self._raise_interval
            return
        self._probe_size = upper if upper == self._max and self._probe_size < upper else (lower + upper + 1) // 2
        self._probe_count = 0
