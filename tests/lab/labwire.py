"""A userspace wire for the namespace lab: two TUN devices joined with delay, loss and a rate.

    python labwire.py NS_A IF_A NS_B IF_B

For kernels without ``sch_netem`` (netlab.py uses ``tc ... netem`` where it exists).  Creates a
TUN device named IF_A inside namespace NS_A and IF_B inside NS_B (the lab then gives them
addresses), prints ``ready``, then copies IP packets between them.  Each stdin line is a JSON
impairment ``{"delay_ms": 25, "loss_pct": 1.0, "rate_kbit": null}`` applied to both directions
at once, answered with ``ok`` on stdout (netem's semantics: the delay is added per direction,
the rate serialises packets, at most 1000 packets wait per direction, the rest are dropped).
Exits when stdin closes (its lab ended or died); the TUN devices go with it.
"""

from __future__ import annotations

import ctypes
import fcntl
import heapq
import json
import os
import random
import select
import struct
import sys
import time

_CLONE_NEWNET = 0x40000000
_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
_LIMIT = 1000

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def open_tun(ns: str, name: str) -> int:
    """A TUN device ``name`` created inside namespace ``ns`` (it stays there; the fd works from anywhere)."""
    _setns(f"/run/netns/{ns}")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI))
    return fd


class Direction:
    """Packets read from ``source`` wait here until their time to be written to ``sink``."""

    def __init__(self, source: int, sink: int) -> None:
        self.source, self.sink = source, sink
        self.queue: list[tuple[float, int, bytes]] = []
        self.serial = 0
        self.busy_until = 0.0  # when the rate-limited "line" is free again

    def take(self, now: float, delay: float, loss: float, rate_bps: float | None) -> None:
        while True:
            try:
                packet = os.read(self.source, 65536)
            except BlockingIOError:
                return
            if (loss and random.random() * 100 < loss) or len(self.queue) >= _LIMIT:
                continue
            start = max(now, self.busy_until)
            if rate_bps:
                self.busy_until = start + len(packet) * 8 / rate_bps
                start = self.busy_until
            self.serial += 1
            heapq.heappush(self.queue, (start + delay, self.serial, packet))

    def give(self, now: float) -> None:
        while self.queue and self.queue[0][0] <= now:
            _, _, packet = heapq.heappop(self.queue)
            try:
                os.write(self.sink, packet)
            except OSError:  # the far device is down or full: the packet is lost, as on a wire
                pass


def main(argv: list[str]) -> int:
    ns_a, if_a, ns_b, if_b = argv
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    fd_a = open_tun(ns_a, if_a)
    fd_b = open_tun(ns_b, if_b)
    if _libc.setns(home, _CLONE_NEWNET) != 0:
        return 1
    directions = [Direction(fd_a, fd_b), Direction(fd_b, fd_a)]
    delay, loss, rate_bps = 0.0, 0.0, None
    stdin = sys.stdin.fileno()
    print("ready", flush=True)
    pending = b""
    while True:
        now = time.monotonic()
        due = min((d.queue[0][0] for d in directions if d.queue), default=None)
        timeout = None if due is None else max(0.0, due - now)
        readable, _, _ = select.select([fd_a, fd_b, stdin], [], [], timeout)
        now = time.monotonic()
        if stdin in readable:
            chunk = os.read(stdin, 4096)
            if not chunk:
                return 0
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                wanted = json.loads(line)
                delay = float(wanted["delay_ms"]) / 1000
                loss = float(wanted["loss_pct"])
                rate_bps = float(wanted["rate_kbit"]) * 1000 if wanted.get("rate_kbit") else None
                print("ok", flush=True)
        for d in directions:
            if d.source in readable:
                d.take(now, delay, loss, rate_bps)
            d.give(now)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
