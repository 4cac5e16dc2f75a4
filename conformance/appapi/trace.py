"""Requirement ids of spec/appapi.md (``**[API-x.y]**``) and the cases that test them.

As for the wire protocol (spec/conformance.md §6, ``conformance/traceability.py``, whose tag
and keyword rules this module reuses): every id is cited by a case, or listed in
``UNTESTABLE`` with why no case against a running daemon can see it; a case cites only ids
the document defines; every tag has a BCP 14 keyword.  ``problems()`` lists what breaks that
(a test keeps it empty); ``table()`` renders the mapping (``python -m conformance.appapi --trace``).
"""

from __future__ import annotations

from collections.abc import Mapping

from ..doctrace import DocumentTrace

DOCUMENT = "appapi.md"
PREFIX = "API-"
_ADAPTER_TESTS = "tests/adapters/test_daemon.py"

#: Why no case can test these ids against a daemon the suite did not start (and, for this
#: implementation, which tests check it instead).
UNTESTABLE: Mapping[str, str] = {
    "API-1.5": "a new token per start needs the daemon restarted, which the suite does not control "
    "(tests/adapters/test_apisockets.py::test_tcp_needs_the_token_from_the_file)",
    "API-1.1.1": "where the command line keeps its files is outside the API; the suite only knows the "
    f"socket ({_ADAPTER_TESTS}::test_home_folders)",
    "API-1.1.2": "the XDG defaults are chosen by the command line from its environment, outside the API "
    f"({_ADAPTER_TESTS}::test_home_folders)",
    "API-2.1.3": "no request of the API is meant to provoke a bug in the daemon; an internal error cannot "
    "be caused from outside (tests/adapters/test_httpapi.py::test_errors_are_json_and_a_crash_is_a_500)",
    "API-2.1.4": "a rule for clients, not for the daemon the suite tests",
    "API-3.1.4": "which carriers two daemons share depends on their configuration and network, which the "
    "suite neither sets nor knows (tests/carriers/test_carrier_pin.py moves a session to QUIC and back)",
    "API-3.7": "remembering verified peers across restarts needs the daemon restarted "
    "(tests/adapters/test_daemon.py::test_verified_peers_are_remembered reads peers.json)",
    "API-4.22": "how the daemon looks a peer up, and that it refuses an impostor, cannot be seen through "
    "the API without a rendezvous node that lies (handshake.md's identity binding, HS cases, covers the check)",
    "API-5.6": "the missed notice needs more than 200,000 events within an hour (the hour's are kept up to "
    "that), or 10,000 and an hour's wait; the API makes events one a request, at best ~1.5 ms each (refused "
    "channels, 32 at once: api/peer/11), so 5 minutes and more "
    "(tests/adapters/test_eventlog.py checks the notice with a fake clock)",
    "API-5.8": "a rule for clients, not for the daemon the suite tests",
    "API-6.1": "POST /v1/stop ends the daemon under test, which the suite does not own "
    f"({_ADAPTER_TESTS}::test_stop_ends_the_daemon_and_removes_its_socket)",
    "API-6.2": "signals go to a process the suite did not start and does not know (tests/daemon/ signals ours)",
    "API-6.1.1": "--bench is a start-up option: the suite can neither set it nor ask whether it is on "
    "(tests/bench/test_bench_daemon_smoke.py)",
    "API-6.1.2": "--bench is a start-up option: the suite can neither set it nor ask whether it is on "
    "(tests/bench/test_bench_daemon_smoke.py)",
    "API-6.1.3": "whether a daemon runs without --bench cannot be asked through the API, and with it the "
    "call is served",
    "API-7.1": "needs a plugin installed in the daemon's home folder, which the suite does not know",
    "API-7.2": "needs a plugin installed in the daemon's home folder, and its logs folder",
    "API-7.3": "needs a plugin installed in the daemon's home folder, and a minute of restarts",
    "API-7.4": "needs a plugin installed in the daemon's home folder, and its process id",
}


TRACE = DocumentTrace(DOCUMENT, PREFIX, UNTESTABLE)
tags, requirements, problems, table = TRACE.tags, TRACE.requirements, TRACE.problems, TRACE.table
