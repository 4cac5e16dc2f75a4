"""The daemon's numbered events (adapters/eventlog.py)."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from p2pos.adapters.eventlog import EventLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_numbers_and_resume() -> None:
    log = EventLog(clock=Clock())
    assert [log.append("peer", peer=str(i)) for i in range(3)] == [1, 2, 3]
    assert [e["seq"] for e in log.since(1)] == [2, 3]
    assert log.since(3) == []
    assert log.since(0)[0] == {"seq": 1, "type": "peer", "at": 0.0, "peer": "0"}


def test_keeps_the_last_n_or_the_last_hour_and_says_what_was_missed() -> None:
    clock = Clock()
    log = EventLog(keep_count=3, keep_seconds=60.0, clock=clock)
    for _ in range(5):
        log.append("x")
    assert log.first_seq == 1  # all younger than a minute
    clock.now = 61.0
    log.append("y")  # 6 events, the first 5 over a minute old: only the last 3 stay
    assert log.first_seq == 4
    items = log.since(1)
    assert items[0] == {"type": "missed", "from": 2, "to": 3}
    assert [e["seq"] for e in items[1:]] == [4, 5, 6]


def test_a_flood_is_capped() -> None:
    log = EventLog(keep_count=10, keep_seconds=3600.0, max_events=100, clock=Clock())
    for _ in range(1000):
        log.append("flood")
    assert log.first_seq == 901 and log.last_seq == 1000


async def test_follow_gets_the_backlog_then_live_events() -> None:
    log = EventLog()
    log.append("a")
    got: list[dict[str, Any]] = []

    async def reader() -> None:
        async for item in log.follow(0):
            got.append(item)
            if len(got) == 3:
                return

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            log.append("b")
            await trio.testing.wait_all_tasks_blocked()
            log.append("c")
    assert [g["type"] for g in got] == ["a", "b", "c"]
