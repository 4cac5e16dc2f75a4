"""Candidates and the pairing policy: which of a peer's addresses to dial, from which socket, in
which order (spec/candidates.md).

    ours = local_candidates(hosts=[("10.1.0.2", 4000)], reflexive=[("198.18.1.2", 4000)])
    advertise(ours)                       # what REGISTER and LOOKUP carry (CAND-4.1)
    theirs = PeerCandidates(observed, candidates)          # from FOUND or INTRODUCTION
    pairing = pair([Base(key=0, address=("10.1.0.2", 4000))], ours, theirs.candidates)
    for p in pairing.pairs: ...           # dial p.remote.address from socket p.base, in this order
    for s in pairing.skipped: ...         # what was not dialled, and why (a log line)
    theirs.learn_peer_reflexive(address)  # an authenticated packet came from a new address (CAND-5.1)

A candidate is an address at which a side may be reached, with its **kind** (how it was learnt)
and a **priority** (CAND-3.1).  The rendezvous wire carries plain addresses (rendezvous.md §3.1),
so a receiver infers what it can of the kind of its peer's candidates (``remote_candidates``,
CAND-3.2).  The pairing policy (``pair``, CAND-4) keeps a side from dialling addresses it cannot
reach: a private address only behind the same NAT, a loopback address only on the same host,
IPv6 only with IPv6, at most ``MAX_PAIRS`` pairs.  Everything here is pure: no I/O, no clock.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
from collections.abc import Hashable, Iterable, Sequence
from typing import Final

from .addresses import SCOPES, AddressClass, IPNetwork, Scope, classify, is_ip, parse_ip, unmapped

Address = tuple[str, int]

#: The most pairs one attempt dials (CAND-4.4): 16 candidates and the observed address from one
#: socket would be 17; a peer gets its best 16.
MAX_PAIRS: Final = 16
#: The most candidates a side advertises: what a rendezvous message carries (RDV-3.2.1).
MAX_ADVERTISED: Final = 16
#: The most peer-reflexive candidates kept per peer; the oldest goes first (CAND-5.2).
MAX_PEER_REFLEXIVE: Final = 4


class CandidateKind(enum.Enum):
    """How a candidate was learnt (CAND-3.1)."""

    HOST = "host"  # an address of one of the side's own sockets
    IPV6_GLOBAL = "ipv6"  # a host candidate with a public IPv6 address: no NAT in front
    SERVER_REFLEXIVE = "srflx"  # what a rendezvous node (or STUN server) saw: the NAT's mapping
    PORT_MAPPED = "mapped"  # a mapping the router made on request (UPnP IGD, NAT-PMP, PCP)
    RELAYED = "relay"  # a TURN allocation's relayed address
    PEER_REFLEXIVE = "prflx"  # where an authenticated packet of the peer came from (CAND-5.1)
    UNTYPED = "untyped"  # a public IPv4 address from today's wire: host, mapped or relayed (CAND-3.2)


#: Type preferences (CAND-3.1), in the manner of RFC 8445 §5.1.2.2: the higher, the sooner tried.
TYPE_PREFERENCE: Final[dict[CandidateKind, int]] = {
    CandidateKind.HOST: 126,
    CandidateKind.IPV6_GLOBAL: 120,
    CandidateKind.PEER_REFLEXIVE: 110,
    CandidateKind.PORT_MAPPED: 105,
    CandidateKind.SERVER_REFLEXIVE: 100,
    CandidateKind.UNTYPED: 50,
    CandidateKind.RELAYED: 0,
}


def priority(kind: CandidateKind, address: Address, position: int = 0) -> int:
    """``type_preference * 2^24 + ipv6 * 2^16 + (2^16 - 1 - position)`` (CAND-3.1): kind first,
    then IPv6 before IPv4 (RFC 8421), then the order the side listed its candidates in."""
    ipv6 = parse_ip(address[0]).version == 6
    return (TYPE_PREFERENCE[kind] << 24) | (int(ipv6) << 16) | (0xFFFF - min(max(position, 0), 0xFFFF))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    address: Address
    kind: CandidateKind
    address_class: AddressClass
    priority: int

    @property
    def scope(self) -> Scope:
        return SCOPES[self.address_class]

    @property
    def version(self) -> int:
        return unmapped(parse_ip(self.address[0])).version


def make(address: Address, kind: CandidateKind, position: int = 0) -> Candidate | None:
    """A candidate, or None for an address that can never be one: not an IP, port 0, or an
    unspecified, multicast or reserved address (CAND-2.3)."""
    host, port = address
    if not is_ip(host) or not 0 < port < 65536:
        return None
    cls = classify(host)
    if SCOPES[cls] is Scope.NEVER:
        return None
    ip = str(unmapped(parse_ip(host)))  # a dual-stack socket's ::ffff:a.b.c.d is a.b.c.d
    return Candidate(address=(ip, port), kind=kind, address_class=cls, priority=priority(kind, (ip, port), position))


def _unique(candidates: Iterable[Candidate], *, by_address: bool = False) -> tuple[Candidate, ...]:
    """By priority, highest first, each (address, kind) once: one address may be two candidates
    (a public host's address is also its server-reflexive one).  ``by_address``: each address
    once, with its best kind (what is dialled or advertised)."""
    best: dict[object, Candidate] = {}
    for candidate in candidates:
        key = candidate.address if by_address else (candidate.address, candidate.kind)
        known = best.get(key)
        if known is None or candidate.priority > known.priority:
            best[key] = candidate
    return tuple(sorted(best.values(), key=lambda c: -c.priority))


def local_candidates(
    *,
    hosts: Sequence[Address] = (),
    reflexive: Sequence[Address] = (),
    mapped: Sequence[Address] = (),
    relayed: Sequence[Address] = (),
) -> tuple[Candidate, ...]:
    """This side's candidates (CAND-3.1): its sockets' addresses (``hosts``; a wildcard is no
    candidate), what rendezvous nodes saw (``reflexive``), port mappings, TURN relayed addresses."""
    out: list[Candidate | None] = []
    for position, address in enumerate(hosts):
        kind = CandidateKind.HOST
        if is_ip(address[0]) and parse_ip(address[0]).version == 6 and classify(address[0]) is AddressClass.PUBLIC:
            kind = CandidateKind.IPV6_GLOBAL
        out.append(make(address, kind, position))
    out += [make(a, CandidateKind.SERVER_REFLEXIVE, i) for i, a in enumerate(reflexive)]
    out += [make(a, CandidateKind.PORT_MAPPED, i) for i, a in enumerate(mapped)]
    out += [make(a, CandidateKind.RELAYED, i) for i, a in enumerate(relayed)]
    return _unique(c for c in out if c is not None)


def advertise(ours: Sequence[Candidate], limit: int = MAX_ADVERTISED) -> tuple[Address, ...]:
    """The addresses to put in REGISTER and LOOKUP (CAND-4.1): every candidate but the server-
    reflexive ones (the node adds what it sees itself), by priority, at most ``limit``."""
    kept = (c for c in ours if c.kind is not CandidateKind.SERVER_REFLEXIVE)
    return tuple(c.address for c in _unique(kept, by_address=True))[:limit]


def remote_candidates(observed: Address | None, candidates: Sequence[Address]) -> tuple[Candidate, ...]:
    """A peer's candidates from a FOUND or INTRODUCTION (CAND-3.2): its observed address is
    server-reflexive; of the plain addresses it listed, a non-public one is a host candidate, a
    public IPv6 one IPV6_GLOBAL, a public IPv4 one equal to the observed address a (public) host,
    any other public IPv4 one UNTYPED.  Non-candidates (CAND-2.3) are dropped; at most
    ``MAX_ADVERTISED`` listed ones are read."""
    out: list[Candidate | None] = []
    if observed is not None:
        out.append(make(observed, CandidateKind.SERVER_REFLEXIVE))
    for position, address in enumerate(candidates[:MAX_ADVERTISED], start=1):
        if not is_ip(address[0]):
            continue
        cls, version = classify(address[0]), unmapped(parse_ip(address[0])).version
        if cls is not AddressClass.PUBLIC:
            kind = CandidateKind.HOST
        elif version == 6:
            kind = CandidateKind.IPV6_GLOBAL
        elif observed is not None and is_ip(observed[0]) and _same(address, observed):
            kind = CandidateKind.HOST
        else:
            kind = CandidateKind.UNTYPED
        out.append(make(address, kind, position))
    return _unique(c for c in out if c is not None)


def _same(a: Address, b: Address) -> bool:
    return a[1] == b[1] and parse_ip(a[0]) == parse_ip(b[0])


class PeerCandidates:
    """One peer's candidates: those signalled (``update``) and the peer-reflexive ones learnt
    from its packets (``learn_peer_reflexive``, CAND-5)."""

    def __init__(self, observed: Address | None = None, candidates: Sequence[Address] = ()) -> None:
        self._signalled = remote_candidates(observed, candidates)
        self._reflexive: list[Candidate] = []

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        """All of them, by priority, highest first."""
        return _unique((*self._signalled, *self._reflexive))

    def update(self, observed: Address | None, candidates: Sequence[Address]) -> None:
        """A newer FOUND or INTRODUCTION: it replaces what was signalled; peer-reflexive ones stay."""
        self._signalled = remote_candidates(observed, candidates)

    def learn_peer_reflexive(self, address: Address) -> Candidate | None:
        """An authenticated packet of this peer came from ``address`` (CAND-5.1).  The new
        candidate, to pair and probe; None if it is known already or can never be a candidate.
        At most ``MAX_PEER_REFLEXIVE`` are kept, the oldest dropped first (CAND-5.2).

        Only an address from which a packet **authenticated** as this peer's may come here: any
        other would let a forger direct our probes (spec/paths.md PTH-3.6)."""
        candidate = make(address, CandidateKind.PEER_REFLEXIVE)
        if candidate is None or any(c.address == candidate.address for c in self.candidates):
            return None
        self._reflexive.append(candidate)
        del self._reflexive[:-MAX_PEER_REFLEXIVE]
        return candidate


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Base:
    """A local socket a side can dial from: ``key`` names it for the caller, ``address`` is what it
    is bound to (the host may be a wildcard)."""

    key: Hashable
    address: Address


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Pair:
    base: Hashable
    remote: Candidate


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Skipped:
    remote: Candidate
    reason: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Pairing:
    """What to dial, in this order (``pairs``), and what not, with the reason (``skipped``)."""

    pairs: tuple[Pair, ...]
    skipped: tuple[Skipped, ...]


def _ip(address: Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return unmapped(parse_ip(address[0]))


def _family_of(base: Base) -> int | None:
    return _ip(base.address).version if is_ip(base.address[0]) else None


def pair(
    bases: Sequence[Base],
    ours: Sequence[Candidate],
    theirs: Sequence[Candidate],
    *,
    networks: Sequence[IPNetwork] = (),
    limit: int = MAX_PAIRS,
) -> Pairing:
    """Which of ``theirs`` to dial from which of ``bases`` (CAND-4): the pairs by the remote
    candidate's priority (then the bases' order), at most ``limit``.

    ``ours`` are this side's candidates (``local_candidates``): its server-reflexive and public
    addresses tell whether the peer is behind the same NAT (CAND-4.2).  ``networks`` are the
    networks this side's interfaces are on (address and prefix), when the caller knows them: a
    candidate in one of them is on the same link.
    """
    own = {c.address for c in ours} | {b.address for b in bases}
    # The addresses this side shows the internet: not a TURN server's (another client's too).
    public_ips = {_ip(c.address) for c in ours if c.kind is not CandidateKind.RELAYED and c.scope is Scope.GLOBAL}
    our_reflexive = [c for c in ours if c.kind is CandidateKind.SERVER_REFLEXIVE]
    their_reflexive = [c for c in theirs if c.kind is CandidateKind.SERVER_REFLEXIVE]
    same_nat = any(_ip(c.address) in public_ips for c in their_reflexive)
    # A rendezvous node saw both sides at non-public addresses: all three share a private network.
    same_private = any(c.scope is Scope.SITE for c in our_reflexive) and any(
        c.scope is Scope.SITE for c in their_reflexive
    )
    # A node saw both over loopback: both run on the node's host.
    same_host = any(c.scope is Scope.HOST for c in our_reflexive) and any(
        c.scope is Scope.HOST for c in their_reflexive
    )
    have_ipv6 = any(ip.version == 6 for ip in public_ips)
    link_local_v4 = any(c.version == 4 and c.address_class is AddressClass.LINK_LOCAL for c in ours)

    def refusal(c: Candidate) -> str | None:
        """Why ``c`` may not be dialled from any base (CAND-4.2, 4.3), None if it may."""
        ip = _ip(c.address)
        on_link = any(ip.version == n.version and ip in n for n in networks)
        if c.address in own:
            return "one of our own addresses"
        if c.kind is CandidateKind.PEER_REFLEXIVE:
            return None  # the peer's packets came from there (CAND-5.1)
        if c.scope is Scope.GLOBAL:
            return None if c.version == 4 or have_ipv6 else "IPv6, and we have no public IPv6 address"
        if c.scope is Scope.SITE:
            ok = same_nat or same_private or on_link
            return None if ok else f"{c.address_class.value}, and we share neither a public address nor a network"
        if c.scope is Scope.LINK:
            if c.version == 6:
                return "IPv6 link-local: the wire carries no zone"
            return None if on_link or (link_local_v4 and same_nat) else "link-local, and not on our link"
        if c.scope is Scope.HOST:
            return None if same_host else "loopback, and the peer is not on our host"
        return "never a candidate"

    pairs: list[Pair] = []
    skipped: list[Skipped] = []
    for c in _unique(theirs, by_address=True):
        why = refusal(c)
        if why is not None:
            skipped.append(Skipped(remote=c, reason=why))
            continue
        fitting = [b for b in bases if _family_of(b) == c.version and _base_reaches(b, c)]
        if not fitting:
            skipped.append(Skipped(remote=c, reason=f"no IPv{c.version} socket that reaches it"))
            continue
        for base in fitting:
            if len(pairs) < limit:
                pairs.append(Pair(base=base.key, remote=c))
            else:
                skipped.append(Skipped(remote=c, reason=f"over the limit of {limit} pairs"))
                break
    return Pairing(pairs=tuple(pairs), skipped=tuple(skipped))


def _base_reaches(base: Base, remote: Candidate) -> bool:
    """A socket bound to a loopback address reaches only loopback addresses (CAND-4.3)."""
    return classify(base.address[0]) is not AddressClass.LOOPBACK or remote.scope is Scope.HOST
