"""Node-level transfers (adapters/selftest.py, spec/appapi.md §6.1) with early data (channels.md §2.7).

``bench/send`` writes its bytes at once, before the peer accepted the channel: a peer without
``_bench`` must still be reported as a clear ``service_refused`` that says the bytes were not
delivered; a peer with it answers the count and the time of its first read.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from p2pos.adapters import selftest
from p2pos.adapters.daemon import Daemon, open_daemon
from p2pos.adapters.home import Home, Settings
from p2pos.adapters.httpapi import ApiError
from p2pos.adapters.relay import RelayServer, bootstrap_string
from p2pos.proto import Identity, LocalKeys


@contextlib.asynccontextmanager
async def two_daemons(tmp_path: Path) -> AsyncIterator[tuple[Daemon, Daemon]]:
    keys = LocalKeys.generate(Identity.generate())
    server = await RelayServer.bind(keys, "127.0.0.1", 0)
    bootstrap = bootstrap_string(keys, server.address)
    async with trio.open_nursery() as nursery, contextlib.AsyncExitStack() as stack:
        nursery.start_soon(server.run)
        daemons = []
        for name in ("a", "b"):
            settings = Settings(listen=("127.0.0.1:0",), bootstrap=(bootstrap,), api_port=-1)
            daemons.append(await stack.enter_async_context(open_daemon(Home.at(tmp_path / name), settings)))
        with trio.fail_after(10):
            for daemon in daemons:
                while daemon.rendezvous.status()[0]["state"] != "registered":
                    await trio.sleep(0.01)
        yield daemons[0], daemons[1]
        nursery.cancel_scope.cancel()


async def test_a_refused_bench_channel_is_reported_clearly(tmp_path: Path) -> None:
    async with two_daemons(tmp_path) as (a, b):
        with trio.fail_after(20), pytest.raises(ApiError) as refused:
            await selftest.send(a, str(b.peer_id), 5000)  # b serves no _bench
        assert (refused.value.status, refused.value.code) == (502, "service_refused")
        assert "_bench" in refused.value.message and "5000 bytes written were not delivered" in refused.value.message


async def test_bench_send_answers_the_count_and_the_first_read(tmp_path: Path) -> None:
    async with two_daemons(tmp_path) as (a, b), trio.open_nursery() as nursery:
        await nursery.start(selftest.serve, b)
        with trio.fail_after(20):
            before = time.monotonic_ns()
            answer = await selftest.send(a, str(b.peer_id), 100_000)
        after = time.monotonic_ns()
        assert answer["bytes"] == 100_000 and answer["seconds"] > 0
        assert before <= answer["started_ns"] < answer["first_byte_ns"] < after
        nursery.cancel_scope.cancel()
