"""The binding-timeout search (p2pos_proto/nat/binding_timeout.py, spec/nat.md §4), in memory.

A toy router keeps one binding per socket, refreshed by what the socket sends and gone ``timeout``
seconds after; the rendezvous node's real ``BindingServer`` answers, honouring RESPONSE-PORT or
(to test the failures) not.  Delivery is instantaneous; time jumps to the prober's timer.  The
emulator sweeps are in tests/simulation/test_keepalive_learning.py.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.nat import stun_message as sm
from p2pos.proto.nat.binding_timeout import (
    BindingTimeoutProber,
    SearchConfig,
    TimeoutLearned,
    TimeoutSearchFailed,
)
from p2pos.proto.nat.keepalive import keepalive_interval
from p2pos.proto.nat.stun import BindingServer
from p2pos.proto.simulation.prng import Prng

SERVER = ("198.18.0.1", 3478)
PUBLIC = "198.18.0.10"
CONTROL = "main"
SPARES = [f"spare{i}" for i in range(SearchConfig().sockets_needed)]


class ToyWorld:
    """One router (outbound-refreshed bindings, port per socket) and the node's STUN answers."""

    def __init__(self, timeout: float, *, server: str = "ok", split_ip: bool = False) -> None:
        self.timeout = timeout
        self.server = server
        self.split_ip = split_ip
        self.node = BindingServer(primary=SERVER)
        self.last_out: dict[Hashable, float] = {}
        self.sent: list[tuple[float, Hashable, bytes]] = []
        self.keys: list[Hashable] = [CONTROL, *SPARES]
        self.prober = BindingTimeoutProber(SERVER, control=CONTROL, spares=SPARES, random=Prng(1))

    def public(self, key: Hashable) -> tuple[str, int]:
        ip = "198.18.0.11" if self.split_ip and key == CONTROL else PUBLIC
        return (ip, 50000 + self.keys.index(key))

    def flush(self, now: float) -> None:
        for data, to, local in self.prober.datagrams_to_send(now):
            assert to == SERVER
            self.sent.append((now, local, data))
            self.last_out[local] = now
            if self.server == "silent":
                continue
            source = self.public(local)
            answer = self.node.answer_untrusted(data, source, 0)
            assert answer is not None
            dest = source if self.server == "ignore-port" else answer.to
            if self.server == "refuse" and sm.decode_untrusted(data).get(sm.RESPONSE_PORT) is not None:
                reply = sm.encode(
                    sm.BINDING, sm.ERROR, data[8:20], [(sm.ERROR_CODE, sm.error_code(400, "Bad Request"))]
                )
            else:
                reply = answer.data
            key = next((k for k in self.keys if self.public(k)[1] == dest[1]), None)
            if key is not None and now - self.last_out.get(key, -math.inf) < self.timeout:
                self.prober.receive_datagram(reply, SERVER, now, key)

    def run(self, until: float = 2000.0) -> TimeoutLearned | TimeoutSearchFailed:
        self.prober.start(0.0)
        self.flush(0.0)
        while True:
            event = self.prober.next_event()
            if event is not None:
                return event
            timer = self.prober.get_timer()
            assert timer is not None and timer <= until, "the search stalled"
            self.prober.handle_timer(timer)
            self.flush(timer)


def test_ladder_is_coarse_then_fine_and_ends_at_the_longest() -> None:
    """[NAT-4.3] The first round's idle times."""
    cfg = SearchConfig()
    ladder = cfg.ladder()
    assert ladder[0] == cfg.calibration and ladder[1] == cfg.shortest and ladder[-1] == cfg.longest
    assert cfg.split in ladder and ladder == sorted(ladder)
    steps = [b / a for a, b in itertools.pairwise(ladder[1:])]
    split = ladder.index(cfg.split) - 1
    assert all(s <= cfg.coarse_ratio + 1e-9 for s in steps[:split])
    assert all(s <= cfg.fine_ratio + 1e-6 for s in steps[split:])
    assert cfg.sockets_needed == len(ladder) == 18


@pytest.mark.parametrize("timeout", [10.0, 47.0, 120.0, 289.0, 333.0, 600.0])
def test_learns_the_timeout_within_the_budget(timeout: float) -> None:
    """[NAT-4.3] [NAT-4.4] The bracket holds the real timeout; K within 85-95% of it; within 600 s."""
    event = ToyWorld(timeout).run()
    assert isinstance(event, TimeoutLearned)
    assert event.timeout < timeout and event.elapsed <= 600.0
    assert event.at_least or timeout <= event.high + event.srtt
    assert 0.85 <= event.interval / timeout <= 0.95
    assert event.interval == keepalive_interval(event.timeout, event.srtt)


def test_spare_sockets_stay_silent_while_idle() -> None:
    """[NAT-4.1] Every test request leaves the control socket, and the spare it tests has sent
    nothing for at least the calibration idle time before it."""
    world = ToyWorld(100.0)
    assert isinstance(world.run(), TimeoutLearned)
    tests = [(t, local, data) for t, local, data in world.sent if sm.decode_untrusted(data).get(sm.RESPONSE_PORT)]
    assert tests and all(local == CONTROL for _, local, _ in tests)
    for t, _, data in tests:
        value = sm.decode_untrusted(data).get(sm.RESPONSE_PORT)
        assert value is not None
        spare = world.keys[int.from_bytes(value[:2], "big") - 50000]
        last = max(s for s, local, _ in world.sent if local == spare and s <= t)
        assert t - last >= SearchConfig().calibration


def test_warm_up_is_two_exchanges_a_gap_apart() -> None:
    """[NAT-4.2] Each probe binding sees a second exchange ``warm_gap`` after the first."""
    world = ToyWorld(100.0)
    world.run()
    first = sorted(t for t, local, _ in world.sent if local == SPARES[5])[:2]
    assert first[1] - first[0] == pytest.approx(SearchConfig().warm_gap)


@pytest.mark.parametrize(
    ("world", "words"),
    [
        (ToyWorld(100.0, server="ignore-port"), "ignores RESPONSE-PORT"),
        (ToyWorld(100.0, server="refuse"), "refused RESPONSE-PORT"),
        (ToyWorld(100.0, server="silent"), "did not answer"),
        (ToyWorld(100.0, split_ip=True), "differs"),
        (ToyWorld(0.5), "does not reach it"),
    ],
)
def test_the_method_fails_loudly_where_it_cannot_work(world: ToyWorld, words: str) -> None:
    """[NAT-4.1] No guess: a server that ignores or refuses RESPONSE-PORT, no server, another public
    IP for the control socket, or a calibration test unanswered twice."""
    event = world.run()
    assert isinstance(event, TimeoutSearchFailed) and words in event.reason
    assert not world.prober.running and world.prober.get_timer() is None


def test_interval_while_learning_never_exceeds_what_is_known() -> None:
    """[NAT-4.5] While searching, the interval is the one for the longest idle time seen alive
    (at least the assumed 10 s): always below the real timeout."""
    world = ToyWorld(150.0)
    world.prober.start(0.0)
    world.flush(0.0)
    seen = []
    while world.prober.next_event() is None:
        seen.append(world.prober.interval)
        timer = world.prober.get_timer()
        assert timer is not None
        world.prober.handle_timer(timer)
        world.flush(timer)
    assert max(seen) < 150.0 and seen[0] == keepalive_interval(10.0)
    assert seen == sorted(seen)


def test_relearn_starts_again() -> None:
    """[NAT-4.6] ``relearn`` forgets the result and searches again from the first round."""
    world = ToyWorld(60.0)
    first = world.run()
    assert isinstance(first, TimeoutLearned) and world.prober.result is first
    world.timeout = 200.0
    world.prober.relearn(5000.0)
    after: object = world.prober.result
    assert world.prober.running and after is None and world.prober.results == []
    world.flush(5000.0)
    while (event := world.prober.next_event()) is None:
        timer = world.prober.get_timer()
        assert timer is not None
        world.prober.handle_timer(timer)
        world.flush(timer)
    assert isinstance(event, TimeoutLearned) and 0.85 <= event.interval / 200.0 <= 0.95
    with pytest.raises(LocalProtocolError):
        world.prober.relearn(9000.0, spares=SPARES[1:])


def test_misuse_raises() -> None:
    with pytest.raises(LocalProtocolError):
        BindingTimeoutProber(SERVER, control=CONTROL, spares=SPARES[:-1], random=Prng(1))
    with pytest.raises(LocalProtocolError):
        BindingTimeoutProber(SERVER, control=SPARES[0], spares=SPARES, random=Prng(1))
    with pytest.raises(LocalProtocolError):
        SearchConfig(shortest=600.0)
    with pytest.raises(LocalProtocolError):
        SearchConfig(fine_ratio=1.0)
    prober = BindingTimeoutProber(SERVER, control=CONTROL, spares=SPARES, random=Prng(1))
    prober.start(0.0)
    with pytest.raises(LocalProtocolError):
        prober.start(1.0)


@given(data=st.binary(max_size=200), local=st.sampled_from([CONTROL, *SPARES[:3]]))
def test_garbage_is_never_ours_and_never_raises(data: bytes, local: str) -> None:
    """Garbage from the network is dropped (STYLE.md §6)."""
    prober = BindingTimeoutProber(SERVER, control=CONTROL, spares=SPARES, random=Prng(2))
    prober.start(0.0)
    assert prober.receive_datagram(data, SERVER, 0.1, local) is False
