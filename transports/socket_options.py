"""Socket options a UDP transport sets at bind time: buffer sizes and "never fragment".

Three helpers, called by ``UdpTransport.bind`` before the socket is wrapped for trio:

* ``size_buffers(sock, size)``: ``SO_SNDBUF`` / ``SO_RCVBUF`` sized for the
  bandwidth-delay product, trying the root-only ``SO_SNDBUFFORCE`` (32) /
  ``SO_RCVBUFFORCE`` (33) first so that ``net.core.wmem_max`` / ``rmem_max`` do not cap
  them; returns what the kernel granted.
* ``forbid_fragmentation(sock)``: ``IP_MTU_DISCOVER`` (10) = ``IP_PMTUDISC_PROBE`` (3)
  on IPv4; ``IPV6_DONTFRAG`` (62) = 1 and ``IPV6_MTU_DISCOVER`` (23) =
  ``IPV6_PMTUDISC_PROBE`` (3) on IPv6.  A datagram larger than the outgoing
  interface's MTU then fails with EMSGSIZE (or is dropped on the path) instead of being
  cut into IP fragments, which middleboxes lose and which make loss all-or-nothing.
  PROBE (not DO) also ignores ICMP "fragmentation needed" (which anyone can forge): path
  MTU is the protocol's business (DPLPMTUD, RFC 8899), not the kernel's.
* ``path_mtu(family, addr, local_host)`` and ``max_udp_payload(mtu, family)``: the MTU
  of the interface the route towards ``addr`` leaves by (``IP_MTU`` 14 / ``IPV6_MTU`` 24
  on a connected throwaway socket; connecting a UDP socket sends nothing), and the
  largest UDP payload it carries unfragmented: the starting point of path MTU discovery.

The option numbers are Linux's (``include/uapi/linux/in.h``, ``in6.h``, ``asm-generic/socket.h``);
on other systems the helpers set nothing and report the IPv6 minimum MTU.
"""

from __future__ import annotations

import socket as _socket

from .gso import LINUX

#: ``SO_SNDBUFFORCE`` / ``SO_RCVBUFFORCE`` (``asm-generic/socket.h``): like SO_SNDBUF / SO_RCVBUF,
#: past ``net.core.wmem_max`` / ``rmem_max``, for CAP_NET_ADMIN only.
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
#: IPv4 (``linux/in.h``): the PMTU discovery mode, and the current path MTU of a connected socket.
IP_MTU_DISCOVER = 10
IP_PMTUDISC_PROBE = 3
IP_MTU = 14
#: IPv6 (``linux/in6.h``): the same two, plus "never fragment locally" for IPv6.
IPV6_MTU_DISCOVER = 23
IPV6_PMTUDISC_PROBE = 3
IPV6_MTU = 24
IPV6_DONTFRAG = 62

#: Default buffer size: 4 MiB holds 100 ms at ~330 Mbit/s.
DEFAULT_BUFFER_SIZE = 4 * 1024 * 1024
#: The IPv6 minimum link MTU (RFC 8200 section 5), reported where the real one cannot be read.
MIN_IPV6_MTU = 1280
_UDP_HEADER = 8
_IP_HEADER: dict[int, int] = {_socket.AF_INET: 20, _socket.AF_INET6: 40}
#: The 16-bit length fields: IPv4 counts its own header, IPv6's payload length does not.
_MAX_PAYLOAD: dict[int, int] = {_socket.AF_INET: 65535 - 20 - _UDP_HEADER, _socket.AF_INET6: 65535 - _UDP_HEADER}


def size_buffers(sock: _socket.socket, size: int = DEFAULT_BUFFER_SIZE) -> tuple[int, int]:
    """Ask for ``size``-byte send and receive buffers; return (send, receive) as granted.

    The granted values are what ``getsockopt`` reports.  Linux doubles the request to
    account for its bookkeeping, so a 4 MiB request granted in full reads 8 MiB; without
    root, a request above ``net.core.wmem_max`` / ``rmem_max`` reads twice that limit.
    """
    for force, plain in ((SO_SNDBUFFORCE, _socket.SO_SNDBUF), (SO_RCVBUFFORCE, _socket.SO_RCVBUF)):
        try:
            if not LINUX:
                raise OSError("SO_*BUFFORCE is Linux-only")
            sock.setsockopt(_socket.SOL_SOCKET, force, size)
        except OSError:
            try:
                sock.setsockopt(_socket.SOL_SOCKET, plain, size)
            except OSError:
                pass  # keep the system default; the caller sees it in the result
    return (
        sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_SNDBUF),
        sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF),
    )


def forbid_fragmentation(sock: _socket.socket) -> bool:
    """Make datagrams larger than the interface MTU fail rather than fragment; True if set.

    IPv4: ``IP_MTU_DISCOVER`` = ``IP_PMTUDISC_PROBE`` (DF on every packet, learned path
    MTU ignored, the interface MTU enforced with EMSGSIZE).  IPv6: ``IPV6_DONTFRAG`` = 1
    and ``IPV6_MTU_DISCOVER`` = ``IPV6_PMTUDISC_PROBE``.
    """
    if not LINUX:
        return False
    try:
        if sock.family == _socket.AF_INET6:
            sock.setsockopt(_socket.IPPROTO_IPV6, IPV6_DONTFRAG, 1)
            sock.setsockopt(_socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_PROBE)
        else:
            sock.setsockopt(_socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
    except OSError:
        return False
    return True


def fragmentation_forbidden(sock: _socket.socket) -> bool:
    """Whether ``forbid_fragmentation`` is in force on ``sock`` (read back from the kernel)."""
    if not LINUX:
        return False
    if sock.family == _socket.AF_INET6:
        return sock.getsockopt(_socket.IPPROTO_IPV6, IPV6_DONTFRAG) == 1
    return sock.getsockopt(_socket.IPPROTO_IP, IP_MTU_DISCOVER) == IP_PMTUDISC_PROBE


def path_mtu(family: int, addr: tuple[str, int], local_host: str | None = None) -> int:
    """The MTU of the interface the route towards ``addr`` (an IP, not a name) leaves by.

    Connects a throwaway UDP socket (bound to ``local_host`` if given, so source-based
    routing is honoured) and reads ``IP_MTU`` (14) / ``IPV6_MTU`` (24).  Connecting a UDP
    socket only looks up the route: nothing is sent.  Raises OSError if there is no route.
    """
    if not LINUX:
        return MIN_IPV6_MTU
    with _socket.socket(family, _socket.SOCK_DGRAM) as probe:
        if local_host is not None:
            probe.bind((local_host, 0))
        probe.connect(addr)
        if family == _socket.AF_INET6:
            return probe.getsockopt(_socket.IPPROTO_IPV6, IPV6_MTU)
        return probe.getsockopt(_socket.IPPROTO_IP, IP_MTU)


def max_udp_payload(mtu: int, family: int) -> int:
    """The largest UDP payload an ``mtu``-byte link carries in one unfragmented packet.

    ``mtu`` minus the IP header (20 for IPv4, 40 for IPv6) and the 8-byte UDP header,
    capped by the 16-bit length fields (65507 for IPv4, 65527 for IPv6).
    """
    return min(mtu - _IP_HEADER[family] - _UDP_HEADER, _MAX_PAYLOAD[family])
