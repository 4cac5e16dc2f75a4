#!/usr/bin/env python3
# mypy: ignore-errors
# (libp2p lives only in bench/.peers-venv, not in the project's virtualenv that runs mypy.)
"""py-libp2p peers for bench/node.py: TCP + Noise + yamux, one stream.

Run with the python of bench/.peers-venv (bench/node.py makes it and installs
``libp2p`` there).  Both hosts are ``new_host`` with an Ed25519 identity, Noise
as the only security transport, yamux as the only muxer (both are also
libp2p's first choices by default), and ``ConnectionConfig(max_connections_per_peer=1)``:
with the default of 3, ``Swarm.dial_peer`` waits 250 ms (its happy-eyeballs delay)
for more connections to the same peer after the first one is up.

Set-up: ``host.connect`` (TCP, multistream-select, Noise XX, yamux: ``connect_ms``)
then ``new_stream`` (multistream-select of the protocol) carrying ``ECHO``, until
the echo is back (``setup_ms``); the client then disconnects outside the timing
(``host.disconnect`` takes about 200 ms in py-libp2p 0.8.1), so every set-up is a
new connection.  Bulk: one stream, ``BULK`` then the payload in 64 KiB writes, a
half-close, then the server's count.  The server's ``seconds`` run from the
first payload read to the last.
"""

from __future__ import annotations

import logging
import time

import multiaddr
import trio
from _peer import BULK, CHUNK, COUNT, ECHO, LOOPBACK, ClientArgs, emit, emit_client_result, parse_args
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

PROTOCOL = TProtocol("/bench-node/1.0.0")
LISTEN = multiaddr.Multiaddr(f"/ip4/{LOOPBACK}/tcp/0")


def make_host():
    key_pair = create_new_key_pair()
    noise = NoiseTransport(key_pair, noise_privkey=create_new_x25519_key_pair().private_key)
    return new_host(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        connection_config=ConnectionConfig(max_connections_per_peer=1),
        listen_addrs=[LISTEN],
    )


async def server() -> None:
    host = make_host()
    done = trio.Event()

    async def handle(stream) -> None:
        tag = await stream.read(1)
        if tag == ECHO:
            await stream.write(ECHO)
            await stream.close()
            return
        assert tag == BULK, tag
        clock = time.perf_counter
        first = last = clock()
        received = 0
        while True:
            try:
                chunk = await stream.read(CHUNK)
            except StreamEOF:
                break
            if not chunk:
                break
            last = clock()
            if not received:
                first = last
            received += len(chunk)
        await stream.write(COUNT.pack(received))
        await stream.close()
        emit(bytes=received, seconds=last - first)
        done.set()

    async with host.run(listen_addrs=[LISTEN]):
        host.set_stream_handler(PROTOCOL, handle)
        address = host.get_addrs()[0]
        emit(port=int(address.value_for_protocol("tcp")), addr=str(address))
        await done.wait()
        # bench/node.py ends this process once the client has exited.
        await trio.sleep_forever()


async def read_exactly(stream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += await stream.read(size - len(data))
    return data


async def client(args: ClientArgs) -> None:
    host = make_host()
    info = info_from_p2p_addr(multiaddr.Multiaddr(str(args.server["addr"])))
    async with host.run(listen_addrs=[LISTEN]):
        setups = []
        connects = []
        for _ in range(args.warmup + args.setups):
            start = time.perf_counter()
            await host.connect(info)
            connects.append(time.perf_counter() - start)
            stream = await host.new_stream(info.peer_id, [PROTOCOL])
            await stream.write(ECHO)
            reply = await read_exactly(stream, 1)
            setups.append(time.perf_counter() - start)
            assert reply == ECHO, reply
            await stream.close()
            await host.disconnect(info.peer_id)

        await host.connect(info)
        stream = await host.new_stream(info.peer_id, [PROTOCOL])
        payload = bytes(CHUNK)
        start = time.perf_counter()
        await stream.write(BULK)
        remaining = args.bulk_bytes
        while remaining:
            size = min(remaining, CHUNK)
            await stream.write(payload[:size] if size < CHUNK else payload)
            remaining -= size
        await stream.close_write()
        (received,) = COUNT.unpack(await read_exactly(stream, COUNT.size))
        seconds = time.perf_counter() - start
        await stream.close()
        await host.disconnect(info.peer_id)
    emit_client_result(
        bulk_bytes=args.bulk_bytes,
        seconds=seconds,
        setup_seconds=setups[args.warmup :],
        connect_seconds=connects[args.warmup :],
        received=received,
    )


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    args = parse_args()
    if args is None:
        trio.run(server)
    else:
        trio.run(client, args)


if __name__ == "__main__":
    main()
