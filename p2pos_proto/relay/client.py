"""A peer's side of one relay link (spec/relay.md §4.2, §7), sans-IO.

The driver opens the WebSocket, then calls ``receive_message(data, now)`` for every binary
message and drains ``messages_to_send()`` and ``next_event()``.  ``want(peer)`` / ``unwant(peer)``
and ``send(peer, record)`` may be called at any time: WANTs are remembered and sent again on every
new link (``link_lost(now)``, then a new WebSocket and the same calls); a record for a peer that
is wanted but not paired yet goes as SENDTO (the relay holds it until PAIRED, REL-4.8), one for a
peer that is not wanted is dropped (``send`` returns ``False``; the session's recovery resends).
``Backoff`` spaces reconnections.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
from collections.abc import Callable

from ..errors import LocalProtocolError, RemoteProtocolError
from ..identity.identity import Identity
from . import messages as m


class ClientState(enum.Enum):
    WAITING_CHALLENGE = "waiting-challenge"
    WAITING_WELCOME = "waiting-welcome"
    READY = "ready"
    FAILED = "failed"  # the relay broke the protocol: the driver closes the link and reconnects


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LinkReady:
    """The relay accepted our AUTH; WANTs went out again."""

    max_record: int
    rate: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PeerPaired:
    peer_id: bytes


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PeerUnpaired:
    peer_id: bytes


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RecordReceived:
    peer_id: bytes
    record: bytes


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LinkFailed:
    """The relay sent something invalid; close the WebSocket (code 4000) and reconnect."""

    reason: str


ClientEvent = LinkReady | PeerPaired | PeerUnpaired | RecordReceived | LinkFailed


#: Bytes of SEND messages a client queues before ``send`` drops records (a full socket buffer).
MAX_QUEUED = 1 << 20


class RelayClient:
    """One peer's link to one relay.  ``name``: the relay's host name as in its URL (REL-2.3)."""

    def __init__(self, identity: Identity, name: str, *, max_queued: int = MAX_QUEUED) -> None:
        if not 0 < len(name.encode()) <= m.MAX_NAME:
            raise LocalProtocolError("a relay name is 1-255 bytes")
        self.identity = identity
        self.name = name.lower()
        self.state = ClientState.WAITING_CHALLENGE
        self.max_record = m.MAX_RECORD
        self._wants: dict[bytes, None] = {}  # ordered: WANTs go out again in the same order
        self._pairs: dict[bytes, int] = {}
        self._peers: dict[int, bytes] = {}
        #: Messages to send, each as ``(head, tail)``: a record's SEND head and the record itself.
        self._out: list[tuple[bytes, bytes]] = []
        self._queued = 0
        self.max_queued = max_queued
        self._events: collections.deque[ClientEvent] = collections.deque()
        self.stats: collections.Counter[str] = collections.Counter()

    # -- API -------------------------------------------------------------------------------

    def want(self, peer: bytes) -> None:
        """Ask the relay to pair us with ``peer`` (kept across links until ``unwant``)."""
        if len(peer) != m.PEER_ID_LEN:
            raise LocalProtocolError("a peer id is 32 bytes")
        if peer in self._wants:
            return
        self._wants[peer] = None
        if self.state is ClientState.READY:
            self._out.append((m.encode(m.Want(peer_id=peer)), b""))

    def unwant(self, peer: bytes) -> None:
        if self._wants.pop(peer, 0) is None and self.state is ClientState.READY:
            self._out.append((m.encode(m.Unwant(peer_id=peer)), b""))

    def paired(self, peer: bytes) -> bool:
        return peer in self._pairs

    def has_room(self, nbytes: int) -> bool:
        """Whether ``send`` of an ``nbytes`` record would fit the queue (``messages_to_send`` empties it)."""
        return self._queued == 0 or self._queued + nbytes <= self.max_queued

    def send(self, peer: bytes, record: bytes) -> bool:
        """Queue ``record`` (a sealed p2pos datagram) for ``peer``; ``False`` if dropped.

        Paired: SEND on the pair.  Wanted but not paired yet: SENDTO, which the relay holds until
        the pair forms (REL-4.8), so the first handshake packet does not wait for PAIRED.  Neither
        (or the link not ready, or the record invalid): dropped.
        """
        pair = self._pairs.get(peer)
        if self.state is not ClientState.READY or not m.valid_record(record, self.max_record):
            self.stats["send_dropped"] += 1
            return False
        if pair is None and peer not in self._wants:
            self.stats["send_dropped"] += 1
            return False
        if not self.has_room(len(record)):
            self.stats["send_queue_full"] += 1
            return False
        if pair is None:
            self._out.append((m.sendto_head(peer), record))
            self.stats["sent_before_paired"] += 1
        else:
            self._out.append((m.record_head(m.MessageType.SEND, pair), record))
        self._queued += len(record)
        return True

    # -- input -----------------------------------------------------------------------------

    def receive_message(self, data: bytes | memoryview, now: float) -> None:
        """One binary message from the relay.  Never raises: a bad one fails the link."""
        if self.state is ClientState.FAILED:
            return
        try:
            message = m.decode_untrusted(data)
        except RemoteProtocolError as exc:
            self._fail(str(exc))
            return
        match message:
            case m.Challenge(nonce=nonce, max_record=max_record, rate=rate) if (
                self.state is ClientState.WAITING_CHALLENGE
            ):
                self.max_record = max_record
                self._rate = rate
                signature = self.identity.sign(m.DOMAIN_RELAY_AUTH, m.auth_message(nonce, self.name))
                auth = m.Auth(peer_id=self.identity.peer_id.public_key, signature=signature, name=self.name)
                self._out.append((m.encode(auth), b""))
                self.state = ClientState.WAITING_WELCOME
            case m.Welcome(peer_id=peer) if self.state is ClientState.WAITING_WELCOME:
                if peer != self.identity.peer_id.public_key:
                    self._fail("WELCOME for another peer id")
                    return
                self.state = ClientState.READY
                self._out.extend((m.encode(m.Want(peer_id=p)), b"") for p in self._wants)
                self._events.append(LinkReady(max_record=self.max_record, rate=self._rate))
            case m.Paired(pair=pair, peer_id=peer) if self.state is ClientState.READY:
                if pair in self._peers or peer in self._pairs:
                    self._fail("PAIRED twice")
                    return
                self._pairs[peer], self._peers[pair] = pair, peer
                self._events.append(PeerPaired(peer_id=peer))
            case m.Unpaired(pair=pair) if self.state is ClientState.READY:
                gone = self._peers.pop(pair, None)
                if gone is not None:
                    del self._pairs[gone]
                    self._events.append(PeerUnpaired(peer_id=gone))
            case m.Recv(pair=pair, record=record) if self.state is ClientState.READY:
                sender = self._peers.get(pair)
                if sender is None:
                    self.stats["recv_unknown_pair"] += 1
                    return
                self._events.append(RecordReceived(peer_id=sender, record=record))
            case _:
                self._fail(f"unexpected {type(message).__name__} in state {self.state.value}")

    _rate = 0

    def link_lost(self, now: float) -> None:
        """The WebSocket closed: every pair ends; WANTs are kept for the next link."""
        for peer in list(self._pairs):
            self._events.append(PeerUnpaired(peer_id=peer))
        self._pairs.clear()
        self._peers.clear()
        self._out.clear()
        self._queued = 0
        self.state = ClientState.WAITING_CHALLENGE

    def _fail(self, reason: str) -> None:
        self.stats["relay_errors"] += 1
        self.state = ClientState.FAILED
        self._events.append(LinkFailed(reason=reason))

    # -- output ----------------------------------------------------------------------------

    def parts_to_send(self) -> list[tuple[bytes, bytes]]:
        """Every queued message as ``(head, tail)``, the message being ``head + tail`` (a record
        follows its SEND head unjoined, so a driver that masks or writes the parts copies it once)."""
        out, self._out = self._out, []
        self._queued = 0
        return out

    def messages_to_send(self) -> list[bytes]:
        """``parts_to_send`` with each message joined."""
        return [head + tail for head, tail in self.parts_to_send()]

    def next_event(self) -> ClientEvent | None:
        return self._events.popleft() if self._events else None


class Backoff:
    """Reconnection delays (REL-7.3): 0.5 s doubling to 30 s, each scaled by 0.5-1.0 at random."""

    def __init__(self, random: Callable[[int], bytes], *, first: float = 0.5, cap: float = 30.0) -> None:
        self._random, self.first, self.cap = random, first, cap
        self._next = first

    def next_delay(self) -> float:
        jitter = 0.5 + 0.5 * int.from_bytes(self._random(2), "big") / 65535
        delay = self._next * jitter
        self._next = min(self.cap, self._next * 2)
        return delay

    def reset(self) -> None:
        """The link authenticated: start again from ``first``."""
        self._next = self.first
