"""The relay's state machine (spec/relay.md §4, §5): links, authentication, pairing, quotas.

Sans-IO: the driver owns the sockets, the HTTP upgrade and the WebSocket framing, and tells the
relay what happened to each link; time comes in as ``now``.  Drivers call, per link:

* ``open_link(address, now)`` when a TCP connection is accepted (``None``: refused, close it);
* ``link_upgraded(link, host, now)`` once the WebSocket upgrade is done (queues CHALLENGE);
* ``receive_message(link, data, now)`` for each complete binary message, ``receive_bad(link, why,
  now)`` for anything else the peer did wrong, ``touch(link, now)`` for pings and pongs;
* ``link_lost(link, now)`` when the socket is gone.

and then drain: ``take_parts(link, max_bytes)`` (or ``take_messages``) for links in ``links_with_output()``,
``closes()`` (links to close with a WebSocket close code), ``node_records()`` (records sent to
the co-located rendezvous node, §6).  ``read_delay(link, now)`` says how long to wait before the
next read from a link (its byte quota, §5), ``read_allowance(link, now)`` how much it may
read before it is in debt; ``charge(link, nbytes, now)`` spends it.  Timers:
``get_timer()`` / ``handle_timer(now)``.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import heapq
import ipaddress
from collections.abc import Callable

from ..errors import RemoteProtocolError
from ..identity import identity
from ..identity.peer_id import PeerId
from . import messages as m

#: The first byte of a SEND message, the one the relay forwards without decoding it whole.
SEND_TYPE = bytes([m.MessageType.SEND])


class CloseCode(enum.IntEnum):
    """WebSocket close codes the relay uses (REL-4.6)."""

    PROTOCOL_ERROR = 4000
    REPLACED = 4001
    AUTH_FAILED = 4002
    AUTH_TIMEOUT = 4003
    QUOTA = 4004
    IDLE = 4005


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RelayConfig:
    """Limits of spec/relay.md §5; all rates are per second, never totals (REL-5.6)."""

    #: Names clients may sign (REL-2.4); empty: the host of the link's HTTP ``Host`` header.
    names: tuple[str, ...] = ()
    max_record: int = m.MAX_RECORD
    max_wants: int = 1024
    #: WANT and UNWANT messages a link may send a second, beyond a burst (REL-5.2).
    wants_rate: float = 64.0
    wants_burst: float = 1024.0
    auth_timeout: float = 10.0
    idle_timeout: float = 120.0
    max_links: int = 65536
    max_unauthenticated: int = 1024
    links_per_address: int = 16
    unauthenticated_per_address: int = 4
    opens_per_address_rate: float = 4.0
    opens_per_address_burst: float = 16.0
    link_rate: int = 16 << 20
    link_burst: int = 64 << 20
    address_rate: int = 32 << 20
    address_burst: int = 128 << 20
    queue_bytes: int = 1 << 20
    #: Records a link may have held for peers it WANTs that are not paired yet (REL-4.8), and their bytes.
    hold_records: int = 16
    hold_bytes: int = 64 << 10
    #: A held record older than this when its pair forms is dropped (REL-4.8).
    hold_time: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.max_record <= m.MAX_RECORD:
            raise ValueError(f"max_record must be 1..{m.MAX_RECORD}")
        if not 0 <= self.max_wants <= 0xFFFF:
            raise ValueError("max_wants must be 0..65535")
        counts = (self.max_links, self.max_unauthenticated, self.links_per_address, self.unauthenticated_per_address)
        if min(counts) < 1:
            raise ValueError("link limits must be at least 1")
        rates = (self.link_rate, self.link_burst, self.address_rate, self.address_burst, self.queue_bytes)
        if min(rates) < 1 or self.opens_per_address_rate <= 0 or self.opens_per_address_burst < 1:
            raise ValueError("rates, bursts and queue sizes must be positive")
        if self.link_rate > 0xFFFFFFFF:
            raise ValueError("link_rate must fit 32 bits (CHALLENGE announces it)")
        if self.hold_records < 0 or self.hold_bytes < 0 or self.hold_time < 0:
            raise ValueError("hold_records, hold_bytes and hold_time must not be negative")
        if self.wants_rate <= 0 or self.wants_burst < 1:
            raise ValueError("wants_rate and wants_burst must be positive")
        if self.auth_timeout <= 0 or self.idle_timeout <= 0:
            raise ValueError("timeouts must be positive")


class LinkState(enum.Enum):
    CONNECTED = "connected"  # TCP accepted, HTTP upgrade not done
    CHALLENGED = "challenged"  # CHALLENGE sent, waiting for AUTH
    AUTHENTICATED = "authenticated"
    CLOSED = "closed"


class _Bucket:
    """A byte bucket that may go into debt: reads wait until it is positive again."""

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.last = rate, burst, burst, now

    def level(self, now: float) -> float:
        if now > self.last:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
        return self.tokens

    def delay(self, now: float) -> float:
        level = self.level(now)
        return 0.0 if level > 0 else (1.0 - level) / self.rate


class _Address:
    __slots__ = ("bucket", "links", "opens", "unauthenticated")

    def __init__(self, config: RelayConfig, now: float) -> None:
        self.links = 0
        self.unauthenticated = 0
        self.bucket = _Bucket(config.address_rate, config.address_burst, now)
        self.opens = _Bucket(config.opens_per_address_rate, config.opens_per_address_burst, now)


class _Link:
    __slots__ = (
        "address",
        "bucket",
        "held",
        "held_bytes",
        "host",
        "id",
        "last_seen",
        "next_pair",
        "nonce",
        "out",
        "pairs",
        "peer",
        "peers",
        "prefix",
        "queued",
        "state",
        "unauthenticated",
        "want_bucket",
        "wants",
    )

    def __init__(self, link_id: int, address: tuple[str, int], prefix: str, config: RelayConfig, now: float) -> None:
        self.id, self.address, self.prefix = link_id, address, prefix
        self.state = LinkState.CONNECTED
        self.unauthenticated = True  # counted against the unauthenticated quotas
        self.host = ""
        self.nonce = b""
        self.peer = b""
        self.last_seen = now
        self.wants: set[bytes] = set()
        self.pairs: dict[bytes, int] = {}  # peer id -> pair id on this link
        self.peers: dict[int, bytes] = {}  # pair id -> peer id
        self.next_pair = 1
        #: Messages for the link, each as ``(head, tail)``: a relayed record is its RECV head and the
        #: record as a view into the SEND it came in (the driver writes both without joining them).
        self.out: collections.deque[tuple[bytes, bytes | memoryview]] = collections.deque()
        self.queued = 0
        #: Records for WANTed peers not paired yet (REL-4.8): (when, peer id, record), oldest first.
        self.held: list[tuple[float, bytes, bytes]] = []
        self.held_bytes = 0
        self.bucket = _Bucket(config.link_rate, config.link_burst, now)
        self.want_bucket = _Bucket(config.wants_rate, config.wants_burst, now)


def address_prefix(host: str) -> str:
    """The quota key of a source address (REL-5.1): the IPv4 /32 or the IPv6 /64."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class RelayCore:
    """All links of one relay.  ``node_peer``: the peer id of a co-located rendezvous node (§6)."""

    def __init__(
        self,
        config: RelayConfig,
        random: Callable[[int], bytes],
        *,
        node_peer: bytes | None = None,
    ) -> None:
        self.config = config
        self._random = random
        self.node_peer = node_peer
        self._links: dict[int, _Link] = {}
        self._by_peer: dict[bytes, _Link] = {}
        #: Byte buckets per peer id, kept across its links until full again (REL-5.3).
        self._peer_buckets: dict[bytes, _Bucket] = {}
        self._addresses: dict[str, _Address] = {}
        self._next_link = 1
        self._next_sweep = 0.0
        self._unauthenticated = 0
        self._timers: list[tuple[float, int]] = []
        self._ready: set[int] = set()
        self._closes: list[tuple[int, CloseCode, str]] = []
        self._node_in: list[tuple[bytes, tuple[str, int], bytes]] = []
        self.stats: collections.Counter[str] = collections.Counter()

    # -- link life -------------------------------------------------------------------------

    def open_link(self, address: tuple[str, int], now: float) -> int | None:
        """A TCP connection from ``address`` was accepted; its link id, or ``None`` if refused (§5)."""
        prefix = address_prefix(address[0])
        entry = self._addresses.get(prefix)
        if entry is None:
            entry = self._addresses[prefix] = _Address(self.config, now)
        if len(self._links) >= self.config.max_links or self._unauthenticated >= self.config.max_unauthenticated:
            self.stats["refused_busy"] += 1
            return None
        if entry.links >= self.config.links_per_address:
            self.stats["refused_address_links"] += 1
            return None
        if entry.unauthenticated >= self.config.unauthenticated_per_address:
            self.stats["refused_address_unauthenticated"] += 1
            return None
        if entry.opens.level(now) < 1.0:
            self.stats["refused_address_rate"] += 1
            return None
        entry.opens.tokens -= 1.0
        link = _Link(self._next_link, address, prefix, self.config, now)
        self._next_link += 1
        self._links[link.id] = link
        entry.links += 1
        entry.unauthenticated += 1
        self._unauthenticated += 1
        heapq.heappush(self._timers, (now + self.config.auth_timeout, link.id))
        self.stats["links_opened"] += 1
        return link.id

    def link_upgraded(self, link_id: int, host: str, now: float) -> None:
        """The WebSocket upgrade succeeded (``host``: the HTTP Host header's host); send CHALLENGE."""
        link = self._links.get(link_id)
        if link is None or link.state is not LinkState.CONNECTED:
            return
        link.host = host.lower()
        link.nonce = self._random(m.NONCE_LEN)
        link.state = LinkState.CHALLENGED
        link.last_seen = now
        challenge = m.Challenge(
            nonce=link.nonce,
            max_record=self.config.max_record,
            max_wants=min(self.config.max_wants, 0xFFFF),
            rate=self.config.link_rate,
        )
        self._queue(link, m.encode(challenge))

    def link_lost(self, link_id: int, now: float) -> None:
        """The socket is gone (or the driver closed it): forget the link, unpair its peers (REL-4.5)."""
        link = self._links.pop(link_id, None)
        if link is None:
            return
        if link.unauthenticated:
            self._unauthenticated -= 1
            self._addresses[link.prefix].unauthenticated -= 1
        self._addresses[link.prefix].links -= 1
        if link.state is LinkState.AUTHENTICATED and self._by_peer.get(link.peer) is link:
            del self._by_peer[link.peer]
            for peer in list(link.pairs):
                self._unpair(link, peer, tell_self=False)
        link.state = LinkState.CLOSED
        link.out.clear()
        self._ready.discard(link_id)
        self.stats["links_closed"] += 1

    def touch(self, link_id: int, now: float) -> None:
        """A WebSocket ping or pong arrived: the link is alive (REL-4.7)."""
        link = self._links.get(link_id)
        if link is not None:
            link.last_seen = now

    def receive_bad(self, link_id: int, why: str, now: float) -> None:
        """The driver saw a protocol error below the relay messages (text frame, oversized message)."""
        self.stats["bad_frames"] += 1
        self._close(link_id, CloseCode.PROTOCOL_ERROR, why)

    # -- messages --------------------------------------------------------------------------

    def receive_message(self, link_id: int, data: bytes, now: float) -> None:
        """One binary WebSocket message from a link.  Never raises for its content."""
        link = self._links.get(link_id)
        if link is None or link.state is LinkState.CLOSED:
            return
        link.last_seen = now
        if data[:1] == SEND_TYPE and link.state is LinkState.AUTHENTICATED:  # the bulk: nothing copied
            try:
                pair_id, view = m.record_view_untrusted(data, self.config.max_record)
            except RemoteProtocolError as exc:
                self.stats["malformed"] += 1
                self._close(link_id, CloseCode.PROTOCOL_ERROR, str(exc))
                return
            self._send(link, pair_id, view)
            return
        try:
            message = m.decode_untrusted(data, self.config.max_record)
        except RemoteProtocolError as exc:
            self.stats["malformed"] += 1
            self._close(link_id, CloseCode.PROTOCOL_ERROR, str(exc))
            return
        if link.state is LinkState.CHALLENGED:
            if isinstance(message, m.Auth):
                self._auth(link, message, now)
            else:
                self._close(link_id, CloseCode.PROTOCOL_ERROR, "AUTH expected")
            return
        if link.state is not LinkState.AUTHENTICATED:
            self._close(link_id, CloseCode.PROTOCOL_ERROR, "message before CHALLENGE")
            return
        if isinstance(message, m.Want | m.Unwant):
            if link.want_bucket.level(now) < 1.0:
                self.stats["too_many_want_changes"] += 1
                self._close(link_id, CloseCode.QUOTA, "WANT/UNWANT too fast")
                return
            link.want_bucket.tokens -= 1.0
        match message:  # (a SEND on an authenticated link took the path above)
            case m.SendTo(peer_id=peer, record=record):
                self._send_to(link, peer, record, now)
            case m.Want(peer_id=peer):
                self._want(link, peer, now)
            case m.Unwant(peer_id=peer):
                link.wants.discard(peer)
                self._take_held(link, peer)
                if peer in link.pairs:
                    self._unpair(link, peer, tell_self=True)
            case _:
                self._close(link_id, CloseCode.PROTOCOL_ERROR, f"{type(message).__name__} from a client")

    def _auth(self, link: _Link, auth: m.Auth, now: float) -> None:
        name = auth.name.lower()
        allowed = tuple(n.lower() for n in self.config.names) if self.config.names else (link.host,)
        if name not in allowed:
            self.stats["auth_wrong_name"] += 1
            self._close(link.id, CloseCode.AUTH_FAILED, "AUTH names another relay")
            return
        if auth.peer_id == self.node_peer:
            self.stats["auth_node_id"] += 1
            self._close(link.id, CloseCode.AUTH_FAILED, "the node's own peer id")
            return
        signed = m.auth_message(link.nonce, auth.name)
        try:
            peer = PeerId(auth.peer_id)
        except ValueError:  # pragma: no cover - PeerId only checks the length, decode did too
            peer = None
        if peer is None or not identity.verify(peer, m.DOMAIN_RELAY_AUTH, signed, auth.signature):
            self.stats["auth_bad_signature"] += 1
            self._close(link.id, CloseCode.AUTH_FAILED, "bad signature")
            return
        old = self._by_peer.get(auth.peer_id)
        if old is not None:
            self.stats["links_replaced"] += 1
            self._close(old.id, CloseCode.REPLACED, "a newer link of this peer")
        link.state = LinkState.AUTHENTICATED
        link.peer = auth.peer_id
        link.nonce = b""
        link.unauthenticated = False
        self._unauthenticated -= 1
        self._addresses[link.prefix].unauthenticated -= 1
        self._by_peer[link.peer] = link
        # From here on the link spends its peer's bucket: reconnecting does not refill it (REL-5.3).
        link.bucket = self._peer_buckets.setdefault(link.peer, link.bucket)
        self.stats["authenticated"] += 1
        self._queue(link, m.encode(m.Welcome(peer_id=link.peer)))

    def _want(self, link: _Link, peer: bytes, now: float) -> None:
        if peer == link.peer or peer in link.wants:
            return
        if len(link.wants) >= self.config.max_wants:
            self.stats["too_many_wants"] += 1
            self._close(link.id, CloseCode.QUOTA, "too many WANTs")
            return
        link.wants.add(peer)
        if peer == self.node_peer:
            self._pair_one(link, peer)  # the node wants everyone (REL-6.2)
            return
        other = self._by_peer.get(peer)
        if other is not None and link.peer in other.wants:
            self._pair_one(link, peer)
            self._pair_one(other, link.peer)
            self.stats["paired"] += 1
            # REL-4.8: what either side sent before the pair formed follows its PAIRED.
            self._flush_held(link, other, now)
            self._flush_held(other, link, now)

    def _pair_one(self, link: _Link, peer: bytes) -> None:
        pair = link.next_pair
        link.next_pair = pair + 1 if pair < 0xFFFFFFFF else 1
        link.pairs[peer] = pair
        link.peers[pair] = peer
        self._queue(link, m.encode(m.Paired(pair=pair, peer_id=peer)))

    def _unpair(self, link: _Link, peer: bytes, *, tell_self: bool) -> None:
        pair = link.pairs.pop(peer)
        del link.peers[pair]
        if tell_self:
            self._queue(link, m.encode(m.Unpaired(pair=pair)))
        other = self._by_peer.get(peer)
        if other is not None and link.peer in other.pairs:
            other_pair = other.pairs.pop(link.peer)
            del other.peers[other_pair]
            self._queue(other, m.encode(m.Unpaired(pair=other_pair)))
        self.stats["unpaired"] += 1

    def _send(self, link: _Link, pair: int, record: bytes | memoryview) -> None:
        peer = link.peers.get(pair)
        if peer is None:
            self.stats["send_unknown_pair"] += 1  # a race with UNPAIRED: not an error (REL-4.4)
            return
        if peer == self.node_peer:
            self._node_in.append((link.peer, link.address, bytes(record)))
            self.stats["records_to_node"] += 1
            return
        other = self._by_peer[peer]
        self._deliver(other, other.pairs[link.peer], record)

    def _send_to(self, link: _Link, peer: bytes, record: bytes, now: float) -> None:
        """SENDTO (REL-4.8): forward on the pair if there is one, else hold it (bounded) until PAIRED."""
        pair = link.pairs.get(peer)
        if pair is not None:
            self._send(link, pair, record)
            return
        if peer not in link.wants:
            self.stats["sendto_not_wanted"] += 1
            return
        if len(link.held) >= self.config.hold_records or link.held_bytes + len(record) > self.config.hold_bytes:
            self.stats["dropped_hold_full"] += 1
            return
        link.held.append((now, peer, record))
        link.held_bytes += len(record)
        self.stats["records_held"] += 1

    def _take_held(self, link: _Link, peer: bytes) -> list[tuple[float, bytes]]:
        """Remove and return ``link``'s held records for ``peer``, oldest first."""
        if not link.held:
            return []
        taken = [(when, record) for when, p, record in link.held if p == peer]
        if taken:
            link.held = [item for item in link.held if item[1] != peer]
            link.held_bytes = sum(len(item[2]) for item in link.held)
        return taken

    def _flush_held(self, link: _Link, other: _Link, now: float) -> None:
        """``link``'s held records for ``other``'s peer, now paired: RECV to ``other`` unless too old."""
        for when, record in self._take_held(link, other.peer):
            if now - when > self.config.hold_time:
                self.stats["dropped_hold_expired"] += 1
                continue
            self._deliver(other, other.pairs[link.peer], record)

    def _deliver(self, dest: _Link, pair: int, record: bytes | memoryview) -> None:
        if dest.queued + len(record) > self.config.queue_bytes:
            self.stats["dropped_queue_full"] += 1  # REL-5.4: drop, never block the sender
            return
        self._queue(dest, m.record_head(m.MessageType.RECV, pair), record)
        self.stats["records_relayed"] += 1
        self.stats["bytes_relayed"] += len(record)

    def _queue(self, link: _Link, head: bytes, tail: bytes | memoryview = b"") -> None:
        link.out.append((head, tail))
        link.queued += len(head) + len(tail)
        self._ready.add(link.id)

    def _close(self, link_id: int, code: CloseCode, why: str) -> None:
        link = self._links.get(link_id)
        if link is None or link.state is LinkState.CLOSED:
            return
        self._closes.append((link_id, code, why))
        self.stats[f"closed_{code.name.lower()}"] += 1
        # The link stays counted against its address until the driver reports ``link_lost``.
        if link.state is LinkState.AUTHENTICATED and self._by_peer.get(link.peer) is link:
            del self._by_peer[link.peer]
            for peer in list(link.pairs):
                self._unpair(link, peer, tell_self=False)
        link.state = LinkState.CLOSED
        link.out.clear()
        link.queued = 0
        link.held.clear()
        link.held_bytes = 0

    # -- the co-located rendezvous node (§6) --------------------------------------------------

    def node_records(self) -> list[tuple[bytes, tuple[str, int], bytes]]:
        """Records peers sent to the node: ``(peer id, the link's TCP source address, record)``."""
        out, self._node_in = self._node_in, []
        return out

    def send_from_node(self, peer: bytes, record: bytes) -> bool:
        """A record from the node to ``peer``; ``False`` (dropped) when that peer is not paired with it."""
        link = self._by_peer.get(peer)
        if link is None or self.node_peer is None or self.node_peer not in link.pairs:
            self.stats["node_unpaired_drop"] += 1
            return False
        if not m.valid_record(record, self.config.max_record):
            self.stats["node_bad_record"] += 1
            return False
        before = self.stats["dropped_queue_full"]
        self._deliver(link, link.pairs[self.node_peer], record)
        return self.stats["dropped_queue_full"] == before

    # -- output ----------------------------------------------------------------------------

    def links_with_output(self) -> set[int]:
        """Links that got messages since the last call (their writers should wake up)."""
        out, self._ready = self._ready, set()
        return out

    def take_parts(self, link_id: int, max_bytes: int) -> list[tuple[bytes, bytes | memoryview]]:
        """Queued messages for ``link_id``, at least one if any, at most about ``max_bytes``; each
        as ``(head, tail)``, the message being ``head + tail`` (a driver writes both parts as they are)."""
        link = self._links.get(link_id)
        if link is None:
            return []
        out: list[tuple[bytes, bytes | memoryview]] = []
        size = 0
        while link.out:
            head, tail = link.out[0]
            length = len(head) + len(tail)
            if out and size + length > max_bytes:
                break
            out.append(link.out.popleft())
            size += length
        link.queued -= size
        return out

    def take_messages(self, link_id: int, max_bytes: int) -> list[bytes]:
        """``take_parts`` with each message joined into one ``bytes``."""
        return [head + tail for head, tail in self.take_parts(link_id, max_bytes)]

    def pending(self, link_id: int) -> int:
        """Bytes queued for ``link_id`` and not taken yet."""
        link = self._links.get(link_id)
        return 0 if link is None else link.queued

    def closes(self) -> list[tuple[int, CloseCode, str]]:
        """Links the driver must close (send a WebSocket Close with the code, then ``link_lost``)."""
        out, self._closes = self._closes, []
        return out

    # -- quotas (§5) ------------------------------------------------------------------------

    def read_delay(self, link_id: int, now: float) -> float:
        """Seconds to wait before reading from ``link_id`` again (0: read now)."""
        link = self._links.get(link_id)
        if link is None:
            return 0.0
        return max(link.bucket.delay(now), self._addresses[link.prefix].bucket.delay(now))

    def read_allowance(self, link_id: int, now: float) -> float:
        """Bytes ``link_id`` may still read before its byte quotas go into debt (the driver sizes
        its reads by it, so that one read overshoots a quota by little)."""
        link = self._links.get(link_id)
        if link is None:
            return 0.0
        return max(0.0, min(link.bucket.level(now), self._addresses[link.prefix].bucket.level(now)))

    def charge(self, link_id: int, nbytes: int, now: float) -> None:
        """``nbytes`` were read from ``link_id``'s socket."""
        link = self._links.get(link_id)
        if link is None:
            return
        link.bucket.level(now)
        link.bucket.tokens -= nbytes
        bucket = self._addresses[link.prefix].bucket
        bucket.level(now)
        bucket.tokens -= nbytes

    # -- timers ----------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    def handle_timer(self, now: float) -> None:
        """Close links that did not authenticate in time (REL-4.1) or went silent (REL-4.7)."""
        while self._timers and self._timers[0][0] <= now:
            _, link_id = heapq.heappop(self._timers)
            link = self._links.get(link_id)
            if link is None or link.state is LinkState.CLOSED:
                continue
            if link.state is not LinkState.AUTHENTICATED:
                self.stats["auth_timeouts"] += 1
                self._close(link_id, CloseCode.AUTH_TIMEOUT, "no AUTH in time")
            elif link.last_seen + self.config.idle_timeout <= now:
                self._close(link_id, CloseCode.IDLE, "silent link")
            else:
                heapq.heappush(self._timers, (link.last_seen + self.config.idle_timeout, link_id))
        if now >= self._next_sweep:  # forget addresses whose quotas hold nothing (once a minute)
            self._next_sweep = now + 60.0
            for prefix in [p for p, a in self._addresses.items() if a.links == 0 and self._idle_address(a, now)]:
                del self._addresses[prefix]
            for peer in [
                p for p, b in self._peer_buckets.items() if p not in self._by_peer and b.level(now) >= b.burst
            ]:
                del self._peer_buckets[peer]

    def _idle_address(self, entry: _Address, now: float) -> bool:
        return entry.bucket.level(now) >= entry.bucket.burst and entry.opens.level(now) >= entry.opens.burst

    # -- inspection ------------------------------------------------------------------------

    def state_of(self, link_id: int) -> LinkState:
        link = self._links.get(link_id)
        return LinkState.CLOSED if link is None else link.state

    def peer_of(self, link_id: int) -> bytes | None:
        link = self._links.get(link_id)
        return link.peer if link is not None and link.state is LinkState.AUTHENTICATED else None

    def __len__(self) -> int:
        return len(self._links)
