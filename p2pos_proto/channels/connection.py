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

A connection may have several paths (spec/paths.md, ``PathLayer``): a path over
an ordered byte stream (``ChannelConfig(path_kind="stream")`` for the first one: the
WebSocket relay or a QUIC stream through ``StreamFramer``) sends fixed large packets
without pacing or PMTU probing, and is acknowledged end to end like any other, so that
what a carrier still held when a path is left is sent again on the next.
"""

from __future__ import annotations

import enum
from typing import Final

from ..common.text import truncate_utf8
from ..errors import ErrorCode, LocalProtocolError, RemoteProtocolError, channel_code_to_wire
from ..events import (
    ChannelEvent,
    ChannelReset,
    ConnectionClosed,
    ConnectionReady,
    HandshakeCompleted,
    MessageReceived,
    SessionClosed,
)
from ..paths.events import PathEvent
from ..paths.path import Path, PathKind
from ..session.record import OVERHEAD as RECORD_OVERHEAD
from ..session.session import SecureSession, SessionState
from . import frames as fr
from .channel import INITIAL_MAX_DATA, Channel, ChannelConfig, ChannelInput, ChannelState
from .liveness import KEEPALIVE_RETRY_MIN
from .receiving import ReceivePath
from .recvbuf import joined

__all__ = ["INITIAL_MAX_DATA", "TRANSITIONS", "ChannelConfig", "Connection", "ConnectionInput", "ConnectionState"]

#: One shared default: a connection keeps a reference, not a copy (bench/memory.py).
_DEFAULT_CONFIG: Final = ChannelConfig()


class ConnectionState(enum.Enum):
    HANDSHAKING = "handshaking"
    READY = "ready"
    CLOSING = "closing"  # graceful close: waiting for our data to be acknowledged
    CLOSED = "closed"


class ConnectionInput(enum.Enum):
    HANDSHAKE_DONE = "handshake-done"  # the session reported HandshakeCompleted
    CLOSE = "close"  # the application asked for a graceful close (``close`` with NO_ERROR)
    END = "end"  # the session ended: closed by either side, an error, a timeout, or a graceful close done


_C, _CI = ConnectionState, ConnectionInput
#: Every allowed transition (spec/channels.md §9); anything else is a local error (INTERNAL_ERROR).
TRANSITIONS: dict[ConnectionState, dict[ConnectionInput, ConnectionState]] = {
    _C.HANDSHAKING: {_CI.HANDSHAKE_DONE: _C.READY, _CI.END: _C.CLOSED},
    _C.READY: {_CI.CLOSE: _C.CLOSING, _CI.END: _C.CLOSED},
    _C.CLOSING: {_CI.END: _C.CLOSED},
    _C.CLOSED: {},
}
# Read on every call of the driver API: module globals are quicker to read than enum members.
_READY: Final = ConnectionState.READY
_CLOSING: Final = ConnectionState.CLOSING
_CLOSED: Final = ConnectionState.CLOSED


class Connection(ReceivePath):
    """Channels, reliability and liveness over one ``SecureSession``."""

    __slots__ = (
        "_app_active_at",
        "_close_code",
        "_close_deadline",
        "_close_reason",
        "_keepalive_retry_at",
        "_last_received",
        "_next_ping",
        "_rx_pending",
        "state",
    )

    def __init__(self, session: SecureSession, now: float, config: ChannelConfig | None = None) -> None:
        super().__init__(session, now, config or _DEFAULT_CONFIG)
        self.state = ConnectionState.HANDSHAKING
        self._next_ping = 0
        self._last_received = now
        self._close_deadline: float | None = None
        self._close_code = ErrorCode.NO_ERROR
        self._close_reason = ""
        #: A path made for a datagram from an unknown address; adopted if a packet of it authenticates.
        self._rx_pending: Path | None = None
        #: When an unanswered keepalive is sent again (PTH-7.5), None: no keepalive waits for an answer.
        self._keepalive_retry_at: float | None = None
        #: The last application call (for ``idle_close_after``, PTH-7.6).
        self._app_active_at = now
        self._absorb_session(now)

    # -- driver API ------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float, path_id: int = 0) -> None:
        """Feed one datagram that arrived on path ``path_id``.  Never raises.

        A frame that breaks a rule closes the connection with its code; a failed
        internal invariant (a ``LocalProtocolError`` inside the receive path) closes it
        with INTERNAL_ERROR (channels.md §11).  Either way the peer is told and
        ``ConnectionClosed`` follows.  A datagram for a path that is gone is dropped
        and counted (``path_counts["path_unknown"]``).
        """
        path = self.paths.get(path_id)
        if path is None:
            self._count("path_unknown")
            return
        self._rx_path = path
        self._receive(data, now)

    def receive_on_new_path(
        self,
        data: bytes,
        now: float,
        kind: PathKind,
        *,
        rank: int = 0,
        max_datagram_size: int | None = None,
    ) -> int | None:
        """Feed a datagram from an address none of the paths has (a NAT rebinding, spec/paths.md
        PTH-3.7).  If it authenticates, it makes a new path, being validated, whose id is returned;
        otherwise None and nothing changed.  Never raises."""
        pending = self._rx_path = self._rx_pending = self._make_path(kind, rank, max_datagram_size)
        try:
            self._receive(data, now)
        finally:
            self._rx_pending = None
            if self._rx_path is pending:
                self._rx_path = self.path
        return pending.path_id if pending.path_id in self.paths else None

    def _receive(self, data: bytes, now: float) -> None:
        try:
            opened = self.session.receive_data_record(data, now)
            if opened is not None:  # the hot path: a DATA record, no session event in between
                self._packet(opened[0], opened[1], now)
            else:
                self._absorb_session(now)
        except LocalProtocolError as exc:
            self._internal_error(exc, now)

    def data_to_send(self, now: float) -> list[bytes]:
        """Datagrams to transmit now, paced, whatever their path; call again at ``get_timer()``.

        With several paths, use ``data_to_send_paths``, which says where each goes.
        """
        self._produce(now)
        out = self.session.data_to_send(now)
        self._absorb_session(now)
        return out

    def data_to_send_paths(self, now: float) -> list[tuple[int, list[bytes]]]:
        """``data_to_send`` in runs by path: ``(path_id, datagrams)``, to send in order."""
        self._produce(now)
        out = self.session.data_to_send_by_path(now)
        self._absorb_session(now)
        return out

    def _produce(self, now: float) -> None:
        state = self.state
        if state is _READY or state is _CLOSING:
            try:
                if len(self.paths) > 1 or self.path.responses:
                    self._send_path_probes(now)
                self._queue_window_updates(now)
                self._build_packets(now)
                if state is _CLOSING and self._all_sent_and_acked():
                    self.session.close(now, self._close_code, self._close_reason)
            except LocalProtocolError as exc:
                self._internal_error(exc, now)

    def next_event(self) -> ChannelEvent | HandshakeCompleted | PathEvent | None:
        events = self._events
        if not events:
            return None
        pos = self._event_pos
        event = events[pos]
        pos += 1
        if pos == len(events):
            events.clear()  # frees the list's items array too
            pos = 0
        self._event_pos = pos
        return event

    def get_timer(self) -> float | None:
        """The earliest of the session's, loss detection's, the ACK's, pacing's and liveness timers."""
        best = self.session.get_timer()
        state = self.state
        if state is _READY or state is _CLOSING:
            live = self._live
            idle = self._last_received + live.idle_timeout
            best = idle if best is None or idle < best else best
            interval = live.send_interval
            if interval is not None and self.session.initiator:  # PTH-7.4: the controlling side keeps alive
                keepalive = self._last_sent + interval
                best = keepalive if keepalive < best else best
                timer = self._keepalive_retry_at
                if timer is not None and timer < best:
                    best = timer
            after = self.config.idle_close_after
            if after is not None:
                timer = self._idle_close_at(after)
                if timer is not None and timer < best:
                    best = timer
            # One comparison each rather than a loop over a tuple: drivers ask after every step.
            timer = self._close_deadline
            if timer is not None and timer < best:
                best = timer
            timer = self._pacing_at
            if timer is not None and timer < best:
                best = timer
            timer = self.acks.get_timer()
            if timer is not None and timer < best and not self.path.blocked:
                best = timer
            timer = self.recovery.get_loss_detection_timer()
            if timer is not None and timer < best:
                best = timer
            timer = self.pmtu.get_timer()
            if timer is not None and timer < best:
                best = timer
            if len(self.paths) > 1:
                timer = self._paths_timer()
                if timer is not None and timer < best:
                    best = timer
        return best

    def handle_timer(self, now: float) -> None:
        """Fire whatever timer is due (any wake-up is harmless).  Never raises, as ``receive_data``."""
        try:
            self._handle_timer(now)
        except LocalProtocolError as exc:
            self._internal_error(exc, now)

    def _handle_timer(self, now: float) -> None:
        timer = self.session.get_timer()
        if timer is not None and now >= timer:
            self.session.handle_timer(now)
            self._absorb_session(now)
        if self.state is not _READY and self.state is not _CLOSING:
            return
        if now >= self._last_received + self._live.idle_timeout:
            self._abort(ErrorCode.IDLE_TIMEOUT, "no packet from the peer within the idle timeout", now)
            return
        if self._close_deadline is not None and now >= self._close_deadline:
            self._abort(self._close_code, "graceful close timed out", now)
            return
        if self._pacing_at is not None and now >= self._pacing_at:
            self._pacing_at = None
        self._keepalive_timer(now)
        after = self.config.idle_close_after
        if after is not None:
            timer = self._idle_close_at(after)
            if timer is not None and now >= timer:
                self.close(now, ErrorCode.NO_ERROR, "idle: no channel and no application call")
        if len(self.paths) > 1:
            self._handle_paths_timer(now)
        timer = self.recovery.get_loss_detection_timer()
        if timer is not None and now >= timer:
            result = self.recovery.on_loss_detection_timeout(now)
            self._on_lost(result.lost, now)
            if result.persistent_congestion:
                self.cc.on_persistent_congestion(now)
            self._update_pacer()
            if result.probes_to_send:
                self._pto_probes += result.probes_to_send
                self._suspect_black_hole(now)
                self._probe_with_oldest_data(result.probes_to_send)
        timer = self.pmtu.get_timer()
        if timer is not None and now >= timer:
            self.pmtu.handle_timer(now)

    # -- application API --------------------------------------------------------------------

    def open_channel(
        self, service: str, now: float, *, kind: fr.ChannelKind = fr.ChannelKind.STREAM, retransmissions: int = 0
    ) -> int:
        """Ask the peer's ``service`` for a channel; ``ChannelOpened`` or ``ChannelRefused`` follows."""
        if self.state is not ConnectionState.HANDSHAKING and self.state is not _READY:
            raise LocalProtocolError(f"cannot open a channel while {self.state.value}")
        self._app_active_at = now
        if not 1 <= len(service.encode("utf-8")) <= 255:
            raise LocalProtocolError("a service name is 1 to 255 bytes of UTF-8")
        channel_id = self._next_channel
        if channel_id // 2 >= self._peer_max_channels:
            raise LocalProtocolError(
                f"the peer allows {self._peer_max_channels} channels; wait for some to close", ErrorCode.CHANNEL_LIMIT
            )
        self._next_channel += 2
        channel = self._new_channel(channel_id, kind, service, ChannelState.OPENING, now, retrans=retransmissions)
        self._control[(fr.FrameType.OPEN, channel_id)] = channel.open_frame()
        return channel_id

    def accept_channel(self, channel_id: int, now: float) -> None:
        self._app_active_at = now
        channel = self._channel(channel_id)
        channel.transition(ChannelInput.ACCEPT)
        self._control[(fr.FrameType.ACCEPT, channel_id)] = fr.Accept(
            channel_id=channel_id, initial_max_data=channel.window.limit
        )
        self._mark_sendable(channel)
        self._report_stream(channel)  # early data that arrived while REQUESTED (CH-2.7.6)

    def refuse_channel(
        self, channel_id: int, now: float, code: ErrorCode | int = ErrorCode.CHANNEL_REFUSED, reason: str = ""
    ) -> None:
        """Refuse a requested channel; ``code`` is an ErrorCode or an application code (errors.md §3)."""
        wire = channel_code_to_wire(code)
        channel = self._channel(channel_id)
        channel.transition(ChannelInput.REFUSE)
        self._control[(fr.FrameType.REFUSE, channel_id)] = fr.Refuse(
            channel_id=channel_id, code=wire, reason=truncate_utf8(reason, 1024)
        )
        self._forget(channel)
        self._discard_early(channel)

    def send(self, channel_id: int, data: bytes | bytearray | memoryview, now: float) -> int:
        """Queue stream bytes; returns how many fit the send buffer (``ChannelWritable`` says when more do).

        The bytes are copied into the send buffer, so ``data`` may be a view into
        the application's own buffer (offer a ``memoryview`` slice of a large
        payload: only what fits is copied, once).
        """
        self._app_active_at = now
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
        self._app_active_at = now
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
        self._app_active_at = now
        channel = self._channel(channel_id)
        if channel.messages is None or channel.local_finished:
            raise LocalProtocolError(f"channel {channel_id} is not a message channel open for sending")
        message_id = channel.messages.push(data, retransmissions)
        self._mark_sendable(channel)
        return message_id

    def read(self, channel_id: int, max_bytes: int | None = None) -> bytes:
        """Up to ``max_bytes`` of stream data (all that is readable when None); ``b""`` if none."""
        return joined(self.read_pieces(channel_id, max_bytes))

    def read_pieces(self, channel_id: int, max_bytes: int | None = None) -> list[bytes]:
        """``read``, as the pieces the bytes arrived in (``[]`` if none), not joined into one:
        a writer that gathers them (``socket.sendmsg``) copies them once instead of twice."""
        channel = self._channel(channel_id, allow_closed=True)
        if channel.recv is None:
            raise LocalProtocolError(f"channel {channel_id} is not a stream")
        pieces = channel.recv.read_pieces(max_bytes)
        if pieces:
            self.conn_window.on_consumed(sum(len(piece) for piece in pieces))
            self._read_channels[channel_id] = None
        if channel.recv.readable == 0:
            channel.data_reported = False
        self._maybe_done(channel)
        return pieces

    def reset_channel(self, channel_id: int, now: float, code: ErrorCode | int = ErrorCode.APPLICATION_CLOSE) -> None:
        """Abort the channel in both directions; the peer gets ``ChannelReset``.

        ``code`` is an ErrorCode or an application code (errors.md §3).  The peer
        answers with a RESET of its own carrying the final size of its
        direction, which settles the connection window for bytes still in flight.
        """
        wire = channel_code_to_wire(code)
        self._app_active_at = now
        self._reset_channel(self._channel(channel_id), wire)

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
        self._app_active_at = now
        ping_id = self._next_ping
        self._next_ping += 1
        self._control[(fr.FrameType.PING, ping_id + 1)] = fr.Ping()
        self._pings[ping_id] = None
        return ping_id

    def close(self, now: float, code: ErrorCode = ErrorCode.NO_ERROR, reason: str = "") -> None:
        """Close the connection.  With NO_ERROR it is graceful: everything sent is delivered first.

        Idempotent; an error code during a graceful close aborts it.
        """
        state = self.state
        if state is _CLOSED or (state is _CLOSING and code is ErrorCode.NO_ERROR):
            return
        if code is not ErrorCode.NO_ERROR or state is ConnectionState.HANDSHAKING:
            self._abort(code, reason, now)
            return
        self._transition(ConnectionInput.CLOSE)
        self._close_code, self._close_reason = code, reason
        self._close_deadline = now + self.config.close_timeout
        for channel in list(self.channels.values()):
            if channel.state is ChannelState.OPEN:
                self.close_channel(channel.id, now)

    @property
    def keepalive_interval(self) -> float | None:
        """This side's keepalive interval (spec/paths.md §7); None: it asks for none."""
        return self._live.local

    @keepalive_interval.setter
    def keepalive_interval(self, interval: float | None) -> None:
        self.set_keepalive_interval(interval)

    def set_keepalive_interval(self, interval: float | None) -> None:
        """Set from outside (the NAT layer learns it per router; PTH-7.1): announced to the peer in a
        KEEPALIVE_INTERVAL frame, in force as soon as that is safe (PTH-7.3).  Drain ``data_to_send``."""
        if interval is not None and not 0 < interval <= 86_400:
            raise LocalProtocolError("keepalive_interval is positive and at most one day")
        frame = self._live.set_local(interval)
        if frame is None:
            return
        for key in [key for key in self._control if key[0] == fr.FrameType.KEEPALIVE_INTERVAL]:
            del self._control[key]  # an older announcement not sent yet: the new one replaces it
        if self.state is not ConnectionState.HANDSHAKING:  # else it goes with the handshake's MAX_CHANNELS
            self._control[(fr.FrameType.KEEPALIVE_INTERVAL, frame.sequence)] = frame

    @property
    def idle_timeout(self) -> float:
        """The idle timeout in force: three agreed keepalive intervals plus 1 s, unless configured (PTH-7.2)."""
        return self._live.idle_timeout

    @property
    def last_received(self) -> float:
        """When the last packet from the peer was processed (liveness, for drivers)."""
        return self._last_received

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
        for path in self.paths.values():  # noqa: SIM110 (all() of a generator: an object per call when compiled)
            if path.recovery.ack_eliciting_in_flight:
                return False
        return True

    # -- liveness (spec/paths.md §7) -----------------------------------------------------------

    def _keepalive_timer(self, now: float) -> None:
        """PTH-7.4/7.5: the controlling side sends a PING when nothing left for the interval in force,
        and once more at once when it drew no answer within max(1 s, 2 smoothed RTT)."""
        interval = self._live.send_interval
        if interval is None or not self.session.initiator:
            self._keepalive_retry_at = None
            return
        retry = self._keepalive_retry_at
        retrying = retry is not None and now >= retry
        if not retrying and now < self._last_sent + interval:
            return
        self._control[(fr.FrameType.PING, 0)] = fr.Ping()
        self._last_sent = now  # re-armed when the PING actually leaves
        if retrying:  # the one retry sent: the 3 s dead-path rule takes over (PTH-7.5)
            self._keepalive_retry_at = None
        else:
            srtt = self.rtt.smoothed_rtt if self.rtt.has_sample else 0.0
            self._keepalive_retry_at = now + max(KEEPALIVE_RETRY_MIN, 2 * srtt)

    def _idle_close_at(self, after: float) -> float | None:
        """PTH-7.6: when a session unused for ``after`` seconds closes (no channel, no application call);
        None: not armed."""
        if self.channels or self.state is not _READY:
            return None
        return self._app_active_at + after

    # -- channels ----------------------------------------------------------------------------

    def _channel(self, channel_id: int, *, allow_closed: bool = False) -> Channel:
        channel = self.channels.get(channel_id)
        if channel is None or (channel.state is ChannelState.CLOSED and not allow_closed):
            raise LocalProtocolError(f"no open channel {channel_id}", ErrorCode.CHANNEL_STATE_ERROR)
        return channel

    def _suspect_black_hole(self, now: float) -> None:
        """A probe timeout with only packets above the base size in flight counts for black hole
        detection as a batch of them lost (recovery.md §7.4): when the path stops carrying large
        packets, nothing else may ever be declared lost (every probe is large too), while the
        small packets that keep the connection alive get through."""
        sizes = [p.size for p in self.recovery.outstanding() if p.in_flight and not self._is_probe(p)]
        if self.pmtu.on_packets_lost(sizes, now):
            self.cc.set_max_datagram_size(self.pmtu.current_mtu)

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

    # -- session events ----------------------------------------------------------------------

    def _transition(self, event: ConnectionInput) -> None:
        try:
            self.state = TRANSITIONS[self.state][event]
        except KeyError:
            raise LocalProtocolError(
                f"connection: no transition from {self.state.value} on {event.value}", ErrorCode.INTERNAL_ERROR
            ) from None

    def _packet(self, pn: int, plaintext: bytes, now: float) -> None:
        """One authenticated packet; a frame that breaks a rule closes the connection (channels.md §11)."""
        if self.state is _CLOSED:
            return
        self._last_received = now
        self._keepalive_retry_at = None  # the peer answered (PTH-7.5)
        rx = self._rx_path
        if rx is self._rx_pending:
            self._adopt_path(rx, now)  # the first authenticated packet from a new address
        rx.last_heard = now
        rx.bytes_received += len(plaintext) + RECORD_OVERHEAD
        rx.blocked = False
        try:
            self._on_packet(pn, plaintext, now)
        except RemoteProtocolError as exc:
            self._abort(exc.code, str(exc), now)

    def _absorb_session(self, now: float) -> None:
        session = self.session
        while (event := session.next_event()) is not None:
            if self.state is _CLOSED:
                continue  # aborted: what the session still had queued no longer matters
            if isinstance(event, MessageReceived):
                self._packet(event.packet_number, event.data, now)
            elif isinstance(event, HandshakeCompleted):
                self._transition(ConnectionInput.HANDSHAKE_DONE)
                self._last_received = self._last_sent = now
                self._control[(fr.FrameType.MAX_CHANNELS, 0)] = fr.MaxChannels(maximum=self._our_max_channels)
                announce = self._live.frame_for(self._live.sequence)
                if announce is not None and announce.sequence > 0:  # PTH-7.1: this side's interval
                    self._control[(fr.FrameType.KEEPALIVE_INTERVAL, announce.sequence)] = announce
                if self.conn_window.limit > INITIAL_MAX_DATA:
                    self._control[(fr.FrameType.MAX_DATA, 0)] = fr.MaxData(maximum=self.conn_window.limit)
                self._events.append(ConnectionReady(session_id=session.local_index, handshake=event))
                for channel in self.channels.values():
                    self._mark_sendable(channel)
            elif isinstance(event, SessionClosed):
                self._terminate(event.code, event.reason, event.by_peer)

    def _terminate(self, code: ErrorCode, reason: str, by_peer: bool) -> None:
        if self.state is _CLOSED:
            return
        self._transition(ConnectionInput.END)
        session_id = self.session.local_index
        for channel in list(self.channels.values()):
            finished = channel.recv is not None and channel.recv.final_size is not None and channel.ended_reported
            if channel.state is not ChannelState.CLOSED and not finished:
                self._events.append(
                    ChannelReset(
                        session_id=session_id, channel_id=channel.id, code=code, reason=reason, by_peer=by_peer
                    )
                )
                channel.state = ChannelState.CLOSED
        self._sendable.clear()
        self._events.append(ConnectionClosed(session_id=session_id, code=code, reason=reason, by_peer=by_peer))

    def _abort(self, code: ErrorCode, reason: str, now: float) -> None:
        """Close at once: the session sends CLOSE (if it has keys), every channel learns why.

        A session that already closed (a counter exhausted while sealing, say) queued its
        own ``SessionClosed``: the connection ends with that code instead.
        """
        session = self.session
        if session.state is not SessionState.CLOSED:
            session.close(now, code, reason)
            self._terminate(code, reason, by_peer=False)
        self._absorb_session(now)  # after the above, drops what the session still queued
        self._terminate(code, reason, by_peer=False)

    def _internal_error(self, exc: LocalProtocolError, now: float) -> None:
        """An internal invariant failed while handling input: close with INTERNAL_ERROR (channels.md §11)."""
        self._abort(ErrorCode.INTERNAL_ERROR, f"internal error: {exc}", now)
