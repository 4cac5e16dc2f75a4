"""The outbox and inbox every carrier transport shares (adapters/carriers/queues.py)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from p2pos.adapters.carriers.queues import CarrierLost, Inbox, Outbox, report

A, B = ("127.0.0.1", 1000), ("127.0.0.1", 2000)


async def test_the_outbox_takes_what_fits_and_makes_the_rest_wait() -> None:
    box = Outbox(limit=3)
    assert box.put_now([b"1", b"2"], A) == 2
    assert box.put_now([b"3", b"4", b"5"], B) == 1  # one place left
    assert box.put_now([b"4"], B) == 0
    done = trio.Event()

    async def putter() -> None:
        await box.put([b"4", b"5"], B)
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(putter)
        await trio.testing.wait_all_tasks_blocked()
        assert not done.is_set()  # waits for room
        assert await box.take() == [([b"1", b"2"], A), ([b"3"], B)]
        await done.wait()
    assert await box.take() == [([b"4", b"5"], B)]


async def test_a_lost_outbox_counts_everything_and_ends_its_reader() -> None:
    box = Outbox(limit=2)
    box.put_now([b"1", b"2"], A)
    waiting_put_returned = trio.Event()

    async def putter() -> None:
        await box.put([b"3"], A)
        waiting_put_returned.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(putter)
        await trio.testing.wait_all_tasks_blocked()
        box.lose("gone")
        await waiting_put_returned.wait()
    assert box.dropped == 3  # two left in the box, one put after the loss
    assert box.put_now([b"4", b"5"], A) == 2 and box.dropped == 5
    with pytest.raises(trio.EndOfChannel, match="gone"):
        await box.take()


async def test_the_inbox_gives_runs_by_address_and_bounds_its_readers() -> None:
    box = Inbox(limit=4)
    for data, addr in [(b"1", A), (b"2", A), (b"3", B), (b"4", A)]:
        await box.put(data, addr)
    blocked = trio.Event()

    async def late() -> None:
        await box.put(b"5", B)
        blocked.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(late)
        await trio.testing.wait_all_tasks_blocked()
        assert not blocked.is_set()
        assert await box.take_runs() == [([b"1", b"2"], A), ([b"3"], B), ([b"4"], A)]
    assert await box.take_runs() == [([b"5"], B)]


def test_a_failing_callback_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: CarrierLost) -> None:
        raise RuntimeError("callback bug")

    report(broken, CarrierLost(kind="turn", address=None, reason="server gone"))
    assert "server gone" in caplog.text and "callback bug" in caplog.text
