"""NAT-PMP (p2pos_proto/nat/portmap_natpmp.py): the codec byte by byte and the client's state machine.

Responses are built here with ``struct`` from RFC 6886 §3.2/§3.3's layouts, not with the code
under test.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.nat import portmap_natpmp as nm
from p2pos.proto.nat.portmap_common import (
    TCP,
    MapEvent,
    MappingFailed,
    MappingGranted,
    MappingLost,
    MappingRemoved,
    MapProtocol,
    MapState,
    PortMapError,
)

WAN = "198.18.1.2"  # the lab's internet: a reserved range, accepted (MAP-4.2)


def address_reply(epoch: int = 100, address: str = WAN, result: int = 0) -> bytes:
    return struct.pack(">BBHI4B", 0, 128, result, epoch, *(int(x) for x in address.split(".")))


def map_reply(internal: int, external: int, lifetime: int, epoch: int = 100, result: int = 0, op: int = 1) -> bytes:
    return struct.pack(">BBHIHHI", 0, 128 + op, result, epoch, internal, external, lifetime)


def events(client: nm.NatPmpClient) -> list[MapEvent]:
    out = []
    while (event := client.next_event()) is not None:
        out.append(event)
    return out


def state(client: nm.NatPmpClient) -> MapState:
    """The client's state, read through a call (so a type checker does not narrow it between inputs)."""
    return client.state


def mapped_client(now: float = 0.0, lifetime: int = 7200) -> nm.NatPmpClient:
    client = nm.NatPmpClient(internal_port=4000, lifetime=lifetime)
    client.start(now)
    assert client.datagrams_to_send(now) == [b"\x00\x00"]
    client.receive_datagram(address_reply(), now)
    assert client.datagrams_to_send(now) == [
        nm.map_request(transport=17, internal_port=4000, suggested_port=4000, lifetime=lifetime)
    ]
    client.receive_datagram(map_reply(4000, 4000, lifetime), now)
    return client


# -- the codec ------------------------------------------------------------------------------


def test_requests_byte_for_byte() -> None:
    """[MAP-3.1] the address request is 2 bytes, the mapping request 12 (RFC 6886 §3.2, §3.3)."""
    assert nm.address_request() == b"\x00\x00"
    request = nm.map_request(transport=17, internal_port=4000, suggested_port=4001, lifetime=7200)
    assert request == bytes.fromhex("0001 0000 0fa0 0fa1 00001c20")
    assert nm.map_request(transport=TCP, internal_port=1, suggested_port=0, lifetime=0) == bytes.fromhex(
        "0002 0000 0001 0000 00000000"
    )


def test_responses_parse() -> None:
    reply = nm.response_untrusted(address_reply(epoch=7))
    assert (reply.opcode, reply.result, reply.epoch, reply.external_address) == (0, 0, 7, WAN)
    reply = nm.response_untrusted(map_reply(4000, 4444, 60, epoch=9))
    assert (reply.opcode, reply.internal_port, reply.external_port, reply.lifetime, reply.epoch) == (
        1,
        4000,
        4444,
        60,
        9,
    )
    refused = nm.response_untrusted(struct.pack(">BBHI", 0, 129, 2, 5))
    assert (refused.result, refused.external_port) == (2, None)


@pytest.mark.parametrize("whole", [address_reply(), map_reply(1, 2, 3)])
def test_every_truncation_is_refused_and_trailing_bytes_tolerated(whole: bytes) -> None:
    for cut in range(len(whole)):
        with pytest.raises(PortMapError):
            nm.response_untrusted(whole[:cut])
    assert nm.response_untrusted(whole + b"\x00" * 4) == nm.response_untrusted(whole)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x01" + address_reply()[1:], "version 1"),
        (b"\x00\x00" + address_reply()[2:], "not a NAT-PMP response"),  # the request's opcode, no response bit
        (b"\x00\x83" + address_reply()[2:], "not a NAT-PMP response"),  # opcode 3
        (address_reply(address="0.0.0.0"), "not an external address"),
        (address_reply(address="224.0.0.1"), "not an external address"),
    ],
)
def test_wrong_versions_opcodes_and_addresses(data: bytes, match: str) -> None:
    with pytest.raises(PortMapError, match=match):
        nm.response_untrusted(data)


@given(st.binary(max_size=64))
def test_any_bytes_parse_or_raise_port_map_error(data: bytes) -> None:
    """[MAP-1.2] the fuzz invariant."""
    try:
        nm.response_untrusted(data)
    except PortMapError:
        pass


# -- the client -------------------------------------------------------------------------------


def test_address_then_map_then_granted() -> None:
    """[MAP-3.1] [MAP-4.2] the external address comes from opcode 0, the port and lifetime from the map answer."""
    client = mapped_client(now=10.0)
    (granted,) = events(client)
    assert isinstance(granted, MappingGranted) and not granted.renewed
    mapping = granted.mapping
    assert (mapping.protocol, mapping.external_address, mapping.external_port) == (MapProtocol.NATPMP, WAN, 4000)
    assert (mapping.lifetime, mapping.expires_at, client.get_timer()) == (7200, 7210, 10 + 3600)
    assert client.state is MapState.MAPPED and client.mapping == mapping


def test_probe_schedule_250ms_doubling_then_unsupported() -> None:
    """[MAP-2.2] [MAP-3.1] a silent gateway: sends at 0, .25, .75, 1.75; given up at 3.75 s."""
    client = nm.NatPmpClient(internal_port=4000)
    client.start(0.0)
    sent_at = [0.0] if client.datagrams_to_send(0.0) else []
    while (timer := client.get_timer()) is not None:
        client.handle_timer(timer)
        if client.datagrams_to_send(timer):
            sent_at.append(timer)
        else:
            break
    assert sent_at == [0.0, 0.25, 0.75, 1.75]
    assert timer == 3.75
    (failed,) = events(client)
    assert isinstance(failed, MappingFailed) and failed.unsupported and failed.result is None
    assert client.state is MapState.FAILED and client.get_timer() is None


def test_once_heard_nine_sends() -> None:
    """[MAP-3.1] after the gateway answered, the map request is sent up to 9 times (RFC 6886 §3.1)."""
    client = nm.NatPmpClient(internal_port=4000)
    client.start(0.0)
    client.receive_datagram(address_reply(), 0.0)
    sends = len(client.datagrams_to_send(0.0)) - 1  # the address request went first
    intervals = []
    last = 0.0
    while (timer := client.get_timer()) is not None:
        client.handle_timer(timer)
        sent = client.datagrams_to_send(timer)
        sends += len(sent)
        if sent:
            intervals.append(timer - last)
        last = timer
    assert sends == nm.MAX_SENDS
    assert intervals == [0.25 * 2**k for k in range(8)]
    (failed,) = events(client)
    assert isinstance(failed, MappingFailed) and not failed.unsupported


def test_renewal_at_half_the_lifetime_suggests_the_granted_port() -> None:
    """[MAP-5.1] renew at half the lifetime, asking for the port granted."""
    client = nm.NatPmpClient(internal_port=4000, lifetime=60)
    client.start(0.0)
    client.receive_datagram(address_reply(), 0.0)
    client.datagrams_to_send(0.0)
    client.receive_datagram(map_reply(4000, 5555, 60), 0.0)
    events(client)
    assert client.get_timer() == 30.0
    client.handle_timer(29.9)
    assert client.datagrams_to_send(29.9) == []
    client.handle_timer(30.0)
    assert client.datagrams_to_send(30.0) == [
        nm.map_request(transport=17, internal_port=4000, suggested_port=5555, lifetime=60)
    ]
    client.receive_datagram(map_reply(4000, 5555, 60, epoch=130), 30.0)
    (renewed,) = events(client)
    assert isinstance(renewed, MappingGranted) and renewed.renewed and renewed.mapping.granted_at == 30.0


def test_unanswered_renewal_loses_the_mapping_at_expiry() -> None:
    """[MAP-5.2] renewals are retransmitted until the mapping expires, then it is lost."""
    client = mapped_client(lifetime=60)
    events(client)
    client.handle_timer(30.0)
    while (timer := client.get_timer()) is not None and timer <= 60.0:
        client.handle_timer(timer)
        client.datagrams_to_send(timer)
    (lost,) = events(client)
    assert isinstance(lost, MappingLost) and client.mapping is None and client.state is MapState.FAILED


def test_removal_sends_lifetime_zero_and_port_zero() -> None:
    """[MAP-6.1] deletion: lifetime 0 and suggested port 0 (RFC 6886 §3.4), confirmed by the answer."""
    client = mapped_client()
    events(client)
    client.remove(5.0)
    assert client.datagrams_to_send(5.0) == [
        nm.map_request(transport=17, internal_port=4000, suggested_port=0, lifetime=0)
    ]
    client.receive_datagram(map_reply(4000, 0, 0), 5.0)
    assert events(client) == [MappingRemoved(protocol=MapProtocol.NATPMP, confirmed=True)]
    assert client.state is MapState.CLOSED and client.mapping is None and client.get_timer() is None


def test_removal_unanswered_ends_unconfirmed_and_removal_before_start_is_immediate() -> None:
    client = mapped_client()
    events(client)
    client.remove(0.0)
    while (timer := client.get_timer()) is not None:
        client.handle_timer(timer)
    assert events(client) == [MappingRemoved(protocol=MapProtocol.NATPMP, confirmed=False)]
    idle = nm.NatPmpClient(internal_port=1)
    idle.remove(0.0)
    assert idle.datagrams_to_send(0.0) == [] and events(idle) == [
        MappingRemoved(protocol=MapProtocol.NATPMP, confirmed=False)
    ]


@pytest.mark.parametrize(
    ("result", "unsupported"), [(1, True), (2, False), (3, False), (4, False), (5, True), (99, False)]
)
def test_result_codes_fail_the_attempt(result: int, unsupported: bool) -> None:
    """[MAP-3.3] an error result ends the attempt; versions and opcodes it lacks mean 'try the next protocol'."""
    client = nm.NatPmpClient(internal_port=4000)
    client.start(0.0)
    client.receive_datagram(struct.pack(">BBHI", 0, 128, result, 1), 0.0)
    (failed,) = events(client)
    assert isinstance(failed, MappingFailed) and (failed.result, failed.unsupported) == (result, unsupported)


def test_answers_not_for_us_are_dropped_and_counted() -> None:
    """[MAP-1.2] wrong internal port, TCP answer to a UDP request, a map answer to the address request, junk."""
    client = nm.NatPmpClient(internal_port=4000)
    client.start(0.0)
    client.receive_datagram(map_reply(4000, 4000, 60), 0.0)  # we asked for the address
    client.receive_datagram(b"junk", 0.0)
    client.receive_datagram(address_reply(), 0.0)
    client.datagrams_to_send(0.0)
    client.receive_datagram(map_reply(4001, 4000, 60), 0.0)
    client.receive_datagram(map_reply(4000, 4000, 60, op=2), 0.0)
    assert client.dropped == 4 and events(client) == []
    client.receive_datagram(map_reply(4000, 4000, 60), 0.0)
    assert isinstance(events(client)[0], MappingGranted)
    client.receive_datagram(b"\xff" * 16, 1.0)
    assert client.dropped == 5


def test_zero_port_or_lifetime_in_a_success_is_refused() -> None:
    client = nm.NatPmpClient(internal_port=4000)
    client.start(0.0)
    client.receive_datagram(address_reply(), 0.0)
    client.receive_datagram(map_reply(4000, 0, 60), 0.0)
    (failed,) = events(client)
    assert isinstance(failed, MappingFailed) and not failed.unsupported


def test_a_restarted_gateway_gets_the_mapping_asked_again_at_once() -> None:
    """[MAP-5.4] an answer whose epoch went backwards while mapped: renew now (RFC 6886 §3.6)."""
    client = mapped_client(now=0.0)
    events(client)
    client.receive_datagram(address_reply(epoch=100 + 500), 500.0)  # consistent: nothing to do
    assert client.datagrams_to_send(500.0) == [] and state(client) is MapState.MAPPED
    client.receive_datagram(address_reply(epoch=3), 600.0)  # went back: the gateway restarted
    assert state(client) is MapState.RENEWING and len(client.datagrams_to_send(600.0)) == 1


def test_caller_misuse_raises_local_errors() -> None:
    client = nm.NatPmpClient(internal_port=4000)
    client.start(0.0)
    with pytest.raises(LocalProtocolError, match="start"):
        client.start(0.0)
    for bad in (
        {"internal_port": 0},
        {"internal_port": 70000},
        {"internal_port": 1, "lifetime": 0},
        {"internal_port": 1, "probe_sends": 0},
    ):
        with pytest.raises(LocalProtocolError):
            nm.NatPmpClient(**bad)
