"""The keepalive policy and sender (p2pos_proto/nat/keepalive.py, spec/nat.md §5), in memory."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.nat import stun_message as sm
from p2pos.proto.nat.keepalive import (
    LOST_AFTER,
    BindingKeeper,
    BindingLost,
    KeepaliveAnswered,
    MappingChanged,
    NodeRestarted,
    keepalive_flows,
    keepalive_interval,
    reply_wait,
)
from p2pos.proto.nat.profile import Filtering, Mapping
from p2pos.proto.simulation.prng import Prng

SERVER = ("198.18.0.1", 3478)
PEERS = [("198.18.0.7", 4000), ("198.18.0.8", 5000)]
MAPPED = ("198.18.0.10", 40000)


def test_interval_is_a_safe_fraction_of_the_timeout() -> None:
    """[NAT-5.1] 93% of T, or less when T is short: a resend must still leave before T."""
    assert keepalive_interval(300.0) == pytest.approx(279.0)
    assert keepalive_interval(10.0, 0.05) == pytest.approx(9.3)
    assert keepalive_interval(10.0, 0.3) == pytest.approx(10.0 - 2 * 0.65)
    assert keepalive_interval(1.0, 1.0) == 0.5  # never under half of T
    assert reply_wait(0.0) == 0.25 and reply_wait(0.2) == pytest.approx(0.45)
    with pytest.raises(LocalProtocolError):
        keepalive_interval(0.0)


@pytest.mark.parametrize(
    ("mapping", "filtering", "flows"),
    [
        (Mapping.ENDPOINT_INDEPENDENT, Filtering.ENDPOINT_INDEPENDENT, [SERVER]),
        (Mapping.NONE, Filtering.NONE, [SERVER]),
        (Mapping.ENDPOINT_INDEPENDENT, Filtering.ADDRESS_AND_PORT_DEPENDENT, [SERVER, *PEERS]),
        (Mapping.ENDPOINT_INDEPENDENT, Filtering.ADDRESS_DEPENDENT, [SERVER, *PEERS]),
        (Mapping.ADDRESS_AND_PORT_DEPENDENT, Filtering.ENDPOINT_INDEPENDENT, [SERVER, *PEERS]),
        (Mapping.UNKNOWN, Filtering.ENDPOINT_INDEPENDENT, [SERVER, *PEERS]),
    ],
)
def test_flows_that_need_keepalives(mapping: Mapping, filtering: Filtering, flows: list[tuple[str, int]]) -> None:
    """[NAT-5.2] One flow under endpoint-independent mapping and filtering, else one per peer too."""
    assert keepalive_flows(mapping, filtering, SERVER, [*PEERS, PEERS[0], SERVER]) == flows


def reply(request: bytes, mapped: tuple[str, int] = MAPPED, instance: bytes | None = None) -> bytes:
    txid = request[8:20]
    attributes = [(sm.XOR_MAPPED_ADDRESS, sm.xor_address(mapped, txid))]
    if instance is not None:
        attributes.append((sm.P2POS_INSTANCE, instance))
    return sm.encode(sm.BINDING, sm.SUCCESS, txid, attributes)


def keeper(interval: float = 100.0) -> BindingKeeper:
    k = BindingKeeper(SERVER, interval, random=Prng(3), local="main")
    k.start(0.0)
    return k


def fire(k: BindingKeeper) -> tuple[float, bytes]:
    timer = k.get_timer()
    assert timer is not None
    k.handle_timer(timer)
    out = k.datagrams_to_send(timer)
    assert len(out) == 1 and out[0][1:] == (SERVER, "main")
    return timer, out[0][0]


def test_keepalive_every_interval_from_the_last_send() -> None:
    """[NAT-5.3] A Binding request each interval; any other send on the flow restarts it."""
    k = keeper()
    t, request = fire(k)
    assert t == 100.0 and sm.decode_untrusted(request).klass == sm.REQUEST
    assert k.receive_datagram(reply(request), SERVER, 100.1)
    assert isinstance(k.next_event(), KeepaliveAnswered)
    k.note_sent(150.0)
    assert k.get_timer() == 250.0
    k.set_interval(50.0, 160.0)
    assert k.get_timer() == 200.0


def test_unanswered_keepalive_is_sent_again_at_once() -> None:
    """[NAT-5.3] No reply within the reply wait: the same request again, then BindingLost once."""
    k = keeper()
    t0, first = fire(k)
    t1, again = fire(k)
    assert again == first and t1 - t0 == pytest.approx(reply_wait(0.0))
    events = []
    for _ in range(LOST_AFTER):
        fire(k)
        while (event := k.next_event()) is not None:
            events.append(event)
    assert [type(e) for e in events] == [BindingLost]
    assert k.receive_datagram(reply(first), SERVER, 200.0)
    assert isinstance(k.next_event(), KeepaliveAnswered)


def test_a_new_public_address_is_reported() -> None:
    """[NAT-5.3] [NAT-4.6] The reply shows the mapping was made again: re-learn."""
    k = keeper()
    _, request = fire(k)
    k.receive_datagram(reply(request), SERVER, 100.1)
    _, request = fire(k)
    k.receive_datagram(reply(request, ("198.18.0.10", 41234)), SERVER, 200.1)
    events = [k.next_event() for _ in range(3)]
    assert isinstance(events[2], MappingChanged) and events[2].new == ("198.18.0.10", 41234)


def test_probe_sends_at_once() -> None:
    k = keeper()
    k.probe(5.0)
    assert fire(k)[0] == 5.0


@given(data=st.binary(max_size=100))
def test_garbage_is_not_a_reply(data: bytes) -> None:
    k = keeper()
    fire(k)
    assert k.receive_datagram(data, SERVER, 100.5) is False
    assert k.next_event() is None


def _answer(k: BindingKeeper, instance: bytes | None) -> list[object]:
    t, request = fire(k)
    assert k.receive_datagram(reply(request, instance=instance), SERVER, t + 0.1)
    return [e for e in iter(k.next_event, None) if not isinstance(e, KeepaliveAnswered)]


def test_another_node_instance_is_a_restart() -> None:
    """[RDV-7.8] An answer naming another instance than the last reports NodeRestarted, once."""
    k = keeper()
    first, second = bytes(range(8)), bytes(range(8, 16))
    assert _answer(k, first) == [] and k.instance == first
    assert _answer(k, first) == []
    assert _answer(k, second) == [NodeRestarted(old=first, new=second)]
    assert _answer(k, second) == [] and k.stats["node_restarted"] == 1


def test_a_missing_or_malformed_instance_says_nothing() -> None:
    """[RDV-7.8] A node of an earlier version sends none; an answer without one, or with one that is
    not 8 bytes, neither reports a restart nor forgets the instance named before."""
    k = keeper()
    named = []
    for instance in (None, bytes(8), None):  # the first one named is no restart
        assert _answer(k, instance) == []
        named.append(k.instance)
    assert named == [None, bytes(8), bytes(8)]
    assert _answer(k, bytes(7)) == [] and k.stats["malformed_instance"] == 1
    assert _answer(k, bytes(8)) == []
