"""A small sans-IO TURN server for the client's state-machine tests (not a conforming server: just enough).

It answers Allocate/Refresh/CreatePermission/ChannelBind with the long-term mechanism (401 with
REALM/NONCE first), keeps one allocation's permissions and channels with their expiry, and can
be told to drop requests, to answer the next one 438 (stale nonce) or 437 (allocation lost).
"""

from __future__ import annotations

import dataclasses

from p2pos.proto.nat import stun_message as sm
from p2pos.proto.nat.turn_framing import channel_data, decode_channel_data_untrusted

Address = tuple[str, int]
RELAYED = ("198.18.0.1", 50000)
MAPPED = ("198.18.0.9", 40000)


@dataclasses.dataclass
class FakeTurnServer:
    users: dict[str, str]
    realm: str = "p2pos.test"
    lifetime: int = 600
    stream: bool = False
    nonce: str = "nonce-1"
    drop_requests: bool = False
    stale_next: int = 0
    mismatch_next: bool = False
    allocated: bool = False
    expires: float = 0.0
    received: list[tuple[float, int, int]] = dataclasses.field(default_factory=list)
    permissions: dict[str, float] = dataclasses.field(default_factory=dict)
    channels: dict[int, tuple[Address, float]] = dataclasses.field(default_factory=dict)
    to_peers: list[tuple[Address, bytes, str]] = dataclasses.field(default_factory=list)
    requested_lifetimes: list[int | None] = dataclasses.field(default_factory=list)

    def handle(self, data: bytes, now: float) -> list[bytes]:
        """Answers to one message from the client."""
        if 0x40 <= data[0] <= 0x4F:
            number, payload = decode_channel_data_untrusted(data)
            bound = self.channels.get(number)
            if bound is not None and bound[1] > now and self.permissions.get(bound[0][0], 0) > now:
                self.to_peers.append((bound[0], payload, "channel"))
            return []
        message = sm.decode_untrusted(data)
        self.received.append((now, message.method, message.klass))
        if message.klass == sm.INDICATION and message.method == sm.SEND:
            peer = sm.decode_xor_address_untrusted(message.get(sm.XOR_PEER_ADDRESS) or b"", message.transaction_id)
            if self.permissions.get(peer[0], 0) > now:
                self.to_peers.append((peer, message.get(sm.DATA_ATTR) or b"", "send"))
            return []
        if self.drop_requests:
            return []
        username = message.get(sm.USERNAME)
        if username is None:
            return [self._error(message, 401, "Unauthorized", challenge=True)]
        password = self.users.get(username.decode())
        if password is None or not message.integrity_ok(sm.long_term_key(username.decode(), self.realm, password)):
            return [self._error(message, 401, "Unauthorized", challenge=True)]
        key = sm.long_term_key(username.decode(), self.realm, password)
        if self.stale_next:
            self.stale_next -= 1
            self.nonce += "x"
            return [self._error(message, 438, "Stale Nonce", challenge=True)]
        if (message.get(sm.NONCE) or b"").decode() != self.nonce:
            return [self._error(message, 438, "Stale Nonce", challenge=True)]
        if self.mismatch_next and message.method != sm.ALLOCATE:
            self.mismatch_next = False
            self.allocated = False
            return [self._error(message, 437, "Allocation Mismatch")]
        return [self._request(message, key, now)]

    def _request(self, message: sm.Message, key: bytes, now: float) -> bytes:
        txid = message.transaction_id
        if message.method == sm.ALLOCATE:
            requested = message.get(sm.LIFETIME)
            self.requested_lifetimes.append(None if requested is None else sm.decode_u32_untrusted(requested, "L"))
            self.allocated, self.expires = True, now + self.lifetime
            self.permissions.clear()
            self.channels.clear()
            attrs = [
                (sm.XOR_RELAYED_ADDRESS, sm.xor_address(RELAYED, txid)),
                (sm.LIFETIME, sm.u32(self.lifetime)),
                (sm.XOR_MAPPED_ADDRESS, sm.xor_address(MAPPED, txid)),
            ]
            return sm.encode(sm.ALLOCATE, sm.SUCCESS, txid, attrs, key=key, fingerprint=True)
        if not self.allocated or now >= self.expires:
            return self._error(message, 437, "Allocation Mismatch")
        if message.method == sm.REFRESH:
            value = message.get(sm.LIFETIME)
            lifetime = self.lifetime if value is None else sm.decode_u32_untrusted(value, "LIFETIME")
            if lifetime == 0:
                self.allocated = False
            self.expires = now + lifetime
            return sm.encode(sm.REFRESH, sm.SUCCESS, txid, [(sm.LIFETIME, sm.u32(lifetime))], key=key, fingerprint=True)
        peer = sm.decode_xor_address_untrusted(message.get(sm.XOR_PEER_ADDRESS) or b"", txid)
        self.permissions[peer[0]] = now + 300
        if message.method == sm.CHANNEL_BIND:
            number = int.from_bytes((message.get(sm.CHANNEL_NUMBER) or b"")[:2], "big")
            self.channels[number] = (peer, now + 600)
        return sm.encode(message.method, sm.SUCCESS, txid, [], key=key, fingerprint=True)

    def _error(self, message: sm.Message, code: int, reason: str, *, challenge: bool = False) -> bytes:
        attrs = [(sm.ERROR_CODE, sm.error_code(code, reason))]
        if challenge:
            attrs += [(sm.REALM, self.realm.encode()), (sm.NONCE, self.nonce.encode())]
        return sm.encode(message.method, sm.ERROR, message.transaction_id, attrs, fingerprint=True)

    def from_peer(self, peer: Address, data: bytes, now: float) -> bytes | None:
        """What the server sends the client when ``peer`` sends ``data`` to the relayed address."""
        if self.permissions.get(peer[0], 0) <= now:
            return None
        for number, (bound, until) in self.channels.items():
            if bound == peer and until > now:
                return channel_data(number, data, stream=self.stream)
        txid = bytes(range(12))
        attrs = [(sm.XOR_PEER_ADDRESS, sm.xor_address(peer, txid)), (sm.DATA_ATTR, data)]
        return sm.encode(sm.DATA, sm.INDICATION, txid, attrs)
