"""What a node does when a carrier is lost: the paths through it are abandoned (issue 12, item 6).

``close_sessions_on_loss(node, transport)`` makes the transport's ``on_lost`` call
``Node.path_lost``: every session of ``node`` with a path over the lost carrier abandons that
path and carries on over its next one (spec/paths.md §5: what was in flight is sent again
there); a session left with no path is closed at once with the carrier's reason (its channels
raise ``ChannelBroken`` "connection closed by this side: INTERNAL_ERROR (carrier lost: ...)", a
connect still handshaking raises ``ConnectFailed``) instead of waiting for the idle or
handshake timeout.  ``abandon_paths_on_loss`` is the same function under the name that says
what it now does.
"""

from __future__ import annotations

from typing import Protocol, cast

from p2pos.adapters.node import Node

from .queues import CarrierLost, LostCallback


class _Reporting(Protocol):
    on_lost: LostCallback | None


def close_sessions_on_loss(node: Node, transport: _Reporting) -> None:
    """Set ``transport.on_lost`` (chaining any callback already there) to abandon the paths it carried."""
    local = next((index for index, t in enumerate(node.transports) if cast(object, t) is transport), None)
    if local is None:
        raise ValueError("the transport is not one of the node's")
    previous = transport.on_lost

    def on_lost(event: CarrierLost) -> None:
        node.path_lost(local, event.address, event.reason)
        if previous is not None:
            previous(event)

    transport.on_lost = on_lost


abandon_paths_on_loss = close_sessions_on_loss
