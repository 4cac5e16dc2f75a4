"""A tiny in-memory NAT and a STUN server with two addresses, for the discovery tests.

Not the emulator's NAT models (p2pos_proto/simulation/): just enough of RFC 4787's mapping,
filtering, port allocation and hairpinning to tell the RFC 5780 tests apart, deterministic.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Hashable

from p2pos.proto.nat import stun
from p2pos.proto.nat.discovery import NatDiscovery, NatReport

Address = tuple[str, int]
PRIMARY: Address = ("198.18.0.1", 3478)
ALTERNATE: Address = ("198.18.0.2", 3479)
PUBLIC_IP = "198.18.7.7"


def seeded(label: str):  # type: ignore[no-untyped-def]
    state = {"n": 0}

    def random(n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.blake2b(f"{label}/{state['n']}".encode()).digest()
            state["n"] += 1
        return out[:n]

    return random


@dataclasses.dataclass
class FakeNat:
    """``mapping`` / ``filtering``: "eim" | "adm" | "apdm" and "eif" | "adf" | "apdf";
    ``allocation``: "preserve", "sequential" (by ``delta``) or "random"."""

    mapping: str = "eim"
    filtering: str = "apdf"
    allocation: str = "random"
    delta: int = 1
    hairpin: bool = False
    next_port: int = 20000
    drop_all: bool = False

    def __post_init__(self) -> None:
        self.mappings: dict[Hashable, int] = {}  # key -> public port
        self.owner: dict[int, Address] = {}  # public port -> local address
        self.allowed: set[tuple[int, Hashable]] = set()
        self._random = seeded("fake nat ports")

    def _key(self, local: Address, dst: Address) -> Hashable:
        return {"eim": local, "adm": (local, dst[0]), "apdm": (local, dst)}[self.mapping]

    def _filter_key(self, src: Address) -> Hashable:
        return {"eif": None, "adf": src[0], "apdf": src}[self.filtering]

    def _allocate(self, local: Address) -> int:
        if self.allocation == "preserve" and local[1] not in self.owner:
            return local[1]
        if self.allocation == "random":
            while True:
                port = 1024 + int.from_bytes(self._random(2), "big") % 64000
                if port not in self.owner:
                    return port
        self.next_port += self.delta
        return self.next_port

    def outbound(self, local: Address, dst: Address) -> Address:
        key = self._key(local, dst)
        port = self.mappings.get(key)
        if port is None:
            port = self.mappings[key] = self._allocate(local)
            self.owner[port] = local
        self.allowed.add((port, self._filter_key(dst)))
        return (PUBLIC_IP, port)

    def inbound(self, src: Address, port: int) -> Address | None:
        local = self.owner.get(port)
        if local is None or (port, self._filter_key(src)) not in self.allowed:
            return None
        return local


def run(nat: FakeNat | None, *, sockets: int = 4, alternate: bool = True) -> tuple[NatReport, NatDiscovery]:
    """Discovery from ``sockets`` sockets behind ``nat`` (None: a public host) until done."""
    server = stun.BindingServer(primary=PRIMARY, alternate=ALTERNATE if alternate else None)
    server_sockets = {PRIMARY: stun.socket_key(0, 0)}
    if alternate:
        for ip in (0, 1):
            for port in (0, 1):
                server_sockets[server.address(ip, port)] = stun.socket_key(ip, port)
    key_address = {key: address for address, key in server_sockets.items()}
    host_ip = "10.0.0.2" if nat is not None else "198.18.5.5"
    locals_ = [(host_ip, 5000 + i) for i in range(sockets)]
    now = 0.0
    discovery = NatDiscovery(PRIMARY, locals_, now, random=seeded("discovery"))
    for _ in range(10_000):
        if discovery.done:
            return discovery.report, discovery
        queue = [(d, to, locals_[int(s)]) for d, to, s in discovery.datagrams_to_send(now)]  # type: ignore[call-overload]
        while queue:
            data, to, frm = queue.pop(0)
            if nat is not None and nat.drop_all:
                continue
            src = nat.outbound(frm, to) if nat is not None else frm
            if to in server_sockets:
                answer = server.answer_untrusted(data, src, server_sockets[to])
                if answer is None:
                    continue
                reply, out_key, _ = answer  # the discovery client sends no RESPONSE-PORT
                reply_from = key_address[out_key]
                dest: Address | None = src
                if nat is not None:
                    dest = nat.inbound(reply_from, src[1]) if src[0] == PUBLIC_IP else None
                if dest is not None and dest in locals_:
                    discovery.receive_datagram(reply, reply_from, now, locals_.index(dest))
            elif nat is not None and to[0] == PUBLIC_IP:  # hairpin
                dest = nat.owner.get(to[1]) if nat.hairpin else None  # hairpinned inside: no filter
                if dest is not None:
                    discovery.receive_datagram(data, src, now, locals_.index(dest))
            elif to in locals_:  # a public host sending to itself
                discovery.receive_datagram(data, src, now, locals_.index(to))
            queue += [(d, t, locals_[int(s)]) for d, t, s in discovery.datagrams_to_send(now)]  # type: ignore[call-overload]
        timer = discovery.get_timer()
        if timer is None:
            break
        now = max(now, timer)
        discovery.handle_timer(now)
    return discovery.report, discovery
