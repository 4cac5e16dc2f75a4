"""A p2pos session over the carrier (spec/quic.md §5): the runner's endpoint against the IUT's.

The runner plays the initiator with the reference core (``p2pos.proto.Endpoint``), its
handshake and records being frames of the carrier stream; the IUT must answer as over UDP,
report the session (``session``) and the messages (``message``), and send one (``message``
command) back.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from p2pos.proto import Endpoint, HandshakeCompleted, LocalKeys, MessageReceived
from p2pos.proto.identity.peer_id import PeerId

from ..checks import CaseFailed, expect
from . import certs
from .cases_dial import good
from .cases_listen import authenticated, connect
from .control import Iut
from .helpers import RUNNER, WAIT
from .peer import Peer, frame
from .registry import case

#: The runner's Noise static key (fixed: runs are reproducible).
STATIC = bytes(range(33, 65))
ADDRESS = "iut"


class Session:
    """The runner's endpoint over one carrier stream (stream 0 of ``peer``)."""

    def __init__(self, peer: Peer, skip: int) -> None:
        self.peer = peer
        self.endpoint = Endpoint(LocalKeys.create(RUNNER, STATIC))
        self.read = skip  # frames of stream 0 already consumed (the dialer's proof)
        self.events: list[object] = []

    def flush(self) -> None:
        for datagrams, _, _ in self.endpoint.data_to_send(time.monotonic()):
            self.peer.send(0, b"".join(frame(d) for d in datagrams))
        while (event := self.endpoint.next_event()) is not None:
            self.events.append(event)

    def step(self) -> None:
        frames, _ = self.peer.frames(0)
        for datagram in frames[self.read :]:
            self.endpoint.receive_data(datagram, ADDRESS, time.monotonic())
        self.read = len(frames)
        timer = self.endpoint.get_timer()
        if timer is not None and time.monotonic() >= timer:
            self.endpoint.handle_timer(time.monotonic())
        self.flush()

    def run_until(self, what: str, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WAIT
        while not done():
            if time.monotonic() > deadline:
                raise CaseFailed(f"no {what} within {WAIT} s over the carrier")
            self.peer.pump(timeout=0.02)
            self.step()

    def of(self, kind: type) -> list[object]:
        return [e for e in self.events if isinstance(e, kind)]


def _exchange(iut: Iut, peer: Peer, conn: object, skip: int) -> None:
    """Handshake, a message each way, over the carrier ``conn`` (the runner initiates)."""
    runner = Session(peer, skip)
    session = runner.endpoint.connect(ADDRESS, time.monotonic(), expected_peer=PeerId.parse(iut.peer_id))
    runner.flush()
    runner.run_until("completed session handshake", lambda: bool(runner.of(HandshakeCompleted)))
    event = iut.expect(lambda e: e.get("event") == "session" and e.get("conn") == conn, f"a session on carrier {conn}")
    expect(event.get("peer_id") == str(RUNNER.peer_id), f"the IUT's session peer is {event.get('peer_id')}")
    session.send(b"hello over QUIC", time.monotonic())
    runner.endpoint.updated(session.local_index)
    runner.flush()
    got = iut.expect(lambda e: e.get("event") == "message" and e.get("conn") == conn, "the message")
    expect(got.get("data") == b"hello over QUIC".hex(), f"the IUT received {got.get('data')!r}")
    iut.command(f"message {conn} {b'and back'.hex()}")
    runner.run_until("message from the IUT", lambda: bool(runner.of(MessageReceived)))
    data = [getattr(e, "data", None) for e in runner.of(MessageReceived)]
    expect(data == [b"and back"], f"the runner received {data}")
    expect(not runner.endpoint.drops, f"the runner's endpoint dropped {dict(runner.endpoint.drops)}")


@case(
    "quic/session/1",
    section="§5",
    title="a p2pos session runs over a carrier the runner dialed: handshake and messages are stream frames",
    requirements=("QUIC-5.1",),
)
def _(iut: Iut) -> str | None:
    peer = connect(iut)
    try:
        conn = authenticated(iut, peer)
        _exchange(iut, peer, conn, skip=0)
        return None
    finally:
        peer.close()
        peer.close_socket()


@case(
    "quic/session/2",
    section="§5",
    title="a p2pos session runs over a carrier the IUT dialed (the runner's listener initiates)",
    requirements=("QUIC-5.1",),
)
def _(iut: Iut) -> str | None:
    cert, key = certs.good_certificate(RUNNER)
    peer, conn = good(iut, cert, key)
    try:
        peer.pump(lambda: bool(peer.frames(0)[0]), WAIT)
        _exchange(iut, peer, conn, skip=1)
        return None
    finally:
        peer.close()
        peer.close_socket()
