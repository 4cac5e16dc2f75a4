"""This implementation's conformance adapter: the control protocol over ``p2pos.proto``.

Run as ``python -m conformance.impl``; it reads one JSON command per line on
stdin and answers one JSON object per line on stdout (spec/conformance.md).
It holds one session, or (``endpoint`` command) one ``Endpoint`` whose
randomness is a deterministic stream derived from its static key.
With ``conn_session`` it runs a channel-layer ``Connection`` over the session
instead (spec/conformance.md §3.7): channels to its listed services are
accepted, others refused with SERVICE_UNKNOWN, and the ``echo`` service sends
back what it reads.
With ``rdv_node`` or ``rdv_client`` it runs a rendezvous node or a peer's rendezvous client
instead (spec/conformance.md §3.9, §3.10; ``impl_rdv.py``).
It supports every case of the areas in ``AREAS`` and exits 127 for any other case id
(the runner's compliance pre-check tries a random one); otherwise it ignores
``P2POS_TESTCASE`` except for two test hooks that prove the runner can fail:

* ``P2POS_IMPL_UNSUPPORTED=prefix,...``: exit 127 for case ids with a listed prefix;
* ``P2POS_IMPL_BUG=flip-sas``: report a wrong SAS in ``handshake_completed``;
  ``P2POS_IMPL_BUG=drop-foreign``: drop datagrams of other protocols instead of
  reporting them (``foreign_datagram``); ``P2POS_IMPL_BUG=hang``: never answer.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from p2pos.proto import (
    Endpoint,
    ErrorCode,
    HandshakeCompleted,
    Identity,
    LocalKeys,
    MessageReceived,
    PeerId,
    ProtocolError,
    SecureSession,
    SessionClosed,
    SessionConfig,
    SessionState,
    SignedRecord,
    StreamFramer,
    frame,
)
from p2pos.proto.channels import frames as ch
from p2pos.proto.channels.channel import ChannelState
from p2pos.proto.channels.connection import ChannelConfig, Connection
from p2pos.proto.events import (
    ChannelClosed,
    ChannelDataAvailable,
    ChannelEnded,
    ChannelEvent,
    ChannelMessage,
    ChannelOpened,
    ChannelRefused,
    ChannelRequested,
    ChannelReset,
    ChannelWritable,
    ConnectionClosed,
    ConnectionReady,
    ForeignDatagramReceived,
    PingAcknowledged,
)
from p2pos.proto.identity import crypto
from p2pos.proto.identity.identity import verify
from p2pos.proto.paths.events import PathAbandoned, PathActive, PathDead, PathValidated

from . import impl_paths
from .frame_json import CHANNEL_KINDS, frame_from_json, frame_to_json
from .impl_bugs import install_bug
from .impl_nat import NatCommandError, NatCommands
from .impl_rdv import RdvClientMode, RdvError, RdvMode
from .seeded import seeded_stream

Json = dict[str, Any]
_CONFIG_FIELDS = {f.name for f in dataclasses.fields(SessionConfig)} - {"capabilities", "prologue"}
_CHANNEL_CONFIG_FIELDS = {f.name for f in dataclasses.fields(ChannelConfig)}
#: The service whose streams and messages the adapter sends back (spec/conformance.md §3.7).
ECHO = "echo"


class CommandError(Exception):
    """A command failed with a spec error code (answered as ``{"ok": false}``)."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message)
        self.code = code


def _bytes(request: Json, name: str) -> bytes:
    value = request.get(name)
    if not isinstance(value, str):
        raise CommandError("BAD_COMMAND", f"{name!r} must be a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise CommandError("BAD_COMMAND", f"{name!r} is not hex") from None


def _opt_bytes(request: Json, name: str) -> bytes | None:
    return None if request.get(name) is None else _bytes(request, name)


def _now(request: Json) -> float:
    return float(request.get("now", 0.0))


def _nonce_then_system(nonce: bytes | None) -> crypto.RandomSource:
    """The initiator's random source: the runner's SAS nonce for the one nonce draw, else the system's."""
    pending = [nonce] if nonce is not None else []

    def source(n: int) -> bytes:
        if pending and n == len(pending[0]):
            return pending.pop()
        return crypto.system_random(n)

    return source


def _config(raw: Any) -> SessionConfig:
    if not isinstance(raw, dict) or not set(raw) <= _CONFIG_FIELDS:
        raise CommandError("BAD_COMMAND", f"config keys must be among {sorted(_CONFIG_FIELDS)}")
    values = dict(raw)
    if "versions" in values:
        values["versions"] = tuple(values["versions"])
    return SessionConfig(**values)


def _channel_config(raw: Any) -> ChannelConfig:
    if not isinstance(raw, dict) or not set(raw) <= _CHANNEL_CONFIG_FIELDS:
        raise CommandError("BAD_COMMAND", f"channel_config keys must be among {sorted(_CHANNEL_CONFIG_FIELDS)}")
    return ChannelConfig(**raw)


class Adapter:
    """The state of one IUT process: at most one session (or one endpoint) and one framer."""

    def __init__(self, bug: str = "") -> None:
        self.bug = bug
        self.session: SecureSession | None = None
        self.endpoint: Endpoint | None = None
        self.rdv: RdvMode | RdvClientMode | None = None  # rendezvous roles (spec/conformance.md §3.9, §3.10)
        self.pending: Json | None = None  # a responder's parameters until its INIT arrives
        self.first_send_counter: int | None = None  # session config "first_send_counter", until keys exist
        self.framer = StreamFramer()
        self.conn: Connection | None = None
        self.conn_setup: tuple[ChannelConfig, frozenset[str]] | None = None  # until the responder's INIT
        self.echo: dict[int, bytearray] = {}  # echo channels: bytes read and not yet sent back
        self.echo_fin: set[int] = set()  # echo streams whose FIN is owed once the bytes are sent
        self.refuse_reason = "no such service"  # what the application says when it refuses a channel
        self.handlers: dict[str, Callable[[Json], Json]] = {
            "peer_id": self.peer_id,
            "parse_peer_id": self.parse_peer_id,
            "sign": self.sign,
            "verify": self.verify,
            "record_create": self.record_create,
            "record_decode": self.record_decode,
            "key_file": self.key_file,
            "session": self.start_session,
            "endpoint": self.start_endpoint,
            "receive": self.receive,
            "send": self.send,
            "keepalive": self.keepalive,
            "close": self.close,
            "timer": self.timer,
            "get_timer": self.get_timer,
            "state": self.state,
            "stats": self.stats,
            "frame_encode": self.frame_encode,
            "frame_feed": self.frame_feed,
            "frame_eof": self.frame_eof,
            "frames_encode": self.frames_encode,
            "frames_decode": self.frames_decode,
            "conn_session": self.conn_session,
            "conn_receive": self.conn_receive,
            "conn_open": self.conn_open,
            "conn_send": self.conn_send,
            "conn_reset": self.conn_reset,
            "conn_ping": self.conn_ping,
            "conn_close": self.conn_close,
            "conn_timer": self.conn_timer,
            "conn_state": self.conn_state,
            "conn_add_path": self.conn_add_path,
            "conn_describe_path": self.conn_describe_path,
            "conn_abandon_path": self.conn_abandon_path,
            "conn_paths": self.conn_paths,
            "rdv_node": self.rdv_node,
            "rdv_restart": self.rdv_restart,
            "rdv_client": self.rdv_client,
            "rdv_lookup": self.rdv_lookup,
        }
        # NAT traversal (spec/conformance.md §3.12; impl_nat.py): functions and one role per process.
        self.handlers.update(NatCommands().handlers())

    def handle(self, request: Json) -> Json:
        handler = self.handlers.get(str(request.get("cmd")))
        if handler is None:
            return {"ok": False, "error": "UNKNOWN_COMMAND", "message": f"unknown command {request.get('cmd')!r}"}
        try:
            return {"ok": True, **handler(request)}
        except CommandError as exc:
            return {"ok": False, "error": exc.code, "message": str(exc)}
        except RdvError as exc:
            return {"ok": False, "error": "BAD_COMMAND", "message": str(exc)}
        except NatCommandError as exc:
            return {"ok": False, "error": exc.code, "message": str(exc)}
        except ProtocolError as exc:
            return {"ok": False, "error": exc.code.name, "message": str(exc)}
        except (KeyError, ValueError, TypeError) as exc:  # (impl_paths.PathCommandError is a ValueError)
            return {"ok": False, "error": "BAD_COMMAND", "message": f"{type(exc).__name__}: {exc}"}

    # -- identity --------------------------------------------------------------------

    def peer_id(self, request: Json) -> Json:
        return {"peer_id": str(Identity.from_seed(_bytes(request, "seed")).peer_id)}

    def parse_peer_id(self, request: Json) -> Json:
        return {"public_key": PeerId.parse(str(request.get("text"))).public_key.hex()}

    def sign(self, request: Json) -> Json:
        identity = Identity.from_seed(_bytes(request, "seed"))
        return {"signature": identity.sign(_bytes(request, "domain"), _bytes(request, "message")).hex()}

    def verify(self, request: Json) -> Json:
        public_key = _bytes(request, "public_key")
        if len(public_key) != 32:  # a key of the wrong length is invalid, not an error (identity.md §3.2)
            return {"valid": False}
        peer = PeerId(public_key)
        valid = verify(peer, _bytes(request, "domain"), _bytes(request, "message"), _bytes(request, "signature"))
        return {"valid": valid}

    def record_create(self, request: Json) -> Json:
        identity = Identity.from_seed(_bytes(request, "seed"))
        record = SignedRecord.create(identity, _bytes(request, "domain"), _bytes(request, "payload"))
        return {"record": record.encode().hex()}

    def record_decode(self, request: Json) -> Json:
        record = SignedRecord.decode_untrusted(_bytes(request, "data"), domain=_opt_bytes(request, "domain"))
        return {"signer": str(record.signer), "domain": record.domain.hex(), "payload": record.payload.hex()}

    def key_file(self, request: Json) -> Json:
        return {"peer_id": str(Identity.from_key_file(_bytes(request, "data")).peer_id)}

    # -- session ---------------------------------------------------------------------

    def start_session(self, request: Json) -> Json:
        if self.session is not None or self.pending is not None or self.endpoint is not None:
            raise CommandError("BAD_COMMAND", "a session already exists")
        raw_config = dict(request.get("config") or {})
        # A test hook, not a tunable of spec/session.md §6 (spec/conformance.md §3.2): the counter
        # the send direction jumps to once the session's keys exist.
        first = raw_config.pop("first_send_counter", None)
        self.first_send_counter = None if first is None else int(first)
        config = _config(raw_config)
        keys = LocalKeys.create(Identity.from_seed(_bytes(request, "seed")), _bytes(request, "static"))
        if request.get("role") == "responder":
            self.pending = {"keys": keys, "config": config, "request": request}
            return {"out": []}
        if request.get("role") != "initiator":
            raise CommandError("BAD_COMMAND", "role is 'initiator' or 'responder'")
        self.session = _initiate(request, keys, config)
        return self._drain(_now(request))

    def _respond(self, data: bytes, now: float) -> SecureSession:
        """The responder's session from its first INIT (raises ``ProtocolError`` if refused)."""
        if self.pending is None:
            raise CommandError("BAD_COMMAND", "no responder is waiting")
        params = self.pending["request"]
        session = SecureSession.respond_untrusted(
            self.pending["keys"],
            data,
            local_index=int(params.get("local_index", 0)),
            now=now,
            config=self.pending["config"],
            ephemeral=_opt_bytes(params, "ephemeral"),
        )
        self.pending = None
        return session

    def start_endpoint(self, request: Json) -> Json:
        if self.session is not None or self.pending is not None or self.endpoint is not None:
            raise CommandError("BAD_COMMAND", "a session already exists")
        static = _bytes(request, "static")
        keys = LocalKeys.create(Identity.from_seed(_bytes(request, "seed")), static)
        # ``max_sessions`` is optional (spec/conformance.md §3.3): echoed when honoured.
        limit = request.get("max_sessions")
        config = _config(request.get("config") or {})
        if limit is None:
            self.endpoint = Endpoint(keys, config=config, random=seeded_stream(static))
            return {"out": [], "events": []}
        self.endpoint = Endpoint(keys, config=config, random=seeded_stream(static), max_sessions=int(limit))
        return {"out": [], "events": [], "max_sessions": int(limit)}

    def rdv_node(self, request: Json) -> Json:
        """Run a rendezvous node (spec/conformance.md §3.9); impl_rdv.py does the rest."""
        if self.session is not None or self.pending is not None or self.endpoint is not None or self.rdv:
            raise CommandError("BAD_COMMAND", "a session already exists")
        self.rdv = RdvMode(request)
        return self.rdv.drain(_now(request))

    def rdv_restart(self, request: Json) -> Json:
        if not isinstance(self.rdv, RdvMode):
            raise CommandError("BAD_COMMAND", "no rendezvous node")
        return self.rdv.restart(request)

    def rdv_client(self, request: Json) -> Json:
        """Run a peer's rendezvous client (spec/conformance.md §3.10)."""
        if self.session is not None or self.pending is not None or self.endpoint is not None or self.rdv:
            raise CommandError("BAD_COMMAND", "a session already exists")
        self.rdv = RdvClientMode(request)
        return self.rdv.drain(_now(request))

    def rdv_lookup(self, request: Json) -> Json:
        if not isinstance(self.rdv, RdvClientMode):
            raise CommandError("BAD_COMMAND", "no rendezvous client")
        return self.rdv.lookup(request)

    def _need_session(self) -> SecureSession:
        if self.session is None:
            raise CommandError("BAD_COMMAND", "no session")
        return self.session

    def receive(self, request: Json) -> Json:
        data, now = _bytes(request, "data"), _now(request)
        if self.rdv is not None:
            return self.rdv.receive(request)
        if self.endpoint is not None:
            # The endpoint demultiplexes (spec/session.md §4.1): other protocols come back as events.
            self.endpoint.receive_data(data, str(request.get("addr", "peer")), now)
            return self._drain_endpoint(now)
        if self.session is None and self.pending is not None:
            try:
                self.session = self._respond(data, now)
            except ProtocolError as exc:
                return {"out": [], "events": [], "rejected": exc.code.name}
            return self._drain(now)
        self._need_session().receive_data(data, now)
        return self._drain(now)

    def send(self, request: Json) -> Json:
        self._need_session().send(_bytes(request, "data"), _now(request))
        return self._drain(_now(request))

    def keepalive(self, request: Json) -> Json:
        self._need_session().send_keepalive(_now(request))
        return self._drain(_now(request))

    def close(self, request: Json) -> Json:
        code = ErrorCode[str(request.get("code", "NO_ERROR"))]
        self._need_session().close(_now(request), code, str(request.get("reason", "")))
        return self._drain(_now(request))

    def timer(self, request: Json) -> Json:
        if self.rdv is not None:
            return self.rdv.timer(request)
        if self.endpoint is not None:
            timer, now = self.endpoint.get_timer(), _now(request)
            if timer is not None and timer <= now:
                self.endpoint.handle_timer(now)
            return self._drain_endpoint(now)
        session, now = self._need_session(), _now(request)
        timer = session.get_timer()
        if timer is not None and timer <= now:
            session.handle_timer(now)
        return self._drain(now)

    def get_timer(self, request: Json) -> Json:
        if self.rdv is not None:
            return self.rdv.get_timer()
        if self.endpoint is not None:
            return {"timer": self.endpoint.get_timer()}
        return {"timer": self.session.get_timer() if self.session is not None else None}

    def state(self, request: Json) -> Json:
        if self.rdv is not None:
            return self.rdv.state()
        if self.endpoint is not None:
            return {"state": "endpoint", "close_code": None, "sessions": len(self.endpoint.sessions())}
        session = self.session
        if session is None:
            return {"state": "none", "close_code": None}
        names = {SessionState.ESTABLISHED: "established", SessionState.CLOSED: "closed"}
        code = session.close_code.name if session.close_code is not None else None
        return {"state": names.get(session.state, "handshaking"), "close_code": code}

    def stats(self, request: Json) -> Json:
        return {"drops": self.session.stats() if self.session is not None else {}}

    def _drain(self, now: float) -> Json:
        session = self._need_session()
        if self.first_send_counter is not None and session._sender is not None:
            session._sender._next, self.first_send_counter = self.first_send_counter, None
        out = [d.hex() for d in session.data_to_send(now)]
        events: list[Json] = []
        while (event := session.next_event()) is not None:
            events.append(self._event(event))
        return {"out": out, "events": events}

    def _drain_endpoint(self, now: float) -> Json:
        endpoint = self.endpoint
        if endpoint is None:
            raise CommandError("BAD_COMMAND", "no endpoint")
        batches = endpoint.data_to_send(now)
        out = [datagram.hex() for datagrams, _, _ in batches for datagram in datagrams]
        # Where each datagram goes (spec/conformance.md §3.3): the session's route (spec/session.md §4.2).
        to = [str(addr) for datagrams, addr, _ in batches for _ in datagrams]
        events: list[Json] = []
        while (event := endpoint.next_event()) is not None:
            if isinstance(event, ForeignDatagramReceived):
                if self.bug != "drop-foreign":
                    events.append(_foreign_json(event))
            elif isinstance(event, HandshakeCompleted | MessageReceived | SessionClosed):
                events.append({**self._event(event), "session_id": event.session_id})
        return {"out": out, "to": to, "events": events}

    def _event(self, event: HandshakeCompleted | MessageReceived | SessionClosed) -> Json:
        match event:
            case HandshakeCompleted():
                sas = event.sas
                if self.bug == "flip-sas":
                    sas = sas[::-1]
                return {
                    "type": "handshake_completed",
                    "peer_id": str(event.peer_id),
                    "sas": sas,
                    "handshake_hash": event.handshake_hash.hex(),
                    "version": event.version,
                    "pattern": event.pattern,
                    "remote_static": event.remote_static.hex(),
                }
            case MessageReceived():
                return {"type": "message", "data": event.data.hex()}
            case SessionClosed():
                return {"type": "closed", "code": event.code.name, "by_peer": event.by_peer, "reason": event.reason}

    # -- framing ---------------------------------------------------------------------

    def frame_encode(self, request: Json) -> Json:
        return {"frame": frame(_bytes(request, "data")).hex()}

    def frame_feed(self, request: Json) -> Json:
        self.framer.receive_data(_bytes(request, "data"))
        return self._frames()

    def frame_eof(self, request: Json) -> Json:
        self.framer.receive_eof()
        return self._frames()

    def _frames(self) -> Json:
        frames = []
        while (datagram := self.framer.next_frame()) is not None:
            frames.append(datagram.hex())
        error = self.framer.error
        return {"frames": frames, "error": error.code.name if error is not None else None}

    # -- channel-layer frames ------------------------------------------------------------

    def frames_encode(self, request: Json) -> Json:
        raw = request.get("frames")
        if not isinstance(raw, list):
            raise CommandError("BAD_COMMAND", "'frames' must be a list")
        return {"data": ch.encode_frames([_frame_from_json(obj) for obj in raw]).hex()}

    def frames_decode(self, request: Json) -> Json:
        return {"frames": [frame_to_json(f) for f in ch.parse_frames_untrusted(_bytes(request, "data"))]}

    # -- channel-layer connection (spec/conformance.md §3.7) -------------------------------

    def conn_session(self, request: Json) -> Json:
        if self.session is not None or self.pending is not None or self.endpoint is not None or self.conn:
            raise CommandError("BAD_COMMAND", "a session already exists")
        config = _config(request.get("config") or {})
        channel_config = _channel_config(request.get("channel_config") or {})
        services = request.get("services") or []
        if not isinstance(services, list) or not all(isinstance(name, str) for name in services):
            raise CommandError("BAD_COMMAND", "'services' must be a list of names")
        keys = LocalKeys.create(Identity.from_seed(_bytes(request, "seed")), _bytes(request, "static"))
        self.conn_setup = (channel_config, frozenset(services))
        self.refuse_reason = str(request.get("refuse_reason", "no such service"))
        if request.get("role") == "responder":
            self.pending = {"keys": keys, "config": config, "request": request}
            return {"out": [], "events": []}
        if request.get("role") != "initiator":
            raise CommandError("BAD_COMMAND", "role is 'initiator' or 'responder'")
        self.conn = Connection(_initiate(request, keys, config), _now(request), channel_config)
        return self._pump(_now(request))

    def _need_conn(self) -> Connection:
        if self.conn is None:
            raise CommandError("BAD_COMMAND", "no connection")
        return self.conn

    def conn_receive(self, request: Json) -> Json:
        # The optional ``addr`` (the datagram's source) is ignored: this Connection wraps one
        # session and never sees addresses (an endpoint routes them, session.md §4.2); paths are
        # named by ``path_id`` / ``new_path`` instead (spec/conformance.md §3.11, ``impl_paths``).
        data, now = _bytes(request, "data"), _now(request)
        if self.conn is None and self.pending is not None and self.conn_setup is not None:
            try:
                session = self._respond(data, now)
            except ProtocolError as exc:
                return {"out": [], "events": [], "rejected": exc.code.name}
            self.conn = Connection(session, now, self.conn_setup[0])
            return self._pump(now)
        made = impl_paths.receive(self._need_conn(), request, data, now)
        return {**made, **self._pump(now)}

    def conn_add_path(self, request: Json) -> Json:
        conn, now = self._need_conn(), _now(request)
        return {"path_id": impl_paths.add_path(conn, request, now), **self._pump(now)}

    def conn_describe_path(self, request: Json) -> Json:
        impl_paths.describe_path(self._need_conn(), request)
        return self._pump(_now(request))

    def conn_abandon_path(self, request: Json) -> Json:
        conn, now = self._need_conn(), _now(request)
        impl_paths.abandon_path(conn, request, now)
        return self._pump(now)

    def conn_paths(self, request: Json) -> Json:
        return {"paths": impl_paths.paths_state(self._need_conn())}

    def conn_open(self, request: Json) -> Json:
        conn, now = self._need_conn(), _now(request)
        kind = CHANNEL_KINDS[str(request.get("kind", "stream"))]
        # ``retransmissions`` (optional): the message retransmission budget (channels.md §6.1), echoed.
        budget = request.get("retransmissions")
        if budget is None:
            channel_id = conn.open_channel(str(request.get("service")), now, kind=kind)
            return {"channel_id": channel_id, **self._pump(now)}
        channel_id = conn.open_channel(str(request.get("service")), now, kind=kind, retransmissions=int(budget))
        return {"channel_id": channel_id, "retransmissions": int(budget), **self._pump(now)}

    def conn_send(self, request: Json) -> Json:
        conn, now = self._need_conn(), _now(request)
        channel_id, data = int(request["channel_id"]), _bytes(request, "data")
        channel = conn.channels.get(channel_id)
        budget = request.get("retransmissions")  # optional: this message's budget (channels.md §6.1), echoed
        echoed: Json = {}
        if channel is not None and channel.kind is ch.ChannelKind.MESSAGE:
            accepted = len(data)
            if budget is None:
                conn.send_message(channel_id, data, now)
            else:
                conn.send_message(channel_id, data, now, retransmissions=int(budget))
                echoed = {"retransmissions": int(budget)}
        else:
            accepted = conn.send(channel_id, data, now) if data else 0
        if request.get("fin"):
            conn.close_channel(channel_id, now)
        return {"accepted": accepted, **echoed, **self._pump(now)}

    def conn_reset(self, request: Json) -> Json:
        conn, now = self._need_conn(), _now(request)
        channel_id = int(request["channel_id"])
        code = request.get("code", "APPLICATION_CLOSE")
        conn.reset_channel(channel_id, now, int(code) if isinstance(code, int) else ErrorCode[str(code)])
        self.echo.pop(channel_id, None)
        return self._pump(now)

    def conn_ping(self, request: Json) -> Json:
        conn, now = self._need_conn(), _now(request)
        return {"ping_id": conn.ping(now), **self._pump(now)}

    def conn_close(self, request: Json) -> Json:
        conn, now = self._need_conn(), _now(request)
        conn.close(now, ErrorCode[str(request.get("code", "NO_ERROR"))], str(request.get("reason", "")))
        return self._pump(now)

    def conn_timer(self, request: Json) -> Json:
        conn, now = self._need_conn(), _now(request)
        timer = conn.get_timer()
        if timer is not None and timer <= now:
            conn.handle_timer(now)
        return self._pump(now)

    def conn_state(self, request: Json) -> Json:
        conn = self.conn
        if conn is None:
            return {"state": "none", "channels": [], "timer": None}
        channels = [
            {"channel_id": c.id, "state": c.state.value, "service": c.service, "kind": c.kind.name.lower()}
            for c in sorted(conn.channels.values(), key=lambda c: c.id)
        ]
        return {"state": conn.state.value, "channels": channels, "timer": conn.get_timer()}

    def _pump(self, now: float) -> Json:
        """Play the application (accept, read, echo) and drain the connection until it is quiet."""
        conn = self._need_conn()
        out: list[str] = []
        out_paths: list[int] = []
        events: list[Json] = []
        while True:
            handled = self._conn_events(conn, now, events)
            batches = conn.data_to_send_paths(now)
            for path_id, batch in batches:
                out.extend(d.hex() for d in batch)
                out_paths.extend(path_id for _ in batch)
            if not batches and not handled:
                break
        return {"out": out, "out_paths": out_paths, "events": events, "timer": conn.get_timer()}

    def _conn_events(self, conn: Connection, now: float, events: list[Json]) -> bool:
        handled = False
        while (event := conn.next_event()) is not None:
            handled = True
            if isinstance(event, PathValidated | PathActive | PathDead | PathAbandoned):
                events.append(impl_paths.event_json(event))
                continue
            events.extend(self._conn_event(conn, event, now))
        return handled

    def _conn_event(self, conn: Connection, event: ChannelEvent | HandshakeCompleted, now: float) -> list[Json]:
        """The JSON of one connection event, after the adapter's application has reacted to it."""
        match event:
            case ConnectionReady():
                return [self._event(event.handshake)]
            case HandshakeCompleted():
                return [self._event(event)]
            case ChannelRequested():
                services = self.conn_setup[1] if self.conn_setup is not None else frozenset()
                channel = conn.channels.get(event.channel_id)
                if channel is None or channel.state is not ChannelState.REQUESTED:
                    # Stale: a RESET or an error later in the same packet already closed it.
                    return [{**_event_json(event), "accepted": False}]
                if event.service in services:
                    conn.accept_channel(event.channel_id, now)
                    if event.service == ECHO:
                        self.echo[event.channel_id] = bytearray()
                else:
                    conn.refuse_channel(event.channel_id, now, ErrorCode.SERVICE_UNKNOWN, self.refuse_reason)
                return [{**_event_json(event), "accepted": event.service in services}]
            case ChannelDataAvailable():
                return self._read(conn, event.channel_id, now)
            case ChannelEnded():
                found = self._read(conn, event.channel_id, now) if self._is_stream(conn, event.channel_id) else []
                if event.channel_id in self.echo:
                    self.echo_fin.add(event.channel_id)
                    self._flush_echo(conn, event.channel_id, now)
                return [*found, _event_json(event)]
            case ChannelWritable():
                self._flush_echo(conn, event.channel_id, now)
                return []
            case ChannelMessage():
                if event.channel_id in self.echo and event.channel_id in conn.channels:
                    conn.send_message(event.channel_id, event.data, now)
            case ChannelReset() | ChannelClosed():
                self.echo.pop(event.channel_id, None)
            case PingAcknowledged() if self.bug == "no-ping-ack":
                return []
        return [_event_json(event)]

    @staticmethod
    def _is_stream(conn: Connection, channel_id: int) -> bool:
        channel = conn.channels.get(channel_id)
        return channel is not None and channel.kind is ch.ChannelKind.STREAM

    def _read(self, conn: Connection, channel_id: int, now: float) -> list[Json]:
        data = conn.read(channel_id) if channel_id in conn.channels else b""
        if channel_id in self.echo and data:
            self.echo[channel_id] += data
            self._flush_echo(conn, channel_id, now)
        return [{"type": "channel_data", "channel_id": channel_id, "data": data.hex()}] if data else []

    def _flush_echo(self, conn: Connection, channel_id: int, now: float) -> None:
        """Send back what the echo service read (as much as fits), then its FIN once all is sent."""
        pending = self.echo.get(channel_id)
        channel = conn.channels.get(channel_id)
        if pending is None or channel is None or channel.kind is not ch.ChannelKind.STREAM:
            if channel is not None and channel_id in self.echo_fin:
                self.echo_fin.discard(channel_id)
                conn.close_channel(channel_id, now)
            return
        if pending:
            del pending[: conn.send(channel_id, bytes(pending), now)]
        if not pending and channel_id in self.echo_fin:
            self.echo_fin.discard(channel_id)
            conn.finish(channel_id, now)


def _frame_from_json(obj: Any) -> ch.Frame:
    """A frame from the runner's JSON (spec/conformance.md §3.6); BAD_COMMAND if it is not one."""
    try:
        return frame_from_json(obj)
    except ValueError as exc:
        raise CommandError("BAD_COMMAND", str(exc)) from None


_CONN_EVENTS = {
    ChannelRequested: "channel_requested",
    ChannelOpened: "channel_opened",
    ChannelRefused: "channel_refused",
    ChannelEnded: "channel_ended",
    ChannelMessage: "channel_message",
    ChannelReset: "channel_reset",
    ChannelClosed: "channel_closed",
    PingAcknowledged: "ping_acknowledged",
    ConnectionClosed: "connection_closed",
}


def _event_json(event: ChannelEvent) -> Json:
    """A connection event as JSON (spec/conformance.md §3.7): its fields, codes by name, bytes as hex.

    ``session_id`` is left out: an IUT process holds one session.
    """
    out: Json = {"type": _CONN_EVENTS[type(event)]}
    for field in dataclasses.fields(event):
        if field.name == "session_id":
            continue
        value = getattr(event, field.name)
        out[field.name] = (
            value.name if isinstance(value, ErrorCode) else value.hex() if isinstance(value, bytes) else value
        )
    return out


def _foreign_json(event: ForeignDatagramReceived) -> Json:
    """A datagram of another protocol, passed on (spec/conformance.md §2.2, spec/session.md §4.1)."""
    return {"type": "foreign_datagram", "protocol": event.protocol, "data": event.data.hex(), "addr": event.address}


def _initiate(request: Json, keys: LocalKeys, config: SessionConfig) -> SecureSession:
    """An initiator's session from the fields of a ``session`` or ``conn_session`` command."""
    expected = request.get("expected_peer")
    return SecureSession.initiate(
        keys,
        local_index=int(request.get("local_index", 0)),
        now=_now(request),
        config=config,
        expected_peer=PeerId.parse(expected) if expected is not None else None,
        remote_static=_opt_bytes(request, "remote_static"),
        ephemeral=_opt_bytes(request, "ephemeral"),
        random=_nonce_then_system(_opt_bytes(request, "sas_nonce")),
    )


#: The areas of case ids this adapter implements (spec/conformance.md §4); an id of any other
#: area is a case it does not know, and it exits 127 as the compliance pre-check requires.
AREAS = (
    "id/",
    "hs/",
    "rec/",
    "ep/",
    "frame/",
    "ch/",
    "ses/",
    "err/",
    "conf/",
    "rdv/",
    "nat/",
    "cand/",
    "punch/",
    "map/",
)


def _unsupported(case_id: str) -> bool:
    if case_id and not case_id.startswith(AREAS):
        return True
    prefixes = [p for p in os.environ.get("P2POS_IMPL_UNSUPPORTED", "").split(",") if p]
    return any(case_id.startswith(p) for p in prefixes)


def main() -> int:
    if _unsupported(os.environ.get("P2POS_TESTCASE", "")):
        return 127
    bug = os.environ.get("P2POS_IMPL_BUG", "")
    install_bug(bug, globals())
    adapter = Adapter(bug)
    for line in sys.stdin:
        if not line.strip():
            continue
        if bug == "hang":
            time.sleep(3600)
        try:
            request = json.loads(line)
        except ValueError:
            print(json.dumps({"ok": False, "error": "BAD_COMMAND", "message": "not JSON"}), flush=True)
            continue
        if not isinstance(request, dict):
            request = {}
        if request.get("cmd") == "quit":
            print(json.dumps({"ok": True}), flush=True)
            return 0
        if request.get("cmd") == "reset":  # spec/conformance.md §3.5: a fresh adapter for the next case
            if _unsupported(str(request.get("case", ""))):
                return 127
            adapter = Adapter(bug)
            print(json.dumps({"ok": True}), flush=True)
            continue
        print(json.dumps(adapter.handle(request)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
