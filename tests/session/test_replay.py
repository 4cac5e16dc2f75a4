"""ReplayWindow (spec/record.md §5): edge cases and a reference model."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pos.proto.session.replay import WINDOW, ReplayWindow

RING_BITS = 64 * 128


def accept(window: ReplayWindow, counter: int) -> bool:
    """What the record layer does: check, then update only if fresh."""
    if not window.check(counter):
        return False
    window.update(counter)
    return True


def test_window_constant() -> None:
    assert WINDOW == RING_BITS - 64


def test_first_counter_zero() -> None:
    window = ReplayWindow()
    assert window.top == -1
    assert accept(window, 0)
    assert window.top == 0
    assert not accept(window, 0)


def test_first_counter_need_not_be_zero() -> None:
    window = ReplayWindow()
    assert accept(window, 5)
    assert accept(window, 0)
    assert not accept(window, 5)


def test_strictly_increasing() -> None:
    window = ReplayWindow()
    for n in range(3 * RING_BITS):
        assert accept(window, n), n
    assert window.top == 3 * RING_BITS - 1


def test_duplicates_rejected() -> None:
    window = ReplayWindow()
    for n in (0, 1, 2, 100, 64, 63):
        assert accept(window, n)
        assert not accept(window, n)
    for n in (0, 1, 2, 100, 64, 63):
        assert not window.check(n)


def test_out_of_order_within_window_accepted_once() -> None:
    window = ReplayWindow()
    assert accept(window, 5000)
    order = [4999, 10, 4000, 64, 63, 65, 0, 2000]
    for n in order:
        assert accept(window, n), n
    for n in order:
        assert not accept(window, n), n
    untouched = [1, 62, 66, 4998]
    assert all(window.check(n) for n in untouched)


def test_window_boundary() -> None:
    for top in (WINDOW + 1, WINDOW + 17, 10**6 + 63, 10**6 + 64, 2**64 - 1):
        window = ReplayWindow()
        assert accept(window, top)
        assert window.check(top - (WINDOW - 1)), top
        assert not window.check(top - WINDOW), top
        assert not window.check(top - WINDOW - 1), top
        assert accept(window, top - (WINDOW - 1))
        assert not accept(window, top - (WINDOW - 1))
        assert not accept(window, top - WINDOW)


def test_boundary_after_sliding() -> None:
    window = ReplayWindow()
    for n in range(0, 20000, 7):
        assert accept(window, n)
    top = window.top
    assert window.check(top - (WINDOW - 1)) == ((top - (WINDOW - 1)) % 7 != 0)
    assert not window.check(top - WINDOW)


def test_big_jump_clears_the_ring() -> None:
    window = ReplayWindow()
    for n in range(200):
        accept(window, n)
    jump = 200 + 10 * RING_BITS + 5
    assert accept(window, jump)
    # Everything within the window below the new top is fresh, though bits for
    # counters congruent modulo the ring size were set before the jump.
    for n in range(jump - WINDOW + 1, jump):
        assert window.check(n), n
    assert not window.check(199)
    assert not window.check(jump - WINDOW)


def test_jump_of_exactly_the_ring_size() -> None:
    window = ReplayWindow()
    for n in range(64):
        accept(window, n)
    assert accept(window, RING_BITS)  # same ring slot as counters 0..63
    for n in range(RING_BITS - WINDOW + 1, RING_BITS):
        assert window.check(n), n


def test_jumps_across_block_boundaries() -> None:
    window = ReplayWindow()
    assert accept(window, 63)  # last bit of block 0
    assert accept(window, 64)  # first bit of block 1
    assert accept(window, 191)  # skips block 2 into block 2's last bit
    assert accept(window, 62)
    assert window.check(65)
    assert window.check(128)
    assert not window.check(63)
    assert not window.check(64)
    assert accept(window, 64 * 130 + 1)  # wraps the ring: blocks 2..130 are cleared
    top = 64 * 130 + 1
    for n in (top - (WINDOW - 1), 64 * 129, 64 * 130):
        assert window.check(n), n
    assert not window.check(top - WINDOW)
    assert not window.check(191)  # now older than the window


def test_check_does_not_mutate() -> None:
    window = ReplayWindow()
    for n in (10, 3, 7000):
        accept(window, n)
    snapshot = (window.top, list(window.blocks))
    for n in (0, 3, 10, 11, 6999, 7000, 7001, 10**9, 2**64 - 1):
        window.check(n)
    assert (window.top, list(window.blocks)) == snapshot


def test_largest_counters() -> None:
    window = ReplayWindow()
    top = 2**64 - 1
    assert accept(window, top - 1)
    assert accept(window, top)
    assert not accept(window, top)
    assert not accept(window, top - 1)
    assert accept(window, top - 2)


class ModelWindow:
    """The specification as a set: fresh iff unseen and less than WINDOW below the top."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.top = -1

    def accept(self, counter: int) -> bool:
        if counter in self.seen or (counter <= self.top and self.top - counter >= WINDOW):
            return False
        self.seen.add(counter)
        self.top = max(self.top, counter)
        return True


def counters(base: int) -> st.SearchStrategy[int]:
    near = st.integers(min_value=-2 * RING_BITS, max_value=2 * RING_BITS).map(lambda d: base + d)
    return st.one_of(near, st.integers(min_value=0, max_value=2**64 - 1)).filter(lambda n: 0 <= n < 2**64)


@settings(max_examples=150, deadline=None)
@given(
    base=st.sampled_from([0, WINDOW, 2**32, 2**64 - 1 - 3 * RING_BITS, 2**64 - 1]),
    data=st.data(),
)
def test_matches_reference_model(base: int, data: st.DataObject) -> None:
    seq = data.draw(st.lists(counters(base), max_size=200))
    window, model = ReplayWindow(), ModelWindow()
    for counter in seq:
        expected = model.accept(counter)
        assert window.check(counter) == expected, counter
        if expected:
            window.update(counter)
        assert window.top == model.top


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.integers(min_value=-WINDOW - 5, max_value=3 * RING_BITS), max_size=300))
def test_random_walk_matches_model(steps: list[int]) -> None:
    """A walk around a moving top: deltas that hit the window edges often."""
    window, model = ReplayWindow(), ModelWindow()
    position = 2**40
    for delta in steps:
        counter = max(0, position + delta)
        expected = model.accept(counter)
        assert window.check(counter) == expected
        if expected:
            window.update(counter)
        position = max(position, counter)


def test_the_ring_grows_only_as_the_counters_do() -> None:
    """A quiet connection keeps a short ring (memory per idle session); growing keeps every answer."""
    window = ReplayWindow()
    for n in range(100):
        assert accept(window, n)
    assert len(window.blocks) == 2
    assert accept(window, 1000)  # block 15: doubled to 16 blocks, counters below kept
    assert len(window.blocks) == 16
    assert not accept(window, 99) and accept(window, 100) and window.check(999)
    assert accept(window, RING_BITS + 70)  # past the full ring's end: 128 blocks, then it wraps
    assert len(window.blocks) == 128
    assert not window.check(70) and window.check(RING_BITS + 69) and not window.check(RING_BITS + 70)
