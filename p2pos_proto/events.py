"""Events the core reports to its driver (spec/session.md §5).

Frozen, slotted, keyword-only dataclasses named in the past tense.  Every event
carries ``session_id``, the local index of the session it concerns, so a driver
that runs an ``Endpoint`` knows where it belongs.
"""

from __future__ import annotations

import dataclasses

from .errors import ErrorCode
from .identity.peer_id import PeerId


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeCompleted:
    """The peer proved its identity; the session is usable.

    ``sas`` is the short authentication string two people can compare to rule
    out a man in the middle (spec/handshake.md §7).
    """

    session_id: int
    peer_id: PeerId
    sas: str
    version: int
    capabilities: dict[int, bytes]
    handshake_hash: bytes
    pattern: str
    #: The peer's Noise static key: keep it to open the next session with IK.
    remote_static: bytes


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MessageReceived:
    """One authenticated application message (the plaintext of one DATA record)."""

    session_id: int
    data: bytes
    #: The record's counter: unique and increasing, the channel layer's packet number.
    packet_number: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SessionClosed:
    """The session ended; nothing more will be sent or received on it."""

    session_id: int
    code: ErrorCode
    reason: str
    by_peer: bool


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ForeignDatagramReceived:
    """A datagram of another protocol on a p2pos socket (spec/session.md §4.1), passed on whole.

    ``protocol`` is the ``Protocol`` value its first byte names ("stun", "turn-channel", ...);
    ``address`` is where it came from and ``local`` the socket it arrived on, as the driver gave
    them.  It belongs to no session.
    """

    protocol: str
    data: bytes
    address: object
    local: object


Event = HandshakeCompleted | MessageReceived | SessionClosed


# -- the channel layer (spec/channels.md §7) ------------------------------------------
#
# Every channel-layer event carries ``session_id`` too, set by the ``Connection`` that reports it:
# the local index of the session under it (``SecureSession.local_index``), so that a driver
# holding many connections routes each event without knowing which connection it drained.


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ChannelRequested:
    """The peer wants to open a channel to ``service``: call ``accept_channel`` or ``refuse_channel``."""

    session_id: int
    channel_id: int
    service: str
    kind: str  # "stream" or "message"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ChannelOpened:
    """A channel this side opened was accepted by the peer (or data implied the late ACCEPT)."""

    session_id: int
    channel_id: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ChannelRefused:
    """The peer refused a channel this side asked for.

    With an application code (spec/errors.md §3) ``code`` is APPLICATION_CLOSE
    and ``application_code`` holds the value; otherwise it is None.
    """

    session_id: int
    channel_id: int
    code: ErrorCode
    reason: str
    application_code: int | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ChannelDataAvailable:
    """Stream data can be read with ``read``; reported when readable data goes from none to some."""

    session_id: int
    channel_id: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ChannelEnded:
    """The peer finished its side of the stream: every byte has arrived (some may be unread)."""

    session_id: int
    channel_id: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ChannelWritable:
    """Send buffer space became available again on a channel that had filled it."""

    session_id: int
    channel_id: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ChannelMessage:
    """One whole message on a message channel (unreliable: some may never arrive)."""

    session_id: int
    channel_id: int
    data: bytes


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ChannelReset:
    """The channel was aborted: by the peer (``by_peer``), or because the connection ended.

    ``application_code`` as for ``ChannelRefused``.
    """

    session_id: int
    channel_id: int
    code: ErrorCode
    reason: str
    by_peer: bool
    application_code: int | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ChannelClosed:
    """Both directions finished and were acknowledged; the channel id is free."""

    session_id: int
    channel_id: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PingAcknowledged:
    """A ``ping()`` was answered; ``rtt`` is the round trip it measured (seconds)."""

    session_id: int
    ping_id: int
    rtt: float


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionReady:
    """The handshake completed; channels can be opened (the HandshakeCompleted details)."""

    session_id: int
    handshake: HandshakeCompleted


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed:
    """The connection ended; every channel still open got a ChannelReset first."""

    session_id: int
    code: ErrorCode
    reason: str
    by_peer: bool


ChannelEvent = (
    ChannelRequested
    | ChannelOpened
    | ChannelRefused
    | ChannelDataAvailable
    | ChannelEnded
    | ChannelWritable
    | ChannelMessage
    | ChannelReset
    | ChannelClosed
    | PingAcknowledged
    | ConnectionReady
    | ConnectionClosed
)
