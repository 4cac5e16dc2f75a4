"""Requirement ids of spec/relay.md (``**[REL-x.y]**``) and the cases that test them.

The rules of the other suites (spec/conformance.md §6, ``conformance/doctrace.py``): every
id is cited by a case, or listed in ``UNTESTABLE`` with why a black-box case against a running
relay cannot see it (and which test of this implementation checks it instead); a case cites only
ids the document defines; every tag has a BCP 14 keyword.  ``problems()`` lists what breaks that
(tests/relay/test_relay_conformance.py keeps it empty); ``table()`` renders the mapping
(``python -m conformance.relay --trace``).
"""

from __future__ import annotations

from collections.abc import Mapping

from ..doctrace import DocumentTrace

DOCUMENT = "relay.md"
PREFIX = "REL-"
_T = "tests/relay/"

UNTESTABLE: Mapping[str, str] = {
    "REL-3.1.1": f"a rule for clients ({_T}test_relay_loopback.py, every RelayLink test)",
    "REL-5.3": "the default byte quota needs more than 64 MiB sent before it shows "
    f"({_T}test_relay_transport.py::test_a_flooding_peer_is_held_to_its_quota_while_another_pair_proceeds)",
    "REL-5.4": "which records a full queue drops depends on the kernel's socket buffers, which the suite "
    f"cannot see ({_T}test_relay_core.py::test_a_full_destination_queue_drops_records_not_links)",
    "REL-5.6": f"no time or byte cap cannot be shown in bounded time ({_T}test_relay_core.py::"
    "test_no_time_or_byte_cap_within_quota, 5 hours on a fake clock)",
    "REL-6.1": "needs a relay that runs a rendezvous node, and its peer id "
    f"({_T}test_relay_sessions.py::test_a_session_with_the_node_goes_over_the_websocket)",
    "REL-6.2": "needs a p2pos handshake with the relay's node "
    f"({_T}test_relay_sessions.py::test_a_session_with_the_node_goes_over_the_websocket)",
    "REL-6.3": f"a rule for peers ({_T}test_relay_sessions.py checks the address the node reports)",
    "REL-7.1": f"a rule for clients ({_T}test_relay_transport.py::test_wss_with_a_self_signed_certificate)",
    "REL-7.2": f"a rule for clients ({_T}test_relay_transport.py::test_through_an_http_connect_proxy)",
    "REL-7.3": f"a rule for clients ({_T}test_relay_core.py::test_backoff_doubles_with_jitter_and_resets)",
    "REL-7.4": f"a rule for clients ({_T}test_relay_transport.py::test_reconnects_after_the_relay_closes_the_link)",
    "REL-7.6": f"a rule for clients ({_T}test_relay_transport.py::test_a_silent_relay_is_given_up)",
    "REL-7.7": "a rule for clients "
    "(tests/carriers/test_carrier_relay.py::test_idle_wants_are_withdrawn_and_sending_wants_again)",
    "REL-7.5": f"a rule for clients ({_T}test_relay_sessions.py::test_the_relay_only_handles_sealed_records)",
}


TRACE = DocumentTrace(DOCUMENT, PREFIX, UNTESTABLE)
tags, requirements, problems, table = TRACE.tags, TRACE.requirements, TRACE.problems, TRACE.table
