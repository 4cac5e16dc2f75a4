"""What the daemon dials after a lookup (adapters/rendezvous.py ``Rendezvous.pairing``,
spec/candidates.md §4): its sockets and registrations turned into candidates and bases."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from p2pos.adapters.rendezvous import Bootstrap, Registration, Rendezvous

Address = tuple[str, int]


def transport(address: Address, kind: str | None = None) -> SimpleNamespace:
    made = SimpleNamespace(local_address=address)
    if kind is not None:
        made.kind = kind
    return made


def rendezvous(transports: list[SimpleNamespace], observed: list[Address | None]) -> Rendezvous:
    def via(local: int) -> str:
        return str(getattr(transports[local], "kind", "udp"))

    node = SimpleNamespace(transports=transports, via=via)
    made = Rendezvous(cast(Any, node))
    for i, seen in enumerate(observed):
        bootstrap = Bootstrap(f"198.18.0.{i + 1}:7000", None, f"198.18.0.{i + 1}", 7000)
        client = SimpleNamespace(observed=seen)
        made.registrations.append(Registration(bootstrap, (bootstrap.host, 7000), cast(Any, client)))
    return made


LAN = [
    transport(("10.1.0.2", 4000)),  # 0: UDP on the LAN
    transport(("10.1.0.2", 4000), "quic"),  # 1: QUIC sharing it
    transport(("relay:198.18.0.9", 8080), "relay"),  # 2: a relay link
    transport(("198.18.0.7", 49152), "turn"),  # 3: a TURN allocation
]


def dialled(rdv: Rendezvous, observed: Address, candidates: tuple[Address, ...]) -> list[tuple[object, Address]]:
    return [(p.base, p.remote.address) for p in rdv.pairing(observed, candidates).pairs]


def test_advertised_candidates_are_the_sockets_and_the_turn_relayed_address() -> None:
    rdv = rendezvous(LAN, [("198.18.1.2", 4000)])
    assert rdv._candidates() == (("10.1.0.2", 4000), ("198.18.0.7", 49152))
    assert rendezvous([transport(("0.0.0.0", 4000))], [])._candidates() == ()


def test_a_peer_behind_another_router_gets_no_dial_to_its_lan() -> None:
    rdv = rendezvous(LAN, [("198.18.1.2", 4000)])
    assert dialled(rdv, ("198.18.2.2", 5000), (("10.2.0.2", 5000), ("198.18.0.7", 49153))) == [
        (0, ("198.18.2.2", 5000)),
        (0, ("198.18.0.7", 49153)),  # its TURN relayed address: public, untyped
    ]


def test_a_peer_behind_our_router_is_dialled_on_its_lan_first() -> None:
    rdv = rendezvous(LAN, [None, ("198.18.1.2", 4000)])  # the second node sees us
    assert dialled(rdv, ("198.18.1.2", 5000), (("10.1.1.2", 5000),)) == [
        (0, ("10.1.1.2", 5000)),
        (0, ("198.18.1.2", 5000)),
    ]


def test_a_shared_turn_server_is_no_shared_nat() -> None:
    # The peer is seen at our TURN server's address (it runs there, say): its LAN is not ours.
    rdv = rendezvous(LAN, [("198.18.1.2", 4000)])
    assert dialled(rdv, ("198.18.0.7", 5000), (("10.7.0.2", 5000),)) == [(0, ("198.18.0.7", 5000))]


def test_on_loopback_everything_is_the_same_host() -> None:
    rdv = rendezvous([transport(("127.0.0.1", 4000))], [("127.0.0.1", 4000)])
    assert dialled(rdv, ("127.0.0.1", 5000), (("127.0.0.1", 5000),)) == [(0, ("127.0.0.1", 5000))]
    elsewhere = rendezvous(LAN, [("198.18.1.2", 4000)])
    pairing = elsewhere.pairing(("198.18.2.2", 5000), (("127.0.0.1", 5000),))
    assert [s.remote.address for s in pairing.skipped] == [("127.0.0.1", 5000)]


def _offer(rdv: Rendezvous, observed: Address, candidates: tuple[Address, ...], *, local: int = 0) -> Any:
    """The PunchOffer an introduction through the first registration (on socket ``local``) makes."""
    offers: list[Any] = []
    rdv.on_punch = offers.append
    registration = rdv.registrations[0]
    seen = registration.client.observed
    registration.client = cast(Any, SimpleNamespace(observed=seen, local=local, profile=None, rtt=None))
    punch = cast(Any, SimpleNamespace(ticket=bytes(16)))
    rdv._punch(registration, cast(Any, "peer"), observed, candidates, punch, leading=True)
    (offer,) = offers
    return offer


DUAL = [transport(("10.1.0.2", 4000)), transport(("2001:2:0:101::2", 4001))]


def test_an_ipv6_socket_punches_the_peers_ipv6_addresses_beside_the_introductions_socket() -> None:
    """spec/punch.md §3.9: the IPv6 pairs go to the IPv6 socket's own punch, not the IPv4 one's."""
    rdv = rendezvous(DUAL, [("198.18.1.2", 4000)])
    offer = _offer(rdv, ("198.18.2.2", 5000), (("10.2.0.2", 5000), ("2001:2:0:201::2", 5001)))
    assert offer.local == 0 and offer.observed == ("198.18.2.2", 5000)
    assert offer.candidates == ()  # its LAN is not ours; its IPv6 address is not for an IPv4 socket
    assert offer.others == ((1, (("2001:2:0:201::2", 5001),)),)


def test_no_ipv6_punch_when_only_one_side_has_ipv6() -> None:
    peer_v6 = (("2001:2:0:201::2", 5001),)
    ours_v4_only = rendezvous([DUAL[0]], [("198.18.1.2", 4000)])
    assert _offer(ours_v4_only, ("198.18.2.2", 5000), peer_v6).others == ()
    ours_dual = rendezvous(DUAL, [("198.18.1.2", 4000)])
    assert _offer(ours_dual, ("198.18.2.2", 5000), ()).others == ()


def test_an_introduction_over_ipv6_is_punched_by_its_own_socket_alone() -> None:
    rdv = rendezvous(DUAL, [("2001:2:0:101::2", 4001)])
    offer = _offer(rdv, ("2001:2:0:201::2", 5001), (("2001:2:0:201::3", 5001),), local=1)
    assert offer.local == 1 and offer.candidates == (("2001:2:0:201::3", 5001),) and offer.others == ()
