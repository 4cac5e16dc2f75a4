"""Early stream data with OPEN (spec/channels.md §2.7): cases ``ch/early/``, and ``ch/reset/13`` (a RESET of a
channel still opening goes with its OPEN, channels.md CH-3.3.12).

The runner plays the IUT's peer (``Peer`` of cases_channels.py).  As acceptor the IUT must hold
the data that came with an OPEN until its application accepts, drop it when it refuses, take up
to EARLY_WINDOW bytes whatever window it advertised and no more before it accepts.  As opener it
may send up to EARLY_WINDOW bytes before the ACCEPT, each packet of them with the channel's OPEN;
the ACCEPT's window then replaces that credit; a REFUSE is answered with a RESET carrying what it
sent; messages wait for the ACCEPT.  (ch/flow/10, "no stream data before the ACCEPT", is retired.)
"""

from __future__ import annotations

from typing import Any

from p2pos.proto.channels import frames as ch
from p2pos.proto.channels.flow import EARLY_WINDOW
from p2pos.proto.errors import ErrorCode

from .cases_channels import Peer, Reply, ack_of, expect_close, expect_open, payload
from .checks import expect, expect_eq, short
from .iut import Iut
from .registry import case

EARLY = "channels.md §2.7"
STREAM, MESSAGE = ch.ChannelKind.STREAM, ch.ChannelKind.MESSAGE


def _on(reply: Reply, cls: type[Any], channel_id: int) -> list[Any]:
    return [f for f in reply.frames(cls) if getattr(f, "channel_id", None) == channel_id]


def _sent(peer: Peer, cls: type[Any], channel_id: int) -> list[Any]:
    """Every frame of type ``cls`` on ``channel_id`` the IUT sent so far."""
    return [f for p in peer.received for f in p.frames if isinstance(f, cls) and f.channel_id == channel_id]


def _highest(peer: Peer, channel_id: int) -> int:
    return max((f.offset + len(f.data) for f in _sent(peer, ch.Stream, channel_id)), default=0)


def _types(reply: Reply, channel_id: int) -> list[str]:
    events = reply.answer.get("events") or []
    return [str(e.get("type")) for e in events if e.get("channel_id") == channel_id]


def _open_frame(channel_id: int, service: str, kind: ch.ChannelKind = STREAM) -> ch.Open:
    return ch.Open(channel_id=channel_id, kind=kind, service=service, initial_max_data=65536)


def _iut_opens(peer: Peer, service: str = "files", kind: str = "stream") -> int:
    reply = peer.call("conn_open", service=service, kind=kind)
    channel_id = reply.answer.get("channel_id")
    expect(isinstance(channel_id, int), f"conn_open must answer a channel_id, got {short(reply.answer)}")
    assert isinstance(channel_id, int)
    return channel_id


def _settle(peer: Peer, start: float, rounds: int = 4) -> None:
    """Acknowledge everything and let the IUT's timers run a few times (its congestion window opens)."""
    for step in range(rounds):
        peer.ack()
        peer.timer(start + step * 0.02)


@case(
    "ch/early/1",
    section=EARLY,
    title="data and FIN sent with the OPEN reach the IUT's application only after it accepts, all of them",
    requirements=("CH-2.7.3", "CH-2.7.6", "CH-2.2.13"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = peer.next_id
    peer.next_id += 2
    request = payload(1500, seed=5)
    reply = peer.send(
        _open_frame(channel_id, "echo"),
        ch.Stream(channel_id=channel_id, offset=0, data=request, fin=True),
        at=0.1,
    )
    expect_open(reply, "an OPEN with early data and its FIN in one packet")
    types = _types(reply, channel_id)
    expect(
        types[:3] == ["channel_requested", "channel_data", "channel_ended"],
        f"channel_requested first, then the data and its end; got {types}",
    )
    got = bytes.fromhex("".join(e["data"] for e in reply.events("channel_data") if e.get("channel_id") == channel_id))
    expect_eq(got, request, "the early data the IUT's application read")
    expect(bool(_on(reply, ch.Accept, channel_id)), f"no ACCEPT of channel {channel_id}: {short(reply.packets)}")
    echoed = b"".join(f.data for f in sorted(_on(reply, ch.Stream, channel_id), key=lambda f: f.offset))
    expect_eq(echoed, request, "the echo of the early data, sent with the ACCEPT")
    return None


@case(
    "ch/early/2",
    section=EARLY,
    title="early data on a refused channel is discarded without an error, also what arrives after the REFUSE",
    requirements=("CH-2.7.7", "CH-2.6.1", "CH-2.2.4"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = peer.next_id
    peer.next_id += 2
    reply = peer.send(
        _open_frame(channel_id, "nothing-here"),
        ch.Stream(channel_id=channel_id, offset=0, data=payload(3000, seed=2)),
        at=0.1,
    )
    expect_open(reply, "early data on a channel to a service the IUT does not provide")
    refuses = _on(reply, ch.Refuse, channel_id)
    expect(len(refuses) == 1, f"no REFUSE of channel {channel_id}: {short(reply.packets)}")
    expect(
        "channel_data" not in _types(reply, channel_id),
        f"the IUT's application got data of a refused channel: {short(reply.answer)}",
    )
    # More early data sent before the REFUSE arrived (with the OPEN again, CH-2.7.2), then the RESET
    # that answers the REFUSE with the final size (CH-2.7.7).
    late = peer.send(
        _open_frame(channel_id, "nothing-here"),
        ch.Stream(channel_id=channel_id, offset=3000, data=payload(1000, seed=3)),
        at=0.2,
    )
    expect_open(late, "early data that arrives after the REFUSE")
    expect("channel_data" not in _types(late, channel_id), f"data of a refused channel: {short(late.answer)}")
    answer = peer.send(ch.Reset(channel_id=channel_id, code=int(ErrorCode.CHANNEL_REFUSED), final_size=4000), at=0.3)
    expect_open(answer, "the RESET answering the REFUSE, final size 4000")
    # The connection goes on: another channel, to echo, works.
    other = peer.open_echo()
    reply = peer.send(ch.Stream(channel_id=other, offset=0, data=b"after"), at=0.4)
    expect_eq(b"".join(f.data for f in _on(reply, ch.Stream, other)), b"after", "the echo on the next channel")
    return None


@case(
    "ch/early/3",
    section=EARLY,
    title="EARLY_WINDOW bytes before the IUT accepts are fine, one more is a FLOW_CONTROL_ERROR",
    requirements=("CH-2.7.5", "CH-2.7.1", "FLOW-3.1.1"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = peer.next_id
    peer.next_id += 2
    # Up to EARLY_WINDOW is fine: the last early byte, with the OPEN (the IUT accepts after the packet).
    reply = peer.send(
        _open_frame(channel_id, "sink"), ch.Stream(channel_id=channel_id, offset=EARLY_WINDOW - 1, data=b"z"), at=0.1
    )
    expect_open(reply, f"early data ending at EARLY_WINDOW ({EARLY_WINDOW})")
    second = peer.next_id
    peer.next_id += 2
    reply = peer.send(_open_frame(second, "sink"), ch.Stream(channel_id=second, offset=EARLY_WINDOW, data=b"!"), at=0.2)
    expect_close(reply, ErrorCode.FLOW_CONTROL_ERROR, f"an early byte at offset {EARLY_WINDOW}, before the ACCEPT")
    return None


@case(
    "ch/early/4",
    section=EARLY,
    title="with a window below EARLY_WINDOW the IUT advertises it, takes EARLY_WINDOW bytes, and no more",
    requirements=("CH-2.7.4", "FLOW-3.1.1", "CH-2.2.3"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, channel_window=1000)
    channel_id = peer.next_id
    peer.next_id += 2
    reply = peer.send(_open_frame(channel_id, "sink"), ch.Stream(channel_id=channel_id, offset=0, data=b"a"), at=0.1)
    accepts = _on(reply, ch.Accept, channel_id)
    expect(
        len(accepts) == 1 and accepts[0].initial_max_data == 1000,
        f"an ACCEPT with the configured window 1000: {short(accepts)}",
    )
    # Bytes sent before the ACCEPT arrived may still come, up to EARLY_WINDOW: no error.
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=EARLY_WINDOW - 1, data=b"b"), at=0.2)
    expect_open(reply, f"a byte ending at EARLY_WINDOW ({EARLY_WINDOW}) with an advertised window of 1000")
    raised = [f.maximum for p in peer.received for f in p.frames if isinstance(f, ch.MaxChannelData)]
    limit = max([EARLY_WINDOW, *raised])
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=limit, data=b"c"), at=0.3)
    expect_close(reply, ErrorCode.FLOW_CONTROL_ERROR, f"a byte at {limit}, beyond EARLY_WINDOW and every limit")
    return None


@case(
    "ch/early/5",
    section=EARLY,
    title="the IUT sends early data with its OPEN, each packet of it with the OPEN, at most EARLY_WINDOW bytes",
    requirements=("CH-2.7.1", "CH-2.7.2", "FLOW-3.2.5", "CH-5.2.3"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = _iut_opens(peer)
    data = payload(EARLY_WINDOW + 5000, seed=7)
    reply = peer.call("conn_send", channel_id=channel_id, data=data, fin=True)
    expect(bool(_on(reply, ch.Stream, channel_id)), f"no early data right after conn_send: {short(reply.packets, 300)}")
    _settle(peer, 0.1)
    for packet in peer.received:
        streams = [f for f in packet.frames if isinstance(f, ch.Stream) and f.channel_id == channel_id]
        if not streams:
            continue
        before = packet.frames[: packet.frames.index(streams[0])]
        expect(
            any(isinstance(f, ch.Open) and f.channel_id == channel_id for f in before),
            f"packet {packet.pn} carries early data of channel {channel_id} without its OPEN before it",
        )
    early = _highest(peer, channel_id)
    expect_eq(early, EARLY_WINDOW, "the early bytes sent before the ACCEPT (all the early credit)")
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=65536), at=0.3)
    _settle(peer, 0.35, rounds=6)
    got = bytearray(len(data))
    for f in _sent(peer, ch.Stream, channel_id):
        got[f.offset : f.offset + len(f.data)] = f.data
    expect_eq(bytes(got), data, "the whole stream after the ACCEPT")
    expect(any(f.fin for f in _sent(peer, ch.Stream, channel_id)), "no FIN on the stream")
    return f"{len([p for p in peer.received if _sent_in(p, channel_id)])} packets carried the stream"


def _sent_in(packet: Any, channel_id: int) -> bool:
    return any(isinstance(f, ch.Stream) and f.channel_id == channel_id for f in packet.frames)


@case(
    "ch/early/6",
    section=EARLY,
    title="an ACCEPT below the early bytes sent replaces the early credit: nothing new until MAX_CHANNEL_DATA",
    requirements=("CH-2.7.4", "FRA-4.5.2", "FLOW-3.2.5"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = _iut_opens(peer)
    peer.call("conn_send", channel_id=channel_id, data=payload(3 * EARLY_WINDOW, seed=4), fin=False)
    _settle(peer, 0.1)
    expect_eq(_highest(peer, channel_id), EARLY_WINDOW, "the early bytes")
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=100), at=0.2)
    _settle(peer, 0.25)
    expect_eq(_highest(peer, channel_id), EARLY_WINDOW, "the bytes sent after an ACCEPT with a window of 100")
    peer.send(ch.MaxChannelData(channel_id=channel_id, maximum=EARLY_WINDOW + 300), at=0.4)
    _settle(peer, 0.45)
    expect_eq(_highest(peer, channel_id), EARLY_WINDOW + 300, "the bytes sent after MAX_CHANNEL_DATA")
    return None


@case(
    "ch/early/7",
    section=EARLY,
    title="a REFUSE of the IUT's early stream is reported and answered by a RESET carrying the bytes it sent",
    requirements=("CH-2.7.7", "CH-2.2.5"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = _iut_opens(peer)
    peer.call("conn_send", channel_id=channel_id, data=payload(2000, seed=6), fin=False)
    _settle(peer, 0.1, rounds=2)
    sent = _highest(peer, channel_id)
    expect_eq(sent, 2000, "the early bytes")
    reply = peer.send(ch.Refuse(channel_id=channel_id, code=int(ErrorCode.SERVICE_UNKNOWN), reason="no"), at=0.2)
    refused = [e for e in reply.events("channel_refused") if e.get("channel_id") == channel_id]
    expect(bool(refused), f"no channel_refused event: {short(reply.answer)}")
    resets = _on(reply, ch.Reset, channel_id)
    if not resets:
        resets = _on(peer.timer(0.25), ch.Reset, channel_id)
    expect(len(resets) == 1, f"no RESET answering the REFUSE of channel {channel_id}: {short(peer.received[-3:])}")
    expect_eq(resets[0].final_size, sent, "the RESET's final size (the early bytes sent)")
    expect_eq(resets[0].code, int(ErrorCode.CHANNEL_REFUSED), "the RESET's code")
    return None


@case(
    "ch/early/8",
    section=EARLY,
    title="messages wait for the ACCEPT; a MESSAGE that comes with an OPEN is dropped",
    requirements=("CH-2.7.8",),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = _iut_opens(peer, service="voice", kind="message")
    reply = peer.call("conn_send", channel_id=channel_id, data=b"hello", fin=False)
    _settle(peer, 0.1, rounds=2)
    expect(not _sent(peer, ch.Message, channel_id), "a MESSAGE before the ACCEPT")
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=0), at=0.2)
    _settle(peer, 0.25, rounds=2)
    expect(bool(_sent(peer, ch.Message, channel_id)), "no MESSAGE after the ACCEPT")
    theirs = peer.next_id
    peer.next_id += 2
    reply = peer.send(
        _open_frame(theirs, "echo", MESSAGE), ch.Message(channel_id=theirs, message_id=0, data=b"early"), at=0.3
    )
    expect_open(reply, "a MESSAGE in the packet of its channel's OPEN")
    expect(
        "channel_message" not in _types(reply, theirs),
        f"the IUT delivered a MESSAGE that came before its channel was accepted: {short(reply.answer)}",
    )
    return None


@case(
    "ch/early/9",
    section=EARLY,
    title="a RESET with a final size beyond EARLY_WINDOW before the IUT accepts: FLOW_CONTROL_ERROR",
    requirements=("CH-2.7.5", "FLOW-3.3.1"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    third = peer.next_id
    reply = peer.send(
        _open_frame(third, "sink"),
        ch.Reset(channel_id=third, code=int(ErrorCode.APPLICATION_CLOSE), final_size=EARLY_WINDOW + 1),
        at=0.1,
    )
    expect_close(reply, ErrorCode.FLOW_CONTROL_ERROR, "a RESET beyond EARLY_WINDOW before the ACCEPT")
    return None


@case(
    "ch/reset/13",
    section="channels.md §3.3",
    title="a RESET of a channel still opening travels with its OPEN, also when sent again",
    requirements=("CH-3.3.12", "CH-3.3.9"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = _iut_opens(peer)
    peer.call("conn_send", channel_id=channel_id, data=payload(300, seed=8), fin=False)
    # The runner acknowledges nothing of it: as if the OPEN and the early data were lost.
    replies = [peer.call("conn_reset", channel_id=channel_id, code="APPLICATION_CLOSE")]
    lost = [p.pn for r in replies for p in r.packets]
    # Later packets (PINGs) acknowledged alone: what came before them is declared lost and sent again.
    pings = [peer.call("conn_ping") for _ in range(4)]
    later = [p.pn for r in pings for p in r.packets]
    expect(len(later) >= 3, f"the IUT sent {len(later)} packets for 4 PINGs")
    replies.append(peer.send(ack_of(later), at=0.05))
    replies.extend(peer.timer(at) for at in (0.1, 0.3, 0.6))
    checked = 0
    for reply in replies:
        for packet in reply.packets:
            frames = [f for f in packet.frames if isinstance(f, ch.Open | ch.Reset) and f.channel_id == channel_id]
            if any(isinstance(f, ch.Reset) for f in frames):
                expect(
                    [type(f) for f in frames] == [ch.Open, ch.Reset],
                    f"packet {packet.pn} carries the RESET of opening channel {channel_id} without its OPEN "
                    f"before it: {short(packet.frames, 300)}",
                )
                checked += 1
    expect(checked >= 2, f"the RESET went {checked} times (first in packets {lost}); expected it sent again")
    return f"{checked} packets carried the RESET"
