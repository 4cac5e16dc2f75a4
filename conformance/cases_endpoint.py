"""Endpoint cases: the INIT replay cache (spec/handshake.md §8.3).

These use the control protocol's optional ``endpoint`` mode (spec/conformance.md
§3.3): the IUT runs its endpoint, which creates a responder session for each
new INIT and picks the session indices itself.  An IUT without an endpoint
exits 127 for these cases.
"""

from __future__ import annotations

from typing import Any

from p2pos.proto.handshake.noise import Pattern
from p2pos.proto.session.wire import PacketType, encode_finish

from .checks import expect, expect_eq
from .iut import Iut
from .reference import (
    IUT,
    REF_INDEX,
    Hand,
    events_of,
    finish_payload,
    handshake_message,
    init_payload,
    one_event,
    one_packet,
    out_of,
)
from .registry import case

REPLAY_CACHE = "handshake.md §8.3"


def _start_endpoint(iut: Iut) -> None:
    iut.ok("endpoint", seed=IUT.seed, static=IUT.static, config={})


def _complete(iut: Iut, hand: Hand, response: bytes, now: float) -> dict[str, Any]:
    """Read the endpoint's RESPONSE with ``hand`` and answer it with a FINISH; returns the IUT's answer."""
    expect_eq(int.from_bytes(response[5:9], "big"), REF_INDEX, "receiver index of the RESPONSE")
    payload = hand.check_identity(hand.read(handshake_message(response, PacketType.RESPONSE), "RESPONSE"))
    index = int.from_bytes(response[1:5], "big")
    expect_eq(payload.session_index, index, "session index in the RESPONSE payload")
    return iut.ok("receive", data=encode_finish(index, hand.write(finish_payload())), now=now, addr="peer")


def _sessions(iut: Iut) -> object:
    return iut.ok("state").get("sessions")


@case("hs/replay/1", section=REPLAY_CACHE, title="a forged variant of an INIT, sent first, does not block the real one")
def _(iut: Iut) -> None:
    _start_endpoint(iut)
    hand = Hand(Pattern.XX, initiator=True)
    genuine = hand.init(init_payload())
    # The same ephemeral key under another index (header and payload): a valid INIT of its own.
    other = REF_INDEX ^ 0x5A5A
    forged = Hand(Pattern.XX, initiator=True).init(init_payload(index=other), index=other)
    expect(forged[6:38] == genuine[6:38] and forged != genuine, "internal: the variant shares the ephemeral only")
    answer = iut.ok("receive", data=forged, now=0.0, addr="attacker")
    expect_eq(int.from_bytes(one_packet(answer, PacketType.RESPONSE)[5:9], "big"), other, "the variant's RESPONSE")
    response = one_packet(iut.ok("receive", data=genuine, now=0.1, addr="peer"), PacketType.RESPONSE)
    one_event(_complete(iut, hand, response, 0.2), "handshake_completed")


@case("hs/replay/2", section=REPLAY_CACHE, title="an INIT replayed after its handshake completed creates nothing")
def _(iut: Iut) -> str:
    _start_endpoint(iut)
    hand = Hand(Pattern.XX, initiator=True)
    init = hand.init(init_payload())
    response = one_packet(iut.ok("receive", data=init, now=0.0, addr="peer"), PacketType.RESPONSE)
    one_event(_complete(iut, hand, response, 0.1), "handshake_completed")
    before = _sessions(iut)
    for now, addr in ((1.0, "peer"), (2.0, "elsewhere")):
        answer = iut.ok("receive", data=init, now=now, addr=addr)
        expect_eq((out_of(answer), events_of(answer)), ([], []), f"answer to the INIT replayed at t={now} from {addr}")
    expect_eq(_sessions(iut), before, "sessions after the replays")
    return f"{before} session(s) before and after"
