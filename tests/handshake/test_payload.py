"""Handshake payload TLVs (spec/handshake.md §5): round trips, extensibility rules, hostile input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pos.proto.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from p2pos.proto.handshake.payload import (
    CAP_MAX_RECORD_PLAINTEXT,
    CRITICAL,
    F_CAPABILITIES,
    F_IDENTITY_KEY,
    F_IDENTITY_SIG,
    F_PADDING,
    F_SAS_COMMITMENT,
    F_SAS_NONCE,
    F_SESSION_INDEX,
    F_VERSIONS,
    HandshakePayload,
    decode_fields_untrusted,
    encode_fields,
)

FULL = HandshakePayload(
    versions=(1, 2, 0xFFFF),
    identity_key=bytes(range(32)),
    identity_sig=bytes(range(64)),
    capabilities={CAP_MAX_RECORD_PLAINTEXT: (1200).to_bytes(4, "big"), 0x7777: b"", 0x8123: b"future"},
)
FULL_BYTES = FULL.encode()


def field(ftype: int, value: bytes) -> bytes:
    return struct.pack(">HH", ftype, len(value)) + value


def remote_error(data: bytes) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        HandshakePayload.decode_untrusted(data)
    return info.value


def test_round_trip() -> None:
    assert HandshakePayload.decode_untrusted(FULL_BYTES) == FULL
    assert HandshakePayload.decode_untrusted(b"") == HandshakePayload()
    assert HandshakePayload().encode() == b""
    versions_only = HandshakePayload(versions=(1,))
    assert versions_only.encode() == field(F_VERSIONS, b"\x00\x01")
    assert HandshakePayload.decode_untrusted(versions_only.encode()) == versions_only


def test_encoding_layout() -> None:
    fields = decode_fields_untrusted(FULL_BYTES)
    assert [t for t, _ in fields] == [F_VERSIONS, F_IDENTITY_KEY, F_IDENTITY_SIG, F_CAPABILITIES]
    assert fields[0][1] == bytes.fromhex("00010002ffff")
    # Capabilities: a nested field list, sorted by type.
    assert [t for t, _ in decode_fields_untrusted(fields[3][1])] == [CAP_MAX_RECORD_PLAINTEXT, 0x7777, 0x8123]


def test_field_order_does_not_matter() -> None:
    fields = decode_fields_untrusted(FULL_BYTES)
    assert HandshakePayload.decode_untrusted(encode_fields(fields[::-1])) == FULL


#: The lowest field type the spec does not define (0x0001..0x0008 are known).
UNKNOWN = 0x0009


@pytest.mark.parametrize("ftype", [0x0000, UNKNOWN, 0x1234, 0x7FFF])
def test_unknown_non_critical_fields_are_ignored(ftype: int) -> None:
    data = field(ftype, b"whatever") + FULL_BYTES + field(ftype + 0x10 if ftype < 0x7FEF else 0x10, b"")
    assert HandshakePayload.decode_untrusted(data) == FULL


@pytest.mark.parametrize("ftype", [CRITICAL, CRITICAL | F_VERSIONS, 0x8005, 0xFFFF])
def test_unknown_critical_field_is_rejected(ftype: int) -> None:
    error = remote_error(FULL_BYTES + field(ftype, b"x"))
    assert error.code is ErrorCode.UNKNOWN_CRITICAL_FIELD
    assert f"0x{ftype:04x}" in str(error)


def test_critical_bit_in_capabilities_is_ignored() -> None:
    # Capabilities are advisory: unknown entries are kept, never fatal, critical bit or not.
    payload = HandshakePayload.decode_untrusted(field(F_CAPABILITIES, field(0xFFFF, b"x")))
    assert payload.capabilities == {0xFFFF: b"x"}


@pytest.mark.parametrize("ftype", [F_VERSIONS, F_IDENTITY_KEY, F_IDENTITY_SIG, F_CAPABILITIES, 0x1234, 0x0000])
def test_duplicate_fields_are_malformed(ftype: int) -> None:
    value = {F_VERSIONS: b"\x00\x01", F_IDENTITY_KEY: bytes(32), F_IDENTITY_SIG: bytes(64)}.get(ftype, b"")
    error = remote_error(field(ftype, value) + field(ftype, value))
    assert error.code is ErrorCode.MALFORMED_MESSAGE
    assert "duplicate" in str(error)


def test_duplicate_capability_is_malformed() -> None:
    caps = field(CAP_MAX_RECORD_PLAINTEXT, b"\x00\x00\x04\x00") * 2
    error = remote_error(field(F_CAPABILITIES, caps))
    assert error.code is ErrorCode.MALFORMED_MESSAGE
    assert "duplicate capability" in str(error)


@pytest.mark.parametrize(
    "data",
    [
        field(F_VERSIONS, b""),
        field(F_VERSIONS, b"\x00"),
        field(F_VERSIONS, b"\x00\x01\x00"),
        field(F_IDENTITY_KEY, bytes(31)),
        field(F_IDENTITY_KEY, bytes(33)),
        field(F_IDENTITY_SIG, bytes(63)),
        field(F_IDENTITY_SIG, bytes(65)),
        field(F_CAPABILITIES, b"\x00\x01\x00\x04\x00"),
        field(F_CAPABILITIES, b"\x00"),
    ],
    ids=[
        "versions-empty",
        "versions-odd",
        "versions-3",
        "key-31",
        "key-33",
        "sig-63",
        "sig-65",
        "caps-truncated-value",
        "caps-truncated-header",
    ],
)
def test_bad_known_fields_are_malformed(data: bytes) -> None:
    assert remote_error(data).code is ErrorCode.MALFORMED_MESSAGE


def test_every_truncation() -> None:
    # Fed byte by byte: every prefix either fails as MALFORMED or, when it ends on a
    # field boundary, is a payload of the first fields (truncation there is the AEAD's job).
    fields = decode_fields_untrusted(FULL_BYTES)
    boundaries = {0}
    for _, value in fields:
        boundaries.add(max(boundaries) + 4 + len(value))
    for cut in range(len(FULL_BYTES)):
        prefix = FULL_BYTES[:cut]
        if cut in boundaries:
            count = sorted(boundaries).index(cut)
            assert decode_fields_untrusted(prefix) == fields[:count]
            HandshakePayload.decode_untrusted(prefix)
        else:
            with pytest.raises(RemoteProtocolError) as info:
                decode_fields_untrusted(prefix)
            assert info.value.code is ErrorCode.MALFORMED_MESSAGE
            assert remote_error(prefix).code is ErrorCode.MALFORMED_MESSAGE


@pytest.mark.parametrize("extra", [b"\x00", b"\x00\x05", b"\x00\x05\x00", b"\x00\x05\x00\x02\x01"])
def test_trailing_partial_field_is_malformed(extra: bytes) -> None:
    assert remote_error(FULL_BYTES + extra).code is ErrorCode.MALFORMED_MESSAGE


def test_trailing_complete_fields() -> None:
    assert HandshakePayload.decode_untrusted(FULL_BYTES + field(UNKNOWN, b"\x00\x00")) == FULL
    assert remote_error(FULL_BYTES + field(0x8005, b"")).code is ErrorCode.UNKNOWN_CRITICAL_FIELD
    assert remote_error(FULL_BYTES + field(F_VERSIONS, b"\x00\x01")).code is ErrorCode.MALFORMED_MESSAGE


# -- the hardening fields (session index, SAS commitment and nonce, padding) ------------

HARDENED = HandshakePayload(
    versions=(1,),
    session_index=0xDEADBEEF,
    sas_commitment=bytes(range(32)),
    sas_nonce=bytes(range(32, 64)),
    padding=7,
)


def test_hardening_fields_round_trip_and_layout() -> None:
    data = HARDENED.encode()
    assert HandshakePayload.decode_untrusted(data) == HARDENED
    assert decode_fields_untrusted(data) == [
        (F_VERSIONS, b"\x00\x01"),
        (F_SESSION_INDEX, bytes.fromhex("deadbeef")),
        (F_SAS_COMMITMENT, bytes(range(32))),
        (F_SAS_NONCE, bytes(range(32, 64))),
        (F_PADDING, bytes(7)),
    ]
    assert HandshakePayload.decode_untrusted(field(F_SESSION_INDEX, bytes(4))).session_index == 0


def test_padding_content_is_ignored() -> None:
    # Padding is sent as zero bytes but only its length is kept: a receiver does not judge it.
    decoded = HandshakePayload.decode_untrusted(field(F_PADDING, b"\xff" * 9) + field(F_VERSIONS, b"\x00\x01"))
    assert decoded == HandshakePayload(versions=(1,), padding=9)
    assert HandshakePayload.decode_untrusted(field(F_PADDING, b"")) == HandshakePayload()


@pytest.mark.parametrize(
    "data",
    [
        field(F_SESSION_INDEX, bytes(3)),
        field(F_SESSION_INDEX, bytes(5)),
        field(F_SAS_COMMITMENT, bytes(31)),
        field(F_SAS_COMMITMENT, bytes(33)),
        field(F_SAS_NONCE, b""),
        field(F_SAS_NONCE, bytes(31)),
        field(F_SAS_NONCE, bytes(64)),
        field(F_SESSION_INDEX, bytes(4)) * 2,
        field(F_PADDING, b"") * 2,
    ],
    ids=["index-3", "index-5", "commit-31", "commit-33", "nonce-0", "nonce-31", "nonce-64", "index-dup", "pad-dup"],
)
def test_bad_hardening_fields_are_malformed(data: bytes) -> None:
    assert remote_error(data).code is ErrorCode.MALFORMED_MESSAGE


@pytest.mark.parametrize("ftype", [F_SESSION_INDEX, F_SAS_COMMITMENT, F_SAS_NONCE, F_PADDING])
def test_critical_bit_on_a_known_type_is_still_unknown(ftype: int) -> None:
    assert remote_error(field(CRITICAL | ftype, bytes(32))).code is ErrorCode.UNKNOWN_CRITICAL_FIELD


def test_session_index_must_fit_a_u32() -> None:
    for index in (-1, 2**32):
        with pytest.raises(LocalProtocolError):
            HandshakePayload(session_index=index).encode()
    assert len(HandshakePayload(session_index=2**32 - 1).encode()) == 8


def test_encode_refuses_values_that_do_not_fit() -> None:
    with pytest.raises(LocalProtocolError):
        encode_fields([(1, bytes(0x10000))])
    with pytest.raises(LocalProtocolError):
        encode_fields([(0x10000, b"")])
    with pytest.raises(LocalProtocolError):
        HandshakePayload(versions=(0x10000,)).encode()
    with pytest.raises(LocalProtocolError):
        HandshakePayload(versions=(-1,)).encode()
    with pytest.raises(LocalProtocolError):
        HandshakePayload(capabilities={1: bytes(0x8000), 2: bytes(0x8000)}).encode()
    assert len(encode_fields([(0xFFFF, bytes(0xFFFF))])) == 4 + 0xFFFF


u16 = st.integers(min_value=0, max_value=0xFFFF)
PAYLOADS = st.builds(
    HandshakePayload,
    versions=st.lists(u16, max_size=6).map(tuple),
    identity_key=st.none() | st.binary(min_size=32, max_size=32),
    identity_sig=st.none() | st.binary(min_size=64, max_size=64),
    capabilities=st.dictionaries(u16, st.binary(max_size=20), max_size=5),
    session_index=st.none() | st.integers(min_value=0, max_value=2**32 - 1),
    sas_commitment=st.none() | st.binary(min_size=32, max_size=32),
    sas_nonce=st.none() | st.binary(min_size=32, max_size=32),
    padding=st.integers(min_value=0, max_value=400),
)


@given(PAYLOADS)
def test_any_payload_round_trips(payload: HandshakePayload) -> None:
    assert HandshakePayload.decode_untrusted(payload.encode()) == payload


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_remote_errors(data: bytes) -> None:
    try:
        payload = HandshakePayload.decode_untrusted(data)
    except RemoteProtocolError as exc:
        assert exc.code in (ErrorCode.MALFORMED_MESSAGE, ErrorCode.UNKNOWN_CRITICAL_FIELD)
        return
    assert HandshakePayload.decode_untrusted(payload.encode()) == payload


FIELD_LISTS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                F_VERSIONS,
                F_IDENTITY_KEY,
                F_IDENTITY_SIG,
                F_CAPABILITIES,
                F_SESSION_INDEX,
                F_SAS_COMMITMENT,
                F_SAS_NONCE,
                F_PADDING,
                0x0042,
                0x8042,
            ]
        ),
        st.binary(max_size=70),
    ),
    max_size=5,
)


@given(FIELD_LISTS, st.binary(max_size=8))
def test_structured_fuzz_raises_only_remote_errors(fields: list[tuple[int, bytes]], tail: bytes) -> None:
    # Well-formed TLVs of the known types with random values reach the per-field checks.
    try:
        HandshakePayload.decode_untrusted(encode_fields(fields) + tail)
    except RemoteProtocolError as exc:
        assert exc.code in (ErrorCode.MALFORMED_MESSAGE, ErrorCode.UNKNOWN_CRITICAL_FIELD)
