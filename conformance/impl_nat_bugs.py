"""The adapter's ``P2POS_IMPL_BUG`` hooks that break the NAT traversal core (impl_bugs.py calls this).

Each value breaks one rule of spec/nat.md, candidates.md, punch.md or portmap.md the way an
implementation could get it wrong; tests/conformance/test_bug_cases.py proves that the cases of
conformance/cases_nat_*.py, cases_candidates.py, cases_punch.py, cases_portmap.py and
cases_portmap_upnp.py then fail.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def install_nat_bug(bug: str) -> None:
    """Break the rule ``bug`` names inside this process (nothing for other values)."""
    from p2pos.proto.nat import addresses, candidates, discovery, keepalive, punch, punch_plan, stun
    from p2pos.proto.nat import stun_message as sm

    if bug == "stun-mi-short-length":  # NAT-2.2: the header length left as it was, not counting MESSAGE-INTEGRITY
        import hashlib
        import hmac

        def integrity_short(self: Any, key: bytes) -> bool:
            if self.integrity_at < 0:
                return False
            want = hmac.new(key, self.raw[: self.integrity_at], hashlib.sha1).digest()
            return hmac.compare_digest(want, self.raw[self.integrity_at + 4 : self.integrity_at + 24])

        sm.Message.integrity_ok = integrity_short  # type: ignore[method-assign]
    elif bug == "stun-change-ignored":  # NAT-3.1.3: CHANGE-REQUEST read and then ignored
        request_untrusted = stun.request_untrusted

        def unchanged(data: bytes) -> Any:
            request = request_untrusted(data)
            return None if request is None else dataclasses.replace(request, change=0)

        stun.request_untrusted = unchanged
    elif bug == "disc-public-by-mapping":  # NAT-3.2.6: "public" inferred from mapped == local
        report = discovery.NatDiscovery.report

        def guessed(self: Any) -> Any:
            found = report.fget(self)  # type: ignore[attr-defined]
            if found.mapped is not None and found.mapped == found.local:
                found = dataclasses.replace(found, public=True)
            return found

        discovery.NatDiscovery.report = property(guessed)  # type: ignore[method-assign,assignment]
    elif bug == "disc-delta-one":  # NAT-3.2.4: a sequential allocator's delta always reported as 1
        allocation = discovery.NatDiscovery._allocation

        def delta_one(self: Any, preserved: Any) -> Any:
            kind, delta = allocation(self, preserved)
            return kind, (1 if delta else delta)

        discovery.NatDiscovery._allocation = delta_one  # type: ignore[method-assign]
    elif bug == "cand-is-private":  # CAND-2.2: Python's is_private decides (198.18.0.0/15 is private there)
        classify = addresses.classify

        def library_private(host: Any) -> Any:
            found = classify(host)
            ip = addresses.unmapped(addresses.parse_ip(host))
            if found is addresses.AddressClass.PUBLIC and ip.is_private:
                return addresses.AddressClass.PRIVATE
            return found

        addresses.classify = library_private
        candidates.classify = library_private  # type: ignore[attr-defined]
    elif bug == "cand-private-everywhere":  # CAND-4.2: private addresses dialled across NATs
        addresses.SCOPES[addresses.AddressClass.PRIVATE] = addresses.Scope.GLOBAL
    elif bug == "punch-mi-username":  # PUN-5.1/5.2: MESSAGE-INTEGRITY keyed with the USERNAME, not the ticket

        def probe_wrong_key(ticket: bytes, transaction_id: bytes) -> bytes:
            name = punch.ticket_id(ticket)
            return sm.encode(sm.BINDING, sm.REQUEST, transaction_id, [(sm.USERNAME, name)], key=name, fingerprint=True)

        punch.probe = probe_wrong_key
    elif bug == "punch-birthday-2048":  # PUN-4.3.2: the stable side scans twice its budget
        punch_plan.BIRTHDAY_SCAN = 2048  # type: ignore[misc]
    elif bug == "keepalive-no-resend":  # NAT-5.3: an unanswered keepalive waits a whole interval
        keeper_timer = keepalive.BindingKeeper.handle_timer

        def no_resend(self: Any, now: float) -> None:
            pending = self._txid is not None and self._due is not None and now >= self._due
            keeper_timer(self, now)
            if pending:
                self._due = now + self.interval

        keepalive.BindingKeeper.handle_timer = no_resend  # type: ignore[method-assign]
    elif bug == "search-no-warm-gap":  # NAT-4.2: the second warm-up at once, not 3 s after the first
        import functools

        from p2pos.proto.nat import binding_timeout

        binding_timeout.SearchConfig = functools.partial(binding_timeout.SearchConfig, warm_gap=0.5)  # type: ignore[misc,assignment]
    elif bug == "pcp-nonce-per-request":  # MAP-4.3: a new nonce for every request, renewals and deletion included
        from p2pos.proto.nat import portmap_pcp

        pcp_request = portmap_pcp.PcpClient._request

        def fresh_nonce(self: Any, lifetime: int) -> bytes:
            self.nonce = bytes(self.random(12))
            return pcp_request(self, lifetime)

        portmap_pcp.PcpClient._request = fresh_nonce  # type: ignore[method-assign]
    elif bug == "portmap-renew-at-expiry":  # MAP-5.1: renewed when the lifetime ends, not at half of it
        from p2pos.proto.nat import portmap_common

        portmap_common.PortMapping.renew_at = property(lambda self: self.granted_at + self.lifetime)  # type: ignore[method-assign,assignment]
    elif bug == "keepalive-one-flow":  # NAT-5.2: the node's flow only, whatever the NAT
        keepalive.keepalive_flows = lambda mapping, filtering, server, peers: [server]
    elif bug.startswith("upnp-"):
        _install_upnp_bug(bug)


def _install_upnp_bug(bug: str) -> None:
    """The UPnP IGD client's rules (portmap.md §7), broken one at a time."""
    import re

    from p2pos.proto.nat import portmap_upnp as up
    from p2pos.proto.nat import portmap_upnp_client as upc

    if bug == "upnp-no-725-retry":  # MAP-7.2: OnlyPermanentLeasesSupported taken as a refusal
        refusal = upc.UpnpClient._refusal

        def no_permanent(self: Any, code: int, reason: str, now: float) -> None:
            if code == up.ONLY_PERMANENT:
                self._fail(reason, now, result=code)
            else:
                refusal(self, code, reason, now)

        upc.UpnpClient._refusal = no_permanent  # type: ignore[method-assign]
    elif bug == "upnp-parses-dtd":  # MAP-7.3: a DTD handed to the parser, which expands its entities
        up._DTD = re.compile(rb"(?!)")
    elif bug == "upnp-no-delete-in-flight":  # MAP-7.4: only a mapping already granted is deleted
        remove = upc.UpnpClient.remove

        def only_granted(self: Any, now: float) -> None:
            if self.mapping is None:
                self._step = ""
            remove(self, now)

        upc.UpnpClient.remove = only_granted  # type: ignore[method-assign]
    elif bug == "upnp-ppp-first":  # MAP-7.1: the services tried in the reverse order, WANPPPConnection:1 first
        up.SERVICES = (up.SERVICES[2], up.SERVICES[1], up.SERVICES[0])  # type: ignore[misc]
