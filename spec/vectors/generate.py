"""Write the p2pos v1 test vectors (spec/vectors/*.json) from the implementation.

Run from the repository root::

    /tmp/v/bin/python spec/vectors/generate.py           # (re)write every file
    /tmp/v/bin/python spec/vectors/generate.py --check   # exit 1 if a file differs

Every key, ephemeral, session index and clock value is fixed, so the output is
the same on every run.  Fixed keys are derived from a readable label with
``BLAKE2b-256("p2pos test vector: " || label)``; each file lists both the label
and the resulting bytes, so an implementation never needs the derivation.

``build_vectors()`` returns ``{file name: JSON text}``; tests/spec/test_spec_vectors.py
compares it with the committed files and consumes the files independently.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from p2pos.proto.errors import ErrorCode, ProtocolError
from p2pos.proto.events import Event, HandshakeCompleted, MessageReceived, SessionClosed
from p2pos.proto.handshake.handshake import (
    MIN_INIT_SIZE,
    PROLOGUE,
    LocalKeys,
    padded,
    sas_commitment,
    short_authentication_string,
    with_identity,
)
from p2pos.proto.handshake.noise import HandshakeState, Pattern, protocol_name
from p2pos.proto.handshake.payload import CAP_MAX_RECORD_PLAINTEXT, HandshakePayload, encode_fields
from p2pos.proto.identity import crypto
from p2pos.proto.identity.identity import (
    DOMAIN_NOISE_STATIC,
    Identity,
    SignedRecord,
    signed_message,
    verify,
)
from p2pos.proto.identity.peer_id import InvalidPeerId, PeerId, b32encode
from p2pos.proto.session.framing import StreamFramer, frame
from p2pos.proto.session.record import RecordReceiver, RecordSender
from p2pos.proto.session.replay import ReplayWindow
from p2pos.proto.session.session import SecureSession, SessionConfig
from p2pos.proto.session.wire import RECORD_HEADER, PacketType, parse_handshake_untrusted

VECTORS_DIR = Path(__file__).resolve().parent
Json = dict[str, Any]


# -- fixed inputs ----------------------------------------------------------------


def fixed(label: str) -> bytes:
    """32 fixed bytes named by ``label``: BLAKE2b-256("p2pos test vector: " || label)."""
    return hashlib.blake2b(b"p2pos test vector: " + label.encode(), digest_size=32).digest()


def deterministic_random(label: str) -> Callable[[int], bytes]:
    """A RandomSource with a fixed stream (BLAKE2b-512 of label and a counter)."""
    state = {"n": 0}

    def random(n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.blake2b(f"{label}/{state['n']}".encode()).digest()
            state["n"] += 1
        return out[:n]

    return random


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise RuntimeError(f"vector generation: {what}")


def _keyed(label: str) -> Json:
    return {"label": label, "hex": fixed(label).hex()}


# -- identity: peer ids, signatures, signed records, key files ----------------------


def peer_id_vectors() -> Json:
    valid: list[Json] = []
    for label in ("alice identity seed", "bob identity seed", "carol identity seed"):
        identity = Identity.from_seed(fixed(label))
        valid.append(
            {
                "seed": _keyed(label),
                "public_key": identity.peer_id.public_key.hex(),
                "peer_id": str(identity.peer_id),
            }
        )
    valid.append({"seed": None, "public_key": bytes(32).hex(), "peer_id": str(PeerId(bytes(32)))})
    text = valid[0]["peer_id"]
    spaced = " ".join(text[i : i + 4] for i in range(0, len(text), 4))
    dashed = "-".join(text[i : i + 12] for i in range(0, len(text), 12))
    equivalent: list[Json] = [
        {"input": text.upper(), "peer_id": text, "note": "upper case"},
        {"input": spaced, "peer_id": text, "note": "groups of four separated by spaces"},
        {"input": dashed, "peer_id": text, "note": "groups of twelve separated by dashes"},
        {"input": f"  {text}\t", "peer_id": text, "note": "surrounding white space"},
    ]
    # A peer id with version byte 0x02 (its checksum computed as for version 1).
    body2 = b"\x02" + bytes.fromhex(valid[0]["public_key"])
    version2 = b32encode(body2 + hashlib.blake2b(body2, digest_size=4, person=b"p2pos-peer-id").digest())
    typo = text[:20] + ("b" if text[20] != "b" else "c") + text[21:]
    noncanonical = text[:-1] + _ALPHABET_NEXT[text[-1]]
    invalid_inputs = [
        ("empty", ""),
        ("one character short", text[:-1]),
        ("one character too many", text + "a"),
        ("digit 1 is not in the alphabet", "1" + text[1:]),
        ("digit 0 is not in the alphabet", text[:10] + "0" + text[11:]),
        ("non-canonical trailing bits", noncanonical),
        ("unknown version byte", version2),
        ("one character changed (typo)", typo),
        ("two characters swapped", text[:30] + text[31] + text[30] + text[32:]),
    ]
    invalid = []
    for note, candidate in invalid_inputs:
        try:
            PeerId.parse(candidate)
        except InvalidPeerId as exc:
            invalid.append({"input": candidate, "note": note, "error": exc.code.name, "message": str(exc)})
        else:
            raise RuntimeError(f"invalid peer id {note!r} parsed")
    for case in valid:
        _require(str(PeerId.parse(case["peer_id"])) == case["peer_id"], "peer id round trip")
    for case in equivalent:
        _require(str(PeerId.parse(case["input"])) == case["peer_id"], "equivalent form")
    return {
        "description": (
            "Textual peer ids: base32 (RFC 4648 alphabet, lower case, no padding) of "
            "0x01 || Ed25519 public key || BLAKE2b-32(person='p2pos-peer-id', 0x01 || public key). "
            "'valid': seed -> public key -> text. 'equivalent_forms': inputs that parse to the same id. "
            "'invalid': inputs that MUST be rejected (error is the ErrorCode name; message is informative)."
        ),
        "spec": "spec/identity.md §2",
        "valid": valid,
        "equivalent_forms": equivalent,
        "invalid": invalid,
    }


# The next character in the alphabet: changes only the low bits of the last character.
_ALPHABET_NEXT = {c: "abcdefghijklmnopqrstuvwxyz234567"["abcdefghijklmnopqrstuvwxyz234567".index(c) + 1] for c in "aq"}


def signature_vectors() -> Json:
    alice = Identity.from_seed(fixed("alice identity seed"))
    bob = Identity.from_seed(fixed("bob identity seed"))
    static_pub = crypto.x25519_public(fixed("alice noise static key"))
    cases = [
        (alice, DOMAIN_NOISE_STATIC, static_pub, "the identity binding of alice's Noise static public key"),
        (alice, b"p2pos/example", b"", "empty message"),
        (bob, b"p2pos/example", b"hello, world", "short message"),
        (bob, b"d", bytes(range(256)), "one-byte domain, 256-byte message"),
        (alice, b"x" * 255, b"longest domain", "255-byte domain"),
    ]
    signatures = []
    for identity, domain, message, note in cases:
        sig = identity.sign(domain, message)
        _require(verify(identity.peer_id, domain, message, sig), "signature verifies")
        signatures.append(
            {
                "note": note,
                "public_key": identity.peer_id.public_key.hex(),
                "domain": domain.hex(),
                "message": message.hex(),
                "signed_bytes": signed_message(domain, message).hex(),
                "signature": sig.hex(),
            }
        )
    # The same message signed under one domain does not verify under another.
    sig = alice.sign(b"p2pos/a", b"m")
    cross = [
        {"public_key": alice.peer_id.public_key.hex(), "domain": b"p2pos/a".hex(), "message": b"m".hex()},
        {"public_key": alice.peer_id.public_key.hex(), "domain": b"p2pos/b".hex(), "message": b"m".hex()},
        {"public_key": bob.peer_id.public_key.hex(), "domain": b"p2pos/a".hex(), "message": b"m".hex()},
    ]
    cross_domain = []
    for case in cross:
        ok = verify(PeerId(bytes.fromhex(case["public_key"])), bytes.fromhex(case["domain"]), b"m", sig)
        cross_domain.append({**case, "signature": sig.hex(), "valid": ok})
    return {
        "description": (
            "Domain-separated Ed25519 signatures: the signed bytes are "
            "'p2pos-sig-v1' || 0x00 || u8 len(domain) || domain || message. "
            "'signatures': valid signatures (Ed25519 is deterministic, so they are reproducible from the seeds "
            "in peer_id.json). 'cross_domain': one signature checked under several (key, domain) pairs."
        ),
        "spec": "spec/identity.md §3",
        "signatures": signatures,
        "cross_domain": cross_domain,
        "signed_records": signed_record_vectors(alice, bob),
    }


def signed_record_vectors(alice: Identity, bob: Identity) -> Json:
    valid = []
    for identity, domain, payload in (
        (alice, b"p2pos/dht-record", b"\x01\x02\x03"),
        (bob, b"p2pos/rendezvous", b""),
    ):
        record = SignedRecord.create(identity, domain, payload)
        encoded = record.encode()
        _require(SignedRecord.decode_untrusted(encoded, domain=domain) == record, "record round trip")
        valid.append(
            {
                "public_key": identity.peer_id.public_key.hex(),
                "domain": domain.hex(),
                "payload": payload.hex(),
                "signature": record.signature.hex(),
                "encoding": encoded.hex(),
            }
        )
    good = bytes.fromhex(valid[0]["encoding"])
    flipped_sig = good[:-1] + bytes([good[-1] ^ 0x01])
    flipped_payload = bytearray(good)
    flipped_payload[1 + 32 + 1 + 16 + 4] ^= 0x01
    invalid_inputs: list[tuple[str, bytes, bytes | None]] = [
        ("signature bit flipped", flipped_sig, None),
        ("payload bit flipped", bytes(flipped_payload), None),
        ("unknown record version 2", b"\x02" + good[1:], None),
        ("truncated before the domain", good[:34], None),
        ("zero-length domain", good[:33] + b"\x00" + good[34:], None),
        ("one trailing byte", good + b"\x00", None),
        ("one byte missing", good[:-1], None),
        ("valid record, but not the domain the caller expects", good, b"p2pos/rendezvous"),
    ]
    invalid = []
    for note, data, expected_domain in invalid_inputs:
        try:
            SignedRecord.decode_untrusted(data, domain=expected_domain)
        except ProtocolError as exc:
            invalid.append(
                {
                    "note": note,
                    "encoding": data.hex(),
                    "expected_domain": expected_domain.hex() if expected_domain is not None else None,
                    "error": exc.code.name,
                }
            )
        else:
            raise RuntimeError(f"invalid signed record {note!r} decoded")
    return {
        "description": (
            "SignedRecord wire form: u8 version (1) | public key[32] | u8 domain length (1..255) | domain | "
            "u32 payload length (<= 65536) | payload | signature[64], all integers big-endian. "
            "'invalid' encodings MUST be rejected with the given error code."
        ),
        "valid": valid,
        "invalid": invalid,
    }


def key_file_vectors() -> Json:
    alice = Identity.from_seed(fixed("alice identity seed"))
    good = alice.to_key_file()
    _require(Identity.from_key_file(good).peer_id == alice.peer_id, "key file round trip")
    other_public = Identity.from_seed(fixed("bob identity seed")).peer_id.public_key.hex()
    invalid_inputs = [
        ("wrong magic line", b"p2pos-identity-v2\n" + good.split(b"\n", 1)[1]),
        (
            "public key does not match the seed",
            good.replace(alice.peer_id.public_key.hex().encode(), other_public.encode()),
        ),
        ("missing public line", good.split(b"public ")[0]),
        ("seed is not hex", good.replace(b"seed ", b"seed zz")),
        (
            "seed of 31 bytes",
            good.replace(b"seed " + alice.seed.hex().encode(), b"seed " + alice.seed[:31].hex().encode()),
        ),
        ("not ASCII", good + "\u00e9\n".encode()),
        (
            "white space inside the seed",
            good.replace(b"seed " + alice.seed.hex()[:2].encode(), b"seed " + alice.seed.hex()[:2].encode() + b" "),
        ),
    ]
    invalid = []
    for note, data in invalid_inputs:
        try:
            Identity.from_key_file(data)
        except ProtocolError as exc:
            invalid.append({"note": note, "file": data.decode("utf-8"), "error": exc.code.name})
        else:
            raise RuntimeError(f"invalid key file {note!r} parsed")
    tolerant = good.replace(b"\n", b"\r\n").replace(b"p2pos-identity-v1\r\n", b"p2pos-identity-v1\n") + b"\n\n"
    _require(Identity.from_key_file(tolerant).peer_id == alice.peer_id, "tolerant key file")
    upper = good.replace(alice.seed.hex().encode(), alice.seed.hex().upper().encode())
    upper = upper.replace(alice.peer_id.public_key.hex().encode(), alice.peer_id.public_key.hex().upper().encode())
    spaced = b"\n  " + good.replace(b"\n", b" \t\n\t").replace(b"seed ", b"seed\t ").rstrip(b"\t")
    for variant in (upper, spaced):
        _require(Identity.from_key_file(variant).peer_id == alice.peer_id, "lenient key file")
    return {
        "description": (
            "Identity key files: the line 'p2pos-identity-v1', then 'seed <64 hex>' and 'public <64 hex>' lines "
            "(ASCII). 'valid' files load to the given peer id; 'invalid' files MUST be refused with the error code. "
            "A writer emits the first 'valid' file exactly (lower-case hex, one trailing newline)."
        ),
        "spec": "spec/identity.md §4",
        "valid": [
            {"seed": _keyed("alice identity seed"), "file": good.decode("ascii"), "peer_id": str(alice.peer_id)},
            {
                "seed": _keyed("alice identity seed"),
                "file": tolerant.decode("ascii"),
                "peer_id": str(alice.peer_id),
                "note": "CRLF line ends and blank lines are accepted",
            },
            {
                "seed": _keyed("alice identity seed"),
                "file": upper.decode("ascii"),
                "peer_id": str(alice.peer_id),
                "note": "hex is read in either case",
            },
            {
                "seed": _keyed("alice identity seed"),
                "file": spaced.decode("ascii"),
                "peer_id": str(alice.peer_id),
                "note": "spaces and tabs around lines and between key and value, and blank lines, are ignored",
            },
        ],
        "invalid": invalid,
    }


# -- handshake payloads and SAS -----------------------------------------------------


def payload_vectors() -> Json:
    alice = LocalKeys.create(Identity.from_seed(fixed("alice identity seed")), fixed("alice noise static key"))
    nonce = fixed("payload example SAS nonce")
    encodings = []
    examples: list[tuple[str, HandshakePayload]] = [
        ("XX message 1: versions only", HandshakePayload(versions=(1,))),
        (
            "identity payload",
            HandshakePayload(
                versions=(1,),
                identity_key=alice.identity.peer_id.public_key,
                identity_sig=alice.binding_signature,
                capabilities={CAP_MAX_RECORD_PLAINTEXT: (65505).to_bytes(4, "big")},
            ),
        ),
        ("several versions, unknown capability", HandshakePayload(versions=(1, 2, 7), capabilities={0x7ABC: b"\xff"})),
        ("empty payload", HandshakePayload()),
        (
            "XX INIT payload: versions, session index, SAS commitment, padding to a 320-byte INIT",
            HandshakePayload.decode_untrusted(
                padded(
                    HandshakePayload(versions=(1,), session_index=0x0A11CE01, sas_commitment=sas_commitment(nonce)),
                    6 + 32,
                )
            ),
        ),
        (
            "XX FINISH payload: identity, capabilities and the revealed SAS nonce",
            with_identity(
                alice,
                HandshakePayload(
                    versions=(1,), capabilities={CAP_MAX_RECORD_PLAINTEXT: (65505).to_bytes(4, "big")}, sas_nonce=nonce
                ),
            ),
        ),
    ]
    for note, payload in examples:
        encoded = payload.encode()
        _require(HandshakePayload.decode_untrusted(encoded) == payload, "payload round trip")
        encodings.append({"note": note, "fields": _payload_json(payload), "encoding": encoded.hex()})
    v1 = (0x0001, b"\x00\x01")
    decode_inputs: list[tuple[str, bytes]] = [
        ("unknown non-critical field 0x0042 is ignored", encode_fields([v1, (0x0042, b"future")])),
        ("unknown non-critical field 0x7fff is ignored", encode_fields([(0x7FFF, b""), v1])),
        ("unknown critical field 0x8042", encode_fields([v1, (0x8042, b"must understand")])),
        ("known type with the critical bit set is an unknown critical field", encode_fields([(0x8001, b"\x00\x01")])),
        ("duplicate field", encode_fields([v1, v1])),
        ("duplicate unknown field", encode_fields([(0x0042, b""), (0x0042, b"")])),
        ("duplicate capability", encode_fields([(0x0004, encode_fields([(0x0001, b"a"), (0x0001, b"b")]))])),
        (
            "unknown capabilities are ignored, even with bit 0x8000",
            encode_fields([(0x0004, encode_fields([(0x8009, b"?")]))]),
        ),
        ("versions field of odd length", encode_fields([(0x0001, b"\x00\x01\x00")])),
        ("empty versions field", encode_fields([(0x0001, b"")])),
        ("identity key of 31 bytes", encode_fields([(0x0002, bytes(31))])),
        ("identity signature of 65 bytes", encode_fields([(0x0003, bytes(65))])),
        ("session index of 3 bytes", encode_fields([(0x0005, b"\x00\x00\x01")])),
        ("SAS commitment of 31 bytes", encode_fields([(0x0006, bytes(31))])),
        ("SAS nonce of 33 bytes", encode_fields([(0x0007, bytes(33))])),
        (
            "session index and SAS commitment; padding content is ignored (only its length is reported)",
            encode_fields([(0x0005, b"\x00\x00\x00\x07"), (0x0006, bytes(range(32))), (0x0008, b"\x01\x02\x03")]),
        ),
        ("empty padding field", encode_fields([v1, (0x0008, b"")])),
        ("truncated field header", b"\x00\x01\x00"),
        ("field length beyond the end", b"\x00\x01\x00\x04\x00\x01"),
    ]
    decoding: list[Json] = []
    for note, data in decode_inputs:
        try:
            decoded = HandshakePayload.decode_untrusted(data)
        except ProtocolError as exc:
            decoding.append({"note": note, "encoding": data.hex(), "error": exc.code.name})
        else:
            decoding.append({"note": note, "encoding": data.hex(), "error": None, "fields": _payload_json(decoded)})
    return {
        "description": (
            "Handshake payloads: a list of 'u16 type | u16 length | value' fields (big-endian). Types: 0x0001 "
            "versions (u16 list), 0x0002 identity key (32), 0x0003 identity signature (64), 0x0004 capabilities "
            "(a nested field list), 0x0005 session index (u32), 0x0006 SAS commitment (32), 0x0007 SAS nonce (32), "
            "0x0008 padding (zero bytes; its length is reported). 'decoding': inputs with the decoded fields or the "
            "ErrorCode name a receiver MUST report."
        ),
        "spec": "spec/handshake.md §5",
        "encodings": encodings,
        "decoding": decoding,
    }


def _payload_json(payload: HandshakePayload) -> Json:
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


def sas_vectors() -> Json:
    cases = []
    inputs = [
        (bytes(64), bytes(32)),
        (bytes([0xFF] * 64), bytes([0xFF] * 32)),
        (fixed("sas example 1") * 2, fixed("sas example 1 nonce")),
        (fixed("sas example 2") * 2, fixed("sas example 2 nonce")),
        (fixed("sas example 2") * 2, fixed("sas example 1 nonce")),
    ]
    for h2, nonce in inputs:
        digest = hashlib.blake2b(h2 + nonce, digest_size=8, key=b"p2pos-sas-v1").digest()
        commitment = sas_commitment(nonce)
        _require(commitment == hashlib.blake2b(nonce, digest_size=32, key=b"p2pos-sas-commit").digest(), "commit")
        cases.append(
            {
                "handshake_hash_after_message_2": h2.hex(),
                "sas_nonce": nonce.hex(),
                "sas_commitment": commitment.hex(),
                "digest": digest.hex(),
                "number": int.from_bytes(digest, "big") % 10**12,
                "sas": short_authentication_string(h2, nonce),
            }
        )
    return {
        "description": (
            "Short authentication string. The initiator's INIT carries sas_commitment = BLAKE2b(sas_nonce, "
            "key='p2pos-sas-commit', 32 bytes); the nonce (32 bytes) is revealed after message 2. "
            "digest = BLAKE2b(handshake_hash_after_message_2 || sas_nonce, key='p2pos-sas-v1', 8 bytes); "
            "number = big-endian digest mod 10^12; 12 zero-padded digits in three groups of four. "
            "The last two cases share a nonce or a hash with another case."
        ),
        "spec": "spec/handshake.md §7",
        "cases": cases,
    }


# -- full handshakes and records ----------------------------------------------------

#: Records per epoch in the handshake vectors, small so that the vectors show a rekey.
_REKEY_AFTER = 2


class _Recorder:
    """Drives two sessions and writes down every step in a replayable form."""

    def __init__(self) -> None:
        self.steps: list[Json] = []
        self.packets: list[Json] = []
        self.sessions: dict[str, SecureSession] = {}

    def drain(self, actor: str, now: float, step: Json) -> list[bytes]:
        session = self.sessions[actor]
        sent = session.data_to_send(now)
        events: list[Event] = []
        while (event := session.next_event()) is not None:
            events.append(event)
        step["sends"] = [d.hex() for d in sent]
        step["events"] = [event_json(e) for e in events]
        self.steps.append(step)
        return sent


def event_json(event: Event) -> Json:
    """A JSON view of an event (the tests build the same view from live events)."""
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
    if isinstance(event, SessionClosed):
        return {
            "type": "SessionClosed",
            "session_id": event.session_id,
            "code": event.code.name,
            "reason": event.reason,
            "by_peer": event.by_peer,
        }
    raise TypeError(event)


def _party(name: str) -> tuple[LocalKeys, Json]:
    identity_label = f"{name} identity seed"
    static_label = f"{name} noise static key"
    keys = LocalKeys.create(Identity.from_seed(fixed(identity_label)), fixed(static_label))
    return keys, {
        "identity_seed": _keyed(identity_label),
        "identity_public_key": keys.identity.peer_id.public_key.hex(),
        "peer_id": str(keys.identity.peer_id),
        "static_private": _keyed(static_label),
        "static_public": keys.static_public.hex(),
        "binding_signature": keys.binding_signature.hex(),
    }


def _describe_packet(name: str, sender: str, data: bytes, payload: bytes | None, plaintext: bytes = b"") -> Json:
    out: Json = {"name": name, "from": sender, "hex": data.hex(), "length": len(data)}
    if data[0] in (PacketType.INIT, PacketType.RESPONSE, PacketType.FINISH):
        packet = parse_handshake_untrusted(data)
        out["type"] = packet.type.name
        if packet.type is PacketType.INIT and packet.pattern is not None:
            out["pattern_code"] = data[1]
        if packet.type in (PacketType.INIT, PacketType.RESPONSE):
            out["sender_index"] = f"0x{packet.sender_index:08x}"
        if packet.type in (PacketType.RESPONSE, PacketType.FINISH):
            out["receiver_index"] = f"0x{packet.receiver_index:08x}"
        out["noise_message"] = packet.message.hex()
        if payload is not None:
            out["payload"] = payload.hex()
            out["payload_fields"] = _payload_json(HandshakePayload.decode_untrusted(payload))
    else:
        ptype, receiver, epoch, counter = RECORD_HEADER.unpack_from(data)
        out.update(
            {
                "type": PacketType(ptype).name,
                "receiver_index": f"0x{receiver:08x}",
                "epoch": epoch,
                "counter": counter,
                "header": data[: RECORD_HEADER.size].hex(),
                "ciphertext": data[RECORD_HEADER.size :].hex(),
                "plaintext": plaintext.hex(),
            }
        )
    return out


def _noise_trace(
    pattern: Pattern, *, a: LocalKeys, b: LocalKeys, e_a: bytes, e_b: bytes, messages: list[bytes]
) -> tuple[list[bytes], list[bytes], bytes, bytes]:
    """Re-run the Noise handshake on the recorded messages: payloads, h after each message, the split keys."""
    hs_i = HandshakeState(
        pattern=pattern,
        initiator=True,
        prologue=PROLOGUE,
        s=a.static_private,
        e=e_a,
        rs=b.static_public if pattern is Pattern.IK else None,
    )
    hs_r = HandshakeState(pattern=pattern, initiator=False, prologue=PROLOGUE, s=b.static_private, e=e_b)
    payloads = []
    hashes = []
    writer, reader = hs_i, hs_r
    for message in messages:
        payload = reader.read_message(message)
        _require(writer.write_message(payload) == message, "noise replay reproduces the message")
        _require(writer.handshake_hash == reader.handshake_hash, "both sides agree on h")
        payloads.append(payload)
        hashes.append(reader.handshake_hash)
        writer, reader = reader, writer
    k1, k2 = hs_i.split()
    return payloads, hashes, k1, k2


def handshake_vectors(pattern: Pattern) -> Json:
    name = pattern.value.lower()
    alice, alice_json = _party("alice")
    bob, bob_json = _party("bob")
    e_label_a, e_label_b = f"{name} initiator ephemeral", f"{name} responder ephemeral"
    e_a, e_b = fixed(e_label_a), fixed(e_label_b)
    index_a, index_b = 0x0A11CE01, 0xB0B00002
    config = SessionConfig(rekey_after_messages=_REKEY_AFTER)
    rec = _Recorder()
    t0 = 100.0
    # The initiator draws exactly one value from ``random``: its 32-byte SAS nonce.
    sas_nonce = deterministic_random(f"{name} initiator SAS nonce")(32)
    drawn: list[int] = []

    def initiator_random(n: int) -> bytes:
        _require(n == 32 and not drawn, "the initiator draws only its SAS nonce")
        drawn.append(n)
        return sas_nonce

    initiator = SecureSession.initiate(
        alice,
        local_index=index_a,
        now=t0,
        config=config,
        expected_peer=bob.identity.peer_id if pattern is Pattern.IK else None,
        remote_static=bob.static_public if pattern is Pattern.IK else None,
        random=initiator_random,
        ephemeral=e_a,
    )
    rec.sessions["initiator"] = initiator
    (init,) = rec.drain("initiator", t0, {"actor": "initiator", "action": "initiate", "now": t0})
    _require(len(init) >= MIN_INIT_SIZE, "INIT is padded")
    handshake_packets = [("INIT", "initiator", init)]

    t = t0 + 0.25
    responder = SecureSession.respond_untrusted(
        bob, init, local_index=index_b, now=t, config=config, random=deterministic_random("responder"), ephemeral=e_b
    )
    rec.sessions["responder"] = responder
    (response,) = rec.drain("responder", t, {"actor": "responder", "action": "respond", "now": t, "packet": init.hex()})
    handshake_packets.append(("RESPONSE", "responder", response))

    # The RESPONSE is lost: the initiator's timer resends the identical INIT, the responder
    # recognises it and resends the identical RESPONSE.
    t = initiator.get_timer() or 0.0
    _require(t == t0 + 1.0, "first retransmission one second after INIT")
    initiator.handle_timer(t)
    resent = rec.drain("initiator", t, {"actor": "initiator", "action": "timer", "now": t})
    _require(resent == [init], "retransmitted INIT is identical")
    t += 0.25
    responder.receive_data(init, t)
    again = rec.drain("responder", t, {"actor": "responder", "action": "receive", "now": t, "packet": init.hex()})
    _require(again == [response], "duplicate INIT gets the cached RESPONSE")

    t += 0.25
    initiator.receive_data(response, t)
    out = rec.drain("initiator", t, {"actor": "initiator", "action": "receive", "now": t, "packet": response.hex()})
    if pattern is Pattern.XX:
        finish, confirm = out[0], out[0]
        _require(len(out) == 1, "XX initiator sends FINISH")
        handshake_packets.append(("FINISH", "initiator", finish))
    else:
        (confirm,) = out  # the CONFIRM record: key confirmation, and it reveals the SAS nonce
        _require(confirm[0] == PacketType.CONFIRM, "IK initiator sends CONFIRM")
        _require(not responder.is_established, "the IK responder waits for CONFIRM")
    t += 0.25
    responder.receive_data(confirm, t)
    rec.drain("responder", t, {"actor": "responder", "action": "receive", "now": t, "packet": confirm.hex()})
    _require(initiator.is_established and responder.is_established, "both established")

    messages = [parse_handshake_untrusted(p).message for _, _, p in handshake_packets]
    payloads, hashes, k_i2r, k_r2i = _noise_trace(pattern, a=alice, b=bob, e_a=e_a, e_b=e_b, messages=messages)
    h, h2 = hashes[-1], hashes[1]
    _require(h == initiator.handshake_hash == responder.handshake_hash, "handshake hash")
    sas = short_authentication_string(h2, sas_nonce)
    _require(sas == initiator.sas == responder.sas, "SAS over h after message 2 and the nonce")
    for (pname, sender, data), payload in zip(handshake_packets, payloads, strict=True):
        rec.packets.append(_describe_packet(pname, sender, data, payload))
    if pattern is Pattern.IK:
        rec.packets.append(
            _describe_packet("CONFIRM (key confirmation, reveals the SAS nonce)", "initiator", confirm, None, sas_nonce)
        )

    # Records: with rekey_after_messages=2 a sender moves to epoch 1 at its third record.
    def act(actor: str, action: str, now: float, **kwargs: Any) -> bytes:
        session = rec.sessions[actor]
        step: Json = {"actor": actor, "action": action, "now": now}
        plaintext = b""
        if action == "send":
            plaintext = kwargs["data"]
            session.send(kwargs["data"], now)
            step["data"] = kwargs["data"].hex()
        elif action == "keepalive":
            session.send_keepalive(now)
        elif action == "close":
            session.close(now, kwargs["code"], kwargs["reason"])
            step["code"] = kwargs["code"].name
            step["reason"] = kwargs["reason"]
            plaintext = int(kwargs["code"]).to_bytes(2, "big") + kwargs["reason"].encode()
        (record,) = rec.drain(actor, now, step)
        peer = "responder" if actor == "initiator" else "initiator"
        rec.sessions[peer].receive_data(record, now + 0.5)
        rec.drain(peer, now + 0.5, {"actor": peer, "action": "receive", "now": now + 0.5, "packet": record.hex()})
        rec.packets.append(_describe_packet(f"{action} from {actor}", actor, record, None, plaintext))
        return record

    t = 110.0
    act("initiator", "send", t, data=b"hello bob")
    act("responder", "send", t + 1, data=b"hello alice")
    act("initiator", "send", t + 2, data=b"")
    act("initiator", "send", t + 3, data=b"after the rekey")
    act("responder", "keepalive", t + 4)
    act("responder", "send", t + 5, data=bytes(range(64)))
    act("responder", "close", t + 6, code=ErrorCode.APPLICATION_CLOSE, reason="bye \u263a")

    epoch_keys = {"initiator_to_responder": [k_i2r.hex()], "responder_to_initiator": [k_r2i.hex()]}
    for direction in epoch_keys.values():
        direction.append(crypto.rekey(bytes.fromhex(direction[0])).hex())
    return {
        "description": (
            f"A complete Noise_{pattern.value} handshake between alice (initiator) and bob (responder), a lost "
            "RESPONSE recovered by retransmission, then records in both directions, across a rekey "
            "(rekey_after_messages=2), ending with a CLOSE. 'steps' can be replayed into fresh sessions "
            "created with the same keys, indices and clock values; the initiator's random source yields "
            "'sas_nonce' (32 bytes, its only draw), the responder's is never used. Each step lists the datagrams "
            "the actor sends and the events it reports. 'packets' annotates each distinct packet. "
            + (
                "The INIT is padded to 320 bytes and commits to the SAS nonce; FINISH reveals it."
                if pattern is Pattern.XX
                else "The INIT is padded to 320 bytes and commits to the SAS nonce; the initiator's first record, "
                "CONFIRM, carries the nonce and establishes the responder."
            )
        ),
        "spec": ["spec/handshake.md §3-§8", "spec/record.md §2-§4", "spec/session.md §3"],
        "protocol_name": protocol_name(pattern).decode(),
        "prologue": PROLOGUE.hex(),
        "config": {"rekey_after_messages": _REKEY_AFTER, "note": "every other SessionConfig field has its default"},
        "initiator": {
            **alice_json,
            "ephemeral_private": _keyed(e_label_a),
            "ephemeral_public": crypto.x25519_public(e_a).hex(),
            "local_index": index_a,
            "expected_peer": str(bob.identity.peer_id) if pattern is Pattern.IK else None,
            "remote_static": bob.static_public.hex() if pattern is Pattern.IK else None,
        },
        "responder": {
            **bob_json,
            "ephemeral_private": _keyed(e_label_b),
            "ephemeral_public": crypto.x25519_public(e_b).hex(),
            "local_index": index_b,
        },
        "handshake_hash": h.hex(),
        "handshake_hash_after_message_2": h2.hex(),
        "sas_nonce": sas_nonce.hex(),
        "sas_commitment": sas_commitment(sas_nonce).hex(),
        "sas": sas,
        "transport_keys": {
            "note": "Noise Split(): index 0 is epoch 0, index 1 is REKEY of it (epoch 1)",
            **epoch_keys,
        },
        "steps": rec.steps,
        "packets": rec.packets,
    }


def record_layer_vectors() -> Json:
    key = fixed("record layer key")
    chain = [key]
    for _ in range(8):
        chain.append(crypto.rekey(chain[-1]))
    sender = RecordSender(key, 0x01020304, 0.0, rekey_after_messages=2, rekey_after_seconds=1e9)
    sealed: list[bytes] = []
    for counter in range(16):
        ptype = PacketType.KEEPALIVE if counter == 1 else PacketType.DATA
        plaintext = b"" if ptype is PacketType.KEEPALIVE else f"record {counter}".encode()
        sealed.append(sender.seal(ptype, plaintext, 0.0))
    close_body = int(ErrorCode.NO_ERROR).to_bytes(2, "big") + b"done"
    close = RecordSender(key, 0x01020304, 0.0, rekey_after_messages=2, rekey_after_seconds=1e9)
    close_record = close.seal(PacketType.CLOSE, close_body, 0.0)
    records = []
    for data in [*sealed, close_record]:
        ptype, receiver, epoch, counter = RECORD_HEADER.unpack_from(data)
        records.append(
            {
                "type": PacketType(ptype).name,
                "receiver_index": f"0x{receiver:08x}",
                "epoch": epoch,
                "counter": counter,
                "nonce": crypto.nonce_bytes(counter).hex(),
                "plaintext": (close_body if data is close_record else _plain(ptype, counter)).hex(),
                "hex": data.hex(),
            }
        )
    tampered = bytearray(sealed[11])
    tampered[-1] ^= 0x80
    grace = 10.0
    receiver = RecordReceiver(key, previous_key_grace=grace)
    sequence = []
    plan: list[tuple[str, bytes, float]] = [
        ("epoch 0, first record", sealed[0], 0.0),
        ("replay of counter 0", sealed[0], 0.1),
        ("epoch 3: three epochs ahead, followed", sealed[6], 1.0),
        ("epoch 2: the previous epoch, within the grace period", sealed[4], 2.0),
        ("epoch 1: two epochs back", sealed[2], 2.0),
        ("epoch 7: four epochs ahead, too far", sealed[14], 3.0),
        ("epoch 4, after the first grace period ended", sealed[8], 12.0),
        ("epoch 3: the previous epoch again, within the new grace period", sealed[7], 13.0),
        ("epoch 5", sealed[10], 14.0),
        ("epoch 4 after its grace period (now > switch time + grace)", sealed[9], 24.5),
        ("epoch 5 record with a flipped tag bit", bytes(tampered), 25.0),
        ("the genuine epoch 5 record: the forgery moved nothing", sealed[11], 25.0),
        ("KEEPALIVE at counter 1: not a replay, but epoch 0 is five epochs behind", sealed[1], 25.0),
        ("epoch 7: now only two epochs ahead, followed", sealed[14], 26.0),
        ("13 bytes: shorter than a header and a tag", sealed[3][:13], 26.0),
    ]
    for note, data, now in plan:
        opened = receiver.open_untrusted(data, now)
        sequence.append(
            {
                "note": note,
                "record": data.hex(),
                "now": now,
                "accepted": opened is not None,
                "plaintext": opened[1].hex() if opened is not None else None,
                "receiver_epoch_after": receiver.epoch,
            }
        )
    return {
        "description": (
            "Record layer. 'rekey_chain': k[0] is an epoch-0 key, k[i+1] = REKEY(k[i]) = first 32 bytes of "
            "ChaCha20-Poly1305(k[i], nonce 0x00000000 || 0xffffffffffffffff, ad '', 32 zero bytes). 'records': a "
            "sender with rekey_after_messages=2 (so counter n uses epoch n // 2); AD is the 14-byte header; the "
            "nonce is 4 zero bytes then the counter little-endian. The CLOSE record is from a fresh sender. "
            f"'receive_sequence': records fed in order to one receiver (previous_key_grace={grace}) with the "
            "given clock; 'accepted' and the receiver's epoch afterwards."
        ),
        "spec": ["spec/record.md §2-§6"],
        "rekey_chain": [k.hex() for k in chain],
        "records": records,
        "previous_key_grace": grace,
        "receive_sequence": sequence,
    }


def _plain(ptype: int, counter: int) -> bytes:
    return b"" if ptype == PacketType.KEEPALIVE else f"record {counter}".encode()


# -- framing and replay window ------------------------------------------------------


def framing_vectors() -> Json:
    frames = []
    for datagram in (b"\x04", b"hello", bytes(300), bytes([0xAB]) * 65535):
        encoded = frame(datagram)
        item: Json = {"datagram_length": len(datagram), "stream_prefix": encoded[:8].hex()}
        if len(datagram) <= 300:
            item = {"datagram": datagram.hex(), "stream": encoded.hex()}
        frames.append(item)
    cases: list[tuple[str, list[bytes], bool, int]] = [
        ("two frames in one chunk", [frame(b"ab") + frame(b"c")], False, 65535),
        ("one frame byte by byte", [bytes([b]) for b in frame(b"xyz")], False, 65535),
        ("a partial frame without EOF waits", [frame(b"abcd")[:4]], False, 65535),
        ("a partial frame at EOF is an error", [frame(b"abcd")[:4]], True, 65535),
        ("frames complete before EOF are still read", [frame(b"ok")], True, 65535),
        (
            "zero length is an error, earlier frames stay readable",
            [frame(b"a") + b"\x00\x00" + frame(b"b")],
            False,
            65535,
        ),
        ("a length above max_frame is an error", [frame(b"12345")], False, 4),
        ("length exactly max_frame", [frame(b"1234")], False, 4),
        ("the error is final: later bytes are ignored", [b"\x00\x00", frame(b"late")], False, 65535),
    ]
    decoding = []
    for note, chunks, eof, max_frame in cases:
        framer = StreamFramer(max_frame)
        out: list[str] = []
        for chunk in chunks:
            framer.receive_data(chunk)
            while (f := framer.next_frame()) is not None:
                out.append(f.hex())
        if eof:
            framer.receive_eof()
            while (f := framer.next_frame()) is not None:
                out.append(f.hex())
        decoding.append(
            {
                "note": note,
                "chunks": [c.hex() for c in chunks],
                "eof": eof,
                "max_frame": max_frame,
                "frames": out,
                "error": framer.error.code.name if framer.error is not None else None,
            }
        )
    return {
        "description": (
            "Datagrams over byte streams: each datagram is 'u16 length (big-endian, 1..65535) | datagram'. "
            "'frames': encodings (the 65535-byte frame is abbreviated to its length and first bytes). "
            "'decoding': chunks fed in order (then EOF if 'eof'), the frames a receiver reads, and the final error."
        ),
        "spec": "spec/framing.md §2-§3",
        "frames": frames,
        "decoding": decoding,
    }


def replay_vectors() -> Json:
    sequences: list[tuple[str, list[int]]] = [
        ("in order, then duplicates", [0, 1, 2, 2, 0]),
        ("out of order within the window", [5, 1, 3, 2, 4, 0, 3]),
        ("first counter need not be 0", [1000, 999, 1000, 0]),
        ("window edge: top - 8127 accepted, top - 8128 rejected", [10000, 1873, 1872, 1873]),
        ("jump beyond the whole ring clears it", [0, 1, 100000, 1, 100000 - 8127, 100000 - 8128]),
        ("ring reuse: block 0 recycled for counters 8192..8255", [0, 63, 8191, 64, 63, 8192, 64, 8255, 8256]),
        ("large counters", [2**64 - 2**13 - 2, 2**64 - 2**13 - 3, 2**64 - 2**13 - 2]),
    ]
    out = []
    for note, counters in sequences:
        window = ReplayWindow()
        accepted = []
        for counter in counters:
            ok = window.check(counter)
            if ok:
                window.update(counter)
            accepted.append(ok)
        out.append({"note": note, "counters": counters, "accepted": accepted, "top_after": window.top})
    return {
        "description": (
            "Anti-replay window (128 blocks of 64 bits). Each counter is checked; when accepted it is marked "
            "as seen (as if the record then authenticated). A counter is accepted when it is above the highest "
            "seen, or less than 8128 below it and not yet seen."
        ),
        "spec": "spec/record.md §5",
        "window": 8128,
        "sequences": out,
    }


# -- output -------------------------------------------------------------------------


def build_vectors() -> dict[str, str]:
    """Every vector file's name and exact text."""
    objects = {
        "peer_id.json": peer_id_vectors(),
        "signatures.json": signature_vectors(),
        "key_file.json": key_file_vectors(),
        "handshake_payload.json": payload_vectors(),
        "sas.json": sas_vectors(),
        "handshake_xx.json": handshake_vectors(Pattern.XX),
        "handshake_ik.json": handshake_vectors(Pattern.IK),
        "record_layer.json": record_layer_vectors(),
        "framing.json": framing_vectors(),
        "replay_window.json": replay_vectors(),
    }
    texts = {name: json.dumps(obj, indent=2, ensure_ascii=False) + "\n" for name, obj in objects.items()}
    texts.update(_frame_vectors())
    texts.update(_channel_vectors())
    texts.update(_frames_generator().load_sibling("generate_signatures").build_vectors())
    texts.update(_frames_generator().load_sibling("generate_rendezvous").build_vectors())
    texts.update(_frames_generator().load_sibling("generate_relay").build_vectors())
    texts.update(_frames_generator().load_sibling("generate_appapi").build_vectors())
    texts.update(_frames_generator().load_sibling("generate_turn").build_vectors())
    texts.update(_frames_generator().load_sibling("generate_quic").build_vectors())
    texts.update(_frames_generator().load_sibling("generate_stun").build_vectors())
    texts.update(_frames_generator().load_sibling("generate_portmap").build_vectors())
    return texts


def _frames_generator() -> ModuleType:
    """generate_frames.py, which also holds the command line all generators share."""
    spec = importlib.util.spec_from_file_location("generate_frames", Path(__file__).with_name("generate_frames.py"))
    if spec is None or spec.loader is None:
        raise RuntimeError("generate_frames.py not found beside generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _frame_vectors() -> dict[str, str]:
    """The channel-layer frame vectors, written by generate_frames.py beside this script."""
    frames: dict[str, str] = _frames_generator().build_vectors()
    return frames


def _channel_vectors() -> dict[str, str]:
    """The channel-layer transcript, written by generate_channels.py beside this script."""
    channels: dict[str, str] = _frames_generator().load_sibling("generate_channels").build_vectors()
    return channels


def main(argv: list[str] | None = None) -> int:
    status: int = _frames_generator().write_or_check(build_vectors(), argv, script="generate.py", doc=__doc__)
    return status


if __name__ == "__main__":
    sys.exit(main())
