"""Channel-layer cases (spec/channels.md, spec/flow.md): what the IUT puts on the wire.

The IUT runs its channel layer over a session (``conn_session``, spec/conformance.md
§3.7); the runner completes the handshake with ``establish`` and then plays the
peer itself: it builds frames with ``p2pos.proto.channels.frames``, seals them into DATA
records with the ``Link``'s keys, and opens and parses the IUT's records.  So the
cases check the frames and CLOSE codes the IUT sends, not its internal state.
The IUT is the session responder unless a case says otherwise, so it opens odd
channel ids and the runner even ones (frames.md §6).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, TypeVar

from p2pos.proto.channels import frames as ch
from p2pos.proto.channels.flow import EARLY_WINDOW
from p2pos.proto.errors import ErrorCode, ProtocolError
from p2pos.proto.session.wire import PacketType

from .checks import CaseFailed, expect, expect_eq, short
from .iut import Iut
from .reference import Link, establish, events_of, out_of
from .registry import case

F = TypeVar("F", bound=ch.Frame)
OPEN, LIMIT, MISSING = "channels.md §2.2", "channels.md §2.4", "channels.md §2.6"
FINISH, RESET, ACKS = "channels.md §3.2", "channels.md §3.3", "channels.md §4"
#: Channel-layer tunables of every case unless it says otherwise: no PMTU probes, no keepalive PINGs,
#: so that the IUT sends only what the case provokes.
MAX_ACK_DELAY = 0.025
QUIET: dict[str, Any] = {
    "pmtu_probing": False,
    "keepalive_interval": None,
    "channel_window": 4096,
    "max_ack_delay": MAX_ACK_DELAY,
}
SERVICES = ("echo", "sink")


@dataclasses.dataclass(slots=True)
class Packet:
    """One of the IUT's DATA records, parsed: its packet number (the record counter) and frames."""

    pn: int
    frames: list[ch.Frame]


@dataclasses.dataclass(slots=True)
class Reply:
    """What the IUT sent in answer to one command: its packets, a CLOSE code, its events."""

    answer: dict[str, Any]
    packets: list[Packet]
    close: int | None = None

    def frames(self, cls: type[F]) -> list[F]:
        return [f for p in self.packets for f in p.frames if isinstance(f, cls)]

    def events(self, kind: str) -> list[dict[str, Any]]:
        return events_of(self.answer, kind)


class Peer:
    """The runner's side of a channel-layer connection with the IUT."""

    def __init__(
        self,
        iut: Iut,
        *,
        role: str = "responder",
        services: Iterable[str] = SERVICES,
        **channel_config: Any,
    ) -> None:
        self.iut = iut
        self.now = 0.0
        self.received: list[Packet] = []
        config = {**QUIET, **channel_config}
        self.link: Link = establish(
            iut, role, channels={"services": list(services), "channel_config": config}, now=self.now
        )
        #: The runner opens ids of the other parity than the IUT (frames.md §6).
        self.next_id = 0 if role == "responder" else 1
        self.iut_parity = 1 - self.next_id
        self.first = self._absorb({"events": []}, self.link.trailing)
        if self.received:  # acknowledged at once, so that no probe timeout (recovery.md §4.3) disturbs the case
            self.ack()

    # -- sending ---------------------------------------------------------------------------

    def send(self, *frames: ch.Frame, at: float | None = None) -> Reply:
        """One DATA record holding ``frames``, delivered to the IUT at ``at`` (default: now)."""
        return self.send_raw(ch.encode_frames(frames), at=at)

    def send_raw(self, plaintext: bytes, *, at: float | None = None, counter: int | None = None) -> Reply:
        if at is not None:
            self.now = at
        if counter is None:
            record = self.link.data(plaintext)
        else:  # a chosen packet number; later records continue above it
            record = self.link.data(plaintext, counter=counter)
            self.link.next_counter = max(self.link.next_counter, counter + 1)
        return self.call("conn_receive", data=record)

    def call(self, cmd: str, **fields: Any) -> Reply:
        """A command at the current time; the IUT's datagrams are opened and parsed."""
        answer = self.iut.ok(cmd, now=self.now, **fields)
        return self._absorb(answer, out_of(answer))

    def timer(self, at: float) -> Reply:
        """Let the IUT run its timers at ``at``."""
        self.now = at
        return self.call("conn_timer")

    def open(self, service: str, *, kind: ch.ChannelKind = ch.ChannelKind.STREAM, window: int = 65536) -> int:
        """Send an OPEN for the next runner channel; returns its id (the answer is in ``last``)."""
        channel_id = self.next_id
        self.next_id += 2
        self.last = self.send(ch.Open(channel_id=channel_id, kind=kind, service=service, initial_max_data=window))
        return channel_id

    def open_echo(self, *, kind: ch.ChannelKind = ch.ChannelKind.STREAM, window: int = 65536) -> int:
        """Open a channel to ``echo`` and check it is accepted."""
        channel_id = self.open("echo", kind=kind, window=window)
        accepts = [f for f in self.last.frames(ch.Accept) if f.channel_id == channel_id]
        expect(len(accepts) == 1, f"no ACCEPT for channel {channel_id} to 'echo': {short(self.last.packets, 200)}")
        return channel_id

    def received_acks(self) -> list[ch.Ack]:
        """Every ACK frame the IUT sent so far."""
        return [f for p in self.received for f in p.frames if isinstance(f, ch.Ack)]

    def ack(self) -> Reply:
        """An ACK frame covering every packet the IUT sent so far."""
        return self.send(ack_of(p.pn for p in self.received))

    # -- receiving -------------------------------------------------------------------------

    def _absorb(self, answer: dict[str, Any], datagrams: list[bytes]) -> Reply:
        reply = Reply(answer, [])
        for datagram in datagrams:
            opened = self.link.open(datagram)
            if opened.ptype == PacketType.DATA:
                try:
                    frames = ch.parse_frames_untrusted(opened.plaintext)
                except ProtocolError as exc:
                    raise CaseFailed(f"the IUT's packet {opened.counter} does not parse: {exc}") from None
                packet = Packet(opened.counter, frames)
                reply.packets.append(packet)
                self.received.append(packet)
            elif opened.ptype == PacketType.CLOSE:
                expect(len(opened.plaintext) >= 2, f"CLOSE record too short: {opened.plaintext.hex()}")
                reply.close = int.from_bytes(opened.plaintext[:2], "big")
            else:
                expect(opened.ptype == PacketType.KEEPALIVE, f"unexpected record type {opened.ptype:#x}")
        return reply

    def stream_bytes(self, channel_id: int) -> tuple[bytes, int | None]:
        """The bytes the IUT sent on ``channel_id`` so far, in order, and its final size if a FIN came."""
        chunks: dict[int, bytes] = {}
        end: int | None = None
        for packet in self.received:
            for f in packet.frames:
                if isinstance(f, ch.Stream) and f.channel_id == channel_id:
                    chunks[f.offset] = f.data
                    if f.fin:
                        end = f.offset + len(f.data)
        data = bytearray()
        for offset in sorted(chunks):
            piece = chunks[offset]
            expect(offset <= len(data), f"a hole before offset {offset} in the IUT's stream {channel_id}")
            data[offset : offset + len(piece)] = piece
        return bytes(data), end


def ack_of(packet_numbers: Iterable[int], delay: int = 0) -> ch.Ack:
    """An ACK frame for exactly ``packet_numbers`` (RFC 9000 §19.3.1 ranges)."""
    pns = sorted(set(packet_numbers), reverse=True)
    expect(bool(pns), "internal: nothing to acknowledge")
    ranges: list[list[int]] = []  # [high, low], highest first
    for pn in pns:
        if ranges and pn == ranges[-1][1] - 1:
            ranges[-1][1] = pn
        else:
            ranges.append([pn, pn])
    pairs = tuple((ranges[i - 1][1] - ranges[i][0] - 2, ranges[i][0] - ranges[i][1]) for i in range(1, len(ranges)))
    return ch.Ack(largest=ranges[0][0], ack_delay=delay, first_range=ranges[0][0] - ranges[0][1], ack_ranges=pairs)


def acked(frame: ch.Ack) -> set[int]:
    """The packet numbers an ACK frame covers."""
    high = frame.largest
    low = high - frame.first_range
    out = set(range(low, high + 1))
    for gap, length in frame.ack_ranges:
        high = low - gap - 2
        low = high - length
        out |= set(range(low, high + 1))
    return out


def expect_close(reply: Reply, code: ErrorCode, what: str) -> None:
    """The IUT closed the session with a CLOSE record carrying ``code``."""
    expect(
        reply.close is not None,
        f"{what}: expected a CLOSE record with {code.name}, got packets {short(reply.packets, 200)}",
    )
    got = ErrorCode.from_wire(reply.close or 0).name if reply.close in set(ErrorCode) else f"{reply.close:#x}"
    expect_eq(got, code.name, f"{what}: the CLOSE record's code")


def expect_open(reply: Reply, what: str) -> None:
    if reply.close is not None:
        raise CaseFailed(f"{what}: the IUT closed the session with code {reply.close:#x}")


def payload(n: int, seed: int = 1) -> bytes:
    return bytes((seed * 31 + i * 7) % 251 for i in range(n))


# -- opening channels (channels.md §2) -----------------------------------------------------


@case(
    "ch/open/1",
    section=OPEN,
    title="an OPEN to an unknown service is refused with SERVICE_UNKNOWN",
    requirements=(
        "FRA-4.6.1",
        "CH-2.2.2",
        "CH-2.2.4",
        "CH-3.4.3",
        "ERR-1.1",
        "ERR-1.25",
        "ERR-3.4",
        "CONF-3.7.3",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = peer.open("no-such-service")
    refusals = peer.last.frames(ch.Refuse)
    expect(len(refusals) == 1, f"expected one REFUSE, got {short(peer.last.packets, 200)}")
    expect_eq(refusals[0].channel_id, channel_id, "REFUSE channel id")
    expect_eq(refusals[0].code, int(ErrorCode.SERVICE_UNKNOWN), "REFUSE code (SERVICE_UNKNOWN)")
    expect(not peer.last.frames(ch.Accept), "a refused channel was also accepted")
    expect_open(peer.last, "a refusal is not a connection error")
    peer.open_echo()  # the connection still works
    return None


@case(
    "ch/open/2",
    section=OPEN,
    title="an OPEN to a listed service gets an ACCEPT with the IUT's window",
    requirements=(
        "SES-1.5",
        "FRA-4.5.1",
        "CH-2.2.2",
        "CH-2.2.3",
        "CH-2.2.13",
        "CONF-3.7.1",
        "CONF-3.7.2",
        "CONF-3.7.3",
        "CONF-3.7.7",
        "CONF-3.7.19",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, channel_window=5000)
    channel_id = peer.open_echo()
    accept = next(f for f in peer.last.frames(ch.Accept) if f.channel_id == channel_id)
    expect_eq(accept.initial_max_data, 5000, "ACCEPT initial_max_data (channel_config.channel_window)")
    requested = peer.last.events("channel_requested")
    expect(
        len(requested) == 1 and requested[0].get("service") == "echo", f"channel_requested event: {short(requested)}"
    )
    return None


@case(
    "ch/open/3",
    section=OPEN,
    title="the IUT's OPEN has its own parity; REFUSE and ACCEPT reach its application",
    requirements=(
        "FRA-3.5",
        "FRA-4.4.1",
        "FRA-4.6.1",
        "FRA-6.1",
        "FRA-6.2",
        "CH-2.1.1",
        "CH-2.1.2",
        "CH-2.2.1",
        "CH-2.2.5",
        "CH-2.4.2",
        "CH-3.4.1",
        "ERR-1.25",
        "CONF-3.7.6",
        "CONF-3.7.8",
        "CONF-3.7.19",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    first = peer.call("conn_open", service="chat", kind="stream")
    second = peer.call("conn_open", service="voice", kind="message")
    opens = first.frames(ch.Open) + second.frames(ch.Open)
    expect_eq(
        [(o.channel_id, o.kind, o.service) for o in opens],
        [(1, ch.ChannelKind.STREAM, "chat"), (3, ch.ChannelKind.MESSAGE, "voice")],
        "the IUT's OPEN frames (responder: odd ids, in order)",
    )
    expect_eq(first.answer.get("channel_id"), 1, "conn_open channel_id")
    reply = peer.send(
        ch.Refuse(channel_id=1, code=int(ErrorCode.SERVICE_UNKNOWN), reason="none"),
        ch.Accept(channel_id=3, initial_max_data=1000),
    )
    refused = reply.events("channel_refused")
    expect(
        len(refused) == 1 and refused[0].get("channel_id") == 1 and refused[0].get("code") == "SERVICE_UNKNOWN",
        f"channel_refused event for channel 1 with SERVICE_UNKNOWN, got {short(reply.answer.get('events'))}",
    )
    opened = reply.events("channel_opened")
    expect([o.get("channel_id") for o in opened] == [3], f"channel_opened for 3, got {short(opened)}")
    return None


@case(
    "ch/open/4",
    section="channels.md §2.1",
    title="as initiator the IUT opens even ids; an OPEN of an even id is PROTOCOL_VIOLATION",
    requirements=(
        "FRA-6.1",
        "CH-2.1.1",
        "CH-2.2.9",
        "CH-11.1",
        "ERR-1.29",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, role="initiator")
    reply = peer.call("conn_open", service="chat", kind="stream")
    expect_eq([o.channel_id for o in reply.frames(ch.Open)], [0], "the initiator IUT's first channel id")
    reply = peer.send(ch.Open(channel_id=1, kind=ch.ChannelKind.STREAM, service="echo", initial_max_data=100))
    expect_eq([a.channel_id for a in reply.frames(ch.Accept)], [1], "ACCEPT of the runner's odd channel")
    reply = peer.send(ch.Open(channel_id=2, kind=ch.ChannelKind.STREAM, service="echo", initial_max_data=100))
    expect_close(reply, ErrorCode.PROTOCOL_VIOLATION, "an OPEN of an even id to the initiator")
    return None


@case(
    "ch/limit/1",
    section=LIMIT,
    title="the IUT advertises MAX_CHANNELS and never accepts a channel beyond it",
    requirements=(
        "FRA-4.15.1",
        "CH-2.4.4",
        "ERR-1.23",
        "CONF-3.7.2",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, max_channels=2)
    limits = peer.first.frames(ch.MaxChannels)
    expect(bool(limits), f"no MAX_CHANNELS in the IUT's first packets: {short(peer.first.packets, 200)}")
    expect_eq(limits[-1].maximum, 2, "MAX_CHANNELS (channel_config.max_channels)")
    peer.open_echo()
    peer.open_echo()
    channel_id = peer.open("echo")
    reply = peer.last
    expect(not reply.frames(ch.Accept), f"the IUT accepted channel {channel_id}, beyond MAX_CHANNELS 2")
    # Within the 100 a peer may open before it learns the limit (§2.4) the IUT may refuse the channel
    # instead of closing the connection; either way the code is CHANNEL_LIMIT.
    if reply.close is not None:
        expect_close(reply, ErrorCode.CHANNEL_LIMIT, "a third channel with MAX_CHANNELS 2")
        return "closed the connection"
    refusals = [f for f in reply.frames(ch.Refuse) if f.channel_id == channel_id]
    expect(len(refusals) == 1, f"neither a REFUSE nor a CLOSE for channel {channel_id}: {short(reply.packets, 200)}")
    expect_eq(refusals[0].code, int(ErrorCode.CHANNEL_LIMIT), "REFUSE code (CHANNEL_LIMIT)")
    return "refused the channel"


@case(
    "ch/limit/2",
    section=LIMIT,
    title="an OPEN beyond MAX_CHANNELS and the initial 100 closes with CHANNEL_LIMIT",
    requirements=(
        "CH-2.2.11",
        "CH-2.4.8",
        "CH-11.1",
        "ERR-1.23",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, max_channels=2)
    peer.open_echo()
    reply = peer.send(ch.Open(channel_id=200, kind=ch.ChannelKind.STREAM, service="echo", initial_max_data=100))
    expect(not reply.frames(ch.Accept), "the IUT accepted channel 200 (index 100), beyond MAX_CHANNELS 2")
    expect_close(reply, ErrorCode.CHANNEL_LIMIT, "an OPEN of index 100 with MAX_CHANNELS 2")
    return None


# -- data ---------------------------------------------------------------------------------------


@case(
    "ch/data/1",
    section="frames.md §4.7",
    title="stream data comes back from echo byte for byte, reassembled",
    requirements=(
        "SES-1.5",
        "FRA-1.3",
        "FRA-3.5",
        "FRA-4.7.1",
        "CH-1.1",
        "FLOW-2.1.1",
        "FLOW-2.1.2",
        "CONF-3.7.1",
        "CONF-3.7.4",
        "CONF-3.7.5",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = peer.open_echo()
    data = payload(3000)
    # Out of order: the middle, then the end, then the start; the echo must be in order.
    peer.send(ch.Stream(channel_id=channel_id, offset=1000, data=data[1000:2000]), at=0.1)
    peer.send(ch.Stream(channel_id=channel_id, offset=2000, data=data[2000:]), at=0.1)
    expect_eq(peer.stream_bytes(channel_id)[0], b"", "echo before the first bytes arrived")
    peer.send(ch.Stream(channel_id=channel_id, offset=0, data=data[:1000]), at=0.1)
    for _ in range(20):
        got, _end = peer.stream_bytes(channel_id)
        if len(got) >= len(data):
            break
        peer.ack()
        peer.timer(peer.now + 0.05)
    expect_eq(got, data, "the echoed stream")
    return None


@case(
    "ch/data/2",
    section=FINISH,
    title="a FIN on an echo stream ends the IUT's stream at the same size",
    requirements=(
        "FRA-4.7.1",
        "CH-3.2.1",
        "CH-3.2.2",
        "CH-3.2.7",
        "FLOW-1.1",
        "FLOW-1.2",
        "FLOW-2.1.1",
        "CONF-3.7.5",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = peer.open_echo()
    data = payload(100, seed=2)
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=0, data=data, fin=True), at=0.1)
    ended = reply.events("channel_ended")
    expect(len(ended) == 1 and ended[0].get("channel_id") == channel_id, f"channel_ended event, got {short(ended)}")
    got, end = peer.stream_bytes(channel_id)
    expect_eq(got, data, "the echoed stream")
    expect_eq(end, len(data), "the final size of the IUT's stream (STREAM_FIN)")
    reply = peer.ack()
    closed = reply.events("channel_closed")
    expect(
        len(closed) == 1 and closed[0].get("channel_id") == channel_id,
        f"once its FIN is acknowledged the channel is closed, got {short(reply.answer.get('events'))}",
    )
    return None


@case(
    "ch/data/3",
    section="frames.md §4.14",
    title="messages on an echo message channel come back whole",
    requirements=(
        "FRA-4.14.1",
        "FRA-4.14.4",
        "FRA-4.16.1",
        "CH-2.5.2",
        "CH-2.5.6",
        "CH-3.2.3",
        "CONF-3.7.5",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = peer.open_echo(kind=ch.ChannelKind.MESSAGE)
    messages = [b"", payload(1, seed=3), payload(700, seed=4)]
    reply = peer.send(
        *(ch.Message(channel_id=channel_id, message_id=i, data=m) for i, m in enumerate(messages)), at=0.1
    )
    got = [f.data for f in reply.frames(ch.Message) if f.channel_id == channel_id]
    expect_eq(got, messages, "the echoed messages, in order")
    seen = [bytes.fromhex(e["data"]) for e in reply.events("channel_message")]
    expect_eq(seen, messages, "channel_message events")
    reply = peer.send(ch.CloseChannel(channel_id=channel_id), at=0.2)
    expect_eq([f.channel_id for f in reply.frames(ch.CloseChannel)], [channel_id], "the echo side's CLOSE_CHANNEL")
    return None


@case(
    "ch/data/4",
    section="conformance.md §3.7",
    title="conn_send on a message channel takes the whole message",
    requirements=(
        "FRA-4.14.5",
        "CH-2.5.2",
        "CONF-3.7.9",
        "CONF-3.7.16",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    reply = peer.call("conn_open", service="chat", kind="message")
    channel_id = int(reply.answer["channel_id"])
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=65536), at=0.1)
    message = payload(1000, seed=5)
    reply = peer.call("conn_send", channel_id=channel_id, data=message, fin=False)
    expect_eq(reply.answer.get("accepted"), len(message), "accepted for one message (the whole message or nothing)")
    if not reply.frames(ch.Message):
        reply = peer.timer(peer.now + 0.05)
    got = [f.data for f in reply.frames(ch.Message) if f.channel_id == channel_id]
    expect_eq(got, [message], "the MESSAGE frames sent: one, whole, never split")
    return None


# -- acknowledgements (channels.md §4) -------------------------------------------------------


def _acked_by(peer: Peer, pn: int, sent_at: float) -> str:
    """Check that an ACK covering ``pn`` leaves no later than ``sent_at`` + max_ack_delay; returns when."""
    if any(pn in acked(a) for a in peer.received_acks()):
        return "at once"
    peer.timer(sent_at + MAX_ACK_DELAY)
    expect(
        any(pn in acked(a) for a in peer.received_acks()),
        f"no ACK of packet {pn} by max_ack_delay ({MAX_ACK_DELAY} s): {short(peer.received[-3:], 200)}",
    )
    return "on the ACK timer"


@case(
    "ch/ack/1",
    section=ACKS,
    title="a PING is acknowledged within max_ack_delay",
    requirements=(
        "FRA-1.1",
        "FRA-3.2",
        "FRA-4.2.1",
        "CH-4.5",
        "CH-4.18",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    pn = peer.link.next_counter
    peer.send(ch.Ping(), at=1.0)
    return _acked_by(peer, pn, 1.0)


@case(
    "ch/ack/2",
    section=ACKS,
    title="ACK ranges report exactly the packets received, gaps included",
    requirements=(
        "SES-5.3",
        "FRA-1.1",
        "FRA-1.2",
        "FRA-4.3.1",
        "CH-4.1",
        "CH-4.7",
        "CH-5.3.2",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    base = peer.link.next_counter
    sent = [base, base + 1, base + 3, base + 4, base + 7]
    for i, counter in enumerate(sent):
        peer.send_raw(ch.encode_frame(ch.Ping()), at=1.0 + i * 0.001, counter=counter)
    _acked_by(peer, sent[-1], peer.now)
    latest = max(peer.received_acks(), key=lambda a: (a.largest, len(acked(a))))
    expect_eq(sorted(acked(latest) & set(range(base, base + 8))), sent, "packet numbers in the latest ACK")
    return None


@case(
    "ch/ack/3",
    section=ACKS,
    title="a packet of PADDING only is not acknowledged on its own",
    requirements=(
        "FRA-3.3",
        "CH-4.6",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    reply = peer.send(ch.Padding(length=20), at=1.0)
    expect(not reply.packets, f"the IUT answered a PADDING-only packet with {short(reply.packets, 200)}")
    reply = peer.timer(1.5)
    expect(not reply.packets, f"the IUT acknowledged a PADDING-only packet: {short(reply.packets, 200)}")
    return None


@case(
    "ch/ack/4",
    section=ACKS,
    title="stream data is acknowledged within max_ack_delay",
    requirements=(
        "FRA-3.2",
        "CH-4.5",
        "CH-4.18",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = peer.open("sink")
    peer.ack()  # the ACCEPT: no probe timeout may bring the ACK by chance
    pn = peer.link.next_counter
    peer.send(ch.Stream(channel_id=channel_id, offset=0, data=b"hello"), at=2.0)
    return _acked_by(peer, pn, 2.0)


@case(
    "ch/ack/5",
    section=ACKS,
    title="ACK-only packets are not acknowledged on their own",
    requirements=(
        "FRA-3.3",
        "CH-4.6",
        "CH-4.17",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    peer.send(ch.Ping(), at=1.0)
    _acked_by(peer, peer.link.next_counter - 1, 1.0)  # the IUT has sent packets to acknowledge
    for i in range(10):  # more than a receiver counts before an ACK may ride along with data (channels.md §4)
        reply = peer.send(ack_of(p.pn for p in peer.received), at=1.1 + i * 0.001)
        expect(not reply.packets, f"the IUT answered an ACK-only packet with {short(reply.packets, 200)}")
    reply = peer.timer(1.5)
    expect(not reply.packets, f"the IUT acknowledged ACK-only packets on their own: {short(reply.packets, 200)}")
    return None


# -- flow control (flow.md §3) -------------------------------------------------------------------


@case(
    "ch/flow/1",
    section="flow.md §3.1",
    title="STREAM data beyond the channel window closes with FLOW_CONTROL_ERROR",
    requirements=(
        "FLOW-3.1.1",
        "CH-2.7.4",
        "FLOW-6.1",
        "ERR-1.20",
        "CONF-3.7.2",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, channel_window=1000)
    channel_id = peer.open("sink")
    accept = [f for f in peer.last.frames(ch.Accept) if f.channel_id == channel_id]
    expect(bool(accept) and accept[0].initial_max_data == 1000, f"ACCEPT with window 1000, got {short(accept)}")
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=0, data=payload(1000)), at=0.1)
    expect_open(reply, "data up to the window is allowed")
    # The sink reads at once, so the IUT may have raised the limit (MAX_CHANNEL_DATA); and whatever it
    # advertised, it takes EARLY_WINDOW bytes of a channel the peer opened (channels.md CH-2.7.4):
    # one byte past both.
    raised = [f.maximum for f in _all_frames(peer, ch.MaxChannelData) if f.channel_id == channel_id]
    limit = max([1000, EARLY_WINDOW, *raised])
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=limit, data=b"!"), at=0.2)
    expect_close(reply, ErrorCode.FLOW_CONTROL_ERROR, "one byte beyond the channel window")
    closed = reply.events("connection_closed")
    expect(bool(closed) and closed[0].get("code") == "FLOW_CONTROL_ERROR", f"connection_closed, got {short(closed)}")
    return None


@case(
    "ch/flow/2",
    section="flow.md §3",
    title="data beyond the 1 MiB connection credit closes with FLOW_CONTROL_ERROR",
    requirements=(
        "FRA-4.10.1",
        "FLOW-3.1.1",
        "FLOW-3.2.4",
        "ERR-1.20",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, channel_window=4 * 1024 * 1024)
    expect(not peer.first.frames(ch.MaxData), "the IUT raised the connection limit with the default config")
    channel_id = peer.open("sink", window=4096)
    # The channel allows 4 MiB, the connection only the initial 1 MiB.
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=1024 * 1024 - 1, data=b"x"), at=0.1)
    expect_open(reply, "a byte ending exactly at the connection limit")
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=1024 * 1024, data=b"y"), at=0.1)
    expect_close(reply, ErrorCode.FLOW_CONTROL_ERROR, "one byte beyond the connection limit")
    return None


@case(
    "ch/flow/3",
    section="flow.md §3.2",
    title="the IUT sends no more than the window the runner advertised",
    requirements=(
        "FRA-4.4.5",
        "FRA-4.11.1",
        "CH-2.2.7",
        "CH-5.2.3",
        "FLOW-2.2.4",
        "FLOW-3.2.1",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = peer.open_echo(window=100)
    data = payload(1000, seed=5)
    peer.send(ch.Stream(channel_id=channel_id, offset=0, data=data), at=0.1)
    for _ in range(3):
        peer.ack()
        peer.timer(peer.now + 0.2)
    got, _end = peer.stream_bytes(channel_id)
    expect_eq(got, data[:100], "the IUT's stream bytes with a window of 100")
    highest = max(f.offset + len(f.data) for f in _stream_frames(peer, channel_id))
    expect(highest <= 100, f"the IUT sent up to offset {highest} with a window of 100")
    peer.send(ch.MaxChannelData(channel_id=channel_id, maximum=1000), at=peer.now + 0.01)
    for _ in range(10):
        got, _end = peer.stream_bytes(channel_id)
        if len(got) >= len(data):
            break
        peer.ack()
        peer.timer(peer.now + 0.05)
    expect_eq(got, data, "the echoed stream after MAX_CHANNEL_DATA 1000")
    return None


def _stream_frames(peer: Peer, channel_id: int) -> list[ch.Stream]:
    return [f for f in _all_frames(peer, ch.Stream) if f.channel_id == channel_id]


def _all_frames(peer: Peer, cls: type[F]) -> list[F]:
    """Every frame of type ``cls`` the IUT sent so far."""
    return [f for p in peer.received for f in p.frames if isinstance(f, cls)]


# -- reset (channels.md §3) -----------------------------------------------------------------------


@case(
    "ch/reset/1",
    section=RESET,
    title="a RESET from the peer drops the channel; later data for it is ignored",
    requirements=(
        "CH-2.6.1",
        "CH-3.1.2",
        "CH-3.3.4",
        "CH-3.4.3",
        "CH-7.2.4",
        "FLOW-2.1.6",
        "ERR-3.4",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = peer.open("sink")
    peer.send(ch.Stream(channel_id=channel_id, offset=0, data=b"abc"), at=0.1)
    reply = peer.send(ch.Reset(channel_id=channel_id, code=int(ErrorCode.APPLICATION_CLOSE), final_size=10), at=0.2)
    resets = reply.events("channel_reset")
    expect(
        len(resets) == 1 and resets[0].get("code") == "APPLICATION_CLOSE" and resets[0].get("by_peer") is True,
        f"a channel_reset event with APPLICATION_CLOSE by the peer, got {short(reply.answer.get('events'))}",
    )
    expect_open(reply, "a RESET")
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=3, data=b"defg"), at=0.3)
    expect_open(reply, "data for a reset channel")
    expect(not reply.events("channel_data"), f"data of a reset channel was delivered: {short(reply.answer)}")
    expect(not reply.frames(ch.Reset), "the IUT answered late data with a RESET")
    peer.open_echo()  # the connection still works
    return None


@case(
    "ch/reset/2",
    section=RESET,
    title="the IUT's reset sends RESET with its code and final size",
    requirements=(
        "FRA-4.8.1",
        "FRA-4.8.3",
        "CH-3.3.1",
        "FLOW-1.1",
        "FLOW-3.3.3",
        "CONF-3.7.10",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = peer.open_echo()
    peer.send(ch.Stream(channel_id=channel_id, offset=0, data=payload(37)), at=0.1)
    sent = len(peer.stream_bytes(channel_id)[0])
    expect_eq(sent, 37, "bytes echoed before the reset")
    reply = peer.call("conn_reset", channel_id=channel_id, code="APPLICATION_CLOSE")
    resets = [f for f in reply.frames(ch.Reset) if f.channel_id == channel_id]
    expect(len(resets) == 1, f"expected one RESET for channel {channel_id}, got {short(reply.packets, 200)}")
    expect_eq(resets[0].code, int(ErrorCode.APPLICATION_CLOSE), "RESET code")
    expect_eq(resets[0].final_size, 37, "RESET final_size (the bytes the IUT sent)")
    return None


@case(
    "ch/reset/3",
    section=RESET,
    title="STOP_SENDING makes the IUT reset the channel with that code",
    requirements=(
        "FRA-4.9.1",
        "FRA-4.9.2",
        "CH-3.3.1",
        "CH-3.3.11",
        "CH-3.4.2",
        "ERR-1.1",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = peer.open_echo()
    peer.send(ch.Stream(channel_id=channel_id, offset=0, data=payload(10)), at=0.1)
    reply = peer.send(ch.StopSending(channel_id=channel_id, code=int(ErrorCode.CHANNEL_REFUSED)), at=0.2)
    resets = [f for f in reply.frames(ch.Reset) if f.channel_id == channel_id]
    expect(len(resets) == 1, f"expected a RESET answering STOP_SENDING, got {short(reply.packets, 200)}")
    expect_eq(resets[0].code, int(ErrorCode.CHANNEL_REFUSED), "RESET code (the STOP_SENDING code)")
    expect_eq(resets[0].final_size, 10, "RESET final_size")
    return None


@case(
    "ch/reset/4",
    section=RESET,
    title="an application code in RESET reaches the application verbatim",
    requirements=(
        "CH-3.4.1",
        "CH-3.4.3",
        "ERR-3.4",
        "ERR-3.5",
        "ERR-3.6",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = peer.open("sink")
    peer.send(ch.Stream(channel_id=channel_id, offset=0, data=b"abc"), at=0.1)
    code = 0x1_0000_0001  # errors.md §3: 0x100 and above belong to the application
    reply = peer.send(ch.Reset(channel_id=channel_id, code=code, final_size=3), at=0.2)
    resets = reply.events("channel_reset")
    expect(
        len(resets) == 1
        and resets[0].get("code") == "APPLICATION_CLOSE"
        and resets[0].get("application_code") == code
        and resets[0].get("by_peer") is True,
        f"a channel_reset event with APPLICATION_CLOSE and application_code {code}, got {short(reply.answer)}",
    )
    expect_open(reply, "a RESET with an application code")
    return None


@case(
    "ch/reset/5",
    section=RESET,
    title="STOP_SENDING with an application code is answered by RESET with that code",
    requirements=(
        "FRA-4.9.2",
        "CH-3.3.11",
        "CH-3.4.2",
        "CH-3.4.3",
        "ERR-3.5",
        "ERR-3.7",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = peer.open_echo()
    peer.send(ch.Stream(channel_id=channel_id, offset=0, data=payload(10)), at=0.1)
    reply = peer.send(ch.StopSending(channel_id=channel_id, code=0x4242), at=0.2)
    resets = [f for f in reply.frames(ch.Reset) if f.channel_id == channel_id]
    expect(len(resets) == 1, f"expected a RESET answering STOP_SENDING, got {short(reply.packets, 200)}")
    expect_eq(resets[0].code, 0x4242, "RESET code (the application code of the STOP_SENDING)")
    expect_open(reply, "a STOP_SENDING with an application code")
    return None


# -- errors (channels.md §3, frames.md §5, §6) ---------------------------------------------------------


@case(
    "ch/err/1",
    section=MISSING,
    title="STREAM for a channel the peer never opened closes with CHANNEL_STATE_ERROR",
    requirements=(
        "CH-2.6.2",
        "CH-11.1",
        "ERR-1.24",
        "ERR-2.14",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    reply = peer.send(ch.Stream(channel_id=4, offset=0, data=b"hi"), at=0.1)
    expect_close(reply, ErrorCode.CHANNEL_STATE_ERROR, "STREAM on channel 4 without an OPEN")
    return None


@case(
    "ch/err/2",
    section=MISSING,
    title="STREAM for an IUT channel id not yet used closes with CHANNEL_STATE_ERROR",
    requirements=(
        "CH-2.6.2",
        "CH-11.1",
        "ERR-1.24",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    reply = peer.send(ch.Stream(channel_id=peer.iut_parity + 8, offset=0, data=b"hi"), at=0.1)
    expect_close(reply, ErrorCode.CHANNEL_STATE_ERROR, "STREAM on an IUT channel id never opened")
    return None


@case(
    "ch/err/3",
    section=OPEN,
    title="an OPEN with the IUT's own parity is PROTOCOL_VIOLATION",
    requirements=(
        "CH-2.2.9",
        "CH-11.1",
        "ERR-1.29",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    bad = ch.Open(channel_id=peer.iut_parity, kind=ch.ChannelKind.STREAM, service="echo", initial_max_data=100)
    reply = peer.send(bad, at=0.1)
    expect(not reply.frames(ch.Accept), "the IUT accepted an OPEN of its own parity")
    expect_close(reply, ErrorCode.PROTOCOL_VIOLATION, "OPEN of an id of the IUT's parity")
    return None


@case(
    "ch/err/4",
    section="frames.md §5",
    title="an unknown frame type closes with PROTOCOL_VIOLATION",
    requirements=(
        "FRA-3.4",
        "FRA-5.2",
        "CH-11.1",
        "CH-11.2",
        "ERR-1.29",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    reply = peer.send_raw(ch.encode_frame(ch.Ping()) + bytes([0x3E]), at=0.1)
    expect_close(reply, ErrorCode.PROTOCOL_VIOLATION, "frame type 0x3e")
    return None


@case(
    "ch/err/5",
    section="frames.md §5",
    title="a truncated frame closes with MALFORMED_MESSAGE, none of it acted on",
    requirements=(
        "FRA-1.4",
        "FRA-4.7.3",
        "FRA-5.1",
        "FRA-5.2",
        "CH-11.1",
        "CH-11.2",
        "ERR-1.29",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    opening = ch.encode_frame(ch.Open(channel_id=0, kind=ch.ChannelKind.STREAM, service="echo", initial_max_data=9))
    reply = peer.send_raw(opening + ch.encode_frame(ch.Stream(channel_id=0, offset=0, data=b"abcdef"))[:-2], at=0.1)
    expect(not reply.frames(ch.Accept), "the IUT acted on an OPEN in a packet that does not parse")
    expect(not reply.events("channel_requested"), "the IUT's application saw an OPEN from a broken packet")
    expect_close(reply, ErrorCode.MALFORMED_MESSAGE, "STREAM data running past the packet")
    return None


# -- liveness -------------------------------------------------------------------------------------------


@case(
    "ch/live/1",
    section="channels.md §9.3",
    title="a keepalive PING leaves after keepalive_interval of silence (the IUT controlling: the initiator)",
    requirements=(
        "CH-9.3.1",
        "CH-9.3.4",
        "REC-4.3.6",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, role="initiator", keepalive_interval=2.0)
    reply = peer.timer(1.9)
    expect(not reply.packets, f"the IUT sent before its keepalive interval: {short(reply.packets, 200)}")
    reply = peer.timer(2.0)
    expect(bool(reply.frames(ch.Ping)), f"no PING at the keepalive interval: {short(reply.packets, 200)}")
    return None


@case(
    "ch/live/2",
    section="channels.md §9.2",
    title="silence for idle_timeout closes the session with IDLE_TIMEOUT",
    requirements=(
        "CH-9.2.1",
        "ERR-1.22",
        "ERR-2.14",
        "CONF-2.8",
        "CONF-3.7.13",
        "CONF-3.7.19",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, idle_timeout=5.0)
    peer.send(ch.Ping(), at=1.0)
    reply = peer.timer(5.9)
    expect_open(reply, "before the idle timeout (5 s after the last packet)")
    reply = peer.timer(6.0)
    expect_close(reply, ErrorCode.IDLE_TIMEOUT, "after idle_timeout without a packet")
    closed = reply.events("connection_closed")
    expect(bool(closed) and closed[0].get("code") == "IDLE_TIMEOUT", f"connection_closed, got {short(closed)}")
    return None


@case(
    "ch/close/1",
    section="channels.md §9.4",
    title="a graceful close delivers every byte, then CLOSE with NO_ERROR",
    requirements=(
        "CH-3.2.1",
        "CH-9.4.2",
        "CH-9.4.3",
        "FLOW-1.1",
        "FLOW-1.2",
        "ERR-1.2",
        "ERR-2.14",
        "CONF-3.7.12",
    ),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    reply = peer.call("conn_open", service="files", kind="stream")
    channel_id = int(reply.answer["channel_id"])
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=65536), at=0.1)
    data = payload(5000, seed=9)
    peer.call("conn_send", channel_id=channel_id, data=data, fin=False)
    reply = peer.call("conn_close", code="NO_ERROR")
    expect(reply.close is None, "the IUT closed before its data was acknowledged")
    acked_pns: set[int] = set()
    for _ in range(20):
        acked_pns |= {p.pn for p in peer.received}
        reply = peer.ack()
        if reply.close is None:
            reply = peer.timer(peer.now + 0.05)
        if reply.close is not None:
            break
    got, end = peer.stream_bytes(channel_id)
    expect_eq(got, data, "the bytes delivered before the close")
    expect_eq(end, len(data), "the stream's FIN at its final size")
    carrying = {p.pn for p in peer.received if any(isinstance(f, ch.Stream) for f in p.frames)}
    expect(carrying <= acked_pns, f"CLOSE before packets {sorted(carrying - acked_pns)} were acknowledged")
    expect_close(reply, ErrorCode.NO_ERROR, "a graceful close")
    return None
