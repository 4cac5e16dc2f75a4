"""What a node does when a carrier is lost, until sessions have several paths (issue 12, item 1).

``close_sessions_on_loss(node, transport)`` makes the transport's ``on_lost`` close, at once and
with the carrier's reason, every channel session of ``node`` routed over the lost carrier: its
channels raise ``ChannelBroken`` ("connection closed by this side: INTERNAL_ERROR (carrier lost:
...)") and a connect still handshaking raises ``ConnectFailed``, instead of both waiting for the
idle or handshake timeout.  Once the core keeps several paths per session, the node will
instead abandon that path and move the session to the next validated one.
"""

from __future__ import annotations

from typing import Protocol, cast

import trio

from p2pos.adapters.node import Node
from p2pos.proto.errors import ErrorCode

from .queues import CarrierLost, LostCallback


class _Reporting(Protocol):
    on_lost: LostCallback | None


def close_sessions_on_loss(node: Node, transport: _Reporting) -> None:
    """Set ``transport.on_lost`` (chaining any callback already there) to close the sessions it carried."""
    local = next((index for index, t in enumerate(node.transports) if cast(object, t) is transport), None)
    if local is None:
        raise ValueError("the transport is not one of the node's")
    previous = transport.on_lost

    def on_lost(event: CarrierLost) -> None:
        now = trio.current_time()
        endpoint = node.endpoint
        for session in endpoint.sessions():
            session_id = session.local_index
            if endpoint.socket_of(session_id) != local:
                continue
            if event.address is not None and not _covers(event.address, endpoint.address_of(session_id)):
                continue
            connection = endpoint.connection(session_id)
            if connection is not None:
                connection.close(now, ErrorCode.INTERNAL_ERROR, f"carrier lost: {event.reason}"[:200])
                endpoint.updated(session_id)
        node.poke()
        if previous is not None:
            previous(event)

    transport.on_lost = on_lost


def _covers(lost: tuple[str, int], address: object) -> bool:
    """Whether the lost ``(ip, port)`` is ``address``; port 0 stands for every port of the IP."""
    if lost[1] == 0:
        return isinstance(address, tuple) and len(address) == 2 and address[0] == lost[0]
    return address == lost
