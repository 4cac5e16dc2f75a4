"""The seeded link emulator (p2pos_proto/simulation/link.py) and its PRNG (p2pos_proto/simulation/prng.py).

Statistical checks use a fixed seed, so they are deterministic; their tolerances are
still chosen as if the seed were random (about 5 standard deviations of the count), so
a correct emulator would pass for any seed, while a rate off by a couple of percentage
points fails.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import pytest

from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.simulation.link import LinkConfig, LinkEmulator, TraceEntry, run_until
from p2pos.proto.simulation.prng import Prng

# -- helpers ------------------------------------------------------------------------------


def packet(i: int, size: int = 100) -> bytes:
    """A datagram that carries its own sequence number in its first 4 bytes."""
    return i.to_bytes(4, "big") + bytes(size - 4)


def number(data: bytes) -> int:
    return int.from_bytes(data[:4], "big")


def pump(
    link: LinkEmulator[str], count: int, interval: float = 0.001, size: int = 100, src: str = "a"
) -> list[tuple[float, int, bytes]]:
    """Send ``count`` numbered datagrams ``interval`` apart and collect (arrival, number, data)."""
    got: list[tuple[float, int, bytes]] = []

    def drain_until(t: float) -> None:
        while (nxt := link.next_delivery_time()) is not None and nxt <= t:
            got.extend((nxt, number(data), data) for _, data in link.deliver(nxt))

    for i in range(count):
        now = i * interval
        drain_until(now)
        link.send(src, packet(i, size), now)
    drain_until(math.inf)
    return got


def binomial_tolerance(n: int, p: float, sigmas: float = 5.0) -> float:
    return sigmas * math.sqrt(n * p * (1 - p))


def loss_runs(lost: list[bool]) -> list[int]:
    """Lengths of the runs of consecutive losses."""
    runs: list[int] = []
    current = 0
    for flag in lost:
        if flag:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    if current:
        runs.append(current)
    return runs


# -- PRNG -------------------------------------------------------------------------------------


def test_xoshiro_reference_outputs() -> None:
    """State {1, 2, 3, 4}: the outputs of the reference xoshiro256starstar.c (as in rand_xoshiro's tests)."""
    rng = Prng(0)
    rng._s0, rng._s1, rng._s2, rng._s3 = 1, 2, 3, 4
    assert [rng.next64() for _ in range(10)] == [
        11520,
        0,
        1509978240,
        1215971899390074240,
        1216172134540287360,
        607988272756665600,
        16172922978634559625,
        8476171486693032832,
        10595114339597558777,
        2904607092377533576,
    ]


def test_splitmix64_reference_outputs() -> None:
    """splitmix64 from seed 1234567: the values of Vigna's splitmix64.c test."""
    from p2pos.proto.simulation.prng import _splitmix64

    state = 1234567
    outputs = []
    for _ in range(5):
        state, out = _splitmix64(state)
        outputs.append(out)
    assert outputs == [
        6457827717110365317,
        3203168211198807973,
        9817491932198370423,
        4593380528125082431,
        16408922859458223821,
    ]


def test_prng_is_deterministic_and_seed_sensitive() -> None:
    assert [Prng(5).next64() for _ in range(3)] == [Prng(5).next64() for _ in range(3)]
    a, b = Prng(5), Prng(5)
    assert [a.random() for _ in range(100)] == [b.random() for _ in range(100)]
    assert Prng(5).next64() != Prng(6).next64()
    assert Prng(b"seed")(32) == Prng(b"seed")(32) != Prng(b"seed!")(32)
    assert Prng(5).next64() != Prng(b"\x00" * 7 + b"\x05").next64()  # int and bytes seeds are distinct kinds


def test_prng_derive_depends_on_seed_and_label_only() -> None:
    rng = Prng(9)
    first = rng.derive(b"x").next64()
    for _ in range(50):
        rng.next64()
    assert rng.derive(b"x").next64() == first
    assert rng.derive(b"y").next64() != first
    assert Prng(10).derive(b"x").next64() != first


def test_prng_helpers_stay_in_range_and_cover_it() -> None:
    rng = Prng(1)
    floats = [rng.random() for _ in range(10000)]
    assert all(0.0 <= x < 1.0 for x in floats)
    assert abs(sum(floats) / len(floats) - 0.5) < 0.02  # sd of the mean is 0.0029
    ints = [rng.randint(-2, 3) for _ in range(6000)]
    assert set(ints) == {-2, -1, 0, 1, 2, 3}
    assert all(abs(ints.count(v) - 1000) < 5 * math.sqrt(6000 / 6 * 5 / 6) for v in range(-2, 4))
    assert {rng.choice("xyz") for _ in range(100)} == {"x", "y", "z"}
    assert all(2.0 <= rng.uniform(2.0, 3.0) < 3.0 for _ in range(100))
    assert rng.randint(7, 7) == 7
    assert rng.getrandbits(0) == 0
    assert all(0 <= rng.getrandbits(100) < 1 << 100 for _ in range(100))
    assert len(rng(0)) == 0
    assert len(rng(33)) == 33
    picks = rng.sample_indices(20, 20)
    assert sorted(picks) == list(range(20))
    assert len(set(rng.sample_indices(1000, 10))) == 10


@pytest.mark.parametrize("seed", [-1, 1 << 64, 1.5, "text", True, None])
def test_prng_rejects_bad_seeds(seed: object) -> None:
    with pytest.raises(LocalProtocolError):
        Prng(seed)  # type: ignore[arg-type]


def test_prng_rejects_bad_arguments() -> None:
    rng = Prng(0)
    for call in (
        lambda: rng.randbelow(0),
        lambda: rng.randint(3, 2),
        lambda: rng.choice([]),
        lambda: rng.getrandbits(-1),
        lambda: rng.sample_indices(3, 4),
        lambda: rng(-1),
    ):
        with pytest.raises(LocalProtocolError):
            call()


# -- determinism ------------------------------------------------------------------------------

NOISY = LinkConfig(
    delay=0.02,
    jitter=0.01,
    loss=0.05,
    p_good_to_bad=0.01,
    p_bad_to_good=0.3,
    reorder=0.05,
    duplicate=0.03,
    corrupt=0.03,
    corrupt_max_bits=3,
    bandwidth=200_000,
    queue_bytes=5000,
)


def noisy_trace(seed: int) -> tuple[list[tuple[float, int, bytes]], list[TraceEntry[str]]]:
    link = LinkEmulator(seed, NOISY, trace=True)
    got = pump(link, 3000, interval=0.0004)
    assert link.trace is not None
    return got, link.trace


def test_same_seed_same_trace_bit_for_bit() -> None:
    first, trace1 = noisy_trace(11)
    second, trace2 = noisy_trace(11)
    assert first == second
    assert trace1 == trace2
    kinds = {entry.kind for entry in trace1}
    assert kinds == {"send", "lost", "reorder", "duplicate", "corrupt", "deliver"}
    assert {e.note for e in trace1 if e.kind == "lost"} == {"queue", "burst", "random"}


def test_different_seed_different_trace() -> None:
    assert noisy_trace(11)[0] != noisy_trace(12)[0]


def test_directions_draw_from_independent_streams() -> None:
    """Traffic b -> a does not change the fate of a -> b datagrams."""
    config = LinkConfig(loss=0.3, jitter=0.01, corrupt=0.1)
    alone = LinkEmulator(3, config)
    busy = LinkEmulator(3, config)
    got_alone: list[tuple[float, str, bytes]] = []
    got_busy: list[tuple[float, str, bytes]] = []
    for i in range(500):
        now = i * 0.001
        got_alone += drain(alone, now)
        got_busy += drain(busy, now)
        alone.send("a", packet(i), now)
        busy.send("b", packet(i), now)
        busy.send("a", packet(i), now)
        busy.send("b", packet(i), now)
    got_alone += drain(alone, math.inf)
    got_busy += drain(busy, math.inf)
    assert len(got_alone) < 400  # losses did happen
    assert got_alone == [entry for entry in got_busy if entry[1] == "b"]
    assert len(got_busy) > 2 * len(got_alone)


def drain(link: LinkEmulator[str], until: float) -> list[tuple[float, str, bytes]]:
    """Every delivery up to ``until`` as (arrival time, destination, data)."""
    out: list[tuple[float, str, bytes]] = []
    while (t := link.next_delivery_time()) is not None and t <= until:
        out.extend((t, dst, data) for dst, data in link.deliver(t))
    return out


# -- delay ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("delay", "jitter"), [(0.001, 0.0), (0.05, 0.02), (0.7, 0.05), (0.75, 0.0)])
@pytest.mark.parametrize("interval", [0.0005, 0.1])
def test_delay_within_bounds_and_jitter_keeps_order(delay: float, jitter: float, interval: float) -> None:
    link = LinkEmulator(4, LinkConfig(delay=delay, jitter=jitter))
    got = pump(link, 2000, interval=interval)
    assert [n for _, n, _ in got] == list(range(2000))
    transit = [t - n * interval for t, n, _ in got]
    assert min(transit) >= delay - 1e-9
    assert max(transit) <= delay + jitter + 1e-9
    if jitter and interval > jitter:
        # Sparse traffic: nothing to keep in order, so the jitter is uniform over its whole range.
        assert max(transit) - min(transit) > 0.99 * jitter
        assert abs(sum(transit) / len(transit) - (delay + jitter / 2)) < 0.02 * jitter  # sd of mean: 0.0065 jitter


def test_each_direction_has_its_own_delay() -> None:
    link = LinkEmulator(0, LinkConfig(delay=0.01), LinkConfig(delay=0.3))
    link.send("a", b"ab", 1.0)
    link.send("b", b"ba", 1.0)
    assert link.next_delivery_time() == pytest.approx(1.01)
    assert link.deliver(1.01) == [("b", b"ab")]
    assert link.deliver(1.2) == []
    assert link.next_delivery_time() == pytest.approx(1.3)
    assert link.deliver(5.0) == [("a", b"ba")]
    assert link.next_delivery_time() is None


def test_deliver_returns_everything_due_in_order() -> None:
    link = LinkEmulator(0, LinkConfig(delay=0.1))
    for i in range(5):
        link.send("a", packet(i), i * 0.01)
    assert link.in_flight() == 5
    assert [number(d) for _, d in link.deliver(0.125)] == [0, 1, 2]
    assert [number(d) for _, d in link.deliver(1.0)] == [3, 4]
    stats = link.stats("a")
    assert (stats.sent, stats.delivered, stats.lost) == (5, 5, 0)
    assert stats.sent_bytes == stats.delivered_bytes == 500


# -- loss -------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.01, 0.1, 0.3])
def test_random_loss_rate_close_to_configured(rate: float) -> None:
    n = 20000
    link = LinkEmulator(21, LinkConfig(loss=rate))
    got = pump(link, n, interval=0.0001)
    lost = n - len(got)
    assert link.stats("a").lost_random == lost
    assert abs(lost - n * rate) < binomial_tolerance(n, rate)


def test_burst_loss_gives_longer_runs_than_independent_loss_at_same_average() -> None:
    n = 40000
    bursty = LinkConfig(p_good_to_bad=0.01, p_bad_to_good=0.25, bad_loss=1.0)
    mean = bursty.mean_loss  # 0.01 / 0.26 = 3.85 %
    assert mean == pytest.approx(0.01 / 0.26)
    results = {}
    for name, config in (("burst", bursty), ("random", LinkConfig(loss=mean))):
        link = LinkEmulator(5, config)
        arrived = {n for _, n, _ in pump(link, n, interval=0.0001)}
        lost = [i not in arrived for i in range(n)]
        runs = loss_runs(lost)
        results[name] = (sum(lost), sum(runs) / len(runs), max(runs))
    burst_lost, burst_mean_run, burst_max_run = results["burst"]
    random_lost, random_mean_run, random_max_run = results["random"]
    # Same average loss (1540 datagrams).  Independent: binomial, sd 38.  Bursty: ~385 bursts of
    # geometric length (mean 4, variance 12), sd ~ sqrt(385 * (12 + 16)) = 104; 35 % is 5 sd.
    assert abs(random_lost - n * mean) < binomial_tolerance(n, mean)
    assert abs(burst_lost - n * mean) < 0.35 * n * mean
    # Runs: geometric with mean 1/p_bad_to_good = 4 (sd of the mean of ~385 runs: 0.18), against
    # 1/(1 - 0.0385) = 1.04 for independent loss.
    assert 3.1 < burst_mean_run < 4.9
    assert random_mean_run < 1.1
    assert burst_max_run > 3 * random_max_run


def test_bad_state_partial_loss() -> None:
    config = LinkConfig(p_good_to_bad=0.05, p_bad_to_good=0.05, bad_loss=0.5)
    assert config.mean_loss == pytest.approx(0.25)
    link = LinkEmulator(8, config)
    n = 50000
    got = pump(link, n, interval=0.0001)
    assert link.stats("a").lost_burst == n - len(got)
    # Time in BAD of a two-state chain with eigenvalue 1 - p - r = 0.9: variance of its share
    # 0.25 * (1 + 0.9) / (1 - 0.9) / n, sd 0.0097; 0.05 is 5 sd.
    assert abs((n - len(got)) / n - 0.25) < 0.05


def test_mean_loss_combines_burst_and_random() -> None:
    config = LinkConfig(loss=0.1, p_good_to_bad=0.1, p_bad_to_good=0.3, bad_loss=0.4)
    burst = 0.25 * 0.4
    assert config.mean_loss == pytest.approx(burst + (1 - burst) * 0.1)
    assert LinkConfig().mean_loss == 0.0


# -- reordering, duplication, corruption ----------------------------------------------------------


def test_reordering_at_configured_probability() -> None:
    n, p = 20000, 0.05
    link = LinkEmulator(13, LinkConfig(reorder=p, reorder_delay=0.02, jitter=0.005))
    got = pump(link, n, interval=0.001)
    assert sorted(num for _, num, _ in got) == list(range(n))  # nothing lost, nothing invented
    late = 0
    highest = -1
    for _, num, _ in got:
        if num < highest:
            late += 1
        highest = max(highest, num)
    # A held-back datagram waits 20 ms while the next 20 overtake it: every one of them arrives late.
    assert late == link.stats("a").reordered
    assert abs(late - n * p) < binomial_tolerance(n, p)


def test_no_reordering_without_reorder() -> None:
    link = LinkEmulator(13, LinkConfig(jitter=0.1, delay=0.2))
    assert [num for _, num, _ in pump(link, 3000, interval=0.0001)] == list(range(3000))


def test_duplication_at_configured_probability() -> None:
    n, p = 20000, 0.1
    link = LinkEmulator(17, LinkConfig(duplicate=p))
    got = pump(link, n, interval=0.0001)
    counts: dict[int, int] = {}
    for _, num, _ in got:
        counts[num] = counts.get(num, 0) + 1
    assert set(counts) == set(range(n))
    assert set(counts.values()) == {1, 2}
    dupes = sum(c == 2 for c in counts.values())
    assert dupes == link.stats("a").duplicated
    assert link.stats("a").delivered == n + dupes
    assert abs(dupes - n * p) < binomial_tolerance(n, p)
    # A copy arrives right after its original.
    for (t1, n1, d1), (t2, n2, d2) in itertools.pairwise(got):
        if n1 == n2:
            assert (t1, d1) == (t2, d2)


def delivered_packets(link: LinkEmulator[str]) -> list[int]:
    """Packet numbers in delivery order, from the trace (the data's own number may be corrupted)."""
    assert link.trace is not None
    return [e.packet for e in link.trace if e.kind == "deliver"]


def test_corruption_flips_exactly_the_traced_bits() -> None:
    n, p = 5000, 0.2
    link = LinkEmulator(19, LinkConfig(corrupt=p, corrupt_max_bits=4), trace=True)
    got = pump(link, n, interval=0.0001, size=64)
    assert link.trace is not None
    flips = {e.packet: e.bits for e in link.trace if e.kind == "corrupt"}
    assert len(flips) == link.stats("a").corrupted
    assert abs(len(flips) - n * p) < binomial_tolerance(n, p)
    seen_widths = set()
    assert delivered_packets(link) == list(range(n))
    for num, (_, _, data) in enumerate(got):
        original = packet(num, 64)
        diff = int.from_bytes(bytes(x ^ y for x, y in zip(data, original, strict=True)), "little")
        if num not in flips:
            assert diff == 0
            continue
        bits = flips[num]
        assert 1 <= len(bits) <= 4
        assert len(set(bits)) == len(bits)
        seen_widths.add(len(bits))
        # bit p is 1 << (p % 8) of byte p // 8, i.e. bit p of the little-endian integer.
        assert diff == sum(1 << b for b in bits)
    assert seen_widths == {1, 2, 3, 4}


def test_corruption_of_a_duplicate_is_drawn_separately() -> None:
    link = LinkEmulator(23, LinkConfig(duplicate=1.0, corrupt=0.5), trace=True)
    got = pump(link, 2000, interval=0.0001)
    pairs: dict[int, list[bytes]] = {}
    for num, (_, _, data) in zip(delivered_packets(link), got, strict=True):
        pairs.setdefault(num, []).append(data)
    assert len(pairs) == 2000
    assert all(len(copies) == 2 for copies in pairs.values())
    assert any(a != b for a, b in pairs.values())
    assert any(a == b for a, b in pairs.values())


def test_empty_datagram_is_never_corrupted() -> None:
    link = LinkEmulator(0, LinkConfig(corrupt=1.0))
    link.send("a", b"", 0.0)
    assert link.deliver(1.0) == [("b", b"")]
    assert link.stats("a").corrupted == 0


# -- bandwidth, queue, MTU ----------------------------------------------------------------------


def test_serialisation_delay_of_one_datagram() -> None:
    link = LinkEmulator(0, LinkConfig(delay=0.01, bandwidth=100_000, overhead=28))
    link.send("a", bytes(972), 1.0)
    assert link.next_delivery_time() == pytest.approx(1.0 + 1000 / 100_000 + 0.01)


def test_queue_drops_when_full() -> None:
    link = LinkEmulator(0, LinkConfig(delay=0.01, bandwidth=100_000, queue_bytes=3000, mtu=1000))
    for i in range(10):
        link.send("a", packet(i, 1000), 0.0)
    assert link.stats("a").lost_queue == 7
    # At 15 ms the first datagram has been serialised (10 ms): room for exactly one more.
    link.send("a", packet(10, 1000), 0.015)
    assert link.stats("a").lost_queue == 7
    link.send("a", packet(11, 1000), 0.015)
    assert link.stats("a").lost_queue == 8
    got = drain(link, math.inf)
    assert [number(d) for _, _, d in got] == [0, 1, 2, 10]
    # Back to back at 10 ms per datagram, plus 10 ms of propagation.
    assert [t for t, _, _ in got] == pytest.approx([0.02, 0.03, 0.04, 0.05])


def test_throughput_approaches_bandwidth_under_overload() -> None:
    rate = 125_000.0  # 1 Mbit/s
    link = LinkEmulator(0, LinkConfig(delay=0.05, bandwidth=rate, queue_bytes=12_000))
    duration = 10.0
    got = pump(link, int(duration / 0.004), interval=0.004, size=1000)  # offered: 250 kB/s, twice the rate
    stats = link.stats("a")
    assert stats.lost_queue > 0
    assert stats.delivered + stats.lost_queue == stats.sent
    first, last = got[0][0], got[-1][0]
    throughput = (stats.delivered_bytes - 1000) / (last - first)
    assert throughput == pytest.approx(rate, rel=1e-6)  # the queue never empties: the link is always busy
    assert stats.delivered_bytes >= rate * duration - 12_000 - 1000


def test_queue_delay_is_bounded_by_queue_size() -> None:
    rate = 100_000.0
    link = LinkEmulator(0, LinkConfig(delay=0.02, bandwidth=rate, queue_bytes=10_000))
    got = pump(link, 3000, interval=0.001, size=500)  # offered 5x the rate
    worst = max(t - n * 0.001 for t, n, _ in got)
    assert worst <= 0.02 + 10_000 / rate + 1e-9
    assert worst > 0.02 + 9_000 / rate  # and the queue does fill


def test_mtu_drop() -> None:
    link = LinkEmulator(0, LinkConfig(mtu=1200))
    link.send("a", bytes(1200), 0.0)
    link.send("a", bytes(1201), 0.0)
    assert [len(d) for _, d in link.deliver(1.0)] == [1200]
    assert link.stats("a").lost_mtu == 1
    assert link.stats("a").lost == 1


# -- blackholes --------------------------------------------------------------------------------


def test_configured_blackhole_windows() -> None:
    windows = ((1.0005, 2.0005), (3.0005, 3.5005))  # no boundary falls on a send or arrival time
    link = LinkEmulator(0, LinkConfig(delay=0.05, blackholes=windows))
    got = pump(link, 4000, interval=0.001)
    arrived = {n for _, n, _ in got}
    sent_at = {n: n * 0.001 for n in range(4000)}

    def doomed(t: float) -> bool:
        # Sent during a window, or in flight (50 ms) when one starts.
        return any(start - 0.05 < t < end for start, end in windows)

    assert {n for n, t in sent_at.items() if not doomed(t)} == arrived
    assert link.stats("a").lost_blackhole == 4000 - len(arrived)


def test_blackhole_started_and_stopped_at_run_time() -> None:
    link = LinkEmulator(0, LinkConfig(delay=0.1))
    link.send("a", b"early", 0.0)
    link.send("a", b"in flight", 0.15)
    link.send("b", b"other way", 0.15)
    assert link.deliver(0.2) == [("b", b"early")]
    link.start_blackhole(0.2, "a")
    link.start_blackhole(0.21, "a")  # already active: no-op
    link.send("a", b"during", 0.3)
    link.send("b", b"reverse works", 0.3)
    link.stop_blackhole(0.4, "a")
    link.send("a", b"after", 0.4)
    assert link.deliver(1.0) == [("a", b"other way"), ("a", b"reverse works"), ("b", b"after")]
    assert link.stats("a").lost_blackhole == 2
    assert link.stats("b").lost_blackhole == 0


def test_blackhole_both_directions_and_queue_reset() -> None:
    link = LinkEmulator(0, LinkConfig(delay=0.01, bandwidth=10_000, mtu=1000, queue_bytes=2000))
    link.send("a", bytes(1000), 0.0)
    link.send("a", bytes(1000), 0.0)
    link.send("b", bytes(10), 0.045)
    link.start_blackhole(0.05)
    assert link.in_flight() == 0
    assert link.stats("a").lost_blackhole == 2
    assert link.stats("b").lost_blackhole == 1
    link.stop_blackhole(0.06)
    link.send("a", bytes(1000), 0.06)
    link.send("a", bytes(1000), 0.06)
    assert link.stats("a").lost_queue == 0  # the queue was emptied by the outage
    assert link.next_delivery_time() == pytest.approx(0.06 + 0.1 + 0.01)


# -- configuration and misuse --------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"delay": 0.0},
        {"delay": 0.0009},
        {"delay": 0.751},
        {"delay": math.nan},
        {"delay": True},
        {"delay": "0.1"},
        {"delay": 0.7, "jitter": 0.06},
        {"jitter": -0.001},
        {"loss": -0.1},
        {"loss": 1.5},
        {"loss": math.nan},
        {"p_good_to_bad": 0.1, "p_bad_to_good": 0.0},
        {"bad_loss": 2.0},
        {"reorder": 0.1, "reorder_delay": 0.0},
        {"reorder_delay": 1.0},
        {"duplicate": -1e-9},
        {"corrupt": 1.01},
        {"corrupt_max_bits": 0},
        {"corrupt_max_bits": 1.0},
        {"bandwidth": 0},
        {"bandwidth": -5.0},
        {"bandwidth": math.inf},
        {"bandwidth": math.nan},
        {"mtu": 0},
        {"mtu": 65536},
        {"mtu": 1500, "queue_bytes": 1499},
        {"mtu": 1000, "overhead": 28, "queue_bytes": 1027},
        {"overhead": -1},
        {"blackholes": ((2.0, 1.0),)},
        {"blackholes": ((1.0, 1.0),)},
        {"blackholes": ((math.nan, 1.0),)},
        {"blackholes": ((-math.inf, 1.0),)},
        {"blackholes": ((1.0,),)},
        {"blackholes": (("a", "b"),)},
        {"blackholes": (1.0,)},
    ],
)
def test_bad_config_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        LinkConfig(**kwargs)  # type: ignore[arg-type]


def test_good_configs_accepted_and_normalised() -> None:
    config = LinkConfig(delay=0.7, jitter=0.05, blackholes=((5, 6), (1.0, math.inf)))
    assert config.blackholes == ((1.0, math.inf), (5.0, 6.0))
    LinkConfig(delay=0.001, loss=1.0, p_good_to_bad=1.0, p_bad_to_good=1.0, mtu=65535, queue_bytes=65535)


def test_misuse_rejected() -> None:
    link = LinkEmulator(0)
    with pytest.raises(LocalProtocolError):
        link.send("c", b"x", 0.0)
    link.send("a", b"x", 1.0)
    with pytest.raises(LocalProtocolError):
        link.send("a", b"x", 0.5)  # time went backwards
    with pytest.raises(LocalProtocolError):
        link.deliver(math.nan)
    with pytest.raises(LocalProtocolError):
        LinkEmulator(0, ends=("x", "x"))
    with pytest.raises(LocalProtocolError):
        LinkEmulator(0, "fast")  # type: ignore[call-overload]
    with pytest.raises(LocalProtocolError):
        link.reconfigure("a", "slow", 2.0)  # type: ignore[arg-type]


def test_reconfigure_applies_to_later_datagrams() -> None:
    link = LinkEmulator(0, LinkConfig(delay=0.1))
    link.send("a", b"1", 0.0)
    link.reconfigure("a", LinkConfig(delay=0.01), 0.0)
    link.send("a", b"2", 0.0)
    assert link.config("a").delay == 0.01
    assert link.config("b").delay == 0.1
    # The path stays FIFO: "2" waits for "1", in flight with the old delay; "3" gets the new delay.
    assert [(t, d) for t, _, d in drain(link, 0.5)] == [(0.1, b"1"), (0.1, b"2")]
    link.send("a", b"3", 0.5)
    assert [(t, d) for t, _, d in drain(link, math.inf)] == [(0.51, b"3")]


def test_generic_ends_and_bytearray_input() -> None:
    link = LinkEmulator(0, ends=(("10.0.0.1", 4000), ("10.0.0.2", 5000)))
    link.send(("10.0.0.1", 4000), bytearray(b"hi"), 0.0)
    assert link.deliver(1.0) == [(("10.0.0.2", 5000), b"hi")]


def test_tags_ride_along_and_change_nothing() -> None:
    """``send(..., tag)`` comes back from ``deliver_tagged`` with every copy; the fates are the same."""
    config = LinkConfig(delay=0.01, jitter=0.005, loss=0.2, duplicate=0.2, corrupt=0.2, reorder=0.1)
    tagged, plain = LinkEmulator(5, config, trace=True), LinkEmulator(5, config, trace=True)
    for i in range(300):
        tagged.send("a", packet(i), i * 0.001, tag=("tag", i))
        plain.send("a", packet(i), i * 0.001)
    got = tagged.deliver_tagged(math.inf)
    assert [(dst, data) for dst, data, _ in got] == plain.deliver(math.inf)
    assert tagged.trace is not None and tagged.trace == plain.trace
    # Each copy (duplicated, corrupted or not) carries the tag of the datagram it came from.
    assert [("tag", e.packet) for e in tagged.trace if e.kind == "deliver"] == [tag for _, _, tag in got]
    assert tagged.stats("a").duplicated > 0 and tagged.stats("a").corrupted > 0
    untagged = LinkEmulator(5)
    untagged.send("b", b"x", 1.0)
    assert untagged.deliver_tagged(2.0) == [("a", b"x", None)]


# -- run_until ----------------------------------------------------------------------------------


@dataclass
class Echo:
    """Sends back every datagram it receives."""

    received: list[tuple[float, bytes]] = field(default_factory=list)
    outbox: list[bytes] = field(default_factory=list)

    def receive_data(self, data: bytes, now: float) -> None:
        self.received.append((now, data))
        self.outbox.append(data)

    def data_to_send(self, now: float) -> list[bytes]:
        out, self.outbox = self.outbox, []
        return out

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        raise AssertionError("no timer was set")


@dataclass
class Pinger:
    """Sends a numbered ping every ``interval`` seconds on a timer, ``count`` times; records echoes."""

    interval: float
    count: int
    next_at: float | None = 0.0
    sent: int = 0
    outbox: list[bytes] = field(default_factory=list)
    echoes: list[tuple[float, int]] = field(default_factory=list)
    fired: list[float] = field(default_factory=list)

    def receive_data(self, data: bytes, now: float) -> None:
        self.echoes.append((now, number(data)))

    def data_to_send(self, now: float) -> list[bytes]:
        out, self.outbox = self.outbox, []
        return out

    def get_timer(self) -> float | None:
        return self.next_at

    def handle_timer(self, now: float) -> None:
        self.fired.append(now)
        self.outbox.append(packet(self.sent))
        self.sent += 1
        self.next_at = now + self.interval if self.sent < self.count else None


def test_run_until_moves_an_echo_without_real_time() -> None:
    link = LinkEmulator(0, LinkConfig(delay=0.05))
    pinger, echo = Pinger(interval=0.5, count=4), Echo()
    end = run_until(link, {"a": pinger, "b": echo}, until=100.0)
    assert end == 100.0
    assert pinger.fired == pytest.approx([0.0, 0.5, 1.0, 1.5])
    assert [t for t, _ in echo.received] == pytest.approx([0.05, 0.55, 1.05, 1.55])
    assert [n for _, n in pinger.echoes] == [0, 1, 2, 3]
    assert [t for t, _ in pinger.echoes] == pytest.approx([0.1 + 0.5 * i for i in range(4)])


def test_run_until_stops_on_predicate_and_at_until() -> None:
    link = LinkEmulator(0, LinkConfig(delay=0.05))
    pinger, echo = Pinger(interval=0.5, count=100), Echo()
    end = run_until(link, {"a": pinger, "b": echo}, until=100.0, stop=lambda now: len(pinger.echoes) >= 3)
    assert end == pytest.approx(1.1)
    assert len(pinger.echoes) == 3
    # Resume from where it stopped, up to a time limit that falls between events.
    end = run_until(link, {"a": pinger, "b": echo}, until=2.3, now=end)
    assert end == 2.3
    assert [n for _, n in pinger.echoes] == [0, 1, 2, 3, 4]


def test_run_until_over_a_lossy_link_is_deterministic() -> None:
    def run(seed: int) -> list[tuple[float, int]]:
        link = LinkEmulator(seed, LinkConfig(delay=0.03, jitter=0.02, loss=0.2, reorder=0.1))
        pinger = Pinger(interval=0.001, count=2000)
        run_until(link, {"a": pinger, "b": Echo()}, until=10.0)
        return pinger.echoes

    first = run(1)
    assert first == run(1)
    assert first != run(2)
    assert abs(len(first) - 2000 * 0.64) < binomial_tolerance(2000, 0.64)  # both ways survive: 0.8 * 0.8


def test_run_until_rejects_wrong_peers_and_spinning_timers() -> None:
    link = LinkEmulator(0)
    with pytest.raises(LocalProtocolError):
        run_until(link, {"a": Echo()}, until=1.0)

    class Stuck(Echo):
        def get_timer(self) -> float | None:
            return 0.0

        def handle_timer(self, now: float) -> None:
            pass

    with pytest.raises(LocalProtocolError):
        run_until(link, {"a": Stuck(), "b": Echo()}, until=1.0, max_steps_per_instant=50)
