"""Generic helpers shared by the test modules.

* ``VECTORS_DIR`` / ``vectors_dir()`` / ``load_vector_json()``: the third-party
  test vectors, verbatim copies in ``tests/vectors/`` so a lone clone runs the
  whole suite; ``test_vector_copies.py`` proves them identical to
  ``../shared/vectors`` whenever that folder is beside the repository (as in CI).
  A missing file is a hard failure with a clear message, never a skip.
* Hypothesis profiles: ``ci`` (derandomized, so a CI run is reproducible, and
  prints the blob to replay a failure) when the environment variable ``CI`` is
  set, ``dev`` otherwise.  Both drop the per-example deadline: crypto on a
  loaded machine is slow, and a flaky deadline is worse than a slow test.
* ``COMPILED_CORE`` / ``ILL_TYPED``: whether the core's per-packet modules are
  the mypyc-compiled ones (``make test-compiled``: the wheel built with
  ``P2POS_COMPILE=1``, setup.py and tools/compile_core.py), and
  the exceptions an ill-typed argument may raise: ``LocalProtocolError`` from
  the pure core's own checks, or already ``TypeError`` from a compiled one.
* ``deterministic_random(seed)``: a ``RandomSource`` (``Callable[[int], bytes]``)
  that returns the same stream for the same seed, for every ``random=`` argument
  of the core.  Also available as the ``random_factory`` fixture.

Test modules import the functions directly (``from conftest import ...``): they
are needed at collection time to parametrize tests by vector.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

#: The repository root (this file is ``<root>/tests/conftest.py``).
REPO_ROOT = Path(__file__).resolve().parents[1]
#: The in-repository copies of the third-party vectors.
VECTORS_DIR = REPO_ROOT / "tests" / "vectors"
#: The project's shared vectors, beside the clone in CI: the copies must equal them.
SHARED_VECTORS_DIR = REPO_ROOT.parent / "shared" / "vectors"

RandomSource = Callable[[int], bytes]


def _compiled_core() -> bool:
    from p2pos.proto.channels import connection

    return not connection.__file__.endswith(".py")


#: True when the tests run against the compiled core (``make test-compiled``).
COMPILED_CORE = _compiled_core()


def _ill_typed() -> tuple[type[Exception], ...]:
    from p2pos.proto import LocalProtocolError

    return (LocalProtocolError, TypeError) if COMPILED_CORE else (LocalProtocolError,)


#: What passing a value of the wrong type to the core raises (see the module docstring).
ILL_TYPED = _ill_typed()

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if "CI" in os.environ else "dev")


def vectors_dir() -> Path:
    """The vectors folder; fails the calling test (or collection) if it is missing."""
    if not VECTORS_DIR.is_dir():
        pytest.fail(
            f"test vectors not found at {VECTORS_DIR}: the checkout is incomplete",
            pytrace=False,
        )
    return VECTORS_DIR


def load_vector_json(relative: str) -> Any:
    """Parse ``<vectors>/<relative>`` as JSON; fails with the path if the file is missing."""
    path = vectors_dir() / relative
    if not path.is_file():
        pytest.fail(f"test vector file missing: {path}", pytrace=False)
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def deterministic_random(seed: int | bytes | str) -> RandomSource:
    """A reproducible byte stream (BLAKE2b in counter mode) keyed by ``seed``.

    Each call continues the stream, so two calls never return the same bytes;
    two sources built from the same seed return identical sequences.
    """
    key = hashlib.blake2b(repr(seed).encode(), digest_size=32, person=b"p2pos-test-rng").digest()
    state = {"counter": 0}

    def draw(n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            block = state["counter"].to_bytes(8, "little")
            state["counter"] += 1
            out += hashlib.blake2b(block, key=key).digest()
        return bytes(out[:n])

    return draw


@pytest.fixture
def random_factory() -> Callable[[int | bytes | str], RandomSource]:
    """``random_factory(seed)`` builds a ``deterministic_random`` source."""
    return deterministic_random


@pytest.fixture
def vectors_path() -> Path:
    """The shared vectors folder (fails the test if it is missing)."""
    return vectors_dir()
