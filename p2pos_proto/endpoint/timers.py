"""One deadline per session in a heap: the endpoint's next timer in O(log n), not O(sessions).

``TimerHeap.set(key, deadline)`` records a session's deadline (None removes it);
``due(now)`` pops the keys whose deadline has passed; ``next()`` is the
earliest deadline.  A changed deadline pushes a new entry and leaves the old
one in the heap: it is skipped when it reaches the top (lazy deletion, as
quinn's and aioquic's drivers keep one timer per connection).  When stale
entries outnumber live ones the heap is rebuilt, so its size stays within a
small factor of the number of sessions.
"""

from __future__ import annotations

import heapq


class TimerHeap:
    """Deadlines keyed by session index."""

    __slots__ = ("_deadlines", "_heap")

    def __init__(self) -> None:
        self._deadlines: dict[int, float] = {}
        self._heap: list[tuple[float, int]] = []

    def __len__(self) -> int:
        return len(self._deadlines)

    def get(self, key: int) -> float | None:
        return self._deadlines.get(key)

    def set(self, key: int, deadline: float | None) -> None:
        """Record ``key``'s deadline (None: it has none).  Unchanged deadlines cost a dict look-up."""
        current = self._deadlines.get(key)
        if deadline == current:
            return
        if deadline is None:
            del self._deadlines[key]
            return
        self._deadlines[key] = deadline
        heapq.heappush(self._heap, (deadline, key))
        if len(self._heap) > 2 * len(self._deadlines) + 64:
            self._heap = [(d, k) for k, d in self._deadlines.items()]
            heapq.heapify(self._heap)

    def next(self) -> float | None:
        """The earliest live deadline."""
        heap = self._heap
        deadlines = self._deadlines
        while heap:
            deadline, key = heap[0]
            if deadlines.get(key) == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    def due(self, now: float) -> list[int]:
        """Remove and return every key whose deadline is at or before ``now``, earliest first."""
        heap = self._heap
        deadlines = self._deadlines
        keys: list[int] = []
        while heap and heap[0][0] <= now:
            deadline, key = heapq.heappop(heap)
            if deadlines.get(key) == deadline:
                del deadlines[key]
                keys.append(key)
        return keys
