"""``truncate_utf8``: the one UTF-8 truncator (close and REFUSE reasons)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pos.proto.common.text import truncate_utf8


def test_short_text_is_unchanged() -> None:
    assert truncate_utf8("bye", 3) == "bye"
    assert truncate_utf8("", 0) == ""


def test_the_limit_is_exact_and_no_code_point_is_split() -> None:
    text = "a✓b"  # ✓ is three bytes
    assert truncate_utf8(text, 1) == "a"
    assert truncate_utf8(text, 2) == "a"
    assert truncate_utf8(text, 3) == "a"
    assert truncate_utf8(text, 4) == "a✓"
    assert truncate_utf8(text, 5) == "a✓b"
    assert truncate_utf8("😀😀", 7) == "😀"  # four-byte code points
    assert truncate_utf8("😀😀", 8) == "😀😀"
    assert truncate_utf8("😀", 0) == ""


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError):
        truncate_utf8("x", -1)


@given(st.text(), st.integers(min_value=0, max_value=64))
def test_the_longest_prefix_within_the_limit(text: str, limit: int) -> None:
    cut = truncate_utf8(text, limit)
    encoded = cut.encode("utf-8")
    assert len(encoded) <= limit
    assert text.startswith(cut)
    if cut != text:  # the next character would not have fitted
        assert len(encoded) + len(text[len(cut)].encode("utf-8")) > limit
