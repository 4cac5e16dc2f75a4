"""Which protocol a datagram belongs to, by its first byte (spec/session.md §4.1).

One UDP socket carries p2pos packets and, later, STUN, TURN and whatever else
the NAT work puts on it.  The first byte tells them apart as WebRTC stacks do
(RFC 7983, updated for QUIC by RFC 9443); p2pos uses only the range 4-15 that
no other protocol there claims.  A datagram of another protocol is passed on
to the driver (``ForeignDatagramReceived``), never dropped as a malformed
p2pos packet.
"""

from __future__ import annotations

import enum
from typing import Final


class Protocol(enum.Enum):
    STUN = "stun"  # 0-3 (RFC 8489 messages start with two zero bits)
    P2POS = "p2pos"  # 4-15
    ZRTP = "zrtp"  # 16-19
    DTLS = "dtls"  # 20-63
    TURN_CHANNEL = "turn-channel"  # 64-79 (RFC 8656 ChannelData, channel numbers 0x4000-0x4FFF)
    QUIC = "quic"  # 80-127 and 192-255 (RFC 9443)
    RTP = "rtp"  # 128-191 (RTP and RTCP)


def _table() -> tuple[Protocol, ...]:
    table: list[Protocol] = []
    for byte in range(256):
        if byte <= 3:
            table.append(Protocol.STUN)
        elif byte <= 15:
            table.append(Protocol.P2POS)
        elif byte <= 19:
            table.append(Protocol.ZRTP)
        elif byte <= 63:
            table.append(Protocol.DTLS)
        elif byte <= 79:
            table.append(Protocol.TURN_CHANNEL)
        elif 128 <= byte <= 191:
            table.append(Protocol.RTP)
        else:
            table.append(Protocol.QUIC)
    return tuple(table)


#: ``BY_FIRST_BYTE[b]`` is the protocol of a datagram whose first byte is ``b``.
BY_FIRST_BYTE: Final[tuple[Protocol, ...]] = _table()


def protocol_of(data: bytes) -> Protocol | None:
    """The protocol ``data`` belongs to, or None for an empty datagram."""
    return BY_FIRST_BYTE[data[0]] if data else None
