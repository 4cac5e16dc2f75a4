"""Write the channel-layer transcript vectors (spec/vectors/channels.json) from the implementation.

Run from the repository root::

    /tmp/v/bin/python spec/vectors/generate_channels.py           # (re)write channels.json
    /tmp/v/bin/python spec/vectors/generate_channels.py --check   # exit 1 if it differs

Two ``Connection`` objects (alice the initiator, bob the responder) talk over a
perfect link with a fixed one-way delay.  Keys are the fixed ones of
``generate.py`` (``BLAKE2b-256("p2pos test vector: " || label)``); session
indices are fixed; ephemerals and every random source come from seeded
``Prng``s.  The driver is a small discrete-event loop with explicit times: at
each step one side receives a datagram, handles its timer, or makes one
application call, then its ``data_to_send`` and ``next_event`` are drained.
Every step is written down, so it can be replayed into fresh connections
(tests/channels/test_channel_vectors.py does), and every datagram is listed with, for
DATA records, the plaintext its receiver decrypted and the frames it holds
(JSON form of spec/conformance.md §3.6).  ``build_vectors()`` returns
``{file name: JSON text}`` as ``generate.py`` does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from p2pos.proto.channels.connection import ChannelConfig, Connection
from p2pos.proto.channels.frames import ChannelKind, Frame, parse_frames_untrusted
from p2pos.proto.errors import ErrorCode
from p2pos.proto.events import MessageReceived
from p2pos.proto.handshake.handshake import LocalKeys, sas_commitment
from p2pos.proto.handshake.payload import SAS_NONCE_LEN
from p2pos.proto.identity.identity import Identity
from p2pos.proto.identity.peer_id import PeerId
from p2pos.proto.session.session import SecureSession
from p2pos.proto.session.wire import PacketType
from p2pos.proto.simulation.prng import Prng

VECTORS_DIR = Path(__file__).resolve().parent
Json = dict[str, Any]

#: One-way delay of the perfect link, seconds.
DELAY = 0.01
#: The transcript stops when nothing is due before this time (only the idle timers remain).
END = 2.0
INDEX = {"alice": 0x0A11CE01, "bob": 0xB0B00002}
#: Prng seeds: the session's random source and the ephemeral private key (the first 32 bytes of its stream).
SEEDS = {"alice": {"random": 101, "ephemeral": 102}, "bob": {"random": 201, "ephemeral": 202}}
CONFIG = ChannelConfig(pmtu_probing=False, keepalive_interval=None)

#: The application script: (time, actor, action, arguments).  Reactions to events are added by ``_react``.
SCRIPT: list[tuple[float, str, str, Json]] = [
    (0.1, "alice", "open_channel", {"service": "echo", "kind": "stream"}),
    (0.1, "alice", "send", {"channel_id": 0, "data": b"hello, bob".hex()}),
    (0.2, "alice", "finish", {"channel_id": 0}),
    (0.3, "alice", "open_channel", {"service": "chat", "kind": "message"}),
    (0.3, "alice", "send_message", {"channel_id": 2, "data": b"first message".hex()}),
    (0.3, "alice", "send_message", {"channel_id": 2, "data": b"second message".hex()}),
    (0.4, "alice", "close_channel", {"channel_id": 2}),
    (0.5, "alice", "open_channel", {"service": "no-such-service", "kind": "stream"}),
    (0.6, "bob", "open_channel", {"service": "upload", "kind": "stream"}),
    (0.6, "bob", "send", {"channel_id": 1, "data": b"a file alice will not finish reading".hex()}),
    (0.7, "alice", "ping", {}),
    (0.8, "bob", "open_channel", {"service": "upload", "kind": "stream"}),
    (0.8, "bob", "send", {"channel_id": 3, "data": b"a second file, stopped by alice".hex()}),
    (0.9, "alice", "stop_sending", {"channel_id": 3, "code": 0x4242}),
    (1.0, "alice", "close", {}),
]
SERVICES = {"alice": {"upload"}, "bob": {"echo", "chat"}}


def fixed(label: str) -> bytes:
    """32 fixed bytes named by ``label``: BLAKE2b-256("p2pos test vector: " || label) (as generate.py)."""
    return hashlib.blake2b(b"p2pos test vector: " + label.encode(), digest_size=32).digest()


def local_keys(name: str) -> LocalKeys:
    """alice's or bob's fixed identity and Noise static key (the labels of generate.py)."""
    return LocalKeys.create(Identity.from_seed(fixed(f"{name} identity seed")), fixed(f"{name} noise static key"))


def _load_generate_frames() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_frames", Path(__file__).with_name("generate_frames.py"))
    if spec is None or spec.loader is None:
        raise RuntimeError("generate_frames.py not found beside generate_channels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_FRAMES = _load_generate_frames()
frame_to_json: Callable[[Frame], Json] = _FRAMES.frame_to_json


class TappedSession(SecureSession):
    """A ``SecureSession`` that keeps the plaintext of every DATA record it hands to the connection."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tapped: list[tuple[int, bytes]] = []

    def next_event(self) -> Any:
        event = super().next_event()
        if isinstance(event, MessageReceived):
            self.tapped.append((event.packet_number, event.data))
        return event

    def receive_data_record(self, data: bytes, now: float) -> tuple[int, bytes] | None:
        opened = super().receive_data_record(data, now)
        if opened is not None:  # the connection's hot path: no MessageReceived event
            self.tapped.append(opened)
        return opened


def _value(value: Any) -> Any:
    if isinstance(value, ErrorCode):
        return value.name
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, PeerId):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _value(v) for k, v in sorted(value.items())}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return event_json(value)
    return value


def event_json(event: Any) -> Json:
    """An event as JSON: ``type`` (the class name), then its fields (bytes in hex, codes by name)."""
    out: Json = {"type": type(event).__name__}
    for field in dataclasses.fields(event):
        out[field.name] = _value(getattr(event, field.name))
    return out


def apply(conn: Connection, action: str, args: Json, now: float) -> Any:
    """Make one application call on ``conn``; returns its result (JSON-ready)."""
    cid = args.get("channel_id", 0)
    if action == "open_channel":
        kind = ChannelKind.STREAM if args["kind"] == "stream" else ChannelKind.MESSAGE
        return conn.open_channel(args["service"], now, kind=kind)
    if action == "accept_channel":
        return conn.accept_channel(cid, now)
    if action == "refuse_channel":
        return conn.refuse_channel(cid, now, ErrorCode[args["code"]], args["reason"])
    if action == "send":
        return conn.send(cid, bytes.fromhex(args["data"]), now)
    if action == "send_message":
        return conn.send_message(cid, bytes.fromhex(args["data"]), now)
    if action == "finish":
        return conn.finish(cid, now)
    if action == "close_channel":
        return conn.close_channel(cid, now)
    if action == "reset_channel":
        return conn.reset_channel(cid, now, _code(args["code"]))
    if action == "stop_sending":
        return conn.stop_sending(cid, now, _code(args["code"]))
    if action == "read":
        return conn.read(cid).hex()
    if action == "ping":
        return conn.ping(now)
    if action == "close":
        return conn.close(now)
    raise RuntimeError(f"unknown action {action}")


def _code(value: str | int) -> ErrorCode | int:
    """A code in the script: an ErrorCode by name, or an application code as a number (errors.md §3)."""
    return ErrorCode[value] if isinstance(value, str) else value


class _Transcript:
    """The discrete-event driver: a perfect link, two connections, a log of steps and datagrams."""

    def __init__(self) -> None:
        self.conns: dict[str, Connection] = {}
        self.sessions: dict[str, TappedSession] = {}
        self.steps: list[Json] = []
        self.datagrams: list[Json] = []
        self.flight: list[tuple[float, int, str, int]] = []  # (arrival, seq, to, datagram index)
        self.queue: list[tuple[str, str, Json]] = []  # reactions due at the current time
        self.sas_nonce = b""  # alice's SAS nonce, the first 32 bytes of her random source

    def run(self) -> None:
        source = Prng(SEEDS["alice"]["random"])
        drawn: list[bytes] = []

        def alice_random(n: int) -> bytes:
            drawn.append(source(n))
            return drawn[-1]

        alice = TappedSession.initiate(
            local_keys("alice"),
            local_index=INDEX["alice"],
            now=0.0,
            random=alice_random,
            ephemeral=Prng(SEEDS["alice"]["ephemeral"])(32),
        )
        if not isinstance(alice, TappedSession):
            raise RuntimeError("SecureSession.initiate did not build the subclass")
        # The initiator's first draw is its SAS nonce (spec/handshake.md §7); the INIT commits to it.
        if not drawn or len(drawn[0]) != SAS_NONCE_LEN:
            raise RuntimeError("alice's first random draw is not her SAS nonce")
        self.sas_nonce = drawn[0]
        self.sessions["alice"] = alice
        self.conns["alice"] = Connection(alice, 0.0, CONFIG)
        self._finish_step({"time": 0.0, "actor": "alice", "action": "initiate"})
        if sas_commitment(self.sas_nonce).hex() not in self.datagrams[0]["hex"]:
            raise RuntimeError("alice's INIT does not carry the commitment to her SAS nonce")
        script = list(SCRIPT)
        while True:
            candidates: list[tuple[float, int, str]] = []
            if self.flight:
                candidates.append((self.flight[0][0], 0, "deliver"))
            if script:
                candidates.append((script[0][0], 1, "script"))
            for rank, actor in enumerate(("alice", "bob")):
                timer = self.conns[actor].get_timer() if actor in self.conns else None
                if timer is not None:
                    candidates.append((timer, 2 + rank, actor))
            if not candidates:
                break  # both connections closed: nothing is left to happen
            now, _, what = min(candidates)
            if now >= END:
                break
            if what == "deliver":
                _, _, to, index = heapq.heappop(self.flight)
                self._receive(to, index, now)
            elif what == "script":
                _, actor, action, args = script.pop(0)
                self._call(actor, action, args, now)
            else:
                self.conns[what].handle_timer(now)
                self._finish_step({"time": now, "actor": what, "action": "handle_timer"})
            while self.queue:
                actor, action, args = self.queue.pop(0)
                self._call(actor, action, args, now)
            if len(self.steps) > 500:
                raise RuntimeError("the transcript does not settle")

    def _receive(self, to: str, index: int, now: float) -> None:
        record = self.datagrams[index]
        data = bytes.fromhex(record["hex"])
        if to not in self.conns:
            bob = TappedSession.respond_untrusted(
                local_keys("bob"),
                data,
                local_index=INDEX["bob"],
                now=now,
                random=Prng(SEEDS["bob"]["random"]),
                ephemeral=Prng(SEEDS["bob"]["ephemeral"])(32),
            )
            if not isinstance(bob, TappedSession):
                raise RuntimeError("SecureSession.respond_untrusted did not build the subclass")
            self.sessions["bob"] = bob
            self.conns["bob"] = Connection(bob, now, CONFIG)
        else:
            before = len(self.sessions[to].tapped)
            self.conns[to].receive_data(data, now)
            tapped = self.sessions[to].tapped[before:]
            if record["type"] == "DATA":
                if len(tapped) != 1 or tapped[0][0] != record["packet_number"]:
                    raise RuntimeError(f"DATA datagram {index} did not decrypt")
                plaintext = tapped[0][1]
                record["plaintext"] = plaintext.hex()
                record["frames"] = [frame_to_json(f) for f in parse_frames_untrusted(plaintext)]
        record["received_at"] = now
        self._finish_step({"time": now, "actor": to, "action": "receive", "datagram": index})

    def _call(self, actor: str, action: str, args: Json, now: float) -> None:
        result = apply(self.conns[actor], action, args, now)
        step: Json = {"time": now, "actor": actor, "action": action, "args": args}
        if result is not None:
            step["result"] = result
        self._finish_step(step)
        if actor == "bob" and action == "read" and args["channel_id"] == 0 and result:
            channel = self.conns["bob"].channels.get(0)
            if channel is not None and not channel.local_finished:  # bob echoes what he read
                self.queue.append(("bob", "send", {"channel_id": 0, "data": result}))

    def _finish_step(self, step: Json) -> None:
        actor, now = step["actor"], step["time"]
        conn = self.conns[actor]
        sent = conn.data_to_send(now)
        events = []
        while (event := conn.next_event()) is not None:
            events.append(event)
        step["sends"] = []
        for data in sent:
            index = len(self.datagrams)
            to = "bob" if actor == "alice" else "alice"
            record: Json = {"index": index, "from": actor, "to": to, "sent_at": now, "type": PacketType(data[0]).name}
            if data[0] == PacketType.DATA:
                record["packet_number"] = int.from_bytes(data[6:14], "big")
            record["length"] = len(data)
            record["hex"] = data.hex()
            self.datagrams.append(record)
            heapq.heappush(self.flight, (now + DELAY, index, to, index))
            step["sends"].append(index)
        step["events"] = [event_json(e) for e in events]
        self.steps.append(step)
        for event in events:
            self._react(actor, event)

    def _react(self, actor: str, event: Any) -> None:
        """The applications: accept known services, echo, read, reset the upload, close what the peer closed."""
        name = type(event).__name__
        cid = getattr(event, "channel_id", None)
        conn = self.conns[actor]
        if name == "ChannelRequested":
            if event.service in SERVICES[actor]:
                self.queue.append((actor, "accept_channel", {"channel_id": cid}))
            else:
                args = {"channel_id": cid, "code": "SERVICE_UNKNOWN", "reason": "no such service"}
                self.queue.append((actor, "refuse_channel", args))
        elif name in ("ChannelDataAvailable", "ChannelEnded") and cid in conn.channels:
            channel = conn.channels[cid]
            if channel.recv is not None:
                self.queue.append((actor, "read", {"channel_id": cid}))
            if name == "ChannelDataAvailable" and actor == "alice" and cid == 1:
                self.queue.append((actor, "reset_channel", {"channel_id": cid, "code": "APPLICATION_CLOSE"}))
            if name == "ChannelEnded" and actor == "bob":
                self.queue.append((actor, "close_channel", {"channel_id": cid}))


def channel_vectors() -> Json:
    transcript = _Transcript()
    transcript.run()
    if transcript.flight:
        raise RuntimeError("datagrams still in flight at the end")
    final = {actor: conn.get_timer() for actor, conn in transcript.conns.items()}
    parties: Json = {}
    for name in ("alice", "bob"):
        keys = local_keys(name)
        parties[name] = {
            "role": "initiator" if name == "alice" else "responder",
            "identity_seed_label": f"{name} identity seed",
            "static_private_label": f"{name} noise static key",
            "peer_id": str(keys.identity.peer_id),
            "static_public": keys.static_public.hex(),
            "local_index": INDEX[name],
            "random_prng_seed": SEEDS[name]["random"],
            "ephemeral_prng_seed": SEEDS[name]["ephemeral"],
            "ephemeral_private": Prng(SEEDS[name]["ephemeral"])(32).hex(),
        }
    # Only the initiator has a SAS nonce (spec/handshake.md §7): her INIT commits to it, her FINISH reveals it.
    parties["alice"]["sas_nonce"] = transcript.sas_nonce.hex()
    return {
        "description": (
            "A deterministic channel-layer transcript: alice (initiator) and bob (responder) complete an XX "
            "handshake, exchange MAX_CHANNELS, open an 'echo' stream channel that bob accepts, send STREAM data "
            "both ways with ACKs, finish it with a FIN each way (ChannelClosed on both sides), open a 'chat' "
            "message channel carrying two MESSAGEs closed by CLOSE_CHANNEL each way, open an unknown service "
            "that bob REFUSEs with SERVICE_UNKNOWN, and bob opens an 'upload' stream that alice accepts, reads "
            "and RESETs (bob answers with his RESET and final size). Keys are those of handshake_xx.json "
            "(labels hashed as in generate.py); session indices are fixed; each side's random source is "
            "Prng(random_prng_seed) and its ephemeral private key the first 32 bytes of "
            "Prng(ephemeral_prng_seed) (p2pos_proto/simulation/prng.py, xoshiro256**). alice's 'sas_nonce' "
            "is the first 32 bytes of her random source, drawn when she initiates (bob, the responder, has none). "
            "The link is perfect with a fixed one-way delay. 'steps' are replayable in order: 'initiate' "
            "creates alice's session and Connection, "
            "bob's first 'receive' creates his with SecureSession.respond_untrusted, 'handle_timer' is called "
            "at the time given, other actions are application calls with 'args' (bytes in hex, codes by name) "
            "and their 'result'. After each step the actor's data_to_send(time) gives the datagrams listed in "
            "'sends' (indices into 'datagrams') and next_event() the 'events'. For each DATA datagram, "
            "'plaintext' is what its receiver decrypted and 'frames' its frames (spec/conformance.md §3.6)."
        ),
        "spec": ["spec/channels.md §2", "spec/channels.md §3", "spec/channels.md §7", "spec/frames.md §4"],
        "config": {
            "channel_config": {"pmtu_probing": False, "keepalive_interval": None},
            "note": "every other ChannelConfig and SessionConfig field has its default",
            "one_way_delay": DELAY,
            "end": END,
        },
        "alice": parties["alice"],
        "bob": parties["bob"],
        "steps": transcript.steps,
        "datagrams": transcript.datagrams,
        "final_timers": final,
    }


# -- output -------------------------------------------------------------------------


def build_vectors() -> dict[str, str]:
    """The vector file's name and exact text."""
    return {"channels.json": json.dumps(channel_vectors(), indent=2, ensure_ascii=False) + "\n"}


def main(argv: list[str] | None = None) -> int:
    status: int = _FRAMES.write_or_check(build_vectors(), argv, script="generate_channels.py", doc=__doc__)
    return status


if __name__ == "__main__":
    sys.exit(main())
