"""The node's side of fresh mappings (spec/rendezvous.md §4.6, spec/punch.md §3.4): sans-IO.

A sequential side's prediction is only as good as the port it counts from, and the observed
address of its registration has usually aged by the time it punches.  So at the start of a punch
a sequential side sends a *fresh Binding* (``nat.punch.fresh_request``: USERNAME
``<ticket id>:a`` or ``:t``, MESSAGE-INTEGRITY keyed with the ticket, FINGERPRINT) to the node's
other address: a new destination, so a new mapping, the newest on its NAT.  The node answers it as
a Binding (with MESSAGE-INTEGRITY) and tells the *other* side of the introduction, on its
rendezvous session, where it came from: a FRESH.

``FreshTickets`` keeps each introduction's ticket for ``lifetime`` seconds (at most ``limit`` of
them, the oldest forgotten first).  Drive it from the node::

    tickets.add(ticket, txid=..., asker=(peer_id, session_id), target=(peer_id, session_id), now=now)
    verdict = tickets.receive_untrusted(datagram, source, now)   # on any of the node's sockets
    # None: not a fresh Binding (answer it as any STUN request); otherwise send verdict.answer
    # (if any) back to the source from that socket, and verdict.fresh (if any) on verdict.session.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Final

from ..nat import punch as pu
from ..nat import stun_message as sm
from . import messages as m

#: How long a node keeps an introduction's ticket, and how many tickets at most (§4.6).
FRESH_LIFETIME: Final = 15.0
MAX_TICKETS: Final = 4096
#: FRESH messages one side's fresh Bindings may cause per ticket (anti-amplification, §4.6).
MAX_FRESH: Final = 2

Side = tuple[bytes, int]  # (peer id, the node's session id of it)


@dataclasses.dataclass(slots=True)
class _Ticket:
    ticket: bytes
    txid: int
    asker: Side
    target: Side
    expires: float
    #: FRESH sent for each side's Bindings: [asker's, target's].
    sent: list[int] = dataclasses.field(default_factory=lambda: [0, 0])


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FreshVerdict:
    """What a fresh Binding asks of the node: ``answer`` to its source (None: drop it, no answer), and
    ``fresh`` on ``session`` (None: no FRESH, the ticket's limit reached or nothing to tell)."""

    answer: bytes | None
    session: int | None = None
    fresh: m.Fresh | None = None


_DROP: Final = FreshVerdict(answer=None)


#: The shortest datagram with a fresh Binding's USERNAME: the header and USERNAME (18 characters,
#: padded to 20, after its 4-byte attribute header), spec/rendezvous.md §4.6.
FRESH_MIN_LEN: Final = sm.HEADER_LEN + 4 + 20


class FreshTickets:
    """The live tickets of a node's introductions (see the module docstring)."""

    def __init__(self, *, lifetime: float = FRESH_LIFETIME, limit: int = MAX_TICKETS) -> None:
        self.lifetime, self.limit = lifetime, limit
        self._tickets: collections.OrderedDict[bytes, _Ticket] = collections.OrderedDict()
        self.stats: collections.Counter[str] = collections.Counter()

    def __len__(self) -> int:
        return len(self._tickets)

    def add(self, ticket: bytes, *, txid: int, asker: Side, target: Side, now: float) -> None:
        """An introduction the node made: its ticket, the LOOKUP's txid and its two sides."""
        self._expire(now)
        key = ticket[: m.TICKET_ID_LEN]
        self._tickets.pop(key, None)
        while len(self._tickets) >= self.limit:  # bounded memory: the oldest goes first
            self._tickets.popitem(last=False)
            self.stats["fresh_ticket_evicted"] += 1
        self._tickets[key] = _Ticket(ticket, txid, asker, target, now + self.lifetime)

    def receive_untrusted(self, data: bytes, source: m.Address, now: float) -> FreshVerdict | None:
        """A STUN datagram on one of the node's sockets.  None: not a fresh Binding (its USERNAME is not
        ``<16 hex>:a`` or ``:t``), for the STUN server; otherwise what to do (never raises)."""
        # Too short for a fresh Binding's USERNAME (every keepalive is): left to the STUN server
        # without a second parse.
        if len(data) < FRESH_MIN_LEN or not sm.is_stun(data):
            return None
        message = sm.binding_request_untrusted(data)
        if message is None:
            return None
        username = message.get(sm.USERNAME)
        parsed = pu.fresh_username_untrusted(username) if username is not None else None
        if parsed is None:
            return None
        ticket_id, leading = parsed
        self._expire(now)
        entry = self._tickets.get(ticket_id)
        if entry is None or entry.expires <= now or not message.integrity_ok(entry.ticket):
            # RDV-4.6.3: an unknown or expired ticket, or a failed integrity check: no answer, no FRESH.
            self.stats["fresh_refused"] += 1
            return _DROP
        for atype, _ in message.attributes:  # RDV-4.6.2: nothing comprehension-required but USERNAME, M-I
            if atype < 0x8000 and atype not in (sm.USERNAME, sm.MESSAGE_INTEGRITY):
                self.stats["fresh_refused"] += 1
                return _DROP
        answer = pu.answer(entry.ticket, message.transaction_id, source)
        side = 0 if leading else 1
        if entry.sent[side] >= MAX_FRESH:
            self.stats["fresh_limited"] += 1
            return FreshVerdict(answer=answer)
        entry.sent[side] += 1
        sender, receiver = (entry.asker, entry.target) if leading else (entry.target, entry.asker)
        self.stats["fresh_sent"] += 1
        fresh = m.Fresh(txid=entry.txid, peer_id=sender[0], observed=source, ticket_id=ticket_id)
        return FreshVerdict(answer=answer, session=receiver[1], fresh=fresh)

    def _expire(self, now: float) -> None:
        while self._tickets:
            key, entry = next(iter(self._tickets.items()))
            if entry.expires > now:
                return
            del self._tickets[key]
