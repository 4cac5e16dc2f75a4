"""spec/vectors/portmap.json against the implementation: requests byte for byte, responses field for field.

The file is read as data (no import of its generator): every request vector is rebuilt from
its fields and must give the same bytes; every response must parse to its fields; every
malformed one must raise PortMapError.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from p2pos.proto.nat import portmap_natpmp as nm
from p2pos.proto.nat import portmap_pcp as pcp
from p2pos.proto.nat.portmap_common import PortMapError

DATA: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[2] / "spec" / "vectors" / "portmap.json").read_text(encoding="utf-8")
)
NATPMP, PCP = DATA["natpmp"], DATA["pcp"]


@pytest.mark.parametrize("vector", NATPMP["requests"], ids=lambda v: str(v["name"]))
def test_natpmp_requests(vector: dict[str, Any]) -> None:
    """[MAP-3.1] [MAP-6.1]"""
    built = nm.map_request(**vector["fields"]) if vector["fields"] else nm.address_request()
    assert built.hex() == vector["hex"]


@pytest.mark.parametrize("vector", NATPMP["responses"], ids=lambda v: str(v["name"]))
def test_natpmp_responses(vector: dict[str, Any]) -> None:
    parsed = nm.response_untrusted(bytes.fromhex(vector["hex"]))
    assert {k: getattr(parsed, k) for k in vector["fields"]} == vector["fields"]


@pytest.mark.parametrize("vector", NATPMP["malformed"] + PCP["malformed"], ids=lambda v: str(v["name"]))
def test_malformed_responses(vector: dict[str, Any]) -> None:
    """[MAP-1.2] [MAP-4.4]"""
    parse = nm.response_untrusted if vector in NATPMP["malformed"] else pcp.response_untrusted
    with pytest.raises(PortMapError):
        parse(bytes.fromhex(vector["hex"]))


@pytest.mark.parametrize("vector", PCP["requests"], ids=lambda v: str(v["name"]))
def test_pcp_requests(vector: dict[str, Any]) -> None:
    """[MAP-4.1] [MAP-4.3] the nonce is the file's, the same in the renewal and the deletion."""
    fields = {**vector["fields"], "nonce": bytes.fromhex(vector["fields"]["nonce"])}
    assert fields["nonce"].hex() == PCP["nonce_hex"]
    assert pcp.map_request(**fields).hex() == vector["hex"]


@pytest.mark.parametrize("vector", PCP["responses"], ids=lambda v: str(v["name"]))
def test_pcp_responses(vector: dict[str, Any]) -> None:
    parsed = pcp.response_untrusted(bytes.fromhex(vector["hex"]))
    fields = {k: getattr(parsed, k) for k in vector["fields"]}
    fields["nonce"] = parsed.nonce.hex()
    assert fields == vector["fields"]
