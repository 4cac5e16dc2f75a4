"""The relay cases (spec/relay.md §2-§4): upgrade, authentication, pairing, protocol errors, liveness."""

from __future__ import annotations

import os
import struct
import time

from ..checks import CaseFailed, expect, expect_eq
from .registry import case
from .wire import (
    CHALLENGE,
    PAIRED,
    RECV,
    UNPAIRED,
    UNWANT,
    WANT,
    WELCOME,
    Closed,
    Link,
    Peer,
    Pong,
    Target,
    msg_auth,
    msg_peer,
    msg_send,
    msg_sendto,
)


def _record(size: int = 200) -> bytes:
    """A made-up sealed record: a DATA packet's first byte, then random bytes."""
    return b"\x07" + os.urandom(size - 1)


def _challenge(link: Link) -> bytes:
    """The CHALLENGE every link starts with (REL-2.2): its nonce."""
    first = link.recv()
    if not isinstance(first, bytes):
        raise CaseFailed(f"expected CHALLENGE, got {first!r}")
    expect(len(first) == 43 and first[0] == CHALLENGE, f"CHALLENGE is 43 bytes of type 1, got {first[:8].hex()}…")
    return first[1:33]


def _authed(t: Target, peer: Peer | None = None) -> tuple[Link, Peer]:
    peer = peer or Peer()
    link = Link(t)
    expect(link.refused is None, f"upgrade refused: {link.refused}")
    link.send(msg_auth(peer, _challenge(link), t.relay_name))
    welcome = link.recv()
    expect_eq(welcome, bytes([WELCOME]) + peer.id, "WELCOME after a valid AUTH")
    return link, peer


def _expect_close(link: Link, code: int, what: str) -> None:
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        got = link.recv(1.0)
        if isinstance(got, Closed):
            expect_eq(got.code, code, f"close code after {what}")
            return
    raise CaseFailed(f"no WebSocket Close {code} after {what}")


def _pair(t: Target) -> tuple[Link, Peer, int, Link, Peer, int]:
    a, pa = _authed(t)
    b, pb = _authed(t)
    a.send(msg_peer(WANT, pb.id))
    b.send(msg_peer(WANT, pa.id))
    got_a, got_b = a.recv(), b.recv()
    for got, other, who in ((got_a, pb, "A"), (got_b, pa, "B")):
        expect(
            isinstance(got, bytes) and len(got) == 37 and got[0] == PAIRED and got[5:] == other.id,
            f"{who}: PAIRED with the other's id expected, got {got!r}",
        )
    if not isinstance(got_a, bytes) or not isinstance(got_b, bytes):  # for the type checker; checked above
        raise CaseFailed("PAIRED expected")
    return a, pa, struct.unpack(">I", got_a[1:5])[0], b, pb, struct.unpack(">I", got_b[1:5])[0]


@case("rel/upgrade/1", section="§3.1", title="an upgrade to another path is refused", requirements=("REL-3.1.2",))
def _(t: Target) -> str | None:
    link = Link(t, path="/not-the-relay")
    expect(link.refused is not None, "the relay accepted an upgrade to /not-the-relay")
    return f"HTTP {link.refused.status if link.refused else ''}"


@case(
    "rel/upgrade/2", section="§3.1", title="an upgrade without the subprotocol is refused", requirements=("REL-3.1.2",)
)
def _(t: Target) -> str | None:
    link = Link(t, subprotocols=[])
    expect(link.refused is not None, "the relay accepted an upgrade without p2pos-relay.1")
    return None


@case("rel/upgrade/3", section="§3.1", title="the accepted upgrade names p2pos-relay.1", requirements=("REL-3.1.2",))
def _(t: Target) -> str | None:
    link = Link(t, subprotocols=["other", "p2pos-relay.1"])
    expect_eq(link.subprotocol, "p2pos-relay.1", "Sec-WebSocket-Protocol")
    link.close()
    return None


@case("rel/auth/1", section="§2", title="every link gets a CHALLENGE with a fresh nonce", requirements=("REL-2.2",))
def _(t: Target) -> str | None:
    nonces = set()
    for _ in range(3):
        link = Link(t)
        nonces.add(_challenge(link))
        link.close()
    expect_eq(len(nonces), 3, "distinct nonces on 3 links")
    return None


@case(
    "rel/auth/2", section="§2", title="a valid AUTH gets WELCOME with the peer id", requirements=("REL-2.1", "REL-2.3")
)
def _(t: Target) -> str | None:
    link, _ = _authed(t)
    link.close()
    return None


@case("rel/auth/3", section="§2", title="a bad signature is closed with 4002", requirements=("REL-2.4", "REL-4.6"))
def _(t: Target) -> str | None:
    link, peer = Link(t), Peer()
    nonce = _challenge(link)
    good = peer.sign_auth(nonce, t.relay_name)
    link.send(msg_auth(peer, nonce, t.relay_name, signature=bytes([good[0] ^ 0x80]) + good[1:]))
    _expect_close(link, 4002, "a bad signature")
    return None


@case(
    "rel/auth/4",
    section="§2",
    title="a signature for another relay name is closed with 4002",
    requirements=("REL-2.4", "REL-4.6"),
)
def _(t: Target) -> str | None:
    link, peer = Link(t), Peer()
    link.send(msg_auth(peer, _challenge(link), "another-relay.invalid"))
    _expect_close(link, 4002, "AUTH naming another relay")
    return None


@case(
    "rel/auth/5", section="§2", title="a signature under another domain is closed with 4002", requirements=("REL-2.3",)
)
def _(t: Target) -> str | None:
    link, peer = Link(t), Peer()
    nonce = _challenge(link)
    signature = peer.sign_auth(nonce, t.relay_name, domain=b"p2pos/noise-static-key")
    link.send(msg_auth(peer, nonce, t.relay_name, signature=signature))
    _expect_close(link, 4002, "a signature under p2pos/noise-static-key")
    return None


@case(
    "rel/auth/6", section="§2", title="an AUTH replayed on another link is closed with 4002", requirements=("REL-2.2",)
)
def _(t: Target) -> str | None:
    first, peer = Link(t), Peer()
    auth = msg_auth(peer, _challenge(first), t.relay_name)
    first.send(auth)
    expect_eq(first.recv(), bytes([WELCOME]) + peer.id, "WELCOME on the first link")
    second = Link(t)
    _challenge(second)
    second.send(auth)
    _expect_close(second, 4002, "a replayed AUTH")
    first.close()
    return None


@case("rel/auth/7", section="§2", title="WANT before AUTH is closed with 4000", requirements=("REL-2.5", "REL-4.6"))
def _(t: Target) -> str | None:
    link = Link(t)
    _challenge(link)
    link.send(msg_peer(WANT, Peer().id))
    _expect_close(link, 4000, "WANT before AUTH")
    return None


@case("rel/pair/1", section="§4.2", title="one WANT pairs nobody; two do", requirements=("REL-4.3",))
def _(t: Target) -> str | None:
    a, pa = _authed(t)
    b, pb = _authed(t)
    a.send(msg_peer(WANT, pb.id))
    got = b.recv(0.5) or a.recv(0.5)
    expect(got is None, f"a one-sided WANT produced {got!r}")
    b.send(msg_peer(WANT, pa.id))
    expect(isinstance(a.recv(), bytes) and isinstance(b.recv(), bytes), "PAIRED on both sides")
    return None


@case("rel/pair/2", section="§4.2", title="SEND arrives as RECV, bytes unchanged, both ways", requirements=("REL-4.4",))
def _(t: Target) -> str | None:
    a, _, pair_a, b, _, pair_b = _pair(t)
    for src, dst, pair, dst_pair in ((a, b, pair_a, pair_b), (b, a, pair_b, pair_a)):
        records = [_record(size) for size in (1, 200, 1400, 16000)]
        for r in records:
            src.send(msg_send(pair, r))
        for r in records:
            expect_eq(dst.recv(), bytes([RECV]) + struct.pack(">I", dst_pair) + r, "RECV")
    return None


@case("rel/pair/3", section="§4.2", title="UNWANT ends the pair on both sides", requirements=("REL-4.5",))
def _(t: Target) -> str | None:
    a, _, pair_a, b, pb, pair_b = _pair(t)
    a.send(msg_peer(UNWANT, pb.id))
    expect_eq(a.recv(), bytes([UNPAIRED]) + struct.pack(">I", pair_a), "UNPAIRED to the side that left")
    expect_eq(b.recv(), bytes([UNPAIRED]) + struct.pack(">I", pair_b), "UNPAIRED to the other side")
    a.send(msg_send(pair_a, _record()))
    expect(b.recv(0.5) is None, "a record crossed an ended pair")
    return None


@case("rel/pair/4", section="§4.2", title="a closed link ends its pairs", requirements=("REL-4.5",))
def _(t: Target) -> str | None:
    a, _, _, b, _, pair_b = _pair(t)
    a.close()
    expect_eq(b.recv(), bytes([UNPAIRED]) + struct.pack(">I", pair_b), "UNPAIRED after the other link closed")
    return None


@case(
    "rel/pair/5",
    section="§4.1",
    title="a newer link of a peer replaces the older (4001)",
    requirements=("REL-4.2", "REL-4.6"),
)
def _(t: Target) -> str | None:
    old, peer = _authed(t)
    _authed(t, peer)
    _expect_close(old, 4001, "a newer link of the same peer id")
    return None


@case("rel/pair/6", section="§4.2", title="SEND on an unknown pair is dropped, not an error", requirements=("REL-4.4",))
def _(t: Target) -> str | None:
    link, _ = _authed(t)
    link.send(msg_send(77, _record()))
    link.ping(b"still-there")
    got = link.recv()
    expect_eq(got, Pong(b"still-there"), "the link after SEND on an unknown pair")
    return None


@case(
    "rel/hold/1",
    section="§4.2",
    title="SENDTO before the pair forms arrives as RECV right after PAIRED",
    requirements=("REL-4.8",),
)
def _(t: Target) -> str | None:
    a, pa = _authed(t)
    b, pb = _authed(t)
    records = [_record(size) for size in (1, 200, 1400)]
    a.send(msg_peer(WANT, pb.id))
    for r in records:
        a.send(msg_sendto(pb.id, r))
    got = b.recv(0.5)
    expect(got is None, f"a held record reached B before B wanted A: {got!r}")
    b.send(msg_peer(WANT, pa.id))
    paired = b.recv()
    expect(isinstance(paired, bytes) and len(paired) == 37 and paired[0] == PAIRED, f"PAIRED first, got {paired!r}")
    assert isinstance(paired, bytes)  # for the type checker; checked above
    for r in records:
        expect_eq(b.recv(), bytes([RECV]) + paired[1:5] + r, "a held record after PAIRED")
    paired_a = a.recv()
    expect(isinstance(paired_a, bytes) and paired_a[0] == PAIRED, f"PAIRED to A, got {paired_a!r}")
    assert isinstance(paired_a, bytes)
    b.send(msg_sendto(pa.id, records[1]))  # on a formed pair SENDTO is SEND
    expect_eq(a.recv(), bytes([RECV]) + paired_a[1:5] + records[1], "SENDTO on a formed pair")
    return None


@case(
    "rel/hold/2",
    section="§4.2",
    title="SENDTO to a peer the link does not WANT is dropped, not held nor an error",
    requirements=("REL-4.8",),
)
def _(t: Target) -> str | None:
    a, pa = _authed(t)
    b, pb = _authed(t)
    a.send(msg_sendto(pb.id, _record()))
    a.send(msg_peer(WANT, pb.id))
    a.ping(b"wanted")
    expect_eq(a.recv(), Pong(b"wanted"), "the link after SENDTO to a peer not wanted")
    b.send(msg_peer(WANT, pa.id))
    expect(isinstance(b.recv(), bytes), "PAIRED to B")
    got = b.recv(0.5)
    expect(got is None, f"a record sent before WANT was delivered: {got!r}")
    return None


@case(
    "rel/hold/3",
    section="§4.2",
    title="held records beyond 16 are dropped; UNWANT drops what is held",
    requirements=("REL-4.8",),
)
def _(t: Target) -> str | None:
    a, pa = _authed(t)
    b, pb = _authed(t)
    a.send(msg_peer(WANT, pb.id))
    for n in range(20):
        a.send(msg_sendto(pb.id, b"\x07" + n.to_bytes(2, "big")))
    a.ping(b"held")  # the Pong says the relay read all of A's messages before B's WANT
    expect_eq(a.recv(), Pong(b"held"), "the link after 20 SENDTO")
    b.send(msg_peer(WANT, pa.id))
    paired = b.recv()
    expect(isinstance(paired, bytes) and paired[0] == PAIRED, f"PAIRED first, got {paired!r}")
    got = []
    while isinstance(item := b.recv(0.5), bytes):
        got.append(item[5:])
    expect_eq(got, [b"\x07" + n.to_bytes(2, "big") for n in range(16)], "the first 16 held records, in order")
    paired_a = a.recv()
    expect(isinstance(paired_a, bytes) and paired_a[0] == PAIRED, f"PAIRED to A, got {paired_a!r}")
    c, pc = _authed(t)
    a.send(msg_peer(WANT, pc.id))
    a.send(msg_sendto(pc.id, _record()))
    a.send(msg_peer(UNWANT, pc.id))
    a.send(msg_peer(WANT, pc.id))
    a.ping(b"unwanted")
    expect_eq(a.recv(), Pong(b"unwanted"), "the link after UNWANT and WANT")
    c.send(msg_peer(WANT, pa.id))
    expect(isinstance(c.recv(), bytes), "PAIRED to C")
    leftover = c.recv(0.5)
    expect(leftover is None, f"a record held before UNWANT was delivered: {leftover!r}")
    return None


@case("rel/proto/1", section="§3.1", title="a text message is closed with 4000", requirements=("REL-3.1.3", "REL-4.6"))
def _(t: Target) -> str | None:
    link, _ = _authed(t)
    link.send_text("hello")
    _expect_close(link, 4000, "a text message")
    return None


@case(
    "rel/proto/2",
    section="§3.2",
    title="a record that is not a p2pos packet is closed with 4000",
    requirements=("REL-3.3",),
)
def _(t: Target) -> str | None:
    a, _, pair_a, b, _, _ = _pair(t)
    a.send(msg_send(pair_a, b"\x03stun-like"))
    _expect_close(a, 4000, "SEND of a record starting with 3")
    got = b.recv(0.5)
    expect(not (isinstance(got, bytes) and got[0] == RECV), "the relay forwarded a record starting with 3")
    return None


@case("rel/proto/3", section="§3.2", title="an unknown message type is closed with 4000", requirements=("REL-3.2",))
def _(t: Target) -> str | None:
    link, _ = _authed(t)
    link.send(b"\x7f" + bytes(32))
    _expect_close(link, 4000, "message type 0x7f")
    return None


@case(
    "rel/proto/4", section="§3.1", title="a message over 65568 bytes is closed with 4000", requirements=("REL-3.1.4",)
)
def _(t: Target) -> str | None:
    link, _ = _authed(t)
    link.send(b"\x0a" + bytes(32) + b"\x07" * 65536)
    _expect_close(link, 4000, "a 65569-byte message")
    return None


@case("rel/auth/8", section="§4.1", title="a link without AUTH is closed within 10 s", requirements=("REL-4.1",))
def _(t: Target) -> str | None:
    link = Link(t)
    _challenge(link)
    started = time.monotonic()
    while time.monotonic() - started < 12:
        got = link.recv(1.0)
        if isinstance(got, Closed):
            expect_eq(got.code, 4003, "close code of a link that never authenticated")
            return f"closed after {time.monotonic() - started:.1f} s"
    raise CaseFailed("a link without AUTH was still open after 12 s")


@case(
    "rel/quota/1",
    section="§5",
    title="a 5th unauthenticated link from one address is refused (default quota)",
    requirements=("REL-5.1",),
)
def _(t: Target) -> str | None:
    time.sleep(0.5)  # the links of earlier cases, closed by the suite, are gone on the relay's side too
    held = [Link(t) for _ in range(4)]
    try:
        for link in held:
            _challenge(link)
        try:
            extra = Link(t)
        except CaseFailed:
            return "closed before the upgrade"
        raise CaseFailed(f"a 5th unauthenticated link was accepted (refused={extra.refused})")
    finally:
        for link in held:
            link.close()
        time.sleep(0.5)  # the next cases need the relay to have seen these go


@case("rel/quota/2", section="§5", title="the 1025th WANT is closed with 4004", requirements=("REL-5.2", "REL-5.5"))
def _(t: Target) -> str | None:
    link, _ = _authed(t)
    for n in range(1024):
        link.send(msg_peer(WANT, n.to_bytes(32, "big")))
    link.ping(b"after-1024")
    expect_eq(link.recv(), Pong(b"after-1024"), "the link after 1024 WANTs")
    link.send(msg_peer(WANT, (5000).to_bytes(32, "big")))
    _expect_close(link, 4004, "the 1025th WANT")
    return None


@case("rel/live/1", section="§4.4", title="a Ping is answered with a Pong", requirements=("REL-4.7",))
def _(t: Target) -> str | None:
    link, _ = _authed(t)
    link.ping(b"conformance")
    expect_eq(link.recv(), Pong(b"conformance"), "answer to a Ping")
    return None
