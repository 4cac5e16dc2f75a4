# ruff: noqa: E501 (a case title is one row of the table of spec/conformance.md §4, kept whole)
"""STUN cases (spec/nat.md §2, §3.1): the codec against the published samples, and a node's
Binding answers, with and without an alternate address.

The codec cases use ``stun_decode`` and ``stun_encode``; the node cases the ``stun_server``
role (spec/conformance.md §3.12): the runner sends Binding requests to one of the node's
sockets with ``nat_receive`` and reads each answer's bytes, destination and socket.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

from p2pos.proto.nat import stun_message as sm

from .checks import expect, expect_eq
from .iut import Iut
from .nat_net import NODE, NODE_ALT, Role, Sent, address_attr, binding_request, decoded, only, text
from .registry import case

CODEC, BINDING, ALTERNATE = "nat.md §2.1", "nat.md §2.4", "nat.md §3.1"
CLIENT = ("198.18.5.5", 40000)
CLIENT6 = ("2001:2::5", 40000)
VECTORS = Path(__file__).resolve().parents[1] / "spec" / "vectors" / "stun_rfc5769.json"


def samples() -> list[dict[str, Any]]:
    """The published samples of spec/vectors/stun_rfc5769.json."""
    data: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))
    return list(data["samples"])


def _keys(sample: dict[str, Any]) -> dict[str, str]:
    integrity = sample["integrity"]
    name = "key" if integrity["attribute"] == "MESSAGE-INTEGRITY" else "key_sha256"
    return {name: integrity["key_hex"]}


@case(
    "nat/stun/1",
    section=CODEC,
    title="the RFC 5769 samples parse, with their attributes, and their integrity holds",
    requirements=("NAT-2.1", "NAT-2.2", "CONF-3.12.1"),
)
def _(iut: Iut) -> str | None:
    for sample in samples():
        got = iut.ok("stun_decode", data=sample["hex"], **_keys(sample))
        name = sample["name"]
        expect_eq(got.get("method"), int(sample["method"], 16), f"{name}: method")
        expect_eq(got.get("class"), sample["class"], f"{name}: class")
        expect_eq(got.get("transaction_id"), sample["transaction_id"], f"{name}: transaction id")
        want = [{"type": int(a["type"], 16), "value": a["hex"]} for a in sample["attributes"]]
        expect_eq(got.get("attributes"), want, f"{name}: attributes")
        expect_eq(got.get("fingerprint"), sample["integrity"]["fingerprint"], f"{name}: FINGERPRINT present")
        field = "integrity" if "key" in _keys(sample) else "integrity_sha256"
        expect_eq(
            got.get(field),
            True,
            f"{name}: {sample['integrity']['attribute']} under {sample['integrity']['credential']}",
        )
    return f"{len(samples())} samples"


@case(
    "nat/stun/2",
    section=CODEC,
    title="the RFC 5769 samples re-encode byte for byte from their inputs",
    requirements=("NAT-2.1", "NAT-2.2"),
)
def _(iut: Iut) -> str | None:
    for sample in samples():
        got = iut.ok(
            "stun_encode",
            method=int(sample["method"], 16),
            **{"class": sample["class"]},
            transaction_id=sample["transaction_id"],
            attributes=[{"type": int(a["type"], 16), "value": a["hex"]} for a in sample["attributes"]],
            fingerprint=sample["integrity"]["fingerprint"],
            pad=int(sample["padding_byte"], 16),
            **_keys(sample),
        )
        expect_eq(got.get("data"), sample["hex"], f"{sample['name']}: encoded")
    return None


@case(
    "nat/stun/3",
    section=CODEC,
    title="a changed byte fails MESSAGE-INTEGRITY; a wrong FINGERPRINT or a bad header is not STUN",
    requirements=("NAT-2.2", "NAT-2.5"),
)
def _(iut: Iut) -> str | None:
    sample = samples()[1]  # the IPv4 response: MESSAGE-INTEGRITY then FINGERPRINT
    data = bytes.fromhex(sample["hex"])
    # A byte of SOFTWARE changed, FINGERPRINT recomputed: still STUN, but the integrity fails.
    message = sm.decode_untrusted(data)
    attrs = [(t, v) for t, v in message.attributes if t not in (sm.MESSAGE_INTEGRITY, sm.FINGERPRINT)]
    good_key = bytes.fromhex(sample["integrity"]["key_hex"])
    signed = sm.encode(
        message.method, message.klass, message.transaction_id, attrs, key=good_key, fingerprint=True, pad=0x20
    )
    expect_eq(signed.hex(), sample["hex"], "the runner's own re-encoding")
    forged = bytearray(signed)
    forged[28] ^= 0x01  # inside SOFTWARE's value
    head = bytes(forged[:-8])
    crc = (zlib.crc32(head) ^ sm.FINGERPRINT_XOR) & 0xFFFFFFFF
    forged[-4:] = crc.to_bytes(4, "big")
    got = iut.ok("stun_decode", data=bytes(forged).hex(), key=good_key.hex())
    expect_eq(got.get("integrity"), False, "MESSAGE-INTEGRITY of a changed message")
    got = iut.ok("stun_decode", data=sample["hex"], key=(b"wrong" + good_key).hex())
    expect_eq(got.get("integrity"), False, "MESSAGE-INTEGRITY under another key")
    bad_fp = bytearray(data)
    bad_fp[-1] ^= 0xFF
    for what, bad in (
        ("a wrong FINGERPRINT", bytes(bad_fp)),
        ("a wrong magic cookie", data[:4] + b"\x21\x12\xa4\x43" + data[8:]),
        ("a length beyond the datagram", data[:2] + (len(data)).to_bytes(2, "big") + data[4:]),
        ("a truncated attribute", data[:-2]),
        ("the top bits set", bytes([data[0] | 0x80]) + data[1:]),
    ):
        expect_eq(iut.error("stun_decode", data=bad.hex()), "MALFORMED_MESSAGE", f"{what}: stun_decode's error")
    return None


def server(iut: Iut, alternate: bool = True) -> Role:
    role = Role(iut)
    role.start("stun_server", 0.0, primary=text(NODE), alternate=text(NODE_ALT) if alternate else None)
    return role


def ask(role: Role, data: bytes, local: tuple[str, int] = NODE, source: tuple[str, int] = CLIENT) -> list[Sent]:
    return role.receive(data, source, text(local), 1.0)


TXID = bytes(range(1, 13))


@case(
    "nat/stun/4",
    section=BINDING,
    title="a Binding request is answered from its socket, to its source, with its XOR-MAPPED-ADDRESS",
    requirements=("NAT-2.1", "CONF-3.12.2"),
)
def _(iut: Iut) -> str | None:
    role = server(iut, alternate=False)
    for source in (CLIENT, CLIENT6):
        answer = only(ask(role, binding_request(TXID), NODE, source), f"answer to {text(source)}")
        expect_eq(answer.to, source, "the answer's destination")
        expect_eq(answer.local, text(NODE), "the socket it leaves")
        message = decoded(answer.data, "the answer")
        expect_eq((message.method, message.klass), (sm.BINDING, sm.SUCCESS), "a Binding success")
        expect_eq(message.transaction_id, TXID, "its transaction id")
        expect_eq(address_attr(message, sm.XOR_MAPPED_ADDRESS, "answer"), source, "XOR-MAPPED-ADDRESS")
    return None


@case(
    "nat/stun/5",
    section=BINDING,
    title="a request with a wrong FINGERPRINT is dropped; one with an unknown comprehension-required attribute or credentials gets 420",
    requirements=("NAT-2.2", "NAT-2.5"),
)
def _(iut: Iut) -> str | None:
    role = server(iut, alternate=False)
    good = binding_request(TXID)
    bad = bytearray(good)
    bad[-1] ^= 0x55
    expect_eq(ask(role, bytes(bad)), [], "answers to a request whose FINGERPRINT does not match")
    expect_eq(ask(role, b"\x00\x01\x00\x00garbage"), [], "answers to garbage")
    for what, attrs in (
        ("an unknown comprehension-required attribute 0x7ff0", [(0x7FF0, b"abcd")]),
        ("USERNAME", [(sm.USERNAME, b"alice")]),
    ):
        answer = only(ask(role, binding_request(TXID, attrs)), what)
        message = decoded(answer.data, f"the answer to {what}")
        expect_eq((message.method, message.klass), (sm.BINDING, sm.ERROR), f"{what}: an error response")
        error = message.error()
        expect(error is not None and error[0] == 420, f"{what}: error 420, got {error}")
        listed = sm.decode_unknown_attributes_untrusted(message.get(sm.UNKNOWN_ATTRIBUTES) or b"")
        expect(attrs[0][0] in listed, f"{what}: UNKNOWN-ATTRIBUTES lists 0x{attrs[0][0]:04x}, got {listed}")
        expect_eq(answer.to, CLIENT, f"{what}: the error's destination")
    # An unknown comprehension-optional attribute (0x8000-0xFFFF) is ignored.
    answer = only(ask(role, binding_request(TXID, [(0xC001, b"opt!")])), "comprehension-optional attribute")
    expect_eq(decoded(answer.data, "answer").klass, sm.SUCCESS, "the answer to an unknown optional attribute")
    return None


def sockets() -> list[tuple[str, int]]:
    return [(NODE[0], NODE[1]), (NODE[0], NODE_ALT[1]), (NODE_ALT[0], NODE[1]), (NODE_ALT[0], NODE_ALT[1])]


@case(
    "nat/stun/6",
    section=ALTERNATE,
    title="a node with an alternate address answers on each of its four sockets with OTHER-ADDRESS and RESPONSE-ORIGIN; other datagrams there are dropped",
    requirements=("NAT-3.1.1", "NAT-3.1.2"),
)
def _(iut: Iut) -> str | None:
    expect_eq(
        iut.call("stun_server", primary=text(NODE), alternate=text((NODE_ALT[0], NODE[1])), now=0.0).get("ok"),
        False,
        "a node whose alternate has the primary's port",
    )
    role = server(iut)
    for local in sockets():
        answer = only(ask(role, binding_request(TXID), local), f"the answer on {text(local)}")
        expect_eq(answer.local, text(local), "the socket the answer leaves")
        message = decoded(answer.data, "the answer")
        expect_eq(address_attr(message, sm.XOR_MAPPED_ADDRESS, "answer"), CLIENT, "XOR-MAPPED-ADDRESS")
        other = (NODE_ALT[0] if local[0] == NODE[0] else NODE[0], NODE_ALT[1] if local[1] == NODE[1] else NODE[1])
        expect_eq(address_attr(message, sm.OTHER_ADDRESS, "answer"), other, "OTHER-ADDRESS")
        expect_eq(address_attr(message, sm.RESPONSE_ORIGIN, "answer"), local, "RESPONSE-ORIGIN")
        types = [t for t, _ in message.attributes]
        expect(
            types.index(sm.XOR_MAPPED_ADDRESS) < types.index(sm.OTHER_ADDRESS), "OTHER-ADDRESS after XOR-MAPPED-ADDRESS"
        )
        if local != NODE:
            expect_eq(ask(role, bytes(range(60)), local), [], f"answers to a non-STUN datagram on {text(local)}")
    return None


@case(
    "nat/stun/7",
    section=ALTERNATE,
    title="CHANGE-REQUEST: the answer leaves from the socket with the other IP, port or both, to the source",
    requirements=("NAT-3.1.3",),
)
def _(iut: Iut) -> str | None:
    role = server(iut)
    for flags, want in (
        (0, NODE),
        (sm.CHANGE_PORT, (NODE[0], NODE_ALT[1])),
        (sm.CHANGE_IP, (NODE_ALT[0], NODE[1])),
        (sm.CHANGE_IP | sm.CHANGE_PORT, NODE_ALT),
    ):
        answer = only(
            ask(role, binding_request(TXID, [(sm.CHANGE_REQUEST, sm.change_request(flags))])), f"change {flags}"
        )
        expect_eq(answer.local, text(want), f"CHANGE-REQUEST {flags:#x}: the socket the answer leaves")
        expect_eq(answer.to, CLIENT, f"CHANGE-REQUEST {flags:#x}: the destination")
        expect_eq(address_attr(decoded(answer.data, "answer"), sm.RESPONSE_ORIGIN, "answer"), want, "RESPONSE-ORIGIN")
    return None


@case(
    "nat/stun/8",
    section=ALTERNATE,
    title="a node without an alternate address answers a CHANGE-REQUEST for a change with 420, one of 0 normally",
    requirements=("NAT-3.1.3",),
)
def _(iut: Iut) -> str | None:
    role = server(iut, alternate=False)
    answer = only(ask(role, binding_request(TXID, [(sm.CHANGE_REQUEST, sm.change_request(sm.CHANGE_IP))])), "change IP")
    message = decoded(answer.data, "the answer")
    error = message.error()
    expect(error is not None and error[0] == 420, f"error 420 expected, got {error}")
    listed = sm.decode_unknown_attributes_untrusted(message.get(sm.UNKNOWN_ATTRIBUTES) or b"")
    expect_eq(listed, [sm.CHANGE_REQUEST], "UNKNOWN-ATTRIBUTES")
    answer = only(ask(role, binding_request(TXID, [(sm.CHANGE_REQUEST, sm.change_request(0))])), "change 0")
    expect_eq(decoded(answer.data, "answer").klass, sm.SUCCESS, "the answer to CHANGE-REQUEST 0")
    return None


@case(
    "nat/stun/9",
    section=ALTERNATE,
    title="RESPONSE-PORT: the answer goes to the source's IP at that port, never elsewhere",
    requirements=("NAT-3.1.5",),
)
def _(iut: Iut) -> str | None:
    role = server(iut)
    port = sm.RESPONSE_PORT
    for flags in (0, sm.CHANGE_IP | sm.CHANGE_PORT):
        attrs = [(port, (41234).to_bytes(2, "big") + b"\0\0"), (sm.CHANGE_REQUEST, sm.change_request(flags))]
        answer = only(ask(role, binding_request(TXID, attrs)), "RESPONSE-PORT")
        expect_eq(answer.to, (CLIENT[0], 41234), f"the destination (CHANGE-REQUEST {flags:#x})")
    return None


@case(
    "nat/stun/10",
    section=ALTERNATE,
    title="an answer within three times the request: RESPONSE-ORIGIN, then OTHER-ADDRESS left out",
    requirements=("NAT-3.1.4",),
)
def _(iut: Iut) -> str | None:
    role = server(iut)
    bare = sm.encode(sm.BINDING, sm.REQUEST, TXID, [])  # 20 bytes, no FINGERPRINT
    for source in (CLIENT, CLIENT6):
        answer = only(ask(role, bare, NODE, source), f"a bare request from {text(source)}")
        expect(len(answer.data) <= 3 * len(bare), f"{len(answer.data)} bytes answer a {len(bare)}-byte request")
        message = decoded(answer.data, "answer")
        expect_eq(address_attr(message, sm.XOR_MAPPED_ADDRESS, "answer"), source, "XOR-MAPPED-ADDRESS")
        if message.has(sm.RESPONSE_ORIGIN):
            expect(message.has(sm.OTHER_ADDRESS), "RESPONSE-ORIGIN kept while OTHER-ADDRESS was left out")
    full = binding_request(TXID, [(sm.CHANGE_REQUEST, sm.change_request(0)), (sm.SOFTWARE, b"p2pos")])
    expect_eq(len(full), 48, "the runner's discovery request")
    for source in (CLIENT, CLIENT6):
        message = decoded(only(ask(role, full, NODE, source), "a discovery request").data, "answer")
        for attr in (sm.XOR_MAPPED_ADDRESS, sm.OTHER_ADDRESS, sm.RESPONSE_ORIGIN):
            expect(message.has(attr), f"a 48-byte request from {text(source)} gets attribute 0x{attr:04x}")
    return None


@case(
    "nat/stun/11",
    section=ALTERNATE,
    title="PADDING: the answer is padded to the request's size, never larger",
    requirements=("NAT-3.1.6",),
)
def _(iut: Iut) -> str | None:
    role = server(iut)
    request = binding_request(TXID, [(sm.PADDING, bytes(400))])
    answer = only(ask(role, request), "a padded request")
    expect_eq(len(answer.data), len(request), "the answer's size")
    return None


INSTANCE = bytes.fromhex("5e1f0c0a7e57ab1e")


def instance_of(answer: Sent, what: str) -> bytes | None:
    """The P2POS-INSTANCE of an answer (rendezvous.md RDV-5.5), checked to follow XOR-MAPPED-ADDRESS."""
    message = decoded(answer.data, what)
    types = [t for t, _ in message.attributes]
    value = message.get(sm.P2POS_INSTANCE)
    if value is not None:
        expect(
            types.index(sm.P2POS_INSTANCE) > types.index(sm.XOR_MAPPED_ADDRESS), f"{what}: instance before the address"
        )
    return value


@case(
    "nat/stun/12",
    section=BINDING,
    title="a node's Binding answers carry its 8-byte P2POS-INSTANCE after XOR-MAPPED-ADDRESS, the same on every answer: 44 bytes from IPv4, 56 from IPv6",
    requirements=("RDV-5.1", "RDV-5.4", "RDV-5.5", "CONF-3.12.2"),
)
def _(iut: Iut) -> str | None:
    role = Role(iut)
    role.start("stun_server", 0.0, primary=text(NODE), alternate=None, instance=INSTANCE.hex())
    for source, size in ((CLIENT, 44), (CLIENT6, 56)):
        bare = binding_request(TXID, fingerprint=False)
        answer = only(ask(role, bare, NODE, source), f"answer to {text(source)}")
        expect_eq(len(answer.data), size, f"the answer's size to a bare request from {text(source)}")
        expect_eq(instance_of(answer, "the answer"), INSTANCE, "the instance the role was started with")
    role = Role(iut)
    role.start("stun_server", 0.0, primary=text(NODE), alternate=None)  # the IUT draws its own
    seen = set()
    for n in range(3):
        value = instance_of(only(ask(role, binding_request(bytes([n]) * 12)), "an answer"), "an answer")
        expect(value is not None and len(value) == 8, f"answer {n}: P2POS-INSTANCE of 8 bytes, got {value!r}")
        seen.add(value)
    expect_eq(len(seen), 1, "distinct instances over one start's answers")
    return None


@case(
    "nat/stun/13",
    section=ALTERNATE,
    title="with an alternate address the instance only takes the room OTHER-ADDRESS and RESPONSE-ORIGIN leave within 3x; a keepalive's request (28 bytes) gets it",
    requirements=("RDV-5.4", "RDV-5.5", "NAT-3.1.4"),
)
def _(iut: Iut) -> str | None:
    role = Role(iut)
    role.start("stun_server", 0.0, primary=text(NODE), alternate=text(NODE_ALT), instance=INSTANCE.hex())
    bare = only(ask(role, binding_request(TXID, fingerprint=False)), "the answer to a bare IPv4 request")
    message = decoded(bare.data, "the answer to a bare request")
    expect(len(bare.data) <= 60, f"{len(bare.data)} bytes for a 20-byte request")
    for attr in (sm.OTHER_ADDRESS, sm.RESPONSE_ORIGIN):
        expect(message.has(attr), f"a bare IPv4 request gets attribute 0x{attr:04x} (RFC 5780's before the instance)")
    expect_eq(message.get(sm.P2POS_INSTANCE), None, "the instance in an answer with no room for it")
    for source in (CLIENT, CLIENT6):
        keepalive = binding_request(TXID)  # FINGERPRINT only: 28 bytes, the answer up to 84
        answer = only(ask(role, keepalive, NODE, source), f"the answer to a keepalive from {text(source)}")
        expect(len(answer.data) <= 84, f"{len(answer.data)} bytes for a 28-byte request")
        expect_eq(instance_of(answer, "the answer to a keepalive"), INSTANCE, f"the instance for {text(source)}")
    return None
