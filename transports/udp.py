"""A trio UDP socket carrying the core's datagrams.

Minimal for now: one socket, one datagram per ``sendto``.  Hole punching, GSO
and port prediction grow here (issue: transports).
"""

from __future__ import annotations

import errno
import ipaddress
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
        self.family = sock.family
        #: Sends that failed (the datagram is lost, as UDP may lose any), and the last reason.
        self.send_errors = 0
        self.last_send_error: OSError | None = None

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

    def check_address(self, addr: object) -> Address:
        """``addr`` as (ip, port) usable from this socket; ValueError with the reason if not."""
        if not (isinstance(addr, tuple) and len(addr) == 2):
            raise ValueError(f"an address is (ip, port), not {addr!r}")
        host, port = addr
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IP address") from None
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f"port {port!r} is not in 1..65535")
        if (ip.version == 6) != (self.family == _socket.AF_INET6):
            raise ValueError(f"{host} is IPv{ip.version} but this socket is {self.local_address[0]}")
        return (str(ip), port)

    async def send(self, data: bytes, addr: Address) -> None:
        """Send one datagram.  A failure loses only this datagram (UDP may lose any): it is counted."""
        try:
            await self._sock.sendto(data, addr)
        except OSError as exc:
            self.send_errors += 1
            self.last_send_error = exc

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
