"""UPnP IGD's messages (spec/portmap.md §7): SSDP search, the device description, SOAP over HTTP (h11).

Everything a gateway sends is untrusted: an SSDP answer (``ssdp_response_untrusted``), the
device description XML (``control_point_untrusted``) and a SOAP answer, read through an
:class:`HttpExchange` (``receive_untrusted``, ``receive_eof_untrusted``) and then
``soap_response_untrusted``.  Each is bounded in size, XML with a DTD (hence entities) is
refused before it reaches the parser (MAP-7.3), and every URL must point at the gateway
itself (MAP-1.3).  portmap_upnp_client.py sequences them; this module only builds and reads.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import urllib.parse
import xml.etree.ElementTree as ET
from typing import Final

import h11

from .portmap_common import PortMapError

SSDP_GROUP: Final = ("239.255.255.250", 1900)
#: What the client searches for, most capable first (MAP-7.1).
SEARCH_TARGETS: Final = (
    "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
    "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
)
#: The services that can map a port, preferred first (WANIPConnection:2 has AddAnyPortMapping).
SERVICES: Final = (
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
)
MAX_SSDP: Final = 2048
MAX_XML: Final = 65536
MAX_HTTP_HEAD: Final = 8192
#: UPnP error codes the client acts on (UPnP IGD WANIPConnection:2 §2.5).
CONFLICT: Final = 718
ONLY_PERMANENT: Final = 725
_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
#: The blank line that ends an HTTP head, as h11 finds it (bare LF line ends included).
_HEAD_END = re.compile(rb"\n\r?\n")
#: The status line of an informational (1xx) response: another head follows it.
_INFORMATIONAL = re.compile(rb"HTTP/\d\.\d 1\d\d")


class UpnpError(PortMapError):
    """The gateway answered a SOAP action with a UPnP error (``code``, e.g. 718 conflict)."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(f"UPnP error {code} ({description})")
        self.upnp_code = code


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Url:
    """An ``http://host:port/path`` URL whose host is an IP address (the gateway's)."""

    host: str
    port: int
    path: str

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.path}"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ControlPoint:
    """Where to send SOAP actions: ``url`` of the service ``service_type``."""

    service_type: str
    url: Url

    @property
    def version(self) -> int:
        return int(self.service_type.rsplit(":", 1)[1])


def m_search(target: str, mx: int = 1) -> bytes:
    """An SSDP M-SEARCH (UPnP Device Architecture 1.1 §1.3.2) for ``target``; send it to SSDP_GROUP."""
    return (
        f'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: {mx}\r\nST: {target}\r\n\r\n'
    ).encode("ascii")


def ssdp_response_untrusted(data: bytes) -> tuple[str, str]:
    """(ST, LOCATION) of an SSDP search answer (``HTTP/1.1 200 OK`` with those headers)."""
    if len(data) > MAX_SSDP:
        raise PortMapError(f"an SSDP answer of {len(data)} bytes")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise PortMapError("an SSDP answer that is not ASCII") from exc
    lines = text.split("\r\n")
    if not re.fullmatch(r"HTTP/1\.[01] 200 .*", lines[0]):
        raise PortMapError("not an SSDP search answer")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers.setdefault(name.strip().lower(), value.strip())
    if "location" not in headers or "st" not in headers:
        raise PortMapError("an SSDP answer without ST or LOCATION")
    return headers["st"], headers["location"]


def gateway_url_untrusted(url: str, gateway: str, base: Url | None = None) -> Url:
    """``url`` (absolute, or relative to ``base``) as a :class:`Url` on ``gateway``, or PortMapError.

    Only ``http`` and only the gateway's own address (MAP-1.3): a description that points
    anywhere else is refused, so a LAN host cannot steer the client elsewhere.
    """
    if len(url) > 1024 or any(ord(c) < 0x21 or ord(c) > 0x7E for c in url):
        raise PortMapError("a URL that is too long or not printable ASCII")
    if base is not None:
        url = urllib.parse.urljoin(str(base), url)
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or 80
        host = parts.hostname or ""
        same = ipaddress.ip_address(host) == ipaddress.ip_address(gateway)
    except ValueError as exc:
        raise PortMapError(f"a URL that is not http://<address>: {exc}") from exc
    if parts.scheme != "http" or not same:
        raise PortMapError(f"a URL off the gateway {gateway}: {url}")
    path = parts.path or "/"
    return Url(host=gateway, port=port, path=path + (f"?{parts.query}" if parts.query else ""))


def xml_untrusted(data: bytes) -> ET.Element:
    """Parse XML from the gateway: at most 64 KiB, no DTD (so no entities), well formed (MAP-7.3)."""
    if len(data) > MAX_XML:
        raise PortMapError(f"an XML document of {len(data)} bytes")
    if _DTD.search(data):
        raise PortMapError("an XML document with a DTD")
    try:
        return ET.fromstring(data)  # noqa: S314 (no DTD: nothing to expand)
    except ET.ParseError as exc:
        raise PortMapError(f"XML that does not parse: {exc}") from exc


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(element: ET.Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return None


def control_point_untrusted(data: bytes, location: Url, gateway: str) -> ControlPoint:
    """The best port-mapping service of a device description (UPnP DA 1.1 §2.3), on the gateway."""
    root = xml_untrusted(data)
    base = location
    url_base = _child_text(root, "URLBase")
    if url_base:
        base = gateway_url_untrusted(url_base, gateway)
    found: dict[str, str] = {}
    for element in root.iter():
        if _local(element.tag) != "service":
            continue
        kind, control = _child_text(element, "serviceType"), _child_text(element, "controlURL")
        if kind in SERVICES and control:
            found.setdefault(kind, control)
    for kind in SERVICES:
        if kind in found:
            return ControlPoint(service_type=kind, url=gateway_url_untrusted(found[kind], gateway, base))
    raise PortMapError("the description lists no WANIPConnection or WANPPPConnection service")


def _escape(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def soap_body(service_type: str, action: str, arguments: list[tuple[str, str]]) -> bytes:
    """The SOAP envelope of ``action`` (UPnP DA 1.1 §3.2.1), arguments in order."""
    args = "".join(f"<{name}>{_escape(value)}</{name}>" for name, value in arguments)
    return (
        '<?xml version="1.0"?>\r\n'
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">'
        f'<s:Body><u:{action} xmlns:u="{service_type}">{args}</u:{action}></s:Body></s:Envelope>\r\n'
    ).encode()


def soap_response_untrusted(status: int, body: bytes, action: str) -> dict[str, str]:
    """The out arguments of a SOAP answer to ``action``; a UPnP fault raises :class:`UpnpError`."""
    root = xml_untrusted(body)
    if status == 200:
        for element in root.iter():
            if _local(element.tag) == f"{action}Response":
                return {_local(child.tag): (child.text or "").strip() for child in element}
        raise PortMapError(f"a 200 answer without {action}Response")
    for element in root.iter():
        if _local(element.tag) == "UPnPError":
            code = _child_text(element, "errorCode") or ""
            if not code.isdigit() or len(code) > 4:
                raise PortMapError(f"a UPnP error code {code[:8]!r}")
            raise UpnpError(int(code), (_child_text(element, "errorDescription") or "")[:100])
    raise PortMapError(f"HTTP status {status} without a UPnP error")


class HttpExchange:
    """One HTTP/1.1 request and its response, with h11 (``Connection: close``, one per exchange).

    Send ``request`` on a fresh TCP connection to ``url``; feed what arrives to
    ``receive_untrusted`` (and the end of the stream to ``receive_eof_untrusted``) until one
    returns (status, body).  Both raise PortMapError for a malformed or oversized answer.
    """

    def __init__(self, method: str, url: Url, body: bytes = b"", headers: list[tuple[str, str]] | None = None) -> None:
        self.url = url
        self._conn = h11.Connection(our_role=h11.CLIENT, max_incomplete_event_size=MAX_HTTP_HEAD)
        host = f"[{url.host}]" if ":" in url.host else url.host
        fields = [("Host", f"{host}:{url.port}"), ("Connection", "close"), ("User-Agent", "p2pos")]
        fields += headers or []
        if method == "POST":
            fields.append(("Content-Length", str(len(body))))
        request = h11.Request(method=method, target=url.path, headers=fields)
        parts = [self._conn.send(request), self._conn.send(h11.Data(data=body)) if body else b""]
        parts.append(self._conn.send(h11.EndOfMessage()))
        self.request = b"".join(part or b"" for part in parts)
        self._status = 0
        self._body = bytearray()
        self._head: bytearray | None = bytearray()  # the head's first bytes until its end is seen

    def _check_head(self, data: bytes) -> None:
        """MAP-7.3: every head (status line to blank line) at most 8 KiB: the final response's and
        any informational (1xx) one's before it.  h11 bounds only a head still incomplete in its
        buffer, so one that arrives whole in a single read is measured here."""
        if self._head is None:
            return
        self._head += data
        while True:
            end = _HEAD_END.search(self._head, 0, MAX_HTTP_HEAD + 2)
            if end is None:
                if len(self._head) > MAX_HTTP_HEAD:
                    raise PortMapError("an HTTP head over 8 KiB")
                return
            if end.end() > MAX_HTTP_HEAD:
                raise PortMapError("an HTTP head over 8 KiB")
            if _INFORMATIONAL.match(self._head) is None:
                self._head = None  # the final response's head: the body follows
                return
            del self._head[: end.end()]  # a 1xx head: the next one is measured from its first byte

    def receive_untrusted(self, data: bytes) -> tuple[int, bytes] | None:
        """Bytes from the gateway; (status, body) once the response is complete."""
        self._check_head(data)
        try:
            self._conn.receive_data(data)
        except h11.RemoteProtocolError as exc:
            raise PortMapError(f"bad HTTP from the gateway: {exc}") from exc
        return self._drain()

    def receive_eof_untrusted(self) -> tuple[int, bytes]:
        """The gateway closed the connection: the response must be complete now."""
        try:
            self._conn.receive_data(b"")
        except h11.RemoteProtocolError as exc:
            raise PortMapError(f"bad HTTP from the gateway: {exc}") from exc
        done = self._drain()
        if done is None:
            raise PortMapError("the gateway closed the connection mid-response")
        return done

    def _drain(self) -> tuple[int, bytes] | None:
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise PortMapError(f"bad HTTP from the gateway: {exc}") from exc
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return None
            if isinstance(event, h11.Response):
                self._status = event.status_code
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) > MAX_XML:
                    raise PortMapError("an HTTP body over 64 KiB")
            elif isinstance(event, h11.EndOfMessage):
                return self._status, bytes(self._body)
            elif isinstance(event, h11.ConnectionClosed):
                raise PortMapError("the gateway closed the connection mid-response")
