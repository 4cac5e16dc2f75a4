"""Rendezvous messages (p2pos_proto/rendezvous/messages.py): round trips and hostile input."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pos.proto.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from p2pos.proto.nat.profile import UNKNOWN_PROFILE, Allocation, Filtering, Mapping, NatProfile
from p2pos.proto.rendezvous import messages as m

PEER = bytes(range(32))
V4 = ("198.18.0.7", 40000)
V6 = ("2001:2::7", 443)
SEQ = NatProfile(
    mapping=Mapping.ADDRESS_AND_PORT_DEPENDENT,
    filtering=Filtering.ADDRESS_AND_PORT_DEPENDENT,
    allocation=Allocation.SEQUENTIAL,
    delta=-3,
    hairpin=True,
)
TRAITS = m.Traits(profile=SEQ, rtt_ms=65535)
PUNCH = m.Punch(traits=m.Traits(profile=UNKNOWN_PROFILE), ticket=bytes(range(16)))

EXAMPLES: list[m.Message] = [
    m.Register(txid=1, lease=600, candidates=(V4, V6)),
    m.Register(txid=0, lease=0),
    m.Registered(txid=2, lease=300, observed=V4, reset_token=b"t" * 16),
    m.Lookup(txid=3, peer_id=PEER, introduce=True, candidates=(("10.0.0.2", 5000),)),
    m.Lookup(txid=0xFFFF_FFFF, peer_id=PEER, introduce=False),
    m.Found(txid=4, peer_id=PEER, observed=V6, candidates=(V4,)),
    m.NotFound(txid=5, peer_id=PEER),
    m.Introduction(txid=6, peer_id=PEER, observed=V4),
    m.Unregister(txid=7),
    m.Unregistered(txid=8),
    m.Error(txid=9, code=m.RendezvousError.RATE_LIMITED, reason="slow down: 20 lookups/s"),
]
#: With the optional traits or punch at their ends (spec/rendezvous.md §3.5).
WITH_BLOCKS: list[m.Message] = [
    m.Register(txid=1, lease=600, candidates=(V4,), traits=TRAITS),
    m.Lookup(txid=3, peer_id=PEER, introduce=True, traits=m.Traits(profile=UNKNOWN_PROFILE, rtt_ms=12)),
    m.Found(txid=4, peer_id=PEER, observed=V6, candidates=(V4,), punch=PUNCH),
    m.Introduction(txid=6, peer_id=PEER, observed=V4, punch=m.Punch(traits=TRAITS, ticket=b"k" * 16)),
]
EXAMPLES += WITH_BLOCKS


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda msg: type(msg).__name__)
def test_round_trip(message: m.Message) -> None:
    data = m.encode(message)
    assert m.decode_untrusted(data) == message
    assert data[0] == m.MessageType[_type_name(message)]


def _type_name(message: m.Message) -> str:
    return {"Error": "ERROR", "NotFound": "NOT_FOUND"}.get(type(message).__name__, type(message).__name__.upper())


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda msg: type(msg).__name__)
def test_every_truncation_and_trailing_byte_is_malformed(message: m.Message) -> None:
    data = m.encode(message)
    bare = m.encode(_without_blocks(message))
    for cut in range(len(data)):
        if cut == len(bare) and bare != data:  # the same message without its optional block
            assert m.decode_untrusted(data[:cut]) == _without_blocks(message)
            continue
        with pytest.raises(RemoteProtocolError) as info:
            m.decode_untrusted(data[:cut])
        assert info.value.code == ErrorCode.MALFORMED_MESSAGE
    with pytest.raises(RemoteProtocolError):
        m.decode_untrusted(data + b"\x00")


def _without_blocks(message: m.Message) -> m.Message:
    if isinstance(message, m.Register | m.Lookup):
        return dataclasses.replace(message, traits=None)
    if isinstance(message, m.Found | m.Introduction):
        return dataclasses.replace(message, punch=None)
    return message


def test_block_layout() -> None:
    """spec/rendezvous.md §3.5: traits = profile (5) || rtt ms (u16); punch = traits || ticket (16)."""
    bare = m.encode(m.Register(txid=1, lease=0))
    data = m.encode(m.Register(txid=1, lease=0, traits=TRAITS))
    assert data == bare + bytes([0x44, 0x02, 0xFF, 0xFD, 0x04, 0xFF, 0xFF])
    bare = m.encode(m.Found(txid=4, peer_id=PEER, observed=V6, candidates=(V4,)))
    assert m.encode(EXAMPLES[-2]) == bare + bytes(5) + bytes(2) + bytes(range(16))


def test_unknown_type_is_ignored() -> None:
    assert m.decode_untrusted(bytes([0x7F, 0, 0, 0, 1]) + b"anything") is None


@pytest.mark.parametrize(
    "data",
    [
        bytes([m.MessageType.REGISTER, 0, 0, 0, 1, 0, 0, 2, 88, 1, 5]) + bytes(6),  # family 5
        bytes([m.MessageType.REGISTER, 0, 0, 0, 1, 0, 0, 2, 88, m.MAX_CANDIDATES + 1]),
        bytes([m.MessageType.LOOKUP, 0, 0, 0, 1]) + PEER + bytes([2, 0]),  # unknown flag
        bytes([m.MessageType.ERROR, 0, 0, 0, 1, 0, 1, 2, 0xC3, 0x28]),  # not UTF-8
        bytes([m.MessageType.REGISTER, 0, 0, 0, 1, 0, 0, 0, 0, 0]) + bytes([0x50, 0, 0, 0, 0, 0, 0]),  # mapping 5
        bytes([m.MessageType.REGISTER, 0, 0, 0, 1, 0, 0, 0, 0, 0]) + bytes([0x44, 2, 0, 0, 0, 0, 0]),  # delta 0
        bytes([m.MessageType.REGISTER, 0, 0, 0, 1, 0, 0, 0, 0, 0]) + bytes(8),  # neither 0 nor 7 bytes
        m.encode(EXAMPLES[-2]) + bytes(7),  # a punch of 30 bytes
    ],
)
def test_malformed(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        m.decode_untrusted(data)


@pytest.mark.parametrize(
    "message",
    [
        m.Unregister(txid=-1),
        m.Unregister(txid=1 << 32),
        m.Register(txid=1, lease=1 << 32),
        m.Register(txid=1, lease=1, candidates=(V4,) * (m.MAX_CANDIDATES + 1)),
        m.Register(txid=1, lease=1, candidates=(("example.org", 1),)),
        m.Register(txid=1, lease=1, candidates=(("10.0.0.1", 70000),)),
        m.NotFound(txid=1, peer_id=b"short"),
        m.Registered(txid=1, lease=1, observed=V4, reset_token=b"x"),
        m.Error(txid=1, code=1, reason="x" * 256),
        m.Register(txid=1, lease=1, traits=m.Traits(profile=SEQ, rtt_ms=65536)),
        m.Found(txid=1, peer_id=PEER, observed=V4, punch=m.Punch(traits=TRAITS, ticket=b"short")),
    ],
)
def test_values_that_do_not_fit_are_the_callers_error(message: m.Message) -> None:
    with pytest.raises(LocalProtocolError):
        m.encode(message)


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_remote_errors(data: bytes) -> None:
    try:
        message = m.decode_untrusted(data)
    except RemoteProtocolError:
        return
    if message is not None:
        assert m.encode(message) == data
