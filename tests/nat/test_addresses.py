"""The address classes of spec/candidates.md §2 (p2pos_proto/nat/addresses.py), range by range."""

from __future__ import annotations

import ast
import ipaddress
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pos.proto.nat.addresses import (
    RANGES,
    AddressClass,
    Scope,
    classify,
    is_global_ipv6,
    is_ip,
    maybe_public,
    scope_of,
)

C = AddressClass
ROOT = Path(__file__).resolve().parents[2]

# (address, class): each range's edges, and the ranges the spec decided to call public.
CASES = [
    ("0.0.0.0", C.UNSPECIFIED),
    ("0.255.255.255", C.UNSPECIFIED),
    ("1.1.1.1", C.PUBLIC),
    ("9.255.255.255", C.PUBLIC),
    ("10.0.0.0", C.PRIVATE),
    ("10.255.255.255", C.PRIVATE),
    ("11.0.0.0", C.PUBLIC),
    ("100.63.255.255", C.PUBLIC),
    ("100.64.0.0", C.SHARED),
    ("100.127.255.255", C.SHARED),
    ("100.128.0.0", C.PUBLIC),
    ("127.0.0.1", C.LOOPBACK),
    ("127.255.255.254", C.LOOPBACK),
    ("169.254.0.1", C.LINK_LOCAL),
    ("169.255.0.1", C.PUBLIC),
    ("172.15.255.255", C.PUBLIC),
    ("172.16.0.0", C.PRIVATE),
    ("172.31.255.255", C.PRIVATE),
    ("172.32.0.0", C.PUBLIC),
    ("192.0.0.2", C.PRIVATE),  # DS-Lite B4 (RFC 7335)
    ("192.0.0.255", C.PRIVATE),
    ("192.0.1.0", C.PUBLIC),
    ("192.0.2.10", C.PUBLIC),  # documentation (RFC 5737): public (CAND-2.2)
    ("198.51.100.1", C.PUBLIC),
    ("203.0.113.7", C.PUBLIC),
    ("192.88.99.1", C.PUBLIC),  # 6to4 relay anycast
    ("192.168.0.0", C.PRIVATE),
    ("192.168.255.255", C.PRIVATE),
    ("192.169.0.0", C.PUBLIC),
    ("198.17.255.255", C.PUBLIC),
    ("198.18.0.1", C.PUBLIC),  # benchmarking (RFC 2544): the lab's internet
    ("198.19.255.255", C.PUBLIC),
    ("223.255.255.255", C.PUBLIC),
    ("224.0.0.1", C.MULTICAST),
    ("239.255.255.255", C.MULTICAST),
    ("240.0.0.1", C.RESERVED),
    ("255.255.255.255", C.RESERVED),
    ("::", C.UNSPECIFIED),
    ("::1", C.LOOPBACK),
    ("::2", C.RESERVED),
    ("::10.0.0.1", C.RESERVED),  # IPv4-compatible, deprecated
    ("::ffff:10.0.0.1", C.PRIVATE),  # IPv4-mapped: as the IPv4 address
    ("::ffff:198.18.0.1", C.PUBLIC),
    ("::ffff:127.0.0.1", C.LOOPBACK),
    ("64:ff9b::198.18.0.1", C.PUBLIC),  # NAT64 well-known prefix
    ("64:ff9b:1::1", C.PRIVATE),  # NAT64 local-use prefix
    ("100::1", C.RESERVED),  # discard-only
    ("100:0:0:1::1", C.PUBLIC),
    ("2001::1", C.PUBLIC),  # Teredo
    ("2001:2::1", C.PUBLIC),  # benchmarking: the lab's IPv6 internet
    ("2001:2:0:100::2", C.PUBLIC),
    ("2001:db8::1", C.PUBLIC),  # documentation
    ("2002:c000:204::1", C.PUBLIC),  # 6to4
    ("2a00:1450::1", C.PUBLIC),
    ("fbff:ffff::1", C.PUBLIC),
    ("fc00::1", C.UNIQUE_LOCAL),
    ("fdff:ffff::1", C.UNIQUE_LOCAL),
    ("fe80::1", C.LINK_LOCAL),
    ("fe80::1%eth0", C.LINK_LOCAL),
    ("febf::1", C.LINK_LOCAL),
    ("fec0::1", C.UNIQUE_LOCAL),  # site-local, deprecated
    ("ff02::1", C.MULTICAST),
    ("ff0e::1", C.MULTICAST),
]


@pytest.mark.parametrize(("address", "expected"), CASES)
def test_classify(address: str, expected: AddressClass) -> None:
    assert classify(address) is expected
    assert classify(ipaddress.ip_address(address.split("%", maxsplit=1)[0])) is expected
    assert maybe_public(address) is (expected is C.PUBLIC)


def test_scopes() -> None:
    assert scope_of("198.18.0.1") is Scope.GLOBAL
    assert {scope_of(a) for a in ("10.0.0.1", "100.64.0.1", "fd00::1", "192.168.1.1")} == {Scope.SITE}
    assert {scope_of(a) for a in ("169.254.1.1", "fe80::1")} == {Scope.LINK}
    assert {scope_of(a) for a in ("127.0.0.1", "::1")} == {Scope.HOST}
    assert {scope_of(a) for a in ("0.0.0.0", "::", "224.0.0.1", "ff02::1", "240.0.0.1")} == {Scope.NEVER}


def test_where_python_disagrees_the_spec_wins() -> None:
    # ipaddress calls these private (or not global); the spec calls them public (CAND-2.2).
    for address in ("198.18.0.1", "2001:2::1", "192.0.2.1", "2001:db8::1"):
        assert ipaddress.ip_address(address).is_private
        assert classify(address) is C.PUBLIC
    # and 100.64.0.0/10, neither private nor global for Python, is shared space
    assert not ipaddress.ip_address("100.64.0.1").is_private
    assert classify("100.64.0.1") is C.SHARED


def test_not_an_ip() -> None:
    for host in ("example.org", "relay:abc", "", "10.0.0.256"):
        assert not is_ip(host)
        with pytest.raises(ValueError, match="does not appear"):
            classify(host)
    assert not is_ip(None)
    assert is_ip("::1") and is_ip("fe80::1%2")


def test_the_code_s_table_is_the_spec_s() -> None:
    text = (ROOT / "spec" / "candidates.md").read_text(encoding="utf-8")
    section = text.split("## §2", 1)[1].split("## §3", 1)[0]
    rows = re.findall(r"^\| `([0-9a-f.:/]+)` \| ([a-z-]+) \| ([^|]+) \|", section, flags=re.MULTILINE)
    assert rows == [(net, cls.value, ref) for net, cls, ref in RANGES]


def test_the_table_lists_each_range_once_and_every_class_is_reachable() -> None:
    nets = [net for net, _, _ in RANGES]
    assert len(set(nets)) == len(nets)
    assert {cls for _, cls, _ in RANGES} | {C.PUBLIC} == set(AddressClass)
    assert all(ref.startswith("RFC") for _, _, ref in RANGES)


@given(st.ip_addresses())
def test_any_address_has_exactly_one_class(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    cls = classify(ip)
    assert cls is classify(str(ip))
    if cls is not C.PUBLIC:  # some range of the table holds it (or its IPv4 form)
        v4 = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        target = v4 or ip
        assert any(
            target.version == ipaddress.ip_network(n).version and target in ipaddress.ip_network(n)
            for n, _, _ in RANGES
        )


def test_nothing_in_p2pos_asks_python_whether_an_address_is_private_or_global() -> None:
    """CAND-2.2: the explicit list replaces ``is_private``/``is_global`` everywhere (but in the
    conformance suite's deliberately broken IUT ``cand-is-private``, which must make that mistake)."""
    offenders = []
    broken = ROOT / "conformance" / "impl_nat_bugs.py"
    for folder in ("p2pos_proto", "adapters", "transports", "conformance"):
        for path in (ROOT / folder).rglob("*.py"):
            if path == broken:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr in ("is_private", "is_global"):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2001:2::5", True),  # the lab's IPv6 internet is public
        ("2001:2::5%eth0", True),
        ("::ffff:198.18.0.1", False),  # IPv4 in disguise
        ("fd00::1", False),  # unique-local
        ("fe80::1", False),
        ("::", False),
        ("198.18.0.1", False),
        ("relay:abc", False),
        (None, False),
    ],
)
def test_is_global_ipv6(host: object, expected: bool) -> None:
    assert is_global_ipv6(host) is expected
