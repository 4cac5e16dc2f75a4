"""A sans-IO TURN client (RFC 8656): one allocation that carries opaque datagrams to peers (spec/turn.md).

Drive it like a session:

* inputs: ``allocate(now)``, ``send(data, peer, now)``, ``refresh(now)``, ``release(now)``,
  ``receive(data, now)`` (one UDP datagram, or any chunk of the TCP/TLS stream),
  ``receive_eof(now)``, ``handle_timer(now)``;
* outputs: ``datagrams_to_send(now)`` (one message each; write them in order on a stream),
  ``get_timer()``, and ``next_event()`` (nat/turn_events.py).

After every input drain ``datagrams_to_send`` and ``next_event`` and re-arm ``get_timer``.
Allocate is answered 401 with REALM and NONCE, then repeated with the long-term credentials
(TRN-5.1); permissions are installed per peer IP and channels bound per peer address on first
use and refreshed while in use (TRN-5.3, TRN-5.4); data goes in Send indications until the
channel is bound, then in ChannelData (TRN-6.1).  Over UDP requests are retransmitted
(RFC 8489 §6.2.1), over TCP/TLS never (TRN-5.6).
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import math
from collections import deque
from collections.abc import Callable
from typing import Final

from ..errors import LocalProtocolError
from . import stun_message as sm
from .turn_config import TurnCredentials
from .turn_events import (
    Address,
    TurnAllocated,
    TurnDataReceived,
    TurnEvent,
    TurnFailed,
    TurnPeerFailed,
    TurnRefreshed,
    TurnReleased,
)
from .turn_framing import CHANNEL_MAX, CHANNEL_MIN, StreamDeframer, channel_data, decode_channel_data_untrusted

#: ``random(n)`` returns n random bytes (transaction ids): injected, the core has no RNG.
RandomSource = Callable[[int], bytes]
_INF: Final = math.inf
_KNOWN_RESPONSE_ATTRIBUTES: Final = frozenset(
    {
        sm.MAPPED_ADDRESS,
        sm.USERNAME,
        sm.MESSAGE_INTEGRITY,
        sm.ERROR_CODE,
        sm.UNKNOWN_ATTRIBUTES,
        sm.CHANNEL_NUMBER,
        sm.LIFETIME,
        sm.XOR_PEER_ADDRESS,
        sm.DATA_ATTR,
        sm.REALM,
        sm.NONCE,
        sm.XOR_RELAYED_ADDRESS,
        sm.RESERVATION_TOKEN,
        sm.XOR_MAPPED_ADDRESS,
        sm.MESSAGE_INTEGRITY_SHA256,
        sm.PASSWORD_ALGORITHM,
        sm.USERHASH,
    }
)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TurnConfig:
    """Timers and limits (spec/turn.md §5, §6); the defaults are the RFCs' values."""

    stream: bool = False
    rto: float = 0.5  # RFC 8489 §6.2.1 initial RTO
    rc: int = 7  # requests sent at most
    rm: int = 16  # last wait, in initial RTOs
    stream_timeout: float = 39.5  # Ti over TCP/TLS (RFC 8489 §6.2.2)
    permission_lifetime: float = 300.0  # RFC 8656 §9
    channel_lifetime: float = 600.0  # RFC 8656 §12
    refresh_margin: float = 60.0  # refresh this long before anything expires
    requested_lifetime: int | None = None  # LIFETIME asked in Allocate (None: the server's default)
    use_channels: bool = True
    max_permissions: int = 1024
    max_queued: int = 64  # datagrams held per peer until its permission is installed
    stale_nonce_retries: int = 3
    software: str = "p2pos"


class TurnState(enum.Enum):
    IDLE = "idle"
    ALLOCATING = "allocating"
    ALLOCATED = "allocated"
    RELEASING = "releasing"
    RELEASED = "released"
    FAILED = "failed"


class TurnInput(enum.Enum):
    """What moves a client between states (spec/turn.md §5)."""

    ALLOCATE = "allocate()"
    ALLOCATED = "Allocate success"
    LOST = "437 Allocation Mismatch"
    RELEASE = "release()"
    RELEASED = "release answered"
    FAILED = "failure"


#: ``{state: {input: new state}}``; an input missing for a state is a ``LocalProtocolError``.
TRANSITIONS: dict[TurnState, dict[TurnInput, TurnState]] = {
    TurnState.IDLE: {
        TurnInput.ALLOCATE: TurnState.ALLOCATING,
        TurnInput.RELEASED: TurnState.RELEASED,
        TurnInput.FAILED: TurnState.FAILED,
    },
    TurnState.ALLOCATING: {TurnInput.ALLOCATED: TurnState.ALLOCATED, TurnInput.FAILED: TurnState.FAILED},
    TurnState.ALLOCATED: {
        TurnInput.LOST: TurnState.ALLOCATING,
        TurnInput.RELEASE: TurnState.RELEASING,
        TurnInput.FAILED: TurnState.FAILED,
    },
    TurnState.RELEASING: {TurnInput.RELEASED: TurnState.RELEASED, TurnInput.FAILED: TurnState.FAILED},
    TurnState.RELEASED: {},
    TurnState.FAILED: {},
}


class _Kind(enum.Enum):
    ALLOCATE = sm.ALLOCATE
    REFRESH = sm.REFRESH
    RELEASE = -sm.REFRESH
    PERMISSION = sm.CREATE_PERMISSION
    CHANNEL_BIND = sm.CHANNEL_BIND


@dataclasses.dataclass(slots=True)
class _Transaction:
    kind: _Kind
    attributes: list[tuple[int, bytes]]
    wire: bytes
    authenticated: bool
    next_send: float
    rto: float
    sends: int
    deadline: float
    peer: Address | None = None
    retries: int = 0


@dataclasses.dataclass(slots=True)
class _Permission:
    peer: Address  # the first peer address at this IP (to install it again after a 437)
    installed: bool = False
    expires: float = _INF
    pending: bool = False
    last_used: float = 0.0


@dataclasses.dataclass(slots=True)
class _Channel:
    number: int
    bound: bool = False
    expires: float = _INF
    pending: bool = False
    last_used: float = 0.0


def normalize(peer: Address) -> Address:
    """``peer`` with its host in canonical form (so '::ffff:…' spellings and case do not split state)."""
    return str(ipaddress.ip_address(peer[0])), int(peer[1])


class TurnClient:
    """One TURN allocation on one server (see the module docstring for the call order)."""

    def __init__(self, credentials: TurnCredentials, *, random: RandomSource, config: TurnConfig | None = None) -> None:
        self.config = config or TurnConfig()
        self.state = TurnState.IDLE
        self.relayed: Address | None = None
        self.mapped: Address | None = None
        self.lifetime = 0
        self.stats: dict[str, int] = {
            "malformed": 0,
            "stray": 0,
            "bad_integrity": 0,
            "unknown_channel": 0,
            "queue_full": 0,
            "retransmits": 0,
            "not_allocated": 0,
        }
        self._credentials = credentials
        self._random = random
        self._realm = ""
        self._nonce = ""
        self._key: bytes | None = None
        self._out: list[bytes] = []
        self._events: deque[TurnEvent] = deque()
        self._transactions: dict[bytes, _Transaction] = {}
        self._deframer = StreamDeframer() if self.config.stream else None
        self._expires = _INF
        self._refresh_at = _INF
        self._release_wanted = False
        self._permissions: dict[str, _Permission] = {}
        self._channels: dict[Address, _Channel] = {}
        self._by_number: dict[int, Address] = {}
        self._cooling: dict[int, float] = {}
        self._next_number = CHANNEL_MIN
        self._queued: dict[Address, list[bytes]] = {}

    # -- API calls ----------------------------------------------------------------

    def allocate(self, now: float) -> None:
        """Ask for an allocation (TRN-5.1).  Then drain ``datagrams_to_send``."""
        self._move(TurnInput.ALLOCATE)
        self._request(_Kind.ALLOCATE, self._allocate_attributes(), now)

    def send(self, data: bytes, peer: Address, now: float) -> None:
        """Relay ``data`` to ``peer`` (TRN-6.1); held until the peer's permission is installed."""
        if self.state in (TurnState.RELEASING, TurnState.RELEASED, TurnState.FAILED):
            raise LocalProtocolError(f"send() on a TURN allocation that is {self.state.value}")
        peer = normalize(peer)
        if self.state is TurnState.ALLOCATED:
            self._ensure(peer, now)
        perm = self._permissions.get(peer[0])
        channel = self._channels.get(peer)
        if perm is not None:
            perm.last_used = now
        if channel is not None:
            channel.last_used = now
        if channel is not None and channel.bound:
            self._out.append(channel_data(channel.number, data, stream=self.config.stream))
        elif perm is not None and perm.installed:
            self._out.append(self._send_indication(peer, data))
        else:
            queue = self._queued.get(peer)
            if queue is None and len(self._queued) < self.config.max_permissions:
                queue = self._queued[peer] = []
            if queue is None or len(queue) >= self.config.max_queued:
                self.stats["queue_full"] += 1
            else:
                queue.append(data)

    def add_peer(self, peer: Address, now: float) -> None:
        """Install the permission (and channel) for ``peer`` now, so that it can reach us before we send to it.

        TURN drops what a peer sends until the client has a permission for it (RFC 8656 §9):
        both sides of a TURN path call this with the other's address (TRN-6.3).
        """
        if self.state in (TurnState.RELEASING, TurnState.RELEASED, TurnState.FAILED):
            raise LocalProtocolError(f"add_peer() on a TURN allocation that is {self.state.value}")
        peer = normalize(peer)
        if self.state is TurnState.ALLOCATED:
            self._ensure(peer, now)
            self._touch(peer, now)
        elif peer not in self._queued and len(self._queued) < self.config.max_permissions:
            self._queued[peer] = []

    def refresh(self, now: float) -> None:
        """Refresh the allocation now instead of at its timer (a ``TurnRefreshed`` follows)."""
        if self.state is not TurnState.ALLOCATED:
            raise LocalProtocolError(f"refresh() in state {self.state.value}")
        self._start_refresh(now)

    def release(self, now: float) -> None:
        """Give the allocation back: Refresh with LIFETIME 0 (TRN-5.5); ``TurnReleased`` follows."""
        if self.state is TurnState.ALLOCATING:
            self._release_wanted = True
        elif self.state is TurnState.ALLOCATED:
            self._move(TurnInput.RELEASE)
            self._transactions.clear()
            self._queued.clear()
            self._request(_Kind.RELEASE, [(sm.LIFETIME, sm.u32(0))], now)
        elif self.state is TurnState.IDLE:
            self._finish_released("released before allocating")

    def fail(self, reason: str) -> None:
        """The driver lost the connection to the server (or could not reach it): the allocation is gone."""
        self._fail(reason)

    # -- network input ------------------------------------------------------------

    def receive(self, data: bytes, now: float) -> None:
        """A datagram from the server (UDP) or a chunk of its byte stream (TCP/TLS).  Never raises."""
        if self._deframer is None:
            self._receive_message(data, now)
            return
        try:
            messages = self._deframer.feed(data)
        except sm.StunError as exc:
            self._fail(f"the TURN server's stream is out of step: {exc}")
            return
        for message in messages:
            self._receive_message(message, now)

    def receive_eof(self, now: float) -> None:
        """The server closed the TCP/TLS connection: an allocation made over it does not outlive it."""
        if self.state is TurnState.RELEASING:
            self._finish_released("the server closed the connection")
        else:
            self._fail("the TURN server closed the connection")

    def _receive_message(self, data: bytes, now: float) -> None:
        if self.state in (TurnState.RELEASED, TurnState.FAILED):
            self.stats["not_allocated"] += 1
            return
        if data and CHANNEL_MIN >> 8 <= data[0] <= CHANNEL_MAX >> 8:
            try:
                number, payload = decode_channel_data_untrusted(data)
            except sm.StunError:
                self.stats["malformed"] += 1
                return
            peer = self._by_number.get(number)
            if peer is None:
                self.stats["unknown_channel"] += 1
                return
            self._touch(peer, now)
            self._events.append(TurnDataReceived(peer=peer, data=payload))
            return
        try:
            message = sm.decode_untrusted(data)
            if message.klass == sm.INDICATION and message.method == sm.DATA:
                self._receive_data_indication(message, now)
            elif message.klass in (sm.SUCCESS, sm.ERROR):
                self._receive_response(message, now)
            else:
                self.stats["stray"] += 1
        except sm.StunError:
            self.stats["malformed"] += 1

    def _receive_data_indication(self, message: sm.Message, now: float) -> None:
        if self.state is not TurnState.ALLOCATED:
            self.stats["not_allocated"] += 1
            return
        address, data = message.get(sm.XOR_PEER_ADDRESS), message.get(sm.DATA_ATTR)
        if address is None or data is None:
            raise sm.StunError("a Data indication lacks XOR-PEER-ADDRESS or DATA")
        peer = sm.decode_xor_address_untrusted(address, message.transaction_id)
        self._touch(peer, now)
        self._events.append(TurnDataReceived(peer=peer, data=data))

    def _receive_response(self, message: sm.Message, now: float) -> None:
        txn = self._transactions.get(message.transaction_id)
        if txn is None or abs(txn.kind.value) != message.method:
            self.stats["stray"] += 1
            return
        if message.klass == sm.ERROR:
            err = message.error()
            if err is None:
                raise sm.StunError("an error response lacks ERROR-CODE")
            del self._transactions[message.transaction_id]
            self._on_error(txn, err[0], err[1], message, now)
            return
        if txn.authenticated and (self._key is None or not message.integrity_ok(self._key)):
            self.stats["bad_integrity"] += 1  # RFC 8489 §9.2: discard, keep waiting
            return
        unknown = sm.unknown_comprehension_required(message, _KNOWN_RESPONSE_ATTRIBUTES)
        if unknown:
            raise sm.StunError(f"success response with unknown comprehension-required attributes {unknown}")
        del self._transactions[message.transaction_id]
        self._on_success(txn, message, now)

    def _on_success(self, txn: _Transaction, message: sm.Message, now: float) -> None:
        kind = txn.kind
        if kind is _Kind.ALLOCATE:
            relayed, lifetime = message.get(sm.XOR_RELAYED_ADDRESS), message.get(sm.LIFETIME)
            if relayed is None or lifetime is None:
                self._fail("the Allocate success response lacks XOR-RELAYED-ADDRESS or LIFETIME")
                return
            mapped = message.get(sm.XOR_MAPPED_ADDRESS)
            self.relayed = sm.decode_xor_address_untrusted(relayed, message.transaction_id)
            self.mapped = None if mapped is None else sm.decode_xor_address_untrusted(mapped, message.transaction_id)
            self._move(TurnInput.ALLOCATED)
            self._set_lifetime(sm.decode_u32_untrusted(lifetime, "LIFETIME"), now)
            self._events.append(TurnAllocated(relayed=self.relayed, mapped=self.mapped, lifetime=self.lifetime))
            if self._release_wanted:
                self.release(now)
                return
            for peer in list(self._queued):
                self._ensure(peer, now)
        elif kind is _Kind.REFRESH:
            lifetime = message.get(sm.LIFETIME)
            seconds = self.lifetime if lifetime is None else sm.decode_u32_untrusted(lifetime, "LIFETIME")
            self._set_lifetime(seconds, now)
            self._events.append(TurnRefreshed(lifetime=seconds))
        elif kind is _Kind.RELEASE:
            self._finish_released("released")
        elif kind is _Kind.PERMISSION and txn.peer is not None:
            self._permission_installed(txn.peer[0], now)
        elif kind is _Kind.CHANNEL_BIND and txn.peer is not None:
            channel = self._channels.get(txn.peer)
            if channel is not None:
                channel.bound, channel.pending = True, False
                channel.expires = now + self.config.channel_lifetime
            self._permission_installed(txn.peer[0], now)  # a ChannelBind installs the permission too (RFC 8656 §12.1)

    def _touch(self, peer: Address, now: float) -> None:
        """Traffic from ``peer`` keeps its permission and channel refreshed, like traffic to it."""
        perm, channel = self._permissions.get(peer[0]), self._channels.get(peer)
        if perm is not None:
            perm.last_used = now
        if channel is not None:
            channel.last_used = now

    def _on_error(self, txn: _Transaction, code: int, reason: str, message: sm.Message, now: float) -> None:
        if code in (401, 438):
            try:
                nonce_value, realm_value = message.get(sm.NONCE), message.get(sm.REALM)
                nonce = None if nonce_value is None else sm.text_untrusted(nonce_value, "NONCE")
                realm = None if realm_value is None else sm.text_untrusted(realm_value, "REALM")
            except sm.StunError as exc:
                self._fail_request(txn, f"bad {code} response: {exc}", code, now)
                return
            if code == 401 and txn.authenticated and self._realm and realm is not None:
                # TRN-5.2: a second 401 means the server refused our credentials.
                self._fail_request(txn, f"the TURN server refused the credentials (401 {reason})", 401, now)
                return
            if nonce is None or (realm is None and not self._realm) or txn.retries >= self.config.stale_nonce_retries:
                self._fail_request(txn, f"authentication failed ({code} {reason})", code, now)
                return
            self._nonce = nonce
            if realm is not None:
                self._realm = realm
            c = self._credentials
            self._key = sm.long_term_key(c.username, self._realm, c.password)
            retries = txn.retries + 1 if code == 438 else txn.retries  # TRN-5.2 counts stale nonces
            self._request(txn.kind, txn.attributes, now, peer=txn.peer, retries=retries)
        elif code == 437 and txn.kind in (_Kind.REFRESH, _Kind.PERMISSION, _Kind.CHANNEL_BIND):
            self._reallocate(now)  # TRN-5.7: the server lost our allocation
        else:
            self._fail_request(txn, f"{txn.kind.name} refused: {code} {reason}", code, now)

    def _fail_request(self, txn: _Transaction, reason: str, code: int, now: float) -> None:
        if txn.kind in (_Kind.ALLOCATE, _Kind.REFRESH):
            self._fail(reason, code)
        elif txn.kind is _Kind.RELEASE:
            self._finish_released(reason)
        elif txn.peer is not None:
            self._drop_peer(txn.peer, txn.kind is _Kind.CHANNEL_BIND, reason)

    # -- timers -------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """When ``handle_timer`` must next run, or None."""
        when = _INF
        for txn in self._transactions.values():
            when = min(when, txn.next_send, txn.deadline)
        if self.state is TurnState.ALLOCATED:
            when = min(when, self._refresh_at, self._expires)
            for perm in self._permissions.values():
                if perm.installed and not perm.pending:
                    when = min(when, perm.expires - self.config.refresh_margin)
            for channel in self._channels.values():
                if channel.bound and not channel.pending:
                    when = min(when, channel.expires - self.config.refresh_margin)
        return None if when == _INF else when

    def handle_timer(self, now: float) -> None:
        """Retransmit, time out, and refresh what is due (TRN-5.3, TRN-5.4, TRN-5.6)."""
        for txid, txn in list(self._transactions.items()):
            if txid not in self._transactions:
                continue
            if now >= txn.deadline:
                del self._transactions[txid]
                self._fail_request(txn, f"no answer from the TURN server to {txn.kind.name} ({txn.sends} sent)", 0, now)
            elif now >= txn.next_send:
                self._out.append(txn.wire)
                txn.sends += 1
                self.stats["retransmits"] += 1
                txn.rto *= 2
                txn.next_send = now + txn.rto if txn.sends < self.config.rc else _INF
        if self.state is not TurnState.ALLOCATED:
            return
        if now >= self._expires:
            self._fail("the TURN allocation expired")
            return
        if now >= self._refresh_at:
            self._start_refresh(now)
        margin = self.config.refresh_margin
        for ip, perm in list(self._permissions.items()):
            if perm.installed and not perm.pending and now >= perm.expires - margin:
                if perm.last_used > perm.expires - self.config.permission_lifetime:
                    perm.pending = True
                    self._request(_Kind.PERMISSION, [(sm.XOR_PEER_ADDRESS, b"")], now, peer=(ip, 0))
                else:
                    del self._permissions[ip]  # unused for a whole lifetime: let it lapse
        for peer, channel in list(self._channels.items()):
            if channel.bound and not channel.pending and now >= channel.expires - margin:
                if channel.last_used > channel.expires - self.config.channel_lifetime:
                    channel.pending = True
                    self._bind(peer, channel, now)
                else:
                    self._forget_channel(peer, channel, now)

    # -- outputs ------------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[bytes]:
        """Messages for the server, in order (one datagram each over UDP; concatenate on a stream)."""
        out, self._out = self._out, []
        return out

    def next_event(self) -> TurnEvent | None:
        """The next event, or None."""
        return self._events.popleft() if self._events else None

    def channel_for(self, peer: Address, now: float) -> int | None:
        """The channel to put data for ``peer`` in, framed by the driver itself (TRN-6.6), or None.

        A number only while the allocation is up, the peer's permission installed and its channel
        bound: the driver may then write ``channel_header(number, len(data)) + data`` to a UDP leg
        itself (one message per datagram, TRN-6.1), and the permission and channel count as used,
        as after ``send``.  None: call ``send`` (it installs, holds or wraps in a Send indication).
        """
        if self.state is not TurnState.ALLOCATED or self.config.stream:
            return None
        channel = self._channels.get(peer)  # the driver's addresses are canonical already (no parsing)
        if channel is None:
            channel = self._channels.get(normalize(peer))
        if channel is None or not channel.bound:
            return None
        perm = self._permissions.get(peer[0])
        if perm is None:
            perm = self._permissions.get(normalize(peer)[0])
        if perm is None or not perm.installed:
            return None
        perm.last_used = channel.last_used = now
        return channel.number

    def channel_of(self, peer: Address) -> int | None:
        """The bound channel number for ``peer``, or None while data to it goes in Send indications."""
        channel = self._channels.get(normalize(peer))
        return channel.number if channel is not None and channel.bound else None

    def has_permission(self, peer_ip: str) -> bool:
        """Whether a permission for ``peer_ip`` is installed."""
        perm = self._permissions.get(str(ipaddress.ip_address(peer_ip)))
        return perm is not None and perm.installed

    # -- internals ----------------------------------------------------------------

    def _allocate_attributes(self) -> list[tuple[int, bytes]]:
        attrs = [(sm.REQUESTED_TRANSPORT, sm.requested_transport())]
        if self.config.requested_lifetime is not None:
            attrs.append((sm.LIFETIME, sm.u32(self.config.requested_lifetime)))
        return attrs

    def _request(
        self,
        kind: _Kind,
        attributes: list[tuple[int, bytes]],
        now: float,
        *,
        peer: Address | None = None,
        retries: int = 0,
    ) -> None:
        txid = self._random(12)
        attrs = list(attributes)
        if kind in (_Kind.PERMISSION, _Kind.CHANNEL_BIND) and peer is not None:
            attrs = [(t, sm.xor_address(peer, txid) if t == sm.XOR_PEER_ADDRESS else v) for t, v in attrs]
        if self.config.software:
            attrs.append((sm.SOFTWARE, self.config.software.encode()))
        authenticated = self._key is not None
        if authenticated:
            attrs += [
                (sm.USERNAME, self._credentials.username.encode()),
                (sm.REALM, self._realm.encode()),
                (sm.NONCE, self._nonce.encode()),
            ]
        wire = sm.encode(abs(kind.value), sm.REQUEST, txid, attrs, key=self._key, fingerprint=True)
        cfg = self.config
        if cfg.stream:
            next_send, deadline = _INF, now + cfg.stream_timeout
        else:
            next_send = now + cfg.rto
            deadline = now + cfg.rto * (2 ** (cfg.rc - 1) - 1) + cfg.rm * cfg.rto
        self._transactions[txid] = _Transaction(
            kind, attributes, wire, authenticated, next_send, cfg.rto, 1, deadline, peer, retries
        )
        self._out.append(wire)

    def _start_refresh(self, now: float) -> None:
        if any(t.kind is _Kind.REFRESH for t in self._transactions.values()):
            return
        self._refresh_at = _INF
        lifetime = self.config.requested_lifetime
        self._request(_Kind.REFRESH, [] if lifetime is None else [(sm.LIFETIME, sm.u32(lifetime))], now)

    def _set_lifetime(self, seconds: int, now: float) -> None:
        self.lifetime = seconds
        self._expires = now + seconds
        self._refresh_at = now + max(seconds - self.config.refresh_margin, seconds / 2)

    def _ensure(self, peer: Address, now: float) -> None:
        """Start the permission (and channel) ``peer`` needs, if not there yet."""
        ip = peer[0]
        if ip not in self._permissions:
            if len(self._permissions) >= self.config.max_permissions:
                raise LocalProtocolError(f"more than {self.config.max_permissions} TURN peers")
            self._permissions[ip] = _Permission(peer, pending=True, last_used=now)
            self._request(_Kind.PERMISSION, [(sm.XOR_PEER_ADDRESS, b"")], now, peer=(ip, 0))
        if self.config.use_channels and peer not in self._channels:
            number = self._free_number(now)
            if number is not None:
                channel = _Channel(number, pending=True, last_used=now)
                self._channels[peer] = channel
                self._by_number[number] = peer
                self._bind(peer, channel, now)

    def _bind(self, peer: Address, channel: _Channel, now: float) -> None:
        attrs = [(sm.CHANNEL_NUMBER, sm.channel_number(channel.number)), (sm.XOR_PEER_ADDRESS, b"")]
        self._request(_Kind.CHANNEL_BIND, attrs, now, peer=peer)

    def _free_number(self, now: float) -> int | None:
        for _ in range(CHANNEL_MAX - CHANNEL_MIN + 1):
            number = self._next_number
            self._next_number = CHANNEL_MIN if number == CHANNEL_MAX else number + 1
            if number not in self._by_number and self._cooling.get(number, 0.0) <= now:
                self._cooling.pop(number, None)
                return number
        return None

    def _permission_installed(self, ip: str, now: float) -> None:
        perm = self._permissions.setdefault(ip, _Permission((ip, 0), last_used=now))
        perm.installed, perm.pending = True, False
        perm.expires = now + self.config.permission_lifetime
        for peer in [p for p in self._queued if p[0] == ip]:
            for data in self._queued.pop(peer):
                self.send(data, peer, now)

    def _forget_channel(self, peer: Address, channel: _Channel, now: float) -> None:
        del self._channels[peer]
        self._by_number.pop(channel.number, None)
        # RFC 8656 §12: a channel number is not reused for another peer for 5 minutes.
        self._cooling[channel.number] = now + self.config.permission_lifetime

    def _drop_peer(self, peer: Address, channel_only: bool, reason: str) -> None:
        if channel_only:
            channel = self._channels.pop(peer, None)
            if channel is not None:
                self._by_number.pop(channel.number, None)
            self._events.append(TurnPeerFailed(peer=peer, reason=reason))
            return
        self._permissions.pop(peer[0], None)
        for queued in [p for p in self._queued if p[0] == peer[0]]:
            del self._queued[queued]
        self._events.append(TurnPeerFailed(peer=peer, reason=reason))

    def _reallocate(self, now: float) -> None:
        in_use = set(self._channels) | {perm.peer for perm in self._permissions.values()}
        self._transactions.clear()
        self._permissions.clear()
        self._channels.clear()
        self._by_number.clear()
        self._move(TurnInput.LOST)
        self.relayed = None
        self._expires = self._refresh_at = _INF
        for peer in in_use:
            self._queued.setdefault(peer, [])
        self._request(_Kind.ALLOCATE, self._allocate_attributes(), now)

    def _move(self, what: TurnInput) -> None:
        new = TRANSITIONS[self.state].get(what)
        if new is None:
            raise LocalProtocolError(f"{what.value} in state {self.state.value}")
        self.state = new

    def _send_indication(self, peer: Address, data: bytes) -> bytes:
        txid = self._random(12)
        attrs = [(sm.XOR_PEER_ADDRESS, sm.xor_address(peer, txid)), (sm.DATA_ATTR, data)]
        return sm.encode(sm.SEND, sm.INDICATION, txid, attrs)

    def _fail(self, reason: str, code: int = 0) -> None:
        if not TRANSITIONS[self.state]:
            return  # already over: the first reason stands
        self._move(TurnInput.FAILED)
        self._transactions.clear()
        self._queued.clear()
        self._events.append(TurnFailed(reason=reason, code=code))

    def _finish_released(self, reason: str) -> None:
        if not TRANSITIONS[self.state]:
            return
        self._move(TurnInput.RELEASED)
        self._transactions.clear()
        self._events.append(TurnReleased(reason=reason))
