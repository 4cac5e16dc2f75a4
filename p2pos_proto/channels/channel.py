"""One channel of a connection: its state and buffers (spec/channels.md §2-§3).

A channel is opened towards a named service on the peer (OPEN), which accepts
(ACCEPT) or refuses (REFUSE) it.  A *stream* channel carries two reliable,
ordered byte streams, one per direction, each ended by a FIN or aborted by a
RESET; a *message* channel carries whole messages that may be lost (a bounded
number of retransmissions per message) and each side ends its direction with
CLOSE_CHANNEL.  The channel is closed, and its id forgotten, when both
directions are done.  The ``Connection`` owns the channels; its control-frame
queue and send path turn their state into frames.
"""

from __future__ import annotations

import enum

from ..errors import ErrorCode, LocalProtocolError
from ..session.replay import ReplayWindow
from .flow import ReceiveWindow, SendCredit
from .frames import ChannelKind
from .recvbuf import ReceiveBuffer
from .sendbuf import MessageQueue, SendBuffer


class ChannelState(enum.Enum):
    REQUESTED = "requested"  # the peer sent OPEN; the application has not answered
    OPENING = "opening"  # we sent OPEN; no answer yet
    OPEN = "open"
    CLOSED = "closed"


class ChannelInput(enum.Enum):
    ACCEPT = "accept"  # the application accepted a requested channel
    ACCEPTED = "accepted"  # the peer accepted ours
    REFUSE = "refuse"  # either side refused
    DONE = "done"  # both directions finished
    RESET = "reset"  # aborted (by either side or because the connection ended)


_S, _I = ChannelState, ChannelInput
#: Every allowed transition (spec/channels.md §3); anything else is a local error.
TRANSITIONS: dict[ChannelState, dict[ChannelInput, ChannelState]] = {
    _S.REQUESTED: {_I.ACCEPT: _S.OPEN, _I.REFUSE: _S.CLOSED, _I.RESET: _S.CLOSED},
    _S.OPENING: {_I.ACCEPTED: _S.OPEN, _I.REFUSE: _S.CLOSED, _I.RESET: _S.CLOSED},
    _S.OPEN: {_I.DONE: _S.CLOSED, _I.RESET: _S.CLOSED},
    _S.CLOSED: {},
}


class Channel:
    """State of one channel; the connection drives it."""

    def __init__(
        self,
        channel_id: int,
        kind: ChannelKind,
        service: str,
        *,
        state: ChannelState,
        window: ReceiveWindow,
        message_queue: int,
        message_size: int,
        retransmissions: int,
    ) -> None:
        self.id = channel_id
        self.kind = kind
        self.service = service
        self.state = state
        self.window = window
        #: The peer's window for this channel; 0 until its OPEN or ACCEPT tells us.
        self.credit = SendCredit(0)
        self.send: SendBuffer | None = None
        self.recv: ReceiveBuffer | None = None
        self.messages: MessageQueue | None = None
        self.seen_messages: ReplayWindow | None = None
        if kind is ChannelKind.STREAM:
            self.send = SendBuffer()
            self.recv = ReceiveBuffer(window)
        else:
            self.messages = MessageQueue(
                max_messages=message_queue, max_message_size=message_size, retransmissions=retransmissions
            )
            self.seen_messages = ReplayWindow()
        # Direction bookkeeping (spec/channels.md §3).
        self.local_finished = False  # FIN or CLOSE_CHANNEL queued
        self.local_done = False  # ... and acknowledged
        self.remote_done = False  # CLOSE_CHANNEL received (message channels)
        self.ended_reported = False
        self.data_reported = False
        self.want_writable = False

    def transition(self, event: ChannelInput) -> None:
        try:
            self.state = TRANSITIONS[self.state][event]
        except KeyError:
            raise LocalProtocolError(
                f"channel {self.id}: no transition from {self.state.value} on {event.value}",
                ErrorCode.CHANNEL_STATE_ERROR,
            ) from None

    @property
    def is_open(self) -> bool:
        return self.state is ChannelState.OPEN

    def wants_to_send(self) -> bool:
        """Data or a FIN waits (ignoring the connection-level credit)."""
        if self.state is not ChannelState.OPEN:
            return False
        if self.send is not None:
            return self.send.wants_to_send(self.credit.available())
        return self.messages is not None and len(self.messages) > 0

    def both_done(self) -> bool:
        """Both directions finished: our side acknowledged, the peer's side read to its end."""
        if self.send is not None and self.recv is not None:
            return self.send.is_finished_and_acked and self.recv.is_finished
        return self.local_done and self.remote_done
