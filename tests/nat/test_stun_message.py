"""STUN codec (p2pos_proto/nat/stun_message.py): RFC 5769 samples, round trips, strict parsing (spec/turn.md §2)."""

from __future__ import annotations

import hashlib
import hmac
import json
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pos.proto.errors import RemoteProtocolError
from p2pos.proto.nat import stun_message as sm
from p2pos.proto.nat.turn_framing import StreamDeframer, channel_data, decode_channel_data_untrusted

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[2] / "spec" / "vectors" / "turn.json").read_text(encoding="utf-8")
)
RFC5769 = {v["name"][9:13]: v for v in VECTORS["rfc5769"]}


@pytest.mark.parametrize("vector", VECTORS["rfc5769"], ids=lambda v: str(v["name"][:13]))
def test_rfc5769_samples_parse_and_verify(vector: dict[str, Any]) -> None:
    """[TRN-2.1] [TRN-2.3] [TRN-2.4] the RFC 5769 samples parse, their FINGERPRINT and MESSAGE-INTEGRITY hold."""
    data = bytes.fromhex(vector["hex"])
    message = sm.decode_untrusted(data)
    assert (message.method, ["request", "indication", "success", "error"][message.klass]) == (1, vector["class"])
    assert [{"type": f"0x{t:04x}", "hex": v.hex()} for t, v in message.attributes] == vector["attributes"]
    key = bytes.fromhex(vector["integrity_key_hex"])
    assert message.integrity_ok(key)
    assert not message.integrity_ok(key + b"x")
    tampered = bytearray(data)
    tampered[message.integrity_at - 1] ^= 1  # a byte the HMAC covers; FINGERPRINT recomputed so it parses
    if message.attributes[-1][0] == sm.FINGERPRINT:
        tampered = bytearray(_refingerprint(bytes(tampered)))
    tampered_message = sm.decode_untrusted(bytes(tampered))
    assert not tampered_message.integrity_ok(key)


def _refingerprint(data: bytes) -> bytes:
    crc = (zlib.crc32(data[:-8]) ^ sm.FINGERPRINT_XOR) & 0xFFFFFFFF
    return data[:-4] + crc.to_bytes(4, "big")


def test_rfc5769_rebuilt_byte_for_byte() -> None:
    """[TRN-2.3] [TRN-2.4] encode() reproduces the samples from their attributes (padding aside)."""
    ipv4 = sm.decode_untrusted(bytes.fromhex(RFC5769["§2.2"]["hex"]))
    attrs = [(t, v) for t, v in ipv4.attributes if t not in (sm.MESSAGE_INTEGRITY, sm.FINGERPRINT)]
    rebuilt = sm.encode(1, sm.SUCCESS, ipv4.transaction_id, attrs, key=b"VOkJxbRl1RmTxUk/WvJxBt", fingerprint=True)
    # RFC 5769 pads SOFTWARE with a space: the sample differs in that one byte, and so in the MAC and CRC.
    assert sm.decode_untrusted(rebuilt).attributes[:2] == ipv4.attributes[:2]
    assert sm.decode_untrusted(rebuilt).integrity_ok(b"VOkJxbRl1RmTxUk/WvJxBt")
    auth = sm.decode_untrusted(bytes.fromhex(RFC5769["§2.4"]["hex"]))
    user, realm, password = RFC5769["§2.4"]["long_term"].values()
    attrs = [(t, v) for t, v in auth.attributes if t != sm.MESSAGE_INTEGRITY]
    rebuilt = sm.encode(1, sm.REQUEST, auth.transaction_id, attrs, key=sm.long_term_key(user, realm, password))
    assert rebuilt == bytes.fromhex(RFC5769["§2.4"]["hex"])


def test_rfc5769_addresses() -> None:
    """[TRN-2.2] XOR-MAPPED-ADDRESS over IPv4 and IPv6 (the IPv6 mask includes the transaction id)."""
    for name, want in (("§2.2", ("192.0.2.1", 32853)), ("§2.3", ("2001:db8:1234:5678:11:2233:4455:6677", 32853))):
        message = sm.decode_untrusted(bytes.fromhex(RFC5769[name]["hex"]))
        value = message.get(sm.XOR_MAPPED_ADDRESS)
        assert value is not None
        assert sm.decode_xor_address_untrusted(value, message.transaction_id) == want
        assert sm.xor_address(want, message.transaction_id) == value


def test_client_messages_vectors() -> None:
    """[TRN-2.1] [TRN-2.4] the committed client messages parse, are signed with the long-term key, carry FINGERPRINT."""
    data = VECTORS["client_messages"]
    key = bytes.fromhex(data["key_hex"])
    assert (
        sm.long_term_key(data["long_term"]["username"], data["long_term"]["realm"], data["long_term"]["password"])
        == key
    )
    for vector in data["messages"]:
        message = sm.decode_untrusted(bytes.fromhex(vector["hex"]))
        assert message.transaction_id.hex() == vector["transaction_id"]
        assert message.integrity_ok(key) is vector["authenticated"]
        if message.klass == sm.REQUEST:
            assert message.attributes[-1][0] == sm.FINGERPRINT
        peer = message.get(sm.XOR_PEER_ADDRESS)
        if peer is not None:
            assert list(sm.decode_xor_address_untrusted(peer, message.transaction_id)) in data["peers"]


@pytest.mark.parametrize("vector", VECTORS["malformed"], ids=lambda v: str(v["name"]))
def test_malformed_messages_give_clear_errors(vector: dict[str, Any]) -> None:
    """[TRN-2.5] each malformed sample raises StunError (a RemoteProtocolError) with the committed message."""
    with pytest.raises(sm.StunError) as info:
        sm.decode_untrusted(bytes.fromhex(vector["hex"]))
    assert str(info.value) == vector["error"]
    assert isinstance(info.value, RemoteProtocolError)


def test_every_truncation_is_refused() -> None:
    """[TRN-2.5] any prefix of a valid message is an error, not a shorter message."""
    data = bytes.fromhex(RFC5769["§2.4"]["hex"])
    for cut in range(len(data)):
        with pytest.raises(sm.StunError):
            sm.decode_untrusted(data[:cut])


def test_message_type_bits_round_trip() -> None:
    """[TRN-2.1] method and class interleave as in RFC 8489 §5 (Allocate error is 0x0113, Data indication 0x0017)."""
    assert sm.message_type(sm.ALLOCATE, sm.ERROR) == 0x0113
    assert sm.message_type(sm.DATA, sm.INDICATION) == 0x0017
    assert sm.message_type(sm.CHANNEL_BIND, sm.SUCCESS) == 0x0109
    for method in range(0x1000):
        for klass in range(4):
            assert sm.split_type(sm.message_type(method, klass)) == (method, klass)


def test_attribute_values_round_trip() -> None:
    """[TRN-2.2] ERROR-CODE, LIFETIME, UNKNOWN-ATTRIBUTES, REQUESTED-TRANSPORT, CHANNEL-NUMBER encodings."""
    assert sm.decode_error_code_untrusted(sm.error_code(438, "Stale Nonce")) == (438, "Stale Nonce")
    assert sm.error_code(401, "") == bytes([0, 0, 4, 1])
    with pytest.raises(sm.StunError):
        sm.decode_error_code_untrusted(bytes([0, 0, 7, 0]))
    assert sm.decode_u32_untrusted(sm.u32(600), "LIFETIME") == 600
    with pytest.raises(sm.StunError, match="LIFETIME is 4 bytes"):
        sm.decode_u32_untrusted(b"\x00", "LIFETIME")
    assert sm.decode_unknown_attributes_untrusted(sm.unknown_attributes([0x1, 0x7F01])) == [0x1, 0x7F01]
    assert sm.requested_transport() == bytes([17, 0, 0, 0])
    assert sm.channel_number(0x4001) == bytes([0x40, 0x01, 0, 0])
    with pytest.raises(sm.StunError):
        sm.decode_xor_address_untrusted(bytes([0, 1, 0, 0, 1, 2, 3]), bytes(12))
    with pytest.raises(sm.StunError):
        sm.text_untrusted(b"\xff", "REALM")


@given(
    method=st.integers(0, 0xFFF),
    klass=st.integers(0, 3),
    txid=st.binary(min_size=12, max_size=12),
    attrs=st.lists(st.tuples(st.integers(0, 0x7FFF).filter(lambda t: t != 8), st.binary(max_size=40)), max_size=6),
    key=st.one_of(st.none(), st.binary(min_size=1, max_size=20)),
    fingerprint=st.booleans(),
)
def test_encode_decode_round_trip(
    method: int, klass: int, txid: bytes, attrs: list[tuple[int, bytes]], key: bytes | None, fingerprint: bool
) -> None:
    """[TRN-2.1] whatever is encoded parses back to the same attributes; the integrity verifies under its key."""
    message = sm.decode_untrusted(sm.encode(method, klass, txid, attrs, key=key, fingerprint=fingerprint))
    assert (message.method, message.klass, message.transaction_id) == (method, klass, txid)
    extra = (1 if key is not None else 0) + (1 if fingerprint else 0)
    assert list(message.attributes[: len(message.attributes) - extra]) == attrs
    assert message.integrity_ok(key) if key is not None else message.integrity_at == -1


@given(st.binary(max_size=200))
def test_any_bytes_raise_only_stun_error(data: bytes) -> None:
    """[TRN-2.5] garbage gives StunError or a message, nothing else (STYLE §9)."""
    try:
        sm.decode_untrusted(data)
    except sm.StunError:
        pass
    try:
        decode_channel_data_untrusted(data)
    except sm.StunError:
        pass
    try:
        StreamDeframer().feed(data)
    except sm.StunError:
        pass


@pytest.mark.parametrize("vector", VECTORS["channel_data"], ids=lambda v: f"{v['channel']}-{v['stream']}")
def test_channel_data_vectors(vector: dict[str, Any]) -> None:
    """[TRN-3.2] ChannelData = number || length || data, padded to 4 only on a stream."""
    data = bytes.fromhex(vector["data"])
    wire = channel_data(int(vector["channel"], 16), data, stream=vector["stream"])
    assert wire.hex() == vector["hex"]
    assert decode_channel_data_untrusted(wire) == (int(vector["channel"], 16), data)
    assert len(wire) % 4 == 0 or not vector["stream"]


def test_channel_data_refusals() -> None:
    """[TRN-3.2] numbers outside 0x4000..0x4FFF and lengths that disagree are refused."""
    with pytest.raises(ValueError):
        channel_data(0x5000, b"", stream=False)
    with pytest.raises(sm.StunError, match="outside"):
        decode_channel_data_untrusted(bytes([0x50, 0, 0, 0]))
    with pytest.raises(sm.StunError, match="does not match"):
        decode_channel_data_untrusted(bytes([0x40, 0, 0, 5, 1]))


def test_stream_deframer_cuts_whole_messages_whatever_the_chunks() -> None:
    """[TRN-3.3] STUN = 20 + length, ChannelData = 4 + length padded to 4; fed whole or byte by byte."""
    stun = bytes.fromhex(RFC5769["§2.2"]["hex"])
    chan = channel_data(0x4001, b"abcde", stream=True)
    stream = stun + chan + stun + channel_data(0x4002, b"", stream=True)
    whole = StreamDeframer().feed(stream)
    assert whole == [stun, chan, stun, bytes([0x40, 0x02, 0, 0])]
    deframer = StreamDeframer()
    pieces: list[bytes] = []
    for i in range(len(stream)):
        pieces += deframer.feed(stream[i : i + 1])
    assert pieces == whole and deframer.pending == 0
    with pytest.raises(sm.StunError, match="out of step"):
        StreamDeframer().feed(b"\x80\x00\x00\x00")
    with pytest.raises(sm.StunError, match="magic cookie"):
        StreamDeframer().feed(stun[:4] + b"\x00\x00\x00\x00")


# -- RFC 8489 / RFC 5780 additions (spec/nat.md §2) -------------------------------------


def test_message_integrity_sha256_truncated_and_placed() -> None:
    """[NAT-2.2] MESSAGE-INTEGRITY-SHA256: full or truncated to 16..32 bytes; only FINGERPRINT after it."""
    txid, key = bytes(range(12)), sm.long_term_key("u", "r", "p", sm.PASSWORD_SHA256)
    both = sm.encode(sm.BINDING, sm.REQUEST, txid, [(sm.SOFTWARE, b"x")], key=b"k1", key_sha256=key, fingerprint=True)
    message = sm.decode_untrusted(both)
    assert message.integrity_ok(b"k1") and message.integrity_sha256_ok(key)
    assert not message.integrity_sha256_ok(b"k1")
    # Truncated to 16 bytes (RFC 8489 §14.6), built by hand: the length counts the 16 bytes only.
    head = sm.encode(sm.BINDING, sm.REQUEST, txid, [(sm.SOFTWARE, b"x")])
    covered = bytearray(head)
    covered[2:4] = (len(head) - 20 + 20).to_bytes(2, "big")
    mac = hmac.new(key, bytes(covered), hashlib.sha256).digest()[:16]
    short = bytes(covered) + bytes.fromhex("001c0010") + mac
    assert sm.decode_untrusted(short).integrity_sha256_ok(key)
    for size in (12, 18, 36):
        bad = bytes(covered[:2]) + (len(head) - 20 + 4 + size).to_bytes(2, "big") + head[4:]
        bad += bytes.fromhex("001c") + size.to_bytes(2, "big") + bytes(size) + bytes(-size % 4)
        bad = bad[:2] + (len(bad) - 20).to_bytes(2, "big") + bad[4:]
        with pytest.raises(sm.StunError, match="SHA256"):
            sm.decode_untrusted(bad)
    after = short + bytes.fromhex("80220004") + b"late"
    after = after[:2] + (len(after) - 20).to_bytes(2, "big") + after[4:]
    with pytest.raises(sm.StunError, match="follows MESSAGE-INTEGRITY-SHA256"):
        sm.decode_untrusted(after)
    assert sm.decode_untrusted(short).get(sm.SOFTWARE) == b"x"


def test_rfc5780_attribute_values() -> None:
    assert sm.change_request(sm.CHANGE_IP | sm.CHANGE_PORT | 0x80) == bytes.fromhex("00000006")
    assert sm.decode_change_request_untrusted(bytes.fromhex("000000ff")) == 6
    for address in (("198.18.0.1", 3478), ("2001:2::1", 1)):
        assert sm.decode_plain_address_untrusted(sm.plain_address(address)) == address
    for bad in (b"", bytes(7), bytes.fromhex("0001000001020304ff"), bytes.fromhex("0002000001020304")):
        with pytest.raises(sm.StunError):
            sm.decode_plain_address_untrusted(bad)
    with pytest.raises(sm.StunError):
        sm.decode_change_request_untrusted(b"\x00")
    with pytest.raises(ValueError, match="algorithm"):
        sm.long_term_key("u", "r", "p", 7)
