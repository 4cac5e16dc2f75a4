"""adapters/punching.py in one process: a birthday's extra sockets, the winner handed to the node.

The peer here is a plain socket playing the stable side of a birthday by hand: it collects the
daemon side's probes (one from each of its 256 sockets), answers one of them, and sends one probe
of its own to that socket; the punch must succeed on that extra socket, adopt it into the node,
close the other 255 when it is forgotten, and report it."""

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
from p2pos.proto.nat.punch_plan import BIRTHDAY_SOCKETS
from p2pos.proto.rendezvous import messages as m

RANDOM = NatProfile(
    mapping=Mapping.ADDRESS_AND_PORT_DEPENDENT,
    filtering=Filtering.ADDRESS_AND_PORT_DEPENDENT,
    allocation=Allocation.RANDOM,
)
EIM = NatProfile(mapping=Mapping.ENDPOINT_INDEPENDENT, filtering=Filtering.ADDRESS_AND_PORT_DEPENDENT)
TICKET = bytes(range(16))


@pytest.mark.trio
async def test_the_birthday_side_adopts_its_winning_socket() -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    peer_sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await peer_sock.bind(("127.0.0.1", 0))
    peer_address = peer_sock.getsockname()
    async with open_node(make_keys("alice")) as node:
        before = len(node.transports)
        punching = Punching(node, notify=lambda kind, **fields: events.append((kind, fields)))
        async with trio.open_nursery() as nursery:
            await nursery.start(punching.run)
            punching.offer(
                PunchOffer(
                    peer=PeerId(make_keys("bob").identity.peer_id.public_key),
                    observed=peer_address,
                    candidates=(),
                    punch=m.Punch(traits=m.Traits(profile=EIM, rtt_ms=10), ticket=TICKET),
                    local=0,
                    profile=RANDOM,
                    rtt=0.01,
                    leading=True,
                )
            )
            sources: dict[tuple[str, int], bytes] = {}
            with trio.fail_after(10):
                while len(sources) < BIRTHDAY_SOCKETS:
                    data, source = await peer_sock.recvfrom(2048)
                    message = sm.decode_untrusted(data)
                    assert message.klass == sm.REQUEST and message.integrity_ok(TICKET)
                    sources[source] = message.transaction_id
            main = node.transports[0].local_address
            assert main in sources  # the main socket is one of the 256
            winner = next(s for s in sources if s != main)
            # The stable side's scan lands on one of them: its probe, which the winner answers; and
            # the answer to the winner's own probe.
            await peer_sock.sendto(pu.probe(TICKET, b"s" * 12), winner)
            await peer_sock.sendto(pu.answer(TICKET, sources[winner], winner), winner)
            with trio.fail_after(10):
                while not any(kind == "punch_succeeded" for kind, _ in events):
                    await trio.sleep(0.01)
            assert len(node.transports) == before + 1
            assert node.transports[-1].local_address == winner
            while True:  # the winner's answer to our probe
                data, _ = await peer_sock.recvfrom(2048)
                if sm.decode_untrusted(data).klass == sm.SUCCESS:
                    break
            # Under loss the peer may win on another of our sockets (its answer from the first was
            # lost): its later probe there makes the node read that socket too.
            second = next(s for s in sources if s not in (main, winner))
            await peer_sock.sendto(pu.probe(TICKET, b"t" * 12), second)
            assert (await peer_sock.recvfrom(2048))[1] == second  # answered
            with trio.fail_after(10):
                while len(node.transports) < before + 2:
                    await trio.sleep(0.01)
            assert node.transports[-1].local_address == second
            (ok,) = [f for kind, f in events if kind == "punch_succeeded"]
            assert ok["address"] == f"127.0.0.1:{peer_address[1]}" and ok["probes"] == BIRTHDAY_SOCKETS
            # The adopted socket is the node's now: a datagram to it is the node's to read.
            with trio.fail_after(10):
                while punching._runs:  # forgotten after the linger
                    await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
    peer_sock.close()
