"""This implementation's conformance adapter: the control protocol over ``p2pos.proto``.

Run as ``python -m conformance.impl``; it reads one JSON command per line on
stdin and answers one JSON object per line on stdout (spec/conformance.md).
It holds one session, or (``endpoint`` command) one ``Endpoint`` whose
randomness is a deterministic stream derived from its static key.
It supports every case, so it ignores ``P2POS_TESTCASE`` except for two test
hooks that prove the runner can fail:

* ``P2POS_IMPL_UNSUPPORTED=prefix,...``: exit 127 for case ids with a listed prefix;
* ``P2POS_IMPL_BUG=flip-sas``: report a wrong SAS in ``handshake_completed``;
  ``P2POS_IMPL_BUG=hang``: never answer.
"""

from __future__ import annotations

import dataclasses
import hashlib
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
    crypto,
    frame,
)
from p2pos.proto import frames as ch
from p2pos.proto.identity import verify

Json = dict[str, Any]
_CONFIG_FIELDS = {f.name for f in dataclasses.fields(SessionConfig)} - {"capabilities", "prologue"}


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


def _stream(seed: bytes) -> crypto.RandomSource:
    """A deterministic byte stream (BLAKE2b in counter mode) for the endpoint's indices and ephemerals."""
    counter = 0

    def source(n: int) -> bytes:
        nonlocal counter
        out = b""
        while len(out) < n:
            out += hashlib.blake2b(counter.to_bytes(8, "big"), key=seed, digest_size=64).digest()
            counter += 1
        return out[:n]

    return source


def _config(raw: Any) -> SessionConfig:
    if not isinstance(raw, dict) or not set(raw) <= _CONFIG_FIELDS:
        raise CommandError("BAD_COMMAND", f"config keys must be among {sorted(_CONFIG_FIELDS)}")
    values = dict(raw)
    if "versions" in values:
        values["versions"] = tuple(values["versions"])
    return SessionConfig(**values)


class Adapter:
    """The state of one IUT process: at most one session (or one endpoint) and one framer."""

    def __init__(self, bug: str = "") -> None:
        self.bug = bug
        self.session: SecureSession | None = None
        self.endpoint: Endpoint | None = None
        self.pending: Json | None = None  # a responder's parameters until its INIT arrives
        self.framer = StreamFramer()
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
        }

    def handle(self, request: Json) -> Json:
        handler = self.handlers.get(str(request.get("cmd")))
        if handler is None:
            return {"ok": False, "error": "UNKNOWN_COMMAND", "message": f"unknown command {request.get('cmd')!r}"}
        try:
            return {"ok": True, **handler(request)}
        except CommandError as exc:
            return {"ok": False, "error": exc.code, "message": str(exc)}
        except ProtocolError as exc:
            return {"ok": False, "error": exc.code.name, "message": str(exc)}
        except (KeyError, ValueError, TypeError) as exc:
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
        peer = PeerId(_bytes(request, "public_key"))
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
        config = _config(request.get("config") or {})
        keys = LocalKeys.create(Identity.from_seed(_bytes(request, "seed")), _bytes(request, "static"))
        if request.get("role") == "responder":
            self.pending = {"keys": keys, "config": config, "request": request}
            return {"out": []}
        if request.get("role") != "initiator":
            raise CommandError("BAD_COMMAND", "role is 'initiator' or 'responder'")
        expected = request.get("expected_peer")
        self.session = SecureSession.initiate(
            keys,
            local_index=int(request.get("local_index", 0)),
            now=_now(request),
            config=config,
            expected_peer=PeerId.parse(expected) if expected is not None else None,
            remote_static=_opt_bytes(request, "remote_static"),
            ephemeral=_opt_bytes(request, "ephemeral"),
            random=_nonce_then_system(_opt_bytes(request, "sas_nonce")),
        )
        return self._drain(_now(request))

    def start_endpoint(self, request: Json) -> Json:
        if self.session is not None or self.pending is not None or self.endpoint is not None:
            raise CommandError("BAD_COMMAND", "a session already exists")
        static = _bytes(request, "static")
        keys = LocalKeys.create(Identity.from_seed(_bytes(request, "seed")), static)
        self.endpoint = Endpoint(keys, config=_config(request.get("config") or {}), random=_stream(static))
        return {"out": [], "events": []}

    def _need_session(self) -> SecureSession:
        if self.session is None:
            raise CommandError("BAD_COMMAND", "no session")
        return self.session

    def receive(self, request: Json) -> Json:
        data, now = _bytes(request, "data"), _now(request)
        if self.endpoint is not None:
            self.endpoint.receive_datagram(data, str(request.get("addr", "peer")), now)
            return self._drain_endpoint(now)
        if self.session is None and self.pending is not None:
            params = self.pending["request"]
            try:
                self.session = SecureSession.respond_untrusted(
                    self.pending["keys"],
                    data,
                    local_index=int(params.get("local_index", 0)),
                    now=now,
                    config=self.pending["config"],
                    ephemeral=_opt_bytes(params, "ephemeral"),
                )
            except ProtocolError as exc:
                return {"out": [], "events": [], "rejected": exc.code.name}
            self.pending = None
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
        if self.endpoint is not None:
            return {"timer": self.endpoint.get_timer()}
        return {"timer": self.session.get_timer() if self.session is not None else None}

    def state(self, request: Json) -> Json:
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
        out = [d.hex() for d in session.data_to_send(now)]
        events: list[Json] = []
        while (event := session.next_event()) is not None:
            events.append(self._event(event))
        return {"out": out, "events": events}

    def _drain_endpoint(self, now: float) -> Json:
        endpoint = self.endpoint
        if endpoint is None:
            raise CommandError("BAD_COMMAND", "no endpoint")
        out = [datagram.hex() for datagram, _ in endpoint.datagrams_to_send(now)]
        events: list[Json] = []
        while (event := endpoint.next_event()) is not None:
            events.append(self._event(event))
        return {"out": out, "events": events}

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
        return {"frames": [_frame_to_json(f) for f in ch.parse_frames_untrusted(_bytes(request, "data"))]}


_FRAME_CLASSES: dict[str, type[ch.Frame]] = {
    "padding": ch.Padding,
    "ping": ch.Ping,
    "ack": ch.Ack,
    "open": ch.Open,
    "accept": ch.Accept,
    "refuse": ch.Refuse,
    "stream": ch.Stream,
    "reset": ch.Reset,
    "stop_sending": ch.StopSending,
    "max_data": ch.MaxData,
    "max_channel_data": ch.MaxChannelData,
    "data_blocked": ch.DataBlocked,
    "channel_blocked": ch.ChannelBlocked,
    "message": ch.Message,
    "max_channels": ch.MaxChannels,
    "close_channel": ch.CloseChannel,
}
_FRAME_NAMES = {cls: name for name, cls in _FRAME_CLASSES.items()}
_KINDS = {"stream": ch.ChannelKind.STREAM, "message": ch.ChannelKind.MESSAGE}


def _frame_from_json(obj: Any) -> ch.Frame:
    """A frame from its JSON form (spec/conformance.md §3.6)."""
    if not isinstance(obj, dict) or obj.get("type") not in _FRAME_CLASSES:
        raise CommandError("BAD_COMMAND", f"not a frame object: {obj!r}")
    fields = {k: v for k, v in obj.items() if k != "type"}
    if "data" in fields:
        fields["data"] = _bytes(fields, "data")
    if "kind" in fields:
        fields["kind"] = _KINDS[fields["kind"]]
    if "ack_ranges" in fields:
        fields["ack_ranges"] = tuple((int(gap), int(length)) for gap, length in fields["ack_ranges"])
    for name, value in fields.items():
        if isinstance(value, float | bool) and name != "fin":
            raise CommandError("BAD_COMMAND", f"{name!r} must be an integer")
    return _FRAME_CLASSES[obj["type"]](**fields)


def _frame_to_json(frame: ch.Frame) -> Json:
    """The JSON form of a frame (spec/conformance.md §3.6)."""
    out: Json = {"type": _FRAME_NAMES[type(frame)]}
    for field in dataclasses.fields(frame):
        value = getattr(frame, field.name)
        if isinstance(value, bytes):
            value = value.hex()
        elif isinstance(value, ch.ChannelKind):
            value = value.name.lower()
        elif isinstance(value, tuple):
            value = [list(pair) for pair in value]
        out[field.name] = value
    return out


def _unsupported(case_id: str) -> bool:
    prefixes = [p for p in os.environ.get("P2POS_IMPL_UNSUPPORTED", "").split(",") if p]
    return any(case_id.startswith(p) for p in prefixes)


def main() -> int:
    if _unsupported(os.environ.get("P2POS_TESTCASE", "")):
        return 127
    bug = os.environ.get("P2POS_IMPL_BUG", "")
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
        print(json.dumps(adapter.handle(request)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
