"""Whatever an authenticated peer puts in its packets, the connection never raises.

The peer is the real holder of the session keys, so the record layer cannot filter it:
any frame sequence must either be processed or close the connection with an error
code (spec/channels.md §11); nothing may escape from ``receive_data``, ``data_to_send``
or the timers.
"""

from __future__ import annotations

import os

from chan_helpers import Pair
from hypothesis import given, settings
from hypothesis import strategies as st
from test_frames import frames

from p2pos.proto.channels.connection import ConnectionState
from p2pos.proto.channels.frames import (
    Accept,
    ChannelKind,
    CloseChannel,
    Frame,
    MaxChannelData,
    MaxData,
    Message,
    Open,
    Refuse,
    Reset,
    StopSending,
    Stream,
    encode_frames,
)
from p2pos.proto.events import ConnectionClosed

#: More for a deep local run: P2POS_FUZZ_EXAMPLES=5000 pytest tests/channels/test_connection_fuzz.py
EXAMPLES = int(os.environ.get("P2POS_FUZZ_EXAMPLES", "150"))

# Small ids, offsets and sizes, so that frames meet channels that exist and states that matter.
ids = st.integers(min_value=0, max_value=9)
small = st.integers(min_value=0, max_value=3000)
data = st.binary(max_size=200)
plausible: st.SearchStrategy[Frame] = st.one_of(
    st.builds(
        Open, channel_id=ids, kind=st.sampled_from(ChannelKind), service=st.just("files"), initial_max_data=small
    ),
    st.builds(Accept, channel_id=ids, initial_max_data=small),
    st.builds(Refuse, channel_id=ids, code=st.integers(0, 40), reason=st.just("no")),
    st.builds(Stream, channel_id=ids, offset=small, data=data, fin=st.booleans()),
    st.builds(Reset, channel_id=ids, code=st.integers(0, 40), final_size=small),
    st.builds(StopSending, channel_id=ids, code=st.integers(0, 40)),
    st.builds(MaxData, maximum=small),
    st.builds(MaxChannelData, channel_id=ids, maximum=small),
    st.builds(Message, channel_id=ids, message_id=small, data=data),
    st.builds(CloseChannel, channel_id=ids),
    frames,
)


@settings(max_examples=EXAMPLES)
@given(st.lists(st.lists(plausible, min_size=1, max_size=6), min_size=1, max_size=6))
def test_any_frames_from_the_peer_are_handled_or_close_the_connection(packets: list[list[Frame]]) -> None:
    pair = Pair(seed=3)
    now = pair.connect()
    a, b = pair.a.c, pair.b.c
    b.open_channel("files", now)  # a channel of b's own (odd id) for frames to meet
    for frame_list in packets:
        a.session.send(encode_frames(frame_list), now)  # bypasses a's Connection: raw frames
        for datagram in a.session.data_to_send(now):
            b.receive_data(datagram, now)
        b.data_to_send(now)
        timer = b.get_timer()
        if timer is not None:
            b.handle_timer(timer)
            b.data_to_send(timer)
        while b.next_event() is not None:
            pass
    assert b.state in (ConnectionState.READY, ConnectionState.CLOSING, ConnectionState.CLOSED)
    if b.state is ConnectionState.CLOSED:
        assert any(isinstance(event, ConnectionClosed) for _, event in pair.b.events) or b.session.close_code
