"""The reference IUT's path commands (spec/conformance.md §3.11, spec/paths.md).

In channel mode (``conn_session``) the IUT's connection may have several paths: the runner
adds one as a driver would (``conn_add_path``), says what carries the handshake's path
(``conn_describe_path``), gives one up (``conn_abandon_path``), and names the path each of its
datagrams arrives on (``conn_receive`` with ``path_id``, or ``new_path`` for one from an
address the session has no path for: a rebinding).  Every answer says which path each
datagram of ``out`` goes on (``out_paths``), and the path events are reported.
"""

from __future__ import annotations

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


def add_path(conn: Connection, request: Json, now: float) -> int:
    return conn.add_path(path_kind(request), now, rank=path_rank(request))


def describe_path(conn: Connection, request: Json) -> None:
    pid = path_id(request)
    if pid not in conn.paths:
        raise PathCommandError(f"no path {pid}")
    conn.describe_path(pid, path_kind(request), path_rank(request))


def abandon_path(conn: Connection, request: Json, now: float) -> None:
    conn.abandon_path(path_id(request), now)


def receive(conn: Connection, request: Json, data: bytes, now: float) -> Json:
    """Feed one datagram on the path the request names; with ``new_path``, the new path's id (or None)."""
    if request.get("new_path"):
        made = conn.receive_on_new_path(data, now, path_kind(request), rank=path_rank(request))
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
