"""The sans-IO TURN client (p2pos_proto/nat/turn.py) against a fake server on a fake clock (spec/turn.md §5, §6)."""

from __future__ import annotations

import itertools

import pytest
from fake_turn_server import MAPPED, RELAYED, FakeTurnServer
from hypothesis import given
from hypothesis import strategies as st

from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.nat import stun_message as sm
from p2pos.proto.nat.turn import TurnClient, TurnConfig, TurnState
from p2pos.proto.nat.turn_config import TurnCredentials
from p2pos.proto.nat.turn_events import (
    TurnAllocated,
    TurnDataReceived,
    TurnEvent,
    TurnFailed,
    TurnPeerFailed,
    TurnRefreshed,
    TurnReleased,
)

ALICE = TurnCredentials(username="alice", password="secret")
PEER = ("198.18.0.20", 40000)
PEER2 = ("198.18.0.20", 40001)


def counter_random() -> object:
    counter = itertools.count()
    return lambda n: next(counter).to_bytes(n, "big")


def client(config: TurnConfig | None = None, credentials: TurnCredentials = ALICE) -> TurnClient:
    counter = itertools.count(1)
    return TurnClient(credentials, random=lambda n: next(counter).to_bytes(n, "big"), config=config)


def pump(c: TurnClient, server: FakeTurnServer, now: float) -> list[TurnEvent]:
    """Deliver messages both ways until quiet; return the client's events."""
    while True:
        out = c.datagrams_to_send(now)
        if not out:
            break
        for datagram in out:
            for answer in server.handle(datagram, now):
                c.receive(answer, now)
    events = []
    while (event := c.next_event()) is not None:
        events.append(event)
    return events


def allocated(config: TurnConfig | None = None) -> tuple[TurnClient, FakeTurnServer]:
    c, server = client(config), FakeTurnServer(users={"alice": "secret"}, stream=bool(config and config.stream))
    c.allocate(0.0)
    assert pump(c, server, 0.0) == [TurnAllocated(relayed=RELAYED, mapped=MAPPED, lifetime=600)]
    return c, server


def test_allocate_answers_the_challenge() -> None:
    """[TRN-5.1] Allocate → 401 with REALM/NONCE → Allocate with USERNAME/REALM/NONCE/MESSAGE-INTEGRITY."""
    c, server = client(), FakeTurnServer(users={"alice": "secret"})
    c.allocate(0.0)
    first = sm.decode_untrusted(c.datagrams_to_send(0.0)[0])
    assert (first.method, first.get(sm.USERNAME), first.integrity_at) == (sm.ALLOCATE, None, -1)
    assert first.get(sm.REQUESTED_TRANSPORT) == bytes([17, 0, 0, 0])
    c.receive(server.handle(first.raw, 0.0)[0], 0.0)
    second = sm.decode_untrusted(c.datagrams_to_send(0.0)[0])
    assert second.transaction_id != first.transaction_id
    assert second.get(sm.USERNAME) == b"alice" and second.get(sm.REALM) == b"p2pos.test"
    assert second.integrity_ok(sm.long_term_key("alice", "p2pos.test", "secret"))
    c.receive(server.handle(second.raw, 0.0)[0], 0.0)
    assert c.next_event() == TurnAllocated(relayed=RELAYED, mapped=MAPPED, lifetime=600)
    assert c.state is TurnState.ALLOCATED and c.relayed == RELAYED


def test_wrong_password_fails_after_the_second_401() -> None:
    """[TRN-5.2] 401 on the authenticated retry = refused credentials: TurnFailed(code 401), no third try."""
    c, server = (
        client(credentials=TurnCredentials(username="alice", password="wrong")),
        FakeTurnServer(users={"alice": "secret"}),
    )
    c.allocate(0.0)
    events = pump(c, server, 0.0)
    assert len(events) == 1 and isinstance(events[0], TurnFailed)
    assert events[0].code == 401 and "refused the credentials" in events[0].reason
    assert [m for _, m, k in server.received] == [sm.ALLOCATE, sm.ALLOCATE]
    assert c.state is TurnState.FAILED and c.get_timer() is None
    with pytest.raises(LocalProtocolError):
        c.send(b"x", PEER, 1.0)


def test_stale_nonce_is_retried_with_the_new_nonce() -> None:
    """[TRN-5.2] 438 → the same request again with the new NONCE; too many in a row fail."""
    c, server = allocated()
    server.stale_next = 1
    c.refresh(10.0)
    assert pump(c, server, 10.0) == [TurnRefreshed(lifetime=600)]
    assert [m for _, m, _ in server.received][-2:] == [sm.REFRESH, sm.REFRESH]
    server.stale_next = 3  # three retries succeed on the fourth try
    c.refresh(20.0)
    assert pump(c, server, 20.0) == [TurnRefreshed(lifetime=600)]
    server.stale_next = 4
    c.refresh(30.0)
    events = pump(c, server, 30.0)
    assert len(events) == 1 and isinstance(events[0], TurnFailed) and events[0].code == 438
    assert [m for _, m, _ in server.received][-4:] == [sm.REFRESH] * 4


def test_refresh_before_the_lifetime_ends() -> None:
    """[TRN-5.4] Refresh at lifetime - 60 s; a forced refresh reports the granted lifetime."""
    c, server = allocated()
    assert c.get_timer() == pytest.approx(540.0)
    c.handle_timer(539.0)
    assert c.datagrams_to_send(539.0) == []
    c.handle_timer(540.0)
    assert pump(c, server, 540.0) == [TurnRefreshed(lifetime=600)]
    assert c.get_timer() == pytest.approx(1080.0)
    server.lifetime = 100
    c.refresh(600.0)
    assert pump(c, server, 600.0) == [TurnRefreshed(lifetime=100)]
    assert c.get_timer() == pytest.approx(650.0)  # short lifetimes refresh at half


def test_requested_lifetime_is_sent() -> None:
    """[TRN-5.4] a configured LIFETIME goes in Allocate and every Refresh."""
    c, server = allocated(TurnConfig(requested_lifetime=300))
    c.refresh(1.0)
    pump(c, server, 1.0)
    assert server.requested_lifetimes == [300]


def test_send_goes_through_indications_then_channel_data() -> None:
    """[TRN-6.1] held until the permission is installed; Send indications until the channel is bound; then
    ChannelData."""
    c, server = client(), FakeTurnServer(users={"alice": "secret"})
    c.send(b"early", PEER, 0.0)  # before the allocation: held
    c.allocate(0.0)
    pump(c, server, 0.0)
    assert c.has_permission(PEER[0]) and c.channel_of(PEER) == 0x4000
    assert server.to_peers == [(PEER, b"early", "send")]  # the permission was answered before the channel
    c.send(b"next", PEER, 1.0)
    pump(c, server, 1.0)
    assert server.to_peers[-1] == (PEER, b"next", "channel")
    # A second port on the same IP: the permission exists, its channel is being bound.
    c.send(b"via-indication", PEER2, 2.0)
    out = c.datagrams_to_send(2.0)
    kinds = [sm.decode_untrusted(d).method for d in out]
    assert sorted(kinds) == [sm.SEND, sm.CHANNEL_BIND]
    for d in out:
        for answer in server.handle(d, 2.0):
            c.receive(answer, 2.0)
    assert (PEER2, b"via-indication", "send") in server.to_peers and c.channel_of(PEER2) == 0x4001


def test_send_without_channels_uses_indications() -> None:
    """[TRN-6.1] with use_channels off every datagram is a Send indication (36 bytes of overhead over IPv4)."""
    c, server = allocated(TurnConfig(use_channels=False))
    c.send(b"abcd", PEER, 1.0)
    out = c.datagrams_to_send(1.0)
    assert [sm.decode_untrusted(d).method for d in out] == [sm.CREATE_PERMISSION]
    for d in out:
        for answer in server.handle(d, 1.0):
            c.receive(answer, 1.0)
    (indication,) = c.datagrams_to_send(1.0)
    assert len(indication) == 36 + 4
    server.handle(indication, 1.0)
    assert server.to_peers == [(PEER, b"abcd", "send")] and c.channel_of(PEER) is None


def test_data_from_peers_both_ways() -> None:
    """[TRN-6.2] Data indications and ChannelData come out as TurnDataReceived from the peer's address."""
    c, server = allocated()
    c.send(b"hi", PEER, 1.0)
    pump(c, server, 1.0)
    c.receive(server.from_peer(PEER, b"over-channel", 2.0) or b"", 2.0)
    server.channels.clear()
    c.receive(server.from_peer(PEER, b"over-indication", 2.0) or b"", 2.0)
    assert pump(c, server, 2.0) == [
        TurnDataReceived(peer=PEER, data=b"over-channel"),
        TurnDataReceived(peer=PEER, data=b"over-indication"),
    ]
    c.receive(bytes([0x4F, 0xFF, 0, 1, 7]), 2.0)  # a channel we never bound
    c.receive(b"\x00\x01garbage", 2.0)
    c.receive(b"", 2.0)
    assert pump(c, server, 2.0) == []
    assert c.stats["unknown_channel"] == 1 and c.stats["malformed"] == 2


def test_permissions_and_channels_refresh_while_used_and_lapse_when_not() -> None:
    """[TRN-5.3] permission refreshed 60 s before its 300 s, channel 60 s before its 600 s, only if used."""
    c, server = allocated()
    c.send(b"x", PEER, 0.0)
    pump(c, server, 0.0)
    assert c.get_timer() == pytest.approx(240.0)
    c.send(b"y", PEER, 100.0)
    assert len(c.datagrams_to_send(100.0)) == 1  # the ChannelData
    c.handle_timer(240.0)
    assert [sm.decode_untrusted(d).method for d in c.datagrams_to_send(240.0)] == [sm.CREATE_PERMISSION]
    # Not used since: the next permission refresh does not happen, and the channel lapses at 540.
    c, server = allocated()
    c.send(b"x", PEER, 0.0)
    pump(c, server, 0.0)
    for now in (240.0, 540.0):
        c.handle_timer(now)
        assert [sm.decode_untrusted(d).method for d in c.datagrams_to_send(now)] in ([], [sm.REFRESH])
    assert not c.has_permission(PEER[0]) and c.channel_of(PEER) is None


def test_channel_rebinds_before_600_s_when_in_use() -> None:
    """[TRN-5.3] a used channel is bound again at 540 s (ChannelBind also refreshes the permission)."""
    c, server = allocated()
    for now in (0.0, 200.0, 400.0, 530.0):
        c.send(b"x", PEER, now)
        c.handle_timer(now)
        pump(c, server, now)
    c.handle_timer(540.0)
    methods = [sm.decode_untrusted(d).method for d in c.datagrams_to_send(540.0)]
    assert sm.CHANNEL_BIND in methods


def test_allocation_mismatch_reallocates_and_rebinds() -> None:
    """[TRN-5.7] 437 on a Refresh: allocate again, report the new allocation, bind the peers again."""
    c, server = allocated()
    c.send(b"x", PEER, 0.0)
    pump(c, server, 0.0)
    server.mismatch_next = True
    c.refresh(5.0)
    events = pump(c, server, 5.0)
    assert events == [TurnAllocated(relayed=RELAYED, mapped=MAPPED, lifetime=600)]
    assert c.channel_of(PEER) is not None and server.channels


def test_allocation_mismatch_restores_permissions_of_peers_we_only_listen_to() -> None:
    """[TRN-5.7] [TRN-6.3] a peer added with add_peer (never sent to) gets its permission again after a 437."""
    c, server = allocated(TurnConfig(use_channels=False))
    c.add_peer(PEER, 0.0)
    pump(c, server, 0.0)
    assert c.has_permission(PEER[0])
    server.mismatch_next = True
    c.refresh(5.0)
    assert pump(c, server, 5.0) == [TurnAllocated(relayed=RELAYED, mapped=MAPPED, lifetime=600)]
    assert c.has_permission(PEER[0]) and server.permissions == {PEER[0]: 305.0}


def test_release_sends_lifetime_zero() -> None:
    """[TRN-5.5] release = Refresh LIFETIME 0; TurnReleased; nothing more is sent or delivered."""
    c, server = allocated()
    c.send(b"x", PEER, 0.0)
    pump(c, server, 0.0)
    c.release(1.0)
    (wire,) = c.datagrams_to_send(1.0)
    message = sm.decode_untrusted(wire)
    assert message.method == sm.REFRESH and message.get(sm.LIFETIME) == bytes(4)
    c.receive(server.handle(wire, 1.0)[0], 1.0)
    assert c.next_event() == TurnReleased(reason="released")
    assert not server.allocated and c.get_timer() is None
    c.receive(server.from_peer(PEER, b"late", 2.0) or b"", 2.0)
    assert c.next_event() is None
    with pytest.raises(LocalProtocolError):
        c.send(b"x", PEER, 3.0)


def test_udp_retransmission_schedule() -> None:
    """[TRN-5.6] RTO 500 ms doubling, 7 sends, then 16 x RTO: the request fails at 39.5 s."""
    c, _server = client(), FakeTurnServer(users={"alice": "secret"}, drop_requests=True)
    c.allocate(0.0)
    sends = [0.0] if c.datagrams_to_send(0.0) else []
    while (when := c.get_timer()) is not None:
        c.handle_timer(when)
        if c.datagrams_to_send(when):
            sends.append(when)
    assert sends == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    event = c.next_event()
    assert isinstance(event, TurnFailed) and "no answer" in event.reason
    assert c.stats["retransmits"] == 6


def test_stream_transactions_are_not_retransmitted() -> None:
    """[TRN-5.6] over TCP/TLS one send, failure after 39.5 s."""
    c = client(TurnConfig(stream=True))
    c.allocate(0.0)
    assert len(c.datagrams_to_send(0.0)) == 1
    assert c.get_timer() == pytest.approx(39.5)
    c.handle_timer(39.5)
    assert c.datagrams_to_send(39.5) == []
    assert isinstance(c.next_event(), TurnFailed)


def test_stream_mode_byte_by_byte() -> None:
    """[TRN-3.3] on a stream the client reassembles messages from any chunking; ChannelData out is padded."""
    c, server = client(TurnConfig(stream=True)), FakeTurnServer(users={"alice": "secret"}, stream=True)
    c.allocate(0.0)
    for _ in range(2):
        for datagram in c.datagrams_to_send(0.0):
            for answer in server.handle(datagram, 0.0):
                for i in range(len(answer)):
                    c.receive(answer[i : i + 1], 0.0)
    assert isinstance(c.next_event(), TurnAllocated)
    c.send(b"abc", PEER, 1.0)
    pump(c, server, 1.0)
    c.send(b"abcde", PEER, 1.0)
    (wire,) = c.datagrams_to_send(1.0)
    assert wire == bytes([0x40, 0x00, 0, 5]) + b"abcde" + bytes(3)
    c.receive(b"\xff\xff\xff\xff", 2.0)
    event = c.next_event()
    assert isinstance(event, TurnFailed) and "out of step" in event.reason


def test_peer_failure_is_reported() -> None:
    """[TRN-5.3] a permission the server refuses (403) gives TurnPeerFailed and drops what was held."""
    c, _server = allocated(TurnConfig(use_channels=False))
    c.send(b"x", PEER, 1.0)
    (wire,) = c.datagrams_to_send(1.0)
    request = sm.decode_untrusted(wire)
    answer = sm.encode(
        sm.CREATE_PERMISSION, sm.ERROR, request.transaction_id, [(sm.ERROR_CODE, sm.error_code(403, "Forbidden"))]
    )
    c.receive(answer, 1.0)
    event = c.next_event()
    assert isinstance(event, TurnPeerFailed) and event.peer == (PEER[0], 0) and "403" in event.reason
    assert c.state is TurnState.ALLOCATED


def test_success_without_valid_integrity_is_ignored() -> None:
    """[TRN-5.1] an authenticated request's answer must carry a valid MESSAGE-INTEGRITY (RFC 8489 §9.2.5)."""
    c, server = allocated()
    c.refresh(1.0)
    (wire,) = c.datagrams_to_send(1.0)
    txid = sm.decode_untrusted(wire).transaction_id
    forged = sm.encode(sm.REFRESH, sm.SUCCESS, txid, [(sm.LIFETIME, sm.u32(5))], key=b"not the key")
    c.receive(forged, 1.0)
    assert c.next_event() is None and c.stats["bad_integrity"] == 1
    c.receive(server.handle(wire, 1.0)[0], 1.0)
    assert c.next_event() == TurnRefreshed(lifetime=600)


@given(chunks=st.lists(st.binary(max_size=80), max_size=8), stream=st.booleans(), allocate=st.booleans())
def test_garbage_never_raises_out_of_receive(chunks: list[bytes], stream: bool, allocate: bool) -> None:
    """[TRN-2.5] any bytes from the network are dropped, counted or end the stream; receive() never raises."""
    if allocate:
        c, _ = allocated(TurnConfig(stream=stream))
    else:
        c = client(TurnConfig(stream=stream))
        c.allocate(0.0)
    for chunk in chunks:
        c.receive(chunk, 1.0)
        c.receive(bytes([0x01, 0x01, 0, 0]) + sm.MAGIC_COOKIE.to_bytes(4, "big") + bytes(12) + chunk[:0], 1.0)
    while c.next_event() is not None:
        pass
    assert c.state in (TurnState.ALLOCATED, TurnState.ALLOCATING, TurnState.FAILED)


def test_ipv6_peer_overheads() -> None:
    """[TRN-6.4] an IPv6 peer: a Send indication costs 48 bytes (+ padding), ChannelData 4."""
    peer6 = ("2001:2::20", 40001)
    c, server = allocated(TurnConfig(use_channels=False))
    c.add_peer(peer6, 0.0)
    pump(c, server, 0.0)
    c.send(b"abcd", ("2001:0002:0:0::20", 40001), 1.0)  # another spelling of the same address
    (indication,) = c.datagrams_to_send(1.0)
    assert len(indication) == 48 + 4
    server.handle(indication, 1.0)
    assert server.to_peers == [(peer6, b"abcd", "send")]
    c, server = allocated()
    c.send(b"abcd", peer6, 1.0)
    pump(c, server, 1.0)
    c.send(b"abcde", peer6, 2.0)
    (wire,) = c.datagrams_to_send(2.0)
    assert len(wire) == 4 + 5 and c.channel_of(peer6) == 0x4000


def test_channel_for_only_once_the_channel_is_bound() -> None:
    """[TRN-6.6] ``channel_for`` gives the bound channel only while data may go in ChannelData (allocated,
    permission installed, channel bound); before that None (``send`` holds or wraps it)."""
    c, server = client(), FakeTurnServer(users={"alice": "secret"})
    assert c.channel_for(PEER, 0.0) is None  # not allocated
    c.allocate(0.0)
    pump(c, server, 0.0)
    assert c.channel_for(PEER, 0.0) is None  # no permission, no channel
    c.send(b"first", PEER, 0.0)
    assert c.channel_for(PEER, 0.0) is None  # requested, not answered yet
    pump(c, server, 0.0)
    assert c.channel_for(PEER, 1.0) == c.channel_of(PEER) == 0x4000
    assert c.channel_for(PEER2, 1.0) is None  # the same IP, another port: its own channel, not bound
    assert c.datagrams_to_send(1.0) == []  # asking installs nothing


def test_channel_for_keeps_permission_and_channel_in_use() -> None:
    """[TRN-6.6] [TRN-5.3] data framed by the driver counts as use: the permission is refreshed at 240 s
    and the channel rebound at 540 s, as after ``send``; without it both lapse."""
    c, server = allocated()
    c.send(b"x", PEER, 0.0)
    pump(c, server, 0.0)
    for now in (100.0, 230.0):
        assert c.channel_for(PEER, now) == 0x4000
    c.handle_timer(240.0)
    assert [sm.decode_untrusted(d).method for d in c.datagrams_to_send(240.0)] == [sm.CREATE_PERMISSION]
    pump(c, server, 240.0)
    for now in (300.0, 530.0):
        assert c.channel_for(PEER, now) == 0x4000
    c.handle_timer(540.0)
    assert sm.CHANNEL_BIND in [sm.decode_untrusted(d).method for d in c.datagrams_to_send(540.0)]


def test_channel_for_is_none_on_a_stream_leg() -> None:
    """[TRN-6.6] on TCP/TLS the driver never frames data itself (ChannelData is padded there): None."""
    c, server = allocated(TurnConfig(stream=True))
    c.send(b"x", PEER, 0.0)
    pump(c, server, 0.0)
    assert c.channel_of(PEER) == 0x4000 and c.channel_for(PEER, 1.0) is None
