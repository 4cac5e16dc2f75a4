"""No kernel pacing on TCP that never leaves this host (spec/relay.md §9, "TCP within one host").

A relay link is TCP.  Where the system's default congestion control paces (Linux's BBR: each
burst leaves on a timer), a connection between two processes on one host pays for that timer on
every send and gains nothing, because no link on its way has a queue to keep short: on loopback
(this project's machines, 64 KiB writes) a BBR sender moves 1.4-2.6 GB/s against 3.7-4.9 GB/s
with CUBIC, at 0.36-0.66 against 0.16-0.26 ms of kernel CPU per MB, and a relay path between
two daemons and a relay on one host costs 3.7 instead of 2.8 ms of CPU per MB in all.  So a relay
link whose two ends are on this host uses a controller that does not pace (CUBIC, else Reno);
every connection over a network keeps the system's choice, BBR included, whose pacing is what a
lossy or long path needs.

Linux decides whether a socket paces when its controller is first set up (BBR marks it, and a
later switch to CUBIC leaves the mark), so the choice is made before any data moves:

* a client calls ``unpace(sock)`` before ``connect`` when ``on_this_host(ip)`` holds for the
  address it connects to (``open_tcp_stream``);
* a relay calls ``unpace`` on its listening sockets (an accepted connection inherits their
  controller during its handshake) and ``restore_default(sock)`` on each accepted connection
  whose peer is not on this host, before it sends anything; BBR then sets itself up afresh.

Every helper does nothing (and says so) where the kernel has no ``TCP_CONGESTION``, refuses the
change, or the default does not pace.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Sequence

import trio

#: Controllers that pace every send (Linux's BBR, and the out-of-tree BBRv2/v3 names).
PACING_PREFIX = "bbr"
#: Controllers that do not pace, in order of preference (Reno is always built in).
UNPACED = ("cubic", "reno")
_TCP_CONGESTION: int | None = getattr(socket, "TCP_CONGESTION", None)
_NAME_SIZE = 16  # TCP_CA_NAME_MAX


def congestion_control(sock: socket.socket | trio.socket.SocketType) -> str | None:
    """The controller ``sock`` runs (None where the kernel does not say)."""
    if _TCP_CONGESTION is None:
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, _TCP_CONGESTION, _NAME_SIZE)
    except OSError:
        return None
    return bytes(raw).split(b"\0", 1)[0].decode("ascii", "replace")


@functools.cache
def default_congestion_control() -> str | None:
    """The system's default controller, as a new TCP socket gets it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return congestion_control(probe)


@functools.cache
def unpaced_choice() -> str | None:
    """The controller ``unpace`` sets: None when the default does not pace (nothing to do) or no
    unpaced one may be set by this process (``net.ipv4.tcp_allowed_congestion_control``)."""
    default = default_congestion_control()
    if default is None or not default.startswith(PACING_PREFIX):
        return None
    for name in UNPACED:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            if _set(probe, name):
                return name
    return None


def unpace(sock: socket.socket | trio.socket.SocketType) -> str | None:
    """Give ``sock`` the unpaced controller (before it connects, or a listening socket); the name
    set, or None when nothing was changed."""
    name = unpaced_choice()
    return name if name is not None and _set(sock, name) else None


def restore_default(sock: socket.socket | trio.socket.SocketType) -> bool:
    """Put an accepted connection back on the system's default controller (a relay's peer on
    another host, while the listener is unpaced); whether it was changed."""
    default = default_congestion_control()
    if default is None or congestion_control(sock) == default:
        return False
    return _set(sock, default)


def on_this_host(ip: str) -> bool:
    """Whether ``ip`` is one of this host's addresses (loopback, or one a socket can bind to):
    a connection to it never crosses a network link."""
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if address.is_loopback or (
        isinstance(address, ipaddress.IPv6Address)
        and address.ipv4_mapped is not None
        and address.ipv4_mapped.is_loopback
    ):
        return True
    if address.is_unspecified or address.is_multicast:
        return False
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((ip, 0))
    except OSError:
        return False
    return True


async def open_tcp_stream(host: str, port: int) -> trio.SocketStream:
    """``trio.open_tcp_stream(host, port)``, except that when ``host`` resolves only to addresses
    on this host and the default controller paces, the socket is unpaced before it connects
    (tried in the resolver's order, the first that connects wins)."""
    if unpaced_choice() is None:
        return await trio.open_tcp_stream(host, port)
    infos: Sequence[tuple[int, int, int, str, tuple[object, ...]]] = await trio.socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    )
    if not infos or not all(on_this_host(str(info[4][0])) for info in infos):
        return await trio.open_tcp_stream(host, port)
    error: OSError | None = None
    for family, kind, proto, _, sockaddr in infos:
        sock = trio.socket.socket(family, kind, proto)
        try:
            unpace(sock)
            await sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return trio.SocketStream(sock)
    assert error is not None
    raise OSError(f"all attempts to connect to {host}:{port} failed: {error}") from error


def _set(sock: socket.socket | trio.socket.SocketType, name: str) -> bool:
    if _TCP_CONGESTION is None:
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_CONGESTION, name.encode("ascii"))
    except OSError:
        return False
    return True
