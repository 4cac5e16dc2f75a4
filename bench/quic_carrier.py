"""The QUIC carrier's goodput against plain aioquic, on loopback, in one run (issue 12, item 9).

    python bench/quic_carrier.py            # ~30-60 s: 3 rounds of 32 MB per contender
    python bench/quic_carrier.py --quick    # ~10 s smoke run (1 MB); the figures mean little

Contenders, each moving the same bytes from a dialer to a listener in one process
(both ends of every transfer share the CPU, as in bench/channels.py):

* ``carrier_<size>``: ``transports/quic.py`` (trio driver, identity binding, framing),
  records of ``size`` bytes, timed from the first ``send_record`` until the listener has
  read the last byte;
* ``aioquic_stream_<size>``: aioquic's own asyncio API, one stream written in chunks of
  ``size`` bytes with the same 1 MiB unacknowledged-bytes cap and flow-control windows,
  timed from the first write until the server has the stream's end;
* ``aioquic_datagram_1100``: aioquic's DATAGRAM frames (RFC 9221) of 1100 bytes (what fits
  in aioquic's 1200-byte packets), timed until the last one arrives; the figure counts
  delivered bytes and ``datagram_delivered_fraction`` says how many arrived (DATAGRAM
  frames are never retransmitted).

Contenders run interleaved, the order rotated each round; a figure is the median of the
rounds, spread = (max - min) / median.  Ratio with a target: ``carrier_vs_aioquic_stream_16384``
(>= 0.8, issue 12); the others are informational.  The last line is the JSON summary
(bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

import trio
from _common import emit_json, print_ratios, say
from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import DatagramFrameReceived, QuicEvent, StreamDataReceived

from p2pos.proto.identity.identity import Identity
from p2pos.transports import quic, quic_tls

HOST = "127.0.0.1"
LISTENER = Identity.from_seed(bytes([0xB0]) * 32)
DIALER = Identity.from_seed(bytes([0xA0]) * 32)
BLOCK = bytes(range(256)) * 256  # 64 KiB of payload, sliced per record
DATAGRAM_SIZE = 1100


async def _send_stream(client: QuicConnectionProtocol, connection: QuicConnection, chunk: bytes, count: int) -> None:
    """``count`` writes of ``chunk`` on a new stream of ``connection``, as fast as aioquic takes them
    (at most ``quic.SEND_HIGH_WATER`` unacknowledged), then its end."""
    stream_id = connection.get_next_available_stream_id()
    for _ in range(count):
        while quic._unacked_bytes(connection, stream_id) >= quic.SEND_HIGH_WATER:
            await asyncio.sleep(0.0005)
        connection.send_stream_data(stream_id, chunk)
        client.transmit()
    connection.send_stream_data(stream_id, b"", end_stream=True)
    client.transmit()


def carrier_transfer(total: int, size: int) -> float:
    """Seconds to move ``total`` bytes through the carrier in records of ``size`` bytes."""

    async def main() -> float:
        record = BLOCK[:size]
        count = total // size
        done = trio.Event()
        finished = 0.0
        async with quic.listen(HOST, 0, LISTENER) as listener:

            async def receive() -> None:
                nonlocal finished
                carrier = await listener.accept()
                got = 0
                while got < count * size:
                    got += len(await carrier.receive_record())
                finished = time.perf_counter()
                done.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive)
                async with quic.dial(HOST, listener.port, expected_peer_id=LISTENER.peer_id, identity=DIALER) as c:
                    start = time.perf_counter()
                    for _ in range(count):
                        await c.send_record(record)
                    await done.wait()
        return finished - start

    return trio.run(main)


def _configurations(datagrams: bool) -> tuple[QuicConfiguration, QuicConfiguration]:
    certificate, key = quic_tls.make_certificate(LISTENER, time.time())
    extra = {"max_datagram_frame_size": 65536} if datagrams else {}
    server = QuicConfiguration(
        is_client=False,
        alpn_protocols=["bench"],
        max_stream_data=quic.MAX_STREAM_DATA,
        max_data=quic.MAX_DATA,
        **extra,  # type: ignore[arg-type]
    )
    server.certificate, server.private_key = certificate, key
    client = QuicConfiguration(
        is_client=True,
        alpn_protocols=["bench"],
        max_stream_data=quic.MAX_STREAM_DATA,
        max_data=quic.MAX_DATA,
        verify_mode=0,
        **extra,  # type: ignore[arg-type]
    )
    return server, client


def aioquic_transfer(total: int, size: int, datagrams: bool) -> tuple[float, int]:
    """Seconds to move ``total`` bytes with plain aioquic, and the bytes that arrived."""

    async def main() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        got = 0
        last = 0.0
        done = asyncio.Event()
        expected = (total // size) * size

        class Server(QuicConnectionProtocol):
            def quic_event_received(self, event: QuicEvent) -> None:
                nonlocal got, last
                if isinstance(event, StreamDataReceived | DatagramFrameReceived):
                    got += len(event.data)
                    last = time.perf_counter()
                    if got >= expected or (isinstance(event, StreamDataReceived) and event.end_stream):
                        done.set()

        server_config, client_config = _configurations(datagrams)
        server = await serve(HOST, 0, configuration=server_config, create_protocol=Server)
        port = server._transport.get_extra_info("sockname")[1]  # type: ignore[union-attr]
        try:
            async with connect(HOST, port, configuration=client_config) as client:
                connection = client._quic
                chunk = BLOCK[:size]
                start = time.perf_counter()
                if datagrams:
                    for _ in range(total // size):
                        connection.send_datagram_frame(chunk)
                    client.transmit()
                    # DATAGRAM frames are not retransmitted: stop once nothing arrived for 0.5 s.
                    while not done.is_set():
                        before = got
                        try:
                            await asyncio.wait_for(done.wait(), 0.5)
                        except TimeoutError:
                            if got == before:
                                break
                else:
                    await _send_stream(client, connection, chunk, total // size)
                    await done.wait()
                del loop
                return last - start, got
        finally:
            server.close()

    return asyncio.run(main())


# -- plain aioquic between two processes (bench/carriers.py's baseline for the daemons over QUIC) ---------


def aioquic_sink() -> None:
    """Serve plain aioquic on ``HOST`` until killed (``--sink``): print ``port N``, then for each stream
    that ends, answer on it with the byte count (ASCII) and end it.  One process, as a daemon is."""

    async def main() -> None:
        class Sink(QuicConnectionProtocol):
            def __init__(self, *args: object, **kwargs: object) -> None:
                super().__init__(*args, **kwargs)  # type: ignore[arg-type]
                self.counts: dict[int, int] = {}

            def quic_event_received(self, event: QuicEvent) -> None:
                if isinstance(event, StreamDataReceived):
                    count = self.counts[event.stream_id] = self.counts.get(event.stream_id, 0) + len(event.data)
                    if event.end_stream:
                        self._quic.send_stream_data(event.stream_id, str(count).encode(), end_stream=True)
                        self.transmit()

        server_config, _ = _configurations(False)
        server = await serve(HOST, 0, configuration=server_config, create_protocol=Sink)
        print(f"port {server._transport.get_extra_info('sockname')[1]}", flush=True)  # type: ignore[union-attr]
        await asyncio.Event().wait()

    asyncio.run(main())


def aioquic_send(port: int, total: int, size: int) -> tuple[float, int]:
    """Seconds to send ``total`` bytes (writes of ``size``) on one plain aioquic stream to ``aioquic_sink``
    on ``port``, from the first write until its count comes back (as the daemons' ``bench/send`` is
    timed), and the count.  The connection is made before the clock starts."""

    async def main() -> tuple[float, int]:
        reply = bytearray()
        done = asyncio.Event()

        class Client(QuicConnectionProtocol):
            def quic_event_received(self, event: QuicEvent) -> None:
                if isinstance(event, StreamDataReceived):
                    reply.extend(event.data)
                    if event.end_stream:
                        done.set()

        _, client_config = _configurations(False)
        async with connect(HOST, port, configuration=client_config, create_protocol=Client) as client:
            connection = client._quic
            chunk = BLOCK[:size]
            start = time.perf_counter()
            await _send_stream(client, connection, chunk, total // size)
            await done.wait()
            return time.perf_counter() - start, int(reply)

    return asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    parser.add_argument("--megabytes", type=int, default=None, help="MB per transfer (default 32, 1 with --quick)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3, 2 with --quick)")
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)  # aioquic_sink, for bench/carriers.py
    args = parser.parse_args(argv)
    if args.sink:
        aioquic_sink()
        return 0
    total = (args.megabytes or (1 if args.quick else 32)) * 1_000_000
    rounds = args.rounds or (2 if args.quick else 3)
    delivered: list[float] = []

    def datagram_run() -> float:
        seconds, got = aioquic_transfer(total, DATAGRAM_SIZE, datagrams=True)
        delivered.append(got / ((total // DATAGRAM_SIZE) * DATAGRAM_SIZE))
        return got / seconds / 1e6

    def stream_run(size: int) -> Callable[[], float]:
        def run() -> float:
            seconds, got = aioquic_transfer(total, size, datagrams=False)
            return got / seconds / 1e6

        return run

    def carrier_run(size: int) -> Callable[[], float]:
        return lambda: (total // size) * size / carrier_transfer(total, size) / 1e6

    contenders: dict[str, Callable[[], float]] = {
        "carrier_MBps_16384": carrier_run(16384),
        "aioquic_stream_MBps_16384": stream_run(16384),
        "carrier_MBps_1200": carrier_run(1200),
        "aioquic_stream_MBps_1200": stream_run(1200),
        "aioquic_datagram_MBps_1100": datagram_run,
    }
    say(f"QUIC carrier vs plain aioquic on loopback: {total / 1e6:.0f} MB per transfer, {rounds} rounds")
    samples: dict[str, list[float]] = {key: [] for key in contenders}
    names = list(contenders)
    for r in range(rounds):
        for i in range(len(names)):
            key = names[(i + r) % len(names)]
            samples[key].append(contenders[key]())
        say(f"  round {r + 1}/{rounds} done")
    figures = {key: statistics.median(values) for key, values in samples.items()}
    spreads = {key: (max(v) - min(v)) / statistics.median(v) for key, v in samples.items()}
    say("")
    say(f"{'figure (median of rounds)':<32} {'MB/s':>8}  spread")
    for key, value in figures.items():
        say(f"{key:<32} {value:>8.1f}  {spreads[key]:6.1%}")
    fraction = statistics.median(delivered)
    say(f"DATAGRAM frames delivered: {fraction:.1%}")
    ratios = {
        "carrier_vs_aioquic_stream_16384": figures["carrier_MBps_16384"] / figures["aioquic_stream_MBps_16384"],
        "carrier_vs_aioquic_stream_1200": figures["carrier_MBps_1200"] / figures["aioquic_stream_MBps_1200"],
        "aioquic_datagram_vs_stream_1200": figures["aioquic_datagram_MBps_1100"] / figures["aioquic_stream_MBps_1200"],
    }
    targets = {"carrier_vs_aioquic_stream_16384": 0.8}
    met = print_ratios(ratios, targets, width=36, digits=2)
    emit_json(
        {
            "bench": "quic_carrier",
            "figures": figures,
            "ratios": ratios,
            "targets": targets,
            "targets_met": met,
            "settings": {"bytes": total, "rounds": rounds},
            "details": {"spread": spreads, "datagram_delivered_fraction": fraction},
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
