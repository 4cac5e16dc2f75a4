"""Daemons over QUIC on their own UDP sockets (spec/quic.md §5.1) where raw p2pos UDP is dropped.

A rendezvous node (``p2pos relay --listen``) in the lab's internet and two daemons behind ``eim``
routers.  An nftables rule in the internet namespace drops every UDP datagram between the two
routers whose first payload byte is below 64 (``@th,64,2 == 0``: the two top bits of the byte
after the UDP header; raw p2pos is 4-15) and passes the rest, QUIC (64-127, 192-255) among it,
as a network that lets only QUIC through would.  The rendezvous node is reachable as usual
(lookups and introductions work); the introduced daemon punches its router open with a QUIC-looking
datagram (QUIC-5.1.4).  The daemons' connect races direct UDP and QUIC to the peer's observed
address; only QUIC answers, so the session and a 5 MB pipe run over the QUIC path,
hash intact, and ``p2pos status`` shows that path active.  The rule's counter shows raw p2pos
was tried and dropped.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator

import labp2pos
import netlab
import pytest
from labsys import tool

pytestmark = netlab.MARKS

MB = 1024 * 1024


@pytest.fixture
def lab() -> Iterator[netlab.Lab]:
    with netlab.lab() as made:
        yield made


def quic_only_between(lab: netlab.Lab, a: str, b: str) -> None:
    """Drop raw p2pos (first UDP payload byte < 64) between public addresses ``a`` and ``b``, both ways."""
    lab.nft(
        lab.internet,
        f"""table inet p2quic {{
    chain rawp2pos {{
        type filter hook forward priority filter - 10; policy accept;
        ip saddr {{ {a}, {b} }} ip daddr {{ {a}, {b} }} meta l4proto udp @th,64,2 0 counter drop
    }}
}}
""",
    )


def dropped_packets(lab: netlab.Lab) -> int:
    listing = lab.run(lab.internet, [tool("nft"), "list", "chain", "inet", "p2quic", "rawp2pos"]).stdout
    found = re.search(r"counter packets (\d+)", listing)
    assert found is not None, listing
    return int(found.group(1))


def test_where_only_quic_passes_daemons_meet_over_quic_and_pipe_five_megabytes(lab: netlab.Lab) -> None:
    """[QUIC-5.1.1] [QUIC-5.1.2] [QUIC-5.1.3] [QUIC-5.1.4]"""
    node = labp2pos.rendezvous(lab, lab.server("rendezvous"))
    pa, pb = lab.peer("a", "eim"), lab.peer("b", "eim")
    quic_only_between(lab, pa.public, pb.public)
    a, b = labp2pos.daemon(lab, pa, node, extra=("--quic",)), labp2pos.daemon(lab, pb, node, extra=("--quic",))
    a.wait_registered()
    b_status = b.wait_registered()
    b.serve("sink", labp2pos.HASH_STDIN)
    data = os.urandom(5 * MB)
    (lab.tmp / "input").write_bytes(data)
    code, out, err = a.command("pipe", b_status["peer_id"], "sink", stdin=lab.tmp / "input", timeout=180)
    assert code == 0, (
        err + "\n--- a ---\n" + lab.log(a.process, "err")[-4000:] + "\n--- b ---\n" + lab.log(b.process, "err")[-4000:]
    )
    assert out.strip() == hashlib.sha256(data).hexdigest()
    status = a.status()
    assert status is not None
    [entry] = [p for p in status["peers"] if p["peer_id"] == b_status["peer_id"]]
    [active] = [p for p in entry["paths"] if p["active"]]
    assert active["via"] == "quic" and active["kind"] == "stream", entry
    assert active["address"].startswith(f"{pb.public}:") and active["bytes_sent"] > 5 * MB, entry
    code, text, err = a.command("status")
    assert code == 0 and re.search(r"quic \(stream\) \S+ validated active", text), text + err
    assert dropped_packets(lab) > 0  # direct p2pos UDP was tried and dropped
