"""Linux UDP segmentation offload: GSO on send, GRO on receive (pure helpers, no await).

GSO (``UDP_SEGMENT``, Linux 4.18) lets one ``sendmsg`` carry many datagrams: the
buffer is cut into segments of one size (the last may be shorter) and each segment
leaves as its own UDP datagram, to one address.  GRO (``UDP_GRO``, Linux 5.0) is the
mirror image: one ``recvmsg`` may return several datagrams of one flow glued
together, with a control message giving the segment size to cut them apart by.

Python's ``socket`` module has no names for either option, so the numbers from
``include/uapi/linux/udp.h`` are spelled out here.  The transport uses this module
in three steps:

1. at bind time, ``enable_gso(sock)`` / ``enable_gro(sock)`` say whether the kernel
   knows the options;
2. before sending, ``plan_runs(sizes)`` groups a batch into runs one call may carry,
   and ``segment_cmsg(size)`` is the ancillary data of each multi-datagram run;
3. after receiving, ``gro_segment_size(ancdata)`` and ``split_segments(data, size)``
   give back the datagram boundaries.
"""

from __future__ import annotations

import errno
import socket as _socket
import struct
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: ``SOL_UDP`` (= ``IPPROTO_UDP``): the level of both options and of their control messages.
SOL_UDP = 17
#: ``UDP_SEGMENT`` (103): socket option (a default segment size, 0 = off) and cmsg type (a native uint16).
UDP_SEGMENT = 103
#: ``UDP_GRO`` (104): socket option (int 1 = coalesce) and cmsg type (a native int, the segment size).
UDP_GRO = 104

#: Segments per call.  The kernel's ``UDP_MAX_SEGMENTS`` was 64 (4.18) and is 128 since 5.16;
#: 64 works on every kernel that has GSO at all.
MAX_SEGMENTS = 64
#: Bytes per call.  One GSO buffer is one UDP datagram to the stack before it is cut, so it
#: must fit the 16-bit length fields (65507 for IPv4); 65000 leaves room on both families.
MAX_BATCH_BYTES = 65000

#: What a GSO ``sendmsg`` raises when the offload (not the datagram) is the problem: EIO when
#: the outgoing device cannot checksum segments, EINVAL / EOPNOTSUPP / ENOPROTOOPT when the
#: kernel or the route rejects segmentation.  The transport retries such a run one datagram
#: per call to find out which it was.
GSO_REFUSALS = frozenset({errno.EIO, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOPROTOOPT})

#: Ancillary buffer for one ``UDP_GRO`` control message (an int).
GRO_ANCBUFSIZE = _socket.CMSG_SPACE(4)

#: Only Linux gives options 103/104 this meaning; elsewhere the numbers may name other options.
LINUX = sys.platform.startswith("linux")

_U16 = struct.Struct("=H")
_INT = struct.Struct("=i")


def enable_gso(sock: _socket.socket) -> bool:
    """True if the kernel accepts ``UDP_SEGMENT`` on ``sock``.

    The option is set to 0 (no default segment size): each ``sendmsg`` then asks for
    segmentation with its own control message (``segment_cmsg``).  A kernel without GSO
    answers ENOPROTOOPT; the transport then sends one datagram per call.
    """
    if not LINUX:
        return False
    try:
        sock.setsockopt(SOL_UDP, UDP_SEGMENT, 0)
    except OSError:
        return False
    return True


def enable_gro(sock: _socket.socket) -> bool:
    """True if ``UDP_GRO`` is now on for ``sock``: from now on every ``recvmsg`` must be
    given ``GRO_ANCBUFSIZE`` of ancillary space and its result split with ``split_segments``."""
    if not LINUX:
        return False
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
    except OSError:
        return False
    return True


def segment_cmsg(size: int) -> tuple[int, int, bytes]:
    """The control message that makes one ``sendmsg`` leave as segments of ``size`` bytes."""
    return (SOL_UDP, UDP_SEGMENT, _U16.pack(size))


def gro_segment_size(ancdata: Iterable[tuple[int, int, bytes]]) -> int | None:
    """The segment size the kernel reported with a received buffer, or None if it is one datagram."""
    for level, kind, value in ancdata:
        if level == SOL_UDP and kind == UDP_GRO and len(value) >= _INT.size:
            size: int = _INT.unpack_from(value)[0]
            return size if size > 0 else None
    return None


def split_segments(data: bytes, size: int | None) -> list[bytes]:
    """``data`` cut into datagrams of ``size`` bytes (the last may be shorter).

    ``size`` None (no ``UDP_GRO`` control message) or at least ``len(data)`` means one datagram.
    """
    if size is None or size >= len(data):
        return [data]
    return [data[start : start + size] for start in range(0, len(data), size)]


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """Datagrams ``start`` to ``stop - 1`` of a batch, sendable in one call.

    ``segment`` is the size of every datagram of the run but the last (which may be
    shorter); a run of one datagram has ``segment`` equal to its length and needs no
    control message.
    """

    start: int
    stop: int
    segment: int

    @property
    def count(self) -> int:
        return self.stop - self.start


def plan_runs(sizes: Sequence[int], *, max_segments: int = MAX_SEGMENTS, max_bytes: int = MAX_BATCH_BYTES) -> list[Run]:
    """Group a batch (datagram sizes, in sending order) into GSO runs, order kept.

    A run continues while the next datagram has the run's size, and ends after the first
    shorter one (GSO's rule: only the last segment may be shorter), after ``max_segments``,
    or before ``max_bytes`` would be exceeded.  An empty datagram or one larger than
    ``max_bytes`` is a run of its own: it goes out (or fails) alone with a plain send.

    A lone datagram larger than the one after it (a path-MTU probe ahead of data) is a run of
    its own too: on a path narrower than the probe a router drops a GSO packet whole, so a
    shorter datagram sharing its send would be lost with it (tests/transports/test_pmtu_netns.py).
    """
    runs: list[Run] = []
    i, n = 0, len(sizes)
    while i < n:
        segment = sizes[i]
        stop, total = i + 1, segment
        if 0 < segment <= max_bytes:
            while stop < n and stop - i < max_segments:
                size = sizes[stop]
                if size <= 0 or size > segment or total + size > max_bytes:
                    break
                stop += 1
                total += size
                if size < segment:
                    if stop - i == 2:  # [large, shorter]: the large one goes alone
                        stop -= 1
                        total -= size
                    break
        runs.append(Run(start=i, stop=stop, segment=segment))
        i = stop
    return runs
