#!/usr/bin/env python3
"""Carriers between daemons: goodput over direct UDP, the WebSocket relay, TURN; relay TTFB; path moves (issue 12/9).

Run ``python bench/carriers.py`` (a few minutes), ``--quick`` for a smoke run.  On loopback it starts
one ``p2pos relay --listen --ws`` process (rendezvous node and WebSocket relay), one coturn (as
tests/turn/coturn_fixture.py does), and for each carrier a pair of daemons (``p2pos up --bench``,
separate homes, each its own process) configured so that only that carrier joins them:

* **direct**: both daemons on 127.0.0.1, no relay: the session runs on direct UDP.
* **relay**: daemon A on 127.0.0.1, daemon B on [::1] only, both with the WebSocket relay.  B
  reaches the IPv4 rendezvous node through ``UdpNat`` (a strict NAT in the bench): A cannot send
  to B's IPv6 candidates, and the NAT drops what A sends to B's observed address, so the session
  can only ride the relay.
* **turn**: the same split, both with coturn (``turn_secret``) and the relay.  B's TURN relayed
  address (on coturn) is the one UDP address A can reach; the path the session ends on is read
  from ``/v1/status`` and printed (the smoke test checks it is a coturn relayed address).

These are three pairs, not one: forcing one carrier between the SAME two daemons needs a daemon
option that does not exist yet (see the issue 12 report).

In each pair, after a warm-up transfer, ``POST /v1/bench/send`` (adapters/selftest.py: a channel
from A to B's ``_bench`` service, N bytes written from memory, B answers the count) runs several
times: goodput = N / seconds, figure = median, with the range.  Ratios relay/direct (target
>= 0.5) and TURN/direct (target >= 0.4).

QUIC: the daemon does not carry sessions over QUIC yet; the figure is bench/quic_carrier.py's
(the QUIC carrier against a plain aioquic stream of the same bytes, target >= 0.8), labelled
"transport level, not between daemons".

Time to first byte (``measure_ttfb``): daemon A and one fresh daemon B_i per repeat, only the
relay between them, each daemon's WebSocket to the relay through its own ``DelayProxy`` (trio in a
thread here, 25 ms each way: this kernel has no netem).  With the links open, A's first 1-byte
``bench/send`` to B_i (lookup, handshake through the relay, channel, byte, count back) against
the session's smoothed RTT on that relay path (target: at most 2x), and a 1-byte send on the
established session for comparison.

Paths (``measure_failover``): A, and B behind a ``UdpNat`` the bench opens and closes, both with
the relay; 1 MB transfers run back to back throughout.  Opening the NAT: the time from A's
``path_validated`` (direct UDP) event to its ``path_active`` on that path; closing it: the time
from the cut to A's ``path_active`` on the relay (the death of the direct path and the move).
Events come from ``GET /v1/events``, stamped as they arrive.

The last line of stdout is one JSON object: ``{"bench": "carriers", ...}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import trio
from _common import emit_json, say
from daemon import _api, node_transfer

_TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path[:0] = [str(_TESTS / "turn"), str(_TESTS)]  # coturn_fixture, and the tls_helpers it uses

AT_LEAST = {"relay_over_direct": 0.5, "turn_over_direct": 0.4, "quic_carrier_over_aioquic": 0.8}
AT_MOST = {"ttfb_over_rtt": 2.0}
#: The REST secret the bench's coturn and daemons share.
TURN_SECRET = "p2pos-bench-carriers"
#: Delay added each way on each daemon's link to the relay for the time to first byte.
RELAY_DELAY = 0.025


class UdpNat:
    """A NAT in a thread of the bench, between daemon B (IPv6 only) and the IPv4 side of loopback.

    B sends to the rendezvous node at ``[::1]:port`` (``self.port``); each B socket gets its own
    IPv4 socket outside, which the node observes as B's address.  From anyone but the node, that
    outside socket passes packets in only while ``direct_open`` (then it behaves as a full-cone
    NAT: each outside sender gets an IPv6 socket of its own, from which B's answers go back out).
    Closing ``direct_open`` cuts every direct path to B; the rendezvous leg stays.
    """

    def __init__(self, node: tuple[str, int], *, direct_open: bool) -> None:
        self.node, self.direct_open = node, direct_open
        self.inside = self._socket(socket.AF_INET6, "::1", ("in", node))
        self.port = int(self.inside.getsockname()[1])
        self.dropped = 0
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _socket(self, family: int, host: str, role: tuple[str, Any]) -> socket.socket:
        if not hasattr(self, "roles"):
            self.roles: dict[socket.socket, tuple[str, Any]] = {}
            self.by_role: dict[tuple[str, Any], socket.socket] = {}
            self.selector = selectors.DefaultSelector()
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        self.roles[sock], self.by_role[role] = role, sock
        self.selector.register(sock, selectors.EVENT_READ)
        return sock

    def _run(self) -> None:
        while self.running:
            for key, _ in self.selector.select(0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data, source = sock.recvfrom(65536)
                except OSError:
                    continue
                side, who = self.roles[sock]
                if side == "in":  # from B (source), to ``who`` (the node, or an outside peer)
                    if who != self.node and not self.direct_open:
                        self.dropped += 1
                        continue
                    out = self.by_role.get(("out", source)) or self._socket(
                        socket.AF_INET, "127.0.0.1", ("out", source)
                    )
                    out.sendto(data, who)
                    continue
                peer = source[:2]  # to B (``who``), from the node or an outside peer
                if peer == self.node:
                    self.inside.sendto(data, who)
                elif not self.direct_open:
                    self.dropped += 1
                else:
                    inner = self.by_role.get(("in", peer)) or self._socket(socket.AF_INET6, "::1", ("in", peer))
                    inner.sendto(data, who)

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=2)
        for sock in self.roles:
            sock.close()
        self.selector.close()


class DelayProxy:
    """A TCP proxy in front of the WebSocket relay that holds every byte ``delay`` seconds each way.

    trio, in a thread of the bench process (this kernel has no netem): each direction is a reader
    that stamps what it reads with when it may leave, and a writer that waits until then.
    """

    def __init__(self, upstream: tuple[str, int], delay: float) -> None:
        self.upstream, self.delay = upstream, delay
        self.port = 0
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self.thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self.thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the delay proxy did not start")

    async def _main(self) -> None:
        with trio.CancelScope() as self._scope:
            self._token = trio.lowlevel.current_trio_token()
            [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
            self.port = int(listener.socket.getsockname()[1])
            self._ready.set()
            await trio.serve_listeners(self._connection, [listener])

    async def _connection(self, client: trio.SocketStream) -> None:
        try:
            server = await trio.open_tcp_stream(*self.upstream)
        except OSError:
            await client.aclose()
            return
        async with client, server, trio.open_nursery() as nursery:
            nursery.start_soon(self._pipe, client, server, nursery.cancel_scope)
            nursery.start_soon(self._pipe, server, client, nursery.cancel_scope)

    async def _pipe(self, source: trio.SocketStream, sink: trio.SocketStream, scope: trio.CancelScope) -> None:
        send, receive = trio.open_memory_channel[tuple[float, bytes]](10_000)

        async def writer() -> None:
            async for due, data in receive:
                await trio.sleep_until(due)
                await sink.send_all(data)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer)
                async with send:
                    while data := await source.receive_some(65536):
                        await send.send((trio.current_time() + self.delay, data))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()

    def close(self) -> None:
        if self._token is not None and self._scope is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
        self.thread.join(timeout=5)


class EventWatch:
    """A daemon's event stream (``GET /v1/events?after=0``), each event stamped when it arrives."""

    def __init__(self, socket_path: str) -> None:
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(socket_path)
        self.sock.sendall(b"GET /v1/events?after=0 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        buffer = b""
        with contextlib.suppress(OSError):
            while data := self.sock.recv(65536):
                now = time.monotonic()
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.startswith(b"{"):
                        with contextlib.suppress(ValueError):
                            self.events.append((now, json.loads(line)))

    def wait(self, after: float, timeout: float, **match: str) -> tuple[float, dict[str, Any]]:
        """The first event that arrived after ``after`` with every field of ``match``; RuntimeError on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for stamp, event in list(self.events):
                if stamp >= after and all(event.get(k) == v for k, v in match.items()):
                    return stamp, event
            time.sleep(0.005)
        raise RuntimeError(f"no event {match} within {timeout:.0f} s")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=2)


class Lab:
    """The processes of one run; ``stop`` ends every one of them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.processes: list[subprocess.Popen[bytes]] = []

    def p2pos(self, *args: str, stdout: Any = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{args[0]}-{len(self.processes)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen([sys.executable, "-m", "p2pos.adapters.cli", *args], stdout=stdout, stderr=log)
        log.close()
        self.processes.append(process)
        return process

    def relay(self) -> tuple[str, str]:
        """The rendezvous node and WebSocket relay: (bootstrap string, ws:// URL)."""
        process = self.p2pos(
            "relay", "--listen", "127.0.0.1:0", "--ws", "127.0.0.1:0", "--home", str(self.root / "relay"),
            stdout=subprocess.PIPE,
        )  # fmt: skip
        assert process.stdout is not None
        bootstrap = url = ""
        while not (bootstrap and url):
            line = process.stdout.readline().decode()
            if not line:
                raise RuntimeError(f"the relay did not start (logs in {self.root})")
            if line.startswith("bootstrap: "):
                bootstrap = line.split()[1]
            elif line.startswith("relay listening on "):
                url = line.split()[3]
        return bootstrap, url

    def daemon(self, name: str, listen: str, bootstrap: str, relays: list[str]) -> str:
        """Start daemon ``name``; the path of its API socket."""
        home = self.root / name
        home.mkdir()
        config = [f"listen = [{json.dumps(listen)}]", f"relay = {json.dumps(relays)}"]
        if any(r.startswith("turn") for r in relays):
            config.append(f"turn_secret = {json.dumps(TURN_SECRET)}")
        (home / "config.toml").write_text("\n".join(config) + "\n")
        self.p2pos("up", "--home", str(home), "--api-port", "-1", "--bench", "--bootstrap", bootstrap)
        return str(home / "run" / "api.sock")

    def stop(self, processes: list[subprocess.Popen[bytes]] | None = None) -> None:
        chosen = self.processes if processes is None else processes
        for process in chosen:
            if process.poll() is None:
                process.terminate()
        for process in chosen:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def wait_registered(socket_path: str, timeout: float) -> str:
    """The daemon's peer id once one rendezvous registration is up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            status = _api(socket_path, "GET", "/v1/status")
            if any(r["state"] == "registered" for r in status["registrations"]):
                return str(status["peer_id"])
        except (OSError, RuntimeError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"daemon {socket_path} did not register within {timeout:.0f} s")
        time.sleep(0.1)


def active_via(socket_path: str, peer: str) -> str:
    """What carries the session from this daemon to ``peer`` now (``udp``, ``relay``, ``turn``...)."""
    status = _api(socket_path, "GET", "/v1/status")
    for p in status["peers"]:
        if p["peer_id"] == peer:
            for path in p["paths"]:
                if path["active"]:
                    return f"{path['via']} {path['address']}"
            return str(p["path"])
    return "no session"


@contextlib.contextmanager
def coturn() -> Iterator[Any]:
    """coturn on loopback with the bench's REST secret (tests/turn/coturn_fixture.py's ``Coturn``)."""
    import coturn_fixture  # tests/turn/coturn_fixture.py

    coturn_fixture.SECRET = TURN_SECRET  # its REST secret, read when it writes coturn's config
    with coturn_fixture.start_coturn("rest") as server:
        yield server


def measure_pair(
    lab: Lab, name: str, bootstrap: str, listen_b: str, relays: list[str], nbytes: int, rounds: int
) -> tuple[list[float], str]:
    """One pair of daemons for carrier ``name``: goodput samples (MB/s) and the path that carried them."""
    before = len(lab.processes)
    a = lab.daemon(f"{name}-a", "127.0.0.1:0", bootstrap, relays)
    nat, bootstrap_b = None, bootstrap
    if listen_b.startswith("["):  # B on IPv6 only: it reaches the IPv4 node through the NAT
        nat, bootstrap_b = behind_nat(bootstrap, direct_open=False)
    b = lab.daemon(f"{name}-b", listen_b, bootstrap_b, relays)
    try:
        wait_registered(a, 30)
        peer_b = wait_registered(b, 30)
        sockets, ids = {"a": a, "b": b}, {"b": peer_b}
        node_transfer(sockets, ids, min(nbytes, 2_000_000))  # warm-up: the session, its paths, the windows
        time.sleep(1.0)  # spare paths validate and the best one becomes active
        node_transfer(sockets, ids, min(nbytes, 2_000_000))
        via = active_via(a, peer_b)
        samples = []
        for r in range(rounds):
            seconds = node_transfer(sockets, ids, nbytes)
            samples.append(nbytes / seconds / 1e6)
            say(f"  {name} round {r + 1}/{rounds}: {samples[-1]:.1f} MB/s")
        return samples, via
    finally:
        lab.stop(lab.processes[before:])
        if nat is not None:
            nat.close()


def behind_nat(bootstrap: str, *, direct_open: bool) -> tuple[UdpNat, str]:
    """A NAT in front of the rendezvous node, and the bootstrap string that goes through it."""
    node_id, node_address = bootstrap.split("@")
    host, port = node_address.rsplit(":", 1)
    nat = UdpNat((host, int(port)), direct_open=direct_open)
    return nat, f"{node_id}@[::1]:{nat.port}"


def ws_address(url: str) -> tuple[str, int]:
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    return host, int(port)


def measure_ttfb(lab: Lab, bootstrap: str, ws_url: str, rounds: int) -> tuple[list[float], list[float], list[float]]:
    """New sessions over the relay, each daemon's link to it through a 25 ms-each-way DelayProxy.

    One daemon A and ``rounds`` daemons B_i (IPv6 behind strict NATs: only the relay joins them).
    Per B_i: the first 1-byte ``bench/send`` (the lookup, the handshake through the relay, the
    channel, the byte, the count back) is the time to first byte of a new session; then three more
    on that session (the least: an established session's 1-byte exchange), and the session's own
    round-trip estimate (the active path's smoothed RTT, through the relay).  Seconds, per B_i:
    (new session, path round trip, 1-byte exchange).
    """
    before = len(lab.processes)
    proxies = [DelayProxy(ws_address(ws_url), RELAY_DELAY) for _ in range(rounds + 1)]
    nats: list[UdpNat] = []
    urls = [ws_url.replace(f":{ws_address(ws_url)[1]}/", f":{p.port}/") for p in proxies]
    try:
        a = lab.daemon("ttfb-a", "127.0.0.1:0", bootstrap, [urls[0]])
        bs = []
        for i in range(rounds):
            nat, bootstrap_b = behind_nat(bootstrap, direct_open=False)
            nats.append(nat)
            bs.append(lab.daemon(f"ttfb-b{i}", "[::1]:0", bootstrap_b, [urls[i + 1]]))
        wait_registered(a, 30)
        peers = [wait_registered(b, 30) for b in bs]
        for path in (a, *bs):  # the WebSockets are open and authenticated before anything is timed
            wait_for(lambda path=path: all(r["state"] == "ready" for r in _api(path, "GET", "/v1/status")["relays"]))
        ttfb, rtt, srtt = [], [], []
        for i, (b, peer) in enumerate(zip(bs, peers, strict=True)):
            sockets, ids = {"a": a, "b": b}, {"b": peer}
            ttfb.append(node_transfer(sockets, ids, 1))
            rtt.append(min(node_transfer(sockets, ids, 1) for _ in range(3)))
            via = active_via(a, peer)
            if not via.startswith("relay"):
                raise RuntimeError(f"the session to B{i} is not on the relay but on {via}")
            srtt.append(active_srtt(a, peer))
            new, trip, exchange = ttfb[-1] * 1000, srtt[-1] * 1000, rtt[-1] * 1000
            say(
                f"  ttfb round {i + 1}/{rounds}: new session {new:.0f} ms, "
                f"path srtt {trip:.0f} ms, 1-byte {exchange:.0f} ms"
            )
        return ttfb, srtt, rtt
    finally:
        lab.stop(lab.processes[before:])
        for nat in nats:
            nat.close()
        for proxy in proxies:
            proxy.close()


def active_srtt(socket_path: str, peer: str) -> float:
    """The smoothed RTT of the active path to ``peer``, in seconds."""
    for p in _api(socket_path, "GET", "/v1/status")["peers"]:
        if p["peer_id"] == peer:
            for path in p["paths"]:
                if path["active"] and path["srtt_ms"] is not None:
                    return float(path["srtt_ms"]) / 1000
    raise RuntimeError(f"no active path with a round trip to {peer}")


def wait_for(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting for the daemons' relay links")
        time.sleep(0.05)


def measure_failover(lab: Lab, bootstrap: str, ws_url: str, rounds: int) -> tuple[list[float], list[float]]:
    """Direct path up, then cut, ``rounds`` times, between daemon A and daemon B behind a NAT the bench controls.

    Both have the WebSocket relay.  The session starts with the NAT closed (on the relay); a loop
    of 1 MB transfers keeps data moving all along.  Each round: open the NAT and time A's
    ``path_validated`` (direct UDP) to A's ``path_active`` on it; close the NAT and time the cut to
    A's ``path_active`` on the relay (the transfers go on, none fails).  Seconds, per round.
    """
    before = len(lab.processes)
    nat, bootstrap_b = behind_nat(bootstrap, direct_open=False)
    watch: EventWatch | None = None
    stop = threading.Event()
    failures: list[str] = []
    moved = [0]
    try:
        a = lab.daemon("fail-a", "127.0.0.1:0", bootstrap, [ws_url])
        b = lab.daemon("fail-b", "[::1]:0", bootstrap_b, [ws_url])
        wait_registered(a, 30)
        sockets, ids = {"a": a, "b": b}, {"b": wait_registered(b, 30)}
        watch = EventWatch(a)
        node_transfer(sockets, ids, 1_000_000)

        def traffic() -> None:
            while not stop.is_set():
                try:
                    node_transfer(sockets, ids, 1_000_000)
                    moved[0] += 1
                except (OSError, RuntimeError) as exc:
                    failures.append(str(exc))

        thread = threading.Thread(target=traffic, daemon=True)
        thread.start()
        to_active, to_fallback = [], []
        for r in range(rounds):
            opened = time.monotonic()
            nat.direct_open = True
            validated, _ = watch.wait(opened, 60, type="path_validated", via="udp")
            active, _ = watch.wait(opened, 60, type="path_active", via="udp")
            to_active.append(max(0.0, active - validated))
            time.sleep(0.5)  # data on the direct path
            count = moved[0]
            cut = time.monotonic()
            nat.direct_open = False
            fallback, event = watch.wait(cut, 30, type="path_active", via="relay")
            to_fallback.append(fallback - cut)
            wait_for(lambda count=count: moved[0] > count + 1)  # transfers complete on the fallback
            say(
                f"  paths round {r + 1}/{rounds}: validated -> active {to_active[-1] * 1000:.0f} ms, "
                f"cut -> relay active {to_fallback[-1] * 1000:.0f} ms ({event.get('reason')})"
            )
        stop.set()
        thread.join(timeout=30)
        if failures:
            raise RuntimeError(f"transfers failed across the path changes: {failures[:3]}")
        return to_active, to_fallback
    finally:
        stop.set()
        if watch is not None:
            watch.close()
        lab.stop(lab.processes[before:])
        nat.close()


def quic_transport_level(nbytes: int, rounds: int) -> tuple[list[float], list[float]]:
    """bench/quic_carrier.py's method: (carrier MB/s, plain aioquic stream MB/s) per round, 16 KiB writes."""
    from quic_carrier import aioquic_transfer, carrier_transfer

    size = 16384
    carrier, plain = [], []
    for r in range(rounds):
        order = [0, 1] if r % 2 == 0 else [1, 0]
        for which in order:
            if which == 0:
                carrier.append((nbytes // size) * size / carrier_transfer(nbytes, size) / 1e6)
            else:
                seconds, got = aioquic_transfer(nbytes, size, datagrams=False)
                plain.append(got / seconds / 1e6)
    return carrier, plain


def _range(values: list[float], scale: float) -> str:
    return f"{min(values) * scale:.1f}-{max(values) * scale:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (< 60 s); the figures are not meaningful")
    parser.add_argument("--rounds", type=int, default=None, help="repeats of each measurement (default 5; 2 --quick)")
    parser.add_argument("--mbytes", type=int, default=None, help="MB per transfer (default 50; 2 with --quick)")
    args = parser.parse_args()
    rounds = args.rounds or (2 if args.quick else 5)
    nbytes = (args.mbytes or (2 if args.quick else 50)) * 1_000_000
    from p2pos.adapters.build_info import core_build

    root = Path(tempfile.mkdtemp(prefix="p2pos-bench-carriers-"))
    lab = Lab(root)
    samples: dict[str, list[float]] = {}
    vias: dict[str, str] = {}
    say(f"bench carriers: {rounds} repeats, {nbytes / 1e6:.0f} MB per transfer, core {core_build()}")
    try:
        bootstrap, ws_url = lab.relay()
        with coturn() as server:
            turn_url = f"turn:127.0.0.1:{server.port}"
            pairs = {
                "direct": ("127.0.0.1:0", []),
                "relay": ("[::1]:0", [ws_url]),
                "turn": ("[::1]:0", [turn_url, ws_url]),
            }
            for name, (listen_b, relays) in pairs.items():
                samples[name], vias[name] = measure_pair(lab, name, bootstrap, listen_b, relays, nbytes, rounds)
                port = vias[name].rsplit(":", 1)[-1]
                if port.isdigit() and server.min_port <= int(port) <= server.max_port:
                    vias[name] += " (a coturn relayed address)"
                say(f"  {name}: carried by {vias[name]}")
        ttfb, srtt, exchange = measure_ttfb(lab, bootstrap, ws_url, rounds)
        to_active, to_fallback = measure_failover(lab, bootstrap, ws_url, rounds)
    finally:
        lab.stop()
        shutil.rmtree(root, ignore_errors=True)
    say("  quic (transport level, not between daemons): carrier vs plain aioquic")
    quic_carrier, quic_plain = quic_transport_level(nbytes, rounds)
    samples["quic_carrier_transport_level"], samples["aioquic_stream_transport_level"] = quic_carrier, quic_plain

    medians = {k: statistics.median(v) for k, v in samples.items()}
    say("")
    say(f"{'figure (median of repeats)':<52} {'value':>8}  {'range':<13} carried by")
    labels = {
        "direct": "goodput, direct UDP, daemon -> daemon, MB/s",
        "relay": "goodput, WebSocket relay, daemon -> daemon, MB/s",
        "turn": "goodput, TURN (coturn), daemon -> daemon, MB/s",
        "quic_carrier_transport_level": "QUIC carrier, transport level (not daemons), MB/s",
        "aioquic_stream_transport_level": "plain aioquic, transport level (not daemons), MB/s",
    }
    for key, value in medians.items():
        say(f"{labels[key]:<52} {value:>8.1f}  {_range(samples[key], 1):<13} {vias.get(key, '')}")
    timings = {
        "relay_new_session_ttfb_ms": ("new session over the relay, +25 ms each link, ms", ttfb),
        "relay_rtt_ms": ("round trip through the relay (path srtt), ms", srtt),
        "relay_one_byte_exchange_ms": ("1-byte exchange, established session, ms", exchange),
        "direct_validated_to_active_ms": ("direct path validated -> carrying data, ms", to_active),
        "cut_to_fallback_active_ms": ("direct path cut -> relay carrying data, ms", to_fallback),
    }
    for label, values in timings.values():
        say(f"{label:<52} {statistics.median(values) * 1000:>8.1f}  {_range(values, 1000):<13}")
    ratios = {
        "relay_over_direct": medians["relay"] / medians["direct"],
        "turn_over_direct": medians["turn"] / medians["direct"],
        "quic_carrier_over_aioquic": medians["quic_carrier_transport_level"]
        / medians["aioquic_stream_transport_level"],
        "ttfb_over_rtt": statistics.median(ttfb) / statistics.median(srtt),
    }
    met = {name: ratios[name] >= minimum for name, minimum in AT_LEAST.items()}
    met |= {name: ratios[name] <= maximum for name, maximum in AT_MOST.items()}
    say("")
    say(f"{'ratio':<30} {'value':>8}  target")
    for name, value in ratios.items():
        bound = f">= {AT_LEAST[name]}" if name in AT_LEAST else f"<= {AT_MOST[name]}"
        say(f"{name:<30} {value:>8.2f}  {bound:<8} {'met' if met[name] else 'MISSED'}")
    say(f"targets met: {sum(met.values())}/{len(met)}")
    figures: dict[str, float] = {}
    for key, values in samples.items():
        figures[f"{key}_MBps"] = round(medians[key], 2)
        figures[f"{key}_MBps_min"] = round(min(values), 2)
        figures[f"{key}_MBps_max"] = round(max(values), 2)
    for key, (_, values) in timings.items():
        # at least 0.001 ms: a figure is a positive number (the validated -> active step may take ~0)
        figures[key] = max(0.001, round(statistics.median(values) * 1000, 3))
        figures[f"{key}_min"] = max(0.001, round(min(values) * 1000, 3))
        figures[f"{key}_max"] = max(0.001, round(max(values) * 1000, 3))
    emit_json(
        {
            "bench": "carriers",
            "figures": figures,
            "ratios": {k: round(v, 3) for k, v in ratios.items()},
            "targets": {**AT_LEAST, **AT_MOST},  # AT_MOST's (ttfb_over_rtt) are upper bounds
            "targets_met": met,
            "settings": {"core": core_build(), "bytes": nbytes, "rounds": rounds, "relay_delay_ms": RELAY_DELAY * 1000},
            "carried_by": vias,
            "labels": {
                "quic_carrier_transport_level_MBps": "transport level, not between daemons",
                "aioquic_stream_transport_level_MBps": "transport level, not between daemons",
            },
        }
    )


if __name__ == "__main__":
    main()
