"""The daemon's numbered events (spec/appapi.md §5): what the app API's push stream serves.

Every event gets the next sequence number (1, 2, ...).  The log keeps every event that is among
the last ``keep_count`` (10,000) *or* younger than ``keep_seconds`` (one hour), up to a hard
cap (``max_events``) so that a flood cannot grow it without bound.  A client follows from a
number: it gets what it missed that is still kept, then every new event as it happens; when
some of what it asked for is gone, the first item it gets says which numbers it missed
(``{"type": "missed", "from": a, "to": b}``) instead of skipping them silently.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator, Callable
from typing import Any

import trio


class EventLog:
    def __init__(
        self,
        *,
        keep_count: int = 10_000,
        keep_seconds: float = 3600.0,
        max_events: int = 200_000,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.keep_count, self.keep_seconds, self.max_events = keep_count, keep_seconds, max_events
        self._clock = clock
        self._start = clock()
        self._events: collections.deque[tuple[float, dict[str, Any]]] = collections.deque()
        self.last_seq = 0
        self._changed = trio.Event()

    def append(self, kind: str, **fields: Any) -> int:
        """Record an event of type ``kind``; returns its number."""
        self.last_seq += 1
        now = self._clock()
        at = round(now - self._start, 4)  # seconds since the log began: events timed from outside
        self._events.append((now, {"seq": self.last_seq, "type": kind, "at": at, **fields}))
        self._trim(now)
        self._changed.set()
        self._changed = trio.Event()
        return self.last_seq

    @property
    def first_seq(self) -> int:
        """The oldest number still kept (``last_seq + 1`` when the log is empty)."""
        return self._events[0][1]["seq"] if self._events else self.last_seq + 1

    def since(self, after: int) -> list[dict[str, Any]]:
        """The events numbered above ``after`` still kept, after a ``missed`` item if some are gone."""
        out: list[dict[str, Any]] = []
        first = self.first_seq
        if after + 1 < first:
            out.append({"type": "missed", "from": after + 1, "to": first - 1})
            after = first - 1
        skip = after + 1 - first  # events are numbered without gaps
        out += [event for i, (_, event) in enumerate(self._events) if i >= skip]
        return out

    async def follow(self, after: int) -> AsyncIterator[dict[str, Any]]:
        """Everything after ``after`` (as ``since``), then each new event as it is appended."""
        while True:
            changed = self._changed
            batch = self.since(after)
            for item in batch:
                yield item
                if "seq" in item:
                    after = item["seq"]
                elif item["type"] == "missed":
                    after = item["to"]
            if not batch:
                await changed.wait()

    def _trim(self, now: float) -> None:
        events = self._events
        while events and (
            len(events) > self.max_events or (len(events) > self.keep_count and now - events[0][0] > self.keep_seconds)
        ):
            events.popleft()
