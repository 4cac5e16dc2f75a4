"""PCP (p2pos_proto/nat/portmap_pcp.py): the MAP codec byte by byte and the client's state machine.

Responses are built here with ``struct`` from RFC 6887 §7.2 and §11.1's layouts, not with the
code under test.
"""

from __future__ import annotations

import ipaddress
import itertools
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pos.proto.nat import portmap_pcp as pcp
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
    epoch_lost,
)

CLIENT = "10.1.0.2"
WAN = "198.18.1.2"
NONCE = bytes(range(1, 13))


def fixed_random(n: int) -> bytes:
    """Nonce 01..0c, then jitter bytes 0x8000 (RAND ~ 0: 1 + RAND = 1.0000076)."""
    return NONCE[:n] if n == 12 else b"\x80\x00"[:n]


def mapped16(address: str) -> bytes:
    ip = ipaddress.ip_address(address)
    return ip.packed if ip.version == 6 else b"\0" * 10 + b"\xff\xff" + ip.packed


def reply(
    *,
    result: int = 0,
    lifetime: int = 7200,
    epoch: int = 1000,
    nonce: bytes = NONCE,
    protocol: int = 17,
    internal: int = 4000,
    external: int = 4000,
    address: str = WAN,
    opcode: int = 1,
    options: bytes = b"",
) -> bytes:
    header = struct.pack(">BBBBII12x", 2, 0x80 | opcode, 0, result, lifetime, epoch)
    if opcode == 0:
        return header + options
    return header + struct.pack(">12sB3xHH16s", nonce, protocol, internal, external, mapped16(address)) + options


def events(client: pcp.PcpClient) -> list[MapEvent]:
    out = []
    while (event := client.next_event()) is not None:
        out.append(event)
    return out


def state(client: pcp.PcpClient) -> MapState:
    """The client's state, read through a call (so a type checker does not narrow it between inputs)."""
    return client.state


def new_client(**kw: object) -> pcp.PcpClient:
    return pcp.PcpClient(client_address=CLIENT, internal_port=4000, random=fixed_random, **kw)  # type: ignore[arg-type]


def mapped_client(now: float = 0.0, lifetime: int = 7200) -> pcp.PcpClient:
    client = new_client(lifetime=lifetime)
    client.start(now)
    client.datagrams_to_send(now)
    client.receive_datagram(reply(lifetime=lifetime), now)
    return client


# -- the codec ------------------------------------------------------------------------------


def test_map_request_byte_for_byte() -> None:
    """[MAP-4.1] [MAP-4.3] version 2, MAP, lifetime, client address (IPv4-mapped), nonce, protocol, ports, address."""
    request = pcp.map_request(
        lifetime=7200, client_address=CLIENT, nonce=NONCE, transport=17, internal_port=4000, suggested_port=4001
    )
    assert request == bytes.fromhex(
        "02010000"
        "00001c20"
        "00000000000000000000ffff0a010002"
        "0102030405060708090a0b0c"
        "11000000"
        "0fa0"
        "0fa1"
        "00000000000000000000ffff00000000"
    )
    assert len(request) == 60
    six = pcp.map_request(
        lifetime=0, client_address="2001:2:0:101::2", nonce=NONCE, transport=TCP, internal_port=1, suggested_port=0
    )
    assert six[8:24] == ipaddress.IPv6Address("2001:2:0:101::2").packed and six[44:] == bytes(16)
    suggested = pcp.map_request(
        lifetime=1,
        client_address=CLIENT,
        nonce=NONCE,
        transport=17,
        internal_port=1,
        suggested_port=1,
        suggested_address=WAN,
    )
    assert suggested[44:] == mapped16(WAN)
    with pytest.raises(ValueError, match="12 bytes"):
        pcp.map_request(lifetime=1, client_address=CLIENT, nonce=b"x", transport=17, internal_port=1, suggested_port=1)


def test_map_response_parses() -> None:
    parsed = pcp.response_untrusted(reply(external=5555, lifetime=60, epoch=77))
    assert (parsed.version, parsed.opcode, parsed.result, parsed.lifetime, parsed.epoch) == (2, 1, 0, 60, 77)
    assert (parsed.nonce, parsed.transport, parsed.internal_port, parsed.external_port) == (NONCE, 17, 4000, 5555)
    assert parsed.external_address == WAN
    assert pcp.response_untrusted(reply(address="2001:2::9")).external_address == "2001:2::9"
    announce = pcp.response_untrusted(reply(opcode=0, epoch=5))
    assert (announce.opcode, announce.epoch) == (0, 5)


def test_every_truncation_is_refused() -> None:
    whole = reply()
    for cut in range(len(whole)):
        with pytest.raises(PortMapError):
            pcp.response_untrusted(whole[:cut])


def test_options_are_walked_by_length() -> None:
    """[MAP-4.4] options after the MAP body are skipped by length; one running past the end is refused."""
    option = struct.pack(">BBH", 0x80, 0, 3) + b"abc\x00"
    assert pcp.response_untrusted(reply(options=option)).external_port == 4000
    with pytest.raises(PortMapError, match="option"):
        pcp.response_untrusted(reply(options=struct.pack(">BBH", 0x80, 0, 8) + b"abcd"))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x01" + reply()[1:], "version 1"),
        (reply()[:1] + b"\x01" + reply()[2:], "request"),
        (reply()[:1] + b"\x82" + reply()[2:], "opcode 2"),
        (reply() + b"\x00\x00", "62 bytes"),
        (reply() + bytes(1100), "1160 bytes"),
        (reply(address="0.0.0.0"), "not an external address"),
        (reply(address="ff02::1"), "not an external address"),
        (struct.pack(">BBHI", 0, 0x81, 2, 0), "unsupported version"),
    ],
)
def test_wrong_versions_opcodes_lengths_and_addresses(data: bytes, match: str) -> None:
    with pytest.raises(PortMapError, match=match):
        pcp.response_untrusted(data)


def test_a_nat_pmp_gateways_unsupported_version_answer() -> None:
    """[MAP-2.1] RFC 6887 §9: version 0, result 1 means 'NAT-PMP only'."""
    parsed = pcp.response_untrusted(struct.pack(">BBHI", 0, 0x81, 1, 123))
    assert (parsed.version, parsed.result) == (0, 1)


@given(st.binary(max_size=128))
def test_any_bytes_parse_or_raise_port_map_error(data: bytes) -> None:
    """[MAP-1.2] the fuzz invariant."""
    try:
        pcp.response_untrusted(data)
    except PortMapError:
        pass


# -- the client -------------------------------------------------------------------------------


def test_granted_mapping_reports_address_port_lifetime() -> None:
    """[MAP-4.2] [MAP-5.3] a reserved external address (198.18.0.0/15) is accepted; lifetime as granted."""
    client = new_client(lifetime=7200)
    client.start(0.0)
    (request,) = client.datagrams_to_send(0.0)
    assert request[24:36] == NONCE
    client.receive_datagram(reply(lifetime=120, external=4100), 1.0)
    (granted,) = events(client)
    assert isinstance(granted, MappingGranted)
    mapping = granted.mapping
    assert (mapping.protocol, mapping.external_address, mapping.external_port, mapping.lifetime) == (
        MapProtocol.PCP,
        WAN,
        4100,
        120.0,
    )
    assert client.get_timer() == 61.0


def test_retransmission_schedule_and_probe_give_up() -> None:
    """[MAP-2.2] [MAP-3.2] RFC 6887 §8.1.1: 3 s (±10 %), doubling; a silent gateway is given up after one RT."""
    jitter = 0.9 + 0.2 * 0x8000 / 0xFFFF
    client = new_client()
    client.start(0.0)
    assert client.get_timer() == pytest.approx(3 * jitter)
    client.handle_timer(client.get_timer() or 0)
    (failed,) = events(client)
    assert isinstance(failed, MappingFailed) and failed.unsupported
    patient = new_client(probe_sends=4)
    patient.start(0.0)
    times = [0.0]
    while (timer := patient.get_timer()) is not None and patient.state is MapState.REQUESTING:
        patient.handle_timer(timer)
        if patient.datagrams_to_send(timer):
            times.append(timer)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == pytest.approx([3 * jitter, 6 * jitter**2, 12 * jitter**3])


def test_jitter_stays_within_ten_percent() -> None:
    low = pcp.PcpClient(client_address=CLIENT, internal_port=1, random=bytes)
    high = pcp.PcpClient(client_address=CLIENT, internal_port=1, random=lambda n: b"\xff" * n)
    low.start(0.0)
    high.start(0.0)
    assert low.get_timer() == pytest.approx(2.7) and high.get_timer() == pytest.approx(3.3)
    assert low._next_interval(1000.0) == pytest.approx(0.9 * 1024)


def test_renewal_keeps_the_nonce_and_suggests_what_was_assigned() -> None:
    """[MAP-4.3] [MAP-5.1] same nonce; the assigned port and address suggested; renewed at half the lifetime."""
    client = new_client(lifetime=600)
    client.start(0.0)
    client.datagrams_to_send(0.0)
    client.receive_datagram(reply(lifetime=600, external=4100), 0.0)
    events(client)
    client.handle_timer(300.0)
    (renewal,) = client.datagrams_to_send(300.0)
    assert renewal == pcp.map_request(
        lifetime=600, client_address=CLIENT, nonce=NONCE, transport=17, internal_port=4000, suggested_port=4100,
        suggested_address=WAN,
    )  # fmt: skip
    client.receive_datagram(reply(lifetime=600, external=4100, epoch=1300), 300.0)
    (renewed,) = events(client)
    assert isinstance(renewed, MappingGranted) and renewed.renewed


def test_nonce_port_or_protocol_mismatch_is_dropped() -> None:
    """[MAP-4.3] answers for another nonce, internal port or protocol are dropped and counted."""
    client = new_client()
    client.start(0.0)
    for wrong in (reply(nonce=b"\x00" * 12), reply(internal=4001), reply(protocol=6), reply(result=8, nonce=bytes(12))):
        client.receive_datagram(wrong, 0.0)
    client.receive_datagram(b"\x02\x81", 0.0)
    assert client.dropped == 5 and events(client) == [] and client.state is MapState.REQUESTING


@pytest.mark.parametrize(("result", "unsupported"), [(1, True), (2, False), (4, True), (8, False), (12, False)])
def test_error_results_fail_the_attempt(result: int, unsupported: bool) -> None:
    """[MAP-3.3] an error result ends the attempt; UNSUPP_VERSION and UNSUPP_OPCODE mean 'next protocol'."""
    client = new_client()
    client.start(0.0)
    client.receive_datagram(reply(result=result, lifetime=30), 0.0)
    (failed,) = events(client)
    assert isinstance(failed, MappingFailed) and (failed.result, failed.unsupported) == (result, unsupported)


def test_nat_pmp_only_gateway_means_unsupported() -> None:
    """[MAP-2.1] a version-0 'unsupported version' answer: move on to NAT-PMP at once."""
    client = new_client()
    client.start(0.0)
    client.receive_datagram(struct.pack(">BBHI", 0, 0x81, 1, 50), 0.0)
    (failed,) = events(client)
    assert isinstance(failed, MappingFailed) and failed.unsupported and failed.result == 1


def test_removal_is_lifetime_zero_with_the_same_nonce() -> None:
    """[MAP-6.1] deletion: a MAP with lifetime 0 and the mapping's nonce; confirmed by a lifetime-0 answer."""
    client = mapped_client()
    events(client)
    client.remove(10.0)
    (request,) = client.datagrams_to_send(10.0)
    assert request[4:8] == bytes(4) and request[24:36] == NONCE
    client.receive_datagram(reply(lifetime=0), 10.0)
    assert events(client) == [MappingRemoved(protocol=MapProtocol.PCP, confirmed=True)]
    assert client.state is MapState.CLOSED


def test_refused_renewal_loses_the_mapping() -> None:
    client = mapped_client(lifetime=100)
    events(client)
    client.handle_timer(50.0)
    client.receive_datagram(reply(result=8, lifetime=30), 50.0)
    (lost,) = events(client)
    assert isinstance(lost, MappingLost) and client.mapping is None


def test_unanswered_renewal_is_retried_until_expiry() -> None:
    """[MAP-5.2] renewals retransmit on the schedule until the mapping expires, then it is lost."""
    client = mapped_client(lifetime=100)
    events(client)
    client.handle_timer(50.0)
    sends = len(client.datagrams_to_send(50.0))
    while (timer := client.get_timer()) is not None:
        client.handle_timer(timer)
        sends += len(client.datagrams_to_send(timer))
    assert sends == 5  # at 50, ~53, ~59, ~71, ~95; the next would be after the expiry at 100
    (lost,) = events(client)
    assert isinstance(lost, MappingLost)


def test_announce_with_a_lower_epoch_renews_at_once() -> None:
    """[MAP-5.4] RFC 6887 §14.1: an ANNOUNCE showing a restart makes the client map again now."""
    client = mapped_client()
    events(client)
    client.receive_datagram(reply(opcode=0, epoch=1000 + 200), 200.0)
    assert state(client) is MapState.MAPPED and client.datagrams_to_send(200.0) == []
    client.receive_datagram(reply(opcode=0, epoch=4), 300.0)
    assert state(client) is MapState.RENEWING and len(client.datagrams_to_send(300.0)) == 1


def test_epoch_rule() -> None:
    """[MAP-5.4] the RFC 6887 §8.5 check: backwards by more than 1 s, or drift beyond 1/16 plus 2 s."""
    assert not epoch_lost(None, 0.0, 0)
    assert not epoch_lost((0.0, 100), 100.0, 200)
    assert not epoch_lost((0.0, 100), 0.5, 99)
    assert epoch_lost((0.0, 100), 1.0, 98)
    assert epoch_lost((0.0, 100), 100.0, 10)  # server clock far behind ours: restarted
    assert epoch_lost((0.0, 100), 100.0, 400)  # server clock far ahead
    assert not epoch_lost((0.0, 100), 100.0, 100 + 100 + 8)  # within 1/16 + 2 s
