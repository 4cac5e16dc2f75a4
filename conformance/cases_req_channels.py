"""Cases for the requirements of spec/channels.md that no earlier case tested (spec/conformance.md §6).

The runner plays the IUT's peer on a live connection (``Peer`` of cases_channels.py): it builds
the frames, seals them into DATA records and parses what the IUT sends back.  Ids: ``ch/open/``
opening and answering channels (§2.2, §2.3), ``ch/limit/`` MAX_CHANNELS (§2.4), ``ch/data/``
messages and packet building (§2.5, §3.2, §5), ``ch/reset/`` RESET and STOP_SENDING (§3.3),
``ch/err/`` frames for channels not held and caller misuse (§2.6, §3.1, §7.1, §8), ``ch/ack/``
acknowledgements (§4), ``ch/live/`` and ``ch/close/`` liveness and closing (§9).  (``ch/rel/``, the
reliable carriers of the old §10, are retired: paths.md §5 replaced them.)  Each case names
the requirement ids it tests; a case whose ids are all SHOULD (or MAY) is only a warning when
it fails.
"""

from __future__ import annotations

import itertools
from typing import Any, cast

from p2pos.proto.channels import frames as ch
from p2pos.proto.channels.flow import EARLY_WINDOW
from p2pos.proto.errors import ErrorCode
from p2pos.proto.session.record import MAX_PLAINTEXT
from p2pos.proto.session.wire import RECORD_HEADER

from .cases_channels import (
    QUIET,
    SERVICES,
    Packet,
    Peer,
    Reply,
    _acked_by,
    ack_of,
    acked,
    expect_close,
    expect_open,
    payload,
)
from .checks import expect, expect_eq, short
from .iut import Iut
from .reference import IUT, IUT_INDEX, establish
from .registry import case

OPEN, IMPLICIT, LIMIT, KINDS = "channels.md §2.2", "channels.md §2.3", "channels.md §2.4", "channels.md §2.5"
MISSING, STATES, RESET = "channels.md §2.6", "channels.md §3.1", "channels.md §3.3"
ACKS, PACKETS, FAIR = "channels.md §4", "channels.md §5.1", "channels.md §5.2"
IDLE, CLOSE, RELIABLE = "channels.md §9.2", "channels.md §9.4", "channels.md §10"
STREAM, MESSAGE = ch.ChannelKind.STREAM, ch.ChannelKind.MESSAGE
APP = int(ErrorCode.APPLICATION_CLOSE)


# -- helpers -------------------------------------------------------------------------------------


def _frames(peer: Peer, cls: type[Any], channel_id: int | None = None) -> list[Any]:
    """Every frame of type ``cls`` (on ``channel_id``, if given) the IUT sent so far."""
    return [
        f
        for p in peer.received
        for f in p.frames
        if isinstance(f, cls) and (channel_id is None or getattr(f, "channel_id", None) == channel_id)
    ]


def _on(reply: Reply, cls: type[Any], channel_id: int) -> list[Any]:
    """The frames of type ``cls`` on ``channel_id`` in one answer."""
    return [f for f in reply.frames(cls) if getattr(f, "channel_id", None) == channel_id]


def _event_types(reply: Reply, channel_id: int | None = None) -> list[str]:
    """The types of the events in one answer (of ``channel_id`` only, if given)."""
    events = reply.answer.get("events") or []
    return [str(e.get("type")) for e in events if channel_id is None or e.get("channel_id") == channel_id]


def _iut_channel(peer: Peer, *, kind: str = "stream", service: str = "files") -> int:
    """The IUT opens a channel (``conn_open``); returns its id.  The runner does not answer yet."""
    reply = peer.call("conn_open", service=service, kind=kind)
    channel_id = reply.answer.get("channel_id")
    expect(isinstance(channel_id, int), f"conn_open must answer a channel_id, got {short(reply.answer)}")
    assert isinstance(channel_id, int)
    return channel_id


def _alive(peer: Peer, what: str) -> None:
    """The connection still works: a PING is acknowledged, and no CLOSE comes."""
    pn = peer.link.next_counter
    reply = peer.send(ch.Ping(), at=peer.now + 0.01)
    expect_open(reply, what)
    _acked_by(peer, pn, peer.now)


def _reset_stream(peer: Peer, channel_id: int, final_size: int, at: float) -> Reply:
    """The runner resets one of its stream channels; the IUT answers with its own RESET (§3.3)."""
    return peer.send(ch.Reset(channel_id=channel_id, code=APP, final_size=final_size), at=at)


class _Peer(Peer):
    """A ``Peer`` of either role whose handshake advertises ``ref_max_plaintext`` (handshake.md §5)
    and that keeps the size (``sizes``) and header (``headers``) of every record the IUT sent."""

    def __init__(
        self,
        iut: Iut,
        *,
        role: str = "responder",
        ref_max_plaintext: int = MAX_PLAINTEXT,
        session_config: dict[str, Any] | None = None,
        **config: Any,
    ) -> None:
        self.iut = iut
        self.now = 0.0
        self.received: list[Packet] = []
        self.sizes: list[int] = []
        #: (epoch, counter) of every record the IUT sent.
        self.headers: list[tuple[int, int]] = []
        channels = {"services": list(SERVICES), "channel_config": {**QUIET, **config}}
        self.link = establish(
            iut, role, channels=channels, now=self.now, ref_max_plaintext=ref_max_plaintext, config=session_config
        )
        self.next_id = 0 if role == "responder" else 1
        self.iut_parity = 1 - self.next_id
        self.first = self._absorb({"events": []}, self.link.trailing)
        if self.received:
            self.ack()

    def _absorb(self, answer: dict[str, Any], datagrams: list[bytes]) -> Reply:
        self.sizes += [len(d) for d in datagrams]
        for datagram in datagrams:
            _ptype, _receiver, epoch, counter = RECORD_HEADER.unpack_from(datagram)
            self.headers.append((epoch, counter))
        return super()._absorb(answer, datagrams)


# -- opening, accepting, refusing (§2.2) ---------------------------------------------------------


@case(
    "ch/open/5",
    section=OPEN,
    title="a repeated OPEN, even of a channel closed since, is ignored: no second ACCEPT, no event",
    requirements=("CH-2.2.10",),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = peer.open_echo()
    again = ch.Open(channel_id=channel_id, kind=STREAM, service="echo", initial_max_data=65536)
    reply = peer.send(again, at=0.1)
    expect_open(reply, "a repeated OPEN of an open channel")
    expect(not _on(reply, ch.Accept, channel_id), f"a second ACCEPT for the repeated OPEN: {short(reply.packets, 200)}")
    expect(not reply.events("channel_requested"), f"the repeated OPEN reached the application: {short(reply.answer)}")
    _reset_stream(peer, channel_id, 0, at=0.2)  # the channel closes on the IUT's side
    peer.ack()
    reply = peer.send(again, at=0.3)
    expect_open(reply, "an OPEN of a channel closed since")
    expect(not _on(reply, ch.Accept, channel_id), f"an ACCEPT for the OPEN of a closed channel: {short(reply.packets)}")
    expect(not reply.events("channel_requested"), f"the OPEN of a closed channel was requested: {short(reply.answer)}")
    peer.open_echo()  # the next id is still accepted
    return None


@case(
    "ch/open/6",
    section=OPEN,
    title="OPENs that arrive out of order (ids 4, 0, 2) are each accepted",
    requirements=("CH-2.2.14",),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    for i, channel_id in enumerate((4, 0, 2)):
        reply = peer.send(
            ch.Open(channel_id=channel_id, kind=STREAM, service="echo", initial_max_data=1000), at=0.1 + i * 0.01
        )
        expect_open(reply, f"the OPEN of channel {channel_id} after the higher ids")
        expect(
            len(_on(reply, ch.Accept, channel_id)) == 1,
            f"no ACCEPT for channel {channel_id} arriving out of order: {short(reply.packets, 200)}",
        )
    return None


@case(
    "ch/open/7",
    section=OPEN,
    title="a REFUSE of an open channel, and an ACCEPT or REFUSE of a closed one, are ignored",
    requirements=("CH-2.2.16",),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = _iut_channel(peer)
    reply = peer.send(ch.Accept(channel_id=channel_id, initial_max_data=1000), at=0.1)
    expect_eq(_event_types(reply, channel_id), ["channel_opened"], "events of the ACCEPT")
    reply = peer.send(ch.Refuse(channel_id=channel_id, code=int(ErrorCode.CHANNEL_REFUSED), reason="late"), at=0.2)
    expect_open(reply, "a REFUSE of a channel already open")
    expect(not _event_types(reply, channel_id), f"a REFUSE of an open channel reached the application: {reply.answer}")
    reply = peer.call("conn_send", channel_id=channel_id, data=b"still open", fin=False)
    if not _on(reply, ch.Stream, channel_id):
        reply = peer.timer(peer.now + 0.05)
    expect(bool(_on(reply, ch.Stream, channel_id)), f"no data on the channel after the REFUSE: {short(reply.packets)}")
    peer.call("conn_reset", channel_id=channel_id, code="APPLICATION_CLOSE")
    peer.ack()
    for frame in (
        ch.Accept(channel_id=channel_id, initial_max_data=5000),
        ch.Refuse(channel_id=channel_id, code=int(ErrorCode.CHANNEL_REFUSED), reason="later"),
    ):
        reply = peer.send(frame, at=peer.now + 0.01)
        expect_open(reply, f"{type(frame).__name__} of a channel the IUT reset")
        expect(not _event_types(reply, channel_id), f"{type(frame).__name__} of a closed channel: {reply.answer}")
    _alive(peer, "after frames for a closed channel")
    return None


# -- implicit acceptance (§2.3) ------------------------------------------------------------------


@case(
    "ch/open/8",
    section=IMPLICIT,
    title="data before the ACCEPT implies it (channel_opened first), credit waits for it; MAX_CHANNEL_DATA does not",
    requirements=("CH-2.3.1", "CH-2.3.2", "CH-2.3.3", "CH-7.2.3", "CH-2.7.1"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    first = _iut_channel(peer)
    peer.call("conn_send", channel_id=first, data=payload(50, seed=1), fin=False)
    reply = peer.send(ch.MaxChannelData(channel_id=first, maximum=1000), at=0.1)
    expect(
        "channel_opened" not in _event_types(reply, first),
        f"MAX_CHANNEL_DATA alone made channel {first} open: {short(reply.answer)}",
    )
    expect(not _on(reply, ch.Stream, first), f"data on channel {first} before it was accepted: {short(reply.packets)}")
    reply = peer.send(ch.Stream(channel_id=first, offset=0, data=b"hi"), at=0.2)
    expect_open(reply, "STREAM on a channel the IUT is opening")
    types = _event_types(reply, first)
    expect(
        types[:2] == ["channel_opened", "channel_data"],
        f"channel_opened, then channel_data, for STREAM before the ACCEPT; got {types}",
    )
    # More than the early credit (channels.md §2.7) is written: the early bytes go, the rest waits for
    # the ACCEPT, also once a STREAM from the peer implied the acceptance.
    second = _iut_channel(peer)
    peer.call("conn_send", channel_id=second, data=payload(EARLY_WINDOW + 50, seed=2), fin=False)
    for step in range(4):  # acknowledged, so that the congestion window lets all the early bytes go
        peer.ack()
        peer.timer(0.22 + step * 0.02)
    reply = peer.send(ch.Stream(channel_id=second, offset=0, data=b"yo"), at=0.3)
    types = _event_types(reply, second)
    expect(types[:1] == ["channel_opened"], f"channel_opened first for channel {second}, got {types}")
    peer.ack()
    reply = peer.timer(0.35)
    early = max((f.offset + len(f.data) for f in _frames(peer, ch.Stream, second)), default=0)
    expect(
        early <= EARLY_WINDOW,
        f"channel {second}, implicitly accepted, sent up to {early}: beyond its early credit {EARLY_WINDOW}",
    )
    reply = peer.send(ch.Accept(channel_id=second, initial_max_data=EARLY_WINDOW + 20), at=0.4)
    for step in range(4):
        peer.ack()
        peer.timer(0.45 + step * 0.02)
    sent = _frames(peer, ch.Stream, second)
    highest = max((f.offset + len(f.data) for f in sent), default=0)
    expect_eq(highest, EARLY_WINDOW + 20, f"the bytes of channel {second} sent after its ACCEPT with that window")
    return None


# -- MAX_CHANNELS (§2.4) -------------------------------------------------------------------------


@case(
    "ch/limit/3",
    section=LIMIT,
    title="an OPEN below index 100 but beyond MAX_CHANNELS is refused with CHANNEL_LIMIT; the connection goes on",
    requirements=("CH-2.2.12", "CH-2.4.3"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, max_channels=2)
    peer.open_echo()
    peer.open_echo()
    for channel_id in (4, 98):  # indices 2 and 49: beyond the limit of 2, below the initial 100
        reply = peer.send(ch.Open(channel_id=channel_id, kind=STREAM, service="echo", initial_max_data=100), at=0.2)
        expect_open(reply, f"an OPEN of index {channel_id // 2}, below 100, with MAX_CHANNELS 2")
        refusals = _on(reply, ch.Refuse, channel_id)
        expect(len(refusals) == 1, f"no REFUSE of channel {channel_id}: {short(reply.packets, 200)}")
        expect_eq(refusals[0].code, int(ErrorCode.CHANNEL_LIMIT), f"the REFUSE code of channel {channel_id}")
        expect(not _on(reply, ch.Accept, channel_id), f"channel {channel_id} was accepted beyond MAX_CHANNELS 2")
    _alive(peer, "after the refusals")
    return None


def _open_error(peer: Peer, what: str) -> str:
    """``conn_open`` that must fail; returns the error name after checking no OPEN left."""
    known = {f.channel_id for f in _frames(peer, ch.Open)}
    error = peer.iut.error("conn_open", service="files", kind="stream", now=peer.now)
    reply = peer.timer(peer.now + 0.05)
    new = [f for f in reply.frames(ch.Open) if f.channel_id not in known]
    expect(not new, f"{what}: an OPEN left after the refused conn_open: {short(new)}")
    return error


@case(
    "ch/limit/4",
    section=LIMIT,
    title="the IUT opens no channel beyond the runner's MAX_CHANNELS, which replaces 100 and never goes down",
    requirements=("CH-2.4.1", "CH-2.4.5", "CH-2.4.7", "CH-2.4.10"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    peer.send(ch.MaxChannels(maximum=1), at=0.1)
    first = _iut_channel(peer)
    expect_eq([f.channel_id for f in _frames(peer, ch.Open)], [first], "the IUT's OPEN within MAX_CHANNELS 1")
    error = _open_error(peer, "a second channel with MAX_CHANNELS 1")
    expect_eq(error, "CHANNEL_LIMIT", "the error of conn_open beyond MAX_CHANNELS 1 (it replaces the initial 100)")
    peer.send(ch.MaxChannels(maximum=3), at=peer.now + 0.01)
    peer.send(ch.MaxChannels(maximum=2), at=peer.now + 0.01)  # lower than known: ignored
    _iut_channel(peer)
    _iut_channel(peer)  # index 2: allowed by 3, not by 2
    opened = sorted({f.channel_id for f in _frames(peer, ch.Open)})
    expect_eq(len(opened), 3, "the IUT's OPENs with MAX_CHANNELS 3 (then 2, ignored)")
    error = _open_error(peer, "a fourth channel with MAX_CHANNELS 3")
    expect_eq(error, "CHANNEL_LIMIT", "the error of conn_open beyond MAX_CHANNELS 3")
    return None


def _used_up(peer: Peer, count: int) -> list[int]:
    """The runner opens ``count`` channels and resets each; returns every MAX_CHANNELS the IUT sent."""
    for _ in range(count):
        channel_id = peer.open("sink")
        expect(bool(_on(peer.last, ch.Accept, channel_id)), f"channel {channel_id} not accepted (limit reached?)")
        _reset_stream(peer, channel_id, 0, at=peer.now + 0.01)
        peer.ack()
    peer.timer(peer.now + 0.05)
    return [f.maximum for f in _frames(peer, ch.MaxChannels)]


@case(
    "ch/limit/5",
    section=LIMIT,
    title="as the runner's channels close the IUT raises MAX_CHANNELS, so more can be opened",
    requirements=("CH-2.4.9",),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, max_channels=2)
    limits = _used_up(peer, 6)
    expect(
        max(limits, default=0) >= 6,
        f"after 6 channels opened and closed with max_channels 2, the IUT's MAX_CHANNELS are {limits}",
    )
    return f"MAX_CHANNELS {limits}"


@case(
    "ch/limit/6",
    section=LIMIT,
    title="the MAX_CHANNELS the IUT sends never lower its limit",
    requirements=("CH-2.4.6",),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, max_channels=4)
    limits = _used_up(peer, 4)
    expect(bool(limits), "no MAX_CHANNELS from the IUT")
    lowered = [(a, b) for a, b in itertools.pairwise(limits) if b < a]
    expect(not lowered, f"the IUT lowered MAX_CHANNELS: {limits}")
    return f"MAX_CHANNELS {limits}"


# -- frames for channels not held, caller misuse, configuration (§2.6, §3.1, §7.1, §8) ------------


@case(
    "ch/err/8",
    section=MISSING,
    title="MAX_CHANNEL_DATA for a channel not held, and any frame for a closed channel, are ignored",
    requirements=("CH-2.6.1", "CH-2.6.3"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    for channel_id in (40, peer.iut_parity + 8):  # never opened, of either parity
        reply = peer.send(ch.MaxChannelData(channel_id=channel_id, maximum=5000), at=peer.now + 0.01)
        expect_open(reply, f"MAX_CHANNEL_DATA for channel {channel_id}, never opened")
    channel_id = peer.open_echo()
    _reset_stream(peer, channel_id, 0, at=peer.now + 0.01)
    peer.ack()
    for frame in (
        ch.Stream(channel_id=channel_id, offset=0, data=b"late"),
        ch.StopSending(channel_id=channel_id, code=APP),
        ch.CloseChannel(channel_id=channel_id),
        ch.Reset(channel_id=channel_id, code=APP, final_size=4),
        ch.MaxChannelData(channel_id=channel_id, maximum=100000),
    ):
        reply = peer.send(frame, at=peer.now + 0.01)
        what = f"{type(frame).__name__} for channel {channel_id}, closed"
        expect_open(reply, what)
        expect(not _on(reply, ch.Reset, channel_id), f"{what}: the IUT answered with a RESET")
        expect(not _event_types(reply, channel_id), f"{what}: reached the application: {short(reply.answer)}")
    _alive(peer, "after frames for channels not held")
    return None


@case(
    "ch/err/9",
    section=STATES,
    title="conn_send and conn_reset on a channel not held fail with CHANNEL_STATE_ERROR and send nothing",
    requirements=("CH-3.1.1", "CH-7.1.1", "CH-11.3"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    closed = peer.open_echo()
    _reset_stream(peer, closed, 0, at=0.1)
    peer.ack()
    for channel_id in (peer.iut_parity + 40, closed):
        for cmd, fields in (
            ("conn_send", {"data": b"nobody", "fin": False}),
            ("conn_reset", {"code": "APPLICATION_CLOSE"}),
        ):
            error = peer.iut.error(cmd, channel_id=channel_id, now=peer.now, **fields)
            expect_eq(error, "CHANNEL_STATE_ERROR", f"the error of {cmd} on channel {channel_id}, not held")
    reply = peer.timer(peer.now + 0.1)
    sent = [
        f for f in reply.frames(ch.Stream) + reply.frames(ch.Reset) if f.channel_id in (closed, peer.iut_parity + 40)
    ]
    expect(not sent, f"frames for channels not held after the failed calls: {short(sent)}")
    peer.open_echo()  # nothing changed: the connection works
    return None


#: Values of channel_config (conformance.md §3.7) that channels.md §8 forbids.
BAD_CONFIG: tuple[dict[str, Any], ...] = (
    {"idle_timeout": 0},
    {"keepalive_interval": -1.0},
    {"connection_window": 1000},
    {"channel_window": 0},
    {"max_channels": 0},
    {"channel_window": 2 << 20, "channel_window_max": 1 << 20},
    {"connection_window": 4 << 20, "connection_window_max": 2 << 20},
)


@case(
    "ch/err/10",
    section="channels.md §8",
    title="a channel_config that breaks a constraint of §8 is refused; a valid one is taken",
    requirements=("CH-8.1",),
)
def _(iut: Iut) -> str | None:
    fields: dict[str, Any] = {
        "role": "responder",
        "seed": IUT.seed,
        "static": IUT.static,
        "ephemeral": IUT.ephemeral,
        "sas_nonce": None,
        "remote_static": None,
        "expected_peer": None,
        "local_index": IUT_INDEX,
        "now": 0.0,
        "config": {},
        "services": list(SERVICES),
    }
    for bad in BAD_CONFIG:
        answer = iut.call("conn_session", **fields, channel_config={**QUIET, **bad})
        expect(answer.get("ok") is False, f"conn_session with channel_config {bad} was taken: {short(answer)}")
    answer = iut.call("conn_session", **fields, channel_config=dict(QUIET))
    expect(answer.get("ok") is True, f"conn_session with a valid channel_config failed: {short(answer)}")
    return None


# -- messages and finishing (§2.5, §3.2) ---------------------------------------------------------


@case(
    "ch/data/6",
    section=KINDS,
    title="messages are delivered in arrival order, ids count up from 0; CLOSE_CHANNEL ends, late messages still come",
    requirements=("CH-2.5.4", "CH-2.5.6", "CH-3.2.4", "CH-3.2.5"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = peer.open("sink", kind=MESSAGE)
    expect(bool(_on(peer.last, ch.Accept, channel_id)), "the message channel to 'sink' was not accepted")
    data = {i: payload(10 + i, seed=20 + i) for i in range(4)}
    delivered: list[bytes] = []
    for i, message_id in enumerate((2, 0, 1)):
        reply = peer.send(
            ch.Message(channel_id=channel_id, message_id=message_id, data=data[message_id]), at=0.1 + i / 100
        )
        delivered += [bytes.fromhex(e["data"]) for e in reply.events("channel_message")]
    expect_eq(delivered, [data[2], data[0], data[1]], "channel_message events (in the order the messages arrived)")
    reply = peer.send(ch.CloseChannel(channel_id=channel_id), at=0.2)
    expect_eq(_event_types(reply, channel_id), ["channel_ended"], "events of the runner's CLOSE_CHANNEL")
    reply = peer.send(ch.Message(channel_id=channel_id, message_id=3, data=data[3]), at=0.21)
    got = [bytes.fromhex(e["data"]) for e in reply.events("channel_message")]
    expect_eq(got, [data[3]], "a message that arrived after the CLOSE_CHANNEL, while the channel is open")
    own = _iut_channel(peer, kind="message", service="chat")
    peer.send(ch.Accept(channel_id=own, initial_max_data=1000), at=0.3)
    for i in range(3):
        peer.call("conn_send", channel_id=own, data=payload(5, seed=i), fin=False)
    peer.timer(0.35)
    ids = sorted({f.message_id for f in _frames(peer, ch.Message, own)})
    expect_eq(ids, [0, 1, 2], "the message ids of the IUT's first three messages")
    return None


# -- building packets (§4, §5) -------------------------------------------------------------------


@case(
    "ch/data/8",
    section=FAIR,
    title="a few bytes on a second channel leave before a bulk transfer on the first is done",
    requirements=("CH-5.2.1",),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    bulk, small = _iut_channel(peer), _iut_channel(peer)
    peer.send(
        ch.Accept(channel_id=bulk, initial_max_data=1 << 20),
        ch.Accept(channel_id=small, initial_max_data=1 << 20),
        at=0.1,
    )
    size = 200_000
    peer.call("conn_send", channel_id=bulk, data=payload(size, seed=4), fin=False)
    peer.call("conn_send", channel_id=small, data=b"urgent", fin=False)
    for _ in range(200):
        if _frames(peer, ch.Stream, small):
            break
        peer.now += 0.02
        reply = peer.ack()
        if not reply.packets:
            timer = reply.answer.get("timer")
            peer.timer(max(peer.now, float(timer)) if isinstance(timer, int | float) else peer.now + 0.02)
    ends = [f.offset + len(f.data) for f in _frames(peer, ch.Stream, bulk)]
    expect(bool(_frames(peer, ch.Stream, small)), "the second channel's bytes never left")
    sent = max(ends, default=0)
    expect(sent < size, f"the second channel's 6 bytes waited until all {size} bytes of the first were sent")
    return f"the small channel's bytes left after {sent} bytes of the bulk channel"


# -- RESET and STOP_SENDING (§3.3) ---------------------------------------------------------------


@case(
    "ch/reset/7",
    section=RESET,
    title="a RESET of a stream channel is answered by a RESET with the same code and the IUT's final size",
    requirements=("CH-3.3.4", "CH-3.3.5"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = peer.open_echo()
    peer.send(ch.Stream(channel_id=channel_id, offset=0, data=payload(37)), at=0.1)
    echoed = len(peer.stream_bytes(channel_id)[0])
    expect_eq(echoed, 37, "bytes echoed before the reset")
    code = 0x1234  # an application code (errors.md §3): carried verbatim
    reply = peer.send(ch.Reset(channel_id=channel_id, code=code, final_size=37), at=0.2)
    resets = reply.events("channel_reset")
    expect(
        len(resets) == 1 and resets[0].get("by_peer") is True and resets[0].get("application_code") == code,
        f"a channel_reset event by the peer with application_code {code:#x}, got {short(reply.answer.get('events'))}",
    )
    answers = _on(reply, ch.Reset, channel_id)
    expect(len(answers) == 1, f"no RESET answering the runner's RESET of channel {channel_id}: {short(reply.packets)}")
    expect_eq(answers[0].code, code, "the answering RESET's code (the one received)")
    expect_eq(answers[0].final_size, 37, "the answering RESET's final size (the highest offset the IUT sent)")
    return None


def _reset_by_iut(peer: Peer, received: int) -> int:
    """The runner opens a sink stream and sends ``received`` bytes; the IUT resets it (``conn_reset``)."""
    channel_id = peer.open("sink")
    peer.send(ch.Stream(channel_id=channel_id, offset=0, data=payload(received)), at=peer.now + 0.01)
    reply = peer.call("conn_reset", channel_id=channel_id, code="APPLICATION_CLOSE")
    expect(bool(_on(reply, ch.Reset, channel_id)), f"no RESET after conn_reset of channel {channel_id}")
    peer.ack()
    return channel_id


@case(
    "ch/reset/8",
    section=RESET,
    title="the RESET answering the IUT's own settles the connection window (MAX_DATA), unanswered",
    requirements=("CH-3.3.6", "CH-3.3.8"),
)
def _(iut: Iut) -> str | None:
    mib = 1 << 20
    peer = Peer(iut, channel_window=2 * mib)
    channel_id = _reset_by_iut(peer, 100)
    final = 700_000  # in flight when the IUT reset the channel: they never reach it
    reply = peer.send(ch.Reset(channel_id=channel_id, code=APP, final_size=final), at=peer.now + 0.01)
    expect_open(reply, f"the answering RESET with final size {final}")
    expect(not _on(reply, ch.Reset, channel_id), "the IUT answered the RESET answering its own")
    if not reply.frames(ch.MaxData):
        peer.timer(peer.now + 0.05)
    limits = [f.maximum for f in _frames(peer, ch.MaxData)]
    expect(
        bool(limits) and max(limits) >= final + mib,
        f"no MAX_DATA of at least {final} + 1 MiB after the answering RESET charged {final - 100} bytes "
        f"never received to the connection window: got {limits}",
    )
    return f"MAX_DATA {limits}"


@case(
    "ch/reset/9",
    section=RESET,
    title="an answering RESET below the bytes received: FINAL_SIZE_ERROR, which open channels learn before the end",
    requirements=("CH-3.3.6", "CH-9.5.1", "CH-7.2.5"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    other = peer.open_echo()  # open both ways: it learns the code
    ended = peer.open("sink")  # the sink never ends its own direction: the channel stays open
    reply = peer.send(ch.Stream(channel_id=ended, offset=0, data=b"x", fin=True), at=0.05)
    expect("channel_ended" in _event_types(reply, ended), f"no channel_ended for channel {ended}: {reply.answer}")
    channel_id = _reset_by_iut(peer, 100)
    reply = peer.send(ch.Reset(channel_id=channel_id, code=APP, final_size=50), at=peer.now + 0.01)
    expect_close(reply, ErrorCode.FINAL_SIZE_ERROR, "an answering RESET with final size 50 after 100 bytes")
    events = reply.answer.get("events") or []
    expect(
        bool(events) and events[-1].get("type") == "connection_closed",
        f"connection_closed must be the last event, got {short(events, 300)}",
    )
    resets = {e.get("channel_id"): e for e in reply.events("channel_reset")}
    expect(
        other in resets and resets[other].get("code") == "FINAL_SIZE_ERROR",
        f"channel {other} must learn FINAL_SIZE_ERROR (channel_reset), got {short(events, 300)}",
    )
    expect(ended not in resets, f"channel {ended}, whose peer direction had ended, got a channel_reset")
    return None


@case(
    "ch/reset/10",
    section=RESET,
    title="an answering RESET above the limit the IUT gave closes with FLOW_CONTROL_ERROR",
    requirements=("CH-3.3.6",),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, channel_window=1000)
    channel_id = _reset_by_iut(peer, 100)
    # The runner opened the channel: up to EARLY_WINDOW is taken whatever the window (channels.md CH-2.7.4).
    limit = max([1000, EARLY_WINDOW, *(f.maximum for f in _frames(peer, ch.MaxChannelData, channel_id))])
    reply = peer.send(ch.Reset(channel_id=channel_id, code=APP, final_size=limit + 1), at=peer.now + 0.01)
    expect_close(reply, ErrorCode.FLOW_CONTROL_ERROR, f"an answering RESET with final size {limit + 1}, limit {limit}")
    return None


@case(
    "ch/reset/11",
    section=RESET,
    title="a channel is reset while opening; a RESET received while opening reports channel_opened then channel_reset",
    requirements=("CH-3.3.9", "CH-3.3.10"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    first = _iut_channel(peer)
    reply = peer.call("conn_reset", channel_id=first, code="APPLICATION_CLOSE")
    resets = _on(reply, ch.Reset, first)
    expect(len(resets) == 1, f"no RESET for channel {first}, reset before its ACCEPT: {short(reply.packets)}")
    expect_eq(resets[0].final_size, 0, "the final size of a channel reset before it sent anything")
    second = _iut_channel(peer)
    reply = peer.send(ch.Reset(channel_id=second, code=APP, final_size=0), at=0.1)
    expect_open(reply, f"a RESET of channel {second} before the ACCEPT")
    expect_eq(
        _event_types(reply, second),
        ["channel_opened", "channel_reset"],
        f"the events of channel {second}, reset by the runner before its ACCEPT",
    )
    return None


@case(
    "ch/reset/12",
    section=RESET,
    title="STOP_SENDING: channel_reset with its code, a RESET with that code and the highest offset sent",
    requirements=("CH-3.3.1", "CH-3.3.11", "CH-3.4.2", "CH-7.2.4"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = _iut_channel(peer)
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=100), at=0.1)
    written = peer.call("conn_send", channel_id=channel_id, data=payload(1000, seed=6), fin=False).answer["accepted"]
    peer.ack()
    peer.timer(peer.now + 0.05)
    sent = max((f.offset + len(f.data) for f in _frames(peer, ch.Stream, channel_id)), default=0)
    expect_eq(sent, 100, f"the bytes sent with a window of 100 ({written} written)")
    code = 0x4243
    reply = peer.send(ch.StopSending(channel_id=channel_id, code=code), at=peer.now + 0.01)
    expect_open(reply, "a STOP_SENDING")
    events = [e for e in reply.events("channel_reset") if e.get("channel_id") == channel_id]
    expect(
        len(events) == 1
        and events[0].get("by_peer") is True
        and events[0].get("code") == "APPLICATION_CLOSE"
        and events[0].get("application_code") == code,
        f"one channel_reset by the peer with application_code {code:#x}, got {short(reply.answer.get('events'))}",
    )
    resets = _on(reply, ch.Reset, channel_id)
    expect(len(resets) == 1, f"no RESET answering STOP_SENDING: {short(reply.packets, 200)}")
    expect_eq(resets[0].code, code, "the RESET's code (the STOP_SENDING's)")
    expect_eq(resets[0].final_size, 100, "the RESET's final size (the highest offset sent, not the bytes written)")
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=0, data=b"after"), at=peer.now + 0.01)
    expect(
        not _event_types(reply, channel_id), f"an event of channel {channel_id} after its channel_reset: {reply.answer}"
    )
    expect(not _on(reply, ch.Stream, channel_id), "stream data after the RESET")
    return None


# -- acknowledgements (§4) -----------------------------------------------------------------------


@case(
    "ch/ack/6",
    section=ACKS,
    title="until an ACK of theirs is acknowledged, every later ACK repeats every packet received, gaps included",
    requirements=("CH-4.7", "CH-4.9"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    received: list[int] = []
    counter = peer.link.next_counter
    # The runner never acknowledges a packet carrying an ACK from here on; each PING skips a number.
    for i in range(6):
        received.append(counter)
        peer.send_raw(ch.encode_frame(ch.Ping()), at=1.0 + i * 0.1, counter=counter)
        peer.timer(peer.now + 0.03)  # the ACK leaves by max_ack_delay (or at once: out of order)
        latest = [a for a in peer.received_acks() if a.largest == counter]
        expect(bool(latest), f"no ACK of the runner's packet {counter}: {short(peer.received[-2:], 200)}")
        missing = set(received) - acked(latest[-1])
        expect(
            not missing,
            f"the ACK of packet {counter} leaves out packets {sorted(missing)}, received earlier and reported in "
            "ACKs the runner never acknowledged",
        )
        covered = acked(latest[-1]) & set(range(received[0], counter + 1))
        expect_eq(sorted(covered), received, f"the packets the ACK of packet {counter} reports")
        counter += 2
    return None


@case(
    "ch/ack/7",
    section=ACKS,
    title="a packet that does not parse is not acknowledged, even by an ACK sent before the CLOSE",
    requirements=("CH-4.2",),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    good = peer.link.next_counter
    peer.send(ch.Ping(), at=1.0)  # its ACK is pending (not yet due)
    bad = peer.link.next_counter
    reply = peer.send_raw(ch.encode_frame(ch.Ping()) + bytes([0x3E]), at=1.001)
    expect_close(reply, ErrorCode.PROTOCOL_VIOLATION, "an unknown frame type after a PING")
    acks = [f for f in peer.received_acks() if bad in acked(f)]
    expect(not acks, f"the IUT acknowledged packet {bad}, which does not parse: {short(acks)}")
    return f"packet {good} {'was' if any(good in acked(a) for a in peer.received_acks()) else 'was not'} acknowledged"


@case(
    "ch/ack/8",
    section=ACKS,
    title="an ACK due at once goes in the first packet sent, ahead of the echoed data",
    requirements=("CH-4.13",),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = peer.open_echo()
    peer.ack()
    peer.timer(peer.now + 0.05)  # nothing is pending
    first = peer.link.next_counter
    peer.send(ch.Stream(channel_id=channel_id, offset=0, data=payload(300)), at=1.0)
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=300, data=payload(300, seed=2)), at=1.001)
    expect(bool(reply.packets), "no packet after the second ack-eliciting packet (an ACK is due at once)")
    head = reply.packets[0]
    expect(
        any(isinstance(f, ch.Ack) and first + 1 in acked(f) for f in head.frames),
        f"the first packet after two ack-eliciting packets ({first}, {first + 1}) holds no ACK of them: "
        f"{short(head.frames, 200)}",
    )
    return None


# -- liveness and closing (§9) -------------------------------------------------------------------


@case(
    "ch/live/4",
    section=IDLE,
    title="an ACK-only packet from the peer restarts the idle timer",
    requirements=("CH-9.2.2",),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, idle_timeout=5.0)
    peer.send(ch.Ping(), at=1.0)
    peer.timer(1.05)  # the IUT's ACK of the PING: an ACK-only packet to acknowledge
    reply = peer.send(ack_of(p.pn for p in peer.received), at=4.0)  # ACK-only, at 4 s
    expect_open(reply, "an ACK-only packet")
    reply = peer.timer(8.9)
    expect_open(reply, "4.9 s after an ACK-only packet from the peer (idle_timeout 5 s)")
    reply = peer.timer(9.0)
    expect_close(reply, ErrorCode.IDLE_TIMEOUT, "5 s after the last packet, ACK-only, from the peer")
    return None


@case(
    "ch/close/2",
    section=CLOSE,
    title="a graceful close opens no new channel and ends after close_timeout when nothing is acknowledged",
    requirements=("CH-9.4.1", "CH-9.4.4"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, close_timeout=2.0, idle_timeout=60.0)
    channel_id = _iut_channel(peer)
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=65536), at=0.1)
    peer.call("conn_send", channel_id=channel_id, data=payload(3000), fin=False)
    reply = peer.call("conn_close", code="NO_ERROR", reason="")
    expect(reply.close is None, "the IUT closed at once, before its data was acknowledged")
    closed_at = peer.now
    error = peer.iut.error("conn_open", service="files", kind="stream", now=peer.now)
    expect(bool(error), "conn_open during a graceful close")
    timer = reply.answer.get("timer")
    closing: Reply | None = None
    for _ in range(200):  # nothing is acknowledged: only close_timeout can end it
        expect(isinstance(timer, int | float), f"no timer armed during a graceful close at {peer.now:.3f}")
        assert isinstance(timer, int | float)
        reply = peer.timer(max(peer.now, float(timer)))
        if reply.close is not None:
            closing = reply
            break
        timer = reply.answer.get("timer")
    expect(closing is not None, f"no CLOSE by {peer.now:.3f} s, {peer.now - closed_at:.3f} s after conn_close")
    assert closing is not None
    expect_close(closing, ErrorCode.NO_ERROR, "the end of a graceful close at close_timeout")
    expect(
        closed_at + 2.0 - 1e-9 <= peer.now <= closed_at + 2.0 + 0.01,
        f"the CLOSE came {peer.now - closed_at:.3f} s after conn_close, not at close_timeout (2 s)",
    )
    opens = {f.channel_id for f in _frames(peer, ch.Open)}
    expect_eq(opens, {channel_id}, "the channels the IUT opened (none after conn_close)")
    return None


@case(
    "ch/close/3",
    section=CLOSE,
    title="close with a code other than NO_ERROR sends CLOSE at once, without waiting for data",
    requirements=("CH-9.4.5",),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = _iut_channel(peer)
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=65536), at=0.1)
    peer.call("conn_send", channel_id=channel_id, data=payload(30000), fin=False)
    reply = peer.call("conn_close", code="APPLICATION_CLOSE", reason="bye")
    expect_close(reply, ErrorCode.APPLICATION_CLOSE, "conn_close with APPLICATION_CLOSE and data unacknowledged")
    closed = reply.events("connection_closed")
    expect(len(closed) == 1, f"one connection_closed event at once, got {short(reply.answer.get('events'))}")
    return None


# -- packet sizes (§1, §5.1) ---------------------------------------------------------------------

#: The bytes a DATA record adds to its plaintext: header and tag (record.md §2, frames.md §1).
RECORD_OVERHEAD = 30


def _bulk(peer: _Peer, size: int, until: float) -> int:
    """The IUT opens a channel and sends ``size`` bytes; the runner acknowledges every 20 ms until ``until``."""
    channel_id = _iut_channel(peer)
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=1 << 22), at=peer.now + 0.01)
    data = payload(size, seed=12)
    offered = 0
    while peer.now < until:
        if offered < size:
            taken = peer.call("conn_send", channel_id=channel_id, data=data[offered : offered + 65536], fin=False)
            offered += int(taken.answer.get("accepted", 0))
        peer.now += 0.02
        reply = peer.ack()
        timer = reply.answer.get("timer")
        if isinstance(timer, int | float) and timer <= peer.now + 0.02:
            peer.timer(max(peer.now, float(timer)))
    got = len(peer.stream_bytes(channel_id)[0])
    expect(got > 0, "internal: the IUT sent none of its data")
    return got


@case(
    "ch/data/9",
    section="channels.md §1",
    title="with the runner's max_record_plaintext at 1000 bytes, no DATA record of the IUT is larger",
    requirements=("CH-1.5",),
)
def _(iut: Iut) -> str | None:
    limit = 1000
    peer = _Peer(iut, ref_max_plaintext=limit)
    sent = _bulk(peer, 30000, until=0.5)
    largest = max(peer.sizes) - RECORD_OVERHEAD
    expect(largest <= limit, f"a DATA record of {largest} bytes of plaintext: the runner accepts at most {limit}")
    return f"{sent} bytes sent in records of at most {largest} bytes"


@case(
    "ch/data/10",
    section=PACKETS,
    title="with pmtu_probing on, no PMTU probe is larger than the runner's max_record_plaintext allows",
    requirements=("CH-5.1.1",),
)
def _(iut: Iut) -> str | None:
    limit = 1250  # above the 1170 bytes of the base PMTU, below the probes up to 1452
    peer = _Peer(iut, ref_max_plaintext=limit, pmtu_probing=True, idle_timeout=60.0)
    _bulk(peer, 200_000, until=2.0)
    largest = max(peer.sizes)
    expect(
        largest <= limit + RECORD_OVERHEAD,
        f"a datagram of {largest} bytes: the runner's records hold at most {limit} bytes of plaintext",
    )
    return f"largest datagram {largest} bytes"


@case(
    "ch/data/11",
    section="channels.md §1",
    title="packet numbers run on across rekeying: the IUT's do not restart, its ACKs span the runner's epochs",
    requirements=("CH-1.3",),
)
def _(iut: Iut) -> str | None:
    peer = _Peer(iut, session_config={"rekey_after_messages": 8})
    _bulk(peer, 30000, until=0.3)
    epochs = sorted({e for e, _ in peer.headers})
    expect(len(epochs) >= 3, f"internal: the IUT's records span epochs {epochs} only")
    counters = [c for _, c in peer.headers]
    expect(
        all(b > a for a, b in itertools.pairwise(counters)),
        f"the IUT's packet numbers restart or repeat across its epochs {epochs}: {counters}",
    )
    before = peer.link.next_counter
    peer.send(ch.Ping(), at=peer.now + 0.01)
    peer.link.epoch = 1  # the runner rekeys too (record.md §6)
    peer.send(ch.Ping(), at=peer.now + 0.001)
    peer.timer(peer.now + 0.05)
    latest = max(peer.received_acks(), key=lambda a: a.largest)
    expect(
        {before, before + 1} <= acked(latest),
        f"the IUT's ACK does not cover the runner's packets {before} (epoch 0) and {before + 1} (epoch 1): "
        f"{sorted(acked(latest))[-5:]}",
    )
    return f"IUT epochs {epochs}, packet numbers {counters[0]}..{counters[-1]}"


# -- the IUT opens a channel during the handshake (§2.2, §7.2) -----------------------------------


class _OpenEarly:
    """Stands for the IUT in ``establish``: opens a channel just before the RESPONSE reaches the IUT."""

    def __init__(self, iut: Iut) -> None:
        self.iut = iut
        self.early: dict[str, Any] | None = None
        self.answer: dict[str, Any] = {}

    def ok(self, cmd: str, **fields: Any) -> dict[str, Any]:
        if cmd == "conn_receive" and self.early is None:
            self.early = self.iut.ok("conn_open", service="chat", kind="stream", now=fields.get("now", 0.0))
        answer = self.iut.ok(cmd, **fields)
        if cmd == "conn_receive":
            self.answer = answer
        return answer


@case(
    "ch/open/9",
    section=OPEN,
    title="a channel opened during the handshake sends its OPEN once established, after handshake_completed",
    requirements=("CH-2.2.8", "CH-7.2.2"),
)
def _(iut: Iut) -> str | None:
    proxy = _OpenEarly(iut)
    link = establish(
        cast(Iut, proxy), "initiator", channels={"services": list(SERVICES), "channel_config": dict(QUIET)}
    )
    early = proxy.early or {}
    expect(isinstance(early.get("channel_id"), int), f"conn_open during the handshake: {short(early)}")
    expect_eq(len(early.get("out") or []), 0, "datagrams sent by conn_open before the handshake completed")
    opens = []
    for datagram in link.trailing:
        opened = link.open(datagram)
        opens += [f for f in ch.parse_frames_untrusted(opened.plaintext) if isinstance(f, ch.Open)]
    expect_eq([f.channel_id for f in opens], [early["channel_id"]], "the OPENs sent once the handshake completed")
    types = [str(e.get("type")) for e in proxy.answer.get("events") or []]
    expect(
        bool(types) and types[0] == "handshake_completed",
        f"handshake_completed must be the first event of the connection, got {types}",
    )
    return None


# -- what rides in a packet with an ACK (§4 "Sending") --------------------------------------------


@case(
    "ch/ack/9",
    section=ACKS,
    title="in a one-way transfer the IUT does not repeat an ACK that says nothing new in its data packets",
    requirements=("CH-4.15",),
)
def _(iut: Iut) -> str | None:
    peer = _Peer(iut, idle_timeout=60.0)
    peer.send(ch.Ping(), at=0.01)  # something for the IUT to acknowledge
    peer.timer(0.05)
    _bulk(peer, 150_000, until=0.6)
    data_packets = [p for p in peer.received if any(isinstance(f, ch.Stream) for f in p.frames)]
    repeated = 0
    last: set[int] | None = None
    for packet in peer.received:
        for frame in packet.frames:
            if isinstance(frame, ch.Ack):
                covered = acked(frame)
                if covered == last and packet in data_packets:
                    repeated += 1
                last = covered
    expect(len(data_packets) >= 20, f"internal: only {len(data_packets)} data packets")
    expect(
        repeated * 2 <= len(data_packets),
        f"{repeated} of the IUT's {len(data_packets)} data packets repeat an ACK that says nothing new",
    )
    return f"{repeated} of {len(data_packets)} data packets repeat an ACK"


@case(
    "ch/ack/10",
    section=ACKS,
    title="a large ACK due with a full-size message to send does not hold the message back",
    requirements=("CH-4.16", "CH-2.5.2"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = peer.open_echo(kind=MESSAGE)
    peer.ack()
    counter = peer.link.next_counter
    for i in range(24):  # every other packet number: 24 ranges the IUT keeps reporting (§4)
        peer.send_raw(ch.encode_frame(ch.Ping()), at=1.0 + i * 0.001, counter=counter)
        counter += 2
    largest = (1200 - RECORD_OVERHEAD) - 32  # the base PMTU's largest message (channels.md §2.5)
    message = payload(largest, seed=14)
    frame = ch.Message(channel_id=channel_id, message_id=0, data=message)
    reply = peer.send_raw(ch.encode_frame(frame), at=1.1, counter=counter)
    echoed = [f.data for f in reply.frames(ch.Message) if f.channel_id == channel_id]
    expect_eq(echoed, [message], f"the {largest}-byte message echoed in answer, beside a due ACK of 25 ranges")
    expect(
        any(counter in acked(a) for a in reply.frames(ch.Ack)),
        f"no ACK of packet {counter}, which arrived after a gap: {short(reply.packets, 200)}",
    )
    return None
