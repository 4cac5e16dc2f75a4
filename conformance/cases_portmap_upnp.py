# ruff: noqa: E501 (a case title is one row of the table of spec/conformance.md §4, kept whole)
"""UPnP IGD port-mapping cases (spec/portmap.md §7): the ``portmap`` role with ``protocol: "upnp"``.

The runner plays the home router at 10.0.0.1 (spec/conformance.md CONF-3.12.4): it reads the
IUT's M-SEARCHes, parses each HTTP request the role gives in ``http`` with its own h11 parser
(method, path, headers, the SOAP action, its service and its arguments in order), and answers
with ``upnp_http``: device descriptions and SOAP bodies written here from UPnP Device
Architecture 1.1 §1-§3 and WANIPConnection:2, not taken from the core, in virtual time.
"""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from typing import Any

import h11

from .checks import CaseFailed, expect, expect_eq, short, unhex
from .iut import Iut
from .nat_net import Role, Sent, text
from .registry import case

UPNP, LIFETIMES, REMOVAL = "portmap.md §7", "portmap.md §5", "portmap.md §6"
GW = "10.0.0.1"
GATEWAY, GROUP, LOCAL = (GW, 1900), ("239.255.255.250", 1900), ("10.0.0.2", 40000)
ORIGIN = f"http://{GW}:5000"
LOCATION = f"{ORIGIN}/rootDesc.xml"
WAN = "198.18.7.7"
SEED = "7570" * 8
IGD2 = "urn:schemas-upnp-org:device:InternetGatewayDevice:2"
IGD1 = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
IP2 = "urn:schemas-upnp-org:service:WANIPConnection:2"
IP1 = "urn:schemas-upnp-org:service:WANIPConnection:1"
PPP = "urn:schemas-upnp-org:service:WANPPPConnection:1"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
MAPPING_KEY = [("NewRemoteHost", ""), ("NewExternalPort", str(LOCAL[1])), ("NewProtocol", "UDP")]


# -- the gateway's messages (UPnP DA 1.1 §1.3.3, §2.3, §3.2) ----------------------------------


def ssdp_answer(
    st: str = IGD2, location: str = LOCATION, pad: int = 0, server: bytes = b"Linux UPnP/1.1 lab/1"
) -> bytes:
    """A search answer (UPnP DA 1.1 §1.3.3), ``pad`` bytes of an extra header longer."""
    head = (
        b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\nEXT:\r\nLOCATION: " + location.encode()
        + b"\r\nSERVER: " + server + b"\r\nST: " + st.encode() + b"\r\nUSN: uuid:0c0ffee0::" + st.encode() + b"\r\n"
    )  # fmt: skip
    if pad:
        head += b"X-PAD: " + b"p" * max(0, pad - 9) + b"\r\n"
    return head + b"\r\n"


def ssdp_of_size(size: int) -> bytes:
    data = ssdp_answer(pad=size - len(ssdp_answer()))
    expect_eq(len(data), size, "the runner's padded SSDP answer")
    return data


def description(*services: tuple[str, str], p: str = "", doctype: str = "", pad: int = 0) -> bytes:
    """An IGD's description (UPnP DA 1.1 §2.3): ``services`` ((type, controlURL), in document
    order) in a WANConnectionDevice under a WANDevice; elements prefixed ``p:`` when ``p``."""
    q = f"{p}:" if p else ""

    def e(name: str, inner: str) -> str:
        return f"<{q}{name}>{inner}</{q}{name}>"

    def service(kind: str, control: str) -> str:
        sid = kind.split(":")[3] + "1"
        return e("service", e("serviceType", kind) + e("serviceId", f"urn:upnp-org:serviceId:{sid}")
                 + e("SCPDURL", "/scpd.xml") + e("controlURL", control) + e("eventSubURL", "/evt"))  # fmt: skip

    connection = e("device", e("deviceType", "urn:schemas-upnp-org:device:WANConnectionDevice:2")
                   + e("serviceList", "".join(service(k, c) for k, c in services)))  # fmt: skip
    wan = e("device", e("deviceType", "urn:schemas-upnp-org:device:WANDevice:2") + e("deviceList", connection))
    igd = e(
        "device",
        e("deviceType", IGD2)
        + e("friendlyName", "lab router")
        + e("serviceList", service("urn:schemas-upnp-org:service:Layer3Forwarding:1", "/ctl/L3F"))
        + e("deviceList", wan),
    )
    xmlns = f'xmlns{":" + p if p else ""}="urn:schemas-upnp-org:device-1-0"'
    filler = f"<!--{'f' * pad}-->" if pad else ""
    root = f"<{q}root {xmlns}>{e('specVersion', e('major', '1') + e('minor', '1'))}{igd}{filler}</{q}root>"
    return f'<?xml version="1.0"?>\n{doctype}{root}\n'.encode()


def soap_ok(
    service: str,
    action: str,
    out: list[tuple[str, str]] | None = None,
    *,
    env: str = "s",
    u: str = "u",
    doctype: str = "",
) -> bytes:
    """A SOAP answer to ``action`` (UPnP DA 1.1 §3.2.2) with the out arguments ``out``."""
    args = "".join(f"<{name}>{value}</{name}>" for name, value in out or [])
    return (
        f'<?xml version="1.0"?>\r\n{doctype}<{env}:Envelope xmlns:{env}="{SOAP_ENV}" '
        f'{env}:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><{env}:Body>'
        f'<{u}:{action}Response xmlns:{u}="{service}">{args}</{u}:{action}Response></{env}:Body></{env}:Envelope>\r\n'
    ).encode()


def soap_fault(code: int, what: str) -> bytes:
    """A UPnP error answer (UPnP DA 1.1 §3.2.2, with HTTP 500)."""
    return (
        f'<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="{SOAP_ENV}" '
        's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><s:Fault>'
        "<faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>"
        f'<UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>{code}</errorCode>'
        f"<errorDescription>{what}</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>\r\n"
    ).encode()


def add_args(lease: int = 3600) -> list[tuple[str, str]]:
    """AddPortMapping's (and AddAnyPortMapping's) in arguments, in the service's order (MAP-7.1)."""
    return [
        *MAPPING_KEY,
        ("NewInternalPort", str(LOCAL[1])),
        ("NewInternalClient", LOCAL[0]),
        ("NewEnabled", "1"),
        ("NewPortMappingDescription", "p2pos"),
        ("NewLeaseDuration", str(lease)),
    ]


# -- the IUT's messages, read by the runner --------------------------------------------------


def m_search(sent: Sent) -> str:
    """The ``ST`` of an M-SEARCH (UPnP DA 1.1 §1.3.2), its other headers checked (MAP-7.1)."""
    try:
        lines = sent.data.decode("ascii").split("\r\n")
    except UnicodeDecodeError:
        raise CaseFailed(f"an M-SEARCH that is not ASCII: {sent.data.hex()}") from None
    expect_eq(lines[0], "M-SEARCH * HTTP/1.1", "an M-SEARCH's request line")
    expect(sent.data.endswith(b"\r\n\r\n"), f"an M-SEARCH without its empty last line: {short(sent.data)}")
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().upper()] = value.strip()
    expect_eq(headers.get("HOST"), "239.255.255.250:1900", "an M-SEARCH's HOST")
    expect_eq(headers.get("MAN"), '"ssdp:discover"', "an M-SEARCH's MAN")
    expect_eq(headers.get("MX"), "1", "an M-SEARCH's MX")
    expect_eq(sent.local, text(LOCAL), "the socket an M-SEARCH leaves")
    return headers.get("ST", "")


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request of the IUT: where to, its method, target, headers (names lowercase), body."""

    url: str
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    at: float


def http_request(http: Any, now: float) -> Request:
    """The ``http`` field of an answer, parsed by the runner's own h11 (a server's side)."""
    if not isinstance(http, dict) or not isinstance(http.get("url"), str):
        raise CaseFailed(f"'http' must be null or {{'url': text, 'request': hex}}: {short(http)}")
    raw = unhex(http.get("request"), "http.request")
    conn = h11.Connection(our_role=h11.SERVER)
    try:
        conn.receive_data(raw)
        head = conn.next_event()
        if not isinstance(head, h11.Request):
            raise CaseFailed(f"an incomplete HTTP request head: {short(raw)}")
        body = b""
        while not isinstance(event := conn.next_event(), h11.EndOfMessage):
            if not isinstance(event, h11.Data):
                raise CaseFailed(f"an incomplete HTTP request: {short(raw)}")
            body += event.data
    except h11.RemoteProtocolError as exc:
        raise CaseFailed(f"the IUT's HTTP request does not parse ({exc}): {short(raw)}") from None
    expect_eq(conn.trailing_data[0], b"", "bytes after the HTTP request")
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in head.headers}
    return Request(http["url"], head.method.decode(), head.target.decode("latin-1"), headers, body, now)


def check_target(request: Request, method: str, path: str) -> None:
    """Method, URL and target, ``Host`` and ``Connection: close`` (MAP-7.1: one exchange per connection)."""
    expect_eq(
        (request.method, request.url, request.target),
        (method, ORIGIN + path, path),
        "the HTTP request's method, URL and target",
    )
    expect_eq(request.headers.get("host"), f"{GW}:5000", "the HTTP request's Host")
    expect("close" in request.headers.get("connection", "").lower(), f"no 'Connection: close': {request.headers}")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def soap_request(request: Request) -> tuple[str, str, list[tuple[str, str]]]:
    """(service type, action, in arguments in order) of a SOAP request (UPnP DA 1.1 §3.2.1)."""
    if re.search(rb"<!\s*(DOCTYPE|ENTITY)", request.body, re.IGNORECASE):  # nothing for ET to expand
        raise CaseFailed(f"a SOAP request with a DTD: {short(request.body)}")
    try:
        root = ET.fromstring(request.body)  # noqa: S314 (no DTD, checked above)
    except ET.ParseError as exc:
        raise CaseFailed(f"a SOAP body that does not parse ({exc}): {short(request.body)}") from None
    expect_eq(root.tag, f"{{{SOAP_ENV}}}Envelope", "the SOAP envelope")
    body = [child for child in root if child.tag == f"{{{SOAP_ENV}}}Body"]
    expect(len(body) == 1 and len(body[0]) == 1, f"a SOAP Body with one action: {short(request.body, 200)}")
    action = body[0][0]
    expect(action.tag.startswith("{"), f"an action without its service's namespace: {action.tag}")
    service, name = action.tag[1:].split("}", 1)
    return service, name, [(_local(arg.tag), (arg.text or "").strip()) for arg in action]


def check_soap(
    request: Request | None, service: str, action: str, arguments: list[tuple[str, str]], path: str = "/ctl/IP2"
) -> None:
    """A POST of ``action`` to ``path``: its SOAPAction header, action, namespace and arguments."""
    expect(request is not None, f"no HTTP request where {action} was due")
    assert request is not None
    check_target(request, "POST", path)
    expect_eq(request.headers.get("soapaction"), f'"{service}#{action}"', f"{action}'s SOAPAction header")
    expect(
        request.headers.get("content-type", "").startswith("text/xml"), f"{action}'s Content-Type: {request.headers}"
    )
    expect_eq(soap_request(request), (service, action, arguments), f"{action}'s service, name and arguments")


class Gateway:
    """The runner as the router: the IUT's ``portmap`` role with ``protocol: "upnp"``, the HTTP
    request it has pending (``pending``) and every one it made (``requests``)."""

    def __init__(self, iut: Iut, **fields: Any) -> None:
        self.iut = iut
        self.role = Role(iut)
        self.requests: list[Request] = []
        self.pending: Request | None = None
        self.role.start(
            "portmap",
            0.0,
            protocol="upnp",
            local=text(LOCAL),
            gateway=text(GATEWAY),
            internal_port=LOCAL[1],
            seed=SEED,
            **fields,
        )
        self._http(0.0)

    def _http(self, now: float) -> Request | None:
        if "http" not in self.role.last:
            raise CaseFailed(f"an answer of the upnp role without 'http': {short(self.role.last)}")
        if self.role.last["http"] is None:
            return None
        request = http_request(self.role.last["http"], now)
        self.requests.append(request)
        self.pending = request
        return request

    def ssdp(self, data: bytes, now: float, source: tuple[str, int] = GATEWAY) -> Request | None:
        """An SSDP datagram to the IUT's socket; the HTTP request it starts, if any."""
        self.role.receive(data, source, text(LOCAL), now)
        return self._http(now)

    def _answer(self, now: float, **fields: Any) -> Request | None:
        expect(self.pending is not None, "the runner has no HTTP request to answer")
        self.pending = None
        self.role.start("upnp_http", now, **fields)
        return self._http(now)

    def reply(self, status: int, body: bytes, now: float) -> Request | None:
        return self._answer(now, status=status, body=body.hex())

    def reply_raw(self, response: bytes, now: float) -> Request | None:
        return self._answer(now, response=response.hex())

    def reply_failed(self, reason: str, now: float) -> Request | None:
        return self._answer(now, failed=reason)

    def remove(self, now: float) -> Request | None:
        self.role.start("portmap_remove", now)
        return self._http(now)

    def advance(self, until: float) -> Request | None:
        """Run the role's timers in order up to ``until``, stopping at the first HTTP request."""
        while self.role.timer is not None and self.role.timer <= until:
            at = self.role.timer
            self.role.run_timer(at)
            if (request := self._http(at)) is not None:
                return request
        return None

    def event(self, kind: str) -> dict[str, Any] | None:
        return self.role.event(kind)

    def granted(self, external: str, what: str) -> dict[str, Any]:
        """The ``mapping_granted`` event, which must name ``external`` (``what``: the case's words)."""
        granted = self.event("mapping_granted")
        expect(granted is not None, f"no mapping_granted ({what}): {self.role.events}")
        assert granted is not None
        expect_eq(granted.get("external"), external, f"the external address ({what})")
        return granted

    def quiet(self, what: str) -> None:
        expect(self.role.last.get("http") is None, f"an HTTP request after {what}: {short(self.role.last.get('http'))}")

    def described(self, xml: bytes) -> Request | None:
        """Answer the search from the gateway and give ``xml`` as the description."""
        get = self.ssdp(ssdp_answer(), 0.1)
        expect(get is not None, "no HTTP request after the gateway's SSDP answer")
        assert get is not None
        check_target(get, "GET", "/rootDesc.xml")
        return self.reply(200, xml, 0.2)

    def addressed(self, xml: bytes | None = None, service: str = IP2, path: str = "/ctl/IP2") -> Request | None:
        """Up to AddPortMapping: the description, GetExternalIPAddress checked and answered."""
        ask = self.described(xml or description((IP2, "/ctl/IP2")))
        check_soap(ask, service, "GetExternalIPAddress", [], path)
        return self.reply(200, soap_ok(service, "GetExternalIPAddress", [("NewExternalIPAddress", WAN)]), 0.3)

    def mapped(self, lease: int = 3600) -> None:
        add = self.addressed()
        check_soap(add, IP2, "AddPortMapping", add_args(lease))
        self.reply(200, soap_ok(IP2, "AddPortMapping"), 0.5)
        granted = self.event("mapping_granted")
        expect(granted is not None, f"no mapping_granted: {self.role.events}")


def started(iut: Iut, **fields: Any) -> Gateway:
    return Gateway(iut, **fields)


def failed_without_requests(gw: Gateway, what: str, result: Any = "any") -> None:
    failed = gw.event("mapping_failed")
    expect(failed is not None, f"{what}: no mapping_failed: {gw.role.events}")
    assert failed is not None
    if result != "any":
        expect_eq(failed.get("result"), result, f"{what}: mapping_failed's result")
    expect(gw.event("mapping_granted") is None, f"{what}: a mapping_granted")
    gw.quiet(what)


# -- MAP-7.1: search, description, SOAP, renewal ---------------------------------------------


@case(
    "map/upnp/1",
    section=UPNP,
    title="UPnP search: M-SEARCH for IGD:2 then :1 (MX 1) to 239.255.255.250:1900 and the gateway's port 1900, rounds at 0, 1 and 2 s; given up at 3 s",
    requirements=("MAP-7.1", "MAP-2.2", "CONF-3.12.4"),
)
def _(iut: Iut) -> str | None:
    gw = started(iut)
    expect(gw.advance(2.999) is None, f"an HTTP request without an SSDP answer: {gw.requests}")
    expect(gw.event("mapping_failed") is None, f"given up before 3 s: {gw.role.events}")
    gw.advance(3.0 + 1e-6)
    failed = gw.event("mapping_failed")
    expect(
        failed is not None and failed.get("unsupported") is True,
        f"no unsupported mapping_failed by 3 s: {gw.role.events}",
    )
    expect(gw.advance(30.0) is None, f"an HTTP request without an SSDP answer: {gw.requests}")
    rounds: dict[float, list[tuple[str, tuple[str, int]]]] = {}
    for sent in gw.role.sent:
        rounds.setdefault(round(sent.at, 6), []).append((m_search(sent), sent.to))
    expect_eq(sorted(rounds), [0.0, 1.0, 2.0], "the times of the M-SEARCH rounds")
    for at, searches in rounds.items():
        expect_eq(
            sorted(searches),
            sorted((st, to) for st in (IGD2, IGD1) for to in (GROUP, GATEWAY)),
            f"the M-SEARCHes at {at} s",
        )
        targets = [st for st, _ in searches]
        expect(targets.index(IGD2) < targets.index(IGD1), f"IGD:1 searched before IGD:2 at {at} s")
    return None


@case(
    "map/upnp/2",
    section=UPNP,
    title="UPnP: the first SSDP answer's LOCATION described; WANIPConnection:2 chosen before :1 and WANPPPConnection:1; GetExternalIPAddress, AddPortMapping (3600 s), renewed at half the lease",
    requirements=("MAP-7.1", "MAP-5.1", "MAP-5.3", "MAP-4.2", "CONF-3.12.4"),
)
def _(iut: Iut) -> str | None:
    gw = started(iut)
    get = gw.ssdp(ssdp_answer(IGD1, f"{ORIGIN}/igd.xml"), 0.1)
    expect(get is not None, "no HTTP request after the gateway's SSDP answer")
    assert get is not None
    check_target(get, "GET", "/igd.xml")
    expect_eq(get.body, b"", "the description GET's body")
    expect(
        gw.ssdp(ssdp_answer(IGD2, f"{ORIGIN}/other.xml"), 0.15) is None,
        "a second description fetched for a second SSDP answer",
    )
    rich = description((PPP, "/ctl/PPP"), (IP1, "/ctl/IP1"), (IP2, f"{ORIGIN}/ctl/IP2"))
    ask = gw.reply(200, rich, 0.2)
    check_soap(ask, IP2, "GetExternalIPAddress", [])
    add = gw.reply(200, soap_ok(IP2, "GetExternalIPAddress", [("NewExternalIPAddress", WAN)]), 0.3)
    check_soap(add, IP2, "AddPortMapping", add_args(3600))
    gw.reply(200, soap_ok(IP2, "AddPortMapping"), 0.5)
    granted = gw.granted(f"{WAN}:{LOCAL[1]}", "WANIPConnection:2")
    expect_eq((granted.get("lifetime"), granted.get("renewed")), (3600, False), "the mapping granted")
    expect(gw.advance(1800.49) is None, f"a request before half the lease: {gw.requests[-1]}")
    renewal = gw.advance(4000.0)
    expect(
        renewal is not None and abs(renewal.at - 1800.5) < 1e-6,
        f"the renewal at {renewal and renewal.at} (granted at 0.5 for 3600 s)",
    )
    check_soap(renewal, IP2, "AddPortMapping", add_args(3600))
    gw.reply(200, soap_ok(IP2, "AddPortMapping"), 1800.6)
    renewed = [e for e in gw.role.events if e.get("type") == "mapping_granted"][1:]
    expect(len(renewed) == 1 and renewed[0].get("renewed") is True, f"no renewed mapping_granted: {gw.role.events}")
    return None


@case(
    "map/upnp/3",
    section=UPNP,
    title="UPnP: WANIPConnection:1 before WANPPPConnection:1; a PPP-only gateway is mapped through WANPPPConnection:1; no port-mapping service fails",
    requirements=("MAP-7.1",),
)
def _(iut: Iut) -> str | None:
    for services, chosen, path in (
        (((PPP, "/ctl/PPP"), (IP1, "/ctl/IP1")), IP1, "/ctl/IP1"),
        (((PPP, f"{ORIGIN}/ctl/PPP"),), PPP, "/ctl/PPP"),
    ):
        gw = started(iut)
        add = gw.addressed(description(*services), chosen, path)
        check_soap(add, chosen, "AddPortMapping", add_args(), path)
        gw.reply(200, soap_ok(chosen, "AddPortMapping"), 0.5)
        gw.granted(f"{WAN}:{LOCAL[1]}", chosen)
    gw = started(iut)
    gw.described(description())
    failed_without_requests(gw, "a description without WANIPConnection or WANPPPConnection")
    return None


# -- MAP-7.2: the errors acted on ------------------------------------------------------------


@case(
    "map/upnp/4",
    section=UPNP,
    title="UPnP error 725 (OnlyPermanentLeasesSupported): AddPortMapping again with lease 0; the permanent mapping is never renewed",
    requirements=("MAP-7.2", "MAP-5.3"),
)
def _(iut: Iut) -> str | None:
    gw = started(iut, lifetime=600)
    add = gw.addressed()
    check_soap(add, IP2, "AddPortMapping", add_args(600))
    again = gw.reply(500, soap_fault(725, "OnlyPermanentLeasesSupported"), 0.4)
    check_soap(again, IP2, "AddPortMapping", add_args(0))
    gw.reply(200, soap_ok(IP2, "AddPortMapping"), 0.5)
    granted = gw.granted(f"{WAN}:{LOCAL[1]}", "lease 0 granted")
    expect_eq(granted.get("lifetime"), None, "the permanent mapping (lifetime null)")
    expect(gw.advance(1e6) is None, f"a request for a permanent lease: {gw.requests[-1]}")
    return None


@case(
    "map/upnp/5",
    section=UPNP,
    title="UPnP error 718 (ConflictInMappingEntry) on WANIPConnection:2: AddAnyPortMapping, and its NewReservedPort is the external port",
    requirements=("MAP-7.2",),
)
def _(iut: Iut) -> str | None:
    gw = started(iut)
    gw.addressed()
    any_port = gw.reply(500, soap_fault(718, "ConflictInMappingEntry"), 0.4)
    check_soap(any_port, IP2, "AddAnyPortMapping", add_args())
    gw.reply(200, soap_ok(IP2, "AddAnyPortMapping", [("NewReservedPort", "40123")]), 0.5)
    gw.granted(f"{WAN}:40123", "the port AddAnyPortMapping reserved")
    return None


@case(
    "map/upnp/6",
    section=UPNP,
    title="UPnP: 718 on WANIPConnection:1, any other error and a garbled answer fail the attempt (the error code as result)",
    requirements=("MAP-7.2", "MAP-1.2"),
)
def _(iut: Iut) -> str | None:
    gw = started(iut)
    gw.addressed(description((IP1, "/ctl/IP1")), IP1, "/ctl/IP1")
    gw.reply(500, soap_fault(718, "ConflictInMappingEntry"), 0.4)
    failed_without_requests(gw, "718 on WANIPConnection:1", 718)
    for code, what in ((501, "ActionFailed"), (606, "Action not authorized"), (724, "SamePortValuesRequired")):
        gw = started(iut)
        gw.addressed()
        gw.reply(500, soap_fault(code, what), 0.4)
        failed_without_requests(gw, f"error {code}", code)
    for status, body in ((200, b"<not soap"), (200, soap_ok(IP2, "DeletePortMapping")), (500, b"<x/>")):
        gw = started(iut)
        gw.addressed()
        gw.reply(status, body, 0.4)
        failed_without_requests(gw, f"HTTP {status} with {short(body, 40)}")
    return None


# -- MAP-7.3: bounds, DTDs, namespaces -------------------------------------------------------


@case(
    "map/upnp/7",
    section=UPNP,
    title="SSDP answers over 2048 bytes or not ASCII, from another host or with a LOCATION off the gateway are ignored; one of 2048 bytes is taken",
    requirements=("MAP-7.3", "MAP-1.3"),
)
def _(iut: Iut) -> str | None:
    gw = started(iut)
    for what, data, source in (
        ("an answer of 2049 bytes", ssdp_of_size(2049), GATEWAY),
        ("an answer that is not ASCII", ssdp_answer(server=b"R\xf6uter UPnP/1.1"), GATEWAY),
        ("an answer from another host", ssdp_answer(), ("10.0.0.99", 1900)),
        ("a LOCATION on another host", ssdp_answer(location="http://10.0.0.99:5000/rootDesc.xml"), GATEWAY),
        ("a LOCATION not http", ssdp_answer(location=f"https://{GW}:5000/rootDesc.xml"), GATEWAY),
    ):
        expect(gw.ssdp(data, 0.1, source) is None, f"an HTTP request after {what}: {gw.requests[-1:]}")
    get = gw.ssdp(ssdp_of_size(2048), 0.2)
    expect(get is not None, "an SSDP answer of 2048 bytes was not taken")
    assert get is not None
    check_target(get, "GET", "/rootDesc.xml")
    expect(gw.event("mapping_failed") is None, f"the search given up: {gw.role.events}")
    return None


def http_response(body: bytes, extra: bytes = b"", status: bytes = b"200 OK") -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\nContent-Type: text/xml\r\n"
        + extra
        + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
        + body
    )


@case(
    "map/upnp/8",
    section=UPNP,
    title="UPnP HTTP: a response head over 8 KiB or a body over 64 KiB is refused; a 4 KiB head with a 60 KiB body is read",
    requirements=("MAP-7.3", "CONF-3.12.4"),
)
def _(iut: Iut) -> str | None:
    xml = description((IP2, "/ctl/IP2"))
    gw = started(iut)
    gw.ssdp(ssdp_answer(), 0.1)
    ask = gw.reply_raw(
        http_response(description((IP2, "/ctl/IP2"), pad=60000), b"X-Pad: " + b"h" * 4000 + b"\r\n"), 0.2
    )
    check_soap(ask, IP2, "GetExternalIPAddress", [])
    for what, response in (
        ("a head of 9 KiB", http_response(xml, b"X-Pad: " + b"h" * 9216 + b"\r\n")),
        ("a body of 70000 bytes", http_response(description((IP2, "/ctl/IP2"), pad=70000))),
    ):
        gw = started(iut)
        gw.ssdp(ssdp_answer(), 0.1)
        gw.reply_raw(response, 0.2)
        failed_without_requests(gw, what)
    return None


DTD = '<!DOCTYPE root [<!ENTITY ctl "/ctl/IP2">]>\n'


@case(
    "map/upnp/9",
    section=UPNP,
    title="UPnP XML with a DTD is refused before parsing: a description whose controlURL is an entity, a SOAP answer with <!DOCTYPE; nothing expanded",
    requirements=("MAP-7.3",),
)
def _(iut: Iut) -> str | None:
    gw = started(iut)
    gw.described(description((IP2, "&ctl;"), doctype=DTD))
    failed_without_requests(gw, "a description with a DTD")
    gw = started(iut)
    gw.described(description((IP2, "/ctl/IP2")))
    wan = '<!DOCTYPE s:Envelope [<!ENTITY wan "198.18.7.7">]>\r\n'
    gw.reply(200, soap_ok(IP2, "GetExternalIPAddress", [("NewExternalIPAddress", "&wan;")], doctype=wan), 0.3)
    failed_without_requests(gw, "a GetExternalIPAddress answer with a DTD")
    gw = started(iut)
    gw.addressed()
    gw.reply(200, soap_ok(IP2, "AddPortMapping", doctype='<!DOCTYPE s:Envelope [<!ENTITY x "x">]>\r\n'), 0.4)
    failed_without_requests(gw, "an AddPortMapping answer with a DTD")
    return None


@case(
    "map/upnp/10",
    section=UPNP,
    title="UPnP names are matched without their namespace: a prefixed description, SOAP answers with other prefixes",
    requirements=("MAP-7.3",),
)
def _(iut: Iut) -> str | None:
    gw = started(iut)
    ask = gw.described(description((IP2, "/ctl/IP2"), p="dev"))
    check_soap(ask, IP2, "GetExternalIPAddress", [])
    answer = soap_ok(IP2, "GetExternalIPAddress", [("m:NewExternalIPAddress", WAN)], env="SOAP-ENV", u="m")
    add = gw.reply(200, answer, 0.3)
    check_soap(add, IP2, "AddPortMapping", add_args())
    gw.reply(200, soap_ok(IP2, "AddPortMapping", env="soapenv", u="ns0"), 0.5)
    gw.granted(f"{WAN}:{LOCAL[1]}", "the prefixed answers")
    return None


# -- MAP-7.4 and §6: removal -----------------------------------------------------------------


@case(
    "map/upnp/11",
    section=UPNP,
    title="UPnP removal while AddPortMapping is in flight still sends DeletePortMapping (the gateway may have made it)",
    requirements=("MAP-7.4", "MAP-6.1", "CONF-3.12.4"),
)
def _(iut: Iut) -> str | None:
    gw = started(iut)
    add = gw.addressed()
    check_soap(add, IP2, "AddPortMapping", add_args())
    delete = gw.remove(0.4)
    check_soap(delete, IP2, "DeletePortMapping", MAPPING_KEY)
    gw.reply(200, soap_ok(IP2, "DeletePortMapping"), 0.5)
    removed = gw.event("mapping_removed")
    expect(removed is not None and removed.get("confirmed") is True, f"no confirmed mapping_removed: {gw.role.events}")
    expect(gw.event("mapping_granted") is None, f"a mapping granted after its removal: {gw.role.events}")
    return None


@case(
    "map/upnp/12",
    section=REMOVAL,
    title="UPnP removal: DeletePortMapping of the mapping; refused, the removal is unconfirmed; before any mapping was asked for, nothing is sent",
    requirements=("MAP-6.1",),
)
def _(iut: Iut) -> str | None:
    for status, body, confirmed in (
        (200, soap_ok(IP2, "DeletePortMapping"), True),
        (500, soap_fault(714, "NoSuchEntryInArray"), False),
    ):
        gw = started(iut)
        gw.mapped()
        delete = gw.remove(10.0)
        check_soap(delete, IP2, "DeletePortMapping", MAPPING_KEY)
        gw.reply(status, body, 10.1)
        removed = gw.event("mapping_removed")
        expect(
            removed is not None and removed.get("confirmed") is confirmed, f"HTTP {status}: mapping_removed {removed}"
        )
    gw = started(iut)
    gw.remove(0.5)
    removed = gw.event("mapping_removed")
    expect(removed is not None and removed.get("confirmed") is False, f"removed while searching: {gw.role.events}")
    expect_eq(gw.requests, [], "HTTP requests of a removal while searching")
    return None


@case(
    "map/upnp/13",
    section=LIFETIMES,
    title="UPnP: a refused renewal loses the mapping; an HTTP exchange that fails ends the attempt",
    requirements=("MAP-5.2", "MAP-7.1", "CONF-3.12.4"),
)
def _(iut: Iut) -> str | None:
    gw = started(iut, lifetime=100)
    gw.mapped(lease=100)
    renewal = gw.advance(1000.0)  # when is map/upnp/2's matter
    check_soap(renewal, IP2, "AddPortMapping", add_args(100))
    assert renewal is not None
    gw.reply(500, soap_fault(501, "ActionFailed"), renewal.at + 0.1)
    expect(gw.event("mapping_lost") is not None, f"no mapping_lost after a refused renewal: {gw.role.events}")
    for step in range(3):
        gw = started(iut)
        gw.ssdp(ssdp_answer(), 0.1)
        answers = (
            description((IP2, "/ctl/IP2")),
            soap_ok(IP2, "GetExternalIPAddress", [("NewExternalIPAddress", WAN)]),
        )
        for i in range(step):  # the description, then GetExternalIPAddress, answered
            gw.reply(200, answers[i], 0.2 + i / 10)
        gw.reply_failed("connection refused", 0.5)
        failed_without_requests(gw, f"a failed exchange at step {step}")
    return None
