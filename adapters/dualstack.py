"""The daemon's IPv6 socket: bound beside the IPv4 one when the host has a global IPv6 address.

A daemon that listens on the IPv4 wildcard (the default ``listen``, ``0.0.0.0:0``) also binds a
UDP socket to the host's global IPv6 address, if it has one (``listen_hosts``).  That socket's
address is a host candidate of kind IPv6 global (spec/candidates.md §3.1), advertised to the
rendezvous nodes with the others; a peer that has IPv6 too dials it, and both sides punch their
IPv6 pairs from their IPv6 sockets (spec/punch.md §3.9).  A daemon given explicit listen
addresses binds those and nothing else: ``--listen [2001:db8::5]:0`` adds IPv6 by hand.

Which address: the one the kernel would send from towards the IPv6 internet, found by connecting
a UDP socket to a documentation address (RFC 3849; connecting a UDP socket sends nothing: it
only looks the route up) and reading its local address.  No route, or an address that is not
public (a unique-local one behind NAT66, spec/candidates.md §2): no IPv6 socket.  A wildcard IPv6
socket would not do: its address is no candidate, and it proves no connectivity (CAND-4.4).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Sequence

from p2pos.proto.nat.addresses import is_global_ipv6

log = logging.getLogger("p2pos.daemon")

IPV4_WILDCARD = "0.0.0.0"  # noqa: S104 (compared with, not bound)
#: Where the route lookup points: RFC 3849's documentation prefix (never routed; nothing is sent).
PROBE_TARGET = ("2001:db8::1", 9)


def global_ipv6_address() -> str | None:
    """This host's global IPv6 address towards the internet, or None (see the module docstring)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.connect(PROBE_TARGET)
            host = str(sock.getsockname()[0])
    except OSError:  # no IPv6 at all, or no route to the IPv6 internet
        return None
    host = host.split("%", 1)[0]
    return host if is_global_ipv6(host) else None


def listen_hosts(hosts: Sequence[str], *, find: Callable[[], str | None] = global_ipv6_address) -> list[str]:
    """The hosts the daemon binds: ``hosts`` (its ``listen`` setting's), and the host's global IPv6
    address after them when every one of ``hosts`` is the IPv4 wildcard.  ``find``: what finds the
    address (tests pass their own)."""
    out = list(hosts)
    if not out or any(host != IPV4_WILDCARD for host in out):
        return out
    found = find()
    if found is not None and found not in out:
        log.info("listening on IPv6 too, at %s (the host's global IPv6 address)", found)
        out.append(found)
    return out
