"""adapters/punching.py and fresh mappings (spec/punch.md §3.4, spec/rendezvous.md §4.6), in one process.

Loopback has no NAT, so the profiles are stated: on the sequential side the punch must send its
two fresh Bindings from the introduction's socket to the node's other address (a plain socket
here) before probing, and take the node's answer; on the stable side a FRESH (``Punching.fresh``,
what the rendezvous client's ``FreshReceived`` becomes) must send predicted probes from the fresh
port at once.  The emulator (tests/simulation/test_punch_fresh.py) shows what it buys."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import trio
from helpers import make_keys

from p2pos.adapters.node import open_node
from p2pos.adapters.punching import Punching, PunchOffer
from p2pos.proto import PeerId
from p2pos.proto.nat import punch as pu
from p2pos.proto.nat import stun_message as sm
from p2pos.proto.nat.profile import Allocation, Filtering, Mapping, NatProfile
from p2pos.proto.rendezvous import messages as m

SEQ = NatProfile(
    mapping=Mapping.ADDRESS_AND_PORT_DEPENDENT,
    filtering=Filtering.ADDRESS_AND_PORT_DEPENDENT,
    allocation=Allocation.SEQUENTIAL,
    delta=1,
)
EIM = NatProfile(mapping=Mapping.ENDPOINT_INDEPENDENT, filtering=Filtering.ADDRESS_AND_PORT_DEPENDENT)
TICKET = bytes(range(0x30, 0x40))
BOB = PeerId(make_keys("bob").identity.peer_id.public_key)


async def _socket() -> tuple[trio.socket.SocketType, tuple[str, int]]:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()


def _offer(profile: NatProfile, peer_profile: NatProfile, observed: tuple[str, int], **fields: Any) -> PunchOffer:
    return PunchOffer(
        peer=BOB,
        observed=observed,
        candidates=(),
        punch=m.Punch(traits=m.Traits(profile=peer_profile, rtt_ms=10), ticket=TICKET),
        local=0,
        profile=profile,
        rtt=0.01,
        **fields,
    )


@pytest.mark.trio
async def test_a_sequential_side_sends_its_fresh_bindings_to_the_nodes_other_address() -> None:
    peer_sock, peer_address = await _socket()
    other_sock, other_address = await _socket()
    async with open_node(make_keys("alice")) as node:
        punching = Punching(node)
        async with trio.open_nursery() as nursery:
            await nursery.start(punching.run)
            punching.offer(_offer(SEQ, EIM, peer_address, leading=False, fresh_to=other_address))
            main = node.transports[0].local_address
            with trio.fail_after(10):
                data, source = await other_sock.recvfrom(2048)
            message = sm.decode_untrusted(data)
            assert source == main and message.klass == sm.REQUEST and message.integrity_ok(TICKET)
            assert message.get(sm.USERNAME) == pu.fresh_username(TICKET, leading=False)
            await other_sock.sendto(pu.answer(TICKET, message.transaction_id, source), source)
            with trio.fail_after(10):
                second, _ = await other_sock.recvfrom(2048)  # the second, answered or not (PUN-3.4.1)
            assert sm.decode_untrusted(second).get(sm.USERNAME) == pu.fresh_username(TICKET, leading=False)
            with trio.fail_after(10):
                probe, _ = await peer_sock.recvfrom(2048)  # and the dial of the peer (row 7)
            assert sm.decode_untrusted(probe).get(sm.USERNAME) == pu.ticket_id(TICKET)
            (run,) = punching._runs.values()
            assert run.puncher is not None and run.puncher.fresh_mapped == main and run.puncher.fresh_sent == 2
            nursery.cancel_scope.cancel()
    peer_sock.close()
    other_sock.close()


@pytest.mark.trio
async def test_a_fresh_re_bases_the_stable_sides_prediction() -> None:
    observed_sock, observed = await _socket()
    target_sock, target = await _socket()  # the port fresh + 1: the first re-based prediction
    async with open_node(make_keys("alice")) as node:
        punching = Punching(node)
        async with trio.open_nursery() as nursery:
            await nursery.start(punching.run)
            assert not punching.fresh(BOB, TICKET[:8], (target[0], target[1] - 1))  # no punch yet: ignored
            punching.offer(_offer(EIM, SEQ, observed, leading=True, fresh_to=("127.0.0.1", 9)))
            with trio.fail_after(10):
                await observed_sock.recvfrom(2048)  # the punch runs (a stable side sends no fresh Binding)
            assert not punching.fresh(BOB, bytes(8), (target[0], target[1] - 1))  # another ticket
            assert punching.fresh(BOB, TICKET[:8], (target[0], target[1] - 1))
            with trio.fail_after(2):
                data, source = await target_sock.recvfrom(2048)
            assert source == node.transports[0].local_address
            assert sm.decode_untrusted(data).get(sm.USERNAME) == pu.ticket_id(TICKET)
            (run,) = punching._runs.values()
            assert run.puncher is not None and run.puncher.rebased == 1 and run.puncher.fresh_sent == 0
            nursery.cancel_scope.cancel()
    observed_sock.close()
    target_sock.close()
