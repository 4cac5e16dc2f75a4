"""Keep a port mapped on the default gateway: PCP, then NAT-PMP, then UPnP IGD (spec/portmap.md §2).

    async with open_port_mapping(gateway="10.1.0.1", internal_port=sock_port) as mapper:
        mapping = await mapper.wait_ready()     # a PortMapping, or None if no protocol worked
        if mapping is not None:
            print(mapping.external_address, mapping.external_port, mapping.lifetime)

The trio driver of p2pos_proto/nat/portmap_*.py.  One background task tries the protocols in
``PortMapConfig.order``; the first that grants a mapping keeps it renewed (at half the
lifetime, by the core); a mapping that is lost is asked for again from the first protocol;
when none works the mapper reports ``None`` and tries again after ``retry_after`` seconds.
``mapper.mapping`` is always the mapping in force (or None) and ``mapper.changes`` counts its
changes (``await mapper.wait_change(seen)``): later work sets keepalives from its lifetime.
Leaving the ``async with`` removes the mapping (lifetime 0 / DeletePortMapping, at most
``removal_timeout`` seconds).  Datagrams are accepted from the gateway only: the PCP/NAT-PMP
socket is connected to its port 5351, SSDP answers from other hosts are dropped (MAP-1.3).
The gateway is an input: adapters/portmap.py reads it from /proc/net/route.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
import socket as _socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from p2pos.proto.nat import portmap_natpmp, portmap_pcp
from p2pos.proto.nat.portmap_common import (
    SERVER_PORT,
    UDP,
    DatagramMapper,
    MapEvent,
    MappingFailed,
    MappingGranted,
    MappingLost,
    MappingRemoved,
    MapProtocol,
    PortMapError,
    PortMapping,
)
from p2pos.proto.nat.portmap_upnp import SSDP_GROUP, HttpExchange
from p2pos.proto.nat.portmap_upnp_client import UpnpClient

__all__ = ["PortMapConfig", "PortMapper", "open_port_mapping"]

_RECEIVE_SIZE = 2048


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PortMapConfig:
    """What the driver asks for and how long it waits (spec/portmap.md §8)."""

    order: tuple[MapProtocol, ...] = (MapProtocol.PCP, MapProtocol.NATPMP, MapProtocol.UPNP)
    lifetime: int = 7200  # PCP and NAT-PMP (RFC 6886 §3.3's recommendation)
    upnp_lifetime: int = 3600
    http_timeout: float = 5.0
    removal_timeout: float = 3.0
    retry_after: float = 600.0
    description: str = "p2pos"


@dataclasses.dataclass(slots=True)
class PortMapper:
    """What the background task knows: the mapping in force, the failures of the last round."""

    gateway: str
    internal_port: int
    transport: int
    config: PortMapConfig
    random: Callable[[int], bytes]
    mapping: PortMapping | None = None
    failures: list[MappingFailed] = dataclasses.field(default_factory=list)
    removed: MappingRemoved | None = None
    changes: int = 0  # bumped whenever ``mapping`` or ``ready`` changes
    ready: bool = False  # a first round ended: mapped, or every protocol failed
    _changed: trio.Event = dataclasses.field(default_factory=trio.Event)

    @property
    def lifetime(self) -> float | None:
        """The lifetime of the mapping in force, in seconds (math.inf: a permanent UPnP lease)."""
        return self.mapping.lifetime if self.mapping is not None else None

    async def wait_ready(self) -> PortMapping | None:
        """Until the first round ends: the mapping, or None when no protocol worked."""
        while not self.ready:
            await self.wait_change(self.changes)
        return self.mapping

    async def wait_change(self, seen: int) -> int:
        """Until ``changes`` differs from ``seen``; returns it."""
        while self.changes == seen:
            await self._changed.wait()
        return self.changes

    def _note(self, mapping: PortMapping | None, *, ready: bool = True) -> None:
        self.mapping = mapping
        self.ready = self.ready or ready
        self.changes += 1
        self._changed.set()
        self._changed = trio.Event()

    # -- the background task ----------------------------------------------------------------

    async def run(self) -> None:
        """Map, keep renewed, map again when lost; never returns (cancel it to stop)."""
        while True:
            self.failures = []
            lost = False
            for protocol in self.config.order:
                outcome = await self._attempt(protocol)
                if isinstance(outcome, MappingFailed):
                    self.failures.append(outcome)
                    continue
                lost = True  # it was granted, then lost: start again from the first protocol
                break
            if not lost:
                self._note(None)
                await trio.sleep(self.config.retry_after)

    async def _attempt(self, protocol: MapProtocol) -> MapEvent:
        if protocol is MapProtocol.UPNP:
            return await self._upnp()
        with trio.socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM) as sock:
            await sock.connect((self.gateway, SERVER_PORT))
            client: DatagramMapper
            if protocol is MapProtocol.PCP:
                client = portmap_pcp.PcpClient(
                    client_address=sock.getsockname()[0],
                    internal_port=self.internal_port,
                    random=self.random,
                    lifetime=self.config.lifetime,
                    transport=self.transport,
                )
            else:
                client = portmap_natpmp.NatPmpClient(
                    internal_port=self.internal_port, lifetime=self.config.lifetime, transport=self.transport
                )
            client.start(trio.current_time())
            try:
                return await self._serve_datagrams(client, sock)
            finally:
                if client.mapping is not None:
                    with trio.CancelScope(shield=True), trio.move_on_after(self.config.removal_timeout):
                        client.remove(trio.current_time())
                        await self._serve_datagrams(client, sock)

    async def _serve_datagrams(self, client: DatagramMapper, sock: trio.socket.SocketType) -> MapEvent:
        while True:
            for datagram in client.datagrams_to_send(trio.current_time()):
                try:
                    await sock.send(datagram)
                except OSError:
                    pass  # retransmission covers a lost send
            done = self._events(client.next_event)
            if done is not None:
                return done
            timer = client.get_timer()
            with trio.move_on_at(math.inf if timer is None else timer) as waited:
                try:
                    data = await sock.recv(_RECEIVE_SIZE)
                except OSError:  # ICMP port unreachable on the connected socket: wait for the next send
                    await trio.sleep_until(math.inf if timer is None else timer)
                else:
                    client.receive_datagram(data, trio.current_time())
            if waited.cancelled_caught:
                client.handle_timer(trio.current_time())

    def _events(self, next_event: Callable[[], MapEvent | None]) -> MapEvent | None:
        """Apply the client's events; the one that ends its run (failed, lost, removed) is returned."""
        while (event := next_event()) is not None:
            if isinstance(event, MappingGranted):
                self._note(event.mapping)
            elif isinstance(event, MappingLost):
                self._note(None, ready=False)
                return event
            elif isinstance(event, MappingRemoved):
                self.removed = event
                self._note(None, ready=self.ready)
                return event
            else:
                return event
        return None

    async def _upnp(self) -> MapEvent:
        with trio.socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM) as probe:
            await probe.connect((self.gateway, 1900))  # only to learn our address towards the gateway
            local = probe.getsockname()[0]
        client = UpnpClient(
            gateway=self.gateway,
            client_address=local,
            internal_port=self.internal_port,
            lifetime=self.config.upnp_lifetime,
            transport=self.transport,
            description=self.config.description,
        )
        with trio.socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM) as ssdp:
            await ssdp.bind((local, 0))
            ssdp.setsockopt(_socket.IPPROTO_IP, _socket.IP_MULTICAST_IF, _socket.inet_aton(local))
            client.start(trio.current_time())
            try:
                return await self._serve_upnp(client, ssdp)
            finally:
                if client.mapping is not None:
                    with trio.CancelScope(shield=True), trio.move_on_after(self.config.removal_timeout):
                        client.remove(trio.current_time())
                        await self._serve_upnp(client, ssdp)

    async def _serve_upnp(self, client: UpnpClient, ssdp: trio.socket.SocketType) -> MapEvent:
        while True:
            for datagram in client.datagrams_to_send(trio.current_time()):
                for where in (SSDP_GROUP, (self.gateway, SSDP_GROUP[1])):
                    try:
                        await ssdp.sendto(datagram, where)
                    except OSError:
                        pass
            done = self._events(client.next_event)
            if done is not None:
                return done
            exchange = client.http_to_send()
            if exchange is not None:
                try:
                    with trio.fail_after(self.config.http_timeout):
                        status, body = await _http(exchange)
                except (OSError, PortMapError, trio.TooSlowError) as exc:
                    client.http_failed(exchange, f"{type(exc).__name__}: {exc}", trio.current_time())
                else:
                    client.receive_http(exchange, status, body, trio.current_time())
                continue
            timer = client.get_timer()
            with trio.move_on_at(math.inf if timer is None else timer) as waited:
                data, source = await ssdp.recvfrom(_RECEIVE_SIZE)
                client.receive_datagram(data, source[0], trio.current_time())
            if waited.cancelled_caught:
                client.handle_timer(trio.current_time())


async def _http(exchange: HttpExchange) -> tuple[int, bytes]:
    """One HTTP exchange on a fresh TCP connection to the gateway."""
    stream = await trio.open_tcp_stream(exchange.url.host, exchange.url.port)
    async with stream:
        await stream.send_all(exchange.request)
        while True:
            data = await stream.receive_some(_RECEIVE_SIZE)
            if not data:
                return exchange.receive_eof_untrusted()
            done = exchange.receive_untrusted(data)
            if done is not None:
                return done


@asynccontextmanager
async def open_port_mapping(
    *,
    gateway: str,
    internal_port: int,
    transport: int = UDP,
    config: PortMapConfig | None = None,
    random: Callable[[int], bytes] = secrets.token_bytes,
) -> AsyncIterator[PortMapper]:
    """Map ``internal_port`` (of this host's address towards ``gateway``) while the block runs."""
    mapper = PortMapper(gateway, internal_port, transport, config or PortMapConfig(), random)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(mapper.run)
        try:
            yield mapper
        finally:
            nursery.cancel_scope.cancel()
