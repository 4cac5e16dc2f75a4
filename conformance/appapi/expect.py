"""Checks the app API cases share: error bodies (spec/appapi.md §2.1), JSON answers, peer ids."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from p2pos.proto import PeerId

from ..checks import CaseFailed, expect, short
from .wire import Reply


def error(reply: Reply, status: int, code: str, what: str) -> str:
    """Fail unless ``reply`` is the error ``status``/``code`` in the shape of API-2.1.1; returns its message."""
    if reply.status != status or reply.error_code() != code:
        raise CaseFailed(f"{what}: expected {status} {code}, got {reply.show()}")
    return error_shape(reply, what)


def error_shape(reply: Reply, what: str) -> str:
    """Fail unless ``reply`` is ``{"error": {"code": str, "message": one line}}`` as JSON; its message."""
    expect(
        reply.headers.get("content-type", "").split(";")[0].strip() == "application/json",
        f"{what}: Content-Type {reply.headers.get('content-type')!r}, expected application/json",
    )
    body = reply.json()
    expect(isinstance(body, dict) and set(body) == {"error"}, f"{what}: body {short(body)} is not {{'error': ...}}")
    inner = body["error"]
    expect(
        isinstance(inner, dict) and {"code", "message"} <= set(inner),
        f"{what}: error {short(inner)} lacks code or message",
    )
    code, message = inner["code"], inner["message"]
    expect(isinstance(code, str) and bool(code), f"{what}: code {short(code)} is not a string")
    expect(isinstance(message, str) and bool(message.strip()), f"{what}: message {short(message)} is empty")
    expect("\n" not in message and "\r" not in message, f"{what}: the message is not one line: {message!r}")
    return str(message)


def ok(reply: Reply, what: str, status: int = 200) -> Any:
    """The JSON body of a ``status`` answer (with ``Content-Type: application/json``, API-2.2)."""
    if reply.status != status:
        raise CaseFailed(f"{what}: expected {status}, got {reply.show()}")
    kind = reply.headers.get("content-type", "").split(";")[0].strip()
    expect(kind == "application/json", f"{what}: Content-Type {kind!r}, expected application/json")
    return reply.json()


def obj(value: Any, what: str) -> dict[str, Any]:
    expect(isinstance(value, dict), f"{what}: expected a JSON object, got {short(value)}")
    return dict(value)


def fields(value: Any, types: Mapping[str, type | tuple[type, ...]], what: str) -> dict[str, Any]:
    """Fail unless ``value`` is an object holding each field of ``types`` with that type."""
    found = obj(value, what)
    for name, kind in types.items():
        expect(name in found, f"{what}: no field {name!r} in {short(found, 200)}")
        ok_type = isinstance(found[name], kind) and not (isinstance(found[name], bool) and kind in (int, float))
        expect(ok_type, f"{what}: {name} = {short(found[name])} is not {kind}")
    return found


def peer_id(text: Any, what: str) -> str:
    """Fail unless ``text`` is a textual peer id (identity.md §2)."""
    expect(isinstance(text, str), f"{what}: {short(text)} is not a string")
    try:
        PeerId.parse(text)
    except Exception as exc:
        raise CaseFailed(f"{what}: {short(text)} is not a peer id ({exc})") from None
    return str(text)
