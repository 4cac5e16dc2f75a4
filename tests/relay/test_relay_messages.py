"""Relay messages (spec/relay.md §3.2) and the authentication vector (§2), read from relay.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st

from p2pos.proto.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from p2pos.proto.identity.identity import Identity
from p2pos.proto.relay import messages as m

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "spec" / "vectors" / "relay.json").read_text())


@pytest.mark.parametrize("vector", VECTORS["messages"], ids=lambda v: v["name"])
def test_each_message_vector_decodes_and_encodes_back(vector: dict[str, object]) -> None:
    """REL-3.2: the table's encodings, both ways."""
    data = bytes.fromhex(str(vector["hex"]))
    message = m.decode_untrusted(data)
    fields = dict(vector["message"])  # type: ignore[call-overload]
    assert type(message).__name__.upper() == fields.pop("type")
    for name, value in fields.items():
        got = getattr(message, name)
        assert (got.hex() if isinstance(got, bytes) else got) == value
    assert m.encode(message) == data


@pytest.mark.parametrize("vector", VECTORS["malformed"], ids=lambda v: v["why"])
def test_each_malformed_vector_is_refused(vector: dict[str, object]) -> None:
    """REL-3.2, REL-3.3: malformed messages raise RemoteProtocolError(MALFORMED_MESSAGE)."""
    long_send = b"\x08\x00\x00\x00\x01\x04" + bytes(65535)
    data = long_send if vector["hex"] is None else bytes.fromhex(str(vector["hex"]))
    assert len(data) == vector["length"]
    with pytest.raises(RemoteProtocolError) as caught:
        m.decode_untrusted(data)
    assert caught.value.code is ErrorCode.MALFORMED_MESSAGE and vector["error"] == "MALFORMED_MESSAGE"


def test_the_auth_vector_verifies_with_an_independent_ed25519() -> None:
    """REL-2.3: signed = identity.md §3.1 prefix, domain p2pos/relay-auth, nonce || len || name."""
    auth = VECTORS["auth"]
    nonce, name = bytes.fromhex(auth["nonce"]), auth["name"]
    message = nonce + bytes([len(name)]) + name.encode()
    assert message.hex() == auth["message"] == m.auth_message(nonce, name).hex()
    domain = b"p2pos/relay-auth"
    signed = b"p2pos-sig-v1\x00" + bytes([len(domain)]) + domain + message
    assert signed.hex() == auth["signed"]
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(auth["peer_id"]))
    key.verify(bytes.fromhex(auth["signature"]), signed)  # raises if wrong
    assert Identity.from_seed(bytes.fromhex(auth["seed"])).peer_id.public_key.hex() == auth["peer_id"]
    decoded = m.decode_untrusted(bytes.fromhex(auth["auth"]))
    assert isinstance(decoded, m.Auth) and decoded.signature.hex() == auth["signature"] and decoded.name == name


def test_records_must_be_p2pos_packets_within_the_limit() -> None:
    """REL-3.3: first byte 4-15, 1..max_record bytes; the encoder refuses others too."""
    assert m.valid_record(b"\x04") and m.valid_record(b"\x0f" * 10)
    assert not m.valid_record(b"") and not m.valid_record(b"\x03abc") and not m.valid_record(b"\x10abc")
    assert not m.valid_record(b"\x04" * 101, 100) and m.valid_record(b"\x04" * 100, 100)
    with pytest.raises(RemoteProtocolError):
        m.decode_untrusted(b"\x09\x00\x00\x00\x01" + b"\x04" * 101, 100)
    with pytest.raises(LocalProtocolError):
        m.encode(m.Send(pair=1, record=b"\x01abc"))
    with pytest.raises(LocalProtocolError):
        m.encode(m.Paired(pair=1 << 32, peer_id=bytes(32)))
    with pytest.raises(LocalProtocolError):
        m.auth_message(bytes(32), "")


@given(st.binary(max_size=300))
def test_decoding_any_bytes_returns_a_message_or_raises_remote_protocol_error(data: bytes) -> None:
    """STYLE 9: the untrusted parser either succeeds (and re-encodes to the same bytes) or raises the remote error."""
    try:
        message = m.decode_untrusted(data)
    except RemoteProtocolError:
        return
    assert m.encode(message) == data


@given(st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 9]), st.binary(max_size=120))
def test_decoding_any_body_of_each_type_is_total(kind: int, body: bytes) -> None:
    data = bytes([kind]) + body
    try:
        message = m.decode_untrusted(data)
    except RemoteProtocolError:
        return
    assert m.encode(message) == data
