#!/usr/bin/env python3
"""Plain trio UDP peers for bench/node.py: the floor, no crypto and no reliability.

Bulk: the client sends 1200-byte datagrams with one ``send`` each (``DATA`` tag
then zeros); the server counts what arrives.  So that the receiver is not overrun
massively, the sender keeps at most ``WINDOW`` datagrams unacknowledged: the
server returns its count of data datagrams (``ACK`` + 8 bytes) every ``ACK_EVERY``
of them.  If no acknowledgement comes for ``STALL_SECONDS`` with the window full,
the sender counts what is outstanding as lost and carries on (``stalls`` in its
result).  At the end the client sends ``END`` until the server answers with its
byte count.  The server's ``seconds`` run from the first data datagram received
to the last one.

Set-up: no handshake exists, so the "set-up" is the floor of the others: a fresh
socket, one 1-byte ``ECHO`` datagram, until the echo is back.
"""

from __future__ import annotations

import math
import socket
import time

import trio
from _peer import ECHO, LOOPBACK, ClientArgs, emit, emit_client_result, parse_args

#: UDP payload of every data datagram, as p2pos's 1200-byte datagrams.
DATAGRAM = 1200
DATA = b"D"
ACK = b"A"
END = b"F"
#: The server acknowledges every this many data datagrams.
ACK_EVERY = 32
#: Data datagrams the sender keeps unacknowledged (about 300 KB).
WINDOW = 256
#: With the window full and no acknowledgement for this long, the outstanding datagrams count as lost.
STALL_SECONDS = 0.02
#: The server's receive buffer (the kernel caps it at net.core.rmem_max).
RCVBUF = 4 << 20


async def server() -> None:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    await sock.bind((LOOPBACK, 0))
    emit(port=sock.getsockname()[1], rcvbuf=sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    clock = time.perf_counter
    received = datagrams = 0
    first = last = 0.0
    while True:
        data, address = await sock.recvfrom(2048)
        tag = data[:1]
        if tag == DATA:
            last = clock()
            if not datagrams:
                first = last
            datagrams += 1
            received += len(data)
            if datagrams % ACK_EVERY == 0:
                await sock.sendto(ACK + datagrams.to_bytes(8, "big"), address)
        elif tag == ECHO:
            await sock.sendto(ECHO, address)
        elif tag == END:
            await sock.sendto(END + received.to_bytes(8, "big"), address)
            break
    emit(bytes=received, seconds=last - first, datagrams=datagrams)
    sock.close()


async def echo_once(port: int) -> float:
    """Seconds from creating a socket to the echo of a 1-byte datagram."""
    start = time.perf_counter()
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        await sock.connect((LOOPBACK, port))
        await sock.send(ECHO)
        with trio.fail_after(2):
            reply = await sock.recv(16)
        elapsed = time.perf_counter() - start
    assert reply == ECHO, reply
    return elapsed


def _newest_ack(raw: socket.socket, acked: int) -> int:
    """Drain the acknowledgements waiting on the socket; the highest count seen."""
    while True:
        try:
            data = raw.recv(64, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return acked
        if data[:1] == ACK:
            acked = max(acked, int.from_bytes(data[1:9], "big"))


async def bulk(port: int, total: int) -> tuple[int, float, int, int]:
    """Send ``total`` bytes (rounded up to whole datagrams): bytes sent, seconds, bytes received, stalls."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.setblocking(False)
    sock = trio.socket.from_stdlib_socket(raw)
    await sock.connect((LOOPBACK, port))
    count = math.ceil(total / DATAGRAM)
    payload = DATA + bytes(DATAGRAM - 1)
    sent = acked = written_off = stalls = 0
    start = time.perf_counter()
    while sent < count:
        limit = min(count, acked + written_off + WINDOW)
        while sent < limit:
            await sock.send(payload)
            sent += 1
        if sent == count:
            break
        newest = _newest_ack(raw, acked)
        if newest == acked:
            with trio.move_on_after(STALL_SECONDS) as scope:
                await trio.lowlevel.wait_readable(sock)
            if scope.cancelled_caught:
                stalls += 1
                written_off = sent - acked
                continue
            newest = _newest_ack(raw, acked)
        acked = newest
    elapsed = time.perf_counter() - start
    for _ in range(50):
        await sock.send(END)
        with trio.move_on_after(0.1):
            while True:
                data = await sock.recv(64)
                if data[:1] == END:
                    received = int.from_bytes(data[1:9], "big")
                    sock.close()
                    return sent * DATAGRAM, elapsed, received, stalls
    raise RuntimeError("the server never answered the end of the transfer")


async def client(args: ClientArgs) -> None:
    setups = [await echo_once(args.port) for _ in range(args.warmup + args.setups)][args.warmup :]
    sent, seconds, received, stalls = await bulk(args.port, args.bulk_bytes)
    emit_client_result(bulk_bytes=sent, seconds=seconds, setup_seconds=setups, received=received, stalls=stalls)


def main() -> None:
    args = parse_args()
    if args is None:
        trio.run(server)
    else:
        trio.run(client, args)


if __name__ == "__main__":
    main()
