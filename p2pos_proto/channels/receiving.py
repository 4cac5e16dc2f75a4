"""The connection's receive path: packets and frames from the peer (spec/channels.md §2-§4, flow.md §3).

``ReceivePath`` is the half of ``Connection`` that turns an authenticated
packet into state changes and events: it parses every frame of a packet before
acting on any (frames.md §5), records the packet for acknowledgement
(channels.md §4), and hands each frame to its handler.  A packet that starts
with STREAM frames, the bulk of any transfer, takes a shorter path without
``Stream`` objects, and one that starts with an ACK (what a data sender mostly
receives) one without an ``Ack`` object.  Frames that break a rule raise ``RemoteProtocolError``,
which closes the connection with the frame's error code (channels.md §11).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from ..common.ranges import RangeSet
from ..errors import ErrorCode, RemoteProtocolError, channel_code_from_wire, channel_code_to_wire
from ..events import (
    ChannelDataAvailable,
    ChannelEnded,
    ChannelMessage,
    ChannelOpened,
    ChannelRefused,
    ChannelRequested,
    ChannelReset,
)
from ..recovery.pmtu import BASE_PLPMTU
from ..session.record import OVERHEAD as RECORD_OVERHEAD
from ..session.session import SecureSession
from . import frames as fr
from .channel import EARLY_WINDOW, Channel, ChannelConfig, ChannelInput, ChannelState
from .flow import EarlyReceiveWindow, ReceiveWindow
from .pathing import PathLayer

#: Channels the peer may open before our first MAX_CHANNELS arrives (spec/channels.md §2).
INITIAL_MAX_CHANNELS: Final = 100
#: The frame types that start a packet taking the STREAM hot path.
_STREAM_TYPE_VALUES: Final = (int(fr.FrameType.STREAM), int(fr.FrameType.STREAM_FIN))
# The same as two integers: mypyc compiles ``x in (A, B)`` (a tuple display) to two comparisons,
# but ``x in _STREAM_TYPE_VALUES`` (a tuple object) to a call.
_STREAM_TYPE: Final = int(fr.FrameType.STREAM)
_STREAM_FIN_TYPE: Final = int(fr.FrameType.STREAM_FIN)
_ACK_TYPE: Final = int(fr.FrameType.ACK)
# Enum members read on every packet, as module constants (an enum member is a class attribute lookup).
_OPENING: Final = ChannelState.OPENING
_REQUESTED: Final = ChannelState.REQUESTED
_CLOSED: Final = ChannelState.CLOSED


def _probing(frames: Sequence[fr.Frame]) -> bool:
    """A probing packet: a PATH_CHALLENGE or PATH_RESPONSE, and nothing but those, PADDING and ACK
    (frames.md §4.18).  An ACK-only packet is not probing: a receiver's ACKs move the path too."""
    path_frame = False
    for frame in frames:
        if isinstance(frame, fr.PathChallenge | fr.PathResponse):
            path_frame = True
        elif not isinstance(frame, fr.Padding | fr.Ack):
            return False
    return path_frame


class ReceivePath(PathLayer):
    """Packets and frames from the peer; ``Connection`` derives from it.

    One chain of single inheritance (``SendPath`` <- ``PathLayer`` <- ``ReceivePath`` <-
    ``Connection``) rather than two mixins, so that mypyc can compile it; this layer
    initialises the state only frames from the peer (and ``open_channel``) change.
    """

    __slots__ = (
        "_max_channels",
        "_next_channel",
        "_peer_max_channels",
        "_peer_max_known",
        "_peer_seen",
        "_reset_unsettled",
    )

    def __init__(self, session: SecureSession, now: float, config: ChannelConfig) -> None:
        super().__init__(session, now, config)
        self._next_channel = 0 if session.initiator else 1
        #: Indices (id // 2) of channels the peer ever opened; made at its first OPEN.
        self._peer_seen: RangeSet | None = None
        self._peer_max_channels = INITIAL_MAX_CHANNELS
        self._peer_max_known = False  # the first MAX_CHANNELS replaces the initial allowance
        self._max_channels = config.max_channels  # the most peer channels held at once
        #: Stream channels we reset before knowing the peer's final size: id -> (highest received,
        #: limit), kept until the peer's answering RESET says how much it sent (spec/flow.md §3.3).
        self._reset_unsettled: dict[int, tuple[int, int]] = {}

    def _new_channel(
        self, channel_id: int, kind: fr.ChannelKind, service: str, state: ChannelState, now: float, *, retrans: int
    ) -> Channel:
        cfg = self.config
        if state is ChannelState.REQUESTED and kind is fr.ChannelKind.STREAM:  # CH-2.7.4
            window: ReceiveWindow = EarlyReceiveWindow(cfg.channel_window, cfg.channel_window_max, now=now)
        else:
            window = ReceiveWindow(cfg.channel_window, cfg.channel_window_max, now=now)
        # Messages are sized for the base PMTU: they must fit even after a black-hole fallback.
        room = BASE_PLPMTU - RECORD_OVERHEAD - 32
        channel = Channel(
            channel_id,
            kind,
            service,
            state=state,
            window=window,
            message_queue=cfg.message_queue,
            message_size=room,
            retransmissions=retrans,
        )
        if kind is fr.ChannelKind.STREAM and state is ChannelState.OPENING:
            channel.credit.update_limit(EARLY_WINDOW)  # CH-2.7.1: the early credit
            channel.early_credit = True
        self.channels[channel_id] = channel
        return channel

    def _reset_channel(self, channel: Channel, wire_code: int) -> None:
        """Abort ``channel`` in both directions with RESET (``Connection.reset_channel``, STOP_SENDING)."""
        channel_id = channel.id
        if channel.state is _OPENING:
            self._open_with_reset(channel)
        final = channel.send.reset() if channel.send is not None else 0
        self._control[(fr.FrameType.RESET, channel_id)] = fr.Reset(
            channel_id=channel_id, code=wire_code, final_size=final
        )
        self._release_receive(channel)
        recv = channel.recv
        if recv is not None and recv.final_size is None:
            limit = recv.window.limit
            if channel_id % 2 == self._peer_parity and limit < EARLY_WINDOW:
                limit = EARLY_WINDOW  # the peer may have sent that much early (CH-2.7.4)
            self._keep_unsettled(channel_id, recv.window.highest_received, limit)
        channel.transition(ChannelInput.RESET)
        self._forget(channel)

    def _open_with_reset(self, channel: Channel) -> None:
        """CH-3.3.12: the RESET of a channel still opening goes with its OPEN (queued just before it, so
        in the same packet), and the OPEN is sent again with it if lost, though the channel is gone: a
        peer that lost the OPEN would take the RESET for a channel never opened (CH-2.6.2)."""
        key = (fr.FrameType.OPEN, channel.id)
        frame = self._control.pop(key, None) or channel.open_frame()
        self._control[key] = frame
        self._sent_control[key] = frame  # what ``_current_control`` resends once the channel is forgotten

    def _on_packet(self, pn: int, plaintext: bytes, now: float) -> None:
        """One authenticated packet of an open connection.

        Raises ``RemoteProtocolError`` for a frame that breaks a rule: the
        ``Connection`` closes with its code (channels.md §11).
        """
        first = plaintext[0] if plaintext else -1
        if first in (_STREAM_TYPE, _STREAM_FIN_TYPE):
            if pn > self._largest_nonprobing:
                self._on_nonprobing(pn, now)
            self._on_stream_packet(pn, plaintext, now)
            return
        if first == _ACK_TYPE:
            self._on_ack_packet(pn, plaintext, now)
            return
        frames = fr.parse_frames_untrusted(plaintext)
        probing = _probing(frames)
        # A probing packet is answered by its PATH_RESPONSE (or is one): its sender tracks no ACK of it,
        # so it elicits none (frames.md FRA-3.2, paths.md PTH-7.4: two packets per path per interval).
        self._record_packet(pn, not probing and any(fr.is_ack_eliciting(frame) for frame in frames), frames, now)
        if pn > self._largest_nonprobing and not probing:
            self._on_nonprobing(pn, now)
        for frame in frames:
            self._on_frame(frame, now)

    def _on_stream_packet(self, pn: int, plaintext: bytes, now: float) -> None:
        """The hot path for a packet that starts with STREAM frames (bulk data): no ``Stream`` objects.

        As for any packet, every frame is parsed before any is processed.
        """
        end = len(plaintext)
        channel_id, offset, data, fin, pos = fr.parse_stream_untrusted(plaintext, 0)
        if pos == end:  # one STREAM frame: the bulk of any transfer
            self._record_packet(pn, True, (), now)
            channel = self._peer_frame_channel(channel_id)
            if channel is not None:
                self._on_stream(channel, offset, data, fin)
            return
        streams = [(channel_id, offset, data, fin)]
        while pos < end and plaintext[pos] in _STREAM_TYPE_VALUES:
            channel_id, offset, data, fin, pos = fr.parse_stream_untrusted(plaintext, pos)
            streams.append((channel_id, offset, data, fin))
        rest = fr.parse_frames_untrusted(plaintext[pos:]) if pos < end else []
        self._record_packet(pn, True, rest, now)
        for channel_id, offset, data, fin in streams:
            channel = self._peer_frame_channel(channel_id)
            if channel is not None:
                self._on_stream(channel, offset, data, fin)
        for frame in rest:
            self._on_frame(frame, now)

    def _on_ack_packet(self, pn: int, plaintext: bytes, now: float) -> None:
        """The hot path for a packet that starts with an ACK (the data sender's return path): no ``Ack`` object.

        As for any packet, every frame is parsed before any is processed.
        """
        ranges, ack_delay, pos = fr.parse_ack_untrusted(plaintext, 0)
        rest = fr.parse_frames_untrusted(plaintext[pos:]) if pos < len(plaintext) else []
        probing = _probing(rest)
        self._record_packet(pn, not probing and any(fr.is_ack_eliciting(frame) for frame in rest), rest, now)
        if pn > self._largest_nonprobing and not probing:
            self._on_nonprobing(pn, now)
        self._on_ack(ranges, ack_delay, now)
        for frame in rest:
            self._on_frame(frame, now)

    def _record_packet(self, pn: int, eliciting: bool, frames: Sequence[fr.Frame], now: float) -> None:
        """Note a packet for acknowledgement (channels.md §4), on every kind of path (paths.md §5)."""
        self.acks.on_packet(pn, eliciting, now)

    def _on_frame(self, frame: fr.Frame, now: float) -> None:
        match frame:
            case fr.Ack():
                self._on_ack(frame.ranges(), frame.ack_delay, now)
            case fr.Padding() | fr.Ping():
                pass
            case fr.PathChallenge():
                self._on_path_challenge(frame.data)
            case fr.PathResponse():
                self._on_path_response(frame.data, now)
            case fr.KeepaliveInterval():
                self._live.on_peer(frame)  # spec/paths.md PTH-7.1: the newest announcement wins
            case fr.Open():
                self._on_open(frame, now)
            case fr.Accept():
                channel = self._own_channel(frame.channel_id)
                if channel is not None:
                    self._implicitly_accepted(channel)
                    self._credit_from_peer(channel, frame.initial_max_data)
            case fr.Refuse():
                channel = self._own_channel(frame.channel_id)
                if channel is not None and channel.state is ChannelState.OPENING:
                    channel.transition(ChannelInput.REFUSE)
                    self._forget(channel)
                    self._settle_refused(channel)
                    code, app_code = channel_code_from_wire(frame.code)
                    self._events.append(
                        ChannelRefused(
                            session_id=self.session.local_index,
                            channel_id=channel.id,
                            code=code,
                            reason=frame.reason,
                            application_code=app_code,
                        )
                    )
            case fr.Stream():
                channel = self._peer_frame_channel(frame.channel_id)
                if channel is not None:
                    self._on_stream(channel, frame.offset, frame.data, frame.fin)
            case fr.Message():
                channel = self._peer_frame_channel(frame.channel_id)
                if channel is not None:
                    self._on_message(channel, frame)
            case fr.Reset():
                channel = self._peer_frame_channel(frame.channel_id)
                if channel is not None:
                    self._on_reset(channel, frame)
                else:
                    self._settle_reset(frame)
            case fr.StopSending():
                channel = self._peer_frame_channel(frame.channel_id)
                if channel is not None:
                    code, app_code = channel_code_from_wire(frame.code)
                    self._events.append(
                        ChannelReset(
                            session_id=self.session.local_index,
                            channel_id=channel.id,
                            code=code,
                            reason="",
                            by_peer=True,
                            application_code=app_code,
                        )
                    )
                    # The answering RESET repeats the peer's code as it was (an unknown one as PROTOCOL_VIOLATION).
                    self._reset_channel(channel, channel_code_to_wire(code if app_code is None else app_code))
            case fr.MaxData():
                if self.conn_credit.update_limit(frame.maximum):
                    for channel_id in self._conn_blocked:
                        self._sendable[channel_id] = None
                    self._conn_blocked.clear()
            case fr.MaxChannelData():
                channel = self.channels.get(frame.channel_id)
                if channel is not None:
                    self._credit_from_peer(channel, frame.maximum)
            case fr.DataBlocked() | fr.ChannelBlocked():
                pass  # our updates are driven by reading; nothing to do
            case fr.MaxChannels():
                # The first one replaces the initial allowance, even downwards (spec/channels.md §2).
                known = self._peer_max_known
                self._peer_max_channels = max(self._peer_max_channels, frame.maximum) if known else frame.maximum
                self._peer_max_known = True
            case fr.CloseChannel():
                channel = self._peer_frame_channel(frame.channel_id)
                if channel is not None and channel.messages is not None:
                    channel.remote_done = True
                    if not channel.ended_reported:
                        channel.ended_reported = True
                        self._events.append(ChannelEnded(session_id=self.session.local_index, channel_id=channel.id))
                    self._maybe_done(channel)

    def _credit_from_peer(self, channel: Channel, limit: int) -> None:
        """An ACCEPT's or MAX_CHANNEL_DATA's limit: the first replaces a stream's early credit, even
        downwards, the rest only raise it (spec/channels.md CH-2.7.4, flow.md FLOW-3.2.2)."""
        if channel.early_credit:
            channel.early_credit = False
            channel.credit.replace_limit(limit)
        elif not channel.credit.update_limit(limit):
            return
        self._mark_sendable(channel)

    def _on_open(self, frame: fr.Open, now: float) -> None:
        channel_id = frame.channel_id
        if channel_id % 2 != self._peer_parity:
            raise RemoteProtocolError(
                f"OPEN of channel {channel_id}, which is ours to open", ErrorCode.PROTOCOL_VIOLATION
            )
        index = channel_id // 2
        seen = self._peer_seen
        if seen is None:
            seen = self._peer_seen = RangeSet()
        elif index in seen:
            return  # a retransmitted OPEN
        if index >= max(self._our_max_channels, INITIAL_MAX_CHANNELS):
            raise RemoteProtocolError(f"channel {channel_id} beyond our MAX_CHANNELS", ErrorCode.CHANNEL_LIMIT)
        seen.add(index, index + 1)
        if index >= self._our_max_channels or self._peer_open >= self._max_channels:
            # Opened before our (lower) MAX_CHANNELS reached the peer: refuse the channel, keep the connection.
            self._control[(fr.FrameType.REFUSE, channel_id)] = fr.Refuse(
                channel_id=channel_id, code=int(ErrorCode.CHANNEL_LIMIT), reason="too many channels"
            )
            if frame.kind is fr.ChannelKind.STREAM:
                self._keep_unsettled(channel_id, 0, EARLY_WINDOW)
            self._peer_channel_done()
            return
        self._peer_open += 1
        channel = self._new_channel(channel_id, frame.kind, frame.service, ChannelState.REQUESTED, now, retrans=0)
        channel.credit.update_limit(frame.initial_max_data)
        kind = "stream" if frame.kind is fr.ChannelKind.STREAM else "message"
        self._events.append(
            ChannelRequested(
                session_id=self.session.local_index, channel_id=channel_id, service=frame.service, kind=kind
            )
        )

    def _own_channel(self, channel_id: int) -> Channel | None:
        if channel_id % 2 == self._peer_parity:
            raise RemoteProtocolError(
                f"ACCEPT/REFUSE of the peer's own channel {channel_id}", ErrorCode.PROTOCOL_VIOLATION
            )
        if channel_id >= self._next_channel:
            raise RemoteProtocolError(f"channel {channel_id} was never opened", ErrorCode.PROTOCOL_VIOLATION)
        return self.channels.get(channel_id)

    def _peer_frame_channel(self, channel_id: int) -> Channel | None:
        """The channel a data frame from the peer belongs to; None if it is already closed here."""
        channel = self.channels.get(channel_id)
        if channel is not None:
            state = channel.state
            if state is _OPENING:
                self._implicitly_accepted(channel)
            return channel if state is not _CLOSED else None
        if channel_id % 2 == self._peer_parity:
            seen = self._peer_seen
            if seen is None or channel_id // 2 not in seen:
                raise RemoteProtocolError(
                    f"frame for channel {channel_id} before its OPEN", ErrorCode.CHANNEL_STATE_ERROR
                )
        elif channel_id >= self._next_channel:
            raise RemoteProtocolError(f"frame for channel {channel_id}, never opened", ErrorCode.CHANNEL_STATE_ERROR)
        return None

    def _implicitly_accepted(self, channel: Channel) -> None:
        """ACCEPT arrived, or data that can only follow an ACCEPT that is late (spec/channels.md §2)."""
        if channel.state is ChannelState.OPENING:
            channel.transition(ChannelInput.ACCEPTED)
            self._events.append(ChannelOpened(session_id=self.session.local_index, channel_id=channel.id))
            self._mark_sendable(channel)  # messages queued while opening (CH-2.7.8), whatever the credit

    def _on_stream(self, channel: Channel, offset: int, data: bytes, fin: bool) -> None:
        if channel.recv is None:
            raise RemoteProtocolError(f"STREAM on message channel {channel.id}", ErrorCode.CHANNEL_STATE_ERROR)
        recv = channel.recv
        early = channel.state is _REQUESTED
        if early and offset + len(data) > EARLY_WINDOW:
            raise RemoteProtocolError(
                f"early data up to {offset + len(data)} on channel {channel.id}, beyond EARLY_WINDOW",
                ErrorCode.FLOW_CONTROL_ERROR,
            )  # CH-2.7.5
        increase = recv.receive_untrusted(offset, data, fin)
        if increase:
            self.conn_window.receive_increment_untrusted(increase)
        if not early:  # early data is reported once the application accepts (CH-2.7.6)
            self._report_stream(channel)

    def _report_stream(self, channel: Channel) -> None:
        """``ChannelDataAvailable`` / ``ChannelEnded`` for what the stream now holds, once each."""
        recv = channel.recv
        if recv is None:
            return
        if not channel.data_reported and recv.readable:
            channel.data_reported = True
            self._events.append(ChannelDataAvailable(session_id=self.session.local_index, channel_id=channel.id))
        if (
            recv.final_size is not None
            and not channel.ended_reported
            and recv.bytes_read + recv.readable == recv.final_size
        ):
            channel.ended_reported = True
            self._events.append(ChannelEnded(session_id=self.session.local_index, channel_id=channel.id))
            self._maybe_done(channel)

    def _on_message(self, channel: Channel, frame: fr.Message) -> None:
        seen = channel.seen_messages
        if seen is None:
            raise RemoteProtocolError(f"MESSAGE on stream channel {channel.id}", ErrorCode.CHANNEL_STATE_ERROR)
        if channel.state is _REQUESTED:  # CH-2.7.8: messages do not go early; one that did is dropped
            self._count("early_message")
            return
        if seen.check(frame.message_id):  # a retransmitted message is delivered once
            seen.update(frame.message_id)
            self._events.append(
                ChannelMessage(session_id=self.session.local_index, channel_id=channel.id, data=frame.data)
            )

    def _on_reset(self, channel: Channel, frame: fr.Reset) -> None:
        if channel.state is _REQUESTED and channel.recv is not None and frame.final_size > EARLY_WINDOW:
            raise RemoteProtocolError(
                f"final size {frame.final_size} of channel {channel.id}, beyond EARLY_WINDOW",
                ErrorCode.FLOW_CONTROL_ERROR,
            )  # CH-2.7.5
        if channel.recv is not None:
            increase = channel.recv.receive_reset_untrusted(frame.final_size)
            if increase:
                self.conn_window.receive_increment_untrusted(increase)
            self._release_receive(channel)
        if channel.send is not None:
            # Answer with our own final size, so the peer can settle the connection window (spec/flow.md §3.3).
            self._control[(fr.FrameType.RESET, channel.id)] = fr.Reset(
                channel_id=channel.id, code=frame.code, final_size=channel.send.reset()
            )
        code, app_code = channel_code_from_wire(frame.code)
        self._events.append(
            ChannelReset(
                session_id=self.session.local_index,
                channel_id=channel.id,
                code=code,
                reason="",
                by_peer=True,
                application_code=app_code,
            )
        )
        channel.transition(ChannelInput.RESET)
        self._forget(channel)

    def _settle_refused(self, channel: Channel) -> None:
        """Our stream channel was refused: its early bytes are discarded here, and the RESET that
        answers the REFUSE tells the peer how many we sent, to settle the connection window
        (spec/channels.md CH-2.7.7, flow.md §3.3)."""
        send = channel.send
        if send is not None:
            self._control[(fr.FrameType.RESET, channel.id)] = fr.Reset(
                channel_id=channel.id, code=int(ErrorCode.CHANNEL_REFUSED), final_size=send.reset()
            )

    def _discard_early(self, channel: Channel) -> None:
        """We refused the peer's channel: its early bytes are dropped and their connection credit
        returned now; the rest is settled by the peer's answering RESET (CH-2.7.7)."""
        recv = channel.recv
        if recv is not None:
            self._release_receive(channel)
            self._keep_unsettled(channel.id, recv.window.highest_received, EARLY_WINDOW)

    def _keep_unsettled(self, channel_id: int, highest: int, limit: int) -> None:
        """A channel we reset or refused: keep what the peer sent so far (and the most it may have
        sent, ``limit``) until its answering RESET gives the final size (flow.md §3.3; a refused
        stream's early bytes, at most EARLY_WINDOW, CH-2.7.7)."""
        unsettled = self._reset_unsettled
        unsettled[channel_id] = (highest, limit)
        if len(unsettled) > max(self.config.max_channels, INITIAL_MAX_CHANNELS):
            del unsettled[next(iter(unsettled))]  # a peer that never answers: bound the memory

    def _settle_reset(self, frame: fr.Reset) -> None:
        """The answer to a RESET of ours: charge the connection for what the peer sent (spec/flow.md §3.3)."""
        unsettled = self._reset_unsettled.pop(frame.channel_id, None)
        if unsettled is None:
            return
        highest, limit = unsettled
        if frame.final_size > limit:
            raise RemoteProtocolError(f"final size {frame.final_size} beyond {limit}", ErrorCode.FLOW_CONTROL_ERROR)
        if frame.final_size < highest:
            raise RemoteProtocolError(f"final size {frame.final_size} below {highest}", ErrorCode.FINAL_SIZE_ERROR)
        increase = frame.final_size - highest
        if increase:
            self.conn_window.receive_increment_untrusted(increase)
            self.conn_window.on_consumed(increase)
