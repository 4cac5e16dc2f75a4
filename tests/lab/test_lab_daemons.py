"""The real stack in the lab: the rendezvous node (``p2pos relay``) in the internet, daemons behind routers.

What today's daemon does across the lab's routers (before the carriers and NAT issues):

* behind ``eim`` it registers, and the node observes the router's public address with the
  daemon's own port (Linux keeps the source port);
* with a public address (``none``) it registers as itself;
* behind ``udp-blocked`` it never registers (no relay carrier yet);
* a daemon behind ``eim`` opens a session to a public one and pipes data through its router,
  hash intact.  (The other way round, or between two ``eim`` daemons, needs the hole punching
  of the NAT issue: the router's inbound filter drops the handshake.)

labp2pos.py starts the processes and asks the daemons' API.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import labp2pos
import netlab
import pytest

pytestmark = netlab.MARKS


@pytest.fixture
def lab() -> Iterator[netlab.Lab]:
    with netlab.lab() as made:
        yield made


def test_daemons_behind_lab_routers(lab: netlab.Lab) -> None:
    node = labp2pos.rendezvous(lab, lab.server("rendezvous"))
    peers = {"a": lab.peer("a", "eim"), "b": lab.peer("b", "none"), "c": lab.peer("c", "udp-blocked")}
    daemons = {name: labp2pos.daemon(lab, peer, node) for name, peer in peers.items()}
    a, b = daemons["a"].wait_registered(), daemons["b"].wait_registered()
    a_port = a["addresses"][0].rsplit(":", 1)[1]
    assert peers["a"].router is not None
    assert a["registrations"][0]["observed"] == f"{peers['a'].router.public}:{a_port}"
    b_port = b["addresses"][0].rsplit(":", 1)[1]
    assert b["registrations"][0]["observed"] == b["addresses"][0] == f"{peers['b'].address}:{b_port}"
    # c's UDP never leaves its router: its daemon runs, but seconds after a and b it is still not in
    c = daemons["c"]
    assert netlab.wait_until(lambda: c.status() is not None, 20)
    assert not netlab.wait_until(c.registered, 2.0)
    assert c.registration_states() and "registered" not in c.registration_states()

    # a (behind eim) pipes to b (public): the handshake goes out, the replies come back in
    daemons["b"].serve("sink", labp2pos.HASH_STDIN)
    data = os.urandom(300_000)
    (lab.tmp / "input").write_bytes(data)
    code, out, err = daemons["a"].command("pipe", b["peer_id"], "sink", stdin=lab.tmp / "input")
    assert code == 0, err
    assert out.strip() == hashlib.sha256(data).hexdigest()
