"""Many sessions on one datagram socket (spec/session.md §4).

The endpoint routes each datagram by the receiver index in its header, answers
INIT packets by creating responder sessions, and remembers a digest of each
recent INIT so that a replayed first message creates no new state.  It
follows a peer that moves to a new address once a packet from there
authenticates.  Addresses are opaque hashable values chosen by the driver.

Drive it like a session: ``receive_datagram(data, addr, now)``,
``datagrams_to_send(now)``, ``next_event()``, ``get_timer()``, ``handle_timer(now)``.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Hashable

from ..errors import LocalProtocolError, ProtocolError
from ..events import Event, SessionClosed
from ..handshake.handshake import BindingCache, LocalKeys
from ..identity import crypto
from ..identity.peer_id import PeerId
from ..session.session import SecureSession, SessionConfig, SessionState
from ..session.wire import PacketType, receiver_index_untrusted

Address = Hashable


class Endpoint:
    """Routes datagrams between one local identity and many sessions."""

    def __init__(
        self,
        keys: LocalKeys,
        *,
        config: SessionConfig | None = None,
        random: crypto.RandomSource = crypto.system_random,
        replay_cache_ttl: float = 300.0,
        replay_cache_size: int = 65536,
        max_sessions: int = 4096,
    ) -> None:
        self.keys = keys
        self.config = config or SessionConfig()
        self._random = random
        self._sessions: dict[int, SecureSession] = {}
        self._addrs: dict[int, Address] = {}
        self._events: collections.deque[Event] = collections.deque()
        # Digest of an INIT packet -> (expiry, session index); oldest first.
        self._seen_inits: collections.OrderedDict[bytes, tuple[float, int]] = collections.OrderedDict()
        self._replay_ttl = replay_cache_ttl
        self._replay_size = replay_cache_size
        self._max_sessions = max_sessions
        self.drops: collections.Counter[str] = collections.Counter()
        self.binding_cache = BindingCache()

    # -- application API -----------------------------------------------------

    def connect(
        self,
        addr: Address,
        now: float,
        *,
        expected_peer: PeerId | None = None,
        remote_static: bytes | None = None,
    ) -> SecureSession:
        """Start a handshake towards ``addr``; IK if ``remote_static`` is known."""
        if len(self._sessions) >= self._max_sessions:
            raise LocalProtocolError("too many sessions")
        session = SecureSession.initiate(
            self.keys,
            local_index=self._new_index(),
            now=now,
            config=self.config,
            expected_peer=expected_peer,
            remote_static=remote_static,
            random=self._random,
            binding_cache=self.binding_cache,
        )
        self._add(session, addr)
        return session

    def session(self, session_id: int) -> SecureSession | None:
        return self._sessions.get(session_id)

    def address_of(self, session_id: int) -> Address | None:
        return self._addrs.get(session_id)

    def sessions(self) -> list[SecureSession]:
        return list(self._sessions.values())

    # -- driver API ------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        """Feed one datagram from ``addr``.  Never raises."""
        if not data:
            self.drops["empty"] += 1
            return
        if data[0] == PacketType.INIT:
            self._receive_init(data, addr, now)
            return
        index = receiver_index_untrusted(data)
        session = self._sessions.get(index) if index is not None else None
        if session is None:
            self.drops["unknown_session"] += 1
            return
        before = session.stats_authenticated()
        session.receive_data(data, now)
        if session.stats_authenticated() != before:
            self._addrs[session.local_index] = addr  # roaming: follow authenticated packets
        self._collect(session)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out: list[tuple[bytes, Address]] = []
        for index, session in list(self._sessions.items()):
            addr = self._addrs[index]
            out.extend((datagram, addr) for datagram in session.data_to_send(now))
            self._collect(session)
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        times = [t for s in self._sessions.values() if (t := s.get_timer()) is not None]
        if self._seen_inits:
            times.append(next(iter(self._seen_inits.values()))[0])
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        for session in list(self._sessions.values()):
            timer = session.get_timer()
            if timer is not None and now >= timer:
                session.handle_timer(now)
            self._collect(session)
        while self._seen_inits:
            key, (expiry, _) = next(iter(self._seen_inits.items()))
            if expiry > now:
                break
            del self._seen_inits[key]

    # -- internals ---------------------------------------------------------------

    def _receive_init(self, data: bytes, addr: Address, now: float) -> None:
        # Keyed on the whole packet: a forged variant of an INIT cannot shadow the genuine one.
        digest = hashlib.blake2b(data, digest_size=16).digest()
        seen = self._seen_inits.get(digest)
        if seen is not None:
            session = self._sessions.get(seen[1])
            if session is not None and session.state is not SessionState.CLOSED:
                session.receive_data(data, now)  # resends its RESPONSE if the bytes are identical
                self._collect(session)
            else:
                self.drops["replayed_init"] += 1
            return
        if len(self._sessions) >= self._max_sessions:
            self.drops["too_many_sessions"] += 1
            return
        try:
            session = SecureSession.respond_untrusted(
                self.keys,
                data,
                local_index=self._new_index(),
                now=now,
                config=self.config,
                random=self._random,
                binding_cache=self.binding_cache,
            )
        except ProtocolError:
            self.drops["bad_init"] += 1
            return
        self._seen_inits[digest] = (now + self._replay_ttl, session.local_index)
        while len(self._seen_inits) > self._replay_size:
            self._seen_inits.popitem(last=False)
        self._add(session, addr)

    def _add(self, session: SecureSession, addr: Address) -> None:
        self._sessions[session.local_index] = session
        self._addrs[session.local_index] = addr

    def _collect(self, session: SecureSession) -> None:
        while (event := session.next_event()) is not None:
            self._events.append(event)
            if isinstance(event, SessionClosed):
                break
        if session.state is SessionState.CLOSED and not session.has_output():
            self._sessions.pop(session.local_index, None)
            self._addrs.pop(session.local_index, None)

    def _new_index(self) -> int:
        while True:
            index = int.from_bytes(self._random(4), "big")
            if index not in self._sessions:
                return index
