"""STUN Binding (p2pos_proto/nat/stun.py) against RFC 5769's sample XOR-MAPPED-ADDRESS values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pos.proto.nat import stun
from p2pos.proto.nat import stun_message as sm

# RFC 5769 §2.2 and §2.3: the transaction id of the sample responses and their attributes.
TXID = bytes.fromhex("b7e7a701bc34d686fa87dfae")
V4_ATTR = bytes.fromhex("002000080001a147e112a643")  # 192.0.2.1 port 32853
V6_ATTR = bytes.fromhex("002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9")  # 2001:db8:1234:5678:11:2233:4455:6677
INSTANCE = bytes.fromhex("0123456789abcdef")


def test_rfc5769_ipv4() -> None:
    response = stun.binding_success(TXID, ("192.0.2.1", 32853))
    assert response == bytes.fromhex("0101000c2112a442") + TXID + V4_ATTR
    assert len(response) == 32
    assert stun.mapped_address_untrusted(response, TXID) == ("192.0.2.1", 32853)


def test_rfc5769_ipv6() -> None:
    response = stun.binding_success(TXID, ("2001:db8:1234:5678:11:2233:4455:6677", 32853))
    assert response == bytes.fromhex("010100182112a442") + TXID + V6_ATTR
    assert len(response) == 44
    assert stun.mapped_address_untrusted(response, TXID) == ("2001:db8:1234:5678:11:2233:4455:6677", 32853)


def test_the_sample_response_with_other_attributes_parses() -> None:
    # RFC 5769 §2.2 whole: SOFTWARE (padded), XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT.
    response = bytes.fromhex(
        "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000080001a147e112a643"
        "000800142b91f599fd9e90c38c7489f92af9ba53f06be7d780280004c07d4c96"
    )
    assert stun.mapped_address_untrusted(response, TXID) == ("192.0.2.1", 32853)
    assert stun.mapped_address_untrusted(response, bytes(12)) is None
    # A wrong FINGERPRINT: not STUN.
    assert stun.mapped_address_untrusted(response[:-1] + b"\x00", TXID) is None


def test_binding_requests() -> None:
    bare = stun.binding_request(TXID)
    assert len(bare) == 20 and stun.binding_request_untrusted(bare) == TXID
    fingerprinted = sm.encode(sm.BINDING, sm.REQUEST, TXID, [], fingerprint=True)
    assert stun.binding_request_untrusted(fingerprinted) == TXID
    assert stun.binding_request_untrusted(fingerprinted[:-1] + b"\x00") is None  # a wrong FINGERPRINT
    # A comprehension-required attribute (USERNAME) is not answered; nor a bad length or cookie.
    username = bytes.fromhex("000100082112a442") + TXID + bytes.fromhex("00060004") + b"user"
    assert stun.binding_request_untrusted(username) is None
    assert stun.binding_request_untrusted(bare + b"\x00") is None
    assert stun.binding_request_untrusted(bare[:4] + bytes(4) + bare[8:]) is None
    assert stun.binding_request_untrusted(stun.binding_success(TXID, ("10.0.0.1", 1))) is None


@pytest.mark.parametrize("host", ["10.1.2.3", "198.18.0.1", "2001:2::1", "::1"])
def test_response_is_at_most_three_times_a_bare_request(host: str) -> None:
    response = stun.binding_success(TXID, (host, 65535))
    assert len(response) <= 3 * len(stun.binding_request(TXID))
    assert stun.mapped_address_untrusted(response, TXID) == (host, 65535)


@given(st.binary(max_size=120))
def test_any_bytes_never_raise(data: bytes) -> None:
    stun.binding_request_untrusted(data)
    stun.mapped_address_untrusted(data, TXID)


@given(st.lists(st.sampled_from([sm.SOFTWARE, sm.CHANGE_REQUEST, sm.FINGERPRINT, 0x8029]), max_size=4), st.booleans())
def test_node_answers_stay_within_three_times_the_request(attrs: list[int], v6: bool) -> None:
    """[RDV-5.4] [NAT-3.1.4] whatever a Binding request carries, from IPv4 or IPv6, on any of the four sockets."""
    server = stun.BindingServer(primary=("198.18.0.1", 3478), alternate=("198.18.0.2", 3479), instance=INSTANCE)
    values = {sm.SOFTWARE: b"x", sm.CHANGE_REQUEST: sm.change_request(6), 0x8029: bytes(8)}
    fingerprint = sm.FINGERPRINT in attrs
    request = sm.encode(
        sm.BINDING, sm.REQUEST, TXID, [(a, values[a]) for a in attrs if a != sm.FINGERPRINT], fingerprint=fingerprint
    )
    source = ("2001:2::1", 1) if v6 else ("198.18.9.9", 1)
    for ip in (0, 1):
        for port in (0, 1):
            answer = server.answer_untrusted(request, source, stun.socket_key(ip, port))
            assert answer is not None and len(answer[0]) <= 3 * len(request)
            assert stun.mapped_address_untrusted(answer[0], TXID) == source


def _attributes(answer: bytes) -> list[int]:
    return [t for t, _ in sm.decode_untrusted(answer).attributes]


@pytest.mark.parametrize(("source", "size"), [(("198.18.9.9", 1), 44), (("2001:2::1", 1), 56)])
def test_a_node_answer_carries_its_instance_after_the_mapped_address(source: tuple[str, int], size: int) -> None:
    """[RDV-5.1] [RDV-5.5] XOR-MAPPED-ADDRESS, then P2POS-INSTANCE: 44 bytes from IPv4, 56 from IPv6,
    within three times a bare 20-byte request; the same instance on every answer."""
    server = stun.BindingServer(instance=INSTANCE)
    for txid in (TXID, bytes(12)):
        answer = server.answer_untrusted(stun.binding_request(txid), source, 0)
        assert answer is not None and len(answer.data) == size <= 60
        assert _attributes(answer.data) == [sm.XOR_MAPPED_ADDRESS, sm.P2POS_INSTANCE]
        assert sm.decode_untrusted(answer.data).get(sm.P2POS_INSTANCE) == INSTANCE
        assert stun.mapped_address_untrusted(answer.data, txid) == source
    assert stun.BindingServer().answer_untrusted(stun.binding_request(TXID), source, 0).data == (  # type: ignore[union-attr]
        stun.binding_success(TXID, source)
    )
    with pytest.raises(ValueError):
        stun.BindingServer(instance=bytes(7))


@pytest.mark.parametrize(
    ("v6", "request_attrs", "expected"),
    [
        # A bare 20-byte request (at most 60 bytes back): RFC 5780's attributes first (NAT-3.1.4).
        (False, [], [sm.OTHER_ADDRESS, sm.RESPONSE_ORIGIN]),
        (True, [], [sm.P2POS_INSTANCE]),
        # A keeper's request (FINGERPRINT, 28 bytes: at most 84) always gets the instance.
        (False, ["fingerprint"], [sm.OTHER_ADDRESS, sm.RESPONSE_ORIGIN, sm.P2POS_INSTANCE]),
        (True, ["fingerprint"], [sm.OTHER_ADDRESS, sm.P2POS_INSTANCE]),
        # Discovery's requests (48 bytes) get everything.
        (True, ["software", "fingerprint"], [sm.OTHER_ADDRESS, sm.RESPONSE_ORIGIN, sm.P2POS_INSTANCE]),
    ],
)
def test_with_an_alternate_address_the_instance_takes_the_room_left(
    v6: bool, request_attrs: list[str], expected: list[int]
) -> None:
    """[RDV-5.5] [NAT-3.1.4] The instance never displaces OTHER-ADDRESS or RESPONSE-ORIGIN."""
    node = [("2001:2::10", 3478), ("2001:2::11", 3479)] if v6 else [("198.18.0.1", 3478), ("198.18.0.2", 3479)]
    server = stun.BindingServer(primary=node[0], alternate=node[1], instance=INSTANCE)
    attributes = [(sm.SOFTWARE, bytes(16))] if "software" in request_attrs else []
    request = sm.encode(sm.BINDING, sm.REQUEST, TXID, attributes, fingerprint="fingerprint" in request_attrs)
    answer = server.answer_untrusted(request, ("2001:2::1", 1) if v6 else ("198.18.9.9", 1), 0)
    assert answer is not None and len(answer.data) <= 3 * len(request)
    assert _attributes(answer.data) == [sm.XOR_MAPPED_ADDRESS, *expected]
