#!/usr/bin/env python3
"""The rendezvous node with 10,000 registered peers (issue 11, item 9b), measured in one run.

Run ``python bench/rendezvous.py`` (about 2.5 minutes), ``--quick`` for a smoke run (500 peers,
a few seconds per phase; the figures mean little).  bench/README.md says what every figure
means.  The last line of stdout is one JSON object:
``{"bench": "rendezvous", "figures": {...}, "ratios": {...}, "targets": {...}, "targets_met": {...}}``.

Three processes:

* **the node** (``--role node``, started by this script): ``adapters/relay.py``'s ``RelayServer``,
  what ``p2pos relay --listen 127.0.0.1:0`` runs, on a ``UdpTransport`` subclass that counts the
  datagrams and bytes crossing its socket per direction and packet type (the first byte).
  SIGUSR1 makes it print one JSON line: those counters, its own CPU clock and its state.
* **the echo server** (``--role echo``): a plain trio UDP echo, ``recvfrom`` then ``sendto``.
* **this process**, the load generator and the orchestrator: N peers, each its own identity,
  ``Endpoint`` and ``RendezvousClient`` (the core, driven directly, no daemon) on its own socket
  bound to one of 250 source addresses 127.0.0.2-127.0.0.251 (Linux routes 127.0.0.0/8 to lo),
  so that the node's per-address limits keep their defaults (10 new sessions a second per
  address).  One epoll loop, a timer heap, plain non-blocking sockets.

Phases, in this order: registration (real XX handshakes, REGISTER / REGISTERED, pacing the
starts under the node's per-address limit); the node's RSS; a keepalive window of one keepalive
interval (the peers idle, sending keepalives as ``ClientConfig`` does); a renewal window of the
same length (every peer renews its registration once, through the client's own renewal timer);
an idle window (the node's background CPU); then ``--repeats`` repeats of a lookup phase (LOOKUP
with the introduce flag from a random registered peer for another, at ``--rate`` a second) and
an echo phase (the echo server sent the same datagram sizes at the same rate), interleaved,
their order alternating.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import dataclasses
import gc
import heapq
import io
import json
import math
import os
import platform
import pstats
import queue
import random
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import trio
from _common import emit_json, say

from p2pos.adapters.relay import RelayServer, bootstrap_string
from p2pos.proto import Endpoint, Identity, LocalKeys, PeerId
from p2pos.proto.rendezvous.client import (
    ClientConfig,
    IntroductionReceived,
    LookupAnswered,
    RegistrationChanged,
    RendezvousClient,
)
from p2pos.proto.rendezvous.node import STATELESS_RESET, RendezvousNode
from p2pos.proto.session.wire import PacketType
from p2pos.transports import socket_options
from p2pos.transports.udp import RECEIVE_BATCH_CALLS, ReceivedRun, UdpTransport

HERE = Path(__file__).resolve()
#: Source addresses of the peers: 127.0.0.2 .. 127.0.0.251.
SOURCE_HOSTS = tuple(f"127.0.0.{2 + i}" for i in range(250))
#: Seconds between two handshake starts from one source address (the node allows 10 a second, burst 10).
START_SPACING = 0.11
#: Peers started but not yet registered, at most (keeps the node's queue short: no INIT retransmits).
MAX_INFLIGHT = 128
#: IPv4 + UDP headers, added to every datagram's payload for bytes on the wire.
IP_UDP_HEADER = 28
#: node CPU per lookup+introduction / echo CPU per packet: at most this (issue 11, item 9b).
TARGETS: dict[str, float] = {"node_vs_echo_cpu_per_packet": 4.0}
#: Seconds given to answers still in flight after a paced phase stops sending.
DRAIN = 0.3
#: The real defaults, whatever a run shortens.
DEFAULT_CLIENT = ClientConfig()

DATA, KEEPALIVE = int(PacketType.DATA), int(PacketType.KEEPALIVE)
HANDSHAKE_TYPES = (int(PacketType.INIT), int(PacketType.RESPONSE), int(PacketType.FINISH))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    peers: int
    rate: float
    lookup_seconds: float
    repeats: int
    keepalive_interval: float
    keepalive_window: float
    idle_seconds: float
    quick: bool
    seed: int
    profile: Path | None


def parse_options(argv: Sequence[str] | None) -> tuple[str, Options]:
    parser = argparse.ArgumentParser(description="The rendezvous node at 10,000 peers (bench/README.md).")
    parser.add_argument("--role", choices=("bench", "node", "echo"), default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="smoke run: 500 peers, short phases")
    parser.add_argument("--peers", type=int, default=None, help="registered peers (default 10000; 500 quick)")
    parser.add_argument("--rate", type=float, default=None, help="lookups (and echo packets) a second (2000)")
    parser.add_argument("--seconds", type=float, default=None, help="length of each lookup / echo phase (4 s)")
    parser.add_argument("--repeats", type=int, default=None, help="lookup + echo repeats (default 5; 2 quick)")
    parser.add_argument(
        "--keepalive-interval",
        type=float,
        default=None,
        help=f"the clients keepalive interval (default {DEFAULT_CLIENT.keepalive_interval:g} s; 1 quick)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the lookups' random pairs")
    parser.add_argument(
        "--profile", type=Path, default=None, help="cProfile the node during the lookup phases, stats to this file"
    )
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    interval = args.keepalive_interval or (1.0 if quick else DEFAULT_CLIENT.keepalive_interval)
    options = Options(
        peers=args.peers or (500 if quick else 10_000),
        rate=args.rate or (500.0 if quick else 2000.0),
        lookup_seconds=args.seconds or (1.5 if quick else 4.0),
        repeats=args.repeats or (2 if quick else 5),
        keepalive_interval=interval,
        # One whole interval: every peer sends exactly one keepalive in it.
        keepalive_window=interval,
        idle_seconds=1.0 if quick else 5.0,
        quick=quick,
        seed=args.seed,
        profile=args.profile,
    )
    if options.peers < 2 or options.rate <= 0 or options.lookup_seconds <= 0 or options.repeats < 1:
        parser.error("need --peers >= 2, a positive --rate and --seconds, --repeats >= 1")
    return args.role, options


def _line(value: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


# -- the node process ------------------------------------------------------------------------


class CountingTransport(UdpTransport):
    """The node's socket, counting what crosses it: datagrams and payload bytes per direction and
    first byte (the packet type).  A few list increments per datagram."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        gso: bool = False,
        gro: bool = False,
        buffer_sizes: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(sock, gso=gso, gro=gro, buffer_sizes=buffer_sizes)
        self.in_count, self.in_bytes = [0] * 256, [0] * 256
        self.out_count, self.out_bytes = [0] * 256, [0] * 256

    async def receive_runs(self, max_calls: int = RECEIVE_BATCH_CALLS) -> list[ReceivedRun]:
        runs = await super().receive_runs(max_calls)
        count, size = self.in_count, self.in_bytes
        for datagrams, _ in runs:
            for data in datagrams:
                count[data[0]] += 1
                size[data[0]] += len(data)
        return runs

    def _count_out(self, datagrams: Sequence[bytes]) -> None:
        count, size = self.out_count, self.out_bytes
        for data in datagrams:
            count[data[0]] += 1
            size[data[0]] += len(data)

    async def send_batch(self, datagrams: Sequence[bytes], addr: tuple[str, int]) -> None:
        self._count_out(datagrams)
        await super().send_batch(datagrams, addr)

    def send_batch_now(self, datagrams: Sequence[bytes], addr: tuple[str, int]) -> int:
        sent = super().send_batch_now(datagrams, addr)
        self._count_out(datagrams[:sent])  # the rest is counted by send_batch
        return sent

    def counters(self) -> dict[str, dict[str, list[int]]]:
        """{"in"|"out": {type byte: [datagrams, bytes]}} for the types seen."""
        return {
            "in": {str(t): [self.in_count[t], self.in_bytes[t]] for t in range(256) if self.in_count[t]},
            "out": {str(t): [self.out_count[t], self.out_bytes[t]] for t in range(256) if self.out_count[t]},
        }


async def _serve_node(profile: Path | None) -> None:
    keys = LocalKeys.generate(Identity.generate())
    transport = await CountingTransport.bind("127.0.0.1", 0)
    assert isinstance(transport, CountingTransport)
    node = RendezvousNode(keys)
    server = RelayServer(node, transport)
    profiler = cProfile.Profile() if profile is not None else None
    profiling = False
    with trio.open_signal_receiver(signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT) as signals:
        _line({"bootstrap": bootstrap_string(keys, server.address), "port": server.address[1]})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.run)
            async for signum in signals:
                if signum == signal.SIGUSR1:
                    _line(
                        {
                            "cpu_s": time.process_time(),
                            "registrations": len(node),
                            "sessions": len(node.endpoint),
                            "stats": dict(node.stats),
                            "endpoint_drops": dict(node.endpoint.drops),
                            "send_errors": transport.send_errors,
                            "receive_truncated": transport.receive_truncated,
                            "send_calls": transport.send_calls,
                            "receive_calls": transport.receive_calls,
                            **transport.counters(),
                        }
                    )
                elif signum == signal.SIGUSR2 and profiler is not None:
                    if profiling:
                        profiler.disable()
                    else:
                        profiler.enable()
                    profiling = not profiling
                else:
                    nursery.cancel_scope.cancel()
                    break
    if profiler is not None and profile is not None:
        profiler.disable()
        profiler.dump_stats(str(profile))


async def _serve_echo() -> None:
    """The floor: a plain trio UDP echo.  SIGUSR1 prints its CPU clock and packets echoed.

    Its socket buffers are sized as the node's (``UdpTransport.bind``): a burst that waits for
    a busy CPU is queued, not dropped, in both."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    socket_options.size_buffers(raw)
    sock = trio.socket.from_stdlib_socket(raw)
    await sock.bind(("127.0.0.1", 0))
    echoed = 0

    async def echo() -> None:
        nonlocal echoed
        while True:
            data, address = await sock.recvfrom(2048)
            await sock.sendto(data, address)
            echoed += 1

    with trio.open_signal_receiver(signal.SIGUSR1, signal.SIGTERM, signal.SIGINT) as signals:
        _line({"port": sock.getsockname()[1]})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo)
            async for signum in signals:
                if signum == signal.SIGUSR1:
                    _line({"cpu_s": time.process_time(), "echoed": echoed})
                else:
                    nursery.cancel_scope.cancel()
                    break


# -- watching a server process from outside --------------------------------------------------


class Server:
    """A server process (this script, another role): its JSON lines, and /proc readings."""

    def __init__(self, role: str, extra: Sequence[str] = ()) -> None:
        self.role = role
        self.process = subprocess.Popen(
            [sys.executable, str(HERE), "--role", role, *extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.pid = self.process.pid
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        threading.Thread(target=self._pump, args=(self.process.stdout,), daemon=True).start()
        threading.Thread(target=self._stderr.extend, args=(self.process.stderr,), daemon=True).start()
        self.ready = self.next_line(30.0)

    def _pump(self, stream: io.TextIOWrapper) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def next_line(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"{self.role}: no line in {timeout:.0f} s{self.stderr_tail()}") from None
        if line is None:
            raise RuntimeError(f"{self.role} exited early{self.stderr_tail()}")
        value: dict[str, Any] = json.loads(line)
        return value

    def snapshot(self) -> dict[str, Any]:
        """The process's own report (SIGUSR1) plus its CPU time from /proc/PID/stat."""
        os.kill(self.pid, signal.SIGUSR1)
        value = self.next_line(10.0)
        value["proc_cpu_s"] = proc_cpu_seconds(self.pid)
        value["wall"] = time.monotonic()
        return value

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def stderr_tail(self) -> str:
        lines = "".join(self._stderr).strip().splitlines()[-8:]
        return ("; stderr: " + " | ".join(lines)) if lines else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


class Machine:
    """CPU time the rest of the machine uses from now on: all CPUs' busy time (/proc/stat) minus
    the node's, the echo server's and this process's."""

    def __init__(self, *servers: Server) -> None:
        self.servers = servers
        self.start = self._ours(), machine_busy_seconds()

    def _ours(self) -> float:
        return time.process_time() + sum(proc_cpu_seconds(s.pid) for s in self.servers)

    def others(self) -> float:
        ours, busy = self.start
        return (machine_busy_seconds() - busy) - (self._ours() - ours)


def machine_busy_seconds() -> float:
    """Busy time of all CPUs (/proc/stat: everything but idle and iowait)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (/proc/PID/stat, clock ticks: 10 ms here)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss(pid: int) -> int:
    """VmRSS of process ``pid`` in bytes."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS: this benchmark needs Linux")


def udp_drops(port: int) -> int:
    """The kernel's drop counter of the 127.0.0.1:``port`` UDP socket (/proc/net/udp, last column)."""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/udp", encoding="ascii") as table:
        for line in table:
            fields = line.split()
            if len(fields) > 2 and fields[1] == wanted:
                return int(fields[-1])
    return 0


def delta(after: dict[str, Any], before: dict[str, Any], direction: str, ptype: int) -> tuple[int, int]:
    """(datagrams, payload bytes) of type ``ptype`` that crossed the node's socket between two snapshots."""
    a = after[direction].get(str(ptype), [0, 0])
    b = before[direction].get(str(ptype), [0, 0])
    return a[0] - b[0], a[1] - b[1]


def wire_bytes(after: dict[str, Any], before: dict[str, Any]) -> tuple[int, int]:
    """(datagrams, bytes on the wire: payload + 28) both directions, every type, between two snapshots."""
    count = size = 0
    for direction in ("in", "out"):
        for key in set(after[direction]) | set(before[direction]):
            n, b = delta(after, before, direction, int(key))
            count, size = count + n, size + b
    return count, size + IP_UDP_HEADER * count


# -- the load generator ----------------------------------------------------------------------


@dataclasses.dataclass(slots=True, eq=False)
class Peer:
    index: int
    sock: socket.socket
    endpoint: Endpoint
    client: RendezvousClient
    peer_id: bytes
    timer: float | None = None
    registered: bool = False


class Generator:
    """N peers on plain sockets, one epoll loop, a heap of the peers' timers."""

    def __init__(self, node: tuple[str, int], node_id: PeerId, echo: tuple[str, int], options: Options) -> None:
        self.node, self.echo_address, self.options = node, echo, options
        self.selector = selectors.EpollSelector()
        self.heap: list[tuple[float, int, Peer]] = []
        self._seq = 0
        self.counts: collections.Counter[str] = collections.Counter()
        config = ClientConfig(keepalive_interval=options.keepalive_interval)
        self.peers: list[Peer] = []
        for i in range(options.peers):
            host = SOURCE_HOSTS[i % len(SOURCE_HOSTS)]
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.bind((host, 0))
            keys = LocalKeys.generate(Identity.generate())
            endpoint = Endpoint(keys)
            # One candidate, the peer's own address, as a peer announces its interface address.
            client = RendezvousClient(endpoint, node_id, node, config=config, candidates=(sock.getsockname(),))
            peer = Peer(i, sock, endpoint, client, keys.identity.peer_id.public_key)
            self.selector.register(sock, selectors.EVENT_READ, peer)
            self.peers.append(peer)
        self.echo_socks: list[socket.socket] = []
        for host in SOURCE_HOSTS:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.bind((host, 0))
            self.selector.register(sock, selectors.EVENT_READ, None)
            self.echo_socks.append(sock)
        self.registered = 0
        self.started = 0

    # -- the loop ----------------------------------------------------------------------------

    def run(
        self,
        until: float,
        pacer: Callable[[float], float | None] | None = None,
        done: Callable[[], bool] | None = None,
    ) -> None:
        """Serve sockets and timers until ``until`` (or ``done()``); ``pacer(now)`` sends what is
        due and returns when it next wants to run (None: at the next event)."""
        clock = time.monotonic
        heap = self.heap
        while True:
            now = clock()
            if now >= until or (done is not None and done()):
                return
            while heap and heap[0][0] <= now:
                when, _, peer = heapq.heappop(heap)
                if peer.timer != when:
                    continue  # stale: the peer's timer moved
                peer.timer = None
                peer.client.handle_timer(now)
                peer.endpoint.handle_timer(now)
                self._service(peer, now)
            wake = until
            if pacer is not None and (t := pacer(now)) is not None:
                wake = min(wake, t)
            if heap:
                wake = min(wake, heap[0][0])
            for key, _ in self.selector.select(max(0.0, wake - clock())):
                if key.data is None:
                    self._echo_readable(key.fileobj)  # type: ignore[arg-type]
                else:
                    self._readable(key.data, clock())

    def _readable(self, peer: Peer, now: float) -> None:
        sock, endpoint = peer.sock, peer.endpoint
        while True:
            try:
                data, address = sock.recvfrom(4096)
            except BlockingIOError:
                break
            except OSError:
                self.counts["receive_errors"] += 1
                break
            if data and data[0] == STATELESS_RESET:
                self.counts["stateless_resets"] += 1
                peer.client.receive_reset_untrusted(data, address, now)
            else:
                endpoint.receive_data(data, address, now)
        self._service(peer, now)

    def _service(self, peer: Peer, now: float) -> None:
        endpoint, client = peer.endpoint, peer.client
        while (event := endpoint.next_event()) is not None:
            if client.owns(getattr(event, "session_id", -1)):
                client.handle_event(event, now)
        while (client_event := client.next_event()) is not None:
            self._client_event(peer, client_event)
        for datagrams, to, _ in endpoint.data_to_send(now):
            for data in datagrams:
                try:
                    peer.sock.sendto(data, cast("tuple[str, int]", to))
                except OSError:
                    self.counts["send_errors"] += 1
        timer = client.get_timer()
        other = endpoint.get_timer()
        if other is not None and (timer is None or other < timer):
            timer = other
        if timer != peer.timer:
            peer.timer = timer
            if timer is not None:
                self._seq += 1
                heapq.heappush(self.heap, (timer, self._seq, peer))

    def _client_event(self, peer: Peer, event: object) -> None:
        if isinstance(event, RegistrationChanged):
            if event.observed is not None and not peer.registered:
                peer.registered = True
                self.registered += 1
            elif event.observed is None and peer.registered:
                peer.registered = False
                self.registered -= 1
                self.counts["registrations_lost"] += 1
        elif isinstance(event, LookupAnswered):
            self.counts["found" if event.observed is not None else f"lookup_failed: {event.why}"] += 1
        elif isinstance(event, IntroductionReceived):
            self.counts["introductions"] += 1

    def _echo_readable(self, sock: socket.socket) -> None:
        while True:
            try:
                sock.recvfrom(4096)
            except BlockingIOError:
                return
            except OSError:
                self.counts["receive_errors"] += 1
                return
            self.counts["echo_replies"] += 1

    # -- the phases --------------------------------------------------------------------------

    def register_all(self, timeout: float) -> float:
        """Start every peer (at most MAX_INFLIGHT unregistered at once, START_SPACING apart per
        source address) until all are registered; the seconds it took."""
        started_at = time.monotonic()
        last_start: dict[str, float] = {}
        peers = self.peers

        def pacer(now: float) -> float | None:
            while self.started < len(peers) and self.started - self.registered < MAX_INFLIGHT:
                peer = peers[self.started]
                host = SOURCE_HOSTS[peer.index % len(SOURCE_HOSTS)]
                ready = last_start.get(host, -math.inf) + START_SPACING
                if now < ready:
                    return ready
                last_start[host] = now
                self.started += 1
                peer.client.handle_timer(now)  # connects: its first timer is due at once
                self._service(peer, now)
            return None

        self.run(started_at + timeout, pacer, lambda: self.registered >= len(peers))
        return time.monotonic() - started_at

    def idle(self, seconds: float) -> None:
        self.run(time.monotonic() + seconds)

    def renew_all(self, spread: float, rng: random.Random) -> None:
        """Every registered peer renews once within ``spread`` seconds: its client's renewal
        timer (due at half the lease) is moved there; the client does the rest as always."""
        now = time.monotonic()
        for peer in self.peers:
            if peer.registered:
                peer.client._renew_at = now + rng.uniform(0.0, spread)
                self._service(peer, now)
        self.idle(spread + DRAIN * 3)

    def lookups(self, rate: float, seconds: float, rng: random.Random) -> int:
        """LOOKUPs with the introduce flag, a random registered peer for another, ``rate`` a second."""
        registered = [p for p in self.peers if p.registered]
        total = max(1, int(rate * seconds))
        start = time.monotonic()
        sent = 0

        def pacer(now: float) -> float | None:
            nonlocal sent
            due = min(total, int((now - start) * rate) + 1)
            while sent < due:
                asker, target = rng.sample(registered, 2)
                asker.client.lookup(target.peer_id, now, introduce=True)
                self._service(asker, now)
                sent += 1
            return start + sent / rate if sent < total else None

        self.run(start + seconds, pacer)
        self.idle(DRAIN)
        return sent

    def echoes(self, rate: float, seconds: float, sizes: Sequence[int]) -> int:
        """Datagrams of ``sizes`` in turn to the echo server, ``rate`` a second, from the 250 addresses."""
        payloads = [bytes(size) for size in sizes]
        total = max(1, int(rate * seconds))
        start = time.monotonic()
        sent = 0
        socks, address = self.echo_socks, self.echo_address

        def pacer(now: float) -> float | None:
            nonlocal sent
            due = min(total, int((now - start) * rate) + 1)
            while sent < due:
                try:
                    socks[sent % len(socks)].sendto(payloads[sent % len(payloads)], address)
                except OSError:
                    self.counts["send_errors"] += 1
                sent += 1
            return start + sent / rate if sent < total else None

        self.run(start + seconds, pacer)
        self.idle(DRAIN)
        return sent

    def close(self) -> None:
        for peer in self.peers:
            peer.sock.close()
        for sock in self.echo_socks:
            sock.close()
        self.selector.close()


# -- the orchestrator ------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Repeat:
    """One lookup phase and one echo phase."""

    lookups_sent: int = 0
    found: int = 0  # FOUND answers the generator received in the phase
    handled: int = 0  # LOOKUPs with introduce the node answered (FOUND + INTRODUCTION), its own count
    introductions: int = 0
    lookup_wall_s: float = 0.0
    node_cpu_s: float = 0.0
    node_proc_cpu_s: float = 0.0
    keepalives_in: int = 0  # the other peers' keepalives the node handled meanwhile
    lookup_bytes: tuple[int, int] = (0, 0)  # (LOOKUP datagrams in, their bytes)
    answer_bytes: tuple[int, int] = (0, 0)  # (FOUND + INTRODUCTION datagrams out, their bytes)
    echo_sent: int = 0
    echoed: int = 0
    echo_cpu_s: float = 0.0
    echo_proc_cpu_s: float = 0.0
    #: CPU seconds the rest of the machine (not the node, the echo server or this process) used
    #: during the lookup phase and during the echo phase: above ~0.1 s the machine was busy.
    others_cpu_lookup_s: float = 0.0
    others_cpu_echo_s: float = 0.0

    def node_us(self) -> float:
        """All the node's CPU time over the lookup phase per lookup+introduction answered."""
        return self.node_cpu_s / max(1, self.handled) * 1e6

    def node_net_us(self, background: float) -> float:
        """The same minus the node's idle background (keepalives) over the phase's wall time."""
        return (self.node_cpu_s - background * self.lookup_wall_s) / max(1, self.handled) * 1e6

    def echo_us(self) -> float:
        return self.echo_cpu_s / max(1, self.echoed) * 1e6


def _check_alive(*servers: Server) -> None:
    for server in servers:
        if server.process.poll() is not None:
            raise RuntimeError(f"the {server.role} exited ({server.process.returncode}){server.stderr_tail()}")


def measure(options: Options) -> dict[str, Any]:
    node = Server("node", ["--profile", str(options.profile)] if options.profile else [])
    echo = Server("echo")
    gen: Generator | None = None
    try:
        bootstrap = str(node.ready["bootstrap"])
        peer_text = bootstrap.partition("@")[0]
        node_address = ("127.0.0.1", int(node.ready["port"]))
        echo_address = ("127.0.0.1", int(echo.ready["port"]))
        say(f"  node {bootstrap} (pid {node.pid}); echo server on UDP {echo_address[1]} (pid {echo.pid})")
        made = time.monotonic()
        gen = Generator(node_address, PeerId.parse(peer_text), echo_address, options)
        gc.collect()
        gc.freeze()  # the peers' long-lived objects leave the collector's scans
        say(f"  {options.peers} peers (identities, endpoints, sockets) made in {time.monotonic() - made:.1f} s")
        time.sleep(0.5)
        rss_empty = proc_rss(node.pid)
        start = node.snapshot()

        seconds = gen.register_all(timeout=120.0 if not options.quick else 60.0)
        _check_alive(node, echo)
        registered = node.snapshot()
        if gen.registered < options.peers or registered["registrations"] < options.peers:
            raise RuntimeError(
                f"only {gen.registered} peers registered ({registered['registrations']} at the node) in {seconds:.0f} s"
            )
        hs_in = sum(delta(registered, start, "in", t)[0] for t in HANDSHAKE_TYPES)
        say(
            f"  registered {options.peers} in {seconds:.1f} s ({options.peers / seconds:.0f}/s); "
            f"node CPU {registered['cpu_s'] - start['cpu_s']:.1f} s; handshake datagrams in {hs_in}"
        )
        gen.idle(1.0)
        rss_full = proc_rss(node.pid)
        say(
            f"  node RSS {rss_empty / 2**20:.1f} MiB with 0 registered, {rss_full / 2**20:.1f} MiB with {options.peers}"
        )

        # Keepalives: one whole interval, nothing else going on.
        before = node.snapshot()
        gen.idle(options.keepalive_window)
        after = node.snapshot()
        ka_count, ka_bytes = delta(after, before, "in", KEEPALIVE)
        ka_window = after["wall"] - before["wall"]
        ka_wire = wire_bytes(after, before)
        ka_cpu = after["cpu_s"] - before["cpu_s"]
        say(
            f"  keepalive window {ka_window:.1f} s: {ka_count} keepalives in, {ka_wire[0]} datagrams and "
            f"{ka_wire[1]} bytes on the wire both ways; node CPU {ka_cpu:.2f} s"
        )

        # Renewals: every peer once, spread over one keepalive interval (so that the keepalives
        # that follow are spread evenly too), through its client's renewal timer.
        rng = random.Random(options.seed)
        before = node.snapshot()
        gen.renew_all(options.keepalive_window, rng)
        after = node.snapshot()
        reg_in = delta(after, before, "in", DATA)
        reg_out = delta(after, before, "out", DATA)
        renew_keepalives = delta(after, before, "in", KEEPALIVE)[0]
        renew_cpu = after["cpu_s"] - before["cpu_s"]
        say(
            f"  renewal window {after['wall'] - before['wall']:.1f} s: {reg_in[0]} REGISTER in ({reg_in[1]} B), "
            f"{reg_out[0]} REGISTERED out ({reg_out[1]} B), {renew_keepalives} keepalives in; "
            f"node CPU {renew_cpu:.2f} s"
        )

        # The node's background while the peers idle (keepalives), for the lookup phases.
        before = node.snapshot()
        gen.idle(options.idle_seconds)
        after = node.snapshot()
        idle_wall = after["wall"] - before["wall"]
        idle_cpu = after["cpu_s"] - before["cpu_s"]
        idle_keepalives = delta(after, before, "in", KEEPALIVE)[0]
        background = idle_cpu / idle_wall
        say(
            f"  idle window {idle_wall:.1f} s: {idle_keepalives} keepalives in, "
            f"node CPU {idle_cpu:.3f} s ({background:.2%} of a core)"
        )

        repeats: list[Repeat] = []
        sizes: list[int] = []
        for r in range(options.repeats):
            rep = Repeat()
            order = ("lookup", "echo") if r % 2 == 0 else ("echo", "lookup")
            for phase in order:
                if phase == "lookup":
                    if options.profile:
                        node.signal(signal.SIGUSR2)
                    counts = dict(gen.counts)
                    machine = Machine(node, echo)
                    before = node.snapshot()
                    rep.lookups_sent = gen.lookups(options.rate, options.lookup_seconds, rng)
                    after = node.snapshot()
                    rep.others_cpu_lookup_s = machine.others()
                    rep.handled = after["stats"].get("introductions", 0) - before["stats"].get("introductions", 0)
                    if options.profile:
                        node.signal(signal.SIGUSR2)
                    rep.found = gen.counts["found"] - counts.get("found", 0)
                    rep.introductions = gen.counts["introductions"] - counts.get("introductions", 0)
                    rep.lookup_wall_s = after["wall"] - before["wall"]
                    rep.node_cpu_s = after["cpu_s"] - before["cpu_s"]
                    rep.node_proc_cpu_s = after["proc_cpu_s"] - before["proc_cpu_s"]
                    rep.lookup_bytes = delta(after, before, "in", DATA)
                    rep.answer_bytes = delta(after, before, "out", DATA)
                    rep.keepalives_in = delta(after, before, "in", KEEPALIVE)[0]
                    if not sizes:
                        lookup_size = rep.lookup_bytes[1] // max(1, rep.lookup_bytes[0])
                        answer_size = rep.answer_bytes[1] // max(1, rep.answer_bytes[0])
                        sizes = [lookup_size, answer_size, answer_size]
                else:
                    if not sizes:  # the first repeat runs its lookups first: sizes are known here
                        raise RuntimeError("echo before any lookup")
                    machine = Machine(node, echo)
                    before = echo.snapshot()
                    rep.echo_sent = gen.echoes(options.rate, options.lookup_seconds, sizes)
                    after = echo.snapshot()
                    rep.others_cpu_echo_s = machine.others()
                    rep.echoed = after["echoed"] - before["echoed"]
                    rep.echo_cpu_s = after["cpu_s"] - before["cpu_s"]
                    rep.echo_proc_cpu_s = after["proc_cpu_s"] - before["proc_cpu_s"]
            _check_alive(node, echo)
            repeats.append(rep)
            say(
                f"  repeat {r + 1}/{options.repeats}: node answered {rep.handled} lookups ({rep.lookups_sent} sent, "
                f"{rep.found} FOUND and {rep.introductions} INTRODUCTION received in the phase; "
                f"{rep.keepalives_in} keepalives), {rep.node_us():.1f} us each "
                f"({rep.node_net_us(background):.1f} net of the background); echo {rep.echo_us():.1f} us per packet "
                f"({rep.echoed}/{rep.echo_sent}); ratio {rep.node_us() / rep.echo_us():.2f}; "
                f"others' CPU {rep.others_cpu_lookup_s:.2f} / {rep.others_cpu_echo_s:.2f} s"
            )

        end = node.snapshot()
        rss_end = proc_rss(node.pid)
        return {
            "options": options,
            "registration_s": seconds,
            "rss_empty": rss_empty,
            "rss_full": rss_full,
            "rss_end": rss_end,
            "start": start,
            "registered": registered,
            "keepalive": (ka_count, ka_bytes, ka_window, ka_wire, ka_cpu),
            "renewal": (reg_in, reg_out, renew_keepalives, renew_cpu),
            "idle": (idle_wall, idle_cpu, idle_keepalives),
            "background": background,
            "repeats": repeats,
            "sizes": sizes,
            "end": end,
            "generator": dict(gen.counts),
            "udp_drops_node": udp_drops(node_address[1]),
            "udp_drops_echo": udp_drops(echo_address[1]),
        }
    finally:
        if gen is not None:
            gen.close()
        node.stop()
        echo.stop()


def wire_bytes_count(after: dict[str, Any], before: dict[str, Any], direction: str) -> int:
    """Datagrams of every type that crossed the node's socket in ``direction`` between two snapshots."""
    return sum(delta(after, before, direction, int(key))[0] for key in set(after[direction]))


def report(m: dict[str, Any]) -> dict[str, Any]:
    """Figures, ratios, targets met and details from what ``measure`` saw."""
    options: Options = m["options"]
    peers = options.peers
    repeats: list[Repeat] = m["repeats"]
    background: float = m["background"]
    node_us = [r.node_us() for r in repeats]
    net_us = [r.node_net_us(background) for r in repeats]
    echo_us = [r.echo_us() for r in repeats]
    ratio = [n / e for n, e in zip(node_us, echo_us, strict=True)]
    net_ratio = [n / e for n, e in zip(net_us, echo_us, strict=True)]
    stat_ratio = [
        (r.node_proc_cpu_s / max(1, r.handled)) / (r.echo_proc_cpu_s / max(1, r.echoed)) if r.echo_proc_cpu_s else 0.0
        for r in repeats
    ]
    ka_count, ka_bytes, ka_window, ka_wire, ka_cpu = m["keepalive"]
    reg_in, reg_out, renew_keepalives, renew_cpu = m["renewal"]
    idle_wall, idle_cpu, idle_keepalives = m["idle"]
    ka_size = ka_bytes / max(1, ka_count)
    register_size = reg_in[1] / max(1, reg_in[0])
    registered_size = reg_out[1] / max(1, reg_out[0])
    # Per hour, from the measured sizes and the real default intervals: the client renews at half
    # the lease (a REGISTER up, a REGISTERED down) and sends a keepalive after each keepalive
    # interval in which it sent nothing else (a renewal restarts that interval).
    renew_interval = DEFAULT_CLIENT.lease / 2
    ka_per_renewal = math.ceil(renew_interval / DEFAULT_CLIENT.keepalive_interval) - 1
    per_renewal = (
        (register_size + IP_UDP_HEADER) + (registered_size + IP_UDP_HEADER) + ka_per_renewal * (ka_size + IP_UDP_HEADER)
    )
    per_hour = per_renewal * 3600 / renew_interval
    window_per_hour = ka_wire[1] / peers * 3600 / ka_window
    registered, start, end = m["registered"], m["start"], m["end"]
    handshake_wire = 0
    for direction in ("in", "out"):
        for t in HANDSHAKE_TYPES:
            n, b = delta(registered, start, direction, t)
            handshake_wire += b + IP_UDP_HEADER * n
    per_keepalive = idle_cpu / max(1, idle_keepalives)
    handled = sum(r.handled for r in repeats)
    figures = {
        "node_cpu_us_per_lookup": statistics.median(node_us),
        "node_cpu_us_per_lookup_net": statistics.median(net_us),
        "echo_cpu_us_per_packet": statistics.median(echo_us),
        "rss_per_registered_peer_bytes": (m["rss_full"] - m["rss_empty"]) / peers,
        "wire_bytes_per_peer_per_hour": per_hour,
        "keepalive_window_bytes_per_peer_per_hour": window_per_hour,
        "keepalive_datagram_bytes": ka_size,
        "register_datagram_bytes": register_size,
        "registered_datagram_bytes": registered_size,
        "lookup_datagram_bytes": float(m["sizes"][0]),
        "found_datagram_bytes": float(m["sizes"][1]),
        "node_data_datagrams_in_per_lookup": sum(r.lookup_bytes[0] for r in repeats) / max(1, handled),
        "node_data_datagrams_out_per_lookup": sum(r.answer_bytes[0] for r in repeats) / max(1, handled),
        "lookups_per_s": statistics.median(r.handled / options.lookup_seconds for r in repeats),
        "registration_s": m["registration_s"],
        "node_cpu_ms_per_registration": (registered["cpu_s"] - start["cpu_s"]) / peers * 1e3,
        "handshake_wire_bytes_per_peer": handshake_wire / peers,
        "node_cpu_us_per_keepalive": per_keepalive * 1e6,
        "node_cpu_us_per_renewal": (renew_cpu - per_keepalive * renew_keepalives) / max(1, reg_in[0]) * 1e6,
        "node_background_cpu_pct": background * 100,
        "node_rss_mib_registered": m["rss_full"] / 2**20,
    }
    ratios = {
        "node_vs_echo_cpu_per_packet": statistics.median(ratio),
        "node_net_vs_echo_cpu_per_packet": statistics.median(net_ratio),
        "node_vs_echo_cpu_per_packet_proc_stat": statistics.median(stat_ratio),
    }
    met = {name: ratios[name] <= limit for name, limit in TARGETS.items()}
    details = {
        "node_vs_echo_cpu_per_packet": _spread(ratio),
        "node_net_vs_echo_cpu_per_packet": _spread(net_ratio),
        "node_vs_echo_cpu_per_packet_proc_stat": _spread(stat_ratio),
        "node_cpu_us_per_lookup": _spread(node_us),
        "node_cpu_us_per_lookup_net": _spread(net_us),
        "echo_cpu_us_per_packet": _spread(echo_us),
        "repeats": [dataclasses.asdict(r) for r in repeats],
        "keepalive_window": {
            "seconds": round(ka_window, 2),
            "keepalives_in": ka_count,
            "datagrams_both_ways": ka_wire[0],
            "wire_bytes_both_ways": ka_wire[1],
            "keepalive_interval_s": options.keepalive_interval,
            "node_cpu_s": round(ka_cpu, 3),
        },
        "renewal_window": {
            "register_in": list(reg_in),
            "registered_out": list(reg_out),
            "keepalives_in": renew_keepalives,
            "node_cpu_s": round(renew_cpu, 3),
        },
        "idle_window": {"seconds": round(idle_wall, 2), "keepalives_in": idle_keepalives, "node_cpu_s": idle_cpu},
        "per_hour": {
            "renewals": 3600 / renew_interval,
            "keepalives": ka_per_renewal * 3600 / renew_interval,
            "lease_s": DEFAULT_CLIENT.lease,
            "keepalive_interval_s": DEFAULT_CLIENT.keepalive_interval,
        },
        "echo_sizes": m["sizes"],
        "rss_bytes": {"empty": m["rss_empty"], "registered": m["rss_full"], "end": m["rss_end"]},
        "node_stats": end["stats"],
        "node_endpoint_drops": end["endpoint_drops"],
        "node_send_errors": end["send_errors"],
        "node_udp_drops": m["udp_drops_node"],
        "echo_udp_drops": m["udp_drops_echo"],
        "node_datagrams_per_receive_call": round(
            wire_bytes_count(end, start, "in") / max(1, end["receive_calls"] - start["receive_calls"]), 3
        ),
        "generator": m["generator"],
    }
    return {"figures": figures, "ratios": ratios, "met": met, "details": details}


def _spread(values: Sequence[float]) -> dict[str, Any]:
    return {
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "samples": [round(v, 3) for v in values],
    }


def _print(result: dict[str, Any], options: Options) -> None:
    figures, ratios, met, details = result["figures"], result["ratios"], result["met"], result["details"]
    say("")
    say(f"{'figure':<44} {'value':>12}")
    for name, value in figures.items():
        say(f"{name:<44} {value:>12.2f}")
    say("")
    say(f"{'ratio (median of repeats)':<44} {'value':>8}  range over {options.repeats} repeats")
    for name, value in ratios.items():
        spread = details.get(name)
        shown = f"{spread['min']:.2f}-{spread['max']:.2f}" if spread else ""
        target = f"  target <= {TARGETS[name]:g}: {'met' if met[name] else 'MISSED'}" if name in TARGETS else ""
        say(f"{name:<44} {value:>8.2f}  {shown}{target}")
    say(f"targets met: {sum(met.values())}/{len(met)}")


def _print_profile(path: Path) -> None:
    say("")
    say(f"node profile (cProfile during the lookup phases; {path}), top 25 by own time:")
    out = io.StringIO()
    pstats.Stats(str(path), stream=out).sort_stats("tottime").print_stats(25)
    for line in out.getvalue().splitlines():
        if line.strip():
            say("  " + line)


def main(argv: Sequence[str] | None = None) -> None:
    role, options = parse_options(argv)
    if role == "node":
        trio.run(_serve_node, options.profile)
        return
    if role == "echo":
        trio.run(_serve_echo)
        return
    started = time.perf_counter()
    say(
        f"rendezvous: {options.peers} peers over {len(SOURCE_HOSTS)} source addresses, lookups at "
        f"{options.rate:g}/s, {options.repeats} x {options.lookup_seconds:g} s (bench/README.md)"
    )
    if options.profile:
        say("  PROFILING: the node runs under cProfile during the lookup phases; its CPU figures are inflated")
    measured = measure(options)
    result = report(measured)
    _print(result, options)
    if options.profile:
        _print_profile(options.profile)
    total = time.perf_counter() - started
    say(f"total {total:.0f} s")
    emit_json(
        {
            "bench": "rendezvous",
            "figures": {k: round(v, 3) for k, v in result["figures"].items()},
            "ratios": {k: round(v, 3) for k, v in result["ratios"].items()},
            "targets": TARGETS,
            "targets_met": result["met"],
            "details": result["details"],
            "settings": {
                "peers": options.peers,
                "source_addresses": len(SOURCE_HOSTS),
                "rate_per_s": options.rate,
                "phase_s": options.lookup_seconds,
                "repeats": options.repeats,
                "keepalive_interval_s": options.keepalive_interval,
                "quick": options.quick,
                "profiled": options.profile is not None,
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "elapsed_s": round(total, 1),
            },
        }
    )


if __name__ == "__main__":
    main()
