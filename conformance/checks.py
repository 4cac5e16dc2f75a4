"""What a case raises, and small helpers to check values against expectations."""

from __future__ import annotations

from typing import Any


class CaseFailed(Exception):
    """The IUT's behaviour does not conform; the message says how."""


class Unsupported(Exception):
    """The IUT declined the case (it exited with status 127)."""


def expect(condition: bool, message: str) -> None:
    """Fail the case with ``message`` unless ``condition`` holds."""
    if not condition:
        raise CaseFailed(message)


def expect_eq(actual: object, expected: object, what: str) -> None:
    """Fail unless ``actual == expected``, showing both (shortened) in the message."""
    if actual != expected:
        raise CaseFailed(f"{what}: expected {short(expected)}, got {short(actual)}")


def short(value: object, limit: int = 80) -> str:
    """A repr cut to ``limit`` characters, for messages about long hex strings."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def unhex(value: Any, what: str) -> bytes:
    """Decode a lowercase hex string from an IUT answer; fail the case if it is not one."""
    if not isinstance(value, str):
        raise CaseFailed(f"{what}: expected a hex string, got {short(value)}")
    if value != value.lower():
        raise CaseFailed(f"{what}: hex must be lowercase, got {short(value)}")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise CaseFailed(f"{what}: not valid hex: {short(value)}") from None


def unhex_list(value: Any, what: str) -> list[bytes]:
    """Decode a JSON list of hex strings."""
    if not isinstance(value, list):
        raise CaseFailed(f"{what}: expected a list of hex strings, got {short(value)}")
    return [unhex(item, f"{what}[{i}]") for i, item in enumerate(value)]
