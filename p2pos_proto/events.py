"""Events the core reports to its driver (spec/session.md §5).

Frozen, slotted, keyword-only dataclasses named in the past tense.  Every event
carries ``session_id``, the local index of the session it concerns, so a driver
that runs an ``Endpoint`` knows where it belongs.
"""

from __future__ import annotations

import dataclasses

from .errors import ErrorCode
from .peer_id import PeerId


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


Event = HandshakeCompleted | MessageReceived | SessionClosed
