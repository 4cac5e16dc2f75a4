# ruff: noqa: E501 (a case title is one row of the table of spec/conformance.md §4, kept whole)
"""Candidate cases (spec/candidates.md): the address classes, and the pairing policy.

``addr_class`` answers an address's class and scope (CAND-2.1); ``cand_pair`` answers which of a
peer's candidates the IUT dials from which of its sockets, in order, and what it advertises,
given its own addresses and the peer's observed address and listed candidates
(spec/conformance.md §3.12).  Each case states the situation the way a FOUND or INTRODUCTION
and the side's own sockets would give it; the expected pairs are written out from §4.
"""

from __future__ import annotations

from typing import Any

from .checks import expect, expect_eq
from .iut import Iut
from .registry import case

CLASSES, PAIRING, ADVERTISE = "candidates.md §2", "candidates.md §4", "candidates.md §4"
#: Every range of CAND-2.1's table (an address inside it, then its class), and IPv4-mapped forms.
TABLE = (
    ("0.1.2.3", "unspecified"),
    ("10.1.2.3", "private"),
    ("100.64.0.1", "shared"),
    ("100.127.255.254", "shared"),
    ("127.0.0.1", "loopback"),
    ("169.254.1.1", "link-local"),
    ("172.16.0.1", "private"),
    ("172.31.255.1", "private"),
    ("192.0.0.9", "private"),
    ("192.168.1.1", "private"),
    ("224.0.0.251", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("64:ff9b::c633:6407", "public"),
    ("64:ff9b:1::1", "private"),
    ("::2", "reserved"),
    ("100::1", "reserved"),
    ("fd00::5", "unique-local"),
    ("fc00::1", "unique-local"),
    ("fe80::1", "link-local"),
    ("fec0::1", "unique-local"),
    ("ff02::1", "multicast"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:198.18.0.1", "public"),
    ("fe80::1%eth0", "link-local"),
    ("172.32.0.1", "public"),
    ("100.128.0.1", "public"),
    ("8.8.8.8", "public"),
    ("2606:4700::1", "public"),
)
#: CAND-2.2's deliberate decisions: public, whatever a library says.
PUBLIC = (
    "198.18.0.1",
    "198.19.255.254",
    "2001:2::1",
    "2001:2:0:ffff::1",
    "192.0.2.1",
    "198.51.100.7",
    "203.0.113.9",
    "2001:db8::1",
    "2001::1",
    "2001:1ff::1",
    "192.88.99.1",
    "2002::1",
    "4000::1",
)
SCOPES = {
    "public": "global",
    "private": "site",
    "shared": "site",
    "unique-local": "site",
    "link-local": "link",
    "loopback": "host",
    "unspecified": "never",
    "multicast": "never",
    "reserved": "never",
}

OUR_LAN, OUR_PUBLIC = "192.168.1.10:40000", "198.18.1.1:40000"
PEER_PUBLIC = "198.18.5.5:50000"
MAIN = {"key": "main", "address": "0.0.0.0:40000"}
MAIN6 = {"key": "main6", "address": "[::]:40001"}


def pairs(iut: Iut, **fields: Any) -> list[tuple[str, str]]:
    got = iut.ok("cand_pair", **{"bases": [MAIN], "hosts": [OUR_LAN], "reflexive": [OUR_PUBLIC], **fields})
    return [(str(p.get("base")), str(p.get("address"))) for p in got.get("pairs") or []]


def dialled(iut: Iut, **fields: Any) -> list[str]:
    return [address for _, address in pairs(iut, **fields)]


@case(
    "cand/class/1",
    section=CLASSES,
    title="every range of the table gets its class and scope; IPv4-mapped addresses as the IPv4 one, zones ignored",
    requirements=("CAND-2.1",),
)
def _(iut: Iut) -> str | None:
    for host, cls in TABLE:
        got = iut.ok("addr_class", host=host)
        expect_eq((got.get("class"), got.get("scope")), (cls, SCOPES[cls]), f"class and scope of {host}")
    return f"{len(TABLE)} addresses"


@case(
    "cand/class/2",
    section=CLASSES,
    title="benchmarking (198.18.0.0/15, 2001:2::/48), documentation, 6to4 and unassigned ranges are public",
    requirements=("CAND-2.2",),
)
def _(iut: Iut) -> str | None:
    for host in PUBLIC:
        got = iut.ok("addr_class", host=host)
        expect_eq(got.get("class"), "public", f"class of {host}")
    return None


@case(
    "cand/pair/1",
    section=PAIRING,
    title="across NATs only the peer's public candidates are dialled: not its private, shared, unique-local or loopback ones",
    requirements=("CAND-4.2", "CAND-4.3"),
)
def _(iut: Iut) -> str | None:
    listed = [
        "192.168.1.20:50000",
        "10.0.0.7:50000",
        "100.64.3.3:50000",
        "[fd00::5]:50000",
        "127.0.0.1:631",
        "169.254.3.3:50000",
        "198.18.5.6:50001",
    ]
    got = dialled(iut, bases=[MAIN, MAIN6], observed=PEER_PUBLIC, candidates=listed)
    expect_eq(sorted(got), sorted([PEER_PUBLIC, "198.18.5.6:50001"]), "the addresses dialled across NATs")
    return None


@case(
    "cand/pair/2",
    section=PAIRING,
    title="site-scope candidates are dialled behind the same NAT, in the same private network, or on a known link",
    requirements=("CAND-4.2",),
)
def _(iut: Iut) -> str | None:
    lan = ["192.168.1.20:50000", "100.64.3.3:50000"]
    got = dialled(iut, observed="198.18.1.1:50000", candidates=lan)  # the peer is seen at our public IP
    expect(set(lan) <= set(got), f"behind the same NAT the peer's LAN addresses are dialled: got {got}")
    got = dialled(iut, reflexive=["100.64.0.9:40000"], observed="100.64.0.77:50000", candidates=lan)
    expect(set(lan) <= set(got), f"both seen at shared addresses (one private network): got {got}")
    got = dialled(
        iut, observed=PEER_PUBLIC, candidates=["192.168.1.20:50000", "10.9.9.9:50000"], networks=["192.168.1.0/24"]
    )
    expect("192.168.1.20:50000" in got and "10.9.9.9:50000" not in got, f"on a known link only: got {got}")
    got = dialled(iut, relayed=["198.18.5.5:3000"], reflexive=[], hosts=[], observed=PEER_PUBLIC, candidates=lan)
    expect(not set(lan) & set(got), f"a shared TURN server's address is no shared NAT: got {got}")
    return None


@case(
    "cand/pair/3",
    section=PAIRING,
    title="loopback only between two sides a node saw on loopback; IPv6 link-local never; a loopback socket pairs with loopback only",
    requirements=("CAND-4.3",),
)
def _(iut: Iut) -> str | None:
    got = dialled(
        iut,
        hosts=["127.0.0.1:40000"],
        reflexive=["127.0.0.1:40000"],
        bases=[{"key": "lo", "address": "127.0.0.1:40000"}],
        observed="127.0.0.1:50000",
        candidates=["127.0.0.1:50001", "192.168.1.20:50000", "198.18.5.6:50001"],
    )
    expect_eq(sorted(got), ["127.0.0.1:50000", "127.0.0.1:50001"], "what a loopback socket dials on the node's host")
    got = dialled(iut, observed=PEER_PUBLIC, candidates=["127.0.0.1:50001", "[fe80::1]:50000", "169.254.3.3:50000"])
    expect_eq(got, [PEER_PUBLIC], "loopback and link-local candidates from another host")
    got = dialled(
        iut,
        observed="198.18.1.1:50000",
        hosts=[OUR_LAN, "169.254.9.9:40000"],
        candidates=["[fe80::1]:50000", "169.254.3.3:50000"],
    )
    expect("[fe80::1]:50000" not in got, f"an IPv6 link-local candidate was dialled: {got}")
    expect(
        "169.254.3.3:50000" in got,
        f"a link-local IPv4 candidate behind the same NAT, with one of our own, was not dialled: {got}",
    )
    return None


@case(
    "cand/pair/4",
    section=PAIRING,
    title="addresses of scope never and port 0 are dropped, never dialled",
    requirements=("CAND-2.3", "CAND-3.2"),
)
def _(iut: Iut) -> str | None:
    never = [
        "0.0.0.0:50000",
        "224.0.0.1:50000",
        "240.0.0.1:50000",
        "255.255.255.255:50000",
        "[::]:50000",
        "[ff02::1]:50000",
        "[100::1]:50000",
        "198.18.5.6:0",
    ]
    got = dialled(
        iut, bases=[MAIN, MAIN6], hosts=[OUR_LAN, "[2001:2::9]:40001"], observed="198.18.1.1:50000", candidates=never
    )
    expect_eq(got, ["198.18.1.1:50000"], "what is dialled of candidates of scope never")
    return None


@case(
    "cand/pair/5",
    section=PAIRING,
    title="an IPv6 candidate only with a public IPv6 address of our own; no family without a socket; never our own address",
    requirements=("CAND-4.4",),
)
def _(iut: Iut) -> str | None:
    six = "[2001:2::5]:50000"
    got = dialled(iut, bases=[MAIN, MAIN6], observed=PEER_PUBLIC, candidates=[six])
    expect(six not in got, f"an IPv6 candidate dialled with only a wildcard IPv6 socket: {got}")
    got = dialled(
        iut, bases=[MAIN, MAIN6], hosts=[OUR_LAN, "[2001:2::9]:40001"], observed=PEER_PUBLIC, candidates=[six]
    )
    expect(six in got, f"an IPv6 candidate not dialled with a public IPv6 address: {got}")
    got = dialled(iut, bases=[MAIN], hosts=[OUR_LAN, "[2001:2::9]:40001"], observed=PEER_PUBLIC, candidates=[six])
    expect(six not in got, f"an IPv6 candidate dialled with no IPv6 socket: {got}")
    got = dialled(iut, observed="198.18.1.1:50000", candidates=[OUR_LAN, OUR_PUBLIC])
    expect(OUR_LAN not in got and OUR_PUBLIC not in got, f"our own addresses dialled: {got}")
    return None


@case(
    "cand/pair/6",
    section=PAIRING,
    title="at most 16 pairs, by priority: host before IPv6 global before the observed address before untyped; each address once",
    requirements=("CAND-4.4", "CAND-4.5", "CAND-3.1", "CAND-3.2"),
)
def _(iut: Iut) -> str | None:
    listed = ["198.18.9.9:50001", "[2001:2::5]:50000", "192.168.1.20:50000", "198.18.1.1:50000"]
    got = pairs(
        iut, bases=[MAIN, MAIN6], hosts=[OUR_LAN, "[2001:2::9]:40001"], observed="198.18.1.1:50000", candidates=listed
    )
    want = [
        ("main", "192.168.1.20:50000"),
        ("main", "198.18.1.1:50000"),
        ("main6", "[2001:2::5]:50000"),
        ("main", "198.18.9.9:50001"),
    ]
    expect_eq(got, want, "the pairs in order (host, public host = observed, IPv6 global, untyped)")
    many = [f"198.18.9.{i}:5000{i % 10}" for i in range(1, 17)]
    got = pairs(iut, observed=PEER_PUBLIC, candidates=many)
    expect_eq(len(got), 16, "pairs for 16 listed candidates and the observed address")
    expect_eq(got[0][1], PEER_PUBLIC, "the first pair (server-reflexive ranks above untyped)")
    expect(many[-1] not in [a for _, a in got], "the weakest candidate (the last listed) was kept")
    return None


@case(
    "cand/pair/7",
    section=PAIRING,
    title="peer-reflexive candidates are dialled whatever their class, at most 4 kept",
    requirements=("CAND-4.6", "CAND-5.1", "CAND-5.2"),
)
def _(iut: Iut) -> str | None:
    learnt = [f"10.77.0.{i}:5000" for i in range(1, 7)]
    got = dialled(iut, observed=PEER_PUBLIC, candidates=[], peer_reflexive=learnt)
    expect_eq(sorted(a for a in got if a != PEER_PUBLIC), sorted(learnt[-4:]), "the peer-reflexive candidates dialled")
    return None


@case(
    "cand/adv/1",
    section=ADVERTISE,
    title="what a side advertises: host, IPv6 global, port-mapped and relayed by priority; no server-reflexive, wildcard or never",
    requirements=("CAND-4.1",),
)
def _(iut: Iut) -> str | None:
    got = iut.ok(
        "cand_pair",
        bases=[MAIN],
        hosts=["0.0.0.0:40000", OUR_LAN, "[2001:2::9]:40001", "224.0.0.1:1"],
        reflexive=[OUR_PUBLIC],
        mapped=["198.18.1.1:41000"],
        relayed=["198.18.0.50:3000"],
        observed=PEER_PUBLIC,
        candidates=[],
    ).get("advertise")
    expect_eq(got, [OUR_LAN, "[2001:2::9]:40001", "198.18.1.1:41000", "198.18.0.50:3000"], "the advertised addresses")
    return None


@case(
    "cand/adv/2",
    section=ADVERTISE,
    title="never advertised: more than 16 addresses, a wildcard, an address of scope never",
    requirements=("CAND-4.1a",),
)
def _(iut: Iut) -> str | None:
    got = iut.ok(
        "cand_pair",
        bases=[MAIN],
        hosts=["0.0.0.0:40000", "[::]:40000", OUR_LAN, "224.0.0.1:1", "0.0.0.0:1"],
        reflexive=[],
        mapped=[],
        relayed=[],
        observed=None,
        candidates=[],
    ).get("advertise")
    expect(isinstance(got, list), f"advertise: {got!r}")
    assert isinstance(got, list)
    expect_eq([a for a in got if a != OUR_LAN], [], "wildcard or scope-never addresses advertised")
    many = iut.ok(
        "cand_pair", bases=[MAIN], hosts=[f"10.0.{i}.1:4000" for i in range(20)], observed=None, candidates=[]
    ).get("advertise")
    expect(
        isinstance(many, list) and len(many) <= 16,
        f"{len(many) if isinstance(many, list) else many} addresses advertised",
    )
    return None
