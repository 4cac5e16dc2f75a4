"""The receive side of one reliable stream: reassembly, final size, flow control.

spec/flow.md §1-§3 (RFC 9000 §2.2, §4.5).  STREAM / STREAM_FIN frames call
``receive_untrusted(offset, data, fin)``; the application drains contiguous
bytes with ``read``.  Data may arrive in any order, duplicated or overlapping:
the first copy of each byte wins and later copies are not compared (spec/flow.md
§2.1).  Out-of-order data is buffered, but never beyond the limit advertised by the
channel's ``ReceiveWindow``, so memory stays bounded by the window.

After ``receive_untrusted``, charge its return value to the connection window
(``ReceiveWindow.receive_increment_untrusted``); after ``read``, call the
connection window's ``on_consumed(len(data))`` (the channel window is updated
here).  Then check both windows' ``should_send_update()``.
"""

from __future__ import annotations

from ..common.ranges import RangeSet
from ..errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from .flow import DEFAULT_CHANNEL_MAX_WINDOW, DEFAULT_CHANNEL_WINDOW, MAX_OFFSET, ReceiveWindow


def joined(pieces: list[bytes]) -> bytes:
    """``read_pieces``' pieces as one ``bytes`` (the piece itself when there is one)."""
    if not pieces:
        return b""
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


class ReceiveBuffer:
    """Reassembles one stream direction from frames in any order."""

    __slots__ = ("_chunks", "_read_offset", "_received", "buffered", "final_size", "is_reset", "window")

    def __init__(self, window: ReceiveWindow | None = None) -> None:
        #: The channel-level flow control window (spec/flow.md §3).
        if window is None:
            window = ReceiveWindow(DEFAULT_CHANNEL_WINDOW, DEFAULT_CHANNEL_MAX_WINDOW, now=0.0)
        self.window = window
        #: The stream's final size once a FIN or RESET announced it.
        self.final_size: int | None = None
        #: True after RESET: buffered data was dropped, later data is ignored.
        self.is_reset = False
        #: Bytes held in memory, not yet read.
        self.buffered = 0
        #: Non-overlapping unread pieces keyed by their start offset.
        self._chunks: dict[int, bytes] = {}
        #: Offsets ever received (the read prefix is one interval starting at 0).
        self._received = RangeSet()
        self._read_offset = 0

    # -- from the network -----------------------------------------------------------

    def receive_untrusted(self, offset: int, data: bytes, fin: bool) -> int:
        """Take one STREAM (``fin`` False) or STREAM_FIN frame's data.

        Returns the increase of the highest received offset: charge it to the
        connection window.  Raises RemoteProtocolError with FINAL_SIZE_ERROR or
        FLOW_CONTROL_ERROR (spec/flow.md §6); the connection then closes.
        """
        end = offset + len(data)
        if offset < 0 or end > MAX_OFFSET:
            raise RemoteProtocolError(f"stream data ends at {end}, beyond 2^62-1", ErrorCode.FLOW_CONTROL_ERROR)
        self._check_final_size(end, fin)
        increase = self.window.receive_untrusted(end)
        if fin:
            self.final_size = end
        if self.is_reset:
            return increase
        start = max(offset, self._read_offset)
        if start >= end:
            return increase
        if start == offset and self._received.extend_end(start, end):
            # In order, right after everything received so far: keep the frame's bytes as they are.
            self._chunks[start] = data if isinstance(data, bytes) else bytes(data)
            self.buffered += end - start
            return increase
        view = memoryview(data)
        for gap_start, gap_end in self._received.gaps(start, end):
            self._chunks[gap_start] = bytes(view[gap_start - offset : gap_end - offset])
            self.buffered += gap_end - gap_start
        self._received.add(start, end)
        return increase

    def receive_reset_untrusted(self, final_size: int) -> int:
        """The peer reset the stream (RESET frame) at ``final_size``.

        Drops buffered data.  Returns the increase of the highest received offset
        (charge it to the connection window).  The bytes never read are released:
        call the connection window's ``on_consumed(final_size - bytes_read)``
        (spec/flow.md §3.3).
        """
        if final_size > MAX_OFFSET:
            raise RemoteProtocolError(f"final size {final_size} beyond 2^62-1", ErrorCode.FLOW_CONTROL_ERROR)
        self._check_final_size(final_size, True)
        increase = self.window.receive_untrusted(final_size)
        self.final_size = final_size
        self.is_reset = True
        self._chunks.clear()
        self.buffered = 0
        return increase

    def _check_final_size(self, end: int, fin: bool) -> None:
        """spec/flow.md §1: the final size is fixed once known and bounds all data."""
        highest = self.window.highest_received
        if self.final_size is not None:
            if end > self.final_size or (fin and end != self.final_size):
                raise RemoteProtocolError(
                    f"data ends at {end} but the final size is {self.final_size}", ErrorCode.FINAL_SIZE_ERROR
                )
        elif fin and end < highest:
            raise RemoteProtocolError(
                f"final size {end} below data already received up to {highest}", ErrorCode.FINAL_SIZE_ERROR
            )

    # -- to the application ---------------------------------------------------------

    def read(self, max_bytes: int | None = None) -> bytes:
        """Return up to ``max_bytes`` contiguous bytes (all readable when None).

        Returns ``b""`` when nothing is readable; ``is_finished`` tells whether the
        stream ended.  Counts the bytes as consumed by the channel window; the
        caller counts them on the connection window.
        """
        return joined(self.read_pieces(max_bytes))

    def read_pieces(self, max_bytes: int | None = None) -> list[bytes]:
        """``read``, as the pieces the bytes arrived in (in order, none empty), not joined: for a
        writer that gathers them (``socket.sendmsg``) and so copies them only once."""
        if max_bytes is not None and max_bytes < 0:
            raise LocalProtocolError("max_bytes must not be negative")
        pieces: list[bytes] = []
        remaining = self.readable if max_bytes is None else min(max_bytes, self.readable)
        taken = 0
        chunks = self._chunks
        while remaining > 0:
            piece = chunks.pop(self._read_offset)
            if len(piece) > remaining:
                chunks[self._read_offset + remaining] = piece[remaining:]
                piece = piece[:remaining]
            pieces.append(piece)
            self._read_offset += len(piece)
            remaining -= len(piece)
            taken += len(piece)
        if taken:
            self.buffered -= taken
            self.window.on_consumed(taken)
        return pieces

    @property
    def readable(self) -> int:
        """How many contiguous bytes ``read`` can return now."""
        if self.is_reset:
            return 0
        return self._received.first_gap(self._read_offset) - self._read_offset

    @property
    def bytes_read(self) -> int:
        """The offset of the next byte ``read`` returns."""
        return self._read_offset

    @property
    def is_finished(self) -> bool:
        """True when every byte up to the final size was read (never after a reset)."""
        return not self.is_reset and self.final_size is not None and self._read_offset == self.final_size

    @property
    def fragments(self) -> int:
        """The number of separate received ranges (1 when nothing is out of order)."""
        return len(self._received)
