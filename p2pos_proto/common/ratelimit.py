"""A token bucket: ``rate`` tokens a second, at most ``burst`` saved (time is an input)."""

from __future__ import annotations


class TokenBucket:
    """Starts full.  ``take(now)`` spends one token if there is one."""

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.last = burst, now

    def take(self, now: float) -> bool:
        if now > self.last:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def full(self, now: float) -> bool:
        """Whether the bucket would be full at ``now`` (nothing to remember about its owner)."""
        return self.tokens + (now - self.last) * self.rate >= self.burst
