"""Packets too old for the replay window are lost (spec/recovery.md §4.5, REC-4.5.1, REC-4.5.2).

One packet-number space over every path (spec/paths.md §2) means a packet left
outstanding on a slow path can fall out of the receiver's replay window
(record.md §5) while newer ones flow; the sender declares it lost, without
a congestion response, and sends its data again.
"""

from __future__ import annotations

from chan_helpers import Pair, payload

from p2pos.proto.recovery.recovery import TOO_OLD, LossRecovery
from p2pos.proto.session.replay import WINDOW
from p2pos.proto.simulation.link import LinkConfig


def test_the_bound_is_the_replay_window() -> None:
    assert TOO_OLD == WINDOW == 8128


def test_loss_recovery_declares_packets_8128_below_the_next_number_lost() -> None:
    """REC-4.5.1 on ``LossRecovery`` alone: exactly the packets at least 8128 below ``next_pn``."""
    rec2: LossRecovery[str] = LossRecovery()
    for pn in (0, 1, 5, 9000):
        rec2.on_packet_sent(pn, 0.0, 1200, ack_eliciting=True, in_flight=True, payload=f"p{pn}")
    assert rec2.declare_too_old(8127) == []  # nothing is 8128 below 8127
    assert [p.pn for p in rec2.declare_too_old(8128)] == [0]
    lost = rec2.declare_too_old(8129)  # 1 is now; 5 is not
    assert [p.pn for p in lost] == [1]
    assert all(p.lost for p in lost)
    assert rec2.bytes_in_flight == 2 * 1200 and rec2.outstanding_count == 2
    assert [p.pn for p in rec2.declare_too_old(9001 + TOO_OLD)] == [5, 9000]
    assert rec2.bytes_in_flight == 0 and rec2.get_loss_detection_timer() is None
    # An acknowledged packet is not declared lost again.
    rec3: LossRecovery[str] = LossRecovery()
    rec3.on_packet_sent(0, 0.0, 1200, ack_eliciting=True, in_flight=True, payload="p0")
    rec3.on_packet_sent(1, 0.0, 1200, ack_eliciting=True, in_flight=True, payload="p1")
    rec3.on_ack_received([(0, 0)], 0.0, 0.1)
    assert [p.pn for p in rec3.declare_too_old(10_000)] == [1]


def test_a_connection_resends_a_too_old_packet_at_once_without_a_congestion_response() -> None:
    """REC-4.5.1/4.5.2 in the connection: the data of a packet 8128 records behind goes again in the next
    packet, before any probe timeout, and the congestion window does not shrink."""
    pair = Pair(LinkConfig(delay=0.01), seed=3)
    pair.connect()
    a = pair.a.c
    channel_id = a.open_channel("files", pair.now)
    pair.run(pair.now + 0.5)
    data = payload(500)
    a.send(channel_id, data, pair.now)
    first = a.data_to_send(pair.now)  # the packet with the 500 bytes: "lost" (never delivered)
    assert len(first) == 1
    lost_pn = a.recovery.largest_sent
    cwnd = a.cc.congestion_window
    # 8128 records with other counters (KEEPALIVE records: untracked numbers) move the counter on.
    for _ in range(TOO_OLD - 1):
        a.session.send_keepalive(pair.now)
    a.session.data_to_send(pair.now)
    assert a.session.next_counter - lost_pn == TOO_OLD
    a.send(channel_id, b"", pair.now)
    again = a.data_to_send(pair.now)
    assert a.too_old_packets == 1 and a.lost_packets == 0
    assert a.cc.congestion_window == cwnd  # no congestion response
    assert len(again) == 1 and a.recovery.largest_sent > lost_pn
    # Delivered, the retransmission carries the 500 bytes: b reads them.
    for datagram in again:
        pair.b.receive_data(datagram, pair.now)
    assert bytes(pair.b.received[channel_id]) == data
