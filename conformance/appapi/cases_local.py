"""Cases against one daemon on its Unix socket: the socket, status, HTTP, refusals and errors
(spec/appapi.md §1-§3), and the helpers the other case modules share (``status``, ``put``,
``delete``, ``stranger``).

Each case cites the rules of spec/appapi.md it tests.  Service names are ``Target.service``'s,
so a run never meets another run's services, and each case deletes what it registered.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from typing import Any

import h11

from p2pos.proto import Identity

from ..checks import expect
from . import expect as check
from .registry import Target, case
from .wire import Api, closed_within, read_reply, send


def stranger() -> str:
    """A valid peer id nobody uses."""
    return str(Identity.generate().peer_id)


# -- §1 where the API listens ------------------------------------------------------------------


@case("api/socket/1", section="§1", title="the Unix socket has mode 0600", requirements=("API-1.1",))
def _(t: Target) -> str | None:
    info = os.stat(t.socket_path)
    expect(stat.S_ISSOCK(info.st_mode), f"{t.socket_path} is not a Unix socket")
    mode = stat.S_IMODE(info.st_mode)
    expect(mode == 0o600, f"{t.socket_path} has mode {mode:04o}, expected 0600")
    expect(info.st_uid == os.getuid(), f"{t.socket_path} belongs to uid {info.st_uid}, not to this user")
    return "mode 0600"


# -- §3 status -----------------------------------------------------------------------------------

STATUS_FIELDS: dict[str, type | tuple[type, ...]] = {
    "version": str,
    "peer_id": str,
    "core": str,
    "addresses": list,
    "registrations": list,
    "peers": list,
    "services": list,
    "plugins": list,
    "nat": dict,
}
REGISTRATION_STATES = {"registered", "connecting", "registering", "idle"}
#: API-3.9: the ``nat`` object's fields, each a type or null (``None`` in the tuple).
NAT_FINDINGS: dict[str, tuple[type | None, ...]] = {
    "udp": (bool, None),
    "server": (str, None),
    "mapped": (str, None),
    "nat": (bool, None),
    "mapping": (str, None),
    "filtering": (str, None),
    "allocation": (str, None),
    "allocation_delta": (int, None),
    "public": (bool, None),
    "hairpinning": (bool, None),
    "port_preservation": (bool, None),
}
NAT_STATES = {"waiting", "measuring", "measured", "failed"}
#: API-3.9: ``nat.keepalive`` (nat.md §5.5), when the daemon shows it.
KEEPALIVE_FIELDS: dict[str, tuple[type | None, ...]] = {
    "state": (str,),
    "reason": (str,),
    "server": (str, None),
    "interval": (int, float),
    "peer_interval": (int, float),
    "flows": (str, None),
    "bracket": (list, None),
    "learned_at": (str, None),
    "learning_seconds": (int, float, None),
    "search_datagrams": (int, None),
    "keepalives_sent": (int,),
    "keepalives_answered": (int,),
    "relearned": (int,),
}
KEEPALIVE_STATES = {"off", "waiting", "learning", "learned", "mapped", "failed", "not-needed"}
BEHAVIOURS = {None, "endpoint-independent", "address-dependent", "address-and-port-dependent"}


def status(api: Api) -> dict[str, Any]:
    return check.fields(check.ok(api.request("GET", "/v1/status"), "GET /v1/status"), STATUS_FIELDS, "status")


def check_status(body: dict[str, Any]) -> None:
    """Fail unless ``body`` has the shape of API-3.1 (every list item too)."""
    check.peer_id(body["peer_id"], "status.peer_id")
    for address in body["addresses"]:
        expect(isinstance(address, str) and ":" in address, f"status.addresses: {address!r} is not HOST:PORT")
    for item in body["registrations"]:
        reg = check.fields(item, {"node": str, "address": str, "state": str}, "status.registrations[]")
        expect(reg["state"] in REGISTRATION_STATES, f"registration state {reg['state']!r}")
        expect("observed" in reg and (reg["observed"] is None or isinstance(reg["observed"], str)), "observed")
    peer_types: dict[str, type | tuple[type, ...]] = {
        "peer_id": str,
        "address": str,
        "path": str,
        "rtt_ms": (int, float),
        "channels": int,
        "verified": bool,
    }
    for item in body["peers"]:
        check.peer_id(check.fields(item, peer_types, "status.peers[]")["peer_id"], "status.peers[].peer_id")
    for item in body["services"]:
        check_service(item, "status.services[]")
    for item in body["plugins"]:
        check.fields(item, {"name": str, "state": str}, "status.plugins[]")
    check_nat(body["nat"])


def _nullable(value: object, types: tuple[type | None, ...]) -> bool:
    if value is None:
        return None in types
    kinds = tuple(t for t in types if t is not None)
    return isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)


def check_nat(nat: dict[str, Any]) -> None:
    """Fail unless ``nat`` has the shape of API-3.9."""
    fields: dict[str, tuple[type | None, ...]] = {
        "state": (str,),
        "measured_at": (str, None),
        **NAT_FINDINGS,
        "binding_timeout": (int, float, None),
        "error": (str,),
        "families": (dict,),
    }
    for name, types in fields.items():
        expect(name in nat, f"status.nat has no {name!r}")
        expect(_nullable(nat[name], types), f"status.nat.{name}: {nat[name]!r} is not of {types}")
    expect(nat["state"] in NAT_STATES, f"status.nat.state {nat['state']!r}")
    for name in ("mapping", "filtering"):
        expect(nat[name] in BEHAVIOURS, f"status.nat.{name} {nat[name]!r}")
    expect(nat["allocation"] in (None, "preserved", "sequential", "random"), f"allocation {nat['allocation']!r}")
    for family, found in nat["families"].items():
        expect(family in ("ipv4", "ipv6"), f"status.nat.families: {family!r}")
        for name, types in {**NAT_FINDINGS, "measured_at": (str,)}.items():
            expect(name in found and _nullable(found[name], types), f"status.nat.families.{family}.{name}")
    keepalive = nat.get("keepalive")
    if keepalive is not None:
        expect(isinstance(keepalive, dict), f"status.nat.keepalive: {keepalive!r}")
        for name, types in KEEPALIVE_FIELDS.items():
            expect(name in keepalive, f"status.nat.keepalive has no {name!r}")
            expect(_nullable(keepalive[name], types), f"status.nat.keepalive.{name}: {keepalive[name]!r}")
        expect(keepalive["state"] in KEEPALIVE_STATES, f"status.nat.keepalive.state {keepalive['state']!r}")
        expect(keepalive["flows"] in (None, "node", "per-peer"), f"status.nat.keepalive.flows {keepalive['flows']!r}")
    punching = nat.get("punching")
    if punching is not None:
        names = ("active", "started", "succeeded", "failed", "ignored", "probes_sent", "answers_sent")
        for name in names:
            value = punching.get(name) if isinstance(punching, dict) else None
            expect(isinstance(value, int) and value >= 0, f"status.nat.punching.{name}: {value!r}")


def check_service(item: Any, what: str) -> dict[str, Any]:
    types = {"name": str, "kind": str, "allow": list, "allow_any": bool, "waiting": int}
    service = check.fields(item, types, what)
    expect(service["kind"] in ("stream", "message"), f"{what}: kind {service['kind']!r}")
    return service


@case(
    "api/status/1",
    section="§3",
    title="GET /v1/status has every field, with its type, without a token on the Unix socket",
    requirements=("API-3.1", "API-3.9", "API-1.2", "API-2.2"),
)
def _(t: Target) -> str | None:
    body = status(t.api)
    check_status(body)
    return f"peer {body['peer_id'][:12]}..., {len(body['registrations'])} registration(s)"


# -- §2 requests ---------------------------------------------------------------------------------


@case("api/http/1", section="§2", title="keep-alive: three requests on one connection", requirements=("API-2.1",))
def _(t: Target) -> str | None:
    with t.api.connect() as sock:
        conn = h11.Connection(h11.CLIENT)
        for i, target in enumerate(("/v1/status", "/v1/services", "/v1/status")):
            if i:
                expect(conn.our_state is h11.DONE, "the daemon ended the exchange early")
                conn.start_next_cycle()
            send(sock, conn, t.api.make_request("GET", target))
            reply = read_reply(sock, conn)
            check.ok(reply, f"request {i + 1} ({target}) on one connection")
            expect(
                conn.their_state is h11.DONE,
                f"the daemon closed the connection after request {i + 1} ({reply.headers.get('connection')})",
            )
    return None


@case(
    "api/http/2",
    section="§2",
    title="a path that names nothing is 404 not_found",
    requirements=("API-2.3", "API-2.1.1", "API-2.1.2"),
)
def _(t: Target) -> str | None:
    for target in ("/v1/nothing", "/v2/status", "/status", "/v1/services/x/y/z", "/"):
        check.error(t.api.request("GET", target), 404, "not_found", f"GET {target}")
    return None


@case(
    "api/http/3",
    section="§2",
    title="a known path with another method is 405 method_not_allowed",
    requirements=("API-2.3", "API-2.1.1", "API-2.1.2"),
)
def _(t: Target) -> str | None:
    for method, target in (("DELETE", "/v1/status"), ("POST", "/v1/status"), ("PUT", "/v1/events")):
        check.error(t.api.request(method, target), 405, "method_not_allowed", f"{method} {target}")
    return None


# -- §2 refusals ---------------------------------------------------------------------------------


@case(
    "api/refuse/1",
    section="§2",
    title="a request with an Origin header is 403 origin_refused",
    requirements=("API-2.6", "API-2.1.1", "API-2.1.2"),
)
def _(t: Target) -> str | None:
    for origin in ("https://evil.example", "null", "http://localhost"):
        reply = t.api.request("GET", "/v1/status", headers=[("Origin", origin)])
        check.error(reply, 403, "origin_refused", f"GET /v1/status with Origin: {origin}")
    return None


@case(
    "api/refuse/2",
    section="§2",
    title="refusals come before routing and before the body is parsed",
    requirements=("API-2.5", "API-2.6", "API-2.7"),
)
def _(t: Target) -> str | None:
    origin = [("Origin", "https://evil.example")]
    check.error(t.api.request("GET", "/v1/nothing", headers=origin), 403, "origin_refused", "Origin on a 404 path")
    check.error(t.api.request("DELETE", "/v1/status", headers=origin), 403, "origin_refused", "Origin on a 405")
    bad = t.api.request("PUT", f"/v1/services/{t.service('order')}", headers=origin, raw_body=b"{not json")
    check.error(bad, 403, "origin_refused", "Origin with a body that is not JSON")
    foreign = t.api.request("PUT", f"/v1/services/{t.service('order')}", host="evil.example", raw_body=b"{not json")
    check.error(foreign, 403, "host_refused", "a foreign Host with a body that is not JSON")
    services = check.ok(t.api.request("GET", "/v1/services"), "GET /v1/services")
    names = [s.get("name") for s in services.get("services", [])]
    expect(t.service("order") not in names, "a refused PUT registered its service")
    return None


@case(
    "api/refuse/3",
    section="§2",
    title="a Host other than the local names is 403 host_refused (DNS rebinding)",
    requirements=("API-2.7", "API-2.1.1", "API-2.1.2"),
)
def _(t: Target) -> str | None:
    for host in ("evil.example", "evil.example:80", "localhost.evil.example", "127.0.0.2", "[::2]:80", "p2pos.example"):
        reply = t.api.request("GET", "/v1/status", host=host)
        check.error(reply, 403, "host_refused", f"Host: {host}")
    return None


@case(
    "api/refuse/4",
    section="§2",
    title="the five local Host names are served, with and without a port",
    requirements=("API-2.13",),
)
def _(t: Target) -> str | None:
    for name in ("localhost", "127.0.0.1", "[::1]", "p2pos", "local"):
        for host in (name, f"{name}:80", f"{name}:41234"):
            check.ok(t.api.request("GET", "/v1/status", host=host), f"Host: {host}")
    return None


@case(
    "api/refuse/5",
    section="§2",
    title="a body over 1 MiB is 413 too_large (declared, and chunked)",
    requirements=("API-2.9", "API-2.1.1", "API-2.1.2"),
)
def _(t: Target) -> str | None:
    size = (1 << 20) + 1
    target = f"/v1/services/{t.service('big')}"
    head = t.api.raw_head("PUT", target, [("Content-Type", "application/json"), ("Content-Length", str(size))])
    check.error(t.api.raw(head + b" " * size), 413, "too_large", "PUT with Content-Length 1 MiB + 1")
    chunked = t.api.raw_head("PUT", target, [("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")])
    chunk = 64 * 1024
    body = b"".join(f"{chunk:x}\r\n".encode() + b" " * chunk + b"\r\n" for _ in range(size // chunk + 1))
    check.error(t.api.raw(chunked + body + b"0\r\n\r\n"), 413, "too_large", "a chunked body over 1 MiB")
    return None


@case(
    "api/refuse/6",
    section="§2",
    title="headers over 16 KiB are 431 bad_request",
    requirements=("API-2.10", "API-2.1.1"),
)
def _(t: Target) -> str | None:
    head = t.api.raw_head("GET", "/v1/status", [("X-Filler", "a" * (20 << 10))])
    check.error(t.api.raw(head), 431, "bad_request", "a request with 20 KiB of headers")
    return None


@case(
    "api/refuse/7",
    section="§2",
    title="a body that is not JSON is 400 bad_json",
    requirements=("API-2.12", "API-2.1.1", "API-2.1.2"),
)
def _(t: Target) -> str | None:
    target = f"/v1/services/{t.service('json')}"
    for body in (b"{not json", b'{"allow_any": true', b"\xff\xfe{}", b"allow_any=true"):
        check.error(t.api.request("PUT", target, raw_body=body), 400, "bad_json", f"PUT with body {body!r}")
    return None


@case(
    "api/refuse/8",
    section="§2",
    title="headers not complete within 10 s: the connection is closed",
    requirements=("API-2.11",),
)
def _(t: Target) -> str | None:
    with t.api.connect() as sock:
        started = time.monotonic()
        sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\n")
        expect(closed_within(sock, 15.0), "the connection was still open 15 s after a partial request head")
        took = time.monotonic() - started
        expect(took >= 5.0, f"the connection was closed after {took:.1f} s: too early for a 10 s limit")
    return f"closed after {took:.1f} s"


@case(
    "api/refuse/9",
    section="§2.2",
    title="a client that never finishes its headers does not delay others",
    requirements=("API-2.2.5",),
)
def _(t: Target) -> str | None:
    with contextlib.ExitStack() as stack:
        for _ in range(8):
            slow = stack.enter_context(t.api.connect())
            slow.sendall(b"GET /v1/status HTTP/1.1\r\nHost: loc")
        started = time.monotonic()
        check.ok(t.api.request("GET", "/v1/status"), "GET /v1/status beside 8 slow clients")
        took = time.monotonic() - started
        expect(took < 2.0, f"the answer took {took:.1f} s beside slow clients")
    return f"answered in {took * 1000:.0f} ms"


@case(
    "api/errors/1",
    section="§2.1",
    title="every error is {'error': {'code', 'message'}} as JSON, the message one line",
    requirements=("API-2.1.1", "API-2.2"),
)
def _(t: Target) -> str | None:
    name = t.service("errors")
    tries: list[tuple[str, str, Any, dict[str, Any]]] = [
        ("GET", "/v1/nothing", None, {}),
        ("DELETE", "/v1/status", None, {}),
        ("PUT", f"/v1/services/{name}", None, {"raw_body": b"{"}),
        ("PUT", f"/v1/services/{name}", {}, {}),
        ("PUT", "/v1/services/Bad%20Name", {"allow_any": True}, {}),
        ("PUT", f"/v1/services/{name}", {"allow": ["not-a-peer-id"]}, {}),
        ("GET", "/v1/status", None, {"headers": [("Origin", "https://evil.example")]}),
        ("GET", "/v1/status", None, {"host": "evil.example"}),
        ("POST", f"/v1/services/{name}/accept", None, {}),
        ("DELETE", f"/v1/services/{name}", None, {}),
        ("GET", "/v1/events?after=x", None, {}),
    ]
    codes = []
    for method, target, body, extra in tries:
        reply = t.api.request(method, target, body, **extra)
        expect(reply.status >= 400, f"{method} {target}: expected an error, got {reply.show()}")
        check.error_shape(reply, f"{method} {target} ({reply.status})")
        codes.append(reply.error_code())
    return ", ".join(str(c) for c in codes)


def refused_before_the_body(api: Api, extra: list[tuple[str, str]], host: str = "localhost") -> bytes:
    """A PUT whose head fails a check, sent with 1 byte of a 100-byte body: what comes within 3 s."""
    head = api.raw_head("PUT", "/v1/services/x", [("Content-Length", "100"), *extra], host=host)
    with api.connect() as sock:
        sock.sendall(head + b"{")
        sock.settimeout(3.0)
        try:
            return sock.recv(65536)
        except TimeoutError:
            return b""


@case(
    "api/refuse/10",
    section="§2",
    title="a refused head is answered at once, before its body is read",
    requirements=("API-2.5", "API-2.6", "API-2.7"),
)
def _(t: Target) -> str | None:
    answer = refused_before_the_body(t.api, [("Origin", "https://evil.example")])
    expect(answer.startswith(b"HTTP/1.1 403"), f"Origin with a body still coming: {answer[:60]!r} within 3 s")
    answer = refused_before_the_body(t.api, [], host="evil.example")
    expect(answer.startswith(b"HTTP/1.1 403"), f"a foreign Host with a body still coming: {answer[:60]!r} within 3 s")
    return None


# -- helpers for the other modules ---------------------------------------------------------------


def put(t: Target, name: str, body: Any, api: Api | None = None) -> Any:
    return (api or t.api).request("PUT", f"/v1/services/{name}", body)


def delete(t: Target, name: str, api: Api | None = None) -> None:
    (api or t.api).request("DELETE", f"/v1/services/{name}")
