"""Deterministic randomness for the reference adapter: the same seed, the same bytes."""

from __future__ import annotations

import hashlib

from p2pos.proto.identity import crypto


def seeded_stream(seed: bytes) -> crypto.RandomSource:
    """A deterministic byte stream (BLAKE2b in counter mode) for indices, ephemerals and tokens."""
    counter = 0

    def source(n: int) -> bytes:
        nonlocal counter
        out = b""
        while len(out) < n:
            out += hashlib.blake2b(counter.to_bytes(8, "big"), key=seed, digest_size=64).digest()
            counter += 1
        return out[:n]

    return source
