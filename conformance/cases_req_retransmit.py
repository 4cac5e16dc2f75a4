"""Cases for rules of channels.md, flow.md, recovery.md that need the impaired network (conformance.md §3.8, §6).

What the IUT sends again after a loss (channels.md §5, §6, flow.md §2): which frames come
again and with what, which must not, and in what order.  Each case runs through
``impaired.ImpairedPeer`` with chosen drops: ``DropPeer`` adds drops chosen by what a packet
holds (the first packet with a RESET, every packet with a given message), so that a case
knows exactly what was lost.  The runner acknowledges what arrives; the IUT finds its losses
by the packet threshold (the runner acknowledges three later packets), the time threshold or
its probe timeout, whichever comes first: the cases check only what it sends once it has.
Nothing here depends on the congestion controller (recovery.md §5 allows several;
tests/conformance/test_req_retransmit.py runs the cases with the reference's BBR, NewReno
and CUBIC): where a case needs data to wait, it fills the initial window (12000 bytes, the
same for all three) and acknowledges nothing until the data waits.  None uses randomness.

Three cases need optional fields of spec/conformance.md §3.7 (``retransmissions`` of
``conn_open`` and ``conn_send`` for ``ch/retx/2`` and ``/3``, ``message_queue`` of
``channel_config`` for ``/4``); an IUT without them makes those cases unsupported.  Ids: ``ch/retx/``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from p2pos.proto.channels import frames as ch

from .cases_channels import Reply, ack_of, acked
from .checks import CaseFailed, Unsupported, expect, short
from .impaired import ImpairedPeer, Sent
from .iut import Iut
from .registry import case

LOSS, BUDGET, BUILD, FAIR, PTO = (
    "channels.md §6",
    "channels.md §6.1",
    "channels.md §5.1",
    "channels.md §5.2",
    "channels.md §5.4",
)
#: The service the IUT opens its channels to; the runner accepts them itself.
FILES = "files"
#: How long (virtual time) a case lets the IUT's timers run after the losses.
SETTLE = 2.0


def payload(n: int, seed: int = 1) -> bytes:
    return bytes((seed * 31 + i * 7) % 251 for i in range(n))


class DropPeer(ImpairedPeer):
    """An ``ImpairedPeer`` that also drops the IUT's DATA packets ``drop`` picks (by what they hold).

    ``drop`` may change during a case; every event the IUT reports is kept in ``events``.
    """

    def __init__(self, iut: Iut, *, drop: Callable[[Sent], bool] | None = None, **kwargs: Any) -> None:
        self.drop = drop
        self.events: list[dict[str, Any]] = []
        self.chosen: list[Sent] = []
        #: The runner's ACKs: how many of the IUT's packets were in ``sent`` when each left, and what it acknowledged.
        self.acks_sent: list[tuple[int, set[int]]] = []
        super().__init__(iut, **kwargs)

    def send(self, *frames: ch.Frame, at: float | None = None) -> Reply:
        for frame in frames:
            if isinstance(frame, ch.Ack):
                self.acks_sent.append((len(self.sent), acked(frame)))
        return super().send(*frames, at=at)

    def acked_at(self, sent: Sent) -> int | None:
        """The index in ``sent`` from which the IUT's packets left after the runner acknowledged ``sent``."""
        return next((index for index, pns in self.acks_sent if sent.packet.pn in pns), None)

    def call(self, cmd: str, **fields: Any) -> Reply:
        reply = super().call(cmd, **fields)
        events = reply.answer.get("events")
        if isinstance(events, list):
            self.events.extend(e for e in events if isinstance(e, dict))
        return reply

    def _keep(self, datagram: bytes) -> bool:
        count = len(self.sent)
        keep = super()._keep(datagram)
        if keep and len(self.sent) > count and self.drop is not None and self.drop(self.sent[-1]):
            sent = self.sent[-1]
            sent.delivered = False
            self.lost.append(sent)
            self.chosen.append(sent)
            return False
        return keep

    def describe(self) -> str:
        chosen = f"dropped the IUT's packets {[s.packet.pn for s in self.chosen]}" if self.chosen else ""
        return "; ".join(p for p in (super().describe(), chosen) if p and p != "no impairment") or "no impairment"


def first(n: int, test: Callable[[ch.Frame], bool]) -> Callable[[Sent], bool]:
    """A ``drop`` that takes the first ``n`` packets holding a frame ``test`` accepts."""
    count = 0

    def drop(sent: Sent) -> bool:
        nonlocal count
        if count < n and any(test(f) for f in sent.packet.frames):
            count += 1
            return True
        return False

    return drop


def _peer(iut: Iut, drop: Callable[[Sent], bool] | None = None, **config: Any) -> DropPeer:
    return DropPeer(iut, drop=drop, idle_timeout=120.0, **config)


def _optional(peer: DropPeer, cmd: str, fields: dict[str, Any], optional: bool) -> Reply:
    """``cmd`` with ``fields``; with ``optional`` (an optional field among them), an error answer is unsupported."""
    try:
        return peer.call(cmd, **fields)
    except CaseFailed as exc:
        if optional and f"{cmd!r} failed" in str(exc):
            raise Unsupported(f"the IUT refused {cmd} with retransmissions (spec/conformance.md §3.7): {exc}") from None
        raise


def open_channel(peer: DropPeer, kind: str, *, window: int = 1 << 20, retransmissions: int | None = None) -> int:
    """The IUT opens a channel to ``files``; the runner accepts it (``window`` of credit) and acknowledges."""
    fields: dict[str, Any] = {"service": FILES, "kind": kind}
    if retransmissions is not None:
        fields["retransmissions"] = retransmissions
    reply = _optional(peer, "conn_open", fields, retransmissions is not None)
    if retransmissions is not None and reply.answer.get("retransmissions") != retransmissions:
        raise Unsupported("the IUT's conn_open does not take retransmissions (spec/conformance.md §3.7)")
    channel_id = int(reply.answer["channel_id"])
    reply = peer.send(ch.Accept(channel_id=channel_id, initial_max_data=window), at=peer.now + 0.01)
    expect(reply.close is None, f"the IUT closed the session on the ACCEPT of its channel: {reply.close}")
    peer.ack_all()
    peer.now += 0.01
    return channel_id


def send_message(peer: DropPeer, channel_id: int, data: bytes, *, budget: int | None = None) -> Reply:
    """``conn_send`` of one message, with its own retransmission budget if ``budget`` is given."""
    fields: dict[str, Any] = {"channel_id": channel_id, "data": data, "fin": False}
    if budget is not None:
        fields["retransmissions"] = budget
    reply = _optional(peer, "conn_send", fields, budget is not None)
    if budget is not None and reply.answer.get("retransmissions") != budget:
        raise Unsupported("the IUT's conn_send does not take retransmissions (spec/conformance.md §3.7)")
    return reply


def messages(peer: DropPeer, channel_id: int, since: int = 0) -> list[tuple[Sent, ch.Message]]:
    """The MESSAGE frames the IUT sent on ``channel_id`` (delivered or not), in order."""
    return [
        (s, f)
        for s in peer.sent[since:]
        for f in s.packet.frames
        if isinstance(f, ch.Message) and f.channel_id == channel_id
    ]


def copies(peer: DropPeer, channel_id: int, data: bytes) -> list[tuple[Sent, ch.Message]]:
    return [(s, m) for s, m in messages(peer, channel_id) if m.data == data]


def fill_window(peer: DropPeer, stream: int) -> None:
    """The IUT sends more stream data than its initial window takes; the runner acknowledges none of it yet."""
    peer.call("conn_send", channel_id=stream, data=payload(40_000, seed=41), fin=False)


def _not_closed(reply: Reply, what: str) -> None:
    expect(reply.close is None, f"the IUT closed the session {what}: {reply.close}")


# -- messages (channels.md §6, §6.1, flow.md §2.3) -------------------------------------------------------


@case(
    "ch/retx/1",
    section=LOSS,
    title="a lost MESSAGE of retransmission budget 0 is never sent again",
    requirements=("CH-6.4", "FLOW-2.3.2"),
)
def _(iut: Iut) -> str | None:
    lost = b"budget 0: sent once"
    peer = _peer(iut, first(1, lambda f: isinstance(f, ch.Message) and f.data == lost))
    channel = open_channel(peer, "message")  # the channel's default budget: 0
    send_message(peer, channel, lost)
    # Three more messages, one packet each, acknowledged: the packet threshold makes the first lost.
    for n in range(3):
        peer.now += 0.002
        send_message(peer, channel, payload(20, seed=n))
    peer.now += 0.01
    _not_closed(peer.ack_all(), "on the ACK of the later messages")
    peer.run(peer.now + SETTLE)
    sent = copies(peer, channel, lost)
    expect(len(sent) >= 1, f"internal: the message was never sent: {short(messages(peer, channel), 200)}")
    message_id = sent[0][1].message_id
    again = [s.packet.pn for s, m in messages(peer, channel) if m.data == lost or m.message_id == message_id][1:]
    expect(
        not again,
        f"message {message_id} (retransmission budget 0) was lost in packet {sent[0][0].packet.pn} and sent again "
        f"in packets {again} ({peer.describe()})",
    )
    return f"message {message_id} lost in packet {sent[0][0].packet.pn}, not sent again in {SETTLE} s"


@case(
    "ch/retx/2",
    section=BUDGET,
    title="a message of budget n that is always lost is sent 1 + n times, with one message_id",
    requirements=(
        "CH-6.2",
        "CH-6.1.1",
        "FLOW-2.3.2",
        "CONF-3.7.22",
    ),
)
def _(iut: Iut) -> str | None:
    # Every packet holding a MESSAGE is lost; the IUT's PINGs (probes) get through.
    peer = _peer(iut, lambda s: any(isinstance(f, ch.Message) for f in s.packet.frames))
    channel = open_channel(peer, "message", retransmissions=1)
    details = []
    for data, budget, per_message in ((b"channel budget 1", 1, None), (b"message budget 2", 2, 2)):
        send_message(peer, channel, data, budget=per_message)
        peer.run(peer.now + 2 * SETTLE)
        sent = copies(peer, channel, data)
        pns = [s.packet.pn for s, _ in sent]
        source = "the channel's (conn_open)" if per_message is None else "its own (conn_send)"
        expect(
            len(sent) <= 1 + budget,
            f"a message of budget {budget} ({source}), always lost, was sent {len(sent)} times (packets {pns}): "
            f"more than 1 + {budget} ({peer.describe()})",
        )
        expect(
            len(sent) == 1 + budget,
            f"a message of budget {budget} ({source}), always lost, was sent {len(sent)} times (packets {pns}) "
            f"in {2 * SETTLE} s: its budget allows {1 + budget} (channels.md §6 table)",
        )
        ids = sorted({m.message_id for _, m in sent})
        expect(len(ids) == 1, f"the copies of one message carry message ids {ids}, not one (flow.md §2.3)")
        details.append(f"budget {budget}: sent {len(sent)} times as message {ids[0]}")
    return "; ".join(details)


@case(
    "ch/retx/3",
    section="flow.md §2.3",
    title="a lost message within its budget leaves before the new messages waiting behind it",
    requirements=(
        "CH-5.2.2",
        "FLOW-2.3.3",
        "CONF-3.7.22",
    ),
)
def _(iut: Iut) -> str | None:
    lost = b"lost once, budget 1"
    peer = _peer(iut, first(1, lambda f: isinstance(f, ch.Message) and f.data == lost))
    channel = open_channel(peer, "message", retransmissions=1)
    stream = open_channel(peer, "stream")
    send_message(peer, channel, lost)
    for n in range(3):  # one packet each: acknowledged below, they make the first lost
        peer.now += 0.002
        send_message(peer, channel, payload(20, seed=n))
    # The window fills with stream data; new messages wait behind it.
    peer.now += 0.002
    fill_window(peer, stream)
    new = [b"new message %d" % n for n in range(3)]
    for data in new:
        send_message(peer, channel, data)
    early = [s.packet.pn for s, m in messages(peer, channel) if m.data in new]
    expect(not early, f"internal: the new messages left at once (packets {early}): the window did not hold them")
    start = len(peer.sent)
    peer.now += 0.01
    _not_closed(peer.ack_all(), "on an ACK of everything but the lost message")
    peer.run(peer.now + SETTLE)
    order = [m.data for _, m in messages(peer, channel, start) if m.data == lost or m.data in new]
    expect(lost in order, f"the lost message (budget 1) was not sent again: {short(order, 200)} ({peer.describe()})")
    expect(
        order.index(lost) == 0,
        f"after the loss the message channel sent {short(order, 200)}: new messages before the lost one "
        f"({peer.describe()})",
    )
    return f"the lost message left again first, then {len(order) - 1} new ones"


@case(
    "ch/retx/4",
    section=BUDGET,
    title="with message_queue 1, a message queued behind a full window replaces the one waiting",
    requirements=("CH-6.1.2", "FLOW-2.3.1"),
)
def _(iut: Iut) -> str | None:
    try:
        peer = _peer(iut, message_queue=1)
    except CaseFailed as exc:
        if "conn_session" in str(exc):
            raise Unsupported(f"the IUT does not take channel_config message_queue: {exc}") from None
        raise
    channel = open_channel(peer, "message")
    stream = open_channel(peer, "stream")
    fill_window(peer, stream)
    older, newer = b"the older message", b"the newer message"
    send_message(peer, channel, older)
    send_message(peer, channel, newer)
    early = [s.packet.pn for s, _ in messages(peer, channel)]
    expect(not early, f"internal: the messages left at once (packets {early}): the window did not hold them")
    peer.now += 0.01
    _not_closed(peer.ack_all(), "on an ACK of the window")
    peer.run(peer.now + SETTLE)
    sent = [m.data for _, m in messages(peer, channel)]
    expect(
        older not in sent,
        f"with message_queue 1 the older message, waiting when the newer was queued, was sent anyway: {short(sent)}",
    )
    expect(newer in sent, f"the newer message was not sent: {short(sent)} (the oldest must be dropped, not it)")
    return "the older message dropped, the newer sent"


# -- stream data (channels.md §5.2, flow.md §2.2) ---------------------------------------------------------


@case(
    "ch/retx/5",
    section=FAIR,
    title="after losses on a stream, the lost ranges leave, lowest first, before any new byte",
    requirements=("CH-5.2.2", "FLOW-2.2.3"),
)
def _(iut: Iut) -> str | None:
    peer = DropPeer(iut, drop_data=(2, 4), idle_timeout=120.0)
    stream = open_channel(peer, "stream")
    fill_window(peer, stream)

    def chunks(sent: list[Sent]) -> list[ch.Stream]:
        return [f for s in sent for f in s.packet.frames if isinstance(f, ch.Stream) and f.channel_id == stream]

    lost = sorted((f.offset, f.offset + len(f.data)) for f in chunks(peer.lost))
    expect(len(lost) == 2, f"internal: the IUT sent fewer than 4 STREAM packets at once ({peer.describe()})")
    highest = max(f.offset + len(f.data) for f in chunks(peer.sent))
    start = len(peer.sent)
    peer.now += 0.01
    _not_closed(peer.ack_all(), "on an ACK of all but two packets")
    peer.run(peer.now + SETTLE)
    missing = list(lost)
    last = -1
    for frame in chunks(peer.sent[start:]):
        end = frame.offset + len(frame.data)
        if not missing:
            break
        expect(
            end <= highest,
            f"new bytes {max(frame.offset, highest)}..{end} left while lost ranges {missing} waited "
            f"({peer.describe()})",
        )
        for low, high in list(missing):
            if frame.offset <= low < end:
                expect(
                    low > last,
                    f"lost range {low}..{high} left after the higher lost range at {last} ({peer.describe()})",
                )
                last = low
                missing.remove((low, high))
                if end < high:
                    missing.append((end, high))
                missing.sort()
    expect(not missing, f"lost ranges {missing} were not sent again in {SETTLE} s ({peer.describe()})")
    return f"lost ranges {lost} sent again first, in order"


@case(
    "ch/retx/6",
    section=BUILD,
    title="a lost CHANNEL_BLOCKED is not sent again once the peer has raised the limit",
    requirements=("CH-5.1.3",),
)
def _(iut: Iut) -> str | None:
    peer = _peer(iut, first(1, lambda f: isinstance(f, ch.ChannelBlocked)))
    stream = open_channel(peer, "stream", window=1000)
    peer.run(peer.now + 0.05)  # the IUT's ACK of the ACCEPT leaves: nothing else waits
    peer.call("conn_send", channel_id=stream, data=payload(6000, seed=43), fin=False)
    peer.timer(peer.now + 0.001)  # anything queued for a later packet leaves
    if not peer.chosen:
        return "the IUT sent no CHANNEL_BLOCKED at its limit (channels.md §5.1 allows that): nothing to check"
    dropped = peer.chosen[0]
    # The runner raises the limit; the IUT sends the rest, and the runner acknowledges all of it
    # but the packet of the CHANNEL_BLOCKED, which the packet threshold then makes lost.
    peer.now += 0.01
    raised = len(peer.sent)
    _not_closed(peer.send(ch.MaxChannelData(channel_id=stream, maximum=1 << 20)), "on a MAX_CHANNEL_DATA")
    peer.now += 0.01
    _not_closed(peer.ack_all(), "on an ACK")
    peer.run(peer.now + SETTLE)
    again = [
        (s.packet.pn, f.limit)
        for s in peer.sent[raised:]
        for f in s.packet.frames
        if isinstance(f, ch.ChannelBlocked) and f.channel_id == stream
    ]
    expect(
        not again,
        f"CHANNEL_BLOCKED (packet, limit) {again} after the runner raised the limit from 1000 to {1 << 20}: the "
        f"lost one (packet {dropped.packet.pn}) was sent again though the IUT was no longer blocked",
    )
    data, _ = peer.stream_bytes(stream)
    expect(len(data) == 6000, f"internal: {len(data)} of the 6000 bytes arrived")
    return f"CHANNEL_BLOCKED in packet {dropped.packet.pn} lost; not sent again after the limit rose"


# -- probes (channels.md §5.4) ---------------------------------------------------------------------


@case(
    "ch/retx/7",
    section=PTO,
    title="with only a lost PING outstanding and nothing queued, each probe holds a PING",
    requirements=("CH-5.4.3",),
)
def _(iut: Iut) -> str | None:
    peer = _peer(iut)
    peer.now = 0.1
    peer.blackhole = True
    peer.call("conn_ping")
    pings = [s for s in peer.sent if s.ack_eliciting]
    expect(len(pings) == 1, f"internal: conn_ping sent {len(pings)} ack-eliciting packets, not one")
    probes: list[Sent] = []
    for _ in range(20):
        if peer.iut_timer is None:
            break
        before = len(peer.sent)
        _not_closed(peer.timer(max(peer.now, peer.iut_timer)), f"at {peer.now:.3f} s")
        # A probe: anything but an ACK-only packet (a PADDING-only one counts, and fails below).
        probes = [s for s in peer.sent[before:] if not all(isinstance(f, ch.Ack) for f in s.packet.frames)]
        if probes:
            break
    expect(bool(probes), f"no probe after the lost PING (timer {peer.iut_timer})")
    bare = [(s.packet.pn, s.packet.frames) for s in probes if not any(isinstance(f, ch.Ping) for f in s.packet.frames)]
    expect(
        not bare,
        f"probe packets without a PING at {peer.now:.3f} s, with nothing else to send: {short(bare, 200)}",
    )
    return f"{len(probes)} probes at {peer.now:.3f} s, each with a PING"


# -- control frames (channels.md §6) ----------------------------------------------------------------------


@case(
    "ch/retx/8",
    section=LOSS,
    title="a lost RESET comes again exactly as first sent, and a lost ping() PING again, until acknowledged",
    requirements=("CH-6.5",),
)
def _(iut: Iut) -> str | None:
    peer = _peer(iut, first(2, lambda f: isinstance(f, ch.Reset)))
    stream = open_channel(peer, "stream")
    peer.call("conn_send", channel_id=stream, data=payload(500, seed=47), fin=False)
    peer.now += 0.01
    peer.ack_all()
    peer.now += 0.01
    peer.call("conn_reset", channel_id=stream, code="APPLICATION_CLOSE")
    peer.run(peer.now + 2 * SETTLE)  # the runner acknowledges at once what arrives
    resets = [(s, f) for s in peer.sent for f in s.packet.frames if isinstance(f, ch.Reset) and f.channel_id == stream]
    expect(len(resets) >= 1, "internal: conn_reset sent no RESET")
    expect(
        len(resets) >= 3 and any(s.delivered for s, _ in resets),
        f"the RESET was sent {len(resets)} times in {2 * SETTLE} s; the first two were lost ({peer.describe()})",
    )
    differ = [(s.packet.pn, f) for s, f in resets if f != resets[0][1]]
    expect(not differ, f"the RESET came again changed: first {resets[0][1]}, then {short(differ, 200)}")
    arrived = next(s for s, _ in resets if s.delivered)
    index = peer.acked_at(arrived)
    expect(index is not None, f"internal: the runner did not acknowledge packet {arrived.packet.pn}")
    after = [s.packet.pn for s, _ in resets if peer.sent.index(s) >= (index or 0)]
    expect(
        not after,
        f"the RESET was sent again in packets {after} after the runner acknowledged packet {arrived.packet.pn}",
    )
    # A PING of conn_ping, lost twice: the ping id is acknowledged when a copy arrives.
    peer.drop = first(2, lambda f: isinstance(f, ch.Ping))
    peer.chosen.clear()
    peer.now += 0.05
    start = len(peer.events)
    reply = peer.call("conn_ping")
    ping_id = reply.answer.get("ping_id")
    peer.run(peer.now + 2 * SETTLE)
    acks = [e for e in peer.events[start:] if e.get("type") == "ping_acknowledged"]
    expect(
        any(e.get("ping_id") == ping_id for e in acks),
        f"ping {ping_id}, whose PING was lost twice ({peer.describe()}), was never reported acknowledged: the "
        f"PING was not sent again for it (events {short(acks, 200)})",
    )
    return f"RESET sent {len(resets)} times, the same each time; ping {ping_id} acknowledged after two losses"


@case(
    "ch/retx/9",
    section=LOSS,
    title="a lost ACCEPT or MAX_CHANNEL_DATA comes again with the current limit, not the one it held",
    requirements=("CH-6.6",),
)
def _(iut: Iut) -> str | None:
    drops = (first(1, lambda f: isinstance(f, ch.Accept)), first(1, lambda f: isinstance(f, ch.MaxChannelData)))
    peer = _peer(iut, lambda s: any(d(s) for d in drops))
    channel = peer.open("sink")
    accepts = [f for s in peer.chosen for f in s.packet.frames if isinstance(f, ch.Accept) and f.channel_id == channel]
    expect(len(accepts) == 1, f"internal: no ACCEPT of channel {channel} to 'sink' ({short(peer.received)})")
    # The runner knows the lost ACCEPT's limit (it saw the packet leave): it sends data up to it,
    # which the IUT's application reads, so the IUT raises its limit in MAX_CHANNEL_DATA.
    offset, limit = 0, accepts[0].initial_max_data
    limits = [limit]
    for _ in range(3):
        peer.now += 0.01
        chunk = payload(limit - offset, seed=53)[:1000]
        while offset < limit:
            piece = chunk[: min(len(chunk), limit - offset)]
            _not_closed(peer.send(ch.Stream(channel_id=channel, offset=offset, data=piece)), "on stream data")
            offset += len(piece)
        raised = [
            f.maximum
            for s in peer.sent
            for f in s.packet.frames
            if isinstance(f, ch.MaxChannelData) and f.channel_id == channel and f.maximum > limit
        ]
        expect(bool(raised), f"internal: the IUT did not raise its limit {limit} after reading {offset} bytes")
        limit = max(raised)
        limits.append(limit)
    # Three PINGs the runner acknowledges (with everything else that arrived): the losses are found.
    for _ in range(3):
        peer.now += 0.002
        peer.call("conn_ping")
    peer.now += 0.01
    _not_closed(peer.ack_all(), "on an ACK")
    peer.run(peer.now + SETTLE)
    highest = 0
    resent_accepts = []
    for s in peer.sent:
        for f in s.packet.frames:
            if isinstance(f, ch.Accept) and f.channel_id == channel:
                expect(
                    f.initial_max_data >= highest,
                    f"ACCEPT of channel {channel} in packet {s.packet.pn} with initial_max_data {f.initial_max_data}, "
                    f"below the limit {highest} the IUT had already advertised: not rebuilt from the current state",
                )
                if s not in peer.chosen:
                    resent_accepts.append(f.initial_max_data)
                highest = max(highest, f.initial_max_data)
            elif isinstance(f, ch.MaxChannelData) and f.channel_id == channel:
                expect(
                    f.maximum >= highest,
                    f"MAX_CHANNEL_DATA of channel {channel} in packet {s.packet.pn} with {f.maximum}, below the limit "
                    f"{highest} the IUT had already advertised: a stale copy of a lost one",
                )
                highest = max(highest, f.maximum)
    expect(
        bool(resent_accepts),
        f"the lost ACCEPT of channel {channel} was not sent again ({peer.describe()})",
    )
    return f"limits advertised {limits}; the ACCEPT came again with {resent_accepts}"


@case(
    "ch/retx/10",
    section=LOSS,
    title="a late ACK of a packet already declared lost causes no second retransmission and no error",
    requirements=("CH-6.7", "REC-3.1.2"),
)
def _(iut: Iut) -> str | None:
    peer = DropPeer(iut, drop_data=(1,), idle_timeout=120.0)
    stream = open_channel(peer, "stream")
    peer.call("conn_send", channel_id=stream, data=payload(4000, seed=59), fin=False)
    lost = peer.lost[0]
    offset = min(f.offset for f in lost.packet.frames if isinstance(f, ch.Stream))

    def carrying() -> list[int]:
        return [
            s.packet.pn
            for s in peer.sent
            for f in s.packet.frames
            if isinstance(f, ch.Stream) and f.channel_id == stream and f.offset <= offset < f.offset + len(f.data)
        ]

    # The runner acknowledges the later packets: the packet threshold makes the first lost.
    for _ in range(20):
        peer.now += 0.01
        _not_closed(peer.ack_all(), "on an ACK")
        if len(carrying()) >= 2:
            break
    expect(len(carrying()) >= 2, f"internal: the lost packet {lost.packet.pn} was not sent again by {peer.now:.2f} s")
    copies_before = carrying()
    # The lost packet arrives after all, before the copy: the runner acknowledges it, alone, then the rest.
    peer.now += 0.005
    reply = peer.send(ack_of([lost.packet.pn]))
    _not_closed(reply, f"on a late ACK of packet {lost.packet.pn}, already declared lost")
    eliciting = [p.pn for p in reply.packets if any(not isinstance(f, ch.Ack | ch.Padding) for f in p.frames)]
    expect(not eliciting, f"the late ACK of lost packet {lost.packet.pn} made the IUT send packets {eliciting}")
    peer.now += 0.005
    _not_closed(peer.ack_all(), "on an ACK")
    peer.run(peer.now + SETTLE)
    after = carrying()
    expect(
        after == copies_before,
        f"offset {offset} of the lost packet {lost.packet.pn} was sent in packets {copies_before}, and after a late "
        f"ACK of the lost one again in {after[len(copies_before) :]}",
    )
    return f"packet {lost.packet.pn} lost, resent in {copies_before[1:]}; its late ACK changed nothing"
