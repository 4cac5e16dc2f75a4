"""The committed spec vectors (spec/vectors/*.json) are current and hold through the public API.

Two kinds of checks:

* regeneration: ``spec/vectors/generate.py`` run in-process produces exactly the
  committed files, so the vectors never drift from the implementation;
* consumption: each file is read back and checked through the public API, and
  where possible against an independent implementation (the standard library's
  base32 and BLAKE2b, ``cryptography``'s Ed25519 and ChaCha20-Poly1305, and the
  ``noiseprotocol`` package for the Noise handshakes).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import itertools
import json
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from noise.connection import Keypair, NoiseConnection

from p2pos.proto import (
    ErrorCode,
    Event,
    HandshakeCompleted,
    Identity,
    InvalidPeerId,
    LocalKeys,
    MessageReceived,
    PeerId,
    ProtocolError,
    SecureSession,
    SessionClosed,
    SessionConfig,
    SignedRecord,
    StreamFramer,
    frame,
    short_authentication_string,
)
from p2pos.proto.handshake.payload import HandshakePayload
from p2pos.proto.identity.identity import verify
from p2pos.proto.session.record import RecordReceiver
from p2pos.proto.session.replay import ReplayWindow

SPEC_VECTORS = Path(__file__).resolve().parents[2] / "spec" / "vectors"
VECTOR_FILES = sorted(p.name for p in SPEC_VECTORS.glob("*.json"))
Json = dict[str, Any]
#: The packet types of spec/README.md §3, written out here, not read from ``PacketType``.
SPEC_PACKET_TYPES = {
    "INIT": 0x04,
    "RESPONSE": 0x05,
    "FINISH": 0x06,
    "DATA": 0x07,
    "KEEPALIVE": 0x08,
    "CLOSE": 0x09,
    "CONFIRM": 0x0A,
}


def load(name: str) -> Json:
    data: Json = json.loads((SPEC_VECTORS / name).read_text(encoding="utf-8"))
    return data


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("p2pos_spec_vector_generator", SPEC_VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- (a) the committed files are what the generator writes ---------------------------


def test_regenerating_gives_the_committed_files() -> None:
    generated: dict[str, str] = _generator().build_vectors()
    assert sorted(generated) == VECTOR_FILES
    for name, text in generated.items():
        assert (SPEC_VECTORS / name).read_text(encoding="utf-8") == text, f"{name} is stale: run generate.py"


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    generator = _generator()
    assert generator.main(["--dir", str(tmp_path)]) == 0
    assert generator.main(["--check", "--dir", str(tmp_path)]) == 0
    (tmp_path / "sas.json").write_text("{}\n", encoding="utf-8")
    assert generator.main(["--check", "--dir", str(tmp_path)]) == 1


@pytest.mark.parametrize("name", VECTOR_FILES)
def test_every_file_describes_itself_and_cites_the_spec(name: str) -> None:
    data = load(name)
    assert data["description"]
    cited = data["spec"] if isinstance(data["spec"], list) else [data["spec"]]
    for citation in cited:
        document = citation.split(" ")[0]
        assert (SPEC_VECTORS.parent.parent / document).is_file(), citation
        assert "§" in citation


# -- identity -------------------------------------------------------------------------


def _independent_peer_id(public_key: bytes) -> str:
    body = b"\x01" + public_key
    check = hashlib.blake2b(body, digest_size=4, person=b"p2pos-peer-id").digest()
    return base64.b32encode(body + check).decode().lower().rstrip("=")


def test_peer_ids() -> None:
    data = load("peer_id.json")
    for case in data["valid"]:
        public = h(case["public_key"])
        if case["seed"] is not None:
            assert Identity.from_seed(h(case["seed"]["hex"])).peer_id.public_key == public
        assert _independent_peer_id(public) == case["peer_id"]
        assert str(PeerId(public)) == case["peer_id"]
        assert PeerId.parse(case["peer_id"]).public_key == public
    for case in data["equivalent_forms"]:
        assert str(PeerId.parse(case["input"])) == case["peer_id"]
    assert len(data["invalid"]) >= 8
    for case in data["invalid"]:
        with pytest.raises(InvalidPeerId) as info:
            PeerId.parse(case["input"])
        assert info.value.code is ErrorCode[case["error"]]
        assert str(info.value) == case["message"]


def test_domain_separated_signatures() -> None:
    data = load("signatures.json")
    seeds = {c["public_key"]: h(c["seed"]["hex"]) for c in load("peer_id.json")["valid"] if c["seed"]}
    for case in data["signatures"]:
        domain, message, signature = h(case["domain"]), h(case["message"]), h(case["signature"])
        expected = b"p2pos-sig-v1\x00" + bytes([len(domain)]) + domain + message
        assert h(case["signed_bytes"]) == expected
        Ed25519PublicKey.from_public_bytes(h(case["public_key"])).verify(signature, expected)
        assert verify(PeerId(h(case["public_key"])), domain, message, signature)
        assert Identity.from_seed(seeds[case["public_key"]]).sign(domain, message) == signature
    outcomes = []
    for case in data["cross_domain"]:
        domain, message, signature = h(case["domain"]), h(case["message"]), h(case["signature"])
        assert verify(PeerId(h(case["public_key"])), domain, message, signature) is case["valid"]
        outcomes.append(case["valid"])
    assert outcomes == [True, False, False]


def test_signed_records() -> None:
    data = load("signatures.json")["signed_records"]
    for case in data["valid"]:
        encoding = h(case["encoding"])
        record = SignedRecord.decode_untrusted(encoding, domain=h(case["domain"]))
        assert record.signer == PeerId(h(case["public_key"]))
        assert (record.payload, record.signature) == (h(case["payload"]), h(case["signature"]))
        assert record.encode() == encoding
        signed = b"p2pos-sig-v1\x00" + bytes([len(record.domain)]) + record.domain + record.payload
        Ed25519PublicKey.from_public_bytes(record.signer.public_key).verify(record.signature, signed)
    for case in data["invalid"]:
        domain = h(case["expected_domain"]) if case["expected_domain"] is not None else None
        with pytest.raises(ProtocolError) as info:
            SignedRecord.decode_untrusted(h(case["encoding"]), domain=domain)
        assert info.value.code is ErrorCode[case["error"]], case["note"]


def test_key_files() -> None:
    data = load("key_file.json")
    for case in data["valid"]:
        identity = Identity.from_key_file(case["file"].encode("ascii"))
        assert str(identity.peer_id) == case["peer_id"]
        assert identity.seed == h(case["seed"]["hex"])
    assert Identity.from_seed(h(data["valid"][0]["seed"]["hex"])).to_key_file() == data["valid"][0]["file"].encode()
    for case in data["invalid"]:
        with pytest.raises(ProtocolError) as info:
            Identity.from_key_file(case["file"].encode("utf-8"))
        assert info.value.code is ErrorCode[case["error"]], case["note"]


# -- handshake payloads and SAS --------------------------------------------------------


def _payload_view(payload: HandshakePayload) -> Json:
    return {
        "versions": list(payload.versions),
        "identity_key": payload.identity_key.hex() if payload.identity_key is not None else None,
        "identity_sig": payload.identity_sig.hex() if payload.identity_sig is not None else None,
        "capabilities": {f"0x{k:04x}": v.hex() for k, v in sorted(payload.capabilities.items())},
        "session_index": payload.session_index,
        "sas_commitment": payload.sas_commitment.hex() if payload.sas_commitment is not None else None,
        "sas_nonce": payload.sas_nonce.hex() if payload.sas_nonce is not None else None,
        "padding": payload.padding,
    }


def _fields(payload: bytes) -> dict[int, bytes]:
    """An independent parse of a payload's top-level 'u16 type | u16 length | value' fields."""
    fields: dict[int, bytes] = {}
    pos = 0
    while pos < len(payload):
        ftype, length = int.from_bytes(payload[pos : pos + 2], "big"), int.from_bytes(payload[pos + 2 : pos + 4], "big")
        assert ftype not in fields and pos + 4 + length <= len(payload)
        fields[ftype] = payload[pos + 4 : pos + 4 + length]
        pos += 4 + length
    return fields


def _sas(hash_after_message_2: bytes, nonce: bytes) -> str:
    """The SAS of spec/handshake.md §7, written with hashlib only."""
    digest = hashlib.blake2b(hash_after_message_2 + nonce, digest_size=8, key=b"p2pos-sas-v1").digest()
    digits = f"{int.from_bytes(digest, 'big') % 10**12:012d}"
    return f"{digits[:4]} {digits[4:8]} {digits[8:]}"


def _commitment(nonce: bytes) -> bytes:
    return hashlib.blake2b(nonce, digest_size=32, key=b"p2pos-sas-commit").digest()


def test_handshake_payloads() -> None:
    data = load("handshake_payload.json")
    for case in data["encodings"]:
        decoded = HandshakePayload.decode_untrusted(h(case["encoding"]))
        assert _payload_view(decoded) == case["fields"]
        assert decoded.encode() == h(case["encoding"])
    errors = set()
    for case in data["decoding"]:
        if case["error"] is None:
            assert _payload_view(HandshakePayload.decode_untrusted(h(case["encoding"]))) == case["fields"]
        else:
            with pytest.raises(ProtocolError) as info:
                HandshakePayload.decode_untrusted(h(case["encoding"]))
            assert info.value.code is ErrorCode[case["error"]], case["note"]
            errors.add(case["error"])
    assert errors == {"MALFORMED_MESSAGE", "UNKNOWN_CRITICAL_FIELD"}
    for case in data["encodings"] + [c for c in data["decoding"] if c["error"] is None]:
        fields = _fields(h(case["encoding"]))
        view = case["fields"]
        assert view["session_index"] == (int.from_bytes(fields[5], "big") if 5 in fields else None)
        assert view["sas_commitment"] == (fields[6].hex() if 6 in fields else None)
        assert view["sas_nonce"] == (fields[7].hex() if 7 in fields else None)
        assert view["padding"] == len(fields.get(8, b""))
    padded = [c for c in data["encodings"] if c["fields"]["padding"]]
    assert padded and all(set(h(c["encoding"])[-c["fields"]["padding"] :]) == {0} for c in padded)


def test_short_authentication_strings() -> None:
    cases = load("sas.json")["cases"]
    for case in cases:
        h2, nonce = h(case["handshake_hash_after_message_2"]), h(case["sas_nonce"])
        assert len(h2) == 64 and len(nonce) == 32
        assert _commitment(nonce).hex() == case["sas_commitment"]
        digest = hashlib.blake2b(h2 + nonce, digest_size=8, key=b"p2pos-sas-v1").digest()
        assert digest.hex() == case["digest"]
        assert int.from_bytes(digest, "big") % 10**12 == case["number"]
        assert case["sas"] == _sas(h2, nonce)
        assert short_authentication_string(h2, nonce) == case["sas"]
    # The nonce and the hash both matter: cases sharing one of them show different codes.
    assert len({c["sas"] for c in cases}) == len(cases)


# -- full handshakes ---------------------------------------------------------------------


def _no_random(n: int) -> bytes:
    raise AssertionError("the vectors inject every key: nothing may draw randomness")


def _nonce_once(nonce: bytes) -> Any:
    """A random source that yields the vector's SAS nonce once (the initiator's only draw)."""
    left = [nonce]

    def random(n: int) -> bytes:
        assert n == len(nonce) and left, "the initiator draws only its 32-byte SAS nonce"
        return left.pop()

    return random


def _keys(party: Json) -> LocalKeys:
    keys = LocalKeys.create(Identity.from_seed(h(party["identity_seed"]["hex"])), h(party["static_private"]["hex"]))
    assert keys.static_public.hex() == party["static_public"]
    assert keys.binding_signature.hex() == party["binding_signature"]
    assert str(keys.identity.peer_id) == party["peer_id"]
    return keys


def _event_view(event: Event) -> Json:
    if isinstance(event, HandshakeCompleted):
        return {
            "type": "HandshakeCompleted",
            "session_id": event.session_id,
            "peer_id": str(event.peer_id),
            "sas": event.sas,
            "version": event.version,
            "pattern": event.pattern,
            "handshake_hash": event.handshake_hash.hex(),
            "remote_static": event.remote_static.hex(),
            "capabilities": {f"0x{k:04x}": v.hex() for k, v in sorted(event.capabilities.items())},
        }
    if isinstance(event, MessageReceived):
        return {"type": "MessageReceived", "session_id": event.session_id, "data": event.data.hex()}
    assert isinstance(event, SessionClosed)
    return {
        "type": "SessionClosed",
        "session_id": event.session_id,
        "code": event.code.name,
        "reason": event.reason,
        "by_peer": event.by_peer,
    }


@pytest.mark.parametrize("name", ["handshake_xx.json", "handshake_ik.json"])
def test_handshake_replays_byte_for_byte(name: str) -> None:
    data = load(name)
    ini, resp = data["initiator"], data["responder"]
    config = SessionConfig(rekey_after_messages=data["config"]["rekey_after_messages"])
    sessions: dict[str, SecureSession] = {}
    for step in data["steps"]:
        actor, action, now = step["actor"], step["action"], step["now"]
        if action == "initiate":
            sessions[actor] = SecureSession.initiate(
                _keys(ini),
                local_index=ini["local_index"],
                now=now,
                config=config,
                expected_peer=PeerId.parse(ini["expected_peer"]) if ini["expected_peer"] else None,
                remote_static=h(ini["remote_static"]) if ini["remote_static"] else None,
                random=_nonce_once(h(data["sas_nonce"])),
                ephemeral=h(ini["ephemeral_private"]["hex"]),
            )
        elif action == "respond":
            sessions[actor] = SecureSession.respond_untrusted(
                _keys(resp),
                h(step["packet"]),
                local_index=resp["local_index"],
                now=now,
                config=config,
                random=_no_random,
                ephemeral=h(resp["ephemeral_private"]["hex"]),
            )
        elif action == "receive":
            sessions[actor].receive_data(h(step["packet"]), now)
        elif action == "timer":
            assert sessions[actor].get_timer() == now
            sessions[actor].handle_timer(now)
        elif action == "send":
            sessions[actor].send(h(step["data"]), now)
        elif action == "keepalive":
            sessions[actor].send_keepalive(now)
        else:
            assert action == "close"
            sessions[actor].close(now, ErrorCode[step["code"]], step["reason"])
        session = sessions[actor]
        assert [d.hex() for d in session.data_to_send(now)] == step["sends"], step
        events = []
        while (event := session.next_event()) is not None:
            events.append(_event_view(event))
        assert events == step["events"], step
    completed = [e for s in data["steps"] for e in s["events"] if e["type"] == "HandshakeCompleted"]
    assert len(completed) == 2
    assert {e["sas"] for e in completed} == {data["sas"]} == {sessions["initiator"].sas}
    assert {e["handshake_hash"] for e in completed} == {data["handshake_hash"]}
    assert {e["peer_id"] for e in completed} == {ini["peer_id"], resp["peer_id"]}
    assert all(not s.drops for s in sessions.values())


def _noise_party(protocol: str, prologue: bytes, initiator: bool, party: Json, remote_static: bytes | None) -> Any:
    conn = NoiseConnection.from_name(protocol.encode())
    conn.set_prologue(prologue)
    if initiator:
        conn.set_as_initiator()
    else:
        conn.set_as_responder()
    conn.set_keypair_from_private_bytes(Keypair.STATIC, h(party["static_private"]["hex"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the library warns that a fixed ephemeral is for testing only
        conn.set_keypair_from_private_bytes(Keypair.EPHEMERAL, h(party["ephemeral_private"]["hex"]))
        if remote_static is not None:
            conn.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, remote_static)
        conn.start_handshake()
    return conn


@pytest.mark.parametrize("name", ["handshake_xx.json", "handshake_ik.json"])
def test_handshake_matches_an_independent_noise_implementation(name: str) -> None:
    data = load(name)
    prologue = h(data["prologue"])
    assert prologue == b"p2pos-handshake-v1"
    remote = h(data["initiator"]["remote_static"]) if data["initiator"]["remote_static"] else None
    parties = {
        "initiator": _noise_party(data["protocol_name"], prologue, True, data["initiator"], remote),
        "responder": _noise_party(data["protocol_name"], prologue, False, data["responder"], None),
    }
    handshake = [p for p in data["packets"] if "noise_message" in p]
    assert [p["type"] for p in handshake] == (
        ["INIT", "RESPONSE", "FINISH"] if "_XX_" in data["protocol_name"] else ["INIT", "RESPONSE"]
    )
    for packet in handshake:
        writer = parties[packet["from"]]
        reader = parties["responder" if packet["from"] == "initiator" else "initiator"]
        message = bytes(writer.write_message(h(packet["payload"])))
        assert message.hex() == packet["noise_message"]
        assert bytes(reader.read_message(message)).hex() == packet["payload"]
    for conn in parties.values():
        assert bytes(conn.get_handshake_hash()).hex() == data["handshake_hash"]
    keys = data["transport_keys"]
    assert bytes(parties["initiator"].noise_protocol.cipher_state_encrypt.k).hex() == keys["initiator_to_responder"][0]
    assert bytes(parties["initiator"].noise_protocol.cipher_state_decrypt.k).hex() == keys["responder_to_initiator"][0]


def _hash_after_message_2(data: Json) -> bytes:
    """h right after Noise message 2, from the independent implementation."""
    remote = h(data["initiator"]["remote_static"]) if data["initiator"]["remote_static"] else None
    prologue = h(data["prologue"])
    ini = _noise_party(data["protocol_name"], prologue, True, data["initiator"], remote)
    resp = _noise_party(data["protocol_name"], prologue, False, data["responder"], None)
    init, response = [p for p in data["packets"] if "noise_message" in p][:2]
    resp.read_message(ini.write_message(h(init["payload"])))
    ini.read_message(resp.write_message(h(response["payload"])))
    if ini.handshake_finished:  # IK: message 2 is the last one
        value: bytes = ini.get_handshake_hash()
    else:
        value = ini.noise_protocol.symmetric_state.get_handshake_hash()
    return bytes(value)


@pytest.mark.parametrize("name", ["handshake_xx.json", "handshake_ik.json"])
def test_handshake_sas_commitment_and_nonce(name: str) -> None:
    """The INIT commits to the nonce; FINISH (XX) or CONFIRM (IK) reveals it; the SAS is over h2 and it."""
    data = load(name)
    xx = "_XX_" in data["protocol_name"]
    nonce = h(data["sas_nonce"])
    assert len(nonce) == 32
    init = next(p for p in data["packets"] if p.get("type") == "INIT")
    commitment = _fields(h(init["payload"]))[0x0006]
    assert commitment == _commitment(nonce) == h(data["sas_commitment"])
    h2 = _hash_after_message_2(data)
    assert h2.hex() == data["handshake_hash_after_message_2"]
    assert (h2.hex() == data["handshake_hash"]) is (not xx)  # XX: message 3 is not in the SAS
    assert _sas(h2, nonce) == data["sas"]
    if xx:
        assert _sas(h(data["handshake_hash"]), nonce) != data["sas"]
        finish = next(p for p in data["packets"] if p.get("type") == "FINISH")
        assert _fields(h(finish["payload"]))[0x0007] == nonce
        assert all(
            0x0007 not in _fields(h(p["payload"]))
            for p in data["packets"]
            if p.get("type") != "FINISH" and "payload" in p
        )
    else:
        (confirm,) = [p for p in data["packets"] if p.get("type") == "CONFIRM"]
        record = h(confirm["hex"])
        assert record[0] == SPEC_PACKET_TYPES["CONFIRM"] and int.from_bytes(record[6:14], "big") == 0
        key = h(data["transport_keys"]["initiator_to_responder"][0])
        assert _open_record(key, record) == nonce
        # The responder reports nothing until the CONFIRM record arrives.
        confirm_step = next(s for s in data["steps"] if s.get("packet") == confirm["hex"])
        before = data["steps"][: data["steps"].index(confirm_step)]
        assert not [e for s in before if s["actor"] == "responder" for e in s["events"]]
        assert [e["type"] for e in confirm_step["events"]] == ["HandshakeCompleted"]


@pytest.mark.parametrize("name", ["handshake_xx.json", "handshake_ik.json"])
def test_handshake_init_padding_and_session_indices(name: str) -> None:
    data = load(name)
    ini, resp = data["initiator"]["local_index"], data["responder"]["local_index"]
    packets = {p["type"]: p for p in data["packets"] if "noise_message" in p}
    init, response = h(packets["INIT"]["hex"]), h(packets["RESPONSE"]["hex"])
    assert len(init) >= 320 and len(init) == packets["INIT"]["length"]
    init_fields = _fields(h(packets["INIT"]["payload"]))
    assert set(init_fields[0x0008]) == {0} and len(init_fields[0x0008]) == packets["INIT"]["payload_fields"]["padding"]
    # Without the padding field the INIT would be shorter than the minimum: it pads exactly to 320.
    assert len(init) == 320 and len(init) - 4 - len(init_fields[0x0008]) < 320
    # The payload index authenticates the header's: INIT bytes 2..5, RESPONSE bytes 1..4.
    assert int.from_bytes(init[2:6], "big") == int.from_bytes(init_fields[0x0005], "big") == ini
    response_fields = _fields(h(packets["RESPONSE"]["payload"]))
    assert int.from_bytes(response[1:5], "big") == int.from_bytes(response_fields[0x0005], "big") == resp
    assert int.from_bytes(response[5:9], "big") == ini
    if "FINISH" in packets:
        assert 0x0005 not in _fields(h(packets["FINISH"]["payload"]))
    # The responder stays within three times the bytes it received before validation.
    received = sum(len(init) for s in data["steps"] if s["actor"] == "responder" and s.get("packet") == init.hex())
    handshake_sent = [d for s in data["steps"] if s["actor"] == "responder" for d in s["sends"] if d[:2] == "02"]
    assert sum(len(h(d)) for d in handshake_sent) <= 3 * received


def _rekey(key: bytes) -> bytes:
    """Noise REKEY, written independently with cryptography's AEAD."""
    return ChaCha20Poly1305(key).encrypt(b"\x00" * 4 + b"\xff" * 8, bytes(32), b"")[:32]


def _open_record(key: bytes, record: bytes) -> bytes:
    counter = int.from_bytes(record[6:14], "big")
    return ChaCha20Poly1305(key).decrypt(b"\x00" * 4 + counter.to_bytes(8, "little"), record[14:], record[:14])


@pytest.mark.parametrize("name", ["handshake_xx.json", "handshake_ik.json"])
def test_handshake_records_open_independently(name: str) -> None:
    data = load(name)
    keys = data["transport_keys"]
    for direction in ("initiator_to_responder", "responder_to_initiator"):
        assert keys[direction][1] == _rekey(h(keys[direction][0])).hex()
    records = [p for p in data["packets"] if "epoch" in p]
    ik = "_IK_" in data["protocol_name"]
    assert {p["type"] for p in records} == {"DATA", "KEEPALIVE", "CLOSE"} | ({"CONFIRM"} if ik else set())
    assert {p["epoch"] for p in records} == {0, 1}
    for packet in records:
        record = h(packet["hex"])
        direction = "initiator_to_responder" if packet["from"] == "initiator" else "responder_to_initiator"
        receiver = data["responder" if packet["from"] == "initiator" else "initiator"]["local_index"]
        assert int.from_bytes(record[1:5], "big") == receiver
        assert record[5] == packet["epoch"] and int.from_bytes(record[6:14], "big") == packet["counter"]
        assert _open_record(h(keys[direction][packet["epoch"]]), record).hex() == packet["plaintext"]
        assert len(record) == 14 + len(h(packet["plaintext"])) + 16


# -- record layer, framing, replay window ---------------------------------------------------


def test_record_layer_rekey_chain_and_records() -> None:
    data = load("record_layer.json")
    chain = [h(k) for k in data["rekey_chain"]]
    for current, following in itertools.pairwise(chain):
        assert _rekey(current) == following
    for case in data["records"]:
        record = h(case["hex"])
        assert case["epoch"] == case["counter"] // 2
        assert case["type"] in {"DATA", "KEEPALIVE", "CLOSE"}
        assert record[0] == SPEC_PACKET_TYPES[case["type"]]
        assert _open_record(chain[case["epoch"]], record).hex() == case["plaintext"]
        assert case["nonce"] == (b"\x00" * 4 + case["counter"].to_bytes(8, "little")).hex()


def test_record_layer_receive_sequence() -> None:
    data = load("record_layer.json")
    receiver = RecordReceiver(h(data["rekey_chain"][0]), previous_key_grace=data["previous_key_grace"])
    outcomes = []
    for step in data["receive_sequence"]:
        opened = receiver.open_untrusted(h(step["record"]), step["now"])
        assert (opened is not None) is step["accepted"], step["note"]
        assert (opened[1].hex() if opened is not None else None) == step["plaintext"], step["note"]
        assert receiver.epoch == step["receiver_epoch_after"], step["note"]
        outcomes.append(step["accepted"])
    assert True in outcomes and False in outcomes


def test_framing() -> None:
    data = load("framing.json")
    for case in data["frames"]:
        if "datagram" in case:
            assert frame(h(case["datagram"])).hex() == case["stream"]
        else:
            encoded = frame(b"\xab" * case["datagram_length"])
            assert encoded[:8].hex() == case["stream_prefix"]
            assert len(encoded) == case["datagram_length"] + 2
    for case in data["decoding"]:
        framer = StreamFramer(case["max_frame"])
        frames = []
        for chunk in case["chunks"]:
            framer.receive_data(h(chunk))
            while (f := framer.next_frame()) is not None:
                frames.append(f.hex())
        if case["eof"]:
            framer.receive_eof()
            while (f := framer.next_frame()) is not None:
                frames.append(f.hex())
        assert frames == case["frames"], case["note"]
        assert (framer.error.code.name if framer.error is not None else None) == case["error"], case["note"]


def test_replay_window() -> None:
    data = load("replay_window.json")
    for case in data["sequences"]:
        window = ReplayWindow()
        accepted = []
        for counter in case["counters"]:
            fresh = window.check(counter)
            if fresh:
                window.update(counter)
            accepted.append(fresh)
        assert accepted == case["accepted"], case["note"]
        assert window.top == case["top_after"]


def test_signature_independent_rejects_tampering() -> None:
    """A flipped bit in a vector signature fails both verifiers (the vectors are not vacuous)."""
    case = load("signatures.json")["signatures"][0]
    signature = bytearray(h(case["signature"]))
    signature[0] ^= 1
    with pytest.raises(InvalidSignature):
        Ed25519PublicKey.from_public_bytes(h(case["public_key"])).verify(bytes(signature), h(case["signed_bytes"]))
    assert not verify(PeerId(h(case["public_key"])), h(case["domain"]), h(case["message"]), bytes(signature))


def _vector_packets() -> list[tuple[str, str, bytes]]:
    """(file, type name, bytes) of every packet in the vector files, from the files alone."""
    found = []
    for name in ("handshake_xx.json", "handshake_ik.json"):
        found += [(name, p["type"], h(p["hex"])) for p in load(name)["packets"]]
    found += [("record_layer.json", r["type"], h(r["hex"])) for r in load("record_layer.json")["records"]]
    found += [("channels.json", d["type"], h(d["hex"])) for d in load("channels.json")["datagrams"]]
    return found


def test_every_vector_packet_starts_with_its_type_inside_4_to_15() -> None:
    # spec/session.md §4.1: p2pos owns first bytes 4-15 only (RFC 7983, RFC 9443).
    packets = _vector_packets()
    assert {kind for _, kind, _ in packets} == set(SPEC_PACKET_TYPES)
    for name, kind, packet in packets:
        assert packet[0] == SPEC_PACKET_TYPES[kind], (name, kind, packet[:1].hex())
        assert 4 <= packet[0] <= 15, (name, kind)
    records = load("record_layer.json")["receive_sequence"]
    assert records and all(4 <= h(step["record"])[0] <= 15 for step in records)
