"""coturn in the lab's internet namespace, asked with STUN/TURN messages built here by hand.

* A STUN Binding (RFC 8489) from a peer behind an ``eim`` router is answered with that router's
  public address and the port every other internet host sees (XOR-MAPPED-ADDRESS, decoded here).
* From behind ``udp-blocked``, a TURN allocation over TCP (RFC 8656 Allocate; the long-term
  credential mechanism of RFC 8489: 401 with REALM and NONCE, then MESSAGE-INTEGRITY keyed with
  MD5(user:realm:pass)) succeeds, relays a datagram to an internet host and back
  (CreatePermission, Send and Data indications), and is released (Refresh with LIFETIME 0:
  coturn removes it on its next 1 s tick, then closes the TCP connection, and the relayed port
  refuses datagrams).

These are checks of the lab, not the project's TURN client: they prove coturn works where the
TURN tests will run it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import socket
import struct
from collections.abc import Iterator

import netlab
import pytest

pytestmark = [*netlab.MARKS, pytest.mark.pure_core]  # no core code: once is enough

MAGIC = 0x2112A442
BINDING, ALLOCATE, REFRESH, SEND, DATA, CREATE_PERMISSION = 0x001, 0x003, 0x004, 0x016, 0x017, 0x008
SUCCESS, ERROR, INDICATION = 0x100, 0x110, 0x010
XOR_MAPPED, XOR_RELAYED, XOR_PEER = 0x0020, 0x0016, 0x0012
USERNAME, INTEGRITY, ERROR_CODE, REALM, NONCE, LIFETIME = 0x0006, 0x0008, 0x0009, 0x0014, 0x0015, 0x000D
REQUESTED_TRANSPORT, DATA_ATTR = 0x0019, 0x0013

Attrs = list[tuple[int, bytes]]


@pytest.fixture
def lab() -> Iterator[netlab.Lab]:
    with netlab.lab() as made:
        yield made


def encode(kind: int, txid: bytes, attrs: Attrs, key: bytes | None = None) -> bytes:
    """A STUN message; with ``key``, MESSAGE-INTEGRITY last (its HMAC covers the length that includes it)."""
    body = b"".join(struct.pack("!HH", t, len(v)) + v + bytes(-len(v) % 4) for t, v in attrs)
    if key is not None:
        header = struct.pack("!HHI12s", kind, len(body) + 24, MAGIC, txid)
        body += struct.pack("!HH", INTEGRITY, 20) + hmac.new(key, header + body, hashlib.sha1).digest()
    return struct.pack("!HHI12s", kind, len(body), MAGIC, txid) + body


def decode(message: bytes) -> tuple[int, bytes, dict[int, bytes]]:
    kind, length, magic, txid = struct.unpack("!HHI12s", message[:20])
    assert magic == MAGIC and len(message) == 20 + length
    attrs: dict[int, bytes] = {}
    at = 20
    while at < len(message):
        t, n = struct.unpack("!HH", message[at : at + 4])
        attrs.setdefault(t, message[at + 4 : at + 4 + n])
        at += 4 + n + (-n % 4)
    return kind, txid, attrs


def xor_address(value: bytes) -> tuple[str, int]:
    """XOR-MAPPED-ADDRESS and friends, IPv4: port ^ top of the cookie, address ^ the cookie."""
    family, xport = struct.unpack("!xBH", value[:4])
    assert family == 0x01
    (xaddr,) = struct.unpack("!I", value[4:8])
    return socket.inet_ntoa(struct.pack("!I", xaddr ^ MAGIC)), xport ^ (MAGIC >> 16)


def xor_value(address: tuple[str, int]) -> bytes:
    (raw,) = struct.unpack("!I", socket.inet_aton(address[0]))
    return struct.pack("!xBHI", 0x01, address[1] ^ (MAGIC >> 16), raw ^ MAGIC)


def test_stun_binding_from_behind_eim_sees_the_routers_public_address(lab: netlab.Lab) -> None:
    turn = lab.coturn(lab.server("turn"))
    reflector = lab.reflector(lab.server("reflector"))
    a = lab.peer("a", "eim")
    assert a.router is not None
    sock = lab.socket(a.ns)
    sock.bind((a.address, 0))
    sock.settimeout(2)
    txid = secrets.token_bytes(12)
    sock.sendto(encode(BINDING, txid, []), turn.address)
    kind, got_txid, attrs = decode(sock.recv(2048))
    assert (kind, got_txid) == (BINDING | SUCCESS, txid)
    mapped = xor_address(attrs[XOR_MAPPED])
    sock.sendto(b"?", reflector)
    seen = sock.recv(100).decode().split()
    assert mapped == (a.router.public, int(seen[1]))  # the same mapping a second host sees (EIM)
    assert mapped[0] != a.address


class TcpStun:
    """STUN over a TCP stream: each message is framed by its own length field."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def read(self) -> tuple[int, bytes, dict[int, bytes]]:
        head = self.exactly(20)
        return decode(head + self.exactly(struct.unpack("!H", head[2:4])[0]))

    def exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "coturn closed the TCP connection"
            data += chunk
        return data

    def ask(self, kind: int, attrs: Attrs, key: bytes | None = None) -> tuple[int, dict[int, bytes]]:
        txid = secrets.token_bytes(12)
        self.sock.sendall(encode(kind, txid, attrs, key))
        while True:
            got_kind, got_txid, got = self.read()
            if got_txid == txid:
                return got_kind, got


def test_turn_allocation_over_tcp_from_behind_udp_blocked(lab: netlab.Lab) -> None:
    turn = lab.coturn(lab.server("turn"), users={"alice": "secret"})
    far = lab.server("far")
    a = lab.peer("a", "udp-blocked")
    assert a.router is not None
    # control: UDP to coturn gets no answer from behind this router
    udp = lab.socket(a.ns)
    udp.bind((a.address, 0))
    udp.settimeout(0.5)
    udp.sendto(encode(BINDING, secrets.token_bytes(12), []), turn.address)
    with pytest.raises(TimeoutError):
        udp.recv(2048)

    tcp = lab.socket(a.ns, socket.SOCK_STREAM)
    tcp.settimeout(3)
    tcp.connect(turn.address)
    stun = TcpStun(tcp)
    udp_transport = [(REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))]
    kind, attrs = stun.ask(ALLOCATE, udp_transport)
    assert kind == ALLOCATE | ERROR and attrs[ERROR_CODE][2:4] == bytes([4, 1])  # 401: credentials needed
    realm, nonce = attrs[REALM], attrs[NONCE]
    assert realm == turn.realm.encode()
    key = hashlib.md5(b"alice:" + realm + b":secret").digest()
    auth = [(USERNAME, b"alice"), (REALM, realm), (NONCE, nonce)]
    kind, attrs = stun.ask(ALLOCATE, [*udp_transport, *auth], key)
    assert kind == ALLOCATE | SUCCESS, attrs.get(ERROR_CODE)
    relayed = xor_address(attrs[XOR_RELAYED])
    assert relayed[0] == turn.server.address
    assert xor_address(attrs[XOR_MAPPED])[0] == a.router.public  # TCP passed, NATed

    # the relay works: permission for `far`, a Send indication out, a Data indication back
    listener = lab.socket(far.ns)
    listener.bind((far.address, 6000))
    listener.settimeout(2)
    kind, attrs = stun.ask(CREATE_PERMISSION, [(XOR_PEER, xor_value((far.address, 6000))), *auth], key)
    assert kind == CREATE_PERMISSION | SUCCESS, attrs.get(ERROR_CODE)
    tcp.sendall(encode(SEND | INDICATION, secrets.token_bytes(12), [(XOR_PEER, xor_value((far.address, 6000))),
                                                                      (DATA_ATTR, b"through turn")]))  # fmt: skip
    data, source = listener.recvfrom(2048)
    assert (data, source) == (b"through turn", relayed)
    listener.sendto(b"and back", relayed)
    kind, _, attrs = stun.read()
    assert kind == DATA | INDICATION
    assert (attrs[DATA_ATTR], xor_address(attrs[XOR_PEER])) == (b"and back", (far.address, 6000))

    # released: LIFETIME 0, after which nothing is relayed
    kind, attrs = stun.ask(REFRESH, [(LIFETIME, struct.pack("!I", 0)), *auth], key)
    assert kind == REFRESH | SUCCESS, attrs.get(ERROR_CODE)
    assert attrs[LIFETIME] == bytes(4)
    # coturn drops the allocation on its next 1 s tick; over TCP it then ends the connection
    gone = netlab.wait_until(lambda: stream_ended(tcp), timeout=4, step=0.1)
    assert gone, "coturn kept the TCP allocation after LIFETIME 0"
    # and the relayed port is closed: a datagram to it is refused (ICMP port unreachable)
    probe = lab.socket(far.ns)
    probe.bind((far.address, 6001))
    probe.connect(relayed)
    probe.settimeout(1)
    probe.send(b"anyone?")
    with pytest.raises(ConnectionRefusedError):
        probe.recv(100)


def stream_ended(sock: socket.socket) -> bool:
    """Whether the peer closed or reset the connection (reads and drops what is still buffered)."""
    sock.settimeout(0.05)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True
