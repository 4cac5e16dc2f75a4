"""The network-namespace lab: an "internet", servers in it, and peers behind nftables routers.

    pytestmark = netlab.MARKS
    with netlab.lab() as lab:
        stun = lab.server("stun")                        # 198.18.0.1 in the internet namespace
        a = lab.peer("a", "eim", wan=Impairment(delay_ms=25))
        b = lab.peer("b", "random")
        sock = lab.socket(a.ns, socket.SOCK_DGRAM)       # a plain socket living in a's namespace
        sock.bind((a.address, 0))
        proc = lab.spawn(lab.internet, ["turnserver", ...])  # killed when the lab ends
        cut = lab.cut(a.router, b.router, "udp")          # nftables drop in the internet namespace
        cut.restore()

Topology.  One namespace ``<prefix>-inet`` routes between point-to-point links, one per router
(or per ``none`` peer): link ``i`` is 198.18.i.0/24, the internet's end ``r<i>`` is 198.18.i.1,
the router's ``wan`` (or the public peer's ``eth0``) is 198.18.i.2.  Servers are /32 addresses
198.18.0.k on the internet namespace's loopback: processes run there bind them.  Behind router
``i`` each peer has a LAN of its own: the first 10.i.0.0/24 (router ``lan`` 10.i.0.1, peer
``eth0`` 10.i.0.2), the k-th (``lab.peer(name, behind=router)``) 10.i.k.0/24 on ``lan<k>``.

IPv6 (2001:2::/48), alongside: servers 2001:2::k; site ``i`` owns 2001:2:0:i00::/56, its link
2001:2:0:i00::/64 (internet ::1, router or public peer ::2), its k-th LAN 2001:2:0:i(k+1)::/64
(router ::1, peer ::2; ``i`` and ``k+1`` as two hex digits each).  No NAT66: a peer behind a
router has a global address, behind the router's stateful filter.  IPv6 only flows once the
kernel reports the links' carrier (up to a second after they are made):
``lab.socket(ns, family=AF_INET6)`` waits for it, other IPv6 users call ``lab.wait_links()``.
No other addresses are used.

Router kinds (nftables table ``inet p2lab`` in the router's namespace, forwarding on there):

* ``none``: no router; the peer holds a public address and is reachable directly;
* ``eim``: ``masquerade`` (Linux keeps the source port: endpoint-independent mapping) and an
  inbound filter that drops new flows from the WAN, forwarded or to the router itself, so only
  replies to flows the inside opened pass (address- and port-dependent filtering); IPv6 gets
  the same filter (neighbour discovery is let in);
* ``random``: ``masquerade fully-random`` (a new random port per conntrack entry, that is per
  destination) with the same filter;
* ``udp-blocked``: drops all UDP both ways (IPv6 too); TCP is NATed (``masquerade``, IPv4) and
  filtered as above;
* ``upnp``: ``eim`` plus the chains miniupnpd 2.3.1 fills (it creates none of its own):
  ``miniupnpd`` (jumped to from the WAN side of the forward and input filters, so a mapping and
  its own STUN check get through), ``prerouting_miniupnpd`` (from a NAT prerouting chain, its
  DNATs) and ``postrouting_miniupnpd``; ``lab.miniupnpd(router, stun)`` starts the daemon
  (labservices.start_miniupnpd says how);
* ``v6fw``: the dual-stack home router: IPv4 as ``eim`` (masquerade and the inbound filter), IPv6
  routed to the peer's global address behind the same stateful filter (new inbound flows
  dropped).  Its rules are ``eim``'s (every router here routes IPv6 so); the kind says that the
  peer behind it uses its IPv6: ``labp2pos.daemon`` lets a ``v6fw`` peer's daemon bind its
  global IPv6 address too, where the other kinds' daemons listen on their IPv4 address only, so
  that the matrix measures IPv4 traversal for them and IPv6 for this one.

Conntrack timeouts (``Router.set_udp_timeouts``) are per network namespace, so per router.
Captures (``lab.capture(ns)``): every frame on a namespace's interfaces, for "only ciphertext" checks.
Cuts (``lab.cut(x, y, proto)``) are nftables set elements in the internet namespace that drop
``proto`` (udp, tcp, all) between two sites, both ways, on the forward, input and output hooks:
the public IPv4 addresses and the IPv6 prefixes (a router's /56, a server's /128).

Links: a link is a veth pair, or, when an :class:`Impairment` is asked for and the kernel has no
``sch_netem`` (as on the project's firecracker kernel), a pair of TUN devices joined by
``labwire.py``, a small userspace wire that delays, drops and rate-limits (same semantics: the
delay applies in each direction).  ``P2POS_LAB_WIRE=1`` forces the wire.  With netem, the
impairment is ``tc qdisc replace ... netem`` on both ends.

Cleanup: every process the lab started (its whole process group; each also gets SIGKILL if the
test process dies, ``setpriv --pdeathsig``), every socket it made, every namespace (and with them their
veths), its temp folder: all go when the ``with`` ends, however it ends, and the test fails if a
namespace is still listed.  Namespace names are ``p2lab-<pid>-<hex6>-<role>``; a lab first sweeps
namespaces of that prefix whose pid is gone (crashed runs), killing what still runs in them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Literal

import pytest
from labservices import Capture, Coturn, MiniUpnpd, StunServer, start_capture, start_coturn, start_miniupnpd
from labsys import (
    PREFIX,
    inside,
    kill_namespace_pids,
    launcher,
    listed_namespaces,
    stop,
    sweep,
    sysctl_get,
    sysctl_set,
    tool,
    wait_until,
)

__all__ = [
    "KINDS",
    "MARKS",
    "PREFIX",
    "Capture",
    "Coturn",
    "Cut",
    "Impairment",
    "Kind",
    "Lab",
    "Link",
    "MiniUpnpd",
    "Peer",
    "Router",
    "Server",
    "lab",
    "listed_namespaces",
    "sweep",
    "sysctl_get",
    "wait_until",
]

#: Root is needed; CI runs as root and never skips (same rule as tests/transports/netns_lab.py).
MARKS = [
    pytest.mark.netns,
    pytest.mark.skipif(
        os.geteuid() != 0 and "CI" not in os.environ,
        reason="the namespace lab needs root (CI runs as root and never skips this)",
    ),
]

KINDS = ("none", "eim", "random", "udp-blocked", "upnp", "cgn-eim", "cgn-random", "v6fw")
Kind = Literal["none", "eim", "random", "udp-blocked", "upnp", "cgn-eim", "cgn-random", "v6fw"]
Proto = Literal["udp", "tcp", "all"]
WIRE_SCRIPT = Path(__file__).with_name("labwire.py")


@dataclasses.dataclass(frozen=True, slots=True)
class Impairment:
    """What a link does to packets, in each direction (netem semantics)."""

    delay_ms: float = 0.0
    loss_pct: float = 0.0
    rate_kbit: int | None = None

    def netem_args(self) -> list[str]:
        args = ["delay", f"{self.delay_ms}ms", "loss", f"{self.loss_pct}%"]
        return [*args, "rate", f"{self.rate_kbit}kbit"] if self.rate_kbit else args

    def wire_command(self) -> str:
        return json.dumps(dataclasses.asdict(self))


@dataclasses.dataclass(slots=True)
class Link:
    """A point-to-point link: ``ends`` are (namespace, interface); ``wire`` is set for a TUN wire."""

    lab: Lab
    ends: tuple[tuple[str, str], tuple[str, str]]
    wire: subprocess.Popen[str] | None = None
    impairment: Impairment | None = None

    def impair(self, impairment: Impairment | None) -> None:
        """Change what the link does (``None``: a clean link) in both directions, at once."""
        wanted = impairment or Impairment()
        if self.wire is not None:
            assert self.wire.stdin is not None and self.wire.stdout is not None
            self.wire.stdin.write(wanted.wire_command() + "\n")
            self.wire.stdin.flush()
            if self.wire.stdout.readline().strip() != "ok":
                pytest.fail(f"the wire of {self.ends} did not take {wanted}", pytrace=False)
        elif self.lab.netem:
            for ns, dev in self.ends:
                tc = [tool("ip"), "netns", "exec", ns, tool("tc")]
                self.lab.command(*tc, "qdisc", "replace", "dev", dev, "root", "netem", *wanted.netem_args())
        else:
            pytest.fail(
                "this kernel has no sch_netem: ask for the impairment when the link is built "
                "(lab.peer(..., wan=Impairment())) so the lab makes it a userspace wire",
                pytrace=False,
            )
        self.impairment = impairment


@dataclasses.dataclass(frozen=True, slots=True)
class Server:
    """Addresses of the internet namespace for a server process (bind them, run there)."""

    name: str
    ns: str
    address: str
    address6: str

    @property
    def public(self) -> str:
        return self.address

    @property
    def site6(self) -> str:
        return f"{self.address6}/128"


@dataclasses.dataclass(slots=True)
class Router:
    name: str
    ns: str
    kind: Kind
    index: int  # i: its link is 198.18.i.0/24, its LANs 10.i.k.0/24
    public: str  # its WAN address
    lan_address: str  # its address on the first LAN
    public6: str  # its WAN address (IPv6: no NAT, the peer behind has a global address of its own)
    site6: str  # the /56 holding its WAN and LAN prefixes
    wan: Link
    lans: list[Link] = dataclasses.field(default_factory=list)  # one per peer behind it, in order

    def set_udp_timeouts(self, udp: int | None = None, stream: int | None = None) -> None:
        """Conntrack UDP timeouts of this router only (they are per network namespace)."""
        if udp is not None:
            sysctl_set(self.ns, "net.netfilter.nf_conntrack_udp_timeout", udp)
        if stream is not None:
            sysctl_set(self.ns, "net.netfilter.nf_conntrack_udp_timeout_stream", stream)


@dataclasses.dataclass(slots=True)
class Peer:
    name: str
    ns: str
    kind: Kind
    address: str  # its own address: 10.i.0.2 behind a router, 198.18.i.2 for `none`
    address6: str  # its own global IPv6 address (behind the router's firewall unless `none`)
    site6: str  # the /56 of its site
    router: Router | None
    wan: Link  # the link to the internet (the router's, or its own for `none`)

    @property
    def public(self) -> str:
        return self.router.public if self.router is not None else self.address


Host = Peer | Router | Server | str


def _sites(host: Host) -> tuple[str | None, str | None]:
    """(IPv4 public address, IPv6 prefix) of a host; a string is one address of either family."""
    if isinstance(host, str):
        return (None, host) if ":" in host else (host, None)
    return host.public, host.site6


@dataclasses.dataclass(slots=True)
class Cut:
    """Traffic of ``proto`` between two sites dropped in the internet; ``restore()`` undoes it.

    A site is a public IPv4 address and an IPv6 prefix (a router's /56, a server's /128).  Cuts
    are set elements: two cuts of the same pair and protocol are one, the first restore lifts it.
    """

    lab: Lab
    a: tuple[str | None, str | None]
    b: tuple[str | None, str | None]
    proto: Proto
    active: bool = False

    def elements(self, verb: str) -> str:
        commands = []
        for family, (a, b) in (("", (self.a[0], self.b[0])), ("6", (self.a[1], self.b[1]))):
            if a is not None and b is not None:
                commands.append(f"{verb} element inet p2lab cut{family}_{self.proto} {{ {a} . {b}, {b} . {a} }}")
        if not commands:
            raise ValueError(f"nothing to cut between {self.a} and {self.b}: no common address family")
        return "\n".join(commands) + "\n"

    def apply(self) -> None:
        if not self.active:
            self.lab.nft(self.lab.internet, self.elements("add"))
            self.active = True

    def restore(self) -> None:
        if self.active:
            self.lab.nft(self.lab.internet, self.elements("delete"))
            self.active = False


def _router_rules(kind: Kind) -> str:
    """nftables for a router of ``kind`` (chains named for what they do; no keyword names)."""
    nat = "masquerade fully-random" if kind == "random" else "masquerade"
    block = "        meta l4proto udp drop\n" if kind == "udp-blocked" else ""
    upnp = kind == "upnp"
    chains = _UPNP_CHAINS if upnp else ""
    to_upnp = '        iifname "wan" jump miniupnpd\n' if upnp else ""
    to_post = "        jump postrouting_miniupnpd\n" if upnp else ""
    return f"""table inet p2lab {{
{chains}    chain outward {{
        type nat hook postrouting priority srcnat; policy accept;
{to_post}        meta nfproto ipv4 oifname "wan" {nat}
    }}
    chain screening {{
        type filter hook forward priority filter; policy accept;
{block}{to_upnp}        ct state established,related accept
        iifname "wan" drop
    }}
    chain guarding {{
        type filter hook input priority filter; policy accept;
{to_upnp}        iifname "wan" ct state established,related accept
        iifname "wan" icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} accept
        iifname "wan" drop
    }}
}}
"""


#: The chains miniupnpd fills (its defaults in 2.3.1: upnp_forward_chain, upnp_nat_chain,
#: upnp_nat_postrouting_chain), in table ``inet p2lab`` (its upnp_table_name and upnp_nat_table_name).
_UPNP_CHAINS = """\
    chain miniupnpd {
    }
    chain prerouting_miniupnpd {
    }
    chain postrouting_miniupnpd {
    }
    chain arrival {
        type nat hook prerouting priority dstnat; policy accept;
        iifname "wan" jump prerouting_miniupnpd
    }
"""

_CUT_RULES = """\
        ip saddr . ip daddr @cut_all drop
        meta l4proto udp ip saddr . ip daddr @cut_udp drop
        meta l4proto tcp ip saddr . ip daddr @cut_tcp drop
        ip6 saddr . ip6 daddr @cut6_all drop
        meta l4proto udp ip6 saddr . ip6 daddr @cut6_udp drop
        meta l4proto tcp ip6 saddr . ip6 daddr @cut6_tcp drop
"""
_INTERNET_RULES = f"""table inet p2lab {{
    set cut_udp {{ type ipv4_addr . ipv4_addr; }}
    set cut_tcp {{ type ipv4_addr . ipv4_addr; }}
    set cut_all {{ type ipv4_addr . ipv4_addr; }}
    set cut6_udp {{ type ipv6_addr . ipv6_addr; flags interval; }}
    set cut6_tcp {{ type ipv6_addr . ipv6_addr; flags interval; }}
    set cut6_all {{ type ipv6_addr . ipv6_addr; flags interval; }}
    chain passing {{
        type filter hook forward priority filter; policy accept;
{_CUT_RULES}    }}
    chain arriving {{
        type filter hook input priority filter; policy accept;
{_CUT_RULES}    }}
    chain leaving {{
        type filter hook output priority filter; policy accept;
{_CUT_RULES}    }}
}}
"""


_AF_INET = socket.AF_INET  # (the method `Lab.socket` hides the module in the class body)

#: whether this kernel has sch_netem, probed once per test process
_NETEM: dict[str, bool] = {}


class Lab:
    """One topology; build it with :meth:`server` and :meth:`peer`, use it, then :meth:`close`."""

    def __init__(self) -> None:
        self.suffix = secrets.token_hex(3)
        self.stem = f"{PREFIX}-{os.getpid()}-{self.suffix}"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{self.stem}-"))
        self.created: list[str] = []
        self.processes: list[subprocess.Popen[str]] = []
        self.sockets: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.stopping = threading.Event()
        self.links = 0
        self.servers: list[Server] = []
        self.peers: dict[str, Peer] = {}
        self.labels: dict[int, str] = {}
        self.links_ready = True  # no link yet
        self.internet = f"{self.stem}-inet"
        self.netem = False

    def start(self) -> None:
        """Make the internet namespace (forwarding on, the cut sets loaded)."""
        self._namespace("inet")
        self._ip_batch(self.internet, ["link set lo up"])
        sysctl_set(self.internet, "net.ipv4.ip_forward", 1)
        sysctl_set(self.internet, "net.ipv6.conf.all.forwarding", 1)
        self.nft(self.internet, _INTERNET_RULES)
        self.netem = self._has_netem()

    # -- commands -------------------------------------------------------------------------------

    def command(self, *argv: str, stdin: str | None = None) -> str:
        """Run a command to completion; a failure fails the test with the command's own message."""
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False, timeout=30)
        if result.returncode != 0:
            pytest.fail(f"`{' '.join(argv)}` failed: {result.stderr.strip()}", pytrace=False)
        return result.stdout

    def _ip_batch(self, ns: str, lines: Sequence[str]) -> None:
        self.command(tool("ip"), "-n", ns, "-batch", "-", stdin="\n".join(lines) + "\n")

    def nft(self, ns: str, rules: str) -> None:
        """Load nftables text (``nft -f -``) in namespace ``ns``."""
        self.command(tool("ip"), "netns", "exec", ns, tool("nft"), "-f", "-", stdin=rules)

    def _namespace(self, role: str) -> str:
        name = f"{self.stem}-{role}"
        self.command(tool("ip"), "netns", "add", name)
        self.created.append(name)
        for scope in ("all", "default"):  # no duplicate address detection: addresses (link-local too) usable at once
            sysctl_set(name, f"net.ipv6.conf.{scope}.accept_dad", 0)
        return name

    def _has_netem(self) -> bool:
        if os.environ.get("P2POS_LAB_WIRE") == "1":
            return False
        if "netem" not in _NETEM:
            tc = [tool("ip"), "netns", "exec", self.internet, tool("tc"), "qdisc"]
            found = subprocess.run([*tc, "add", "dev", "lo", "root", "netem"], capture_output=True, check=False)
            _NETEM["netem"] = found.returncode == 0
            if _NETEM["netem"]:
                self.command(*tc, "del", "dev", "lo", "root")
        return _NETEM["netem"]

    # -- building -------------------------------------------------------------------------------

    def server(self, name: str) -> Server:
        """New internet addresses 198.18.0.k and 2001:2::k (on the internet namespace's loopback) for a server."""
        k = len(self.servers) + 1
        address, address6 = f"198.18.0.{k}", f"2001:2::{k:x}"
        self._ip_batch(self.internet, [f"addr add {address}/32 dev lo", f"addr add {address6}/128 dev lo nodad"])
        made = Server(name, self.internet, address, address6)
        self.servers.append(made)
        return made

    def _link(self, a: tuple[str, str], b: tuple[str, str], impairment: Impairment | None) -> Link:
        """A link between (namespace, interface) ends: veth, or a TUN wire when netem is missing."""
        self.links_ready = False
        if impairment is None or self.netem:
            self._ip_batch(a[0], [f"link add {a[1]} type veth peer name {b[1]} netns {b[0]}"])
            link = Link(self, (a, b))
            if impairment is not None:
                link.impair(impairment)
            return link
        wire = self.spawn(None, [sys.executable, str(WIRE_SCRIPT), a[0], a[1], b[0], b[1]], pipes=True)
        assert wire.stdout is not None
        if wire.stdout.readline().strip() != "ready":
            pytest.fail(f"the userspace wire did not start: {self._log_tail(wire)}", pytrace=False)
        link = Link(self, (a, b), wire=wire)
        link.impair(impairment)
        return link

    def peer(
        self,
        name: str,
        kind: Kind = "none",
        *,
        behind: Router | None = None,
        wan: Impairment | None = None,
        lan: Impairment | None = None,
    ) -> Peer:
        """A peer namespace behind a new router of ``kind`` (``none``: a public address of its own).

        ``behind=router``: one more peer behind an existing router, on a LAN of its own (10.i.k.0/24,
        router interface ``lan<k>``); peers behind one router share its public address and reach
        each other through it (no hairpinning: Linux masquerade does not reflect).  ``wan``
        impairs the router's link to the internet (the peer's own for ``none``), ``lan`` the
        peer's link to its router.
        """
        if behind is not None:
            if wan is not None:
                raise ValueError("the WAN link is the router's: impair it with the first peer, or router.wan.impair()")
            return self._attach(name, behind, lan)
        if kind not in KINDS:
            raise ValueError(f"router kind {kind!r}: one of {KINDS}")
        self.links += 1
        i = self.links
        if i > 250:
            raise ValueError("at most 250 routers and public peers per lab")
        inet_end = (self.internet, f"r{i}")
        wan6, site6 = f"2001:2:0:{i * 256:x}:", f"2001:2:0:{i * 256:x}::/56"
        inet_side = [f"addr add 198.18.{i}.1/24 dev r{i}", f"addr add {wan6}:1/64 dev r{i} nodad", f"link set r{i} up"]
        if kind == "none":
            peer_ns = self._namespace(name)
            link = self._link((peer_ns, "eth0"), inet_end, wan)
            self._ip_batch(self.internet, inet_side)
            self._ip_batch(
                peer_ns,
                [
                    "link set lo up",
                    f"addr add 198.18.{i}.2/24 dev eth0",
                    f"addr add {wan6}:2/64 dev eth0 nodad",
                    "link set eth0 up",
                    f"route add default via 198.18.{i}.1",
                    f"route add default via {wan6}:1",
                ],
            )
            made = Peer(name, peer_ns, kind, f"198.18.{i}.2", f"{wan6}:2", site6, None, link)
            self.peers[name] = made
            return made
        if kind in ("cgn-eim", "cgn-random"):
            return self._behind_carrier(name, kind, i, inet_end, inet_side, wan, lan)
        router_ns = self._namespace(f"{name}-router")
        sysctl_set(router_ns, "net.ipv4.ip_forward", 1)  # before its interfaces exist: IPv6 resets them on a change
        sysctl_set(router_ns, "net.ipv6.conf.all.forwarding", 1)
        wan_link = self._link((router_ns, "wan"), inet_end, wan)
        self._ip_batch(self.internet, [*inet_side, f"route add {site6} via {wan6}:2"])
        self._ip_batch(
            router_ns,
            [
                "link set lo up",
                f"addr add 198.18.{i}.2/24 dev wan",
                f"addr add {wan6}:2/64 dev wan nodad",
                "link set wan up",
                f"route add default via 198.18.{i}.1",
                f"route add default via {wan6}:1",
            ],
        )
        self.nft(router_ns, _router_rules(kind))
        router = Router(
            f"{name}-router", router_ns, kind, i, f"198.18.{i}.2", f"10.{i}.0.1", f"{wan6}:2", site6, wan_link
        )
        return self._attach(name, router, lan)

    def _behind_carrier(
        self,
        name: str,
        kind: Kind,
        i: int,
        inet_end: tuple[str, str],
        inet_side: list[str],
        wan: Impairment | None,
        lan: Impairment | None,
    ) -> Peer:
        """A home router (``eim``) behind a carrier-grade NAT (RFC 6598): the carrier router holds
        198.18.i.2 on the internet and 100.64.i.1/24 towards the home router's WAN, 100.64.i.2; the
        carrier maps endpoint-independently (``cgn-eim``) or at random per destination
        (``cgn-random``), both with the inbound filter.  IPv4 only: the carrier routes no IPv6."""
        carrier_kind: Kind = "eim" if kind == "cgn-eim" else "random"
        carrier_ns = self._namespace(f"{name}-cgn")
        sysctl_set(carrier_ns, "net.ipv4.ip_forward", 1)
        self._link((carrier_ns, "wan"), inet_end, wan)
        self._ip_batch(self.internet, inet_side)
        self._ip_batch(
            carrier_ns,
            [
                "link set lo up",
                f"addr add 198.18.{i}.2/24 dev wan",
                "link set wan up",
                f"route add default via 198.18.{i}.1",
            ],
        )
        self.nft(carrier_ns, _router_rules(carrier_kind))
        router_ns = self._namespace(f"{name}-router")
        sysctl_set(router_ns, "net.ipv4.ip_forward", 1)
        sysctl_set(router_ns, "net.ipv6.conf.all.forwarding", 1)
        home_wan = self._link((router_ns, "wan"), (carrier_ns, "lan"), None)
        self._ip_batch(carrier_ns, [f"addr add 100.64.{i}.1/24 dev lan", "link set lan up"])
        self._ip_batch(
            router_ns,
            [
                "link set lo up",
                f"addr add 100.64.{i}.2/24 dev wan",
                "link set wan up",
                f"route add default via 100.64.{i}.1",
            ],
        )
        self.nft(router_ns, _router_rules("eim"))
        wan6, site6 = f"2001:2:0:{i * 256:x}:", f"2001:2:0:{i * 256:x}::/56"
        router = Router(
            f"{name}-router", router_ns, kind, i, f"198.18.{i}.2", f"10.{i}.0.1", f"{wan6}:2", site6, home_wan
        )
        return self._attach(name, router, lan)

    def _attach(self, name: str, router: Router, impairment: Impairment | None) -> Peer:
        """A peer on the router's next LAN: 10.i.k.0/24 and 2001:2:0:i(k+1)::/64, router interface lan<k>."""
        i, k = router.index, len(router.lans)
        if k > 250:
            raise ValueError("at most 251 peers behind one router")
        dev, lan6 = ("lan" if k == 0 else f"lan{k}"), f"2001:2:0:{i * 256 + 1 + k:x}:"
        peer_ns = self._namespace(name)
        link = self._link((router.ns, dev), (peer_ns, "eth0"), impairment)
        router.lans.append(link)
        self._ip_batch(
            router.ns,
            [f"addr add 10.{i}.{k}.1/24 dev {dev}", f"addr add {lan6}:1/64 dev {dev} nodad", f"link set {dev} up"],
        )
        self._ip_batch(
            peer_ns,
            [
                "link set lo up",
                f"addr add 10.{i}.{k}.2/24 dev eth0",
                f"addr add {lan6}:2/64 dev eth0 nodad",
                "link set eth0 up",
                f"route add default via 10.{i}.{k}.1",
                f"route add default via {lan6}:1",
            ],
        )
        made = Peer(name, peer_ns, router.kind, f"10.{i}.{k}.2", f"{lan6}:2", router.site6, router, router.wan)
        self.peers[name] = made
        return made

    # -- cutting paths --------------------------------------------------------------------------

    def cut(self, a: Host, b: Host, proto: Proto = "udp") -> Cut:
        """Drop ``proto`` between two hosts' public addresses (both ways) in the internet namespace."""
        made = Cut(self, _sites(a), _sites(b), proto)
        made.apply()
        return made

    # -- running things -------------------------------------------------------------------------

    def wait_links(self, timeout: float = 5.0) -> None:
        """Until every lab interface has its carrier (IPv6 sends nothing on a link before).

        The kernel reports a veth's carrier up to a second late (link events are batched), and
        only then does IPv6 use the link; IPv4 does not wait.  ``socket(..., AF_INET6)`` calls
        this; call it before starting anything else that uses IPv6.
        """
        if self.links_ready:
            return

        def ready() -> bool:
            for ns in self.created:
                out = self.command(tool("ip"), "-n", ns, "-o", "link")
                if "NO-CARRIER" in out or "state DOWN" in out or "LOWERLAYERDOWN" in out:
                    return False
            return True

        if not wait_until(ready, timeout, step=0.05):
            pytest.fail(f"lab links still without carrier after {timeout} s", pytrace=False)
        self.links_ready = True

    def socket(self, ns: str, kind: int = socket.SOCK_DGRAM, family: int = socket.AF_INET) -> socket.socket:
        """A plain socket in namespace ``ns``, closed when the lab ends (IPv6: once the links are up)."""
        if family == socket.AF_INET6:
            self.wait_links()
        with inside(ns):
            made = socket.socket(family, kind)
        self.sockets.append(made)
        return made

    def spawn(
        self, ns: str | None, argv: Sequence[str], *, pipes: bool = False, name: str = ""
    ) -> subprocess.Popen[str]:
        """Start ``argv`` in namespace ``ns`` (``ip netns exec``; ``None``: here) in its own process group.

        Its stdout and stderr go to ``<tmp>/<name>.out|.err`` unless ``pipes`` (then stdin and
        stdout are text pipes, stderr still a file).  The lab kills the group when it ends.
        """
        label = name or f"{Path(argv[0]).name}-{len(self.processes)}"
        full = [*launcher(), *([tool("ip"), "netns", "exec", ns] if ns is not None else []), *argv]
        err: IO[str] = open(self.tmp / f"{label}.err", "w")  # noqa: SIM115 (kept by the child)
        out: IO[str] | int = subprocess.PIPE if pipes else open(self.tmp / f"{label}.out", "w")  # noqa: SIM115
        try:
            stdin = subprocess.PIPE if pipes else subprocess.DEVNULL
            proc = subprocess.Popen(full, stdin=stdin, stdout=out, stderr=err, text=True, start_new_session=True)
        finally:
            err.close()
            if not isinstance(out, int):
                out.close()
        self.labels[proc.pid] = label
        self.processes.append(proc)
        return proc

    def _log_tail(self, proc: subprocess.Popen[str]) -> str:
        path = self.tmp / f"{self.labels.get(proc.pid)}.err"
        return path.read_text()[-2000:] if path.exists() else ""

    def log(self, proc: subprocess.Popen[str], stream: str = "out") -> str:
        """What a spawned process wrote so far to its stdout (``out``) or stderr (``err``)."""
        path = self.tmp / f"{self.labels.get(proc.pid)}.{stream}"
        return path.read_text() if path.exists() else ""

    def run(self, ns: str, argv: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in namespace ``ns`` to completion (killed on timeout); never raises on its exit status."""
        full = [*launcher(), tool("ip"), "netns", "exec", ns, *argv]
        pipe = subprocess.PIPE
        proc = subprocess.Popen(full, stdout=pipe, stderr=pipe, text=True, start_new_session=True)
        self.processes.append(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop(proc)
            out, err = proc.communicate()
        return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)

    def background(self, target: Callable[[threading.Event], None], name: str) -> threading.Thread:
        """Run ``target(stopping_event)`` on a daemon thread that the lab joins when it ends."""
        thread = threading.Thread(target=target, args=(self.stopping,), name=name, daemon=True)
        self.threads.append(thread)
        thread.start()
        return thread

    # -- observing ------------------------------------------------------------------------------

    def reflector(self, server: Server, port: int = 3479, family: int = _AF_INET) -> tuple[str, int]:
        """A UDP service on ``server`` answering every datagram with ``b"<ip> <port>"`` of its source.

        The way to see a mapping without conntrack: what the internet saw of an inside socket.
        ``family=AF_INET6``: on the server's IPv6 address.
        """
        address = server.address6 if family == socket.AF_INET6 else server.address
        sock = self.socket(server.ns, family=family)
        sock.bind((address, port))
        sock.settimeout(0.05)

        def serve(stopping: threading.Event) -> None:
            while not stopping.is_set():
                try:
                    _, source = sock.recvfrom(2048)
                    sock.sendto(f"{source[0]} {source[1]}".encode(), source[:2])
                except TimeoutError:
                    continue
                except OSError:
                    return

        self.background(serve, f"reflector-{server.name}-{family}")
        return (address, port)

    def coturn(
        self,
        server: Server,
        *,
        port: int = 3478,
        users: dict[str, str] | None = None,
        realm: str = "p2pos.test",
        alternate: Server | None = None,
    ) -> Coturn:
        """coturn on ``server`` (UDP and TCP), started and waited for; labservices.start_coturn says how.

        ``alternate``: a second address, which turns on coturn's RFC 5780 answers (miniupnpd needs them).
        """
        return start_coturn(self, server, port=port, users=users, realm=realm, alternate=alternate)

    def miniupnpd(self, router: Router, stun: StunServer, *, natpmp: bool = True) -> MiniUpnpd:
        """miniupnpd (UPnP IGD, NAT-PMP, PCP) on an ``upnp`` router, its public address learnt from ``stun``."""
        if router.kind != "upnp":
            raise ValueError(f"miniupnpd runs on an 'upnp' router, not {router.kind!r}")
        return start_miniupnpd(self, router, stun, natpmp=natpmp)

    def capture(self, ns: str) -> Capture:
        """Every frame on every interface of namespace ``ns``, both directions, until the lab ends."""
        return start_capture(self, ns)

    def namespaces(self) -> list[str]:
        return list(self.created)

    # -- ending ---------------------------------------------------------------------------------

    def close(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=5)
        for sock in self.sockets:
            sock.close()
        for proc in self.processes:
            stop(proc)
        for ns in self.created:  # anything started in a namespace by other means
            kill_namespace_pids(ns)
        for ns in reversed(self.created):  # deleting a namespace deletes its veth ends
            subprocess.run([tool("ip"), "netns", "del", ns], capture_output=True, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)
        left = listed_namespaces() & set(self.created)
        if left:
            pytest.fail(f"namespaces left behind: {sorted(left)}", pytrace=False)


@contextlib.contextmanager
def lab() -> Iterator[Lab]:
    """A lab that is removed when the block ends, however it ends; sweeps crashed runs first."""
    sweep()
    made = Lab()
    try:
        made.start()
        yield made
    finally:
        made.close()
