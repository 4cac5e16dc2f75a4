"""BBR's pacing floor (spec/recovery.md §5.6.3, REC-5.6.3.4), in the impaired-network mode (§3.8).

The side of a transfer that mostly acknowledges (the controlled side, a standby path) sends only
small, application-limited packets; when most of them are lost (a TURN server dropping the
returns), its delivery-rate samples say a few kilobytes a second.  Paced at that rate, a
full-size datagram it must send later (a window update, a retransmission, a reply) waits for a
large part of a second or more.  The floor of one maximum-size datagram per smoothed RTT lets it
go within a round trip.
"""

from __future__ import annotations

from p2pos.proto.channels import frames as ch

from .cases_channels import Reply, ack_of
from .checks import CaseFailed, Unsupported, expect
from .impaired import ImpairedPeer
from .iut import Iut
from .registry import case

BBR_STATES = "recovery.md §5.6.3"
RTT = 0.005
#: The IUT's small packets (echoed 200-byte MESSAGEs, never sent again): one every 10 ms, one in
#: ten acknowledged a round trip later (the rest lost), for 2 s: samples of a few kilobytes a
#: second, far below a datagram per 5 ms RTT, and below what the small packets use of the pacer.
SMALL_EVERY, ACK_ONE_IN, SMALL_FOR, SMALL = 0.01, 10, 2.0, 200
#: The floor lets the reply go within a few round trips (its pacing bucket was never drained, and
#: even an empty one refills a datagram per RTT); at the samples' rate it would take 0.5 s or more.
WITHIN = 0.1
#: Then this many bytes to echo: three full-size datagrams, within the minimum window.
BIG = 3600


class FloorPeer(ImpairedPeer):
    """An ``ImpairedPeer`` that runs the IUT's timers as they come due while it drives the time."""

    def __init__(self, iut: Iut) -> None:
        self.timer_at: float | None = None
        super().__init__(iut, congestion_control="bbr", channel_window=1 << 20)

    def call(self, cmd: str, **fields: object) -> Reply:
        reply = super().call(cmd, **fields)
        timer = reply.answer.get("timer")
        self.timer_at = float(timer) if isinstance(timer, int | float) else None
        return reply

    def until(self, at: float) -> None:
        """Run every IUT timer due before ``at``, then move the time to ``at``."""
        while self.timer_at is not None and self.timer_at <= at:
            self.timer(max(self.timer_at, self.now))
        self.now = at

    def ack_newest(self, acked: set[int]) -> None:
        """Acknowledge, one round trip later, the newest ack-eliciting packet the IUT sent (and those before)."""
        newest = [s.packet.pn for s in self.sent if s.ack_eliciting and s.packet.pn not in acked]
        self.until(self.now + RTT)
        if newest:
            acked.add(max(newest))
            self.send(ack_of(sorted(acked)[-32:]))


@case(
    "ch/bbr/25",
    section=BBR_STATES,
    title="BBR paces at least one full-size datagram per smoothed RTT: after 2 s of small packets, nine in "
    "ten lost, three full-size datagrams leave within 0.1 s, before any ACK",
    requirements=("REC-5.6.3.4",),
)
def _(iut: Iut) -> str:
    try:
        peer = FloorPeer(iut)
    except CaseFailed as exc:
        if "'conn_session' failed" in str(exc):
            raise Unsupported(f"the IUT has no bbr controller (channel_config congestion_control): {exc}") from None
        raise
    channel_id = peer.open_echo(window=1 << 20)
    messages = peer.open_echo(kind=ch.ChannelKind.MESSAGE, window=1 << 20)  # echoed with no retransmission
    peer.ack()
    start = peer.now
    acked: set[int] = set()
    tick = 0
    while tick * SMALL_EVERY < SMALL_FOR:
        tick += 1
        peer.until(start + tick * SMALL_EVERY)
        peer.send(ch.Message(channel_id=messages, message_id=tick, data=b"s" * SMALL))
        if tick % ACK_ONE_IN == 0:
            peer.ack_newest(acked)
    small = [s for s in peer.sent if s.time > start]
    expect(len(small) >= 50, f"internal: only {len(small)} small packets from the IUT")
    # The reply the IUT must now send: three full-size datagrams of echo.
    big_at = peer.now + SMALL_EVERY
    peer.until(big_at)
    peer.send(ch.Stream(channel_id=channel_id, offset=0, data=b"B" * BIG))
    done: float | None = None
    while done is None and peer.now < big_at + 2.0:
        top = max(
            (f.offset + len(f.data) for s in peer.sent for f in s.packet.frames if isinstance(f, ch.Stream)),
            default=0,
        )
        if top >= BIG:
            done = max(s.time for s in peer.sent)
            break
        due = min(peer.timer_at or peer.now + RTT, peer.now + RTT)
        peer.until(max(due, peer.now + 0.0005))  # (the reply is not acknowledged)
    impairment = (
        f"chosen drops: for {SMALL_FOR:.0f} s only one in {ACK_ONE_IN} of the IUT's packets acknowledged "
        f"({RTT * 1000:.0f} ms after it left), the rest never; {len(small)} small packets, {len(acked)} acknowledged"
    )
    expect(done is not None, f"the {BIG}-byte echo did not leave within 2 s ({impairment})")
    assert done is not None
    took = done - big_at
    expect(
        took <= WITHIN,
        f"the {BIG}-byte echo took {took:.3f} s to leave (round trips of {RTT} s): the IUT paced "
        f"below one full-size datagram per smoothed RTT (REC-5.6.3.4; {impairment})",
    )
    return f"{impairment}; then {BIG} bytes left in {took * 1000:.1f} ms"
