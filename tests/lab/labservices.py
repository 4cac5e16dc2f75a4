"""Services the namespace lab starts for a test: coturn in the internet, miniupnpd on a router, captures.

``lab.coturn(server)``, ``lab.miniupnpd(router, stun)`` and ``lab.capture(ns)`` (netlab.Lab) call these.
"""

from __future__ import annotations

import dataclasses
import secrets
import socket
import struct
import subprocess
import threading
import time
import uuid
from typing import TYPE_CHECKING, Protocol

import pytest
from labsys import inside, tool, wait_until

if TYPE_CHECKING:
    from netlab import Lab, Router, Server


@dataclasses.dataclass(slots=True)
class Capture:
    """Frames seen by :meth:`Lab.capture` (raw, link layer included), appended as they come."""

    frames: list[bytes] = dataclasses.field(default_factory=list)
    loopback: bool = False  # record loopback traffic too (off: the internet's own servers talk over it)
    sock: socket.socket | None = None
    dropped: int = 0  # frames the kernel dropped because the socket's queue was full (PACKET_STATISTICS)

    def contains(self, needle: bytes) -> bool:
        return any(needle in frame for frame in list(self.frames))

    def size(self) -> int:
        """Bytes of every frame recorded so far, link layer included."""
        return sum(len(frame) for frame in list(self.frames))

    def settled(self, at_least: int, timeout: float = 10.0) -> int:
        """Wait until ``at_least`` bytes are recorded and the capture has gone quiet (its reader has
        caught up with what the kernel queued); return the bytes recorded. Asserts the kernel dropped
        nothing, so a short count means the traffic was short, not the capture."""
        last = -1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = self.size()
            if now >= at_least and now == last:
                break
            last = now
            time.sleep(0.2)
        if self.sock is not None:  # reading the statistics resets them
            self.dropped += struct.unpack("II", self.sock.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, 8))[1]
        assert self.dropped == 0, f"the capture's socket dropped {self.dropped} frames"
        return self.size()


_ETH_P_ALL = 0x0003
_SO_RCVBUFFORCE = 33
_SOL_PACKET = 263
_PACKET_STATISTICS = 6  # struct tpacket_stats {tp_packets, tp_drops}
_MAX_FRAME = 256 * 1024


class StunServer(Protocol):
    """A STUN server that answers RFC 5780's CHANGE-REQUEST (coturn with an alternate address, or
    ``p2pos relay --alternate``): what miniupnpd's ``ext_perform_stun`` asks."""

    @property
    def address(self) -> tuple[str, int]: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Coturn:
    """A running coturn: where it listens, its realm and users, its process."""

    server: Server
    port: int
    realm: str
    users: dict[str, str]
    process: subprocess.Popen[str]

    @property
    def address(self) -> tuple[str, int]:
        return (self.server.address, self.port)


def start_coturn(
    lab: Lab,
    server: Server,
    *,
    port: int = 3478,
    users: dict[str, str] | None = None,
    realm: str = "p2pos.test",
    alternate: Server | None = None,
) -> Coturn:
    """coturn (``turnserver``) on ``server``'s address, UDP and TCP, relaying from that address too.

    Long-term credentials (``users``, default alice:secret); no TLS/DTLS; started and waited
    for with a STUN Binding from the internet namespace (not a sleep); killed with the lab.
    With ``alternate`` it listens there too (and on ``port + 1`` of both), which is what makes
    coturn answer RFC 5780's CHANGE-REQUEST from the other address and port.
    """
    users = users or {"alice": "secret"}
    name = f"turnserver-{server.name}"
    also = [f"--listening-ip={alternate.address}"] if alternate is not None else []
    argv = [tool("turnserver"), "-n", "--no-cli", f"--listening-ip={server.address}", *also,
            f"--relay-ip={server.address}", f"--listening-port={port}", "--min-port=49152",
            "--max-port=49407", f"--realm={realm}", "--fingerprint", "--lt-cred-mech",
            *(f"--user={user}:{password}" for user, password in users.items()), "--no-dtls", "--no-tls",
            "--no-multicast-peers", "--log-file=stdout", "--simple-log",
            f"--pidfile={lab.tmp / name}.pid", f"--userdb={lab.tmp / name}.sqlite"]  # fmt: skip
    proc = lab.spawn(server.ns, argv, name=name)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        probe = lab.socket(server.ns)  # a new source port each time: coturn spreads clients over threads
        probe.settimeout(0.1)
        txid = secrets.token_bytes(12)
        probe.sendto(struct.pack("!HHI12s", 0x0001, 0, 0x2112A442, txid), (server.address, port))
        try:
            answer = probe.recv(2048)
        except TimeoutError:
            continue
        finally:
            probe.close()
        if answer[:2] == b"\x01\x01" and answer[8:20] == txid:
            return Coturn(server, port, realm, dict(users), proc)
    sockets = subprocess.run(
        [tool("ip"), "netns", "exec", server.ns, "ss", "-uanp"], check=False, capture_output=True, text=True
    )
    pytest.fail(
        f"coturn did not answer a STUN Binding: {lab.log(proc)}{lab.log(proc, 'err')}{sockets.stdout}",
        pytrace=False,
    )


def start_capture(lab: Lab, ns: str) -> Capture:
    """Record every frame on every interface of namespace ``ns`` (both directions) until the lab ends.

    For checks such as "the relay path carries only ciphertext": ``capture.contains(b"secret")``.
    An AF_PACKET socket read on a thread, no tcpdump needed.
    """
    with inside(ns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
    made = Capture(sock=sock)
    lab.sockets.append(sock)
    # A daemon pair moves hundreds of MB/s through the lab; the default queue (~200 kB) overflows
    # while this thread waits for the GIL. Root may force a queue past rmem_max.
    sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, 64 * 1024 * 1024)
    sock.settimeout(0.05)

    def record(stopping: threading.Event) -> None:
        while not stopping.is_set():
            try:
                frame, where = sock.recvfrom(_MAX_FRAME)  # veth frames carry GSO segments up to 64 kB
            except TimeoutError:
                continue
            except OSError:
                return
            if where[0] != "lo" or made.loopback:
                made.frames.append(frame)

    lab.background(record, f"capture-{ns}")
    return made


@dataclasses.dataclass(frozen=True, slots=True)
class MiniUpnpd:
    """A running miniupnpd: its router, the LAN address and HTTP port it serves, its files."""

    router: Router
    process: subprocess.Popen[str]
    config: str
    leases: str
    http_port: int

    @property
    def gateway(self) -> str:
        return self.router.lan_address


#: What miniupnpd 2.3.1 logs once it serves, and what it logs when STUN made it refuse to map.
_MINIUPNPD_READY = "Listening for NAT-PMP/PCP traffic"
_MINIUPNPD_REFUSES = "Port forwarding is now disabled"
_MINIUPNPD_CHAINS = ("miniupnpd", "prerouting_miniupnpd", "postrouting_miniupnpd")


def start_miniupnpd(
    lab: Lab, router: Router, stun: StunServer, *, http_port: int = 5000, natpmp: bool = True
) -> MiniUpnpd:
    """miniupnpd 2.3.1 (Debian's) on an ``upnp`` router: UPnP IGD on the first LAN, NAT-PMP and PCP.

    The router's WAN address is in 198.18.0.0/15, which 2.3.1 calls reserved and will not map
    from (``ext_allow_private_ipv4`` came in 2.3.9); with ``ext_perform_stun`` it asks ``stun``
    instead and maps once STUN shows no NAT and no filter in front of it: four Binding requests,
    three with CHANGE-REQUEST, so ``stun`` must be a coturn started with ``alternate`` (RFC
    5780), and the answers from the other address reach the router through the ``miniupnpd``
    chain its input filter jumps to (it opens its STUN ports there itself).  It exits if that
    STUN server does not answer.  Its chains are flushed and its lease file deleted first
    (it restores old mappings at start).  Waited for by its log, not a sleep; killed with the lab.
    ``natpmp=False``: UPnP only (2.3.1 has one switch for NAT-PMP and PCP).
    """
    for chain in _MINIUPNPD_CHAINS:
        lab.command(tool("ip"), "netns", "exec", router.ns, tool("nft"), "flush", "chain", "inet", "p2lab", chain)
    leases = lab.tmp / f"miniupnpd-{router.name}.leases"
    leases.unlink(missing_ok=True)
    config = lab.tmp / f"miniupnpd-{router.name}.conf"
    host, port = stun.address
    config.write_text(
        "\n".join(
            [
                "ext_ifname=wan",
                "listening_ip=lan",
                f"http_port={http_port}",
                f"enable_natpmp={'yes' if natpmp else 'no'}",
                "enable_upnp=yes",
                "ipv6_disable=yes",
                "ext_perform_stun=yes",
                f"ext_stun_host={host}",
                f"ext_stun_port={port}",
                "upnp_table_name=p2lab",
                "upnp_nat_table_name=p2lab",
                f"lease_file={leases}",
                "secure_mode=yes",
                "system_uptime=no",
                f"uuid={uuid.uuid5(uuid.NAMESPACE_DNS, router.ns)}",
                "min_lifetime=2",  # short leases: the tests renew within seconds
                "max_lifetime=86400",
                "allow 1024-65535 10.0.0.0/8 1024-65535",
                "deny 0-65535 0.0.0.0/0 0-65535",
                "",
            ]
        )
    )
    argv = [tool("miniupnpd"), "-f", str(config), "-d", "-P", str(lab.tmp / f"miniupnpd-{router.name}.pid")]
    proc = lab.spawn(router.ns, argv, name=f"miniupnpd-{router.name}")

    def said(text: str) -> bool:
        return text in lab.log(proc) or text in lab.log(proc, "err")

    serving = _MINIUPNPD_READY if natpmp else "HTTP listening on port"
    ready = wait_until(lambda: said(serving) or said(_MINIUPNPD_REFUSES) or proc.poll() is not None, 15)
    if not ready or proc.poll() is not None or said(_MINIUPNPD_REFUSES) or not said(serving):
        log = (lab.log(proc) + lab.log(proc, "err"))[-3000:]
        pytest.fail(f"miniupnpd did not start mapping on {router.name}: {log}", pytrace=False)
    return MiniUpnpd(router, proc, str(config), str(leases), http_port)
