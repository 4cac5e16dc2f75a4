"""The ``p2pos`` command.

p2pos id [--home DIR] [--show-key-path]   create or show the local identity
p2pos check-id PEER_ID                     validate a peer id (typo check)
p2pos demo [--in-process]                  a local p2pos network moves a file (netdemo.py)
p2pos version                              the version, the Python, and which core runs
p2pos relay [--listen HOST:PORT [--alternate HOST:PORT]] [--ws HOST:PORT [--tls-cert F --tls-key F]]
            [--offer-relay URL] [--home DIR]  a rendezvous node and/or a WebSocket relay
p2pos nat-check [--server HOST:PORT]... [--json]
                                           what the router does to UDP (natcheck.py)
p2pos up | status | serve | pipe | expose | forward | verify | plugin | events | stop
                                           the daemon and its clients (cli_apps.py)
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

import trio

from p2pos.proto import InvalidPeerId, PeerId, __version__

from . import build_info, keystore
from .home import Home, SettingsError
from .malloc_tuning import tune_malloc


def _cmd_id(args: argparse.Namespace) -> int:
    path = Home.chosen(args.home).identity  # the daemon's identity (the same folders as `p2pos up`)
    identity, created = keystore.load_or_create(path)
    if created:
        print(f"created a new identity in {path}", file=sys.stderr)
    elif keystore.insecure_permissions(path):
        print(f"warning: {path} is readable by other users; run: chmod 600 {path}", file=sys.stderr)
    print(identity.peer_id)
    if args.show_key_path:
        print(path)
    return 0


def _cmd_check_id(args: argparse.Namespace) -> int:
    try:
        peer = PeerId.parse(args.peer_id)
    except InvalidPeerId as exc:
        print(f"p2pos: invalid peer id: {exc}", file=sys.stderr)
        return 1
    print(f"valid peer id {peer}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.in_process:
        from .demo import run_demo

        trio.run(run_demo)
        return 0
    from .netdemo import main as network_demo

    return network_demo()


def _cmd_version(args: argparse.Namespace) -> int:
    for line in build_info.describe(build_info.build_info()):
        print(line)
    return 0


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host.strip("[]") or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (e.g. 127.0.0.1:3478 or [::1]:3478), got {text!r}")
    return host.strip("[]"), int(port)


def _cmd_relay(args: argparse.Namespace) -> int:
    import signal

    from p2pos.proto.errors import ProtocolError
    from p2pos.proto.handshake.handshake import LocalKeys
    from p2pos.proto.relay.server import RelayConfig
    from p2pos.proto.rendezvous.node import NodeConfig

    from . import logs
    from .home import Home
    from .relay import RelayServer, bootstrap_string, log_stats, own_relay_url, tls_context, ws_relay

    if args.listen is None and args.ws is None:
        print(
            "p2pos: relay: give --listen HOST:PORT (rendezvous node), --ws HOST:PORT (relay) or both", file=sys.stderr
        )
        return 2
    if args.alternate is not None and args.listen is None:
        print("p2pos: relay: --alternate goes with --listen", file=sys.stderr)
        return 2
    if (args.tls_cert is None) != (args.tls_key is None) or (args.tls_cert and args.ws is None):
        print("p2pos: relay: --tls-cert and --tls-key go together, with --ws", file=sys.stderr)
        return 2
    logs.setup(args.log_level)
    home = Home.chosen(args.home)
    identity, created = keystore.load_or_create(home.identity)
    if created:
        print(f"created a new identity in {home.identity}", file=sys.stderr)
    keys = LocalKeys.generate(identity)
    try:
        config = NodeConfig(
            default_lease=args.default_lease,
            lookup_rate=args.lookup_rate,
            lookup_burst=args.lookup_burst,
            register_rate=args.register_rate,
            register_burst=args.register_burst,
            max_registrations=args.max_registrations,
            relays=tuple(args.offer_relay),
        )
        relay_config = RelayConfig(
            names=tuple(name.lower() for name in args.name),
            max_wants=args.max_wants,
            links_per_address=args.links_per_address,
            unauthenticated_per_address=args.unauthenticated_per_address,
            link_rate=args.link_rate,
            link_burst=args.link_burst,
            address_rate=args.address_rate,
            address_burst=args.address_burst,
            queue_bytes=args.queue_bytes,
        )
        context = tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    except (ValueError, OSError, ProtocolError) as exc:
        print(f"p2pos: relay: {exc}", file=sys.stderr)
        return 2
    where = ""

    async def serve() -> None:
        nonlocal where
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                server = None
                if args.listen is not None:
                    where = "{}:{} (UDP)".format(*args.listen)
                    server = await RelayServer.bind(
                        keys, args.listen[0], args.listen[1], config=config, alternate=args.alternate
                    )
                if args.ws is not None:
                    where = "{}:{} (TCP)".format(*args.ws)
                    relay = ws_relay(relay_config, node=server, ssl_context=context)
                    await nursery.start(relay.serve, args.ws[0], args.ws[1])
                    if args.stats_interval > 0:
                        nursery.start_soon(log_stats, relay.core, args.stats_interval)
                    host, port = relay.addresses[0]
                    shown = f"[{host}]" if ":" in host else host
                    scheme = "wss" if context is not None else "ws"
                    print(f"relay listening on {scheme}://{shown}:{port}/p2pos/relay/v1", flush=True)
                    own = own_relay_url(scheme, args.name, host, port)
                    if server is not None and own is not None and own not in config.relays and not args.no_offer:
                        offered = (own, *config.relays)[:8]
                        server.node.config = dataclasses.replace(config, relays=offered)
                        print(f"offering relays to registered peers: {', '.join(offered)}", flush=True)
                if server is not None:
                    await nursery.start(server.run)
                    print(
                        f"rendezvous node {identity.peer_id} listening on UDP {server.address[0]}:{server.address[1]}"
                    )
                    print(f"bootstrap: {bootstrap_string(keys, server.address)}", flush=True)
                    if server.node.stun.alternate is not None:
                        alt_host, alt_port = server.node.stun.alternate
                        print(
                            f"STUN behaviour discovery (RFC 5780): alternate address {alt_host}:{alt_port}", flush=True
                        )
                async for _ in signals:
                    nursery.cancel_scope.cancel()

    tune_malloc()
    try:
        trio.run(serve)
    except (OSError, ValueError) as exc:
        message = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        print(f"p2pos: relay: cannot listen on {where}: {message}", file=sys.stderr)
        return 1
    return 0


def _cmd_nat_check(args: argparse.Namespace) -> int:
    from .natcheck import main as nat_check

    return nat_check(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="p2pos", description="p2pos peer-to-peer application server")
    parser.add_argument("--version", action="version", version=f"p2pos {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_id = sub.add_parser("id", help="create or show the local identity")
    p_id.add_argument(
        "--home", help=f"the home folder (default ${keystore.DEFAULT_HOME_ENV}, else $XDG_CONFIG_HOME/p2pos)"
    )
    p_id.add_argument("--show-key-path", action="store_true", help="also print the key file's path")
    p_id.set_defaults(func=_cmd_id)
    p_check = sub.add_parser("check-id", help="check a peer id for typos")
    p_check.add_argument("peer_id")
    p_check.set_defaults(func=_cmd_check_id)
    p_demo = sub.add_parser(
        "demo", help="a rendezvous node and two daemons on this machine; a file through p2pos pipe/serve"
    )
    p_demo.add_argument(
        "--in-process", action="store_true", help="instead: two nodes in this process, three channels at once"
    )
    p_demo.set_defaults(func=_cmd_demo)
    p_version = sub.add_parser(
        "version", help="show the version, the Python, and whether the core is compiled (mypyc) or pure Python"
    )
    p_version.set_defaults(func=_cmd_version)
    p_relay = sub.add_parser(
        "relay",
        help="run a rendezvous node (peers register, look each other up, are introduced) and/or a WebSocket relay",
    )
    p_relay.add_argument("--listen", type=_host_port, metavar="HOST:PORT", help="the rendezvous node's UDP address")
    p_relay.add_argument(
        "--ws",
        type=_host_port,
        metavar="HOST:PORT",
        help="serve the WebSocket relay (spec/relay.md) on this TCP address",
    )
    p_relay.add_argument(
        "--alternate",
        type=_host_port,
        metavar="HOST:PORT",
        help="a second IP address and port for STUN behaviour discovery (RFC 5780; `p2pos nat-check`): the node "
        "also answers on the other IP x port pairs; both IP and port differ from --listen's (port 0: any)",
    )
    p_relay.add_argument("--tls-cert", metavar="FILE", help="PEM certificate chain: serve wss:// (e.g. on port 443)")
    p_relay.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    p_relay.add_argument(
        "--name",
        action="append",
        default=[],
        help="a host name clients use for this relay (repeatable; default: the Host header they send)",
    )
    p_relay.add_argument(
        "--offer-relay",
        action="append",
        default=[],
        metavar="URL",
        help="a ws:// or wss:// relay the rendezvous node offers its peers (repeatable, at most 8; "
        "spec/rendezvous.md §4.5); with --ws and --listen the node also offers its own relay",
    )
    p_relay.add_argument(
        "--no-offer", action="store_true", help="with --ws and --listen: do not offer this relay to the node's peers"
    )
    p_relay.add_argument("--max-wants", type=int, default=1024, help="WANTs a relay link may hold")
    p_relay.add_argument("--links-per-address", type=int, default=16, help="relay links per IPv4 address or IPv6 /64")
    p_relay.add_argument(
        "--unauthenticated-per-address", type=int, default=4, help="relay links not yet authenticated per address"
    )
    p_relay.add_argument("--link-rate", type=int, default=16 << 20, help="bytes a second a relay link may send")
    p_relay.add_argument("--link-burst", type=int, default=64 << 20, help="burst of --link-rate, bytes")
    p_relay.add_argument("--address-rate", type=int, default=32 << 20, help="bytes a second per source address")
    p_relay.add_argument("--address-burst", type=int, default=128 << 20, help="burst of --address-rate, bytes")
    p_relay.add_argument(
        "--stats-interval", type=float, default=60.0, help="seconds between the relay's counter log lines (0: none)"
    )
    p_relay.add_argument(
        "--queue-bytes", type=int, default=1 << 20, help="bytes waiting for one receiver before records are dropped"
    )
    p_relay.add_argument("--home", help="state folder holding the node's identity")
    p_relay.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p_relay.add_argument("--default-lease", type=int, default=600, help="seconds granted when a peer asks 0")
    p_relay.add_argument("--lookup-rate", type=float, default=20.0, help="lookups a second per registered peer")
    p_relay.add_argument("--lookup-burst", type=float, default=100.0, help="lookup burst per registered peer")
    p_relay.add_argument("--register-rate", type=float, default=10.0, help="new sessions a second per source IP")
    p_relay.add_argument("--register-burst", type=float, default=10.0, help="new-session burst per source IP")
    p_relay.add_argument("--max-registrations", type=int, default=100_000)
    p_relay.set_defaults(func=_cmd_relay)
    p_nat = sub.add_parser(
        "nat-check",
        help="find out what the router does to UDP (mapping, filtering, ports, hairpinning, reachability)",
        description="Ask the configured rendezvous nodes (or --server) the RFC 5780 tests and explain the answers.",
    )
    p_nat.add_argument(
        "--server",
        action="append",
        type=_host_port,
        metavar="HOST:PORT",
        help="a STUN server to ask (repeatable; default: the bootstrap nodes of the daemon's settings)",
    )
    p_nat.add_argument("--json", action="store_true", help="print the raw findings as JSON")
    p_nat.add_argument("--home", help="the daemon's home folder (its settings name the rendezvous nodes)")
    p_nat.add_argument("--sockets", type=int, default=4, help="UDP sockets to use (2 at least; more: more samples)")
    p_nat.set_defaults(func=_cmd_nat_check)
    from .cli_apps import add_commands

    add_commands(sub, "the daemon's home folder (default $P2POS_HOME, else the XDG folders)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    after: list[str] | None = None
    if "--" in argv:  # `p2pos serve SERVICE [OPTIONS] -- CMD ...`: CMD is not ours to parse
        cut = argv.index("--")
        argv, after = argv[:cut], argv[cut + 1 :]
    args = build_parser().parse_args(argv)
    if after is not None:
        if not hasattr(args, "command_line"):
            print(f"p2pos {args.command}: nothing may follow --", file=sys.stderr)
            return 2
        args.command_line = after
    try:
        result: int = args.func(args)
    except keystore.KeyStoreError as exc:
        print(f"p2pos: {exc}", file=sys.stderr)
        return 2
    except SettingsError as exc:
        print(f"p2pos: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
