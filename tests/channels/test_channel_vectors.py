"""spec/vectors/channels.json: regenerated exactly, frames re-parsed, and the transcript replayed.

The replay builds fresh connections from the file's own parameters (keys from the
labels, indices, Prng seeds, config), feeds each step's input at its time, and
checks that the datagrams and events are exactly the recorded ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

from p2pos.proto.channels.connection import ChannelConfig, Connection
from p2pos.proto.channels.frames import (
    Accept,
    Ack,
    ChannelKind,
    CloseChannel,
    Frame,
    MaxChannels,
    Message,
    Open,
    Ping,
    Refuse,
    Reset,
    StopSending,
    Stream,
    parse_frames_untrusted,
)
from p2pos.proto.errors import ErrorCode
from p2pos.proto.events import MessageReceived
from p2pos.proto.handshake.handshake import LocalKeys, sas_commitment
from p2pos.proto.identity.identity import Identity
from p2pos.proto.identity.peer_id import PeerId
from p2pos.proto.session.session import SecureSession
from p2pos.proto.simulation.prng import Prng

VECTORS = Path(__file__).resolve().parents[2] / "spec" / "vectors"
Json = dict[str, Any]


def load() -> Json:
    data: Json = json.loads((VECTORS / "channels.json").read_text(encoding="utf-8"))
    return data


def _generator(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"p2pos_{name}_under_test", VECTORS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- regeneration ----------------------------------------------------------------------


def test_regenerating_gives_the_committed_file(tmp_path: Path) -> None:
    generator = _generator("generate_channels")
    generated: dict[str, str] = generator.build_vectors()
    assert list(generated) == ["channels.json"]
    assert (VECTORS / "channels.json").read_text(encoding="utf-8") == generated["channels.json"]
    assert generator.main(["--dir", str(tmp_path)]) == 0
    assert generator.main(["--check", "--dir", str(tmp_path)]) == 0
    (tmp_path / "channels.json").write_text("{}\n", encoding="utf-8")
    assert generator.main(["--check", "--dir", str(tmp_path)]) == 1


def test_generate_py_covers_channels_json() -> None:
    generated: dict[str, str] = _generator("generate").build_vectors()
    assert generated["channels.json"] == (VECTORS / "channels.json").read_text(encoding="utf-8")


# -- frames, re-parsed independently ---------------------------------------------------


def frame_json(frame: Frame) -> Json:
    """The JSON form of spec/conformance.md §3.6, written here without the generator's helper."""
    names = {
        Ack: "ack",
        Open: "open",
        Accept: "accept",
        Refuse: "refuse",
        Stream: "stream",
        Reset: "reset",
        Message: "message",
        MaxChannels: "max_channels",
        CloseChannel: "close_channel",
        Ping: "ping",
        StopSending: "stop_sending",
    }
    out: Json = {"type": names[type(frame)]}
    for field in dataclasses.fields(frame):
        value = getattr(frame, field.name)
        if isinstance(value, bytes):
            value = value.hex()
        elif isinstance(value, ChannelKind):
            value = value.name.lower()
        elif isinstance(value, tuple):
            value = [list(pair) for pair in value]
        out[field.name] = value
    return out


def test_every_plaintext_parses_to_the_recorded_frames() -> None:
    data = load()
    seen: set[str] = set()
    for record in data["datagrams"]:
        if record["type"] != "DATA":
            assert "plaintext" not in record
            continue
        datagram = bytes.fromhex(record["hex"])
        plaintext = bytes.fromhex(record["plaintext"])
        assert record["length"] == len(datagram) == len(plaintext) + 30  # record.md §2: 14 header + 16 tag
        assert int.from_bytes(datagram[6:14], "big") == record["packet_number"]
        frames = parse_frames_untrusted(plaintext)
        assert [frame_json(f) for f in frames] == record["frames"]
        seen.update(f["type"] for f in record["frames"])
    assert {
        "ack",
        "open",
        "accept",
        "refuse",
        "stream",
        "reset",
        "message",
        "max_channels",
        "close_channel",
        "ping",
        "stop_sending",
    } <= seen


def test_the_transcript_covers_the_brief() -> None:
    data = load()
    kinds = [r["type"] for r in data["datagrams"]]
    assert kinds[:3] == ["INIT", "RESPONSE", "FINISH"] and set(kinds[3:-1]) == {"DATA"} and kinds[-1] == "CLOSE"
    frames = [f for r in data["datagrams"] for f in r.get("frames", [])]
    fins = [f for f in frames if f["type"] == "stream" and f["fin"]]
    assert {f["channel_id"] for f in fins} == {0} and len(fins) == 2
    assert {f["channel_id"] for f in frames if f["type"] == "stream" and not f["fin"]} == {0, 1, 3}
    assert [f["data"] for f in frames if f["type"] == "message"] == [b"first message".hex(), b"second message".hex()]
    assert [f["code"] for f in frames if f["type"] == "refuse"] == [int(ErrorCode.SERVICE_UNKNOWN)]
    events = {(s["actor"], e["type"], e.get("channel_id")) for s in data["steps"] for e in s["events"]}
    for actor in ("alice", "bob"):
        assert (actor, "ConnectionReady", None) in events
        assert (actor, "ChannelClosed", 0) in events and (actor, "ChannelClosed", 2) in events
    assert ("alice", "ChannelRefused", 4) in events and ("bob", "ChannelReset", 1) in events
    assert ("bob", "ChannelMessage", 2) in events
    assert ("alice", "PingAcknowledged", None) in events
    stops = [f for f in frames if f["type"] == "stop_sending"]
    assert [(f["channel_id"], f["code"]) for f in stops] == [(3, 0x4242)]
    assert (3, 0x4242) in {(f["channel_id"], f["code"]) for f in frames if f["type"] == "reset"}
    resets = [e for s in data["steps"] for e in s["events"] if e["type"] == "ChannelReset" and e["channel_id"] == 3]
    assert {(e["code"], e["application_code"]) for e in resets} == {("APPLICATION_CLOSE", 0x4242)} and len(resets) == 2
    for actor in ("alice", "bob"):
        assert (actor, "ConnectionClosed", None) in events
    assert data["final_timers"] == {"alice": None, "bob": None}


# -- replay ---------------------------------------------------------------------------


class _Tapped(SecureSession):
    """Keeps the plaintext of each DATA record handed to the connection."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tapped: list[bytes] = []

    def next_event(self) -> Any:
        event = super().next_event()
        if isinstance(event, MessageReceived):
            self.tapped.append(event.data)
        return event

    def receive_data_record(self, data: bytes, now: float) -> tuple[int, bytes] | None:
        opened = super().receive_data_record(data, now)
        if opened is not None:  # the connection's hot path hands the record over without an event
            self.tapped.append(opened[1])
        return opened


def _fixed(label: str) -> bytes:
    return hashlib.blake2b(b"p2pos test vector: " + label.encode(), digest_size=32).digest()


def _keys(party: Json) -> LocalKeys:
    keys = LocalKeys.create(
        Identity.from_seed(_fixed(party["identity_seed_label"])), _fixed(party["static_private_label"])
    )
    assert keys.static_public.hex() == party["static_public"]
    assert str(keys.identity.peer_id) == party["peer_id"]
    return keys


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
        return _event(value)
    return value


def _event(event: Any) -> Json:
    return {"type": type(event).__name__} | {f.name: _value(getattr(event, f.name)) for f in dataclasses.fields(event)}


def _call(conn: Connection, action: str, args: Json, now: float) -> Any:
    cid = args.get("channel_id", 0)
    match action:
        case "open_channel":
            kind = {"stream": ChannelKind.STREAM, "message": ChannelKind.MESSAGE}[args["kind"]]
            return conn.open_channel(args["service"], now, kind=kind)
        case "accept_channel":
            return conn.accept_channel(cid, now)
        case "refuse_channel":
            return conn.refuse_channel(cid, now, ErrorCode[args["code"]], args["reason"])
        case "send":
            return conn.send(cid, bytes.fromhex(args["data"]), now)
        case "send_message":
            return conn.send_message(cid, bytes.fromhex(args["data"]), now)
        case "finish":
            return conn.finish(cid, now)
        case "close_channel":
            return conn.close_channel(cid, now)
        case "reset_channel":
            return conn.reset_channel(cid, now, ErrorCode[args["code"]])
        case "stop_sending":
            code = args["code"]
            return conn.stop_sending(cid, now, ErrorCode[code] if isinstance(code, str) else int(code))
        case "read":
            return conn.read(cid).hex()
        case "ping":
            return conn.ping(now)
        case "close":
            return conn.close(now)
    raise AssertionError(f"unknown action {action}")


def test_alice_sas_nonce_is_her_first_random_draw_and_the_init_commits_to_it() -> None:
    data = load()
    nonce = bytes.fromhex(data["alice"]["sas_nonce"])
    assert nonce == Prng(data["alice"]["random_prng_seed"])(32)
    assert "sas_nonce" not in data["bob"]
    init = data["datagrams"][0]
    assert init["type"] == "INIT" and sas_commitment(nonce).hex() in init["hex"]


def test_replay_gives_identical_datagrams_and_events() -> None:
    data = load()
    assert data["config"]["channel_config"] == {"pmtu_probing": False, "keepalive_interval": None}
    config = ChannelConfig(pmtu_probing=False, keepalive_interval=None)
    datagrams = data["datagrams"]
    conns: dict[str, Connection] = {}
    sessions: dict[str, _Tapped] = {}
    emitted: list[bytes] = []
    last_time = 0.0
    for step in data["steps"]:
        actor, now, action = step["actor"], step["time"], step["action"]
        assert now >= last_time
        last_time = now
        party = data[actor]
        random = Prng(party["random_prng_seed"])
        ephemeral = Prng(party["ephemeral_prng_seed"])(32)
        assert ephemeral.hex() == party["ephemeral_private"]
        result: Any = None
        if action == "initiate":
            session = _Tapped.initiate(
                _keys(party), local_index=party["local_index"], now=now, random=random, ephemeral=ephemeral
            )
            assert isinstance(session, _Tapped)
            sessions[actor], conns[actor] = session, Connection(session, now, config)
        elif action == "receive":
            record = datagrams[step["datagram"]]
            assert record["to"] == actor and record["received_at"] == now
            assert record["sent_at"] + data["config"]["one_way_delay"] == now
            datagram = bytes.fromhex(record["hex"])
            if actor not in conns:
                session = _Tapped.respond_untrusted(
                    _keys(party),
                    datagram,
                    local_index=party["local_index"],
                    now=now,
                    random=random,
                    ephemeral=ephemeral,
                )
                assert isinstance(session, _Tapped)
                sessions[actor], conns[actor] = session, Connection(session, now, config)
            else:
                before = len(sessions[actor].tapped)
                conns[actor].receive_data(datagram, now)
                tapped = sessions[actor].tapped[before:]
                expected = [bytes.fromhex(record["plaintext"])] if record["type"] == "DATA" else []
                assert tapped == expected
        elif action == "handle_timer":
            assert conns[actor].get_timer() == now
            conns[actor].handle_timer(now)
        else:
            result = _call(conns[actor], action, step["args"], now)
        assert result == step.get("result")
        sent = conns[actor].data_to_send(now)
        assert [datagrams[i]["from"] for i in step["sends"]] == [actor] * len(sent)
        assert [d.hex() for d in sent] == [datagrams[i]["hex"] for i in step["sends"]]
        assert step["sends"] == list(range(len(emitted), len(emitted) + len(sent)))
        emitted.extend(sent)
        events = []
        while (event := conns[actor].next_event()) is not None:
            events.append(_event(event))
        assert events == step["events"]
    assert len(emitted) == len(datagrams)
    assert {actor: conn.get_timer() for actor, conn in conns.items()} == data["final_timers"]
