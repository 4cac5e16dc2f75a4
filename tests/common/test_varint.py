"""QUIC variable-length integers (spec/frames.md §2, RFC 9000 §16)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pos.proto import ErrorCode, LocalProtocolError, RemoteProtocolError
from p2pos.proto.common.varint import MAX_VARINT, decode_untrusted, encode, size

BOUNDARIES = [
    (0, "00"),
    (63, "3f"),
    (64, "4040"),
    (16383, "7fff"),
    (16384, "80004000"),
    (2**30 - 1, "bfffffff"),
    (2**30, "c000000040000000"),
    (2**62 - 1, "ffffffffffffffff"),
]


@pytest.mark.parametrize(("value", "encoding"), BOUNDARIES)
def test_boundaries(value: int, encoding: str) -> None:
    assert encode(value).hex() == encoding
    assert size(value) == len(encoding) // 2
    assert decode_untrusted(bytes.fromhex(encoding), 0) == (value, len(encoding) // 2)


@pytest.mark.parametrize(
    ("encoding", "value"),
    [("25", 37), ("7bbd", 15293), ("9d7f3e7d", 494878333), ("c2197c5eff14e88c", 151288809941952652)],
)
def test_rfc9000_appendix_a1_examples(encoding: str, value: int) -> None:
    assert decode_untrusted(bytes.fromhex(encoding), 0) == (value, len(encoding) // 2)
    assert encode(value).hex() == encoding


@pytest.mark.parametrize("encoding", ["4025", "80000025", "c000000000000025"])
def test_non_minimal_encodings_are_accepted(encoding: str) -> None:
    assert decode_untrusted(bytes.fromhex(encoding), 0) == (37, len(encoding) // 2)


@pytest.mark.parametrize("value", [-1, MAX_VARINT + 1, 2**64])
def test_out_of_range_values_cannot_be_encoded(value: int) -> None:
    with pytest.raises(LocalProtocolError):
        encode(value)
    with pytest.raises(LocalProtocolError):
        size(value)


@given(st.integers(min_value=0, max_value=MAX_VARINT), st.binary(max_size=4), st.binary(max_size=4))
def test_round_trip_at_any_position(value: int, before: bytes, after: bytes) -> None:
    encoded = encode(value)
    assert len(encoded) == size(value)
    assert decode_untrusted(before + encoded + after, len(before)) == (value, len(before) + len(encoded))


@given(st.integers(min_value=0, max_value=MAX_VARINT))
def test_every_truncation_is_malformed(value: int) -> None:
    encoded = encode(value)
    for cut in range(len(encoded)):
        with pytest.raises(RemoteProtocolError) as info:
            decode_untrusted(encoded[:cut], 0)
        assert info.value.code is ErrorCode.MALFORMED_MESSAGE


@given(st.binary(max_size=12), st.integers(min_value=0, max_value=14))
def test_any_bytes_decode_or_raise_remote_error(data: bytes, pos: int) -> None:
    try:
        value, end = decode_untrusted(data, pos)
    except RemoteProtocolError as exc:
        assert exc.code is ErrorCode.MALFORMED_MESSAGE
        assert pos + (1 << (data[pos] >> 6) if pos < len(data) else 1) > len(data)
    else:
        assert 0 <= value <= MAX_VARINT
        assert end - pos == 1 << (data[pos] >> 6)
