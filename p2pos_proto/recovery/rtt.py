"""Round-trip time estimation (spec/recovery.md §2, RFC 9002 §5).

``RttEstimator`` keeps the four RFC 9002 quantities: ``latest_rtt``,
``min_rtt``, ``smoothed_rtt`` and ``rttvar``.  Loss recovery
(``recovery.LossRecovery``) feeds it one sample per ACK that newly
acknowledges the largest acknowledged packet; everyone else only reads it:
loss detection (time threshold), the probe timeout (``pto_duration``), the
pacer and the congestion controller.
"""

from __future__ import annotations

from typing import Final

from ..errors import LocalProtocolError

#: RFC 9002 §6.2.2 kInitialRtt: the RTT assumed before the first sample (seconds).
INITIAL_RTT: Final = 0.333
#: RFC 9002 §6.1.2 kGranularity: the system timer granularity (seconds).
GRANULARITY: Final = 0.001
#: RFC 9000 §18.2 default max_ack_delay: how long the peer may delay an ACK (seconds).
DEFAULT_MAX_ACK_DELAY: Final = 0.025


class RttEstimator:
    """RTT samples in, smoothed estimates out (RFC 9002 §5).

    ``max_ack_delay`` is the *peer's* maximum ACK delay: reported ACK delays
    are capped at it (RFC 9002 §5.3) and the probe timeout includes it.
    After a sample, read ``smoothed_rtt`` / ``rttvar``; ask ``pto_duration``
    for the probe timeout before backoff.
    """

    __slots__ = (
        "first_sample_time",
        "latest_rtt",
        "max_ack_delay",
        "min_rtt",
        "rttvar",
        "smoothed_rtt",
    )

    def __init__(self, *, initial_rtt: float = INITIAL_RTT, max_ack_delay: float = DEFAULT_MAX_ACK_DELAY) -> None:
        if not initial_rtt > 0:
            raise LocalProtocolError("initial_rtt must be positive")
        if max_ack_delay < 0:
            raise LocalProtocolError("max_ack_delay must not be negative")
        #: The peer's max_ack_delay in seconds.
        self.max_ack_delay = max_ack_delay
        #: The most recent sample, not adjusted for ACK delay; 0.0 before the first.
        self.latest_rtt = 0.0
        #: The smallest sample seen (never adjusted for ACK delay, RFC 9002 §5.2); 0.0 before the first.
        self.min_rtt = 0.0
        # RFC 9002 §5.3 / A.4: before any sample, smoothed_rtt = kInitialRtt, rttvar = kInitialRtt / 2.
        #: Exponentially weighted average of the adjusted samples.
        self.smoothed_rtt = initial_rtt
        #: Mean deviation of the adjusted samples.
        self.rttvar = initial_rtt / 2
        #: When the first sample was taken (``None`` before): persistent congestion only
        #: considers packets sent after it (RFC 9002 §7.6.2).
        self.first_sample_time: float | None = None

    @property
    def has_sample(self) -> bool:
        """True once ``update`` has been called at least once."""
        return self.first_sample_time is not None

    def update(self, latest_rtt: float, ack_delay: float, now: float) -> None:
        """Take one RTT sample (RFC 9002 §5.1-§5.3, pseudocode A.7 ``UpdateRtt``).

        ``latest_rtt`` is ``now`` minus the send time of the newly acknowledged
        largest packet; ``ack_delay`` is the delay the peer reported in its ACK
        frame, in seconds.  The sample itself is never made smaller than
        ``min_rtt`` by the ACK delay, and the ACK delay is capped at
        ``max_ack_delay`` (the session is always past its handshake here, so the
        RFC's "handshake confirmed" condition always holds).
        """
        latest_rtt = max(latest_rtt, 0.0)
        ack_delay = max(ack_delay, 0.0)
        self.latest_rtt = latest_rtt
        if self.first_sample_time is None:
            # First sample (RFC 9002 §5.3): no ACK-delay adjustment at all.
            self.first_sample_time = now
            self.min_rtt = latest_rtt
            self.smoothed_rtt = latest_rtt
            self.rttvar = latest_rtt / 2
            return
        # RFC 9002 §5.2: min_rtt ignores ACK delay.
        self.min_rtt = min(self.min_rtt, latest_rtt)
        ack_delay = min(ack_delay, self.max_ack_delay)
        # RFC 9002 §5.3: subtract the ACK delay only if the result stays >= min_rtt.
        adjusted_rtt = latest_rtt
        if latest_rtt >= self.min_rtt + ack_delay:
            adjusted_rtt = latest_rtt - ack_delay
        # rttvar uses smoothed_rtt from before this sample (RFC 9002 A.7).
        self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.smoothed_rtt - adjusted_rtt)
        self.smoothed_rtt = 0.875 * self.smoothed_rtt + 0.125 * adjusted_rtt

    def pto_duration(self, max_ack_delay: float | None = None) -> float:
        """The probe timeout before backoff (RFC 9002 §6.2.1).

        ``smoothed_rtt + max(4 * rttvar, kGranularity) + max_ack_delay``; the
        ACK delay term defaults to the estimator's ``max_ack_delay``.  Loss
        recovery multiplies the result by ``2 ** pto_count``.
        """
        if max_ack_delay is None:
            max_ack_delay = self.max_ack_delay
        return self.smoothed_rtt + max(4 * self.rttvar, GRANULARITY) + max_ack_delay

    def loss_delay(self) -> float:
        """The time threshold for declaring a packet lost (RFC 9002 §6.1.2).

        ``max(kTimeThreshold * max(smoothed_rtt, latest_rtt), kGranularity)`` with
        kTimeThreshold = 9/8.
        """
        return max(1.125 * max(self.smoothed_rtt, self.latest_rtt), GRANULARITY)
