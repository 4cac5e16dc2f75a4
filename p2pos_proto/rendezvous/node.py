"""The rendezvous node, sans-IO (spec/rendezvous.md).

One UDP port: STUN Binding requests are answered with the address the node sees (given a second
address, ``nat.stun.BindingServer`` also serves RFC 5780 behaviour discovery from three more
sockets, spec/rendezvous.md §5); p2pos packets
go to an ``Endpoint`` whose sessions carry rendezvous messages (messages.py) instead of the
channel layer.  Peers register (authenticated by their session: the registered peer id is the
one the handshake proved) with a lease they renew, look each other up and are introduced.

Drive it like an endpoint: ``receive_datagram`` for every datagram, ``datagrams_to_send`` after
each call, ``get_timer`` / ``handle_timer``.  It keeps nothing a restart must restore: a peer whose
session the node forgot gets a stateless reset at its next packet (``reset_token``) and
registers again.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import heapq
from collections.abc import Hashable

from ..common.ratelimit import TokenBucket
from ..endpoint.endpoint import Address, Endpoint
from ..errors import LocalProtocolError
from ..events import HandshakeCompleted, MessageReceived, SessionClosed
from ..handshake.handshake import LocalKeys
from ..identity import crypto
from ..nat import stun
from ..nat import stun_message as sm
from ..nat.profile import UNKNOWN_PROFILE
from ..session.record import OVERHEAD as RECORD_MIN_LEN
from ..session.session import SessionConfig
from ..session.wire import PacketType, receiver_index_untrusted
from . import messages as m
from .fresh import FreshTickets

#: The packet type of a stateless reset (spec/session.md §4.1, spec/rendezvous.md §6).
STATELESS_RESET = 0x0B
#: A reset is ``0x0b | padding | token``: at least this long (rendezvous.md §6.2), at most
#: ``MAX_RESET_LEN``, and always shorter than the record that drew it.
MIN_RESET_LEN = 1 + 4 + m.RESET_TOKEN_LEN
MAX_RESET_LEN = 64
#: Only a datagram that can be a record (30 bytes at least, record.md §2) draws a reset.
MIN_RESET_TRIGGER = RECORD_MIN_LEN


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    """The node's limits; every one is a flag of ``p2pos relay``."""

    default_lease: int = 600
    max_lease: int = 3600
    min_lease: int = 30
    #: Per registered peer: lookups (with or without an introduction) a second, and the burst.
    lookup_rate: float = 20.0
    lookup_burst: float = 100.0
    #: Per source IP address: new sessions (handshakes, so registrations) a second, and the burst.
    register_rate: float = 10.0
    register_burst: float = 10.0
    #: Per source IP address: stateless resets sent a second, and the burst.
    reset_rate: float = 10.0
    reset_burst: float = 10.0
    max_registrations: int = 100_000
    #: A session that has not registered this long after its handshake is closed.
    register_timeout: float = 30.0
    #: The relays offered to each new registration (RELAYS, rendezvous.md §4.5): ws:// or wss:// URLs.
    relays: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        m.encode(m.Relays(txid=0, urls=self.relays))  # LocalProtocolError: too many, too long
        for url in self.relays:
            if not m.relay_url_ok(url):
                raise LocalProtocolError(f"a relay the node offers is a ws:// or wss:// URL, not {url!r}")


@dataclasses.dataclass(slots=True)
class Registration:
    peer_id: bytes
    session_id: int
    candidates: tuple[m.Address, ...]
    expires: float
    bucket: TokenBucket
    #: What the peer said of its NAT in its latest REGISTER (§3.5), passed on in introductions.
    traits: m.Traits | None = None


def reset_key(keys: LocalKeys) -> bytes:
    """The key of the node's reset tokens: from its identity seed, so it survives a restart."""
    return hashlib.blake2b(keys.identity.seed, digest_size=32, person=b"p2pos-reset-key").digest()


def reset_token(key: bytes, session_id: int) -> bytes:
    """The token a peer keeps for its session ``session_id`` at the node (its receiver index)."""
    return hashlib.blake2b(session_id.to_bytes(4, "big"), digest_size=m.RESET_TOKEN_LEN, key=key).digest()


class RendezvousNode:
    def __init__(
        self,
        keys: LocalKeys,
        *,
        config: NodeConfig | None = None,
        session_config: SessionConfig | None = None,
        random: crypto.RandomSource = crypto.system_random,
        stun_server: stun.BindingServer | None = None,
    ) -> None:
        self.config = config or NodeConfig()
        #: Answers STUN (spec/rendezvous.md §5); with an alternate address, on four sockets.  Its
        #: answers name this start's instance (RDV-5.5: a new one at every start, so that peers
        #: keeping their binding with STUN keepalives notice a restart, RDV-7.8).
        server = stun_server or stun.BindingServer()
        if server.instance is None:
            server = dataclasses.replace(server, instance=random(sm.INSTANCE_LEN))
        self.stun = server
        #: The tickets of recent introductions, for fresh Bindings (spec/rendezvous.md §4.6).
        self.fresh = FreshTickets()
        self.endpoint = Endpoint(keys, config=session_config, channels=None, random=random)
        self._random = random
        self._reset_key = reset_key(keys)
        self._peers: dict[bytes, Registration] = {}
        self._session_peer: dict[int, bytes] = {}  # established sessions -> the peer they proved
        self._expiry: list[tuple[float, bytes]] = []  # (expires, peer id); stale entries skipped
        # Sessions without a registration: session id -> when it is closed (rendezvous.md §4.3),
        # and a heap of (deadline, session id) whose stale entries are skipped.
        self._deadline: dict[int, float] = {}
        self._unregistered: list[tuple[float, int]] = []
        self._register_buckets: dict[str, TokenBucket] = {}
        self._reset_buckets: dict[str, TokenBucket] = {}
        self._out: list[tuple[list[bytes], Address, Hashable]] = []
        self.stats: collections.Counter[str] = collections.Counter()

    # -- input -----------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, address: m.Address, now: float, local: Hashable = 0) -> None:
        """One datagram from ``address`` on socket ``local``.  Never raises for its content."""
        if not data:
            return
        first = data[0]
        if first <= 3 or self.stun.role(local) not in (None, (0, 0)):  # the 5780 sockets carry STUN only
            verdict = self.fresh.receive_untrusted(data, address, now)
            if verdict is not None:  # a fresh Binding (§4.6): answered and passed on, or dropped
                self.stats["fresh_binding"] += 1
                if verdict.answer is not None:
                    self._out.append(([verdict.answer], address, local))
                if verdict.fresh is not None and verdict.session is not None:
                    self._send(verdict.session, verdict.fresh, now)
                return
            answer = self.stun.answer_untrusted(data, address, local)
            if answer is None:
                self.stats["stun_ignored"] += 1
            else:
                self.stats["stun_binding"] += 1
                self._out.append(([answer.data], answer.to, answer.local))
            return
        if first == PacketType.INIT:
            if not self._allow(
                self._register_buckets, self.config.register_rate, self.config.register_burst, address, now
            ):
                self.stats["init_rate_limited"] += 1
                return
        elif first in (PacketType.DATA, PacketType.KEEPALIVE):
            index = receiver_index_untrusted(data)
            if index is not None and self.endpoint.session(index) is None:
                self._stateless_reset(index, len(data), address, local, now)
                return
        self.endpoint.receive_data(data, address, now, local)
        self._drain(now)

    def handle_timer(self, now: float) -> None:
        self.endpoint.handle_timer(now)
        while self._expiry and self._expiry[0][0] <= now:
            expires, peer_id = heapq.heappop(self._expiry)
            registration = self._peers.get(peer_id)
            if registration is not None and registration.expires == expires:
                del self._peers[peer_id]
                self.stats["expired"] += 1
                self._close(registration.session_id, now)
        while self._unregistered and self._unregistered[0][0] <= now:
            deadline, session_id = heapq.heappop(self._unregistered)
            if self._deadline.get(session_id) == deadline:
                del self._deadline[session_id]
                self.stats["unregistered_closed"] += 1
                self._close(session_id, now)
        self._forget_full_buckets(now)
        self._drain(now)

    # -- output ----------------------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[tuple[list[bytes], Address, Hashable]]:
        out, self._out = self._out, []
        return out + self.endpoint.data_to_send(now)

    def get_timer(self) -> float | None:
        timers = [
            t
            for t in (
                self.endpoint.get_timer(),
                self._expiry[0][0] if self._expiry else None,
                self._unregistered[0][0] if self._unregistered else None,
            )
            if t is not None
        ]
        return min(timers) if timers else None

    # -- inspection ------------------------------------------------------------------------

    def registration(self, peer_id: bytes) -> Registration | None:
        return self._peers.get(peer_id)

    def __len__(self) -> int:
        return len(self._peers)

    # -- internals -------------------------------------------------------------------------

    def _allow(
        self, buckets: dict[str, TokenBucket], rate: float, burst: float, address: m.Address, now: float
    ) -> bool:
        host = address[0]
        bucket = buckets.get(host)
        if bucket is None:
            bucket = buckets[host] = TokenBucket(rate, burst, now)
        return bucket.take(now)

    def _forget_full_buckets(self, now: float) -> None:
        for buckets in (self._register_buckets, self._reset_buckets):
            if len(buckets) > 1024:
                for host in [h for h, b in buckets.items() if b.full(now)]:
                    del buckets[host]

    def _stateless_reset(self, index: int, trigger: int, address: m.Address, local: Hashable, now: float) -> None:
        """Answer a record for the unknown session ``index`` (rendezvous.md §6.2)."""
        if trigger < MIN_RESET_TRIGGER:  # not a record: nothing a peer of ours sent
            self.stats["reset_too_small"] += 1
            return
        length = min(trigger - 1, MAX_RESET_LEN)
        if not self._allow(self._reset_buckets, self.config.reset_rate, self.config.reset_burst, address, now):
            self.stats["reset_rate_limited"] += 1
            return
        padding = self._random(length - 1 - m.RESET_TOKEN_LEN)
        packet = bytes((STATELESS_RESET,)) + padding + reset_token(self._reset_key, index)
        self.stats["reset_sent"] += 1
        self._out.append(([packet], address, local))

    def _drain(self, now: float) -> None:
        while (event := self.endpoint.next_event()) is not None:
            if isinstance(event, MessageReceived):
                self._message(event.session_id, event.data, now)
            elif isinstance(event, HandshakeCompleted):
                self._session_peer[event.session_id] = event.peer_id.public_key
                self._await_registration(event.session_id, now)
            elif isinstance(event, SessionClosed):
                self._deadline.pop(event.session_id, None)
                closed_peer = self._session_peer.pop(event.session_id, None)
                registration = self._peers.get(closed_peer) if closed_peer is not None else None
                if registration is not None and registration.session_id == event.session_id:
                    del self._peers[registration.peer_id]
            else:  # ForeignDatagramReceived: STUN is answered before the endpoint; the rest is not ours
                self.stats["foreign_ignored"] += 1

    def _await_registration(self, session_id: int, now: float) -> None:
        """Close session ``session_id`` unless it registers within ``register_timeout`` (§4.3)."""
        deadline = now + self.config.register_timeout
        self._deadline[session_id] = deadline
        heapq.heappush(self._unregistered, (deadline, session_id))

    def _address_of(self, session_id: int) -> m.Address | None:
        """Where session ``session_id`` is (the driver gives ``(host, port)`` addresses)."""
        address = self.endpoint.address_of(session_id)
        return address if isinstance(address, tuple) else None

    def _close(self, session_id: int, now: float) -> None:
        session = self.endpoint.session(session_id)
        if session is not None:
            session.close(now)
            self.endpoint.updated(session_id)

    def _send(self, session_id: int, message: m.Message, now: float) -> None:
        session = self.endpoint.session(session_id)
        if session is None:
            return
        session.send(m.encode(message), now)
        self.endpoint.updated(session_id)

    def _message(self, session_id: int, data: bytes, now: float) -> None:
        peer_id = self._session_peer.get(session_id)
        if peer_id is None:  # cannot happen: records flow only once the handshake completed
            return
        try:
            message = m.decode_untrusted(data)
        except Exception as exc:  # RemoteProtocolError: tell the peer, keep the session
            self.stats["malformed"] += 1
            txid = int.from_bytes(data[1:5], "big") if len(data) >= 5 else 0
            self._send(session_id, m.Error(txid=txid, code=m.RendezvousError.MALFORMED, reason=str(exc)[:200]), now)
            return
        match message:
            case m.Register():
                self._register(session_id, peer_id, message, now)
            case m.Lookup():
                self._lookup(session_id, peer_id, message, now)
            case m.Unregister():
                registration = self._peers.get(peer_id)
                if registration is not None and registration.session_id == session_id:
                    del self._peers[peer_id]
                    self._await_registration(session_id, now)
                self._send(session_id, m.Unregistered(txid=message.txid), now)
            case _:  # answers and unknown types: not for a node
                self.stats["ignored"] += 1

    def _register(self, session_id: int, peer_id: bytes, message: m.Register, now: float) -> None:
        existing = self._peers.get(peer_id)
        if existing is None and len(self._peers) >= self.config.max_registrations:
            self._send(
                session_id, m.Error(txid=message.txid, code=m.RendezvousError.RATE_LIMITED, reason="node full"), now
            )
            return
        cfg = self.config
        lease = cfg.default_lease if message.lease == 0 else min(max(message.lease, cfg.min_lease), cfg.max_lease)
        expires = now + lease
        self._deadline.pop(session_id, None)
        if existing is not None and existing.session_id == session_id:
            existing.candidates, existing.expires, existing.traits = message.candidates, expires, message.traits
        else:
            bucket = existing.bucket if existing is not None else TokenBucket(cfg.lookup_rate, cfg.lookup_burst, now)
            self._peers[peer_id] = Registration(
                peer_id, session_id, message.candidates, expires, bucket, message.traits
            )
            if existing is not None:  # one registration per peer id: its older session has ended (§4.1)
                self.stats["replaced"] += 1
                self._close(existing.session_id, now)
        heapq.heappush(self._expiry, (expires, peer_id))
        observed = self._address_of(session_id)
        if observed is None:  # the session is gone
            return
        token = reset_token(self._reset_key, session_id)
        self._send(session_id, m.Registered(txid=message.txid, lease=lease, observed=observed, reset_token=token), now)
        renewal = existing is not None and existing.session_id == session_id
        if cfg.relays and not renewal:  # a new registration learns the relays once (rendezvous.md §4.5)
            self._send(session_id, m.Relays(txid=message.txid, urls=cfg.relays), now)

    def _lookup(self, session_id: int, peer_id: bytes, message: m.Lookup, now: float) -> None:
        me = self._peers.get(peer_id)
        if me is None or me.session_id != session_id:
            self._send(
                session_id,
                m.Error(txid=message.txid, code=m.RendezvousError.NOT_REGISTERED, reason="register first"),
                now,
            )
            return
        if not me.bucket.take(now):
            self.stats["lookup_rate_limited"] += 1
            self._send(
                session_id,
                m.Error(txid=message.txid, code=m.RendezvousError.RATE_LIMITED, reason="too many lookups"),
                now,
            )
            return
        target = self._peers.get(message.peer_id)
        observed = self._address_of(target.session_id) if target is not None else None
        if target is None or observed is None or target.expires <= now:
            self._send(session_id, m.NotFound(txid=message.txid, peer_id=message.peer_id), now)
            return
        mine = self._address_of(session_id) if message.introduce else None
        if mine is None:  # no introduction: nothing to punch
            self._send(
                session_id,
                m.Found(txid=message.txid, peer_id=message.peer_id, observed=observed, candidates=target.candidates),
                now,
            )
            return
        # An introduction: both sides get the other's traits and one fresh ticket, at the same moment,
        # so that both start punching together (§4.3, spec/punch.md §7).
        ticket = self._random(m.TICKET_LEN)
        theirs = target.traits or m.Traits(profile=UNKNOWN_PROFILE)
        asker = message.traits or me.traits or m.Traits(profile=UNKNOWN_PROFILE)
        self._send(
            session_id,
            m.Found(
                txid=message.txid,
                peer_id=message.peer_id,
                observed=observed,
                candidates=target.candidates,
                punch=m.Punch(traits=theirs, ticket=ticket),
            ),
            now,
        )
        self._send(
            target.session_id,
            m.Introduction(
                txid=message.txid,
                peer_id=peer_id,
                observed=mine,
                candidates=message.candidates or me.candidates,
                punch=m.Punch(traits=asker, ticket=ticket),
            ),
            now,
        )
        self.stats["introductions"] += 1
        self.fresh.add(
            ticket, txid=message.txid, asker=(peer_id, session_id), target=(message.peer_id, target.session_id), now=now
        )
