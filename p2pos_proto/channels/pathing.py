"""The connection's paths: validation, probes, the active path, fail-over (spec/paths.md §3-§4).

``PathLayer`` sits between ``SendPath`` (which builds packets for the active
path) and ``ReceivePath`` in the connection's single-inheritance chain.  It
owns what involves more than one path:

* ``add_path`` / ``abandon_path``: the driver's calls (through the endpoint);
  a path created by a packet from the peer (a NAT rebinding) comes from
  ``_path_from_peer``;
* probing packets (PATH_CHALLENGE, PATH_RESPONSE, padded on datagram paths),
  built before the data packets by ``_send_path_probes``;
* which path is active: the controlling side (the session's initiator) picks
  the best usable path; the controlled side follows the peer's newest
  non-probing packet; either side fails over when its active path has been
  silent for 2.5 s with data outstanding (``_check_dead``), declaring that path's
  packets lost so that their data goes again on the new path;
* the timers of all of that (``_paths_timer`` / ``_handle_paths_timer``).

Path ids are the connection's own (0 is the handshake's path); the endpoint maps
them to (address, local socket).
"""

from __future__ import annotations

from typing import Final

from ..paths.events import PathAbandoned, PathActive, PathDead, PathValidated
from ..paths.path import (
    CHALLENGE_DATAGRAM_SIZE,
    PATH_DEAD_TIMEOUT,
    Path,
    PathInput,
    PathKind,
    PathState,
    new_controller,
)
from ..recovery.pacing import Pacer
from ..recovery.pmtu import PmtuDiscovery
from ..session.record import OVERHEAD as RECORD_OVERHEAD
from ..session.session import SecureSession
from . import frames as fr
from .channel import ChannelConfig
from .sending import SendPath

_VALIDATED: Final = PathState.VALIDATED
_DEAD: Final = PathState.DEAD
_ABANDONED: Final = PathState.ABANDONED


class PathLayer(SendPath):
    """Several paths per connection (see the module docstring); ``ReceivePath`` derives from it."""

    __slots__ = ("_largest_nonprobing", "_next_path_id", "active_reason")

    def __init__(self, session: SecureSession, now: float, config: ChannelConfig) -> None:
        super().__init__(session, now, config)
        self._next_path_id = 1
        self._largest_nonprobing = -1
        #: Why the active path is the active one (``PathActive.reason``; "handshake" for path 0).
        self.active_reason = "handshake"

    # -- the driver's calls ------------------------------------------------------------------

    def add_path(self, kind: PathKind, now: float, *, rank: int = 0, max_datagram_size: int | None = None) -> int:
        """A new way to reach the peer; returns its path id.  It is validated first (PATH_CHALLENGE
        now, drain ``data_to_send_paths``); ``PathValidated`` follows, and the controlling side
        moves the data to it if it ranks better than the active path (spec/paths.md §4)."""
        path = self._new_path(kind, rank, max_datagram_size)
        path.start_validation(now)
        return path.path_id

    def abandon_path(self, path_id: int, now: float) -> None:
        """Give a path up for good (its carrier is gone).  Its outstanding packets are lost and
        their data goes again on the active path (spec/paths.md §5); abandoning the active path
        moves the data to the best usable one (if there is none yet, the abandoned path stays
        active until one validates).  Unknown ids are ignored."""
        path = self.paths.get(path_id)
        if path is None or path.state is _ABANDONED:
            return
        path.transition(PathInput.ABANDONED)
        path.challenge_at = path.validation_deadline = None
        path.responses.clear()
        self._events.append(PathAbandoned(session_id=self.session.local_index, path_id=path_id))
        if path is self.path:
            best = self._best_path()
            if best is not None:
                self._set_active(best, "abandoned", now)
        self._lose_all(path, now)
        if path is not self.path:
            self.paths.pop(path_id, None)  # (``_set_active`` may have dropped it already)

    def describe_path(self, path_id: int, kind: PathKind, rank: int) -> None:
        """Set a path's rank (and, before anything was sent on it, its kind): for the first path,
        which the handshake made before the driver could say what carries it."""
        path = self.paths.get(path_id)
        if path is None:
            return
        path.rank = rank
        if kind is not path.kind and path.recovery.largest_sent < 0:
            path.kind = kind
            enabled = kind is PathKind.DATAGRAM and self.config.pmtu_probing
            path.pmtu = PmtuDiscovery(max_plpmtu=self.config.max_datagram_size, enabled=enabled)
            if kind is PathKind.STREAM:
                path.cc.set_max_datagram_size(self.config.stream_frame_size)
        if path is self.path:
            self.pmtu, self.cc = path.pmtu, path.cc
            self.stream_path = path.kind is PathKind.STREAM

    def paths_info(self) -> list[dict[str, object]]:
        """Each path's state for inspection (``p2pos status``): id, state, kind, rank, whether it is
        active and why, smoothed RTT, congestion window, bytes in flight, sent and received."""
        out: list[dict[str, object]] = []
        for path in self.paths.values():
            active = path is self.path
            out.append(
                {
                    "path_id": path.path_id,
                    "state": path.state.value,
                    "kind": path.kind.value,
                    "rank": path.rank,
                    "active": active,
                    "why": self.active_reason if active else "",
                    "srtt": path.rtt.smoothed_rtt if path.rtt.has_sample else None,
                    "cwnd": path.cc.congestion_window,
                    "bytes_in_flight": path.recovery.bytes_in_flight,
                    "bytes_sent": path.bytes_sent,
                    "bytes_received": path.bytes_received,
                }
            )
        return out

    # -- paths -----------------------------------------------------------------------------

    def _make_path(self, kind: PathKind, rank: int, max_datagram_size: int | None = None) -> Path:
        """A new path; ``max_datagram_size``: its carrier's own size, the datagram ceiling of a datagram
        path (within the session's) or the record size of a stream-carried one (1200..65000)."""
        path_id = self._next_path_id
        self._next_path_id += 1
        config = self.config
        ceiling = config.max_datagram_size
        frame = config.stream_frame_size
        if max_datagram_size is not None and kind is PathKind.DATAGRAM and 1200 <= max_datagram_size < ceiling:
            ceiling = max_datagram_size
        if max_datagram_size is not None and kind is PathKind.STREAM and 1200 <= max_datagram_size <= 65000:
            frame = max_datagram_size
        path = Path(
            path_id,
            kind=kind,
            rank=rank,
            congestion_control=config.congestion_control,
            max_datagram_size=ceiling,
            pmtu_probing=config.pmtu_probing,
        )
        if kind is PathKind.STREAM:
            path.cc.set_max_datagram_size(frame)  # the path's record size (``_packet_size``)
        return path

    def _new_path(self, kind: PathKind, rank: int, max_datagram_size: int | None = None) -> Path:
        path = self._make_path(kind, rank, max_datagram_size)
        for each in self.paths.values():
            each.recovery.share_space()  # PTH-2.2: from now on numbers are spread over paths
        path.recovery.share_space()
        self.paths[path.path_id] = path
        return path

    def _adopt_path(self, path: Path, now: float) -> None:
        """The first authenticated packet from an unknown address (a NAT rebinding, PTH-3.7) makes
        ``path`` one of ours: validated at once, held to the amplification limit until then."""
        for each in self.paths.values():
            each.recovery.share_space()
        path.recovery.share_space()
        self.paths[path.path_id] = path
        path.by_peer = True
        path.start_validation(now)

    def _best_path(self, exclude: Path | None = None) -> Path | None:
        """The usable path of the best rank, then the lowest smoothed RTT (spec/paths.md §4); a path
        sharing the fate of ``exclude`` (the one being left: same socket and address) comes last (PTH-4.8)."""
        best: Path | None = None
        best_key = (False, 0, 0.0)
        fate = exclude.fate if exclude is not None else None
        for path in self.paths.values():
            if path.state is not _VALIDATED or path is exclude:
                continue
            key = (fate is not None and path.fate == fate, path.rank, path.rtt.smoothed_rtt)
            if best is None or key < best_key:
                best, best_key = path, key
        return best

    def _set_active(self, path: Path, reason: str, now: float) -> None:
        """Move the data to ``path`` (PathActive); the old path's packets stay where they are."""
        old = self.path
        if path is old:
            return
        self.path = path
        self.rtt, self.recovery, self.cc = path.rtt, path.recovery, path.cc
        self.pacer, self.pmtu = path.pacer, path.pmtu
        self.stream_path = path.kind is PathKind.STREAM
        self.session.set_output_path(path.path_id)
        self.active_reason = reason
        self._pacing_at = None
        self._events.append(
            PathActive(
                session_id=self.session.local_index, path_id=path.path_id, old_path_id=old.path_id, reason=reason
            )
        )
        for channel in self.channels.values():
            self._mark_sendable(channel)  # data held back by the old path's window may go now
        if old.state is _ABANDONED:  # it stayed only while it was the active one
            self._lose_all(old, now)
            del self.paths[old.path_id]

    def _lose_all(self, path: Path, now: float) -> None:
        """Every packet outstanding on ``path`` is lost, without a congestion response (the path
        died or was abandoned): its data is queued again for the active path (PTH-5.2)."""
        lost = path.recovery.discard_all()
        for packet in lost:
            if not self._is_probe(packet):
                self._requeue(packet.payload)

    def _reset_congestion(self, path: Path) -> None:
        """A path that comes back after being dead starts from the initial window (RFC 9000 §9.4)."""
        mds = path.cc.max_datagram_size
        path.cc = new_controller(self.config.congestion_control, mds)
        path.pacer = Pacer(congestion_window=path.cc.congestion_window, smoothed_rtt=0.0, max_datagram_size=mds)
        if path is self.path:
            self.cc, self.pacer = path.cc, path.pacer

    def _choose_active(self, now: float) -> None:
        """The controlling side moves the data to the best usable path when it ranks better
        (PTH-4.2): a direct path that validates takes over from a relay at once."""
        best = self._best_path()
        active = self.path
        if best is None or best is active:
            return
        if active.state is not _VALIDATED:  # either side leaves a dead or abandoned path
            self._set_active(best, "dead" if active.state is _DEAD else "abandoned", now)
        elif self.session.initiator and best.rank < active.rank:
            self._set_active(best, "better", now)

    # -- receiving ---------------------------------------------------------------------------

    def _on_path_challenge(self, data: bytes) -> None:
        """FRA-4.18.2: answer on the path the challenge came by."""
        responses = self._rx_path.responses
        if len(responses) < 8 and data not in responses:  # a flood of challenges gets 8 answers at most
            responses.append(data)

    def _on_path_response(self, data: bytes, now: float) -> None:
        rx = self._rx_path
        for path in self.paths.values():
            revived = path.state is _DEAD
            if path.state is not _ABANDONED and path.on_response(data, now, arrived_here=path is rx):
                if revived:
                    self._reset_congestion(path)
                self._events.append(PathValidated(session_id=self.session.local_index, path_id=path.path_id))
                self._choose_active(now)
                return

    def _on_nonprobing(self, pn: int, now: float) -> None:
        """A non-probing packet: the controlled side follows the newest one to a usable path; either
        side follows the peer to a path a rebinding made (PTH-3.7, PTH-4.3)."""
        if pn <= self._largest_nonprobing:
            return
        self._largest_nonprobing = pn
        rx = self._rx_path
        active = self.path
        if rx is active:
            return
        if rx.by_peer and rx.state is PathState.VALIDATING:
            self._set_active(rx, "rebinding", now)
            return
        if rx.state is _DEAD:
            if rx.validation_deadline is None:
                rx.start_validation(now)  # it carries the peer's data again: probe it now
            return
        if rx.state is not _VALIDATED:
            return
        if not self.session.initiator:
            self._set_active(rx, "peer", now)
            return
        # The controlling side follows only when its own path has been quiet for half the dead-path
        # timeout: the peer failed over first (its data was outstanding, ours maybe not).  Not
        # sooner: a path it has just validated is not left for a peer that has not yet seen it work.
        heard = active.last_heard
        if active.state is not _VALIDATED or heard is None or now - heard >= PATH_DEAD_TIMEOUT / 2:
            if active.state is _VALIDATED:
                self._path_dead(active, now)
            self._set_active(rx, "peer", now)

    # -- sending -----------------------------------------------------------------------------

    def _send_path_probes(self, now: float) -> None:
        """PATH_RESPONSEs owed and PATH_CHALLENGEs due, each path's in a packet of its own on that path."""
        session = self.session
        active = self.path
        active_id = active.path_id
        interval = self._live.send_interval  # spec/paths.md §7: the interval both sides agreed on
        controlling = session.initiator
        for path in list(self.paths.values()):
            if path.state is _ABANDONED:
                continue
            if path.state is _DEAD and path.validation_deadline is None and path.challenge_due(now):
                path.start_validation(now)  # a re-probe (PTH-4.5)
            if path is active or path.state is not _VALIDATED or not controlling or interval is None:
                path.keepalive_at = None
            elif path.keepalive_at is None:
                path.keepalive_at = now + interval
            elif now >= path.keepalive_at and path.validation_deadline is None:
                path.keepalive_at = now + interval
                path.start_validation(now)  # PTH-4.7, PTH-7.4: a standby path's keepalive is a challenge
            challenge = path.challenge_due(now)
            if not (challenge or path.responses):
                continue
            frames: list[bytes] = [fr.encode_frame(fr.PathResponse(data=data)) for data in path.responses]
            data = session.random(fr.PATH_DATA_SIZE) if challenge else b""
            if challenge:
                frames.append(fr.encode_frame(fr.PathChallenge(data=data)))
            plaintext = b"".join(frames)
            budget = path.send_budget()
            if path.kind is PathKind.DATAGRAM:
                padded = CHALLENGE_DATAGRAM_SIZE - RECORD_OVERHEAD
                if len(plaintext) < padded and (budget is None or budget >= CHALLENGE_DATAGRAM_SIZE):
                    plaintext += bytes(padded - len(plaintext))  # PTH-3.3
            size = len(plaintext) + RECORD_OVERHEAD
            if budget is not None and size > budget:
                self._count("path_amplification")
                path.blocked = True  # until the peer sends on this path again
                continue
            path.responses.clear()
            session.set_output_path(path.path_id)
            pn = session.send(plaintext, now)
            session.set_output_path(active_id)
            path.bytes_sent += size
            if not self.recovery.own_numbers:
                self.recovery.on_packet_number_skipped(pn)  # one path: keep its numbers in order
            if challenge:
                path.on_challenge_sent(data, now)

    # -- timers ------------------------------------------------------------------------------

    def _paths_timer(self) -> float | None:
        """The earliest path timer: challenges, validation deadlines, the active path's dead-path
        deadline, and loss detection of the paths that are not active."""
        best: float | None = None
        active = self.path
        for path in self.paths.values():
            timer = path.get_timer()
            if timer is not None and (best is None or timer < best):
                best = timer
            if path is active:
                timer = path.dead_deadline() if self._best_path(active) is not None else None
            else:
                timer = path.recovery.get_loss_detection_timer()
            if timer is not None and (best is None or timer < best):
                best = timer
        return best

    def _handle_paths_timer(self, now: float) -> None:
        for path in list(self.paths.values()):
            deadline = path.validation_deadline
            if deadline is not None and now >= deadline and path.state is not _ABANDONED:
                self._validation_failed(path, now)
            if path is not self.path:
                timer = path.recovery.get_loss_detection_timer()
                if timer is not None and now >= timer:
                    result = path.recovery.on_loss_detection_timeout(now)
                    self._on_lost(result.lost, now, path=path)  # never the active path here
                    if result.probes_to_send:
                        self._lose_all(path, now)  # a PTO on a path we left: resend on the active one
        self._check_dead(now)

    def _validation_failed(self, path: Path, now: float) -> None:
        was_active = path is self.path
        path.validation_failed(now)
        self._events.append(PathDead(session_id=self.session.local_index, path_id=path.path_id))
        if was_active:  # a rebinding that did not validate: back to the last validated path (PTH-3.7)
            best = self._best_path()
            if best is not None:
                self._set_active(best, "validation_failed", now)
                self._lose_all(path, now)

    def _path_dead(self, path: Path, now: float) -> None:
        path.transition(PathInput.FAILED)
        path.reprobe_interval = 1.0
        path.schedule_reprobe(now)
        self._events.append(PathDead(session_id=self.session.local_index, path_id=path.path_id))

    def _check_dead(self, now: float) -> None:
        """PTH-4.4: the active path silent for 2.5 s with data outstanding is dead; move to the best
        usable path and send what was outstanding again there (only if there is one)."""
        active = self.path
        if len(self.paths) < 2 or active.state is not _VALIDATED:
            return
        deadline = active.dead_deadline()
        if deadline is None or now < deadline:
            return
        best = self._best_path(active)
        if best is None:
            return  # nowhere to go: keep trying this one
        self._path_dead(active, now)
        self._set_active(best, "dead", now)
        self._lose_all(active, now)
