"""What the QUIC cases share: the runner's identities and checks of how a connection ended."""

from __future__ import annotations

from typing import TypeVar

from p2pos.proto.errors import ErrorCode
from p2pos.proto.identity.identity import Identity

from ..checks import CaseFailed, expect
from .control import Event, Iut
from .peer import Peer

#: The runner's identities: the peer the IUT talks to, and another one.
RUNNER = Identity.from_seed(bytes(range(1, 33)))
OTHER = Identity.from_seed(bytes(range(101, 133)))
#: How long a case waits for the IUT's reaction.
WAIT = 5.0
#: A session keepalive interval (channels.md §8: 10 s by default) that a carrier's idle timeout must exceed.
KEEPALIVE = 10.0


T = TypeVar("T")


def need(value: T | None, message: str) -> T:
    """``value``, or CaseFailed(message) when it is None."""
    if value is None:
        raise CaseFailed(message)
    return value


#: RFC 9000 §10.2.3: an application close sent in Initial or Handshake packets becomes this transport error.
APPLICATION_ERROR = 0x0C


def closed_with(peer: Peer, code: ErrorCode, timeout: float = WAIT, *, handshake: bool = False) -> str:
    """Wait until the IUT closes the connection with the application close ``code`` (QUIC-4.2).

    ``handshake``: the IUT closes before the handshake is confirmed, so the runner (a listener
    whose aioquic reads the first CONNECTION_CLOSE of the datagram) may see the RFC 9000
    §10.2.3 form, 0x1c APPLICATION_ERROR; the case then checks the code the IUT reports.
    """
    peer.pump(lambda: peer.closed is not None, timeout)
    got = peer.closed
    if got is None:
        raise CaseFailed(f"the IUT did not close the connection within {timeout} s (expected {code.name})")
    if handshake and not got.app and got.code == APPLICATION_ERROR:
        return "(RFC 9000 §10.2.3 form)"
    expect(got.app, f"the IUT closed with a transport error 0x{got.code:x}, not an application close ({code.name})")
    expect(
        got.code == code,
        f"the IUT closed with code 0x{got.code:x} ({_name(got.code)}), expected {code.name} ({got.reason!r})",
    )
    expect(got.reason != "" and "\n" not in got.reason, f"the reason phrase is not one line: {got.reason!r}")
    return got.reason


def _name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return "not a p2pos code"


def nothing_from(iut: Iut, port: int, timeout: float = 0.3) -> None:
    """The IUT reports no carrier (and so no record) from the runner's UDP ``port``."""
    for event in iut.drain(timeout):
        if event.get("event") == "accepted" and event.get("port") == port:
            raise CaseFailed(f"the IUT accepted a carrier it should have refused: {event}")


def accepted(iut: Iut, port: int) -> Event:
    event = iut.expect(lambda e: e.get("event") == "accepted" and e.get("port") == port, "the accepted carrier")
    expect(event.get("peer_id") == str(RUNNER.peer_id), f"the IUT authenticated the dialer as {event.get('peer_id')!r}")
    return event


def records(iut: Iut, conn: object, count: int) -> list[bytes]:
    out = []
    for i in range(count):
        event = iut.expect(
            lambda e: e.get("event") in ("record", "closed") and e.get("conn") == conn, f"record {i + 1} of {count}"
        )
        expect(event["event"] == "record", f"the carrier ended after {i} of {count} records: {event}")
        out.append(bytes.fromhex(str(event["data"])))
    return out


def ended(iut: Iut, conn: object, code: ErrorCode) -> None:
    event = iut.expect(lambda e: e.get("event") == "closed" and e.get("conn") == conn, f"the end of carrier {conn}")
    expect(event.get("code") == code.name, f"the IUT reports the end with {event.get('code')!r}, expected {code.name}")
