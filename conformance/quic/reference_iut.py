"""The QUIC control (spec/quic.md §7) for the reference carrier, ``transports/quic.py``.

    python -m p2pos.conformance.quic.reference_iut [--bug NAME]

Listens on 127.0.0.1 (a free port) with a fresh identity, prints ``ready``, then reports each
accepted or dialed carrier, each record and each end as one JSON line, and takes ``dial``,
``send``, ``message``, ``close`` and ``quit`` lines on stdin.  Every record is also handed to
one p2pos ``Endpoint`` (the address ``quic:CONN`` names the carrier), whose output goes back
on that carrier: its sessions' handshakes and messages are the ``session`` and ``message``
events (spec/quic.md QUIC-5.1).  A second socket (``shared_port``, shared_iut.py) carries that
endpoint's sessions and QUIC at once (spec/quic.md §5.1), with ``shared_dial``, ``introduced``
and ``drops``.  ``--bug`` makes a deliberately broken IUT
for the suite's own tests (each must fail the cases that check that rule):

* ``peer-id``: the dialer accepts a valid binding by any identity (breaks QUIC-3.2.4);
* ``proof-key``: the listener accepts a dialer's proof over any TLS key (breaks QUIC-3.4.1);
* ``streams``: data on other streams is ignored instead of closing (breaks QUIC-2.2a);
* ``no-endpoint``: records are reported but not handed to the endpoint (breaks QUIC-5.1);
* ``shared-turn-range``: the shared socket hands QUIC only 80-127 and 192-255, not the 64-79 of
  ``turn-channel`` (breaks QUIC-5.1.1);
* ``shared-dial-own-socket``: ``shared_dial`` dials from a socket of its own (breaks QUIC-5.1.2);
* ``punch-elsewhere``: ``introduced`` sends the punch from the other socket (breaks QUIC-5.1.4).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import logging
import os
import sys
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager

import trio
from cryptography import x509

from p2pos.adapters.carriers.quic import SHARED_PROTOCOLS
from p2pos.proto import Endpoint, HandshakeCompleted, LocalKeys, MessageReceived
from p2pos.proto.errors import ErrorCode, ProtocolError
from p2pos.proto.events import ForeignDatagramReceived
from p2pos.proto.identity.identity import Identity, SignedRecord
from p2pos.proto.identity.peer_id import PeerId
from p2pos.transports import quic, quic_shared, quic_tls

from .shared_iut import SharedSocket, open_shared

BUGS = (
    "peer-id",
    "proof-key",
    "streams",
    "no-endpoint",
    "shared-turn-range",
    "shared-dial-own-socket",
    "punch-elsewhere",
)


def emit(**event: object) -> None:
    print(json.dumps(event), flush=True)


def _code(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    return code.name if isinstance(code, ErrorCode) else "INTERNAL_ERROR"


def install_bug(name: str) -> None:
    """Break the carrier on purpose (see the module's docstring)."""
    if name == "peer-id":
        check = quic_tls.check_listener_certificate

        def any_signer(certificate: x509.Certificate, chain_length: int, expected: PeerId) -> PeerId:
            try:
                return check(certificate, chain_length, expected)
            except quic_tls.PeerMismatch as exc:
                return exc.got

        quic_tls.check_listener_certificate = any_signer
    elif name == "proof-key":

        def any_key(proof: bytes, own_spki: bytes) -> PeerId:
            try:
                return SignedRecord.decode_untrusted(proof, domain=quic_tls.DOMAIN_QUIC_TLS_KEY).signer
            except ProtocolError as exc:
                raise quic_tls.BadCertificate(str(exc)) from None

        quic_tls.check_dialer_proof = any_key
    elif name == "streams":
        handle = quic._QuicSocket._stream_data

        def one_stream(self: quic._QuicSocket, conn: quic._Conn, sid: int, data: bytes, end: bool) -> None:
            if sid == conn.stream_id:
                handle(self, conn, sid, data, end)

        quic._QuicSocket._stream_data = one_stream  # type: ignore[method-assign]


class Adapter:
    def __init__(
        self, identity: Identity, handshake_timeout: float, *, endpoint: bool = True, bug: str | None = None
    ) -> None:
        self.identity = identity
        self.bug = bug
        self.handshake_timeout = handshake_timeout
        self.carriers: dict[int, quic.QuicCarrier] = {}
        self.ids = itertools.count(1)
        self.endpoint = Endpoint(LocalKeys.generate(identity))
        self.use_endpoint = endpoint
        #: The carrier of each session of the endpoint (the one its INIT arrived on), or the UDP
        #: address of a session over the shared socket.
        self.session_conn: dict[int, int | tuple[str, int]] = {}
        #: The shared socket (spec/quic.md §5.1) and the standalone listener, once open.
        self.shared: SharedSocket | None = None
        self.listener: quic.QuicListener | None = None

    async def serve(self, carrier: quic.QuicCarrier, conn: int) -> None:
        """Report the carrier's records (and hand them to the endpoint), then its end."""
        try:
            while True:
                record = await carrier.receive_record()
                emit(event="record", conn=conn, data=record.hex())
                if not self.use_endpoint:
                    continue
                self.endpoint.receive_data(record, f"quic:{conn}", trio.current_time())
                for session in self.endpoint.sessions():
                    self.session_conn.setdefault(session.local_index, conn)
                await self.flush()
        except quic.QuicError as exc:
            emit(event="closed", conn=conn, code=_code(exc))

    async def flush(self) -> None:
        """Send the endpoint's datagrams on their carriers; report its sessions' events."""
        endpoint = self.endpoint
        for datagrams, address, _ in endpoint.data_to_send(trio.current_time()):
            if isinstance(address, tuple) and self.shared is not None:
                for datagram in datagrams:
                    self.shared.send(datagram, address)
                continue
            carrier = self.carriers.get(int(str(address).removeprefix("quic:")))
            if carrier is not None and not carrier.closed:
                await carrier.send_records(datagrams)
        while (event := endpoint.next_event()) is not None:
            match event:
                case HandshakeCompleted(session_id=sid, peer_id=peer):
                    emit(event="session", peer_id=str(peer), **self._on(sid))
                case MessageReceived(session_id=sid, data=data):
                    emit(event="message", data=data.hex(), **self._on(sid))
                case ForeignDatagramReceived() if self.shared is not None:
                    self.shared.foreign(event)
                case _:
                    pass

    def _on(self, sid: int) -> dict[str, object]:
        """What a session event says of where the session runs: its carrier, or its UDP port (shared socket)."""
        on = self.session_conn.get(sid)
        return {"conn": None, "port": on[1]} if isinstance(on, tuple) else {"conn": on}

    async def after_udp(self) -> None:
        """After a datagram of the shared socket: note its new sessions' addresses, then ``flush``."""
        for session in self.endpoint.sessions():
            address = self.endpoint.address_of(session.local_index)
            if session.local_index not in self.session_conn and isinstance(address, tuple):
                self.session_conn[session.local_index] = (str(address[0]), int(address[1]))
        await self.flush()

    async def timers(self) -> None:
        while True:
            timer = self.endpoint.get_timer()
            await trio.sleep_until(
                min(timer, trio.current_time() + 0.1) if timer is not None else trio.current_time() + 0.1
            )
            if timer is not None and trio.current_time() >= timer:
                self.endpoint.handle_timer(trio.current_time())
            await self.flush()

    async def message(self, conn: int, data: bytes) -> None:
        """Send ``data`` on the session that runs over carrier ``conn``."""
        for sid, on in self.session_conn.items():
            session = self.endpoint.session(sid)
            if on == conn and session is not None:
                session.send(data, trio.current_time())
                self.endpoint.updated(sid)
                await self.flush()
                return
        emit(event="error", conn=conn, reason="no session on this carrier")

    async def accept_loop(self, listener: quic.QuicListener, nursery: trio.Nursery) -> None:
        while True:
            carrier = await listener.accept()
            conn = next(self.ids)
            self.carriers[conn] = carrier
            emit(event="accepted", conn=conn, peer_id=str(carrier.peer_id), port=carrier.remote_address[1])
            nursery.start_soon(self.serve, carrier, conn)

    def _dialing(
        self, host: str, port: int, expected: PeerId, shared: bool
    ) -> AbstractAsyncContextManager[quic.QuicCarrier]:
        """A dial from the standalone socket, or (``shared``) from the shared one (QUIC-5.1.2)."""
        if shared and self.shared is not None and self.shared.quic is not None and self.bug != "shared-dial-own-socket":
            return self.shared.quic.dial(host, port, expected_peer_id=expected)
        return quic.dial(
            host, port, expected_peer_id=expected, identity=self.identity, handshake_timeout=self.handshake_timeout
        )

    def punch(self, host: str, port: int) -> None:
        """``introduced``: one punch from the shared socket to the peer's address (QUIC-5.1.4)."""
        if self.shared is None or self.shared.quic is None:
            emit(event="error", reason="no shared socket")
        elif self.bug == "punch-elsewhere" and self.listener is not None:
            punch = quic_shared.PUNCH_FIRST_BYTE + os.urandom(quic_shared.PUNCH_SIZE - 1)
            self.listener._driver._sendto(punch, (host, port))
        else:
            self.shared.quic.punch(host, port)

    async def dial(self, tag: str, host: str, port: int, peer: str, *, shared: bool = False) -> None:
        try:
            expected = PeerId.parse(peer)
            async with self._dialing(host, port, expected, shared) as carrier:
                conn = next(self.ids)
                self.carriers[conn] = carrier
                emit(event="dialed", dial=tag, conn=conn, peer_id=str(carrier.peer_id))
                await self.serve(carrier, conn)
        except (quic.QuicError, ProtocolError) as exc:
            emit(event="dial_failed", dial=tag, code=_code(exc), reason=str(exc)[:200])
        except OSError as exc:
            emit(event="dial_failed", dial=tag, code="INTERNAL_ERROR", reason=str(exc)[:200])

    async def command(self, line: str, nursery: trio.Nursery) -> bool:
        words = line.split()
        match words:
            case ["dial", tag, host, port, peer] if port.isdigit():
                nursery.start_soon(self.dial, tag, host, int(port), peer)
            case ["shared_dial", tag, host, port, peer] if port.isdigit():
                nursery.start_soon(functools.partial(self.dial, tag, host, int(port), peer, shared=True))
            case ["introduced", host, port] if port.isdigit():
                self.punch(host, int(port))
            case ["drops"] if self.shared is not None and self.shared.quic is not None:
                emit(event="drops", quic=sum(self.shared.quic.drops.values()))
            case ["send", conn, data] if conn.isdigit() and int(conn) in self.carriers:
                try:
                    await self.carriers[int(conn)].send_record(bytes.fromhex(data))
                except (quic.QuicError, ProtocolError, ValueError) as exc:
                    emit(event="error", conn=int(conn), reason=str(exc)[:200])
            case ["message", conn, data] if conn.isdigit():
                try:
                    await self.message(int(conn), bytes.fromhex(data))
                except (quic.QuicError, ProtocolError, ValueError) as exc:
                    emit(event="error", conn=int(conn), reason=str(exc)[:200])
            case ["close", conn] if conn.isdigit() and int(conn) in self.carriers:
                nursery.start_soon(self.carriers[int(conn)].aclose)
            case ["quit"]:
                return False
            case _:
                emit(event="error", reason=f"bad command: {line[:80]}")
        return True


async def main_async(bug: str | None) -> None:
    logging.getLogger("quic").setLevel(logging.CRITICAL)  # refused peers are the suite's point, not news
    if bug is not None:
        install_bug(bug)
    timeout = float(os.environ.get("P2POS_QUIC_HANDSHAKE_TIMEOUT", "10"))
    identity = Identity.generate()
    adapter = Adapter(identity, timeout, endpoint=bug != "no-endpoint", bug=bug)
    protocols = ("quic",) if bug == "shared-turn-range" else SHARED_PROTOCOLS
    async with (
        quic.listen("127.0.0.1", 0, identity, handshake_timeout=timeout) as listener,
        open_shared(adapter.endpoint, identity, timeout, protocols=protocols) as shared,
    ):
        adapter.listener, adapter.shared = listener, shared
        emit(event="ready", port=listener.port, peer_id=str(identity.peer_id), shared_port=shared.port)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(adapter.accept_loop, listener, nursery)
            if shared.quic is not None:
                nursery.start_soon(adapter.accept_loop, shared.quic, nursery)
            nursery.start_soon(shared.receive_loop, adapter.after_udp)
            nursery.start_soon(adapter.timers)
            stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
            buffer = b""
            running = True
            while running:
                chunk = await stdin.receive_some(65536)
                if not chunk:
                    break
                buffer += chunk
                while running and b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    running = await adapter.command(line.decode(errors="replace").strip(), nursery)
            nursery.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m p2pos.conformance.quic.reference_iut")
    parser.add_argument("--bug", choices=BUGS, help="break the carrier on purpose (for the suite's own tests)")
    args = parser.parse_args(argv)
    trio.run(main_async, args.bug)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
