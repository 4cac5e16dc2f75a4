"""The record layer: sealing and opening DATA, KEEPALIVE and CLOSE records (spec/record.md).

Each direction has its own key from the Noise split.  Records carry an
explicit 64-bit counter (the AEAD nonce) and an 8-bit key epoch, so loss and
reordering are harmless.  The sender moves to the next epoch, whose key is
Noise's REKEY of the current one, after ``rekey_after_messages`` records or
``rekey_after_seconds``; the receiver follows when a record of the next epoch
authenticates, and keeps the previous key ``previous_key_grace`` seconds for
records still in flight.  Old keys are then forgotten (forward secrecy).
"""

from __future__ import annotations

import collections

from . import crypto
from .errors import ErrorCode, LocalProtocolError
from .replay import ReplayWindow
from .wire import RECORD_HEADER

HEADER_LEN = RECORD_HEADER.size
OVERHEAD = HEADER_LEN + crypto.TAGLEN
#: Largest plaintext of one record: a record fits a 16-bit length (spec/record.md §4).
MAX_PLAINTEXT = 65535 - OVERHEAD
#: A sender stops before this counter, as WireGuard does (2^64 - 2^13 - 1).
COUNTER_LIMIT = 2**64 - 2**13 - 1
#: How many epochs ahead a receiver will derive keys to follow the sender.
MAX_EPOCH_SKIP = 3
_NONCE_PREFIX = b"\x00\x00\x00\x00"


class RecordSender:
    """Seals records for one direction."""

    __slots__ = (
        "receiver_index",
        "epoch",
        "_aead",
        "_next",
        "_rekey_counter",
        "_rekey_time",
        "_after_messages",
        "_after_seconds",
    )

    def __init__(
        self, key: bytes, receiver_index: int, now: float, *, rekey_after_messages: int, rekey_after_seconds: float
    ) -> None:
        self.receiver_index = receiver_index
        self.epoch = 0
        self._aead = crypto.RecordAead(key)
        self._next = 0
        self._after_messages = rekey_after_messages
        self._after_seconds = rekey_after_seconds
        self._rekey_counter = rekey_after_messages
        self._rekey_time = now + rekey_after_seconds

    @property
    def next_counter(self) -> int:
        return self._next

    def _rekey(self, now: float) -> None:
        self._aead = crypto.RecordAead(crypto.rekey(self._aead.key))
        self.epoch = (self.epoch + 1) & 0xFF
        self._rekey_counter = self._next + self._after_messages
        self._rekey_time = now + self._after_seconds

    def seal(self, ptype: int, plaintext: bytes, now: float) -> bytes:
        """One record's bytes.  Raises LocalProtocolError when the counter is exhausted."""
        n = self._next
        if n >= self._rekey_counter or now >= self._rekey_time:
            self._rekey(now)
        if n >= COUNTER_LIMIT:
            raise LocalProtocolError("record counter exhausted; start a new session", ErrorCode.COUNTER_EXHAUSTED)
        self._next = n + 1
        header = RECORD_HEADER.pack(ptype, self.receiver_index, self.epoch, n)
        return header + self._aead.encrypt(_NONCE_PREFIX + n.to_bytes(8, "little"), plaintext, header)


class RecordReceiver:
    """Opens records for one direction, with replay protection and epoch tracking.

    ``open_untrusted`` returns ``(packet_type, plaintext)`` or None; a None
    leaves every piece of state as it was and bumps one counter in ``drops``.
    """

    __slots__ = ("epoch", "_aead", "_previous", "_previous_until", "_grace", "max_plaintext", "window", "drops")

    def __init__(self, key: bytes, *, max_plaintext: int = MAX_PLAINTEXT, previous_key_grace: float = 10.0) -> None:
        self.epoch = 0
        self._aead = crypto.RecordAead(key)
        self._previous: crypto.RecordAead | None = None
        self._previous_until = 0.0
        self._grace = previous_key_grace
        self.max_plaintext = max_plaintext
        self.window = ReplayWindow()
        self.drops: collections.Counter[str] = collections.Counter()

    def open_untrusted(self, data: bytes, now: float) -> tuple[int, bytes] | None:
        size = len(data)
        if size < OVERHEAD:
            self.drops["malformed"] += 1
            return None
        if size - OVERHEAD > self.max_plaintext:
            self.drops["too_large"] += 1
            return None
        ptype, _, epoch, counter = RECORD_HEADER.unpack_from(data)
        window = self.window
        if not window.check(counter):
            self.drops["replay"] += 1
            return None
        nonce = _NONCE_PREFIX + counter.to_bytes(8, "little")
        header = data[:HEADER_LEN]
        if epoch == self.epoch:
            plaintext = self._aead.decrypt(nonce, data[HEADER_LEN:], header)
        else:
            plaintext = self._open_other_epoch(epoch, nonce, data, header, now)
        if plaintext is None:
            self.drops["auth"] += 1
            return None
        window.update(counter)
        return ptype, plaintext

    def _open_other_epoch(self, epoch: int, nonce: bytes, data: bytes, header: bytes, now: float) -> bytes | None:
        delta = (epoch - self.epoch) & 0xFF
        if delta == 0xFF:
            if self._previous is None or now > self._previous_until:
                self._previous = None
                return None
            return self._previous.decrypt(nonce, data[HEADER_LEN:], header)
        if delta > MAX_EPOCH_SKIP:
            return None
        chain = [self._aead]
        for _ in range(delta):
            chain.append(crypto.RecordAead(crypto.rekey(chain[-1].key)))
        plaintext = chain[-1].decrypt(nonce, data[HEADER_LEN:], header)
        if plaintext is not None:
            self._previous = chain[-2]
            self._previous_until = now + self._grace
            self._aead = chain[-1]
            self.epoch = epoch
        return plaintext
