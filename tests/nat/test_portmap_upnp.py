"""UPnP IGD (p2pos_proto/nat/portmap_upnp.py, portmap_upnp_client.py): messages and the client's steps.

The description below is what Debian's miniupnpd 2.3.1 served in the lab, trimmed; the SOAP
answers follow UPnP Device Architecture 1.1 §3.2.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.nat import portmap_upnp as up
from p2pos.proto.nat.portmap_common import (
    MapEvent,
    MappingFailed,
    MappingGranted,
    MappingLost,
    MappingRemoved,
    MapProtocol,
    MapState,
    PortMapError,
)
from p2pos.proto.nat.portmap_upnp_client import UpnpClient

GATEWAY = "10.1.0.1"
WAN = "198.18.1.2"
SSDP = (
    b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\n"
    b"ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n"
    b"USN: uuid:5ed15691::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nEXT:\r\n"
    b"SERVER: Debian UPnP/1.1 MiniUPnPd/2.3.1\r\nLOCATION: http://10.1.0.1:5000/rootDesc.xml\r\n\r\n"
)
DESCRIPTION = b"""<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0" configId="1337">
<specVersion><major>1</major><minor>1</minor></specVersion>
<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:2</deviceType><serviceList><service>
<serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType><controlURL>/ctl/L3F</controlURL></service>
</serviceList><deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:2</deviceType><deviceList><device>
<deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:2</deviceType><serviceList><service>
<serviceType>SERVICE</serviceType><serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId>
<SCPDURL>/WANIPCn.xml</SCPDURL><controlURL>/ctl/IPConn</controlURL><eventSubURL>/evt/IPConn</eventSubURL></service>
</serviceList></device></deviceList></device></deviceList><presentationURL>http://10.1.0.1/</presentationURL></device></root>"""
V2 = "urn:schemas-upnp-org:service:WANIPConnection:2"
V1 = "urn:schemas-upnp-org:service:WANIPConnection:1"


def description(service: str = V2) -> bytes:
    return DESCRIPTION.replace(b"SERVICE", service.encode())


def soap_ok(action: str, service: str = V2, **out: str) -> bytes:
    args = "".join(f"<{k}>{v}</{k}>" for k, v in out.items())
    return (
        '<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>'
        f'<u:{action}Response xmlns:u="{service}">{args}</u:{action}Response></s:Body></s:Envelope>\r\n'
    ).encode()


def soap_fault(code: int, text: str = "Error") -> bytes:
    return (
        '<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><s:Fault>'
        "<faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>"
        f'<UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>{code}</errorCode>'
        f"<errorDescription>{text}</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>\r\n"
    ).encode()


def events(client: UpnpClient) -> list[MapEvent]:
    out = []
    while (event := client.next_event()) is not None:
        out.append(event)
    return out


def answer(client: UpnpClient, status: int, body: bytes, now: float = 0.0) -> bytes:
    """Answer the pending exchange; return its request bytes."""
    exchange = client.http_to_send()
    assert exchange is not None
    client.receive_http(exchange, status, body, now)
    return exchange.request


def started(lifetime: int = 3600, service: str = V2) -> UpnpClient:
    client = UpnpClient(gateway=GATEWAY, client_address="10.1.0.2", internal_port=4000, lifetime=lifetime)
    client.start(0.0)
    assert client.datagrams_to_send(0.0) == [up.m_search(t) for t in up.SEARCH_TARGETS]
    client.receive_datagram(SSDP, GATEWAY, 0.1)
    request = answer(client, 200, description(service))
    assert request.startswith(b"GET /rootDesc.xml HTTP/1.1\r\n")
    request = answer(client, 200, soap_ok("GetExternalIPAddress", service, NewExternalIPAddress=WAN))
    assert b'SOAPAction: "' + service.encode() + b'#GetExternalIPAddress"' in request
    return client


# -- messages -------------------------------------------------------------------------------


def test_m_search_bytes() -> None:
    """[MAP-7.1] the M-SEARCH of UPnP DA 1.1 §1.3.2."""
    assert up.m_search("urn:x", 2) == (
        b'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: 2\r\nST: urn:x\r\n\r\n'
    )


def test_ssdp_answers() -> None:
    assert up.ssdp_response_untrusted(SSDP) == (
        "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
        "http://10.1.0.1:5000/rootDesc.xml",
    )
    for bad in (SSDP.replace(b"200 OK", b"404 No"), SSDP.replace(b"LOCATION", b"LOKATION"), b"\xff" * 10, SSDP * 20):
        with pytest.raises(PortMapError):
            up.ssdp_response_untrusted(bad)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.9.9.9:5000/x",
        "https://10.1.0.1/x",
        "http://example.com/x",
        "file:///etc/passwd",
        "http://10.1.0.1:99999/",
        "//",
    ],
)
def test_urls_off_the_gateway_are_refused(url: str) -> None:
    """[MAP-1.3] a description may only point at the gateway itself, over http."""
    with pytest.raises(PortMapError):
        up.gateway_url_untrusted(url, GATEWAY)


def test_relative_urls_join_the_base() -> None:
    base = up.gateway_url_untrusted("http://10.1.0.1:5000/rootDesc.xml", GATEWAY)
    assert str(up.gateway_url_untrusted("/ctl/IPConn", GATEWAY, base)) == "http://10.1.0.1:5000/ctl/IPConn"
    assert up.gateway_url_untrusted("ctl?a=1", GATEWAY, base).path == "/ctl?a=1"
    assert up.gateway_url_untrusted("http://10.1.0.1/", GATEWAY).port == 80


@pytest.mark.parametrize(
    ("service", "version"), [(V2, 2), (V1, 1), ("urn:schemas-upnp-org:service:WANPPPConnection:1", 1)]
)
def test_the_control_point_of_a_description(service: str, version: int) -> None:
    location = up.gateway_url_untrusted("http://10.1.0.1:5000/rootDesc.xml", GATEWAY)
    control = up.control_point_untrusted(description(service), location, GATEWAY)
    assert (control.service_type, control.version, str(control.url)) == (
        service,
        version,
        "http://10.1.0.1:5000/ctl/IPConn",
    )


@pytest.mark.parametrize(
    ("xml", "match"),
    [
        (description("urn:schemas-upnp-org:service:Layer3Forwarding:1"), "no WANIPConnection"),
        (description().replace(b"/ctl/IPConn", b"http://10.6.6.6/ctl"), "off the gateway"),
        (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]><root>&lol;</root>', "DTD"),
        (b"<root><unclosed></root>", "does not parse"),
        (b"<root>" + b" " * up.MAX_XML + b"</root>", "bytes"),
    ],
)
def test_bad_descriptions(xml: bytes, match: str) -> None:
    """[MAP-7.3] no DTD (no entity expansion), bounded size, a port-mapping service on the gateway."""
    location = up.gateway_url_untrusted("http://10.1.0.1:5000/rootDesc.xml", GATEWAY)
    with pytest.raises(PortMapError, match=match):
        up.control_point_untrusted(xml, location, GATEWAY)


def test_soap_bodies_and_answers() -> None:
    body = up.soap_body(V2, "DeletePortMapping", [("NewRemoteHost", ""), ("NewPortMappingDescription", "a<b&c")])
    assert b'<u:DeletePortMapping xmlns:u="' + V2.encode() + b'"><NewRemoteHost></NewRemoteHost>' in body
    assert b"<NewPortMappingDescription>a&lt;b&amp;c</NewPortMappingDescription>" in body
    assert up.soap_response_untrusted(
        200, soap_ok("AddAnyPortMapping", NewReservedPort="5000"), "AddAnyPortMapping"
    ) == {"NewReservedPort": "5000"}
    with pytest.raises(up.UpnpError, match="718") as fault:
        up.soap_response_untrusted(500, soap_fault(718), "AddPortMapping")
    assert fault.value.upnp_code == 718
    for status, bad in (
        (200, soap_ok("Other")),
        (500, b"<x/>"),
        (500, soap_fault(718).replace(b"718", b"7a8")),
        (200, b""),
    ):
        with pytest.raises(PortMapError):
            up.soap_response_untrusted(status, bad, "AddPortMapping")


# -- HTTP with h11 ----------------------------------------------------------------------------


def exchange() -> up.HttpExchange:
    return up.HttpExchange("POST", up.Url(host=GATEWAY, port=5000, path="/ctl"), b"<x/>", [("SOAPAction", '"a#b"')])


def test_the_request() -> None:
    request = exchange().request
    assert request.startswith(b"POST /ctl HTTP/1.1\r\n")
    for header in (b"host: 10.1.0.1:5000", b"connection: close", b"content-length: 4", b'soapaction: "a#b"'):
        assert header in request.lower()
    assert request.endswith(b"\r\n\r\n<x/>")


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n",
    ],
)
def test_responses_whole_and_byte_by_byte(response: bytes) -> None:
    assert exchange().receive_untrusted(response) == (200, b"hello")
    pending = exchange()
    results = [pending.receive_untrusted(response[i : i + 1]) for i in range(len(response))]
    assert results[-1] == (200, b"hello") and all(r is None for r in results[:-1])


def test_a_response_delimited_by_the_close() -> None:
    pending = exchange()
    assert pending.receive_untrusted(b"HTTP/1.0 500 Oops\r\n\r\nbody") is None
    assert pending.receive_eof_untrusted() == (500, b"body")


@pytest.mark.parametrize(
    "response",
    [
        b"NOT HTTP\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\n" + b"X: " + b"a" * 9000,
        b"HTTP/1.1 200 OK\r\nX: " + b"a" * 9000 + b"\r\nContent-Length: 0\r\n\r\n",  # whole in one read
        b"HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n" + b"a" * 70000,
    ],
)
def test_bad_or_oversized_responses(response: bytes) -> None:
    """[MAP-7.3] bounded head and body, complete messages only."""
    pending = exchange()
    with pytest.raises(PortMapError):
        if pending.receive_untrusted(response) is None:
            pending.receive_eof_untrusted()


def test_a_head_of_8_kib_is_read_whole_or_byte_by_byte() -> None:
    """[MAP-7.3] the bound is the head's size, status line to blank line, however it arrives."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX: "
    response = head + b"a" * (up.MAX_HTTP_HEAD - len(head) - 4) + b"\r\n\r\nok"
    assert response.index(b"\r\n\r\n") + 4 == up.MAX_HTTP_HEAD
    assert exchange().receive_untrusted(response) == (200, b"ok")
    pending = exchange()
    assert [pending.receive_untrusted(response[i : i + 1]) for i in range(len(response))][-1] == (200, b"ok")
    longer = response.replace(b"X: ", b"X: a")
    with pytest.raises(PortMapError, match="8 KiB"):
        exchange().receive_untrusted(longer)


def test_every_head_after_an_informational_one_is_bounded_too() -> None:
    """[MAP-7.3] a 100 Continue, then a final head over 8 KiB in the same read: refused; a final
    head of ordinary size after it: read."""
    final = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert exchange().receive_untrusted(b"HTTP/1.1 100 Continue\r\n\r\n" + final) == (200, b"ok")
    pending = exchange()
    assert pending.receive_untrusted(b"HTTP/1.1 100 Continue\r\n\r\n") is None
    assert pending.receive_untrusted(final) == (200, b"ok")
    big = b"HTTP/1.1 200 OK\r\nX: " + b"a" * 9000 + b"\r\nContent-Length: 0\r\n\r\n"
    with pytest.raises(PortMapError, match="8 KiB"):
        exchange().receive_untrusted(b"HTTP/1.1 100 Continue\r\n\r\n" + big)
    with pytest.raises(PortMapError, match="8 KiB"):  # 1xx heads, each short, do not reset the bound of the next
        exchange().receive_untrusted(b"HTTP/1.1 102 Processing\r\n\r\n" * 3 + big)


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_port_map_error(data: bytes) -> None:
    """[MAP-1.2] the fuzz invariant, for SSDP, XML and HTTP."""
    for parse in (
        lambda: up.ssdp_response_untrusted(data),
        lambda: up.soap_response_untrusted(500, data, "X"),
        lambda: exchange().receive_untrusted(data),
    ):
        try:
            parse()
        except PortMapError:
            pass


# -- the client -------------------------------------------------------------------------------


def test_map_renew_delete() -> None:
    """[MAP-7.1] [MAP-5.1] [MAP-7.4] search, describe, address, AddPortMapping, renew at half, DeletePortMapping."""
    client = started(lifetime=600)
    request = answer(client, 200, soap_ok("AddPortMapping"), 1.0)
    for part in (b"<NewExternalPort>4000</NewExternalPort>", b"<NewInternalClient>10.1.0.2</NewInternalClient>",
                 b"<NewProtocol>UDP</NewProtocol>", b"<NewLeaseDuration>600</NewLeaseDuration>"):  # fmt: skip
        assert part in request
    (granted,) = events(client)
    assert isinstance(granted, MappingGranted) and not granted.renewed
    mapping = granted.mapping
    assert (mapping.protocol, mapping.external_address, mapping.external_port, mapping.lifetime) == (
        MapProtocol.UPNP, WAN, 4000, 600.0,
    )  # fmt: skip
    assert client.get_timer() == 301.0 and client.http_to_send() is None
    client.handle_timer(301.0)
    assert b"AddPortMapping" in answer(client, 200, soap_ok("AddPortMapping"), 301.0)
    (renewed,) = events(client)
    assert isinstance(renewed, MappingGranted) and renewed.renewed and renewed.mapping.granted_at == 301.0
    client.remove(400.0)
    request = answer(client, 200, soap_ok("DeletePortMapping"), 400.0)
    assert b"DeletePortMapping" in request and b"<NewExternalPort>4000</NewExternalPort>" in request
    assert events(client) == [MappingRemoved(protocol=MapProtocol.UPNP, confirmed=True)]
    assert client.state is MapState.CLOSED


def test_only_permanent_leases_then_permanent() -> None:
    """[MAP-7.2] 725: asked again with lease 0; the mapping is permanent (no renewal) and deleted on exit."""
    client = started()
    answer(client, 500, soap_fault(725, "OnlyPermanentLeasesSupported"))
    assert b"<NewLeaseDuration>0</NewLeaseDuration>" in answer(client, 200, soap_ok("AddPortMapping"))
    (granted,) = events(client)
    assert isinstance(granted, MappingGranted) and math.isinf(granted.mapping.lifetime)
    assert client.get_timer() is None


def test_conflict_on_igd2_takes_any_port() -> None:
    """[MAP-7.2] 718 on WANIPConnection:2: AddAnyPortMapping, and the port it reserved."""
    client = started()
    answer(client, 500, soap_fault(718, "ConflictInMappingEntry"))
    request = answer(client, 200, soap_ok("AddAnyPortMapping", NewReservedPort="4321"))
    assert b"AddAnyPortMapping" in request
    (granted,) = events(client)
    assert isinstance(granted, MappingGranted) and granted.mapping.external_port == 4321


def test_conflict_on_igd1_fails() -> None:
    client = started(service=V1)
    answer(client, 500, soap_fault(718))
    (failed,) = events(client)
    assert isinstance(failed, MappingFailed) and failed.result == 718 and not failed.unsupported


def test_no_ssdp_answer_is_unsupported_after_three_searches() -> None:
    """[MAP-2.2] [MAP-7.1] M-SEARCH at 0, 1, 2 s; given up at 3 s."""
    client = UpnpClient(gateway=GATEWAY, client_address="10.1.0.2", internal_port=4000)
    client.start(0.0)
    rounds = [0.0] if client.datagrams_to_send(0.0) else []
    while (timer := client.get_timer()) is not None:
        client.handle_timer(timer)
        if client.datagrams_to_send(timer):
            rounds.append(timer)
    assert rounds == [0.0, 1.0, 2.0]
    (failed,) = events(client)
    assert isinstance(failed, MappingFailed) and failed.unsupported


def test_ssdp_from_other_hosts_and_junk_are_dropped() -> None:
    """[MAP-1.3] only the gateway's SSDP answer is used."""
    client = UpnpClient(gateway=GATEWAY, client_address="10.1.0.2", internal_port=4000)
    client.start(0.0)
    client.receive_datagram(SSDP, "10.1.0.9", 0.0)
    client.receive_datagram(b"junk", GATEWAY, 0.0)
    client.receive_datagram(SSDP.replace(b"10.1.0.1:5000", b"10.1.0.9:5000"), GATEWAY, 0.0)
    assert client.dropped == 3 and client.http_to_send() is None


def test_http_failures_and_stale_answers() -> None:
    """An unreachable description fails the attempt as unsupported; a stale exchange is dropped."""
    client = UpnpClient(gateway=GATEWAY, client_address="10.1.0.2", internal_port=4000)
    client.start(0.0)
    client.receive_datagram(SSDP, GATEWAY, 0.0)
    exchange = client.http_to_send()
    assert exchange is not None and client.http_to_send() is None
    client.receive_http(up.HttpExchange("GET", exchange.url), 200, b"", 0.0)
    assert client.dropped == 1
    client.http_failed(exchange, "connection refused", 0.0)
    (failed,) = events(client)
    assert isinstance(failed, MappingFailed) and failed.unsupported


def test_a_failed_renewal_loses_the_mapping() -> None:
    client = started(lifetime=100)
    answer(client, 200, soap_ok("AddPortMapping"))
    events(client)
    client.handle_timer(50.0)
    answer(client, 500, soap_fault(501, "ActionFailed"), 50.0)
    (lost,) = events(client)
    assert isinstance(lost, MappingLost) and client.mapping is None


def test_garbage_answers_fail_the_step() -> None:
    client = started()
    answer(client, 200, b"<not soap")
    (failed,) = events(client)
    assert isinstance(failed, MappingFailed) and not failed.unsupported


def test_removal_while_mapping_deletes_and_before_describing_is_immediate() -> None:
    client = started()
    assert client.http_to_send() is not None  # AddPortMapping in flight: its result is unknown
    client.remove(1.0)
    assert b"DeletePortMapping" in answer(client, 500, soap_fault(714, "NoSuchEntryInArray"), 1.0)
    assert events(client) == [MappingRemoved(protocol=MapProtocol.UPNP, confirmed=False)]
    early = UpnpClient(gateway=GATEWAY, client_address="10.1.0.2", internal_port=4000)
    early.start(0.0)
    early.remove(0.0)
    assert events(early) == [MappingRemoved(protocol=MapProtocol.UPNP, confirmed=False)]
    assert early.state is MapState.CLOSED
    with pytest.raises(LocalProtocolError):
        early.start(0.0)
