"""The reference IUT's path commands (spec/conformance.md §3.11, spec/paths.md).

In channel mode (``conn_session``) the IUT's connection may have several paths: the runner
adds one as a driver would (``conn_add_path``), says what carries the handshake's path
(``conn_describe_path``), gives one up (``conn_abandon_path``), and names the path each of its
datagrams arrives on (``conn_receive`` with ``path_id``, or ``new_path`` for one from an
address the session has no path for: a rebinding).  Every answer says which path each
datagram of ``out`` goes on (``out_paths``), and the path events are reported.  A path may be
labelled with the ``socket`` it leaves through (paths sharing a label share their fate,
PTH-4.8), and ``conn_paths`` shows each path's own recovery state (PTH-1.1, PTH-2.3).
"""

from __future__ import annotations

import math
from typing import Any

from p2pos.proto.channels.connection import Connection
from p2pos.proto.paths.events import PathAbandoned, PathActive, PathDead, PathEvent, PathValidated
from p2pos.proto.paths.path import PathKind

Json = dict[str, Any]

_KINDS = {"datagram": PathKind.DATAGRAM, "stream": PathKind.STREAM}


class PathCommandError(ValueError):
    """A path command the IUT cannot take (answered BAD_COMMAND)."""


def path_kind(request: Json) -> PathKind:
    kind = _KINDS.get(str(request.get("kind", "datagram")))
    if kind is None:
        raise PathCommandError("kind is 'datagram' or 'stream'")
    return kind


def path_rank(request: Json) -> int:
    rank = request.get("rank", 0)
    if not isinstance(rank, int) or isinstance(rank, bool) or not 0 <= rank <= 3:
        raise PathCommandError("rank is an integer 0..3 (spec/paths.md §4)")
    return rank


def path_id(request: Json) -> int:
    value = request.get("path_id")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PathCommandError("path_id is a path id the IUT gave")
    return value


def path_socket(request: Json) -> str | None:
    """The optional ``socket`` label: the real local socket and remote address a path's datagrams
    leave through.  Paths with the same label share their fate (spec/paths.md PTH-4.8)."""
    value = request.get("socket")
    if value is not None and not isinstance(value, str):
        raise PathCommandError("socket is a text label (paths with the same label share their fate)")
    return value


def _label(conn: Connection, pid: int | None, request: Json) -> None:
    label = path_socket(request)
    path = conn.paths.get(pid) if pid is not None else None
    if label is not None and path is not None:
        path.fate = ("socket", label)  # what the endpoint sets from its (socket, address) pairs


def add_path(conn: Connection, request: Json, now: float) -> int:
    path_socket(request)  # a bad label is refused before the path is made
    pid = conn.add_path(path_kind(request), now, rank=path_rank(request))
    _label(conn, pid, request)
    return pid


def describe_path(conn: Connection, request: Json) -> None:
    pid = path_id(request)
    if pid not in conn.paths:
        raise PathCommandError(f"no path {pid}")
    conn.describe_path(pid, path_kind(request), path_rank(request))
    _label(conn, pid, request)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def paths_state(conn: Connection) -> list[Json]:
    """``conn_paths``: each path's own RTT estimate, congestion window and pacing rate (PTH-1.1)."""
    out: list[Json] = []
    for path in sorted(conn.paths.values(), key=lambda p: p.path_id):
        rtt, sampled = path.rtt, path.rtt.has_sample
        out.append(
            {
                "path_id": path.path_id,
                "state": path.state.value,
                "kind": path.kind.value,
                "rank": path.rank,
                "active": path is conn.path,
                "srtt": rtt.smoothed_rtt if sampled else None,
                "latest_rtt": rtt.latest_rtt if sampled else None,
                "min_rtt": rtt.min_rtt if sampled else None,
                "cwnd": path.cc.congestion_window,
                "pacing_rate": _finite(path.pacer.rate),
                "bytes_in_flight": path.recovery.bytes_in_flight,
            }
        )
    return out


def abandon_path(conn: Connection, request: Json, now: float) -> None:
    conn.abandon_path(path_id(request), now)


def receive(conn: Connection, request: Json, data: bytes, now: float) -> Json:
    """Feed one datagram on the path the request names; with ``new_path``, the new path's id (or None)."""
    if request.get("new_path"):
        path_socket(request)
        made = conn.receive_on_new_path(data, now, path_kind(request), rank=path_rank(request))
        _label(conn, made, request)
        return {"path_id": made}
    conn.receive_data(data, now, path_id(request) if "path_id" in request else 0)
    return {}


def event_json(event: PathEvent) -> Json:
    """A path event as JSON (spec/conformance.md §3.11)."""
    match event:
        case PathValidated():
            return {"type": "path_validated", "path_id": event.path_id}
        case PathActive():
            return {
                "type": "path_active",
                "path_id": event.path_id,
                "old_path_id": event.old_path_id,
                "reason": event.reason,
            }
        case PathDead():
            return {"type": "path_dead", "path_id": event.path_id}
        case PathAbandoned():
            return {"type": "path_abandoned", "path_id": event.path_id}
