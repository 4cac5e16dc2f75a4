"""The loopback demo: two peers on this machine handshake over UDP and talk.

Both print the other's peer id and the short authentication string; the
strings match, which is what two people would compare over the phone.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from p2pos.proto import Identity, LocalKeys

from .node import Connection, open_node

Printer = Callable[[str], None]

MESSAGES = [
    ("alice", "hello bob, this is alice over an authenticated p2pos session"),
    ("bob", "hi alice! bob here; the SAS on my screen matches yours"),
    ("alice", "great, nobody is in the middle. bye!"),
]


async def run_demo(print_line: Printer = print, *, ik_followup: bool = True) -> dict[str, str]:
    """Run the demo; returns a summary (peer ids and SAS values) for tests."""
    alice_keys = LocalKeys.generate(Identity.generate())
    bob_keys = LocalKeys.generate(Identity.generate())
    summary: dict[str, str] = {}
    async with open_node(alice_keys) as alice, open_node(bob_keys) as bob:
        print_line(f"alice  id {alice.peer_id}  on udp {alice.address[0]}:{alice.address[1]}")
        print_line(f"bob    id {bob.peer_id}  on udp {bob.address[0]}:{bob.address[1]}")
        accepted: list[Connection] = []

        async def bob_side(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            conn = await bob.accept()
            accepted.append(conn)
            print_line(f"bob:   connected to {conn.peer_id}  SAS {conn.sas}")
            for speaker, text in MESSAGES:
                if speaker == "alice":
                    got = (await conn.receive()).decode()
                    print_line(f"bob:   received {got!r}")
                else:
                    await conn.send(text.encode())

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                await nursery.start(bob_side)
                conn = await alice.connect(bob.address, expected_peer=bob.peer_id)
                print_line(f"alice: connected to {conn.peer_id}  SAS {conn.sas}  (XX handshake)")
                for speaker, text in MESSAGES:
                    if speaker == "alice":
                        await conn.send(text.encode())
                    else:
                        got = (await conn.receive()).decode()
                        print_line(f"alice: received {got!r}")
            summary.update(
                alice_sees=str(conn.peer_id),
                bob_sees=str(accepted[0].peer_id),
                alice_sas=conn.sas,
                bob_sas=accepted[0].sas,
            )
            verdict = "match" if conn.sas == accepted[0].sas else "DIFFER: man in the middle?"
            print_line(f"SAS alice {conn.sas} / bob {accepted[0].sas}: {verdict}")
            await conn.aclose()
            if ik_followup:
                # Alice now knows Bob's Noise static key: the next session uses the 1-RTT IK handshake.
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(bob.accept)
                    again = await alice.connect(
                        bob.address, expected_peer=bob.peer_id, remote_static=conn.remote_static
                    )
                    print_line(f"alice: reconnected with IK, SAS {again.sas}")
                    await again.send(b"ping")
                summary["ik_sas"] = again.sas
    print_line("demo finished: both peers authenticated each other and exchanged messages")
    return summary
