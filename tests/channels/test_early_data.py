"""Early stream data with OPEN (spec/channels.md §2.7): the opener sends up to EARLY_WINDOW bytes
before the ACCEPT, each packet of them carrying the OPEN; the acceptor holds them until its
application accepts, discards them on a refusal, and settles the connection window with the
opener's answering RESET.

Two ``Connection`` objects over the seeded link emulator in simulated time (``chan_helpers.Pair``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from chan_helpers import Pair, Side, payload

from p2pos.proto.channels.channel import EARLY_WINDOW
from p2pos.proto.channels.connection import ChannelConfig, ConnectionState
from p2pos.proto.channels.frames import (
    Accept,
    ChannelKind,
    Frame,
    Message,
    Open,
    Reset,
    Stream,
    parse_frames_untrusted,
)
from p2pos.proto.errors import ErrorCode
from p2pos.proto.events import (
    ChannelDataAvailable,
    ChannelEnded,
    ChannelMessage,
    ChannelOpened,
    ChannelRefused,
    ChannelRequested,
    ChannelReset,
    ConnectionClosed,
)
from p2pos.proto.simulation.link import LinkConfig

T = TypeVar("T")


def _packets(side: Side) -> list[list[Frame]]:
    """The frames of every packet ``side`` sent, packet by packet."""
    return [parse_frames_untrusted(p) for p in getattr(side.c.session, "sent_plaintexts", [])]


def _of(side: Side, kind: type[T]) -> list[T]:
    """The events of one type ``side`` drained, in order."""
    return [e for _, e in side.events if isinstance(e, kind)]


def _note_requests() -> tuple[list[int], Callable[[Side, Any, float], None]]:
    """A hook for an acceptor that does not answer at once: it notes the requested channels."""
    pending: list[int] = []

    def hook(side: Side, event: Any, now: float) -> None:
        if isinstance(event, ChannelRequested):
            pending.append(event.channel_id)

    return pending, hook


def test_early_data_leaves_with_the_open_and_is_delivered_after_the_accept() -> None:
    """CH-2.7.1, CH-2.7.2, CH-2.7.6: the request is in the OPEN's packet; the acceptor reports it only
    once accepted, then all of it and the FIN."""
    pair = Pair(LinkConfig(delay=0.05), LinkConfig(delay=0.05), seed=2)
    pair.connect()
    pair.b.auto_accept = False
    pending, hook = _note_requests()
    pair.b.hook = hook
    start = pair.now
    cid = pair.a.c.open_channel("files", start)
    assert pair.a.c.send(cid, b"GET /index", start) == 10
    pair.a.c.finish(cid, start)
    before = len(_packets(pair.a))
    pair.run(start + 0.2, lambda now: bool(pending))
    first = _packets(pair.a)[before]
    assert [type(f) for f in first if isinstance(f, Open | Stream)] == [Open, Stream]
    assert pending == [cid] and pair.now - start < 0.06  # one way, not a round trip
    channel = pair.b.c.channels[cid]
    assert channel.recv is not None and channel.recv.readable == 10  # held, not reported
    assert not _of(pair.b, ChannelDataAvailable) and not _of(pair.b, ChannelEnded)
    pair.b.c.accept_channel(cid, pair.now)
    pair.b.pump(pair.now)
    assert [e.channel_id for e in _of(pair.b, ChannelDataAvailable)] == [cid]
    assert [e.channel_id for e in _of(pair.b, ChannelEnded)] == [cid]
    assert bytes(pair.b.received[cid]) == b"GET /index"


def test_early_data_stops_at_early_window_and_every_early_packet_carries_the_open() -> None:
    """CH-2.7.1, CH-2.7.2, FLOW-3.2.3: no more than EARLY_WINDOW before the ACCEPT; the rest after it."""
    pair = Pair(LinkConfig(delay=0.03), LinkConfig(delay=0.03), seed=3)
    pair.connect()
    pair.b.auto_accept = False
    data = payload(100_000, seed=9)
    cid = pair.a.c.open_channel("files", pair.now)
    assert pair.a.c.send(cid, data, pair.now) == len(data)
    pair.a.c.finish(cid, pair.now)
    before = len(_packets(pair.a))
    pair.run(pair.now + 0.5)  # the acceptor's application does not answer for a while
    early = [f for p in _packets(pair.a)[before:] for f in p if isinstance(f, Stream) and f.channel_id == cid]
    assert sum(len(f.data) for f in early) == EARLY_WINDOW
    assert max(f.offset + len(f.data) for f in early) == EARLY_WINDOW
    for packet in _packets(pair.a)[before:]:
        if any(isinstance(f, Stream) and f.channel_id == cid for f in packet):
            assert any(isinstance(f, Open) and f.channel_id == cid for f in packet), packet
    assert pair.b.c.state is ConnectionState.READY
    pair.b.c.accept_channel(cid, pair.now)
    pair.run(pair.now + 5.0, lambda now: len(pair.b.received.get(cid, b"")) == len(data))
    assert bytes(pair.b.received[cid]) == data


def test_lost_early_packets_are_sent_again_with_their_open() -> None:
    """CH-2.7.2: with loss and reordering an early packet never reaches the acceptor before an OPEN."""
    for seed in range(6):
        pair = Pair(LinkConfig(delay=0.02), seed=seed)
        pair.connect()
        lossy = LinkConfig(delay=0.02, loss=0.2, reorder=0.3, reorder_delay=0.03)
        pair.link._directions["a"].config = lossy  # from now on: the early packets meet loss and reordering
        data = payload(3 * EARLY_WINDOW, seed=seed)
        cid = pair.a.c.open_channel("files", pair.now)
        pair.a.c.send(cid, data, pair.now)
        pair.a.c.finish(cid, pair.now)
        pair.run(pair.now + 30.0, lambda now: len(pair.b.received.get(cid, b"")) == len(data))
        assert bytes(pair.b.received.get(cid, b"")) == data, seed
        assert not _of(pair.b, ConnectionClosed) and not _of(pair.a, ConnectionClosed), seed


def test_refused_early_data_is_discarded_and_the_connection_window_settled() -> None:
    """CH-2.7.7, FLOW-3.3.2: the opener learns of the refusal; its RESET carries what it sent early;
    the acceptor counts those bytes as received and read, so no connection credit leaks."""
    pair = Pair(LinkConfig(delay=0.02), LinkConfig(delay=0.02), seed=4)
    pair.connect()
    cid = pair.a.c.open_channel("nothing-here", pair.now)
    pair.a.c.send(cid, payload(3000), pair.now)
    pair.run(pair.now + 1.0, lambda now: bool(_of(pair.a, ChannelRefused)))
    (refused,) = _of(pair.a, ChannelRefused)
    assert refused.code is ErrorCode.SERVICE_UNKNOWN
    pair.run(pair.now + 1.0)
    resets = [f for p in _packets(pair.a) for f in p if isinstance(f, Reset) and f.channel_id == cid]
    assert resets and resets[0].final_size == 3000 and resets[0].code == ErrorCode.CHANNEL_REFUSED
    window = pair.b.c.conn_window
    assert window.highest_received == window.consumed == 3000
    assert not pair.b.c._reset_unsettled  # settled
    assert not pair.b.received.get(cid)  # never delivered
    # The connection goes on: the next channel carries its data.
    data = payload(50_000, seed=1)
    nxt = pair.a.c.open_channel("files", pair.now)
    pair.a.write(nxt, data)
    pair.run(pair.now + 5.0, lambda now: len(pair.b.received.get(nxt, b"")) == len(data))
    assert bytes(pair.b.received[nxt]) == data


def test_more_than_early_window_before_the_accept_is_a_flow_control_error() -> None:
    """CH-2.7.5: an opener that sends beyond EARLY_WINDOW before the ACCEPT closes the connection."""
    pair = Pair(seed=5)
    pair.connect()
    pair.b.auto_accept = False
    cid = pair.a.c.open_channel("files", pair.now)
    pair.a.c.channels[cid].credit.limit = EARLY_WINDOW + 5000  # a broken opener
    pair.a.c.send(cid, payload(EARLY_WINDOW + 5000), pair.now)
    pair.run(pair.now + 1.0, lambda now: bool(_of(pair.b, ConnectionClosed)))
    (closed,) = _of(pair.b, ConnectionClosed)
    assert closed.code is ErrorCode.FLOW_CONTROL_ERROR


def test_an_accept_below_early_window_replaces_the_early_credit() -> None:
    """CH-2.7.4, FLOW-3.2.5: an acceptor with a 1000-byte window advertises 1000 and takes the
    EARLY_WINDOW bytes sent before its ACCEPT; the opener's credit becomes 1000, so it sends nothing
    new until a MAX_CHANNEL_DATA raises the limit above what it sent."""
    pair = Pair(LinkConfig(delay=0.02), LinkConfig(delay=0.02), config_b=ChannelConfig(channel_window=1000), seed=6)
    pair.connect()
    pair.b.auto_accept = False
    pair.b.auto_read = False
    pending, hook = _note_requests()
    pair.b.hook = hook
    data = payload(40_000, seed=2)
    cid = pair.a.c.open_channel("files", pair.now)
    pair.a.c.send(cid, data, pair.now)
    pair.a.c.finish(cid, pair.now)
    pair.run(pair.now + 0.3)
    assert pending == [cid]
    pair.b.c.accept_channel(cid, pair.now)
    pair.run(pair.now + 1.0)
    accepts = [f for p in _packets(pair.b) for f in p if isinstance(f, Accept) and f.channel_id == cid]
    assert [f.initial_max_data for f in accepts] == [1000]
    credit = pair.a.c.channels[cid].credit
    assert (credit.limit, credit.sent, credit.available()) == (1000, EARLY_WINDOW, 0)
    held = pair.b.c.channels[cid].recv
    assert held is not None and held.readable == EARLY_WINDOW  # taken beyond the advertised 1000
    assert not _of(pair.b, ConnectionClosed)
    pair.b.auto_read = True
    pair.b.pump(pair.now)
    pair.run(pair.now + 20.0, lambda now: len(pair.b.received.get(cid, b"")) == len(data))
    assert bytes(pair.b.received[cid]) == data
    assert not _of(pair.b, ConnectionClosed)


def test_messages_wait_for_the_accept() -> None:
    """CH-2.7.8: a message channel sends nothing but its OPEN before the ACCEPT."""
    pair = Pair(LinkConfig(delay=0.02), LinkConfig(delay=0.02), seed=7)
    pair.connect()
    pair.b.auto_accept = False
    pending, hook = _note_requests()
    pair.b.hook = hook
    cid = pair.a.c.open_channel("chat", pair.now, kind=ChannelKind.MESSAGE)
    pair.a.c.send_message(cid, b"hi", pair.now)
    pair.run(pair.now + 0.5)
    assert pending == [cid]
    assert not [f for p in _packets(pair.a) for f in p if isinstance(f, Message)]
    pair.b.c.accept_channel(cid, pair.now)
    pair.run(pair.now + 1.0, lambda now: bool(_of(pair.b, ChannelMessage)))
    assert [e.data for e in _of(pair.b, ChannelMessage)] == [b"hi"]
    assert [e.channel_id for e in _of(pair.a, ChannelOpened)] == [cid]


def test_a_reset_while_opening_carries_the_open_when_the_open_was_lost() -> None:
    """CH-3.3.12: the packet with the OPEN and the early data is lost, then the opener resets the
    channel: its RESET travels with the OPEN, so the peer creates and resets the channel instead of
    closing the connection for a RESET of a channel never opened (CH-2.6.2)."""
    pair = Pair(LinkConfig(delay=0.02), LinkConfig(delay=0.02), seed=8)
    pair.connect()
    cid = pair.a.c.open_channel("files", pair.now)
    pair.a.c.send(cid, payload(500), pair.now)
    lost = pair.a.c.data_to_send(pair.now)  # never delivered
    assert lost
    pair.a.c.reset_channel(cid, pair.now + 0.001)
    pair.run(pair.now + 3.0, lambda now: bool(_of(pair.b, ChannelReset)))
    assert not _of(pair.b, ConnectionClosed) and not _of(pair.a, ConnectionClosed)
    assert [e.channel_id for e in _of(pair.b, ChannelReset)] == [cid]
    packets = _packets(pair.a)
    with_reset = [p for p in packets if any(isinstance(f, Reset) and f.channel_id == cid for f in p)]
    for packet in with_reset:
        kinds = [type(f) for f in packet if isinstance(f, Open | Reset) and f.channel_id == cid]
        assert kinds == [Open, Reset], packet
