"""The daemon learns its NAT (adapters/natprobe.py, spec/nat.md §3.6).

* ``NatProbe`` in memory, its discovery replaced by scripted reports, under trio's MockClock:
  when it measures, which servers it asks, the profile it gives each rendezvous client, its
  back-off after failures, re-measuring when the observed address moves, and ``status()``;
* a real daemon and a real rendezvous node with a second address (127.0.0.1 and 127.0.0.2)
  on loopback: ``GET /v1/status`` shows the NAT ("no NAT, public" on loopback), the node holds
  the profile as the daemon's traits, and ``p2pos status`` prints it;
* a daemon whose rendezvous node is down keeps running, its NAT unknown, a retry scheduled.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
import trio
import trio.testing

from p2pos.adapters.cli_apps import _nat_text, _status_text
from p2pos.adapters.client import Client
from p2pos.adapters.daemon import Daemon, open_daemon
from p2pos.adapters.home import Home, Settings
from p2pos.adapters.natprobe import NatProbe
from p2pos.adapters.relay import RelayServer, bootstrap_string
from p2pos.proto import Identity, LocalKeys
from p2pos.proto.nat.discovery import Allocation, Behaviour, NatReport
from p2pos.proto.nat.profile import Filtering, Mapping, NatProfile
from p2pos.proto.rendezvous.client import ClientState

Address = tuple[str, int]
NODE_A, NODE_B, NODE_6 = ("198.18.0.1", 7000), ("198.18.0.2", 7000), ("2001:2::1", 7000)
LOCAL = ("10.1.0.2", 40000)
WALL = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def symmetric(server: Address, *, alternate: bool = True) -> NatReport:
    """What discovery reports behind a random-allocating NAT (a partial report without ``alternate``)."""
    if not alternate:
        return NatReport(server=server, local=LOCAL, udp=True, mapped=("198.18.1.2", 50000), nat=True, probes=8)
    return NatReport(
        server=server,
        local=LOCAL,
        udp=True,
        mapped=("198.18.1.2", 50000),
        nat=True,
        alternate=True,
        mapping=Behaviour.ADDRESS_AND_PORT_DEPENDENT,
        filtering=Behaviour.ADDRESS_AND_PORT_DEPENDENT,
        port_preservation=False,
        allocation=Allocation.RANDOM,
        hairpinning=False,
        public=False,
        samples=(50000, 61234, 33333, 47000),
        probes=19,
    )


def silent(server: Address) -> NatReport:
    return NatReport(server=server, local=LOCAL, udp=False, probes=4)


@dataclasses.dataclass
class FakeClient:
    profile: NatProfile | None = None
    renewed: int = 0
    node: bytes | None = None
    state: ClientState = ClientState.REGISTERING


@dataclasses.dataclass(eq=False)
class FakeRegistration:
    address: Address
    client: FakeClient = dataclasses.field(default_factory=FakeClient)


class FakeRendezvous:
    """What NatProbe uses of adapters/rendezvous.Rendezvous."""

    def __init__(self, *addresses: Address) -> None:
        self.registrations: list[Any] = [FakeRegistration(a) for a in addresses]  # Any: no narrowing

    def set_profile(self, registration: FakeRegistration, profile: NatProfile | None) -> None:
        if profile != registration.client.profile:
            registration.client.profile = profile
            registration.client.renewed += 1


class Script:
    """A discovery that answers from a script, recording (trio time, server) per call."""

    def __init__(self, *answers: NatReport | Exception | None) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[float, Address]] = []

    async def __call__(self, server: Address) -> NatReport:
        self.calls.append((trio.current_time(), server))
        await trio.sleep(5.5)  # a run takes time; status says "measuring" meanwhile
        answer = self.answers.pop(0) if self.answers else None
        if isinstance(answer, Exception):
            raise answer
        return answer if answer is not None else symmetric(server)


def probe(rendezvous: FakeRendezvous, script: Script) -> NatProbe:
    return NatProbe(cast(Any, rendezvous), discover=script, clock=lambda: WALL)


@contextlib.asynccontextmanager
async def running(p: NatProbe) -> AsyncIterator[NatProbe]:
    async with trio.open_nursery() as nursery:
        await nursery.start(p.run)
        yield p
        nursery.cancel_scope.cancel()


async def settle(p: NatProbe, state: str) -> None:
    while p.state != state:
        await trio.sleep(0.1)


async def test_measures_at_start_and_gives_every_client_the_profile(autojump_clock: trio.testing.MockClock) -> None:
    rdv = FakeRendezvous(NODE_A, NODE_B, ("relay:node", 0))
    script = Script()
    async with running(probe(rdv, script)) as p:
        await trio.sleep(1)
        assert p.status()["state"] == "measuring" and p.status()["mapping"] is None
        await settle(p, "measured")
        await trio.sleep(3600)  # nothing changes: no second run
    assert script.calls == [(0.0, NODE_A)]  # NODE_A has a second address: NODE_B is not asked
    expected = symmetric(NODE_A).to_profile()
    assert expected.mapping is Mapping.ADDRESS_AND_PORT_DEPENDENT
    # every client, the one registered through a relay too, sends it as traits
    assert [r.client.profile for r in rdv.registrations] == [expected] * 3
    status = p.status()
    assert status == {
        "state": "measured",
        "measured_at": "2027-01-15T08:00:00Z",
        "udp": True,
        "server": "198.18.0.1:7000",
        "mapped": "198.18.1.2:50000",
        "nat": True,
        "mapping": "address-and-port-dependent",
        "filtering": "address-and-port-dependent",
        "allocation": "random",
        "allocation_delta": None,
        "public": False,
        "hairpinning": False,
        "port_preservation": False,
        "binding_timeout": None,
        "error": "",
        "families": {"ipv4": {k: v for k, v in status.items() if k in status["families"]["ipv4"]}},
    }
    assert set(status["families"]["ipv4"]) == {
        "udp",
        "server",
        "mapped",
        "nat",
        "mapping",
        "filtering",
        "allocation",
        "allocation_delta",
        "public",
        "hairpinning",
        "port_preservation",
        "measured_at",
    }


async def test_a_node_without_a_second_address_gives_a_partial_report(autojump_clock: trio.testing.MockClock) -> None:
    rdv = FakeRendezvous(NODE_A, NODE_B)
    script = Script(symmetric(NODE_A, alternate=False), symmetric(NODE_B))
    async with running(probe(rdv, script)) as p:
        await settle(p, "measured")
    assert [s for _, s in script.calls] == [NODE_A, NODE_B]  # the partial one did not end the search
    assert p.report == symmetric(NODE_B)

    rdv = FakeRendezvous(NODE_A)
    script = Script(symmetric(NODE_A, alternate=False))
    async with running(probe(rdv, script)) as p:
        await settle(p, "measured")
        await trio.sleep(3600)  # asking again would find no more: no retry
    assert len(script.calls) == 1
    status = p.status()
    assert status["mapped"] == "198.18.1.2:50000" and status["nat"] is True
    assert status["mapping"] is status["filtering"] is status["allocation"] is status["public"] is None
    profile = rdv.registrations[0].client.profile
    assert profile is not None and profile.mapping is Mapping.UNKNOWN and profile.filtering is Filtering.UNKNOWN


async def test_each_family_is_measured_against_its_own_nodes(autojump_clock: trio.testing.MockClock) -> None:
    rdv = FakeRendezvous(NODE_A, NODE_6)
    public6 = NatReport(
        server=NODE_6,
        local=("2001:2:0:100::2", 40000),
        udp=True,
        mapped=("2001:2:0:100::2", 40000),
        nat=False,
        alternate=True,
        mapping=Behaviour.ENDPOINT_INDEPENDENT,
        filtering=Behaviour.ADDRESS_AND_PORT_DEPENDENT,
        public=False,
    )
    script = Script(symmetric(NODE_A), public6)
    async with running(probe(rdv, script)) as p:
        await settle(p, "measured")
    a, six = (r.client.profile for r in rdv.registrations)
    assert a == symmetric(NODE_A).to_profile()
    assert six is not None and six.mapping is Mapping.NONE and six.filtering is Filtering.ADDRESS_AND_PORT_DEPENDENT
    assert sorted(p.status()["families"]) == ["ipv4", "ipv6"] and p.status()["server"] == "198.18.0.1:7000"


async def test_failures_leave_the_nat_unknown_and_are_retried_with_back_off(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rdv = FakeRendezvous(NODE_A)
    script = Script(OSError("Network is unreachable"), silent(NODE_A), RuntimeError("a bug"), None)
    async with running(probe(rdv, script)) as p:
        await settle(p, "failed")
        assert p.status()["error"] == "198.18.0.1:7000: Network is unreachable"
        assert p.status()["mapped"] is None and rdv.registrations[0].client.profile is None
        assert p.retry_at == 5.5 + 10
        await settle(p, "measuring")
        await settle(p, "failed")
        assert p.status()["error"] == "198.18.0.1:7000: no answer"  # not "UDP blocked": the node may be down
        assert rdv.registrations[0].client.profile is None
        await settle(p, "measured")
        await trio.sleep(7200)
    # runs of 5.5 s, waits of 10, 20, 40 s between them; none after the success
    assert [t for t, _ in script.calls] == [0.0, 15.5, 41.0, 86.5]
    assert p.error == ""
    assert rdv.registrations[0].client.profile == symmetric(NODE_A).to_profile()


async def test_a_network_change_measures_again(autojump_clock: trio.testing.MockClock) -> None:
    rdv = FakeRendezvous(NODE_A)
    [registration] = rdv.registrations
    eim = dataclasses.replace(
        symmetric(NODE_A), mapping=Behaviour.ENDPOINT_INDEPENDENT, allocation=Allocation.PRESERVED
    )
    script = Script(symmetric(NODE_A), eim, silent(NODE_A))
    async with running(probe(rdv, script)) as p:
        await settle(p, "measured")
        p.registration_changed(registration, ("198.18.1.2", 40000))
        p.registration_changed(registration, None)  # lost, and back at the same address: nothing moved
        p.registration_changed(registration, ("198.18.1.2", 40000))
        await trio.sleep(60)
        assert len(script.calls) == 1
        p.registration_changed(registration, None)  # lost, and back on another address: measure again
        p.registration_changed(registration, ("198.18.9.2", 40000))
        changes = [trio.current_time()]
        await settle(p, "measuring")
        await settle(p, "measured")
        assert registration.client.profile == eim.to_profile() and registration.client.renewed == 2
        p.registration_changed(registration, ("198.18.9.2", 41000))
        changes.append(trio.current_time())  # moved again; this time no answer
        await settle(p, "failed")
        assert registration.client.profile is None and p.status()["mapping"] is None  # old findings dropped
    assert [t for t, _ in script.calls] == [0.0, *changes]  # each change measured at once


async def test_a_first_registration_after_a_failure_measures_at_once(autojump_clock: trio.testing.MockClock) -> None:
    rdv = FakeRendezvous(NODE_A)
    script = Script(silent(NODE_A))
    async with running(probe(rdv, script)) as p:
        await settle(p, "failed")
        p.registration_changed(rdv.registrations[0], ("198.18.1.2", 40000))
        registered = trio.current_time()
        assert registered < 5.5 + 10  # before the back-off's retry
        await settle(p, "measured")
    assert [t for t, _ in script.calls] == [0.0, registered]


async def test_a_node_that_answers_only_through_a_relay_proves_udp_blocked(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """NAT-3.6.5: no UDP answer is unknown (NAT-3.6.3) until the same node answers through a relay:
    then UDP is blocked, the profile says so; UDP registering again measures again."""
    rdv = FakeRendezvous(NODE_A)
    udp: Any = rdv.registrations[0]
    udp.client.node = b"node-a"
    script = Script(silent(NODE_A), symmetric(NODE_A))
    async with running(probe(rdv, script)) as p:
        await settle(p, "failed")
        unknown, profile = p.status(), udp.client.profile
        assert unknown["udp"] is None and profile is None  # the node may be down
        relayed: Any = FakeRegistration(("relay:node-a", 0), FakeClient(node=b"node-a", state=ClientState.REGISTERED))
        rdv.registrations.append(relayed)
        p.registration_changed(relayed, ("198.18.1.2", 51000))
        status = p.status()
        assert (status["state"], status["udp"], status["server"], status["mapped"]) == (
            "measured",
            False,
            "198.18.0.1:7000",
            None,
        )
        assert status["families"]["ipv4"]["udp"] is False and status["error"] == ""
        blocked: Any = NatProfile(udp_blocked=True)
        assert relayed.client.profile == blocked and udp.client.profile == blocked
        assert _nat_text(status)[0].startswith("NAT       UDP blocked: 198.18.0.1:7000 answers through a relay")
        await trio.sleep(3600)
        assert len(script.calls) == 1  # proven: no retries while nothing changes
        # UDP comes back: the node registers us over UDP, and the daemon measures again.
        udp.client.state = ClientState.REGISTERED
        p.registration_changed(udp, ("198.18.1.2", 40000))
        back = trio.current_time()
        await settle(p, "measuring")
        await settle(p, "measured")
        assert p.status()["udp"] is True and udp.client.profile == symmetric(NODE_A).to_profile()
    assert [t for t, _ in script.calls] == [0.0, back]


async def test_a_relay_registration_without_a_udp_failure_proves_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rdv = FakeRendezvous(NODE_A)
    [udp] = rdv.registrations
    udp.client.node, udp.client.state = b"node-a", ClientState.REGISTERED
    relayed: Any = FakeRegistration(("relay:node-a", 0), FakeClient(node=b"node-a", state=ClientState.REGISTERED))
    rdv.registrations.append(relayed)
    async with running(probe(rdv, Script())) as p:
        await settle(p, "measured")
        p.registration_changed(relayed, ("198.18.1.2", 51000))
        assert p.status()["udp"] is True


async def test_no_rendezvous_node_nothing_to_measure(autojump_clock: trio.testing.MockClock) -> None:
    script = Script()
    async with running(probe(FakeRendezvous(), script)) as p:
        await trio.sleep(3600)
    assert script.calls == [] and p.status()["state"] == "waiting" and p.status()["measured_at"] is None


def test_status_text_names_the_nat() -> None:
    base: dict[str, Any] = {
        "peer_id": "p",
        "core": "pure",
        "version": "0",
        "addresses": [],
        "registrations": [],
        "peers": [],
        "services": [],
        "plugins": [],
    }
    unknown = {"state": "failed", "mapped": None, "error": "198.18.0.1:7000: no answer"}
    assert "NAT       unknown: no answer (198.18.0.1:7000: no answer)" in _status_text({**base, "nat": unknown})
    measured = {
        "state": "measured",
        "measured_at": "2027-01-15T08:00:00Z",
        "server": "198.18.0.1:7000",
        "mapped": "198.18.1.2:50000",
        "nat": True,
        "mapping": "address-and-port-dependent",
        "filtering": "address-and-port-dependent",
        "allocation": "sequential",
        "allocation_delta": 2,
        "public": False,
        "hairpinning": None,
        "binding_timeout": None,
        "error": "",
    }
    text = _status_text({**base, "nat": measured})
    assert (
        "NAT       public address 198.18.1.2:50000, mapping address-and-port-dependent, "
        "filtering address-and-port-dependent, allocation sequential (+2)"
    ) in text
    assert "reachable unasked: no, hairpinning: unknown; measured" in text
    assert "binding timeout: not learned" in text  # a status without the ``keepalive`` object
    assert "measured 2027-01-15T08:00:00Z via 198.18.0.1:7000" in text


# -- a real daemon on loopback --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def daemon_with(tmp_path: Path, bootstrap: str) -> AsyncIterator[Daemon]:
    home = Home.at(tmp_path / "d")
    settings = Settings(listen=("127.0.0.1:0",), bootstrap=(bootstrap,), api_port=-1)
    async with open_daemon(home, settings) as daemon:
        yield daemon


async def test_the_daemon_shows_its_nat_and_registers_with_it(tmp_path: Path) -> None:
    keys = LocalKeys.generate(Identity.generate())
    try:
        server = await RelayServer.bind(keys, "127.0.0.1", 0, alternate=("127.0.0.2", 0))
    except OSError as exc:  # pragma: no cover - a host without 127.0.0.2 on loopback
        pytest.skip(f"cannot bind 127.0.0.2: {exc}")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.run)
        async with daemon_with(tmp_path, bootstrap_string(keys, server.address)) as daemon:
            with trio.fail_after(30):
                while daemon.nat.state != "measured":
                    await trio.sleep(0.05)
            status = await Client.for_home(daemon.home).status()
            nat = status["nat"]
            # loopback: no translation, and the alternate address's answer reached us unasked
            assert nat["state"] == "measured" and nat["nat"] is False and nat["public"] is True
            assert nat["mapping"] == "endpoint-independent" and nat["filtering"] == "endpoint-independent"
            assert nat["server"] == f"127.0.0.1:{server.address[1]}" and nat["binding_timeout"] is None
            assert nat["measured_at"].endswith("Z")
            # the node holds it as the daemon's traits (a renewal carried it, NAT-3.6.4)
            assert daemon.nat.report is not None
            expected = daemon.nat.report.to_profile()
            assert expected.mapping is Mapping.NONE and expected.filtering is Filtering.NONE
            with trio.fail_after(10):
                while True:
                    held = server.node.registration(daemon.peer_id.public_key)
                    if held is not None and held.traits is not None and held.traits.profile == expected:
                        break
                    await trio.sleep(0.05)
            assert "NAT       public address 127.0.0.1:" in _status_text(status)
        nursery.cancel_scope.cancel()


async def test_a_node_that_is_down_does_not_stop_the_daemon(tmp_path: Path) -> None:
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as hole:
        await hole.bind(("127.0.0.1", 0))
        port = hole.getsockname()[1]  # closed again: nothing answers there
    keys = LocalKeys.generate(Identity.generate())
    async with daemon_with(tmp_path, bootstrap_string(keys, ("127.0.0.1", port))) as daemon:
        with trio.fail_after(30):
            while daemon.nat.state != "failed":
                await trio.sleep(0.05)
        status = await Client.for_home(daemon.home).status()
        assert status["nat"]["mapped"] is None and status["nat"]["error"] == f"127.0.0.1:{port}: no answer"
        assert daemon.nat.retry_at is not None and daemon.rendezvous.registrations[0].client.profile is None
