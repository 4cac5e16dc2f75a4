"""Candidates and the pairing policy (p2pos_proto/nat/candidates.py, spec/candidates.md §3-§5)."""

from __future__ import annotations

import ipaddress

import pytest

from p2pos.proto.nat.candidates import (
    MAX_PAIRS,
    MAX_PEER_REFLEXIVE,
    TYPE_PREFERENCE,
    Address,
    Base,
    CandidateKind,
    PeerCandidates,
    advertise,
    local_candidates,
    make,
    pair,
    priority,
    remote_candidates,
)

K = CandidateKind
V4 = Base(key=0, address=("0.0.0.0", 4000))
V6 = Base(key=1, address=("::", 4000))


def kinds(observed: Address | None, listed: list[Address]) -> set[tuple[Address, CandidateKind]]:
    return {(c.address, c.kind) for c in remote_candidates(observed, listed)}


def test_remote_kinds_inferred_from_plain_addresses() -> None:
    assert kinds(
        ("198.18.1.2", 5000),
        [
            ("10.1.0.2", 5000),  # private: a host candidate
            ("100.64.0.9", 5000),  # shared: a host candidate (behind a carrier's NAT)
            ("2001:2:0:101::2", 5000),  # public IPv6
            ("198.18.0.9", 6001),  # public IPv4: host, mapped or relayed, cannot tell
            ("198.18.1.2", 7000),  # the observed IP, another port: a mapping? cannot tell
            ("::ffff:10.1.0.3", 5000),  # dual-stack socket's view: an IPv4 host candidate
        ],
    ) == {
        (("198.18.1.2", 5000), K.SERVER_REFLEXIVE),
        (("10.1.0.2", 5000), K.HOST),
        (("100.64.0.9", 5000), K.HOST),
        (("2001:2:0:101::2", 5000), K.IPV6_GLOBAL),
        (("198.18.0.9", 6001), K.UNTYPED),
        (("198.18.1.2", 7000), K.UNTYPED),
        (("10.1.0.3", 5000), K.HOST),
    }


def test_a_public_peer_lists_its_observed_address_a_host_and_server_reflexive_candidate() -> None:
    observed = ("198.18.2.2", 5000)
    assert kinds(observed, [observed]) == {(observed, K.HOST), (observed, K.SERVER_REFLEXIVE)}
    ours = local_candidates(hosts=[A_HOST], reflexive=[A_SRFLX])
    result = pair([V4], ours, remote_candidates(observed, [observed]))
    assert [(p.remote.address, p.remote.kind) for p in result.pairs] == [(observed, K.HOST)]  # dialled once


def test_non_candidates_and_duplicates_are_dropped() -> None:
    listed = [
        ("0.0.0.0", 1),
        ("::", 1),
        ("224.0.0.1", 1),
        ("255.255.255.255", 1),
        ("10.0.0.1", 0),  # port 0
        ("relay:abc", 1),  # not an IP
        ("10.0.0.1", 9),
        ("10.0.0.1", 9),
    ]
    assert kinds(None, listed) == {(("10.0.0.1", 9), K.HOST)}


def test_at_most_sixteen_listed_candidates_are_read() -> None:
    listed = [(f"10.0.0.{i}", 1000) for i in range(1, 40)]
    assert len(remote_candidates(("198.18.0.1", 1), listed)) == 17


def test_priorities_order_kind_then_ipv6_then_position() -> None:
    assert TYPE_PREFERENCE[K.HOST] > TYPE_PREFERENCE[K.IPV6_GLOBAL] > TYPE_PREFERENCE[K.PEER_REFLEXIVE]
    assert TYPE_PREFERENCE[K.PEER_REFLEXIVE] > TYPE_PREFERENCE[K.PORT_MAPPED] > TYPE_PREFERENCE[K.SERVER_REFLEXIVE]
    assert TYPE_PREFERENCE[K.SERVER_REFLEXIVE] > TYPE_PREFERENCE[K.UNTYPED] > TYPE_PREFERENCE[K.RELAYED] == 0
    assert priority(K.HOST, ("10.0.0.1", 1)) == (126 << 24) + 0xFFFF
    assert priority(K.HOST, ("fd00::1", 1), 3) == (126 << 24) + (1 << 16) + 0xFFFF - 3
    assert priority(K.SERVER_REFLEXIVE, ("2001:2::1", 1)) > priority(K.SERVER_REFLEXIVE, ("198.18.0.1", 1))
    assert priority(K.HOST, ("10.0.0.1", 1), 1) > priority(K.HOST, ("10.0.0.1", 1), 2)
    assert priority(K.RELAYED, ("2001:2::1", 1)) < priority(K.UNTYPED, ("198.18.0.1", 1), 10**6)
    assert all(0 < priority(k, ("::1", 1), p) < 2**31 for k in K for p in (0, 70000))


def test_local_candidates_and_what_is_advertised() -> None:
    ours = local_candidates(
        hosts=[("0.0.0.0", 4000), ("10.1.0.2", 4000), ("127.0.0.1", 4001), ("2001:2:0:101::2", 4000)],
        reflexive=[("198.18.1.2", 4000)],
        mapped=[("198.18.1.2", 4444)],
        relayed=[("198.18.0.5", 49152)],
    )
    assert [(c.address, c.kind) for c in ours] == [
        (("10.1.0.2", 4000), K.HOST),
        (("127.0.0.1", 4001), K.HOST),
        (("2001:2:0:101::2", 4000), K.IPV6_GLOBAL),
        (("198.18.1.2", 4444), K.PORT_MAPPED),
        (("198.18.1.2", 4000), K.SERVER_REFLEXIVE),
        (("198.18.0.5", 49152), K.RELAYED),
    ]
    # The node adds the reflexive address itself (it observes it): not advertised.
    assert advertise(ours) == (
        ("10.1.0.2", 4000),
        ("127.0.0.1", 4001),
        ("2001:2:0:101::2", 4000),
        ("198.18.1.2", 4444),
        ("198.18.0.5", 49152),
    )
    many = local_candidates(hosts=[(f"10.0.{i}.1", 1) for i in range(30)])
    assert len(advertise(many)) == 16
    assert advertise(many)[0] == ("10.0.0.1", 1)  # the sockets' order is kept among equals


# The pairing table (CAND-4): this side (its bases, its reflexive and host addresses) x the peer's
# observed address and listed candidates -> what is dialled, in order.  A is behind router 1
# (public 198.18.1.2, LAN 10.1.0.0/24), B elsewhere unless said.
A_HOST, A_SRFLX = ("10.1.0.2", 4000), ("198.18.1.2", 4000)

PAIRING_CASES: list[tuple[str, dict[str, list[Address]], Address | None, list[Address], list[Address]]] = [
    (
        "different NATs: the peer's private and shared addresses are not dialled",
        {"hosts": [A_HOST], "reflexive": [A_SRFLX]},
        ("198.18.2.2", 5000),
        [("10.2.0.2", 5000), ("100.64.0.3", 5000), ("192.168.1.4", 5000), ("fd00::2", 5000)],
        [("198.18.2.2", 5000)],
    ),
    (
        "the same NAT (the same public address): private candidates first, then the observed one",
        {"hosts": [A_HOST], "reflexive": [A_SRFLX]},
        ("198.18.1.2", 5000),
        [("10.1.1.2", 5000), ("100.64.0.3", 5000)],
        [("10.1.1.2", 5000), ("100.64.0.3", 5000), ("198.18.1.2", 5000)],
    ),
    (
        "the peer behind us: its observed address is our own public host address",
        {"hosts": [("198.18.1.2", 4000), ("10.1.0.1", 4000)]},
        ("198.18.1.2", 5000),
        [("10.1.0.9", 5000)],
        [("10.1.0.9", 5000), ("198.18.1.2", 5000)],
    ),
    (
        "both seen by a node at private addresses: one private network, all of it dialled",
        {"hosts": [("10.9.0.5", 4000)], "reflexive": [("10.9.0.5", 4000)]},
        ("10.9.0.6", 5000),
        [("10.9.0.6", 5000), ("192.168.7.1", 5000)],
        [("10.9.0.6", 5000), ("192.168.7.1", 5000)],
    ),
    (
        "a public peer: its observed address, which is its host address too",
        {"hosts": [A_HOST], "reflexive": [A_SRFLX]},
        ("198.18.2.2", 5000),
        [("198.18.2.2", 5000)],
        [("198.18.2.2", 5000)],
    ),
    (
        "loopback only when a node saw both sides over loopback",
        {"hosts": [("127.0.0.1", 4000)], "reflexive": [("127.0.0.1", 4000)]},
        ("127.0.0.1", 5000),
        [("127.0.0.1", 5000), ("127.0.0.2", 5001)],
        [("127.0.0.1", 5000), ("127.0.0.2", 5001)],
    ),
    (
        "a peer's loopback address from another host is never dialled",
        {"hosts": [A_HOST], "reflexive": [A_SRFLX]},
        ("198.18.1.2", 5000),  # even behind the same NAT
        [("127.0.0.1", 5000), ("::1", 5000)],
        [("198.18.1.2", 5000)],
    ),
    (
        "IPv6 only when we have a public IPv6 address",
        {"hosts": [A_HOST], "reflexive": [A_SRFLX]},
        ("198.18.2.2", 5000),
        [("2001:2:0:201::2", 5000)],
        [("198.18.2.2", 5000)],
    ),
    (
        "with IPv6 on both sides, the IPv6 address comes before the IPv4 observed one",
        {"hosts": [A_HOST, ("2001:2:0:101::2", 4000)], "reflexive": [A_SRFLX]},
        ("198.18.2.2", 5000),
        [("2001:2:0:201::2", 5000)],
        [("2001:2:0:201::2", 5000), ("198.18.2.2", 5000)],
    ),
    (
        "an IPv6 reflexive address counts as having IPv6",
        {"hosts": [A_HOST], "reflexive": [A_SRFLX, ("2001:2:0:101::2", 4000)]},
        ("198.18.2.2", 5000),
        [("2001:2:0:201::2", 5000)],
        [("2001:2:0:201::2", 5000), ("198.18.2.2", 5000)],
    ),
    (
        "a TURN relayed address of ours says nothing about our NAT or IPv6",
        {"hosts": [A_HOST], "reflexive": [A_SRFLX], "relayed": [("198.18.0.5", 49152), ("2001:2::5", 49152)]},
        ("198.18.0.5", 5000),  # the peer behind the TURN server's address? not our NAT
        [("10.5.0.2", 5000), ("2001:2:0:201::2", 5000), ("198.18.0.5", 49153)],
        [("198.18.0.5", 5000), ("198.18.0.5", 49153)],
    ),
    (
        "link-local IPv4 only behind the same NAT when we have a link-local address too",
        {"hosts": [("169.254.3.3", 4000)], "reflexive": [A_SRFLX]},
        ("198.18.1.2", 5000),
        [("169.254.9.9", 5000), ("fe80::9", 5000)],
        [("169.254.9.9", 5000), ("198.18.1.2", 5000)],
    ),
    (
        "link-local IPv4 not otherwise; IPv6 link-local never (no zone on the wire)",
        {"hosts": [A_HOST, ("fe80::1", 4000)], "reflexive": [A_SRFLX]},
        ("198.18.1.2", 5000),
        [("169.254.9.9", 5000), ("fe80::9", 5000)],
        [("198.18.1.2", 5000)],
    ),
    (
        "our own address (the same LAN address in another LAN) is never dialled",
        {"hosts": [A_HOST], "reflexive": [A_SRFLX]},
        ("198.18.1.2", 5000),
        [A_HOST, ("10.1.0.3", 4000)],
        [("10.1.0.3", 4000), ("198.18.1.2", 5000)],
    ),
    (
        "not registered anywhere (no reflexive address): only public candidates",
        {"hosts": [A_HOST]},
        ("198.18.2.2", 5000),
        [("10.1.0.3", 5000)],
        [("198.18.2.2", 5000)],
    ),
]


@pytest.mark.parametrize(
    ("why", "local", "observed", "listed", "dialled"), PAIRING_CASES, ids=[c[0] for c in PAIRING_CASES]
)
def test_pairing_table(
    why: str, local: dict[str, list[Address]], observed: Address | None, listed: list[Address], dialled: list[Address]
) -> None:
    ours = local_candidates(**local)
    first_v4 = [h for h in local.get("hosts", []) if ":" not in h[0]][:1]
    bases = [Base(key=0, address=first_v4[0]) if first_v4 else V4, V6]  # one socket per family
    result = pair(bases, ours, remote_candidates(observed, listed))
    assert [p.remote.address for p in result.pairs] == dialled, why
    skipped = {s.remote.address for s in result.skipped}
    every = {c.address for c in remote_candidates(observed, listed)}
    assert skipped == every - set(dialled), "each candidate is dialled or skipped with a reason"
    assert all(s.reason for s in result.skipped)


def test_on_link_networks_allow_private_candidates_without_a_shared_public_address() -> None:
    ours = local_candidates(hosts=[A_HOST], reflexive=[A_SRFLX])
    theirs = remote_candidates(("198.18.2.2", 5000), [("10.1.0.7", 5000), ("10.2.0.7", 5000)])
    result = pair([V4], ours, theirs, networks=[ipaddress.ip_network("10.1.0.0/24")])
    assert [p.remote.address for p in result.pairs] == [("10.1.0.7", 5000), ("198.18.2.2", 5000)]


def test_bases_of_each_family_and_a_loopback_base_reaches_only_loopback() -> None:
    ours = local_candidates(hosts=[("2001:2:0:101::2", 4000)], reflexive=[A_SRFLX, ("127.0.0.1", 1)])
    theirs = remote_candidates(("127.0.0.1", 5000), [("2001:2:0:201::2", 5000), ("198.18.2.2", 5000)])
    loop = Base(key="lo", address=("127.0.0.1", 4001))
    result = pair([loop, V4, V6], ours, theirs)
    assert [(p.base, p.remote.address) for p in result.pairs] == [
        (1, ("2001:2:0:201::2", 5000)),
        ("lo", ("127.0.0.1", 5000)),
        (0, ("127.0.0.1", 5000)),
        (0, ("198.18.2.2", 5000)),
    ]
    only_v6 = pair([V6], ours, remote_candidates(("198.18.2.2", 5000), []))
    assert not only_v6.pairs and only_v6.skipped[0].reason == "no IPv4 socket that reaches it"


def test_pairs_are_bounded_and_the_best_are_kept() -> None:
    ours = local_candidates(hosts=[A_HOST], reflexive=[A_SRFLX])
    listed = [(f"10.1.{i}.2", 5000) for i in range(1, 17)]
    theirs = remote_candidates(("198.18.1.2", 5000), listed)
    result = pair([V4, Base(key=2, address=("10.1.0.2", 4002))], ours, theirs)
    assert len(result.pairs) == MAX_PAIRS
    assert [p.remote.address for p in result.pairs[:2]] == [listed[0], listed[0]]  # both bases
    assert result.pairs[-1].remote.address == listed[7]
    over = [s for s in result.skipped if s.reason.startswith("over the limit")]
    assert {s.remote.address for s in over} == {*listed[8:], ("198.18.1.2", 5000)}
    assert len(pair([V4], ours, theirs, limit=3).pairs) == 3


def test_peer_reflexive_candidates() -> None:
    peer = PeerCandidates(("198.18.2.2", 5000), [("10.2.0.2", 5000)])
    learnt = peer.learn_peer_reflexive(("198.18.2.2", 5999))  # its NAT rebound
    assert learnt is not None and learnt.kind is K.PEER_REFLEXIVE
    assert peer.learn_peer_reflexive(("198.18.2.2", 5999)) is None  # known now
    assert peer.learn_peer_reflexive(("198.18.2.2", 5000)) is None  # signalled already
    assert peer.learn_peer_reflexive(("0.0.0.0", 1)) is None
    assert peer.learn_peer_reflexive(("relay:x", 0)) is None
    # bounded: the oldest goes first
    for port in range(6000, 6000 + MAX_PEER_REFLEXIVE):
        assert peer.learn_peer_reflexive(("198.18.2.2", port)) is not None
    reflexive = [c.address[1] for c in peer.candidates if c.kind is K.PEER_REFLEXIVE]
    assert sorted(reflexive) == list(range(6000, 6000 + MAX_PEER_REFLEXIVE))
    # an update replaces the signalled ones, the learnt ones stay
    peer.update(("198.18.2.2", 7000), [])
    addresses = {c.address for c in peer.candidates}
    assert ("198.18.2.2", 7000) in addresses and ("10.2.0.2", 5000) not in addresses
    assert ("198.18.2.2", 6000) in addresses
    # a peer-reflexive candidate is dialled whatever its class: the peer's packets came from there
    ours = local_candidates(hosts=[A_HOST], reflexive=[A_SRFLX])
    peer.learn_peer_reflexive(("10.7.0.2", 5000))
    dialled = [p.remote.address for p in pair([V4], ours, peer.candidates).pairs]
    assert ("10.7.0.2", 5000) in dialled
    assert dialled[0][1] != 7000  # peer-reflexive ones before the server-reflexive one


def test_make_normalises() -> None:
    c = make(("::ffff:198.18.0.1", 1), K.HOST)
    assert c is not None and c.address == ("198.18.0.1", 1) and c.version == 4
    c6 = make(("2001:0002:0000::0001", 1), K.HOST)
    assert c6 is not None and c6.address == ("2001:2::1", 1)
    assert make(("10.0.0.1", 65536), K.HOST) is None
