"""Write the NAT-PMP and PCP vectors (spec/vectors/portmap.json) of spec/portmap.md.

Run from the repository root::

    .venv/bin/python spec/vectors/generate_portmap.py           # (re)write portmap.json
    .venv/bin/python spec/vectors/generate_portmap.py --check   # exit 1 if it differs

Holds: the requests p2pos sends (NAT-PMP address and mapping requests, PCP MAP requests from
an IPv4 and an IPv6 client, renewal and deletion) with the fields they encode; responses
laid out by hand from RFC 6886 §3.2-§3.5 and RFC 6887 §7.2, §11.1 with what each parses to;
malformed responses with the error each must give.  The PCP nonce is fixed bytes from a
label as in ``generate.py``: ``BLAKE2b-256("p2pos test vector: " || label)[:12]``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import ipaddress
import json
import struct
import sys
from pathlib import Path
from typing import Any

from p2pos.proto.nat import portmap_natpmp as nm
from p2pos.proto.nat import portmap_pcp as pcp
from p2pos.proto.nat.portmap_common import PortMapError

VECTORS_DIR = Path(__file__).resolve().parent
Json = dict[str, Any]
NONCE_LABEL = "portmap pcp nonce"
NONCE = hashlib.blake2b(b"p2pos test vector: " + NONCE_LABEL.encode(), digest_size=32).digest()[:12]
CLIENT4, CLIENT6, WAN4, WAN6 = "10.1.0.2", "2001:2:0:101::2", "198.18.1.2", "2001:2::1:2"


UNSPECIFIED = str(ipaddress.IPv4Address(0))


def _ip(address: str) -> bytes:
    return ipaddress.ip_address(address).packed


def _pcp_address(address: str) -> bytes:
    ip = ipaddress.ip_address(address)
    return ip.packed if ip.version == 6 else b"\0" * 10 + b"\xff\xff" + ip.packed


def _pcp_reply(result: int, lifetime: int, epoch: int, port: int, address: str, *, opcode: int = 1) -> bytes:
    header = struct.pack(">BBBBII12x", 2, 0x80 | opcode, 0, result, lifetime, epoch)
    if opcode == 0:
        return header
    return header + struct.pack(">12sB3xHH16s", NONCE, 17, 4000, port, _pcp_address(address))


def _natpmp() -> Json:
    requests = [
        {"name": "external address", "fields": {}, "hex": nm.address_request().hex()},
    ]
    for name, transport, suggested, lifetime in (
        ("map UDP 4000, suggest 4000, 7200 s", 17, 4000, 7200),
        ("map TCP 4000, suggest 4001, 3600 s", 6, 4001, 3600),
        ("delete UDP 4000 (lifetime 0, port 0)", 17, 0, 0),
    ):
        fields = {"transport": transport, "internal_port": 4000, "suggested_port": suggested, "lifetime": lifetime}
        requests.append({"name": name, "fields": fields, "hex": nm.map_request(**fields).hex()})
    responses = []
    for name, data in (
        ("external address 198.18.1.2, epoch 1000", struct.pack(">BBHI4s", 0, 128, 0, 1000, _ip(WAN4))),
        ("UDP 4000 mapped to 4000 for 7200 s", struct.pack(">BBHIHHI", 0, 129, 0, 1001, 4000, 4000, 7200)),
        ("deleted: lifetime 0, port 0", struct.pack(">BBHIHHI", 0, 129, 0, 1002, 4000, 0, 0)),
        ("refused: result 2 (not authorized)", struct.pack(">BBHI", 0, 129, 2, 1003)),
    ):  # fmt: skip
        parsed = nm.response_untrusted(data)
        fields = {k: getattr(parsed, k) for k in ("opcode", "result", "epoch", "external_address", "internal_port",
                                                     "external_port", "lifetime")}  # fmt: skip
        responses.append({"name": name, "hex": data.hex(), "fields": fields})
    good = struct.pack(">BBHIHHI", 0, 129, 0, 1001, 4000, 4000, 7200)
    malformed = _malformed(
        nm.response_untrusted,
        [
            ("7 bytes", good[:7]),
            ("a mapping answer cut to 15 bytes", good[:15]),
            ("version 1", b"\x01" + good[1:]),
            ("no response bit (a request's opcode)", b"\x00\x01" + good[2:]),
            ("opcode 3", b"\x00\x83" + good[2:]),
            ("external address 0.0.0.0", struct.pack(">BBHI4s", 0, 128, 0, 1, bytes(4))),
        ],
    )
    return {"requests": requests, "responses": responses, "malformed": malformed}


def _pcp() -> Json:
    requests = []
    for name, client, lifetime, suggested_port, suggested_address in (
        ("MAP UDP 4000 from 10.1.0.2, 7200 s, no preference", CLIENT4, 7200, 4000, None),
        ("renewal suggesting the assigned 198.18.1.2:4000", CLIENT4, 7200, 4000, WAN4),
        ("deletion: lifetime 0, same nonce", CLIENT4, 0, 4000, WAN4),
        ("MAP UDP 4000 from an IPv6 client", CLIENT6, 600, 4000, None),
    ):
        fields = {
            "lifetime": lifetime,
            "client_address": client,
            "nonce": NONCE.hex(),
            "transport": 17,
            "internal_port": 4000,
            "suggested_port": suggested_port,
            "suggested_address": suggested_address,
        }
        data = pcp.map_request(**{**fields, "nonce": NONCE})  # type: ignore[arg-type]
        requests.append({"name": name, "fields": fields, "hex": data.hex()})
    responses = []
    for name, data in (
        ("MAP success: 198.18.1.2:4000 for 7200 s, epoch 5000", _pcp_reply(0, 7200, 5000, 4000, WAN4)),
        ("MAP success with an IPv6 external address", _pcp_reply(0, 600, 5001, 4000, WAN6)),
        ("MAP error NO_RESOURCES (8), valid 30 s", _pcp_reply(8, 30, 5002, 0, "::")),
        ("ANNOUNCE, epoch 3", _pcp_reply(0, 0, 3, 0, "::", opcode=0)),
        ("NAT-PMP gateway: version 0, unsupported version", struct.pack(">BBHI", 0, 0x81, 1, 77)),
    ):
        parsed = pcp.response_untrusted(data)
        fields = {k: getattr(parsed, k) for k in ("version", "opcode", "result", "lifetime", "epoch", "transport",
                                                     "internal_port", "external_port", "external_address")}  # fmt: skip
        fields["nonce"] = parsed.nonce.hex()
        responses.append({"name": name, "hex": data.hex(), "fields": fields})
    good = _pcp_reply(0, 7200, 5000, 4000, WAN4)
    malformed = _malformed(
        pcp.response_untrusted,
        [
            ("cut to 56 bytes", good[:56]),
            ("not a multiple of 4", good + b"\x00\x00"),
            ("over 1100 bytes", good + bytes(1044)),
            ("version 1", b"\x01" + good[1:]),
            ("no response bit", good[:1] + b"\x01" + good[2:]),
            ("opcode 2 (PEER, not asked for)", good[:1] + b"\x82" + good[2:]),
            ("an option running past the end", good + struct.pack(">BBH", 0x80, 0, 8) + b"abcd"),
            ("assigned address ::ffff:0.0.0.0", _pcp_reply(0, 7200, 1, 4000, UNSPECIFIED)),
            ("version 0 with a result other than 1", struct.pack(">BBHI", 0, 0x81, 3, 77)),
        ],
    )
    return {"nonce_label": NONCE_LABEL, "nonce_hex": NONCE.hex(), "requests": requests, "responses": responses,
            "malformed": malformed}  # fmt: skip


def _malformed(parse: Any, cases: list[tuple[str, bytes]]) -> list[Json]:
    out = []
    for name, data in cases:
        try:
            parse(data)
        except PortMapError as exc:
            out.append({"name": name, "hex": data.hex(), "error": str(exc)})
        else:
            raise AssertionError(f"malformed vector {name!r} parsed")
    return out


def build_vectors() -> dict[str, str]:
    """``{"portmap.json": text}``."""
    data = {
        "description": (
            "NAT-PMP (RFC 6886) and PCP MAP (RFC 6887) messages as p2pos writes and reads them: the requests "
            "of the port mapper (internal UDP port 4000, client 10.1.0.2 or 2001:2:0:101::2), gateway "
            "responses laid out from the RFCs with the fields each parses to (external address 198.18.1.2, "
            "a reserved range accepted on purpose), and malformed responses with the error a parser gives."
        ),
        "spec": ["spec/portmap.md §3", "spec/portmap.md §4"],
        "natpmp": _natpmp(),
        "pcp": _pcp(),
    }
    return {"portmap.json": json.dumps(data, indent=2, ensure_ascii=False) + "\n"}


def main(argv: list[str] | None = None) -> int:
    spec = importlib.util.spec_from_file_location("generate_frames", VECTORS_DIR / "generate_frames.py")
    if spec is None or spec.loader is None:
        raise RuntimeError("generate_frames.py not found beside generate_portmap.py")
    frames = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(frames)
    status: int = frames.write_or_check(build_vectors(), argv, script="generate_portmap.py", doc=__doc__)
    return status


if __name__ == "__main__":
    sys.exit(main())
