"""Carriers as the node's sockets: TURN, QUIC and WebSocket relay links behind the ``Transport`` protocol.

Each module adapts one carrier of transports/ to what adapters/node.py's ``Transport`` asks
(``local_address``, ``check_address``, ``max_udp_payload``, ``send_batch``, ``send_batch_now``,
``receive_runs``, ``close``), so a ``Node`` runs sessions over it as over a UDP socket:
``turn.py`` (``TurnTransport``, a datagram path), ``quic.py`` (``QuicTransport``, a
stream-carried path, one carrier per peer), ``relay.py`` (``RelayTransport``, a WebSocket relay
link: a stream-carried path per peer).  ``queues.py`` holds what they share: the bounded
outbox that keeps the node from waiting on a carrier, the inbox of runs, and ``CarrierLost``,
reported to ``on_lost`` when a carrier dies; ``failover.py`` abandons the paths over a lost
carrier (``Node.path_lost``).
Imports: p2pos.proto, p2pos.transports and adapters/node.py only.
"""

from .failover import abandon_paths_on_loss, close_sessions_on_loss
from .queues import CarrierLost
from .quic import STREAM_PACKET_SIZE, QuicTransport, open_quic_transport
from .relay import RelayTransport
from .turn import TurnTransport, open_turn_transport

__all__ = [
    "STREAM_PACKET_SIZE",
    "CarrierLost",
    "QuicTransport",
    "RelayTransport",
    "TurnTransport",
    "abandon_paths_on_loss",
    "close_sessions_on_loss",
    "open_quic_transport",
    "open_turn_transport",
]
