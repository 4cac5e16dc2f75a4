"""A secure session between two identities, sans-IO (spec/session.md).

Drive it with:

* ``receive_data(datagram, now)``: one datagram (or one frame from the stream
  framer).  Never raises; bad input is dropped and counted in ``stats()``.
* ``data_to_send(now)``: datagrams to transmit, boundaries kept.
* ``next_event()``: ``HandshakeCompleted``, ``MessageReceived``, ``SessionClosed``.
* ``get_timer()`` / ``handle_timer(now)``: retransmission, timeouts, expiry.
* ``send(data, now)`` and ``close(now)``: the application's requests.

After any call, drain ``data_to_send`` and ``next_event``.  Create sessions with
``SecureSession.initiate`` or, for a received INIT, ``SecureSession.respond_untrusted``
(the ``Endpoint`` does the latter for you).
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import hmac
from typing import Final

from ..common.text import truncate_utf8
from ..errors import ErrorCode, LocalProtocolError, ProtocolError, RemoteProtocolError
from ..events import Event, HandshakeCompleted, MessageReceived, SessionClosed
from ..handshake.handshake import (
    AMPLIFICATION_FACTOR,
    MIN_INIT_SIZE,
    PROLOGUE,
    SUPPORTED_VERSIONS,
    BindingCache,
    LocalKeys,
    VerifiedPeer,
    check_identity,
    choose_version,
    default_capabilities,
    max_plaintext_of,
    padded,
    sas_commitment,
    short_authentication_string,
    verify_peer_payload_untrusted,
    with_identity,
)
from ..handshake.noise import HandshakeState, Pattern
from ..handshake.payload import SAS_NONCE_LEN, HandshakePayload
from ..identity import crypto
from ..identity.peer_id import PeerId
from .record import MAX_PLAINTEXT, RecordReceiver, RecordSender
from .wire import (
    INIT_HEADER,
    RECORD_TYPES,
    HandshakePacket,
    PacketType,
    encode_finish,
    encode_init,
    encode_response,
    parse_handshake_untrusted,
)

MAX_CLOSE_REASON: Final = 1024
#: Bound on the encoded capabilities a session advertises, so its RESPONSE fits one INIT's budget.
MAX_CAPABILITY_BYTES: Final = 256
#: The DATA record type as a plain int and as a first byte, for the per-packet paths.
_DATA: Final = int(PacketType.DATA)
_DATA_TYPE: Final = bytes([_DATA])
# Bytes of an INIT before its payload: header, ephemeral, and for IK the encrypted static and two tags.
_INIT_OVERHEAD: Final = {
    Pattern.XX: INIT_HEADER.size + crypto.DHLEN,
    Pattern.IK: INIT_HEADER.size + crypto.DHLEN + crypto.DHLEN + 2 * crypto.TAGLEN,
}


class SessionState(enum.Enum):
    AWAIT_RESPONSE = "await-response"  # initiator: INIT sent
    AWAIT_FINISH = "await-finish"  # XX responder: RESPONSE sent
    AWAIT_CONFIRM = "await-confirm"  # IK responder: keys ready, waiting for the CONFIRM record
    ESTABLISHED = "established"
    CLOSED = "closed"


class Input(enum.Enum):
    RESPONSE_OK = "response-ok"
    FINISH_OK = "finish-ok"
    CONFIRMED = "confirmed"
    CLOSE = "close"


_S: Final = SessionState
_ESTABLISHED: Final = SessionState.ESTABLISHED  # a module global is quicker to read than an enum member
#: Every allowed transition (spec/session.md §3); anything else is a local error.
TRANSITIONS: dict[SessionState, dict[Input, SessionState]] = {
    _S.AWAIT_RESPONSE: {Input.RESPONSE_OK: _S.ESTABLISHED, Input.CLOSE: _S.CLOSED},
    _S.AWAIT_FINISH: {Input.FINISH_OK: _S.ESTABLISHED, Input.CLOSE: _S.CLOSED},
    _S.AWAIT_CONFIRM: {Input.CONFIRMED: _S.ESTABLISHED, Input.CLOSE: _S.CLOSED},
    _S.ESTABLISHED: {Input.CLOSE: _S.CLOSED},
    _S.CLOSED: {},
}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SessionConfig:
    """Tunables; the defaults are the spec's recommendations (spec/session.md §6)."""

    handshake_timeout: float = 15.0
    retransmit_initial: float = 1.0
    retransmit_max: float = 4.0
    rekey_after_messages: int = 2**20
    rekey_after_seconds: float = 120.0
    session_lifetime: float = 24 * 3600.0
    previous_key_grace: float = 10.0
    max_record_plaintext: int = MAX_PLAINTEXT
    versions: tuple[int, ...] = SUPPORTED_VERSIONS
    capabilities: dict[int, bytes] = dataclasses.field(default_factory=dict)
    prologue: bytes = PROLOGUE

    def __post_init__(self) -> None:
        if not 0 < self.retransmit_initial <= self.retransmit_max < self.handshake_timeout:
            raise LocalProtocolError("need 0 < retransmit_initial <= retransmit_max < handshake_timeout")
        if self.rekey_after_messages < 1 or self.rekey_after_seconds <= 0 or self.session_lifetime <= 0:
            raise LocalProtocolError("rekey and lifetime limits must be positive")
        if not 1 <= self.max_record_plaintext <= MAX_PLAINTEXT:
            raise LocalProtocolError(f"max_record_plaintext must be 1..{MAX_PLAINTEXT}")
        if not self.versions:
            raise LocalProtocolError("at least one protocol version is needed")
        if sum(4 + len(value) for value in self.capabilities.values()) > MAX_CAPABILITY_BYTES:
            # A RESPONSE must fit the anti-amplification budget of one INIT (spec/handshake.md §8.5).
            raise LocalProtocolError(f"capabilities take more than {MAX_CAPABILITY_BYTES} bytes")

    def all_capabilities(self) -> dict[int, bytes]:
        caps = default_capabilities(self.max_record_plaintext)
        caps.update(self.capabilities)
        return caps


#: One shared default: a session keeps a reference, not a copy (bench/memory.py).
_DEFAULT_CONFIG: Final = SessionConfig()


class SecureSession:
    """One handshake and the record layer that follows it."""

    __slots__ = (
        "_announced",
        "_authenticated",
        "_cache",
        "_data_prefix",
        "_deadline",
        "_event_pos",
        "_events",
        "_expected",
        "_expires_at",
        "_hash_after_2",
        "_hs",
        "_last_drop",
        "_outbox",
        "_outbox_paths",
        "_outbox_start_path",
        "_output_path",
        "_peer_confirmed",
        "_receiver",
        "_resend_packet",
        "_resend_trigger",
        "_retransmit_at",
        "_retransmit_interval",
        "_sas_commitment",
        "_sas_nonce",
        "_sender",
        "_unvalidated_in",
        "_unvalidated_out",
        "close_code",
        "config",
        "drops",
        "handshake_hash",
        "initiator",
        "keys",
        "local_index",
        "pattern",
        "peer_capabilities",
        "random",
        "peer_id",
        "peer_max_plaintext",
        "remote_index",
        "remote_static",
        "sas",
        "state",
        "version",
    )

    def __init__(
        self,
        *,
        keys: LocalKeys,
        handshake: HandshakeState,
        local_index: int,
        now: float,
        config: SessionConfig,
        state: SessionState,
        expected_peer: PeerId | None = None,
        binding_cache: BindingCache | None = None,
    ) -> None:
        self.keys = keys
        self.config = config
        self.local_index = local_index
        # What every DATA record for this session starts with: its type and our index (record.md §2).
        self._data_prefix = _DATA_TYPE + local_index.to_bytes(4, "big")
        self.remote_index = 0
        self.initiator = handshake.initiator
        self.pattern = handshake.pattern
        self.state = state
        self.peer_id: PeerId | None = None
        self.remote_static: bytes | None = None
        self.sas: str | None = None
        self.handshake_hash: bytes | None = None
        self.version: int | None = None
        self.peer_capabilities: dict[int, bytes] = {}
        self.peer_max_plaintext = MAX_PLAINTEXT
        self.drops: collections.Counter[str] = collections.Counter()
        self.close_code: ErrorCode | None = None
        self._expected = expected_peer
        self._cache = binding_cache
        self._hs: HandshakeState | None = handshake
        self._sender: RecordSender | None = None
        self._receiver: RecordReceiver | None = None
        self._outbox: list[bytes] = []
        # Paths (spec/paths.md): the path id the records queued from now on go to, and where in the
        # outbox the path changed: (index, path id) pairs, empty while every record goes to path 0.
        self._output_path = 0
        self._outbox_paths: list[tuple[int, int]] = []
        self._outbox_start_path = 0  # the output path when the outbox was last emptied
        #: The injected random source (PATH_CHALLENGE data, spec/paths.md §3).
        self.random: crypto.RandomSource = crypto.system_random
        # Events wait in a list read from ``_event_pos`` on (an empty deque takes 760 bytes).
        self._events: list[Event] = []
        self._event_pos = 0
        self._announced = self.initiator
        self._peer_confirmed = False
        self._authenticated = 0
        # SAS (spec/handshake.md §7): the initiator's nonce, or the commitment the responder holds.
        self._sas_nonce: bytes | None = None
        self._sas_commitment: bytes | None = None
        self._hash_after_2: bytes | None = None
        # Handshake retransmission: the packet we resend, and the peer packet that asks for it again.
        self._resend_packet: bytes | None = None
        self._resend_trigger: bytes | None = None
        self._retransmit_at: float | None = None
        self._retransmit_interval = config.retransmit_initial
        self._deadline: float | None = now + config.handshake_timeout
        self._expires_at: float | None = None
        self._last_drop = ""
        # Anti-amplification (responder, before the initiator is validated): bytes in and out.
        self._unvalidated_in = 0
        self._unvalidated_out = 0

    # -- construction ----------------------------------------------------------

    @classmethod
    def initiate(
        cls,
        keys: LocalKeys,
        *,
        local_index: int,
        now: float,
        config: SessionConfig | None = None,
        expected_peer: PeerId | None = None,
        remote_static: bytes | None = None,
        random: crypto.RandomSource = crypto.system_random,
        ephemeral: bytes | None = None,
        binding_cache: BindingCache | None = None,
    ) -> SecureSession:
        """Start a handshake: IK when ``remote_static`` is known, XX otherwise.

        After this, drain ``data_to_send`` (the INIT packet).
        """
        config = config or _DEFAULT_CONFIG
        _check_index(local_index)
        pattern = Pattern.IK if remote_static is not None else Pattern.XX
        if remote_static is not None and len(remote_static) != crypto.DHLEN:
            raise LocalProtocolError("remote_static must be a 32-byte X25519 public key")
        hs = HandshakeState(
            pattern=pattern,
            initiator=True,
            prologue=config.prologue,
            s=keys.static_private,
            s_pub=keys.static_public,
            e=ephemeral,
            rs=remote_static,
            random=random,
        )
        session = cls(
            keys=keys,
            handshake=hs,
            local_index=local_index,
            now=now,
            config=config,
            state=SessionState.AWAIT_RESPONSE,
            expected_peer=expected_peer,
            binding_cache=binding_cache,
        )
        session.random = random
        session._sas_nonce = random(SAS_NONCE_LEN)
        payload = HandshakePayload(
            versions=config.versions, session_index=local_index, sas_commitment=sas_commitment(session._sas_nonce)
        )
        if pattern is Pattern.IK:
            payload = dataclasses.replace(with_identity(keys, payload), capabilities=config.all_capabilities())
        try:
            message = hs.write_message(padded(payload, _INIT_OVERHEAD[pattern]))
        except RemoteProtocolError as exc:  # a low-order remote_static
            raise LocalProtocolError(f"cannot start IK: {exc}", exc.code) from exc
        session._send_handshake(encode_init(pattern, local_index, message), now)
        return session

    @classmethod
    def respond_untrusted(
        cls,
        keys: LocalKeys,
        init_packet: bytes,
        *,
        local_index: int,
        now: float,
        config: SessionConfig | None = None,
        random: crypto.RandomSource = crypto.system_random,
        ephemeral: bytes | None = None,
        binding_cache: BindingCache | None = None,
    ) -> SecureSession:
        """Answer a received INIT packet.  Raises RemoteProtocolError if it is not acceptable.

        No state survives a raise, so a caller may simply drop the packet.
        """
        config = config or _DEFAULT_CONFIG
        _check_index(local_index)
        packet = parse_handshake_untrusted(init_packet)
        if packet.type is not PacketType.INIT or packet.pattern is None:
            raise RemoteProtocolError("not an INIT packet", ErrorCode.MALFORMED_MESSAGE)
        if len(init_packet) < MIN_INIT_SIZE:
            raise RemoteProtocolError(f"INIT shorter than {MIN_INIT_SIZE} bytes", ErrorCode.MALFORMED_MESSAGE)
        hs = HandshakeState(
            pattern=packet.pattern,
            initiator=False,
            prologue=config.prologue,
            s=keys.static_private,
            s_pub=keys.static_public,
            e=ephemeral,
            random=random,
        )
        payload = HandshakePayload.decode_untrusted(hs.read_message(packet.message))
        # The cheap checks first: a doomed INIT costs no signature verification.
        if payload.session_index != packet.sender_index:
            raise RemoteProtocolError("INIT header and payload disagree on the index", ErrorCode.MALFORMED_MESSAGE)
        if payload.sas_commitment is None:
            raise RemoteProtocolError("INIT lacks the SAS commitment", ErrorCode.MALFORMED_MESSAGE)
        verified: VerifiedPeer | None = None
        if packet.pattern is Pattern.IK:
            verified = check_identity(payload, hs.rs or b"", None, binding_cache)
        session = cls(
            keys=keys,
            handshake=hs,
            local_index=local_index,
            now=now,
            config=config,
            state=SessionState.AWAIT_FINISH if packet.pattern is Pattern.XX else SessionState.AWAIT_CONFIRM,
            binding_cache=binding_cache,
        )
        session.random = random
        session.remote_index = packet.sender_index
        session.version = version = choose_version(payload.versions, config.versions)
        session._sas_commitment = payload.sas_commitment
        session._unvalidated_in = len(init_packet)
        reply = HandshakePayload(
            versions=(version,) if version is not None else config.versions,
            capabilities=config.all_capabilities(),
            session_index=local_index,
        )
        message = hs.write_message(with_identity(keys, reply).encode())
        session._hash_after_2 = hs.handshake_hash
        session._resend_trigger = init_packet
        session._send_handshake(encode_response(local_index, packet.sender_index, message), now)
        if verified is not None:
            session._learn_peer(verified, hs.rs or b"")
            session._derive_keys(hs, now)
        return session

    # -- driver API ------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed one received datagram.  Never raises."""
        if self.state is SessionState.CLOSED or not data:
            self._drop("closed" if data else "empty")
            return
        try:
            ptype = data[0]
            if ptype in RECORD_TYPES:
                self._receive_record(data, now)
            elif ptype in (PacketType.INIT, PacketType.RESPONSE, PacketType.FINISH):
                self._receive_handshake(parse_handshake_untrusted(data), data, now)
            else:
                self._drop("unknown_type")
        except RemoteProtocolError:
            self._drop("malformed")

    def receive_data_record(self, data: bytes, now: float) -> tuple[int, bytes] | None:
        """``receive_data`` for the channel layer's hot path.  Never raises.

        A DATA record of an established session whose peer is confirmed comes
        back as ``(packet_number, plaintext)`` instead of a ``MessageReceived``
        event.  Anything else is handled exactly as ``receive_data`` does (events
        queued, drops counted) and None is returned.
        """
        receiver = self._receiver
        if (
            self._peer_confirmed
            and receiver is not None
            and self.state is _ESTABLISHED
            and data.startswith(self._data_prefix)  # record.md §2: DATA, then our index
        ):
            opened = receiver.open_counted_untrusted(data, now)
            if opened is None:
                self._last_drop = "record"
                return None
            self._authenticated += 1
            return opened
        self.receive_data(data, now)
        return None

    def data_to_send(self, now: float) -> list[bytes]:
        """The datagrams to transmit now, whatever their path; the list is handed over and cleared."""
        out, self._outbox = self._outbox, []
        if self._outbox_paths:
            self._outbox_paths = []
            self._outbox_start_path = self._output_path
        return out

    def set_output_path(self, path_id: int) -> None:
        """Records queued from now on go to path ``path_id`` (``data_to_send_by_path`` says so)."""
        if path_id != self._output_path:
            self._output_path = path_id
            self._outbox_paths.append((len(self._outbox), path_id))

    def data_to_send_by_path(self, now: float) -> list[tuple[int, list[bytes]]]:
        """``data_to_send`` in runs by path: ``(path_id, datagrams)`` in the order they were queued."""
        marks = self._outbox_paths
        out, self._outbox = self._outbox, []
        if not marks:
            return [(self._output_path, out)] if out else []
        self._outbox_paths = []
        runs: list[tuple[int, list[bytes]]] = []
        # The path of the records before the first mark: the one the first mark switched away from.
        start, current = 0, self._outbox_start_path
        for index, path_id in marks:
            if index > start:
                runs.append((current, out[start:index]))
            start, current = index, path_id
        if start < len(out):
            runs.append((current, out[start:]))
        self._outbox_start_path = self._output_path
        return runs

    def next_event(self) -> Event | None:
        events = self._events
        if not events:
            return None
        pos = self._event_pos
        event = events[pos]
        pos += 1
        if pos == len(events):
            events.clear()  # frees the list's items array too
            pos = 0
        self._event_pos = pos
        return event

    def get_timer(self) -> float | None:
        """When ``handle_timer`` next has work, or None."""
        best = self._retransmit_at
        timer = self._deadline
        if timer is not None and (best is None or timer < best):
            best = timer
        timer = self._expires_at
        if timer is not None and (best is None or timer < best):
            best = timer
        return best

    def handle_timer(self, now: float) -> None:
        if self.state is SessionState.CLOSED:
            return
        if self._deadline is not None and now >= self._deadline:
            self._deadline = None
            if self.state is not SessionState.ESTABLISHED:
                why = f"handshake timed out{f' (last dropped: {self._last_drop})' if self._last_drop else ''}"
                self._finish(ErrorCode.HANDSHAKE_TIMEOUT, why, by_peer=False)
                return
        if self._expires_at is not None and now >= self._expires_at:
            self._close_with_record(ErrorCode.SESSION_EXPIRED, "session lifetime reached", now)
            return
        if self._retransmit_at is not None and now >= self._retransmit_at:
            if self._resend_packet is None:
                self._retransmit_at = None
                return
            self._emit_handshake(self._resend_packet)
            self._retransmit_interval = min(self._retransmit_interval * 2, self.config.retransmit_max)
            self._retransmit_at = now + self._retransmit_interval

    def send(self, data: bytes, now: float) -> int:
        """Queue one application message as a DATA record; returns its counter (packet number).

        Needs ESTABLISHED.
        """
        if self.state is not _ESTABLISHED or self._sender is None:
            raise LocalProtocolError(f"cannot send in state {self.state.value}")
        if len(data) > self.peer_max_plaintext:
            raise LocalProtocolError(
                f"message of {len(data)} bytes exceeds the record limit {self.peer_max_plaintext}",
                ErrorCode.RECORD_TOO_LARGE,
            )
        return self._seal(_DATA, data, now)

    def send_keepalive(self, now: float) -> None:
        if self.state is not SessionState.ESTABLISHED:
            raise LocalProtocolError(f"cannot send in state {self.state.value}")
        self._seal(PacketType.KEEPALIVE, b"", now)

    def close(self, now: float, code: ErrorCode = ErrorCode.NO_ERROR, reason: str = "") -> None:
        """Close the session, telling the peer if keys exist.  Idempotent."""
        if self.state is SessionState.CLOSED:
            return
        self._close_with_record(code, reason, now)

    @property
    def next_counter(self) -> int:
        """The counter (packet number) the next record will get; 0 before the keys exist."""
        sender = self._sender
        return sender.next_counter if sender is not None else 0

    @property
    def is_established(self) -> bool:
        return self.state is SessionState.ESTABLISHED

    # -- handshake -------------------------------------------------------------

    def _receive_handshake(self, packet: HandshakePacket, data: bytes, now: float) -> None:
        if packet.type is PacketType.INIT:
            if not self.initiator and self._resend_packet is not None and data == self._resend_trigger:
                self._unvalidated_in += len(data)
                self._emit_handshake(self._resend_packet)  # our RESPONSE was lost: say it again
            else:
                self._drop("unexpected_handshake")
            return
        if packet.receiver_index != self.local_index:
            self._drop("wrong_index")
            return
        if packet.type is PacketType.RESPONSE and self.initiator:
            if self.state is SessionState.AWAIT_RESPONSE:
                self._on_response(packet, data, now)
            elif data == self._resend_trigger and not self._peer_confirmed:
                self._repeat_last_message(now)
            else:
                self._drop("unexpected_handshake")
        elif packet.type is PacketType.FINISH and self.state is SessionState.AWAIT_FINISH:
            self._on_finish(packet, now)
        else:
            self._drop("unexpected_handshake")

    def _try_read(self, message: bytes) -> tuple[HandshakeState, bytes] | None:
        """Read a handshake message on a copy: garbage leaves the real state untouched."""
        if self._hs is None:
            return None
        hs = self._hs.copy()
        try:
            return hs, hs.read_message(message)
        except ProtocolError:
            self._drop("handshake_auth")
            return None

    def _verify(self, hs: HandshakeState, payload: bytes, expected: PeerId | None) -> VerifiedPeer | None:
        """Check an authenticated payload; failures close the session (they come from the key holder)."""
        try:
            return verify_peer_payload_untrusted(payload, hs.rs or b"", expected, self._cache)
        except RemoteProtocolError as exc:
            self._finish(exc.code, str(exc), by_peer=False)
            return None

    def _on_response(self, packet: HandshakePacket, data: bytes, now: float) -> None:
        attempt = self._try_read(packet.message)
        if attempt is None:
            return
        hs, raw = attempt
        if (verified := self._verify(hs, raw, self._expected)) is None:
            return
        payload = verified.payload
        if payload.session_index is None:
            self._finish(ErrorCode.MALFORMED_MESSAGE, "RESPONSE payload lacks the session index", by_peer=False)
            return
        if payload.session_index != packet.sender_index:
            self._drop("index_mismatch")  # the header was altered in transit; wait for a clean copy
            return
        if len(payload.versions) != 1 or payload.versions[0] not in self.config.versions:
            offered = ", ".join(map(str, payload.versions))
            self._finish(ErrorCode.UNSUPPORTED_VERSION, f"peer speaks versions {offered}", by_peer=False)
            return
        self._authenticated += 1
        self.version = payload.versions[0]
        self.remote_index = packet.sender_index
        self._hash_after_2 = hs.handshake_hash
        self._learn_peer(verified, hs.rs or b"")
        self._resend_trigger = data
        self._retransmit_at = None
        self._resend_packet = None
        if hs.pattern is Pattern.XX:
            finish = HandshakePayload(
                versions=(self.version,), capabilities=self.config.all_capabilities(), sas_nonce=self._sas_nonce
            )
            message = hs.write_message(with_identity(self.keys, finish).encode())
            self._resend_packet = encode_finish(self.remote_index, message)
            self._outbox.append(self._resend_packet)
        self._derive_keys(hs, now)
        self._transition(Input.RESPONSE_OK)
        self._announce()
        if hs.pattern is Pattern.IK:
            self._seal(PacketType.CONFIRM, self._sas_nonce or b"", now)

    def _repeat_last_message(self, now: float) -> None:
        """The responder repeated its RESPONSE: it did not hear our FINISH or CONFIRM."""
        if self._resend_packet is not None:
            self._outbox.append(self._resend_packet)
        elif self._sender is not None:
            self._seal(PacketType.CONFIRM, self._sas_nonce or b"", now)

    def _on_finish(self, packet: HandshakePacket, now: float) -> None:
        attempt = self._try_read(packet.message)
        if attempt is None:
            return
        hs, raw = attempt
        if (verified := self._verify(hs, raw, None)) is None:
            return
        if not self._check_sas_nonce(verified.payload.sas_nonce, now):
            return
        if self.version is None:
            self._finish(ErrorCode.UNSUPPORTED_VERSION, "no common protocol version", by_peer=False)
            return
        self._authenticated += 1
        self._learn_peer(verified, hs.rs or b"")
        self._derive_keys(hs, now)
        self._transition(Input.FINISH_OK)
        self._announce()

    def _check_sas_nonce(self, nonce: bytes | None, now: float) -> bool:
        """The revealed nonce must open the INIT's commitment; if not, the peer cheated.

        An IK responder already has record keys and tells the (established) initiator
        with a CLOSE record; an XX responder has none and closes silently.
        """
        if (
            nonce is None
            or self._sas_commitment is None
            or not hmac.compare_digest(sas_commitment(nonce), self._sas_commitment)
        ):
            self._close_with_record(ErrorCode.PROTOCOL_VIOLATION, "SAS nonce does not match its commitment", now)
            return False
        self._sas_nonce = nonce
        return True

    def _learn_peer(self, verified: VerifiedPeer, remote_static: bytes) -> None:
        self.peer_id = verified.peer_id
        self.remote_static = remote_static
        self.peer_capabilities = verified.payload.capabilities
        self.peer_max_plaintext = max_plaintext_of(self.peer_capabilities, MAX_PLAINTEXT)

    def _derive_keys(self, hs: HandshakeState, now: float) -> None:
        k_init, k_resp = hs.split()
        send, recv = (k_init, k_resp) if self.initiator else (k_resp, k_init)
        cfg = self.config
        self._sender = RecordSender(
            send,
            self.remote_index,
            now,
            rekey_after_messages=cfg.rekey_after_messages,
            rekey_after_seconds=cfg.rekey_after_seconds,
        )
        self._receiver = RecordReceiver(
            recv, max_plaintext=cfg.max_record_plaintext, previous_key_grace=cfg.previous_key_grace
        )
        self.handshake_hash = hs.handshake_hash
        self._hs = None  # forget the ephemeral and the handshake secrets
        self._expires_at = now + cfg.session_lifetime

    def _announce(self) -> None:
        """ESTABLISHED reached: stop handshake timers and tell the application."""
        self._deadline = None
        if not self.initiator:
            self._resend_packet = self._resend_trigger = None
            self._retransmit_at = None
        peer, nonce, hash_2 = self.peer_id, self._sas_nonce, self._hash_after_2
        if peer is None or nonce is None or hash_2 is None or self.handshake_hash is None or self.version is None:
            raise LocalProtocolError("internal: established without peer details", ErrorCode.INTERNAL_ERROR)
        self.sas = short_authentication_string(hash_2, nonce)
        self._announced = True
        # What only the handshake needed (bench/memory.py).  An IK initiator keeps its SAS nonce
        # until the peer is confirmed: a lost CONFIRM is sent again (``_repeat_last_message``).
        self._hash_after_2 = self._sas_commitment = None
        if not self.initiator:
            self._sas_nonce = None
        self._events.append(
            HandshakeCompleted(
                session_id=self.local_index,
                peer_id=peer,
                sas=self.sas,
                version=self.version,
                capabilities=dict(self.peer_capabilities),
                handshake_hash=self.handshake_hash,
                pattern=self.pattern.value,
                remote_static=self.remote_static or b"",
            )
        )

    # -- records ---------------------------------------------------------------

    def _receive_record(self, data: bytes, now: float) -> None:
        receiver = self._receiver
        if receiver is None:
            self._drop("no_keys")
            return
        if int.from_bytes(data[1:5], "big") != self.local_index:
            self._drop("wrong_index")
            return
        opened = receiver.open_untrusted(data, now)
        if opened is None:
            self._last_drop = "record"
            return
        ptype, plaintext = opened
        self._authenticated += 1
        if self.state is SessionState.AWAIT_CONFIRM:
            if ptype != PacketType.CONFIRM:
                self._drop("unconfirmed")  # sent after a CONFIRM that was lost or is late
                return
            if not self._check_sas_nonce(plaintext, now):
                return
            if self.version is None:
                self._finish(ErrorCode.UNSUPPORTED_VERSION, "no common protocol version", by_peer=False)
                return
            self._transition(Input.CONFIRMED)
            self._announce()
            return
        self._peer_confirmed = True
        if self.initiator:
            self._resend_packet = self._resend_trigger = self._sas_nonce = None
        if ptype == PacketType.DATA:
            counter = int.from_bytes(data[6:14], "big")  # record.md §2: the header's counter
            self._events.append(MessageReceived(session_id=self.local_index, data=plaintext, packet_number=counter))
        elif ptype == PacketType.CLOSE:
            code = ErrorCode.from_wire(int.from_bytes(plaintext[:2], "big"))
            if len(plaintext) < 2:
                code = ErrorCode.PROTOCOL_VIOLATION
            reason = plaintext[2 : 2 + MAX_CLOSE_REASON].decode("utf-8", "replace")
            self._finish(code, reason, by_peer=True)

    def _seal(self, ptype: int, plaintext: bytes, now: float) -> int:
        """Seal and queue one record; returns its counter."""
        if self._sender is None:
            raise LocalProtocolError("no keys yet", ErrorCode.INTERNAL_ERROR)
        counter = self._sender.next_counter
        try:
            self._outbox.append(self._sender.seal(ptype, plaintext, now))
        except LocalProtocolError as exc:
            self._finish(exc.code, str(exc), by_peer=False)
            raise
        return counter

    # -- state helpers -----------------------------------------------------------

    def _send_handshake(self, packet: bytes, now: float) -> None:
        self._resend_packet = packet
        self._emit_handshake(packet)
        self._retransmit_interval = self.config.retransmit_initial
        self._retransmit_at = now + self._retransmit_interval

    def _emit_handshake(self, packet: bytes) -> None:
        """Queue a handshake packet; a responder obeys the anti-amplification limit (handshake.md §8)."""
        if not self.initiator:
            if self._unvalidated_out + len(packet) > AMPLIFICATION_FACTOR * self._unvalidated_in:
                self._drop("amplification_limit")
                return
            self._unvalidated_out += len(packet)
        self._outbox.append(packet)

    def _transition(self, event: Input) -> None:
        try:
            self.state = TRANSITIONS[self.state][event]
        except KeyError:
            raise LocalProtocolError(
                f"no transition from {self.state.value} on {event.value}", ErrorCode.INTERNAL_ERROR
            ) from None

    def _close_with_record(self, code: ErrorCode, reason: str, now: float) -> None:
        if self._sender is not None:
            body = int(code).to_bytes(2, "big") + truncate_utf8(reason, MAX_CLOSE_REASON).encode("utf-8")
            try:
                self._outbox.append(self._sender.seal(PacketType.CLOSE, body, now))
            except LocalProtocolError:
                pass  # counter exhausted: the peer will time out instead
        self._finish(code, reason, by_peer=False)

    def _finish(self, code: ErrorCode, reason: str, *, by_peer: bool) -> None:
        self._transition(Input.CLOSE)
        self.close_code = code
        if self._receiver is not None:
            self.drops.update({f"record_{k}": v for k, v in self._receiver.drops.items()})
        self._hs = None
        self._sender = None
        self._receiver = None
        self._resend_packet = self._resend_trigger = None
        self._retransmit_at = self._deadline = self._expires_at = None
        if self._announced:
            self._events.append(SessionClosed(session_id=self.local_index, code=code, reason=reason, by_peer=by_peer))

    def _drop(self, why: str) -> None:
        self.drops[why] += 1
        self._last_drop = why

    def stats_authenticated(self) -> int:
        """How many packets from the peer have authenticated so far (the endpoint follows roaming with it)."""
        return self._authenticated

    def has_output(self) -> bool:
        """True while datagrams or events wait to be drained."""
        return bool(self._outbox or self._events)

    def stats(self) -> dict[str, int]:
        """Counts of dropped input by reason (including the record layer's)."""
        merged = collections.Counter(self.drops)
        if self._receiver is not None:
            merged.update({f"record_{k}": v for k, v in self._receiver.drops.items()})
        return dict(merged)


def _check_index(index: int) -> None:
    if not 0 <= index < 2**32:
        raise LocalProtocolError("a session index is a 32-bit unsigned integer")
