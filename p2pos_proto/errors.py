"""One error tree for the whole core, carrying spec error codes (spec/errors.md).

``LocalProtocolError`` means the caller misused the API; ``RemoteProtocolError``
means bytes from the network were bad.  Parsers named ``*_untrusted`` raise only
``RemoteProtocolError``; ``receive_*`` methods never raise at all: they drop and
count, or close the session with a ``SessionClosed`` event.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.IntEnum):
    """Error codes shared by the spec, the wire (CLOSE records) and the API."""

    NO_ERROR = 0x00
    PROTOCOL_VIOLATION = 0x01
    HANDSHAKE_TIMEOUT = 0x02
    DECRYPT_FAILED = 0x03
    BAD_IDENTITY = 0x04
    IDENTITY_MISMATCH = 0x05
    UNSUPPORTED_VERSION = 0x06
    WEAK_KEY = 0x07
    MALFORMED_MESSAGE = 0x08
    UNKNOWN_CRITICAL_FIELD = 0x09
    RECORD_TOO_LARGE = 0x0A
    SESSION_EXPIRED = 0x0B
    REPLAYED = 0x0C
    APPLICATION_CLOSE = 0x0D
    FRAMING_ERROR = 0x0E
    COUNTER_EXHAUSTED = 0x0F
    INVALID_PEER_ID = 0x10
    INVALID_KEY_FILE = 0x11
    FLOW_CONTROL_ERROR = 0x12
    FINAL_SIZE_ERROR = 0x13
    IDLE_TIMEOUT = 0x14
    CHANNEL_LIMIT = 0x15
    CHANNEL_STATE_ERROR = 0x16
    SERVICE_UNKNOWN = 0x17
    CHANNEL_REFUSED = 0x18
    INTERNAL_ERROR = 0xFF

    @classmethod
    def from_wire(cls, value: int) -> ErrorCode:
        """Map a received code to the enum; unknown codes read as PROTOCOL_VIOLATION."""
        try:
            return cls(value)
        except ValueError:
            return cls.PROTOCOL_VIOLATION


#: REFUSE, RESET and STOP_SENDING codes from here up are the application's own (spec/errors.md §3).
APPLICATION_CODE_MIN = 0x100
#: The largest code a frame can carry (a varint).
APPLICATION_CODE_MAX = (1 << 62) - 1


def channel_code_to_wire(code: ErrorCode | int) -> int:
    """The wire value of a code an application passes for one channel (REFUSE, RESET, STOP_SENDING).

    Either an ``ErrorCode`` or an application code in ``APPLICATION_CODE_MIN`` ..
    ``APPLICATION_CODE_MAX``; anything else raises ``LocalProtocolError``.
    """
    if isinstance(code, ErrorCode):
        return int(code)
    if isinstance(code, int) and not isinstance(code, bool):
        if APPLICATION_CODE_MIN <= code <= APPLICATION_CODE_MAX:
            return code
        try:
            return int(ErrorCode(code))
        except ValueError:
            pass
    raise LocalProtocolError(
        f"a channel code is an ErrorCode or an application code 0x100..2^62-1, not {code!r}",
        ErrorCode.PROTOCOL_VIOLATION,
    )


def channel_code_from_wire(value: int) -> tuple[ErrorCode, int | None]:
    """Read a REFUSE / RESET / STOP_SENDING code: ``(code, application_code)``.

    An application code comes back as ``(APPLICATION_CLOSE, value)``; any other
    value as ``(ErrorCode.from_wire(value), None)`` (unknown codes read as
    PROTOCOL_VIOLATION).
    """
    if value >= APPLICATION_CODE_MIN:
        return ErrorCode.APPLICATION_CLOSE, value
    return ErrorCode.from_wire(value), None


class ProtocolError(Exception):
    """Root of every error the core raises."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.PROTOCOL_VIOLATION) -> None:
        super().__init__(message)
        self.code = code


class LocalProtocolError(ProtocolError):
    """The caller asked for something the protocol or the current state forbids."""


class RemoteProtocolError(ProtocolError):
    """The peer (or the network) sent something invalid."""
