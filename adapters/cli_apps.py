"""The daemon's commands: ``p2pos up`` runs it; the others talk to it through the app API.

    p2pos up [--home DIR] [--bootstrap PEERID@HOST:PORT]... [--listen HOST:PORT]...
    p2pos status [--json]
    p2pos serve SERVICE (--allow PEER... | --allow-any) -- CMD [ARG...]
    p2pos pipe PEER SERVICE
    p2pos expose SERVICE --to HOST:PORT (--allow PEER... | --allow-any)
    p2pos forward PEER SERVICE --listen HOST:PORT
    p2pos verify PEER [--yes | --sas STRING] [--json]
    p2pos plugin list|start|stop [NAME] [--json]
    p2pos events [--after N]
    p2pos stop

Every failure is one line on stderr and a non-zero exit (1: refused or failed, 2: bad usage or
settings, 3: the daemon is not running), never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .bridge import CHUNK, splice
from .client import Client, ClientError, DaemonNotRunning
from .home import Home, Settings, SettingsError, parse_host_port
from .malloc_tuning import tune_malloc

log = logging.getLogger("p2pos.cli")

EXIT_FAILED, EXIT_USAGE, EXIT_NO_DAEMON = 1, 2, 3


def fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"p2pos: {message}", file=sys.stderr)
    return code


def run_client(body: Callable[[Client], Awaitable[int]], args: argparse.Namespace) -> int:
    """Run a client command; ClientError and the rest become one line and an exit status."""
    home = Home.chosen(args.home)
    client = Client.for_home(home)
    try:
        return trio.run(body, client)
    except DaemonNotRunning:
        return fail(f"the daemon is not running for {home.config} (start it with: p2pos up)", EXIT_NO_DAEMON)
    except ClientError as exc:
        return fail(exc.message)
    except (OSError, trio.BrokenResourceError) as exc:
        return fail(f"the connection to the daemon broke: {exc}")
    except KeyboardInterrupt:
        return 130


def _print(data: Any, as_json: bool, text: Callable[[Any], str]) -> None:
    print(json.dumps(data, indent=1) if as_json else text(data))


# -- up ----------------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    from . import logs
    from .daemon import AlreadyRunning, open_daemon
    from .keystore import KeyStoreError

    home = Home.chosen(args.home)
    overrides = {
        "listen": args.listen,
        "bootstrap": args.bootstrap,
        "api_port": args.api_port,
        "log_level": args.log_level,
        "lease": args.lease,
        "keepalive": args.keepalive,
        "lookup_timeout": args.lookup_timeout,
        "bench": True if args.bench else None,
        "quic": args.quic,  # --quic / --no-quic; None: the config's (on by default)
        "learn_relays": args.learn_relays,
        "port_mapping": args.port_mapping,
        "learn_binding_timeout": args.learn_binding_timeout,
        "idle_close": args.idle_close,
        "relay": args.relay,
        "proxy": args.proxy,
    }
    try:
        settings = Settings.load(home.config_file, overrides)
    except SettingsError as exc:
        return fail(str(exc), EXIT_USAGE)
    logs.setup(settings.log_level, home.logs / "daemon.log")
    tune_malloc()

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with open_daemon(home, settings) as daemon:
                print(f"p2pos daemon {daemon.peer_id} (API: {home.api_socket})", flush=True)
                async with trio.open_nursery() as nursery:

                    async def on_signal() -> None:
                        async for signum in signals:
                            log.info("received %s: stopping", signal.Signals(signum).name)
                            daemon.stop()

                    nursery.start_soon(on_signal)
                    await daemon.stopping.wait()
                    nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    except BaseException as exc:  # trio's nurseries wrap what fails inside them in exception groups
        cause = _first_known(exc, (AlreadyRunning, SettingsError, KeyStoreError, OSError))
        if isinstance(cause, (SettingsError, KeyStoreError)):
            return fail(str(cause), EXIT_USAGE)
        if isinstance(cause, AlreadyRunning):
            return fail(str(cause))
        if isinstance(cause, OSError):
            return fail(f"cannot start: {cause}")
        raise
    logging.getLogger("p2pos.daemon").info("stopped")
    return 0


def _first_known(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> BaseException | None:
    """``exc`` if it is one of ``kinds``, else the first such exception inside an exception group."""
    if isinstance(exc, kinds):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _first_known(inner, kinds)) is not None:
                return found
    return None


# -- status, verify, plugins, events, stop -----------------------------------------------------


def _path_text(path: dict[str, Any]) -> str:
    """One path of a peer: ``  path 1 relay relay:PEERID validated active (better) rtt 3.2 ms, 10 kB out, 9 kB in``."""
    active = f" active ({path['why']})" if path["active"] else ""
    rtt = f" rtt {path['srtt_ms']} ms" if path.get("srtt_ms") is not None else ""
    sent, received = path["bytes_sent"], path["bytes_received"]
    return (
        f"  path {path['path_id']} {path['via']} ({path['kind']}) {path['address']} {path['state']}{active}"
        f"{rtt}, {sent} B out, {received} B in"
    )


def _yes_no(value: object) -> str:
    return "unknown" if value is None else "yes" if value else "no"


def _nat_text(nat: dict[str, Any]) -> list[str]:
    """The ``nat`` object of status (spec/appapi.md API-3.9) in a few lines."""
    if nat.get("udp") is False:
        return [
            f"NAT       UDP blocked: {nat['server']} answers through a relay, not over UDP (sessions use relays)",
            *_keepalive_text(nat),
            *_punching_text(nat),
        ]
    if nat.get("mapped") is None:
        why = {"waiting": "no rendezvous node to ask", "measuring": "measuring"}.get(nat["state"], "no answer")
        error = f" ({nat['error']})" if nat.get("error") else ""
        return [f"NAT       unknown: {why}{error}", *_keepalive_text(nat), *_punching_text(nat)]
    mapping = nat["mapping"] or "unknown"
    if nat["nat"] is False:
        mapping = "none (the node sees our own address)"
    allocation = nat["allocation"] or "unknown"
    if nat["allocation"] == "sequential":
        allocation += f" ({nat['allocation_delta']:+d})"
    lines = [
        f"NAT       public address {nat['mapped']}, mapping {mapping}, filtering {nat['filtering'] or 'unknown'}, "
        f"allocation {allocation}",
        f"          reachable unasked: {_yes_no(nat['public'])}, hairpinning: {_yes_no(nat['hairpinning'])}; "
        f"measured {nat['measured_at']} via {nat['server']}",
    ]
    if nat["state"] != "measured":
        lines.append(f"          now {nat['state']}" + (f" ({nat['error']})" if nat.get("error") else ""))
    return [*lines, *_keepalive_text(nat), *_punching_text(nat)]


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:g} s"


def _punching_text(nat: dict[str, Any]) -> list[str]:
    """The hole punches so far (``nat.punching``, spec/appapi.md API-3.9), in one line."""
    p = nat.get("punching")
    if not isinstance(p, dict) or not p.get("started"):
        return []
    return [
        f"punching {p['started']} started, {p['succeeded']} direct, {p['failed']} failed, {p['active']} active; "
        f"{p['probes_sent']} probes sent"
    ]


def _keepalive_text(nat: dict[str, Any]) -> list[str]:
    """The binding timeout and the keepalives in force (``nat.keepalive``, spec/appapi.md API-3.9), in words."""
    keep = nat.get("keepalive")
    timeout = nat.get("binding_timeout")
    if not isinstance(keep, dict):
        return [f"          binding timeout: {'not learned' if timeout is None else f'{timeout:g} s'}"]
    state, interval = keep["state"], _seconds(keep["interval"])
    peers = f", peer sessions every {_seconds(keep['peer_interval'])}"
    if state == "mapped":
        return [f"keepalive not learned: {keep['reason']}; keepalives every {interval} for liveness{peers}"]
    if state == "learned":
        low, high = keep["bracket"] or [timeout, None]
        bound = f"at least {low:g} s" if high is None else f"{timeout:g} s (dead at {high:g} s)"
        flows = "one flow keeps every peer" if keep["flows"] == "node" else "each peer's flow kept apart"
        return [
            f"keepalive binding timeout {bound}, learned in {keep['learning_seconds']:g} s "
            f"({keep['search_datagrams']} datagrams) from {keep['server']}; keepalives every {interval}{peers} "
            f"({flows}); {keep['keepalives_sent']} sent, {keep['keepalives_answered']} answered"
        ]
    if state == "learning":
        low, high = keep["bracket"] or [0, None]
        known = "nothing known yet" if not low else f"longer than {low:g} s"
        if high is not None:
            known += f", shorter than {high:g} s"
        return [f"keepalive learning the binding timeout ({known}); keepalives every {interval} meanwhile{peers}"]
    why = f": {keep['reason']}" if keep.get("reason") else ""
    words = {"off": "not learned", "waiting": "not learned yet", "failed": "could not be learned"}
    word = words.get(state, "not needed")
    return [f"keepalive binding timeout {word}{why}; keepalives every {interval} (the keepalive setting)"]


def _status_text(status: dict[str, Any]) -> str:
    lines = [f"peer id   {status['peer_id']}", f"core      {status['core']}  (p2pos {status['version']})"]
    lines.append(f"UDP       {', '.join(status['addresses'])}")
    for r in status["registrations"] or [{"node": None}]:
        if r["node"] is None and "state" not in r:
            lines.append("rendezvous  none configured (p2pos up --bootstrap PEERID@HOST:PORT)")
        else:
            seen = f", sees us at {r['observed']}" if r.get("observed") else ""
            lines.append(f"rendezvous  {r['address']} {r['state']}{seen}  ({r['node'] or 'key not pinned yet'})")
    if "nat" in status:
        lines.extend(_nat_text(status["nat"]))
    for p in status["peers"]:
        mark = " verified" if p["verified"] else ""
        lines.append(
            f"peer      {p['peer_id']} {p['path']} {p['address']} rtt {p['rtt_ms']} ms, {p['channels']} channels{mark}"
        )
        for path in p.get("paths", []):
            lines.append(_path_text(path))
    for s in status["services"]:
        who = "any peer" if s["allow_any"] else ", ".join(s["allow"])
        lines.append(f"service   {s['name']} ({s['kind']}) allows {who}")
    for p in status["plugins"]:
        lines.append(f"plugin    {p['name']} {p['state']}" + (f" ({p['error']})" if p.get("error") else ""))
    for r in status.get("relays", []):
        where = f" relayed {r['relayed']}" if r.get("relayed") else ""
        why = f" ({r['last_error']})" if r.get("last_error") else ""
        lines.append(f"relay     {r['url']} {r['kind']} {r['state']}{where}, {r['dropped']} dropped{why}")
    for mp in status.get("port_mappings", []):
        life = "permanent" if mp["lifetime"] is None else f"{mp['lifetime']:.0f} s"
        lines.append(f"mapped    UDP {mp['port']} at {mp['external']} by {mp['protocol']} ({life})")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    async def body(client: Client) -> int:
        _print(await client.status(), args.json, _status_text)
        return 0

    return run_client(body, args)


def cmd_verify(args: argparse.Namespace) -> int:
    async def body(client: Client) -> int:
        answer = await client.sas(args.peer)
        sas = answer["sas"]
        if args.json and not (args.yes or args.sas):
            _print(answer, True, str)
            return 0
        print(f"peer {answer['peer_id']}\nshort authentication string: {sas}")
        print("Both of you must see the same string; compare it over a channel you trust (in person, a call).")
        confirmed = args.sas
        if args.yes:
            confirmed = sas
        elif confirmed is None and sys.stdin.isatty():
            reply = await trio.to_thread.run_sync(input, "Does the other person see the same string? [y/N] ")
            confirmed = sas if reply.strip().lower() in ("y", "yes") else None
        if confirmed is None:
            print("not marked verified" + (" (already verified before)" if answer["verified"] else ""))
            return 0
        result = await client.verify(args.peer, confirmed)
        print(f"peer {result['peer_id']} is verified; the daemon remembers it")
        return 0

    return run_client(body, args)


def cmd_path(args: argparse.Namespace) -> int:
    async def body(client: Client) -> int:
        if args.pin or args.unpin:
            answer = await client.pin(args.peer, None if args.unpin else args.pin)
        else:
            status = await client.status()
            entry = next((p for p in status["peers"] if p["peer_id"] == args.peer), None)
            if entry is None:
                return fail(f"no session with peer {args.peer}", 1)
            answer = {"peer_id": entry["peer_id"], "pin": entry.get("pin"), "paths": entry["paths"]}
        _print(answer, args.json, _pin_text)
        return 0

    return run_client(body, args)


def _pin_text(answer: dict[str, Any]) -> str:
    pin = answer.get("pin")
    lines = [f"peer      {answer['peer_id']} " + (f"pinned to {pin}" if pin else "not pinned")]
    if pin and answer.get("controlling") is False:
        lines.append("          (the peer opened this session and picks its paths: a pin acts on sessions opened here)")
    lines.extend(_path_text(path) for path in answer.get("paths", []))
    return "\n".join(lines)


def cmd_plugin(args: argparse.Namespace) -> int:
    async def body(client: Client) -> int:
        if args.action == "list":
            answer = await client.plugins()
            _print(
                answer,
                args.json,
                lambda a: (
                    "\n".join(
                        f"{p['name']:16} {p['state']:8} restarts {p['restarts']}"
                        + (f"  {p['error']}" if p["error"] else "")
                        for p in a["plugins"]
                    )
                    or "no plugins (put one in the home's plugins/ folder)"
                ),
            )
            return 0
        if not args.name:
            return fail(f"plugin {args.action}: which plugin? (p2pos plugin {args.action} NAME)", EXIT_USAGE)
        answer = await client.plugin(args.name, args.action)
        _print(answer, args.json, lambda p: f"{p['name']} {p['state']}")
        return 0

    return run_client(body, args)


def cmd_events(args: argparse.Namespace) -> int:
    async def body(client: Client) -> int:
        async for event in client.events(args.after):
            print(json.dumps(event), flush=True)
        return 0

    return run_client(body, args)


def cmd_stop(args: argparse.Namespace) -> int:
    async def body(client: Client) -> int:
        await client.stop()
        print("the daemon is stopping")
        return 0

    return run_client(body, args)


# -- pipe, serve, expose, forward ----------------------------------------------------------


class StdioStream(trio.abc.HalfCloseableStream):
    """This process's stdin and stdout as one stream (threads: works for files, pipes and ttys)."""

    def __init__(self) -> None:
        self._out_closed = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return await trio.to_thread.run_sync(os.read, 0, max_bytes or CHUNK, abandon_on_cancel=True)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            written = await trio.to_thread.run_sync(os.write, 1, view)
            view = view[written:]

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        if not self._out_closed:
            self._out_closed = True
            os.close(1)

    async def aclose(self) -> None:
        await self.send_eof()


def cmd_pipe(args: argparse.Namespace) -> int:
    async def body(client: Client) -> int:
        stream = await client.connect(args.peer, args.service)
        clean = await splice(StdioStream(), stream)
        return 0 if clean else fail("the channel broke before the end")

    return run_client(body, args)


def _allow_body(args: argparse.Namespace) -> dict[str, Any]:
    if args.allow_any and args.allow:
        raise SettingsError("give --allow PEER or --allow-any, not both")
    if not args.allow_any and not args.allow:
        raise SettingsError("say who may connect: --allow PEER (repeatable) or --allow-any")
    return {"allow": args.allow or None, "allow_any": args.allow_any}


async def _serve_channels(
    client: Client, service: str, allow: dict[str, Any], handle: Callable[[str, trio.abc.Stream], Awaitable[None]]
) -> int:
    """Register ``service``, take its channels one after the other, handle each in its own task."""
    await client.put_service(service, **allow)
    print(f"serving {service}", file=sys.stderr, flush=True)
    failure: Exception | None = None
    try:
        async with trio.open_nursery() as nursery:
            while failure is None:
                try:
                    peer, stream = await client.accept(service)
                except (ClientError, OSError, trio.BrokenResourceError) as exc:
                    # Raised from here it would leave the nursery as an ExceptionGroup (a traceback):
                    # the daemon stopped, say; the channels being served end with it.
                    failure = exc
                    nursery.cancel_scope.cancel()
                else:
                    nursery.start_soon(handle, peer, stream)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(2), contextlib.suppress(ClientError, OSError):
            await client.delete_service(service)
    assert failure is not None  # the loop ends only with one
    raise failure


def cmd_serve(args: argparse.Namespace) -> int:
    command = args.command_line
    if not command:
        return fail("serve: give the command to run after --, e.g. p2pos serve echo --allow-any -- cat", EXIT_USAGE)
    try:
        allow = _allow_body(args)
    except SettingsError as exc:
        return fail(str(exc), EXIT_USAGE)

    async def handle(peer: str, stream: trio.abc.Stream) -> None:
        env = {**os.environ, "P2POS_PEER": peer, "P2POS_SERVICE": args.service}
        try:
            process = await trio.lowlevel.open_process(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        except OSError as exc:
            print(f"p2pos: serve: cannot run {command[0]}: {exc.strerror or exc}", file=sys.stderr)
            await stream.aclose()
            return
        assert process.stdin is not None and process.stdout is not None
        await splice(stream, trio.StapledStream(process.stdin, process.stdout))
        with trio.move_on_after(5):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()

    return run_client(lambda client: _serve_channels(client, args.service, allow, handle), args)


def cmd_expose(args: argparse.Namespace) -> int:
    try:
        allow = _allow_body(args)
        host, port = parse_host_port(args.to, what="--to")
    except SettingsError as exc:
        return fail(str(exc), EXIT_USAGE)

    async def handle(peer: str, stream: trio.abc.Stream) -> None:
        try:
            tcp = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            print(f"p2pos: expose: cannot connect to {args.to}: {exc.strerror or exc}", file=sys.stderr)
            await stream.aclose()
            return
        await splice(stream, tcp)

    return run_client(lambda client: _serve_channels(client, args.service, allow, handle), args)


def cmd_forward(args: argparse.Namespace) -> int:
    try:
        host, port = parse_host_port(args.listen, what="--listen")
    except SettingsError as exc:
        return fail(str(exc), EXIT_USAGE)

    async def body(client: Client) -> int:
        await client.sas(args.peer)  # fails now, with its reason, if the peer cannot be reached

        async def handle(tcp: trio.SocketStream) -> None:
            try:
                stream = await client.connect(args.peer, args.service)
            except ClientError as exc:
                print(f"p2pos: forward: {exc.message}", file=sys.stderr)
                await tcp.aclose()
                return
            await splice(tcp, stream)

        listeners = await trio.open_tcp_listeners(port, host=host)
        bound = listeners[0].socket.getsockname()
        print(f"forwarding {bound[0]}:{bound[1]} -> {args.peer} {args.service}", file=sys.stderr, flush=True)
        await trio.serve_listeners(handle, listeners)

    return run_client(body, args)


# -- the parser ------------------------------------------------------------------------------


def add_commands(sub: Any, home_help: str) -> None:
    def parser(name: str, help_text: str, func: Callable[[argparse.Namespace], int], *, json_flag: bool = False) -> Any:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--home", help=home_help)
        if json_flag:
            p.add_argument("--json", action="store_true", help="print JSON instead of text")
        p.set_defaults(func=func)
        return p

    up = parser("up", "run the daemon (until p2pos stop, SIGINT or SIGTERM)", cmd_up)
    up.add_argument(
        "--listen", action="append", metavar="HOST:PORT", help="UDP address for peers (repeatable; default 0.0.0.0:0)"
    )
    up.add_argument(
        "--bootstrap",
        action="append",
        metavar="PEERID@HOST:PORT",
        help="a rendezvous node (repeatable); HOST:PORT alone pins the key met first",
    )
    up.add_argument("--api-port", type=int, help="the app API's TCP port on 127.0.0.1 (0: any, -1: none)")
    up.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    up.add_argument("--lease", type=int, help="seconds of registration asked of rendezvous nodes (default 600)")
    up.add_argument("--keepalive", type=float, help="seconds between keepalives to rendezvous nodes (default 25)")
    up.add_argument("--lookup-timeout", type=float, help="seconds to wait for a lookup (default 5)")
    up.add_argument("--bench", action="store_true", help="serve node-level transfers for bench/daemon.py")
    up.add_argument(
        "--relay",
        action="append",
        metavar="URL",
        help="a relay: ws://, wss:// (WebSocket) or turn:, turns: (TURN) (repeatable; credentials in config.toml)",
    )
    up.add_argument(
        "--quic",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="QUIC on the UDP sockets too (the default): a connect also dials the peer over QUIC",
    )
    up.add_argument("--proxy", metavar="http://HOST:PORT", help="HTTP CONNECT proxy for WebSocket relays")
    up.add_argument(
        "--idle-close", type=float, metavar="S", help="close peer sessions unused this long (default 300; 0: never)"
    )
    up.add_argument(
        "--learn-relays",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="use the WebSocket relays rendezvous nodes offer (the default)",
    )
    up.add_argument(
        "--port-mapping",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ask the gateway for a port mapping (PCP, NAT-PMP, UPnP; the default) for sockets on a private address",
    )
    up.add_argument(
        "--learn-binding-timeout",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="learn how long the router keeps an idle UDP binding and send keepalives that often (the default)",
    )

    parser("status", "the daemon's identity, registrations, peers, services and plugins", cmd_status, json_flag=True)

    serve = parser("serve", "run CMD for each incoming channel, stdin/stdout bound to it (as inetd)", cmd_serve)
    serve.add_argument("service")
    serve.add_argument("--allow", action="append", metavar="PEER", help="a peer that may connect (repeatable)")
    serve.add_argument("--allow-any", action="store_true", help="any peer may connect")
    serve.set_defaults(command_line=[])
    serve.usage = "p2pos serve [-h] [--home HOME] (--allow PEER ... | --allow-any) SERVICE -- CMD [ARG ...]"
    serve.epilog = "The command follows --: p2pos serve echo --allow-any -- cat"

    pipe = parser("pipe", "connect stdin/stdout to SERVICE on PEER (as netcat)", cmd_pipe)
    pipe.add_argument("peer")
    pipe.add_argument("service")

    expose = parser("expose", "carry channels to SERVICE to a local TCP server", cmd_expose)
    expose.add_argument("service")
    expose.add_argument("--to", required=True, metavar="HOST:PORT")
    expose.add_argument("--allow", action="append", metavar="PEER", help="a peer that may connect (repeatable)")
    expose.add_argument("--allow-any", action="store_true", help="any peer may connect")

    forward = parser(
        "forward", "listen on local TCP and carry each connection to SERVICE on PEER (as ssh -L)", cmd_forward
    )
    forward.add_argument("peer")
    forward.add_argument("service")
    forward.add_argument("--listen", required=True, metavar="HOST:PORT")

    verify = parser(
        "verify", "show the short authentication string of PEER; mark it verified", cmd_verify, json_flag=True
    )
    verify.add_argument("peer")
    verify.add_argument("--yes", action="store_true", help="mark verified without asking (you compared it)")
    verify.add_argument("--sas", help="mark verified if this is the string (what the other person read out)")

    path = parser("path", "show PEER's paths; keep its session on one carrier (--pin) or not (--unpin)", cmd_path,
                  json_flag=True)  # fmt: skip
    path.add_argument("peer")
    pinning = path.add_mutually_exclusive_group()
    pinning.add_argument("--pin", choices=("udp", "quic", "turn", "relay"), help="carry the session over this only")
    pinning.add_argument("--unpin", action="store_true", help="let the daemon choose the best path again")

    plugin = parser("plugin", "list, start or stop plugins", cmd_plugin, json_flag=True)
    plugin.add_argument("action", choices=("list", "start", "stop"))
    plugin.add_argument("name", nargs="?")

    events = parser("events", "follow the daemon's numbered events (JSON lines)", cmd_events)
    events.add_argument("--after", type=int, help="start after this event number (default: new events only)")

    parser("stop", "stop the daemon", cmd_stop)
