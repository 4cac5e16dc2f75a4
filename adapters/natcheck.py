"""``p2pos nat-check``: what the router does to UDP, in words (spec/nat.md §3).

The sans-IO ``NatDiscovery`` (p2pos_proto/nat/discovery.py) does the work, driven by
``natprobe.discover`` (which the daemon runs too, spec/nat.md §3.6); this file picks the servers
and explains the ``NatReport`` to a person.
It asks each rendezvous node of the daemon's settings (``bootstrap``) or each ``--server``:
a node started with ``p2pos relay --alternate`` can answer every test; any other STUN server
answers the ones that need no second address.  Fresh sockets are used, not the daemon's: the
router treats them alike, and the daemon need not run.
"""

from __future__ import annotations

import argparse
import json
import sys

import trio

from p2pos.proto.nat.discovery import Allocation, Behaviour, NatReport

from .home import Home, SettingsError
from .natprobe import discover

Address = tuple[str, int]
#: One server's report (natprobe.discover, which the daemon runs too).
check = discover


_MAPPING = {
    Behaviour.ENDPOINT_INDEPENDENT: (
        "Your router keeps the same public port for every destination (endpoint-independent mapping): "
        "direct connections will work with most peers."
    ),
    Behaviour.ADDRESS_DEPENDENT: (
        "Your router picks a new public port for each destination address (address-dependent mapping): "
        "direct connections need the peer's router to be easy, or port prediction."
    ),
    Behaviour.ADDRESS_AND_PORT_DEPENDENT: (
        "Your router picks a new public port for each destination address and port (address-and-port-dependent "
        "mapping, a 'symmetric NAT'): direct connections need the peer's router to be easy, or port prediction."
    ),
}
_FILTERING = {
    Behaviour.ENDPOINT_INDEPENDENT: (
        "Once you have sent, anyone may send to you at that public port (endpoint-independent filtering)."
    ),
    Behaviour.ADDRESS_DEPENDENT: (
        "Only addresses you have sent to may send to you, from any of their ports (address-dependent filtering)."
    ),
    Behaviour.ADDRESS_AND_PORT_DEPENDENT: (
        "Only the exact address and port you have sent to may send back to you "
        "(address-and-port-dependent filtering): both sides must send for a direct connection."
    ),
}


def _show(address: Address | None) -> str:
    if address is None:
        return "?"
    return f"[{address[0]}]:{address[1]}" if ":" in address[0] else f"{address[0]}:{address[1]}"


def describe(report: NatReport) -> list[str]:
    """The report in sentences, one a line."""
    lines = [f"Asked {_show(report.server)} from {_show(report.local)}."]
    if not report.udp:
        lines.append(
            "No answer at all: UDP to this server is blocked (or it is down). "
            "p2pos will use a relay (WebSocket or TURN over TCP) to reach peers."
        )
        return lines
    if report.nat:
        lines.append(f"Your public address is {_show(report.mapped)}: a router translates your address (NAT).")
    else:
        lines.append(f"The server sees your own address {_show(report.mapped)}: no address translation.")
    if report.public:
        lines.append(
            "No NAT / public: an answer from another address and port reached you unasked, "
            "so peers can connect to you directly."
        )
    elif not report.alternate:
        lines.append(
            "This server has no second address, so mapping, filtering and reachability are unknown "
            "(start the node with `p2pos relay --alternate HOST:PORT`)."
        )
    if report.mapping is not None and (report.nat or report.mapping is not Behaviour.ENDPOINT_INDEPENDENT):
        lines.append(_MAPPING[report.mapping])
    if report.filtering is not None and not report.public:
        lines.append(_FILTERING[report.filtering])
        if not report.nat:
            lines.append("No NAT, but a firewall filters what arrives unasked: you are not reachable from anywhere.")
    if report.nat:
        if report.port_preservation:
            lines.append("It keeps your own port number as the public one where it can (port preservation).")
        dependent = report.mapping is not None and report.mapping is not Behaviour.ENDPOINT_INDEPENDENT
        if report.allocation is Allocation.SEQUENTIAL:
            lines.append(
                f"New public ports come in sequence (each {report.allocation_delta:+d} from the last), "
                "so the port it will use towards a peer can be predicted."
            )
        elif report.allocation is Allocation.RANDOM and dependent:
            lines.append(
                "New public ports are random, so the port it will use towards a peer cannot be predicted: "
                "a direct path needs the peer's router to be easy, or many probes."
            )
        if report.hairpinning is True:
            lines.append("Two devices behind it can reach each other at their public addresses (hairpinning).")
        elif report.hairpinning is False:
            lines.append(
                "Two devices behind it cannot reach each other at their public addresses (no hairpinning): "
                "they must use their local addresses."
            )
    lines.append(f"({report.probes} STUN requests sent.)")
    return lines


async def _servers(args: argparse.Namespace) -> list[Address]:
    if args.server:  # resolved now: discovery compares the addresses answers name
        out = []
        for host, port in args.server:
            try:
                infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_DGRAM)
            except OSError as exc:
                raise SettingsError(f"--server {host}:{port}: cannot resolve {host}: {exc}") from None
            out.append((str(infos[0][4][0]), int(infos[0][4][1])))
        return out
    from .home import Settings
    from .rendezvous import Bootstrap

    home = Home.chosen(args.home)
    settings = Settings.load(home.config_file, {})
    if not settings.bootstrap:
        raise SettingsError("no rendezvous node is configured: give --server HOST:PORT or p2pos up --bootstrap ...")
    out = []
    for text in settings.bootstrap:
        bootstrap = Bootstrap.parse(text)
        addresses = await bootstrap.resolve({trio.socket.AF_INET, trio.socket.AF_INET6})
        out.append(addresses[0])
    return out


def main(args: argparse.Namespace) -> int:
    """``p2pos nat-check``: 0 if some server answered, 1 if none did, 2 on a usage error."""
    if args.sockets < 2:
        print("p2pos: nat-check: --sockets is 2 at least", file=sys.stderr)
        return 2

    async def run() -> list[NatReport]:
        return [await check(server, sockets=args.sockets) for server in await _servers(args)]

    try:
        reports = trio.run(run)
    except SettingsError as exc:
        print(f"p2pos: nat-check: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"p2pos: nat-check: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([r.to_json() for r in reports], indent=1))
    else:
        print("\n\n".join("\n".join(describe(r)) for r in reports))
    return 0 if any(r.udp for r in reports) else 1
