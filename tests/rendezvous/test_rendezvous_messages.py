"""Rendezvous messages (p2pos_proto/rendezvous/messages.py): round trips and hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pos.proto.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from p2pos.proto.rendezvous import messages as m

PEER = bytes(range(32))
V4 = ("198.18.0.7", 40000)
V6 = ("2001:2::7", 443)

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
    for cut in range(len(data)):
        with pytest.raises(RemoteProtocolError) as info:
            m.decode_untrusted(data[:cut])
        assert info.value.code == ErrorCode.MALFORMED_MESSAGE
    with pytest.raises(RemoteProtocolError):
        m.decode_untrusted(data + b"\x00")


def test_unknown_type_is_ignored() -> None:
    assert m.decode_untrusted(bytes([0x7F, 0, 0, 0, 1]) + b"anything") is None


@pytest.mark.parametrize(
    "data",
    [
        bytes([m.MessageType.REGISTER, 0, 0, 0, 1, 0, 0, 2, 88, 1, 5]) + bytes(6),  # family 5
        bytes([m.MessageType.REGISTER, 0, 0, 0, 1, 0, 0, 2, 88, m.MAX_CANDIDATES + 1]),
        bytes([m.MessageType.LOOKUP, 0, 0, 0, 1]) + PEER + bytes([2, 0]),  # unknown flag
        bytes([m.MessageType.ERROR, 0, 0, 0, 1, 0, 1, 2, 0xC3, 0x28]),  # not UTF-8
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
