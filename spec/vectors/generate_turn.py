"""Write the STUN/TURN vectors (spec/vectors/turn.json) of spec/turn.md.

Run from the repository root::

    .venv/bin/python spec/vectors/generate_turn.py           # (re)write turn.json
    .venv/bin/python spec/vectors/generate_turn.py --check   # exit 1 if it differs

Holds: the four sample messages of RFC 5769 §2.1-§2.4 (bytes as published, with what each
decodes to and the key that verifies its MESSAGE-INTEGRITY); the messages p2pos's TURN client
sends (Allocate, authenticated Allocate, CreatePermission, ChannelBind, Refresh, release,
Send indication) built from fixed transaction ids; ChannelData over UDP and over a stream;
a REST credential from a fixed secret; malformed messages with the error each must give.
Fixed bytes come from labels as in ``generate.py``: ``BLAKE2b-256("p2pos test vector: " || label)``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from p2pos.proto.nat import stun_message as sm
from p2pos.proto.nat.turn_config import rest_credentials
from p2pos.proto.nat.turn_framing import channel_data

VECTORS_DIR = Path(__file__).resolve().parent
Json = dict[str, Any]

# RFC 5769 §2.1-§2.4, byte for byte (the hex dumps of the RFC joined).
RFC5769_REQUEST = (
    "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74002400046e0001ff"
    "80290008932ff9b151263b36000600096576746a3a68367659202020000800149aeaa70cbfd8cb56781ef2b5b2d3f249"
    "c1b571a280280004e57a3bcf"
)
RFC5769_IPV4 = (
    "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000080001a147e112a643"
    "000800142b91f599fd9e90c38c7489f92af9ba53f06be7d780280004c07d4c96"
)
RFC5769_IPV6 = (
    "010100482112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000140002a1470113a9fa"
    "a5d3f179bc25f4b5bed2b9d900080014a382954e4be67bf11784c97c8292c275bfe3ed4180280004c8fb0b4c"
)
RFC5769_LONG_TERM = (
    "000100602112a44278ad3433c6ad72c029da412e00060012e3839ee38388e383aae38383e382afe382b90000"
    "0015001c662f2f3439396b39353464364f4c33346f4c394653547679363473410014000b6578616d706c652e6f7267"
    "0000080014f67024656dd64a3e02b8e0712e85c9a28ca89666"
)
SHORT_TERM_PASSWORD = "VOkJxbRl1RmTxUk/WvJxBt"
#: RFC 5769 §2.4: user "マトリックス", realm "example.org", password "The\u00adM\u00aatr\u2168",
#: which OpaqueString preparation (RFC 8265) maps to "TheMatrIX", the form the key is made of.
LONG_TERM = ("\u30de\u30c8\u30ea\u30c3\u30af\u30b9", "example.org", "TheMatrIX")

PEER4 = ("198.18.0.20", 40000)
PEER6 = ("2001:2::20", 40001)
USER, PASSWORD, REALM, NONCE = "alice", "secret", "p2pos.test", "0123456789abcdef"


def fixed(label: str, size: int = 32) -> bytes:
    """Fixed bytes named by ``label``: BLAKE2b-256("p2pos test vector: " || label), cut to ``size``."""
    return hashlib.blake2b(b"p2pos test vector: " + label.encode(), digest_size=32).digest()[:size]


def _attrs(message: sm.Message) -> list[Json]:
    return [{"type": f"0x{t:04x}", "hex": v.hex()} for t, v in message.attributes]


def _rfc5769() -> list[Json]:
    ipv4 = sm.decode_untrusted(bytes.fromhex(RFC5769_IPV4))
    ipv6 = sm.decode_untrusted(bytes.fromhex(RFC5769_IPV6))
    return [
        {
            "name": "RFC 5769 §2.1 sample request (short-term credential)",
            "hex": RFC5769_REQUEST,
            "method": "0x001",
            "class": "request",
            "integrity_key_hex": SHORT_TERM_PASSWORD.encode().hex(),
            "integrity_key": f"the password {SHORT_TERM_PASSWORD!r} itself (short-term, RFC 8489 §9.1)",
            "attributes": _attrs(sm.decode_untrusted(bytes.fromhex(RFC5769_REQUEST))),
        },
        {
            "name": "RFC 5769 §2.2 sample IPv4 response",
            "hex": RFC5769_IPV4,
            "method": "0x001",
            "class": "success",
            "integrity_key_hex": SHORT_TERM_PASSWORD.encode().hex(),
            "xor_mapped_address": list(
                sm.decode_xor_address_untrusted(ipv4.get(sm.XOR_MAPPED_ADDRESS) or b"", ipv4.transaction_id)
            ),
            "attributes": _attrs(ipv4),
        },
        {
            "name": "RFC 5769 §2.3 sample IPv6 response",
            "hex": RFC5769_IPV6,
            "method": "0x001",
            "class": "success",
            "integrity_key_hex": SHORT_TERM_PASSWORD.encode().hex(),
            "xor_mapped_address": list(
                sm.decode_xor_address_untrusted(ipv6.get(sm.XOR_MAPPED_ADDRESS) or b"", ipv6.transaction_id)
            ),
            "attributes": _attrs(ipv6),
        },
        {
            "name": "RFC 5769 §2.4 sample request with long-term authentication",
            "hex": RFC5769_LONG_TERM,
            "method": "0x001",
            "class": "request",
            "long_term": {"username": LONG_TERM[0], "realm": LONG_TERM[1], "password": LONG_TERM[2]},
            "integrity_key_hex": sm.long_term_key(*LONG_TERM).hex(),
            "integrity_key": "MD5(username ':' realm ':' password)",
            "attributes": _attrs(sm.decode_untrusted(bytes.fromhex(RFC5769_LONG_TERM))),
        },
    ]


def _client_messages() -> list[Json]:
    key = sm.long_term_key(USER, REALM, PASSWORD)
    auth = [(sm.USERNAME, USER.encode()), (sm.REALM, REALM.encode()), (sm.NONCE, NONCE.encode())]
    software = [(sm.SOFTWARE, b"p2pos")]
    out: list[Json] = []

    def add(name: str, method: int, klass: int, attrs: list[tuple[int, bytes]], signed: bool) -> None:
        txid = fixed(name, 12)
        real = [
            (t, sm.xor_address(PEER4 if v == b"v4" else PEER6, txid) if v in (b"v4", b"v6") else v) for t, v in attrs
        ]
        wire = sm.encode(method, klass, txid, real, key=key if signed else None, fingerprint=klass == sm.REQUEST)
        out.append(
            {
                "name": name,
                "transaction_id_label": name,
                "transaction_id": txid.hex(),
                "authenticated": signed,
                "hex": wire.hex(),
            }
        )

    transport = [(sm.REQUESTED_TRANSPORT, sm.requested_transport())]
    add("Allocate, first try (no credentials)", sm.ALLOCATE, sm.REQUEST, transport + software, False)
    add("Allocate with long-term credentials", sm.ALLOCATE, sm.REQUEST, transport + software + auth, True)
    add(
        "CreatePermission for 198.18.0.20",
        sm.CREATE_PERMISSION,
        sm.REQUEST,
        [(sm.XOR_PEER_ADDRESS, b"v4"), *software, *auth],
        True,
    )
    bind = [(sm.CHANNEL_NUMBER, sm.channel_number(0x4000)), (sm.XOR_PEER_ADDRESS, b"v6")]
    add("ChannelBind 0x4000 to [2001:2::20]:40001", sm.CHANNEL_BIND, sm.REQUEST, bind + software + auth, True)
    add("Refresh (server's default lifetime)", sm.REFRESH, sm.REQUEST, software + auth, True)
    add("Refresh LIFETIME=0 (release)", sm.REFRESH, sm.REQUEST, [(sm.LIFETIME, sm.u32(0)), *software, *auth], True)
    add(
        "Send indication to 198.18.0.20:40000",
        sm.SEND,
        sm.INDICATION,
        [(sm.XOR_PEER_ADDRESS, b"v4"), (sm.DATA_ATTR, b"\x04hello")],
        False,
    )
    return out


def _channel_data() -> list[Json]:
    return [
        {
            "channel": "0x4000",
            "data": "0401020304",
            "stream": False,
            "hex": channel_data(0x4000, bytes.fromhex("0401020304"), stream=False).hex(),
        },
        {
            "channel": "0x4000",
            "data": "0401020304",
            "stream": True,
            "hex": channel_data(0x4000, bytes.fromhex("0401020304"), stream=True).hex(),
        },
        {"channel": "0x4fff", "data": "", "stream": True, "hex": channel_data(0x4FFF, b"", stream=True).hex()},
    ]


def _malformed() -> list[Json]:
    good = bytes.fromhex(RFC5769_IPV4)
    cases = [
        ("shorter than a header", good[:19]),
        ("top bits set", b"\xc1" + good[1:]),
        ("bad magic cookie", good[:4] + b"\x21\x12\xa4\x43" + good[8:]),
        ("length not a multiple of 4", good[:2] + b"\x00\x3d" + good[4:] + b"\x00"),
        ("length larger than the message", good[:2] + b"\x00\x40" + good[4:]),
        ("trailing bytes", good + b"\x00\x00\x00\x00"),
        ("attribute runs past the end", good[:2] + b"\x00\x04" + good[4:20] + b"\x80\x22\x00\x08"),
        ("attribute after MESSAGE-INTEGRITY", good[:-8] + b"\x80\x22\x00\x04abcd"),
        ("FINGERPRINT wrong", good[:-1] + bytes([good[-1] ^ 1])),
    ]
    out = []
    for name, data in cases:
        try:
            sm.decode_untrusted(data)
        except sm.StunError as exc:
            out.append({"name": name, "hex": data.hex(), "error": str(exc)})
        else:
            raise AssertionError(f"malformed vector {name!r} parsed")
    return out


def build_vectors() -> dict[str, str]:
    """``{"turn.json": text}``."""
    rest = rest_credentials("p2pos-shared-secret", "alice", 1893456000)
    data = {
        "description": (
            "STUN (RFC 8489) and TURN (RFC 8656) messages as p2pos reads and writes them: the RFC 5769 "
            "samples, the requests and indications the TURN client sends (long-term key MD5(user:realm:pass) "
            "for 'alice'/'secret' in realm 'p2pos.test', nonce '0123456789abcdef'; peers 198.18.0.20:40000 and "
            "[2001:2::20]:40001), ChannelData over UDP and over a stream (padded to 4), a coturn REST credential, "
            "and malformed messages with the error a parser gives."
        ),
        "spec": ["spec/turn.md §2", "spec/turn.md §3", "spec/turn.md §4"],
        "rfc5769": _rfc5769(),
        "client_messages": {
            "long_term": {"username": USER, "realm": REALM, "password": PASSWORD, "nonce": NONCE},
            "key_hex": sm.long_term_key(USER, REALM, PASSWORD).hex(),
            "peers": [list(PEER4), list(PEER6)],
            "messages": _client_messages(),
        },
        "channel_data": _channel_data(),
        "rest_credential": {
            "secret": "p2pos-shared-secret",
            "name": "alice",
            "expiry": 1893456000,
            "username": rest.username,
            "password": rest.password,
        },
        "malformed": _malformed(),
    }
    return {"turn.json": json.dumps(data, indent=2, ensure_ascii=False) + "\n"}


def main(argv: list[str] | None = None) -> int:
    spec = importlib.util.spec_from_file_location("generate_frames", VECTORS_DIR / "generate_frames.py")
    if spec is None or spec.loader is None:
        raise RuntimeError("generate_frames.py not found beside generate_turn.py")
    frames = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(frames)
    status: int = frames.write_or_check(build_vectors(), argv, script="generate_turn.py", doc=__doc__)
    return status


if __name__ == "__main__":
    sys.exit(main())
