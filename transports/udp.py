"""A trio UDP socket carrying the core's datagrams, in batches where Linux allows.

    transport = await UdpTransport.bind("127.0.0.1", 0)
    await transport.send_batch(endpoint_datagrams, peer)   # GSO: one call per run of equal sizes
    for data, addr in await transport.receive_batch():    # GRO: one call per coalesced flow
        endpoint.receive_datagram(data, addr, now)

Sending: ``send(data, addr)`` sends one datagram; ``send_batch(datagrams, addr)``
sends many to one address, grouping runs of equal-size datagrams (the last may be
shorter) into one ``sendmsg`` with a ``UDP_SEGMENT`` control message (GSO, see
``gso.py``).  Without GSO it makes one ``sendto`` per datagram.  A failed call loses
only its own datagrams (UDP may lose any): they are counted in ``send_errors``.

Receiving: ``receive()`` returns one datagram; ``receive_batch()`` returns everything
one ``recvmsg`` gave (with GRO, several datagrams of one flow cut apart by the kernel's
segment size), plus whatever further calls return without waiting (at most
``max_calls`` calls in all, so one busy socket cannot starve the other tasks).
``receive_runs()`` returns the same as ``(datagrams, address)`` runs, one per call.

At bind time the socket gets buffers sized for the bandwidth-delay product and is
told never to fragment (``socket_options.py``); ``max_udp_payload(addr)`` gives the
starting point of path MTU discovery.  Offload is detected at bind time and dropped
for good if the first GSO call is refused while plain sends work; set
``P2POS_UDP_OFFLOAD=0`` (or ``offload=False``) to force the plain path.

Counters for benchmarks: ``datagrams_sent / send_calls`` is datagrams per send
syscall, ``datagrams_received / receive_calls`` the same on receive.
"""

from __future__ import annotations

import collections
import errno
import ipaddress
import os
import socket as _socket
from collections.abc import Sequence
from typing import cast

import trio

from . import socket_options
from .gso import (
    GRO_ANCBUFSIZE,
    GSO_REFUSALS,
    enable_gro,
    enable_gso,
    gro_segment_size,
    plan_runs,
    segment_cmsg,
    split_segments,
)

MAX_DATAGRAM = 65535
#: The receive buffer: a GRO buffer holds up to 64 KiB of one flow.
_RECEIVE_SIZE = 65536
#: Errors a UDP socket reports for a previous send (ICMP unreachable and friends): not fatal.
_TRANSIENT = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EMSGSIZE}
#: ``receive_batch``'s default cap on receive calls per batch.
RECEIVE_BATCH_CALLS = 16
#: Set to 0 to force the plain path (one syscall per datagram) when ``bind`` is not told.
OFFLOAD_ENV = "P2POS_UDP_OFFLOAD"

Address = tuple[str, int]
Received = tuple[bytes, Address]
#: Datagrams from one address, in order: what one receive call gave.
ReceivedRun = tuple[list[bytes], Address]


#: Addresses ``_direct`` remembers as checked: a rendezvous node answers tens of thousands of peers.
DIRECT_ADDRESSES = 65536


class UdpTransport:
    """A bound UDP socket.  Use ``await UdpTransport.bind(host, port)``.

    The constructor takes a stdlib socket already bound and configured (``bind`` does
    that) and what ``bind`` found the kernel able to do.
    """

    def __init__(
        self,
        sock: _socket.socket,
        *,
        gso: bool = False,
        gro: bool = False,
        buffer_sizes: tuple[int, int] | None = None,
    ) -> None:
        self._raw = sock  # non-blocking once wrapped: ``receive_batch`` reads it without waiting
        #: Addresses checked fit for the raw socket (``_direct``).
        self._direct_addresses: dict[Address, None] = {}
        self._sock = trio.socket.from_stdlib_socket(sock)
        host, port = sock.getsockname()[:2]
        self.local_address: Address = (host, port)
        self.family = sock.family
        #: Whether ``send_batch`` uses GSO (may turn False once, see ``gso_refused``) and
        #: whether the socket receives GRO-coalesced buffers.
        self.gso = gso
        self.gro = gro
        #: The OSError that made ``send_batch`` drop GSO for good, if it did.
        self.gso_refused: OSError | None = None
        #: (send, receive) buffer sizes as the kernel reports them (Linux reports twice the request).
        self.send_buffer_size, self.receive_buffer_size = buffer_sizes or (
            sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_SNDBUF),
            sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF),
        )
        #: Whether oversized datagrams fail instead of fragmenting (``socket_options.forbid_fragmentation``).
        self.no_fragment = socket_options.fragmentation_forbidden(sock)
        #: Datagrams lost to failed sends (UDP may lose any), and the last reason.
        self.send_errors = 0
        self.last_send_error: OSError | None = None
        #: Send syscalls made (failed ones included) and datagrams the kernel accepted.
        self.send_calls = 0
        self.datagrams_sent = 0
        #: GSO runs that the kernel refused and that were re-sent one datagram per call.
        self.gso_fallbacks = 0
        #: Receive syscalls that returned data, and the datagrams they held.
        self.receive_calls = 0
        self.datagrams_received = 0
        #: Received buffers cut short by the receive buffer size (their tail is lost).
        self.receive_truncated = 0
        self._gso_worked = False
        self._pending: collections.deque[Received] = collections.deque()

    @classmethod
    async def bind(
        cls,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        offload: bool | None = None,
        buffer_size: int = socket_options.DEFAULT_BUFFER_SIZE,
    ) -> UdpTransport:
        """A transport on ``host:port`` (0 picks a free port); ``::1`` and other IPv6 hosts bind IPv6.

        An IPv6 socket is IPv6 only (``IPV6_V6ONLY``): a node keeps one socket per family, so
        ``0.0.0.0`` and ``::`` can both hold the same port.

        ``offload`` None means on unless the environment sets ``P2POS_UDP_OFFLOAD=0``.
        ``buffer_size`` is asked for both directions (see ``send_buffer_size``).
        """
        if offload is None:
            offload = os.environ.get(OFFLOAD_ENV, "1") != "0"
        family = _socket.AF_INET6 if ":" in host else _socket.AF_INET
        sock = _socket.socket(family, _socket.SOCK_DGRAM)
        try:
            if family == _socket.AF_INET6:
                sock.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY, 1)
            buffer_sizes = socket_options.size_buffers(sock, buffer_size)
            socket_options.forbid_fragmentation(sock)
            gso = offload and enable_gso(sock)
            gro = offload and enable_gro(sock)
            sock.bind((await _resolve(host, port, family), port))  # immediate for UDP
        except OSError:
            sock.close()
            raise
        return cls(sock, gso=gso, gro=gro, buffer_sizes=buffer_sizes)

    def check_address(self, addr: object) -> Address:
        """``addr`` as (ip, port) usable from this socket; ValueError with the reason if not."""
        if not (isinstance(addr, tuple) and len(addr) == 2):
            raise ValueError(f"an address is (ip, port), not {addr!r}")
        host, port = addr
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IP address") from None
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f"port {port!r} is not in 1..65535")
        if (ip.version == 6) != (self.family == _socket.AF_INET6):
            raise ValueError(f"{host} is IPv{ip.version} but this socket is {self.local_address[0]}")
        return (str(ip), port)

    def max_udp_payload(self, addr: Address) -> int:
        """The largest datagram that leaves towards ``addr`` unfragmented by the first hop.

        The MTU of the outgoing interface (``socket_options.path_mtu``) less the IP and
        UDP headers: 65507 on IPv4 loopback, 1252 on a 1280-byte link.  Farther links may
        be narrower: this is the ceiling to start path MTU discovery from, not its result.
        ValueError if ``addr`` is malformed, OSError if there is no route.
        """
        addr = self.check_address(addr)
        mtu = socket_options.path_mtu(self.family, addr, self.local_address[0])
        return socket_options.max_udp_payload(mtu, self.family)

    async def send(self, data: bytes, addr: Address) -> None:
        """Send one datagram.  A failure loses only this datagram (UDP may lose any): it is counted."""
        if self._send_now(data, addr):
            await trio.lowlevel.checkpoint()
        else:
            await self._send_waiting(data, addr)

    async def send_batch(self, datagrams: Sequence[bytes], addr: Address) -> None:
        """Send ``datagrams`` to ``addr`` in order, each as its own UDP datagram.

        With GSO, every run of equal-size datagrams (closed by at most one shorter one,
        at most 64 datagrams and 65000 bytes, ``gso.plan_runs``) is one ``sendmsg``;
        without, each datagram is one ``sendto``.  A failed call loses only the datagrams
        it carried, counted in ``send_errors``.  If the kernel refuses a GSO call
        (``gso.GSO_REFUSALS``), its run is re-sent one datagram per call; if that works
        and no GSO call has ever succeeded, GSO is off for good (``gso_refused``).

        Calls go straight to the socket while its buffer has room, and the batch yields
        to other tasks once (trio's socket methods would yield, and check the address,
        on every call); only a full buffer makes a call wait.
        """
        waited = False
        if not self.gso:
            for data in datagrams:
                if not self._send_now(data, addr):
                    await self._send_waiting(data, addr)
                    waited = True
        else:
            for run in plan_runs([len(data) for data in datagrams]):
                if run.count == 1:
                    if not self._send_now(datagrams[run.start], addr):
                        await self._send_waiting(datagrams[run.start], addr)
                        waited = True
                else:
                    segments = datagrams[run.start : run.stop]
                    done = self._segments_now(segments, run.segment, addr)
                    if done is not True:
                        if done is False:
                            await self._send_segments(segments, run.segment, addr)
                        else:
                            await self._after_refusal(segments, addr, done)
                        waited = True
        if not waited:
            await trio.lowlevel.checkpoint()

    def send_batch_now(self, datagrams: Sequence[bytes], addr: Address) -> int:
        """``send_batch`` without waiting: how many of ``datagrams`` went (or were lost and
        counted); the rest would have to wait for buffer space (or need trio's address path,
        or a GSO refusal to be handled): pass them to ``send_batch``."""
        done = 0
        if not self.gso:
            for data in datagrams:
                if not self._send_now(data, addr):
                    return done
                done += 1
            return done
        for run in plan_runs([len(data) for data in datagrams]):
            if run.count == 1:
                if not self._send_now(datagrams[run.start], addr):
                    return done
            elif self._segments_now(datagrams[run.start : run.stop], run.segment, addr) is not True:
                return done  # would block, or refused: ``send_batch`` makes the call again and handles it
            done = run.stop
        return done

    def _direct(self, addr: Address) -> bool:
        """True if ``addr`` may go to the socket as it is: an (ip, port) this socket reaches.

        Anything else takes trio's path, which resolves or refuses it.  Checked once per address.
        """
        if addr in self._direct_addresses:
            return True
        try:
            if self.check_address(addr) != addr:
                return False
        except ValueError:
            return False
        if len(self._direct_addresses) >= DIRECT_ADDRESSES:  # forget the oldest (dicts keep order)
            del self._direct_addresses[next(iter(self._direct_addresses))]
        self._direct_addresses[addr] = None
        return True

    def _send_now(self, data: bytes, addr: Address) -> bool:
        """One datagram, if the socket takes it without waiting; False: use ``_send_waiting``."""
        if not self._direct(addr):
            return False
        try:
            self._raw.sendto(data, addr)
        except BlockingIOError:
            return False
        except OSError as exc:
            self.send_calls += 1
            self._lost(1, exc)
            return True
        self.send_calls += 1
        self.datagrams_sent += 1
        return True

    async def _send_waiting(self, data: bytes, addr: Address) -> None:
        self.send_calls += 1
        try:
            await self._sock.sendto(data, addr)
        except OSError as exc:
            self._lost(1, exc)
        else:
            self.datagrams_sent += 1

    def _segments_now(self, run: Sequence[bytes], segment: int, addr: Address) -> bool | OSError:
        """One GSO call, if the socket takes it without waiting.  True: done (sent, or lost and
        counted); False: use ``_send_segments``; an error: GSO refused, use ``_after_refusal``."""
        if not self._direct(addr):
            return False
        try:
            self._raw.sendmsg(run, [segment_cmsg(segment)], 0, addr)
        except BlockingIOError:
            return False
        except OSError as exc:
            self.send_calls += 1
            if exc.errno in GSO_REFUSALS:
                return exc
            self._lost(len(run), exc)
            return True
        self.send_calls += 1
        self.datagrams_sent += len(run)
        self._gso_worked = True
        return True

    async def _send_segments(self, run: Sequence[bytes], segment: int, addr: Address) -> None:
        # The datagrams go as the iovec, so the kernel gathers them without a join here.
        self.send_calls += 1
        try:
            await self._sock.sendmsg(run, [segment_cmsg(segment)], 0, addr)
        except OSError as exc:
            if exc.errno not in GSO_REFUSALS:
                self._lost(len(run), exc)
            else:
                await self._after_refusal(run, addr, exc)
            return
        self.datagrams_sent += len(run)
        self._gso_worked = True

    async def _after_refusal(self, run: Sequence[bytes], addr: Address, exc: OSError) -> None:
        """A GSO call was refused: by GSO (no offload on this route, an old kernel) or by the
        datagrams themselves (a segment over the MTU: EINVAL).  Plain sends tell which."""
        self.gso_fallbacks += 1
        errors = self.send_errors
        for data in run:
            await self._send_waiting(data, addr)
        if self.send_errors == errors and not self._gso_worked:
            self.gso = False
            self.gso_refused = exc

    def _lost(self, count: int, exc: OSError) -> None:
        self.send_errors += count
        self.last_send_error = exc

    async def receive(self) -> Received:
        """The next datagram and its source address (from a GRO buffer already read, if any)."""
        if self._pending:
            await trio.lowlevel.checkpoint()
            return self._pending.popleft()
        batch = await self._receive_waiting()
        self._pending.extend(batch[1:])
        return batch[0]

    async def receive_batch(self, max_calls: int = RECEIVE_BATCH_CALLS) -> list[Received]:
        """The datagrams that are ready, in arrival order; waits only for the first.

        One receive call that may wait (with GRO its buffer may hold many datagrams of
        one flow), then up to ``max_calls - 1`` more that return at once while datagrams
        are queued.  Datagrams left over by ``receive`` come first.  Never empty.
        """
        return [(data, addr) for datagrams, addr in await self.receive_runs(max_calls) for data in datagrams]

    async def receive_runs(self, max_calls: int = RECEIVE_BATCH_CALLS) -> list[ReceivedRun]:
        """``receive_batch`` as runs: ``(datagrams, address)``, one per receive call (a GRO
        buffer's segments come from one address), so that a driver routes each run once."""
        if self._pending:
            await trio.lowlevel.checkpoint()
            runs = [([data], addr) for data, addr in self._pending]
            self._pending.clear()
        else:
            runs = [await self._receive_waiting_run()]
        for _ in range(max_calls - 1):
            try:
                if self.gro:
                    data, ancdata, flags, source = self._raw.recvmsg(_RECEIVE_SIZE, GRO_ANCBUFSIZE)
                else:
                    data, source = self._raw.recvfrom(_RECEIVE_SIZE)
                    ancdata, flags = [], 0
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in _TRANSIENT:
                    continue
                break  # a real error: the next waiting call raises it
            run = self._split(data, ancdata, flags, source)
            if run[0]:
                runs.append(run)
        return runs

    async def _receive_waiting(self) -> list[Received]:
        datagrams, addr = await self._receive_waiting_run()
        return [(data, addr) for data in datagrams]

    async def _receive_waiting_run(self) -> ReceivedRun:
        while True:
            try:
                if self.gro:
                    data, ancdata, flags, source = await self._sock.recvmsg(_RECEIVE_SIZE, GRO_ANCBUFSIZE)
                else:
                    data, source = await self._sock.recvfrom(_RECEIVE_SIZE)
                    ancdata, flags = [], 0
            except OSError as exc:
                if exc.errno in _TRANSIENT:
                    continue
                raise
            run = self._split(data, ancdata, flags, source)
            if run[0]:
                return run

    def _split(self, data: bytes, ancdata: list[tuple[int, int, bytes]], flags: int, source: object) -> ReceivedRun:
        """One received buffer as a run of datagrams (cut by the GRO segment size, if any)."""
        self.receive_calls += 1
        segment = gro_segment_size(ancdata)
        host, port = cast("tuple[str, int]", source)[:2]  # IPv6 adds flow info and scope
        addr: Address = (host, port)
        if flags & _socket.MSG_TRUNC:
            self.receive_truncated += 1
            if segment is None:
                return [], addr  # one datagram, cut short: drop it as if lost
            data = data[: len(data) - len(data) % segment]  # keep the whole segments
        datagrams = split_segments(data, segment)
        self.datagrams_received += len(datagrams)
        return datagrams, addr

    def close(self) -> None:
        self._sock.close()


async def _resolve(host: str, port: int, family: int) -> str:
    """``host`` as an IP literal: as given if it is one (or empty: any address), else looked up."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host:
            infos = await trio.socket.getaddrinfo(host, port, family, _socket.SOCK_DGRAM)
            return str(infos[0][4][0])
    await trio.lowlevel.checkpoint()
    return host
