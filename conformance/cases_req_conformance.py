"""Cases for the rules of spec/conformance.md itself: the control protocol (spec/conformance.md §6).

Ids: ``conf/quit/`` the end of a case (§3.5), ``conf/send/`` what ``conn_send`` answers on a
channel-layer connection (§3.7), where the runner plays the IUT's peer (``Peer`` of
cases_channels.py) and checks the frames the IUT sends.  Each case names the requirement ids it
tests.
"""

from __future__ import annotations

from p2pos.proto.channels import frames as ch

from .cases_channels import Peer, Reply, payload
from .checks import CaseFailed, expect, expect_eq, short
from .iut import Iut
from .reference import establish
from .registry import case

ENDING, CONNECTION = "conformance.md §3.5", "conformance.md §3.7"
#: Seconds the runner gives an IUT to exit after ``quit`` (CONF-3.5.2).
QUIT_GRACE = 1.0
#: The size of each ``conn_send`` while the runner fills the IUT's send buffer, and the most it
#: writes before it gives up waiting for the buffer to fill (the reference's holds 1 MiB).
CHUNK, MOST = 65536, 8 * 1024 * 1024
#: The credit the runner gives once the buffer is full, so that the IUT frees some room.
RELEASE = 1000
#: Rounds (an ACK, then the IUT's timer) without a packet from the IUT before the runner stops waiting.
STALL = 20
#: A message larger than any packet of a connection without PMTU probing (recovery.md §7:
#: 1200 bytes) or beyond the largest datagram the reference ever probes (1452 bytes).
TOO_LARGE = 2000


@case(
    "conf/quit/1",
    section=ENDING,
    title="quit is answered {ok: true} and the IUT exits with status 0, also with a session open",
    requirements=("CONF-3.5.1",),
)
def _(iut: Iut) -> str | None:
    establish(iut, "responder")  # a live session: quitting must not depend on an idle IUT
    try:
        answer = iut.call("quit")
    except CaseFailed as exc:
        raise CaseFailed(f"no answer to quit: {exc}") from None
    expect(answer.get("ok") is True, f"the answer to quit: expected {{'ok': true}}, got {short(answer)}")
    status = iut.exit_status(QUIT_GRACE)
    expect(status is not None, f"the IUT had not exited {QUIT_GRACE} s after answering quit")
    expect_eq(status, 0, "the IUT's exit status after quit")
    return None


# -- conn_send (conformance.md §3.7) ---------------------------------------------------------------


def _accepted(reply: Reply, sent: bytes) -> int:
    """The ``accepted`` of a ``conn_send`` answer on a stream: an integer from 0 to ``len(sent)``."""
    accepted = reply.answer.get("accepted")
    expect(
        isinstance(accepted, int) and not isinstance(accepted, bool) and 0 <= accepted <= len(sent),
        f"conn_send of {len(sent)} bytes answered accepted {short(accepted)}",
    )
    assert isinstance(accepted, int)
    return accepted


@case(
    "conf/send/1",
    section=CONNECTION,
    title="conn_send with fin on a full send buffer: the FIN follows the bytes taken, not the whole data",
    requirements=("CONF-3.7.15",),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = int(peer.call("conn_open", service="files", kind="stream").answer["channel_id"])
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=0), at=0.1)  # no credit: nothing leaves
    taken = bytearray()
    seed = 0
    while len(taken) < MOST:  # fill the send buffer until it takes only part of a write
        seed += 1
        data = payload(CHUNK, seed=seed)
        accepted = _accepted(peer.call("conn_send", channel_id=channel_id, data=data, fin=False), data)
        taken += data[:accepted]
        if accepted < len(data):
            break
    else:
        raise CaseFailed(f"the IUT's send buffer took {len(taken)} bytes without filling up")
    full = len(taken)
    # Credit for a few bytes, acknowledged: the IUT may now take about that many more.
    peer.send(ch.MaxChannelData(channel_id=channel_id, maximum=RELEASE), at=peer.now + 0.01)
    peer.ack()
    last = payload(40000, seed=seed + 1)
    accepted = _accepted(peer.call("conn_send", channel_id=channel_id, data=last, fin=True), last)
    taken += last[:accepted]
    # All the credit it needs: the IUT sends everything it took, then the FIN.
    peer.send(ch.MaxData(maximum=1 << 40), ch.MaxChannelData(channel_id=channel_id, maximum=1 << 40), at=peer.now)
    got, end, idle = b"", None, 0
    while idle < STALL:  # acknowledge everything, run the IUT's timers, until the FIN or a stall
        got, end = peer.stream_bytes(channel_id)
        if end is not None and len(got) >= end:
            break
        before = len(peer.received)
        reply = peer.ack()
        if not reply.packets:  # nothing yet (pacing): run the IUT's timer when it asks
            timer = reply.answer.get("timer")
            due = timer if isinstance(timer, int | float) and timer > peer.now else peer.now + 0.01
            peer.timer(min(due, peer.now + 0.5))
        idle = 0 if len(peer.received) > before else idle + 1
    expect(
        end is not None,
        f"no FIN after conn_send with fin took {accepted} of {len(last)} bytes "
        f"({len(got)} of the {len(taken)} bytes taken arrived)",
    )
    expect_eq(end, len(taken), f"the final size of the stream after conn_send with fin took {accepted} of {len(last)}")
    expect_eq(len(got), len(taken), "the stream bytes received up to the FIN")
    differ = next((i for i, (a, b) in enumerate(zip(got, taken, strict=True)) if a != b), None)
    expect(differ is None, f"the stream's bytes differ from the bytes taken at offset {differ}")
    return f"the buffer filled at {full} bytes; the write with fin took {accepted} of {len(last)}"


@case(
    "conf/send/2",
    section=CONNECTION,
    title="conn_send of a message larger than a packet is an error answer: no accepted, no MESSAGE frame",
    requirements=("CONF-3.7.17",),
)
def _(iut: Iut) -> str | None:
    peer = Peer(iut)
    channel_id = int(peer.call("conn_open", service="chat", kind="message").answer["channel_id"])
    peer.send(ch.Accept(channel_id=channel_id, initial_max_data=65536), at=0.1)
    big = payload(TOO_LARGE, seed=3)
    answer = iut.call("conn_send", channel_id=channel_id, data=big, fin=False, now=peer.now)
    expect(
        answer.get("ok") is False,
        f"conn_send of a {TOO_LARGE}-byte message must be an error answer, got {short(answer, 200)}",
    )
    expect("accepted" not in answer, f"an error answer with accepted: {short(answer, 200)}")
    expect_eq(answer.get("error"), "RECORD_TOO_LARGE", f"the error for a {TOO_LARGE}-byte message")
    small = payload(100, seed=4)  # the channel still takes a message that fits
    reply = peer.call("conn_send", channel_id=channel_id, data=small, fin=False)
    expect_eq(reply.answer.get("accepted"), len(small), "accepted for a 100-byte message")
    if not reply.frames(ch.Message):
        peer.timer(peer.now + 0.05)
    sent = [f.data for p in peer.received for f in p.frames if isinstance(f, ch.Message) and f.channel_id == channel_id]
    expect_eq(sent, [small], "the MESSAGE frames sent: only the message that fits, never a part of the other")
    return None
