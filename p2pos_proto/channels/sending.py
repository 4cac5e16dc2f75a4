"""The connection's send path: packet building, acknowledgements, loss (spec/channels.md §4-§6).

``SendPath`` is the half of ``Connection`` that decides what goes into each
packet and what happens when a packet is acknowledged or lost.  Per packet, in
order: an ACK when one is due (or can ride along), queued control frames, then
stream data and messages from the channels in round-robin order, one chunk per
channel per turn, so that every channel gets its share (spec/channels.md §5).
Ack-eliciting packets obey the congestion window and the pacer, except PTO
probes (RFC 9002 §7.5); ACK-only packets obey neither.  A PMTU probe is a PING
padded to the probed size (RFC 8899 §4.1) whose loss does not count as
congestion (RFC 9000 §14.4).

A bulk transfer on one channel takes a fast path (``_stream_burst``) that builds
the same packets without the general loop's per-packet lists and dispatch; what a
sent packet carried is kept as a tuple of tokens, which the garbage collector
stops tracking, so that thousands of packets in flight do not slow its passes.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Final

from ..common.varint import size as varint_size
from ..errors import ErrorCode, RemoteProtocolError
from ..events import ChannelClosed, ChannelEvent, ChannelWritable, HandshakeCompleted, PingAcknowledged
from ..paths.events import PathEvent
from ..paths.path import CONTROLLERS, Path, PathKind, PathState, Token, Tokens
from ..recovery.acks import AckTracker
from ..recovery.bbr import Bbr
from ..recovery.congestion import CongestionController, Cubic, NewReno
from ..recovery.pacing import Pacer
from ..recovery.pmtu import PmtuDiscovery
from ..recovery.recovery import LossRecovery, SentPacket
from ..recovery.rtt import RttEstimator
from ..session.record import OVERHEAD as RECORD_OVERHEAD
from ..session.session import SecureSession
from . import frames as fr
from .channel import INITIAL_MAX_DATA, Channel, ChannelConfig, ChannelInput, ChannelState
from .flow import ReceiveWindow, SendCredit
from .liveness import KeepaliveAgreement

__all__ = ["CONTROLLERS", "PACING_GRANULARITY", "Bbr", "Cubic", "NewReno", "SendPath", "Token", "Tokens"]

_STREAM: Final = 0
_MESSAGE: Final = 1
_CONTROL: Final = 2
_PING: Final = 3
_PROBE: Final = 4
_ACK: Final = 5
#: An ACK rides along with data only while it is this small (a due ACK is sent regardless).
_PIGGYBACK_ACK: Final = 32
ControlKey = tuple[int, int]
_MIN_ROOM: Final = 24
#: Below this much of an unvalidated path's amplification budget, nothing is sent (PTH-3.6).
_MIN_AMPLIFIED: Final = 64
_OPEN: Final = ChannelState.OPEN  # a module global is quicker to read than an enum member
#: Control frames resent as they were when lost (the rest are rebuilt from current state).
_REMEMBERED: Final = frozenset(
    {fr.FrameType.REFUSE, fr.FrameType.RESET, fr.FrameType.STOP_SENDING, fr.FrameType.CLOSE_CHANNEL}
)
#: The ACK delay field counts microseconds (spec/frames.md §4.3).
_MICROS: Final = 1_000_000
#: A paced packet due within this long goes now (spec/recovery.md §6): a driver's timers are not
#: finer than this, and waking once per packet at a high rate costs more than the pacing is worth.
PACING_GRANULARITY: Final = 0.001


def _only_stream(tokens: Tokens) -> bool:
    """True when ``tokens`` is not empty and all are stream chunks (a loop: a generator costs an object per call)."""
    if not tokens:
        return False
    for token in tokens:  # noqa: SIM110 (all() of a generator: an object per call in the compiled core)
        if token[0] != _STREAM:
            return False
    return True


class SendPath:
    """Packet building and the fate of sent packets; the base of ``ReceivePath`` and ``Connection``.

    The connection is one class built in three layers of single inheritance, so that mypyc
    compiles it into one native class (one attribute read per field on the per-packet paths):
    this base owns, and initialises, the state both paths share (the channels, flow control,
    ACKs, loss recovery, congestion control, pacing, PMTU, the control-frame queue and the
    events); ``ReceivePath`` adds what only frames from the peer change; ``Connection`` adds
    the driver and application API and the connection's state machine.  Every method a layer
    calls is defined in that layer or below it.
    """

    __slots__ = (
        "_app_limited",
        "_closed_peer_channels",
        "_conn_blocked",
        "_control",
        "_event_pos",
        "_events",
        "_last_sent",
        "_live",
        "_our_max_channels",
        "_pacing_at",
        "_peer_open",
        "_peer_parity",
        "_pings",
        "_pto_probes",
        "_read_channels",
        "_rx_path",
        "_sendable",
        "_sent_control",
        "acks",
        "cc",
        "channels",
        "config",
        "conn_credit",
        "conn_window",
        "lost_packets",
        "pacer",
        "path",
        "path_counts",
        "paths",
        "pmtu",
        "recovery",
        "stream_path",
        "rtt",
        "session",
        "too_old_packets",
    )

    def __init__(self, session: SecureSession, now: float, config: ChannelConfig) -> None:
        self.session = session
        self.config = config
        stream = config.path_kind == "stream"
        self.channels: dict[int, Channel] = {}
        self._peer_parity = 1 if session.initiator else 0
        self._peer_open = 0  # the peer's channels we hold now
        self._our_max_channels = config.max_channels
        self._closed_peer_channels = 0
        self.conn_credit = SendCredit(INITIAL_MAX_DATA)
        self.conn_window = ReceiveWindow(config.connection_window, config.connection_window_max, now=now)
        self.acks = AckTracker(max_ack_delay=config.max_ack_delay, ack_every=2)
        #: The paths by id (spec/paths.md §1); path 0 is the one the handshake ran on.
        path = Path(
            0,
            kind=PathKind.STREAM if stream else PathKind.DATAGRAM,
            rank=0,
            congestion_control=config.congestion_control,
            max_datagram_size=config.max_datagram_size,
            pmtu_probing=config.pmtu_probing,
        )
        path.state = PathState.VALIDATED  # the handshake's round trip proved the peer's address
        self.paths: dict[int, Path] = {0: path}
        #: The active path is stream-carried (spec/paths.md §5): fixed large packets, no pacing.
        self.stream_path = stream
        if stream:
            path.cc.set_max_datagram_size(config.stream_frame_size)
        #: The path the packet being processed arrived on.
        self._rx_path = path
        #: Path counters (spec/errors.md): ``path_amplification`` (output held back by PTH-3.6),
        #: ``path_unknown`` (a datagram for a path that is gone).
        self.path_counts: dict[str, int] = {}
        #: The active path; ``rtt`` ... ``pmtu`` are its state, read directly on the per-packet paths.
        self.path = path
        self.rtt: RttEstimator = path.rtt
        self.recovery: LossRecovery[Tokens] = path.recovery
        self.cc: CongestionController = path.cc
        self.pacer: Pacer = path.pacer
        self.pmtu: PmtuDiscovery = path.pmtu
        self.too_old_packets = 0
        self._control: dict[ControlKey, fr.Frame] = {}
        self._sent_control: dict[ControlKey, fr.Frame] = {}
        self._sendable: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._conn_blocked: dict[int, None] = {}  # a dict as a set: an empty set takes 216 bytes, a dict 64
        self._read_channels: dict[int, None] = {}  # channels read since the last window check
        # Events wait in a list read from ``_event_pos`` on (an empty deque takes 760 bytes).
        self._events: list[ChannelEvent | HandshakeCompleted | PathEvent] = []
        self._event_pos = 0
        self._pings: dict[int, None] = {}
        self._pto_probes = 0
        self._pacing_at: float | None = None
        self._app_limited = True
        #: When this side last sent a packet on the active path (the keepalive timer, spec/paths.md PTH-7.4).
        self._last_sent = now
        self._live = KeepaliveAgreement(config.keepalive_interval, config.idle_timeout)
        self.lost_packets = 0

    # -- channel bookkeeping both paths use ----------------------------------------------------

    def _mark_sendable(self, channel: Channel) -> None:
        if channel.wants_to_send():
            self._sendable[channel.id] = None

    def _maybe_done(self, channel: Channel) -> None:
        if channel.state is _OPEN and channel.both_done():
            channel.transition(ChannelInput.DONE)
            self._events.append(ChannelClosed(session_id=self.session.local_index, channel_id=channel.id))
            self._forget(channel)

    def _forget(self, channel: Channel) -> None:
        """The channel is closed: free its id (a closed peer channel raises the peer's allowance)."""
        if self.channels.pop(channel.id, None) is None:
            return
        self._sendable.pop(channel.id, None)
        self._conn_blocked.pop(channel.id, None)
        if channel.id % 2 == self._peer_parity:
            self._peer_open -= 1
            self._peer_channel_done()

    def _peer_channel_done(self) -> None:
        """One more peer channel index is used up: raise MAX_CHANNELS by half the limit at a time."""
        self._closed_peer_channels += 1
        limit = self.config.max_channels
        if self._closed_peer_channels + limit - self._our_max_channels >= limit // 2:
            self._our_max_channels = self._closed_peer_channels + limit
            self._control[(fr.FrameType.MAX_CHANNELS, 0)] = fr.MaxChannels(maximum=self._our_max_channels)

    def _release_receive(self, channel: Channel) -> None:
        """Return a dropped channel's unread bytes to the connection window."""
        if channel.recv is not None:
            unread = channel.recv.window.highest_received - channel.recv.bytes_read
            if unread > 0:
                self.conn_window.on_consumed(unread)

    # -- building packets -------------------------------------------------------------------

    def _packet_size(self) -> int:
        """The datagram size to build: the path MTU (or the framed size), within the peer's record limit."""
        # A stream-carried path's records are its controller's datagram size: the session's
        # ``stream_frame_size``, or the size its carrier gave when the path was added (PTH-5.3).
        size = self.cc.max_datagram_size if self.stream_path else self.pmtu.current_mtu
        return min(size, self.session.peer_max_plaintext + RECORD_OVERHEAD)

    def _queue_window_updates(self, now: float) -> None:
        """MAX_DATA / MAX_CHANNEL_DATA when the application has read half a window (spec/flow.md §3)."""
        srtt = self.rtt.smoothed_rtt if self.rtt.has_sample else 0.0
        read, self._read_channels = self._read_channels, {}
        for channel_id in read:  # only a read can make an update due: O(channels read), not O(channels)
            channel = self.channels.get(channel_id)
            if channel is None:
                continue
            window = channel.window
            if channel.recv is not None and channel.recv.final_size is None and window.should_send_update():
                maximum = window.new_limit(now, srtt)
                self._control[(fr.FrameType.MAX_CHANNEL_DATA, channel.id)] = fr.MaxChannelData(
                    channel_id=channel.id, maximum=maximum
                )
                self.conn_window.ensure_window(int(window.window * 1.5))
        if self.conn_window.should_send_update():
            self._control[(fr.FrameType.MAX_DATA, 0)] = fr.MaxData(maximum=self.conn_window.new_limit(now, srtt))

    def _build_packets(self, now: float) -> None:
        """Apply the too-old rule (recovery.md §4.5) to every path, then build what may be sent now."""
        next_pn = self.session.next_counter
        for each in self.paths.values():
            too_old = each.recovery.declare_too_old(next_pn)
            if too_old:
                self.too_old_packets += len(too_old)
                self._on_lost(too_old, now, congestion=False, path=None if each is self.path else each)
        self._build(now)

    def _build(self, now: float) -> None:
        self._pacing_at = None  # armed again below if the pacer holds a packet back
        self._maybe_probe_pmtu(now)
        acks = self.acks
        if not (self._control or self._sendable or self._pto_probes or acks.ack_due(now)):
            return  # the common case when a driver polls: nothing to send
        ack_only_sent = False
        stream = self.stream_path  # no pacing on a stream-carried path (spec/paths.md §5)
        size = self._packet_size()  # fixed while building: the path MTU moves only on ACKs and timers
        recovery, cc, pacer = self.recovery, self.cc, self.pacer
        path = self.path
        budget = path.send_budget()  # None unless the active path is not validated yet (PTH-3.6)
        burst = budget is None  # the bulk fast path may take over (``_stream_burst``)
        while True:
            if budget is not None:
                budget = path.send_budget()
                if budget is not None and budget < size:
                    if budget < _MIN_AMPLIFIED:
                        self._count("path_amplification")
                        path.blocked = True  # until the peer sends on this path again
                        return
                    size = budget
            if burst and len(self._sendable) == 1 and not (self._control or self._pto_probes or acks.has_news()):
                if self._stream_burst(now, size):
                    return
                burst = False  # it stopped short: this turn goes the general way
            probe = self._pto_probes > 0
            may_elicit = probe or cc.available(recovery.bytes_in_flight) >= size
            if may_elicit and not stream and not probe:
                at = pacer.next_send_time(now, size)
                if at > now + PACING_GRANULARITY:
                    may_elicit = False
                    self._pacing_at = at
            has_work = self._has_work()
            if not may_elicit and has_work:
                self._app_limited = False  # the window or the pacer holds data back (RFC 9002 §7.8)
            room = size - RECORD_OVERHEAD
            parts: list[bytes] = []
            tokens: list[Token] = []
            with_ack = False
            if acks.has_news():
                due = acks.ack_due(now)
                if due or (may_elicit and has_work):
                    snapshot = acks.snapshot()
                    ack = fr.encode_ack(snapshot, round(acks.ack_delay(now) * _MICROS))
                    if len(ack) <= room and (due or len(ack) <= _PIGGYBACK_ACK):
                        parts.append(ack)
                        room -= len(ack)
                        with_ack = True
                        tokens.append((_ACK, snapshot[0][1], 0, 0, False))
            eliciting = False
            if may_elicit:
                if self._control:
                    room, eliciting = self._add_control(parts, tokens, room)
                if self._sendable and room >= _MIN_ROOM and self._add_data(parts, tokens, room):
                    eliciting = True
                if probe and not eliciting:
                    parts.append(fr.encode_frame(fr.Ping()))
                    eliciting = True
                if not eliciting:
                    self._app_limited = True
                elif self._has_work():
                    self._app_limited = False
            if not parts or (not eliciting and ack_only_sent):
                return
            self._send_packet(parts[0] if len(parts) == 1 else b"".join(parts), tuple(tokens), now, eliciting, with_ack)
            burst = budget is None
            if probe and eliciting:
                self._pto_probes -= 1
            if not eliciting:
                # A due ACK that left no room: one ACK-only packet, then the data gets a packet of its own.
                ack_only_sent = True
                if not (may_elicit and self._has_work()):
                    return

    def _stream_burst(self, now: float, size: int) -> bool:
        """The bulk sender's fast path: full packets of new data from the one sendable stream channel.

        Called when nothing else waits (no control frame, no PTO probe, no ACK to send or
        piggyback: none of that changes while packets are built) and exactly one channel is
        sendable.  Each packet is what the general loop would build, one STREAM frame, without
        its per-packet lists, dispatch and checks.  True: the congestion window or the pacer
        stopped it, as it would stop the general loop.  False: the general loop takes over
        (lost data to resend, no credit, the channel is done or not a stream, a short chunk).
        """
        channel_id = next(iter(self._sendable))
        channel = self.channels.get(channel_id)
        if channel is None or channel.state is not _OPEN:
            return False
        send = channel.send
        if send is None or send.has_retransmissions:
            return False
        room = size - RECORD_OVERHEAD
        max_len = room - 1 - varint_size(channel_id) - 8 - varint_size(room)  # as _add_stream_chunk
        credit, conn_credit = channel.credit, self.conn_credit
        recovery, cc, pacer, session, path = self.recovery, self.cc, self.pacer, self.session, self.path
        paced = not self.stream_path
        while True:
            if cc.available(recovery.bytes_in_flight) < size:
                self._app_limited = False
                return True
            if paced:
                at = pacer.next_send_time(now, size)
                if at > now + PACING_GRANULARITY:
                    self._pacing_at = at
                    self._app_limited = False
                    return True
            offset = send.sent_offset
            data = send.take_new(max_len, min(credit.available(), conn_credit.available()))
            count = len(data)
            if count == 0:
                return False
            credit.consume(count)
            conn_credit.consume(count)
            fin = send.ends_stream_at(offset + count)
            plaintext = fr.stream_header(channel_id, offset, count, fin) + data
            pn = session.send(plaintext, now)
            self._last_sent = now
            packet_size = len(plaintext) + RECORD_OVERHEAD
            path.bytes_sent += packet_size
            packet = recovery.on_packet_sent(
                pn,
                now,
                packet_size,
                ack_eliciting=True,
                in_flight=True,
                payload=((_STREAM, channel_id, offset, count, fin),),
            )
            if paced:
                pacer.on_packet_sent(now, packet_size)
            more = channel.wants_to_send()
            cc.on_packet_sent(packet, recovery.bytes_in_flight, now, app_limited=not more)
            if not more or count < max_len:
                return False

    def _send_packet(self, plaintext: bytes, tokens: Tokens, now: float, eliciting: bool, with_ack: bool) -> int:
        pn = self.session.send(plaintext, now)
        size = len(plaintext) + RECORD_OVERHEAD
        self.path.bytes_sent += size
        if with_ack:
            self.acks.on_ack_sent()
        self._last_sent = now  # any packet refreshes the path's NAT bindings (PTH-7.4)
        packet = self.recovery.on_packet_sent(
            pn, now, size, ack_eliciting=eliciting, in_flight=eliciting, payload=tokens
        )
        if eliciting:
            if not self.stream_path:
                self.pacer.on_packet_sent(now, size)
            if not tokens or tokens[0][0] != _PROBE:  # a PMTU probe is no sample of the path's delivery rate
                self.cc.on_packet_sent(packet, self.recovery.bytes_in_flight, now, app_limited=not self._has_work())
        return pn

    def _has_work(self) -> bool:
        return bool(self._control or self._sendable or self._pto_probes)

    def _add_control(self, parts: list[bytes], tokens: list[Token], room: int) -> tuple[int, bool]:
        eliciting = False
        for key in list(self._control):
            encoded = fr.encode_frame(self._control[key])
            if len(encoded) > room:
                continue
            frame = self._control.pop(key)
            if key[0] in _REMEMBERED:
                self._sent_control[key] = frame
            parts.append(encoded)
            room -= len(encoded)
            eliciting = True
            if key[0] == fr.FrameType.PING and key[1] > 0:
                tokens.append((_PING, key[1] - 1, 0, 0, False))
            else:
                tokens.append((_CONTROL, key[0], key[1], 0, False))
            if room < _MIN_ROOM:
                break
        return room, eliciting

    def _add_data(self, parts: list[bytes], tokens: list[Token], room: int) -> bool:
        """Stream chunks and messages, one per channel per turn (round robin); True if any was added."""
        sendable = self._sendable
        channels = self.channels
        if len(sendable) == 1:
            return self._add_data_one(parts, tokens, room)
        added = False
        turns = len(sendable)
        while room >= _MIN_ROOM and sendable and turns > 0:
            channel_id, _ = sendable.popitem(last=False)
            turns -= 1
            channel = channels.get(channel_id)
            if channel is None or (channel.state is not _OPEN and not channel.sends_early()):
                continue
            if channel.send is not None:
                room, sent = self._add_stream_chunk(channel, parts, tokens, room)
            else:
                room, sent = self._add_message(channel, parts, tokens, room)
            if sent:
                added = True
            if channel.wants_to_send() and channel_id not in self._conn_blocked:
                sendable[channel_id] = None
                if sent:
                    turns += 1
        return added

    def _add_data_one(self, parts: list[bytes], tokens: list[Token], room: int) -> bool:
        """``_add_data`` with one sendable channel (a bulk transfer): the same outcome, without
        popping the channel from ``_sendable`` and putting it back for every packet."""
        sendable = self._sendable
        channel_id = next(iter(sendable))
        channel = self.channels.get(channel_id)
        if channel is None or (channel.state is not _OPEN and not channel.sends_early()):
            del sendable[channel_id]
            return False
        if channel.send is not None:
            room, sent = self._add_stream_chunk(channel, parts, tokens, room)
        else:
            room, sent = self._add_message(channel, parts, tokens, room)
        if not channel.wants_to_send() or channel_id in self._conn_blocked:
            sendable.pop(channel_id, None)
        elif sent and room >= _MIN_ROOM:
            # Its turn came again in the same packet (round robin over one channel).
            self._add_data_one(parts, tokens, room)
        return sent

    def _add_stream_chunk(
        self, channel: Channel, parts: list[bytes], tokens: list[Token], room: int
    ) -> tuple[int, bool]:
        send = channel.send
        if send is None:
            return room, False
        channel_id = channel.id
        if channel.state is not _OPEN:  # early data (CH-2.7.2): only in a packet that carries the OPEN
            room = self._with_open(channel, parts, tokens, room)
            if room < _MIN_ROOM:
                return room, False
        # The frame header: type, channel id, offset (up to 8 bytes), length (at most room).
        header_room = room - 1 - varint_size(channel_id) - 8 - varint_size(room)
        credit, conn_credit = channel.credit, self.conn_credit
        available = min(credit.available(), conn_credit.available())
        before = send.sent_offset
        chunk = send.next_chunk(header_room, available)
        if chunk is None:
            if send.unsent and credit.available() > 0:
                self._conn_blocked[channel_id] = None
                if conn_credit.should_send_blocked():
                    self._control[(fr.FrameType.DATA_BLOCKED, 0)] = fr.DataBlocked(limit=conn_credit.on_blocked_sent())
            elif send.unsent and credit.should_send_blocked():
                self._control[(fr.FrameType.CHANNEL_BLOCKED, channel_id)] = fr.ChannelBlocked(
                    channel_id=channel_id, limit=credit.on_blocked_sent()
                )
            return room, False
        offset, data, fin = chunk
        new = send.sent_offset - before
        if new:
            credit.consume(new)
            conn_credit.consume(new)
        encoded = fr.stream_header(channel_id, offset, len(data), fin)
        parts.append(encoded + data)
        tokens.append((_STREAM, channel_id, offset, len(data), fin))
        return room - len(encoded) - len(data), True

    def _with_open(self, channel: Channel, parts: list[bytes], tokens: list[Token], room: int) -> int:
        """Put the OPEN of an ``OPENING`` channel in this packet, unless it is there already; returns the
        room left (below ``_MIN_ROOM``: it did not fit, send no early data in this packet).  A copy of an
        OPEN already sent is harmless: the peer ignores a repeated OPEN (CH-2.2.10)."""
        channel_id = channel.id
        key = (int(fr.FrameType.OPEN), channel_id)
        token: Token = (_CONTROL, key[0], channel_id, 0, False)
        if token in tokens:
            return room
        frame = self._control.get(key) or channel.open_frame()
        encoded = fr.encode_frame(frame)
        if len(encoded) + _MIN_ROOM > room:
            return 0
        self._control.pop(key, None)
        parts.append(encoded)
        tokens.append(token)
        return room - len(encoded)

    def _add_message(self, channel: Channel, parts: list[bytes], tokens: list[Token], room: int) -> tuple[int, bool]:
        queue = channel.messages
        if queue is None:
            return room, False
        popped = queue.pop(room - 2 - varint_size(channel.id) - 8 - varint_size(room))
        if popped is None:
            return room, False
        message_id, data = popped
        encoded = fr.encode_frame(fr.Message(channel_id=channel.id, message_id=message_id, data=data))
        parts.append(encoded)
        tokens.append((_MESSAGE, channel.id, message_id, 0, False))
        return room - len(encoded), True

    def _maybe_probe_pmtu(self, now: float) -> None:
        """RFC 8899 §4.1: a PING padded to the probed size, when the window has room for it."""
        size = self.pmtu.probe_size_to_send(now)
        if size is None:
            return
        room, window = self.cc.available(self.recovery.bytes_in_flight), self.cc.congestion_window
        if room < size and (size <= window or room < window // 2):
            # recovery.md §7.1: a probe larger than the whole window (a large-MTU link, such as loopback,
            # whose window is still small) may go once half the window is free, or it never would.
            return
        if size > self.session.peer_max_plaintext + RECORD_OVERHEAD:
            return  # the peer would refuse such a record: the MTU the search may reach is capped
        ping = fr.encode_frame(fr.Ping())
        padding = size - RECORD_OVERHEAD - len(ping)
        if padding < 1:
            return
        pn = self._send_packet(ping + bytes(padding), ((_PROBE, 0, size, 0, False),), now, True, False)
        self.pmtu.on_probe_sent(pn, size, now)

    # -- the fate of sent packets -----------------------------------------------------------

    def _on_ack(self, ranges: list[tuple[int, int]], ack_delay: int, now: float) -> None:
        """An ACK frame: ``ranges`` as ``Ack.ranges()`` gives them, ``ack_delay`` in microseconds.

        With one path, its recovery alone; once the number space is shared (spec/paths.md §2),
        every path's recovery takes the packets of its own the ACK covers, and only the path it
        arrived on may take an RTT sample (PTH-2.3).
        """
        path = self.path
        if not path.recovery.own_numbers:
            self._on_path_ack(path, ranges, ack_delay, now, True)
            return
        largest = 0
        for _, high in ranges:
            largest = high if high > largest else largest
        if largest >= self.session.next_counter:  # RFC 9000 §13.1 (channels.md §11)
            raise RemoteProtocolError("ACK of a packet never sent", ErrorCode.PROTOCOL_VIOLATION)
        rx = self._rx_path
        for each in list(self.paths.values()):
            self._on_path_ack(each, ranges, ack_delay, now, each is rx)

    def _on_path_ack(
        self, path: Path, ranges: list[tuple[int, int]], ack_delay: int, now: float, arrived_here: bool
    ) -> None:
        # The active path's state is read through the connection's own attributes (the same objects).
        active = path is self.path
        recovery = self.recovery if active else path.recovery
        if arrived_here:
            result = recovery.on_ack_received(ranges, ack_delay / _MICROS, now)
        else:
            result = recovery.on_ack_received(ranges, ack_delay / _MICROS, now, rtt_sample=False)
        if result.acked_unsent:  # the receive path closes the connection with this code (channels.md §11)
            raise RemoteProtocolError("ACK of a packet never sent", ErrorCode.PROTOCOL_VIOLATION)
        if not result.newly_acked and not result.lost:
            return
        self._on_acked_packets(result.newly_acked, now)
        cc = self.cc if active else path.cc
        congestion = [p for p in result.newly_acked if not self._is_probe(p)]
        if congestion:
            cc.on_packets_acked(congestion, now, rtt=self.rtt if active else path.rtt, app_limited=self._app_limited)
        if active:
            self._on_lost(result.lost, now)
        else:
            self._on_lost(result.lost, now, path=path)
        if result.persistent_congestion:
            cc.on_persistent_congestion(now)
        if active:
            self._update_pacer()
        else:
            self._update_path_pacer(path)

    def _update_pacer(self) -> None:
        """The controller's own pacing rate if it has one (BBR), else one derived from the window (recovery.md §6)."""
        cc = self.cc
        rate = cc.pacing_rate
        if rate is None:
            self.pacer.update_rate(cc.congestion_window, self.rtt.smoothed_rtt, cc.max_datagram_size)
        else:
            self.pacer.set_rate(rate, cc.congestion_window, cc.max_datagram_size)

    def _update_path_pacer(self, path: Path) -> None:
        """``_update_pacer`` for a path that is not the active one."""
        cc = path.cc
        rate = cc.pacing_rate
        if rate is None:
            path.pacer.update_rate(cc.congestion_window, path.rtt.smoothed_rtt, cc.max_datagram_size)
        else:
            path.pacer.set_rate(rate, cc.congestion_window, cc.max_datagram_size)

    def _count(self, what: str) -> None:
        counts = self.path_counts
        counts[what] = counts.get(what, 0) + 1

    def _on_acked_packets(self, packets: list[SentPacket[Tokens]], now: float) -> None:
        """``_on_delivered`` for each packet; contiguous stream chunks of a channel are freed as one range.

        Bulk transfers acknowledge many packets of stream chunks at once, with
        round robin interleaving the channels: merging each channel's contiguous
        chunks costs one ``SendBuffer.on_acked`` per channel and ACK instead of
        one per chunk.  A packet with anything but stream chunks first settles
        the merged ranges, so effects keep their order.
        """
        runs: dict[int, list[int]] = {}  # channel id -> [start, end) of acknowledged, unsettled bytes
        largest = 0
        for packet in packets:
            tokens = packet.payload
            if _only_stream(tokens):
                largest = max(largest, packet.size)
                for _, channel_id, offset, length, fin in tokens:
                    run = runs.get(channel_id)
                    if run is not None and run[1] == offset:
                        run[1] = offset + length
                    else:
                        if run is not None:
                            self._settle(channel_id, run, False, now)
                        run = runs[channel_id] = [offset, offset + length]
                    if fin:  # nothing follows a FIN: settle it now, with its flag
                        self._settle(channel_id, run, True, now)
                        del runs[channel_id]
                continue
            for channel_id, run in runs.items():
                self._settle(channel_id, run, False, now)
            runs.clear()
            self._on_delivered(tokens, now, now - packet.time_sent, packet)
        for channel_id, run in runs.items():
            self._settle(channel_id, run, False, now)
        if largest:
            self.pmtu.on_packet_acked(largest)

    def _settle(self, channel_id: int, run: list[int], fin: bool, now: float) -> None:
        self._on_delivered(((_STREAM, channel_id, run[0], run[1] - run[0], fin),), now, 0.0)

    @staticmethod
    def _is_probe(packet: SentPacket[Tokens]) -> bool:
        return bool(packet.payload) and packet.payload[0][0] == _PROBE

    def _on_delivered(self, tokens: Tokens, now: float, rtt: float, packet: SentPacket[Tokens] | None = None) -> None:
        for kind, a, b, c, fin in tokens:
            if kind == _STREAM:
                channel = self.channels.get(a)
                if channel is not None and channel.send is not None:
                    channel.send.on_acked(b, c, fin)
                    if channel.want_writable and channel.send.buffered * 2 <= self.config.send_buffer:
                        channel.want_writable = False
                        self._events.append(ChannelWritable(session_id=self.session.local_index, channel_id=a))
                    self._maybe_done(channel)
            elif kind == _MESSAGE:
                channel = self.channels.get(a)
                if channel is not None and channel.messages is not None:
                    channel.messages.on_acked(b)
            elif kind == _CONTROL:
                self._sent_control.pop((a, b), None)
                if a == fr.FrameType.KEEPALIVE_INTERVAL:
                    self._live.on_acked(b)
                channel = self.channels.get(b) if a == fr.FrameType.CLOSE_CHANNEL else None
                if channel is not None:
                    channel.local_done = True
                    self._maybe_done(channel)
            elif kind == _ACK:
                self.acks.on_ack_acknowledged(a)
            elif kind == _PING and a in self._pings:
                del self._pings[a]
                self._events.append(PingAcknowledged(session_id=self.session.local_index, ping_id=a, rtt=rtt))
            elif kind == _PROBE and packet is not None and self.pmtu.on_probe_acked(packet.pn, now):
                self.cc.set_max_datagram_size(self.pmtu.current_mtu)
        if packet is not None and not self._is_probe(packet):
            self.pmtu.on_packet_acked(packet.size)

    def _on_lost(
        self, lost: Sequence[SentPacket[Tokens]], now: float, *, congestion: bool = True, path: Path | None = None
    ) -> None:
        """Packets of ``path`` (the active one by default) declared lost: their data is queued again;
        with ``congestion`` the path's controller and PMTU discovery hear of them (not for packets
        only too old for the replay window, recovery.md §4.5, nor those of a dead path, paths.md §4)."""
        if not lost:
            return
        cc = self.cc if path is None else path.cc
        pmtu = self.pmtu if path is None else path.pmtu
        counted = [p for p in lost if not self._is_probe(p)] if congestion else []
        self.lost_packets += len(counted)
        for packet in lost:
            if self._is_probe(packet):
                pmtu.on_probe_lost(packet.pn, now)
            else:
                self._requeue(packet.payload)
        if counted:
            cc.on_packets_lost(counted, now)
            if pmtu.on_packets_lost([p.size for p in counted], now):
                cc.set_max_datagram_size(pmtu.current_mtu)

    def _requeue(self, tokens: Tokens) -> None:
        """Queue again what a lost packet carried that still matters (RFC 9000 §13.3)."""
        for kind, a, b, c, fin in tokens:
            if kind in (_STREAM, _MESSAGE):
                channel = self.channels.get(a)
                if channel is None:
                    continue
                if kind == _STREAM and channel.send is not None:
                    channel.send.on_lost(b, c, fin)
                elif channel.messages is not None:
                    channel.messages.on_lost(b)
                self._mark_sendable(channel)
            elif kind == _PING:
                if a in self._pings:
                    self._control[(fr.FrameType.PING, a + 1)] = fr.Ping()
            elif kind == _CONTROL:
                frame = self._current_control(a, b)
                if frame is not None:
                    self._control.setdefault((a, b), frame)

    def _current_control(self, ftype: int, channel_id: int) -> fr.Frame | None:
        """The control frame to resend for a lost one, rebuilt from the current state."""
        channel = self.channels.get(channel_id)
        if ftype == fr.FrameType.MAX_DATA:
            return fr.MaxData(maximum=self.conn_window.limit)
        if ftype == fr.FrameType.MAX_CHANNELS:
            return fr.MaxChannels(maximum=self._our_max_channels)
        if ftype == fr.FrameType.KEEPALIVE_INTERVAL:  # only the newest announcement is sent again
            return self._live.frame_for(channel_id)
        if ftype == fr.FrameType.MAX_CHANNEL_DATA:
            if channel is None or channel.recv is None or channel.recv.final_size is not None:
                return None
            return fr.MaxChannelData(channel_id=channel_id, maximum=channel.window.limit)
        if ftype == fr.FrameType.OPEN:
            if channel is None:  # reset while opening: sent again with its RESET (CH-3.3.12), else nothing
                return self._sent_control.get((ftype, channel_id))
            if channel.state is not ChannelState.OPENING:
                return None
            return channel.open_frame()
        if ftype == fr.FrameType.ACCEPT:
            if channel is None or channel.state is not ChannelState.OPEN:
                return None
            return fr.Accept(channel_id=channel_id, initial_max_data=channel.window.limit)
        if ftype == fr.FrameType.DATA_BLOCKED:  # still blocked: say so again (RFC 9000 §13.3)
            credit = self.conn_credit
            return fr.DataBlocked(limit=credit.limit) if credit.available() == 0 else None
        if ftype == fr.FrameType.CHANNEL_BLOCKED:
            if channel is None or channel.credit.available() != 0:
                return None
            return fr.ChannelBlocked(channel_id=channel_id, limit=channel.credit.limit)
        return self._sent_control.get((ftype, channel_id))
