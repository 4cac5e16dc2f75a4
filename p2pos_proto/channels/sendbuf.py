"""The send side of channels: a retransmitting byte stream and a message queue.

``SendBuffer`` (spec/flow.md §1, §2.2; RFC 9000 §2.2, §13.3) holds one reliable stream
direction.  The application ``write``s and ``finish``es; the packet builder asks
``next_chunk(max_len, max_new)`` for a STREAM / STREAM_FIN frame's offset, data
and FIN flag (lost data first, then new data), and loss recovery reports every
sent frame's fate with ``on_acked`` or ``on_lost``.  Bytes are kept until
acknowledged and released as soon as the acknowledged prefix grows, so a bulk
transfer holds about one congestion window in memory.  Backpressure on
``write`` is the caller's: wait while ``buffered`` is above its high-water mark.

``MessageQueue`` holds an unreliable message channel's outgoing messages: a
bounded queue where the oldest message is dropped when it is full, each message
with a budget of retransmissions (0: never retransmitted).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from typing import Final

from ..common.ranges import RangeSet
from ..errors import ErrorCode, LocalProtocolError
from .flow import MAX_OFFSET

_EMPTY: Final = memoryview(b"")
#: A write at least this large is kept as a piece of its own; smaller ones are gathered first.
_PIECE: Final = 16 * 1024
#: A larger write that is not ``bytes`` is copied into pieces of at most this size.
_MAX_PIECE: Final = 64 * 1024


class SendBuffer:
    """One reliable stream direction: bytes written, in flight, lost and acknowledged.

    The bytes live in pieces that never change once made, each written once: a large
    write becomes a piece as it is (or a copy of it), small writes are gathered in a
    ``bytearray`` tail that becomes a piece when a frame needs its bytes.  Acknowledged pieces are dropped
    from the front.  One contiguous buffer would copy everything still held each time
    it grows after its acknowledged prefix was cut off; pieces are never copied again,
    and a frame's data is a view of one piece (``take_new``).
    """

    __slots__ = (
        "_acked",
        "_base",
        "_cursor",
        "_end",
        "_fin_acked",
        "_fin_pending",
        "_first",
        "_lost",
        "_pieces",
        "_starts",
        "_tail",
        "final_size",
        "is_reset",
        "sent_offset",
    )

    def __init__(self) -> None:
        #: Written bytes from ``_starts[_first]`` on, in pieces (views of bytes never changed again);
        #: ``_starts[i]`` is the offset of ``_pieces[i]``.  Entries below ``_first`` are released
        #: (dropped in batches, so that a release is O(1) amortised).
        self._pieces: list[memoryview] = []
        self._starts: list[int] = []
        self._first = 0
        #: Written bytes after the last piece, not yet needed by a frame.
        self._tail = bytearray()
        #: The offset after the last byte written.
        self._end = 0
        #: The piece that holds ``sent_offset`` (where ``take_new`` looks first).
        self._cursor = 0
        #: Every offset below ``_base`` is acknowledged and released.
        self._base = 0
        #: Acknowledged ranges above ``_base`` (never touching it).
        self._acked = RangeSet()
        #: Ranges declared lost and not acknowledged since: sent again first.
        self._lost = RangeSet()
        #: Offsets below this were sent at least once; new data starts here.
        self.sent_offset = 0
        #: Set by ``finish``: the stream's length.
        self.final_size: int | None = None
        self._fin_pending = False
        self._fin_acked = False
        #: Set by ``reset``: nothing more is sent.
        self.is_reset = False

    # -- the application ------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append application bytes (copied once, unless ``data`` is ``bytes``).

        Refused after ``finish`` or ``reset``.
        """
        if self.final_size is not None or self.is_reset:
            raise LocalProtocolError("write after the stream was finished or reset", ErrorCode.CHANNEL_STATE_ERROR)
        size = len(data)
        if self._end + size > MAX_OFFSET:
            raise LocalProtocolError("stream offset would exceed 2^62-1", ErrorCode.FLOW_CONTROL_ERROR)
        if size >= _PIECE:
            self._seal_tail()
            if isinstance(data, bytes):
                self._add_piece(data, self._end)  # immutable: kept as it is, no copy
            else:
                # Copied in pieces of at most _MAX_PIECE: copies that size come from the heap, while
                # a larger one is a fresh mmap whose every page faults when first written.
                view = memoryview(data)
                for start in range(0, size, _MAX_PIECE):
                    self._add_piece(bytes(view[start : start + _MAX_PIECE]), self._end + start)
        elif size:
            self._tail += data
        self._end += size

    def _add_piece(self, piece: bytes, start: int) -> None:
        self._starts.append(start)
        self._pieces.append(memoryview(piece))

    def _seal_tail(self) -> None:
        """The gathered small writes become a piece: the bytearray itself, never written again
        (a new one gathers what comes next), so no copy is made."""
        tail = self._tail
        if tail:
            self._starts.append(self._end - len(tail))
            self._pieces.append(memoryview(tail))
            self._tail = bytearray()

    def finish(self) -> None:
        """End the stream after the bytes written so far (a FIN goes out with or after them)."""
        if self.is_reset:
            raise LocalProtocolError("finish after reset", ErrorCode.CHANNEL_STATE_ERROR)
        if self.final_size is None:
            self.final_size = self._end
            self._fin_pending = True

    def reset(self) -> int:
        """Abandon the stream: drop every byte; returns the final size for the RESET frame.

        The final size is the highest offset sent (RFC 9000 §4.5): the flow control
        credit already used.  Later ``on_acked`` / ``on_lost`` calls are ignored.
        """
        self.is_reset = True
        self._pieces = []
        self._starts = []
        self._first = self._cursor = 0
        self._tail = bytearray()
        self._base = self._end = self.sent_offset
        self._acked.clear()
        self._lost.clear()
        self._fin_pending = False
        self.final_size = self.sent_offset
        return self.sent_offset

    # -- the packet builder ---------------------------------------------------------

    def next_chunk(
        self, max_len: int, max_new: int | None = None
    ) -> tuple[int, bytes | bytearray | memoryview, bool] | None:
        """The next STREAM frame's ``(offset, data, fin)``, or None if nothing is due.

        ``data`` is a view of a piece (which never changes) or a copy: it stays valid whatever
        the buffer does next.

        Lost ranges come first, in offset order; then new data, at most ``max_new``
        bytes of it (the flow control credit, spec/flow.md §3); then a lone FIN.
        New bytes are those at or above ``sent_offset`` before the call: charge
        them to the channel and connection ``SendCredit``.  ``fin`` is True when the
        chunk ends at the final size.
        """
        if self.is_reset or max_len < 0:
            return None
        lost = self._lost.pop_first(max_len)
        if lost is not None:
            start, end = lost
            return start, self._slice(start, end), self._ends_stream(end)
        start = self.sent_offset
        new = self.take_new(max_len, MAX_OFFSET if max_new is None else max_new)
        if new:
            return start, new, self._ends_stream(start + len(new))
        if self._fin_pending and self.sent_offset == self.final_size:
            self._fin_pending = False
            return self.sent_offset, b"", True
        return None

    def take_new(self, max_len: int, max_new: int) -> bytes | memoryview:
        """``next_chunk`` for a stream with nothing lost to resend: up to ``max_len`` new bytes
        (at most ``max_new``), starting at the old ``sent_offset``; empty when none are due.

        The bulk sender's fast path: no tuple per packet, and the bytes are a view of one
        piece (joined from two where the chunk crosses a piece's end).  The chunk ends the
        stream when ``sent_offset`` reaches ``final_size`` (``ends_stream_at``).
        """
        count = min(max_len, self._end - self.sent_offset)
        count = min(count, max_new)
        if count <= 0 or self.is_reset or self._lost:
            return b""
        start = self.sent_offset
        self.sent_offset = start + count
        return self._slice(start, start + count)

    def _take(self, start: int, count: int) -> memoryview:
        """Up to ``count`` bytes from ``start`` (``>= _base``), within the piece that holds ``start``."""
        cursor = self._cursor
        starts = self._starts
        if cursor < self._first or cursor >= len(starts) or starts[cursor] > start:
            cursor = self._locate(start)
        elif cursor + 1 < len(starts) and starts[cursor + 1] <= start:
            cursor += 1
            if cursor + 1 < len(starts) and starts[cursor + 1] <= start:
                cursor = self._locate(start)
        if cursor >= len(starts) or start - starts[cursor] >= len(self._pieces[cursor]):
            self._seal_tail()  # the bytes are still in the tail
            cursor = len(starts) - 1
        self._cursor = cursor
        at = start - starts[cursor]
        piece = self._pieces[cursor]
        if at == 0 and count >= len(piece):
            return piece
        return piece[at : at + count]

    def _locate(self, offset: int) -> int:
        """The index of the piece holding ``offset``: the last one when it is in the tail, or none is held."""
        if len(self._starts) == self._first:
            return len(self._starts)
        return max(bisect_right(self._starts, offset, self._first) - 1, self._first)

    def _slice(self, start: int, end: int) -> bytes | memoryview:
        """Bytes ``[start, end)``, all written and not released: a view of one piece, or joined."""
        first = self._take(start, end - start)
        if len(first) == end - start:
            return first
        parts: list[bytes | memoryview] = [first]
        offset = start + len(first)
        while offset < end:
            part = self._take(offset, end - offset)
            parts.append(part)
            offset += len(part)
        return b"".join(parts)

    def ends_stream_at(self, end: int) -> bool:
        """True when a chunk ending at ``end`` carries the FIN (and the FIN is then no longer pending)."""
        return self._ends_stream(end)

    def _ends_stream(self, end: int) -> bool:
        if end != self.final_size:
            return False
        self._fin_pending = False
        return True

    # -- loss recovery --------------------------------------------------------------

    def on_acked(self, offset: int, length: int, fin: bool) -> None:
        """A frame sent with ``next_chunk`` was acknowledged; releases the acked prefix."""
        if self.is_reset:
            return
        end = offset + length
        if offset < 0 or length < 0 or end > self.sent_offset:
            raise LocalProtocolError(f"ack of [{offset}, {end}) that was never sent")
        if fin:
            self._fin_acked = True
            self._fin_pending = False
        start = max(offset, self._base)
        if start >= end:
            return
        if start == self._base and not self._acked and not self._lost:
            # The common case: the acknowledged prefix simply grows.
            self._release(end)
            return
        self._lost.subtract(start, end)
        self._acked.add(start, end)
        first = self._acked.first()
        if first is not None and first[0] == self._base:
            self._acked.subtract(*first)
            self._release(first[1])

    def _release(self, base: int) -> None:
        """Every byte below ``base`` is acknowledged: drop the pieces that hold only such bytes."""
        self._base = base
        starts, pieces = self._starts, self._pieces
        first = self._first
        count = len(starts)
        while first < count and starts[first] + len(pieces[first]) <= base:
            first += 1
        if first > 16 and first * 2 > count:  # drop released entries in batches: O(1) amortised
            del starts[:first]
            del pieces[:first]
            self._cursor = max(0, self._cursor - first)
            first = 0
        else:
            for i in range(self._first, first):
                pieces[i] = _EMPTY  # free the bytes now; the entry goes with the next batch
        self._first = first
        if base == self._end and first == count:  # everything acknowledged: nothing held
            starts.clear()
            pieces.clear()
            self._first = self._cursor = 0

    def on_lost(self, offset: int, length: int, fin: bool) -> None:
        """A frame sent with ``next_chunk`` was declared lost: resend what is not acked."""
        if self.is_reset:
            return
        end = offset + length
        if offset < 0 or length < 0 or end > self.sent_offset:
            raise LocalProtocolError(f"loss of [{offset}, {end}) that was never sent")
        if fin and not self._fin_acked:
            self._fin_pending = True
        for gap in self._acked.gaps(max(offset, self._base), max(end, self._base)):
            self._lost.add(*gap)

    # -- state ----------------------------------------------------------------------

    @property
    def write_offset(self) -> int:
        """The offset the next written byte will have."""
        return self._end

    @property
    def buffered(self) -> int:
        """Bytes written and not yet acknowledged (what the send buffer's limit counts)."""
        return self._end - self._base

    @property
    def held(self) -> int:
        """Bytes in memory: ``buffered`` plus what acknowledged bytes share a piece with unacknowledged ones."""
        held = len(self._tail)
        for i in range(self._first, len(self._pieces)):
            held += len(self._pieces[i])
        return held

    @property
    def unsent(self) -> int:
        """Bytes written and never sent (they need flow control credit)."""
        return self.write_offset - self.sent_offset

    @property
    def has_retransmissions(self) -> bool:
        """True when lost data waits to be resent (needs no new credit)."""
        return bool(self._lost)

    def wants_to_send(self, max_new: int | None = None) -> bool:
        """Would ``next_chunk`` return a chunk, given ``max_new`` bytes of credit?"""
        if self.is_reset:
            return False
        if self._lost:
            return True
        if self.unsent > 0 and (max_new is None or max_new > 0):
            return True
        return self._fin_pending and self.sent_offset == self.final_size

    @property
    def is_finished_and_acked(self) -> bool:
        """True when every byte and the FIN were acknowledged: the direction is done."""
        return not self.is_reset and self.final_size is not None and self._fin_acked and self._base == self.final_size


class _Message:
    __slots__ = ("budget", "data", "message_id")

    def __init__(self, message_id: int, data: bytes, budget: int) -> None:
        self.message_id = message_id
        self.data = data
        self.budget = budget


class MessageQueue:
    """Outgoing messages of one unreliable channel (spec/flow.md §2.3).

    ``push`` queues a whole message and returns its id; ``pop(max_len)`` hands the
    oldest message that is due to the packet builder (a MESSAGE frame) and
    ``on_acked`` / ``on_lost`` report its fate.  A lost message is sent again only
    while its retransmission budget lasts.  The queue holds at most
    ``max_messages``: pushing onto a full queue drops the oldest (``dropped``).
    """

    __slots__ = (
        "_in_flight",
        "_next_id",
        "_queue",
        "_retry",
        "dropped",
        "lost",
        "max_message_size",
        "max_messages",
        "retransmissions",
    )

    def __init__(self, *, max_messages: int = 64, max_message_size: int = 1100, retransmissions: int = 0) -> None:
        if max_messages < 1 or max_message_size < 0 or retransmissions < 0:
            raise LocalProtocolError("bad message queue parameters")
        self.max_messages = max_messages
        #: Larger messages are refused; the connection sets it so a message fits a packet.
        self.max_message_size = max_message_size
        #: Default retransmission budget of each message.
        self.retransmissions = retransmissions
        #: Messages dropped unsent because the queue was full.
        self.dropped = 0
        #: Messages lost in transit with no retransmission budget left.
        self.lost = 0
        self._next_id = 0
        self._queue: deque[_Message] = deque()
        self._retry: deque[_Message] = deque()
        self._in_flight: dict[int, _Message] = {}

    def push(self, message: bytes, retransmissions: int | None = None) -> int:
        """Queue ``message``; returns its message id.  Drops the oldest if full."""
        if len(message) > self.max_message_size:
            raise LocalProtocolError(
                f"message of {len(message)} bytes exceeds {self.max_message_size}", ErrorCode.RECORD_TOO_LARGE
            )
        budget = self.retransmissions if retransmissions is None else retransmissions
        if budget < 0:
            raise LocalProtocolError("retransmissions must not be negative")
        if len(self._queue) + len(self._retry) >= self.max_messages:
            (self._retry or self._queue).popleft()
            self.dropped += 1
        message_id = self._next_id
        self._next_id += 1
        self._queue.append(_Message(message_id, bytes(message), budget))
        return message_id

    def pop(self, max_len: int) -> tuple[int, bytes] | None:
        """The next ``(message_id, data)`` if it fits in ``max_len`` bytes, else None.

        Retransmissions go before new messages.
        """
        source = self._retry or self._queue
        if not source or len(source[0].data) > max_len:
            return None
        message = source.popleft()
        if message.budget > 0:
            self._in_flight[message.message_id] = message
            if len(self._in_flight) > self.max_messages:
                # Forget the oldest tracked message: it will not be retransmitted.
                del self._in_flight[next(iter(self._in_flight))]
        return message.message_id, message.data

    def on_acked(self, message_id: int) -> None:
        """The MESSAGE frame carrying ``message_id`` was acknowledged."""
        self._in_flight.pop(message_id, None)

    def on_lost(self, message_id: int) -> None:
        """The MESSAGE frame carrying ``message_id`` was lost: retransmit if the budget allows."""
        message = self._in_flight.pop(message_id, None)
        if message is None:
            self.lost += 1
            return
        message.budget -= 1
        if len(self._queue) + len(self._retry) >= self.max_messages:
            self.dropped += 1
            return
        self._retry.append(message)

    def __len__(self) -> int:
        """Messages waiting to be sent."""
        return len(self._queue) + len(self._retry)
