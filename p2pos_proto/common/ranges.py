"""A set of integers kept as sorted, merged half-open intervals (spec/flow.md §1).

Stream buffers use it for the byte ranges that were acknowledged, received or
lost: ``SendBuffer`` (sendbuf.py) and ``ReceiveBuffer`` (recvbuf.py).  Ranges are
``[start, end)``; touching ranges merge, so ``[0, 5)`` plus ``[5, 9)`` is the one
range ``[0, 9)``.  Lookups bisect two parallel lists of starts and ends; adding
or removing a range costs O(log n) plus the list splice, and streams that mostly
arrive in order keep n tiny.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator

from ..errors import LocalProtocolError


class RangeSet:
    """Disjoint, non-adjacent ``[start, end)`` intervals in increasing order."""

    __slots__ = ("_ends", "_starts")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for start, end in ranges:
            self.add(start, end)

    # -- changes ------------------------------------------------------------------

    def add(self, start: int, end: int) -> None:
        """Include ``[start, end)``; an empty range (``start == end``) changes nothing."""
        _check(start, end)
        if start == end:
            return
        starts, ends = self._starts, self._ends
        # Intervals i..j-1 overlap or touch [start, end): end >= start and start <= end.
        i = bisect_left(ends, start)
        j = bisect_right(starts, end)
        if i < j:
            start = min(start, starts[i])
            end = max(end, ends[j - 1])
        starts[i:j] = [start]
        ends[i:j] = [end]

    def subtract(self, start: int, end: int) -> None:
        """Remove ``[start, end)`` (parts not in the set are ignored)."""
        _check(start, end)
        if start == end:
            return
        starts, ends = self._starts, self._ends
        # Intervals i..j-1 overlap [start, end): end > start and start < end.
        i = bisect_right(ends, start)
        j = bisect_left(starts, end)
        if i >= j:
            return
        new_starts: list[int] = []
        new_ends: list[int] = []
        if starts[i] < start:
            new_starts.append(starts[i])
            new_ends.append(start)
        if ends[j - 1] > end:
            new_starts.append(end)
            new_ends.append(ends[j - 1])
        starts[i:j] = new_starts
        ends[i:j] = new_ends

    def extend_end(self, start: int, end: int) -> bool:
        """Add ``[start, end)`` if it starts exactly where the highest interval ends.

        The in-order fast path of the stream buffers: O(1), no bisect.  Returns
        False, changing nothing, when the set is empty, ``start`` is elsewhere
        or the range is empty; then call ``add``.
        """
        ends = self._ends
        if ends and ends[-1] == start < end:
            ends[-1] = end
            return True
        return False

    def clear(self) -> None:
        """Remove everything."""
        self._starts.clear()
        self._ends.clear()

    def pop_first(self, max_len: int) -> tuple[int, int] | None:
        """Remove and return the lowest ``[start, end)`` of at most ``max_len`` integers.

        Returns None when the set is empty or ``max_len`` is not positive.
        """
        if not self._starts or max_len <= 0:
            return None
        start = self._starts[0]
        end = min(self._ends[0], start + max_len)
        if end == self._ends[0]:
            del self._starts[0]
            del self._ends[0]
        else:
            self._starts[0] = end
        return start, end

    # -- queries ------------------------------------------------------------------

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int):
            return False
        i = bisect_right(self._starts, value) - 1
        return i >= 0 and value < self._ends[i]

    def covers(self, start: int, end: int) -> bool:
        """Is every integer of ``[start, end)`` in the set?  True for an empty range."""
        _check(start, end)
        if start == end:
            return True
        i = bisect_right(self._starts, start) - 1
        return i >= 0 and end <= self._ends[i]

    def interval_at(self, value: int) -> tuple[int, int] | None:
        """The interval holding ``value``, or None."""
        i = bisect_right(self._starts, value) - 1
        if i >= 0 and value < self._ends[i]:
            return self._starts[i], self._ends[i]
        return None

    def first_gap(self, start: int = 0) -> int:
        """The smallest integer ``>= start`` that is not in the set."""
        i = bisect_right(self._starts, start) - 1
        if i >= 0 and start < self._ends[i]:
            return self._ends[i]
        return start

    def gaps(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of ``[start, end)`` not in the set, in order."""
        _check(start, end)
        result: list[tuple[int, int]] = []
        if start == end:
            return result
        starts, ends = self._starts, self._ends
        position = start
        for i in range(bisect_right(ends, start), len(starts)):
            if starts[i] >= end:
                break
            if starts[i] > position:
                result.append((position, starts[i]))
            position = ends[i]
        if position < end:
            result.append((position, end))
        return result

    def first(self) -> tuple[int, int] | None:
        """The lowest interval, or None."""
        return (self._starts[0], self._ends[0]) if self._starts else None

    def last(self) -> tuple[int, int] | None:
        """The highest interval, or None."""
        return (self._starts[-1], self._ends[-1]) if self._starts else None

    @property
    def size(self) -> int:
        """How many integers the set holds."""
        return sum(self._ends) - sum(self._starts)

    def __len__(self) -> int:
        """The number of intervals (not of integers: see ``size``)."""
        return len(self._starts)

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(list(zip(self._starts, self._ends, strict=True)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RangeSet):
            return NotImplemented
        return self._starts == other._starts and self._ends == other._ends

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"RangeSet({list(self)!r})"


def _check(start: int, end: int) -> None:
    if start < 0 or end < start:
        raise LocalProtocolError(f"bad range [{start}, {end})")
