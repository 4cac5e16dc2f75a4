"""spec/vectors/rendezvous.json holds through the core: every message decodes to its JSON form and
encodes back byte for byte, malformed ones are refused, the reset key, tokens and reset are
recomputed with ``hashlib`` and with the node, the STUN pairs are rebuilt and read back, and the
fresh Bindings are read by hand and answered by the node's ``FreshTickets``."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from p2pos.proto.errors import ErrorCode, RemoteProtocolError
from p2pos.proto.handshake.handshake import LocalKeys
from p2pos.proto.identity.identity import Identity
from p2pos.proto.nat import stun
from p2pos.proto.nat.profile import Allocation, Filtering, Mapping, NatProfile
from p2pos.proto.rendezvous import messages as m
from p2pos.proto.rendezvous.fresh import FreshTickets
from p2pos.proto.rendezvous.node import MIN_RESET_LEN, STATELESS_RESET, reset_key, reset_token

VECTORS = Path(__file__).resolve().parents[2] / "spec" / "vectors" / "rendezvous.json"
DATA: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))
#: The message types of spec/rendezvous.md §3.2, written out here, not read from ``MessageType``.
SPEC_TYPES = {
    "REGISTER": 0x01,
    "REGISTERED": 0x02,
    "LOOKUP": 0x03,
    "FOUND": 0x04,
    "NOT_FOUND": 0x05,
    "INTRODUCTION": 0x06,
    "UNREGISTER": 0x07,
    "UNREGISTERED": 0x08,
    "ERROR": 0x09,
    "RELAYS": 0x0A,
    "FRESH": 0x0B,
}
CLASSES: dict[str, Any] = {
    "REGISTER": m.Register,
    "REGISTERED": m.Registered,
    "LOOKUP": m.Lookup,
    "FOUND": m.Found,
    "NOT_FOUND": m.NotFound,
    "INTRODUCTION": m.Introduction,
    "UNREGISTER": m.Unregister,
    "UNREGISTERED": m.Unregistered,
    "ERROR": m.Error,
    "RELAYS": m.Relays,
    "FRESH": m.Fresh,
}


def _address(obj: dict[str, Any]) -> m.Address:
    return str(obj["host"]), int(obj["port"])


def _profile(obj: dict[str, Any]) -> NatProfile:
    return NatProfile(
        mapping=Mapping[obj["mapping"].upper()],
        filtering=Filtering[obj["filtering"].upper()],
        allocation=Allocation[obj["allocation"].upper()],
        delta=int(obj["delta"]),
        port_mapped=bool(obj["port_mapped"]),
        udp_blocked=bool(obj["udp_blocked"]),
        hairpin=bool(obj["hairpin"]),
    )


def _traits(obj: dict[str, Any]) -> m.Traits:
    return m.Traits(profile=_profile(obj["profile"]), rtt_ms=int(obj["rtt_ms"]))


def _message(obj: dict[str, Any]) -> m.Message:
    fields: dict[str, Any] = {}
    for name, raw in obj.items():
        if name == "type":
            continue
        if name in ("peer_id", "reset_token", "ticket_id"):
            fields[name] = bytes.fromhex(raw)
        elif name == "observed":
            fields[name] = _address(raw)
        elif name == "candidates":
            fields[name] = tuple(_address(c) for c in raw)
        elif name == "urls":
            fields[name] = tuple(str(url) for url in raw)
        elif name == "traits":
            fields[name] = None if raw is None else _traits(raw)
        elif name == "punch":
            punch = None if raw is None else m.Punch(traits=_traits(raw["traits"]), ticket=bytes.fromhex(raw["ticket"]))
            fields[name] = punch
        else:
            fields[name] = raw
    message: m.Message = CLASSES[obj["type"]](**fields)
    return message


def test_every_message_type_is_there() -> None:
    assert {v["message"]["type"] for v in DATA["messages"]} == set(SPEC_TYPES)


@pytest.mark.parametrize("vector", DATA["messages"], ids=lambda v: str(v["name"]))
def test_message_decodes_and_encodes(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["hex"])
    message = _message(vector["message"])
    assert data[0] == SPEC_TYPES[vector["message"]["type"]]
    assert int.from_bytes(data[1:5], "big") == message.txid
    assert m.decode_untrusted(data) == message
    assert m.encode(message) == data


def test_registered_sizes() -> None:
    sizes = {v["name"]: len(bytes.fromhex(v["hex"])) for v in DATA["messages"]}
    assert sizes["REGISTERED, IPv4 (32 bytes)"] == 32 and sizes["REGISTERED, IPv6 (44 bytes)"] == 44
    assert sizes["NOT_FOUND (37 bytes)"] == 37 and sizes["UNREGISTER (5 bytes)"] == 5
    assert sizes["FRESH, IPv4 (52 bytes, §4.6)"] == 52 and sizes["FRESH, IPv6 (64 bytes)"] == 64


@pytest.mark.parametrize("vector", DATA["malformed"], ids=lambda v: str(v["why"]))
def test_malformed_is_refused(vector: dict[str, Any]) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        m.decode_untrusted(bytes.fromhex(vector["hex"]))
    assert info.value.code is ErrorCode[vector["error"]] is ErrorCode.MALFORMED_MESSAGE


def test_unknown_type_is_ignored() -> None:
    assert m.decode_untrusted(bytes.fromhex(DATA["unknown_type"]["hex"])) is None


def test_reset_key_tokens_and_reset() -> None:
    vec = DATA["reset"]
    seed = bytes.fromhex(vec["seed"])
    assert seed == hashlib.blake2b(b"p2pos test vector: " + vec["seed_label"].encode(), digest_size=32).digest()
    key = hashlib.blake2b(seed, digest_size=32, person=bytes.fromhex(vec["person"])).digest()
    assert key.hex() == vec["reset_key"]
    keys = LocalKeys.create(Identity.from_seed(seed), bytes(32))
    assert reset_key(keys) == key
    for item in vec["tokens"]:
        index, token = item["session_index"], bytes.fromhex(item["token"])
        assert hashlib.blake2b(struct.pack(">I", index), digest_size=16, key=key).digest() == token
        assert reset_token(key, index) == token
    reset = vec["reset"]
    packet = bytes.fromhex(reset["packet"])
    token = reset_token(key, reset["session_index"])
    assert packet == bytes((STATELESS_RESET,)) + bytes.fromhex(reset["padding"]) + token
    assert packet[0] == 0x0B and MIN_RESET_LEN <= len(packet) == min(reset["trigger_length"] - 1, 64)


def _xor_mapped(response: bytes, txid: bytes) -> m.Address:
    """XOR-MAPPED-ADDRESS read by hand (RFC 8489 §14.2), the first attribute of the response, which
    ends with the 12 bytes of P2POS-INSTANCE (RDV-5.5)."""
    mtype, length, cookie = struct.unpack(">HHI", response[:8])
    assert (mtype, cookie, response[8:20]) == (0x0101, 0x2112A442, txid) and length == len(response) - 20
    atype, alen = struct.unpack(">HH", response[20:24])
    assert atype == 0x0020 and 24 + alen + 12 == len(response)
    family, port = response[25], struct.unpack(">H", response[26:28])[0] ^ 0x2112
    mask = response[4:8] + (txid if family == 2 else b"")
    raw = bytes(a ^ b for a, b in zip(response[28 : 24 + alen], mask, strict=True))
    return str(ipaddress.ip_address(raw)), port


@pytest.mark.parametrize("vector", DATA["stun_binding"], ids=lambda v: str(v["transaction_id_label"]))
def test_stun_binding_pair(vector: dict[str, Any]) -> None:
    txid, source = bytes.fromhex(vector["transaction_id"]), _address(vector["source"])
    request, response = bytes.fromhex(vector["request"]), bytes.fromhex(vector["response"])
    assert stun.binding_request(txid) == request and len(request) == 20
    assert stun.binding_request_untrusted(request) == txid
    instance = bytes.fromhex(vector["instance"])
    assert stun.binding_success(txid, source, instance) == response  # RDV-5.5: the instance after the address
    assert stun.BindingServer(instance=instance).answer_untrusted(request, source, 0) == (response, 0, source)
    assert len(response) == (44 if ":" not in source[0] else 56) <= 3 * len(request)
    assert response[-12:] == bytes.fromhex("cf500008") + instance
    assert stun.mapped_address_untrusted(response, txid) == source == _xor_mapped(response, txid)


def _attributes(message: bytes) -> list[tuple[int, bytes]]:
    """A STUN message's attributes read by hand (RFC 8489 §5, §14): type, value, padded to 4."""
    out, at = [], 20
    while at < len(message):
        atype, alen = struct.unpack(">HH", message[at : at + 4])
        out.append((atype, message[at + 4 : at + 4 + alen]))
        at += 4 + alen + (-alen % 4)
    return out


@pytest.mark.parametrize("vector", DATA["fresh_binding"], ids=lambda v: str(v["transaction_id_label"]))
def test_fresh_binding_pair(vector: dict[str, Any]) -> None:
    """rendezvous.md §4.6: the request's USERNAME, integrity under the ticket and FINGERPRINT, read by
    hand; the node (``FreshTickets``) answers it with the vector's answer and a FRESH to the other side."""
    ticket, txid = bytes.fromhex(vector["ticket"]), bytes.fromhex(vector["transaction_id"])
    request, answer, source = (
        bytes.fromhex(vector["request"]),
        bytes.fromhex(vector["answer"]),
        _address(vector["source"]),
    )
    assert vector["username"] == ticket[:8].hex() + (":a" if vector["leading"] else ":t") and len(request) == 76
    assert request[8:20] == txid == answer[8:20]
    attrs = _attributes(request)
    assert [a for a, _ in attrs] == [0x0006, 0x0008, 0x8028] and attrs[0][1] == vector["username"].encode()
    covered = bytearray(request[: len(request) - 32])  # up to MESSAGE-INTEGRITY, its length counted
    struct.pack_into(">H", covered, 2, len(request) - 8 - 20)
    assert hmac.new(ticket, bytes(covered), "sha1").digest() == attrs[1][1]
    crc = (zlib.crc32(request[:-8]) ^ 0x5354554E) & 0xFFFFFFFF
    assert struct.unpack(">I", attrs[2][1])[0] == crc
    tickets = FreshTickets()
    tickets.add(ticket, txid=5, asker=(b"A" * 32, 1), target=(b"T" * 32, 2), now=0.0)
    verdict = tickets.receive_untrusted(request, source, 1.0)
    assert verdict is not None and verdict.answer == answer and len(answer) <= len(request)
    assert verdict.session == (2 if vector["leading"] else 1)
    assert verdict.fresh == m.Fresh(
        txid=5, peer_id=(b"A" if vector["leading"] else b"T") * 32, observed=source, ticket_id=ticket[:8]
    )
