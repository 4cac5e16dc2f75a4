"""Cases on the event stream (spec/appapi.md §5) and on the daemon's connection limit (§2.2).

``api/limits/1`` runs before the event cases and ``api/events/4`` after them: a daemon that
keeps the connections of clients gone from an event stream fails ``api/events/4`` for it, and
would fail ``api/limits/1`` for the same reason if it ran later.
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

import h11

from ..checks import expect, expect_eq
from . import expect as check
from .cases_local import status
from .registry import Target, case
from .wire import Api, EventStream, read_reply, send

# -- §2.2 limits (before the event cases: a daemon that holds the connections of clients gone
# from an event stream would fail this case for that instead: api/events/4 checks it) ----------


def _fill(t: Target, stack: contextlib.ExitStack, count: int) -> list[socket.socket]:
    """``count`` connections that send nothing (each holds one of the daemon's places)."""
    idle = [stack.enter_context(t.api.connect()) for _ in range(count)]
    time.sleep(1.0)  # let the daemon accept them
    return idle


def _served_within(
    t: Target, stack: contextlib.ExitStack, seconds: float
) -> tuple[socket.socket, h11.Connection, bool]:
    """A new connection asking for status: (it, its h11 state, whether an answer began within ``seconds``)."""
    waiting = stack.enter_context(t.api.connect())
    conn = h11.Connection(h11.CLIENT)
    send(waiting, conn, t.api.make_request("GET", "/v1/status"))
    waiting.settimeout(seconds)
    try:
        first = waiting.recv(65536)
    except TimeoutError:
        return waiting, conn, False
    conn.receive_data(first)
    return waiting, conn, True


@case(
    "api/limits/1",
    section="§2.2",
    title="256 connections are served at once, no more; the 257th is served when others end",
    requirements=("API-2.2.1",),
)
def _(t: Target) -> str | None:
    with contextlib.ExitStack() as stack:
        idle = _fill(t, stack, 256)
        waiting, conn, early = _served_within(t, stack, 1.0)
        expect(not early, "the 257th connection was served beside 256 others")
        for sock in idle[:8]:
            sock.close()
        waiting.settimeout(5.0)
        check.ok(read_reply(waiting, conn), "the 257th connection once 8 of the 256 ended")
    return None


# -- §5 events -----------------------------------------------------------------------------------

EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "started": ("peer_id",),
    "registered": ("node", "observed"),
    "registration_lost": ("node", "why"),
    "peer_connected": ("peer_id", "address"),
    "peer_disconnected": ("peer_id", "why"),
    "channel_opened": ("peer_id", "service", "direction"),
    "channel_refused": ("peer_id", "service", "why"),
    "introduced": ("peer_id", "observed"),
    "verified": ("peer_id",),
    "plugin": ("name", "state", "code"),
    "error": ("message",),
    "stopping": (),
}


def check_event(event: dict[str, Any]) -> None:
    """Fail unless ``event`` carries ``seq``, ``type`` and the fields of its type (API-5.7)."""
    expect(isinstance(event.get("seq"), int) and not isinstance(event.get("seq"), bool), f"no seq in {event}")
    kind = event.get("type")
    expect(isinstance(kind, str), f"no type in {event}")
    for name in EVENT_FIELDS.get(str(kind), ()):
        expect(name in event, f"a {kind} event without {name}: {event}")
    if kind == "channel_opened":
        expect(event["direction"] in ("in", "out"), f"direction {event['direction']!r}")
    if kind == "channel_refused":
        expect(event["why"] in ("not_allowed", "no_service", "busy"), f"why {event['why']!r}")


def all_events(api: Api) -> list[dict[str, Any]]:
    """The kept events from the first (``after=0``), until none comes for half a second."""
    with EventStream(api, 0) as stream:
        kind = stream.headers.get("content-type", "").split(";")[0].strip()
        expect(kind == "application/x-ndjson", f"GET /v1/events: Content-Type {kind!r}, expected application/x-ndjson")
        events = stream.drain()
        expect(not stream.ended, "the event stream's body ended: it must stay open while the daemon runs")
    return events


@case(
    "api/events/1",
    section="§5",
    title="after=0: ndjson, numbered from 1 without gaps, started first, every event with its fields",
    requirements=("API-5.1", "API-5.2", "API-5.3", "API-5.7"),
)
def _(t: Target) -> str | None:
    events = all_events(t.api)
    expect(bool(events), "after=0 gave no event (a daemon has at least 'started')")
    expect(events[0].get("type") != "missed", f"a fresh daemon's log lost events already: {events[0]}")
    for event in events:
        check_event(event)
    seqs = [e["seq"] for e in events]
    expect_eq(seqs, list(range(1, len(seqs) + 1)), "the numbers of the events after 0")
    started = [e for e in events if e["type"] == "started"]
    expect(len(started) == 1, f"{len(started)} 'started' events")
    expect_eq(started[0]["peer_id"], status(t.api)["peer_id"], "started.peer_id")
    return f"{len(events)} events: {', '.join(str(e['type']) for e in events[:6])}"


@case(
    "api/events/2",
    section="§5",
    title="after=N starts with event N+1",
    requirements=("API-5.3", "API-5.2"),
)
def _(t: Target) -> str | None:
    events = all_events(t.api)
    last = events[-1]["seq"]
    for after in range(last):
        with EventStream(t.api, after) as stream:
            first = stream.next(5.0)
        expect(first is not None, f"after={after}: no event, expected {after + 1}")
        assert first is not None
        expect_eq(first.get("seq"), after + 1, f"the first event after={after}")
        expect_eq(first, events[after], f"event {after + 1} read again")
    with EventStream(t.api, last) as stream:
        more = stream.next(0.5)
    expect(more is None or more.get("seq", 0) > last, f"after={last} gave an old event: {more}")
    return f"resumed from each of 0..{last - 1}"


@case(
    "api/events/3",
    section="§5",
    title="without after only new events come; after=x is 400 bad_request",
    requirements=("API-5.4", "API-5.1"),
)
def _(t: Target) -> str | None:
    last = all_events(t.api)[-1]["seq"]
    with EventStream(t.api, None) as stream:
        kind = stream.headers.get("content-type", "").split(";")[0].strip()
        expect_eq(kind, "application/x-ndjson", "Content-Type")
        first = stream.next(1.0)
        expect(first is None or first.get("seq", 0) > last, f"without after, an old event came: {first}")
        expect(not stream.ended, "the event stream ended")
    for bad in ("x", "-1", "1.5"):
        check.error(t.api.request("GET", f"/v1/events?after={bad}"), 400, "bad_request", f"after={bad}")
    return None


# -- §2.2 a client gone from an event stream (last of the one-daemon cases) ---------------------


@case(
    "api/events/4",
    section="§2.2",
    title="clients that close their event streams free their places among the 256 at once",
    requirements=("API-2.2.6", "API-2.2.1", "API-2.2.5"),
)
def _(t: Target) -> str | None:
    for _ in range(8):
        with EventStream(t.api, None):
            pass
    time.sleep(0.5)
    with contextlib.ExitStack() as stack:
        _fill(t, stack, 255)
        _waiting, _conn, served = _served_within(t, stack, 3.0)
    expect(served, "beside 255 connections a 256th was not served: the closed event streams still hold places")
    return None
