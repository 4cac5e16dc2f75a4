"""Any sequence of driver calls and peer messages leaves RelayCore consistent and never raises
(STYLE 6, 9; spec/relay.md §4, §5)."""

from __future__ import annotations

from helpers import SeededRandom
from hypothesis import given, settings
from hypothesis import strategies as st
from relay_helpers import identity

from p2pos.proto.relay import messages as m
from p2pos.proto.relay.server import LinkState, RelayConfig, RelayCore

PEERS = [identity(f"prop{n}") for n in range(3)]
HOST = "relay.test"

op = st.one_of(
    st.tuples(st.just("open"), st.integers(0, 2)),
    st.tuples(st.just("upgrade"), st.integers(0, 7)),
    st.tuples(st.just("auth"), st.integers(0, 7), st.integers(0, 2), st.booleans()),
    st.tuples(st.just("want"), st.integers(0, 7), st.integers(0, 2)),
    st.tuples(st.just("unwant"), st.integers(0, 7), st.integers(0, 2)),
    st.tuples(st.just("send"), st.integers(0, 7), st.integers(0, 4), st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("raw"), st.integers(0, 7), st.binary(max_size=60)),
    st.tuples(st.just("lost"), st.integers(0, 7)),
    st.tuples(st.just("take"), st.integers(0, 7)),
    st.tuples(st.just("time"), st.floats(0.0, 30.0)),
)


@settings(max_examples=300)
@given(st.lists(op, max_size=60))
def test_any_sequence_keeps_the_core_consistent(ops: list[tuple[object, ...]]) -> None:
    core = RelayCore(RelayConfig(queue_bytes=200, max_wants=2), SeededRandom("props"))
    now = 0.0
    links: list[int] = []
    nonces: dict[int, bytes] = {}

    def pick(i: object) -> int:
        return links[int(i) % len(links)] if links else 0  # type: ignore[call-overload]

    for step in ops:
        kind = step[0]
        if kind == "open":
            link = core.open_link((f"192.0.2.{step[1]}", len(links)), now)
            if link is not None:
                links.append(link)
        elif kind == "upgrade":
            core.link_upgraded(pick(step[1]), HOST, now)
        elif kind == "auth":
            link, who, good = pick(step[1]), PEERS[int(step[2])], bool(step[3])  # type: ignore[call-overload]
            nonce = nonces.get(link, bytes(32))
            sig = who.sign(m.DOMAIN_RELAY_AUTH, m.auth_message(nonce, HOST)) if good else bytes(64)
            core.receive_message(link, m.encode(m.Auth(peer_id=who.peer_id.public_key, signature=sig, name=HOST)), now)
        elif kind in ("want", "unwant"):
            message = m.Want if kind == "want" else m.Unwant
            peer = PEERS[int(step[2])].peer_id.public_key  # type: ignore[call-overload]
            core.receive_message(pick(step[1]), m.encode(message(peer_id=peer)), now)
        elif kind == "send":
            core.receive_message(pick(step[1]), bytes([8]) + int(step[2]).to_bytes(4, "big") + b"\x07" + step[3], now)  # type: ignore[call-overload]
        elif kind == "raw":
            core.receive_message(pick(step[1]), step[2], now)  # type: ignore[arg-type]
        elif kind == "lost":
            core.link_lost(pick(step[1]), now)
        elif kind == "take":
            for data in core.take_messages(pick(step[1]), 100):
                sent = m.decode_untrusted(data)  # everything the relay sends is well formed
                if isinstance(sent, m.Challenge):
                    nonces[pick(step[1])] = sent.nonce
        else:
            now += float(step[1])  # type: ignore[arg-type]
            core.handle_timer(now)
        for link, _, _ in core.closes():
            core.link_lost(link, now)
        # Invariants: queues within their bound (control messages aside), pairs symmetric.
        for link in links:
            assert core.pending(link) >= 0
        authenticated = {core.peer_of(link): link for link in links if core.state_of(link) is LinkState.AUTHENTICATED}
        assert len(authenticated) == sum(core.state_of(link) is LinkState.AUTHENTICATED for link in links)
    for link in links:
        core.link_lost(link, now)
    assert len(core) == 0 and core._unauthenticated == 0
    assert all(a.links == 0 and a.unauthenticated == 0 for a in core._addresses.values())
