"""Cases written for mutants of sending that the suite let survive (conformance/MUTATION.md): the
send buffer, packets, retransmission, ACKs (spec/channels.md, spec/recovery.md, spec/flow.md).

Each case tests a requirement a surviving mutant of the core (channels/sendbuf.py,
channels/sending.py) broke; the mutant it kills is listed in tests/conformance/kills_chsend.py,
which CI runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from p2pos.proto.channels import frames as ch
from p2pos.proto.errors import ErrorCode
from p2pos.proto.session.record import OVERHEAD as RECORD_OVERHEAD

from .cases_channels import Peer, _acked_by, ack_of, expect_open, payload
from .cases_req_channels import _iut_channel, _Peer
from .cases_req_frames import _to_connection_limit
from .cases_req_recovery import LatePeer, _is_probe
from .cases_req_retransmit import DropPeer, first
from .checks import CaseFailed, Unsupported, expect, expect_eq, short
from .impaired import ImpairedPeer, Sent
from .iut import Iut
from .registry import case

OPEN, ACKS, RESET = "channels.md §2.2", "channels.md §4", "channels.md §3.3"
SIZES, PMTU = "channels.md §1", "channels.md §5.5"
STREAM, MESSAGE = ch.ChannelKind.STREAM, ch.ChannelKind.MESSAGE


@case(
    "ch/send/1",
    section=RESET,
    title="an ACK of a MESSAGE the IUT sent on a channel it reset since is taken quietly",
    requirements=("CH-3.3.2", "CH-6.1", "CONF-3.7.7"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = peer.open_echo(kind=MESSAGE)
    peer.ack()
    reply = peer.send(ch.Message(channel_id=channel_id, message_id=0, data=b"echo me"), at=0.1)
    carried = [p.pn for p in reply.packets if any(isinstance(f, ch.Message) for f in p.frames)]
    expect(len(carried) == 1, f"the IUT must echo the message at once: {short(reply.packets, 200)}")
    reset = peer.call("conn_reset", channel_id=channel_id, code="APPLICATION_CLOSE")
    expect(bool(reset.frames(ch.Reset)), f"conn_reset sent no RESET: {short(reset.packets, 200)}")
    peer.now = 0.11
    late = peer.send(ack_of(carried), at=0.11)  # the message's packet only: the channel is gone here
    expect_open(late, "an ACK of a packet that carried a MESSAGE of a channel reset since")
    again = peer.open_echo(kind=MESSAGE)  # the connection still works
    reply = peer.send(ch.Message(channel_id=again, message_id=0, data=b"still here"), at=0.12)
    echoed = [f.data for f in reply.frames(ch.Message) if f.channel_id == again]
    expect_eq(echoed, [b"still here"], "the message echoed on a new channel after the late ACK")
    return None


@case(
    "ch/send/2",
    section=OPEN,
    title="with max_channels 2, a third channel held at once is refused even after a refused and a forgotten one",
    requirements=("CH-2.2.12", "CH-2.2.13", "CH-2.4.1"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, max_channels=2)
    refused = peer.open("no-such-service")  # index 0: refused by the application, forgotten at once
    expect(bool(peer.last.frames(ch.Refuse)), f"no REFUSE for channel {refused}: {short(peer.last.packets, 200)}")
    held = [peer.open_echo(), peer.open_echo()]  # indices 1 and 2: the peer now holds 2 channels
    peer.next_id += 2  # skip index 3 for now
    beyond = peer.open("echo")  # index 4, at or above the limit advertised: refused with CHANNEL_LIMIT
    refusals = [f for f in peer.last.frames(ch.Refuse) if f.channel_id == beyond]
    expect(
        len(refusals) == 1 and refusals[0].code == int(ErrorCode.CHANNEL_LIMIT),
        f"channel {beyond} (index 4) must be refused with CHANNEL_LIMIT: {short(peer.last.packets, 200)}",
    )
    third = 6  # index 3: below every limit advertised, but the runner already holds max_channels channels
    reply = peer.send(ch.Open(channel_id=third, kind=STREAM, service="echo", initial_max_data=65536), at=0.2)
    expect(
        not [f for f in reply.frames(ch.Accept) if f.channel_id == third],
        f"the IUT accepted a third channel while the runner holds {held}, with max_channels 2",
    )
    refusals = [f for f in reply.frames(ch.Refuse) if f.channel_id == third]
    expect(
        len(refusals) == 1 and refusals[0].code == int(ErrorCode.CHANNEL_LIMIT),
        f"channel {third} must be refused with CHANNEL_LIMIT: {short(reply.packets, 200)}",
    )
    return None


@case(
    "ch/send/3",
    section=PMTU,
    title="with the runner's records capped at 1422 bytes, the IUT still probes the 1452-byte MAX_PLPMTU",
    requirements=("CH-5.5.1", "CH-5.1.1", "REC-7.3.1", "REC-7.1.1"),
)
def _(iut: Iut) -> str | None:
    limit = 1452 - RECORD_OVERHEAD  # a probe of MAX_PLPMTU is a record of exactly this plaintext
    peer = _Peer(iut, ref_max_plaintext=limit, pmtu_probing=True)
    for i in range(4):  # a few round trips, in case the IUT waits for its first RTT sample
        peer.send(ch.Ping(), at=0.05 * (i + 1))
        peer.ack()
    expect(
        max(peer.sizes) <= limit + RECORD_OVERHEAD,
        f"a datagram of {max(peer.sizes)} bytes: the runner accepts records of {limit} bytes of plaintext",
    )
    probes = [
        p.pn
        for p in peer.received
        if {type(f) for f in p.frames} == {ch.Ping, ch.Padding} and len(ch.encode_frames(p.frames)) == limit
    ]
    expect(
        bool(probes),
        f"no 1452-byte PMTU probe (PING and PADDING), which the runner's limit allows: sizes {sorted(set(peer.sizes))}",
    )
    return None


@case(
    "ch/send/4",
    section=SIZES,
    title="a message of nearly a full packet echoed beside a due ACK of many ranges: no datagram above 1200 bytes",
    requirements=("CH-1.4", "CH-4.13", "CH-2.5.2"),
)
def _(iut: Iut) -> str | None:
    peer = _Peer(iut)
    channel_id = peer.open_echo(kind=MESSAGE)
    peer.ack()
    largest = (1200 - RECORD_OVERHEAD) - 32  # the base PMTU's largest message (channels.md §2.5)
    counter = peer.link.next_counter
    sent: list[bytes] = []
    ack_len = 0
    for round_ in range(6):
        for _ in range(12 if round_ == 0 else 1):  # every other packet number: a range more each time (§4)
            reply = peer.send_raw(ch.encode_frame(ch.Ping()), at=peer.now + 0.001, counter=counter)
            counter += 2
            acks = reply.frames(ch.Ack)
            ack_len = len(ch.encode_frame(acks[-1])) if acks else ack_len
        # The next ACK has one range more (about 2 bytes): the message then overfills the packet
        # by a byte or so if it is put beside the ACK.
        message = payload(min(largest, 1170 - (ack_len + 2) - 4), seed=round_)
        sent.append(message)
        frame = ch.Message(channel_id=channel_id, message_id=round_, data=message)
        reply = peer.send_raw(ch.encode_frame(frame), at=peer.now + 0.001, counter=counter)
        counter += 2
        expect_open(reply, f"message {round_}")
    echoed = [f.data for p in peer.received for f in p.frames if isinstance(f, ch.Message)]
    expect_eq([len(m) for m in echoed], [len(m) for m in sent], "the sizes of the messages echoed")
    expect(echoed == sent, "the messages echoed differ from those sent")
    expect(
        max(peer.sizes) <= 1200,
        f"a datagram of {max(peer.sizes)} bytes: the path MTU is 1200 (no PMTU probing)",
    )
    return f"message sizes {[len(m) for m in sent]}"


@case(
    "ch/send/5",
    section=ACKS,
    title="after two channels were echoed side by side and acknowledged, ACK-only packets get no ACK-only answer",
    requirements=("CH-4.6", "CH-4.17"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    first, second = peer.open_echo(), peer.open_echo()
    peer.ack()
    # Both channels have data in one packet: the IUT echoes them in turn (round robin, §5.2)
    # and, each stream sent whole, has nothing more to send on either.
    reply = peer.send(
        ch.Stream(channel_id=first, offset=0, data=payload(300, seed=1)),
        ch.Stream(channel_id=second, offset=0, data=payload(300, seed=2)),
        at=0.5,
    )
    expect(bool(reply.packets), "the IUT echoed nothing at once")
    peer.ack()
    _acked_by(peer, peer.link.next_counter - 2, 0.5)
    peer.timer(0.6)
    _no_ack_only_answers(peer)
    got = [peer.stream_bytes(first)[0], peer.stream_bytes(second)[0]]
    expect(got == [payload(300, seed=1), payload(300, seed=2)], "the echoed streams differ from those sent")
    return None


@case(
    "ch/send/6",
    section="channels.md §3.2",
    title="a message channel to 'sink' stays open for the IUT's messages after the peer's CLOSE_CHANNEL",
    requirements=("CH-3.2.3", "CH-3.2.7", "CH-6.1", "CONF-3.7.9"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = peer.open("sink", kind=MESSAGE)
    expect(bool(peer.last.frames(ch.Accept)), f"no ACCEPT for channel {channel_id}: {short(peer.last.packets, 200)}")
    peer.ack()  # the ACCEPT is acknowledged: that completes nothing
    reply = peer.send(ch.CloseChannel(channel_id=channel_id), at=0.1)
    expect(
        "channel_closed" not in [e.get("type") for e in reply.answer.get("events") or []],
        f"channel_closed after the peer's CLOSE_CHANNEL alone: the IUT's direction is open: {short(reply.answer)}",
    )
    peer.ack()
    peer.timer(0.2)
    reply = peer.call("conn_send", channel_id=channel_id, data=b"after the peer's end", fin=False)
    sent = [f.data for f in reply.frames(ch.Message) if f.channel_id == channel_id]
    expect_eq(sent, [b"after the peer's end"], "the IUT's message on its open direction")
    return None


@case(
    "ch/send/8",
    section="channels.md §6.1",
    title="with message_queue 257, the 258th message queued while the channel opens drops the oldest one",
    requirements=("CH-6.1.2", "FLOW-2.3.1", "CONF-3.7.2"),
)
def _(iut: Iut) -> str | None:
    bound = 257  # above 256, so that the bound is not a small integer in any sense
    peer = Peer(iut, message_queue=bound)
    channel_id = _iut_channel(peer, kind="message", service="chat")
    messages = [i.to_bytes(2, "big") for i in range(bound + 1)]
    for message in messages:  # the channel is still opening: nothing may be sent yet
        reply = peer.call("conn_send", channel_id=channel_id, data=message, fin=False)
        expect(not reply.frames(ch.Message), f"a MESSAGE on a channel not yet accepted: {short(reply.packets, 200)}")
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=65536), at=0.2)
    for i in range(10):
        peer.ack()
        peer.timer(0.25 + 0.05 * i)
    sent = [f.data for p in peer.received for f in p.frames if isinstance(f, ch.Message) and f.channel_id == channel_id]
    expect(messages[0] not in sent, f"the oldest of {bound + 1} messages was sent: a queue of {bound} keeps it")
    expect_eq(sorted(set(sent)), messages[1:], "the messages sent (all but the oldest)")
    return None


@case(
    "ch/send/9",
    section="flow.md §3.3",
    title="a peer's RESET after some bytes were read releases the rest up to its final size (a MAX_DATA)",
    requirements=("FLOW-3.3.1", "FLOW-3.3.2", "CH-3.3.4"),
)
def _(iut: Iut) -> str | None:
    mib = 1 << 20
    peer = Peer(iut, channel_window=2 * mib)
    channel_id = peer.open("sink")
    peer.send(ch.Stream(channel_id=channel_id, offset=0, data=payload(100)), at=0.05)  # read at once
    final = 700_000  # the rest never arrives: more than half the connection window
    reply = peer.send(ch.Reset(channel_id=channel_id, code=int(ErrorCode.APPLICATION_CLOSE), final_size=final), at=0.1)
    expect_open(reply, f"a RESET with final size {final}")
    if not reply.frames(ch.MaxData):
        peer.timer(0.15)
    limits = [f.maximum for p in peer.received for f in p.frames if isinstance(f, ch.MaxData)]
    expect(
        bool(limits) and max(limits) >= final + mib,
        f"no MAX_DATA of at least {final} + 1 MiB after a RESET released {final - 100} unread bytes: got {limits}",
    )
    return f"MAX_DATA {limits}"


@case(
    "ch/send/12",
    section="channels.md §5.2",
    title="a full-size message that no longer fits the packet after another channel's chunk goes in the next one",
    requirements=("CH-5.2.1", "CH-2.5.2", "CH-1.4", "CONF-3.7.5", "CONF-3.7.7"),
)
def _(iut: Iut) -> str | None:
    peer = _Peer(iut)
    stream, messages = peer.open_echo(), peer.open_echo(kind=MESSAGE)
    peer.ack()
    largest = (1200 - RECORD_OVERHEAD) - 32  # the base PMTU's largest message (channels.md §2.5)
    data, message = payload(100, seed=3), payload(largest, seed=4)
    # The stream's echo is queued first: its chunk leaves too little room for the message.
    reply = peer.send(
        ch.Stream(channel_id=stream, offset=0, data=data),
        ch.Message(channel_id=messages, message_id=0, data=message),
        at=0.1,
    )
    expect_open(reply, "a stream chunk and a full-size message in one packet")
    peer.ack()
    peer.timer(0.2)
    echoed = [f.data for p in peer.received for f in p.frames if isinstance(f, ch.Message)]
    expect_eq([len(m) for m in echoed], [largest], "the sizes of the messages echoed")
    expect(echoed == [message], "the message echoed differs from the one sent")
    expect_eq(peer.stream_bytes(stream)[0], data, "the stream echoed")
    expect(max(peer.sizes) <= 1200, f"a datagram of {max(peer.sizes)} bytes: the path MTU is 1200 (no PMTU probing)")
    return None


@case(
    "ch/send/13",
    section=SIZES,
    title="a short chunk of one stream, then a long one of another, both freed by one packet: no datagram above 1200",
    requirements=("CH-1.4", "CH-5.2.1", "FLOW-2.2.4"),
)
def _(iut: Iut) -> str | None:
    peer = _Peer(iut)
    short_id, long_id = peer.open_echo(window=0), peer.open_echo(window=0)  # no credit to echo yet
    peer.ack()
    small, large = payload(100, seed=5), payload(2000, seed=6)
    peer.send(ch.Stream(channel_id=short_id, offset=0, data=small), at=0.1)
    peer.send(ch.Stream(channel_id=long_id, offset=0, data=large[:1000]), at=0.1)
    peer.send(ch.Stream(channel_id=long_id, offset=1000, data=large[1000:]), at=0.1)
    expect(not [p for p in peer.received if any(isinstance(f, ch.Stream) for f in p.frames)], "data beyond credit 0")
    peer.ack()
    # One packet raises both limits: the short stream's 100 bytes go first, the long one's fill the rest.
    reply = peer.send(
        ch.MaxChannelData(channel_id=short_id, maximum=65536),
        ch.MaxChannelData(channel_id=long_id, maximum=65536),
        at=0.2,
    )
    expect_open(reply, "MAX_CHANNEL_DATA for both channels")
    for i in range(5):
        peer.ack()
        peer.timer(0.25 + 0.05 * i)
    expect_eq(peer.stream_bytes(short_id)[0], small, "the short stream echoed")
    expect_eq(peer.stream_bytes(long_id)[0], large, "the long stream echoed")
    expect(max(peer.sizes) <= 1200, f"a datagram of {max(peer.sizes)} bytes: the path MTU is 1200 (no PMTU probing)")
    return None


@case(
    "ch/send/14",
    section="channels.md §3.2",
    title="an echoed stream whose last packet is acknowledged before the first still closes the channel",
    requirements=("CH-3.2.1", "CH-3.2.7", "CH-6.1"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = peer.open_echo()
    peer.ack()
    data = payload(2000, seed=7)
    peer.send(ch.Stream(channel_id=channel_id, offset=0, data=data[:1000]), at=0.1)
    peer.send(ch.Stream(channel_id=channel_id, offset=1000, data=data[1000:], fin=True), at=0.1)
    expect_eq(peer.stream_bytes(channel_id), (data, len(data)), "the echoed stream and its FIN")
    carrying = [p.pn for p in peer.received if any(isinstance(f, ch.Stream) for f in p.frames)]
    expect(len(carrying) >= 2, f"internal: the echo came in one packet: {carrying}")
    events: list[str] = []
    for pn in reversed(carrying):  # the last chunk (and its FIN) first, then the others, the first last
        reply = peer.send(ack_of([pn]), at=peer.now + 0.001)
        events += [str(e.get("type")) for e in reply.answer.get("events") or [] if e.get("channel_id") == channel_id]
    if "channel_closed" not in events:
        reply = peer.timer(peer.now + 0.05)
        events += [str(e.get("type")) for e in reply.answer.get("events") or [] if e.get("channel_id") == channel_id]
    expect(
        "channel_closed" in events,
        f"no channel_closed once every byte and the FIN of the echo were acknowledged (in reverse order): {events}",
    )
    return None


@case(
    "ch/send/15",
    section="channels.md §6",
    title="a lost packet of echoed data and an ACK brings back its bytes, and no control frame (an ACK is not resent)",
    requirements=("CH-6.2", "CH-6.3"),
)
def _(iut: Iut) -> str | None:
    peer = ImpairedPeer(iut, drop_data=(1,))
    channel_id = peer.open_echo()
    peer.ack()
    data = payload(400, seed=11)
    # Packet number 4: the echo's packet carries an ACK whose largest is 4 (the type code of ACCEPT,
    # frames.md §3): an implementation that took the ACK for a control frame would rebuild one.
    counter = max(4, peer.link.next_counter)
    for i in range(4):
        frame = ch.Stream(channel_id=channel_id, offset=100 * i, data=data[100 * i : 100 * (i + 1)])
        peer.send_raw(ch.encode_frame(frame), at=0.1 + 0.01 * i, counter=counter if i == 0 else None)
        peer.ack_all()
    peer.timer(0.2)
    peer.ack_all()
    peer.timer(0.3)
    expect(bool(peer.lost), f"internal: no packet was dropped ({peer.describe()})")
    echoed, _end = peer.stream_bytes(channel_id)
    expect_eq(echoed, data, f"the echoed stream, its lost bytes sent again ({peer.describe()})")
    after = peer.sent[peer.sent.index(peer.lost[0]) + 1 :]
    again = [
        type(f).__name__
        for s in after
        for f in s.packet.frames
        if isinstance(f, ch.Accept | ch.Open | ch.MaxData | ch.MaxChannelData | ch.MaxChannels)
    ]
    expect(not again, f"control frames sent after the loss of a packet of data and an ACK: {again}")
    return None


@case(
    "ch/send/16",
    section="channels.md §6",
    title="ACKs that skip a lost chunk do not count the FIN as acknowledged: a lost lone FIN is sent again",
    requirements=("CH-6.3", "FLOW-2.2.2", "CH-3.2.1"),
)
def _(iut: Iut) -> str | None:
    peer = ImpairedPeer(iut, drop_data=(3, 6), idle_timeout=60.0)
    channel_id = _iut_channel(peer)
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=65536), at=0.05)
    data = payload(4000, seed=13)
    reply = peer.call("conn_send", channel_id=channel_id, data=data, fin=False)
    expect_eq(reply.answer.get("accepted"), len(data), "conn_send accepted")
    peer.ack_all()  # acknowledges the second and fourth chunks at once: the third, between them, was lost
    peer.run(0.5)  # the third chunk is sent again (the 5th data packet) and acknowledged
    reply = peer.call("conn_send", channel_id=channel_id, data=b"", fin=True)
    expect_open(reply, "conn_send of the FIN")
    peer.run(3.0)  # the lone FIN (the 6th data packet) is lost: it must come again
    expect_eq(peer.stream_bytes(channel_id), (data, 4000), f"the stream and its FIN ({peer.describe()})")
    return None


@case(
    "ch/send/17",
    section="channels.md §6",
    title="a lost MAX_CHANNEL_DATA that nothing newer replaces comes again with the current limit",
    requirements=("CH-6.2", "CH-6.6", "FLOW-3.1.2"),
)
def _(iut: Iut) -> str | None:
    peer = DropPeer(iut, drop=first(1, lambda f: isinstance(f, ch.MaxChannelData)), idle_timeout=120.0)
    channel_id = peer.open("sink")  # a window of 4096 bytes
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=0, data=payload(3000, seed=17)), at=0.1)
    expect_open(reply, "3000 bytes of the 4096-byte window")
    expect(bool(peer.chosen), "internal: the IUT sent no MAX_CHANNEL_DATA after 3000 of 4096 bytes were read")
    lost = [f.maximum for f in peer.chosen[0].packet.frames if isinstance(f, ch.MaxChannelData)]
    for i in range(3):  # PINGs the runner acknowledges: the loss is found
        peer.now = 0.11 + 0.002 * i
        peer.call("conn_ping")
    peer.now = 0.13
    peer.ack_all()
    peer.run(0.6)
    again = [
        f.maximum
        for s in peer.sent
        if s not in peer.chosen
        for f in s.packet.frames
        if isinstance(f, ch.MaxChannelData) and f.channel_id == channel_id
    ]
    expect(
        bool(again) and min(again) >= lost[0],
        f"the lost MAX_CHANNEL_DATA ({lost}) of channel {channel_id} did not come again: {again} ({peer.describe()})",
    )
    return f"lost {lost}, sent again {again}"


@case(
    "ch/send/18",
    section="channels.md §5.2",
    title="two bulk streams waiting for the window take turns once it opens, one packet each",
    requirements=("CH-5.2.1",),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    first_id, second_id = _iut_channel(peer), _iut_channel(peer)
    peer.send(
        ch.Accept(channel_id=first_id, initial_max_data=1 << 20),
        ch.Accept(channel_id=second_id, initial_max_data=1 << 20),
        at=0.05,
    )
    for channel_id, seed in ((first_id, 1), (second_id, 2)):  # the first fills the window alone
        peer.call("conn_send", channel_id=channel_id, data=payload(40000, seed=seed), fin=False)
    order: list[int] = []
    for i in range(3):
        reply = peer.send(ack_of(p.pn for p in peer.received), at=0.1 + 0.05 * i)
        for p in reply.packets:
            ids = sorted({f.channel_id for f in p.frames if isinstance(f, ch.Stream)})
            order += ids
    expect(second_id in order, f"internal: no data of channel {second_id} after three ACKs: {order}")
    turn = order.index(second_id)
    expect(
        turn <= 1 and order[:4].count(first_id) <= 2,
        f"the channels' packets once the window opened: {order[:12]}: channel {second_id} waited behind {first_id}",
    )
    return f"channels of the packets: {order[:12]}"


@case(
    "ch/send/19",
    section="channels.md §6.1",
    title="with message_queue 2, a lost message waiting to be resent counts: two new echoes drop it",
    requirements=("CH-6.1.2", "FLOW-2.3.1", "CONF-3.7.22"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut, message_queue=2)
    channel_id = peer.open_echo(kind=MESSAGE)
    peer.ack()
    reply = peer.call("conn_send", channel_id=channel_id, data=b"budget 1", fin=False, retransmissions=1)
    if reply.answer.get("retransmissions") != 1:
        raise Unsupported("conn_send does not take retransmissions (spec/conformance.md §3.7)")
    first = [p.pn for p in reply.packets if any(isinstance(f, ch.Message) for f in p.frames)]
    expect(len(first) == 1, f"internal: the message did not leave at once: {short(reply.packets, 200)}")
    for i in range(3):  # three later packets, acknowledged: the message's packet is declared lost
        peer.now = 0.1 + 0.001 * i
        peer.call("conn_ping")
    later = [p.pn for p in peer.received if p.pn > first[0]]
    # One packet: the ACK that makes the first message lost (to be resent: its budget is 1), then two
    # messages to echo: with it waiting, the queue of 2 is full at the second, which drops the oldest.
    peer.send(
        ack_of(later),
        ch.Message(channel_id=channel_id, message_id=0, data=b"echo x"),
        ch.Message(channel_id=channel_id, message_id=1, data=b"echo y"),
        at=0.11,
    )
    peer.ack()
    peer.timer(0.3)
    sent = [f.data for p in peer.received for f in p.frames if isinstance(f, ch.Message) and f.channel_id == channel_id]
    expect_eq(sent, [b"budget 1", b"echo x", b"echo y"], "the IUT's messages: the lost one dropped from the full queue")
    return None


@case(
    "ch/send/20",
    section="frames.md §4.7",
    title="a bulk stream that runs out of connection credit sends no empty STREAM frame",
    requirements=("FRA-4.7.5",),
)
def _(iut: Iut) -> str | None:
    peer, channel_id = _to_connection_limit(iut)
    peer.call("conn_send", channel_id=channel_id, data=payload(1000, seed=20), fin=False)
    for _ in range(3):
        peer.ack()
        peer.timer(peer.now + 0.05)
    empty = [
        p.pn
        for p in peer.received
        for f in p.frames
        if isinstance(f, ch.Stream) and not f.data and not f.fin and f.channel_id == channel_id
    ]
    expect(not empty, f"STREAM frames with no data and no FIN in the IUT's packets {empty}")
    return None


class _ClosedEarly:
    """Stands for the IUT in ``establish``: just before the RESPONSE reaches it, the IUT opens a
    message channel and ends its direction at once (``conn_send`` with ``fin``)."""

    def __init__(self, iut: Iut) -> None:
        self.iut = iut
        self.channel_id: int | None = None

    def ok(self, cmd: str, **fields: Any) -> dict[str, Any]:
        if cmd == "conn_receive" and self.channel_id is None:
            now = fields.get("now", 0.0)
            opened = self.iut.ok("conn_open", service="chat", kind="message", now=now)
            self.channel_id = int(opened["channel_id"])
            self.iut.ok("conn_send", channel_id=self.channel_id, data=b"", fin=True, now=now)
        return self.iut.ok(cmd, **fields)


@case(
    "ch/send/22",
    section="flow.md §2.2",
    title="a stream whose credit stopped it one byte into a write sends the rest intact once credit comes",
    requirements=("CONF-3.7.9", "FLOW-2.2.4", "FLOW-3.1.2"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = _iut_channel(peer)
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=1), at=0.05)  # one byte of credit
    data = payload(300, seed=22)
    for piece in (data[:100], data[100:]):  # the first byte leaves, the rest waits for credit
        peer.call("conn_send", channel_id=channel_id, data=piece, fin=False)
    expect_eq(peer.stream_bytes(channel_id)[0], data[:1], "the stream sent within one byte of credit")
    peer.send(ch.MaxChannelData(channel_id=channel_id, maximum=65536), at=0.1)
    peer.ack()
    peer.timer(0.2)
    expect_eq(peer.stream_bytes(channel_id)[0], data, "the stream once the credit was raised")
    return None


@case(
    "ch/send/23",
    section="channels.md §6",
    title="a lost packet whose ACK names a number equal to a pending ping id brings no PING again",
    requirements=("CH-6.2", "CH-6.3", "CH-6.5"),
)
def _(iut: Iut) -> str | None:
    peer = DropPeer(iut, drop=first(1, lambda f: isinstance(f, ch.Stream)), idle_timeout=120.0)
    channel_id = peer.open_echo()
    # As many pings (acknowledged) as make the next ping id the packet number of the runner's next
    # packet after the ACK below: the ACK in the IUT's answer to that packet names that number.
    count = peer.link.next_counter + 1
    pings = [peer.call("conn_ping").answer.get("ping_id") for _ in range(count)]
    expect(pings == list(range(count)), f"internal: the IUT's ping ids {pings} do not count from 0")
    peer.ack()
    counter = peer.link.next_counter
    data = payload(300, seed=23)
    peer.send_raw(ch.encode_frame(ch.Stream(channel_id=channel_id, offset=0, data=data[:100])), at=0.1)
    expect(bool(peer.chosen), "internal: the echo of the first chunk was not dropped")
    pending = peer.call("conn_ping").answer.get("ping_id")  # its PING leaves right after the lost packet
    expect_eq(pending, counter, "the ping id of the PING after the lost packet (internal)")
    for i in (1, 2):  # two more packets: with them acknowledged, the lost one is 3 behind
        peer.send(ch.Stream(channel_id=channel_id, offset=100 * i, data=data[100 * i : 100 * (i + 1)]), at=0.1)
    ping_pn = max(p.pn for p in peer.received if any(isinstance(f, ch.Ping) for f in p.frames))
    reply = peer.send(ack_of(p.pn for p in peer.received if p.pn != ping_pn), at=0.1002)
    again = [f.offset for f in reply.frames(ch.Stream) if f.channel_id == channel_id]
    expect(0 in again, f"the lost chunk at offset 0 was not sent again at once: {short(reply.packets, 200)}")
    resent = [type(f).__name__ for p in reply.packets for f in p.frames if isinstance(f, ch.Ping)]
    expect(
        not resent,
        f"a PING sent again on the loss of a packet that carried data and an ACK: {short(reply.packets, 200)}",
    )
    return None


def _holds(offset: int) -> Callable[[Sent], bool]:
    """A ``DropPeer`` drop taking the first packet whose STREAM frame holds the byte at ``offset``."""
    return first(1, lambda f: isinstance(f, ch.Stream) and f.offset <= offset < f.offset + len(f.data))


@case(
    "ch/send/24",
    section="flow.md §2.2",
    title="two ranges lost from small writes sent one by one, more written since: both resent intact",
    requirements=("CH-6.3", "FLOW-2.2.2", "CONF-3.7.9"),
)
def _(iut: Iut) -> str | None:
    early, late = _holds(0), _holds(200)
    peer = DropPeer(iut, drop=lambda s: early(s) or late(s), idle_timeout=120.0)
    channel_id = _iut_channel(peer)
    data = payload(700, seed=24)
    # Credit 100 bytes at a time: each write leaves in its own packets; the first chunk (bytes 0..99)
    # and the first half of the third write (200..299) are lost; the last write (400..699) waits.
    steps: list[tuple[str, int]] = [("accept", 100), ("send", 100), ("send", 100), ("credit", 200)]
    steps += [("send", 200), ("credit", 300), ("credit", 400), ("send", 300)]
    written = 0
    for step, value in steps:
        peer.now += 0.001
        if step == "accept":
            peer.send(ch.Accept(channel_id=channel_id, initial_max_data=value))
        elif step == "credit":
            peer.send(ch.MaxChannelData(channel_id=channel_id, maximum=value))
        else:
            reply = peer.call("conn_send", channel_id=channel_id, data=data[written : written + value], fin=False)
            expect_eq(reply.answer.get("accepted"), value, "conn_send accepted")
            written += value
    for _ in range(3):  # later packets, acknowledged with the rest: both losses are found at once
        peer.now += 0.001
        peer.call("conn_ping")
    peer.now += 0.001
    peer.ack_all()
    expect(len(peer.chosen) == 2, f"internal: {len(peer.chosen)} packets dropped, not 2 ({peer.describe()})")
    got = peer.stream_bytes(channel_id)[0]
    expect_eq(len(got), 400, f"the bytes of the stream received, lost ones resent ({peer.describe()})")
    expect(got == data[:400], f"the stream's bytes differ from those written ({peer.describe()})")
    return None


@case(
    "ch/send/25",
    section="channels.md §6",
    title="a lost OPEN of a channel still opening comes again, and a lost odd ping id's PING keeps its id",
    requirements=("CH-6.5", "CH-6.6", "CONF-3.7.11", "CONF-3.7.19"),
)
def _(iut: Iut) -> str | None:
    opens = first(1, lambda f: isinstance(f, ch.Open))
    peer = DropPeer(iut, drop=opens, idle_timeout=120.0)
    pings = [peer.call("conn_ping").answer.get("ping_id") for _ in range(2)]
    expect_eq(pings, [0, 1], "the ping ids of two conn_ping (internal)")
    peer.ack()  # both PINGs acknowledged: ping ids 0 and 1 are done
    peer.now = 0.1
    channel_id = _iut_channel(peer)
    expect(bool(peer.chosen), "internal: the OPEN was not dropped")
    peer.call("conn_ping")  # ping id 2
    peer.drop = first(1, lambda f: isinstance(f, ch.Ping))  # the next PING (ping id 3, odd) is lost
    lost_ping = peer.call("conn_ping").answer.get("ping_id")
    expect_eq(lost_ping, 3, "the ping id of the fourth conn_ping (internal)")
    for i in range(3):  # later packets, acknowledged: the losses are found
        peer.now = 0.11 + 0.001 * i
        peer.call("conn_ping")
    peer.now = 0.12
    peer.ack_all()
    peer.run(0.5)
    peer.ack_all()
    again = [f for s in peer.sent if s not in peer.chosen for f in s.packet.frames if isinstance(f, ch.Open)]
    expect(
        bool(again) and {f.channel_id for f in again} == {channel_id},
        f"the lost OPEN of channel {channel_id} did not come again: {again} ({peer.describe()})",
    )
    acked_ids = [e.get("ping_id") for e in peer.events if e.get("type") == "ping_acknowledged"]
    expect(lost_ping in acked_ids, f"no ping_acknowledged for the lost ping id {lost_ping}: {acked_ids}")
    return None


@case(
    "ch/send/26",
    section="channels.md §6",
    title="a lost CLOSE_CHANNEL comes again exactly as first sent until acknowledged",
    requirements=("CH-6.5", "CH-3.2.3"),
)
def _(iut: Iut) -> str | None:
    peer = DropPeer(iut, drop=first(1, lambda f: isinstance(f, ch.CloseChannel)), idle_timeout=120.0)
    channel_id = peer.open("sink", kind=MESSAGE)
    peer.ack()
    peer.now = 0.1
    reply = peer.call("conn_send", channel_id=channel_id, data=b"last", fin=True)
    expect_open(reply, "conn_send with fin on a message channel")
    expect(bool(peer.chosen), "internal: the CLOSE_CHANNEL was not dropped")
    for i in range(3):  # later packets, acknowledged: the loss is found
        peer.now = 0.11 + 0.001 * i
        peer.call("conn_ping")
    peer.now = 0.12
    peer.ack_all()
    peer.run(0.5)
    again = [
        f.channel_id
        for s in peer.sent
        if s not in peer.chosen
        for f in s.packet.frames
        if isinstance(f, ch.CloseChannel)
    ]
    expect(
        channel_id in again, f"the lost CLOSE_CHANNEL of channel {channel_id} did not come again ({peer.describe()})"
    )
    return None


def _no_ack_only_answers(peer: Peer) -> None:
    """A PING at 1.0 s, acknowledged; then ACK-only packets, which must get no answer (channels.md §4)."""
    peer.send(ch.Ping(), at=1.0)
    _acked_by(peer, peer.link.next_counter - 1, 1.0)
    for i in range(10):  # more than a receiver counts before an ACK may ride along with data (§4)
        reply = peer.send(ack_of(p.pn for p in peer.received), at=1.1 + i * 0.001)
        expect(not reply.packets, f"the IUT answered an ACK-only packet with {short(reply.packets, 200)}")
    reply = peer.timer(1.5)
    expect(not reply.packets, f"the IUT acknowledged ACK-only packets on their own: {short(reply.packets, 200)}")


@case(
    "ch/send/27",
    section=ACKS,
    title="after the IUT's stream and FIN were acknowledged (the runner's side open), ACK-only packets get no answer",
    requirements=("CH-4.6", "CH-4.17"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = _iut_channel(peer)
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=65536), at=0.05)
    reply = peer.call("conn_send", channel_id=channel_id, data=payload(500, seed=27), fin=True)
    expect(bool(reply.frames(ch.Stream)), f"the IUT sent nothing of its stream: {short(reply.packets, 200)}")
    peer.ack()
    peer.timer(0.2)
    expect_eq(peer.stream_bytes(channel_id), (payload(500, seed=27), 500), "the IUT's stream and its FIN")
    _no_ack_only_answers(peer)
    return None


@case(
    "ch/send/28",
    section="channels.md §5.3",
    title="out of connection credit, an ACK answering data for two echo streams is ACK-only: no probe follows",
    requirements=("CH-5.3.2", "REC-4.3.6"),
)
def _(iut: Iut) -> str | None:
    peer, _bulk_id = _to_connection_limit(iut)  # the IUT has used the whole 1 MiB connection credit
    first_id, second_id = peer.open_echo(), peer.open_echo()
    peer.ack()
    peer.now += 0.01
    reply = peer.send(
        ch.Stream(channel_id=first_id, offset=0, data=payload(50, seed=1)),
        ch.Stream(channel_id=second_id, offset=0, data=payload(50, seed=2)),
    )
    expect(not reply.frames(ch.Stream), f"internal: data echoed beyond the connection credit: {short(reply.packets)}")
    start = len(peer.received)
    for i in range(1, 8):  # the runner stays silent: with nothing ack-eliciting in flight, no probe timer
        peer.timer(peer.now + 0.25 * i)
    later = [[type(f).__name__ for f in p.frames] for p in peer.received[start:]]
    expect(not later, f"the IUT sent {later} with nothing ack-eliciting in flight (its last packet was ACK-only)")
    return None


@case(
    "ch/send/30",
    section="channels.md §6",
    title="bytes a PTO probe resent, acknowledged in the packet that declares the first copy lost, are not sent again",
    requirements=("CH-6.1", "CH-6.3", "CH-3.2.1"),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = peer.open_echo()
    peer.ack()
    data = payload(300, seed=30)
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=0, data=data), at=0.1)
    echo = [p.pn for p in reply.packets if any(isinstance(f, ch.Stream) for f in p.frames)]
    expect(len(echo) == 1, f"internal: the 300 bytes were not echoed in one packet: {short(reply.packets, 200)}")
    reply = peer.timer(0.6)  # no ACK: the probe timeout sends the oldest data again (RFC 9002 §6.2.4)
    probes = [p.pn for p in reply.packets if any(isinstance(f, ch.Stream) and f.offset == 0 for f in p.frames)]
    expect(len(probes) >= 1, f"internal: the probe did not carry the echo again: {short(reply.packets, 200)}")
    ping = peer.call("conn_ping")
    later = [p.pn for p in ping.packets]
    expect(len(later) == 1, f"internal: conn_ping sent {short(ping.packets, 200)}")
    # One packet: an ACK of the PING's packet (the first copy, far older, is lost), then an ACK that
    # also covers the probe: its bytes are acknowledged while queued to be resent.
    start = len(peer.received)
    reply = peer.send(ack_of(later), ack_of(later + probes), at=peer.now + 0.0002)
    expect_open(reply, "an ACK of the probe right after an ACK that declared the first copy lost")
    for i in range(3):
        peer.timer(peer.now + 0.05 * (i + 1))
    again = [f.offset for p in peer.received[start:] for f in p.frames if isinstance(f, ch.Stream)]
    expect(not again, f"acknowledged bytes sent again at offsets {again}")
    more = payload(100, seed=31)
    reply = peer.send(ch.Stream(channel_id=channel_id, offset=300, data=more), at=peer.now + 0.01)
    echoed = [(f.offset, f.data) for f in reply.frames(ch.Stream) if f.channel_id == channel_id]
    expect_eq(echoed, [(300, more)], "the echo of 100 more bytes after the acknowledged ones")
    return None


def _probe_sent_last(iut: Iut, controller: str) -> str | None:
    """A PMTU probe is the last packet sent before an ACK of data sent when the window was not used:
    the window must not grow (recovery.md §5.4), so the IUT never has more than the initial window
    in flight (recovery.md §5.1: 12000 bytes at 1200 bytes a datagram)."""
    try:
        peer = LatePeer(iut, congestion_control=controller, pmtu_probing=True)
    except CaseFailed as exc:
        if "'conn_session' failed" in str(exc):  # an IUT need have only one controller (recovery.md §5)
            raise Unsupported(f"the IUT has no {controller} controller (channels.md §8): {exc}") from None
        raise
    channel_id = int(peer.call("conn_open", service="files", kind="stream").answer["channel_id"])
    peer.ack_pns({p.pn for p in peer.received}, at=1.0)  # a first RTT sample of 1 s; the base size confirmed
    # 8000 bytes of credit: the IUT sends them after its next probe (the window has room for more:
    # held by flow control, it is application-limited), leaving the pacer less than a datagram.
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=8000), ch.MaxData(maximum=1 << 40), at=1.0)
    peer.call("conn_send", channel_id=channel_id, data=payload(60000, seed=31), fin=False)
    probes = [s.packet.pn for s in peer.sent if _is_probe(s.packet.frames)]
    data = [s.packet.pn for s in peer.sent if any(isinstance(f, ch.Stream) for f in s.packet.frames)]
    if not (len(probes) == 1 and len(data) >= 6 and probes[0] < data[0]):
        raise Unsupported(f"not a PMTU probe then 6 packets of data: {[(s.packet.pn, s.size) for s in peer.sent]}")
    # The third data packet alone is acknowledged: the probe (3 numbers below) is lost; no window
    # growth (application-limited). Credit comes with it: the IUT sends the probe again, and the
    # pacer holds the data: no longer application-limited, but nothing else leaves.
    acked = set(peer.acked_pns) | {data[2]}
    start = len(peer.sent)
    peer.send(ack_of([data[2]]), ch.MaxChannelData(channel_id=channel_id, maximum=1 << 30), at=1.001)
    again = [s for s in peer.sent[start:] if s.ack_eliciting]
    if not (len(again) == 1 and _is_probe(again[0].packet.frames)):  # pacing is a SHOULD (recovery.md §6)
        raise Unsupported(f"not a probe alone (the pacer holding data) after the ACK: {short(again, 200)}")
    # The other data packets: acknowledged after a probe, and no data, was sent since the last ACK.
    # Counting the probe, more than half the window was in flight then; without it, not (§5.4).
    rest = [pn for pn in data if pn != data[2]]
    acked |= set(rest)
    peer.send(ack_of(rest), at=1.002)
    most = 0
    for _ in range(60):  # no more ACKs: the pacer lets out data until the window is full
        flight = sum(s.size for s in peer.sent if s.ack_eliciting and s.packet.pn not in acked | {probes[0]})
        most = max(most, flight)
        if peer.iut_timer is None or peer.iut_timer > peer.now + 0.5:
            break
        peer.timer(max(peer.now, peer.iut_timer))
    expect(
        most <= 12000,
        f"{controller}: {most} bytes in flight after ACKs of data sent while the window was not used (the last "
        f"send before the second ACK was a PMTU probe, no sample for the controller): the window grew beyond "
        f"the initial 12000 bytes",
    )
    return f"{controller}: at most {most} bytes in flight"


@case(
    "ch/send/31",
    section="channels.md §6.2",
    title="NewReno: a PMTU probe sent after the data is no use of the window: the data's ACK grows nothing",
    requirements=("CH-6.2.1", "REC-5.4.2"),
)
def _(iut: Iut) -> str | None:
    return _probe_sent_last(iut, "newreno")


@case(
    "ch/send/32",
    section="channels.md §6.2",
    title="CUBIC: a PMTU probe sent after the data is no use of the window: the data's ACK grows nothing",
    requirements=("CH-6.2.1", "REC-5.4.2"),
)
def _(iut: Iut) -> str | None:
    return _probe_sent_last(iut, "cubic")
