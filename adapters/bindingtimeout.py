"""The daemon learns its router's binding timeout and keeps its bindings with it (spec/nat.md §5.5).

``BindingTimeouts`` drives the sans-IO ``BindingTimeoutProber`` (nat/binding_timeout.py) and one
``BindingKeeper`` (nat/keepalive.py) per rendezvous registration over UDP:

    keeper = BindingTimeouts(node, rendezvous, nat, configured=settings.keepalive)
    nursery.start_soon(keeper.run)     # never blocks start-up, never raises
    keeper.status()                    # the ``keepalive`` object of GET /v1/status ``nat``

Once the daemon's NAT probe (adapters/natprobe.py) measured a NAT behind a registration over
UDP, it searches for the timeout on spare UDP sockets against that rendezvous node, the main
socket as control (NAT-5.5.1); the main socket's STUN answers reach it through the node's
``foreign_handlers["stun"]`` (what it does not claim goes on to the handler before it: the
punching driver's).  From then on the binding to each node is kept by STUN Binding keepalives
that draw a reply (NAT-5.3) at the prober's safe interval, then at the learned one; the
rendezvous clients send no KEEPALIVE records meanwhile (NAT-5.5.2).  Peer sessions get the
interval NAT-5.2 asks for (NAT-5.5.3).  A keepalive unanswered, a new public address, a lapsed
registration or a network change start the search again (NAT-5.5.4); an answer naming another
node instance (the node restarted, RDV-7.8) renews that registration at once (NAT-5.5.9).  No NAT (a public address),
no UDP registration (UDP blocked) or a search that cannot work leave the configured interval in
force, and status says why.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

import trio

from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.events import ForeignDatagramReceived
from p2pos.proto.nat.addresses import is_ip
from p2pos.proto.nat.binding_timeout import BindingTimeoutProber, SearchConfig, TimeoutLearned, TimeoutSearchFailed
from p2pos.proto.nat.discovery import NatReport
from p2pos.proto.nat.keepalive import (
    BindingKeeper,
    KeepaliveAnswered,
    KeeperEvent,
    MappingChanged,
    NodeRestarted,
    keepalive_flows,
)
from p2pos.proto.rendezvous.client import ClientState

from .nodetypes import Address, _show

if TYPE_CHECKING:
    from .natprobe import NatProbe
    from .node import Node
    from .rendezvous import Registration, Rendezvous

log = logging.getLogger("p2pos.bindingtimeout")

#: NAT-5.5.3: the longest interval a peer session is given (its idle timeout is then 3 x 300 + 1 s):
#: under endpoint-independent mapping and filtering the router needs no per-peer keepalive, and
#: this one only tells whether the peer is still there (spec/paths.md PTH-7.2).
PEER_MAX_INTERVAL: Final = 300.0
#: How often the driver looks again while it waits for a registration and the NAT measurement.
POLL: Final = 1.0
#: NAT-5.5.7: under a port mapping, keepalives at most this fraction of the mapping's lifetime apart.
MAPPED_FRACTION: Final = 0.5
#: NAT-5.5.8: a failed search runs again this long after, then after twice as long each time, at
#: most ``RETRY_MAX`` apart (a lossy moment, a node restarting, a full socket table pass).
RETRY_FIRST: Final = 600.0
RETRY_MAX: Final = 6 * 3600.0


class Spare(Protocol):
    """A spare UDP socket: sends without waiting (a datagram that does not fit is a lost one)."""

    def send(self, data: bytes, address: Address) -> None: ...
    async def receive(self) -> tuple[bytes, Address]: ...
    def close(self) -> None: ...


class UdpSpare:
    """A spare UDP socket bound to ``host`` (the main socket's address), any port."""

    def __init__(self, host: str) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._sock.setblocking(False)
            self._sock.bind((host, 0))
        except OSError:
            self._sock.close()
            raise

    def send(self, data: bytes, address: Address) -> None:
        with contextlib.suppress(OSError):  # full buffer or no route now: a lost probe (NAT-4.3 copes)
            self._sock.sendto(data, address)

    async def receive(self) -> tuple[bytes, Address]:
        """The next datagram; trio.ClosedResourceError once closed."""
        while True:
            await trio.lowlevel.wait_readable(self._sock)
            try:
                data, address = self._sock.recvfrom(2048)
            except BlockingIOError:
                continue
            except OSError as exc:  # an ICMP error reported on the socket: not a datagram
                if self._sock.fileno() < 0:
                    raise trio.ClosedResourceError from exc
                continue
            return data, (str(address[0]), int(address[1]))

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            trio.lowlevel.notify_closing(self._sock)  # a task waiting on it wakes with ClosedResourceError
        self._sock.close()


def _utc(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _family(address: Address) -> str:
    return "ipv6" if ":" in address[0] else "ipv4"


class BindingTimeouts:
    """The daemon's binding-timeout search and keepalives (spec/nat.md §5.5); see the module docstring.

    ``open_spare(host)``, ``random``, ``clock`` (wall-clock, for ``learned_at``) and ``config`` are
    injected so that tests run it against fakes in virtual time."""

    def __init__(
        self,
        node: Node,
        rendezvous: Rendezvous,
        nat: NatProbe,
        *,
        configured: float,
        enabled: bool = True,
        config: SearchConfig | None = None,
        open_spare: Callable[[str], Spare] = UdpSpare,
        random: Callable[[int], bytes] = os.urandom,
        clock: Callable[[], float] = time.time,
        mappings: Mapping[int, Mapping[str, object]] | None = None,
    ) -> None:
        self.node, self.rendezvous, self.nat = node, rendezvous, nat
        #: The port mappings in force, by socket (the daemon's ``port_mappings``: ``lifetime``, NAT-5.5.7).
        self.mappings: Mapping[int, Mapping[str, object]] = mappings if mappings is not None else {}
        self.configured = configured
        self.enabled = enabled
        self.config = config or SearchConfig()
        self._open_spare, self._random, self._clock = open_spare, random, clock
        #: ``off``, ``waiting``, ``learning``, ``learned``, ``mapped`` (NAT-5.5.7), ``failed`` or
        #: ``not-needed`` (NAT-5.5.5).
        self.state = "waiting" if enabled else "off"
        #: Why nothing is learned (``waiting``, ``failed``, ``not-needed``, ``off``), or why the last
        #: search started again.
        self.reason = "" if enabled else "turned off (setting learn_binding_timeout = false)"
        self.prober: BindingTimeoutProber | None = None
        self.result: TimeoutLearned | None = None
        self.learned_at: float | None = None
        #: The registration searched against, and where it is.
        self.target: Registration | None = None
        self.relearned = 0
        #: Node restarts the keepers noticed (RDV-7.8), each answered by registering again.
        self.node_restarts = 0
        #: Registrations renewed because their node restarted (RDV-7.8): the lapse that follows is
        #: the node's, not the router's, so it starts no search (NAT-5.5.9).
        self._restarted: set[int] = set()
        #: The peer sessions' interval this driver set (None: it left the configured one).
        self.peer_interval: float | None = None
        self.flows: str | None = None
        self._keepers: dict[int, tuple[Registration, BindingKeeper]] = {}
        self._spares: list[Spare] = []
        self._spare_scope: trio.CancelScope | None = None
        self._relearn: str | None = None
        self._recheck = False
        #: NAT-5.5.8: when a failed search runs again, and the wait after the next failure.
        self._retry_at: float | None = None
        self._retry_delay = RETRY_FIRST
        #: NAT-5.5.7: the keepalive interval while a port mapping keeps the binding.
        self._mapped_interval = PEER_MAX_INTERVAL
        #: Where the target's node saw us when the search started (another address: NAT-5.5.4).
        self._target_seen: Address | None = None
        self._wake = trio.Event()
        self._nursery: trio.Nursery | None = None
        #: Keepalives of keepers gone (relearning keeps the counts).
        self._sent_before = self._answered_before = 0
        if enabled:
            self._previous_stun = node.foreign_handlers.get("stun")
            node.foreign_handlers["stun"] = self._on_stun
            self._previous_registration = rendezvous.on_registration_changed
            rendezvous.on_registration_changed = self._on_registration
            rendezvous.on_mapped = self._on_mapped

    # -- what the daemon reads ---------------------------------------------------------------

    @property
    def interval(self) -> float:
        """The keepalive interval in force towards the rendezvous nodes (NAT-4.5, NAT-5.1)."""
        if self.state == "learned" and self.result is not None:
            return self.result.interval
        if self.state == "learning" and self.prober is not None:
            return self.prober.interval
        if self.state == "mapped":
            return self._mapped_interval
        return self.configured

    def status(self) -> dict[str, Any]:
        """The ``keepalive`` object of GET /v1/status ``nat`` (spec/appapi.md API-3.9)."""
        bracket: list[float | None] | None = None
        if self.state == "learning" and self.prober is not None:
            lo, hi = self.prober.bracket
            bracket = [round(lo, 3), None if math.isinf(hi) else round(hi, 3)]
        elif self.state == "learned" and self.result is not None:
            high = self.result.high
            bracket = [round(self.result.timeout, 3), None if math.isinf(high) else round(high, 3)]
        result = self.result if self.state == "learned" else None
        sent = self._sent_before + sum(k.stats["sent"] for _, k in self._keepers.values())
        answered = self._answered_before + sum(k.stats["answered"] for _, k in self._keepers.values())
        return {
            "state": self.state,
            "reason": self.reason,
            "server": _show(self.target.address) if self.target is not None else None,
            "interval": round(self.interval, 3),
            "peer_interval": round(self.peer_interval if self.peer_interval is not None else self.configured, 3),
            "flows": self.flows,
            "bracket": bracket,
            "learned_at": _utc(self.learned_at) if result is not None and self.learned_at is not None else None,
            "learning_seconds": round(result.elapsed, 1) if result is not None else None,
            "search_datagrams": result.sent if result is not None else None,
            "keepalives_sent": sent,
            "keepalives_answered": answered,
            "relearned": self.relearned,
        }

    # -- hooks -------------------------------------------------------------------------------

    def _on_stun(self, event: ForeignDatagramReceived) -> None:
        """A STUN datagram on one of the node's sockets: an answer to the search's control
        requests or to a keepalive?  Anything else goes to the handler installed before."""
        if isinstance(event.local, int) and isinstance(event.address, tuple):
            now = trio.current_time()
            address = (str(event.address[0]), int(event.address[1]))
            if self.prober is not None and self.prober.receive_datagram(event.data, address, now, event.local):
                self._wake.set()
                return
            for _, keeper in self._keepers.values():
                mine = keeper.local == event.local and keeper.server == address
                if mine and keeper.receive_datagram(event.data, address, now):
                    self._wake.set()
                    return
        if self._previous_stun is not None:
            self._previous_stun(event)

    def _on_registration(self, registration: Registration, observed: Address | None) -> None:
        """NAT-5.5.4: a registration lapsed, or the node sees us elsewhere: search again."""
        if self._previous_registration is not None:
            self._previous_registration(registration, observed)
        seen = registration.client.observed if observed is not None else None
        searching = registration is self.target and self.state in ("learning", "learned")
        if observed is None:
            self._drop_keeper(registration)
            if searching and id(registration) not in self._restarted:
                self._relearn = "the registration with the rendezvous node lapsed"
        else:
            self._restarted.discard(id(registration))
            if searching and seen != self._target_seen:
                self._relearn = f"the rendezvous node sees us at {_show(observed)} now"
        self._recheck = True
        self._wake.set()

    def _on_mapped(self) -> None:
        """A port mapping came or went (NAT-5.5.7): look again."""
        self._recheck = True
        self._wake.set()

    # -- the task ----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Learn and keep until cancelled.  Never raises (but Cancelled): a daemon must not die of
        its keepalives; a fault is logged and leaves the configured interval in force."""
        task_status.started()
        if not self.enabled:
            return
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await self._loop()
        except Exception as exc:
            log.warning("binding-timeout learning stopped: %s", exc, exc_info=True)
            self._stop("failed", f"fault: {exc}", trio.current_time())
        finally:
            self._close_spares()

    async def _loop(self) -> None:
        while True:
            self._step(trio.current_time())
            timers = [t for t in self._timers() if t is not None]
            deadline = min(timers, default=math.inf)
            if self.state == "waiting" or self._recheck or self._relearn is not None:
                deadline = min(deadline, trio.current_time() + POLL)
            with trio.move_on_at(deadline):
                await self._wake.wait()
            self._wake = trio.Event()

    def _timers(self) -> list[float | None]:
        timers = [k.get_timer() for _, k in self._keepers.values()]
        if self.state == "failed":
            timers.append(self._retry_at)
        if self.prober is not None and self.state == "learning":
            timers.append(self.prober.get_timer())
        return timers

    # -- one step ----------------------------------------------------------------------------

    def _step(self, now: float) -> None:
        """Fire what is due, read the events, decide, apply the intervals, send."""
        prober = self.prober
        if prober is not None and self.state == "learning":
            timer = prober.get_timer()
            if timer is not None and timer <= now:
                prober.handle_timer(now)
            while (event := prober.next_event()) is not None:
                self._search_event(event, now)
        for registration, keeper in list(self._keepers.values()):
            timer = keeper.get_timer()
            if timer is not None and timer <= now:
                keeper.handle_timer(now)
            while (kevent := keeper.next_event()) is not None:
                self._keeper_event(registration, kevent)
        if self.state == "failed" and self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
            self._relearn = "the last search failed: trying again"
        if self._relearn is not None or self.state == "waiting" or self._recheck:
            self._decide(now)
        self._sync_keepers(now)
        self._apply(now)
        self._flush(now)

    def _search_event(self, event: TimeoutLearned | TimeoutSearchFailed, now: float) -> None:
        self._close_spares()
        if isinstance(event, TimeoutSearchFailed):
            log.warning(
                "binding timeout not learned (%s): keepalives every %g s, as configured; trying again in %.0f s",
                event.reason,
                self.configured,
                self._retry_delay,
            )
            self._stop("failed", event.reason, now)
            return
        self.state, self.result, self.learned_at, self.reason = "learned", event, self._clock(), ""
        self._retry_delay = RETRY_FIRST
        self.nat.binding_timeout = round(event.timeout, 1)
        log.info(
            "binding timeout learned: %.1f s (not %s s; %.0f s, %d datagrams): keepalives every %.1f s",
            event.timeout,
            "longer than" if math.isinf(event.high) else f"{event.high:.1f}",
            event.elapsed,
            event.sent,
            event.interval,
        )

    def _keeper_event(self, registration: Registration, event: KeeperEvent) -> None:
        if isinstance(event, KeepaliveAnswered):
            return
        if isinstance(event, NodeRestarted):
            # RDV-7.8: the node lost our registration; the REGISTER on the old session draws a
            # stateless reset (RDV-6), and the client connects and registers again at once.
            log.info("the rendezvous node %s restarted: registering again", _show(registration.address))
            self.rendezvous.reregister(registration)
            self.node_restarts += 1
            self._restarted.add(id(registration))
            return
        if isinstance(event, MappingChanged):
            log.info("the binding to %s was made again (%s, was %s)", _show(registration.address), event.new, event.old)
            self.rendezvous.reregister(registration)  # the node must introduce us at the new address
            why = f"the public address changed to {_show(event.new)}"
        else:
            why = f"keepalives to {_show(registration.address)} unanswered for {event.silent:.1f} s"
        if self.state in ("learning", "learned"):
            self._relearn = why

    # -- deciding ------------------------------------------------------------------------------

    def _udp_registrations(self) -> list[Registration]:
        return [
            r for r in self.rendezvous.registrations if is_ip(r.address[0]) and self.node.via(r.client.local) == "udp"
        ]

    def _target_now(self) -> tuple[Registration, NatReport] | tuple[str, str]:
        """What to search against, or (state, reason) why not (NAT-5.5.1, NAT-5.5.5)."""
        udp = self._udp_registrations()
        if not udp:
            if self.rendezvous.registrations:
                return "not-needed", "no rendezvous node answers over UDP (UDP blocked?): no UDP binding to keep"
            return "waiting", "no rendezvous node configured"
        registered = [r for r in udp if r.client.state is ClientState.REGISTERED]
        if not registered:
            return "waiting", "not registered with a rendezvous node over UDP yet"
        for registration in registered:
            report = self.nat.reports.get(_family(registration.address))
            if report is not None and report.udp:
                if report.nat is False:
                    return "not-needed", "no NAT: the rendezvous node sees this daemon's own address"
                return registration, report
        if self.nat.state in ("waiting", "measuring"):
            return "waiting", "waiting for the NAT measurement"
        return "waiting", f"the NAT is not measured ({self.nat.error or self.nat.state})"

    def _mapped_now(self) -> tuple[Registration, Address, float] | None:
        """NAT-5.5.7: a registration over UDP whose node sees us at the address the gateway maps for
        that socket (the mapping carries our traffic to the node too), and the interval it needs:
        liveness only, within the mapping's lifetime (which the port mapper renews at half)."""
        for registration in self._udp_registrations():
            client, local = registration.client, registration.client.local
            mapped = self.rendezvous.mapped.get(local) if isinstance(local, int) else None
            if isinstance(local, int) and mapped is not None and client.observed == mapped:
                if client.state is not ClientState.REGISTERED:
                    continue
                lifetime = self.mappings.get(local, {}).get("lifetime")
                interval = PEER_MAX_INTERVAL
                if isinstance(lifetime, int | float) and lifetime > 0:
                    interval = min(interval, MAPPED_FRACTION * float(lifetime))
                return registration, mapped, interval
        return None

    def _decide(self, now: float) -> None:
        self._recheck = False
        mapped = self._mapped_now()
        if mapped is not None:
            registration, address, interval = mapped
            if self.state != "mapped" or self.target is not registration or self._mapped_interval != interval:
                self._stop("mapped", f"the gateway maps {_show(address)}: its lifetime keeps the binding", now)
                self.target, self._mapped_interval, self.flows = registration, interval, "node"
                log.info("port mapping at %s: keepalives every %.0f s (liveness only)", _show(address), interval)
            return
        if self.state == "mapped":
            self._stop("waiting", "the port mapping went", now)
        if self.state in ("failed", "not-needed") and self._relearn is None:
            self.state = "waiting"  # a registration changed: look again
        target = self._target_now()
        if isinstance(target[0], str):
            state, reason = target[0], str(target[1])
            if state == "waiting" and self.state in ("learning", "learned"):
                return  # a registration being made again: keep what is known (and a relearn pending)
            self._relearn = None
            if (state, reason) != (self.state, self.reason):
                self._stop(state, reason, now)
            return
        registration, report = target
        if self.state == "waiting" or self._relearn is not None:
            why, self._relearn = self._relearn, None
            if why is not None:
                self.relearned += 1
                log.info("learning the binding timeout again: %s", why)
            self._start(registration, report, now, why or "")

    def _start(self, registration: Registration, report: NatReport, now: float, why: str) -> None:
        """NAT-5.5.1: a new search on new spare sockets, the main socket as control."""
        self._close_spares()
        self.result, self.learned_at = None, None
        self.nat.binding_timeout = None
        local = registration.client.local
        host = self.node.transports[int(local)].local_address[0]  # type: ignore[call-overload]
        try:
            for _ in range(self.config.sockets_needed):
                self._spares.append(self._open_spare(host))
        except OSError as exc:
            self._close_spares()
            self._stop("failed", f"no spare UDP sockets: {exc}", now)
            return
        keys = [("spare", index) for index in range(len(self._spares))]
        try:
            self.prober = BindingTimeoutProber(
                registration.address, control=local, spares=keys, random=self._random, config=self.config
            )
            self.prober.start(now)
        except LocalProtocolError as exc:
            self._close_spares()
            self._stop("failed", str(exc), now)
            return
        self.target, self._target_seen = registration, registration.client.observed
        self.state, self.reason = "learning", why
        self.flows = "node" if len(self._flows(report)) == 1 else "per-peer"
        if self._nursery is not None:
            self._spare_scope = trio.CancelScope()
            self._nursery.start_soon(self._read_spares, self._spare_scope, list(self._spares))
        log.info(
            "learning the binding timeout against %s on %d spare sockets (keepalives every %.1f s meanwhile)",
            _show(registration.address),
            len(self._spares),
            self.prober.interval,
        )

    def _flows(self, report: NatReport) -> list[Address]:
        """NAT-5.2: which flows need keepalives (a stand-in peer tells "the node alone" from "per peer")."""
        profile = report.to_profile()
        return keepalive_flows(profile.mapping, profile.filtering, ("node", 1), [("peer", 1)])

    def _stop(self, state: str, reason: str, now: float) -> None:
        """No search, no keepers: the configured interval everywhere again (NAT-5.5.5)."""
        self._close_spares()
        self.prober, self.result, self.learned_at = None, None, None
        self.nat.binding_timeout = None
        self.state, self.reason, self.flows = state, reason, None
        self.target = None
        for registration in [r for r, _ in self._keepers.values()]:
            self._drop_keeper(registration)
        self._retry_at = None
        if state == "failed":  # NAT-5.5.8
            self._retry_at = now + self._retry_delay
            self._retry_delay = min(2 * self._retry_delay, RETRY_MAX)

    # -- applying ------------------------------------------------------------------------------

    def _sync_keepers(self, now: float) -> None:
        """A keeper per registered UDP registration while learning or learned (NAT-5.5.2)."""
        if self.state not in ("learning", "learned", "mapped"):
            return
        for registration in self._udp_registrations():
            if registration.client.state is ClientState.REGISTERED and id(registration) not in self._keepers:
                keeper = BindingKeeper(
                    registration.address, self.interval, random=self._random, local=registration.client.local
                )
                keeper.start(now)
                keeper.probe(now)  # at once: the flow may have been quiet since the registration
                self._keepers[id(registration)] = (registration, keeper)
                registration.client.set_keepalive_interval(None, now)

    def _drop_keeper(self, registration: Registration) -> None:
        entry = self._keepers.pop(id(registration), None)
        if entry is not None:
            keeper = entry[1]
            self._sent_before += keeper.stats["sent"]
            self._answered_before += keeper.stats["answered"]
            registration.client.set_keepalive_interval(self.configured, trio.current_time())
            self.rendezvous.node.poke()

    def _apply(self, now: float) -> None:
        """The intervals in force: the keepers' (NAT-4.5, NAT-5.1) and the peer sessions' (NAT-5.5.3)."""
        interval = self.interval
        timeout = self.result.timeout if self.state == "learned" and self.result is not None else None
        for _, keeper in self._keepers.values():
            if keeper.interval != interval or keeper.timeout != timeout:
                keeper.set_interval(interval, now, timeout=timeout)
        peer: float | None = None
        report = self.nat.reports.get(_family(self.target.address)) if self.target is not None else None
        if report is not None and report.udp and self.state in ("learning", "learned"):
            self.flows = "node" if len(self._flows(report)) == 1 else "per-peer"  # a measurement may follow
        if self.state in ("learning", "learned"):
            peer = min(interval, PEER_MAX_INTERVAL) if self.flows == "per-peer" else PEER_MAX_INTERVAL
        elif self.state == "mapped":
            peer = interval  # anyone reaches the mapped port: liveness only (NAT-5.5.7)
        if peer != self.peer_interval:
            self.peer_interval = peer
            self.node.set_keepalive_interval(self.configured if peer is None else round(peer, 3))

    def _flush(self, now: float) -> None:
        out: list[tuple[bytes, Address, Hashable]] = []
        if self.prober is not None:
            out += self.prober.datagrams_to_send(now)
        for _, keeper in self._keepers.values():
            out += keeper.datagrams_to_send(now)
        for data, to, local in out:
            if isinstance(local, tuple):
                index = int(local[1])
                if index < len(self._spares):
                    self._spares[index].send(data, to)
            else:
                transport = self.node.transports[int(local)]  # type: ignore[call-overload]
                with contextlib.suppress(OSError, ValueError):
                    transport.send_batch_now([data], transport.check_address(to))

    # -- spare sockets -------------------------------------------------------------------------

    async def _read_spares(self, scope: trio.CancelScope, spares: list[Spare]) -> None:
        with scope:
            async with trio.open_nursery() as nursery:
                for index, spare in enumerate(spares):
                    nursery.start_soon(self._read_spare, index, spare)

    async def _read_spare(self, index: int, spare: Spare) -> None:
        while True:
            try:
                data, address = await spare.receive()
            except (trio.ClosedResourceError, OSError):
                return  # closed: the search ended
            prober = self.prober if self.state == "learning" else None
            if prober is not None and prober.receive_datagram(data, address, trio.current_time(), ("spare", index)):
                self._wake.set()

    def _close_spares(self) -> None:
        if self._spare_scope is not None:
            self._spare_scope.cancel()
            self._spare_scope = None
        for spare in self._spares:
            with contextlib.suppress(OSError):
                spare.close()
        self._spares = []
