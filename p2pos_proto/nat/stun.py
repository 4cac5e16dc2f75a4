"""STUN Binding (RFC 8489, RFC 5780): what a rendezvous node answers on its p2pos port (spec/rendezvous.md §5).

A node tells a peer the address it sees (its NAT's mapping) with a Binding success response
carrying XOR-MAPPED-ADDRESS, the way every STUN server does, so that any STUN client (coturn's
``turnutils_stunclient``, a browser's ICE agent) can ask it too.  A node given a second IP
address and port (``BindingServer`` with ``alternate``) also serves NAT behaviour discovery
(RFC 5780, spec/nat.md §3): it answers from four sockets ``(IP1|IP2, P1|P2)``, follows
CHANGE-REQUEST, and adds RESPONSE-ORIGIN and OTHER-ADDRESS.  Every answer goes to the request's
source and is at most three times the request's size (RDV-5.4): optional attributes are left
out before that bound is passed.  A node's answers also carry its ``instance`` (P2POS-INSTANCE,
RDV-5.5), random bytes drawn at start, when they fit: a peer whose keepalive answers name
another one knows the node restarted and lost its registration (RDV-7.8).

The node calls ``BindingServer.answer_untrusted`` for every datagram whose first byte is 0-3
and sends what it returns.  ``binding_request`` / ``binding_success`` /
``mapped_address_untrusted`` are the bare forms the vectors and tests use.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Hashable
from typing import Final, NamedTuple

from . import stun_message as sm

MAGIC_COOKIE: Final = sm.MAGIC_COOKIE
HEADER_LEN: Final = sm.HEADER_LEN
BINDING_REQUEST: Final = 0x0001
BINDING_SUCCESS: Final = 0x0101
ATTR_XOR_MAPPED_ADDRESS: Final = sm.XOR_MAPPED_ADDRESS
#: Comprehension-required attributes (below 0x8000) a Binding request may carry: CHANGE-REQUEST,
#: RESPONSE-PORT and PADDING (RFC 5780 §7.2, §7.5, §7.6).  A request with another one (USERNAME,
#: MESSAGE-INTEGRITY, ...) gets a 420 error listing them (RFC 8489 §6.3.1.1, RDV-5.2), or nothing
#: if that would pass RDV-5.4.
UNDERSTOOD: Final = frozenset({sm.CHANGE_REQUEST, sm.RESPONSE_PORT, sm.PADDING})
#: RDV-5.4: no STUN answer is larger than this many times its request.
AMPLIFICATION: Final = 3
#: The local socket key of the node's main socket (the one p2pos sessions use).
PRIMARY_SOCKET: Final = 0
_HEADER = struct.Struct(">HHI12s")
_ATTR = struct.Struct(">HH")

Address = tuple[str, int]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BindingRequest:
    """An answerable Binding request: its transaction id and the CHANGE-REQUEST flags (0 if none)."""

    transaction_id: bytes
    change: int = 0
    size: int = HEADER_LEN
    #: RESPONSE-PORT (RFC 5780 §7.5): answer to the source IP at this port (None: the source port).
    response_port: int | None = None
    #: The request carried PADDING (RFC 5780 §7.6): the answer is padded to the request's size.
    padded: bool = False
    #: Comprehension-required attributes the node does not understand (USERNAME, ...).
    unknown: tuple[int, ...] = ()


class Answer(NamedTuple):
    """A STUN answer: its bytes, the node socket (key) to send it from, and its destination."""

    data: bytes
    local: Hashable
    to: Address


def request_untrusted(data: bytes) -> BindingRequest | None:
    """The Binding request in ``data``, or None for anything else (malformed, another method or
    class).  ``unknown`` lists comprehension-required attributes other than CHANGE-REQUEST: such a
    request gets a 420 error, never a success (RDV-5.2)."""
    message = sm.binding_request_untrusted(data)
    if message is None:
        return None
    change = 0
    value = message.get(sm.CHANGE_REQUEST)
    if value is not None:
        try:
            change = sm.decode_change_request_untrusted(value)
        except sm.StunError:
            return None
    response_port = None
    value = message.get(sm.RESPONSE_PORT)
    if value is not None:
        if len(value) != 4 or value[:2] == b"\x00\x00":
            return None
        response_port = int.from_bytes(value[:2], "big")
    unknown = tuple(dict.fromkeys(sm.unknown_comprehension_required(message, UNDERSTOOD)))
    return BindingRequest(
        transaction_id=message.transaction_id,
        change=change,
        size=len(data),
        response_port=response_port,
        padded=message.get(sm.PADDING) is not None,
        unknown=unknown,
    )


def binding_request_untrusted(data: bytes) -> bytes | None:
    """The transaction id of a Binding request the node answers with success, or None."""
    request = request_untrusted(data)
    return request.transaction_id if request is not None and not request.unknown else None


def binding_request(txid: bytes, change: int | None = None) -> bytes:
    """A Binding request (20 bytes bare) with the 12-byte transaction id ``txid``; with ``change``
    (``CHANGE_IP`` | ``CHANGE_PORT``, maybe 0) it carries CHANGE-REQUEST (28 bytes)."""
    attributes = [] if change is None else [(sm.CHANGE_REQUEST, sm.change_request(change))]
    return sm.encode(sm.BINDING, sm.REQUEST, txid, attributes)


def binding_success(txid: bytes, address: Address, instance: bytes | None = None) -> bytes:
    """A Binding success response telling the requester ``address``: XOR-MAPPED-ADDRESS, then
    P2POS-INSTANCE when ``instance`` is given (RDV-5.1, RDV-5.5: 44 bytes for IPv4, 56 for IPv6)."""
    attributes = [(sm.XOR_MAPPED_ADDRESS, sm.xor_address(address, txid))]
    if instance is not None:
        attributes.append((sm.P2POS_INSTANCE, instance))
    return sm.encode(sm.BINDING, sm.SUCCESS, txid, attributes)


def mapped_address_untrusted(data: bytes, txid: bytes) -> Address | None:
    """The XOR-MAPPED-ADDRESS of a Binding success response to ``txid``, or None."""
    try:
        message = sm.decode_untrusted(data)
        if (message.method, message.klass, message.transaction_id) != (sm.BINDING, sm.SUCCESS, txid):
            return None
        value = message.get(sm.XOR_MAPPED_ADDRESS)
        return None if value is None else sm.decode_xor_address_untrusted(value, txid)
    except sm.StunError:
        return None


def socket_key(ip: int, port: int) -> Hashable:
    """The local socket key of the node's socket on IP ``ip`` (0 primary, 1 alternate) and port ``port``."""
    return PRIMARY_SOCKET if (ip, port) == (0, 0) else ("stun", ip, port)


@dataclasses.dataclass(frozen=True, slots=True)
class BindingServer:
    """The node's Binding answers (spec/rendezvous.md §5).

    ``primary`` is the address of the node's main socket (IP1, P1); ``alternate`` (IP2, P2),
    when given, means the driver also listens on (IP1, P2), (IP2, P1) and (IP2, P2), under the
    local keys ``socket_key(ip, port)``, and feeds their datagrams to the node too.
    ``instance`` (8 bytes, drawn at the node's start; ``RendezvousNode`` draws it) goes into
    every success response that has room for it (RDV-5.5); None leaves it out.
    """

    primary: Address | None = None
    alternate: Address | None = None
    instance: bytes | None = None

    def __post_init__(self) -> None:
        if self.instance is not None and len(self.instance) != sm.INSTANCE_LEN:
            raise ValueError("a STUN instance is 8 bytes")
        if self.alternate is not None:
            if self.primary is None:
                raise ValueError("an alternate STUN address needs the primary one")
            if self.alternate[0] == self.primary[0] or self.alternate[1] == self.primary[1]:
                raise ValueError("the alternate STUN address differs from the primary in both IP and port")

    def address(self, ip: int, port: int) -> Address:
        """The address of socket ``(ip, port)`` (requires ``alternate``)."""
        if self.primary is None or self.alternate is None:
            raise ValueError("no alternate address")
        return ((self.primary, self.alternate)[ip][0], (self.primary, self.alternate)[port][1])

    def role(self, local: Hashable) -> tuple[int, int] | None:
        """``(ip, port)`` of the socket ``local`` when the node has an alternate address, else None."""
        if self.alternate is None:
            return None
        for ip in (0, 1):
            for port in (0, 1):
                if socket_key(ip, port) == local:
                    return ip, port
        return None

    def answer_untrusted(self, data: bytes, source: Address, local: Hashable) -> Answer | None:
        """The answer to ``data`` from ``source`` on socket ``local``: its bytes, the socket to
        send it from, and where to (``source``, or its IP at RESPONSE-PORT); None to drop it."""
        request = request_untrusted(data)
        if request is None:
            return None
        txid = request.transaction_id
        role = self.role(local)
        if request.unknown:  # RDV-5.2: USERNAME, MESSAGE-INTEGRITY, ...: 420, to the source
            return _unknown(request, list(request.unknown), local, source)
        if role is None:
            if request.change:  # RFC 5780 §6.1: a server without an alternate address says 420
                return _unknown(request, [sm.CHANGE_REQUEST], local, source)
            to = source if request.response_port is None else (source[0], request.response_port)
            # RDV-5.4: at most 56 bytes (IPv6, with the instance) for a request of at least 20.
            return Answer(binding_success(txid, source, self.instance), local, to)
        ip, port = role
        out = (ip ^ bool(request.change & sm.CHANGE_IP), port ^ bool(request.change & sm.CHANGE_PORT))
        required = [(sm.XOR_MAPPED_ADDRESS, sm.xor_address(source, txid))]
        optional = [
            (sm.OTHER_ADDRESS, sm.plain_address(self.address(1 - ip, 1 - port))),
            (sm.RESPONSE_ORIGIN, sm.plain_address(self.address(*out))),
        ]
        # NAT-3.1.5: RESPONSE-PORT changes the port, never the IP address the answer goes to.
        to = source if request.response_port is None else (source[0], request.response_port)
        # RDV-5.4, NAT-3.1.4: drop RESPONSE-ORIGIN, then OTHER-ADDRESS, until within three times the request.
        while True:
            answer = sm.encode(sm.BINDING, sm.SUCCESS, txid, required + optional)
            if len(answer) <= AMPLIFICATION * request.size or not optional:
                break
            optional.pop()
        # RDV-5.5: the instance only in the room the RFC 5780 attributes leave (NAT-3.1.4).
        if self.instance is not None and len(answer) + 4 + sm.INSTANCE_LEN <= AMPLIFICATION * request.size:
            optional.append((sm.P2POS_INSTANCE, self.instance))
            answer = sm.encode(sm.BINDING, sm.SUCCESS, txid, required + optional)
        if request.padded and len(answer) + 4 <= request.size:  # RFC 5780 §7.6: as large as the request
            padding = (sm.PADDING, bytes(request.size - len(answer) - 4))
            answer = sm.encode(sm.BINDING, sm.SUCCESS, txid, [*required, *optional, padding])
        return Answer(answer, socket_key(*out), to)


def _unknown(request: BindingRequest, types: list[int], local: Hashable, source: Address) -> Answer | None:
    """A 420 (Unknown Attribute) error listing ``types`` (RFC 8489 §6.3.1.1), within RDV-5.4."""
    answer = sm.encode(
        sm.BINDING,
        sm.ERROR,
        request.transaction_id,
        [
            (sm.ERROR_CODE, sm.error_code(420, "Unknown Attribute")),
            (sm.UNKNOWN_ATTRIBUTES, sm.unknown_attributes(types)),
        ],
    )
    return Answer(answer, local, source) if len(answer) <= AMPLIFICATION * request.size else None
