"""QUIC on a UDP socket another driver owns (spec/quic.md §5.1): ``share``.

A p2pos node's UDP socket demultiplexes by first byte (spec/session.md §4.1); QUIC's datagrams
are handed to ``SharedQuic.feed`` and QUIC sends through the function given to ``share``, so
every address of that socket is also a QUIC address.  ::

    async with quic_shared.share(udp_send, udp_address, identity) as shared:
        shared.feed(data, addr)                             # each QUIC datagram the socket got
        carrier = await shared.accept()                     # dialers, authenticated (spec/quic.md §3)
        async with shared.dial(host, port, expected_peer_id=peer) as carrier: ...
        shared.punch(host, port)                            # QUIC-5.1.4
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from p2pos.proto.identity.identity import Identity
from p2pos.proto.identity.peer_id import PeerId

from .quic import QuicCarrier, QuicListener, SendFunction, _dial_on, _in_background, _ip, _QuicSocket

__all__ = ["PUNCH_FIRST_BYTE", "PUNCH_SIZE", "SharedQuic", "share"]

#: A punch (QUIC-5.1.4): a QUIC short header (fixed bit set) whose connection id names no connection.
PUNCH_FIRST_BYTE = b"\x40"
PUNCH_SIZE = 21


class SharedQuic(QuicListener):
    """QUIC on a socket another driver owns (spec/quic.md §5.1): made by ``share``.

    ``feed(data, addr)`` hands it each QUIC datagram that arrived on that socket (first byte
    64-127 or 192-255, spec/session.md §4.1); it sends through the function given to ``share``.
    It accepts carriers (``accept()``) and dials them (``dial()``) on the same socket, so every
    address of that socket is also a QUIC address.
    """

    def feed(self, data: bytes, addr: tuple[str, int]) -> None:
        """A QUIC datagram from ``addr`` on the shared socket; never raises (bad ones are counted drops)."""
        self._driver.feed(data, addr)

    def punch(self, host: str, port: int) -> None:
        """One datagram to ``host:port`` that opens this side's NAT and firewall for the peer's QUIC
        dial (spec/quic.md QUIC-5.1.4): a short header to no connection, which the peer drops."""
        self._driver._sendto(PUNCH_FIRST_BYTE + os.urandom(PUNCH_SIZE - 1), (str(_ip(host)), port))

    def dial(
        self, host: str, port: int, *, expected_peer_id: PeerId
    ) -> contextlib.AbstractAsyncContextManager[QuicCarrier]:
        """Like the module's ``dial``, from the shared socket: the carrier, closed when the block ends."""
        return _dial_on(self._driver, (str(_ip(host)), port), expected_peer_id)


@contextlib.asynccontextmanager
async def share(
    send: SendFunction,
    local_address: tuple[str, int],
    identity: Identity,
    *,
    handshake_timeout: float = 10.0,
    idle_timeout: float = 60.0,
) -> AsyncIterator[SharedQuic]:
    """QUIC on a socket owned by another driver: ``send(data, addr)`` transmits (without blocking),
    ``SharedQuic.feed`` receives.  ``local_address`` is that socket's, for ``host``/``port``."""
    driver = _QuicSocket(
        None,
        identity=identity,
        is_client=False,
        handshake_timeout=handshake_timeout,
        idle_timeout=idle_timeout,
        send=send,
    )
    async with _in_background(driver.run):
        try:
            yield SharedQuic(driver, local_address)
        finally:
            driver.close_all()
