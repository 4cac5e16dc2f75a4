"""The relay over real sockets (spec/relay.md §3.1, §4, §5, §7): TLS, an HTTP CONNECT proxy, the
``p2pos relay --ws`` command, a flooding peer, and bad input that must never kill the relay."""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import trio
from helpers import make_keys
from relay_helpers import (
    Proxy,
    drive_endpoint,
    identity,
    next_endpoint_event,
    paired_links,
    record,
    start_relay,
    url_of,
)
from tls_helpers import self_signed
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Ping, Pong, Request, TextMessage

from p2pos.proto import Endpoint, PeerId
from p2pos.proto.events import HandshakeCompleted, MessageReceived
from p2pos.proto.relay.server import CloseCode, RelayConfig, RelayCore
from p2pos.proto.rendezvous import messages as rm
from p2pos.transports.http_connect import ProxyError, proxy_for
from p2pos.transports.wsrelay_client import RelayLink
from p2pos.transports.wsrelay_server import RELAY_PATH, SUBPROTOCOL, WsRelayServer

A, B, C, D = (identity(n) for n in "abcd")


def make_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and relay.test), PEM files."""
    return self_signed(folder, "relay.test", dns=["relay.test"], ips=["127.0.0.1"])


async def exchange(link_a: RelayLink, link_b: RelayLink, count: int = 20) -> None:
    for n in range(count):
        assert link_a.send(link_b.identity.peer_id.public_key, record(n))
    with trio.fail_after(10):
        got = [await link_b.receive() for _ in range(count)]
    assert got == [(link_a.identity.peer_id.public_key, record(n)) for n in range(count)]


async def wait_for_error(link: RelayLink) -> None:
    with trio.fail_after(10):
        while not link.last_error:
            await trio.sleep(0.02)


async def test_wss_with_a_self_signed_certificate(tmp_path: Path) -> None:
    """REL-7.1: wss:// runs TLS before the upgrade; the certificate is checked against the host."""
    cert, key = make_cert(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    async with trio.open_nursery() as nursery:
        server = await start_relay(nursery, ssl_context=server_context)
        link_a, link_b = await paired_links(nursery, url_of(server, "wss"), A, B, ssl_context=client_context)
        await exchange(link_a, link_b)
        # A client that does not trust the certificate never gets a link.
        untrusting = RelayLink(url_of(server, "wss"), C, env={})
        await nursery.start(untrusting.run)
        await wait_for_error(untrusting)
        assert not untrusting.ready.is_set() and "CERTIFICATE" in untrusting.last_error.upper()
        nursery.cancel_scope.cancel()


async def test_through_an_http_connect_proxy(tmp_path: Path) -> None:
    """REL-7.2: CONNECT first (h11), then TLS and the upgrade inside the tunnel; env and argument."""
    cert, key = make_cert(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    proxy = Proxy()
    async with trio.open_nursery() as nursery:
        server = await start_relay(nursery, ssl_context=server_context)
        await nursery.start(proxy.serve)
        url = url_of(server, "wss")
        link_a = RelayLink(url, A, proxy=f"http://127.0.0.1:{proxy.port}", ssl_context=client_context, env={})
        link_b = RelayLink(url, B, env={"https_proxy": f"http://127.0.0.1:{proxy.port}"}, ssl_context=client_context)
        for link, other in ((link_a, B), (link_b, A)):
            link.want(other.peer_id.public_key)
            await nursery.start(link.run)
        with trio.fail_after(10):
            await link_a.wait_paired(B.peer_id.public_key)
            await link_b.wait_paired(A.peer_id.public_key)
        await exchange(link_a, link_b)
        assert proxy.tunnels == [f"127.0.0.1:{server.addresses[0][1]}"] * 2
        nursery.cancel_scope.cancel()


async def test_a_proxy_that_refuses_fails_the_attempt() -> None:
    """REL-7.2: an answer other than 2xx fails the attempt (and the link retries later)."""
    proxy = Proxy(refuse=True)
    async with trio.open_nursery() as nursery:
        server = await start_relay(nursery)
        await nursery.start(proxy.serve)
        link = RelayLink(url_of(server), A, proxy=f"127.0.0.1:{proxy.port}", env={})
        await nursery.start(link.run)
        await wait_for_error(link)
        assert not link.ready.is_set() and "403" in link.last_error and len(server.core) == 0
        nursery.cancel_scope.cancel()
    assert issubclass(ProxyError, OSError)


async def test_a_silent_relay_is_given_up() -> None:
    """REL-7.6: a link on which nothing arrives for two ping intervals is dropped and made again."""
    proxy = Proxy()
    async with trio.open_nursery() as nursery:
        server = await start_relay(nursery)
        await nursery.start(proxy.serve)
        link = RelayLink(
            url_of(server), A, proxy=f"127.0.0.1:{proxy.port}", ping_interval=0.3, silence_timeout=2.0, env={}
        )
        await nursery.start(link.run)
        with trio.fail_after(10):
            await link.ready.wait()
        await trio.sleep(1.0)  # pings answered: the link stays
        assert link.connections == 1
        proxy.black_hole()  # the path dies without a FIN or a reset
        with trio.fail_after(10):
            while link.connections < 2:
                await trio.sleep(0.05)
            await link.ready.wait()
        assert "nothing from the relay" in link.last_error
        nursery.cancel_scope.cancel()


def test_proxy_environment_and_no_proxy() -> None:
    """REL-7.2: https_proxy/HTTPS_PROXY unless no_proxy/NO_PROXY lists the host, a suffix or *."""
    env = {"https_proxy": "http://proxy.corp:3128"}
    assert proxy_for("relay.example.net", env) == ("proxy.corp", 3128)
    assert proxy_for("relay.example.net", {"HTTPS_PROXY": "proxy.corp"}) == ("proxy.corp", 80)
    assert proxy_for("relay.example.net", {**env, "no_proxy": "example.net"}) is None
    assert proxy_for("relay.example.net", {**env, "NO_PROXY": ".example.net:443"}) is None
    assert proxy_for("relay.example.net", {**env, "no_proxy": "other.net, *"}) is None
    assert proxy_for("relay.example.net", {**env, "no_proxy": "ample.net"}) == ("proxy.corp", 3128)
    assert proxy_for("relay.example.net", {}) is None
    with pytest.raises(ValueError):
        proxy_for("x", {"https_proxy": "socks5://proxy:1080"})


class MeteredCore(RelayCore):
    """Counts the bytes read from each link."""

    def __init__(self, config: RelayConfig) -> None:
        super().__init__(config, os.urandom)
        self.read: Counter[int] = Counter()

    def charge(self, link_id: int, nbytes: int, now: float) -> None:
        self.read[link_id] += nbytes
        super().charge(link_id, nbytes, now)


async def test_a_flooding_peer_is_held_to_its_quota_while_another_pair_proceeds() -> None:
    """REL-5.3, REL-5.4: the flooder's reads are capped at burst + rate x time; the other pair is unhurt."""
    rate, burst = 256 * 1024, 256 * 1024
    # One source address (loopback) for everyone: the per-address bucket is set out of the way here
    # (tests/relay/test_relay_core.py checks it); this test is about the per-link one.
    core = MeteredCore(RelayConfig(link_rate=rate, link_burst=burst, address_rate=1 << 30, address_burst=1 << 30))
    server = WsRelayServer(core)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, "127.0.0.1", 0)
        flooder, sink = await paired_links(nursery, url_of(server), A, B)
        link_c, link_d = await paired_links(nursery, url_of(server), C, D)
        flood_link = next(lk for lk, conn in server._conns.items() if core.peer_of(lk) == A.peer_id.public_key)
        start = trio.current_time()

        async def flood() -> None:
            big = record(0, 60_000)
            while True:  # as fast as the link's own queue takes them
                await trio.sleep(0 if flooder.send(B.peer_id.public_key, big) else 0.002)

        async def drain() -> None:
            while True:
                await sink.receive()

        nursery.start_soon(flood)
        nursery.start_soon(drain)
        await trio.sleep(0.5)
        # The other pair moves 60 records of 10 kB (within its own link quota) while the flood goes on.
        with trio.fail_after(10):
            for n in range(60):
                assert link_c.send(D.peer_id.public_key, record(n, 10_000))
                assert (await link_d.receive())[1] == record(n, 10_000)
        elapsed = trio.current_time() - start
        await trio.sleep(max(0.0, 1.5 - elapsed))
        elapsed = trio.current_time() - start
        read = core.read[flood_link]
        assert read > burst  # it did flood
        assert read <= burst + rate * elapsed + 2 * 65536  # one read may overshoot the bucket
        nursery.cancel_scope.cancel()


async def _raw(server: WsRelayServer, data: bytes, wait: float = 3.0) -> tuple[bytes, bool]:
    """Send ``data`` on a fresh TCP connection; what comes back, and whether the relay ended it in time."""
    await _settle(server)
    stream = await trio.open_tcp_stream("127.0.0.1", server.addresses[0][1])
    out = b""
    ended = False
    with trio.move_on_after(wait):
        try:
            await stream.send_all(data)
            while chunk := await stream.receive_some(65536):
                out += chunk
        except trio.BrokenResourceError:
            pass  # reset: the relay closed with our bytes unread
        ended = True
    await stream.aclose()
    return out, ended


async def _settle(server: WsRelayServer) -> None:
    """Wait until the relay has seen every earlier connection go (its per-address quotas are free)."""
    with trio.fail_after(10):
        while len(server.core):
            await trio.sleep(0.02)


async def _ws(server: WsRelayServer) -> tuple[trio.SocketStream, WSConnection]:
    """A fresh WebSocket to the relay, upgraded but not authenticated."""
    await _settle(server)
    stream = await trio.open_tcp_stream("127.0.0.1", server.addresses[0][1])
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(ws.send(Request(host="127.0.0.1", target=RELAY_PATH, subprotocols=[SUBPROTOCOL])))
    with trio.fail_after(10):
        while True:
            data = await stream.receive_some(65536)
            if not data:
                raise AssertionError("the relay closed the connection during the upgrade")
            ws.receive_data(data)
            if any(isinstance(e, AcceptConnection) for e in ws.events()):
                return stream, ws


async def _close_code(stream: trio.SocketStream, ws: WSConnection) -> int | None:
    with trio.fail_after(5):
        while data := await stream.receive_some(65536):
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, CloseConnection):
                    return event.code
    return None


async def test_bad_input_never_kills_the_relay() -> None:
    """REL-3.1.2-3.1.4, REL-3.2, REL-4.1, REL-5.1: garbage HTTP, wrong path, text and oversized
    messages, an unauthenticated flood and a slowloris each end only their own connection."""
    config = RelayConfig(auth_timeout=1.0)
    async with trio.open_nursery() as nursery:
        server = await start_relay(nursery, config)
        port = server.addresses[0][1]
        out, ended = await _raw(server, b"\x00\xffNOT HTTP AT ALL\r\n\r\n")
        assert ended and b" 400 " in out[:20]
        wrong_path = b"GET /elsewhere HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        wrong_path += b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        wrong_path += b"Sec-WebSocket-Protocol: p2pos-relay.1\r\n\r\n"
        out, ended = await _raw(server, wrong_path)
        assert ended and b" 404 " in out[:20]
        out, ended = await _raw(server, b"GET / HTTP/1.1\r\nHost: " + b"x" * 100_000)  # a head over h11's limit
        assert ended and (out == b"" or b" 400 " in out[:20])
        # A text message, an oversized binary message: close code 4000.
        stream, ws = await _ws(server)
        await stream.send_all(ws.send(TextMessage(data="hello")))
        assert await _close_code(stream, ws) == CloseCode.PROTOCOL_ERROR
        await stream.aclose()
        stream, ws = await _ws(server)
        await stream.send_all(ws.send(BytesMessage(data=b"\x08" + bytes(70_000))))
        assert await _close_code(stream, ws) == CloseCode.PROTOCOL_ERROR
        await stream.aclose()
        # A ping flood from a peer that never reads: the relay owes one Pong, not one per Ping.
        stream, ws = await _ws(server)
        await stream.send_all(b"".join(ws.send(Ping(payload=b"x" * 100)) for _ in range(20_000)))
        pongs = 0
        while True:
            with trio.move_on_after(0.5) as quiet:
                ws.receive_data(await stream.receive_some(65536))
            if quiet.cancelled_caught:
                break
            pongs += sum(isinstance(e, Pong) for e in ws.events())
        assert 1 <= pongs < 1000  # at most one per batch the relay read, never one per Ping
        await stream.aclose()
        # Unauthenticated flood: 4 at a time per address; the rest are closed before HTTP.
        await _settle(server)
        held = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(8)]
        with trio.fail_after(5):
            while server.core.stats["refused_address_unauthenticated"] < 4:
                await trio.sleep(0.02)
        # Slowloris: one byte every 0.3 s; the 1 s AUTH deadline closes them all.
        slow = held[0]
        with trio.fail_after(5):
            closed = False
            for byte in b"GET /p2pos/relay/v1 HTTP/1.1\r\n":
                try:
                    await slow.send_all(bytes([byte]))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    closed = True
                    break
                await trio.sleep(0.3)
            if not closed:
                closed = await slow.receive_some(100) == b""
        assert closed and server.core.stats["auth_timeouts"] >= 1
        for stream_ in held:
            await stream_.aclose()
        await _settle(server)
        # The relay still serves.
        link_a, link_b = await paired_links(nursery, url_of(server), A, B)
        await exchange(link_a, link_b)
        nursery.cancel_scope.cancel()


async def test_reconnects_after_the_relay_closes_the_link() -> None:
    """REL-4.2, REL-7.3, REL-7.4: a replaced link reconnects with back-off, WANTs again, pairs again."""
    async with trio.open_nursery() as nursery:
        server = await start_relay(nursery)
        link_a, _ = await paired_links(nursery, url_of(server), A, B)
        intruder = RelayLink(url_of(server), A, env={})  # the same identity: replaces link_a's link
        await nursery.start(intruder.run)
        with trio.fail_after(10):
            await intruder.ready.wait()
            while link_a.connections < 2:  # link_a comes back (and replaces the intruder in turn)
                await trio.sleep(0.05)
            await link_a.wait_paired(B.peer_id.public_key)
        assert server.core.stats["links_replaced"] >= 2
        nursery.cancel_scope.cancel()


def _start_command(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "P2POS_HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "p2pos.adapters.cli", "relay", "--ws", "127.0.0.1:0", *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = re.match(r"relay listening on (wss?://127\.0\.0\.1:\d+/p2pos/relay/v1)$", line.strip())
    if found is None:
        proc.kill()
        raise AssertionError(f"unexpected first line {line!r}: {proc.stderr.read() if proc.stderr else ''}")
    return proc, found[1]


@pytest.mark.parametrize("tls", [False, True])
async def test_the_relay_command_serves_two_peers(tmp_path: Path, tls: bool) -> None:
    """`p2pos relay --ws` (with --listen, and with --tls-cert/--tls-key) as a real process."""
    extra = ["--listen", "127.0.0.1:0"]
    context = None
    if tls:
        cert, key = make_cert(tmp_path)
        extra = ["--tls-cert", str(cert), "--tls-key", str(key)]
        context = ssl.create_default_context(cafile=str(cert))
    proc, url = _start_command(tmp_path, *extra)
    try:
        assert url.startswith("wss://" if tls else "ws://")
        async with trio.open_nursery() as nursery:
            link_a, link_b = await paired_links(nursery, url, A, B, ssl_context=context)
            await exchange(link_a, link_b, 50)
            nursery.cancel_scope.cancel()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_the_command_serves_its_node_over_the_websocket(tmp_path: Path) -> None:
    """REL-6.1, REL-6.2 end to end: `p2pos relay --listen --ws`; a peer registers through the WebSocket."""
    proc, url = _start_command(tmp_path, "--listen", "127.0.0.1:0")
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]  # the relay, what it offers, the node
        bootstrap = next(line for line in lines if line.startswith("bootstrap: "))
        assert any(line.startswith("offering relays to registered peers: ws://127.0.0.1:") for line in lines), lines
        node_id = PeerId.parse(bootstrap.split()[1].split("@")[0])
        keys = make_keys("relay-command-peer")
        async with trio.open_nursery() as nursery:
            link = RelayLink(url, keys.identity, env={})
            link.want(node_id.public_key)
            await nursery.start(link.run)
            with trio.fail_after(10):
                await link.wait_paired(node_id.public_key)
            endpoint = Endpoint(keys, channels=None)
            nursery.start_soon(drive_endpoint, endpoint, link)
            session = endpoint.connect(("relay", node_id.public_key), trio.current_time(), expected_peer=node_id)
            assert (await next_endpoint_event(endpoint, HandshakeCompleted)).peer_id == node_id
            session.send(rm.encode(rm.Register(txid=1, lease=30)), trio.current_time())
            endpoint.updated(session.local_index)
            answer = rm.decode_untrusted((await next_endpoint_event(endpoint, MessageReceived)).data)
            assert isinstance(answer, rm.Registered) and answer.lease == 30
            nursery.cancel_scope.cancel()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_relay_command_checks_its_flags() -> None:
    for args, why in (
        ([], "give --listen"),
        (["--ws", "127.0.0.1:0", "--tls-cert", "x.pem"], "go together"),
        (["--ws", "127.0.0.1:0", "--link-rate", "0"], "positive"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "p2pos.adapters.cli", "relay", *args], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 2 and why in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
