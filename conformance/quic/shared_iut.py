"""The reference IUT's shared socket (spec/quic.md §5.1, §7): p2pos sessions and QUIC on one UDP socket.

The socket's datagrams all go to the adapter's p2pos ``Endpoint``, which splits them by first
byte (spec/session.md §4.1) as a node does: its sessions take the p2pos ones, and the QUIC ones
come back as ``ForeignDatagramReceived`` and go to ``transports/quic_shared.py``, which accepts
and dials carriers on that socket and sends through it.  The protocols handed to QUIC are the
node's (``adapters/carriers/quic.py``, ``SHARED_PROTOCOLS``).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import trio

from p2pos.adapters.carriers.quic import SHARED_PROTOCOLS
from p2pos.proto import Endpoint
from p2pos.proto.events import ForeignDatagramReceived
from p2pos.proto.identity.identity import Identity
from p2pos.transports import quic_shared
from p2pos.transports.quic_shared import SharedQuic

Address = tuple[str, int]


class SharedSocket:
    """One UDP socket on 127.0.0.1 shared by the endpoint's sessions and QUIC; made by ``open_shared``."""

    def __init__(self, sock: socket.socket, endpoint: Endpoint, protocols: tuple[str, ...]) -> None:
        self.sock = sock
        self.port = int(sock.getsockname()[1])
        self.endpoint = endpoint
        #: Which ``ForeignDatagramReceived`` protocols go to QUIC (the node's ``SHARED_PROTOCOLS``).
        self.protocols = protocols
        self.quic: SharedQuic | None = None
        #: Datagrams the socket could not send at once (QUIC's recovery resends; a session's, its own).
        self.send_errors = 0

    def send(self, data: bytes, addr: Address) -> None:
        """Send without waiting (the driver's ``send_now``): a full buffer is a loss."""
        try:
            self.sock.sendto(data, addr)
        except OSError:
            self.send_errors += 1

    def foreign(self, event: ForeignDatagramReceived) -> bool:
        """Hand a datagram of another protocol to QUIC if it is QUIC's (QUIC-5.1.1); False if not ours."""
        if event.local != "shared" or self.quic is None:
            return False
        address = event.address
        if event.protocol in self.protocols and isinstance(address, tuple) and len(address) >= 2:
            self.quic.feed(event.data, (str(address[0]), int(address[1])))
        return True

    async def receive_loop(self, after: Callable[[], Awaitable[None]]) -> None:
        """Every datagram to the endpoint (``local`` "shared"); ``after()`` then drains its output and events."""
        trio_sock = trio.socket.from_stdlib_socket(self.sock)
        while True:
            try:
                data, addr = await trio_sock.recvfrom(65536)
            except OSError:  # an ICMP error reported on the socket
                continue
            self.endpoint.receive_data(data, (str(addr[0]), int(addr[1])), trio.current_time(), "shared")
            await after()


@contextlib.asynccontextmanager
async def open_shared(
    endpoint: Endpoint, identity: Identity, handshake_timeout: float, *, protocols: tuple[str, ...] = SHARED_PROTOCOLS
) -> AsyncIterator[SharedSocket]:
    """A shared socket bound to 127.0.0.1 (a free port), with QUIC on it, until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    shared = SharedSocket(sock, endpoint, protocols)
    try:
        async with quic_shared.share(
            shared.send, ("127.0.0.1", shared.port), identity, handshake_timeout=handshake_timeout
        ) as on_it:
            shared.quic = on_it
            yield shared
    finally:
        sock.close()
