"""A sans-IO STUN Binding client over UDP (RFC 8489 §6.2.1, spec/nat.md §2).

``StunClient`` runs any number of Binding transactions, each from one of the caller's sockets
(``local``, any hashable key) to one server address:

* ``binding(server, now, local=..., change=..., key=...)`` starts one and returns its
  transaction id; drain ``datagrams_to_send(now)`` and send each ``(data, to, local)``;
* feed every datagram the sockets receive to ``receive_datagram``: it says whether the datagram
  was a response to one of ours (else the caller handles it, e.g. as p2pos);
* fire ``handle_timer(now)`` at ``get_timer()``: requests are sent again after RTO, 2 RTO,
  4 RTO, ... (``rc`` sends in all), and a transaction fails ``rm`` RTO after the last one;
* read ``next_event()``: ``BindingSucceeded`` or ``BindingFailed``.

A response is matched by transaction id only (an RFC 5780 answer comes from another address);
a response to a request sent with a key must carry a MESSAGE-INTEGRITY that holds under it.
Malformed or unexpected datagrams are dropped and counted in ``stats``, never raised.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
from collections.abc import Callable, Hashable
from typing import Final

from ..errors import LocalProtocolError
from . import stun_message as sm

Address = tuple[str, int]
#: The SOFTWARE p2pos's requests carry (comprehension-optional, RFC 8489 §14.14).
SOFTWARE: Final = b"p2pos"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RetransmitConfig:
    """RFC 8489 §6.2.1: first RTO, requests sent in all (Rc), and the final wait in RTOs (Rm).

    The defaults are the RFC's: 500 ms, 7, 16, so a transaction fails after 39.5 s.
    """

    rto: float = 0.5
    rc: int = 7
    rm: int = 16

    def __post_init__(self) -> None:
        if self.rto <= 0 or self.rc < 1 or self.rm < 1:
            raise LocalProtocolError("rto > 0, rc >= 1 and rm >= 1")

    @property
    def timeout(self) -> float:
        """Seconds from the first send until the transaction fails."""
        return self.rto * ((1 << (self.rc - 1)) - 1 + self.rm)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BindingSucceeded:
    """A Binding success response arrived for ``transaction_id`` (sent from ``local`` to ``server``)."""

    transaction_id: bytes
    local: Hashable
    server: Address
    #: XOR-MAPPED-ADDRESS (or MAPPED-ADDRESS from an old server): where the server saw us.
    mapped: Address
    #: Where the response came from (the socket's receive address).
    source: Address
    #: RFC 5780 attributes, when the server sent them.
    response_origin: Address | None = None
    other_address: Address | None = None
    sent: int = 1


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BindingFailed:
    """No usable success response for ``transaction_id``: ``error`` is the STUN error code, 0 on a timeout."""

    transaction_id: bytes
    local: Hashable
    server: Address
    error: int
    reason: str
    sent: int = 1


BindingEvent = BindingSucceeded | BindingFailed


@dataclasses.dataclass(slots=True)
class _Transaction:
    txid: bytes
    request: bytes
    server: Address
    local: Hashable
    key: bytes | None
    sent: int
    rto: float
    deadline: float  # when the next send (or the failure) is due


class StunClient:
    """Binding transactions over UDP; see the module docstring for the call order."""

    def __init__(
        self, *, random: Callable[[int], bytes], config: RetransmitConfig | None = None, software: bool = True
    ) -> None:
        self.config = config or RetransmitConfig()
        self._random = random
        self._software = software
        self._pending: dict[bytes, _Transaction] = {}
        self._timers: list[tuple[float, bytes]] = []  # (deadline, txid); stale entries skipped
        self._out: list[tuple[bytes, Address, Hashable]] = []
        self._events: collections.deque[BindingEvent] = collections.deque()
        self.stats: collections.Counter[str] = collections.Counter()

    # -- API calls --------------------------------------------------------------------------

    def binding(
        self,
        server: Address,
        now: float,
        *,
        local: Hashable = 0,
        change: int | None = None,
        key: bytes | None = None,
        attributes: tuple[tuple[int, bytes], ...] = (),
    ) -> bytes:
        """Start a Binding transaction from socket ``local`` to ``server``; its transaction id.

        ``change`` adds CHANGE-REQUEST (RFC 5780 §7.2, even 0); ``key`` adds MESSAGE-INTEGRITY
        (short-term: ``sm.short_term_key``; long-term: ``sm.long_term_key``, with USERNAME,
        REALM and NONCE in ``attributes``).  Every request ends with FINGERPRINT.
        """
        txid = self._random(12)
        attrs = list(attributes)
        if change is not None:
            attrs.append((sm.CHANGE_REQUEST, sm.change_request(change)))
        if self._software:
            attrs.append((sm.SOFTWARE, SOFTWARE))
        request = sm.encode(sm.BINDING, sm.REQUEST, txid, attrs, key=key, fingerprint=True)
        transaction = _Transaction(txid, request, server, local, key, 1, self.config.rto, now + self.config.rto)
        if self.config.rc == 1:
            transaction.deadline = now + self.config.rm * self.config.rto
        self._pending[txid] = transaction
        heapq.heappush(self._timers, (transaction.deadline, txid))
        self._out.append((request, server, local))
        self.stats["requests"] += 1
        return txid

    def cancel(self, txid: bytes) -> None:
        """Stop transaction ``txid`` without an event (e.g. a hairpin probe that came back)."""
        self._pending.pop(txid, None)

    def pending(self, txid: bytes) -> bool:
        return txid in self._pending

    def request_of(self, txid: bytes) -> bytes | None:
        """The bytes of pending request ``txid`` (how a hairpin probe is recognised on arrival)."""
        transaction = self._pending.get(txid)
        return transaction.request if transaction is not None else None

    # -- inputs -----------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, source: Address, now: float, local: Hashable = 0) -> bool:
        """Whether ``data`` (from ``source`` on socket ``local``) answered one of our transactions."""
        if not sm.is_stun(data):
            return False
        try:
            message = sm.decode_untrusted(data)
        except sm.StunError:
            self.stats["malformed"] += 1
            return False
        transaction = self._pending.get(message.transaction_id)
        if transaction is None or message.klass not in (sm.SUCCESS, sm.ERROR) or message.method != sm.BINDING:
            self.stats["unexpected"] += 1
            return False
        if transaction.key is not None and not message.integrity_ok(transaction.key):
            self.stats["bad_integrity"] += 1  # RFC 8489 §9.1.4: discard it as if never received
            return True
        try:
            event = self._event(transaction, message, source)
        except sm.StunError:
            self.stats["malformed"] += 1
            return True
        if event is None:
            self.stats["no_address"] += 1
            return True
        del self._pending[transaction.txid]
        self._events.append(event)
        return True

    def handle_timer(self, now: float) -> None:
        """Send again what is due; fail what has waited its last ``rm`` RTO."""
        while self._timers and self._timers[0][0] <= now:
            deadline, txid = heapq.heappop(self._timers)
            transaction = self._pending.get(txid)
            if transaction is None or transaction.deadline != deadline:
                continue
            if transaction.sent >= self.config.rc:
                del self._pending[txid]
                self.stats["timeouts"] += 1
                self._events.append(
                    BindingFailed(
                        transaction_id=txid,
                        local=transaction.local,
                        server=transaction.server,
                        error=0,
                        reason=f"no answer to {transaction.sent} requests",
                        sent=transaction.sent,
                    )
                )
                continue
            transaction.sent += 1
            transaction.rto *= 2
            wait = transaction.rto if transaction.sent < self.config.rc else self.config.rm * self.config.rto
            transaction.deadline = deadline + wait
            heapq.heappush(self._timers, (transaction.deadline, txid))
            self._out.append((transaction.request, transaction.server, transaction.local))
            self.stats["retransmits"] += 1

    # -- outputs ----------------------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address, Hashable]]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        while self._timers:
            deadline, txid = self._timers[0]
            transaction = self._pending.get(txid)
            if transaction is not None and transaction.deadline == deadline:
                return deadline
            heapq.heappop(self._timers)
        return None

    def next_event(self) -> BindingEvent | None:
        return self._events.popleft() if self._events else None

    # -- internals --------------------------------------------------------------------------

    def _event(self, t: _Transaction, message: sm.Message, source: Address) -> BindingEvent | None:
        if message.klass == sm.ERROR:
            code, reason = message.error() or (0, "an error response without ERROR-CODE")
            return BindingFailed(
                transaction_id=t.txid, local=t.local, server=t.server, error=code, reason=reason, sent=t.sent
            )
        value = message.get(sm.XOR_MAPPED_ADDRESS)
        if value is not None:
            mapped = sm.decode_xor_address_untrusted(value, t.txid)
        elif (value := message.get(sm.MAPPED_ADDRESS)) is not None:
            mapped = sm.decode_plain_address_untrusted(value)
        else:
            return None
        origin = message.get(sm.RESPONSE_ORIGIN)
        other = message.get(sm.OTHER_ADDRESS)
        return BindingSucceeded(
            transaction_id=t.txid,
            local=t.local,
            server=t.server,
            mapped=mapped,
            source=source,
            response_origin=sm.decode_plain_address_untrusted(origin) if origin is not None else None,
            other_address=sm.decode_plain_address_untrusted(other) if other is not None else None,
            sent=t.sent,
        )
