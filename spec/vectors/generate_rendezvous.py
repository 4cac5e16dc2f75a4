"""Write the rendezvous vectors (spec/vectors/rendezvous.json) from the implementation.

Run from the repository root::

    .venv/bin/python spec/vectors/generate_rendezvous.py           # (re)write rendezvous.json
    .venv/bin/python spec/vectors/generate_rendezvous.py --check   # exit 1 if it differs

Every message of spec/rendezvous.md §3 encoded (IPv4 and IPv6 addresses, candidates), messages
a receiver must refuse as malformed (with why) or ignore (an unknown type), the reset key and
tokens of §6.1 from a fixed node seed and fixed session indices, one stateless reset of §6.2
with fixed padding, and STUN Binding request/response pairs of §5.  Fixed bytes come from
labels as in ``generate.py``: ``BLAKE2b-256("p2pos test vector: " || label)``.
``build_vectors()`` returns ``{file name: JSON text}`` as ``generate.py`` does, which checks
this file too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from p2pos.proto.errors import ProtocolError
from p2pos.proto.identity.identity import Identity
from p2pos.proto.nat import punch, stun
from p2pos.proto.nat.profile import UNKNOWN_PROFILE, Allocation, Filtering, Mapping, NatProfile
from p2pos.proto.rendezvous import messages as m
from p2pos.proto.rendezvous.node import STATELESS_RESET, reset_token

VECTORS_DIR = Path(__file__).resolve().parent
Json = dict[str, Any]

V4 = ("192.0.2.10", 40001)
V6 = ("2001:db8::10", 40002)
LAN = ("10.0.0.5", 40001)
LAN6 = ("fd00::5", 40001)
SEQ = NatProfile(
    mapping=Mapping.ADDRESS_AND_PORT_DEPENDENT,
    filtering=Filtering.ADDRESS_AND_PORT_DEPENDENT,
    allocation=Allocation.SEQUENTIAL,
    delta=1,
)
EIM_TRAITS = m.Traits(
    profile=NatProfile(
        mapping=Mapping.ENDPOINT_INDEPENDENT, filtering=Filtering.ADDRESS_AND_PORT_DEPENDENT, hairpin=True
    ),
    rtt_ms=17,
)
UNKNOWN_TRAITS = m.Traits(profile=UNKNOWN_PROFILE)
#: The node's session indices whose tokens are listed (the last is the reset's).
INDICES = (0, 1, 0x1A2B3C4D, 0xFFFFFFFF)


def fixed(label: str, size: int = 32) -> bytes:
    """Fixed bytes named by ``label``: BLAKE2b-256("p2pos test vector: " || label), cut to ``size``."""
    return hashlib.blake2b(b"p2pos test vector: " + label.encode(), digest_size=32).digest()[:size]


#: Each message class and its name in spec/rendezvous.md §3.2.
NAMES: dict[type, str] = {
    m.Register: "REGISTER",
    m.Registered: "REGISTERED",
    m.Lookup: "LOOKUP",
    m.Found: "FOUND",
    m.NotFound: "NOT_FOUND",
    m.Introduction: "INTRODUCTION",
    m.Unregister: "UNREGISTER",
    m.Unregistered: "UNREGISTERED",
    m.Error: "ERROR",
    m.Relays: "RELAYS",
    m.Fresh: "FRESH",
}


def _address(addr: m.Address) -> Json:
    return {"host": addr[0], "port": addr[1]}


def profile_json(profile: NatProfile) -> Json:
    """A NAT profile (spec/punch.md §2) as JSON: its fields, enum values by name in lower case."""
    return {
        "mapping": profile.mapping.name.lower(),
        "filtering": profile.filtering.name.lower(),
        "allocation": profile.allocation.name.lower(),
        "delta": profile.delta,
        "port_mapped": profile.port_mapped,
        "udp_blocked": profile.udp_blocked,
        "hairpin": profile.hairpin,
    }


def traits_json(traits: m.Traits | None) -> Json | None:
    return None if traits is None else {"profile": profile_json(traits.profile), "rtt_ms": traits.rtt_ms}


def message_json(message: m.Message) -> Json:
    """A message as JSON: its type name, txid and fields; peer ids and tokens hex, addresses objects."""
    out: Json = {"type": NAMES[type(message)]}
    for field in dataclasses.fields(message):
        name, value = field.name, getattr(message, field.name)
        if isinstance(value, bytes):
            value = value.hex()
        elif name == "observed":
            value = _address(value)
        elif name == "candidates":
            value = [_address(c) for c in value]
        elif name == "traits":
            value = traits_json(value)
        elif name == "punch":
            value = None if value is None else {"traits": traits_json(value.traits), "ticket": value.ticket.hex()}
        out[name] = value
    return out


def _messages() -> list[Json]:
    alice = Identity.from_seed(fixed("rendezvous/alice")).peer_id.public_key
    bob = Identity.from_seed(fixed("rendezvous/bob")).peer_id.public_key
    token = fixed("rendezvous/token", 16)
    ticket = fixed("rendezvous/ticket", 16)
    samples: list[tuple[str, m.Message]] = [
        ("REGISTER, default lease, no candidates", m.Register(txid=1, lease=0)),
        ("REGISTER, one IPv4 and one IPv6 candidate", m.Register(txid=2, lease=120, candidates=(LAN, LAN6))),
        ("REGISTERED, IPv4 (32 bytes)", m.Registered(txid=1, lease=600, observed=V4, reset_token=token)),
        ("REGISTERED, IPv6 (44 bytes)", m.Registered(txid=2, lease=120, observed=V6, reset_token=token)),
        ("LOOKUP, no introduction", m.Lookup(txid=3, peer_id=bob, introduce=False)),
        ("LOOKUP, introduce, one candidate", m.Lookup(txid=4, peer_id=bob, introduce=True, candidates=(LAN,))),
        ("FOUND, IPv4", m.Found(txid=4, peer_id=bob, observed=V4, candidates=(LAN,))),
        ("FOUND, IPv6, no candidates", m.Found(txid=5, peer_id=bob, observed=V6)),
        ("NOT_FOUND (37 bytes)", m.NotFound(txid=6, peer_id=bob)),
        ("INTRODUCTION", m.Introduction(txid=4, peer_id=alice, observed=V6, candidates=(LAN, LAN6))),
        ("UNREGISTER (5 bytes)", m.Unregister(txid=7)),
        ("UNREGISTERED", m.Unregistered(txid=7)),
        ("ERROR 1 RATE_LIMITED", m.Error(txid=8, code=m.RendezvousError.RATE_LIMITED, reason="too many lookups")),
        ("ERROR 2 NOT_REGISTERED", m.Error(txid=9, code=m.RendezvousError.NOT_REGISTERED, reason="register first")),
        ("ERROR 3 MALFORMED, empty reason", m.Error(txid=0xFFFFFFFF, code=m.RendezvousError.MALFORMED)),
        ("RELAYS, two relays", m.Relays(txid=1, urls=("wss://relay.example:443", "ws://198.18.0.1:8080/p2pos"))),
        ("RELAYS, none", m.Relays(txid=2)),
        ("REGISTER with traits (§3.5)", m.Register(txid=3, lease=0, traits=m.Traits(profile=SEQ, rtt_ms=42))),
        ("LOOKUP with traits, unknown NAT", m.Lookup(txid=5, peer_id=bob, introduce=True, traits=UNKNOWN_TRAITS)),
        (
            "FOUND with a punch",
            m.Found(txid=5, peer_id=bob, observed=V4, punch=m.Punch(traits=EIM_TRAITS, ticket=ticket)),
        ),
        (
            "INTRODUCTION with a punch",
            m.Introduction(txid=5, peer_id=alice, observed=V4, punch=m.Punch(traits=UNKNOWN_TRAITS, ticket=ticket)),
        ),
        ("FRESH, IPv4 (52 bytes, §4.6)", m.Fresh(txid=5, peer_id=alice, observed=V4, ticket_id=ticket[:8])),
        ("FRESH, IPv6 (64 bytes)", m.Fresh(txid=5, peer_id=bob, observed=V6, ticket_id=ticket[:8])),
    ]
    return [{"name": name, "message": message_json(msg), "hex": m.encode(msg).hex()} for name, msg in samples]


def _malformed() -> list[Json]:
    bob = Identity.from_seed(fixed("rendezvous/bob")).peer_id.public_key
    register = m.encode(m.Register(txid=1, lease=0))
    lookup = m.encode(m.Lookup(txid=2, peer_id=bob, introduce=False))
    found = m.encode(m.Found(txid=3, peer_id=bob, observed=V4))
    fresh = m.encode(m.Fresh(txid=4, peer_id=bob, observed=V4, ticket_id=bytes(8)))
    v4 = bytes((4, 192, 0, 2, 10)) + (40001).to_bytes(2, "big")
    samples = [
        ("empty", b""),
        ("shorter than the header", bytes.fromhex("01000000")),
        ("REGISTER without its lease", bytes.fromhex("0100000001")),
        ("a byte after the REGISTER", register + b"\x00"),
        ("candidate count 2 with one address", register[:-1] + b"\x02" + v4),
        ("17 candidates", register[:-1] + b"\x11" + v4 * 17),
        ("address family 5", register[:-1] + b"\x01\x05" + v4[1:]),
        ("IPv6 family with an IPv4 address", register[:-1] + b"\x01\x06" + v4[1:]),
        ("LOOKUP flags 0x02", lookup[:37] + b"\x02" + lookup[38:]),
        ("LOOKUP with a 31-byte peer id", lookup[:36]),
        ("ERROR reason not UTF-8", bytes.fromhex("09000000010003") + b"\x02\xff\xfe"),
        ("ERROR reason shorter than its length", bytes.fromhex("0900000001000305") + b"abc"),
        ("RELAYS counting 9 URLs", bytes.fromhex("0a0000000109") + b"\x04ws:/" * 9),
        ("RELAYS with an empty URL", bytes.fromhex("0a000000010100")),
        ("RELAYS URL not UTF-8", bytes.fromhex("0a000000010102") + b"\xff\xfe"),
        ("RELAYS URL shorter than its length", bytes.fromhex("0a00000001010a") + b"ws://"),
        ("REGISTER with 6 bytes of traits", register + bytes(6)),
        ("REGISTER traits naming mapping 5", register + bytes([0x50, 0, 0, 0, 0, 0, 0])),
        ("REGISTER traits: sequential with delta 0", register + bytes([0x44, 2, 0, 0, 0, 0, 0])),
        ("REGISTER traits with an unknown flag", register + bytes([0, 0, 0, 0, 0x80, 0, 0])),
        ("LOOKUP with 8 bytes after its candidates", lookup + bytes(8)),
        ("FOUND with a punch one byte short", found + bytes(22)),
        ("FRESH with a 7-byte ticket id", fresh[:-1]),
        ("a byte after the FRESH", fresh + b"\x00"),
    ]
    out = []
    for why, data in samples:
        try:
            m.decode_untrusted(data)
        except ProtocolError as exc:
            out.append({"why": why, "hex": data.hex(), "error": exc.code.name})
            continue
        raise RuntimeError(f"the decoder accepted a malformed message: {why}")
    return out


def _reset() -> Json:
    seed = fixed("rendezvous/node")
    key = hashlib.blake2b(seed, digest_size=32, person=b"p2pos-reset-key").digest()
    tokens = [{"session_index": index, "token": reset_token(key, index).hex()} for index in INDICES]
    trigger_len = 30  # a KEEPALIVE record, the smallest record (record.md §2)
    length = trigger_len - 1
    padding = fixed("rendezvous/reset-padding")[: length - 1 - m.RESET_TOKEN_LEN]
    index = INDICES[-1]
    packet = bytes((STATELESS_RESET,)) + padding + reset_token(key, index)
    return {
        "seed_label": "rendezvous/node",
        "seed": seed.hex(),
        "person": b"p2pos-reset-key".hex(),
        "reset_key": key.hex(),
        "tokens": tokens,
        "reset": {
            "session_index": index,
            "trigger_length": trigger_len,
            "padding_label": "rendezvous/reset-padding",
            "padding": padding.hex(),
            "packet": packet.hex(),
        },
    }


def _stun() -> list[Json]:
    out = []
    for label, source in (("rendezvous/stun-v4", V4), ("rendezvous/stun-v6", V6)):
        txid = fixed(label, 12)
        instance = fixed("rendezvous/stun-instance", 8)  # RDV-5.5: drawn at the node's start
        request = stun.binding_request(txid)
        response = stun.binding_success(txid, source, instance)
        out.append(
            {
                "transaction_id_label": label,
                "transaction_id": txid.hex(),
                "source": _address(source),
                "instance_label": "rendezvous/stun-instance",
                "instance": instance.hex(),
                "request": request.hex(),
                "response": response.hex(),
            }
        )
    return out


def _fresh_binding() -> list[Json]:
    """Fresh Bindings (§4.6, punch.md §3.4) of both sides and the node's answers, under a fixed ticket."""
    ticket = fixed("rendezvous/ticket", 16)
    out = []
    for label, leading, source in (("rendezvous/fresh-a", True, V4), ("rendezvous/fresh-t", False, V6)):
        txid = fixed(label, 12)
        out.append(
            {
                "ticket": ticket.hex(),
                "leading": leading,
                "username": punch.fresh_username(ticket, leading=leading).decode(),
                "transaction_id_label": label,
                "transaction_id": txid.hex(),
                "source": _address(source),
                "request": punch.fresh_request(ticket, txid, leading=leading).hex(),
                "answer": punch.answer(ticket, txid, source).hex(),
            }
        )
    return out


def build_vectors() -> dict[str, str]:
    """``{"rendezvous.json": text}``."""
    data = {
        "description": (
            "Rendezvous messages (type || txid || body; addresses family || ip || port; candidates "
            "count || addresses; urls count || (length || UTF-8)...) with their JSON form; malformed "
            "messages a receiver answers with "
            "ERROR 3; an unknown type, which is ignored; the reset key and tokens from a fixed node "
            "seed, and a stateless reset (0x0b || padding || token) drawn by a 30-byte record; STUN "
            "Binding requests and the success responses (XOR-MAPPED-ADDRESS only) a node sends; fresh "
            "Bindings (USERNAME ticket id ':a' or ':t', MESSAGE-INTEGRITY keyed with the ticket, "
            "FINGERPRINT) and the node's answers (§4.6)."
        ),
        "spec": ["spec/rendezvous.md §3", "spec/rendezvous.md §4.6", "spec/rendezvous.md §5", "spec/rendezvous.md §6"],
        "messages": _messages(),
        "malformed": _malformed(),
        "unknown_type": {"hex": "7f00000001deadbeef", "decoded": None},
        "reset": _reset(),
        "stun_binding": _stun(),
        "fresh_binding": _fresh_binding(),
    }
    return {"rendezvous.json": json.dumps(data, indent=2, ensure_ascii=False) + "\n"}


def main(argv: list[str] | None = None) -> int:
    spec = importlib.util.spec_from_file_location("generate_frames", VECTORS_DIR / "generate_frames.py")
    if spec is None or spec.loader is None:
        raise RuntimeError("generate_frames.py not found beside generate_rendezvous.py")
    frames = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(frames)
    status: int = frames.write_or_check(build_vectors(), argv, script="generate_rendezvous.py", doc=__doc__)
    return status


if __name__ == "__main__":
    sys.exit(main())
