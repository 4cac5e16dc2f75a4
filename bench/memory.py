#!/usr/bin/env python3
"""Memory per idle established connection: the session and channel layer, RSS and tracemalloc.

Run ``python bench/memory.py`` (about a minute for 10,000 connections), ``--count N`` to
scale, ``--quick`` for a smoke run (500 connections; the figures mean little).  For the
compiled core: ``PYTHONPATH=build/compiled python bench/memory.py``; the first line says
which core was measured.  The last line of stdout is one JSON object:
``{"bench": "memory", "figures": {...}, "ratios": {...}, "targets": {...}, "targets_met": {...}}``.

**What is measured.** ``count`` established ``Connection`` objects (each over its
``SecureSession``) kept on ONE side, in one process, idle: handshake done, the first
control frames (MAX_CHANNELS) exchanged and acknowledged, no channel open, events
drained, as a server holds connections that are not talking.  Each kept connection is
the responder of an in-memory handshake with a peer ``Connection`` that is discarded
once the exchange is quiet, so only one side's objects stay alive.

* ``rss_per_idle_connection_kib``: growth of the resident set (``VmRSS`` in
  /proc/self/status, after ``gc.collect()``) from before the first kept connection to
  after the last, divided by ``count``.  Everything counts: Python objects, the
  allocator's overhead and fragmentation, and the AEAD contexts OpenSSL allocates
  outside Python's allocator.  The target (at most 12 KiB) applies to this figure.
* ``tracemalloc_per_idle_connection_kib``: the same growth as ``tracemalloc`` sees it
  (a second pass, at most 2,000 connections: tracing slows allocation down), i.e. the
  Python objects only.
* ``aead_contexts_per_connection``: the ``RecordAead`` objects alive per connection
  (one per direction; a receiver holds the previous epoch's key only during its grace
  period), and ``openssl_per_aead_context_kib``: what one ``ChaCha20Poly1305`` context
  costs in RSS beyond what tracemalloc sees (measured here on fresh contexts).  Their
  product is the OpenSSL part of a connection that tracemalloc cannot see.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import platform
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable

from _common import emit_json, say
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from p2pos.proto import Identity, LocalKeys, SecureSession
from p2pos.proto.channels.connection import ChannelConfig, Connection
from p2pos.proto.handshake.handshake import BindingCache
from p2pos.proto.identity import crypto

#: figure -> the most it should be (this benchmark's targets are upper bounds).
TARGETS: dict[str, float] = {"rss_per_idle_connection_kib": 12.0}
#: Connections measured by default, and with --quick.
COUNT = 10_000
QUICK_COUNT = 500
#: The tracemalloc pass measures at most this many connections (tracing is slow).
TRACED_MAX = 2_000
#: Handshakes run (and thrown away) before measuring: code paths, caches and the allocator warm up.
WARMUP = 200
#: How long after the handshake the exchange may run to settle (ACK delays): far below any keepalive.
SETTLE = 1.0


def core_build() -> str:
    """Which core this run measured: ``"compiled"`` (tools/compile_core.py, mypyc) or ``"python"``."""
    from p2pos.proto.channels import connection

    return "python" if connection.__file__.endswith(".py") else "compiled"


def rss() -> int:
    """The resident set size of this process in bytes (Linux)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status: this benchmark needs Linux")


def _keys(name: str) -> LocalKeys:
    seed = hashlib.sha256(b"memory-identity:" + name.encode()).digest()
    static = hashlib.sha256(b"memory-static:" + name.encode()).digest()
    return LocalKeys.create(Identity.from_seed(seed), static)


class Factory:
    """Makes idle established connections: the responder side is kept, the initiator discarded."""

    def __init__(self) -> None:
        self.keys_peer = _keys("peer")
        self.keys_kept = _keys("kept")
        # As an Endpoint does: a returning peer's binding signature is verified once.
        self.cache_peer = BindingCache()
        self.cache_kept = BindingCache()
        self.config = ChannelConfig()
        self.now = 0.0

    def establish(self, index: int) -> Connection:
        now = self.now
        peer_session = SecureSession.initiate(self.keys_peer, local_index=index, now=now, binding_cache=self.cache_peer)
        peer = Connection(peer_session, now, self.config)
        (init,) = peer.data_to_send(now)
        session = SecureSession.respond_untrusted(
            self.keys_kept, init, local_index=index, now=now, binding_cache=self.cache_kept
        )
        kept = Connection(session, now, self.config)
        _settle(peer, kept, now, now + SETTLE)
        if kept.state.value != "ready" or peer.state.value != "ready":
            raise RuntimeError(f"connection {index}: the handshake did not complete")
        self.now += 0.001  # connections made one after another, as a server accepts them
        return kept


def _settle(a: Connection, b: Connection, now: float, end: float) -> None:
    """Exchange datagrams and fire timers until nothing is due before ``end``."""
    while True:
        moved = True
        while moved:
            moved = False
            for src, dst in ((a, b), (b, a)):
                for datagram in src.data_to_send(now):
                    dst.receive_data(datagram, now)
                    moved = True
            for conn in (a, b):
                while conn.next_event() is not None:
                    pass
        timers = [t for t in (a.get_timer(), b.get_timer()) if t is not None and t < end]
        if not timers:
            return
        now = max(now, min(timers))
        for conn in (a, b):
            timer = conn.get_timer()
            if timer is not None and timer <= now:
                conn.handle_timer(now)


def _aead_contexts(kept: list[Connection]) -> float:
    """``RecordAead`` objects alive per kept connection (every other one was freed)."""
    gc.collect()
    count = sum(1 for obj in gc.get_objects() if isinstance(obj, crypto.RecordAead))
    return count / len(kept)


def _openssl_per_context(count: int = 5_000) -> tuple[float, float]:
    """(RSS, tracemalloc) bytes per fresh ChaCha20Poly1305 context after one use."""
    keys = [os.urandom(32) for _ in range(count)]

    def make() -> list[ChaCha20Poly1305]:
        contexts = [ChaCha20Poly1305(key) for key in keys]
        for context in contexts:
            context.encrypt(bytes(12), b"x", b"")
        return contexts

    gc.collect()
    before = rss()
    contexts = make()
    gc.collect()
    grown = rss() - before
    del contexts
    gc.collect()
    tracemalloc.start()
    traced_before = tracemalloc.get_traced_memory()[0]
    contexts = make()
    traced = tracemalloc.get_traced_memory()[0] - traced_before
    tracemalloc.stop()
    del contexts
    return grown / count, traced / count


def _openssl_in_child() -> tuple[float, float]:
    """``_openssl_per_context`` in a fresh process: memory freed here would hide the contexts' growth."""
    done = subprocess.run(
        [sys.executable, __file__, "--openssl-probe"], capture_output=True, text=True, check=True, timeout=120
    )
    grown, traced = done.stdout.split()
    return float(grown), float(traced)


def _measure(factory: Factory, count: int, probe: Callable[[], int]) -> tuple[float, list[Connection]]:
    gc.collect()
    before = probe()
    kept = [factory.establish(i + 1) for i in range(count)]
    gc.collect()
    return (probe() - before) / count, kept


def _top_sites(snapshot_before: tracemalloc.Snapshot, snapshot_after: tracemalloc.Snapshot, count: int) -> None:
    stats = snapshot_after.compare_to(snapshot_before, "lineno")
    say("  largest allocation sites (bytes per connection; compiled code counts at its Python caller):")
    for stat in stats[:12]:
        frame = stat.traceback[0]
        name = os.path.relpath(frame.filename) if "p2pos" in frame.filename else os.path.basename(frame.filename)
        say(f"    {stat.size_diff / count:8.0f}  {name}:{frame.lineno}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--count", type=int, default=None, help=f"connections to keep (default {COUNT})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_COUNT} connections: a smoke run")
    parser.add_argument("--sites", action="store_true", help="print the largest tracemalloc allocation sites")
    parser.add_argument("--openssl-probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.openssl_probe:
        print(*_openssl_per_context())
        return 0
    count = args.count if args.count is not None else (QUICK_COUNT if args.quick else COUNT)
    if count < 1:
        parser.error("--count must be positive")
    core = core_build()
    say(f"memory: python {platform.python_version()}, core: {core}; {count} idle established connections")
    factory = Factory()
    started = time.perf_counter()
    for i in range(WARMUP):
        factory.establish(10_000_000 + i)

    rss_per, kept = _measure(factory, count, rss)
    aeads = _aead_contexts(kept)
    say(f"  {count} connections kept in {time.perf_counter() - started:.1f} s")
    del kept

    traced_count = min(count, TRACED_MAX)
    gc.collect()
    tracemalloc.start()
    before_snapshot = tracemalloc.take_snapshot() if args.sites else None
    traced_per, kept = _measure(factory, traced_count, lambda: tracemalloc.get_traced_memory()[0])
    if before_snapshot is not None:
        _top_sites(before_snapshot, tracemalloc.take_snapshot(), traced_count)
    tracemalloc.stop()
    del kept

    openssl_rss, openssl_traced = _openssl_in_child()
    openssl_hidden = max(0.0, openssl_rss - openssl_traced)
    kib = 1024.0
    figures = {
        "rss_per_idle_connection_kib": rss_per / kib,
        "tracemalloc_per_idle_connection_kib": traced_per / kib,
        "aead_contexts_per_connection": aeads,
        "openssl_per_aead_context_kib": openssl_hidden / kib,
        "openssl_per_idle_connection_kib": aeads * openssl_hidden / kib,
    }
    explained = traced_per + aeads * openssl_hidden
    ratios = {"explained_vs_rss": explained / rss_per if rss_per > 0 else 0.0}
    met = {name: figures[name] <= limit for name, limit in TARGETS.items()}

    say("")
    say(f"{'figure':<40} {'value':>9}")
    for name, value in figures.items():
        verdict = f"  target <= {TARGETS[name]:g}: {'met' if met[name] else 'MISSED'}" if name in TARGETS else ""
        say(f"{name:<40} {value:>9.2f}{verdict}")
    say(f"{'(tracemalloc + OpenSSL) / RSS':<40} {ratios['explained_vs_rss']:>9.2f}")
    emit_json(
        {
            "bench": "memory",
            "figures": {k: round(v, 3) for k, v in figures.items()},
            "ratios": {k: round(v, 3) for k, v in ratios.items()},
            "targets": TARGETS,
            "targets_met": met,
            "settings": {"connections": count, "traced_connections": traced_count, "core": core},
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
