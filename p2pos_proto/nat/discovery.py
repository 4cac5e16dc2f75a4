"""NAT behaviour discovery in the manner of RFC 5780, sans-IO (spec/nat.md §3).

``NatDiscovery`` asks one STUN server (a rendezvous node, ideally one with an alternate
address: RFC 5780 §4.1) from two or more of the caller's UDP sockets and reports, in a
``NatReport``: the mapping and filtering behaviour (endpoint-independent, address-dependent,
address-and-port-dependent), port preservation, the allocation pattern (preserved, sequential
with its delta, or random), hairpinning, and whether the host is publicly reachable, which is
only ever proven by an answer that came from another IP address and port (a dial-back), never
guessed from "mapped == local".

Sockets are numbered 0..n-1 (``locals``: their bound addresses).  Socket 0 runs the mapping
tests (§4.3) and then the hairpinning test (§4.5); socket 1 runs the filtering tests (§4.4),
talking only to the primary address so that nothing but the server's CHANGE-REQUEST answers
reach it from elsewhere; sockets 1..n-1 each ask the primary once, for more allocation samples.

Drive it like the STUN client: send ``datagrams_to_send(now)`` (``(data, to, socket)``), feed
every datagram of those sockets to ``receive_datagram``, fire ``handle_timer`` at ``get_timer``,
and read ``report`` once ``done``.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import itertools
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Final

from ..errors import LocalProtocolError
from . import profile as pf
from . import stun_message as sm
from .stun_client import BindingFailed, BindingSucceeded, RetransmitConfig, StunClient

Address = tuple[str, int]
#: Discovery's retransmissions: a test that gets no answer is a result, so it fails sooner than
#: RFC 8489's 39.5 s: sends at 0, 0.5, 1.5 and 3.5 s, failure at 5.5 s (spec/nat.md §3.2).
DISCOVERY_RETRANSMIT: Final = RetransmitConfig(rto=0.5, rc=4, rm=4)
#: Consecutive allocations at most this far apart, all in one direction, are "sequential".
MAX_SEQUENTIAL_DELTA: Final = 32


class Behaviour(enum.Enum):
    """How a NAT maps or filters (RFC 4787 §4.1, §5)."""

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


class Allocation(enum.Enum):
    """How a NAT picks the public port of a new mapping."""

    PRESERVED = "preserved"  # the local port, every time
    SEQUENTIAL = "sequential"  # the last one plus a small delta
    RANDOM = "random"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class NatReport:
    """What discovery found; None is "unknown" (spec/nat.md §3.3 says when)."""

    server: Address
    local: Address
    #: The server answered at all (test I): UDP works.
    udp: bool
    mapped: Address | None = None
    #: The mapped address differs from the local one.
    nat: bool | None = None
    #: The server has an alternate address (OTHER-ADDRESS) that answered.
    alternate: bool = False
    #: That address (OTHER-ADDRESS, when it answered): where a sequential side sends its fresh
    #: Bindings when it punches (spec/punch.md PUN-3.4.1).
    other: Address | None = None
    mapping: Behaviour | None = None
    filtering: Behaviour | None = None
    port_preservation: bool | None = None
    allocation: Allocation | None = None
    allocation_delta: int | None = None
    hairpinning: bool | None = None
    #: Reached unsolicited from another IP address and port at the local address itself.
    public: bool | None = None
    #: The public ports of the new mappings, in the order they were made.
    samples: tuple[int, ...] = ()
    #: Requests sent, retransmissions included.
    probes: int = 0

    def to_profile(self) -> pf.NatProfile:
        """The profile the punching plan takes (spec/punch.md §2.1): unknown where not measured
        (PUN-2.1.1); no translation when the mapped address is the local one; no filter when,
        besides, a dial-back arrived (NAT-3.2.6)."""
        if not self.udp:
            return pf.NatProfile(udp_blocked=True)
        kinds = {
            Behaviour.ENDPOINT_INDEPENDENT: 2,
            Behaviour.ADDRESS_DEPENDENT: 3,
            Behaviour.ADDRESS_AND_PORT_DEPENDENT: 4,
        }
        mapping = pf.Mapping.UNKNOWN
        if self.nat is False:
            mapping = pf.Mapping.NONE
        elif self.mapping is not None:
            mapping = pf.Mapping(kinds[self.mapping])
        filtering = pf.Filtering.UNKNOWN
        if self.nat is False and self.public:
            filtering = pf.Filtering.NONE
        elif self.filtering is not None:
            filtering = pf.Filtering(kinds[self.filtering])
        allocation, delta = pf.Allocation.UNKNOWN, 0
        if self.allocation is Allocation.PRESERVED:
            allocation = pf.Allocation.PRESERVING
        elif self.allocation is Allocation.SEQUENTIAL and self.allocation_delta:
            allocation, delta = pf.Allocation.SEQUENTIAL, self.allocation_delta
        elif self.allocation is Allocation.RANDOM:
            allocation = pf.Allocation.RANDOM
        return pf.NatProfile(
            mapping=mapping, filtering=filtering, allocation=allocation, delta=delta, hairpin=self.hairpinning is True
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, enum.Enum):
                value = value.value
            elif isinstance(value, tuple) and field.name in ("server", "local", "mapped", "other"):
                value = f"[{value[0]}]:{value[1]}" if ":" in value[0] else f"{value[0]}:{value[1]}"
            elif isinstance(value, tuple):
                value = list(value)
            out[field.name] = value
        return out


class NatDiscovery:
    """One discovery run against ``server`` from the sockets bound at ``locals`` (two at least)."""

    def __init__(
        self,
        server: Address,
        locals: Sequence[Address],
        now: float,
        *,
        random: Callable[[int], bytes],
        config: RetransmitConfig = DISCOVERY_RETRANSMIT,
    ) -> None:
        if len(locals) < 2:
            raise LocalProtocolError("discovery needs two sockets at least (mapping, filtering)")
        self.server = server
        self.locals = tuple(locals)
        self.client = StunClient(random=random, config=config)
        self._waiting: dict[bytes, str] = {}  # txid -> test name
        self._first: dict[int, Address] = {}  # socket -> its first mapping
        self._samples: list[Address] = []
        self._map: dict[str, Address] = {}
        self._other: Address | None = None
        self._alternate = False
        self._udp = False
        self._filter: dict[str, bool] = {}
        self._hairpin: bool | None = None
        self._hairpin_txid: bytes | None = None
        self._done = False
        self._final = False
        self.stats: collections.Counter[str] = collections.Counter()
        self._ask("map1", self.server, 0, now)

    # -- inputs -----------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, source: Address, now: float, local: Hashable) -> None:
        """A datagram that socket ``local`` received from ``source``.  Never raises for its content."""
        if self._hairpin_txid is not None and self._is_hairpin(data):
            self.client.cancel(self._hairpin_txid)
            self._waiting.pop(self._hairpin_txid, None)
            self._hairpin, self._hairpin_txid = True, None
        elif not self.client.receive_datagram(data, source, now, local):
            self.stats["ignored"] += 1
        self._drain(now)

    def handle_timer(self, now: float) -> None:
        self.client.handle_timer(now)
        self._drain(now)

    # -- outputs ----------------------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address, Hashable]]:
        return self.client.datagrams_to_send(now)

    def get_timer(self) -> float | None:
        return None if self._done else self.client.get_timer()

    @property
    def done(self) -> bool:
        return self._done

    @property
    def report(self) -> NatReport:
        """The findings so far (all of them once ``done``)."""
        local = self.locals[0]
        mapped = self._map.get("map1")
        mapping = filtering = None
        if "map2" in self._map:
            if self._map["map2"] == mapped:
                mapping = Behaviour.ENDPOINT_INDEPENDENT
            elif "map3" in self._map:
                mapping = (
                    Behaviour.ADDRESS_DEPENDENT
                    if self._map["map3"] == self._map["map2"]
                    else Behaviour.ADDRESS_AND_PORT_DEPENDENT
                )
        public = None
        if "filter2" in self._filter and "filter3" in self._filter:
            if self._filter["filter2"]:
                filtering = Behaviour.ENDPOINT_INDEPENDENT
            elif self._filter["filter3"]:
                filtering = Behaviour.ADDRESS_DEPENDENT
            else:
                filtering = Behaviour.ADDRESS_AND_PORT_DEPENDENT
            # A dial-back from the other IP and port reached the socket at its own address.
            public = self._filter["filter2"] and self._first.get(1) == self.locals[1]
        preserved = None
        if self._first:
            preserved = all(address[1] == self.locals[i][1] for i, address in self._first.items())
        allocation, delta = self._allocation(preserved)
        return NatReport(
            server=self.server,
            local=local,
            udp=self._udp,
            mapped=mapped,
            nat=None if mapped is None else mapped != local,
            alternate=self._alternate,
            other=self._other if self._alternate else None,
            mapping=mapping,
            filtering=filtering,
            port_preservation=preserved,
            allocation=allocation,
            allocation_delta=delta,
            hairpinning=self._hairpin,
            public=public,
            samples=tuple(a[1] for a in self._samples),
            probes=self.client.stats["requests"] + self.client.stats["retransmits"],
        )

    # -- the tests ----------------------------------------------------------------------------

    def _ask(self, test: str, to: Address, local: int, now: float, change: int | None = 0) -> None:
        # Every request carries CHANGE-REQUEST (0 if nothing changes) and SOFTWARE: 48 bytes, so
        # even an IPv6 answer with RESPONSE-ORIGIN and OTHER-ADDRESS stays within RDV-5.4.
        txid = self.client.binding(to, now, local=local, change=change)
        self._waiting[txid] = test

    def _drain(self, now: float) -> None:
        while (event := self.client.next_event()) is not None:
            test = self._waiting.pop(event.transaction_id, None)
            if test is None:
                continue
            if isinstance(event, BindingSucceeded):
                self._succeeded(test, event, now)
            else:
                self._failed(test, event, now)
        if self._final and not self._waiting and not self._done:
            self._done = True

    def _sample(self, local: int, mapped: Address) -> None:
        self._first.setdefault(local, mapped)
        if mapped not in self._samples:
            self._samples.append(mapped)

    def _succeeded(self, test: str, event: BindingSucceeded, now: float) -> None:
        if test.startswith("map"):
            self._map[test] = event.mapped
            self._sample(0, event.mapped)
        if test == "map1":
            self._udp = True
            self._other = event.other_address
            if self._other is None or self._other[0] == self.server[0]:
                self._other = None
                self._samples_from(1, now)
            else:
                self._ask("map2", (self._other[0], self.server[1]), 0, now)
        elif test == "map2":
            self._alternate = True
            if event.mapped == self._map["map1"] or self._other is None:
                self._samples_from(1, now)
            else:
                self._ask("map3", self._other, 0, now)
        elif test == "map3":
            if self._other is not None:  # one more sample: the primary IP at the other port
                self._ask("map4", (self.server[0], self._other[1]), 0, now)
        elif test == "map4":
            self._samples_from(1, now)
        elif test.startswith("sample"):
            index = int(test[6:])
            self._sample(index, event.mapped)
            self._samples_from(index + 1, now)
        elif test.startswith("filter"):
            self._filter[test] = True
        elif test == "hairpin":  # a server at our own mapped address answered: not a hairpin
            self._hairpin = False

    def _failed(self, test: str, event: BindingFailed, now: float) -> None:
        self.stats[f"failed_{test}"] += 1
        if test == "map1":  # no answer at all: UDP is blocked (or the server is down)
            self._final = True
        elif test.startswith("map"):  # the alternate does not answer: mapping unknown
            self._samples_from(1, now)
        elif test.startswith("sample"):
            self._samples_from(int(test[6:]) + 1, now)
        elif test.startswith("filter"):
            # A timeout is the negative answer; an error (420: no alternate) leaves it unknown.
            if event.error == 0:
                self._filter[test] = False
        elif test == "hairpin":
            self._hairpin = False

    def _samples_from(self, index: int, now: float) -> None:
        """Ask the primary from socket ``index``; after the last socket, start the final tests."""
        if index < len(self.locals):
            self._ask(f"sample{index}", self.server, index, now)
            return
        self._final = True
        if self._alternate:  # RFC 5780 §4.4 tests II and III, at once, from the filtering socket
            self._ask("filter2", self.server, 1, now, sm.CHANGE_IP | sm.CHANGE_PORT)
            self._ask("filter3", self.server, 1, now, sm.CHANGE_PORT)
        mapped = self._map.get("map1")
        if mapped is not None:  # RFC 5780 §4.5: a request to our own mapping comes back to us?
            self._hairpin_txid = self.client.binding(mapped, now, local=0, change=None)
            self._waiting[self._hairpin_txid] = "hairpin"

    def _is_hairpin(self, data: bytes) -> bool:
        try:
            message = sm.decode_untrusted(data) if sm.is_stun(data) else None
        except sm.StunError:
            return False
        return (
            message is not None
            and message.klass == sm.REQUEST
            and message.method == sm.BINDING
            and message.transaction_id == self._hairpin_txid
        )

    def _allocation(self, preserved: bool | None) -> tuple[Allocation | None, int | None]:
        """The allocation pattern of the new mappings (spec/nat.md §3.3)."""
        if preserved:
            return Allocation.PRESERVED, None
        ports = [a[1] for a in self._samples if self._samples and a[0] == self._samples[0][0]]
        if len(ports) < 3:
            return None, None
        deltas = [b - a for a, b in itertools.pairwise(ports)]
        if all(0 < d <= MAX_SEQUENTIAL_DELTA for d in deltas) or all(-MAX_SEQUENTIAL_DELTA <= d < 0 for d in deltas):
            counts = collections.Counter(deltas)
            delta = min(counts, key=lambda d: (-counts[d], abs(d)))
            return Allocation.SEQUENTIAL, delta
        return Allocation.RANDOM, None
