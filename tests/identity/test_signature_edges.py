"""The signature edge vectors (spec/vectors/signature_edges.json) against the reference.

spec/identity.md §3.2 gives one exact verification rule; the vector file has one vector per
edge of it, each with its verdict.  The reference implementation must reproduce every verdict,
both through the primitive (``crypto.ed25519_verify`` over the domain-separated bytes) and
through ``identity.verify``.  The file must also cover every edge it claims: all 14 encodings
of small-order points as key and as R, each key forgery satisfying the bare equation, and
every rule of §3.2.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import nacl.bindings
import pytest

from p2pos.proto.identity import crypto
from p2pos.proto.identity.identity import signed_message, verify
from p2pos.proto.identity.peer_id import PeerId

VECTORS = Path(__file__).resolve().parents[2] / "spec" / "vectors"
DATA: dict[str, Any] = json.loads((VECTORS / "signature_edges.json").read_text(encoding="utf-8"))
EDGES: list[dict[str, Any]] = DATA["vectors"]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("p2pos_signature_edges", VECTORS / "generate_signatures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fields(edge: dict[str, Any]) -> tuple[bytes, bytes, bytes, bytes]:
    return tuple(bytes.fromhex(edge[k]) for k in ("public_key", "domain", "message", "signature"))  # type: ignore[return-value]


@pytest.mark.parametrize("edge", EDGES, ids=[e["name"] for e in EDGES])
def test_the_reference_gives_every_verdict(edge: dict[str, Any]) -> None:
    public_key, domain, message, signature = _fields(edge)
    assert crypto.ed25519_verify(public_key, signed_message(domain, message), signature) is edge["valid"]
    if len(public_key) == 32:
        assert verify(PeerId(public_key), domain, message, signature) is edge["valid"]


def test_the_file_is_what_the_generator_writes() -> None:
    assert _generator().build_vectors()["signature_edges.json"] == (VECTORS / "signature_edges.json").read_text(
        encoding="utf-8"
    )


def test_the_rule_written_as_code_gives_every_verdict() -> None:
    rule = _generator().strict_verify
    for edge in EDGES:
        assert rule(*_fields(edge)) is edge["valid"], edge["name"]


def test_every_small_order_encoding_is_refused_as_key_and_as_r() -> None:
    blocked = {bytes.fromhex(y) for y in DATA["blocked_y"]}
    keys = {bytes.fromhex(e["public_key"]) for e in EDGES if e["name"].startswith("key-small-order-")}
    rs = {bytes.fromhex(e["signature"])[:32] for e in EDGES if e["name"].startswith("r-small-order-")}
    for seen in (keys, rs):
        assert len(seen) == 14
        # Each blocked y appears with both sign bits (7 values x 2 = 14 encodings).
        assert {bytes([*s[:31], s[31] & 0x7F]) for s in seen} == blocked
    # The key forgeries satisfy the bare equation: only the small-order check refuses them.
    for edge in EDGES:
        if edge["name"].startswith("key-small-order-"):
            assert edge["cofactorless_equation"] is True, edge["name"]
            assert edge["valid"] is False


def test_the_edges_cover_every_rule_of_section_3_2() -> None:
    cited = {rid for e in EDGES for rid in e["requirements"]}
    assert cited >= {f"ID-3.2.{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 10)}
    # Cofactorless against cofactored: some vectors hold only cofactored and are invalid,
    # some mixed-order ones hold cofactorless and are valid.
    only_cofactored = [e for e in EDGES if e["cofactored_equation"] and not e["cofactorless_equation"]]
    assert only_cofactored and not any(e["valid"] for e in only_cofactored)
    assert any(e["valid"] and "mixed" in e["name"] for e in EDGES)


def test_the_independent_arithmetic_agrees_with_libsodium() -> None:
    gen = _generator()
    for scalar in (1, 2, 12345, gen.L - 1, 2**200 + 7):
        expected = nacl.bindings.crypto_scalarmult_ed25519_base_noclamp(scalar.to_bytes(32, "little"))
        assert gen.encode(gen.mul(scalar, gen.BASE)) == expected


def test_the_conformance_cases_check_the_same_edges() -> None:
    # conformance/cases_req_identity.py builds the edges with PyNaCl for the `verify` cases.
    from p2pos.conformance.cases_req_identity import EDGE_DOMAIN, signature_edges

    built = [
        {
            "name": e.name,
            "requirements": list(e.requirements),
            "public_key": e.public_key.hex(),
            "domain": EDGE_DOMAIN.hex(),
            "message": e.message.hex(),
            "signature": e.signature.hex(),
            "valid": e.valid,
        }
        for e in signature_edges()
    ]
    assert built == [{k: v for k, v in e.items() if k in built[0]} for e in EDGES]
