"""The two ends of ``test_udp_netns.py``, run inside network namespaces with ``ip netns exec``.

    python netns_peer.py receive HOST            prints "ready PORT", then JSON [[length, first byte], ...]
    python netns_peer.py send HOST PEER PORT     prints a JSON report of what the transport did

The receiver is a plain socket (an observer independent of the code under test); it stops
half a second after the datagram b"stop", or after 10 s.  The sender sends, in order:
a datagram of exactly ``max_udp_payload`` bytes (b"a"), a 1400-byte one through the
transport (b"b": over the 1280-byte link, must not arrive), the same through a plain
socket that may fragment (b"c": must arrive), a GSO batch of full-size datagrams and a
short one (b"d", b"e"), a GSO batch of 1400-byte ones (b"f": lost and counted), then b"stop".
"""

from __future__ import annotations

import json
import socket
import sys
import time

import trio

from p2pos.transports.udp import UdpTransport

OVERSIZED = 1400


def receive(host: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        print("ready", sock.getsockname()[1], flush=True)
        got: list[tuple[int, str]] = []
        deadline = time.monotonic() + 10
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            if data == b"stop":
                deadline = min(deadline, time.monotonic() + 0.5)
            elif data != b"warm":
                got.append((len(data), data[:1].decode()))
    print(json.dumps(got), flush=True)


async def send(host: str, peer: tuple[str, int]) -> None:
    transport = await UdpTransport.bind(host)
    family = transport.family
    payload = transport.max_udp_payload(peer)
    report: dict[str, object] = {"max_payload": payload, "no_fragment": transport.no_fragment}
    with socket.socket(family, socket.SOCK_DGRAM) as control:
        control.bind((host, 0))
        # resolve the neighbour first, so no datagram waits in (or falls out of) the ARP/ND queue
        control.sendto(b"warm", peer)
        await trio.sleep(0.2)
        await transport.send(b"a" * payload, peer)
        await transport.send(b"b" * OVERSIZED, peer)
        report["df_errors"] = transport.send_errors
        error = transport.last_send_error
        report["df_errno"] = error.errno if error is not None else None
        control.sendto(b"c" * OVERSIZED, peer)  # the kernel's default: fragments
        report["gso_at_bind"] = transport.gso
        await transport.send_batch([b"d" * payload] * 5 + [b"e" * 100], peer)
        await transport.send_batch([b"f" * OVERSIZED] * 3, peer)
        report.update(
            gso=transport.gso,
            send_errors=transport.send_errors,
            datagrams_sent=transport.datagrams_sent,
            send_calls=transport.send_calls,
        )
        await trio.sleep(0.1)
        control.sendto(b"stop", peer)
    transport.close()
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "receive":
        receive(sys.argv[2])
    else:
        trio.run(send, sys.argv[2], (sys.argv[3], int(sys.argv[4])))
