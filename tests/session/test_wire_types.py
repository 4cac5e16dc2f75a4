"""p2pos packet types live in first bytes 4-15, beside STUN, TURN, DTLS and QUIC (spec/session.md §4.1).

The first-byte table is written out here from RFC 7983 and RFC 9443, not read
from ``demux.py``, and compared with it byte by byte.  STUN and TURN datagrams
are built as those RFCs lay them out, then fed to every p2pos parser and to a
live session: none may read them as p2pos, and a session must not notice them.
"""

from __future__ import annotations

import struct

import pytest
from helpers import SessionPair, make_keys
from hypothesis import given
from hypothesis import strategies as st

from p2pos.proto import RemoteProtocolError, SecureSession
from p2pos.proto.endpoint.demux import BY_FIRST_BYTE, Protocol, protocol_of
from p2pos.proto.session.wire import (
    RECORD_TYPES,
    PacketType,
    packet_type_untrusted,
    parse_handshake_untrusted,
    receiver_index_untrusted,
)

#: RFC 7983 as updated by RFC 9443: inclusive ranges of the first byte.
RFC_RANGES = [
    (0, 3, "stun"),
    (4, 15, "p2pos"),  # "unassigned" in the RFCs: p2pos takes it
    (16, 19, "zrtp"),
    (20, 63, "dtls"),
    (64, 79, "turn-channel"),
    (80, 127, "quic"),
    (128, 191, "rtp"),
    (192, 255, "quic"),
]
EXPECTED = [name for low, high, name in RFC_RANGES for _ in range(low, high + 1)]

MAGIC_COOKIE = 0x2112A442
TRANSACTION_ID = bytes(range(1, 13))


def stun(message_type: int, attributes: bytes = b"") -> bytes:
    """A STUN message (RFC 8489 §5): type, length, magic cookie, transaction id, attributes."""
    return struct.pack(">HHI", message_type, len(attributes), MAGIC_COOKIE) + TRANSACTION_ID + attributes


def xor_mapped_address(host: bytes, port: int) -> bytes:
    """An IPv4 XOR-MAPPED-ADDRESS attribute (RFC 8489 §14.2)."""
    cookie = MAGIC_COOKIE.to_bytes(4, "big")
    value = bytes([0, 0x01]) + (port ^ (MAGIC_COOKIE >> 16)).to_bytes(2, "big")
    value += bytes(a ^ b for a, b in zip(host, cookie, strict=True))
    return struct.pack(">HH", 0x0020, len(value)) + value


BINDING_REQUEST = stun(0x0001)
BINDING_SUCCESS = stun(0x0101, xor_mapped_address(bytes([192, 0, 2, 1]), 40000))
BINDING_ERROR = stun(0x0111, struct.pack(">HH", 0x0009, 8) + bytes([0, 0, 4, 0]) + b"Bad!")
DATA_INDICATION = stun(0x0017, struct.pack(">HH", 0x0013, 4) + b"\x07abc")  # a DATA attribute


def channel_data(channel: int, payload: bytes) -> bytes:
    """A TURN ChannelData message (RFC 8656 §12.4), padded to 4 bytes as over UDP it may be."""
    return struct.pack(">HH", channel, len(payload)) + payload + bytes(-len(payload) % 4)


FOREIGN = {
    "STUN Binding request": (BINDING_REQUEST, "stun"),
    "STUN Binding success response": (BINDING_SUCCESS, "stun"),
    "STUN Binding error response": (BINDING_ERROR, "stun"),
    "STUN Data indication": (DATA_INDICATION, "stun"),
    "TURN ChannelData": (channel_data(0x4001, b"relayed"), "turn-channel"),
    "TURN ChannelData, last channel": (channel_data(0x4FFF, b"x" * 5), "turn-channel"),
    "DTLS 1.2 handshake record": (bytes([22, 0xFE, 0xFD]) + bytes(8) + b"\x00\x10" + bytes(16), "dtls"),
    "QUIC long header (Initial)": (bytes([0xC3]) + (1).to_bytes(4, "big") + bytes(40), "quic"),
    "QUIC short header": (bytes([0x5A]) + bytes(30), "quic"),
    "RTP": (bytes([0x80, 0x60]) + bytes(10), "rtp"),
    "ZRTP": (bytes([0x10, 0x00]) + bytes(10), "zrtp"),
}


def test_the_rfc_table_covers_every_byte_once() -> None:
    assert len(EXPECTED) == 256
    assert [low for low, _, _ in RFC_RANGES[1:]] == [high + 1 for _, high, _ in RFC_RANGES[:-1]]


@pytest.mark.parametrize("byte", range(256))
def test_every_first_byte_maps_to_its_rfc_protocol(byte: int) -> None:
    assert BY_FIRST_BYTE[byte].value == EXPECTED[byte]
    assert protocol_of(bytes([byte]) + b"rest") is BY_FIRST_BYTE[byte]


def test_an_empty_datagram_has_no_protocol() -> None:
    assert protocol_of(b"") is None


@pytest.mark.parametrize("ptype", list(PacketType), ids=lambda t: t.name)
def test_every_packet_type_is_in_4_to_15_and_is_p2pos(ptype: PacketType) -> None:
    assert 4 <= ptype.value <= 15
    assert BY_FIRST_BYTE[ptype.value] is Protocol.P2POS
    assert protocol_of(bytes([ptype]) + bytes(40)) is Protocol.P2POS


def test_the_allocation_is_the_spec_one() -> None:
    # spec/README.md §3: handshake then records, contiguous from 0x04, 0x0b-0x0f left free.
    assert {t.name: t.value for t in PacketType} == {
        "INIT": 0x04,
        "RESPONSE": 0x05,
        "FINISH": 0x06,
        "DATA": 0x07,
        "KEEPALIVE": 0x08,
        "CLOSE": 0x09,
        "CONFIRM": 0x0A,
    }
    assert {PacketType.DATA, PacketType.KEEPALIVE, PacketType.CLOSE, PacketType.CONFIRM} == RECORD_TYPES
    assert len({t.value for t in PacketType}) == len(PacketType)


def test_the_sample_datagrams_are_shaped_as_their_rfcs_say() -> None:
    for datagram in (BINDING_REQUEST, BINDING_SUCCESS, BINDING_ERROR, DATA_INDICATION):
        message_type, length, cookie = struct.unpack_from(">HHI", datagram)
        assert message_type >> 14 == 0 and cookie == MAGIC_COOKIE and len(datagram) == 20 + length
    assert BINDING_REQUEST[:2] == b"\x00\x01" and BINDING_SUCCESS[:2] == b"\x01\x01"
    assert channel_data(0x4001, b"abc")[:4] == b"\x40\x01\x00\x03"


@pytest.mark.parametrize(("datagram", "protocol"), list(FOREIGN.values()), ids=list(FOREIGN))
def test_foreign_datagrams_are_classified_as_their_protocol(datagram: bytes, protocol: str) -> None:
    assert protocol_of(datagram) == Protocol(protocol)


@pytest.mark.parametrize("datagram", [d for d, _ in FOREIGN.values()], ids=list(FOREIGN))
def test_foreign_datagrams_are_never_parsed_as_p2pos(datagram: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        packet_type_untrusted(datagram)
    with pytest.raises(RemoteProtocolError):
        parse_handshake_untrusted(datagram)
    assert receiver_index_untrusted(datagram) is None
    with pytest.raises(RemoteProtocolError):
        SecureSession.respond_untrusted(make_keys("bob"), datagram.ljust(400, b"\x00"), local_index=1, now=0.0)


def test_a_session_ignores_stun_and_turn_between_its_records() -> None:
    pair = SessionPair()
    pair.handshake()
    for datagram, _ in FOREIGN.values():
        pair.deliver_to_b(datagram)
        pair.deliver_to_a(datagram)
    assert pair.a.is_established and pair.b.is_established
    assert pair.a.stats() == pair.b.stats() == {"unknown_type": len(FOREIGN)}
    pair.a.send(b"after the noise", pair.now)
    pair.flush()
    assert pair.messages_b() == [b"after the noise"]


def test_turn_channel_data_carrying_a_record_is_not_unwrapped() -> None:
    # The TURN client unwraps ChannelData; the session never looks inside it (spec/session.md §4.1).
    pair = SessionPair()
    pair.handshake()
    pair.a.send(b"relayed", pair.now)
    (record,) = pair.take_a()
    pair.deliver_to_b(channel_data(0x4001, record))
    assert pair.messages_b() == []
    pair.deliver_to_b(record)
    assert pair.messages_b() == [b"relayed"]


@given(st.integers(0, 255).filter(lambda b: not 4 <= b <= 15), st.binary(max_size=64))
def test_any_datagram_outside_4_to_15_is_not_p2pos(first: int, rest: bytes) -> None:
    datagram = bytes([first]) + rest
    assert protocol_of(datagram) is not Protocol.P2POS
    assert receiver_index_untrusted(datagram) is None
    with pytest.raises(RemoteProtocolError):
        packet_type_untrusted(datagram)


@pytest.mark.parametrize("byte", [b for b in range(4, 16) if b not in set(PacketType)])
def test_unassigned_types_in_4_to_15_are_p2pos_but_unknown(byte: int) -> None:
    datagram = bytes([byte]) + bytes(60)
    assert protocol_of(datagram) is Protocol.P2POS
    with pytest.raises(RemoteProtocolError):
        packet_type_untrusted(datagram)
    assert receiver_index_untrusted(datagram) is None
