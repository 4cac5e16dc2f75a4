"""Write the STUN vectors of spec/nat.md: stun_rfc5769.json and stun.json.

Run from the repository root::

    .venv/bin/python spec/vectors/generate_stun.py           # (re)write both
    .venv/bin/python spec/vectors/generate_stun.py --check   # exit 1 if one differs

``stun_rfc5769.json`` holds published sample messages, byte for byte, each with its source and
the inputs it is made of (attribute values, padding byte, credentials), so an implementation can
parse it, check its MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT, and build it again: RFC 5769
§2.1-§2.4, and RFC 8489 Appendix B.1 as corrected by erratum 6268 (the published B.1 bytes carry a
wrong length; the erratum's bytes verify).  ``stun.json`` holds what p2pos itself sends: the
rendezvous node's Binding answers (spec/rendezvous.md §5) with and without an alternate address,
and the discovery client's request (spec/nat.md §2), from fixed transaction ids.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from p2pos.proto.nat import stun
from p2pos.proto.nat import stun_message as sm

VECTORS_DIR = Path(__file__).resolve().parent
Json = dict[str, Any]

SHORT_TERM = "VOkJxbRl1RmTxUk/WvJxBt"
#: RFC 5769 §2.4 / RFC 8489 B.1: the password "The\u00adM\u00aatr\u2168" after OpaqueString is "TheMatrIX".
USER, REALM, PASSWORD = "\u30de\u30c8\u30ea\u30c3\u30af\u30b9", "example.org", "TheMatrIX"
RFC5769_URL = "https://www.rfc-editor.org/rfc/rfc5769"


def _attr(atype: int, name: str, value: bytes) -> Json:
    return {"type": f"0x{atype:04x}", "name": name, "hex": value.hex()}


def _sample(  # noqa: PLR0917 - one argument per field of the sample
    name: str, source: str, klass: int, txid: str, attrs: list[Json], pad: int, integrity: Json
) -> Json:
    key = bytes.fromhex(integrity["key_hex"])
    values = [(int(a["type"], 16), bytes.fromhex(a["hex"])) for a in attrs]
    wire = sm.encode(
        sm.BINDING,
        klass,
        bytes.fromhex(txid),
        values,
        key=key if integrity["attribute"] == "MESSAGE-INTEGRITY" else None,
        key_sha256=key if integrity["attribute"] == "MESSAGE-INTEGRITY-SHA256" else None,
        fingerprint=integrity["fingerprint"],
        pad=pad,
    )
    return {
        "name": name,
        "source": source,
        "method": "0x001",
        "class": ["request", "indication", "success", "error"][klass],
        "transaction_id": txid,
        "attributes": attrs,
        "padding_byte": f"0x{pad:02x}",
        "integrity": integrity,
        "hex": wire.hex(),
    }


def _short_term(fingerprint: bool = True) -> Json:
    return {
        "attribute": "MESSAGE-INTEGRITY",
        "credential": "short-term (RFC 8489 §9.1): the key is the password",
        "password": SHORT_TERM,
        "key_hex": sm.short_term_key(SHORT_TERM).hex(),
        "fingerprint": fingerprint,
    }


def rfc_samples() -> list[Json]:
    txid = "b7e7a701bc34d686fa87dfae"
    software = _attr(sm.SOFTWARE, "SOFTWARE", b"STUN test client")
    vector = _attr(sm.SOFTWARE, "SOFTWARE", b"test vector")
    return [
        _sample(
            "RFC 5769 §2.1 sample request",
            f"{RFC5769_URL}#section-2.1",
            sm.REQUEST,
            txid,
            [
                software,
                _attr(0x0024, "PRIORITY", bytes.fromhex("6e0001ff")),
                _attr(0x8029, "ICE-CONTROLLED", bytes.fromhex("932ff9b151263b36")),
                _attr(sm.USERNAME, "USERNAME", b"evtj:h6vY"),
            ],
            0x20,
            _short_term(),
        ),
        _sample(
            "RFC 5769 §2.2 sample IPv4 response",
            f"{RFC5769_URL}#section-2.2",
            sm.SUCCESS,
            txid,
            [
                vector,
                _attr(
                    sm.XOR_MAPPED_ADDRESS,
                    "XOR-MAPPED-ADDRESS",
                    sm.xor_address(("192.0.2.1", 32853), bytes.fromhex(txid)),
                ),
            ],
            0x20,
            _short_term(),
        ),
        _sample(
            "RFC 5769 §2.3 sample IPv6 response",
            f"{RFC5769_URL}#section-2.3",
            sm.SUCCESS,
            txid,
            [
                vector,
                _attr(
                    sm.XOR_MAPPED_ADDRESS,
                    "XOR-MAPPED-ADDRESS",
                    sm.xor_address(("2001:db8:1234:5678:11:2233:4455:6677", 32853), bytes.fromhex(txid)),
                ),
            ],
            0x20,
            _short_term(),
        ),
        _sample(
            "RFC 5769 §2.4 sample request with long-term authentication",
            f"{RFC5769_URL}#section-2.4",
            sm.REQUEST,
            "78ad3433c6ad72c029da412e",
            [
                _attr(sm.USERNAME, "USERNAME", USER.encode()),
                _attr(sm.NONCE, "NONCE", b"f//499k954d6OL34oL9FSTvy64sA"),
                _attr(sm.REALM, "REALM", REALM.encode()),
            ],
            0x00,
            {
                "attribute": "MESSAGE-INTEGRITY",
                "credential": "long-term (RFC 8489 §9.2.2): MD5(username ':' realm ':' password)",
                "username": USER,
                "realm": REALM,
                "password": PASSWORD,
                "key_hex": sm.long_term_key(USER, REALM, PASSWORD).hex(),
                "fingerprint": False,
            },
        ),
        _sample(
            "RFC 8489 Appendix B.1 sample request with MESSAGE-INTEGRITY-SHA256 and USERHASH",
            "https://www.rfc-editor.org/rfc/rfc8489#appendix-B.1 as corrected by https://www.rfc-editor.org/errata/eid6268",
            sm.REQUEST,
            "78ad3433c6ad72c029da412e",
            [
                _attr(sm.USERHASH, "USERHASH", sm.userhash(USER, REALM)),
                _attr(sm.NONCE, "NONCE", b"obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA"),
                _attr(sm.REALM, "REALM", REALM.encode()),
                _attr(sm.PASSWORD_ALGORITHM, "PASSWORD-ALGORITHM", sm.password_algorithm(sm.PASSWORD_SHA256)),
            ],
            0x00,
            {
                "attribute": "MESSAGE-INTEGRITY-SHA256",
                "credential": "long-term with PASSWORD-ALGORITHM SHA-256: SHA-256(username ':' realm ':' password)",
                "username": USER,
                "realm": REALM,
                "password": PASSWORD,
                "key_hex": sm.long_term_key(USER, REALM, PASSWORD, sm.PASSWORD_SHA256).hex(),
                "fingerprint": False,
            },
        ),
    ]


#: The published bytes (the RFCs' hex dumps joined), kept apart from what ``rfc_samples`` builds,
#: so that generating checks the encoder against them.
PUBLISHED = {
    "RFC 5769 §2.1 sample request": (
        "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74002400046e0001ff"
        "80290008932ff9b151263b36000600096576746a3a68367659202020000800149aeaa70cbfd8cb56781ef2b5b2d3f249"
        "c1b571a280280004e57a3bcf"
    ),
    "RFC 5769 §2.2 sample IPv4 response": (
        "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000080001a147e112a643"
        "000800142b91f599fd9e90c38c7489f92af9ba53f06be7d780280004c07d4c96"
    ),
    "RFC 5769 §2.3 sample IPv6 response": (
        "010100482112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000140002a1470113a9fa"
        "a5d3f179bc25f4b5bed2b9d900080014a382954e4be67bf11784c97c8292c275bfe3ed4180280004c8fb0b4c"
    ),
    "RFC 5769 §2.4 sample request with long-term authentication": (
        "000100602112a44278ad3433c6ad72c029da412e00060012e3839ee38388e383aae38383e382afe382b90000"
        "0015001c662f2f3439396b39353464364f4c33346f4c394653547679363473410014000b6578616d706c652e6f7267"
        "0000080014f67024656dd64a3e02b8e0712e85c9a28ca89666"
    ),
    "RFC 8489 Appendix B.1 sample request with MESSAGE-INTEGRITY-SHA256 and USERHASH": (
        "000100902112a44278ad3433c6ad72c029da412e001e00204a3cf38fef6992bda952c6780417da0f24819415569e60b2"
        "05c46e41407f1704001500296f624d61744a6f733241414143662f2f3439396b39353464364f4c33346f4c3946535476"
        "79363473410000000014000b6578616d706c652e6f726700001d000400020000001c0020b5c7bf005b6c52a21c51c5e8"
        "92f81924136296cb927c43149309278cc6518e65"
    ),
}


def fixed(label: str, size: int = 12) -> bytes:
    """Fixed bytes named by ``label``: BLAKE2b-256("p2pos test vector: " || label), cut to ``size``."""
    return hashlib.blake2b(b"p2pos test vector: " + label.encode(), digest_size=32).digest()[:size]


PRIMARY, ALTERNATE = ("198.18.0.1", 3478), ("198.18.0.2", 3479)
#: The node's instance (RDV-5.5), which it draws at start.
INSTANCE = fixed("node instance", 8)


def node_answers() -> list[Json]:
    plain = stun.BindingServer(primary=PRIMARY, instance=INSTANCE)
    five = stun.BindingServer(primary=PRIMARY, alternate=ALTERNATE, instance=INSTANCE)
    out: list[Json] = []

    def add(
        name: str, server: stun.BindingServer, request: bytes, source: tuple[str, int], on: tuple[int, int]
    ) -> None:
        answer = server.answer_untrusted(request, source, stun.socket_key(*on))
        row: Json = {
            "name": name,
            "node_alternate": list(server.alternate) if server.alternate else None,
            "received_on": list(server.address(*on)) if server.alternate else list(PRIMARY),
            "source": list(source),
            "request_hex": request.hex(),
        }
        if answer is None:
            row["answer"] = None
        else:
            role = server.role(answer.local)
            row["answer_hex"] = answer.data.hex()
            row["answer_from"] = list(server.address(*role)) if role is not None else list(PRIMARY)
            row["answer_to"] = list(answer.to)
            row["ratio"] = round(len(answer.data) / len(request), 3)
        out.append(row)

    v4, v6 = ("198.18.9.9", 40000), ("2001:2::9", 40000)
    probe = sm.encode(
        sm.BINDING, sm.REQUEST, fixed("discovery probe"),
        [(sm.CHANGE_REQUEST, sm.change_request(0)), (sm.SOFTWARE, b"p2pos")], fingerprint=True,
    )  # fmt: skip
    change_both = sm.encode(
        sm.BINDING, sm.REQUEST, fixed("change ip and port"),
        [(sm.CHANGE_REQUEST, sm.change_request(sm.CHANGE_IP | sm.CHANGE_PORT)), (sm.SOFTWARE, b"p2pos")],
        fingerprint=True,
    )  # fmt: skip
    change_port = stun.binding_request(fixed("change port"), sm.CHANGE_PORT)
    bare = stun.binding_request(fixed("bare request"))
    keepalive = sm.encode(sm.BINDING, sm.REQUEST, fixed("keepalive"), [], fingerprint=True)
    add(
        "bare request, node without alternate: XOR-MAPPED-ADDRESS, P2POS-INSTANCE (RDV-5.1, RDV-5.5)",
        plain,
        bare,
        v4,
        (0, 0),
    )
    add("bare request from IPv6, node without alternate (RDV-5.1, RDV-5.5)", plain, bare, v6, (0, 0))
    add(
        "bare request, node with alternate: the RFC 5780 addresses fill 3x, no instance (NAT-3.1.4)",
        five,
        bare,
        v4,
        (0, 0),
    )
    add(
        "keepalive (FINGERPRINT, 28 bytes) from IPv6, node with alternate: all four fit (NAT-3.1.4)",
        five,
        keepalive,
        v6,
        (0, 0),
    )
    add("CHANGE-REQUEST to a node without alternate: 420 (NAT-3.1.3)", plain, change_port, v4, (0, 0))
    add("discovery probe, node with alternate: RESPONSE-ORIGIN, OTHER-ADDRESS (NAT-3.1.2)", five, probe, v4, (0, 0))
    add("discovery probe on the alternate IP and port (NAT-3.1.2)", five, probe, v4, (1, 1))
    add("change IP and port: answered from the alternate socket (NAT-3.1.3)", five, change_both, v4, (0, 0))
    add("bare change-port request (28 bytes): answered from (IP1, P2) (NAT-3.1.3)", five, change_port, v4, (0, 0))
    add("bare request from IPv6, node with alternate: trimmed to 3x (RDV-5.4, NAT-3.1.4)", five, bare, v6, (0, 0))
    add("discovery probe from IPv6: all three addresses fit (NAT-3.1.4)", five, probe, v6, (0, 0))
    response_port = sm.encode(
        sm.BINDING, sm.REQUEST, fixed("response port"),
        [(sm.RESPONSE_PORT, (40002).to_bytes(2, "big") + bytes(2)), (sm.CHANGE_REQUEST, sm.change_request(6))],
    )  # fmt: skip
    padding = sm.encode(
        sm.BINDING, sm.REQUEST, fixed("padding"),
        [(sm.CHANGE_REQUEST, sm.change_request(6)), (sm.PADDING, bytes(96))],
    )  # fmt: skip
    username = sm.encode(sm.BINDING, sm.REQUEST, fixed("username"), [(sm.USERNAME, b"user")])
    add("RESPONSE-PORT: to the source IP at that port, never another IP (NAT-3.1.5)", five, response_port, v4, (0, 0))
    add("PADDING: the answer is padded to the request's size (NAT-3.1.6)", five, padding, v4, (0, 0))
    add("USERNAME (no credentials here): 420 listing it, never a success (RDV-5.2)", five, username, v4, (0, 0))
    return out


def build_vectors() -> dict[str, str]:
    """``{"stun_rfc5769.json": text, "stun.json": text}``."""
    samples = rfc_samples()
    for sample in samples:
        if sample["hex"] != PUBLISHED[sample["name"]]:
            raise RuntimeError(f"encode() does not rebuild {sample['name']}")
    rfc = {
        "description": (
            "Published STUN sample messages, byte for byte, with their sources and the inputs they are made "
            "of: attribute values before padding, the padding byte (RFC 5769's samples pad with spaces), and "
            "the credential whose key verifies MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256. FINGERPRINT is "
            "CRC-32 xor 0x5354554e. The passwords are given after OpaqueString preparation (RFC 8265)."
        ),
        "spec": ["spec/nat.md §2", "spec/turn.md §2"],
        "samples": samples,
    }
    own = {
        "description": (
            "What p2pos sends: the rendezvous node's answers to STUN Binding requests (spec/rendezvous.md §5), "
            "without and with an alternate address (primary 198.18.0.1:3478, alternate 198.18.0.2:3479; "
            "received_on and answer_from name the node's sockets), and the discovery client's request "
            "(CHANGE-REQUEST, SOFTWARE, FINGERPRINT). instance: the node's P2POS-INSTANCE (RDV-5.5), "
            "BLAKE2b-256('p2pos test vector: node instance') cut to 8 bytes. Transaction ids are "
            "BLAKE2b-256('p2pos test vector: ' || label) cut to 12 bytes. answer null: the node drops the "
            "request. ratio: answer / request size, at most 3 (RDV-5.4)."
        ),
        "spec": ["spec/rendezvous.md §5", "spec/nat.md §2", "spec/nat.md §3"],
        "primary": list(PRIMARY),
        "alternate": list(ALTERNATE),
        "instance": INSTANCE.hex(),
        "answers": node_answers(),
    }
    return {
        "stun_rfc5769.json": json.dumps(rfc, indent=2, ensure_ascii=False) + "\n",
        "stun.json": json.dumps(own, indent=2, ensure_ascii=False) + "\n",
    }


def main(argv: list[str]) -> int:
    check = "--check" in argv
    status = 0
    for name, text in build_vectors().items():
        path = VECTORS_DIR / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                print(f"{path} is out of date: run spec/vectors/generate_stun.py", file=sys.stderr)
                status = 1
        else:
            path.write_text(text, encoding="utf-8")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
