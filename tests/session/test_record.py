"""The record layer (spec/record.md): sealing, opening, epochs, drops."""

from __future__ import annotations

import pytest

from p2pos.proto import ErrorCode, LocalProtocolError
from p2pos.proto.session.record import (
    COUNTER_LIMIT,
    HEADER_LEN,
    MAX_EPOCH_SKIP,
    MAX_PLAINTEXT,
    OVERHEAD,
    RecordReceiver,
    RecordSender,
)
from p2pos.proto.session.wire import RECORD_HEADER, PacketType

KEY = bytes(range(32))
INDEX = 0x01020304


def sender(*, after_messages: int = 2**20, after_seconds: float = 120.0, now: float = 0.0) -> RecordSender:
    return RecordSender(KEY, INDEX, now, rekey_after_messages=after_messages, rekey_after_seconds=after_seconds)


def receiver(*, max_plaintext: int = MAX_PLAINTEXT, previous_key_grace: float = 10.0) -> RecordReceiver:
    return RecordReceiver(KEY, max_plaintext=max_plaintext, previous_key_grace=previous_key_grace)


def test_spec_constants() -> None:
    assert MAX_EPOCH_SKIP == 3
    assert COUNTER_LIMIT == 2**64 - 2**13 - 1
    assert (HEADER_LEN, OVERHEAD, MAX_PLAINTEXT) == (14, 30, 65505)


def test_round_trip_and_header() -> None:
    tx, rx = sender(), receiver()
    for n, message in enumerate([b"hello", b"", b"x" * 1000]):
        record = tx.seal(PacketType.DATA, message, 0.0)
        assert len(record) == OVERHEAD + len(message)
        assert RECORD_HEADER.unpack_from(record) == (PacketType.DATA, INDEX, 0, n)
        assert rx.open_untrusted(record, 0.0) == (PacketType.DATA, message)
    assert tx.next_counter == 3
    assert rx.window.top == 2
    assert not rx.drops


def test_packet_types_carried() -> None:
    tx, rx = sender(), receiver()
    for kind in (PacketType.DATA, PacketType.KEEPALIVE, PacketType.CLOSE):
        assert rx.open_untrusted(tx.seal(kind, b"p", 0.0), 0.0) == (kind, b"p")


def test_replayed_record_dropped() -> None:
    tx, rx = sender(), receiver()
    record = tx.seal(PacketType.DATA, b"once", 0.0)
    assert rx.open_untrusted(record, 0.0) is not None
    assert rx.open_untrusted(record, 0.0) is None
    assert rx.drops == {"replay": 1}


def test_reordered_records_accepted() -> None:
    tx, rx = sender(), receiver()
    records = [tx.seal(PacketType.DATA, bytes([i]), 0.0) for i in range(10)]
    for i in (9, 0, 5, 1, 8, 2, 7, 3, 6, 4):
        assert rx.open_untrusted(records[i], 0.0) == (PacketType.DATA, bytes([i]))


@pytest.mark.parametrize("position", range(HEADER_LEN))
def test_header_is_authenticated(position: int) -> None:
    tx, rx = sender(), receiver()
    record = bytearray(tx.seal(PacketType.DATA, b"payload", 0.0))
    record[position] ^= 0x01
    assert rx.open_untrusted(bytes(record), 0.0) is None
    assert sum(rx.drops.values()) == 1
    assert rx.window.top == -1 and rx.epoch == 0
    # The untouched record still opens: nothing moved.
    record[position] ^= 0x01
    assert rx.open_untrusted(bytes(record), 0.0) == (PacketType.DATA, b"payload")


def test_corrupt_ciphertext_dropped_receiver_still_works() -> None:
    tx, rx = sender(), receiver()
    first = tx.seal(PacketType.DATA, b"first", 0.0)
    for position in (HEADER_LEN, len(first) - 1, len(first) - 16):
        bad = bytearray(first)
        bad[position] ^= 0x80
        assert rx.open_untrusted(bytes(bad), 0.0) is None
    assert rx.drops == {"auth": 3}
    assert rx.open_untrusted(first, 0.0) == (PacketType.DATA, b"first")
    assert rx.open_untrusted(tx.seal(PacketType.DATA, b"second", 0.0), 0.0) == (PacketType.DATA, b"second")


def test_forged_high_counter_does_not_move_window() -> None:
    tx, rx = sender(), receiver()
    record = tx.seal(PacketType.DATA, b"a", 0.0)
    forged = bytearray(record)
    forged[6:14] = (10**6).to_bytes(8, "big")
    assert rx.open_untrusted(bytes(forged), 0.0) is None
    assert rx.window.top == -1
    assert rx.open_untrusted(record, 0.0) is not None


def test_too_short_and_too_large_dropped() -> None:
    tx, rx = sender(), receiver(max_plaintext=100)
    for size in range(OVERHEAD):
        assert rx.open_untrusted(bytes(size), 0.0) is None
    assert rx.drops["malformed"] == OVERHEAD
    assert rx.open_untrusted(tx.seal(PacketType.DATA, b"z" * 101, 0.0), 0.0) is None
    assert rx.drops["too_large"] == 1
    assert rx.open_untrusted(tx.seal(PacketType.DATA, b"z" * 100, 0.0), 0.0) == (PacketType.DATA, b"z" * 100)


def test_max_plaintext_fits_a_16_bit_length() -> None:
    tx, rx = sender(), receiver()
    record = tx.seal(PacketType.DATA, bytes(MAX_PLAINTEXT), 0.0)
    assert len(record) == 65535
    assert rx.open_untrusted(record, 0.0) == (PacketType.DATA, bytes(MAX_PLAINTEXT))


def test_rekey_by_message_count() -> None:
    tx, rx = sender(after_messages=3), receiver()
    epochs = []
    for i in range(10):
        record = tx.seal(PacketType.DATA, bytes([i]), 0.0)
        epochs.append(record[5])
        assert rx.open_untrusted(record, 0.0) == (PacketType.DATA, bytes([i]))
    assert epochs == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]
    assert rx.epoch == 3


def test_rekey_changes_the_key() -> None:
    a, b = sender(after_messages=1), sender(after_messages=1)
    a.seal(PacketType.DATA, b"", 0.0)
    b.seal(PacketType.DATA, b"", 0.0)
    r1, r2 = a.seal(PacketType.DATA, b"same", 0.0), b.seal(PacketType.DATA, b"same", 0.0)
    assert r1 == r2  # deterministic
    plain = RecordSender(KEY, INDEX, 0.0, rekey_after_messages=100, rekey_after_seconds=100.0)
    plain.seal(PacketType.DATA, b"", 0.0)
    unkeyed = plain.seal(PacketType.DATA, b"same", 0.0)
    assert unkeyed[:5] == r1[:5] and unkeyed[6:HEADER_LEN] == r1[6:HEADER_LEN]
    assert unkeyed[HEADER_LEN:] != r1[HEADER_LEN:]


def test_rekey_by_time() -> None:
    tx, rx = sender(after_seconds=10.0), receiver()
    assert tx.seal(PacketType.DATA, b"", 9.9)[5] == 0
    record = tx.seal(PacketType.DATA, b"later", 10.0)
    assert record[5] == 1
    assert rx.open_untrusted(record, 10.0) == (PacketType.DATA, b"later")
    assert tx.seal(PacketType.DATA, b"", 19.9)[5] == 1
    assert tx.seal(PacketType.DATA, b"", 20.0)[5] == 2


def test_previous_epoch_within_grace() -> None:
    tx, rx = sender(after_messages=2), receiver(previous_key_grace=5.0)
    old = [tx.seal(PacketType.DATA, bytes([i]), 0.0) for i in range(2)]
    new = tx.seal(PacketType.DATA, b"new", 0.0)
    assert (old[0][5], new[5]) == (0, 1)
    assert rx.open_untrusted(new, 100.0) == (PacketType.DATA, b"new")
    assert rx.epoch == 1
    assert rx.open_untrusted(old[1], 105.0) == (PacketType.DATA, bytes([1]))
    assert rx.open_untrusted(old[1], 105.0) is None  # replay across epochs
    assert rx.open_untrusted(old[0], 105.1) is None  # grace over
    assert rx.drops == {"replay": 1, "auth": 1}
    assert rx.open_untrusted(tx.seal(PacketType.DATA, b"x", 106.0), 106.0) == (PacketType.DATA, b"x")


def test_previous_epoch_after_grace_rejected() -> None:
    tx, rx = sender(after_messages=1), receiver(previous_key_grace=5.0)
    old = tx.seal(PacketType.DATA, b"old", 0.0)
    new = tx.seal(PacketType.DATA, b"new", 0.0)
    assert rx.open_untrusted(new, 0.0) is not None
    assert rx.open_untrusted(old, 5.01) is None
    assert rx.drops == {"auth": 1}


@pytest.mark.parametrize("skip", range(1, MAX_EPOCH_SKIP + 2))
def test_epoch_skip_limit(skip: int) -> None:
    tx, rx = sender(after_messages=1), receiver()
    records = [tx.seal(PacketType.DATA, bytes([i]), 0.0) for i in range(skip + 1)]
    assert [r[5] for r in records] == list(range(skip + 1))
    opened = rx.open_untrusted(records[skip], 0.0)
    if skip <= MAX_EPOCH_SKIP:
        assert opened == (PacketType.DATA, bytes([skip]))
        assert rx.epoch == skip
        # The epoch just before the new one stays usable during the grace period.
        assert rx.open_untrusted(records[skip - 1], 0.0) == (PacketType.DATA, bytes([skip - 1]))
    else:
        assert opened is None
        assert rx.epoch == 0
        assert rx.drops == {"auth": 1}


def test_receiver_follows_epochs_through_wraparound() -> None:
    tx, rx = sender(after_messages=1), receiver()
    for i in range(600):
        record = tx.seal(PacketType.DATA, i.to_bytes(2, "big"), 0.0)
        assert record[5] == i % 256
        assert rx.open_untrusted(record, 0.0) == (PacketType.DATA, i.to_bytes(2, "big")), i
    assert not rx.drops


def test_replay_across_epochs_rejected() -> None:
    tx, rx = sender(after_messages=2), receiver()
    records = [tx.seal(PacketType.DATA, bytes([i]), 0.0) for i in range(6)]
    for record in records:
        assert rx.open_untrusted(record, 0.0) is not None
    for record in records:
        assert rx.open_untrusted(record, 1.0) is None
    assert rx.drops == {"replay": 6}


def test_forged_future_epoch_does_not_move_receiver() -> None:
    tx, rx = sender(), receiver()
    record = bytearray(tx.seal(PacketType.DATA, b"a", 0.0))
    record[5] = 1
    assert rx.open_untrusted(bytes(record), 0.0) is None
    assert rx.epoch == 0
    record[5] = 0
    assert rx.open_untrusted(bytes(record), 0.0) == (PacketType.DATA, b"a")


def test_counter_exhausted() -> None:
    tx, rx = sender(), receiver()
    tx._next = COUNTER_LIMIT - 1
    last = tx.seal(PacketType.DATA, b"last", 0.0)
    assert int.from_bytes(last[6:14], "big") == COUNTER_LIMIT - 1
    assert last[5] == 1  # the message limit passed on the way: one rekey
    assert rx.open_untrusted(last, 0.0) == (PacketType.DATA, b"last")
    with pytest.raises(LocalProtocolError) as info:
        tx.seal(PacketType.DATA, b"one more", 0.0)
    assert info.value.code is ErrorCode.COUNTER_EXHAUSTED
    with pytest.raises(LocalProtocolError):
        tx.seal(PacketType.KEEPALIVE, b"", 0.0)
    assert tx.next_counter == COUNTER_LIMIT


def test_counter_exhausted_without_rekey() -> None:
    tx = sender(after_messages=2**64)
    rx = receiver()
    tx._next = COUNTER_LIMIT - 1
    assert rx.open_untrusted(tx.seal(PacketType.DATA, b"last", 0.0), 0.0) == (PacketType.DATA, b"last")
    with pytest.raises(LocalProtocolError):
        tx.seal(PacketType.DATA, b"", 0.0)
