"""The loopback demo: two peers on this machine handshake over UDP and use several channels at once.

Both print the other's peer id and the short authentication string; the
strings match, which is what two people would compare over the phone.  Then,
on one session and at the same time: a chat on one stream channel, a file of
a few MiB on another (its SHA-256 checked on arrival), and presence pings on a
message channel.  Finally Alice reconnects with the faster IK handshake.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

import trio

from p2pos.proto import ChannelKind, Identity, LocalKeys

from .node import Node, open_node
from .streams import ChannelStream, MessageChannel

Printer = Callable[[str], None]

MESSAGES = [
    ("alice", "hello bob, this is alice over an authenticated p2pos session"),
    ("bob", "hi alice! bob here; the SAS on my screen matches yours"),
    ("alice", "great, nobody is in the middle. sending you the file now"),
]
FILE_SIZE = 4 * 1024 * 1024
CHUNK = 64 * 1024


def demo_file(size: int = FILE_SIZE, seed: int = 2026) -> bytes:
    """The bytes Alice sends: pseudo-random, so that a wrong byte anywhere changes the hash."""
    return random.Random(seed).randbytes(size)


async def _read_all(stream: ChannelStream) -> bytes:
    parts = []
    while chunk := await stream.receive_some(CHUNK):
        parts.append(chunk)
    return b"".join(parts)


async def _read_line(stream: ChannelStream) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = await stream.receive_some(1)
        if not chunk:
            break
        data += chunk
    return data.decode().rstrip("\n")


async def run_demo(
    print_line: Printer = print, *, ik_followup: bool = True, file_size: int = FILE_SIZE
) -> dict[str, str]:
    """Run the demo; returns a summary (peer ids, SAS values, file hashes) for tests."""
    alice_keys = LocalKeys.generate(Identity.generate())
    bob_keys = LocalKeys.generate(Identity.generate())
    payload = demo_file(file_size)
    summary: dict[str, str] = {"file_sent_sha256": hashlib.sha256(payload).hexdigest()}
    async with open_node(alice_keys) as alice, open_node(bob_keys) as bob:
        print_line(f"alice  id {alice.peer_id}  on udp {alice.address[0]}:{alice.address[1]}")
        print_line(f"bob    id {bob.peer_id}  on udp {bob.address[0]}:{bob.address[1]}")
        chat_in = bob.listen("chat")
        files_in = bob.listen("files")
        presence_in = bob.listen("presence", kind=ChannelKind.MESSAGE)

        async def bob_chat() -> None:
            stream = await chat_in.accept()
            assert isinstance(stream, ChannelStream)
            peer = bob.peer(stream.peer_id)
            summary["bob_sees"] = str(stream.peer_id)
            summary["bob_sas"] = peer.sas if peer is not None else ""
            print_line(f"bob:   channel 'chat' from {stream.peer_id}  SAS {summary['bob_sas']}")
            for speaker, text in MESSAGES:
                if speaker == "alice":
                    print_line(f"bob:   received {await _read_line(stream)!r}")
                else:
                    await stream.send_all(text.encode() + b"\n")
            await stream.aclose()

        async def bob_files() -> None:
            stream = await files_in.accept()
            assert isinstance(stream, ChannelStream)
            received = await _read_all(stream)
            digest = hashlib.sha256(received).hexdigest()
            summary["file_received_sha256"] = digest
            await stream.send_all(digest.encode())
            await stream.aclose()
            print_line(f"bob:   channel 'files': {len(received)} bytes, sha256 {digest[:16]}...")

        async def bob_presence() -> None:
            channel = await presence_in.accept()
            assert isinstance(channel, MessageChannel)
            count = 0
            with trio.move_on_after(5):
                while True:
                    try:
                        await channel.receive()
                    except trio.EndOfChannel:
                        break
                    count += 1
            summary["presence_messages"] = str(count)
            print_line(f"bob:   channel 'presence': {count} messages (unreliable, whole or not at all)")

        async def alice_chat(conn_done: trio.Event) -> None:
            stream = await alice.connect(bob.peer_id, bob.address, "chat")
            assert isinstance(stream, ChannelStream)
            peer = alice.peer(bob.peer_id)
            summary["alice_sees"] = str(stream.peer_id)
            summary["alice_sas"] = peer.sas if peer is not None else ""
            print_line(f"alice: connected to {stream.peer_id}  SAS {summary['alice_sas']}  (XX handshake)")
            conn_done.set()
            for speaker, text in MESSAGES:
                if speaker == "alice":
                    await stream.send_all(text.encode() + b"\n")
                else:
                    print_line(f"alice: received {await _read_line(stream)!r}")
            await stream.aclose()

        async def alice_files(conn_done: trio.Event) -> None:
            await conn_done.wait()
            stream = await alice.connect(bob.peer_id, bob.address, "files")
            assert isinstance(stream, ChannelStream)
            view = memoryview(payload)
            for start in range(0, len(view), CHUNK):
                await stream.send_all(view[start : start + CHUNK])
            await stream.send_eof()
            answer = (await _read_all(stream)).decode()
            summary["bob_reported_sha256"] = answer
            verdict = "matches" if answer == summary["file_sent_sha256"] else "DIFFERS"
            print_line(f"alice: sent {len(payload)} bytes on 'files'; bob's sha256 {verdict} the file's")
            await stream.aclose()

        async def alice_presence(conn_done: trio.Event) -> None:
            await conn_done.wait()
            channel = await alice.connect(bob.peer_id, bob.address, "presence", kind=ChannelKind.MESSAGE)
            assert isinstance(channel, MessageChannel)
            for i in range(10):
                await channel.send(f"alice is here ({i})".encode())
                await trio.sleep(0.01)
            await channel.aclose()

        with trio.fail_after(30):
            connected = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(bob_chat)
                nursery.start_soon(bob_files)
                nursery.start_soon(bob_presence)
                nursery.start_soon(alice_chat, connected)
                nursery.start_soon(alice_files, connected)
                nursery.start_soon(alice_presence, connected)
            verdict = "match" if summary["alice_sas"] == summary["bob_sas"] else "DIFFER: man in the middle?"
            print_line(f"SAS alice {summary['alice_sas']} / bob {summary['bob_sas']}: {verdict}")
            if ik_followup:
                await _ik_reconnect(alice, bob, print_line, summary)
    print_line("demo finished: both peers authenticated each other and used three channels at once")
    return summary


async def _ik_reconnect(alice: Node, bob: Node, print_line: Printer, summary: dict[str, str]) -> None:
    """Alice now knows Bob's Noise static key: a new session uses the 1-RTT IK handshake."""
    peer = alice.peer(bob.peer_id)
    if peer is None:
        return
    remote_static = peer.remote_static
    await alice.close_peer(bob.peer_id)
    with trio.fail_after(10):
        while alice.peer(bob.peer_id) is not None:  # the graceful close completes
            await trio.sleep(0.01)
    echo = bob.listen("echo")

    async def bob_echo() -> None:
        stream = await echo.accept()
        assert isinstance(stream, ChannelStream)
        await stream.send_all(await stream.receive_some())
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(bob_echo)
        stream = await alice.connect(bob.peer_id, bob.address, "echo", remote_static=remote_static)
        assert isinstance(stream, ChannelStream)
        again = alice.peer(bob.peer_id)
        await stream.send_all(b"ping")
        reply = await stream.receive_some()
        await stream.aclose()
    summary["ik_sas"] = again.sas if again is not None else ""
    print_line(f"alice: reconnected with IK, SAS {summary['ik_sas']}, echo {reply!r}")
