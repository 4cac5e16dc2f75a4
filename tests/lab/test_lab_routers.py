"""The lab's router kinds behave like the routers they model, checked with plain sockets.

* ``eim``: one inside socket is seen from the same public address:port by two internet hosts;
  an unsolicited datagram from a third host is dropped, replies from contacted hosts pass; two
  ``eim`` peers punch a hole to each other by sending at the same time.
* ``random``: the same inside socket is seen with a different port by each host, and the same
  simultaneous punch (no port prediction) fails.
* ``udp-blocked``: no UDP reaches the internet; TCP does, NATed.
* ``none``: the peer's own public address, reachable by anyone.

``pytest -s`` prints what each kind did as a table (the NAT issue grows it into a matrix).
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from typing import Any

import netlab
import pytest

pytestmark = [*netlab.MARKS, pytest.mark.pure_core]  # no core code: once is enough

#: kind -> what was observed, filled in by the tests, printed at the end of the module
FINDINGS: dict[str, dict[str, str]] = {kind: {} for kind in netlab.KINDS}


@pytest.fixture(scope="module", autouse=True)
def summary() -> Iterator[None]:
    yield
    columns = ("mapping", "unsolicited", "reply", "punch", "tcp", "ipv6", "hairpin")
    widths = [max(len(c), *(len(seen.get(c, "-")) for seen in FINDINGS.values())) for c in columns]
    print("\nlab router kinds, as observed:")
    print(f"  {'kind':<12}" + "  ".join(f"{c:<{w}}" for c, w in zip(columns, widths, strict=True)))
    for kind, seen in FINDINGS.items():
        print(f"  {kind:<12}" + "  ".join(f"{seen.get(c, '-'):<{w}}" for c, w in zip(columns, widths, strict=True)))


@pytest.fixture
def lab() -> Iterator[netlab.Lab]:
    with netlab.lab() as made:
        yield made


def udp_socket(lab: netlab.Lab, peer: netlab.Peer) -> socket.socket:
    sock = lab.socket(peer.ns)
    sock.bind((peer.address, 0))
    sock.settimeout(1.0)
    return sock


def seen_from(sock: socket.socket, reflector: tuple[str, int]) -> tuple[str, int]:
    """The (address, port) a reflector saw this socket's datagram come from."""
    sock.sendto(b"who am i", reflector)
    data, source = sock.recvfrom(2048)
    assert source[:2] == reflector
    address, port = data.decode().split()
    return address, int(port)


def receive(sock: socket.socket, wait: float) -> list[tuple[bytes, tuple[Any, ...]]]:
    """Everything the socket receives within ``wait`` seconds."""
    got = []
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            break
        got.append(sock.recvfrom(2048))
    return got


def punch(
    a: socket.socket, a_public: tuple[str, int], b: socket.socket, b_public: tuple[str, int]
) -> tuple[bool, bool]:
    """Both sides send to the other's public mapping at the same time for 1 s; who heard the other."""
    heard_a = heard_b = False
    for _ in range(20):
        a.sendto(b"punch from a", b_public)
        b.sendto(b"punch from b", a_public)
        ready = select.select([a, b], [], [], 0.05)[0]
        for sock in ready:
            data, _ = sock.recvfrom(2048)
            heard_a |= sock is a and data == b"punch from b"
            heard_b |= sock is b and data == b"punch from a"
        if heard_a and heard_b:
            break
    return heard_a, heard_b


def test_eim_maps_one_socket_to_one_public_address_and_filters_unsolicited(lab: netlab.Lab) -> None:
    one, two, third = lab.server("one"), lab.server("two"), lab.server("third")
    a = lab.peer("a", "eim")
    assert a.router is not None
    sock = udp_socket(lab, a)
    seen_one = seen_from(sock, lab.reflector(one))  # the reply passing is the "reply" check
    seen_two = seen_from(sock, lab.reflector(two))
    assert seen_one == seen_two
    assert seen_one[0] == a.router.public != a.address
    # a third host, never contacted, sends to the mapping: dropped
    stranger = lab.socket(third.ns)
    stranger.bind((third.address, 4000))
    stranger.sendto(b"unsolicited", seen_one)
    assert receive(sock, 0.5) == []
    # control: a contacted host sending on its own to the same mapping gets through
    contacted = lab.socket(one.ns)
    contacted.bind((one.address, 3479 + 1))
    sock.sendto(b"open", (one.address, 3480))
    assert contacted.recvfrom(100)[1] == seen_one
    contacted.sendto(b"later", seen_one)
    assert receive(sock, 0.5) == [(b"later", (one.address, 3480))]
    FINDINGS["eim"].update(mapping="same port, 2 hosts", unsolicited="dropped", reply="passes")


def test_eim_peers_punch_a_hole_with_simultaneous_sends(lab: netlab.Lab) -> None:
    stun = lab.reflector(lab.server("stun"))
    a, b = lab.peer("a", "eim"), lab.peer("b", "eim")
    sa, sb = udp_socket(lab, a), udp_socket(lab, b)
    pa, pb = seen_from(sa, stun), seen_from(sb, stun)
    # before either side sends to the other, b's router drops a's datagram
    sa.sendto(b"too early", pb)
    assert receive(sb, 0.3) == []
    assert punch(sa, pa, sb, pb) == (True, True)
    FINDINGS["eim"]["punch"] = "works"


def test_random_maps_per_destination_and_punching_fails(lab: netlab.Lab) -> None:
    one, two = lab.reflector(lab.server("one")), lab.reflector(lab.server("two"))
    a, b = lab.peer("a", "random"), lab.peer("b", "random")
    assert a.router is not None
    sa = udp_socket(lab, a)
    seen_one, seen_two = seen_from(sa, one), seen_from(sa, two)
    assert seen_one[0] == seen_two[0] == a.router.public
    assert seen_one[1] != seen_two[1]
    FINDINGS["random"].update(mapping="new port per host", reply="passes")
    # each learns its mapping from one reflector, then both send to what the other learned
    sb = udp_socket(lab, b)
    pa, pb = seen_one, seen_from(sb, one)
    assert punch(sa, pa, sb, pb) == (False, False)
    FINDINGS["random"]["punch"] = "fails (no prediction)"
    # the same inbound filter as eim: a host a never contacted is dropped
    third = lab.server("third")
    stranger = lab.socket(third.ns)
    stranger.bind((third.address, 4000))
    stranger.sendto(b"unsolicited", seen_one)
    assert receive(sa, 0.3) == []
    FINDINGS["random"]["unsolicited"] = "dropped"


def test_udp_blocked_passes_tcp_only(lab: netlab.Lab) -> None:
    server = lab.server("web")
    a = lab.peer("a", "udp-blocked")
    assert a.router is not None
    # UDP: the reflector never hears it, nothing comes back
    heard = lab.socket(server.ns)
    heard.bind((server.address, 3478))
    sock = udp_socket(lab, a)
    for _ in range(5):
        sock.sendto(b"udp?", (server.address, 3478))
    assert receive(heard, 0.5) == []
    assert receive(sock, 0.1) == []
    FINDINGS["udp-blocked"].update(mapping="UDP dropped", punch="impossible")
    # TCP: connects, NATed to the router's address
    listener = lab.socket(server.ns, socket.SOCK_STREAM)
    listener.bind((server.address, 443))
    listener.listen()
    listener.settimeout(2)
    client = lab.socket(a.ns, socket.SOCK_STREAM)
    client.settimeout(2)
    client.connect((server.address, 443))
    conn, source = listener.accept()
    with conn:
        client.sendall(b"over tcp")
        assert conn.recv(100) == b"over tcp"
    assert source[0] == a.router.public
    FINDINGS["udp-blocked"]["tcp"] = "passes, NATed"


def test_none_is_reachable_directly(lab: netlab.Lab) -> None:
    stranger = lab.server("stranger")
    a = lab.peer("a", "none")
    assert a.router is None and a.public == a.address
    sock = udp_socket(lab, a)
    sent_from = lab.socket(stranger.ns)
    sent_from.bind((stranger.address, 4000))
    sent_from.sendto(b"unsolicited", (a.address, sock.getsockname()[1]))
    assert receive(sock, 1.0) == [(b"unsolicited", (stranger.address, 4000))]
    assert seen_from(sock, lab.reflector(lab.server("stun"))) == sock.getsockname()
    FINDINGS["none"].update(mapping="public, no NAT", unsolicited="passes", reply="passes")


@pytest.mark.parametrize("kind", ["cgn-eim", "cgn-random"])
def test_a_carrier_nat_in_front_of_a_home_nat(lab: netlab.Lab, kind: netlab.Kind) -> None:
    """Two NATs in a row: the internet sees the carrier's address; the carrier's mapping decides
    whether two hosts see one port (cgn-eim) or two (cgn-random); the inbound filters hold."""
    one, two, third = lab.server("one"), lab.server("two"), lab.server("third")
    a = lab.peer("a", kind)
    assert a.router is not None
    sock = udp_socket(lab, a)
    seen_one, seen_two = seen_from(sock, lab.reflector(one)), seen_from(sock, lab.reflector(two))
    assert seen_one[0] == seen_two[0] == a.router.public == a.public
    if kind == "cgn-eim":
        assert seen_one[1] == seen_two[1]
        mapping = "same port, 2 hosts (2 NATs)"
    else:
        assert seen_one[1] != seen_two[1]
        mapping = "new port per host (carrier)"
    stranger = lab.socket(third.ns)
    stranger.bind((third.address, 4000))
    stranger.sendto(b"unsolicited", seen_one)
    assert receive(sock, 0.5) == []
    FINDINGS[kind].update(mapping=mapping, unsolicited="dropped", reply="passes", ipv6="not routed")


@pytest.mark.parametrize("kind", [k for k in netlab.KINDS if not k.startswith("cgn-")])  # carriers route no IPv6
def test_ipv6_global_addresses_behind_each_router(lab: netlab.Lab, kind: netlab.Kind) -> None:
    """IPv6 (2001:2::/48): no NAT; behind a router, the same stateful filter; udp-blocked still drops UDP."""
    stun, third = lab.server("stun"), lab.server("third")
    reflector = lab.reflector(stun, family=socket.AF_INET6)
    peer = lab.peer("a", kind)
    sock = lab.socket(peer.ns, family=socket.AF_INET6)
    sock.bind((peer.address6, 0))
    sock.settimeout(1.0)
    port = sock.getsockname()[1]
    stranger = lab.socket(third.ns, family=socket.AF_INET6)
    stranger.bind((third.address6, 4000))
    if kind == "udp-blocked":
        sock.sendto(b"udp?", reflector)
        assert receive(sock, 0.5) == []
        listener = lab.socket(stun.ns, socket.SOCK_STREAM, socket.AF_INET6)
        listener.bind((stun.address6, 443))
        listener.listen()
        listener.settimeout(2)
        client = lab.socket(peer.ns, socket.SOCK_STREAM, socket.AF_INET6)
        client.settimeout(2)
        client.connect((stun.address6, 443))
        conn, source = listener.accept()
        conn.close()
        assert source[0] == peer.address6  # no NAT66
        FINDINGS[kind]["ipv6"] = "TCP only, no NAT"
        return
    assert seen_from(sock, reflector) == (peer.address6, port)  # no NAT66: the peer's own address
    stranger.sendto(b"unsolicited", (peer.address6, port))
    if kind == "none":
        assert receive(sock, 0.5) == [(b"unsolicited", (third.address6, 4000, 0, 0))]
        FINDINGS[kind]["ipv6"] = "global, open"
    else:
        assert receive(sock, 0.5) == []
        FINDINGS[kind]["ipv6"] = "global, inbound filtered"


def test_two_peers_behind_one_router_share_its_address_without_hairpinning(lab: netlab.Lab) -> None:
    stun = lab.reflector(lab.server("stun"))
    a = lab.peer("a", "eim")
    assert a.router is not None
    b = lab.peer("b", behind=a.router)
    assert b.router is a.router and b.kind == "eim" and b.address != a.address
    sa, sb = udp_socket(lab, a), udp_socket(lab, b)
    pa, pb = seen_from(sa, stun), seen_from(sb, stun)
    assert pa[0] == pb[0] == a.router.public
    # inside: straight from LAN to LAN through the router, not NATed
    sa.sendto(b"next door", sb.getsockname())
    assert receive(sb, 0.5) == [(b"next door", sa.getsockname())]
    # to the other's public mapping: the router does not reflect it back inside
    sa.sendto(b"hairpin", pb)
    assert receive(sb, 0.3) == []
    FINDINGS["eim"]["hairpin"] = "no (LAN to LAN yes)"
