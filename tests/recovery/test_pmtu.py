"""DPLPMTUD (spec/recovery.md §7, RFC 8899) against simulated paths."""

from __future__ import annotations

import pytest

from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.recovery.pmtu import TRANSITIONS, PmtuDiscovery, PmtuState


def state(pmtu: PmtuDiscovery) -> PmtuState:
    """Read the state afresh (mypy would otherwise keep a narrowed type across calls)."""
    return pmtu.state


class Path:
    """A path that drops every datagram larger than ``mtu``; one probe per 0.1 s round trip."""

    def __init__(self, mtu: int) -> None:
        self.mtu = mtu
        self.pn = 0
        self.now = 0.0
        self.probes: list[int] = []

    def run(self, pmtu: PmtuDiscovery, max_rounds: int = 100) -> None:
        """Send probes until none is due."""
        for _ in range(max_rounds):
            size = pmtu.probe_size_to_send(self.now)
            if size is None:
                return
            self.pn += 1
            before = pmtu.state
            pmtu.on_probe_sent(self.pn, size, self.now)
            assert pmtu.is_probe(self.pn)
            self.probes.append(size)
            self.now += 0.1
            if size <= self.mtu:
                pmtu.on_probe_acked(self.pn, self.now)
            else:
                pmtu.on_probe_lost(self.pn, self.now)
            assert state(pmtu) is before or pmtu.state in TRANSITIONS[before]
        raise AssertionError("the search did not end")


@pytest.mark.parametrize("path_mtu", [1200, 1201, 1280, 1300, 1400, 1451, 1452, 1500, 9000])
def test_search_converges(path_mtu: int) -> None:
    pmtu = PmtuDiscovery(max_plpmtu=1452)
    assert state(pmtu) is PmtuState.BASE
    assert pmtu.current_mtu == 1200
    path = Path(path_mtu)
    path.run(pmtu)
    assert state(pmtu) is PmtuState.SEARCH_COMPLETE
    # Never above the path, and within the search granularity of it (or of MAX_PLPMTU).
    target = min(path_mtu, 1452)
    assert target - 16 < pmtu.current_mtu <= target
    # The first probe confirms the base, the second tries MAX_PLPMTU at once.
    assert path.probes[:2] == [1200, 1452]
    # Each size is probed at most MAX_PROBES times.
    assert all(path.probes.count(size) <= 3 for size in set(path.probes))


def test_full_size_path_needs_two_probes() -> None:
    pmtu = PmtuDiscovery(max_plpmtu=1452)
    path = Path(1500)
    path.run(pmtu)
    assert path.probes == [1200, 1452]
    assert pmtu.current_mtu == 1452
    # MAX_PLPMTU is confirmed: nothing left to raise.
    assert pmtu.get_timer() is None


def test_base_confirmed_skips_base_probe() -> None:
    pmtu = PmtuDiscovery(max_plpmtu=1452, base_confirmed=True)
    assert state(pmtu) is PmtuState.SEARCHING
    path = Path(1300)
    path.run(pmtu)
    assert path.probes[:4] == [1452, 1452, 1452, 1326]
    assert 1284 < pmtu.current_mtu <= 1300


def test_probe_acked_reports_change() -> None:
    pmtu = PmtuDiscovery(max_plpmtu=1452, base_confirmed=True)
    assert pmtu.probe_size_to_send(0.0) == 1452
    pmtu.on_probe_sent(7, 1452, 0.0)
    # One probe at a time.
    assert pmtu.probe_size_to_send(0.0) is None
    assert not pmtu.on_probe_acked(6, 0.1)
    assert pmtu.on_probe_acked(7, 0.1)
    assert pmtu.current_mtu == 1452
    assert not pmtu.on_probe_acked(7, 0.1)


def test_no_room_to_search() -> None:
    pmtu = PmtuDiscovery(max_plpmtu=1200, base_confirmed=True)
    assert state(pmtu) is PmtuState.SEARCH_COMPLETE
    assert pmtu.probe_size_to_send(0.0) is None
    assert pmtu.get_timer() is None


def test_base_not_confirmed_goes_to_error_and_retries() -> None:
    pmtu = PmtuDiscovery(max_plpmtu=1452, min_plpmtu=1000)
    path = Path(900)
    path.run(pmtu)
    assert path.probes == [1200, 1200, 1200]
    assert state(pmtu) is PmtuState.ERROR
    assert pmtu.current_mtu == 1000
    timer = pmtu.get_timer()
    assert timer is not None
    assert timer == pytest.approx(path.now + 15.0)
    assert pmtu.probe_size_to_send(path.now) is None
    pmtu.handle_timer(timer - 1)
    assert state(pmtu) is PmtuState.ERROR
    pmtu.handle_timer(timer)
    assert state(pmtu) is PmtuState.BASE
    # The path recovered: BASE is confirmed and the search runs.
    path.mtu = 1500
    path.now = timer
    path.run(pmtu)
    assert state(pmtu) is PmtuState.SEARCH_COMPLETE
    assert pmtu.current_mtu == 1452


def test_raise_timer_searches_again() -> None:
    pmtu = PmtuDiscovery(max_plpmtu=1452)
    path = Path(1280)
    path.run(pmtu)
    done = path.now
    assert 1264 < pmtu.current_mtu <= 1280
    assert pmtu.get_timer() == pytest.approx(done + 600.0)
    pmtu.handle_timer(done + 599.0)
    assert state(pmtu) is PmtuState.SEARCH_COMPLETE
    # The path now carries more: after PMTU_RAISE_TIMER the search finds it.
    path.mtu = 1400
    path.now = done + 600.0
    pmtu.handle_timer(path.now)
    assert state(pmtu) is PmtuState.SEARCHING
    assert pmtu.probe_size_to_send(path.now) == 1452
    path.run(pmtu)
    assert 1384 < pmtu.current_mtu <= 1400


def test_black_hole_falls_back_to_base_and_searches_again() -> None:
    pmtu = PmtuDiscovery(max_plpmtu=1452)
    path = Path(1500)
    path.run(pmtu)
    assert pmtu.current_mtu == 1452
    # The route changes: full-size packets vanish, small ones (ACKs) still arrive.
    path.mtu = 1300
    assert not pmtu.on_packets_lost([1452, 1452], path.now)
    assert not pmtu.on_packets_lost([1452], path.now + 0.5)
    assert pmtu.on_packets_lost([1452, 1452, 1452], path.now + 1.0)
    assert state(pmtu) is PmtuState.BASE
    assert pmtu.current_mtu == 1200
    path.now += 1.0
    path.run(pmtu)
    assert state(pmtu) is PmtuState.SEARCH_COMPLETE
    assert 1284 < pmtu.current_mtu <= 1300


def test_large_ack_or_small_loss_is_not_a_black_hole() -> None:
    pmtu = PmtuDiscovery(max_plpmtu=1452)
    Path(1500).run(pmtu)
    for _ in range(5):
        assert not pmtu.on_packets_lost([1452], 1.0)
        assert not pmtu.on_packets_lost([1452], 1.1)
        pmtu.on_packet_acked(1452)
    for _ in range(5):
        assert not pmtu.on_packets_lost([1452], 2.0)
        assert not pmtu.on_packets_lost([1452, 300], 2.1)
    # Small acknowledged packets prove nothing about large ones.
    assert not pmtu.on_packets_lost([1452], 3.0)
    pmtu.on_packet_acked(1200)
    assert not pmtu.on_packets_lost([1452], 3.1)
    assert not pmtu.on_packets_lost([], 3.1)
    assert pmtu.on_packets_lost([1452], 3.2)
    assert pmtu.current_mtu == 1200


def test_losses_at_base_size_are_not_a_black_hole() -> None:
    pmtu = PmtuDiscovery(max_plpmtu=1452)
    Path(1210).run(pmtu)
    assert pmtu.current_mtu == 1200
    for step in range(10):
        assert not pmtu.on_packets_lost([1200], float(step))
    assert state(pmtu) is PmtuState.SEARCH_COMPLETE


def test_stale_probe_after_black_hole_is_ignored() -> None:
    pmtu = PmtuDiscovery(max_plpmtu=1452, base_confirmed=True)
    # Path MTU 1300: 1452 and 1326 fail three times each, 1263 works.
    for pn, (size, works) in enumerate([(1452, False)] * 3 + [(1326, False)] * 3 + [(1263, True)], start=1):
        assert pmtu.probe_size_to_send(0.0) == size
        pmtu.on_probe_sent(pn, size, 0.0)
        if works:
            assert pmtu.on_probe_acked(pn, 0.0)
        else:
            assert not pmtu.on_probe_lost(pn, 0.0)
    assert pmtu.current_mtu == 1263
    assert pmtu.probe_size_to_send(0.0) == 1294
    pmtu.on_probe_sent(100, 1294, 0.0)
    # A black hole while a probe is outstanding restarts from BASE; the old probe no longer counts.
    for _ in range(3):
        pmtu.on_packets_lost([1263], 1.0)
    assert state(pmtu) is PmtuState.BASE
    assert pmtu.current_mtu == 1200
    assert not pmtu.is_probe(100)
    assert not pmtu.on_probe_acked(100, 1.0)
    assert not pmtu.on_probe_lost(100, 1.0)
    assert pmtu.probe_size_to_send(1.0) == 1200


def test_disabled() -> None:
    pmtu = PmtuDiscovery(enabled=False)
    assert state(pmtu) is PmtuState.DISABLED
    assert pmtu.current_mtu == 1200
    assert pmtu.probe_size_to_send(0.0) is None
    assert pmtu.get_timer() is None
    assert not pmtu.on_packets_lost([1452] * 3, 0.0)
    with pytest.raises(LocalProtocolError):
        pmtu.on_probe_sent(1, 1200, 0.0)


def test_caller_misuse() -> None:
    pmtu = PmtuDiscovery()
    with pytest.raises(LocalProtocolError):
        pmtu.on_probe_sent(1, 1300, 0.0)  # the due probe is 1200
    with pytest.raises(LocalProtocolError):
        PmtuDiscovery(max_plpmtu=1000)
    with pytest.raises(LocalProtocolError):
        PmtuDiscovery(max_probes=0)


def test_transition_table_covers_every_state() -> None:
    assert set(TRANSITIONS) == set(PmtuState)
    assert all(targets <= set(PmtuState) for targets in TRANSITIONS.values())


def test_spec_constants_match() -> None:
    """spec/recovery.md §7 lists the constants this module uses."""
    from pathlib import Path as FsPath

    from p2pos.proto.recovery import pmtu

    text = (FsPath(__file__).resolve().parents[2] / "spec" / "recovery.md").read_text()
    section = text[text.index("## §7 Path MTU discovery") : text.index("### §7.1")]
    rows = {
        line.split("|")[1].strip(" `"): line.split("|")[2].strip() for line in section.splitlines() if "| `" in line
    }
    assert rows["BASE_PLPMTU"] == str(pmtu.BASE_PLPMTU)
    assert rows["MIN_PLPMTU"] == str(pmtu.MIN_PLPMTU)
    assert rows["MAX_PLPMTU"].startswith(str(pmtu.MAX_PLPMTU))
    assert rows["MAX_PROBES"] == str(pmtu.MAX_PROBES)
    assert rows["PMTU_RAISE_TIMER"] == f"{pmtu.PMTU_RAISE_TIMER:g} s"
    assert rows["PROBE_TIMER"] == f"{pmtu.PROBE_TIMER:g} s"
    assert f"| search granularity | {pmtu.SEARCH_GRANULARITY} bytes |" in section
    states = text[text.index("### §7.2 States") : text.index("### §7.3")]
    assert {state.name for state in PmtuState} == {
        line.split("|")[1].strip() for line in states.splitlines() if line.startswith("| ") and "State" not in line
    }
