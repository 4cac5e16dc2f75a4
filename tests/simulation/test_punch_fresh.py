"""Fresh mappings on the seeded emulator (spec/punch.md §3.4, §3.5; rendezvous.md §4.6).

The sequential NATs are busy: other hosts behind each take 10 new mappings a second, so 5 s
between the registration and the introduction move the NAT some 50 ports on, far past the 16
(18 in §3.5) that prediction covers.  With fresh mappings (the node has a second address, each
sequential side takes a fresh mapping there when its punch starts, the node passes its port to
the peer) the pairs connect 5 s later as they do at once; without them (``fresh=False``, the
switch) they fail as before.  Seeds are fixed: every figure is deterministic.
"""

from __future__ import annotations

import pytest
from punch_harness import CLEAN, KINDS, LOSSY, run_trial, strategy

from p2pos.proto.simulation.link import LinkConfig

SEEDS = range(60)
PAIRS = [
    ("eim-apdf", "seq1-busy"),  # the peer predicts (row 6 / 7)
    ("seq2-busy", "eim-apdf"),
    ("seq1-busy", "seq2-busy"),  # both sequential (row 5)
    ("seq2-busy", "seq1-busy"),
]


def _successes(a: str, b: str, *, idle: float, fresh: bool, wan: LinkConfig = CLEAN) -> int:
    results = [run_trial(KINDS[a], KINDS[b], seed, idle=idle, fresh=fresh, wan=wan) for seed in SEEDS]
    assert all(not r.violations for r in results), [r.violations for r in results if r.violations][:3]
    assert all(r.pair_verified for r in results if r.success)
    return sum(r.success for r in results)


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_fresh_mappings_connect_five_seconds_late_as_at_once(a: str, b: str) -> None:
    assert strategy(KINDS[a], KINDS[b]) in ("predict", "both-sequential")
    at_once = _successes(a, b, idle=0.0, fresh=True)
    late = _successes(a, b, idle=5.0, fresh=True)
    assert at_once == late == len(SEEDS)


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_without_fresh_mappings_the_old_failure(a: str, b: str) -> None:
    assert _successes(a, b, idle=0.0, fresh=False) == len(SEEDS)
    assert _successes(a, b, idle=5.0, fresh=False) == 0


@pytest.mark.parametrize(("a", "b"), [PAIRS[1], PAIRS[2]])
def test_fresh_mappings_under_loss(a: str, b: str) -> None:
    """2% loss each way on each side's link: a fresh Binding or its FRESH may be lost; the second
    covers it (PUN-3.4.1), and the both-sequential hold waits for the one that arrives (PUN-3.5.1)."""
    assert _successes(a, b, idle=5.0, fresh=True, wan=LOSSY) >= _successes(a, b, idle=0.0, fresh=False, wan=LOSSY) - 1


def test_fresh_bindings_and_rebases_stay_within_their_budgets() -> None:
    r = run_trial(KINDS["seq1-busy"], KINDS["seq2-busy"], 3, idle=5.0, fresh=True)
    assert r.success and r.a.fresh_sent == r.b.fresh_sent == 2 and r.a.rebased == r.b.rebased == 1
    r = run_trial(KINDS["eim-apdf"], KINDS["seq1-busy"], 3, idle=5.0, fresh=True)
    assert r.success and (r.a.fresh_sent, r.b.fresh_sent) == (0, 2) and (r.a.rebased, r.b.rebased) == (1, 0)
    r = run_trial(KINDS["eim-apdf"], KINDS["eim-apdf"], 3, idle=5.0, fresh=True)
    assert r.success and r.a.fresh_sent == r.b.fresh_sent == r.a.rebased == r.b.rebased == 0
