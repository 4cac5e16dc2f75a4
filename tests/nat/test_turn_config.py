"""turn:/turns: URLs (RFC 7065) and credentials (p2pos_proto/nat/turn_config.py, spec/turn.md §4)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest

from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.nat.turn_config import TurnServer, TurnTransport, parse_turn_url, rest_credentials

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "spec" / "vectors" / "turn.json").read_text("utf-8"))


@pytest.mark.parametrize(
    ("url", "host", "port", "transport"),
    [
        ("turn:198.18.0.1", "198.18.0.1", 3478, TurnTransport.UDP),
        ("turn:198.18.0.1:3479", "198.18.0.1", 3479, TurnTransport.UDP),
        ("turn:198.18.0.1?transport=udp", "198.18.0.1", 3478, TurnTransport.UDP),
        ("turn:198.18.0.1:80?transport=tcp", "198.18.0.1", 80, TurnTransport.TCP),
        ("TURN:relay.example.test?transport=TCP", "relay.example.test", 3478, TurnTransport.TCP),
        ("turns:relay.example.test", "relay.example.test", 5349, TurnTransport.TLS),
        ("turns:relay.example.test:443?transport=tcp", "relay.example.test", 443, TurnTransport.TLS),
        ("turn:[2001:2::1]", "2001:2::1", 3478, TurnTransport.UDP),
        ("turns:[2001:2::1]:443", "2001:2::1", 443, TurnTransport.TLS),
    ],
)
def test_urls(url: str, host: str, port: int, transport: TurnTransport) -> None:
    """[TRN-4.1] host, default ports 3478/5349, transport from the scheme and ?transport=."""
    server = parse_turn_url(url)
    assert server == TurnServer(host=host, port=port, transport=transport)
    assert parse_turn_url(server.url) == server


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("turn:alice:secret@198.18.0.1", "never from the URL"),
        ("turn:alice@198.18.0.1", "never from the URL"),
        ("stun:198.18.0.1", "starts with turn"),
        ("turn://198.18.0.1", "no '//'"),
        ("turns:198.18.0.1?transport=udp", "DTLS"),
        ("turn:198.18.0.1?transport=sctp", "transport=udp|tcp"),
        ("turn:198.18.0.1?foo=bar", "transport=udp|tcp"),
        ("turn:198.18.0.1:0", "bad TURN port"),
        ("turn:198.18.0.1:65536", "bad TURN port"),
        ("turn:198.18.0.1:x", "bad TURN port"),
        ("turn:", "bad TURN host"),
        ("turn:2001:2::1", "brackets"),
        ("turn:[2001:2::1", "unclosed"),
        ("turn:[198.18.0.1]", "not an IPv6"),
        ("turn:bad/host", "bad TURN host"),
    ],
)
def test_bad_urls(url: str, why: str) -> None:
    """[TRN-4.1] [TRN-4.2] refusals say why; credentials in a URL are refused outright."""
    with pytest.raises(LocalProtocolError, match=why):
        parse_turn_url(url)


def test_rest_credentials_vector() -> None:
    """[TRN-4.3] username "<expiry>:<name>", password base64(HMAC-SHA1(secret, username))."""
    vector = VECTORS["rest_credential"]
    credentials = rest_credentials(vector["secret"], vector["name"], vector["expiry"])
    assert (credentials.username, credentials.password) == (vector["username"], vector["password"])
    mac = hmac.new(vector["secret"].encode(), vector["username"].encode(), hashlib.sha1).digest()
    assert base64.b64decode(vector["password"]) == mac
    assert vector["password"] not in repr(credentials)
    assert rest_credentials("s", "", 5).username == "5"
    with pytest.raises(LocalProtocolError):
        rest_credentials("s", "a:b", 5)
