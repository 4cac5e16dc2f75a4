"""The relay conformance suite (conformance/relay/) passes against this relay and fails against
broken ones: each fake breaks one rule, and the cases citing that rule must catch it."""

from __future__ import annotations

import importlib
import io
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from relay_helpers import url_of

from p2pos.proto.relay import messages as m
from p2pos.proto.relay import wsframes
from p2pos.proto.relay.server import RelayConfig, RelayCore, _Link
from p2pos.transports.wsrelay_server import WsRelayServer


def _suite_package() -> str:
    """``p2pos.conformance.relay`` once pyproject.toml lists that package; until then the source
    tree's ``conformance.relay`` (the repository root on ``sys.path``)."""
    try:
        importlib.import_module("p2pos.conformance.relay")
        return "p2pos.conformance.relay"
    except ModuleNotFoundError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
        return "conformance.relay"


SUITE = _suite_package()
cli = importlib.import_module(f"{SUITE}.cli")
trace = importlib.import_module(f"{SUITE}.trace")
registry = importlib.import_module(f"{SUITE}.registry")


class OneSidedPairing(RelayCore):
    """Pairs on a single WANT (breaks REL-4.3)."""

    def _want(self, link: _Link, peer: bytes, now: float) -> None:
        super()._want(link, peer, now)
        other = self._by_peer.get(peer)
        if other is not None and link.peer not in other.wants and peer not in link.pairs:
            self._pair_one(link, peer)
            self._pair_one(other, link.peer)


class Tampering(RelayCore):
    """Flips the last byte of every relayed record (breaks REL-4.4)."""

    def _deliver(self, dest: _Link, pair: int, record: bytes | memoryview) -> None:
        super()._deliver(dest, pair, bytes(record[:-1]) + bytes([record[-1] ^ 1]))


class NoHolding(RelayCore):
    """Drops SENDTO before the pair forms instead of holding it (breaks REL-4.8)."""

    def _send_to(self, link: _Link, peer: bytes, record: bytes, now: float) -> None:
        if peer in link.pairs:
            super()._send_to(link, peer, record, now)


class NoTextCheck(WsRelayServer):
    """Ignores text messages (breaks REL-3.1.3)."""

    def _message(self, conn: Any, opcode: int, payload: bytes, now: float) -> None:
        if opcode != wsframes.TEXT:
            super()._message(conn, opcode, payload, now)


async def _run_suite(server: WsRelayServer, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = await trio.to_thread.run_sync(lambda: cli.main([url_of(server), *args], out))
    return code, out.getvalue()


async def test_the_suite_passes_against_this_relay() -> None:
    """Every case, against the default configuration (a 2 s AUTH deadline to keep rel/auth/8 short)."""
    async with trio.open_nursery() as nursery:
        server = WsRelayServer(RelayCore(RelayConfig(auth_timeout=2.0), os.urandom))
        await nursery.start(server.serve, "127.0.0.1", 0)
        code, out = await _run_suite(server)
        assert code == 0, out + repr(server.core.stats)
        assert out.count(" pass ") == 27 and "27 passed, 0 failed" in out
        nursery.cancel_scope.cancel()


def test_every_relay_requirement_is_tested_or_says_why_not() -> None:
    """spec/relay.md's ids against the suite's cases (conformance/relay/trace.py)."""
    assert trace.problems(registry.all_cases()) == []
    assert len(trace.tags()) >= 30


@pytest.mark.parametrize(
    ("core", "driver", "must_fail"),
    [
        (OneSidedPairing, WsRelayServer, "rel/pair/1"),
        (Tampering, WsRelayServer, "rel/pair/2"),
        (RelayCore, NoTextCheck, "rel/proto/1"),
        (NoHolding, WsRelayServer, "rel/hold/1"),
    ],
    ids=["one-sided-pairing", "tampering", "no-text-check", "no-holding"],
)
async def test_the_suite_catches_a_broken_relay(
    core: type[RelayCore], driver: type[WsRelayServer], must_fail: str
) -> None:
    async with trio.open_nursery() as nursery:
        server = driver(core(RelayConfig(auth_timeout=1.0), os.urandom))
        await nursery.start(server.serve, "127.0.0.1", 0)
        code, out = await _run_suite(server, "-k", must_fail)
        assert code == 1 and f"FAIL {must_fail} " in out, out
        nursery.cancel_scope.cancel()


class SkipsVerification(RelayCore):
    """Accepts any signature (breaks REL-2.4)."""

    def _auth(self, link: _Link, auth: m.Auth, now: float) -> None:
        valid = link.nonce and True
        good_name = auth.name.lower() in ((link.host,) if not self.config.names else self.config.names)
        if valid and good_name and auth.peer_id != self.node_peer:
            link.state = link.state.__class__.AUTHENTICATED
            link.peer = auth.peer_id
            link.unauthenticated = False
            self._unauthenticated -= 1
            self._addresses[link.prefix].unauthenticated -= 1
            self._by_peer[link.peer] = link
            self._queue(link, m.encode(m.Welcome(peer_id=link.peer)))
        else:
            super()._auth(link, auth, now)


async def test_the_suite_catches_a_relay_that_skips_signature_checks() -> None:
    async with trio.open_nursery() as nursery:
        server = WsRelayServer(SkipsVerification(RelayConfig(auth_timeout=1.0), os.urandom))
        await nursery.start(server.serve, "127.0.0.1", 0)
        code, out = await _run_suite(server, "-k", "rel/auth")
        assert code == 1 and "FAIL rel/auth/3 " in out and "FAIL rel/auth/5 " in out and "FAIL rel/auth/6 " in out, out
        nursery.cancel_scope.cancel()


def test_the_command_line_lists_traces_and_refuses_nothing_to_run() -> None:
    out = io.StringIO()
    assert cli.main(["--list"], out) == 0 and out.getvalue().count("\n") == len(registry.all_cases()) >= 24
    out = io.StringIO()
    assert cli.main(["--trace"], out) == 0 and "| REL-2.4 | MUST | `rel/auth/3`, `rel/auth/4` |" in out.getvalue()
    assert cli.main(["-k", "no-such-case"], io.StringIO()) == 2
    assert cli.main([], io.StringIO()) == 2
    assert cli.main(["ws://127.0.0.1:1"], io.StringIO()) == 2  # nothing listens on port 1
    assert cli.main(["http://127.0.0.1:1"], io.StringIO()) == 2
