"""A trio UDP socket carrying the core's datagrams.

Minimal for now: one socket, one datagram per ``sendto``.  Hole punching, GSO
and port prediction grow here (issue: transports).
"""

from __future__ import annotations

import errno
import socket as _socket

import trio

MAX_DATAGRAM = 65535
#: Errors a UDP socket reports for a previous send (ICMP unreachable and friends): not fatal.
_TRANSIENT = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EMSGSIZE}

Address = tuple[str, int]


class UdpTransport:
    """A bound UDP socket.  Use ``await UdpTransport.bind(host, port)``."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self._sock = sock
        host, port = sock.getsockname()[:2]
        self.local_address: Address = (host, port)

    @classmethod
    async def bind(cls, host: str = "127.0.0.1", port: int = 0) -> UdpTransport:
        family = _socket.AF_INET6 if ":" in host else _socket.AF_INET
        sock = trio.socket.socket(family, _socket.SOCK_DGRAM)
        try:
            await sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        return cls(sock)

    async def send(self, data: bytes, addr: Address) -> None:
        """Send one datagram; transient network errors are swallowed (UDP may lose it anyway)."""
        try:
            await self._sock.sendto(data, addr)
        except OSError as exc:
            if exc.errno not in _TRANSIENT:
                raise

    async def receive(self) -> tuple[bytes, Address]:
        """The next datagram and its source address."""
        while True:
            try:
                data, addr = await self._sock.recvfrom(MAX_DATAGRAM)
            except OSError as exc:
                if exc.errno in _TRANSIENT:
                    continue
                raise
            return data, (addr[0], addr[1])

    def close(self) -> None:
        self._sock.close()
