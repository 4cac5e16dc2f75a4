"""The keepalive interval both sides agree on, and the idle timeout that follows from it (spec/paths.md §7).

Each side has a keepalive interval set from outside (``ChannelConfig.keepalive_interval``,
then ``Connection.keepalive_interval``: the NAT layer tunes it to the shortest binding
lifetime of the routers on its side) and announces it in a KEEPALIVE_INTERVAL frame
(frames.md §4.19).  The controlling side sends a keepalive when nothing left it for the
smaller of the two intervals; both sides' idle timeouts are three of those intervals plus
a second, so a quiet session keeps running with two packets per interval (the keepalive and
its acknowledgement) and a vanished peer is noticed after three of them.

Changing the interval is safe while the announcement is in flight or lost: until the peer
acknowledges it, this side keeps every value it announced since the last one acknowledged
(``_own``), sends keepalives at the smallest of them and times out at the largest (PTH-7.3).
The peer keeps the announcement with the highest sequence number.

``KeepaliveAgreement`` is plain state, driven by the connection: ``set_local`` (returns the
frame to queue), ``on_acked`` / ``on_peer`` (from the frames' acknowledgement and arrival),
``frame_for`` (what to send again for a lost one); it reads ``send_interval`` and
``idle_timeout``, recomputed on every change.
"""

from __future__ import annotations

from typing import Final

from .frames import MAX_KEEPALIVE_MS, KeepaliveInterval

#: The idle timeout is this many keepalive intervals (PTH-7.2) ...
IDLE_INTERVALS: Final = 3
#: ... plus this margin for the acknowledgement's round trip, in seconds.
IDLE_MARGIN: Final = 1.0
#: The idle timeout when neither side asks for keepalives and ``ChannelConfig.idle_timeout`` is not set.
IDLE_WITHOUT_KEEPALIVE: Final = 30.0
#: A keepalive that drew no reply is sent again after max(this, 2 smoothed RTT) (PTH-7.5).
KEEPALIVE_RETRY_MIN: Final = 1.0


def to_ms(interval: float | None) -> int:
    """An interval on the wire: whole milliseconds, 0 for none (at least 1 ms for any interval)."""
    if interval is None:
        return 0
    return min(MAX_KEEPALIVE_MS, max(1, round(interval * 1000)))


class KeepaliveAgreement:
    """The keepalive interval in force for one connection (see the module docstring)."""

    __slots__ = ("_fixed_idle", "_own", "_peer_sequence", "_version", "idle_timeout", "local", "peer", "send_interval")

    def __init__(self, local: float | None, idle_timeout: float | None) -> None:
        #: This side's interval (None: it asks for no keepalive), as last set.
        self.local: float | None = None
        #: What the peer last announced (None: nothing, or 0: it asks for none).
        self.peer: float | None = None
        self._peer_sequence = -1
        self._version = 0
        #: Our announcements from the newest the peer acknowledged on: (sequence, interval).  Sequence 0
        #: stands for "nothing announced", which the peer takes as no request (PTH-7.1).
        self._own: list[tuple[int, float | None]] = [(0, None)]
        #: An idle timeout fixed by configuration: then it does not follow the interval (PTH-7.2).
        self._fixed_idle = idle_timeout
        #: When this side is controlling, a keepalive leaves after this long without sending (None: never).
        self.send_interval: float | None = None
        #: No packet from the peer for this long closes the connection (IDLE_TIMEOUT).
        self.idle_timeout = IDLE_WITHOUT_KEEPALIVE if idle_timeout is None else idle_timeout
        if local is not None:
            self.set_local(local)

    @property
    def sequence(self) -> int:
        """The sequence number of this side's newest announcement (0: none yet)."""
        return self._version

    def set_local(self, interval: float | None) -> KeepaliveInterval | None:
        """A new interval for this side; returns the KEEPALIVE_INTERVAL frame to send (None: no change)."""
        if interval is not None:
            interval = to_ms(interval) / 1000
        if interval == self.local:
            return None
        self.local = interval
        self._version += 1
        self._own.append((self._version, interval))
        self._update()
        return KeepaliveInterval(sequence=self._version, interval_ms=to_ms(interval))

    def frame_for(self, sequence: int) -> KeepaliveInterval | None:
        """What to send again for a lost announcement: the newest, if ``sequence`` is it."""
        if sequence != self._version:
            return None
        return KeepaliveInterval(sequence=sequence, interval_ms=to_ms(self.local))

    def on_acked(self, sequence: int) -> None:
        """The peer has our announcement ``sequence``: older ones no longer matter."""
        own = self._own
        if own[0][0] >= sequence:
            return
        while len(own) > 1 and own[1][0] <= sequence:
            del own[0]
        self._update()

    def on_peer(self, frame: KeepaliveInterval) -> bool:
        """The peer's announcement; True if it is the newest so far (then the intervals were recomputed)."""
        if frame.sequence <= self._peer_sequence:
            return False
        self._peer_sequence = frame.sequence
        self.peer = frame.interval_ms / 1000 if frame.interval_ms else None
        self._update()
        return True

    def _update(self) -> None:
        """Each announcement the peer may hold is a possible state: keepalives go at the shortest
        interval any of them puts in force, the idle timeout is the longest any of them needs."""
        peer = self.peer
        sending: float | None = None
        idle = 0.0
        for _, value in self._own:
            interval = _least(value, peer)
            sending = _least(sending, interval)
            timeout = IDLE_WITHOUT_KEEPALIVE if interval is None else IDLE_INTERVALS * interval + IDLE_MARGIN
            idle = timeout if timeout > idle else idle
        self.send_interval = sending
        if self._fixed_idle is None:
            self.idle_timeout = idle


def _least(a: float | None, b: float | None) -> float | None:
    """The smaller of two intervals, None standing for no interval (infinitely long)."""
    if a is None:
        return b
    if b is None:
        return a
    return a if a < b else b
