"""What a TURN client (nat/turn.py) reports to its driver: drain them with ``TurnClient.next_event()``."""

from __future__ import annotations

import dataclasses

Address = tuple[str, int]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TurnAllocated:
    """The server granted an allocation: peers reach us at ``relayed`` (again after a 437 re-allocation)."""

    relayed: Address
    mapped: Address | None
    lifetime: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TurnRefreshed:
    """A Refresh succeeded; the allocation now lives ``lifetime`` more seconds."""

    lifetime: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TurnDataReceived:
    """``data`` came from ``peer`` through the relay (Data indication or ChannelData, SES-4.1.6)."""

    peer: Address
    data: bytes


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TurnPeerFailed:
    """A permission or channel for ``peer`` could not be installed or refreshed; data to it is dropped."""

    peer: Address
    reason: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TurnFailed:
    """The allocation is unusable for good: ``reason`` says why, ``code`` is the STUN error code or 0."""

    reason: str
    code: int = 0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TurnReleased:
    """The allocation was released (Refresh with LIFETIME 0 answered, or the server no longer had it)."""

    reason: str


TurnEvent = TurnAllocated | TurnRefreshed | TurnDataReceived | TurnPeerFailed | TurnFailed | TurnReleased
