"""The STUN vectors (spec/vectors/stun_rfc5769.json, stun.json) through the public API (spec/nat.md §2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from p2pos.proto.nat import stun
from p2pos.proto.nat import stun_message as sm
from p2pos.proto.nat.stun_client import BindingSucceeded, StunClient

VECTORS = Path(__file__).resolve().parents[2] / "spec" / "vectors"
RFC: dict[str, Any] = json.loads((VECTORS / "stun_rfc5769.json").read_text(encoding="utf-8"))
OWN: dict[str, Any] = json.loads((VECTORS / "stun.json").read_text(encoding="utf-8"))


def _verify(message: sm.Message, integrity: dict[str, Any], key: bytes) -> bool:
    if integrity["attribute"] == "MESSAGE-INTEGRITY":
        return message.integrity_ok(key)
    return message.integrity_sha256_ok(key)


@pytest.mark.parametrize("sample", RFC["samples"], ids=lambda s: str(s["name"][:18]))
def test_published_sample_parses_verifies_and_rebuilds(sample: dict[str, Any]) -> None:
    """[NAT-2.1] [NAT-2.2] [TRN-2.3] [TRN-2.4] parse, MESSAGE-INTEGRITY(-SHA256), FINGERPRINT, re-encode."""
    data = bytes.fromhex(sample["hex"])
    message = sm.decode_untrusted(data)
    assert message.method == sm.BINDING and message.transaction_id.hex() == sample["transaction_id"]
    assert ["request", "indication", "success", "error"][message.klass] == sample["class"]
    inputs = [(int(a["type"], 16), bytes.fromhex(a["hex"])) for a in sample["attributes"]]
    integrity_types = (sm.MESSAGE_INTEGRITY, sm.MESSAGE_INTEGRITY_SHA256, sm.FINGERPRINT)
    assert [(t, v) for t, v in message.attributes if t not in integrity_types] == inputs
    integrity = sample["integrity"]
    # The key from the credential, not from the file's key_hex alone.
    if "username" in integrity:
        algorithm = sm.PASSWORD_SHA256 if integrity["attribute"].endswith("SHA256") else sm.PASSWORD_MD5
        key = sm.long_term_key(integrity["username"], integrity["realm"], integrity["password"], algorithm)
    else:
        key = sm.short_term_key(integrity["password"])
    assert key.hex() == integrity["key_hex"]
    assert _verify(message, integrity, key) and not _verify(message, integrity, key + b"x")
    assert message.has(sm.FINGERPRINT) == integrity["fingerprint"]
    if integrity["fingerprint"]:  # a flipped bit anywhere before FINGERPRINT: the parser refuses it
        with pytest.raises(sm.StunError, match="FINGERPRINT"):
            sm.decode_untrusted(data[:30] + bytes([data[30] ^ 1]) + data[31:])
    else:  # a flipped bit in a covered attribute: the MAC no longer holds
        tampered = sm.decode_untrusted(data[:30] + bytes([data[30] ^ 1]) + data[31:])
        assert not _verify(tampered, integrity, key)
    sha = integrity["attribute"] == "MESSAGE-INTEGRITY-SHA256"
    rebuilt = sm.encode(
        sm.BINDING,
        message.klass,
        message.transaction_id,
        inputs,
        key=None if sha else key,
        key_sha256=key if sha else None,
        fingerprint=integrity["fingerprint"],
        pad=int(sample["padding_byte"], 16),
    )
    assert rebuilt == data


def test_rfc5769_mapped_addresses() -> None:
    """[NAT-2.1] the sample responses' XOR-MAPPED-ADDRESS values, IPv4 and IPv6."""
    want = {"§2.2": ("192.0.2.1", 32853), "§2.3": ("2001:db8:1234:5678:11:2233:4455:6677", 32853)}
    for sample in RFC["samples"]:
        section = sample["name"][9:13]
        if section in want:
            message = sm.decode_untrusted(bytes.fromhex(sample["hex"]))
            value = message.get(sm.XOR_MAPPED_ADDRESS)
            assert value is not None
            assert sm.decode_xor_address_untrusted(value, message.transaction_id) == want[section]


@pytest.mark.parametrize("row", OWN["answers"], ids=lambda r: str(r["name"][:40]))
def test_node_answers(row: dict[str, Any]) -> None:
    """[RDV-5.1] [RDV-5.4] [RDV-5.5] [NAT-3.1.2] [NAT-3.1.3] [NAT-3.1.4] the node's answers, byte for byte,
    within 3x."""
    alternate = (row["node_alternate"][0], row["node_alternate"][1]) if row["node_alternate"] else None
    server = stun.BindingServer(
        primary=(OWN["primary"][0], OWN["primary"][1]), alternate=alternate, instance=bytes.fromhex(OWN["instance"])
    )
    received_on = tuple(row["received_on"])
    local = next(
        (stun.socket_key(i, p) for i in (0, 1) for p in (0, 1) if alternate and server.address(i, p) == received_on),
        stun.PRIMARY_SOCKET,
    )
    request = bytes.fromhex(row["request_hex"])
    answer = server.answer_untrusted(request, tuple(row["source"]), local)
    if row.get("answer", "") is None:
        assert answer is None
        return
    assert answer is not None
    data, out, to = answer
    assert data.hex() == row["answer_hex"] and list(to) == row["answer_to"]
    assert to[0] == row["source"][0]  # NAT-3.1.5: always the source's IP address
    role = server.role(out)
    assert list(server.address(*role) if role else OWN["primary"]) == row["answer_from"]
    assert len(data) <= 3 * len(request)
    # A client reads it: the mapped address is the request's source.
    client = StunClient(random=lambda n: request[8:20])
    client.binding(tuple(OWN["primary"]), 0.0)
    assert client.receive_datagram(data, tuple(row["answer_from"]), 0.0)
    event = client.next_event()
    if isinstance(event, BindingSucceeded):
        assert event.mapped == tuple(row["source"])
        if alternate is not None:
            assert event.other_address is not None
    else:
        assert event is not None and event.error == 420
