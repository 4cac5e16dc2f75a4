"""The pure GSO helpers: how a batch is grouped into runs, and how a GRO buffer is cut back."""

from __future__ import annotations

import itertools
import struct

import pytest

from p2pos.transports.gso import (
    MAX_BATCH_BYTES,
    MAX_SEGMENTS,
    SOL_UDP,
    UDP_GRO,
    UDP_SEGMENT,
    Run,
    gro_segment_size,
    plan_runs,
    segment_cmsg,
    split_segments,
)


def spans(sizes: list[int]) -> list[tuple[int, int, int]]:
    return [(run.start, run.stop, run.segment) for run in plan_runs(sizes)]


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ([], []),
        ([1200], [(0, 1, 1200)]),
        ([1200, 1200, 1200], [(0, 3, 1200)]),
        # a shorter datagram closes the run (only the last segment may be shorter)
        ([1200, 1200, 500, 1200], [(0, 3, 1200), (3, 4, 1200)]),
        # a longer one starts a new run
        ([500, 1200, 1200], [(0, 1, 500), (1, 3, 1200)]),
        # a lone larger datagram (a PMTU probe ahead of data) goes alone, not with the next one
        ([1472, 1194, 1194], [(0, 1, 1472), (1, 3, 1194)]),
        ([1472, 1194], [(0, 1, 1472), (1, 2, 1194)]),
        ([100, 100, 50, 50, 50, 10], [(0, 3, 100), (3, 6, 50)]),
        # empty datagrams go alone
        ([100, 0, 100], [(0, 1, 100), (1, 2, 0), (2, 3, 100)]),
        ([0, 0], [(0, 1, 0), (1, 2, 0)]),
        # too big for one call: alone (the plain send fails, or succeeds, on its own)
        ([70000, 100, 100], [(0, 1, 70000), (1, 3, 100)]),
    ],
)
def test_runs_keep_order_and_gso_shape(sizes: list[int], expected: list[tuple[int, int, int]]) -> None:
    assert spans(sizes) == expected


def test_a_run_stops_at_the_segment_cap() -> None:
    runs = plan_runs([10] * (MAX_SEGMENTS * 2 + 1))
    assert [run.count for run in runs] == [MAX_SEGMENTS, MAX_SEGMENTS, 1]


def test_a_run_stops_before_the_byte_cap() -> None:
    per_call = MAX_BATCH_BYTES // 1400
    runs = plan_runs([1400] * 2 * per_call + [1400] * 3)
    assert [run.count for run in runs] == [per_call, per_call, 3]
    assert all(run.count * 1400 <= MAX_BATCH_BYTES for run in runs)
    # a short last datagram that would overflow the call waits for the next one
    tail = MAX_BATCH_BYTES - per_call * 1400 + 1
    assert spans([1400] * per_call + [tail]) == [(0, per_call, 1400), (per_call, per_call + 1, tail)]
    assert spans([1400] * per_call + [tail - 1]) == [(0, per_call + 1, 1400)]


def test_runs_cover_every_datagram_once_in_order() -> None:
    sizes = [(i * 37) % 5 * 300 for i in range(500)]
    runs = plan_runs(sizes)
    assert runs[0].start == 0 and runs[-1].stop == len(sizes)
    for before, after in itertools.pairwise(runs):
        assert before.stop == after.start
    for run in runs:
        body = sizes[run.start : run.stop]
        assert all(size == run.segment for size in body[:-1])
        assert 0 < body[-1] <= run.segment or run.count == 1
        assert run.count <= MAX_SEGMENTS


def test_segment_cmsg_is_a_native_uint16() -> None:
    assert segment_cmsg(1252) == (SOL_UDP, UDP_SEGMENT, struct.pack("=H", 1252))
    assert (SOL_UDP, UDP_SEGMENT) == (17, 103)


def test_gro_segment_size_reads_the_int_cmsg() -> None:
    assert gro_segment_size([(SOL_UDP, UDP_GRO, struct.pack("=i", 1000))]) == 1000
    assert gro_segment_size([]) is None
    assert gro_segment_size([(0, 8, b"\x00" * 12)]) is None  # someone else's cmsg
    assert gro_segment_size([(SOL_UDP, UDP_GRO, b"\x01")]) is None  # truncated: ignored
    assert UDP_GRO == 104


@pytest.mark.parametrize(
    ("length", "segment", "lengths"),
    [
        (2500, 1000, [1000, 1000, 500]),
        (3000, 1000, [1000, 1000, 1000]),
        (999, 1000, [999]),
        (1000, None, [1000]),
        (0, None, [0]),
    ],
)
def test_split_segments(length: int, segment: int | None, lengths: list[int]) -> None:
    data = bytes(i % 251 for i in range(length))
    parts = split_segments(data, segment)
    assert [len(part) for part in parts] == lengths
    assert b"".join(parts) == data


def test_run_count() -> None:
    assert Run(start=3, stop=7, segment=10).count == 4
