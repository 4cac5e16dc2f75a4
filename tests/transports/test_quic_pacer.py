"""transports/quic_pacer.py: aioquic's pacer keeps its burst above 1.25 GB/s, and the drivers use it."""

from __future__ import annotations

import pytest
import trio
from aioquic.quic.recovery import QuicPacketPacer
from helpers import make_keys

from p2pos.transports import quic, quic_pacer

SIZE = 1252


def burst(pacer: QuicPacketPacer, window: int, rtt: float) -> int:
    """Packets the pacer lets go at once from a full bucket."""
    pacer.update_rate(window, rtt)
    now = 100.0
    pacer.update_bucket(now)
    sent = 0
    while pacer.next_send_time(now) is None and sent < 1000:
        pacer.update_after_send(now)
        sent += 1
    return sent


@pytest.mark.parametrize(("window", "rtt"), [(16_000_000, 0.001), (8_000_000, 0.0005), (100_000_000, 0.002)])
def test_the_burst_holds_sixteen_packets_when_the_packet_time_is_floored(window: int, rtt: float) -> None:
    """window / RTT above 1.25 GB/s: aioquic's packet time is floored at 1 us, the burst still 16 packets."""
    pacer = quic_pacer.BurstPacer(max_datagram_size=SIZE)
    assert burst(pacer, window, rtt) == 16
    assert pacer.packet_time == pytest.approx(1e-6)


@pytest.mark.parametrize(("window", "rtt"), [(2_000_000, 0.004), (30_000, 0.05), (2_000, 0.05), (400_000, 0.02)])
def test_ordinary_rates_pace_exactly_as_aioquic(window: int, rtt: float) -> None:
    ours, theirs = quic_pacer.BurstPacer(max_datagram_size=SIZE), QuicPacketPacer(max_datagram_size=SIZE)
    assert burst(ours, window, rtt) == burst(theirs, window, rtt)
    assert (ours.packet_time, ours.bucket_max) == (theirs.packet_time, theirs.bucket_max)


async def test_both_ends_of_a_carrier_pace_with_the_burst_pacer() -> None:
    alice, bob = make_keys("alice").identity, make_keys("bob").identity
    async with (
        quic.listen("127.0.0.1", 0, bob) as listener,
        quic.dial("127.0.0.1", listener.port, expected_peer_id=bob.peer_id, identity=alice) as carrier,
    ):
        await carrier.send_record(b"x")
        with trio.fail_after(5):
            server = await listener.accept()
            assert await server.receive_record() == b"x"
        for side in (carrier, server):
            assert type(side._conn.quic._loss._pacer) is quic_pacer.BurstPacer


def test_install_leaves_an_unknown_pacer_alone() -> None:
    class Other:
        _pacer = object()

    class Connection:
        _loss = Other()

    connection = Connection()
    assert quic_pacer.install(connection) is False  # type: ignore[arg-type]
    assert type(connection._loss._pacer) is object
