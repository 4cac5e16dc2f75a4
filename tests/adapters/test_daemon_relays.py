"""The daemon with relays (adapters/relays.py, daemon.py ``reach``), in-process on loopback.

A rendezvous node (UDP) that also serves a WebSocket relay with the node behind it (spec/relay.md
§6, ``p2pos relay --listen --ws``), and daemons with ``relay = [ws://...]``:

* with direct UDP working, a connect races direct UDP and the relay; the session ends up direct
  and the relay stays a validated spare path (status lists both, the active one and why);
* daemons that cannot reach the rendezvous node over UDP (its UDP address is dead) register
  through the relay after ``RELAY_REGISTER_AFTER``, look each other up and move data over the
  relay path, which status shows active;
* the relay settings: URLs checked, credentials only from config.toml, one-line errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pos.adapters.cli_apps import _status_text
from p2pos.adapters.client import Client
from p2pos.adapters.daemon import Daemon, open_daemon
from p2pos.adapters.home import Home, Settings, SettingsError
from p2pos.adapters.relay import RelayServer, ws_relay
from p2pos.proto import Identity, LocalKeys
from p2pos.proto.relay.server import RelayConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "relay"))
from relay_helpers import Proxy

MB = 1_000_000


def _dead_udp_port() -> int:
    """A loopback UDP port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def relay_network(
    tmp_path: Path, *, udp_to_node: bool = True, listen: str = "127.0.0.1:0", proxy: Proxy | None = None
) -> AsyncIterator[tuple[list[Daemon], list[Client], Any]]:
    """A rendezvous node + WebSocket relay, and two daemons configured with both (and ``proxy``)."""
    keys = LocalKeys.generate(Identity.generate())
    node = await RelayServer.bind(keys, "127.0.0.1", 0)
    relay = ws_relay(RelayConfig(), node=node)
    port = node.address[1] if udp_to_node else _dead_udp_port()
    bootstrap = f"{keys.identity.peer_id}@127.0.0.1:{port}"
    async with trio.open_nursery() as nursery, contextlib.AsyncExitStack() as stack:
        nursery.start_soon(node.run)
        await nursery.start(relay.serve, "127.0.0.1", 0)
        if proxy is not None:
            await nursery.start(proxy.serve)
        proxy_url = f"http://127.0.0.1:{proxy.port}" if proxy is not None else ""
        url = f"ws://127.0.0.1:{relay.addresses[0][1]}/p2pos/relay/v1"
        daemons, clients = [], []
        for i in range(2):
            home = Home.at(tmp_path / f"d{i}")
            # port_mapping off: a wildcard socket would ask this machine's own gateway for a mapping.
            settings = Settings(
                listen=(listen,),
                bootstrap=(bootstrap,),
                api_port=-1,
                relay=(url,),
                proxy=proxy_url,
                port_mapping=False,
            )
            daemons.append(await stack.enter_async_context(open_daemon(home, settings)))
            clients.append(Client.for_home(home))
        with trio.fail_after(15):
            for daemon in daemons:
                while not any(r["state"] == "registered" for r in daemon.rendezvous.status()):
                    await trio.sleep(0.02)
        yield daemons, clients, relay
        nursery.cancel_scope.cancel()


async def _transfer(a: Daemon, b: Daemon, ca: Client, cb: Client, size: int) -> None:
    """``size`` bytes from a to b's "sink" service; b answers with the SHA-256 it computed."""
    data = os.urandom(size)
    await cb.put_service("sink", allow=[str(a.peer_id)])
    digests: list[str] = []

    async def sink() -> None:
        _peer, stream = await cb.accept("sink")
        async with stream:
            digest = hashlib.sha256()
            while chunk := await stream.receive_some():
                digest.update(chunk)
            await stream.send_all(digest.hexdigest().encode())
        digests.append(digest.hexdigest())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sink)
        stream = await ca.connect(str(b.peer_id), "sink")
        async with stream:
            for start in range(0, size, 65536):
                await stream.send_all(data[start : start + 65536])
            await stream.send_eof()
            answer = b""
            while chunk := await stream.receive_some():
                answer += chunk
    assert digests == [hashlib.sha256(data).hexdigest()] and answer.decode() == digests[0]


def _peer_status(status: dict[str, Any], peer: Daemon) -> dict[str, Any]:
    found: list[dict[str, Any]] = [p for p in status["peers"] if p["peer_id"] == str(peer.peer_id)]
    assert len(found) == 1
    return found[0]


async def _wait_paths(client: Client, peer: Daemon, want: set[str], timeout: float = 10.0) -> dict[str, Any]:
    """Until the peer's validated paths include every ``via`` of ``want``; its status entry."""
    with trio.fail_after(timeout):
        while True:
            entry = _peer_status(await client.status(), peer)
            if want <= {p["via"] for p in entry["paths"] if p["state"] == "validated"}:
                return entry
            await trio.sleep(0.05)


async def test_with_udp_working_the_session_ends_up_direct_and_the_relay_is_a_spare_path(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with relay_network(tmp_path) as ((a, b), (ca, cb), relay):
            await _transfer(a, b, ca, cb, MB)
            entry = await _wait_paths(ca, b, {"udp", "relay"})
            assert entry["path"] == "direct"
            [active] = [p for p in entry["paths"] if p["active"]]
            assert active["via"] == "udp" and entry["active_path"] == active["path_id"]
            [spare] = [p for p in entry["paths"] if p["via"] == "relay"]
            assert spare["kind"] == "stream" and spare["rank"] == 3 and spare["address"] == f"relay:{b.peer_id}"
            text = _status_text(await ca.status())
            assert f"path {spare['path_id']} relay (stream) relay:{b.peer_id} validated" in text
            [link] = (await ca.status())["relays"]
            assert link["kind"] == "websocket" and link["state"] == "ready" and link["connections"] == 1
            assert f"relay     {link['url']} websocket ready" in text
            assert relay.core.stats["paired"] >= 1


async def test_without_udp_to_the_node_daemons_register_and_move_data_through_the_relay(tmp_path: Path) -> None:
    """UDP does not reach the rendezvous node (REL-6.1/6.2: it is reached over the relay instead);
    the daemons listen on a wildcard, so no candidate gives them a direct path: the relay carries."""
    with trio.fail_after(60):
        async with relay_network(tmp_path, udp_to_node=False, listen="0.0.0.0:0") as ((a, b), (ca, cb), relay):
            registrations = (await ca.status())["registrations"]
            assert [r["state"] for r in registrations if r["address"].startswith("relay:")] == ["registered"]
            assert [r["state"] for r in registrations if not r["address"].startswith("relay:")] != ["registered"]
            await _transfer(a, b, ca, cb, 2 * MB)
            entry = _peer_status(await ca.status(), b)
            assert entry["path"] == "relay"
            [active] = [p for p in entry["paths"] if p["active"]]
            assert active["via"] == "relay" and active["bytes_sent"] > 2 * MB
            # [API-3.1] the window and what is outstanding: at least one of the relay path's 65000-byte records
            assert active["cwnd"] >= 65000 and 0 <= active["bytes_in_flight"] <= active["cwnd"] + 65000
            assert relay.core.stats["records_to_node"] > 0


async def test_through_an_http_connect_proxy_the_relay_still_carries_everything(tmp_path: Path) -> None:
    """REL-7.2 from the daemon's ``proxy`` setting: both links go through the proxy's tunnels, and
    so do registration, lookup and data when UDP reaches neither the node nor the other peer."""
    proxy = Proxy()
    with trio.fail_after(60):
        async with relay_network(tmp_path, udp_to_node=False, listen="0.0.0.0:0", proxy=proxy) as (
            (a, b),
            (ca, cb),
            relay,
        ):
            await _transfer(a, b, ca, cb, MB)
            assert len(proxy.tunnels) == 2 and set(proxy.tunnels) == {f"127.0.0.1:{relay.addresses[0][1]}"}
            assert len(proxy.captured) > 2 * MB  # the data went through the tunnels
            assert _peer_status(await ca.status(), b)["path"] == "relay"


def test_relay_settings(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        'relay = ["ws://relay.example:80", "turn:198.18.0.1:3478"]\nturn_username = "u"\nturn_password = "p"\n'
        'proxy = "http://127.0.0.1:3128"\n'
    )
    settings = Settings.load(config, {"relay": None, "proxy": None})
    assert settings.relay == ("ws://relay.example:80", "turn:198.18.0.1:3478") and settings.turn_username == "u"
    assert Settings.load(config, {"relay": ["wss://r.example"]}).relay == ("wss://r.example",)  # the flag wins
    bad = {
        'relay = ["ws://u:p@relay.example"]': "no credentials in a URL",
        'relay = ["turn:u:p@198.18.0.1"]': "no credentials in a URL",
        'relay = ["http://relay.example"]': "expected ws://, wss://, turn: or turns:",
        'relay = ["turn:198.18.0.1?transport=sctp"]\nturn_secret = "s"': "transport=udp|tcp",
        'relay = ["turn:198.18.0.1"]': "needs turn_username and turn_password, or turn_secret",
        'turn_username = "u"': "turn_password: needed",
        'turn_secret = "s"\nturn_username = "u"\nturn_password = "p"': "give one",
        'proxy = "socks5://127.0.0.1:1080"': "expected http://HOST:PORT",
        'proxy = "http://u:p@127.0.0.1:3128"': "proxy credentials",
    }
    for text, message in bad.items():
        config.write_text(text + "\n")
        with pytest.raises(SettingsError, match=message) as caught:
            Settings.load(config)
        assert "\n" not in str(caught.value) and str(config) in str(caught.value)
    config.write_text("")
    for secret in ("turn_username", "turn_password", "turn_secret"):
        with pytest.raises(SettingsError, match=f"{secret}: set it in .*config.toml, not on the command line"):
            Settings.load(config, {secret: "x"})
