"""SendBuffer and MessageQueue (spec/flow.md §1, §2.3): retransmission, release, messages."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pos.proto.channels.flow import ReceiveWindow
from p2pos.proto.channels.recvbuf import ReceiveBuffer
from p2pos.proto.channels.sendbuf import MessageQueue, SendBuffer
from p2pos.proto.errors import ErrorCode, LocalProtocolError

# -- SendBuffer ---------------------------------------------------------------------


def test_new_data_in_order_then_fin() -> None:
    buf = SendBuffer()
    buf.write(b"hello world")
    assert buf.next_chunk(5) == (0, b"hello", False)
    buf.finish()
    assert buf.next_chunk(100) == (5, b" world", True)
    assert buf.next_chunk(100) is None
    assert buf.final_size == 11
    assert not buf.is_finished_and_acked
    buf.on_acked(5, 6, True)
    assert buf.buffered == 11  # the prefix [0, 5) is not acked yet
    buf.on_acked(0, 5, False)
    assert buf.buffered == 0
    assert buf.is_finished_and_acked


def test_acks_release_the_prefix_in_and_out_of_order() -> None:
    buf = SendBuffer()
    buf.write(bytes(range(250)) * 12)
    chunks = [buf.next_chunk(1000) for _ in range(3)]
    assert [c[0] for c in chunks if c is not None] == [0, 1000, 2000]
    buf.on_acked(0, 1000, False)  # the prefix grows: released at once
    assert buf.buffered == 2000
    buf.on_acked(2000, 1000, False)  # beyond a gap: held until the gap is acknowledged
    assert buf.buffered == 2000
    buf.on_lost(1000, 1000, False)
    assert buf.next_chunk(1000) == (1000, (bytes(range(250)) * 12)[1000:2000], False)
    buf.on_acked(1000, 1000, False)  # fills the gap: everything up to 3000 goes
    assert buf.buffered == 0
    assert buf.next_chunk(1000) is None and not buf.has_retransmissions
    buf.write(b"more")
    assert buf.next_chunk(1000) == (3000, b"more", False)
    buf.on_acked(3000, 4, False)
    assert buf.buffered == 0 and buf.write_offset == 3004


def test_lone_fin_when_finish_comes_after_the_data() -> None:
    buf = SendBuffer()
    buf.write(b"abc")
    assert buf.next_chunk(10) == (0, b"abc", False)
    buf.finish()
    assert buf.wants_to_send()
    assert buf.next_chunk(0) == (3, b"", True)
    assert not buf.wants_to_send()
    buf.on_acked(0, 3, False)
    assert not buf.is_finished_and_acked
    buf.on_lost(3, 0, True)
    assert buf.next_chunk(10) == (3, b"", True)
    buf.on_acked(3, 0, True)
    assert buf.is_finished_and_acked


def test_empty_stream() -> None:
    buf = SendBuffer()
    buf.finish()
    buf.finish()  # idempotent
    assert buf.next_chunk(100) == (0, b"", True)
    buf.on_acked(0, 0, True)
    assert buf.is_finished_and_acked


def test_lost_data_goes_first_in_offset_order() -> None:
    buf = SendBuffer()
    buf.write(bytes(range(100)))
    chunks = [buf.next_chunk(10) for _ in range(5)]
    assert [c[0] for c in chunks if c] == [0, 10, 20, 30, 40]
    buf.on_lost(30, 10, False)
    buf.on_lost(10, 10, False)
    buf.on_acked(12, 3, False)  # a part of a lost range arrived after all
    assert buf.wants_to_send(max_new=0)  # only retransmissions are due
    assert buf.next_chunk(100) == (10, bytes(range(10, 12)), False)
    assert buf.next_chunk(100) == (15, bytes(range(15, 20)), False)
    assert buf.next_chunk(4) == (30, bytes(range(30, 34)), False)
    assert buf.next_chunk(100) == (34, bytes(range(34, 40)), False)
    assert not buf.has_retransmissions
    assert buf.next_chunk(10) == (50, bytes(range(50, 60)), False)


def test_lost_after_acked_is_not_resent() -> None:
    buf = SendBuffer()
    buf.write(b"x" * 20)
    buf.next_chunk(20)
    buf.on_acked(0, 20, False)
    buf.on_lost(0, 20, False)  # a spurious loss of a copy
    assert buf.next_chunk(100) is None
    assert buf.buffered == 0


def test_max_new_bounds_only_new_data() -> None:
    buf = SendBuffer()
    buf.write(b"a" * 50)
    assert buf.next_chunk(100, max_new=20) == (0, b"a" * 20, False)
    assert buf.next_chunk(100, max_new=0) is None
    assert not buf.wants_to_send(max_new=0)
    assert buf.wants_to_send(max_new=1)
    assert buf.unsent == 30
    buf.on_lost(0, 20, False)
    # Retransmissions need no credit.
    assert buf.next_chunk(100, max_new=0) == (0, b"a" * 20, False)
    buf.finish()
    # The FIN waits for the unsent data.
    assert buf.next_chunk(100, max_new=0) is None
    assert buf.next_chunk(100, max_new=30) == (20, b"a" * 30, True)


def test_misuse_raises() -> None:
    buf = SendBuffer()
    buf.write(b"abc")
    buf.finish()
    with pytest.raises(LocalProtocolError) as info:
        buf.write(b"d")
    assert info.value.code == ErrorCode.CHANNEL_STATE_ERROR
    with pytest.raises(LocalProtocolError):
        buf.on_acked(0, 1, False)  # never sent
    with pytest.raises(LocalProtocolError):
        buf.on_lost(0, 1, False)
    assert buf.next_chunk(-1) is None


def test_reset_drops_everything() -> None:
    buf = SendBuffer()
    buf.write(b"x" * 100)
    buf.next_chunk(30)
    buf.on_lost(0, 30, False)
    assert buf.reset() == 30
    assert buf.is_reset
    assert buf.buffered == 0
    assert buf.next_chunk(100) is None
    assert not buf.wants_to_send()
    buf.on_acked(0, 30, False)  # ignored
    buf.on_lost(0, 30, False)
    assert not buf.is_finished_and_acked
    with pytest.raises(LocalProtocolError):
        buf.write(b"y")
    with pytest.raises(LocalProtocolError):
        buf.finish()


def transfer(
    data: bytes,
    seed: int,
    loss: float,
    max_len: int,
    credit_step: int,
    high_water: int | None = None,
    *,
    big_writes: bool = False,
) -> tuple[bytes, SendBuffer, int]:
    """Send ``data`` through random loss, reordered acks and spurious losses into a ReceiveBuffer.

    The writer waits while more than ``high_water`` bytes are buffered (None: never).
    ``big_writes``: some writes are large enough to be pieces of their own, some are
    ``bytes``, some views, and new data is taken with ``take_new`` (the bulk fast path)
    as often as with ``next_chunk``.
    """
    rng = random.Random(seed)
    sender = SendBuffer()
    receiver = ReceiveBuffer(ReceiveWindow(max(len(data), 1), max(len(data), 1), now=0.0))
    written = 0
    finished = False
    in_flight: list[tuple[int, bytes, bool]] = []
    out = bytearray()
    rounds = 0
    peak = 0
    while not sender.is_finished_and_acked:
        rounds += 1
        assert rounds < 100_000
        if written < len(data):
            if high_water is None or sender.buffered < high_water:
                step = rng.randint(1, 4 * max_len)
                if big_writes and rng.random() < 0.3:
                    step = rng.choice((rng.randint(16 * 1024 - 2, 40 * 1024), rng.randint(64 * 1024 - 2, 150 * 1024)))
                piece = data[written : written + step]
                sender.write(memoryview(piece) if big_writes and rng.random() < 0.5 else piece)
                written = min(len(data), written + step)
        elif not finished:
            sender.finish()
            finished = True
        limit = min(len(data), credit_step * rounds)  # flow control credit grows over time
        for _ in range(rng.randint(1, 4)):
            if big_writes and not sender.has_retransmissions and rng.random() < 0.5:
                offset = sender.sent_offset
                new = sender.take_new(rng.randint(0, max_len), limit - sender.sent_offset)
                if not new:
                    break
                taken: bytes | bytearray | memoryview = new
                fin = sender.ends_stream_at(offset + len(new))
            else:
                chunk = sender.next_chunk(rng.randint(0, max_len), max_new=limit - sender.sent_offset)
                if chunk is None:
                    break
                offset, taken, fin = chunk
            in_flight.append((offset, bytes(taken), fin))  # as a STREAM frame carries it
        rng.shuffle(in_flight)
        keep: list[tuple[int, bytes, bool]] = []
        for offset, payload, fin in in_flight:
            fate = rng.random()
            if fate < loss:
                sender.on_lost(offset, len(payload), fin)
            elif fate < loss + 0.5:
                receiver.receive_untrusted(offset, payload, fin)
                sender.on_acked(offset, len(payload), fin)
                if rng.random() < 0.05:
                    sender.on_lost(offset, len(payload), fin)  # spurious: already acked
            elif fate < loss + 0.55:
                receiver.receive_untrusted(offset, payload, fin)  # arrived, but the ACK was lost
                sender.on_lost(offset, len(payload), fin)
            else:
                keep.append((offset, payload, fin))
        in_flight = keep
        out += receiver.read(rng.randint(0, 3 * max_len))
        peak = max(peak, sender.buffered)
        assert sender.buffered <= written
    out += receiver.read()
    return bytes(out), sender, peak


@settings(max_examples=150, deadline=None)
@given(
    data=st.binary(max_size=4000),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    loss=st.sampled_from([0.0, 0.1, 0.3, 0.45]),
    max_len=st.integers(min_value=1, max_value=300),
    credit_step=st.integers(min_value=1, max_value=500),
)
def test_random_loss_and_acks_deliver_every_byte(
    data: bytes, seed: int, loss: float, max_len: int, credit_step: int
) -> None:
    out, sender, _ = transfer(data, seed, loss, max_len, credit_step)
    assert hashlib.sha256(out).digest() == hashlib.sha256(data).digest()
    assert sender.buffered == 0
    assert sender.final_size == len(data)
    assert sender.sent_offset == len(data)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize(("loss", "max_len"), [(0.0, 1158), (0.1, 300), (0.3, 1158), (0.1, 5000), (0.3, 97)])
def test_pieces_large_and_small_writes_views_and_the_fast_path(seed: int, loss: float, max_len: int) -> None:
    """Writes large enough to be pieces of their own mixed with gathered small ones; frames that
    span pieces, and ``take_new``."""
    data = random.Random(seed).randbytes(min(150_000, max_len * 400))
    out, sender, _ = transfer(data, seed, loss, max_len, credit_step=max_len * 3 + 7, big_writes=True)
    assert out == data
    assert sender.buffered == 0
    assert sender.held == 0
    assert sender.sent_offset == len(data)


def test_take_new_views_one_piece_joins_across_pieces_and_reports_the_fin() -> None:
    buf = SendBuffer()
    big = bytes(range(256)) * 80  # 20480 bytes: a piece of its own
    buf.write(b"small")
    buf.write(big)
    buf.finish()
    first = buf.take_new(1000, 1000)  # the gathered small write, then the start of the big one
    assert bytes(first) == (b"small" + big)[:1000] and len(first) == 1000
    assert not buf.ends_stream_at(1000)
    second = buf.take_new(len(big) - 995, 10**9)  # inside the big piece: a view, no copy
    assert isinstance(second, memoryview) and bytes(second) == big[995:]
    assert buf.ends_stream_at(5 + len(big))
    assert len(buf.take_new(100, 100)) == 0
    assert buf.next_chunk(100) is None  # the FIN went with the last chunk
    buf.on_acked(0, 1000, False)
    assert buf.held == len(big) and buf.buffered == len(big) - 995
    buf.on_acked(1000, len(big) - 995, True)
    assert buf.held == 0 and buf.is_finished_and_acked


def test_memory_is_released_during_a_long_transfer() -> None:
    data = random.Random(7).randbytes(400_000)
    high_water = 32 * 1200
    out, sender, peak = transfer(data, seed=3, loss=0.1, max_len=1200, credit_step=1200 * 4, high_water=high_water)
    assert out == data
    assert sender.buffered == 0
    # The writer only writes below the high-water mark, so the transfer completes only
    # because acknowledged prefixes are released as they grow.
    assert peak < high_water + 4 * 1200


def test_bulk_transfer_releases_acked_bytes() -> None:
    """64 MB through 1200-byte chunks with in-order acks: memory never holds more than a block or so.

    (Speed lives in the benchmarks; here the structure: the acked prefix is released.)
    """
    buf = SendBuffer()
    block = b"z" * 65536
    sent = 0
    largest_held = 0
    for _ in range(1024):
        buf.write(block)
        largest_held = max(largest_held, buf.held)
        while (chunk := buf.next_chunk(1200)) is not None:
            buf.on_acked(chunk[0], len(chunk[1]), chunk[2])
            sent += len(chunk[1])
    assert sent == 64 << 20
    assert buf.buffered == 0
    assert largest_held <= 2 * len(block)


# -- MessageQueue -------------------------------------------------------------------


def test_messages_in_order_and_size_limits() -> None:
    queue = MessageQueue(max_message_size=10)
    assert queue.push(b"one") == 0
    assert queue.push(b"") == 1
    assert queue.push(b"three long") == 2
    with pytest.raises(LocalProtocolError) as info:
        queue.push(b"x" * 11)
    assert info.value.code == ErrorCode.RECORD_TOO_LARGE
    assert len(queue) == 3
    assert queue.pop(3) == (0, b"one")
    assert queue.pop(0) == (1, b"")
    assert queue.pop(5) is None  # does not fit: stays at the head
    assert queue.pop(10) == (2, b"three long")
    assert queue.pop(1000) is None
    queue.on_lost(0)  # no budget: counted as lost, never resent
    assert queue.lost == 1
    assert queue.pop(1000) is None


def test_full_queue_drops_the_oldest() -> None:
    queue = MessageQueue(max_messages=3)
    for i in range(5):
        queue.push(bytes([i]))
    assert queue.dropped == 2
    assert [queue.pop(10) for _ in range(4)] == [(2, b"\x02"), (3, b"\x03"), (4, b"\x04"), None]


def test_retransmission_budget() -> None:
    queue = MessageQueue(retransmissions=2)
    queue.push(b"a")
    queue.push(b"b", retransmissions=0)
    assert queue.pop(10) == (0, b"a")
    assert queue.pop(10) == (1, b"b")
    queue.on_lost(1)
    assert queue.lost == 1
    queue.on_lost(0)  # first retransmission
    queue.push(b"c")
    assert queue.pop(10) == (0, b"a")  # retransmissions go first
    queue.on_lost(0)  # second
    assert queue.pop(10) == (0, b"a")
    queue.on_lost(0)  # budget spent
    assert queue.lost == 2
    assert queue.pop(10) == (2, b"c")
    queue.on_acked(2)
    queue.on_acked(2)  # a duplicate ack is harmless
    queue.on_lost(2)  # a late loss report of an acked message counts as lost, not resent
    assert queue.pop(10) is None
    with pytest.raises(LocalProtocolError):
        queue.push(b"d", retransmissions=-1)


def test_bad_queue_parameters() -> None:
    for kwargs in ({"max_messages": 0}, {"max_message_size": -1}, {"retransmissions": -1}):
        with pytest.raises(LocalProtocolError):
            MessageQueue(**kwargs)


def test_in_flight_tracking_is_bounded() -> None:
    queue = MessageQueue(max_messages=4, retransmissions=5)
    for i in range(10):
        queue.push(bytes([i]))
        assert queue.pop(10) == (i, bytes([i]))
    for i in range(10):
        queue.on_lost(i)
    # Only the newest four were still tracked: they are resent, the rest are lost.
    assert queue.lost == 6
    assert [queue.pop(10) for _ in range(5)] == [(6, b"\x06"), (7, b"\x07"), (8, b"\x08"), (9, b"\x09"), None]


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    budget=st.integers(min_value=0, max_value=3),
    max_messages=st.integers(min_value=1, max_value=20),
)
def test_messages_accounted_once(seed: int, budget: int, max_messages: int) -> None:
    """Every pushed message ends up delivered, dropped or lost; none is sent more than 1 + budget times."""
    rng = random.Random(seed)
    queue = MessageQueue(max_messages=max_messages, retransmissions=budget)
    sends: dict[int, int] = {}
    delivered: set[int] = set()
    pushed = 0
    for _ in range(200):
        if rng.random() < 0.5:
            queue.push(rng.randbytes(rng.randint(0, 50)))
            pushed += 1
        popped = queue.pop(rng.randint(0, 60))
        if popped is not None:
            message_id = popped[0]
            sends[message_id] = sends.get(message_id, 0) + 1
            assert sends[message_id] <= 1 + budget
            if rng.random() < 0.4:
                queue.on_lost(message_id)
            else:
                delivered.add(message_id)
                queue.on_acked(message_id)
        assert len(queue) <= max_messages
    while (popped := queue.pop(1000)) is not None:
        delivered.add(popped[0])
        queue.on_acked(popped[0])
    assert len(delivered) + queue.dropped + queue.lost == pushed
