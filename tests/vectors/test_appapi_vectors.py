"""spec/vectors/appapi.json checked against spec/appapi.md, independently of the code that wrote it:
the refusals' statuses and codes are the spec's table, every error body has the shape of §2.1,
the Upgrade answer is a 101 naming the peer, the event stream is chunked JSON lines that start
with a missed notice, and the WebSocket accept values are RFC 6455's computation."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parents[2] / "spec" / "vectors" / "appapi.json"
#: spec/appapi.md §2: what each refusal must be.
EXPECTED = {
    "an Origin header": (403, "origin_refused"),
    "a foreign Host": (403, "host_refused"),
    "TCP without the token": (401, "unauthorized"),
    "TCP with a wrong token": (401, "unauthorized"),
    "a body over 1 MiB announced": (413, "too_large"),
    "a body that is not JSON": (400, "bad_json"),
}


def _load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))
    return data


def _split(response: str) -> tuple[int, dict[str, str], str]:
    head, _, body = response.partition("\r\n\r\n")
    status_line, *header_lines = head.split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    return int(status_line.split(" ")[1]), headers, body


def _error_code(body: str) -> str:
    parsed = json.loads(body)
    assert set(parsed) == {"error"} and set(parsed["error"]) == {"code", "message"}
    assert "\n" not in parsed["error"]["message"]
    code: str = parsed["error"]["code"]
    return code


def test_refusals_are_the_spec_table() -> None:
    refusals = _load()["refusals"]
    assert {r["name"] for r in refusals} == set(EXPECTED)
    for refusal in refusals:
        status, headers, body = _split(refusal["response"])
        assert (status, _error_code(body)) == EXPECTED[refusal["name"]] == (refusal["status"], refusal["code"])
        assert headers["content-type"] == "application/json" and int(headers["content-length"]) == len(body)
        assert headers.get("connection") == "close"  # refused: the connection ends


def test_error_upgrade_and_events_exchanges() -> None:
    exchanges = {e["name"]: e for e in _load()["exchanges"]}
    status, _, body = _split(exchanges["an error body"]["response"])
    assert status == 404 and _error_code(body) == "not_found"
    status, headers, rest = _split(exchanges["a channel by Upgrade"]["response"])
    assert status == 101 and headers["upgrade"] == "p2pos-stream/1" and headers["connection"] == "upgrade"
    assert len(headers["p2pos-peer"]) == 60 and rest == "channel bytes"  # after the 101: the channel
    status, headers, chunked = _split(exchanges["events"]["response"])
    assert status == 200 and headers["content-type"] == "application/x-ndjson"
    lines = []
    while chunked:
        size_text, _, chunked = chunked.partition("\r\n")
        size = int(size_text, 16)
        if size == 0:
            break
        chunk, chunked = chunked[:size], chunked[size + 2 :]
        lines += [json.loads(line) for line in chunk.splitlines()]
    assert lines[0] == {"type": "missed", "from": 1, "to": 1}
    assert [e["seq"] for e in lines[1:]] == [2, 3] and all("type" in e for e in lines[1:])


def test_websocket_accept_values() -> None:
    guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    pairs = _load()["websocket_accept"]
    assert pairs[0] == {"key": "dGhlIHNhbXBsZSBub25jZQ==", "accept": "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="}  # RFC 6455 §1.3
    for pair in pairs:
        digest = hashlib.sha1(pair["key"].encode() + guid, usedforsecurity=False).digest()
        assert base64.b64encode(digest).decode() == pair["accept"]
