"""A p2pos connection with channels over the QUIC carrier (spec/quic.md §5).

Two ``Endpoint``s with the channel layer (default ``ChannelConfig``: no reliable-carrier
mode) are driven by a small trio pump each: every batch of ``data_to_send`` goes out as one
``send_records`` call, every record received is one datagram for the endpoint, and the
endpoint's timer is honoured.  Alice opens a stream channel to Bob's ``sink`` service and
writes 4 MB; Bob reads it to the end and both SHA-256 digests must match.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable

import trio
from helpers import make_keys

from p2pos.proto import Endpoint
from p2pos.proto.channels.connection import ChannelConfig
from p2pos.proto.events import (
    ChannelDataAvailable,
    ChannelEnded,
    ChannelOpened,
    ChannelRequested,
    ChannelWritable,
    ConnectionReady,
)
from p2pos.transports import quic
from p2pos.transports.quic import CarrierClosed, QuicCarrier

ALICE, BOB = make_keys("alice"), make_keys("bob")
LOOPBACK = "127.0.0.1"


class Pump:
    """Drives one endpoint over one carrier: records in, batches out, timers, events to ``on_event``."""

    def __init__(self, endpoint: Endpoint, carrier: QuicCarrier, address: str) -> None:
        self.endpoint = endpoint
        self.carrier = carrier
        self.address = address
        self.on_event: Callable[[object], None] = lambda event: None
        self._wake = trio.Event()

    def poke(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._receive, nursery.cancel_scope)
            while True:
                now = trio.current_time()
                for datagrams, _address, _local in self.endpoint.data_to_send(now):
                    await self.carrier.send_records(datagrams)
                while (event := self.endpoint.next_event()) is not None:
                    self.on_event(event)
                if self._wake.is_set():
                    self._wake = trio.Event()
                    continue
                timer = self.endpoint.get_timer()
                with trio.move_on_at(timer if timer is not None else math.inf):
                    await self._wake.wait()
                self._wake = trio.Event()
                now = trio.current_time()
                if timer is not None and now >= timer:
                    self.endpoint.handle_timer(now)

    async def _receive(self, scope: trio.CancelScope) -> None:
        while True:
            try:
                record = await self.carrier.receive_record()
            except CarrierClosed:
                scope.cancel()
                return
            self.endpoint.receive_data(record, self.address, trio.current_time())
            self._wake.set()


async def test_a_channel_transfer_over_the_carrier() -> None:
    """[QUIC-5.1]: 4 MB on a stream channel through the carrier, digests equal, nothing dropped."""
    payload = random.Random(5).randbytes(4 * 1024 * 1024)
    a = Endpoint(ALICE, channels=ChannelConfig())
    b = Endpoint(BOB, channels=ChannelConfig())
    received = hashlib.sha256()
    ended = trio.Event()
    got = 0

    async with quic.listen(LOOPBACK, 0, BOB.identity) as listener, trio.open_nursery() as nursery:
        async with quic.dial(
            LOOPBACK, listener.port, expected_peer_id=BOB.identity.peer_id, identity=ALICE.identity
        ) as dialer:
            pump_a = Pump(a, dialer, "quic:bob")
            nursery.start_soon(pump_a.run)
            session = a.connect("quic:bob", trio.current_time(), expected_peer=BOB.identity.peer_id)
            pump_a.poke()
            server = await listener.accept()
            pump_b = Pump(b, server, "quic:alice")

            def bob_event(event: object) -> None:
                nonlocal got
                match event:
                    case ChannelRequested(session_id=sid, channel_id=cid, service="sink"):
                        connection = b.connection(sid)
                        assert connection is not None
                        connection.accept_channel(cid, trio.current_time())
                        b.updated(sid)
                    case ChannelDataAvailable(session_id=sid, channel_id=cid):
                        connection = b.connection(sid)
                        assert connection is not None
                        data = connection.read(cid)
                        received.update(data)
                        got += len(data)
                        b.updated(sid)
                    case ChannelEnded():
                        ended.set()
                    case _:
                        pass

            pump_b.on_event = bob_event
            nursery.start_soon(pump_b.run)

            connection = a.connection(session.local_index)
            assert connection is not None
            opened = trio.Event()
            writable = trio.Event()

            def alice_event(event: object) -> None:
                nonlocal writable
                match event:
                    case ChannelOpened() | ConnectionReady():
                        opened.set()
                    case ChannelWritable():
                        writable.set()
                    case _:
                        pass

            pump_a.on_event = alice_event
            with trio.fail_after(60):
                await opened.wait()
                channel = connection.open_channel("sink", trio.current_time())
                a.updated(session.local_index)
                pump_a.poke()
                view = memoryview(payload)
                offset = 0
                while offset < len(payload):
                    accepted = connection.send(channel, view[offset:], trio.current_time())
                    offset += accepted
                    a.updated(session.local_index)
                    pump_a.poke()
                    if offset < len(payload):
                        writable = trio.Event()
                        await writable.wait()
                connection.finish(channel, trio.current_time())
                a.updated(session.local_index)
                pump_a.poke()
                await ended.wait()
            assert got == len(payload)
            assert received.digest() == hashlib.sha256(payload).digest()
            assert a.drops == {} and b.drops == {}
            assert listener.drops == {}
        nursery.cancel_scope.cancel()
