"""p2pos core: a sans-IO implementation of the p2pos protocol (see spec/).

No sockets, no clock, no randomness of its own: time comes in as ``now``
arguments and randomness through injectable ``random`` callables.
"""

from .channels.connection import ChannelConfig, Connection, ConnectionState
from .channels.frames import ChannelKind
from .endpoint.endpoint import Endpoint
from .errors import ErrorCode, LocalProtocolError, ProtocolError, RemoteProtocolError
from .events import (
    ChannelClosed,
    ChannelDataAvailable,
    ChannelEnded,
    ChannelEvent,
    ChannelMessage,
    ChannelOpened,
    ChannelRefused,
    ChannelRequested,
    ChannelReset,
    ChannelWritable,
    ConnectionClosed,
    ConnectionReady,
    Event,
    HandshakeCompleted,
    MessageReceived,
    PingAcknowledged,
    SessionClosed,
)
from .handshake.handshake import LocalKeys, short_authentication_string
from .identity.identity import Identity, SignedRecord
from .identity.peer_id import InvalidPeerId, PeerId
from .session.framing import StreamFramer, frame
from .session.session import SecureSession, SessionConfig, SessionState

__all__ = [
    "ChannelClosed",
    "ChannelConfig",
    "ChannelDataAvailable",
    "ChannelEnded",
    "ChannelEvent",
    "ChannelKind",
    "ChannelMessage",
    "ChannelOpened",
    "ChannelRefused",
    "ChannelRequested",
    "ChannelReset",
    "ChannelWritable",
    "Connection",
    "ConnectionClosed",
    "ConnectionReady",
    "ConnectionState",
    "Endpoint",
    "ErrorCode",
    "Event",
    "HandshakeCompleted",
    "Identity",
    "InvalidPeerId",
    "LocalKeys",
    "LocalProtocolError",
    "MessageReceived",
    "PingAcknowledged",
    "PeerId",
    "ProtocolError",
    "RemoteProtocolError",
    "SecureSession",
    "SessionClosed",
    "SessionConfig",
    "SessionState",
    "SignedRecord",
    "StreamFramer",
    "frame",
    "short_authentication_string",
]

__version__ = "0.1.0"
