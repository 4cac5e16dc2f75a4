"""The daemon's hole punching (spec/punch.md): the sans-IO ``Puncher`` on the node's UDP sockets.

A rendezvous introduction (FOUND to the side that looked the peer up, INTRODUCTION to the other)
carries the peer's NAT profile, its round trip to the node and a ticket (spec/rendezvous.md §3.5).
``Punching.offer`` starts one punch per (peer, ticket):

* it waits ``max(0, (peer's round trip - ours) / 2)`` so that both sides start together (§7);
* it derives this side's part of the plan (``punch_plan.plan``) from our profile and the peer's;
* it sends the probes from the socket the introduction came through (the one whose observed
  address the peer has), and, on the scattering side of a birthday, from up to 255 extra UDP
  sockets it opens for the punch (§3.6);
* beside it, each IPv6 socket (the daemon's, when both sides have IPv6: spec/candidates.md §4)
  dials the peer's IPv6 addresses in a punch of its own, ``IPV6_PLAN`` whatever the IPv4 plan
  (spec/punch.md §3.9): both sides send, so each side's stateful firewall opens for the other;
* probes and answers come back as STUN datagrams: on the node's sockets through the node's
  foreign-datagram hook, on the extra sockets through a receive task of their own;
* a side whose NAT allocates sequentially, given the introducing node's other address
  (``PunchOffer.fresh_to``), sends its fresh Bindings there from the introduction's socket, and
  the peer's FRESH (``Punching.fresh``, from the rendezvous client) re-bases our predicted probes
  (spec/punch.md §3.4, spec/rendezvous.md §4.6).

On success the winning pair becomes a path of the session (spec/paths.md: validated, then ranked
as direct UDP): the controlling side adds it, the other side's core makes it when the
validation arrives there.  A winning extra socket is handed to the node for good
(``Node.add_transport``); the others are closed when the punch is forgotten.  Events for the app
API (spec/appapi.md §5): ``punch_started``, ``punch_succeeded``, ``punch_failed``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import Callable, Hashable

import trio

from p2pos.proto import PeerId
from p2pos.proto.events import ForeignDatagramReceived
from p2pos.proto.identity import crypto
from p2pos.proto.nat import punch as pu
from p2pos.proto.nat.profile import UNKNOWN_PROFILE, NatProfile
from p2pos.proto.nat.punch_plan import IPV6_PLAN, plan
from p2pos.proto.rendezvous import messages as m
from p2pos.transports.udp import UdpTransport

from .node import Address, Node, _show

log = logging.getLogger("p2pos.punching")

#: The RTT estimate when neither side's round trip to the node is known (spec/punch.md §4).
DEFAULT_RTT = 0.1
#: Punches at once towards one peer (an introduction through each of two nodes), and in all.
MAX_PER_PEER = 2
MAX_PUNCHES = 64
#: How long a success waits for the session (still handshaking through a relay) to add the path.
SESSION_WAIT = 10.0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PunchOffer:
    """What an introduction gave one side (adapters/rendezvous.py ``on_punch``)."""

    peer: PeerId
    observed: Address
    #: The peer's other addresses the pairing policy lets ``local`` dial (spec/candidates.md §4).
    candidates: tuple[Address, ...]
    punch: m.Punch
    #: The node's socket the introduction came through (its observed address is the peer's target).
    local: int
    #: Our profile and round trip to that node (None: not measured).
    profile: NatProfile | None
    rtt: float | None
    #: This side looked the peer up (spec/punch.md §3.1's ``leading``).
    leading: bool
    #: The node's IPv6 sockets with the peer's IPv6 addresses the pairing policy lets each dial: each
    #: punches them with ``IPV6_PLAN`` (spec/punch.md §3.9).
    others: tuple[tuple[int, tuple[Address, ...]], ...] = ()
    #: The introducing node's other address (OTHER-ADDRESS, nat.md §3.1) when discovery measured
    #: against it: a sequential side's fresh Bindings go there (spec/punch.md PUN-3.4.1).
    fresh_to: Address | None = None


@dataclasses.dataclass(eq=False)
class _Run:
    offer: PunchOffer
    #: The node's socket this punch runs on: the introduction's, or one of ``offer.others``.
    local: int
    #: For a punch of ``offer.others``: the addresses it dials (empty: the introduction's own punch).
    targets: tuple[Address, ...] = ()
    puncher: pu.Puncher | None = None
    wake: trio.Event = dataclasses.field(default_factory=trio.Event)
    #: Extra sockets (birthday): puncher local -> transport, and their receive tasks' scopes.
    extra: dict[Hashable, UdpTransport] = dataclasses.field(default_factory=dict)
    readers: dict[Hashable, trio.CancelScope] = dataclasses.field(default_factory=dict)
    #: Node socket index -> puncher local, for what arrives through the node.
    by_node_index: dict[int, Hashable] = dataclasses.field(default_factory=dict)
    #: Extra sockets handed to the node (the winner, and any the peer's probes reached later).
    adopted: set[Hashable] = dataclasses.field(default_factory=set)
    #: A FRESH that came before the puncher started (its start waits for the peer, §7).
    fresh: Address | None = None


class Punching:
    """Punches of one daemon; ``await nursery.start(punching.run)``, then ``offer``."""

    def __init__(
        self,
        node: Node,
        *,
        notify: Callable[..., None] | None = None,
        random: Callable[[int], bytes] = crypto.system_random,
    ) -> None:
        self.node = node
        self._notify = notify or (lambda kind, **fields: None)
        self._random = random
        self._runs: dict[tuple[bytes, int], _Run] = {}  # by ticket and node socket
        self._nursery: trio.Nursery | None = None
        self._previous = node.foreign_handlers.get("stun")
        node.foreign_handlers["stun"] = self._on_stun
        #: Counters for status and tests.
        self.started = self.succeeded = self.failed = self.ignored = 0
        #: Probes and answers sent by punches that ended (spec/punch.md §4.5).
        self.probes_sent = self.answers_sent = 0

    def status(self) -> dict[str, int]:
        """The ``punching`` object of GET /v1/status ``nat`` (spec/appapi.md API-3.9)."""
        return {
            "active": len(self._runs),
            "started": self.started,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "ignored": self.ignored,
            "probes_sent": self.probes_sent,
            "answers_sent": self.answers_sent,
        }

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def offer(self, offer: PunchOffer) -> None:
        """An introduction: punch towards its peer (unless too many punches run already)."""
        ticket = offer.punch.ticket
        tickets = {key[0] for key in self._runs}
        same_peer = len({r.offer.punch.ticket for r in self._runs.values() if r.offer.peer == offer.peer})
        if self._nursery is None or ticket in tickets or same_peer >= MAX_PER_PEER or len(tickets) >= MAX_PUNCHES:
            self.ignored += 1
            return
        runs = [_Run(offer, offer.local)]
        runs += [_Run(offer, local, targets) for local, targets in offer.others if targets and local != offer.local]
        for run in runs:
            self._runs[(ticket, run.local)] = run
            self._nursery.start_soon(self._punch, run)

    # -- one punch ---------------------------------------------------------------------------

    async def _punch(self, run: _Run) -> None:
        offer = run.offer
        try:
            own_rtt = offer.rtt
            peer_rtt = offer.punch.traits.rtt_ms / 1000 if offer.punch.traits.rtt_ms else None
            if own_rtt is not None and peer_rtt is not None:
                await trio.sleep(max(0.0, (peer_rtt - own_rtt) / 2))  # start together (spec/punch.md §7)
            estimate = (own_rtt + peer_rtt) / 2 if own_rtt is not None and peer_rtt is not None else DEFAULT_RTT
            mine, theirs = offer.profile or UNKNOWN_PROFILE, offer.punch.traits.profile
            part = IPV6_PLAN if run.targets else plan(mine, theirs, leading=offer.leading)
            peer, candidates = (run.targets[0], run.targets[1:]) if run.targets else (offer.observed, offer.candidates)
            self.started += 1
            self._notify(
                "punch_started", peer_id=str(offer.peer), strategy=part.why, leading=offer.leading, address=_show(peer)
            )
            log.info("punching towards %s at %s: %s", offer.peer.short(), _show(peer), part.why)
            extra = await self._open_extra(run, part.sockets)
            if len(extra) < part.sockets:  # fewer sockets than a birthday wants: a smaller birthday
                part = dataclasses.replace(part, sockets=len(extra))
            run.by_node_index[run.local] = run.local
            run.puncher = pu.Puncher(
                part,
                main=run.local,
                extra=extra,
                peer=peer,
                candidates=candidates,
                delta=0 if run.targets else theirs.delta,
                ticket=offer.punch.ticket,
                rtt=estimate,
                random=self._random,
                now=trio.current_time(),
                fresh_to=None if run.targets else offer.fresh_to,
                leading=offer.leading,
            )
            if run.fresh is not None:
                run.puncher.receive_fresh(run.fresh, trio.current_time())
            await self._drive(run)
        except Exception as exc:  # a punch must never take the daemon down
            log.warning("punch towards %s failed: %s", offer.peer.short(), exc)
        finally:
            self._runs.pop((offer.punch.ticket, run.local), None)
            for local, transport in run.extra.items():
                scope = run.readers.get(local)
                if scope is not None:
                    scope.cancel()
                if local not in run.adopted:
                    transport.close()

    async def _open_extra(self, run: _Run, count: int) -> list[Hashable]:
        """``count`` extra UDP sockets on the main socket's address, each read by a task of its own."""
        assert self._nursery is not None
        host = self.node.transports[run.local].local_address[0]
        locals_: list[Hashable] = []
        for i in range(count):
            try:
                transport = await UdpTransport.bind(host, 0, offload=False)
            except OSError as exc:
                log.warning("punch: only %d of %d extra sockets (%s)", i, count, exc)
                break
            local = ("extra", i)
            run.extra[local] = transport
            locals_.append(local)
            scope = trio.CancelScope()
            run.readers[local] = scope
            self._nursery.start_soon(self._read_extra, run, local, transport, scope)
        return locals_

    async def _read_extra(self, run: _Run, local: Hashable, transport: UdpTransport, scope: trio.CancelScope) -> None:
        with scope:
            while True:
                try:
                    data, address = await transport.receive()
                    puncher = run.puncher
                    if puncher is None:
                        continue
                    answered = puncher.answers_sent
                    if puncher.receive_datagram(local, address, data, trio.current_time()):
                        run.wake.set()
                        if puncher.answers_sent > answered and isinstance(puncher.outcome, pu.PunchSucceeded):
                            # The peer's probe reached this socket after we won on another: under loss
                            # the peer may win on this pair instead (its answer came back here), and
                            # its path check will come here: the node must read this socket too.
                            self._node_index(run, local)
                            return
                except (OSError, trio.ClosedResourceError):
                    return
                except Exception as exc:  # whatever arrives, the daemon stays up
                    log.warning("punch socket %s: %s", local, exc)
                    return

    async def _drive(self, run: _Run) -> None:
        puncher = run.puncher
        assert puncher is not None
        while True:
            now = trio.current_time()
            puncher.handle_timer(now)
            self._flush(run)
            event = puncher.next_event()
            if event is not None:
                await self._ended(run, event)
            if puncher.finished(now):
                return
            timer = puncher.get_timer()
            if timer is None:
                timer = (puncher.ended_at or now) + pu.LINGER
            with trio.move_on_at(timer if math.isfinite(timer) else now + pu.LINGER):
                await run.wake.wait()
            run.wake = trio.Event()

    def _flush(self, run: _Run) -> None:
        assert run.puncher is not None
        for local, address, datagram in run.puncher.datagrams_to_send(trio.current_time()):
            transport = run.extra.get(local)
            if transport is None:
                main = self.node.transports[local] if isinstance(local, int) else None
                if isinstance(main, UdpTransport):
                    with contextlib.suppress(OSError, ValueError):
                        main.send_batch_now([datagram], main.check_address(address))
                continue
            with contextlib.suppress(OSError):
                transport.send_batch_now([datagram], address)

    async def _ended(self, run: _Run, event: pu.PunchEvent) -> None:
        offer, puncher = run.offer, run.puncher
        assert puncher is not None
        counts = {"probes": puncher.probes_sent, "answers": puncher.answers_sent}
        self.probes_sent += puncher.probes_sent
        self.answers_sent += puncher.answers_sent
        if isinstance(event, pu.PunchFailed):
            self.failed += 1
            self._notify("punch_failed", peer_id=str(offer.peer), reason=event.reason, **counts)
            log.info("punch towards %s failed: %s (%d probes)", offer.peer.short(), event.reason, puncher.probes_sent)
            return
        self.succeeded += 1
        index = self._node_index(run, event.local)
        rtt_ms = round(event.rtt * 1000, 1) if event.rtt is not None else None
        self._notify("punch_succeeded", peer_id=str(offer.peer), address=_show(event.address), rtt_ms=rtt_ms, **counts)
        log.info(
            "punch towards %s: %s works (%d probes)", offer.peer.short(), _show(event.address), puncher.probes_sent
        )
        assert self._nursery is not None
        self._nursery.start_soon(self._add_path, offer.peer, event.address, index)

    def _node_index(self, run: _Run, local: Hashable) -> int:
        """The node's socket index of a puncher socket, adopting an extra one into the node."""
        if isinstance(local, int):
            return local
        if local in run.adopted:
            return next(index for index, known in run.by_node_index.items() if known == local)
        scope = run.readers.pop(local, None)
        if scope is not None:
            scope.cancel()  # the node reads it from now on
        index = self.node.add_transport(run.extra[local])
        run.adopted.add(local)
        run.by_node_index[index] = local
        return index

    async def _add_path(self, peer_id: PeerId, address: Address, local: int) -> None:
        """The punched pair as a path of the session, from the controlling side (spec/punch.md §6)."""
        with trio.move_on_after(SESSION_WAIT):
            while True:
                peer = self.node.peer(peer_id)
                connection = self.node.endpoint.connection(peer.session_id) if peer is not None else None
                if connection is not None:
                    if connection.session.initiator:
                        try:
                            self.node.add_path(peer_id, address, local=local)
                        except Exception as exc:  # e.g. the path exists already
                            log.info("punched pair %s not added as a path: %s", _show(address), exc)
                    return
                await trio.sleep(0.05)

    # -- input from the node -----------------------------------------------------------------

    def fresh(self, peer: PeerId, ticket_id: bytes, address: Address) -> bool:
        """A FRESH (spec/rendezvous.md §4.6): ``peer`` took a fresh mapping at ``address`` for the punch
        ``ticket_id`` names; its introduction's punch predicts from it (spec/punch.md PUN-3.4.2).
        False when no such punch runs (then it is ignored)."""
        for run in list(self._runs.values()):
            if run.targets or run.offer.peer != peer or run.offer.punch.ticket[:8] != ticket_id:
                continue  # an IPv6 punch, or another introduction
            if run.puncher is None:
                run.fresh = address
            elif run.puncher.receive_fresh(address, trio.current_time()):
                run.wake.set()
            return True
        return False

    def _on_stun(self, event: ForeignDatagramReceived) -> None:
        """A STUN datagram on one of the node's sockets: a probe or an answer of one of our punches?"""
        if isinstance(event.local, int) and isinstance(event.address, tuple):
            now = trio.current_time()
            for run in list(self._runs.values()):
                local = run.by_node_index.get(event.local)
                if local is None or run.puncher is None:
                    continue
                if run.puncher.receive_datagram(local, event.address, event.data, now):
                    run.wake.set()
                    return
        if self._previous is not None:
            self._previous(event)
