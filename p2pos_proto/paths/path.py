"""One path of a session and the recovery state it owns (spec/paths.md §1-§3).

A session has one packet-number space per direction (the record counter,
spec/paths.md §2) and one ``Path`` per way of reaching the peer: a direct UDP
address, a relay link, a TURN allocation, a QUIC stream.  Each path owns what
depends on the path's delay and capacity: the RTT estimator, loss recovery
(thresholds compare packets of this path only), the congestion controller, the
pacer and PMTU discovery.  A sent packet is recorded in the recovery of the
path it left on; an ACK is offered to every path's recovery.

The channel layer (``channels.sending``) builds packets; this module only holds
per-path state and the rules that read nothing but that state.
"""

from __future__ import annotations

import enum
from typing import Final

from ..errors import ErrorCode, LocalProtocolError
from ..recovery.bbr import Bbr
from ..recovery.congestion import CongestionController, Cubic, NewReno, WindowFloor
from ..recovery.pacing import Pacer
from ..recovery.pmtu import PmtuDiscovery
from ..recovery.recovery import LossRecovery
from ..recovery.rtt import RttEstimator

#: What one sent packet carried, as the channel layer's send path records it:
#: ``(kind, a, b, c, fin)`` per frame (see ``channels.sending``).
Token = tuple[int, int, int, int, bool]
#: All of one packet's tokens (a tuple: unlike a list, the garbage collector stops tracking it).
Tokens = tuple[Token, ...]

#: The congestion controllers ``ChannelConfig.congestion_control`` names (spec/recovery.md §5).
CONTROLLERS: Final[dict[str, type[NewReno] | type[Cubic] | type[Bbr]]] = {
    "newreno": NewReno,
    "cubic": Cubic,
    "bbr": Bbr,
}
#: The window floor of every path (spec/paths.md §5): what its rate moves in this long (the time
#: the hosts, a relay and the sockets on the way add per window under load, beyond the path's idle
#: minimum RTT), at most this many bytes (16 of a WebSocket relay's 65000-byte records).
WINDOW_FLOOR_ALLOWANCE: Final = 0.005
WINDOW_FLOOR_MAX: Final = 16 * 65000
#: The datagram size a new path starts with (spec/recovery.md §7: BASE_PLPMTU).
INITIAL_DATAGRAM_SIZE: Final = 1200
#: A datagram carrying a PATH_CHALLENGE (or its response) on a datagram path is padded to this size
#: (spec/paths.md PTH-3.3, RFC 9000 §8.2.1), so that validation also proves the base PMTU.
CHALLENGE_DATAGRAM_SIZE: Final = 1200
#: PATH_CHALLENGE retries: the first after this long, then doubling (spec/paths.md PTH-3.4).
CHALLENGE_RETRY: Final = 0.25
#: Validation gives up after max(VALIDATION_MIN_TIMEOUT, 3 PTO) (spec/paths.md PTH-3.4, RFC 9000 §8.2.4).
VALIDATION_MIN_TIMEOUT: Final = 3.0
#: To an address not validated, at most this many times the bytes received from it (PTH-3.6).
AMPLIFICATION_FACTOR: Final = 3
#: While data is outstanding, a path silent this long is dead (spec/paths.md PTH-4.4).
PATH_DEAD_TIMEOUT: Final = 2.5
#: A dead path is probed again after 1, 2, 4 ... seconds, at most this long apart (PTH-4.5).
REPROBE_INITIAL: Final = 1.0
REPROBE_MAX: Final = 30.0
#: Challenges of one validation remembered (a response to any of them validates the path).
_MAX_CHALLENGES: Final = 8


class PathState(enum.Enum):
    """spec/paths.md §3.1."""

    VALIDATING = "validating"
    VALIDATED = "validated"
    DEAD = "dead"
    ABANDONED = "abandoned"


class PathInput(enum.Enum):
    VALIDATED = "validated"  # a PATH_RESPONSE echoed one of our challenges
    FAILED = "failed"  # validation gave up, or the path went silent with data outstanding
    ABANDONED = "abandoned"  # the driver or the connection gave the path up


_S, _I = PathState, PathInput
#: Every allowed transition (spec/paths.md §3.1); anything else is a local error.
TRANSITIONS: dict[PathState, dict[PathInput, PathState]] = {
    _S.VALIDATING: {_I.VALIDATED: _S.VALIDATED, _I.FAILED: _S.DEAD, _I.ABANDONED: _S.ABANDONED},
    _S.VALIDATED: {_I.VALIDATED: _S.VALIDATED, _I.FAILED: _S.DEAD, _I.ABANDONED: _S.ABANDONED},
    _S.DEAD: {_I.VALIDATED: _S.VALIDATED, _I.FAILED: _S.DEAD, _I.ABANDONED: _S.ABANDONED},
    _S.ABANDONED: {},
}


class PathKind(enum.Enum):
    """How a path carries records (spec/paths.md §5)."""

    #: Each record is one datagram that may be lost, reordered or duplicated (UDP, TURN).
    DATAGRAM = "datagram"
    #: Records ride a reliable byte stream (a WebSocket relay link, a QUIC stream): still
    #: acknowledged end to end, but no PMTU probing, no pacing, fixed large packets.
    STREAM = "stream"


def floored(cc: CongestionController) -> CongestionController:
    """``cc`` with the window floor every path has (spec/paths.md §5): the minimum RTT a path shows
    when idle leaves out what the hosts (and a relay, and the sockets between) take per packet
    under load, so BBR's 2 x BDP from it keeps that pipeline half empty.  The floor is 5 ms at the
    controller's rate, at most ``WINDOW_FLOOR_MAX`` (about 1 MB: 16 of the relay's records, within
    what it queues for a destination, spec/relay.md REL-5.4), and under the controller's own
    ceiling (STARTUP, PROBE_RTT, a congested round); on a slow or distant path it is below BBR's own."""
    if isinstance(cc, WindowFloor):
        return cc
    return WindowFloor(cc, WINDOW_FLOOR_MAX, WINDOW_FLOOR_ALLOWANCE)


def new_controller(congestion_control: str, max_datagram_size: int) -> CongestionController:
    """A fresh controller for a path, with the window floor (§5)."""
    return floored(CONTROLLERS[congestion_control](max_datagram_size=max_datagram_size))


class Path:
    """The recovery state of one path (spec/paths.md §3).

    ``path_id`` is the connection's own number for the path (0 for the path the
    handshake ran on); it never appears on the wire.
    """

    __slots__ = (
        "_challenges",
        "blocked",
        "bytes_received",
        "bytes_sent",
        "by_peer",
        "cc",
        "challenge_at",
        "challenge_interval",
        "fate",
        "keepalive_at",
        "kind",
        "last_heard",
        "pacer",
        "path_id",
        "pmtu",
        "rank",
        "recovery",
        "reprobe_interval",
        "responses",
        "rtt",
        "state",
        "validation_deadline",
    )

    def __init__(
        self,
        path_id: int,
        *,
        kind: PathKind,
        rank: int,
        congestion_control: str,
        max_datagram_size: int,
        pmtu_probing: bool,
    ) -> None:
        self.path_id = path_id
        self.kind = kind
        #: Preference among validated paths, lower is better (direct 0 < QUIC < TURN < relay).
        self.rank = rank
        #: What the path shares its fate with (the driver's local socket and remote address, set by the
        #: endpoint): when a path dies, those sharing its fate are its last fall-back (PTH-4.8).  None: nothing.
        self.fate: object = None
        self.rtt = RttEstimator()
        self.recovery: LossRecovery[Tokens] = LossRecovery(rtt=self.rtt)
        mds = INITIAL_DATAGRAM_SIZE
        self.cc = new_controller(congestion_control, mds)
        self.pacer = Pacer(congestion_window=self.cc.congestion_window, smoothed_rtt=0.0, max_datagram_size=mds)
        datagram = kind is PathKind.DATAGRAM
        self.pmtu = PmtuDiscovery(max_plpmtu=max_datagram_size, enabled=pmtu_probing and datagram)
        self.state = PathState.VALIDATING
        #: Created by a packet from the peer (a NAT rebinding): the amplification limit applies
        #: until it is validated (PTH-3.6).  A path the driver added is ours to probe.
        self.by_peer = False
        #: Bytes of authenticated datagrams received on this path, and bytes sent on it.
        self.bytes_received = 0
        self.bytes_sent = 0
        #: The amplification limit held output back; nothing more can go until the peer sends here.
        self.blocked = False
        #: When an authenticated packet last arrived on this path (its last sign of life), None: never.
        self.last_heard: float | None = None
        #: Outstanding challenge data -> when it was sent (a response to any of them validates).
        self._challenges: dict[bytes, float] = {}
        #: When the next PATH_CHALLENGE is due (None: none), the gap after it, and when validation gives up.
        self.challenge_at: float | None = None
        self.challenge_interval = CHALLENGE_RETRY
        self.validation_deadline: float | None = None
        #: When a standby path is next checked with a PATH_CHALLENGE (PTH-4.7), None: not armed.
        self.keepalive_at: float | None = None
        #: The gap before the next re-probe of a dead path (PTH-4.5).
        self.reprobe_interval = REPROBE_INITIAL
        #: PATH_RESPONSE data to send on this path (the challenges that arrived on it), oldest first.
        self.responses: list[bytes] = []

    def __repr__(self) -> str:
        return f"Path({self.path_id}, {self.kind.value}, rank={self.rank}, {self.state.value})"

    # -- state -------------------------------------------------------------------------------

    def transition(self, event: PathInput) -> None:
        try:
            self.state = TRANSITIONS[self.state][event]
        except KeyError:
            raise LocalProtocolError(
                f"path {self.path_id}: no transition from {self.state.value} on {event.value}", ErrorCode.INTERNAL_ERROR
            ) from None

    @property
    def usable(self) -> bool:
        """Validated and not dead: data may move here (PTH-3.5)."""
        return self.state is PathState.VALIDATED

    # -- validation (spec/paths.md §3) ---------------------------------------------------------

    def start_validation(self, now: float) -> None:
        """Probe the path: a PATH_CHALLENGE now, retries from 250 ms doubling, give up after
        max(3 s, 3 PTO) (PTH-3.4).  Also what re-probing a dead path does (PTH-4.5)."""
        self._challenges.clear()
        self.challenge_at = now
        self.challenge_interval = CHALLENGE_RETRY
        self.validation_deadline = now + max(VALIDATION_MIN_TIMEOUT, 3 * self.rtt.pto_duration())

    def challenge_due(self, now: float) -> bool:
        return self.challenge_at is not None and now >= self.challenge_at

    def on_challenge_sent(self, data: bytes, now: float) -> None:
        """A PATH_CHALLENGE with ``data`` left on this path: arm the next retry."""
        challenges = self._challenges
        challenges[data] = now
        while len(challenges) > _MAX_CHALLENGES:
            del challenges[next(iter(challenges))]
        self.challenge_at = now + self.challenge_interval
        self.challenge_interval *= 2
        deadline = self.validation_deadline
        if deadline is not None and self.challenge_at >= deadline:
            self.challenge_at = None  # no retry after the deadline: the deadline decides

    def on_response(self, data: bytes, now: float, *, arrived_here: bool) -> bool:
        """A PATH_RESPONSE (arrived on any path): True if it echoes one of our challenges on this path,
        which is then VALIDATED; an RTT sample only if the response came back on this path (PTH-2.3)."""
        sent = self._challenges.pop(data, None)
        if sent is None:
            return False
        if arrived_here:
            self.rtt.update(now - sent, 0.0, now)
        self._challenges.clear()
        self.challenge_at = self.validation_deadline = None
        self.reprobe_interval = REPROBE_INITIAL
        self.transition(PathInput.VALIDATED)
        return True

    def validation_failed(self, now: float) -> None:
        """Validation gave up (``validation_deadline`` passed): DEAD, re-probed later (PTH-4.5)."""
        self._challenges.clear()
        self.validation_deadline = None
        self.transition(PathInput.FAILED)
        self.schedule_reprobe(now)

    def schedule_reprobe(self, now: float) -> None:
        """The next probe of a dead path: 1, 2, 4 ... 30 s apart."""
        self.challenge_at = now + self.reprobe_interval
        self.reprobe_interval = min(self.reprobe_interval * 2, REPROBE_MAX)

    def get_timer(self) -> float | None:
        """The next challenge (unless the amplification limit holds it back), the end of validation,
        or the next check of a standby path."""
        best = None if self.blocked else self.challenge_at
        deadline = self.validation_deadline
        if deadline is not None and (best is None or deadline < best):
            best = deadline
        deadline = self.keepalive_at
        if deadline is not None and (best is None or deadline < best):
            best = deadline
        return best

    # -- amplification (PTH-3.6) -------------------------------------------------------------

    def send_budget(self) -> int | None:
        """Bytes this path may still carry before it is validated (None: no limit)."""
        if not self.by_peer or self.state is PathState.VALIDATED:
            return None
        return max(0, AMPLIFICATION_FACTOR * self.bytes_received - self.bytes_sent)

    # -- liveness (PTH-4.4) ------------------------------------------------------------------

    def dead_deadline(self) -> float | None:
        """While ack-eliciting packets are outstanding: when the path counts as dead (None: not armed).

        Three seconds after its last sign of life, and not before the oldest outstanding
        ack-eliciting packet has had min(2.5 s, 3 PTO) to be acknowledged (a path that was quiet
        for a while is not dead the moment it sends again).
        """
        since = self.recovery.oldest_ack_eliciting_time()
        if since is None:
            return None
        deadline = since + min(PATH_DEAD_TIMEOUT, 3 * self.rtt.pto_duration())
        heard = self.last_heard
        if heard is not None and heard + PATH_DEAD_TIMEOUT > deadline:
            deadline = heard + PATH_DEAD_TIMEOUT
        return deadline
