"""Where a daemon keeps its things, and its settings (spec/appapi.md §1.1).

``Home.at(DIR)`` keeps everything under one folder (``--home DIR`` or ``P2POS_HOME``);
``Home.default()`` follows the XDG base directories on Linux: configuration and identity in
``$XDG_CONFIG_HOME/p2pos``, state in ``$XDG_STATE_HOME/p2pos``, the API's socket and token in
``$XDG_RUNTIME_DIR/p2pos``.

``Settings`` are the daemon's settings: every one is a key of ``config.toml`` and a flag of
``p2pos up`` (the flag wins).  A bad file or value is a ``SettingsError`` with one line that
names the file and the key.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from p2pos.proto.errors import LocalProtocolError
from p2pos.proto.nat.turn_config import parse_turn_url
from p2pos.transports.http_connect import parse_proxy
from p2pos.transports.wsrelay_client import parse_relay_url

from .keystore import DEFAULT_HOME_ENV, KEY_FILE_NAME


class SettingsError(Exception):
    """A bad setting, explained in one line."""


@dataclasses.dataclass(frozen=True)
class Home:
    config: Path  # config.toml, identity.key, plugins/
    state: Path  # peers.json, nodes.json, logs/
    run: Path  # api.sock, api.port, api.token, daemon.pid

    @classmethod
    def at(cls, folder: Path) -> Home:
        folder = folder.expanduser().absolute()
        return cls(config=folder, state=folder, run=folder / "run")

    @classmethod
    def default(cls, environ: Mapping[str, str] | None = None) -> Home:
        env = os.environ if environ is None else environ
        if env.get(DEFAULT_HOME_ENV):
            return cls.at(Path(env[DEFAULT_HOME_ENV]))
        user = Path.home()
        config = Path(env.get("XDG_CONFIG_HOME") or user / ".config") / "p2pos"
        state = Path(env.get("XDG_STATE_HOME") or user / ".local" / "state") / "p2pos"
        runtime = env.get("XDG_RUNTIME_DIR")
        run = Path(runtime) / "p2pos" if runtime else state / "run"
        return cls(config=config, state=state, run=run)

    @classmethod
    def chosen(cls, folder: str | None) -> Home:
        return cls.at(Path(folder)) if folder else cls.default()

    @property
    def config_file(self) -> Path:
        return self.config / "config.toml"

    @property
    def identity(self) -> Path:
        return self.config / KEY_FILE_NAME

    @property
    def plugins(self) -> Path:
        return self.config / "plugins"

    @property
    def peers(self) -> Path:
        return self.state / "peers.json"

    @property
    def nodes(self) -> Path:
        return self.state / "nodes.json"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def api_socket(self) -> Path:
        return self.run / "api.sock"

    @property
    def api_port(self) -> Path:
        return self.run / "api.port"

    @property
    def api_token(self) -> Path:
        return self.run / "api.token"

    @property
    def pid_file(self) -> Path:
        return self.run / "daemon.pid"


def parse_host_port(text: str, *, what: str = "address") -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); SettingsError with an example otherwise."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SettingsError(f"bad {what} {text!r}: expected HOST:PORT (e.g. 127.0.0.1:3478 or [::1]:3478)")
    return host, int(port)


#: Settings that only config.toml may give (a flag shows in ``ps`` and shell history).
SECRET_SETTINGS = frozenset({"turn_username", "turn_password", "turn_secret"})


def check_relay_url(url: str) -> str:
    """A relay URL (``ws://``, ``wss://``, ``turn:``, ``turns:``) without credentials; SettingsError if not."""
    scheme = url.partition(":")[0].lower()
    if "@" in url.partition("?")[0]:
        raise SettingsError(f"relay {url!r}: no credentials in a URL (turn_username/turn_password in config.toml)")
    try:
        if scheme in ("ws", "wss"):
            parse_relay_url(url)
        elif scheme in ("turn", "turns"):
            parse_turn_url(url)
        else:
            raise SettingsError(f"relay {url!r}: expected ws://, wss://, turn: or turns:")
    except (ValueError, LocalProtocolError) as exc:
        raise SettingsError(f"relay {url!r}: {exc}") from None
    return url


def check_proxy(url: str) -> tuple[str, int]:
    """``http://HOST:PORT`` as (host, port); SettingsError if not."""
    if "@" in url:
        raise SettingsError(f"proxy {url!r}: proxy credentials are not supported")
    try:
        return parse_proxy(url)
    except ValueError as exc:
        raise SettingsError(f"proxy: {exc} (expected http://HOST:PORT)") from None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """The daemon's settings (the README's table lists them)."""

    #: UDP addresses to listen on for peers (port 0: any free port).
    listen: tuple[str, ...] = ("0.0.0.0:0",)
    #: Rendezvous nodes: ``PEERID@HOST:PORT`` (or ``HOST:PORT``: the key met first is pinned).
    bootstrap: tuple[str, ...] = ()
    #: The app API's TCP port on 127.0.0.1 (0: any free port; -1: no TCP, the Unix socket only).
    api_port: int = 0
    #: debug, info, warning or error.
    log_level: str = "info"
    #: Lease asked of rendezvous nodes, in seconds (renewed at half).
    lease: int = 600
    #: Seconds between keepalives to a rendezvous node while nothing else is sent.
    keepalive: float = 25.0
    #: Seconds a connect waits for a rendezvous node to answer a lookup.
    lookup_timeout: float = 5.0
    #: Serve node-level transfers for bench/daemon.py (adapters/selftest.py); off: any peer could
    #: make the daemon read.
    bench: bool = False
    #: Relays for peers UDP does not reach: ``ws://`` / ``wss://`` WebSocket relays (spec/relay.md)
    #: and ``turn:`` / ``turns:`` TURN servers (spec/turn.md).
    relay: tuple[str, ...] = ()
    #: TURN long-term credentials, or ``turn_secret`` (coturn's REST ``static-auth-secret``):
    #: config.toml only, never a flag or a URL.
    turn_username: str = ""
    turn_password: str = ""
    turn_secret: str = ""
    #: ``http://HOST:PORT``: reach WebSocket relays through this HTTP CONNECT proxy (default: the
    #: ``https_proxy`` / ``HTTPS_PROXY`` environment variable, minus ``no_proxy`` / ``NO_PROXY``).
    proxy: str = ""
    #: QUIC on the UDP sockets too (spec/quic.md §5.1): each peer's observed address is also
    #: dialed over QUIC, a path where QUIC passes and other UDP is dropped.  A QUIC path shares
    #: its UDP socket's fate, so a fall-back from direct UDP goes to it last (spec/paths.md PTH-4.8).
    quic: bool = True
    #: Use the WebSocket relays a rendezvous node offers (spec/rendezvous.md §4.5) besides ``relay``.
    learn_relays: bool = True
    #: Ask the default gateway to map each UDP socket bound to a private address or a wildcard
    #: (PCP, then NAT-PMP, then UPnP IGD: spec/portmap.md), and advertise the mapped address.
    port_mapping: bool = True
    #: Learn how long the router keeps an idle UDP binding (spare sockets, spec/nat.md §4) and send
    #: keepalives only that often (§5.5); off: every ``keepalive`` seconds.
    learn_binding_timeout: bool = True
    #: Seconds after which a peer session no channel uses is closed (reopened on demand, one round
    #: trip with IK: spec/paths.md PTH-7.6); 0: never.
    idle_close: float = 300.0

    def __post_init__(self) -> None:
        for text in self.listen:
            parse_host_port(text, what="listen address")
        if not self.listen:
            raise SettingsError("listen: at least one address is needed")
        if not -1 <= self.api_port <= 65535:
            raise SettingsError(f"api_port: {self.api_port} is not a port (0 picks one, -1 turns TCP off)")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise SettingsError(f"log_level: {self.log_level!r} is not one of debug, info, warning, error")
        if not 30 <= self.lease <= 3600:
            raise SettingsError(f"lease: {self.lease} is outside 30..3600 seconds")
        if not 1 <= self.keepalive <= 600:
            raise SettingsError(f"keepalive: {self.keepalive} is outside 1..600 seconds")
        if self.idle_close != 0 and not 10 <= self.idle_close <= 86400:
            raise SettingsError(f"idle_close: {self.idle_close} is outside 10..86400 seconds (0: never)")
        if not 0.5 <= self.lookup_timeout <= 60:
            raise SettingsError(f"lookup_timeout: {self.lookup_timeout} is outside 0.5..60 seconds")
        for url in self.relay:
            check_relay_url(url)
        if self.turn_username and not self.turn_password:
            raise SettingsError("turn_password: needed with turn_username")
        if self.turn_password and not self.turn_username:
            raise SettingsError("turn_username: needed with turn_password")
        if self.turn_secret and self.turn_username:
            raise SettingsError("turn_secret and turn_username: give one (REST secret or long-term credentials)")
        if any(u.lower().startswith("turn") for u in self.relay) and not (self.turn_secret or self.turn_username):
            raise SettingsError("relay: a turn: server needs turn_username and turn_password, or turn_secret")
        if self.proxy:
            check_proxy(self.proxy)

    @classmethod
    def load(cls, path: Path, overrides: Mapping[str, Any] | None = None) -> Settings:
        """The settings of ``path`` (absent: the defaults), with ``overrides`` (flags; None = not given)."""
        values: dict[str, Any] = {}
        if path.exists():
            try:
                values = tomllib.loads(path.read_text())
            except (OSError, UnicodeDecodeError) as exc:
                raise SettingsError(f"{path}: cannot read: {exc}") from None
            except tomllib.TOMLDecodeError as exc:
                raise SettingsError(f"{path}: not TOML: {exc}") from None
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise SettingsError(f"{path}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(fields))})")
        for key, value in (overrides or {}).items():
            if key in SECRET_SETTINGS and value is not None:
                raise SettingsError(f"{key}: set it in {path}, not on the command line")
            if value is not None:
                values[key] = value
        typed: dict[str, Any] = {}
        for key, value in values.items():
            default: Any = fields[key].default
            try:
                if isinstance(default, tuple):
                    items = [value] if isinstance(value, str) else list(value)
                    if not all(isinstance(v, str) for v in items):
                        raise TypeError
                    typed[key] = tuple(items)
                elif isinstance(default, bool):
                    if not isinstance(value, bool):
                        raise TypeError
                    typed[key] = value
                elif not isinstance(value, (str, int, float)) or isinstance(value, bool):
                    raise TypeError
                else:
                    typed[key] = type(default)(value)
            except (TypeError, ValueError):
                raise SettingsError(f"{path}: {key} = {value!r} is not a {type(default).__name__}") from None
        try:
            return cls(**typed)
        except SettingsError as exc:
            raise SettingsError(f"{path}: {exc}") from None
