"""Cases on services and channels that need no peer (spec/appapi.md §4), and plugins (§7).

Service names are ``Target.service``'s, so a run never meets another run's services, and each
case deletes what it registered.
"""

from __future__ import annotations

import time
from typing import Any

from ..checks import expect, expect_eq
from . import expect as check
from .cases_local import check_service, delete, put, status, stranger
from .registry import Target, case

# -- §4 services ---------------------------------------------------------------------------------


@case(
    "api/services/1",
    section="§4",
    title="PUT without an allow list or allow_any is 400 bad_request",
    requirements=("API-4.1", "API-2.1.2"),
)
def _(t: Target) -> str | None:
    name = t.service("noallow")
    bodies: list[dict[str, Any]] = [{}, {"kind": "stream"}, {"allow": []}, {"allow_any": False}, {"allow": None}]
    for body in bodies:
        check.error(put(t, name, body), 400, "bad_request", f"PUT {body}")
    listed = check.ok(t.api.request("GET", "/v1/services"), "GET /v1/services")
    expect(name not in [s.get("name") for s in listed.get("services", [])], "a refused PUT registered its service")
    return None


@case(
    "api/services/2",
    section="§4",
    title="PUT answers the service as status shows it; GET /v1/services and status list it",
    requirements=("API-4.2", "API-4.8", "API-3.1"),
)
def _(t: Target) -> str | None:
    name, other = t.service("shape"), stranger()
    try:
        made = check_service(check.ok(put(t, name, {"allow_any": True}), "PUT allow_any"), "PUT's answer")
        expect_eq((made["name"], made["kind"], made["allow_any"]), (name, "stream", True), "name, kind, allow_any")
        listed = check.obj(check.ok(t.api.request("GET", "/v1/services"), "GET /v1/services"), "services")
        expect(isinstance(listed.get("services"), list), f"GET /v1/services: {listed}")
        mine = [s for s in listed["services"] if isinstance(s, dict) and s.get("name") == name]
        expect(len(mine) == 1, f"GET /v1/services lists {name} {len(mine)} times")
        expect_eq(check_service(mine[0], "GET /v1/services item"), made, "the listed service")
        in_status = [s for s in status(t.api)["services"] if s.get("name") == name]
        expect(in_status == [made], f"status shows {in_status}, expected [{made}]")
        made = check_service(check.ok(put(t, name, {"allow": [other]}), "PUT allow [peer]"), "PUT's answer")
        expect_eq((made["allow"], made["allow_any"]), ([other], False), "allow, allow_any")
    finally:
        delete(t, name)
    return None


@case(
    "api/services/3",
    section="§2",
    title="a peer id that is not one is 400 invalid_peer_id",
    requirements=("API-2.4", "API-2.1.2"),
)
def _(t: Target) -> str | None:
    name = t.service("badpeer")
    good = stranger()
    bad = ["not-a-peer-id", good[:-1], good[:-1] + ("a" if good[-1] != "a" else "b"), good + "a", "0" + good[1:], ""]
    try:
        for peer in bad:
            check.error(put(t, name, {"allow": [peer]}), 400, "invalid_peer_id", f"allow [{peer!r}]")
        for peer in bad[:3]:
            check.error(t.api.request("GET", f"/v1/peers/{peer}/sas"), 400, "invalid_peer_id", f"sas of {peer!r}")
            verify = t.api.request("POST", f"/v1/peers/{peer}/verify", {"sas": "1"})
            check.error(verify, 400, "invalid_peer_id", f"verify {peer!r}")
    finally:
        delete(t, name)
    return None


@case(
    "api/services/4",
    section="§4",
    title="a service name that is not 1-64 of a-z 0-9 . _ - is 400 invalid_service",
    requirements=("API-4.9", "API-2.1.2"),
)
def _(t: Target) -> str | None:
    for name in ("Upper", "a%20b", "a" * 65, "caf%C3%A9", "semi;colon", "a%00"):
        check.error(put(t, name, {"allow_any": True}), 400, "invalid_service", f"PUT /v1/services/{name}")
    longest = ("c" + t.tag + "-" + "x" * 64)[:64]
    try:
        check.ok(put(t, longest, {"allow_any": True}), "a 64-byte name")
        check.ok(put(t, "c.-_" + t.tag, {"allow_any": True}), "a name of . - _")
    finally:
        delete(t, longest)
        delete(t, "c.-_" + t.tag)
    return None


@case(
    "api/services/5",
    section="§4",
    title="names starting with _ are the daemon's own: invalid_service",
    requirements=("API-4.10",),
)
def _(t: Target) -> str | None:
    for name in ("_bench", "_x", "_" + t.tag):
        check.error(put(t, name, {"allow_any": True}), 400, "invalid_service", f"PUT /v1/services/{name}")
    return None


@case(
    "api/services/6",
    section="§4",
    title="a kind other than stream or message is 400 bad_request; message is taken",
    requirements=("API-4.3", "API-4.2"),
)
def _(t: Target) -> str | None:
    name = t.service("kind")
    try:
        for kind in ("datagram", "", 1, None):
            body = {"allow_any": True, "kind": kind}
            check.error(put(t, name, body), 400, "bad_request", f"PUT kind {kind!r}")
        made = check.ok(put(t, name, {"allow_any": True, "kind": "message"}), "PUT kind message")
        expect_eq(made.get("kind"), "message", "the service's kind")
    finally:
        delete(t, name)
    return None


@case(
    "api/services/7",
    section="§4",
    title="PUT again replaces the allow list; a PUT of the other kind is 409 conflict",
    requirements=("API-4.4", "API-4.5"),
)
def _(t: Target) -> str | None:
    name, one, two = t.service("replace"), stranger(), stranger()
    try:
        check.ok(put(t, name, {"allow": [one]}), "PUT allow [one]")
        made = check.ok(put(t, name, {"allow": [two]}), "PUT allow [two]")
        expect_eq(made.get("allow"), [two], "the allow list after the second PUT")
        made = check.ok(put(t, name, {"allow_any": True}), "PUT allow_any")
        expect_eq(made.get("allow_any"), True, "allow_any after the third PUT")
        other = put(t, name, {"allow_any": True, "kind": "message"})
        check.error(other, 409, "conflict", "PUT kind message over a stream service")
        listed = [s for s in status(t.api)["services"] if s.get("name") == name]
        expect(len(listed) == 1 and listed[0].get("kind") == "stream", f"the service became {listed}")
    finally:
        delete(t, name)
    return None


@case(
    "api/services/8",
    section="§4",
    title="DELETE answers 200 and the service is gone; DELETE of an unknown one is 404 not_found",
    requirements=("API-4.6", "API-2.1.2"),
)
def _(t: Target) -> str | None:
    name = t.service("delete")
    check.ok(put(t, name, {"allow_any": True}), "PUT")
    check.ok(t.api.request("DELETE", f"/v1/services/{name}"), "DELETE of the service")
    listed = check.ok(t.api.request("GET", "/v1/services"), "GET /v1/services")
    expect(name not in [s.get("name") for s in listed.get("services", [])], "the deleted service is still listed")
    check.error(t.api.request("DELETE", f"/v1/services/{name}"), 404, "not_found", "DELETE again")
    check.error(t.api.request("DELETE", f"/v1/services/{t.service('never')}"), 404, "not_found", "DELETE unknown")
    return None


# -- §4 channels without a peer ------------------------------------------------------------------


@case(
    "api/channels/1",
    section="§4",
    title="accept or connect without an Upgrade is 426 upgrade_required",
    requirements=("API-4.20", "API-2.1.2"),
)
def _(t: Target) -> str | None:
    name = t.service("noupgrade")
    try:
        check.ok(put(t, name, {"allow_any": True}), "PUT")
        accept = f"/v1/services/{name}/accept"
        check.error(t.api.request("POST", accept), 426, "upgrade_required", "POST accept")
        reply = t.api.request("POST", accept, headers=[("Upgrade", "p2pos-stream/1")])
        check.error(reply, 426, "upgrade_required", "POST accept with Upgrade but no Connection: Upgrade")
        reply = t.api.request("POST", accept, headers=[("Connection", "Upgrade"), ("Upgrade", "h2c")])
        check.error(reply, 426, "upgrade_required", "POST accept with Upgrade: h2c")
        connect = f"/v1/peers/{stranger()}/services/{name}/connect"
        check.error(t.api.request("POST", connect), 426, "upgrade_required", "POST connect")
    finally:
        delete(t, name)
    return None


@case(
    "api/channels/2",
    section="§4",
    title="accept on an unknown service is 404 not_found, on one of the other kind 409 conflict",
    requirements=("API-4.18",),
)
def _(t: Target) -> str | None:
    reply, channel = t.api.stream_channel("POST", f"/v1/services/{t.service('none')}/accept")
    if channel is not None:
        channel.close()
    check.error(reply, 404, "not_found", "accept on an unknown service")
    stream, message = t.service("isstream"), t.service("ismessage")
    try:
        check.ok(put(t, stream, {"allow_any": True}), "PUT stream")
        check.ok(put(t, message, {"allow_any": True, "kind": "message"}), "PUT message")
        reply, ws = t.api.websocket(f"/v1/services/{stream}/accept")
        if ws is not None:
            ws.close()
        check.error(reply, 409, "conflict", "a WebSocket accept on a stream service")
        reply, channel = t.api.stream_channel("POST", f"/v1/services/{message}/accept")
        if channel is not None:
            channel.close()
        check.error(reply, 409, "conflict", "a stream accept on a message service")
    finally:
        delete(t, stream)
        delete(t, message)
    return None


@case(
    "api/channels/3",
    section="§4",
    title="connect to a bad peer id is invalid_peer_id, to the daemon's own id bad_request",
    requirements=("API-4.19", "API-4.23", "API-2.4"),
)
def _(t: Target) -> str | None:
    reply, channel = t.api.stream_channel("POST", "/v1/peers/not-a-peer-id/services/x/connect")
    if channel is not None:
        channel.close()
    check.error(reply, 400, "invalid_peer_id", "connect to not-a-peer-id")
    own = status(t.api)["peer_id"]
    reply, channel = t.api.stream_channel("POST", f"/v1/peers/{own}/services/x/connect")
    if channel is not None:
        channel.close()
    check.error(reply, 400, "bad_request", "connect to the daemon's own peer id")
    return None


@case(
    "api/channels/4",
    section="§3",
    title="sas of, and connect to, a peer nobody knows: 502 peer_unreachable",
    requirements=("API-3.4", "API-4.19", "API-2.1.2"),
)
def _(t: Target) -> str | None:
    nobody = stranger()
    started = time.monotonic()
    reply = t.api.request("GET", f"/v1/peers/{nobody}/sas")
    check.error(reply, 502, "peer_unreachable", "sas of an unknown peer")
    reply, channel = t.api.stream_channel("POST", f"/v1/peers/{nobody}/services/x/connect", timeout=30)
    if channel is not None:
        channel.close()
    check.error(reply, 502, "peer_unreachable", "connect to an unknown peer")
    return f"refused in {time.monotonic() - started:.1f} s"


# -- §7 plugins ----------------------------------------------------------------------------------


@case(
    "api/plugins/1",
    section="§7",
    title="GET /v1/plugins lists them; start or stop of an unknown plugin is 404 not_found",
    requirements=("API-7.5", "API-7.6"),
)
def _(t: Target) -> str | None:
    listed = check.obj(check.ok(t.api.request("GET", "/v1/plugins"), "GET /v1/plugins"), "GET /v1/plugins")
    expect(isinstance(listed.get("plugins"), list), f"GET /v1/plugins: {listed}")
    for item in listed["plugins"]:
        check.fields(item, {"name": str, "state": str}, "plugins[]")
    for action in ("start", "stop"):
        reply = t.api.request("POST", f"/v1/plugins/conf-{t.tag}-none/{action}")
        check.error(reply, 404, "not_found", f"{action} of an unknown plugin")
    return f"{len(listed['plugins'])} plugin(s)"
