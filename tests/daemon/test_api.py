"""The app API of running daemons (spec/appapi.md), asked directly: the Python client, raw HTTP on
both sockets, and WebSocket message channels between two daemons (daemon_lab.py)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import trio
import wsproto.events as wse
from daemon_lab import Daemon, Lab, Relay
from wsproto import ConnectionType, WSConnection

from p2pos.adapters.client import Client, ClientError

# -- raw HTTP and WebSocket over the daemon's sockets ----------------------------------------


async def _open(daemon: Daemon, tcp: bool) -> trio.abc.Stream:
    if tcp:
        return await trio.open_tcp_stream("127.0.0.1", daemon.api_port)
    return await trio.open_unix_socket(str(daemon.socket))


async def raw(daemon: Daemon, head: list[str], *, tcp: bool = False, body: bytes = b"") -> tuple[int, Any]:
    """Send a request (``head``: the request line then header lines) with ``Connection: close``;
    (status, JSON body) of the answer."""
    lines = [*head, "Connection: close"] + ([f"Content-Length: {len(body)}"] if body else [])
    stream = await _open(daemon, tcp)
    async with stream:
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        answer = bytearray()
        with trio.fail_after(20):
            while chunk := await stream.receive_some(65536):
                answer += chunk
    head_bytes, _, payload = bytes(answer).partition(b"\r\n\r\n")
    return int(head_bytes.split(b" ", 2)[1]), json.loads(payload) if payload.strip() else None


class WebSocket:
    """A wsproto client on one API connection."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self._pending: list[wse.Event] = []
        self.closed: wse.CloseConnection | None = None

    @classmethod
    async def open(cls, daemon: Daemon, target: str) -> tuple[WebSocket, dict[str, str]]:
        """Handshake for ``target``: the socket and the 101's headers; ClientError if refused."""
        self = cls(await _open(daemon, tcp=False))
        await self.stream.send_all(self.ws.send(wse.Request(host="localhost", target=target)))
        while True:
            event = await self._next()
            if isinstance(event, wse.AcceptConnection):
                return self, {k.decode().lower(): v.decode() for k, v in event.extra_headers}
            if isinstance(event, wse.RejectConnection):
                body, more = b"", event.has_body
                while more:
                    data = await self._next()
                    if isinstance(data, wse.RejectData):
                        body, more = body + data.data, not data.body_finished
                await self.stream.aclose()
                error = json.loads(body)["error"] if body else {"code": "?", "message": ""}
                raise ClientError(event.status_code, error["code"], error["message"])

    async def _next(self) -> wse.Event:
        while not self._pending:
            data = await self.stream.receive_some(65536)
            if not data:
                raise trio.EndOfChannel
            self.ws.receive_data(bytes(data))
            self._pending.extend(self.ws.events())
        return self._pending.pop(0)

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(self.ws.send(wse.Message(data=data)))

    async def receive(self) -> bytes:
        """The next whole message; EndOfChannel when the daemon closes (``closed`` says how)."""
        parts: list[bytes] = []
        while True:
            event = await self._next()
            if isinstance(event, wse.BytesMessage):
                parts.append(bytes(event.data))
                if event.message_finished:
                    return b"".join(parts)
            elif isinstance(event, wse.Ping):
                await self.stream.send_all(self.ws.send(event.response()))
            elif isinstance(event, wse.CloseConnection):
                self.closed = event
                raise trio.EndOfChannel

    async def aclose(self) -> None:
        with trio.move_on_after(2):
            try:
                await self.stream.send_all(self.ws.send(wse.CloseConnection(code=1000)))
            except Exception:  # the other side may be gone already
                pass
        await self.stream.aclose()


def _two(lab: Lab) -> tuple[Relay, Daemon, Daemon]:
    """A rendezvous node and two daemons registered with it."""
    relay = lab.relay()
    return relay, lab.daemon("a", relay), lab.daemon("b", relay)


# -- the tests -------------------------------------------------------------------------------


async def test_services_guards_and_events(tmp_path: Path) -> None:
    with Lab(tmp_path) as lab:
        relay, a, b = _two(lab)
        client = Client(socket_path=a.socket)
        described = await client.put_service("chat", allow=[b.peer_id])
        assert described == {"name": "chat", "kind": "stream", "allow": [b.peer_id], "allow_any": False, "waiting": 0}
        assert (await client.put_service("chat", allow_any=True))["allow_any"] is True  # replaced
        with pytest.raises(ClientError) as refused:
            await client.put_service("chat", allow_any=True, kind="message")
        assert (refused.value.status, refused.value.code) == (409, "conflict")
        with pytest.raises(ClientError) as refused:
            await client.put_service("chat2")
        assert (refused.value.status, refused.value.code) == (400, "bad_request")
        with pytest.raises(ClientError) as refused:
            await client.put_service("chat2", allow=["nope"])
        assert (refused.value.status, refused.value.code) == (400, "invalid_peer_id")
        with pytest.raises(ClientError) as refused:
            await client.put_service("Chat", allow_any=True)
        assert (refused.value.status, refused.value.code) == (400, "invalid_service")
        assert [s["name"] for s in (await client.request("GET", "/v1/services"))["services"]] == ["chat"]
        assert [s["name"] for s in (await client.status())["services"]] == ["chat"]
        assert await client.delete_service("chat") == {"deleted": "chat"}
        with pytest.raises(ClientError) as refused:
            await client.delete_service("chat")
        assert (refused.value.status, refused.value.code) == (404, "not_found")
        assert (await client.request("GET", "/v1/services")) == {"services": []}

        # Refused before anything else, on both sockets.
        for tcp in (False, True):
            auth = [f"Authorization: Bearer {a.api_token}"] if tcp else []
            status, body = await raw(a, ["GET /v1/status HTTP/1.1", "Host: localhost", *auth], tcp=tcp)
            assert status == 200 and body["peer_id"] == a.peer_id
            status, body = await raw(
                a, ["GET /v1/status HTTP/1.1", "Host: localhost", "Origin: http://localhost", *auth], tcp=tcp
            )
            assert (status, body["error"]["code"]) == (403, "origin_refused")
            for host in ("evil.example", "localhost.evil.example", "127.0.0.2", "[::2]:80"):
                status, body = await raw(a, ["GET /v1/status HTTP/1.1", f"Host: {host}", *auth], tcp=tcp)
                assert (status, body["error"]["code"]) == (403, "host_refused"), host
            for host in ("localhost:1234", "127.0.0.1", "[::1]:80", "p2pos", "local"):
                status, _ = await raw(a, ["GET /v1/status HTTP/1.1", f"Host: {host}", *auth], tcp=tcp)
                assert status == 200, host
        for auth in ([], ["Authorization: Bearer wrong"], [f"Authorization: Bearer {a.api_token}x"]):
            status, body = await raw(a, ["GET /v1/status HTTP/1.1", "Host: localhost", *auth], tcp=True)
            assert (status, body["error"]["code"]) == (401, "unauthorized")
        tcp_client = Client(url=f"http://127.0.0.1:{a.api_port}", token=a.api_token)
        assert (await tcp_client.status())["peer_id"] == a.peer_id
        status, body = await raw(a, ["PUT /v1/services/x HTTP/1.1", "Host: localhost"], body=b"{oops")
        assert (status, body["error"]["code"]) == (400, "bad_json")
        status, body = await raw(a, ["GET /v2/status HTTP/1.1", "Host: localhost"])
        assert (status, body["error"]["code"]) == (404, "not_found")
        status, body = await raw(a, ["DELETE /v1/status HTTP/1.1", "Host: localhost"])
        assert (status, body["error"]["code"]) == (405, "method_not_allowed")
        status, body = await raw(a, ["POST /v1/services/x/accept HTTP/1.1", "Host: localhost"])
        assert (status, body["error"]["code"]) == (426, "upgrade_required")

        # The event stream from the start: numbered from 1 without gaps, "started" first.
        seen: list[dict[str, Any]] = []
        with trio.fail_after(20):
            async for event in client.events(after=0):
                seen.append(event)
                if event["type"] == "registered":
                    break
        assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1))
        assert seen[0] == {"seq": 1, "type": "started", "at": seen[0]["at"], "peer_id": a.peer_id}
        assert seen[-1]["node"] == relay.peer_id
        # after=N starts after N; new events are pushed as they happen.
        pushed: list[dict[str, Any]] = []
        refusal_seen = trio.Event()
        async with trio.open_nursery() as nursery:

            async def follow() -> None:
                async for event in client.events(after=len(seen)):
                    pushed.append(event)
                    if event["type"] == "channel_refused":
                        refusal_seen.set()

            nursery.start_soon(follow)
            with pytest.raises(ClientError) as refused:
                await Client(socket_path=b.socket).connect(a.peer_id, "nothing")
            assert (refused.value.status, refused.value.code) == (502, "service_refused")
            with trio.fail_after(20):
                await refusal_seen.wait()
            nursery.cancel_scope.cancel()
        assert pushed[0]["seq"] == len(seen) + 1
        # Other events (a QUIC path validating, say) may follow the refusal.
        refusal = next(e for e in pushed if e["type"] == "channel_refused")
        assert [e["seq"] for e in pushed] == list(range(len(seen) + 1, len(seen) + 1 + len(pushed)))
        assert refusal == {
            "seq": refusal["seq"],
            "type": "channel_refused",
            "at": refusal["at"],
            "peer_id": b.peer_id,
            "service": "nothing",
            "why": "no_service",
        }
        assert any(e["type"] == "peer_connected" and e["peer_id"] == b.peer_id for e in pushed)
        lab.check_no_tracebacks()


async def test_message_service_over_websocket(tmp_path: Path) -> None:
    with Lab(tmp_path) as lab:
        _, a, b = _two(lab)
        await Client(socket_path=b.socket).put_service("chat", allow=[a.peer_id], kind="message")
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                accepted: list[tuple[WebSocket, dict[str, str]]] = []

                async def echo() -> None:
                    server, headers = await WebSocket.open(b, "/v1/services/chat/accept")
                    accepted.append((server, headers))
                    try:
                        while True:
                            message = await server.receive()
                            await server.send(message[::-1])
                    except trio.EndOfChannel:
                        pass
                    await server.aclose()

                nursery.start_soon(echo)
                client, headers = await WebSocket.open(a, f"/v1/peers/{b.peer_id}/services/chat/connect")
                assert headers["p2pos-peer"] == b.peer_id
                for size in (0, 1, 5, 100, 1000):
                    message = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
                    await client.send(message)
                    assert await client.receive() == message[::-1]
                assert accepted[0][1]["p2pos-peer"] == a.peer_id
                # A stream channel to a message service is refused by the peer as a missing service.
                with pytest.raises(ClientError) as refused:
                    await Client(socket_path=a.socket).connect(b.peer_id, "chat")
                assert (refused.value.code, refused.value.status) == ("service_refused", 502)
                await client.aclose()
        # The daemons are fine after the WebSockets ended.
        for daemon in (a, b):
            assert daemon.status()["peer_id"] == daemon.peer_id
        lab.check_no_tracebacks()


async def test_a_message_too_big_for_a_channel_is_refused_not_fatal(tmp_path: Path) -> None:
    """A WebSocket message larger than a message channel carries must be refused (close 1009, say)
    with the daemon serving on: never an exception out of the API server."""
    with Lab(tmp_path) as lab:
        _, a, b = _two(lab)
        await Client(socket_path=b.socket).put_service("chat", allow_any=True, kind="message")
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:

                async def take() -> None:
                    server, _ = await WebSocket.open(b, "/v1/services/chat/accept")
                    with pytest.raises(trio.EndOfChannel):
                        while True:
                            await server.receive()
                    await server.aclose()

                nursery.start_soon(take)
                client, _ = await WebSocket.open(a, f"/v1/peers/{b.peer_id}/services/chat/connect")
                await client.send(bytes(100_000))
                with pytest.raises(trio.EndOfChannel):
                    await client.receive()
                assert client.closed is not None and client.closed.code == 1009, client.closed
                await client.aclose()
        assert a.proc.running(), a.proc.stderr_text()[-3000:]
        assert a.status()["peer_id"] == a.peer_id
        lab.check_no_tracebacks()


async def test_sas_and_verify_survive_a_restart(tmp_path: Path) -> None:
    with Lab(tmp_path) as lab:
        relay, a, b = _two(lab)
        client_a, client_b = Client(socket_path=a.socket), Client(socket_path=b.socket)
        sas_a = await client_a.sas(b.peer_id)
        sas_b = await client_b.sas(a.peer_id)
        assert sas_a["sas"] == sas_b["sas"] and sas_a["sas"]
        assert (sas_a["peer_id"], sas_a["verified"]) == (b.peer_id, False)

        with pytest.raises(ClientError) as refused:
            await client_a.verify(b.peer_id, "0000 0000" if sas_a["sas"] != "0000 0000" else "1111 1111")
        assert (refused.value.status, refused.value.code) == (409, "conflict")
        code, verify = lab.run(a, "verify", b.peer_id, "--yes")
        assert code == 0, verify.stderr_text()
        assert f"peer {b.peer_id} is verified" in verify.stdout_text()
        assert sas_a["sas"] in verify.stdout_text()
        peers = a.status()["peers"]
        assert [(p["peer_id"], p["verified"]) for p in peers] == [(b.peer_id, True)]
        assert [(p["peer_id"], p["verified"]) for p in b.status()["peers"]] == [(a.peer_id, False)]
        events = a.events(lambda e: any(x["type"] == "verified" for x in e))
        assert events[-1] == {
            "seq": events[-1]["seq"],
            "type": "verified",
            "at": events[-1]["at"],
            "peer_id": b.peer_id,
        }

        code, stop = lab.run(a, "stop")
        assert code == 0, stop.stderr_text()
        assert a.proc.wait(20) == 0
        a2 = lab.daemon("a", relay)
        assert a2.peer_id == a.peer_id
        assert a2.status()["peers"] == []  # no session yet: the mark is on disk
        again = await Client(socket_path=a2.socket).sas(b.peer_id)  # a new session, a new SAS
        assert (again["peer_id"], again["verified"]) == (b.peer_id, True)
        assert [(p["peer_id"], p["verified"]) for p in a2.status()["peers"]] == [(b.peer_id, True)]
        code, status = lab.run(a2, "status")
        assert code == 0 and "verified" in status.stdout_text()

        # Forgetting it is remembered too.
        assert (await Client(socket_path=a2.socket).request("DELETE", f"/v1/peers/{b.peer_id}/verify")) == {
            "peer_id": b.peer_id,
            "verified": False,
        }
        assert [p["verified"] for p in a2.status()["peers"]] == [False]
        lab.check_no_tracebacks()


async def test_headers_over_16_kib_are_refused(tmp_path: Path) -> None:
    """spec/appapi.md §2: headers over 16 KiB are 431, also when they arrive whole in one read (h11's
    own limit counts only an *incomplete* head, and the server reads 64 KiB at a time)."""
    with Lab(tmp_path) as lab:
        a = lab.daemon("a")
        status, _ = await raw(a, ["GET /v1/status HTTP/1.1", "Host: localhost", "X-Big: " + "b" * 20_000])
        assert status == 431


async def test_unauthorised_body_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """On TCP a client without the token is refused as soon as the head is in: were the token checked
    only once the body is in, headers and part of a body would hold a connection slot (256 of them,
    and the TCP API stops answering)."""
    with Lab(tmp_path) as lab:
        a = lab.daemon("a")
        with socket.create_connection(("127.0.0.1", a.api_port), timeout=5) as sock:
            sock.sendall(b"PUT /v1/services/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{")
            started = time.monotonic()
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                answer = b""
            assert answer.startswith(b"HTTP/1.1 401"), f"no refusal after {time.monotonic() - started:.1f} s"
