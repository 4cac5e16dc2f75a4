# ruff: noqa: E501 (a case title is one row of the table of spec/conformance.md §4, kept whole)
"""Port-mapping cases (spec/portmap.md §3-§6): the ``portmap`` role's PCP and NAT-PMP client.

The runner plays the home router's gateway at 10.0.0.1:5351: it reads the IUT's requests, laid
out here from RFC 6886 §3 and RFC 6887 §7, §11 (not taken from the core), and answers them by
hand, or not, in virtual time (spec/conformance.md §3.12).
"""

from __future__ import annotations

import itertools
import struct
from typing import Any

from .checks import expect, expect_eq
from .iut import Iut
from .nat_net import Role, Sent, fire, text
from .registry import case

NATPMP, PCP, LIFETIMES, REMOVAL = "portmap.md §3", "portmap.md §4", "portmap.md §5", "portmap.md §6"
GATEWAY, LOCAL = ("10.0.0.1", 5351), ("10.0.0.2", 40000)
SEED = "6d61" * 8
PUBLIC = bytes([198, 18, 7, 7])


def start(iut: Iut, protocol: str, **fields: Any) -> Role:
    role = Role(iut)
    role.start(
        "portmap",
        0.0,
        protocol=protocol,
        local=text(LOCAL),
        gateway=text(GATEWAY),
        internal_port=LOCAL[1],
        seed=SEED,
        **fields,
    )
    return role


def answer(role: Role, data: bytes, now: float) -> list[Sent]:
    return role.receive(data, GATEWAY, text(LOCAL), now)


# -- NAT-PMP (RFC 6886 §3.2-§3.5) ------------------------------------------------------------


def pmp_address(epoch: int, result: int = 0, address: bytes = PUBLIC) -> bytes:
    return struct.pack(">BBHI", 0, 128, result, epoch) + address


def pmp_map(epoch: int, external: int, lifetime: int, result: int = 0, internal: int = LOCAL[1]) -> bytes:
    return struct.pack(">BBHIHHI", 0, 129, result, epoch, internal, external, lifetime)


def pmp_request(data: bytes) -> tuple[int, int, int, int]:
    """``(opcode, internal, suggested, lifetime)`` of a 12-byte mapping request."""
    expect_eq(len(data), 12, "a NAT-PMP mapping request's size")
    version, op, reserved, internal, suggested, lifetime = struct.unpack(">BBHHHI", data)
    expect_eq((version, reserved), (0, 0), "a NAT-PMP mapping request's version and reserved field")
    return op, internal, suggested, lifetime


def pmp_mapped(iut: Iut, lifetime: int = 3600) -> Role:
    """A NAT-PMP client granted external port 41000 for ``lifetime`` at 0.1 s (epoch 1000)."""
    role = start(iut, "natpmp")
    expect_eq([s.data for s in role.sent], [b"\x00\x00"], "the first request (the external address)")
    asked = answer(role, pmp_address(1000), 0.05)
    expect_eq(len(asked), 1, "requests after the address answer")
    op, internal, suggested, wanted = pmp_request(asked[0].data)
    expect_eq((op, internal, suggested, wanted), (1, LOCAL[1], LOCAL[1], 7200), "the UDP mapping request")
    answer(role, pmp_map(1000, 41000, lifetime), 0.1)
    return role


@case(
    "map/natpmp/1",
    section=NATPMP,
    title="NAT-PMP: the external address, then the mapping (7200 s asked), reported with the address, port and lifetime granted",
    requirements=("MAP-3.1", "MAP-5.1", "MAP-5.3", "MAP-4.2"),
)
def _(iut: Iut) -> str | None:
    role = pmp_mapped(iut)
    granted = role.event("mapping_granted")
    expect(granted is not None, "no mapping_granted")
    assert granted is not None
    expect_eq((granted.get("external"), granted.get("lifetime")), ("198.18.7.7:41000", 3600), "the mapping reported")
    return None


@case(
    "map/natpmp/2",
    section=NATPMP,
    title="NAT-PMP to a silent gateway: 4 sends at 0, 0.25, 0.75, 1.75 s, given up at 3.75 s",
    requirements=("MAP-2.2", "MAP-3.1"),
)
def _(iut: Iut) -> str | None:
    role = start(iut, "natpmp")
    fire(role, 10.0)
    expect_eq([round(s.at, 3) for s in role.sent], [0.0, 0.25, 0.75, 1.75], "the send times")
    failed = role.event("mapping_failed")
    expect(failed is not None and failed.get("unsupported") is True, f"no unsupported mapping_failed: {role.events}")
    return None


@case(
    "map/natpmp/3",
    section=NATPMP,
    title="NAT-PMP: a result code ends the attempt (1 and 5: unsupported); port 0 or lifetime 0 granted is a failure",
    requirements=("MAP-3.3",),
)
def _(iut: Iut) -> str | None:
    for result, unsupported in ((2, False), (3, False), (1, True), (5, True)):
        role = start(iut, "natpmp")
        answer(role, pmp_address(1000), 0.05)
        answer(role, pmp_map(1000, 0, 0, result=result), 0.1)
        failed = role.event("mapping_failed")
        expect(failed is not None, f"result {result}: no mapping_failed")
        assert failed is not None
        expect_eq((failed.get("result"), failed.get("unsupported")), (result, unsupported), f"result {result}")
    for external, lifetime in ((0, 3600), (41000, 0)):
        role = start(iut, "natpmp")
        answer(role, pmp_address(1000), 0.05)
        answer(role, pmp_map(1000, external, lifetime), 0.1)
        expect(role.event("mapping_granted") is None, f"port {external}, lifetime {lifetime} taken as granted")
        expect(role.event("mapping_failed") is not None, f"port {external}, lifetime {lifetime}: no mapping_failed")
    return None


@case(
    "map/natpmp/4",
    section=LIFETIMES,
    title="renewal at half the granted lifetime, asking for the granted port; unanswered, retransmitted until expiry, then lost",
    requirements=("MAP-5.1", "MAP-5.2", "MAP-3.1"),
)
def _(iut: Iut) -> str | None:
    role = pmp_mapped(iut, lifetime=100)
    renewal = fire(role, 50.1)
    expect(len(renewal) >= 1 and abs(renewal[0].at - 50.1) < 1e-6, f"the renewal left at {[s.at for s in renewal]}")
    op, internal, suggested, wanted = pmp_request(renewal[0].data)
    expect_eq((op, internal, suggested, wanted), (1, LOCAL[1], 41000, 7200), "the renewal asks for the granted port")
    more = fire(role, 101.0)
    expect(len(more) >= 3, f"{len(more)} retransmissions of an unanswered renewal")
    expect(all(s.data == renewal[0].data for s in more), "a retransmission differs from the renewal")
    expect(role.event("mapping_lost") is not None, "no mapping_lost once the mapping expired")
    expect(all(s.at <= 100.1 + 1e-6 for s in more), "a renewal sent after the mapping expired")
    return None


@case(
    "map/natpmp/5",
    section=LIFETIMES,
    title="an epoch that goes back (the gateway restarted) makes the client ask for its mapping again at once",
    requirements=("MAP-5.4",),
)
def _(iut: Iut) -> str | None:
    role = pmp_mapped(iut)
    quiet = answer(role, pmp_address(1010), 10.1)
    expect_eq(quiet, [], "requests after an address answer with an epoch in step")
    again = answer(role, pmp_address(3), 20.0)
    expect_eq(len(again), 1, "requests after an epoch that went back")
    expect_eq(pmp_request(again[0].data)[2], 41000, "the port asked for again")
    return None


@case(
    "map/natpmp/6",
    section=REMOVAL,
    title="removal: a mapping request with lifetime 0 and suggested port 0; acknowledged, the removal is confirmed",
    requirements=("MAP-6.1",),
)
def _(iut: Iut) -> str | None:
    role = pmp_mapped(iut)
    sent = role.start("portmap_remove", 5.0)
    expect_eq(len(sent), 1, "requests at removal")
    op, internal, suggested, wanted = pmp_request(sent[0].data)
    expect_eq((op, internal, suggested, wanted), (1, LOCAL[1], 0, 0), "the deletion request")
    answer(role, pmp_map(1005, 0, 0), 5.1)
    removed = role.event("mapping_removed")
    expect(removed is not None and removed.get("confirmed") is True, f"no confirmed mapping_removed: {role.events}")
    return None


@case(
    "map/natpmp/7",
    section=NATPMP,
    title="garbage, answers for another port and datagrams from another address are dropped",
    requirements=("MAP-1.2", "MAP-1.3"),
)
def _(iut: Iut) -> str | None:
    role = start(iut, "natpmp")
    answer(role, pmp_address(1000), 0.05)
    for junk in (b"", b"\x00", b"\x00\x81\x00", bytes(64), pmp_map(1000, 41000, 3600, internal=LOCAL[1] + 1)):
        expect_eq(answer(role, junk, 0.06), [], f"datagrams sent for {junk.hex()}")
    role.receive(pmp_map(1000, 41000, 3600), ("10.0.0.99", 5351), text(LOCAL), 0.07)
    expect_eq(role.events, [], "events from garbage or another host")
    answer(role, pmp_map(1000, 41000, 3600), 0.08)
    expect(role.event("mapping_granted") is not None, "the real answer was not taken after the garbage")
    return None


# -- PCP (RFC 6887 §7, §11) --------------------------------------------------------------------


def pcp_parse(data: bytes) -> dict[str, Any]:
    expect_eq(len(data), 60, "a PCP MAP request's size")
    version, opcode, _, _, lifetime = struct.unpack_from(">BBBBI", data)
    return {
        "version": version,
        "opcode": opcode,
        "lifetime": lifetime,
        "client": data[8:24],
        "nonce": data[24:36],
        "protocol": data[36],
        "zero": data[37:40],
        "internal": struct.unpack_from(">H", data, 40)[0],
        "port": struct.unpack_from(">H", data, 42)[0],
        "address": data[44:60],
    }


def mapped_v4(ip: bytes) -> bytes:
    return bytes(10) + b"\xff\xff" + ip


def pcp_answer(
    nonce: bytes,
    lifetime: int,
    epoch: int,
    *,
    port: int = 41000,
    address: bytes = PUBLIC,
    result: int = 0,
    internal: int = LOCAL[1],
    version: int = 2,
) -> bytes:
    head = struct.pack(">BBBBII", version, 0x81, 0, result, lifetime, epoch) + bytes(12)
    return head + nonce + bytes([17, 0, 0, 0]) + struct.pack(">HH", internal, port) + mapped_v4(address)


@case(
    "map/pcp/1",
    section=PCP,
    title="PCP: a 60-byte MAP request; the nonce kept for renewal and deletion; a reserved external address accepted",
    requirements=("MAP-4.1", "MAP-4.3", "MAP-4.2", "MAP-5.1", "MAP-6.1"),
)
def _(iut: Iut) -> str | None:
    role = start(iut, "pcp", lifetime=100)
    first = pcp_parse(role.sent[0].data)
    expect_eq(
        {
            k: first[k]
            for k in ("version", "opcode", "lifetime", "client", "protocol", "zero", "internal", "port", "address")
        },
        {
            "version": 2,
            "opcode": 1,
            "lifetime": 100,
            "client": mapped_v4(bytes([10, 0, 0, 2])),
            "protocol": 17,
            "zero": bytes(3),
            "internal": LOCAL[1],
            "port": LOCAL[1],
            "address": mapped_v4(bytes(4)),
        },
        "the MAP request",
    )
    answer(role, pcp_answer(first["nonce"], 100, 500, address=bytes([100, 64, 1, 1])), 0.1)
    granted = role.event("mapping_granted")
    expect(granted is not None and granted.get("external") == "100.64.1.1:41000", f"the mapping granted: {role.events}")
    renewal = pcp_parse(fire(role, 50.1)[0].data)
    expect_eq(
        (renewal["nonce"], renewal["port"], renewal["address"]),
        (first["nonce"], 41000, mapped_v4(bytes([100, 64, 1, 1]))),
        "the renewal's nonce and suggested port and address",
    )
    answer(role, pcp_answer(first["nonce"], 100, 550), 50.2)
    removal = pcp_parse(role.start("portmap_remove", 60.0)[0].data)
    expect_eq((removal["nonce"], removal["lifetime"]), (first["nonce"], 0), "the deletion's nonce and lifetime")
    return None


@case(
    "map/pcp/2",
    section=PCP,
    title="PCP answers with another nonce, port or layout are dropped; the unspecified external address is refused",
    requirements=("MAP-4.3", "MAP-4.4", "MAP-4.2", "MAP-1.2"),
)
def _(iut: Iut) -> str | None:
    role = start(iut, "pcp")
    nonce = pcp_parse(role.sent[0].data)["nonce"]
    good = pcp_answer(nonce, 3600, 500)
    for what, bad in (
        ("another nonce", pcp_answer(bytes(12), 3600, 500)),
        ("another internal port", pcp_answer(nonce, 3600, 500, internal=LOCAL[1] + 1)),
        ("a length not a multiple of 4", good + b"\x00"),
        ("too short", good[:20]),
        ("version 3", pcp_answer(nonce, 3600, 500, version=3)),
        ("no response bit", good[:1] + b"\x01" + good[2:]),
        ("an option running past the end", good + bytes([0x80, 0, 0, 8]) + bytes(4)),
    ):
        answer(role, bad, 0.1)
        expect_eq(role.events, [], f"events after an answer with {what}")
    answer(role, pcp_answer(nonce, 3600, 500, address=bytes(4)), 0.2)
    expect(role.event("mapping_granted") is None, "0.0.0.0 taken as the external address")
    return None


@case(
    "map/pcp/3",
    section=PCP,
    title="PCP to a silent gateway: one send, given up about 3 s later; a NAT-PMP-only answer moves on at once",
    requirements=("MAP-2.2", "MAP-3.2", "MAP-3.3"),
)
def _(iut: Iut) -> str | None:
    role = start(iut, "pcp")
    fire(role, 10.0)
    expect_eq(len(role.sent), 1, "sends to a silent gateway")
    failed = role.event("mapping_failed")
    expect(failed is not None and failed.get("unsupported") is True, f"no unsupported mapping_failed: {role.events}")
    role = start(iut, "pcp")
    answer(role, struct.pack(">BBH", 0, 0x80 + 1, 1) + bytes(4), 0.05)  # NAT-PMP: version 0, result 1
    failed = role.event("mapping_failed")
    expect(failed is not None and failed.get("unsupported") is True, f"a NAT-PMP-only gateway: {role.events}")
    return None


@case(
    "map/pcp/4",
    section=PCP,
    title="PCP renewals are retransmitted after (1 ± 0.1) x 3 s, then doubling",
    requirements=("MAP-3.2", "MAP-5.2"),
)
def _(iut: Iut) -> str | None:
    role = start(iut, "pcp", lifetime=200)
    nonce = pcp_parse(role.sent[0].data)["nonce"]
    answer(role, pcp_answer(nonce, 200, 500), 0.1)
    times = [s.at for s in fire(role, 140.0)]
    expect(len(times) >= 4 and abs(times[0] - 100.1) < 1e-6, f"renewal times {times}")
    gaps = [b - a for a, b in itertools.pairwise(times)]
    expect(2.7 <= gaps[0] <= 3.3, f"the first retransmission after {gaps[0]:.2f} s")
    expect(all(1.8 * a - 1e-6 <= b <= 2.2 * a + 1e-6 for a, b in itertools.pairwise(gaps)), f"gaps {gaps}")
    return None
