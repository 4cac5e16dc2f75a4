"""What a node's users hold: its socket protocol, peers, listeners and connection errors.

Kept apart from node.py (the driver) so that modules the node imports (nodepaths.py, the
carriers) can name these without importing the driver; node.py re-exports every name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import trio

from p2pos.proto import ChannelKind, ErrorCode, PeerId

from .streams import ChannelStream, MessageChannel, _why

if TYPE_CHECKING:
    from .node import Node

Address = tuple[str, int]
#: Channels a listener holds for ``accept`` before it refuses more ("busy").
BACKLOG = 64


class Transport(Protocol):
    """What the node needs of a socket (transports/udp.py ``UdpTransport``, or an emulated link)."""

    local_address: Address

    def check_address(self, addr: object) -> Address: ...
    def max_udp_payload(self, addr: Address) -> int: ...
    async def send_batch(self, datagrams: Sequence[bytes], addr: Address) -> None: ...
    def send_batch_now(self, datagrams: Sequence[bytes], addr: Address) -> int: ...
    async def receive_runs(self) -> list[tuple[list[bytes], Address]]: ...
    def close(self) -> None: ...


def _show(address: object) -> str:
    """``host:port`` (``[host]:port`` for IPv6) of a UDP address, else its repr."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        if str(host).startswith("relay:"):  # a relay transport's pseudo-address: ("relay:PEERID", 0)
            return str(host)
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return repr(address)


class ConnectFailed(Exception):
    """No session with the peer: the handshake failed, timed out, or another key answered."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(f"could not connect: {_why(code, reason)}")
        self.code = code
        self.reason = reason


@dataclasses.dataclass(eq=False)
class Peer:
    """An authenticated session to one peer."""

    session_id: int
    peer_id: PeerId
    #: The short authentication string both people can compare (spec/handshake.md §7).
    sas: str
    #: The peer's Noise static key: the next session to it uses the 1-RTT IK handshake.
    remote_static: bytes


class Listener:
    """Incoming channels to one service: ``await accept()`` or ``async for``."""

    def __init__(
        self, node: Node, service: str, kind: ChannelKind, allow: Callable[[PeerId], bool] | None = None
    ) -> None:
        self.service = service
        self.kind = kind
        #: Who may open channels to this service (None: any peer).
        self.allow = allow
        self._node = node
        self._send, self._receive = trio.open_memory_channel[ChannelStream | MessageChannel](BACKLOG)

    async def accept(self) -> ChannelStream | MessageChannel:
        return await self._receive.receive()

    def __aiter__(self) -> Listener:
        return self

    async def __anext__(self) -> ChannelStream | MessageChannel:
        try:
            return await self.accept()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def close(self) -> None:
        self._node._listeners.pop(self.service, None)
        self._send.close()
