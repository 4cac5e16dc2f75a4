"""The two ends of ``test_pmtu_netns.py``, run inside network namespaces with ``ip netns exec``.

    python pmtu_node_peer.py serve HOST
        prints "ready NODE_PORT OBSERVER_PORT", then one JSON report
    python pmtu_node_peer.py send HOST PEER NODE_PORT OBSERVER_PORT SIZE PATH_PAYLOAD
        prints one JSON report

``serve`` runs a p2pos node (service "pmtu") and, beside it, a plain UDP socket: the
observer, an independent witness of which datagram sizes cross the path.  The node
accepts one stream, reads it to the end, and answers with the byte count and SHA-256 of
what it read.  The observer records ``[length, first byte]`` of each datagram until half
a second after b"stop" (or ``SERVE_DEADLINE``).

``send`` runs a p2pos node that connects, sends ``SIZE`` seeded pseudo-random bytes,
reads the answer, then waits (at most ``SEARCH_DEADLINE`` s) for its path MTU search to
end, sampling the search all along.  Then the control: a fresh ``UdpTransport`` (the
node's kind of socket: never fragments) sends the path's largest payload (b"a"), one
byte more (b"b"), the first hop's largest (b"c") and one byte more (b"d": refused at
home), and a plain socket told it may fragment (``IP_PMTUDISC_DONT``) sends the first
hop's largest (b"e": fragmented by the router, reassembled by the observer's kernel).
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import sys
import time
from typing import Any

import trio

from p2pos.adapters.node import open_node
from p2pos.adapters.streams import ChannelStream
from p2pos.proto import ChannelConfig, Identity, LocalKeys
from p2pos.transports.udp import UdpTransport

SERVICE = "pmtu"
#: How long ``send`` waits, after the transfer, for the search to end (seconds).
SEARCH_DEADLINE = 20.0
#: How long ``serve`` lasts at most: the sender's transfer, its search and its control (seconds).
SERVE_DEADLINE = 2 * SEARCH_DEADLINE + 10
#: How often ``send`` samples the search (seconds).
SAMPLE_EVERY = 0.002
#: Linux ``IP_MTU_DISCOVER`` and its "may fragment" value (``<linux/in.h>``).
IP_MTU_DISCOVER = 10
IP_PMTUDISC_DONT = 0
#: The node's default channel settings: the ceiling comes from the interface (adapters/node.py).
CHANNELS = ChannelConfig()


def keys(name: str) -> LocalKeys:
    """A fixed identity and Noise static key derived from ``name`` (as tests/helpers.py ``make_keys``)."""
    seed = hashlib.sha256(b"identity:" + name.encode()).digest()
    static = hashlib.sha256(b"static:" + name.encode()).digest()
    return LocalKeys.create(Identity.from_seed(seed), static)


SERVER, CLIENT = keys("pmtu-b"), keys("pmtu-a")


def payload(size: int) -> bytes:
    return random.Random(8899).randbytes(size)


def emit(report: dict[str, Any]) -> None:
    print(json.dumps(report), flush=True)


# -- B ---------------------------------------------------------------------------------------


async def observe(sock: trio.socket.SocketType, got: list[tuple[int, str]]) -> None:
    """Record what reaches the plain socket until half a second after b"stop"."""
    deadline = trio.current_time() + SERVE_DEADLINE
    while True:
        with trio.move_on_at(deadline):
            data = await sock.recv(65536)
        if trio.current_time() >= deadline:
            return
        if data == b"stop":
            deadline = min(deadline, trio.current_time() + 0.5)
        elif data != b"warm":
            got.append((len(data), data[:1].decode()))


async def serve(host: str) -> None:
    got: list[tuple[int, str]] = []
    report: dict[str, Any] = {}
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as observer:
        await observer.bind((host, 0))
        async with open_node(SERVER, host=host, channels=CHANNELS) as node, trio.open_nursery() as nursery:
            listener = node.listen(SERVICE)
            nursery.start_soon(observe, observer, got)
            print("ready", node.address[1], observer.getsockname()[1], flush=True)
            with trio.fail_after(SERVE_DEADLINE):
                stream = await listener.accept()
                assert isinstance(stream, ChannelStream)
                digest, count = hashlib.sha256(), 0
                while data := await stream.receive_some():
                    digest.update(data)
                    count += len(data)
                connection = node.endpoint.connection(stream.session_id)
                assert connection is not None
                report = {"bytes": count, "sha256": digest.hexdigest(), "mtu": connection.pmtu.current_mtu}
                await stream.send_all(json.dumps(report).encode())
                await stream.send_eof()
        # the nursery waited for the observer, hence for the sender's b"stop": the peer is done
    report["observed"] = got
    emit(report)


# -- A ---------------------------------------------------------------------------------------


async def send(host: str, peer: tuple[str, int], observer: tuple[str, int], size: int, path: int) -> None:
    data = payload(size)
    report: dict[str, Any] = {"sha256": hashlib.sha256(data).hexdigest()}
    started = time.monotonic()
    async with open_node(CLIENT, host=host, channels=CHANNELS) as node:
        transport = node.transports[0]
        assert isinstance(transport, UdpTransport)
        report["first_hop_payload"] = transport.max_udp_payload(peer)
        report["gso"] = transport.gso  # P2POS_UDP_OFFLOAD=0 in the environment turns it off
        stream = await node.connect(SERVER.identity.peer_id, peer, SERVICE)
        assert isinstance(stream, ChannelStream)
        connection = node.endpoint.connection(stream.session_id)
        assert connection is not None
        pmtu = connection.pmtu
        report["ceiling"] = connection.config.max_datagram_size
        history: list[tuple[float, str, int]] = []

        def sample() -> None:
            if not history or history[-1][1:] != (pmtu.state.name, pmtu.current_mtu):
                history.append((round(time.monotonic() - started, 4), pmtu.state.name, pmtu.current_mtu))

        async def watch() -> None:
            while True:
                sample()
                await trio.sleep(SAMPLE_EVERY)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            with trio.fail_after(SEARCH_DEADLINE):
                await stream.send_all(data)
                await stream.send_eof()
                answer = b""
                while chunk := await stream.receive_some():
                    answer += chunk
                report["transfer_seconds"] = round(time.monotonic() - started, 3)
                report["answer"] = json.loads(answer)
            with trio.move_on_after(SEARCH_DEADLINE):
                while pmtu.state.name != "SEARCH_COMPLETE":
                    await trio.sleep(SAMPLE_EVERY)
            sample()
            nursery.cancel_scope.cancel()
        report["search_seconds"] = history[-1][0]
        report["history"] = history
        report["state"] = pmtu.state.name
        report["mtu"] = pmtu.current_mtu
        report["stats"] = connection.stats()
        report["send_errors"] = transport.send_errors
        # what the kernel learned meanwhile (from ICMP, if the router's got through)
        report["first_hop_payload_after"] = transport.max_udp_payload(peer)
        await control(host, observer, path, report)
        await node.close_peer(SERVER.identity.peer_id)
    emit(report)


async def control(host: str, observer: tuple[str, int], path: int, report: dict[str, Any]) -> None:
    """The sizes around ``path`` and the first hop's limit, from the node's kind of socket and a plain one."""
    first_hop = report["first_hop_payload"]
    transport = await UdpTransport.bind(host)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as plain:
            plain.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
            plain.bind((host, 0))
            plain.sendto(b"warm", observer)
            await trio.sleep(0.1)
            report["control_no_fragment"] = transport.no_fragment
            for byte, length in ((b"a", path), (b"b", path + 1), (b"c", first_hop), (b"d", first_hop + 1)):
                await transport.send(byte * length, observer)
            error = transport.last_send_error
            report["control_send_errors"] = transport.send_errors
            report["control_errno"] = error.errno if error is not None else None
            plain.sendto(b"e" * first_hop, observer)
            await trio.sleep(0.1)
            plain.sendto(b"stop", observer)
    finally:
        transport.close()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        trio.run(serve, sys.argv[2])
    else:
        _, _, host, peer, port, observer_port, size, path = sys.argv
        trio.run(send, host, (peer, int(port)), (peer, int(observer_port)), int(size), int(path))
