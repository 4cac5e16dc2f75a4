"""A small seeded pseudo-random generator for simulations and tests (NOT cryptographic).

The core never imports :mod:`random` (STYLE.md §1): randomness is injected.  Code that
needs *reproducible* randomness, such as the link emulator (``link.py``), takes a
:class:`Prng` instead.  It is xoshiro256** (Blackman and Vigna, 2018), seeded through
splitmix64 as its authors recommend, written in pure Python so that the same seed gives
the same stream bit for bit on every platform and every Python version (unlike
:mod:`random`, whose seeding of non-int objects and whose methods have changed across
versions).

**Never use it for keys, nonces or anything an attacker must not predict**: its whole
state follows from a few outputs.  Keys come from ``crypto.system_random``.

Typical use::

    rng = Prng(42)                  # or Prng(b"any bytes")
    rng.random()                    # float in [0, 1)
    rng.randint(1, 6)               # int in [1, 6]
    rng.choice(["a", "b"])
    sub = rng.derive(b"a->b")       # an independent stream, keyed by a label
    sub(16)                         # 16 bytes: a Prng is also a crypto.RandomSource
                                    # (for deterministic test identities only)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeVar

from ..errors import LocalProtocolError

_T = TypeVar("_T")

_MASK = (1 << 64) - 1
#: 2**-53: turns the top 53 bits of an output into a float in [0, 1).
_TO_FLOAT = 1.0 / (1 << 53)


def _splitmix64(state: int) -> tuple[int, int]:
    """One splitmix64 step: (new state, output)."""
    state = (state + 0x9E3779B97F4A7C15) & _MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return state, z ^ (z >> 31)


class Prng:
    """xoshiro256**, seeded from a non-negative int below 2**64 or from bytes.

    An int seed fills the state with four splitmix64 outputs (the reference seeding);
    a bytes seed is hashed with SHA-256 into the four state words.  Equal seeds give
    equal streams; :meth:`derive` makes independent labelled sub-streams.
    """

    __slots__ = ("_material", "_s0", "_s1", "_s2", "_s3")

    def __init__(self, seed: int | bytes) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int | bytes):
            raise LocalProtocolError(f"Prng seed must be an int or bytes, not {type(seed).__name__}")
        if isinstance(seed, int):
            if not 0 <= seed <= _MASK:
                raise LocalProtocolError("an int Prng seed must be in [0, 2**64)")
            #: What ``derive`` hashes: identifies the seed, whatever its kind.
            self._material = b"int:" + seed.to_bytes(8, "big")
            words = []
            state = seed
            for _ in range(4):
                state, out = _splitmix64(state)
                words.append(out)
        else:
            self._material = b"bytes:" + bytes(seed)
            digest = hashlib.sha256(self._material).digest()
            words = [int.from_bytes(digest[i : i + 8], "little") for i in range(0, 32, 8)]
        if not any(words):  # the one state xoshiro cannot leave; unreachable in practice
            words[0] = 1
        self._s0, self._s1, self._s2, self._s3 = words

    def derive(self, label: bytes) -> Prng:
        """An independent generator for ``label``, from the seed (not the current position).

        Deriving the same label twice gives the same stream, however much of this
        generator has been consumed in between.
        """
        return Prng(hashlib.sha256(self._material + b"/" + label).digest())

    def next64(self) -> int:
        """The next 64-bit output (xoshiro256**, reference algorithm)."""
        s0, s1, s2, s3 = self._s0, self._s1, self._s2, self._s3
        r = (s1 * 5) & _MASK
        result = ((((r << 7) | (r >> 57)) & _MASK) * 9) & _MASK
        t = (s1 << 17) & _MASK
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = ((s3 << 45) | (s3 >> 19)) & _MASK
        self._s0, self._s1, self._s2, self._s3 = s0, s1, s2, s3
        return result

    def random(self) -> float:
        """A float uniformly drawn from [0, 1), with 53 random bits."""
        return (self.next64() >> 11) * _TO_FLOAT

    def uniform(self, low: float, high: float) -> float:
        """A float in [low, high) (or exactly ``low`` when they are equal)."""
        return low + (high - low) * self.random()

    def getrandbits(self, k: int) -> int:
        """A non-negative int of ``k`` random bits (``k`` >= 0)."""
        if k < 0:
            raise LocalProtocolError("number of bits must be non-negative")
        words = (k + 63) // 64
        if words <= 1:
            return self.next64() >> (64 - k) if k else 0
        # The words, most significant first: built in one pass (shifting a growing int is quadratic).
        value = int.from_bytes(b"".join(self.next64().to_bytes(8, "big") for _ in range(words)), "big")
        return value >> (words * 64 - k)

    def randbelow(self, n: int) -> int:
        """An int uniformly drawn from [0, n), without modulo bias (rejection sampling)."""
        if n <= 0:
            raise LocalProtocolError("randbelow needs a positive bound")
        k = n.bit_length()
        while True:
            value = self.getrandbits(k)
            if value < n:
                return value

    def randint(self, low: int, high: int) -> int:
        """An int uniformly drawn from [low, high], both ends included."""
        if high < low:
            raise LocalProtocolError("randint needs low <= high")
        return low + self.randbelow(high - low + 1)

    def choice(self, items: Sequence[_T]) -> _T:
        """One element of a non-empty sequence, uniformly."""
        if not items:
            raise LocalProtocolError("cannot choose from an empty sequence")
        return items[self.randbelow(len(items))]

    def sample_indices(self, n: int, k: int) -> list[int]:
        """``k`` distinct ints from [0, n), in the order drawn (partial Fisher-Yates)."""
        if not 0 <= k <= n:
            raise LocalProtocolError("sample_indices needs 0 <= k <= n")
        swapped: dict[int, int] = {}
        out = []
        for i in range(k):
            j = i + self.randbelow(n - i)
            out.append(swapped.get(j, j))
            swapped[j] = swapped.get(i, i)
        return out

    def __call__(self, n: int) -> bytes:
        """``n`` random bytes, so a Prng can stand in for ``crypto.RandomSource`` in tests."""
        if n < 0:
            raise LocalProtocolError("byte count must be non-negative")
        # The same bytes as getrandbits(8 * n).to_bytes(n, "big"), without the big-int round trip.
        return b"".join(self.next64().to_bytes(8, "big") for _ in range((n + 7) // 8))[:n]
