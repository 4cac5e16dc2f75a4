"""The daemon learns its NAT: behaviour discovery against its rendezvous nodes (spec/nat.md §3.6).

``discover(server)`` runs one sans-IO ``NatDiscovery`` (p2pos_proto/nat/discovery.py) from fresh
UDP sockets and returns its ``NatReport``; ``p2pos nat-check`` (adapters/natcheck.py) calls it
too.  ``NatProbe`` is the daemon's driver:

    probe = NatProbe(daemon.rendezvous)
    rendezvous.on_registration_changed = probe.registration_changed
    nursery.start_soon(probe.run)      # measures at once, again when the network changes
    probe.status()                     # what GET /v1/status shows as "nat"

It measures at start and whenever the network changes (a rendezvous node sees us at another
address than before, NAT-3.6.2), per address family, asking the daemon's rendezvous nodes one
after another until one with a second address answered (a node without one gives a partial
report: the mapped address only).  It sets the measured profile on every rendezvous client, so
REGISTER and LOOKUP carry it as traits (spec/rendezvous.md §3.5).  Nothing it meets stops the
daemon: an error, or no answer at all, is logged, leaves the profile unknown and is retried
with back-off (NAT-3.6.3).
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, cast

import trio

from p2pos.proto.nat.addresses import is_ip
from p2pos.proto.nat.discovery import NatDiscovery, NatReport
from p2pos.proto.nat.profile import NatProfile
from p2pos.proto.rendezvous.client import ClientState

if TYPE_CHECKING:
    from .rendezvous import Registration, Rendezvous

log = logging.getLogger("p2pos.natprobe")

Address = tuple[str, int]
Discover = Callable[[Address], Awaitable[NatReport]]
#: Seconds a whole run against one server may take (discovery ends within about 6 s after the
#: mapping tests, spec/nat.md NAT-3.2.7).
CHECK_TIMEOUT: Final = 60.0
#: Back-off after a failed measurement: the first retry, doubled up to the last (NAT-3.6.3).
RETRY_FIRST: Final = 10.0
RETRY_MAX: Final = 900.0
#: The local address of a report that no discovery made (NAT-3.6.5: UDP blocked, inferred).
_UNKNOWN_LOCAL: Final = ("0.0.0.0", 0)  # noqa: S104 (an address shown, nothing bound to it)


async def source_address(server: Address) -> str:
    """The local IP address the routing table picks to reach ``server`` (no packet is sent)."""
    family = trio.socket.AF_INET6 if ":" in server[0] else trio.socket.AF_INET
    with trio.socket.socket(family, trio.socket.SOCK_DGRAM) as probe:
        await probe.connect(server)
        return str(probe.getsockname()[0])


async def discover(server: Address, *, sockets: int = 4, timeout: float = CHECK_TIMEOUT) -> NatReport:
    """Run discovery (spec/nat.md §3.2) against ``server`` from ``sockets`` fresh UDP sockets.

    Raises OSError when the sockets cannot be made (no route to the server, say)."""
    family = trio.socket.AF_INET6 if ":" in server[0] else trio.socket.AF_INET
    host = await source_address(server)
    socks = []
    try:
        for _ in range(sockets):
            sock = trio.socket.socket(family, trio.socket.SOCK_DGRAM)
            socks.append(sock)
            await sock.bind((host, 0))
        locals_ = [(host, int(s.getsockname()[1])) for s in socks]
        discovery = NatDiscovery(server, locals_, trio.current_time(), random=os.urandom)
        send, receive = trio.open_memory_channel[tuple[bytes, Address, int]](256)

        async def reader(index: int) -> None:
            while True:
                try:
                    data, address = await socks[index].recvfrom(2048)
                except OSError:  # e.g. ICMP port unreachable reported on a later call
                    continue
                await send.send((data, (str(address[0]), int(address[1])), index))

        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:
                for index in range(sockets):
                    nursery.start_soon(reader, index)
                while not discovery.done:
                    for data, to, local in discovery.datagrams_to_send(trio.current_time()):
                        try:
                            await socks[cast(int, local)].sendto(data, to)
                        except OSError:
                            pass  # unreachable now: a lost probe, which retransmission covers
                    timer = discovery.get_timer()
                    with trio.move_on_at(math.inf if timer is None else timer):
                        data, address, index = await receive.receive()
                        discovery.receive_datagram(data, address, trio.current_time(), index)
                        continue
                    discovery.handle_timer(trio.current_time())
                nursery.cancel_scope.cancel()
        return discovery.report
    finally:
        for sock in socks:
            sock.close()


def _family(address: Address) -> str:
    return "ipv6" if ":" in address[0] else "ipv4"


def _rank(report: NatReport) -> int:
    """Which of two reports of one family says more: one from a node with a second address, then
    one with an answer at all."""
    return 2 if report.udp and report.alternate else 1 if report.udp else 0


def _utc(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class NatProbe:
    """The daemon's NAT measurements, one report per address family (spec/nat.md §3.6).

    ``discover`` and ``clock`` (wall-clock seconds, for ``measured_at``) are injected so tests
    can run it without a network."""

    def __init__(
        self,
        rendezvous: Rendezvous,
        *,
        discover: Discover = discover,
        clock: Callable[[], float] | None = None,
        retry_first: float = RETRY_FIRST,
        retry_max: float = RETRY_MAX,
    ) -> None:
        self.rendezvous = rendezvous
        self._discover = discover
        self._clock = clock or time.time
        self.retry_first, self.retry_max = retry_first, retry_max
        #: The latest successful report of each family (``ipv4``, ``ipv6``).
        self.reports: dict[str, NatReport] = {}
        #: Wall-clock time of each report.
        self.measured_at: dict[str, float] = {}
        #: ``waiting`` (nothing to ask yet), ``measuring``, ``measured`` or ``failed``.
        self.state = "waiting"
        #: Why the last run failed ("" after a success).
        self.error = ""
        #: Completed runs (each asks one or more servers), and trio time of the next retry.
        self.runs = 0
        self.retry_at: float | None = None
        #: The idle time the router keeps a UDP binding, once learned (adapters/bindingtimeout.py sets
        #: it, spec/nat.md NAT-5.5.6; None otherwise).
        self.binding_timeout: float | None = None
        self._observed: dict[int, Address] = {}
        self._changed = trio.Event()

    # -- what the daemon reads ---------------------------------------------------------------

    @property
    def report(self) -> NatReport | None:
        """The IPv4 report if there is one, else the IPv6 one."""
        return self.reports.get("ipv4") or self.reports.get("ipv6")

    def profile_for(self, address: Address) -> NatProfile | None:
        """The measured profile for a client of a node at ``address`` (None: unknown); a node
        reached through a relay (no IP address) gets the IPv4 one, else the IPv6 one."""
        report = self.reports.get(_family(address)) if is_ip(address[0]) else self.report
        return report.to_profile() if report is not None else None

    def other_for(self, address: Address) -> Address | None:
        """The other address (OTHER-ADDRESS) of the node at ``address``, if discovery measured against
        that node and it answered there: where a sequential side's punches send their fresh Bindings
        (spec/punch.md PUN-3.4.1).  None otherwise (another node's other address knows no ticket of ours)."""
        report = self.reports.get(_family(address)) if is_ip(address[0]) else None
        return report.other if report is not None and report.server == address else None

    def status(self) -> dict[str, Any]:
        """The ``nat`` object of GET /v1/status (spec/appapi.md API-3.9)."""
        family = "ipv4" if "ipv4" in self.reports else "ipv6" if "ipv6" in self.reports else None
        report = self.reports[family] if family is not None else None
        out: dict[str, Any] = {
            "state": self.state,
            "measured_at": _utc(self.measured_at[family]) if family is not None else None,
            "udp": None,
            "server": None,
            "mapped": None,
            "nat": None,
            "mapping": None,
            "filtering": None,
            "allocation": None,
            "allocation_delta": None,
            "public": None,
            "hairpinning": None,
            "port_preservation": None,
            "binding_timeout": self.binding_timeout,
            "error": self.error,
            "families": {},
        }
        if report is not None:
            out.update(_fields(report))
        out["families"] = {
            name: {**_fields(r), "measured_at": _utc(self.measured_at[name])}
            for name, r in sorted(self.reports.items())
        }
        return out

    # -- what tells it the network changed ---------------------------------------------------

    def registration_changed(self, registration: Registration, observed: Address | None) -> None:
        """A rendezvous client registered (``observed``: where the node sees us) or lost its
        registration (None).  Another address than before is a network change (NAT-3.6.2); so is
        a first registration of a family still unmeasured (the node may have been down)."""
        if observed is None:
            return  # lost: the address it comes back on tells whether anything changed
        if not is_ip(registration.address[0]):
            # Through a relay: the node is up.  If its UDP address answers nothing, UDP is blocked
            # (NAT-3.6.5), which a run that already failed could not tell.
            if self.state == "failed" and self._blocked():
                self.state, self.error, self.retry_at = "measured", "", None
            self._apply_all()
            return
        key = id(registration)
        before = self._observed.get(key)
        self._observed[key] = observed
        self._apply(registration)
        if before is not None and before != observed:
            log.info("the rendezvous node now sees us at %s (was %s): measuring the NAT again", observed, before)
            self.network_changed()
        elif (
            before is None
            and is_ip(registration.address[0])
            and (
                _family(registration.address) not in self.reports
                or not self.reports[_family(registration.address)].udp  # UDP came back (NAT-3.6.5)
            )
            and self.state != "measuring"
        ):
            self.network_changed()

    def network_changed(self) -> None:
        """Measure again now (or as soon as the run in progress ends)."""
        self._changed.set()

    # -- the task ----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Measure now, then again on every network change, retrying failures with back-off.
        Never raises (but Cancelled): a daemon must not die of its NAT."""
        task_status.started()
        delay = self.retry_first
        while True:
            self._changed = trio.Event()
            if await self._measure():
                delay, wait = self.retry_first, math.inf
            else:
                wait, delay = delay, min(delay * 2, self.retry_max)
            self.retry_at = trio.current_time() + wait if wait != math.inf else None
            with trio.move_on_after(wait):
                await self._changed.wait()
            self.retry_at = None
            if not self._changed.is_set() and self.state == "measured":
                await self._changed.wait()  # proven since the failed run (NAT-3.6.5): no retry

    async def _measure(self) -> bool:
        """One run; whether it measured something (False: retry later)."""
        servers: dict[str, list[Address]] = {}
        for registration in list(self.rendezvous.registrations):
            address = registration.address
            if is_ip(address[0]) and address not in servers.get(_family(address), []):
                servers.setdefault(_family(address), []).append(address)
        if not servers:
            self.state = "waiting" if not self.reports else self.state
            return True  # nothing to ask: a registration that appears tells us (registration_changed)
        self.state, errors, measured = "measuring", [], False
        for family, addresses in sorted(servers.items()):
            best: NatReport | None = None
            for server in addresses:
                try:
                    report = await self._discover(server)
                except Exception as exc:
                    log.warning("NAT discovery against %s failed: %s", server, exc, exc_info=True)
                    errors.append(f"{server[0]}:{server[1]}: {exc}")
                    continue
                if not report.udp:
                    errors.append(f"{server[0]}:{server[1]}: no answer")
                if best is None or _rank(report) > _rank(best):
                    best = report
                if _rank(report) == 2:
                    break  # a node with a second address answered every test: enough
            if best is not None and best.udp:
                self.reports[family], self.measured_at[family] = best, self._clock()
                measured = True
                log.info("NAT (%s, via %s): %s", family, _fields(best)["server"], _summary(best))
            else:
                # The network changed (or it is the first run) and nothing answered: the old
                # findings describe a network we may have left.  Unknown, not UDP blocked: the
                # node may just be down (NAT-3.6.3), unless it answers through a relay (NAT-3.6.5).
                self.reports.pop(family, None)
                self.measured_at.pop(family, None)
                measured = self._blocked(family) or measured
        self.runs += 1
        self.error = "" if measured else "; ".join(errors)
        self.state = "measured" if measured else "failed"
        if not measured:
            log.warning("NAT discovery got no answer (%s): the NAT stays unknown, retrying later", self.error)
        self._apply_all()
        return measured

    def _blocked(self, family: str = "ipv4") -> bool:
        """Whether UDP is blocked, proven (NAT-3.6.5): a rendezvous node answers through a relay
        while its UDP address of ``family`` has not registered us.  If so, that family's report
        says so (``udp`` false) and True; the report stays until UDP registers (registration_changed)."""
        through_relay = {
            r.client.node
            for r in self.rendezvous.registrations
            if not is_ip(r.address[0]) and r.client.state is ClientState.REGISTERED and r.client.node is not None
        }
        for r in self.rendezvous.registrations:
            if (
                is_ip(r.address[0])
                and _family(r.address) == family
                and r.client.node in through_relay
                and r.client.state is not ClientState.REGISTERED
            ):
                if family not in self.reports:
                    self.reports[family] = NatReport(server=r.address, local=_UNKNOWN_LOCAL, udp=False)
                    self.measured_at[family] = self._clock()
                    log.info("NAT (%s): UDP blocked: %s answers through a relay, not over UDP", family, r.address[0])
                return not self.reports[family].udp
        return False

    def _apply_all(self) -> None:
        for registration in list(self.rendezvous.registrations):
            self._apply(registration)

    def _apply(self, registration: Registration) -> None:
        """Give the registration's client the measured profile of its family (None: unknown).
        A port mapping's flag is not discovery's to set (NAT-3.5): the client adds it to its
        traits itself (``RendezvousClient.port_mapped``, adapters/portmapping.py)."""
        self.rendezvous.set_profile(registration, self.profile_for(registration.address))


def _fields(report: NatReport) -> dict[str, Any]:
    """The status fields a report fills in (NatReport.to_json's names)."""
    data = report.to_json()
    names = (
        "udp",
        "server",
        "mapped",
        "nat",
        "mapping",
        "filtering",
        "allocation",
        "allocation_delta",
        "public",
        "hairpinning",
        "port_preservation",
    )
    return {name: data[name] for name in names}


def _summary(report: NatReport) -> str:
    if not report.udp:
        return "UDP blocked"
    mapped = _fields(report)["mapped"]
    parts = [f"mapped {mapped}", f"mapping {report.mapping.value if report.mapping else 'unknown'}"]
    if report.nat is False:
        parts.append("no translation")
    parts.append(f"filtering {report.filtering.value if report.filtering else 'unknown'}")
    if report.allocation is not None:
        delta = f" {report.allocation_delta:+d}" if report.allocation_delta else ""
        parts.append(f"allocation {report.allocation.value}{delta}")
    if report.public:
        parts.append("public")
    return ", ".join(parts)
