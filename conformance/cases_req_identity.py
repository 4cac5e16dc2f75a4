"""Cases for the requirements of spec/identity.md that no earlier case tested (spec/conformance.md §6).

The signature cases check the edges of the exact verification rule of identity.md §3.2 through
``verify``.  ``signature_edges()`` builds them with the reference's library (PyNaCl) the same way
spec/vectors/generate_signatures.py builds ``vectors/signature_edges.json`` with plain-Python
arithmetic; tests/identity/test_signature_edges.py checks that both give the same vectors.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable

import nacl.bindings

from p2pos.proto.handshake.noise import Pattern
from p2pos.proto.identity.identity import SignedRecord, signed_message
from p2pos.proto.session.wire import PacketType

from .checks import expect, expect_eq, short
from .iut import Iut
from .reference import (
    IUT,
    OTHER,
    REF,
    Hand,
    Party,
    establish,
    handshake_message,
    init_payload,
    one_packet,
    out_of,
    start_session,
)
from .registry import case

SIGN = "identity.md §3.1"
VERIFY = "identity.md §3.2"
RECORD = "identity.md §3.3"
KEYFILE = "identity.md §4"

#: The field prime and the order of the base point (identity.md §3.2).
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
_TOP = 1 << 255
#: record.md §7: no record is sealed with a counter at or above this.
COUNTER_LIMIT = 2**64 - 2**13 - 1
#: The domain of every edge vector (as in spec/vectors/signature_edges.json).
EDGE_DOMAIN = b"p2pos/example"
#: The canonical encodings of the 8 small-order points: T0 (the neutral element) to T7, Ti = [i]T1.
TORSION = tuple(
    bytes.fromhex(h)
    for h in (
        "0100000000000000000000000000000000000000000000000000000000000000",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    )
)
_ORDERS = (1, 8, 4, 8, 2, 8, 4, 8)


def _le(n: int) -> bytes:
    return n.to_bytes(32, "little")


def small_order_encodings() -> list[tuple[str, bytes, int, bool]]:
    """All 14 encodings of small-order points: (name, bytes, order, canonical)."""
    out = [(f"T{i}-order-{_ORDERS[i]}" if i else "identity", t, _ORDERS[i], True) for i, t in enumerate(TORSION)]
    for name, y, order in (("y=p", P, 4), ("y=p+1", P + 1, 1)):
        out += [(name, _le(y), order, False), (f"{name} sign 1", _le(y | _TOP), order, False)]
    out += [("y=1 sign 1", _le(1 | _TOP), 1, False), ("y=p-1 sign 1", _le(P - 1 | _TOP), 2, False)]
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class Edge:
    """One edge of the verification rule: inputs of ``verify`` and the verdict."""

    name: str
    requirements: tuple[str, ...]
    valid: bool
    public_key: bytes
    message: bytes
    signature: bytes


def _challenge(r: bytes, public_key: bytes, message: bytes) -> int:
    return int.from_bytes(hashlib.sha512(r + public_key + signed_message(EDGE_DOMAIN, message)).digest(), "little") % L


def _message_where(name: str, ok: Callable[[bytes], bool]) -> bytes:
    for n in range(1000):
        message = f"edge: {name} #{n}".encode()
        if ok(message):
            return message
    raise RuntimeError(f"no message found for {name}")


def _k_multiple_of(r: bytes, public_key: bytes, order: int) -> Callable[[bytes], bool]:
    return lambda message: _challenge(r, public_key, message) % order == 0


def _signer() -> tuple[bytes, int, int, bytes]:
    """The edge signer: (public key, secret scalar a, nonce r, R = [r]B)."""
    seed = hashlib.blake2b(b"p2pos test vector: signature edges: signer", digest_size=32).digest()
    public, _ = nacl.bindings.crypto_sign_seed_keypair(seed)
    h = hashlib.sha512(seed).digest()
    a = (int.from_bytes(h[:32], "little") & (2**254 - 8)) | 2**254
    nonce = hashlib.blake2b(b"p2pos test vector: signature edges: nonce", digest_size=32).digest()
    r = int.from_bytes(nonce, "little") % L
    return public, a, r, nacl.bindings.crypto_scalarmult_ed25519_base_noclamp(_le(r))


def signature_edges() -> list[Edge]:
    """The edges of identity.md §3.2, in the order of spec/vectors/signature_edges.json."""
    key, a, r, big_r = _signer()
    add = nacl.bindings.crypto_core_ed25519_add
    edges: list[Edge] = []

    def sign_as(r_bytes: bytes, nonce: int, public_key: bytes, message: bytes) -> bytes:
        return r_bytes + _le((nonce + _challenge(r_bytes, public_key, message) * a) % L)

    message = b"edge: ordinary"
    good = sign_as(big_r, r, key, message)
    edges.append(Edge("ordinary", ("ID-3.2.1",), True, key, message, good))
    s = int.from_bytes(good[32:], "little")
    for name, extra in (("S+L", L), ("S+8L", 8 * L)):
        edges.append(Edge(f"s-{name}", ("ID-3.2.2",), False, key, message, good[:32] + _le(s + extra)))
    for length in (0, 63, 65):
        edges.append(Edge(f"signature-{length}-bytes", ("ID-3.2.6",), False, key, message, (good + b"\x00")[:length]))
    for length in (0, 31, 33):
        edges.append(Edge(f"key-{length}-bytes", ("ID-3.2.7",), False, (key + b"\x00")[:length], message, good))
    edges.append(Edge("key-y-above-p", ("ID-3.2.3",), False, _le(P + 3), message, good))
    edges.append(Edge("key-not-a-point", ("ID-3.2.3",), False, _le(2), message, good))
    # A small-order key: R = [r]B, S = r satisfy the equation when k is a multiple of its order.
    for name, small, order, canonical in small_order_encodings():
        forged = _message_where(f"key {name}", _k_multiple_of(big_r, small, order))
        rules = ("ID-3.2.4",) if canonical else ("ID-3.2.3", "ID-3.2.4")
        edges.append(Edge(f"key-small-order-{name}", rules, False, small, forged, big_r + _le(r)))
    # A small-order R with the signer's key: S = k·a.
    for name, small, _, _ in small_order_encodings():
        edges.append(Edge(f"r-small-order-{name}", ("ID-3.2.5",), False, key, message, sign_as(small, 0, key, message)))
    mixed_r = add(big_r, TORSION[1])
    edges.append(Edge("r-mixed-order", ("ID-3.2.8",), False, key, message, sign_as(mixed_r, r, key, message)))
    mixed_key = add(key, TORSION[1])
    off = _message_where("mixed key k not 0 mod 8", lambda m: _challenge(big_r, mixed_key, m) % 8 != 0)
    edges.append(
        Edge("key-mixed-order-cofactored-only", ("ID-3.2.8",), False, mixed_key, off, sign_as(big_r, r, mixed_key, off))
    )
    on = _message_where("mixed key k 0 mod 8", lambda m: _challenge(big_r, mixed_key, m) % 8 == 0)
    edges.append(Edge("key-mixed-order-valid", ("ID-3.2.10",), True, mixed_key, on, sign_as(big_r, r, mixed_key, on)))
    both_r = add(big_r, TORSION[3])
    both = _message_where("mixed key and R", lambda m: (_challenge(both_r, mixed_key, m) + 3) % 8 == 0)
    edges.append(
        Edge("key-and-r-mixed-order-valid", ("ID-3.2.10",), True, mixed_key, both, sign_as(both_r, r, mixed_key, both))
    )
    return edges


def _check_edges(iut: Iut, edges: Iterable[Edge]) -> str:
    """``verify`` every edge; fail on the first wrong verdict (an error answer is wrong too)."""
    count = 0
    for e in edges:
        answer = iut.call(
            "verify", public_key=e.public_key, domain=EDGE_DOMAIN, message=e.message, signature=e.signature
        )
        expect(answer.get("ok") is True, f"{e.name}: verify must answer, not fail: {short(answer)}")
        expect_eq(answer.get("valid"), e.valid, f"verdict for edge {e.name} (key {e.public_key.hex()[:16]}..)")
        count += 1
    return f"{count} edges"


def _edges(*prefixes: str) -> list[Edge]:
    return [e for e in signature_edges() if e.name.startswith(prefixes)]


@case(
    "id/sig/8",
    section=SIGN,
    title="signing under an empty domain or one longer than 255 bytes is refused",
    requirements=("ID-3.1.3",),
)
def _(iut: Iut) -> None:
    for domain in (b"", b"d" * 256):
        for cmd, fields in (("sign", {"message": b"m"}), ("record_create", {"payload": b"m"})):
            answer = iut.call(cmd, seed=REF.seed, domain=domain, **fields)
            expect(answer.get("ok") is False, f"{cmd} with a {len(domain)}-byte domain: {short(answer)}")
    answer = iut.ok("sign", seed=REF.seed, domain=b"d" * 255, message=b"m")
    expect_eq(bytes.fromhex(str(answer.get("signature"))), REF.identity.sign(b"d" * 255, b"m"), "255-byte domain")


@case(
    "id/sig/9",
    section=VERIFY,
    title="keys that are no canonical point encoding are refused, forgeries under y >= p included",
    requirements=("ID-3.2.3",),
)
def _(iut: Iut) -> str:
    return _check_edges(iut, [e for e in signature_edges() if "ID-3.2.3" in e.requirements])


@case(
    "id/sig/10",
    section=VERIFY,
    title="all 14 encodings of small-order keys are refused, with forgeries that satisfy the equation",
    requirements=("ID-3.2.4",),
)
def _(iut: Iut) -> str:
    return _check_edges(iut, _edges("key-small-order-", "ordinary"))


@case(
    "id/sig/11",
    section=VERIFY,
    title="all 14 encodings of a small-order R are refused under a sound key",
    requirements=("ID-3.2.5",),
)
def _(iut: Iut) -> str:
    return _check_edges(iut, _edges("r-small-order-", "ordinary"))


@case(
    "id/sig/12",
    section=VERIFY,
    title="a key or a signature of the wrong length is invalid, not an error",
    requirements=("ID-3.2.6", "ID-3.2.7"),
)
def _(iut: Iut) -> str:
    return _check_edges(iut, _edges("key-0-", "key-31-", "key-33-", "signature-"))


@case(
    "id/sig/13",
    section=VERIFY,
    title="verification is cofactorless: signatures valid only times 8 are refused",
    requirements=("ID-3.2.8",),
)
def _(iut: Iut) -> str:
    return _check_edges(iut, _edges("r-mixed-order", "key-mixed-order-cofactored-only", "ordinary"))


@case(
    "id/sig/14",
    section=VERIFY,
    title="mixed-order keys and R are accepted when the cofactorless equation holds",
    requirements=("ID-3.2.10",),
)
def _(iut: Iut) -> str:
    return _check_edges(iut, _edges("key-mixed-order-valid", "key-and-r-mixed-order-valid"))


@case(
    "id/sig/15",
    section=VERIFY,
    title="every edge of vectors/signature_edges.json gets its verdict",
    requirements=("ID-3.2.1", "ID-3.2.2", "ID-3.2.9"),
)
def _(iut: Iut) -> str:
    return _check_edges(iut, signature_edges())


# -- signed records (identity.md §3.3) ---------------------------------------------------------


def _expect_error(iut: Iut, code: str, what: str, cmd: str, **fields: object) -> None:
    """``cmd`` must fail with ``code``; the failure names ``what``."""
    answer = iut.call(cmd, **fields)
    expect(answer.get("ok") is False, f"{what}: {cmd} must fail with {code}, got {short(answer)}")
    expect_eq(answer.get("error"), code, f"{what}: error")


def _record(payload: bytes = b"record payload", domain: bytes = b"p2pos/test-record") -> bytes:
    return SignedRecord.create(REF.identity, domain, payload).encode()


def _record_with(*, version: int = 1, domain: bytes = b"p2pos/test-record", payload: bytes = b"p") -> bytes:
    """A record with any version, domain length and payload length, signed as if they were fine."""
    sig = REF.identity.sign(domain or b"x", payload)
    return (
        bytes([version])
        + REF.peer_id.public_key
        + bytes([len(domain)])
        + domain
        + len(payload).to_bytes(4, "big")
        + payload
        + sig
    )


@case(
    "id/record/7",
    section=RECORD,
    title="a record with domain length 0 or payload length 65537 is MALFORMED_MESSAGE",
    requirements=("ID-3.3.4",),
)
def _(iut: Iut) -> None:
    for what, data in (
        ("domain length 0", _record_with(domain=b"")),
        ("payload length 65537", _record_with(payload=bytes(65537))),
    ):
        _expect_error(iut, "MALFORMED_MESSAGE", what, "record_decode", data=data, domain=None)
    answer = iut.ok("record_decode", data=_record(bytes(65536)), domain=None)
    expect_eq(len(bytes.fromhex(str(answer.get("payload")))), 65536, "a 65536-byte payload (the largest)")


@case(
    "id/record/8",
    section=RECORD,
    title="a record breaking two checks fails with the code of the first (version, form, domain)",
    requirements=("ID-3.3.7",),
)
def _(iut: Iut) -> None:
    good = _record()
    v2 = b"\x02" + good[1:]
    for what, data, domain, code in (
        ("version 2 and truncated", v2[:-1], None, "UNSUPPORTED_VERSION"),
        ("version 2 and trailing bytes", v2 + b"\x00", None, "UNSUPPORTED_VERSION"),
        ("version 2 and domain length 0", b"\x02" + _record_with(domain=b"")[1:], None, "UNSUPPORTED_VERSION"),
        ("version 2 and a wrong domain", v2, b"p2pos/other", "UNSUPPORTED_VERSION"),
        ("version 2, shorter than the 34-byte head", v2[:20], None, "MALFORMED_MESSAGE"),
        ("trailing bytes and a wrong domain", good + b"\x00", b"p2pos/other", "MALFORMED_MESSAGE"),
        (
            "payload length 65537 and a wrong domain",
            _record_with(payload=bytes(65537)),
            b"p2pos/other",
            "MALFORMED_MESSAGE",
        ),
    ):
        _expect_error(iut, code, what, "record_decode", data=data, domain=domain)


# -- key files (identity.md §4) ----------------------------------------------------------------


@case(
    "id/keyfile/4",
    section=KEYFILE,
    title="a key file with a non-ASCII byte in a line after the magic is INVALID_KEY_FILE",
    requirements=("ID-4.3",),
)
def _(iut: Iut) -> None:
    good = REF.identity.to_key_file()
    expect_eq(iut.ok("key_file", data=good + b"note 00ff\n").get("peer_id"), str(REF.peer_id), "ASCII control")
    for what, bad in (
        ("a UTF-8 letter in an unknown key's line", good + "note caf\u00e9\n".encode()),
        ("a 0x80 byte at the end of the public line", good.rstrip(b"\n") + b"\x80\n"),
        ("a 0xff byte in a line of its own", good + b"\xff\n"),
    ):
        _expect_error(iut, "INVALID_KEY_FILE", what, "key_file", data=bad)


@case(
    "id/keyfile/5",
    section=KEYFILE,
    title="a key file's unknown keys are ignored and a repeated key takes its last value",
    requirements=("ID-4.5",),
)
def _(iut: Iut) -> None:
    magic = b"p2pos-identity-v1\n"

    def line(key: str, value: bytes) -> bytes:
        return f"{key} {value.hex()}\n".encode()

    ref_seed, ref_public = line("seed", REF.seed), line("public", REF.peer_id.public_key)
    other_seed, other_public = line("seed", OTHER.seed), line("public", OTHER.peer_id.public_key)
    for what, data, expected in (
        (
            "unknown keys around the others",
            magic + line("created", b"\x20\x26") + ref_seed + line("comment", b"\x01") + ref_public,
            REF,
        ),
        ("seed repeated, the last one REF's", magic + other_seed + ref_seed + ref_public, REF),
        ("public repeated, the last one REF's", magic + ref_seed + other_public + ref_public, REF),
        ("both repeated, the last ones OTHER's", magic + ref_seed + ref_public + other_seed + other_public, OTHER),
    ):
        answer = iut.call("key_file", data=data)
        expect(answer.get("ok") is True, f"{what}: the file must load, got {short(answer)}")
        expect_eq(answer.get("peer_id"), str(expected.peer_id), what)
    first_wins = magic + ref_seed + ref_public + other_seed
    _expect_error(iut, "INVALID_KEY_FILE", "a last seed that does not match public", "key_file", data=first_wins)


# -- identity and static key (identity.md §1) ----------------------------------------------------


def _ed25519_as_x25519(party: Party) -> bytes:
    return nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(party.peer_id.public_key)


@case(
    "id/static/1",
    section="identity.md §1",
    title="the handshake's static key is the separate one, not the identity key turned into X25519",
    requirements=("ID-1.5",),
)
def _(iut: Iut) -> None:
    # The IUT as XX responder reveals its static key in RESPONSE, with the identity's binding signature.
    hand = Hand(Pattern.XX, initiator=True)
    start_session(iut, "responder")
    answer = iut.ok("receive", data=hand.init(init_payload(Pattern.XX)), now=0.0)
    response = handshake_message(one_packet(answer, PacketType.RESPONSE), PacketType.RESPONSE)
    hand.check_identity(hand.read(response, "RESPONSE"))
    revealed = hand.hs.rs or b""
    expect(revealed != _ed25519_as_x25519(IUT), "the IUT's Noise static key is its Ed25519 identity key as X25519")
    expect_eq(revealed, IUT.static_public, "the IUT's Noise static public key (X25519 of the given static)")


# -- counter exhaustion (record.md §7) ----------------------------------------------------------


@case(
    "rec/counter/1",
    section="record.md §7",
    title="a sender stops at COUNTER_LIMIT: no record with counter 2^64 - 2^13 - 1, COUNTER_EXHAUSTED",
    requirements=(
        "RCD-7.1",
        "RCD-7.1a",
        "SES-2.10",
        "ERR-1.17",
        "ERR-2.13",
        "CONF-3.2.2a",
    ),
)
def _(iut: Iut) -> str:
    # Optional tunable (spec/conformance.md §3.2): the first record after the handshake gets this counter.
    link = establish(iut, "initiator", config={"first_send_counter": COUNTER_LIMIT - 2})
    for n, text in ((COUNTER_LIMIT - 2, b"second to last"), (COUNTER_LIMIT - 1, b"last")):
        opened = link.open(one_packet(iut.ok("send", data=text, now=1.0), PacketType.DATA))
        expect_eq((opened.counter, opened.plaintext), (n, text), "counter and plaintext of a record near the limit")
    answer = iut.call("send", data=b"one too many", now=2.0)
    sent = out_of(answer) if answer.get("ok") is True else []
    # No DATA at counter COUNTER_LIMIT, and no CLOSE either: there is no counter left for one.
    expect(not sent, f"the IUT sent a record past the limit: {[d[:14].hex() for d in sent]}")
    state = iut.ok("state")
    expect_eq(
        (state.get("state"), state.get("close_code")),
        ("closed", "COUNTER_EXHAUSTED"),
        "state after a send with the counters exhausted",
    )
    expect(iut.call("keepalive", now=3.0).get("ok") is False, "a KEEPALIVE after exhaustion must fail")
    return f"send answered {answer.get('error') or 'ok'}"
