"""The app API's routes (spec/appapi.md): HTTP requests onto the ``Daemon``'s methods.

httpapi.py does HTTP (and refuses what must not reach the API); this module only matches paths
and methods, reads the JSON bodies and answers ``Json``, ``Lines`` (the event stream) or
``Upgrade`` (a channel: a raw byte stream, or a WebSocket for a message channel).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from .bridge import Prefixed, splice, websocket_accept, websocket_bridge
from .httpapi import ApiError, HttpApi, Json, Lines, Request, Response, Upgrade
from .streams import ChannelStream, MessageChannel

if TYPE_CHECKING:
    from .daemon import Daemon

STREAM_PROTOCOL = "p2pos-stream/1"

Route = Callable[["Daemon", Request, dict[str, str]], Awaitable[Response]]
_ROUTES: list[tuple[str, re.Pattern[str], Route]] = []


def route(method: str, pattern: str) -> Callable[[Route], Route]:
    compiled = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")

    def register(handler: Route) -> Route:
        _ROUTES.append((method, compiled, handler))
        return handler

    return register


def make_api(daemon: Daemon) -> HttpApi:
    async def handle(request: Request) -> Response:
        if daemon.stopping.is_set():
            raise ApiError(503, "daemon_stopping", "the daemon is shutting down")
        allowed = []
        for method, pattern, handler in _ROUTES:
            match = pattern.match(request.path)
            if match is None:
                continue
            if method != request.method:
                allowed.append(method)
                continue
            return await handler(daemon, request, match.groupdict())
        if allowed:
            raise ApiError(405, "method_not_allowed", f"{request.path} takes {', '.join(sorted(set(allowed)))}")
        raise ApiError(404, "not_found", f"no such path: {request.path} (the API is under /v1/)")

    return HttpApi(handle)


def _body(request: Request) -> dict[str, Any]:
    if request.body is None:
        return {}
    if not isinstance(request.body, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object")
    return request.body


# -- status, peers ---------------------------------------------------------------------------


@route("GET", "/v1/status")
async def _status(daemon: Daemon, request: Request, args: dict[str, str]) -> Response:
    return Json(200, daemon.status())


@route("GET", "/v1/peers/{peer}/sas")
async def _sas(daemon: Daemon, request: Request, args: dict[str, str]) -> Response:
    return Json(200, await daemon.sas(args["peer"]))


@route("POST", "/v1/peers/{peer}/verify")
async def _verify(daemon: Daemon, request: Request, args: dict[str, str]) -> Response:
    return Json(200, daemon.verify(args["peer"], _body(request).get("sas")))


@route("DELETE", "/v1/peers/{peer}/verify")
async def _unverify(daemon: Daemon, request: Request, args: dict[str, str]) -> Response:
    daemon.unverify(args["peer"])
    return Json(200, {"peer_id": args["peer"], "verified": False})


@route("PUT", "/v1/peers/{peer}/pin")
async def _pin(daemon: Daemon, request: Request, args: dict[str, str]) -> Response:
    return Json(200, await daemon.pin(args["peer"], _body(request).get("via")))


@route("DELETE", "/v1/peers/{peer}/pin")
async def _unpin(daemon: Daemon, request: Request, args: dict[str, str]) -> Response:
    return Json(200, await daemon.pin(args["peer"], None))


@route("POST", "/v1/stop")
async def _stop(daemon: Daemon, request: Request, args: dict[str, str]) -> Response:
    daemon.stop()
    return Json(200, {"stopping": True})


# -- services and channels -------------------------------------------------------------------


@route("GET", "/v1/services")
async def _services(daemon: Daemon, request: Request, args: dict[str, str]) -> Response:
    return Json(200, {"services": [s.describe() for s in daemon.services.values()]})


@route("PUT", "/v1/services/{name}")
async def _put_service(daemon: Daemon, request: Request, args: dict[str, str]) -> Response:
    body = _body(request)
    allow, allow_any, kind = body.get("allow"), body.get("allow_any", False), body.get("kind", "stream")
    if allow is not None and not (isinstance(allow, list) and all(isinstance(p, str) for p in allow)):
        raise ApiError(400, "bad_request", "'allow' must be a list of peer ids")
    if not isinstance(allow_any, bool):
        raise ApiError(400, "bad_request", "'allow_any' must be true or false")
    if not isinstance(kind, str):
        raise ApiError(400, "bad_request", "'kind' must be 'stream' or 'message'")
    service = daemon.put_service(args["name"], allow=allow, allow_any=allow_any, kind=kind)
    return Json(200, service.describe())


@route("DELETE", "/v1/services/{name}")
async def _delete_service(daemon: Daemon, request: Request, args: dict[str, str]) -> Response:
    daemon.delete_service(args["name"])
    return Json(200, {"deleted": args["name"]})


def _channel_response(request: Request, channel: ChannelStream | MessageChannel) -> Upgrade:
    peer = str(channel.peer_id)
    if isinstance(channel, MessageChannel):
        key = request.headers.get("sec-websocket-key", "")

        async def as_websocket(stream: trio.abc.Stream, leftover: bytes) -> None:
            await websocket_bridge(stream, leftover, channel)

        headers = [("sec-websocket-accept", websocket_accept(key)), ("p2pos-peer", peer)]
        return Upgrade("websocket", headers, as_websocket)

    async def as_stream(stream: trio.abc.Stream, leftover: bytes) -> None:
        await splice(Prefixed(stream, leftover), channel)

    return Upgrade(STREAM_PROTOCOL, [("p2pos-peer", peer)], as_stream)


def _wanted_kind(request: Request) -> str:
    """``stream`` for ``Upgrade: p2pos-stream/1``, ``message`` for a WebSocket handshake."""
    protocol = request.upgrade()
    if protocol == STREAM_PROTOCOL:
        return "stream"
    if protocol == "websocket":
        if not request.headers.get("sec-websocket-key"):
            raise ApiError(400, "bad_request", "a WebSocket handshake needs Sec-WebSocket-Key")
        return "message"
    raise ApiError(
        426,
        "upgrade_required",
        f"ask for the channel with 'Connection: Upgrade' and 'Upgrade: {STREAM_PROTOCOL}' (or a WebSocket)",
    )


async def _take(daemon: Daemon, request: Request, args: dict[str, str]) -> Response:
    kind = _wanted_kind(request)
    service = daemon.services.get(args["name"])
    if service is not None and service.kind_name != kind:
        raise ApiError(409, "conflict", f"service {args['name']!r} is a {service.kind_name} service")
    return _channel_response(request, await daemon.accept(args["name"]))


async def _open(daemon: Daemon, request: Request, args: dict[str, str]) -> Response:
    kind = _wanted_kind(request)
    return _channel_response(request, await daemon.connect(args["peer"], args["name"], kind=kind))


route("POST", "/v1/services/{name}/accept")(_take)
route("GET", "/v1/services/{name}/accept")(_take)
route("POST", "/v1/peers/{peer}/services/{name}/connect")(_open)
route("GET", "/v1/peers/{peer}/services/{name}/connect")(_open)


# -- events, plugins ---------------------------------------------------------------------------


@route("GET", "/v1/events")
async def _events(daemon: Daemon, request: Request, args: dict[str, str]) -> Response:
    after_text = request.query.get("after")
    if after_text is None:
        after = daemon.events.last_seq
    elif after_text.isdigit():
        after = int(after_text)
    else:
        raise ApiError(400, "bad_request", f"after={after_text!r}: expected an event number")
    return Lines(daemon.events.follow(after))


@route("GET", "/v1/plugins")
async def _plugins(daemon: Daemon, request: Request, args: dict[str, str]) -> Response:
    daemon.plugins.scan()
    return Json(200, {"plugins": daemon.plugins.status()})


@route("POST", "/v1/plugins/{name}/start")
async def _plugin_start(daemon: Daemon, request: Request, args: dict[str, str]) -> Response:
    return Json(200, (await daemon.plugins.start(args["name"])).describe())


@route("POST", "/v1/plugins/{name}/stop")
async def _plugin_stop(daemon: Daemon, request: Request, args: dict[str, str]) -> Response:
    return Json(200, (await daemon.plugins.stop(args["name"])).describe())


@route("POST", "/v1/bench/send")
async def _bench_send(daemon: Daemon, request: Request, args: dict[str, str]) -> Response:
    from . import selftest

    if not daemon.settings.bench:
        raise ApiError(404, "not_found", "node-level transfers are off (start the daemon with --bench)")
    body = _body(request)
    peer, nbytes = body.get("peer"), body.get("bytes")
    if not isinstance(peer, str) or not isinstance(nbytes, int) or isinstance(nbytes, bool):
        raise ApiError(400, "bad_request", 'expected {"peer": PEERID, "bytes": N}')
    return Json(200, await selftest.send(daemon, peer, nbytes))
