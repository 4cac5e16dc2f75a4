"""Write the relay vectors (spec/vectors/relay.json) from the implementation.

Run from the repository root::

    .venv/bin/python spec/vectors/generate_relay.py           # (re)write relay.json
    .venv/bin/python spec/vectors/generate_relay.py --check   # exit 1 if it differs

Every message of spec/relay.md §3.2 encoded, messages a receiver must refuse as malformed (with
why), and one authentication of §2: a fixed identity, nonce and relay name, the exact bytes
signed under domain ``p2pos/relay-auth`` (identity.md §3.1), the Ed25519 signature and the AUTH
message.  Fixed bytes come from labels as in ``generate.py``:
``BLAKE2b-256("p2pos test vector: " || label)``.  ``build_vectors()`` returns ``{file name: JSON
text}`` as ``generate.py`` does, which checks this file too.
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
from p2pos.proto.identity.identity import Identity, signed_message
from p2pos.proto.relay import messages as m

VECTORS_DIR = Path(__file__).resolve().parent
Json = dict[str, Any]
NAME = "relay.example.net"


def fixed(label: str, size: int = 32) -> bytes:
    """Fixed bytes named by ``label``: BLAKE2b-256("p2pos test vector: " || label), cut to ``size``."""
    return hashlib.blake2b(b"p2pos test vector: " + label.encode(), digest_size=32).digest()[:size]


def message_json(message: m.Message) -> Json:
    """A message as JSON: its type name and fields, bytes in hex."""
    out: Json = {"type": type(message).__name__.upper()}
    for field in dataclasses.fields(message):
        value = getattr(message, field.name)
        out[field.name] = value.hex() if isinstance(value, bytes) else value
    return out


def _auth() -> tuple[Json, m.Auth]:
    alice = Identity.from_seed(fixed("relay/alice"))
    nonce = fixed("relay/nonce")
    message = m.auth_message(nonce, NAME)
    signature = alice.sign(m.DOMAIN_RELAY_AUTH, message)
    auth = m.Auth(peer_id=alice.peer_id.public_key, signature=signature, name=NAME)
    return {
        "seed_label": "relay/alice",
        "seed": alice.seed.hex(),
        "peer_id": alice.peer_id.public_key.hex(),
        "nonce_label": "relay/nonce",
        "nonce": nonce.hex(),
        "name": NAME,
        "domain": m.DOMAIN_RELAY_AUTH.decode(),
        "message": message.hex(),
        "signed": signed_message(m.DOMAIN_RELAY_AUTH, message).hex(),
        "signature": signature.hex(),
        "auth": m.encode(auth).hex(),
    }, auth


def _messages(auth: m.Auth) -> list[Json]:
    bob = Identity.from_seed(fixed("relay/bob")).peer_id.public_key
    record = bytes([4]) + fixed("relay/record", 29)  # a KEEPALIVE-sized sealed record (record.md §2)
    samples: list[tuple[str, m.Message]] = [
        (
            "CHALLENGE with the default limits (43 bytes)",
            m.Challenge(nonce=fixed("relay/nonce"), max_record=65535, max_wants=1024, rate=16 << 20),
        ),
        ("AUTH (the §2 example)", auth),
        ("WELCOME", m.Welcome(peer_id=auth.peer_id)),
        ("WANT", m.Want(peer_id=bob)),
        ("UNWANT", m.Unwant(peer_id=bob)),
        ("PAIRED, pair 1", m.Paired(pair=1, peer_id=bob)),
        ("UNPAIRED, pair 0xffffffff", m.Unpaired(pair=0xFFFFFFFF)),
        ("SEND a 30-byte record on pair 1", m.Send(pair=1, record=record)),
        ("RECV a 1-byte record (type 15) on pair 7", m.Recv(pair=7, record=b"\x0f")),
        ("SENDTO a 30-byte record to bob (held until PAIRED, §4.2)", m.SendTo(peer_id=bob, record=record)),
    ]
    return [{"name": name, "message": message_json(msg), "hex": m.encode(msg).hex()} for name, msg in samples]


def _malformed(auth: m.Auth) -> list[Json]:
    good_auth = m.encode(auth)
    want = m.encode(m.Want(peer_id=auth.peer_id))
    samples = [
        ("empty", b""),
        ("unknown type 0x0b", b"\x0b" + bytes(32)),
        ("type 0x00", b"\x00"),
        ("CHALLENGE one byte short", b"\x01" + bytes(41)),
        ("CHALLENGE max_record 0", b"\x01" + bytes(32) + bytes(4) + bytes(6)),
        ("AUTH name length larger than the rest", good_auth[:97] + bytes([200]) + good_auth[98:]),
        ("AUTH with an empty name", good_auth[:97] + b"\x00"),
        ("AUTH name not UTF-8", good_auth[:97] + b"\x02\xff\xfe"),
        ("WANT with a 31-byte peer id", want[:-1]),
        ("WANT with a trailing byte", want + b"\x00"),
        ("PAIRED without its peer id", b"\x06\x00\x00\x00\x01"),
        ("UNPAIRED of 5 bytes", b"\x07\x00\x00\x00\x01\x00"),
        ("SEND without a record", b"\x08\x00\x00\x00\x01"),
        ("SEND a record starting with 3 (STUN)", b"\x08\x00\x00\x00\x01\x03abc"),
        ("RECV a record starting with 16", b"\x09\x00\x00\x00\x01\x10abc"),
        ("SEND a 65536-byte record", b"\x08\x00\x00\x00\x01\x04" + bytes(65535)),
        ("SENDTO without a record", b"\x0a" + bytes(32)),
        ("SENDTO with a 31-byte peer id and no record", b"\x0a" + bytes(31)),
        ("SENDTO a record starting with 3 (STUN)", b"\x0a" + bytes(32) + b"\x03abc"),
    ]
    out = []
    for why, data in samples:
        try:
            m.decode_untrusted(data)
        except ProtocolError as exc:
            out.append(
                {
                    "why": why,
                    "hex": data.hex() if len(data) < 200 else None,
                    "length": len(data),
                    "error": exc.code.name,
                }
            )
            continue
        raise RuntimeError(f"the decoder accepted a malformed message: {why}")
    return out


def build_vectors() -> dict[str, str]:
    """``{"relay.json": text}``."""
    auth_json, auth = _auth()
    data = {
        "description": (
            "WebSocket relay messages (u8 type || body, one binary WebSocket message each) with their "
            "JSON form; malformed messages a receiver treats as a protocol error (close code 4000; "
            "'hex' is null for the long one: it is the bytes shown by 'why', 'length' bytes in all); "
            "one authentication: the message nonce || u8 len(name) || name, the identity.md §3.1 "
            "signed bytes under domain p2pos/relay-auth, the Ed25519 signature and the AUTH message."
        ),
        "spec": ["spec/relay.md §2", "spec/relay.md §3.2"],
        "auth": auth_json,
        "messages": _messages(auth),
        "malformed": _malformed(auth),
    }
    return {"relay.json": json.dumps(data, indent=2, ensure_ascii=False) + "\n"}


def main(argv: list[str] | None = None) -> int:
    spec = importlib.util.spec_from_file_location("generate_frames", VECTORS_DIR / "generate_frames.py")
    if spec is None or spec.loader is None:
        raise RuntimeError("generate_frames.py not found beside generate_relay.py")
    frames = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(frames)
    status: int = frames.write_or_check(build_vectors(), argv, script="generate_relay.py", doc=__doc__)
    return status


if __name__ == "__main__":
    sys.exit(main())
