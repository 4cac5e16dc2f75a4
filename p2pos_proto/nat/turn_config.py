"""Naming a TURN server: ``turn:`` / ``turns:`` URLs (RFC 7065) and credentials (spec/turn.md §4).

A URL names where the server is and how to reach it, nothing else: a URL with user
information (``turn:user:pass@host``) is refused, because credentials come only from the
configuration (long-term user/password, or a shared secret from which coturn's time-limited
REST credentials are derived, draft-uberti-behave-turn-rest-00).
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import hashlib
import hmac
import ipaddress
from typing import Final

from ..errors import LocalProtocolError

TURN_PORT: Final = 3478
TURNS_PORT: Final = 5349


class TurnTransport(enum.Enum):
    """How the client's leg to the server is carried (the server relays over UDP in every case)."""

    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"

    @property
    def stream(self) -> bool:
        """Whether the leg is a byte stream (TCP, TLS): no retransmission, ChannelData padded."""
        return self is not TurnTransport.UDP


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TurnServer:
    """Where a TURN server listens and over what."""

    host: str
    port: int
    transport: TurnTransport

    @property
    def url(self) -> str:
        """The canonical URL (RFC 7065 §3)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.transport is TurnTransport.TLS:
            return f"turns:{host}:{self.port}?transport=tcp"
        return f"turn:{host}:{self.port}?transport={self.transport.value}"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TurnCredentials:
    """A long-term username and password (RFC 8489 §9.2)."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"TurnCredentials(username={self.username!r}, password=<hidden>)"


def rest_credentials(secret: str, name: str, expiry: int) -> TurnCredentials:
    """coturn ``use-auth-secret`` credentials valid until the Unix time ``expiry``.

    username = "<expiry>:<name>", password = base64(HMAC-SHA1(secret, username))
    (draft-uberti-behave-turn-rest-00; coturn's ``--static-auth-secret``).
    """
    if expiry < 0:
        raise LocalProtocolError("a REST credential expiry is a Unix time, not negative")
    if ":" in name:
        raise LocalProtocolError("a REST credential name must not contain ':'")
    username = f"{expiry}:{name}" if name else str(expiry)
    mac = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredentials(username=username, password=base64.b64encode(mac).decode("ascii"))


def parse_turn_url(url: str) -> TurnServer:
    """Parse ``turn:host[:port][?transport=udp|tcp]`` or ``turns:host[:port][?transport=tcp]``.

    Raises ``LocalProtocolError`` saying what is wrong (a configuration error, not a network one).
    """
    scheme, sep, rest = url.partition(":")
    scheme = scheme.lower()
    if not sep or scheme not in ("turn", "turns"):
        raise LocalProtocolError(f"a TURN URL starts with turn: or turns:, not {url!r}")
    if rest.startswith("//"):
        raise LocalProtocolError(f"a TURN URL has no '//' (RFC 7065): {url!r}")
    if "@" in rest:
        raise LocalProtocolError("TURN credentials come from the configuration, never from the URL")
    hostport, _, query = rest.partition("?")
    transport = "tcp" if scheme == "turns" else "udp"
    if query:
        key, eq, value = query.partition("=")
        if key.lower() != "transport" or not eq or value.lower() not in ("udp", "tcp"):
            raise LocalProtocolError(f"the only TURN URL parameter is transport=udp|tcp, not {query!r}")
        transport = value.lower()
    if scheme == "turns" and transport == "udp":
        raise LocalProtocolError("turns: over UDP is DTLS, which p2pos does not use")
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise LocalProtocolError(f"unclosed '[' in {url!r}")
        host, port_text = hostport[1:end], hostport[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise LocalProtocolError(f"{host!r} in brackets is not an IPv6 address") from exc
        if port_text and not port_text.startswith(":"):
            raise LocalProtocolError(f"junk after ']' in {url!r}")
        port_text = port_text[1:]
    else:
        host, _, port_text = hostport.partition(":")
        if ":" in port_text:
            raise LocalProtocolError(f"an IPv6 host goes in brackets: {url!r}")
    if not host or not all(c.isalnum() or c in ".-_" for c in host.replace(":", "")):
        raise LocalProtocolError(f"bad TURN host {host!r}")
    port = TURNS_PORT if scheme == "turns" else TURN_PORT
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise LocalProtocolError(f"bad TURN port {port_text!r}")
        port = int(port_text)
    kind = TurnTransport.TLS if scheme == "turns" else TurnTransport(transport)
    return TurnServer(host=host, port=port, transport=kind)
