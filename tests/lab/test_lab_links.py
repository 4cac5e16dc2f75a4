"""The lab's links and paths: delay, loss and rate on a link; cutting and restoring a path; per-router timeouts.

Delay and loss come from ``tc ... netem`` where the kernel has it, else from the lab's
userspace wire (netlab.py says which; ``P2POS_LAB_WIRE=1`` forces the wire): the checks are
the same either way.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator

import netlab
import pytest

pytestmark = [*netlab.MARKS, pytest.mark.pure_core]  # no core code: once is enough


@pytest.fixture
def lab() -> Iterator[netlab.Lab]:
    with netlab.lab() as made:
        yield made


def echo_rtts(sock: socket.socket, target: tuple[str, int], count: int) -> list[float | None]:
    """Round-trip times of ``count`` numbered UDP echoes (None: lost), each waited for 0.3 s at most."""
    rtts: list[float | None] = []
    for n in range(count):
        sent = time.monotonic()
        sock.sendto(n.to_bytes(4, "big"), target)
        rtt = None
        while (left := sent + 0.3 - time.monotonic()) > 0 and select.select([sock], [], [], left)[0]:
            data, _ = sock.recvfrom(2048)
            if data[:4] == n.to_bytes(4, "big"):
                rtt = time.monotonic() - sent
                break
        rtts.append(rtt)
    return rtts


def echoed(sock: socket.socket, target: tuple[str, int], count: int) -> int:
    """How many of ``count`` numbered datagrams sent at once come back (until 0.5 s pass without one)."""
    for n in range(count):
        sock.sendto(n.to_bytes(4, "big"), target)
    back: set[bytes] = set()
    while len(back) < count and select.select([sock], [], [], 0.5)[0]:
        back.add(sock.recvfrom(2048)[0])
    return len(back)


def udp_echo(lab: netlab.Lab, server: netlab.Server, port: int = 7) -> tuple[str, int]:
    sock = lab.socket(server.ns)
    sock.bind((server.address, port))
    sock.settimeout(0.05)

    def serve(stopping: threading.Event) -> None:
        while not stopping.is_set():
            try:
                data, source = sock.recvfrom(65536)
                sock.sendto(data, source)
            except TimeoutError:
                continue
            except OSError:
                return

    lab.background(serve, "echo")
    return (server.address, port)


def peer_socket(lab: netlab.Lab, peer: netlab.Peer) -> socket.socket:
    sock = lab.socket(peer.ns)
    sock.bind((peer.address, 0))
    return sock


def test_delay_shows_as_round_trip_time(lab: netlab.Lab) -> None:
    echo = udp_echo(lab, lab.server("echo"))
    slow = lab.peer("slow", "eim", wan=netlab.Impairment(delay_ms=25))
    fast = lab.peer("fast", "eim")
    slow_rtts = echo_rtts(peer_socket(lab, slow), echo, 10)
    fast_rtts = echo_rtts(peer_socket(lab, fast), echo, 10)
    assert None not in slow_rtts and None not in fast_rtts
    assert min(r for r in slow_rtts if r is not None) >= 0.050  # 25 ms each way
    assert sorted(r for r in slow_rtts if r is not None)[5] < 0.2  # the median: 50 ms and some
    assert min(r for r in fast_rtts if r is not None) < 0.025  # control: the same path without delay
    # changed at run time: gone, then back
    slow.wan.impair(None)
    assert min(r for r in echo_rtts(peer_socket(lab, slow), echo, 5) if r is not None) < 0.025
    slow.wan.impair(netlab.Impairment(delay_ms=25))
    assert min(r for r in echo_rtts(peer_socket(lab, slow), echo, 5) if r is not None) >= 0.050
    print(f"\n25 ms per direction: rtt {min(r for r in slow_rtts if r is not None) * 1000:.1f} ms", end="")


def test_loss_shows_and_goes(lab: netlab.Lab) -> None:
    echo = udp_echo(lab, lab.server("echo"))
    lossy = lab.peer("lossy", "none", wan=netlab.Impairment(loss_pct=30))
    sock = peer_socket(lab, lossy)
    lost = 200 - echoed(sock, echo, 200)
    # each echo crosses the link twice: 1 - 0.7 ** 2 = 51 % expected; 200 tries put it well inside
    assert 60 <= lost <= 145, lost
    lossy.wan.impair(None)
    assert echoed(sock, echo, 200) == 200
    print(f"\n30 % loss per direction: {lost}/200 echoes lost", end="")


def test_rate_limits_throughput(lab: netlab.Lab) -> None:
    server = lab.server("sink")
    narrow = lab.peer("narrow", "eim", wan=netlab.Impairment(rate_kbit=800))
    sink = lab.socket(server.ns)
    sink.bind((server.address, 9))
    sock = peer_socket(lab, narrow)
    # 60 datagrams of 1000 bytes = 480 kbit: at least 0.6 s at 800 kbit/s (none lost: under netem's limit)
    started = time.monotonic()
    for _ in range(60):
        sock.sendto(bytes(1000), (server.address, 9))
    sink.settimeout(3)
    for _ in range(60):
        sink.recvfrom(2048)
    took = time.monotonic() - started
    assert 0.55 <= took < 2.5, took


def test_cut_and_restore_udp_ten_times_while_tcp_passes(lab: netlab.Lab) -> None:
    stun, relay = lab.server("stun"), lab.server("relay")
    reflector = lab.reflector(stun)
    a, b = lab.peer("a", "eim"), lab.peer("b", "eim")
    assert a.router is not None and b.router is not None
    sa, sb = peer_socket(lab, a), peer_socket(lab, b)
    sa.settimeout(1)
    sb.settimeout(1)
    mapped = []
    for sock in (sa, sb):
        sock.sendto(b"?", reflector)
        address, port = sock.recvfrom(100)[0].decode().split()
        mapped.append((address, int(port)))
    pa, pb = mapped
    listener = lab.socket(relay.ns, socket.SOCK_STREAM)
    listener.bind((relay.address, 443))
    listener.listen()
    listener.settimeout(2)
    tcp = lab.socket(a.ns, socket.SOCK_STREAM)
    tcp.settimeout(2)
    tcp.connect((relay.address, 443))
    conn, _ = listener.accept()
    conn.settimeout(2)

    def direct_works() -> bool:
        """A datagram each way across the direct path, punched again if needed (0.5 s at most)."""
        heard: set[bytes] = set()
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline and len(heard) < 2:
            sa.sendto(b"a", pb)
            sb.sendto(b"b", pa)
            for sock in select.select([sa, sb], [], [], 0.05)[0]:
                heard.add(sock.recvfrom(100)[0])
        return heard == {b"a", b"b"}

    assert direct_works()
    for round_ in range(10):
        cut = lab.cut(a.router, b.router, "udp")
        assert not direct_works(), f"round {round_}: UDP passed a cut path"
        tcp.sendall(b"relay still there %d" % round_)  # the relay's TCP is not cut
        assert conn.recv(100) == b"relay still there %d" % round_
        sa.sendto(b"stun still there", reflector)  # nor is UDP to other hosts
        assert sa.recvfrom(100)[0].decode() == f"{pa[0]} {pa[1]}"
        cut.restore()
        assert direct_works(), f"round {round_}: restoring did not bring the path back"
    conn.close()


def test_conntrack_udp_timeouts_are_per_router(lab: netlab.Lab) -> None:
    server = lab.server("peer")
    a, b = lab.peer("a", "eim"), lab.peer("b", "eim")
    assert a.router is not None and b.router is not None
    default = netlab.sysctl_get(b.router.ns, "net.netfilter.nf_conntrack_udp_timeout")
    a.router.set_udp_timeouts(udp=2, stream=2)
    assert netlab.sysctl_get(a.router.ns, "net.netfilter.nf_conntrack_udp_timeout") == "2"
    assert netlab.sysctl_get(a.router.ns, "net.netfilter.nf_conntrack_udp_timeout_stream") == "2"
    assert netlab.sysctl_get(b.router.ns, "net.netfilter.nf_conntrack_udp_timeout") == default
    assert int(default) > 3
    remote = lab.socket(server.ns)
    remote.bind((server.address, 5000))
    remote.settimeout(1)
    opened = {}
    for peer in (a, b):
        sock = peer_socket(lab, peer)
        sock.settimeout(1.0)  # generous: a loaded machine
        sock.sendto(b"open", (server.address, 5000))
        _, mapping = remote.recvfrom(100)
        opened[peer.name] = (sock, mapping)
    time.sleep(0.2)
    for sock, mapping in opened.values():  # a reply well inside both timeouts passes
        remote.sendto(b"soon", mapping)
        assert sock.recvfrom(100)[0] == b"soon"
    time.sleep(4.5)  # past a's 2 s timeout, well inside b's default
    late: dict[str, bytes | None] = {}
    for name, (sock, mapping) in opened.items():
        remote.sendto(b"late", mapping)
        try:
            late[name] = sock.recvfrom(100)[0]
        except TimeoutError:
            late[name] = None
    assert late == {"a": None, "b": b"late"}


def test_cut_covers_ipv6_between_sites(lab: netlab.Lab) -> None:
    """A cut between two sites drops their IPv6 too (prefixes: the router's /56), UDP only."""
    a, b = lab.peer("a", "eim"), lab.peer("b", "none")
    assert a.router is not None
    sa, sb = lab.socket(a.ns, family=socket.AF_INET6), lab.socket(b.ns, family=socket.AF_INET6)
    sa.bind((a.address6, 0))
    sb.bind((b.address6, 0))
    sb.settimeout(0.3)

    def passes() -> bool:
        """a's datagram reaches b and b's answer reaches a (through a's stateful filter)."""
        sa.sendto(b"ping", sb.getsockname()[:2])
        try:
            _, source = sb.recvfrom(100)
        except TimeoutError:
            return False
        sb.sendto(b"pong", source[:2])
        return bool(select.select([sa], [], [], 0.3)[0]) and sa.recv(100) == b"pong"

    assert passes()
    for _ in range(3):
        cut = lab.cut(a.router, b, "udp")
        assert not passes()
        cut.restore()
        assert passes()
    tcp_cut = lab.cut(a, b, "tcp")  # a TCP cut leaves UDP alone
    assert passes()
    tcp_cut.restore()


@pytest.mark.parametrize("wan", [None, netlab.Impairment(delay_ms=1)], ids=["veth", "impaired"])
def test_capture_sees_what_crosses_the_internet(lab: netlab.Lab, wan: netlab.Impairment | None) -> None:
    """The capture used for "only ciphertext on the relay path": it sees a marker sent in clear, both ways."""
    server = lab.server("relay")
    a = lab.peer("a", "eim", wan=wan)
    capture = lab.capture(lab.internet)
    far = lab.socket(server.ns)
    far.bind((server.address, 9000))
    far.settimeout(2)
    sock = peer_socket(lab, a)
    sock.settimeout(2)
    sock.sendto(b"plain marker out", (server.address, 9000))
    _, source = far.recvfrom(100)
    far.sendto(b"plain marker back", source)
    sock.recv(100)
    sock.sendto(bytes(b ^ 0x5A for b in b"hidden marker"), (server.address, 9000))
    far.recv(100)
    assert netlab.wait_until(lambda: capture.contains(b"plain marker back"), timeout=2)
    assert capture.contains(b"plain marker out")
    assert not capture.contains(b"hidden marker")
