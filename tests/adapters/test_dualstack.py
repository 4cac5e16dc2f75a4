"""The daemon's IPv6 socket (adapters/dualstack.py) and the rank of direct IPv6 paths
(adapters/routeconfig.py, spec/punch.md §3.9, spec/paths.md §1)."""

from __future__ import annotations

from types import SimpleNamespace

from p2pos.adapters import dualstack, routeconfig
from p2pos.adapters.nodepaths import PIN_RANK
from p2pos.proto.paths.path import PathKind

V6 = "2001:2:0:101::2"


def test_the_ipv4_wildcard_gets_the_hosts_global_ipv6_address_beside_it() -> None:
    assert dualstack.listen_hosts(["0.0.0.0"], find=lambda: V6) == ["0.0.0.0", V6]


def test_explicit_listen_addresses_are_kept_as_given() -> None:
    for hosts in (["10.1.0.2"], ["0.0.0.0", "::"], ["0.0.0.0", V6], ["::"]):
        assert dualstack.listen_hosts(hosts, find=lambda: V6) == hosts


def test_no_ipv6_address_no_ipv6_socket() -> None:
    assert dualstack.listen_hosts(["0.0.0.0"], find=lambda: None) == ["0.0.0.0"]


def test_what_the_host_reports_is_a_public_ipv6_address_or_nothing() -> None:
    found = dualstack.global_ipv6_address()  # this host's own: fd00::/8 or none in CI, both give None
    assert found is None or (":" in found and not found.startswith(("fd", "fc", "fe80", "::")))


def _rank(address: tuple[str, int], **attributes: object) -> int:
    return routeconfig.kind_and_rank(SimpleNamespace(local_address=address, **attributes))[1]


def test_direct_ipv6_ranks_before_direct_ipv4_and_after_a_pin() -> None:
    assert _rank((V6, 4000)) == routeconfig.DIRECT_IPV6_RANK == -1
    assert PIN_RANK < routeconfig.DIRECT_IPV6_RANK
    for host in ("10.1.0.2", "198.18.1.2", "::1", "::", "fd00::2", "fe80::1", "::ffff:198.18.1.2", "0.0.0.0"):
        assert _rank((host, 4000)) == 0, host
    assert _rank((V6, 4000), path_rank=1) == 1  # QUIC on the IPv6 socket keeps its own rank
    kind, _ = routeconfig.kind_and_rank(SimpleNamespace(local_address=(V6, 4000)))
    assert kind is PathKind.DATAGRAM
