"""What every peer program of bench/node.py shares: its command line and the stdout protocol.

Standard library only: the py-libp2p peer imports this module too, from the
benchmark's own virtualenv.  bench/node.py's docstring describes the protocol.

Command line::

    PEER server
    PEER client --server READY_JSON --bytes N --setups K [--warmup W]

A server binds to 127.0.0.1 only, prints its ready line, then serves connections;
a client connects to it, measures ``W + K`` set-ups (the first ``W`` are not
reported), then sends ``N`` bytes in one bulk transfer and prints its result.

The in-band convention below is what the peers here do; a new stack may do
anything equivalent: each new stream (or, for plain UDP, each datagram) starts
with a 1-byte tag.  ``ECHO``: the server answers ``ECHO`` (the set-up probe).
``BULK``: the rest of the stream is payload up to the sender's end of stream;
the server then answers the 8-byte count of payload bytes it received.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import struct
import sys
from collections.abc import Sequence

#: Every peer listens and connects here only: the benchmark never leaves the machine.
LOOPBACK = "127.0.0.1"
#: First byte of a set-up probe stream; the server echoes it.
ECHO = b"E"
#: First byte of a bulk-transfer stream.
BULK = b"B"
#: Size of one application write in the stream stacks.
CHUNK = 64 * 1024
#: The server's answer after a bulk transfer: payload bytes received, big-endian.
COUNT = struct.Struct("!Q")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ClientArgs:
    #: The server's ready line, as it printed it (at least ``port``).
    server: dict[str, object]
    #: Payload bytes of the bulk transfer.
    bulk_bytes: int
    #: Measured set-ups (connection to first echoed byte), reported in ``setup_ms``.
    setups: int
    #: Set-ups done first and not reported (imports, lazy initialisation, caches).
    warmup: int

    @property
    def port(self) -> int:
        port = self.server["port"]
        assert isinstance(port, int)
        return port


def parse_args(argv: Sequence[str] | None = None) -> ClientArgs | None:
    """The command line: ``None`` for the server role, the client's arguments otherwise."""
    parser = argparse.ArgumentParser(description="A peer program of bench/node.py (see its docstring).")
    roles = parser.add_subparsers(dest="role", required=True)
    roles.add_parser("server", help="receiver: print the ready line, serve, print the result")
    client = roles.add_parser("client", help="sender: measure set-ups, then one bulk transfer")
    client.add_argument("--server", required=True, help="the server's ready line (one JSON object)")
    client.add_argument("--bytes", type=int, required=True, help="payload bytes of the bulk transfer")
    client.add_argument("--setups", type=int, required=True, help="measured set-ups")
    client.add_argument("--warmup", type=int, default=1, help="set-ups done first and not reported")
    args = parser.parse_args(argv)
    if args.role == "server":
        return None
    server = json.loads(args.server)
    if not isinstance(server, dict) or not isinstance(server.get("port"), int):
        parser.error("--server must be a JSON object with an integer 'port'")
    return ClientArgs(server=server, bulk_bytes=args.bytes, setups=args.setups, warmup=args.warmup)


def emit(**fields: object) -> None:
    """One line of the stdout protocol: a JSON object, flushed at once."""
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def emit_client_result(
    *,
    bulk_bytes: int,
    seconds: float,
    setup_seconds: Sequence[float],
    connect_seconds: Sequence[float] = (),
    **extra: object,
) -> None:
    """The client's result line: bytes it sent, its own view of the time, set-up times in ms.

    ``connect_seconds``, if the stack has such a moment: for each reported set-up, the
    time until the stack said the connection was up, before the first stream.
    """
    fields: dict[str, object] = {"bytes": bulk_bytes, "seconds": seconds, "setup_ms": [s * 1e3 for s in setup_seconds]}
    if connect_seconds:
        fields["connect_ms"] = [s * 1e3 for s in connect_seconds]
    emit(**fields, **extra)
