"""Keepalives sized to the router (spec/nat.md §5): the interval, which flows need one, the sender.

* ``keepalive_interval(timeout, srtt)``: the interval K for a learned binding timeout T (NAT-5.1):
  a safe fraction of T that still leaves room to send a lost keepalive again before T.
* ``keepalive_flows(mapping, filtering, server, peers)``: the remote addresses this side must keep
  a flow open to (NAT-5.2): the rendezvous node alone when one public port serves every
  destination and anyone may answer it, else the node and every peer.
* ``BindingKeeper``: the sans-IO sender for one flow (NAT-5.3).  Each keepalive is a STUN
  Binding request, so it draws a reply (which also says the public address is unchanged); one
  that draws none within ``reply_wait`` is sent again at once.  Call order as for every
  datagram peer: ``receive_datagram`` for what arrives on the flow's socket, ``handle_timer`` at
  ``get_timer()``, then drain ``datagrams_to_send`` and ``next_event``; ``note_sent`` when
  the driver sends anything else on the flow (that refreshes the binding too, PTH-7.4);
  ``set_interval`` when a new K is learned.  ``BindingLost`` and ``MappingChanged`` tell the
  driver to re-learn the timeout (``BindingTimeoutProber.relearn``, NAT-4.6); ``NodeRestarted``
  (the answers name another node instance, RDV-7.8) tells it to renew the registration at once.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Callable, Hashable, Iterable
from typing import Final

from ..errors import LocalProtocolError
from . import stun_message as sm
from .profile import Filtering, Mapping

Address = tuple[str, int]

#: NAT-5.1: the share of the learned timeout a keepalive interval may use.
FRACTION: Final = 0.93
#: NAT-5.3: the shortest wait for a keepalive's reply before it is sent again.
MIN_REPLY_WAIT: Final = 0.25
#: NAT-5.1: the interval leaves room for this many sends after the first (each a reply wait apart).
RESENDS: Final = 1
#: NAT-5.3: a keepalive sent this many times without a reply reports ``BindingLost``.
LOST_AFTER: Final = 4
#: The default interval before anything is learned (paths.md §7: the daemon's ``keepalive``).
DEFAULT_INTERVAL: Final = 25.0


def reply_wait(srtt: float) -> float:
    """NAT-5.3: how long a keepalive waits for its reply: ``max(0.25 s, 2 srtt + 50 ms)``."""
    return max(MIN_REPLY_WAIT, 2 * srtt + 0.05)


def keepalive_interval(timeout: float, srtt: float = 0.0, *, fraction: float = FRACTION) -> float:
    """NAT-5.1: K = min(fraction x T, T - (RESENDS + 1) reply waits), for a learned timeout T > 0.

    The second term matters only for short timeouts: a keepalive lost at K is sent again after
    a reply wait, and that second one must still leave before T.
    """
    if not (timeout > 0 and math.isfinite(timeout)) or not 0 < fraction < 1 or srtt < 0:
        raise LocalProtocolError("timeout > 0, 0 < fraction < 1 and srtt >= 0")
    return max(min(fraction * timeout, timeout - (RESENDS + 1) * reply_wait(srtt)), timeout / 2)


def keepalive_flows(mapping: Mapping, filtering: Filtering, server: Address, peers: Iterable[Address]) -> list[Address]:
    """NAT-5.2: the remote addresses this side must send keepalives to, the node first.

    Under endpoint-independent mapping *and* filtering (or none), the flow to the node keeps the
    one public port open and anyone may send to it: the peers need none of their own.  Under
    any other mapping (each destination its own port) or filtering (each source must be one the
    port has a live flow to), and when either is unknown, every peer's flow needs its own.
    """
    independent = {Mapping.NONE, Mapping.ENDPOINT_INDEPENDENT}
    open_filter = {Filtering.NONE, Filtering.ENDPOINT_INDEPENDENT}
    if mapping in independent and filtering in open_filter:
        return [server]
    return [server, *(p for p in dict.fromkeys(peers) if p != server)]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class KeepaliveAnswered:
    """A keepalive drew its reply: the public address the server saw, and the round trip."""

    mapped: Address
    rtt: float
    sent: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MappingChanged:
    """The reply names another public address than before: the binding was lost and remade, or
    the network changed (NAT-4.6: re-learn)."""

    old: Address
    new: Address


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BindingLost:
    """A keepalive and its quick resends drew no reply for ``silent`` seconds (NAT-4.6: re-learn)."""

    silent: float
    sent: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class NodeRestarted:
    """The reply names another node instance (P2POS-INSTANCE) than before: the node restarted and
    lost its registrations (RDV-7.8: register again at once)."""

    old: bytes
    new: bytes


KeeperEvent = KeepaliveAnswered | MappingChanged | BindingLost | NodeRestarted


class BindingKeeper:
    """Keeps one flow (socket ``local`` to ``server``) open with STUN Binding keepalives (NAT-5.3).

    The first keepalive leaves ``interval`` after ``start(now)`` (or after the last
    ``note_sent``).  A reply restarts nothing by itself: the timer runs from the last send,
    since only what leaves refreshes an outbound-refreshed binding.
    """

    def __init__(
        self,
        server: Address,
        interval: float,
        *,
        random: Callable[[int], bytes],
        local: Hashable = 0,
        srtt: float = 0.0,
        timeout: float | None = None,
    ) -> None:
        if not interval > 0:
            raise LocalProtocolError("interval > 0")
        self.server = server
        self.local = local
        self.interval = interval
        #: The learned binding timeout, if any: silence past it is reported as ``BindingLost``.
        self.timeout = timeout
        self.srtt = srtt
        self._random = random
        self._last_send = -math.inf
        self._last_reply = -math.inf
        self._txid: bytes | None = None
        self._first_send = 0.0  # of the pending keepalive
        self._sends = 0  # of the pending keepalive
        self._due: float | None = None
        self._lost_reported = False
        self.mapped: Address | None = None
        #: The node instance its answers named last (RDV-5.5), None before one named any.
        self.instance: bytes | None = None
        self._out: list[tuple[bytes, Address, Hashable]] = []
        self._events: collections.deque[KeeperEvent] = collections.deque()
        self.stats: collections.Counter[str] = collections.Counter()

    # -- API calls --------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Begin: the flow counts as refreshed at ``now`` (the driver just used it)."""
        self.note_sent(now)

    def probe(self, now: float) -> None:
        """Send a keepalive now, not at the interval (a new flow, or a check after a network change)."""
        if self._txid is None:
            self._due = now

    def note_sent(self, now: float) -> None:
        """Something else left on this flow at ``now``: it refreshed the binding (PTH-7.4)."""
        if self._last_reply == -math.inf:
            self._last_reply = now  # silence is counted from the start
        self._last_send = max(self._last_send, now)
        if self._txid is None:
            self._due = self._last_send + self.interval

    def set_interval(self, interval: float, now: float, *, timeout: float | None = None) -> None:
        """Use a new interval (a learned or re-learned timeout); it applies from the last send."""
        if not interval > 0:
            raise LocalProtocolError("interval > 0")
        self.interval = interval
        self.timeout = timeout
        if self._txid is None and self._due is not None:
            self._due = self._last_send + interval
            self._due = max(self._due, now)

    # -- inputs -----------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, source: Address, now: float) -> bool:
        """Whether ``data`` was the reply to the pending keepalive (anything else: False, untouched)."""
        if self._txid is None or not sm.is_stun(data):
            return False
        try:
            message = sm.decode_untrusted(data)
            if message.transaction_id != self._txid or message.klass != sm.SUCCESS or message.method != sm.BINDING:
                return False
            value = message.get(sm.XOR_MAPPED_ADDRESS)
            if value is None:
                self.stats["malformed"] += 1
                return True
            mapped = sm.decode_xor_address_untrusted(value, self._txid)
        except sm.StunError:
            self.stats["malformed"] += 1
            return False
        instance = message.get(sm.P2POS_INSTANCE)
        if instance is not None and len(instance) != sm.INSTANCE_LEN:
            self.stats["malformed_instance"] += 1  # not an instance: as if it were missing
            instance = None
        rtt = now - self._first_send
        self.srtt = rtt if self.srtt == 0 else 0.875 * self.srtt + 0.125 * rtt
        self._events.append(KeepaliveAnswered(mapped=mapped, rtt=rtt, sent=self._sends))
        if self.mapped is not None and mapped != self.mapped:
            self._events.append(MappingChanged(old=self.mapped, new=mapped))
        self.mapped = mapped
        # RDV-7.8: another instance is a restart; a missing one (a node of an earlier version, or
        # an answer with no room for it) says nothing, and the last one named stays.
        if instance is not None:
            if self.instance is not None and instance != self.instance:
                self._events.append(NodeRestarted(old=self.instance, new=instance))
                self.stats["node_restarted"] += 1
            self.instance = instance
        self._txid = None
        self._last_reply = now
        self._lost_reported = False
        self._due = self._last_send + self.interval
        self.stats["answered"] += 1
        return True

    def handle_timer(self, now: float) -> None:
        """Send the keepalive that is due, or send the unanswered one again (NAT-5.3)."""
        if self._due is None or now < self._due:
            return
        if self._txid is None:
            self._txid = self._random(12)
            self._first_send = now
            self._sends = 0
        else:
            self.stats["resent"] += 1
            if self._sends >= LOST_AFTER and not self._lost_reported:
                # Unanswered again and again, well past the timeout's margin: likely lost (NAT-5.3).
                self._lost_reported = True
                self._events.append(BindingLost(silent=now - self._first_send, sent=self._sends))
        self._sends += 1
        request = sm.encode(sm.BINDING, sm.REQUEST, self._txid, [], fingerprint=True)
        self._out.append((request, self.server, self.local))
        self._last_send = now
        self.stats["sent"] += 1
        # Unanswered: again after one reply wait, RESENDS + 1 times, then backing off to the interval.
        wait = reply_wait(self.srtt) * (1 << min(max(0, self._sends - 1 - RESENDS), 16))
        self._due = now + min(wait, self.interval)

    # -- outputs ----------------------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address, Hashable]]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        return self._due

    def next_event(self) -> KeeperEvent | None:
        return self._events.popleft() if self._events else None
