"""The sans-IO STUN client (p2pos_proto/nat/stun_client.py, spec/nat.md §2): retransmission, matching, integrity."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.nat import stun
from p2pos.proto.nat import stun_message as sm
from p2pos.proto.nat.stun_client import BindingFailed, BindingSucceeded, RetransmitConfig, StunClient

SERVER = ("198.18.0.1", 3478)
ME = ("198.18.5.5", 40000)


def counter_random(n: int, _state: list[int] = [0]) -> bytes:  # a deterministic stream
    _state[0] += 1
    return _state[0].to_bytes(n, "big")


def _send_times(config: RetransmitConfig) -> tuple[list[float], float, BindingFailed]:
    client = StunClient(random=counter_random, config=config)
    client.binding(SERVER, 0.0)
    times = [0.0] * len(client.datagrams_to_send(0.0))
    while (timer := client.get_timer()) is not None:
        client.handle_timer(timer)
        times += [timer] * len(client.datagrams_to_send(timer))
        event = client.next_event()
        if event is not None:
            assert isinstance(event, BindingFailed)
            return times, timer, event
    raise AssertionError("no failure")


def test_rfc8489_retransmission_schedule() -> None:
    """[NAT-2.4] RTO 500 ms doubling, Rc = 7 sends, failure Rm = 16 RTO after the last: 39.5 s."""
    times, failed_at, event = _send_times(RetransmitConfig())
    assert times == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert failed_at == 39.5 == RetransmitConfig().timeout
    assert event.error == 0 and event.sent == 7


def test_short_schedule_and_single_send() -> None:
    times, failed_at, _ = _send_times(RetransmitConfig(rto=0.5, rc=4, rm=4))
    assert times == [0.0, 0.5, 1.5, 3.5] and failed_at == 5.5
    times, failed_at, _ = _send_times(RetransmitConfig(rto=1.0, rc=1, rm=3))
    assert times == [0.0] and failed_at == 3.0
    with pytest.raises(LocalProtocolError):
        RetransmitConfig(rto=0)


def test_success_stops_the_retransmissions() -> None:
    client = StunClient(random=counter_random)
    txid = client.binding(SERVER, 0.0, local="sock")
    ((request, to, local),) = client.datagrams_to_send(0.0)
    assert to == SERVER and local == "sock"
    message = sm.decode_untrusted(request)  # FINGERPRINT checked by the parser
    assert message.has(sm.FINGERPRINT) and message.get(sm.SOFTWARE) == b"p2pos"
    client.handle_timer(0.5)
    assert len(client.datagrams_to_send(0.5)) == 1
    assert client.receive_datagram(stun.binding_success(txid, ME), SERVER, 0.6, "sock")
    event = client.next_event()
    assert isinstance(event, BindingSucceeded)
    assert (event.mapped, event.source, event.local, event.sent) == (ME, SERVER, "sock", 2)
    assert client.get_timer() is None and not client.pending(txid)
    # A duplicate answer is not ours any more.
    assert not client.receive_datagram(stun.binding_success(txid, ME), SERVER, 0.7, "sock")


def test_rfc5780_attributes_and_error_responses() -> None:
    server = stun.BindingServer(primary=SERVER, alternate=("198.18.0.2", 3479))
    client = StunClient(random=counter_random)
    txid = client.binding(SERVER, 0.0, change=sm.CHANGE_IP | sm.CHANGE_PORT)
    ((request, _, _),) = client.datagrams_to_send(0.0)
    answer = server.answer_untrusted(request, ME, stun.PRIMARY_SOCKET)
    assert answer is not None and server.role(answer[1]) == (1, 1)
    assert client.receive_datagram(answer[0], ("198.18.0.2", 3479), 0.1)
    event = client.next_event()
    assert isinstance(event, BindingSucceeded) and event.transaction_id == txid
    assert event.response_origin == ("198.18.0.2", 3479) and event.other_address == ("198.18.0.2", 3479)
    # A node without an alternate refuses CHANGE-REQUEST with 420.
    client.binding(SERVER, 1.0, change=sm.CHANGE_PORT)
    ((request, _, _),) = client.datagrams_to_send(1.0)
    answer = stun.BindingServer().answer_untrusted(request, ME, 0)
    assert answer is not None and client.receive_datagram(answer[0], SERVER, 1.1)
    event = client.next_event()
    assert isinstance(event, BindingFailed) and event.error == 420


def test_integrity_is_required_when_a_key_was_used() -> None:
    """[NAT-2.2] a keyed request's answer without a valid MESSAGE-INTEGRITY is discarded."""
    key = sm.short_term_key("VOkJxbRl1RmTxUk/WvJxBt")
    client = StunClient(random=counter_random)
    txid = client.binding(SERVER, 0.0, key=key, attributes=((sm.USERNAME, b"evtj:h6vY"),))
    ((request, _, _),) = client.datagrams_to_send(0.0)
    assert sm.decode_untrusted(request).integrity_ok(key)
    unsigned = stun.binding_success(txid, ME)
    assert client.receive_datagram(unsigned, SERVER, 0.1) and client.next_event() is None
    assert client.stats["bad_integrity"] == 1
    signed = sm.encode(sm.BINDING, sm.SUCCESS, txid, [(sm.XOR_MAPPED_ADDRESS, sm.xor_address(ME, txid))], key=key)
    assert client.receive_datagram(signed, SERVER, 0.2)
    assert isinstance(client.next_event(), BindingSucceeded)


def test_old_servers_mapped_address() -> None:
    client = StunClient(random=counter_random, software=False)
    txid = client.binding(SERVER, 0.0)
    plain = sm.encode(sm.BINDING, sm.SUCCESS, txid, [(sm.MAPPED_ADDRESS, sm.plain_address(ME))])
    assert client.receive_datagram(plain, SERVER, 0.1)
    event = client.next_event()
    assert isinstance(event, BindingSucceeded) and event.mapped == ME


@given(st.binary(max_size=200))
def test_any_bytes_never_raise(data: bytes) -> None:
    """[NAT-2.5] garbage is dropped and counted."""
    client = StunClient(random=counter_random)
    txid = client.binding(SERVER, 0.0)
    client.receive_datagram(data, SERVER, 0.0)
    client.receive_datagram(data[:8] + txid + data[20:], SERVER, 0.0)
    stun.BindingServer(primary=SERVER, alternate=("198.18.0.2", 3479)).answer_untrusted(data, ME, 0)
