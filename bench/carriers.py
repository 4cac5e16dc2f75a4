#!/usr/bin/env python3
"""Carriers between one pair of daemons: goodput over UDP, relay, TURN, QUIC; relay TTFB; path moves (issue 12/9).

Run ``python bench/carriers.py`` (a few minutes), ``--quick`` for a smoke run.  On loopback it starts
one ``p2pos relay --listen --ws`` process (rendezvous node and WebSocket relay), one coturn (as
tests/turn/coturn_fixture.py does) and daemons (``p2pos up --bench``, separate homes, each its own
process).

Goodput (``measure_carriers``): ONE pair of daemons, A and B, both on 127.0.0.1 with the relay, A
with a TURN allocation on coturn (``turn_secret``), QUIC on (the default).  A's session to B has a
path of each carrier (direct UDP; QUIC on the same UDP socket, spec/quic.md §5.1; A's TURN
allocation to B's address; the relay).  Each round A's session is pinned in turn to each carrier
(``PUT /v1/peers/B/pin``, spec/appapi.md §3.1; the order rotated per round), and once that path is
active, after a 2 MB warm-up, ``POST /v1/bench/send`` (adapters/selftest.py: a channel from A to B's
``_bench`` service, N bytes written from memory, B answers the count) is timed: goodput = N /
seconds; the pinned path must have carried the bytes (its ``bytes_sent``) or the run fails.  In the
same round a plain aioquic stream moves the same bytes between two processes (bench/quic_carrier.py
``--sink`` and ``aioquic_send``: 16 KiB writes, timed from the first write to the count back, as
``bench/send`` is).  Figure = median of the rounds, with the range.  Ratios from the same run:
relay/direct (target >= 0.5), TURN/direct (>= 0.4), QUIC/direct (no target) and daemon QUIC / plain
aioquic (>= 0.8).

Time to first byte (``measure_ttfb``): daemon A and one fresh daemon B_i per repeat, only the
relay between them, each daemon's WebSocket to the relay through its own ``DelayProxy`` (trio in a
thread here, 25 ms each way: this kernel has no netem).  With the links open, A's first 1-byte
``bench/send`` to B_i: the lookup, the handshake through the relay (IK, one round trip), then the
channel's OPEN with the byte in the same packet (early data, spec/channels.md §2.7), B's reader,
and the count back.  Two figures, both from A's call (``started_ns``): (a) the time to first byte,
until B's ``_bench`` reader got the byte (B notes ``time.monotonic_ns()`` at its first read and
sends it back with the count: both daemons run on this machine, one monotonic clock), against the
session's smoothed RTT on that relay path: ``ttfb_over_rtt``, target at most 2x (floor 1.5 RTT: the
handshake's round trip and the byte's one way); (b) the whole round trip, until the count is back
at A, ``ttfb_round_trip_over_rtt``, informational (floor 2 RTT: a request and its answer after the
handshake; less needs data in the handshake's first message, 0-RTT, which p2pos does not do).  A
1-byte send on the established session is shown for comparison (floor 1 RTT).

Paths (``measure_failover``): A, and B behind a ``UdpNat`` the bench opens and closes, both with
the relay (and QUIC, which shares the direct path's fate: spec/paths.md PTH-4.8); 1 MB transfers
run back to back throughout.  Opening the NAT: the time from A's ``path_validated`` (direct UDP)
event to its ``path_active`` on that path; closing it: the time from the cut to A's
``path_active`` on the relay (the death of the direct path and the move).  Events come from
``GET /v1/events``, stamped as they arrive.

The last line of stdout is one JSON object: ``{"bench": "carriers", ...}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
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
from quic_carrier import aioquic_send

from p2pos.transports import tcp_pacing

_TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path[:0] = [str(_TESTS / "turn"), str(_TESTS)]  # coturn_fixture, and the tls_helpers it uses

AT_LEAST = {"relay_over_direct": 0.5, "turn_over_direct": 0.4, "quic_over_aioquic": 0.8}
AT_MOST = {"ttfb_over_rtt": 2.0}
PARTS = ["goodput", "ttfb", "failover"]
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
        """The rendezvous node and WebSocket relay: (bootstrap string, ws:// URL).

        Its byte quotas are lifted: the bench measures the relay, not its default quota of 16 MiB/s
        per peer after a 64 MiB burst (spec/relay.md §5), which five 50 MB transfers would reach."""
        process = self.p2pos(
            "relay", "--listen", "127.0.0.1:0", "--ws", "127.0.0.1:0", "--home", str(self.root / "relay"),
            "--link-rate", str(1 << 31), "--link-burst", str(1 << 33),
            "--address-rate", str(1 << 31), "--address-burst", str(1 << 33),
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

    def daemon(self, name: str, listen: str, bootstrap: str, relays: list[str], *, quic: bool = True) -> str:
        """Start daemon ``name``; the path of its API socket."""
        home = self.root / name
        home.mkdir()
        config = [f"listen = [{json.dumps(listen)}]", f"relay = {json.dumps(relays)}", f"quic = {json.dumps(quic)}"]
        config.append("learn_relays = false")  # the relays are the bench's choice, not the node's offer
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


#: The carriers the pair is pinned to in turn, and the ``via`` each pins (spec/appapi.md §3.1).
CARRIERS = {"direct": "udp", "relay": "relay", "turn": "turn", "quic": "quic"}
#: Writes of the plain aioquic baseline (bench/quic_carrier.py's 16 KiB).
AIOQUIC_WRITE = 16384


def peer_paths(socket_path: str, peer: str) -> list[dict[str, Any]]:
    for p in _api(socket_path, "GET", "/v1/status")["peers"]:
        if p["peer_id"] == peer:
            return list(p["paths"])
    return []


def pinned_path(socket_path: str, peer: str, via: str, timeout: float) -> dict[str, Any]:
    """Pin the session to ``via`` (``PUT /v1/peers/PEER/pin``) and wait until such a path is active."""
    _api(socket_path, "PUT", f"/v1/peers/{peer}/pin", {"via": via})
    deadline = time.monotonic() + timeout
    while True:
        active = [p for p in peer_paths(socket_path, peer) if p["active"]]
        if active and active[0]["via"] == via:
            return active[0]
        if time.monotonic() > deadline:
            raise RuntimeError(f"pinned to {via}, the active path is still {active}")
        time.sleep(0.02)


def wait_all_paths(socket_path: str, peer: str, timeout: float) -> None:
    """Wait until the session has a validated path of every carrier (they validate on their own)."""
    deadline = time.monotonic() + timeout
    while True:
        paths = peer_paths(socket_path, peer)
        ready = {p["via"] for p in paths if p["state"] == "validated"}
        if set(CARRIERS.values()) <= ready:
            return
        if time.monotonic() > deadline:
            shown = [(p["via"], p["address"], p["state"]) for p in paths]
            raise RuntimeError(f"not every carrier has a validated path within {timeout:.0f} s: {shown}")
        time.sleep(0.1)


@contextlib.contextmanager
def aioquic_sink(lab: Lab) -> Iterator[int]:
    """bench/quic_carrier.py's plain aioquic server in a process of its own (as a daemon is): its port."""
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve().parent / "quic_carrier.py"), "--sink"], stdout=subprocess.PIPE
    )
    lab.processes.append(process)
    assert process.stdout is not None
    line = process.stdout.readline().decode().split()
    if line[:1] != ["port"]:
        raise RuntimeError("the aioquic sink did not start")
    try:
        yield int(line[1])
    finally:
        lab.stop([process])


def measure_carriers(
    lab: Lab, bootstrap: str, ws_url: str, turn_url: str, nbytes: int, rounds: int
) -> tuple[dict[str, list[float]], dict[str, str]]:
    """ONE pair of daemons on 127.0.0.1, pinned in turn to each carrier; a plain aioquic stream each round.

    A has the WebSocket relay and a TURN allocation, B the relay (no TURN: B's relayed address would
    be a second UDP path at A); QUIC is on (the default).  A's session to B then has a path of each
    kind: direct UDP, QUIC on the same socket, A's TURN allocation to B's address, the relay.  Each
    round pins the session (``PUT /v1/peers/B/pin``, the order rotated per round), waits until that
    path is active, warms it (2 MB: the new path's congestion window), times ``bench/send`` of
    ``nbytes``, and checks that the pinned path carried them (its bytes_sent grew by as much, it is
    still the active one).  Then plain aioquic moves the same bytes between two processes, timed the
    same way (first write to the count back).  And, for reference only, a second pair (C, D: no
    relay, no QUIC) whose session has its direct path alone (``direct_single_path``), to tell
    a cost of the first pair's extra paths from the spread of direct UDP itself.  MB/s per
    carrier, ``aioquic_stream`` and ``direct_single_path``, and what carried each (via and address).
    """
    before = len(lab.processes)
    a = lab.daemon("pair-a", "127.0.0.1:0", bootstrap, [turn_url, ws_url])
    b = lab.daemon("pair-b", "127.0.0.1:0", bootstrap, [ws_url])
    c = lab.daemon("single-c", "127.0.0.1:0", bootstrap, [], quic=False)
    d = lab.daemon("single-d", "127.0.0.1:0", bootstrap, [], quic=False)
    samples: dict[str, list[float]] = {name: [] for name in [*CARRIERS, "aioquic_stream", "direct_single_path"]}
    vias: dict[str, str] = {}
    try:
        wait_registered(a, 30)
        peer_b = wait_registered(b, 30)
        sockets, ids = {"a": a, "b": b}, {"b": peer_b}
        single, single_ids = {"a": c, "b": d}, {"b": wait_registered(d, 30)}
        wait_registered(c, 30)
        node_transfer(single, single_ids, min(nbytes, 2_000_000))
        node_transfer(sockets, ids, min(nbytes, 2_000_000))  # the session and its paths
        wait_all_paths(a, peer_b, 30)
        relayed = [r["relayed"] for r in _api(a, "GET", "/v1/status")["relays"] if r["kind"] == "turn"]
        names = list(CARRIERS)
        with aioquic_sink(lab) as port:
            for r in range(rounds):
                for i in range(len(names)):
                    name = names[(i + r) % len(names)]
                    path = pinned_path(a, peer_b, CARRIERS[name], 15)
                    node_transfer(sockets, ids, min(nbytes, 2_000_000))
                    now_paths = {p["path_id"]: p for p in peer_paths(a, peer_b)}
                    if path["path_id"] not in now_paths:
                        raise RuntimeError(f"{name}: the pinned path {path} is gone after the warm-up: {now_paths}")
                    sent = now_paths[path["path_id"]]["bytes_sent"]
                    seconds = node_transfer(sockets, ids, nbytes)
                    after = {p["path_id"]: p for p in peer_paths(a, peer_b)}.get(path["path_id"])
                    if after is None or not after["active"] or after["bytes_sent"] - sent < nbytes:
                        raise RuntimeError(f"{name}: the pinned path did not carry the transfer: {after}")
                    samples[name].append(nbytes / seconds / 1e6)
                    vias[name] = f"{path['via']} {path['address']}"
                    if name == "turn":
                        vias[name] += f" (through A's allocation {', '.join(relayed)})"
                seconds, got = aioquic_send(port, nbytes, AIOQUIC_WRITE)
                if got != (nbytes // AIOQUIC_WRITE) * AIOQUIC_WRITE:
                    raise RuntimeError(f"plain aioquic: {got} bytes counted of {nbytes}")
                samples["aioquic_stream"].append(got / seconds / 1e6)
                samples["direct_single_path"].append(nbytes / node_transfer(single, single_ids, nbytes) / 1e6)
                if [p["via"] for p in peer_paths(c, single_ids["b"])] != ["udp"]:
                    raise RuntimeError(f"the reference pair has other paths: {peer_paths(c, single_ids['b'])}")
                shown = ", ".join(f"{k} {v[-1]:.1f}" for k, v in samples.items())
                say(f"  carriers round {r + 1}/{rounds} (MB/s): {shown}")
        _api(a, "DELETE", f"/v1/peers/{peer_b}/pin")
        return samples, vias
    finally:
        lab.stop(lab.processes[before:])


def behind_nat(bootstrap: str, *, direct_open: bool) -> tuple[UdpNat, str]:
    """A NAT in front of the rendezvous node, and the bootstrap string that goes through it."""
    node_id, node_address = bootstrap.split("@")
    host, port = node_address.rsplit(":", 1)
    nat = UdpNat((host, int(port)), direct_open=direct_open)
    return nat, f"{node_id}@[::1]:{nat.port}"


def ws_address(url: str) -> tuple[str, int]:
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    return host, int(port)


def measure_ttfb(lab: Lab, bootstrap: str, ws_url: str, rounds: int) -> dict[str, list[float]]:
    """New sessions over the relay, each daemon's link to it through a 25 ms-each-way DelayProxy.

    One daemon A and ``rounds`` daemons B_i (IPv6 behind strict NATs: only the relay joins them).
    Per B_i: the first 1-byte ``bench/send`` (the lookup, the handshake through the relay, the
    channel with the byte, the count back) gives the time to B's first read ("first_byte") and to
    the count back at A ("round_trip"); then three more on that session (the least: an established
    session's 1-byte exchange, "exchange"), and the session's own round-trip estimate (the active
    path's smoothed RTT, through the relay, "srtt").  Seconds, one value per B_i in each list.
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
        out: dict[str, list[float]] = {"first_byte": [], "round_trip": [], "srtt": [], "exchange": []}
        for i, (b, peer) in enumerate(zip(bs, peers, strict=True)):
            sockets, ids = {"a": a, "b": b}, {"b": peer}
            first = _api(a, "POST", "/v1/bench/send", {"peer": peer, "bytes": 1})
            out["first_byte"].append((int(first["first_byte_ns"]) - int(first["started_ns"])) / 1e9)
            out["round_trip"].append(float(first["seconds"]))
            out["exchange"].append(min(node_transfer(sockets, ids, 1) for _ in range(3)))
            via = active_via(a, peer)
            if not via.startswith("relay"):
                raise RuntimeError(f"the session to B{i} is not on the relay but on {via}")
            out["srtt"].append(active_srtt(a, peer))
            say(
                f"  ttfb round {i + 1}/{rounds}: new session first byte {out['first_byte'][-1] * 1000:.0f} ms, "
                f"count back {out['round_trip'][-1] * 1000:.0f} ms; path srtt {out['srtt'][-1] * 1000:.0f} ms, "
                f"established 1-byte {out['exchange'][-1] * 1000:.0f} ms"
            )
        return out
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


def _range(values: list[float], scale: float) -> str:
    return f"{min(values) * scale:.1f}-{max(values) * scale:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (< 60 s); the figures are not meaningful")
    parser.add_argument("--rounds", type=int, default=None, help="repeats of each measurement (default 5; 2 --quick)")
    parser.add_argument("--mbytes", type=int, default=None, help="MB per transfer (default 50; 2 with --quick)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=PARTS,
        default=PARTS,
        help="measure only these parts (a development aid: the JSON line then has only their figures)",
    )
    args = parser.parse_args()
    parts = set(args.only)
    rounds = args.rounds or (2 if args.quick else 5)
    nbytes = (args.mbytes or (2 if args.quick else 50)) * 1_000_000
    from p2pos.adapters.build_info import core_build

    root = Path(tempfile.mkdtemp(prefix="p2pos-bench-carriers-"))
    lab = Lab(root)
    samples: dict[str, list[float]] = {}
    vias: dict[str, str] = {}
    tcp_cc = tcp_congestion_control()
    link_cc = tcp_pacing.unpaced_choice() or tcp_cc
    say(
        f"bench carriers: {rounds} repeats, {nbytes / 1e6:.0f} MB per transfer, core {core_build()},"
        f" the kernel's TCP congestion control {tcp_cc}; the relay's links (TCP within this host) {link_cc}"
    )
    try:
        bootstrap, ws_url = lab.relay()
        if "goodput" in parts:
            with coturn() as server:
                turn_url = f"turn:127.0.0.1:{server.port}"
                samples, vias = measure_carriers(lab, bootstrap, ws_url, turn_url, nbytes, rounds)
                relayed = vias["turn"].rsplit(" ", 1)[-1].rstrip(")").rsplit(":", 1)[-1]
                if not (relayed.isdigit() and server.min_port <= int(relayed) <= server.max_port):
                    raise RuntimeError(f"the TURN path is not through a coturn allocation: {vias['turn']}")
        ttfb = measure_ttfb(lab, bootstrap, ws_url, rounds) if "ttfb" in parts else {}
        to_active, to_fallback = measure_failover(lab, bootstrap, ws_url, rounds) if "failover" in parts else ([], [])
    finally:
        lab.stop()
        if os.environ.get("P2POS_BENCH_KEEP"):  # the daemons' homes and logs, to read after a failure
            say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    medians = {k: statistics.median(v) for k, v in samples.items()}
    say("")
    say(f"{'figure (median of repeats), one pair of daemons':<52} {'value':>8}  {'range':<13} carried by (A's path)")
    labels = {
        "direct": "goodput, direct UDP, daemon -> daemon, MB/s",
        "relay": "goodput, WebSocket relay, daemon -> daemon, MB/s",
        "turn": "goodput, TURN (coturn), daemon -> daemon, MB/s",
        "quic": "goodput, QUIC, daemon -> daemon, MB/s",
        "aioquic_stream": "plain aioquic stream, process -> process, MB/s",
        "direct_single_path": "reference: direct UDP, a session with no other path",
    }
    for key, value in medians.items():
        say(f"{labels[key]:<52} {value:>8.1f}  {_range(samples[key], 1):<13} {vias.get(key, '')}")
    timings = {
        "relay_new_session_ttfb_ms": ("new relay session: first byte at B's reader, ms", ttfb.get("first_byte", [])),
        "relay_new_session_round_trip_ms": (
            "new relay session: 1 byte, count back at A, ms",
            ttfb.get("round_trip", []),
        ),
        "relay_rtt_ms": ("round trip through the relay (path srtt), ms", ttfb.get("srtt", [])),
        "relay_one_byte_exchange_ms": ("1-byte exchange, established session, ms", ttfb.get("exchange", [])),
        "direct_validated_to_active_ms": ("direct path validated -> carrying data, ms", to_active),
        "cut_to_fallback_active_ms": ("direct path cut -> relay carrying data, ms", to_fallback),
    }
    timings = {key: value for key, value in timings.items() if value[1]}
    for label, values in timings.values():
        say(f"{label:<52} {statistics.median(values) * 1000:>8.1f}  {_range(values, 1000):<13}")
    ratios: dict[str, float] = {}
    if medians:
        ratios["relay_over_direct"] = medians["relay"] / medians["direct"]
        ratios["turn_over_direct"] = medians["turn"] / medians["direct"]
        ratios["quic_over_direct"] = medians["quic"] / medians["direct"]
        ratios["quic_over_aioquic"] = medians["quic"] / medians["aioquic_stream"]
    if ttfb:
        srtt = statistics.median(ttfb["srtt"])
        ratios["ttfb_over_rtt"] = statistics.median(ttfb["first_byte"]) / srtt
        ratios["ttfb_round_trip_over_rtt"] = statistics.median(ttfb["round_trip"]) / srtt
    met = {name: ratios[name] >= minimum for name, minimum in AT_LEAST.items() if name in ratios}
    met |= {name: ratios[name] <= maximum for name, maximum in AT_MOST.items() if name in ratios}
    # Informational: each round's carrier against that same round's direct transfer (measured
    # back to back), to tell a carrier's cost from direct UDP's own swings between rounds.
    per_round = {
        f"{carrier}_over_direct_per_round": [x / d for x, d in zip(samples[carrier], samples["direct"], strict=True)]
        for carrier in ("relay", "turn")
        if samples.get(carrier) and samples.get("direct")
    }
    say("")
    for name, values in per_round.items():
        shown = ", ".join(f"{v:.2f}" for v in values)
        say(f"{name:<30} median {statistics.median(values):.2f}, rounds: {shown} (informational)")
    say(f"{'ratio':<30} {'value':>8}  target")
    for name, value in ratios.items():
        bound = f">= {AT_LEAST[name]}" if name in AT_LEAST else f"<= {AT_MOST[name]}" if name in AT_MOST else "-"
        verdict = ("met" if met[name] else "MISSED") if name in met else "(no target)"
        say(f"{name:<30} {value:>8.2f}  {bound:<8} {verdict}")
    say(f"targets met: {sum(met.values())}/{len(met)}")
    figures: dict[str, float] = {}
    for key, values in samples.items():
        figures[f"{key}_MBps"] = round(medians[key], 2)
        figures[f"{key}_MBps_min"] = round(min(values), 2)
        figures[f"{key}_MBps_max"] = round(max(values), 2)
    for key, values in per_round.items():
        figures[key] = round(statistics.median(values), 3)
        figures[f"{key}_min"] = round(min(values), 3)
        figures[f"{key}_max"] = round(max(values), 3)
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
            # AT_MOST's (ttfb_over_rtt) are upper bounds; --only leaves out the parts not measured
            "targets": {k: v for k, v in {**AT_LEAST, **AT_MOST}.items() if k in ratios},
            "targets_met": met,
            "settings": {
                "core": core_build(),
                "bytes": nbytes,
                "rounds": rounds,
                "relay_delay_ms": RELAY_DELAY * 1000,
                "tcp_congestion_control": tcp_cc,
                "relay_link_congestion_control": link_cc,
            },
            "carried_by": vias,
            "labels": {
                "direct_MBps": "one pair of daemons, pinned to each carrier in turn (PUT /v1/peers/B/pin)",
                "aioquic_stream_MBps": "plain aioquic, one stream between two processes, the same bytes",
                "quic_over_direct": "informational, no target",
                "ttfb_over_rtt": "new relay session: A's call to B's first read (one machine, one monotonic clock)"
                " / path srtt",
                "ttfb_round_trip_over_rtt": "informational, no target: A's call to the count back / path srtt"
                " (floor 2: handshake + request/answer; less needs 0-RTT)",
                "direct_single_path_MBps": "reference only: another pair (no relay, no QUIC), its direct path alone",
                "relay_over_direct_per_round": "informational: each round's relay / that round's direct, median"
                " (the targets use the ratio of the medians)",
            },
        }
    )


def tcp_congestion_control() -> str:
    """The congestion control new TCP sockets get (Linux).  The relay's WebSocket links here never
    leave this host, so where that default paces (``bbr`` without an ``fq`` qdisc: a timer per TCP
    burst) they run an unpaced one instead (transports/tcp_pacing.py, spec/relay.md §9)."""
    try:
        return Path("/proc/sys/net/ipv4/tcp_congestion_control").read_text().strip()
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
