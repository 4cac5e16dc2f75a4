"""The record layer: sealing and opening DATA, KEEPALIVE, CLOSE and CONFIRM records (spec/record.md).

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
import struct
from typing import Final

from cryptography.exceptions import InvalidTag

from ..errors import ErrorCode, LocalProtocolError
from ..identity import crypto
from .replay import RING_MASK, ReplayWindow
from .wire import RECORD_HEADER

HEADER_LEN: Final = RECORD_HEADER.size
OVERHEAD: Final = HEADER_LEN + crypto.TAGLEN
#: Largest plaintext of one record: a record fits a 16-bit length (spec/record.md §4).
MAX_PLAINTEXT: Final = 65535 - OVERHEAD
#: A sender stops before this counter, as WireGuard does (2^64 - 2^13 - 1).
COUNTER_LIMIT: Final = 2**64 - 2**13 - 1
#: How many epochs ahead a receiver will derive keys to follow the sender.
MAX_EPOCH_SKIP: Final = 3
#: The AEAD nonce: 32 zero bits, then the counter as a little-endian u64 (Noise).
_NONCE: Final = struct.Struct("<4xQ")
_nonce: Final = _NONCE.pack
# Epoch and counter (after the type and the receiver index, which whoever routed the record checked).
_unpack_header: Final = struct.Struct(">5xBQ").unpack_from
_pack_header: Final = RECORD_HEADER.pack


class RecordSender:
    """Seals records for one direction."""

    __slots__ = (
        "_after_messages",
        "_after_seconds",
        "_aead",
        "_check_counter",
        "_encrypt",
        "_next",
        "_rekey_counter",
        "_rekey_time",
        "epoch",
        "receiver_index",
    )

    def __init__(
        self, key: bytes, receiver_index: int, now: float, *, rekey_after_messages: int, rekey_after_seconds: float
    ) -> None:
        self.receiver_index = receiver_index
        self.epoch = 0
        self._aead = crypto.RecordAead(key)
        self._encrypt = self._aead.raw.encrypt
        self._next = 0
        self._after_messages = rekey_after_messages
        self._after_seconds = rekey_after_seconds
        self._rekey_counter = rekey_after_messages
        self._rekey_time = now + rekey_after_seconds
        self._check_counter = min(self._rekey_counter, COUNTER_LIMIT)

    @property
    def next_counter(self) -> int:
        return self._next

    def _rekey(self, now: float) -> None:
        self._aead = crypto.RecordAead(crypto.rekey(self._aead.key))
        self._encrypt = self._aead.raw.encrypt
        self.epoch = (self.epoch + 1) & 0xFF
        self._rekey_counter = self._next + self._after_messages
        self._rekey_time = now + self._after_seconds
        self._check_counter = min(self._rekey_counter, COUNTER_LIMIT)

    def seal(self, ptype: int, plaintext: bytes, now: float) -> bytes:
        """One record's bytes.  Raises LocalProtocolError when the counter is exhausted."""
        n = self._next
        if n >= self._check_counter or now >= self._rekey_time:
            if n >= COUNTER_LIMIT:
                raise LocalProtocolError("record counter exhausted; start a new session", ErrorCode.COUNTER_EXHAUSTED)
            self._rekey(now)
        self._next = n + 1
        header = _pack_header(ptype, self.receiver_index, self.epoch, n)
        return header + self._encrypt(_nonce(n), plaintext, header)


class RecordReceiver:
    """Opens records for one direction, with replay protection and epoch tracking.

    ``open_untrusted`` returns ``(packet_type, plaintext)`` or None; a None
    leaves every piece of state as it was and bumps one counter in ``drops``.
    """

    __slots__ = (
        "_aead",
        "_decrypt",
        "_grace",
        "_max_size",
        "_previous",
        "_previous_until",
        "drops",
        "epoch",
        "max_plaintext",
        "window",
    )

    def __init__(self, key: bytes, *, max_plaintext: int = MAX_PLAINTEXT, previous_key_grace: float = 10.0) -> None:
        self.epoch = 0
        self._aead = crypto.RecordAead(key)
        self._decrypt = self._aead.raw.decrypt
        self._previous: crypto.RecordAead | None = None
        self._previous_until = 0.0
        self._grace = previous_key_grace
        self.max_plaintext = max_plaintext
        self._max_size = max_plaintext + OVERHEAD
        self.window = ReplayWindow()
        self.drops: collections.Counter[str] = collections.Counter()

    def open_untrusted(self, data: bytes, now: float) -> tuple[int, bytes] | None:
        """``(packet_type, plaintext)`` of an authentic, fresh record, else None."""
        opened = self.open_counted_untrusted(data, now)
        return None if opened is None else (data[0], opened[1])

    def open_counted_untrusted(self, data: bytes, now: float) -> tuple[int, bytes] | None:
        """``(counter, plaintext)`` of an authentic, fresh record, else None: the channel layer's packet number."""
        size = len(data)
        if size < OVERHEAD or size > self._max_size:
            self.drops["malformed" if size < OVERHEAD else "too_large"] += 1
            return None
        epoch: int
        counter: int
        epoch, counter = _unpack_header(data)
        window = self.window
        top = window.top
        if counter > top and epoch == self.epoch:
            # The common case: a fresh counter under the current key.
            try:
                plaintext = self._decrypt(_nonce(counter), data[HEADER_LEN:], data[:HEADER_LEN])
            except InvalidTag:
                self.drops["auth"] += 1
                return None
            if counter >> 6 == top >> 6:  # same 64-bit block: ReplayWindow.update without the call
                window.top = counter
                window.blocks[(counter >> 6) & RING_MASK] |= 1 << (counter & 63)
            else:
                window.update(counter)
            return counter, plaintext
        if not window.check(counter):
            self.drops["replay"] += 1
            return None
        nonce = _nonce(counter)
        header = data[:HEADER_LEN]
        if epoch == self.epoch:
            opened = self._aead.decrypt(nonce, data[HEADER_LEN:], header)
        else:
            opened = self._open_other_epoch(epoch, nonce, data, header, now)
        if opened is None:
            self.drops["auth"] += 1
            return None
        window.update(counter)
        return counter, opened

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
            self._decrypt = self._aead.raw.decrypt
            self.epoch = epoch
        return plaintext
