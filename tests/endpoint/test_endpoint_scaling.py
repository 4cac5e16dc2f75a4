"""The endpoint's work per datagram and per timer touches only the session concerned (issue 9, item 2).

Checked structurally, not by timing: every session is wrapped in a spy that counts
the calls the endpoint makes on it, and a datagram or a timer for one session of
many must cost the others nothing.  Also: the timer heap, the pending set and the
``updated`` contract, reaping, routes per socket, and datagrams of other protocols.
"""

from __future__ import annotations

from collections.abc import Hashable

import pytest
from helpers import SeededRandom, flat, make_keys

from p2pos.proto import (
    ChannelConfig,
    ConnectionClosed,
    ConnectionReady,
    Endpoint,
    HandshakeCompleted,
    MessageReceived,
)
from p2pos.proto.endpoint.endpoint import DEFAULT_MAX_SESSIONS
from p2pos.proto.endpoint.timers import TimerHeap
from p2pos.proto.events import ForeignDatagramReceived

ALICE, BOB = make_keys("alice"), make_keys("bob")


def pump(a: Endpoint, b: Endpoint, now: float, *, a_name: Hashable = "A", b_name: Hashable = "B") -> None:
    for _ in range(100):
        moved = False
        for src, dst, name in ((a, b, a_name), (b, a, b_name)):
            for data, _ in flat(src.data_to_send(now)):
                moved = True
                dst.receive_data(data, name, now)
        if not moved:
            return
    raise AssertionError("never quiet")


@pytest.mark.parametrize("channels", [None, ChannelConfig()], ids=["sessions", "connections"])
def test_a_datagram_and_a_timer_touch_only_their_own_session(channels: ChannelConfig | None) -> None:
    """Observed through the endpoint's own bookkeeping (so that it holds for the compiled core too):
    the sessions marked for output and the deadlines in the timer heap."""
    a = Endpoint(ALICE, channels=channels, random=SeededRandom("a"))
    b = Endpoint(BOB, channels=channels, random=SeededRandom("b"))
    sessions = [a.connect("B", 0.0) for _ in range(50)]
    pump(a, b, 0.0)
    assert len(b) == 50 and not b._pending
    busy = sessions[7]
    if channels is None:
        busy.send(b"x", 0.0)
    else:
        connection = a.connection(busy.local_index)
        assert connection is not None
        connection.ping(0.0)
    a.updated(busy.local_index)
    ((datagram, _),) = flat(a.data_to_send(0.0))
    deadlines = {index: b._timers.get(index) for index in b._driven}
    b.receive_data(datagram, "A", 0.0)
    (touched,) = b._pending  # only the busy session's peer is marked for output
    assert b.session(touched) is not None
    assert {i for i in deadlines if b._timers.get(i) != deadlines[i]} <= {touched}
    assert len(b.data_to_send(0.0)) <= 1
    # A timer: only the sessions whose deadline passed are run (and so marked for output).
    due = b.get_timer()
    assert due is not None
    expected = {index for index in b._driven if (d := b._timers.get(index)) is not None and d <= due}
    b.handle_timer(due)
    assert set(b._pending) == expected and len(expected) < 50
    if channels is not None:  # connections have timers (ACK, keepalive): the earliest ones ran
        assert expected


def test_updated_is_the_contract_for_direct_calls() -> None:
    a = Endpoint(ALICE, random=SeededRandom("a"))
    b = Endpoint(BOB, random=SeededRandom("b"))
    session = a.connect("B", 0.0)
    pump(a, b, 0.0)
    session.send(b"hello", 0.0)
    assert a.data_to_send(0.0) == []  # the endpoint was not told
    a.updated(session.local_index)
    ((data, dest),) = flat(a.data_to_send(0.0))
    assert dest == "B"
    b.receive_data(data, "A", 0.0)
    events = []
    while (event := b.next_event()) is not None:
        events.append(event)
    assert [e.data for e in events if isinstance(e, MessageReceived)] == [b"hello"]
    a.updated(12345)  # an unknown id is ignored


def test_channel_events_carry_their_session_id() -> None:
    a = Endpoint(ALICE, channels=ChannelConfig(), random=SeededRandom("a"))
    b = Endpoint(BOB, channels=ChannelConfig(), random=SeededRandom("b"))
    first, second = a.connect("B", 0.0), a.connect("B", 0.0)
    pump(a, b, 0.0)
    ready = []
    while (event := a.next_event()) is not None:
        assert not isinstance(event, HandshakeCompleted)  # the connection reports ConnectionReady
        if isinstance(event, ConnectionReady):
            ready.append(event.session_id)
    assert sorted(ready) == sorted([first.local_index, second.local_index])


def test_closed_sessions_are_reaped_and_their_timers_go() -> None:
    a = Endpoint(ALICE, channels=ChannelConfig(), random=SeededRandom("a"))
    b = Endpoint(BOB, channels=ChannelConfig(), random=SeededRandom("b"))
    sessions = [a.connect("B", 0.0) for _ in range(5)]
    pump(a, b, 0.0)
    for session in sessions:
        connection = a.connection(session.local_index)
        assert connection is not None
        connection.close(0.0)
        a.updated(session.local_index)
    now = 0.0
    for _ in range(200):
        pump(a, b, now)
        timers = [t for t in (a.get_timer(), b.get_timer()) if t is not None]
        if not timers or (len(a) == 0 and len(b) == 0):
            break
        now = max(now, min(timers))
        a.handle_timer(now)
        b.handle_timer(now)
    assert len(a) == 0 and len(b) == 0
    assert len(a._timers) == 0 and len(b._timers) == 0
    closed = []
    while (event := a.next_event()) is not None:
        if isinstance(event, ConnectionClosed):
            closed.append(event.session_id)
    assert sorted(closed) == sorted(s.local_index for s in sessions)


def test_routes_follow_the_socket_a_session_arrived_on() -> None:
    a = Endpoint(ALICE, random=SeededRandom("a"))
    b = Endpoint(BOB, random=SeededRandom("b"))
    session = a.connect("B", 0.0, local="v6")
    assert a.socket_of(session.local_index) == "v6"
    for data, _ in flat(a.data_to_send(0.0)):
        b.receive_data(data, "A", 0.0, local="sock-2")
    (responder,) = b.sessions()
    assert b.socket_of(responder.local_index) == "sock-2"
    ((_, address, local),) = b.data_to_send(0.0)
    assert (address, local) == ("A", "sock-2")


@pytest.mark.parametrize(
    ("datagram", "protocol"),
    [
        (bytes.fromhex("000100002112a442") + bytes(12), "stun"),  # Binding request
        (bytes.fromhex("010100002112a442") + bytes(12), "stun"),  # Binding success response
        (b"\x40\x01\x00\x02hi", "turn-channel"),
        (b"\x16\xfe\xfd" + bytes(10), "dtls"),
        (b"\xc3" + bytes(30), "quic"),
        (b"\x80" + bytes(11), "rtp"),
    ],
)
def test_other_protocols_are_passed_on_whole(datagram: bytes, protocol: str) -> None:
    a = Endpoint(ALICE, random=SeededRandom("a"))
    a.receive_data(datagram, ("198.18.0.9", 3478), 0.0, local=3)
    assert a.next_event() == ForeignDatagramReceived(
        protocol=protocol, data=datagram, address=("198.18.0.9", 3478), local=3
    )
    assert a.passed_on[protocol] == 1 and not a.drops and len(a) == 0


def test_the_session_limit_is_one_of_memory() -> None:
    assert DEFAULT_MAX_SESSIONS >= 65536
    assert Endpoint(ALICE)._max_sessions == DEFAULT_MAX_SESSIONS


def test_timer_heap_keeps_one_live_deadline_per_key() -> None:
    heap = TimerHeap()
    heap.set(1, 5.0)
    heap.set(2, 3.0)
    heap.set(1, 2.0)  # moved earlier: the old entry is stale
    heap.set(3, None)  # no deadline: nothing recorded
    assert heap.next() == 2.0 and len(heap) == 2
    heap.set(1, 9.0)  # moved later
    assert heap.next() == 3.0
    assert heap.due(4.0) == [2]
    assert heap.next() == 9.0 and heap.get(2) is None
    heap.set(1, None)
    assert heap.next() is None and heap.due(100.0) == []


def test_timer_heap_stays_compact_under_churn() -> None:
    heap = TimerHeap()
    for key in range(100):
        heap.set(key, 1000.0 + key)
    for step in range(10_000):
        heap.set(step % 3, float(step))  # three busy keys re-arm constantly
    assert len(heap._heap) <= 2 * len(heap) + 64
    due = heap.due(20_000.0)
    assert sorted(due) == list(range(100))  # every key once, despite thousands of stale entries
    assert [heap_deadline for heap_deadline in map(_deadline_after_churn, due)] == sorted(
        map(_deadline_after_churn, due)
    )


def _deadline_after_churn(key: int) -> float:
    """Where ``test_timer_heap_stays_compact_under_churn`` left each key's deadline."""
    return float(9_999 - (9_999 - key) % 3) if key < 3 else 1000.0 + key
