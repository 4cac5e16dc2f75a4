"""The relay's sans-IO state machine (spec/relay.md §2, §4, §5, §6) with the peer's link, on a fake clock."""

from __future__ import annotations

import pytest
from helpers import SeededRandom
from relay_helpers import identity, record

from p2pos.proto.identity.identity import Identity
from p2pos.proto.relay import client as c
from p2pos.proto.relay import messages as m
from p2pos.proto.relay.server import CloseCode, LinkState, RelayConfig, RelayCore, address_prefix

HOST = "relay.test"


class Net:
    """A relay core and clients wired by memory: ``pump()`` moves every queued message."""

    def __init__(self, config: RelayConfig | None = None, *, node_peer: bytes | None = None) -> None:
        self.core = RelayCore(config or RelayConfig(), SeededRandom("relay-core"), node_peer=node_peer)
        self.now = 1000.0
        self.clients: dict[int, c.RelayClient] = {}
        self.closed: dict[int, CloseCode] = {}

    def connect(self, who: Identity | c.RelayClient, address: tuple[str, int] = ("192.0.2.1", 1), **kw: str) -> int:
        client = who if isinstance(who, c.RelayClient) else c.RelayClient(who, kw.get("name", HOST))
        link = self.core.open_link(address, self.now)
        assert link is not None
        self.core.link_upgraded(link, kw.get("host", HOST), self.now)
        self.clients[link] = client
        self.pump()
        return link

    def pump(self) -> None:
        for _ in range(20):
            moved = False
            for link in self.core.links_with_output():
                for data in self.core.take_messages(link, 1 << 30):
                    self.clients[link].receive_message(data, self.now)
                    moved = True
            for link, client in list(self.clients.items()):
                for data in client.messages_to_send():
                    self.core.receive_message(link, data, self.now)
                    moved = True
            for link, code, _ in self.core.closes():
                self.closed[link] = code
                self.core.link_lost(link, self.now)
                self.clients.pop(link).link_lost(self.now)
                moved = True
            if not moved:
                return

    def events(self, link: int) -> list[c.ClientEvent]:
        out = []
        while (event := self.clients[link].next_event()) is not None:
            out.append(event)
        return out


A, B, C = identity("a"), identity("b"), identity("c")
PA, PB, PC = (i.peer_id.public_key for i in (A, B, C))


def test_auth_succeeds_and_the_client_is_ready() -> None:
    """REL-2.2, REL-2.3: CHALLENGE, AUTH, WELCOME; the link is authenticated as the key's peer id."""
    net = Net()
    link = net.connect(A)
    assert net.core.state_of(link) is LinkState.AUTHENTICATED and net.core.peer_of(link) == PA
    assert net.clients[link].state is c.ClientState.READY
    assert net.events(link) == [c.LinkReady(max_record=65535, rate=16 << 20)]


def test_each_link_gets_a_fresh_nonce() -> None:
    """REL-2.2: two links never see the same nonce."""
    core = RelayCore(RelayConfig(), SeededRandom("nonces"))
    nonces = set()
    for port in range(5):
        link = core.open_link((f"192.0.2.{port + 1}", port), 0.0)
        assert link is not None
        core.link_upgraded(link, HOST, 0.0)
        challenge = m.decode_untrusted(core.take_messages(link, 1000)[0])
        assert isinstance(challenge, m.Challenge)
        nonces.add(challenge.nonce)
    assert len(nonces) == 5


def _challenged(core: RelayCore) -> tuple[int, bytes]:
    link = core.open_link(("192.0.2.9", 9), 0.0)
    assert link is not None
    core.link_upgraded(link, HOST, 0.0)
    challenge = m.decode_untrusted(core.take_messages(link, 1000)[0])
    assert isinstance(challenge, m.Challenge)
    return link, challenge.nonce


@pytest.mark.parametrize(
    "case",
    ["bad signature", "wrong domain", "wrong relay name", "other nonce", "other peer id", "the node's id"],
)
def test_bad_auth_closes_with_4002(case: str) -> None:
    """REL-2.3, REL-2.4: the signature must verify, under p2pos/relay-auth, over this nonce and this relay."""
    node = identity("node")
    core = RelayCore(RelayConfig(), SeededRandom(case), node_peer=node.peer_id.public_key)
    link, nonce = _challenged(core)
    signer, peer, name, domain = A, PA, HOST, m.DOMAIN_RELAY_AUTH
    signed_nonce = nonce
    if case == "wrong domain":
        domain = b"p2pos/noise-static-key"
    elif case == "other nonce":
        signed_nonce = bytes(32)
    elif case == "other peer id":
        peer = PB
    elif case == "the node's id":
        signer, peer = node, node.peer_id.public_key
    signature = signer.sign(domain, m.auth_message(signed_nonce, name))
    if case == "bad signature":
        signature = bytes([signature[0] ^ 1]) + signature[1:]
    if case == "wrong relay name":
        name = "evil.test"
        signature = signer.sign(domain, m.auth_message(signed_nonce, name))
    core.receive_message(link, m.encode(m.Auth(peer_id=peer, signature=signature, name=name)), 0.0)
    assert [(lk, code) for lk, code, _ in core.closes()] == [(link, CloseCode.AUTH_FAILED)]
    assert core.state_of(link) is LinkState.CLOSED
    assert core.peer_of(link) is None and core.stats["authenticated"] == 0


def test_a_replayed_auth_fails_on_another_link() -> None:
    """REL-2.2: an AUTH captured on one link does not authenticate another (its nonce differs)."""
    core = RelayCore(RelayConfig(), SeededRandom("replay"))
    link1, nonce1 = _challenged(core)
    auth = m.encode(m.Auth(peer_id=PA, signature=A.sign(m.DOMAIN_RELAY_AUTH, m.auth_message(nonce1, HOST)), name=HOST))
    core.receive_message(link1, auth, 0.0)
    assert core.state_of(link1) is LinkState.AUTHENTICATED
    link2, _ = _challenged(core)
    core.receive_message(link2, auth, 0.0)
    assert [(link, code) for link, code, _ in core.closes()] == [(link2, CloseCode.AUTH_FAILED)]
    assert core.stats["auth_bad_signature"] == 1


def test_a_second_auth_on_a_link_is_a_protocol_error() -> None:
    """REL-2.5."""
    net = Net()
    link = net.connect(A)
    net.core.receive_message(link, m.encode(m.Auth(peer_id=PA, signature=bytes(64), name=HOST)), net.now)
    assert [code for _, code, _ in net.core.closes()] == [CloseCode.PROTOCOL_ERROR]


def test_messages_before_auth_are_protocol_errors() -> None:
    """REL-2.1, REL-2.5: WANT before AUTH closes the link."""
    core = RelayCore(RelayConfig(), SeededRandom("early"))
    link, _ = _challenged(core)
    core.receive_message(link, m.encode(m.Want(peer_id=PB)), 0.0)
    assert [code for _, code, _ in core.closes()] == [CloseCode.PROTOCOL_ERROR]


def test_configured_names_are_the_only_ones_accepted() -> None:
    """REL-2.4: with --name set, the Host header does not matter."""
    net = Net(RelayConfig(names=("relay.example",)))
    ok = net.connect(c.RelayClient(A, "Relay.Example"), host="whatever")
    assert net.core.state_of(ok) is LinkState.AUTHENTICATED
    bad = net.connect(c.RelayClient(B, HOST), ("192.0.2.2", 1), host=HOST)
    assert net.closed[bad] is CloseCode.AUTH_FAILED


def test_auth_timeout_closes_slow_links() -> None:
    """REL-4.1: 10 s from TCP accept to AUTH, upgrade included."""
    core = RelayCore(RelayConfig(), SeededRandom("slow"))
    silent = core.open_link(("192.0.2.1", 1), 0.0)
    assert silent is not None and core.get_timer() == 10.0
    core.handle_timer(9.9)
    assert core.closes() == []
    core.handle_timer(10.0)
    assert [(link, code) for link, code, _ in core.closes()] == [(silent, CloseCode.AUTH_TIMEOUT)]


def test_idle_links_close_after_120_s_and_pings_keep_them() -> None:
    """REL-4.7."""
    net = Net()
    link = net.connect(A)
    for _ in range(5):
        net.now += 100
        net.core.touch(link, net.now)
        net.core.handle_timer(net.now)
    assert net.core.closes() == []
    net.now += 120
    net.core.handle_timer(net.now)
    assert [(lk, code) for lk, code, _ in net.core.closes()] == [(link, CloseCode.IDLE)]


def test_pairing_needs_both_wants_and_records_flow_both_ways() -> None:
    """REL-4.3, REL-4.4: PAIRED only when both asked; SEND arrives as RECV with the bytes unchanged."""
    net = Net()
    la, lb = net.connect(A), net.connect(B, ("192.0.2.2", 1))
    net.events(la), net.events(lb)
    net.clients[la].want(PB)
    net.pump()
    assert not net.clients[la].paired(PB) and net.events(la) == [] and net.events(lb) == []
    assert not net.clients[la].send(PC, record(9))  # C is not wanted: dropped by the client
    assert net.clients[la].send(PB, record(1))  # wanted, not paired: SENDTO, held by the relay (REL-4.8)
    net.pump()
    assert net.events(lb) == [] and net.core.stats["records_held"] == 1
    net.clients[lb].want(PA)
    net.pump()
    assert net.events(la) == [c.PeerPaired(peer_id=PB)]
    assert net.events(lb) == [c.PeerPaired(peer_id=PA), c.RecordReceived(peer_id=PA, record=record(1))]
    assert net.clients[la].send(PB, record(2)) and net.clients[lb].send(PA, record(3))
    net.pump()
    assert net.events(lb) == [c.RecordReceived(peer_id=PA, record=record(2))]
    assert net.events(la) == [c.RecordReceived(peer_id=PB, record=record(3))]


def _held_pair(config: RelayConfig | None = None) -> tuple[Net, int, int]:
    """A wants B (both connected), B does not want A yet."""
    net = Net(config)
    la, lb = net.connect(A), net.connect(B, ("192.0.2.2", 1))
    net.events(la), net.events(lb)
    net.clients[la].want(PB)
    net.pump()
    return net, la, lb


def _raw_sendto(net: Net, link: int, peer: bytes, data: bytes) -> None:
    net.core.receive_message(link, m.encode(m.SendTo(peer_id=peer, record=data)), net.now)


def test_held_records_are_bounded_in_count_and_bytes() -> None:
    """REL-4.8: at most 16 records and 64 KiB held per link; beyond, dropped (the held stay)."""
    net, la, lb = _held_pair()
    for n in range(20):
        _raw_sendto(net, la, PB, record(n))
    net.clients[lb].want(PA)
    net.pump()
    events = net.events(lb)
    assert events[0] == c.PeerPaired(peer_id=PA)
    assert events[1:] == [c.RecordReceived(peer_id=PA, record=record(n)) for n in range(16)]
    assert net.core.stats["dropped_hold_full"] == 4
    net, la, lb = _held_pair()
    big = b"\x07" + bytes(30_000)
    for _ in range(3):
        _raw_sendto(net, la, PB, big)  # 2 x 30001 fit in 64 KiB, the third does not
    net.clients[lb].want(PA)
    net.pump()
    received = [e for e in net.events(lb) if isinstance(e, c.RecordReceived)]
    assert received == [c.RecordReceived(peer_id=PA, record=big)] * 2
    assert net.core.stats["dropped_hold_full"] == 1


def test_held_records_expire_after_2_s_and_unwant_drops_them() -> None:
    """REL-4.8: a record held more than 2 s when the pair forms is dropped; UNWANT drops what is held."""
    net, la, lb = _held_pair()
    _raw_sendto(net, la, PB, record(1))
    net.now += 1.5
    _raw_sendto(net, la, PB, record(2))
    net.now += 0.6  # record 1 is 2.1 s old, record 2 is 0.6 s old
    net.clients[lb].want(PA)
    net.pump()
    assert net.events(lb) == [c.PeerPaired(peer_id=PA), c.RecordReceived(peer_id=PA, record=record(2))]
    assert net.core.stats["dropped_hold_expired"] == 1
    net, la, lb = _held_pair()
    _raw_sendto(net, la, PB, record(1))
    net.clients[la].unwant(PB)
    net.clients[la].want(PB)
    net.clients[lb].want(PA)
    net.pump()
    assert net.events(lb) == [c.PeerPaired(peer_id=PA)]


def test_sendto_a_peer_not_wanted_is_dropped_and_sendto_on_a_pair_is_send() -> None:
    """REL-4.8: SENDTO without WANT is counted and dropped (the link stays); on a pair it is SEND."""
    net = Net()
    la, lb = net.connect(A), net.connect(B, ("192.0.2.2", 1))
    _raw_sendto(net, la, PB, record(1))
    assert net.core.stats["sendto_not_wanted"] == 1 and net.core.closes() == []
    net.clients[la].want(PB)
    net.clients[lb].want(PA)
    net.pump()
    net.events(la), net.events(lb)
    _raw_sendto(net, la, PB, record(2))
    net.pump()
    assert net.events(lb) == [c.RecordReceived(peer_id=PA, record=record(2))]


def test_a_want_waits_for_the_peer_to_connect() -> None:
    """REL-4.3: WANT for a peer not connected yet pairs once it connects and wants back."""
    net = Net()
    la = net.connect(A)
    net.clients[la].want(PB)
    net.pump()
    client_b = c.RelayClient(B, HOST)
    client_b.want(PA)  # remembered before the link exists, sent after WELCOME (REL-7.4)
    lb = net.connect(client_b, ("192.0.2.2", 1))
    assert net.clients[la].paired(PB) and net.clients[lb].paired(PA)


def test_a_third_peer_cannot_send_to_a_pair() -> None:
    """REL-4.3: nobody can push records to a peer that did not want them; unknown pairs are dropped."""
    net = Net()
    la, lb, lc = net.connect(A), net.connect(B, ("192.0.2.2", 1)), net.connect(C, ("192.0.2.3", 1))
    for link, peer in ((la, PB), (lb, PA), (lc, PA), (lc, PB)):
        net.clients[link].want(peer)
    net.pump()
    assert not net.clients[lc].paired(PA) and not net.clients[lc].paired(PB)
    net.core.receive_message(lc, m.encode(m.Send(pair=1, record=record(9))), net.now)
    net.pump()
    assert net.core.stats["send_unknown_pair"] == 1 and lc in net.clients
    assert [e for e in net.events(la) + net.events(lb) if isinstance(e, c.RecordReceived)] == []


def test_unwant_and_leaving_unpair_both_sides() -> None:
    """REL-4.5: UNWANT or a closed link ends the pair with UNPAIRED to whoever is still there."""
    net = Net()
    la, lb = net.connect(A), net.connect(B, ("192.0.2.2", 1))
    net.clients[la].want(PB)
    net.clients[lb].want(PA)
    net.pump()
    net.events(la), net.events(lb)
    net.clients[la].unwant(PB)
    net.pump()
    assert net.events(la) == [c.PeerUnpaired(peer_id=PB)] and net.events(lb) == [c.PeerUnpaired(peer_id=PA)]
    net.clients[la].want(PB)
    net.pump()
    assert net.events(lb) == [c.PeerPaired(peer_id=PA)]
    net.core.link_lost(la, net.now)
    del net.clients[la]
    net.pump()
    assert net.events(lb) == [c.PeerUnpaired(peer_id=PA)]
    net.core.receive_message(lb, m.encode(m.Send(pair=2, record=record(1))), net.now)
    assert net.core.stats["send_unknown_pair"] == 1


def test_a_newer_link_replaces_the_older() -> None:
    """REL-4.2: one link per peer id; the older closes with 4001 and its pairs end."""
    net = Net()
    old, lb = net.connect(A), net.connect(B, ("192.0.2.2", 1))
    net.clients[old].want(PB)
    net.clients[lb].want(PA)
    net.pump()
    net.events(lb)
    new_client = c.RelayClient(A, HOST)
    new_client.want(PB)
    new = net.connect(new_client, ("192.0.2.7", 5))
    assert net.closed[old] is CloseCode.REPLACED
    assert net.events(lb) == [c.PeerUnpaired(peer_id=PA), c.PeerPaired(peer_id=PA)]
    assert net.clients[new].paired(PB) and net.core.peer_of(new) == PA


def test_want_limit_closes_with_4004() -> None:
    """REL-5.2, REL-5.5."""
    net = Net(RelayConfig(max_wants=3))
    link = net.connect(A)
    for n in range(3):
        net.clients[link].want(bytes([n]) * 32)
    net.pump()
    assert link in net.clients
    net.clients[link].want(bytes([9]) * 32)
    net.pump()
    assert net.closed[link] is CloseCode.QUOTA


def test_want_changes_are_rate_limited() -> None:
    """REL-5.2, REL-5.5: WANT/UNWANT toggling beyond 64/s after a burst of 1024 closes with 4004."""
    net = Net(RelayConfig(wants_rate=64.0, wants_burst=100.0))
    link = net.connect(A)
    for _ in range(50):  # 100 changes: the burst
        net.clients[link].want(PB)
        net.clients[link].unwant(PB)
    net.pump()
    assert link in net.clients
    net.now += 1.0  # 64 more
    for _ in range(32):
        net.clients[link].want(PB)
        net.clients[link].unwant(PB)
    net.pump()
    assert link in net.clients
    net.clients[link].want(PB)
    net.pump()
    assert net.closed[link] is CloseCode.QUOTA and net.core.stats["too_many_want_changes"] == 1


def test_per_address_link_quotas() -> None:
    """REL-5.1: 16 links, 4 unauthenticated, 4/s (burst 16) per address; IPv6 counted per /64."""
    core = RelayCore(RelayConfig(), SeededRandom("addr"))
    first = [core.open_link(("192.0.2.1", p), 0.0) for p in range(5)]
    assert None not in first[:4] and first[4] is None and core.stats["refused_address_unauthenticated"] == 1
    assert core.open_link(("192.0.2.2", 1), 0.0) is not None  # another address is not affected
    core.link_lost(first[0] or 0, 0.0)
    assert core.open_link(("192.0.2.1", 99), 0.0) is not None
    assert address_prefix("2001:db8:1:2:3::1") == address_prefix("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address_prefix("::ffff:192.0.2.1") == "192.0.2.1"
    net = Net()
    ids = [identity(f"p{n}") for n in range(17)]
    links = []
    for n, who in enumerate(ids[:16]):
        net.now += 0.25  # 4 a second
        links.append(net.connect(who, ("198.51.100.1", n)))
    assert all(net.core.state_of(lk) is LinkState.AUTHENTICATED for lk in links)
    assert net.core.open_link(("198.51.100.1", 99), net.now + 10) is None
    assert net.core.stats["refused_address_links"] == 1


def test_new_links_per_address_are_rate_limited() -> None:
    """REL-5.1: beyond the burst of 16, 4 new links a second."""
    core = RelayCore(RelayConfig(unauthenticated_per_address=100, links_per_address=100), SeededRandom("rate"))
    opened = [core.open_link(("192.0.2.1", p), 0.0) for p in range(20)]
    assert sum(x is not None for x in opened) == 16 and core.stats["refused_address_rate"] == 4
    assert core.open_link(("192.0.2.1", 50), 0.25) is not None
    assert core.open_link(("192.0.2.1", 51), 0.25) is None


def test_byte_quota_delays_reading_and_recovers() -> None:
    """REL-5.3: over the link's bucket, read_delay is positive; it refills at the rate."""
    config = RelayConfig(link_rate=1000, link_burst=5000)
    core = RelayCore(config, SeededRandom("bytes"))
    link = core.open_link(("192.0.2.1", 1), 0.0)
    assert link is not None
    assert core.read_delay(link, 0.0) == 0.0
    core.charge(link, 6000, 0.0)  # 1000 bytes of debt
    assert core.read_delay(link, 0.0) == pytest.approx(1.001)
    assert core.read_delay(link, 1.0) > 0.0
    assert core.read_delay(link, 1.01) == 0.0


def test_read_allowance_is_what_the_smaller_bucket_holds() -> None:
    """REL-5.3: the driver reads at most about what the quotas still allow (so one read overshoots little)."""
    config = RelayConfig(link_rate=1000, link_burst=5000, address_rate=1000, address_burst=8000)
    core = RelayCore(config, SeededRandom("bytes"))
    link = core.open_link(("192.0.2.1", 1), 0.0)
    assert link is not None
    assert core.read_allowance(link, 0.0) == 5000  # the link's burst, below the address's
    core.charge(link, 4000, 0.0)
    assert core.read_allowance(link, 0.0) == 1000
    assert core.read_allowance(link, 2.0) == 3000  # refilled at the rate
    core.charge(link, 9000, 2.0)
    assert core.read_allowance(link, 2.0) == 0.0  # in debt: nothing, never negative
    assert core.read_allowance(999, 2.0) == 0.0  # an unknown link


def test_the_byte_quota_belongs_to_the_peer_id() -> None:
    """REL-5.3: a peer that spent its bucket does not get a new one by reconnecting; another peer does."""
    net = Net(RelayConfig(link_rate=1000, link_burst=5000))
    first = net.connect(A)
    net.core.charge(first, 8000, net.now)
    assert net.core.read_delay(first, net.now) > 2.9
    again = net.connect(A, ("192.0.2.8", 2))  # replaces the first link
    assert net.closed[first] is CloseCode.REPLACED
    assert net.core.read_delay(again, net.now) > 2.9
    other = net.connect(B, ("192.0.2.8", 3))
    assert net.core.read_delay(other, net.now) == 0.0
    net.now += 60
    net.core.handle_timer(net.now)
    net.core.link_lost(again, net.now)
    net.now += 60
    net.core.handle_timer(net.now)  # full again and no link: forgotten
    assert PA not in net.core._peer_buckets


def test_address_byte_quota_is_shared_by_its_links() -> None:
    """REL-5.3: the per-address bucket holds back every link of that address, not others."""
    config = RelayConfig(address_rate=1000, address_burst=1000)
    core = RelayCore(config, SeededRandom("addr-bytes"))
    l1, l2, other = (core.open_link(a, 0.0) for a in (("192.0.2.1", 1), ("192.0.2.1", 2), ("192.0.2.2", 1)))
    assert l1 is not None and l2 is not None and other is not None
    core.charge(l1, 3000, 0.0)
    assert core.read_delay(l2, 0.0) > 1.9 and core.read_delay(other, 0.0) == 0.0


def test_a_full_destination_queue_drops_records_not_links() -> None:
    """REL-5.4: beyond 1 MiB waiting for a receiver, records are dropped and counted; nobody is closed."""
    net = Net(RelayConfig(queue_bytes=10_000))
    la, lb = net.connect(A), net.connect(B, ("192.0.2.2", 1))
    net.clients[la].want(PB)
    net.clients[lb].want(PA)
    net.pump()
    pair = 1
    for n in range(30):  # B never reads: messages stay queued in the core
        net.core.receive_message(la, m.encode(m.Send(pair=pair, record=record(n, 1000))), net.now)
    assert net.core.pending(lb) <= 10_000
    assert net.core.stats["dropped_queue_full"] == 30 - net.core.stats["records_relayed"] > 0
    assert net.core.closes() == []
    taken = net.core.take_messages(lb, 1 << 30)
    assert net.core.pending(lb) == 0 and len(taken) == net.core.stats["records_relayed"]
    net.core.receive_message(la, m.encode(m.Send(pair=pair, record=record(99, 1000))), net.now)
    assert net.core.pending(lb) > 0  # room again


def test_no_time_or_byte_cap_within_quota() -> None:
    """REL-5.6: a pair that stays within its rate keeps going for hours and gigabytes."""
    config = RelayConfig()
    net = Net(config)
    la, lb = net.connect(A), net.connect(B, ("192.0.2.2", 1))
    net.clients[la].want(PB)
    net.clients[lb].want(PA)
    net.pump()
    chunk = record(0, 60_000)
    for _ in range(3000):  # 3000 x 6 s = 5 hours at 10 kB/s ... and 180 MB in all
        net.now += 6.0
        net.core.charge(la, len(chunk), net.now)
        assert net.core.read_delay(la, net.now) == 0.0
        net.core.receive_message(la, m.encode(m.Send(pair=1, record=chunk)), net.now)
        net.core.touch(lb, net.now)
        net.core.handle_timer(net.now)
        net.core.take_messages(lb, 1 << 30)
    assert net.core.closes() == [] and net.core.stats["records_relayed"] == 3000


def test_text_and_garbage_close_only_the_offending_link() -> None:
    """REL-3.1.3, REL-3.2: protocol errors close that link with 4000; others carry on."""
    net = Net()
    la, lb = net.connect(A), net.connect(B, ("192.0.2.2", 1))
    net.core.receive_message(la, b"\xff\x00", net.now)
    net.core.receive_bad(lb, "text message", net.now)
    assert sorted(code for _, code, _ in net.core.closes()) == [CloseCode.PROTOCOL_ERROR] * 2
    lc = net.connect(C, ("192.0.2.3", 1))
    assert net.core.state_of(lc) is LinkState.AUTHENTICATED


def test_relay_messages_from_a_client_are_protocol_errors() -> None:
    """REL-3.2: a client sending RECV (a relay's message) is closed."""
    net = Net()
    link = net.connect(A)
    net.core.receive_message(link, m.encode(m.Recv(pair=1, record=b"\x04")), net.now)
    assert [code for _, code, _ in net.core.closes()] == [CloseCode.PROTOCOL_ERROR]


def test_the_node_is_paired_with_whoever_wants_it() -> None:
    """REL-6.1, REL-6.2: WANT(node) pairs at once; records go to the node and back."""
    node = identity("node").peer_id.public_key
    net = Net(node_peer=node)
    la = net.connect(A, ("192.0.2.5", 4444))
    net.events(la)
    net.clients[la].want(node)
    net.pump()
    assert net.events(la) == [c.PeerPaired(peer_id=node)]
    net.clients[la].send(node, record(5))
    net.pump()
    assert net.core.node_records() == [(PA, ("192.0.2.5", 4444), record(5))]
    assert net.core.send_from_node(PA, record(6))
    assert not net.core.send_from_node(PB, record(7))  # not connected
    net.pump()
    assert net.events(la) == [c.RecordReceived(peer_id=node, record=record(6))]
    net.clients[la].unwant(node)
    net.pump()
    assert not net.core.send_from_node(PA, record(8))


def test_client_fails_on_relay_protocol_errors() -> None:
    """REL-3.2 (client side): garbage, a WELCOME for another id, a duplicate PAIRED fail the link."""
    for bad in (b"", b"\x02" + bytes(10), m.encode(m.Want(peer_id=PB))):
        client = c.RelayClient(A, HOST)
        client.receive_message(bad, 0.0)
        assert client.state is c.ClientState.FAILED and isinstance(client.next_event(), c.LinkFailed)
    client = c.RelayClient(A, HOST)
    client.receive_message(m.encode(m.Challenge(nonce=bytes(32), max_record=100, max_wants=1, rate=1)), 0.0)
    client.receive_message(m.encode(m.Welcome(peer_id=PB)), 0.0)
    assert client.state is c.ClientState.FAILED


def test_backoff_doubles_with_jitter_and_resets() -> None:
    """REL-7.3: 0.5 s doubling to 30 s, times a factor in [0.5, 1]."""
    backoff = c.Backoff(SeededRandom("backoff"))
    delays = [backoff.next_delay() for _ in range(10)]
    for n, delay in enumerate(delays):
        nominal = min(30.0, 0.5 * 2**n)
        assert nominal * 0.5 <= delay <= nominal
    backoff.reset()
    assert backoff.next_delay() <= 0.5
