"""coturn's time-limited REST credentials (``use-auth-secret``) against a real coturn (spec/turn.md §4.3)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import trio
from coturn_fixture import SECRET, Coturn, start_coturn

from p2pos.proto.nat.turn_config import TurnTransport, rest_credentials
from p2pos.transports.turn import TurnError, open_turn_socket


@pytest.fixture(scope="module")
def coturn() -> Iterator[Coturn]:
    with start_coturn("rest") as server:
        yield server


@pytest.mark.parametrize("transport", [TurnTransport.UDP, TurnTransport.TLS], ids=lambda t: t.value)
async def test_rest_credentials_allocate_and_relay(coturn: Coturn, transport: TurnTransport) -> None:
    """[TRN-4.3] username "<expiry>:<name>", password base64(HMAC-SHA1(secret, username)) are accepted."""
    credentials = rest_credentials(SECRET, "alice", int(time.time()) + 3600)
    context = coturn.ssl_context() if transport is TurnTransport.TLS else None
    with trio.fail_after(10):
        async with (
            open_turn_socket(coturn.server(transport), credentials, ssl_context=context) as a,
            open_turn_socket(
                coturn.server(TurnTransport.UDP), rest_credentials(SECRET, "bob", int(time.time()) + 60)
            ) as b,
        ):
            assert a.relayed is not None and b.relayed is not None
            await a.add_peer(b.relayed)
            await b.add_peer(a.relayed)
            await a.send(b"over rest credentials", b.relayed)
            assert await b.receive() == (b"over rest credentials", a.relayed)
            await b.send(b"and back", a.relayed)
            assert await a.receive() == (b"and back", b.relayed)


@pytest.mark.parametrize(
    "why",
    ["expired", "wrong secret"],
)
async def test_bad_rest_credentials_are_refused(coturn: Coturn, why: str) -> None:
    """[TRN-4.3] an expired username or one signed with another secret: TurnError, 401 refused."""
    if why == "expired":
        credentials = rest_credentials(SECRET, "alice", int(time.time()) - 60)
    else:
        credentials = rest_credentials("not the secret", "alice", int(time.time()) + 3600)
    with trio.fail_after(10), pytest.raises(TurnError, match=r"refused the credentials \(401"):
        async with open_turn_socket(coturn.server(TurnTransport.UDP), credentials):
            pass
