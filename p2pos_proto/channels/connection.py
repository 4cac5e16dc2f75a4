"""Multiplexed channels over one secure session: the DirectP2P connection (spec/channels.md).

``Connection`` wraps a ``SecureSession`` and adds what QUIC adds over UDP:
channels to named services, reliable ordered streams and unreliable messages,
acknowledgements, loss recovery (RFC 9002), congestion control with pacing,
flow control with auto-tuned windows, path MTU probing (RFC 8899) and liveness.
A channel-layer packet is the plaintext of one DATA record; its packet number is
the record counter (spec/frames.md §1).

Drive it like the session, sans-IO:

* ``receive_data(datagram, now)``: one datagram from the path; never raises.
* ``data_to_send(now)``: what to transmit now (paced: call again at ``get_timer()``).
* ``next_event()``: events until None (handshake, channels, pings, the end).
* ``get_timer()`` / ``handle_timer(now)``.
* Application calls: ``open_channel``, ``accept_channel``, ``refuse_channel``,
  ``send``, ``finish``, ``send_message``, ``read``, ``reset_channel``,
  ``close_channel``, ``ping``, ``close``.  After any of them, drain
  ``data_to_send`` and ``next_event``.

With ``ChannelConfig(reliable_carrier=True)`` the carrier is an ordered, lossless
byte stream (the WebSocket relay or a QUIC stream through ``StreamFramer``):
nothing is acknowledged or retransmitted and no congestion window applies; the
channel semantics are the same.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
from typing import Final

from ..common.ranges import RangeSet
from ..errors import (
    ErrorCode,
    LocalProtocolError,
    channel_code_to_wire,
)
from ..events import (
    ChannelClosed,
    ChannelEvent,
    ChannelReset,
    ConnectionClosed,
    ConnectionReady,
    HandshakeCompleted,
    MessageReceived,
    SessionClosed,
)
from ..recovery.acks import AckTracker
from ..recovery.bbr import Bbr
from ..recovery.congestion import CongestionController, Cubic, NewReno
from ..recovery.pacing import Pacer
from ..recovery.pmtu import BASE_PLPMTU, PmtuDiscovery
from ..recovery.recovery import LossRecovery
from ..recovery.rtt import RttEstimator
from ..session.record import OVERHEAD as RECORD_OVERHEAD
from ..session.session import SecureSession
from . import frames as fr
from .channel import Channel, ChannelInput, ChannelState
from .flow import ReceiveWindow, SendCredit
from .receiving import INITIAL_MAX_CHANNELS, ReceivePath
from .sending import ControlKey, Token

#: The connection-level credit before the peer's first MAX_DATA (spec/flow.md §3.2).
INITIAL_MAX_DATA: Final = 1024 * 1024


#: The congestion controllers ``ChannelConfig.congestion_control`` names (spec/recovery.md §5).
_CONTROLLERS: dict[str, type[NewReno] | type[Cubic] | type[Bbr]] = {"newreno": NewReno, "cubic": Cubic, "bbr": Bbr}


class ConnectionState(enum.Enum):
    HANDSHAKING = "handshaking"
    READY = "ready"
    CLOSING = "closing"  # graceful close: waiting for our data to be acknowledged
    CLOSED = "closed"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ChannelConfig:
    """Tunables of the channel layer; defaults are the spec's (spec/channels.md §8)."""

    reliable_carrier: bool = False
    congestion_control: str = "bbr"  # or "newreno", "cubic" (spec/recovery.md §5)
    max_datagram_size: int = 1452  # the PMTU search's ceiling (UDP payload bytes)
    stream_frame_size: int = 16384  # packet size on a reliable carrier
    idle_timeout: float = 30.0
    keepalive_interval: float | None = 10.0
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
        if self.congestion_control not in _CONTROLLERS:
            raise LocalProtocolError(f"congestion_control is one of {', '.join(map(repr, _CONTROLLERS))}")
        if not 1200 <= self.max_datagram_size <= 65507 or not 1200 <= self.stream_frame_size <= 65000:
            raise LocalProtocolError("max_datagram_size and stream_frame_size must be 1200..65507")
        if self.idle_timeout <= 0 or (self.keepalive_interval is not None and self.keepalive_interval <= 0):
            raise LocalProtocolError("idle_timeout and keepalive_interval must be positive")
        if self.connection_window < INITIAL_MAX_DATA:
            raise LocalProtocolError(f"connection_window must be at least {INITIAL_MAX_DATA}")
        if min(self.channel_window, self.send_buffer, self.max_channels, self.message_queue) < 1:
            raise LocalProtocolError("windows, buffers and limits must be positive")


class Connection(ReceivePath):
    """Channels, reliability and liveness over one ``SecureSession``."""

    def __init__(self, session: SecureSession, now: float, config: ChannelConfig | None = None) -> None:
        self.session = session
        self.config = config = config or ChannelConfig()
        self.reliable = config.reliable_carrier
        self.state = ConnectionState.HANDSHAKING
        self.channels: dict[int, Channel] = {}
        self._next_channel = 0 if session.initiator else 1
        self._peer_parity = 1 if session.initiator else 0
        self._peer_seen = RangeSet()  # indices (id // 2) of channels the peer ever opened
        self._peer_open = 0  # the peer's channels we hold now
        self._peer_max_channels = INITIAL_MAX_CHANNELS
        self._peer_max_known = False  # the first MAX_CHANNELS replaces the initial allowance
        self._our_max_channels = config.max_channels
        self._max_channels = config.max_channels  # the most peer channels held at once
        self._closed_peer_channels = 0
        #: Stream channels we reset before knowing the peer's final size: id -> (highest received,
        #: limit), kept until the peer's answering RESET says how much it sent (spec/flow.md §3.3).
        self._reset_unsettled: dict[int, tuple[int, int]] = {}
        self.conn_credit = SendCredit(INITIAL_MAX_DATA)
        self.conn_window = ReceiveWindow(config.connection_window, config.connection_window_max, now=now)
        # On a reliable carrier only packets with a PING are acknowledged, each at once (channels.md §10).
        self.acks = AckTracker(max_ack_delay=config.max_ack_delay, ack_every=1 if self.reliable else 2)
        self._ping_packets: dict[int, tuple[float, list[Token]]] = {}
        self.rtt = RttEstimator()
        self.recovery: LossRecovery[list[Token]] = LossRecovery(rtt=self.rtt)
        mds = 1200
        self.cc: CongestionController = _CONTROLLERS[config.congestion_control](max_datagram_size=mds)
        self.pacer = Pacer(congestion_window=self.cc.congestion_window, smoothed_rtt=0.0, max_datagram_size=mds)
        self.pmtu = PmtuDiscovery(
            max_plpmtu=config.max_datagram_size, enabled=config.pmtu_probing and not self.reliable
        )
        self._control: dict[ControlKey, fr.Frame] = {}
        self._sent_control: dict[ControlKey, fr.Frame] = {}
        self._sendable: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._conn_blocked: set[int] = set()
        self._read_channels: dict[int, None] = {}  # channels read since the last window check
        self._events: collections.deque[ChannelEvent | HandshakeCompleted] = collections.deque()
        self._pings: dict[int, None] = {}
        self._next_ping = 0
        self._pto_probes = 0
        self._pacing_at: float | None = None
        self._app_limited = True
        self._last_received = now
        self._last_sent = now
        self.keepalive_interval = config.keepalive_interval
        self._close_deadline: float | None = None
        self._close_code = ErrorCode.NO_ERROR
        self._close_reason = ""
        self.lost_packets = 0
        self._absorb_session(now)

    # -- driver API ------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed one datagram from the path.  Never raises."""
        opened = self.session.receive_data_record(data, now)
        if opened is not None:  # the hot path: a DATA record, no session event in between
            self._on_packet(opened[0], opened[1], now)
        else:
            self._absorb_session(now)

    def data_to_send(self, now: float) -> list[bytes]:
        """Datagrams to transmit now, paced; call again at ``get_timer()``."""
        if self.state in (ConnectionState.READY, ConnectionState.CLOSING):
            self._queue_window_updates(now)
            self._build_packets(now)
            if self.state is ConnectionState.CLOSING and self._all_sent_and_acked():
                self.session.close(now, self._close_code, self._close_reason)
        out = self.session.data_to_send(now)
        self._absorb_session(now)
        return out

    def next_event(self) -> ChannelEvent | HandshakeCompleted | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The earliest of the session's, loss detection's, the ACK's, pacing's and liveness timers."""
        best = self.session.get_timer()
        if self.state is ConnectionState.READY or self.state is ConnectionState.CLOSING:
            idle = self._last_received + self.config.idle_timeout
            best = idle if best is None or idle < best else best
            if self.keepalive_interval is not None:
                keepalive = self._last_sent + self.keepalive_interval
                best = keepalive if keepalive < best else best
            # One comparison each rather than a loop over a tuple: drivers ask after every step.
            timer = self._close_deadline
            if timer is not None and timer < best:
                best = timer
            timer = self._pacing_at
            if timer is not None and timer < best:
                best = timer
            timer = self.acks.get_timer()
            if timer is not None and timer < best:
                best = timer
            if not self.reliable:
                timer = self.recovery.get_loss_detection_timer()
                if timer is not None and timer < best:
                    best = timer
                timer = self.pmtu.get_timer()
                if timer is not None and timer < best:
                    best = timer
        return best

    def handle_timer(self, now: float) -> None:
        timer = self.session.get_timer()
        if timer is not None and now >= timer:
            self.session.handle_timer(now)
            self._absorb_session(now)
        if self.state not in (ConnectionState.READY, ConnectionState.CLOSING):
            return
        if now >= self._last_received + self.config.idle_timeout:
            self._abort(ErrorCode.IDLE_TIMEOUT, "no packet from the peer within the idle timeout", now)
            return
        if self._close_deadline is not None and now >= self._close_deadline:
            self._abort(self._close_code, "graceful close timed out", now)
            return
        if self._pacing_at is not None and now >= self._pacing_at:
            self._pacing_at = None
        if self.keepalive_interval is not None and now >= self._last_sent + self.keepalive_interval:
            self._control[(fr.FrameType.PING, 0)] = fr.Ping()
            self._last_sent = now  # re-armed when the PING actually leaves
        if self.reliable:
            return
        timer = self.recovery.get_loss_detection_timer()
        if timer is not None and now >= timer:
            result = self.recovery.on_loss_detection_timeout(now)
            self._on_lost(result.lost, now)
            if result.persistent_congestion:
                self.cc.on_persistent_congestion(now)
            self._update_pacer()
            if result.probes_to_send:
                self._pto_probes += result.probes_to_send
                self._probe_with_oldest_data(result.probes_to_send)
        timer = self.pmtu.get_timer()
        if timer is not None and now >= timer:
            self.pmtu.handle_timer(now)

    # -- application API --------------------------------------------------------------------

    def open_channel(
        self, service: str, now: float, *, kind: fr.ChannelKind = fr.ChannelKind.STREAM, retransmissions: int = 0
    ) -> int:
        """Ask the peer's ``service`` for a channel; ``ChannelOpened`` or ``ChannelRefused`` follows."""
        if self.state not in (ConnectionState.HANDSHAKING, ConnectionState.READY):
            raise LocalProtocolError(f"cannot open a channel while {self.state.value}")
        if not 1 <= len(service.encode("utf-8")) <= 255:
            raise LocalProtocolError("a service name is 1 to 255 bytes of UTF-8")
        channel_id = self._next_channel
        if channel_id // 2 >= self._peer_max_channels:
            raise LocalProtocolError(
                f"the peer allows {self._peer_max_channels} channels; wait for some to close", ErrorCode.CHANNEL_LIMIT
            )
        self._next_channel += 2
        channel = self._new_channel(channel_id, kind, service, ChannelState.OPENING, now, retrans=retransmissions)
        self._control[(fr.FrameType.OPEN, channel_id)] = fr.Open(
            channel_id=channel_id, kind=kind, service=service, initial_max_data=channel.window.limit
        )
        return channel_id

    def accept_channel(self, channel_id: int, now: float) -> None:
        channel = self._channel(channel_id)
        channel.transition(ChannelInput.ACCEPT)
        self._control[(fr.FrameType.ACCEPT, channel_id)] = fr.Accept(
            channel_id=channel_id, initial_max_data=channel.window.limit
        )
        self._mark_sendable(channel)

    def refuse_channel(
        self, channel_id: int, now: float, code: ErrorCode | int = ErrorCode.CHANNEL_REFUSED, reason: str = ""
    ) -> None:
        """Refuse a requested channel; ``code`` is an ErrorCode or an application code (errors.md §3)."""
        wire = channel_code_to_wire(code)
        channel = self._channel(channel_id)
        channel.transition(ChannelInput.REFUSE)
        self._control[(fr.FrameType.REFUSE, channel_id)] = fr.Refuse(
            channel_id=channel_id, code=wire, reason=_truncate(reason, 1024)
        )
        self._forget(channel)

    def send(self, channel_id: int, data: bytes | bytearray | memoryview, now: float) -> int:
        """Queue stream bytes; returns how many fit the send buffer (``ChannelWritable`` says when more do).

        The bytes are copied into the send buffer, so ``data`` may be a view into
        the application's own buffer (offer a ``memoryview`` slice of a large
        payload: only what fits is copied, once).
        """
        channel = self._channel(channel_id)
        if channel.send is None or channel.local_finished:
            raise LocalProtocolError(f"channel {channel_id} is not a stream open for sending")
        if channel.state not in (ChannelState.OPEN, ChannelState.OPENING):
            raise LocalProtocolError(f"channel {channel_id} is {channel.state.value}")
        room = max(0, self.config.send_buffer - channel.send.buffered)
        accepted = data if len(data) <= room else data[:room]  # no copy when it all fits
        if accepted:
            channel.send.write(accepted)
            self._mark_sendable(channel)
        if len(accepted) < len(data):
            channel.want_writable = True
        return len(accepted)

    def finish(self, channel_id: int, now: float) -> None:
        """Half-close: no more data from this side (the FIN follows the queued bytes)."""
        channel = self._channel(channel_id)
        if channel.send is None:
            self.close_channel(channel_id, now)
            return
        if not channel.local_finished:
            channel.local_finished = True
            channel.send.finish()
            self._mark_sendable(channel)

    def send_message(self, channel_id: int, data: bytes, now: float, *, retransmissions: int | None = None) -> int:
        """Queue one whole message on a message channel; returns its id.  May be lost."""
        channel = self._channel(channel_id)
        if channel.messages is None or channel.local_finished:
            raise LocalProtocolError(f"channel {channel_id} is not a message channel open for sending")
        message_id = channel.messages.push(data, retransmissions)
        self._mark_sendable(channel)
        return message_id

    def read(self, channel_id: int, max_bytes: int | None = None) -> bytes:
        """Up to ``max_bytes`` of stream data (all that is readable when None); ``b""`` if none."""
        channel = self._channel(channel_id, allow_closed=True)
        if channel.recv is None:
            raise LocalProtocolError(f"channel {channel_id} is not a stream")
        data = channel.recv.read(max_bytes)
        if data:
            self.conn_window.on_consumed(len(data))
            self._read_channels[channel_id] = None
        if channel.recv.readable == 0:
            channel.data_reported = False
        self._maybe_done(channel)
        return data

    def reset_channel(self, channel_id: int, now: float, code: ErrorCode | int = ErrorCode.APPLICATION_CLOSE) -> None:
        """Abort the channel in both directions; the peer gets ``ChannelReset``.

        ``code`` is an ErrorCode or an application code (errors.md §3).  The peer
        answers with a RESET of its own carrying the final size of its
        direction, which settles the connection window for bytes still in flight.
        """
        wire = channel_code_to_wire(code)
        channel = self._channel(channel_id)
        final = channel.send.reset() if channel.send is not None else 0
        self._control[(fr.FrameType.RESET, channel_id)] = fr.Reset(channel_id=channel_id, code=wire, final_size=final)
        self._release_receive(channel)
        recv = channel.recv
        if recv is not None and recv.final_size is None:
            unsettled = self._reset_unsettled
            unsettled[channel_id] = (recv.window.highest_received, recv.window.limit)
            if len(unsettled) > max(self.config.max_channels, INITIAL_MAX_CHANNELS):
                del unsettled[next(iter(unsettled))]  # a peer that never answers: bound the memory
        channel.transition(ChannelInput.RESET)
        self._forget(channel)

    def stop_sending(self, channel_id: int, now: float, code: ErrorCode | int = ErrorCode.APPLICATION_CLOSE) -> None:
        """Ask the peer to abort the channel (STOP_SENDING); its RESET follows, then ``ChannelReset``."""
        wire = channel_code_to_wire(code)
        self._channel(channel_id)
        self._control[(fr.FrameType.STOP_SENDING, channel_id)] = fr.StopSending(channel_id=channel_id, code=wire)

    def close_channel(self, channel_id: int, now: float) -> None:
        """Finish this side: FIN on a stream, CLOSE_CHANNEL on a message channel."""
        channel = self._channel(channel_id)
        if channel.send is not None:
            self.finish(channel_id, now)
        elif not channel.local_finished:
            channel.local_finished = True
            self._control[(fr.FrameType.CLOSE_CHANNEL, channel_id)] = fr.CloseChannel(channel_id=channel_id)

    def ping(self, now: float) -> int:
        """Send a PING; ``PingAcknowledged`` reports its round trip."""
        ping_id = self._next_ping
        self._next_ping += 1
        self._control[(fr.FrameType.PING, ping_id + 1)] = fr.Ping()
        self._pings[ping_id] = None
        return ping_id

    def close(self, now: float, code: ErrorCode = ErrorCode.NO_ERROR, reason: str = "") -> None:
        """Close the connection.  With NO_ERROR it is graceful: everything sent is delivered first."""
        if self.state is ConnectionState.CLOSED:
            return
        if code is not ErrorCode.NO_ERROR or self.state is ConnectionState.HANDSHAKING:
            self._abort(code, reason, now)
            return
        self.state = ConnectionState.CLOSING
        self._close_code, self._close_reason = code, reason
        self._close_deadline = now + self.config.close_timeout
        for channel in list(self.channels.values()):
            if channel.state is ChannelState.OPEN:
                self.close_channel(channel.id, now)

    def stats(self) -> dict[str, float]:
        return {
            "cwnd": self.cc.congestion_window,
            "bytes_in_flight": self.recovery.bytes_in_flight,
            "smoothed_rtt": self.rtt.smoothed_rtt,
            "mtu": self.pmtu.current_mtu,
            "lost_packets": self.lost_packets,
            "channels": len(self.channels),
        }

    def _all_sent_and_acked(self) -> bool:
        """Graceful close may end the session: every byte and FIN we sent was acknowledged."""
        if self._control:
            return False
        for channel in self.channels.values():
            if channel.send is not None and not (channel.send.is_finished_and_acked or channel.send.is_reset):
                return False
            if channel.messages is not None and (len(channel.messages) or not channel.local_done):
                return False
        return self.reliable or self.recovery.ack_eliciting_in_flight == 0

    # -- hooks of the send path --------------------------------------------------------------

    def _stream_frame_size(self) -> int:
        return self.config.stream_frame_size

    def _send_buffer_size(self) -> int:
        return self.config.send_buffer

    # -- channels ----------------------------------------------------------------------------

    def _new_channel(
        self, channel_id: int, kind: fr.ChannelKind, service: str, state: ChannelState, now: float, *, retrans: int
    ) -> Channel:
        cfg = self.config
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
        self.channels[channel_id] = channel
        return channel

    def _channel(self, channel_id: int, *, allow_closed: bool = False) -> Channel:
        channel = self.channels.get(channel_id)
        if channel is None or (channel.state is ChannelState.CLOSED and not allow_closed):
            raise LocalProtocolError(f"no open channel {channel_id}", ErrorCode.CHANNEL_STATE_ERROR)
        return channel

    def _mark_sendable(self, channel: Channel) -> None:
        if channel.wants_to_send():
            self._sendable[channel.id] = None

    def _maybe_done(self, channel: Channel) -> None:
        if channel.state is ChannelState.OPEN and channel.both_done():
            channel.transition(ChannelInput.DONE)
            self._events.append(ChannelClosed(channel_id=channel.id))
            self._forget(channel)

    def _forget(self, channel: Channel) -> None:
        """The channel is closed: free its id (a closed peer channel raises the peer's allowance)."""
        if self.channels.pop(channel.id, None) is None:
            return
        self._sendable.pop(channel.id, None)
        self._conn_blocked.discard(channel.id)
        if channel.id % 2 == self._peer_parity:
            self._peer_open -= 1
            self._peer_channel_done()

    def _peer_channel_done(self) -> None:
        """One more peer channel index is used up: raise MAX_CHANNELS by half the limit at a time."""
        self._closed_peer_channels += 1
        if self._closed_peer_channels + self.config.max_channels - self._our_max_channels >= (
            self.config.max_channels // 2
        ):
            self._our_max_channels = self._closed_peer_channels + self.config.max_channels
            self._control[(fr.FrameType.MAX_CHANNELS, 0)] = fr.MaxChannels(maximum=self._our_max_channels)

    def _release_receive(self, channel: Channel) -> None:
        """Return a dropped channel's unread bytes to the connection window."""
        if channel.recv is not None:
            unread = channel.recv.window.highest_received - channel.recv.bytes_read
            if unread > 0:
                self.conn_window.on_consumed(unread)

    def _probe_with_oldest_data(self, probes: int) -> None:
        """RFC 9002 §6.2.4: with nothing new to send, a PTO probe carries the oldest unacknowledged data.

        The data of the oldest outstanding packets is queued again (they are not
        declared lost: if they arrive after all, the copy is harmless).  A probe
        of a tail loss then repairs it, instead of a PING whose ACK only reveals it.
        """
        if self._control or self._sendable:
            return  # new data or frames are waiting: they make the probes
        for packet in self.recovery.outstanding():
            if probes == 0:
                break
            if packet.ack_eliciting and not self._is_probe(packet):
                self._requeue(packet.payload)
                probes -= 1

    def _closed(self) -> bool:
        return self.state is ConnectionState.CLOSED

    # -- session events ----------------------------------------------------------------------

    def _absorb_session(self, now: float) -> None:
        while (event := self.session.next_event()) is not None:
            if isinstance(event, HandshakeCompleted):
                self.state = ConnectionState.READY
                self._last_received = self._last_sent = now
                self._control[(fr.FrameType.MAX_CHANNELS, 0)] = fr.MaxChannels(maximum=self._our_max_channels)
                if self.conn_window.limit > INITIAL_MAX_DATA:
                    self._control[(fr.FrameType.MAX_DATA, 0)] = fr.MaxData(maximum=self.conn_window.limit)
                if self.reliable:  # the first RTT sample, for window auto-tuning (channels.md §10)
                    self._control[(fr.FrameType.PING, 0)] = fr.Ping()
                self._events.append(ConnectionReady(handshake=event))
                for channel in self.channels.values():
                    self._mark_sendable(channel)
            elif isinstance(event, MessageReceived):
                self._on_packet(event.packet_number, event.data, now)
            elif isinstance(event, SessionClosed):
                self._terminate(event.code, event.reason, event.by_peer)

    def _terminate(self, code: ErrorCode, reason: str, by_peer: bool) -> None:
        if self.state is ConnectionState.CLOSED:
            return
        self.state = ConnectionState.CLOSED
        for channel in list(self.channels.values()):
            finished = channel.recv is not None and channel.recv.final_size is not None and channel.ended_reported
            if channel.state is not ChannelState.CLOSED and not finished:
                self._events.append(ChannelReset(channel_id=channel.id, code=code, reason=reason, by_peer=by_peer))
                channel.state = ChannelState.CLOSED
        self._sendable.clear()
        self._events.append(ConnectionClosed(code=code, reason=reason, by_peer=by_peer))

    def _abort(self, code: ErrorCode, reason: str, now: float) -> None:
        """Close at once: the session sends CLOSE, every channel learns why."""
        if self.session.is_established:
            self.session.close(now, code, reason)
            self._absorb_session(now)
        else:
            self.session.close(now, code, reason)
            self._terminate(code, reason, by_peer=False)


def _truncate(text: str, limit: int) -> str:
    """At most ``limit`` bytes of UTF-8, never splitting a character."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")
