"""Text helpers shared by the layers: UTF-8 cut to a byte limit (close reasons, REFUSE reasons)."""

from __future__ import annotations


def truncate_utf8(text: str, limit: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 encoding is at most ``limit`` bytes.

    Never splits a code point: a character that would straddle the limit is left
    out whole.  ``truncate_utf8(text, n).encode("utf-8")`` is what goes on the wire.
    """
    if limit < 0:
        raise ValueError("limit must not be negative")
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    # A UTF-8 continuation byte is 0b10xxxxxx: back up to the start of the character at the cut.
    end = limit
    while end > 0 and encoded[end] & 0xC0 == 0x80:
        end -= 1
    return encoded[:end].decode("utf-8")
