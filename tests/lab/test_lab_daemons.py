"""The real stack in the lab: the rendezvous node (``p2pos relay``) in the internet, daemons behind routers.

What today's daemon does across the lab's routers (before the carriers and NAT issues):

* behind ``eim`` it registers, and the node observes the router's public address with the
  daemon's own port (Linux keeps the source port);
* with a public address (``none``) it registers as itself;
* behind ``udp-blocked`` it never registers (no relay carrier yet);
* a daemon behind ``eim`` opens a session to a public one and pipes data through its router,
  hash intact.  (The other way round, or between two ``eim`` daemons, needs the hole punching
  of the NAT issue: the router's inbound filter drops the handshake.)

The daemons' API is asked over their Unix sockets (a path, so it works from any namespace).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import netlab
import pytest

pytestmark = netlab.MARKS

P2POS = [sys.executable, "-m", "p2pos.adapters.cli"]
HASH_STDIN = [sys.executable, "-c", "import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())"]


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=5)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(str(self.path))


def status(home: Path) -> dict[str, Any] | None:
    """The daemon's ``GET /v1/status``, or None while its API is not up."""
    connection = _Unix(home / "run" / "api.sock")
    try:
        connection.request("GET", "/v1/status")
        body = json.loads(connection.getresponse().read())
    except OSError:
        return None
    finally:
        connection.close()
    assert isinstance(body, dict)
    return body


def registration(home: Path) -> dict[str, Any] | None:
    body = status(home)
    if body is None or not body["registrations"]:
        return None
    (only,) = body["registrations"]
    assert isinstance(only, dict)
    return only


@pytest.fixture
def lab() -> Iterator[netlab.Lab]:
    with netlab.lab() as made:
        yield made


def test_daemons_behind_lab_routers(lab: netlab.Lab) -> None:
    node = lab.server("rendezvous")
    relay = lab.spawn(node.ns, [*P2POS, "relay", "--listen", f"{node.address}:7000", "--home", str(lab.tmp / "node")])
    assert netlab.wait_until(lambda: "bootstrap: " in lab.log(relay), 30), lab.log(relay, "err")
    (bootstrap,) = [line.split(" ", 1)[1] for line in lab.log(relay).splitlines() if line.startswith("bootstrap: ")]
    peers = {"a": lab.peer("a", "eim"), "b": lab.peer("b", "none"), "c": lab.peer("c", "udp-blocked")}
    homes = {name: lab.tmp / name for name in peers}
    for name, peer in peers.items():
        lab.spawn(peer.ns, [*P2POS, "up", "--home", str(homes[name]), "--listen", f"{peer.address}:0",
                            "--bootstrap", bootstrap, "--api-port", "-1"], name=f"up-{name}")  # fmt: skip

    def registered(name: str) -> bool:
        got = registration(homes[name])
        return got is not None and got["state"] == "registered"

    assert netlab.wait_until(lambda: registered("a") and registered("b"), 30)
    a, b = status(homes["a"]), status(homes["b"])
    assert a is not None and b is not None
    a_port = a["addresses"][0].rsplit(":", 1)[1]
    assert peers["a"].router is not None
    assert a["registrations"][0]["observed"] == f"{peers['a'].router.public}:{a_port}"
    assert (
        b["registrations"][0]["observed"]
        == b["addresses"][0]
        == f"{peers['b'].address}:{b['addresses'][0].split(':')[1]}"
    )
    # c's UDP never leaves its router: its daemon runs, but seconds after a and b it is still not in
    assert netlab.wait_until(lambda: status(homes["c"]) is not None, 20)
    assert not netlab.wait_until(lambda: registered("c"), 2.0)
    c_registration = registration(homes["c"])
    assert c_registration is not None and c_registration["state"] != "registered"

    # a (behind eim) pipes to b (public): the handshake goes out, the replies come back in
    lab.spawn(peers["b"].ns, [*P2POS, "serve", "sink", "--home", str(homes["b"]), "--allow-any", "--", *HASH_STDIN])
    assert netlab.wait_until(lambda: bool((status(homes["b"]) or {}).get("services")), 20)
    data = os.urandom(300_000)
    (lab.tmp / "input").write_bytes(data)
    piped = lab.run(peers["a"].ns, ["sh", "-c", f'exec "$@" < {lab.tmp / "input"}', "pipe", *P2POS, "pipe",
                                    b["peer_id"], "sink", "--home", str(homes["a"])], timeout=60)  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.strip() == hashlib.sha256(data).hexdigest()
