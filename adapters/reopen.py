"""Sessions the node closed because no application used them, and how to reopen them (spec/paths.md PTH-7.6).

An unused peer session closes gracefully (``NO_ERROR``, a reason starting "idle"); the node keeps
the peer's Noise static key, so the next connect is IK (one round trip), and the address the
session's data last went to, so the daemon can try it before a rendezvous lookup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from p2pos.proto import ErrorCode, PeerId

if TYPE_CHECKING:
    from .node import Address, Peer


class Reopen:
    __slots__ = ("_active", "_addresses", "_keys")

    def __init__(self) -> None:
        self._keys: dict[PeerId, bytes] = {}
        self._addresses: dict[PeerId, Address] = {}
        self._active: dict[int, Address] = {}  # established session -> where its data goes

    def key(self, peer_id: PeerId, remote_static: bytes | None) -> bytes | None:
        """The static key to dial ``peer_id`` with: the caller's, else that of its idle-closed session."""
        return remote_static if remote_static is not None else self._keys.get(peer_id)

    def address(self, peer_id: PeerId) -> Address | None:
        """Where ``peer_id``'s idle-closed session last sent its data (None: not closed for idleness)."""
        return self._addresses.get(peer_id)

    def moved(self, session_id: int, address: Address) -> None:
        """Session ``session_id`` is established, or its data moved to another path: it goes to ``address``."""
        self._active[session_id] = address

    def closed(self, session_id: int, peer: Peer | None, code: ErrorCode, reason: str) -> None:
        """Session ``session_id`` (of ``peer``, if it was established) ended with ``code`` and ``reason``."""
        address = self._active.pop(session_id, None)
        if peer is None:
            return
        if code is ErrorCode.NO_ERROR and reason.startswith("idle"):
            self._keys[peer.peer_id] = peer.remote_static
            if address is not None:
                self._addresses[peer.peer_id] = address
        else:
            self._keys.pop(peer.peer_id, None)
            self._addresses.pop(peer.peer_id, None)
