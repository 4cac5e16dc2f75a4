"""The rendezvous cases (conformance/cases_rendezvous*.py) fail against broken nodes and clients.

Each run starts this implementation's adapter with one rule of spec/rendezvous.md broken in
the IUT process (a patch of ``p2pos.proto.rendezvous.node`` or ``.client`` made by a small wrapper script
before the adapter starts); the cases written for that rule must fail (or warn, for a case
that tests only SHOULD rules), and no other case of their area.  That every ``rdv/``
case passes against the unbroken adapter is checked with the whole suite in
test_conformance.py.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest
from suite_helpers import run_conformance

#: A patched core is a pure-Python one (the compiled pass of `make test` leaves these out).
pytestmark = pytest.mark.pure_core

WRAPPER = """
import os, sys
from p2pos.proto.rendezvous import node as n

bug = sys.argv[1]
if bug == "reset-key-per-start":  # the reset key does not survive a restart (RDV-6.1.1)
    n.reset_key = lambda keys: os.urandom(32)
elif bug == "long-reset":  # resets as long as their trigger allows, not at most 64 bytes
    n.MAX_RESET_LEN = 65535
elif bug == "no-limits":  # every token bucket always has a token
    class Unlimited(n.TokenBucket):
        def take(self, now):
            return True
    n.TokenBucket = Unlimited
elif bug == "stun-any":  # anything that looks like STUN is answered
    n.stun.request_untrusted = lambda data: (
        n.stun.BindingRequest(transaction_id=bytes(data[8:20])) if len(data) >= 20 else None
    )
elif bug == "no-introduction":
    send = n.RendezvousNode._send

    def no_introduction(self, sid, msg, now):
        if not isinstance(msg, n.m.Introduction):
            send(self, sid, msg, now)

    n.RendezvousNode._send = no_introduction
elif bug == "keep-unregistered":  # sessions without a registration are never closed
    n.RendezvousNode._await_registration = lambda self, sid, now: None
elif bug == "client-no-repeat":  # a request is sent once and never repeated
    from p2pos.proto.rendezvous import client as c

    def once(self, message, now):
        self._pending[message.txid] = c._Pending(message, now, now + 1e9, 1e9)
        self._send(message, now)

    c.RendezvousClient._request = once
elif bug == "client-any-reset":  # any 0x0b from the node's address ends the session
    from p2pos.proto.rendezvous import client as c

    class Gullible:
        @staticmethod
        def compare_digest(a, b):
            return True

    c.hmac = Gullible
elif bug == "client-never-gives-up":  # an unanswered REGISTER is repeated forever, never a loss
    import dataclasses

    from p2pos.proto.rendezvous import client as c

    original_init = c.RendezvousClient.__init__

    def patient(self, *args, config=None, **kwargs):
        config = dataclasses.replace(config or c.ClientConfig(), register_timeout=1e9)
        original_init(self, *args, config=config, **kwargs)

    c.RendezvousClient.__init__ = patient
from p2pos.conformance.impl import main
raise SystemExit(main())
"""

#: bug -> (the -k filter, the cases that must fail).
BUGS = {
    "reset-key-per-start": ("rdv/reset/", {"rdv/reset/3", "rdv/reset/4"}),
    "long-reset": ("rdv/reset/", {"rdv/reset/5"}),
    "no-limits": ("rdv/limit/", {f"rdv/limit/{i}" for i in range(1, 7)}),
    "stun-any": ("rdv/stun/", {"rdv/stun/3", "rdv/stun/4"}),
    "no-introduction": ("rdv/lookup/", {"rdv/lookup/4", "rdv/lookup/5"}),
    "keep-unregistered": ("rdv/lease/", {"rdv/lease/2", "rdv/lease/3", "rdv/lease/4"}),
    "client-no-repeat": ("rdv/client/", {"rdv/client/3", "rdv/client/11", "rdv/client/13", "rdv/client/14"}),
    "client-never-gives-up": ("rdv/client/", {"rdv/client/14"}),
    "client-any-reset": ("rdv/client/", {"rdv/client/7"}),
}


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_the_cases_for_a_broken_rule_fail(tmp_path: Path, bug: str) -> None:
    wrapper = tmp_path / "broken_node.py"
    wrapper.write_text(WRAPPER, encoding="utf-8")
    prefix, expected = BUGS[bug]
    impl = shlex.join([sys.executable, str(wrapper), bug])
    proc, report = run_conformance(tmp_path / "report.json", "--impl", impl, "-k", prefix, pure=True)
    # A case that tests only SHOULD rules warns instead (spec/conformance.md §1).
    failed = {c["id"] for c in report["cases"] if c["result"] in ("fail", "warn")}
    assert failed == expected, proc.stdout
    # A run fails on a MUST; one that only warns passes (and fails with --strict).
    must = any(c["result"] == "fail" for c in report["cases"])
    assert proc.returncode == (1 if must else 0)
