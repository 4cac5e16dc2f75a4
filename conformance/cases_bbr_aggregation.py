"""BBR's ACK-aggregation allowance (spec/recovery.md §5.6.5, REC-5.6.5.1), in the impaired-network mode (§3.8).

A receiver, or a relay on the way, that runs late releases its acknowledgements in bunches.
Through the gap between two bunches a window of ``CWND_GAIN * BDP`` (of the smallest RTT) runs
out, the sender waits, its delivery-rate samples fall and its window with them.  The allowance,
the largest excess of bytes acknowledged over ``bw`` times the time they took, raises ProbeBW's
window by about one bunch, so the sender keeps sending through the gap.

``BunchingPeer`` is the bottleneck path of cases_req_bbr whose runner holds back its ACKs and
releases them every ``PERIOD`` seconds, one ACK datagram per packet received since the last
bunch (each acknowledging everything received up to that packet), all leaving at once: the IUT
sees the bunch as a burst of acknowledgements, as from a relay that ran late.
"""

from __future__ import annotations

from typing import Any

from .cases_channels import ack_of
from .cases_multipath_state import paths_view
from .cases_req_bbr import CWND_GAIN, HEADROOM, Transfer
from .cases_req_pacing import MDS, eliciting
from .checks import expect
from .iut import Iut
from .registry import case

#: The path: 1.2 MB/s (1000 datagrams a second), 5 ms each way (a BDP of about 13 datagrams);
#: acknowledgements released every 40 ms, four round trips: a bunch is about three BDPs.
DELAY, BANDWIDTH, PERIOD = 0.005, 1_200_000.0, 0.04
#: Backlogged this long; the goodput and the windows are measured over the last ``MEASURE`` seconds.
DURATION, MEASURE = 3.0, 1.5
#: The goodput a sender keeps with the allowance: the in-memory model (tests/recovery/test_bbr.py)
#: keeps 98% of the rate; a window of 2 BDP + headroom alone holds it under half (its flight is
#: held a whole bunch period of 4 round trips for every BDP it carries).
GOODPUT = 0.75


class BunchingPeer:
    """Drives a ``Transfer`` whose runner acknowledges only at multiples of ``period``: a bunch of ACKs."""

    def __init__(self, iut: Iut, *, period: float) -> None:
        self.transfer = Transfer(iut, delay=DELAY, bandwidth=BANDWIDTH)
        self.peer = self.transfer.peer
        self.period = period
        self._bunched = self._sized = 0
        self._sizes: dict[int, int] = {}
        #: (time, the IUT's view of its path 0: cwnd, state ...) read at each bunch.
        self.views: list[tuple[float, dict[str, Any]]] = []

    def release(self) -> None:
        """One ACK for each packet received since the last bunch, all sent now (they arrive together)."""
        peer = self.peer
        fresh = peer.received[self._bunched :]
        self._bunched = len(peer.received)
        arrival = peer.now + peer.delay
        for s in peer.sent[self._sized :]:
            if s.ack_eliciting:
                self._sizes[s.packet.pn] = s.size
        self._sized = len(peer.sent)
        pns = [p.pn for p in peer.received[: len(peer.received) - len(fresh)]]
        for packet in fresh:
            pns.append(packet.pn)
            if packet.pn in peer.acked_at or packet.pn not in self._sizes:
                continue  # not ack-eliciting: no ACK of its own
            peer.acked_at[packet.pn] = arrival
            peer.ack_arrivals.append((arrival, self._sizes.get(packet.pn, 0)))
            peer.send(ack_of(pns[-32:]))

    def run(self, until: float) -> None:
        """Bunch after bunch up to ``until``, the IUT kept backlogged, its path state read at each."""
        peer = self.peer
        t = peer.now
        while t < until - 1e-9:
            t = min(t + self.period, until)
            peer.run(t, auto_ack=False)
            self.release()
            self.transfer.feed_now()
            self.views.append((peer.now, paths_view(peer).get(0, {})))


@case(
    "ch/bbr/26",
    section="recovery.md §5.6.5",
    title="BBR's ACK-aggregation allowance: with acknowledgements released in bunches every 4 round trips, "
    "ProbeBW's window rises above CWND_GAIN * BDP + headroom and the goodput stays near the bottleneck's",
    requirements=("REC-5.6.5.1", "REC-5.6.3.1"),
)
def _(iut: Iut) -> str:
    bunching = BunchingPeer(iut, period=PERIOD)
    peer = bunching.peer
    start = bunching.transfer.start
    bunching.run(start + DURATION)
    end = peer.now
    since = end - MEASURE
    bdp = peer.bdp
    bound = CWND_GAIN * (bdp + MDS) + HEADROOM  # the window without the allowance, BDP within a datagram
    windows = [float(view["cwnd"]) for at, view in bunching.views if at >= since and "cwnd" in view]
    expect(bool(windows), f"internal: conn_paths showed no cwnd for path 0 ({bunching.views[-1:]})")
    most = max(windows)
    acked = sum(n for at, n in peer.ack_arrivals if since <= at < end)
    goodput = acked / MEASURE
    sent = sum(s.size for s in eliciting(peer.sent) if since <= s.time < end)
    impairment = (
        f"bottleneck {BANDWIDTH / 1e6:.1f} MB/s, {DELAY * 1000:.0f} ms each way (BDP {bdp:.0f} bytes), "
        f"ACKs released every {PERIOD * 1000:.0f} ms"
    )
    detail = (
        f"over the last {MEASURE} s of {DURATION} s: window at most {most:.0f} bytes ({most / bdp:.2f} BDP; "
        f"without the allowance at most {bound:.0f}), goodput {goodput / 1e6:.2f} MB/s "
        f"({goodput / BANDWIDTH:.0%} of the bottleneck), sent {sent / MEASURE / 1e6:.2f} MB/s; {impairment}"
    )
    expect(
        most > bound,
        f"the IUT's window never rose above CWND_GAIN * BDP + headroom while its acknowledgements came in "
        f"bunches: no ACK-aggregation allowance in ProbeBW (recovery.md §5.6.5, REC-5.6.5.1); {detail}",
    )
    expect(
        goodput >= GOODPUT * BANDWIDTH,
        f"the IUT's goodput fell below {GOODPUT:.0%} of the bottleneck while its acknowledgements came in bunches: "
        f"its window pinned it (recovery.md §5.6.5, REC-5.6.5.1); {detail}",
    )
    return detail
