"""Which hole-punching strategy a pair of NATs needs, and each side's part of it (spec/punch.md §3).

Both sides of an introduction know both profiles (their own, measured; the peer's, from the
introduction), so ``plan(mine, theirs)`` on one side and ``plan(theirs, mine)`` on the other give
the two halves of one strategy with no negotiation.  A plan says what this side sends while
punching; ``punch.Puncher`` sends it.

The strategies, by what the two NATs do (spec/punch.md §3.2-§3.6):

* **dial** (every pair with UDP; the only strategy while either NAT is unmeasured): probes from
  the main socket to the peer's addresses, repeated on a schedule timed from the RTT.  Alone it
  connects a pair where either side is open (public, full cone, port-mapped), where both map
  endpoint-independently (the simultaneous open), and where a side that scatters its mappings
  faces a peer filtering by address only;
* **predict**: the peer allocates sequentially: this side also probes the ports its next mappings
  will take (``observed + k * delta``);
* **birthday**: one side scatters (random ports per destination) and the other maps
  endpoint-independently behind an address-and-port filter: the scattering side opens ``sockets``
  extra sockets and probes the peer's observed address from each (each makes a mapping that
  accepts the peer); the stable side probes ``scan`` random ports of the scattering side's address
  from its main socket; a probe that lands on one of those mappings connects (about 98% for 256
  sockets and 1,024 probes over 64,512 ports);
* **relay only**: UDP blocked on either side, or both sides scatter (or one scatters and the
  other allocates sequentially): no bounded search finds a pair of mappings; the relay carries
  the session.

IPv6 pairs (an IPv6 socket of this side and an IPv6 address of the peer) need no table: IPv6 has
no translation, at most a stateful firewall on each side, a stable mapping behind an address and
port filter, so both sides dial each other, whatever the IPv4 row (``IPV6_PLAN``, §3.9); the
profiles describe the IPv4 NATs only.
"""

from __future__ import annotations

import dataclasses
from typing import Final

from .profile import Filtering, Mapping, NatProfile

#: Budgets (spec/punch.md §4): extra sockets and scan probes of a birthday attack, predicted ports.
BIRTHDAY_SOCKETS: Final = 256
BIRTHDAY_SCAN: Final = 1024
#: Predicted ports of a sequential peer when this side is stable (§3.4), in PREDICT_ROUNDS rounds.
PREDICT_PORTS: Final = 16
PREDICT_ROUNDS: Final = 2
#: Both sides sequential (§3.5): the leader probes the follower's next LEAD_PORTS ports in order,
#: the follower every second one of the leader's next ports, FOLLOW_PORTS of them, each in
#: PREDICT_ROUNDS rounds: a matching pair exists while the ports other hosts took on the two NATs
#: since the observed mappings add up to FOLLOW_PORTS - 1 at most (and each is under LEAD_PORTS - FOLLOW_PORTS).
LEAD_PORTS: Final = 28
FOLLOW_PORTS: Final = 19


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """One side's part of the strategy for a pair (spec/punch.md §3)."""

    #: Whether a direct path is worth trying at all; if not, ``why`` says why (the relay carries it).
    direct: bool
    why: str
    #: Probe the peer's observed address from the main socket (its other candidates are always dialled).
    dial: bool = False
    #: How many of the peer's next sequentially allocated ports to probe: ``observed + k * step *
    #: delta`` less ``(step - 1) * delta``, for k = 1..predict (step 1: every port; 2: every second),
    #: the whole sequence ``rounds`` times (§3.4, §3.5).
    predict: int = 0
    predict_step: int = 1
    rounds: int = 0
    #: Extra local sockets (besides the main one), each probing the peer's observed address once
    #: (the scattering side of a birthday: BIRTHDAY_SOCKETS in all).
    sockets: int = 0
    #: Random ports of the peer's observed IP address to probe from the main socket (the stable side).
    scan: int = 0
    #: This side allocates sequentially and the peer predicts its ports: it takes a fresh mapping at
    #: the start (a Binding to its node's other address) so that the peer predicts from it (§3.4, §3.5).
    fresh: bool = False


#: The plan of an IPv6 socket's punch (spec/punch.md §3.9): a plain dial of the peer's IPv6 addresses
#: from it, on both sides, so that each side's stateful firewall opens for the other (simultaneous open).
IPV6_PLAN: Final = Plan(direct=True, why="IPv6: stateful firewalls at most: simultaneous open", dial=True)


def plan(mine: NatProfile, theirs: NatProfile, *, leading: bool) -> Plan:
    """This side's part, given its own profile and the peer's (spec/punch.md §3.1's table).
    ``leading``: this side asked for the introduction (the other side passes False); it breaks
    the tie where both sides do the same kind of thing differently (§3.5)."""
    if mine.udp_blocked or theirs.udp_blocked:
        return Plan(direct=False, why="UDP is blocked on " + ("this side" if mine.udp_blocked else "the peer's side"))
    if mine.open or theirs.open:
        who = "this side" if mine.open else "the peer"
        return Plan(direct=True, why=f"{who} accepts unsolicited packets: a plain dial", dial=True)
    if Mapping.UNKNOWN in (mine.mapping, theirs.mapping):
        return Plan(direct=True, why="a NAT not measured yet: a plain dial (nothing costlier unmeasured)", dial=True)
    if mine.stable and theirs.stable:
        return Plan(direct=True, why="both map endpoint-independently: simultaneous open", dial=True)
    if mine.sequential and theirs.sequential:
        why = "both allocate sequentially: both predict, "
        if leading:
            return Plan(direct=True, why=why + "every port", predict=LEAD_PORTS, rounds=PREDICT_ROUNDS, fresh=True)
        return Plan(
            direct=True,
            why=why + "every second port",
            predict=FOLLOW_PORTS,
            predict_step=2,
            rounds=PREDICT_ROUNDS,
            fresh=True,
        )
    if theirs.sequential and mine.stable:
        return Plan(
            direct=True,
            why="the peer allocates sequentially: predicted ports",
            dial=True,
            predict=PREDICT_PORTS,
            rounds=PREDICT_ROUNDS,
        )
    if mine.sequential and theirs.stable:
        return Plan(direct=True, why="this side allocates sequentially: the peer predicts", dial=True, fresh=True)
    # From here one side at least scatters its mappings (random or unknown allocation per destination).
    if mine.scattering and theirs.scattering:
        return Plan(direct=False, why="both sides pick a new port per destination: relay")
    if mine.scattering != theirs.scattering and (mine.sequential or theirs.sequential):
        return Plan(direct=False, why="one side scatters, the other allocates per destination: relay")
    stable = theirs if mine.scattering else mine
    if stable.filtering is Filtering.ADDRESS_DEPENDENT:
        return Plan(direct=True, why="a scattering side facing an address filter: a plain dial", dial=True)
    if mine.scattering:
        return Plan(
            direct=True,
            why="this side scatters: birthday probing (many sockets)",
            sockets=BIRTHDAY_SOCKETS - 1,  # and the main socket
        )
    return Plan(direct=True, why="the peer scatters: birthday probing (random ports)", scan=BIRTHDAY_SCAN)
