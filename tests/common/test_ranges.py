"""RangeSet (spec/flow.md §1): edge cases and a reference model (a Python set)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pos.proto.common.ranges import RangeSet
from p2pos.proto.errors import LocalProtocolError

LIMIT = 120


def test_add_merges_overlapping_and_touching() -> None:
    ranges = RangeSet()
    ranges.add(10, 20)
    ranges.add(30, 40)
    assert list(ranges) == [(10, 20), (30, 40)]
    ranges.add(20, 30)  # touches both: one interval
    assert list(ranges) == [(10, 40)]
    ranges.add(0, 5)
    ranges.add(50, 60)
    ranges.add(3, 55)
    assert list(ranges) == [(0, 60)]
    assert ranges.size == 60
    assert len(ranges) == 1


def test_empty_ranges_change_nothing() -> None:
    ranges = RangeSet([(5, 9)])
    ranges.add(7, 7)
    ranges.add(20, 20)
    ranges.subtract(6, 6)
    assert list(ranges) == [(5, 9)]
    assert ranges.covers(100, 100)
    assert ranges.gaps(3, 3) == []


def test_subtract_splits_and_trims() -> None:
    ranges = RangeSet([(0, 100)])
    ranges.subtract(10, 20)
    assert list(ranges) == [(0, 10), (20, 100)]
    ranges.subtract(0, 5)
    ranges.subtract(90, 200)
    assert list(ranges) == [(5, 10), (20, 90)]
    ranges.subtract(10, 20)  # exactly the hole: nothing changes
    assert list(ranges) == [(5, 10), (20, 90)]
    ranges.subtract(0, 1000)
    assert not ranges
    assert list(ranges) == []


def test_queries() -> None:
    ranges = RangeSet([(5, 10), (20, 30)])
    assert 5 in ranges and 9 in ranges and 20 in ranges
    assert 10 not in ranges and 4 not in ranges and 30 not in ranges
    assert "5" not in ranges
    assert ranges.first_gap() == 0
    assert ranges.first_gap(5) == 10
    assert ranges.first_gap(25) == 30
    assert ranges.first_gap(12) == 12
    assert ranges.interval_at(7) == (5, 10)
    assert ranges.interval_at(10) is None
    assert ranges.gaps(0, 40) == [(0, 5), (10, 20), (30, 40)]
    assert ranges.gaps(7, 25) == [(10, 20)]
    assert ranges.gaps(21, 29) == []
    assert ranges.covers(5, 10) and not ranges.covers(5, 11) and not ranges.covers(9, 21)
    assert ranges.first() == (5, 10) and ranges.last() == (20, 30)
    assert RangeSet().first() is None and RangeSet().last() is None
    assert repr(ranges) == "RangeSet([(5, 10), (20, 30)])"
    assert ranges == RangeSet([(20, 30), (5, 10)])
    assert ranges != RangeSet([(5, 10)])


def test_pop_first() -> None:
    ranges = RangeSet([(5, 10), (20, 30)])
    assert ranges.pop_first(0) is None
    assert ranges.pop_first(3) == (5, 8)
    assert ranges.pop_first(10) == (8, 10)
    assert ranges.pop_first(100) == (20, 30)
    assert ranges.pop_first(1) is None


def test_bad_ranges_raise() -> None:
    ranges = RangeSet()
    with pytest.raises(LocalProtocolError):
        ranges.add(5, 4)
    with pytest.raises(LocalProtocolError):
        ranges.add(-1, 4)
    with pytest.raises(LocalProtocolError):
        ranges.subtract(3, 2)


def test_many_in_order_adds_stay_one_interval() -> None:
    ranges = RangeSet()
    for start in range(0, 1_000_000, 1000):
        ranges.add(start, start + 1000)
    assert list(ranges) == [(0, 1_000_000)]


def as_set(ranges: RangeSet) -> set[int]:
    return {value for start, end in ranges for value in range(start, end)}


operation = st.tuples(
    st.sampled_from(["add", "subtract", "pop"]),
    st.integers(min_value=0, max_value=LIMIT),
    st.integers(min_value=0, max_value=30),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(operation, max_size=60))
def test_matches_reference_model(ops: list[tuple[str, int, int]]) -> None:
    ranges = RangeSet()
    model: set[int] = set()
    for name, start, length in ops:
        end = start + length
        if name == "add":
            ranges.add(start, end)
            model |= set(range(start, end))
        elif name == "subtract":
            ranges.subtract(start, end)
            model -= set(range(start, end))
        else:
            popped = ranges.pop_first(length)
            if not model or length == 0:
                assert popped is None
            else:
                low = min(model)
                assert popped is not None and popped[0] == low
                expected_end = low
                while expected_end in model and expected_end - low < length:
                    expected_end += 1
                assert popped[1] == expected_end
                model -= set(range(*popped))
        # Invariants: sorted, disjoint, not touching, non-empty intervals.
        intervals = list(ranges)
        for (_, end_a), (start_b, _) in itertools.pairwise(intervals):
            assert end_a < start_b
        assert all(start < end for start, end in intervals)
        assert as_set(ranges) == model
        assert ranges.size == len(model)
        probe_start, probe_end = start, start + length
        assert ranges.covers(probe_start, probe_end) == model.issuperset(range(probe_start, probe_end))
        gap_values = {v for a, b in ranges.gaps(probe_start, probe_end) for v in range(a, b)}
        assert gap_values == set(range(probe_start, probe_end)) - model
        first_gap = probe_start
        while first_gap in model:
            first_gap += 1
        assert ranges.first_gap(probe_start) == first_gap
        assert (probe_start in ranges) == (probe_start in model)


def test_extend_end_is_add_at_the_top_only() -> None:
    ranges = RangeSet([(0, 10), (20, 30)])
    assert ranges.extend_end(30, 35) and list(ranges) == [(0, 10), (20, 35)]
    # Anywhere else (inside, below, past a gap, empty) it changes nothing and says so.
    for start, end in ((10, 12), (25, 40), (36, 40), (35, 35), (0, 5)):
        assert not ranges.extend_end(start, end)
    assert list(ranges) == [(0, 10), (20, 35)]
    assert not RangeSet().extend_end(0, 5)


@given(st.lists(st.tuples(st.integers(min_value=0, max_value=LIMIT), st.integers(min_value=0, max_value=30))))
def test_extend_end_agrees_with_add(ops: list[tuple[int, int]]) -> None:
    fast, slow = RangeSet(), RangeSet()
    for start, length in ops:
        if not fast.extend_end(start, start + length):
            fast.add(start, start + length)
        slow.add(start, start + length)
        assert list(fast) == list(slow)
