"""The connection's state machine (spec/channels.md §1.1) and internal failures (§11).

* The table and the Mermaid diagram of channels.md §1.1 are ``connection.TRANSITIONS``.
* ``receive_data`` and ``handle_timer`` never raise: a ``LocalProtocolError`` inside them (a
  failed internal invariant, injected here) closes the connection with INTERNAL_ERROR, the
  peer is told, and ``ConnectionClosed`` follows.
* Every channel-layer event names its connection (``session_id``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from chan_helpers import INDEX_A, INDEX_B, KEYS_A, Pair, TappedSession, payload

from p2pos.proto.channels.connection import TRANSITIONS, Connection, ConnectionInput, ConnectionState
from p2pos.proto.errors import ErrorCode, LocalProtocolError
from p2pos.proto.events import ChannelReset, ConnectionClosed
from p2pos.proto.simulation.link import LinkConfig
from p2pos.proto.simulation.prng import Prng

CHANNELS_MD = Path(__file__).resolve().parents[2] / "spec" / "channels.md"
_EDGE = re.compile(r"^\s*(\w+) --> (\w+) : (\w+)\s*$")
_ROW = re.compile(r"^\| `(\w+)` \| `(\w+)` \| `(\w+)` \|$")


def _section_1_1() -> str:
    text = CHANNELS_MD.read_text(encoding="utf-8")
    start = text.index("### §1.1 ")
    return text[start : text.index("\n## §2 ", start)]


def _expected() -> set[tuple[str, str, str]]:
    return {(s.name, i.name, t.name) for s, row in TRANSITIONS.items() for i, t in row.items()}


def test_the_table_and_the_diagram_are_the_transition_table() -> None:
    section = _section_1_1()
    rows = {m.groups() for line in section.splitlines() if (m := _ROW.match(line))}
    assert rows == _expected()
    (block,) = re.findall(r"```mermaid\n(.*?)```", section, flags=re.DOTALL)
    edges = set()
    for line in block.splitlines():
        if m := _EDGE.match(line):
            source, target, label = m.groups()
            edges.add((source, label, target))
    assert edges == _expected()
    assert TRANSITIONS[ConnectionState.CLOSED] == {}
    assert set(TRANSITIONS) == set(ConnectionState)
    assert {i for row in TRANSITIONS.values() for i in row} == set(ConnectionInput)


def _closed(events: Sequence[object]) -> list[ConnectionClosed]:
    return [e for e in events if isinstance(e, ConnectionClosed)]


def test_an_internal_failure_in_the_receive_path_closes_with_internal_error() -> None:
    pair = Pair(LinkConfig(delay=0.01), seed=3)
    pair.connect()
    pair.b.auto_read = False  # the bytes stay unread: a RESET returns them to the connection window
    channel_id = pair.a.c.open_channel("files", pair.now)
    pair.a.write(channel_id, payload(50_000), finish=False)
    pair.run(pair.now + 0.5)
    b = pair.b.c
    recv = b.channels[channel_id].recv
    assert recv is not None and recv.readable == 50_000
    # Break an invariant: the connection window forgets the channel's bytes, so returning
    # them on the peer's RESET fails (LocalProtocolError) inside the receive path.
    b.conn_window.highest_received = b.conn_window.consumed
    pair.a.c.reset_channel(channel_id, pair.now)
    pair.run(pair.now + 1.0)  # would raise out of receive_data if the failure escaped
    assert b.state is ConnectionState.CLOSED
    (closed,) = _closed([e for _, e in pair.b.events])
    assert closed.code is ErrorCode.INTERNAL_ERROR and not closed.by_peer
    assert closed.session_id == INDEX_B
    (told,) = _closed([e for _, e in pair.a.events])  # the peer got the CLOSE record
    assert told.code is ErrorCode.INTERNAL_ERROR and told.by_peer
    assert told.session_id == INDEX_A


class _FailingTimers(TappedSession):
    """A session whose timer handling fails an internal check."""

    def handle_timer(self, now: float) -> None:
        raise LocalProtocolError("injected", ErrorCode.INTERNAL_ERROR)


def test_an_internal_failure_in_handle_timer_closes_with_internal_error() -> None:
    session = _FailingTimers.initiate(KEYS_A, local_index=INDEX_A, now=0.0, random=Prng(1))
    conn = Connection(session, 0.0)
    channel_id = conn.open_channel("files", 0.0)
    timer = conn.get_timer()
    assert timer is not None
    conn.handle_timer(timer)  # never raises
    events = []
    while (event := conn.next_event()) is not None:
        events.append(event)
    assert conn.state is ConnectionState.CLOSED
    reset, closed_event = events
    assert isinstance(reset, ChannelReset) and reset.channel_id == channel_id
    assert isinstance(closed_event, ConnectionClosed)
    (closed,) = _closed(events)
    assert closed.code is ErrorCode.INTERNAL_ERROR and "injected" in closed.reason


def test_every_event_names_its_connection() -> None:
    pair = Pair(LinkConfig(delay=0.01), seed=4)
    pair.connect()
    channel_id = pair.a.c.open_channel("files", pair.now)
    pair.a.write(channel_id, payload(20_000))
    pair.a.c.ping(pair.now)
    pair.run(pair.now + 1.0)
    pair.a.c.close(pair.now)
    pair.run(pair.now + 2.0)
    for side, index in ((pair.a, INDEX_A), (pair.b, INDEX_B)):
        kinds = {type(e).__name__ for _, e in side.events}
        assert {"ConnectionReady", "ConnectionClosed"} <= kinds
        assert all(e.session_id == index for _, e in side.events), side.name
    assert any(type(e).__name__ == "PingAcknowledged" for _, e in pair.a.events)
