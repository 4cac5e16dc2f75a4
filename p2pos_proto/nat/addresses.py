"""What kind of IP address this is, from an explicit list (spec/candidates.md §2).

    classify("10.1.0.2")         # AddressClass.PRIVATE
    classify("198.18.3.2")       # AddressClass.PUBLIC: the benchmarking range is the lab's internet
    scope_of("fe80::1")          # Scope.LINK
    maybe_public("100.64.0.7")   # False: RFC 6598 shared space, a carrier's NAT in front

The list is the spec's table (CAND-2.1), range by range with its RFC; everything not in it is
PUBLIC.  Python's ``ipaddress`` ``is_private`` and ``is_global`` are deliberately not used: they
call the benchmarking ranges (198.18.0.0/15, 2001:2::/48) and the documentation ranges private,
and 100.64.0.0/10 neither private nor global, while p2pos needs one answer to one question, "may
a peer elsewhere on the internet reach this address?" (CAND-2.2).  What a class allows is the
pairing policy's business (candidates.py).
"""

from __future__ import annotations

import enum
import ipaddress
from typing import Final

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressClass(enum.Enum):
    """The classes of spec/candidates.md §2 (CAND-2.1)."""

    PUBLIC = "public"
    PRIVATE = "private"  # RFC 1918 and the other site-routed IPv4 ranges of the table
    SHARED = "shared"  # RFC 6598: a carrier-grade NAT's inside
    UNIQUE_LOCAL = "unique-local"  # RFC 4193 (and the deprecated site-local fec0::/10)
    LINK_LOCAL = "link-local"
    LOOPBACK = "loopback"
    UNSPECIFIED = "unspecified"
    MULTICAST = "multicast"
    RESERVED = "reserved"  # never a host's address today: 240/4 with broadcast, ::/8's leftovers


class Scope(enum.Enum):
    """How far an address reaches (CAND-2.3): who may dial it."""

    GLOBAL = "global"  # anyone on the internet
    SITE = "site"  # hosts behind the same NAT, in the same private network
    LINK = "link"  # hosts on the same link
    HOST = "host"  # the same host
    NEVER = "never"  # nobody: never a candidate


SCOPES: Final[dict[AddressClass, Scope]] = {
    AddressClass.PUBLIC: Scope.GLOBAL,
    AddressClass.PRIVATE: Scope.SITE,
    AddressClass.SHARED: Scope.SITE,
    AddressClass.UNIQUE_LOCAL: Scope.SITE,
    AddressClass.LINK_LOCAL: Scope.LINK,
    AddressClass.LOOPBACK: Scope.HOST,
    AddressClass.UNSPECIFIED: Scope.NEVER,
    AddressClass.MULTICAST: Scope.NEVER,
    AddressClass.RESERVED: Scope.NEVER,
}

_C = AddressClass
#: spec/candidates.md §2's table: (range, class, reference), the first range that holds an address
#: decides; an address in none of them is PUBLIC (198.18.0.0/15, 2001:2::/48, the documentation
#: ranges, 6to4, Teredo...: CAND-2.2).
RANGES: Final[tuple[tuple[str, AddressClass, str], ...]] = (
    ("0.0.0.0/8", _C.UNSPECIFIED, "RFC 1122 §3.2.1.3"),
    ("10.0.0.0/8", _C.PRIVATE, "RFC 1918"),
    ("100.64.0.0/10", _C.SHARED, "RFC 6598"),
    ("127.0.0.0/8", _C.LOOPBACK, "RFC 1122 §3.2.1.3"),
    ("169.254.0.0/16", _C.LINK_LOCAL, "RFC 3927"),
    ("172.16.0.0/12", _C.PRIVATE, "RFC 1918"),
    ("192.0.0.0/24", _C.PRIVATE, "RFC 6890, RFC 7335"),
    ("192.168.0.0/16", _C.PRIVATE, "RFC 1918"),
    ("224.0.0.0/4", _C.MULTICAST, "RFC 5771"),
    ("240.0.0.0/4", _C.RESERVED, "RFC 1112 §4, RFC 919"),
    ("::/128", _C.UNSPECIFIED, "RFC 4291 §2.5.2"),
    ("::1/128", _C.LOOPBACK, "RFC 4291 §2.5.3"),
    ("64:ff9b::/96", _C.PUBLIC, "RFC 6052"),
    ("64:ff9b:1::/48", _C.PRIVATE, "RFC 8215"),
    ("::/8", _C.RESERVED, "RFC 4291 §2.4, §2.5.5.1"),
    ("100::/64", _C.RESERVED, "RFC 6666"),
    ("fc00::/7", _C.UNIQUE_LOCAL, "RFC 4193"),
    ("fe80::/10", _C.LINK_LOCAL, "RFC 4291 §2.5.6"),
    ("fec0::/10", _C.UNIQUE_LOCAL, "RFC 3879"),
    ("ff00::/8", _C.MULTICAST, "RFC 4291 §2.7"),
)
_NETWORKS: Final[tuple[tuple[IPNetwork, AddressClass], ...]] = tuple(
    (ipaddress.ip_network(net), cls) for net, cls, _ in RANGES
)
#: IPv4-mapped IPv6 addresses (a dual-stack socket's view of an IPv4 peer) are classified as the
#: IPv4 address they carry (CAND-2.1).
_MAPPED: Final = ipaddress.ip_network("::ffff:0:0/96")


def parse_ip(host: str | IPAddress) -> IPAddress:
    """``host`` as an address object, a zone (``fe80::1%eth0``) dropped; ValueError if it is not
    an IP address (a host name, a relay's pseudo-address)."""
    if isinstance(host, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return host
    return ipaddress.ip_address(host.split("%", 1)[0])


def unmapped(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv4-mapped IPv6 address carries, else ``ip`` itself."""
    if isinstance(ip, ipaddress.IPv6Address) and ip in _MAPPED:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def classify(host: str | IPAddress) -> AddressClass:
    """The class of ``host`` by spec/candidates.md §2 (CAND-2.1); ValueError for a non-IP."""
    ip = unmapped(parse_ip(host))
    for network, cls in _NETWORKS:
        if network.version == ip.version and ip in network:
            return cls
    return AddressClass.PUBLIC


def scope_of(host: str | IPAddress) -> Scope:
    """Who may reach ``host`` (CAND-2.3)."""
    return SCOPES[classify(host)]


def maybe_public(host: str | IPAddress) -> bool:
    """Whether a peer elsewhere on the internet may reach ``host``: its class is PUBLIC.  What
    replaces ``is_global`` (and ``not is_private``) everywhere in p2pos (CAND-2.2)."""
    return classify(host) is AddressClass.PUBLIC


def is_global_ipv6(host: object) -> bool:
    """Whether ``host`` is a public IPv6 address string, a zone dropped (not an IPv4-mapped one, which
    is an IPv4 address in disguise): what a dual-stack daemon binds and ranks as direct IPv6."""
    if not is_ip(host):
        return False
    ip = parse_ip(str(host))
    return isinstance(ip, ipaddress.IPv6Address) and unmapped(ip) is ip and maybe_public(ip)


def is_ip(host: object) -> bool:
    """Whether ``host`` is an IP address string (not a host name or a relay's pseudo-address)."""
    if not isinstance(host, str):
        return False
    try:
        parse_ip(host)
    except ValueError:
        return False
    return True
