"""What every carrier transport shares: a bounded outbox, an inbox of runs, and how a loss is told.

A carrier (a TURN allocation, a QUIC connection) is not a kernel socket: sending means an
``await`` on something that may stall or die.  The node (adapters/node.py) must never wait on
it from its receive loop, and must never see an exception from it.  So a transport puts what
the node sends into an ``Outbox`` (``put_now`` takes what fits without waiting, ``put`` waits
for room: the node's backpressure), and one sender task per carrier drains it.  What the
carrier delivers goes into an ``Inbox``, from which ``receive_runs`` takes everything ready,
grouped into runs of one address, as a UDP socket's ``receive_runs`` does.

Once a carrier is lost, its outbox takes and counts everything (a lost datagram, as on UDP),
and the transport reports ``CarrierLost`` to its ``on_lost`` callback, once per carrier.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from collections import deque
from collections.abc import Callable, Sequence

import trio

log = logging.getLogger("p2pos.carriers")

Address = tuple[str, int]

#: Datagrams an outbox holds before ``put_now`` refuses and ``put`` waits.
OUTBOX_DATAGRAMS = 256
#: Datagrams an inbox holds before the carrier's reader waits for the node to take them.
INBOX_DATAGRAMS = 4096


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CarrierLost:
    """A carrier stopped working: ``address`` (None: every address of the transport; port 0: every
    port of that IP) is unreachable through it.

    ``kind`` is ``"turn"`` or ``"quic"``; ``reason`` says why, in words (the carrier's error).
    """

    kind: str
    address: Address | None
    reason: str


LostCallback = Callable[[CarrierLost], None]


class Outbox:
    """Datagrams waiting for one carrier's sender task, with the address each batch goes to."""

    def __init__(self, limit: int = OUTBOX_DATAGRAMS) -> None:
        self.limit = limit
        self._batches: deque[tuple[list[bytes], Address]] = deque()
        self._count = 0
        self._ready = trio.Event()
        self._room = trio.Event()
        #: Why the carrier is gone (then every put is a counted loss), or None.
        self.lost: str | None = None
        #: Datagrams taken after the carrier was lost, or left in the outbox when it was.
        self.dropped = 0

    def put_now(self, datagrams: Sequence[bytes], addr: Address) -> int:
        """Queue as many of ``datagrams`` as fit without waiting; how many went (lost ones count as gone)."""
        if self.lost is not None:
            self.dropped += len(datagrams)
            return len(datagrams)
        taken = min(len(datagrams), self.limit - self._count)
        if taken > 0:
            self._batches.append((list(datagrams[:taken]), addr))
            self._count += taken
            self._ready.set()
        return max(taken, 0)

    async def put(self, datagrams: Sequence[bytes], addr: Address) -> None:
        """Queue all of ``datagrams``, waiting for room (the sender task's progress) as needed."""
        start = 0
        while True:
            start += self.put_now(datagrams[start:], addr)
            if start >= len(datagrams):
                break
            self._room = trio.Event() if self._room.is_set() else self._room
            await self._room.wait()
        await trio.lowlevel.checkpoint()

    async def take(self) -> list[tuple[list[bytes], Address]]:
        """Everything queued (waits while there is nothing); ``trio.EndOfChannel`` once lost."""
        while not self._batches:
            if self.lost is not None:
                raise trio.EndOfChannel(self.lost)
            self._ready = trio.Event()
            await self._ready.wait()
        batches = list(self._batches)
        self._batches.clear()
        self._count = 0
        self._room.set()
        return batches

    def lose(self, reason: str) -> None:
        """The carrier is gone: drop (and count) what waits, wake every waiter."""
        if self.lost is None:
            self.lost = reason
            self.dropped += self._count
            self._batches.clear()
            self._count = 0
        self._ready.set()
        self._room.set()


class Inbox:
    """Datagrams the carriers delivered, for ``receive_runs``; bounded (the readers wait for room)."""

    def __init__(self, limit: int = INBOX_DATAGRAMS) -> None:
        self.limit = limit
        self._items: deque[tuple[bytes, Address]] = deque()
        self._ready = trio.Event()
        self._room = trio.Event()

    async def put(self, data: bytes, addr: Address) -> None:
        while len(self._items) >= self.limit:
            self._room = trio.Event() if self._room.is_set() else self._room
            await self._room.wait()
        self._items.append((data, addr))
        self._ready.set()

    async def take_runs(self) -> list[tuple[list[bytes], Address]]:
        """Everything ready, as runs of consecutive datagrams from one address; waits for the first."""
        while not self._items:
            self._ready = trio.Event()
            await self._ready.wait()
        runs: list[tuple[list[bytes], Address]] = []
        for data, addr in self._items:
            if runs and runs[-1][1] == addr:
                runs[-1][0].append(data)
            else:
                runs.append(([data], addr))
        self._items.clear()
        self._room.set()
        await trio.lowlevel.checkpoint_if_cancelled()
        return runs


def report(callback: LostCallback | None, event: CarrierLost) -> None:
    """Log the loss and tell ``callback``; a failing callback is logged, never raised into a carrier task."""
    log.warning("%s carrier lost%s: %s", event.kind, f" ({event.address})" if event.address else "", event.reason)
    if callback is not None:
        try:
            callback(event)
        except Exception:
            log.exception("on_lost callback failed for %s", event)


def ip_address(addr: object, family: int, whose: str) -> Address:
    """``addr`` as (ip, port) of IP version ``family``; ValueError with the reason if not
    (``whose``: what has that family, e.g. "this QUIC listener")."""
    if not (isinstance(addr, tuple) and len(addr) == 2):
        raise ValueError(f"an address is (ip, port), not {addr!r}")
    host, port = addr
    try:
        ip = ipaddress.ip_address(host)
    except (ValueError, TypeError):
        raise ValueError(f"{host!r} is not an IP address") from None
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise ValueError(f"port {port!r} is not in 1..65535")
    if ip.version != family:
        raise ValueError(f"{host} is IPv{ip.version} but {whose} is IPv{family}")
    return (str(ip), port)
