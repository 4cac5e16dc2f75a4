"""Flow control credit and auto-tuned receive windows (spec/flow.md §3-§5, RFC 9000 §4).

Both levels use the same two classes: one ``SendCredit`` and one ``ReceiveWindow``
per channel direction, and one of each for the whole connection (MAX_DATA).

Sending: before putting ``n`` new stream bytes in a packet, check
``min(channel.available(), connection.available())`` and then ``consume(n)`` on
both.  A MAX_CHANNEL_DATA / MAX_DATA frame calls ``update_limit``.  When data is
waiting but no credit is left, ``should_send_blocked()`` says to send a
CHANNEL_BLOCKED / DATA_BLOCKED frame carrying ``on_blocked_sent()``.

Receiving: ``receive_untrusted`` with the new highest offset checks the advertised
limit; ``on_consumed`` counts what the application read; when
``should_send_update()`` is true, send ``new_limit(now, rtt)`` in a MAX_* frame.
``new_limit`` grows the window (auto-tuning, spec/flow.md §4): if the last
window was being read fast enough that it would be used up within about two
round trips of the previous update, it doubles, up to ``maximum``.  The window
never shrinks, so memory stays bounded by ``maximum``.
"""

from __future__ import annotations

from typing import Final

from ..errors import ErrorCode, LocalProtocolError, RemoteProtocolError

#: Largest stream offset or byte count a varint can carry (RFC 9000 §16).
MAX_OFFSET: Final = (1 << 62) - 1

#: Defaults (spec/flow.md §4): initial and maximum windows per channel and per connection.
DEFAULT_CHANNEL_WINDOW: Final = 64 * 1024
DEFAULT_CHANNEL_MAX_WINDOW: Final = 16 * 1024 * 1024
DEFAULT_CONNECTION_WINDOW: Final = 1024 * 1024
DEFAULT_CONNECTION_MAX_WINDOW: Final = 24 * 1024 * 1024
#: Stream bytes an opener may send before the ACCEPT, and the least an acceptor takes on a channel
#: the peer opened whatever window it advertised (spec/channels.md §2.7, CH-2.7.1, CH-2.7.4).
EARLY_WINDOW: Final = 16384
#: The connection window is kept at least this multiple of the largest channel window.
CONNECTION_WINDOW_RATIO: Final = 1.5
#: Auto-tuning doubles the window when the last one was read within this many RTTs (scaled).
AUTOTUNE_RTTS: Final = 2.0


class SendCredit:
    """What the peer lets us send: its limit and what we have sent (RFC 9000 §4.1)."""

    __slots__ = ("blocked_at", "limit", "sent")

    def __init__(self, limit: int) -> None:
        if not 0 <= limit <= MAX_OFFSET:
            raise LocalProtocolError(f"bad initial limit {limit}")
        #: The peer's limit: offset (channel) or total bytes (connection) we may reach.
        self.limit = limit
        #: Bytes sent so far (the highest offset sent, for a channel).
        self.sent = 0
        #: The limit at which we last sent a BLOCKED frame, or None.
        self.blocked_at: int | None = None

    def available(self) -> int:
        """How many more new bytes may be sent now (0 while an ACCEPT's limit is below the early bytes sent)."""
        left = self.limit - self.sent
        return left if left > 0 else 0

    def replace_limit(self, new_limit: int) -> None:
        """The peer's first word on a channel opened with early credit (an ACCEPT, or a MAX_CHANNEL_DATA
        that overtook it) replaces that credit, even downwards (spec/channels.md CH-2.7.4)."""
        self.limit = min(max(new_limit, 0), MAX_OFFSET)
        self.blocked_at = None

    def consume(self, n: int) -> None:
        """Count ``n`` new bytes as sent; raises LocalProtocolError beyond the credit."""
        if n < 0 or n > self.limit - self.sent:
            raise LocalProtocolError(f"{n} bytes exceed the flow control credit {self.available()}")
        self.sent += n

    def update_limit(self, new_limit: int) -> bool:
        """Apply a MAX_DATA / MAX_CHANNEL_DATA value; True if the limit grew.

        A limit that does not increase is ignored (RFC 9000 §4.1), so reordered or
        duplicated frames are harmless.  Values above 2^62-1 are clamped (the frame
        parser rejects them first).
        """
        new_limit = min(new_limit, MAX_OFFSET)
        if new_limit <= self.limit:
            return False
        self.limit = new_limit
        return True

    def should_send_blocked(self) -> bool:
        """True when no credit is left and no BLOCKED frame was sent at this limit yet.

        Call only when data is waiting to be sent (spec/flow.md §5).
        """
        return self.sent >= self.limit and self.blocked_at != self.limit

    def on_blocked_sent(self) -> int:
        """Record that a BLOCKED frame goes out now; returns the limit to put in it."""
        self.blocked_at = self.limit
        return self.limit

    def on_blocked_lost(self, limit: int) -> None:
        """A BLOCKED frame carrying ``limit`` was lost: allow sending it again."""
        if self.blocked_at == limit:
            self.blocked_at = None


class ReceiveWindow:
    """What we let the peer send: the advertised limit and the auto-tuned window.

    ``now`` is the creation time: the first auto-tuning epoch starts then.
    """

    __slots__ = (
        "_epoch_consumed",
        "_epoch_start",
        "consumed",
        "highest_received",
        "limit",
        "maximum",
        "window",
    )

    def __init__(self, initial: int, maximum: int, *, now: float) -> None:
        if not 0 < initial <= maximum <= MAX_OFFSET:
            raise LocalProtocolError(f"bad window sizes: initial {initial}, maximum {maximum}")
        #: Current window size: the next limit is ``consumed + window``.
        self.window = initial
        #: The window never grows beyond this.
        self.maximum = maximum
        #: The limit last advertised to the peer (initially in OPEN/ACCEPT).
        self.limit = initial
        #: The highest offset (channel) or total (connection) the peer has reached.
        self.highest_received = 0
        #: Bytes the application has read (or that were released by a reset).
        self.consumed = 0
        self._epoch_start = now
        self._epoch_consumed = 0

    def receive_untrusted(self, highest: int) -> int:
        """The peer reached ``highest``; returns the increase over the previous highest.

        Raises RemoteProtocolError(FLOW_CONTROL_ERROR) when ``highest`` is beyond the
        advertised limit (spec/flow.md §3).
        """
        if highest > self.limit:
            raise RemoteProtocolError(
                f"peer sent up to {highest}, beyond the limit {self.limit}", ErrorCode.FLOW_CONTROL_ERROR
            )
        increase = highest - self.highest_received
        if increase <= 0:
            return 0
        self.highest_received = highest
        return increase

    def receive_increment_untrusted(self, n: int) -> None:
        """Connection level: ``n`` more bytes arrived on some channel (the channel's increase)."""
        self.receive_untrusted(self.highest_received + n)

    def on_consumed(self, n: int) -> None:
        """The application read ``n`` bytes (or a reset released them)."""
        if n < 0 or self.consumed + n > self.highest_received:
            raise LocalProtocolError(f"cannot consume {n} bytes: only {self.highest_received} received")
        self.consumed += n

    def should_send_update(self) -> bool:
        """True when less than half a window of credit is left (RFC 9000 §4.2).

        At that point the application has read more than half the window since the
        last update; call ``new_limit`` and send it.
        """
        return self.limit < MAX_OFFSET and (self.limit - self.consumed) * 2 < self.window

    def new_limit(self, now: float, rtt: float) -> int:
        """Auto-tune the window, raise and return the limit to advertise.

        ``rtt`` is the smoothed round-trip time (0 when unknown: no growth).  The
        limit never decreases; send it in MAX_CHANNEL_DATA / MAX_DATA.
        """
        self._autotune(now, rtt)
        self.limit = max(self.limit, min(self.consumed + self.window, MAX_OFFSET))
        self._epoch_start = now
        self._epoch_consumed = self.consumed
        return self.limit

    def ensure_window(self, size: int) -> bool:
        """Grow the window to at least ``size`` (capped by ``maximum``); True if it grew.

        The connection calls this with ``CONNECTION_WINDOW_RATIO`` times a channel
        window that grew, so one fast channel is not held back by the connection.
        """
        size = min(size, self.maximum)
        if size <= self.window:
            return False
        self.window = size
        return True

    def _autotune(self, now: float, rtt: float) -> None:
        """spec/flow.md §4: double when the epoch's reading rate would use the window fast.

        In the epoch since the last update, ``read`` bytes were consumed in
        ``elapsed`` seconds.  At that rate the whole window lasts
        ``elapsed * window / read``; if that is under ``2 * AUTOTUNE_RTTS`` RTTs
        (so half a window, the update point, under ``AUTOTUNE_RTTS`` RTTs) the
        sender would stall waiting for updates, so the window doubles.
        """
        read = self.consumed - self._epoch_consumed
        if rtt <= 0 or read * 2 < self.window or self.window >= self.maximum:
            return
        elapsed = now - self._epoch_start
        if elapsed * self.window < 2 * AUTOTUNE_RTTS * rtt * read:
            self.window = min(self.window * 2, self.maximum)


class EarlyReceiveWindow(ReceiveWindow):
    """The window of a stream channel the peer opened: bytes up to offset ``EARLY_WINDOW`` are taken
    whatever limit was advertised, since the opener may have sent them before it learned that limit
    (spec/channels.md CH-2.7.4).  Updates still follow the advertised limit."""

    __slots__ = ()

    def receive_untrusted(self, highest: int) -> int:
        if self.limit < highest <= EARLY_WINDOW:
            increase = highest - self.highest_received
            if increase <= 0:
                return 0
            self.highest_received = highest
            return increase
        return super().receive_untrusted(highest)
