"""What happens to a session's paths (spec/paths.md §6), reported with the connection's events.

The connection names a path by its ``path_id``; the endpoint fills in ``address``
and ``local`` (the driver's socket) before it hands the event on, so drivers
see the path as they added it.  Frozen, slotted, keyword-only, past tense, as
every event of the core (``p2pos_proto/events.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PathValidated:
    """A PATH_RESPONSE echoed our challenge: data may move to the path (PTH-3.5)."""

    session_id: int
    path_id: int
    address: Hashable = None
    local: Hashable = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PathActive:
    """The path that carries the data changed from ``old_path_id`` to ``path_id`` (spec/paths.md §4).

    ``reason``: ``"better"`` (a validated path of a better rank), ``"dead"`` (fail-over),
    ``"peer"`` (the controlled side follows the peer), ``"rebinding"`` (the peer's address
    changed), ``"abandoned"`` (the active path was given up), ``"validation_failed"`` (back to
    the last validated path).
    """

    session_id: int
    path_id: int
    old_path_id: int
    reason: str
    address: Hashable = None
    local: Hashable = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PathDead:
    """Validation gave up, or the path went silent with data outstanding (PTH-4.4); re-probed later."""

    session_id: int
    path_id: int
    address: Hashable = None
    local: Hashable = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PathAbandoned:
    """The path was given up for good (by the driver): nothing is sent on it any more."""

    session_id: int
    path_id: int
    address: Hashable = None
    local: Hashable = None


PathEvent = PathValidated | PathActive | PathDead | PathAbandoned
