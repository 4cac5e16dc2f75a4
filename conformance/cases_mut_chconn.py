"""Cases written for mutants of channels and the connection: opening, closing, receiving.

They cover what spec/channels.md and spec/flow.md require and the suite let survive
(conformance/MUTATION.md). Each case tests a requirement a surviving mutant of the core
(channels/channel.py, channels/connection.py, channels/receiving.py, channels/recvbuf.py)
broke; the mutant it kills is listed in tests/conformance/kills_chconn.py, which CI runs.
"""

from __future__ import annotations

from typing import Any

from p2pos.proto.channels import frames as ch
from p2pos.proto.errors import ErrorCode

from .cases_channels import QUIET, SERVICES, Packet, Peer, _acked_by, ack_of, expect_close, expect_open, payload
from .checks import expect, expect_eq, short
from .iut import Iut
from .reference import IUT, IUT_INDEX, establish
from .registry import case

STREAM, MESSAGE = ch.ChannelKind.STREAM, ch.ChannelKind.MESSAGE
APP = int(ErrorCode.APPLICATION_CLOSE)


def _session_fields() -> dict[str, Any]:
    """The fields of a responder's ``conn_session`` (spec/conformance.md §3.7), without ``channel_config``."""
    return {
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


def _config_bounds(iut: Iut, bad: tuple[dict[str, Any], ...], good: dict[str, Any]) -> None:
    """Each of ``bad`` is refused; then ``good``, at the edge of every bound, is taken."""
    fields = _session_fields()
    for config in bad:
        answer = iut.call("conn_session", **fields, channel_config={**QUIET, **config})
        expect(answer.get("ok") is False, f"conn_session with channel_config {config} was taken: {short(answer)}")
    answer = iut.call("conn_session", **fields, channel_config={**QUIET, **good})
    expect(answer.get("ok") is True, f"conn_session with the valid channel_config {good} failed: {short(answer)}")


# -- configuration (channels.md §8) -----------------------------------------------------------------


@case(
    "ch/err/11",
    section="channels.md §8",
    title="max_datagram_size 65508 and stream_frame_size 65001 are refused; 65507 and 65000 are taken",
    requirements=("CH-8.1",),
)
def _(iut: Iut) -> str | None:
    _config_bounds(
        iut,
        ({"max_datagram_size": 65508}, {"stream_frame_size": 65001}),
        {"max_datagram_size": 65507, "stream_frame_size": 65000},
    )
    return None


@case(
    "ch/err/12",
    section="channels.md §8",
    title="one below the least §8 allows is refused; sizes at 1200 and windows, buffers and limits at 1 are taken",
    requirements=("CH-8.1",),
)
def _(iut: Iut) -> str | None:
    least = {"channel_window": 1, "send_buffer": 1, "max_channels": 1, "message_queue": 1}
    _config_bounds(
        iut,
        (
            {"max_datagram_size": 1199},
            {"stream_frame_size": 1199},
            *({name: 0} for name in least),
        ),
        {"max_datagram_size": 1200, "stream_frame_size": 1200, **least},
    )
    return None


# -- receiving (channels.md §3.2, §3.3, flow.md §1-§3) ---------------------------------------------


@case(
    "ch/recv/1",
    section="channels.md §3.2",
    title="a repeated STREAM_FIN or CLOSE_CHANNEL after channel_ended changes nothing: no second channel_ended",
    requirements=("CH-3.2.2", "CH-3.2.4", "FLOW-1.4", "FLOW-2.1.5", "CONF-3.7.19"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    # ``sink`` never finishes its own direction: the channels stay open, so the repeats reach them.
    stream = peer.open("sink")
    fin = ch.Stream(channel_id=stream, offset=0, data=payload(30), fin=True)
    reply = peer.send(fin, at=0.1)
    ended = [e for e in reply.events("channel_ended") if e.get("channel_id") == stream]
    expect(len(ended) == 1, f"one channel_ended for the STREAM_FIN, got {short(reply.answer.get('events'))}")
    reply = peer.send(fin, at=0.2)  # a retransmission, as after a lost ACK
    expect_open(reply, "a repeated STREAM_FIN with the same final size")
    expect_eq(reply.events("channel_ended"), [], "events for a repeated STREAM_FIN (channel_ended again)")
    messages = peer.open("sink", kind=MESSAGE)
    reply = peer.send(ch.CloseChannel(channel_id=messages), at=0.3)
    ended = [e for e in reply.events("channel_ended") if e.get("channel_id") == messages]
    expect(len(ended) == 1, f"one channel_ended for the CLOSE_CHANNEL, got {short(reply.answer.get('events'))}")
    reply = peer.send(ch.CloseChannel(channel_id=messages), at=0.4)
    expect_open(reply, "a repeated CLOSE_CHANNEL")
    expect_eq(reply.events("channel_ended"), [], "events for a repeated CLOSE_CHANNEL (channel_ended again)")
    return None


@case(
    "ch/recv/2",
    section="channels.md §3.3",
    title="the RESET answering the IUT's may carry exactly the highest offset received, or exactly the limit",
    requirements=("CH-3.3.5", "CH-3.3.6", "FLOW-1.5", "FLOW-3.3.1"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)  # channel_window 4096: the IUT's limit on each channel
    for at, answer in ((0.1, 100), (0.2, QUIET["channel_window"])):
        channel_id = peer.open("sink")
        peer.send(ch.Stream(channel_id=channel_id, offset=0, data=payload(100)), at=at)
        reply = peer.call("conn_reset", channel_id=channel_id, code="APPLICATION_CLOSE")
        expect(
            any(f.channel_id == channel_id for f in reply.frames(ch.Reset)),
            f"no RESET for channel {channel_id}: {short(reply.packets, 200)}",
        )
        reply = peer.send(ch.Reset(channel_id=channel_id, code=APP, final_size=answer), at=at + 0.01)
        expect_open(reply, f"the answering RESET with final size {answer} (100 bytes received, limit 4096)")
    peer.open_echo()  # the connection still works
    return None


@case(
    "ch/recv/3",
    section="flow.md §2.1",
    title="overlapping STREAM frames in any order, across gaps and below the read offset, reassemble byte for byte",
    requirements=("FLOW-2.1.1", "FLOW-2.1.2", "FLOW-2.1.3", "FLOW-2.1.5", "CONF-3.7.5"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = peer.open_echo()
    data = payload(600, seed=7)
    # (offset, end): most pieces overlap data held (ahead of a gap, or already read), at offsets
    # whose bits differ from the piece's own, so that an offset computed wrongly shows.
    pieces = ((100, 150), (120, 180), (300, 320), (290, 330), (0, 120), (170, 370), (50, 90), (360, 600))
    read = b""
    for i, (start, end) in enumerate(pieces):
        reply = peer.send(
            ch.Stream(channel_id=channel_id, offset=start, data=data[start:end], fin=end == len(data)),
            at=0.1 + i * 0.001,
        )
        expect_open(reply, f"STREAM [{start}, {end})")
        read += b"".join(bytes.fromhex(e["data"]) for e in reply.events("channel_data"))
    expect_eq(read, data, "what the IUT's application read (channel_data)")
    for _ in range(10):
        got, final = peer.stream_bytes(channel_id)
        if final is not None:
            break
        peer.ack()
        peer.timer(peer.now + 0.05)
    expect_eq(got, data, "the echoed stream")
    expect_eq(final, len(data), "the final size of the echoed stream")
    return None


class _DefaultsPeer(Peer):
    """A responder ``Peer`` whose IUT keeps the defaults (channels.md §8) of the ``defaults`` among QUIET's fields."""

    def __init__(self, iut: Iut, *, defaults: tuple[str, ...]) -> None:
        self.iut = iut
        self.now = 0.0
        self.received: list[Packet] = []
        config = {name: value for name, value in QUIET.items() if name not in defaults}
        self.link = establish(iut, "responder", channels={"services": list(SERVICES), "channel_config": config})
        self.next_id, self.iut_parity = 0, 1
        self.first = self._absorb({"events": []}, self.link.trailing)
        if self.received:
            self.ack()


@case(
    "ch/open/10",
    section="channels.md §8",
    title="with the default channel_window the IUT accepts a channel with a valid window and echoes its data",
    requirements=("CH-2.2.2", "CH-2.2.3", "CH-8.1", "CONF-3.7.3", "CONF-3.7.5"),
)
def _(iut: Iut) -> str | None:
    peer = _DefaultsPeer(iut, defaults=("channel_window",))
    channel_id = peer.open("echo")
    expect_open(peer.last, "an OPEN to echo with the default channel_config")
    accepts = [f for f in peer.last.frames(ch.Accept) if f.channel_id == channel_id]
    expect(len(accepts) == 1, f"no ACCEPT for channel {channel_id}: {short(peer.last.packets, 200)}")
    window = accepts[0].initial_max_data
    expect(0 < window < 2**62, f"ACCEPT initial_max_data {window} is not a window a frame can carry")
    data = payload(min(window, 5000), seed=11)
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=0, data=data, fin=True), at=0.1)
    expect_open(reply, f"{len(data)} bytes within the IUT's window {window}")
    for _ in range(10):
        got, final = peer.stream_bytes(channel_id)
        if final is not None:
            break
        peer.ack()
        peer.timer(peer.now + 0.05)
    expect_eq(got, data, "the echoed stream")
    return f"default channel window {window}"


# -- the end of a connection (channels.md §9) ---------------------------------------------------------


@case(
    "ch/close/4",
    section="channels.md §9.5",
    title="at the end a stream with a FIN but a gap and an ended message channel get channel_reset; ended streams not",
    requirements=("CH-3.2.2", "CH-3.2.4", "CH-9.5.1", "CH-9.4.5"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    # ``sink`` never finishes its own direction: every channel stays open until the end.
    ended = peer.open("sink")
    reply = peer.send(ch.Stream(channel_id=ended, offset=0, data=payload(10), fin=True), at=0.1)
    expect(
        any(e.get("channel_id") == ended for e in reply.events("channel_ended")),
        f"no channel_ended for the stream {ended} after all of it: {short(reply.answer.get('events'))}",
    )
    gap = peer.open("sink")
    reply = peer.send(ch.Stream(channel_id=gap, offset=10, data=payload(10), fin=True), at=0.2)
    expect(
        not any(e.get("channel_id") == gap for e in reply.events("channel_ended")),
        f"channel_ended for the stream {gap} with bytes 0-9 missing: {short(reply.answer.get('events'))}",
    )
    messages = peer.open("sink", kind=MESSAGE)
    reply = peer.send(ch.CloseChannel(channel_id=messages), at=0.3)
    expect(
        any(e.get("channel_id") == messages for e in reply.events("channel_ended")),
        f"no channel_ended for the message channel {messages}: {short(reply.answer.get('events'))}",
    )
    reply = peer.call("conn_close", code="APPLICATION_CLOSE", reason="bye")
    expect_close(reply, ErrorCode.APPLICATION_CLOSE, "conn_close with APPLICATION_CLOSE")
    resets = {e.get("channel_id"): e.get("code") for e in reply.events("channel_reset")}
    expect_eq(
        resets,
        {gap: "APPLICATION_CLOSE", messages: "APPLICATION_CLOSE"},
        f"channel_reset events at the end (stream {ended} ended, stream {gap} has a gap, "
        f"message channel {messages} ended)",
    )
    return None


# -- timers (conformance.md §3.7) ---------------------------------------------------------------------


@case(
    "ch/live/5",
    section="recovery.md §7.2",
    title="conn_timer at exactly the reported timer runs what is due: after the PMTU raise timer it lies later",
    requirements=("REC-7.2.1", "CONF-3.7.6", "CONF-3.7.13"),
)
def _(iut: Iut) -> str | None:
    # MAX_PLPMTU 1210 is within the search granularity of BASE_PLPMTU: the search completes at once
    # without confirming MAX_PLPMTU, so PMTU_RAISE_TIMER (600 s) is the only timer left.
    peer = Peer(iut, pmtu_probing=True, max_datagram_size=1210, idle_timeout=5000.0)
    timer = peer.call("conn_timer").answer.get("timer")
    fired = []
    while timer is not None and timer < 2000.0:
        reply = peer.timer(float(timer))
        expect_open(reply, f"conn_timer at {timer}")
        if reply.packets:
            peer.ack()
        after = reply.answer.get("timer")
        expect(
            after is None or after > timer,
            f"conn_timer at exactly the reported timer {timer} left the timer at {after}: what was due did not run",
        )
        fired.append(timer)
        timer = after
    expect(bool(fired), "the IUT reported no timer (PMTU_RAISE_TIMER) before 2000 s")
    return f"timers {fired}"


@case(
    "ch/recv/4",
    section="channels.md §4",
    title="with the default max_ack_delay a PING is acknowledged within 25 ms",
    requirements=("CH-4.5", "CH-4.18"),
)
def _(iut: Iut) -> str | None:
    peer = _DefaultsPeer(iut, defaults=("max_ack_delay",))
    pn = peer.link.next_counter
    peer.send(ch.Ping(), at=1.0)
    return _acked_by(peer, pn, 1.0)


@case(
    "ch/fatal/16",
    section="channels.md §2.4",
    title="an OPEN of index 101, beyond MAX_CHANNELS 2 and the initial 100, closes with CHANNEL_LIMIT",
    requirements=("CH-2.2.11", "CH-2.4.8", "CH-11.1", "ERR-1.23"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, max_channels=2)
    reply = peer.send(ch.Open(channel_id=202, kind=STREAM, service="echo", initial_max_data=100), at=0.1)
    expect(not reply.frames(ch.Accept), "the IUT accepted channel 202 (index 101), beyond MAX_CHANNELS 2")
    expect(not reply.frames(ch.Refuse), "the IUT refused channel 202 (index 101) instead of closing the connection")
    expect_close(reply, ErrorCode.CHANNEL_LIMIT, "an OPEN of index 101 with MAX_CHANNELS 2")
    return None


@case(
    "ch/recv/5",
    section="frames.md §1",
    title="every frame after a packet's leading STREAM or ACK frames is acted on: OPEN, more STREAM, STREAM_FIN",
    requirements=("FRA-1.3", "FRA-1.4", "FRA-5.1", "FLOW-2.1.1", "CONF-3.7.3", "CONF-3.7.5"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    first = peer.open_echo()
    second = peer.next_id
    peer.next_id += 2
    reply = peer.send(
        ch.Stream(channel_id=first, offset=0, data=b"hello "),
        ch.Stream(channel_id=first, offset=6, data=b"world"),
        ch.Open(channel_id=second, kind=STREAM, service="echo", initial_max_data=65536),
        ch.Stream(channel_id=second, offset=0, data=b"hi", fin=True),
        at=0.1,
    )
    expect_open(reply, "a packet of STREAM, STREAM, OPEN, STREAM_FIN")
    expect(
        any(f.channel_id == second for f in reply.frames(ch.Accept)),
        f"no ACCEPT for channel {second}, opened after two STREAM frames: {short(reply.packets, 200)}",
    )
    expect_eq(peer.stream_bytes(first), (b"hello world", None), f"the echo of channel {first}")
    expect_eq(peer.stream_bytes(second), (b"hi", 2), f"the echo of channel {second} (opened mid-packet)")
    more = payload(400, seed=14)  # two STREAM frames and nothing else, longer than 256 bytes together
    reply = peer.send(
        ch.Stream(channel_id=first, offset=11, data=more[:200]),
        ch.Stream(channel_id=first, offset=211, data=more[200:]),
        at=0.15,
    )
    expect_open(reply, "a packet of two STREAM frames (400 bytes)")
    reply = peer.send(
        ack_of(p.pn for p in peer.received),
        ch.Stream(channel_id=first, offset=411, data=b"!", fin=True),
        at=0.2,
    )
    expect_open(reply, "a packet of ACK, STREAM_FIN")
    for _ in range(10):
        got = peer.stream_bytes(first)
        if got[1] is not None:
            break
        peer.ack()
        peer.timer(peer.now + 0.05)
    expect_eq(got, (b"hello world" + more + b"!", 412), f"the echo of channel {first}")
    return None


@case(
    "ch/open/12",
    section="channels.md §2.4",
    title="with MAX_CHANNELS 2, OPENs of indices 3 and 99 (below 100) are not accepted: REFUSE with CHANNEL_LIMIT",
    requirements=("CH-2.4.1", "CH-2.4.3", "ERR-1.23"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, max_channels=2)
    for at, channel_id in ((0.1, 6), (0.2, 198)):
        reply = peer.send(ch.Open(channel_id=channel_id, kind=STREAM, service="echo", initial_max_data=100), at=at)
        index = channel_id // 2
        expect(
            not reply.frames(ch.Accept), f"the IUT accepted channel {channel_id} (index {index}) beyond MAX_CHANNELS 2"
        )
        expect_open(reply, f"an OPEN of index {index}, below 100 (CH-2.4.3: refuse, do not close)")
        refusals = [f for f in reply.frames(ch.Refuse) if f.channel_id == channel_id]
        expect(len(refusals) == 1, f"no REFUSE of channel {channel_id}: {short(reply.packets, 200)}")
        expect_eq(
            refusals[0].code, int(ErrorCode.CHANNEL_LIMIT), f"REFUSE code of channel {channel_id} (CHANNEL_LIMIT)"
        )
    return None


@case(
    "ch/idle/3",
    section="channels.md §9.2",
    title="with keepalive_interval above idle_timeout the IUT, woken at its reported timers, closes at idle_timeout",
    requirements=("CH-9.2.1", "CONF-3.7.6", "CONF-3.7.13"),
)
def _(iut: Iut) -> str | None:
    # The IUT initiates: as the controlling side it has a keepalive timer (paths.md PTH-7.4).
    peer = Peer(iut, role="initiator", idle_timeout=2.0, keepalive_interval=5.0)
    reply = peer.send(ch.Ping(), at=1.0)  # the last packet from the runner: the idle timeout ends at 3.0
    for _ in range(10):
        reported = reply.answer.get("timer")
        expect(reported is not None, f"the IUT reported no timer at {peer.now} with its idle timeout at 3.0")
        timer = float(reported or 0.0)
        expect(
            timer <= 3.0,
            f"at {peer.now} the IUT reported its timer at {timer}, after its idle timeout (3.0): "
            "a driver that wakes it then closes late",
        )
        reply = peer.timer(timer)
        if reply.close is not None:
            break
    expect_close(reply, ErrorCode.IDLE_TIMEOUT, "idle_timeout 2 s after the last packet")
    expect_eq(peer.now, 3.0, "when the IUT closed (2 s after the runner's last packet)")
    return None


@case(
    "ch/open/11",
    section="channels.md §2.2",
    title="as initiator the IUT takes the runner's REFUSE and ACCEPT of its channels (ids 0 and 2)",
    requirements=("CH-2.2.1", "CH-2.2.5", "CH-3.4.1", "CONF-3.7.19"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, role="initiator")
    refused = int(peer.call("conn_open", service="chat", kind="stream").answer["channel_id"])
    accepted = int(peer.call("conn_open", service="voice", kind="message").answer["channel_id"])
    expect_eq((refused, accepted), (0, 2), "the initiator IUT's channel ids")
    reply = peer.send(
        ch.Refuse(channel_id=refused, code=int(ErrorCode.SERVICE_UNKNOWN), reason="none"),
        ch.Accept(channel_id=accepted, initial_max_data=1000),
        at=0.1,
    )
    expect_open(reply, "a REFUSE and an ACCEPT of the initiator IUT's channels")
    got = [
        (e.get("type"), e.get("channel_id")) for e in reply.events("channel_refused") + reply.events("channel_opened")
    ]
    expect_eq(got, [("channel_refused", refused), ("channel_opened", accepted)], "the IUT's events")
    return None


@case(
    "ch/err/13",
    section="channels.md §2.6",
    title="after the runner's channel 2 (index 1) closed, its STREAM and a repeated OPEN are ignored",
    requirements=("CH-2.6.1", "CH-2.2.10", "CH-3.1.2", "CH-3.3.4"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    peer.open_echo()
    channel_id = peer.open_echo()  # index 1: an odd index
    expect_eq(channel_id, 2, "the runner's second channel id")
    reply = peer.send(ch.Reset(channel_id=channel_id, code=APP, final_size=0), at=0.1)
    expect(bool(reply.events("channel_reset")), f"no channel_reset for channel {channel_id}: {short(reply.answer)}")
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=0, data=b"late"), at=0.2)
    expect_open(reply, f"a STREAM for channel {channel_id}, closed since")
    expect(not reply.answer.get("events"), f"events for a closed channel's STREAM: {short(reply.answer)}")
    again = ch.Open(channel_id=channel_id, kind=STREAM, service="echo", initial_max_data=65536)
    reply = peer.send(again, at=0.3)
    expect_open(reply, f"a repeated OPEN of channel {channel_id}, closed since")
    expect(not reply.frames(ch.Accept), f"a second ACCEPT of channel {channel_id}: {short(reply.packets, 200)}")
    expect(not reply.answer.get("events"), f"events for a repeated OPEN: {short(reply.answer)}")
    return None


@case(
    "ch/data/12",
    section="channels.md §6.1",
    title="on a message channel the runner opened, a lost echoed message is not sent again: its budget is 0",
    requirements=("CH-6.1.1", "FLOW-2.3.2"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = peer.open_echo(kind=MESSAGE)
    lost = b"echoed once, lost"
    reply = peer.send(ch.Message(channel_id=channel_id, message_id=0, data=lost), at=0.1)
    first = [p.pn for p in reply.packets if any(isinstance(f, ch.Message) and f.data == lost for f in p.frames)]
    expect(len(first) == 1, f"the echo of message 0 did not leave in one packet: {short(reply.packets, 200)}")
    for i in range(1, 5):  # one echo each, acknowledged below: the packet threshold makes the first lost
        peer.send(ch.Message(channel_id=channel_id, message_id=i, data=b"message %d" % i), at=0.1 + i * 0.001)
    for _ in range(6):
        peer.send(ack_of(p.pn for p in peer.received if p.pn != first[0]), at=peer.now + 0.02)
        peer.timer(peer.now + 0.2)
    again = [p.pn for p in peer.received for f in p.frames if isinstance(f, ch.Message) and f.data == lost]
    expect_eq(again, first, "the packets carrying the echo of message 0 (lost; budget 0: never sent again)")
    return f"the echo only in packet {first[0]}"


@case(
    "ch/data/13",
    section="conformance.md §3.7",
    title="conn_send takes no byte beyond send_buffer while nothing is acknowledged",
    requirements=("CONF-3.7.14",),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, send_buffer=1000)
    channel_id = int(peer.call("conn_open", service="files", kind="stream").answer["channel_id"])
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=65536), at=0.1)
    reply = peer.call("conn_send", channel_id=channel_id, data=payload(1000, seed=12), fin=False)
    expect_eq(reply.answer.get("accepted"), 1000, "accepted of 1000 bytes with send_buffer 1000")
    for n in (1, 10):
        reply = peer.call("conn_send", channel_id=channel_id, data=payload(n, seed=13), fin=False)
        expect_eq(reply.answer.get("accepted"), 0, f"accepted of {n} more bytes with send_buffer 1000 full")
    return None


@case(
    "ch/live/6",
    section="channels.md §9.3",
    title="an ACK sent on the ACK timer carries no keepalive PING, and the next leaves keepalive_interval after it",
    requirements=("CH-9.3.1",),
)
def _(iut: Iut) -> str | None:
    # The IUT initiates (the controlling side keeps the path alive, paths.md §7); its last packet left at 0.
    peer = Peer(iut, role="initiator", keepalive_interval=2.0)
    peer.send(ch.Ping(), at=0.5)
    reply = peer.timer(0.5 + 0.025)  # max_ack_delay: the ACK of the PING is due
    expect(bool(reply.frames(ch.Ack)) or bool(peer.received_acks()), "no ACK of the runner's PING by max_ack_delay")
    early = [p.pn for p in peer.received if any(isinstance(f, ch.Ping) for f in p.frames)]
    expect(not early, f"the IUT sent a PING (packets {early}) before its keepalive interval (2 s after 0)")
    # Any packet refreshes the path (its NAT bindings): the ACK at 0.525 s moves the keepalive to 2.525 s.
    reply = peer.timer(2.5)
    expect(not reply.frames(ch.Ping), f"a keepalive PING at 2.5, 2 s after the ACK: {short(reply.packets, 200)}")
    reply = peer.timer(2.525)
    expect(bool(reply.frames(ch.Ping)), f"no keepalive PING at 2.525: {short(reply.packets, 200)}")
    return None


@case(
    "ch/data/14",
    section="conformance.md §3.7",
    title="with send_buffer 1000 an echo of 3000 bytes still comes back whole: the buffer drains and takes the rest",
    requirements=("CONF-3.7.5", "CONF-3.7.14", "FLOW-2.1.1"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, send_buffer=1000)
    channel_id = peer.open_echo()
    data = payload(3000, seed=15)
    peer.send(ch.Stream(channel_id=channel_id, offset=0, data=data, fin=True), at=0.1)
    for _ in range(20):
        got, final = peer.stream_bytes(channel_id)
        if final is not None:
            break
        peer.ack()
        peer.timer(peer.now + 0.05)
    expect_eq(got, data, "the echoed stream (3000 bytes through a send buffer of 1000)")
    expect_eq(final, len(data), "the final size of the echoed stream")
    return None


@case(
    "ch/fatal/17",
    section="channels.md §2.2",
    title="an ACCEPT of the runner's channel 2, below the IUT's own ids 1 and 3, closes with PROTOCOL_VIOLATION",
    requirements=("CH-2.2.15",),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    peer.open_echo()
    runner = peer.open_echo()
    ours = [int(peer.call("conn_open", service="chat", kind="stream").answer["channel_id"]) for _ in range(2)]
    expect_eq((runner, ours), (2, [1, 3]), "the channel ids (runner, IUT)")
    reply = peer.send(ch.Accept(channel_id=runner, initial_max_data=1000), at=0.1)
    expect_close(reply, ErrorCode.PROTOCOL_VIOLATION, f"an ACCEPT of the runner's channel {runner}")
    return None


@case(
    "ch/close/5",
    section="channels.md §9.4",
    title="a graceful close waits for bytes flow control holds back; they and the FIN arrive before CLOSE",
    requirements=("CH-9.4.2", "CH-9.4.3", "CONF-3.7.12"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = int(peer.call("conn_open", service="files", kind="stream").answer["channel_id"])
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=100), at=0.1)
    data = payload(1000, seed=16)
    peer.call("conn_send", channel_id=channel_id, data=data, fin=False)
    reply = peer.call("conn_close", code="NO_ERROR")
    expect_open(reply, "a graceful close with 900 bytes held back by the runner's window")
    for _ in range(3):  # everything sent is acknowledged: only the window holds the rest back
        reply = peer.ack()
        expect_open(reply, "a graceful close with bytes held back by the window, all sent ones acknowledged")
        reply = peer.timer(peer.now + 0.05)
        expect_open(reply, "a graceful close with bytes held back by the window, all sent ones acknowledged")
    expect_eq(peer.stream_bytes(channel_id), (data[:100], None), "the stream within the window of 100")
    peer.send(ch.MaxChannelData(channel_id=channel_id, maximum=2000), at=peer.now + 0.01)
    for _ in range(10):
        reply = peer.ack()
        if reply.close is None:
            reply = peer.timer(peer.now + 0.05)
        if reply.close is not None:
            break
    expect_eq(peer.stream_bytes(channel_id), (data, len(data)), "the stream delivered before the close")
    expect_close(reply, ErrorCode.NO_ERROR, "the graceful close once everything was acknowledged")
    return None
