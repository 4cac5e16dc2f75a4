#!/usr/bin/env python3
"""aioquic peers for bench/node.py: QUIC (TLS 1.3) on one stream, aioquic's defaults.

Everything is ``QuicConfiguration``'s defaults (Reno, 1 MiB flow-control windows,
1200-byte datagrams, no session resumption) except the ALPN both ends need and
the self-signed certificate: a P-256 key and certificate made with
``cryptography`` when the server starts, kept in memory; the client does not
verify it.

Set-up: ``connect`` (handshake complete: ``connect_ms``) then a new stream
carrying ``ECHO``, until the echo is back (``setup_ms``); the connection is
closed outside the timing.  Bulk: one
stream, ``BULK`` then the payload in 64 KiB writes.  aioquic's ``StreamWriter``
never pushes back, so the writes only buffer and aioquic's flow and congestion
control decide what goes on the wire; the client yields to the event loop after
each write so transmission starts at once.  The server's ``seconds`` run from the
first payload read to the last.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
import time

from _peer import BULK, CHUNK, COUNT, ECHO, LOOPBACK, ClientArgs, emit, emit_client_result, parse_args
from aioquic.asyncio.client import connect
from aioquic.asyncio.server import serve
from aioquic.quic.configuration import QuicConfiguration
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ALPN = "bench-node"


def self_signed() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate, key


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, done: asyncio.Future[None]) -> None:
    tag = await reader.readexactly(1)
    if tag == ECHO:
        writer.write(ECHO)
        return
    assert tag == BULK, tag
    clock = time.perf_counter
    first = last = clock()
    received = 0
    while chunk := await reader.read(CHUNK):
        last = clock()
        if not received:
            first = last
        received += len(chunk)
    writer.write(COUNT.pack(received))
    writer.write_eof()
    emit(bytes=received, seconds=last - first)
    done.set_result(None)


async def server() -> None:
    configuration = QuicConfiguration(is_client=False, alpn_protocols=[ALPN])
    configuration.certificate, configuration.private_key = self_signed()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    tasks: set[asyncio.Task[None]] = set()

    def on_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(handle(reader, writer, done))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    quic_server = await serve(LOOPBACK, 0, configuration=configuration, stream_handler=on_stream)
    assert quic_server._transport is not None
    emit(port=quic_server._transport.get_extra_info("sockname")[1])
    await done
    # The answer to the bulk transfer still has to leave: bench/node.py ends this
    # process once the client has exited.
    await asyncio.Event().wait()


def client_configuration() -> QuicConfiguration:
    return QuicConfiguration(is_client=True, alpn_protocols=[ALPN], verify_mode=ssl.CERT_NONE)


async def echo_once(port: int) -> tuple[float, float]:
    """Seconds from starting to connect to the echo of 1 byte on a new stream, and to the handshake's end."""
    start = time.perf_counter()
    async with connect(LOOPBACK, port, configuration=client_configuration()) as connection:
        connected = time.perf_counter() - start
        reader, writer = await connection.create_stream()
        writer.write(ECHO)
        reply = await reader.readexactly(1)
        elapsed = time.perf_counter() - start
    assert reply == ECHO, reply
    return elapsed, connected


async def bulk(port: int, total: int) -> tuple[float, int]:
    """Send ``total`` bytes on one stream: seconds until the server's count came back, and the count."""
    payload = bytes(CHUNK)
    async with connect(LOOPBACK, port, configuration=client_configuration()) as connection:
        reader, writer = await connection.create_stream()
        start = time.perf_counter()
        writer.write(BULK)
        remaining = total
        while remaining:
            size = min(remaining, CHUNK)
            writer.write(payload[:size] if size < CHUNK else payload)
            remaining -= size
            await asyncio.sleep(0)
        writer.write_eof()
        (received,) = COUNT.unpack(await reader.readexactly(COUNT.size))
        elapsed = time.perf_counter() - start
    return elapsed, received


async def client(args: ClientArgs) -> None:
    setups = [await echo_once(args.port) for _ in range(args.warmup + args.setups)][args.warmup :]
    seconds, received = await bulk(args.port, args.bulk_bytes)
    emit_client_result(
        bulk_bytes=args.bulk_bytes,
        seconds=seconds,
        setup_seconds=[s for s, _ in setups],
        connect_seconds=[c for _, c in setups],
        received=received,
    )


def main() -> None:
    args = parse_args()
    if args is None:
        asyncio.run(server())
    else:
        asyncio.run(client(args))


if __name__ == "__main__":
    main()
