"""Cases with a second daemon (``--peer-socket``): channels between the two, refusals, SAS, events.

``t.api`` is daemon A (``--socket``), ``t.peer`` daemon B; both are registered at the same
rendezvous node, so A finds B by its peer id.  A case that waits in ``accept`` on one daemon
while it connects from the other runs the ``accept`` in a thread.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import h11

from ..checks import CaseFailed, expect, expect_eq
from . import expect as check
from .cases_events import check_event
from .cases_local import delete, put, status, stranger
from .registry import Target, case
from .wire import STREAM_PROTOCOL, Channel, EventStream, Reply, WebSocket, send

T = TypeVar("T")
#: Seconds for a channel to open between the two daemons (a first one makes a session).
OPEN_TIMEOUT = 20.0


def ids(t: Target) -> tuple[str, str]:
    """(A's peer id, B's peer id)."""
    a = check.peer_id(status(t.api)["peer_id"], "A's peer id")
    b = t.peer_id_given or check.peer_id(status(t.peer)["peer_id"], "B's peer id")
    return a, b


@contextlib.contextmanager
def in_thread(func: Callable[[], T]) -> Iterator[concurrent.futures.Future[T]]:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        yield pool.submit(func)


def result(future: concurrent.futures.Future[T], what: str, timeout: float = OPEN_TIMEOUT) -> T:
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        raise CaseFailed(f"{what}: nothing within {timeout} s") from None


def opened(reply: Reply, channel: Any, peer: str, what: str) -> None:
    """Fail unless ``reply`` is a ``101`` whose ``P2pos-Peer`` names ``peer``."""
    if reply.status != 101 or channel is None:
        raise CaseFailed(f"{what}: expected 101, got {reply.show()}")
    expect_eq(reply.headers.get("p2pos-peer"), peer, f"{what}: P2pos-Peer")


def stream_pair(t: Target, name: str, a: str, b: str) -> tuple[Channel, Channel]:
    """A stream channel from A to B's ``name``: (A's end, B's end)."""
    with in_thread(lambda: t.peer.stream_channel("POST", f"/v1/services/{name}/accept", timeout=OPEN_TIMEOUT)) as taken:
        reply, mine = t.api.stream_channel("POST", f"/v1/peers/{b}/services/{name}/connect", timeout=OPEN_TIMEOUT)
        opened(reply, mine, b, "connect")
        theirs_reply, theirs = result(taken, "accept")
    opened(theirs_reply, theirs, a, "accept")
    assert mine is not None and theirs is not None
    return mine, theirs


def send_in_thread(channel: Channel, data: bytes) -> threading.Thread:
    thread = threading.Thread(target=channel.send, args=(data,), daemon=True)
    thread.start()
    return thread


@case(
    "api/peer/1",
    section="§4",
    title="connect and accept by Upgrade p2pos-stream/1: P2pos-Peer, bytes both ways, half-close",
    requirements=("API-4.14", "API-4.15", "API-4.16", "API-4.19", "API-2.1.2"),
    needs="two",
)
def _(t: Target) -> str | None:
    a, b = ids(t)
    name = t.service("stream")
    check.ok(put(t, name, {"allow": [a]}, t.peer), "PUT on B")
    try:
        mine, theirs = stream_pair(t, name, a, b)
        with contextlib.closing(mine), contextlib.closing(theirs):
            up, down = os.urandom(300_000), os.urandom(200_000)
            writer = send_in_thread(mine, up)
            expect(theirs.read_exactly(len(up), 30) == up, "B read other bytes than A wrote")
            writer.join(30)
            writer = send_in_thread(theirs, down)
            expect(mine.read_exactly(len(down), 30) == down, "A read other bytes than B wrote")
            writer.join(30)
            mine.half_close()
            rest = theirs.read_to_end()
            expect(rest == b"", f"after A's half-close B read {len(rest)} more bytes")
            theirs.send(b"still open after the peer's half-close")
            expect_eq(mine.read_exactly(38), b"still open after the peer's half-close", "what B sent after A's EOF")
            theirs.half_close()
            expect_eq(mine.read_to_end(), b"", "what A read after B's half-close")
    finally:
        delete(t, name, t.peer)
    return "300 kB up, 200 kB down, both half-closes"


@case(
    "api/peer/2",
    section="§4",
    title="a peer not on the allow list: 403 not_allowed at the app, channel_refused on the refusing daemon",
    requirements=("API-4.11", "API-5.7", "API-2.1.2"),
    needs="two",
)
def _(t: Target) -> str | None:
    a, b = ids(t)
    name = t.service("notallowed")
    check.ok(put(t, name, {"allow": [stranger()]}, t.peer), "PUT on B")
    try:
        with EventStream(t.peer, None) as events:
            reply, channel = t.api.stream_channel("POST", f"/v1/peers/{b}/services/{name}/connect", timeout=30)
            if channel is not None:
                channel.close()
            check.error(reply, 403, "not_allowed", "connect to a service that does not allow A")
            seen = events.until(lambda e: e.get("type") == "channel_refused" and e.get("service") == name)
        refused = seen[-1]
        check_event(refused)
        expect_eq((refused.get("peer_id"), refused.get("why")), (a, "not_allowed"), "channel_refused's peer and why")
    finally:
        delete(t, name, t.peer)
    return None


@case(
    "api/peer/3",
    section="§4",
    title="a service the peer does not have: 502 service_refused",
    requirements=("API-4.13", "API-5.7", "API-2.1.2"),
    needs="two",
)
def _(t: Target) -> str | None:
    a, b = ids(t)
    name = t.service("missing")
    with EventStream(t.peer, None) as events:
        reply, channel = t.api.stream_channel("POST", f"/v1/peers/{b}/services/{name}/connect", timeout=30)
        if channel is not None:
            channel.close()
        check.error(reply, 502, "service_refused", "connect to a service B does not have")
        seen = events.until(lambda e: e.get("type") == "channel_refused" and e.get("service") == name)
    check_event(seen[-1])
    expect_eq((seen[-1].get("peer_id"), seen[-1].get("why")), (a, "no_service"), "channel_refused's peer and why")
    return None


@case(
    "api/peer/4",
    section="§4",
    title="a message service over WebSocket (GET + handshake): P2pos-Peer, messages both ways",
    requirements=("API-4.17", "API-4.19"),
    needs="two",
)
def _(t: Target) -> str | None:
    a, b = ids(t)
    name = t.service("ws")
    check.ok(put(t, name, {"allow": [a], "kind": "message"}, t.peer), "PUT kind message on B")
    try:
        with in_thread(lambda: t.peer.websocket(f"/v1/services/{name}/accept", timeout=OPEN_TIMEOUT)) as taken:
            reply, mine = t.api.websocket(f"/v1/peers/{b}/services/{name}/connect", timeout=OPEN_TIMEOUT)
            opened(reply, mine, b, "WebSocket connect")
            theirs_reply, theirs = result(taken, "WebSocket accept")
        opened(theirs_reply, theirs, a, "WebSocket accept")
        assert isinstance(mine, WebSocket) and isinstance(theirs, WebSocket)
        with contextlib.closing(mine), contextlib.closing(theirs):
            messages = [b"one", b"two" * 100, os.urandom(1000), b"\x00"]
            for message in messages:
                mine.send(message)
            got = [theirs.receive() for _ in messages]
            expect(got == messages, f"B received {[len(m) for m in got]} bytes, A sent {[len(m) for m in messages]}")
            for message in reversed(messages):
                theirs.send(message[::-1])
            back = [mine.receive() for _ in messages]
            expect(back == [m[::-1] for m in reversed(messages)], "A received other messages than B sent")
    finally:
        delete(t, name, t.peer)
    return f"{len(messages)} messages each way"


@case(
    "api/peer/5",
    section="§3",
    title="sas is equal on both daemons; verify marks verified (409 conflict if wrong); DELETE forgets",
    requirements=("API-3.2", "API-3.3", "API-3.5", "API-3.6", "API-3.8", "API-5.7"),
    needs="two",
)
def _(t: Target) -> str | None:
    a, b = ids(t)
    sas_types = {"peer_id": str, "sas": str, "verified": bool}
    mine = check.fields(check.ok(t.api.request("GET", f"/v1/peers/{b}/sas"), "sas on A"), sas_types, "A's sas")
    theirs = check.fields(check.ok(t.peer.request("GET", f"/v1/peers/{a}/sas"), "sas on B"), sas_types, "B's sas")
    expect_eq((mine["peer_id"], theirs["peer_id"]), (b, a), "the peer ids of the two answers")
    expect(bool(mine["sas"].strip()), "an empty sas")
    expect_eq(mine["sas"], theirs["sas"], "the sas on A and on B")
    wrong = "".join("1" if ch != "1" and ch.isdigit() else ("2" if ch.isdigit() else ch) for ch in mine["sas"])
    try:
        check.error(t.api.request("POST", f"/v1/peers/{b}/verify", {"sas": wrong}), 409, "conflict", "a wrong sas")
        expect(not _verified_in_status(t, b), "a wrong sas marked the peer verified")
        with EventStream(t.api, None) as events:
            done = check.ok(t.api.request("POST", f"/v1/peers/{b}/verify", {"sas": mine["sas"]}), "the right sas")
            seen = events.until(lambda e: e.get("type") == "verified" and e.get("peer_id") == b)
        check_event(seen[-1])
        expect_eq(done.get("verified"), True, "verify's answer")
        again = check.ok(t.api.request("GET", f"/v1/peers/{b}/sas"), "sas after verify")
        expect_eq(again.get("verified"), True, "sas.verified after verify")
        expect(_verified_in_status(t, b), "status does not show the peer verified")
    finally:
        forgot = t.api.request("DELETE", f"/v1/peers/{b}/verify")
    check.ok(forgot, "DELETE verify")
    after = check.ok(t.api.request("GET", f"/v1/peers/{b}/sas"), "sas after DELETE verify")
    expect_eq(after.get("verified"), False, "sas.verified after DELETE verify")
    expect(not _verified_in_status(t, b), "status still shows the peer verified after DELETE")
    return f"sas {mine['sas']}"


def _verified_in_status(t: Target, peer: str) -> bool:
    entries = [p for p in status(t.api)["peers"] if isinstance(p, dict) and p.get("peer_id") == peer]
    expect(len(entries) == 1, f"status lists peer {peer[:12]}... {len(entries)} times, expected once")
    return entries[0].get("verified") is True


@case(
    "api/peer/6",
    section="§5",
    title="channel_opened (out on A, in on B) is pushed as it happens; peer_connected is in the log",
    requirements=("API-5.3", "API-5.7", "API-5.2"),
    needs="two",
)
def _(t: Target) -> str | None:
    a, b = ids(t)
    name = t.service("events")
    check.ok(put(t, name, {"allow_any": True}, t.peer), "PUT on B")
    try:
        with EventStream(t.api, None) as on_a, EventStream(t.peer, None) as on_b:
            mine, theirs = stream_pair(t, name, a, b)
            mine.close()
            theirs.close()
            out = on_a.until(lambda e: e.get("type") == "channel_opened" and e.get("service") == name)[-1]
            into = on_b.until(lambda e: e.get("type") == "channel_opened" and e.get("service") == name)[-1]
        for event in (out, into):
            check_event(event)
        expect_eq((out.get("peer_id"), out.get("direction")), (b, "out"), "A's channel_opened")
        expect_eq((into.get("peer_id"), into.get("direction")), (a, "in"), "B's channel_opened")
    finally:
        delete(t, name, t.peer)
    with EventStream(t.api, 0) as log:
        events = log.drain()
    connected = [e for e in events if e.get("type") == "peer_connected" and e.get("peer_id") == b]
    expect(bool(connected), f"A's log has no peer_connected for B: {[e.get('type') for e in events]}")
    check_event(connected[-1])
    seqs = [e.get("seq") for e in events]
    expect_eq(seqs, list(range(1, len(seqs) + 1)), "the numbers of A's events")
    return None


@case(
    "api/peer/7",
    section="§4",
    title="two channels to one peer use one session: status lists the peer once",
    requirements=("API-4.21",),
    needs="two",
)
def _(t: Target) -> str | None:
    a, b = ids(t)
    name = t.service("reuse")
    check.ok(put(t, name, {"allow": [a]}, t.peer), "PUT on B")
    try:
        first = stream_pair(t, name, a, b)
        second = stream_pair(t, name, a, b)
        try:
            listed = [p for p in status(t.api)["peers"] if p.get("peer_id") == b]
            expect(len(listed) == 1, f"status lists B {len(listed)} times with two channels open")
            second[0].send(b"2")
            first[0].send(b"1")
            expect_eq((first[1].read_exactly(1), second[1].read_exactly(1)), (b"1", b"2"), "the two channels' bytes")
        finally:
            for channel in (*first, *second):
                channel.close()
    finally:
        delete(t, name, t.peer)
    return None


@case(
    "api/peer/8",
    section="§4",
    title="deleting a service leaves its open channels open",
    requirements=("API-4.7",),
    needs="two",
)
def _(t: Target) -> str | None:
    a, b = ids(t)
    name = t.service("keep")
    check.ok(put(t, name, {"allow": [a]}, t.peer), "PUT on B")
    try:
        mine, theirs = stream_pair(t, name, a, b)
    finally:
        check.ok(t.peer.request("DELETE", f"/v1/services/{name}"), "DELETE on B")
    with contextlib.closing(mine), contextlib.closing(theirs):
        time.sleep(0.2)
        mine.send(b"after delete")
        expect_eq(theirs.read_exactly(12), b"after delete", "A to B after the service was deleted")
        theirs.send(b"back")
        expect_eq(mine.read_exactly(4), b"back", "B to A after the service was deleted")
    return None


@case(
    "api/peer/9",
    section="§2.2",
    title="a client that closes while its accept waits takes no channel",
    requirements=("API-2.2.4", "API-4.14"),
    needs="two",
)
def _(t: Target) -> str | None:
    a, b = ids(t)
    name = t.service("gone")
    check.ok(put(t, name, {"allow": [a]}, t.peer), "PUT on B")
    try:
        quitter = t.peer.connect()
        headers = t.peer.headers([("Connection", "Upgrade"), ("Upgrade", STREAM_PROTOCOL)])
        accept = h11.Request(method="POST", target=f"/v1/services/{name}/accept", headers=headers)
        send(quitter, h11.Connection(h11.CLIENT), [accept])
        time.sleep(0.3)
        quitter.close()
        time.sleep(0.3)
        mine, theirs = stream_pair(t, name, a, b)
        with contextlib.closing(mine), contextlib.closing(theirs):
            mine.send(b"to the second accept")
            expect_eq(theirs.read_exactly(20), b"to the second accept", "what the second accept read")
    finally:
        delete(t, name, t.peer)
    return None


@case(
    "api/peer/10",
    section="§2.2",
    title="64 channels wait for accept, the 65th is 503 too_many; deleting the service resets the 64",
    requirements=("API-2.2.2", "API-4.12", "API-2.2.3"),
    needs="two",
)
def _(t: Target) -> str | None:
    a, b = ids(t)
    name = t.service("busy")
    check.ok(put(t, name, {"allow": [a]}, t.peer), "PUT on B")
    waiting: list[Channel] = []
    deleted = False
    try:
        target = f"/v1/peers/{b}/services/{name}/connect"
        for i in range(64):
            reply, channel = t.api.stream_channel("POST", target, timeout=OPEN_TIMEOUT)
            if channel is None:
                raise CaseFailed(f"channel {i + 1} of 64 nobody accepts: {reply.show()}")
            waiting.append(channel)
        services = [s for s in status(t.peer)["services"] if s.get("name") == name]
        expect(len(services) == 1 and services[0].get("waiting") == 64, f"B's service shows {services}")
        reply, channel = t.api.stream_channel("POST", target, timeout=OPEN_TIMEOUT)
        if channel is not None:
            waiting.append(channel)
        check.error(reply, 503, "too_many", "the 65th channel nobody accepts")
        check.ok(t.peer.request("DELETE", f"/v1/services/{name}"), "DELETE on B")
        deleted = True
        deadline = time.monotonic() + 10
        still = [c for c in waiting if not c.ended_within(max(0.05, deadline - time.monotonic()))]
        expect(not still, f"{len(still)} of the 64 waiting channels stayed open after the service was deleted")
    finally:
        for channel in waiting:
            channel.close()
        if not deleted:
            delete(t, name, t.peer)
    return None


@case(
    "api/peer/12",
    section="§3.1",
    title="PUT pin (udp) answers the pin and the paths, status shows it; a bad via is 400; DELETE unpins",
    requirements=("API-3.1.1", "API-3.1.2", "API-3.1.3"),
    needs="two",
)
def _(t: Target) -> str | None:
    _a, b = ids(t)
    target = f"/v1/peers/{b}/pin"
    try:
        pinned = check.ok(t.api.request("PUT", target, {"via": "udp"}), "PUT pin udp")
        check.fields(pinned, {"peer_id": str, "pin": str, "controlling": bool, "paths": list}, "pin's answer")
        expect_eq((pinned["peer_id"], pinned["pin"]), (b, "udp"), "pin's peer_id and pin")
        expect_eq(_pin_in_status(t, b), "udp", "status's pin after PUT")
        check.error(t.api.request("PUT", target, {"via": "pigeon"}), 400, "bad_request", "via pigeon")
        expect_eq(_pin_in_status(t, b), "udp", "status's pin after a refused PUT")
    finally:
        unpinned = t.api.request("DELETE", target)
    expect_eq(check.ok(unpinned, "DELETE pin").get("pin", "absent"), None, "DELETE pin's answer")
    expect_eq(_pin_in_status(t, b), None, "status's pin after DELETE")
    return f"{len(pinned['paths'])} path(s)"


def _pin_in_status(t: Target, peer: str) -> object:
    entries = [p for p in status(t.api)["peers"] if isinstance(p, dict) and p.get("peer_id") == peer]
    expect(len(entries) == 1, f"status lists peer {peer[:12]}... {len(entries)} times, expected once")
    return entries[0].get("pin", "absent")


#: Events kept at least (spec/appapi.md §5), and the requests the flood sends at once.
KEEP = 10_000
FLOOD_WORKERS = 32


@case(
    "api/peer/11",
    section="§5",
    title="the last 10,000 events are kept: a flood of refused channels, then after=last-10000",
    requirements=("API-5.5", "API-5.2"),
    needs="two",
    slow=True,
)
def _(t: Target) -> str | None:
    _a, b = ids(t)
    name = t.service("flood")
    target = f"/v1/peers/{b}/services/{name}/connect"

    def refused(_: int) -> None:
        reply, channel = t.api.stream_channel("POST", target, timeout=30)
        if channel is not None:
            channel.close()
        check.error(reply, 502, "service_refused", "a channel to a service B does not have")

    with EventStream(t.peer, None) as events:
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(FLOOD_WORKERS) as pool:
            list(pool.map(refused, range(KEEP + 1)))
        took = time.monotonic() - started
        seen = 0
        last: dict[str, Any] = {}
        while seen < KEEP + 1:
            item = events.next(10.0)
            if item is None:
                raise CaseFailed(f"B pushed {seen} channel_refused events of {KEEP + 1}")
            if item.get("type") == "channel_refused" and item.get("service") == name:
                seen += 1
                last = item
    final = int(last["seq"])
    with EventStream(t.peer, final - KEEP) as kept:
        first = kept.next(10.0)
        expect(first is not None, f"after={final - KEEP}: nothing")
        assert first is not None
        expect(first.get("type") != "missed", f"after={final - KEEP} of {final}: {first}")
        expect_eq(first.get("seq"), final - KEEP + 1, f"the first event after={final - KEEP}")
        count = 1
        while count < KEEP:
            item = kept.next(10.0)
            if item is None:
                raise CaseFailed(f"after={final - KEEP}: only {count} events of {KEEP}")
            expect_eq(item.get("seq"), final - KEEP + 1 + count, "the next event's number")
            count += 1
    return f"{KEEP + 1} refused channels in {took:.1f} s; events {final - KEEP + 1}..{final} kept"
