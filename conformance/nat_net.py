"""The runner's side of the NAT cases: an IUT role's datagrams, a reference STUN node behind
them and a simulated NAT box between the two (spec/conformance.md §3.12).

``Role`` starts one of the IUT's NAT roles and keeps what it sends (``Sent``), its events and
its timer.  ``NatNet`` routes the IUT's datagrams through a ``p2pos.proto.simulation.nat.Nat``
(none: a host with a public address) to a reference ``BindingServer`` and the answers back, in
virtual time with no delay, until the IUT's run ends: what the IUT sees is what it would see
behind that box.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable
from typing import Any

from p2pos.proto.nat import stun_message as sm
from p2pos.proto.nat.stun import BindingServer, socket_key
from p2pos.proto.simulation.nat import Drop, Nat, NatConfig
from p2pos.proto.simulation.prng import Prng

from .checks import CaseFailed, expect, short, unhex_list
from .iut import Iut

Address = tuple[str, int]
#: The lab's internet (198.18.0.0/15): the node's two addresses, the NAT's public one.
NODE, NODE_ALT = ("198.18.0.10", 3478), ("198.18.0.11", 3479)
PUBLIC_IP = "198.18.7.7"
#: The IUT's LAN address (its sockets' ports vary).
LAN_IP = "10.0.0.2"


def text(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse(value: Any) -> Address:
    if not isinstance(value, str) or ":" not in value:
        raise CaseFailed(f"expected an address 'HOST:PORT', got {short(value)}")
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


@dataclasses.dataclass(frozen=True, slots=True)
class Sent:
    """One datagram the IUT sent: its bytes, where to, from which of its sockets, and when."""

    data: bytes
    to: Address
    local: str
    at: float


class Role:
    """One NAT role of the IUT: ``start`` it, then ``receive`` and ``timer``; every datagram it
    sent is in ``sent``, every event in ``events``."""

    def __init__(self, iut: Iut) -> None:
        self.iut = iut
        self.sent: list[Sent] = []
        self.events: list[dict[str, Any]] = []
        self.timer: float | None = None
        self.last: dict[str, Any] = {}

    def _take(self, answer: dict[str, Any], now: float) -> list[Sent]:
        out = unhex_list(answer.get("out"), "out")
        to, frm = answer.get("to"), answer.get("from")
        if not isinstance(to, list) or not isinstance(frm, list) or not len(to) == len(frm) == len(out):
            raise CaseFailed(f"'to' and 'from' must be lists as long as 'out': {short(answer)}")
        new = [Sent(d, parse(t), str(f), now) for d, t, f in zip(out, to, frm, strict=True)]
        self.sent += new
        events = answer.get("events") or []
        self.events += events
        timer = answer.get("timer")
        self.timer = None if timer is None else float(timer)
        self.last = answer
        return new

    def start(self, cmd: str, now: float, **fields: Any) -> list[Sent]:
        """Send the command ``cmd`` (a role's start, or ``portmap_remove``); what the role sent."""
        return self._take(self.iut.ok(cmd, now=now, **fields), now)

    def receive(self, data: bytes, source: Address, local: str, now: float) -> list[Sent]:
        answer = self.iut.ok("nat_receive", data=data.hex(), addr=text(source), local=local, now=now)
        return self._take(answer, now)

    def run_timer(self, now: float) -> list[Sent]:
        return self._take(self.iut.ok("nat_timer", now=now), now)

    def event(self, kind: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e.get("type") == kind), None)


class NatNet:
    """The IUT's sockets behind ``nat`` (None: no NAT) and a reference node at NODE (and NODE_ALT
    when ``alternate``).  ``answer`` may replace the node's answer to a datagram (a case's twist)."""

    def __init__(
        self,
        role: Role,
        config: NatConfig | None,
        *,
        alternate: bool = True,
        seed: int = 1,
        answer: Callable[[bytes, Address, Address, float], list[tuple[bytes, Address, Address]] | None] | None = None,
    ) -> None:
        self.role = role
        self.nat = None if config is None else Nat(config, PUBLIC_IP, Prng(seed))
        self.server = BindingServer(NODE, NODE_ALT if alternate else None)
        self.sockets: dict[Address, Hashable] = {NODE: 0}
        if alternate:
            self.sockets = {self.server.address(i, p): socket_key(i, p) for i in (0, 1) for p in (0, 1)}
        self.answer = answer
        self.reached: list[tuple[bytes, Address, Address, float]] = []  # (data, public source, node socket, t)

    def deliver(self, sent: list[Sent], now: float) -> None:
        """Carry ``sent`` and whatever it draws (answers, the IUT's reactions) until nothing moves."""
        queue = list(sent)
        while queue:
            s = queue.pop(0)
            local = parse(s.local)
            public: Address | Drop = local if self.nat is None else self.nat.outbound(local, s.to, now)
            if isinstance(public, Drop):
                continue
            if self.nat is not None and s.to[0] == self.nat.public_ip:  # a hairpin (nat.md §3.2 H)
                inside = self.nat.hairpin(public, s.to, now)
                if not isinstance(inside, Drop):
                    queue += self.role.receive(s.data, public, text(inside), now)
                continue
            if s.to not in self.sockets:
                continue
            self.reached.append((s.data, public, s.to, now))
            answers = self.answer(s.data, public, s.to, now) if self.answer else None
            if answers is None:
                answers = self.node_answer(s.data, public, s.to)
            for data, origin, to in answers:
                inside = to if self.nat is None else self.nat.inbound(origin, to, now)
                if isinstance(inside, Drop):
                    continue
                queue += self.role.receive(data, origin, text(inside), now)

    def node_answer(self, data: bytes, source: Address, local: Address) -> list[tuple[bytes, Address, Address]]:
        """The reference node's answer to ``data`` from ``source`` on its socket ``local``:
        ``[(bytes, the socket it leaves, where to)]``, empty when it drops it."""
        got = self.server.answer_untrusted(data, source, self.sockets[local])
        names = {key: addr for addr, key in self.sockets.items()}
        return [] if got is None else [(got.data, names[got.local], got.to)]

    def run(self, first: list[Sent], now: float, until: Callable[[], bool], limit: float) -> float:
        """Deliver ``first``, then fire the IUT's timers in order until ``until()`` or ``limit``."""
        self.deliver(first, now)
        while not until():
            timer = self.role.timer
            if timer is None or timer > limit:
                break
            now = max(now, timer)
            self.deliver(self.role.run_timer(now), now)
        return now


def fire(role: Role, until: float) -> list[Sent]:
    """Run the role's timers in order up to ``until``; what it sent meanwhile."""
    sent: list[Sent] = []
    while role.timer is not None and role.timer <= until:
        sent += role.run_timer(role.timer)
    return sent


def binding_request(
    txid: bytes, attributes: list[tuple[int, bytes]] | None = None, *, fingerprint: bool = True
) -> bytes:
    return sm.encode(sm.BINDING, sm.REQUEST, txid, attributes or [], fingerprint=fingerprint)


def decoded(data: bytes, what: str) -> sm.Message:
    try:
        return sm.decode_untrusted(data)
    except sm.StunError as exc:
        raise CaseFailed(f"{what} is not a valid STUN message ({exc}): {data.hex()}") from None


def address_attr(message: sm.Message, attribute: int, what: str) -> Address | None:
    value = message.get(attribute)
    if value is None:
        return None
    try:
        if attribute == sm.XOR_MAPPED_ADDRESS:
            return sm.decode_xor_address_untrusted(value, message.transaction_id)
        return sm.decode_plain_address_untrusted(value)
    except sm.StunError:
        raise CaseFailed(f"{what}: attribute 0x{attribute:04x} is malformed") from None


def only(sent: list[Sent], what: str) -> Sent:
    expect(len(sent) == 1, f"{what}: expected one datagram, got {len(sent)}")
    return sent[0]
