"""aioquic's packet pacer, with bursts that never shrink to a packet or two.

aioquic (``QuicPacketPacer.update_rate``) floors the time between two packets at 1 us, but sizes
its burst, ``bucket_max``, from the pacing rate alone: once window / RTT is above about 1.25 GB/s
(a loopback or LAN carrier whose smoothed RTT has fallen near 1 ms while its window grew) the burst
holds about one packet time, so the connection stops after every packet or two and the driver wakes
again a microsecond later. That state feeds itself (each datagram costs more, the peer keeps up, the
RTT stays low and the rate high): a daemon's QUIC carrier then moved 19-23 MB/s at twice the CPU per
byte, against 35-41 MB/s, in about one run of four of ``bench/carriers.py`` (A's QUIC driver woke
28,000 times for 65,000 datagrams instead of 3,500 times for 70,000).

``BurstPacer`` keeps aioquic's rate and aioquic's burst in packets (a quarter of the window, at
least 2 and at most 16 datagrams), and only measures the burst in the floored packet time, so it
still holds those packets above 1.25 GB/s; below, nothing changes. ``install`` puts it into a
connection; the driver's connections get it (``quic.py``). An aioquic without these internals keeps
its own pacer.
"""

from __future__ import annotations

from typing import Final

from aioquic.quic.connection import QuicConnection
from aioquic.quic.recovery import QuicPacketPacer

#: aioquic's burst: a quarter of the window, at least this few and at most this many datagrams.
BURST_MIN_PACKETS: Final = 2
BURST_MAX_PACKETS: Final = 16


class BurstPacer(QuicPacketPacer):
    def update_rate(self, congestion_window: int, smoothed_rtt: float) -> None:
        super().update_rate(congestion_window, smoothed_rtt)
        if self.packet_time is not None:
            size = self._max_datagram_size
            burst = max(BURST_MIN_PACKETS * size, min(congestion_window // 4, BURST_MAX_PACKETS * size))
            self.bucket_max = max(self.bucket_max, burst / size * self.packet_time)


def install(quic: QuicConnection) -> bool:
    """Give ``quic`` a ``BurstPacer`` in place of aioquic's; False (nothing changed) if this aioquic
    keeps its pacer elsewhere."""
    loss = getattr(quic, "_loss", None)
    pacer = getattr(loss, "_pacer", None)
    if type(pacer) is not QuicPacketPacer:
        return False
    size = getattr(pacer, "_max_datagram_size", None)
    if not isinstance(size, int):
        return False
    loss._pacer = BurstPacer(max_datagram_size=size)  # type: ignore[union-attr]
    return True
