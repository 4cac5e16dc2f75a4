"""p2pos core: a sans-IO implementation of the p2pos protocol (see spec/).

No sockets, no clock, no randomness of its own: time comes in as ``now``
arguments and randomness through injectable ``random`` callables.
"""

from .endpoint import Endpoint
from .errors import ErrorCode, LocalProtocolError, ProtocolError, RemoteProtocolError
from .events import Event, HandshakeCompleted, MessageReceived, SessionClosed
from .framing import StreamFramer, frame
from .handshake import LocalKeys, short_authentication_string
from .identity import Identity, SignedRecord
from .peer_id import InvalidPeerId, PeerId
from .session import SecureSession, SessionConfig, SessionState

__all__ = [
    "Endpoint",
    "ErrorCode",
    "Event",
    "HandshakeCompleted",
    "Identity",
    "InvalidPeerId",
    "LocalKeys",
    "LocalProtocolError",
    "MessageReceived",
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
