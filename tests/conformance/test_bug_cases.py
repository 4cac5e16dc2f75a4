"""The issue 10 cases (conformance/cases_bugs.py) fail against the bugs they were written for.

An implementation written from the spec passed the whole suite while each of these rules
was broken.  The adapter's ``P2POS_IMPL_BUG`` hooks (conformance/impl.py) break one rule
each inside the IUT process; the case made for that rule must then fail, and only the cases
that test the same rule with it.
That the cases pass against the unbroken adapter is checked with the whole suite in
test_conformance.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from suite_helpers import run_conformance

#: Every test here runs the pure-Python core, whatever core this run uses (a broken core is a
#: patched or mutated pure one): the compiled pass of `make test` leaves them out.
pytestmark = pytest.mark.pure_core


REPO_ROOT = Path(__file__).resolve().parents[2]


def run_buggy(tmp_path: Path, prefix: str, bug: str) -> tuple[int, str, dict[str, str]]:
    """Run the cases whose id contains ``prefix`` against the adapter with ``P2POS_IMPL_BUG=bug``.

    Returns the exit status, stdout and each case's result.  (``--no-precheck``: the hooks
    leave the adapter's answer to an unknown case id alone, so the pre-check would only cost time.)
    """
    proc, data = run_conformance(
        tmp_path / "report.json", "-k", prefix, "--no-precheck", "-j", "2", env={"P2POS_IMPL_BUG": bug}, pure=True
    )
    for c in data["cases"]:  # a case must fail on the broken rule, not on an adapter that died
        assert "exited with status" not in c["detail"], c
    return proc.returncode, proc.stdout, {c["id"]: c["result"] for c in data["cases"]}


#: Hook name -> the id prefix to run (``-k``) -> the cases that must fail under it.
BUGS = [
    ("ack-unsent", "ch/err/7", {"ch/err/7"}),
    ("no-final-size", "ch/flow/", {"ch/flow/4", "ch/flow/5", "ch/flow/16", "ch/flow/26"}),
    ("stream-on-message", "ch/err/6", {"ch/err/6"}),
    ("dup-message", "ch/data/5", {"ch/data/5"}),
    ("reset-written", "ch/reset/6", {"ch/reset/6"}),
    ("no-ping-ack", "ch/live/3", {"ch/live/3"}),
    ("lowest-version", "hs/ver/", {"hs/ver/1"}),
    ("ignore-versions", "hs/ver/", {"hs/ver/1", "hs/ver/2", "hs/ver/3", "hs/ver/6", "hs/ver/9"}),
    ("response-no-index", "hs/index/6", {"hs/index/6"}),
    ("ik-weak-send", "hs/ik/14", {"hs/ik/14"}),
    ("sig-key-only", "id/sig/6", {"id/sig/6"}),
    ("sig-r-only", "id/sig/7", {"id/sig/7"}),
    ("replay-edge", "rec/replay/5", {"rec/replay/5"}),
    ("path-no-pad", "ch/multipath/", {"ch/multipath/1"}),
    ("path-unlimited", "ch/multipath/", {"ch/multipath/7"}),
    ("path-slow-death", "ch/multipath/", {"ch/multipath/8"}),
    ("path-shared-state", "ch/multipath/", {"ch/multipath/13", "ch/multipath/14"}),
    ("path-rtt-any-path", "ch/multipath/", {"ch/multipath/14"}),
    ("path-rtt-response", "ch/multipath/", {"ch/multipath/14"}),
    ("path-no-fate", "ch/multipath/", {"ch/multipath/15"}),
    ("too-old-never", "ch/multipath/", {"ch/multipath/16"}),
    ("too-old-congestion", "ch/multipath/", {"ch/multipath/16"}),
    ("bbr-no-floor", "ch/bbr/25", {"ch/bbr/25"}),
    ("bbr-no-aggregation", "ch/bbr/26", {"ch/bbr/26"}),
    ("bbr-probe-rtt-four", "ch/bbr/27", {"ch/bbr/27"}),
    ("bbr-probe-rtt-after-quiet", "ch/bbr/28", {"ch/bbr/28"}),
    ("bbr-quiet-only-at-expiry", "ch/bbr/29", {"ch/bbr/29"}),
    ("early-no-open", "ch/early/", {"ch/early/5"}),
    # NAT traversal (conformance/impl_nat_bugs.py): STUN, discovery, candidates, punching, keepalives,
    # port mapping.
    ("stun-mi-short-length", "nat/stun/", {"nat/stun/1"}),
    ("stun-change-ignored", "nat/stun/", {"nat/stun/7", "nat/stun/8"}),
    ("disc-public-by-mapping", "nat/disc/", {"nat/disc/2"}),
    ("disc-delta-one", "nat/disc/", {"nat/disc/5"}),
    (
        "cand-is-private",
        "cand/",
        {f"cand/class/{i}" for i in (1, 2)} | {f"cand/pair/{i}" for i in (1, 2, 3, 5, 6)},
    ),
    ("cand-private-everywhere", "cand/", {"cand/class/1", "cand/pair/1", "cand/pair/2"}),
    ("punch-mi-username", "punch/probe/", {f"punch/probe/{i}" for i in (1, 4, 5, 6)}),
    ("punch-birthday-2048", "punch/", {"punch/plan/1", "punch/probe/9"}),
    ("keepalive-no-resend", "nat/ka/", {"nat/ka/3"}),
    ("keepalive-one-flow", "nat/ka/", {"nat/ka/2"}),
    ("search-no-warm-gap", "nat/bt/", {"nat/bt/2"}),
    ("pcp-nonce-per-request", "map/pcp/", {"map/pcp/1"}),
    ("portmap-renew-at-expiry", "map/", {"map/natpmp/4", "map/pcp/1", "map/pcp/4", "map/upnp/2"}),
    ("upnp-no-725-retry", "map/upnp/", {"map/upnp/4"}),
    ("upnp-parses-dtd", "map/upnp/", {"map/upnp/9"}),
    ("upnp-no-delete-in-flight", "map/upnp/", {"map/upnp/11"}),
    ("upnp-ppp-first", "map/upnp/", {"map/upnp/2", "map/upnp/3"}),
]


@pytest.mark.parametrize(("bug", "prefix", "failing"), BUGS, ids=[bug for bug, _, _ in BUGS])
def test_the_case_catches_the_bug(tmp_path: Path, bug: str, prefix: str, failing: set[str]) -> None:
    status, out, outcome = run_buggy(tmp_path, prefix, bug)
    assert failing <= set(outcome), outcome
    assert {case_id for case_id, result in outcome.items() if result == "fail"} == failing, out
    assert status == 1
