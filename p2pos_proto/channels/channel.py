"""One channel of a connection: its state and buffers (spec/channels.md §2-§3).

A channel is opened towards a named service on the peer (OPEN), which accepts
(ACCEPT) or refuses (REFUSE) it.  A *stream* channel carries two reliable,
ordered byte streams, one per direction, each ended by a FIN or aborted by a
RESET; a *message* channel carries whole messages that may be lost (a bounded
number of retransmissions per message) and each side ends its direction with
CLOSE_CHANNEL.  The channel is closed, and its id forgotten, when both
directions are done.  The ``Connection`` owns the channels; its control-frame
queue and send path turn their state into frames.  ``ChannelConfig``, the
tunables of the whole channel layer, lives here too, below every module of the
connection that reads it.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Final

from ..common.varint import MAX_VARINT
from ..errors import ErrorCode, LocalProtocolError
from ..session.replay import ReplayWindow
from .flow import EARLY_WINDOW, ReceiveWindow, SendCredit
from .frames import ChannelKind, Open
from .recvbuf import ReceiveBuffer
from .sendbuf import MessageQueue, SendBuffer

__all__ = [
    "CONGESTION_CONTROLLERS",
    "EARLY_WINDOW",
    "INITIAL_MAX_DATA",
    "TRANSITIONS",
    "Channel",
    "ChannelConfig",
    "ChannelInput",
    "ChannelState",
]

#: The connection-level credit before the peer's first MAX_DATA (spec/flow.md §3.2).
INITIAL_MAX_DATA: Final = 1024 * 1024
#: The names ``ChannelConfig.congestion_control`` accepts (spec/recovery.md §5; sending.CONTROLLERS).
CONGESTION_CONTROLLERS: Final = ("newreno", "cubic", "bbr")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ChannelConfig:
    """Tunables of the channel layer; defaults are the spec's (spec/channels.md §8)."""

    #: What carries the connection's first path (spec/paths.md §5): "datagram" (UDP, TURN) or
    #: "stream" (a relay link, a QUIC stream: fixed ``stream_frame_size`` packets, no pacing,
    #: no PMTU probing; still acknowledged end to end).
    path_kind: str = "datagram"
    congestion_control: str = "bbr"  # or "newreno", "cubic" (spec/recovery.md §5)
    max_datagram_size: int = 1452  # the PMTU search's ceiling (UDP payload bytes)
    stream_frame_size: int = 16384  # packet size on a stream-carried path
    #: None: three keepalive intervals in force plus 1 s (spec/paths.md PTH-7.2); a number fixes it.
    idle_timeout: float | None = None
    #: This side's keepalive interval, announced to the peer (spec/paths.md §7); None: none asked for.
    keepalive_interval: float | None = 10.0
    #: Close the session (NO_ERROR) after this long with no channel and no application call (PTH-7.6).
    idle_close_after: float | None = None
    max_ack_delay: float = 0.025
    close_timeout: float = 10.0
    channel_window: int = 256 * 1024
    channel_window_max: int = 16 * 1024 * 1024
    connection_window: int = INITIAL_MAX_DATA
    connection_window_max: int = 24 * 1024 * 1024
    send_buffer: int = 1024 * 1024
    max_channels: int = 4096
    message_queue: int = 64
    pmtu_probing: bool = True

    def __post_init__(self) -> None:
        if self.path_kind not in ("datagram", "stream"):
            raise LocalProtocolError("path_kind is 'datagram' or 'stream'")
        if self.congestion_control not in CONGESTION_CONTROLLERS:
            raise LocalProtocolError(f"congestion_control is one of {', '.join(map(repr, CONGESTION_CONTROLLERS))}")
        if not 1200 <= self.max_datagram_size <= 65507 or not 1200 <= self.stream_frame_size <= 65000:
            raise LocalProtocolError("max_datagram_size and stream_frame_size must be 1200..65507")
        for value in (self.idle_timeout, self.keepalive_interval, self.idle_close_after):
            if value is not None and value <= 0:
                raise LocalProtocolError("idle_timeout, keepalive_interval and idle_close_after must be positive")
        if self.keepalive_interval is not None and self.keepalive_interval > 86_400:
            raise LocalProtocolError("keepalive_interval is at most one day")
        if self.connection_window < INITIAL_MAX_DATA:
            raise LocalProtocolError(f"connection_window must be at least {INITIAL_MAX_DATA}")
        if min(self.channel_window, self.send_buffer, self.max_channels, self.message_queue) < 1:
            raise LocalProtocolError("windows, buffers and limits must be positive")
        if self.channel_window > self.channel_window_max or self.connection_window > self.connection_window_max:
            raise LocalProtocolError(
                "an initial window cannot exceed its maximum (channel_window_max, connection_window_max)"
            )
        if max(self.channel_window_max, self.connection_window_max) > MAX_VARINT:
            raise LocalProtocolError(f"window maxima must be at most 2^62-1 ({MAX_VARINT})")


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
        #: ``credit`` is still the early credit of a stream we opened (spec/channels.md CH-2.7.1): the
        #: peer's first ACCEPT or MAX_CHANNEL_DATA replaces it, even downwards (CH-2.7.4).
        self.early_credit = False
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
        """Data or a FIN waits (ignoring the connection-level credit).

        A stream may send while ``OPENING``, within its early credit (spec/channels.md CH-2.7.1);
        messages wait for the ACCEPT (CH-2.7.8).
        """
        state = self.state
        if state is not ChannelState.OPEN and (state is not ChannelState.OPENING or self.send is None):
            return False
        if self.send is not None:
            return self.send.wants_to_send(self.credit.available())
        return self.messages is not None and len(self.messages) > 0

    def open_frame(self) -> Open:
        """The OPEN that asks the peer for this channel (spec/frames.md §4.4), sent again as it is now."""
        return Open(channel_id=self.id, kind=self.kind, service=self.service, initial_max_data=self.window.limit)

    def sends_early(self) -> bool:
        """A stream this side opened and the peer has not accepted yet: each packet carrying its data
        carries its OPEN too (spec/channels.md CH-2.7.2)."""
        return self.state is ChannelState.OPENING and self.send is not None

    def both_done(self) -> bool:
        """Both directions finished: our side acknowledged, the peer's side read to its end."""
        if self.send is not None and self.recv is not None:
            return self.send.is_finished_and_acked and self.recv.is_finished
        return self.local_done and self.remote_done
