"""The daemon in-process (adapters/daemon.py, api.py, rendezvous.py, client.py): a rendezvous node
and two daemons on loopback UDP in one trio run, driven through the Python client over the real
app API socket.  tests/daemon/ runs the same things as separate processes through the CLI."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from p2pos.adapters.client import Client, ClientError
from p2pos.adapters.daemon import Daemon, open_daemon
from p2pos.adapters.home import Home, Settings, SettingsError
from p2pos.adapters.relay import RelayServer, bootstrap_string
from p2pos.adapters.rendezvous import Bootstrap
from p2pos.proto import Identity, LocalKeys


@contextlib.asynccontextmanager
async def network(tmp_path: Path, count: int = 2) -> AsyncIterator[tuple[list[Daemon], list[Client]]]:
    keys = LocalKeys.generate(Identity.generate())
    server = await RelayServer.bind(keys, "127.0.0.1", 0)
    bootstrap = bootstrap_string(keys, server.address)
    async with trio.open_nursery() as nursery, contextlib.AsyncExitStack() as stack:
        nursery.start_soon(server.run)
        daemons, clients = [], []
        for i in range(count):
            home = Home.at(tmp_path / f"d{i}")
            settings = Settings(listen=("127.0.0.1:0",), bootstrap=(bootstrap,), api_port=-1)
            daemons.append(await stack.enter_async_context(open_daemon(home, settings)))
            clients.append(Client.for_home(home))
        with trio.fail_after(10):
            for daemon in daemons:
                while daemon.rendezvous.status()[0]["state"] != "registered":
                    await trio.sleep(0.01)
        yield daemons, clients
        nursery.cancel_scope.cancel()


async def _echo_once(client: Client, service: str) -> str:
    peer, stream = await client.accept(service)
    async with stream:
        data = b""
        while chunk := await stream.receive_some():
            data += chunk
        await stream.send_all(data[::-1])
    return peer


async def test_an_app_reaches_a_service_on_another_daemon_by_peer_id(tmp_path: Path) -> None:
    async with network(tmp_path) as ((a, b), (ca, cb)):
        await cb.put_service("rev", allow=[str(a.peer_id)])
        async with trio.open_nursery() as nursery:
            seen: list[str] = []

            async def server() -> None:
                seen.append(await _echo_once(cb, "rev"))

            nursery.start_soon(server)
            stream = await ca.connect(str(b.peer_id), "rev")
            await stream.send_all(b"hello p2pos")
            await stream.send_eof()
            reply = b""
            while chunk := await stream.receive_some():
                reply += chunk
        assert reply == b"sop2p olleh"
        assert seen == [str(a.peer_id)]
        status = await ca.status()
        assert [p["peer_id"] for p in status["peers"]] == [str(b.peer_id)]
        assert status["registrations"][0]["state"] == "registered"


async def test_refusals_have_stable_codes(tmp_path: Path) -> None:
    async with network(tmp_path, 3) as ((a, b, c), (ca, cb, _cc)):
        await cb.put_service("only-c", allow=[str(c.peer_id)])
        with pytest.raises(ClientError) as refused:
            await ca.connect(str(b.peer_id), "only-c")
        assert refused.value.code == "not_allowed"
        with pytest.raises(ClientError) as missing:
            await ca.connect(str(b.peer_id), "nothing-here")
        assert missing.value.code == "service_refused"
        with pytest.raises(ClientError) as bad:
            await ca.connect("not-a-peer", "x")
        assert bad.value.code == "invalid_peer_id"
        stranger = Identity.generate().peer_id
        with pytest.raises(ClientError) as unknown:
            await ca.connect(str(stranger), "x")
        assert unknown.value.code == "peer_unreachable" and "not found" in unknown.value.message
        with pytest.raises(ClientError) as nobody:
            await ca.put_service("svc")
        assert nobody.value.code == "bad_request"
        with pytest.raises(ClientError) as reserved:
            await ca.put_service("_bench", allow_any=True)
        assert reserved.value.code == "invalid_service"
        with pytest.raises(ClientError) as not_upgraded:
            await ca.request("POST", "/v1/services/only-c/accept")
        assert not_upgraded.value.code == "upgrade_required"
        with pytest.raises(ClientError) as wrong_method:
            await ca.request("DELETE", "/v1/status")
        assert wrong_method.value.code == "method_not_allowed"
        events = [e async for e in _take(cb.events(after=0), lambda e: e["type"] == "channel_refused")]
        assert events[-1]["why"] == "not_allowed" and events[-1]["peer_id"] == str(a.peer_id)


async def _take(source: AsyncIterator[dict[str, object]], last: object) -> AsyncIterator[dict[str, object]]:
    with trio.fail_after(5):
        async for event in source:
            yield event
            if callable(last) and last(event):
                return


async def test_events_are_numbered_and_resume_from_a_number(tmp_path: Path) -> None:
    async with network(tmp_path) as ((_a, b), (ca, _cb)):
        first = [e async for e in _take(ca.events(after=0), lambda e: e["type"] == "registered")]
        assert [e["seq"] for e in first] == list(range(1, len(first) + 1))
        assert first[0]["type"] == "started"
        await ca.sas(str(b.peer_id))  # makes a session: peer_connected
        last = first[-1]["seq"]
        assert isinstance(last, int)
        later = [e async for e in _take(ca.events(after=last), lambda e: e["type"] == "peer_connected")]
        assert later[0]["seq"] == last + 1
        assert later[-1]["peer_id"] == str(b.peer_id)


async def test_verified_peers_are_remembered(tmp_path: Path) -> None:
    async with network(tmp_path) as ((a, b), (ca, cb)):
        mine = await ca.sas(str(b.peer_id))
        theirs = await cb.sas(str(a.peer_id))
        assert mine["sas"] == theirs["sas"] and not mine["verified"]
        with pytest.raises(ClientError) as wrong:
            await ca.verify(str(b.peer_id), "0000 0000 0000")
        assert wrong.value.code == "conflict"
        assert (await ca.verify(str(b.peer_id), mine["sas"]))["verified"]
        status = await ca.status()
        assert status["peers"][0]["verified"]
        stored = json.loads(a.home.peers.read_text())
        assert stored[str(b.peer_id)]["verified"] is True


async def test_deleting_a_service_refuses_new_channels(tmp_path: Path) -> None:
    async with network(tmp_path) as ((_a, b), (ca, cb)):
        await cb.put_service("tmp", allow_any=True)
        await cb.delete_service("tmp")
        with pytest.raises(ClientError) as gone:
            await ca.connect(str(b.peer_id), "tmp")
        assert gone.value.code == "service_refused"
        with pytest.raises(ClientError) as again:
            await cb.delete_service("tmp")
        assert again.value.code == "not_found"


async def test_stop_ends_the_daemon_and_removes_its_socket(tmp_path: Path) -> None:
    async with network(tmp_path, 1) as ((a,), (ca,)):
        await ca.stop()
        with trio.fail_after(2):
            await a.stopping.wait()
    assert not a.home.api_socket.exists()


def test_settings_come_from_the_file_and_flags_win(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('listen = ["127.0.0.1:4000"]\nlease = 120\nlog_level = "debug"\n')
    settings = Settings.load(config, {"lease": 300, "bootstrap": None})
    assert settings.listen == ("127.0.0.1:4000",) and settings.lease == 300 and settings.log_level == "debug"
    config.write_text("lease = 5\n")
    with pytest.raises(SettingsError, match="lease"):
        Settings.load(config)
    config.write_text("colour = 1\n")
    with pytest.raises(SettingsError, match="unknown setting 'colour'"):
        Settings.load(config)
    config.write_text("lease = [1\n")
    with pytest.raises(SettingsError, match="not TOML"):
        Settings.load(config)
    config.write_text('lease = "ten"\n')
    with pytest.raises(SettingsError, match="lease"):
        Settings.load(config)


def test_bootstrap_strings() -> None:
    peer = Identity.generate().peer_id
    parsed = Bootstrap.parse(f"{peer}@[::1]:3478")
    assert parsed.peer_id == peer and (parsed.host, parsed.port) == ("::1", 3478)
    bare = Bootstrap.parse("relay.example:3478")
    assert bare.peer_id is None and bare.host == "relay.example"
    for bad in ("nope@1.2.3.4:1", "1.2.3.4", f"{peer}@1.2.3.4:0", "1.2.3.4:99999"):
        with pytest.raises(SettingsError):
            Bootstrap.parse(bad)


def test_home_folders(tmp_path: Path) -> None:
    one = Home.at(tmp_path)
    assert one.identity == tmp_path / "identity.key" and one.api_socket == tmp_path / "run" / "api.sock"
    xdg = Home.default({"XDG_CONFIG_HOME": "/c", "XDG_STATE_HOME": "/s", "XDG_RUNTIME_DIR": "/r"})
    assert (xdg.config, xdg.state, xdg.run) == (Path("/c/p2pos"), Path("/s/p2pos"), Path("/r/p2pos"))
    assert Home.default({"P2POS_HOME": str(tmp_path)}) == one


async def _drop(datagrams: object, to: object) -> None:
    await trio.lowlevel.checkpoint()


async def test_a_restarted_peer_is_reached_again_with_the_same_identity(tmp_path: Path) -> None:
    keys = LocalKeys.generate(Identity.generate())
    server = await RelayServer.bind(keys, "127.0.0.1", 0)
    settings = Settings(listen=("127.0.0.1:0",), bootstrap=(bootstrap_string(keys, server.address),), api_port=-1)
    homes = [Home.at(tmp_path / "a"), Home.at(tmp_path / "b")]

    async def registered(daemon: Daemon) -> None:
        with trio.fail_after(10):
            while daemon.rendezvous.status()[0]["state"] != "registered":
                await trio.sleep(0.01)

    async def serve_one(client: Client) -> None:
        await client.put_service("rev", allow_any=True)
        await _echo_once(client, "rev")

    async def ask(client: Client, peer: str) -> bytes:
        stream = await client.connect(peer, "rev")
        await stream.send_all(b"abc")
        await stream.send_eof()
        return bytes(await stream.receive_some())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.run)
        async with open_daemon(homes[0], settings) as a:
            ca = Client.for_home(homes[0])
            await registered(a)
            async with open_daemon(homes[1], settings) as b:
                first_id = b.peer_id
                await registered(b)
                async with trio.open_nursery() as inner:
                    inner.start_soon(serve_one, Client.for_home(homes[1]))
                    assert await ask(ca, str(first_id)) == b"cba"
                for transport in b.node.transports:  # B dies without a word (as with kill -9)
                    transport.send_batch_now = lambda datagrams, to: len(datagrams)  # type: ignore[method-assign,assignment]
                    transport.send_batch = _drop  # type: ignore[method-assign,assignment]
            assert a.node.peer(first_id) is not None  # A still holds the session of B's first life
            async with open_daemon(homes[1], settings) as b:
                assert b.peer_id == first_id
                await registered(b)
                async with trio.open_nursery() as inner:
                    inner.start_soon(serve_one, Client.for_home(homes[1]))
                    with trio.fail_after(15):
                        assert await ask(ca, str(first_id)) == b"cba"
        nursery.cancel_scope.cancel()
