"""The in-repository vector copies are the shared vectors, byte for byte."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import SHARED_VECTORS_DIR, VECTORS_DIR

COPIED = [
    "noise/cacophony.json",
    "noise/LICENSE.cacophony",
    "wycheproof/chacha20_poly1305_test.json",
    "wycheproof/ed25519_test.json",
    "wycheproof/x25519_test.json",
    "wycheproof/LICENSE",
]


@pytest.mark.parametrize("relative", COPIED)
def test_copy_equals_the_shared_vectors(relative: str) -> None:
    copy = VECTORS_DIR / relative
    assert copy.is_file(), f"missing {copy}"
    shared = SHARED_VECTORS_DIR / relative
    if not shared.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CI runs with shared/ beside the clone, but {shared} is missing")
        pytest.skip(f"{SHARED_VECTORS_DIR} is not beside this clone (outside CI): only the copy is checked")
    assert Path(copy).read_bytes() == shared.read_bytes(), f"{copy} differs from {shared}"
