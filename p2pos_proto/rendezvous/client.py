"""A peer's side of the rendezvous protocol, sans-IO (spec/rendezvous.md).

``RendezvousClient`` keeps one peer registered with one rendezvous node over a session of the
peer's own ``Endpoint`` (the socket its other sessions use, so the NAT binding the node sees is
the one peers will reach): it connects, registers, renews at half the lease, keeps the binding
alive, looks peers up and reports introductions.  Requests travel in unreliable records, so it
retries each with back-off until answered.  When the node forgot the session (a restart), the
node's stateless reset ends it at once and the client connects and registers again.

The driver feeds it the endpoint's events for its session (``handle_event``, ``owns``), the
datagrams that are stateless resets (``receive_reset_untrusted``), and timers; the client calls
the endpoint (connect, send), so after each call the driver drains the endpoint's output.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import hmac
import math
from collections.abc import Hashable

from ..endpoint.endpoint import Address, Endpoint
from ..errors import LocalProtocolError
from ..events import HandshakeCompleted, MessageReceived, SessionClosed
from ..identity.peer_id import PeerId
from ..nat.profile import UNKNOWN_PROFILE, NatProfile
from . import messages as m
from .node import STATELESS_RESET


class ClientState(enum.Enum):
    IDLE = "idle"  # waiting to (re)connect
    CONNECTING = "connecting"
    REGISTERING = "registering"
    REGISTERED = "registered"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ClientConfig:
    lease: int = 600
    #: Seconds between keepalives while nothing else is sent (the NAT binding's refresh).
    keepalive_interval: float = 25.0
    #: First retry of a request, doubled per retry up to ``retry_max``.
    retry_initial: float = 0.5
    retry_max: float = 4.0
    #: A lookup unanswered this long fails.
    lookup_timeout: float = 5.0
    #: A REGISTER unanswered this long: the registration is lost, connect again (RDV-7.6).
    register_timeout: float = 15.0
    #: Reconnecting after a failure: first delay, doubled up to ``reconnect_max``.
    reconnect_initial: float = 1.0
    reconnect_max: float = 60.0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RegistrationChanged:
    """Registered (``observed`` set) or lost (``observed`` None, ``why`` says why)."""

    node: PeerId | None
    observed: m.Address | None
    why: str = ""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LookupAnswered:
    """A lookup's answer: ``observed`` None when the node does not know the peer (or failed)."""

    node: PeerId | None
    txid: int
    peer_id: bytes
    observed: m.Address | None
    candidates: tuple[m.Address, ...] = ()
    why: str = ""
    #: With an introduction: the peer's traits and the ticket both sides punch with (spec/punch.md §7).
    punch: m.Punch | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class IntroductionReceived:
    """Another peer looked this one up and asked to be introduced: start connecting to it."""

    node: PeerId | None
    peer_id: bytes
    observed: m.Address
    candidates: tuple[m.Address, ...] = ()
    #: The asker's traits and the ticket both sides punch with (spec/punch.md §7).
    punch: m.Punch | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RelaysOffered:
    """The node offers these relays (RELAYS, rendezvous.md §4.5): the ws:// and wss:// URLs it sent."""

    node: PeerId | None
    urls: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FreshReceived:
    """The peer of an introduction took a fresh mapping (FRESH, rendezvous.md §4.6): hand ``observed``
    to the punch that ``ticket_id`` names (``Puncher.receive_fresh``, spec/punch.md §3.4)."""

    node: PeerId | None
    peer_id: bytes
    observed: m.Address
    ticket_id: bytes


ClientEvent = RegistrationChanged | LookupAnswered | IntroductionReceived | RelaysOffered | FreshReceived


@dataclasses.dataclass(slots=True)
class _Pending:
    message: m.Message
    first_sent: float
    next_retry: float
    interval: float
    sends: int = 1


class RendezvousClient:
    def __init__(
        self,
        endpoint: Endpoint,
        node: PeerId | None,
        address: Address,
        *,
        local: Hashable = 0,
        config: ClientConfig | None = None,
        candidates: tuple[m.Address, ...] = (),
    ) -> None:
        self.endpoint, self.node, self.address, self.local = endpoint, node, address, local
        self.config = config or ClientConfig()
        self.candidates = candidates
        #: This side's NAT as behaviour discovery measured it; sent with REGISTER and LOOKUP
        #: (spec/rendezvous.md §3.5) once set, with ``rtt``.
        self.profile: NatProfile | None = None
        #: The round trip to the node, from the latest request answered without a repeat (Karn).
        self.rtt: float | None = None
        #: A port mapping forwards to this side (spec/portmap.md): the traits' profile says so.
        self.port_mapped = False
        self.state = ClientState.IDLE
        self.session_id: int | None = None
        self.observed: m.Address | None = None
        #: The relays the node offered last (RelaysOffered).
        self.relays: tuple[str, ...] = ()
        self._reset_token: bytes | None = None
        self._txid = 0
        self._pending: dict[int, _Pending] = {}
        self._register_txid: int | None = None
        self._renew_at: float | None = None
        self._keepalive_at: float | None = None
        #: Seconds between KEEPALIVE records (RDV-7.3); None: none (the driver keeps the binding with
        #: STUN keepalives that draw a reply, spec/nat.md §5.1).  ``set_keepalive_interval`` changes it.
        self.keepalive_interval: float | None = self.config.keepalive_interval
        self._reconnect_at: float | None = 0.0  # connect at the first timer
        self._reconnect_delay = self.config.reconnect_initial
        self._events: collections.deque[ClientEvent] = collections.deque()

    # -- the application's calls -----------------------------------------------------------

    def lookup(self, peer_id: bytes, now: float, *, introduce: bool = True) -> int:
        """Ask the node for ``peer_id`` (and to introduce us); the answer is a ``LookupAnswered``."""
        txid = self._next_txid()
        message = m.Lookup(
            txid=txid, peer_id=peer_id, introduce=introduce, candidates=self.candidates, traits=self.traits()
        )
        if self.state is not ClientState.REGISTERED:
            self._events.append(
                LookupAnswered(node=self.node, txid=txid, peer_id=peer_id, observed=None, why="not registered")
            )
            return txid
        self._request(message, now)
        return txid

    def close(self, now: float) -> None:
        """Stop: close the session (the node forgets us at once)."""
        session = self.endpoint.session(self.session_id) if self.session_id is not None else None
        if session is not None:
            session.close(now)
            self.endpoint.updated(session.local_index)
        self.session_id, self.state, self._reconnect_at = None, ClientState.IDLE, None
        self._pending.clear()

    def set_profile(self, profile: NatProfile | None, now: float) -> None:
        """This side's NAT profile as behaviour discovery measured it (None: unknown again).

        REGISTER and LOOKUP carry it from now on (spec/rendezvous.md §3.5); a registered client
        whose profile changed renews its registration at once, so that the node introduces it
        with current traits (RDV-3.5.2 keeps the latest REGISTER's; spec/nat.md NAT-3.6.4).
        Drain the endpoint's output after this."""
        if profile == self.profile:
            return
        self.profile = profile
        if self.state is ClientState.REGISTERED:
            self._register(now)

    def set_keepalive_interval(self, interval: float | None, now: float) -> None:
        """Send KEEPALIVE records every ``interval`` seconds of silence from now on (None: none).

        The daemon sets it from outside (spec/nat.md §5.1): while it keeps the binding to the node
        with STUN keepalives of its own (NAT-5.3: they draw a reply), the session sends none; the
        wire is unchanged.  The next one leaves within ``interval`` of now."""
        if interval is not None and not interval > 0:
            raise LocalProtocolError("keepalive interval > 0 (None: none)")
        self.keepalive_interval = interval
        if interval is None:
            self._keepalive_at = None
        elif self.state in (ClientState.REGISTERING, ClientState.REGISTERED):
            due = math.inf if self._keepalive_at is None else self._keepalive_at
            self._keepalive_at = min(due, now + interval)

    def next_event(self) -> ClientEvent | None:
        return self._events.popleft() if self._events else None

    # -- the driver's calls ----------------------------------------------------------------

    def owns(self, session_id: int) -> bool:
        return session_id == self.session_id

    def handle_event(self, event: object, now: float) -> None:
        """An endpoint event of this client's session (``owns(event.session_id)``)."""
        if isinstance(event, HandshakeCompleted):
            if self.node is None:  # trust on first use: the key met first is the node's from now on
                self.node = event.peer_id
            self.state = ClientState.REGISTERING
            self._register(now)
        elif isinstance(event, MessageReceived):
            self._message(event.data, now)
        elif isinstance(event, SessionClosed):
            self._lost(f"session closed: {event.code.name} {event.reason}".strip(), now)

    def receive_reset_untrusted(self, data: bytes, address: Address, now: float) -> bool:
        """Whether ``data`` (a datagram of type 0x0b) is the node's stateless reset of our session;
        if it is, the session is over and the client connects again at once."""
        token = self._reset_token
        if token is None or len(data) < 1 + m.RESET_TOKEN_LEN or data[0] != STATELESS_RESET:
            return False
        if not hmac.compare_digest(bytes(data[-m.RESET_TOKEN_LEN :]), token):
            return False
        self._close_session(now)
        self._lost("the node restarted (stateless reset)", now, delay=0.0)
        return True

    def get_timer(self) -> float | None:
        times = [t for t in (self._reconnect_at, self._renew_at, self._keepalive_at) if t is not None]
        times += [p.next_retry for p in self._pending.values()]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        if self._reconnect_at is not None and now >= self._reconnect_at:
            self._reconnect_at = None
            self._connect(now)
        if self._renew_at is not None and now >= self._renew_at:
            self._renew_at = None
            self._register(now)
        for txid, pending in list(self._pending.items()):
            if now < pending.next_retry:
                continue
            message = pending.message
            if isinstance(message, m.Register) and now - pending.first_sent >= self.config.register_timeout:
                self._close_session(now)
                self._lost("the node does not answer", now)
                return
            if isinstance(message, m.Lookup) and now - pending.first_sent >= self.config.lookup_timeout:
                del self._pending[txid]
                self._events.append(
                    LookupAnswered(node=self.node, txid=txid, peer_id=message.peer_id, observed=None, why="no answer")
                )
                continue
            pending.interval = min(pending.interval * 2, self.config.retry_max)
            pending.next_retry = now + pending.interval
            pending.sends += 1
            if isinstance(message, m.Lookup):  # fail it on time, not at the next repeat
                pending.next_retry = min(pending.next_retry, pending.first_sent + self.config.lookup_timeout)
            elif isinstance(message, m.Register):
                pending.next_retry = min(pending.next_retry, pending.first_sent + self.config.register_timeout)
            self._send(message, now)
        if self._keepalive_at is not None and now >= self._keepalive_at:
            session = self.endpoint.session(self.session_id) if self.session_id is not None else None
            if session is not None and self.state is not ClientState.CONNECTING:
                session.send_keepalive(now)
                self.endpoint.updated(session.local_index)
            self._keepalive_at = None if self.keepalive_interval is None else now + self.keepalive_interval

    # -- internals -------------------------------------------------------------------------

    def _next_txid(self) -> int:
        self._txid = (self._txid + 1) & 0xFFFF_FFFF
        return self._txid

    def _connect(self, now: float) -> None:
        session = self.endpoint.connect(self.address, now, local=self.local, expected_peer=self.node, channels=False)
        self.session_id = session.local_index
        self.state = ClientState.CONNECTING
        self._keepalive_at = None

    def _close_session(self, now: float) -> None:
        session = self.endpoint.session(self.session_id) if self.session_id is not None else None
        if session is not None:
            session.close(now)
            self.endpoint.updated(session.local_index)

    def traits(self) -> m.Traits | None:
        """What REGISTER and LOOKUP say of this side (spec/rendezvous.md §3.5): None until something is known."""
        if self.profile is None and self.rtt is None and not self.port_mapped:
            return None
        rtt_ms = 0 if self.rtt is None else min(0xFFFF, max(1, round(self.rtt * 1000)))
        profile = self.profile or UNKNOWN_PROFILE
        if self.port_mapped and not profile.port_mapped:
            profile = dataclasses.replace(profile, port_mapped=True)
        return m.Traits(profile=profile, rtt_ms=rtt_ms)

    def reregister(self, now: float) -> None:
        """Register again now (the candidates or the traits changed), if registered and no REGISTER waits."""
        if self.state is ClientState.REGISTERED and self._register_txid is None:
            self._register(now)

    def _register(self, now: float) -> None:
        if self._register_txid is not None:
            self._pending.pop(self._register_txid, None)
        self._register_txid = self._next_txid()
        message = m.Register(
            txid=self._register_txid, lease=self.config.lease, candidates=self.candidates, traits=self.traits()
        )
        self._request(message, now)

    def _request(self, message: m.Message, now: float) -> None:
        interval = self.config.retry_initial
        self._pending[message.txid] = _Pending(message, now, now + interval, interval)
        self._send(message, now)

    def _send(self, message: m.Message, now: float) -> None:
        session = self.endpoint.session(self.session_id) if self.session_id is not None else None
        if session is None or self.state is ClientState.CONNECTING:
            return
        session.send(m.encode(message), now)
        self.endpoint.updated(session.local_index)
        self._keepalive_at = None if self.keepalive_interval is None else now + self.keepalive_interval

    def _lost(self, why: str, now: float, *, delay: float | None = None) -> None:
        was_registered = self.state is ClientState.REGISTERED
        self.session_id, self.state, self.observed, self._reset_token = None, ClientState.IDLE, None, None
        self._renew_at = self._keepalive_at = None
        for txid, pending in self._pending.items():
            if isinstance(pending.message, m.Lookup):
                self._events.append(
                    LookupAnswered(node=self.node, txid=txid, peer_id=pending.message.peer_id, observed=None, why=why)
                )
        self._pending.clear()
        if delay is None:
            delay = self._reconnect_delay
            self._reconnect_delay = min(self._reconnect_delay * 2, self.config.reconnect_max)
        self._reconnect_at = now + delay
        if was_registered:
            self._events.append(RegistrationChanged(node=self.node, observed=None, why=why))

    def _message(self, data: bytes, now: float) -> None:
        try:
            message = m.decode_untrusted(data)
        except Exception:  # RemoteProtocolError: a node that sends garbage is ignored
            return
        if message is None:
            return
        unsolicited = isinstance(message, m.Introduction | m.Relays | m.Fresh)
        pending = self._pending.pop(message.txid, None) if not unsolicited else None
        if pending is not None and pending.sends == 1 and now >= pending.first_sent:
            self.rtt = now - pending.first_sent  # an answer to a request sent once: a clean sample
        match message:
            case m.Registered() if pending is not None and message.txid == self._register_txid:
                self._register_txid = None
                self.state, self._reset_token = ClientState.REGISTERED, message.reset_token
                self._reconnect_delay = self.config.reconnect_initial
                self._renew_at = now + message.lease / 2
                if self.observed != message.observed:
                    self.observed = message.observed
                    self._events.append(RegistrationChanged(node=self.node, observed=message.observed))
            case m.Found() if pending is not None:
                self._events.append(
                    LookupAnswered(
                        node=self.node,
                        txid=message.txid,
                        peer_id=message.peer_id,
                        observed=message.observed,
                        candidates=message.candidates,
                        punch=message.punch,
                    )
                )
            case m.NotFound() if pending is not None:
                self._events.append(
                    LookupAnswered(
                        node=self.node, txid=message.txid, peer_id=message.peer_id, observed=None, why="not found"
                    )
                )
            case m.Error() if pending is not None:
                if isinstance(pending.message, m.Lookup):
                    self._events.append(
                        LookupAnswered(
                            node=self.node,
                            txid=message.txid,
                            peer_id=pending.message.peer_id,
                            observed=None,
                            why=message.reason or f"error {message.code}",
                        )
                    )
                elif message.code == m.RendezvousError.NOT_REGISTERED or isinstance(pending.message, m.Register):
                    self._pending[message.txid] = pending  # keep retrying with back-off
            case m.Introduction():
                self._events.append(
                    IntroductionReceived(
                        node=self.node,
                        peer_id=message.peer_id,
                        observed=message.observed,
                        candidates=message.candidates,
                        punch=message.punch,
                    )
                )
            case m.Relays():
                urls = tuple(url for url in message.urls if m.relay_url_ok(url))  # others: ignored (§7)
                if urls != self.relays:
                    self.relays = urls
                    self._events.append(RelaysOffered(node=self.node, urls=urls))
            case m.Fresh():
                self._events.append(
                    FreshReceived(
                        node=self.node, peer_id=message.peer_id, observed=message.observed, ticket_id=message.ticket_id
                    )
                )
            case _:  # a late duplicate answer, or one to a request we no longer wait for
                pass
