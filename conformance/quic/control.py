"""The IUT's control (spec/quic.md §7): a process with JSON events on stdout and commands on stdin.

``Iut.start(command)`` runs the command, waits for its ``ready`` line and keeps a thread
reading its events into a queue.  Cases send ``dial``, ``send``, ``close`` (and, to a shared
socket, ``shared_dial``, ``introduced``, ``drops``) lines and wait
for the events they expect (``expect``) or check that none came (``quiet``).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..checks import CaseFailed

Event = dict[str, Any]


class Pumped(Protocol):
    def pump(self, until: Callable[[], bool] = ..., timeout: float = ...) -> bool: ...


#: The listener handshake timeout the runner asks for (environment P2POS_QUIC_HANDSHAKE_TIMEOUT).
HANDSHAKE_TIMEOUT = 2.0


class Iut:
    """A running IUT process."""

    def __init__(self, process: subprocess.Popen[str], ready: Event, events: queue.Queue[Event | None]) -> None:
        self.process = process
        self.port = int(ready["port"])
        #: The port of its shared socket (spec/quic.md §5.1: p2pos sessions and QUIC on one socket), if it has one.
        shared = ready.get("shared_port")
        self.shared_port = int(shared) if isinstance(shared, int) else None
        self.peer_id = str(ready["peer_id"])
        self._events = events
        #: Every event seen, in order (for a failure's detail).
        self.seen: list[Event] = []
        self._tags = 0
        #: The runner's QUIC peer of the running case: driven while the runner waits for events.
        self.peer: Pumped | None = None

    @classmethod
    def start(cls, command: Sequence[str], timeout: float = 20.0) -> Iut:
        env = dict(os.environ, P2POS_QUIC_HANDSHAKE_TIMEOUT=str(HANDSHAKE_TIMEOUT), PYTHONUNBUFFERED="1")
        process = subprocess.Popen(
            list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, bufsize=1
        )
        events: queue.Queue[Event | None] = queue.Queue()
        threading.Thread(target=_read, args=(process, events), daemon=True).start()
        try:
            ready = events.get(timeout=timeout)
        except queue.Empty:
            ready = None
        if ready is None or ready.get("event") != "ready":
            process.kill()
            process.wait()
            raise CaseFailed(f"the IUT did not print its ready line within {timeout} s (got {ready!r})")
        return cls(process, ready, events)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def command(self, line: str) -> None:
        if self.process.stdin is None or not self.alive:
            raise CaseFailed(f"the IUT has exited (status {self.process.poll()}) before: {line}")
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def dial(self, port: int, peer_id: str, host: str = "127.0.0.1", *, shared: bool = False) -> str:
        """Ask the IUT to dial (``shared``: from its shared socket, ``shared_dial``); returns the tag its
        ``dialed`` / ``dial_failed`` event will carry."""
        self._tags += 1
        tag = f"d{self._tags}"
        self.command(f"{'shared_dial' if shared else 'dial'} {tag} {host} {port} {peer_id}")
        return tag

    def next(self, timeout: float) -> Event | None:
        """The next event within ``timeout`` seconds; the attached ``peer`` keeps running meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self._events.get(timeout=0.0 if self.peer is not None else max(timeout, 0.0))
                break
            except queue.Empty:
                left = deadline - time.monotonic()
                if self.peer is None or left <= 0:
                    return None
                self.peer.pump(timeout=min(left, 0.02))
        if event is None:  # the reader's end: keep it for the next caller
            self._events.put(None)
            time.sleep(min(timeout, 0.05))
            return None
        self.seen.append(event)
        return event

    def expect(self, match: Callable[[Event], bool], what: str, timeout: float = 5.0) -> Event:
        """The next event that ``match``es (others are kept in ``seen``); CaseFailed after ``timeout``."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            event = self.next(left)
            if event is not None and match(event):
                return event
        raise CaseFailed(f"the IUT did not report {what} within {timeout} s (its last events: {self.seen[-4:]})")

    def drain(self, timeout: float) -> list[Event]:
        """Every event within ``timeout`` seconds."""
        out, deadline = [], time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            event = self.next(left)
            if event is not None:
                out.append(event)
        return out

    def stop(self) -> None:
        with contextlib.suppress(CaseFailed, OSError):
            self.command("quit")
        try:
            self.process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _read(process: subprocess.Popen[str], events: queue.Queue[Event | None]) -> None:
    if process.stdout is None:
        events.put(None)
        return
    for line in process.stdout:
        try:
            event = json.loads(line)
        except ValueError:
            event = {"event": "garbage", "line": line.rstrip("\n")[:200]}
        events.put(event if isinstance(event, dict) else {"event": "garbage", "line": line[:200]})
    events.put(None)
