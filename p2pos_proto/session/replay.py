"""Sliding anti-replay window over 64-bit record counters (spec/record.md §5).

The RFC 6479 / WireGuard design: a ring of 128 blocks of 64 bits.  Counters
more than ``WINDOW`` (8128) below the highest authenticated counter are too
old; within the window each counter is accepted once.  The ring starts with
``_FIRST_BLOCKS`` blocks and doubles while the counters have not yet reached its
end (so it has never wrapped and a block's index is its counter >> 6): a quiet
connection, which has authenticated a few hundred records, keeps a few blocks,
not 1 KiB.  ``check`` is called
before decryption (cheap rejection), ``update`` only after the record
authenticated, so forged packets never move the window.
"""

from __future__ import annotations

from typing import Final

_BLOCK_BITS: Final = 64
_BLOCKS: Final = 128
_FIRST_BLOCKS: Final = 2
RING_MASK: Final = _BLOCKS - 1
#: Counters accepted below the highest one seen (ring size minus one block).
WINDOW: Final = _BLOCK_BITS * (_BLOCKS - 1)


class ReplayWindow:
    """Tracks which counters have been accepted."""

    __slots__ = ("blocks", "top")

    def __init__(self) -> None:
        #: The ring of 64-bit blocks (the record layer updates it inline on its fast path); shorter
        #: than _BLOCKS only while no counter has reached its end (then it has not wrapped).
        self.blocks = [0] * _FIRST_BLOCKS
        #: The highest accepted counter, -1 before the first.
        self.top = -1

    def check(self, counter: int) -> bool:
        """Would ``counter`` be fresh?  Does not change the window."""
        if counter > self.top:
            return True
        if self.top - counter >= WINDOW:
            return False
        return not (self.blocks[(counter >> 6) & RING_MASK] >> (counter & 63)) & 1

    def update(self, counter: int) -> None:
        """Mark ``counter`` as seen; call only after ``check`` and authentication."""
        top = self.top
        blocks = self.blocks
        if counter > top:
            current = top >> 6
            target = counter >> 6
            if target != current:
                if target >= len(blocks) < _BLOCKS:
                    blocks.extend([0] * (_grown(len(blocks), target) - len(blocks)))
                for step in range(1, min(target - current, _BLOCKS) + 1):
                    blocks[(current + step) & RING_MASK] = 0
            self.top = counter
        blocks[(counter >> 6) & RING_MASK] |= 1 << (counter & 63)


def _grown(size: int, block: int) -> int:
    """The ring's new length to hold ``block``: doubled until it does, at most ``_BLOCKS``."""
    while size <= block and size < _BLOCKS:
        size *= 2
    return size
